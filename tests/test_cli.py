"""CLI smoke runs into tmp_path, the sample formats, the runs table, help texts and one-line errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image

from counterfeit.checkpoints import list_checkpoints
from counterfeit.cli import main
from counterfeit.config import FLAT_OPTIONS
from counterfeit.metrics.evaluate import evaluate_points

SHORT = ["--kimg", "0.064", "--tick-kimg", "0.032", "--snapshot-kimg", "0.032", "--sample-kimg", "0.032", "--no-progress"]


def _train(tmp_path, *extra):
    assert main(["train", *TINY, *SHORT, "--out", str(tmp_path / "runs"), *extra]) == 0
    return sorted((tmp_path / "runs").iterdir())[-1]


@pytest.fixture(scope="module")
def folder_run(tiny_folder, tmp_path_factory):
    return _train(tmp_path_factory.mktemp("cli"), "--data", tiny_folder)


def _one_line_error(capsys, argv, *needles):
    code = main(argv)
    out = capsys.readouterr().err.strip()
    err = out.splitlines()[-1]  # progress lines ("run folder: ...") may come first; the error is one last line
    assert code == 2, out
    assert err.startswith("counterfeit: error:") and out.count("counterfeit: error:") == 1 and "Traceback" not in out, out
    for needle in needles:
        assert needle in err, err
    return err


def test_train_on_fashion_mnist_defaults(fashion_dir, tmp_path):
    run = _train(tmp_path, "--data-dir", fashion_dir)
    assert run.name == "00000-fashion-mnist-dcgan"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["name"] == "fashion-mnist" and cfg["model"]["name"] == "dcgan" and cfg["loss"]["name"] == "hinge"
    assert len((run / "stats.jsonl").read_text().splitlines()) == 2
    assert list_checkpoints(run)


def test_sample_grid_folder_npz(folder_run, tmp_path):
    assert main(["sample", str(folder_run), "-n", "10", "--seed", "5", "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size[0] > 28 * 3
    assert main(["sample", str(folder_run), "-n", "7", "--format", "folder", "--out", str(tmp_path / "f")]) == 0
    files = sorted((tmp_path / "f").glob("*.png"))
    assert len(files) == 7 and Image.open(files[0]).size == (28, 28)
    for name in ("a.npz", "b.npz"):
        assert main(["sample", str(folder_run), "-n", "12", "--seed", "5", "--format", "npz", "--out", str(tmp_path / name)]) == 0
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a["images"].shape == (12, 28, 28, 1) and a["images"].dtype == np.uint8
    assert np.array_equal(a["images"], b["images"])  # deterministic for a seed
    assert main(["sample", str(folder_run), "-n", "12", "--seed", "6", "--format", "npz", "--out", str(tmp_path / "c.npz")]) == 0
    assert not np.array_equal(a["images"], np.load(tmp_path / "c.npz")["images"])
    assert np.array_equal(a["images"][:5], _npz_first(folder_run, tmp_path, 5))  # independent of n
    # export and eval count with --n: a user who typed it here was refused
    assert main(["sample", str(folder_run), "--n", "12", "--seed", "5", "--format", "npz", "--out", str(tmp_path / "d.npz")]) == 0
    assert np.array_equal(a["images"], np.load(tmp_path / "d.npz")["images"])


def test_every_command_that_counts_samples_takes_n_both_ways():
    """sample took only -n, eval and export only --n: each refused the other's spelling."""
    from counterfeit.cli import _parser

    for command in (["sample", "RUN"], ["eval", "RUN"], ["export", "RUN", "--out", "synth"]):
        for flag in ("-n", "--n"):
            assert _parser().parse_args([*command, flag, "12"]).n == 12, (command, flag)


def _npz_first(run, tmp_path, n):
    main(["sample", str(run), "-n", str(n), "--seed", "5", "--format", "npz", "--out", str(tmp_path / "first.npz")])
    return np.load(tmp_path / "first.npz")["images"]


def test_sample_default_output_goes_into_the_run(folder_run):
    assert main(["sample", str(folder_run), "-n", "4"]) == 0
    assert (folder_run / "samples" / "sample-seed0-n4.png").exists()


def test_resume_extends_a_finished_run(folder_run, tmp_path, capsys):
    assert main(["train", "--resume", str(folder_run), "--kimg", "0.096", "--no-progress"]) == 0
    assert json.loads((folder_run / "config.json").read_text())["loop"]["total_kimg"] == 0.096
    assert list_checkpoints(folder_run)[-1].name == "ckpt-0000000096.safetensors"
    capsys.readouterr()
    assert main(["train", "--resume", str(folder_run), "--no-progress"]) == 0  # nothing to do: it says how to go on
    assert "has trained its planned 0.096 kimg already; to train it longer, resume with --kimg N" in capsys.readouterr().err


def test_without_a_bar_the_stats_lines_reach_the_console(tiny_folder, tmp_path, capsys):
    """--no-progress (or a pipe) printed nothing between 'starting' and 'done': a 6-minute run looked frozen."""
    _train(tmp_path, "--data", tiny_folder)
    err = capsys.readouterr().err
    assert "0.032/0.064 kimg: D " in err and "0.064/0.064 kimg: D " in err and "D(G(z))" in err
    assert "finished at" not in err and err.count("done: ") == 1  # one last line, not two
    assert err.count("reading the numbers: D and G are the police's and the forger's losses") == 1  # once, for a new GAN run
    assert "kimg counts the thousands of real images D has seen" in err and " img/s" in err
    assert "classes N/M" not in err and "modes N/M" not in err  # a folder of images: no judge counts its classes


def test_the_kimg_help_gives_the_readmes_time_and_counts_points_for_a_toy(capsys):
    """README's first-run time became 6 to 9 minutes without native bf16; --kimg's help still said 2.3-7 and images."""
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    fast, slow = re.search(r"about ([\d.]+) minutes with it .*? and \d+ to (\d+) without it", readme, re.S).groups()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"default 600 for dcgan: {fast}-{slow} minutes" in text and "or points for a 2-D toy" in text


def test_the_stats_lines_print_kimg_alike():
    """The default run printed '4.032/600 kimg' then '8/600 kimg'."""
    from counterfeit.cli import _tick_kimg

    assert [_tick_kimg(k) for k in (4.032, 8.0, 600.064, 12000.0, 0.032, 0.128)] == ["4.0", "8.0", "600.1", "12000.0", "0.032", "0.128"]


def test_the_stats_lines_tell_apart_ticks_finer_than_a_tenth_of_a_kimg(tmp_path, capsys):
    """--tick-kimg 0.064 printed 1.2 twice, and 1.5/1.5 at 1.472 kimg as if the run were done."""
    from counterfeit.cli import _tick_kimg

    assert [_tick_kimg(k, 0.001) for k in (1.0005, 1.0015)] == ["1.0005", "1.0015"]
    assert [_tick_kimg(k, t) for k, t in ((4.032, 4.0), (1.536, 0.5), (1.536, 0.2), (2.0, 1000.0))] == ["4.0", "1.5", "1.5", "2.0"]
    _train(tmp_path, "--data", "ring8", "--kimg", "1.5", "--tick-kimg", "0.064")
    ticks = [line.split("/")[0] for line in capsys.readouterr().err.splitlines() if " kimg: D " in line]
    assert len(ticks) == len(set(ticks)) and ticks[-2:] == ["1.47", "1.50"], " ".join(ticks)  # not 1.5 and 1.5


def test_a_wgan_gp_run_is_not_told_to_read_its_critic_as_a_probability(tiny_folder, tmp_path, capsys):
    _train(tmp_path, "--data", tiny_folder, "--loss", "wgan-gp")
    err = capsys.readouterr().err
    assert "reading the numbers: D and G are the police's and the forger's losses; kimg counts" in err and "neither runs to 1" not in err


def test_a_run_that_ends_with_the_alarm_firing_says_so_last(tiny_folder, tmp_path, capsys, monkeypatch):
    import counterfeit.train as train_module

    real_train = train_module.train

    def train_then_alarm(cfg, run_dir, callbacks=None, data=None):
        result = real_train(cfg, run_dir, callbacks, data)
        with open(run_dir / "stats.jsonl", "a") as f:  # as if its last evaluation had fired
            f.write(json.dumps({"kimg": 0.064, "cov/classes": 1, "cov/num_classes": 10, "alarm": "generator is collapsing"}) + "\n")
        return result

    monkeypatch.setattr(train_module, "train", train_then_alarm)
    _train(tmp_path, "--data", tiny_folder)
    lines = capsys.readouterr().err.strip().splitlines()
    # Just before the last line, which stays 'done:': the studio's job list reads a run's state from it.
    assert lines[-2].startswith("note: the collapse alarm was firing at the last evaluation") and lines[-1].startswith("done: ")


