"""`sae-kit bench` from the CLI: a table and JSON over two seeds of one point, and one error
line for a run bench cannot score."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.store.jsonio import read_json, write_json_atomic
from sae_kit.store.run_dir import RunDir

SMALL = "synthetic:n_features=64,d_model=16,n_functional=16,d_functional=4,vocab=32,context=16"
SIZES = ["--n-tokens", "256", "--alive-tokens", "256"]
runner = CliRunner()


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    for seed in (0, 1):
        result = runner.invoke(app, [
            "train", "--model", SMALL, "--loss", "e2e", "--lambda", "2", "--seed", str(seed),
            "--out", str(out / f"seed{seed}"), "--n-samples", "16", "--batch-size", "4",
            "--context", "16", "--dict-ratio", "4", "--device", "cpu"])
        assert result.exit_code == 0, result.output
    return out


@pytest.mark.integration
def test_json_has_a_record_per_sae_and_a_point_over_seeds(two_seeds):
    result = runner.invoke(app, ["bench", str(two_seeds), "--json", *SIZES])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["seed"] for r in data["runs"]] == [0, 1]
    record = data["runs"][0]
    truth = record["ground_truth"]
    assert truth["functional"]["n"] == 16 and truth["rest"]["n"] == 48
    assert 0 <= truth["functional"]["mcc"] <= truth["functional"]["mmcs"] <= 1
    assert truth["n_latents"] == record["alive"] <= record["n_dict"] == 64
    assert record["saebench"]["sparsity"]["l0"] == record["l0"] > 0
    ce = record["saebench"]["model_performance_preservation"]
    assert ce["ce_loss_with_sae"] - ce["ce_loss_without_sae"] == pytest.approx(
        record["ce_loss_increase"])
    [point] = data["points"]
    assert point["seeds"] == [0, 1] and point["point"] == "e2e relu lambda=2"
    mean, std = point["mmcs_functional"]
    values = [r["ground_truth"]["functional"]["mmcs"] for r in data["runs"]]
    assert mean == pytest.approx(sum(values) / 2)
    assert std == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    assert (two_seeds / "seed0" / "eval.json").is_file()


@pytest.mark.integration
def test_table_shows_mean_and_std(two_seeds):
    result = runner.invoke(app, ["bench", str(two_seeds / "seed0"), str(two_seeds / "seed1"),
                                 *SIZES], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "e2e relu lambda=2" in result.stdout and "±" in result.stdout
    assert "MMCS F" in result.stdout


@pytest.mark.integration
def test_a_run_without_ground_truth_is_one_error_line(two_seeds, tmp_path):
    other = tmp_path / "builtin"
    shutil.copytree(two_seeds / "seed0", other)
    config = read_json(RunDir(other).config)
    config["model"] = config["dataset"] = "sae-kit-tiny"
    write_json_atomic(RunDir(other).config, config)
    result = runner.invoke(app, ["bench", str(two_seeds / "seed0"), str(other), *SIZES])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "no ground truth" in lines[0] and "sae-kit eval" in lines[0]


@pytest.mark.integration
def test_a_threshold_outside_0_1_is_one_error_line(two_seeds):
    result = runner.invoke(app, ["bench", str(two_seeds), "--threshold", "1.5"])
    assert result.exit_code == 2 and "--threshold 1.5" in result.output


def test_the_experiment_sweep_file_has_three_seeds_per_point_and_small_evals():
    from sae_kit.sweep.spec import load_sweep

    root = Path(__file__).resolve().parents[2]
    sweep = load_sweep(root / "docs" / "sweeps" / "ground-truth.toml")
    assert [p.name for p in sweep.points[:2]] == ["local-l0.3-seed0", "local-l0.3-seed1"]
    seeds: dict[str, set[int]] = {}
    for point in sweep.points:
        seeds.setdefault(point.name.rsplit("-seed", 1)[0], set()).add(point.config.seed)
    assert len(seeds) == 9 and all(s == {0, 1, 2} for s in seeds.values())
    assert sweep.eval_alive_tokens == 20000 and len(sweep.groups) == 9  # one per (loss, seed)


@pytest.mark.integration
def test_a_sweep_with_no_seeds_is_one_error_line(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(f'out = "{tmp_path / "runs"}"\n[grid]\nloss = ["local"]\nseed = []\n')
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2 and "grid.seed = [] has no seed" in result.output
    assert not (tmp_path / "runs").exists()
