"""Does projection beat search? Pixel error of projected held-out test images vs the nearest of many random samples.

    python benchmarks/projection.py RUN [RUN ...] [--n 200] [--pool 10000] [--steps 100] [--restarts 4]
        [--feature-weights W[,W...]] [--threads 2] [--append benchmarks/RESULTS.md]

For each run: N Fashion-MNIST test images (a fixed seeded choice), each projected with the library's
defaults (GANs: Adam from random starts on pixel MSE + evaluator features; VAE/AE: the encoder, then
the same refinement), against the nearest (in pixel MSE) of `--pool` random samples of the same model.
Reports the share of images where projection wins, the mean errors, and how often the evaluator gives
the reconstruction the original's class. Errors are per-pixel MSE in [0, 1] units.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from pathlib import Path

import torch

try:
    import counterfeit  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from counterfeit import __version__  # noqa: E402
from counterfeit.evaluator import load_split, predict  # noqa: E402
from counterfeit.latent.concepts import evaluator_for  # noqa: E402
from counterfeit.latent.project import FEATURE_WEIGHT, project_encoder, project_gan  # noqa: E402
from counterfeit.latent.space import Latent, decode_batched  # noqa: E402
from counterfeit.machine import cpu_name  # noqa: E402
from counterfeit.runs import load_run, load_slot  # noqa: E402
from counterfeit.sample import from_uint8, make_noise, to_uint8  # noqa: E402

PICK_SEED = 1  # which test images
POOL_SEED = 123_456  # the random samples searched: a seed the projection's starts (seed 0) never use


def nearest_error(target: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Per-image MSE (N,) in [0, 1] units of target (N, C, H, W) to its nearest image in pool (M, C, H, W), both in [-1, 1]."""
    t, p = ((target + 1) / 2).flatten(1), ((pool + 1) / 2).flatten(1)  # (N, P), (M, P)
    d = torch.cdist(t.double(), p.double()).square() / t.shape[1]  # (N, M)
    return d.min(dim=1).values.float()


def measure(run_dir: str, x: torch.Tensor, labels: torch.Tensor, args) -> list[dict]:
    """One row per method (GANs: one; autoencoders: encoder alone and encoder + refinement)."""
    run = load_run(run_dir)
    pr = run.spec.pixel_range
    ev = evaluator_for(run)
    target = from_uint8(x, pr)  # (N, 1, 28, 28)
    t0 = time.perf_counter()
    pool = decode_batched(run.G, Latent(make_noise(args.pool, run.G.z_dim, POOL_SEED)))  # (M, 1, 28, 28)
    near = nearest_error(target, pool)  # (N,)
    pool_s = time.perf_counter() - t0
    methods = []
    if run.spec.family == "autoencoder":
        enc = load_slot(run, "D_ema")
        methods.append(("encoder", lambda: project_encoder(run.G, enc, target, pr, 0)))
        methods.append((f"encoder + {args.steps} steps", lambda: project_encoder(run.G, enc, target, pr, args.steps, ev)))
    else:
        for fw in args.feature_weights:
            name = f"{args.restarts} starts x {args.steps} steps, feature weight {fw:g}"
            methods.append((name, lambda fw=fw: project_gan(run.G, target, pr, args.steps, args.restarts, 0, ev, feature_weight=fw)))
    rows = []
    for name, fn in methods:
        t0 = time.perf_counter()
        p = fn()
        seconds = time.perf_counter() - t0
        agree = (predict(ev, to_uint8(p.recon, pr))[0].argmax(1) == labels).float().mean().item()
        rows.append({"run": Path(run_dir).name, "method": name, "wins": (p.error < near).float().mean().item(),
                     "proj": p.error.mean().item(), "proj_median": p.error.median().item(), "nearest": near.mean().item(),
                     "agree": agree, "seconds": seconds, "pool_s": pool_s})  # fmt: skip
        print(f"{rows[-1]['run']} {name}: wins {rows[-1]['wins']:.1%}, projection {rows[-1]['proj']:.4f}, "
              f"nearest {rows[-1]['nearest']:.4f}, class kept {agree:.1%}, {seconds:.0f} s", flush=True)  # fmt: skip
    return rows


def table(rows: list[dict], args, command: str) -> str:
    """The markdown section for RESULTS.md."""
    date = datetime.date.today().isoformat()
    head = (f"### Projection vs the nearest of {args.pool:,} samples, {date}\n\n"
            f"{args.n} Fashion-MNIST test images (seeded choice); {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"counterfeit {__version__}; `{command}`\n\n"
            "| run | method | projection wins | mean error: projection | nearest sample | median projection | class kept | projection s |\n"
            "|---|---|---|---|---|---|---|---|\n")  # fmt: skip
    body = "".join(
        f"| {r['run']} | {r['method']} | **{r['wins']:.1%}** | {r['proj']:.4f} | {r['nearest']:.4f} | {r['proj_median']:.4f} | "
        f"{r['agree']:.1%} | {r['seconds']:.0f} |\n"
        for r in rows
    )
    return head + body


def main() -> None:
    """Measure every run and print (and optionally append) the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders: a GAN and, for the side-by-side, a VAE")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--pool", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--feature-weights", type=lambda s: [float(v) for v in s.split(",")], default=[FEATURE_WEIGHT],
                   help="GANs: one projection per weight, comma-separated (default: the library's)")  # fmt: skip
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--append", help="append the table to this markdown file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    x, y = load_split("fashion-mnist", "test")
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(PICK_SEED))[: args.n]
    rows = [r for run in args.runs for r in measure(run, x[idx], y[idx], args)]
    text = table(rows, args, "python " + shlex.join(sys.argv))
    print("\n" + text)
    if args.append:
        with open(args.append, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
