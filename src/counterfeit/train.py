"""The training loop: D learns on reals and fakes, then G learns from frozen D's verdict on fresh fakes.

Autoencoders (model family "autoencoder") run through the same loop with one reconstruction step instead:
their decoder sits in G's place (so sampling and EMA are shared) and their encoder in D's.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrize import ParametrizationList

from . import __version__
from . import distributed as dist
from .allocator import keep_freed_memory
from .checkpoints import (
    CheckpointError,
    checkpoint_path,
    list_checkpoints,
    load_module,
    load_optimizer,
    read_checkpoint,
    restore_rng,
    save_checkpoint,
)
from .config import ConfigError, RunConfig, make_config
from .cudagraph import StepGraph, make_capturable, set_lr
from .data import Dataset, batch_indices, drop_class, load_dataset
from .fileio import append_text, atomic_write_text
from .losses import GANLoss, build_loss, gaussian_kl, reconstruction_loss
from .machine import cpu_has_native_bf16
from .models import build_models, get_spec
from .models.layers import to_channels_last
from .runs import read_stats, remove_stale_temp_files, run_lock, write_config
from .sample import from_uint8, make_noise, reconstruct, sample, save_grid, save_scatter, scatter_lim, to_uint8
from .timelapse import write_timelapse

log = logging.getLogger("counterfeit")

GRID_SEED = 20240  # the fixed noise behind every progress grid, so grids over time show the same z
GRID_SIZE = 64
GRID_PER_CLASS = 8  # conditional grids: one row per class, this many columns
RECON_SIZE = 32  # reconstruction grids: this many fixed reals (the first of reals.png) above their reconstructions
GAN_STATS = ("loss_D", "loss_G", "D(x)", "D(G(z))", "D(G(z))_after_D")


class TrainingDiverged(Exception):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class Callbacks:
    """How the CLI or the studio watches and steers a run; every hook is optional."""

    on_step: Callable[[int, int], None] | None = None  # (cur_nimg, total_nimg) after every G step
    on_tick: Callable[[dict[str, Any]], None] | None = None  # each stats.jsonl row as it is written
    should_stop: Callable[[], bool] | None = None  # polled between steps: True saves and returns


@dataclass
class TrainResult:
    """What `train` returns: the run folder, how far it got and the last stats line."""

    run_dir: Path
    cur_nimg: int
    status: str  # "done" or "stopped"
    last_stats: dict[str, Any] = field(default_factory=dict)


def pick_precision(name: str, device: torch.device) -> str:
    """'auto' means bf16 on a CPU that multiplies bfloat16 natively, else fp32 (GPUs: bf16 is unmeasured there)."""
    if name != "auto":
        return name
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def pick_device(name: str) -> torch.device:
    """'auto' means CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, not '{name}'")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def load_training_data(cfg: RunConfig) -> Dataset:
    """The run's training set, checked against what the model family eats."""
    spec = get_spec(cfg.model.name)
    data = load_dataset(cfg.data.name, "train", cfg.data.resolution, cfg.data.channels, cfg.data.data_dir)
    if data.kind != spec.data_kind:
        hint = "--model mlp" if data.kind == "points" else "--model dcgan"
        raise ConfigError(f"model '{spec.name}' trains on {spec.data_kind} but '{cfg.data.name}' holds {data.kind}; use {hint}")
    if cfg.data.exclude_class is not None:
        data = drop_class(data, cfg.data.exclude_class)  # the class left for eval --anomaly to find
    return data


def check_names(cfg: RunConfig) -> None:
    """What the names alone refuse, before any data loads: a model for the other kind of data, an unknown class of a built-in set."""
    from .data import IDX_DATASETS, TOY_DATASETS, builtin_name
    from .data.load import class_index_in

    builtin = builtin_name(cfg.data.name)
    spec, kind = get_spec(cfg.model.name), "points" if builtin in TOY_DATASETS else "images"
    if spec.data_kind != kind:
        hint = "--model mlp, or leave --model out: toys pick it" if kind == "points" else "--model dcgan, or leave --model out"
        raise ConfigError(f"model '{spec.name}' trains on {spec.data_kind} but '{cfg.data.name}' holds {kind}; use {hint}")
    idx = IDX_DATASETS.get(builtin or "")
    if cfg.data.exclude_class is not None and (kind == "points" or idx is not None):
        class_index_in(None if idx is None else list(idx.class_names), cfg.data.name, cfg.data.exclude_class)


def check_batch_splits(cfg: RunConfig, resumed: bool = False) -> None:
    """Under torchrun: the batch, and the recall term's pool, split over the processes into slices their terms can use."""
    L = cfg.loss
    dist.check_batch(cfg.loop.batch_size, cfg.model.pack, L.ms_weight, L.recall_pool * (L.recall_weight > 0), resumed)


def check_batch_fits(cfg: RunConfig, n_data: int) -> None:
    """One-line ConfigError when the training set holds fewer items than one batch."""
    if n_data < 2:  # the smallest batch is 2 (batch norm): no batch size to suggest
        raise ConfigError(
            f"{cfg.data.name} has {n_data} item{'s' * (n_data != 1)}; training needs at least 2 (a batch of 2 is the smallest)"
        )
    if n_data < cfg.loop.batch_size:
        raise ConfigError(f"{cfg.data.name} has {n_data} items, fewer than --batch-size {cfg.loop.batch_size}; use a smaller batch")


