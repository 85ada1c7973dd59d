"""Synthetic datasets from a trained run: labelled fakes as class folders of PNGs, labels.csv, an .npz and idx .gz files.

Conditional runs label each fake with the class it was asked for; unconditional runs with the shipped evaluator's
prediction and its probability, so both kinds drop into a classifier's training pipeline.
"""

from __future__ import annotations

import csv
import datetime
import gzip
import hashlib
import io
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import ConfigError
from .data import builtin_name
from .evaluator import CLASS_NAMES, load_evaluator, predict
from .export import pick_class, save_npz
from .fileio import atomic_write_bytes, atomic_write_text, errors_name, file_label
from .models import NO_PRIOR
from .runs import LoadedRun, conditional_class_names, load_run
from .sample import NoiseStream, generate, png_bytes, sample, to_pil, to_uint8

log = logging.getLogger("counterfeit")

MANIFEST = "dataset.json"  # marks a folder as an export, so --force replaces exports and nothing else
IDX_IMAGES, IDX_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
MAX_DRAWS_PER_FAKE = 50  # unconditional --class: give up after this many draws per wanted fake (at least one chunk)
_CHUNK = 2000  # unconditional --class: fakes drawn and judged at a time


def prior_warning(model: str) -> str | None:
    """What an ae/dae run's fakes are (its decoder fed noise it never trained on); None for other models."""
    if model not in NO_PRIOR:
        return None
    return (f"this {model} run's decoder never trained on z ~ N(0, I), where the fakes' noise comes from, so they are noise-like, "
            "not what it learned to draw; use a vae or a GAN run")  # fmt: skip


@dataclass
class LabelledFakes:
    """Fakes with one label each, and where the labels came from."""

    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64, indices into class_names
    class_names: list[str]
    label_source: str  # "requested" (conditional run) or "evaluator" (the judge's prediction)
    confidence: torch.Tensor | None = None  # (N,) float32: the evaluator's probability of the label; None for "requested"
    info: dict = field(default_factory=dict)  # JSON-serialisable provenance


def labelled_fakes(run: LoadedRun, n: int, seed: int = 0, classes: list[str] | None = None, device: str = "cpu") -> LabelledFakes:
    """n uint8 fakes of a run with labels: the requested class (conditional) or the evaluator's verdict (unconditional).

    `classes` (names or indices) restricts the labels; conditional runs cycle through them in order, unconditional runs
    keep only the fakes the evaluator puts in one of them. Fake i is the i-th draw of `seed`, as in `counterfeit sample`.
    """
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if run.spec.data_kind != "images":
        raise ConfigError(f"{run.run_dir.name} is a 2-D toy run: it makes points, not images; export needs an image run")
    info = {"run": str(run.run_dir), "checkpoint": run.checkpoint.name, "kimg": round(run.state.get("cur_nimg", 0) / 1000, 3),
            "seed": seed, "n": n}  # fmt: skip
    if run.spec.conditional:
        names = conditional_class_names(run)
        wanted = torch.tensor(sorted({pick_class(names, c) for c in classes}) if classes else list(range(len(names))))  # (K,)
        if classes and n < len(wanted):  # the cycle would leave the last classes out without a word
            raise ConfigError(f"--n {n} is fewer than the {len(wanted)} classes named with --class; ask for at least {len(wanted)}")
        labels = wanted[torch.arange(n) % len(wanted)]  # (n,) balanced over the wanted classes
        images = generate(run.G, run.spec.pixel_range, n, seed, device, labels)  # (n, C, H, W) uint8
        return LabelledFakes(images, labels, names, "requested", None, info)
    return _judged_fakes(run, n, seed, classes, device, info)


