"""Training loop: the two alternating steps, EMA, exact resume (also after SIGKILL), divergence and stop handling."""

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from counterfeit.checkpoints import list_checkpoints, read_checkpoint
from counterfeit.config import ConfigError, RunConfig, make_config
from counterfeit.losses import NonSaturatingLoss, build_loss
from counterfeit.models import build_models
from counterfeit.runs import create_run_dir, read_stats
from counterfeit.train import (
    Callbacks,
    TrainingDiverged,
    cpu_has_native_bf16,
    d_step,
    ema_update,
    g_step,
    lr_scale,
    pick_precision,
    train,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")


def tiny_cfg(folder, **kw):
    # fp32 pinned: dcgan's `auto` would give bf16 on some CPUs only, and these tests compare float32 results.
    opts = dict(data=folder, g_width=8, d_width=8, z_dim=8, batch_size=16, kimg=0.256, tick_kimg=0.064,
                sample_kimg=0.128, snapshot_kimg=0.064, seed=7, precision="fp32")  # fmt: skip
    return make_config(**{**opts, **kw})


def _snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def pair():
    torch.manual_seed(0)
    G, D = build_models(make_config(g_width=8, d_width=8, z_dim=8))
    return G, D, torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 1e-3)


def test_d_step_does_not_touch_g(pair):
    G, D, opt_G, opt_D = pair
    g_before, d_before = _snapshot(G), _snapshot(D)
    d_step(G, D, opt_D, build_loss("ns"), torch.rand(8, 1, 28, 28) * 2 - 1, torch.randn(8, 8))
    assert _same({k: v for k, v in _snapshot(G).items() if "running" not in k and "num_batches" not in k},
                 {k: v for k, v in g_before.items() if "running" not in k and "num_batches" not in k})  # fmt: skip
    assert all(p.grad is None for p in G.parameters())
    assert not _same(_snapshot(D), d_before)


def test_g_step_leaves_d_unchanged_and_unfrozen(pair):
    G, D, opt_G, opt_D = pair
    g_before, d_before = _snapshot(G), _snapshot(D)
    g_step(G, D, opt_G, build_loss("ns"), torch.randn(8, 8))
    assert _same(_snapshot(D), d_before)  # parameters and buffers: D has no running stats to drift
    assert all(p.grad is None for p in D.parameters())
    assert all(p.requires_grad for p in D.parameters())
    assert not _same(_snapshot(G), g_before)


def test_ema_update_is_a_lerp_and_copies_buffers(pair):
    G, _, _, _ = pair
    torch.manual_seed(1)
    G2, _ = build_models(make_config(g_width=8, d_width=8, z_dim=8))
    with torch.no_grad():
        for b in G.buffers():
            b.add_(1)
    expect = [0.75 * e + 0.25 * p for e, p in zip(G2.parameters(), G.parameters())]
    ema_update(G2, G, 0.75)
    assert all(torch.allclose(a, b) for a, b in zip(G2.parameters(), expect))
    assert all(torch.equal(a, b) for a, b in zip(G2.buffers(), G.buffers()))


def test_run_folder_contents(tiny_folder, tmp_path):
    cfg = tiny_cfg(tiny_folder)
    run = create_run_dir(cfg, tmp_path)
    assert run.name == "00000-tiny0-dcgan" or run.name.startswith("00000-")
    result = train(cfg, run)
    assert result.status == "done" and result.cur_nimg == 256
    rows = read_stats(run)
    assert [r["kimg"] for r in rows] == [0.064, 0.128, 0.192, 0.256]
    assert {"kimg", "loss_D", "loss_G", "D(x)", "D(G(z))", "img/s", "seconds"} <= set(rows[0])
    assert json.loads((run / "config.json").read_text())["loop"]["total_kimg"] == 0.256
    assert (run / "samples" / "reals.png").exists() and list((run / "samples").glob("fakes*.png"))
    assert len(list_checkpoints(run)) == 3  # keep_checkpoints
    assert list(run.glob("events.out.tfevents.*"))
    assert "finished at 0.3 kimg" in (run / "log.txt").read_text()
    _, state = read_checkpoint(list_checkpoints(run)[-1], prefixes=())
    assert state["done"] and state["cur_nimg"] == 256 and state["config"] == cfg.to_dict()


def _final_tensors(run):
    tensors, _ = read_checkpoint(list_checkpoints(run)[-1])
    return {k: v for k, v in tensors.items() if not k.startswith("rng")}


