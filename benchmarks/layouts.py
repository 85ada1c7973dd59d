"""Interleaved A/B of the memory layout through one training step: NCHW, mixed (NHWC weights only), one NHWC layout.

    python benchmarks/layouts.py [--model dcgan] [--batch-size 64] [--steps 100] [--rounds 16] [--warmup 5]
                                 [--md benchmarks/RESULTS.md]

`nchw`: the plain layout. `mixed`: what `--channels-last` did before 2026-12-03, `model.to(memory_format=channels_last)`
alone: G's first feature map (a view of a Linear's output) and D's flattened head gradient stay NCHW, so the layers
next to them mix layouts, which CPU kernels run on a slow strided path. `one`: `to_channels_last` + `flat_linear`,
the layout kept NHWC from G's first map to D's head. Each arm runs the real D step, G step and EMA update on random
uint8 images; the arms take turns (rounds) so the VM's drift hits them alike. Appends one block to RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    import counterfeit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_speed import HEADING, INTRO  # noqa: E402
from results_md import append_block, machine_line, today  # noqa: E402

from counterfeit.config import make_config  # noqa: E402
from counterfeit.losses import build_loss  # noqa: E402
from counterfeit.models import MODELS, build_models, cdcgan, dcgan  # noqa: E402
from counterfeit.models.layers import flat_linear, to_channels_last  # noqa: E402
from counterfeit.sample import from_uint8  # noqa: E402
from counterfeit.train import d_step, ema_update, g_step  # noqa: E402

ARMS = ("nchw", "mixed", "one")


def plain_flatten(head: torch.nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """The head as it was before flat_linear: flatten (a copy for an NHWC h) and hand back an NCHW gradient."""
    return head(h.flatten(1))


def make_arm(cfg, arm: str) -> dict:
    """Models, optimisers and EMA copy laid out as `arm` says, from the same seed."""
    torch.manual_seed(0)
    G, D = build_models(cfg)
    if arm == "one":
        G, D = to_channels_last(G), to_channels_last(D)
    elif arm == "mixed":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    adam = dict(betas=(cfg.optim.beta1, cfg.optim.beta2), foreach=True)
    return dict(G=G, D=D, G_ema=copy.deepcopy(G).eval().requires_grad_(False), arm=arm,
                opt_G=torch.optim.Adam(G.parameters(), lr=cfg.optim.lr_g, **adam),
                opt_D=torch.optim.Adam(D.parameters(), lr=cfg.optim.lr_d, **adam))  # fmt: skip


def step(s: dict, x: torch.Tensor, loss, batch_size: int, cond: bool, pixel_range) -> None:
    """One D step, one G step and the EMA update, as the training loop runs them."""
    # The old head only for the mixed arm: flat_linear picks its path from the layout, so the others are unaffected.
    dcgan.flat_linear = cdcgan.flat_linear = plain_flatten if s["arm"] == "mixed" else flat_linear
    idx = torch.randint(0, x.shape[0], (batch_size,))  # (B,)
    y = torch.randint(10, (batch_size,)) if cond else None  # (B,)
    z_dim = s["G"].z_dim
    d_step(s["G"], s["D"], s["opt_D"], loss, from_uint8(x[idx], pixel_range), torch.randn(batch_size, z_dim), y, y)
    g_step(s["G"], s["D"], s["opt_G"], loss, torch.randn(batch_size, z_dim), y)
    ema_update(s["G_ema"], s["G"], 0.99)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="dcgan", choices=["dcgan", "cdcgan", "lecture"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=100, help="training steps per arm per round")
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per arm per round (allocator and kernel caches)")
    p.add_argument("--md", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = p.parse_args()
    cfg = make_config(model=args.model, device="cpu", **({"num_classes": 10} if args.model == "cdcgan" else {}))
    cond = args.model == "cdcgan"
    loss = build_loss(cfg.loss)
    pixel_range = MODELS[args.model].pixel_range
    x = torch.randint(0, 256, (60_000, 1, 28, 28), dtype=torch.uint8)  # (N, 1, 28, 28): speed only, so noise will do
    arms = {a: make_arm(cfg, a) for a in ARMS}
    rates: dict[str, list[float]] = {a: [] for a in ARMS}
    for r in range(args.rounds):
        for a in ARMS:
            for _ in range(args.warmup):
                step(arms[a], x, loss, args.batch_size, cond, pixel_range)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(arms[a], x, loss, args.batch_size, cond, pixel_range)
            rates[a].append(args.batch_size * args.steps / (time.perf_counter() - t0))
        print(f"round {r + 1}: " + ", ".join(f"{a} {rates[a][-1]:.0f}" for a in ARMS), flush=True)
    one_vs_mixed = statistics.median(o / m for o, m in zip(rates["one"], rates["mixed"]))
    cmd = "python benchmarks/layouts.py " + shlex.join(sys.argv[1:])
    block = [
        f"### {today()}: {args.model}, memory layout nchw / mixed / one (batch {args.batch_size})",
        "",
        f"`{cmd.strip()}`; {machine_line()}; {args.rounds} rounds of {args.steps} steps per arm (D step + G step + EMA)",
        "",
        "| layout | median img/s | range of rounds | rounds |",
        "|---|---|---|---|",
        *[f"| {a} | {statistics.median(v):.1f} | {min(v):.1f}-{max(v):.1f} | {len(v)} |" for a, v in rates.items()],
        "",
        f"Median over rounds of one/mixed: {one_vs_mixed:.3f}.",
    ]
    print("\n".join(block))
    append_block(args.md, HEADING, INTRO, block)


if __name__ == "__main__":
    main()
