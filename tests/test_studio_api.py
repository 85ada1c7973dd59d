"""Studio HTTP API with tiny runs: runs, generate, training jobs, playground, and refusals of bad input (always 4xx)."""

import io
import json
import os
import shutil
import sys
import time
import urllib.parse
import zipfile

import numpy as np
import pytest
import torch
from conftest import STUDIO_RUNS
from PIL import Image

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from counterfeit.cli import main  # noqa: E402
from counterfeit.studio import playground as pg  # noqa: E402
from counterfeit.studio.app import create_app  # noqa: E402

DCGAN, CDCGAN, TOY = STUDIO_RUNS


@pytest.fixture()
def runs(studio_runs):
    return studio_runs


@pytest.fixture()
def client(runs):
    return TestClient(create_app(runs), base_url="http://127.0.0.1")


def _error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    msg = r.json()["error"]
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


def _png(r) -> np.ndarray:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(r.content)))


def test_runs_list_and_run_page(client, runs):
    names = [r["run"] for r in client.get("/api/runs").json()["runs"]]
    assert names == [TOY, CDCGAN, DCGAN]  # newest first
    d = client.get(f"/api/runs/{DCGAN}").json()
    assert d["stats_total"] == 2 and {"loss_D", "loss_G", "D(x)", "D(G(z))"} <= set(d["stats"][0])
    assert [g["kimg"] for g in d["grids"]] == [0.0, 0.1] and d["reals"] and d["checkpoints"]
    assert d["config"]["model"]["name"] == "dcgan" and d["alarm"]["now"] is None and d["job"] is None
    assert client.get(f"/api/runs/{DCGAN}?since=1").json()["stats"] == d["stats"][1:]  # live polling fetches only new rows
    # the loss chart's "D cannot tell" lines: hinge (dcgan's default) has D's only; cdcgan's logged losses carry its AC
    # term on top of ns, so they have none
    assert d["config"]["loss"]["name"] == "hinge" and d["loss_levels"] == [[2.0, "2"], None]
    cdcgan = client.get(f"/api/runs/{CDCGAN}").json()
    assert cdcgan["config"]["loss"]["ac_weight"] > 0 and cdcgan["loss_levels"] == [None, None]
    # the verdict chart's line: hinge has no fixed level (was a 0.5 line for every loss); cdcgan's ns game has 0.5
    assert d["d_level"] is None and cdcgan["d_level"] == [0.5, "0.5"]
    grid = _png(client.get(f"/api/runs/{DCGAN}/samples/{d['grids'][-1]['file']}"))
    assert grid.shape[0] > 28
    info = client.get(f"/api/runs/{CDCGAN}/model").json()
    assert info["conditional"] and info["classes"] == ["rings", "squares"] and info["z_dim"] == 8


def test_generate_is_the_cli_sampling_path(client, runs, tmp_path):
    """The API's grid is pixel for pixel the grid `counterfeit sample` writes for the same seed and count."""
    for run in (DCGAN, CDCGAN):
        api = _png(client.get(f"/api/generate?run={run}&seed=3&n=12"))
        assert main(["sample", str(runs / run), "-n", "12", "--seed", "3", "--out", str(tmp_path / f"{run}.png")]) == 0
        assert np.array_equal(api, np.asarray(Image.open(tmp_path / f"{run}.png")))


def test_generate_without_a_count_draws_what_sample_draws_without_n(client, runs, tmp_path):
    """A toy's scatter is sample's 2,500 points (64 hardly show a ring of 8), up to 10,000; images keep 64, up to 256."""
    for run, default, most in ((TOY, 2500, 10_000), (DCGAN, 64, 256)):
        api = _png(client.get(f"/api/generate?run={run}&seed=3"))
        assert main(["sample", str(runs / run), "--seed", "3", "--out", str(tmp_path / f"{run}.png")]) == 0
        assert np.array_equal(api, np.asarray(Image.open(tmp_path / f"{run}.png")))
        info = client.get(f"/api/runs/{run}/model").json()
        assert (info["default_count"], info["max_count"]) == (default, most)
        assert f"'n' must be from 1 to {most}" in _error(client.get(f"/api/generate?run={run}&n={most + 1}"), 400)
    pts = zipfile.ZipFile(io.BytesIO(client.get(f"/api/generate?run={TOY}&n=10000&format=zip").content))
    assert len(pts.read("points.csv").decode().splitlines()) == 10_001