def assert_stop_and_resume_is_exact(cfg, tmp_path, stop_after_steps: int = 5) -> None:
    """Train straight through, and again stopped after some steps then resumed: same weights, same stats rows."""
    straight = create_run_dir(cfg, tmp_path)
    train(cfg, straight)

    broken = create_run_dir(cfg, tmp_path)
    calls = []
    stop = Callbacks(should_stop=lambda: len(calls) >= stop_after_steps, on_step=lambda c, t: calls.append(c))
    first = train(cfg, broken, stop)
    assert first.status == "stopped" and first.cur_nimg == stop_after_steps * cfg.loop.batch_size
    second = train(cfg, broken)
    assert second.status == "done"
    assert _same(_final_tensors(straight), _final_tensors(broken))
    assert [r["kimg"] for r in read_stats(broken)] == [r["kimg"] for r in read_stats(straight)]
    # The rows too, the one the stop fell inside included (the unfinished tick's sums go into the checkpoint); only the clock differs.
    timing = ("img/s", "seconds")
    rows = lambda run: [{k: v for k, v in r.items() if k not in timing} for r in read_stats(run)]  # noqa: E731
    assert rows(broken) == rows(straight)


def test_stop_and_resume_equals_straight_run(tiny_folder, tmp_path):
    assert_stop_and_resume_is_exact(tiny_cfg(tiny_folder), tmp_path)


def test_resume_is_exact_with_the_training_time_monitor_on(fashion_dir, tmp_path):
    # The monitor's judge is built at start-up (its layers are initialised before the weights are loaded); on resume
    # that must not move the training noise the checkpoint restored.
    cfg = tiny_cfg("fashion-mnist", data_dir=fashion_dir, eval_every_kimg=0.064, eval_n=50)
    assert_stop_and_resume_is_exact(cfg, tmp_path)
    assert any("cov/fid" in r for r in read_stats(next(tmp_path.iterdir())))


def _interrupt_then_resume(cli, args, out, env, sig):
    """Start a CLI run, send `sig` once its first checkpoint exists, then resume it to the end; return the run folder."""
    proc = subprocess.Popen(cli + args + ["--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*/checkpoints/ckpt-*.safetensors")):
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate()
    run = next(out.iterdir())
    ckpts = list_checkpoints(run)
    assert ckpts, "the run should have written a checkpoint before it was interrupted"
    _, state = read_checkpoint(ckpts[-1], prefixes=())
    assert state["cur_nimg"] < 6400 and not state["done"]
    if sig == signal.SIGINT:  # Ctrl-C: a clean exit that saved where it stopped
        assert proc.returncode == 0 and "stopped at" in err and "--resume" in err, err
        assert state["cur_nimg"] % 16 == 0 and "Traceback" not in err
    subprocess.run(cli + ["--resume", str(run), "--no-progress"], env=env, check=True, capture_output=True)
    return run


def test_sigkill_or_ctrl_c_then_resume_equals_straight_run(tiny_folder, tmp_path):
    """Kill -9 (or Ctrl-C) a CLI run after its first checkpoint, resume it, and get bit-identical weights."""
    args = ["--data", tiny_folder, "--g-width", "8", "--d-width", "8", "--z-dim", "8", "--batch-size", "16",
            "--kimg", "6.4", "--snapshot-kimg", "0.32", "--tick-kimg", "0.32", "--sample-kimg", "3.2", "--seed", "3",
            "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": SRC}
    cli = [sys.executable, "-m", "counterfeit", "train"]
    subprocess.run(cli + args + ["--out", str(tmp_path / "a")], env=env, check=True, capture_output=True)
    straight = next((tmp_path / "a").iterdir())
    for sig, out in ((signal.SIGKILL, tmp_path / "killed"), (signal.SIGINT, tmp_path / "ctrl-c")):
        run = _interrupt_then_resume(cli, args, out, env, sig)
        assert _same(_final_tensors(straight), _final_tensors(run)), sig
        assert [r["kimg"] for r in read_stats(run)] == [r["kimg"] for r in read_stats(straight)]


class _NaNAfter(NonSaturatingLoss):
    def __init__(self, steps):
        self.calls, self.steps = 0, steps

    def g_loss(self, fake_logits):
        self.calls += 1
        out = super().g_loss(fake_logits)
        return out * float("nan") if self.calls > self.steps else out


def test_nan_stops_with_a_clear_message_and_keeps_the_good_checkpoint(tiny_folder, tmp_path, monkeypatch):
    cfg = tiny_cfg(tiny_folder, kimg=0.512)
    monkeypatch.setattr("counterfeit.train.build_loss", lambda name: _NaNAfter(steps=10))
    run = create_run_dir(cfg, tmp_path)
    with pytest.raises(TrainingDiverged, match="diverged at 0.2 kimg.*ckpt-0000000128.safetensors is kept"):
        train(cfg, run)
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-0000000064.safetensors", "ckpt-0000000128.safetensors"]
    assert all(all(v == v for v in r.values()) for r in read_stats(run))  # no NaN row was logged


