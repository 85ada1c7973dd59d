"""--cuda-graphs: the step graph's warm-up, capture and replay, and the loop it drives, checked on CPU with CUDA faked."""

import contextlib

import pytest
import torch
from test_train import _final_tensors, tiny_cfg
from torch.utils._python_dispatch import TorchDispatchMode

from counterfeit import cudagraph
from counterfeit.checkpoints import list_checkpoints, read_checkpoint
from counterfeit.config import ConfigError, LossConfig
from counterfeit.cudagraph import StepGraph, make_capturable, set_lr
from counterfeit.losses import build_loss
from counterfeit.runs import create_run_dir
from counterfeit.train import Callbacks, conditional_config, load_training_data, train


class FakeCuda:
    """Just enough of torch.cuda for StepGraph on a CPU: a capture records which step it saw; a replay runs that step."""

    def __init__(self):
        self.capturing, self.captures, self.replays, self.eager_calls = False, 0, 0, 0
        self.captured = None
        self.replay_context = contextlib.nullcontext  # what each replay runs inside (a test may watch the ops)

    def install(self, monkeypatch):
        """Patch torch.cuda's stream and graph entry points with this fake's."""
        fake = self

        class Stream:
            def wait_stream(self, other):
                pass

        class Graph:
            def replay(self):
                fake.replays += 1
                with fake.replay_context():
                    fake.captured()  # what a replay of the recorded kernels does: the step, once more

        @contextlib.contextmanager
        def graph(g):
            fake.capturing = True
            try:
                yield
            finally:
                fake.capturing = False
            fake.captures += 1

        monkeypatch.setattr(torch.cuda, "Stream", Stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda: Stream())
        monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
        monkeypatch.setattr(torch.cuda, "graph", graph)
        return self

    def wrap(self, step):
        """The step as the loop would run it: while capturing it is recorded (not run), otherwise run eagerly."""

        def traced():
            if self.capturing:
                self.captured = step
            else:
                if self.captured is None:
                    self.eager_calls += 1
                step()

        return traced


def test_every_call_is_one_real_step_warmup_then_one_capture_then_replays(monkeypatch):
    fake = FakeCuda().install(monkeypatch)
    ran = []
    graph = StepGraph(fake.wrap(lambda: ran.append(len(ran))), warmup=3)
    for _ in range(10):
        graph()
    assert len(ran) == 10  # the capture call itself ran the step too, by replaying what it had just recorded
    assert (fake.eager_calls, fake.captures, fake.replays) == (3, 1, 7)


def test_a_step_that_cannot_be_captured_is_a_one_line_error(monkeypatch):
    FakeCuda().install(monkeypatch)

    def syncs():
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nCUDA kernel errors might be ...")

    graph = StepGraph(syncs, warmup=0)
    with pytest.raises(
        ConfigError,
        match=r"could not capture this run's training step \(CUDA error: operation not permitted when stream is capturing\); rerun with --no-cuda-graphs$",
    ):
        graph()


def test_a_tensor_lr_is_filled_in_place_a_float_one_replaced():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([p], lr=1e-3, fused=True)
    make_capturable(opt, torch.device("cpu"))
    lr = opt.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and opt.param_groups[0]["capturable"]
    set_lr(opt.param_groups[0], 5e-4)
    assert opt.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(5e-4)  # the address a graph captured keeps the value
    group = {"lr": 1e-3}
    set_lr(group, 2e-4)
    assert group["lr"] == 2e-4


def _graphs_on_cpu(monkeypatch):
    """Let the loop take its --cuda-graphs path on a CPU: the device check passes, and the fake CUDA replays the step."""
    fake = FakeCuda().install(monkeypatch)
    monkeypatch.setattr("counterfeit.train.check_cuda_graphs", lambda device: None)
    real_init = StepGraph.__init__
    monkeypatch.setattr(cudagraph.StepGraph, "__init__", lambda self, step, warmup=3: real_init(self, fake.wrap(step), warmup))
    return fake


