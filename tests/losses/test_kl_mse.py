"""The kl+mse loss's balancing rule, on constructed numbers (training with it: test_init_from)."""

from __future__ import annotations

import math

import pytest

from sae_kit.errors import SaeKitError
from sae_kit.losses.kl_mse import KLMSELoss


def feed(loss: KLMSELoss, rows: list[tuple[float, float, float]], penalised: bool = True):
    for mse, kl, l0 in rows:
        loss._update(mse, kl, l0, penalised)
    return loss.balance


def test_beta_is_the_mse_to_kl_ratio_of_the_window_then_fixed():
    loss = KLMSELoss(1.0, balance_steps=2)
    b = feed(loss, [(2.0, 0.1, 10.0)])
    assert b.kl_scale == pytest.approx(20.0)  # measured so far
    b = feed(loss, [(4.0, 0.1, 10.0)])
    assert b.kl_scale == pytest.approx(30.0)  # (2 + 4) / (0.1 + 0.1)
    # with w = 0.5 the two terms then add up to the window's mean MSE: the MSE phase's scale
    assert 0.5 * 3.0 + 0.5 * b.kl_scale * 0.1 == pytest.approx(3.0)
    b = feed(loss, [(100.0, 0.001, 10.0)] * 5)
    assert b.kl_scale == pytest.approx(30.0)  # fixed after the window


def test_an_explicit_kl_coeff_overrides_the_rule():
    b = feed(KLMSELoss(1.0, kl_coeff=7.5, balance_steps=2), [(2.0, 0.1, 10.0)] * 4)
    assert b.kl_scale == 7.5


def test_lambda_moves_only_outside_half_the_band_and_in_the_right_direction():
    loss = KLMSELoss(1.0, balance_steps=2, l0_tolerance=0.1, l0_rate=0.1)
    b = feed(loss, [(1.0, 0.1, 10.0), (1.0, 0.1, 10.0)])
    assert b.l0_target == 10.0 and b.lambda_scale == 1.0
    b = feed(loss, [(1.0, 0.1, 10.3)] * 20)  # 3% over: inside half the 10% band
    assert b.lambda_scale == 1.0
    b = feed(loss, [(1.0, 0.1, 14.0)] * 20)  # L0 too high: sparsity tightens
    high = b.lambda_scale
    assert high > 1.0
    b = feed(loss, [(1.0, 0.1, 6.0)] * 60)  # too low: it loosens again
    assert b.lambda_scale < high and b.l0_ema < 10.0


def test_topk_and_a_zero_tolerance_leave_lambda_alone():
    for loss, penalised in ((KLMSELoss(1.0, balance_steps=1), False),
                            (KLMSELoss(1.0, balance_steps=1, l0_tolerance=0), True)):
        b = feed(loss, [(1.0, 0.1, 10.0)] + [(1.0, 0.1, 30.0)] * 10, penalised)
        assert b.lambda_scale == 1.0


def test_the_balance_round_trips_through_its_state():
    loss = KLMSELoss(1.0, balance_steps=2, l0_tolerance=0.01)
    feed(loss, [(1.0, 0.2, 10.0), (3.0, 0.2, 10.0), (1.0, 0.2, 13.0)])
    again = KLMSELoss(1.0, balance_steps=2, l0_tolerance=0.01)
    again.load_state_dict(loss.state_dict())
    assert again.balance == loss.balance and math.isfinite(again.balance.lambda_scale)


@pytest.mark.parametrize("option", [{"kl_coeff": 0}, {"kl_weight": 1.5}, {"balance_steps": 0},
                                    {"l0_tolerance": 1}, {"l0_rate": 0}])
def test_bad_options_are_one_line(option):
    with pytest.raises(SaeKitError, match="invalid kl\\+mse options"):
        KLMSELoss(1.0, **option)


def test_one_call_reads_the_device_once(tiny_gpt2, monkeypatch):
    """The balancing rule's numbers (mse, KL, every SAE's L0) come to the host in one read."""
    import sys

    import torch

    from sae_kit.architectures.relu import ReluSAE
    from sae_kit.model.hookpoints import HookPoint
    from sae_kit.model.loading import load_model
    from sae_kit.model.splice import Splice

    loaded = load_model(str(tiny_gpt2))
    torch.manual_seed(0)
    saes = {HookPoint(1): ReluSAE(32, 64), HookPoint(2): ReluSAE(32, 64)}
    splice, ids = Splice(loaded.model, loaded.adapter, saes), torch.randint(0, 512, (2, 12))
    reads: list[str] = []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("sae_kit.losses"):  # the model's own reads are not the loss's
                reads.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    result = KLMSELoss(1.0)(splice, ids)
    monkeypatch.undo()
    assert reads == ["tolist"]
    assert torch.isfinite(result.loss)
