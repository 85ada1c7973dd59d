"""MLPs for 2-D toy data, after the PacGAN/VEEGAN mode-collapse nets (G 4x400 ReLU+BN, D 3x200; our G default is 4x128)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ConfigError, RunConfig
from ..data.toys import TOY_DATASETS, toy_modes
from . import register_model
from .layers import MinibatchStd, pack_samples, spectral_norm_


def _mlp(d_in: int, width: int, depth: int, d_out: int, norm: bool, act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(d_in if i == 0 else width, width))
        if norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(act())
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """z (N, z_dim) -> point (N, 2)."""

    def __init__(self, z_dim: int, width: int = 400, depth: int = 4, scale: float = 1.0):
        super().__init__()
        self.z_dim = z_dim
        self.scale = scale  # a constant of the data, not a parameter: the state dict is the same with or without it
        self.net = _mlp(z_dim, width, depth, 2, norm=True, act=nn.ReLU)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z (N, z_dim) -> points (N, 2); labels are ignored."""
        return self.net(z) * self.scale  # (N, 2)


class MLPDiscriminator(nn.Module):
    """Point (N, 2) -> one logit (N,), or one per pack of `pack` points (N / pack,)."""

    def __init__(
        self, width: int = 200, depth: int = 3, spectral_norm: bool = False, mbstd: bool = False, pack: int = 1, scale: float = 1.0
    ):
        super().__init__()
        self.pack, self.scale = pack, scale
        layers = list(_mlp(2 * pack, width, depth, 1, norm=False, act=lambda: nn.LeakyReLU(0.2)))
        if mbstd:  # the batch's spread as one more feature for the last layer
            layers[-1:] = [MinibatchStd(), nn.Linear(width + 1, 1)]
        self.net = nn.Sequential(*layers)
        if spectral_norm:
            spectral_norm_(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Points (N, 2) -> logits (N / pack,); labels are ignored."""
        return self.net(pack_samples(x / self.scale, self.pack)).squeeze(1)  # (N / pack, 2 * pack) -> (N / pack,)


@register_model(
    "mlp",
    data_kind="points",
    pixel_range=(-1.0, 1.0),  # unused: points are fed as they are
    summary="MLP pair for the 2-D toys: G 4x128 ReLU+BN from 2-d z, D 3x200 LeakyReLU",
    # The PacGAN nets with a training schedule tuned on grid25/ring8 seed 0 (benchmarks/toys/RESULTS-toys.md):
    # lr 1e-3 left G a near-uniform cloud for thousands of steps, 1e-4 covers every mode early; the linear ramp to 0
    # over the last 30 % sharpens the modes; G 4x128 scored as 4x400 did at half the CPU time; 8,000 G steps of 64.
    defaults={
        "model": {"z_dim": 2, "g_width": 128, "d_width": 200, "standardise": True},
        "optim": {"lr_g": 1e-4, "lr_d": 1e-4, "beta1": 0.5, "lr_rampdown": 0.3},
        # alarm_after_kimg: G finds grid25's modes slowly; six healthy default runs covered 12-18 of 25 at 40 kimg, at most
        # 8.5 % of samples near a mode until 120 kimg, and 23-25 of 25 from 180 kimg on (RESULTS.md, 2026-12-07).
        "loop": {
            "total_kimg": 512.0,
            "batch_size": 64,
            "tick_kimg": 16.0,
            "sample_kimg": 64.0,
            "snapshot_kimg": 128.0,
            "alarm_after_kimg": 200.0,
        },  # fmt: skip
    },
)
def build(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """MLP pair for 2-D points."""
    m = cfg.model
    scale = point_scale(cfg.data.name) if m.standardise else 1.0
    G = MLPGenerator(m.z_dim, m.g_width, scale=scale)
    return G, MLPDiscriminator(m.d_width, spectral_norm=m.spectral_norm, mbstd=m.mbstd, pack=m.pack, scale=scale)


def point_scale(dataset: str) -> float:
    """RMS coordinate of a toy's mode centres: the unit G and D work in with --standardise."""
    if dataset not in TOY_DATASETS:  # built before the names are checked: say what mlp is for, not "unknown toy"
        raise ConfigError(f"--model mlp trains on the 2-D toys; pass --data {', '.join(TOY_DATASETS)} (got '{dataset}')")
    centres, _ = toy_modes(dataset)  # (M, 2)
    return float(centres.pow(2).mean().sqrt())