def test_generate_options_and_zip(client):
    base = f"/api/generate?run={CDCGAN}&seed=1&n=6"
    one_class = _png(client.get(base + "&class=squares"))
    assert not np.array_equal(one_class, _png(client.get(base + "&class=rings")))
    assert np.array_equal(one_class, _png(client.get(base + "&class=1")))  # by index too
    assert not np.array_equal(_png(client.get(base)), _png(client.get(base + "&truncation=0.5")))
    assert _png(client.get(base + "&ema=false")).shape == _png(client.get(base)).shape
    r = client.get(base + "&format=zip&class=rings")
    assert r.headers["content-type"] == "application/zip" and "attachment" in r.headers["content-disposition"]
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert sorted(zf.namelist()) == [f"{i:04d}.png" for i in range(6)] + ["labels.csv"]
    assert zf.read("labels.csv").decode().splitlines()[1] == "0000.png,0,rings"
    assert np.asarray(Image.open(zf.open("0003.png"))).shape == (28, 28)
    pts = zipfile.ZipFile(io.BytesIO(client.get(f"/api/generate?run={TOY}&n=50&format=zip").content))
    assert len(pts.read("points.csv").decode().splitlines()) == 51 and "scatter.png" in pts.namelist()
    grey = np.all(_png(client.get(f"/api/generate?run={TOY}&n=50"))[..., :3] == 150, axis=-1)  # the real points, as sample draws
    assert grey.sum() > 500  # the studio's scatter had the fakes alone, on a scale of their own
    assert "attachment" in client.get(base + "&download=1").headers["content-disposition"]
    assert "inline" in client.get(base + "&download=no").headers["content-disposition"]
    bad = client.get(base + "&download=maybe")
    assert bad.status_code == 400 and "download" in bad.json()["error"]


@pytest.mark.parametrize(
    "url, status",
    [
        ("/api/runs/%2e%2e", 400),
        ("/api/runs/..%2f..%2fetc", 404),
        ("/api/runs/.studio", 400),
        (f"/api/runs/{DCGAN}%2f..%2f..", 404),
        ("/api/runs/%2Fetc%2Fpasswd", 404),
        ("/api/generate?run=..", 400),
        ("/api/generate?run=../../etc", 400),
        ("/api/generate?run=%2e%2e%2fx", 400),
        ("/api/generate?run=/etc/passwd", 400),
        ("/api/generate?run=%2Ftmp", 400),
        ("/api/generate?run=C:%5Cwindows", 400),
        ("/api/generate?run=nope-0000", 404),
        (f"/api/runs/{DCGAN}/samples/..%2fconfig.json", 404),
        (f"/api/runs/{DCGAN}/samples/%2e%2e", 400),
        (f"/api/runs/{DCGAN}/samples/config.json", 400),
        (f"/api/runs/{DCGAN}/samples/missing.png", 404),
        ("/api/nothing/here", 404),
    ],
)
def test_paths_never_leave_the_runs_folder(client, url, status):
    _error(client.get(url), status)


def test_wrong_method_is_405_with_allow(client):
    r = client.get("/api/train")  # POST-only
    assert r.status_code == 405 and r.headers["allow"] == "POST" and "takes POST, not GET" in r.json()["error"]
    r = client.post("/api/runs", json={})  # GET-only
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    r = client.post("/api/runs")  # no body, no JSON: still the wrong method first, not a 415
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert client.post("/api/playground/x/reset").status_code == 415  # a bodiless POST to a POST endpoint is refused
    assert client.get("/api/nothing/here").status_code == 404  # an unknown path stays a 404


def test_a_renamed_run_with_spaces_and_accents_is_served(runs, tmp_path):
    """The studio lists any run folder, so it serves each one it lists, whatever the user renamed it to."""
    root = tmp_path / "runs"
    root.mkdir()
    name = "mes chats été (v2)+1"
    shutil.copytree(runs / DCGAN, root / name)
    client = TestClient(create_app(root), base_url="http://127.0.0.1")
    assert [row["run"] for row in client.get("/api/runs").json()["runs"]] == [name]
    quoted = urllib.parse.quote(name, safe="")
    assert client.get(f"/api/runs/{quoted}").status_code == 200
    r = client.get(f"/api/generate?run={quoted}&n=4&download=yes")
    assert r.headers["content-type"] == "image/png"  # the run's name in its header broke the response (Latin-1 only)
    disposition = r.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="mes chats _t')
    assert urllib.parse.unquote(disposition.split("UTF-8''")[1]).startswith(name)
    assert "bad run name" in _error(client.get("/api/generate?run=a%2Fb"), 400)  # still no separators
    assert "bad run name" in _error(client.get("/api/generate?run=" + urllib.parse.quote("é" * 200)), 400)  # 400 bytes: a 500
    assert "bad run name" in _error(client.get("/api/generate?run=abc%0A"), 400)  # a control character at the end
    (root / "x").mkdir()
    os.rename(root / "x", os.path.join(os.fsencode(root), b"chats_\xe9t\xe9"))  # not UTF-8: a Windows zip's name
    shutil.copy(root / name / "config.json", os.path.join(os.fsencode(root), b"chats_\xe9t\xe9", b"config.json"))
    assert [row["run"] for row in client.get("/api/runs").json()["runs"]] == [name]  # one such folder made the list a 400


