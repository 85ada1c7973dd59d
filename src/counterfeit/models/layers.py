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
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
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


def same_block(c: int, leaky: bool = False, norm: bool = True, track_running_stats: bool = True) -> nn.Sequential:
    """3x3 conv that keeps resolution and channels, then (batch norm and) ReLU, or LeakyReLU(0.2) for D (--g/d-depth)."""
    layers: list[nn.Module] = [nn.Conv2d(c, c, 3, padding=1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(c, track_running_stats=track_running_stats))
    layers.append(nn.LeakyReLU(0.2, inplace=True) if leaky else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def down_block(c_in: int, c_out: int, norm: bool = True) -> nn.Sequential:
    """Strided conv that halves the resolution, then (batch norm and) LeakyReLU(0.2) (D's DCGAN block)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not norm)]
    if norm:
        # D's batch statistics are only ever used in training mode; not tracking running
        # stats keeps D free of buffers, so the G step provably leaves D untouched.
        layers.append(nn.BatchNorm2d(c_out, track_running_stats=False))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def spectral_norm_(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018, https://arxiv.org/abs/1802.05957) of every conv and linear weight."""
    # Each weight is divided by its largest singular value, estimated by one power-iteration step per
    # training-mode forward pass; this bounds how fast D's output can change with its input.
    for m in list(module.modules()):  # list first: registering a parametrisation adds submodules
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.utils.parametrizations.spectral_norm(m)
    return module


def mbstd_group_size(n: int, max_group: int = 4) -> int:
    """The largest group size <= max_group that divides the batch n."""
    return next(g for g in range(min(max_group, n), 0, -1) if n % g == 0)


class MinibatchStd(nn.Module):
    """ProGAN's minibatch standard deviation (Karras et al. 2018, https://arxiv.org/abs/1710.10196), one extra feature.

    Samples are split into groups of up to 4; the std of each feature over a group, averaged over all
    features and pixels, is appended to each member as one more channel (or feature). A collapsed G
    makes that number small, which D can see and punish.
    """

    def __init__(self, max_group: int = 4):
        super().__init__()
        self.max_group = max_group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g = mbstd_group_size(n, self.max_group)
        y = x.reshape(g, n // g, *x.shape[1:])  # (G, M, C, H, W): sample i sits in group i % M, as in ProGAN
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt()  # (M, C, H, W): std over each group
        y = y.flatten(1).mean(dim=1).repeat(g)  # (N,): one number per group, handed to each of its members
        y = y.view(n, 1, *[1] * (x.dim() - 2)).expand(n, 1, *x.shape[2:])  # (N, 1, H, W) or (N, 1)
        return torch.cat([x, y], dim=1)  # (N, C + 1, H, W) or (N, F + 1)


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """PacGAN (Lin et al. 2018, https://arxiv.org/abs/1712.04086): (B, C, ...) -> (B/pack, pack*C, ...), consecutive samples side by side."""
    if pack == 1:
        return x
    if x.shape[0] % pack:
        raise ValueError(f"a D with pack {pack} needs a batch divisible by {pack}, got {x.shape[0]}")
    return x.reshape(x.shape[0] // pack, pack * x.shape[1], *x.shape[2:])  # (B/pack, pack*C, H, W) or (B/pack, pack*F)