def test_the_graphed_loop_trains_what_the_eager_loop_trains(tiny_folder, tmp_path, monkeypatch):
    """Static batch buffers, capturable optimisers with a tensor lr under the ramp: the same weights and stats as eager."""
    eager_cfg = tiny_cfg(tiny_folder, lr_rampdown=0.5)
    eager = create_run_dir(eager_cfg, tmp_path)
    train(eager_cfg, eager)

    fake = _graphs_on_cpu(monkeypatch)
    cfg = tiny_cfg(tiny_folder, lr_rampdown=0.5, cuda_graphs=True)
    graphed = create_run_dir(cfg, tmp_path)
    train(cfg, graphed)
    assert (fake.eager_calls, fake.captures, fake.replays) == (3, 1, 16 - 3)  # 256 images in batches of 16
    a, b = _final_tensors(eager), _final_tensors(graphed)
    assert a.keys() == b.keys()  # equal up to rounding: the captured optimisers hold the lr as a float32 tensor
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    _, state = read_checkpoint(list_checkpoints(graphed)[-1], prefixes=())
    groups = [g for opt in ("opt_G", "opt_D") for g in state["optimizer_groups"][opt]]
    # The ramp reached the captured optimisers (1/8 of the base lr at the last step), and JSON holds the lr as a number.
    assert [g["lr"] for g in groups] == pytest.approx([cfg.optim.lr_g / 8, cfg.optim.lr_d / 8])
    assert all(g["capturable"] for g in groups)


def test_a_graphed_run_resumes_without_graphs(tiny_folder, tmp_path, monkeypatch):
    """A checkpoint of a graphed run (GPU) resumes in an eager process (say, a CPU) and matches an unbroken eager run."""
    cfg = tiny_cfg(tiny_folder)
    straight = create_run_dir(cfg, tmp_path)
    train(cfg, straight)

    with monkeypatch.context() as m:
        _graphs_on_cpu(m)
        graphed_cfg = tiny_cfg(tiny_folder, cuda_graphs=True)
        broken = create_run_dir(graphed_cfg, tmp_path)
        steps = []
        stop = Callbacks(should_stop=lambda: len(steps) >= 8, on_step=lambda c, t: steps.append(c))
        assert train(graphed_cfg, broken, stop).status == "stopped"
    assert train(cfg, broken).status == "done"
    _, state = read_checkpoint(list_checkpoints(broken)[-1], prefixes=())
    assert not any(g["capturable"] for opt in ("opt_G", "opt_D") for g in state["optimizer_groups"][opt])
    a, b = _final_tensors(straight), _final_tensors(broken)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_cuda_graphs_on_a_cpu_is_a_one_line_error_before_anything_is_loaded(tiny_folder, tmp_path):
    cfg = tiny_cfg(tiny_folder, cuda_graphs=True, device="cpu")
    with pytest.raises(ConfigError, match="--cuda-graphs replays the training step on a CUDA GPU and this run trains on cpu"):
        train(cfg, create_run_dir(cfg, tmp_path))


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"compile": True}, "--cuda-graphs and --compile cannot be combined"),
        ({"recall_weight": 1.0}, "--cuda-graphs cannot replay the recall term"),
        ({"model": "vae"}, "--cuda-graphs applies to the GAN step only"),
    ],
)
def test_cuda_graphs_refuses_what_it_cannot_replay(tiny_folder, options, needle):
    with pytest.raises(ConfigError, match=needle):
        tiny_cfg(tiny_folder, cuda_graphs=True, **options)


# Ops that make the host wait for the GPU (a value or a data-dependent shape read back), or copy a host constant in:
# any of them inside the step would fail a real capture, or freeze one step's host-side value into every replay.
_HOST_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "equal", "is_nonzero", "allclose", "bincount", "histc",
             "_unique", "_unique2", "unique_dim", "unique_consecutive", "lift_fresh", "lift_fresh_copy"}  # fmt: skip


