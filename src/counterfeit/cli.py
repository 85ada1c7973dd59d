"""Command line: a thin layer over the library (`counterfeit train | sample | runs | eval | report | interpolate | studio | export | ...`)."""

from __future__ import annotations

import argparse
import codecs
import logging
import math
import os
import shlex
import signal
import sys
from pathlib import Path

from . import __version__
from .fileio import shell_word

EXAMPLES = {
    "train": """examples:
  counterfeit train                                   # DCGAN on Fashion-MNIST, the default run
  counterfeit train --kimg 60 --seed 1                # a shorter run (one epoch = 60 kimg)
  counterfeit train --model lecture                   # the lecture's Keras GAN, layer for layer
  counterfeit train --data ~/pictures/pets --resolution 64 --channels 3
  counterfeit train --data ring8                      # 2-D toy (picks --model mlp)
  counterfeit train --model vae                       # variational autoencoder (also ae, dae)
  counterfeit train --model vae --exclude-class Bag   # leave a class out, then: counterfeit eval RUN --anomaly
  counterfeit train --resume runs/00003-fashion-mnist-dcgan
  torchrun --standalone --nproc_per_node=2 -m counterfeit train --batch-size 128   # 2 GPUs (or CPU processes), one run""",
    "sample": """examples:
  counterfeit sample runs/00000-fashion-mnist-dcgan                       # 64-image grid PNG
  counterfeit sample runs/00000-fashion-mnist-dcgan -n 10000 --format npz --out fakes.npz
  counterfeit sample runs/00000-fashion-mnist-dcgan -n 100 --format folder --out fakes/
  counterfeit sample runs/00001-fashion-mnist-cdcgan --class "Ankle boot"       # conditional: one class""",
    "runs": """examples:
  counterfeit runs            # the runs under ./runs
  counterfeit runs /data/my-runs""",
    "eval": """examples:
  counterfeit eval runs/00000-fashion-mnist-dcgan                          # FID, KID, precision/recall, class coverage
  counterfeit eval runs/00000-fashion-mnist-dcgan --metrics fid,coverage,memorisation --n 5000
  counterfeit eval --fakes fakes.npz --reals fashion-mnist:test           # any .npz or folder of images
  counterfeit eval runs/00001-ring8-mlp                                    # 2-D toys: modes covered, % high quality
  counterfeit eval runs/00001-ring8-mlp --drs 90                           # the same, of what D's rejection sampling keeps
  counterfeit eval runs/00002-fashion-mnist-vae --anomaly                  # AUROC at finding the --exclude-class class""",
    "report": """examples:
  counterfeit report runs/00000-fashion-mnist-dcgan       # writes RUN/report.html and RUN/report/*.png""",
    "export-onnx": """examples:
  counterfeit export-onnx runs/00000-fashion-mnist-dcgan --out g.onnx     # inputs: z (N, z_dim); output: images (N, C, H, W)
  counterfeit export-onnx runs/00001-fashion-mnist-cdcgan --out cg.onnx   # conditional: inputs z and labels (N,) int64
  counterfeit export-onnx runs/00002-ring8-mlp --out toy.onnx              # a 2-D toy: output points (N, 2)""",
    "evaluator": """examples:
  counterfeit evaluator train                             # retrain the shipped Fashion-MNIST judge (~15 min on 2 cores)
  counterfeit evaluator train --dataset mnist             # the MNIST judge (needs the MNIST files or internet)
  counterfeit evaluator show                              # accuracy, sha256 and the command that made the weights""",
    "export": """examples:
  counterfeit export runs/00001-fashion-mnist-cdcgan --n 10000 --out synth/       # class folders, labels.csv, .npz, idx .gz
  counterfeit export runs/00001-fashion-mnist-cdcgan --n 600 --class Bag --class "Ankle boot" --out bags/
  counterfeit export runs/00000-fashion-mnist-dcgan --n 10000 --out synth/ --force # unconditional: the evaluator labels""",
    "augment-eval": """examples:
  counterfeit augment-eval runs/00001-fashion-mnist-cdcgan                  # real, real + 10,000 fakes, fakes; 3 seeds
  counterfeit augment-eval runs/00001-fashion-mnist-cdcgan --n-fakes 60000 --settings real,fakes --seeds 1
  counterfeit augment-eval runs/00001-fashion-mnist-cdcgan --n-real 10000 --epochs 1 --seeds 2   # a quick look""",
    "interpolate": """examples:
  counterfeit interpolate runs/00000-fashion-mnist-dcgan --from 3 --to 7                  # seed 3 to seed 7 (image 0 of each)
  counterfeit interpolate runs/00000-fashion-mnist-dcgan --from Sneaker --to "Ankle boot" --rows 4
  counterfeit interpolate runs/00000-fashion-mnist-dcgan --from shoe.png --to class:9 --mode lerp
  counterfeit interpolate runs/00000-fashion-mnist-dcgan --from proj.npz#0 --to proj.npz#1   # latents from `project`
  counterfeit interpolate runs/00001-fashion-mnist-cdcgan --from Trouser --to Dress --rows 6  # label code moves, z stays""",
    "arithmetic": """examples:
  counterfeit arithmetic runs/00000-fashion-mnist-dcgan "Sneaker - Sandal + Ankle boot"
  counterfeit arithmetic runs/00000-fashion-mnist-dcgan "0.5*Pullover + 0.5*Trouser" --rows 6
  counterfeit arithmetic runs/00000-fashion-mnist-dcgan "[12,40,77] - class:0 + proj.npz#0"
  counterfeit arithmetic runs/00001-fashion-mnist-cdcgan "Sneaker - Sandal + Ankle boot"   # in the label-code space""",
    "project": """examples:
  counterfeit project runs/00000-fashion-mnist-dcgan shoe.png coat.png --out proj.npz      # then --from proj.npz#0
  counterfeit project runs/00000-fashion-mnist-dcgan fashion-mnist:test:0 fashion-mnist:test:1
  counterfeit project runs/00002-fashion-mnist-vae fashion-mnist:test:0 --steps 0          # the encoder alone""",
    "studio": """examples:
  counterfeit studio                                      # http://127.0.0.1:8765/ over ./runs
  counterfeit studio --runs /data/my-runs --port 9000
  counterfeit studio --port 0                             # any free port (printed)""",
}


_LAUNCHER_PID = os.getppid()  # at import, before a launcher could die unseen (distributed.follow_launcher)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the usage block it prints by default buries the line that says what is wrong."""

    def error(self, message: str):
        """Print `<prog>: error: <message>` and where help is, then exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown option names the command's help and the option it may be a typo of."""
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            import difflib

            commands = next((a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)), {})
            parser = commands.get(getattr(ns, "command", None), self)
            options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
            flag = next((e.split("=")[0] for e in extras if e.startswith("--")), None)
            # Without the '--' all options share: with it, '--gpu' matched '--out' and '--rows' '--drs'.
            close = difflib.get_close_matches(flag[2:], [o[2:] for o in options], n=1) if flag else []
            hint = f"; did you mean --{close[0]}?" if close else ""
            split = _split_name(list(sys.argv[1:] if args is None else args), extras)
            if split:  # --to Ankle boot: the shell split a name at its space
                hint = f"; a name with a space goes in quotes: {split}"
            parser.exit(2, f"{parser.prog}: error: unrecognized arguments: {' '.join(extras)}{hint} (see '{parser.prog} --help')\n")
        return ns


