"""`sae-kit plugins`: installed plugins by group, with distribution and version."""

import json
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app

pytestmark = pytest.mark.integration  # runs the sae-kit CLI

runner = CliRunner()
FIRST_PARTY = {
    ("sae_kit.models", "gpt2"): "sae-kit-gpt2",
    ("sae_kit.models", "gpt_neox"): "sae-kit-pythia",
    ("sae_kit.models", "llama"): "sae-kit-llama",
    ("sae_kit.models", "synthetic"): "sae-kit-synthetic",
    ("sae_kit.losses", "local"): "sae-kit",
    ("sae_kit.losses", "e2e"): "sae-kit",
    ("sae_kit.losses", "e2e+ds"): "sae-kit",
    ("sae_kit.losses", "kl+mse"): "sae-kit",
    ("sae_kit.architectures", "relu"): "sae-kit",
    ("sae_kit.architectures", "topk"): "sae-kit",
    ("sae_kit.architectures", "batchtopk"): "sae-kit",
    ("sae_kit.architectures", "jumprelu"): "sae-kit",
    ("sae_kit.architectures", "matryoshka"): "sae-kit",
    ("sae_kit.trackers", "wandb"): "sae-kit",
    ("sae_kit.trackers", "tensorboard"): "sae-kit",
    ("sae_kit.explainers", "openai"): "sae-kit",
    ("sae_kit.explainers", "transformers"): "sae-kit",
    ("sae_kit.model_sources", "synthetic"): "sae-kit-synthetic",
}


def test_json_lists_every_first_party_plugin_with_its_distribution():
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    found = {(r["group"], r["name"]): r for r in rows}
    assert set(found) == set(FIRST_PARTY)  # conftest allows first-party distributions only
    for key, dist in FIRST_PARTY.items():
        assert found[key]["distribution"] == dist and found[key]["version"] == version(dist)
    assert found[("sae_kit.architectures", "topk")]["value"] == (
        "sae_kit.architectures.topk:TopKSAE")
    groups = [r["group"] for r in rows]  # grouped, in a fixed order
    assert groups == sorted(groups, key=["sae_kit.models", "sae_kit.losses",
                                         "sae_kit.architectures", "sae_kit.trackers",
                                         "sae_kit.explainers",
                                         "sae_kit.model_sources"].index)


def test_table_names_each_plugin_and_distribution():
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    for (_, name), dist in FIRST_PARTY.items():
        assert name in result.stdout and dist in result.stdout


def test_options_lists_what_each_loss_and_architecture_takes():
    result = runner.invoke(app, ["plugins", "--json", "--options"])
    assert result.exit_code == 0, result.output
    options = {r["name"]: {o["name"]: o for o in r["options"]} for r in json.loads(result.stdout)}
    assert options["topk"]["k"]["default"] == 32 and options["topk"]["k"]["type"] == "int"
    assert "Active latents" in options["topk"]["k"]["help"]
    assert options["e2e+ds"]["ds_coeff"]["default"] == 2.5
    assert options["e2e+ds"]["downstream"]["default"] == "paper"
    assert set(options["relu"]) == {"bias_init"} and options["llama"] == {}
    assert options["topk"]["bias_init"]["default"] == "zeros"


def test_restricting_distributions_hides_the_others(monkeypatch):
    monkeypatch.setenv("SAE_KIT_PLUGINS", "sae-kit-llama")
    rows = json.loads(runner.invoke(app, ["plugins", "--json"]).stdout)
    assert [(r["group"], r["name"]) for r in rows] == [("sae_kit.models", "llama")]


def test_piped_tables_are_not_cut_at_80_columns():
    """Off a terminal rich assumes 80 columns; sae-kit's tables keep every cell whole."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run([sys.executable, "-m", "sae_kit", "plugins", "--options"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    from sae_kit.architectures.topk import TopKSAE
    from sae_kit.options import describe_options

    lines = done.stdout.splitlines()
    assert any("sae_kit.architectures.topk:TopKSAE" in line for line in lines)
    options = describe_options(TopKSAE.Options)
    texts = [f"{o['name']}={o['default']!r}: {o['help']}" for o in options]
    assert max(map(len, texts)) > 80  # so that a cut at 80 columns would show
    for text in texts:  # each option's text whole on one line
        assert any(text in line for line in lines), text
