"""The synthetic model plugin (plugins/sae-kit-synthetic): the generator's statistics as
documented in its module, a downstream network that reads only F, bad options, and training on
it from the CLI with local and e2e."""

from __future__ import annotations

import itertools

import pytest
import torch
from sae_kit_synthetic.generator import FeatureGenerator, context_keys, zipf_rates
from sae_kit_synthetic.network import SyntheticModel
from sae_kit_synthetic.options import SyntheticOptions, parse
from sae_kit_synthetic.source import SyntheticSource
from typer.testing import CliRunner

from sae_kit import data
from sae_kit.cli import app
from sae_kit.errors import SaeKitError
from sae_kit.model.loading import load_model
from sae_kit.model_names import source_ref
from sae_kit.store.run_dir import RunDir
from tests.helpers import first_windows

SMALL = "synthetic:n_features=64,d_model=16,n_functional=16,d_functional=4,vocab=32,context=16"
TOKENS = 200_000


def _keys(n: int = TOKENS, seed: int = 0) -> torch.Tensor:
    ids = torch.randint(0, 1 << 30, (n,), generator=torch.Generator().manual_seed(seed))
    return context_keys(ids.unsqueeze(1), 1 << 30, seed).squeeze(1)


def test_firing_rates_follow_zipf_and_sum_to_the_true_l0():
    rates = zipf_rates(512, 4.0, 1.0)
    assert float(rates.sum()) == pytest.approx(4.0, rel=1e-6)
    ordered = rates.sort(descending=True).values
    assert float(ordered[0] / ordered[9]) == pytest.approx(10.0, rel=1e-4)  # r^-1


@pytest.mark.slow  # statistics over many samples: 40-100 s on a loaded 2-core box
def test_generated_codes_match_the_documented_statistics():
    options = SyntheticOptions(n_features=256, d_model=32, n_functional=64, d_functional=8)
    gen = FeatureGenerator(options)
    codes = gen.codes(_keys())
    fires = codes > 0
    empirical = fires.float().mean(0)
    # every rate within 4 binomial standard deviations (plus a floor for the rarest)
    sigma = (gen.rates * (1 - gen.rates) / TOKENS).sqrt()
    assert bool(((empirical - gen.rates).abs() <= 4 * sigma + 1e-4).all())
    assert float(fires.sum(1).float().mean()) == pytest.approx(options.active, rel=0.02)
    active = codes[fires]
    assert float(active.min()) >= 0.5 and float(active.max()) < 1.5
    assert float(active.mean()) == pytest.approx(1.0, abs=0.01)
    # superposition: N unit directions in d < N dimensions; F orthogonal to the rest
    norms = gen.directions.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert gen.directions.shape == (256, 32)
    f, rest = gen.directions[gen.functional], gen.directions[~gen.functional]
    assert float((f @ rest.T).abs().max()) < 1e-5
    assert int(gen.functional.sum()) == 64 and torch.linalg.matrix_rank(f) == 8


@pytest.mark.slow  # statistics over many samples: 40-100 s on a loaded 2-core box
def test_children_fire_only_with_their_parent_at_their_own_rate():
    options = SyntheticOptions(n_features=128, d_model=32, n_functional=32, d_functional=8,
                               hierarchy=0.25)
    gen = FeatureGenerator(options)
    fires = gen.codes(_keys()) > 0
    children = (gen.parent >= 0).nonzero().squeeze(1)
    assert len(children) == 32
    parents = gen.parent[children]
    assert bool((gen.rates[parents] >= gen.rates[children]).all())
    assert not bool((fires[:, children] & ~fires[:, parents]).any())
    empirical = fires[:, children].float().mean(0)
    sigma = (gen.rates[children] * (1 - gen.rates[children]) / TOKENS).sqrt()
    assert bool(((empirical - gen.rates[children]).abs() <= 4 * sigma + 1e-4).all())


