"""How far apart a toy run's D puts its fakes' logits, and what --drs does to the modes' shares.

    python benchmarks/drs_spread.py RUN_DIR [--n 2500] [--seed 0] [--drs 80,99]

DRS keeps a candidate with probability min(1, exp(logit - M)), M a percentile of the first batch's logits, so the
percentile caps the share rejected and the spread of D's logits sets it (README, Sample). This prints that spread
over the plain sample of --seed (the 1st, 50th and 99th percentiles of D's logits), each mode's count of it (nearest
centre), and the same counts and kept share for each --drs percentile. Prints only: its figures go into
benchmarks/toys/RESULTS-toys.md by hand, with the command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

try:
    import counterfeit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from counterfeit.data.toys import toy_modes  # noqa: E402
from counterfeit.runs import load_run, load_slot  # noqa: E402
from counterfeit.sample import generate, rejection_sample  # noqa: E402


def mode_counts(points: torch.Tensor, centres: torch.Tensor) -> list[int]:
    """How many of the (n, 2) points lie nearest each of the (M, 2) centres."""
    nearest = torch.cdist(points.float(), centres).argmin(dim=1)  # (n,)
    return torch.bincount(nearest, minlength=len(centres)).tolist()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--n", type=int, default=2500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drs", default="80,99", help="comma list of percentiles")
    args = p.parse_args()
    run = load_run(args.run_dir)
    if run.spec.data_kind != "points":
        raise SystemExit(f"{args.run_dir} is not a 2-D toy run")
    D = load_slot(run, "D", "cpu").eval()
    x = generate(run.G, None, args.n, args.seed)  # (n, 2): the plain sample, the candidates DRS starts from
    with torch.no_grad():
        logits = D(x.float()).flatten()  # (n,)
    q = torch.quantile(logits, torch.tensor([0.01, 0.5, 0.99])).tolist()
    print(f"D's logits over the plain sample: 1st percentile {q[0]:.2f}, median {q[1]:.2f}, 99th {q[2]:.2f} "
          f"(the middle 98 % within {q[2] - q[0]:.2f} nats)")  # fmt: skip
    centres, _ = toy_modes(run.config.data.name)
    print(f"plain: modes' counts {mode_counts(x, centres)}")
    for pct in (float(v) for v in args.drs.split(",")):
        kept, acceptance = rejection_sample(run.G, D, args.n, args.seed, pct)
        print(f"--drs {pct:g}: kept {acceptance:.1%} of the candidates; modes' counts {mode_counts(kept, centres)}")


if __name__ == "__main__":
    main()
