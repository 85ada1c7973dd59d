"""Augmentation test on a tiny budget: three training sets, seeds, the table in the run folder and the report."""

import json
import shutil

import pytest
import torch
from conftest import TINY

from counterfeit.augment_eval import augment_eval
from counterfeit.checkpoints import save_checkpoint
from counterfeit.cli import main
from counterfeit.config import ConfigError
from counterfeit.evaluator import fit_classifier
from counterfeit.report import write_report

TINY_BUDGET = dict(n_fakes=32, seeds=2, epochs=1, n_real=48, n_test=40)


@pytest.fixture
def run(tiny_cond_run, tmp_path):
    """A private copy of the tiny conditional run, so eval/ files from one test do not show up in another."""
    return shutil.copytree(tiny_cond_run, tmp_path / tiny_cond_run.name)


def test_tiny_budget_writes_table_and_json(run):
    rec = augment_eval(run, **TINY_BUDGET)
    assert [r["setting"] for r in rec["results"]] == ["real", "real+fakes", "fakes"]
    assert [r["train_images"] for r in rec["results"]] == [48, 80, 32]
    for r in rec["results"]:
        assert len(r["accuracies"]) == 2 and all(0 <= a <= 1 for a in r["accuracies"]) and r["std"] is not None
    assert rec["label_source"] == "requested" and rec["test"] == {"source": rec["test"]["source"], "n": 40, "held_out": False}
    assert json.loads((run / "eval" / "augment.json").read_text()) == rec
    md = (run / "eval" / "augment.md").read_text()
    assert "| real + 32 fakes | 80 |" in md and "| 32 fakes only | 32 |" in md and "no held-out split" in md
    assert "asked for (conditional run)" in md

    page = write_report(run).read_text()
    assert "id='augment'" in page and "href='#augment'" in page and "real + 32 fakes" in page
    assert f"the checkpoint at {rec['kimg']:g} kimg" in page and "trained on since" not in page
    # A resume trains on past the record: the report says the table is of an older checkpoint.
    save_checkpoint(run, int(rec["kimg"] * 1000) + 64, {}, {}, {}, keep=99)
    page = write_report(run).read_text()
    assert f"the run has trained on since, to {rec['kimg'] + 0.064:g} kimg" in page


def test_a_second_test_keeps_the_first_in_the_history(run):
    """augment.json holds the latest test only: a quick look after a long test erased the long one's table."""
    first = augment_eval(run, **TINY_BUDGET)
    second = augment_eval(run, **{**TINY_BUDGET, "seeds": 1, "settings": ("fakes",)})
    assert json.loads((run / "eval" / "augment.json").read_text()) == second
    history = [json.loads(line) for line in (run / "eval" / "augment.jsonl").read_text().splitlines()]
    assert history == [first, second]


def test_a_full_disk_still_shows_the_table(run, monkeypatch, capsys):
    """The table was printed only after it was written: a full disk lost every classifier's result unseen."""
    import errno
    import os

    def full(path, *args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("counterfeit.augment_eval.append_text", full)
    argv = ["augment-eval", str(run), "--n-fakes", "16", "--seeds", "1", "--epochs", "0.5", "--n-real", "32", "--settings", "fakes"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "| 16 fakes only | 16 |" in out and "wrote" not in out
    assert err.splitlines()[-1].startswith("counterfeit: error: cannot use") and "No space left on device" in err


def test_a_moved_training_folder_is_named_with_the_fix(tiny_folder, tmp_path, capsys):
    """augment-eval called a run's moved folder an unknown dataset and told to pick a built-in one, which it takes no option for."""
    data = tmp_path / "data"
    shutil.copytree(tiny_folder, data)
    short = ["--kimg", "0.032", "--eval-every-kimg", "0", "--no-progress", "--out", str(tmp_path / "runs")]
    assert main(["train", "--model", "cdcgan", "--data", str(data), *TINY, *short]) == 0
    data.rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["augment-eval", str(next((tmp_path / "runs").iterdir())), "--n-fakes", "16", "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "which is not there; move it back, or record where it went: counterfeit train --resume" in err


def test_the_same_seed_trains_the_same_classifier():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(40) % 3
    a, b, c = (fit_classifier(x, y, 3, 1.5, seed, batch_size=16) for seed in (0, 0, 1))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_cli_runs_one_setting_and_refuses_bad_input(run, capsys):
    args = ["augment-eval", str(run), "--n-fakes", "16", "--seeds", "1", "--epochs", "0.5", "--n-real", "32", "--n-test", "20"]
    assert main([*args, "--settings", "fakes"]) == 0
    out = capsys.readouterr().out
    assert "| 16 fakes only | 16 |" in out and "n/a (1 seed)" in out and "real only" not in out
    assert json.loads((run / "eval" / "augment.json").read_text())["command"].startswith("counterfeit augment-eval ")
    assert main([*args, "--settings", "real,synthetic"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown --settings synthetic" in err
    for epochs in (0, float("inf"), float("nan")):  # inf was an OverflowError after the fakes were drawn
        with pytest.raises(ConfigError, match="--epochs must be a finite number above 0"):
            augment_eval(run, epochs=epochs)
    for kwargs, flag, least in (
        ({"n_real": 1}, "--n-real", 2),  # one image: its batch is skipped, so nothing would train
        ({"n_test": 0}, "--n-test", 1),
        ({"n_fakes": 1}, "--n-fakes", 2),
        ({"seeds": 0}, "--seeds", 1),
    ):
        with pytest.raises(ConfigError, match=f"{flag} must be at least {least}, got"):
            augment_eval(run, **kwargs)
    with pytest.raises(ConfigError, match="--n-fakes must be at most 1,000,000, got 100,000,000"):
        augment_eval(run, n_fakes=100_000_000)  # grew to 16 GB before
    with pytest.raises(ConfigError, match="--seeds must be at most 20, got 100000"):
        augment_eval(run, seeds=100_000)  # still training after 3 minutes before
    with pytest.raises(ConfigError, match="--epochs must be at most 100, got 1e"):
        augment_eval(run, epochs=1e6)
    with pytest.raises(ConfigError, match="--settings names real twice"):
        augment_eval(run, settings=("real", "fakes", "real"))
    with pytest.raises(ConfigError, match="--n-real 10000000 is more than the"):
        augment_eval(run, n_real=10_000_000)
