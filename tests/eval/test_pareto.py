"""The Pareto plot's series are frontiers: runs that differ in lambda (or k) alone."""

import pytest

from sae_kit.eval.pareto import pareto_points, plot_pareto
from tests.helpers import pareto_series, write_run_record

SAE = "blocks.1.hook_resid_pre"


def _result(tmp_path, name, l0, ce, **settings):
    """An eval.json-like result for a run directory whose config.json holds ``settings``."""
    run_dir = tmp_path / name
    write_run_record(run_dir, hook_points=[SAE], **settings)
    lam = settings.get("sparsity_coeff", 1.0)
    penalised = settings.get("architecture", "relu") == "relu"
    return {"run_dir": str(run_dir), "loss": settings.get("loss", "e2e"),
            "sparsity_coeff": lam if penalised else None,
            "saes": {SAE: {"l0": l0, "ce_loss_increase": ce}}}


def test_runs_that_differ_in_more_than_lambda_are_separate_series(tmp_path):
    results = [_result(tmp_path, "a", 30, 0.1, sparsity_coeff=0.5, seed=0),
               _result(tmp_path, "b", 10, 0.3, sparsity_coeff=2.0, seed=0),
               _result(tmp_path, "c", 20, 0.2, sparsity_coeff=1.0, seed=1),
               _result(tmp_path, "d", 25, 0.2, sparsity_coeff=1.0, seed=0, n_samples=800),
               _result(tmp_path, "e", 12, 0.4, sparsity_coeff=1.0, seed=0, dict_ratio=32)]
    series = pareto_series(results)
    # another seed is seed noise, not another frontier (eval.seeds); length and size are
    assert series == {"e2e, dict_ratio=60, n_samples=1": [(10, 0.3), (20, 0.2), (30, 0.1)],
                      "e2e, dict_ratio=60, n_samples=800": [(25, 0.2)],
                      "e2e, dict_ratio=32, n_samples=1": [(12, 0.4)]}


def test_points_are_labelled_with_their_lambda_or_k(tmp_path):
    results = [_result(tmp_path, "a", 30, 0.1, sparsity_coeff=0.5),
               _result(tmp_path, "b", 10, 0.3, sparsity_coeff=2.0),
               _result(tmp_path, "t16", 16, 0.2, architecture="topk",
                       architecture_options={"k": 16}),
               _result(tmp_path, "t32", 32, 0.1, architecture="topk",
                       architecture_options={"k": 32})]
    points = pareto_points(results)
    assert points == {"e2e (relu)": [(10, 0.3, "λ=2"), (30, 0.1, "λ=0.5")],
                      "e2e (topk)": [(16, 0.2, "k=16"), (32, 0.1, "k=32")]}


def test_a_lambda_sweep_is_one_series_and_the_plot_names_each_point(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    results = [_result(tmp_path, f"l{lam}", 40 / lam, 0.1 * lam, sparsity_coeff=lam)
               for lam in (0.5, 1.0, 2.0)]
    seen = []
    original = plt.Axes.annotate
    monkeypatch.setattr(plt.Axes, "annotate",
                        lambda self, text, xy, **kw: seen.append((text, xy))
                        or original(self, text, xy, **kw))
    series = plot_pareto(results, tmp_path / "p.png")
    assert series == {"e2e": [(20, 0.2), (40, 0.1), (80, 0.05)]}
    assert seen == [("λ=2", (20, 0.2)), ("λ=1", (40, 0.1)), ("λ=0.5", (80, 0.05))]


@pytest.mark.parametrize("where", ["device", "save_every", "log_every"])
def test_how_a_run_went_never_splits_a_series(tmp_path, where):
    value = {"device": "cuda", "save_every": 7, "log_every": 3}[where]
    results = [_result(tmp_path, "a", 30, 0.1, sparsity_coeff=0.5),
               _result(tmp_path, "b", 10, 0.3, sparsity_coeff=2.0, **{where: value})]
    assert list(pareto_series(results)) == ["e2e"]
