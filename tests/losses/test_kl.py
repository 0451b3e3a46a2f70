import math

import pytest
import torch

from sae_kit.losses.kl import kl_divergence


def test_kl_matches_hand_computation_and_direction():
    p = torch.tensor([0.5, 0.5])
    q = torch.tensor([0.25, 0.75])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # KL(p || q)
    reverse = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # KL(q || p)
    got = kl_divergence(p.log()[None], q.log()[None]).item()
    assert got == pytest.approx(expected, rel=1e-6)
    assert got != pytest.approx(reverse, rel=1e-3)


def test_kl_is_mean_over_every_token_position():
    clean = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]))
    sae = torch.log(torch.tensor([[[0.25, 0.75], [0.9, 0.1]]]))
    first = 0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75)
    assert kl_divergence(clean, sae).item() == pytest.approx(first / 2, rel=1e-6)


def test_kl_is_shift_invariant_in_logits_and_zero_when_equal():
    logits = torch.randn(2, 3, 7)
    assert kl_divergence(logits, logits + 3.0).item() == pytest.approx(0.0, abs=1e-6)
