"""Tests for counterfeit.data: locating, verifying and downloading IDX files, image folders, toys, the sampler."""

from __future__ import annotations

import errno
import fcntl
import functools
import gzip
import hashlib
import http.server
import io
import logging
import os
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from counterfeit.data import (
    IDX_DATASETS,
    SYSTEM_DATA_DIRS,
    TOY_DATASETS,
    DataError,
    Dataset,
    batch_indices,
    cache_dir,
    download_idx,
    find_idx_dir,
    load_dataset,
    load_folder,
    load_idx,
    load_toy,
    search_dirs,
    toy_modes,
)
from counterfeit.data import folder as folder_module
from counterfeit.data.idxfile import IdxFile, IdxSpec

REFUSED = "http://127.0.0.1:9/"  # the discard port: nothing listens, so a download fails at once
REAL_FASHION_DIRS = [Path("/usr/share/datasets/fashion-mnist"), Path("/work/shared/data/fashion-mnist")]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep every test away from the real cache, environment, system folders and network."""
    monkeypatch.setenv("COUNTERFEIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("COUNTERFEIT_DATA_DIR", raising=False)
    for name in IDX_DATASETS:
        monkeypatch.setitem(SYSTEM_DATA_DIRS, name, [])
        monkeypatch.setitem(IDX_DATASETS, name, replace(IDX_DATASETS[name], mirrors=(REFUSED,)))


def one_line(e: pytest.ExceptionInfo) -> str:
    """The error's message, checked to be a single line."""
    text = str(e.value)
    assert "\n" not in text and text
    return text


# ---------- a tiny synthetic IDX dataset ----------


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the idx format."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def tiny_arrays(max_label: int = 2) -> dict[str, np.ndarray]:
    """Four small arrays: 12 train and 6 test 5x5 images, labels 0..max_label."""
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 5, 5), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(12, dtype=np.uint8) % (max_label + 1),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (6, 5, 5), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(6, dtype=np.uint8) % (max_label + 1),
    }


@pytest.fixture
def tiny(monkeypatch):
    """Register a dataset "tiny" whose table matches tiny_arrays(); return its files' bytes."""
    blobs = {name: idx_bytes(a) for name, a in tiny_arrays().items()}
    files = {name: IdxFile(len(b), hashlib.sha256(b).hexdigest(), 3 if "images" in name else 1) for name, b in blobs.items()}
    monkeypatch.setitem(IDX_DATASETS, "tiny", IdxSpec(files, (REFUSED,), ("a", "b", "c"), ("tiny",)))
    return blobs