def _split_name(argv: list[str], extras: list[str]) -> str:
    """'--to "Ankle boot"' where the first stray word follows an option's value (the shell split it), else ''.

    A stray word after the command or a positional ('counterfeit train ring8') is no split name: it was told to quote.
    """
    word = extras[0]
    if word.startswith("-") or word not in argv:
        return ""
    i = argv.index(word)
    if i >= 1 and argv[i - 1].startswith("--") and "=" in argv[i - 1]:  # --to=Ankle boot
        flag, first = argv[i - 1].split("=", 1)
    elif i >= 2 and argv[i - 2].startswith("-") and not argv[i - 1].startswith("-"):
        flag, first = argv[i - 2], argv[i - 1]
    else:
        return ""
    words = [first]
    for w in argv[i:]:  # the rest of the split name: the stray words that follow it
        if w.startswith("-") or w not in extras:
            break
        words.append(w)
    return f'{flag} "{" ".join(words)}"'


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = _Parser(prog="counterfeit", description="Teach a machine to forge images.", formatter_class=fmt,
                                epilog="run 'counterfeit COMMAND --help' for examples")  # fmt: skip
    p.add_argument("--version", action="version", version=f"counterfeit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    _train_parser(sub, fmt)
    _reading_parsers(sub, fmt)
    _export_parsers(sub, fmt)
    _latent_parsers(sub, fmt)

    st = sub.add_parser("studio", help="the web app: watch runs, generate, explore the latent space, play the 2D game",
                        epilog=EXAMPLES["studio"], formatter_class=fmt)  # fmt: skip
    st.add_argument("--runs", default="runs", help="the runs folder to show and train into (default: runs)")
    st.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    st.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    return p


def _train_parser(sub, fmt) -> None:
    """train: every option of a run's config, each left None unless given, so the model family's defaults hold."""
    from .losses import LOSSES
    from .models import MODELS

    t = sub.add_parser("train", help="train a GAN or an autoencoder (or resume one)",
                       description="Train a GAN (D and G take turns) or an autoencoder (--model ae, dae, vae).",
                       epilog=EXAMPLES["train"], formatter_class=fmt)  # fmt: skip
    t.add_argument("--data", help="fashion-mnist (default) | mnist | ring8 | grid25 | ducks-cows | a folder of images")
    t.add_argument("--model", choices=list(MODELS), help="model family (default dcgan; mlp for 2-D toys; ae, dae, vae: autoencoders)")
    t.add_argument(
        "--loss",
        choices=list(LOSSES),
        help="hinge (dcgan's default) | ns: non-saturating cross-entropy (the other GANs' default) | minimax: the original game | "
        "lsgan: least squares | wgan-gp: Wasserstein + gradient penalty",
    )
    t.add_argument("--gp-weight", type=float, help="wgan-gp's gradient-penalty weight lambda (default 10)")
    t.add_argument("--ac-weight", type=float, help="conditional models: weight of the auxiliary-classifier (AC-GAN) term (0 = off)")
    t.add_argument("--twin-ac", action=argparse.BooleanOptionalAction,
                   help="TAC-GAN twin class head: keeps --ac-weight from thinning out where classes overlap (off)")  # fmt: skip
    t.add_argument("--ms-weight", type=float, help="mode-seeking term (MSGAN): pairs of fakes from different noise must differ (0 = off)")
    t.add_argument("--recall-weight", type=float,
                   help="nearest-fake recall term (IMLE-style): each real pulls its nearest fake, so G cannot drop a mode (0 = off)")  # fmt: skip
    t.add_argument("--recall-pool", type=int, help="extra fakes per G step for --recall-weight to choose from (default 256)")
    t.add_argument("--r1-gamma", type=float, help="R1 penalty weight gamma on D's gradient at reals, with any loss (default 0 = off)")
    t.add_argument("--diffaug", help="DiffAugment policy for small image sets: a comma list of color, translation, cutout (default off)")
    t.add_argument("--beta", type=float, help="vae: weight of the KL term (default 1; beta-VAE above 1)")
    t.add_argument("--noise-std", type=float, help="dae: std of the Gaussian pixel noise in [-1, 1] units (default 0.3)")
    t.add_argument("--exclude-class", help="leave this class (name or index) out of training, for counterfeit eval RUN --anomaly")
    t.add_argument(
        "--kimg",
        type=float,
        help="training length in thousands of real images, or points for a 2-D toy (default 600 for dcgan: 2.3-9 minutes on 2 CPU "
        "cores; 512 for mlp; 420 for the others)",
    )
    t.add_argument("--epochs", type=float, help="training length in passes over the data (instead of --kimg)")
    t.add_argument("--batch-size", type=int, help="real images (or toy points) per step (default 64)")
    t.add_argument("--seed", type=int, help="seed of the weights, the data order and the noise (default 0)")
    t.add_argument("--out", help="folder for new run folders (default: runs)")
    t.add_argument("--data-dir", help="where the Fashion-MNIST/MNIST idx files are (searched first)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its newest checkpoint")
    t.add_argument("--resolution", type=int, help="image side in pixels (28; 32/64/128 for dcgan)")
    t.add_argument("--channels", type=int, choices=[1, 3], help="1 = grey, 3 = RGB")
    t.add_argument("--z-dim", type=int, help="noise vector length")
    t.add_argument("--g-width", type=int, help="channels of G's finest hidden layer")
    t.add_argument("--d-width", type=int, help="channels of D's first layer")
    t.add_argument("--g-depth", type=int, help="dcgan/cdcgan: extra 3x3 conv layers at each of G's resolutions (0)")
    t.add_argument("--d-depth", type=int, help="dcgan/cdcgan: extra 3x3 conv layers at each of D's resolutions (0)")
    # BooleanOptionalAction leaves None when neither form is given, so a family's default is not overridden.
    t.add_argument("--spectral-norm", action=argparse.BooleanOptionalAction, help="spectral normalisation of D's layers (dcgan, mlp; off)")
    t.add_argument("--mbstd", action=argparse.BooleanOptionalAction, help="minibatch-std feature in D against mode collapse (off)")
    t.add_argument(
        "--standardise", action=argparse.BooleanOptionalAction, help="mlp: G and D work in units of the toy's RMS coordinate (on)"
    )
    t.add_argument("--pack", type=int, help="PacGAN: D judges this many samples at once (default 1; must divide --batch-size)")
    t.add_argument("--lr-g", type=float, help="G's Adam learning rate (autoencoders: of encoder and decoder)")
    t.add_argument("--lr-d", type=float, help="D's Adam learning rate; TTUR (Heusel et al. 2017): e.g. 4e-4 here with --lr-g 1e-4")
    t.add_argument("--beta1", type=float, help="Adam beta1 (0.5 for DCGAN)")
    t.add_argument("--beta2", type=float, help="Adam beta2 (dcgan 0.99, StyleGAN's; other models 0.999; WGAN-GP used 0.9)")
    t.add_argument(
        "--lr-rampdown", type=float, help="share of the run at its end over which the learning rates fall linearly to 0 (0 = off)"
    )
    t.add_argument("--d-steps", type=int, help="D updates per G update")
    t.add_argument("--ema-halflife-kimg", type=float, help="half-life of G's moving average, in kimg")
    t.add_argument("--tick-kimg", type=float, help="stats line every N kimg")
    t.add_argument("--sample-kimg", type=float, help="sample grid every N kimg")
    t.add_argument("--snapshot-kimg", type=float, help="checkpoint every N kimg")
    t.add_argument("--keep-checkpoints", type=int, help="how many checkpoints to keep")
    t.add_argument(
        "--eval-every-kimg",
        type=float,
        help="class coverage, duplicates, quick FID and the collapse alarm every N kimg (default 20; 0 = off)",
    )
    t.add_argument("--eval-n", type=int, help="samples per training-time evaluation (default 2000)")
    t.add_argument(
        "--alarm-after-kimg",
        type=float,
        help="the collapse alarm judges absolute coverage only after N kimg (default 40; 200 for mlp on the 2-D toys)",
    )
    t.add_argument("--device", help="auto (default) | cpu | cuda")
    t.add_argument("--channels-last", action=argparse.BooleanOptionalAction, help="NHWC memory format for images (on; faster on CPU)")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, help="torch.compile G and D (off; ~30 s to compile)")
    t.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        help="replay each training step as one CUDA graph (off; GPU, one process; unmeasured so far)",
    )
    t.add_argument("--precision", help="auto (dcgan's default: bf16 on CPUs with native bfloat16, else fp32) | fp32 (other models) | bf16")
    t.add_argument("--dry-run", action="store_true", help="print the config and exit")
    t.add_argument(
        "--no-progress",
        action="store_true",
        help="a stats line per tick instead of the progress bar (the default where stderr is no terminal)",
    )


