"""Cheap evaluation during training: class coverage, duplicates and a quick FID, the mode-collapse alarm, and D's verdict."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ..data import IDX_DATASETS, TOY_DATASETS, DataError, Dataset, load_dataset, toy_modes
from ..evaluator import EvaluatorWeightsError, load_evaluator, predict
from ..machine import cpu_has_native_bf16
from ..models import NO_PRIOR
from ..sample import default_labels, make_noise, sample, to_uint8
from .classes import CollapseAlarm, class_coverage, duplicate_rate, duplicate_threshold
from .fid import fid
from .toy import toy_metrics_from_centres

DEFAULTS = "the default --loss and learning rates"  # the alarm's advice when the run's own settings are not known

log = logging.getLogger("counterfeit")
MONITOR_SEED = 1234  # its own noise, so evaluating never moves the training RNG (resume stays exact)


class TrainingMonitor:
    """Scores the EMA generator every few kimg; `__call__` returns stats for stats.jsonl (with 'alarm' when it fires)."""

    def __init__(self, kind: str, n: int, warmup_kimg: float, evaluator=None, real_feats=None, real_share=None, class_names=None,
                 dup_threshold=None, centres=None, sigma=None, pixel_range=None, precision: str = "fp32", left_out=None,
                 model: str = "dcgan", defaults: str | None = DEFAULTS):  # fmt: skip
        self.model, self.defaults = model, defaults
        self.kind, self.n, self.pixel_range, self.precision, self.left_out = kind, n, pixel_range, precision, left_out
        self.evaluator, self.real_feats, self.real_share, self.class_names = evaluator, real_feats, real_share, class_names
        self.dup_threshold, self.centres, self.sigma = dup_threshold, centres, sigma
        self.alarm = CollapseAlarm(warmup_kimg=warmup_kimg, unit="classes" if kind == "images" else "modes")
        # None when quiet, else whether the streak's remedies were for a G not finding the data (alarm.lost): the first
        # message of each streak says what may help, and so does the first after it turns from one kind to the other
        self.firing: bool | None = None

    def replay(self, rows: list[dict[str, Any]]) -> None:
        """Rebuild the alarm's memory from stats rows of a resumed run."""
        for r in rows:
            if "cov/classes" in r:
                msg = self.alarm.update(r["kimg"], r["cov/classes"], r["cov/num_classes"], r.get("cov/dup"))
            elif "toy/modes" in r:
                msg = self.alarm.update(r["kimg"], r["toy/modes"], r["toy/modes_total"], quality_pct=r.get("toy/hq"))
            else:
                continue
            self.firing = self.alarm.lost if msg is not None else None

    @torch.no_grad()
    def __call__(self, G_ema: nn.Module, kimg: float) -> dict[str, Any]:
        """Evaluate n samples from fixed noise; returns the stats row fragment."""
        device = next(G_ema.parameters()).device
        labels = default_labels(G_ema, self.n, device)  # (n,) balanced, or None when unconditional
        with self._autocast(device):
            out = sample(G_ema, make_noise(self.n, G_ema.z_dim, MONITOR_SEED, device), labels)  # (n, C, H, W) or (n, 2), float32
        if self.kind == "points":
            t = toy_metrics_from_centres(out, self.centres, self.sigma)
            row = {"toy/modes": t["modes_covered"], "toy/modes_total": t["modes_total"], "toy/hq": round(t["high_quality_pct"], 2)}
            msg = self.alarm.update(kimg, t["modes_covered"], t["modes_total"], quality_pct=t["high_quality_pct"])
        else:
            with self._autocast(next(self.evaluator.parameters()).device):
                probs, feats = predict(self.evaluator, to_uint8(out, self.pixel_range))  # (n, C), (n, D)
            probs, feats = probs.float(), feats.float()
            cov = class_coverage(probs, self.class_names, self.real_share, self.left_out)
            dup = duplicate_rate(feats, self.dup_threshold)
            row = {"cov/classes": cov["classes_covered"], "cov/num_classes": cov["num_classes"], "cov/kl": cov["kl"],
                   "cov/dup": round(dup, 4), "cov/fid": round(fid(feats, self.real_feats), 3)}  # fmt: skip
            if "off_target" in cov:  # fakes judged to be the class left out of training
                row["cov/off_target"] = cov["off_target"]["fraction"]
            if labels is not None:  # does G draw the class it was asked for?
                row["cov/label_acc"] = round(float((probs.argmax(1) == labels.cpu()).float().mean()), 4)
            msg = self.alarm.update(kimg, cov["classes_covered"], cov["num_classes"], dup)
            if msg and cov["missing"]:
                msg += f" (missing: {', '.join(cov['missing'])})"
        if msg:
            told = self.firing == self.alarm.lost
            advice = remedies(self.kind, labels is not None, self.model, self.alarm.lost, self.defaults)
            row["alarm"] = msg if told else f"{msg}; {advice}"
        self.firing = self.alarm.lost if msg else None
        return row

    def _autocast(self, device: torch.device):
        # A bf16 run's monitor samples and judges in bf16 too: 2.6x faster on an AMX CPU (0.49 -> 0.19 s per call, about
        # 9 s of the default run), and on the test set the judge's accuracy, FID and duplicate rate did not move
        # (RESULTS.md, speed A/B, the training-time monitor, 2026-12-06). The reals' features stay float32, computed once.
        # The judge runs on the CPU even in a GPU run, so there bf16 waits for a CPU that computes it natively.
        native = device.type != "cpu" or cpu_has_native_bf16()
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16" and native)


