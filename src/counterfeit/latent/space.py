"""Points of a generator's input space and the paths between them: lerp, slerp, decoding.

An unconditional G reads a noise vector z; the conditional G (cdcgan) reads z beside a learned class code,
so a point here is a `Latent` of both parts, and every operation acts on each part on its own: moving
between two classes with one z changes the code and leaves z exactly where it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_EPS = 1e-7


@dataclass
class Latent:
    """A batch of generator inputs: noise z (N, z_dim) and, for a conditional G, its class code (N, code_dim)."""

    z: torch.Tensor  # (N, z_dim)
    code: torch.Tensor | None = None  # (N, code_dim) or None for an unconditional G

    def __len__(self) -> int:
        return len(self.z)

    def __getitem__(self, idx) -> Latent:
        return Latent(self.z[idx], None if self.code is None else self.code[idx])

    def map(self, fn) -> Latent:
        """Apply fn to each part (z, then code)."""
        return Latent(fn(self.z), None if self.code is None else fn(self.code))

    def flat(self) -> torch.Tensor:
        """z and code side by side, (N, z_dim + code_dim): the conditional G's actual input."""
        return self.z if self.code is None else torch.cat([self.z, self.code], dim=1)  # (N, D)


def cat(latents: list[Latent]) -> Latent:
    """Stack latents along the batch."""
    codes = [lat.code for lat in latents]
    return Latent(torch.cat([lat.z for lat in latents]), None if codes[0] is None else torch.cat(codes))


def is_conditional(G: nn.Module) -> bool:
    """True for a G that takes a class code beside z (the cdcgan generator)."""
    return getattr(G, "num_classes", 0) > 0 and hasattr(G, "from_code")


def class_codes(G: nn.Module) -> torch.Tensor:
    """The conditional G's learned class codes (num_classes, code_dim), one row per class."""
    return G.embed.weight.detach()  # (C, code_dim)


def split(G: nn.Module, w: torch.Tensor) -> Latent:
    """Cut a flat input (N, z_dim [+ code_dim]) back into a Latent."""
    return Latent(w[:, : G.z_dim], w[:, G.z_dim :] if is_conditional(G) else None)


def decode(G: nn.Module, latent: Latent | torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) in G's range for a Latent (or a flat input); differentiable, so projection can use it."""
    lat = latent if isinstance(latent, Latent) else split(G, latent) if is_conditional(G) else Latent(latent, None)
    return G(lat.z) if lat.code is None else G.from_code(lat.z, lat.code)  # (N, C, H, W)


@torch.inference_mode()
def decode_batched(G: nn.Module, latent: Latent, batch_size: int = 1000) -> torch.Tensor:
    """decode() in batches without gradients (G in eval mode, so batches don't affect each other)."""
    return torch.cat([decode(G, latent[i : i + batch_size]).float().cpu() for i in range(0, len(latent), batch_size)])


def _t(t, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t, dtype=like.dtype, device=like.device).unsqueeze(-1)  # (..., 1)


def lerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """(1 - t) a + t b for vectors (..., D); t is a number or a tensor broadcasting against (...)."""
    t = _t(t, a)
    return a + t * (b - a)  # (..., D)


def slerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """Spherical interpolation of vectors (..., D): the direction moves along the great circle, the length linearly.

    For unit vectors this is Shoemake's slerp and every point stays on the sphere; for Gaussian z of
    different lengths the length still goes straight from |a| to |b| (never through the hollow middle
    that lerp crosses). Near-parallel (or zero) vectors fall back to lerp; exactly opposite ones have no
    unique great circle, and lerp is used there too.
    """
    t = _t(t, a)
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)  # (..., 1)
    ua, ub = a / na.clamp_min(_EPS), b / nb.clamp_min(_EPS)  # (..., D)
    # The angle from the chord lengths (Kahan), not arccos of a dot product: that rounds identical vectors to an angle
    # of ~6e-4, off the lerp fallback, so a point walked to itself drifted by float rounding.
    omega = 2 * torch.atan2((ua - ub).norm(dim=-1, keepdim=True), (ua + ub).norm(dim=-1, keepdim=True))  # (..., 1)
    so = torch.sin(omega)
    ok = (so > 1e-4) & (na > _EPS) & (nb > _EPS)  # (..., 1) where the great circle is well defined
    safe = torch.where(ok, so, torch.ones_like(so))
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / safe  # (..., D) unit length
    spherical = direction * (na + t * (nb - na))  # (..., D)
    return torch.where(ok, spherical, a + t * (b - a))  # (..., D)


MODES = {"lerp": lerp, "slerp": slerp}


def path(a: Latent, b: Latent, steps: int, mode: str = "slerp") -> Latent:
    """Interpolate each row of a to the same row of b in `steps` points: a Latent of N * steps rows, row-major."""
    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
    fn = MODES[mode]
    ts = torch.linspace(0.0, 1.0, steps, dtype=a.z.dtype)  # (T,)

    def part(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = fn(x[:, None, :], y[:, None, :], ts[None, :])  # (N, T, D)
        out[:, 0], out[:, -1] = x, y  # the endpoints exactly, not up to rounding
        return out.flatten(0, 1)  # (N * T, D)

    return Latent(part(a.z, b.z), None if a.code is None else part(a.code, b.code))
