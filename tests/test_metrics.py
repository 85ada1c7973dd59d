"""Metrics with known answers: FID/KID, precision/recall, coverage and the alarm, memorisation, provenance, `counterfeit eval`."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image

from counterfeit.cli import main
from counterfeit.metrics.classes import CollapseAlarm, class_coverage, duplicate_rate, duplicate_threshold
from counterfeit.metrics.evaluate import evaluate_images, load_image_source
from counterfeit.metrics.features import BackboneUnavailable, extract, inception_weights_path
from counterfeit.metrics.fid import kid, small_n_warning
from counterfeit.metrics.memorisation import memorisation
from counterfeit.metrics.prdc import prdc

NAMES = [f"c{i}" for i in range(10)]


@pytest.fixture(scope="module")
def fashion(fashion_dir, monkeypatch_module):
    """(test images, test labels, 10k train images) of the real Fashion-MNIST."""
    monkeypatch_module.setenv("COUNTERFEIT_DATA_DIR", fashion_dir)
    test, desc = load_image_source("fashion-mnist:test")
    train, _ = load_image_source("fashion-mnist:train")
    return test, desc["class_labels"], train


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_fid_real_vs_real_near_zero_and_far_below_noise(fashion):
    test, labels, train = fashion
    reals = evaluate_images(train[:5000], test[:5000], ["fid", "coverage"], real_labels=labels[:5000])
    noise = torch.randint(0, 256, (5000, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fake = evaluate_images(noise, test[:5000], ["fid", "coverage"], real_labels=labels[:5000])
    assert reals["fid"]["fid"] < 1.0 < 50.0 < fake["fid"]["fid"]
    assert reals["coverage"]["classes_covered"] == 10 and reals["coverage"]["duplicate_rate"] < 0.05
    assert fake["coverage"]["classes_covered"] < 10


def test_one_class_only_is_flagged_as_collapsed(fashion):
    test, labels, _ = fashion
    boots = test[labels == 9][:500]  # (500, 1, 28, 28): 500 ankle boots, each shown 4 times
    r = evaluate_images(boots.repeat(4, 1, 1, 1), test[:2000], ["coverage"], real_labels=labels[:2000])["coverage"]
    # The judge calls a few real boots sneakers, so at most one neighbouring class creeps in.
    assert r["classes_covered"] <= 2 and len(r["missing"]) >= 8 and "Ankle boot" not in r["missing"]
    assert r["kl"] > 1.5 and r["duplicate_rate"] == 1.0
    alarm = CollapseAlarm(warmup_kimg=0)
    missing = 10 - r["classes_covered"]
    assert alarm.update(40, r["classes_covered"], 10, r["duplicate_rate"]) == (
        f"generator is collapsing: {missing} of 10 classes missing and 100% of samples are near-duplicates since 40 kimg"
    )


def test_provenance_fields(fashion):
    test, labels, train = fashion
    r = evaluate_images(train[:300], test[:300], ["fid", "kid", "pr", "coverage"], real_labels=labels[:300], provenance={"reference": "t"})
    for name in ("fid", "kid", "pr", "coverage"):
        p = r[name]["provenance"]
        assert p["backbone"] == "counterfeit fashion-mnist evaluator" and len(p["weights_sha256"]) == 64
        assert p["n_fakes"] == 300 and p["n_reals"] == 300 and p["reference"] == "t" and "preprocessing" in p
    assert "biased" in r["fid"]["provenance"]["warning"]  # 300 samples for 128 dimensions is too few
    assert len({r[name]["provenance"]["seconds"] for name in r}) == 1  # one evaluation, one time: the report groups by it


def test_small_n_warning():
    assert small_n_warning(100, 10_000, 128) is not None
    assert small_n_warning(10_000, 10_000, 128) is None


def test_kid_same_distribution_near_zero_shifted_positive():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(600, 16, generator=g), torch.randn(600, 16, generator=g)
    same, _ = kid(a, b, subsets=20, subset_size=200)
    shifted, _ = kid(a + 1.0, b, subsets=20, subset_size=200)
    assert abs(same) < 0.01 < shifted


def test_eval_coverage_of_a_run_without_one_class_asks_for_the_others(fashion):
    """eval of an --exclude-class run, as the training-time monitor: the left-out class is neither covered nor missing."""
    test, labels, _ = fashion
    no_bags = test[labels != 8][:2000]  # (2000, 1, 28, 28) a perfect forger of the other nine classes
    plain = evaluate_images(no_bags, test, ["coverage"], real_labels=labels)["coverage"]
    assert plain["num_classes"] == 10 and plain["missing"] == ["Bag"]
    left = evaluate_images(no_bags, test, ["coverage"], real_labels=labels, left_out=8)["coverage"]
    assert left["num_classes"] == 9 and left["classes_covered"] == 9 and left["missing"] == [] and left["kl"] < 0.05
    assert left["real_histogram"]["Bag"] == 1000  # the reference itself is still the whole test set


def test_prdc_known_answers():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(500, 4, generator=g)
    same = prdc(torch.randn(500, 4, generator=g), real)
    assert same["precision"] > 0.8 and same["recall"] > 0.8 and same["coverage"] > 0.8 and 0.7 < same["density"] < 1.3
    far = prdc(torch.randn(500, 4, generator=g) + 10.0, real)
    assert far["precision"] == 0.0 and far["recall"] == 0.0 and far["coverage"] == 0.0
    # Half the real distribution (one side of a plane): precise but recalls about half.
    half = real[real[:, 0] > 0]
    r = prdc(half, real)
    assert r["precision"] > 0.95 and 0.3 < r["recall"] < 0.7


def test_prdc_of_a_set_against_itself_is_exact_across_chunks():
    """As in clovaai's prdc: open balls for density/coverage give exactly 1 for reals against themselves, even past one chunk."""
    real = torch.randn(5000, 16, generator=torch.Generator().manual_seed(1)) * 3 + 0.5  # (5000, 16): 3 chunks of distances
    r = prdc(real, real)
    assert r["density"] == 1.0 and r["coverage"] == 1.0 and r["precision"] == 1.0 and r["recall"] == 1.0
    copies = prdc(real[torch.randperm(5000, generator=torch.Generator().manual_seed(2))], real)  # the same set, reordered
    assert copies["density"] == pytest.approx(1.0, abs=1e-3) and copies["coverage"] == 1.0


