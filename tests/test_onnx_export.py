"""ONNX export: the graph from `counterfeit export-onnx` draws the same images as the PyTorch generator (onnxruntime)."""

import json
import sys

import numpy as np
import pytest
import torch
from conftest import TINY

from counterfeit.cli import main
from counterfeit.runs import load_run
from counterfeit.sample import make_noise

ort = pytest.importorskip("onnxruntime", reason="pip install 'counterfeit[onnx]'")
onnx = pytest.importorskip("onnx")

SHORT = ["--kimg", "0.032", "--tick-kimg", "0.032", "--snapshot-kimg", "0.032", "--sample-kimg", "0.032", "--eval-every-kimg", "0",
         "--no-progress"]  # fmt: skip


@pytest.mark.parametrize("model", ["dcgan", "cdcgan"])
def test_onnx_matches_torch(model, tiny_folder, tmp_path, capfd):
    runs = tmp_path / "runs"
    assert main(["train", "--model", model, "--data", tiny_folder, *TINY, *SHORT, "--out", str(runs)]) == 0
    run_dir = next(runs.iterdir())
    out = tmp_path / "g.onnx"
    capfd.readouterr()
    assert main(["export-onnx", str(run_dir), "--out", str(out)]) == 0
    printed = capfd.readouterr()  # file-descriptor level: torch's own log handlers write there too
    assert "wrote" in printed.out and not list(tmp_path.glob("*.tmp"))
    assert "torchvision" not in printed.err and "Warning" not in printed.err, printed.err  # nothing about ops G does not use
    assert main(["export-onnx", str(run_dir), "--out", str(out)]) == 2  # never replaced without --force
    assert "exists already" in capfd.readouterr().err
    (tmp_path / "g.png").write_bytes(b"mine")
    assert main(["export-onnx", str(run_dir), "--out", str(tmp_path / "g.png"), "--force"]) == 2  # wrote ONNX under .png
    assert "give a name ending in .onnx, such as" in capfd.readouterr().err and (tmp_path / "g.png").read_bytes() == b"mine"
    G = load_run(run_dir).G
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for n in (1, 5):  # a batch size other than the traced one: the batch dimension is dynamic
        z = make_noise(n, G.z_dim, seed=7)  # (n, z_dim)
        feeds = {"z": z.numpy()}
        labels = torch.arange(n) % 2 if model == "cdcgan" else None  # (n,)
        if labels is not None:
            feeds["labels"] = labels.numpy()
        (images,) = sess.run(["images"], feeds)
        with torch.no_grad():
            expected = G(z, labels).numpy()  # (n, 1, 28, 28)
        assert images.shape == expected.shape == (n, 1, 28, 28)
        np.testing.assert_allclose(images, expected, atol=1e-5)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["model"] == model and int(meta["z_dim"]) == G.z_dim and json.loads(meta["pixel_range"]) == [-1.0, 1.0]
    if model == "cdcgan":
        assert json.loads(meta["class_names"]) == ["rings", "squares"]
        assert "class indices 0..1 (not checked: a negative one wraps round)" in meta["usage"]  # ONNX Gather takes -1


def test_onnx_export_bad_run(tmp_path, capsys):
    assert main(["export-onnx", str(tmp_path / "nope"), "--out", str(tmp_path / "g.onnx")]) == 2
    assert "is not a folder" in capsys.readouterr().err and not (tmp_path / "g.onnx").exists()


def test_onnx_export_to_a_folder_or_unwritable_path(tiny_folder, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "--data", tiny_folder, *TINY, *SHORT, "--out", str(runs)]) == 0
    run_dir = next(runs.iterdir())
    capsys.readouterr()
    (tmp_path / "blocker").write_text("a file where a folder should be")
    for out, needle in [(tmp_path, "is a folder"), (tmp_path / "blocker" / "g.onnx", "cannot write")]:
        assert main(["export-onnx", str(run_dir), "--out", str(out)]) == 2
        # torch's exporter may log its own warnings first; our error is one line of its own
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("counterfeit: error:")]
        assert len(errors) == 1 and needle in errors[0], errors


def test_onnx_export_refuses_an_opset_it_cannot_write(tiny_folder, tmp_path, capsys, monkeypatch):
    """An opset outside onnx's range, or one the converter cannot reach from the exporter's 18, writes no file."""
    runs = tmp_path / "runs"
    assert main(["train", "--data", tiny_folder, *TINY, *SHORT, "--out", str(runs)]) == 0
    run_dir = next(runs.iterdir())
    capsys.readouterr()
    for opset, needle in (
        ("99", "--opset 99 is not one this exporter writes"),
        ("-1", "choose 16 to"),
        ("15", "could not convert the graph to opset 15"),
    ):
        assert main(["export-onnx", str(run_dir), "--out", str(tmp_path / "g.onnx"), "--opset", opset]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("counterfeit: error:")]
        assert len(errors) == 1 and needle in errors[0], errors
        assert not (tmp_path / "g.onnx").exists()
        if opset == "-1":  # below the range the converter is known to fail: check that the failure itself is caught
            monkeypatch.setattr("counterfeit.onnx_export.MIN_OPSET", 1)


def test_onnx_export_below_opset_18_prints_one_line(tiny_folder, tmp_path, capfd):
    """Opset 17 is built as 18 and converted down: the exporter's notices about that stay quiet, only 'wrote' remains."""
    runs = tmp_path / "runs"
    assert main(["train", "--data", tiny_folder, *TINY, *SHORT, "--out", str(runs)]) == 0
    capfd.readouterr()
    assert main(["export-onnx", str(next(runs.iterdir())), "--out", str(tmp_path / "g.onnx"), "--opset", "17"]) == 0
    out, err = capfd.readouterr()
    assert out.startswith("wrote ") and out.count("\n") == 1 and err == "", err


def test_onnx_export_without_onnx_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # an import of it now fails as if it were missing
    assert main(["export-onnx", str(tmp_path), "--out", str(tmp_path / "g.onnx")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'counterfeit[onnx]'" in err and err.count("\n") == 1


def test_a_toy_runs_graph_is_described_as_points(tmp_path, capfd):
    """A 2-D toy's graph outputs points (N, 2), and its metadata says so (it claimed 28x28 images in [-1, 1])."""
    runs = tmp_path / "runs"
    short = ["--kimg", "0.128", "--tick-kimg", "0.064", "--snapshot-kimg", "0.064", "--sample-kimg", "0.064"]
    assert main(["train", "--data", "ring8", *short, "--eval-every-kimg", "0", "--no-progress", "--out", str(runs)]) == 0
    run_dir, out = next(runs.iterdir()), tmp_path / "g.onnx"
    assert main(["export-onnx", str(run_dir), "--out", str(out)]) == 0
    G = load_run(run_dir).G
    z = make_noise(9, G.z_dim, seed=3)  # (9, z_dim)
    (points,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["points"], {"z": z.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(points, G(z).numpy(), atol=1e-5)  # (9, 2)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert "points (N, 2)" in meta["usage"] and meta["point_data"] == "ring8"
    assert "image_shape" not in meta and "pixel_range" not in meta
