"""How long the metrics take: FID + class coverage (and the rest) on 10,000 fakes, on this machine.

    python benchmarks/metrics_speed.py [RUN_DIR] [--n 10000] [--md benchmarks/RESULTS.md]

Fakes come from RUN_DIR's EMA generator (seed 0), or are 10,000 training images when no run is given.
"Cold" includes loading the evaluator and scoring the 10,000 reference test images; "warm" reuses the
reference features, as a second `eval` in the same process (or the training-time monitor) does.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

try:
    import counterfeit
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import counterfeit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from counterfeit.machine import cpu_name  # noqa: E402
from counterfeit.metrics import features  # noqa: E402
from counterfeit.metrics.evaluate import evaluate_images, load_image_source  # noqa: E402


def timed(fn) -> tuple[float, object]:
    """Seconds taken by fn() and its result."""
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", type=Path)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--md", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = p.parse_args()
    reals, desc = load_image_source("fashion-mnist:test")
    if args.run:
        from counterfeit.runs import load_run
        from counterfeit.sample import generate

        run = load_run(args.run)
        fakes = generate(run.G, run.spec.pixel_range, args.n, seed=0)  # (n, 1, 28, 28) uint8
        source = f"{args.n} fakes of {args.run.name}"
    else:
        fakes = load_image_source("fashion-mnist:train", args.n)[0]
        source = f"{args.n} training images as fakes"
    labels = desc["class_labels"]
    rows = []
    for label, metrics in [("fid+coverage", ["fid", "coverage"]), ("fid+kid+pr+coverage", ["fid", "kid", "pr", "coverage"])]:
        features._CACHE.clear()
        cold, r = timed(lambda m=metrics: evaluate_images(fakes, reals, m, real_labels=labels))
        # Shuffled fakes hash differently, so only the reference features come from the cache.
        warm, _ = timed(lambda m=metrics: evaluate_images(fakes[torch.randperm(len(fakes))], reals, m, real_labels=labels))
        rows.append((label, cold, warm, r["fid"]["fid"]))
        print(f"{label}: cold {cold:.2f} s, warm {warm:.2f} s, FID {r['fid']['fid']:.3f}", flush=True)
    mem, _ = timed(lambda: evaluate_images(fakes, reals, ["memorisation"], train_images=load_image_source("fashion-mnist:train")[0]))
    print(f"memorisation (2,000 fakes vs 60,000 train): {mem:.2f} s")
    machine = f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, counterfeit {counterfeit.__version__}"
    command = shlex.join(["python", "benchmarks/metrics_speed.py", *sys.argv[1:]])
    date = time.strftime("%Y-%m-%d")
    with open(args.md, "a") as f:
        f.write(f"\n### Metric speed, {date}\n\n{source} vs the 10,000 test images; {machine}; `{command}`\n\n")
        f.write("| metrics | cold s | warm s | FID |\n|---|---|---|---|\n")
        for label, cold, warm, fid in rows:
            f.write(f"| {label} | {cold:.2f} | {warm:.2f} | {fid:.3f} |\n")
        f.write(f"| memorisation (2,000 fakes vs 60,000 train, pixels) | {mem:.2f} | | |\n")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
