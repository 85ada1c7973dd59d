"""Crash-safe writes: errors name the file meant, never a temporary name or nothing."""

import errno
import os
import sys

import pytest

from counterfeit.fileio import append_text, atomic_path, atomic_write_text


def test_a_full_disk_names_the_file_being_written(tmp_path):
    """ENOSPC carries no file name; the error raised names the target, and no partial temp file stays."""
    target = tmp_path / "ckpt.safetensors"
    with pytest.raises(OSError) as e, atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() reports a full disk
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_a_refused_rename_names_the_target_not_the_temp_file(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError) as e:
        atomic_write_text(tmp_path / "config.json", "{}")
    assert e.value.filename == str(tmp_path / "config.json") and e.value.errno == errno.EPERM


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_appending_to_a_full_disk_names_the_file():
    with pytest.raises(OSError) as e:
        append_text("/dev/full", "x" * 10_000)
    assert e.value.errno == errno.ENOSPC and e.value.filename == "/dev/full"


def test_a_network_error_inside_a_write_passes_unchanged(tmp_path):
    """A download streams into atomic_path: its URLError must keep its reason ("Name or service not known"), not become a file error."""
    from urllib.error import URLError

    err = URLError("Name or service not known")
    with pytest.raises(URLError) as e, atomic_path(tmp_path / "f.gz"):
        raise err
    assert e.value is err and list(tmp_path.iterdir()) == []


def test_a_folder_that_refuses_the_temp_file_names_the_target(tmp_path, monkeypatch):
    """mkstemp's error named a random '.x.abc123.tmp.html'; the user gave x.html."""
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / ".x.abc123.tmp.html"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as e, atomic_path(tmp_path / "x.html"):
        pass
    assert e.value.errno == errno.EROFS and e.value.filename == str(tmp_path / "x.html")


def test_many_files_on_a_full_disk_name_the_file_being_written(tmp_path, monkeypatch):
    """write_many's ENOSPC carried no name, so the CLI could only re-raise it as a traceback."""
    from pathlib import Path

    from counterfeit.fileio import write_many

    real_write = Path.write_bytes

    def full_after_two(self, data):
        if len(list(self.parent.glob("*.png"))) >= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_after_two)
    with pytest.raises(OSError) as e:
        write_many(tmp_path / "out", ((f"{i:06d}.png", b"png") for i in range(5)))
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "out" / "000002.png")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["000000.png", "000001.png"]  # no temp file left
    monkeypatch.setattr(Path, "write_bytes", real_write)

    def refuse(src, dst):  # a refused rename names the temporary file: the one meant is the target
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(src))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError) as e:
        write_many(tmp_path / "out2", [("a.png", b"png")])
    assert e.value.filename == str(tmp_path / "out2" / "a.png")


