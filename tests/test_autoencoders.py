"""Autoencoders (ae, dae, vae) in the GAN trainer: model contract, the ELBO's parts, exact resume, --exclude-class and eval --anomaly."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY, reload_pair
from test_train import assert_stop_and_resume_is_exact

from counterfeit.checkpoints import list_checkpoints, read_checkpoint
from counterfeit.cli import _postfix, main
from counterfeit.config import ConfigError, make_config
from counterfeit.data import DataError, load_dataset
from counterfeit.fileio import sha256_file
from counterfeit.losses import gaussian_kl, reconstruction_loss
from counterfeit.metrics.anomaly import auroc
from counterfeit.models import MODELS, build_models
from counterfeit.runs import create_run_dir, load_run, read_stats
from counterfeit.sample import from_uint8, generate, reconstruct
from counterfeit.train import ae_step, load_training_data, train

AUTOENCODERS = ["ae", "dae", "vae"]
SMALL = dict(g_width=8, d_width=8, z_dim=8)
SHORT = ["--kimg", "0.128", "--tick-kimg", "0.064", "--snapshot-kimg", "0.064", "--sample-kimg", "0.064", "--no-progress"]


def _cfg(name, folder=None, **kw):
    opts = dict(batch_size=16, kimg=0.256, tick_kimg=0.064, sample_kimg=0.128, snapshot_kimg=0.064, seed=5)
    return make_config(model=name, **({"data": folder} if folder else {}), **{**SMALL, **opts, **kw})


def _reals(folder, n=32):
    return from_uint8(load_dataset(folder, "train").x[:n], (-1.0, 1.0))  # (n, 1, 28, 28) in [-1, 1]


def test_every_autoencoder_is_covered():
    assert {n for n, s in MODELS.items() if s.family == "autoencoder"} == set(AUTOENCODERS)
    assert all(MODELS[n].defaults["optim"]["beta1"] == 0.9 for n in AUTOENCODERS)


@pytest.mark.parametrize("name", AUTOENCODERS)
def test_shapes_and_ranges(name):
    torch.manual_seed(0)
    decoder, encoder = build_models(_cfg(name))
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    mu, logvar = encoder(x)
    assert mu.shape == (5, 8) and decoder.z_dim == 8
    assert (logvar is not None and logvar.shape == (5, 8)) == (name == "vae")
    decoder.eval()
    out = decoder(mu)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    assert torch.allclose(torch.tanh(decoder.pre_tanh(mu)), out)  # the BCE logits are the image's own pre-activation


def test_denoising_noise_only_while_training():
    torch.manual_seed(0)
    _, encoder = build_models(_cfg("dae", noise_std=0.5))
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    encoder.eval()
    assert torch.equal(encoder(x)[0], encoder(x)[0])
    encoder.train()
    assert not torch.equal(encoder(x)[0], encoder(x)[0])


@pytest.mark.parametrize("name", AUTOENCODERS)
def test_training_steps_reduce_reconstruction_loss(name, tiny_folder):
    torch.manual_seed(0)
    decoder, encoder = build_models(_cfg(name))
    opt = torch.optim.Adam([*decoder.parameters(), *encoder.parameters()], lr=2e-3, betas=(0.9, 0.999))
    real = _reals(tiny_folder)
    rec = [float(ae_step(encoder, decoder, opt, real)["loss_rec"]) for _ in range(25)]
    assert rec[-1] < 0.8 * rec[0], rec


def test_kl_matches_the_closed_form_and_the_reconstruction_is_bce():
    assert float(gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4))) == 0.0
    assert float(gaussian_kl(torch.ones(2, 4), torch.zeros(2, 4))) == pytest.approx(2.0)  # 4 dims * mu^2 / 2
    torch.manual_seed(1)
    mu, logvar = torch.randn(6, 5), torch.randn(6, 5)
    q, p = torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)
    assert float(gaussian_kl(mu, logvar)) == pytest.approx(float(torch.distributions.kl_divergence(q, p).sum(1).mean()), rel=1e-5)
    h, real = torch.randn(2, 1, 4, 4), torch.rand(2, 1, 4, 4) * 2 - 1
    target, pred = (real + 1) / 2, (torch.tanh(h) + 1) / 2  # both in [0, 1]
    by_hand = -(target * pred.log() + (1 - target) * (1 - pred).log()).sum() / 2
    assert float(reconstruction_loss(h, real)) == pytest.approx(float(by_hand), rel=1e-4)


def test_reparameterisation_carries_the_gradient_to_mu_and_logvar():
    torch.manual_seed(0)
    decoder, encoder = build_models(_cfg("vae"))
    opt = torch.optim.SGD([*decoder.parameters(), *encoder.parameters()], lr=0.0)
    losses = ae_step(encoder, decoder, opt, torch.rand(8, 1, 28, 28) * 2 - 1, beta=0.0)  # no KL: logvar learns only through z
    g = encoder.head.weight.grad  # (2 z_dim, F): mu's rows, then logvar's
    assert g[:8].abs().sum() > 0 and g[8:].abs().sum() > 0
    assert set(losses) == {"loss", "loss_rec", "loss_kl"} and float(losses["loss"]) == float(losses["loss_rec"])


@pytest.mark.parametrize("name", AUTOENCODERS)
def test_checkpoint_round_trip(name, tmp_path):
    cfg = _cfg(name)
    torch.manual_seed(3)
    decoder, encoder = build_models(cfg)
    decoder2, encoder2 = reload_pair(cfg, decoder, encoder, tmp_path)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    for m in (decoder, encoder, decoder2, encoder2):
        m.eval()
    assert torch.equal(reconstruct(encoder, decoder, x), reconstruct(encoder2, decoder2, x))


@pytest.mark.parametrize("name", ["vae", "dae"])  # the VAE's eps and the DAE's noise both come from the saved RNG
def test_stop_and_resume_is_exact(name, tiny_folder, tmp_path):
    assert_stop_and_resume_is_exact(_cfg(name, tiny_folder, eval_every_kimg=0), tmp_path)


def test_run_folder_sampling_and_report(tiny_folder, tmp_path, capsys):
    cfg = _cfg("vae", tiny_folder, eval_every_kimg=0)
    run = create_run_dir(cfg, tmp_path)
    train(cfg, run)
    rows = read_stats(run)
    assert [r["kimg"] for r in rows] == [0.064, 0.128, 0.192, 0.256]
    assert set(rows[0]) == {"kimg", "loss", "loss_rec", "loss_kl", "img/s", "seconds"}
    assert _postfix(rows[0]).startswith("loss ") and _postfix({"kimg": 1.0}) == ""  # the progress bar takes any row
    assert sorted(p.name for p in (run / "samples").glob("recon*.png")) == ["recon000000.1kimg.png", "recon000000.3kimg.png"]
    tensors, state = read_checkpoint(list_checkpoints(run)[-1])
    assert {k.split(".")[0] for k in tensors} == {"G", "D", "G_ema", "D_ema", "opt", "rng"} and "opt" in state["optimizer_groups"]
    loaded = load_run(run)  # the decoder's EMA, as for a GAN's G
    a, b = generate(loaded.G, loaded.spec.pixel_range, 16, seed=4), generate(loaded.G, loaded.spec.pixel_range, 16, seed=4)
    assert a.dtype == torch.uint8 and a.shape == (16, 1, 28, 28) and torch.equal(a, b)
    assert not torch.equal(a, generate(loaded.G, loaded.spec.pixel_range, 16, seed=5))
    assert main(["sample", str(run), "-n", "8", "--seed", "4", "--format", "npz", "--out", str(tmp_path / "s.npz")]) == 0
    assert main(["report", str(run)]) == 0 and "reconstructions (bottom)" in (run / "report.html").read_text()


def test_gan_options_are_refused(capsys):
    for kw, needle in [(dict(model="vae", loss="hinge"), "--loss"), (dict(model="ae", lr_d=1e-3), "--lr-d"),
                       (dict(model="dcgan", beta=2.0), "--beta"), (dict(model="vae", noise_std=0.1), "--noise-std")]:  # fmt: skip
        with pytest.raises(ConfigError, match=needle):
            make_config(**kw)
    assert make_config(model="dae", noise_std=0.1).model.noise_std == 0.1 and make_config(model="vae", beta=4).loss.beta == 4


def test_exclude_class(tiny_folder, fashion_dir, tmp_path):
    full = load_training_data(make_config(data=tiny_folder))
    for which in ("Squares", "1"):
        data = load_training_data(make_config(data=tiny_folder, exclude_class=which))
        assert len(data) == 48 and data.class_names == full.class_names and (data.labels == 0).all()
    fashion = load_training_data(make_config(data_dir=fashion_dir, exclude_class="bag"))
    assert len(fashion) == 54_000 and 8 not in fashion.labels and fashion.info["excluded_class"] == "Bag"
    with pytest.raises(DataError, match="unknown class 'circles' for --exclude-class.*0=rings, 1=squares") as e:
        load_training_data(make_config(data=tiny_folder, exclude_class="circles"))
    assert "\n" not in str(e.value)
    flat = tmp_path / "flat"  # no class sub-folders: unlabelled
    flat.mkdir()
    for i, png in enumerate(sorted(Path(tiny_folder).glob("*/*.png"))[:20]):
        shutil.copy(png, flat / f"{i}.png")
    with pytest.raises(DataError, match="--exclude-class needs labelled data"):
        load_training_data(make_config(data=str(flat), exclude_class="rings"))


def test_auroc_known_answers():
    labels = torch.tensor([0, 0, 0, 1, 1])
    assert auroc(torch.tensor([0.1, 0.2, 0.3, 0.8, 0.9]), labels) == 1.0
    assert auroc(torch.tensor([0.9, 0.8, 0.7, 0.2, 0.1]), labels) == 0.0
    assert auroc(torch.ones(5), labels) == 0.5  # all ties: chance
    assert auroc(torch.tensor([1.0, 2.0, 3.0, 2.0, 4.0]), labels) == pytest.approx(4.5 / 6)  # 2 beats 1, ties 2, loses to 3; 4 beats all
    from torchmetrics.functional import auroc as tm_auroc

    torch.manual_seed(0)
    s, y = torch.rand(300), torch.rand(300) < 0.3
    assert auroc(s, y) == pytest.approx(float(tm_auroc(s, y.long(), task="binary")), abs=1e-5)
    assert auroc(s * 1e4, y) == auroc(s, y)  # no squashing of large scores
    with pytest.raises(ValueError, match="both"):
        auroc(torch.rand(3), torch.zeros(3))


@pytest.mark.parametrize("model", ["vae", "dcgan"])
def test_eval_anomaly_cli(model, tiny_folder, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--model", model, "--data", tiny_folder, "--exclude-class", "rings", *TINY, *SHORT, "--out", str(out)]) == 0
    run = next(out.iterdir())
    (run / "metrics.json").write_text(json.dumps({"checkpoint": list_checkpoints(run)[-1].name, "metrics": {"fid": {"fid": 1.0}}}))
    capsys.readouterr()
    assert main(["eval", str(run), "--anomaly"]) == 0
    unit = "mean squared reconstruction error per pixel, pixels in [0, 1]" if model == "vae" else "-logit of D"
    assert f"mean score ({unit}) normal" in capsys.readouterr().out
    doc = json.loads((run / "metrics.json").read_text())
    a = doc["metrics"]["anomaly"]
    assert 0.0 <= a["auroc"] <= 1.0 and a["n_normal"] == a["n_anomalous"] == 48
    assert doc["metrics"]["fid"] == {"fid": 1.0}  # an older metric of the same checkpoint is kept beside it
    prov = a["provenance"]
    assert prov["excluded_class"] == "rings" and prov["n_test"] == 96 and ("reconstruction" in prov["scorer"]) == (model == "vae")
    assert prov["checkpoint_sha256"] == sha256_file(list_checkpoints(run)[-1]) and prov["torch"] == torch.__version__
    line = json.loads((run / "metric-anomaly.jsonl").read_text().splitlines()[-1])
    assert line["auroc"] == a["auroc"]


def test_eval_anomaly_needs_an_excluded_class(tiny_folder, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--model", "ae", "--data", tiny_folder, *TINY, *SHORT, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(next(out.iterdir())), "--anomaly"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("counterfeit: error: --anomaly needs a run trained with --exclude-class") and "\n" not in err


def test_eval_anomaly_refuses_a_packed_d_by_its_pack(tiny_folder, tmp_path, capsys):
    """A --pack D judges packs, not images: the refusal names --pack (and no longer blames a conditional model)."""
    out = tmp_path / "runs"
    argv = ["train", "--data", tiny_folder, "--exclude-class", "rings", "--pack", "2", *TINY, *SHORT, "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["eval", str(next(out.iterdir())), "--anomaly"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "a --pack 2 D judges packs, train without --pack" in err and "conditional" not in err
    assert "--exclude-class NAME" not in err  # this run has one: retraining without --pack keeps it


def test_eval_anomaly_on_a_packed_run_without_an_excluded_class_says_both(tiny_folder, tmp_path, capsys):
    """'train without --pack' alone led to a retrain that --anomaly refused in turn, for the missing --exclude-class."""
    out = tmp_path / "runs"
    assert main(["train", "--data", tiny_folder, "--pack", "2", *TINY, *SHORT, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(next(out.iterdir())), "--anomaly"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.endswith("a --pack 2 D judges packs, train without --pack and with --exclude-class NAME")


@pytest.mark.parametrize("name, says", [("00001-tiny-cdcgan", "'cdcgan' is conditional, train --model dcgan --exclude-class NAME"),
                                        ("00002-ring8-mlp", "2-D toy runs have no classes to leave out")])  # fmt: skip
def test_eval_anomaly_refuses_what_no_exclude_class_mends(studio_runs, name, says, capsys):
    """A cdcgan or toy run is refused for what it is, not sent to retrain with --exclude-class (which refuses it too)."""
    assert main(["eval", str(studio_runs / name), "--anomaly"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and says in err and "saw every class" not in err


def test_eval_anomaly_checks_the_run_folder_is_writable_first(tiny_folder, tmp_path, monkeypatch, capsys):
    """A read-only run folder failed only after every test image was scored, and the AUROC was never shown."""
    import errno
    import tempfile

    out = tmp_path / "runs"
    assert main(["train", "--model", "vae", "--data", tiny_folder, "--exclude-class", "rings", *TINY, *SHORT, "--out", str(out)]) == 0
    run = next(out.iterdir())
    capsys.readouterr()

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(str(dir), ".write-check.x"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr("counterfeit.metrics.anomaly.reconstruction_scores", lambda *a, **k: pytest.fail("scored before the check"))
    assert main(["eval", str(run), "--anomaly"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"cannot use {run} (Read-only file system)" in err
