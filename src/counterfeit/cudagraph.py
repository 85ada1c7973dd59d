"""Replaying a whole training step as one CUDA graph, so a small model's step costs one launch instead of hundreds."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from .config import ConfigError

# PyTorch's recipe for capturing a whole step: a few eager calls on a side stream first, so lazily created state
# (optimiser moments, cuDNN/cuBLAS workspaces, autograd's buffers) exists before capture fixes every address.
WARMUP_STEPS = 3


class StepGraph:
    """Call `step` eagerly for the first `warmup` calls, then capture it once in a CUDA graph and replay that.

    Every call is one real training step. `step` must read its changing inputs from tensors that it finds in the same
    place each time (filled in place before the call) and must not sync with the host: the graph replays the kernels
    the capture recorded, with the addresses and Python decisions of that call.
    """

    def __init__(self, step: Callable[[], None], warmup: int = WARMUP_STEPS):
        self.step, self.warmup = step, warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None

    def __call__(self) -> None:
        """Run one step: eagerly while warming up, then by replaying the graph (the first replay right after capture)."""
        if self.graph is None:
            if self.calls < self.warmup:
                self._eager()
            else:
                self.graph = self._capture()
        if self.graph is not None:
            self.graph.replay()
        self.calls += 1

    def _eager(self) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), warnings.catch_warnings():
            # The optimisers are built capturable for the capture to come; running them uncaptured here is on purpose.
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            self.step()
        torch.cuda.current_stream().wait_stream(side)

    def _capture(self) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.step()  # recorded, not run: __call__ replays it
        except RuntimeError as e:  # a host sync, a CPU tensor or an unsupported op in the step
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"--cuda-graphs could not capture this run's training step ({first}); rerun with --no-cuda-graphs") from e
        return graph


def set_lr(group: dict, lr: float) -> None:
    """Set a param group's learning rate; a tensor lr (a captured optimiser reads it at replay) is filled in place."""
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr


def make_capturable(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Let a graph capture `opt.step()`: capturable groups with the lr as a device tensor, so changing it needs no re-capture."""
    for group in opt.param_groups:
        group["capturable"] = True
        group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)  # () on the device
