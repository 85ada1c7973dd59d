"""Crash-safe file writes: write beside the target, fsync, rename; readers see the old file or the new, never half."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shlex
import tempfile
import time
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; if the block succeeds, fsync it and rename it onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name keeps the real suffix (".gz", ".json") so readers can treat it like the final file.
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")  # see temp_glob
    except OSError as e:  # a read-only folder: name the file meant, not a random temporary name
        raise OSError(e.errno, e.strerror, str(path)) from e
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; outputs should get the usual permissions
    try:
        with errors_name(path, tmp):
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            replace(tmp, path)
            _fsync_dir(path.parent)
    finally:
        # After a successful replace this is a no-op; after a failure it removes the partial file.
        tmp.unlink(missing_ok=True)


@contextmanager
def errors_name(path: str | Path, *temporary: str | Path) -> Iterator[None]:
    """Re-raise a system OSError naming no file (a full disk) or one of the `temporary` files as one naming `path`."""
    try:
        yield
    except OSError as e:
        # Only the system's file errors (they carry an errno): a download's URLError or timeout passes unchanged.
        if e.errno is not None and e.filename in (None, *map(str, temporary)):
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def file_label(text: str, keep: str = "", max_bytes: int | None = None) -> str:
    """`text` for a file name: letters and digits of any script, '_' and the characters in `keep` (other runs become
    '_'), cut to `max_bytes` of UTF-8 (a name may hold 255 bytes, 85 CJK characters)."""
    # NFC: macOS hands out decomposed names ("e" + a combining accent), whose accent alone is not a letter.
    label = re.sub(rf"[^\w{re.escape(keep)}]+", "_", unicodedata.normalize("NFC", text))
    return label if max_bytes is None else label.encode()[:max_bytes].decode(errors="ignore")


_WINDOWS = os.name == "nt"
_SHARING_RETRIES_S = (0.05, 0.1, 0.2, 0.4, 0.8)


def replace(src: str | Path, dst: str | Path) -> None:
    """os.replace; on Windows retried for a moment while another program (antivirus, OneDrive, a reader) has `dst` open."""
    for delay_s in _SHARING_RETRIES_S if _WINDOWS else ():
        try:
            os.replace(src, dst)
            return
        except PermissionError:  # Windows refuses to replace a file another handle holds; such holds are brief
            time.sleep(delay_s)
    os.replace(src, dst)


def remove_if_free(path: Path) -> bool:
    """Delete `path` (gone already is fine); False where Windows refuses because another program has it open."""
    try:
        path.unlink(missing_ok=True)
    except PermissionError:
        if not _WINDOWS:
            raise
        return False
    return True


def shell_word(path: str | Path) -> str:
    """The path as a shell word (quoted when it holds spaces or such), for a command the user may paste."""
    if os.name == "nt":  # cmd.exe and PowerShell take double quotes; shlex's single quotes would stay in the path
        import subprocess

        return subprocess.list2cmdline([str(path)])
    return shlex.quote(str(path))


def utf8(text: str) -> bool:
    """Whether `text` encodes as UTF-8 (a file name that is not UTF-8 holds lone surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def load_tensors(path: str | Path) -> dict:
    """safetensors' load_file, also under a folder whose name is not UTF-8 (which safetensors cannot open)."""
    from safetensors.torch import load, load_file

    return load_file(path) if utf8(str(path)) else load(Path(path).read_bytes())


def check_writable(folder: Path) -> None:
    """Raise now the OSError a write into `folder` would meet after minutes of work (the folder is made if missing)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".write-check.")
    except OSError as e:  # named by the folder, not by the probe's random file name
        raise OSError(e.errno, e.strerror, str(folder)) from e
    os.close(fd)
    os.unlink(name)


def nearest_existing(path: str | Path) -> Path | None:
    """The nearest path above `path` that exists (a folder, or a file in the way), or None when not even its drive does."""
    return next((p for p in Path(path).absolute().parents if p.exists()), None)


def check_creatable(path: str | Path) -> None:
    """Raise now the OSError that creating `path` (and the missing folders above it) would meet later; makes no folder."""
    path = Path(path).absolute()
    above = nearest_existing(path)
    if above is None:  # not even the drive or share (Windows): nothing above it could hold the folder
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path.anchor or str(path))
    if not above.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(above))
    check_writable(above)


def temp_glob(stem: str = "*", suffix: str = "*") -> str:
    """The glob of atomic_path's temporary names for files named `stem` + `suffix` (what a killed writer leaves)."""
    return f".{stem}.*.tmp{suffix}"


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; some filesystems refuse to open folders, which is harmless.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode())


