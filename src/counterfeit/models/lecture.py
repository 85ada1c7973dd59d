"""The GAN the lecture builds in Keras, layer for layer, so a learner can reproduce it."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ConfigError, RunConfig
from . import register_model
from .layers import Reshape


def _conv_same(c_in: int, c_out: int, k: int) -> nn.Module:
    """Keras' padding='same': an even kernel gets one more zero on the bottom/right, as TensorFlow pads."""
    before, after = (k - 1) // 2, k // 2
    if before == after:
        # An odd kernel pads alike on all sides, which the convolution does itself without copying its input into a
        # zero-filled tensor first. The Identity keeps the checkpoint keys (net.N.1.weight) of the padded form.
        return nn.Sequential(nn.Identity(), nn.Conv2d(c_in, c_out, k, padding=before))
    return nn.Sequential(nn.ZeroPad2d((before, after, before, after)), nn.Conv2d(c_in, c_out, k))


class Dropout(nn.Dropout):
    """nn.Dropout whose mask on CPU comes from uniform noise: the same maths, about 2.5x faster than bernoulli_ there."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout with p, drawn with uniform noise on CPU."""
        if not self.training or self.p in (0.0, 1.0) or x.device.type != "cpu":  # p = 1 would divide by zero below
            return super().forward(x)
        # Keep each element with probability 1 - p and scale it by 1 / (1 - p), as F.dropout does; torch's CPU
        # bernoulli_ draws each element in a slow serial loop (about 3.5x the time of uniform_ on 2026-12-05's Xeon).
        # The noise is float32 whatever x is: bf16 uniforms are too coarse to hit 1 - p.
        keep = torch.rand_like(x, dtype=torch.float32).ge_(self.p).to(x.dtype)  # (x's shape): 1 where kept, else 0
        return x * keep.div_(1.0 - self.p)  # (x's shape)


class LectureGenerator(nn.Module):
    """Dense(7x7x128), 2x [UpSampling2D, Conv5x5 128], 2x Conv4x4 128, Conv4x4 1 + sigmoid: pixels in [0, 1]."""

    def __init__(self, z_dim: int = 128):
        super().__init__()
        self.z_dim = z_dim
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.net = nn.Sequential(
            nn.Linear(z_dim, 7 * 7 * 128), act(), Reshape(128, 7, 7),
            nn.Upsample(scale_factor=2, mode="nearest"), _conv_same(128, 128, 5), act(),  # (N, 128, 14, 14)
            nn.Upsample(scale_factor=2, mode="nearest"), _conv_same(128, 128, 5), act(),  # (N, 128, 28, 28)
            _conv_same(128, 128, 4), act(),
            _conv_same(128, 128, 4), act(),
            _conv_same(128, 1, 4), nn.Sigmoid(),  # (N, 1, 28, 28)
        )  # fmt: skip

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z (N, z_dim) -> images (N, 1, 28, 28) in [0, 1]; labels are ignored."""
        return self.net(z)  # (N, 1, 28, 28) in [0, 1]


class LectureDiscriminator(nn.Module):
    """Four Conv5x5 'valid' (32, 64, 128, 256) with LeakyReLU + Dropout(0.4), Flatten, Dropout, Dense(1).

    The lecture ends D in a sigmoid and uses binary cross-entropy; we return the logit and
    fold the sigmoid into the loss (same maths, no log(0) overflow).
    """

    def __init__(self, dropout: float = 0.4):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in [(1, 32), (32, 64), (64, 128), (128, 256)]:  # 28 -> 24 -> 20 -> 16 -> 12
            layers += [nn.Conv2d(c_in, c_out, 5), nn.LeakyReLU(0.2), Dropout(dropout)]
        layers += [nn.Flatten(), Dropout(dropout), nn.Linear(256 * 12 * 12, 1)]  # 36,864 features
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images (N, 1, 28, 28) -> logits (N,); labels are ignored."""
        return self.net(x).squeeze(1)  # (N,)


@register_model(
    "lecture",
    data_kind="images",
    pixel_range=(0.0, 1.0),
    summary="the lecture's Keras GAN: upsampling + 'same' convs in G, 'valid' convs + dropout in D, pixels in [0, 1]",
    defaults={"model": {"z_dim": 128}, "optim": {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5}},
)
def build(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """The lecture's fixed 28x28 grey architecture."""
    if (cfg.data.resolution, cfg.data.channels) != (28, 1):
        raise ConfigError("the lecture model is built for 28x28 grey images; use --model dcgan for other sizes")
    m = cfg.model
    extras = [flag for flag, on in (("--spectral-norm", m.spectral_norm), ("--mbstd", m.mbstd), ("--pack", m.pack != 1)) if on]
    if extras:
        raise ConfigError(f"{', '.join(extras)} would change the lecture model's D, which stays layer for layer; use --model dcgan")
    return LectureGenerator(cfg.model.z_dim), LectureDiscriminator()