def test_a_run_a_terminal_is_training_is_shown_training_and_not_resumed(runs, tmp_path):
    """The studio listed a CLI's run in training as stopped, accepted a resume that then failed, and said it was not training."""
    import os

    from counterfeit.runs import run_lock

    root = tmp_path / "runs"
    shutil.copytree(runs / DCGAN, root / DCGAN)
    client = TestClient(create_app(root), base_url="http://127.0.0.1")
    with run_lock(root / DCGAN):  # as `counterfeit train --resume` in a terminal holds it
        row = client.get("/api/runs").json()["runs"][0]
        assert row["training"] is True and row["status"] == "training"
        assert f"is being trained by process {os.getpid()}, which the studio did not start" in _error(
            client.post(f"/api/runs/{DCGAN}/resume", json={"kimg": 60}), 409
        )
        assert "stop it with Ctrl-C there" in _error(client.post(f"/api/runs/{DCGAN}/stop", json={}), 409)
    row = client.get("/api/runs").json()["runs"][0]
    assert row["training"] is False and row["status"] != "training"


def test_symlink_out_of_the_runs_folder_is_refused(client, runs, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (runs / "99999-link").symlink_to(outside)
    try:
        assert "outside" in _error(client.get("/api/generate?run=99999-link"), 403)
        assert "99999-link" not in {row["run"] for row in client.get("/api/runs").json()["runs"]}  # nor listed
    finally:
        (runs / "99999-link").unlink()


@pytest.mark.parametrize(
    "query, needle",
    [
        ("n=100000", "'n' must be from 1 to 256"),
        ("n=0", "'n'"),
        ("n=abc", "whole number"),
        ("n=2.5", "whole number"),
        ("seed=-1", "'seed'"),
        ("seed=99999999999999999999", "'seed'"),
        ("truncation=0", "'truncation'"),
        ("truncation=nan", "'truncation'"),
        ("truncation=1.5", "'truncation'"),
        ("ema=maybe", "true or false"),
        ("format=gif", "png, zip"),
        ("class=rings", "--class needs a conditional run"),
        ("sed=1", "unknown parameter 'sed'"),
    ],
)
def test_bad_generate_parameters(client, query, needle):
    assert needle in _error(client.get(f"/api/generate?run={DCGAN}&{query}"), 400)


def test_bad_bodies(client):
    assert "Content-Type: application/json" in _error(client.post("/api/train", content=b'{"data": "ring8"}'), 415)
    assert "valid JSON" in _error(client.post("/api/train", content=b"{nope", headers={"content-type": "application/json"}), 400)
    assert "JSON object" in _error(client.post("/api/train", json=[1, 2]), 400)
    assert "bytes" in _error(client.post("/api/train", json={"x": "a" * 100_000}), 413)
    assert client.get("/api/runs", headers={"host": "evil.example"}).status_code == 400  # DNS-rebinding guard


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"data": "/etc"}, "'data' must be one of"),
        ({"data_dir": "/etc"}, "unknown parameter 'data_dir'"),
        ({"kimg": 1e9}, "'kimg'"),
        ({"kimg": "lots"}, "'kimg'"),
        ({"batch_size": 24, "pack": 5}, "--pack 5 must divide --batch-size 24"),
        ({"model": "vae", "loss": "hinge"}, "--loss is a GAN option"),
        ({"model": "dcgan", "data": "ring8"}, "trains on images"),
        ({"kimg": 100, "tick_kimg": 0.001}, "reports"),
        ({"spectral_norm": "perhaps"}, "true or false"),
        ({"recall_weight": -1}, "'recall_weight'"),
        ({"recall_pool": "many"}, "'recall_pool'"),
        ({"recall_pool": 100000}, "'recall_pool'"),
        ({"g_depth": 9}, "'g_depth'"),
        ({"model": "lecture", "d_depth": 1}, "--d-depth adds conv layers"),
        ({"model": "vae", "recall_weight": 1}, "--recall-weight is a GAN option"),
        ({"exclude_class": "Unicorn"}, "unknown class 'Unicorn'"),  # found before a training process starts
        ({"data": "ring8", "model": "mlp", "exclude_class": "0"}, "no classes to leave out"),
        ({"model": "cdcgan", "exclude_class": "Bag"}, "needs an unconditional model"),
    ],
)
def test_bad_training_options(client, body, needle):
    assert needle in _error(client.post("/api/train", json=body), 400)


