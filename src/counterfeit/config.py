"""One frozen, nested config per run: enough to rebuild data, models, losses and the loop."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A config that cannot be built or read; the message is one line naming the fix."""


TOY_MODEL = "mlp"  # the model 2-D toy data gets without --model: points, not images, and the only family that eats them


@dataclass(frozen=True)
class DataConfig:
    """Which images (or 2-D points) the run trains on, and at what size."""

    name: str = "fashion-mnist"  # fashion-mnist | mnist | ring8 | grid25 | ducks-cows | a folder path
    resolution: int = 28  # pixels per side; folders are resized and centre-cropped to it
    channels: int = 1  # 1 = grey, 3 = RGB
    data_dir: str | None = None  # where to look for idx files first (None: the usual search order)
    class_names: tuple[str, ...] = ()  # filled in for conditional models, so samples can be asked for by name
    exclude_class: str | None = None  # a class name or index left out of training (anomaly detection: eval --anomaly)


@dataclass(frozen=True)
class ModelConfig:
    """The architecture of G and D: which model, the noise length and the layer widths and options."""

    name: str = "dcgan"
    z_dim: int = 64  # length of the noise vector z
    # Width 32 beat 64 per CPU-second at 28x28 (benchmarks/RESULTS.md); raise it for 64x64 colour data.
    g_width: int = 32  # channels of G's last hidden layer (doubles per step down in resolution)
    d_width: int = 32  # channels of D's first layer (doubles per step down in resolution)
    # dcgan/cdcgan: extra 3x3 conv layers at each of G's (D's) resolutions, after its up (down) step. The DCGAN
    # pair is one layer per resolution; a second one (1/1) lifted cdcgan's fakes-only classifier score from 81.3 to
    # 83.9 % at width 32 (benchmarks/RESULTS.md, issue 5).
    g_depth: int = 0
    d_depth: int = 0
    # D's stabilisers, all off by default (dcgan and mlp only; the lecture model stays layer for layer).
    spectral_norm: bool = False  # spectral normalisation of D's weights (Miyato et al. 2018); dcgan's D then drops batch norm
    mbstd: bool = False  # minibatch standard deviation feature before D's last layer (Karras et al. 2018), groups of 4
    pack: int = 1  # PacGAN (Lin et al. 2018): D judges this many samples at once; must divide the batch size
    g_max_width: int = 512
    d_max_width: int = 512
    num_classes: int = 0  # conditional models: how many class labels G and D take (0 = unconditional)
    # dae: std of the Gaussian noise added to each input pixel in [-1, 1] units while training (Vincent et al. 2008
    # used masking; additive Gaussian noise is the other classic corruption); 0.3 is 15 % of the pixel range.
    noise_std: float = 0.3
    # mlp: G draws and D judges points in units of the toy's RMS coordinate (ring8 0.71, grid25 2.83), so the same
    # learning rate suits every toy. False here so that configs written before the option rebuild unchanged.
    standardise: bool = False


