"""`python -m counterfeit` (and `torchrun -m counterfeit`) runs the CLI."""

import sys

from .cli import main

sys.exit(main())
