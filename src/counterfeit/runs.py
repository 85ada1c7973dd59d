"""Run folders: `runs/NNNNN-<data>-<model>/` with config.json, log.txt, stats.jsonl, samples/, checkpoints/."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from .checkpoints import CheckpointError, CheckpointGone, list_checkpoints, load_module, read_checkpoint
from .config import ConfigError, RunConfig, extend_config, load_config
from .data import builtin_name
from .data.load import closest_name
from .fileio import atomic_write_text, file_label, lock, shell_word, temp_glob, unlock
from .models import ModelSpec, build_models, get_spec

_RUN = re.compile(r"^(\d{5})-")


def data_label(data_name: str) -> str:
    """Short, filesystem-safe label for a data source (a folder becomes its base name)."""
    label = Path(data_name.rstrip("/\\")).name or "data"
    return file_label(label, ".-", max_bytes=40)


def create_run_dir(cfg: RunConfig, out_dir: str | Path) -> Path:
    """Make a fresh numbered run folder (create-exclusive, so two runs never share one) and write config.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = f"{data_label(cfg.data.name)}-{cfg.model.name}"
    while True:
        numbers = [int(m.group(1)) for p in out.iterdir() if (m := _RUN.match(p.name))]
        run_dir = out / f"{max(numbers, default=-1) + 1:05d}-{suffix}"
        try:
            run_dir.mkdir()
            break
        except FileExistsError:  # another process took this number first: look again
            continue
    try:
        for sub in ("samples", "checkpoints"):
            (run_dir / sub).mkdir()
        write_config(run_dir, cfg)
    except BaseException:  # a full disk: no numbered folder without a config.json left behind
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir


def remove_if_unused(run_dir: Path) -> bool:
    """Delete a run folder that holds no checkpoint and no stats line (a run that failed as it started); True if deleted.

    What such a folder holds (config.json, log.txt, the reals grid, an empty TensorBoard log) only repeats the
    command line, and an empty numbered folder would pass for a run in `counterfeit runs` and the studio.
    """
    run_dir = Path(run_dir)
    if list_checkpoints(run_dir) or read_stats(run_dir):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def run_data_kind(run_dir: str | Path) -> str | None:
    """'images' or 'points' (what the run's model makes) from its config.json, None when that cannot be read."""
    try:
        return get_spec(load_config(Path(run_dir) / "config.json").model.name).data_kind
    except (ConfigError, OSError, ValueError):
        return None


def reached_nimg(run_dir: Path) -> int:
    """How many images the run's newest checkpoint has trained on (0 without one)."""
    newest = read_newest(run_dir)
    return newest[2]["cur_nimg"] if newest else 0


def check_resume_length(run_dir: Path, total_kimg: float, flag: str = "--kimg", planned_kimg: float | None = None) -> None:
    """One-line ConfigError when a resume asks for fewer kimg than the run's newest checkpoint has reached."""
    reached = reached_nimg(run_dir)
    if total_kimg * 1000 < reached:
        # Leaving the length out only helps while the run is short of its planned length; past it, nothing would train.
        short = planned_kimg is not None and planned_kimg * 1000 > reached
        raise ConfigError(f"{flag} asks for {total_kimg:g} kimg, less than the {reached / 1000:g} kimg {run_dir} has reached; "
                          f"pass more{f', or leave {flag} out to keep its planned {planned_kimg:g} kimg' if short else ''}")  # fmt: skip


# What a resume may change: how long and how fast, not what is learned (and --data, for a folder that moved).
RESUMABLE = ("kimg", "epochs", "device", "channels_last", "compile", "precision", "cuda_graphs")


def _changes(saved: RunConfig, option: str, value: Any) -> bool:
    """Whether setting one flat option on a saved config changes it (an option it cannot take counts as a change)."""
    try:
        return extend_config(saved, **{option: value}) != saved
    except (ConfigError, TypeError, ValueError):
        return True


def not_a_run(run_dir: Path) -> str:
    """The one-line error for a folder without config.json, with the run it most likely meant."""
    return f"{run_dir} is not a run folder (no config.json); {which_run(run_dir)}"


