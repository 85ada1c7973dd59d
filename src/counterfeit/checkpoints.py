"""Checkpoints: one safetensors file per snapshot, tensors plus a JSON state in its metadata.

Nothing is pickled: weights, optimiser moments and RNG states are tensors; counters, the
config and optimiser hyper-parameters are JSON. Each file is written to a temp name, fsynced
and renamed, so a crash mid-write never leaves a half checkpoint behind.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .fileio import atomic_write_bytes, remove_if_free, utf8

FORMAT = "counterfeit-checkpoint-v1"
_NAME = re.compile(r"^ckpt-(\d{10})\.safetensors$")


class CheckpointError(Exception):
    """A missing, unreadable or foreign checkpoint; the message is one line naming the file."""


class CheckpointGone(CheckpointError):
    """A checkpoint that is not there (any more): a training run may have replaced it with a newer one."""


def _unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP (`.module`) and torch.compile (`._orig_mod`) wrappers, so keys carry no wrapper prefix."""
    while True:
        inner = next((m for m in (getattr(module, "module", None), getattr(module, "_orig_mod", None)) if isinstance(m, nn.Module)), None)
        if inner is None:
            return module
        module = inner


def _module_tensors(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = opt.state_dict()
    tensors = {}
    for idx, slots in sd["state"].items():
        for slot, value in slots.items():
            tensors[f"{prefix}.{idx}.{slot}"] = torch.as_tensor(value).detach().cpu().contiguous()
    # A CUDA-graphed run keeps its lr as a device tensor (cudagraph.make_capturable); the JSON state holds it as a number.
    groups = [{k: v.item() if isinstance(v, torch.Tensor) else v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def _optimizer_state_dict(prefix: str, tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            idx, slot = key[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(idx), {})[slot] = value
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def _digests(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    # SHA-256 per slot (G, D, opt_G, rng, ...) over its tensors' names and bytes: a reader of one slot checks that slot.
    # safetensors checks the header but not the bytes, and a flipped bit in a weight would otherwise train on as NaNs.
    hashes: dict[str, Any] = {}
    for key in sorted(tensors):
        t = tensors[key]
        h = hashes.setdefault(key.split(".", 1)[0], hashlib.sha256())
        h.update(f"{key} {t.dtype} {tuple(t.shape)}".encode())  # a header flip of a dtype or shape is damage too
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())  # the buffer itself, no copy
    return {slot: h.hexdigest() for slot, h in hashes.items()}


def checkpoint_path(run_dir: Path, cur_nimg: int) -> Path:
    """Where the checkpoint taken after `cur_nimg` images lives."""
    return Path(run_dir) / "checkpoints" / f"ckpt-{cur_nimg:010d}.safetensors"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """A run's checkpoints, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def save_checkpoint(
    run_dir: Path,
    cur_nimg: int,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    state: dict[str, Any],
    keep: int = 3,
) -> Path:
    """Write modules, optimisers, RNG states and `state` (JSON-able) atomically; prune to the newest `keep`."""
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        tensors.update(_module_tensors(name, _unwrap(module)))
    groups = {}
    for name, opt in optimizers.items():
        t, groups[name] = _optimizer_tensors(name, opt)
        tensors.update(t)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta_state = dict(state, optimizer_groups=groups, cur_nimg=int(cur_nimg))
    path = checkpoint_path(run_dir, cur_nimg)
    meta = {"format": FORMAT, "state": json.dumps(meta_state), "sha256": json.dumps(_digests(tensors))}
    atomic_write_bytes(path, st_save(tensors, metadata=meta))
    for old in list_checkpoints(run_dir)[: -max(keep, 1)]:
        remove_if_free(old)  # one a reader has open on Windows goes at the next checkpoint
    return path


def read_checkpoint(path: Path, prefixes: tuple[str, ...] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, state) of a checkpoint, only the tensors under `prefixes` if given; never unpickles."""
    path = Path(path)
    try:
        meta, tensors = _read_safetensors(path, prefixes)
        if "sha256" in meta:  # checkpoints written before digests were added have none to check
            want, got = json.loads(meta["sha256"]), _digests(tensors)
            if not isinstance(want, dict):
                raise ValueError("its sha256 record is not a table of digests")
            bad = sorted(slot for slot in got if want.get(slot) != got[slot])
            if bad:
                raise ValueError(f"the bytes of {', '.join(bad)} do not match their SHA-256: the file is damaged")
        state = json.loads(meta["state"])
        # Every reader indexes the state (cur_nimg, the optimiser groups): a hand-edited one is refused here, in one line,
        # before a resume truncates the stats to its cur_nimg.
        if not isinstance(state, dict):
            raise ValueError("its training state is not a JSON object")
        nimg = state.get("cur_nimg")
        if not isinstance(nimg, int) or isinstance(nimg, bool) or nimg < 0:
            raise ValueError(f"its training state has no image count cur_nimg >= 0 (got {nimg!r})")
        if not isinstance(state.get("optimizer_groups", {}), dict):
            raise ValueError("its optimizer_groups is not a JSON object")
        return tensors, state
    except FileNotFoundError:
        raise CheckpointGone(f"{path} not found") from None
    except (SafetensorError, ValueError, KeyError, TypeError, OSError, RuntimeError) as e:
        if not path.exists():  # deleted while it was read (torch's mmap says so as a RuntimeError): a trainer keeping the newest
            raise CheckpointGone(f"{path} was deleted as it was read (its run is training and keeps only its newest checkpoints)") from None
        others = [p for p in list_checkpoints(Path(path).parent.parent) if p.name != Path(path).name]  # the run folder holds checkpoints/
        fix = (
            "delete it to fall back to the previous one"
            if others
            else "it is the run's only checkpoint: retrain, or restore it from a backup"
        )
        raise CheckpointError(f"{path} is not a readable checkpoint ({e}); {fix}") from None


def _read_safetensors(path: Path, prefixes: tuple[str, ...] | None) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata and the tensors under `prefixes` (all if None) of a counterfeit checkpoint file."""
    wanted = lambda key: prefixes is None or key.split(".", 1)[0] in prefixes  # noqa: E731
    if utf8(str(path)):
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            _check_format(path, meta)
            return meta, {k: f.get_tensor(k) for k in f.keys() if wanted(k)}
    # A folder named on another system (a Windows zip): safetensors opens UTF-8 paths only, so Python reads the bytes.
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8].ljust(8, b"\0"))  # the format: an 8-byte header length, a JSON header, tensors
    header = json.loads(data[8 : 8 + size])
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise ValueError("its metadata is not a JSON object")
    _check_format(path, meta)
    return meta, {k: v for k, v in st_load(data).items() if wanted(k)}


def _check_format(path: Path, meta: dict[str, str]) -> None:
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a counterfeit checkpoint (format {meta.get('format')!r})")


def load_module(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str, path: Path | str = "?") -> None:
    """Load `prefix.*` tensors into `module` strictly, with a one-line error on a mismatch."""
    sd = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    try:
        _unwrap(module).load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights for {prefix} do not fit the model in config.json ({first})") from None


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], state: dict, prefix: str, path: Path | str = "?") -> None:
    """Restore an optimiser saved by `save_checkpoint`, its moments in the memory layout of their parameters."""
    groups = state.get("optimizer_groups", {}).get(prefix)
    if groups is None:
        raise CheckpointError(f"{path} holds no state for the optimiser {prefix}; it was not written by this run's trainer")
    sd = _optimizer_state_dict(prefix, tensors, groups)
    params = [p for g in opt.param_groups for p in g["params"]]
    for idx, slots in sd["state"].items():
        # torch takes moments of any shape; fused Adam would then read past them. A moment fits its parameter or is a scalar.
        if idx >= len(params) or any(v.dim() > 0 and v.shape != params[idx].shape for v in slots.values()):
            raise CheckpointError(f"{path}: the state of {prefix} does not fit the model in config.json (parameter {idx})")
    try:
        opt.load_state_dict(sd)
    except (ValueError, KeyError) as e:  # torch checks the groups' sizes; its message is one line
        raise CheckpointError(f"{path}: the state of {prefix} does not fit the model in config.json ({e})") from None
    # Checkpoints hold contiguous tensors, but channels_last weights have NHWC strides; fused Adam pairs elements
    # by memory position, so each moment must take its parameter's layout again.
    for p, slots in opt.state.items():
        for k, v in slots.items():
            if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                slots[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def restore_rng(tensors: dict[str, torch.Tensor], path: Path | str = "?") -> None:
    """Put back the global RNG states so a resumed run draws the same noise as an unbroken one."""
    if "rng.cpu" not in tensors:
        raise CheckpointError(f"{path} holds no random-number state; it was not written by this run's trainer")
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
