"""The one sampling path: seeded noise in, uint8 images (or 2-D points) out; grids and scatter plots."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from .fileio import atomic_write_bytes

_NOISE_BLOCK = 256
GRID_BACKGROUND = 40  # grey of the gaps between grid tiles (and of empty tiles), set off from black and white images


def make_noise(n: int, z_dim: int, seed: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """(n, z_dim) standard normal noise, the same for a seed on every device; the first k rows don't depend on n."""
    g = torch.Generator().manual_seed(int(seed))
    # torch's CPU sampler takes a different path for small and large tensors, so draw whole
    # fixed-size blocks: row i of seed s is then the same whatever n is.
    blocks = -(-n // _NOISE_BLOCK)
    z = torch.cat([torch.randn(_NOISE_BLOCK, z_dim, generator=g) for _ in range(blocks)]) if blocks else torch.empty(0, z_dim)
    return z[:n].to(device)  # (n, z_dim)


class NoiseStream:
    """The rows of make_noise(., z_dim, seed) handed out in consecutive chunks, each drawn once (no redraw from row 0)."""

    def __init__(self, z_dim: int, seed: int):
        self.z_dim, self.g = z_dim, torch.Generator().manual_seed(int(seed))
        self.buffer = torch.empty(0, z_dim)

    def take(self, k: int, device: str | torch.device = "cpu") -> torch.Tensor:
        """The next k rows (k, z_dim)."""
        blocks = -(-max(k - len(self.buffer), 0) // _NOISE_BLOCK)  # whole blocks, as make_noise draws them
        if blocks:
            self.buffer = torch.cat([self.buffer, *(torch.randn(_NOISE_BLOCK, self.z_dim, generator=self.g) for _ in range(blocks))])
        z, self.buffer = self.buffer[:k], self.buffer[k:]
        return z.to(device)  # (k, z_dim)


@torch.inference_mode()
def sample(G: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 1000) -> torch.Tensor:
    """Run G on z in batches (batch-independent: G must be in eval mode); output in G's own range."""
    outs = [
        G(zb, None if labels is None else labels[i : i + batch_size]) for i, zb in zip(range(0, len(z), batch_size), z.split(batch_size))
    ]
    return torch.cat(outs).float().cpu()  # (n, C, H, W) or (n, 2)


@torch.inference_mode()
def rejection_sample(
    G: nn.Module, D: nn.Module, n: int, seed: int, percentile: float = 90.0, device: str | torch.device = "cpu", max_draws: int = 1000
) -> tuple[torch.Tensor, float]:
    """Discriminator rejection sampling: (n samples in G's range, acceptance rate), unconditional G and D in eval mode.

    After Azadi et al. 2019 (DRS): a well-trained cross-entropy D's logit estimates log p_data(x) / p_G(x), so keeping
    a candidate with probability min(1, exp(logit - M)) thins out what G over-produces (the bridges between a toy's modes).
    M is the `percentile`-th percentile of the first batch's logits: the best-judged candidates are always kept, and
    a higher percentile rejects more. Candidates and coin flips come from `seed`, so the result is reproducible.
    This is rejection sampling with its bound lowered from the highest logit to a percentile, not the paper's gamma shift
    of each acceptance in logit space: the percentile caps the share rejected, and the spread of the logits sets it.
    """
    if getattr(G, "num_classes", 0):
        raise ValueError("rejection sampling needs an unconditional run: its D judges without labels here")
    if getattr(D, "pack", 1) > 1:
        raise ValueError("rejection sampling needs one verdict per sample; this run's D judges packs (--pack), so it cannot: drop --drs")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    noise, coins = NoiseStream(G.z_dim, seed), torch.Generator().manual_seed(int(seed) + 1)
    batch, kept, drawn, accepted, M = max(n, 1000), [], 0, 0, None
    while accepted < n:
        if drawn >= max_draws * n:
            raise ValueError(f"rejection sampling kept too few of {drawn} candidates; lower the percentile (now {percentile:g})")
        x = sample(G, noise.take(batch, device))  # (batch, ...) in G's range, on the CPU
        logits = D(x.to(device)).float().reshape(-1).cpu()  # (batch,)
        if M is None:
            M = torch.quantile(logits, percentile / 100).item()
        keep = torch.rand(batch, generator=coins) < (logits - M).exp().clamp(max=1.0)  # (batch,) bool
        kept.append(x[keep])
        drawn, accepted = drawn + batch, accepted + int(keep.sum())
    return torch.cat(kept)[:n], accepted / drawn


@torch.inference_mode()
def reconstruct(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Autoencoders: decoder(code of x) for images x in the model's range, in batches (both in eval mode; a VAE decodes mu)."""
    outs = [decoder(encoder(xb)[0]) for xb in x.split(batch_size)]  # each (b, C, H, W)
    return torch.cat(outs).float().cpu()  # (n, C, H, W)


def to_uint8(x: torch.Tensor, pixel_range: tuple[float, float]) -> torch.Tensor:
    """Map images from `pixel_range` to uint8 [0, 255] with rounding."""
    lo, hi = pixel_range
    return ((x - lo) * (255.0 / (hi - lo))).round().clamp_(0, 255).to(torch.uint8)


def from_uint8(x: torch.Tensor, pixel_range: tuple[float, float]) -> torch.Tensor:
    """Map uint8 images to floats in `pixel_range` (the reals' preprocessing, done per batch)."""
    lo, hi = pixel_range
    return x.float().mul_((hi - lo) / 255.0).add_(lo)


def default_labels(G: nn.Module, n: int, device="cpu") -> torch.Tensor | None:
    """Balanced labels (n,) 0,1,..,C-1,0,1,.. for a conditional G (one with `num_classes`), else None."""
    c = getattr(G, "num_classes", 0)
    return torch.arange(n, device=device) % c if c else None  # (n,)


def truncate(z: torch.Tensor, psi: float) -> torch.Tensor:
    """The truncation trick in z: pull noise toward the prior's mean 0 by `psi` (1 = off); typical, less varied samples."""
    # StyleGAN's w_avg + psi * (w - w_avg) with the N(0, I) prior's mean; unlike BigGAN's resampling it keeps
    # every seed's image and moves it smoothly as psi changes.
    return z if psi == 1.0 else z * psi  # (n, z_dim)


def generate(
    G: nn.Module, pixel_range: tuple[float, float] | None, n: int, seed: int, device="cpu", labels: torch.Tensor | None = None,
    truncation: float = 1.0,
) -> torch.Tensor:  # fmt: skip
    """n samples for a seed: uint8 images (n, C, H, W), or float points (n, 2) when pixel_range is None.

    A conditional G gets `labels`, or balanced labels (see default_labels) when none are given; `truncation` < 1
    pulls the noise toward its mean (see truncate).
    """
    labels = default_labels(G, n, device) if labels is None else labels.to(device)
    out = sample(G, truncate(make_noise(n, G.z_dim, seed, device), truncation), labels)
    return out if pixel_range is None else to_uint8(out, pixel_range)


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> Image.Image:
    """Tile uint8 images (N, C, H, W) into one PIL image with `nrow` per row (default: square-ish)."""
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), GRID_BACKGROUND, dtype=np.uint8)
    arr = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    for i in range(n):
        r, q = divmod(i, nrow)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = arr[i]
    return to_pil(canvas)


def grid_by_class(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Uint8 images (N, C, H, W) rearranged one class per row, in sample order within a row, for image_grid.

    Returns (tiles, columns): short rows are padded with tiles of the grid's background, and classes with no
    image get no row, so the images stay the ones an npz of the same seed holds, only placed by class.
    """
    classes = torch.unique(labels)  # (K,) sorted
    rows = [torch.nonzero(labels == k).squeeze(1) for k in classes]  # each (n_k,)
    ncol = max(len(r) for r in rows)
    tiles = torch.full((len(rows) * ncol, *images.shape[1:]), GRID_BACKGROUND, dtype=images.dtype)  # (K * ncol, C, H, W)
    for i, r in enumerate(rows):
        tiles[i * ncol : i * ncol + len(r)] = images[r]
    return tiles, ncol


def to_pil(image_hwc: np.ndarray) -> Image.Image:
    """A uint8 (H, W, C) array as a PIL image: grey ("L") for one channel, else RGB."""
    return Image.fromarray(image_hwc[..., 0] if image_hwc.shape[-1] == 1 else image_hwc)


def png_bytes(img: Image.Image) -> bytes:
    """Encode a PIL image as PNG bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def gif_bytes(frames: list[Image.Image], durations_ms: list[int], disposal: int | None = None) -> bytes:
    """Encode PIL frames as a looping GIF, frame i shown durations_ms[i] ms; disposal 1 keeps each frame under the next."""
    buf = io.BytesIO()
    extra = {} if disposal is None else {"disposal": disposal}
    # optimize=False: Pillow's palette optimisation made these GIFs larger and slower to write, not smaller.
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=durations_ms, loop=0, optimize=False, **extra)
    return buf.getvalue()


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
    """Write a grid PNG of uint8 images atomically, optionally enlarged `scale` times (nearest)."""
    img = image_grid(images, nrow)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    atomic_write_bytes(Path(path), png_bytes(img))
    return Path(path)


def scatter_lim(reals: torch.Tensor) -> float:
    """The axes' half-width for a toy's scatter plots: its real points' reach and a margin, so every frame has one scale."""
    return float(reals.abs().max()) * 1.25 + 1e-6


def scatter_image(points: torch.Tensor, reals: torch.Tensor | None = None, size: int = 512, lim: float | None = None,
                  title: str = "", axes: list[str] | None = None) -> Image.Image:  # fmt: skip
    """Scatter plot of 2-D points (green fakes over grey reals) as a PIL image, no plotting library needed.

    `title` goes top right (say, the kimg), `axes` names x and y (ducks-cows: weight, size); a fixed `lim` keeps a run's
    frames on one scale, and the fakes beyond it are counted on the picture rather than silently left out.
    """
    pts = [p for p in (reals, points) if p is not None]
    lim = lim or float(torch.cat(pts).abs().max()) * 1.1 + 1e-6
    off = int((~(points.float().abs() <= lim).all(dim=1)).sum())  # NaN compares False: counted off the plot too
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    mid = size / 2
    draw.line([(0, mid), (size, mid)], fill=(220, 220, 220))
    draw.line([(mid, 0), (mid, size)], fill=(220, 220, 220))
    for p, color, r in ((reals, (150, 150, 150), 1.5), (points, (20, 150, 60), 1.5)):
        if p is None:
            continue
        xy = ((p.float().numpy() / lim) * (size / 2 - 4)) * np.array([1, -1]) + mid
        for x, y in xy:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
    left = f"axes: +/-{lim:.2f}" + (f" (x: {axes[0]}, y: {axes[1]})" if axes else "")
    _boxed_text(draw, (4, 4), left)
    parts = [t for t in (title, f"{off} of {len(points)} {'fake' if len(points) == 1 else 'fakes'} off the plot" if off else "") if t]
    corner = "; ".join(parts)
    if corner and draw.textlength(left) + 12 + draw.textlength(corner) > size - 8:
        lines = [(t, 16 + 12 * i) for i, t in enumerate(parts)]  # too long beside the axes line (a --drs share): below it
    else:
        lines = [(corner, 4)] if corner else []
    for text, y in lines:
        _boxed_text(draw, (size - 4 - draw.textlength(text), y), text)
    # Which colour is which, grey real points only where they were drawn: one row in the bottom margin, which the reals
    # leave free (a second row reached up over grid25's and ducks-cows' bottom-left mode).
    legend = [(c, t) for p, c, t in ((reals, (150, 150, 150), "real"), (points, (20, 150, 60), "fakes")) if p is not None]
    x, y = 6, size - 16
    for color, text in legend:
        draw.ellipse([x, y + 3, x + 6, y + 9], fill=color)
        _boxed_text(draw, (x + 10, y), text)
        x += 10 + int(draw.textlength(text)) + 12
    return img


def _boxed_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str) -> None:
    # On white: a G that strays fills the corners with dots, which would run through the words.
    left, top, right, bottom = draw.textbbox(xy, text)
    draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill="white")
    draw.text(xy, text, fill=(90, 90, 90))


def save_scatter(points: torch.Tensor, path: str | Path, reals: torch.Tensor | None = None, lim: float | None = None,
                 title: str = "", axes: list[str] | None = None) -> Path:  # fmt: skip
    """Write a scatter-plot PNG of 2-D points atomically (see scatter_image)."""
    atomic_write_bytes(Path(path), png_bytes(scatter_image(points, reals, lim=lim, title=title, axes=axes)))
    return Path(path)