def test_runs_table(folder_run, capsys):
    assert main(["runs", str(folder_run.parent)]) == 0
    out = capsys.readouterr().out
    assert "run" in out.splitlines()[0] and folder_run.name in out and "dcgan" in out
    assert main(["runs", str(folder_run.parent / "typo")]) == 0
    assert "typo does not exist" in capsys.readouterr().out
    _one_line_error(capsys, ["runs", str(folder_run / "config.json")], "is a file")
    assert main(["runs", str(folder_run)]) == 0  # a run folder itself: its row (it said "no runs in" the run)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].startswith(folder_run.name)


def test_a_name_the_console_cannot_encode_is_escaped_not_a_traceback(folder_run, tmp_path):
    """A cp1252 or ASCII stdout (a pipe on Windows) got a UnicodeEncodeError after the work; rows were lost."""
    runs = tmp_path / "runs"
    shutil.copytree(folder_run, runs / "00007-猫 été")
    env = dict(os.environ, PYTHONIOENCODING="ascii", PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    done = subprocess.run([sys.executable, "-m", "counterfeit", "runs", str(runs)], capture_output=True, env=env, timeout=120)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()
    assert b"00007-\\u732b \\xe9t\\xe9" in done.stdout, done.stdout.decode()


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="the file systems there refuse names that are not UTF-8")
def test_under_c_utf8_a_name_that_is_not_utf8_is_printed_as_its_own_bytes(folder_run, tmp_path):
    """Python writes such a name's bytes back under C.UTF-8 (surrogateescape): they paste, an escaped \\udce9 does not."""
    runs = tmp_path / "runs"
    shutil.copytree(folder_run, runs / os.fsdecode(b"00009-caf\xe9"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "LC_ALL", "LC_CTYPE", "LANG")}
    env.update(LC_ALL="C.UTF-8", PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    done = subprocess.run([sys.executable, "-m", "counterfeit", "runs", str(runs)], capture_output=True, env=env, timeout=120)
    assert done.returncode == 0 and b"00009-caf\xe9 " in done.stdout, done.stdout


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="the file systems there refuse names that are not UTF-8")
def test_a_run_in_a_folder_named_in_another_encoding_reads(folder_run, tmp_path, capsys):
    """safetensors opens only UTF-8 paths: such a run (from a Windows zip) was called a damaged checkpoint, to delete."""
    run = tmp_path / os.fsdecode(b"00008-caf\xe9")
    shutil.copytree(folder_run, run)
    assert main(["sample", str(run), "-n", "4", "--out", str(tmp_path / "g.png")]) == 0, capsys.readouterr().err
    assert Image.open(tmp_path / "g.png").size[0] > 28
    assert main(["runs", str(tmp_path)]) == 0
    assert "bad checkpoint" not in capsys.readouterr().out


def _columns(text):
    """Terminal columns of `text`, counted here apart from the code under test: CJK takes 2, a combining mark or a
    zero-width space or joiner 0."""
    import unicodedata

    def width(c):
        return 0 if unicodedata.combining(c) or c in "\u200b\u200c\u200d" else 2 if unicodedata.east_asian_width(c) in "WF" else 1

    return sum(width(c) for c in text)


