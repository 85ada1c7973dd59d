"""One entry point from a dataset name or folder path to a Dataset."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .base import DataError, Dataset
from .folder import load_folder
from .idx import load_idx
from .idxfile import IDX_DATASETS
from .toys import TOY_DATASETS, load_toy


def builtin_name(spec: str) -> str | None:
    """The built-in dataset a name means ('Fashion_MNIST ' -> 'fashion-mnist'), or None for anything else (a folder)."""
    name = str(spec).strip().lower().replace("_", "-")
    return name if name in IDX_DATASETS or name in TOY_DATASETS else None


def check_data_source(spec: str) -> None:
    """One-line DataError when `spec` is neither a built-in dataset nor an existing path (before anything loads)."""
    if builtin_name(spec) is None and not Path(spec).expanduser().exists():
        choices = ", ".join([*IDX_DATASETS, *TOY_DATASETS])
        raise DataError(
            f"unknown dataset '{spec}': not a built-in name and no such folder "
            f"({Path(spec).expanduser().absolute()}); choose one of {choices}, or give a folder of images"
        )


SPLIT_SEEDS = {"train": 0, "test": 1}  # toys: the test split is a fresh draw from the same mixture


def load_dataset(
    spec: str, split: str = "train", resolution: int = 28, channels: int = 1, data_dir: str | None = None, download: bool = True
) -> Dataset:
    """Load a built-in dataset by name (fashion-mnist, mnist, a toy) or a folder of images by path."""
    if split not in SPLIT_SEEDS:
        raise DataError(f"unknown split '{split}' for {spec}; use 'train' or 'test'")
    # Built-in names win over a folder of the same name; write ./mnist to mean the folder.
    name = builtin_name(spec)
    if name in IDX_DATASETS:
        return _conform(load_idx(name, split, data_dir, download), resolution, channels)
    if name in TOY_DATASETS:
        return load_toy(name, seed=SPLIT_SEEDS[split])
    check_data_source(spec)
    # A folder has no held-out part: both splits are all of its images.
    return load_folder(spec, resolution, channels)


def _conform(ds: Dataset, resolution: int, channels: int) -> Dataset:
    # The IDX images are 28x28 greyscale; a model built for 32 or 64 pixels or colour gets them converted.
    if (ds.resolution, ds.channels) == (resolution, channels):
        return ds
    if channels not in (1, 3) or resolution < 1:
        raise DataError(
            f"cannot give {ds.name} {channels} channels at resolution {resolution}; use 1 or 3 channels and a positive resolution"
        )
    x = ds.x
    if ds.resolution != resolution:
        x = torch.empty(len(ds), 1, resolution, resolution, dtype=torch.uint8)  # (N, 1, R, R) uint8
        # In chunks, so a float copy of all 60,000 images at 64x64 (1 GB) never exists at once.
        for i in range(0, len(ds), 4096):
            chunk = F.interpolate(
                ds.x[i : i + 4096].float(),
                size=(resolution, resolution),
                mode="bilinear",
                antialias=resolution < ds.resolution,
                align_corners=False,
            )  # (B, 1, R, R)
            x[i : i + 4096] = chunk.round_().clamp_(0, 255)
    x = x.expand(-1, channels, -1, -1).contiguous()  # (N, C, R, R) uint8
    info = {**ds.info, "converted_from": [ds.channels, ds.resolution, ds.resolution]}
    return Dataset(ds.name, ds.kind, x, ds.labels, ds.class_names, info)


def class_index(ds: Dataset, name_or_index: str, flag: str = "--exclude-class") -> int:
    """The index of a class of a labelled dataset, by name (case-insensitive) or index; one-line error otherwise."""
    return class_index_in(ds.class_names if ds.labels is not None else None, ds.name, name_or_index, flag)


def find_class(class_names: list[str], name_or_index: str) -> int | None:
    """The index of a class by name (case-insensitive) or index, or None when there is no such class."""
    text = str(name_or_index).strip()
    lookup = {n.lower(): i for i, n in enumerate(class_names)}
    if text.lower() in lookup:
        return lookup[text.lower()]
    return int(text) if text.isdigit() and int(text) < len(class_names) else None


def class_index_in(class_names: list[str] | None, dataset: str, name_or_index: str, flag: str = "--exclude-class") -> int:
    """class_index for a list of class names (None: unlabelled data), before any data is loaded."""
    if not class_names:
        raise DataError(f"{flag} needs labelled data, but {dataset} has no classes; put each class in its own sub-folder")
    text = str(name_or_index).strip()
    found = find_class(class_names, text)
    if found is not None:
        return found
    choices = ", ".join(f"{i}={n}" for i, n in enumerate(class_names))
    raise DataError(f"unknown class '{text}' for {flag}{did_you_mean(text, class_names)}; choose a name or index of {dataset}: {choices}")


def did_you_mean(text: str, names: list[str]) -> str:
    """'; did you mean 'Trouser'?' for the name closest to a mistyped one (case aside), or ''."""
    close = closest_name(text, names)
    return f"; did you mean '{close}'?" if close else ""


def closest_name(text: str, names: list[str]) -> str | None:
    """The one of `names` a mistyped or cut `text` most likely meant (case aside), or None when none is close."""
    import difflib

    lower = {n.lower(): n for n in names}
    # A name's start is what it was meant as ('T-shirt' for 'T-shirt/top', '00001-cats' for '00001-cats-cdcgan'),
    # however close another name's letters are.
    starts = [n for n in lower if text and n.startswith(text.lower())]
    close = starts if len(starts) == 1 else difflib.get_close_matches(text.lower(), list(lower), n=1, cutoff=0.6)
    return lower[close[0]] if close else None


def drop_class(ds: Dataset, name_or_index: str) -> Dataset:
    """The dataset without one class (labels and class names keep their indices, so the class stays nameable)."""
    k = class_index(ds, name_or_index)
    keep = ds.labels != k  # (N,) bool
    info = {**ds.info, "excluded_class": ds.class_names[k], "excluded_images": int((~keep).sum())}
    return Dataset(ds.name, ds.kind, ds.x[keep].contiguous(), ds.labels[keep], ds.class_names, info)
