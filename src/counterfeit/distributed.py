"""Several processes, one run (`torchrun --nproc_per_node=N -m counterfeit train ...`): data-parallel helpers.

Every rank holds the whole (small) training set, draws the *global* batch's indices and noise from the same
seeded stream as a one-process run would, and works on its contiguous 1/N slice. Gradients are averaged over
ranks and batch norm takes its statistics over the global batch, so N processes take the same steps as one
process with the same --batch-size, up to float rounding. Randomness that belongs to single images
(DiffAugment, dropout, penalty mixing weights, VAE noise) is rank-local instead: the global torch RNG is
reseeded from (seed, rank, image count) before every step, which also makes resuming exact without saving
every rank's RNG. Without torchrun (WORLD_SIZE unset or 1) every helper here is a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys

import torch
import torch.distributed as dist
from torch import nn

from .config import ConfigError
from .data.sampler import _mix

log = logging.getLogger("counterfeit")


def world_size() -> int:
    """How many processes train this run (1 without torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank, 0 without torchrun."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True on the one process that writes the run folder and talks to the user."""
    return rank() == 0


def launched_rank() -> int:
    """The rank torchrun gave this process (RANK), readable before the process group exists."""
    return int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def process_group(device_name: str = "auto"):
    """Join torchrun's process group for the block (no-op without torchrun); CUDA ranks use cuda:LOCAL_RANK."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        yield
        return
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run without torchrun")
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # Gradients and batch-norm sums go over NCCL on GPUs; the per-step stop flag is a CPU tensor and goes
    # over gloo, so polling it never waits for the GPU.
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def follow_launcher(launcher_pid: int) -> None:
    """Under torchrun on Linux: have the system send this worker SIGTERM when its launcher dies (call it first thing)."""
    # torchrun starts each worker in a session of its own, so a torchrun killed with kill -9 left them training on,
    # writing the run unseen. With this, the stop handler saves a checkpoint and every rank exits. Elsewhere: nothing.
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGTERM) != 0:  # 1 = PR_SET_PDEATHSIG
            log.debug(f"could not ask to follow torchrun (errno {ctypes.get_errno()}); a killed torchrun leaves this worker running")
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != launcher_pid:  # the launcher died before the request took hold
        os.kill(os.getpid(), signal.SIGTERM)


def local_device(device: torch.device) -> torch.device:
    """The GPU this rank owns (cuda:LOCAL_RANK) when training on CUDA with several processes; else `device`."""
    if world_size() > 1 and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _split_problem(n: int, batch_size: int, pack: int, ms_weight: float, recall_pool: int) -> tuple[str, str] | None:
    """Why the batch (or the recall pool) does not split over `n` processes, and the option change that fixes it; None if it does."""
    if batch_size % n:
        return f"--batch-size {batch_size} does not split over {n} processes", f"use a multiple of {n}"
    if (batch_size // n) % pack:
        return f"each process's {batch_size // n} images do not make whole packs of --pack {pack}", f"use a multiple of {n * pack}"
    if ms_weight > 0 and batch_size // n < 2:
        return (f"--ms-weight pairs images within each process's slice, and {n} processes leave one image each",
                f"use --batch-size {2 * n} or more, or --ms-weight 0")  # fmt: skip
    if recall_pool % n:
        return f"--recall-pool {recall_pool} does not split over {n} processes", f"use a multiple of {n}"
    return None


def check_batch(batch_size: int, pack: int = 1, ms_weight: float = 0.0, recall_pool: int = 0, resumed: bool = False) -> None:
    """One-line error unless the batch (and the recall term's pool) splits evenly over the ranks, into slices its terms can use.

    Each slice must hold whole PacGAN packs, and two images where the mode-seeking term pairs them (one image per process
    would have no pair: a NaN); `recall_pool` is the recall term's pool of extra fakes, 0 when that term is off. A `resumed`
    run keeps its options, so its error names the process counts that fit instead.
    """
    n = world_size() if dist.is_available() and dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))
    if n == 1:
        return  # the config already checked the pack against the batch
    problem = _split_problem(n, batch_size, pack, ms_weight, recall_pool)
    if problem is None:
        return
    if not resumed:
        raise ConfigError(f"{problem[0]}; {problem[1]}")
    fits = [k for k in range(1, min(batch_size, 64) + 1) if _split_problem(k, batch_size, pack, ms_weight, recall_pool) is None]
    counts = ", ".join(map(str, fits[:-1])) + (" or " if len(fits) > 1 else "") + str(fits[-1])  # 1 always fits
    raise ConfigError(f"{problem[0]}, and a resumed run keeps its options; resume it on {counts} processes in all "
                      f"(torchrun's --nnodes times --nproc_per_node)")  # fmt: skip


def shard(x: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global-batch tensor (B, ...) -> (B / N, ...); the tensor itself for one process."""
    n = world_size()
    if n == 1:
        return x
    b = x.shape[0] // n
    return x[rank() * b : (rank() + 1) * b]  # (B / N, ...)


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The mean of `x` over ranks (every rank gets it); `x` itself for one process."""
    if world_size() == 1:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / world_size()


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is True on any, so all ranks stop at the same step."""
    if world_size() == 1:
        return flag
    t = torch.tensor([float(flag)])  # CPU: gloo, no GPU sync
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier() -> None:
    """Wait until every rank gets here (no-op for one process)."""
    if world_size() > 1:
        dist.barrier()


def from_main(value):
    """Rank 0's `value` on every rank (any picklable object)."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ---------------------------------------------------------------- random streams


def shared_generator(device: torch.device) -> torch.Generator | None:
    """The stream every rank draws the global batch's noise and labels from, or None for one process.

    One process draws them from the global RNG, which a checkpoint saves and restores. Several processes
    take a copy of that RNG's state here (after seeding or resuming), so their shared stream goes on exactly
    where a one-process run's would, while the global RNG turns rank-local (see reseed_rank_local).
    """
    if world_size() == 1:
        return None
    g = torch.Generator(device=device)
    g.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
    return g


def reseed_rank_local(seed: int, cur_nimg: int) -> None:
    """Several processes: seed the global RNG from (seed, rank, image count) for this step's per-image draws."""
    if world_size() > 1:
        torch.manual_seed(_mix(_mix(seed, rank()), cur_nimg))


def expose_shared(g: torch.Generator | None) -> None:
    """Put the shared stream's state into the global RNG, so the checkpoint about to be written saves it."""
    if g is None:
        return
    if g.device.type == "cuda":
        torch.cuda.set_rng_state(g.get_state(), g.device)
    else:
        torch.set_rng_state(g.get_state())


# ---------------------------------------------------------------- gradients and batch norm


def wrap(module: nn.Module) -> nn.Module:
    """DistributedDataParallel around `module` for several processes (gradients averaged in backward); else the module."""
    if world_size() == 1:
        return module
    import inspect

    from torch.nn.parallel import DistributedDataParallel as DDP

    device = next(module.parameters()).device
    ids = [device] if device.type == "cuda" else None
    # Buffers need no broadcast before each forward: batch-norm statistics are synchronised and spectral
    # norm's power iteration is deterministic, so they stay equal on every rank (newer torch renamed the flag).
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters else "broadcast_buffers"
    return DDP(module, device_ids=ids, **{no_sync: False})


def average_gradients_before_step(opt: torch.optim.Optimizer) -> None:
    """Several processes: average the optimiser's gradients over ranks just before each of its steps."""
    if world_size() == 1:
        return

    def hook(optimizer, args, kwargs) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])  # one collective for all of them
        dist.all_reduce(flat)
        flat /= world_size()
        for g, avg in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(avg.view_as(g))

    opt.register_step_pre_hook(hook)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward is the same sum of the gradients, itself differentiable (so double backward works)."""

    # torch.distributed.nn.functional.all_reduce does this but is deprecated; its successor in
    # _functional_collectives imports torch._dynamo on first use (about 9 s on 2 busy cores).
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        """x summed over ranks (a copy; x is untouched)."""
        x = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        """The gradient summed over ranks, through the same differentiable sum."""
        return _AllReduceSum.apply(grad)


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of `x` over ranks, differentiable to any order."""
    return _AllReduceSum.apply(x)


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose batch statistics cover the global batch: per-channel sums are all-reduced over ranks.

    The all-reduce is our own autograd-aware `_AllReduceSum`, so the backward pass (and a penalty's
    double backward) is synchronised too. Unlike nn.SyncBatchNorm it also runs on CPU (gloo) and supports
    double backward (R1, WGAN-GP through D's batch norm). Running statistics are updated as BatchNorm does,
    with the unbiased variance of the global batch. Same parameters and buffers as BatchNorm, so checkpoints match.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batch norm of x (N, C, ...) with the statistics of the global batch while training."""
        batch_stats = self.training or self.running_mean is None
        if not batch_stats or world_size() == 1:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]  # every axis but the channels
        shape = [1, -1] + [1] * (x.dim() - 2)  # (1, C, 1, 1) for images
        stat = torch.float64 if x.dtype == torch.float64 else torch.float32  # bf16 autocast: sums and counts stay exact enough
        local = torch.cat([x.sum(dims, dtype=stat), torch.full((1,), x.numel() / x.shape[1], dtype=stat, device=x.device)])  # (C + 1,)
        total = _all_reduce_sum(local)
        count = total[-1]
        mean = total[:-1] / count  # (C,)
        centred = x - mean.view(shape)  # (N, C, ...)
        var = _all_reduce_sum((centred * centred).sum(dims, dtype=stat)) / count  # (C,) biased, two-pass as BatchNorm computes it
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1), alpha=m)
        out = centred * torch.rsqrt(var + self.eps).view(shape)  # (N, C, ...)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Several processes: swap every BatchNorm in `module` for SyncBatchNorm, sharing parameters and buffers; else unchanged."""
    if world_size() == 1:
        return module
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, SyncBatchNorm):
            sync = SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            for attr in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                if getattr(child, attr) is not None:  # the same tensors, so optimisers, EMA and checkpoints see no difference
                    setattr(sync, attr, getattr(child, attr))
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            sync_batchnorm(child)
    return module


class MainRankOnly(logging.Filter):
    """A logging filter that lets records through on rank 0 only, so other ranks stay silent."""

    def filter(self, record: logging.LogRecord) -> bool:
        """True on rank 0 only."""
        return is_main()
