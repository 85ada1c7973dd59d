"""The classifier-on-fakes variants of issue 5 (RESULTS.md, "Put the fakes to work"): one seed each.

    python benchmarks/augment_variants.py RUN_DIR:PSI:EMA:EPOCHS[:AUG] [...]

PSI scales the noise (1 = the prior), EMA is 1 for the EMA generator and 0 for the raw one, EPOCHS the classifier's,
AUG 1 trains the classifier with random 2-pixel shifts and left-right flips (evaluator.shift_and_flip; default 0).
RUN_DIR "real" trains on the 60,000 real training images instead (the baseline of the same recipe).
60,000 balanced fakes (noise seed 0) labelled with the class asked for; the same classifier and recipe as
`counterfeit augment-eval` (fit_classifier, batch 256, seed 0); prints real-test accuracy and per-class recall.
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
from counterfeit.runs import load_run
from counterfeit.sample import generate

test = load_dataset("fashion-mnist", "test", 28, 1, None)


def cas(run_dir, psi=1.0, ema=True, epochs=2.0, n=60000, seed=0, augment=False):
    if run_dir == "real":
        train = load_dataset("fashion-mnist", "train", 28, 1, None)
        x, labels = train.x, train.labels
    else:
        run = load_run(run_dir, ema=ema)
        labels = torch.arange(n) % 10
        x = generate(run.G, run.spec.pixel_range, n, 0, "cpu", labels, truncation=psi)
    ev = fit_classifier(x, labels, 10, epochs, seed, 256, augment=augment)
    pred = predict(ev, test.x)[0].argmax(1)
    acc = (pred == test.labels).double().mean().item()
    per = [round((pred[test.labels == c] == c).double().mean().item(), 2) for c in range(10)]
    return acc, per


for spec in sys.argv[1:]:
    run_dir, psi, ema, epochs, *aug = spec.split(":")
    t = time.time()
    acc, per = cas(run_dir, float(psi), ema == "1", float(epochs), augment=aug == ["1"])
    print(f"{spec}: {acc:.4f} per-class {per} ({time.time() - t:.0f} s)", flush=True)
