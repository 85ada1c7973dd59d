"""GAN objectives as loss objects with one entry point per phase (D step, G step, D regulariser)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .augment import diff_augment
from .config import ConfigError, LossConfig


class GANLoss:
    """Base: `d_loss(real_logits, fake_logits)` for the D step, `g_loss(fake_logits)` for the G step,
    `d_reg(D, real, fake)` for penalties added to D's loss, and `augment(x)` for what D is shown."""

    name = "base"
    # Class-level defaults, so a subclass that skips __init__ is still a plain, unregularised loss.
    r1_gamma = 0.0
    diffaug = ""
    ac_weight = 0.0
    ms_weight = 0.0
    twin_ac = False
    recall_weight = 0.0

    def __init__(self, r1_gamma: float = 0.0, diffaug: str = "", ac_weight: float = 0.0, ms_weight: float = 0.0, twin_ac: bool = False,
                 recall_weight: float = 0.0):  # fmt: skip
        self.r1_gamma = r1_gamma  # R1 weight gamma: the D step adds gamma/2 * E[|grad D(x)|^2] on reals (0 = off)
        self.diffaug = diffaug  # DiffAugment policy for every image D sees ('' = none)
        self.ac_weight = ac_weight  # AC-GAN: weight of the class cross-entropy in both steps (0 = off)
        self.ms_weight = ms_weight  # MSGAN: weight of the mode-seeking term in the G step (0 = off)
        self.twin_ac = twin_ac  # TAC-GAN: D's class logits are (N, 2C), the AC head's then the twin's (learnt on fakes)
        self.recall_weight = recall_weight  # IMLE-style nearest-fake recall term in the G step (0 = off)

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """D learns: reals labelled real (1), fakes labelled fake (0): binary cross-entropy on D's logits."""
        real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return real + fake

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """G's objective on D's verdict for fresh fakes."""
        raise NotImplementedError

    def d_reg(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor | None:
        """Penalties for the D step on the images D was shown, or None when there are none."""
        if self.r1_gamma > 0:
            return self.r1_gamma / 2 * r1_penalty(D, real, labels)
        return None

    def ac_loss(self, class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """AC-GAN term: ac_weight * cross-entropy of D's class head (N, C) against the labels (N,)."""
        return self.ac_weight * F.cross_entropy(class_logits, labels)

    def split_heads(self, class_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's class logits (N, C) or, with the twin head, (N, 2C) -> (AC head (N, C), twin head (N, C) or None)."""
        if not self.twin_ac:
            return class_logits, None
        ac, twin = class_logits.chunk(2, dim=1)  # (N, C) each
        return ac, twin

    def ms_loss(self, fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """MSGAN term: ms_weight / mean ratio of image to noise distance, over pairs (first half of the batch vs second)."""
        half = fake.shape[0] // 2
        d_img = (fake[:half] - fake[half : 2 * half]).abs().flatten(1).mean(1)  # (half,)
        d_z = (z[:half] - z[half : 2 * half]).abs().mean(1)  # (half,)
        return self.ms_weight / ((d_img / d_z).mean() + 1e-5)

    def recall_loss(self, real: torch.Tensor, fake: torch.Tensor, real_labels: torch.Tensor | None = None,
                    fake_labels: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Recall term: recall_weight * mean over reals of the squared distance per dimension to the nearest fake."""
        dist = torch.cdist(real.flatten(1).float(), fake.flatten(1).float())  # (R, F)
        if real_labels is not None and fake_labels is not None:  # each real looks only at fakes of its class
            dist = dist.masked_fill(real_labels[:, None] != fake_labels[None, :], float("inf"))
        nearest = dist.min(dim=1).values  # (R,)
        nearest = nearest[torch.isfinite(nearest)]  # a real whose class no fake drew this step sits out
        if nearest.numel() == 0:
            return fake.sum() * 0.0  # keeps the graph, adds nothing
        return self.recall_weight * nearest.pow(2).mean() / real[0].numel()

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """The images as D sees them: through DiffAugment when a policy is set, else unchanged."""
        return diff_augment(x, self.diffaug) if self.diffaug else x


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


class LeastSquaresLoss(GANLoss):
    """LSGAN (Mao et al. 2017, https://arxiv.org/abs/1611.04076): squared distance of the raw logit from the target.

    Fakes far on the right side of the boundary still get a gradient, which BCE's sigmoid flattens away.
    """

    name = "lsgan"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """0.5 E[(D(x) - 1)^2] + 0.5 E[D(G(z))^2]: reals pulled to 1, fakes to 0."""
        return 0.5 * (real_logits - 1).square().mean() + 0.5 * fake_logits.square().mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """0.5 E[(D(G(z)) - 1)^2]: fakes pulled to the real target."""
        return 0.5 * (fake_logits - 1).square().mean()


class HingeLoss(GANLoss):
    """Hinge loss (Lim & Ye 2017; SNGAN, BigGAN): D stops pushing a sample once it is beyond the margin 1."""

    name = "hinge"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """-E[D(G(z))]: G raises D's score of its fakes, with no margin."""
        return -fake_logits.mean()


class WGANGPLoss(GANLoss):
    """WGAN-GP (Gulrajani et al. 2017, https://arxiv.org/abs/1704.00028): D is a critic estimating the
    Wasserstein-1 distance, kept near 1-Lipschitz by a gradient penalty on interpolates of reals and fakes."""

    name = "wgan-gp"
    gp_weight = 10.0

    def __init__(self, gp_weight: float = 10.0, **kw):
        super().__init__(**kw)
        self.gp_weight = gp_weight  # lambda: the paper's 10 worked across all its experiments

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """E[D(G(z))] - E[D(x)]: the critic scores reals above fakes (the penalty comes from d_reg)."""
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """-E[D(G(z))]: G raises the critic's score of its fakes."""
        return -fake_logits.mean()

    def d_reg(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor | None:
        """lambda * gradient penalty, plus R1 when it is on too."""
        penalty = self.gp_weight * gradient_penalty(D, real, fake, labels)
        r1 = super().d_reg(D, real, fake, labels)
        return penalty if r1 is None else penalty + r1


LOSSES: dict[str, type[GANLoss]] = {cls.name: cls for cls in (NonSaturatingLoss, MinimaxLoss, LeastSquaresLoss, HingeLoss, WGANGPLoss)}


Level = tuple[float, str]  # a loss value and how a chart's legend names it
_CROSS_ENTROPY: Level = (2 * math.log(2), "2 ln 2")
# Where (D's, G's) loss sits when D cannot tell reals from fakes. ns and minimax at D = 1/2 everywhere: D's
# cross-entropy is 2 ln 2, ns's G loss -log(1/2) = ln 2, minimax's log(1 - 1/2) = -ln 2. hinge: D's loss is 2 for any
# constant score in [-1, 1], and G's (minus that score) has no level of its own. lsgan and wgan-gp get no lines.
_LEVELS: dict[str, tuple[Level | None, Level | None]] = {
    "ns": (_CROSS_ENTROPY, (math.log(2), "ln 2")), "minimax": (_CROSS_ENTROPY, (-math.log(2), "-ln 2")), "hinge": ((2.0, "2"), None),
}  # fmt: skip

# Where D's mean sigmoid(score), the logged D(x) and D(G(z)), sits when D cannot tell reals from fakes. ns and minimax
# are cross-entropies, so the sigmoid is D's probability 'real' and the level 1/2. lsgan aims D's raw score at 1 for
# reals and 0 for fakes: a D that cannot tell scores 1/2, sigmoid(1/2) ~ 0.622. hinge (any shared score within the
# margin is an optimum) and wgan-gp (a critic's scores drift freely) have no level: their curves meet, somewhere.
_D_OUTPUT_LEVELS: dict[str, Level] = {
    "ns": (0.5, "0.5"),
    "minimax": (0.5, "0.5"),
    "lsgan": (1 / (1 + math.exp(-0.5)), "sigmoid(0.5) = 0.622"),
}


def d_output_level(loss_name: str | None) -> Level | None:
    """Where the D(x) and D(G(z)) curves (mean sigmoid of D's score) sit when D cannot tell, or None for no fixed level."""
    return _D_OUTPUT_LEVELS.get(loss_name) if isinstance(loss_name, str) else None


# Terms the logged loss_D / loss_G carry on top of the game's own loss (AC's cross-entropy, MS, R1, recall)
EXTRA_TERMS = ("ac_weight", "ms_weight", "r1_gamma", "recall_weight")


def extra_terms(loss: object) -> list[str]:
    """The extra terms a run's loss section (config.json's dict or a LossConfig) turns on, e.g. ['ac_weight']."""
    get = loss.get if isinstance(loss, dict) else lambda k: getattr(loss, k, None)
    return [k for k in EXTRA_TERMS if isinstance(get(k), (int, float)) and get(k) > 0]


def indifference_levels(loss: object) -> tuple[Level | None, Level | None]:
    """(D's, G's) loss where D cannot tell reals from fakes, each None where the loss has no such level.

    `loss` is a loss name, or a run's loss section: extra terms in the logged losses leave them no such level.
    """
    if not isinstance(loss, str):
        if extra_terms(loss):
            return None, None
        loss = loss.get("name") if isinstance(loss, dict) else getattr(loss, "name", None)
    return _LEVELS.get(loss, (None, None)) if isinstance(loss, str) else (None, None)


def build_loss(cfg: LossConfig | str) -> GANLoss:
    """Loss object for a loss config (a bare name takes the default weights), or a one-line error listing the choices."""
    cfg = LossConfig(name=cfg) if isinstance(cfg, str) else cfg
    if cfg.name not in LOSSES:
        raise ConfigError(f"unknown loss '{cfg.name}'; choose one of {', '.join(LOSSES)}")
    cls = LOSSES[cfg.name]
    extra = {"gp_weight": cfg.gp_weight} if issubclass(cls, WGANGPLoss) else {}
    return cls(r1_gamma=cfg.r1_gamma, diffaug=cfg.diffaug, ac_weight=cfg.ac_weight, ms_weight=cfg.ms_weight, twin_ac=cfg.twin_ac,
               recall_weight=cfg.recall_weight, **extra)  # fmt: skip


def _pack_of(D: nn.Module) -> int:
    # A PacGAN D judges `pack` consecutive samples as one input, so penalties treat each pack as one point.
    return getattr(getattr(D, "module", D), "pack", 1)


def _input_grad(D: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """d sum(D(x)) / dx, kept in the graph so a penalty on it trains D; x must require grad."""
    (grad,) = torch.autograd.grad(D(x, labels).sum(), x, create_graph=True)  # (B, C, H, W) or (B, F)
    return grad


def gradient_penalty(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP's E[(|grad D(x_hat)| - 1)^2] at x_hat = eps * real + (1 - eps) * fake, one eps per sample (per pack for PacGAN)."""
    B, pack = real.shape[0], _pack_of(D)
    # One mixing weight per sample, broadcast over its pixels: x_hat lies on the straight line between a real
    # and a fake, where the optimal critic has gradient norm 1. A per-pixel eps would leave that line.
    eps = torch.rand(B // pack, *[1] * (real.dim() - 1), dtype=real.dtype, device=real.device)  # (B/pack, 1, 1, 1) or (B/pack, 1)
    eps = eps.repeat_interleave(pack, dim=0)  # (B, 1, 1, 1): the members of a pack share one eps
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)  # (B, C, H, W)
    grad = _input_grad(D, x_hat, labels)  # (B, C, H, W)
    norm = grad.reshape(B // pack, -1).norm(dim=1)  # (B/pack,): over all dims but the batch (and across a pack)
    return (norm - 1).square().mean()


def r1_penalty(D: nn.Module, real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """R1 (Mescheder et al. 2018, https://arxiv.org/abs/1801.04406): E[|grad_x D(x)|^2] on reals, before the gamma/2 weight."""
    B, pack = real.shape[0], _pack_of(D)
    x = real.detach().requires_grad_(True)  # (B, C, H, W)
    grad = _input_grad(D, x, labels)  # (B, C, H, W)
    return grad.reshape(B // pack, -1).square().sum(dim=1).mean()


# ---------------------------------------------------------------- autoencoders (one phase: reconstruct)


def reconstruction_loss(pre_tanh: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between the decoder's image and the real one, both read as [0, 1] pixels, summed per image, batch mean."""
    # The decoder's image is tanh(h) in [-1, 1], i.e. sigmoid(2h) in [0, 1]: BCE on the logits 2h is exact and
    # never takes log(0). Kingma & Welling's Bernoulli decoder; summed over pixels so that one image's likelihood
    # is weighed against its KL term at the scale the ELBO asks for. Grey targets make its minimum > 0.
    target = (real + 1) / 2  # (B, C, H, W) in [0, 1]
    return F.binary_cross_entropy_with_logits(2 * pre_tanh, target, reduction="sum") / real.shape[0]


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) in closed form, summed over z's dimensions, batch mean."""
    return -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(dim=1).mean()  # mu, logvar: (B, z_dim)
