"""A run's training as an animated GIF: the fixed-noise sample grids (samples/fakes*.png) in kimg order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from .fileio import atomic_write_bytes
from .sample import gif_bytes

FAKES = re.compile(r"^fakes(\d+(?:\.\d+)?)kimg\.png$")
GIF_NAME = "timelapse.gif"
MAX_FRAMES = 60  # a 600-kimg run samples 31 grids; a long one is thinned so the GIF stays a few MB at most
FRAME_MS, LAST_FRAME_MS = 250, 2000  # the final grid is held, so the loop's restart is visible
LABEL_PX = 12  # height of the kimg caption band above each grid


def sample_grids(run_dir: str | Path) -> list[tuple[float, Path]]:
    """(kimg, path) of every fakes*.png grid in RUN/samples, oldest first."""
    folder = Path(run_dir) / "samples"
    if not folder.is_dir():
        return []
    return sorted((float(m.group(1)), p) for p in folder.iterdir() if (m := FAKES.match(p.name)) and p.is_file())


def evenly(items: list[Any], k: int) -> list[Any]:
    """Up to `k` items spread evenly from first to last (both kept)."""
    if len(items) <= k:
        return items
    if k == 1:
        return items[-1:]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def _frame(path: Path, kimg: float, size: tuple[int, int] | None) -> Image.Image:
    with Image.open(path) as im:
        grid = im.convert("L" if im.mode in ("L", "LA", "I", "I;16", "1") else "RGB")
    if size is not None and grid.size != size:  # a grid from another sampling setting: keep the animation one size
        grid = grid.resize(size, Image.NEAREST)
    frame = Image.new(grid.mode, (grid.width, grid.height + LABEL_PX), 40 if grid.mode == "L" else (40, 40, 40))
    frame.paste(grid, (0, LABEL_PX))
    ImageDraw.Draw(frame).text((3, 0), f"{kimg:g} kimg", fill=255 if grid.mode == "L" else (255, 255, 255))
    return frame


def timelapse_gif(run_dir: str | Path, max_frames: int = MAX_FRAMES) -> bytes | None:
    """The GIF bytes of up to `max_frames` sample grids, each captioned with its kimg; None when there are no grids."""
    grids = evenly(sample_grids(run_dir), max(1, max_frames))
    if not grids:
        return None
    frames: list[Image.Image] = []
    for kimg, path in grids:
        try:
            frames.append(_frame(path, kimg, None if not frames else (frames[0].width, frames[0].height - LABEL_PX)))
        except OSError:  # a damaged or half-copied grid costs its frame, not the whole animation
            continue
    if not frames:
        return None
    if frames[0].mode == "RGB":  # colour runs and toy scatter plots: one shared palette, so colours do not flicker
        palette = frames[-1].quantize(colors=255)
        frames = [f.quantize(colors=255, palette=palette, dither=Image.Dither.NONE) for f in frames]  # dithering: 5x slower here
    return gif_bytes(frames, [FRAME_MS] * (len(frames) - 1) + [LAST_FRAME_MS])


def write_timelapse(run_dir: str | Path, out: str | Path | None = None, max_frames: int = MAX_FRAMES) -> Path | None:
    """Write RUN/samples/timelapse.gif (or `out`) atomically; return its path, or None when the run has no grids yet."""
    data = timelapse_gif(run_dir, max_frames)
    if data is None:
        return None
    path = Path(out) if out is not None else Path(run_dir) / "samples" / GIF_NAME
    atomic_write_bytes(path, data)
    return path