def sha256_file(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def append_text(path: str | Path, text: str) -> None:
    """Append `text` to `path` (a log of lines); an OSError names the file even when the system does not (a full disk)."""
    with errors_name(path), open(path, "a", encoding="utf-8") as f:
        f.write(text)


def write_many(folder: Path, items: Iterable[tuple[str, bytes]]) -> int:
    """Write many small files into `folder`, each under a temporary name then renamed (never half a file); returns the count.

    Unlike atomic_write_bytes there is no fsync per file, only one of the folder at the end: two fsyncs per
    file made writing 10,000 sample PNGs take 10.4 s instead of 1.3 s here, and samples can always be drawn again.
    """
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for name, data in items:
        tmp = folder / f".{name}.tmp"
        try:
            with errors_name(folder / name, tmp):  # for the CLI's one-line error
                tmp.write_bytes(data)
                replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)
        count += 1
    _fsync_dir(folder)
    return count


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def lock(fd: int, exclusive: bool = True, wait_s: float = 0.0) -> bool | None:
    """flock an open file: True when held, False when another process holds it past `wait_s`, None without locks here.

    Advisory, and dropped by the system when the process dies (even by kill -9). The short retries matter: another
    process may hold the lock for an instant only (a reader probing whether a run is training). On Windows it is one
    byte locked with msvcrt.locking, always exclusive.
    """
    if _WINDOWS:
        return _lock_windows(fd, exclusive, wait_s)
    try:
        import fcntl
    except ImportError:  # not on this system
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        except OSError:  # a filesystem without locks (some NFS)
            return None


def unlock(fd: int) -> None:
    """Release a lock taken with `lock` (closing the file releases it too)."""
    if _WINDOWS:
        import msvcrt

        with _at_lock_byte(fd):
            try:
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            except OSError:  # not held (lock gave None): nothing to release
                pass
        return
    try:
        import fcntl
    except ImportError:
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


# Windows locks are mandatory: a locked byte cannot be read by others, so the lock sits far past anything a lock file
# holds (a trainer's process number), where a reader can still read the file. Below 2 GiB: the C runtime's offsets are longs.
_LOCK_BYTE = 1 << 30
# How long a shared probe waits on Windows: msvcrt has exclusive locks only, so two readers probing at the same instant
# (the studio and `counterfeit runs`) would each take the other's probe for a trainer.
_PROBE_WAIT_S = 0.1


@contextmanager
def _at_lock_byte(fd: int) -> Iterator[None]:
    # msvcrt.locking acts at the file position; the file object reading or writing the lock file keeps its own.
    pos = os.lseek(fd, 0, os.SEEK_CUR)
    os.lseek(fd, _LOCK_BYTE, os.SEEK_SET)
    try:
        yield
    finally:
        os.lseek(fd, pos, os.SEEK_SET)


def _lock_windows(fd: int, exclusive: bool, wait_s: float) -> bool | None:
    import errno
    import msvcrt

    deadline = time.monotonic() + (wait_s if exclusive else max(wait_s, _PROBE_WAIT_S))
    while True:
        try:
            with _at_lock_byte(fd):
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # released by unlock, or as the file closes or the process dies
            return True
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EDEADLOCK):  # not a lock held elsewhere: a filesystem without locks
                return None
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
