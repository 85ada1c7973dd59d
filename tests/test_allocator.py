"""Host allocator settings: glibc keeps freed tensor memory for reuse, the opt-out and user settings are respected."""

import json
import os
import platform
import subprocess
import sys

import pytest

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")

# A step-like pattern: ten 2 MiB tensors, every page written, then all freed; minor page faults per cycle once warm.
PROGRAM = """
import json, resource, torch
from counterfeit.allocator import keep_freed_memory
done = keep_freed_memory()
def cycle():
    tensors = [torch.empty(512 * 1024).fill_(1.0) for _ in range(10)]
    del tensors
for _ in range(3):
    cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    cycle()
print(json.dumps({"done": done, "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20}))
"""


def run_program(**env: str) -> dict:
    """PROGRAM's result in a fresh process (the setting is process-wide) with `env` added."""
    clean = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "COUNTERFEIT_MALLOC")}
    out = subprocess.run([sys.executable, "-c", PROGRAM], env={**clean, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


@glibc_only
def test_freed_tensors_are_reused_without_page_faults():
    # The control pins glibc's mmap threshold at its 128 KiB default: as glibc comes, the threshold moves with the
    # blocks freed and where the heap may grow, so whether it faults varied from process to process (0 or about
    # 5,000 per cycle on one VM), while a pinned threshold faults every cycle.
    tuned, returned = run_program(), run_program(GLIBC_TUNABLES="glibc.malloc.mmap_threshold=131072")
    assert tuned["done"] is True and returned["done"] is False
    assert returned["faults"] > 100  # the pattern does fault where malloc hands freed blocks back to the OS
    assert tuned["faults"] < 1  # ...and keeps its pages mapped between cycles once tuned


@glibc_only
def test_the_opt_out_leaves_malloc_alone():
    assert run_program(COUNTERFEIT_MALLOC="system")["done"] is False


@glibc_only
def test_the_users_own_malloc_tunables_win():
    assert run_program(GLIBC_TUNABLES="glibc.malloc.trim_threshold=1000000")["done"] is False


def test_the_training_loop_sets_it(monkeypatch, tmp_path):
    from counterfeit import train as train_module
    from counterfeit.config import make_config
    from counterfeit.runs import create_run_dir

    calls = []
    monkeypatch.setattr(train_module, "keep_freed_memory", lambda: calls.append(1) or True)
    cfg = make_config(data="ring8", g_width=16, d_width=16, kimg=0.064, batch_size=32, eval_every_kimg=0, device="cpu")
    train_module.train(cfg, create_run_dir(cfg, tmp_path))
    assert calls == [1]
