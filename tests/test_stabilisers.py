"""Stabilisers: DiffAugment, spectral norm, minibatch std, PacGAN packing, their config checks, and short runs with each."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import reload_pair
from torch import nn

from counterfeit.augment import diff_augment
from counterfeit.checkpoints import list_checkpoints, read_checkpoint
from counterfeit.cli import _parser, main
from counterfeit.config import ConfigError, RunConfig, load_config, make_config
from counterfeit.losses import build_loss
from counterfeit.models import build_models
from counterfeit.models.layers import MinibatchStd, mbstd_group_size, pack_samples
from counterfeit.runs import create_run_dir, read_stats
from counterfeit.train import Callbacks, d_step, g_step, train

TINY_DCGAN = dict(g_width=8, d_width=8, z_dim=8)
TINY_MLP = dict(data="ring8", g_width=16, d_width=16)


def _images(n, channels=1, side=28):
    return torch.rand(n, channels, side, side) * 2 - 1


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------- DiffAugment


def test_diffaug_empty_policy_is_the_identity():
    x = _images(4)
    assert diff_augment(x, "") is x


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
@pytest.mark.parametrize("channels,side", [(1, 28), (3, 32)])
def test_diffaug_keeps_shapes_and_passes_gradients(policy, channels, side):
    x = _images(6, channels, side).requires_grad_(True)
    out = diff_augment(x, policy)
    assert out.shape == x.shape and out.dtype == x.dtype
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_diffaug_is_deterministic_under_a_seed_and_random_across_seeds():
    x = _images(8, 3, 32)
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(diff_augment(x, "color,translation,cutout"))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def _shifted(img, dy, dx):
    """img (C, H, W) moved down dy rows and right dx columns, zeros coming in."""
    C, H, W = img.shape
    padded = F.pad(img, (W, W, H, H))
    return padded[:, H - dy : 2 * H - dy, W - dx : 2 * W - dx]


def test_translation_is_a_zero_filled_shift_of_at_most_an_eighth():
    x = torch.arange(1, 1 + 5 * 2 * 16 * 16, dtype=torch.float32).view(5, 2, 16, 16)  # every pixel unique
    torch.manual_seed(0)
    out = diff_augment(x, "translation")
    for img, moved in zip(x, out):
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(_shifted(img, dy, dx), moved)]
        assert len(shifts) == 1  # 16 / 8 = 2 pixels at most


def test_cutout_zeroes_one_rectangle_of_at_most_half_the_side():
    torch.manual_seed(0)
    out = diff_augment(torch.ones(32, 1, 16, 16), "cutout")
    for img in out[:, 0]:
        rows, cols = (img == 0).nonzero(as_tuple=True)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert 4 <= h <= 8 and 4 <= w <= 8 and len(rows) == h * w  # one solid rectangle, clipped at the border


# ---------------------------------------------------------------- spectral norm


@pytest.mark.parametrize("kw,x", [(TINY_DCGAN, _images(8)), (TINY_MLP, torch.randn(8, 2))], ids=["dcgan", "mlp"])
def test_spectral_norm_makes_each_weight_have_unit_spectral_norm(kw, x):
    torch.manual_seed(0)
    _, D = build_models(make_config(spectral_norm=True, **kw))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())  # dcgan's D drops batch norm
    for _ in range(5):  # a few training-mode forwards refine the power iteration
        D(x)
    layers = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    for m in layers:
        assert torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item() == pytest.approx(1.0, abs=0.02)


def test_g_step_does_not_advance_the_power_iteration():
    torch.manual_seed(0)
    G, D = build_models(make_config(spectral_norm=True, **TINY_DCGAN))
    before = _state(D)
    g_step(G, D, torch.optim.Adam(G.parameters()), build_loss("ns"), torch.randn(8, 8))
    after = _state(D)
    assert any(k.endswith("_u") for k in before) and all(torch.equal(before[k], after[k]) for k in before)
    assert all(m.training for m in D.modules())  # paused only for the G step
    d_step(G, D, torch.optim.Adam(D.parameters()), build_loss("ns"), _images(8), torch.randn(8, 8))
    assert not torch.equal(before["body.0.0.parametrizations.weight.0._u"], _state(D)["body.0.0.parametrizations.weight.0._u"])


@pytest.mark.parametrize(
    "kw,x",
    [(dict(TINY_DCGAN, spectral_norm=True, mbstd=True, pack=2), _images(8)),
     (dict(TINY_MLP, spectral_norm=True, mbstd=True, pack=4), torch.randn(8, 2))],
    ids=["dcgan", "mlp"],
)  # fmt: skip
def test_checkpoint_round_trip_with_every_d_option(kw, x, tmp_path):
    cfg = make_config(**kw)
    torch.manual_seed(3)
    G1, D1 = build_models(cfg)
    D1(x)  # move the power-iteration vectors away from their initial values
    G2, D2 = reload_pair(cfg, G1, D1, tmp_path)
    D1.eval(), D2.eval()  # eval: spectral norm uses its stored vectors without refining them
    assert torch.equal(D1(x), D2(x))
    G1.eval(), G2.eval()
    z = torch.randn(4, cfg.model.z_dim)
    assert torch.equal(G1(z), G2(z))


# ---------------------------------------------------------------- minibatch standard deviation


def test_mbstd_group_size_is_the_largest_divisor_up_to_4():
    assert [mbstd_group_size(n) for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 64)] == [1, 2, 3, 4, 1, 3, 1, 4, 3, 4]


def test_mbstd_appends_the_group_std_as_one_feature():
    x = torch.randn(8, 3, 4, 4)
    out = MinibatchStd()(x)
    assert out.shape == (8, 4, 4, 4) and torch.equal(out[:, :3], x)
    extra = out[:, 3]  # (8, 4, 4): constant over the pixels of each sample
    assert torch.equal(extra, extra[:, :1, :1].expand_as(extra))
    for i in range(8):  # groups of 4 in ProGAN's layout: sample i with i + 2, i + 4, ... (same i % 2)
        group = x[i % 2 :: 2]
        assert extra[i, 0, 0].item() == pytest.approx(group.std(dim=0, unbiased=False).mean().item(), rel=1e-4)
    points = MinibatchStd()(torch.randn(6, 5))
    assert points.shape == (6, 6)
    collapsed = MinibatchStd()(torch.ones(6, 5).mul(3))
    assert collapsed[:, -1].max() < 1e-3  # identical samples: no spread for D to see


@pytest.mark.parametrize("kw,x", [(TINY_DCGAN, _images(6)), (TINY_MLP, torch.randn(6, 2))], ids=["dcgan", "mlp"])
def test_mbstd_d_takes_batches_not_divisible_by_4(kw, x):
    _, D = build_models(make_config(mbstd=True, **kw))
    assert any(isinstance(m, MinibatchStd) for m in D.modules())
    assert D(x).shape == (6,) and D(x[:5]).shape == (5,)


# ---------------------------------------------------------------- PacGAN


def test_pack_samples_puts_consecutive_samples_side_by_side():
    x = torch.arange(4 * 2 * 3 * 3, dtype=torch.float32).view(4, 2, 3, 3)
    packed = pack_samples(x, 2)
    assert packed.shape == (2, 4, 3, 3)
    assert torch.equal(packed[1, :2], x[2]) and torch.equal(packed[1, 2:], x[3])
    assert pack_samples(x, 1) is x
    with pytest.raises(ValueError, match="divisible by 3"):
        pack_samples(x, 3)


def test_packed_d_judges_each_pack_jointly():
    torch.manual_seed(0)
    _, D = build_models(make_config(pack=2, **TINY_MLP))
    x = torch.randn(8, 2)
    y = x.clone()
    y[5] += 1  # sample 5 is in pack 2
    a, b = D(x), D(y)
    assert a.shape == (4,) and (a != b).tolist() == [False, False, True, False]
    _, Dc = build_models(make_config(pack=4, **TINY_DCGAN))
    assert Dc.body[0][0].in_channels == 4 and Dc(_images(8)).shape == (2,)


# ---------------------------------------------------------------- short training with every option


STEP_CASES = {
    "lsgan": dict(loss="lsgan"),
    "hinge": dict(loss="hinge"),
    "wgan-gp": dict(loss="wgan-gp"),
    "r1": dict(r1_gamma=1.0),
    "spectral-norm": dict(spectral_norm=True, loss="hinge"),
    "mbstd": dict(mbstd=True),
    "pack": dict(pack=2),
    "all": dict(loss="wgan-gp", r1_gamma=0.1, spectral_norm=True, mbstd=True, pack=2),
}


@pytest.mark.parametrize("case", list(STEP_CASES))
@pytest.mark.parametrize("family", ["dcgan", "mlp"])
def test_three_steps_with_each_option_stay_finite(case, family):
    kw = dict(TINY_DCGAN if family == "dcgan" else TINY_MLP, **STEP_CASES[case])
    if family == "dcgan" and case in ("all", "wgan-gp"):
        kw["diffaug"] = "color,translation,cutout"
    cfg = make_config(**kw)
    torch.manual_seed(0)
    G, D = build_models(cfg)
    opt_G, opt_D = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 1e-3)
    loss = build_loss(cfg.loss)
    d_before = _state(D)
    for _ in range(3):
        real = _images(8) if family == "dcgan" else torch.randn(8, 2)
        loss_D, real_logits, fake_logits = d_step(G, D, opt_D, loss, real, torch.randn(8, cfg.model.z_dim))
        loss_G, _ = g_step(G, D, opt_G, loss, torch.randn(8, cfg.model.z_dim))
        assert math.isfinite(loss_D.item()) and math.isfinite(loss_G.item())
        assert real_logits.shape == (8 // cfg.model.pack,)
    assert any(not torch.equal(d_before[k], v) for k, v in D.state_dict().items())


def test_d_loss_reported_includes_the_penalty():
    cfg = make_config(r1_gamma=100.0, **TINY_MLP)
    torch.manual_seed(0)
    G, D = build_models(cfg)
    real, z = torch.randn(8, 2), torch.randn(8, cfg.model.z_dim)
    loss = build_loss(cfg.loss)
    with torch.no_grad():
        plain = loss.d_loss(D(real), D(G(z)))
    penalty = loss.d_reg(D, real, None)
    reported, _, _ = d_step(G, D, torch.optim.SGD(D.parameters(), 0.0), loss, real, z)
    assert penalty.item() > 0 and reported.item() == pytest.approx((plain + penalty).item(), rel=1e-5)


def test_toy_run_with_every_option_resumes_exactly(tmp_path):
    """wgan-gp + R1 + spectral norm + mbstd + pack on ring8: stop after 3 steps, resume, and match a straight run bit for bit."""
    cfg = make_config(loss="wgan-gp", r1_gamma=0.1, spectral_norm=True, mbstd=True, pack=2, **TINY_MLP, kimg=0.384, batch_size=64,
                      tick_kimg=0.128, sample_kimg=0.384, snapshot_kimg=0.128, eval_every_kimg=0)  # fmt: skip
    straight = create_run_dir(cfg, tmp_path)
    train(cfg, straight)
    broken = create_run_dir(cfg, tmp_path)
    steps = []
    assert train(cfg, broken, Callbacks(should_stop=lambda: len(steps) >= 3, on_step=lambda c, t: steps.append(c))).status == "stopped"
    train(cfg, broken)
    rows = read_stats(straight)
    assert len(rows) == 3 and all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    a, _ = read_checkpoint(list_checkpoints(straight)[-1])
    b, _ = read_checkpoint(list_checkpoints(broken)[-1])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if not k.startswith("rng"))


def test_image_run_with_diffaug_resumes_exactly(tiny_folder, tmp_path):
    cfg = make_config(data=tiny_folder, loss="hinge", diffaug="color,translation,cutout", mbstd=True, **TINY_DCGAN, batch_size=16,
                      kimg=0.064, tick_kimg=0.032, sample_kimg=0.064, snapshot_kimg=0.032, eval_every_kimg=0)  # fmt: skip
    straight = create_run_dir(cfg, tmp_path)
    train(cfg, straight)
    broken = create_run_dir(cfg, tmp_path)
    steps = []
    train(cfg, broken, Callbacks(should_stop=lambda: len(steps) >= 2, on_step=lambda c, t: steps.append(c)))
    train(cfg, broken)
    a, _ = read_checkpoint(list_checkpoints(straight)[-1])
    b, _ = read_checkpoint(list_checkpoints(broken)[-1])
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("rng"))


# ---------------------------------------------------------------- config and command line


def test_defaults_leave_everything_off():
    cfg = make_config()
    assert (cfg.loss.name, cfg.loss.gp_weight, cfg.loss.r1_gamma, cfg.loss.diffaug) == ("hinge", 10.0, 0.0, "")  # dcgan's loss
    assert (cfg.model.spectral_norm, cfg.model.mbstd, cfg.model.pack) == (False, False, 1)


def test_an_old_config_without_the_new_fields_still_loads(tmp_path):
    old = make_config().to_dict()
    for section, key in (("loss", "gp_weight"), ("loss", "r1_gamma"), ("loss", "diffaug"), ("model", "spectral_norm"),
                         ("model", "mbstd"), ("model", "pack")):  # fmt: skip
        del old[section][key]
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert load_config(tmp_path / "config.json") == make_config() == RunConfig.from_dict(old)


@pytest.mark.parametrize(
    "kw,needle",
    [
        (dict(pack=3), "--pack 3 must divide --batch-size 64"),
        (dict(pack=0), "--pack must be at least 1"),
        (dict(pack=16, batch_size=16), "one packed sample"),
        (dict(diffaug="color,zoom"), "--diffaug 'color,zoom' has unknown part(s) zoom"),
        (dict(diffaug="color", data="ring8"), "--diffaug augments images"),
        (dict(gp_weight=5.0), "--gp-weight only applies to --loss wgan-gp"),
        (dict(loss="wgan-gp", gp_weight=-1.0), "--gp-weight must be >= 0"),
        (dict(r1_gamma=-0.1), "--r1-gamma must be >= 0"),
        (dict(model="cdcgan", ac_weight=-1.0), "--ac-weight must be >= 0"),
        (dict(ms_weight=-0.5), "--ms-weight must be >= 0"),
        (dict(model="vae", ms_weight=1.0), "--ms-weight is a GAN option"),
        (dict(recall_weight=-1.0), "--recall-weight must be >= 0"),
        (dict(recall_pool=-1), "--recall-pool must be >= 0"),
        (dict(model="vae", recall_weight=1.0), "--recall-weight is a GAN option"),
        (dict(loss="wasserstein"), "unknown loss 'wasserstein'"),
    ],
)
def test_bad_options_give_one_line_errors(kw, needle):
    with pytest.raises(ConfigError) as e:
        make_config(**kw)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_lecture_model_refuses_d_stabilisers():
    with pytest.raises(ConfigError, match="--spectral-norm, --pack would change the lecture model's D"):
        build_models(make_config(model="lecture", spectral_norm=True, pack=2))
    build_models(make_config(model="lecture", loss="wgan-gp", r1_gamma=1.0, diffaug="translation"))  # these leave D's layers alone


def test_boolean_flags_stay_unset_unless_given():
    p = _parser()
    assert (p.parse_args(["train"]).spectral_norm, p.parse_args(["train"]).mbstd) == (None, None)
    assert p.parse_args(["train", "--spectral-norm", "--no-mbstd"]).spectral_norm is True
    assert p.parse_args(["train", "--no-mbstd"]).mbstd is False


def test_dry_run_prints_the_options(capsys):
    argv = ["train", "--dry-run", "--loss", "wgan-gp", "--gp-weight", "5", "--r1-gamma", "0.5", "--spectral-norm", "--mbstd", "--pack", "2",
            "--diffaug", "color,translation"]  # fmt: skip
    assert main(argv) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["loss"] == {"name": "wgan-gp", "gp_weight": 5.0, "r1_gamma": 0.5, "diffaug": "color,translation", "ac_weight": 0.0, "twin_ac": False,
                           "ms_weight": 0.0, "recall_weight": 0.0, "recall_pool": 256, "beta": 1.0}  # fmt: skip
    assert (cfg["model"]["spectral_norm"], cfg["model"]["mbstd"], cfg["model"]["pack"]) == (True, True, 2)
    assert main(["train", "--dry-run", "--pack", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "counterfeit: error: --pack 3 must divide --batch-size 64; D sees the batch in packs"
