"""Memorisation: are the fakes new, or near-copies of training images?

Each fake's distance to its nearest training image is compared with the same distance for held-out
test images, which the generator never saw: a forger that copies sits much closer to the training set
than unseen real images do. Distances are in pixel space (L2 over [0, 1] pixels), which is what
"a copy" means to a person looking at the pair.
"""

from __future__ import annotations

import torch

from .prdc import pairwise_distances

# A fake is a near-copy when it is closer to the training set than all but this fraction of test images.
NEAR_COPY_QUANTILE = 0.01


def nearest(queries: torch.Tensor, train: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance (N,) and index (N,) of each query's nearest training image; images are uint8 (N, C, H, W)."""
    q = queries.flatten(1).float().div_(255)  # (N, P)
    t = train.flatten(1).float().div_(255)  # (M, P)
    dists, idx = [], []
    for i in range(0, len(q), chunk):
        d = pairwise_distances(q[i : i + chunk], t)  # (chunk, M)
        m = d.min(dim=1)
        dists.append(m.values)
        idx.append(m.indices)
    return torch.cat(dists), torch.cat(idx)  # (N,), (N,)


def memorisation(fakes: torch.Tensor, train: torch.Tensor, test: torch.Tensor, pairs: int = 8) -> dict:
    """Nearest-training-image distances of fakes vs test images, the near-copy fraction and the closest pairs."""
    d_fake, i_fake = nearest(fakes, train)  # (N,), (N,)
    d_test, _ = nearest(test, train)  # (M,)
    threshold = float(torch.quantile(d_test, NEAR_COPY_QUANTILE))
    order = d_fake.argsort()[:pairs]  # the closest fakes first
    near = float((d_fake < threshold).float().mean())
    return {
        "n_fakes": len(fakes),
        "n_test": len(test),
        "n_train": len(train),
        "fake_to_train_median": round(float(d_fake.median()), 4),
        "test_to_train_median": round(float(d_test.median()), 4),
        "fake_to_train_min": round(float(d_fake.min()), 4),
        "near_copy_threshold": round(threshold, 4),
        "near_copy_fraction": round(near, 5),
        "near_copy_expected": NEAR_COPY_QUANTILE,
        "rule": f"a fake is a near-copy when its pixel L2 distance to the nearest training image is below the "
        f"{NEAR_COPY_QUANTILE:.0%} quantile of the same distance for test images (expected fraction about {NEAR_COPY_QUANTILE:.0%})",
        "closest_pairs": [{"fake": int(i), "train": int(i_fake[i]), "distance": round(float(d_fake[i]), 4)} for i in order],
    }
