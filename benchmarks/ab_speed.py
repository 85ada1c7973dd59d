"""Interleaved A/B of one config option's effect on training speed, through the real training loop.

    python benchmarks/ab_speed.py --model dcgan --kimg 12 --option channels_last --values true,false [--rounds 2]

This VM's speed drifts by more than many effects between minutes, so the settings take turns: round 1 runs
every value once, round 2 again, and so on. Each run trains the model's default config (training-time
evaluation off) for --kimg into a temporary folder; the img/s of every tick after the first is reported, so
start-up (and compilation) is left out. Appends one block to benchmarks/RESULTS.md.

`--option adam --values foreach,fused` compares Adam's two multi-tensor implementations, which are a code path,
not a config option: the training loop's Adam is wrapped to use the given one.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import torch

try:
    import counterfeit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import append_block, machine_line, today  # noqa: E402
from throughput import parse_set  # noqa: E402

from counterfeit.config import make_config  # noqa: E402
from counterfeit.runs import create_run_dir, read_stats  # noqa: E402
from counterfeit.train import train  # noqa: E402

HEADING = "## Speed A/B of single options (issue 7)"
INTRO = ["`python benchmarks/ab_speed.py`: the values of one option take turns through the real training loop (rounds),",
         "so the VM's drift hits every value alike; img/s of every tick after the first."]  # fmt: skip


ADAM_IMPLS = {"foreach": dict(fused=None, foreach=True), "fused": dict(fused=True, foreach=None)}


@contextlib.contextmanager
def adam_impl(name: str):
    """Within the block, torch.optim.Adam uses the named implementation (foreach or fused) whatever it is asked for."""
    if name not in ADAM_IMPLS:
        raise SystemExit(f"--option adam takes {', '.join(ADAM_IMPLS)}, not {name}")
    original = torch.optim.Adam
    torch.optim.Adam = lambda params, **kw: original(params, **{**kw, **ADAM_IMPLS[name]})
    try:
        yield
    finally:
        torch.optim.Adam = original


def ticks(model: str, kimg: float, overrides: dict) -> list[float]:
    """img/s of each tick after the first of a fresh default-config run."""
    cfg = make_config(model=model, kimg=kimg, tick_kimg=kimg / 4, sample_kimg=kimg, snapshot_kimg=kimg, eval_every_kimg=0,
                      device="cpu", **overrides)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        run = create_run_dir(cfg, tmp)
        train(cfg, run)
        return [r["img/s"] for r in read_stats(run)[1:]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="dcgan")
    p.add_argument("--kimg", type=float, default=12.0)
    p.add_argument("--option", default="channels_last")
    p.add_argument("--values", default="true,false")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--md", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = p.parse_args()
    logging.getLogger("counterfeit").setLevel(logging.WARNING)
    command = shlex.join(["python", "benchmarks/ab_speed.py", *sys.argv[1:]])
    values = args.values.split(",")
    rates: dict[str, list[float]] = {v: [] for v in values}
    for r in range(args.rounds):
        for v in values:
            if args.option == "adam":
                with adam_impl(v):
                    rates[v] += ticks(args.model, args.kimg, {})
            else:
                rates[v] += ticks(args.model, args.kimg, parse_set([f"{args.option}={v}"]))
            print(f"round {r + 1}, {args.option}={v}: {rates[v][-3:]}", flush=True)
    block = [f"### {today()}: {args.model}, {args.option} = {args.values}", "", f"`{command}`; {machine_line()}", "",
             "| value | median img/s | range of ticks | ticks |", "|---|---|---|---|"]  # fmt: skip
    for v in values:
        block.append(
            f"| {args.option}={v} | {statistics.median(rates[v]):.1f} | {min(rates[v]):.1f}-{max(rates[v]):.1f} | {len(rates[v])} |"
        )
    print("\n".join(block))
    append_block(args.md, HEADING, INTRO, block)


if __name__ == "__main__":
    main()