def _judged_fakes(run: LoadedRun, n: int, seed: int, classes: list[str] | None, device: str, info: dict) -> LabelledFakes:
    data = run.config.data
    dataset = builtin_name(data.name)
    if dataset not in CLASS_NAMES or (data.channels, data.resolution) != (1, 28):
        raise ConfigError(
            f"{run.run_dir.name} is unconditional and its fakes ({data.name}, {data.channels}x{data.resolution}x{data.resolution}) "
            f"cannot be labelled: the evaluator judges grey 28x28 {' or '.join(CLASS_NAMES)} only; train with --model cdcgan instead"
        )
    ev = load_evaluator(dataset)  # a one-line EvaluatorWeightsError if its weights are missing
    names = list(ev.meta["class_names"])
    wanted = torch.tensor(sorted({pick_class(names, c) for c in classes})) if classes else None  # (K,)
    info = {**info, "evaluator": {"dataset": dataset, "sha256": ev.meta["sha256"], "test_accuracy": ev.meta["test_accuracy"]}}
    kept_x, kept_p, kept, drawn = [], [], 0, 0
    noise = NoiseStream(run.G.z_dim, seed)
    limit = max(MAX_DRAWS_PER_FAKE * n, _CHUNK)
    while kept < n:
        # Without --class every draw is kept, so this is one pass; with it, whole chunks are drawn and judged at a time.
        size = n if wanted is None else _CHUNK
        if drawn >= limit:
            which = ", ".join(names[i] for i in wanted.tolist())
            raise ConfigError(f"only {kept} of {drawn} fakes were judged to be {which}, short of --n {n}; ask for fewer, or other classes")
        z = noise.take(size, device)  # (size, z_dim): draws drawn.. of this seed
        x = to_uint8(sample(run.G, z), run.spec.pixel_range)  # (size, C, H, W) uint8
        probs = predict(ev, x)[0]  # (size, K)
        keep = torch.ones(size, dtype=torch.bool) if wanted is None else torch.isin(probs.argmax(1), wanted)  # (size,)
        kept_x.append(x[keep])
        kept_p.append(probs[keep])
        kept += int(keep.sum())
        drawn += size
    probs = torch.cat(kept_p)[:n]  # (n, K)
    confidence, labels = probs.max(1)  # (n,), (n,)
    return LabelledFakes(torch.cat(kept_x)[:n], labels, names, "evaluator", confidence, {**info, "drawn": drawn})


def folder_name(index: int, name: str, num_classes: int) -> str:
    """A class folder's name: the zero-padded index first, so sorted folder names keep the class order (`03-Dress`)."""
    safe = file_label(name.strip("._ "), ".-", max_bytes=100).strip("._") or "class"
    return f"{index:0{len(str(num_classes - 1))}d}-{safe}"


def idx_bytes(array: np.ndarray) -> bytes:
    """An uncompressed idx file of unsigned bytes: magic 0x0000080D (D = number of dimensions), the sizes big-endian, the data."""
    if array.dtype != np.uint8:
        raise ValueError(f"idx files here hold uint8, got {array.dtype}")
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse a file, or a non-empty folder unless `force` and it holds an earlier export; one-line ConfigError."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder path for the dataset")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ConfigError(f"--out {out} is not empty; choose a new folder, or pass --force to replace an earlier export")
        if not (out / MANIFEST).is_file():
            raise ConfigError(f"--out {out} is not empty and holds no earlier export ({MANIFEST}); --force replaces exports only")
        foreign = _foreign_files(out)
        if foreign:  # --force replaces the earlier export whole: anything the user added there would go with it
            raise ConfigError(
                f"--out {out} holds files no export wrote ({', '.join(foreign[:3])}); move them out first, --force would delete them"
            )


def _foreign_files(out: Path) -> list[str]:
    """What an earlier export folder holds beyond what an export writes (its files, and PNGs in its class folders)."""
    try:
        folders = set(json.loads((out / MANIFEST).read_bytes()).get("folders", []))
    except (OSError, ValueError, AttributeError):
        folders = set()  # an unreadable manifest: class folders then count as foreign, so nothing is deleted unseen
    own = {MANIFEST, "labels.csv", "fakes.npz", IDX_IMAGES, IDX_LABELS}
    foreign = []
    for p in sorted(out.iterdir()):
        if p.name in folders and p.is_dir():
            foreign += [f"{p.name}/{q.name}" for q in sorted(p.iterdir()) if q.suffix.lower() != ".png" or not q.is_file()]
        elif p.name not in own or not p.is_file():
            foreign.append(p.name)
    return foreign


