"""Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020) on feature sets.

Neither is in torchmetrics; both are a few lines on top of k-nearest-neighbour radii, written here in
torch with the same definitions as the authors' reference code (`prdc` by clovaai).
"""

from __future__ import annotations

import torch

CHUNK = 2048  # rows of distances computed at once: bounds memory (2048 x 10,000 float32 = 80 MB)


def _distance_chunks(a: torch.Tensor, b: torch.Tensor):
    # The radii and the real-to-fake distances come from this one path, row by row alike: a fake that copies a real
    # then lies at exactly the radius it ties with (not a rounding either side), so the strict tests in prdc hold.
    a, b = a.float(), b.float()
    for i in range(0, len(a), CHUNK):
        yield torch.cdist(a[i : i + CHUNK], b)  # (chunk, M)


def pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (N, M) between rows of a (N, D) and b (M, D), in chunks to bound memory."""
    return torch.cat(list(_distance_chunks(a, b)))  # (N, M)


def knn_radii(x: torch.Tensor, ks: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """For each k: distance (N,) from each row of x (N, D) to its k-th nearest other row."""
    kmax = max(ks)
    if len(x) <= kmax:
        raise ValueError(f"k-NN radii need more than k={kmax} points, got {len(x)}")
    # topk of a chunk is far cheaper than kthvalue over the full (N, N) matrix; the self-distance 0 comes first.
    near = torch.cat([d.topk(kmax + 1, dim=1, largest=False).values for d in _distance_chunks(x, x)])  # (N, kmax+1)
    return {k: near[:, k] for k in ks}


def prdc(fake: torch.Tensor, real: torch.Tensor, k_pr: int = 3, k_dc: int = 5) -> dict[str, float]:
    """Precision and recall (k=3) and density and coverage (k=5) of fake (N, D) against real (M, D) features."""
    real_r = knn_radii(real, (k_pr, k_dc))  # k -> (M,)
    fake_r = knn_radii(fake, (k_pr,))[k_pr]  # (N,)
    d_fr = pairwise_distances(real, fake).T  # (N, M); row i of real-to-fake is computed as row i of real_r's distances
    # Precision: fakes inside some real k-NN ball; recall: reals inside some fake k-NN ball. Closed balls (<=) for these
    # two, as Kynkäänniemi et al.'s code; open balls (<) for density and coverage, as Naeem et al.'s (clovaai prdc), so a
    # real set scored against itself has density exactly 1 (a real lies strictly inside its own ball and those of the
    # reals it is among the k-1 nearest of).
    precision = (d_fr <= real_r[k_pr][None, :]).any(dim=1).float().mean()
    recall = (d_fr <= fake_r[:, None]).any(dim=0).float().mean()
    inside = d_fr < real_r[k_dc][None, :]  # (N, M)
    density = inside.sum(dim=1).float().mean() / k_dc
    coverage = (d_fr.min(dim=0).values < real_r[k_dc]).float().mean()  # reals with a fake inside their ball
    return {"precision": float(precision), "recall": float(recall), "density": float(density), "coverage": float(coverage),
            "k_precision_recall": k_pr, "k_density_coverage": k_dc}  # fmt: skip
