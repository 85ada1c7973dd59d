"""Losses: known values on known logits, the saturation that motivates the non-saturating loss, and the penalties."""

import math

import pytest
import torch
from torch import nn

from counterfeit.config import ConfigError, LossConfig
from counterfeit.losses import WGANGPLoss, build_loss, gradient_penalty, r1_penalty


def test_values_at_indifference():
    zero = torch.zeros(4)
    for name in ("ns", "minimax"):
        assert build_loss(name).d_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert build_loss("ns").g_loss(zero).item() == pytest.approx(math.log(2))
    assert build_loss("minimax").g_loss(zero).item() == pytest.approx(-math.log(2))


def test_d_loss_rewards_a_correct_discriminator():
    loss = build_loss("ns")
    good = loss.d_loss(torch.full((4,), 5.0), torch.full((4,), -5.0))
    bad = loss.d_loss(torch.full((4,), -5.0), torch.full((4,), 5.0))
    assert good < 0.1 < 5 < bad


def test_minimax_saturates_where_ns_does_not():
    """When D confidently rejects the fakes (logit -8), minimax gives G almost no gradient; NS still does."""
    grads = {}
    for name in ("ns", "minimax"):
        logits = torch.full((4,), -8.0, requires_grad=True)
        build_loss(name).g_loss(logits).backward()
        grads[name] = logits.grad.abs().sum().item()
    assert grads["minimax"] < 1e-3 < 0.9 < grads["ns"]


def test_unknown_loss():
    with pytest.raises(ConfigError, match="choose one of"):
        build_loss("wasserstein-ish")


# ---------------------------------------------------------------- lsgan, hinge, wgan-gp on known logits

REAL, FAKE = torch.tensor([0.0, 3.0]), torch.tensor([2.0, -1.0])


@pytest.mark.parametrize(
    "name,d_value,g_value",
    [
        ("lsgan", 0.5 * (1 + 4) / 2 + 0.5 * (4 + 1) / 2, 0.5 * (1 + 4) / 2),  # 0.5 E[(r-1)^2] + 0.5 E[f^2]; 0.5 E[(f-1)^2]
        ("hinge", (1 + 0) / 2 + (3 + 0) / 2, -0.5),  # E[relu(1-r)] + E[relu(1+f)]; -E[f]
        ("wgan-gp", 0.5 - 1.5, -0.5),  # E[f] - E[r] (penalty apart); -E[f]
        ("ns", (math.log1p(1) + math.log1p(math.exp(-3))) / 2 + (math.log1p(math.exp(2)) + math.log1p(math.exp(-1))) / 2,
         (math.log1p(math.exp(-2)) + math.log1p(math.exp(1))) / 2),
    ],
)  # fmt: skip
def test_loss_values_on_known_logits(name, d_value, g_value):
    loss = build_loss(name)
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(d_value)
    assert loss.g_loss(FAKE).item() == pytest.approx(g_value)


def test_losses_at_their_targets():
    assert build_loss("lsgan").d_loss(torch.ones(3), torch.zeros(3)).item() == 0
    assert build_loss("lsgan").g_loss(torch.ones(3)).item() == 0
    assert build_loss("hinge").d_loss(torch.full((3,), 1.5), torch.full((3,), -1.5)).item() == 0  # beyond the margin: no push


def test_every_loss_gives_g_a_gradient_where_d_rejects_fakes():
    for name in ("ns", "lsgan", "hinge", "wgan-gp"):
        logits = torch.full((4,), -8.0, requires_grad=True)
        build_loss(name).g_loss(logits).backward()
        assert logits.grad.abs().sum() > 0.5, name


def test_build_loss_from_a_config():
    loss = build_loss(LossConfig(name="wgan-gp", gp_weight=3.0, r1_gamma=0.5, diffaug="cutout"))
    assert isinstance(loss, WGANGPLoss) and (loss.gp_weight, loss.r1_gamma, loss.diffaug) == (3.0, 0.5, "cutout")
    plain = build_loss("hinge")
    assert plain.r1_gamma == 0 and plain.diffaug == "" and plain.d_reg(None, None, None) is None
    x = torch.randn(2, 1, 4, 4)
    assert plain.augment(x) is x


# ---------------------------------------------------------------- gradient penalty and R1 on analytic critics


