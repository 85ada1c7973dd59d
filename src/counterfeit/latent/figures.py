"""Pictures of latent walks and sums: strips/grids (PNG), ping-pong animations (GIF), labelled equations."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from ..fileio import atomic_write_bytes
from ..sample import gif_bytes, image_grid, png_bytes, save_grid, to_pil

BACKGROUND = 40  # the grey between tiles, as in sample.image_grid
INK = 235
GRID_PAD = 2  # sample.image_grid's gap between tiles, in image pixels


def _enlarge(img: Image.Image, scale: int) -> Image.Image:
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def save_strip(images: torch.Tensor, rows: int, path: str | Path, scale: int = 3, labels: list[str] | None = None) -> Path:
    """uint8 images (rows * steps, C, H, W), row-major, as one PNG: a strip for one row, a grid for several.

    `labels`, one per column ("" for none), are written above the columns as the equation labels its operands.
    """
    steps = len(images) // rows
    if not labels:
        return save_grid(images, path, nrow=steps, scale=scale)
    _, c, h, w = images.shape
    grid = _enlarge(image_grid(images, nrow=steps, pad=GRID_PAD), scale)
    cell_w, pad = w * scale, GRID_PAD * scale
    canvas, draw, ink, small, label_h = _labelled_canvas(grid.width, grid.height, h * scale, pad, c == 1)
    canvas.paste(grid, (0, label_h))
    for q, label in enumerate(labels):
        if label:
            _label(draw, pad + q * (cell_w + pad) + cell_w // 2, label_h, label, small, cell_w + pad, ink)
    atomic_write_bytes(Path(path), png_bytes(canvas))
    return Path(path)


def walk_labels(start: str, end: str, steps: int) -> list[str]:
    """The labels of a walk's columns: its endpoints at the two ends, the fraction of the way (t) between them."""
    return [start, *(f"{k / (steps - 1):.2f}" for k in range(1, steps - 1)), end]


def save_gif(images: torch.Tensor, rows: int, path: str | Path, scale: int = 4, frame_ms: int = 90, hold_ms: int = 700) -> Path:
    """uint8 images (rows * steps, C, H, W) as a looping GIF: frame t shows step t of every row, forth and back (ping-pong)."""
    steps = len(images) // rows
    per_row = images.view(rows, steps, *images.shape[1:])  # (R, T, C, H, W)
    side = math.ceil(math.sqrt(rows))
    frames = [_enlarge(image_grid(per_row[:, t], nrow=side), scale) for t in range(steps)]
    frames = [f.convert("P") if f.mode == "RGB" else f for f in frames]
    order = list(range(steps)) + list(range(steps - 2, 0, -1))  # 0..T-1 then back to 1, and the loop closes the circle
    durations = [hold_ms if t in (0, steps - 1) else frame_ms for t in order]
    atomic_write_bytes(Path(path), gif_bytes([frames[t] for t in order], durations, disposal=1))
    return Path(path)


def _coef_text(coef: float, first: bool) -> str:
    sign = "-" if coef < 0 else ("" if first else "+")
    size = abs(coef)
    return sign if size == 1 else f"{sign}{size:g}x"


def _tile(img: torch.Tensor, scale: int) -> Image.Image:
    arr = img.permute(1, 2, 0).numpy()  # (H, W, C) uint8
    return _enlarge(to_pil(arr), scale)


def _fit(text: str, font, width: int) -> str:
    while len(text) > 3 and font.getlength(text) > width:
        text = text[:-2] + "."
    return text


def _labelled_canvas(width: int, body_h: int, cell_h: int, pad: int, grey: bool):
    """A blank canvas with a band for labels above `body_h` pixels of pictures: (canvas, draw, ink, font, band height)."""
    small = _font(max(cell_h // 7, 10))
    label_h = small.getbbox("Ag")[3] + 2 * pad
    canvas = Image.new("L" if grey else "RGB", (width, label_h + body_h), BACKGROUND if grey else (BACKGROUND,) * 3)
    return canvas, ImageDraw.Draw(canvas), INK if grey else (INK,) * 3, small, label_h


def _label(draw: ImageDraw.ImageDraw, x: int, label_h: int, text: str, font, width: int, ink) -> None:
    """`text` centred on x in the label band, shortened to fit `width` pixels."""
    if not text.isascii() and hasattr(font, "size"):  # Pillow's own font draws boxes for 'é' or '猫'
        font = _font_for(text, font.size) or font
    draw.text((x, label_h // 2), _fit(text, font, width), fill=ink, font=font, anchor="mm")


# Fonts most systems have that go past ASCII (Linux, Windows, macOS), wider scripts first. ASCII labels keep Pillow's
# own font, so the usual pictures look the same on every machine.
_WIDE_FONTS = ("NotoSansCJK-Regular.ttc", "NotoSansCJKjp-Regular.otf", "msgothic.ttc", "Arial Unicode.ttf", "arialuni.ttf",
               "DejaVuSans.ttf", "arial.ttf", "Arial.ttf")  # fmt: skip


@functools.lru_cache(maxsize=64)
def _font_for(text: str, size: int) -> ImageFont.FreeTypeFont | None:
    """The first system font in _WIDE_FONTS that draws every letter of `text`, or None (Pillow's font then)."""
    letters = {c for c in text if not c.isspace()}
    for name in _WIDE_FONTS:
        try:
            font = ImageFont.truetype(name, size)
        except OSError:  # not on this system
            continue
        missing = _glyph(font, "\U0010ffff")  # what the font draws for a letter it lacks
        if all(_glyph(font, c) != missing for c in letters):
            return font
    return None


def _glyph(font: ImageFont.FreeTypeFont, letter: str) -> bytes:
    img = Image.new("L", (2 * font.size, 2 * font.size))
    ImageDraw.Draw(img).text((0, 0), letter, font=font, fill=255)
    return img.tobytes()


def save_equation(columns: list[torch.Tensor], coefs: list[float], labels: list[str], path: str | Path, scale: int = 3) -> Path:
    """An equation picture: operand columns (each uint8 (R, C, H, W)) with their signs, '=', then the result column (last).

    `coefs` has one number per operand (len(columns) - 1); `labels` one per column, written above it.
    """
    rows, c, h, w = columns[0].shape
    cell_w, cell_h, pad = w * scale, h * scale, 2 * scale
    sign_w = max(cell_w // 2, 24)
    font = _font(max(cell_h // 3, 12))
    signs = [_coef_text(k, i == 0) for i, k in enumerate(coefs)] + ["="]
    width = pad + sum((sign_w if s else 0) + cell_w + pad for s in signs)
    canvas, draw, ink, small, label_h = _labelled_canvas(width, rows * (cell_h + pad), cell_h, pad, c == 1)
    x = pad
    for col, sign, label in zip(columns, signs, labels):
        if sign:
            for r in range(rows):
                draw.text((x + sign_w // 2, label_h + r * (cell_h + pad) + cell_h // 2), sign, fill=ink, font=font, anchor="mm")
            x += sign_w
        for r in range(rows):
            canvas.paste(_tile(col[r], scale), (x, label_h + r * (cell_h + pad)))
        _label(draw, x + cell_w // 2, label_h, label, small, cell_w + sign_w // 2, ink)
        x += cell_w + pad
    atomic_write_bytes(Path(path), png_bytes(canvas))
    return Path(path)
