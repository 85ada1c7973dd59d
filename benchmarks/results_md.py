"""Append result rows to a table under a section of benchmarks/RESULTS.md, making the section on first use."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine_line(device: str = "cpu") -> str:
    """The machine, thread count and versions a row was measured with."""
    import counterfeit
    from counterfeit.machine import cpu_name

    where = torch.cuda.get_device_name() if device.startswith("cuda") else f"{cpu_name()}, {torch.get_num_threads()} threads"
    return f"{where}, torch {torch.__version__}, Python {platform.python_version()}, counterfeit {counterfeit.__version__}"


def today() -> str:
    """The date for a result row."""
    return time.strftime("%Y-%m-%d")


def append_row(md: Path, heading: str, intro: list[str], header: list[str], row: list[str]) -> None:
    """Add `row` at the end of the table under `heading` (a '## ...' line), wherever it sits in the file."""
    lines = md.read_text().splitlines() if md.exists() else ["# Benchmark results"]
    if heading not in lines:
        lines += ["", heading, "", *intro, *([""] if intro else []), "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    at = lines.index(heading)
    while at + 1 < len(lines) and (not lines[at].startswith("|") or lines[at + 1].startswith("|")):
        at += 1
    lines.insert(at + 1, "| " + " | ".join(row) + " |")
    md.write_text("\n".join(lines) + "\n")


def append_block(md: Path, heading: str, intro: list[str], block: list[str]) -> None:
    """Add `block` (lines) at the end of the section under `heading`, before the next '## ' section."""
    lines = md.read_text().splitlines() if md.exists() else ["# Benchmark results"]
    if heading not in lines:
        lines += ["", heading, "", *intro]
    at = lines.index(heading) + 1
    while at < len(lines) and not lines[at].startswith("## "):
        at += 1
    while lines[at - 1] == "":
        at -= 1
    lines[at:at] = ["", *block]
    md.write_text("\n".join(lines) + "\n")