def test_d_steps_counts_real_images(tiny_folder, tmp_path):
    cfg = tiny_cfg(tiny_folder, kimg=0.128, d_steps=2)
    steps = []
    result = train(cfg, create_run_dir(cfg, tmp_path), Callbacks(on_step=lambda c, t: steps.append(c)))
    assert result.cur_nimg == 128 and steps == [32, 64, 96, 128]


def test_toy_run_writes_scatter_plots(tmp_path):
    cfg = make_config(
        data="ring8", g_width=16, d_width=16, kimg=0.512, batch_size=64, tick_kimg=0.256, sample_kimg=0.256, snapshot_kimg=0.256
    )
    assert cfg.model.name == "mlp"
    run = create_run_dir(cfg, tmp_path)
    train(cfg, run)
    assert len(list((run / "samples").glob("fakes*.png"))) >= 1 and len(read_stats(run)) == 2


def test_lr_scale_is_flat_then_falls_linearly_to_zero():
    assert lr_scale(0, 1000, 0.25) == 1.0 and lr_scale(750, 1000, 0.25) == 1.0
    assert lr_scale(875, 1000, 0.25) == pytest.approx(0.5) and lr_scale(1000, 1000, 0.25) == 0.0
    assert lr_scale(500, 1000, 1.0) == pytest.approx(0.5)


def test_lr_rampdown_sets_the_optimisers_lr_and_survives_a_resume(tiny_folder, tmp_path):
    cfg = tiny_cfg(tiny_folder, lr_rampdown=0.5)
    assert_stop_and_resume_is_exact(cfg, tmp_path, stop_after_steps=12)  # stopped inside the ramp
    run = create_run_dir(cfg, tmp_path)
    seen = []
    train(cfg, run, Callbacks(on_step=lambda c, t: seen.append(c)))
    _, state = read_checkpoint(list_checkpoints(run)[-1], prefixes=())
    lrs = [g["lr"] for opt in ("opt_G", "opt_D") for g in state["optimizer_groups"][opt]]
    # 16 steps of 16 images, the ramp over the last 128: the last step began at 240 of 256 images, so 1/8 of the base lr
    assert lrs == pytest.approx([cfg.optim.lr_g / 8, cfg.optim.lr_d / 8]) and seen[-1] == 256
    with pytest.raises(ConfigError, match="--lr-rampdown"):
        tiny_cfg(tiny_folder, lr_rampdown=1.5)


def test_the_loop_uses_fused_adam_on_cpu(tiny_folder, tmp_path):
    cfg = tiny_cfg(tiny_folder)
    run = create_run_dir(cfg, tmp_path)
    train(cfg, run)
    _, state = read_checkpoint(list_checkpoints(run)[-1], prefixes=())
    groups = [g for opt in ("opt_G", "opt_D") for g in state["optimizer_groups"][opt]]
    assert groups and all(g["fused"] is True and not g["foreach"] for g in groups)


def test_standardise_scales_points_not_the_weights():
    """--standardise divides D's input by the toy's RMS coordinate and multiplies G's output by it; same parameters."""
    plain, std = (build_models(make_config(data="grid25", g_width=16, d_width=16, standardise=s)) for s in (False, True))
    assert std[0].scale == pytest.approx(8**0.5) and plain[0].scale == 1.0
    std[0].load_state_dict(plain[0].state_dict())
    std[1].load_state_dict(plain[1].state_dict())
    z = torch.randn(5, 2)
    for m in (*plain, *std):
        m.eval()
    torch.testing.assert_close(std[0](z), plain[0](z) * 8**0.5)
    x = torch.randn(5, 2)
    torch.testing.assert_close(std[1](x * 8**0.5), plain[1](x))
    assert make_config(data="ring8").model.standardise  # the mlp family's default
    old = make_config(data="ring8").to_dict()
    del old["model"]["standardise"], old["optim"]["lr_rampdown"]  # a config.json written before these options
    rebuilt = RunConfig.from_dict(old)
    assert not rebuilt.model.standardise and rebuilt.optim.lr_rampdown == 0.0
    with pytest.raises(ConfigError, match="--standardise"):
        make_config(standardise=True)


def test_channels_last_trains_the_same_model_as_nchw(tiny_folder, tmp_path):
    """The memory format is a speed setting: the same seed gives the same weights up to float rounding, in a plain layout on disk."""
    runs = {}
    for cl in (True, False):
        cfg = tiny_cfg(tiny_folder, channels_last=cl, kimg=0.064)
        runs[cl] = create_run_dir(cfg, tmp_path)
        train(cfg, runs[cl])
    a, b = _final_tensors(runs[True]), _final_tensors(runs[False])
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].is_contiguous()
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4, msg=k)


