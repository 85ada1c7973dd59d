"""One self-contained HTML page per run: curves, coverage, metrics, sample grids and config, readable offline."""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

from .checkpoints import CheckpointError, list_checkpoints
from .config import ConfigError
from .data import IDX_DATASETS, TOY_DATASETS
from .fileio import atomic_write_bytes, atomic_write_text, shell_word
from .losses import d_output_level, extra_terms, indifference_levels
from .metrics.toy import how_to_read
from .runs import is_evaluation, is_run_dir, not_a_run, reached_nimg, read_stats
from .timelapse import GIF_NAME, MAX_FRAMES, evenly, sample_grids, timelapse_gif

MAX_GRIDS = 8  # enough to see training unfold without making the page tens of megabytes
PLOT_NAMES = ("losses", "d_outputs", "fid", "coverage", "classes")
_RECON = re.compile(r"^recon(\d+(?:\.\d+)?)kimg\.png$")
AE_LOSSES = ("loss", "loss_rec", "loss_kl")  # an autoencoder's stats.jsonl rows (no loss_D / loss_G)
KIMG_LABEL = "kimg (thousands of real images shown to D)"
log = logging.getLogger(__name__)

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 13px; }
code { background: #f2f2f2; padding: 0 .25em; }
img { max-width: 100%; image-rendering: pixelated; } img.plot { image-rendering: auto; }
.missing { color: #777; font-style: italic; } .alarm { color: #b00020; }
.grids { display: flex; flex-wrap: wrap; gap: 12px; } figure { margin: 0; } figcaption { font-size: 13px; color: #555; text-align: center; }
.grids img { width: 220px; } nav a { margin-right: .8em; }
"""


def write_report(run_dir: str | Path, out: Path | None = None) -> Path:
    """Write RUN/report.html (every image inlined) and its plots as PNGs in RUN/report/; return the HTML path."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise ConfigError(not_a_run(run_dir))
    out = Path(out) if out is not None else run_dir / "report.html"
    if out.is_dir():
        out = out / "report.html"
    plot_dir = run_dir / "report"

    config, config_text, config_error = _read_config(run_dir)
    damaged: list[int] = []
    stats = [r for r in read_stats(run_dir, damaged) if isinstance(r.get("kimg"), (int, float))]
    metrics, metrics_error = _read_metrics(run_dir)
    fid_evals = _read_metric_lines(run_dir, "fid")
    coverage_evals = _read_metric_lines(run_dir, "coverage")
    alarms = [(r["kimg"], str(r["alarm"])) for r in stats if r.get("alarm")]

    plots = _make_plots(config, stats, metrics, fid_evals, coverage_evals, alarms)
    try:
        for name in PLOT_NAMES:
            # A plot that lost its data (say, metrics.json was deleted) must not linger beside the new report.
            if name not in plots:
                (plot_dir / f"{name}.png").unlink(missing_ok=True)
        for name, png in plots.items():
            atomic_write_bytes(plot_dir / f"{name}.png", png)
    except OSError as e:
        if out.resolve().is_relative_to(run_dir.resolve()):
            raise  # the page itself would fail to be written there too: one error, the first
        # A read-only run folder still gets its report elsewhere (--out): the page inlines every plot.
        log.warning(f"the plot files were not written to {plot_dir} ({e.strerror or e}); the report inlines them")

    eval_hint = f"run <code>counterfeit eval {_e(shell_word(run_dir))}</code>"
    toy = _data_name(config) in TOY_DATASETS  # 2-D points: scatter plots, modes for classes, no images to pair
    sections = [
        _header(run_dir, config, stats),
        _section_training(stats, plots, config, damaged, run_dir),
        _section_health(stats, plots, alarms, eval_hint, config),
        _section_classes(plots, metrics, metrics_error, eval_hint, _data_name(config)),
        _section_metrics(metrics, metrics_error, eval_hint),
        _section_samples(run_dir, toy),
        _section_pairs(run_dir, metrics, eval_hint, toy),
        *_section_augment(run_dir),
        _section_config(config_text, config_error),
    ]
    page = (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{_e(run_dir.name)}: counterfeit report</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )
    atomic_write_text(out, page)
    return out


# ---------------------------------------------------------------- reading


def _read_config(run_dir: Path) -> tuple[dict[str, Any], str, str | None]:
    # Read config.json as plain JSON, not RunConfig: a report must still work for runs from older or newer versions.
    text = (run_dir / "config.json").read_text(encoding="utf-8", errors="replace")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        return {}, text, f"config.json is not valid JSON ({e}); shown as written"
    if not isinstance(config, dict):
        return {}, text, "config.json is not a JSON object; shown as written"
    return config, json.dumps(config, indent=2), None


def _read_metrics(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_bytes())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, f"metrics.json could not be read ({e}); run the evaluation again"
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        return None, "metrics.json has no 'metrics' object; run the evaluation again"
    return data, None


def _read_metric_lines(run_dir: Path, name: str) -> list[dict[str, Any]]:
    path = run_dir / f"metric-{name}.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():  # a damaged byte spoils its line, not the report
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a torn last line from an interrupted evaluation
            continue
        if isinstance(row, dict) and isinstance(row.get("kimg"), (int, float)):
            rows.append(row)
    return sorted(rows, key=lambda r: r["kimg"])


def _loss_row(config: dict[str, Any]) -> tuple[str, Any]:
    """The header's loss row: the GAN's game, or an autoencoder's objective (it has no GAN loss)."""
    from .models import MODELS

    spec = MODELS.get(_section_of(config, "model", "name", ""))
    if spec is not None and spec.family == "autoencoder":
        beta = _section_of(config, "loss", "beta", None)
        return "objective", "reconstruction" + (f" + {beta:g} x KL" if spec.name == "vae" and isinstance(beta, (int, float)) else "")
    return "loss", _section_of(config, "loss", "name", "?")


def _loss_section(config: dict[str, Any]) -> dict[str, Any]:
    """config.json's loss section, or the default game (ns) when it is missing or broken."""
    loss = config.get("loss")
    return loss if isinstance(loss, dict) else {"name": "ns"}


def _section_of(config: dict[str, Any], section: str, key: str, default: Any = None) -> Any:
    value = config.get(section)
    return value.get(key, default) if isinstance(value, dict) else default


def _loss_name(config: dict[str, Any]) -> str | None:
    """The run's loss name, None when config.json does not say (no level is then drawn or claimed)."""
    name = _section_of(config, "loss", "name")
    return name if isinstance(name, str) else None


def _checkpoint_kimg(run_dir: Path) -> tuple[float | None, str | None]:
    """(kimg of the newest checkpoint, None without one; why it could not be read, or None)."""
    try:
        return (reached_nimg(run_dir) / 1000 if list_checkpoints(run_dir) else None), None
    except (CheckpointError, KeyError, TypeError, ValueError) as e:
        return None, str(e) if isinstance(e, CheckpointError) else f"{list_checkpoints(run_dir)[-1]} has no image count"


# ---------------------------------------------------------------- plots


def _make_plots(
    config: dict[str, Any],
    stats: list[dict[str, Any]],
    metrics: dict[str, Any] | None,
    fid_evals: list[dict[str, Any]],
    coverage_evals: list[dict[str, Any]],
    alarms: list[tuple[float, str]],
) -> dict[str, bytes]:
    figures = {
        "losses": _plot_losses(config, stats),
        "d_outputs": _plot_d_outputs(config, stats),
        "fid": _plot_fid(stats, fid_evals, alarms),
        "coverage": _plot_coverage(stats, coverage_evals, alarms, _section_of(config, "loop", "alarm_after_kimg", None)),
        "classes": _plot_classes(metrics),
    }
    if _data_name(config) in TOY_DATASETS:  # a toy's D is shown 2-D points, not images
        for fig in figures.values():
            for ax in fig.axes if fig is not None else ():
                if ax.get_xlabel() == KIMG_LABEL:
                    ax.set_xlabel(KIMG_LABEL.replace("images", "points"))
    return {name: _png(fig) for name, fig in figures.items() if fig is not None}


def _new_axes(title: str, ylabel: str | None = None, kimg: bool = True) -> tuple[Any, Any]:
    # Figure objects rather than pyplot: no global backend switch (a notebook keeps its own) and no figure registry to leak.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=11)
    if kimg:
        ax.set_xlabel(KIMG_LABEL)
        ax.grid(alpha=0.3)
    ax.set_ylabel(ylabel)
    return fig, ax


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pairs = [(r["kimg"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _dots(xs: list[float]) -> str | None:
    return "." if len(xs) < 3 else None  # a line through one point draws nothing (a run stopped in its first tick)


def _mark_alarms(ax: Any, alarms: list[tuple[float, str]]) -> None:
    for i, (kimg, _) in enumerate(alarms):
        ax.axvline(kimg, color="#b00020", ls=":", lw=1.2, label="alarm" if i == 0 else None)


def _png(fig: Any) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _plot_losses(config: dict[str, Any], stats: list[dict[str, Any]]) -> Any:
    xs_d, loss_d = _series(stats, "loss_D")
    xs_g, loss_g = _series(stats, "loss_G")
    if loss_d or loss_g:
        fig, ax = _new_axes("Losses", "loss")
        ax.plot(xs_d, loss_d, color="C0", label="loss_D", marker=_dots(xs_d))
        ax.plot(xs_g, loss_g, color="C1", label="loss_G", marker=_dots(xs_g))
        d_level, g_level = indifference_levels(_loss_section(config))
        for values, level, color in ((loss_d, d_level, "C0"), (loss_g, g_level, "C1")):
            if values and level is not None:
                ax.axhline(level[0], color=color, ls="--", lw=1, alpha=0.7, label=f"{level[1]} (D cannot tell)")
    elif any(_series(stats, k)[0] for k in AE_LOSSES):
        fig, ax = _new_axes("Losses (per image)", "loss")
        for i, k in enumerate(AE_LOSSES):
            xs, ys = _series(stats, k)
            if xs:
                ax.plot(xs, ys, color=f"C{i}", label=k, ls=":" if k == "loss" else "-", marker=_dots(xs))
    else:
        return None
    ax.legend(fontsize=8)
    return fig


def _plot_d_outputs(config: dict[str, Any], stats: list[dict[str, Any]]) -> Any:
    d_keys = [k for k in ("D(x)", "D(G(z))", "D(G(z))_after_D") if _series(stats, k)[0]]
    if not d_keys:
        return None
    loss_name = _loss_name(config)
    probability = loss_name in ("ns", "minimax")  # cross-entropy: sigmoid(score) is D's probability 'real'
    fig, ax = _new_axes("D's outputs", "mean probability 'real'" if probability else "mean sigmoid(D's score)")
    for k in d_keys:
        xs, ys = _series(stats, k)
        ax.plot(xs, ys, label=k, ls=":" if k.endswith("_after_D") else "-", marker=_dots(xs))
    if (level := d_output_level(loss_name)) is not None:
        value, label = level
        ax.axhline(value, color="grey", ls="--", lw=1, label=f"{label} (D cannot tell)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    return fig


def _plot_fid(stats: list[dict[str, Any]], fid_evals: list[dict[str, Any]], alarms: list[tuple[float, str]]) -> Any:
    quick = _series(stats, "cov/fid")
    full = _series(fid_evals, "fid")
    if not (quick[0] or full[0]):
        return None
    fig, ax = _new_axes("FID over training (lower is better)", "FID")
    if quick[0]:
        ax.plot(*quick, marker=".", color="C2", label="quick FID during training")
    if full[0]:
        ax.plot(*full, marker="o", color="C3", label="FID from counterfeit eval")
    _mark_alarms(ax, alarms)
    ax.legend(fontsize=8)
    return fig


def _plot_coverage(stats: list[dict[str, Any]], coverage_evals: list[dict[str, Any]], alarms: list[tuple[float, str]],
                   warmup_kimg: Any = None) -> Any:  # fmt: skip
    classes = _series(stats, "cov/classes")
    eval_classes = _series(coverage_evals, "classes_covered")
    modes = _series(stats, "toy/modes")
    if not (classes[0] or eval_classes[0] or modes[0]):
        return None
    what = " and ".join(w for w, xs in (("classes", classes[0] or eval_classes[0]), ("modes", modes[0])) if xs)
    fig, ax = _new_axes("Coverage over training", f"{what} covered")
    totals = []
    if classes[0]:
        ax.plot(*classes, marker=".", color="C0", drawstyle="steps-post", label="classes covered")
        totals.append(("classes", max(_series(stats, "cov/num_classes")[1], default=None), "C0"))
    if eval_classes[0]:
        ax.plot(*eval_classes, marker="o", ls="", color="C3", label="classes covered (counterfeit eval)")
        if not classes[0]:
            totals.append(("classes", max(_series(coverage_evals, "num_classes")[1], default=None), "C0"))
    if modes[0]:
        ax.plot(*modes, marker=".", color="C4", drawstyle="steps-post", label="toy modes covered")
        totals.append(("modes", max(_series(stats, "toy/modes_total")[1], default=None), "C4"))
    for what, total, color in totals:
        if total is not None:
            ax.axhline(total, color=color, ls="--", lw=1, alpha=0.7, label=f"all {total:g} {what}")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.05)  # keep the "all N" line off the frame
    _mark_alarms(ax, alarms)
    last = max((r["kimg"] for r in stats if isinstance(r.get("kimg"), (int, float))), default=0)
    if isinstance(warmup_kimg, (int, float)) and 0 < warmup_kimg <= last:  # before it the alarm does not judge missing ones
        # A toy is not judged at all before it; classes are, for a fall below their best (metrics.classes.CollapseAlarm).
        judged = "judges" if modes[0] else "counts missing classes"
        ax.axvline(warmup_kimg, color="0.5", ls="-.", lw=1, label=f"alarm {judged} from {warmup_kimg:g} kimg")
    hq = _series(stats, "toy/hq")
    if hq[0]:
        ax2 = ax.twinx()
        ax2.plot(*hq, color="C5", alpha=0.7, label="high-quality samples (%)")
        ax2.set_ylabel("high-quality samples (%)")
        ax2.set_ylim(0, 100)
        ax2.legend(fontsize=8, loc="lower right")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def _plot_classes(metrics: dict[str, Any] | None) -> Any:
    hist_fake, hist_real = _histograms(metrics)
    if not hist_fake:
        return None
    names = list(hist_fake) + [n for n in (hist_real or {}) if n not in hist_fake]
    # Shares, not counts: the fakes and the reals are rarely the same number of images.
    fake_share = _shares(hist_fake, names)
    fig, ax = _new_axes("Classes the judge sees in the fakes vs the reals", "share of images (%)", kimg=False)
    width = 0.4 if hist_real else 0.8
    pos = list(range(len(names)))
    ax.bar([p - width / 2 if hist_real else p for p in pos], fake_share, width, color="C1", label="fakes")
    if hist_real:
        ax.bar([p + width / 2 for p in pos], _shares(hist_real, names), width, color="C0", label="reals")
    ax.set_xticks(pos)
    ax.set_xticklabels(names, rotation=45 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _histograms(metrics: dict[str, Any] | None) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    cov = (metrics or {}).get("metrics", {}).get("coverage")
    if not isinstance(cov, dict):
        return None, None

    def clean(h: Any) -> dict[str, float] | None:
        if not isinstance(h, dict):
            return None
        out = {str(k): float(v) for k, v in h.items() if isinstance(v, (int, float))}
        return out or None

    # The reals' share as coverage asked for it (a class left out of training has none), else their plain counts.
    return clean(cov.get("histogram")), clean(cov.get("real_share")) or clean(cov.get("real_histogram"))


def _shares(hist: dict[str, float], names: list[str]) -> list[float]:
    total = sum(hist.values()) or 1.0
    return [100 * hist.get(n, 0.0) / total for n in names]


# ---------------------------------------------------------------- HTML


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _missing(text: str) -> str:
    # `text` may carry markup (a <code> hint); every caller escapes the variable parts itself.
    return f"<p class='missing'>{text}</p>"


def _img(data: bytes, alt: str, cls: str = "", mime: str = "image/png") -> str:
    src = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    return f"<img{f' class={cls!r}' if cls else ''} alt='{_e(alt)}' src='{src}'>"


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _header(run_dir: Path, config: dict[str, Any], stats: list[dict[str, Any]]) -> str:
    last = stats[-1] if stats else {}
    total = _section_of(config, "loop", "total_kimg")
    saved, problem = _checkpoint_kimg(run_dir)  # a stop saves between ticks: the checkpoint can be ahead of the stats
    saved = saved or 0.0
    logged = last["kimg"] if "kimg" in last else 0.0
    kimg = f"{_kimg(max(saved, logged))}"  # a run ends on a whole batch: 50.048 reads as 50
    if isinstance(total, (int, float)):
        kimg += f" of {total:g}"
    if saved > logged:
        kimg += f" (the checkpoint; stats to {_kimg(logged)})" if stats else " (the checkpoint; no stats yet)"
    elif not stats:
        kimg += " (no stats yet)"
    if problem:
        kimg += " (the newest checkpoint is unreadable)"
    seconds = last.get("seconds")
    wall = f"{seconds:g} s ({_duration(seconds)})" if isinstance(seconds, (int, float)) else "unknown"
    rows = [
        ("data", _section_of(config, "data", "name", "?")),
        ("model", _section_of(config, "model", "name", "?")),
        _loss_row(config),
        ("kimg reached", kimg),
        ("wall-clock", wall),
    ]
    if isinstance(last.get("img/s"), (int, float)):
        unit = "points/s" if _data_name(config) in TOY_DATASETS else "img/s"  # a toy's items are 2-D points
        rows.append(("speed at the end", f"{last['img/s']:g} {unit}"))
    table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    links = [("training", "training"), ("health", "FID and coverage"), ("classes", "classes"), ("metrics", "metrics"),
             ("samples", "samples"), ("pairs", "nearest neighbours"), ("config", "config")]  # fmt: skip
    if (run_dir / "eval" / "augment.json").is_file():
        links.insert(-1, ("augment", "fakes at work"))
    nav = "".join(f"<a href='#{a}'>{t}</a>" for a, t in links)
    return f"<h1>{_e(run_dir.name)}</h1>\n<table>{table}</table>\n<nav>{nav}</nav>"


def _section_training(
    stats: list[dict[str, Any]], plots: dict[str, bytes], config: dict[str, Any], damaged: list[int], run_dir: Path
) -> str:
    parts = ["<h2 id='training'>Training curves</h2>"]
    if damaged:
        where = ", ".join(str(n) for n in damaged[:5]) + (", ..." if len(damaged) > 5 else "")
        parts.append(_missing(f"stats.jsonl has {len(damaged)} unreadable line{'s' if len(damaged) > 1 else ''} (line "
                              f"{where}), left out of the curves"))  # fmt: skip
    if not stats:
        saved, problem = _checkpoint_kimg(run_dir)
        how = f"counterfeit train --resume {_e(shell_word(run_dir))}" if saved is not None and not problem else "counterfeit train"
        parts.append(_missing(f"no training statistics yet: stats.jsonl is missing or empty; train with <code>{how}</code>"))
        return "\n".join(parts)
    ae = not any("loss_D" in r or "loss_G" in r for r in stats) and any(k in r for r in stats for k in AE_LOSSES)
    if "losses" in plots and ae:
        parts.append(
            "<p>An autoencoder's losses, per image: loss_rec is the binary cross-entropy of its reconstructions (above 0 even "
            "when perfect, for grey pixels), loss_kl the VAE's KL term, loss = loss_rec + beta * loss_kl.</p>"
        )
        parts.append(_img(plots["losses"], "loss curves", "plot"))
    elif "losses" in plots:
        loss_name = _loss_name(config)
        d_level, g_level = indifference_levels(_loss_section(config))
        extra = extra_terms(_loss_section(config))
        if extra:
            flags = ", ".join("--" + k.replace("_", "-") for k in extra)
            parts.append(f"<p>The logged losses include the terms of {flags} on top of the game's own loss, so no line marks "
                         f"where D cannot tell reals from fakes.</p>")  # fmt: skip
        levels = [(who, level) for who, level in (("D", d_level), ("G", g_level)) if level is not None]
        # a level named by its value ("2") needs no approximation beside it
        named = [
            f"{label} for {who}" if label == f"{value:g}" else f"{label} &asymp; {value:.3f} for {who}" for who, (value, label) in levels
        ]
        if named:
            lines = "lines" if len(named) > 1 else "line"
            hinge = " G's hinge loss is minus D's mean score of its fakes, so it has no such level." if loss_name == "hinge" else ""
            parts.append(
                f"<p>The dashed {lines}, {' and '.join(named)}, {'are' if len(named) > 1 else 'is'} where the losses sit when D "
                f"cannot tell reals from fakes.{hinge}</p>"
            )
        parts.append(_img(plots["losses"], "loss curves", "plot"))
    else:
        parts.append(_missing("no losses in stats.jsonl"))
    if "d_outputs" in plots:
        parts.append(f"<p>D(x) is D's mean verdict on reals, D(G(z)) on fakes (before D's step; _after_D: after it). "
                     f"{_d_output_reading(_loss_name(config))}</p>")  # fmt: skip
        parts.append(_img(plots["d_outputs"], "D outputs", "plot"))
    elif not ae:  # an autoencoder has no D to report on
        parts.append(_missing("no D outputs in stats.jsonl"))
    return "\n".join(parts)


def _d_output_reading(loss_name: str | None) -> str:
    """How to read the D(x) and D(G(z)) curves of a run trained with `loss_name`."""
    if loss_name in ("ns", "minimax"):
        return "Both are D's probability 'real' and drift to 0.5 when D cannot tell them apart."
    if loss_name == "lsgan":
        return ("Each is the sigmoid of D's score; least squares aims that score at 1 for reals and 0 for fakes, so a D "
                f"that cannot tell scores 1/2 on both: the dashed line, {d_output_level('lsgan')[1]}.")  # fmt: skip
    if loss_name == "hinge":
        return ("Each is the sigmoid of D's score, not a probability: with the hinge loss any score that reals and fakes "
                "share (within the margin) is an optimum, so the two curves meet when D cannot tell, at no fixed level.")  # fmt: skip
    if loss_name == "wgan-gp":
        return ("Each is the sigmoid of the critic's score, not a probability: a critic's scores drift freely (only the gap "
                "between reals and fakes, its estimate of the distance, means anything), so read the gap, not the level; "
                "the FID, where the run has one, says more about quality.")  # fmt: skip
    return "Each is the sigmoid of D's score; the two curves meet when D cannot tell reals from fakes."


def _section_health(
    stats: list[dict[str, Any]], plots: dict[str, bytes], alarms: list[tuple[float, str]], eval_hint: str, config: dict[str, Any]
) -> str:
    parts = ["<h2 id='health'>FID and coverage over training</h2>"]
    if "fid" in plots:
        parts.append(_img(plots["fid"], "FID over training", "plot"))
    elif _data_name(config) in TOY_DATASETS:
        parts.append(_missing("no FID for 2-D points: a toy run is scored by the modes it covers and its share of "
                              "high-quality samples (the chart below)"))  # fmt: skip
    else:
        parts.append(_missing(f"no FID yet: no training-time evaluation in stats.jsonl and no metric-fid.jsonl; {eval_hint}"))
    name = _data_name(config)
    if "coverage" in plots:
        parts.append(_img(plots["coverage"], "coverage over training", "plot"))
    elif name is not None and name not in IDX_DATASETS and name not in TOY_DATASETS:  # a folder: no judge knows its classes
        parts.append(_missing("no coverage, and no collapse alarm, for your own images: both need a judge that knows the "
                              "data's classes (the shipped one knows Fashion-MNIST's). Look for repeats in the sample grids "
                              "below, and for D(G(z)) above D(x) in D's outputs above"))  # fmt: skip
    else:
        parts.append(_missing(f"no coverage measurements yet; {eval_hint}"))
    if alarms:
        items = "".join(f"<li>{_alarm_episode(e)}</li>" for e in _alarm_episodes(stats))
        parts.append(f"<p class='alarm'>Mode-collapse alarms (dotted red lines above):</p>\n<ul class='alarm'>{items}</ul>")
    elif any(is_evaluation(r) for r in stats):
        armed = _section_of(config, "loop", "alarm_after_kimg", 40.0)
        reached = stats[-1]["kimg"]
        if isinstance(armed, (int, float)) and reached < armed:  # the alarm judges absolute coverage only from there on
            early = ("a toy's modes come and go while G finds them, so until then it does not judge" if name in TOY_DATASETS
                     else "until then it watches only for coverage falling 2 or more below the best seen")  # fmt: skip
            parts.append(f"<p>No mode-collapse alarm fired. Its checks of missing {'modes' if name in TOY_DATASETS else 'classes'} "
                         f"and duplicates start at {armed:g} kimg (--alarm-after-kimg) and this run's stats reach {reached:g}: "
                         f"{early}. Read the coverage chart above.</p>")  # fmt: skip
        else:
            parts.append("<p>No mode-collapse alarm fired.</p>")
    return "\n".join(parts)


def _alarm_episodes(stats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs of evaluations in which the alarm fired, each with its first and last message and where it cleared."""
    episodes: list[dict[str, Any]] = []
    open_episode = None
    for r in stats:
        if not is_evaluation(r) and not r.get("alarm"):
            continue  # a tick without an evaluation says nothing either way
        if r.get("alarm"):
            if open_episode is None:
                open_episode = {"start": r["kimg"], "first": str(r["alarm"]), "count": 0, "cleared": None}
                episodes.append(open_episode)
            open_episode.update(end=r["kimg"], last=str(r["alarm"]), count=open_episode["count"] + 1)
            if "; to try: " in str(r["alarm"]):  # a toy streak turning from 'not finding the data' to collapsing is told anew
                open_episode["told"] = str(r["alarm"])
        elif open_episode is not None:
            open_episode["cleared"], open_episode = r["kimg"], None
    return episodes


def _alarm_episode(e: dict[str, Any]) -> str:
    k = lambda kimg: f"{round(kimg, 1):g}"  # noqa: E731  (evaluations fall on tick ends: 60.032 reads as 60)
    span = f"{k(e['start'])} kimg" if e["count"] == 1 else f"{k(e['start'])} to {k(e['end'])} kimg ({e['count']} evaluations)"
    if e["cleared"] is not None:
        return f"<b>{span}</b>, cleared at {k(e['cleared'])} kimg: {_e(e['first'])}"
    last, _, remedy = e["last"].partition("; to try: ")
    told = e.get("told", e["first"])  # the streak's latest message that said what to try
    remedy = remedy or told.partition("; to try: ")[2].partition("; D ")[0]  # less its D verdict
    return f"<b>{span}</b>, still firing at the last evaluation: {_e(last)}" + (f"; to try: {_e(remedy)}" if remedy else "")


def _kimg(kimg: float) -> str:
    """kimg to one decimal from 1 on (50.048 reads as 50), to three below it (a tiny run's 0.128 stays 0.128)."""
    return f"{round(kimg, 1 if kimg >= 1 else 3):g}"


def _data_name(config: dict[str, Any]) -> str | None:
    data = config.get("data")
    return data.get("name") if isinstance(data, dict) and isinstance(data.get("name"), str) else None


def _section_classes(plots: dict[str, bytes], metrics: dict[str, Any] | None, metrics_error: str | None, eval_hint: str,
                     data_name: str | None = None) -> str:  # fmt: skip
    parts = ["<h2 id='classes'>Classes in the fakes</h2>"]
    judged = data_name is None or data_name in IDX_DATASETS  # unknown (an unreadable config): keep the usual hint
    if "classes" in plots:
        cov = metrics["metrics"]["coverage"] if metrics else {}
        facts = [
            f"{_e(_fmt(cov[k]))} {label}"
            for k, label in (("classes_covered", "classes covered"), ("num_classes", "classes in all"), ("kl", "KL to the reals"),
                             ("duplicate_rate", "duplicate rate"))
            if k in cov
        ]  # fmt: skip
        if facts:
            parts.append(f"<p>{', '.join(facts)}.</p>")
        off = cov.get("off_target")
        if isinstance(off, dict) and isinstance(off.get("fraction"), (int, float)) and isinstance(off.get("classes"), list):
            names = ", ".join(str(c) for c in off["classes"])
            parts.append(f"<p>{_e(names)}: left out of training (--exclude-class), so no share of the reals is asked for it; "
                         f"{100 * off['fraction']:.2f} % of the fakes were judged to be it.</p>")  # fmt: skip
        parts.append(_img(plots["classes"], "class histogram", "plot"))
    elif data_name in TOY_DATASETS:  # its modes are its classes, counted by the coverage chart
        parts.append(_missing("a 2-D toy has modes, not classes: the modes covered are charted under "
                              "<a href='#health'>FID and coverage</a>, and scored under <a href='#metrics'>Metrics</a>"))  # fmt: skip
    elif not judged:
        parts.append(_missing(f"class coverage counts Fashion-MNIST and MNIST classes, which the judge knows; this run "
                              f"trained on {_e(data_name)}"))  # fmt: skip
    elif metrics_error:
        parts.append(_missing(_e(metrics_error)))
    elif metrics is None:
        parts.append(_missing(f"no evaluation yet: {eval_hint}"))
    else:
        parts.append(_missing(f"metrics.json has no class histogram; {eval_hint} with the coverage metric"))
    return "\n".join(parts)


def _section_metrics(metrics: dict[str, Any] | None, metrics_error: str | None, eval_hint: str) -> str:
    parts = ["<h2 id='metrics'>Metrics</h2>"]
    if metrics_error:
        parts.append(_missing(_e(metrics_error)))
        return "\n".join(parts)
    if metrics is None:
        parts.append(_missing(f"no evaluation yet: {eval_hint}"))
        return "\n".join(parts)
    about = [f"{k} {_e(_fmt(metrics[k]))}" for k in ("kimg", "checkpoint", "created") if k in metrics]
    if about:
        parts.append(f"<p>From metrics.json: {', '.join(about)}.</p>")
    if not metrics["metrics"]:
        parts.append(_missing(f"metrics.json lists no metrics; {eval_hint}"))
    for group in _evaluations(metrics["metrics"]):
        provs = {name: metrics["metrics"][name]["provenance"] for name in group if _provenance(metrics["metrics"][name])}
        # One evaluation's metrics share most of their provenance (the same fakes, reference and backbone): it is
        # shown once for them all, and beside each metric only what is its own (KID's kernel, a warning).
        shared, own = _split_provenance(provs) if len(provs) > 1 else ([], provs)
        if shared:
            parts.append(f"<details><summary>provenance shared by {_e(_and(list(provs)))} (one evaluation)</summary>"
                         f"<table>{_shared_rows(shared, list(provs))}</table></details>")  # fmt: skip
        for name in group:
            parts.append(_metric(name, metrics["metrics"][name], own.get(name), bool(shared)))
    return "\n".join(parts)


# Two scores are called "coverage" in metrics.json: pr's k-NN coverage (Naeem et al. 2020: the share of reals with a
# fake closer than their k-th nearest real) and the coverage metric, the classes the judge sees. Bare, they read as one.
_METRIC_TITLES = {"pr": "precision, recall, density and k-NN coverage", "coverage": "class coverage"}
_ROW_LABELS = {"pr": {"coverage": "k-NN coverage"}}


def _metric(name: str, values: Any, prov: dict[str, Any] | list[tuple[str, Any]] | None, shared: bool) -> str:
    """A metric's heading, its table of scalars and its provenance (only its own part when the rest is `shared`)."""
    base = name.partition("-drs")[0]  # fid-drs90 is a fid
    title = _METRIC_TITLES.get(base)
    parts = [f"<h3>{_e(name)}{f' ({title})' if title else ''}</h3>"]
    if not isinstance(values, dict):
        return "\n".join([*parts, f"<p>{_e(_fmt(values))}</p>"])
    # Histograms and other nested values are drawn above or belong to provenance; the table keeps the scalars.
    rows = [(k, v) for k, v in values.items() if k != "provenance" and not isinstance(v, (dict, list))]
    if rows:
        label = _ROW_LABELS.get(base, {})
        cells = "".join(
            f"<tr><th>{_e(label.get(k, k))}</th><td{' class=num' if isinstance(v, (int, float)) else ''}>{_e(_fmt(v))}</td></tr>"
            for k, v in rows
        )
        parts.append(f"<table>{cells}</table>")
    if base == "toy" and isinstance(values.get("modes_total"), int):  # raw keys (high_quality_pct, reverse_kl) need a scale
        parts.append(f"<p>{_e(how_to_read(values))}.</p>")
    items = list(prov.items()) if isinstance(prov, dict) else prov or []
    if items:
        summary = f"provenance of {_e(name)} alone (the rest is shared, above)" if shared else "provenance"
        parts.append(f"<details><summary>{summary}</summary><table>{_prov_rows(items)}</table></details>")
    return "\n".join(parts)


def _provenance(values: Any) -> dict[str, Any] | None:
    prov = values.get("provenance") if isinstance(values, dict) else None
    return prov if isinstance(prov, dict) and prov else None


def _evaluations(results: dict[str, Any]) -> list[list[str]]:
    """metrics.json's metric names grouped by the evaluation that scored them, in order of first appearance.

    metrics.json keeps earlier scores of the same checkpoint beside new ones (an --anomaly AUROC, a --drs score):
    one evaluation is the metrics with the same run time, checkpoint, seed and --drs in their provenance.
    """
    groups: dict[Any, list[str]] = {}
    for i, (name, values) in enumerate(results.items()):
        prov = _provenance(values)
        key = (
            tuple(json.dumps(prov.get(k)) for k in ("seconds", "checkpoint_sha256", "seed", "drs_percentile")) if prov else i
        )  # no provenance: a group of its own
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def _split_provenance(provs: dict[str, dict[str, Any]]) -> tuple[list[tuple[list[str], list[tuple[str, Any]]]], dict[str, list]]:
    """(rows held by two or more metrics, grouped by which, the most widely held first; each metric's own rows)."""
    holders: dict[tuple[str, str], list[str]] = {}
    values: dict[tuple[str, str], Any] = {}
    for name, prov in provs.items():
        for k, v in prov.items():
            key = (k, json.dumps(v, sort_keys=True))  # a field with the same value is shared, whatever its type
            holders.setdefault(key, []).append(name)
            values[key] = v
    shared: dict[tuple[str, ...], list[tuple[str, Any]]] = {}
    own: dict[str, list[tuple[str, Any]]] = {name: [] for name in provs}
    for key, names in holders.items():
        if len(names) > 1:
            shared.setdefault(tuple(names), []).append((key[0], values[key]))
        else:
            own[names[0]].append((key[0], values[key]))
    return sorted(((list(n), rows) for n, rows in shared.items()), key=lambda g: -len(g[0])), own


def _shared_rows(shared: list[tuple[list[str], list[tuple[str, Any]]]], everyone: list[str]) -> str:
    """The shared provenance's rows; those not held by every metric of the evaluation under a line naming their holders."""
    out = []
    for names, rows in shared:
        if names != everyone:
            out.append(f"<tr><th colspan=2>{_e(_and(names))} only:</th></tr>")
        out.append(_prov_rows(rows))
    return "".join(out)


def _prov_rows(rows: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{_e(json.dumps(v) if isinstance(v, (dict, list)) else _fmt(v))}</td></tr>" for k, v in rows)


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _section_samples(run_dir: Path, toy: bool = False) -> str:
    parts = ["<h2 id='samples'>Samples over training</h2>"]
    grids = sample_grids(run_dir)
    reals = run_dir / "samples" / "reals.png"
    if not grids and not reals.is_file():
        parts.append(_missing("no sample grids yet: samples/ holds no fakes*.png or reals.png"))
        return "\n".join(parts)
    if grids:
        shown = evenly(grids, MAX_GRIDS)
        note = f" ({len(shown)} of {len(grids)}, evenly spaced)" if len(shown) < len(grids) else ""
        parts.append(f"<p>The same fixed noise through G at each point of training{note}.</p>")
    else:
        shown = []
        parts.append(_missing("no fake sample grids yet"))
    figures = []
    for kimg, path in shown:
        figures.append(
            f"<figure>{_img(path.read_bytes(), f'fakes at {kimg:g} kimg')}<figcaption>{_e(f'{kimg:g}')} kimg</figcaption></figure>"
        )
    if reals.is_file():
        figures.append(f"<figure>{_img(reals.read_bytes(), 'real images')}<figcaption>reals</figcaption></figure>")
    recons = sorted((float(m.group(1)), p) for p in (run_dir / "samples").iterdir() if (m := _RECON.match(p.name)) and p.is_file())
    if recons:  # autoencoders: the newest reconstruction grid
        kimg, path = recons[-1]
        figures.append(f"<figure>{_img(path.read_bytes(), f'reconstructions at {kimg:g} kimg')}"
                       f"<figcaption>reals (top), reconstructions (bottom), {_e(f'{kimg:g}')} kimg</figcaption></figure>")  # fmt: skip
    parts.append(f"<div class='grids'>{''.join(figures)}</div>")
    gif = timelapse_gif(run_dir) if grids else None  # made from the grids on disk, so it is current even mid-run
    if gif is not None:
        try:
            atomic_write_bytes(run_dir / "samples" / GIF_NAME, gif)  # the promise: report (re)writes samples/timelapse.gif
        except OSError:  # a read-only run folder still gets its report (written elsewhere with --out)
            pass
        drawn = "scatter plots" if toy else "readable grids"
        parts.append(f"<h3>Timelapse</h3>\n<p>The {drawn} as an animation (samples/{GIF_NAME}, at most {MAX_FRAMES} frames).</p>")
        alt = f"timelapse of the {'scatter plots' if toy else 'sample grids'}"
        parts.append(f"<figure class='timelapse'>{_img(gif, alt, mime='image/gif')}</figure>")
    return "\n".join(parts)


def _section_pairs(run_dir: Path, metrics: dict[str, Any] | None, eval_hint: str, toy: bool = False) -> str:
    parts = [f"<h2 id='pairs'>Nearest training {'points' if toy else 'images'}</h2>"]
    if toy:  # counterfeit eval scores a toy's modes; it has no memorisation check to suggest
        parts.append(_missing("no nearest-neighbour pairs for 2-D points: a toy is scored by the modes it covers (Metrics)"))
        return "\n".join(parts)
    mem = (metrics or {}).get("metrics", {}).get("memorisation")
    rel = mem.get("pairs_png") if isinstance(mem, dict) else None
    path = run_dir / rel if isinstance(rel, str) and rel else None
    if path is None or not path.is_file():
        why = f"{_e(rel)} is missing" if isinstance(rel, str) and rel else f"no memorisation check yet; {eval_hint}"
        parts.append(_missing(f"no nearest-neighbour pairs: {why}"))
        return "\n".join(parts)
    facts = [
        f"{label} {_e(_fmt(mem[k]))}"
        for k, label in (("near_copy_fraction", "near-copy fraction"), ("fake_to_train_median", "median fake-to-train distance"),
                         ("test_to_train_median", "median test-to-train distance"))
        if k in mem
    ]  # fmt: skip
    parts.append(
        "<p>Each fake beside its closest training image; fakes much closer to the training set than held-out reals are may be copies.</p>"
    )
    if facts:
        parts.append(f"<p>{', '.join(facts)}.</p>")
    mime = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}.get(path.suffix.lower(), "image/png")
    parts.append(_img(path.read_bytes(), "closest fake/train pairs", mime=mime))
    return "\n".join(parts)


def _section_augment(run_dir: Path) -> list[str]:
    # Only when `counterfeit augment-eval` has written its record; a damaged record is said, not fatal.
    path = run_dir / "eval" / "augment.json"
    if not path.is_file():
        return []
    from .augment_eval import labels_note, setting_label

    parts = ["<h2 id='augment'>Put the fakes to work: train on fakes, test on real</h2>"]
    try:
        rec = json.loads(path.read_bytes())
        pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}"
        rows = "".join(
            f"<tr><td>{_e(setting_label(r['setting'], rec['n_fakes']))}</td><td class=num>{r['train_images']:,}</td>"
            f"<td class=num>{pct(r['mean'])}</td><td class=num>{pct(r['std'])}</td></tr>"
            for r in rec["results"]
        )
        test = rec["test"]
        no_split = "" if test["held_out"] else " Folder data has no held-out split: the test images are the training images."
        parts.append(
            f"<p>One classifier, {_e(rec['classifier'])}, {_e(_fmt(rec['epochs']))} epochs, trained on each set with "
            f"{_e(rec['seeds'])} seed{'s' if rec['seeds'] != 1 else ''} and tested on {test['n']:,} real images of {_e(test['source'])}. {_e(labels_note(rec))}{no_split}</p>"
        )
        if rec.get("warning"):  # an ae/dae run's noise-like fakes (records written before the key have none)
            parts.append(f"<p class='alarm'>Warning: {_e(rec['warning'])}.</p>")
        parts.append(
            f"<table><tr><th>training set</th><th>images</th><th>real-test accuracy (%)</th><th>std over seeds (pp)</th></tr>{rows}</table>"
        )
        at = f", the checkpoint at {rec['kimg']:g} kimg" if isinstance(rec.get("kimg"), (int, float)) else ""
        parts.append(f"<p>From eval/augment.json{at}, {_e(rec.get('date', ''))}, {_e(_fmt(rec.get('seconds')))} s.</p>")
        newest, _ = _checkpoint_kimg(run_dir)
        if at and newest is not None and newest > rec["kimg"] + 5e-4:  # the run trained on (a resume) after this record was made
            parts.append(_missing(f"the run has trained on since, to {newest:g} kimg: run <code>counterfeit augment-eval "
                                  f"{_e(shell_word(run_dir))}</code> again for its newest checkpoint"))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as e:
        parts.append(
            _missing(
                f"eval/augment.json could not be read ({_e(type(e).__name__)}: {_e(e)}); run <code>counterfeit augment-eval {_e(shell_word(run_dir))}</code> again"
            )
        )
    return ["\n".join(parts)]


def _section_config(config_text: str, config_error: str | None) -> str:
    parts = ["<h2 id='config'>Config</h2>"]
    if config_error:
        parts.append(_missing(_e(config_error)))
    parts.append(f"<pre>{html.escape(config_text, quote=False)}</pre>")  # quotes stay readable in the page source
    return "\n".join(parts)
