"""Model contract: every registered family builds, has the right shapes, trains both players, saves and loads."""

import copy

import pytest
import torch

from counterfeit.checkpoints import load_module, read_checkpoint, save_checkpoint
from counterfeit.config import ConfigError, make_config
from counterfeit.losses import build_loss
from counterfeit.models import MODELS, build_models
from counterfeit.models.layers import flat_linear, to_channels_last
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


def assert_d_learns(D, cfg):
    """Every parameter of D got a gradient from the D step."""
    # hinge: while every score is inside the margin (as at init), reals pull the logit's bias up exactly as hard as
    # fakes push it down, so that one gradient is exactly 0
    exempt = {id(D.head.bias)} if cfg.loss.name == "hinge" else set()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters() if id(p) not in exempt)


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_reach_both_players(name):
    cfg = _cfg(name)
    torch.manual_seed(0)
    G, D = build_models(cfg)
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    loss = build_loss(cfg.loss)  # the family's own loss (the conditional one has a class-head term)
    d_step(G, D, opt_D, loss, _real(cfg, 8), torch.randn(8, cfg.model.z_dim), _y(cfg, 8), _y(cfg, 8))
    assert_d_learns(D, cfg)
    g_step(G, D, opt_G, loss, torch.randn(8, cfg.model.z_dim), _y(cfg, 8))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


@pytest.mark.parametrize("name", [n for n in CASES if MODELS[n].data_kind == "images"])
def test_channels_last_is_the_same_function_with_the_same_gradients(name):
    """to_channels_last changes only the memory layout: outputs and every parameter's gradient match NCHW."""
    cfg = _cfg(name, mbstd=name != "lecture")  # the minibatch-std channel too, where the family has one
    torch.manual_seed(0)
    pair = build_models(cfg)
    pair_cl = [to_channels_last(copy.deepcopy(m)) for m in pair]
    z, y = torch.randn(8, cfg.model.z_dim), _y(cfg, 8)
    outs, grads = [], []
    for G, D in (pair, pair_cl):
        D.eval()  # dropout (lecture) draws its mask in memory order; D's batch norm keeps no running stats anyway
        x = G(z, y)  # (8, C, H, W)
        logits = D(x, y)  # (8,)
        (logits.sum() + x.square().mean()).backward()
        outs.append((x, logits))
        grads.append({n: p.grad for n, p in [*G.named_parameters(prefix="G"), *D.named_parameters(prefix="D")]})
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-3, atol=1e-5, msg=n)


def test_flat_linear_keeps_a_channels_last_gradient_channels_last():
    """The head on an NHWC map: the same logits as head(h.flatten(1)), and h's gradient comes back NHWC, not NCHW."""
    torch.manual_seed(0)
    head = torch.nn.Linear(6 * 7 * 7, 3)
    h = torch.randn(4, 6, 7, 7)
    h_cl = h.contiguous(memory_format=torch.channels_last).requires_grad_()
    out = flat_linear(head, h_cl)  # (4, 3)
    torch.testing.assert_close(out, head(h.flatten(1)))
    out.square().sum().backward()
    assert h_cl.grad.is_contiguous(memory_format=torch.channels_last)
    h_ref = h.clone().requires_grad_()
    head(h_ref.flatten(1)).square().sum().backward()
    torch.testing.assert_close(h_cl.grad, h_ref.grad)


def test_channels_last_head_runs_one_spectral_norm_power_iteration_per_forward():
    """flat_linear reads a spectrally normalised head's weight once, as head(...) does: one power iteration, not two."""
    _, D = build_models(_cfg("dcgan", spectral_norm=True))
    to_channels_last(D)
    calls = []
    D.head.parametrizations.weight[0].register_forward_hook(lambda *_: calls.append(1))
    D(torch.rand(4, 1, 28, 28).contiguous(memory_format=torch.channels_last) * 2 - 1)
    assert len(calls) == 1


def test_channels_last_generator_keeps_one_layout_from_its_first_feature_map():
    """G's Reshape hands batch norm an NHWC map once the model is channels-last (mixed layouts take a slow CPU path)."""
    G, _ = build_models(_cfg("dcgan"))
    to_channels_last(G)
    h = G.stem(torch.randn(4, G.z_dim))  # (4, W0, 7, 7)
    assert h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous()