def test_compile_option_trains_and_saves_plain_weights(tiny_folder, tmp_path):
    """--compile wraps G and D in torch.compile, but checkpoints hold the plain modules' keys and resume without it."""
    cfg = tiny_cfg(tiny_folder, compile=True, kimg=0.032, tick_kimg=0.016, snapshot_kimg=0.016)
    run = create_run_dir(cfg, tmp_path)
    result = train(cfg, run)
    assert result.status == "done" and all(torch.isfinite(torch.tensor(r["loss_D"])) for r in read_stats(run))
    assert not any("_orig_mod" in k for k in _final_tensors(run))
    plain = cfg.replace(loop={"compile": False, "total_kimg": 0.048})
    assert train(plain, run).cur_nimg == 48


@pytest.mark.parametrize("model", ["dcgan", "vae"])
def test_bf16_autocast_trains_with_fp32_weights(tiny_folder, tmp_path, model):
    """--precision bf16 runs the steps under bfloat16 autocast; weights, optimiser state and checkpoints stay float32."""
    cfg = tiny_cfg(tiny_folder, model=model, precision="bf16", kimg=0.064)
    run = create_run_dir(cfg, tmp_path)
    assert train(cfg, run).status == "done"
    rows = read_stats(run)
    assert rows and all(math.isfinite(v) for r in rows for k, v in r.items() if k.startswith("loss"))
    tensors = _final_tensors(run)
    assert all(t.dtype in (torch.float32, torch.int64) for t in tensors.values())


def test_precision_must_be_known(tiny_folder):
    with pytest.raises(ConfigError, match="--precision must be fp32, bf16 or auto, got 'fp8'"):
        tiny_cfg(tiny_folder, precision="fp8")


def test_auto_precision_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch):
    import counterfeit.train as train_module

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: True)
    assert [pick_precision("auto", cpu), pick_precision("auto", cuda)] == ["bf16", "fp32"]
    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: False)
    assert pick_precision("auto", cpu) == "fp32"
    assert [pick_precision(p, d) for p in ("fp32", "bf16") for d in (cpu, cuda)] == ["fp32", "fp32", "bf16", "bf16"]
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert cpu_has_native_bf16()  # AMX (Sapphire Rapids and later) counts too
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert not cpu_has_native_bf16()  # a torch without the private probes: fp32, not a crash


def test_dcgan_alone_defaults_to_auto_precision():
    assert make_config().loop.precision == "auto"
    others = ("cdcgan", "lecture", "vae")
    assert {m: make_config(model=m).loop.precision for m in others} == dict.fromkeys(others, "fp32")
    assert make_config(precision="fp32").loop.precision == "fp32"


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_logged_and_kept_in_the_checkpoint(tiny_folder, tmp_path, monkeypatch, native):
    import counterfeit.train as train_module

    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: native)
    cfg = tiny_cfg(tiny_folder, kimg=0.032, device="cpu", precision="auto")
    run = create_run_dir(cfg, tmp_path)
    assert train(cfg, run).status == "done"
    resolved = "bf16" if native else "fp32"
    assert f"on cpu, {resolved}" in (run / "log.txt").read_text()
    assert read_checkpoint(list_checkpoints(run)[-1])[1]["precision"] == resolved
    assert json.loads((run / "config.json").read_text())["loop"]["precision"] == "auto"  # the choice, not the machine's answer


def test_compile_without_a_compiler_is_a_one_line_error(tiny_folder, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    cfg = tiny_cfg(tiny_folder, compile=True)
    with pytest.raises(ConfigError, match="--compile on CPU needs a C\\+\\+ compiler"):
        train(cfg, create_run_dir(cfg, tmp_path))


def test_compile_on_windows_and_macos_names_their_compilers(monkeypatch):
    """Windows needs torch 2.5 and cl.exe, macOS the Xcode tools; the advice was apt-get install g++ everywhere."""
    import shutil
    import sys

    from counterfeit.train import _check_compiler

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(ConfigError, match="cl.exe"):
        _check_compiler(torch.device("cpu"))
    monkeypatch.setattr(torch, "__version__", torch.torch_version.TorchVersion("2.4.1"))
    with pytest.raises(ConfigError, match="torch 2.5 or newer on Windows \\(this is 2.4.1\\)"):
        _check_compiler(torch.device("cpu"))
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(ConfigError, match="xcode-select --install"):
        _check_compiler(torch.device("cpu"))


def test_resumed_adam_moments_take_their_parameters_channels_last_layout():
    """Checkpoints store contiguous tensors; fused Adam pairs elements by memory position, so layouts must match again."""
    from counterfeit.checkpoints import load_optimizer, save_checkpoint

    conv = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(conv.parameters())
    conv(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    with tempfile.TemporaryDirectory() as d:
        path = save_checkpoint(Path(d), 1, {"m": conv}, {"opt": opt}, {}, 1)
        tensors, state = read_checkpoint(path)
    fresh = torch.optim.Adam(conv.parameters())
    load_optimizer(fresh, tensors, state, "opt")
    moments = fresh.state[conv.weight]
    assert moments["exp_avg"].stride() == conv.weight.stride() and moments["exp_avg_sq"].stride() == conv.weight.stride()
    torch.testing.assert_close(moments["exp_avg"], opt.state[conv.weight]["exp_avg"], rtol=0, atol=0)


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"compile": True, "r1_gamma": 0.1}, "--compile cannot take the double backward"),
        ({"compile": True, "loss": "wgan-gp"}, "--compile cannot take the double backward"),
        ({"compile": True, "model": "vae"}, "--compile applies to the GAN step only"),
    ],
)
def test_compile_refuses_what_it_cannot_run(tiny_folder, options, needle):
    with pytest.raises(ConfigError, match=needle):
        tiny_cfg(tiny_folder, **options)