def _reading_parsers(sub, fmt) -> None:
    """sample, runs, eval, report: commands that read a run."""
    s = sub.add_parser("sample", help="draw samples from a trained run", epilog=EXAMPLES["sample"], formatter_class=fmt)
    s.add_argument("run_dir", metavar="RUN_DIR")
    # -n and --n both, on every command that counts samples: the user who typed export's --n here was refused
    s.add_argument("-n", "--n", type=int, help="how many samples (default 64; 2500 points for a 2-D toy run, to see every mode)")
    s.add_argument("--seed", type=int, default=0, help="noise seed; the same seed draws the same images (default 0)")
    s.add_argument("--out", help="output path (default: inside RUN_DIR/samples)")
    s.add_argument("--format", choices=["grid", "folder", "npz"], help="grid (one PNG), folder (a PNG per image) or npz "
                   "(default: from --out: .npz, .png, or a name without a suffix for a folder; grid without --out)")  # fmt: skip
    s.add_argument("--device", default="cpu", help="where the generator runs (default cpu)")
    s.add_argument("--force", action="store_true", help="replace --out if it exists (a folder: its numbered PNGs)")
    s.add_argument("--class", dest="class_name", help="conditional runs: draw only this class (name or index)")
    s.add_argument(
        "--drs",
        type=float,
        metavar="PCT",
        help="discriminator rejection sampling: keep what D accepts (unconditional GANs); candidates above percentile PCT of "
        "D's logits always pass, so PCT caps the share rejected, it does not set it (90 is typical)",
    )

    r = sub.add_parser("runs", help="list runs with their progress", epilog=EXAMPLES["runs"], formatter_class=fmt)
    r.add_argument("dir", nargs="?", default="runs")

    e = sub.add_parser("eval", help="score a run (or any images) with FID, KID, precision/recall, class coverage, memorisation",
                       epilog=EXAMPLES["eval"], formatter_class=fmt)  # fmt: skip
    e.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="a run folder (or give --fakes)")
    e.add_argument("-n", "--n", type=int, help="how many fakes (default 10000; 2500 for a 2-D toy run, the PacGAN protocol)")
    e.add_argument("--metrics", help="comma list of fid,kid,pr,coverage,memorisation (default fid,kid,pr,coverage)")
    e.add_argument("--seed", type=int, help="noise seed of the fakes (default 0)")
    e.add_argument("--backbone", choices=["evaluator", "inception"], help="feature network (default: evaluator for grey 28x28)")
    e.add_argument("--fakes", help="instead of a run: an .npz with 'images' or a folder of images")
    e.add_argument("--reals", help="reference for --fakes: DATASET:SPLIT, .npz or folder (default fashion-mnist:test)")
    e.add_argument("--json", help="with --fakes: also write the results to this JSON file")
    e.add_argument("--force", action="store_true", help="replace the --json file if it exists")
    e.add_argument("--anomaly", action="store_true", help="instead: AUROC of finding a run's --exclude-class class among the test images")
    e.add_argument("--device", help="with --anomaly: where to score (default cpu)")
    e.add_argument("--drs", type=float, metavar="PCT", help="score the fakes discriminator rejection sampling keeps, as sample "
                   "--drs draws them (unconditional GANs); stored as <metric>-drs<PCT> beside the plain scores")  # fmt: skip

    rp = sub.add_parser("report", help="write a self-contained HTML report of a run", epilog=EXAMPLES["report"], formatter_class=fmt)
    rp.add_argument("run_dir", metavar="RUN_DIR")
    rp.add_argument("--out", help="HTML path (default RUN_DIR/report.html, which is refreshed)")
    rp.add_argument("--force", action="store_true", help="replace --out if it exists")


def _export_parsers(sub, fmt) -> None:
    """export-onnx, evaluator, export, augment-eval: commands that turn a run (or the data) into files for other uses."""
    ox = sub.add_parser(
        "export-onnx", help="write a run's EMA generator as an ONNX graph", epilog=EXAMPLES["export-onnx"], formatter_class=fmt
    )
    ox.add_argument("run", help="run folder")
    ox.add_argument("--out", required=True, help="the .onnx file to write")
    ox.add_argument("--opset", type=int, default=18, help="ONNX opset version (default 18)")
    ox.add_argument("--force", action="store_true", help="replace --out if it exists")
    ev = sub.add_parser(
        "evaluator", help="train or inspect the domain evaluator behind the metrics", epilog=EXAMPLES["evaluator"], formatter_class=fmt
    )
    ev.add_argument("action", choices=["train", "show"])
    ev.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "mnist"])
    ev.add_argument("--epochs", type=int, help="train: passes over the training split (default 10)")
    ev.add_argument("--seed", type=int, help="train: the seed (default 0)")
    ev.add_argument("--data-dir", help="train: where the dataset's idx files are (searched first, as for 'train')")
    ev.add_argument("--out", help="train: where to write NAME.safetensors and NAME.json; a name with or without .safetensors, "
                                  "or a folder (default: the package's weights, replaced)")  # fmt: skip
    ev.add_argument("--force", action="store_true", help="train: replace the files --out names if they exist")
    x = sub.add_parser("export", help="write labelled fakes as a dataset: class folders of PNGs, labels.csv, .npz, idx .gz",
                       epilog=EXAMPLES["export"], formatter_class=fmt)  # fmt: skip
    x.add_argument("run_dir", metavar="RUN_DIR")
    x.add_argument("-n", "--n", type=int, default=10_000, help="how many fakes (default 10000)")
    x.add_argument("--out", required=True, help="the dataset folder to create (must be new or empty)")
    x.add_argument("--seed", type=int, default=0, help="noise seed; fake i is the i-th sample of this seed (default 0)")
    x.add_argument("--class", dest="classes", action="append", help="only this class (name or index); repeat for more")
    x.add_argument("--force", action="store_true", help="replace an earlier export in --out (refused if files were added to it)")
    x.add_argument("--device", default="cpu", help="where the generator runs (default cpu)")

    a = sub.add_parser("augment-eval", help="train a classifier on reals, reals + fakes and fakes; test each on real images",
                       epilog=EXAMPLES["augment-eval"], formatter_class=fmt)  # fmt: skip
    a.add_argument("run_dir", metavar="RUN_DIR")
    a.add_argument("--n-fakes", type=int, default=10_000, help="fakes to add to (or replace) the reals (default 10000)")
    a.add_argument("--seeds", type=int, default=3, help="classifier seeds per training set (default 3, at most 20)")
    a.add_argument("--epochs", type=float, default=2.0, help="passes over each training set (default 2, at most 100; fractions allowed)")
    a.add_argument("--settings", default="real,real+fakes,fakes", help="comma list of real, real+fakes, fakes (default all)")
    a.add_argument("--n-real", type=int, help="use a fixed random subset of this many real training images (default all)")
    a.add_argument("--n-test", type=int, help="test on a fixed random subset of this many real test images (default all)")
    a.add_argument("--seed", type=int, default=0, help="noise seed of the fakes (default 0)")
    a.add_argument("--device", default="cpu", help="where the generator runs (default cpu)")