def test_the_runs_table_lines_up_names_with_wide_characters(folder_run, tmp_path, capsys):
    """A CJK run name takes two columns a character: padded by its length, every column after it came out shifted."""
    # e + a combining accent; a zero-width joiner (emoji sequences in folder names) took a column
    names = ("00000-cats-dcgan", "00001-猫データ-cdcgan", "00002-cafe\u0301-dcgan", "00003-a\u200db-dcgan")
    for name in names:
        shutil.copytree(folder_run, tmp_path / name)
    assert main(["runs", str(tmp_path)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 4
    label = rows[0].split()[1]  # the data column: the same folder for every run
    assert {_columns(row[: row.index(f" {label} ") + 1]) for row in rows} == {header.index("data")}
    assert {_columns(row[: row.rindex("done")]) for row in rows} == {header.index("status")}


def test_the_runs_table_lines_up_names_the_console_shows_escaped(folder_run, tmp_path, monkeypatch):
    """An ASCII console shows 猫 as \\u732b, six columns, where the padding had counted one."""
    import io

    for name in ("00000-cats-dcgan", "00001-猫 été-dcgan"):
        shutil.copytree(folder_run, tmp_path / name)
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")  # as PYTHONIOENCODING=ascii, or a cp1252 pipe on Windows
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["runs", str(tmp_path)]) == 0
    out.flush()
    header, *rows = out.buffer.getvalue().decode("ascii").splitlines()
    assert rows[1].startswith("00001-\\u732b \\xe9t\\xe9-dcgan  ")
    label = rows[0].split()[1]
    assert {row.index(f" {label} ") + 1 for row in rows} == {header.index("data")}
    assert {row.rindex("done") for row in rows} == {header.index("status")}


def test_the_runs_table_says_what_it_counts():
    """A toy run's modes were left out, under a column headed 'classes'."""
    from counterfeit.runs import _covered

    assert _covered({"cov/classes": 9, "cov/num_classes": 10}) == "9/10 classes"
    assert _covered({"toy/modes": 1, "toy/modes_total": 8}) == "1/8 modes" and _covered({}) == ""


def test_toy_train_and_sample_points(tmp_path, capsys, monkeypatch):
    run = _train(tmp_path, "--data", "ring8")
    assert run.name.endswith("ring8-mlp")
    err = capsys.readouterr().err  # a toy's numbers speak of points: the learner's audit found images and items
    assert "real points and the fakes" in err and "thousands of real points D has seen" in err and " points/s" in err
    assert "modes N/M: how many of the toy's modes have fakes near them" in err
    assert "image" not in err.replace("--data", "") and "img/s" not in err and "items" not in err
    assert "ring8 (100000 points)" in (run / "log.txt").read_text()
    assert main(["sample", str(run), "--format", "npz", "--out", str(tmp_path / "all.npz")]) == 0
    assert np.load(tmp_path / "all.npz")["points"].shape == (2500, 2)  # by default enough points to see every mode, not 64
    capsys.readouterr()  # latent pictures need images: the refusal says what draws a toy's points instead
    _one_line_error(capsys, ["interpolate", str(run), "--from", "1", "--to", "2"], "is a 2-D toy run", f"counterfeit sample {run}")
    assert main(["sample", str(run), "-n", "50", "--format", "npz", "--out", str(tmp_path / "p.npz")]) == 0
    assert np.load(tmp_path / "p.npz")["points"].shape == (50, 2)
    grey = np.all(np.asarray(Image.open(tmp_path / "p.png").convert("RGB")) == 150, axis=-1)  # the real points' colour
    assert grey.sum() > 100  # the README promised grey reals under the fakes, as in training's scatter plots; none were drawn
    import counterfeit.export as export

    titles, real_draw = [], export.scatter_image
    monkeypatch.setattr(export, "scatter_image", lambda *a, **k: titles.append(k["title"]) or real_draw(*a, **k))
    assert main(["sample", str(run), "-n", "50", "--format", "npz", "--drs", "90", "--out", str(tmp_path / "d.npz")]) == 0
    assert titles[0].startswith("50 fakes, seed 0, --drs 90 kept ") and titles[0].endswith("% of the candidates")  # on the picture
    kept = np.load(tmp_path / "d.npz")["points"]
    assert main(["sample", str(run), "-n", "1000", "--format", "npz", "--out", str(tmp_path / "c.npz")]) == 0
    candidates = {tuple(p) for p in np.load(tmp_path / "c.npz")["points"]}  # the same seed's first 1,000 draws
    assert kept.shape == (50, 2) and all(tuple(p) in candidates for p in kept)  # DRS keeps candidates, never alters them
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0  # the toy protocol's 2,500 samples: more would cover more modes by chance
    out = capsys.readouterr().out  # the scores come with their scale: what real data would get
    assert "within 3 sigma" in out and "98.9% for real data" in out and "2.08 (ln 8) when all sit on one" in out
    line = json.loads((run / "metric-toy.jsonl").read_text().splitlines()[-1])
    assert line["n"] == line["provenance"]["n_fakes"] == 2500 and line["dataset"] == "ring8"
    # eval --drs scores what sample --drs draws, and keeps it beside the plain score
    assert main(["eval", str(run), "--drs", "90", "--n", "50"]) == 0
    scores = json.loads((run / "metrics.json").read_text())["metrics"]
    assert set(scores) == {"toy", "toy-drs90"} and scores["toy"]["n"] == 2500
    drs = scores["toy-drs90"]
    assert drs["provenance"]["drs_percentile"] == 90 and 0 < drs["provenance"]["drs_acceptance"] <= 1
    assert drs["mode_histogram"] == evaluate_points(torch.from_numpy(kept), "ring8")["toy"]["mode_histogram"]
    assert json.loads((run / "metric-toy-drs90.jsonl").read_text())["n"] == 50
    (tmp_path / "keep.png").write_text("mine")  # a toy run's npz gets a scatter PNG of the same name: refused, not replaced
    _one_line_error_code = main(["sample", str(run), "--out", str(tmp_path / "keep.npz")])
    assert _one_line_error_code == 2 and (tmp_path / "keep.png").read_text() == "mine"
    assert main(["sample", str(run), "--out", str(tmp_path / "pts")]) == 2  # a folder of PNGs is no format for points


def test_drs_on_images_and_its_refusals(folder_run, tmp_path, capsys):
    assert main(["sample", str(folder_run), "-n", "6", "--drs", "50", "--out", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").exists()
    err = capsys.readouterr().err  # the share kept, then why a hinge D's logit is no log-ratio
    assert err.index("discriminator rejection sampling (--drs 50) kept ") < err.index("trained with the hinge loss")
    _one_line_error(capsys, ["sample", str(folder_run), "--drs", "0"], "--drs", "percentile")
    _one_line_error(capsys, ["eval", str(folder_run), "--drs", "101"], "--drs", "percentile")
    _one_line_error(capsys, ["eval", "--fakes", str(tmp_path / "x.npz"), "--drs", "90"], "--drs", "RUN_DIR")


def test_drs_refuses_a_conditional_run_in_one_line(studio_runs, capsys):
    from conftest import STUDIO_RUNS

    _one_line_error(capsys, ["sample", str(studio_runs / STUDIO_RUNS[1]), "--drs", "90"], "--drs", "unconditional GAN")
    _one_line_error(capsys, ["eval", str(studio_runs / STUDIO_RUNS[1]), "--drs", "90"], "--drs", "unconditional GAN")


def test_dry_run_prints_the_config(capsys):
    assert main(["train", "--dry-run", "--model", "lecture", "--kimg", "5"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["name"] == "lecture" and cfg["model"]["z_dim"] == 128 and cfg["loop"]["total_kimg"] == 5


def test_dry_run_of_a_conditional_model_on_a_folder_names_its_classes(tiny_folder, tmp_path, capsys):
    """The printed config is the one training will write: a folder's classes come from its sub-folders' names."""
    assert main(["train", "--dry-run", "--model", "cdcgan", "--data", tiny_folder]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["num_classes"] == 2 and cfg["data"]["class_names"] == ["rings", "squares"]
    flat = tmp_path / "flat"
    shutil.copytree(Path(tiny_folder) / "rings", flat)  # one folder of images: no classes
    _one_line_error(capsys, ["train", "--dry-run", "--model", "cdcgan", "--data", str(flat)], "needs class labels")


@pytest.mark.parametrize("command", ["train", "sample", "runs"])
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0 and "examples:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, says",
    [(["train", "--kmig", "20"], "counterfeit train: error: unrecognized arguments: --kmig 20; did you mean --kimg? "
      "(see 'counterfeit train --help')"),
     (["sample", "r", "--sed=3"], "did you mean --seed? (see 'counterfeit sample --help')"),
     (["--bogus"], "counterfeit: error: unrecognized arguments: --bogus (see 'counterfeit --help')"),
     (["train", "--gpu"], "unrecognized arguments: --gpu (see"),  # no guess: the shared '--' made it '--out'
     (["sample", "r", "--rows", "2"], "unrecognized arguments: --rows 2 (see"),  # not '--drs'
     (["interpolate", "r", "--from", "1", "--to", "Ankle", "boot"], 'arguments: boot; a name with a space goes in quotes: --to "Ankle boot"'),
     (["interpolate", "r", "--from", "1", "--to=Ankle", "boot"], 'arguments: boot; a name with a space goes in quotes: --to "Ankle boot"')],
)  # fmt: skip
def test_a_mistyped_option_names_the_one_meant_and_the_command_s_help(argv, says, capsys):
    """It said only 'unrecognized arguments' and pointed to the top-level help, which lists no train options."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and says in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["train", "ring8"], ["sample", "r", "extra"], ["eval", "r", "s"]])
def test_a_stray_word_that_splits_no_name_is_not_told_to_quote_one(argv, capsys):
    """'counterfeit train ring8' (no --data) was told 'a name with a space goes in quotes, as in "Ankle boot"'."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"unrecognized arguments: {argv[-1]} (see" in err and "quotes" not in err


def test_mlp_without_toy_data_says_what_it_trains_on(capsys):
    """It said "unknown toy dataset 'fashion-mnist'", a name the learner never typed."""
    _one_line_error(capsys, ["train", "--model", "mlp", "--dry-run"], "--model mlp trains on the 2-D toys; pass --data ring8")


def test_a_mistyped_run_folder_names_the_run_meant(folder_run, capsys):
    typo = folder_run.parent / folder_run.name[1:]  # '0000-...' for '00000-...'
    for argv in (["train", "--resume", str(typo)], ["sample", str(typo)], ["report", str(typo)]):
        _one_line_error(capsys, argv, f"did you mean {folder_run}?")


def test_a_cut_run_name_or_the_runs_folder_names_a_run(folder_run, tmp_path, capsys):
    """'00001-fashion-mnist' was matched to '00012-fashion-mnist-ae' by its letters; the runs folder itself was told
    'runs/config.json not found; is this a counterfeit run folder?', naming no run."""
    runs = tmp_path / "runs"
    for name in ("00001-cats-cdcgan", "00012-cats-ae"):
        shutil.copytree(folder_run, runs / name)
    for argv in (["sample", str(runs / "00001-cats")], ["report", str(runs / "00001")], ["train", "--resume", str(runs / "00001-cats")]):
        _one_line_error(capsys, argv, f"did you mean {runs / '00001-cats-cdcgan'}?")
    for argv in (["sample", str(runs)], ["report", str(runs)], ["train", "--resume", str(runs)], ["eval", str(runs)]):
        _one_line_error(capsys, argv, f"it holds runs: pass one of them, such as {runs / '00012-cats-ae'}")


def test_bad_data_folder(tmp_path, tiny_folder, capsys):
    _one_line_error(capsys, ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)], "nope")
    _one_line_error(capsys, ["train", "--data", tiny_folder, "--batch-size", "128", "--out", str(tmp_path)], "96 items", "--batch-size 128")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, ["train", "--data", str(empty), "--out", str(tmp_path)], str(empty))
    assert not [p for p in tmp_path.iterdir() if p.name[:5].isdigit()]  # no run folder was made


def test_bad_options(capsys, tmp_path):
    _one_line_error(capsys, ["train", "--kimg", "-1"], "--kimg")
    _one_line_error(capsys, ["train", "--kimg", "inf", "--dry-run"], "--kimg must be a positive number", "inf")
    for epochs in ("0", "-1", "inf"):
        _one_line_error(capsys, ["train", "--epochs", epochs, "--dry-run"], "--epochs must be a positive number")
    for argv in (
        ["train", "--out", str(tmp_path / "tpu")],
        ["sample", str(tmp_path)],
        ["export", str(tmp_path), "--out", str(tmp_path / "x")],
    ):
        _one_line_error(capsys, [*argv, "--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N", "'tpu'")
    assert not (tmp_path / "tpu").exists()  # refused before the run folder was made
    _one_line_error(capsys, ["train", "--batch-size", "1"], "--batch-size")
    _one_line_error(capsys, ["train", "--kimg", "1", "--epochs", "1"], "--epochs")
    _one_line_error(capsys, ["train", "--model", "lecture", "--resolution", "64", "--out", str(tmp_path)], "28x28")
    _one_line_error(capsys, ["train", "--data", "ring8", "--model", "dcgan", "--out", str(tmp_path)], "--model mlp")
    _one_line_error(capsys, ["train", "--resolution", "48", "--dry-run"], "48")
    _one_line_error(capsys, ["train", "--data", "ring8", "--resolution", "64", "--dry-run"], "--resolution sizes images", "2-D points")
    _one_line_error(capsys, ["train", "--precision", "fp16", "--dry-run"], "--precision must be fp32, bf16 or auto", "fp16")


def test_non_finite_option_values_are_one_line_errors(capsys, tmp_path):
    """inf and nan pass a "> 0" check; each float option refuses them by its flag's name, before any folder is made."""
    for flag, value in (("--sample-kimg", "inf"), ("--eval-every-kimg", "inf"), ("--lr-g", "1e400"), ("--alarm-after-kimg", "nan")):
        _one_line_error(capsys, ["train", flag, value, "--out", str(tmp_path)], f"{flag} must be")
    _one_line_error(capsys, ["train", "--alarm-after-kimg", "-5", "--dry-run"], "--alarm-after-kimg must be >= 0")
    assert not list(tmp_path.iterdir())


def test_a_model_too_big_for_memory_and_a_missing_data_dir_are_one_line(tmp_path, capsys):
    _one_line_error(capsys, ["train", "--z-dim", "100000000", "--out", str(tmp_path)], "can't allocate memory", "--z-dim")
    assert not list(tmp_path.iterdir())
    assert main(["train", "--data-dir", str(tmp_path / "nowhere"), "--dry-run"]) == 0
    assert "warning: --data-dir" in capsys.readouterr().err


def test_a_run_being_trained_is_not_resumed_twice_and_a_killed_runs_temp_files_go(tiny_folder, tmp_path, capsys):
    """RUN/.lock: a second trainer of the same run is refused in one line; temp checkpoints of a killed run are removed."""
    import os

    from counterfeit.runs import run_lock

    run = _train(tmp_path, "--data", tiny_folder)
    stats, config = (run / "stats.jsonl").read_text(), (run / "config.json").read_text()
    with run_lock(run):  # as a resume already running in another process holds it
        _one_line_error(capsys, ["train", "--resume", str(run), "--kimg", "0.096"], f"is being trained by process {os.getpid()}")
    assert (run / "stats.jsonl").read_text() == stats and (run / "config.json").read_text() == config  # the refused trainer wrote nothing
    stale = run / "checkpoints" / ".ckpt-0000000096.k3x9.tmp.safetensors"
    stale.write_bytes(b"half a checkpoint")  # what kill -9 during a write leaves
    assert main(["train", "--resume", str(run), "--kimg", "0.096", "--no-progress"]) == 0
    assert not stale.exists() and "removed 1 checkpoint temp file" in (run / "log.txt").read_text()


def test_a_run_still_starting_is_seen_as_training(tiny_folder, tmp_path, capsys):
    """Before its first checkpoint, a run in training was 'no checkpoint: start a new run' (a duplicate) and listed as stopped."""
    import os

    from counterfeit.runs import run_lock

    run = _train(tmp_path, "--data", tiny_folder)
    for ckpt in (run / "checkpoints").iterdir():
        ckpt.unlink()
    with run_lock(run):  # a trainer in another process, before its first checkpoint
        _one_line_error(capsys, ["train", "--resume", str(run)], f"is being trained by process {os.getpid()}", "Ctrl-C in its terminal")
        assert main(["runs", str(run.parent)]) == 0
        assert capsys.readouterr().out.splitlines()[1].rstrip().endswith("training")
    assert main(["runs", str(run.parent)]) == 0
    assert capsys.readouterr().out.splitlines()[1].rstrip().endswith("no checkpoint")


def test_a_readers_probe_does_not_turn_a_trainer_away(tmp_path):
    """`counterfeit runs` and the studio probe RUN/.lock with a shared lock for an instant; a trainer starting then waits."""
    import threading

    from counterfeit.fileio import lock, unlock
    from counterfeit.runs import run_lock, training_process

    (tmp_path / ".lock").write_text("")
    with open(tmp_path / ".lock", "rb") as f:
        assert lock(f.fileno(), exclusive=False) is True  # a probe in progress
        threading.Timer(0.1, unlock, (f.fileno(),)).start()
        with run_lock(tmp_path):
            assert training_process(tmp_path) == f"process {os.getpid()}"
    assert (tmp_path / ".lock").read_text() == ""  # released: no stale process number left for a later refusal
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(str(dead.pid))  # a kill -9'd trainer's number, not yet overwritten by the new holder
    with open(tmp_path / ".lock", "rb") as f:
        lock(f.fileno())
        assert training_process(tmp_path) == "another process"


class FakeKernel32:
    """kernel32's OpenProcess, GetExitCodeProcess and CloseHandle for a table of process numbers and exit codes."""

    def __init__(self, codes, last_error=87):
        self.codes, self.last_error, self.open = codes, last_error, []

        def open_process(access, inherit, pid):
            assert access == 0x1000 and not inherit  # PROCESS_QUERY_LIMITED_INFORMATION: enough, and allowed more often
            if pid not in self.codes:
                return None
            self.open.append(pid)
            return pid

        def get_exit_code(handle, code):
            code._obj.value = self.codes[handle]
            return 1

        def close(handle):
            self.open.remove(handle)
            return 1

        self.OpenProcess, self.GetExitCodeProcess, self.CloseHandle = open_process, get_exit_code, close


def _as_on_windows(monkeypatch, kernel32):
    import ctypes

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(ctypes, "WinDLL", lambda name, use_last_error=False: kernel32, raising=False)
    monkeypatch.setattr(ctypes, "get_last_error", lambda: kernel32.last_error, raising=False)

    def terminate(pid, sig):
        raise AssertionError(f"os.kill({pid}, {sig}) on Windows is TerminateProcess")

    monkeypatch.setattr(os, "kill", terminate)


def test_on_windows_a_trainers_process_is_looked_up_not_killed(monkeypatch):
    """os.kill(pid, 0) on Windows calls TerminateProcess: `counterfeit runs` would have ended the trainer it asked about."""
    from counterfeit.runs import _alive

    kernel32 = FakeKernel32({4321: 259, 5555: 0})
    _as_on_windows(monkeypatch, kernel32)
    assert _alive(4321) is True and _alive(5555) is False  # 259 is STILL_ACTIVE; an exit code means it ended
    assert _alive(7777) is False and _alive(2**40) is False  # no such process (ERROR_INVALID_PARAMETER), or none possible
    kernel32.last_error = 5  # ERROR_ACCESS_DENIED: another user's process, alive (as EPERM on POSIX)
    assert _alive(7777) is True
    assert kernel32.open == []  # every handle closed


def test_on_windows_a_run_being_trained_is_locked_and_its_trainer_named(tmp_path, windows_locks, monkeypatch):
    """Windows had no run lock: a resume started twice trained the same run in two processes, writing over each other."""
    from counterfeit.runs import RunBusy, run_lock, training_process

    _as_on_windows(monkeypatch, FakeKernel32({os.getpid(): 259}))
    with run_lock(tmp_path):
        assert training_process(tmp_path) == f"process {os.getpid()}"
        with pytest.raises(RunBusy, match=f"being trained by process {os.getpid()}"), run_lock(tmp_path):
            pass
    assert training_process(tmp_path) is None and (tmp_path / ".lock").read_text() == "" and windows_locks.held == {}


def test_the_commands_it_suggests_quote_a_path_with_spaces(tiny_folder, tmp_path, capsys):
    """'Try: counterfeit sample my runs/00000-...' pasted as is would sample the folder 'my'."""
    assert main(["train", *TINY, *SHORT, "--data", tiny_folder, "--out", str(tmp_path / "my runs")]) == 0
    run = next((tmp_path / "my runs").iterdir())
    assert f"Try: counterfeit sample '{run}'" in capsys.readouterr().err


def test_the_runs_hints_quote_a_path_with_spaces(folder_run, tmp_path, capsys):
    """'resume it with counterfeit train --resume my runs/00000-...' pasted as is would resume the folder 'my'."""
    import re

    from counterfeit.config import ConfigError, load_config
    from counterfeit.runs import check_training_folder

    run = tmp_path / "my runs" / folder_run.name
    shutil.copytree(folder_run, run)
    for ckpt in list_checkpoints(run):
        ckpt.unlink()
    _one_line_error(capsys, ["sample", str(run)], f"resume it with counterfeit train --resume '{run}'")
    cfg = load_config(run / "config.json").replace(data={"name": str(tmp_path / "moved away")})
    with pytest.raises(ConfigError, match=re.escape(f"counterfeit train --resume '{run}' --data NEW_FOLDER")):
        check_training_folder(run, cfg)


def test_on_windows_a_suggested_path_takes_double_quotes(monkeypatch):
    """cmd.exe keeps single quotes as part of the word: shlex.quote's 'runs\\x' would name no folder there."""
    from counterfeit.fileio import shell_word as _quoted

    spaced, plain = Path("my runs") / "00000-x", Path("runs")  # made first: pathlib refuses a Windows path here
    monkeypatch.setattr(os, "name", "nt")
    assert _quoted(spaced) == '"my runs/00000-x"' and _quoted(plain) == "runs"


def test_a_new_run_that_cannot_write_its_config_leaves_no_folder(tmp_path, monkeypatch, capsys):
    import errno

    import counterfeit.runs as runs_module

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[0] / "config.json"))

    monkeypatch.setattr(runs_module, "write_config", full)
    _one_line_error(capsys, ["train", *TINY, *SHORT, "--data", "ring8", "--model", "mlp", "--out", str(tmp_path / "runs")], "No space left")
    assert list((tmp_path / "runs").iterdir()) == []  # the numbered folder went with its failure


def test_resume_takes_the_runs_own_values_and_refuses_others_and_out(folder_run, capsys):
    """Repeating an option's saved value is no change; a new value, or --out elsewhere, is refused in one line."""
    assert main(["train", "--resume", str(folder_run), "--seed", "0", "--eval-every-kimg", "20", "--dry-run"]) == 0
    assert main(["train", "--resume", str(folder_run), "--out", str(folder_run.parent), "--dry-run"]) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["train", "--resume", str(folder_run), "--seed", "1", "--dry-run"], "--seed cannot change when resuming")
    _one_line_error(capsys, ["train", "--resume", str(folder_run), "--out", "elsewhere", "--dry-run"], "--out makes a new run folder")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_resume_this_machine_cannot_run_changes_nothing(folder_run, tmp_path, capsys):
    """A resume asking for a GPU this machine lacks is refused before config.json takes its new length or device."""
    from counterfeit.config import load_config
    from counterfeit.train import train

    run = Path(shutil.copytree(folder_run, tmp_path / folder_run.name))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    _one_line_error(capsys, ["train", "--resume", str(run), "--device", "cuda", "--kimg", "5"], "PyTorch sees no CUDA GPU")
    # The library's trainer too (it wrote the longer, CUDA config.json before it looked for the GPU).
    with pytest.raises(Exception, match="PyTorch sees no CUDA GPU"):
        train(load_config(run / "config.json").replace(loop={"device": "cuda", "total_kimg": 5.0}), run)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "log.txt"} == {
        k: v for k, v in before.items() if k != "log.txt"
    }


