"""Model registry: each family registers a builder for (G, D) and the defaults that suit it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..config import ConfigError, RunConfig


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build G and D, what data it takes and its default options."""

    name: str
    build: Callable[[RunConfig], tuple[nn.Module, nn.Module]]
    data_kind: str  # "images" or "points"
    pixel_range: tuple[float, float]  # range of G's output and of the reals D sees
    summary: str
    defaults: dict = field(default_factory=dict)  # {"model": {...}, "optim": {...}, "loop": {...}} overrides
    conditional: bool = False  # G and D take class labels (model.num_classes of them)
    # "gan": D judges G's fakes. "autoencoder": G is a decoder z -> image and the D slot holds the encoder
    # image -> z; the trainer takes its reconstruction step instead of the D and G steps.
    family: str = "gan"


MODELS: dict[str, ModelSpec] = {}
NO_PRIOR = ("ae", "dae")  # autoencoders whose decoder never trained on z ~ N(0, I): their "fakes" from noise are noise-like


def register_model(
    name: str, *, data_kind: str, pixel_range=(-1.0, 1.0), summary: str, defaults: dict | None = None, conditional: bool = False,
    family: str = "gan",
):  # fmt: skip
    """Decorator: register `build(cfg) -> (G, D)` under `name` (feeds the CLI's --model choices)."""
    if family not in ("gan", "autoencoder"):
        raise ValueError(f"model family must be 'gan' or 'autoencoder', not {family!r}")

    def wrap(build):
        MODELS[name] = ModelSpec(name, build, data_kind, tuple(pixel_range), summary, defaults or {}, conditional, family)
        return build

    return wrap


def get_spec(name: str) -> ModelSpec:
    """The registered spec for `name`, or a one-line error listing the choices."""
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}'; choose one of {', '.join(MODELS)}")
    return MODELS[name]


def build_models(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """Build (G, D) for a run config."""
    return get_spec(cfg.model.name).build(cfg)


from . import cdcgan, dcgan, lecture, mlp  # noqa: E402,F401,I001  (registers the families)
from . import autoencoders  # noqa: E402,F401,I001  (after the GANs, so --model lists them first)
