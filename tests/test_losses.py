"""Losses: known values at D's indifference point and the saturation that motivates the non-saturating loss."""

import math

import pytest
import torch

from counterfeit.config import ConfigError
from counterfeit.losses import build_loss


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
