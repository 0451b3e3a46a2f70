"""Recovery metrics against a known ground truth (sae_kit.eval.ground_truth): a perfect
dictionary scores 1, a random one its analytic chance level, and each subset is scored apart."""

from __future__ import annotations

import pytest
import torch

from sae_kit.eval.ground_truth import chance_mmcs, cosines, matched_cosines, recovery
from sae_kit.model.source import GroundTruth


def _truth(n: int = 96, d: int = 24, n_functional: int = 32, seed: int = 0) -> GroundTruth:
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(n, d, generator=g)
    directions = directions / directions.norm(dim=1, keepdim=True)
    return GroundTruth(directions, torch.arange(n) < n_functional, torch.full((n,), 0.01))


def test_the_true_decoder_scores_one_everywhere():
    truth = _truth()
    # shuffled and rescaled columns: the metrics see directions, not order or norm
    order = torch.randperm(96, generator=torch.Generator().manual_seed(1))
    decoder = (truth.directions[order] * 3.0).T
    result = recovery(truth, decoder)
    for subset in ("all", "functional", "rest"):
        assert result[subset]["mmcs"] == pytest.approx(1.0, abs=1e-5)
        assert result[subset]["mcc"] == pytest.approx(1.0, abs=1e-5)
        assert result[subset]["recovered"] == 1.0
    assert result["mmcs_back"] == pytest.approx(1.0, abs=1e-5)
    assert result["functional"]["n"] == 32 and result["rest"]["n"] == 64


def test_a_random_dictionary_scores_its_analytic_chance_level():
    truth = _truth(n=400, d=24)
    decoder = torch.randn(24, 200, generator=torch.Generator().manual_seed(2))
    result = recovery(truth, decoder)
    assert result["chance_mmcs"] == pytest.approx(chance_mmcs(24, 200))
    assert result["all"]["mmcs"] == pytest.approx(chance_mmcs(24, 200), abs=0.02)
    assert result["mmcs_back"] == pytest.approx(chance_mmcs(24, 400), abs=0.02)
    assert result["all"]["recovered"] == 0.0
    assert result["all"]["mcc"] < result["all"]["mmcs"]  # one latent cannot serve two features


def test_chance_level_matches_a_monte_carlo_estimate():
    g = torch.Generator().manual_seed(3)
    for d, n in ((3, 1), (8, 50), (64, 1000)):
        fixed = torch.zeros(d)
        fixed[0] = 1
        draws = torch.randn(max(200, 20_000 // n), n, d, generator=g)
        cos = (draws / draws.norm(dim=-1, keepdim=True)) @ fixed
        assert chance_mmcs(d, n) == pytest.approx(float(cos.max(dim=1).values.mean()), abs=0.02)
    assert chance_mmcs(8, 1) == pytest.approx(0.0, abs=1e-6)  # one random vector: E[cos] = 0


def test_a_dictionary_of_f_only_recovers_f_and_spends_every_latent_there():
    truth = _truth()
    decoder = truth.directions[truth.functional].T
    result = recovery(truth, decoder)
    assert result["functional"]["recovered"] == 1.0 and result["rest"]["recovered"] < 0.2
    assert result["latents_on_functional"] == 1.0
    assert result["rest"]["mcc"] == 0.0  # fewer latents than features: the rest go unmatched


def test_matching_credits_a_latent_once():
    # two true features, two latents both on feature 0: max-cosine credits feature 0 twice
    # over, the matching gives one latent to feature 1 (cosine 0 with it)
    cos = cosines(torch.eye(2), torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert matched_cosines(cos).tolist() == [1.0, 0.0]


def test_dead_latents_are_left_out():
    truth = _truth()
    decoder = torch.cat([truth.directions.T, torch.randn(24, 96)], dim=1)
    alive = torch.arange(192) >= 96  # only the random half fires
    assert recovery(truth, decoder)["all"]["recovered"] == 1.0
    result = recovery(truth, decoder, alive)
    assert result["n_latents"] == 96 and result["all"]["recovered"] == 0.0
    assert recovery(truth, decoder, torch.zeros(192, dtype=torch.bool))["all"]["mmcs"] == 0.0
