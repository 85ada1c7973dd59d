"""FID and KID through torchmetrics, on features that were computed once and are shared by every metric."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

# FID's covariance needs many more samples than feature dimensions, else the estimate is biased high.
MIN_SAMPLES_PER_DIM = 5


class _Precomputed(nn.Module):
    """Identity 'network' so torchmetrics accumulates features we already have."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Return the features unchanged."""
        return feats


def _check(fake: torch.Tensor, real: torch.Tensor, name: str) -> None:
    if fake.ndim != 2 or real.ndim != 2 or fake.shape[1] != real.shape[1] or min(len(fake), len(real)) < 2:
        raise ValueError(f"{name} needs two (N>=2, D) feature sets with the same D, got {tuple(fake.shape)} and {tuple(real.shape)}")


def small_n_warning(n_fake: int, n_real: int, dim: int) -> str | None:
    """A one-line warning when N is too small for a stable FID in `dim` dimensions, else None."""
    n = min(n_fake, n_real)
    if n < MIN_SAMPLES_PER_DIM * dim:
        return f"FID from {n} samples in {dim} dimensions is biased high; use at least {MIN_SAMPLES_PER_DIM * dim} (ideally 10,000)"
    return None


def fid(fake: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to fake (N, D) and real (M, D) features (torchmetrics, float64)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fake, real = torch.as_tensor(fake), torch.as_tensor(real)
    _check(fake, real, "FID")
    # Features are whole on the process that calls this: torchmetrics' default would all-gather them over a torchrun group
    # whose other ranks never call it (training-time evaluation runs on rank 0 alone) and hang or fail.
    metric = FrechetInceptionDistance(feature=_Precomputed(fake.shape[1]), sync_on_compute=False)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return max(float(metric.compute()), 0.0)  # -1e-12 for identical sets is round-off


def kid_subset_size(n_fake: int, n_real: int, subset_size: int = 1000) -> int:
    """The subset size KID can use: `subset_size`, or all of the smaller side when it has fewer."""
    return min(subset_size, n_fake, n_real)


def kid(fake: torch.Tensor, real: torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (mean, std over subsets) with the cubic polynomial kernel (torchmetrics)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    _check(fake, real, "KID")
    size = kid_subset_size(len(fake), len(real), subset_size)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # torchmetrics draws the subsets from the global generator
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its "features kept in memory" notice: we hold them anyway
            metric = KernelInceptionDistance(feature=_Precomputed(fake.shape[1]), subsets=subsets, subset_size=size, sync_on_compute=False)
            metric.update(real.double(), real=True)
            metric.update(fake.double(), real=False)
            mean, std = metric.compute()
    finally:
        torch.random.set_rng_state(state)
    return float(mean), float(std)