def test_class_coverage_counts_and_kl():
    probs = torch.zeros(100, 10)
    probs[torch.arange(100), torch.arange(100) % 10] = 1.0  # perfectly balanced, confident
    r = class_coverage(probs, NAMES)
    assert r["classes_covered"] == 10 and r["kl"] == pytest.approx(0.0, abs=1e-9) and r["class_score"] == pytest.approx(10.0, rel=1e-3)
    unsure = torch.full((100, 10), 0.1)  # nobody is sure of anything: blobs cover no class
    assert class_coverage(unsure, NAMES)["classes_covered"] == 0
    two = torch.zeros(100, 10)
    two[:, 0], two[50:, 0], two[50:, 1] = 1.0, 0.0, 1.0
    r = class_coverage(two, NAMES)
    assert r["classes_covered"] == 2 and r["kl"] == pytest.approx(np.log(5), abs=1e-5) and r["missing"] == NAMES[2:]


def test_class_coverage_leaves_a_class_without_real_share_out():
    """A class left out of training (--exclude-class) is neither covered nor missing, and fakes judged as it are counted apart."""
    probs = torch.zeros(100, 10)
    probs[torch.arange(100), torch.arange(100) % 10] = 1.0  # ten fakes of each class, one of them the left-out class 8
    share = torch.ones(10)
    share[8] = 0
    r = class_coverage(probs, NAMES, share)
    assert r["num_classes"] == 9 and r["classes_covered"] == 9 and r["missing"] == []
    assert r["off_target"] == {"classes": ["c8"], "fraction": 0.1}
    assert r["kl"] == pytest.approx(0.0, abs=1e-9) and r["kl_max"] == pytest.approx(np.log(9), abs=1e-4)  # finite
    nine = probs[torch.arange(100) % 10 != 8]  # (90, 10) the same fakes without the left-out class
    assert class_coverage(nine, NAMES, share)["kl"] == pytest.approx(0.0, abs=1e-9) and "off_target" not in class_coverage(nine, NAMES)
    only8 = probs[torch.arange(100) % 10 == 8]  # (10, 10) every fake is the left-out class: the worst KL, not a perfect 0
    r = class_coverage(only8, NAMES, share)
    assert r["classes_covered"] == 0 and r["off_target"]["fraction"] == 1.0 and r["kl"] == pytest.approx(np.log(9), abs=1e-4)
    r = class_coverage(probs[torch.arange(100) % 10 < 3], NAMES, share)  # (30, 10) three classes only
    assert r["classes_covered"] == 3 and r["missing"] == [n for i, n in enumerate(NAMES) if i >= 3 and i != 8]


