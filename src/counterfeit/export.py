"""Write samples of a trained run to disk: a grid PNG, a folder of PNGs, or an .npz."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import ConfigError
from .data.load import did_you_mean, find_class
from .fileio import atomic_write_bytes, write_many
from .metrics.toy import DEFAULT_SAMPLES as TOY_SAMPLES
from .runs import LoadedRun, conditional_class_names, load_run, load_slot
from .sample import generate, grid_by_class, png_bytes, rejection_sample, save_grid, scatter_image, scatter_lim, to_pil, to_uint8

log = logging.getLogger("counterfeit")


def resolve_class(run, name_or_index: str) -> int:
    """The class index of a conditional run for a class name (case-insensitive) or an index."""
    names = conditional_class_names(run)
    if not run.spec.conditional:
        raise ConfigError(f"--class needs a conditional run; {run.run_dir.name} is '{run.config.model.name}' (train with --model cdcgan)")
    return pick_class(names, name_or_index)


def pick_class(names: list[str], name_or_index: str) -> int:
    """The index of a class among `names`, by name (case-insensitive) or index; a one-line ConfigError otherwise."""
    found = find_class(names, name_or_index)
    if found is not None:
        return found
    text = str(name_or_index).strip()
    raise ConfigError(f"unknown class '{text}'{did_you_mean(text, names)}; choose a name or index: "
                      f"{', '.join(f'{i}={n}' for i, n in enumerate(names))}")  # fmt: skip


def sample_labels(run, n: int, class_name: str | None = None) -> torch.Tensor | None:
    """Labels (n,) for sampling a run: one class when named, else sample i gets class i % C; None when unconditional.

    Image i of a seed is then the same in a grid, an npz, a folder, `export` and `eval`, whatever n (a grid only
    arranges it: grid_by_class). An unconditional run given a class name gets a one-line error.
    """
    if not run.spec.conditional:
        if class_name is not None:
            resolve_class(run, class_name)  # raises the one-line error
        return None
    if class_name is not None:
        return torch.full((n,), resolve_class(run, class_name), dtype=torch.int64)  # (n,)
    return torch.arange(n) % run.config.model.num_classes  # (n,) balanced


def default_count(points: bool) -> int:
    """How many samples `counterfeit sample` and the studio draw unless told: 2,500 points for a 2-D toy, else 64 images."""
    return TOY_SAMPLES if points else 64  # 64 points hardly show a ring of 8 modes; the PacGAN count shows every one


def grid_tiles(x: torch.Tensor, labels: torch.Tensor | None, class_name: str | None) -> tuple[torch.Tensor, int | None]:
    """(tiles, columns or None) for a sample grid: balanced classes one per row (grid_by_class), else x as it is."""
    return grid_by_class(x, labels) if labels is not None and class_name is None else (x, None)


def toy_scatter(run: LoadedRun, x: torch.Tensor, seed: int, note: str = "") -> Image.Image:
    """A toy run's (n, 2) points of `seed` drawn as training draws them: over its grey reals, on its scale, axes named."""
    from .data.toys import load_toy

    toy = load_toy(run.config.data.name)  # training's data (seed 0): the same scale and grey reals as its plots
    title = f"{len(x)} {'fake' if len(x) == 1 else 'fakes'}, seed {seed}{note}"
    return scatter_image(x, reals=toy.x[:2000], lim=scatter_lim(toy.x), title=title, axes=toy.info.get("axes"))


def write_samples(run_dir: str | Path, n: int, seed: int, fmt: str = "grid", out: str | Path | None = None, device: str = "cpu",
                  class_name: str | None = None, drs: float | None = None) -> Path:  # fmt: skip
    """Sample n items with a seed from a run's EMA generator and write them as `grid`, `folder` or `npz`.

    Conditional runs draw `class_name` only when given; otherwise balanced classes, and a grid gets one class per row.
    `drs` (a percentile) keeps only what the run's D accepts (sample.rejection_sample); unconditional GANs only.
    """
    run = load_run(run_dir, device)
    points = run.spec.data_kind == "points"
    tag = f"-class{resolve_class(run, class_name)}" if class_name is not None else ""
    tag += f"-drs{drs:g}" if drs is not None else ""
    default_name = f"sample-seed{seed}-n{n}{tag}" + {"grid": ".png", "folder": "", "npz": ".npz"}[fmt]
    out = Path(out) if out else run.run_dir / "samples" / default_name
    labels = sample_labels(run, n, class_name)
    kept = ""
    if drs is not None:
        x, acceptance = drs_samples(run, n, seed, drs, device)
        kept = f", --drs {drs:g} kept {acceptance:.1%} of the candidates"
    else:
        x = generate(run.G, None if points else run.spec.pixel_range, n, seed, device, labels)  # (n, C, H, W) uint8 or (n, 2)
    if points:
        if fmt == "folder":
            raise ConfigError("2-D toy runs sample points: use --format npz (points + scatter PNG) or grid (scatter PNG)")
        png = out.with_suffix(".png")
        atomic_write_bytes(png, png_bytes(toy_scatter(run, x, seed, kept)))
        if fmt == "npz":
            save_npz(out, points=x.numpy().astype(np.float32))
        return out if fmt == "npz" else png
    if fmt == "grid":
        tiles, nrow = grid_tiles(x, labels, class_name)
        return save_grid(tiles, out, nrow=nrow)
    if fmt == "npz":
        extra = {"labels": labels.numpy()} if labels is not None else {}
        return save_npz(out, images=x.permute(0, 2, 3, 1).numpy(), **extra)  # images (n, H, W, C) uint8
    arrays = x.permute(0, 2, 3, 1).numpy()  # (n, H, W, C) uint8
    if out.is_dir():  # a folder being replaced: numbered PNGs beyond the new n would pass for samples of this call
        for stale in out.glob("[0-9][0-9][0-9][0-9][0-9][0-9].png"):
            if int(stale.stem) >= n:
                stale.unlink()
    write_many(out, ((f"{i:06d}.png", png_bytes(to_pil(a))) for i, a in enumerate(arrays)))
    return out


