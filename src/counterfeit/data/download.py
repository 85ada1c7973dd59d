"""Fetch the IDX files from their official mirrors: a progress bar, verified before kept, atomic."""

from __future__ import annotations

import errno
import http.client
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from ..fileio import atomic_path, check_writable, lock, temp_glob
from .base import DataError
from .idxfile import GZIP_MAGIC, IDX_DATASETS, IdxFile, file_candidates, read_idx

log = logging.getLogger("counterfeit")
TIMEOUT_S = 30  # per connection attempt and per read; a stalled mirror should not hang a run


class MirrorError(DataError):
    """One mirror failed for one file (unreachable, refused, bad content); `stalled` when it timed out."""

    def __init__(self, message: str, stalled: bool = False):
        super().__init__(message)
        self.stalled = stalled


class CacheWriteError(DataError):
    """The download folder cannot be written (permissions, a full disk): no mirror can help."""


class DownloadError(DataError):
    """Every mirror failed for a file; `failures` holds one "url: reason" per mirror."""

    def __init__(self, message: str, failures: list[str]):
        super().__init__(message)
        self.failures = failures


def download_idx(name: str, dest: Path, mirrors: list[str] | None = None) -> Path:
    """Download the four files of an IDX dataset into `dest` (verified, atomically); return `dest`."""
    spec = IDX_DATASETS[name]
    mirrors = list(mirrors if mirrors is not None else spec.mirrors)
    dest = Path(dest)
    try:
        check_writable(dest)  # an unwritable cache is found now, not after the first file has downloaded
        with _locked(dest):  # several processes (torchrun) downloading at once: one fetches, the others find the files
            for fname in spec.files:  # what a killed download left; only ever these names, never trusted
                for stale in dest.glob(temp_glob(fname, ".gz")):
                    stale.unlink(missing_ok=True)
            _download_files(name, dest, mirrors)
    except OSError as e:  # our own disk, not a mirror: no other mirror can help
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        fix = (
            "free some space or set COUNTERFEIT_CACHE_DIR to a folder on another disk"
            if full
            else "set COUNTERFEIT_CACHE_DIR to a writable folder"
        )
        raise CacheWriteError(f"cannot download {name} into {dest} ({e.strerror or e}); {fix}") from None
    return dest


def _download_files(name: str, dest: Path, mirrors: list[str]) -> None:
    stalled: list[str] = []  # mirrors that timed out: asking them for the next file would cost another timeout
    for fname, expected in IDX_DATASETS[name].files.items():
        if any(p.is_file() for p in file_candidates(dest, fname)):
            continue  # an earlier, interrupted download already fetched this one
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + f"/{fname}.gz"
            if base in stalled:
                failures.append(f"{url}: skipped, it timed out on an earlier file")
                continue
            try:
                data = _get(url, expected)
                with atomic_path(dest / f"{fname}.gz") as tmp:  # an OSError while writing is ours: it ends the download
                    tmp.write_bytes(data)
                    _verify(tmp, url, expected)
                break
            except MirrorError as e:
                failures.append(str(e))
                log.warning("download failed: %s", failures[-1])
                stalled += [base] if e.stalled else []
        else:
            fix = "check the connection"
            if any("CERTIFICATE_VERIFY_FAILED" in f for f in failures):  # the usual cause: python.org's Python on macOS
                fix = "this Python trusts no certificates yet (python.org's on macOS: run 'Install Certificates.command' in its folder)"
            raise DownloadError(
                f"could not download {fname}.gz for {name} ({'; '.join(failures) or 'no mirrors'}); "
                f"{fix}, or get the files yourself and pass --data-dir DIR",
                failures,
            )


def _get(url: str, expected: IdxFile) -> bytes:
    # Into memory (the largest file is 26 MB), so that a failure here is the mirror's and one while writing is ours.
    limit = expected.nbytes + expected.nbytes // 100 + 4096  # more than even incompressible data gzips to
    request = urllib.request.Request(url, headers={"User-Agent": "counterfeit"})
    data = bytearray()
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], disable=None) as bar:
                while (chunk := response.read(1 << 16)) and len(data) <= limit:
                    data += chunk
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as e:  # URLError, HTTPError and timeouts are OSErrors
        timed_out = isinstance(e, TimeoutError) or isinstance(getattr(e, "reason", None), TimeoutError)
        raise MirrorError(f"{url}: {_reason(e)}", stalled=timed_out) from None
    if len(data) > limit:
        raise MirrorError(f"{url} served more than {limit} bytes, more than the file can be")
    return bytes(data)


def _verify(tmp: Path, url: str, expected: IdxFile) -> None:
    # Verified under its temporary name, so the cache never holds a bad file.
    try:
        read_idx(tmp, expected, fix="the mirror served a bad copy")
    except DataError as e:
        with open(tmp, "rb") as f:
            head = f.read(64)
        if head.startswith(GZIP_MAGIC) or head.startswith(b"\0\0\x08"):  # gzip, or an idx file: read_idx said what is wrong
            raise MirrorError(str(e).replace(str(tmp), url)) from None
        # Anything else is a page or file in its place (an error or sign-in page): "truncated" would mislead.
        what = "HTML, not the gzip file" if head.lstrip()[:1] == b"<" else f"{tmp.stat().st_size} bytes that are not gzip data"
        raise MirrorError(f"{url} served {what}") from None


def _reason(e: Exception) -> str:
    # The shortest message that still says what went wrong, on one line.
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        e = e.reason if isinstance(e.reason, Exception) else e
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    # A lock on the folder itself leaves no lock file behind; where the system has no locks, go without.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows opens no folder this way (and has no flock): go without a lock
        yield
        return
    try:
        if lock(fd) is False:  # another process (a torchrun rank) is downloading into it: wait, and say so
            log.info(f"waiting for another process downloading into {folder}")
            lock(fd, wait_s=float("inf"))
        yield
    finally:
        os.close(fd)  # releases the lock
