"""The HTML run report: self-contained, every section present or explained, built from a hand-made run folder."""

import html
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from counterfeit.config import ConfigError, RunConfig
from counterfeit.report import write_report

ALARM = "only 3 of 10 classes in the fakes <b>& falling</b>"  # markup inside, to check it is escaped
CLASSES = ["T-shirt/top", "Trouser", "Pullover"]


def _png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (56, 56), dtype=np.uint8)).save(path)


def _make_run(root, full=True):
    run = root / "00007-fashion-mnist-dcgan"
    run.mkdir()
    (run / "config.json").write_text(RunConfig().replace(loop={"total_kimg": 40.0}).to_json() + "\n")
    rows = []
    for i in range(1, 11):
        kimg = 4.0 * i
        row = {"kimg": kimg, "loss_D": 1.2 + 0.01 * i, "loss_G": 0.9 - 0.01 * i, "D(x)": 0.6, "D(G(z))": 0.4,
               "D(G(z))_after_D": 0.35, "img/s": 900.0, "seconds": 4.5 * i}  # fmt: skip
        if full and i % 2 == 0:
            row.update({"cov/classes": 10 - i // 2, "cov/num_classes": 10, "cov/kl": 0.1 * i, "cov/dup": 0.01, "cov/fid": 60.0 - i})
        if full and i == 8:
            row["alarm"] = ALARM
        rows.append(row)
    (run / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"kimg": 44, "loss_')  # a torn last line
    if not full:
        return run
    _png(run / "samples" / "reals.png", 0)
    _png(run / "samples" / "fakes000020.0kimg.png", 1)
    _png(run / "samples" / "fakes000040.0kimg.png", 2)
    _png(run / "report-pairs.png", 3)
    prov = {"backbone": "judge", "weights_sha256": "ab" * 32, "n_fakes": 300, "n_reals": 300, "reference": "https://example.org/paper"}
    metrics = {
        "run": run.name, "kimg": 40.0, "checkpoint": "checkpoints/snapshot-000040000.safetensors", "created": "2024-01-01T00:00:00",
        "metrics": {
            "fid": {"fid": 42.5, "provenance": prov},
            "coverage": {"histogram": {"T-shirt/top": 150, "Trouser": 100, "Pullover": 50},
                         "real_histogram": {"T-shirt/top": 100, "Trouser": 100, "Pullover": 100},
                         "classes_covered": 3, "num_classes": 3, "kl": 0.12, "duplicate_rate": 0.02, "provenance": prov},
            "memorisation": {"pairs_png": "report-pairs.png", "near_copy_fraction": 0.0, "fake_to_train_median": 5.1,
                             "test_to_train_median": 4.9, "provenance": prov},
        },
    }  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "metric-fid.jsonl").write_text('{"kimg": 20.0, "fid": 55.0}\n{"kimg": 40.0, "fid": 42.5}\n')
    return run


def test_full_report_is_self_contained(tmp_path):
    run = _make_run(tmp_path)
    out = write_report(run)
    assert out == run / "report.html"
    page = out.read_text()

    # Nothing is fetched from the network: every src/href is inline data or an in-page anchor.
    refs = re.findall(r"""(?:src|href)\s*=\s*['"]?([^'"\s>]+)""", page)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r[:40] for r in refs if not r.startswith(("data:", "#"))]
    assert not re.search(r"""(?:src|href)\s*=\s*['"]?\s*https?:""", page)
    assert "<link" not in page and "<script" not in page and "@import" not in page and "url(" not in page

    # 5 plots + 2 fake grids + reals + pairs, all inline PNGs.
    assert page.count("data:image/png;base64,") == 9
    for name in ("losses", "d_outputs", "fid", "coverage", "classes"):
        png = run / "report" / f"{name}.png"
        assert png.is_file() and png.read_bytes().startswith(b"\x89PNG")

    assert run.name in page and "fashion-mnist" in page and "dcgan" in page and "40 of 40" in page
    assert "where the losses sit when D cannot tell" in page
    assert "only 3 of 10 classes in the fakes &lt;b&gt;&amp; falling&lt;/b&gt;" in page and "<b>& falling" not in page
    assert "32 kimg" in page  # the alarm's position
    assert '"total_kimg": 40.0' in page  # the config, pretty-printed
    assert "<details>" in page and "ab" * 32 in page  # provenance, collapsible
    assert "42.5" in page and "near-copy fraction" in page
    assert "20 kimg" in page and "reals" in page
    assert "no evaluation yet" not in page and "no sample grids yet" not in page

    # A plot whose data went away must not linger beside the new report.
    (run / "metrics.json").unlink()
    assert "no evaluation yet" in write_report(run).read_text()
    assert not (run / "report" / "classes.png").exists() and (run / "report" / "fid.png").exists()


def test_report_without_evaluation_or_samples(tmp_path):
    run = _make_run(tmp_path, full=False)
    out = write_report(run, tmp_path / "elsewhere" / "r.html")
    page = out.read_text()
    assert out == tmp_path / "elsewhere" / "r.html"
    assert "no evaluation yet: run <code>counterfeit eval" in page
    assert "no FID yet" in page and "no sample grids yet" in page and "no nearest-neighbour pairs" in page
    assert "data:image/png;base64," in page  # the loss and D plots still exist
    assert {p.name for p in (run / "report").iterdir()} == {"losses.png", "d_outputs.png"}


def test_toy_run_with_broken_metrics(tmp_path):
    run = tmp_path / "00000-ring8-mlp"
    run.mkdir()
    (run / "config.json").write_text('{"data": {"name": "ring8"}, "model": {"name": "mlp"}, "loss": {"name": "minimax"}}')
    (run / "metrics.json").write_text("{not json")
    page = write_report(run).read_text()
    assert "no training statistics yet" in page and "metrics.json could not be read" in page and "ring8" in page
    assert "a 2-D toy has modes, not classes" in page and "which the judge knows" not in page

    rows = [{"kimg": k, "loss_D": 1.3, "loss_G": -0.7, "toy/modes": m, "toy/modes_total": 8, "toy/hq": 80.0} for k, m in ((1, 5), (2, 8))]
    (run / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = write_report(run).read_text()
    assert "-ln 2 &asymp; -0.693 for G" in page and "No mode-collapse alarm fired" in page
    assert (run / "report" / "coverage.png").is_file() and not (run / "report" / "d_outputs.png").exists()


def test_hinge_runs_get_d_level_only(tmp_path):
    """hinge's D loss sits at 2 when D cannot tell; its G loss has no such level, and the page says so."""
    run = tmp_path / "00000-fashion-mnist-dcgan"
    run.mkdir()
    (run / "config.json").write_text('{"data": {"name": "fashion-mnist"}, "model": {"name": "dcgan"}, "loss": {"name": "hinge"}}')
    rows = [{"kimg": k, "loss_D": 1.6, "loss_G": 0.4} for k in (1, 2)]
    (run / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = write_report(run).read_text()
    assert "The dashed line, 2 for D, is where the losses sit when D cannot tell" in page
    assert "G's hinge loss is minus D's mean score of its fakes" in page and "ln 2" not in page


def test_not_a_run_folder(tmp_path):
    with pytest.raises(ConfigError, match="not a run folder"):
        write_report(tmp_path)


def test_extra_loss_terms_leave_no_dashed_line_and_autoencoders_no_gan_loss(tmp_path):
    """cdcgan's logged losses carry the AC term: no "D cannot tell" line; a VAE's header names its objective, not ns."""
    run = tmp_path / "00000-fashion-mnist-cdcgan"
    run.mkdir()
    (run / "config.json").write_text('{"model": {"name": "cdcgan"}, "loss": {"name": "ns", "ac_weight": 2.0}}')
    (run / "stats.jsonl").write_text("".join(json.dumps({"kimg": k, "loss_D": 4.3, "loss_G": 6.1}) + "\n" for k in (1, 2)))
    page = write_report(run).read_text()
    assert "include the terms of --ac-weight" in page and "The dashed" not in page
    vae = tmp_path / "00001-fashion-mnist-vae"
    vae.mkdir()
    (vae / "config.json").write_text('{"model": {"name": "vae"}, "loss": {"name": "ns", "beta": 4.0}}')
    (vae / "stats.jsonl").write_text(
        "".join(json.dumps({"kimg": k, "loss": 90.0, "loss_rec": 80.0, "loss_kl": 2.5}) + "\n" for k in (1, 2))
    )
    page = write_report(vae).read_text()
    assert "reconstruction + 4 x KL" in page and "<td>ns</td>" not in page


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The matplotlib figures the report draws, kept for the test to read their labels."""
    import counterfeit.report as report

    figures, real_png = [], report._png
    monkeypatch.setattr(report, "_png", lambda fig: figures.append(fig) or real_png(fig))
    return figures


def _legends(figures: list) -> list[str]:
    return [t.get_text() for fig in figures for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def _small_run(root, loss="hinge", rows=((4.0, {}), (8.0, {})), data="fashion-mnist", **loop):
    """A run folder with a config of `loss` and stats rows at the given kimg (each with D's curves and the extras)."""
    run = root / f"00001-{data}-dcgan"
    run.mkdir()
    cfg = RunConfig().replace(data={"name": data}, loss={"name": loss}, loop={"total_kimg": 40.0, **loop})
    (run / "config.json").write_text(cfg.to_json() + "\n")
    lines = [{"kimg": k, "loss_D": 1.0, "loss_G": 1.0, "D(x)": 0.7, "D(G(z))": 0.3, "seconds": k, **extra} for k, extra in rows]
    (run / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


@pytest.mark.parametrize(
    "loss, says, level",
    [("ns", "drift to 0.5", (0.5, "0.5")), ("lsgan", "sigmoid(0.5) = 0.622", (pytest.approx(0.6225, abs=1e-4), "sigmoid(0.5) = 0.622")),
     ("hinge", "at no fixed level", None), ("wgan-gp", "read the gap, not the level", None)],
)  # fmt: skip
def test_the_d_output_chart_is_read_as_the_loss_defines_it(tmp_path, loss, says, level):
    """A critic's or hinge D's sigmoid is no probability: only the cross-entropies drift to 0.5 (was said for every loss)."""
    from counterfeit.losses import d_output_level

    page = write_report(_small_run(tmp_path, loss)).read_text()
    assert says in page
    assert ("drift to 0.5" in page) == (loss == "ns")
    assert d_output_level(loss) == level


def test_a_stopped_run_reports_its_checkpoint_and_how_to_resume(tmp_path):
    """A stop saves between ticks: the header gives the checkpoint's kimg, and a run with no stats is resumed, not restarted."""
    from torch import nn

    from counterfeit.checkpoints import list_checkpoints, save_checkpoint

    run = _small_run(tmp_path)
    save_checkpoint(run, 10_000, {"G": nn.Linear(1, 1)}, {}, {})
    page = write_report(run).read_text()
    assert "10 of 40 (the checkpoint; stats to 8)" in page
    (run / "stats.jsonl").unlink()
    page = write_report(run).read_text()
    assert "10 of 40 (the checkpoint; no stats yet)" in page and f"counterfeit train --resume {run}" in page
    # A newest checkpoint that cannot be read (here: no image count in its state) is said, and no resume is offered.
    save_checkpoint(run, 12_000, {"G": nn.Linear(1, 1)}, {}, {})
    (ckpt := list_checkpoints(run)[-1]).write_bytes(ckpt.read_bytes()[:100])
    page = write_report(run).read_text()
    assert "(the newest checkpoint is unreadable)" in page and "--resume" not in page


def test_no_alarm_is_news_only_once_the_alarm_watches(tmp_path):
    """Before --alarm-after-kimg the alarm cannot fire, and the report says so instead of 'no alarm fired'."""
    cov = {"cov/classes": 3, "cov/num_classes": 10, "cov/dup": 1.0}
    page = write_report(_small_run(tmp_path, rows=((4.0, cov), (8.0, cov)))).read_text()
    assert "checks of missing classes and duplicates start at 40 kimg" in page and "stats reach 8" in page
    assert "coverage falling 2 or more below the best seen" in page  # that check runs from the start
    (tmp_path / "b").mkdir()
    page = write_report(_small_run(tmp_path / "b", rows=((4.0, cov), (8.0, cov)), alarm_after_kimg=4.0)).read_text()
    assert "<p>No mode-collapse alarm fired.</p>" in page


def test_alarms_are_listed_as_episodes_with_where_they_cleared(tmp_path):
    """Four lines 'generator is collapsing' for a run that ended healthy read as four collapses; kimg read 60.032."""
    cov = {"cov/classes": 5, "cov/num_classes": 10, "cov/dup": 0.0}
    ok = {"cov/classes": 10, "cov/num_classes": 10, "cov/dup": 0.0}
    first = "generator is collapsing: 5 of 10 classes missing since 40 kimg; to try: --mbstd; D wins every round (D(x) 0.98)"
    rows = ((40.0, {**cov, "alarm": first}), (60.032, {**cov, "alarm": "generator is collapsing: ... since 40 kimg"}),
            (80.0, ok), (90.0, {}), (100.032, {**cov, "alarm": first.replace("40", "100")}),
            (120.0, {**cov, "alarm": "generator is collapsing: later since 100 kimg; D wins every round (D(x) 0.99)"}))  # fmt: skip
    page = write_report(_small_run(tmp_path, rows=rows)).read_text()
    assert "<b>40 to 60 kimg (2 evaluations)</b>, cleared at 80 kimg: generator is collapsing: 5 of 10 classes" in page
    assert (
        "<b>100 to 120 kimg (2 evaluations)</b>, still firing at the last evaluation: generator is collapsing: later "
        "since 100 kimg; D wins every round (D(x) 0.99); to try: --mbstd</li>"
    ) in page  # the first's verdict is not repeated


def test_a_folder_run_is_told_why_it_has_no_coverage_or_alarm(tmp_path):
    """It said 'no coverage measurements yet; run counterfeit eval', which leaves class coverage out for a folder."""
    page = write_report(_small_run(tmp_path, rows=((4.0, {}),), data="cats")).read_text()
    assert "no coverage, and no collapse alarm, for your own images" in page and "no coverage measurements yet" not in page


def test_damaged_stats_lines_are_named_and_one_row_still_draws(tmp_path, monkeypatch):
    """An unreadable middle line is named (it was dropped silently); a single row is drawn with a marker, not as nothing."""
    from matplotlib.axes import Axes

    markers = []
    plot = Axes.plot
    monkeypatch.setattr(Axes, "plot", lambda self, *a, **k: markers.append(k.get("marker")) or plot(self, *a, **k))
    run = _small_run(tmp_path, rows=((4.0, {}),))
    with open(run / "stats.jsonl", "a") as f:
        f.write("not json\n\n[1, 2]\n")
    page = write_report(run).read_text()
    assert "stats.jsonl has 2 unreadable lines (line 2, 4)" in page
    assert markers == ["."] * 4  # loss_D, loss_G, D(x), D(G(z)): a line through one point draws nothing
    markers.clear()
    (tmp_path / "long").mkdir()
    write_report(_small_run(tmp_path / "long", rows=tuple((k, {}) for k in (4.0, 8.0, 12.0))))
    assert markers == [None] * 4


def test_excluded_class_chart_uses_the_share_coverage_asked_for(tmp_path):
    """An --exclude-class run's reals bar gives the left-out class no share, and the off-target fakes are counted."""
    run = _small_run(tmp_path)
    cov = {"histogram": {"Bag": 5, "Trouser": 45, "Pullover": 50}, "real_histogram": {"Bag": 100, "Trouser": 100, "Pullover": 100},
           "real_share": {"Bag": 0.0, "Trouser": 0.5, "Pullover": 0.5}, "classes_covered": 2, "num_classes": 2, "kl": 0.01,
           "off_target": {"classes": ["Bag"], "fraction": 0.05}, "provenance": {}}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps({"run": run.name, "kimg": 8.0, "metrics": {"coverage": cov}}))
    page = write_report(run).read_text()
    assert "Bag: left out of training (--exclude-class)" in page and "5.00 % of the fakes were judged to be it" in page
    from counterfeit.report import _histograms

    assert _histograms({"metrics": {"coverage": cov}})[1] == {"Bag": 0.0, "Trouser": 0.5, "Pullover": 0.5}


def test_a_read_only_run_folder_still_gets_its_report_elsewhere(tmp_path, monkeypatch, caplog):
    """--out elsewhere: plots that cannot be written into RUN/report/ are a warning, since the page inlines them."""
    import errno

    import counterfeit.report as R

    run = _small_run(tmp_path)
    real_write = R.atomic_write_bytes

    def read_only(path, data):
        if run in path.parents:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        real_write(path, data)

    monkeypatch.setattr(R, "atomic_write_bytes", read_only)
    out = write_report(run, tmp_path / "elsewhere.html")
    assert out.read_text().count("data:image/png;base64,") >= 2
    assert "the plot files were not written" in caplog.text
    with pytest.raises(OSError, match="Read-only"):
        write_report(run)  # the page itself goes into the run folder: the first error stands


def test_a_toy_run_is_not_told_to_compute_a_fid(tmp_path):
    page = write_report(_small_run(tmp_path, loss="ns", data="ring8", rows=((4.0, {"img/s": 9000.0}),))).read_text()
    assert "no FID for 2-D points" in page and "no FID yet" not in page
    assert "9000 points/s" in page and "img/s" not in page  # a toy's speed counts points


def test_a_toy_runs_report_speaks_of_points_and_modes(tmp_path, drawn):
    """The learner's audit: a toy's report spoke of images, classes the judge knows, and a memorisation check to run."""
    rows = [(k, {"toy/modes": 8, "toy/modes_total": 8, "toy/hq": 50.0}) for k in (4.0, 8.0)]
    page = write_report(_small_run(tmp_path, loss="ns", data="ring8", rows=rows)).read_text()
    labels = [ax.get_xlabel() for fig in drawn for ax in fig.axes]
    assert "kimg (thousands of real points shown to D)" in labels and not any("images" in x for x in labels)
    assert "a 2-D toy has modes, not classes" in page and "which the judge knows" not in page
    assert "no nearest-neighbour pairs for 2-D points" in page and "memorisation check" not in page
    from counterfeit.metrics.toy import toy_metrics

    run = tmp_path / "00001-ring8-dcgan"  # the run _small_run made: scored the way eval scores a toy
    toy = toy_metrics(torch.zeros(10, 2), "ring8")
    (run / "metrics.json").write_text(json.dumps({"kimg": 8.0, "metrics": {"toy": {**toy, "provenance": {"seed": 0}}}}))
    page = write_report(run).read_text()  # its raw keys come with the scale eval prints
    assert "high quality: the share of samples that close to a mode, 98.9% for real data" in page and "2.08 (ln 8)" in page
    assert "Nearest training points" in page and "Nearest training images" not in page  # the heading above that line


def test_the_header_rounds_the_kimg_a_whole_last_batch_overshoots(tmp_path):
    page = write_report(_small_run(tmp_path, rows=((4.0, {}), (40.032, {})))).read_text()
    assert "40 of 40" in page and "40.032 of" not in page
    (tmp_path / "tiny").mkdir()
    page = write_report(_small_run(tmp_path / "tiny", rows=((0.064, {}), (0.128, {})), total_kimg=0.128)).read_text()
    assert "0.128 of 0.128" in page  # below 1 kimg, rounding to 0.1 said "0.1 of 0.128"


def test_the_commands_the_report_suggests_quote_a_path_with_spaces(tmp_path):
    """<code>counterfeit eval my runs/00001-...</code> pasted as is would evaluate the folder 'my'."""
    from torch import nn

    from counterfeit.checkpoints import save_checkpoint

    (tmp_path / "my runs").mkdir()
    run = _small_run(tmp_path / "my runs")
    quoted = f"&#x27;{run}&#x27;"  # '{run}', as the page escapes it
    (run / "eval").mkdir()
    (run / "eval" / "augment.json").write_text("{")  # damaged: the page says to run augment-eval again
    page = write_report(run).read_text()
    assert f"<code>counterfeit eval {quoted}</code>" in page and f"<code>counterfeit augment-eval {quoted}</code>" in page
    save_checkpoint(run, 10_000, {"G": nn.Linear(1, 1)}, {}, {})
    (run / "stats.jsonl").unlink()
    assert f"<code>counterfeit train --resume {quoted}</code>" in write_report(run).read_text()


def test_one_evaluations_provenance_is_shown_once_and_each_metric_keeps_only_its_own(tmp_path):
    """FID, KID, pr and coverage come from one feature pass: their shared provenance was repeated under each."""
    run = _small_run(tmp_path)
    base = {"generator": "G_ema", "checkpoint_sha256": "cd" * 32, "seed": 0, "reference": "fashion-mnist:test (10000 images)",
            "n_fakes": 10000, "counterfeit": "0.1.0", "seconds": 12.5}  # fmt: skip
    feats = {**base, "backbone": "counterfeit fashion-mnist evaluator", "weights_sha256": "ab" * 32, "n_reals": 10000}
    warning = "precision/recall/density/coverage from 10000 fakes against 9000 reals"
    results = {
        "fid": {"fid": 12.0, "provenance": feats},
        "kid": {"kid": 0.01, "kid_std": 0.001, "provenance": {**feats, "kernel": "cubic polynomial", "subsets": 100}},
        "pr": {"precision": 0.7, "recall": 0.6, "density": 0.9, "coverage": 0.8, "provenance": {**feats, "warning": warning}},
        "coverage": {"classes_covered": 10, "num_classes": 10, "provenance": feats},
        "memorisation": {"near_copy_fraction": 0.0, "provenance": {**base, "n_fakes": 2000, "space": "pixels in [0, 1], L2"}},
        # another evaluation of the same checkpoint, kept beside the first in metrics.json: its provenance is its own
        "anomaly": {"auroc": 0.9, "provenance": {"checkpoint_sha256": "cd" * 32, "scorer": "-logit of D", "counterfeit": "0.1.0"}},
    }
    (run / "metrics.json").write_text(json.dumps({"run": run.name, "kimg": 8.0, "metrics": results}))
    page = write_report(run).read_text()
    metrics = page[page.index("<h2 id='metrics'>") :]
    metrics = metrics[: metrics.index("<h2", 10)]
    sections = dict(re.findall(r"<h3>([^<( ]+)[^<]*</h3>(.*?)(?=<h3>|$)", metrics, re.S))  # by name, less any title
    assert "provenance shared by fid, kid, pr, coverage and memorisation" in metrics
    assert metrics.count("ab" * 32) == 1 and metrics.count("counterfeit fashion-mnist evaluator") == 1  # once for the four
    assert metrics.count("cd" * 32) == 2  # once per evaluation: the five metrics', the anomaly's
    assert "cubic polynomial" in sections["kid"] and warning in sections["pr"] and "pixels in [0, 1], L2" in sections["memorisation"]
    assert "<details>" not in sections["fid"] + sections["coverage"]  # nothing of their own beyond the shared part
    assert "-logit of D" in sections["anomaly"] and "cd" * 32 in sections["anomaly"]
    # Nothing lost: every field of every metric's provenance is a row of the page.
    for values in results.values():
        for k, v in values["provenance"].items():
            assert f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" in metrics, (k, v)
    only = metrics[metrics.index("fid, kid, pr and coverage only:") : metrics.index("</table>")]  # what memorisation did not use
    assert "<th>backbone</th>" in only and "<th>n_fakes</th><td>10000</td>" in only
    assert "<th>n_fakes</th><td>2000</td>" in sections["memorisation"]  # the same field, another value: beside its metric


def test_pr_s_k_nn_coverage_and_the_class_coverage_metric_are_told_apart(tmp_path):
    """metrics.json calls both "coverage" (and keeps doing so, so saved files load): the page names which is which."""
    run = _small_run(tmp_path)
    results = {"pr": {"precision": 0.7, "recall": 0.6, "density": 0.9, "coverage": 0.8, "provenance": {}},
               "coverage": {"classes_covered": 9, "num_classes": 10, "provenance": {}},
               "pr-drs90": {"precision": 0.8, "recall": 0.5, "density": 1.0, "coverage": 0.7, "provenance": {}}}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps({"run": run.name, "kimg": 8.0, "metrics": results}))
    page = write_report(run).read_text()
    metrics = page[page.index("<h2 id='metrics'>") :]
    assert "<h3>pr (precision, recall, density and k-NN coverage)</h3>" in metrics
    assert "<h3>pr-drs90 (precision, recall, density and k-NN coverage)</h3>" in metrics
    assert "<h3>coverage (class coverage)</h3>" in metrics
    assert metrics.count("<tr><th>k-NN coverage</th><td class=num>") == 2 and "<th>coverage</th>" not in metrics
    assert "<tr><th>classes_covered</th><td class=num>9</td></tr>" in metrics  # the class metric's own rows keep their keys


def test_a_streak_still_firing_gives_the_remedies_of_its_latest_kind(tmp_path):
    """A grid25 streak, first 'not finding the data', then collapsing: the report paired the collapse with the lost G's remedy."""
    toy = {"toy/modes": 12, "toy/modes_total": 25, "toy/hq": 40.0}
    lost = "generator is not finding the data: 19 of 25 modes missing; to try: the default --loss and learning rates"
    rows = ((200.0, {**toy, "alarm": lost}), (220.0, {**toy, "alarm": "generator is collapsing: 13 of 25; to try: --recall-weight 6"}),
            (240.0, {**toy, "alarm": "generator is collapsing: 13 of 25 modes missing"}))  # fmt: skip
    page = write_report(_small_run(tmp_path, "ns", rows=rows, data="grid25")).read_text()
    assert "still firing at the last evaluation: generator is collapsing: 13 of 25 modes missing; to try: --recall-weight 6" in page


def test_the_coverage_chart_marks_where_the_alarm_starts_judging(tmp_path, drawn):
    """A toy's alarm said 'since 20 kimg' with nothing on the chart to show it judged only from 200 kimg."""
    rows = [(k, {"toy/modes": 8, "toy/modes_total": 8, "toy/hq": 50.0}) for k in (20.0, 200.0, 220.0)]
    write_report(_small_run(tmp_path, loss="ns", data="ring8", rows=rows, alarm_after_kimg=200.0, total_kimg=220.0))
    assert "alarm judges from 200 kimg" in _legends(drawn)
    drawn.clear()
    (tmp_path / "short").mkdir()  # a run that has not reached it draws no line out at 200 past its end
    write_report(_small_run(tmp_path / "short", loss="ns", data="ring8", rows=rows[:1], alarm_after_kimg=200.0))
    assert not any("alarm judges" in t for t in _legends(drawn))


def test_an_image_run_s_coverage_chart_says_only_missing_classes_wait_for_the_warm_up(tmp_path, drawn):
    """'alarm judges from 40 kimg' on a Fashion-MNIST chart: a fall below the best classes is judged before it, too."""
    rows = [(k, {"cov/classes": 10, "cov/num_classes": 10, "cov/dup": 0.0}) for k in (20.0, 40.0, 60.0)]
    write_report(_small_run(tmp_path, rows=rows, alarm_after_kimg=40.0, total_kimg=60.0))
    assert "alarm counts missing classes from 40 kimg" in _legends(drawn)
