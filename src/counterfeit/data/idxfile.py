"""The IDX datasets (Fashion-MNIST, MNIST): their file table, and a reader that verifies every byte."""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .base import DataError


@dataclass(frozen=True)
class IdxFile:
    """One idx file: its size and SHA-256 after decompression, and its number of dimensions."""

    nbytes: int
    sha256: str
    ndim: int  # 3 for images (N, H, W), 1 for labels (N,)


@dataclass(frozen=True)
class IdxSpec:
    """One IDX dataset: its four files, where to download them, and its class names."""

    files: dict[str, IdxFile]  # plain file name -> expectations; the .gz form is accepted too
    mirrors: tuple[str, ...]  # base URLs, tried in order; file names + ".gz" are appended
    class_names: tuple[str, ...]
    subdirs: tuple[str, ...] = ()  # sub-folder names that hold the files inside a data dir


SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def split_files(spec: IdxSpec, split: str) -> tuple[str, str]:
    """The (images, labels) file names of one split."""
    prefix = SPLIT_PREFIX[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _standard_files(sha256: dict[str, str]) -> dict[str, IdxFile]:
    # Both datasets share the layout: 60,000 train and 10,000 test 28x28 images.
    nbytes = {
        "train-images-idx3-ubyte": 16 + 60000 * 28 * 28,
        "train-labels-idx1-ubyte": 8 + 60000,
        "t10k-images-idx3-ubyte": 16 + 10000 * 28 * 28,
        "t10k-labels-idx1-ubyte": 8 + 10000,
    }
    return {name: IdxFile(nbytes[name], digest, 3 if "images" in name else 1) for name, digest in sha256.items()}


# Checksums are of the decompressed files, so a recompressed copy (Debian's package) verifies too.
# Fashion-MNIST: /work/shared/data/README.md, checked against the Debian and upstream files.
# MNIST: the values published by several independent projects (checksum tables and download scripts
# for the ossci-datasets and cvdf-datasets mirrors), all in agreement.
IDX_DATASETS: dict[str, IdxSpec] = {
    "fashion-mnist": IdxSpec(
        files=_standard_files(
            {
                "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            }
        ),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        subdirs=("fashion-mnist", "FashionMNIST/raw"),  # ours, and torchvision's layout
    ),
    "mnist": IdxSpec(
        files=_standard_files(
            {
                "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            }
        ),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        class_names=tuple(str(d) for d in range(10)),
        subdirs=("mnist", "MNIST/raw"),
    ),
}


GZIP_MAGIC = b"\x1f\x8b"  # an idx file starts with two zero bytes, so the two never clash


class OtherDatasetFile(DataError):
    """A verified file of the other idx dataset (MNIST and Fashion-MNIST name their files alike): misplaced, not corrupt."""

    def __init__(self, message: str, dataset: str):
        super().__init__(message)
        self.dataset = dataset  # whose file it is


def file_candidates(folder: Path, name: str) -> list[Path]:
    """The paths one idx file may have in a folder: the plain name, ".gz", then the dotted spelling (".idx3-ubyte").

    Either form may hold either content; many MNIST copies name the files train-images.idx3-ubyte.
    """
    dotted = name.replace("-idx", ".idx")
    return [folder / name, folder / f"{name}.gz", folder / dotted, folder / f"{dotted}.gz"]


def read_idx(path: Path, expected: IdxFile, fix: str) -> torch.Tensor:
    """Read one idx file (plain or gzipped, whatever its name), check its size, header and SHA-256; return its array as uint8."""
    buf = _read_exactly(path, expected.nbytes, fix)
    header = 4 + 4 * expected.ndim
    magic = int.from_bytes(buf[:4], "big")
    dims = [int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(expected.ndim)]
    # Magic: two zero bytes, 0x08 (unsigned byte), then the number of dimensions.
    if magic != 0x0800 + expected.ndim or header + math.prod(dims) != expected.nbytes:
        raise DataError(f"{path} is not an idx file of {expected.ndim}-D unsigned bytes (magic 0x{magic:08x}, dims {dims}); {fix}")
    digest = hashlib.sha256(buf).hexdigest()
    if digest != expected.sha256:
        # MNIST and Fashion-MNIST name their files alike: a good file of the other one is misplaced, not corrupt.
        other = next(((ds, fname) for ds, sp in IDX_DATASETS.items() for fname, f in sp.files.items() if f.sha256 == digest), None)
        if other:
            raise OtherDatasetFile(f"{path} is {other[0]}'s {other[1]}, a good file of another dataset; keep it, and give this "
                                   f"dataset its own folder (--data-dir DIR, or a sub-folder named after it)", other[0])  # fmt: skip
        raise DataError(f"{path} has the wrong SHA-256 (expected {expected.sha256}, got {digest}); {fix}")
    return torch.frombuffer(buf, dtype=torch.uint8, offset=header).reshape(dims)  # (N, H, W) or (N,) uint8


def _read_exactly(path: Path, nbytes: int, fix: str) -> bytearray:
    # One spare byte tells a too-long file from a right one without reading it all.
    buf = bytearray(nbytes + 1)
    view = memoryview(buf)
    got, broke = 0, False
    try:
        with open(path, "rb") as raw:
            # Gzip or not by content, not by name: a browser may unpack a download and keep its ".gz".
            gz = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            f = gzip.GzipFile(fileobj=raw) if gz else raw
            while got < len(buf):
                # In slices, so a stream that breaks off has still counted what it delivered.
                n = f.readinto(view[got : got + (1 << 20)])
                if not n:
                    break
                got += n
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        raise DataError(f"{path} cannot be read ({e.strerror}); check it exists and is readable") from None
    except (EOFError, OSError, zlib.error):  # a gzip stream that ends early or is garbled
        broke = True
    view.release()
    if broke or got != nbytes:
        said = f"{got} before the data broke off" if broke else f"more than {nbytes}" if got > nbytes else str(got)
        raise DataError(f"{path} is truncated or corrupt (expected {nbytes} bytes, got {said}); {fix}")
    del buf[nbytes:]
    return buf