@dataclass(frozen=True)
class LossConfig:
    """The game G and D play: the loss and the stabilisers that change D's or G's objective."""

    name: str = "ns"  # ns (non-saturating) | minimax (the original log(1 - D(G(z)))) | lsgan | hinge | wgan-gp
    gp_weight: float = 10.0  # wgan-gp's gradient-penalty weight lambda (Gulrajani et al. 2017's value)
    r1_gamma: float = 0.0  # R1 penalty gamma/2 * E[|grad D(x)|^2] on reals in every D step (Mescheder et al. 2018); 0 = off
    # DiffAugment policy (Zhao et al. 2020), e.g. "color,translation,cutout"; "" = off. It lives with the loss because
    # it changes what D's objective is computed on (as StyleGAN2-ADA's loss owns its augment pipe); images only.
    diffaug: str = ""
    # Conditional models: weight of the auxiliary-classifier term (Odena et al. 2017, AC-GAN). D gets a class head
    # trained on reals; G is pushed to draw fakes that head assigns to the requested class. 0 = off.
    ac_weight: float = 0.0
    # TAC-GAN (Gong et al. 2019): a twin class head learns, on fakes, which class G was asked for, and G's AC term becomes
    # CE(head) - CE(twin). Plain AC rewards G for fakes that are easy to classify, so it thins out where classes
    # overlap (shirts among T-shirts and pullovers); the twin cancels that pull. Needs ac_weight > 0.
    twin_ac: bool = False
    # Mode-seeking term (Mao et al. 2019, MSGAN): G pays ms_weight / (|G(z1) - G(z2)| / |z1 - z2|) on pairs of fakes
    # (of the same class, for conditional models), so different noise must give different images. 0 = off.
    ms_weight: float = 0.0
    # Nearest-fake recall term (after IMLE, Li & Malik 2018): in each G step every real of the last D batch pulls its
    # nearest fake (of the G batch plus recall_pool extra fakes; of its own class when conditional) towards itself, at
    # recall_weight * squared distance per dimension. D alone cannot revive a mode G has emptied (no fake is there to
    # get its gradient); this term can, since that mode's reals always have a nearest fake. 0 = off.
    recall_weight: float = 0.0
    recall_pool: int = 256  # extra fakes per G step for the recall term (a bigger pool pulls each fake toward fewer reals)
    beta: float = 1.0  # vae: weight of KL(q(z|x) || N(0, I)) beside the reconstruction term (Higgins et al. 2017's beta-VAE)


@dataclass(frozen=True)
class OptimConfig:
    """Adam's settings for G and D and the learning-rate ramp-down."""

    # DCGAN's paper used 2e-4; 5e-4 reached a lower FID at every length we tried for the first default 28x28 run
    # (benchmarks/RESULTS.md). cdcgan keeps it; dcgan registers 1.5e-3 and the lecture model 2e-4 as their defaults.
    lr_g: float = 5e-4
    lr_d: float = 5e-4
    beta1: float = 0.5  # DCGAN's choice: a shorter momentum memory keeps the game from oscillating
    beta2: float = 0.999  # dcgan registers 0.99 (StyleGAN's): it learned more per image there (RESULTS.md, time to quality)
    d_steps: int = 1  # D updates per G update
    # Share of the run at its end over which both learning rates fall linearly to 0 (0 = constant). Computed from the
    # images shown, so a resumed run continues the same schedule; the toys need it to sharpen their modes.
    lr_rampdown: float = 0.0


MAX_SEED = 2**31 - 1  # every command's and the studio's seed range: 0 to MAX_SEED
MAX_IMAGES = 1_000_000  # the most images one command draws (sample, eval, export, augment-eval): they are held in memory


@dataclass(frozen=True)
class LoopConfig:
    """How long and how the run trains: length, batch, seed, EMA, logging, checkpoints and speed switches."""

    total_kimg: float = 420.0  # training length in thousands of real images shown to D (7 epochs of Fashion-MNIST)
    batch_size: int = 64
    seed: int = 0
    ema_halflife_kimg: float = 2.0  # G_ema forgets half of its past every this many kimg
    tick_kimg: float = 4.0  # one stats.jsonl line every this many kimg
    sample_kimg: float = 20.0  # one fixed-noise sample grid every this many kimg
    snapshot_kimg: float = 20.0  # one checkpoint every this many kimg
    keep_checkpoints: int = 3  # keep the newest K checkpoints
    eval_every_kimg: float = 20.0  # class coverage, duplicates and a quick FID every this many kimg (0 = off)
    eval_n: int = 2000  # samples per training-time evaluation
    alarm_after_kimg: float = 40.0  # the collapse alarm judges absolute coverage only after this much training
    device: str = "auto"  # auto | cpu | cuda
    channels_last: bool = True  # NHWC convolutions: dcgan ~20 % faster on 2 CPU cores, lecture unchanged (benchmarks/ab_speed.py)
    compile: bool = False  # torch.compile G and D; off by default: no win for the small 28x28 models on CPU (RESULTS.md)
    # fp32 | bf16 | auto: bf16 autocast of the D and G steps (weights, optimiser state, EMA stay fp32). auto = bf16 on a
    # CPU with native bfloat16 (AVX512-BF16 or AMX), else fp32; dcgan registers auto (RESULTS.md, bf16 on CPU).
    precision: str = "fp32"
    # Capture the whole GAN step (D and G updates, EMA) once as a CUDA graph and replay it: one launch per step instead of
    # hundreds, for small models on a GPU. Off until measured on one (RESULTS.md); CUDA only, one process.
    cuda_graphs: bool = False


