"""Anomaly detection: a model trained without one class scores test images; how well do its scores find that class?

Autoencoders score an image by how badly they reconstruct it; GANs by how little their D believes it is real.
The score is higher for "more anomalous", and AUROC says how often a random image of the left-out class
outscores a random normal one (1 = always, 0.5 = chance).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..config import ConfigError
from ..data import IDX_DATASETS, class_index, load_dataset
from ..fileio import check_writable
from ..sample import from_uint8, reconstruct

SCORE_BATCH = 500
SCORE_SEED = 0  # the fixed shuffle that mixes classes within each batch D scores


def auroc(scores: torch.Tensor, is_anomaly: torch.Tensor) -> float:
    """Area under the ROC curve of scores (N,) for binary labels (N,): P(anomaly outscores normal), ties counting half."""
    s, y = scores.double().flatten(), is_anomaly.bool().flatten()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both anomalous and normal images, got {n_pos} and {n_neg}")
    # Mann-Whitney U from the ranks, with tied scores given their average rank: exact, and free of the
    # thresholding (or the sigmoid that torchmetrics applies to scores outside [0, 1]) that can merge close scores.
    sorted_s, order = s.sort()
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    mean_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2  # (groups,) 1-based average rank of each tie group
    ranks = torch.empty_like(s)
    ranks[order] = mean_rank[inverse]  # (N,)
    u = float(ranks[y].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


@torch.inference_mode()
def reconstruction_scores(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor, pixel_range, batch_size: int = SCORE_BATCH):
    """Per-image mean squared reconstruction error (N,) in [0, 1] pixel units of uint8 images x (N, C, H, W)."""
    lo, hi = pixel_range
    errors = []
    for xb in x.split(batch_size):
        real = from_uint8(xb, pixel_range)  # (b, C, H, W)
        rec = reconstruct(encoder, decoder, real, batch_size)  # (b, C, H, W), a VAE decodes mu
        errors.append(((rec - real) / (hi - lo)).square().flatten(1).mean(1))  # (b,)
    return torch.cat(errors)  # (N,)


@torch.inference_mode()
def discriminator_scores(D: nn.Module, x: torch.Tensor, pixel_range, batch_size: int = SCORE_BATCH, seed: int = SCORE_SEED):
    """Per-image -logit (N,) of a GAN's D on uint8 images x (N, C, H, W): the less real D finds an image, the higher."""
    # DCGAN's D normalises with the statistics of the batch it is shown, even in eval mode; a folder is sorted by
    # class, so score in a fixed shuffled order, where every batch holds a mix like the training batches did.
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))  # (N,)
    scores = torch.empty(len(x))
    for idx in order.split(batch_size):
        scores[idx] = -D(from_uint8(x[idx.to(x.device)], pixel_range)).float().cpu()  # (b,)
    return scores  # (N,)


def evaluate_anomaly(run_dir: str | Path, device: str = "cpu") -> dict[str, Any]:
    """Score every test image of a run trained with --exclude-class; writes metrics.json ("anomaly") and metric-anomaly.jsonl."""
    from ..runs import check_training_folder, load_run, load_slot
    from .evaluate import checkpoint_provenance, write_results

    run = load_run(run_dir, device)
    cfg, spec = run.config, run.spec
    check_training_folder(run.run_dir, cfg)
    flag = "--exclude-class"
    # What no --exclude-class can mend is said first: "retrain with --exclude-class" would send a cdcgan or toy run's
    # user to a training command that refuses them.
    if spec.data_kind != "images":
        raise ConfigError(f"--anomaly scores images; 2-D toy runs have no classes to leave out (train on images: --model vae {flag} NAME)")
    if spec.family == "gan" and spec.conditional:
        raise ConfigError(
            f"--anomaly scores each image with an unconditional D; '{cfg.model.name}' is conditional, train --model dcgan {flag} NAME"
        )
    if spec.family == "gan" and cfg.model.pack != 1:
        also = "" if cfg.data.exclude_class is not None else f" and with {flag} NAME"  # or the retrain is refused in turn
        raise ConfigError(
            f"--anomaly scores each image with D on its own; a --pack {cfg.model.pack} D judges packs, train without --pack{also}"
        )
    if cfg.data.exclude_class is None:
        raise ConfigError(
            f"--anomaly needs a run trained with {flag} NAME (the class to call anomalous); {run.run_dir.name} saw every class"
        )
    if cfg.data.name in IDX_DATASETS:
        test = load_dataset(cfg.data.name, "test", cfg.data.resolution, cfg.data.channels, cfg.data.data_dir)
        reference = f"{cfg.data.name}:test"
    else:  # a folder has no held-out split: its normal images were seen in training
        test = load_dataset(cfg.data.name, "train", cfg.data.resolution, cfg.data.channels, cfg.data.data_dir)
        reference = f"the training folder {cfg.data.name} (all its images, the normal ones seen in training)"
    k = class_index(test, cfg.data.exclude_class, flag)
    is_anomaly = test.labels == k  # (N,) bool

    check_writable(run.run_dir)  # metrics.json goes there: a read-only run folder is found before the scoring
    slot = "D_ema" if spec.family == "autoencoder" else "D"
    scorer = load_slot(run, slot, device)
    x = test.x.to(device)
    if spec.family == "autoencoder":
        scores = reconstruction_scores(scorer, run.G, x, spec.pixel_range).cpu()
        score = "mean squared reconstruction error per pixel, pixels in [0, 1]"
        how = "per-image mean squared reconstruction error in [0, 1] pixels, EMA encoder (mu) and EMA decoder"
    else:
        scores = discriminator_scores(scorer, x, spec.pixel_range).cpu()
        score = "-logit of D"
        how = f"-logit of D, batches of {SCORE_BATCH} in a fixed shuffled order (D normalises with batch statistics)"
    kimg = run.state["cur_nimg"] / 1000
    result = {
        "auroc": round(auroc(scores, is_anomaly), 5),
        "mean_score_normal": round(float(scores[~is_anomaly].mean()), 6),
        "mean_score_anomalous": round(float(scores[is_anomaly].mean()), 6),
        "n_normal": int((~is_anomaly).sum()),
        "n_anomalous": int(is_anomaly.sum()),
        "provenance": {
            "scorer": how,
            "score": score,  # the mean scores' unit, short enough for the printed line
            "weights": slot if spec.family == "gan" else "D_ema (encoder) + G_ema (decoder)",
            "excluded_class": test.class_names[k],
            "excluded_index": k,
            "n_test": len(test),
            "reference": reference,
            "higher_score": "more anomalous",
            **checkpoint_provenance(run),
            "counterfeit": __version__,
        },
    }
    return write_results(run.run_dir, {"anomaly": result}, kimg, run.checkpoint.name)
