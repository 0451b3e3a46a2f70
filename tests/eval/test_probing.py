"""Sparse probing (sae_kit.eval.probing, probe_tasks, probe_run, `sae-kit probe`): a
constructed separable task is solved by one latent, the scores are the usual ones, the task
files are read as sae-probes ships them, and what cannot run is one line."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.errors import SaeKitError
from sae_kit.eval import probe_tasks
from sae_kit.eval.probe_tasks import read_task, task_names, tasks_dir
from sae_kit.eval.probing import probe_scores, rank_latents, roc_auc, sparse_probes, split
from tests.helpers import cli_train

runner = CliRunner()


def _separable(n: int = 400, n_latents: int = 64, informative: int = 17, seed: int = 0):
    """Sparse non-negative codes; only latent ``informative`` tells the classes apart."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    codes = torch.rand(n, n_latents, generator=g) * (torch.rand(n, n_latents, generator=g) < 0.1)
    codes[:, informative] = y * (1 + torch.rand(n, generator=g))  # fires on class 1 only
    return codes, y


def test_one_latent_solves_a_separable_task():
    codes, y = _separable()
    train, test = split(y.tolist())
    probes = sparse_probes(codes[train], y[train], codes[test], y[test], ks=(1, 2, 5))
    assert probes["1"]["latents"] == [17]
    assert probes["1"]["test_auc"] == 1.0 and probes["1"]["test_accuracy"] >= 0.99
    assert probes["5"]["test_auc"] >= 0.99


def test_noise_latents_sit_at_chance():
    codes, y = _separable()
    noise = codes[:, [i for i in range(64) if i != 17]]
    train, test = split(y.tolist())
    scores = probe_scores(noise[train][:, :5], y[train], noise[test][:, :5], y[test])
    assert 0.3 < scores["test_auc"] < 0.7


def test_latents_are_ranked_by_mean_difference_after_scaling():
    # latent 0 fires on both classes alike with large values; latent 1 only on class 1
    y = torch.tensor([0, 0, 1, 1])
    codes = torch.tensor([[100.0, 0.0], [100.0, 0.0], [100.0, 1.0], [100.0, 1.0]])
    assert rank_latents(codes, y).tolist() == [1, 0]


def test_roc_auc_counts_pairs_and_half_ties():
    y = torch.tensor([0, 0, 1, 1])
    assert roc_auc(torch.tensor([0.1, 0.2, 0.3, 0.4]), y) == 1.0
    assert roc_auc(torch.tensor([0.4, 0.3, 0.2, 0.1]), y) == 0.0
    assert roc_auc(torch.tensor([0.1, 0.3, 0.2, 0.4]), y) == 0.75
    assert roc_auc(torch.ones(4), y) == 0.5


def test_the_split_is_stratified_disjoint_and_seeded():
    labels = [0] * 30 + [1] * 10
    train, test = split(labels, seed=3)
    assert set(train.tolist()).isdisjoint(test.tolist()) and len(train) + len(test) == 40
    assert sorted(labels[i] for i in test) == [0] * 6 + [1] * 2
    assert torch.equal(split(labels, seed=3)[1], test)
    with pytest.raises(SaeKitError, match="class 1 has 1 example"):
        split([0, 0, 0, 1])


def _write_task(directory, name, rows):
    with (directory / f"{name}.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "prompt_len", "target"])
        writer.writerows(rows)


def test_tasks_are_read_as_sae_probes_ships_them(tmp_path):
    data = tmp_path / "data"
    cleaned = data / "cleaned_data"
    cleaned.mkdir(parents=True)
    _write_task(cleaned, "1_yes", [(f"p{i}", 1, "yes" if i % 2 else "no") for i in range(10)])
    _write_task(cleaned, "2_year", [(f"p{i}", 1, str(1900 + i)) for i in range(10)])
    assert task_names(cleaned) == ["1_yes", "2_year"]
    task = read_task(cleaned, "1_yes", max_examples=6, seed=1)
    assert len(task.prompts) == 6 and task.classes == ("no", "yes")
    assert all(label == (p in {"p1", "p3", "p5", "p7", "p9"}) for p, label in
               zip(task.prompts, task.labels, strict=True))
    with pytest.raises(SaeKitError, match="task '2_year' has 10 classes"):
        read_task(cleaned, "2_year", 10)
    with pytest.raises(SaeKitError, match="no probing task 'nope'.*1_yes, 2_year"):
        read_task(cleaned, "nope", 10)


def test_without_sae_probes_one_line_names_the_extra(monkeypatch):
    monkeypatch.setattr(probe_tasks.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SaeKitError) as info:
        tasks_dir(None)
    assert "pip install 'sae-kit[probes]'" in str(info.value) and "\n" not in str(info.value)


def test_a_zstd_file_without_zstandard_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_zstandard(name, *args, **kwargs):
        if name == "zstandard":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    (tmp_path / "1_x.csv.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    monkeypatch.setattr(builtins, "__import__", no_zstandard)
    with pytest.raises(SaeKitError, match=r"zstandard is not installed: pip install 'sae-kit\["):
        read_task(tmp_path, "1_x", 10)


@pytest.fixture(scope="module")
def probe_run_dir(tiny_gpt2, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "run"
    result = cli_train(tiny_gpt2, out, "--layer", "1", "--loss", "local")
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.integration
def test_probe_runs_on_a_real_model_from_the_command_line(probe_run_dir, tmp_path):
    # a task the tiny model's tokens tell apart: code against prose
    _write_task(tmp_path, "1_code", [
        (f"def f{i}(x): return x + {i}" if i % 2 else f"the day {i} was mild", 1, str(i % 2))
        for i in range(80)])
    result = runner.invoke(app, ["probe", str(probe_run_dir), "--tasks-dir", str(tmp_path),
                                 "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    [task] = data["tasks"]
    [hook_point] = task["saes"]
    assert task["n_train"] + task["n_test"] == 80 and list(task["saes"][hook_point]) == [
        "1", "2", "5"]
    assert task["baseline"][hook_point]["test_auc"] > 0.9  # the raw activation separates them
    metrics = data["saebench"][hook_point]["eval_result_metrics"]
    assert set(metrics["llm"]) == {"llm_test_accuracy", "llm_test_auc"}
    assert "sae_top_5_test_auc" in metrics["sae"]
    table = runner.invoke(app, ["probe", str(probe_run_dir), "--tasks-dir", str(tmp_path),
                                "--device", "cpu"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "k=1 AUC" in table.stdout and "1_code" in table.stdout


@pytest.mark.integration
@pytest.mark.parametrize(("args", "message"), [
    (["--k", "0"], "--k 0: each k must be 1 or more"),
    (["--k", "a"], "--k 'a': give whole numbers"),
    (["--max-examples", "2"], "--max-examples 2"),
    (["--task", "nope"], "no probing task 'nope'"),
])
def test_bad_probe_options_are_one_line(probe_run_dir, tmp_path, args, message):
    _write_task(tmp_path, "1_code", [(f"p{i}", 1, str(i % 2)) for i in range(8)])
    result = runner.invoke(app, ["probe", str(probe_run_dir), "--tasks-dir", str(tmp_path),
                                 "--device", "cpu", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
