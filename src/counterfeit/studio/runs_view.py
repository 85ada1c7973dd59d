"""The Runs panel's data: the runs list, one run's stats, sample grids and status, read from its folder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..checkpoints import list_checkpoints
from ..config import ConfigError, load_config
from ..losses import d_output_level, indifference_levels
from ..runs import is_run_dir, read_stats, run_data_kind, run_row
from .jobs import Jobs
from .params import servable_name

_GRID = re.compile(r"^(fakes|recon)(\d+\.\d)kimg\.png$")
_SUMMARY = {"fid": ("fid",), "kid": ("kid",), "pr": ("precision", "recall"), "coverage": ("classes_covered", "num_classes"),
            "toy": ("modes_covered", "modes_total", "high_quality_pct"), "anomaly": ("auroc",)}  # fmt: skip


def list_runs(root: Path, jobs: Jobs) -> dict[str, Any]:
    """Every run folder directly under `root` with its summary row, plus the studio's training jobs."""
    runs, all_jobs = [], jobs.list()
    if root.is_dir():
        live = {j["run"] for j in all_jobs if j["alive"] and j.get("run")}
        # A run linked in from elsewhere is listed only if it resolves inside root, as run_path serves it (else a 403).
        # A name it cannot serve (not UTF-8, too long) is left out: one such folder made the whole list a 400.
        inside = [p for p in root.iterdir() if servable_name(p.name) and is_run_dir(p) and p.resolve().parent == root.resolve()]
        for run_dir in sorted(inside, reverse=True):
            row = run_row(run_dir)
            row["training"] = run_dir.name in live or row["status"] == "training"  # a CLI's run too (its lock is held)
            row["has_checkpoint"] = bool(list_checkpoints(run_dir))
            row["kind"] = run_data_kind(run_dir)  # None: a broken config, shown as such
            runs.append(row)
    return {"runs": runs, "jobs": all_jobs[:20]}


def run_detail(run_dir: Path, jobs: Jobs, since: int = 0) -> dict[str, Any]:
    """A run's config, stats rows from index `since` on (for live polling), grids, checkpoints, alarm, metrics and job."""
    try:
        config = load_config(run_dir / "config.json")
        cfg = config.to_dict()
    except ConfigError as e:
        config, cfg = None, {"error": str(e)}
    stats = read_stats(run_dir)
    grids: dict[str, list[dict[str, Any]]] = {"fakes": [], "recon": []}
    samples = run_dir / "samples"
    if samples.is_dir():
        for p in sorted(samples.iterdir()):
            if m := _GRID.match(p.name):
                grids[m.group(1)].append({"file": p.name, "kimg": float(m.group(2))})
    alarms = [r for r in stats if "alarm" in r]
    return {
        "run": run_dir.name,
        "summary": run_row(run_dir) if config is None else run_row(run_dir, config, stats),
        "config": cfg,
        # the loss chart's "D cannot tell" lines: [[value, label] or null for D, the same for G]
        "loss_levels": indifference_levels(config.loss) if config is not None else [None, None],
        # the verdict chart's line: [value, label], or null where the loss has no fixed level (hinge, wgan-gp)
        "d_level": d_output_level(config.loss.name) if config is not None else None,
        "stats": stats[since:],
        "stats_total": len(stats),
        "grids": grids["fakes"],
        "recon_grids": grids["recon"],
        "reals": (samples / "reals.png").is_file(),
        "checkpoints": [p.name for p in list_checkpoints(run_dir)],
        "alarm": {
            "now": stats[-1]["alarm"] if stats and "alarm" in stats[-1] else None,
            "kimg": [r["kimg"] for r in alarms],
            "last": alarms[-1]["alarm"] if alarms else None,
        },  # fmt: skip
        "metrics": _metrics(run_dir),
        "job": jobs.for_run(run_dir.name),
    }


def _metrics(run_dir: Path) -> dict[str, Any]:
    """The headline numbers of the run's metrics.json (from `counterfeit eval`), if any."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_bytes()).get("metrics", {})
    except (OSError, ValueError, AttributeError):
        return {}
    out = {}
    for name, keys in _SUMMARY.items():
        if isinstance(metrics.get(name), dict):
            out[name] = {k: metrics[name][k] for k in keys if isinstance(metrics[name].get(k), int | float)}
    return out
