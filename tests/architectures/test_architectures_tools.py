"""`sae-kit eval`, `features` and `compare` on BatchTopK, JumpReLU and Matryoshka runs, as they
are: each sees the SAE's inference codes (BatchTopK's and Matryoshka's threshold)."""

import json

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app
from tests.helpers import cli_train

pytestmark = pytest.mark.slow

runner = CliRunner()
HP = "blocks.1.hook_resid_pre"
ARCHS = {
    "batchtopk": ["--arch-option", "k=6"],
    "jumprelu": ["--lambda", "2", "--arch-option", "init_threshold=0.05",
                 "--arch-option", "bandwidth=0.05"],
    "matryoshka": ["--arch-option", "k=6", "--arch-option", "prefixes=16,64",
                   "--arch-option", "auxk=true", "--arch-option", "dead_tokens=32"],
}
TOKENS = 128  # 4 held-out windows of 32: the same ones for eval and features


@pytest.fixture(scope="module")
def arch_runs(tiny_gpt2, tmp_path_factory):
    root = tmp_path_factory.mktemp("arch-runs")
    runs = {}
    for name, options in ARCHS.items():
        result = cli_train(tiny_gpt2, root / name, "--loss", "local", "--layer", "1",
                           "--architecture", name, *options)
        assert result.exit_code == 0, result.output
        runs[name] = root / name
    return runs


@pytest.mark.parametrize("arch", list(ARCHS))
def test_eval_and_features_see_the_same_inference_codes(arch_runs, arch, tmp_path):
    run = arch_runs[arch]
    result = runner.invoke(app, ["eval", str(run), "--n-tokens", str(TOKENS), "--batch-size", "2",
                                 "--alive-tokens", "640", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "eval.json").read_text())["saes"][HP]
    assert 0 < metrics["l0"] < metrics["n_dict"] and metrics["ce_loss_increase"] == pytest.approx(
        metrics["ce_loss"] - json.loads((run / "eval.json").read_text())["clean_ce_loss"])
    result = runner.invoke(app, ["features", str(run), "--held-out", "--tokens", str(TOKENS),
                                 "--out", str(tmp_path), "--device", "cpu", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["meta"]["n_tokens"] == TOKENS and len(summary["features"]) == metrics["n_dict"]
    # Summed over features, the fraction of tokens each fires on is the mean active codes per
    # token: the report and eval count the same codes on the same held-out tokens.
    assert sum(f["density"] for f in summary["features"]) == pytest.approx(metrics["l0"],
                                                                           rel=1e-6)


def test_compare_takes_dictionaries_of_the_three_architectures(arch_runs, tmp_path):
    result = runner.invoke(app, ["compare", *map(str, arch_runs.values()), "--out", str(tmp_path),
                                 "--tokens", "256", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["hook_point"] == HP and len(summary["pairs"]) == 3
    assert all(s["n_alive"] > 0 for s in summary["saes"].values())