def write_files(folder: Path, blobs: dict[str, bytes], gz: bool = True) -> Path:
    """Write idx files into `folder` (gzipped or plain); return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in blobs.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


# ---------- locating ----------


def test_search_order_data_dir_env_cache_system(tiny, tmp_path, monkeypatch):
    given, env, system = tmp_path / "given", tmp_path / "env", tmp_path / "system"
    cached = cache_dir() / "tiny"
    for folder in (given, env, cached, system):
        write_files(folder, tiny)
    monkeypatch.setenv("COUNTERFEIT_DATA_DIR", str(env))
    monkeypatch.setitem(SYSTEM_DATA_DIRS, "tiny", [system])
    dirs = search_dirs("tiny", str(given))
    assert [dirs.index(d) for d in (given, env, cached, system)] == sorted(dirs.index(d) for d in (given, env, cached, system))
    assert find_idx_dir("tiny", str(given)) == given
    assert find_idx_dir("tiny") == env
    monkeypatch.delenv("COUNTERFEIT_DATA_DIR")
    assert find_idx_dir("tiny") == cached
    (cached / "t10k-labels-idx1-ubyte.gz").unlink()  # an incomplete folder does not count
    assert find_idx_dir("tiny") == system
    SYSTEM_DATA_DIRS["tiny"] = []
    assert find_idx_dir("tiny") is None


def test_data_dir_may_hold_a_subfolder_named_after_the_dataset(tiny, tmp_path):
    write_files(tmp_path / "data" / "tiny", tiny, gz=False)
    assert find_idx_dir("tiny", str(tmp_path / "data")) == tmp_path / "data" / "tiny"


def test_the_dotted_names_many_mnist_copies_use_are_found(tiny, tmp_path):
    """train-images.idx3-ubyte (plain or .gz) is the same file as train-images-idx3-ubyte."""
    plain = write_files(tmp_path / "plain", {n.replace("-idx", ".idx"): b for n, b in tiny.items()}, gz=False)
    zipped = write_files(tmp_path / "zipped", {n.replace("-idx", ".idx"): b for n, b in tiny.items()})
    for folder in (plain, zipped):
        ds = load_idx("tiny", "train", data_dir=str(folder), download=False)
        assert ds.info["source"] == str(folder) and len(ds) == 12


def test_an_incomplete_data_dir_is_named_with_what_it_lacks(tiny, tmp_path, monkeypatch, caplog):
    """A split loads from a folder holding its own two files; one lacking a file is named, with the copy used instead."""
    given = write_files(tmp_path / "given", {n: b for n, b in tiny.items() if n != "train-labels-idx1-ubyte"})
    system = write_files(tmp_path / "system", tiny)
    monkeypatch.setitem(SYSTEM_DATA_DIRS, "tiny", [system])
    with caplog.at_level(logging.WARNING, logger="counterfeit"):
        assert load_idx("tiny", "test", data_dir=str(given), download=False).info["source"] == str(given)
        assert not caplog.text
        assert load_idx("tiny", "train", data_dir=str(given), download=False).info["source"] == str(system)
    assert f"{given} lacks train-labels-idx1-ubyte; using {system} instead" in caplog.text
    assert find_idx_dir("tiny", str(given), "test") == given and find_idx_dir("tiny", str(given)) == system
    SYSTEM_DATA_DIRS["tiny"] = []
    with pytest.raises(DataError) as e:
        load_idx("tiny", "train", data_dir=str(given), download=False)
    assert f"looked in {given} (lacks train-labels-idx1-ubyte), {given / 'tiny'}, " in one_line(e)


# ---------- verifying ----------


@pytest.mark.parametrize("gz", [True, False])
def test_good_files_load(tiny, tmp_path, gz):
    write_files(tmp_path / "d", tiny, gz=gz)
    arrays = tiny_arrays()
    train = load_idx("tiny", "train", data_dir=str(tmp_path / "d"), download=False)
    test = load_idx("tiny", "test", data_dir=str(tmp_path / "d"), download=False)
    assert train.x.shape == (12, 1, 5, 5) and test.x.shape == (6, 1, 5, 5)
    assert train.x.dtype == torch.uint8 and train.x.is_contiguous()
    assert train.labels.dtype == torch.int64 and train.labels.shape == (12,)
    assert torch.equal(train.x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(test.labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    assert train.class_names == ["a", "b", "c"] and train.num_classes == 3
    assert (train.kind, train.resolution, train.channels) == ("images", 5, 1)
    assert train.info["source"] == str(tmp_path / "d") and train.info["downloaded"] is False


@pytest.mark.parametrize("gz_named_plain", [True, False])
def test_gzip_is_told_by_its_content_not_its_name(tiny, tmp_path, gz_named_plain):
    """A browser unpacks a download but keeps ".gz"; a gzip may lack the suffix: both are read for what they hold."""
    folder = tmp_path / "d"
    folder.mkdir()
    for name, data in tiny.items():
        if gz_named_plain:
            (folder / name).write_bytes(gzip.compress(data))
        else:
            (folder / f"{name}.gz").write_bytes(data)
    arrays = tiny_arrays()
    ds = load_idx("tiny", "train", data_dir=str(folder), download=False)
    assert ds.info["source"] == str(folder) and torch.equal(ds.x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))


def test_flipped_byte_names_the_file(tiny, tmp_path):
    blob = bytearray(tiny["train-images-idx3-ubyte"])
    blob[100] ^= 0xFF
    write_files(tmp_path / "d", {**tiny, "train-images-idx3-ubyte": bytes(blob)})
    with pytest.raises(DataError) as e:
        load_idx("tiny", data_dir=str(tmp_path / "d"), download=False)
    msg = one_line(e)
    assert str(tmp_path / "d" / "train-images-idx3-ubyte.gz") in msg and "SHA-256" in msg
    assert tiny and IDX_DATASETS["tiny"].files["train-images-idx3-ubyte"].sha256 in msg


def test_a_bad_copy_gives_way_to_the_next_good_one(tiny, tmp_path, monkeypatch, caplog):
    """A corrupt copy first in the search order is named in a warning, and the next complete folder is used."""
    blob = bytearray(tiny["train-images-idx3-ubyte"])
    blob[100] ^= 0xFF
    write_files(tmp_path / "d", {**tiny, "train-images-idx3-ubyte": bytes(blob)})
    monkeypatch.setenv("COUNTERFEIT_DATA_DIR", str(write_files(tmp_path / "good", tiny)))
    with caplog.at_level(logging.WARNING, logger="counterfeit"):
        ds = load_idx("tiny", data_dir=str(tmp_path / "d"), download=False)
    assert ds.info["source"] == str(tmp_path / "good") and "SHA-256" in caplog.text and f"trying {tmp_path / 'good'}" in caplog.text


def test_the_other_datasets_file_is_named_not_condemned(tiny, tmp_path, monkeypatch):
    """MNIST and Fashion-MNIST share file names: a good file of the other one is never called corrupt."""
    blob = bytearray(tiny["train-images-idx3-ubyte"])
    blob[100] ^= 0xFF  # not what "tiny" expects, but exactly the file "twin" expects under the same name
    twin_file = IdxFile(len(blob), hashlib.sha256(blob).hexdigest(), 3)
    monkeypatch.setitem(IDX_DATASETS, "twin", replace(IDX_DATASETS["tiny"], files={"train-images-idx3-ubyte": twin_file}))
    write_files(tmp_path / "d", {**tiny, "train-images-idx3-ubyte": bytes(blob)})
    with pytest.raises(DataError) as e:  # the file is passed over, and with downloading off nothing else is found
        load_idx("tiny", data_dir=str(tmp_path / "d"), download=False)
    msg = one_line(e)
    assert msg.startswith("tiny not found") and f"{tmp_path / 'd'} holds twin's files, of the same names" in msg and "delete" not in msg
    calls = []

    def fake_download(name, folder):
        calls.append(name)
        return write_files(folder, tiny)

    monkeypatch.setenv("COUNTERFEIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("counterfeit.data.idx.download_idx", fake_download)
    ds = load_idx("tiny", data_dir=str(tmp_path / "d"))  # online: the other dataset's folder does not stop the download
    assert calls == ["tiny"] and ds.info["downloaded"] and len(ds) == len(load_idx("tiny", data_dir=str(tmp_path / "cache" / "tiny")))


def test_truncated_gz_names_the_file(tiny, tmp_path):
    folder = write_files(tmp_path / "d", tiny)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError) as e:
        load_idx("tiny", data_dir=str(folder), download=False)
    msg = one_line(e)
    assert f"{path} is truncated or corrupt (expected {len(tiny['train-images-idx3-ubyte'])} bytes, got" in msg
    assert "delete it" in msg


def test_short_plain_file_and_bad_header(tiny, tmp_path):
    folder = write_files(tmp_path / "d", {**tiny, "train-labels-idx1-ubyte": tiny["train-labels-idx1-ubyte"][:-2]}, gz=False)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte is truncated or corrupt \(expected 20 bytes, got 18\)"):
        load_idx("tiny", data_dir=str(folder), download=False)
    wrong_magic = b"\x00\x00\x09\x01" + tiny["train-labels-idx1-ubyte"][4:]
    write_files(folder, {"train-labels-idx1-ubyte": wrong_magic}, gz=False)
    with pytest.raises(DataError, match="is not an idx file"):
        load_idx("tiny", data_dir=str(folder), download=False)


def test_labels_must_fit_the_classes(monkeypatch, tmp_path):
    blobs = {name: idx_bytes(a) for name, a in tiny_arrays(max_label=3).items()}
    files = {n: IdxFile(len(b), hashlib.sha256(b).hexdigest(), 3 if "images" in n else 1) for n, b in blobs.items()}
    monkeypatch.setitem(IDX_DATASETS, "tiny", IdxSpec(files, (REFUSED,), ("a", "b", "c")))
    write_files(tmp_path / "d", blobs)
    with pytest.raises(DataError, match="has label 3 but tiny has 3 classes"):
        load_idx("tiny", data_dir=str(tmp_path / "d"), download=False)


def test_missing_everywhere_lists_every_folder(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("COUNTERFEIT_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setitem(SYSTEM_DATA_DIRS, "tiny", [tmp_path / "system"])
    for download in (False, True):  # True: the only mirror refuses the connection, as when offline
        with pytest.raises(DataError) as e:
            load_idx("tiny", data_dir=str(tmp_path / "given"), download=download)
        msg = one_line(e)
        for folder in (tmp_path / "given", tmp_path / "env", cache_dir() / "tiny", tmp_path / "system"):
            assert str(folder) in msg
        assert "--data-dir" in msg and "COUNTERFEIT_DATA_DIR" in msg
        assert ("download failed" in msg) == download
    assert not any((cache_dir() / "tiny").glob("*"))


def test_fashion_mnist_hint_mentions_the_debian_package():
    with pytest.raises(DataError, match="apt install dataset-fashion-mnist"):
        load_idx("fashion-mnist", download=False)


def test_unknown_split_and_name(tiny):
    with pytest.raises(DataError, match="use 'train' or 'test'"):
        load_idx("tiny", "val")
    with pytest.raises(DataError, match="fashion-mnist"):
        load_idx("emnist")


# ---------- downloading ----------


@pytest.fixture
def serve(tmp_path):
    """Serve folders over HTTP on 127.0.0.1; returns a function folder -> base URL."""
    servers = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def start(folder: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_download_verifies_and_keeps_the_files(tiny, tmp_path, serve, monkeypatch):
    url = serve(write_files(tmp_path / "mirror", tiny))
    monkeypatch.setitem(IDX_DATASETS, "tiny", replace(IDX_DATASETS["tiny"], mirrors=(url,)))
    ds = load_idx("tiny", "train", download=True)
    assert ds.info["downloaded"] is True and ds.x.shape == (12, 1, 5, 5)
    cached = sorted(p.name for p in (cache_dir() / "tiny").iterdir())
    assert cached == sorted(f"{name}.gz" for name in tiny)  # and no temporary files
    assert load_idx("tiny", "test").info["downloaded"] is False


def test_download_falls_back_past_bad_mirrors(tiny, tmp_path, serve):
    corrupt = {name: data[:-1] + bytes([data[-1] ^ 1]) for name, data in tiny.items()}
    bad, good = serve(write_files(tmp_path / "bad", corrupt)), serve(write_files(tmp_path / "good", tiny))
    missing = serve(tmp_path / "empty")  # answers 404
    dest = download_idx("tiny", tmp_path / "dest", mirrors=[missing, bad, good])
    assert find_idx_dir("tiny", str(dest)) == dest


def test_download_of_corrupt_content_keeps_nothing(tiny, tmp_path, serve):
    corrupt = {name: data[:-1] + bytes([data[-1] ^ 1]) for name, data in tiny.items()}
    bad = serve(write_files(tmp_path / "bad", corrupt))
    with pytest.raises(DataError) as e:
        download_idx("tiny", tmp_path / "dest", mirrors=[bad])
    msg = one_line(e)
    assert "SHA-256" in msg and bad in msg
    assert list((tmp_path / "dest").iterdir()) == []


def test_a_mirror_serving_a_page_or_other_data_is_named_as_such(tiny, tmp_path, serve):
    """An HTML page or non-gzip bytes in place of the file are said to be that, not "truncated"; a plain idx file that verifies is kept."""
    html = serve(write_files(tmp_path / "html", {n: b"<!DOCTYPE html><html>Sign in</html>" for n in tiny}, gz=False))
    junk = serve(write_files(tmp_path / "junk", {n: b"PK\x03\x04" + bytes(40) for n in tiny}, gz=False))
    huge = serve(write_files(tmp_path / "huge", {n: bytes(1 << 20) for n in tiny}, gz=False))
    for folder in ("html", "junk", "huge"):  # the mirror's files carry the names it is asked for
        for p in (tmp_path / folder).iterdir():
            p.rename(p.with_name(p.name + ".gz"))
    with pytest.raises(DataError) as e:
        download_idx("tiny", tmp_path / "dest", mirrors=[html, junk, huge])
    msg = one_line(e)
    assert f"{html}train-images-idx3-ubyte.gz served HTML, not the gzip file" in msg
    assert f"{junk}train-images-idx3-ubyte.gz served 44 bytes that are not gzip data" in msg
    assert f"{huge}train-images-idx3-ubyte.gz served more than" in msg and "truncated" not in msg
    plain = tmp_path / "plain"
    plain.mkdir()
    for name, data in tiny.items():
        (plain / f"{name}.gz").write_bytes(data)  # served already unpacked: the same verified bytes
    dest = download_idx("tiny", tmp_path / "dest", mirrors=[serve(plain)])
    assert len(load_idx("tiny", "test", data_dir=str(dest), download=False)) == 6


@pytest.mark.parametrize("where,reason", [("mkstemp", "Permission denied"), ("write_bytes", "No space left on device")])
def test_an_unwritable_cache_stops_the_download_at_once(tiny, tmp_path, serve, monkeypatch, caplog, where, reason):
    """Our own disk failing is not the mirrors' fault: one line naming the cache folder and the fix, no mirror tried again."""
    url = serve(write_files(tmp_path / "mirror", tiny))
    monkeypatch.setitem(IDX_DATASETS, "tiny", replace(IDX_DATASETS["tiny"], mirrors=(url, url)))
    code = errno.EACCES if where == "mkstemp" else errno.ENOSPC

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("tempfile.mkstemp" if where == "mkstemp" else "pathlib.Path.write_bytes", refuse)
    with caplog.at_level(logging.WARNING, logger="counterfeit"), pytest.raises(DataError) as e:
        load_idx("tiny", "train")
    msg = one_line(e)
    assert msg.startswith(f"cannot download tiny into {cache_dir() / 'tiny'} ({reason}); ") and "COUNTERFEIT_CACHE_DIR" in msg
    assert url not in msg and "download failed" not in caplog.text


