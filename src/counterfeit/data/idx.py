"""Find, download if need be, verify and load Fashion-MNIST and MNIST."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch

from .base import DataError, Dataset, cache_dir
from .download import CacheWriteError, DownloadError, download_idx
from .idxfile import (
    IDX_DATASETS,
    SPLIT_PREFIX,
    IdxSpec,
    OtherDatasetFile,
    file_candidates,
    read_idx,
    split_files,
)

log = logging.getLogger("counterfeit")

# Where distributions install the files; a constant so tests can point it elsewhere.
SYSTEM_DATA_DIRS: dict[str, list[Path]] = {
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],  # Debian/Ubuntu: dataset-fashion-mnist
}


def _spec(name: str) -> IdxSpec:
    if name not in IDX_DATASETS:
        raise DataError(f"unknown IDX dataset '{name}'; choose one of {', '.join(IDX_DATASETS)}")
    return IDX_DATASETS[name]


def search_dirs(name: str, data_dir: str | None = None) -> list[Path]:
    """The ordered folders that may hold the dataset: data_dir, $COUNTERFEIT_DATA_DIR, the cache, system dirs."""
    spec = _spec(name)
    dirs: list[Path] = []
    for root in (data_dir, os.environ.get("COUNTERFEIT_DATA_DIR")):
        if root:
            root = Path(root).expanduser()
            # The folder itself, or the dataset's sub-folder inside it (e.g. ~/data/fashion-mnist).
            dirs += [root] + [root / sub for sub in spec.subdirs]
    dirs.append(cache_dir() / name)
    dirs += SYSTEM_DATA_DIRS.get(name, [])
    return list(dict.fromkeys(dirs))  # drop repeats, keep order


def _present(folder: Path, fname: str) -> Path | None:
    return next((p for p in file_candidates(folder, fname) if p.is_file()), None)


def _needed(name: str, split: str | None) -> list[str]:
    # A split needs only its own two files: every file is checked against its SHA-256, so copies never mix.
    return list(split_files(_spec(name), split) if split else _spec(name).files)


def complete_dirs(name: str, data_dir: str | None = None, split: str | None = None) -> list[Path]:
    """The folders in the search order that hold the split's two files, or all four without a split (plain or .gz)."""
    needed = _needed(name, split)
    return [folder for folder in search_dirs(name, data_dir) if all(_present(folder, fname) for fname in needed)]


def find_idx_dir(name: str, data_dir: str | None = None, split: str | None = None) -> Path | None:
    """The first folder in the search order holding the split's two files, or all four without a split; or None."""
    return next(iter(complete_dirs(name, data_dir, split)), None)


def _gaps(name: str, split: str, folder: Path) -> str | None:
    # "lacks X" for a folder that holds some of the dataset's files but not the split's; None for a complete or empty one.
    missing = [fname for fname in _needed(name, split) if not _present(folder, fname)]
    if missing and any(_present(folder, fname) for fname in _needed(name, None)):
        return f"lacks {', '.join(missing)}"
    return None


def _named(folder: Path, data_dir: str | None) -> bool:
    # Inside a folder the user named (--data-dir, $COUNTERFEIT_DATA_DIR): news when passed over, unlike the cache.
    return any(root and folder.is_relative_to(Path(root).expanduser()) for root in (data_dir, os.environ.get("COUNTERFEIT_DATA_DIR")))


