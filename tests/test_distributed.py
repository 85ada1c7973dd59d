"""Several processes (torchrun, gloo on CPU): same steps as one process with the same global batch, exact resume, sync batch norm."""

import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from counterfeit.checkpoints import list_checkpoints, read_checkpoint
from counterfeit.cli import main
from counterfeit.distributed import SyncBatchNorm, check_batch, sync_batchnorm
from counterfeit.runs import read_stats

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="this PyTorch build has no torch.distributed with gloo"
)

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parent / "src")
# Two processes sum each batch-norm statistic and each gradient in another order than one process does. In
# float64 (tests/float64_cli.py) the two agree to about 1e-14 after these steps (measured), so a tolerance of
# 1e-9 leaves room for other machines while any difference in what is computed would stand out.
TOL64 = dict(rtol=1e-9, atol=1e-11)
STEPS_ARGS = ["--g-width", "8", "--d-width", "8", "--z-dim", "8", "--batch-size", "16", "--kimg", "0.32", "--snapshot-kimg", "0.16",
              "--tick-kimg", "0.064", "--sample-kimg", "0.32", "--eval-every-kimg", "0", "--seed", "3", "--device", "cpu",
              "--no-progress"]  # fmt: skip


def _train(out: Path, args: list[str], nproc: int = 1, float64: bool = False) -> Path:
    """Run `counterfeit train` with one process, or with torchrun on `nproc` CPU processes; return the run folder."""
    program = [str(HERE / "float64_cli.py")] if float64 else ["-m", "counterfeit"]
    # --standalone picks a free port on this machine; the workers meet over gloo at 127.0.0.1.
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    resume = "--resume" in args
    proc = subprocess.run([sys.executable, *launcher, *program, "train", *args, *([] if resume else ["--out", str(out)])],
                          env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)  # fmt: skip
    # Seen once in CI (2026-12-02, 1 run in many): a gloo worker aborted at interpreter exit ("terminate called without
    # an active exception") after the run had finished and saved. Tolerated only then, so the checks below still
    # compare the saved weights; the exit abort itself is an open defect (issue 7 notes).
    exit_abort = nproc > 1 and "terminate called without an active exception" in proc.stderr and "done: " in proc.stderr
    assert proc.returncode == 0 or exit_abort, proc.stderr[-3000:]
    return Path(args[args.index("--resume") + 1]) if resume else next(out.iterdir())


def _weights(run: Path) -> dict[str, torch.Tensor]:
    tensors, _ = read_checkpoint(list_checkpoints(run)[-1])
    return {k: v for k, v in tensors.items() if not k.startswith("rng")}


def _at_middle(run: Path, copy: Path) -> str:
    """A copy of a finished run as it was at its middle checkpoint, as if it had been stopped there."""
    shutil.copytree(run, copy)
    ckpts = list_checkpoints(copy)
    assert len(ckpts) == 2 and "0000000160" in ckpts[0].name
    ckpts[-1].unlink()
    return str(copy)


def _assert_all_close(got: dict, want: dict, **tol) -> None:
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], **tol, msg=lambda m, k=k: f"{k}: {m}")


@pytest.fixture(scope="module")
def float64_runs(tiny_folder, tmp_path_factory):
    """One 20-step run of the conditional DCGAN with the AC-GAN head and R1 (a double backward through synced batch norm), on 1 and 2 processes."""
    out = tmp_path_factory.mktemp("ddp64")
    # The mode-seeking term pairs samples within each rank's slice, so it cannot match one process: off here.
    args = ["--data", tiny_folder, "--model", "cdcgan", "--ac-weight", "1", "--ms-weight", "0", "--r1-gamma", "1", *STEPS_ARGS]
    return {"one": _train(out / "one", args, float64=True), "two": _train(out / "two", args, nproc=2, float64=True), "out": out}


