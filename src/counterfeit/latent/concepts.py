"""Concept vectors: the mean latent of the samples that the shipped evaluator assigns to a class.

An unconditional G has no class input, but its samples do fall into classes; averaging the z of many
confident samples of one class gives a point that decodes to a typical member (Radford et al. 2016,
section 6.3, averaged three hand-picked z per concept; we let the evaluator pick hundreds).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ConfigError
from ..evaluator import CLASS_NAMES, EvaluatorWeightsError, load_evaluator, predict, weights_path
from ..models import NO_PRIOR
from ..runs import conditional_class_names
from ..sample import from_uint8, make_noise, to_uint8
from .space import Latent, decode_batched

CONCEPT_N = 2000  # samples drawn to find each class's members
CONCEPT_SEED = 10_000  # their noise: a seed of its own, away from the small seeds users pick
CONFIDENCE = 0.9  # a sample counts for a class when the evaluator gives it at least this probability
MIN_MEMBERS = 16  # with fewer confident members, the most class-like samples fill up the count


@dataclass
class Concepts:
    """Per-class mean latents and how they were made."""

    vectors: torch.Tensor  # (C, z_dim)
    members: list[int]  # confident members behind each vector
    class_names: list[str]
    notes: dict[int, str]  # class index -> a line saying it had to fall back on less confident samples


def evaluator_for(run, need: str = "") -> nn.Module | None:
    """The shipped evaluator that fits a run's images (grey 28x28 with weights for its dataset), else None."""
    data = run.config.data
    if run.spec.data_kind != "images" or data.channels != 1 or data.resolution != 28:
        return None
    dataset = data.name if data.name in CLASS_NAMES else "fashion-mnist"
    if not weights_path(dataset).is_file():
        return None
    try:
        return load_evaluator(dataset).requires_grad_(False)
    except EvaluatorWeightsError:
        if need:
            raise
        return None


def class_names_for(run) -> list[str]:
    """Names usable in expressions: a conditional run's own classes, else the evaluator's classes for its dataset."""
    data = run.config.data
    if run.spec.conditional:
        return conditional_class_names(run)
    if data.name in CLASS_NAMES and data.channels == 1 and data.resolution == 28:
        return list(CLASS_NAMES[data.name])
    return []


def class_concepts(run, device="cpu", n: int = CONCEPT_N, seed: int = CONCEPT_SEED) -> Concepts:
    """Mean z per class of an unconditional run: of n seeded samples judged by the evaluator (ae/dae: of real images' codes)."""
    names = class_names_for(run)
    ev = evaluator_for(run, need="class concepts") if names else None
    if ev is None and names:
        raise ConfigError(f"class names need the evaluator for {run.config.data.name}, and its weights are missing; "
                          f"make them with: counterfeit evaluator train --dataset {run.config.data.name}")  # fmt: skip
    if ev is None:
        raise ConfigError(f"class names need a run on grey 28x28 {' or '.join(CLASS_NAMES)} (the evaluator's classes); "
                          f"{run.run_dir.name} has data '{run.config.data.name}': use seed lists like [12,40,77] instead")  # fmt: skip
    if run.config.model.name in NO_PRIOR:
        return _encoded_concepts(run, names, device, n)
    z = make_noise(n, run.G.z_dim, seed, device)  # (n, z_dim)
    images = to_uint8(decode_batched(run.G, Latent(z)), run.spec.pixel_range)  # (n, C, H, W)
    probs, _ = predict(ev, images)  # (n, C)
    top_p, top_k = probs.max(dim=1)  # (n,)
    vectors, members, notes = [], [], {}
    for k, name in enumerate(names):
        confident = ((top_k == k) & (top_p >= CONFIDENCE)).nonzero().squeeze(1)  # (m,)
        idx = confident
        if len(confident) < MIN_MEMBERS:
            idx = probs[:, k].topk(MIN_MEMBERS).indices  # (MIN_MEMBERS,)
            notes[k] = (f"only {len(confident)} of {n} samples are confidently '{name}'; "
                        f"its concept is the mean of the {MIN_MEMBERS} most '{name}'-like")  # fmt: skip
        vectors.append(z[idx.to(z.device)].mean(0))
        members.append(len(confident))
    return Concepts(torch.stack(vectors), members, names, notes)  # vectors (C, z_dim)


def _encoded_concepts(run, names: list[str], device, n: int) -> Concepts:
    """ae/dae: the mean encoder code of each class's real test images (their decoders never trained on z ~ N(0, I))."""
    from ..data import load_dataset
    from ..runs import load_slot

    data = run.config.data
    test = load_dataset(data.name, "test", data.resolution, data.channels, data.data_dir)
    encoder = load_slot(run, "D_ema", device)  # the encoder's average, paired with the decoder's (G_ema)
    x, labels = test.x[:n], test.labels[:n]  # (n, C, H, W) uint8, (n,): the test split's first n
    members = torch.bincount(labels, minlength=len(names))  # (C,)
    if members.min() == 0:  # a class missing from them: the whole split
        x, labels = test.x, test.labels
        members = torch.bincount(labels, minlength=len(names))
    with torch.inference_mode():
        z = torch.cat([encoder(from_uint8(b.to(device), run.spec.pixel_range))[0] for b in x.split(500)])  # (n, z_dim)
    vectors = torch.stack([z[labels.to(z.device) == k].mean(0) for k in range(len(names))])  # (C, z_dim)
    return Concepts(vectors, members.tolist(), names, {})
