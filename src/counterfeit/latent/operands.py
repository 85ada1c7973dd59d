"""Turn parsed operands (classes, seeds, images, saved latents) into latents, one per row of a figure.

Rows show several versions of the same idea. Unconditional models: row 0 is the point itself and row r
adds `jitter` times noise r, as Radford et al. (2016) did around their arithmetic results; a single-seed
endpoint instead takes image r of that seed. Conditional models keep two spaces apart: class names act
on the learned class code and seeds on z; a part an operand does not give comes from the row (row r's
noise of --seed for z; the --class code, or class r in row r, for the code).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError
from ..data.decode import DECODE_ERRORS, decode_image
from ..export import NPZ_ERRORS, save_npz
from ..sample import from_uint8, make_noise
from .concepts import Concepts, class_concepts, evaluator_for
from .expr import Operand
from .project import project_run_images
from .space import Latent, class_codes, is_conditional

JITTER = 0.25


@dataclass
class Part:
    """What one operand gives, per row: z (R, z_dim) and/or code (R, code_dim); `per_row` when z already varies by row."""

    z: torch.Tensor | None
    code: torch.Tensor | None
    per_row: bool = False


# Caps on a request's size: far past any useful picture, and a typo (--rows 100000000) is refused, not minutes of work.
MAX_ROWS, MAX_PROJECT_STEPS, MAX_RESTARTS = 256, 10_000, 64


class Resolver:
    """Resolves operands of one run into per-row parts, computing class concepts and projections only when needed."""

    def __init__(self, run, rows: int = 1, seed: int = 0, jitter: float = JITTER, class_index: int | None = None,
                 steps: int = 100, restarts: int = 4, device="cpu"):  # fmt: skip
        if not 1 <= rows <= MAX_ROWS:
            raise ConfigError(f"--rows must be from 1 to {MAX_ROWS}, got {rows}")
        if not (0 <= steps <= MAX_PROJECT_STEPS and 1 <= restarts <= MAX_RESTARTS):
            raise ConfigError(f"--project-steps must be from 0 to {MAX_PROJECT_STEPS:,} and restarts from 1 to {MAX_RESTARTS}, "
                              f"got {steps} and {restarts}")  # fmt: skip
        self.run, self.rows, self.seed, self.jitter, self.device = run, rows, seed, jitter, device
        self.class_index, self.steps, self.restarts = class_index, steps, restarts
        self.G = run.G
        self.conditional = is_conditional(self.G)
        self.row_noise = make_noise(rows, self.G.z_dim, seed, device)  # (R, z_dim)
        self._concepts: Concepts | None = None
        self.notes: list[str] = []

    def concepts(self) -> Concepts:
        """The run's class concept vectors (computed once)."""
        if self._concepts is None:
            self._concepts = class_concepts(self.run, self.device)
        return self._concepts

    def part(self, op: Operand) -> Part:
        """The per-row contribution of one operand."""
        R = self.rows
        if op.kind == "seed":  # an interpolation endpoint: image r of this seed
            return Part(make_noise(R, self.G.z_dim, op.value[0], self.device), None, per_row=True)
        if op.kind == "seeds":  # image 0 of each seed, averaged
            z = torch.stack([make_noise(1, self.G.z_dim, s, self.device)[0] for s in op.value]).mean(0)  # (z_dim,)
            return Part(z.expand(R, -1), None)
        if op.kind == "class":
            if self.conditional:
                return Part(None, class_codes(self.G)[op.value].expand(R, -1))
            concepts = self.concepts()
            note = concepts.notes.get(op.value)  # the caveat of a class this expression uses, not of every thin class
            if note and note not in self.notes:
                self.notes.append(note)
            return Part(concepts.vectors[op.value].to(self.device).expand(R, -1), None)
        lat = self.load_file(op.value)
        return Part(lat.z.expand(R, -1), None if lat.code is None else lat.code.expand(R, -1))

    def combine(self, terms: list[tuple[float, Part]]) -> Latent:
        """sum(coef * part), each space on its own; missing parts come from the row; jitter where rows would repeat."""
        zs = [(c, p) for c, p in terms if p.z is not None]
        z = sum(c * p.z for c, p in zs) if zs else self.row_noise  # (R, z_dim)
        if zs and not any(p.per_row for _, p in zs) and self.rows > 1:
            z = z + self.jitter * torch.cat([torch.zeros_like(self.row_noise[:1]), self.row_noise[1:]])  # row 0 exact
        if not self.conditional:
            return Latent(z)
        codes = [(c, p) for c, p in terms if p.code is not None]
        code = sum(c * p.code for c, p in codes) if codes else self.default_code()  # (R, code_dim)
        return Latent(z, code)

    def latent(self, op: Operand) -> Latent:
        """The per-row latents (R rows) of a single operand."""
        return self.combine([(1.0, self.part(op))])

    def default_code(self) -> torch.Tensor:
        """The code for rows whose operands name no class (R, code_dim): --class if given, else class r % C in row r."""
        return class_codes(self.G)[self.default_classes()]  # (R, code_dim)

    def default_classes(self) -> torch.Tensor:
        """The class of each row (R,) whose operands name none: --class if given, else class r % C in row r."""
        if self.class_index is not None:
            return torch.full((self.rows,), self.class_index)  # (R,)
        return torch.arange(self.rows) % len(class_codes(self.G))  # (R,)

    def load_file(self, spec: str) -> Latent:
        """One latent (1 row) from an image (projected now) or a saved .npz (`file.npz#k` picks latent k)."""
        path_text, _, index = spec.partition("#")
        path = Path(path_text)
        if not path.is_file():
            raise ConfigError(f"{path} not found; pass an existing .png image or an .npz written by `counterfeit project`")
        if path.suffix.lower() == ".npz":
            latent = load_latent(path, self.G, int(index) if index else None)
            return Latent(latent.z.to(self.device), None if latent.code is None else latent.code.to(self.device))
        try:
            x = torch.from_numpy(decode_image(path, self.run.config.data.resolution, self.run.config.data.channels))[None]  # (1, C, H, W)
        except DECODE_ERRORS as e:
            raise ConfigError(f"{path} is not a readable image ({type(e).__name__}); pass a PNG or JPEG file") from None
        proj = project_run_images(self.run, from_uint8(x, self.run.spec.pixel_range).to(self.device), self.steps, self.restarts,
                                  self.seed, self.device, evaluator_for(self.run))  # fmt: skip
        self.notes.append(f"projected {path.name}: pixel error {proj.error[0]:.4f} (from {proj.error_start[0]:.4f})")
        return proj.latent


