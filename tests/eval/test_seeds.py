"""Seed noise (sae_kit.eval.seeds): replicates grouped, mean ± std, 2σ comparisons, and the
sweep file's `seeds`, the results table and the Pareto plot built on them."""

from __future__ import annotations

import math

import pytest

from sae_kit.errors import SaeKitError
from sae_kit.eval.seeds import (
    Stat,
    distinguishable,
    group_replicates,
    mean_std,
    replicate_name,
    ties_with_best,
)
from sae_kit.sweep.report import full_table, seed_table
from sae_kit.sweep.spec import load_sweep
from tests.helpers import pareto_series, write_run_record


def test_mean_and_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, 0.0)


def test_two_sigma_of_the_difference_decides():
    # sigma of the difference: sqrt(1/4 + 1/4) = 0.707; 2 sigma = 1.414
    assert distinguishable(Stat(0.0, 1.0, 4), Stat(1.4, 1.0, 4)) is False
    assert distinguishable(Stat(0.0, 1.0, 4), Stat(1.5, 1.0, 4)) is True
    assert distinguishable(Stat(0.0, 0.0, 1), Stat(9.0, 0.0, 3)) is None  # one seed: no noise


def test_the_best_and_its_ties_are_marked():
    stats = [Stat(0.90, 0.01, 3), Stat(0.89, 0.01, 3), Stat(0.50, 0.01, 3), None]
    assert ties_with_best(stats, higher_is_better=True) == ["best", "tie", "", ""]
    assert ties_with_best(stats, higher_is_better=False) == ["", "", "best", ""]
    # one seed each: a best, never a tie
    assert ties_with_best([Stat(1.0, 0.0, 1), Stat(2.0, 0.0, 1)], True) == ["", "best"]
    assert "tie" not in ties_with_best([Stat(1.0, 0.0, 1), Stat(1.0, 0.0, 1)], True)


def test_a_point_is_named_by_its_runs_without_the_seed():
    assert replicate_name(["runs/x/local-l1-seed0", "runs/x/local-l1-seed1"]) == "local-l1"
    assert replicate_name(["runs/x/seed3-e2e"]) == "e2e"
    assert replicate_name(["runs/x/a", "runs/x/b"]) == "a (+1)"


def _evaluated(tmp_path, name, seed, ce, lam=1.0, loss="local"):
    run_dir = tmp_path / name
    run_dir.mkdir()
    write_run_record(run_dir, seed=seed, loss=loss, sparsity_coeff=lam,
                     output_dir=str(run_dir))
    metrics = {"l0": 10.0 + seed, "alive": 60, "n_dict": 64, "ce_loss_increase": ce, "kl": ce,
               "explained_variance": 0.5, "downstream_mse": 1.0}
    return {"run_dir": str(run_dir), "loss": loss, "sparsity_coeff": lam, "architecture": "relu",
            "architecture_options": {}, "saes": {"blocks.1.hook_resid_pre": metrics},
            "clean_ce_loss": 4.0, "n_tokens": 512}


def test_runs_differing_only_in_seed_are_one_point(tmp_path):
    results = [_evaluated(tmp_path, f"local-lambda1-seed{s}", s, ce) for s, ce in
               ((0, 0.10), (1, 0.12), (2, 0.14))]
    results.append(_evaluated(tmp_path, "local-lambda2-seed0", 0, 0.3, lam=2.0))
    groups = group_replicates(results)
    assert [len(g) for g in groups] == [3, 1]
    # the plot draws the mean of the three seeds, not three points
    [lambda2, lambda1] = pareto_series(results)["local"]  # sorted by L0: 10, then 11
    assert lambda2 == (10.0, 0.3) and lambda1 == (pytest.approx(11.0), pytest.approx(0.12))


def test_results_md_has_mean_and_std_per_point_and_marks_ties(tmp_path):
    results = [_evaluated(tmp_path, f"a-seed{s}", s, ce) for s, ce in
               ((0, 0.10), (1, 0.12), (2, 0.14))]
    results += [_evaluated(tmp_path, f"b-seed{s}", s, ce, lam=2.0) for s, ce in
                ((0, 0.11), (1, 0.13), (2, 0.15))]
    results += [_evaluated(tmp_path, f"c-seed{s}", s, ce, lam=4.0) for s, ce in
                ((0, 0.50), (1, 0.51), (2, 0.52))]
    lines = seed_table(results).splitlines()
    rows = {line.split(" | ")[0].strip("| "): line for line in lines[2:5]}
    assert "**0.1200 ± 0.0200**" in rows["a"]  # the best CE increase
    assert "0.1300 ± 0.0200 ≈" in rows["b"]  # within 2σ of it
    assert "0.5100 ± 0.0100 |" in rows["c"] and "≈" not in rows["c"].split(" | ")[7]
    assert " | 3 | " in rows["a"] and "2σ" in lines[-1]
    text = full_table(results)
    assert "## Points (over seeds)" in text and "## Every run" in text
    assert text.count("| a-seed") == 3  # every run still listed


def test_one_seed_per_point_keeps_the_plain_table(tmp_path):
    results = [_evaluated(tmp_path, "a", 0, 0.1), _evaluated(tmp_path, "b", 0, 0.2, lam=2.0)]
    assert seed_table(results) is None and "Points" not in full_table(results)


def _sweep(tmp_path, top, grid='[grid]\nlambda = [1.0, 2.0]\n'):
    path = tmp_path / "sweep.toml"
    path.write_text(f'out = "{tmp_path / "runs"}"\n{top}\n[base]\nmodel = "gpt2"\n'
                    f'dataset = "pydoc"\ncontext = 16\ndevice = "cpu"\n{grid}'
                    '[[runs]]\nname = "extra"\nloss = "e2e"\n')
    return path


def test_seeds_train_every_point_once_per_seed(tmp_path):
    sweep = load_sweep(_sweep(tmp_path, "seeds = [0, 7]"))
    assert [(p.name, p.config.seed) for p in sweep.points] == [
        ("lambda1-seed0", 0), ("lambda1-seed7", 7), ("lambda2-seed0", 0), ("lambda2-seed7", 7),
        ("extra-seed0", 0), ("extra-seed7", 7)]
    # a seed sets the data order: one pass per seed (the base loss is e2e, like "extra"'s)
    assert [{p.config.seed for p in g} for g in sweep.groups] == [{0}, {7}]


@pytest.mark.parametrize(("top", "grid", "message"), [
    ("seeds = []", '[grid]\nlambda = [1.0]\n', "seeds = [] must list one or more whole numbers"),
    ('seeds = ["a"]', '[grid]\nlambda = [1.0]\n', "must list one or more whole numbers"),
    ("seeds = 3", '[grid]\nlambda = [1.0]\n', "seeds = 3 must be a list of whole numbers"),
    ("seeds = [1, 1]", '[grid]\nlambda = [1.0]\n', "repeats a seed"),
    ("seeds = [0]", '[grid]\nseed = [1, 2]\n', "sets seed and the file has seeds"),
    ("", '[grid]\nseed = []\n', "grid.seed = [] has no seed"),
])
def test_a_sweep_with_no_seeds_or_clashing_seeds_is_one_line(tmp_path, top, grid, message):
    with pytest.raises(SaeKitError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_sweep(_sweep(tmp_path, top, grid))
    assert not (tmp_path / "runs").exists()


def test_nan_means_are_never_the_best():
    stats = [Stat(math.nan, 0.0, 2), Stat(1.0, 0.1, 2), Stat(0.5, 0.1, 2)]
    assert ties_with_best(stats, higher_is_better=True) == ["", "best", ""]