def test_train_stop_and_find_the_job_again(client, runs):
    """A run started from the API trains in its own process, writes a CLI run folder, survives a new app and stops on request."""
    opts = {"data": "ring8", "g_width": 8, "d_width": 8, "batch_size": 16, "kimg": 50, "tick_kimg": 0.032, "snapshot_kimg": 25,
            "sample_kimg": 25, "eval_every_kimg": 0}  # fmt: skip
    job = client.post("/api/train", json=opts).json()
    assert job["alive"] and "--g-width=8" in job["argv"] and "--kimg=50.0" in job["argv"]
    deadline = time.time() + 60
    while time.time() < deadline:  # until the first stats line: then there is something to checkpoint
        job = client.get("/api/jobs").json()["jobs"][0]
        if job.get("run") and (runs / job["run"] / "stats.jsonl").is_file():
            break
        assert job["alive"], job
        time.sleep(0.3)
    run = job["run"]
    assert run == "00003-ring8-mlp" and job["state"] == "running"
    assert "training already" in _error(client.post(f"/api/runs/{run}/resume", json={"kimg": 60}), 409)
    fresh = TestClient(create_app(runs), base_url="http://127.0.0.1")  # a restarted studio finds the job from its record
    again = fresh.get(f"/api/runs/{run}").json()["job"]
    assert again["id"] == job["id"] and again["alive"]
    assert fresh.post(f"/api/runs/{run}/stop", json={}).json()["state"] == "stopping"
    # A second Stop would be a second SIGINT, which aborts without saving: refused (or the job has ended already)
    assert "stopping already" in _error(client.post(f"/api/jobs/{job['id']}/stop", json={}), 409)
    assert client.get("/api/jobs").json()["jobs"][0]["state"] in ("stopping", "stopped")
    while time.time() < deadline and client.get("/api/jobs").json()["jobs"][0]["alive"]:
        time.sleep(0.3)
    job = client.get("/api/jobs").json()["jobs"][0]
    assert job["state"] == "stopped" and job["run_exists"], job
    d = client.get(f"/api/runs/{run}").json()
    assert d["checkpoints"] and d["summary"]["status"].startswith("stopped at")
    assert json.loads((runs / run / "config.json").read_text())["model"]["g_width"] == 8
    assert "not training" in _error(client.post(f"/api/runs/{run}/stop", json={}), 409)
    assert "no job" in _error(client.post("/api/jobs/0123456789ab/stop", json={}), 404)
    assert "bad job id" in _error(client.post("/api/jobs/%2e%2e/stop", json={}), 400)


def test_playground_session(client):
    v = client.post("/api/playground", json={"data": "grid25", "loss": "hinge", "remedy": "pacgan", "seed": 1}).json()
    assert v["step"] == 0 and len(v["reals"]) == 1000 and len(v["centres"]) == 25 and v["modes"]["total"] == 25
    assert len(v["heat"]["values"]) == v["heat"]["n"] ** 2 and all(0 <= x <= 1 for x in v["heat"]["values"])
    s = client.post(f"/api/playground/{v['id']}/step", json={"steps": 3}).json()
    assert s["step"] == 3 and "reals" not in s and len(s["fakes"]) == 1000 and s["fakes"] != v["fakes"]
    assert {"loss_D", "loss_G", "D(x)", "D(G(z))"} <= set(s["last"]) and [h["step"] for h in s["history"]] == [0, 3]
    r = client.post(f"/api/playground/{v['id']}/reset", json={}).json()
    assert r["step"] == 0 and r["fakes"] == v["fakes"]  # the same seed starts the same game
    assert "'steps'" in _error(client.post(f"/api/playground/{v['id']}/step", json={"steps": 10**6}), 400)
    assert "expired" in _error(client.post("/api/playground/nope/step", json={}), 404)
    assert "'data'" in _error(client.post("/api/playground", json={"data": "mnist"}), 400)
    assert "'remedy'" in _error(client.post("/api/playground", json={"remedy": "magic"}), 400)
    assert "'lr'" in _error(client.post("/api/playground", json={"lr": "1e9"}), 400)


def test_playground_sessions_are_bounded(client, monkeypatch):
    monkeypatch.setattr(pg, "MAX_SESSIONS", 2)
    ids = [client.post("/api/playground", json={"data": "ducks-cows"}).json()["id"] for _ in range(3)]
    assert client.get(f"/api/playground/{ids[0]}").status_code == 404  # the least recently used made room
    assert client.get(f"/api/playground/{ids[2]}").json()["step"] == 0


def test_studio_command_errors(capsys, tmp_path):
    runs = tmp_path / "runs"
    assert main(["studio", "--runs", str(runs), "--port", "70000"]) == 2
    assert "--port must be from 0 to 65535" in capsys.readouterr().err
    from counterfeit.studio.app import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert main(["studio", "--runs", str(runs), "--port", str(sock.getsockname()[1])]) == 2
        assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    finally:
        sock.close()
    assert not runs.exists()  # a studio that could not start made no runs folder (it left an empty one in the working directory)


def test_static_files_stay_in_their_folder(client):
    assert client.get("/static/studio.js").status_code == 200
    for url in ("/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/%2e%2e%2f%2e%2e%2fcli.py"):
        r = client.get(url)
        assert r.status_code == 404 and "def " not in r.text, url


