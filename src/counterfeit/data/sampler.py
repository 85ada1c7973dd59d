"""Which images make up each batch: a pure function of (n, batch size, seed, image count), so resuming is exact."""

from __future__ import annotations

from functools import lru_cache

import torch

_MASK64 = (1 << 64) - 1


def _mix(seed: int, epoch: int) -> int:
    # SplitMix64 finaliser: nearby (seed, epoch) pairs get unrelated generator seeds.
    z = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


@lru_cache(maxsize=4)  # a batch touches at most two epochs; 4 leaves room for a second stream (e.g. eval)
def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(_mix(seed, epoch)))  # (n,) int64


def batch_indices(n: int, batch_size: int, seed: int, start_nimg: int) -> torch.Tensor:
    """(batch_size,) int64 indices of images start_nimg .. start_nimg + batch_size - 1 of the shuffled stream."""
    if n < 1 or batch_size < 1 or start_nimg < 0:
        raise ValueError(
            f"batch_indices needs n >= 1, batch_size >= 1, start_nimg >= 0; got n={n}, batch_size={batch_size}, start_nimg={start_nimg}"
        )
    epoch, offset = divmod(start_nimg, n)
    parts = []
    remaining = batch_size
    while remaining:
        # A batch may run past the end of an epoch (or span several when batch_size > n).
        part = _epoch_order(n, seed, epoch)[offset : offset + remaining]
        parts.append(part)
        remaining -= len(part)
        epoch, offset = epoch + 1, 0
    return torch.cat(parts)  # (batch_size,) int64, a fresh tensor: the cached orders stay untouched