def test_resume_to_the_planned_end_of_a_finished_run_is_no_error(folder_run, tmp_path, capsys):
    """A run stops at the first whole batch past --kimg, so a finished run has passed its plan: resuming it does nothing."""
    stats = (folder_run / "stats.jsonl").read_text()
    assert main(["train", "--resume", str(folder_run), "--no-progress"]) == 0
    assert (folder_run / "stats.jsonl").read_text() == stats


def test_less_than_a_batch_and_bad_evaluator_or_eval_counts_are_one_line(folder_run, capsys):
    _one_line_error(capsys, ["train", "--data", "ring8", "--kimg", "1e-9", "--dry-run"], "less than one batch")
    _one_line_error(capsys, ["evaluator", "train", "--epochs", "0", "--out", "unused"], "--epochs must be from 1 to 1000, got 0")
    _one_line_error(capsys, ["eval", str(folder_run), "--n", "2000000000"], "--n must be between 2 and 1,000,000")


def test_out_of_memory_outside_training_asks_for_fewer_images(monkeypatch, capsys):
    def too_big(args):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 bytes")

    monkeypatch.setattr("counterfeit.cli.cmd_sample", too_big)
    err = _one_line_error(capsys, ["sample", "anything"], "can't allocate memory", "ask for fewer images")
    assert "--batch-size" not in err


