"""The domain judge: model contract, image conversion, Fréchet distance answers, shipped weights, errors."""

import json

import numpy as np
import pytest
import torch

from counterfeit import evaluator as E
from counterfeit.fileio import sha256_file


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors gain nothing from threads, and on a busy 2-core machine thread hand-offs cost seconds.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_model_shapes_and_features():
    ev = E.Evaluator().eval()
    x = torch.rand(5, 1, 28, 28)  # (N, 1, 28, 28)
    with torch.inference_mode():
        assert ev(x).shape == (5, 10)
        assert ev.features(x).shape == (5, ev.num_features)
    probs, feats = E.predict(ev, torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8), batch_size=3)
    assert probs.shape == (7, 10) and feats.shape == (7, ev.num_features)
    assert torch.allclose(probs.sum(1), torch.ones(7, dtype=probs.dtype), atol=1e-5)
    with pytest.raises(ValueError, match="28, 28"):
        ev.features(torch.rand(2, 3, 28, 28))


def test_predict_leaves_training_mode_alone():
    ev = E.Evaluator().train()
    E.predict(ev, np.zeros((2, 28, 28), np.uint8))
    assert ev.training


@pytest.mark.parametrize("shape", [(4, 28, 28), (4, 1, 28, 28), (4, 28, 28, 1)])
def test_to_unit_layouts(shape):
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = E.to_unit(images)
    assert out.shape == (4, 1, 28, 28) and out.dtype == torch.float32
    assert torch.equal(out.reshape(4, 28, 28), torch.from_numpy(images.reshape(4, 28, 28)).float() / 255)
    assert torch.equal(E.to_unit(torch.from_numpy(images)), out)  # tensors and arrays alike


def test_to_unit_rejects_bad_input():
    with pytest.raises(TypeError):
        E.to_unit(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError):
        E.to_unit(np.zeros((2, 28, 28, 3), np.uint8))