class LinearCritic(nn.Module):
    """D(x) = sum(a * x) per sample (per pack of `pack` samples): its input gradient is `a`, whatever x is."""

    def __init__(self, a, pack=1):
        super().__init__()
        self.a, self.pack = nn.Parameter(a), pack

    def forward(self, x, labels=None):
        return (self.a * x).reshape(x.shape[0] // self.pack, -1).sum(1)


class QuadraticCritic(nn.Module):
    """D(x) = |x|^2 / 2 per sample: its input gradient is x itself; remembers the last input."""

    def forward(self, x, labels=None):
        self.seen = x.detach().clone()
        return 0.5 * x.square().flatten(1).sum(1)


def _rows_with_norms(norms, shape):
    """(B, *shape) tensor whose row i has L2 norm norms[i], spread over every element (not a per-pixel unit vector)."""
    a = torch.randn(len(norms), *shape)
    return a / a.flatten(1).norm(dim=1).view(-1, *[1] * len(shape)) * torch.tensor(norms).view(-1, *[1] * len(shape))


@pytest.mark.parametrize("shape", [(3, 4, 4), (2,)], ids=["images", "points"])
def test_gradient_penalty_norm_is_over_all_dims_but_the_batch(shape):
    norms = [1.0, 2.0, 0.5, 3.0]
    D = LinearCritic(_rows_with_norms(norms, shape))
    real, fake = torch.randn(4, *shape), torch.randn(4, *shape)
    expect = sum((n - 1) ** 2 for n in norms) / 4  # a per-pixel (or per-channel) norm would give another number
    assert gradient_penalty(D, real, fake).item() == pytest.approx(expect, rel=1e-5)


def test_gradient_penalty_trains_d_and_leaves_the_inputs_alone():
    a = _rows_with_norms([2.0, 0.5], (1, 3, 3))
    D = LinearCritic(a.clone())
    real, fake = torch.randn(2, 1, 3, 3, requires_grad=True), torch.randn(2, 1, 3, 3)
    gradient_penalty(D, real, fake).backward()  # needs create_graph: the penalty is a function of D's weights
    n = a.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(D.a.grad, 2 * (n - 1) * a / n / 2, atol=1e-6)  # d/da mean((|a_i| - 1)^2)
    assert real.grad is None


def test_gradient_penalty_draws_one_eps_per_sample():
    """Interpolating an all-ones real with an all-zeros fake gives eps itself: it must be flat within each sample."""
    D = QuadraticCritic()
    torch.manual_seed(0)
    penalty = gradient_penalty(D, torch.ones(16, 1, 4, 4), torch.zeros(16, 1, 4, 4))
    eps = D.seen.flatten(1)  # (16, 16)
    assert torch.equal(eps, eps[:, :1].expand_as(eps))  # one value per sample, not per pixel
    assert eps[:, 0].unique().numel() == 16 and 0 <= eps.min() and eps.max() <= 1  # but a fresh one for each sample
    # grad D(x_hat) = x_hat = eps * ones, so the norm is 4 * eps: a per-pixel eps would not give this.
    assert penalty.item() == pytest.approx(((4 * eps[:, 0] - 1) ** 2).mean().item(), rel=1e-5)


def test_gradient_penalty_treats_a_pack_as_one_input():
    a = _rows_with_norms([0.6, 0.8, 2.0, 0.0], (1, 2, 2))  # packs {0, 1} and {2, 3} have norms 1 and 2
    D = LinearCritic(a, pack=2)
    assert gradient_penalty(D, torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)).item() == pytest.approx((0 + 1) / 2, rel=1e-5)
    Q = QuadraticCritic()
    Q.pack = 2
    gradient_penalty(Q, torch.ones(4, 1, 2, 2), torch.zeros(4, 1, 2, 2))
    assert Q.seen[0, 0, 0, 0] == Q.seen[1, 0, 0, 0] and Q.seen[2, 0, 0, 0] == Q.seen[3, 0, 0, 0]  # one eps per pack


def test_r1_penalty_on_analytic_critics():
    norms = [1.0, 2.0, 3.0]
    a = _rows_with_norms(norms, (1, 4, 4))
    D = LinearCritic(a.clone())
    r1 = r1_penalty(D, torch.randn(3, 1, 4, 4))
    assert r1.item() == pytest.approx((1 + 4 + 9) / 3, rel=1e-5)  # E[|grad|^2] = E[|a_i|^2]
    r1.backward()
    assert torch.allclose(D.a.grad, 2 * a / 3, atol=1e-6)  # it trains D: d/da mean(|a_i|^2)
    x = torch.randn(5, 2)
    assert r1_penalty(QuadraticCritic(), x).item() == pytest.approx(x.square().sum(1).mean().item(), rel=1e-5)  # grad = x


