"""Load a folder of the user's own images (one sub-folder per class, or none), with a decoded-tensor cache."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import save_file
from tqdm import tqdm

from ..fileio import atomic_path, load_tensors
from . import base
from .base import DataError, Dataset
from .decode import DECODE_ERRORS, GREY_MODES, decode_failure, decode_image

log = logging.getLogger("counterfeit")

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".avif", ".bmp", ".gif", ".tif", ".tiff", ".jp2", ".j2k",
              ".jpx", ".tga", ".pgm", ".ppm", ".pbm", ".pnm")  # fmt: skip
_SYSTEM_FILES = ("Thumbs.db", "desktop.ini")  # what file managers leave beside pictures
_SPLIT_NAMES = {"train", "training", "test", "testing", "val", "valid", "validation", "dev"}
# Picture formats Pillow does not read here (or not without plugins): phones, cameras, editors, vector art.
_OTHER_PICTURES = {".heic", ".heif", ".jxl", ".svg", ".xcf", ".raw", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2",
                   ".raf", ".exr", ".hdr"}  # fmt: skip
# Read errors from the system, not from the file's bytes, that can go away with no change to the file's size or mtime.
_MAY_PASS = {errno.EACCES, errno.EPERM, errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ESTALE, errno.EMFILE, errno.ENFILE,
             errno.ENOMEM, errno.EBUSY}  # fmt: skip
CACHE_VERSION = 2  # bump when decoding or the entry changes, so old entries stop matching (2: skipped files marked "retry")


def load_folder(path: str, resolution: int, channels: int, cache_dir: str | None = None) -> Dataset:
    """Load every readable image under `path` as (N, C, resolution, resolution) uint8, cached after the first time."""
    if channels not in (1, 3):
        raise DataError(f"cannot load {path} with {channels} channels; use 1 (greyscale) or 3 (colour)")
    if resolution < 1:
        raise DataError(f"cannot load {path} at resolution {resolution}; use a positive size such as 32 or 64")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{path} does not exist; give a folder of images (optionally one sub-folder per class)")
    if not root.is_dir():
        raise DataError(f"{path} is a file, not a folder; give the folder that holds the images")
    problems, ignored = [], {}
    files = _scan(root, problems, ignored)
    others = ", ".join(f"{ext} {n}" for ext, n in sorted(ignored.items(), key=lambda kv: -kv[1]))
    if not files:
        raise DataError(
            f"{path} holds no image files ({', '.join(IMAGE_EXTS)}){f' (only {others})' if others else ''}; add some, "
            f"optionally one sub-folder per class, or choose another folder"
        )
    if problems:  # a class folder left out changes the classes: say so before anything trains on the rest
        log.warning("left out %d folder%s in %s: %s", len(problems), "s" * (len(problems) > 1), path, "; ".join(problems[:5]))
    if ignored:  # a warning where pictures may be among them (an iPhone's .heic), else a note (a README, labels.csv)
        n = sum(ignored.values())
        log.log(logging.WARNING if set(ignored) & _OTHER_PICTURES else logging.INFO,
                "left out %d file%s in %s that %s (%s); convert pictures to PNG or JPEG to use them",
                n, "s" * (n > 1), path, "are not images it reads" if n > 1 else "is not an image it reads", others)  # fmt: skip
    class_names, file_labels, note = _classes(files)
    if len(class_names) > 1 and {c.lower() for c in class_names} <= _SPLIT_NAMES and all(len(rel.parts) > 2 for rel in files):
        # A downloaded dataset's train/ and test/, each holding the class folders, train as the classes "test" and
        # "train": a warning, not an error, since telling the splits apart may be what the user wants.
        log.warning(f"{path}'s sub-folders {' and '.join(class_names)} look like a dataset's splits, each holding the classes, "
                    f"and become the classes here; to train on the real classes, pass one of them, such as {root / class_names[-1]}")  # fmt: skip
    if problems and file_labels is None:  # "put each class in its own sub-folder" would be the wrong advice
        note += f" (left out: {'; '.join(problems[:3])})"
    listing = [_stat(root / rel) for rel in files]  # (size, mtime_ns): a change to any file changes the key
    key = _cache_key(files, listing, resolution, channels)
    entry = (Path(cache_dir).expanduser() if cache_dir else base.cache_dir()) / "folders" / key
    cached = _read_cache(entry, resolution, channels, labelled=file_labels is not None)
    # A file the system would not let us read (permissions, an I/O error) may read later with no change to its size or
    # mtime, which the key covers: the entry marks it, and a load that finds it readable now decodes the folder again.
    if cached is not None and any(isinstance(s, dict) and s.get("retry") and _opens(root / str(s.get("file"))) for s in cached[2]):
        cached = None
    if cached is None:
        x, labels, skipped = _decode_all(root, files, listing, file_labels, resolution, channels)
        shapes = _shapes(root, files)  # kept with the entry: finding colour decodes files, which a cache hit should not
        meta = {"source": str(path), "root": str(root.resolve()), "class_names": class_names, "skipped": skipped, "note": note}
        _write_cache(entry, x, labels, {**meta, "image_shapes": shapes})
    else:
        # Class names and the note follow from the file list, which the key covers; `skipped` and the shapes need the cache.
        x, labels, skipped, shapes = cached
        shapes = _shapes(root, files) if shapes is None else shapes  # an entry from before the shapes were kept
    if skipped:
        log.warning("skipped %d of %d files in %s that could not be read: %s", len(skipped), len(files), path, _first(skipped, 5))
    info = {
        "source": str(path),
        "root": str(root.resolve()),
        "left_out_folders": problems,
        "other_files": ignored,
        "files": len(files),
        "image_shapes": shapes,  # (width, height, channels) of a few files: what training shrinks
        "images": len(x),
        "skipped": skipped,
        "note": note,
        "resolution": resolution,
        "channels": channels,
        "cache": "miss" if cached is None else "hit",
        "cache_file": str(entry.with_suffix(".safetensors")),
    }
    if labels is not None:
        info["class_counts"] = torch.bincount(labels, minlength=len(class_names)).tolist()
    return Dataset(name=str(path), kind="images", x=x, labels=labels, class_names=class_names, info=info)


def folder_classes(path: str) -> list[str]:
    """The class names a folder's sub-folders give (sorted), without decoding an image; [] when it is unlabelled."""
    root = Path(path).expanduser()
    return _classes(_scan(root))[0] if root.is_dir() else []


