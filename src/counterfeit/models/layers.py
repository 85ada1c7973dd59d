"""Small building blocks shared by the model families."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError


def resolution_plan(resolution: int) -> tuple[int, int]:
    """(start side, number of doublings) that reach `resolution`: 28 = 7*2*2, 32/64/128 = 4*2^n."""
    if resolution == 28:
        return 7, 2
    if resolution in (32, 64, 128):
        return 4, int(math.log2(resolution // 4))
    raise ConfigError(f"the convolutional models support resolutions 28, 32, 64 and 128, not {resolution}; pass --resolution 32 or 64")


def channel_widths(base: int, n: int, cap: int) -> list[int]:
    """Channel counts of n stages, fine to coarse: base doubling per stage, capped at `cap`."""
    return [min(base * 2**i, cap) for i in range(n)]


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
    """View a flat vector as a (C, H, W) feature map, laid out channels-last after `to_channels_last`."""

    def __init__(self, *shape: int):
        super().__init__()
        self.shape = shape
        self.channels_last = False  # not state: set by to_channels_last, so that checkpoints are layout-free

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C * H * W) -> (N, C, H, W), channels-last strides when asked."""
        h = x.view(x.shape[0], *self.shape)  # (N, C, H, W), NCHW strides
        if self.channels_last and h.dim() == 4:
            # One small copy here saves every later layer (batch norm, ReLU, the first transposed conv, and their
            # backward passes) from mixing layouts, which on CPU takes a slow strided path (benchmarks/layouts.py).
            h = h.contiguous(memory_format=torch.channels_last)  # (N, C, H, W), NHWC strides
        return h


def to_channels_last(module: nn.Module) -> nn.Module:
    """Convert a model's 4-d weights and its Reshape layers' outputs to the channels-last (NHWC) layout."""
    module = module.to(memory_format=torch.channels_last)
    for m in module.modules():
        if isinstance(m, Reshape):
            m.channels_last = True
    return module


def flat_linear(head: nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """`head(h.flatten(1))` for a feature map h (N, C, H, W) in either layout, without copying a channels-last h."""
    if h.dim() == 4 and not h.is_contiguous() and h.is_contiguous(memory_format=torch.channels_last):
        n, c, height, width = h.shape
        # The same function with the weight's columns reordered to (H, W, C): the flat view of an NHWC map is free,
        # and its gradient comes back NHWC, where a flatten would hand the layers below an NCHW gradient.
        w = head.weight  # read once: under spectral norm each read runs a power iteration
        weight = w.view(-1, c, height, width).permute(0, 2, 3, 1).reshape(w.shape[0], -1)  # (out, H*W*C)
        return F.linear(h.permute(0, 2, 3, 1).reshape(n, -1), weight, head.bias)  # (N, out)
    return head(h.flatten(1))  # (N, out)


class ToImage(nn.ConvTranspose2d):
    """G's last layer: a 4x4 transposed conv of stride 2 to the image's channels (the same weights and checkpoints)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, 2H, 2W)."""
        if not self._folds(x):
            return super().forward(x, output_size)
        n, c, h, w = x.shape
        # oneDNN makes one channel from 32 at 4 GFLOP/s on an AVX-512 CPU without bf16 (RESULTS.md, 2026-12-08): as a
        # matmul to each input pixel's 4x4 output patch and a fold that sums the overlapping patches, the default dcgan
        # trained about 5 % faster there (four interleaved A/Bs, from +0.5 % to +7 %; benchmarks/ab_speed.py --option to_image).
        cols = x.permute(0, 2, 3, 1).reshape(n * h * w, c) @ self.weight.reshape(c, 16)  # (N*H*W, 16); free for NHWC x
        cols = cols.view(n, h * w, 16).transpose(1, 2)  # (N, 16, H*W)
        y = F.fold(cols, (2 * h, 2 * w), 4, stride=2, padding=1)  # (N, 1, 2H, 2W)
        return y + self.bias.view(1, 1, 1, 1)  # (N, 1, 2H, 2W)

    def _folds(self, x: torch.Tensor) -> bool:
        # Only where it was measured: one channel, fp32 on the CPU. Under bf16 autocast, on a GPU, in torch.compile or in
        # an ONNX export the native op stays (a fold is a Col2Im node that older runtimes lack).
        return (self.out_channels == 1 and x.dim() == 4 and x.device.type == "cpu" and x.dtype == torch.float32
                and self.bias is not None and not torch.is_autocast_enabled("cpu") and not torch.onnx.is_in_onnx_export()
                and not torch.compiler.is_compiling())  # fmt: skip


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
        """(N, C, H, W) or (N, F) -> the same with one more channel or feature: the group's mean std."""
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
