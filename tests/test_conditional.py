"""Conditional DCGAN: labels reach G and D, training on labelled folders, exact resume, sampling by class."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY
from test_train import assert_stop_and_resume_is_exact

from counterfeit.cli import main
from counterfeit.config import ConfigError, make_config
from counterfeit.models import build_models
from counterfeit.runs import create_run_dir, load_run
from counterfeit.train import conditional_config, load_training_data, train

SHORT = ["--kimg", "0.064", "--tick-kimg", "0.032", "--snapshot-kimg", "0.032", "--sample-kimg", "0.032", "--no-progress"]


def _tiny_cfg(folder, **kw):
    opts = {"g_width": 8, "d_width": 8, "z_dim": 8, "batch_size": 16, "kimg": 0.256, "tick_kimg": 0.064, "sample_kimg": 0.128,
            "snapshot_kimg": 0.064, "eval_every_kimg": 0, "seed": 3}  # fmt: skip
    cfg = make_config(model="cdcgan", data=folder, **{**opts, **kw})
    return conditional_config(cfg, load_training_data(cfg))


def test_labels_change_both_players():
    torch.manual_seed(0)
    cfg = make_config(model="cdcgan", g_width=8, d_width=8, z_dim=8)
    assert cfg.model.num_classes == 10 and cfg.data.class_names[9] == "Ankle boot"
    G, D = build_models(cfg)
    G.eval(), D.eval()
    z = torch.randn(4, 8).repeat(2, 1)  # (8, 8): the same noise twice
    y = torch.tensor([0, 1, 2, 3, 9, 8, 7, 6])
    x = G(z, y)  # (8, 1, 28, 28)
    assert x.shape == (8, 1, 28, 28) and not torch.allclose(x[:4], x[4:])
    logits = D(x, y)
    assert logits.shape == (8,) and not torch.allclose(D(x, y), D(x, y.flip(0)))
    with pytest.raises(ValueError):
        G(z)


def test_conditional_config_from_folder_and_errors(tiny_folder, tmp_path):
    cfg = _tiny_cfg(tiny_folder)
    assert cfg.model.num_classes == 2 and cfg.data.class_names == ("rings", "squares")
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted((Path(tiny_folder) / "rings").glob("*.png"))[:20]:
        (flat / f.name).write_bytes(f.read_bytes())
    no_labels = make_config(model="cdcgan", data=str(flat))
    with pytest.raises(ConfigError, match="needs class labels"):
        conditional_config(no_labels, load_training_data(no_labels))


def test_stop_and_resume_is_exact(tiny_folder, tmp_path):
    assert_stop_and_resume_is_exact(_tiny_cfg(tiny_folder), tmp_path)


def test_recall_term_trains_and_resumes_exactly(tiny_folder, tmp_path):
    """The recall pool's noise and labels come from the run's shared generator, so a resumed run still matches."""
    cfg = _tiny_cfg(tiny_folder, recall_weight=1.0, recall_pool=8)
    assert (cfg.loss.recall_weight, cfg.loss.recall_pool) == (1.0, 8)
    assert_stop_and_resume_is_exact(cfg, tmp_path)


def test_cli_train_and_sample_by_class(tiny_folder, tmp_path, capsys):
    assert (
        main(
            ["train", "--model", "cdcgan", "--data", tiny_folder, *TINY, *SHORT, "--eval-every-kimg", "0", "--out", str(tmp_path / "runs")]
        )
        == 0
    )
    run = next((tmp_path / "runs").iterdir())
    assert json.loads((run / "config.json").read_text())["model"]["num_classes"] == 2
    assert load_run(run).config.data.class_names == ("rings", "squares")
    assert main(["sample", str(run), "-n", "6", "--format", "npz", "--out", str(tmp_path / "all.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "all.npz")["labels"], [0, 1, 0, 1, 0, 1])
    assert main(["sample", str(run), "-n", "5", "--class", "Squares", "--format", "npz", "--out", str(tmp_path / "sq.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "sq.npz")["labels"], [1] * 5)
    assert main(["sample", str(run), "-n", "5", "--class", "1", "--format", "npz", "--out", str(tmp_path / "sq1.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "sq.npz")["images"], np.load(tmp_path / "sq1.npz")["images"])
    assert main(["sample", str(run), "-n", "8"]) == 0  # class-by-row grid
    capsys.readouterr()
    assert main(["sample", str(run), "--class", "triangles"]) == 2
    assert "0=rings, 1=squares" in capsys.readouterr().err


def test_class_on_unconditional_run_is_a_clear_error(tiny_folder, tmp_path, capsys):
    assert main(["train", "--data", tiny_folder, *TINY, *SHORT, "--eval-every-kimg", "0", "--out", str(tmp_path / "runs")]) == 0
    run = next((tmp_path / "runs").iterdir())
    assert main(["sample", str(run), "--class", "rings"]) == 2
    assert "--model cdcgan" in capsys.readouterr().err


def test_stabilisers_reach_the_conditional_model(tiny_folder, tmp_path):
    cfg = _tiny_cfg(tiny_folder, mbstd=True, spectral_norm=True, kimg=0.064)
    G, D = build_models(cfg)
    assert any("parametrizations" in k for k in D.state_dict()) and D.net.head.in_features == (8 * 2 + 1) * 7 * 7
    assert train(cfg, create_run_dir(cfg, tmp_path)).status == "done"
    with pytest.raises(ConfigError, match="--pack"):
        build_models(_tiny_cfg(tiny_folder, pack=2))


def test_auxiliary_classifier_term(tiny_folder, tmp_path):
    from counterfeit.losses import build_loss
    from counterfeit.train import d_step, g_step

    cfg = _tiny_cfg(tiny_folder, ac_weight=1.0)
    assert cfg.loss.ac_weight == 1.0
    torch.manual_seed(0)
    G, D = build_models(cfg)
    assert D.classifier is not None and D.classifier.out_features == 2
    assert build_models(_tiny_cfg(tiny_folder, ac_weight=0.0))[1].classifier is None  # no idle head without the term
    loss = build_loss(cfg.loss)
    x, y = torch.rand(8, 1, 28, 28) * 2 - 1, torch.tensor([0, 1] * 4)  # (8, 1, 28, 28), (8,)
    logit, classes = D(x, y, with_classes=True)
    assert logit.shape == (8,) and classes.shape == (8, 2)
    assert torch.allclose(loss.ac_loss(classes, y), torch.nn.functional.cross_entropy(classes, y))
    opt_D, opt_G = torch.optim.Adam(D.parameters()), torch.optim.Adam(G.parameters())
    head_before = D.classifier.weight.clone()
    d_step(G, D, opt_D, loss, x, torch.randn(8, 8), y, y)
    assert not torch.equal(head_before, D.classifier.weight)  # D's class head learns from the reals
    # The G step's AC term reaches G through D's class head, and leaves D (head included) untouched.
    d_before = {k: v.clone() for k, v in D.state_dict().items()}
    g_before = [p.clone() for p in G.parameters()]
    g_step(G, D, opt_G, loss, torch.randn(8, 8), y)
    assert all(torch.equal(v, D.state_dict()[k]) for k, v in d_before.items())
    assert any(not torch.equal(a, b) for a, b in zip(g_before, G.parameters()))
    assert train(cfg, create_run_dir(cfg, tmp_path)).status == "done"
    with pytest.raises(ConfigError, match="--ac-weight"):
        make_config(model="dcgan", ac_weight=1.0)


def test_twin_auxiliary_classifier(tiny_folder, tmp_path):
    """TAC-GAN: the twin head learns from fakes only, and G's AC term is the head's cross-entropy minus the twin's."""
    import torch.nn.functional as F

    from counterfeit.losses import build_loss
    from counterfeit.train import d_step, g_step

    cfg = _tiny_cfg(tiny_folder, ac_weight=1.5, twin_ac=True, ms_weight=0.0)
    torch.manual_seed(0)
    G, D = build_models(cfg)
    assert D.classifier.out_features == 4  # 2 classes: [AC head | twin]
    loss = build_loss(cfg.loss)
    x, y = torch.rand(8, 1, 28, 28) * 2 - 1, torch.tensor([0, 1] * 4)  # (8, 1, 28, 28), (8,)
    z = torch.randn(8, 8)  # (8, z_dim)
    head, twin = loss.split_heads(D(x, y, with_classes=True)[1])
    assert head.shape == twin.shape == (8, 2)

    # D step: the twin rows of the class layer get gradient from the fakes' requested labels, the head rows from the reals.
    opt_D = torch.optim.SGD(D.parameters(), lr=0.0)  # lr 0: look at the gradients, change nothing
    d_step(G, D, opt_D, loss, x, z, y, y.flip(0))
    grad = D.classifier.weight.grad  # (4, W)
    assert grad[:2].abs().sum() > 0 and grad[2:].abs().sum() > 0
    with torch.no_grad():
        fake = G(z, y.flip(0))  # (8, 1, 28, 28): what d_step showed D
    D.zero_grad()
    twin_only = loss.ac_loss(loss.split_heads(D(fake, y.flip(0), with_classes=True)[1])[1], y.flip(0))
    twin_only.backward()
    assert torch.allclose(D.classifier.weight.grad[2:], grad[2:], atol=1e-6)  # the twin learns from the fakes alone

    # G step: loss_G = ns(fake) + 1.5 * (CE(head) - CE(twin)) on the same fakes.
    opt_G = torch.optim.SGD(G.parameters(), lr=0.0)
    D.eval(), G.eval()  # fixed batch statistics, so the hand computation sees what g_step saw
    loss_G, _ = g_step(G, D, opt_G, loss, z, y)
    with torch.no_grad():
        logit, classes = D(G(z, y), y, with_classes=True)
        h, t = classes.chunk(2, dim=1)
        expected = F.softplus(-logit).mean() + 1.5 * (F.cross_entropy(h, y) - F.cross_entropy(t, y))
    assert torch.allclose(loss_G, expected, atol=1e-5)

    # Trains, saves and samples like any cdcgan run; one-line errors where the twin has no head to pair with.
    run_dir = create_run_dir(cfg, tmp_path)
    assert train(cfg, run_dir).status == "done"
    assert load_run(run_dir).G(z[:2], y[:2]).shape == (2, 1, 28, 28)
    with pytest.raises(ConfigError, match="--twin-ac"):
        _tiny_cfg(tiny_folder, ac_weight=0.0, twin_ac=True)
    with pytest.raises(ConfigError, match="--twin-ac"):
        make_config(model="dcgan", twin_ac=True)