def test_download_clears_only_its_own_stale_temporary_files(tiny, tmp_path, serve):
    """A killed download's temporary files are removed when the next one starts; nothing else in the folder is touched."""
    dest = tmp_path / "dest"
    dest.mkdir()
    stale = dest / ".train-images-idx3-ubyte.k1ll3d.tmp.gz"
    keep = [dest / ".notes.abc.tmp.gz", dest / "train-images-idx3-ubyte.tmp", dest / "readme.txt"]
    for p in (stale, *keep):
        p.write_bytes(b"half")
    download_idx("tiny", dest, mirrors=[serve(write_files(tmp_path / "mirror", tiny))])
    assert not stale.exists() and all(p.exists() for p in keep)


def test_a_download_waits_for_one_already_writing_the_folder(tiny, tmp_path, serve):
    """Processes downloading at once (torchrun): the second neither clears the first one's temporary files nor fetches again."""
    dest = tmp_path / "dest"
    dest.mkdir()
    in_flight = dest / ".train-images-idx3-ubyte.f1rst.tmp.gz"
    in_flight.write_bytes(b"being written")
    fd = os.open(dest, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the first process, still downloading
    second = threading.Thread(target=download_idx, args=("tiny", dest), kwargs={"mirrors": [REFUSED]}, daemon=True)
    second.start()
    second.join(0.5)
    assert second.is_alive() and in_flight.exists()
    write_files(dest, tiny)  # the first one finishes
    in_flight.unlink()
    os.close(fd)
    second.join(5)
    assert not second.is_alive() and find_idx_dir("tiny", str(dest)) == dest


def test_a_stalled_mirror_is_not_asked_for_the_other_files(tiny, tmp_path, serve, monkeypatch):
    """After one timeout a mirror is skipped for the rest of the download, rather than costing a timeout per file."""
    asked, release = [], threading.Event()

    class Stalled(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            release.wait(5)  # never answers within the timeout

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalled)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setattr("counterfeit.data.download.TIMEOUT_S", 0.3)
    try:
        stalled = f"http://127.0.0.1:{server.server_address[1]}/"
        dest = download_idx("tiny", tmp_path / "dest", mirrors=[stalled, serve(write_files(tmp_path / "good", tiny))])
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    assert find_idx_dir("tiny", str(dest)) == dest and asked == ["/train-images-idx3-ubyte.gz"]


def test_an_untrusted_certificate_points_to_the_macos_fix(tiny, tmp_path, monkeypatch):
    """python.org's Python on macOS ships without CA certificates: every https download fails until they are installed."""
    import ssl
    import urllib.error

    from counterfeit.data.download import DownloadError

    def refuse(*args, **kwargs):
        raise urllib.error.URLError(ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"))

    monkeypatch.setattr("urllib.request.urlopen", refuse)
    with pytest.raises(DownloadError, match="Install Certificates.command.*--data-dir DIR"):
        download_idx("tiny", tmp_path / "dest", mirrors=["https://example.invalid/"])


# ---------- the real Fashion-MNIST ----------


@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_real_fashion_mnist(split, n):
    folder = next((d for d in REAL_FASHION_DIRS if d.is_dir()), None)
    if folder is None:
        pytest.skip("no Fashion-MNIST files on this machine")
    ds = load_idx("fashion-mnist", split, data_dir=str(folder), download=False)
    assert ds.x.shape == (n, 1, 28, 28) and ds.x.dtype == torch.uint8 and ds.x.is_contiguous()
    assert ds.labels.dtype == torch.int64 and ds.labels.min() == 0 and ds.labels.max() == 9
    assert torch.bincount(ds.labels).tolist() == [n // 10] * 10
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"


# ---------- image folders ----------


def save(path: Path, im: Image.Image, **kw) -> Path:
    """Save an image, creating folders on the way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def noise(w: int, h: int, seed: int) -> Image.Image:
    """A random RGB picture."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def pictures(tmp_path) -> Path:
    """Two class folders of mixed formats, three bad files and some non-images."""
    root = tmp_path / "pictures"
    save(root / "cats" / "a.png", noise(40, 30, 0))
    save(root / "cats" / "b.jpg", noise(30, 30, 1))
    save(root / "cats" / "c.webp", noise(32, 48, 2))
    save(root / "cats" / "deeper" / "d.bmp", noise(20, 20, 3))
    frames = [Image.new("RGB", (24, 24), c) for c in ("red", "blue")]
    save(root / "dogs" / "e.gif", frames[0], save_all=True, append_images=frames[1:])
    save(root / "dogs" / "f.png", Image.new("RGBA", (20, 20), (0, 0, 0, 0)))  # fully transparent
    save(root / "dogs" / "g.PNG", noise(20, 20, 4))
    (root / "dogs" / "bad.png").write_bytes(np.random.default_rng(5).bytes(500))
    (root / "dogs" / "empty.jpg").write_bytes(b"")
    jpg = io.BytesIO()
    noise(64, 64, 6).save(jpg, "JPEG")
    (root / "dogs" / "trunc.jpg").write_bytes(jpg.getvalue()[: len(jpg.getvalue()) // 2])
    (root / "dogs" / "notes.txt").write_text("not a picture")
    (root / ".DS_Store").write_bytes(b"\0\1")
    return root


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_classes_formats_and_skips(pictures, channels, caplog):
    with caplog.at_level(logging.WARNING, logger="counterfeit"):
        ds = load_folder(str(pictures), resolution=16, channels=channels)
    assert ds.x.shape == (7, channels, 16, 16) and ds.x.dtype == torch.uint8 and ds.x.is_contiguous()
    assert ds.class_names == ["cats", "dogs"] and ds.labels.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert ds.name == str(pictures) and ds.info["class_counts"] == [4, 3]
    assert {s["file"] for s in ds.info["skipped"]} == {"dogs/bad.png", "dogs/empty.jpg", "dogs/trunc.jpg"}
    reasons = {s["file"]: s["reason"] for s in ds.info["skipped"]}
    assert reasons["dogs/empty.jpg"] == "empty file" and reasons["dogs/trunc.jpg"] == "truncated"
    assert reasons["dogs/bad.png"] == "cannot identify image file"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"skipped 3 of 10 files in {pictures}")
    gif, transparent = ds.x[4].float(), ds.x[5]
    assert (transparent == 255).all()  # transparency is shown on white
    if channels == 3:
        assert gif[0].mean() > 200 and gif[2].mean() < 50  # the first frame (red), not the second (blue)


def test_folder_upright_and_centre_crop(tmp_path):
    # Landscape 40x20: black left quarter, white middle half, black right quarter; the crop keeps the middle.
    band = np.zeros((20, 40), np.uint8)
    band[:, 10:30] = 255
    save(tmp_path / "flat" / "band.png", Image.fromarray(band))
    # Left half black, right half white, stored with EXIF "rotate 90 clockwise": upright it is black on top.
    halves = np.zeros((20, 40), np.uint8)
    halves[:, 20:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    save(tmp_path / "flat" / "photo.jpg", Image.fromarray(halves), exif=exif, quality=95)
    ds = load_folder(str(tmp_path / "flat"), resolution=16, channels=1)
    assert ds.labels is None and ds.class_names == [] and "unlabelled" in ds.info["note"]
    band_x, photo = ds.x[0, 0], ds.x[1, 0]  # (16, 16) uint8 each
    assert band_x[:, 2:14].min() > 230
    assert photo[2, 2] < 60 and photo[13, 2] > 200


def test_folder_cache_hit_skips_decoding(pictures, monkeypatch, caplog):
    first = load_folder(str(pictures), 16, 3)
    assert first.info["cache"] == "miss"

    def no_decoding(*args):
        raise AssertionError("decoded although the cache should have answered")

    monkeypatch.setattr(folder_module, "decode_image", no_decoding)
    with caplog.at_level(logging.WARNING, logger="counterfeit"):
        second = load_folder(str(pictures), 16, 3)
    assert second.info["cache"] == "hit" and "skipped 3 of 10" in caplog.text
    assert torch.equal(first.x, second.x) and torch.equal(first.labels, second.labels)
    assert (second.class_names, second.info["skipped"]) == (first.class_names, first.info["skipped"])
    assert Path(second.info["cache_file"]).parent == cache_dir() / "folders"


def test_folder_cache_key_follows_the_files(pictures, tmp_path):
    assert load_folder(str(pictures), 16, 3).info["cache"] == "miss"
    assert load_folder(str(pictures), 16, 1).info["cache"] == "miss"  # other channels, other entry
    stat = (pictures / "cats" / "a.png").stat()
    os.utime(pictures / "cats" / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load_folder(str(pictures), 16, 3).info["cache"] == "miss"
    save(pictures / "cats" / "z.png", noise(20, 20, 9))
    ds = load_folder(str(pictures), 16, 3)
    assert ds.info["cache"] == "miss" and len(ds) == 8
    assert load_folder(str(pictures), 16, 3, cache_dir=str(tmp_path / "elsewhere")).info["cache"] == "miss"
    assert (tmp_path / "elsewhere" / "folders").is_dir()


def test_corrupt_cache_entry_is_rebuilt(pictures):
    first = load_folder(str(pictures), 16, 3)
    Path(first.info["cache_file"]).write_bytes(b"garbage")
    again = load_folder(str(pictures), 16, 3)
    assert again.info["cache"] == "miss" and torch.equal(again.x, first.x)
    assert load_folder(str(pictures), 16, 3).info["cache"] == "hit"


def test_a_file_the_system_would_not_read_is_tried_again_next_time(pictures, monkeypatch):
    """A permission or I/O error leaves the file's size and mtime (the cache key) as they were: such a load is not cached."""
    real_decode = folder_module.decode_image

    def no_permission(path, *args):
        if path.name == "a.png":
            raise PermissionError(13, "Permission denied", str(path))
        return real_decode(path, *args)

    monkeypatch.setattr(folder_module, "decode_image", no_permission)
    first = load_folder(str(pictures), 16, 3)
    assert {"file": "cats/a.png", "reason": "Permission denied", "retry": True} in first.info["skipped"] and len(first) == 6
    monkeypatch.setattr(folder_module, "_opens", lambda path: False)  # still refused: the cached result stands
    assert load_folder(str(pictures), 16, 3).info["cache"] == "hit"
    monkeypatch.setattr(folder_module, "_opens", lambda path: True)
    monkeypatch.setattr(folder_module, "decode_image", real_decode)  # the owner fixed the permissions
    second = load_folder(str(pictures), 16, 3)
    assert second.info["cache"] == "miss" and len(second) == 7
    assert load_folder(str(pictures), 16, 3).info["cache"] == "hit"  # a bad file's bytes do not change by themselves


def test_linked_class_folders_are_followed_once(pictures, tmp_path):
    """A dataset assembled from links to class folders loads them; a link back into the tree or above it is not followed."""
    root = tmp_path / "linked"
    root.mkdir()
    (root / "cats").symlink_to(pictures / "cats", target_is_directory=True)
    (root / "dogs").symlink_to(pictures / "dogs", target_is_directory=True)
    (pictures / "cats" / "loop").symlink_to(pictures / "cats", target_is_directory=True)
    (pictures / "dogs" / "up").symlink_to(tmp_path, target_is_directory=True)  # above the dataset: everything around it
    ds = load_folder(str(root), 16, 3)
    assert ds.class_names == ["cats", "dogs"] and ds.info["class_counts"] == [4, 3]


def test_loose_images_beside_class_folders_mean_unlabelled(tmp_path):
    save(tmp_path / "mixed" / "cats" / "a.png", noise(8, 8, 0))
    save(tmp_path / "mixed" / "dogs" / "b.png", noise(8, 8, 1))
    save(tmp_path / "mixed" / "loose.png", noise(8, 8, 2))
    ds = load_folder(str(tmp_path / "mixed"), 8, 3)
    assert ds.labels is None and ds.num_classes == 0 and len(ds) == 3 and "directly in the folder" in ds.info["note"]


def test_what_a_folder_leaves_out_is_said(tmp_path, monkeypatch, caplog):
    """An unreadable class folder, pictures of a kind it cannot read, a folder reached twice: said, not silently dropped."""
    root = tmp_path / "pets"
    save(root / "cats" / "a.tiff", noise(12, 12, 0))
    save(root / "cats" / "b.jfif", noise(12, 12, 1), format="JPEG")  # what browsers save JPEGs as: it was ignored
    save(root / "cats" / "f.pgm", Image.new("L", (12, 12), 90))  # the AT&T faces' format
    save(root / "dogs" / "c.png", noise(12, 12, 2))
    save(root / "birds" / "d.png", noise(12, 12, 3))
    (root / "birds" / "e.heic").write_bytes(b"phone photo")
    (root / "labels.csv").write_text("file,class")
    (root / "zebras").symlink_to(root / "dogs", target_is_directory=True)  # the same folder again, under a later name
    real_scandir = os.scandir

    def refuse_birds(path="."):
        if Path(path).name == "birds":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    with caplog.at_level(logging.INFO, logger="counterfeit"):
        ds = load_folder(str(root), 8, 3)
    assert ds.class_names == ["birds", "cats", "dogs"] and ds.info["class_counts"] == [1, 3, 1]
    assert ds.info["left_out_folders"] == ["zebras/ (the same folder as dogs/, read once)"]
    assert ds.info["other_files"] == {".heic": 1, ".csv": 1}
    levels = {r.getMessage().split(" in ")[0]: r.levelno for r in caplog.records if r.getMessage().startswith("left out")}
    assert levels == {"left out 1 folder": logging.WARNING, "left out 2 files": logging.WARNING}  # a .heic may be a picture
    monkeypatch.setattr(os, "scandir", refuse_birds)  # os.walk lists folders with it
    locked = load_folder(str(root), 8, 3)
    assert locked.class_names == ["cats", "dogs"] and locked.info["left_out_folders"][0] == "birds/ (Permission denied)"
    monkeypatch.setattr(os, "scandir", lambda path=".": (_ for _ in ()).throw(PermissionError(13, "Permission denied", str(path))))
    with pytest.raises(DataError) as e:
        load_folder(str(root), 8, 3)
    assert one_line(e) == f"cannot read {root} (Permission denied); check its permissions, or choose another folder"


def test_split_folders_holding_the_classes_are_a_warning(tmp_path, caplog):
    """A downloaded dataset's train/ and test/ would train as the classes "test" and "train" without a word."""
    for split in ("train", "test"):
        for cls in ("cats", "dogs"):
            save(tmp_path / "pets" / split / cls / "a.png", noise(8, 8, 0))
    save(tmp_path / "album" / "photos" / "2020" / "a.png", noise(8, 8, 0))  # one sub-folder: no classes, no warning (it crashed)
    assert load_folder(str(tmp_path / "album"), 8, 1).class_names == []
    with caplog.at_level(logging.WARNING, logger="counterfeit"):
        assert load_folder(str(tmp_path / "pets"), 8, 1).class_names == ["test", "train"]
        assert load_folder(str(tmp_path / "pets" / "train"), 8, 1).class_names == ["cats", "dogs"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'pets'}'s sub-folders test and train look like a dataset's splits, each holding the classes, and become "
        f"the classes here; to train on the real classes, pass one of them, such as {tmp_path / 'pets' / 'train'}"
    ]


def test_colour_is_judged_on_a_cache_miss_only(tmp_path, monkeypatch):
    """Finding colour decodes files (a 12 MP PNG: half a second each): done once, kept with the cache entry."""
    for i in range(12):
        save(tmp_path / "f" / f"{i}.png", Image.merge("RGB", [Image.new("L", (16, 12), 40 * (i % 6))] * 3))  # grey as RGB
    save(tmp_path / "f" / "z.png", noise(16, 12, 0))  # one colour picture among them
    calls = []
    real = folder_module._has_colour
    monkeypatch.setattr(folder_module, "_has_colour", lambda path: calls.append(path.name) or real(path))
    first = load_folder(str(tmp_path / "f"), 8, 1)
    assert first.info["cache"] == "miss" and first.info["image_shapes"] == [(16, 12, 1)] and len(calls) == 8  # 8 of them only
    calls.clear()
    second = load_folder(str(tmp_path / "f"), 8, 1)
    assert second.info["cache"] == "hit" and second.info["image_shapes"] == [(16, 12, 1)] and calls == []
    save(tmp_path / "g" / "a.png", noise(16, 12, 1))
    save(tmp_path / "g" / "b.png", noise(16, 12, 2))
    assert load_folder(str(tmp_path / "g"), 8, 1).info["image_shapes"] == [(16, 12, 3)] and calls == ["a.png"]  # stops at one


def test_a_system_that_cannot_lock_a_folder_still_downloads(tiny, tmp_path, monkeypatch):
    """Windows opens no folder with os.open: the download lock is skipped, not turned into 'cannot download into'."""
    import counterfeit.data.download as download_module

    real_open = os.open
    monkeypatch.setattr(download_module.os, "open", lambda p, *a: (_ for _ in ()).throw(PermissionError(13, "Permission denied", str(p)))
                        if Path(p).is_dir() else real_open(p, *a))  # fmt: skip
    with pytest.raises(download_module.DownloadError, match="no mirrors"):
        download_module.download_idx("tiny", tmp_path / "dl", mirrors=[])


def test_only_a_readme_beside_the_pictures_is_a_note_and_a_full_disk_cache_a_warning(tmp_path, monkeypatch, caplog):
    save(tmp_path / "f" / "a.png", noise(8, 8, 0))
    (tmp_path / "f" / "README.md").write_text("my photos")

    from safetensors import SafetensorError  # its own type, not OSError, for a full disk

    monkeypatch.setattr(folder_module, "save_file", lambda *a: (_ for _ in ()).throw(SafetensorError("No space left on device")))
    with caplog.at_level(logging.INFO, logger="counterfeit"):
        ds = load_folder(str(tmp_path / "f"), 8, 1)
    assert len(ds) == 1 and ds.info["cache"] == "miss"
    records = {r.getMessage()[:30]: r.levelno for r in caplog.records}
    assert records == {"left out 1 file in " + str(tmp_path)[:11]: logging.INFO, "could not write the cache entr": logging.WARNING}


def test_float_and_huge_images(tmp_path):
    """A 0..1 float TIFF is scaled, not clipped to black; a decompression bomb's reason says how small to make it."""
    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    save(tmp_path / "f" / "a" / "ramp.tif", Image.fromarray(ramp, "F"))
    save(tmp_path / "f" / "a" / "big.png", Image.new("L", (30, 30)))
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # 30x30 is past twice the limit
    try:
        ds = load_folder(str(tmp_path / "f"), 8, 1)
    finally:
        monkeypatch.undo()
    assert len(ds) == 1 and ds.x.max() >= 250 and ds.x.min() == 0
    assert ds.info["skipped"] == [
        {"file": "a/big.png", "reason": "too many pixels for Pillow's decompression-bomb guard; shrink it below 0 megapixels"}
    ]


@pytest.mark.parametrize(
    "make,expect",
    [
        (lambda p: p.mkdir(), "holds no image files"),
        (lambda p: (p.mkdir(), (p / "readme.txt").write_text("hi")), "holds no image files"),
        (lambda p: (p.mkdir(), (p / "x.png").write_bytes(b"nope"), (p / "y.jpg").write_bytes(b"")), "none of the 2"),
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("a file"), "is a file, not a folder"),
    ],
)
def test_folder_errors_are_one_line(tmp_path, make, expect):
    path = tmp_path / "target"
    make(path)
    with pytest.raises(DataError) as e:
        load_folder(str(path), 16, 3)
    msg = one_line(e)
    assert expect in msg and str(path) in msg


def test_folder_rejects_bad_channels(pictures):
    with pytest.raises(DataError, match="use 1 .* or 3"):
        load_folder(str(pictures), 16, 2)


# ---------- toys ----------


@pytest.mark.parametrize("name,modes", [("ring8", 8), ("grid25", 25), ("ducks-cows", 2)])
def test_toys(name, modes):
    ds = load_toy(name, n=4000, seed=3)
    centres, sigma = toy_modes(name)
    assert ds.x.shape == (4000, 2) and ds.x.dtype == torch.float32 and ds.kind == "points"
    assert centres.shape == (modes, 2) and ds.num_classes == modes and len(ds.class_names) == modes
    assert (ds.resolution, ds.channels) == (0, 0)
    assert ds.labels.dtype == torch.int64 and set(ds.labels.tolist()) == set(range(modes))
    counts = torch.bincount(ds.labels, minlength=modes).float()
    assert counts.min() > 0.5 * 4000 / modes  # equal weights
    dist = (ds.x - centres[ds.labels]).norm(dim=1)  # (N,) distance to the point's own mode
    assert (dist < 4 * sigma).float().mean() > 0.995 and (dist < 6 * sigma).all()
    assert torch.equal(load_toy(name, 4000, seed=3).x, ds.x)
    assert not torch.equal(load_toy(name, 4000, seed=4).x, ds.x)


def test_toy_names_and_units():
    assert TOY_DATASETS == ("ring8", "grid25", "ducks-cows")
    assert load_toy("ring8", 10).class_names[2] == "mode 2 (0.00, 1.00)"
    ducks_cows = load_toy("ducks-cows", 10)
    assert ducks_cows.class_names == ["ducks", "cows"] and ducks_cows.info["axes"] == ["weight", "size"]
    assert toy_modes("grid25")[1] == 0.05 and toy_modes("ring8")[1] == 0.01


# ---------- batch_indices ----------


def test_batch_indices_cover_each_epoch_once():
    n, bs, seed = 10, 3, 7
    stream = torch.cat([batch_indices(n, bs, seed, start) for start in range(0, 30, bs)])  # (30,) three epochs
    for epoch in range(3):
        assert sorted(stream[epoch * n : (epoch + 1) * n].tolist()) == list(range(n))
    assert not torch.equal(stream[:n], stream[n : 2 * n])  # each epoch has its own order
    assert torch.equal(batch_indices(n, 4, seed, 8), stream[8:12])  # straddles the end of epoch 0
    assert torch.equal(batch_indices(n, 25, seed, 3), stream[3:28])  # longer than an epoch
    assert batch_indices(n, bs, seed, 0).dtype == torch.int64


def test_batch_indices_are_a_pure_function_of_their_arguments():
    a = batch_indices(60000, 64, 0, 123456)
    assert torch.equal(a, batch_indices(60000, 64, 0, 123456))
    assert not torch.equal(a, batch_indices(60000, 64, 1, 123456))
    a[:] = 0  # the caller owns the result: mutating it must not disturb the cached order
    assert batch_indices(60000, 64, 0, 123456).ne(0).any()
    with pytest.raises(ValueError):
        batch_indices(0, 4, 0, 0)


# ---------- load_dataset ----------


def test_load_dataset_dispatch(tiny, tmp_path, pictures):
    write_files(tmp_path / "d", tiny)
    idx = load_dataset("TINY", "test", resolution=5, data_dir=str(tmp_path / "d"), download=False)
    assert idx.x.shape == (6, 1, 5, 5)
    colour = load_dataset("tiny", resolution=8, channels=3, data_dir=str(tmp_path / "d"), download=False)
    assert colour.x.shape == (12, 3, 8, 8) and colour.x.is_contiguous() and colour.info["converted_from"] == [1, 5, 5]
    assert torch.equal(colour.x[:, 0], colour.x[:, 2])
    train, test = load_dataset("ring8"), load_dataset("ring8", "test")
    assert train.kind == "points" and len(train) == 100_000 and not torch.equal(train.x[:10], test.x[:10])
    folder = load_dataset(str(pictures), resolution=12, channels=3)
    assert folder.x.shape == (7, 3, 12, 12) and folder.name == str(pictures)


def test_load_dataset_unknown_name():
    with pytest.raises(DataError) as e:
        load_dataset("cifar10")
    msg = one_line(e)
    assert "cifar10" in msg and all(name in msg for name in ("fashion-mnist", "mnist", "ring8", "grid25", "ducks-cows"))
    with pytest.raises(DataError, match="use 'train' or 'test'"):
        load_dataset("ring8", "validation")


def test_dataset_repr_is_short():
    ds = Dataset("x", "points", torch.zeros(3, 2), None, [], {})
    assert repr(ds) == "Dataset('x', points, 3x2 float32, 0 classes)"


def test_builtin_names_have_one_spelling(tmp_path):
    from counterfeit.config import make_config
    from counterfeit.data import builtin_name

    assert builtin_name(" Fashion_MNIST ") == "fashion-mnist" and builtin_name("GRID25") == "grid25"
    assert builtin_name(str(tmp_path)) is None and builtin_name("./mnist") is None  # folders keep their path
    cfg = make_config(data="Fashion_MNIST", model="cdcgan")
    assert cfg.data.name == "fashion-mnist" and cfg.model.num_classes == 10  # the config stores the one spelling
    assert make_config(data="Ring8").model.name == "mlp"  # a toy in any case still picks the point model


def test_labels_stay_with_their_images_when_an_earlier_class_loses_a_file(tmp_path):
    """A broken file in the first class must not shift the labels of every later image."""
    from counterfeit.data.folder import load_folder

    root = tmp_path / "pics"
    for cls, shade in (("a", 10), ("b", 240)):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8), shade, np.uint8)).save(root / cls / f"{i}.png")
    (root / "a" / "broken.png").write_bytes(b"not a png")
    ds = load_folder(str(root), 8, 1, cache_dir=str(tmp_path / "cache"))
    assert ds.labels.tolist() == [0, 0, 1, 1]
    assert all((ds.x[i].float().mean() > 128) == (ds.labels[i] == 1) for i in range(4))  # dark a, bright b
