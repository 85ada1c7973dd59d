"""MLPs for 2-D toy data, after the PacGAN/VEEGAN mode-collapse benchmarks (G 4x400 ReLU+BN, D 3x200)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import RunConfig
from . import register_model


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

    def __init__(self, z_dim: int, width: int = 400, depth: int = 4):
        super().__init__()
        self.z_dim = z_dim
        self.net = _mlp(z_dim, width, depth, 2, norm=True, act=nn.ReLU)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z)  # (N, 2)


class MLPDiscriminator(nn.Module):
    """Point (N, 2) -> one logit (N,)."""

    def __init__(self, width: int = 200, depth: int = 3):
        super().__init__()
        self.net = _mlp(2, width, depth, 1, norm=False, act=lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).squeeze(1)  # (N,)


@register_model(
    "mlp",
    data_kind="points",
    pixel_range=(-1.0, 1.0),  # unused: points are fed as they are
    summary="MLP pair for the 2-D toys: G 4x400 ReLU+BN from 2-d z, D 3x200 LeakyReLU",
    defaults={
        "model": {"z_dim": 2, "g_width": 400, "d_width": 200},
        "optim": {"lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.5},
        "loop": {"total_kimg": 200.0, "batch_size": 256, "tick_kimg": 10.0, "sample_kimg": 25.0, "snapshot_kimg": 50.0},
    },
)
def build(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """MLP pair for 2-D points."""
    return MLPGenerator(cfg.model.z_dim, cfg.model.g_width), MLPDiscriminator(cfg.model.d_width)
