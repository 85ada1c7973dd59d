"""Time to quality: wall-clock until the domain FID reaches fixed levels, counterfeit's default vs the classic tutorial loop.

    python benchmarks/time_to_quality.py [--ref-minutes 10] [--ours-minutes 4] [--refs tutorial,tutorial-tuned,classic]
                                         [--set KEY=VALUE ...] [--eval-every-s 60] [--n 5000] [--md benchmarks/RESULTS.md]

One process, one machine, one after the other:
- `tutorial`: TensorFlow's DCGAN tutorial in PyTorch (benchmarks/reference_tutorial.py) as published
  (Adam 1e-4); `tutorial-tuned`: the same loop with the DCGAN paper's Adam (2e-4, beta1 0.5).
  Each trains for --ref-minutes of training time and is judged every --eval-every-s with the clock paused.
- `classic`: a plain, well-tuned small DCGAN: the DCGAN paper's widths (64) and Adam (2e-4, beta1 0.5, beta2 0.999)
  in fp32 in counterfeit's own training loop, for --ref-minutes (not capped at the default's kimg), judged like `counterfeit`;
  a `--set seed=N` seeds it too, so each seed is a fair pair.
- `counterfeit`: `counterfeit train` with the default config (its own monitor, grids and checkpoints
  included in its clock; --set changes flat options), stopped after --ours-minutes; a checkpoint every
  10 kimg is judged afterwards at the training seconds it records.
Judging: --n samples (seed 0; counterfeit's EMA generator, the tutorial's G in eval mode) against the
10,000 test images in the feature space of the project's Fashion-MNIST evaluator (as benchmarks/quality.py).
A run at another size (`--set resolution=64 channels=3` trains on Fashion-MNIST upsampled to 64x64 colour) is
judged on its fakes turned grey and resized to 28x28, so a setting can be checked on the deeper 64x64 model.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import counterfeit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from judge import judge  # noqa: E402
from reference_tutorial import NOISE_DIM, train_tutorial  # noqa: E402
from results_md import append_block, machine_line, today  # noqa: E402
from throughput import parse_set  # noqa: E402

from counterfeit.checkpoints import list_checkpoints  # noqa: E402
from counterfeit.config import ConfigError, make_config  # noqa: E402
from counterfeit.evaluator import load_evaluator, load_split, predict  # noqa: E402
from counterfeit.runs import create_run_dir, load_run  # noqa: E402
from counterfeit.sample import generate, make_noise, to_uint8  # noqa: E402
from counterfeit.train import Callbacks, train  # noqa: E402

LEVELS = (100, 50, 30, 20, 15, 12, 10, 9)
REFS = {"tutorial": dict(lr=1e-4, betas=(0.9, 0.999)), "tutorial-tuned": dict(lr=2e-4, betas=(0.5, 0.999))}
# DCGAN (Radford et al. 2016) at 28x28: its binary cross-entropy (non-saturating for G), in plain fp32 at a constant
# learning rate (dcgan's own defaults are the hinge loss, precision auto, bf16 on some CPUs, and a ramp-down over the
# last half of the run)
CLASSIC = dict(g_width=64, d_width=64, lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999, precision="fp32", lr_rampdown=0.0, loss="ns")
HEADING = "## Time to quality: the default vs the classic tutorial loop (issue 7)"
INTRO = [
    "`python benchmarks/time_to_quality.py`: training seconds until the domain FID (evaluator features, n fakes vs the",
    "10,000 test images) first reaches each level, all contestants in one process on the same machine, one after the",
    "other. `tutorial` = TensorFlow's DCGAN tutorial in PyTorch (per-item Dataset + DataLoader, BCE, `.item()` every step,",
    "Adam 1e-4, batch 256); `tutorial-tuned` = the same with Adam 2e-4, beta1 0.5; `classic` = the DCGAN paper's widths",
    "(64) and Adam (2e-4, beta1 0.5) in counterfeit's loop; `counterfeit` = `counterfeit train` with the default config",
    "(plus any `--set`). A dash: not reached in the time given.",
]


def curve_of_tutorial(name: str, images, seconds: float, every_s: float, n: int, ev, real_feats) -> list[dict]:
    """Train the reference loop and return its judged points [{s, kimg, fid, classes}]."""
    z = make_noise(n, NOISE_DIM, seed=0)  # (n, 100)
    points = []

    def on_eval(G, train_s: float, seen: int) -> None:
        fakes = to_uint8(torch.cat([G(zb) for zb in z.split(1000)]), (-1.0, 1.0))  # (n, 1, 28, 28) uint8
        r = judge(ev, fakes, real_feats)
        points.append({"s": train_s, "kimg": seen / 1000, "fid": r["fid"], "classes": r["classes_covered"]})
        print(f"{name}: {train_s:6.0f} s {seen / 1000:7.1f} kimg  FID {r['fid']:7.2f}  classes {r['classes_covered']}/10", flush=True)

    train_tutorial(images[:, 0].numpy(), seconds, on_eval, every_s, **REFS[name])
    return points


def curve_of_counterfeit(name: str, options: dict, seconds: float, n: int, ev, real_feats) -> list[dict]:
    """Train the default config with `options` for `seconds` of wall-clock, then judge every checkpoint at its training seconds."""
    cfg = make_config(**{**options, "snapshot_kimg": 10, "keep_checkpoints": 10_000, "device": "cpu"})
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = create_run_dir(cfg, tmp)
        t0 = time.time()
        train(cfg, run_dir, Callbacks(should_stop=lambda: time.time() - t0 > seconds))
        for ckpt in list_checkpoints(run_dir):
            run = load_run(run_dir, checkpoint=ckpt)
            state = run.state
            r = judge(ev, as_judged(generate(run.G, run.spec.pixel_range, n, seed=0)), real_feats)
            points.append({"s": state["seconds"], "kimg": state["cur_nimg"] / 1000, "fid": r["fid"], "classes": r["classes_covered"]})
            print(f"{name}: {state['seconds']:6.0f} s {state['cur_nimg'] / 1000:7.1f} kimg  FID {r['fid']:7.2f}  "
                  f"classes {r['classes_covered']}/10", flush=True)  # fmt: skip
    return points


def as_judged(images: torch.Tensor) -> torch.Tensor:
    """uint8 fakes (n, C, R, R) as the evaluator sees Fashion-MNIST: grey 28x28 (channel mean, antialiased resize)."""
    if images.shape[1:] == (1, 28, 28):
        return images
    x = images.float().mean(1, keepdim=True)  # (n, 1, R, R)
    x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)  # (n, 1, 28, 28)
    return x.round().clamp(0, 255).to(torch.uint8)


def first_reach(points: list[dict], level: float) -> str:
    """Training seconds of the first judged point at or below `level`, or a dash."""
    hit = next((p for p in points if p["fid"] <= level), None)
    return f"{hit['s']:.0f} s ({hit['kimg']:.0f} kimg)" if hit else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref-minutes", type=float, default=10.0)
    p.add_argument("--ours-minutes", type=float, default=4.0)
    p.add_argument("--refs", default="tutorial,tutorial-tuned,classic")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="flat options for counterfeit's run")
    p.add_argument("--eval-every-s", type=float, default=60.0)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--md", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = p.parse_args()
    unknown = [name for name in filter(None, args.refs.split(",")) if name != "classic" and name not in REFS]
    if unknown:
        p.error(f"--refs: unknown reference {', '.join(unknown)}; choose from {', '.join([*REFS, 'classic'])}, or '' for none")
    try:
        options = parse_set(args.set)
        make_config(**options)  # a bad --set fails here, not after minutes of training
    except (ConfigError, ValueError) as e:
        p.error(f"--set: {e}")
    command = shlex.join(["python", "benchmarks/time_to_quality.py", *sys.argv[1:]])
    ev = load_evaluator()
    test = load_split("fashion-mnist", "test")[0]  # (10000, 1, 28, 28) uint8
    with torch.no_grad():
        real_feats = predict(ev, test)[1]  # (10000, 128)
    train_images = load_split("fashion-mnist", "train")[0]  # (60000, 1, 28, 28) uint8
    curves = {"counterfeit": curve_of_counterfeit("counterfeit", options, args.ours_minutes * 60, args.n, ev, real_feats)}
    for name in filter(None, args.refs.split(",")):  # --refs "": counterfeit alone, e.g. to try a --set
        if name == "classic":
            # Stopped by the clock alone: at the default's 600 kimg a fast machine would end it before --ref-minutes.
            classic = {**CLASSIC, "kimg": 100_000, **({"seed": options["seed"]} if "seed" in options else {})}
            curves[name] = curve_of_counterfeit(name, classic, args.ref_minutes * 60, args.n, ev, real_feats)
        else:
            curves[name] = curve_of_tutorial(name, train_images, args.ref_minutes * 60, args.eval_every_s, args.n, ev, real_feats)

    refs = [name for name in curves if name != "counterfeit"]
    best_ref = min(refs, key=lambda name: curves[name][-1]["fid"]) if refs else None
    target = curves[best_ref][-1] if refs else None
    block = [f"### {today()}, {machine_line()}", "", f"`{command}`; n = {args.n}", "",
             "| FID level | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves)]  # fmt: skip
    for level in [*LEVELS, *([target["fid"]] if target else [])]:
        label = f"{level:g}" if level in LEVELS else f"**{level:.2f}** = {best_ref} after {target['s']:.0f} s"
        block.append(f"| {label} | " + " | ".join(first_reach(c, level) for c in curves.values()) + " |")
    block += ["", "Judged points (training seconds: FID):", ""]
    block += [f"- {name}: " + ", ".join(f"{q['s']:.0f} s: {q['fid']:.1f}" for q in points) for name, points in curves.items()]
    append_block(args.md, HEADING, INTRO, block)
    if target:
        print(f"best reference: {best_ref}, FID {target['fid']:.2f} after {target['s']:.0f} s; counterfeit reached it at "
              f"{first_reach(curves['counterfeit'], target['fid'])}")  # fmt: skip


if __name__ == "__main__":
    main()
