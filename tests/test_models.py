"""Model contract: every registered family builds, has the right shapes, trains both players, saves and loads."""

import pytest
import torch

from counterfeit.checkpoints import load_module, read_checkpoint, save_checkpoint
from counterfeit.config import ConfigError, make_config
from counterfeit.losses import build_loss
from counterfeit.models import MODELS, build_models
from counterfeit.train import d_step, g_step

CASES = {
    "dcgan": dict(g_width=8, d_width=8),
    "lecture": {},
    "mlp": dict(data="ring8", g_width=16, d_width=16),
    "cdcgan": dict(g_width=8, d_width=8),
}


def _y(cfg, n):
    """Class labels (n,) for a conditional model, else None."""
    return torch.arange(n) % cfg.model.num_classes if MODELS[cfg.model.name].conditional else None


def _cfg(name, **kw):
    return make_config(model=name, **{**CASES[name], **kw})


def _real(cfg, n):
    if MODELS[cfg.model.name].data_kind == "points":
        return torch.randn(n, 2)
    lo, hi = MODELS[cfg.model.name].pixel_range
    return torch.rand(n, cfg.data.channels, cfg.data.resolution, cfg.data.resolution) * (hi - lo) + lo


def test_every_registered_model_is_covered():
    assert {n for n, s in MODELS.items() if s.family == "gan"} == set(CASES)  # autoencoders: tests/test_autoencoders.py


@pytest.mark.parametrize("name", list(CASES))
def test_shapes_and_output_range(name):
    cfg = _cfg(name)
    torch.manual_seed(0)
    G, D = build_models(cfg)
    z = torch.randn(5, cfg.model.z_dim)
    x = G(z, _y(cfg, 5))
    assert x.shape == _real(cfg, 5).shape
    assert D(x, _y(cfg, 5)).shape == (5,)
    if MODELS[name].data_kind == "images":
        lo, hi = MODELS[name].pixel_range
        assert x.min() >= lo and x.max() <= hi


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_reach_both_players(name):
    cfg = _cfg(name)
    torch.manual_seed(0)
    G, D = build_models(cfg)
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    loss = build_loss(cfg.loss)  # the family's own loss (the conditional one has a class-head term)
    d_step(G, D, opt_D, loss, _real(cfg, 8), torch.randn(8, cfg.model.z_dim), _y(cfg, 8), _y(cfg, 8))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())
    g_step(G, D, opt_G, loss, torch.randn(8, cfg.model.z_dim), _y(cfg, 8))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


@pytest.mark.parametrize("name", list(CASES))
def test_seeded_build_is_deterministic_and_checkpoint_round_trips(name, tmp_path):
    cfg = _cfg(name)
    torch.manual_seed(3)
    G1, D1 = build_models(cfg)
    torch.manual_seed(3)
    G2, _ = build_models(cfg)
    for a, b in zip(G1.state_dict().values(), G2.state_dict().values()):
        assert torch.equal(a, b)
    opt = torch.optim.Adam(G1.parameters())
    path = save_checkpoint(tmp_path, 123, {"G": G1, "D": D1}, {"opt_G": opt}, {"note": "x"})
    tensors, state = read_checkpoint(path)
    assert state["cur_nimg"] == 123 and state["note"] == "x"
    torch.manual_seed(99)
    G3, _ = build_models(cfg)
    load_module(G3, tensors, "G", path)
    G1.eval(), G3.eval()
    z = torch.randn(4, cfg.model.z_dim)
    assert torch.equal(G1(z, _y(cfg, 4)), G3(z, _y(cfg, 4)))


@pytest.mark.parametrize("res,ch", [(28, 1), (32, 3), (64, 1), (64, 3)])
def test_dcgan_resolutions(res, ch):
    cfg = make_config(resolution=res, channels=ch, g_width=4, d_width=4)
    G, D = build_models(cfg)
    x = G(torch.randn(2, cfg.model.z_dim))
    assert x.shape == (2, ch, res, res) and D(x).shape == (2,)


def test_dcgan_rejects_unsupported_resolution():
    with pytest.raises(ConfigError, match="resolution"):
        build_models(make_config(resolution=48))


def test_lecture_matches_the_keras_summary():
    """Parameter counts of the lecture's Keras model.summary(): G 2,155,137 and D 1,113,345."""
    G, D = build_models(make_config(model="lecture"))
    assert sum(p.numel() for p in G.parameters()) == 2_155_137
    assert sum(p.numel() for p in D.parameters()) == 1_113_345
    feats = D.net[:-3](torch.rand(2, 1, 28, 28))  # up to Flatten
    assert feats.shape == (2, 256, 12, 12) and feats.flatten(1).shape[1] == 36_864


def test_lecture_rejects_other_sizes():
    with pytest.raises(ConfigError, match="28x28 grey"):
        build_models(make_config(model="lecture", resolution=32))
