"""Configuration search helper for benchmarks/toys.py: one run per (dataset, options, seed), scored at every checkpoint.

    python benchmarks/toys/explore.py DATASET KIMG SEED[,SEED..] [KEY=VALUE ...]

e.g. `python benchmarks/toys/explore.py grid25 200 0,1 batch_size=512 lr_g=5e-4 lr_d=5e-4`. Options are make_config's
flat names; values are parsed as Python literals when they can be. Prints one line per checkpoint (EMA G, 2,500
samples, seed 0): modes covered, % high quality, reverse KL, and the run's CPU seconds.
"""

from __future__ import annotations

import ast
import logging
import sys
import tempfile
import time

import torch

from counterfeit.checkpoints import list_checkpoints, read_checkpoint
from counterfeit.config import make_config
from counterfeit.data.toys import toy_modes
from counterfeit.metrics.toy import toy_metrics
from counterfeit.runs import create_run_dir, load_run
from counterfeit.sample import generate
from counterfeit.train import train


def _value(s: str):
    try:
        return ast.literal_eval(s)
    except (ValueError, SyntaxError):
        return s


def main() -> None:
    ds, kimg, seeds, *kv = sys.argv[1:]
    opts = {k: _value(v) for k, v in (a.split("=", 1) for a in kv)}
    opts.setdefault("snapshot_kimg", float(kimg) / 4)
    logging.getLogger("counterfeit").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    for seed in map(int, seeds.split(",")):
        cfg = make_config(data=ds, kimg=float(kimg), seed=seed, eval_every_kimg=0, keep_checkpoints=100, **opts)
        with tempfile.TemporaryDirectory() as d:
            run_dir = create_run_dir(cfg, d)
            t = time.process_time()
            train(cfg, run_dir)
            cpu = time.process_time() - t
            for ck in list_checkpoints(run_dir):
                x = generate(load_run(run_dir, checkpoint=ck).G, None, 2500, seed=0)  # (2500, 2)
                m = toy_metrics(x, ds)
                centres, sigma = toy_modes(ds)
                d = torch.cdist(x.double(), centres.double()).min(dim=1).values / sigma  # nearest-mode distance in sigmas
                q = [f"{v:.1f}" for v in torch.quantile(d, torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)).tolist()]
                k = read_checkpoint(ck, prefixes=())[1]["cur_nimg"] / 1000
                print(
                    f"{ds} {kv} seed {seed} @{k:.0f}kimg: {m['modes_covered']}/{m['modes_total']} "
                    f"hq {m['high_quality_pct']:.1f}% rkl {'n/a' if m['reverse_kl'] is None else format(m['reverse_kl'], '.3f')} d50/90/99 {'/'.join(q)} sigma  ({cpu:.0f} cpu-s)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