@dataclass(frozen=True)
class RunConfig:
    """One run's whole configuration, saved as config.json: enough to rebuild the run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of JSON types (tuples become lists), so it equals what JSON gives back."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        """Pretty JSON text of the whole config."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Rebuild a config from `to_dict` output; unknown keys are an error, missing ones take defaults."""
        return _from_dict(cls, d, "config")

    def replace(self, **sections: Any) -> RunConfig:
        """Copy with some sections replaced by dataclasses or by dicts of field overrides."""
        out = {}
        for name, value in sections.items():
            current = getattr(self, name)
            out[name] = dataclasses.replace(current, **value) if isinstance(value, dict) else value
        return dataclasses.replace(self, **out)


def _from_dict(cls: type, d: Any, where: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(d).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"{where} has unknown field(s) {', '.join(unknown)}; this counterfeit knows {', '.join(known)}")
    kwargs = {}
    for name, value in d.items():
        sub = _section_types.get(name) if cls is RunConfig else None
        if sub is None:
            _check_type(known[name], value, f"{where}.{name}")
        kwargs[name] = _from_dict(sub, value, f"{where}.{name}") if sub else (tuple(value) if isinstance(value, list) else value)
    return cls(**kwargs)


def _check_type(f: dataclasses.Field, value: Any, where: str) -> None:
    # A hand-edited "batch_size": "big" would otherwise pass here and fail deep in training with a TypeError.
    default = f.default if f.default is not dataclasses.MISSING else None
    want = type(default)
    if want not in (bool, int, float, str):  # None defaults (data_dir, exclude_class) and lists take what they get
        return
    ok = isinstance(value, bool) if want is bool else (isinstance(value, want) and not isinstance(value, bool))
    ok = ok or (want is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{where} must be {want.__name__}, got {json.dumps(value)}")


_section_types = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "optim": OptimConfig, "loop": LoopConfig}


def load_config(path: str | Path) -> RunConfig:
    """Read a run's config.json with a one-line error for a missing or broken file."""
    path = Path(path)
    try:
        return RunConfig.from_dict(json.loads(path.read_bytes()))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found; is this a counterfeit run folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ConfigError) as e:
        raise ConfigError(f"{path} is not a valid config ({e}); restore it or start a new run") from None


_FIELDS = {
    "data": ("data", "name"), "model": ("model", "name"), "loss": ("loss", "name"), "kimg": ("loop", "total_kimg"),
    **{f.name: (section, f.name) for section, cls in _section_types.items() for f in fields(cls) if f.name != "name"},
}  # fmt: skip
FLAT_OPTIONS = tuple(_FIELDS)  # every flat option make_config takes (and 'epochs', converted to kimg from the data's size)


def option_type(option: str) -> type:
    """The Python type (int, float, bool, str) of a flat option's config field, e.g. int for `batch_size`."""
    if option not in _FIELDS:
        raise ConfigError(f"unknown option '{option}'")
    section, name = _FIELDS[option]
    return {f.name: type(f.default) for f in fields(_section_types[section])}[name]


