"""Scratch loop of session 8: a nearest-fake recall term (after IMLE, Li & Malik 2018) beside the GAN loss on grid25.

    python benchmarks/toys/scratch_recall.py SEED KIMG WEIGHT POOL OUTDIR [KEY=VALUE ...]

Each G step also draws POOL extra fakes and a batch of fresh reals; every real pulls its nearest fake (of the G batch
plus the pool) towards itself with WEIGHT * mean squared distance (data units). A mode that G starves then still gets
fakes pulled into it, because its reals always have some nearest fake. One JSON line per run, appended to
/tmp/exp/recall.jsonl.
"""

import ast
import json
import os
import sys
import time

import torch

import counterfeit.train as T
from counterfeit.config import make_config
from counterfeit.data.toys import load_toy
from counterfeit.metrics.toy import toy_metrics
from counterfeit.runs import create_run_dir, load_run, load_slot
from counterfeit.sample import generate, rejection_sample

torch.set_num_threads(1)
seed, kimg, weight, pool, out = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
extra = {k: ast.literal_eval(v) for k, v in (a.split("=", 1) for a in sys.argv[6:])}
reals = load_toy("grid25", 1_000_000, seed=7000 + seed).x  # (1e6, 2) fresh draws for the recall term
gen = torch.Generator().manual_seed(seed)


def g_step(G, D, opt_G, loss, z, labels=None, recall=None):  # this script's recall term stands in for the library's
    D.requires_grad_(False)
    try:
        fake = G(torch.cat([z, torch.randn(pool, z.shape[1])]) if pool else z)  # (B + P, 2)
        fake_logits = D(fake[: len(z)])  # (B,)
        loss_G = loss.g_loss(fake_logits)
        if weight > 0:
            xr = reals[torch.randint(len(reals), (len(z),), generator=gen)]  # (B, 2)
            nearest = torch.cdist(xr, fake).min(dim=1).values  # (B,)
            loss_G = loss_G + weight * nearest.pow(2).mean()
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()
    finally:
        D.requires_grad_(True)
    return loss_G.detach(), fake_logits.detach()


T.g_step = g_step
cfg = make_config(data="grid25", seed=seed, eval_every_kimg=0, kimg=kimg, **extra)
run_dir = create_run_dir(cfg, out)
t = time.process_time()
T.train(cfg, run_dir)
cpu = time.process_time() - t
run = load_run(run_dir)
m = toy_metrics(generate(run.G, None, 2500, seed=0), "grid25")
h = m["mode_histogram"]
rec = {"seed": seed, "kimg": kimg, "weight": weight, "pool": pool, "extra": extra, "cpu": round(cpu), "run": str(run_dir),
       "plain": [m["modes_covered"], round(m["high_quality_pct"], 2), min(h), sum(c < 20 for c in h)], "hist": h}  # fmt: skip
D = load_slot(run, "D")
for p in (90, 99, 100):
    kept, acc = rejection_sample(run.G, D, 2500, seed=0, percentile=p)
    md = toy_metrics(kept, "grid25")
    hd = md["mode_histogram"]
    rec[f"drs{p}"] = [md["modes_covered"], round(md["high_quality_pct"], 2), round(acc, 4), min(hd), sum(c < 20 for c in hd)]
print(json.dumps(rec), flush=True)
os.makedirs("/tmp/exp", exist_ok=True)
with open("/tmp/exp/recall.jsonl", "a") as f:
    f.write(json.dumps(rec) + "\n")