def _shapes(root: Path, files: list[Path], limit: int = 32) -> list[tuple[int, int, int]]:
    # (width, height, channels) of up to `limit` files spread over the folder: sizes from the headers; colour-mode files
    # count as colour if any of 8 of them really has colour (torchvision's save_image writes grey as RGB).
    seen = []
    for rel in files[:: max(1, len(files) // limit)][:limit]:
        try:
            with Image.open(root / rel) as im:
                seen.append((im.width, im.height, im.mode not in GREY_MODES, rel))
        except DECODE_ERRORS:  # the loader reports unreadable files; they have no size to tell
            continue
    coloured = [rel for *_, colour_mode, rel in seen if colour_mode]
    colour = any(_has_colour(root / rel) for rel in coloured[:: max(1, len(coloured) // 8)][:8])
    return sorted({(w, h, 3 if colour_mode and colour else 1) for w, h, colour_mode, _ in seen})


def _has_colour(path: Path) -> bool:
    # Whether a colour-mode file's channels differ (a full decode: only a few files are asked, and any() stops at one).
    try:
        with Image.open(path) as im:
            im.draft("RGB", (64, 64))  # a JPEG decodes small for this
            rgb = np.asarray(im.convert("RGB"), dtype=np.int16)  # (H, W, 3)
    except DECODE_ERRORS:
        return False
    return bool(np.abs(rgb - rgb[..., :1]).max(initial=0) > 8)  # JPEG's chroma rounding moves grey a little


def _scan(root: Path, problems: list[str] | None = None, ignored: dict[str, int] | None = None) -> list[Path]:
    # Relative paths of all image files, sorted so the order (and the labels) never depend on the filesystem.
    # `problems` receives folders that were left out and why; `ignored` counts the other files by extension.
    found, seen = [], {}
    problems = [] if problems is None else problems

    def unreadable(e: OSError) -> None:
        where = Path(e.filename).relative_to(root).as_posix() if e.filename and Path(e.filename) != root else None
        if where is None:  # the folder itself: nothing at all to load
            raise DataError(f"cannot read {root} ({e.strerror}); check its permissions, or choose another folder")
        problems.append(f"{where}/ ({e.strerror})")

    # Linked folders are followed (a dataset is often assembled from links to class folders), each real folder once,
    # so a link back into the tree cannot loop.
    top = os.path.realpath(root)
    for folder, dirs, names in os.walk(root, onerror=unreadable, followlinks=True):
        real, rel = os.path.realpath(folder), Path(folder).relative_to(root)
        # A link up the tree (to the dataset's parent, or /) would pull in everything around the dataset: not followed.
        if real != top and top.startswith(real.rstrip(os.sep) + os.sep):
            dirs[:] = []
            problems.append(f"{rel.as_posix()}/ (a link to a folder around the dataset)")
            continue
        if real in seen:
            dirs[:] = []
            problems.append(f"{rel.as_posix()}/ (the same folder as {seen[real]}/, read once)")
            continue
        seen[real] = rel.as_posix()
        # Hidden folders and files (.git, .ipynb_checkpoints, macOS "._x.jpg" shadows) are never pictures. Sorted in
        # place so that which of two links to one folder is read first never depends on the filesystem either.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in names:
            if n.startswith(".") or n in _SYSTEM_FILES:
                continue
            if n.lower().endswith(IMAGE_EXTS):
                found.append(rel / n)
            elif ignored is not None:
                ext = os.path.splitext(n)[1].lower() or "no extension"
                ignored[ext] = ignored.get(ext, 0) + 1
    return sorted(found, key=lambda p: p.as_posix())


def _classes(files: list[Path]) -> tuple[list[str], list[int] | None, str]:
    # Each first-level sub-folder is a class, unless loose images sit beside them or there is only one.
    folders = sorted({rel.parts[0] for rel in files if len(rel.parts) > 1})
    loose = sum(len(rel.parts) == 1 for rel in files)
    if folders and loose:
        return (
            [],
            None,
            (
                f"unlabelled: {loose} images lie directly in the folder beside {len(folders)} "
                f"sub-folders; move them into sub-folders to use the sub-folders as classes"
            ),
        )
    if len(folders) < 2:
        where = f"one sub-folder ({folders[0]})" if folders else "no sub-folders"
        return [], None, f"unlabelled: {where}; put each class in its own sub-folder to get labels"
    index = {name: i for i, name in enumerate(folders)}
    return folders, [index[rel.parts[0]] for rel in files], f"labelled by sub-folder: {len(folders)} classes"


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:  # e.g. a dangling link; decoding will fail and report it
        return -1, 0
    return st.st_size, st.st_mtime_ns


def _cache_key(files: list[Path], listing: list[tuple[int, int]], resolution: int, channels: int) -> str:
    recipe = {
        "version": CACHE_VERSION,
        "resolution": resolution,
        "channels": channels,
        "files": [[rel.as_posix(), size, mtime] for rel, (size, mtime) in zip(files, listing)],
    }
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()


def _decode_all(
    root: Path, files: list[Path], listing: list[tuple[int, int]], file_labels: list[int] | None, resolution: int, channels: int
) -> tuple[torch.Tensor, torch.Tensor | None, list[dict]]:
    x = torch.empty(len(files), channels, resolution, resolution, dtype=torch.uint8)  # (N, C, H, W) uint8
    kept, skipped = [], []
    with warnings.catch_warnings():
        # Pillow warns about each odd-but-readable file (corrupt EXIF, huge images); the image still decodes, and a line
        # per file would bury the one summary of the files that did not.
        warnings.filterwarnings("ignore", module="PIL")
        for i, rel in enumerate(tqdm(files, desc=f"decoding {root.name}", unit="img", disable=None)):
            if listing[i][0] == 0:
                skipped.append({"file": rel.as_posix(), "reason": "empty file"})
                continue
            try:
                x[len(kept)] = torch.from_numpy(decode_image(root / rel, resolution, channels))  # (C, H, W) uint8
            except DECODE_ERRORS as e:
                retry = {"retry": True} if isinstance(e, OSError) and e.errno in _MAY_PASS else {}
                skipped.append({"file": rel.as_posix(), "reason": decode_failure(e), **retry})
                continue
            kept.append(i)
    if not kept:
        raise DataError(
            f"none of the {len(files)} image files in {root} could be read ({_first(skipped, 3)}); "
            f"check the files open in an image viewer, or choose another folder"
        )
    x = x[: len(kept)].clone() if skipped else x  # (N, C, H, W) uint8, only the good images
    labels = None if file_labels is None else torch.tensor([file_labels[i] for i in kept], dtype=torch.int64)
    return x, labels, skipped


def _opens(path: Path) -> bool:
    # Whether a file that the system refused before can be read now (one byte tells).
    try:
        with open(path, "rb") as f:
            f.read(1)
        return True
    except OSError:
        return False


def _first(skipped: list[dict], k: int) -> str:
    # "a.png (truncated), b.jpg (empty file), and 4 more": enough to act on, short enough for one line.
    shown = ", ".join(f"{s['file']} ({s['reason']})" for s in skipped[:k])
    return shown + (f", and {len(skipped) - k} more" if len(skipped) > k else "")


def _read_cache(
    entry: Path, resolution: int, channels: int, labelled: bool
) -> tuple[torch.Tensor, torch.Tensor | None, list[dict], list[tuple[int, int, int]] | None] | None:
    # Any problem with an entry means "decode again": the cache may speed things up but never break a run.
    tensors_path, meta_path = entry.with_suffix(".safetensors"), entry.with_suffix(".json")
    if not (tensors_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_bytes())
        skipped, shapes = meta["skipped"], meta.get("image_shapes")
        valid = isinstance(shapes, list) and all(isinstance(t, list) and len(t) == 3 and all(type(v) is int for v in t) for t in shapes)
        shapes = [tuple(t) for t in shapes] if valid else None
        tensors = load_tensors(tensors_path)
        x, labels = tensors["x"], tensors.get("labels")
        n = x.shape[0]
        ok = (
            x.dtype == torch.uint8
            and tuple(x.shape) == (n, channels, resolution, resolution)
            and isinstance(skipped, list)
            and (labels is not None) == labelled
            and (labels is None or (labels.dtype == torch.int64 and tuple(labels.shape) == (n,)))
        )
    except Exception as e:  # safetensors, json and the filesystem each raise their own kinds
        log.warning("ignoring unreadable cache entry %s (%s); decoding the folder again", tensors_path, e)
        return None
    if not ok:
        log.warning("ignoring inconsistent cache entry %s; decoding the folder again", tensors_path)
        return None
    return x, labels, skipped, shapes


def _write_cache(entry: Path, x: torch.Tensor, labels: torch.Tensor | None, meta: dict) -> None:
    # The tensors go first and the JSON last, and a reader needs both, so a crash in between leaves no half entry.
    tensors = {"x": x} if labels is None else {"x": x, "labels": labels}
    try:
        with atomic_path(entry.with_suffix(".safetensors")) as tmp:
            save_file(tensors, str(tmp))
        with atomic_path(entry.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps({"version": CACHE_VERSION, **meta}, indent=1), encoding="utf-8")
    except (OSError, SafetensorError) as e:  # safetensors' own error for a full disk: the run goes on without the entry
        log.warning("could not write the cache entry %s (%s); the next run will decode the folder again", entry, e)
