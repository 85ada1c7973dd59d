"""The 2D playground: a small GAN on a toy mixture, trained in-process a few steps per request.

The page asks for `steps` more steps and gets back the fixed-noise fakes, D's verdict over the view and the
modes covered; pausing is just not asking. So nothing trains in the background, and a closed tab costs
nothing once its session expires. Sessions are bounded in number and age.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from typing import Any

import torch

from ..config import MAX_SEED, make_config
from ..data.toys import TOY_DATASETS, load_toy, toy_modes
from ..losses import LOSSES, build_loss
from ..metrics.toy import toy_metrics
from ..models import build_models
from ..train import d_step, g_step
from .params import Params, StudioError

MAX_SESSIONS = 16
SESSION_TTL_S = 30 * 60  # an idle session is dropped after this
MAX_STEPS = 200  # per request: about 4 s on one busy CPU core
N_FAKES = 2500  # the PacGAN/VEEGAN sample count, also what the modes counter judges
N_SHOWN = 1000  # of those, drawn on the page
HEAT = 48  # D's verdict on a HEAT x HEAT grid over the view
# Remedies against mode collapse, as config overrides of the mlp pair.
REMEDIES = {
    "none": {},
    "spectral-norm": {"spectral_norm": True},
    "minibatch-std": {"mbstd": True},
    "pacgan": {"pack": 2},
    "r1": {"r1_gamma": 1.0},
    "ttur": {"lr_g": 2.5e-4, "lr_d": 1e-3},
}
# Smaller than the benchmark's 4x400 / 3x200 nets: 128 wide first covers all 8 ring8 modes after 700-1,150 steps at
# ~18 ms a step on one shared core, against ~57 ms for the full size (measured; see the README).
# Raw coordinates, as when those step counts were measured (the benchmark's standardised units want a lower lr).
_NETS = {"g_width": 128, "d_width": 128, "batch_size": 128, "standardise": False}
_VIEW = {"ring8": 1.6, "grid25": 5.5, "ducks-cows": 2.2}  # half-width of the square view


_BUILD_LOCK = threading.Lock()


class Session:
    """One playground game: G, D, their optimisers, the data and a step counter."""

    def __init__(self, data: str, loss: str, remedy: str, seed: int, lr: float):
        self.id = secrets.token_hex(8)
        self.data, self.loss_name, self.remedy, self.seed, self.lr = data, loss, remedy, seed, lr
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.reset()

    def reset(self) -> None:
        """Fresh networks and optimisers from the session's seed."""
        opts = {"lr_g": self.lr, "lr_d": self.lr, **REMEDIES[self.remedy]}
        self.cfg = make_config(data=self.data, loss=self.loss_name, seed=self.seed, **_NETS, **opts)
        # Seeded weights from the global RNG (build_models draws from it): forked so nothing else sees the reseed, and
        # under a lock so two sessions built at once cannot draw from each other's seed.
        with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.G, self.D = build_models(self.cfg)
        O = self.cfg.optim
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=O.lr_g, betas=(O.beta1, O.beta2))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=O.lr_d, betas=(O.beta1, O.beta2))
        self.loss = build_loss(self.cfg.loss)
        self.reals = load_toy(self.data, 20_000, seed=self.seed).x  # (20000, 2)
        self.rng = torch.Generator().manual_seed(self.seed + 1)
        self.z_show = torch.randn(N_FAKES, self.G.z_dim, generator=torch.Generator().manual_seed(12345))  # (2500, z_dim) fixed
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.last: dict[str, float] = {}

    def train(self, steps: int) -> None:
        """`steps` D-then-G updates on fresh batches (none once the game has diverged)."""
        if self.diverged:
            raise StudioError("this game diverged (a loss became NaN or infinite); press Reset, or pick a lower learning rate", 409)
        B = self.cfg.loop.batch_size
        self.G.train()
        for _ in range(steps):
            idx = torch.randint(len(self.reals), (B,), generator=self.rng)  # (B,)
            z = torch.randn(B, self.G.z_dim, generator=self.rng)  # (B, z_dim)
            loss_D, real_logits, fake_logits = d_step(self.G, self.D, self.opt_D, self.loss, self.reals[idx], z)
            z = torch.randn(B, self.G.z_dim, generator=self.rng)  # (B, z_dim)
            loss_G, _ = g_step(self.G, self.D, self.opt_G, self.loss, z)
            self.step += 1
        if steps:
            self.last = {"loss_D": float(loss_D), "loss_G": float(loss_G),
                         "D(x)": float(torch.sigmoid(real_logits).mean()), "D(G(z))": float(torch.sigmoid(fake_logits).mean())}  # fmt: skip

    @property
    def diverged(self) -> bool:
        """True once a loss is NaN or infinite: more steps cannot bring the game back, only Reset."""
        return any(not math.isfinite(v) for v in self.last.values())

    @torch.no_grad()
    def view(self, with_reals: bool = False) -> dict[str, Any]:
        """What the page draws: fakes from fixed noise, D's heat map, modes covered, losses (and the reals when asked)."""
        self.G.eval()
        fakes = self.G(self.z_show)  # (2500, 2)
        self.G.train()
        m = toy_metrics(fakes, self.data)
        lim = _VIEW[self.data]
        if not self.history or self.history[-1]["step"] != self.step:
            losses = {k: v for k, v in self.last.items() if math.isfinite(v)}
            self.history.append({"step": self.step, "modes": m["modes_covered"], "hq": round(m["high_quality_pct"], 1), **losses})
            del self.history[:-500]
        out = {
            "id": self.id, "data": self.data, "loss": self.loss_name, "remedy": self.remedy, "seed": self.seed, "lr": self.lr,
            "step": self.step, "lim": lim, "fakes": _round(fakes[:N_SHOWN]),
            "heat": {"n": HEAT, "values": self._heat(lim)},
            "modes": {"covered": m["modes_covered"], "total": m["modes_total"], "high_quality_pct": round(m["high_quality_pct"], 1),
                      "histogram": m["mode_histogram"]},
            "last": {k: round(v, 4) if math.isfinite(v) else None for k, v in self.last.items()}, "history": self.history[-200:],
            "diverged": self.diverged,
        }  # fmt: skip
        if with_reals:
            out["reals"] = _round(self.reals[:N_SHOWN])
            out["centres"] = _round(toy_modes(self.data)[0])
        return out

    def _heat(self, lim: float) -> list[float]:
        """D's verdict in [0, 1] on a grid over the view, top row first: sigmoid of the logit for the cross-entropy losses,
        else the logit scaled by its largest magnitude on the grid (those losses' logits are no probabilities)."""
        axis = torch.linspace(-lim, lim, HEAT)
        yy, xx = torch.meshgrid(axis.flip(0), axis, indexing="ij")
        grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)  # (HEAT^2, 2)
        grid = grid.repeat_interleave(self.cfg.model.pack, 0)  # PacGAN's D judges packs: a pack of one point repeated
        self.D.eval()  # judging must not refine spectral norm's estimate (the mlp D has no other train-mode layer)
        logits = self.D(grid)  # (HEAT^2,)
        self.D.train()
        if self.loss_name in ("ns", "minimax"):
            v = torch.sigmoid(logits)
        else:
            v = 0.5 + 0.5 * logits / logits.abs().max().clamp_min(1e-6)
        return [round(float(a), 3) if math.isfinite(a) else 0.5 for a in v.tolist()]  # a NaN verdict shows as undecided