def load_idx(name: str, split: str = "train", data_dir: str | None = None, download: bool = True) -> Dataset:
    """Load one split of Fashion-MNIST or MNIST as (N, 1, 28, 28) uint8 images with int64 labels."""
    _spec(name)  # an unknown name is refused before the split
    if split not in SPLIT_PREFIX:
        raise DataError(f"unknown split '{split}' for {name}; use 'train' or 'test'")
    # Every folder that holds the split's files, in the search order: a copy that fails its checks gives way to the next.
    folders = complete_dirs(name, data_dir, split)
    errors: list[DataError] = []
    others: list[str] = []  # folders that hold the other dataset under the same file names: not this one's copy at all
    for i, folder in enumerate(folders):
        try:
            ds = _load_split(name, split, folder, downloaded=False)
            break
        except OtherDatasetFile as e:
            others.append(f"{folder} holds {e.dataset}'s files")
            (log.warning if _named(folder, data_dir) else log.info)(f"{e}; looking further")
        except DataError as e:
            errors.append(e)
            if i + 1 < len(folders):
                log.warning(f"{e}; trying {folders[i + 1]}")
    else:
        if errors:
            raise errors[0]  # the copy the user put first is the one to mend
        ds = _load_split(name, split, _fetch(name, split, data_dir, download, others), downloaded=True)
    # A folder the user named that lacks a file: say so, or the copy used instead goes unnoticed.
    partial = [f"{d} {gaps}" for d in search_dirs(name, data_dir) if _named(d, data_dir) and (gaps := _gaps(name, split, d))]
    if partial and not _named(Path(ds.info["source"]), data_dir):
        log.warning(f"{'; '.join(partial)}; using {ds.info['source']} instead")
    return ds


def _load_split(name: str, split: str, folder: Path, downloaded: bool) -> Dataset:
    spec = _spec(name)
    start = time.perf_counter()
    images_name, labels_name = split_files(spec, split)
    images_path, labels_path = _present(folder, images_name), _present(folder, labels_name)
    fix = _fix_hint(name, folder)
    images = read_idx(images_path, spec.files[images_name], fix)  # (N, H, W) uint8
    labels = read_idx(labels_path, spec.files[labels_name], fix).to(torch.int64)  # (N,) int64
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{labels_path} has {labels.shape[0]} labels for {images.shape[0]} images; {fix}")
    if labels.numel() and int(labels.max()) >= len(spec.class_names):
        raise DataError(f"{labels_path} has label {int(labels.max())} but {name} has {len(spec.class_names)} classes; {fix}")
    info = {
        "source": str(folder),
        "files": [str(images_path), str(labels_path)],
        "split": split,
        "verified": "sha256",
        "downloaded": downloaded,
        "load_s": round(time.perf_counter() - start, 3),
    }
    return Dataset(
        name=name,
        kind="images",
        x=images.unsqueeze(1),
        labels=labels,  # x: (N, 1, H, W) uint8
        class_names=list(spec.class_names),
        info=info,
    )


def _fetch(name: str, split: str, data_dir: str | None, download: bool, others: list[str] = ()) -> Path:
    # Nothing found locally: download into the cache, or explain every way to get the files.
    reason = "downloading is off"
    if download:
        try:
            return download_idx(name, cache_dir() / name)
        except CacheWriteError:
            raise  # our own disk: what else might hold the files is beside the point
        except DownloadError as e:
            reason = f"download failed: {'; '.join(e.failures) or e}"
        except DataError as e:
            reason = f"download failed: {e}"
    # Each folder with what it lacks, where it holds some files: "not found" alone hides a missing one.
    looked = ", ".join(f"{d} ({gaps})" if (gaps := _gaps(name, split, d)) else str(d) for d in search_dirs(name, data_dir))
    if others:  # found but not this dataset's: say so, or "not found" reads as if the folder were never searched
        looked += f"; {', '.join(others)}, of the same names"
    apt = " or `sudo apt install dataset-fashion-mnist` (Debian/Ubuntu)," if name == "fashion-mnist" else ""
    raise DataError(
        f"{name} not found: looked in {looked} ({reason}); put the four idx files (.gz or plain) "
        f"in a folder and pass --data-dir DIR or set COUNTERFEIT_DATA_DIR,{apt} "
        f"or go online so they download into {cache_dir() / name}"
    )


def _fix_hint(name: str, folder: Path) -> str:
    # Files we downloaded can simply be fetched again; anyone else's copy needs replacing by hand.
    if folder == cache_dir() / name:
        return "delete it and run again to download a fresh copy"
    if folder in SYSTEM_DATA_DIRS.get(name, []):
        return f"reinstall the package that provides {folder} or pass --data-dir DIR with a good copy"
    return f"delete it and run again to download a fresh copy, or replace it with a good copy of {name}"
