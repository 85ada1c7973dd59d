"""Feature backbones for the metrics: the shipped domain evaluator, and Inception-v3 when its weights are on disk.

Every feature set carries its provenance (backbone, weights sha256, preprocessing) so a score can always
say what it was measured with.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..evaluator import CLASS_NAMES, load_evaluator, predict
from ..fileio import sha256_file

# torch-fidelity's FID Inception weights, which torchmetrics uses too; the name is fixed by that library.
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


class BackboneUnavailable(RuntimeError):
    """A feature backbone cannot be used here; str() is one line with the fix."""


@dataclass
class Features:
    """Features (N, D) and, for a classifier backbone, class probabilities (N, C) of one image set."""

    feats: torch.Tensor  # (N, D) float32
    probs: torch.Tensor | None  # (N, C) float32, or None when the backbone has no classes
    provenance: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None


def as_nhwc_or_nchw_uint8(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images (N, H, W), (N, H, W, C) or (N, C, H, W) as a (N, C, H, W) uint8 tensor."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got {x.dtype}")
    if x.ndim == 3:
        x = x.unsqueeze(1)  # (N, 1, H, W)
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.permute(0, 3, 1, 2)  # (N, C, H, W)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W) with 1 or 3 channels, got {tuple(x.shape)}")
    return x.contiguous()


def evaluator_features(images: np.ndarray | torch.Tensor, dataset: str = "fashion-mnist") -> Features:
    """Penultimate features and class probabilities of the shipped `dataset` evaluator (grey 28x28)."""
    x = as_nhwc_or_nchw_uint8(images)  # (N, C, H, W)
    preprocessing = "uint8 / 255"
    if x.shape[1] == 3:
        x = _to_grey(x)  # (N, 1, H, W)
        preprocessing = "RGB to grey (ITU-R 601 luma), " + preprocessing
    if tuple(x.shape[2:]) != (28, 28):
        preprocessing = f"area resize {x.shape[2]}x{x.shape[3]} to 28x28, " + preprocessing
        x = F.interpolate(x.float(), size=(28, 28), mode="area").round().clamp(0, 255).to(torch.uint8)  # (N, 1, 28, 28)
    ev = load_evaluator(dataset)
    probs, feats = predict(ev, x)  # (N, C), (N, D)
    meta = ev.meta
    provenance = {
        "backbone": f"counterfeit {dataset} evaluator",
        "weights": meta["weights"],
        "weights_sha256": meta["sha256"],
        "backbone_test_accuracy": meta["test_accuracy"],
        "feature_dim": int(feats.shape[1]),
        "preprocessing": preprocessing,
    }
    return Features(feats.float(), probs.float(), provenance, list(CLASS_NAMES[dataset]))


def _to_grey(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)  # (N, 1, H, W)


def inception_weights_path() -> Path:
    """Where torch-fidelity (and torchmetrics through it) keeps the FID Inception-v3 weights."""
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    return hub / INCEPTION_FILE


def inception_features(images: np.ndarray | torch.Tensor, batch_size: int = 100) -> Features:
    """2048-d pool features of the FID Inception-v3 (torch-fidelity's port), only from weights already on disk."""
    path = inception_weights_path()
    how = (
        f'on a machine with internet run: pip install torch-fidelity && python -c "import torch_fidelity; '
        f"torch_fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3('inception-v3-compat', ['2048'])\" "
        f"and copy {path.name} to {path.parent}; or use the offline backbone: --backbone evaluator"
    )
    if not path.is_file():
        raise BackboneUnavailable(f"Inception-v3 weights are not on this machine ({path} not found); {how}")
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise BackboneUnavailable(f"Inception-v3 features need the torch-fidelity package; {how}") from None
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)).eval()
    x = as_nhwc_or_nchw_uint8(images)  # (N, C, H, W)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # (N, 3, H, W): Inception wants colour
    with torch.inference_mode():
        feats = torch.cat([net(xb)[0] for xb in x.split(batch_size)])  # (N, 2048)
    provenance = {
        "backbone": "Inception-v3 (torch-fidelity inception-v3-compat, pool3)",
        "weights": path.name,
        "weights_sha256": sha256_file(path),
        "feature_dim": 2048,
        "preprocessing": "uint8, grey repeated to RGB, bilinear resize to 299x299 inside the network",
    }
    return Features(feats.float(), None, provenance)


BACKBONES = ("evaluator", "inception")


_CACHE: dict[tuple, Features] = {}
_CACHE_SIZE = 4


def extract(images: np.ndarray | torch.Tensor, backbone: str = "evaluator", dataset: str = "fashion-mnist") -> Features:
    """Features of uint8 images with the named backbone ('evaluator' or 'inception'); repeated sets come from a cache."""
    if backbone not in BACKBONES:
        raise BackboneUnavailable(f"unknown backbone '{backbone}'; choose one of {', '.join(BACKBONES)}")
    x = as_nhwc_or_nchw_uint8(images)  # (N, C, H, W)
    # The reference set (say the 10,000 test images) is scored again and again; hashing 8 MB is ~10 ms.
    key = (backbone, dataset, tuple(x.shape), hashlib.blake2b(x.numpy().tobytes(), digest_size=16).hexdigest())
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = evaluator_features(x, dataset) if backbone == "evaluator" else inception_features(x)
    return _CACHE[key]