def test_two_processes_take_the_same_steps_as_one(float64_runs):
    one, two = _weights(float64_runs["one"]), _weights(float64_runs["two"])
    assert two["G.net.stem.2.running_var"].dtype == torch.float64 and not any(".module." in k for k in two)  # plain names
    _assert_all_close(two, one, **TOL64)  # G, D, G_ema, Adam moments, batch-norm statistics
    # Logged losses are means over the ranks: the one-process run's numbers, rows at the same kimg.
    rows1, rows2 = read_stats(float64_runs["one"]), read_stats(float64_runs["two"])
    assert [r["kimg"] for r in rows1] == [r["kimg"] for r in rows2]
    losses = lambda rows: torch.tensor([[r["loss_D"], r["loss_G"], r["D(x)"]] for r in rows])  # noqa: E731
    torch.testing.assert_close(losses(rows2), losses(rows1), **TOL64)


def test_a_two_process_checkpoint_resumes_on_one_process(float64_runs):
    """Stopped at its middle checkpoint and continued on one process: the two-process run's end, up to rounding."""
    resumed = _train(float64_runs["out"], ["--resume", _at_middle(float64_runs["two"], float64_runs["out"] / "on-one")], float64=True)
    _assert_all_close(_weights(resumed), _weights(float64_runs["two"]), **TOL64)


def test_two_process_run_resumes_bit_for_bit(tiny_folder, tmp_path):
    """The default DCGAN (batch norm in G and D; bf16 autocast on a CPU with native bf16), stopped and resumed with torchrun: the same bits."""
    straight = _train(tmp_path / "straight", ["--data", tiny_folder, *STEPS_ARGS], nproc=2)
    resumed = _train(tmp_path, ["--resume", _at_middle(straight, tmp_path / "resumed")], nproc=2)
    want, got = _weights(straight), _weights(resumed)
    assert want.keys() == got.keys() and [k for k in want if not torch.equal(got[k], want[k])] == []
    assert [r["kimg"] for r in read_stats(resumed)] == [r["kimg"] for r in read_stats(straight)]
    # Rank 0 alone wrote the folder: one run folder, and its log says how the batch was split.
    assert len(list((tmp_path / "straight").iterdir())) == 1
    assert "2 processes, 8 images each per batch of 16" in (straight / "log.txt").read_text()


