"""Scratch loop of session 7 (RESULTS-toys.notes.md): one grid25 run with optional annealed instance noise, scored plain
and with discriminator rejection sampling at the 90th / 99th / 100th percentile.

    python benchmarks/toys/scratch_noise.py SEED SIGMA0 ANNEAL KIMG OUTDIR [KEY=VALUE ...]

SIGMA0: std of Gaussian noise added to every point D sees (reals and fakes, both steps) at the start, in the
standardised units of the mlp (grid spacing 0.5); it falls linearly to 0 over the first ANNEAL share of the run
(0 = off). KEY=VALUE: make_config options (e.g. g_width=400, z_dim=8, r1_gamma=0.1). One JSON line per run is printed
and appended to /tmp/exp/noise.jsonl.
"""

import ast
import json
import os
import sys
import time

import torch

import counterfeit.train as T
from counterfeit.config import make_config
from counterfeit.metrics.toy import toy_metrics
from counterfeit.runs import create_run_dir, load_run, load_slot
from counterfeit.sample import generate, rejection_sample

torch.set_num_threads(1)

seed, sigma0, anneal, kimg, out = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
extra = {k: ast.literal_eval(v) for k, v in (a.split("=", 1) for a in sys.argv[6:])}
state = {"sigma": sigma0}
orig = T.build_loss


def build(cfg):
    loss = orig(cfg)
    base = loss.augment

    def aug(x):
        x = base(x)
        s = state["sigma"]
        return x + s * torch.randn_like(x) if s > 0 else x

    loss.augment = aug
    return loss


T.build_loss = build


def on_step(cur, total):
    frac = cur / total
    state["sigma"] = sigma0 * max(0.0, 1 - frac / anneal) if anneal > 0 else sigma0


cfg = make_config(data="grid25", seed=seed, eval_every_kimg=0, kimg=kimg, **extra)
run_dir = create_run_dir(cfg, out)
t = time.process_time()
T.train(cfg, run_dir, T.Callbacks(on_step=on_step))
cpu = time.process_time() - t
run = load_run(run_dir)
pts = generate(run.G, None, 2500, seed=0)
m = toy_metrics(pts, "grid25")
rec = {
    "seed": seed,
    "sigma0": sigma0,
    "anneal": anneal,
    "kimg": kimg,
    "extra": extra,
    "cpu": round(cpu),
    "plain": [m["modes_covered"], m["high_quality_pct"]],
    "hist": m["mode_histogram"],
}
D = load_slot(run, "D")
for p in (90, 99, 100):
    kept, acc = rejection_sample(run.G, D, 2500, seed=0, percentile=p)
    md = toy_metrics(kept, "grid25")
    rec[f"drs{p}"] = [md["modes_covered"], md["high_quality_pct"], round(acc, 4), min(md["mode_histogram"])]
print(json.dumps(rec), flush=True)
os.makedirs("/tmp/exp", exist_ok=True)
with open("/tmp/exp/noise.jsonl", "a") as f:
    f.write(json.dumps(rec) + "\n")
