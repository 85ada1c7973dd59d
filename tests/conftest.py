"""Shared fixtures: a private cache folder, a tiny labelled image folder, tiny training configs."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # a plain checkout works without installing

SHARED_FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"


# Tiny test models gain nothing from a second thread, and on a busy machine two threads can be 10x slower.
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"  # for the CLI subprocesses


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Never touch the user's ~/.cache: every test session gets its own cache folder."""
    old = os.environ.get("COUNTERFEIT_CACHE_DIR")
    os.environ["COUNTERFEIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("COUNTERFEIT_CACHE_DIR", None)
    else:
        os.environ["COUNTERFEIT_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def fashion_dir():
    """A folder with the real Fashion-MNIST files (Debian's package or ../shared), else skip."""
    for d in (Path("/usr/share/datasets/fashion-mnist"), SHARED_FASHION):
        if (d / "train-images-idx3-ubyte.gz").exists():
            return str(d)
    pytest.skip("Fashion-MNIST files not found (apt install dataset-fashion-mnist)")


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """96 grey 28x28 PNGs in two class folders: bright squares and dark rings on noise."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    for cls in ("squares", "rings"):
        (root / cls).mkdir()
        for i in range(48):
            img = rng.integers(0, 40, (28, 28)).astype(np.uint8)
            cx, cy, r = rng.integers(9, 19), rng.integers(9, 19), rng.integers(4, 8)
            if cls == "squares":
                img[cy - r : cy + r, cx - r : cx + r] = 230
            else:
                d = np.hypot(yy - cy, xx - cx)
                img[(d > r - 2) & (d < r)] = 200
            Image.fromarray(img).save(root / cls / f"{i:03d}.png")
    return str(root)


TINY = ["--g-width", "8", "--d-width", "8", "--z-dim", "8", "--batch-size", "16"]
STUDIO_RUNS = ("00000-tiny-dcgan", "00001-tiny-cdcgan", "00002-ring8-mlp")


@pytest.fixture(scope="session")
def studio_runs(tiny_folder, tmp_path_factory):
    """A runs folder for the studio tests: a tiny DCGAN, a tiny conditional DCGAN (two-class folder) and a ring8 MLP."""
    from counterfeit.cli import main

    root = tmp_path_factory.mktemp("studio") / "runs"
    tiny = root.parent / "tiny"  # a fixed folder name gives the fixed run names of STUDIO_RUNS
    tiny.symlink_to(tiny_folder)
    short = ["--kimg", "0.064", "--tick-kimg", "0.032", "--snapshot-kimg", "0.032", "--sample-kimg", "0.032", "--no-progress"]
    for extra in (["--data", str(tiny)], ["--data", str(tiny), "--model", "cdcgan"], ["--data", "ring8"]):
        assert main(["train", *TINY, *short, "--eval-every-kimg", "0", "--out", str(root), *extra]) == 0
    return root


def reload_pair(cfg, G, D, tmp_path):
    """Save (G, D) in a checkpoint, build a fresh pair from another seed and load the checkpoint into it."""
    from counterfeit.checkpoints import load_module, read_checkpoint, save_checkpoint
    from counterfeit.models import build_models

    path = save_checkpoint(tmp_path, 1, {"G": G, "D": D}, {}, {})
    tensors, _ = read_checkpoint(path)
    torch.manual_seed(99)
    G2, D2 = build_models(cfg)
    load_module(G2, tensors, "G", path)
    load_module(D2, tensors, "D", path)
    return G2, D2


@pytest.fixture(scope="session")
def tiny_cond_run(tiny_folder, tmp_path_factory):
    """A finished tiny conditional DCGAN run (2 classes: rings, squares) trained on tiny_folder, to read from."""
    from counterfeit.config import make_config
    from counterfeit.runs import create_run_dir
    from counterfeit.train import conditional_config, load_training_data, train

    cfg = make_config(model="cdcgan", data=tiny_folder, g_width=8, d_width=8, z_dim=8, batch_size=16, kimg=0.128, tick_kimg=0.064,
                      sample_kimg=0.032, snapshot_kimg=0.064, eval_every_kimg=0, seed=3)  # fmt: skip
    cfg = conditional_config(cfg, load_training_data(cfg))
    run_dir = create_run_dir(cfg, tmp_path_factory.mktemp("runs"))
    train(cfg, run_dir)
    return run_dir


class FakeMsvcrt:
    """msvcrt.locking as Windows does it: bytes locked through one handle are refused to every other, in-process too."""

    LK_UNLCK, LK_NBLCK = 0, 2

    def __init__(self):
        self.held = {}  # (device, inode, offset, length) -> the fd holding it
        self.calls = []  # (fd, mode, offset, length)

    def locking(self, fd, mode, nbytes):
        import errno

        st, offset = os.fstat(fd), os.lseek(fd, 0, os.SEEK_CUR)
        key = (st.st_dev, st.st_ino, offset, nbytes)
        self.calls.append((fd, mode, offset, nbytes))
        if mode == self.LK_UNLCK:
            if self.held.get(key) != fd:
                raise OSError(errno.EACCES, "Permission denied")
            del self.held[key]
        elif key in self.held:
            raise OSError(errno.EACCES, "Permission denied")
        else:
            self.held[key] = fd


@pytest.fixture
def windows_locks(monkeypatch):
    """fileio's locks as on Windows, through a FakeMsvcrt (returned to look at)."""
    import counterfeit.fileio as fileio

    fake = FakeMsvcrt()
    monkeypatch.setattr(fileio, "_WINDOWS", True)
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    return fake
