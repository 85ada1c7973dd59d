"""Mode coverage, sample quality and mode-histogram reverse KL for the 2-D toy mixtures (PacGAN / VEEGAN protocol).

Following Srivastava et al. 2017 (VEEGAN) and Lin et al. 2018 (PacGAN), usually on 2,500 generated samples:

- every sample is assigned to its nearest mode centre (Euclidean distance; ties go to the lower mode index);
- a sample is *high quality* when its distance to that nearest centre is <= 3 * sigma;
- mode k is *covered* when at least ``min_count`` high-quality samples are assigned to it
  (``min_count = 1``, the default, counts a mode with any high-quality sample; a larger count is stricter);
- ``high_quality_pct = 100 * (#high-quality samples) / n``, where n counts every sample, non-finite ones included;
- ``reverse_kl = KL(p || q) = sum_k p_k * ln(p_k / q_k)`` in nats, where ``p_k = c_k / sum_j c_j`` is the normalised
  histogram ``c`` of high-quality samples over the M modes and ``q_k = 1 / M`` is the real, equal-weight mixture's
  mode distribution; terms with ``p_k = 0`` are 0 (0 ln 0 = 0), so ``reverse_kl = ln M - H(p)``, which lies in
  [0, ln M]: 0 when the high-quality samples are spread evenly over all modes, ln M when they all sit on one mode.
  It is ``None`` when there is no high-quality sample at all, since p is then undefined.

Samples with a NaN or infinite coordinate are never high quality; they still count in n and are reported as
``n_nonfinite``. For reference, a sample drawn from an isotropic 2-D Gaussian lies within 3 sigma of its centre with
probability 1 - exp(-9/2) ~= 0.9889, so perfect samples of ring8 or grid25 score about 98.9% high quality.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..data.toys import TOY_DATASETS, toy_axes, toy_modes

DEFAULT_SAMPLES = 2500  # the sample count of the VEEGAN and PacGAN tables
QUALITY_SIGMAS = 3.0  # a sample within this many sigma of its nearest mode is high quality


def toy_metrics(points: torch.Tensor | np.ndarray, dataset: str, min_count: int = 1) -> dict:
    """Mode coverage, % high-quality samples and mode-histogram reverse KL of points against a named toy dataset."""
    # ducks-cows modes are elongated (std 0.2 along the diagonal, 0.1 across it); toy_modes gives the long-axis std,
    # which we use as sigma unchanged: one disc per mode keeps the rule identical across datasets, at the cost of
    # being generous across the short axis, so perfect ducks-cows samples score above the isotropic 98.9%.
    centres, sigma = toy_modes(dataset)  # (M, 2) float32
    out = toy_metrics_from_centres(points, centres, sigma, min_count=min_count)
    out["dataset"] = dataset
    return out


def how_to_read(result: dict) -> str:
    """One line on what a toy_metrics result's numbers mean, with what real data would score (for eval and the report)."""
    m = result["modes_total"]
    need = "a sample" if result.get("min_count", 1) == 1 else f"{result['min_count']} samples"
    real = f", {real_high_quality_pct(result['dataset']):.1f}% for real data" if result.get("dataset") in TOY_DATASETS else ""
    kl = f"{math.log(m):.2f} (ln {m}) when all sit on one" if m > 1 else "0 too with one mode"
    return (
        f"modes: how many of the {m} have {need} within {QUALITY_SIGMAS:g} sigma; high quality: the share of samples that close to a "
        f"mode{real}; reverse KL: 0 when they fill every mode evenly, {kl}"
    )


def real_high_quality_pct(dataset: str) -> float:
    """The % high quality that the toy's real points score: 98.9 for round modes, more for ducks-cows' narrow ones."""
    long, short = toy_axes(dataset)
    # P(long^2 a^2 + short^2 b^2 <= 9) for a, b ~ N(0, 1): over b, the chance that a keeps within what 3 sigma leaves.
    k, steps = QUALITY_SIGMAS / short, 4000
    total = 0.0
    for i in range(steps):  # the midpoint rule over |b| <= k, beyond which no point is high quality
        b = k * (2 * (i + 0.5) / steps - 1)
        room = math.sqrt(max(QUALITY_SIGMAS**2 - (short * b) ** 2, 0.0)) / long
        total += math.exp(-b * b / 2) / math.sqrt(2 * math.pi) * math.erf(room / math.sqrt(2)) * (2 * k / steps)
    return 100.0 * total


