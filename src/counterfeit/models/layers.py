"""Small building blocks shared by the model families."""

from __future__ import annotations

import torch
from torch import nn


def init_dcgan_(module: nn.Module) -> nn.Module:
    """DCGAN paper init: conv/linear weights N(0, 0.02), batch-norm scale N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


class Reshape(nn.Module):
    """View a flat vector as a (C, H, W) feature map."""

    def __init__(self, *shape: int):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.shape)


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    """Transposed conv that doubles the resolution, then batch norm and ReLU (G's DCGAN block)."""
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def down_block(c_in: int, c_out: int, norm: bool = True) -> nn.Sequential:
    """Strided conv that halves the resolution, then (batch norm and) LeakyReLU(0.2) (D's DCGAN block)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not norm)]
    if norm:
        # D's batch statistics are only ever used in training mode; not tracking running
        # stats keeps D free of buffers, so the G step provably leaves D untouched.
        layers.append(nn.BatchNorm2d(c_out, track_running_stats=False))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)