def make_config(**options: Any) -> RunConfig:
    """Config from flat options (`data`, `model`, `kimg`, `epochs`, `lr_g`, ...) over the model family's defaults."""
    from .data import TOY_DATASETS, builtin_name
    from .models import get_spec

    options = {k: v for k, v in options.items() if v is not None}
    builtin = builtin_name(options.get("data", DataConfig.name))
    if builtin in TOY_DATASETS and "model" not in options:
        options["model"] = TOY_MODEL
    spec = get_spec(options.get("model", ModelConfig.name))
    cfg = RunConfig().replace(**{k: v for k, v in spec.defaults.items()})
    if spec.conditional and "num_classes" not in options:
        from .data import IDX_DATASETS

        # idx datasets know their classes up front; for folders the trainer counts the sub-folders.
        idx = IDX_DATASETS.get(builtin or "")
        if idx is not None:
            options["num_classes"], options["class_names"] = len(idx.class_names), tuple(idx.class_names)
    return extend_config(cfg, **options)


def extend_config(cfg: RunConfig, **options: Any) -> RunConfig:
    """Copy of `cfg` with flat options applied; `epochs` is turned into kimg using the data set's size."""
    from .data import builtin_name

    options = {k: v for k, v in options.items() if v is not None}
    canonical = builtin_name(options.get("data", ""))
    if canonical:  # one spelling in config.json, so every later lookup by name agrees
        options["data"] = canonical
    elif "data" in options and os.path.exists(os.path.expanduser(str(options["data"]))):
        # A folder: kept absolute, so the run resumes and evaluates from any working directory. A name that is not there
        # stays as typed, for the error to quote (it is likely a misspelt built-in name).
        options["data"] = os.path.abspath(os.path.expanduser(str(options["data"])))
    if "data_dir" in options:
        options["data_dir"] = os.path.abspath(os.path.expanduser(str(options["data_dir"])))
    epochs = options.pop("epochs", None)
    if "exclude_class" in options:
        options["exclude_class"] = str(options["exclude_class"]).strip()  # an index given from Python is kept as text, as the CLI gives it
    if epochs is not None and "kimg" in options:
        raise ConfigError("give --kimg or --epochs, not both")
    sections: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        if key not in _FIELDS:
            raise ConfigError(f"unknown option '{key}'")
        section, name = _FIELDS[key]
        sections.setdefault(section, {})[name] = value
    cfg = cfg.replace(**sections)
    if "gp_weight" in options and cfg.loss.name != "wgan-gp":
        raise ConfigError(f"--gp-weight only applies to --loss wgan-gp, not --loss {cfg.loss.name}")
    _check_family_options(cfg, options)
    if epochs is not None:
        from .train import load_training_data

        if not (math.isfinite(epochs) and epochs > 0):
            raise ConfigError(f"--epochs must be a positive number, got {epochs}")

        cfg = cfg.replace(loop={"total_kimg": round(epochs * load_training_data(cfg).x.shape[0] / 1000, 3)})
        if cfg.loop.total_kimg * 1000 < cfg.loop.batch_size:
            raise ConfigError(
                f"--epochs {epochs:g} shows D {cfg.loop.total_kimg * 1000:g} images, fewer than one batch ({cfg.loop.batch_size}); train for more"
            )
    _validate(cfg)
    return cfg


_GAN_ONLY = ("loss", "gp_weight", "r1_gamma", "ac_weight", "twin_ac", "ms_weight", "recall_weight", "recall_pool", "diffaug", "spectral_norm",
             "mbstd", "pack", "lr_d", "d_steps")  # fmt: skip