def test_d_reg_weights():
    a = _rows_with_norms([2.0, 2.0], (1, 2, 2))  # |a| = 2: GP (2-1)^2 = 1 and R1 |a|^2 = 4 for any real and fake
    D, real, fake = LinearCritic(a), torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2)
    assert build_loss(LossConfig(name="ns", r1_gamma=0.5)).d_reg(D, real, fake).item() == pytest.approx(0.25 * 4)
    assert build_loss(LossConfig(name="wgan-gp")).d_reg(D, real, fake).item() == pytest.approx(10 * 1)
    both = build_loss(LossConfig(name="wgan-gp", gp_weight=2.0, r1_gamma=1.0))
    assert both.d_reg(D, real, fake).item() == pytest.approx(2 * 1 + 0.5 * 4)


def test_mode_seeking_term_punishes_repeats():
    from counterfeit.config import make_config

    loss = build_loss(LossConfig(ms_weight=2.0))
    z = torch.randn(8, 4)  # (8, 4)
    repeated = torch.zeros(8, 1, 4, 4, requires_grad=True)  # every noise gives the same image
    varied = torch.randn(8, 1, 4, 4)
    assert loss.ms_loss(repeated, z) > 1e4 > loss.ms_loss(varied, z) > 0
    d_img = (varied[:4] - varied[4:]).abs().flatten(1).mean(1)
    assert torch.isclose(loss.ms_loss(varied, z), 2.0 / ((d_img / (z[:4] - z[4:]).abs().mean(1)).mean() + 1e-5))
    (loss.ms_loss(repeated + 1e-3 * torch.randn(8, 1, 4, 4), z)).backward()
    assert repeated.grad.abs().sum() > 0  # the gradient pushes the pair apart
    assert make_config(ms_weight=1.0).loss.ms_weight == 1.0


def test_recall_term_is_the_squared_distance_to_the_nearest_fake():
    loss = build_loss(LossConfig(recall_weight=3.0))
    real = torch.tensor([[0.0, 0.0], [10.0, 0.0]])  # (2, 2)
    fake = torch.tensor([[1.0, 0.0], [0.0, 2.0], [7.0, 4.0]], requires_grad=True)  # (3, 2)
    # nearest fakes: 1 away and 5 away; per dimension of a 2-d point: 3 * (1 + 25) / 2 / 2
    assert loss.recall_loss(real, fake).item() == pytest.approx(3.0 * (1 + 25) / 2 / 2)
    loss.recall_loss(real, fake).backward()
    assert fake.grad[1].abs().sum() == 0  # only the nearest fakes are pulled...
    assert fake.grad[0, 0] > 0 and fake.grad[2, 0] < 0  # ...towards their reals
    # with labels each real only looks at fakes of its own class; a real whose class no fake drew sits out
    labels_real, labels_fake = torch.tensor([1, 2]), torch.tensor([0, 1, 0])
    assert loss.recall_loss(real, fake, labels_real, labels_fake).item() == pytest.approx(3.0 * 2**2 / 2)  # (0, 2) for the first
    none = loss.recall_loss(real, fake, torch.tensor([5, 5]), labels_fake)
    assert none.item() == 0 and none.requires_grad


class _MLPG(torch.nn.Module):
    """A tiny unconditional generator z (N, 2) -> (N, 2)."""

    z_dim = 2

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    def forward(self, z, labels=None):
        return self.net(z)


class _IndifferentD(torch.nn.Module):
    """A frozen D that gives every point logit 0, so only the recall term can move G."""

    def forward(self, x, labels=None):
        return x.sum(1) * 0.0


def test_recall_term_revives_an_empty_mode():
    from counterfeit.train import RecallBatch, g_step

    torch.manual_seed(0)
    G, D = _MLPG(), _IndifferentD()
    loss = build_loss(LossConfig(recall_weight=1.0))
    opt = torch.optim.Adam(G.parameters(), lr=1e-2)
    real, pool = torch.full((8, 2), 5.0), torch.randn(32, 2)  # reals at (5, 5), where G draws nothing yet

    def gap():
        with torch.no_grad():
            return torch.cdist(real, G(torch.cat([torch.randn(8, 2), pool]))).min().item()

    before = gap()
    for _ in range(50):
        g_step(G, D, opt, loss, torch.randn(8, 2), None, RecallBatch(real, None, pool, None))
    assert gap() < 0.5 * before


def test_gradient_penalty_leaves_the_fakes_alone():
    """The penalty's interpolates are made from detached fakes: no gradient may reach G through them."""

    class Quadratic(nn.Module):  # grad D(x) = x, so the penalty depends on the interpolate and through it on the fake
        def forward(self, x, labels=None):
            return 0.5 * x.square().flatten(1).sum(1)  # (N,)

    fake = torch.randn(2, 1, 3, 3, requires_grad=True)  # (N, C, H, W)
    gradient_penalty(Quadratic(), torch.randn(2, 1, 3, 3), fake).backward()
    assert fake.grad is None
