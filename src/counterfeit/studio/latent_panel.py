"""The Latent explorer panel: an interpolation walk, latent arithmetic, and single latent dimensions on sliders.

Interpolation and arithmetic use the library's latent module (`counterfeit.latent`: endpoints and
expressions parsed there, class concepts, lerp/slerp paths); the sliders need only the sampling path.
Images go back as PNG data URLs inside JSON, so a slider moves through frames without more requests.
"""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import torch

from ..config import MAX_SEED, ConfigError
from ..export import resolve_class
from ..latent import explore, expr, operands, space
from ..latent.concepts import Concepts, class_concepts, class_names_for
from ..runs import LoadedRun
from ..sample import image_grid, make_noise, png_bytes, sample, to_uint8
from .generate import ModelCache
from .params import Params, StudioError, run_path

MAX_STEPS = 64  # frames of one interpolation
MAX_ROWS = 8  # rows (variations) of an arithmetic result
MAX_EXPRESSION = 200  # characters
SLIDER_DIMS = 6  # latent dimensions on sliders at once
SLIDER_RANGE = 4.0  # each slider spans -4..4 (z is standard normal)


_CONCEPTS: dict[tuple[str, str], Concepts] = {}  # class concepts per (run, checkpoint): 2,000 samples judged once, not per request
_CONCEPTS_LOCK = threading.Lock()


class _Resolver(operands.Resolver):
    """The latent module's Resolver, with the run's class concepts kept between requests (one run's at a time)."""

    def concepts(self) -> Concepts:
        if self._concepts is None:
            key = (str(self.run.run_dir), self.run.checkpoint.name)
            with _CONCEPTS_LOCK:  # computed once per run, and no request sees the cache half-cleared by another
                if key not in _CONCEPTS:
                    _CONCEPTS.clear()
                    _CONCEPTS[key] = class_concepts(self.run, self.device)
                self._concepts = _CONCEPTS[key]  # each request notes the caveats of the classes it uses (Resolver.part)
        return self._concepts


def _parsed(parse, text: str, names: list[str]):
    """The latent parser's result; its errors without the file operands the studio does not take."""
    try:
        return parse(text, names)
    except ConfigError as e:
        raise StudioError(str(e).replace(expr.FILE_CHOICES, "").replace(expr.ENDPOINT_FILES, "").replace(expr.QUOTE_HINT, "")) from None


def _image_run(cache: ModelCache, root: Path, params: Params) -> LoadedRun:
    run = cache.get(run_path(root, params.str("run", None, 255)))
    if run.spec.data_kind != "images":
        raise StudioError(f"{run.run_dir.name} is a 2-D toy run; the latent explorer needs a run that makes images")
    return run


def _class_index(run: LoadedRun, params: Params) -> int | None:
    name = params.str("class", None, 100)
    return None if name is None else resolve_class(run, name)


def _data_url(images: torch.Tensor, nrow: int | None = None) -> str:
    """uint8 images (N, C, H, W) as one PNG grid in a data: URL."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image_grid(images, nrow=nrow, pad=0 if len(images) == 1 else 2))).decode()


def _no_files(ops) -> None:
    for op in ops:
        if op.kind == "file":  # the CLI may read images and .npz files; a web request must not name paths on this disk
            raise StudioError(f"'{op.label}': files are not available in the studio; use seeds, [seed lists] and class names")


def interpolate(cache: ModelCache, root: Path, params: Params) -> dict:
    """Frames of a walk from endpoint a to endpoint b (seeds or classes), lerp or slerp."""
    run = _image_run(cache, root, params)
    a_text, b_text = params.str("a", "0", 100), params.str("b", "1", 100)
    steps = params.int("steps", 16, 2, MAX_STEPS)
    mode = params.choice("mode", "slerp", list(space.MODES))
    seed = params.int("seed", 0, 0, MAX_SEED)
    class_index = _class_index(run, params)
    params.done()
    names = class_names_for(run)
    a, b = _parsed(expr.parse_endpoint, a_text, names), _parsed(expr.parse_endpoint, b_text, names)
    _no_files([a, b])
    res = _Resolver(run, 1, seed, class_index=class_index)
    frames = explore.walk_images(run, res, a, b, steps, mode)  # (T, C, H, W) uint8
    notes = [*explore.prior_notes(run, [a, b]), *res.notes]
    labels, _ = explore.endpoint_labels(res, names, [a, b])  # one row: never a per-row note
    return {"frames": [_data_url(f[None]) for f in frames], "labels": labels, "mode": mode, "notes": notes}


def arithmetic(cache: ModelCache, root: Path, params: Params) -> dict:
    """Every operand's picture and the result of an expression such as "Sneaker - Sandal + Ankle boot"."""
    run = _image_run(cache, root, params)
    text = params.str("expr", None, MAX_EXPRESSION)
    rows = params.int("rows", 3, 1, MAX_ROWS)
    seed = params.int("seed", 0, 0, MAX_SEED)
    class_index = _class_index(run, params)
    params.done()
    names = class_names_for(run)
    if not text or not text.strip():
        raise StudioError(f"parameter 'expr' is missing; write one such as \"{' - '.join(names[:2]) or '[1,2] - [3]'}\"")
    terms = _parsed(expr.parse_expression, text, names)
    _no_files([op for _, op in terms])
    res = _Resolver(run, rows, seed, class_index=class_index)
    columns = explore.equation_columns(run, res, terms)  # each (R, C, H, W)
    return {
        "terms": [{"coef": coef, "label": op.label, "image": _data_url(col, nrow=1)} for (coef, op), col in zip(terms, columns)],
        "result": _data_url(columns[-1], nrow=1),
        "notes": [*explore.prior_notes(run, [op for _, op in terms]), *res.notes],
    }


def dims(cache: ModelCache, root: Path, params: Params) -> dict:
    """One sample with a few of its z dimensions set by sliders: `first` names the first dimension shown."""
    run = _image_run(cache, root, params)
    seed = params.int("seed", 0, 0, MAX_SEED)
    z_dim = int(run.G.z_dim)
    first = params.int("first", 0, 0, max(0, z_dim - 1))
    class_index = _class_index(run, params)
    shown = list(range(first, min(first + SLIDER_DIMS, z_dim)))
    values = _values(params.str("values", None, 400), len(shown))
    params.done()
    z = make_noise(1, z_dim, seed)  # (1, z_dim): the seed's own point, as Generate draws image 0
    original = [round(float(z[0, d]), 4) for d in shown]
    if values is not None:
        z[0, shown] = torch.tensor(values, dtype=z.dtype)
    labels = None
    if run.spec.conditional:
        labels = torch.tensor([class_index or 0])  # (1,)
    image = to_uint8(sample(run.G, z, labels), run.spec.pixel_range)  # (1, C, H, W)
    return {"image": _data_url(image), "dims": shown, "original": original, "values": values or original, "z_dim": z_dim,
            "range": SLIDER_RANGE}  # fmt: skip


def _values(text: str | None, k: int) -> list[float] | None:
    """The sliders' values: k comma-separated numbers within +-SLIDER_RANGE, or None for the seed's own."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise StudioError(f"parameter 'values' must be {k} comma-separated numbers, got {text[:40]!r}") from None
    if len(values) != k or not all(abs(v) <= SLIDER_RANGE for v in values):
        raise StudioError(f"parameter 'values' must be {k} numbers from -{SLIDER_RANGE:g} to {SLIDER_RANGE:g}, got {text[:60]!r}")
    return values