def _check_family_options(cfg: RunConfig, options: dict[str, Any]) -> None:
    """One-line errors for options given to a family that has no use for them."""
    from .models import get_spec

    name = cfg.model.name
    if get_spec(name).family == "autoencoder":
        gan_only = [k for k in _GAN_ONLY if k in options]
        if gan_only:
            raise ConfigError(f"--{gan_only[0].replace('_', '-')} is a GAN option; --model {name} has no discriminator, drop the flag")
    for flag in ("compile", "cuda_graphs"):
        if options.get(flag) and get_spec(name).family == "autoencoder":
            raise ConfigError(
                f"--{flag.replace('_', '-')} applies to the GAN step only; --model {name} would train without it, drop the flag"
            )
    if options.get("ac_weight") and not get_spec(name).conditional:
        raise ConfigError(f"--ac-weight trains a class head in D; use it with a conditional model (--model cdcgan), not --model {name}")
    if options.get("twin_ac") and not get_spec(name).conditional:
        raise ConfigError(f"--twin-ac twins the AC class head of a conditional model (--model cdcgan), not --model {name}")
    if cfg.loss.twin_ac and cfg.loss.ac_weight <= 0:
        raise ConfigError("--twin-ac pairs a twin with the AC class head; give --ac-weight > 0 (cdcgan's default is 2) or drop --twin-ac")
    if "beta" in options and name != "vae":
        raise ConfigError(f"--beta weights the VAE's KL term; use it with --model vae, not --model {name}")
    if options.get("exclude_class") is not None:
        # The class is left out for eval --anomaly, which scores with an unconditional D or an autoencoder, on images.
        if get_spec(name).conditional:
            raise ConfigError(
                f"--exclude-class trains for eval --anomaly, which needs an unconditional model; use --model dcgan or vae, not {name}"
            )
        if get_spec(name).data_kind == "points":
            raise ConfigError("--exclude-class leaves a class of images out for eval --anomaly; 2-D toy data has no classes to leave out")
    pixels = [k for k in ("resolution", "channels") if k in options]
    if pixels and get_spec(name).data_kind == "points":
        raise ConfigError(f"--{pixels[0]} sizes images; --model {name} draws 2-D points, drop the flag")
    if options.get("standardise") and get_spec(name).data_kind != "points":
        raise ConfigError(f"--standardise rescales 2-D toy points; --model {name} draws images, drop the flag")
    deep = [k for k in ("g_depth", "d_depth") if options.get(k)]
    if deep and name not in ("dcgan", "cdcgan"):
        raise ConfigError(
            f"--{deep[0].replace('_', '-')} adds conv layers to the DCGAN pair; use --model dcgan or cdcgan, not --model {name}"
        )
    if "noise_std" in options and name != "dae":
        raise ConfigError(f"--noise-std is the denoising autoencoder's input noise; use it with --model dae, not --model {name}")


