"""Training runs started from the studio: `python -m counterfeit train` as a detached process, one record per job.

Each job is a JSON record plus a log in `RUNS/.studio/jobs/`, so a page reload or a restarted studio finds the
job again; the process has its own session, so stopping the studio leaves training going. Stop = SIGINT, on
which the trainer saves a checkpoint and exits, exactly as after Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import counterfeit

from ..config import MAX_SEED, ConfigError, make_config, option_type
from ..data import IDX_DATASETS, TOY_DATASETS
from ..fileio import atomic_write_text, shell_word
from ..losses import LOSSES
from ..models import MODELS, build_models, get_spec
from ..runs import resume_config
from ..train import check_names, pick_device
from .params import Params, StudioError

_PROC = Path("/proc")
UNKNOWN = "?"  # a process's start that no means here can tell (Windows)
_WINDOWS = os.name == "nt"
MAX_LIVE_JOBS = 2  # two trainings already share a 2-core laptop; a third would only slow the others
MAX_KIMG = 5000.0
MAX_REPORTS = 2000  # at most this many stats lines, grids or checkpoints over a run (kimg / the smallest interval)
_RUN_LINE = re.compile(r"^run folder: (.+)$", re.M)
_JOB_ID = re.compile(r"^[0-9a-f]{12}$")

# Options a page may set, with studio bounds on top of the config's own checks (it validates everything else).
# Paths (--data-dir, a data folder) are left out on purpose: a web request must not point the trainer at the disk.
_BOUNDS: dict[str, tuple[float, float]] = {
    "kimg": (0.001, MAX_KIMG), "batch_size": (2, 1024), "seed": (0, MAX_SEED), "resolution": (28, 128), "channels": (1, 3),
    "z_dim": (1, 512), "g_width": (1, 512), "d_width": (1, 512), "g_depth": (0, 8), "d_depth": (0, 8), "lr_g": (1e-7, 1.0), "lr_d": (1e-7, 1.0), "beta1": (0.0, 0.999),
    "d_steps": (1, 10), "ema_halflife_kimg": (0.0, 1000.0), "tick_kimg": (0.001, MAX_KIMG), "sample_kimg": (0.001, MAX_KIMG),
    "snapshot_kimg": (0.001, MAX_KIMG), "keep_checkpoints": (1, 20), "eval_every_kimg": (0.0, MAX_KIMG), "eval_n": (10, 10000),
    "alarm_after_kimg": (0.0, MAX_KIMG), "gp_weight": (0.0, 1000.0), "r1_gamma": (0.0, 1000.0), "ac_weight": (0.0, 100.0), "ms_weight": (0.0, 100.0), "recall_weight": (0.0, 1000.0),
    "recall_pool": (0, 4096), "pack": (1, 16),
    "beta": (0.0, 1000.0), "noise_std": (0.0, 2.0),
}  # fmt: skip
_TEXT = ("diffaug", "exclude_class")
_BOOLS = ("spectral_norm", "mbstd")
_CHOICES = {"data": [*IDX_DATASETS, *TOY_DATASETS], "model": list(MODELS), "loss": list(LOSSES), "device": ["auto", "cpu", "cuda"]}
OPTIONS = (*_CHOICES, *_BOUNDS, *_TEXT, *_BOOLS)
RESUMABLE = ("kimg", "device")


def parse_options(params: Params, allowed: tuple[str, ...] = OPTIONS) -> dict[str, Any]:
    """The training options a request gives, typed by the config's own fields and bounded."""
    given: dict[str, Any] = {}
    for key in allowed:
        if params.values.get(key) in (None, ""):
            params.used.add(key)
            continue
        if key in _CHOICES:
            given[key] = params.choice(key, None, _CHOICES[key])
        elif key in _BOOLS:
            given[key] = params.bool(key, False)
        elif key in _TEXT:
            given[key] = params.str(key, None, 100)
        else:
            lo, hi = _BOUNDS[key]
            kind = option_type(key)
            given[key] = params.int(key, None, int(lo), int(hi)) if kind is int else params.float(key, None, lo, hi)
    return given


