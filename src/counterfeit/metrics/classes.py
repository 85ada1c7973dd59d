"""Class coverage, duplicates and the mode-collapse alarm: is the forger still making every kind of item?"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .prdc import pairwise_distances

# A class counts as covered when it gets at least this fraction of its fair share of the samples,
# each predicted with at least this confidence: blobs that the judge cannot name don't count.
COVER_FRACTION_OF_SHARE = 0.2
COVER_CONFIDENCE = 0.5
COVERAGE_RULE = (f"a class is covered when >= {COVER_FRACTION_OF_SHARE:.0%} of its real share of the samples are predicted "
                 f"as it with probability >= {COVER_CONFIDENCE}")  # fmt: skip
# Two samples are duplicates when they are closer in feature space than this quantile of the
# nearest-neighbour distances among the same number of real images.
DUPLICATE_QUANTILE = 0.01


def class_coverage(
    probs: torch.Tensor, class_names: list[str], real_share: torch.Tensor | None = None, left_out: int | None = None
) -> dict:
    """Histogram, classes covered, KL to the real class distribution and an Inception-Score-style score, from probs (N, C).

    `left_out`: a class the generator never saw (--exclude-class), given no share of its own.
    """
    n, c = probs.shape
    real_share = torch.ones(c, dtype=torch.float64) if real_share is None else real_share.double().clone()  # (C,)
    if left_out is not None:
        real_share[left_out] = 0
    real_share = real_share / real_share.sum()
    # A class with no real share (one left out with --exclude-class) is no target: it can be neither covered nor
    # missing, and the fakes judged to be it are counted apart (off_target) instead of making the KL infinite.
    target = real_share > 0  # (C,) bool
    conf, pred = probs.max(dim=1)  # (N,), (N,)
    counts = torch.bincount(pred, minlength=c)  # (C,)
    sure = torch.bincount(pred[conf >= COVER_CONFIDENCE], minlength=c).double()  # (C,)
    covered = target & (sure >= COVER_FRACTION_OF_SHARE * real_share * n)  # (C,) bool
    on = counts.double() * target  # (C,)
    share = on / on.sum().clamp_min(1)  # (C,) the fakes' class distribution over the target classes
    nz = share > 0
    kl = float((share[nz] * (share[nz] / real_share[nz]).log()).sum())  # KL(fake || real); 0 log 0 = 0
    kl_max = float(-real_share[target].min().log())  # all the fakes on the rarest class
    if not bool(nz.any()):  # every fake judged a left-out class: no distribution to compare, and surely not a perfect 0
        kl = kl_max
    p = probs.double().clamp_min(1e-12)  # (N, C)
    p_y = p.mean(dim=0, keepdim=True)  # (1, C)
    score = math.exp(float((p * (p.log() - p_y.log())).sum(dim=1).mean()))  # exp E[KL(p(y|x) || p(y))], at most C
    out = {
        "n": n,
        "num_classes": int(target.sum()),
        "classes_covered": int(covered.sum()),
        "missing": [name for name, ok, want in zip(class_names, covered.tolist(), target.tolist()) if want and not ok],
        "histogram": dict(zip(class_names, counts.tolist())),
        "real_share": dict(zip(class_names, [round(float(s), 4) for s in real_share])),
        "kl": round(kl, 5),
        "kl_max": round(kl_max, 4),
        "class_score": round(score, 4),
        "mean_confidence": round(float(conf.double().mean()), 4),
        "rule": COVERAGE_RULE,
    }
    if not bool(target.all()):
        out["off_target"] = {"classes": [name for name, want in zip(class_names, target.tolist()) if not want],
                             "fraction": round(float(counts[~target].sum()) / n, 5)}  # fmt: skip
    return out


def duplicate_threshold(real_feats: torch.Tensor, n: int) -> float:
    """Feature distance below which two of n samples count as duplicates, calibrated on n real images."""
    x = real_feats[:n]  # (n, D)
    d = pairwise_distances(x, x)  # (n, n)
    d.fill_diagonal_(float("inf"))
    return float(torch.quantile(d.min(dim=1).values, DUPLICATE_QUANTILE))


def duplicate_rate(feats: torch.Tensor, threshold: float) -> float:
    """Fraction of samples (N, D) whose nearest other sample is closer than `threshold`."""
    d = pairwise_distances(feats, feats)  # (N, N)
    d.fill_diagonal_(float("inf"))
    return float((d.min(dim=1).values < threshold).float().mean())


# Below this share of toy samples near a mode, G has not found the data: a failing ring8 run stayed at 0-3 %, healthy
# grid25 runs were at 11-18 % when the alarm starts judging (200 kimg) and near 50 % at the end.
LOW_QUALITY_PCT = 5.0


@dataclass
class CollapseAlarm:
    """Watches coverage over training and says in plain words when the generator is collapsing.

    It fires when, after `warmup_kimg`, more than `max_missing` classes are missing or the duplicate
    rate exceeds `max_duplicates`; or, for classes, at any time when coverage falls by 2+ below the best
    seen so far. A toy's modes come and go while G first finds them: there every rule waits for the
    warm-up, and both rules allow modes // 8 where that is more (grid25: 3 may be missing and a fall
    of 3 is quiet; ring8: 2 and 1, as for classes). `since_kimg` is where the current bad streak
    began, counting evaluations before the warm-up.
    """

    warmup_kimg: float = 20.0
    max_missing: int = 2
    max_duplicates: float = 0.10
    unit: str = "classes"  # or "modes" for the 2-D toys
    best_covered: int = 0
    since_kimg: float | None = None
    lost: bool = False  # the last message said G is not finding the data (rather than collapsing)
    history: list[str] = field(default_factory=list)

    def update(self, kimg: float, covered: int, num_classes: int, dup_rate: float | None = None,
               quality_pct: float | None = None) -> str | None:  # fmt: skip
        """Feed one evaluation (toys: with the % of samples near a mode); returns the alarm message, or None when all is well."""
        armed = kimg >= self.warmup_kimg
        missing = num_classes - covered
        # grid25's count of covered modes flickers by 2 between evaluations of a healthy run: the toys allow num // 8.
        slack = num_classes // 8 if self.unit == "modes" else 0
        too_many = missing > max(self.max_missing, slack)
        dups = dup_rate is not None and dup_rate > self.max_duplicates
        lost = quality_pct is not None and quality_pct < LOW_QUALITY_PCT  # few samples near any mode: failing, not collapsing
        reasons = []
        if armed or self.unit == "classes":
            self.best_covered = max(self.best_covered, covered)
            if armed and too_many:
                reasons.append(f"{missing} of {num_classes} {self.unit} missing"
                               + (f", only {quality_pct:.0f}% of samples near any mode," if lost else ""))  # fmt: skip
            elif self.best_covered - covered > max(1, slack):
                reasons.append(f"coverage fell from {self.best_covered} to {covered} of {num_classes} {self.unit}")
            if armed and dups:
                reasons.append(f"{dup_rate:.0%} of samples are near-duplicates")
        if not reasons:
            # A streak may begin before the warm-up (10 kimg of near-duplicates): "since" then says so when it fires.
            early = not armed and (too_many or dups)
            self.since_kimg = (kimg if self.since_kimg is None else self.since_kimg) if early else None
            return None
        if self.since_kimg is None:
            self.since_kimg = kimg
        self.lost = lost and armed and too_many
        what = "is not finding the data" if self.lost else "is collapsing"
        msg = f"generator {what}: {' and '.join(reasons)} since {round(self.since_kimg, 1):g} kimg"
        self.history.append(msg)
        return msg
