"""Scratch loop of the session-5/6 toy search (benchmarks/toys/RESULTS-toys.notes.md): plain PyTorch, one thread.

    python benchmarks/toys/scratch_loop2.py [key=value ...]
    e.g. python benchmarks/toys/scratch_loop2.py ds=grid25 zd=2 gw=128 steps=16000 diag=1

Points are standardised (D sees x / std(data); G's output is multiplied back). Keys: ds, seed, steps (G steps),
bs, gw/gd (G width/depth), dw/dd (D), zd (z dim), K (> 0: z's first coordinate picks one of K one-hot codes through
the normal CDF, a mixture latent), lr, lrd (D's lr multiplier), b1, b2, decay (share of steps with a linear lr decay
to 0), loss (ns | wgangp), gp, nc (D steps per G step), r1, evals (scores during the run), dump (save the last
samples), diag (1: nearest-mode distance percentiles in sigmas with BN in eval and train mode, and discriminator
rejection sampling at several percentiles of 100,000 candidates' logits), ft/ftlr (D fine-tuning steps on the final
G before rejection sampling). Scores 2,500 samples of the raw G (eval mode) with toy_metrics: "steps:modes/HQ%/rKL".
"""

import math  # noqa: F401
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the session-4 loop beside this file, for its MLP builder
from scratch_loop import load_toy, mlp, toy_metrics  # noqa: E402  (it also puts src/ on the path and sets 1 thread)


class G(nn.Module):
    def __init__(s, zd, K, gw, gd):
        super().__init__()
        s.K = K
        s.zd = zd
        s.net = mlp((K + zd - 1) if K else zd, gw, gd, 2, True, nn.ReLU)

    def forward(s, z):
        if s.K:
            u = torch.special.ndtr(z[:, 0]) * s.K
            c = u.long().clamp_(0, s.K - 1)
            z = torch.cat([F.one_hot(c, s.K).float(), z[:, 1:]], 1)
        return s.net(z)


P = dict(
    ds="grid25",
    seed=0,
    steps=4000,
    bs=64,
    gw=400,
    gd=4,
    dw=200,
    dd=3,
    zd=3,
    K=0,
    lr=1e-4,
    lrd=1.0,
    b1=0.5,
    b2=0.999,
    decay=0.3,
    loss="ns",
    gp=1.0,
    nc=1,
    r1=0.0,
    evals=4,
    dump="",
    diag=0,
    ft=0,
    ftlr=1e-4,
)
for a in sys.argv[1:]:
    k, v = a.split("=")
    P[k] = type(P[k])(v)
torch.manual_seed(P["seed"])
ds = P["ds"]
data = load_toy(ds, 100_000, seed=P["seed"]).x
s = data.std()
g = G(
    P["zd"],
    P["K"],
    P["gw"],
    P["gd"],
)
D = mlp(2, P["dw"], P["dd"], 1, False, lambda: nn.LeakyReLU(0.2))
oG = torch.optim.Adam(g.parameters(), P["lr"], betas=(P["b1"], P["b2"]))
oD = torch.optim.Adam(D.parameters(), P["lr"] * P["lrd"], betas=(P["b1"], P["b2"]))
steps, dec = P["steps"], P["decay"]
lam = lambda t: 1.0 if t < (1 - dec) * steps else max(0.0, (steps - t) / (dec * steps))
sG = torch.optim.lr_scheduler.LambdaLR(oG, lam)
sD = torch.optim.lr_scheduler.LambdaLR(oD, lam)
bs, zd = P["bs"], P["zd"]
t0 = time.time()
out = []
for t in range(steps):
    for _ in range(P["nc"]):
        real = data[torch.randint(len(data), (bs,))] / s
        with torch.no_grad():
            fake = g(torch.randn(bs, zd))
        if P["r1"] > 0:
            real.requires_grad_(True)
        dr, df = D(real), D(fake)
        if P["loss"] == "ns":
            lD = F.softplus(-dr).mean() + F.softplus(df).mean()
        else:
            lD = df.mean() - dr.mean()
            e = torch.rand(bs, 1)
            xi = (e * real.detach() + (1 - e) * fake).requires_grad_(True)
            (gr,) = torch.autograd.grad(D(xi).sum(), xi, create_graph=True)
            lD = lD + P["gp"] * ((gr.norm(dim=1) - 1) ** 2).mean()
        if P["r1"] > 0:
            (gr,) = torch.autograd.grad(dr.sum(), real, create_graph=True)
            lD = lD + P["r1"] / 2 * gr.pow(2).sum(1).mean()
        oD.zero_grad()
        lD.backward()
        oD.step()
    D.requires_grad_(False)
    df = D(g(torch.randn(bs, zd)))
    lG = F.softplus(-df).mean() if P["loss"] == "ns" else -df.mean()
    oG.zero_grad()
    lG.backward()
    oG.step()
    D.requires_grad_(True)
    sG.step()
    sD.step()
    if (t + 1) % (steps // P["evals"]) == 0:
        g.eval()
        with torch.no_grad():
            x = g(torch.randn(2500, zd, generator=torch.Generator().manual_seed(0))) * s
        g.train()
        m = toy_metrics(x, ds)
        out.append(f"{t + 1}:{m['modes_covered']}/{m['high_quality_pct']:.1f}/{m['reverse_kl']:.3f}")
        if P["dump"]:
            torch.save(x, P["dump"])
args = " ".join(f"{k}={v}" for k, v in P.items() if k not in ("evals", "dump", "diag"))
if P["diag"]:
    from counterfeit.data.toys import toy_modes

    c, sig = toy_modes(ds)
    zz = torch.randn(2500, zd, generator=torch.Generator().manual_seed(0))
    for mode in ("eval", "train"):
        g.train(mode == "train")
        with torch.no_grad():
            x = g(zz) * s
        d = torch.cdist(x.double(), c.double()).min(1).values / sig
        q = torch.quantile(d, torch.tensor([0.25, 0.5, 0.75, 0.9, 0.95], dtype=torch.double))
        m = toy_metrics(x, ds)
        out.append(f"[{mode}: {m['modes_covered']}/{m['high_quality_pct']:.1f} d25..95 " + " ".join(f"{v:.1f}" for v in q.tolist()) + "]")
if P["diag"]:
    g.eval()
    oF = torch.optim.Adam(D.parameters(), P["ftlr"], betas=(0.5, 0.999))
    for _ in range(P["ft"]):
        real = data[torch.randint(len(data), (bs,))] / s
        with torch.no_grad():
            fake = g(torch.randn(bs, zd))
        lD = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
        oF.zero_grad()
        lD.backward()
        oF.step()
    with torch.no_grad():
        x = g(torch.randn(100000, zd, generator=torch.Generator().manual_seed(1)))
        l = D(x).squeeze(1)
    for pct in (50, 90, 99, 100):
        q = torch.quantile(l[:50000], pct / 100) if pct < 100 else l.max()
        keep = torch.rand(len(l), generator=torch.Generator().manual_seed(2)) < (l - q).exp().clamp(max=1)
        xa = x[keep][:2500] * s
        m = toy_metrics(xa, ds)
        out.append(f"drs{pct}: {m['modes_covered']}/{m['high_quality_pct']:.1f} acc {keep.float().mean():.3f} rkl {m['reverse_kl']:.3f}")
print(args, "|", " ".join(out), f"({time.time() - t0:.0f}s)", flush=True)