def no_labels(cfg: RunConfig, fix: str) -> ConfigError:
    """The one-line error for a conditional model on data without classes, ending in `fix`."""
    return ConfigError(f"model '{cfg.model.name}' needs class labels, but '{cfg.data.name}' has none: {fix}")


def conditional_config(cfg: RunConfig, data: Dataset) -> RunConfig:
    """For a conditional model, fill model.num_classes from the data's classes (and check the data has labels)."""
    if not get_spec(cfg.model.name).conditional:
        return cfg
    if data.labels is None or len(data.class_names or []) < 2:
        note = data.info.get("note", "")  # a folder says why it is unlabelled, e.g. loose images beside the class folders
        raise no_labels(
            cfg, note.removeprefix("unlabelled: ") if note.startswith("unlabelled: ") else "use a folder with one sub-folder per class"
        )
    n = len(data.class_names)
    counts = torch.bincount(data.labels, minlength=n).tolist()
    empty = [c for c, k in zip(data.class_names, counts) if k == 0 and c != data.info.get("excluded_class")]
    if empty:
        raise ConfigError(
            f"class '{empty[0]}' of '{cfg.data.name}' has no readable images (see the skipped files above); "
            f"add images to its sub-folder or remove the sub-folder"
        )
    if cfg.model.num_classes not in (0, n):
        raise ConfigError(f"the config says {cfg.model.num_classes} classes but '{cfg.data.name}' has {n}")
    return cfg.replace(model={"num_classes": n}, data={"class_names": tuple(data.class_names)})


def class_grid_labels(num_classes: int, per_class: int, device="cpu") -> torch.Tensor:
    """Labels (num_classes * per_class,) for a grid with one class per row: 0,0,..,1,1,.."""
    return torch.arange(num_classes, device=device).repeat_interleave(per_class)  # (C * per_class,)


