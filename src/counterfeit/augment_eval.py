"""Are the fakes useful? Train one small classifier on reals, reals + fakes and fakes alone; test each on real test images.

This is the "classification accuracy score" (Ravuri & Vinyals 2019, train on synthetic, test on real). The classifier
is the evaluator's CNN (counterfeit.evaluator.Evaluator, widths 32/48/96), freshly initialised for every training set
and seed. The fakes are drawn once and shared by every seed; seeds vary initialisation and batch order.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from . import __version__
from .config import MAX_IMAGES, ConfigError
from .data import IDX_DATASETS, builtin_name, load_dataset
from .evaluator import accuracy, fit_classifier
from .fileio import append_text, atomic_write_text, check_writable
from .machine import cpu_name
from .runs import check_training_folder, load_run
from .synthetic import labelled_fakes, prior_warning

log = logging.getLogger("counterfeit")

SETTINGS = ("real", "real+fakes", "fakes")
CLASSIFIER = "the evaluator's CNN (counterfeit.evaluator.Evaluator, widths 32/48/96, 128 features), freshly initialised"


def _subset(n_all: int, n: int | None) -> torch.Tensor:
    # A fixed random subset: folders are sorted by class, so "the first n" would drop whole classes.
    return torch.randperm(n_all, generator=torch.Generator().manual_seed(0))[: n or n_all]


MAX_SEEDS, MAX_EPOCHS = 20, 100  # a typo's guard: 20 seeds x 100 epochs x 3 settings is already a day on 2 cores


def augment_eval(run_dir: str | Path, n_fakes: int = 10_000, seeds: int = 3, epochs: float = 2.0, settings: tuple[str, ...] = SETTINGS,
                 n_real: int | None = None, n_test: int | None = None, fake_seed: int = 0, batch_size: int = 256,
                 device: str = "cpu", command: str | None = None, on_record: Callable[[dict], None] | None = None) -> dict:  # fmt: skip
    """Run the augmentation test on a run; write RUN/eval/augment.json and augment.md, append augment.jsonl; return the record.

    `on_record(record)` runs before anything is written, so a full disk loses no classifier's result unseen.
    """
    bad = [s for s in settings if s not in SETTINGS]
    if bad or not settings:
        raise ConfigError(f"unknown --settings {', '.join(bad) or '(none)'}; choose from {', '.join(SETTINGS)}")
    twice = sorted({s for s in settings if settings.count(s) > 1})
    if twice:
        raise ConfigError(f"--settings names {', '.join(twice)} twice; give each setting once")
    # A training set needs two images: the classifier's batch norm cannot learn from a batch of one (it is skipped).
    for flag, v, least in (
        ("--n-fakes", n_fakes, 2),
        ("--seeds", seeds, 1),
        ("--n-real", 2 if n_real is None else n_real, 2),
        ("--n-test", 1 if n_test is None else n_test, 1),
    ):
        if v < least:
            raise ConfigError(f"{flag} must be at least {least}, got {v}")
    if n_fakes > MAX_IMAGES:
        raise ConfigError(f"--n-fakes must be at most {MAX_IMAGES:,}, got {n_fakes:,}; the fakes are held in memory")
    if not (math.isfinite(epochs) and epochs > 0):
        raise ConfigError(f"--epochs must be a finite number above 0, got {epochs}")
    # A typo (--seeds 100000) would run for days rather than be refused.
    for flag, v, most, why in (("--seeds", seeds, MAX_SEEDS, "each seed trains a classifier per setting again"),
                               ("--epochs", epochs, MAX_EPOCHS, "each epoch is another pass over every training set")):  # fmt: skip
        if v > most:
            raise ConfigError(f"{flag} must be at most {most}, got {v:g}; {why}")
    t0 = time.perf_counter()
    run = load_run(run_dir, device)
    check_training_folder(run.run_dir, run.config)  # a moved folder is named with the fix, not as an unknown dataset
    check_writable(run.run_dir / "eval")  # where the table goes: a read-only run folder is found before the classifiers train
    cfg = run.config.data
    if run.spec.data_kind != "images" or (cfg.channels, cfg.resolution) != (1, 28):
        raise ConfigError(f"augment-eval trains a classifier for grey 28x28 images; {run.run_dir.name} does not make them")
    train = load_dataset(cfg.name, "train", cfg.resolution, cfg.channels, cfg.data_dir)
    test = load_dataset(cfg.name, "test", cfg.resolution, cfg.channels, cfg.data_dir)
    if train.labels is None:
        raise ConfigError(f"augment-eval needs labelled real data, but {cfg.name} has no classes; put each class in its own sub-folder")
    for flag, n, split in (("--n-real", n_real, train), ("--n-test", n_test, test)):
        if n is not None and n > len(split):
            raise ConfigError(
                f"{flag} {n} is more than the {len(split):,} images {cfg.name} has there; give at most that, or leave it out for all"
            )
    fakes = labelled_fakes(run, n_fakes, fake_seed, None, device)
    if fakes.class_names != list(train.class_names):
        raise ConfigError(f"the fakes' classes ({', '.join(fakes.class_names)}) differ from {cfg.name}'s ({', '.join(train.class_names)})")
    keep_tr, keep_te = _subset(len(train), n_real), _subset(len(test), n_test)
    x_real, y_real = train.x[keep_tr], train.labels[keep_tr]  # (R, 1, 28, 28) uint8, (R,)
    x_test, y_test = test.x[keep_te], test.labels[keep_te]  # (T, 1, 28, 28) uint8, (T,)
    sets = {
        "real": (x_real, y_real),
        "real+fakes": (torch.cat([x_real, fakes.images]), torch.cat([y_real, fakes.labels])),
        "fakes": (fakes.images, fakes.labels),
    }
    held_out = builtin_name(cfg.name) in IDX_DATASETS  # a folder's "test" split is its training images
    results = []
    for name in settings:
        x, y = sets[name]
        accs = []
        for s in range(seeds):
            t = time.perf_counter()
            accs.append(accuracy(fit_classifier(x, y, len(fakes.class_names), epochs, s, batch_size), x_test, y_test))
            log.info(f"augment-eval: {name}, seed {s}: real-test accuracy {accs[-1]:.4f} ({time.perf_counter() - t:.0f} s)")
        results.append({"setting": name, "train_images": len(x), "accuracies": [round(a, 4) for a in accs],
                         "mean": round(statistics.fmean(accs), 4), "std": round(statistics.stdev(accs), 4) if seeds > 1 else None})  # fmt: skip
    record = {
        "run": str(run.run_dir), "checkpoint": run.checkpoint.name, "kimg": fakes.info["kimg"], "model": run.config.model.name,
        "classifier": CLASSIFIER, "epochs": epochs, "batch_size": batch_size, "seeds": seeds,
        "n_fakes": n_fakes, "fake_seed": fake_seed, "label_source": fakes.label_source, "warning": prior_warning(run.config.model.name),
        "n_real": len(x_real), "test": {"source": f"{cfg.name}:test", "n": len(x_test), "held_out": held_out},
        "results": results, "seconds": round(time.perf_counter() - t0, 1), "machine": machine(), "command": command,
        "version": __version__, "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    if on_record:
        on_record(record)
    out = run.run_dir / "eval"
    # augment.json holds the latest record only: the history keeps an earlier, longer test from a quick look's overwrite.
    append_text(out / "augment.jsonl", json.dumps(record) + "\n")
    atomic_write_text(out / "augment.json", json.dumps(record, indent=2) + "\n")
    atomic_write_text(out / "augment.md", augment_markdown(record))
    return record


def setting_label(setting: str, n_fakes: int) -> str:
    """The human name of a training set: 'real only', 'real + 10,000 fakes', 'fakes only'."""
    return {"real": "real only", "real+fakes": f"real + {n_fakes:,} fakes", "fakes": f"{n_fakes:,} fakes only"}[setting]


def labels_note(record: dict) -> str:
    """One sentence on where the fakes' labels came from."""
    if record["label_source"] == "requested":
        return "Fakes are labelled with the class each was asked for (conditional run), balanced over the classes."
    return ("Fakes are labelled with the shipped evaluator's prediction (unconditional run): the fakes-only score then "
            "also measures how well the classifier learns the evaluator's judgement.")  # fmt: skip


