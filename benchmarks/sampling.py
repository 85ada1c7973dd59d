"""Sampling 10,000 images to a folder of PNGs, and FID on 10,000, with the CLI as a user runs it.

    python benchmarks/sampling.py RUN_DIR [--n 10000] [--md benchmarks/RESULTS.md]

Each command runs as its own process, so the wall-clock includes Python start-up, imports and
loading the checkpoint, as a user sees it:

    counterfeit sample RUN_DIR -n N --format folder --out TMP/pngs
    counterfeit eval RUN_DIR --metrics fid --n N           (N fresh fakes vs the 10,000 test images)
    counterfeit eval --fakes TMP/pngs --reals fashion-mnist:test --metrics fid    (reading the PNGs back)
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import append_row, machine_line, today  # noqa: E402

HEADING = "## Sampling and FID on CPU (issue 7)"
INTRO = ["`python benchmarks/sampling.py RUN_DIR`: wall-clock of each CLI command as its own process (start-up, imports and",
         "checkpoint loading included). Goal: 10,000 PNGs in under 10 s."]  # fmt: skip
HEADER = ["date", "what", "n", "wall s", "machine", "command"]


def timed(cmd: list[str]) -> float:
    """Run a command and return its wall-clock seconds; stop with its output when it fails."""
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--md", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = p.parse_args()
    command = shlex.join(["python", "benchmarks/sampling.py", *sys.argv[1:]])
    cf = [sys.executable, "-m", "counterfeit"]
    with tempfile.TemporaryDirectory() as tmp:
        pngs = Path(tmp) / "pngs"
        steps = [
            (f"`counterfeit sample RUN -n {args.n} --format folder`", [*cf, "sample", args.run_dir, "-n", str(args.n), "--format", "folder",
                                                                      "--out", str(pngs)]),
            (f"`counterfeit eval RUN --metrics fid --n {args.n}`", [*cf, "eval", args.run_dir, "--metrics", "fid", "--n", str(args.n)]),
            ("`counterfeit eval --fakes PNG_FOLDER --reals fashion-mnist:test --metrics fid`",
             [*cf, "eval", "--fakes", str(pngs), "--reals", "fashion-mnist:test", "--metrics", "fid"]),
        ]  # fmt: skip
        for what, cmd in steps:
            seconds = timed(cmd)
            if what.startswith("`counterfeit sample"):
                written = len(list(pngs.glob("*.png")))
                if written != args.n:
                    raise SystemExit(f"expected {args.n} PNGs in {pngs}, found {written}")
            print(f"{what}: {seconds:.1f} s", flush=True)
            append_row(args.md, HEADING, INTRO, HEADER, [today(), what, str(args.n), f"{seconds:.1f}", machine_line(), f"`{command}`"])


if __name__ == "__main__":
    main()
