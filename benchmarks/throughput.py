"""Training throughput (img/s) of the model families through the real training loop, on this machine.

    python benchmarks/throughput.py [--models dcgan,lecture] [--kimg-dcgan 20] [--kimg-lecture 1] [--md benchmarks/RESULTS.md]

Each model trains with its default config (Fashion-MNIST, default batch size) into a temporary run
folder; the rate is taken from the stats of the second half of the run, so start-up is excluded.
The result rows are appended to a markdown table with the machine, the command and the date.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    import counterfeit
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import counterfeit

from counterfeit.config import make_config
from counterfeit.machine import cpu_name
from counterfeit.runs import create_run_dir, read_stats
from counterfeit.train import train


def measure(model: str, kimg: float, device: str) -> dict:
    """Train `model` for `kimg` and return the steady-state img/s."""
    cfg = make_config(model=model, kimg=kimg, tick_kimg=kimg / 4, sample_kimg=kimg, snapshot_kimg=kimg, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        run = create_run_dir(cfg, tmp)
        t = time.time()
        train(cfg, run)
        rows = read_stats(run)
    steady = rows[len(rows) // 2 :]
    nimg = (steady[-1]["kimg"] - rows[len(rows) // 2 - 1]["kimg"]) * 1000
    secs = steady[-1]["seconds"] - rows[len(rows) // 2 - 1]["seconds"]
    return {"model": model, "batch": cfg.loop.batch_size, "img_s": nimg / secs, "wall_s": time.time() - t}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="dcgan,lecture")
    p.add_argument("--kimg-dcgan", type=float, default=20.0)
    p.add_argument("--kimg-lecture", type=float, default=1.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--md", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = p.parse_args()
    command = shlex.join(["python", "benchmarks/throughput.py", *sys.argv[1:]])
    machine = f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, counterfeit {counterfeit.__version__}"
    if args.device.startswith("cuda"):
        machine += f", {torch.cuda.get_device_name()}"
    date = time.strftime("%Y-%m-%d")
    rows = []
    for model in args.models.split(","):
        kimg = getattr(args, f"kimg_{model}", 5.0)
        r = measure(model, kimg, args.device)
        rows.append(f"| {date} | training | {model} | {args.device} | {r['batch']} | {r['img_s']:.0f} img/s | {machine} | `{command}` |")
        print(rows[-1], flush=True)
    if not args.md.exists():
        args.md.write_text(
            "# Benchmark results\n\n| date | what | model | device | batch | result | machine | command |\n|---|---|---|---|---|---|---|---|\n"
        )
    with open(args.md, "a") as f:
        f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
