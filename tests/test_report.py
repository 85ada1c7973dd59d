"""The HTML run report: self-contained, every section present or explained, built from a hand-made run folder."""

import json
import re

import numpy as np
import pytest
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
    assert "class coverage counts Fashion-MNIST and MNIST classes, which the judge knows; this run trained on ring8" in page

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