def _validate(cfg: RunConfig) -> None:
    from .augment import parse_policy
    from .losses import LOSSES
    from .models import get_spec

    L, O, M, Lo = cfg.loop, cfg.optim, cfg.model, cfg.loss
    checks = [
        (math.isfinite(L.total_kimg) and L.total_kimg > 0, f"--kimg must be a positive number, got {L.total_kimg}"),
        (
            not L.total_kimg * 1000 < L.batch_size,  # not "<": a NaN is left to the finite check below
            f"--kimg {L.total_kimg:g} is less than one batch ({L.batch_size} images, {L.batch_size / 1000:g} kimg); train for more",
        ),
        (0 <= L.seed <= MAX_SEED, f"--seed must be from 0 to {MAX_SEED}, got {L.seed}"),
        (L.batch_size >= 2, f"--batch-size must be at least 2 (batch norm needs it), got {L.batch_size}"),
        (L.batch_size <= 65536, f"--batch-size {L.batch_size} is too large; try 64 to 1024"),
        (O.lr_g > 0 and O.lr_d > 0, "learning rates must be positive"),
        (0 <= O.beta1 < 1 and 0 <= O.beta2 < 1, "Adam betas must lie in [0, 1)"),
        (O.d_steps >= 1, f"--d-steps must be at least 1, got {O.d_steps}"),
        (0 <= O.lr_rampdown <= 1, f"--lr-rampdown is a share of the run in [0, 1], got {O.lr_rampdown}"),
        (cfg.model.z_dim >= 1, f"--z-dim must be at least 1, got {cfg.model.z_dim}"),
        (cfg.model.g_width >= 1 and cfg.model.d_width >= 1, "widths must be at least 1"),
        (0 <= M.g_depth <= 8 and 0 <= M.d_depth <= 8, f"--g-depth and --d-depth must lie in [0, 8], got {M.g_depth} and {M.d_depth}"),
        (cfg.data.channels in (1, 3), f"--channels must be 1 or 3, got {cfg.data.channels}"),
        (min(L.tick_kimg, L.sample_kimg, L.snapshot_kimg) > 0, "--tick-kimg, --sample-kimg and --snapshot-kimg must be positive"),
        (L.keep_checkpoints >= 1, "--keep-checkpoints must be at least 1"),
        (L.ema_halflife_kimg >= 0, "--ema-halflife-kimg must be >= 0"),
        (L.eval_every_kimg >= 0, f"--eval-every-kimg must be >= 0 (0 turns it off), got {L.eval_every_kimg}"),
        (L.alarm_after_kimg >= 0, f"--alarm-after-kimg must be >= 0, got {L.alarm_after_kimg}"),
        (L.eval_n >= 10, f"--eval-n must be at least 10, got {L.eval_n}"),
        (L.precision in ("fp32", "bf16", "auto"), f"--precision must be fp32, bf16 or auto, got '{L.precision}'"),
        (
            not (L.compile and (Lo.r1_gamma > 0 or Lo.name == "wgan-gp")),
            "--compile cannot take the double backward of the R1 / WGAN-GP penalty; drop --compile or the penalty",
        ),
        (not (L.cuda_graphs and L.compile), "--cuda-graphs and --compile cannot be combined; pick one"),
        (
            not (L.cuda_graphs and Lo.recall_weight > 0),
            "--cuda-graphs cannot replay the recall term (it sizes a tensor on the host every step); set --recall-weight 0 or drop --cuda-graphs",
        ),
        (Lo.name in LOSSES, f"unknown loss '{Lo.name}'; choose one of {', '.join(LOSSES)}"),
        (Lo.gp_weight >= 0, f"--gp-weight must be >= 0, got {Lo.gp_weight}"),
        (Lo.r1_gamma >= 0, f"--r1-gamma must be >= 0 (0 turns it off), got {Lo.r1_gamma}"),
        (Lo.ac_weight >= 0, f"--ac-weight must be >= 0 (0 turns it off), got {Lo.ac_weight}"),
        (Lo.ms_weight >= 0, f"--ms-weight must be >= 0 (0 turns it off), got {Lo.ms_weight}"),
        (Lo.recall_weight >= 0, f"--recall-weight must be >= 0 (0 turns it off), got {Lo.recall_weight}"),
        (Lo.recall_pool >= 0, f"--recall-pool must be >= 0, got {Lo.recall_pool}"),
        (Lo.beta >= 0, f"--beta must be >= 0, got {Lo.beta}"),
        (M.noise_std >= 0, f"--noise-std must be >= 0, got {M.noise_std}"),
        (cfg.data.exclude_class is None or str(cfg.data.exclude_class).strip() != "", "--exclude-class needs a class name or index"),
        (M.pack >= 1, f"--pack must be at least 1, got {M.pack}"),
        (L.batch_size % max(M.pack, 1) == 0, f"--pack {M.pack} must divide --batch-size {L.batch_size}; D sees the batch in packs"),
        (L.batch_size // max(M.pack, 1) >= 2, f"--batch-size {L.batch_size} / --pack {M.pack} leaves D one packed sample"),
        (not (Lo.diffaug and get_spec(M.name).data_kind == "points"), "--diffaug augments images; 2-D points have none to augment"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    flags: dict[tuple[str, str], str] = {}
    for option, where in _FIELDS.items():
        flags.setdefault(where, option)  # the first name of a field is its flag: "kimg", not "total_kimg"
    for section, cls in _section_types.items():
        for f in fields(cls):
            value = getattr(getattr(cfg, section), f.name)
            # inf or nan passes many of the checks above and breaks training later (int(inf), a NaN learning rate)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--{flags[(section, f.name)].replace('_', '-')} must be a finite number, got {value}")
    parse_policy(Lo.diffaug)  # a one-line error naming --diffaug and the known parts