@pytest.mark.parametrize("channels_last", [False, True])
def test_gs_one_channel_last_layer_folded_is_the_transposed_conv(channels_last):
    """On the CPU in fp32, ToImage computes one channel as a matmul and a fold: the same function and gradients as
    conv_transpose2d, under the same parameters; elsewhere (bf16 autocast, ONNX export, colour) the native op runs."""
    import torch.nn.functional as F

    from counterfeit.models.layers import ToImage

    torch.manual_seed(0)
    layer = to_channels_last(ToImage(32, 1)) if channels_last else ToImage(32, 1)
    assert [k for k, _ in layer.named_parameters()] == ["weight", "bias"] and isinstance(layer, torch.nn.ConvTranspose2d)
    x = torch.randn(8, 32, 14, 14)
    x = (x.contiguous(memory_format=torch.channels_last) if channels_last else x).requires_grad_()
    assert layer._folds(x)
    y, ref = layer(x), F.conv_transpose2d(x, layer.weight, layer.bias, stride=2, padding=1)  # (8, 1, 28, 28)
    assert y.shape == ref.shape == (8, 1, 28, 28) and torch.allclose(y, ref, atol=1e-5)
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(y, (x, layer.weight, layer.bias), g), torch.autograd.grad(ref, (x, layer.weight, layer.bias), g)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not layer._folds(x)  # unmeasured there: oneDNN's bf16 kernels
    assert not ToImage(32, 3)._folds(torch.randn(2, 32, 14, 14))  # colour: not measured


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


def test_family_learning_rates_and_a_flag_overrides_them():
    """dcgan defaults to lr 1.5e-3, beta2 0.99, ramp-down 0.5 (RESULTS.md, time to quality); cdcgan keeps the 5e-4, 0.999, constant lr of its figures."""
    dcgan, cdcgan = make_config().optim, make_config(model="cdcgan").optim
    assert (dcgan.lr_g, dcgan.lr_d, dcgan.beta2, dcgan.lr_rampdown) == (1.5e-3, 1.5e-3, 0.99, 0.5)
    assert (cdcgan.lr_g, cdcgan.lr_d, cdcgan.beta2, cdcgan.lr_rampdown) == (5e-4, 5e-4, 0.999, 0.0)
    assert make_config(lr_rampdown=0.0).optim.lr_rampdown == 0.0  # the flag turns it off
    assert make_config(lr_g=2e-4).optim.lr_g == 2e-4 and make_config(lr_g=2e-4).optim.lr_d == 1.5e-3
    assert make_config(beta2=0.999).optim.beta2 == 0.999 and make_config(beta2=0.999).optim.beta1 == 0.5


def test_dcgan_defaults_to_the_hinge_loss_and_a_flag_overrides_it():
    """dcgan's default loss is hinge (RESULTS.md, time to quality, 2026-12-06); cdcgan keeps ns; --loss ns gives it back."""
    assert make_config().loss.name == "hinge" and make_config(model="cdcgan").loss.name == "ns"
    assert make_config(loss="ns").loss.name == "ns"


def test_dcgan_alone_trains_600_kimg_by_default():
    """600 kimg for dcgan (RESULTS.md, time to quality on a fast CPU); the other families keep 420; --kimg wins."""
    assert make_config().loop.total_kimg == 600.0
    assert make_config(model="cdcgan").loop.total_kimg == make_config(model="lecture").loop.total_kimg == 420.0
    assert make_config(kimg=40).loop.total_kimg == 40.0


def test_lecture_matches_the_keras_summary():
    """Parameter counts of the lecture's Keras model.summary(): G 2,155,137 and D 1,113,345."""
    G, D = build_models(make_config(model="lecture"))
    assert sum(p.numel() for p in G.parameters()) == 2_155_137
    assert sum(p.numel() for p in D.parameters()) == 1_113_345
    feats = D.net[:-3](torch.rand(2, 1, 28, 28))  # up to Flatten
    assert feats.shape == (2, 256, 12, 12) and feats.flatten(1).shape[1] == 36_864


