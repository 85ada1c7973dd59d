"""Decode one image file into a square uint8 array the way every folder dataset needs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# What Pillow raises for files it cannot read: broken headers, truncated data, absurd sizes.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, Image.DecompressionBombError)

_SIXTEEN_BIT = ("I", "I;16", "I;16B", "I;16L", "I;16N")
GREY_MODES = ("1", "L", "LA", "La", "P;L", "F", *_SIXTEEN_BIT)  # Pillow modes with one colour channel (P is a palette: colour)


def decode_image(path: Path, resolution: int, channels: int) -> np.ndarray:
    """Decode to (channels, resolution, resolution) uint8: upright, flattened onto white, resized, centre-cropped."""
    with Image.open(path) as im:
        # JPEGs can decode at 1/2, 1/4, 1/8 scale for free; keep at least 2x the target for a clean resize.
        im.draft(None, (2 * resolution, 2 * resolution))
        im = ImageOps.exif_transpose(im)  # phone photos store "rotate me" in EXIF instead of rotating pixels
        im = _to_mode(im, "L" if channels == 1 else "RGB")
        # Resize the shorter side to `resolution`, then cut the centre square (fit crops first: same result, less work).
        im = ImageOps.fit(im, (resolution, resolution), Image.Resampling.LANCZOS)
        arr = np.array(im, dtype=np.uint8).reshape(resolution, resolution, channels)  # (H, W, C) uint8
    return arr.transpose(2, 0, 1)  # (C, H, W) uint8


def _to_mode(im: Image.Image, mode: str) -> Image.Image:
    if im.mode in _SIXTEEN_BIT:
        # Pillow's convert("L") clips 16-bit values at 255 instead of scaling them down.
        arr = (np.asarray(im).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)  # (H, W) uint8
        im = Image.fromarray(arr, "L")
    if im.mode == "F":
        # Floating-point pixels (scientific TIFFs) are mostly 0..1, which convert("L") clips to black; 0..255 stays as is.
        arr = np.asarray(im, dtype=np.float64)  # (H, W) float64
        arr = arr * 255 if np.nanmax(arr, initial=0) <= 1 else arr
        im = Image.fromarray(np.nan_to_num(arr).clip(0, 255).round().astype(np.uint8), "L")
    if "A" in im.mode or "a" in im.mode or "transparency" in im.info:
        # Transparent pixels keep arbitrary colours underneath; show them as white, as a viewer would.
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return im.convert(mode)


def decode_failure(exc: BaseException) -> str:
    """A short reason for a file that failed to decode, for the skipped-files report."""
    if isinstance(exc, UnidentifiedImageError):
        return "cannot identify image file"
    if isinstance(exc, Image.DecompressionBombError):
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6  # Pillow refuses at twice the pixels it warns at
        return f"too many pixels for Pillow's decompression-bomb guard; shrink it below {limit:.0f} megapixels"
    text = str(exc).strip()
    if "truncated" in text:
        return "truncated"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return (text.splitlines()[0] if text else type(exc).__name__)[:80]
