"""Evaluate fakes against reals: every metric from one feature pass, each score saved with its provenance."""

from __future__ import annotations

import datetime
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..config import ConfigError
from ..data import IDX_DATASETS, TOY_DATASETS, class_index, load_dataset, toy_modes
from ..export import read_npz_images
from ..fileio import append_text, atomic_write_text, check_writable, sha256_file
from .classes import class_coverage, duplicate_rate, duplicate_threshold
from .features import BackboneUnavailable, Features, as_nhwc_or_nchw_uint8, extract
from .fid import fid, kid, kid_subset_size, small_n_warning
from .memorisation import memorisation
from .prdc import prdc
from .toy import DEFAULT_SAMPLES as TOY_SAMPLES
from .toy import toy_metrics_from_centres

log = logging.getLogger("counterfeit")

IMAGE_METRICS = ("fid", "kid", "pr", "coverage", "memorisation")
DEFAULT_METRICS = ("fid", "kid", "pr", "coverage")
MEMORISATION_N = 2000
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # Binkowski et al. 2018 and torch-fidelity's defaults
# The fewest images of each side a metric is defined for: a covariance needs 2, the k-NN balls of pr (k = 3 and 5) 6.
MIN_IMAGES = {"fid": 2, "kid": 2, "pr": 6, "coverage": 2, "memorisation": 1}


