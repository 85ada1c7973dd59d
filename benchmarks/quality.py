"""Quality over training time: judge every checkpoint of a run with the domain evaluator.

    python benchmarks/quality.py RUN_DIR [RUN_DIR ...] [--n 10000] [--every K] [--md OUT.md]

For each checkpoint: kimg, wall-clock seconds the run had spent when it was saved, FID in the
evaluator's feature space against the 10,000 Fashion-MNIST test images, classes covered, KL of
the predicted-class histogram to uniform, and mean max-probability (recognisability). Samples
come from the EMA generator with seed 0, exactly as `counterfeit sample` draws them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import counterfeit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from judge import judge  # noqa: E402

from counterfeit.checkpoints import list_checkpoints, read_checkpoint  # noqa: E402
from counterfeit.evaluator import load_evaluator, load_split, predict  # noqa: E402
from counterfeit.runs import load_run  # noqa: E402
from counterfeit.sample import generate  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--every", type=int, default=1, help="judge every k-th checkpoint")
    p.add_argument("--md", type=Path, help="append the table to this markdown file")
    args = p.parse_args()
    ev = load_evaluator()
    real_feats = predict(ev, load_split("fashion-mnist", "test")[0])[1]
    lines = ["| run | kimg | train s | FID | classes | KL | mean max-prob |", "|---|---|---|---|---|---|---|"]
    print(lines[0], flush=True)
    for run_dir in args.runs:
        ckpts = list_checkpoints(run_dir)
        for ckpt in ckpts[args.every - 1 :: args.every] + ([ckpts[-1]] if (len(ckpts) % args.every) else []):
            t = time.time()
            run = load_run(run_dir, checkpoint=ckpt)
            _, state = read_checkpoint(ckpt, prefixes=())
            fakes = generate(run.G, run.spec.pixel_range, args.n, seed=0)  # (n, 1, 28, 28) uint8
            r = judge(ev, fakes, real_feats)
            line = (f"| {run_dir.name} | {state['cur_nimg'] / 1000:.1f} | {state['seconds']:.0f} | {r['fid']:.2f} | "
                    f"{r['classes_covered']}/10 | {r['kl_vs_uniform']:.3f} | {r['mean_max_prob']:.3f} |")  # fmt: skip
            lines.append(line)
            print(line, f"({time.time() - t:.1f} s)", flush=True)
    if args.md:
        with open(args.md, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