def toy_metrics_from_centres(
    points: torch.Tensor | np.ndarray, centres: torch.Tensor | np.ndarray, sigma: float, min_count: int = 1
) -> dict:
    """The same metrics as toy_metrics for explicit (M, 2) mode centres and a per-mode standard deviation sigma."""
    x = _as_points(points, "points")  # (N, 2) float64, may hold NaN/inf
    c = _as_points(centres, "centres")  # (M, 2) float64
    if len(x) == 0:
        raise ValueError("points is empty; need at least one (N, 2) sample to score")
    if len(c) == 0 or not torch.isfinite(c).all():
        raise ValueError(f"centres must be a non-empty (M, 2) array of finite values, got shape {tuple(c.shape)}")
    sigma = _as_sigma(sigma)
    if isinstance(min_count, bool) or not isinstance(min_count, numbers.Integral) or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
    min_count = int(min_count)  # a numpy integer would not survive json.dumps

    finite = torch.isfinite(x).all(dim=1)  # (N,) bool
    # Distances are computed only for finite rows so that a NaN cannot leak into argmin.
    xf = x[finite]  # (F, 2)
    # The direct difference form, because the matmul shortcut loses precision for points very close to a centre.
    dist = torch.cdist(xf, c, compute_mode="donot_use_mm_for_euclid_dist")  # (F, M)
    nearest_dist, nearest = dist.min(dim=1)  # (F,) float64, (F,) int64
    good = nearest_dist <= QUALITY_SIGMAS * sigma  # (F,) bool
    hist = torch.bincount(nearest[good], minlength=len(c))  # (M,) int64

    n, m, n_good = len(x), len(c), int(good.sum())
    min_word = "sample lies" if min_count == 1 else "samples lie"
    return {
        "dataset": None,
        "n": n,
        "n_nonfinite": int((~finite).sum()),
        "modes_total": m,
        "modes_covered": int((hist >= min_count).sum()),
        "high_quality_pct": 100.0 * n_good / n,
        "reverse_kl": _reverse_kl_uniform(hist),
        "mode_histogram": [int(k) for k in hist.tolist()],
        "sigma": float(sigma),
        "min_count": min_count,
        "rule": f"a mode is covered when >= {min_count} {min_word} within 3 sigma of it; high quality = within 3 sigma of the nearest mode",
    }


def _as_points(a: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    # float64 so that distances to the 3-sigma boundary are not decided by float32 rounding.
    if isinstance(a, torch.Tensor):
        t = a.detach().to("cpu", torch.float64)
    else:
        try:
            t = torch.from_numpy(np.asarray(a, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{what} must be a numeric (N, 2) array, got {type(a).__name__}: {e}") from None
    if t.ndim != 2 or t.shape[1] != 2:
        raise ValueError(f"{what} must have shape (N, 2), got {tuple(t.shape)}")
    return t


def _as_sigma(sigma: float) -> float:
    # Accept numpy and 0-d torch scalars too, since sigma often comes out of a config or a tensor.
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        s = math.nan
    if isinstance(sigma, bool) or not (math.isfinite(s) and s > 0):
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
    return s


def _reverse_kl_uniform(hist: torch.Tensor) -> float | None:
    # KL(p || uniform) = sum_k p_k ln(p_k * M) over p_k > 0; empty modes drop out because 0 ln 0 = 0.
    total = int(hist.sum())
    if total == 0:
        return None  # no high-quality sample: the fake mode distribution is undefined
    p = hist[hist > 0].to(torch.float64) / total  # (K,) with K <= M
    return max(0.0, float((p * torch.log(p * len(hist))).sum()))  # clamp the -1e-16 that rounding gives a uniform p
