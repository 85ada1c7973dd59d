"""`counterfeit` CLI in float64, for tests/test_distributed.py: two processes and one then agree to about 1e-14.

In float32, the other summation order of two processes (batch-norm sums, gradient all-reduce) leaves
differences of about 1e-7 that some training dynamics (AC-GAN with R1, measured) grow to 1e-4 within ten
steps; in float64 any real difference between the two stands out by many orders of magnitude.
"""

import sys

import torch

torch.set_default_dtype(torch.float64)  # models, noise and optimiser state

import counterfeit.train as train  # noqa: E402

_from_uint8 = train.from_uint8
train.from_uint8 = lambda x, pixel_range: _from_uint8(x, pixel_range).double()  # the reals, which come as uint8

from counterfeit.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
