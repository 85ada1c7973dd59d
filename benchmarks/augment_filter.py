"""Issue 5: does filtering a cdcgan's fakes with its own discriminator raise the fakes-only classification accuracy?

    python benchmarks/augment_filter.py RUN_DIR MODE [MODE ...]      MODE: plain | head | drs

plain: 60,000 balanced fakes (noise seed 0), as `counterfeit augment-eval` draws them. head: candidates are kept only
where D's AC class head (trained on reals during GAN training) agrees with the class G was asked for. drs: conditional
discriminator rejection sampling, keep with probability min(1, exp(logit - M_c)), M_c the 90th percentile of the
first candidates' logits of class c. Both fill 6,000 per class. The classifier and recipe are augment-eval's
(fit_classifier, 2 epochs, batch 256, seed 0); prints real-test accuracy, per-class recall and where real shirts go.
"""

import sys
import time
from pathlib import Path

import torch

try:
    import counterfeit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from counterfeit.data import load_dataset
from counterfeit.evaluator import fit_classifier, predict
from counterfeit.runs import load_run, load_slot
from counterfeit.sample import generate

run_dir = sys.argv[1]
test = load_dataset("fashion-mnist", "test", 28, 1, None)
run = load_run(run_dir)
D = load_slot(run, "D").eval()
PER = 6000
MAX_DRAWN = 100 * 10 * PER  # give up when under 1 % of candidates is kept


def candidates(seed: int, n: int = 20000) -> tuple[torch.Tensor, torch.Tensor]:
    """n balanced fakes (uint8) and the labels G was asked for."""
    labels = torch.arange(n) % 10  # (n,)
    return generate(run.G, run.spec.pixel_range, n, seed, "cpu", labels), labels


def judge(x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D's logit (n,) and class-head logits (n, C) for uint8 fakes."""
    xs = x.float() / 127.5 - 1  # (n, 1, 28, 28) back in G's [-1, 1]
    with torch.inference_mode():
        outs = [D(xs[i : i + 2000], labels[i : i + 2000], with_classes=True) for i in range(0, len(xs), 2000)]
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def build(mode: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(fakes, labels, share of candidates kept) for one mode."""
    if mode == "plain":
        x, labels = candidates(0, 60000)
        return x, labels, 1.0
    kept, counts, drawn, seed, M = [[] for _ in range(10)], [0] * 10, 0, 0, None
    coins = torch.Generator().manual_seed(1)
    while min(counts) < PER:
        x, y = candidates(seed)
        seed, drawn = seed + 1, drawn + len(x)
        logit, classes = judge(x, y)
        if mode == "head":
            keep = classes[:, :10].argmax(1) == y  # (n,) the AC head agrees with the request
        else:
            if M is None:
                M = torch.stack([torch.quantile(logit[y == c], 0.9) for c in range(10)])  # (10,)
            keep = torch.rand(len(x), generator=coins) < (logit - M[y]).exp().clamp(max=1)  # (n,)
        for c in range(10):
            sel = x[keep & (y == c)]
            kept[c].append(sel)
            counts[c] += len(sel)
        if drawn >= MAX_DRAWN and min(counts) < PER:  # a class the filter (almost) never keeps would loop forever
            starved = [c for c in range(10) if counts[c] < PER]
            raise SystemExit(f"{mode}: after {drawn:,} candidates, classes {starved} kept fewer than {PER:,}; is the class head trained?")
    xs = torch.cat([torch.cat(k)[:PER] for k in kept])  # (60000, 1, 28, 28)
    return xs, torch.arange(10).repeat_interleave(PER), 10 * PER / drawn


for mode in sys.argv[2:]:
    t = time.time()
    x, y, share = build(mode)
    ev = fit_classifier(x, y, 10, 2.0, 0, 256)
    pred = predict(ev, test.x)[0].argmax(1)
    acc = (pred == test.labels).double().mean().item()
    per = [round((pred[test.labels == c] == c).double().mean().item(), 2) for c in range(10)]
    shirts = torch.bincount(pred[test.labels == 6], minlength=10).tolist()
    print(f"{mode}: acc {acc:.4f} kept {share:.3f} per-class {per} ({time.time() - t:.0f} s)")
    print("real shirts predicted as:", shirts, flush=True)