def test_bf16_on_a_gpu_without_it_is_a_one_line_error(monkeypatch):
    from counterfeit.train import _check_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Old GPU")
    with pytest.raises(ConfigError, match="--precision bf16 needs a GPU with bfloat16 support; Old GPU has none"):
        _check_precision("bf16", torch.device("cuda"))
    _check_precision("bf16", torch.device("cpu"))  # CPU autocast emulates bf16: allowed


def test_the_thread_count_is_logged_saved_and_a_change_on_resume_is_a_warning(tiny_folder, tmp_path, monkeypatch, caplog):
    """CPU kernels split sums by thread, so a resume on another count is not bit for bit: the run says so."""
    cfg = tiny_cfg(tiny_folder, kimg=0.064, eval_every_kimg=0)
    run = create_run_dir(cfg, tmp_path)
    train(cfg, run)
    threads = torch.get_num_threads()
    assert f", {threads} thread" in (run / "log.txt").read_text()
    assert read_checkpoint(list_checkpoints(run)[-1])[1]["torch_threads"] == threads
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads + 5)
    train(cfg.replace(loop={"total_kimg": 0.128}), run)
    assert f"trained with {threads} CPU threads and this resume uses {threads + 5}" in caplog.text
    assert f"OMP_NUM_THREADS={threads}" in caplog.text


def test_a_colour_folder_trained_in_grey_says_so_and_odd_file_names_reach_the_log(tiny_folder, tmp_path, caplog):
    """Colour pictures trained as 28x28 grey (the defaults) get a warning; a non-UTF-8 file name lost its log.txt line."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "pets"
    for cls in (b"cats", "chats_\xe9t\xe9".encode("latin-1")):  # a Windows zip's name: not UTF-8
        folder = os.path.join(os.fsencode(root), cls)
        os.makedirs(folder)
        for i in range(4):
            Image.fromarray(np.dstack([np.full((80, 100), v, np.uint8) for v in (60 * i, 30, 200)])).save(
                os.fsdecode(os.path.join(folder, b"%d.jpg" % i))
            )
    with open(os.path.join(os.fsencode(root), b"cats", b"bad_\xe9.png"), "wb") as f:
        f.write(b"not a picture")
    cfg = tiny_cfg(str(root), kimg=0.004, batch_size=4, eval_every_kimg=0)
    run = create_run_dir(cfg, tmp_path / "runs")
    train(cfg, run)
    log = (run / "log.txt").read_text()
    assert "holds colour images of 80 pixels or more a side, trained here as 28x28 grey: --channels 3 keeps their colour" in log
    assert "--resolution 64 keeps more detail" in log
    assert "skipped 1 of 9 files that could not be read: cats/bad_\\udce9.png" in log  # escaped, not dropped
    cfg = tiny_cfg(tiny_folder, kimg=0.004, batch_size=4, eval_every_kimg=0)
    train(cfg, grey := create_run_dir(cfg, tmp_path / "runs"))
    assert "holds" not in (grey / "log.txt").read_text()  # grey 28x28 pictures lose nothing
    rgb = tmp_path / "grey-as-rgb" / "a"  # what torchvision's save_image writes for grey images
    rgb.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.repeat(np.full((28, 28, 1), 50 * i, np.uint8), 3, axis=2)).save(rgb / f"{i}.png")
    cfg = tiny_cfg(str(rgb.parent), kimg=0.004, batch_size=4, eval_every_kimg=0)
    train(cfg, run := create_run_dir(cfg, tmp_path / "runs"))
    assert "holds" not in (run / "log.txt").read_text()  # "--channels 3 keeps their colour" would slow it for nothing


def test_a_full_disk_under_log_txt_is_said_once_and_never_hides_the_error(capsys):
    """Each log line on a full disk printed a traceback, and the last flush replaced the checkpoint's one-line error."""
    import logging

    from counterfeit.train import _RunLog

    handler = _RunLog(Path("/dev/full"))  # every write fails with ENOSPC
    record = logging.LogRecord("counterfeit", logging.INFO, __file__, 1, "a tick's losses", None, None)
    for _ in range(3):
        handler.handle(record)
    handler.close()
    err = capsys.readouterr().err
    assert err == "warning: cannot write /dev/full (No space left on device); its log lines from here on go to the console only\n"