def test_argparse_errors_are_one_line(capsys):
    for argv, needle in (
        (["train", "--kimg", "abc"], "invalid float value: 'abc'"),
        (["train", "--model", "foo"], "invalid choice: 'foo'"),
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and needle in err, err
        assert err.startswith("counterfeit train: error:") and err.endswith("(see 'counterfeit train --help')")


def test_missing_folder_and_cuda_graphs_on_cpu_are_refused_before_a_folder_or_dry_run(tmp_path, capsys):
    _one_line_error(capsys, ["train", "--data", str(tmp_path / "gone"), "--dry-run"], "no such folder", "gone")
    err = _one_line_error(capsys, ["train", "--cuda-graphs", "--device", "cpu", "--out", str(tmp_path)], "--cuda-graphs", "trains on cpu")
    assert "removed" not in capsys.readouterr().err + err and not list(tmp_path.iterdir())


def test_a_folder_run_resumes_from_anywhere_and_follows_its_data_when_told(tiny_folder, tmp_path, capsys, monkeypatch):
    """A folder run's config keeps the folder's absolute path; when the folder moves, --data on resume says where to."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_folder, data)
    monkeypatch.chdir(tmp_path)
    run = _train(tmp_path, "--data", "data")  # relative, as a user types it
    assert json.loads((run / "config.json").read_text())["data"]["name"] == str(data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--resume", str(run), "--kimg", "0.096", "--no-progress"]) == 0
    data.rename(tmp_path / "moved")
    _one_line_error(capsys, ["train", "--resume", str(run), "--kimg", "0.128"], "which is not there", "--data NEW_FOLDER")
    for argv in (["eval", str(run), "--n", "50"], ["eval", str(run), "--anomaly"]):  # said "unknown dataset", naming no fix
        _one_line_error(capsys, argv, "which is not there; move it back, or record where it went: counterfeit train --resume")
    _one_line_error(capsys, ["train", "--resume", str(run), "--data", "mnist", "--kimg", "0.128"], "--data cannot change when resuming")
    assert main(["train", "--resume", str(run), "--data", str(tmp_path / "moved"), "--kimg", "0.128", "--no-progress"]) == 0
    assert json.loads((run / "config.json").read_text())["data"]["name"] == str(tmp_path / "moved")
    (tmp_path / "moved").rename(tmp_path / "moved2")  # the eval advice, on a finished run: records the move, trains nothing
    stats = (run / "stats.jsonl").read_text()
    assert main(["train", "--resume", str(run), "--data", str(tmp_path / "moved2"), "--no-progress"]) == 0
    assert json.loads((run / "config.json").read_text())["data"]["name"] == str(tmp_path / "moved2")
    assert (run / "stats.jsonl").read_text() == stats
    cfg = json.loads((run / "config.json").read_text())  # an older run may keep the folder as "~/...": still found
    (run / "config.json").write_text(json.dumps({**cfg, "data": {**cfg["data"], "name": "~/moved2"}}))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["train", "--resume", str(run), "--kimg", "0.16", "--no-progress"]) == 0


def test_conditional_data_problems_are_named(tiny_folder, tmp_path, capsys):
    """Loose images beside the class folders, or a class whose files all fail to decode, are named in the one line."""
    import shutil

    loose = tmp_path / "loose"
    shutil.copytree(tiny_folder, loose)
    shutil.copy(loose / "rings" / "000.png", loose / "stray.png")
    _one_line_error(
        capsys, ["train", "--model", "cdcgan", "--data", str(loose), "--out", str(tmp_path)], "1 images lie directly in the folder"
    )
    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    (broken / "dots").mkdir()
    for i in range(3):
        (broken / "dots" / f"{i}.png").write_bytes(b"junk")
    _one_line_error(
        capsys, ["train", "--model", "cdcgan", "--data", str(broken), "--out", str(tmp_path)], "class 'dots'", "no readable images"
    )
    assert not [p for p in tmp_path.iterdir() if p.name[:5].isdigit()]


def test_log_txt_keeps_the_skipped_files_and_the_labels(tiny_folder, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_folder, data)
    (data / "rings" / "bad.png").write_bytes(b"junk")
    run = _train(tmp_path, "--data", str(data))
    log = (run / "log.txt").read_text()
    assert "labelled by sub-folder: 2 classes" in log and "skipped 1 of 97 files that could not be read: rings/bad.png" in log
    assert capsys.readouterr().err.count("rings/bad.png") == 1  # the console said it once, as the folder loaded


def test_sample_format_follows_out_and_refuses_a_mismatch(folder_run, tmp_path, capsys):
    assert main(["sample", str(folder_run), "-n", "4", "--out", str(tmp_path / "x.npz")]) == 0
    assert np.load(tmp_path / "x.npz")["images"].shape[0] == 4
    assert main(["sample", str(folder_run), "-n", "3", "--out", str(tmp_path / "pngs")]) == 0
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    for argv, needle in (
        (["--format", "npz", "--out", "y.png"], "does not fit --format npz"),
        (["--format", "folder", "--out", "f.npz"], "does not fit --format folder"),
        (["--out", "g.jpg"], "cannot tell the format from --out"),
    ):
        argv[-1] = str(tmp_path / argv[-1])
        _one_line_error(capsys, ["sample", str(folder_run), *argv], needle)
        assert not (tmp_path / argv[-1]).exists()


def test_eval_with_too_few_images_for_a_metric_is_one_line(folder_run, tmp_path, capsys):
    _one_line_error(capsys, ["eval", str(folder_run), "--n", "3"], "--metrics pr needs at least 6 fakes", "got 3")
    _one_line_error(capsys, ["eval", str(folder_run), "--metrics", ""], "--metrics is empty")
    _one_line_error(
        capsys, ["eval", str(folder_run), "--anomaly", "--metrics", "fid"], "--anomaly scores every test image", "drop --metrics"
    )
    # Options an evaluation would not use are refused, not dropped (a typo'd --reals scored the run against its own data)
    _one_line_error(capsys, ["eval", str(folder_run), "--anomaly", "--n", "5", "--backbone", "inception"], "drop --n, --backbone")
    _one_line_error(capsys, ["eval", str(folder_run), "--anomaly", "--seed", "5"], "--anomaly scores real test images (drop --seed)")
    _one_line_error(capsys, ["eval", str(folder_run), "--reals", "bogus:test"], "--reals is the reference for --fakes")
    _one_line_error(capsys, ["eval", str(folder_run), "--device", "cpu"], "--device goes with --anomaly")
    _one_line_error(capsys, ["eval", str(folder_run), "--device", "cuda"], "--device goes with --anomaly")  # not "use --device cpu"
    _one_line_error(capsys, ["eval", "--reals", "fashion-mnist:test"], "give the images to score with --fakes PATH")
    assert main(["sample", str(folder_run), "-n", "1", "--out", str(tmp_path / "one.npz")]) == 0
    _one_line_error(capsys, ["eval", "--fakes", str(tmp_path / "one.npz"), "--reals", str(tmp_path / "one.npz"), "--metrics", "fid"],
                    "--metrics fid needs at least 2")  # fmt: skip


def test_a_run_stopped_before_its_first_step_leaves_no_folder(tiny_folder, tmp_path, capsys, monkeypatch):
    """Ctrl-C while the run starts: nothing was trained or saved, so the folder goes and nobody is told to resume it."""
    monkeypatch.setattr("counterfeit.cli._StopFlag.is_set", lambda self: True)
    assert main(["train", *TINY, *SHORT, "--data", tiny_folder, "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "stopped before the first step; removed" in err and "--resume" not in err and not list(tmp_path.iterdir())


def test_the_only_checkpoint_unreadable_says_so(tiny_folder, tmp_path, capsys):
    run = _train(tmp_path, "--data", tiny_folder, "--keep-checkpoints", "1")
    (only,) = list_checkpoints(run)
    only.write_bytes(b"garbage")
    _one_line_error(capsys, ["sample", str(run)], "the run's only checkpoint")


def test_bad_resume(folder_run, tmp_path, capsys):
    _one_line_error(capsys, ["train", "--resume", str(tmp_path / "missing")], "not a run folder")
    _one_line_error(capsys, ["train", "--resume", str(folder_run), "--lr-g", "0.1"], "--lr-g", "cannot change")


def test_resume_refuses_to_start_over_or_to_shrink_a_run(tiny_folder, tmp_path, capsys):
    run = _train(tmp_path, "--data", tiny_folder)
    config, stats = (run / "config.json").read_text(), (run / "stats.jsonl").read_text()
    reached = json.loads(stats.splitlines()[-1])["kimg"]
    err = _one_line_error(capsys, ["train", "--resume", str(run), "--kimg", str(reached / 2)], "--kimg", f"{reached:g} kimg", "pass more")
    assert "leave" not in err and "leave" not in _one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "0.5"], "--epochs")
    # Only a run stopped short of its planned length is told it may leave the length out (a finished one would train nothing).
    stopped = json.loads(config)
    stopped["loop"]["total_kimg"] = 1.0
    (run / "config.json").write_text(json.dumps(stopped))
    _one_line_error(capsys, ["train", "--resume", str(run), "--kimg", str(reached / 2)], "leave --kimg out to keep its planned 1 kimg")
    (run / "config.json").write_text(config)
    _one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "0.01"], "--epochs 0.01 shows D 1 images, fewer than one batch")
    for ckpt in list_checkpoints(run):
        ckpt.unlink()
    _one_line_error(capsys, ["train", "--resume", str(run)], "no checkpoint to resume from", "new run")
    assert (run / "config.json").read_text() == config and (run / "stats.jsonl").read_text() == stats  # nothing overwritten


def test_unusable_output_paths_are_one_line_errors(folder_run, tmp_path, capsys):
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file.png").write_bytes(b"mine")
    _one_line_error(
        capsys, ["sample", str(folder_run), "--format", "grid", "--out", str(tmp_path / "a-folder")], "a-folder", "does not fit"
    )
    _one_line_error(capsys, ["sample", str(folder_run), "--out", str(tmp_path / "a-file.png" / "x.png")], "cannot use")
    _one_line_error(capsys, ["sample", str(folder_run), "--format", "npz", "--out", str(tmp_path / "a-file.png" / "x.npz")], "cannot use")
    assert (tmp_path / "a-file.png").read_bytes() == b"mine"


def test_flipped_bytes_and_incomplete_state_in_a_checkpoint_are_one_line(tiny_folder, tmp_path, capsys):
    """A bit flip inside the weights (which safetensors does not check) and crafted, incomplete states name the file."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    run = _train(tmp_path, "--data", tiny_folder)
    newest = list_checkpoints(run)[-1]
    good = newest.read_bytes()
    header_len = int.from_bytes(good[:8], "little")  # safetensors: header length, JSON header, then the tensors' bytes
    where = next(v["data_offsets"][0] for k, v in json.loads(good[8 : 8 + header_len]).items() if k.startswith("G_ema."))
    damaged = bytearray(good)
    damaged[8 + header_len + where : 8 + header_len + where + 4] = b"\x7f" * 4  # in G_ema's first weight, the header intact
    newest.write_bytes(bytes(damaged))
    for argv in (["train", "--resume", str(run), "--kimg", "0.096"], ["sample", str(run), "--out", str(tmp_path / "s.png")]):
        _one_line_error(capsys, argv, newest.name, "do not match their SHA-256", "delete it to fall back to the previous one")
    newest.write_bytes(good)
    with safe_open(str(newest), framework="pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    state = json.loads(meta["state"])
    crafted = [  # (tensors, state) a hand-made or foreign file might hold, each refused in one line
        ({k: v for k, v in tensors.items() if k != "rng.cpu"}, state, "no random-number state"),
        (tensors, {k: v for k, v in state.items() if k != "optimizer_groups"}, "no state for the optimiser"),
        ({**tensors, "opt_G.0.exp_avg": tensors["opt_G.0.exp_avg"].reshape(-1)[:5].clone()}, state, "does not fit the model"),
    ]
    for t, st, needle in crafted:
        save_file(t, str(newest), metadata={"format": meta["format"], "state": json.dumps(st)})  # no digests: an older file
        _one_line_error(capsys, ["train", "--resume", str(run), "--kimg", "0.096"], newest.name, needle)


def test_bad_sample_inputs(folder_run, tmp_path, capsys):
    _one_line_error(capsys, ["sample", str(tmp_path / "nothing")], "nothing")
    (tmp_path / "norun").mkdir()
    _one_line_error(capsys, ["sample", str(tmp_path / "norun")], "config.json")
    _one_line_error(capsys, ["sample", str(folder_run), "-n", "0"], "-n")


def test_corrupt_checkpoint_and_config(tiny_folder, tmp_path, capsys):
    run = _train(tmp_path, "--data", tiny_folder)
    newest = list_checkpoints(run)[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    _one_line_error(capsys, ["sample", str(run)], newest.name, "not a readable checkpoint")
    good = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**good, "loop": {**good["loop"], "batch_size": "big"}}))
    for argv in (["train", "--resume", str(run)], ["sample", str(run)]):
        _one_line_error(capsys, argv, "config.json", 'loop.batch_size must be int, got "big"')
    (run / "config.json").write_text(json.dumps({**good, "data": 3}))
    _one_line_error(capsys, ["sample", str(run)], "config.json", "config.data must be a JSON object")
    (run / "config.json").write_text("{not json")
    _one_line_error(capsys, ["sample", str(run)], "config.json")