def test_duplicates():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 8, generator=g)
    thr = duplicate_threshold(real, 400)
    assert duplicate_rate(torch.randn(400, 8, generator=g), thr) < 0.05
    assert duplicate_rate(real[:100].repeat(4, 1), thr) == 1.0


def test_alarm_quiet_on_healthy_fires_on_collapse_and_remembers_since():
    a = CollapseAlarm(warmup_kimg=20)
    assert a.update(10, 3, 10) is None  # early blobs: still warming up
    assert a.update(20, 10, 10, 0.01) is None and a.update(40, 9, 10, 0.01) is None
    assert a.update(60, 6, 10) == "generator is collapsing: 4 of 10 classes missing since 60 kimg"
    assert a.update(80, 3, 10).endswith("since 60 kimg")
    assert a.update(100, 10, 10) is None and a.since_kimg is None
    b = CollapseAlarm(warmup_kimg=1000)
    b.update(10, 8, 10)
    assert b.update(12, 5, 10) == "generator is collapsing: coverage fell from 8 to 5 of 10 classes since 12 kimg"


def test_memorisation_catches_copies(fashion):
    test, _, train = fashion
    copies = memorisation(train[:200], train[:5000], test[:500])
    assert copies["near_copy_fraction"] == 1.0 and copies["fake_to_train_median"] == 0.0
    fresh = memorisation(test[500:700], train[:5000], test[:500])
    assert fresh["near_copy_fraction"] < 0.1 and copies["closest_pairs"][0]["distance"] == 0.0


