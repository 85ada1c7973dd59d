"""Does --cuda-graphs train what the eager loop trains? Eager twice, then graphed, same seed, compared weight by weight.

    python benchmarks/cuda_graph_parity.py [--kimg 4] [--device cuda] [--modes eager,eager,graphs] [--set KEY=VALUE ...]

Each mode trains the default dcgan (plus any `--set`) for `--kimg` from the same seed into a temporary run folder,
with a checkpoint, a sample grid and the training-time monitor every half of the run, so a graphed run also shows
that eager work between replays (sampling, judging, saving) leaves its graph intact. The first run is the reference; for each other run the script prints the largest
absolute difference of any weight, optimiser moment or EMA tensor of the final checkpoint, the loss rows side by
side and the img/s. Two eager runs show how far the GPU's own non-determinism (atomics in some backward kernels)
moves the weights; a graphed run within that spread trains the same model. Graphs need a CUDA GPU:
`--modes eager,eager --device cpu` smoke-tests the script anywhere.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

try:
    import counterfeit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import parse_set  # noqa: E402

from counterfeit.checkpoints import list_checkpoints, read_checkpoint  # noqa: E402
from counterfeit.config import make_config  # noqa: E402
from counterfeit.runs import create_run_dir, read_stats  # noqa: E402
from counterfeit.train import train  # noqa: E402


def run_once(graphs: bool, kimg: float, device: str, overrides: dict, folder: str) -> tuple[dict, list[dict]]:
    """Train once; the final checkpoint's tensors (RNG states left out) and the stats rows."""
    cfg = make_config(kimg=kimg, tick_kimg=kimg / 4, sample_kimg=kimg / 2, snapshot_kimg=kimg / 2, eval_every_kimg=kimg / 2,
                      device=device, cuda_graphs=graphs, **overrides)  # fmt: skip
    run = create_run_dir(cfg, folder)
    train(cfg, run)
    tensors, _ = read_checkpoint(list_checkpoints(run)[-1])
    return {k: v for k, v in tensors.items() if not k.startswith("rng")}, read_stats(run)


def largest_difference(a: dict, b: dict) -> tuple[float, str]:
    """(max |a - b| over all float tensors, the tensor it is in)."""
    worst, where = 0.0, "-"
    for k in a:
        if a[k].is_floating_point():
            d = (a[k].double() - b[k].double()).abs().max().item()
            if d > worst:
                worst, where = d, k
    return worst, where


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kimg", type=float, default=4.0)
    p.add_argument("--device", default="cuda")
    p.add_argument("--modes", default="eager,eager,graphs", help="comma list of eager | graphs; the first is the reference")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config option, e.g. batch_size=1024")
    args = p.parse_args()
    overrides = parse_set(args.set)
    modes = args.modes.split(",")
    if not set(modes) <= {"eager", "graphs"} or len(modes) < 2:
        raise SystemExit(f"--modes {args.modes}: give two or more of eager, graphs")
    print(
        f"{len(modes)} runs of {args.kimg} kimg on {args.device} (torch {torch.__version__}), reference: the first ({modes[0]})", flush=True
    )
    results = []  # (mode, rows) of the runs that finished
    with tempfile.TemporaryDirectory() as tmp:
        for i, mode in enumerate(modes):
            # Each run's line is printed as it ends, and a failed run is one line: a graph that cannot capture must
            # not take the eager runs' spread down with it.
            try:
                tensors, rows = run_once(mode == "graphs", args.kimg, args.device, overrides, tmp)
            except Exception as e:  # noqa: BLE001  (reported, then the next mode runs)
                print(f"run {i} ({mode}): failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
                if i == 0:
                    raise SystemExit("the reference run failed; nothing to compare against") from None
                continue
            if i == 0:
                ref = tensors
                print(f"run 0 ({mode}): {rows[-1]['img/s']:.0f} img/s over the last tick", flush=True)
            else:
                worst, where = largest_difference(ref, tensors)
                print(
                    f"run {i} ({mode}): largest difference from run 0 {worst:.3g} (in {where}); {rows[-1]['img/s']:.0f} img/s over the last tick",
                    flush=True,
                )
            results.append((mode, rows))
    ref_rows = results[0][1]
    print("kimg | " + " | ".join(f"loss_D, loss_G (monitor's FID) {mode}" for mode, _ in results))
    for j, row in enumerate(ref_rows):
        cells = [
            f"{r[j]['loss_D']:.5f}, {r[j]['loss_G']:.5f}" + (f" ({r[j]['cov/fid']:.3f})" if "cov/fid" in r[j] else "") for _, r in results
        ]
        print(f"{row['kimg']} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