def _gaussian_set(mean: torch.Tensor, var: torch.Tensor, rotation: torch.Tensor, n: int = 500) -> torch.Tensor:
    # Whitened noise gives a set whose sample mean and covariance are exactly `mean` and R diag(var) R^T.
    z = torch.randn(n, len(mean), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z = z - z.mean(0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(z.T @ z / (n - 1))).T  # sample covariance = I
    return (z * var.sqrt()) @ rotation.T + mean  # (n, D)


def test_frechet_distance_known_answers():
    g = torch.Generator().manual_seed(0)
    d = 6
    mu1, mu2 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    s1, s2 = (torch.rand(d, generator=g, dtype=torch.float64) + 0.1 for _ in range(2))
    expected = float(((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum())
    eye = torch.eye(d, dtype=torch.float64)
    a, b = _gaussian_set(mu1, s1, eye), _gaussian_set(mu2, s2, eye)
    assert E.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert E.frechet_distance(b, a) == pytest.approx(expected, rel=1e-6)
    # Same answer when both covariances share a rotated (non-diagonal) eigenbasis.
    rotation = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    a, b = _gaussian_set(mu1 @ rotation.T, s1, rotation), _gaussian_set(mu2 @ rotation.T, s2, rotation)
    assert E.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    # Identical sets, float32 numpy input, rank-deficient covariance (fewer samples than dimensions).
    feats = np.random.default_rng(0).random((50, 128), dtype=np.float32)
    assert E.frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        E.frechet_distance(feats, feats[:, :10])


def test_shipped_weights_classify_real_images():
    if not E.weights_path("fashion-mnist").is_file():
        pytest.skip("shipped evaluator weights are absent")
    try:
        images, labels = E.load_split("fashion-mnist", "test")
    except Exception as e:  # noqa: BLE001 - whatever the loader raises, no data means nothing to check
        pytest.skip(f"Fashion-MNIST test split unavailable: {e}")
    ev = E.load_evaluator("fashion-mnist")
    assert not ev.training and ev.meta["test_accuracy"] >= 0.9
    probs, _ = E.predict(ev, images[:300])
    assert (probs.argmax(1) == labels[:300]).double().mean() >= 0.85


def test_missing_weights_give_one_line_error(tmp_path):
    with pytest.raises(E.EvaluatorWeightsError) as info:
        E.load_evaluator("fashion-mnist", weights_dir=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and "fashion-mnist-evaluator.safetensors" in msg
    assert "counterfeit evaluator train --dataset fashion-mnist" in msg


def test_the_command_to_regenerate_weights_quotes_a_folder_with_spaces(tmp_path):
    """'--out my weights/fashion-mnist-evaluator' pasted as is would be two words, and the second an unknown argument."""
    (tmp_path / "my weights").mkdir()
    with pytest.raises(E.EvaluatorWeightsError) as info:
        E.load_evaluator("fashion-mnist", weights_dir=tmp_path / "my weights")
    assert str(info.value).endswith(f"--out '{tmp_path / 'my weights' / 'fashion-mnist-evaluator'}'")


def test_corrupt_weights_give_one_line_error(tmp_path):
    path = E.weights_path("fashion-mnist", tmp_path)
    path.write_bytes(b"not a safetensors file")
    meta = {"sha256": sha256_file(path), "class_names": ["a"] * 10, "num_features": 128, "widths": [32, 48, 96]}
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(E.EvaluatorWeightsError, match="corrupt") as info:
        E.load_evaluator("fashion-mnist", weights_dir=tmp_path)
    assert "\n" not in str(info.value)


def test_train_save_load_round_trip(tmp_path, monkeypatch):
    # Synthetic data keeps this fast and independent of the dataset files.
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)  # (N, 1, 28, 28)
    monkeypatch.setattr(E, "load_split", lambda dataset, split, data_dir=None: (images, torch.arange(40) % 10))
    meta = E.train_evaluator(epochs=1, batch_size=16, out=tmp_path / "fashion-mnist-evaluator", log=lambda s: None)
    assert meta["sha256"] == sha256_file(tmp_path / "fashion-mnist-evaluator.safetensors")
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries
    ev = E.load_evaluator(weights_dir=tmp_path)
    assert ev.meta == meta and not ev.training
    assert E.predict(ev, images)[1].shape == (40, ev.num_features)
    again = E.train_evaluator(epochs=1, batch_size=16, out=tmp_path / "again", log=lambda s: None)
    assert again["sha256"] == meta["sha256"]  # seeded training is deterministic


def test_shift_and_flip_moves_each_image_by_at_most_two_pixels():
    from counterfeit.evaluator import shift_and_flip

    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10, 7] = 1.0  # one lit pixel, away from the borders
    y = shift_and_flip(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and torch.equal(y.sum((1, 2, 3)), x.sum((1, 2, 3)))  # nothing lost, nothing invented
    where = [(t[0] == 1).nonzero()[0].tolist() for t in y]  # (row, col) of the lit pixel
    assert all(abs(r - 10) <= 2 for r, _ in where)
    kept = [c for _, c in where if abs(c - 7) <= 2]
    mirrored = [c for _, c in where if abs(c - (27 - 7)) <= 2]
    assert len(kept) + len(mirrored) == 64 and 10 < len(mirrored) < 54
    assert len({tuple(w) for w in where}) > 10  # the shifts vary
    assert torch.equal(y, shift_and_flip(x, torch.Generator().manual_seed(0)))


def test_evaluator_cli_refuses_train_options_for_show_and_keeps_named_files(tmp_path, capsys, monkeypatch):
    """show ignored --out/--epochs/--seed; train --out replaced existing files silently, and took FILE.safetensors as a stem."""
    from counterfeit.cli import main

    assert main(["evaluator", "show", "--out", str(tmp_path / "judge")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out: only 'evaluator train' takes it" in err
    precious = tmp_path / "judge.safetensors"
    precious.write_bytes(b"precious")
    for out in ("judge", "judge.safetensors", "."):  # a stem, the file's own name, and a folder (<dataset>-evaluator in it)
        target = tmp_path / "fashion-mnist-evaluator.json" if out == "." else precious
        target.write_bytes(b"precious")
        assert main(["evaluator", "train", "--epochs", "1", "--out", str(tmp_path / out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{target} exists; pass --force" in err
        assert target.read_bytes() == b"precious"
    # a folder still to be made (trailing slash), and a file where a folder should be: refused before any training
    assert main(["evaluator", "train", "--out", str(precious / "judge")]) == 2
    assert f"{precious} is a file, not a folder" in capsys.readouterr().err
    import pathlib

    with monkeypatch.context() as m:  # no folder above --out at all, as Z:\judge without a Z: drive: it raised StopIteration
        m.setattr(pathlib.Path, "exists", lambda self: False)
        assert main(["evaluator", "train", "--out", str(tmp_path / "judge")]) == 2
    assert f"{tmp_path.anchor} does not exist; give --out a folder on a drive that does" in capsys.readouterr().err


def test_evaluator_train_reads_the_data_dir_it_is_given(tmp_path, capsys, monkeypatch):
    """The offline message tells users to pass --data-dir, which 'evaluator train' lacked; 'show' refuses it."""
    from counterfeit.cli import main
    from counterfeit.data import DataError

    asked = []

    def fake_load_idx(name, split="train", data_dir=None, download=True):
        asked.append((name, split, data_dir))
        raise DataError(f"no {name} files in {data_dir}")

    monkeypatch.setattr(E, "load_idx", fake_load_idx)
    assert main(["evaluator", "train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "j")]) == 2
    assert asked == [("mnist", "train", str(tmp_path))]
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["evaluator", "show", "--data-dir", str(tmp_path)]) == 2
    assert "--data-dir: only 'evaluator train' takes it" in capsys.readouterr().err