def test_batch_that_does_not_split_is_a_one_line_error(tiny_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(Exception, match="does not split over 2 processes; use a multiple of 2"):
        check_batch(15)
    with pytest.raises(Exception, match="whole packs of --pack 4"):
        check_batch(12, pack=4)
    check_batch(2, ms_weight=0.0)  # one image each is fine without the mode-seeking pairs
    with pytest.raises(Exception, match="leave one image each; use --batch-size 4 or more, or --ms-weight 0"):
        check_batch(2, ms_weight=0.2)  # its mean over no pairs was a NaN, reported as divergence
    check_batch(16, recall_pool=0)
    with pytest.raises(Exception, match="--recall-pool 7 does not split over 2 processes"):
        check_batch(16, recall_pool=7)  # the shard dropped the odd fake without a word
    code = main(["train", "--data", tiny_folder, "--batch-size", "15", "--out", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--batch-size 15 does not split over 2 processes" in err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_resume_that_does_not_split_names_the_process_counts_that_fit(tiny_folder, tmp_path, monkeypatch, capsys):
    """A resumed run keeps its batch, so the error says how many processes can resume it, not which option to change."""
    with pytest.raises(
        Exception, match=r"a resumed run keeps its options; resume it on 1, 2, 4, 8 or 16 processes in all \(torchrun's --nnodes times"
    ):
        _check_on(3, 16, resumed=True, monkeypatch=monkeypatch)
    with pytest.raises(Exception, match=r"whole packs of --pack 4, and a resumed run .* on 1, 2 or 4 processes in all"):
        _check_on(8, 16, pack=4, resumed=True, monkeypatch=monkeypatch)
    with pytest.raises(Exception, match=r" on 1, 2, 3, 4, 6, 8 or 12 processes in all"):  # not 24: the pairs need 2 images each
        _check_on(5, 24, ms_weight=0.2, resumed=True, monkeypatch=monkeypatch)
    with pytest.raises(Exception, match=r"--recall-pool 9 does not split over 2 processes, .* on 1 or 3 processes in all"):
        _check_on(2, 24, recall_pool=9, resumed=True, monkeypatch=monkeypatch)
    monkeypatch.delenv("WORLD_SIZE")  # the first run on one process
    out = tmp_path / "runs"
    assert main(["train", "--data", tiny_folder, "--batch-size", "6", "--kimg", "0.012", "--out", str(out), "--no-progress"]) == 0
    run = next(out.iterdir())
    stats = (run / "stats.jsonl").read_bytes()
    capsys.readouterr()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--resume", str(run), "--kimg", "0.024", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--batch-size 6 does not split over 4 processes" in err and "on 1, 2, 3 or 6 processes in all" in err
    assert (run / "stats.jsonl").read_bytes() == stats  # nothing rewritten


def _check_on(n, batch_size, monkeypatch, **kw):
    monkeypatch.setenv("WORLD_SIZE", str(n))
    monkeypatch.setenv("RANK", "0")
    check_batch(batch_size, **kw)


# ---------------------------------------------------------------- the synchronised batch norm, on two gloo processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batchnorm_cases() -> list[tuple[nn.Module, tuple[int, ...]]]:
    """(plain batch norm, global input shape): images with running stats, D's kind without them, and 1-D (the toy MLP's)."""
    return [(nn.BatchNorm2d(3), (8, 3, 5, 5)), (nn.BatchNorm2d(3, track_running_stats=False), (8, 3, 4, 4)), (nn.BatchNorm1d(4), (6, 4))]


def _inputs(i: int, shape) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Global input, output weights, and the module's affine weight and bias for case i (the same on every rank)."""
    g = torch.Generator().manual_seed(i)
    x, w = torch.randn(shape, generator=g) * 3 + 1, torch.randn(shape, generator=g)
    return x, w, 1 + 0.1 * torch.randn(shape[1], generator=g), torch.randn(shape[1], generator=g)


def _run_batchnorm(bn: nn.Module, x: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """Two training-mode forwards (the second after a step's worth of running-stat update), a loss, and R1's double backward."""
    x = x.clone().requires_grad_(True)
    bn.train()
    bn(x * 0.5)  # one earlier batch, so the running stats are blended, not just copied
    out = bn(x)  # (N, C, ...)
    loss = (out * w).sum()
    (gx,) = torch.autograd.grad(loss, x, create_graph=True)  # as R1 does: the gradient stays in the graph
    (loss + gx.square().sum()).backward()
    res = {"out": out.detach(), "x_grad": x.grad, "weight_grad": bn.weight.grad, "bias_grad": bn.bias.grad}
    if bn.running_mean is not None:
        res.update(running_mean=bn.running_mean.clone(), running_var=bn.running_var.clone())
    return res


def _sync_bn_worker(rank: int, world: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        for i, (bn, shape) in enumerate(_batchnorm_cases()):
            x, w, weight, bias = _inputs(i, shape)
            with torch.no_grad():
                bn.weight.copy_(weight), bn.bias.copy_(bias)
            holder = sync_batchnorm(nn.Sequential(bn))
            assert isinstance(holder[0], SyncBatchNorm) and holder[0].weight is bn.weight  # parameters shared, not copied
            n = shape[0] // world
            torch.save(_run_batchnorm(holder[0], x[rank * n : (rank + 1) * n], w[rank * n : (rank + 1) * n]), f"{folder}/{i}-{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_sync_batchnorm_equals_batchnorm_on_the_whole_batch(tmp_path):
    """Forward, running stats, input and parameter gradients (also through a double backward) as one BatchNorm over both shards."""
    # fork: the workers inherit the imported torch (a spawned one would import it again, seconds on a busy machine)
    torch.multiprocessing.start_processes(_sync_bn_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    for i, (bn, shape) in enumerate(_batchnorm_cases()):
        x, w, weight, bias = _inputs(i, shape)
        with torch.no_grad():
            bn.weight.copy_(weight), bn.bias.copy_(bias)
        ref = _run_batchnorm(bn, x, w)
        parts = [torch.load(tmp_path / f"{i}-{r}.pt") for r in range(2)]
        torch.testing.assert_close(torch.cat([p["out"] for p in parts]), ref["out"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.cat([p["x_grad"] for p in parts]), ref["x_grad"], rtol=1e-4, atol=1e-5)
        for key in ("weight_grad", "bias_grad"):  # each rank holds its shard's share; DDP adds them up (and averages)
            torch.testing.assert_close(parts[0][key] + parts[1][key], ref[key], rtol=1e-4, atol=1e-5)
        for key in ("running_mean", "running_var"):  # updated alike on both ranks, with the global batch's unbiased variance
            if key in ref:
                torch.testing.assert_close(parts[0][key], ref[key], rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(parts[1][key], parts[0][key], rtol=0, atol=0)
        assert ("running_mean" in ref) == (bn.running_mean is not None)


def test_two_process_bf16_run_trains(tiny_folder, tmp_path):
    """bf16 autocast under DDP (gloo on CPU): the run finishes and its weights and logged losses stay finite."""
    run = _train(tmp_path, ["--data", tiny_folder, "--precision", "bf16", *STEPS_ARGS], nproc=2)
    weights = _weights(run)
    assert weights["G.stem.0.weight"].dtype == torch.float32  # autocast computes in bf16; the weights stay fp32
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    rows = read_stats(run)
    assert rows and all(math.isfinite(r["loss_D"]) and math.isfinite(r["loss_G"]) for r in rows)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the workers follow their launcher through Linux's PR_SET_PDEATHSIG")
def test_workers_stop_and_save_when_torchrun_is_killed(tiny_folder, tmp_path):
    """kill -9 of torchrun: the workers (each in a session of its own) get SIGTERM, save a checkpoint and exit."""
    import signal
    import time

    args = [a if a != "0.32" else "64" for a in STEPS_ARGS]  # --kimg 64: far longer than the test waits
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "counterfeit",
                             "train", "--data", tiny_folder, *args, "--out", str(tmp_path)],
                            env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(read_stats(run) for run in tmp_path.iterdir()):
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        run = next(tmp_path.iterdir())
        while time.time() < deadline and "stopped at" not in (run / "log.txt").read_text():
            time.sleep(0.1)
        assert "stopped at" in (run / "log.txt").read_text()  # rank 0 saved where the workers stopped
        _, state = read_checkpoint(list_checkpoints(run)[-1], prefixes=())
        assert 0 < state["cur_nimg"] < 64_000 and not state["done"]
        rows, newest = len(read_stats(run)), list_checkpoints(run)[-1]
        time.sleep(2)
        assert len(read_stats(run)) == rows and list_checkpoints(run)[-1] == newest  # no orphan trains on
    finally:  # should the feature break, its orphans must not train on through the rest of the suite
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if str(tmp_path).encode() in cmdline.read_bytes():
                    os.kill(int(cmdline.parent.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue


def test_rank_local_seeds_differ_by_rank(monkeypatch):
    """Per-image randomness (DiffAugment, dropout) is seeded by (seed, rank, images so far): the same on a rerun, not across ranks."""
    import counterfeit.distributed as D

    monkeypatch.setattr(D, "world_size", lambda: 2)
    draws: dict[int, list[torch.Tensor]] = {}
    with torch.random.fork_rng():
        for r in (0, 1, 0):
            monkeypatch.setattr(D, "rank", lambda r=r: r)
            D.reseed_rank_local(3, 64)
            draws.setdefault(r, []).append(torch.rand(4))
    assert torch.equal(draws[0][0], draws[0][1]) and not torch.equal(draws[0][0], draws[1][0])
