"""The training-time monitor's cost per call in fp32 and bf16, taking turns, and what each one reports.

    python benchmarks/monitor_speed.py [RUN_DIR] [--rounds 8] [--n 2000] [--md benchmarks/RESULTS.md]

The monitor (class coverage, duplicates and a quick FID of --n fakes from the EMA generator) runs every
--eval-every-kimg during training, inside the run's wall-clock. Its generator is RUN_DIR's G_ema, or a fresh default
dcgan's (untrained) when no run is given. The first round is left out of the medians (start-up).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    import counterfeit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import append_block, machine_line, today  # noqa: E402

from counterfeit.config import make_config  # noqa: E402
from counterfeit.metrics.monitor import build_monitor  # noqa: E402
from counterfeit.models import build_models, get_spec  # noqa: E402
from counterfeit.models.layers import to_channels_last  # noqa: E402
from counterfeit.train import load_training_data  # noqa: E402

HEADING = "## Speed A/B of single options (issue 7)"
PRECISIONS = ("fp32", "bf16")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", type=Path)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--md", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = p.parse_args()
    if args.run:
        from counterfeit.runs import load_run

        run = load_run(args.run)
        cfg, source = run.config, f"G_ema of {args.run.name}"
        G = to_channels_last(run.G) if cfg.loop.channels_last else run.G  # as training's G_ema is
    else:
        cfg = make_config()
        torch.manual_seed(0)
        G, source = to_channels_last(build_models(cfg)[0]).eval().requires_grad_(False), "an untrained default dcgan"
    data = load_training_data(cfg)
    d = cfg.data
    pixels, alarm = get_spec(cfg.model.name).pixel_range, cfg.loop.alarm_after_kimg  # as training builds it
    monitors = {pr: build_monitor(d.name, data, d.channels, d.resolution, args.n, alarm, pixels, d.data_dir, pr) for pr in PRECISIONS}
    if any(m is None for m in monitors.values()):
        raise SystemExit(f"no training-time monitor for {d.name} at {d.channels}x{d.resolution}: it needs grey 28x28 Fashion-MNIST")
    seconds, rows = {pr: [] for pr in PRECISIONS}, {}
    for _ in range(args.rounds):
        for pr, monitor in monitors.items():
            t = time.perf_counter()
            rows[pr] = monitor(G, 100.0)
            seconds[pr].append(time.perf_counter() - t)
    block = [
        f"### {today()}: the training-time monitor, fp32 vs bf16",
        "",
        f"`{shlex.join(['python', 'benchmarks/monitor_speed.py', *sys.argv[1:]])}`; {args.n} fakes from {source}, "
        f"{args.rounds} rounds taking turns (the first left out); {machine_line()}",
        "",
        "| precision | median ms per call | range ms | cov/classes | cov/kl | cov/dup | cov/fid |",
        "|---|---|---|---|---|---|---|",
    ]
    for pr in PRECISIONS:
        s = [1000 * x for x in seconds[pr][1:]]
        r = rows[pr]
        block.append(f"| {pr} | {statistics.median(s):.0f} | {min(s):.0f}-{max(s):.0f} | {r['cov/classes']} | {r['cov/kl']} | "
                     f"{r['cov/dup']} | {r['cov/fid']} |")  # fmt: skip
    print("\n".join(block))
    append_block(args.md, HEADING, [], block)


if __name__ == "__main__":
    main()
