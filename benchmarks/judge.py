"""Judge fake Fashion-MNIST images with the domain evaluator: class coverage, confidence and FID.

    python benchmarks/judge.py FAKES.npz [--reals fashion-mnist:test] [--n 10000] [--json OUT]
    python benchmarks/judge.py --self-check

FAKES.npz holds `images`, uint8 (N, H, W) or (N, H, W, 1). FID is measured in the evaluator's 128-d feature
space, not Inception's, so compare it only with other numbers from this judge, next to the printed baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

try:
    import counterfeit  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from counterfeit.evaluator import (
    Evaluator,
    EvaluatorWeightsError,
    frechet_distance,
    load_evaluator,
    load_split,
    predict,
    train_subset,
)

COVER_SHARE = 0.02  # a class needs at least this share of the samples ...
COVER_CONFIDENCE = 0.5  # ... predicted as it with at least this max-probability
CONFIDENT = 0.9
COVERAGE_RULE = f"a class is covered if >= {COVER_SHARE:.0%} of samples are predicted as it with max-prob >= {COVER_CONFIDENCE}"
DEFAULT_REALS = "fashion-mnist:test"


def class_stats(probs: torch.Tensor, class_names: list[str]) -> dict:
    """Histogram, coverage, KL to uniform and confidence of predicted classes, from probabilities (N, C)."""
    conf, pred = probs.max(dim=1)  # (N,), (N,)
    n, c = probs.shape
    counts = torch.bincount(pred, minlength=c)  # (C,)
    confident_counts = torch.bincount(pred[conf >= COVER_CONFIDENCE], minlength=c)  # (C,)
    covered = [name for name, k in zip(class_names, confident_counts.tolist()) if k >= COVER_SHARE * n]
    share = counts.double() / n  # (C,)
    # KL(p || uniform) = sum p log(p C); empty classes contribute 0 (0 log 0 = 0); at most log C when one class.
    kl = float((share[share > 0] * (share[share > 0] * c).log()).sum())
    return {
        "n": n,
        "histogram": dict(zip(class_names, counts.tolist())),
        "classes_covered": len(covered),
        "num_classes": c,
        "covered": covered,
        "coverage_rule": COVERAGE_RULE,
        "kl_vs_uniform": round(kl, 4),
        "kl_max": round(math.log(c), 4),
        "mean_max_prob": round(float(conf.double().mean()), 4),
        f"frac_max_prob_ge_{CONFIDENT}": round(float((conf >= CONFIDENT).double().mean()), 4),
    }


def load_reals(spec: str) -> torch.Tensor:
    """Real images (N, 1, 28, 28) uint8 named `dataset:split` (e.g. fashion-mnist:test) or an .npz path."""
    if spec.endswith(".npz"):
        return torch.from_numpy(load_npz(Path(spec)))
    dataset, _, split = spec.partition(":")
    return load_split(dataset, split or "test")[0]


def load_npz(path: Path, n: int | None = None) -> np.ndarray:
    """The first `n` uint8 images stored under `images` in an .npz file."""
    with np.load(path) as npz:
        if "images" not in npz:
            sys.exit(f"judge: {path} has no 'images' array (it has: {', '.join(npz.files) or 'nothing'})")
        images = npz["images"][:n]
    if images.dtype != np.uint8:
        sys.exit(f"judge: {path}['images'] is {images.dtype}; save uint8 pixels (0-255) as the sampler exports them")
    return images


def judge(ev: Evaluator, fakes: np.ndarray | torch.Tensor, real_feats: torch.Tensor) -> dict:
    """Every judge number for uint8 fake images against precomputed real features (M, D)."""
    probs, feats = predict(ev, fakes)  # (N, C), (N, D)
    report = class_stats(probs, ev.meta["class_names"])
    report["fid"] = round(frechet_distance(feats, real_feats), 4)
    return report


def baseline_fid(ev: Evaluator, reals: str, real_feats: torch.Tensor) -> float:
    """FID of 10k real train images against the reals: the number to read every other FID against."""
    if reals == DEFAULT_REALS and "fid_train10k_vs_test" in ev.meta:
        return ev.meta["fid_train10k_vs_test"]  # measured once, when the evaluator was trained
    train = load_split(ev.meta["dataset"], "train")[0]  # (N, 1, 28, 28) uint8
    return round(frechet_distance(predict(ev, train[train_subset(len(train))])[1], real_feats), 4)


def format_report(r: dict) -> str:
    """The report as aligned text lines."""
    lines = [
        f"images judged          {r['n']}  (from {r['fakes']}, reals: {r['reals']}, {r['reals_n']} images)",
        f"FID (evaluator feats)  {r['fid']:.3f}  (baseline: 10k real train vs reals = {r['fid_baseline']:.3f})",
        f"classes covered        {r['classes_covered']}/{r['num_classes']}  ({r['coverage_rule']})",
        f"KL(classes || uniform) {r['kl_vs_uniform']:.4f} nats  (0 = balanced, {r['kl_max']} = one class)",
        f"mean max-prob          {r['mean_max_prob']:.4f}",
        f"max-prob >= {CONFIDENT}        {r[f'frac_max_prob_ge_{CONFIDENT}']:.4f}",
        "predicted classes:",
    ]
    lines += [f"  {name:<12} {k:>6}  {k / r['n']:6.1%}" for name, k in r["histogram"].items()]
    lines.append(f"({r['seconds']:.1f} s)")
    return "\n".join(lines)


def self_check(ev: Evaluator, real_feats: torch.Tensor) -> bool:
    """Print FIDs of real train images, noise and a single class against the reals; True if they look sane."""
    train, labels = load_split(ev.meta["dataset"], "train")  # (N, 1, 28, 28) uint8, (N,)
    noise = torch.randint(0, 256, (10_000, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    one_class = train[labels == 1]  # every training trouser
    fid_train = frechet_distance(predict(ev, train[train_subset(len(train))])[1], real_feats)
    fid_noise = frechet_distance(predict(ev, noise)[1], real_feats)
    one = judge(ev, one_class, real_feats)
    print(f"FID(10k real train, test)        {fid_train:10.3f}")
    print(f"FID(10k uniform noise, test)     {fid_noise:10.3f}")
    print(f"FID({len(one_class)} train trousers, test) {one['fid']:10.3f}")
    covered = ", ".join(one["covered"])
    print(f"coverage of trousers only        {one['classes_covered']}/{one['num_classes']}  ({covered})")
    ok = fid_train < min(one["fid"], fid_noise) and one["classes_covered"] == 1
    print(f"self-check {'passed' if ok else 'FAILED'}: expect real train to have the smallest FID, and one class to cover 1 class")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("fakes", nargs="?", type=Path, help=".npz file with uint8 `images` (N, H, W[, 1])")
    p.add_argument("--reals", default=DEFAULT_REALS, help="dataset:split or an .npz path (default: %(default)s)")
    p.add_argument("--n", type=int, default=10_000, help="judge the first N fakes (default: %(default)s)")
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument("--self-check", action="store_true", help="check the judge on real images and noise")
    args = p.parse_args(argv)
    if args.fakes is None and not args.self_check:
        p.error("give FAKES.npz or --self-check")
    start = time.perf_counter()
    try:
        ev = load_evaluator()
        real_feats = predict(ev, load_reals(args.reals))[1]  # (M, D)
        if args.self_check:
            return 0 if self_check(ev, real_feats) else 1
        report = judge(ev, load_npz(args.fakes, args.n), real_feats)
    except (EvaluatorWeightsError, ValueError, TypeError) as e:  # bad weights or bad images: one line, no trace
        sys.exit(f"judge: {e}")
    report.update(
        fakes=str(args.fakes),
        reals=args.reals,
        reals_n=len(real_feats),
        fid_baseline=baseline_fid(ev, args.reals, real_feats),
        seconds=round(time.perf_counter() - start, 2),
    )
    print(format_report(report))
    if args.json:
        tmp = args.json.with_name(f".{args.json.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, args.json)  # atomic: a sweep reading results never sees half a file
    return 0


if __name__ == "__main__":
    sys.exit(main())
