"""The Generate panel: samples of a run as a PNG grid or a zip, through the library's one sampling path."""

from __future__ import annotations

import csv
import io
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoints import CheckpointError, list_checkpoints
from ..config import MAX_SEED
from ..export import default_count, grid_tiles, resolve_class, sample_labels, toy_scatter
from ..runs import LoadedRun, conditional_class_names, load_run, run_data_kind
from ..sample import generate, image_grid, png_bytes, to_pil
from .params import Params, StudioError, run_path

MAX_COUNT = 256  # images per request: a 16x16 grid, or a zip of 256 PNGs
MAX_POINTS = 10_000  # a 2-D toy's points per request: an MLP makes 10k in milliseconds, and 4x sample's 2,500 default


def count_limits(points: bool) -> tuple[int, int]:
    """(default, most) samples one Generate request draws: as `counterfeit sample` without -n, capped per kind."""
    return default_count(points), MAX_POINTS if points else MAX_COUNT


class ModelCache:
    """The last few loaded generators, keyed by run, weights (EMA or not) and newest checkpoint, so a run that is
    still training is reloaded as soon as it writes a new checkpoint."""

    def __init__(self, size: int = 4):
        self.size = size
        self._items: OrderedDict[tuple, LoadedRun] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_dir: Path, ema: bool = True) -> LoadedRun:
        """The run's generator (newest checkpoint), loaded once and shared by concurrent requests."""
        ckpts = list_checkpoints(run_dir)
        if not ckpts:
            raise StudioError(f"{run_dir.name} has no checkpoint yet; wait for its first snapshot", 409)
        key = (str(run_dir), ema, ckpts[-1].name)
        with self._lock:  # one load at a time: 20 simultaneous first requests must not load 20 copies
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            try:
                run = load_run(run_dir, checkpoint=ckpts[-1], ema=ema)  # the very checkpoint the key names
            except CheckpointError:
                run = load_run(run_dir, checkpoint=list_checkpoints(run_dir)[-1], ema=ema)  # pruned while we read: once more
                key = (str(run_dir), ema, run.checkpoint.name)
            self._items[key] = run
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return run


@dataclass
class Request:
    """One generate request from the studio page, validated."""

    run_dir: Path
    seed: int
    n: int
    class_name: str | None
    truncation: float
    ema: bool
    fmt: str
    download: bool = False  # only changes the response headers: attachment instead of inline


def parse_request(root: Path, params: Params) -> Request:
    """The Generate parameters, checked: run, seed, n, class, truncation, ema, format, download."""
    run_dir = run_path(root, params.str("run", None, 255))
    default, most = count_limits(run_data_kind(run_dir) == "points")  # None (a broken config) fails at loading
    req = Request(
        run_dir=run_dir,
        seed=params.int("seed", 0, 0, MAX_SEED),
        n=params.int("n", default, 1, most),
        class_name=params.str("class", None, 100),
        truncation=params.float("truncation", 1.0, 0.0, 1.0, lo_open=True),
        ema=params.bool("ema", True),
        fmt=params.choice("format", "png", ("png", "zip")),
        download=params.bool("download", False),
    )
    params.done()
    return req


def render(cache: ModelCache, req: Request) -> tuple[bytes, str, str]:
    """(body, media type, file name) for a Generate request."""
    run = cache.get(req.run_dir, req.ema)
    labels = sample_labels(run, req.n, req.class_name)
    points = run.spec.data_kind == "points"
    x = generate(run.G, None if points else run.spec.pixel_range, req.n, req.seed, labels=labels, truncation=req.truncation)
    tag = f"{run.run_dir.name}-seed{req.seed}-n{req.n}" + (f"-class{resolve_class(run, req.class_name)}" if req.class_name else "")
    if req.fmt == "png":
        img = toy_scatter(run, x, req.seed) if points else image_grid(*grid_tiles(x, labels, req.class_name))  # (n, 2) or (n, C, H, W)
        return png_bytes(img), "image/png", tag + ".png"
    return _zip(run, x, labels, points, req.seed), "application/zip", tag + ".zip"


def _zip(run: LoadedRun, x: torch.Tensor, labels: torch.Tensor | None, points: bool, seed: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if points:
            zf.writestr("scatter.png", png_bytes(toy_scatter(run, x, seed)))  # as counterfeit sample draws it
            zf.writestr("points.csv", _csv(["x", "y"], x.numpy().round(6).tolist()))
        else:
            arr = x.permute(0, 2, 3, 1).numpy()  # (n, H, W, C) uint8
            for i, img in enumerate(arr):
                zf.writestr(f"{i:04d}.png", png_bytes(to_pil(img)))
        if labels is not None:
            names = conditional_class_names(run)
            zf.writestr(
                "labels.csv", _csv(["file", "class", "name"], [[f"{i:04d}.png", int(c), names[int(c)]] for i, c in enumerate(labels)])
            )
    return buf.getvalue()


def _csv(header: list[str], rows: list) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue()


def run_info(run: LoadedRun) -> dict:
    """What the Generate and Latent panels need to know about a run's model."""
    names = conditional_class_names(run)
    default, most = count_limits(run.spec.data_kind == "points")
    return {
        "model": run.config.model.name, "family": run.spec.family, "data_kind": run.spec.data_kind,
        "conditional": run.spec.conditional, "classes": names if run.spec.conditional else [], "z_dim": int(run.G.z_dim),
        "checkpoint": run.checkpoint.name, "kimg": round(int(run.state.get("cur_nimg", 0)) / 1000, 3),
        "default_count": default, "max_count": most,
    }  # fmt: skip