class _HostOpDetector(TorchDispatchMode):
    """Record the aten ops run inside the mode that would sync: _HOST_OPS, indexing by a mask, repeat_interleave unsized."""

    def __init__(self):
        super().__init__()
        self.seen, self.ran = set(), set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.ran.add(name)
        if name in _HOST_OPS or (name == "repeat_interleave" and (kwargs or {}).get("output_size") is None and len(args) < 4):
            self.seen.add(name)
        # A boolean mask as an index is a nonzero inside the kernel: the result's shape depends on the data.
        if name.startswith(("index", "_index_put")) and len(args) > 1 and isinstance(args[1], (list, tuple)):
            if any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1]):
                self.seen.add(f"{name} by a boolean mask")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"loss": "ns", "r1_gamma": 0.1, "diffaug": "color,translation,cutout"},
        {"loss": "wgan-gp", "d_steps": 2},
        {"spectral_norm": True, "mbstd": True, "pack": 2, "ms_weight": 1.0},
        {"model": "cdcgan", "ac_weight": 1.0, "twin_ac": True},
    ],
)
def test_the_graphed_step_never_waits_for_the_host(tiny_folder, tmp_path, monkeypatch, options):
    """Every replay of the step (here on CPU) runs without an op that a CUDA capture cannot take: the step is graph-safe."""
    fake = _graphs_on_cpu(monkeypatch)
    detector = _HostOpDetector()
    fake.replay_context = lambda: detector
    cfg = tiny_cfg(tiny_folder, cuda_graphs=True, kimg=0.128, **options)
    cfg = conditional_config(cfg, load_training_data(cfg)) if "model" in options else cfg  # cdcgan: the folder's classes
    train(cfg, create_run_dir(cfg, tmp_path))
    steps = 128 // (cfg.loop.batch_size * cfg.optim.d_steps)
    assert fake.replays == steps - 3 and detector.seen == set()
    # ...and it watched the whole step: the backward passes, both optimisers' updates and the EMA.
    assert {"convolution_backward", "_fused_adam_", "_foreach_lerp_"} <= detector.ran


def test_the_host_op_detector_sees_the_recall_term_that_graphs_refuse():
    """The detector is not blind: the recall term (refused under --cuda-graphs) drops rows by a boolean mask."""
    loss = build_loss(LossConfig(recall_weight=1.0))
    detector = _HostOpDetector()
    with detector:
        loss.recall_loss(torch.randn(4, 1, 8, 8), torch.randn(6, 1, 8, 8))
    assert detector.seen == {"index by a boolean mask"}


def test_cuda_graphs_under_torchrun_is_a_one_line_error(monkeypatch):
    from counterfeit.train import check_cuda_graphs

    monkeypatch.setattr("counterfeit.distributed.world_size", lambda: 2)
    with pytest.raises(ConfigError, match="--cuda-graphs graphs one process's step; under torchrun, add --no-cuda-graphs"):
        check_cuda_graphs(torch.device("cuda"))


def test_a_graphed_run_resumed_on_a_cpu_says_how_and_resumes_with_no_cuda_graphs(tiny_folder, tmp_path, monkeypatch, capsys):
    """config.json keeps --cuda-graphs: a CPU resume says to add --no-cuda-graphs in one line, and with it finishes the run."""
    from test_cli import _one_line_error

    from counterfeit.cli import main

    cfg = tiny_cfg(tiny_folder, cuda_graphs=True)
    run = create_run_dir(cfg, tmp_path)
    with monkeypatch.context() as m:
        _graphs_on_cpu(m)
        steps = []
        train(cfg, run, Callbacks(should_stop=lambda: len(steps) >= 6, on_step=lambda c, t: steps.append(c)))
    _one_line_error(capsys, ["train", "--resume", str(run), "--no-progress"], "trains on cpu; add --no-cuda-graphs")
    assert main(["train", "--resume", str(run), "--no-cuda-graphs", "--no-progress"]) == 0
    _, state = read_checkpoint(list_checkpoints(run)[-1], prefixes=())
    assert state["done"] and state["cur_nimg"] == 256 and state["config"]["loop"]["cuda_graphs"] is False