def remedies(kind: str, conditional: bool, model: str = "dcgan", lost: bool = False, defaults: str | None = DEFAULTS) -> str:
    """What to try against a collapse (or, `lost`, a G that never found the data), as options `model` takes.

    `defaults` names the run's settings that differ from the model's defaults (see `back_to_defaults`); None when the
    run already has them, so going back to them is no advice.
    """
    back = f"{defaults}, " if defaults else ""
    if lost:  # no mode to keep: the anti-collapse terms have nothing to work on
        return f"to try: {back}or another --seed" if defaults else "to try: another --seed, or a longer --kimg"
    if model == "vae":  # its prior samples blur into a few average items when the KL term dominates
        return "to try: a smaller --beta, a longer run, or another --seed"
    if model in NO_PRIOR:
        return "an ae/dae decoder never learned to draw from random codes; to try: --model vae, whose prior is meant for sampling"
    if kind == "points":
        return f"to try: --pack 4 or --recall-weight 6, {back}or another --seed"
    if model == "lecture":  # its D is the lecture's, with no minibatch-std or packing
        return f"to try: --recall-weight 10, {back}another --seed, or --model dcgan with --mbstd"
    pack = "" if conditional else " or --pack 2"  # a conditional D judges each sample with its own label
    return f"to try: --mbstd{pack}, --recall-weight 10, {back}or another --seed"


def back_to_defaults(run: dict[str, Any], default: dict[str, Any]) -> str | None:
    """'the defaults --lr-g 0.0002 (this run has 0.002)' for the loss and learning rates that differ, else None.

    `run` and `default` map 'loss', 'lr_g' and 'lr_d' to this run's values and the model's defaults.
    """
    changed = [k for k in ("loss", "lr_g", "lr_d") if run[k] != default[k]]
    if not changed:
        return None
    flag = {"loss": "--loss", "lr_g": "--lr-g", "lr_d": "--lr-d"}
    word = "the default" if len(changed) == 1 else "the defaults"
    return (f"{word} {', '.join(f'{flag[k]} {default[k]:g}' if k != 'loss' else f'--loss {default[k]}' for k in changed)} "
            f"(this run has {', '.join(f'{flag[k]} {run[k]:g}' if k != 'loss' else f'--loss {run[k]}' for k in changed)})")  # fmt: skip


def lr_d_fix(lr_d: float, default_lr_d: float) -> str:
    """What to try for a D that learns nothing, in this run's numbers."""
    if lr_d != default_lr_d:
        return f"--lr-d {default_lr_d:g}, the default (this run has {lr_d:g})"
    return f"a higher --lr-d than this run's {lr_d:g}"


def explain_alarm(alarm: str, row: dict[str, Any], loss_name: str, lr_fix: str = "the default --lr-d or a higher one") -> str:
    """The monitor's alarm plus how D fares; when D is not learning, its fix replaces the list of remedies."""
    verdict = d_verdict(row, loss_name, lr_fix)
    if "D is not learning" in verdict:  # the cause is known: --mbstd or --pack would not help
        alarm = alarm.partition("; to try: ")[0]
    return alarm + verdict