def _round(x: torch.Tensor) -> list[list[float]]:
    return [[round(float(a), 3), round(float(b), 3)] for a, b in x.tolist() if math.isfinite(a) and math.isfinite(b)]


class Playground:
    """The open sessions, at most MAX_SESSIONS; the least recently used one makes room for a new one."""

    def __init__(self):
        self.sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, params: Params) -> Session:
        """A new session from data, loss, remedy, seed, lr."""
        options = dict(
            data=params.choice("data", "ring8", TOY_DATASETS),
            loss=params.choice("loss", "ns", list(LOSSES)),
            remedy=params.choice("remedy", "none", list(REMEDIES)),
            seed=params.int("seed", 0, 0, MAX_SEED),
            lr=params.float("lr", 1e-3, 1e-6, 0.1),
        )
        params.done()  # unknown parameters are refused before any model or data is built
        s = Session(**options)
        with self._lock:
            self._expire()
            while len(self.sessions) >= MAX_SESSIONS:
                oldest = min(self.sessions.values(), key=lambda x: x.last_used)
                del self.sessions[oldest.id]
            self.sessions[s.id] = s
        return s

    def get(self, session_id: Any) -> Session:
        """A session by id, or a 404 that says to start a new one."""
        with self._lock:
            self._expire()
            s = self.sessions.get(session_id) if isinstance(session_id, str) else None
        if s is None:
            raise StudioError("no such playground session (it may have expired); press Reset to start a new one", 404)
        s.last_used = time.monotonic()
        return s

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [k for k, s in self.sessions.items() if now - s.last_used > SESSION_TTL_S]:
            del self.sessions[sid]