def _latent_parsers(sub, fmt) -> None:
    """interpolate, arithmetic, project: walks through a trained run's latent space."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("run_dir", metavar="RUN_DIR")
    common.add_argument("--seed", type=int, default=0, help="noise of the rows (and of projection starts)")
    common.add_argument("--out", help="output path (default: RUN_DIR/latent/..., refreshed)")
    common.add_argument("--force", action="store_true", help="replace --out (and its .gif/.png companion) if it exists")
    common.add_argument("--device", default="cpu", help="where the generator runs (default cpu)")
    walks = argparse.ArgumentParser(add_help=False)
    walks.add_argument("--class", dest="class_name", help="conditional runs: the class for operands that name none")
    walks.add_argument("--project-steps", type=int, default=100, help="optimisation steps for .png operands (at most 10000)")
    i = sub.add_parser("interpolate", parents=[common, walks], help="walk between seeds, classes or images (PNG + GIF)",
                       epilog=EXAMPLES["interpolate"], formatter_class=fmt)  # fmt: skip
    i.add_argument(
        "--from", dest="start", metavar="FROM", required=True, help="SEED, CLASS (name or class:N), IMAGE.png or LATENTS.npz[#k]"
    )
    i.add_argument("--to", dest="end", metavar="TO", required=True, help="the other end, same forms")
    i.add_argument("--steps", type=int, default=10, help="images along the way, both ends included (2 to 200)")
    i.add_argument("--mode", choices=["lerp", "slerp"], default="slerp")
    i.add_argument("--rows", type=int, default=1, help="rows: images 0..rows-1 of seeds, or noise around other endpoints (at most 256)")
    a = sub.add_parser("arithmetic", parents=[common, walks], help='latent arithmetic: "Sneaker - Sandal + Ankle boot"',
                       epilog=EXAMPLES["arithmetic"], formatter_class=fmt)  # fmt: skip
    a.add_argument("expression", metavar="EXPR", help="class names, class:N, [seeds], .png or .npz#k, joined by + and -, with 0.5* factors")
    a.add_argument("--rows", type=int, default=4, help="rows of the result, each with its own noise (default 4, at most 256)")
    pr = sub.add_parser("project", parents=[common], help="find the latents of real images (GAN inversion / encoder)",
                        epilog=EXAMPLES["project"], formatter_class=fmt)  # fmt: skip
    pr.add_argument("images", nargs="+", metavar="IMAGE", help="image files or DATASET:SPLIT:INDEX (fashion-mnist:test:17)")
    pr.add_argument("--steps", type=int, default=100, help="optimisation steps (autoencoders: refinement after the encoder; at most 10000)")
    pr.add_argument("--restarts", type=int, default=4, help="random starts per image (GANs; at most 64)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `counterfeit` console script; bad input ends in one line on stderr."""
    from .checkpoints import CheckpointError
    from .config import MAX_SEED, ConfigError
    from .data import DataError
    from .distributed import follow_launcher
    from .evaluator import EvaluatorWeightsError
    from .metrics.features import BackboneUnavailable
    from .onnx_export import OnnxExportError
    from .train import TrainingDiverged

    follow_launcher(_LAUNCHER_PID)
    _forgiving_streams()
    args = _parser().parse_args(argv)
    args.command_line = shlex.join(["counterfeit", *(sys.argv[1:] if argv is None else argv)])  # for provenance records
    if args.command is None:
        _parser().print_help()
        return 0
    _console_logging()
    try:
        commands = {
            "train": cmd_train,
            "sample": cmd_sample,
            "runs": cmd_runs,
            "eval": cmd_eval,
            "report": cmd_report,
            "evaluator": cmd_evaluator,
            "export": cmd_export,
            "augment-eval": cmd_augment_eval,
            "studio": cmd_studio,
            "export-onnx": cmd_export_onnx,
            "interpolate": cmd_latent,
            "arithmetic": cmd_latent,
            "project": cmd_latent,
        }
        seed = getattr(args, "seed", None)
        if args.command != "train" and seed is not None and not 0 <= seed <= MAX_SEED:  # train's config checks its own
            raise ConfigError(f"--seed must be from 0 to {MAX_SEED}, got {seed}")
        # Checked before any command writes a file (eval takes --device only with --anomaly, and says so first).
        if getattr(args, "device", None) not in (None, "auto") and not (args.command == "eval" and not args.anomaly):
            from .train import pick_device

            pick_device(args.device)
        return commands[args.command](args)
    except (ConfigError, DataError, CheckpointError, TrainingDiverged, EvaluatorWeightsError, BackboneUnavailable, OnnxExportError) as e:
        if _launched_rank() == 0:  # under torchrun every rank meets the same error: say it once
            print(f"counterfeit: error: {e}", file=sys.stderr)
        return 1 if isinstance(e, TrainingDiverged) else 2
    except KeyboardInterrupt:
        if _launched_rank() == 0:
            kept = "; the newest checkpoint on disk is kept" if getattr(args, "command", None) == "train" else ""
            print(f"counterfeit: aborted{kept}", file=sys.stderr)
        return 130
    except RuntimeError as e:  # torch's allocators say "out of memory" / "can't allocate memory" in a long message
        text = str(e)
        where = max(text.find(phrase) for phrase in ("out of memory", "can't allocate memory", "ALLOC_FAILED"))
        if where < 0:
            raise
        fix = (
            "use a smaller --batch-size, --z-dim, --g-width/--d-width or --resolution"
            if args.command == "train"
            else "ask for fewer images"
        )
        if _launched_rank() == 0:
            print(f"counterfeit: error: {text[where:].splitlines()[0][:160]}; {fix}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the command cannot write (or read): say which, not where in the code
        if e.filename is None:
            raise
        if _launched_rank() == 0:
            print(f"counterfeit: error: {_os_error_line(e)}", file=sys.stderr)
        return 2


def _os_error_line(e: OSError) -> str:
    """One line naming the path an OSError is about and what to do."""
    import errno

    hints = {errno.EISDIR: "it is a folder: give a file name inside it", errno.ENOTDIR: "part of the path is a file, not a folder",
             errno.EROFS: "pick a path you can write to", errno.EACCES: "pick a path you can write to",
             errno.EPERM: "pick a path you can write to", errno.ENOSPC: "free some disk space or pick another disk",
             errno.EEXIST: "it exists already: pick a new name", errno.ENOENT: "check the path"}  # fmt: skip
    path = e.filename2 if e.errno == errno.EISDIR and e.filename2 else e.filename  # os.replace(tmp, out): out is the one meant
    return f"cannot use {path} ({e.strerror}); {hints.get(e.errno, 'check the path')}"


def _launched_rank() -> int:
    from .distributed import launched_rank

    return launched_rank()


class _NotFileOnly(logging.Filter):
    # Lines for log.txt alone: the ticks (the progress bar shows them) and what the console already said another way.
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


class _TqdmHandler(logging.Handler):
    # Log lines printed above a running progress bar instead of through it. At module level, so the check below finds
    # the handler an earlier main() in this process installed (a class made per call never matches).
    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def _forgiving_streams() -> None:
    # A path, run or class name the console cannot encode (a cp1252 pipe on Windows, a folder name that is not UTF-8)
    # is printed escaped: strict stdout raised UnicodeEncodeError after the command's work was done.
    for stream in (sys.stdout, sys.stderr):
        if not hasattr(stream, "reconfigure"):  # None under pythonw; a test's capture may not be a TextIOWrapper
            continue
        # A UTF-8 stream with surrogateescape (Python's choice under C.UTF-8 or UTF-8 mode) already writes everything,
        # a non-UTF-8 name as its own bytes, which the user can paste back: left as it is.
        if stream.errors == "surrogateescape" and codecs.lookup(stream.encoding).name == "utf-8":
            continue
        stream.reconfigure(errors="backslashreplace")


def _console_logging() -> None:
    log = logging.getLogger("counterfeit")
    log.setLevel(logging.INFO)
    if not any(isinstance(h, _TqdmHandler) for h in log.handlers):
        h = _TqdmHandler()
        h.addFilter(_NotFileOnly())
        h.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(h)


def cmd_train(args: argparse.Namespace) -> int:
    """Build the config (or reload it for --resume), make the run folder and train with a progress bar."""
    from .data import check_data_source
    from .distributed import process_group
    from .models import build_models, get_spec
    from .train import (
        check_batch_fits,
        check_batch_splits,
        check_cuda_graphs,
        check_names,
        conditional_config,
        load_training_data,
        no_labels,
        pick_device,
    )

    run_dir, cfg = _train_config(args)
    if not get_spec(cfg.model.name).conditional or cfg.model.num_classes:
        build_models(cfg)  # checks the architecture fits the data shape, before anything is written
    check_batch_splits(cfg, resumed=bool(args.resume))  # under torchrun, before anything is written
    device = pick_device(cfg.loop.device)  # a GPU this machine lacks is refused before the data loads or a folder is written
    if cfg.loop.cuda_graphs:  # the machine's part of that check
        check_cuda_graphs(device, int(os.environ.get("WORLD_SIZE", "1")))
    check_data_source(cfg.data.name)  # a folder that is not there is refused by --dry-run too
    if cfg.data.data_dir and not Path(cfg.data.data_dir).is_dir() and _launched_rank() == 0:
        print(f"warning: --data-dir {cfg.data.data_dir} is not a folder; looking in the usual places instead", file=sys.stderr)
    if args.dry_run:
        check_names(cfg)  # what training would refuse on loading the data, where the names alone tell
        if get_spec(cfg.model.name).conditional and not cfg.model.num_classes:
            from .data import folder_classes

            names = folder_classes(cfg.data.name)  # what training will count, from the sub-folders' names alone ([] below 2)
            if not names:
                raise no_labels(cfg, "put each class in its own sub-folder")
            cfg = cfg.replace(model={"num_classes": len(names)}, data={"class_names": tuple(names)})
        if _launched_rank() == 0:
            print(cfg.to_json())
        return 0
    data = load_training_data(cfg)  # also before the run folder exists, so bad data leaves nothing behind
    check_batch_fits(cfg, len(data.x))
    cfg = conditional_config(cfg, data)  # a conditional model learns how many classes the data has
    build_models(cfg)
    with process_group(cfg.loop.device):  # torchrun: join the other processes (no-op for one)
        return _train_run(args, cfg, run_dir, data)


def _train_run(args: argparse.Namespace, cfg, run_dir: Path | None, data) -> int:
    """Make (or reuse) the run folder, train with a progress bar and say how it ended; under torchrun rank 0 alone talks."""
    from .distributed import from_main, is_main, world_size
    from .models import get_spec
    from .runs import create_run_dir, is_evaluation, last_evaluation, reached_nimg, read_stats, remove_if_unused
    from .train import Callbacks, train

    main = is_main()
    created = run_dir is None
    items = get_spec(cfg.model.name).data_kind  # 'points' for a 2-D toy: its numbers must not speak of images
    if created:
        run_dir = from_main(create_run_dir(cfg, args.out or "runs") if main else None)  # one folder, numbered by rank 0
    if main:
        print(f"run folder: {run_dir}", file=sys.stderr)
        if created and get_spec(cfg.model.name).family == "gan":  # the cop-and-thief story in the numbers, once per run
            story = ("" if cfg.loss.name == "wgan-gp" else  # a critic's scores have no 'real' probability to read
                     f"; D(x) and D(G(z)) are how real D finds the real {items} and the fakes. Healthy: D(x) stays above "
                     "D(G(z)), neither runs to 1 or 0")  # fmt: skip
            print(f"reading the numbers: D and G are the police's and the forger's losses{story}; kimg counts the "
                  f"thousands of real {items} D has seen{_judged_words(cfg, items)}", file=sys.stderr)  # fmt: skip

    # torchrun passes a Ctrl-C on to its workers, who also got it from the terminal: a repeat must not abort the save.
    stop = _StopFlag(repeat_aborts=world_size() == 1)
    reached_kimg = 0.0 if created else reached_nimg(run_dir) / 1000
    if main and not created and reached_kimg >= cfg.loop.total_kimg:
        print(f"{run_dir.name} has trained its planned {cfg.loop.total_kimg:g} kimg already; to train it longer, resume with "
              f"--kimg N (more than {cfg.loop.total_kimg:g})", file=sys.stderr)  # fmt: skip
    bar = None if args.no_progress or not main else _progress_bar(cfg.loop.total_kimg, reached_kimg)
    if bar is not None and bar.disable:  # no terminal to draw it on (a pipe, a log file)
        bar = None
    cbs = Callbacks(should_stop=stop.is_set)
    if bar is None and main:  # log lines instead of a bar (--no-progress, a pipe): the run must not look frozen

        def print_tick(s: dict) -> None:
            print(f"{_tick_kimg(s['kimg'], cfg.loop.tick_kimg)}/{cfg.loop.total_kimg:g} kimg: {_postfix(s, items)}", file=sys.stderr)

        cbs.on_tick = print_tick
    if bar is not None:
        cbs.on_step = lambda cur, total: bar.update(min(cur, total) / 1000 - bar.n)
        seen: dict = {}  # the last evaluation's fields stay on the bar between evaluations

        def on_tick(s: dict) -> None:
            if is_evaluation(s):
                seen.clear()
                seen.update({k: v for k, v in s.items() if k.startswith(("cov/", "toy/")) or k == "alarm"})
            bar.set_postfix_str(_postfix({**s, **seen}, items), refresh=False)

        cbs.on_tick = on_tick
    try:
        with stop.installed():
            result = train(cfg, run_dir, cbs, data)
    except BaseException:
        if created and main and remove_if_unused(run_dir):  # failed before its first stats line: nothing worth keeping
            print(f"removed {run_dir}: the run failed before it trained", file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()
    if not main:
        return 0
    if result.status == "stopped" and created and remove_if_unused(run_dir):  # stopped before its first step
        print(f"stopped before the first step; removed {run_dir}, which held nothing to resume", file=sys.stderr)
        return 0
    # The last evaluation still fired: the end must not read as all well. Said before the last line, which stays the
    # 'done:' or 'stopped' that the studio's job list reads a run's state from (studio/jobs.py).
    if "alarm" in last_evaluation(read_stats(run_dir)):
        print(f"note: the collapse alarm was firing at the last evaluation; see {run_dir / 'log.txt'} or counterfeit report "
              f"{shell_word(run_dir)}", file=sys.stderr)  # fmt: skip
    if result.status == "stopped":
        print(
            f"stopped at {result.cur_nimg / 1000:.1f} kimg and saved; continue with: {_launcher()}counterfeit train --resume {shell_word(run_dir)}",
            file=sys.stderr,
        )
    else:
        print(
            f"done: {result.cur_nimg / 1000:.1f} kimg. Samples: {run_dir / 'samples'}. Try: counterfeit sample {shell_word(run_dir)}",
            file=sys.stderr,
        )
    return 0


def _launcher() -> str:
    """'torchrun --nproc_per_node=N -m ' under torchrun, else ''; the start of a command that continues this run."""
    from .distributed import world_size

    return f"torchrun --nproc_per_node={world_size()} -m " if world_size() > 1 else ""


def _judged_words(cfg, items: str) -> str:
    """What the evaluations' 'classes N/M' or 'modes N/M' count, for the reading line; '' where nothing is judged."""
    from .metrics.monitor import judges

    if cfg.loop.eval_every_kimg <= 0:
        return ""
    if items == "points":
        return "; modes N/M: how many of the toy's modes have fakes near them"
    if judges(cfg.data.name, cfg.data.channels, cfg.data.resolution):  # the monitor's own rule: --resolution 32 has none
        return "; classes N/M: how many kinds of item a judge finds among the fakes (all is healthy)"
    return ""


def _tick_kimg(kimg: float, tick_kimg: float = 4.0) -> str:
    """A tick's kimg as the stats lines print it: 8.0 beside 4.0 (not 8 beside 4.032), 0.032 for a tiny run, never 1e+04."""
    if kimg < 1:
        return f"{kimg:.3g}"
    # One decimal, unless --tick-kimg is finer: 1.472 and 1.536 both printed 1.5, the first as if the run were done.
    return f"{kimg:.{max(1, math.ceil(-math.log10(tick_kimg / 2)))}f}"


def _postfix(s: dict, items: str = "images") -> str:
    """One stats row in a line's width; `items` is 'points' for a toy, whose speed is points, not images, per second."""
    rate = f" {s['img/s']:.0f} {'points' if items == 'points' else 'img'}/s" if "img/s" in s else ""
    if "loss_D" in s:
        text = f"D {s['loss_D']:.3f} G {s['loss_G']:.3f} D(x) {s['D(x)']:.2f} D(G(z)) {s['D(G(z))']:.2f}{rate}"
    else:  # autoencoders: per-image losses; a row may lack any key
        text = " ".join(f"{short} {s[k]:.1f}" for k, short in (("loss", "loss"), ("loss_rec", "rec"), ("loss_kl", "KL")) if k in s)
        text += rate
    if "cov/classes" in s:
        text += f" classes {s['cov/classes']}/{s['cov/num_classes']}"
    if "toy/modes" in s:
        text += f" modes {s['toy/modes']}/{s['toy/modes_total']}"
    return text + (" ALARM" if "alarm" in s else "")  # collapsing, or a toy G not finding the data


def _train_config(args: argparse.Namespace):
    """(existing run folder or None, config) from the command line."""
    from .config import FLAT_OPTIONS, ConfigError, make_config
    from .runs import resume_config

    # Every train flag named after a config option is passed on (the config's own list, so none is forgotten).
    given = {k: v for k in (*FLAT_OPTIONS, "epochs") if (v := getattr(args, k, None)) is not None}
    if not args.resume:
        return None, make_config(**given)
    run_dir = Path(args.resume)
    cfg = resume_config(run_dir, given)
    if args.out is not None and Path(args.out).expanduser().resolve() != run_dir.resolve().parent:
        raise ConfigError(f"--out makes a new run folder; a resumed run stays in {run_dir}: drop --out")
    return run_dir, cfg


def _progress_bar(total_kimg: float, initial_kimg: float = 0.0):
    from tqdm import tqdm

    return tqdm(
        total=total_kimg,
        initial=initial_kimg,  # a resumed run: the rate and time left count only what this process trains
        unit="kimg",
        dynamic_ncols=True,
        disable=None,  # off where stderr is no terminal (`2> log`, a pipe): the log lines say it there, without \r frames
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} kimg [{elapsed}<{remaining}]{postfix}",  # tqdm puts ", " before it
    )


class _StopFlag:
    """First Ctrl-C (or SIGTERM, or Windows' Ctrl-Break) asks the loop to save and stop at the next step; a second Ctrl-C aborts."""

    def __init__(self, repeat_aborts: bool = True):
        self._set, self._repeat_aborts = False, repeat_aborts

    def is_set(self) -> bool:
        return self._set

    def _handle(self, signum, frame) -> None:
        if self._set and signum == signal.SIGINT and self._repeat_aborts:
            raise KeyboardInterrupt
        if self._set:
            return
        self._set = True
        if not self._repeat_aborts:  # torchrun: one notice, from rank 0, and no second-Ctrl-C abort
            if _launched_rank() == 0:
                print("\nstopping: every process stops after this step, and rank 0 saves a checkpoint", file=sys.stderr)
            return
        print("\nstopping: saving a checkpoint at the end of this step (Ctrl-C again to abort without saving)", file=sys.stderr)

    def installed(self):
        import contextlib

        @contextlib.contextmanager
        def ctx():
            # SIGBREAK: Windows' Ctrl-Break, which the studio's Stop sends (Ctrl-C cannot be aimed at one process group there).
            stops = (signal.SIGINT, signal.SIGTERM, *([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else []))
            old = {s: signal.signal(s, self._handle) for s in stops}
            try:
                yield
            finally:
                for s, h in old.items():
                    signal.signal(s, h)

        return ctx()


def cmd_sample(args: argparse.Namespace) -> int:
    """Write samples of a run as a grid PNG, a folder of PNGs or an .npz."""
    from .config import MAX_IMAGES, ConfigError
    from .export import default_count, write_samples
    from .runs import run_data_kind

    points = run_data_kind(args.run_dir) == "points"  # None for an unreadable run: write_samples says why
    n = args.n if args.n is not None else default_count(points)
    if n < 1 or n > MAX_IMAGES:
        raise ConfigError(f"-n must be between 1 and {MAX_IMAGES:,}, got {n}")
    fmt = _sample_format(args.format, args.out, points)
    # A toy run's npz gets a scatter plot of the same name beside it: that PNG is as much the user's as --out.
    example = {"grid": "samples.png", "npz": "samples.npz"}.get(fmt, "")  # a folder of PNGs may go into a folder
    _refuse_existing(args.out, args.force, (".png",) if points and fmt == "npz" else (), file_example=example)
    _warn_noise_like(args.run_dir)
    out = write_samples(args.run_dir, n, args.seed, fmt, args.out, args.device, args.class_name, args.drs)
    print(f"wrote {out} and its scatter plot {out.with_suffix('.png')}" if points and fmt == "npz" else f"wrote {out}")
    return 0


def _warn_noise_like(run_dir: str) -> None:
    # Said before the drawing: an ae/dae decoder fed N(0, I) draws noise-like grey, and nothing need be made to learn it.
    from .config import load_config
    from .runs import is_run_dir
    from .synthetic import prior_warning

    warning = is_run_dir(Path(run_dir)) and prior_warning(load_config(Path(run_dir) / "config.json").model.name)
    if warning:
        print(f"warning: {warning}", flush=True)


def _sample_format(fmt: str | None, out: str | None, points: bool = False) -> str:
    """--format, or the one --out's suffix implies; one-line error when a named --out does not fit the format."""
    from .config import ConfigError

    suffix = Path(out).suffix.lower() if out else ""
    if fmt is None:
        if not out or suffix in (".png", ".npz"):
            fmt = "npz" if suffix == ".npz" else "grid"
        elif (not suffix or Path(out).is_dir()) and not points:
            fmt = "folder"
        else:
            kinds = ".npz or .png (a 2-D toy run draws points)" if points else ".npz, .png or a folder name without a suffix"
            raise ConfigError(f"cannot tell the format from --out {out}; name it {kinds}, or add --format")
    fits = {"grid": suffix == ".png", "npz": suffix == ".npz", "folder": suffix not in (".png", ".npz")}[fmt]
    if out and not fits:
        raise ConfigError(f"--out {out} does not fit --format {fmt} (grid writes a .png, npz an .npz, folder a folder); "
                          f"rename --out or change --format")  # fmt: skip
    return fmt


def _refuse_existing(
    out: str | Path | None, force: bool, companions: tuple[str, ...] = (), flag: str = "--out", file_example: str = ""
) -> None:
    """One-line error when an output path the user named exists (an empty folder is fine), unless --force.

    Default outputs inside the run folder are the command's own and are refreshed; a path the user named may hold
    anything, so it is never replaced silently. `companions` are suffixes of files written beside it (a GIF, a PNG).
    A command writing a file (it gives a `file_example` name) refuses a folder even with --force, which could not replace it.
    """
    from .config import ConfigError

    if out is not None and file_example and Path(out).is_dir():
        raise ConfigError(f"{flag} {out} is a folder; give a file name, such as {Path(out) / file_example}")
    if out is None or force:
        return
    for path in [Path(out), *(Path(out).with_suffix(sfx) for sfx in companions)]:
        if path.exists() and not (path.is_dir() and not any(path.iterdir())):
            raise ConfigError(f"{path} exists already; pass --force to replace it, or give {flag} a new name")


def cmd_runs(args: argparse.Namespace) -> int:
    """Print a table of the runs in a folder."""
    from .config import ConfigError
    from .runs import is_run_dir, run_row, run_table, table_lines

    where = Path(args.dir)
    if where.exists() and not where.is_dir():
        raise ConfigError(f"{where} is a file; give the folder that holds the runs, such as runs")
    if not where.exists():
        print(f"no runs yet: {where} does not exist (counterfeit train makes it)")
        return 0
    rows = [run_row(where)] if is_run_dir(where) else run_table(where)  # one run folder: its own row, not "no runs"
    if not rows:
        print(f"no runs in {args.dir}")
        return 0
    cols = list(rows[0])
    for line in table_lines([cols, *([str(r[c]) for c in cols] for r in rows)], sys.stdout):
        print(line)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Score a run's fakes (or a set of images) and print a short summary."""
    import json

    from .config import MAX_IMAGES, ConfigError
    from .metrics.evaluate import evaluate_images, load_image_source, parse_metrics, score_run, write_results

    if args.n is not None and not 2 <= args.n <= MAX_IMAGES:
        raise ConfigError(f"--n must be between 2 and {MAX_IMAGES:,}, got {args.n}")
    if args.json and not args.fakes:
        raise ConfigError("--json goes with --fakes; a run's scores are written to RUN_DIR/metrics.json")
    _refuse_existing(args.json, args.force, flag="--json", file_example="scores.json")  # before minutes of scoring
    if args.drs is not None and (args.anomaly or args.fakes or not args.run_dir):
        raise ConfigError("--drs samples a run with its own D: give a RUN_DIR, without --fakes or --anomaly")
    # Options the chosen kind of evaluation does not use are refused, not dropped: a typo'd --reals scored the wrong thing.
    if args.reals is not None and not args.fakes:
        raise ConfigError("--reals is the reference for --fakes; " + ("a run is scored against its own data (drop --reals)" if args.run_dir
                          else "give the images to score with --fakes PATH"))  # fmt: skip
    if args.device is not None and not args.anomaly:
        raise ConfigError("--device goes with --anomaly; the other scores draw and score on the CPU (drop --device)")
    if args.seed is not None and (args.fakes or args.anomaly):
        raise ConfigError(
            f"--seed draws a run's fakes; {'--fakes are given' if args.fakes else '--anomaly scores real test images'} (drop --seed)"
        )
    if args.anomaly:
        from .metrics.anomaly import evaluate_anomaly

        if args.fakes or not args.run_dir:
            raise ConfigError("--anomaly scores a run: give a RUN_DIR trained with --exclude-class, and no --fakes")
        unused = [flag for flag, v in (("--metrics", args.metrics), ("--n", args.n), ("--backbone", args.backbone)) if v is not None]
        if unused:
            raise ConfigError(f"--anomaly scores every test image with the run's own networks (AUROC); drop {', '.join(unused)}")
        results = evaluate_anomaly(args.run_dir, args.device or "cpu")["metrics"]
        results = {"anomaly": results["anomaly"]}  # metrics.json may keep older metrics beside it; print only this one
        print(f"wrote {Path(args.run_dir) / 'metrics.json'}")
    elif args.fakes:
        if args.run_dir:
            raise ConfigError("give a RUN_DIR or --fakes, not both")
        from .data import IDX_DATASETS

        reals_source = args.reals or "fashion-mnist:test"
        base = reals_source.partition(":")[0]
        names = parse_metrics(args.metrics, classes=base if base in IDX_DATASETS else None)
        if "memorisation" in names and base not in IDX_DATASETS:
            raise ConfigError("--metrics memorisation compares the fakes with the training images, so --reals must name an idx "
                              "dataset such as fashion-mnist:test (or evaluate the run itself)")  # fmt: skip
        fakes, fdesc = load_image_source(args.fakes, args.n or 10_000)
        reals, rdesc = load_image_source(reals_source)
        train = load_image_source(f"{base}:train")[0] if "memorisation" in names else None  # (N, C, H, W) uint8
        dataset = base if base in ("fashion-mnist", "mnist") else "fashion-mnist"
        prov = {"fakes": fdesc["source"], "reference": rdesc["source"]}
        prov.update({f"{side}_converted": d["converted"] for side, d in (("fakes", fdesc), ("reference", rdesc)) if "converted" in d})
        results = evaluate_images(fakes, reals, names, args.backbone or "evaluator", dataset, rdesc.get("class_labels"), train, prov)
        for line in _summary(results):  # first, so a failed write below loses no minutes of scoring
            print(line)
        if args.json:
            from .fileio import atomic_write_text

            atomic_write_text(Path(args.json), json.dumps({"metrics": results}, indent=2) + "\n")
            print(f"wrote {args.json}")
        return 0
    elif args.run_dir:
        scored = score_run(args.run_dir, args.n, args.metrics, args.seed or 0, args.backbone, args.drs)
        plain = scored.results
        if args.drs is not None:  # the share kept was logged as the fakes were drawn
            tag = f"-drs{args.drs:g}"
            plain = {name.removesuffix(tag): v for name, v in scored.results.items()}
            print(f"scores stored as {', '.join(scored.results)}")
        print(f"scored {scored.checkpoint} ({scored.kimg:g} kimg)")  # a run still training moves on: say which point was scored
        for line in _summary(plain):  # first, so a failed write below loses no minutes of scoring
            print(line)
        write_results(scored.run_dir, scored.results, scored.kimg, scored.checkpoint)
        print(f"wrote {scored.run_dir / 'metrics.json'}")
        return 0
    else:
        raise ConfigError("give a RUN_DIR to evaluate, or --fakes PATH [--reals fashion-mnist:test]")
    for line in _summary(results):
        print(line)
    return 0


def _warning(result: dict) -> list[str]:
    """The 'warning: ...' line a metric's provenance carries, if any."""
    warn = result["provenance"].get("warning")
    return [f"warning: {warn}"] if warn else []


def _summary(results: dict) -> list[str]:
    from .metrics.toy import how_to_read

    out = []
    if "fid" in results:
        out.append(f"FID {results['fid']['fid']:.3f}  ({results['fid']['provenance']['backbone']}, "
                   f"{results['fid']['provenance']['n_fakes']} fakes; lower is better, 0 = the reals' own statistics)")  # fmt: skip
        out += _warning(results["fid"])
    if "kid" in results:
        out.append(f"KID {results['kid']['kid']:.5f} +- {results['kid']['kid_std']:.5f}")
        out += _warning(results["kid"])
    if "pr" in results:
        r = results["pr"]
        # "k-NN coverage" and "class coverage" below: two different things a bare "coverage" made read as one
        out.append(f"precision {r['precision']:.3f}  recall {r['recall']:.3f}  density {r['density']:.3f}  "
                   f"k-NN coverage {r['coverage']:.3f}  (k-NN scores in {r['provenance']['backbone']} features; higher is better)")  # fmt: skip
        out += _warning(r)
    if "coverage" in results:
        c = results["coverage"]
        missing = f"; missing: {', '.join(c['missing'])}" if c["missing"] else ""
        out.append(
            f"class coverage {c['classes_covered']}/{c['num_classes']} classes  KL to real {c['kl']:.4f}  duplicates "
            f"{c['duplicate_rate']:.2%}{missing}"
        )
        if "label_accuracy" in c:
            out.append(f"conditional: {c['label_accuracy']:.1%} of samples are judged to be the class they were asked for")
    if "memorisation" in results:
        m = results["memorisation"]
        out.append(f"near-copies {m['near_copy_fraction']:.2%} (real test images: {m['near_copy_expected']:.0%} by the rule; more "
                   f"means copying); median pixel distance (L2, pixels in [0, 1]) to the nearest training image: fakes "
                   f"{m['fake_to_train_median']:.3f}, test images {m['test_to_train_median']:.3f}")  # fmt: skip
    if "anomaly" in results:
        a, prov = results["anomaly"], results["anomaly"]["provenance"]
        out.append(f"anomaly AUROC {a['auroc']:.4f} at finding '{prov['excluded_class']}' among {prov['n_test']} images; "
                   f"mean score ({prov['score']}) normal {a['mean_score_normal']:.4g}, anomalous {a['mean_score_anomalous']:.4g} "
                   "(higher = more anomalous)")  # fmt: skip
    if "toy" in results:
        t = results["toy"]
        kl = "n/a" if t["reverse_kl"] is None else f"{t['reverse_kl']:.3f}"
        out.append(f"modes {t['modes_covered']}/{t['modes_total']}  high quality {t['high_quality_pct']:.1f}%  reverse KL {kl}")
        out.append(f"({how_to_read(t)})")
    return out


def cmd_report(args: argparse.Namespace) -> int:
    """Write the run's HTML report and PNG plots."""
    from .config import ConfigError
    from .report import write_report

    out = Path(args.out) if args.out else None
    if out is not None:
        out = out / "report.html" if out.is_dir() else out
        if out.suffix.lower() not in (".html", ".htm"):
            raise ConfigError(f"--out {out}: the report is an HTML page; give a name ending in .html (or a folder)")
        _refuse_existing(out, args.force)
    out = write_report(Path(args.run_dir), out)
    print(f"wrote {out}")
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    """`counterfeit export-onnx RUN --out g.onnx`: the EMA generator as an ONNX graph."""
    from .onnx_export import export_onnx

    if not Path(args.out).is_dir() and Path(args.out).suffix.lower() == ".onnx":  # export_onnx says what to do about others
        _refuse_existing(args.out, args.force)
    out = export_onnx(args.run, args.out, args.opset)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_evaluator(args: argparse.Namespace) -> int:
    """Train the domain evaluator, or show the record of the shipped one."""
    import json

    from .config import ConfigError
    from .evaluator import load_evaluator, train_evaluator
    from .fileio import nearest_existing

    if args.action == "show":
        options = (("--epochs", args.epochs), ("--seed", args.seed), ("--out", args.out), ("--data-dir", args.data_dir))
        given = [flag for flag, v in options if v is not None]
        if given or args.force:
            raise ConfigError(
                f"{', '.join(given or ['--force'])}: only 'evaluator train' takes it; 'show' prints the shipped judge's record"
            )
        print(json.dumps(load_evaluator(args.dataset).meta, indent=2))
        return 0
    epochs, seed = 10 if args.epochs is None else args.epochs, 0 if args.seed is None else args.seed
    out = None
    if args.out:
        out = Path(args.out)
        folder = out.is_dir() or args.out.endswith(("/", os.sep))  # a folder to be made says so with a trailing slash
        out = out / f"{args.dataset}-evaluator" if folder else out.with_suffix("") if out.suffix in (".safetensors", ".json") else out
        above = nearest_existing(out)  # the nearest folder that exists, or a file in the way
        if above is None:  # not even the drive or share (Windows)
            raise ConfigError(f"--out {args.out}: {out.absolute().anchor or out} does not exist; give --out a folder on a drive that does")
        if not above.is_dir():  # found now, not after a quarter of an hour of training
            raise ConfigError(f"--out {args.out}: {above} is a file, not a folder")
        there = [p for p in (out.with_name(out.name + ".safetensors"), out.with_name(out.name + ".json")) if p.exists()]
        if there and not args.force:
            raise ConfigError(f"{there[0]} exists; pass --force to replace it, or another --out")
    # --data-dir stays out of the record: where the files were says nothing of the weights (their checksums are verified).
    command = " ".join(["counterfeit evaluator train", "--dataset", args.dataset, "--epochs", str(epochs), "--seed", str(seed)])
    meta = train_evaluator(args.dataset, epochs=epochs, seed=seed, out=out, command=command, data_dir=args.data_dir)
    print(json.dumps(meta, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a labelled synthetic dataset folder from a run."""
    from .config import MAX_IMAGES, ConfigError
    from .fileio import check_creatable
    from .synthetic import export_dataset

    if not 1 <= args.n <= MAX_IMAGES:
        raise ConfigError(f"--n must be between 1 and {MAX_IMAGES:,}, got {args.n}")
    # The dataset is staged beside --out under a hidden name: a read-only place was named by that name, after the sampling.
    check_creatable(args.out)
    _warn_noise_like(args.run_dir)
    m = export_dataset(args.run_dir, args.n, args.out, args.seed, args.classes, args.force, args.device, args.command_line)
    counts = ", ".join(f"{k} {v}" for k, v in m["counts"].items() if v)
    print(f"wrote {m['n']} fakes to {args.out} (labels: {m['label_source']}; {counts})")
    return 0


def cmd_augment_eval(args: argparse.Namespace) -> int:
    """Train-on-fakes, test-on-real: write RUN/eval/augment.md and .json (appending .jsonl) and print the table."""
    from .augment_eval import augment_eval, augment_markdown

    settings = tuple(s.strip() for s in args.settings.split(",") if s.strip())
    # The table is printed before it is written: a failed write loses no minutes (or hours) of training unseen.
    augment_eval(args.run_dir, args.n_fakes, args.seeds, args.epochs, settings, args.n_real, args.n_test, args.seed,
                 device=args.device, command=args.command_line, on_record=lambda rec: print(augment_markdown(rec), flush=True))  # fmt: skip
    print(f"wrote {Path(args.run_dir) / 'eval' / 'augment.md'} and augment.json (every test so far: augment.jsonl)")
    return 0


def cmd_latent(args: argparse.Namespace) -> int:
    """interpolate / arithmetic / project: call the latent library and print what it wrote."""
    from .latent import explore

    companions = {"interpolate": (".gif",), "project": (".png",)}.get(args.command, ())
    example = {"interpolate": "walk.png", "arithmetic": "result.png", "project": "latents.npz"}[args.command]
    _refuse_existing(args.out, args.force, companions, file_example=example)
    if args.command == "interpolate":
        o = explore.interpolate(args.run_dir, args.start, args.end, args.steps, args.mode, args.rows, args.seed, args.out, args.device,
                                args.class_name, args.project_steps)  # fmt: skip
    elif args.command == "arithmetic":
        o = explore.arithmetic(args.run_dir, args.expression, args.rows, args.seed, args.out, args.device, args.class_name,
                               args.project_steps)  # fmt: skip
    else:
        o = explore.project(args.run_dir, args.images, args.steps, args.restarts, args.seed, args.out, args.device)
    for line in o.lines:
        print(line)
    for f in o.files:
        print(f"wrote {f}")
    return 0


def cmd_studio(args: argparse.Namespace) -> int:
    """Serve Counterfeit Studio until Ctrl-C."""
    from .config import ConfigError

    try:
        from .studio.app import serve
    except ImportError as e:
        raise ConfigError(f"the studio needs starlette and uvicorn ({e}); pip install starlette uvicorn") from None
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535, got {args.port}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach it can start training and read your runs", file=sys.stderr)

    def ready(url: str) -> None:
        print(
            f"Counterfeit Studio on {url} (runs: {Path(args.runs).resolve()}); Ctrl-C stops it, training it started goes on",
            file=sys.stderr,
        )

    serve(args.runs, args.host, args.port, ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
