"""Autoencoders: ae, dae (denoising) and vae (Kingma & Welling 2014, https://arxiv.org/abs/1312.6114).

The decoder is the DCGAN generator (z -> image in [-1, 1]), so sampling, the EMA copy and `load_run`
treat it exactly like a GAN's G; the encoder mirrors DCGAN's D (strided convs) and fills the D slot.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import RunConfig
from . import register_model
from .dcgan import Generator
from .layers import channel_widths, flat_linear, resolution_plan


class Decoder(Generator):
    """z (N, z_dim) -> image (N, C, H, W) in [-1, 1]: the DCGAN generator, with its pre-tanh output exposed."""

    def pre_tanh(self, z: torch.Tensor) -> torch.Tensor:
        """The last layer's output h before tanh; forward(z) == tanh(h), and sigmoid(2h) is the image in [0, 1]."""
        h = self.body(self.stem(z))  # (N, W_last, H/2, W/2)
        return self.to_image[0](h)  # (N, C, H, W)


class Encoder(nn.Module):
    """Image (N, C, H, W) in [-1, 1] -> (mu, logvar), each (N, z_dim); logvar is None unless variational.

    A denoising encoder (noise_std > 0) adds N(0, noise_std^2) pixel noise to its input in training mode
    only, so reconstructions, grids and anomaly scores always see the clean image.
    """

    def __init__(self, z_dim: int, resolution: int, channels: int, width: int, max_width: int, variational: bool = False,
                 noise_std: float = 0.0):  # fmt: skip
        super().__init__()
        self.z_dim, self.variational, self.noise_std = z_dim, variational, noise_std
        start, n = resolution_plan(resolution)
        widths = channel_widths(width, n, max_width)  # fine to coarse, e.g. [32, 64] for 14 -> 7
        chans = [channels, *widths]
        # DCGAN D's strided convs, but with batch norm that tracks running statistics: an encoder is used
        # in eval mode (reconstructions, anomaly scores), where a code must not depend on the rest of the batch.
        self.body = nn.Sequential(
            *[
                nn.Sequential(
                    nn.Conv2d(a, b, 4, stride=2, padding=1, bias=i == 0),
                    nn.BatchNorm2d(b) if i > 0 else nn.Identity(),
                    nn.LeakyReLU(0.2, inplace=True),
                )
                for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))
            ]
        )
        self.head = nn.Linear(widths[-1] * start * start, z_dim * (2 if variational else 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images (N, C, H, W) -> code (N, z_dim) and None, or the VAE's mu and logvar (N, z_dim) each."""
        if self.training and self.noise_std > 0:
            x = x + self.noise_std * torch.randn_like(x)  # (N, C, H, W), not clamped: plain Gaussian corruption
        h = flat_linear(self.head, self.body(x))  # (N, z_dim) or (N, 2 z_dim)
        if not self.variational:
            return h, None
        mu, logvar = h.chunk(2, dim=1)  # (N, z_dim) each
        return mu, logvar


def _build(cfg: RunConfig, variational: bool = False, noise_std: float = 0.0) -> tuple[nn.Module, nn.Module]:
    m, d = cfg.model, cfg.data
    decoder = Decoder(m.z_dim, d.resolution, d.channels, m.g_width, m.g_max_width)
    encoder = Encoder(m.z_dim, d.resolution, d.channels, m.d_width, m.d_max_width, variational, noise_std)
    return decoder, encoder


# Adam's usual beta1 0.9: there is no adversarial game to keep from oscillating. No training-time coverage
# monitor for ae/dae: their decoders were never asked to map N(0, I) to images, so the alarm would only cry wolf.
_AE_DEFAULTS = {"optim": {"lr_g": 1e-3, "beta1": 0.9}, "loop": {"eval_every_kimg": 0.0}}


@register_model("ae", data_kind="images", pixel_range=(-1.0, 1.0), family="autoencoder", defaults=_AE_DEFAULTS,
                summary="autoencoder: DCGAN-D-like conv encoder -> z -> DCGAN G as decoder; BCE reconstruction")  # fmt: skip
def build_ae(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """(decoder, encoder) of a plain autoencoder."""
    return _build(cfg)


@register_model("dae", data_kind="images", pixel_range=(-1.0, 1.0), family="autoencoder", defaults=_AE_DEFAULTS,
                summary="denoising autoencoder: the ae trained to undo Gaussian pixel noise (--noise-std, default 0.3)")  # fmt: skip
def build_dae(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """(decoder, encoder) of a denoising autoencoder; the encoder corrupts its input while training."""
    return _build(cfg, noise_std=cfg.model.noise_std)


# z_dim 16: its prior samples' quick FID (2,000 samples) was 35.6 / 28.4 / 26.5 at 20 / 40 / 60 kimg of Fashion-MNIST against
# 40.4 / 31.6 / 28.8 with z_dim 32 (one seed each).
@register_model("vae", data_kind="images", pixel_range=(-1.0, 1.0), family="autoencoder",
                defaults={"model": {"z_dim": 16}, "optim": {"lr_g": 1e-3, "beta1": 0.9}},
                summary="variational autoencoder: encoder -> (mu, logvar), BCE reconstruction + beta * KL (--beta, default 1)")  # fmt: skip
def build_vae(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """(decoder, encoder) of a VAE; the encoder gives mu and log-variance of q(z|x)."""
    return _build(cfg, variational=True)
