"""Request parameters checked one by one: a wrong or out-of-range value becomes a 4xx with a one-line message."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ..runs import is_run_dir

MAX_BODY_BYTES = 64 * 1024  # every JSON body the studio takes is a handful of options
# Any folder name the runs list can show (a user may rename a run "my cats été"); no separators, control characters,
# or leading dot (hidden folders such as the studio's own .studio, and "..").
_RUN_NAME = re.compile(r"^[^./\\\x00-\x1f][^/\\\x00-\x1f]{0,254}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.png$")
_TRUE, _FALSE = ("1", "true", "on", "yes"), ("0", "false", "off", "no")


class StudioError(Exception):
    """A request the studio refuses: `status` is the HTTP code (4xx), the message one line naming the parameter and the fix."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers  # headers: e.g. Allow on a 405


class Params:
    """Typed, bounded access to a request's parameters (query string or JSON body); unknown names are refused."""

    def __init__(self, values: dict[str, Any]):
        self.values = dict(values)
        self.used: set[str] = set()

    def _get(self, name: str, default: Any) -> Any:
        self.used.add(name)
        value = self.values.get(name)
        return default if value is None or value == "" else value

    def int(self, name: str, default: int | None, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""
        value = self._get(name, default)
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out = int(value)
        except (TypeError, ValueError):
            raise StudioError(f"parameter '{name}' must be a whole number from {lo} to {hi}, got {_show(value)}") from None
        if not lo <= out <= hi:
            raise StudioError(f"parameter '{name}' must be from {lo} to {hi}, got {out}")
        return out

    def float(self, name: str, default: float | None, lo: float, hi: float, lo_open: bool = False) -> float:
        """A finite number in [lo, hi] (or (lo, hi] with lo_open)."""
        value = self._get(name, default)
        try:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        except (TypeError, ValueError):
            out = math.nan
        bracket = "(" if lo_open else "["
        if not (math.isfinite(out) and (lo < out if lo_open else lo <= out) and out <= hi):
            raise StudioError(f"parameter '{name}' must be a number in {bracket}{lo:g}, {hi:g}], got {_show(value)}")
        return out

    def bool(self, name: str, default: bool) -> bool:
        """true/false (also 1/0, on/off, yes/no)."""
        value = self._get(name, default)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise StudioError(f"parameter '{name}' must be true or false, got {_show(value)}")

    def choice(self, name: str, default: str | None, choices: list[str] | tuple[str, ...]) -> str:
        """One of `choices`."""
        value = self._get(name, default)
        if value is None:
            raise StudioError(f"parameter '{name}' is missing; choose one of {', '.join(choices)}")
        if not isinstance(value, str) or value not in choices:
            raise StudioError(f"parameter '{name}' must be one of {', '.join(choices)}, got {_show(value)}")
        return value

    def str(self, name: str, default: str | None, max_len: int = 200) -> str | None:
        """Text of at most max_len characters, or the default."""
        value = self._get(name, default)
        if value is None:
            return None
        if not isinstance(value, str | int) or isinstance(value, bool) or len(str(value)) > max_len:
            raise StudioError(f"parameter '{name}' must be text of at most {max_len} characters, got {_show(value)}")
        return str(value)

    def done(self) -> None:
        """Refuse parameters nobody asked for (a typo would otherwise be silently ignored)."""
        unknown = sorted(set(self.values) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used)) or "none"
            raise StudioError(f"unknown parameter '{unknown[0][:40]}'; this request takes: {known}")


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_body(raw: bytes) -> dict[str, Any]:
    """A JSON object from a request body (empty = {}); anything else is a 400."""
    if len(raw) > MAX_BODY_BYTES:
        raise StudioError(f"request body is {len(raw)} bytes; at most {MAX_BODY_BYTES} are accepted", 413)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StudioError(
            f'request body is not valid JSON ({e.__class__.__name__}: {str(e)[:80]}); send an object such as {{"seed": 0}}'
        ) from None
    if not isinstance(body, dict):
        raise StudioError(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def servable_name(name: Any) -> bool:
    """Whether the studio can serve a run folder of this name (listed runs are exactly these)."""
    if not isinstance(name, str) or not _RUN_NAME.fullmatch(name):
        return False
    try:  # a name from a Windows zip may not be UTF-8 (JSON cannot carry it), and Linux allows 255 bytes, not characters
        return len(name.encode("utf-8")) <= 255
    except UnicodeEncodeError:
        return False


def run_path(root: Path, name: Any) -> Path:
    """The run folder `name` directly inside the runs folder `root`; names that could leave it are refused."""
    if not servable_name(name):
        raise StudioError(f"bad run name {_show(name)}: use a folder name from the runs list, such as 00000-fashion-mnist-dcgan")
    path = (root / name).resolve()
    if path.parent != root.resolve():  # a symlink pointing out of the runs folder
        raise StudioError(f"run {name!r} lies outside the runs folder", 403)
    if not is_run_dir(path):
        raise StudioError(f"no run named {name!r} in {root}; see the runs list", 404)
    return path


def run_file(run_dir: Path, sub: str, name: Any) -> Path:
    """A PNG file `name` inside `run_dir/sub`, by plain file name only."""
    if not isinstance(name, str) or not _FILE_NAME.match(name) or ".." in name:
        raise StudioError(f"bad file name {_show(name)}: ask for a .png from the run's list")
    path = (run_dir / sub / name).resolve()
    if path.parent != (run_dir / sub).resolve() or not path.is_file():
        raise StudioError(f"no file {name!r} in {run_dir.name}/{sub}", 404)
    return path