def test_lecture_dropout_keeps_1_minus_p_scaled_and_is_off_in_eval():
    from counterfeit.models.lecture import Dropout

    torch.manual_seed(0)
    drop, x = Dropout(0.4).train(), torch.full((400, 1000), 3.0)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.6) < 0.005  # 400,000 draws: the std of the share is 0.0008
    assert torch.allclose(y[kept], torch.tensor(3.0 / 0.6))  # kept values scaled as F.dropout scales them
    y16 = drop(x.bfloat16())  # under --precision bf16 the noise stays float32, so the share kept is still 1 - p
    assert y16.dtype == torch.bfloat16 and abs((y16 != 0).float().mean().item() - 0.6) < 0.005
    assert torch.equal(drop.eval()(x), x)


def test_lecture_dropout_at_p_1_drops_everything_like_nn_dropout():
    from counterfeit.models.lecture import Dropout

    x = torch.ones(8, 8)
    assert torch.equal(Dropout(1.0).train()(x), torch.nn.Dropout(1.0).train()(x))  # zeros, not 0/0


def test_lecture_odd_same_conv_equals_explicit_zero_padding_under_the_same_keys():
    from counterfeit.models.lecture import _conv_same

    conv = _conv_same(6, 4, 5)
    padded = torch.nn.Sequential(torch.nn.ZeroPad2d((2, 2, 2, 2)), torch.nn.Conv2d(6, 4, 5))
    padded.load_state_dict(conv.state_dict())  # a checkpoint of the padded form loads into the new one and back
    x = torch.randn(2, 6, 14, 14)
    assert torch.allclose(conv(x), padded(x), atol=1e-6) and conv(x).shape == (2, 4, 14, 14)


def test_lecture_rejects_other_sizes():
    with pytest.raises(ConfigError, match="28x28 grey"):
        build_models(make_config(model="lecture", resolution=32))


@pytest.mark.parametrize("name", ["dcgan", "cdcgan"])
def test_depth_adds_same_resolution_layers_that_train(name):
    shallow, deep = _cfg(name), _cfg(name, g_depth=2, d_depth=1)
    assert (deep.model.g_depth, deep.model.d_depth) == (2, 1)
    torch.manual_seed(0)
    G0, D0 = build_models(shallow)
    G, D = build_models(deep)

    def n_same(m):  # 3x3 convs that keep the resolution: the added layers
        return sum(isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3) and c.stride == (1, 1) for c in m.modules())

    # Two resolutions (7x7 and 14x14 at 28x28): g_depth layers at each in G, d_depth in D.
    assert (n_same(G0), n_same(D0), n_same(G), n_same(D)) == (0, 0, 4, 2)
    # Depth 0 keeps the DCGAN layout, so runs written before the option load unchanged.
    for shallow_net, deep_net in ((G0, G), (D0, D)):
        deep_shapes = {k: v.shape for k, v in deep_net.state_dict().items()}
        assert all(deep_shapes.get(k) == v.shape for k, v in shallow_net.state_dict().items())
    x = G(torch.randn(5, deep.model.z_dim), _y(deep, 5))
    assert x.shape == _real(deep, 5).shape and D(x, _y(deep, 5)).shape == (5,)
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    loss = build_loss(deep.loss)
    d_step(G, D, opt_D, loss, _real(deep, 8), torch.randn(8, deep.model.z_dim), _y(deep, 8), _y(deep, 8))
    assert_d_learns(D, deep)
    g_step(G, D, opt_G, loss, torch.randn(8, deep.model.z_dim), _y(deep, 8))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


def test_deep_spectral_norm_discriminator_has_no_batch_norm():
    _, D = build_models(make_config(g_width=4, d_width=4, d_depth=2, spectral_norm=True))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    assert sum(hasattr(m, "parametrizations") for m in D.modules() if isinstance(m, torch.nn.Conv2d)) == 2 + 2 * 2


@pytest.mark.parametrize(
    "kw,needle",
    [
        (dict(g_depth=-1), "--g-depth and --d-depth must lie in [0, 8]"),
        (dict(d_depth=9), "--g-depth and --d-depth must lie in [0, 8]"),
        (dict(model="lecture", g_depth=1), "--g-depth adds conv layers to the DCGAN pair; use --model dcgan or cdcgan"),
        (dict(model="vae", d_depth=1), "--d-depth adds conv layers to the DCGAN pair"),
    ],
)
def test_bad_depth_gives_one_line_errors(kw, needle):
    with pytest.raises(ConfigError) as e:
        make_config(**kw)
    assert needle in str(e.value) and "\n" not in str(e.value)
