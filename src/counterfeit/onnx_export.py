"""Export a run's EMA generator to ONNX, so the fakes can be drawn without PyTorch (onnxruntime, browsers, C++)."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .fileio import atomic_path
from .models import NO_PRIOR
from .runs import load_run

MIN_OPSET = 16  # the oldest the converter reached from the exporter's 18 for our generators (15 and below: no adapter)
QUIET_LOGGERS = ("torch.onnx._internal.exporter._registration", "torch.onnx._internal.exporter._compat", "onnxscript.version_converter")


class OnnxExportError(RuntimeError):
    """The export could not run (a missing package or a model the exporter cannot trace)."""


class _Unconditional(nn.Module):
    """Wraps G so the graph has one input, z."""

    def __init__(self, G: nn.Module):
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.G(z)  # (N, C, H, W)


def export_onnx(run_dir: str | Path, out: str | Path, opset: int = 18) -> Path:
    """Write the run's EMA generator as an ONNX graph: inputs z (N, z_dim) [and labels (N,) int64], output images (points for a 2-D toy run)."""
    try:
        import onnx  # the exporter needs both; fail here with the fix rather than deep inside torch
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise OnnxExportError(
            f"ONNX export needs the onnx and onnxscript packages ({e.name} is missing); pip install 'counterfeit[onnx]'"
        ) from None
    out = Path(out)
    if out.is_dir():
        raise OnnxExportError(f"--out {out} is a folder; give a file name such as {out / 'g.onnx'}")
    if out.suffix.lower() != ".onnx":  # g.png would hold a graph no image viewer opens
        raise OnnxExportError(
            f"--out {out}: export-onnx writes an ONNX graph; give a name ending in .onnx, such as {out.with_suffix('.onnx')}"
        )
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise OnnxExportError(f"--opset {opset} is not one this exporter writes; choose {MIN_OPSET} to {newest} (default 18)")
    run = load_run(run_dir)
    G, cond = run.G.float().eval(), run.spec.conditional
    points = run.spec.data_kind == "points"  # a 2-D toy's G makes points (N, 2), not images
    z = torch.zeros(2, G.z_dim)  # (2, z_dim): the batch size is exported as a dynamic dimension
    batch = torch.export.Dim("batch", min=1, max=65536)
    if cond:
        module, args, names = G, (z, torch.zeros(2, dtype=torch.int64)), ["z", "labels"]
        shapes = {"z": {0: batch}, "labels": {0: batch}}
    else:
        module, args, names, shapes = _Unconditional(G).eval(), (z,), ["z"], {"z": {0: batch}}
    # Quieted while exporting: a warning for each torchvision op the exporter cannot register when torchvision is absent
    # (G uses none), and, for opsets below 18, two notices that it builds 18 and converts down; the opset check below
    # says in one line when that conversion fails.
    quiet = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # z and labels share the batch axis on purpose; the exporter warns that it keeps one name for both.
            warnings.filterwarnings("ignore", message=r".*The axis name: batch will not be used", category=UserWarning)
            program = torch.onnx.export(module, args, dynamo=True, input_names=names, output_names=["points" if points else "images"],
                                        dynamic_shapes=shapes, opset_version=opset, verbose=False)  # fmt: skip
    except Exception as e:  # the exporter's errors are long; keep the first line
        raise OnnxExportError(f"torch.onnx could not export {run.run_dir}: {str(e).splitlines()[0]}") from None
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    cfg = run.config
    usage = ["z ~ N(0, I) of shape (N, z_dim) float32"]
    if cond:  # ONNX's Gather takes negative indices, so the graph cannot refuse one as torch does
        usage[0] += f", labels (N,) int64 class indices 0..{cfg.model.num_classes - 1} (not checked: a negative one wraps round)"
    if cfg.model.name in NO_PRIOR:
        usage.append("this decoder never trained on N(0, I): feed it its encoder's codes (counterfeit project writes them)")
    usage.append("points (N, 2) float32, in the toy's own coordinates" if points else "images (N, C, H, W) float32 in pixel_range")
    meta = {
        "counterfeit_version": __version__, "run": run.run_dir.name, "checkpoint": run.checkpoint.name,
        "model": cfg.model.name, "z_dim": str(G.z_dim), "class_names": json.dumps(list(cfg.data.class_names or [])),
        "usage": "; ".join(usage),
    }  # fmt: skip
    if points:
        meta["point_data"] = cfg.data.name
    else:
        meta["pixel_range"] = json.dumps(list(run.spec.pixel_range))
        meta["image_shape"] = json.dumps([cfg.data.channels, cfg.data.resolution, cfg.data.resolution])
    model = program.model_proto
    got = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if got != opset:  # torch builds opset 18 and converts; a failed conversion leaves 18 with only a logged warning
        raise OnnxExportError(f"torch.onnx could not convert the graph to opset {opset} (it stayed at {got}); use --opset 18")
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    try:
        with atomic_path(out) as tmp:  # the graph appears whole or not at all
            onnx.save(model, str(tmp))
    except OSError as e:
        raise OnnxExportError(f"cannot write {out} ({e.strerror or e}); pick a writable --out path") from None
    return out