@torch.no_grad()
def ema_update(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """G_ema <- beta * G_ema + (1 - beta) * G for parameters; buffers (batch-norm stats) are copied."""
    ema_p, p = list(G_ema.parameters()), list(G.parameters())
    torch._foreach_lerp_(ema_p, p, 1.0 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def d_step(G: nn.Module, D: nn.Module, opt_D: torch.optim.Optimizer, loss: GANLoss, real: torch.Tensor, z: torch.Tensor,
           real_labels: torch.Tensor | None = None, fake_labels: torch.Tensor | None = None,
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """One D update on reals (labelled real) and G(z) (labelled fake); G is only run, never changed.

    Returns D's loss (), and its logits on the reals and the fakes (B / pack,) each, all detached.
    """
    with torch.no_grad():
        fake = G(z, fake_labels)  # (B, C, H, W)
    real, fake = loss.augment(real), loss.augment(fake)  # DiffAugment: D only ever sees augmented images
    if loss.ac_weight > 0:
        real_logits, real_classes = D(real, real_labels, with_classes=True)  # (B,), (B, C) or (B, 2C) with the twin
        # The class head learns from reals only: taught on fakes too, it would learn G's quirks and let G off lightly.
        if loss.twin_ac:  # ...and the twin head from fakes only: which class was G asked for?
            fake_logits, fake_classes = D(fake, fake_labels, with_classes=True)  # (B,), (B, 2C)
            loss_D = (loss.d_loss(real_logits, fake_logits) + loss.ac_loss(loss.split_heads(real_classes)[0], real_labels)
                      + loss.ac_loss(loss.split_heads(fake_classes)[1], fake_labels))  # fmt: skip
        else:
            fake_logits = D(fake, fake_labels)  # (B,)
            loss_D = loss.d_loss(real_logits, fake_logits) + loss.ac_loss(real_classes, real_labels)
    else:
        real_logits, fake_logits = D(real, real_labels), D(fake, fake_labels)  # (B,), (B,)
        loss_D = loss.d_loss(real_logits, fake_logits)
    # The loss's penalties (WGAN-GP, R1) join loss_D; interpolates are judged with the reals' labels.
    penalty = loss.d_reg(D, real, fake, real_labels)
    if penalty is not None:
        loss_D = loss_D + penalty
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    opt_D.step()
    return loss_D.detach(), real_logits.detach(), fake_logits.detach()


@dataclass(frozen=True)
class RecallBatch:
    """What the G step's recall term needs: reals (R, ...) with labels or None, and pool noise (P, z_dim) with labels."""

    real: torch.Tensor
    real_labels: torch.Tensor | None
    pool_z: torch.Tensor
    pool_labels: torch.Tensor | None


def g_step(G: nn.Module, D: nn.Module, opt_G: torch.optim.Optimizer, loss: GANLoss, z: torch.Tensor,
           labels: torch.Tensor | None = None, recall: RecallBatch | None = None,
           ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """One G update from frozen D's verdict on fresh fakes G(z) labelled real; the gradient flows through D.

    With `recall` (and loss.recall_weight > 0) G also draws the pool's fakes, and each of the given reals pulls its
    nearest fake of the batch plus the pool (loss.recall_loss); D judges only the batch.
    """
    D.requires_grad_(False)
    paused = _pause_power_iteration(D)
    try:
        if loss.ms_weight > 0 and labels is not None:
            half = labels.shape[0] // 2
            labels = torch.cat([labels[:half], labels[:half], labels[2 * half :]])  # mode-seeking pairs share a class
        pooled = recall is not None and loss.recall_weight > 0
        if pooled:  # one G call for batch and pool, so batch norm sees them together
            all_labels = None if labels is None else torch.cat([labels, recall.pool_labels])  # (B + P,)
            fakes_all = G(torch.cat([z, recall.pool_z]), all_labels)  # (B + P, C, H, W)
            fake = fakes_all[: z.shape[0]]  # (B, C, H, W)
        else:
            fake = G(z, labels)  # (B, C, H, W)
        if loss.ac_weight > 0:
            fake_logits, fake_classes = D(loss.augment(fake), labels, with_classes=True)  # (B,), (B, C) or (B, 2C)
            head, twin = loss.split_heads(fake_classes)  # (B, C), (B, C) or None
            loss_G = loss.g_loss(fake_logits) + loss.ac_loss(head, labels)
            if twin is not None:  # TAC: being easy to classify earns G nothing the twin also finds easy
                loss_G = loss_G - loss.ac_loss(twin, labels)
        else:
            fake_logits = D(loss.augment(fake), labels)  # (B,)
            loss_G = loss.g_loss(fake_logits)
        if loss.ms_weight > 0:
            loss_G = loss_G + loss.ms_loss(fake, z)
        if pooled:
            loss_G = loss_G + loss.recall_loss(recall.real, fakes_all, recall.real_labels, all_labels)
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()
    finally:
        D.requires_grad_(True)
        for m in paused:
            m.train()
    return loss_G.detach(), fake_logits.detach()


def ae_step(
    encoder: nn.Module, decoder: nn.Module, opt: torch.optim.Optimizer, real: torch.Tensor, beta: float = 1.0
) -> dict[str, torch.Tensor]:
    """One update of encoder and decoder together on reals (B, C, H, W) in [-1, 1]; returns the detached per-image losses."""
    mu, logvar = encoder(real)  # (B, z_dim) each (logvar None unless variational); a dae's encoder corrupts `real` itself
    z = mu
    if logvar is not None:
        # Reparameterisation: the randomness is an input, so the gradient of the loss reaches mu and logvar.
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # (B, z_dim)
    loss_rec = reconstruction_loss(decoder.pre_tanh(z), real)
    losses = {"loss": loss_rec, "loss_rec": loss_rec}
    if logvar is not None:
        loss_kl = gaussian_kl(mu, logvar)
        losses = {"loss": loss_rec + beta * loss_kl, "loss_rec": loss_rec, "loss_kl": loss_kl}
    opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    opt.step()
    return {k: v.detach() for k, v in losses.items()}


def stats_text(row: dict[str, Any]) -> str:
    """A stats line for log.txt: four significant digits, but no exponent for a count or a rate (img/s 13450, not 1.345e+04)."""
    return " ".join(f"{k} {v:.0f}" if abs(v) >= 1e4 else f"{k} {v:.4g}" for k, v in row.items() if k != "alarm")


def _pause_power_iteration(D: nn.Module) -> list[nn.Module]:
    """Put D's spectral-norm parametrisations in eval mode (they use, not refine, their estimate); returns them to resume."""
    # Spectral norm refines its singular-vector estimate on every training-mode forward; pausing it in the
    # G step keeps that step from changing any of D's state, as without spectral norm. Spectral norm is the only
    # parametrisation our models use (found through the public ParametrizationList, not torch's private class).
    paused = [m for plist in D.modules() if isinstance(plist, ParametrizationList) for m in plist if m.training]
    for m in paused:
        m.eval()
    return paused


def train(cfg: RunConfig, run_dir: str | Path, callbacks: Callbacks | None = None, data: Dataset | None = None) -> TrainResult:
    """Train (or resume, when the run folder holds a checkpoint) until cfg.loop.total_kimg; returns the final state."""
    cb = callbacks or Callbacks()
    run_dir = Path(run_dir)
    # Rank 0 writes the run folder, so it alone holds the lock; taken before log.txt opens, so a refused second trainer
    # writes nothing there.
    with run_lock(run_dir) if dist.is_main() else contextlib.nullcontext():
        return _train_logged(cfg, run_dir, cb, data)


class _RunLog(logging.FileHandler):
    """log.txt. A write that fails (a full disk) is said once and the file left alone, not a traceback for every line."""

    def __init__(self, path: Path):
        # File names from a Windows zip may not be UTF-8 (surrogate escapes): escaped, or their log line would be lost.
        super().__init__(path, encoding="utf-8", errors="backslashreplace")
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        err = sys.exc_info()[1]
        if not isinstance(err, OSError):  # a bad log call (a format mistake) is a bug to show, not a full disk
            super().handleError(record)
        elif not self.failed:
            self.failed = True
            print(f"warning: cannot write {self.baseFilename} ({getattr(err, 'strerror', None) or err}); "
                  f"its log lines from here on go to the console only", file=sys.stderr)  # fmt: skip

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # its last flush on a full disk: the error that stopped training is the one to show
            pass


def _train_logged(cfg: RunConfig, run_dir: Path, cb: Callbacks, data: Dataset | None) -> TrainResult:
    file_log = _RunLog(run_dir / "log.txt") if dist.is_main() else logging.NullHandler()
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(file_log)
    quiet = dist.MainRankOnly()  # with torchrun, rank 0 alone logs and writes the run folder
    log.addFilter(quiet)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    try:
        if dist.is_main():  # the lock is held: no other process writes this folder
            if n := remove_stale_temp_files(run_dir):
                log.info(f"removed {n} checkpoint temp file(s) that a killed run left in {run_dir / 'checkpoints'}")
        machine = _machine(cfg)  # refused before config.json changes: a resume on a machine that cannot run it alters nothing
        if dist.is_main():
            # A resume may train longer than config.json says; written here, under the lock, so a refused trainer changes nothing.
            write_config(run_dir, cfg)
        return _train(cfg, run_dir, cb, data, *machine)
    finally:
        log.removeFilter(quiet)
        log.removeHandler(file_log)
        file_log.close()


def _machine(cfg: RunConfig) -> tuple[torch.device, str]:
    """This process's device and precision for the run, or a one-line ConfigError if this machine cannot give them."""
    L = cfg.loop
    device = dist.local_device(pick_device(L.device))
    if L.compile:
        _check_compiler(device)
    precision = pick_precision(L.precision, device)
    _check_precision(precision, device)
    if L.cuda_graphs:
        check_cuda_graphs(device)
    return device, precision


def _train(cfg: RunConfig, run_dir: Path, cb: Callbacks, data: Dataset | None, device: torch.device, precision: str) -> TrainResult:
    L, O = cfg.loop, cfg.optim
    keep_freed_memory()  # each step's tensors reuse the last step's memory instead of faulting in fresh pages
    main = dist.is_main()
    spec = get_spec(cfg.model.name)
    graphs = L.cuda_graphs
    data = data if data is not None else load_training_data(cfg)
    cond, ae = spec.conditional, spec.family == "autoencoder"
    if cond and cfg.model.num_classes == 0:
        raise ConfigError("conditional model with num_classes=0: build the config with conditional_config(cfg, data) first")
    if cond:
        conditional_config(cfg, data)  # raises when the data's classes don't match the config
    images = data.kind == "images"
    x_all = data.x.to(device)  # whole split resident: (N, C, H, W) uint8 or (N, 2) float32
    y_all = data.labels.to(device) if cond else None  # (N,) int64
    n_data = x_all.shape[0]
    check_batch_fits(cfg, n_data)
    ckpts = list_checkpoints(run_dir)  # a resume's: its batch cannot change, which the split check's advice follows
    check_batch_splits(cfg, resumed=bool(ckpts))

    torch.manual_seed(L.seed)
    G, D = build_models(cfg)
    G, D = G.to(device).train(), D.to(device).train()
    if L.channels_last and images:
        # NHWC lets the CPU's convolutions vectorise over channels: the default dcgan trains ~20 % faster on 2 cores.
        G, D = to_channels_last(G), to_channels_last(D)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    D_ema = copy.deepcopy(D).eval().requires_grad_(False) if ae else None
    # Several processes: batch norm of the modules that learn takes the global batch's statistics. The EMA
    # copies keep plain batch norm: they only run in eval mode, and on rank 0 alone.
    G, D = dist.sync_batchnorm(G), dist.sync_batchnorm(D)
    # Fused Adam updates each tensor in one kernel, on CPU too, where foreach Adam runs about ten small ops per tensor:
    # the default dcgan's 15 tensors cost it 1.8 ms of a 7.4 ms step at batch 2 (RESULTS.md, speed A/B of single options).
    adam = dict(betas=(O.beta1, O.beta2), fused=True)
    if ae:
        # One objective of encoder (D slot) and decoder (G slot), so one optimiser; the encoder gets an EMA
        # too, so reconstructions and anomaly scores pair two averages over the same stretch of training.
        opt_ae = torch.optim.Adam([*G.parameters(), *D.parameters()], lr=O.lr_g, **adam)
        dist.average_gradients_before_step(opt_ae)  # not DDP: ae_step calls the decoder's pre_tanh, which DDP would not see
        modules, optimizers = {"G": G, "D": D, "G_ema": G_ema, "D_ema": D_ema}, {"opt": opt_ae}
        stat_keys = ("loss", "loss_rec", "loss_kl") if D.variational else ("loss", "loss_rec")
    else:
        opt_G = torch.optim.Adam(G.parameters(), lr=O.lr_g, **adam)
        opt_D = torch.optim.Adam(D.parameters(), lr=O.lr_d, **adam)
        modules, optimizers, stat_keys = {"G": G, "D": D, "G_ema": G_ema}, {"opt_G": opt_G, "opt_D": opt_D}, GAN_STATS
        loss = build_loss(cfg.loss)
    prep = (lambda xb: from_uint8(xb, spec.pixel_range)) if images else (lambda xb: xb)
    base_lrs = {name: [group["lr"] for group in opt.param_groups] for name, opt in optimizers.items()}  # before a resume loads any

    cur_nimg, elapsed_prev = 0, 0.0
    if ckpts:
        tensors, state = read_checkpoint(ckpts[-1])
        for name, module in modules.items():
            load_module(module, tensors, name, ckpts[-1])
        for name, opt in optimizers.items():
            load_optimizer(opt, tensors, state, name, ckpts[-1])
        restore_rng(tensors, ckpts[-1])
        if not isinstance(state.get("cur_nimg"), int):
            raise CheckpointError(f"{ckpts[-1]} does not say how far the run got (cur_nimg); it was not written by this run's trainer")
        cur_nimg, elapsed_prev = state["cur_nimg"], state.get("seconds", 0.0)
    # After any loading: a checkpoint's param groups would replace these, and whether a run is graphed is this process's choice.
    for opt in optimizers.values():
        if graphs:
            make_capturable(opt, device)
        else:
            for group in opt.param_groups:
                group["capturable"] = False
    threads = torch.get_num_threads()  # CPU kernels split their sums by thread: another count moves the last bits
    why = ""
    if device.type == "cpu" and L.precision == "auto":  # auto's choice, said once (not for an explicit --precision bf16)
        why = " (auto: this CPU multiplies bfloat16 natively)" if cpu_has_native_bf16() else " (auto: no native bfloat16 here)"
    if device.type == "cpu" and precision == "bf16" and not cpu_has_native_bf16():  # a slow bf16
        log.warning("--precision bf16 on a CPU without native bfloat16 is emulated: the default dcgan trained at 0.59x "
                    "fp32's speed on such a Xeon (1,000 against 1,681 img/s, benchmarks/RESULTS.md); --precision auto picks "
                    "fp32 here")  # fmt: skip
    where = f"{device}, {precision}{why}, {threads} thread{'s' * (threads != 1)}"
    if ckpts:
        log.info(f"resuming {run_dir} from {ckpts[-1].name} at {cur_nimg / 1000:.1f} kimg on {where}")
        if device.type == "cpu" and state.get("torch_threads", threads) != threads:  # a GPU's kernels do not split by CPU thread
            log.warning(f"{ckpts[-1].name} was trained with {state['torch_threads']} CPU threads and this resume uses {threads}: "
                        f"it goes on fine, but not bit for bit as an unbroken run would (set OMP_NUM_THREADS={state['torch_threads']})")  # fmt: skip
    else:
        log.info(f"starting {run_dir}: {cfg.model.name} on {cfg.data.name} ({n_data} {spec.data_kind}) on {where}")
        _log_data_notes(data)
        _warn_shrunk_folder(cfg, data)
    if dist.world_size() > 1:
        log.info(f"{dist.world_size()} processes, {L.batch_size // dist.world_size()} {spec.data_kind} each per batch of {L.batch_size}")
    shared = dist.shared_generator(device)  # several processes: the global batch's noise and labels (one process: None, the global RNG)
    G_train, D_train = (G, D) if ae else (dist.wrap(G), dist.wrap(D))  # DDP where several processes train
    G_gen, D_judge = G, D  # D's fakes come from plain G; G learns through plain, frozen D (no DDP needed for either)
    if L.compile and not ae:
        G_train, D_train = torch.compile(G_train), torch.compile(D_train)
        # One process: the trained modules are G and D themselves, so one compiled copy each serves both steps.
        G_gen, D_judge = (G_train, D_train) if dist.world_size() == 1 else (torch.compile(G), torch.compile(D))
    if main:
        _truncate_stats(run_dir, cur_nimg)
    writer = _tensorboard(run_dir, purge_step=cur_nimg) if main else None

    total_nimg = int(round(L.total_kimg * 1000))
    tick_nimg, sample_nimg, snap_nimg = (max(int(k * 1000), 1) for k in (L.tick_kimg, L.sample_kimg, L.snapshot_kimg))
    C = cfg.model.num_classes
    grid_n = (C * GRID_PER_CLASS if cond else GRID_SIZE) if images else 2000
    grid_z = make_noise(grid_n, G.z_dim, GRID_SEED, device)
    grid_labels = class_grid_labels(C, GRID_PER_CLASS, device) if cond else None  # one class per row
    eval_nimg = max(int(L.eval_every_kimg * 1000), 1)
    monitor = None
    default_cfg = make_config(model=cfg.model.name)  # the model family's defaults, which the alarm's advice goes back to
    if L.eval_every_kimg > 0 and main:
        from .metrics.monitor import back_to_defaults, build_monitor

        d, ours, theirs = cfg.data, (cfg.loss, cfg.optim), (default_cfg.loss, default_cfg.optim)
        defaults = back_to_defaults(*({"loss": loss.name, "lr_g": opt.lr_g, "lr_d": opt.lr_d} for loss, opt in (ours, theirs)))
        monitor = build_monitor(d.name, data, d.channels, d.resolution, L.eval_n, L.alarm_after_kimg, spec.pixel_range, d.data_dir,
                                precision, spec.name, defaults)  # fmt: skip
        if monitor is not None:
            monitor.replay(read_stats(run_dir))
    monitoring = dist.from_main(monitor is not None)  # ticks must fall on the same steps on every rank
    from .metrics.monitor import FooledD, explain_alarm, lr_d_fix

    lr_fix = lr_d_fix(O.lr_d, default_cfg.optim.lr_d)
    fooled = FooledD(lr_fix) if spec.family == "gan" and cfg.loss.name != "wgan-gp" else None  # the one check a folder run gets
    grid_reals = x_all[batch_indices(n_data, GRID_SIZE, L.seed + 1, 0)] if images else None  # (64, C, H, W) uint8
    if images and cur_nimg == 0 and main:
        save_grid(grid_reals.cpu(), run_dir / "samples" / "reals.png", nrow=8)

    lim = None if images else scatter_lim(x_all)  # one scale for every frame, or the timelapse rescales as it plays

    def snapshot_grid() -> None:
        fakes = sample(G_ema, grid_z, grid_labels)
        name = run_dir / "samples" / f"fakes{cur_nimg / 1000:08.1f}kimg.png"  # sorts by time
        if images:
            save_grid(to_uint8(fakes, spec.pixel_range), name, nrow=GRID_PER_CLASS if cond else 8)
        else:
            save_scatter(fakes, name, reals=x_all[:2000].cpu(), lim=lim, title=f"{cur_nimg / 1000:.1f} kimg", axes=data.info.get("axes"))
        if ae:  # top half: fixed reals; bottom half: what the EMA encoder and decoder make of them
            recon = reconstruct(D_ema, G_ema, prep(grid_reals[:RECON_SIZE]))  # (32, C, H, W) in [-1, 1]
            tiles = torch.cat([grid_reals[:RECON_SIZE].cpu(), to_uint8(recon, spec.pixel_range)])  # (64, C, H, W) uint8
            save_grid(tiles, run_dir / "samples" / f"recon{cur_nimg / 1000:08.1f}kimg.png", nrow=8)

    def checkpoint(done: bool, tick: dict | None = None) -> None:
        state = {"version": __version__, "torch": torch.__version__, "config": cfg.to_dict(), "done": done,
                 "seconds": elapsed_prev + time.time() - t_start, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                 "precision": precision, "torch_threads": threads}  # fmt: skip
        if tick:  # a stop between ticks: the unfinished tick's sums, so the resumed run's next stats row is the unbroken one's
            state["tick"] = tick
        dist.expose_shared(shared)  # the checkpoint's RNG state is the shared stream's, so any process count resumes it
        save_checkpoint(run_dir, cur_nimg, modules, optimizers, state, L.keep_checkpoints)

    halflife_nimg = L.ema_halflife_kimg * 1000
    ema_beta = 0.5 ** (L.batch_size / max(halflife_nimg, 1e-8)) if halflife_nimg > 0 else 0.0  # per step of batch_size images
    # A captured step casts the weights afresh in every replay: autocast's cache of casts must not outlive the capture.
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=not graphs)  # noqa: E731
    acc = torch.zeros(len(stat_keys), device=device)  # running sums of the stats: GAN_STATS, or the autoencoder's losses
    # The step reads its batches' indices from these buffers, refilled in place before every step, so a CUDA graph of
    # the step reads each new batch from the addresses it captured. Several processes draw the global batch alike.
    batches_per_step = 1 if ae else O.d_steps
    step_indices = lambda start_nimg: dist.shard(batch_indices(n_data, L.batch_size, L.seed, start_nimg))  # noqa: E731
    idx_bufs = [step_indices(0).to(device) for _ in range(batches_per_step)]  # (B / ranks,) int64 each

    def gan_step() -> None:
        """d_steps D updates on the batches in idx_bufs, one G update, the EMA; its stats are added to acc."""
        with autocast():  # bf16: the steps' matmuls and convolutions in bfloat16; parameters and optimisers stay fp32
            # Step 1: D learns on reals labelled real and fakes labelled fake; G only generates.
            for idx in idx_bufs:
                real = prep(x_all[idx])  # (B, C, H, W) in G's range, B per process
                z = dist.shard(torch.randn(L.batch_size, G.z_dim, device=device, generator=shared))  # (B, z_dim)
                real_y = y_all[idx] if cond else None  # (B,)
                fake_y = dist.shard(torch.randint(C, (L.batch_size,), device=device, generator=shared)) if cond else None  # (B,) uniform
                loss_D, real_logits, fake_logits = d_step(G_gen, D_train, opt_D, loss, real, z, real_y, fake_y)  # (), (B / pack,) x 2
            # Step 2: D is frozen; G learns from D's verdict on fresh fakes labelled real.
            z = dist.shard(torch.randn(L.batch_size, G.z_dim, device=device, generator=shared))  # (B, z_dim)
            fake_y = dist.shard(torch.randint(C, (L.batch_size,), device=device, generator=shared)) if cond else None  # (B,)
            recall = None
            if loss.recall_weight > 0:  # the last D step's reals pull their nearest fakes of a wider pool
                pool_z = dist.shard(torch.randn(cfg.loss.recall_pool, G.z_dim, device=device, generator=shared))  # (P, z_dim)
                pool_y = dist.shard(torch.randint(C, (cfg.loss.recall_pool,), device=device, generator=shared)) if cond else None  # (P,)
                recall = RecallBatch(real, real_y, pool_z, pool_y)
            loss_G, fake_logits_g = g_step(G_train, D_judge, opt_G, loss, z, fake_y, recall)  # (), (B / pack,)
            with torch.no_grad():
                acc.add_(torch.stack([loss_D, loss_G, torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean(),
                                      torch.sigmoid(fake_logits_g).mean()]).to(acc.dtype))  # fmt: skip
        ema_update(G_ema, G, ema_beta)

    def autoencoder_step() -> None:
        """The one autoencoder update: encoder and decoder learn together to reconstruct the batch in idx_bufs."""
        with autocast():
            losses = ae_step(D, G, opt_ae, prep(x_all[idx_bufs[0]]), cfg.loss.beta)
            acc.add_(torch.stack([losses[k] for k in stat_keys]))
        ema_update(G_ema, G, ema_beta)
        ema_update(D_ema, D, ema_beta)

    train_step = autoencoder_step if ae else gan_step
    if graphs:
        train_step = StepGraph(train_step)
    acc_steps, t_start = 0, time.time()
    if ckpts and state.get("tick"):  # resumed mid-tick: carry on the stopped run's sums (every rank holds their mean)
        tick = state["tick"]
        if not (isinstance(tick, dict) and len(tick.get("acc", ())) == len(stat_keys) and isinstance(tick.get("steps"), int)):
            raise CheckpointError(
                f"{ckpts[-1]}: its unfinished tick does not fit this model's stats; it was not written by this run's trainer"
            )
        acc.copy_(torch.tensor(tick["acc"], dtype=acc.dtype))
        acc_steps = tick["steps"]
    t_tick, nimg_tick = t_start, cur_nimg
    last: dict[str, Any] = {}
    status = "done"

    while cur_nimg < total_nimg:
        if dist.any_rank(cb.should_stop is not None and cb.should_stop()):
            status = "stopped"
            break
        prev_nimg = cur_nimg
        if O.lr_rampdown > 0:
            scale = lr_scale(cur_nimg, total_nimg, O.lr_rampdown)
            for name, opt in optimizers.items():  # looked up each time: loading a checkpoint replaces the param groups
                for group, lr in zip(opt.param_groups, base_lrs[name]):
                    set_lr(group, lr * scale)
        dist.reseed_rank_local(L.seed, cur_nimg)  # several processes: per-image randomness (DiffAugment, dropout) differs by rank
        for k, buf in enumerate(idx_bufs):
            idx = step_indices(cur_nimg + k * L.batch_size)  # (B / ranks,) int64 on the CPU
            # A GPU copy from pageable memory makes the host wait for the stream first: pinned, it stays asynchronous.
            buf.copy_(idx.pin_memory() if device.type == "cuda" else idx, non_blocking=True)
        train_step()
        cur_nimg += batches_per_step * L.batch_size
        acc_steps += 1
        if cb.on_step:
            cb.on_step(cur_nimg, total_nimg)

        crossed = lambda every, cur=cur_nimg, prev=prev_nimg: cur // every > prev // every or cur >= total_nimg
        evaluate = monitoring and crossed(eval_nimg)
        if crossed(tick_nimg) or crossed(snap_nimg) or evaluate:
            means = (dist.mean_over_ranks(acc) / acc_steps).tolist()  # the one host sync per tick
            now = time.time()  # after the sync: on a GPU the host runs ahead of the work it has queued
            acc.zero_()
            acc_steps = 0
            last = {"kimg": round(cur_nimg / 1000, 3), **dict(zip(stat_keys, means)),
                    "img/s": round((cur_nimg - nimg_tick) / max(now - t_tick, 1e-9), 1),
                    "seconds": round(elapsed_prev + now - t_start, 2)}  # fmt: skip
            t_tick, nimg_tick = now, cur_nimg
            if not all(math.isfinite(v) for v in means):
                kept = list_checkpoints(run_dir)
                where = f"the last good checkpoint {kept[-1].name} is kept" if kept else "no checkpoint was written yet"
                losses_text = ", ".join(f"{k}={v}" for k, v in zip(stat_keys[:2], means))
                msg = (f"training diverged at {cur_nimg / 1000:.1f} kimg ({losses_text}); {where}; "
                       f"try lower learning rates (--lr-g/--lr-d) or another --seed")  # fmt: skip
                log.error(msg)
                raise TrainingDiverged(msg)
            if fooled is not None and main and (warning := fooled(last)):
                log.warning(warning)
            if evaluate and main:
                last.update(monitor(G_ema, cur_nimg / 1000))
                if "alarm" in last:
                    last["alarm"] = explain_alarm(last["alarm"], last, cfg.loss.name, lr_fix)
                    log.warning(last["alarm"])
            if main:
                append_text(run_dir / "stats.jsonl", json.dumps(last) + "\n")
            if writer:
                try:
                    for k, v in last.items():
                        if k not in ("kimg", "alarm"):
                            writer.add_scalar(k if "/" in k else f"train/{k}", v, cur_nimg)
                    writer.flush()
                except OSError as e:  # stats.jsonl holds the same numbers: a TensorBoard file that cannot grow must not stop the run
                    log.warning(f"TensorBoard logging is off: could not write its event file in {run_dir} ({e.strerror or e})")
                    writer = None
            log.info(stats_text(last), extra={"file_only": True})
            if cb.on_tick:
                cb.on_tick(last)
        if crossed(sample_nimg) and main:
            snapshot_grid()
        if crossed(snap_nimg) and cur_nimg < total_nimg and main:
            checkpoint(done=False)

    # Every rank takes part in the mean; rank 0 keeps it. The sums are float32 and go through JSON exactly.
    tick = {"acc": dist.mean_over_ranks(acc).tolist(), "steps": acc_steps} if acc_steps else None
    if main and cur_nimg > 0 and checkpoint_path(run_dir, cur_nimg) not in list_checkpoints(run_dir):
        snapshot_grid()
        checkpoint(done=status == "done", tick=tick)
    try:
        if main:
            write_timelapse(run_dir)  # samples/timelapse.gif: the fixed-noise grids over the run
    except OSError as e:  # the run itself is saved; a GIF that cannot be written must not fail it
        log.warning(f"could not write {run_dir / 'samples' / 'timelapse.gif'}: {e}")
    dist.barrier()  # every rank returns once the final checkpoint is on disk
    if writer:
        try:
            writer.close()
        except OSError as e:
            log.warning(f"could not finish TensorBoard's event file in {run_dir} ({e.strerror or e})")
    if cur_nimg > 0:
        # Into log.txt alone: the command line says how the run ended in its own last line, with what to do next.
        log.info(f"{'finished' if status == 'done' else 'stopped'} at {cur_nimg / 1000:.1f} kimg; checkpoint in {run_dir / 'checkpoints'}",
                 extra={"file_only": True})  # fmt: skip
    else:
        log.info("stopped before the first training step; there is nothing to save")
    return TrainResult(run_dir, cur_nimg, status, last)


def _check_compiler(device: torch.device) -> None:
    """torch.compile on CPU builds C++ with the system compiler: say so in one line before training, not deep in it."""
    windows = sys.platform == "win32"
    if windows and torch.__version__ < (2, 5):  # torch.compile raised "Windows not yet supported" before 2.5
        raise ConfigError(f"--compile needs torch 2.5 or newer on Windows (this is {torch.__version__}); upgrade torch or drop --compile")
    if device.type != "cpu":
        return
    if windows and not shutil.which("cl"):
        raise ConfigError("--compile on CPU needs Microsoft's C++ compiler (cl.exe, from Visual Studio's Build Tools, run in a "
                          "Developer Command Prompt); install it or drop --compile")  # fmt: skip
    if not windows and not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++")):
        how = "xcode-select --install" if sys.platform == "darwin" else "e.g. apt-get install g++"
        raise ConfigError(f"--compile on CPU needs a C++ compiler (g++ or clang++: {how}); install one or drop --compile")


def _log_data_notes(data: Dataset) -> None:
    """Into log.txt: how a folder's images were labelled and which files were skipped (the console said so as they loaded)."""
    info = data.info
    if info.get("note"):
        log.info(f"{data.name}: {info['note']}", extra={"file_only": True})
    skipped = info.get("skipped") or []
    if skipped:
        files = ", ".join(f"{s['file']} ({s['reason']})" for s in skipped[:200])
        more = f", and {len(skipped) - 200} more" if len(skipped) > 200 else ""
        log.info(
            f"skipped {len(skipped)} of {info.get('files', '?')} files that could not be read: {files}{more}", extra={"file_only": True}
        )
    if info.get("left_out_folders"):
        log.info(f"left out folders: {'; '.join(info['left_out_folders'])}", extra={"file_only": True})
    if info.get("other_files"):
        log.info(f"left out files that are not images it reads: {info['other_files']}", extra={"file_only": True})


def _warn_shrunk_folder(cfg: RunConfig, data: Dataset) -> None:
    """Warn when images train with less than they hold (a folder's colour as grey, large pictures shrunk to 28x28), or
    Fashion-MNIST/MNIST with more (upsampled)."""
    from .data import IDX_DATASETS, builtin_name

    if builtin_name(cfg.data.name) in IDX_DATASETS and (cfg.data.resolution != 28 or cfg.data.channels != 1):
        how = ", ".join(w for w, on in (("resized", cfg.data.resolution != 28), ("grey in 3 channels", cfg.data.channels == 3)) if on)
        log.warning(f"{cfg.data.name} is 28x28 grey; this run makes {cfg.data.resolution}x{cfg.data.resolution} "
                    f"{'colour' if cfg.data.channels == 3 else 'grey'} images from it ({how}), "
                    f"which adds no detail: --resolution and --channels are for your own pictures")  # fmt: skip
        return
    shapes = data.info.get("image_shapes")  # a few of a folder's files; built-in data has its own shape
    if not shapes:
        return
    res, side = cfg.data.resolution, min(min(w, h) for w, h, _ in shapes)
    colour = any(c == 3 for *_, c in shapes)
    hints = ["--channels 3 keeps their colour"] if cfg.data.channels == 1 and colour else []
    if side >= 2 * res and res < 64:
        hints.append(f"--resolution {64 if side >= 64 else 32} keeps more detail")
    if hints:
        log.warning(f"{cfg.data.name} holds {'colour' if colour else 'grey'} images of {side} pixels or more a side, trained here as {res}x{res} "
                    f"{'grey' if cfg.data.channels == 1 else 'colour'}: {' and '.join(hints)} (slower to train)")  # fmt: skip


def check_cuda_graphs(device: torch.device, world_size: int | None = None) -> None:
    """--cuda-graphs replays one process's step on a CUDA GPU: say in one line when this run is not that."""
    # The config rules out what no machine allows (autoencoders, --compile, the recall term); this is the machine's part.
    if device.type != "cuda":
        raise ConfigError(
            f"--cuda-graphs replays the training step on a CUDA GPU and this run trains on {device.type}; add --no-cuda-graphs or use --device cuda"
        )
    if (dist.world_size() if world_size is None else world_size) > 1:
        raise ConfigError("--cuda-graphs graphs one process's step; under torchrun, add --no-cuda-graphs")


def _check_precision(precision: str, device: torch.device) -> None:
    """bf16 needs a GPU with bfloat16 units (any CPU runs it, natively or emulated): a one-line error before training."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--precision bf16 needs a GPU with bfloat16 support; {torch.cuda.get_device_name(device)} has none, use fp32")


def lr_scale(cur_nimg: int, total_nimg: int, rampdown: float) -> float:
    """Learning-rate factor: 1, then linear to 0 over the last `rampdown` share of the run."""
    start = (1.0 - rampdown) * total_nimg
    return 1.0 if cur_nimg <= start else max(0.0, (total_nimg - cur_nimg) / max(total_nimg - start, 1.0))


def _truncate_stats(run_dir: Path, cur_nimg: int) -> None:
    """Drop stats rows written after the checkpoint we resume from, so the log has no doubled stretch."""
    path = run_dir / "stats.jsonl"
    if not path.exists():
        return
    keep = [r for r in read_stats(run_dir) if r.get("kimg", 0) * 1000 <= cur_nimg + 0.5]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


def _tensorboard(run_dir: Path, purge_step: int):
    """A TensorBoard SummaryWriter in the run folder, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed; TensorBoard scalars are skipped (pip install tensorboard)")
        return None
    return SummaryWriter(log_dir=str(run_dir), purge_step=purge_step or None)
