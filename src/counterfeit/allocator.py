"""Host memory allocator settings: keep glibc's malloc from handing each step's freed tensors back to the OS.

A CPU training step allocates and frees the same tensors every time (activations, gradients, the kernels' outputs,
hundreds of kilobytes to megabytes each). glibc serves blocks of 128 KiB and more with a fresh mmap, and gives them
back with munmap, or trims the heap's free top, as soon as they are freed. So the next step touches fresh pages,
and each first touch is a page fault in the kernel, a cost that grows with the batch (RESULTS.md, speed A/B of single
options: allocator). Raising the two thresholds lets freed blocks be reused from the heap, the effect PyTorch's CPU
tuning guide gets from swapping in jemalloc or tcmalloc, without a library to install.
`COUNTERFEIT_MALLOC=system` in the environment leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import os
import platform

# glibc's mallopt parameters (malloc.h) and the values set: the largest mmap threshold glibc accepts on 64-bit
# (blocks up to 32 MiB, e.g. a (1024, 32, 14, 14) fp32 activation, come from the heap) and a trim threshold that keeps
# a step's worth of freed memory at the heap's top instead of returning it and faulting it back in.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc malloc's mmap and trim thresholds once per process; True where they are now set, False where not."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("COUNTERFEIT_MALLOC", "") == "system":
        return False  # the opt-out, and the A/B's baseline (benchmarks/ab_speed.py --option allocator)
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc." in tunables or "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False  # the user chose their own malloc settings: theirs win
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        return False  # jemalloc or tcmalloc preloaded: glibc's malloc is not the one serving tensors
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False  # macOS, Windows, musl: other allocators, other knobs
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; order matters little, both only change where future blocks come from.
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _done
