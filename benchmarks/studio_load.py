"""Load test of Counterfeit Studio: concurrent Generate requests on loopback, latency percentiles.

    python benchmarks/studio_load.py RUNS_DIR RUN [--concurrent 20] [--rounds 3] [--n 64] [--md benchmarks/RESULTS.md]

Starts `counterfeit studio --runs RUNS_DIR --port 0` as its own process, makes one warm-up request (it loads
the model), then fires `--concurrent` GET /api/generate requests at once (each a PNG grid of `--n` images,
every request another seed), `--rounds` times. Reports p50/p95/max latency over all requests, the wall time
per round and whether every answer was a 200 PNG; appends a line with machine, command and date to RESULTS.md.
A benchmark, not a test: nothing is asserted about the times.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import counterfeit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from results_md import append_row, today  # noqa: E402

from counterfeit.machine import cpu_name  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
HEADING = "## Studio load test (issue 6)"
INTRO = ["`benchmarks/studio_load.py`: concurrent GET /api/generate (PNG grid) against `counterfeit studio` on",
         "loopback, after one warm-up request that loads the model."]  # fmt: skip
HEADER = ["date", "load", "p50", "p95", "max", "wall per round", "200 PNG", "warm-up", "machine", "command"]


def start_studio(runs_dir: str) -> tuple[subprocess.Popen, str]:
    """The studio on a free loopback port, and its URL once it listens."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen([sys.executable, "-m", "counterfeit", "studio", "--runs", runs_dir, "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    for line in proc.stderr:
        if m := re.search(r"on (http://\S+/)", line):
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining, so the pipe never fills
            return proc, m.group(1)
    raise SystemExit(f"the studio did not start (exit code {proc.wait()})")


def fetch(url: str) -> tuple[float, int, bool]:
    """(seconds, status, whether the body is a PNG) of one GET."""
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=300) as r:
            body, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    return time.perf_counter() - t, status, body.startswith(b"\x89PNG")


def percentile(xs: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1] if len(xs) > 1 else xs[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs_dir")
    p.add_argument("run")
    p.add_argument("--concurrent", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--n", type=int, default=64, help="images per request")
    p.add_argument("--md", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = p.parse_args()
    command = shlex.join(["python", "benchmarks/studio_load.py", *sys.argv[1:]])
    proc, base = start_studio(args.runs_dir)
    try:
        url = f"{base}api/generate?run={args.run}&n={args.n}&seed="
        warm, status, png = fetch(url + "0")
        if status != 200 or not png:
            raise SystemExit(f"warm-up request failed with HTTP {status}")
        latencies, walls, ok = [], [], 0
        with ThreadPoolExecutor(args.concurrent) as pool:
            for r in range(args.rounds):
                t = time.perf_counter()
                results = list(pool.map(fetch, [url + str(1 + r * args.concurrent + i) for i in range(args.concurrent)]))
                walls.append(time.perf_counter() - t)
                latencies += [s for s, _, _ in results]
                ok += sum(st == 200 and png for _, st, png in results)
    finally:
        proc.terminate()
        proc.wait(10)
    total = args.rounds * args.concurrent
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    row = [today(), f"{args.concurrent} concurrent x {args.rounds} rounds, {args.n} images each", f"{p50 * 1000:.0f} ms",
           f"{p95 * 1000:.0f} ms", f"{max(latencies) * 1000:.0f} ms", f"{statistics.mean(walls):.2f} s", f"{ok}/{total}",
           f"{warm * 1000:.0f} ms", f"{cpu_name()}, {os.cpu_count()} cores", f"`{command}`"]  # fmt: skip
    print(f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; {ok}/{total} OK; "
          f"wall per round {statistics.mean(walls):.2f} s; warm-up (model load) {warm * 1000:.0f} ms")  # fmt: skip
    append_row(args.md, HEADING, INTRO, HEADER, row)


if __name__ == "__main__":
    main()
