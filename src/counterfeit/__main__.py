"""`python -m counterfeit` (and `torchrun -m counterfeit`) runs the CLI."""

import sys

try:
    from .cli import main

    code = main()
except KeyboardInterrupt:  # Ctrl-C (or the studio's Stop) while Python still imports: nothing has started or been written
    print("stopped while starting; nothing was written", file=sys.stderr)
    code = 130
sys.exit(code)
