"""GAN objectives as loss objects with one entry point per phase (D step, G step)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import ConfigError


class GANLoss:
    """Base: `d_loss(real_logits, fake_logits)` for the D step, `g_loss(fake_logits)` for the G step."""

    name = "base"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """D learns: reals labelled real (1), fakes labelled fake (0): binary cross-entropy on D's logits."""
        real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return real + fake

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """G's objective on D's verdict for fresh fakes."""
        raise NotImplementedError


class NonSaturatingLoss(GANLoss):
    """G maximises log D(G(z)): fakes labelled "real". Strong gradients while D still wins easily."""

    name = "ns"

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """BCE of D's verdict on fakes against the label real (1)."""
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


class MinimaxLoss(GANLoss):
    """Goodfellow et al. 2014's original game: G minimises log(1 - D(G(z))). Saturates when D wins."""

    name = "minimax"

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """Minus D's fake-side loss: log(1 - sigmoid(l)) = -softplus(l)."""
        return -F.softplus(fake_logits).mean()


LOSSES: dict[str, type[GANLoss]] = {cls.name: cls for cls in (NonSaturatingLoss, MinimaxLoss)}


def build_loss(name: str) -> GANLoss:
    """Loss object for a config name, or a one-line error listing the choices."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]()
