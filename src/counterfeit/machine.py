"""What computer this is: for result records and benchmark tables, and what its CPU computes natively."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, or the platform's guess where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 dot products (AVX512-BF16 or AMX), where oneDNN's bf16 convolutions beat fp32."""
    # Without them autocast still works but emulates bf16, which was never measured to win, so auto keeps fp32 there.
    # The probes are private in torch 2.x, so a torch without them counts as no.
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
