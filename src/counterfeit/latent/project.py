"""Projection (GAN inversion): the latent whose image is closest to a given real image.

GANs have no way back from an image to z, so we search: Adam on z (and, for the conditional model, on
the class code) from several random starts at once, minimising the pixel error plus the distance in
the shipped evaluator's penultimate features (which cares about shapes more than about exact grey
levels). Autoencoders already have the way back, their encoder; its code can then be refined the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..sample import make_noise
from .space import Latent, class_codes, decode, is_conditional, split

FEATURE_WEIGHT = 0.01  # beside the pixel MSE: kept the class more often at no loss of wins over search (benchmarks/RESULTS.md)


@dataclass
class Projection:
    """The result of projecting N images: the best latent of each, its image and errors."""

    latent: Latent  # (N, ...) the best start of each image
    recon: torch.Tensor  # (N, C, H, W) decoded, in G's range
    error: torch.Tensor  # (N,) pixel mean squared error in [0, 1] units after optimisation
    error_start: torch.Tensor  # (N,) the same for the best start before optimisation (random z or encoder code)


def pixel_error(x: torch.Tensor, y: torch.Tensor, pixel_range: tuple[float, float]) -> torch.Tensor:
    """Per-image mean squared error (N,) of images (N, C, H, W) in `pixel_range`, measured in [0, 1] units."""
    lo, hi = pixel_range
    return ((x - y) / (hi - lo)).square().flatten(1).mean(1)  # (N,)


def _feature_fn(evaluator: nn.Module | None, pixel_range):
    """x in G's range (N, 1, 28, 28) -> evaluator features (N, D), or None when there is no evaluator."""
    if evaluator is None:
        return None
    lo, hi = pixel_range

    def feats(x: torch.Tensor) -> torch.Tensor:
        return evaluator.features((x - lo) / (hi - lo))  # (N, D)

    return feats


def optimise(G: nn.Module, target: torch.Tensor, start: torch.Tensor, pixel_range, steps: int, lr: float = 0.1,
             evaluator: nn.Module | None = None, feature_weight: float = FEATURE_WEIGHT) -> torch.Tensor:  # fmt: skip
    """Adam on flat inputs start (M, D) so that G(w) matches target (M, C, H, W); returns the final w (M, D).

    The step size decays on a cosine to zero, so the last steps settle instead of jittering.
    """
    feats = _feature_fn(evaluator, pixel_range)
    with torch.no_grad():
        target_f = feats(target) if feats else None  # (M, F)
        f_scale = target_f.square().mean().clamp_min(1e-8) if feats else None  # feature distances relative to their size
    w = start.detach().clone().requires_grad_(True)  # (M, D)
    opt = torch.optim.Adam([w], lr=lr)
    for i in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / steps))
        x = decode(G, w)  # (M, C, H, W)
        loss = pixel_error(x, target, pixel_range).sum()
        if feats:
            loss = loss + feature_weight * ((feats(x) - target_f).square().mean(1) / f_scale).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return w.detach()


def _starts(G: nn.Module, target: torch.Tensor, restarts: int, seed: int, evaluator, pixel_range) -> torch.Tensor:
    """Flat starting inputs (N * restarts, D), image-major: random z, and for a conditional G the codes of the
    classes the evaluator finds most likely (or classes in turn without an evaluator)."""
    n = len(target)
    z = make_noise(n * restarts, G.z_dim, seed, target.device)  # (N * R, z_dim)
    if not is_conditional(G):
        return z
    codes = class_codes(G)  # (C, code_dim)
    if evaluator is not None and codes.shape[0] == evaluator.num_classes:
        lo, hi = pixel_range
        with torch.no_grad():
            logits = evaluator((target - lo) / (hi - lo))  # (N, C)
        k = min(restarts, codes.shape[0])
        top = logits.topk(k, dim=1).indices  # (N, k)
        classes = top[:, torch.arange(restarts) % k]  # (N, R)
    else:
        classes = (torch.arange(restarts) % codes.shape[0]).expand(n, restarts)  # (N, R)
    return torch.cat([z, codes[classes.reshape(-1)]], dim=1)  # (N * R, z_dim + code_dim)