def test_inception_offline_message(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert not inception_weights_path().exists()
    with pytest.raises(BackboneUnavailable, match="--backbone evaluator") as e:
        extract(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "inception")
    assert "\n" not in str(e.value)


def test_eval_run_and_fakes_cli(tiny_folder, fashion_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COUNTERFEIT_DATA_DIR", fashion_dir)
    short = [
        "--kimg",
        "0.064",
        "--tick-kimg",
        "0.032",
        "--snapshot-kimg",
        "0.032",
        "--sample-kimg",
        "0.032",
        "--no-progress",
        "--eval-every-kimg",
        "0.032",
    ]
    assert main(["train", *TINY, *short, "--eval-n", "50", "--out", str(tmp_path / "runs")]) == 0
    run = next((tmp_path / "runs").iterdir())
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert all("cov/classes" in r and "cov/fid" in r for r in rows)
    capsys.readouterr()
    assert main(["eval", str(run), "--n", "300", "--metrics", "fid,kid,pr,coverage,memorisation"]) == 0
    assert capsys.readouterr().out.startswith("scored ckpt-0000000064.safetensors (0.064 kimg)\nFID ")  # which point was scored
    doc = json.loads((run / "metrics.json").read_text())
    assert set(doc["metrics"]) == {"fid", "kid", "pr", "coverage", "memorisation"} and doc["kimg"] == pytest.approx(0.064)
    assert (run / doc["metrics"]["memorisation"]["pairs_png"]).is_file()
    kid_prov, pr_prov = doc["metrics"]["kid"]["provenance"], doc["metrics"]["pr"]["provenance"]
    assert kid_prov["subset_size"] == 300 and kid_prov["subsets"] == 100 and "subsets of 300" in kid_prov["warning"]
    assert "from 300 fakes against 10000 reals" in pr_prov["warning"]  # the k-NN scores move with either count
    assert "density/k-NN coverage" in pr_prov["warning"]  # PRDC's coverage, not the class coverage metric
    from counterfeit.checkpoints import list_checkpoints
    from counterfeit.fileio import sha256_file

    # the checkpoint's bytes and the torch that drew the fakes are recorded, not only the checkpoint's name
    assert kid_prov["checkpoint_sha256"] == sha256_file(list_checkpoints(run)[-1]) and kid_prov["torch"] == torch.__version__
    assert (
        doc["metrics"]["memorisation"]["provenance"]["n_fakes"] == 300 and doc["metrics"]["memorisation"]["provenance"]["n_train"] == 60000
    )
    assert main(["eval", str(run), "--n", "300", "--metrics", "fid"]) == 0
    history = [json.loads(x) for x in (run / "metric-fid.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(h["provenance"]["n_fakes"] == 300 and "seed" in h["provenance"] for h in history)
    merged = json.loads((run / "metrics.json").read_text())["metrics"]  # the same checkpoint's other metrics stay
    assert set(merged) == set(doc["metrics"]) and merged["kid"] == doc["metrics"]["kid"]
    assert main(["sample", str(run), "-n", "300", "--format", "npz", "--out", str(tmp_path / "f.npz")]) == 0
    capsys.readouterr()
    assert main(["eval", "--fakes", str(tmp_path / "f.npz"), "--reals", "fashion-mnist:test", "--metrics", "fid,coverage"]) == 0
    assert "FID" in capsys.readouterr().out
    assert main(["eval", "--fakes", str(tmp_path / "f.npz"), "--reals", "fashion-mnist:test", "--metrics", "memorisation"]) == 0
    assert "near-copies" in capsys.readouterr().out  # the training images come from the reals' dataset
    assert main(["eval", "--fakes", str(tmp_path / "f.npz"), "--reals", tiny_folder, "--metrics", "memorisation"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--reals must name an idx dataset" in err
    assert main(["eval", "--fakes", str(tmp_path / "f.npz"), "--reals", tiny_folder]) == 0
    out = capsys.readouterr().out
    assert "FID" in out and "classes" not in out  # no Fashion-MNIST classes are counted against a folder of squares
    assert main(["report", str(run)]) == 0 and (run / "report.html").is_file()


def test_a_folder_of_other_sized_images_is_converted_with_a_warning(tiny_folder, tmp_path, caplog, monkeypatch):
    """eval --fakes FOLDER scores 28x28 grey: larger colour images are resized with a warning and a provenance note."""
    import logging

    monkeypatch.setenv("COUNTERFEIT_CACHE_DIR", str(tmp_path / "cache"))
    big = tmp_path / "big"
    big.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(big / f"{i}.png")  # 48x64 colour
    with caplog.at_level(logging.WARNING, logger="counterfeit"):
        x, desc = load_image_source(str(big))
    assert x.shape == (8, 1, 28, 28) and desc["converted"] == "from 48x64 colour to 28x28 grey (resized, centre-cropped)"
    assert "holds 48x64 colour images; they are scored as 28x28 grey" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="counterfeit"):
        _, desc = load_image_source(tiny_folder)  # already 28x28 grey: nothing to say
    assert "converted" not in desc and "scored as" not in caplog.text


def test_eval_toy_run(tmp_path):
    opts = ["--data", "ring8", "--kimg", "0.512", "--batch-size", "64", "--g-width", "16", "--d-width", "16", "--tick-kimg", "0.256",
            "--sample-kimg", "0.256", "--snapshot-kimg", "0.256", "--eval-every-kimg", "0.256", "--eval-n", "500", "--no-progress"]  # fmt: skip
    assert main(["train", *opts, "--out", str(tmp_path)]) == 0
    run = next(tmp_path.iterdir())
    assert "toy/modes" in json.loads((run / "stats.jsonl").read_text().splitlines()[-1])
    assert main(["eval", str(run), "--n", "2500"]) == 0
    toy = json.loads((run / "metrics.json").read_text())["metrics"]["toy"]
    assert toy["modes_total"] == 8 and 0 <= toy["modes_covered"] <= 8
    assert main(["eval", str(run), "--metrics", "fid"]) == 2  # not silently ignored


def test_eval_bad_inputs(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", images=np.zeros((4, 28, 28), np.uint8))
    np.savez(tmp_path / "y.npz", pixels=np.zeros((4, 28, 28), np.uint8))
    np.savez(tmp_path / "f.npz", images=np.zeros((4, 28, 28), np.float32))
    np.savez(tmp_path / "p.npz", points=np.zeros((4, 2), np.float32))  # what `sample --format npz` writes for a toy run
    (tmp_path / "cut.npz").write_bytes((tmp_path / "x.npz").read_bytes()[:100])  # a download cut short
    for argv, needle in [
        (["eval", "--fakes", str(tmp_path / "cut.npz")], "not a readable .npz"),
        (["eval"], "RUN_DIR"),
        (["eval", "--fakes", str(tmp_path / "none.npz")], "not found"),
        (["eval", str(tmp_path)], "config.json"),
        (["eval", "--fakes", str(tmp_path / "x.npz"), "--metrics", "fid,bogus"], "bogus"),
        (["eval", "--fakes", str(tmp_path / "y.npz")], "no 'images'"),
        (["eval", "--fakes", str(tmp_path / "f.npz")], "uint8"),
        (["eval", "--fakes", str(tmp_path / "p.npz")], "2-D toy points, not images"),
        (
            ["eval", "--fakes", str(tmp_path / "x.npz"), "--reals", "fashion-mnist:test", "--json", str(tmp_path / "y.npz")],
            "exists already",
        ),
        (["eval", str(tmp_path), "--json", str(tmp_path / "new.json")], "--json goes with --fakes"),
        (["eval", "--fakes", str(tmp_path / "x.npz"), "--reals", "nowhere:test"], "cannot read images"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("counterfeit: error:") and needle in err, err


class _RealsAsG(torch.nn.Module):
    """A stand-in generator that returns real training images, picked by the noise, through one identity 1x1 conv."""

    def __init__(self, images_uint8: torch.Tensor):
        super().__init__()
        self.z_dim = 8
        self.bank = images_uint8.float() / 127.5 - 1.0  # (N, 1, 28, 28) in [-1, 1]
        self.w = torch.nn.Parameter(torch.ones(1, 1, 1, 1))
        self.dtypes = set()

    def forward(self, z, labels=None):
        idx = z[:, 0].argsort()  # (B,) distinct images, the same ones for the same noise
        out = torch.nn.functional.conv2d(self.bank[idx], self.w)  # (B, 1, 28, 28): bf16 under autocast, as a real G's
        self.dtypes.add(out.dtype)
        return out


def test_monitor_in_bf16_scores_like_fp32(fashion_dir, monkeypatch):
    import counterfeit.metrics.monitor as monitor_module
    from counterfeit.data import load_dataset
    from counterfeit.metrics.monitor import build_monitor

    monkeypatch.setattr(monitor_module, "cpu_has_native_bf16", lambda: True)  # emulated where it is not: the same numbers
    train = load_dataset("fashion-mnist", "train", data_dir=fashion_dir)
    G = _RealsAsG(train.x[:5000]).eval()
    rows = {}
    for precision in ("fp32", "bf16"):
        mon = build_monitor("fashion-mnist", train, 1, 28, 1000, 40, (-1.0, 1.0), fashion_dir, precision=precision)
        rows[precision] = mon(G, 100.0)
    assert G.dtypes == {torch.float32, torch.bfloat16}  # the bf16 monitor really sampled under autocast
    monkeypatch.setattr(monitor_module, "cpu_has_native_bf16", lambda: False)
    G.dtypes.clear()
    assert mon(G, 100.0) == rows["fp32"] and G.dtypes == {torch.float32}  # no native bf16 on this CPU: the monitor stays fp32
    a, b = rows["fp32"], rows["bf16"]
    assert a["cov/classes"] == b["cov/classes"] == 10 and "alarm" not in b
    assert b["cov/fid"] == pytest.approx(a["cov/fid"], abs=0.05) and a["cov/fid"] < 3  # reals against the test set
    assert b["cov/dup"] == pytest.approx(a["cov/dup"], abs=0.005) and b["cov/kl"] == pytest.approx(a["cov/kl"], abs=0.005)


def test_monitor_of_a_run_without_one_class_does_not_count_it_missing(fashion_dir):
    """--exclude-class: the training-time coverage asks for the nine classes G was shown, so the alarm does not count the tenth."""
    from counterfeit.data import drop_class, load_dataset
    from counterfeit.metrics.monitor import build_monitor

    train = drop_class(load_dataset("fashion-mnist", "train", data_dir=fashion_dir), "Bag")
    G = _RealsAsG(train.x[:5000]).eval()  # (5000 reals, no bags) as a perfect G of the nine classes
    row = build_monitor("fashion-mnist", train, 1, 28, 1000, 40, (-1.0, 1.0), fashion_dir)(G, 100.0)
    assert row["cov/num_classes"] == 9 and row["cov/classes"] == 9 and row["cov/kl"] < 0.05 and "alarm" not in row
    assert 0 <= row["cov/off_target"] < 0.02  # the judge calls a few of the nine classes' images bags


def test_a_damaged_test_split_turns_the_monitor_off_not_the_run(tmp_path, caplog, monkeypatch):
    """Training needs only the training split: a corrupt t10k file is a warning naming it, and the run trains unjudged."""
    import gzip
    import logging

    from counterfeit.data import SYSTEM_DATA_DIRS, Dataset
    from counterfeit.metrics.monitor import build_monitor

    # No good copy anywhere else to fall back on (the loader would use one)
    monkeypatch.setitem(SYSTEM_DATA_DIRS, "fashion-mnist", [])
    monkeypatch.delenv("COUNTERFEIT_DATA_DIR", raising=False)
    monkeypatch.setenv("COUNTERFEIT_CACHE_DIR", str(tmp_path / "cache"))

    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(b"placeholder"))  # found, never read: only the test labels are
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    train = Dataset("fashion-mnist", "images", torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))
    with caplog.at_level(logging.WARNING, logger="counterfeit"):
        assert build_monitor("fashion-mnist", train, 1, 28, 1000, 40, (-1.0, 1.0), str(tmp_path)) is None
    assert "training-time coverage and the collapse alarm are off" in caplog.text and "t10k" in caplog.text


def test_fid_and_kid_never_gather_over_a_process_group(monkeypatch):
    """Under torchrun only rank 0 evaluates: torchmetrics must not wait for the other ranks to join an all-gather."""
    import torch.distributed as dist

    from counterfeit.metrics.fid import fid, kid

    def no_gather(*args, **kwargs):
        raise AssertionError("gathered over the process group")

    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(dist, "all_gather", no_gather)
    monkeypatch.setattr(dist, "all_gather_object", no_gather)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 4, generator=g), torch.randn(60, 4, generator=g)
    assert fid(a, b) >= 0 and kid(a, b, subsets=5, subset_size=20)[0] == kid(a, b, subsets=5, subset_size=20)[0]


def test_prdc_matches_a_brute_force_reference():
    """Precision, recall, density and coverage as Naeem et al. 2020 define them (clovaai's code), on a tiny cloud."""
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(60, 3, generator=g), torch.randn(50, 3, generator=g) * 1.5 + 0.3  # (R, 3), (F, 3)

    def kth(x, k):  # (N,) distance to the k-th nearest other point (index 0 is the point itself)
        return torch.cdist(x, x).sort(dim=1).values[:, k]

    d = torch.cdist(fake, real)  # (F, R)
    r3, r5, f3 = kth(real, 3), kth(real, 5), kth(fake, 3)
    want = {
        "precision": (d <= r3[None]).any(1).float().mean().item(),
        "recall": (d.T <= f3[None]).any(1).float().mean().item(),
        "density": ((d < r5[None]).sum(1).float() / 5).mean().item(),
        "coverage": (d.min(0).values < r5).float().mean().item(),
    }
    got = prdc(fake, real)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def test_kid_leaves_the_global_rng_alone():
    """KID's subsets come from its own generator: a caller's (the studio's, eval's) random stream is untouched."""
    torch.manual_seed(123)
    state = torch.get_rng_state()
    g = torch.Generator().manual_seed(0)
    kid(torch.randn(40, 4, generator=g), torch.randn(40, 4, generator=g), subsets=3, subset_size=10)
    assert torch.equal(torch.get_rng_state(), state)


def test_kl_max_is_all_fakes_on_the_rarest_class():
    """The worst KL from the class shares is every fake on the rarest class: -ln(min share), here with uneven shares."""
    share = torch.tensor([0.6, 0.3, 0.1])
    probs = torch.eye(3)[[0, 0, 1]]  # (3, 3)
    assert class_coverage(probs, ["a", "b", "c"], share)["kl_max"] == pytest.approx(-math.log(0.1), abs=1e-4)


def test_alarm_fires_on_a_drop_of_exactly_two():
    """The collapse alarm's rule is a fall of two classes or more from the best coverage seen."""
    alarm = CollapseAlarm(warmup_kimg=1000)
    alarm.update(10, 8, 10)
    assert alarm.update(12, 6, 10) == "generator is collapsing: coverage fell from 8 to 6 of 10 classes since 12 kimg"
    assert alarm.update(14, 7, 10) is None


# Modes covered / % of samples near a mode at each 20 kimg of a healthy default grid25 run (seed 4, 2026-12-07):
# the old 40 kimg warm-up called it collapsing from 40 to 160 kimg and at 220.
HEALTHY_GRID25 = [(9, 1), (12, 1), (18, 2), (19, 4), (12, 2), (18, 4), (19, 7), (22, 8), (24, 11), (25, 13), (23, 11),
                  (24, 18), (25, 23), (25, 21), (25, 24), (24, 25), (25, 29), (25, 34), (25, 37), (25, 41)]  # fmt: skip


def test_the_toy_alarm_waits_for_g_to_find_the_modes_and_allows_their_flicker():
    from counterfeit.models import get_spec

    warmup = get_spec("mlp").defaults["loop"]["alarm_after_kimg"]
    alarm = CollapseAlarm(warmup_kimg=warmup, unit="modes")
    assert all(alarm.update(20 * (i + 1), m, 25, quality_pct=q) is None for i, (m, q) in enumerate(HEALTHY_GRID25))
    assert alarm.update(420, 22, 25, quality_pct=40) is None  # 3 of 25 missing, a fall of 3 from 25: within grid25's flicker
    assert alarm.update(440, 21, 25, quality_pct=40) == "generator is collapsing: 4 of 25 modes missing since 440 kimg"


def test_a_toy_g_that_never_finds_the_data_is_not_called_collapsing():
    alarm = CollapseAlarm(warmup_kimg=200, unit="modes")
    assert alarm.update(100, 0, 8, quality_pct=1.0) is None  # before the warm-up a toy is not judged
    assert alarm.update(200, 0, 8, quality_pct=1.0) == (
        "generator is not finding the data: 8 of 8 modes missing, only 1% of samples near any mode, since 100 kimg"
    )
    assert CollapseAlarm(warmup_kimg=0, unit="modes").update(200, 3, 8, quality_pct=90.0) == (
        "generator is collapsing: 5 of 8 modes missing since 200 kimg"
    )


def test_since_counts_the_evaluations_before_the_warm_up():
    """With --lr-d 5e-6 the collapse was plain at 10 kimg; the alarm said 'since 40 kimg', hiding that."""
    alarm = CollapseAlarm(warmup_kimg=40)
    assert alarm.update(10.048, 2, 10, 0.87) is None and alarm.update(20, 1, 10, 1.0) is None
    assert alarm.update(40, 1, 10, 1.0).endswith("since 10 kimg")
    healthy = CollapseAlarm(warmup_kimg=40)
    assert healthy.update(10, 3, 10, 0.0) is None and healthy.update(20, 9, 10, 0.0) is None  # blobs, then all but one
    assert healthy.update(40, 6, 10).endswith("since 40 kimg")


def test_the_first_message_of_a_streak_says_what_to_try():
    from counterfeit.metrics.monitor import d_verdict, remedies

    assert "--pack 2" in remedies("images", conditional=False) and "--pack" not in remedies("images", conditional=True)
    assert "--recall-weight 6" in remedies("points", conditional=False)
    assert "--beta" in remedies("images", conditional=False, model="vae")
    assert "--beta" not in remedies("images", conditional=False, model="ae") and "--model vae" in remedies("images", False, "dae")
    assert "--mbstd or --pack" not in remedies("images", conditional=False, model="lecture")  # its D takes neither
    assert "--pack" not in remedies("points", conditional=False, lost=True)
    assert "D is not learning" in d_verdict({"D(x)": 0.77, "D(G(z))": 1.0}, "hinge")
    assert "D wins every round" in d_verdict({"D(x)": 0.98, "D(G(z))": 0.02}, "minimax")
    assert d_verdict({"D(x)": 0.7, "D(G(z))": 0.3}, "ns") == "" and d_verdict({"D(x)": 0.1, "D(G(z))": 0.9}, "wgan-gp") == ""
    from counterfeit.metrics.monitor import explain_alarm

    alarm = "generator is collapsing: 9 of 10 classes missing since 10 kimg; to try: --mbstd or --pack 2, --recall-weight 10"
    said = explain_alarm(alarm, {"D(x)": 0.76, "D(G(z))": 1.0}, "hinge")
    assert said.startswith("generator is collapsing: 9 of 10 classes missing since 10 kimg; D rates the fakes above the reals")
    assert "--mbstd" not in said and said.endswith("to try: the default --lr-d or a higher one")
    from counterfeit.metrics.monitor import lr_d_fix

    assert lr_d_fix(5e-6, 1.5e-3) == "--lr-d 0.0015, the default (this run has 5e-06)"
    assert lr_d_fix(1.5e-3, 1.5e-3) == "a higher --lr-d than this run's 0.0015"
    assert lr_d_fix(3e-3, 1.5e-3) == "--lr-d 0.0015, the default (this run has 0.003)"  # failing above it: not higher still
    assert explain_alarm(alarm, {"D(x)": 0.76, "D(G(z))": 1.0}, "hinge", lr_d_fix(5e-6, 1.5e-3)).endswith("this run has 5e-06)")
    assert explain_alarm(alarm, {"D(x)": 0.7, "D(G(z))": 0.3}, "hinge") == alarm
    assert explain_alarm(alarm, {"D(x)": 0.497, "D(G(z))": 0.503}, "ns") == alarm  # an equilibrium's noise, not a D that fails


def test_the_alarms_advice_names_the_settings_this_run_changed():
    """'to try: the default --loss and learning rates' was said to runs that had them, and named none to runs that did not."""
    from counterfeit.metrics.monitor import back_to_defaults, remedies

    default = {"loss": "ns", "lr_g": 1e-4, "lr_d": 1e-4}
    assert back_to_defaults(dict(default), default) is None
    assert back_to_defaults({**default, "lr_d": 2e-3}, default) == "the default --lr-d 0.0001 (this run has --lr-d 0.002)"
    changed = back_to_defaults({"loss": "minimax", "lr_g": 2e-3, "lr_d": 2e-3}, default)
    assert changed == (  # flag by flag: by position alone, the learner matched values to flags
        "the defaults --loss ns, --lr-g 0.0001, --lr-d 0.0001 (this run has --loss minimax, --lr-g 0.002, --lr-d 0.002)"
    )
    assert remedies("points", False, "mlp", lost=True, defaults=changed) == f"to try: {changed}, or another --seed"
    assert remedies("points", False, "mlp", lost=True, defaults=None) == "to try: another --seed, or a longer --kimg"
    assert remedies("images", False, "dcgan", defaults=None) == "to try: --mbstd or --pack 2, --recall-weight 10, or another --seed"
    assert "default" not in remedies("images", False, "lecture", defaults=None)


def test_a_toy_alarm_that_turns_from_lost_to_collapsing_says_what_to_try_again():
    """A grid25 run at --lr-g 2e-3 --lr-d 2e-3 was 'not finding the data' at 200 kimg (to try: the default rates), then
    'collapsing' from 220 kimg with no remedy at all: --pack and --recall-weight, the collapse's own, were never named."""
    from counterfeit.data import toy_modes
    from counterfeit.metrics.monitor import TrainingMonitor

    class Points(torch.nn.Module):  # a G that draws fixed points: the monitor only samples it
        z_dim = 2

        def __init__(self, pts):
            super().__init__()
            self.pts = torch.nn.Parameter(pts)

        def forward(self, z, labels=None):
            return self.pts[torch.arange(len(z)) % len(self.pts)]

    centres, sigma = toy_modes("grid25")
    far = Points(centres[:6] + 0.5)  # beside six modes: no sample near any, G is not finding the data
    near = Points(centres[:12])  # on twelve modes: 13 missing, collapsing
    mon = TrainingMonitor("points", 100, 200, centres=centres, sigma=sigma, model="mlp")
    first = mon(far, 200.0)["alarm"]
    assert "not finding the data" in first and "to try: the default --loss" in first, first
    assert "to try" not in mon(far, 220.0)["alarm"]  # the same streak, told once
    turned = mon(near, 240.0)["alarm"]
    assert "is collapsing" in turned and "--recall-weight 6" in turned, turned
    assert "to try" not in mon(near, 260.0)["alarm"]