def check_config(given: dict[str, Any], resume_dir: Path | None = None):
    """Build the run config with the CLI's own code (make_config, or runs.resume_config) and check the models fit it."""
    # A resume follows the CLI's rules (runs.resume_config), checked here so a bad one is a 400, not a failed job.
    if resume_dir:
        moved = f"if it moved, resume it from a terminal: counterfeit train --resume {shell_word(resume_dir)} --data NEW_FOLDER"
        cfg = resume_config(resume_dir, given, kimg_flag="'train on to'", moved=moved)
    else:
        cfg = make_config(**given)
    pick_device(cfg.loop.device)  # a device this machine lacks fails here, as the CLI checks it before writing anything
    check_names(cfg)  # a model for the other kind of data, a bad class name: a 400 now, not a failed training process later
    spec = get_spec(cfg.model.name)
    L = cfg.loop
    if L.total_kimg / min(L.tick_kimg, L.sample_kimg, L.snapshot_kimg) > MAX_REPORTS:
        raise ConfigError(
            f"--kimg {L.total_kimg:g} over the smallest of --tick-kimg/--sample-kimg/--snapshot-kimg gives more than {MAX_REPORTS} reports; raise them"
        )
    if not spec.conditional or cfg.model.num_classes:
        build_models(cfg)  # the architecture must fit the data's shape, as the CLI checks before writing anything
    return cfg


def to_argv(given: dict[str, Any]) -> list[str]:
    """The `counterfeit train` flags for typed options."""
    argv = []
    for key, value in given.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:  # --flag=value: a text value that starts with '-' can never pass for another flag
            argv.append(f"{flag}={repr(value) if isinstance(value, float) else value}")
    return argv