def test_stylesheet_and_scripts_keep_their_types_where_the_system_maps_them_to_text(runs, monkeypatch):
    """Windows reads types from the registry, where .css can be text/plain: browsers then refuse the stylesheet."""
    import mimetypes

    monkeypatch.setattr(mimetypes, "types_map", {**mimetypes.types_map, ".css": "text/plain", ".js": "text/plain"})
    monkeypatch.setattr(mimetypes, "_db", None)  # rebuilt from types_map on the next lookup
    mimetypes.add_type("text/plain", ".css")
    mimetypes.add_type("text/plain", ".js")
    client = TestClient(create_app(runs), base_url="http://127.0.0.1")
    assert client.get("/static/studio.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/studio.js").headers["content-type"].startswith("text/javascript")


def test_studio_command_serves_the_page(studio_runs):
    """`counterfeit studio` as the README starts it: it prints its address and answers there."""
    import os
    import re
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen([sys.executable, "-m", "counterfeit", "studio", "--runs", str(studio_runs), "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        line = proc.stderr.readline()
        url = re.search(r"on (http://127\.0\.0\.1:\d+/)", line).group(1)
        with urllib.request.urlopen(url, timeout=30) as r:
            assert "<title>Counterfeit Studio</title>" in r.read().decode()
        with urllib.request.urlopen(url + "api/runs", timeout=30) as r:
            assert [x["run"] for x in json.loads(r.read())["runs"]][-1] == DCGAN
    finally:
        proc.terminate()
        proc.wait(10)


def test_latent_dims_sliders(client):
    base = f"/api/latent/dims?run={CDCGAN}&seed=4&class=squares"
    own = client.get(base).json()
    assert own["dims"] == [0, 1, 2, 3, 4, 5] and own["values"] == own["original"] and own["image"].startswith("data:image/png;base64,")
    moved = client.get(base + "&values=" + ",".join(["3"] + [str(v) for v in own["original"][1:]])).json()
    assert moved["values"][0] == 3.0 and moved["image"] != own["image"]
    assert client.get(f"/api/latent/dims?run={CDCGAN}&seed=4&first=6").json()["dims"] == [6, 7]  # z of 8: the last two
    assert "6 numbers" in _error(client.get(base + "&values=1,2"), 400)
    assert "-4 to 4" in _error(client.get(base + "&values=9,0,0,0,0,0"), 400)
    assert "'first'" in _error(client.get(base + "&first=8"), 400)
    assert "2-D toy run" in _error(client.get(f"/api/latent/dims?run={TOY}"), 400)


def test_latent_interpolation_and_arithmetic(client):
    pytest.importorskip("counterfeit.latent", reason="the latent module (lerp/slerp, expressions) is not in this build")
    walk = client.get(f"/api/latent/interpolate?run={DCGAN}&a=1&b=2&steps=5&mode=lerp").json()
    assert len(walk["frames"]) == 5 and len(set(walk["frames"])) == 5 and walk["labels"] == ["seed 1", "seed 2"]
    same = client.get(f"/api/latent/interpolate?run={DCGAN}&a=1&b=2&steps=5&mode=slerp").json()["frames"]
    labels = client.get(f"/api/latent/interpolate?run={CDCGAN}&a=1&b=squares&steps=2").json()["labels"]
    assert labels == ["seed 1, rings", "squares"]  # the class a conditional run's seed is drawn as, as interpolate's strip says
    assert same[0] == walk["frames"][0] and same[-1] == walk["frames"][-1]  # the same endpoints, another path
    out = client.get(f"/api/latent/arithmetic?run={CDCGAN}&expr=squares%20-%20rings%20%2B%20[3]&rows=2").json()
    assert [(t["coef"], t["label"]) for t in out["terms"]] == [(1.0, "squares"), (-1.0, "rings"), (1.0, "seeds 3")]
    assert out["result"].startswith("data:image/png;base64,")
    assert "files are not available" in _error(client.get(f"/api/latent/arithmetic?run={DCGAN}&expr=/etc/passwd.png"), 400)
    assert "files are not available" in _error(client.get(f"/api/latent/interpolate?run={DCGAN}&a=x.npz&b=1"), 400)
    for a in ("%20", "1%2B2", "2*1"):  # blank, a sum, a factor: the studio offered images and latent files it refuses
        msg = _error(client.get(f"/api/latent/interpolate?run={DCGAN}&a={a}&b=1"), 400)
        assert "endpoint" in msg and "image" not in msg and "latent" not in msg and ".npz" not in msg, msg
    assert "'steps'" in _error(client.get(f"/api/latent/interpolate?run={DCGAN}&steps=100000"), 400)
    assert "'expr'" in _error(client.get(f"/api/latent/arithmetic?run={DCGAN}&expr=" + "x" * 300), 400)
    assert "unknown name 'Unicorn'" in _error(client.get(f"/api/latent/arithmetic?run={CDCGAN}&expr=Unicorn"), 400)


def test_playground_divergence_is_reported_not_a_crash(client):
    v = client.post("/api/playground", json={"data": "ring8"}).json()
    session = client.app.state.studio.playground.get(v["id"])
    session.last = {"loss_D": float("nan"), "loss_G": float("inf")}  # as after a blow-up
    shown = client.get(f"/api/playground/{v['id']}").json()
    assert shown["diverged"] and shown["last"] == {"loss_D": None, "loss_G": None}
    assert "press Reset" in _error(client.post(f"/api/playground/{v['id']}/step", json={"steps": 1}), 409)
    assert not client.post(f"/api/playground/{v['id']}/reset", json={}).json()["diverged"]


def test_training_options_reach_the_cli_parser_unchanged():
    """The flags the studio passes parse back, with the CLI's own parser, to exactly the options it checked."""
    from counterfeit.cli import _parser
    from counterfeit.studio.jobs import to_argv

    given = {"data": "mnist", "model": "cdcgan", "kimg": 12.5, "lr_d": 2e-4, "batch_size": 32, "spectral_norm": True, "mbstd": False,
             "exclude_class": "-3", "diffaug": "color,translation"}  # fmt: skip
    args = _parser().parse_args(["train", *to_argv(given)])
    assert {k: getattr(args, k) for k in given} == given


def test_a_damaged_run_does_not_hide_the_others(runs, tmp_path):
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(runs / DCGAN, root / DCGAN)
    (root / "00098-bad-bytes").mkdir()
    (root / "00098-bad-bytes" / "config.json").write_bytes(b"\xff\xfe not utf-8")
    torn = root / "00099-odd-stats"
    shutil.copytree(runs / DCGAN, torn)
    with open(torn / "stats.jsonl", "ab") as f:
        f.write(b"[1, 2]\n\xff\xfe\n")  # a line that is not an object, and bytes that are not text
    c = TestClient(create_app(root), base_url="http://127.0.0.1")
    r = c.get("/api/runs")
    assert r.status_code == 200, r.text
    names = {row["run"]: row for row in r.json()["runs"]}
    assert set(names) == {DCGAN, "00098-bad-bytes", "00099-odd-stats"} and names["00098-bad-bytes"]["kind"] is None
    assert c.get("/api/runs/00099-odd-stats").status_code == 200


@pytest.mark.parametrize(
    "method, url, body, status",
    [
        ("get", f"/api/runs/{DCGAN}?since=-1", None, 400),
        ("get", f"/api/runs/{DCGAN}?since=abc", None, 400),
        ("get", f"/api/runs/{DCGAN}/model?ema=maybe", None, 400),
        ("post", f"/api/runs/{DCGAN}/resume", {"model": "vae"}, 400),
        ("post", f"/api/runs/{DCGAN}/resume", {"kimg": -1}, 400),
        ("post", f"/api/runs/{DCGAN}/resume", {"kimg": 0.032}, 400),  # fewer kimg than the run has reached
        ("post", f"/api/runs/{DCGAN}/resume", {}, 409),  # at its planned length already: a job would end at once
        ("post", "/api/runs/00099-nowhere/resume", {}, 404),
        ("post", "/api/runs/00099-nowhere/stop", {}, 404),
        ("post", "/api/playground/nope/reset", {}, 404),
        ("post", "/api/playground", {"seed": -1}, 400),
        ("post", "/api/playground", {"loss": "x"}, 400),
        ("get", f"/api/latent/interpolate?run={DCGAN}&mode=x", None, 400),
        ("get", f"/api/latent/interpolate?run={DCGAN}&a=[", None, 400),
        ("get", f"/api/latent/interpolate?run={DCGAN}&class=1", None, 400),
        ("get", f"/api/latent/arithmetic?run={CDCGAN}", None, 400),
        ("get", f"/api/latent/arithmetic?run={CDCGAN}&expr=squares&rows=0", None, 400),
        ("get", f"/api/latent/dims?run={CDCGAN}&values=a,b,c,d,e,f", None, 400),
        ("get", f"/api/latent/dims?run={CDCGAN}&class=Unicorn", None, 400),
        ("get", f"/api/generate?run={CDCGAN}&class=Unicorn", None, 400),
        ("post", "/api/train", {"device": "tpu"}, 400),
        ("post", "/api/train", {"diffaug": "sparkle"}, 400),
        ("post", "/api/train", {"exclude_class": ["a"]}, 400),
    ],
)
def test_more_broken_parameters_get_one_line_errors(client, method, url, body, status):
    r = client.post(url, json=body) if method == "post" else client.get(url)
    _error(r, status)


def test_a_bad_playground_step_count_is_refused(client):
    sid = client.post("/api/playground", json={"data": "ring8"}).json()["id"]
    assert "'steps'" in _error(client.post(f"/api/playground/{sid}/step", json={"steps": -1}), 400)
    assert "'steps'" in _error(client.post(f"/api/playground/{sid}/step", json={"steps": 0}), 400)  # a page loop would spin


def test_a_long_job_log_still_names_its_run_and_last_line(tmp_path):
    """A poll reads the log's head (the run folder line) and tail (the state), not the whole file."""
    from counterfeit.studio.jobs import Jobs

    jobs = Jobs(tmp_path)
    jobs.dir.mkdir(parents=True)
    record = {"id": "0123456789ab", "pid": 0, "start_ticks": None, "argv": [], "started": "2026-12-02T00:00:00", "run": None}
    (jobs.dir / "0123456789ab.json").write_text(json.dumps(record))
    ticks = "".join(f"kimg {k:.1f}: D 1.386 G 0.693\n" for k in range(5000))  # ~150 kB
    (jobs.dir / "0123456789ab.log").write_text("run folder: /x/runs/00007-ring8-mlp\n" + ticks + "done: 00007-ring8-mlp\n")
    job = jobs.get("0123456789ab")
    assert job["run"] == "00007-ring8-mlp" and job["state"] == "done" and not job["alive"]


def test_a_resume_the_cli_would_refuse_is_a_400_not_a_failed_job(runs, tmp_path):
    """The studio checks a resume with the CLI's own rules (runs.resume_config) before it starts a training process."""
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(runs / DCGAN, root / DCGAN)
    for ckpt in (root / DCGAN / "checkpoints").glob("*.safetensors"):
        ckpt.unlink()
    client = TestClient(create_app(root), base_url="http://127.0.0.1")
    assert "holds no checkpoint to resume from" in _error(client.post(f"/api/runs/{DCGAN}/resume", json={"kimg": 60}), 400)
    assert not list(root.glob(".studio/jobs/*"))  # no training process was started to fail


def test_studio_resume_answers_match_what_the_page_can_do(runs, tmp_path):
    """A device the machine lacks is a 400 as on the CLI; a kimg equal to what the run reached is the 409 of no kimg; no
    advice the studio's form cannot follow (leave the length out of a finished run, add --data to the request)."""
    import shutil

    from counterfeit.runs import reached_nimg

    root = tmp_path / "runs"
    shutil.copytree(runs / DCGAN, root / DCGAN)
    client = TestClient(create_app(root), base_url="http://127.0.0.1")
    reached = reached_nimg(root / DCGAN) / 1000
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in _error(client.post(f"/api/runs/{DCGAN}/resume", json={"kimg": 60, "device": "cuda"}), 400)
        assert "no CUDA GPU" in _error(client.post("/api/train", json={"device": "cuda"}), 400)
    assert "give a larger kimg" in _error(client.post(f"/api/runs/{DCGAN}/resume", json={"kimg": reached}), 409)
    shorter = _error(client.post(f"/api/runs/{DCGAN}/resume", json={"kimg": reached / 2}), 400)
    assert "pass more" in shorter and "leave" not in shorter  # the run is at its planned length: leaving kimg out trains nothing
    config = json.loads((root / DCGAN / "config.json").read_text())
    config["data"]["name"] = str(tmp_path / "moved-away")
    (root / DCGAN / "config.json").write_text(json.dumps(config))
    moved = _error(client.post(f"/api/runs/{DCGAN}/resume", json={"kimg": 60}), 400)
    assert "which is not there" in moved and f"counterfeit train --resume {root / DCGAN} --data NEW_FOLDER" in moved
    assert not list(root.glob(".studio/jobs/*"))  # no training process was started


def test_the_studios_resume_advice_quotes_a_path_with_spaces(runs, tmp_path):
    """'counterfeit train --resume my runs/00000-... --data NEW_FOLDER' pasted as is would resume the folder 'my'."""
    from counterfeit.config import ConfigError
    from counterfeit.studio.jobs import check_config

    run = tmp_path / "my runs" / DCGAN
    shutil.copytree(runs / DCGAN, run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["name"] = str(tmp_path / "moved-away")
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError) as e:
        check_config({"kimg": 60.0}, run)
    assert f"resume it from a terminal: counterfeit train --resume '{run}' --data NEW_FOLDER" in str(e.value)


def test_the_latent_explorer_gives_the_command_lines_notes(tiny_folder, tmp_path):
    """An ae's seeds come from a prior its decoder never saw: the page says so as the CLI does, without file-path hints."""
    from conftest import TINY

    short = ["--kimg", "0.032", "--tick-kimg", "0.032", "--snapshot-kimg", "0.032", "--sample-kimg", "0.032", "--eval-every-kimg", "0"]
    assert main(["train", *TINY, *short, "--no-progress", "--model", "ae", "--data", tiny_folder, "--out", str(tmp_path)]) == 0
    run = next(tmp_path.iterdir()).name
    client = TestClient(create_app(tmp_path), base_url="http://127.0.0.1")
    walk = client.get(f"/api/latent/interpolate?run={run}&a=1&b=2&steps=2")
    assert walk.status_code == 200 and any("never trained on z ~ N(0, I)" in n for n in walk.json()["notes"])
    assert "quotes" not in _error(client.get(f"/api/latent/arithmetic?run={run}&expr=a/b.png%20-%20[1]"), 400)


def test_without_proc_a_job_from_an_earlier_studio_is_found_through_ps(tmp_path, monkeypatch):
    """macOS has no /proc: a restarted studio called every running job 'ended' and could not stop it."""
    import subprocess

    from counterfeit.studio import jobs as jobs_module

    monkeypatch.setattr(jobs_module, "_PROC", tmp_path / "no-proc")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = jobs_module._start_ticks(proc.pid)
        assert started is not None and jobs_module._start_ticks(proc.pid) == started
        jobs = jobs_module.Jobs(tmp_path)
        jobs.dir.mkdir(parents=True)
        record = {"id": "0123456789ab", "pid": proc.pid, "start_ticks": started, "argv": [], "started": "2026-12-07T00:00:00",
                  "run": "00001-ring8-mlp"}  # fmt: skip
        (jobs.dir / "0123456789ab.json").write_text(json.dumps(record))
        real_run = subprocess.run
        monkeypatch.setattr(subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(subprocess.TimeoutExpired("ps", 5)))
        assert not jobs.get("0123456789ab")["alive"]  # ps hung: cannot tell now, so not remembered as ended
        monkeypatch.setattr(subprocess, "run", real_run)
        assert jobs.get("0123456789ab")["alive"]
        with monkeypatch.context() as m:  # another time zone and locale: the same start
            m.setenv("TZ", "America/New_York")
            m.setenv("LC_ALL", "fr_FR.UTF-8")
            assert jobs_module._start_ticks(proc.pid) == started
    finally:
        proc.kill()
        proc.wait()
    assert jobs_module._start_ticks(proc.pid) is None and not jobs.get("0123456789ab")["alive"]


def test_on_windows_stop_sends_ctrl_break_to_the_job_s_process_group(monkeypatch):
    """os.killpg does not exist there: Stop was a 500 and the run trained on to its end."""
    import signal

    from counterfeit.studio import jobs as jobs_module

    sent = []
    monkeypatch.setattr(jobs_module, "_WINDOWS", True)
    monkeypatch.setattr(signal, "CTRL_BREAK_EVENT", 1, raising=False)
    monkeypatch.setattr(jobs_module.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    jobs_module._interrupt(4321)
    assert sent == [(4321, 1)]


def test_a_long_last_line_keeps_its_head_in_the_jobs_list(tmp_path):
    """An alarm's first line runs to 400 characters; the list showed its tail ('img (missing: ...'), losing the cause."""
    from counterfeit.studio.jobs import Jobs

    jobs = Jobs(tmp_path)
    jobs.dir.mkdir(parents=True)
    record = {"id": "0123456789ab", "pid": 0, "start_ticks": None, "argv": [], "started": "2026-12-07T00:00:00", "run": None}
    (jobs.dir / "0123456789ab.json").write_text(json.dumps(record))
    line = "generator is collapsing: 8 of 10 classes missing since 10 kimg" + "; to try: --mbstd" * 30
    (jobs.dir / "0123456789ab.log").write_text("run folder: /x/runs/00007-fashion-mnist-dcgan\n" + line + "\n")
    message = jobs.get("0123456789ab")["message"]
    assert message.startswith("generator is collapsing: 8 of 10") and message.endswith("...") and len(message) == 300


def test_a_job_that_ends_with_the_alarm_note_is_still_done_or_stopped(tmp_path):
    """train's note on a still-firing collapse alarm comes before its last line, which the job state is read from."""
    from counterfeit.studio.jobs import Jobs

    jobs = Jobs(tmp_path)
    jobs.dir.mkdir(parents=True)
    note = "note: the collapse alarm was firing at the last evaluation; see /x/log.txt or counterfeit report /x\n"
    for job_id, last, state in (("0123456789ab", "done: 0.1 kimg. Samples: /x/samples.", "done"),
                                ("0123456789ac", "stopped at 0.1 kimg and saved; continue with: ...", "stopped")):  # fmt: skip
        record = {"id": job_id, "pid": 0, "start_ticks": None, "argv": [], "started": "2026-12-02T00:00:00", "run": None}
        (jobs.dir / f"{job_id}.json").write_text(json.dumps(record))
        (jobs.dir / f"{job_id}.log").write_text("run folder: /x/runs/00007-tiny-dcgan\n0.064/0.064 kimg: D 1 G 1\n" + note + last + "\n")
        assert jobs.get(job_id)["state"] == state