def write_dataset(fakes: LabelledFakes, out: str | Path, force: bool = False, command: str | None = None) -> dict:
    """Write fakes as class folders of PNGs, labels.csv, fakes.npz, idx .gz files and dataset.json; return the manifest.

    Everything goes into a hidden folder beside `out`, renamed into place when complete, so a crash never leaves
    a half-written dataset under `out` (an earlier export there stays until the new one is whole).
    """
    out = Path(out).absolute()
    check_out_dir(out, force)
    x = fakes.images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C) uint8
    labels = fakes.labels.numpy()  # (N,) int64
    n, num_classes = len(x), len(fakes.class_names)
    folders = [folder_name(i, name, num_classes) for i, name in enumerate(fakes.class_names)]
    files = [f"{folders[y]}/{i:0{max(6, len(str(n - 1)))}d}.png" for i, y in enumerate(labels.tolist())]
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        with errors_name(out):  # a full disk names no file: name the folder being written, for the CLI's one-line error
            for folder in sorted({f.split("/")[0] for f in files}):
                (stage / folder).mkdir(parents=True)
            for rel, img in zip(files, x):
                (stage / rel).write_bytes(png_bytes(to_pil(img)))
            atomic_write_text(stage / "labels.csv", _labels_csv(files, labels, fakes))
            extra = {} if fakes.confidence is None else {"confidence": fakes.confidence.numpy().astype(np.float32)}
            save_npz(stage / "fakes.npz", images=x, labels=labels, class_names=np.array(fakes.class_names), **extra)
            idx = _write_idx(stage, x, labels, num_classes)
            counts = np.bincount(labels, minlength=num_classes)  # (K,)
            manifest = {
                "n": n, "label_source": fakes.label_source, "class_names": fakes.class_names,
                "folders": folders, "counts": {name: int(c) for name, c in zip(fakes.class_names, counts)},
                "files": {"pngs": "<class folder>/<index>.png", "labels": "labels.csv", "npz": "fakes.npz", **idx},
                **fakes.info, "command": command, "version": __version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }  # fmt: skip
            atomic_write_text(stage / MANIFEST, json.dumps(manifest, indent=2) + "\n")
            _swap_in(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest


def _labels_csv(files: list[str], labels: np.ndarray, fakes: LabelledFakes) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    conf = None if fakes.confidence is None else fakes.confidence.tolist()
    w.writerow(["file", "label", "class_name"] + ([] if conf is None else ["confidence"]))
    for i, (rel, y) in enumerate(zip(files, labels.tolist())):
        w.writerow([rel, y, fakes.class_names[y]] + ([] if conf is None else [f"{conf[i]:.4f}"]))
    return buf.getvalue()


def _write_idx(stage: Path, x: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    # Fashion-MNIST's layout: (N, H, W) grey images and (N,) labels as unsigned bytes; colour has no such standard.
    if x.shape[-1] != 1 or num_classes > 256:
        why = "colour images" if x.shape[-1] != 1 else f"{num_classes} classes do not fit a byte"
        return {"idx": f"not written: {why} (the idx format of Fashion-MNIST holds grey images and byte labels)"}
    sums = {}
    for name, array in ((IDX_IMAGES, x[..., 0]), (IDX_LABELS, labels.astype(np.uint8))):
        raw = idx_bytes(array)
        atomic_write_bytes(stage / name, gzip.compress(raw, compresslevel=6, mtime=0))  # mtime 0: same fakes, same bytes
        sums[name] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}  # of the decompressed file, as IdxFile checks
    return {"idx": sums}


def _swap_in(stage: Path, out: Path) -> None:
    # check_out_dir has cleared `out`: absent, empty, or an earlier export (moved aside, then deleted).
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_dataset(run_dir: str | Path, n: int, out: str | Path, seed: int = 0, classes: list[str] | None = None, force: bool = False,
                   device: str = "cpu", command: str | None = None) -> dict:  # fmt: skip
    """Sample n labelled fakes of a run and write them as a dataset folder (see write_dataset); return its manifest."""
    check_out_dir(Path(out), force)  # before minutes of sampling
    run = load_run(run_dir, device)
    fakes = labelled_fakes(run, n, seed, classes, device)
    return write_dataset(fakes, out, force, command)