def test_a_bad_log_call_is_not_taken_for_a_full_disk(tmp_path, capsys):
    """Only an OSError turns log.txt off: a format mistake in one call is reported as such and later lines still go in."""
    import logging

    from counterfeit.train import _RunLog

    handler = _RunLog(tmp_path / "log.txt")
    handler.setFormatter(logging.Formatter("%(message)s"))
    for msg, args in (("first", ()), ("bad %d", ("x",)), ("third", ())):
        handler.handle(logging.LogRecord("counterfeit", logging.INFO, __file__, 1, msg, args, None))
    handler.close()
    assert (tmp_path / "log.txt").read_text() == "first\nthird\n"
    assert "--- Logging error ---" in capsys.readouterr().err  # logging's own report of the bad call


def test_the_readme_python_example_runs(fashion_dir, tmp_path, monkeypatch, capsys):
    """README's "Use it from Python", with a smaller model and length: trains, samples a grid and scores the run."""
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = readme.split("### Use it from Python")[1].split("```python\n")[1].split("```")[0]
    small = {
        "kimg=60)": "kimg=0.128, g_width=8, d_width=8, z_dim=8, batch_size=32, tick_kimg=0.064)",
        "evaluate_run(run_dir)": "evaluate_run(run_dir, n=2000)",
    }
    for old, new in small.items():
        assert old in code, old
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COUNTERFEIT_DATA_DIR", fashion_dir)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"^0\.1 kimg  D \d\.\d{3}  G -?\d\.\d{3}$", out, re.M) and re.search(r"^FID \d+\.\d\d, \d+/10 classes$", out, re.M)
    assert Image.open(tmp_path / "fakes.png").size == (8 * 30 + 2, 8 * 30 + 2)
    assert len(list((tmp_path / "runs").iterdir())) == 1


class _LabelRecorder(torch.nn.Module):
    """A stand-in G that records the labels it is given and returns z as (N, 1, 1, z_dim) images."""

    z_dim = 2

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.seen: list[torch.Tensor] = []

    def forward(self, z, labels=None):
        """(N, z_dim) -> (N, 1, 1, z_dim)."""
        self.seen.append(labels.clone())
        return (z * self.w).view(-1, 1, 1, self.z_dim)


def test_mode_seeking_pairs_share_a_class():
    """MSGAN compares two fakes of one class from different noise: the second half repeats the first half's labels."""
    from counterfeit.config import LossConfig
    from counterfeit.train import g_step

    class D(torch.nn.Module):
        def forward(self, x, labels=None):
            """(N, 1, 1, z_dim) -> (N,) logits."""
            return x.flatten(1).sum(1)

    G, D = _LabelRecorder(), D()
    loss = build_loss(LossConfig(ms_weight=1.0))
    g_step(G, D, torch.optim.SGD(G.parameters(), lr=0.0), loss, torch.randn(5, 2), torch.tensor([0, 1, 2, 3, 4]))
    assert G.seen[0].tolist() == [0, 1, 0, 1, 4]  # pairs (0, 2) and (1, 3) share a class; the odd one out keeps its own


def test_d_sees_only_augmented_images_in_both_steps():
    """DiffAugment must reach every image D sees: reals and fakes in D's step and the fakes of G's step."""
    from counterfeit.train import d_step, g_step

    loss = build_loss("ns")
    loss.augment = lambda x: x + 100.0  # a marker: an augmented image lies far above [-1, 1]
    mins = []

    class G(torch.nn.Module):
        z_dim = 4

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, z, labels=None):
            """(N, 4) -> (N, 1, 2, 2)."""
            return torch.tanh(self.lin(z)).view(-1, 1, 2, 2)

    class D(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 1)

        def forward(self, x, labels=None):
            """(N, 1, 2, 2) -> (N,) logits."""
            mins.append(float(x.detach().min()))
            return self.lin(x.flatten(1) - 100.0).squeeze(1)

    g, d = G(), D()
    d_step(g, d, torch.optim.SGD(d.parameters(), 0.0), loss, torch.rand(4, 1, 2, 2) * 2 - 1, torch.randn(4, 4))
    g_step(g, d, torch.optim.SGD(g.parameters(), 0.0), loss, torch.randn(4, 4))
    assert len(mins) == 3 and min(mins) > 90