def augment_markdown(record: dict) -> str:
    """The augmentation test's record as a markdown table with its provenance."""
    rows = []
    for r in record["results"]:
        spread = "n/a (1 seed)" if r["std"] is None else f"{100 * r['std']:.2f}"
        per_seed = ", ".join(f"{100 * a:.2f}" for a in r["accuracies"])
        rows.append(
            f"| {setting_label(r['setting'], record['n_fakes'])} | {r['train_images']:,} | {100 * r['mean']:.2f} | {spread} | {per_seed} |"
        )
    test = record["test"]
    warn = "" if test["held_out"] else "\n**Warning:** folder data has no held-out split; the 'test' images are the training images.\n"
    if record.get("warning"):  # records written before it have no such key
        warn += f"\n**Warning:** {record['warning']}.\n"
    m = record["machine"]
    return (
        f"# Augmentation test: train on fakes, test on real\n\n"
        f"Run `{record['run']}` ({record['model']}), checkpoint `{record['checkpoint']}` ({record['kimg']:g} kimg).\n"
        f"Classifier: {record['classifier']}; {record['epochs']:g} epochs, batch {record['batch_size']}, AdamW + one-cycle, "
        f"{record['seeds']} seed{'s' if record['seeds'] != 1 else ''}. Real training images: {record['n_real']:,}. "
        f"Test: {test['n']:,} real images of {test['source']}.\n{labels_note(record)}\n{warn}\n"
        "| training set | images | real-test accuracy, mean (%) | std over seeds (pp) | per seed (%) |\n"
        "| --- | ---: | ---: | ---: | --- |\n" + "\n".join(rows) + "\n\n"
        f"Took {record['seconds']:g} s on {m['cpu']} ({m['threads']} torch thread{'s' if m['threads'] != 1 else ''}), {record['date']}, "
        f"counterfeit {record['version']}, torch {record['torch']}.\n" + (f"Command: `{record['command']}`\n" if record["command"] else "")
    )


def machine() -> dict:
    """A short description of this computer for result tables: CPU model, cores, torch threads."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads()}