def parse_metrics(text: str | None, images: bool = True, classes: str | None = None) -> list[str]:
    """Validate a comma-separated metric list ('fid,kid,pr,coverage,memorisation' or 'toy').

    `classes` names the idx dataset whose classes the judge counts; None (a folder, an .npz) leaves class coverage
    out of the default list and refuses it when asked for, since the judge's classes would say nothing about those images.
    """
    if not images:
        if text and text.strip() != "toy":
            raise ConfigError("2-D toy runs are scored by modes covered, % high quality and reverse KL; drop --metrics")
        return ["toy"]
    names = list(DEFAULT_METRICS) if text is None else [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ConfigError(f"--metrics is empty; name some of {','.join(IMAGE_METRICS)}, or leave it out for {','.join(DEFAULT_METRICS)}")
    bad = [n for n in names if n not in IMAGE_METRICS]
    if bad:
        raise ConfigError(f"unknown metric '{bad[0]}' in --metrics; choose from {','.join(IMAGE_METRICS)}")
    if classes is None and "coverage" in names:
        if text:
            raise ConfigError("--metrics coverage counts Fashion-MNIST or MNIST classes, and the reference images are neither "
                              "(a folder or an .npz); drop coverage from --metrics")  # fmt: skip
        names.remove("coverage")
    return names


def load_image_source(
    spec: str, n: int | None = None, resolution: int | None = None, channels: int | None = None
) -> tuple[torch.Tensor, dict]:
    """uint8 images (N, C, H, W) and a description from 'dataset:split', an .npz with `images`, or an image folder."""
    name, _, split = spec.partition(":")
    if name in IDX_DATASETS:
        ds = load_dataset(name, split or "test")
        x, desc = ds.x, {"source": f"{name}:{split or 'test'}", "class_labels": ds.labels}
    elif spec.endswith(".npz"):
        try:
            x = as_nhwc_or_nchw_uint8(read_npz_images(spec))  # (N, C, H, W)
        except ValueError as e:
            raise ConfigError(f"{spec}: {e}; save uint8 pixels as `counterfeit sample --format npz` does") from None
        desc = {"source": spec}
    elif Path(spec).is_dir():
        res, ch = resolution or 28, channels or 1
        ds = load_dataset(spec, "train", res, ch)
        x, desc = ds.x, {"source": f"folder {spec}"}
        shape = lambda w, h, c: f"{w}x{h} {'grey' if c == 1 else 'colour'}"  # noqa: E731
        other = sorted(tuple(s) for s in ds.info.get("image_shapes", []) if tuple(s) != (res, res, ch))
        if other:  # scoring needs one shape: say so, or a 64x64 colour set passes for a 28x28 grey one
            seen = ", ".join(shape(*s) for s in other[:3]) + (", ..." if len(other) > 3 else "")
            desc["converted"] = f"from {seen} to {shape(res, res, ch)} (resized, centre-cropped)"
            log.warning(f"{spec} holds {seen} images; they are scored as {shape(res, res, ch)}, resized and centre-cropped, "
                        f"to match the reference")  # fmt: skip
    else:
        raise ConfigError(f"cannot read images from '{spec}'; pass fashion-mnist:test, mnist:test, an .npz or an image folder")
    if n is not None and len(x) > n:
        x = x[:n]
        desc = {**desc, "class_labels": desc["class_labels"][:n]} if "class_labels" in desc else desc
    return x, desc


def evaluate_images(
    fakes: torch.Tensor,
    reals: torch.Tensor,
    metrics: list[str],
    backbone: str = "evaluator",
    dataset: str = "fashion-mnist",
    real_labels: torch.Tensor | None = None,
    train_images: torch.Tensor | None = None,
    provenance: dict | None = None,
    left_out: int | None = None,
) -> dict[str, dict]:
    """Score uint8 fakes (N, C, H, W) against reals (M, C, H, W); one dict per metric, each with a provenance block.

    `left_out`: a class the generator never saw (--exclude-class); coverage asks only for the others.
    """
    for m in metrics:
        if min(len(fakes), len(reals)) < MIN_IMAGES.get(m, 1):
            raise ConfigError(
                f"--metrics {m} needs at least {MIN_IMAGES[m]} fakes and {MIN_IMAGES[m]} reference images, got {len(fakes)} and "
                f"{len(reals)}; give more (10,000 each is the standard), or drop {m}"
            )
    t0 = time.time()
    need_feats = any(m in metrics for m in ("fid", "kid", "pr", "coverage"))
    out: dict[str, dict] = {}
    if need_feats:
        ff, fr = extract(fakes, backbone, dataset), extract(reals, backbone, dataset)
        prov = {**(provenance or {}), **ff.provenance, "n_fakes": len(fakes), "n_reals": len(reals), "counterfeit": __version__}
        warn = small_n_warning(len(fakes), len(reals), ff.feats.shape[1])
        if "fid" in metrics:
            out["fid"] = {"fid": round(fid(ff.feats, fr.feats), 4), "provenance": {**prov, **({"warning": warn} if warn else {})}}
        if "kid" in metrics:
            mean, std = kid(ff.feats, fr.feats, KID_SUBSETS, KID_SUBSET_SIZE)
            size = kid_subset_size(len(fakes), len(reals), KID_SUBSET_SIZE)
            extra = {"kernel": "cubic polynomial", "subsets": KID_SUBSETS, "subset_size": size}
            if size < KID_SUBSET_SIZE:  # every subset then holds (nearly) all the fakes: the spread says little
                extra["warning"] = (f"KID from subsets of {size} (the standard is {KID_SUBSET_SIZE:,}); its std over subsets "
                                    f"understates the uncertainty")  # fmt: skip
            out["kid"] = {"kid": round(mean, 6), "kid_std": round(std, 6), "provenance": {**prov, **extra}}
        if "pr" in metrics:
            scores = {k: round(v, 4) if isinstance(v, float) else v for k, v in prdc(ff.feats, fr.feats).items()}
            extra = {}
            if len(fakes) != len(reals):  # the k-NN balls shrink as a side grows: only equal sizes compare across evaluations
                extra["warning"] = (f"precision/recall/density/k-NN coverage from {len(fakes)} fakes against {len(reals)} reals; "
                                    f"they move with either count, so compare only scores with the same counts (10,000 each is usual)")  # fmt: skip
            out["pr"] = {**scores, "provenance": {**prov, **extra}}
        if "coverage" in metrics:
            out["coverage"] = _coverage(ff, fr, real_labels, prov, left_out)
    if "memorisation" in metrics:
        if train_images is None:
            raise ConfigError(
                "the memorisation check needs the training images; evaluate a run, or pass --reals DATASET:test with an idx dataset"
            )
        # Pixel-space nearest neighbours over the whole training set are the costly part: 2,000 of each
        # side pin the near-copy fraction to within about a percent in a few seconds.
        m = memorisation(fakes[:MEMORISATION_N], train_images, reals[:MEMORISATION_N])
        used = {"n_fakes": min(len(fakes), MEMORISATION_N), "n_reals": min(len(reals), MEMORISATION_N), "n_train": len(train_images)}
        out["memorisation"] = {
            **m,
            "provenance": {**(provenance or {}), **used, "space": "pixels in [0, 1], L2", "counterfeit": __version__},
        }
    seconds = round(time.time() - t0, 2)  # once: the same value marks one evaluation's metrics (the report groups by it)
    for v in out.values():
        v["provenance"]["seconds"] = seconds
    return out


def _coverage(ff: Features, fr: Features, real_labels: torch.Tensor | None, prov: dict, left_out: int | None = None) -> dict:
    if ff.probs is None:
        raise BackboneUnavailable("class coverage needs a classifier backbone; use --backbone evaluator")
    c = ff.probs.shape[1]
    real_counts = torch.bincount(real_labels, minlength=c) if real_labels is not None else torch.bincount(fr.probs.argmax(1), minlength=c)
    cov = class_coverage(ff.probs, ff.class_names, real_counts, left_out)  # as the training-time monitor asks
    n = min(len(ff.feats), len(fr.feats))
    cov["real_histogram"] = dict(zip(ff.class_names, real_counts.tolist()))
    cov["duplicate_rate"] = round(duplicate_rate(ff.feats[:n], duplicate_threshold(fr.feats, n)), 5)
    cov["duplicate_rule"] = f"share of {n} fakes whose nearest other fake is closer than 99% of {n} reals' nearest neighbours"
    return {**cov, "provenance": prov}


def evaluate_points(points: torch.Tensor, dataset: str) -> dict[str, dict]:
    """Toy metrics (PacGAN/VEEGAN protocol) of 2-D points (N, 2) for a toy dataset."""
    centres, sigma = toy_modes(dataset)
    r = toy_metrics_from_centres(points, centres, sigma)
    return {
        "toy": {
            **r,
            "dataset": dataset,
            "provenance": {"dataset": dataset, "protocol": "PacGAN/VEEGAN", "n_fakes": len(points), "counterfeit": __version__},
        }
    }


def evaluate_run(
    run_dir: str | Path, n: int | None = None, metrics: str | None = None, seed: int = 0, backbone: str | None = None
) -> dict[str, Any]:
    """Evaluate a run's newest EMA generator; writes metrics.json and appends metric-<name>.jsonl in the run folder."""
    scored = score_run(run_dir, n, metrics, seed, backbone)
    return write_results(scored.run_dir, scored.results, scored.kimg, scored.checkpoint)


@dataclass(frozen=True)
class RunScores:
    """The scores of one evaluation of a run's newest checkpoint, each with its provenance."""

    run_dir: Path
    results: dict[str, dict]  # metric name -> scores and provenance
    kimg: float  # the checkpoint's progress
    checkpoint: str  # its file name


def score_run(
    run_dir: str | Path,
    n: int | None = None,
    metrics: str | None = None,
    seed: int = 0,
    backbone: str | None = None,
    drs: float | None = None,
) -> RunScores:
    """Score a run's newest EMA generator without writing metrics.json (evaluate_run writes it); n None: the protocol's count.

    With `drs` (a percentile) the fakes are those discriminator rejection sampling keeps, as `sample --drs` draws them,
    and each metric is stored under its name + `-drs<PCT>`, beside (not over) the plain score.
    """
    from ..export import drs_samples
    from ..runs import check_training_folder, load_run
    from ..sample import default_labels, generate

    run = load_run(run_dir)
    cfg, run_dir = run.config, run.run_dir
    check_training_folder(run_dir, cfg)  # its reals: "unknown dataset" would send the user looking for an option
    check_writable(run_dir)  # metrics.json goes there: a read-only run folder is found before minutes of scoring
    kimg = run.state["cur_nimg"] / 1000
    base = {"generator": "G_ema", **checkpoint_provenance(run), "seed": seed}
    kept: list[float] = []  # the share of candidates DRS kept

    def draw(n_fakes: int, pixel_range) -> torch.Tensor:
        if drs is None:
            return generate(run.G, pixel_range, n_fakes, seed)
        x, acceptance = drs_samples(run, n_fakes, seed, drs)
        kept.append(acceptance)
        return x

    if run.spec.data_kind == "points":
        if cfg.data.name not in TOY_DATASETS:
            raise ConfigError(f"{run_dir} trained on points but '{cfg.data.name}' is not a known toy dataset")
        parse_metrics(metrics, images=False)
        n = n or TOY_SAMPLES  # mode coverage counts modes with any sample: more samples would cover more
        results = evaluate_points(draw(n, None), cfg.data.name)  # (n, 2)
        for v in results.values():
            v["provenance"].update(base)
    else:
        names = parse_metrics(metrics, classes=cfg.data.name if cfg.data.name in IDX_DATASETS else None)
        n = n or 10_000
        fakes = draw(n, run.spec.pixel_range)  # (n, C, H, W) uint8
        bb, dataset = _pick_backbone(cfg, backbone)
        if cfg.data.name in IDX_DATASETS:
            test = load_dataset(cfg.data.name, "test", cfg.data.resolution, cfg.data.channels, cfg.data.data_dir)
            reals, labels, ref = test.x, test.labels, f"{cfg.data.name}:test ({len(test.x)} images)"
            train_x = (
                load_dataset(cfg.data.name, "train", cfg.data.resolution, cfg.data.channels, cfg.data.data_dir).x
                if "memorisation" in names
                else None
            )
        else:
            ds = load_dataset(cfg.data.name, "train", cfg.data.resolution, cfg.data.channels, cfg.data.data_dir)
            reals, labels, ref, train_x = ds.x, None, f"the training folder {cfg.data.name} ({len(ds.x)} images)", ds.x
        left_out = None
        if cfg.data.exclude_class is not None and cfg.data.name in IDX_DATASETS:
            left_out = class_index(test, cfg.data.exclude_class)
            base = {**base, "excluded_class": test.class_names[left_out]}
        results = evaluate_images(fakes, reals, names, bb, dataset, labels, train_x, {**base, "reference": ref}, left_out)
        if run.spec.conditional and "coverage" in results and cfg.data.name in IDX_DATASETS:
            # Asked for class k, does the judge see class k? Balanced labels, as generate() drew them.
            asked = default_labels(run.G, n)  # (n,)
            seen = extract(fakes, bb, dataset).probs.argmax(1)  # (n,), from the feature cache
            results["coverage"]["label_accuracy"] = round(float((seen == asked).float().mean()), 4)
        if "memorisation" in results:
            results["memorisation"]["pairs_png"] = _save_pairs(run_dir, fakes, train_x, results["memorisation"]["closest_pairs"])
    if drs is not None:
        for v in results.values():
            v["provenance"].update({"drs_percentile": drs, "drs_acceptance": round(kept[0], 5)})
        results = {f"{name}-drs{drs:g}": v for name, v in results.items()}
    return RunScores(run_dir, results, kimg, run.checkpoint.name)


def _pick_backbone(cfg, backbone: str | None) -> tuple[str, str]:
    grey28 = cfg.data.channels == 1 and cfg.data.resolution == 28
    dataset = cfg.data.name if cfg.data.name in IDX_DATASETS else "fashion-mnist"
    if backbone:
        return backbone, dataset
    return ("evaluator" if grey28 else "inception"), dataset


def _save_pairs(run_dir: Path, fakes: torch.Tensor, train: torch.Tensor, pairs: list[dict]) -> str:
    from ..sample import save_grid

    if not pairs:
        return ""
    tiles = torch.stack([t for p in pairs for t in (fakes[p["fake"]], train[p["train"]])])  # (2P, C, H, W): fake, its nearest real
    rel = Path("eval") / "nearest-pairs.png"
    (run_dir / "eval").mkdir(exist_ok=True)
    save_grid(tiles, run_dir / rel, nrow=2, scale=3)
    return str(rel)


def checkpoint_provenance(run) -> dict[str, Any]:
    """The checkpoint's name, sha256 and kimg, and the torch that computed a score: what tells two scores of 'the same' run apart."""
    return {"checkpoint": run.checkpoint.name, "checkpoint_sha256": sha256_file(run.checkpoint), "kimg": run.state["cur_nimg"] / 1000,
            "torch": torch.__version__}  # fmt: skip


def write_results(run_dir: Path, results: dict[str, dict], kimg: float, checkpoint: str) -> dict[str, Any]:
    """Write metrics.json (the latest score of each metric) and append one line per metric to metric-<name>.jsonl.

    metrics.json keeps the metrics it already holds for the same checkpoint (FID beside --anomaly's AUROC, or a
    memorisation check beside an earlier FID); a newer checkpoint starts it afresh, so no score outlives its weights.
    """
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    doc = {"run": run_dir.name, "kimg": kimg, "checkpoint": checkpoint, "created": now, "metrics": results}
    try:
        old = json.loads((run_dir / "metrics.json").read_bytes())
        if isinstance(old, dict) and old.get("checkpoint") == checkpoint and isinstance(old.get("metrics"), dict):
            doc["metrics"] = {**old["metrics"], **results}
    except (OSError, ValueError):  # none yet, or unreadable: this evaluation starts it afresh
        pass
    atomic_write_text(run_dir / "metrics.json", json.dumps(doc, indent=2) + "\n")
    for name, r in results.items():
        flat = {k: v for k, v in r.items() if isinstance(v, (int, float, str)) and k not in ("rule",)}
        # Each line keeps how it was measured (fakes, seed, reference, backbone, any warning): the history mixes settings.
        line = json.dumps({"kimg": kimg, "created": now, **flat, "provenance": r.get("provenance", {})}) + "\n"
        append_text(run_dir / f"metric-{name}.jsonl", line)
    return doc