def which_run(run_dir: Path) -> str:
    """The advice for a path that is no run folder: the run beside it with the closest name (a typo), or an example."""
    inside = _run_names(run_dir)
    if inside:  # the runs folder itself
        return f"it holds runs: pass one of them, such as {shell_word(run_dir / inside[-1])} (counterfeit runs {shell_word(run_dir)} lists them)"
    close = closest_name(run_dir.name, _run_names(run_dir.parent))
    return f"did you mean {run_dir.parent / close}?" if close else "pass a run folder such as runs/00000-fashion-mnist-dcgan"


def _run_names(folder: Path) -> list[str]:
    """The run folders in `folder`, sorted (the newest last); none for a folder that cannot be read."""
    try:
        return sorted(p.name for p in folder.iterdir() if is_run_dir(p))
    except OSError:
        return []


def resume_config(
    run_dir: Path, given: dict[str, Any], kimg_flag: str = "--kimg", moved: str = "if it moved, add --data NEW_FOLDER"
) -> RunConfig:
    """The config to resume `run_dir` with the flat options `given`, or a one-line ConfigError saying what cannot be.

    `kimg_flag` names the length in the error of a resume shorter than the run has reached, and `moved` is the advice for
    a run whose image folder is gone (the studio's form has no --data, so it gives its own).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ConfigError(not_a_run(run_dir))
    saved = load_config(run_dir / "config.json")
    # A run on a folder of images may say where that folder went; a built-in dataset cannot be swapped.
    folder_run = builtin_name(saved.data.name) is None
    fixed = sorted(set(given) - set(RESUMABLE) - ({"data"} if folder_run and builtin_name(given.get("data", "")) is None else set()))
    fixed = [k for k in fixed if _changes(saved, k, given[k])]  # repeating the run's own value (say its --seed) is no change
    if fixed:
        flags = ", ".join("--" + k.replace("_", "-") for k in fixed)
        may = ", ".join("--" + k.replace("_", "-") for k in RESUMABLE)
        raise ConfigError(f"{flags} cannot change when resuming; a resumed run keeps its config.json (only {may} may change, "
                          f"and --data for a folder that moved)")  # fmt: skip
    if "data" not in given:
        check_training_folder(run_dir, saved, moved)
    check_not_training(run_dir)  # a run still starting has no checkpoint, and "start a new run" would duplicate it
    # Training from scratch in the folder would overwrite the stats and grids a missing checkpoint leaves behind.
    if not list_checkpoints(run_dir):
        raise ConfigError(
            f"{run_dir / 'checkpoints'} holds no checkpoint to resume from; start a new run with counterfeit train (same options)"
        )
    cfg = extend_config(saved, **given)
    # Without --kimg/--epochs the run goes to its planned end, which a finished run may have passed by part of a batch.
    if "kimg" in given or "epochs" in given:
        check_resume_length(run_dir, cfg.loop.total_kimg, "--epochs" if "epochs" in given else kimg_flag, saved.loop.total_kimg)
    return cfg


def check_training_folder(
    run_dir: Path, cfg: RunConfig, fix: str = "move it back, or record where it went: counterfeit train --resume RUN_DIR --data NEW_FOLDER"
) -> None:
    """One-line ConfigError when a run trained on a folder of images that is no longer where its config.json says."""
    if builtin_name(cfg.data.name) is None and not Path(cfg.data.name).expanduser().is_dir():
        raise ConfigError(
            f"{run_dir} trained on the folder {cfg.data.name}, which is not there; {fix.replace('RUN_DIR', shell_word(run_dir))}"
        )


def write_config(run_dir: Path, cfg: RunConfig) -> None:
    """Save the run's config.json atomically."""
    atomic_write_text(Path(run_dir) / "config.json", cfg.to_json() + "\n")


def is_run_dir(path: Path) -> bool:
    """True for a folder holding a config.json."""
    return (Path(path) / "config.json").is_file()


