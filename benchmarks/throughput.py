"""Training throughput (img/s) and FLOP efficiency against this machine's measured matmul peak.

    python benchmarks/throughput.py [--models dcgan,lecture] [--kimg-dcgan 20] [--kimg-lecture 1] [--set channels_last=false]
                                    [--device cpu|cuda] [--md benchmarks/RESULTS.md]

Each model trains with its default config (Fashion-MNIST, default batch size, `--set` overrides any
flat option) through the real training loop into a temporary run folder; the rate is taken from
the stats of the second half of the run, so start-up and compilation are excluded. FLOPs per
training image come from torch's FlopCounterMode over one real D step + G step (forward and
backward; 2 FLOPs per multiply-add). The matmul peak is the best of repeated square products (2048x2048 on a
CPU, 8192x8192 on a GPU) in the precision each run computes in (fp32 or bf16; dcgan's default `auto` is bf16 on a
CPU with native bfloat16; an fp32 run on a GPU is held to the TF32 peak, since cuDNN's convolutions compute in TF32
by default), measured before and after the training runs (the larger counts: the VM's speed drifts).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

try:
    import counterfeit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import append_row, machine_line, today  # noqa: E402

from counterfeit.config import ConfigError, make_config, option_type  # noqa: E402
from counterfeit.losses import build_loss  # noqa: E402
from counterfeit.models import build_models  # noqa: E402
from counterfeit.runs import create_run_dir, read_stats  # noqa: E402
from counterfeit.train import d_step, g_step, pick_device, pick_precision, train  # noqa: E402

HEADING = "## Training throughput and FLOP efficiency (issue 7)"
INTRO = [
    "`python benchmarks/throughput.py`: each model's default config through the real training loop (one D step",
    "and one G step on fresh fakes per batch), rate over the second half of the run. GFLOP/s = FLOPs per training",
    "image (torch FlopCounterMode over one D + G step, forward and backward) x img/s; peak = best square matmul (2048 on a",
    "CPU, 8192 on a GPU) on the same machine in the same run, in the precision the run computes in (the peak column names it;",
    "fp32 runs on a GPU against TF32's, as cuDNN's convolutions use TF32).",
]
HEADER = [
    "date",
    "model",
    "device",
    "batch",
    "options",
    "img/s",
    "MFLOP/img",
    "GFLOP/s",
    "matmul peak GFLOP/s",
    "of peak",
    "machine",
    "command",
]


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, tf32: bool = False) -> float:
    """Best square-matmul rate in `dtype` in GFLOP/s (`tf32`: fp32 products on a GPU's TF32 tensor cores).

    CPU: 2048x2048 products timed one by one for 3 s. CUDA: 8192x8192, 8 products between two synchronisations, for
    1 s: one 2048-sized bf16 product takes tens of microseconds on an H100, so launch and sync would dominate it and
    understate the peak (and so overstate every row's share of it).
    """
    cuda = device.type == "cuda"
    n, reps, seconds = (8192, 8, 1.0) if cuda else (2048, 1, 3.0)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    try:
        torch.mm(a, b)  # warm-up: the first product picks and loads its kernel
        best, t_end = 0.0, time.time() + seconds
        while time.time() < t_end:
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            if cuda:
                torch.cuda.synchronize()
            best = max(best, reps * 2 * n**3 / (time.perf_counter() - t))
    finally:
        torch.set_float32_matmul_precision(before)
    return best / 1e9


def yardstick(precision: str, device: torch.device) -> str:
    """The peak a run is held to: its own precision, but TF32 for fp32 on a GPU whose cuDNN convolutions use TF32."""
    conv_tf32 = bool(getattr(torch.backends.cudnn, "allow_tf32", False))  # torch's default: True
    return "tf32" if precision == "fp32" and device.type == "cuda" and conv_tf32 else precision


def flops_per_image(cfg, device: torch.device) -> float:
    """FLOPs of one training iteration (D step + G step, forward and backward) divided by the batch size."""
    torch.manual_seed(0)
    G, D = (m.to(device).train() for m in build_models(cfg))
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    loss = build_loss(cfg.loss)
    B, c, r = cfg.loop.batch_size, cfg.data.channels, cfg.data.resolution
    real = torch.rand(B, c, r, r, device=device)  # (B, C, H, W); values do not change the count
    labels = torch.randint(max(cfg.model.num_classes, 1), (B,), device=device) if cfg.model.num_classes else None  # (B,)
    with FlopCounterMode(display=False) as counter:
        d_step(G, D, opt_D, loss, real, torch.randn(B, G.z_dim, device=device), labels, labels)
        g_step(G, D, opt_G, loss, torch.randn(B, G.z_dim, device=device), labels)
    return counter.get_total_flops() / B


def measure(model: str, kimg: float, device: str, overrides: dict) -> dict:
    """Train `model` for `kimg` and return the steady-state img/s and the config used."""
    cfg = make_config(model=model, kimg=kimg, tick_kimg=kimg / 4, sample_kimg=kimg, snapshot_kimg=kimg, eval_every_kimg=0,
                      device=device, **overrides)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        run = create_run_dir(cfg, tmp)
        train(cfg, run)
        rows = read_stats(run)
    half = len(rows) // 2
    nimg = (rows[-1]["kimg"] - rows[half - 1]["kimg"]) * 1000
    return {"cfg": cfg, "img_s": nimg / (rows[-1]["seconds"] - rows[half - 1]["seconds"])}


def parse_set(items: list[str]) -> dict:
    """KEY=VALUE flat config options, typed like the config field (booleans: true/false)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        kind = option_type(key)
        if kind is bool and value.lower() not in ("true", "false"):
            raise SystemExit(f"--set {item}: {key} takes true or false")
        out[key] = value.lower() == "true" if kind is bool else kind(value)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="dcgan,lecture")
    p.add_argument("--kimg-dcgan", type=float, default=20.0)
    p.add_argument("--kimg-lecture", type=float, default=1.0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config option for every model, e.g. batch_size=256")
    p.add_argument("--device", default="cpu")
    p.add_argument("--md", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = p.parse_args()
    command = shlex.join(["python", "benchmarks/throughput.py", *sys.argv[1:]])
    overrides = parse_set(args.set)
    if "kimg" in overrides:  # each model's length is its own option: --set kimg would clash with it
        raise SystemExit("--set: kimg is set per model; use --kimg-dcgan and --kimg-lecture")
    device = pick_device(args.device)
    # bf16 runs are held to the bf16 matmul peak: against fp32's they would look up to several times better than they are.
    # On a GPU, fp32 runs' convolutions compute in TF32 (cuDNN's default), so they are held to the TF32 peak.
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "tf32": torch.float32}
    models = args.models.split(",")
    try:
        precisions = {m: pick_precision(make_config(model=m, **overrides).loop.precision, device) for m in models}  # auto resolved
    except ConfigError as e:  # a bad --set fails here in one line, before any measuring
        raise SystemExit(f"--set: {e}") from None
    # fp32's peak is always measured: the issue's yardstick, printed beside a bf16 run's own.
    sticks = {m: yardstick(p, device) for m, p in precisions.items()}
    peaks = {p: matmul_peak(device, dtypes[p], tf32=p == "tf32") for p in sorted(set(sticks.values()) | {"fp32"})}
    results = []
    for model in models:
        r = measure(model, getattr(args, f"kimg_{model}", 5.0), args.device, overrides)
        r["flops"] = flops_per_image(r["cfg"], device)
        results.append((model, r))
        print(f"{model}: {r['img_s']:.0f} img/s, {r['flops'] / 1e6:.1f} MFLOP/img, {r['img_s'] * r['flops'] / 1e9:.1f} GFLOP/s", flush=True)
    for p in peaks:
        peaks[p] = max(peaks[p], matmul_peak(device, dtypes[p], tf32=p == "tf32"))
        print(f"{p} matmul peak {peaks[p]:.1f} GFLOP/s")
    for model, r in results:
        L, precision, stick = r["cfg"].loop, precisions[model], sticks[model]
        peak = peaks[stick]
        gflops = r["img_s"] * r["flops"] / 1e9
        print(f"{model}: {100 * gflops / peak:.0f} % of the {stick} peak, {100 * gflops / peaks['fp32']:.0f} % of the fp32 peak")
        options = f"channels_last={L.channels_last}, compile={L.compile}, precision={precision}" + "".join(
            f", {k}={v}" for k, v in overrides.items() if k not in ("channels_last", "compile", "precision")
        )
        row = [today(), model, args.device, str(L.batch_size), options, f"{r['img_s']:.0f}", f"{r['flops'] / 1e6:.1f}", f"{gflops:.1f}",
               f"{peak:.1f} ({stick})", f"{100 * gflops / peak:.0f} %", machine_line(args.device), f"`{command}`"]  # fmt: skip
        append_row(args.md, HEADING, INTRO, HEADER, row)


if __name__ == "__main__":
    main()