@pytest.mark.slow  # statistics over many samples: 40-100 s on a loaded 2-core box
def test_correlated_pairs_fire_together_more_than_independent_ones():
    plain = SyntheticOptions(n_features=64, d_model=16, n_functional=16, d_functional=4,
                             zipf=0.0)
    keys = _keys()
    independent = FeatureGenerator(plain)
    paired = FeatureGenerator(SyntheticOptions(**{**plain.__dict__, "correlation": 0.5}))

    def together(gen: FeatureGenerator) -> float:
        fires = gen.codes(keys) > 0
        return float((fires & fires[:, gen.partner]).float().mean())

    rate = float(independent.rates[0])  # zipf=0: every rate is active / N
    assert together(independent) == pytest.approx(rate * rate, rel=0.1)
    # with prob rho one shared coin (together at rate r), else independent (r^2)
    assert together(paired) == pytest.approx(0.5 * rate + 0.5 * rate * rate, rel=0.1)
    assert float(((paired.codes(keys) > 0).float().mean(0) - rate).abs().max()) < 0.01


def test_the_output_reads_only_f():
    model = SyntheticModel(parse({}))
    gen = model.generator
    codes = gen.codes(_keys(64))
    base = model.logits_from(gen.activations(codes))
    outside = int((~gen.functional & (codes > 0).any(0)).nonzero()[0])
    inside = int((gen.functional & (codes > 0).any(0)).nonzero()[0])
    for feature, changes in ((outside, False), (inside, True)):
        removed = codes.clone()
        removed[:, feature] = 0
        logits = model.logits_from(gen.activations(removed))
        assert torch.allclose(logits, base, atol=1e-4) is not changes


def test_model_forward_is_the_generated_activation_through_the_network():
    model, _ = SyntheticSource().build({"n_features": "64", "d_model": "16",
                                        "n_functional": "16", "d_functional": "4"})
    ids = torch.randint(0, 256, (2, 10))
    codes = model.embed.codes(ids)
    expected = model.logits_from(model.generator.activations(codes))
    assert torch.allclose(model(input_ids=ids).logits, expected, atol=1e-5)
    assert torch.equal(model.embed.codes(ids[:, :5]), codes[:, :5])  # causal


def test_windows_are_deterministic_and_eval_differs_from_train():
    ref = source_ref(SMALL)
    spec = data.DataSpec(dataset=SMALL)
    a = list(itertools.islice(data.training_windows(spec, None, 16, seed=3), 4))
    b = list(itertools.islice(data.training_windows(spec, None, 16, seed=3), 4))
    c = list(itertools.islice(data.training_windows(spec, None, 16, seed=4), 4))
    assert a == b and a != c and all(len(w) == 16 for w in a)
    assert first_windows(spec, "eval", None, 16, 4) != first_windows(
        spec, "train", None, 16, 4)
    assert ref is not None and ref.options["n_features"] == "64"
    loaded = load_model(SMALL)
    assert loaded.adapter.model_type == "synthetic" and loaded.adapter.n_layers(loaded.model) == 2


@pytest.mark.parametrize("options, words", [
    ("n_features=8,n_functional=9", "n_functional=9 must be 1 to n_features=8"),
    ("n_features=0", "n_features=0 must be at least 1"),
    ("n_features=-3", "n_features=-3 must be at least 1"),
    ("d_model=8,d_functional=8", "leaves no dimension"),
    ("bogus=1", "bogus"),
])
@pytest.mark.integration
def test_options_that_cannot_be_met_are_one_error_line(tmp_path, options, words):
    result = CliRunner().invoke(app, ["train", "--model", f"synthetic:{options}",
                                      "--out", str(tmp_path / "run"), "--n-samples", "4"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], result.output


def test_a_dataset_with_a_synthetic_model_is_refused():
    with pytest.raises(SaeKitError, match="makes its own tokens"):
        from sae_kit.record.config import TrainConfig
        TrainConfig(model=SMALL, dataset="pydoc")


@pytest.mark.integration
@pytest.mark.parametrize("loss", ["local", "e2e"])
def test_trains_and_evaluates_from_the_cli(tmp_path, loss):
    out = tmp_path / loss
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--model", SMALL, "--loss", loss, "--out", str(out),
                                 "--n-samples", "16", "--batch-size", "4", "--context", "16",
                                 "--dict-ratio", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    record = RunDir(out).read()
    assert record.config.dataset == SMALL and record.resolved.model_type == "synthetic"
    result = runner.invoke(app, ["eval", str(out), "--n-tokens", "256", "--alive-tokens", "256"])
    assert result.exit_code == 0, result.output
    assert (out / "eval.json").exists()