def read_stats(run_dir: Path, damaged: list[int] | None = None) -> list[dict[str, Any]]:
    """All parseable lines of a run's stats.jsonl (a torn last line from a crash is skipped).

    `damaged`, if given, receives the 1-based numbers of the lines that were skipped (blank lines aside).
    """
    path = Path(run_dir) / "stats.jsonl"
    if not path.is_file():
        return []
    rows = []
    # A damaged file (bad bytes, a line that is not an object) must not hide the rest of the run.
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif damaged is not None and line.strip():
            damaged.append(number)
    return rows


@dataclass
class LoadedRun:
    """A finished or stopped run read back from its folder: config, model spec, generator and checkpoint state."""

    run_dir: Path
    config: RunConfig
    spec: ModelSpec
    G: nn.Module  # the EMA generator (unless loaded with ema=False), in eval mode, used for every sample
    state: dict[str, Any]
    checkpoint: Path


def conditional_class_names(run: LoadedRun) -> list[str]:
    """A conditional run's class names from its config, or "0", "1", .. when the data had none."""
    return list(run.config.data.class_names) or [str(i) for i in range(run.config.model.num_classes)]


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str | Path | None = None, ema: bool = True) -> LoadedRun:
    """Rebuild a run's EMA generator (or with ema=False its raw one) from config.json and its newest (or the given) checkpoint."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a folder; {which_run(run_dir)}")
    if not is_run_dir(run_dir):  # say which run was meant (the runs folder itself, a cut name)
        raise CheckpointError(not_a_run(run_dir))
    cfg = load_config(run_dir / "config.json")
    prefix = "G_ema" if ema else "G"
    newest = (Path(checkpoint), *read_checkpoint(checkpoint, prefixes=(prefix,))) if checkpoint else read_newest(run_dir, (prefix,))
    if newest is None:
        raise CheckpointError(
            f"{run_dir} has no checkpoint yet; train longer or resume it with counterfeit train --resume {shell_word(run_dir)}"
        )
    path, tensors, state = newest
    G, _ = _build_models(cfg, run_dir)
    load_module(G, tensors, prefix, path)
    G.to(device).eval().requires_grad_(False)
    return LoadedRun(run_dir, cfg, get_spec(cfg.model.name), G, state, path)


def read_newest(run_dir: Path, prefixes: tuple[str, ...] = ()) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]] | None:
    """(path, tensors under `prefixes`, state) of the run's newest checkpoint, or None when it has none.

    A run in training deletes older checkpoints as it writes newer ones (--keep-checkpoints), so one may go as it is
    read: the newest is then listed and read again.
    """
    for attempt in range(3):
        ckpts = list_checkpoints(run_dir)
        if not ckpts:
            return None
        try:
            return ckpts[-1], *read_checkpoint(ckpts[-1], prefixes=prefixes)
        except CheckpointGone:
            if attempt == 2:
                raise
    return None  # not reached: the last attempt returns or raises


def _build_models(cfg: RunConfig, run_dir: Path) -> tuple[nn.Module, nn.Module]:
    """build_models, with a one-line error naming config.json for values no model can have (a hand-edited width of -3)."""
    try:
        return build_models(cfg)
    except (RuntimeError, ValueError, TypeError) as e:  # config.json is type-checked on load, not range-checked
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{run_dir / 'config.json'} does not build its model ({first}); restore the file") from None


def load_slot(run: LoadedRun, slot: str, device: str | torch.device = "cpu") -> nn.Module:
    """The run's second network ("D", or "D_ema": an autoencoder's encoder) from the same checkpoint, in eval mode."""
    try:
        tensors, _ = read_checkpoint(run.checkpoint, prefixes=(slot,))
    except CheckpointGone:  # its G came from that file: a D from a newer one would not be its partner
        raise CheckpointError(f"{run.checkpoint} was deleted while this command used it (its run is training and keeps only "
                              f"its newest checkpoints); run the command again") from None  # fmt: skip
    _, net = _build_models(run.config, run.run_dir)
    load_module(net, tensors, slot, run.checkpoint)
    return net.to(device).eval().requires_grad_(False)


def _losses(row: dict[str, Any]) -> str:
    def num(key: str, digits: int) -> str:  # a damaged stats line shows '?' for a value, and the run list goes on
        value = row.get(key)
        return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"

    if "loss_D" in row:
        return f"D {num('loss_D', 3)} G {num('loss_G', 3)}"
    return f"loss {num('loss', 1)}" if "loss" in row else ""


def run_table(root: Path) -> list[dict[str, Any]]:
    """One row per run folder under `root` (see run_row)."""
    if not root.is_dir():
        return []
    return [run_row(run_dir) for run_dir in sorted(p for p in root.iterdir() if is_run_dir(p))]


def is_evaluation(row: dict[str, Any]) -> bool:
    """Whether a stats line holds a training-time evaluation (coverage, or a toy's modes), not a tick alone."""
    return any(k.startswith(("cov/", "toy/")) for k in row)


def last_evaluation(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The newest stats line with an evaluation (its 'alarm' says whether the alarm was firing), or {}."""
    return next((r for r in reversed(stats) if is_evaluation(r)), {})


def _covered(judged: dict[str, Any]) -> str:
    if "cov/classes" in judged:
        return f"{judged['cov/classes']}/{judged['cov/num_classes']} classes"
    if "toy/modes" in judged:
        return f"{judged['toy/modes']}/{judged['toy/modes_total']} modes"
    return ""


def run_row(run_dir: Path, cfg: RunConfig | None = None, stats: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A run's summary: run, data, model, kimg, last losses, classes covered, status (a broken run says so).

    A caller that has already read the run's config or stats passes them, so they are not read twice.
    """
    if cfg is None:
        try:
            cfg = load_config(run_dir / "config.json")
        except Exception as e:  # a broken run must not hide the others
            return {"run": run_dir.name, "data": "?", "model": "?", "kimg": "?", "losses": "", "covered": "", "status": f"unreadable: {e}"}
    stats = read_stats(run_dir) if stats is None else stats
    last = stats[-1] if stats else {}
    judged = last_evaluation(stats)
    kimg = last.get("kimg", 0) if isinstance(last.get("kimg"), (int, float)) else 0
    status = "no checkpoint"
    try:
        if newest := read_newest(run_dir):
            state = newest[2]
            status = "done" if state.get("done") else f"stopped at {state['cur_nimg'] / 1000:.1f}"
            # A Ctrl-C saves between ticks, so the checkpoint can be ahead of the last stats line.
            kimg = max(kimg, state["cur_nimg"] / 1000)
    except CheckpointError:
        status = "bad checkpoint"
    if training_process(run_dir) is not None:  # by any process: the CLI's too, not only the studio's jobs
        status = "training"
    return {
        "run": run_dir.name, "data": data_label(cfg.data.name), "model": cfg.model.name,
        "kimg": f"{kimg:.1f}/{cfg.loop.total_kimg:g}",
        "losses": _losses(last), "covered": _covered(judged),
        "status": status + (" (collapse alarm)" if "alarm" in judged else ""),
    }  # fmt: skip


def display_width(text: str) -> int:
    """Columns `text` takes in a terminal: 2 for wide (CJK) characters, 0 for combining marks and joiners, 1 for the rest."""
    return sum(0 if _zero_width(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _zero_width(c: str) -> bool:
    # Format characters (zero-width space and joiners, as in emoji sequences) take no column; the soft hyphen
    # is one too, but terminals draw it.
    category = unicodedata.category(c)
    return bool(unicodedata.combining(c)) or category in ("Mn", "Me") or (category == "Cf" and c != "\u00ad")


def as_printed(text: str, stream: TextIO) -> str:
    """`text` as `stream` writes it: what its encoding cannot hold as backslash escapes, where it escapes (the CLI's do)."""
    if getattr(stream, "errors", None) != "backslashreplace":
        return text  # a UTF-8 stream with surrogateescape writes a name that is not UTF-8 as its own bytes
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding, "replace")


def table_lines(table: list[list[str]], stream: TextIO) -> list[str]:
    """The rows of `table` as lines with their columns lined up as `stream` shows them (wide characters, escapes)."""
    shown = [[display_width(as_printed(cell, stream)) for cell in row] for row in table]
    widths = [max(column) for column in zip(*shown)]
    return ["  ".join(cell + " " * (w - n) for cell, n, w in zip(row, ns, widths)) for row, ns in zip(table, shown)]


class RunBusy(ConfigError):
    """Another process is training this run folder."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold RUN/.lock while training: a second trainer of the same run (a resume started twice) is refused, not interleaved.

    An advisory lock the system drops when its process dies, so a crash or kill -9 never leaves the run locked.
    """
    path = Path(run_dir) / ".lock"
    with open(path, "a+") as f:
        got = lock(f.fileno(), wait_s=0.5)  # a reader's probe (training_process) holds it for an instant
        if got is False:
            f.seek(0)
            raise _busy(run_dir, _holder(f.read())) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            if got:
                f.truncate(0)  # no stale process number for the next refusal to name
                f.flush()
                unlock(f.fileno())


def training_process(run_dir: Path) -> str | None:
    """'process N' (or 'another process') while something holds the run's training lock; None when nothing trains it."""
    try:
        f = open(Path(run_dir) / ".lock", "rb")  # read-only: looking must not create or change anything
    except OSError:  # never trained since locks came in, or unreadable: the trainer's own lock still guards the run
        return None
    with f:
        got = lock(f.fileno(), exclusive=False)
        if got:
            unlock(f.fileno())  # now: Windows may release a closed file's lock only later, turning a trainer away
        if got is not False:
            return None  # free, or no locks on this system
        return _holder(f.read().decode(errors="replace"))


def _holder(text: str) -> str:
    """'process N' from the number a trainer wrote into .lock, if that process is alive; else 'another process'."""
    text = text.strip()
    return f"process {text}" if text.isdigit() and _alive(int(text)) else "another process"


def _alive(pid: int) -> bool:
    # The number in .lock is the holder's once it has written it; just before, it may still be a killed trainer's.
    if sys.platform == "win32":  # os.kill(pid, 0) there is TerminateProcess: asking would kill the trainer
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # alive, but another user's (EPERM)
        return True
    return True


# Windows API values (winnt.h, minwinbase.h, winerror.h).
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_STILL_ACTIVE = 259
_ERROR_ACCESS_DENIED = 5


def _alive_windows(pid: int) -> bool:
    import ctypes

    if not 0 < pid <= 0xFFFFFFFF:  # no such process number: ctypes would wrap it into another one
        return False
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = ctypes.c_void_p  # a handle is pointer-sized: the default int would cut it on 64-bit
    kernel32.OpenProcess.argtypes = (ctypes.c_uint32, ctypes.c_int, ctypes.c_uint32)
    kernel32.GetExitCodeProcess.argtypes = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32))
    kernel32.CloseHandle.argtypes = (ctypes.c_void_p,)
    handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:  # gone (invalid parameter), or alive but not ours to look at (access denied, like EPERM)
        return ctypes.get_last_error() == _ERROR_ACCESS_DENIED
    try:
        code = ctypes.c_uint32()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True  # it opened, so it exists: a refusal to say more is no proof that it ended
        return code.value == _STILL_ACTIVE  # an exited process keeps its handle while others hold one
    finally:
        kernel32.CloseHandle(handle)


def check_not_training(run_dir: Path) -> None:
    """RunBusy (one line) while another process trains the run folder: a resume now would be refused or duplicate it."""
    if (who := training_process(run_dir)) is not None:
        raise _busy(run_dir, who)


def _busy(run_dir: Path, who: str) -> RunBusy:
    return RunBusy(f"{run_dir} is being trained by {who}; let it finish, or stop it (Ctrl-C in its terminal, or Stop in the "
                   f"studio that started it) before resuming")  # fmt: skip


def remove_stale_temp_files(run_dir: Path) -> int:
    """Delete checkpoint temp files a killed run left behind (only a run's trainer writes there); returns how many."""
    stale = list((Path(run_dir) / "checkpoints").glob(temp_glob("ckpt-*", ".safetensors")))
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)