def _best(G: nn.Module, w: torch.Tensor, target_rep: torch.Tensor, n: int, restarts: int, pixel_range):
    """Of each image's `restarts` candidates w (N * R, D), the one with the lowest pixel error: (w (N, D), error (N,))."""
    with torch.no_grad():
        err = pixel_error(decode(G, w), target_rep, pixel_range).view(n, restarts)  # (N, R)
    best = err.argmin(dim=1)  # (N,)
    return w.view(n, restarts, -1)[torch.arange(n), best], err[torch.arange(n), best]


def project_gan(G: nn.Module, target: torch.Tensor, pixel_range, steps: int = 100, restarts: int = 4, seed: int = 0,
                evaluator: nn.Module | None = None, lr: float = 0.1, feature_weight: float = FEATURE_WEIGHT) -> Projection:  # fmt: skip
    """Project images target (N, C, H, W) in G's range into G's input by optimisation from `restarts` random starts each.

    Two phases: the first half of the steps moves every start on the pixel error alone (cheap: the
    evaluator's backward pass costs three times the generator's); the best start of each image then
    spends the second half on pixels plus evaluator features, at half the step size.
    """
    if restarts < 1 or steps < 0:
        raise ValueError(f"projection needs restarts >= 1 and steps >= 0, got {restarts} and {steps}")
    n = len(target)
    target_rep = target.repeat_interleave(restarts, dim=0)  # (N * R, C, H, W)
    start = _starts(G, target, restarts, seed, evaluator, pixel_range)  # (N * R, D)
    _, err0 = _best(G, start, target_rep, n, restarts, pixel_range)
    w = optimise(G, target_rep, start, pixel_range, steps // 2, lr)  # (N * R, D)
    w, _ = _best(G, w, target_rep, n, restarts, pixel_range)  # (N, D)
    w = optimise(G, target, w, pixel_range, steps - steps // 2, lr / 2, evaluator, feature_weight)
    with torch.no_grad():
        recon = decode(G, w)  # (N, C, H, W)
    return Projection(split(G, w), recon, pixel_error(recon, target, pixel_range), err0)


def project_encoder(G: nn.Module, encoder: nn.Module, target: torch.Tensor, pixel_range, steps: int = 0,
                    evaluator: nn.Module | None = None, lr: float = 0.02, feature_weight: float = FEATURE_WEIGHT) -> Projection:  # fmt: skip
    """Autoencoders: z = the encoder's code (a VAE's mu) of target (N, C, H, W), then `steps` of refinement by optimisation."""
    with torch.no_grad():
        z0 = encoder(target)[0]  # (N, z_dim)
        err0 = pixel_error(decode(G, z0), target, pixel_range)  # (N,)
    z = optimise(G, target, z0, pixel_range, steps, lr, evaluator, feature_weight) if steps else z0
    with torch.no_grad():
        recon = decode(G, z)  # (N, C, H, W)
        err = pixel_error(recon, target, pixel_range)
    if steps:  # refinement follows a mixed loss: keep the encoder's code where the pixels got worse
        worse = err > err0
        z[worse] = z0[worse]
        with torch.no_grad():
            recon = decode(G, z)
        err = torch.minimum(err, err0)
    return Projection(Latent(z), recon, err, err0)


def project_run_images(run, target: torch.Tensor, steps: int = 100, restarts: int = 4, seed: int = 0, device="cpu",
                       evaluator: nn.Module | None = None) -> Projection:  # fmt: skip
    """Project images target (N, C, H, W) in the run's pixel range: its encoder for autoencoders, else optimisation."""
    pixel_range = run.spec.pixel_range
    if run.spec.family == "autoencoder":
        from ..runs import load_slot

        return project_encoder(run.G, load_slot(run, "D_ema", device), target, pixel_range, steps, evaluator)
    return project_gan(run.G, target, pixel_range, steps, restarts, seed, evaluator)