@pytest.mark.parametrize("halflife_kimg, beta", [(10.0, 0.5 ** (16 / 10_000)), (0.0, 0.0)])
def test_ema_beta_follows_the_half_life_in_kimg(tiny_folder, tmp_path, monkeypatch, halflife_kimg, beta):
    """beta = 0.5 ** (batch / half-life in images); a half-life of 0 copies G (beta 0), it does not freeze G_ema."""
    import counterfeit.train as T

    betas, real_update = [], T.ema_update
    monkeypatch.setattr(T, "ema_update", lambda ema, model, b: (betas.append(b), real_update(ema, model, b))[1])
    cfg = tiny_cfg(tiny_folder, kimg=0.032, ema_halflife_kimg=halflife_kimg, eval_every_kimg=0)
    T.train(cfg, create_run_dir(cfg, tmp_path))
    assert betas and all(b == pytest.approx(beta, abs=1e-12) for b in betas)


def test_tick_stats_name_each_d_output(tiny_folder, tmp_path, monkeypatch):
    """D(x), D(G(z)) and D(G(z))_after_D come from D's real logits, its fake logits and G's step's logits, in that order."""
    import counterfeit.train as T

    d_step, g_step = T.d_step, T.g_step

    def fixed_d_step(*args, **kwargs):
        loss, real, fake = d_step(*args, **kwargs)
        return loss, torch.full_like(real, 2.0), torch.full_like(fake, -1.0)

    def fixed_g_step(*args, **kwargs):
        loss, fake = g_step(*args, **kwargs)
        return loss, torch.full_like(fake, 0.5)

    monkeypatch.setattr(T, "d_step", fixed_d_step)
    monkeypatch.setattr(T, "g_step", fixed_g_step)
    cfg = tiny_cfg(tiny_folder, kimg=0.032, tick_kimg=0.032, eval_every_kimg=0)
    run = create_run_dir(cfg, tmp_path)
    T.train(cfg, run)
    row = read_stats(run)[-1]
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    assert row["D(x)"] == pytest.approx(sigmoid(2.0)) and row["D(G(z))"] == pytest.approx(sigmoid(-1.0))
    assert row["D(G(z))_after_D"] == pytest.approx(sigmoid(0.5))


def test_each_d_step_takes_the_next_batch(tiny_folder, tmp_path, monkeypatch):
    """With --d-steps 2, D's two steps see two different batches, the data order's first and second."""
    import counterfeit.train as T
    from counterfeit.data import batch_indices, load_dataset
    from counterfeit.sample import from_uint8

    reals, d_step = [], T.d_step

    def recording_d_step(G, D, opt, loss, real, *args, **kwargs):
        reals.append(real.clone())
        return d_step(G, D, opt, loss, real, *args, **kwargs)

    monkeypatch.setattr(T, "d_step", recording_d_step)
    cfg = tiny_cfg(tiny_folder, kimg=0.032, d_steps=2, eval_every_kimg=0)
    T.train(cfg, create_run_dir(cfg, tmp_path))
    x = load_dataset(tiny_folder, "train").x  # (N, C, H, W) uint8
    want = [from_uint8(x[batch_indices(len(x), 16, 7, start)], (-1.0, 1.0)) for start in (0, 16)]  # (16, C, H, W) each
    assert torch.equal(reals[0], want[0]) and torch.equal(reals[1], want[1])


def test_a_d_that_rates_fakes_above_reals_for_three_ticks_is_named_once():
    """A folder run has no collapse alarm; a D that learns nothing (--lr-d 5e-6) still shows in D(x) against D(G(z))."""
    from counterfeit.metrics.monitor import FooledD

    watch = FooledD()
    healthy = [{"kimg": k, "D(x)": 0.7, "D(G(z))": 0.75} for k in range(5)]  # within the margin, as at equilibrium
    assert not any(watch(r) for r in healthy)
    bad = [{"kimg": 5 + k, "D(x)": 0.77, "D(G(z))": 1.0} for k in range(5)]
    said = [watch(r) for r in bad]
    assert said[:2] == [None, None] and said[3:] == [None, None]
    assert said[2].startswith("D rates the fakes above the reals for 3 stats lines running (D(x) 0.77, D(G(z)) 1.00 at 7 kimg)")
    assert watch({"kimg": 10}) is None and watch.lines == 0  # a row without D's outputs (an autoencoder's) breaks the streak