def d_verdict(row: dict[str, Any], loss_name: str, lr_fix: str = "the default --lr-d or a higher one") -> str:
    """A clause on how D fares, from a tick's mean D(x) and D(G(z)), to tell a D that wins from one that learns nothing."""
    dx, dgz = row.get("D(x)"), row.get("D(G(z))")
    if dx is None or dgz is None or loss_name == "wgan-gp":  # a critic's scores have no 'real' probability to compare
        return ""
    values = f"D(x) {dx:.2f}, D(G(z)) {dgz:.2f}"
    if dgz - dx > FooledD.margin:  # not at equilibrium, where D(x) and D(G(z)) meet and noise may swap them
        return f"; D rates the fakes above the reals ({values}): D is not learning; to try: {lr_fix}"
    if dx - dgz > 0.9:
        return f"; D wins every round ({values}): G gets little to learn from"
    return ""


class FooledD:
    """Counts stats lines in a row where D rates the fakes clearly above the reals; says so at the third (again after a break).

    Runs where D learns keep D(G(z)) at or below D(x) line after line (13 runs, 11 healthy: never above it); a D that
    learns nothing (--lr-d 5e-6) rated the fakes 0.2-0.4 above. Unlike the collapse alarm it needs no judge.
    """

    margin, lines_needed = 0.1, 3

    def __init__(self, lr_fix: str = "the default --lr-d or a higher one") -> None:
        self.lines, self.lr_fix = 0, lr_fix

    def __call__(self, row: dict[str, Any]) -> str | None:
        """Feed one stats line; returns the warning when this line makes the third in a row."""
        dx, dgz = row.get("D(x)"), row.get("D(G(z))")
        self.lines = self.lines + 1 if dx is not None and dgz is not None and dgz - dx > self.margin else 0
        if self.lines != self.lines_needed:
            return None
        return (f"D rates the fakes above the reals for {self.lines} stats lines running (D(x) {dx:.2f}, D(G(z)) {dgz:.2f} at "
                f"{round(row['kimg'], 1):g} kimg): D is not learning, so G learns nothing real; try {self.lr_fix}")  # fmt: skip


def judges(data_name: str, channels: int, resolution: int) -> bool:
    """Whether an image run gets training-time class coverage: a built-in idx dataset, grey 28x28 (the judge's input)."""
    return data_name in IDX_DATASETS and (channels, resolution) == (1, 28)


def build_monitor(data_name: str, data: Dataset, channels: int, resolution: int, n: int, warmup_kimg: float, pixel_range,
                  data_dir: str | None = None, precision: str = "fp32", model: str = "dcgan",
                  defaults: str | None = DEFAULTS) -> TrainingMonitor | None:  # fmt: skip
    """A monitor for this run's data, or None (with a log line) when there is nothing to judge it with."""
    if data.kind == "points":
        if data_name not in TOY_DATASETS:
            return None
        centres, sigma = toy_modes(data_name)
        return TrainingMonitor("points", n, warmup_kimg, centres=centres, sigma=sigma, model=model, defaults=defaults)
    off = "training-time coverage and the collapse alarm are off"
    if data_name not in IDX_DATASETS:  # grey 28x28 or not, the judge knows only its own dataset's classes
        log.info(f"{off}: no judge knows the classes of your images (the shipped judge knows Fashion-MNIST's); watch the "
                 f"sample grids for repeats, and D(x) against D(G(z)) in the report")  # fmt: skip
        return None
    if not judges(data_name, channels, resolution):
        log.info(f"{off}: the {data_name} judge reads grey 28x28 images, and this run makes {resolution}x{resolution} "
                 f"{'colour' if channels == 3 else 'grey'} ones")  # fmt: skip
        return None
    try:
        ev = load_evaluator(data_name)
    except EvaluatorWeightsError as e:
        log.warning(f"{off}: {e}")
        return None
    try:
        test = load_dataset(data_name, "test", data_dir=data_dir)
    except DataError as e:  # training needs only the training split: a damaged test file turns the monitor off, not the run
        log.warning(f"{off}: {e}")
        return None
    _, real_feats = predict(ev, test.x)  # (10000, D)
    real_share = torch.bincount(test.labels, minlength=len(test.class_names))  # (C,)
    excluded = data.info.get("excluded_class")  # G is asked for the training set's classes: the one left out is no class to cover
    left_out = list(test.class_names).index(excluded) if excluded in test.class_names else None
    return TrainingMonitor("images", n, warmup_kimg, evaluator=ev, real_feats=real_feats, real_share=real_share, left_out=left_out,
                           class_names=list(test.class_names), dup_threshold=duplicate_threshold(real_feats, n), pixel_range=pixel_range,
                           precision=precision, model=model, defaults=defaults)  # fmt: skip
