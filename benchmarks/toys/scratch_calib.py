"""Scratch loop of session 8: does fine-tuning D against the final EMA generator make DRS cover every grid25 mode?

    python benchmarks/toys/scratch_calib.py train SEED KIMG OUTDIR      # train and keep the run folder
    python benchmarks/toys/scratch_calib.py eval RUN_DIR [RUN_DIR ...]  # score plain, DRS and calibrated DRS

DRS as trained uses the D of the last training step, which was trained against the raw G (not the EMA G that is
sampled) and is mid-game. Calibration trains a copy of D with the logistic loss on fresh reals vs fresh EMA fakes,
G frozen, so its logit approaches log p_data / p_EMA-G. One JSON line per run dir and variant.
"""

import copy
import json
import sys
import time

import torch
import torch.nn.functional as F

from counterfeit.config import make_config
from counterfeit.data.toys import load_toy
from counterfeit.metrics.toy import toy_metrics
from counterfeit.runs import create_run_dir, load_run, load_slot
from counterfeit.sample import NoiseStream, generate, rejection_sample, sample
from counterfeit.train import train

torch.set_num_threads(1)


def calibrate(G, D, dataset, steps, batch, lr, seed=0):
    """A copy of D trained with G frozen: BCE on reals (1) vs EMA fakes (0)."""
    D = copy.deepcopy(D).train().requires_grad_(True)
    reals = load_toy(dataset, 200_000, seed=1000 + seed).x  # (200000, 2), a fresh draw
    opt = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(seed)
    noise = NoiseStream(G.z_dim, 10_000 + seed)
    for _ in range(steps):
        xr = reals[torch.randint(len(reals), (batch,), generator=g)]
        xf = sample(G, noise.take(batch)).clone()  # out of inference mode
        lr_, lf = D(xr), D(xf)
        loss = F.softplus(-lr_).mean() + F.softplus(lf).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return D.eval()


def drs_big(G, D, n, seed, percentile, batch=100_000, max_draws=2000):
    """DRS with M from a large first batch (so rare, high-logit modes enter the percentile)."""
    noise, coins = NoiseStream(G.z_dim, seed), torch.Generator().manual_seed(seed + 1)
    kept, drawn, acc, M = [], 0, 0, None
    with torch.inference_mode():
        while acc < n:
            if drawn >= max_draws * n:
                break
            x = sample(G, noise.take(batch))
            lg = D(x).float().reshape(-1)
            if M is None:
                M = torch.quantile(lg[:16_000_000], percentile / 100).item() if percentile < 100 else lg.max().item()
            keep = torch.rand(batch, generator=coins) < (lg - M).exp().clamp(max=1)
            kept.append(x[keep])
            drawn, acc = drawn + batch, acc + int(keep.sum())
    return torch.cat(kept)[:n], acc / drawn


def summary(pts, name, extra):
    m = toy_metrics(pts, "grid25")
    return {"variant": name, "modes": m["modes_covered"], "hq": round(m["high_quality_pct"], 2),
            "min_mode": min(m["mode_histogram"]), "hist": m["mode_histogram"], **extra}  # fmt: skip


if sys.argv[1] == "train":
    seed, kimg, out = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    cfg = make_config(data="grid25", seed=seed, eval_every_kimg=0, kimg=kimg)
    run_dir = create_run_dir(cfg, out)
    t = time.time()
    train(cfg, run_dir)
    print(run_dir, round(time.time() - t), flush=True)
else:
    variants = [a for a in sys.argv[2:] if "=" in a]
    for run_dir in [a for a in sys.argv[2:] if "=" not in a]:
        run = load_run(run_dir)
        D = load_slot(run, "D")
        res = [summary(generate(run.G, None, 2500, seed=0), "plain", {})]
        kept, a = rejection_sample(run.G, D, 2500, seed=0, percentile=99)
        res.append(summary(kept, "drs99", {"acc": round(a, 4)}))
        for v in variants or ["steps=2000,batch=512,lr=1e-4,pct=100"]:
            kw = dict(x.split("=") for x in v.split(","))
            t = time.time()
            Dc = calibrate(run.G, D, "grid25", int(kw["steps"]), int(kw["batch"]), float(kw["lr"]))
            kept, a = drs_big(run.G, Dc, 2500, 0, float(kw["pct"]))
            res.append(summary(kept, v, {"acc": round(a, 5), "s": round(time.time() - t, 1)}))
        for r in res:
            r["run"] = run_dir
            print(json.dumps(r), flush=True)