def save_latent(path: Path, latent: Latent, **extra: np.ndarray) -> None:
    """Write latents to an .npz: `z` (N, z_dim), `code` (N, code_dim) for a conditional G, plus extra arrays."""
    arrays = {"z": latent.z.cpu().numpy().astype(np.float32), **extra}
    if latent.code is not None:
        arrays["code"] = latent.code.cpu().numpy().astype(np.float32)
    save_npz(Path(path), **arrays)


def load_latent(path: Path, G, index: int | None = 0) -> Latent:
    """Latent `index` of an .npz written by save_latent, checked against G's input sizes; None: the file's only one."""
    try:
        with np.load(path, allow_pickle=False) as f:
            z = torch.from_numpy(f["z"].astype(np.float32))  # (N, z_dim)
            code = torch.from_numpy(f["code"].astype(np.float32)) if "code" in f.files else None
    except NPZ_ERRORS as e:
        raise ConfigError(f"{path} holds no latents ({type(e).__name__}: {e}); pass an .npz written by `counterfeit project`") from None
    if z.ndim != 2 or z.shape[1] != G.z_dim or (code is not None) != is_conditional(G):
        raise ConfigError(f"{path} holds latents of another model (z {tuple(z.shape)}, {'with' if code is not None else 'no'} class code); "
                          f"project the image with this run: counterfeit project RUN IMAGE")  # fmt: skip
    if index is None and len(z) > 1:  # `proj.npz` took latent 0 of several without a word
        raise ConfigError(f"{path} holds {len(z)} latents; say which with {path.name}#0 to #{len(z) - 1}")
    index = 0 if index is None else index
    if not 0 <= index < len(z):
        raise ConfigError(f"{path} holds {len(z)} latents; pick one with #0 to #{len(z) - 1}")
    return Latent(z[index : index + 1], None if code is None else code[index : index + 1])
