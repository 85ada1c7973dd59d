"""Exploration loop for the toys (benchmarks/toys/RESULTS-toys.notes.md, session-4 table): plain PyTorch, one thread.

    python benchmarks/toys/scratch_loop.py DATASET SEEDS STEPS [key=value ...]
    e.g. python benchmarks/toys/scratch_loop.py grid25 0 16000 zd=8 dw=400

Keys: bs, gw (G width), dw (D width), zd (z dim), lr, decay (share of steps with linear decay to 0), scale
(1 = D sees x / std(data) and G's output is scaled back), pack, lrd (D's lr multiplier). Scores 2,500 samples
of G (eval mode) with toy_metrics at each quarter of the run.
"""

import sys
import time
from pathlib import Path

import torch

try:
    import counterfeit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
import torch.nn.functional as F
from torch import nn

from counterfeit.data.toys import load_toy
from counterfeit.metrics.toy import toy_metrics

torch.set_num_threads(1)


def mlp(d_in, w, depth, d_out, bn, act):
    L = []
    for i in range(depth):
        L += [nn.Linear(d_in if i == 0 else w, w)] + ([nn.BatchNorm1d(w)] if bn else []) + [act()]
    return nn.Sequential(*L, nn.Linear(w, d_out))


def run(ds, seed, steps, bs=64, gw=128, dw=200, zd=2, lr=1e-3, decay=0.3, scale=True, ema_hl=0, pack=1, lrd=1.0):
    torch.manual_seed(seed)
    data = load_toy(ds, 100_000, seed=seed).x
    s = data.std() if scale else torch.tensor(1.0)
    G = mlp(zd, gw, 4, 2, True, nn.ReLU)
    D0 = mlp(2 * pack, dw, 3, 1, False, lambda: nn.LeakyReLU(0.2))
    oG = torch.optim.Adam(G.parameters(), lr, betas=(0.5, 0.999))
    oD = torch.optim.Adam(D0.parameters(), lr * lrd, betas=(0.5, 0.999))
    D = lambda x: D0(x.reshape(-1, 2 * pack))
    lam = lambda t: 1.0 if t < (1 - decay) * steps else max(0.0, (steps - t) / (decay * steps))
    sG = torch.optim.lr_scheduler.LambdaLR(oG, lam)
    sD = torch.optim.lr_scheduler.LambdaLR(oD, lam)
    t0 = time.time()
    out = []
    for t in range(steps):
        real = data[torch.randint(len(data), (bs,))] / s
        with torch.no_grad():
            fake = G(torch.randn(bs, zd))
        lD = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
        oD.zero_grad()
        lD.backward()
        oD.step()
        D0.requires_grad_(False)
        lG = F.softplus(-D(G(torch.randn(bs, zd)))).mean()
        oG.zero_grad()
        lG.backward()
        oG.step()
        D0.requires_grad_(True)
        sG.step()
        sD.step()
        if (t + 1) % (steps // 4) == 0:
            G.eval()
            with torch.no_grad():
                x = G(torch.randn(2500, zd, generator=torch.Generator().manual_seed(0))) * s
            G.train()
            m = toy_metrics(x, ds)
            out.append(f"{t + 1}: {m['modes_covered']}/{m['modes_total']} {m['high_quality_pct']:.1f}%")
    return out, time.time() - t0


if __name__ == "__main__":
    ds, seeds, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    kw = {
        k: type(v)(x) if not isinstance(v, bool) else x == "1"
        for k, x in (a.split("=") for a in sys.argv[4:])
        for v in [dict(bs=64, gw=128, dw=200, zd=2, lr=1e-3, decay=0.3, scale=True, ema_hl=0, pack=1, lrd=1.0)[k]]
    }
    for seed in map(int, seeds.split(",")):
        out, sec = run(ds, seed, steps, **kw)
        print(ds, seed, kw, " | ".join(out), f"({sec:.0f} s)", flush=True)
