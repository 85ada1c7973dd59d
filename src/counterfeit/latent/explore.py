"""The three walks through a run's latent space behind the CLI: interpolate, arithmetic, project."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError
from ..data import IDX_DATASETS, load_dataset
from ..data.decode import DECODE_ERRORS, decode_image
from ..evaluator import predict
from ..fileio import file_label, shell_word
from ..models import NO_PRIOR
from ..runs import load_run
from ..sample import from_uint8, save_grid, to_uint8
from .concepts import class_names_for, evaluator_for
from .expr import parse_endpoint, parse_expression
from .figures import save_equation, save_gif, save_strip, walk_labels
from .operands import MAX_PROJECT_STEPS, MAX_RESTARTS, Resolver, save_latent
from .project import project_run_images
from .space import MODES, decode_batched, path


@dataclass
class Outcome:
    """What a command wrote and what it has to say."""

    files: list[Path]
    lines: list[str] = field(default_factory=list)


def _slug(text: str) -> str:
    # At most 48 bytes, not characters: two CJK slugs of 48 characters overran NAME_MAX (255 bytes) in interpolate's name.
    return file_label(text.strip("_ "), max_bytes=48).strip("_") or "x"


def _equation_slug(terms) -> str:
    # The signs and factors spelled out: 'Sneaker - Sandal' and 'Sneaker + Sandal' were both arithmetic-Sneaker_Sandal.png.
    parts = []
    for i, (c, op) in enumerate(terms):
        sign = "minus-" if c < 0 else "plus-" if i else ""
        parts.append(sign + ("" if abs(c) == 1 else f"{abs(c):g}x-") + _slug(op.label))
    return file_label("-".join(parts), ".-", max_bytes=180)


def _variant(rows: int, default_rows: int, seed: int, steps: int | None = None, class_name: str | None = None,
             project_steps: int = 100) -> str:  # fmt: skip
    # Options that change the picture name it, so a second request does not silently replace the first.
    extra = [f"rows{rows}" if rows != default_rows else "", f"steps{steps}" if steps not in (None, 10) else "",
             f"seed{seed}" if seed else "", f"class-{_slug(class_name)}" if class_name is not None else "",
             f"proj{project_steps}" if project_steps != 100 else ""]  # fmt: skip
    return "".join(f"-{e}" for e in extra if e)


def _image_run(run_dir, device):
    run = load_run(run_dir, device)
    if run.spec.data_kind != "images":
        raise ConfigError(f"{run.run_dir.name} is a 2-D toy run; latent-space pictures need a run that makes images "
                          f"(for a toy's points: counterfeit sample {shell_word(run.run_dir)})")  # fmt: skip
    return run


def prior_notes(run, operands) -> list[str]:
    """A note for ae/dae runs given seeds: their decoders never trained on z ~ N(0, I), where seeds come from."""
    if run.config.model.name not in NO_PRIOR or not any(op.kind in ("seed", "seeds") for op in operands):
        return []  # class concepts of ae/dae runs are their encoder's codes of real images
    return [f"note: this {run.config.model.name} run's decoder never trained on z ~ N(0, I), where seeds come from; "
            "codes of real images (class names, counterfeit project, or .png operands) are what it knows, or use a vae run"]  # fmt: skip


def _class_option(run, class_name: str | None) -> int | None:
    if class_name is None:
        return None
    from ..export import resolve_class

    return resolve_class(run, class_name)


def _verdicts(run, images: torch.Tensor) -> list[str]:
    """'Ankle boot 0.93' per uint8 image, from the evaluator, or nothing when no evaluator fits the run."""
    ev = evaluator_for(run)
    if ev is None or ev.meta.get("dataset") != run.config.data.name:  # its classes mean nothing for other data
        return []
    p, _ = predict(ev, images)  # (N, C)
    top_p, top_k = p.max(dim=1)  # (N,)
    return [f"{ev.meta['class_names'][k]} {q:.2f}" for q, k in zip(top_p.tolist(), top_k.tolist())]


def endpoint_labels(res, names: list[str], ops) -> tuple[list[str], str]:
    """The endpoints' labels, where a conditional run's seeds name the class they are drawn as, and a note when rows differ."""
    labels = [op.label for op in ops]
    seeds = [op.kind in ("seed", "seeds") for op in ops]  # z alone: the class comes from --class or the row
    if not res.conditional or not any(seeds):
        return labels, ""
    classes = [names[k] for k in res.default_classes().tolist()]  # each row's
    if len(set(classes)) == 1:  # one class down the whole column: its label can say it
        return [f"{label}, {classes[0]}" if seed else label for label, seed in zip(labels, seeds)], ""
    more = ", ..." if len(classes) > len(names) else ""
    return labels, f"; each row draws the seeds as its own class ({', '.join(classes[: len(names)])}{more}; --class picks one)"


def walk_images(run, res, a, b, steps: int, mode: str) -> torch.Tensor:
    """uint8 frames (R * T, C, H, W) of the walk from endpoint a to endpoint b, resolved by `res` (a Resolver)."""
    walk = path(res.latent(a), res.latent(b), steps, mode)  # (R * T) rows
    return to_uint8(decode_batched(run.G, walk), run.spec.pixel_range)


def equation_columns(run, res, terms) -> list[torch.Tensor]:
    """uint8 images (R, C, H, W) of every operand of parsed `terms`, then of their weighted sum, resolved by `res`."""
    parts = [(coef, res.part(op)) for coef, op in terms]
    latents = [res.combine([(1.0, p)]) for _, p in parts] + [res.combine(parts)]
    return [to_uint8(decode_batched(run.G, lat), run.spec.pixel_range) for lat in latents]


def _out_path(out: str | Path | None, suffix: str, command: str, what: str) -> Path | None:
    """--out as a Path, refused in one line unless it ends in `suffix` (a companion file is named after it)."""
    if out is None:
        return None
    path = Path(out)
    if path.suffix.lower() != suffix:
        raise ConfigError(f"--out {out}: {command} writes {what}; give a name ending in {suffix}, such as {path.stem or 'out'}{suffix}")
    return path


def interpolate(run_dir, start: str, end: str, steps: int = 10, mode: str = "slerp", rows: int = 1, seed: int = 0,
                out: str | Path | None = None, device="cpu", class_name: str | None = None, project_steps: int = 100) -> Outcome:  # fmt: skip
    """Walk from one seed, class, image or saved latent to another: a strip/grid PNG and a ping-pong GIF."""
    if mode not in MODES:
        raise ConfigError(f"unknown --mode '{mode}'; choose {' or '.join(MODES)}")
    if not 2 <= steps <= 200:
        raise ConfigError(f"--steps must be between 2 and 200, got {steps}")
    out = _out_path(out, ".png", "interpolate", "a PNG strip and a GIF beside it")
    run = _image_run(run_dir, device)
    names = class_names_for(run)
    a, b = parse_endpoint(start, names), parse_endpoint(end, names)
    res = Resolver(run, rows, seed, class_index=_class_option(run, class_name), steps=project_steps, device=device)
    images = walk_images(run, res, a, b, steps, mode)  # (R * T, C, H, W)
    (a_label, b_label), rows_note = endpoint_labels(res, names, [a, b])
    name = f"interpolate-{_slug(a.label)}-to-{_slug(b.label)}-{mode}{_variant(rows, 1, seed, steps, class_name, project_steps)}"
    png = Path(out) if out else run.run_dir / "latent" / f"{name}.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    save_strip(images, rows, png, labels=walk_labels(a_label, b_label, steps))  # which end is which, and how far along
    gif = save_gif(images, rows, png.with_suffix(".gif"))
    walked = f"{a_label} -> {b_label}: {rows} row(s) x {steps} steps, {mode}{rows_note}"
    return Outcome([png, gif], [*prior_notes(run, [a, b]), *res.notes, walked])


def arithmetic(run_dir, expression: str, rows: int = 4, seed: int = 0, out: str | Path | None = None, device="cpu",
               class_name: str | None = None, project_steps: int = 100) -> Outcome:  # fmt: skip
    """Evaluate an expression over concepts, seeds and images; one PNG with every operand, its sign, and the result."""
    out = _out_path(out, ".png", "arithmetic", "a PNG")
    run = _image_run(run_dir, device)
    terms = parse_expression(expression, class_names_for(run))
    res = Resolver(run, rows, seed, class_index=_class_option(run, class_name), steps=project_steps, device=device)
    columns = equation_columns(run, res, terms)  # each (R, C, H, W)
    png = (
        Path(out)
        if out
        else run.run_dir / "latent" / f"arithmetic-{_equation_slug(terms)}{_variant(rows, 4, seed, None, class_name, project_steps)}.png"
    )
    png.parent.mkdir(parents=True, exist_ok=True)
    save_equation(columns, [c for c, _ in terms], [op.label for _, op in terms] + ["result"], png)
    lines = [*prior_notes(run, [op for _, op in terms]), *res.notes]
    if not run.spec.conditional and any(op.kind == "class" for _, op in terms):
        c = res.concepts()
        lines.append("concepts: " + ", ".join(f"{op.label} ({c.members[op.value]} samples)" for _, op in terms if op.kind == "class"))
    elif run.spec.conditional:
        lines.append("class names act on the label code, seeds and images on z (each row: noise of --seed, image r)")
    verdicts = _verdicts(run, columns[-1])
    if verdicts:
        lines.append("evaluator's most likely class for each result row, with its probability: " + "; ".join(verdicts))
    return Outcome([png], lines)


def read_images(specs: list[str], resolution: int, channels: int) -> tuple[torch.Tensor, list[str]]:
    """uint8 images (N, C, H, W) and names from image files or DATASET:SPLIT:INDEX (e.g. fashion-mnist:test:17)."""
    images, names = [], []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) == 3 and parts[0] in IDX_DATASETS and parts[2].isdigit():
            ds = load_dataset(parts[0], parts[1], resolution, channels)
            if int(parts[2]) >= len(ds):
                raise ConfigError(f"{spec}: {parts[0]} {parts[1]} has {len(ds)} images (index 0 to {len(ds) - 1})")
            images.append(ds.x[int(parts[2])])
        else:
            path = Path(spec)
            if not path.is_file():
                what = "is a folder" if path.is_dir() else "not found"
                raise ConfigError(f"image {spec} {what}; pass PNG/JPEG files or DATASET:SPLIT:INDEX such as fashion-mnist:test:17")
            try:
                images.append(torch.from_numpy(decode_image(path, resolution, channels)))
            except DECODE_ERRORS as e:
                raise ConfigError(f"{spec} is not a readable image ({type(e).__name__}); pass a PNG or JPEG file") from None
        names.append(spec)
    return torch.stack(images), names  # (N, C, H, W) uint8


def project(run_dir, specs: list[str], steps: int = 100, restarts: int = 4, seed: int = 0, out: str | Path | None = None,
            device="cpu") -> Outcome:  # fmt: skip
    """Find latents for real images; writes an .npz of latents and a PNG of originals over reconstructions."""
    if not (0 <= steps <= MAX_PROJECT_STEPS and 1 <= restarts <= MAX_RESTARTS):
        raise ConfigError(
            f"--steps must be from 0 to {MAX_PROJECT_STEPS:,} and --restarts from 1 to {MAX_RESTARTS}, got {steps} and {restarts}"
        )
    out = _out_path(out, ".npz", "project", "the latents as an .npz and a PNG beside it")
    run = _image_run(run_dir, device)
    if not specs:
        raise ConfigError("give at least one IMAGE to project")
    x, names = read_images(specs, run.config.data.resolution, run.config.data.channels)  # (N, C, H, W) uint8
    proj = project_run_images(run, from_uint8(x, run.spec.pixel_range).to(device), steps, restarts, seed, device, evaluator_for(run))
    recon = to_uint8(proj.recon.cpu(), run.spec.pixel_range)  # (N, C, H, W)
    npz = Path(out) if out else run.run_dir / "latent" / f"project-{_slug(Path(specs[0]).stem)}.npz"
    npz.parent.mkdir(parents=True, exist_ok=True)
    save_latent(npz, proj.latent, images=x.permute(0, 2, 3, 1).numpy(), recon=recon.permute(0, 2, 3, 1).numpy(),
                error=proj.error.cpu().numpy(), error_start=proj.error_start.cpu().numpy(), names=np.array(names))  # fmt: skip
    per_row = min(len(x), 16)
    pairs = torch.cat([torch.cat([x[i : i + per_row], recon[i : i + per_row]]) for i in range(0, len(x), per_row)])
    png = save_grid(pairs, npz.with_suffix(".png"), nrow=per_row, scale=3)
    how = (
        "encoder" + (f" + {steps} refinement steps" if steps else "")
        if run.spec.family == "autoencoder"
        else f"{restarts} starts x {steps // 2} steps, then {steps - steps // 2} more for the best"  # project_gan's two phases
    )
    lines = [f"{n}: pixel error {e:.4f} (start {s:.4f})" for n, e, s in zip(names, proj.error.tolist(), proj.error_start.tolist())]
    use = f"the latent as {npz}#0" if len(x) == 1 else f"the latents as {npz}#0 .. #{len(x) - 1}"
    lines.append(f"mean pixel error (MSE in [0, 1] units) {proj.error.mean():.4f} with {how}; use {use}")
    lines.append(f"{png.name}: each row of originals over its reconstructions")  # the picture has no labels of its own
    return Outcome([npz, png], lines)
