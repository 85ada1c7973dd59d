"""Interleaved A/B of the lecture model's layer forms through one training step: as written before 2026-12-05, and now.

    python benchmarks/lecture_layers.py [--rounds 4] [--steps 3] [--md benchmarks/RESULTS.md]

`padded`: every Keras 'same' conv as ZeroPad2d + Conv2d, and torch's nn.Dropout (its mask from bernoulli_). `now`: the
odd (5x5) 'same' convs pad inside the convolution, and D's dropout draws its mask from uniform noise
(`counterfeit.models.lecture.Dropout`). Both compute the same function with the same parameters. Each arm runs the
real D step and G step (channels_last, fused Adam) on one batch of 64 random images; the arms take turns (rounds) so the
VM's drift hits them alike. Appends one block to RESULTS.md.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

try:
    import counterfeit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_speed import HEADING, INTRO  # noqa: E402
from results_md import append_block, machine_line, today  # noqa: E402

from counterfeit.config import make_config  # noqa: E402
from counterfeit.losses import build_loss  # noqa: E402
from counterfeit.models import build_models  # noqa: E402
from counterfeit.models.layers import to_channels_last  # noqa: E402
from counterfeit.models.lecture import Dropout  # noqa: E402
from counterfeit.train import d_step, g_step  # noqa: E402

ARMS = ("padded", "now")


def as_before(G: nn.Module, D: nn.Module) -> None:
    """Put back the earlier forms in place: explicit zero padding before each odd 'same' conv, and nn.Dropout."""
    for seq in G.modules():
        if isinstance(seq, nn.Sequential) and len(seq) == 2 and isinstance(seq[0], nn.Identity):
            p = seq[1].padding[0]
            seq[0], seq[1].padding = nn.ZeroPad2d((p, p, p, p)), (0, 0)
    for i, m in enumerate(D.net):
        if isinstance(m, Dropout):
            D.net[i] = nn.Dropout(m.p)


def make_arm(cfg, arm: str) -> dict:
    """Models and optimisers of one arm, from the same seed."""
    torch.manual_seed(0)
    G, D = build_models(cfg)
    if arm == "padded":
        as_before(G, D)
    G, D = to_channels_last(G.train()), to_channels_last(D.train())
    adam = dict(betas=(cfg.optim.beta1, cfg.optim.beta2), fused=True)
    return dict(G=G, D=D, opt_G=torch.optim.Adam(G.parameters(), lr=cfg.optim.lr_g, **adam),
                opt_D=torch.optim.Adam(D.parameters(), lr=cfg.optim.lr_d, **adam))  # fmt: skip


def steps(a: dict, loss, real: torch.Tensor, n: int) -> float:
    """img/s of n D + G steps."""
    t = time.perf_counter()
    for _ in range(n):
        d_step(a["G"], a["D"], a["opt_D"], loss, real, torch.randn(real.shape[0], a["G"].z_dim))
        g_step(a["G"], a["D"], a["opt_G"], loss, torch.randn(real.shape[0], a["G"].z_dim))
    return n * real.shape[0] / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--md", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = p.parse_args()
    command = shlex.join(["python", "benchmarks/lecture_layers.py", *sys.argv[1:]])
    cfg = make_config(model="lecture")
    loss = build_loss(cfg.loss)
    real = torch.rand(cfg.loop.batch_size, 1, 28, 28).contiguous(memory_format=torch.channels_last)  # (B, 1, 28, 28)
    arms = {arm: make_arm(cfg, arm) for arm in ARMS}
    with torch.no_grad():  # the two forms are one function: same fakes from the same weights
        z = torch.randn(4, cfg.model.z_dim)
        assert torch.allclose(arms["padded"]["G"](z), arms["now"]["G"](z), atol=1e-5)
    rates: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for r in range(args.rounds):
        for arm, a in arms.items():
            steps(a, loss, real, 1)  # warm-up, out of the clock
            rates[arm].append(steps(a, loss, real, args.steps))
        print(f"round {r + 1}: " + ", ".join(f"{arm} {rates[arm][-1]:.1f} img/s" for arm in ARMS), flush=True)
    block = [f"### {today()}: lecture, layer forms = {','.join(ARMS)}", "", f"`{command}`; {machine_line()}", "",
             "| arm | median img/s | range over rounds | rounds |", "|---|---|---|---|"]  # fmt: skip
    for arm in ARMS:
        v = rates[arm]
        block.append(f"| {arm} | {statistics.median(v):.1f} | {min(v):.1f}-{max(v):.1f} | {len(v)} |")
    print("\n".join(block))
    append_block(args.md, HEADING, INTRO, block)


if __name__ == "__main__":
    main()
