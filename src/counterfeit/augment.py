"""DiffAugment (Zhao et al. 2020, https://arxiv.org/abs/2006.10738): differentiable augmentations for small data sets.

D sees every image, real or fake, through the same random augmentations, and G's gradient flows back
through them, so D cannot memorise a small training set and G is never taught to produce the
augmentations themselves. Every draw uses the global torch RNG, so a resumed run draws the same ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .config import ConfigError


def _brightness(x: torch.Tensor) -> torch.Tensor:
    """Add one offset in [-0.5, 0.5) per image."""
    return x + (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)  # (B, C, H, W)


def _saturation(x: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's distance from its grey value by a factor in [0, 2); grey images have no saturation."""
    if x.shape[1] == 1:
        return x  # no draw either: grey runs keep the same random stream with or without it
    grey = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    return (x - grey) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + grey


def _contrast(x: torch.Tensor) -> torch.Tensor:
    """Scale each image's distance from its mean by a factor in [0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to 1/8 of its size in each direction; pixels shifted in are zeros."""
    B, C, H, W = x.shape
    max_dy, max_dx = int(H * ratio + 0.5), int(W * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (B, 1, 1), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (B, 1, 1), device=x.device)
    rows = torch.arange(H, device=x.device).view(1, H, 1) + dy  # (B, H, 1) source row of each output row
    cols = torch.arange(W, device=x.device).view(1, 1, W) + dx  # (B, 1, W)
    inside = ((rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)).unsqueeze(1)  # (B, 1, H, W)
    src = (rows.clamp(0, H - 1) * W + cols.clamp(0, W - 1)).view(B, 1, H * W).expand(B, C, H * W)  # (B, C, H*W)
    moved = x.reshape(B, C, H * W).gather(2, src).view(B, C, H, W)  # gather keeps the gradient path to x
    return moved * inside.to(x.dtype)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of half the image size per image, centred anywhere (clipped at the border)."""
    B, _, H, W = x.shape
    size_y, size_x = int(H * ratio + 0.5), int(W * ratio + 0.5)
    cy = torch.randint(0, H + (1 - size_y % 2), (B, 1, 1), device=x.device)  # centre row
    cx = torch.randint(0, W + (1 - size_x % 2), (B, 1, 1), device=x.device)
    top, left = cy - size_y // 2, cx - size_x // 2  # (B, 1, 1)
    rows = torch.arange(H, device=x.device).view(1, H, 1)
    cols = torch.arange(W, device=x.device).view(1, 1, W)
    hole = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)  # (B, H, W)
    return x * (~hole).unsqueeze(1).to(x.dtype)  # (B, C, H, W)


POLICIES: dict[str, list[Callable[[torch.Tensor], torch.Tensor]]] = {
    "color": [_brightness, _saturation, _contrast],
    "translation": [_translation],
    "cutout": [_cutout],
}


def parse_policy(policy: str) -> list[str]:
    """The policy names in a comma list such as 'color,translation,cutout' ('' is none), or a one-line error."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ConfigError(f"--diffaug '{policy}' has unknown part(s) {', '.join(bad)}; use a comma list of {', '.join(POLICIES)}")
    return names


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """Images (B, C, H, W) through the policy's random, differentiable augmentations; '' returns x itself."""
    for name in parse_policy(policy):
        for fn in POLICIES[name]:
            x = fn(x)  # (B, C, H, W)
    return x