@pytest.mark.parametrize("native", [False, True])
def test_the_start_line_says_why_auto_picked_its_precision_and_emulated_bf16_is_named(tiny_folder, tmp_path, caplog, monkeypatch,
                                                                                      native):  # fmt: skip
    """An explicit bf16 on a CPU without it ran at 0.59x fp32's speed with no word; auto's fp32 was not explained."""
    import counterfeit.train as train_module

    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr("counterfeit.train.pick_precision", lambda name, device: "bf16" if name == "auto" and native else
                        ("fp32" if name == "auto" else name))  # fmt: skip
    for i, precision in enumerate(("auto", "bf16")):
        cfg = tiny_cfg(tiny_folder, precision=precision, kimg=0.016, tick_kimg=0.016, snapshot_kimg=0.016, seed=i)
        caplog.clear()
        with caplog.at_level("INFO", logger="counterfeit"):
            train(cfg, create_run_dir(cfg, tmp_path))
        if precision == "auto":
            assert ("(auto: this CPU multiplies bfloat16 natively)" if native else "fp32 (auto: no native bfloat16 here)") in caplog.text
        else:
            assert ("is emulated" in caplog.text) != native
            assert "(auto:" not in caplog.text  # an explicit --precision bf16 was not auto's choice


def test_fashion_mnist_upsampled_by_resolution_is_named(caplog):
    """--resolution 64 on Fashion-MNIST trained on upsampled 28x28 images without a word."""
    from types import SimpleNamespace

    from counterfeit.train import _warn_shrunk_folder

    with caplog.at_level("WARNING", logger="counterfeit"):
        _warn_shrunk_folder(make_config(data="fashion-mnist", resolution=64), SimpleNamespace(info={}))
        assert "fashion-mnist is 28x28 grey; this run makes 64x64 grey images from it" in caplog.text
        caplog.clear()
        _warn_shrunk_folder(make_config(data="fashion-mnist", channels=3), SimpleNamespace(info={}))
        assert "makes 28x28 colour images from it (grey in 3 channels)" in caplog.text  # not 'resized' at 28x28
        caplog.clear()
        _warn_shrunk_folder(make_config(data="fashion-mnist"), SimpleNamespace(info={}))
        assert caplog.text == ""


def test_log_lines_write_large_rates_without_an_exponent():
    from counterfeit.train import stats_text

    row = {"kimg": 4.032, "loss_D": 1.14321, "img/s": 13450.2, "seconds": 12345.6, "alarm": "x"}
    assert stats_text(row) == "kimg 4.032 loss_D 1.143 img/s 13450 seconds 12346"


@pytest.mark.parametrize(("data", "model", "hint"), [("ring8", "dcgan", "use --model mlp"), ("fashion-mnist", "mlp", "")])
def test_a_model_for_the_other_kind_of_data_names_the_one_that_fits(data, model, hint):
    """'pick another model or data' left a learner guessing which model trains on the 2-D toys."""
    from counterfeit.train import check_names

    try:
        check_names(make_config(data=data, model=model))
    except ConfigError as e:
        assert hint in str(e) and "pick another" not in str(e), e
    else:
        raise AssertionError("not refused")


def test_the_monitor_is_told_which_settings_the_run_changed(tmp_path, monkeypatch):
    """The alarm's advice names this run's off-default loss and rates (train.py passes them to the monitor)."""
    import counterfeit.metrics.monitor as monitor

    seen = []
    real = monitor.build_monitor
    monkeypatch.setattr(monitor, "build_monitor", lambda *a, **k: seen.append(a[-1]) or real(*a, **k))
    cfg = make_config(data="ring8", g_width=16, d_width=16, kimg=0.128, batch_size=64, tick_kimg=0.128, lr_d=2e-3, eval_n=64,
                      eval_every_kimg=0.128)  # fmt: skip
    train(cfg, create_run_dir(cfg, tmp_path))
    assert seen == ["the default --lr-d 0.0001 (this run has --lr-d 0.002)"]


def test_a_toy_runs_scatter_plots_share_one_scale_and_say_when(tmp_path, monkeypatch):
    """Each frame took its own axes from its points, so the timelapse rescaled as it played; no frame said its kimg."""
    import counterfeit.train as train_module

    seen = []
    monkeypatch.setattr(train_module, "save_scatter", lambda pts, path, **k: seen.append(k))
    cfg = make_config(data="ducks-cows", g_width=16, d_width=16, kimg=0.256, batch_size=64, tick_kimg=0.128, sample_kimg=0.128,
                      eval_every_kimg=0)  # fmt: skip
    train(cfg, create_run_dir(cfg, tmp_path))
    assert len(seen) >= 2 and len({k["lim"] for k in seen}) == 1 and seen[-1]["title"] == "0.3 kimg"
    assert seen[0]["axes"] == ["weight", "size"]
