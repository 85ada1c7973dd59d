"""What every loader shares: the Dataset record, the one error type, the cache folder, atomic writes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch


class DataError(Exception):
    """Bad or missing data; str() is one line naming the file or folder and how to fix it."""


@dataclass
class Dataset:
    """A whole dataset in memory: uint8 images or float32 2-D points, plus labels and provenance."""

    name: str  # "fashion-mnist", "mnist", a toy name, or the folder path as given
    kind: str  # "images" or "points"
    x: torch.Tensor  # images: (N, C, H, W) uint8 contiguous; points: (N, 2) float32
    labels: torch.Tensor | None  # (N,) int64, or None when unlabelled
    class_names: list[str] = field(default_factory=list)  # [] when unlabelled
    info: dict = field(default_factory=dict)  # JSON-serialisable provenance

    @property
    def num_classes(self) -> int:
        """Number of classes (0 when unlabelled)."""
        return len(self.class_names)

    @property
    def resolution(self) -> int:
        """Image height and width in pixels, or 0 for points."""
        return int(self.x.shape[2]) if self.kind == "images" else 0

    @property
    def channels(self) -> int:
        """Image channels (1 or 3), or 0 for points."""
        return int(self.x.shape[1]) if self.kind == "images" else 0

    def __len__(self) -> int:
        """Number of samples."""
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        """A one-line summary."""
        # The default dataclass repr would print the tensors; a summary is what a log wants.
        shape = "x".join(str(s) for s in self.x.shape)
        return f"Dataset({self.name!r}, {self.kind}, {shape} {str(self.x.dtype).removeprefix('torch.')}, {self.num_classes} classes)"


def cache_dir() -> Path:
    """The user cache folder: $COUNTERFEIT_CACHE_DIR or ~/.cache/counterfeit."""
    env = os.environ.get("COUNTERFEIT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "counterfeit"
