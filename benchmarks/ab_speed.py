"""Interleaved A/B of one config option's effect on training speed, through the real training loop.

    python benchmarks/ab_speed.py --model dcgan --kimg 12 --option channels_last --values true,false [--rounds 2]

This VM's speed drifts by more than many effects between minutes, so the settings take turns: round 1 runs
every value once, round 2 again, and so on. Each run trains the model's default config (training-time
evaluation off) for --kimg into a temporary folder; the img/s of every tick after the first is reported, so
start-up (and compilation) is left out. Appends one block to benchmarks/RESULTS.md.

`--option adam --values foreach,fused` compares Adam's two multi-tensor implementations, which are a code path,
not a config option: the training loop's Adam is wrapped to use the given one.

`--option to_image --values fold,native` compares G's last layer computed as a matmul and a fold (what
`models.layers.ToImage` does for one channel in fp32 on the CPU) with the native transposed conv: a code path too.

`--option allocator --values system,tuned` compares glibc's malloc as it comes with the thresholds
`counterfeit.allocator` sets. The setting is process-wide, so each run of this option trains in a child process;
the block also gives the page faults per training step (minor faults of the whole run over its steps).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import shlex
import statistics
import subprocess
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
from counterfeit.train import Callbacks, train  # noqa: E402

HEADING = "## Speed A/B of single options (issue 7)"
INTRO = ["`python benchmarks/ab_speed.py`: the values of one option take turns through the real training loop (rounds),",
         "so the VM's drift hits every value alike; img/s of every tick after the first."]  # fmt: skip


ADAM_IMPLS = {"foreach": dict(fused=None, foreach=True), "fused": dict(fused=True, foreach=None)}


TO_IMAGE = ("fold", "native")


@contextlib.contextmanager
def to_image_path(name: str):
    """Within the block, G's one-channel last layer takes the named path: the fold where it applies, or always native."""
    from counterfeit.models.layers import ToImage

    if name not in TO_IMAGE:
        raise SystemExit(f"--option to_image takes {', '.join(TO_IMAGE)}, not {name}")
    original = ToImage._folds
    if name == "native":
        ToImage._folds = lambda self, x: False
    try:
        yield
    finally:
        ToImage._folds = original


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


def ticks(model: str, kimg: float, overrides: dict, callbacks: Callbacks | None = None) -> list[float]:
    """img/s of each tick after the first of a fresh default-config run."""
    # --set may override these defaults too (eval_every_kimg=20 times the monitor): a repeated keyword was a TypeError.
    base = {"kimg": kimg, "tick_kimg": kimg / 4, "sample_kimg": kimg, "snapshot_kimg": kimg, "eval_every_kimg": 0, "device": "cpu"}
    cfg = make_config(model=model, **{**base, **overrides})
    with tempfile.TemporaryDirectory() as tmp:
        run = create_run_dir(cfg, tmp)
        train(cfg, run, callbacks)
        return [r["img/s"] for r in read_stats(run)[1:]]


ALLOCATORS = ("system", "tuned")


def ticks_in_child(model: str, kimg: float, overrides: dict, allocator: str) -> tuple[list[float], float]:
    """ticks() in a fresh process with malloc as `allocator` says, and that run's page faults per training step."""
    if allocator not in ALLOCATORS:
        raise SystemExit(f"--option allocator takes {', '.join(ALLOCATORS)}, not {allocator}")
    env = {**os.environ, "COUNTERFEIT_MALLOC": "system" if allocator == "system" else ""}
    code = f"import ab_speed; ab_speed.child({model!r}, {kimg!r}, {overrides!r})"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parent, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.splitlines()[-1])
    return result["ticks"], result["faults_per_step"]


def child(model: str, kimg: float, overrides: dict) -> None:
    """Print ticks() and the minor page faults per step after the first tick as JSON: ticks_in_child's other half."""
    logging.getLogger("counterfeit").setLevel(logging.WARNING)
    first: list[tuple[int, int]] = []  # (cur_nimg, minor faults so far) at the first step past the first tick
    last: list[tuple[int, int]] = []  # the same at the latest step

    def on_step(cur_nimg: int, total_nimg: int) -> None:
        if 4 * cur_nimg > total_nimg:  # the first tick (a quarter of the run) is start-up, as ticks() reckons
            last[:] = [(cur_nimg, resource.getrusage(resource.RUSAGE_SELF).ru_minflt)]
            first[:] = first or last

    rates = ticks(model, kimg, overrides, Callbacks(on_step=on_step))
    (n0, f0), (n1, f1) = first[0], last[0]
    steps = (n1 - n0) / make_config(model=model, **overrides).loop.batch_size
    print(json.dumps({"ticks": rates, "faults_per_step": (f1 - f0) / max(steps, 1)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="dcgan")
    p.add_argument("--kimg", type=float, default=12.0)
    p.add_argument("--option", default="channels_last")
    p.add_argument("--values", default="true,false")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every value, e.g. batch_size=256")
    p.add_argument("--md", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = p.parse_args()
    logging.getLogger("counterfeit").setLevel(logging.WARNING)
    command = shlex.join(["python", "benchmarks/ab_speed.py", *sys.argv[1:]])
    values = args.values.split(",")
    common = parse_set(args.set)
    rates: dict[str, list[float]] = {v: [] for v in values}
    faults: dict[str, list[float]] = {v: [] for v in values}
    for r in range(args.rounds):
        for v in values:
            if args.option == "allocator":
                run_ticks, run_faults = ticks_in_child(args.model, args.kimg, common, v)
                rates[v] += run_ticks
                faults[v].append(run_faults)
            elif args.option in ("adam", "to_image"):
                with (adam_impl if args.option == "adam" else to_image_path)(v):
                    rates[v] += ticks(args.model, args.kimg, common)
            else:
                rates[v] += ticks(args.model, args.kimg, {**common, **parse_set([f"{args.option}={v}"])})
            print(f"round {r + 1}, {args.option}={v}: {rates[v][-3:]}", flush=True)
    fault_col = args.option == "allocator"
    block = [f"### {today()}: {args.model}, {args.option} = {args.values}", "", f"`{command}`; {machine_line()}", "",
             "| value | median img/s | range of ticks | ticks |" + (" page faults per step (median of runs) |" if fault_col else ""),
             "|---|---|---|---|" + ("---|" if fault_col else "")]  # fmt: skip
    for v in values:
        block.append(
            f"| {args.option}={v} | {statistics.median(rates[v]):.1f} | {min(rates[v]):.1f}-{max(rates[v]):.1f} | {len(rates[v])} |"
            + (f" {statistics.median(faults[v]):.0f} |" if fault_col else "")
        )
    print("\n".join(block))
    append_block(args.md, HEADING, INTRO, block)


if __name__ == "__main__":
    main()