class Jobs:
    """The studio's training processes, found again from their records after a reload or a studio restart."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self.dir = self.runs_dir / ".studio" / "jobs"
        self._procs: dict[str, subprocess.Popen] = {}  # the ones this studio started: reaped with poll()
        self._ended: set[str] = set()  # jobs of an earlier studio found ended
        self._lock = threading.Lock()

    def start(self, given: dict[str, Any], resume: Path | None = None) -> dict[str, Any]:
        """Start `counterfeit train` with these options (or --resume a run) in its own session; returns the job."""
        with self._lock:
            live = [j for j in self.list() if j["alive"]]
            if len(live) >= MAX_LIVE_JOBS:
                raise StudioError(f"{len(live)} training runs are going already (at most {MAX_LIVE_JOBS}); stop one first", 409)
            if resume is not None and any(j.get("run") == resume.name for j in live):
                raise StudioError(f"{resume.name} is training already", 409)
            self.dir.mkdir(parents=True, exist_ok=True)
            job_id = uuid.uuid4().hex[:12]
            log_path = self.dir / f"{job_id}.log"
            argv = [sys.executable, "-m", "counterfeit", "train", "--no-progress", *to_argv(given)]
            argv += ["--resume", str(resume)] if resume else ["--out", str(self.runs_dir)]
            env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")  # the log is read as UTF-8 (Windows: cp1252)
            # The child imports this very counterfeit, also from a source checkout that is not installed.
            src = str(Path(counterfeit.__file__).resolve().parents[1])
            env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
            # Its own session (POSIX) or process group (Windows, which ignores start_new_session): Ctrl-C in the studio's
            # terminal leaves it training, and Stop reaches it and its children alone.
            group = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if _WINDOWS else {"start_new_session": True}
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        cwd=self.runs_dir, **group)  # fmt: skip
            self._procs[job_id] = proc
            started = _start_ticks(proc.pid)
            record = {"id": job_id, "pid": proc.pid, "start_ticks": None if started == UNKNOWN else started, "argv": argv[2:],
                      "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "run": resume.name if resume else None}  # fmt: skip
            atomic_write_text(self.dir / f"{job_id}.json", json.dumps(record) + "\n")
            return self._status(record)

    def list(self) -> list[dict[str, Any]]:
        """Every job record with its live status, newest first."""
        if not self.dir.is_dir():
            return []
        out = []
        for path in self.dir.glob("*.json"):
            try:
                out.append(self._status(json.loads(path.read_bytes())))
            except (OSError, ValueError, KeyError):
                continue  # a torn or foreign record must not hide the others
        return sorted(out, key=lambda j: j["started"], reverse=True)

    def get(self, job_id: Any) -> dict[str, Any]:
        """One job by id, or a 404."""
        if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
            raise StudioError(f"bad job id {job_id!r}: use an id from the jobs list")
        path = self.dir / f"{job_id}.json"
        if not path.is_file():
            raise StudioError(f"no job {job_id}", 404)
        return self._status(json.loads(path.read_bytes()))

    def for_run(self, run_name: str) -> dict[str, Any] | None:
        """The newest job that trains (or trained) this run."""
        return next((j for j in self.list() if j.get("run") == run_name), None)

    def stop(self, job_id: str) -> dict[str, Any]:
        """Ask a job to save a checkpoint and stop (SIGINT to its process group, as Ctrl-C); only once."""
        with self._lock:
            job = self.get(job_id)
            if not job["alive"]:
                raise StudioError(f"job {job_id} is not running ({job['state']})", 409)
            # A second SIGINT means "abort without saving" to the trainer: a second Stop must not send it.
            if job["state"] == "stopping":
                raise StudioError(f"job {job_id} is stopping already (saving a checkpoint)", 409)
            # Recorded before the signal: were the record lost, a second Stop would send the aborting second Ctrl-C.
            record = {k: v for k, v in job.items() if k not in ("alive", "state", "message", "run_exists")}
            atomic_write_text(self.dir / f"{job_id}.json", json.dumps({**record, "stop_requested": True}) + "\n")
            try:
                _interrupt(job["pid"])
            except ProcessLookupError:
                pass  # it ended just now
            except OSError:  # Windows says so for a process that has gone, with no ProcessLookupError
                if not _WINDOWS:
                    raise
            return dict(job, state="stopping")

    def _status(self, record: dict[str, Any]) -> dict[str, Any]:
        job = dict(record)
        log_path = self.dir / f"{job['id']}.log"
        head, text = _head_and_tail(log_path)
        if job.get("run") is None and (m := _RUN_LINE.search(head)):
            job["run"] = Path(m.group(1).strip()).name
        proc = self._procs.get(job["id"])
        if proc is not None:
            alive = proc.poll() is None
        elif job["id"] in self._ended:  # found ended once: no need to ask the system again on every poll
            alive = False
        else:
            ticks = job.get("start_ticks")  # None: its start could not be told, so neither can its life (Windows)
            now = _start_ticks(job["pid"]) if ticks is not None else None
            alive = now is not None and now == ticks
            if not alive and now != UNKNOWN:  # a definite answer (ps timed out: ask again next poll)
                self._ended.add(job["id"])
        lines = [line for line in text.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else ""
        if alive:
            state = "stopping" if job.get("stop_requested") else "running" if job.get("run") else "starting"
        elif "counterfeit: error:" in text:
            state = "failed"
            last = next(line for line in reversed(lines) if "counterfeit: error:" in line)
        elif last.startswith("done:"):
            state = "done"
        elif last.startswith("stopped"):  # at a checkpoint, before the first step, or while starting
            state = "stopped"
        else:
            state = "ended" if proc is None or proc.returncode == 0 else f"exited with code {proc.returncode}"
        # A run stopped before its first step removes its folder: the jobs list must not link to it.
        run_exists = bool(job.get("run")) and (self.runs_dir / job["run"] / "config.json").is_file()
        message = last if len(last) <= 300 else last[:297] + "..."  # the head: an alarm's cause comes first, its remedies last
        job.update(alive=alive, state=state, message=message, run_exists=run_exists)
        return job


def _head_and_tail(path: Path, head: int = 8192, tail: int = 20000) -> tuple[str, str]:
    """The first `head` and last `tail` bytes of a job log as text; a poll stays cheap however long the run logs."""
    try:
        with open(path, "rb") as f:
            first = f.read(head)
            size = f.seek(0, 2)
            f.seek(max(size - tail, 0))
            last = f.read()
    except FileNotFoundError:
        return "", ""
    return first.decode(errors="replace"), last.decode(errors="replace")


def _interrupt(pid: int) -> None:
    """Ctrl-C to a job's session (POSIX); Ctrl-Break to its process group on Windows, where Ctrl-C cannot be aimed."""
    if _WINDOWS:
        os.kill(pid, signal.CTRL_BREAK_EVENT)  # the trainer takes SIGBREAK as it takes the first Ctrl-C: save and stop
    else:
        os.killpg(pid, signal.SIGINT)


def _start_ticks(pid: int) -> int | str | None:
    """When a live process started, so a recycled pid is not taken for our job: clock ticks since boot from /proc (Linux),
    else the start time `ps` shows (macOS, BSD); None for a process that has ended, UNKNOWN where neither can tell."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except FileNotFoundError:
        if _PROC.is_dir():
            return None  # no such process
        return _ps_start(pid)
    except OSError:
        return None
    rest = stat.rsplit(")", 1)[1].split()
    return None if rest[0] == "Z" else int(rest[19])  # field 22 of stat; a zombie has ended


def _ps_start(pid: int) -> str | None:
    env = dict(os.environ, LC_ALL="C", TZ="UTC")  # lstart is local time in the locale's words: one form for every studio
    try:
        out = subprocess.run(["ps", "-o", "stat=,lstart=", "-p", str(pid)], capture_output=True, text=True, timeout=5, env=env)
    except (OSError, subprocess.SubprocessError):  # no ps (Windows), or it hung
        return UNKNOWN
    out = out.stdout
    state, _, started = out.strip().partition(" ")
    return None if not started or state.startswith("Z") else " ".join(started.split())