def test_named_outputs_are_replaced_only_with_force(folder_run, tmp_path, capsys):
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"mine")
    _one_line_error(capsys, ["sample", str(folder_run), "-n", "4", "--out", str(mine)], str(mine), "exists already", "--force")
    assert mine.read_bytes() == b"mine"
    assert main(["sample", str(folder_run), "-n", "4", "--out", str(mine), "--force"]) == 0
    assert Image.open(mine).size[0] > 28
    folder = tmp_path / "f"
    assert main(["sample", str(folder_run), "-n", "5", "--format", "folder", "--out", str(folder)]) == 0
    (folder / "notes.txt").write_text("mine")
    _one_line_error(capsys, ["sample", str(folder_run), "-n", "3", "--format", "folder", "--out", str(folder)], "exists already")
    assert main(["sample", str(folder_run), "-n", "3", "--format", "folder", "--out", str(folder), "--force"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["000000.png", "000001.png", "000002.png", "notes.txt"]  # no stale samples
    html = tmp_path / "r.html"
    html.write_text("mine")
    _one_line_error(capsys, ["report", str(folder_run), "--out", str(html)], "exists already")
    _one_line_error(capsys, ["report", str(folder_run), "--out", str(tmp_path / "x.png")], "HTML", ".html")
    assert html.read_text() == "mine" and not (tmp_path / "x.png").exists()
    assert main(["report", str(folder_run), "--out", str(html), "--force"]) == 0 and html.read_text().startswith("<!DOCTYPE html>")
    (tmp_path / "walk.gif").write_bytes(b"mine")  # interpolate writes walk.png and walk.gif
    _one_line_error(capsys, ["interpolate", str(folder_run), "--from", "1", "--to", "2", "--out", str(tmp_path / "walk.png")], "walk.gif")
    for _ in range(2):  # outputs inside the run folder are its own and are refreshed
        assert main(["sample", str(folder_run), "-n", "4"]) == 0
        assert main(["report", str(folder_run)]) == 0


def test_a_folder_given_where_a_file_is_written_is_refused_before_the_work(folder_run, tmp_path, capsys):
    """It said 'pass --force', which then failed another way (eval --json only after all its scoring)."""
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("mine")
    run = str(folder_run)
    for argv, example in [
        (["interpolate", run, "--from", "1", "--to", "2", "--out", str(full)], "walk.png"),
        (["arithmetic", run, "1+2", "--out", str(full), "--force"], "result.png"),
        (["project", run, str(full / "mine.txt"), "--out", str(full), "--force"], "latents.npz"),
        (["eval", "--fakes", str(full), "--reals", str(full), "--json", str(full), "--force"], "scores.json"),
    ]:
        flag = "--json" if "--json" in argv else "--out"
        _one_line_error(capsys, argv, f"{flag} {full} is a folder; give a file name, such as {full / example}")
    assert [p.name for p in full.iterdir()] == ["mine.txt"]


def test_seeds_have_one_range_in_every_command(folder_run, capsys):
    for argv in (["sample", str(folder_run)], ["interpolate", str(folder_run), "--from", "1", "--to", "2"], ["train", "--dry-run"]):
        for seed in ("-1", str(2**31)):
            _one_line_error(capsys, [*argv, "--seed", seed], "--seed must be from 0 to 2147483647")
    _one_line_error(capsys, ["interpolate", str(folder_run), "--from", "-1", "--to", "2"], "-1")


def test_runs_table_reports_a_checkpoint_newer_than_the_last_stats_line(tiny_folder, tmp_path):
    from counterfeit.runs import run_row

    run = _train(tmp_path, "--data", tiny_folder, "--eval-every-kimg", "0")
    lines = (run / "stats.jsonl").read_text().splitlines()
    (run / "stats.jsonl").write_text(lines[0] + "\n")  # as after a Ctrl-C between ticks: the checkpoint got further
    assert run_row(run)["kimg"] == "0.1/0.064"  # 0.064 kimg, printed to one decimal


def test_a_run_that_fails_as_it_starts_leaves_no_folder(tiny_folder, tmp_path, capsys, monkeypatch):
    import counterfeit.train

    def broken(*args, **kwargs):
        raise counterfeit.train.TrainingDiverged("as if the first step failed")

    monkeypatch.setattr(counterfeit.train, "train", broken)
    assert main(["train", *TINY, *SHORT, "--data", tiny_folder, "--out", str(tmp_path / "runs")]) == 1
    assert not list((tmp_path / "runs").iterdir())
    assert "removed" in capsys.readouterr().err


def test_eval_prints_its_scores_before_a_failed_write(folder_run, capsys):
    (folder_run / "metrics.json").unlink(missing_ok=True)
    (folder_run / "metrics.json").mkdir()
    try:
        code = main(["eval", str(folder_run), "--n", "40", "--metrics", "fid", "--backbone", "evaluator"])
        captured = capsys.readouterr()
        assert code == 2 and "FID" in captured.out and "metrics.json" in captured.err, captured
    finally:
        (folder_run / "metrics.json").rmdir()


def test_eval_of_a_folder_run_counts_no_fashion_classes(folder_run, capsys):
    assert main(["eval", str(folder_run), "--n", "40", "--backbone", "evaluator"]) == 0
    out = capsys.readouterr().out
    assert "FID" in out and "classes" not in out
    assert "coverage" not in json.loads((folder_run / "metrics.json").read_text())["metrics"]
    _one_line_error(capsys, ["eval", str(folder_run), "--n", "40", "--metrics", "fid,coverage", "--backbone", "evaluator"],
                    "--metrics coverage counts Fashion-MNIST or MNIST classes")  # fmt: skip


def test_ctrl_c_while_python_imports_is_one_line(monkeypatch, capsys):
    """The studio's Stop can land before main() runs: python -m counterfeit says so in a line, exit 130, no traceback."""
    import runpy

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("counterfeit.cli.main", interrupted)
    with pytest.raises(SystemExit) as e:
        runpy.run_module("counterfeit", run_name="__main__")
    assert e.value.code == 130 and capsys.readouterr().err == "stopped while starting; nothing was written\n"


def test_studio_refuses_a_runs_folder_whose_parent_is_missing(tmp_path, capsys):
    _one_line_error(capsys, ["studio", "--runs", str(tmp_path / "typo" / "runs"), "--port", "0"], "typo", "does not exist")
    assert not (tmp_path / "typo").exists()
    (tmp_path / "notes.txt").write_text("mine")  # a file in the path "does not exist" was the wrong reason
    for runs in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "runs"):
        _one_line_error(capsys, ["studio", "--runs", str(runs), "--port", "0"], f"{tmp_path / 'notes.txt'} is a file; give a folder")


def test_every_train_flag_reaches_the_config():
    """train's flags are the config's flat options (all passed on, from config.FLAT_OPTIONS) plus the command's own five."""
    from counterfeit.cli import _parser
    from counterfeit.config import FLAT_OPTIONS

    flags = set(vars(_parser().parse_args(["train"])))
    assert flags - set(FLAT_OPTIONS) - {"epochs"} == {"command", "dry_run", "no_progress", "out", "resume"}
    # the options without a flag come from the data (classes) or the model family (widths' caps), or are spelt --kimg
    assert set(FLAT_OPTIONS) - flags == {"class_names", "num_classes", "g_max_width", "d_max_width", "total_kimg"}


# A value other than the default for each valued train flag, and the options that value needs beside it.
_NON_DEFAULT = {
    "data": ("mnist", ()), "model": ("cdcgan", ()), "loss": ("ns", ()), "kimg": ("12.5", ()), "resolution": ("32", ()),
    "channels": ("3", ()), "data_dir": ("elsewhere", ()), "exclude_class": ("Bag", ()), "z_dim": ("16", ()),
    "g_width": ("8", ()), "d_width": ("8", ()), "g_depth": ("1", ()), "d_depth": ("1", ()), "pack": ("2", ()),
    "noise_std": ("0.1", ("--model", "dae")), "gp_weight": ("5", ("--loss", "wgan-gp")), "r1_gamma": ("1", ()),
    "diffaug": ("color", ()), "ac_weight": ("0.5", ("--model", "cdcgan")), "ms_weight": ("1", ()), "recall_weight": ("1", ()),
    "recall_pool": ("64", ()), "beta": ("2", ("--model", "vae")), "lr_g": ("0.001", ()), "lr_d": ("0.002", ()),
    "beta1": ("0.1", ()), "beta2": ("0.5", ()), "d_steps": ("2", ()), "lr_rampdown": ("0.25", ()), "batch_size": ("32", ()),
    "seed": ("7", ()), "ema_halflife_kimg": ("1", ()), "tick_kimg": ("2", ()), "sample_kimg": ("10", ()),
    "snapshot_kimg": ("10", ()), "keep_checkpoints": ("5", ()), "eval_every_kimg": ("10", ()), "eval_n": ("100", ()),
    "alarm_after_kimg": ("10", ()), "device": ("cpu", ()), "precision": ("fp32", ()),
}  # fmt: skip
_BOOL_CONTEXT = {"twin_ac": ("--model", "cdcgan"), "standardise": ("--data", "ring8")}


@pytest.mark.parametrize("option", sorted(set(FLAT_OPTIONS) - {"class_names", "num_classes", "g_max_width", "d_max_width", "total_kimg"}))
def test_each_train_flag_changes_its_config_field(option):
    """Each flag given on the command line lands in its config field (a flag dropped on the way fails here)."""
    from counterfeit.cli import _parser, _train_config
    from counterfeit.config import _FIELDS, make_config, option_type

    flag = "--" + option.replace("_", "-")
    is_bool = option_type(option) is bool
    value, context = (None, _BOOL_CONTEXT.get(option, ())) if is_bool else _NON_DEFAULT[option]
    section, name = _FIELDS[option]
    default = getattr(getattr(make_config(**{k[2:]: v for k, v in zip(context[::2], context[1::2])}), section), name)
    if is_bool:
        argv, expected = [*context, "--no-" + flag[2:] if default else flag], not default
    else:
        kind = str if option_type(option) is type(None) else option_type(option)  # the fields that default to None hold text
        argv, expected = [*context, flag, value], os.path.abspath(value) if option == "data_dir" else kind(value)
    assert expected != default
    _, cfg = _train_config(_parser().parse_args(["train", *argv]))
    assert getattr(getattr(cfg, section), name) == expected


def test_damaged_run_files_are_one_line_errors_and_lose_nothing(folder_run, tmp_path, capsys):
    """A run folder edited or damaged by hand: config.json not UTF-8 or out of range, a checkpoint state that is not one."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    run = tmp_path / folder_run.name
    shutil.copytree(folder_run, run)
    config = (run / "config.json").read_bytes()
    (run / "config.json").write_bytes(b"\x00\xff garbage")
    _one_line_error(capsys, ["sample", str(run), "--out", str(tmp_path / "s.png")], "config.json is not a valid config")
    bad_width = json.loads(config)
    bad_width["model"]["g_width"] = -3  # types are checked on load, ranges only when a config is made
    (run / "config.json").write_text(json.dumps(bad_width))
    _one_line_error(capsys, ["sample", str(run), "--out", str(tmp_path / "s.png")], "config.json does not build its model")
    (run / "config.json").write_bytes(config)
    newest = list_checkpoints(run)[-1]
    with safe_open(str(newest), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    state = json.loads(meta["state"])
    save_file(tensors, str(newest), metadata={**meta, "state": json.dumps({**state, "cur_nimg": -5})})
    stats = (run / "stats.jsonl").read_text()
    _one_line_error(capsys, ["train", "--resume", str(run), "--kimg", "1"], "no image count cur_nimg >= 0")
    assert (run / "stats.jsonl").read_text() == stats  # the resume once truncated the stats to cur_nimg -5, then crashed
    assert main(["runs", str(tmp_path)]) == 0  # the run list shows the broken run and goes on
    assert "bad checkpoint" in capsys.readouterr().out


def test_damaged_stats_or_metrics_leave_runs_and_report_working(folder_run, tmp_path, capsys):
    """One bad stats line broke `counterfeit runs` (and the studio's list) for every run; bad bytes broke the report."""
    run = tmp_path / folder_run.name
    shutil.copytree(folder_run, run)
    with open(run / "stats.jsonl", "a") as f:
        f.write('{"kimg": 1.5, "loss_D": "zz"}\n')
    assert main(["runs", str(tmp_path)]) == 0
    assert "D ? G ?" in capsys.readouterr().out
    (run / "metrics.json").write_bytes(b"\xff\xfe garbage")
    (run / "metric-fid.jsonl").write_bytes(b'{"kimg": 0.064, "fid": 3.0}\n\xff\xfe\n')
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    assert "metrics.json could not be read" in (tmp_path / "r.html").read_text()


def test_a_one_image_folder_is_told_it_needs_two(tmp_path, capsys):
    """'use a smaller batch' was no advice at --batch-size 2, the smallest there is."""
    folder = tmp_path / "one"
    folder.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "only.png")
    _one_line_error(
        capsys,
        ["train", "--data", str(folder), "--batch-size", "2", "--out", str(tmp_path / "runs")],
        "has 1 item; training needs at least 2",
    )


def test_dry_run_refuses_what_training_would_refuse_by_name(capsys):
    """--dry-run printed a config and exited 0 for a model on the other kind of data, or a class the dataset lacks."""
    _one_line_error(capsys, ["train", "--dry-run", "--data", "ring8", "--model", "dcgan"], "trains on images but 'ring8' holds points")
    _one_line_error(capsys, ["train", "--dry-run", "--exclude-class", "Nope"], "Nope")
    assert main(["train", "--dry-run", "--exclude-class", "Bag"]) == 0


def test_eval_and_augment_eval_check_the_run_folder_is_writable_first(folder_run, monkeypatch, capsys):
    """A read-only run folder failed only after the scoring or the classifiers' training, losing the work."""
    import errno
    import tempfile

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(str(dir), ".write-check.x"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr("counterfeit.metrics.evaluate.evaluate_images", lambda *a, **k: pytest.fail("scored before the check"))
    _one_line_error(capsys, ["eval", str(folder_run), "--n", "10", "--metrics", "fid"], f"cannot use {folder_run}")
    _one_line_error(capsys, ["augment-eval", str(folder_run), "--n-fakes", "16", "--seeds", "1"], f"cannot use {folder_run / 'eval'}")


def test_eval_gives_a_toys_real_high_quality_share_for_its_own_modes():
    """A ducks-cows run was told that real data scores 98.9%: its narrow modes' real points score 99.7%."""
    from counterfeit.cli import _summary

    toy = {"modes_covered": 2, "modes_total": 2, "high_quality_pct": 99.0, "reverse_kl": 0.01, "min_count": 1}
    ducks = " ".join(_summary({"toy": {**toy, "dataset": "ducks-cows"}}))
    assert "99.7% for real data" in ducks and "0.69 (ln 2)" in ducks, ducks
    assert "98.9% for real data" in " ".join(_summary({"toy": {**toy, "modes_total": 25, "dataset": "grid25"}}))


def test_eval_tells_k_nn_coverage_from_class_coverage():
    """PRDC's coverage (k-NN, Naeem et al. 2020) and the class coverage were both printed as 'coverage'; the saved keys stay."""
    from counterfeit.cli import _summary

    prov = {"backbone": "counterfeit fashion-mnist evaluator"}
    # the keys an eval file saved before the wording changed holds, and a new one still does
    results = {
        "pr": {"precision": 0.7, "recall": 0.6, "density": 0.9, "coverage": 0.8, "provenance": prov},
        "coverage": {"classes_covered": 9, "num_classes": 10, "kl": 0.01, "duplicate_rate": 0.002, "missing": ["Bag"], "provenance": prov},
    }
    pr_line, class_line = _summary(results)
    assert "k-NN coverage 0.800" in pr_line, pr_line
    assert class_line.startswith("class coverage 9/10 classes  KL to real 0.0100"), class_line
    for line in (pr_line, class_line):  # no bare "coverage" left to read as the other one
        assert line.count("coverage") == line.count("k-NN coverage") + line.count("class coverage"), line


def test_the_reading_line_says_what_the_judged_counts_mean():
    """'classes 9/10' and 'modes 8/8' appeared on the stats lines with nothing to say what they count."""
    from counterfeit.cli import _judged_words
    from counterfeit.config import make_config

    assert "classes N/M: how many kinds of item a judge finds" in _judged_words(make_config(), "images")
    assert _judged_words(make_config(eval_every_kimg=0), "images") == ""  # nothing judged, nothing to explain
    for off_judge in ({"resolution": 32}, {"channels": 3}):  # the judge reads grey 28x28 only: no 'classes' on the lines
        assert _judged_words(make_config(**off_judge), "images") == ""


def test_eval_anomaly_says_what_its_mean_scores_measure():
    """'mean score normal -1.118' left open whether it was a pixel error or D's verdict, and in what unit."""
    from counterfeit.cli import _summary

    prov = {"excluded_class": "Bag", "n_test": 10000}
    for score, normal in (("mean squared reconstruction error per pixel, pixels in [0, 1]", 0.01), ("-logit of D", -1.1)):
        a = {"auroc": 0.9, "mean_score_normal": normal, "mean_score_anomalous": 0.03, "provenance": {**prov, "score": score}}
        (line,) = _summary({"anomaly": a})
        assert f"mean score ({score}) normal {normal:.4g}, anomalous 0.03" in line, line
