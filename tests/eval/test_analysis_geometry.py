"""Max cosine within and across dictionaries, the permutation test, ‖â‖/‖a‖ and cos(â, a),
output-token effects and initial decoders, against hand-computed values."""

import math

import pytest
import torch
from torch import nn

from sae_kit.eval.analysis import geometry
from sae_kit.eval.analysis.directions import (
    initial_decoder,
    nearest_features,
    output_token_effects,
)
from sae_kit.eval.analysis.geometry import (
    ActivationSums,
    max_cosine_across,
    max_cosine_within,
    permutation_test,
    same_index_cosine,
)
from sae_kit.model.hookpoints import HookPoint

S = 1 / math.sqrt(2)
# Columns: e1, e2, (e1 + e2)/sqrt2 scaled by 3 (norms must not matter), -e1.
A = torch.tensor([[1.0, 0.0, 3.0, -1.0], [0.0, 1.0, 3.0, 0.0]])


def test_max_cosine_within_by_hand():
    # e1: max(0, S, -1) = S; e2: max(0, S, 0) = S; diag: max(S, S, -S) = S; -e1: max(-1, 0, -S) = 0.
    assert max_cosine_within(A).tolist() == pytest.approx([S, S, S, 0.0])


def test_max_cosine_across_both_directions_by_hand():
    b = torch.tensor([[0.0, 2.0], [1.0, 0.0]])  # e2, e1 (scaled)
    assert max_cosine_across(A, b).tolist() == pytest.approx([1.0, 1.0, S, 0.0])
    assert max_cosine_across(b, A).tolist() == pytest.approx([1.0, 1.0])


def test_chunks_do_not_change_the_answer(monkeypatch):
    torch.manual_seed(0)
    a, b = torch.randn(8, 13), torch.randn(8, 9)
    within, across = max_cosine_within(a), max_cosine_across(a, b)
    monkeypatch.setattr(geometry, "CHUNK", 4)
    assert torch.allclose(max_cosine_within(a), within)
    assert torch.allclose(max_cosine_across(a, b), across)
    # Against the full matrix.
    an, bn = a / a.norm(dim=0), b / b.norm(dim=0)
    full = an.T @ an - 10 * torch.eye(13)
    assert torch.allclose(within, full.max(1).values, atol=1e-6)
    assert torch.allclose(across, (an.T @ bn).max(1).values, atol=1e-6)


def test_nearest_features_exclude_self():
    values, ids = nearest_features(A, k=2)
    assert ids[0].tolist() == [2, 1] and values[0].tolist() == pytest.approx([S, 0.0])
    assert (ids != torch.arange(4)[:, None]).all()


def test_same_index_cosine():
    b = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    assert same_index_cosine(A, b).tolist() == pytest.approx([1.0, S, S, -1.0])


def test_permutation_test():
    x = torch.tensor([1.0, 2.0, 3.0])
    # Identical samples: every permutation's |difference| >= 0, so p = 1.
    assert permutation_test(x, x.clone(), 200) == 1.0
    # Two values each side: of the 6 splits of {0, 0, 1, 1} only the observed one and its
    # mirror reach |diff| = 1, so p -> 2/6 with many permutations.
    p = permutation_test(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0]), 6000)
    assert p == pytest.approx(1 / 3, abs=0.03)
    far = permutation_test(torch.zeros(30), torch.ones(30) + 0.01 * torch.randn(30), 500)
    assert far == pytest.approx(1 / 501)  # the smallest p it can give


def test_activation_sums_by_hand():
    # Two rows, three positions, width 2.
    x = torch.tensor([[[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]],
                      [[6.0, 8.0], [2.0, 0.0], [0.0, 1.0]]])
    x_hat = torch.tensor([[[0.0, 5.0], [0.5, 0.0], [0.0, -1.0]],
                          [[6.0, 8.0], [0.0, 1.0], [0.0, 2.0]]])
    sums = ActivationSums()
    sums.add(x[:1], x_hat[:1])
    sums.add(x[1:], x_hat[1:])
    per = sums.per_position()
    # Ratios: row 0: 1, 0.5, 0.5; row 1: 1, 0.5, 2. Cosines: row 0: 0.8, 1, -1; row 1: 1, 0, 1.
    assert per["l2_ratio"] == pytest.approx([1.0, 0.5, 1.25])
    assert per["cosine"] == pytest.approx([0.9, 0.5, 0.0])
    summary = sums.summary()  # position 0 left out
    assert summary["l2_ratio"] == pytest.approx((0.5 + 0.5 + 0.5 + 2) / 4)
    assert summary["cosine"] == pytest.approx((1 + 0 - 1 + 1) / 4)


def test_output_token_effects_fold_the_final_layer_norm():
    torch.manual_seed(0)
    unembed = nn.Linear(3, 5, bias=True)
    norm = nn.LayerNorm(3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([2.0, 1.0, 0.5]))
    directions = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    effects = output_token_effects(directions, unembed, norm, k=2)
    for j in range(2):
        d = directions[:, j] / directions[:, j].norm()
        folded = (d - d.mean()) * norm.weight.detach()
        logits = unembed.weight.detach() @ folded  # the bias is left out
        top = logits.topk(2)
        assert effects["top_ids"][j].tolist() == top.indices.tolist()
        assert effects["top_values"][j].tolist() == pytest.approx(top.values.tolist(), abs=1e-6)
        bottom = logits.topk(2, largest=False)
        assert effects["bottom_ids"][j].tolist() == bottom.indices.tolist()


def test_initial_decoder_is_the_one_training_starts_from():
    from sae_kit.record.config import TrainConfig
    from sae_kit.train.build import build_saes

    config = TrainConfig(loss="local", hook_points=["blocks.1.hook_resid_pre",
                                                    "blocks.2.hook_resid_pre"], seed=7)
    torch.manual_seed(123)  # whatever the global state, the rebuilt decoder is the same
    saes = build_saes(config, dict.fromkeys(config.hook_points, 16), n_dict=48,
                      device=torch.device("cpu"))
    state = torch.random.get_rng_state()
    for hp, sae in saes.items():
        rebuilt = initial_decoder({"d_in": 16, "n_dict": 48}, config, hp)
        assert torch.equal(rebuilt, sae.W_dec.detach())
    assert torch.equal(torch.random.get_rng_state(), state)  # and the global RNG is untouched
    assert initial_decoder({"d_in": 16, "n_dict": 48}, None, HookPoint(1)) is None
