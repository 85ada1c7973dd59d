"""Two-dimensional toy mixtures of Gaussians: quick to train on, and mode collapse is visible at a glance."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .base import DataError, Dataset

TOY_DATASETS = ("ring8", "grid25", "ducks-cows")


@dataclass(frozen=True)
class _Toy:
    centres: list[tuple[float, float]]
    sigma: float  # standard deviation along each mode's longest axis
    names: list[str]
    # Each mode's spread is sigma * shape @ z for z ~ N(0, I); the identity gives round blobs.
    shape: tuple[tuple[float, float], tuple[float, float]] = ((1.0, 0.0), (0.0, 1.0))
    info: dict = field(default_factory=dict)


def _ring8() -> _Toy:
    # The 8-Gaussian ring of the unrolled-GAN paper (arXiv:1611.02163), scaled to radius 1.
    # Rounded so that cos(pi / 2) is 0.0, not 6e-17, and the mode names read "0.00", not "-0.00".
    centres = [(round(math.cos(math.pi * k / 4), 12) + 0.0, round(math.sin(math.pi * k / 4), 12) + 0.0) for k in range(8)]
    return _Toy(centres, 0.01, _mode_names(centres))


def _grid25() -> _Toy:
    # The 5x5 grid of the VEEGAN and PacGAN papers.
    centres = [(float(x), float(y)) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)]
    return _Toy(centres, 0.05, _mode_names(centres))


def _ducks_cows() -> _Toy:
    # Within a species heavier animals are also bigger, so each cluster is elongated along the diagonal:
    # std 0.2 along (1, 1), 0.1 across it.
    c = math.sqrt(0.5)
    shape = ((c, -0.5 * c), (c, 0.5 * c))
    info = {
        "axes": ["weight", "size"],
        "units": "standardised log scale: weight -1 = 1 kg (duck), +1 = 600 kg (cow); "
        "size (body length) -1 = 0.5 m (duck), +1 = 2.5 m (cow)",
    }
    return _Toy([(-1.0, -1.0), (1.0, 1.0)], 0.2, ["ducks", "cows"], shape, info)


def _mode_names(centres: list[tuple[float, float]]) -> list[str]:
    return [f"mode {i} ({x:.2f}, {y:.2f})" for i, (x, y) in enumerate(centres)]


_TOYS = {"ring8": _ring8, "grid25": _grid25, "ducks-cows": _ducks_cows}


def _toy(name: str) -> _Toy:
    if name not in _TOYS:
        raise DataError(f"unknown toy dataset '{name}'; choose one of {', '.join(TOY_DATASETS)}")
    return _TOYS[name]()


def toy_modes(name: str) -> tuple[torch.Tensor, float]:
    """The (M, 2) float32 mode centres of a toy dataset and its sigma (std along a mode's longest axis)."""
    toy = _toy(name)
    return torch.tensor(toy.centres, dtype=torch.float32), toy.sigma  # (M, 2) float32


def toy_axes(name: str) -> tuple[float, float]:
    """A mode's standard deviations along its long and short axes, in units of its sigma: (1, 1) for a round mode."""
    long, short = torch.linalg.svdvals(torch.tensor(_toy(name).shape, dtype=torch.float64)).tolist()
    return long, short


def load_toy(name: str, n: int = 100_000, seed: int = 0) -> Dataset:
    """Draw n points from an equal-weight mixture; labels are the mode each point came from."""
    toy = _toy(name)
    if n < 1:
        raise DataError(f"cannot draw {n} points from {name}; ask for at least 1")
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor(toy.centres, dtype=torch.float32)  # (M, 2)
    shape = torch.tensor(toy.shape, dtype=torch.float32)  # (2, 2)
    labels = torch.randint(len(centres), (n,), generator=g)  # (N,) int64
    noise = torch.randn(n, 2, generator=g) @ shape.T  # (N, 2)
    x = (centres[labels] + toy.sigma * noise).contiguous()  # (N, 2) float32
    info = {"modes": len(centres), "sigma": toy.sigma, "n": n, "seed": seed, **toy.info}
    return Dataset(name=name, kind="points", x=x, labels=labels, class_names=list(toy.names), info=info)
