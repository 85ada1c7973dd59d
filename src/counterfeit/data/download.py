"""Fetch the IDX files from their official mirrors: a progress bar, verified before kept, atomic."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..fileio import atomic_path
from .base import DataError
from .idxfile import IDX_DATASETS, IdxFile, file_candidates, read_idx

log = logging.getLogger("counterfeit")
TIMEOUT_S = 30  # per connection attempt and per read; a stalled mirror should not hang a run


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
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create {dest} to download {name} into ({e.strerror}); set COUNTERFEIT_CACHE_DIR to a writable folder"
        ) from None
    for fname, expected in spec.files.items():
        if any(p.is_file() for p in file_candidates(dest, fname)):
            continue  # an earlier, interrupted download already fetched this one
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + f"/{fname}.gz"
            try:
                _fetch_verified(url, dest / f"{fname}.gz", expected)
                break
            except (OSError, DataError) as e:  # URLError, HTTPError and timeouts are OSErrors
                failures.append(str(e) if isinstance(e, DataError) else f"{url}: {_reason(e)}")
                log.warning("download failed: %s", failures[-1])
        else:
            raise DownloadError(
                f"could not download {fname}.gz for {name} ({'; '.join(failures) or 'no mirrors'}); "
                f"check the connection, or get the files yourself and pass --data-dir DIR",
                failures,
            )
    return dest


def _fetch_verified(url: str, target: Path, expected: IdxFile) -> None:
    # Written beside the target and renamed only once it verifies, so the cache never holds a partial file.
    request = urllib.request.Request(url, headers={"User-Agent": "counterfeit"})
    with atomic_path(target) as tmp:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=None) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
        try:
            read_idx(tmp, expected, fix="the mirror served a bad copy")
        except DataError as e:
            raise DataError(str(e).replace(str(tmp), url)) from None


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
