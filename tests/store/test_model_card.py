"""The model card pushed with a run: metadata the Hub indexes, and the evaluation table."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.store.model_card import render_card
from tests.helpers import make_sae_dir, run_record, write_run_record

SAE = {"architecture": "relu", "d_in": 8, "n_dict": 24, "hook_point": "blocks.1.hook_resid_pre",
       "loss": "e2e+ds", "sparsity_coeff": 2.5, "tokens_trained": 409_600_000}


GPT2_RUN = run_record(model="gpt2")  # the built-in text: no Hub dataset in the metadata


def metadata(card: str) -> dict:
    return yaml.safe_load(card.split("---\n")[1])


def test_hub_model_and_dataset_become_card_metadata():
    run = run_record(model="openai-community/gpt2", revision="607a30d", loss="e2e+ds",
                     dataset="Skylion007/openwebtext", loss_options={"ds_coeff": 2.5})
    card = render_card("alice/gpt2-saes", run, {SAE["hook_point"]: SAE}, None, "apache-2.0")
    meta = metadata(card)
    assert meta["base_model"] == "openai-community/gpt2"
    assert meta["datasets"] == ["Skylion007/openwebtext"] and meta["license"] == "apache-2.0"
    assert meta["library_name"] == "saelens"  # a library the Hub knows; sae-kit is a tag
    assert {"sae-kit", "sparse-autoencoder", "e2e-ds-sae"} <= set(meta["tags"])
    assert "| `blocks.1.hook_resid_pre` | relu | 8 | 24 | e2e+ds | 2.5 | 409,600,000 |" in card
    assert "- model revision: 607a30d" in card
    assert "No evaluation was run" in card


@pytest.mark.parametrize("model", ["sae-kit-tiny", "./models/mine", "LOCAL"])
def test_local_and_builtin_models_are_not_claimed_as_hub_models(model, tmp_path):
    if model == "LOCAL":
        model = str(tmp_path)
    run = run_record(model=model, dataset="pydoc", loss="local")
    meta = metadata(render_card("alice/x", run, {SAE["hook_point"]: SAE}, None))
    assert "base_model" not in meta and "datasets" not in meta
    # the built-in model ships with sae-kit (MIT); of a local one the license is unknown
    assert meta["license"] == ("mit" if model == "sae-kit-tiny" else "other")


@pytest.mark.parametrize(("model", "base"), [
    ("gpt2", "gpt2"),  # a legacy id without a namespace is still a Hub model
    ("openai-community/gpt2", "openai-community/gpt2"),
    ("alice/gpt2/blocks.1", None),  # a path inside a repo is no model id
    ("my model", None),  # no valid id: named as text, not claimed as a Hub model
])
def test_only_a_valid_repo_id_becomes_the_base_model(model, base, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = run_record(model=model, dataset="pydoc", loss="local")
    meta = metadata(render_card("alice/x", run, {SAE["hook_point"]: SAE}, None))
    assert meta.get("base_model") == base


def test_card_shows_saelens_usage_only_for_architectures_saelens_has():
    card = render_card("alice/x", GPT2_RUN, {SAE["hook_point"]: SAE},
                       None)
    assert 'SAE.from_pretrained("alice/x", "blocks.1.hook_resid_pre")' in card
    assert 'from_pretrained_no_processing("gpt2")' in card
    other = {**SAE, "architecture": "gated"}
    card = render_card("alice/x", GPT2_RUN, {SAE["hook_point"]: other},
                       None)
    assert "from_pretrained(" not in card.split("## Usage")[1].split("sae_kit.load_sae")[1]
    assert "no SAELens equivalent" in card


def test_evaluation_table_has_a_column_per_sae():
    saes = {"blocks.0.hook_resid_pre": SAE, "blocks.1.hook_resid_pre": SAE}
    evaluation = {"saes": {"blocks.0.hook_resid_pre": {"l0": 31.25, "ce_loss_increase": 0.0817},
                           "blocks.1.hook_resid_pre": {"l0": 4, "ce_loss_increase": None}},
                  "n_tokens": 524288, "clean_ce_loss": 3.2741, "run_dir": "/home/me/runs/x"}
    card = render_card("alice/x", GPT2_RUN, saes, evaluation)
    assert "| metric | `blocks.0.hook_resid_pre` | `blocks.1.hook_resid_pre` |" in card
    assert "| l0 | 31.25 | 4 |" in card and "| ce_loss_increase | 0.0817 | – |" in card
    assert "n_tokens 524,288; clean_ce_loss 3.274" in card
    assert "/home/me" not in card  # a local path means nothing on the Hub


@pytest.mark.integration
def test_malformed_eval_json_is_one_clear_line(tmp_path):
    run = tmp_path / "run"
    make_sae_dir(run)
    write_run_record(run)
    (run / "eval.json").write_text(json.dumps({"saes": {"blocks.1.hook_resid_pre": "good"}}))
    result = CliRunner().invoke(app, ["push", str(run), "alice/x", "--dry-run"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "is not what `sae-kit eval` writes" in " ".join(result.stderr.split())


def test_eval_figures_are_machine_readable_model_index():
    from huggingface_hub import ModelCard

    saes = {"blocks.0.hook_resid_pre": SAE, "blocks.1.hook_resid_pre": SAE}
    evaluation = {"saes": {"blocks.0.hook_resid_pre": {"l0": 31.25, "ce_loss_increase": 0.0817},
                           "blocks.1.hook_resid_pre": {"l0": 4, "ce_loss_increase": None}},
                  "n_tokens": 524288}
    run = run_record(dataset="Skylion007/openwebtext")
    card = render_card("alice/gpt2-saes", run, saes, evaluation)
    parsed = ModelCard(card).data  # the Hub's own parser of model-index
    found = {(r.metric_name, r.metric_type): r.metric_value for r in parsed.eval_results}
    assert found == {("blocks.0.hook_resid_pre l0", "l0"): 31.25,
                     ("blocks.0.hook_resid_pre ce_loss_increase", "ce_loss_increase"): 0.0817,
                     ("blocks.1.hook_resid_pre l0", "l0"): 4}
    assert {r.dataset_type for r in parsed.eval_results} == {"Skylion007/openwebtext"}
    assert parsed.model_name == "gpt2-saes"
    assert "model-index" not in render_card("alice/x", GPT2_RUN, saes, None)


def test_a_transcoder_card_names_both_hook_points():
    tc = {**SAE, "hook_point": "blocks.1.hook_mlp_in", "output_hook_point": "blocks.1.hook_mlp_out",
          "skip": True}
    card = render_card("alice/x", GPT2_RUN, {tc["hook_point"]: tc}, None)
    row = next(line for line in card.splitlines() if "blocks.1.hook_mlp_in" in line
               and line.startswith("|"))
    assert "`blocks.1.hook_mlp_in` → `blocks.1.hook_mlp_out`" in row
    assert "relu (skip transcoder)" in row