def test_long_work_checks_its_output_folder_first(tmp_path, monkeypatch, capsys):
    """evaluator train, eval and augment-eval wrote their results only after the work (15 minutes for the judge)."""
    import tempfile

    from counterfeit import evaluator
    from counterfeit.cli import main

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(str(dir), ".write-check.x"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(evaluator, "load_split", lambda *a, **k: pytest.fail("the data loaded before the check"))
    assert main(["evaluator", "train", "--out", str(tmp_path / "judge")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot use {tmp_path}" in err and "pick a path you can write to" in err


def test_generated_file_names_keep_letters_of_any_script():
    """Non-ASCII names became '_' (a run '00000-_-cdcgan', class folders '0-t'); decomposed macOS names are composed."""
    import unicodedata

    from counterfeit.latent.explore import _slug
    from counterfeit.runs import data_label
    from counterfeit.synthetic import folder_name

    assert data_label("/tmp/données/猫データ") == "猫データ"
    assert data_label(unicodedata.normalize("NFD", "/tmp/été")) == "été"
    assert data_label('a:b*c?"<|>') == "a_b_c_"  # what Windows forbids still goes
    assert _slug("猫 - été") == "猫_été" and _slug("Sneaker - Sandal") == "Sneaker_Sandal"
    assert folder_name(1, "été", 2) == "1-été" and folder_name(0, "../x", 2) == "0-x"
    assert len(data_label("a" * 60)) == 40 and len(data_label("猫" * 60).encode()) <= 40  # bytes: a name holds 255
    assert len(folder_name(3, "猫" * 200, 10).encode()) <= 102 and len(_slug("猫" * 100).encode()) <= 48
    two = f"interpolate-{_slug('猫' * 60)}-to-{_slug('犬' * 60)}-slerp.png"  # 48 bytes each, not 48 characters
    assert len(two.encode()) <= 255 and _slug("a" * 60) == "a" * 48 and _slug("é" * 60) == "é" * 24


def test_on_windows_a_briefly_held_target_is_replaced_after_a_retry(tmp_path, monkeypatch):
    """Windows refuses os.replace onto a file an antivirus or OneDrive holds for a moment; a checkpoint save then failed."""
    import counterfeit.fileio as fileio

    monkeypatch.setattr(fileio, "_WINDOWS", True)
    monkeypatch.setattr(fileio.time, "sleep", lambda s: None)
    real, refusals = os.replace, [PermissionError(13, "Access is denied")] * 2
    monkeypatch.setattr(fileio.os, "replace", lambda a, b: real(a, b) if not refusals else (_ for _ in ()).throw(refusals.pop()))
    atomic_write_text(tmp_path / "state.json", "{}")
    assert (tmp_path / "state.json").read_text() == "{}" and not refusals
    refusals[:] = [PermissionError(13, "Access is denied")] * 9  # held for good: the error comes through
    with pytest.raises(PermissionError):
        atomic_write_text(tmp_path / "state.json", "[]")
    held = tmp_path / "held"
    held.write_text("x")
    monkeypatch.setattr(type(held), "unlink", lambda self, missing_ok=False: (_ for _ in ()).throw(PermissionError(13, "held")))
    assert fileio.remove_if_free(held) is False  # left for the next prune
    monkeypatch.setattr(fileio, "_WINDOWS", False)
    with pytest.raises(PermissionError):
        fileio.remove_if_free(held)


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="the file systems there refuse names that are not UTF-8")
def test_tensors_load_from_a_folder_whose_name_is_not_utf8(tmp_path):
    """safetensors opens only UTF-8 paths: the judge's weights there were 'corrupt' and the folder cache never hit."""
    import torch
    from safetensors.torch import save_file

    from counterfeit.fileio import load_tensors

    path = tmp_path / os.fsdecode(b"caf\xe9") / "w.safetensors"
    path.parent.mkdir()
    save_file({"w": torch.arange(3.0)}, path)
    assert torch.equal(load_tensors(path)["w"], torch.arange(3.0))


def test_on_windows_the_lock_is_a_byte_past_what_the_file_holds(tmp_path, windows_locks):
    """Windows has no fcntl, so there was no lock; its locks are mandatory, so byte 0 would hide a trainer's number."""
    from counterfeit.fileio import _LOCK_BYTE, lock, unlock

    (tmp_path / ".lock").write_text("")
    with open(tmp_path / ".lock", "a+") as trainer, open(tmp_path / ".lock", "rb") as reader:
        assert lock(trainer.fileno()) is True
        trainer.write("4321")
        trainer.flush()
        assert lock(reader.fileno(), exclusive=False) is False  # msvcrt has no shared locks: a probe is refused too
        assert reader.read() == b"4321"  # readable while locked, and the file positions are left where they were
        unlock(trainer.fileno())
        assert lock(reader.fileno(), exclusive=False) is True
        unlock(reader.fileno())
    assert {(mode, offset, n) for _, mode, offset, n in windows_locks.calls} == {(2, _LOCK_BYTE, 1), (0, _LOCK_BYTE, 1)}
    assert windows_locks.held == {}


def test_on_windows_a_file_that_cannot_be_locked_goes_without(tmp_path, windows_locks, monkeypatch):
    """As flock on some NFS: a refusal other than 'held by another' means no locks there, not a run in training."""
    from counterfeit.fileio import lock

    def unsupported(fd, mode, nbytes):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(windows_locks, "locking", unsupported)
    with open(tmp_path / ".lock", "a+") as f:
        assert lock(f.fileno()) is None
