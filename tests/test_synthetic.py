"""Synthetic dataset export: every file is read back by the project's own loaders; refusals, --force, crash safety, labels."""

import csv
import gzip
import json

import numpy as np
import pytest
import torch

from counterfeit import synthetic
from counterfeit.cli import main
from counterfeit.config import ConfigError
from counterfeit.data import load_dataset
from counterfeit.data.idxfile import IdxFile, read_idx
from counterfeit.evaluator import load_evaluator, predict
from counterfeit.export import read_npz_images
from counterfeit.runs import load_run
from counterfeit.synthetic import IDX_IMAGES, IDX_LABELS, MANIFEST, export_dataset, labelled_fakes


def _export(run, out, *extra):
    return main(["export", str(run), "--n", "20", "--out", str(out), *extra])


def test_export_is_readable_by_the_folder_npz_and_idx_readers(tiny_cond_run, tmp_path):
    out = tmp_path / "synth"
    assert _export(tiny_cond_run, out) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["label_source"] == "requested" and manifest["counts"] == {"rings": 10, "squares": 10}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["0-rings", "1-squares"]

    # The npz reader; labels alternate as in `counterfeit sample`, and the images are the same seed-0 samples.
    images = read_npz_images(out / "fakes.npz")  # (20, 28, 28, 1)
    with np.load(out / "fakes.npz") as f:
        labels, names = f["labels"], list(f["class_names"])
    assert images.shape == (20, 28, 28, 1) and images.dtype == np.uint8 and names == ["rings", "squares"]
    assert labels.tolist() == [0, 1] * 10
    assert main(["sample", str(tiny_cond_run), "-n", "20", "--format", "npz", "--out", str(tmp_path / "s.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "s.npz")["images"], images)

    # labels.csv names every PNG with its label and class name.
    rows = list(csv.DictReader((out / "labels.csv").open()))
    assert list(rows[0]) == ["file", "label", "class_name"] and len(rows) == 20
    assert [int(r["label"]) for r in rows] == labels.tolist() and rows[1]["class_name"] == "squares"
    assert all((out / r["file"]).is_file() for r in rows)

    # The folder loader (`--data DIR`) labels by sub-folder; the index prefix keeps the class order.
    ds = load_dataset(str(out), "train", 28, 1)
    order = sorted(range(20), key=lambda i: rows[i]["file"])  # the loader reads files in sorted path order
    assert ds.class_names == ["0-rings", "1-squares"] and ds.labels.tolist() == labels[order].tolist()
    assert torch.equal(ds.x, torch.from_numpy(images[order]).permute(0, 3, 1, 2))

    # The verifying idx reader, with the sizes and checksums the manifest records; magic numbers as in Fashion-MNIST.
    idx = manifest["files"]["idx"]
    x = read_idx(out / IDX_IMAGES, IdxFile(idx[IDX_IMAGES]["bytes"], idx[IDX_IMAGES]["sha256"], 3), "fix")  # (20, 28, 28)
    y = read_idx(out / IDX_LABELS, IdxFile(idx[IDX_LABELS]["bytes"], idx[IDX_LABELS]["sha256"], 1), "fix")  # (20,)
    assert torch.equal(x, torch.from_numpy(images[..., 0])) and y.tolist() == labels.tolist()
    assert gzip.open(out / IDX_IMAGES).read(16) == bytes.fromhex("00000803") + (20).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert gzip.open(out / IDX_LABELS).read(8) == bytes.fromhex("00000801") + (20).to_bytes(4, "big")


def test_refuses_non_empty_folders_and_force_replaces_only_exports(tiny_cond_run, tmp_path, capsys):
    out = tmp_path / "synth"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _export(tiny_cond_run, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not empty" in err and "--force" in err
    assert _export(tiny_cond_run, out, "--force") == 2  # not an earlier export: never deleted
    assert "holds no earlier export" in capsys.readouterr().err and (out / "notes.txt").read_text() == "mine"
    assert _export(tiny_cond_run, tmp_path / "synth" / "notes.txt") == 2
    assert "is a file" in capsys.readouterr().err

    fresh = tmp_path / "fresh"
    assert _export(tiny_cond_run, fresh) == 0
    (fresh / "0-rings" / "stale.png").write_bytes(b"x")
    assert _export(tiny_cond_run, fresh, "--force", "--class", "squares") == 0
    assert sorted(p.name for p in fresh.iterdir() if p.is_dir()) == ["1-squares"]  # the old export is gone, stale file too
    assert json.loads((fresh / MANIFEST).read_text())["counts"] == {"rings": 0, "squares": 20}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folders left behind
    # Files the user added to an earlier export are not the export's to delete: --force refuses, and they stay.
    (fresh / "NOTES.txt").write_text("mine")
    (fresh / "1-squares" / "keep.txt").write_text("mine too")
    (fresh / "labels.csv").unlink()
    (fresh / "labels.csv").mkdir()  # a folder under an export file's name is not the export's either
    assert _export(tiny_cond_run, fresh, "--force") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds files no export wrote (1-squares/keep.txt, NOTES.txt, labels.csv)" in err
    assert (fresh / "NOTES.txt").read_text() == "mine" and (fresh / "1-squares" / "keep.txt").read_text() == "mine too"


def test_fewer_fakes_than_named_classes_is_refused(tiny_cond_run, tmp_path, capsys):
    """--n 1 with two --class values drew only the first by index and dropped the other without a word."""
    assert _export(tiny_cond_run, tmp_path / "s", "--n", "1", "--class", "squares", "--class", "rings") == 2
    assert "--n 1 is fewer than the 2 classes named with --class" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_crash_leaves_the_earlier_export_whole_and_no_half_dataset(tiny_cond_run, tmp_path, monkeypatch):
    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(synthetic, "_write_idx", crash)
    with pytest.raises(OSError):
        export_dataset(tiny_cond_run, 8, tmp_path / "new")
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []

    monkeypatch.undo()
    export_dataset(tiny_cond_run, 8, tmp_path / "old")
    before = {p.relative_to(tmp_path / "old"): p.read_bytes() for p in (tmp_path / "old").rglob("*") if p.is_file()}
    monkeypatch.setattr(synthetic, "_write_idx", crash)
    with pytest.raises(OSError):
        export_dataset(tiny_cond_run, 12, tmp_path / "old", force=True)
    after = {p.relative_to(tmp_path / "old"): p.read_bytes() for p in (tmp_path / "old").rglob("*") if p.is_file()}
    assert after == before and [p.name for p in tmp_path.iterdir()] == ["old"]


def test_a_full_disk_names_the_export_folder(tiny_cond_run, tmp_path, monkeypatch, capsys):
    """write() on a full disk names no file: the CLI printed a traceback instead of its one line."""
    import errno
    import os

    from counterfeit.cli import main

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(synthetic, "_write_idx", full)
    assert main(["export", str(tiny_cond_run), "--n", "8", "--out", str(tmp_path / "ex")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "ex") in err and "No space left on device" in err and "Traceback" not in err


def test_a_read_only_place_is_named_before_the_sampling(tiny_cond_run, tmp_path, monkeypatch, capsys):
    """The error named the hidden staging folder (.ex.partial-<pid>) beside --out, after every fake was drawn."""
    import errno
    import os
    import tempfile

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(str(dir), ".write-check.x"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(synthetic, "labelled_fakes", lambda *a, **k: pytest.fail("sampled before the check"))
    assert main(["export", str(tiny_cond_run), "--n", "8", "--out", str(tmp_path / "new" / "ex")]) == 2
    err = capsys.readouterr().err
    assert err == f"counterfeit: error: cannot use {tmp_path} (Read-only file system); pick a path you can write to\n"
    assert list(tmp_path.iterdir()) == []


def test_a_file_in_the_way_or_a_missing_drive_is_named_before_the_sampling(tiny_cond_run, tmp_path, monkeypatch, capsys):
    """A file above --out was skipped by the check (it looked for the nearest folder) and named the hidden staging
    folder after every fake was drawn; a path with no folder above it at all (a missing Windows drive) crashed."""
    import pathlib

    monkeypatch.setattr(synthetic, "labelled_fakes", lambda *a, **k: pytest.fail("sampled before the check"))
    (tmp_path / "notes.txt").write_text("")
    assert main(["export", str(tiny_cond_run), "--n", "8", "--out", str(tmp_path / "notes.txt" / "ex")]) == 2
    err = capsys.readouterr().err
    assert err == f"counterfeit: error: cannot use {tmp_path / 'notes.txt'} (Not a directory); part of the path is a file, not a folder\n"
    # No folder above --out exists, as for Z:\synth without a Z: drive: said in one line, not a StopIteration traceback.
    with monkeypatch.context() as m:
        m.setattr(pathlib.Path, "exists", lambda self: False)
        m.setattr(pathlib.Path, "is_dir", lambda self: False)
        assert main(["export", str(tiny_cond_run), "--n", "8", "--out", str(tmp_path / "ex")]) == 2
    assert capsys.readouterr().err == f"counterfeit: error: cannot use {tmp_path.anchor} (No such file or directory); check the path\n"


def test_conditional_class_choice_and_errors(tiny_cond_run):
    run = load_run(tiny_cond_run)
    fakes = labelled_fakes(run, 5, classes=["Squares"])
    assert fakes.labels.tolist() == [1] * 5 and fakes.confidence is None
    with pytest.raises(ConfigError, match="0=rings, 1=squares"):
        labelled_fakes(run, 5, classes=["triangles"])
    with pytest.raises(ConfigError, match="--n must be at least 1"):
        labelled_fakes(run, 0)


@pytest.fixture(scope="module")
def tiny_fashion_dcgan(fashion_dir, tmp_path_factory):
    """A tiny unconditional DCGAN run on Fashion-MNIST (its fakes are blobs, but the evaluator still labels them)."""
    from counterfeit.config import make_config
    from counterfeit.runs import create_run_dir
    from counterfeit.train import train

    cfg = make_config(g_width=8, d_width=8, z_dim=8, batch_size=16, kimg=0.032, tick_kimg=0.032, sample_kimg=0.032,
                      snapshot_kimg=0.032, eval_every_kimg=0, data_dir=fashion_dir)  # fmt: skip
    run_dir = create_run_dir(cfg, tmp_path_factory.mktemp("runs"))
    train(cfg, run_dir)
    return run_dir


def test_unconditional_fakes_are_labelled_by_the_evaluator(tiny_fashion_dcgan, tmp_path, monkeypatch):
    run = load_run(tiny_fashion_dcgan)
    fakes = labelled_fakes(run, 2000)
    probs = predict(load_evaluator(), fakes.images)[0]  # (2000, 10)
    assert fakes.label_source == "evaluator" and fakes.class_names[9] == "Ankle boot"
    assert torch.equal(fakes.labels, probs.argmax(1)) and torch.allclose(fakes.confidence, probs.max(1).values)

    manifest = export_dataset(tiny_fashion_dcgan, 30, tmp_path / "synth")
    rows = list(csv.DictReader((tmp_path / "synth" / "labels.csv").open()))
    assert list(rows[0]) == ["file", "label", "class_name", "confidence"] and manifest["evaluator"]["dataset"] == "fashion-mnist"
    assert [int(r["label"]) for r in rows] == fakes.labels[:30].tolist()  # fake i is draw i of the seed
    assert np.allclose([float(r["confidence"]) for r in rows], fakes.confidence[:30].numpy(), atol=1e-4)

    # --class keeps only fakes judged to be that class; asking for more than the draws hold is a one-line error.
    counts = torch.bincount(fakes.labels, minlength=10)  # (10,)
    common, rare = int(counts.argmax()), int(counts.argmin())
    picked = labelled_fakes(run, 10, classes=[str(common)])
    assert picked.labels.tolist() == [common] * 10
    monkeypatch.setattr(synthetic, "MAX_DRAWS_PER_FAKE", 1)  # one chunk of 2,000 draws: the ones counted above
    with pytest.raises(ConfigError, match=rf"only {int(counts[rare])} of 2000 fakes were judged"):
        labelled_fakes(run, int(counts[rare]) + 1, classes=[fakes.class_names[rare]])


def test_unconditional_runs_without_an_evaluator_are_refused(tiny_folder, tmp_path):
    assert main(["train", "--data", tiny_folder, "--g-width", "8", "--d-width", "8", "--z-dim", "8", "--batch-size", "16",
                 "--kimg", "0.032", "--eval-every-kimg", "0", "--no-progress", "--out", str(tmp_path / "runs")]) == 0  # fmt: skip
    run = next((tmp_path / "runs").iterdir())
    with pytest.raises(ConfigError, match="cannot be labelled.*--model cdcgan"):
        export_dataset(run, 4, tmp_path / "synth")


def test_ae_fakes_come_with_a_warning(fashion_dir, tmp_path, capsys):
    """An ae decoder fed N(0, I) draws noise-like grey (a fakes-only classifier: 19 %): export and augment-eval said nothing."""
    from counterfeit.augment_eval import augment_eval
    from counterfeit.config import make_config
    from counterfeit.runs import create_run_dir
    from counterfeit.train import train

    cfg = make_config(model="ae", g_width=8, d_width=8, z_dim=8, batch_size=16, kimg=0.032, tick_kimg=0.032, sample_kimg=0.032,
                      snapshot_kimg=0.032, data_dir=fashion_dir)  # fmt: skip
    run = create_run_dir(cfg, tmp_path / "runs")
    train(cfg, run)
    capsys.readouterr()
    assert main(["export", str(run), "--n", "4", "--out", str(tmp_path / "synth")]) == 0
    out = capsys.readouterr().out
    assert "warning: this ae run's decoder never trained on z ~ N(0, I)" in out
    assert out.index("warning:") < out.index("wrote 4 fakes")  # before the drawing: no need to wait for noise to learn it
    assert main(["sample", str(run), "-n", "4", "--out", str(tmp_path / "ae.png")]) == 0  # sample said nothing either
    assert "warning: this ae run's decoder never trained on z ~ N(0, I)" in capsys.readouterr().out
    rec = augment_eval(run, n_fakes=16, seeds=1, epochs=0.1, settings=("fakes",), n_real=16, n_test=16)
    assert "use a vae or a GAN run" in rec["warning"] and rec["warning"] in (run / "eval" / "augment.md").read_text()
    import html

    from counterfeit.report import write_report

    assert f"Warning: {html.escape(rec['warning'])}" in write_report(run).read_text()  # the report's table said nothing either