def drs_samples(run, n: int, seed: int, percentile: float, device: str = "cpu") -> tuple[torch.Tensor, float]:
    """n samples kept by discriminator rejection sampling (uint8 images or float points, as generate gives them) and the share kept."""
    if run.spec.family == "autoencoder" or run.spec.conditional:
        raise ConfigError(f"--drs needs an unconditional GAN's discriminator; {run.config.model.name} runs have none to ask, drop --drs")
    try:
        x, acceptance = rejection_sample(run.G, load_slot(run, "D", device), n, seed, percentile, device)
    except ValueError as e:
        raise ConfigError(f"--drs: {e}") from None
    log.info(f"discriminator rejection sampling (--drs {percentile:g}) kept {acceptance:.1%} of the candidates")
    for note in drs_notes(run.config.loss.name, percentile, acceptance):
        log.info(note)
    return (x if run.spec.data_kind == "points" else to_uint8(x, run.spec.pixel_range)), acceptance


# The share of the candidates below M that DRS turned away, under which it has little to say: runs whose DRS lifted the
# toys' quality turned away 20-50 % (RESULTS-toys.md: 0.5-0.82 kept at --drs 90); the ducks-cows run whose --drs 80
# kept 97.8 % turned away 3 %. At 13 % it still did real work: it evened out another ducks-cows G's 55:45 species split.
DRS_LITTLE = 0.1
LOG_RATIO_LOSSES = ("ns", "minimax")  # the cross-entropy losses, whose optimal D's logit is log(p_real / p_fake)


def drs_notes(loss: str, percentile: float, acceptance: float) -> list[str]:
    """Plain-words notes on a DRS draw: when its D scores the candidates nearly alike, and when its logits are no log-ratios."""
    notes = []
    # Candidates above M always pass and one e nats below it is kept with probability exp(-e): PCT only caps the share
    # rejected, and how much of that cap is used says how far apart D's logits lie.
    turned_away = (1 - acceptance) / (percentile / 100)
    if turned_away < DRS_LITTLE:
        notes.append(f"--drs {percentile:g} barely filters: D scores the candidates nearly alike, so it turned away {100 * (1 - acceptance):.1f} %"
                     f" of them where it could have turned away up to {percentile:g} %. That is right when G is already close to "
                     "the data (compare counterfeit eval with and without --drs); if the samples still look wrong, D cannot see "
                     "what is wrong with them")  # fmt: skip
    if loss not in LOG_RATIO_LOSSES:
        notes.append(f"this run's D was trained with the {loss} loss: its logit ranks the candidates but does not estimate "
                     "log(p_real / p_fake) as rejection sampling assumes (--loss ns does), so --drs is a heuristic filter here")  # fmt: skip
    return notes


NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)  # what np.load raises for a damaged or foreign file


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    """Write arrays to a compressed .npz atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_npz_images(path: str | Path) -> np.ndarray:
    """The `images` array of an .npz as written by `counterfeit sample --format npz`; one-line errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found; pass an .npz written by `counterfeit sample --format npz`")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "images" not in f and "points" in f:
                raise ConfigError(f"{path} holds 2-D toy points, not images; score a toy run itself with `counterfeit eval RUN_DIR`")
            if "images" not in f:
                raise ConfigError(
                    f"{path} has no 'images' array (it has {', '.join(f.files) or 'nothing'}); write one with `counterfeit sample --format npz`"
                )
            return f["images"]
    except NPZ_ERRORS as e:
        raise ConfigError(f"{path} is not a readable .npz ({type(e).__name__}); write one with `counterfeit sample --format npz`") from None
