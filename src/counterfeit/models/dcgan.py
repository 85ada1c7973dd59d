"""DCGAN (Radford et al. 2016, https://arxiv.org/abs/1511.06434): strided convs, batch norm, no pooling."""

from __future__ import annotations

import torch
from torch import nn

from ..config import RunConfig
from . import register_model
from .layers import (
    MinibatchStd,
    Reshape,
    ToImage,
    channel_widths,
    down_block,
    flat_linear,
    init_dcgan_,
    pack_samples,
    resolution_plan,
    same_block,
    spectral_norm_,
    up_block,
)


class Generator(nn.Module):
    """z (N, z_dim) -> image (N, C, H, W) in [-1, 1]."""

    def __init__(self, z_dim: int, resolution: int, channels: int, width: int, max_width: int, depth: int = 0):
        super().__init__()
        self.z_dim = z_dim
        start, n = resolution_plan(resolution)
        widths = channel_widths(width, n, max_width)[::-1]  # coarse to fine, e.g. [128, 64] for 7 -> 14
        self.stem = nn.Sequential(
            nn.Linear(z_dim, widths[0] * start * start, bias=False),
            Reshape(widths[0], start, start),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            *[same_block(widths[0]) for _ in range(depth)],
        )
        self.body = nn.Sequential(*[nn.Sequential(*up_block(a, b), *[same_block(b) for _ in range(depth)])
                                    for a, b in zip(widths[:-1], widths[1:])])  # fmt: skip
        self.to_image = nn.Sequential(ToImage(widths[-1], channels), nn.Tanh())
        init_dcgan_(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z (N, z_dim) -> images (N, C, H, W) in [-1, 1]; labels are ignored."""
        h = self.stem(z)  # (N, W0, 7, 7) at 28x28
        h = self.body(h)  # (N, W_last, H/2, W/2)
        return self.to_image(h)  # (N, C, H, W)


class Discriminator(nn.Module):
    """Image (N, C, H, W) in [-1, 1] -> one logit per image (N,), or per pack of `pack` images (N / pack,)."""

    def __init__(self, resolution: int, channels: int, width: int, max_width: int, spectral_norm: bool = False, mbstd: bool = False,
                 pack: int = 1, depth: int = 0):  # fmt: skip
        super().__init__()
        self.pack = pack
        start, n = resolution_plan(resolution)
        widths = channel_widths(width, n, max_width)  # fine to coarse, e.g. [64, 128] for 14 -> 7
        blocks = [down_block(channels * pack, widths[0], norm=False)]  # DCGAN: no batch norm on D's input layer
        # Spectral norm already keeps D's layers in check; batch norm on top mixes samples and fights it.
        blocks += [down_block(a, b, norm=not spectral_norm) for a, b in zip(widths[:-1], widths[1:])]
        # Each resolution's extra layers join its block, so body[-1][0] stays the last strided conv.
        blocks = [nn.Sequential(*block, *[same_block(w, leaky=True, norm=not spectral_norm, track_running_stats=False) for _ in range(depth)])
                  for block, w in zip(blocks, widths)]  # fmt: skip
        self.body = nn.Sequential(*blocks)
        self.mbstd = MinibatchStd() if mbstd else nn.Identity()
        self.head = nn.Linear((widths[-1] + mbstd) * start * start, 1)
        init_dcgan_(self)
        if spectral_norm:
            spectral_norm_(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images (N, C, H, W) -> logits (N / pack,); labels are ignored."""
        x = pack_samples(x, self.pack)  # (N / pack, pack * C, H, W)
        h = self.body(x)  # (N / pack, W_last, 7, 7) at 28x28
        h = self.mbstd(h)  # (N / pack, W_last + 1, 7, 7) with the minibatch-std channel
        return flat_linear(self.head, h).squeeze(1)  # (N / pack,)


@register_model(
    "dcgan",
    data_kind="images",
    pixel_range=(-1.0, 1.0),
    summary="DCGAN: transposed convs + batch norm + ReLU in G, strided convs + LeakyReLU in D (default)",
    # At 28x28, 1.5e-3 learned more per image than 5e-4 and at least as much as 1e-3 over three seeds, and it trained as
    # stably as 5e-4 at 64x64 colour; Adam's beta2 0.99 (StyleGAN's) lets the second-moment estimate follow the
    # changing game faster and learned more per image on two seeds of three, the same on the third (RESULTS.md, time
    # to quality). cdcgan keeps 5e-4 and 0.999, with which its class-accuracy figures were measured.
    # precision auto: bf16 autocast on a CPU with native bfloat16 trained about 1.4x the images per second at the same
    # FID per image (RESULTS.md, bf16 on CPU). lr_rampdown 0.5: at this lr the FID of the last 60 kimg of the
    # default run wandered by +-0.3 between checkpoints; letting both rates fall to 0 over the last quarter ended
    # lower and steadier on both seeds tried (RESULTS.md, time to quality, 2026-12-05); over the last half, FID 7.5
    # came 30-60 kimg sooner on both seeds screened, where the classic's 10-minute levels lie, and the run ended the
    # same (2026-12-06; over three quarters it ended worse). total_kimg 600 (10 epochs; the
    # other families keep 420): on a fast CPU the classic DCGAN's 10 minutes got below the whole 420-kimg run's end;
    # at 600 kimg all three seeds reached it there in 101-153 s (RESULTS.md, time to quality, third AMX Xeon).
    # loss hinge (SNGAN's, BigGAN's): on four seeds of this schedule it beat the non-saturating loss on three and lost
    # on one; FID 7.0 came 70 kimg sooner on average and on the slowest seed at 460 kimg instead of 540, which is what
    # the seed-by-seed time-to-quality goal needs (RESULTS.md, time to quality, 2026-12-06 session 24). cdcgan keeps
    # ns, with which its class-accuracy figures were measured.
    defaults={
        "loss": {"name": "hinge"},
        "optim": {"lr_g": 1.5e-3, "lr_d": 1.5e-3, "beta2": 0.99, "lr_rampdown": 0.5},
        "loop": {"precision": "auto", "total_kimg": 600.0},
    },  # fmt: skip
)
def build(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """DCGAN pair sized by the model config."""
    m, d = cfg.model, cfg.data
    G = Generator(m.z_dim, d.resolution, d.channels, m.g_width, m.g_max_width, m.g_depth)
    D = Discriminator(d.resolution, d.channels, m.d_width, m.d_max_width, m.spectral_norm, m.mbstd, m.pack, m.d_depth)
    return G, D
