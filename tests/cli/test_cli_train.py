"""`sae-kit train` end to end through the CLI, on a tiny GPT-2 saved to disk."""

import json

import pytest
import torch
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.store.sae_dir import load_run, load_sae_dir
from tests.helpers import FAST, cli_train

runner = CliRunner()


@pytest.mark.integration
@pytest.mark.parametrize("loss", ["local", "e2e", "e2e+ds"])
def test_train_each_loss_and_reload_the_safetensors(tiny_gpt2, tmp_path, loss):
    out = tmp_path / "run"
    result = cli_train(tiny_gpt2, out, "--loss", loss, "--layer", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    sae_dir = out / "blocks.1.hook_resid_pre"
    assert (sae_dir / "sae.safetensors").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["loss"] == loss and config["resolved"]["n_dict"] == 128
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all("l0/blocks.1.hook_resid_pre" in r for r in rows)

    sae, sae_config = load_sae_dir(sae_dir)
    assert sae_config["loss"] == loss and sae_config["tokens_trained"] == 8 * 32
    from safetensors.torch import load_file

    state = load_file(str(sae_dir / "sae.safetensors"))
    twin = type(sae)(32, 128)
    twin.load_state_dict(state)
    x = torch.randn(4, 32)
    torch.testing.assert_close(sae(x).output, twin(x).output, rtol=0, atol=0)


@pytest.mark.integration
def test_several_saes_train_together(tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    result = cli_train(tiny_gpt2, out, "--loss", "e2e", "--layer", "0", "--layer", "2",
                    "--hook", "resid_post")
    assert result.exit_code == 0, result.output
    _, saes = load_run(out)
    assert [hp.name for hp in saes] == ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]


@pytest.mark.integration
def test_json_output_is_machine_readable(tiny_gpt2, tmp_path):
    result = cli_train(tiny_gpt2, tmp_path / "run", "--json", "--loss", "e2e", "--layer", "1")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["run_dir"] == str(tmp_path / "run") and payload["metrics"]["kl"] >= 0


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loss", "nope"], "no loss plugin named 'nope'; installed: e2e, e2e+ds, kl+mse, local"),
        (["--layer", "7"], "layer 7 is out of range: this model has 3 layers (0 to 2)"),
        (["--dataset", "missing/data.jsonl"], "dataset file 'missing/data.jsonl' does not exist"),
        (["--loss", "e2e+ds", "-O", "beta=1"], "unknown option 'beta' for 'e2e+ds'"),
        (["--lr", "-1"], "invalid training settings: lr=-1.0"),
        (["--context", "65"], "context 65 is longer than this model's 64 positions"),
        (["--architecture", "nope"],
         "no architecture plugin named 'nope'; installed: batchtopk, jumprelu, matryoshka, "
         "relu, topk"),
        (["--architecture", "topk", "--arch-option", "j=3"], "unknown option 'j' for 'topk'"),
        (["--architecture", "topk", "--arch-option", "k=many"],
         "option 'k' of 'topk' must be an int, got 'many'"),
        (["--architecture", "topk", "--arch-option", "k=129"],
         "topk option k=129 must be between 1 and the dictionary size 128"),
        (["--arch-option", "k=3"], "unknown option 'k' for 'relu'; it takes: bias_init"),
        (["--arch-option", "k"], "--arch-option must look like key=value, got 'k'"),
    ],
)
def test_bad_input_is_one_clear_line(tiny_gpt2, tmp_path, args, message):
    result = runner.invoke(app, ["train", "--model", str(tiny_gpt2), "--out",
                                 str(tmp_path / "r"), *FAST, *args])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_model_family_without_adapter_trains_through_the_generic_fallback(
    tmp_path, tiny_model_dir
):
    out = tmp_path / "run"
    result = cli_train(tiny_model_dir("opt"), out, "--loss", "e2e", "--layer", "1")
    assert result.exit_code == 0, result.output
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["model_type"] == "opt"
    assert resolved["adapter"] == "generic (layers: model.decoder.layers, unembedding: lm_head)"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["kl"] > 0 for r in rows)


@pytest.mark.integration
def test_another_model_without_dataset_is_one_line_naming_the_builtin_text(tiny_gpt2):
    result = runner.invoke(app, ["train", "--model", str(tiny_gpt2), *FAST[2:]])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    text = " ".join(result.stderr.split())
    assert text.startswith(f"error: --model {tiny_gpt2} needs --dataset")
    assert "pass --dataset pydoc to train on it anyway" in text


@pytest.mark.integration
def test_missing_model_directory(tmp_path):
    result = runner.invoke(app, ["train", "--model", str(tmp_path / "nothing"), *FAST])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def _no_network(monkeypatch, tmp_path):
    """Point the Hub at a closed local port, with an empty cache."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))


@pytest.mark.integration
def test_no_network_for_a_hub_model_is_one_clear_line(monkeypatch, tmp_path):
    _no_network(monkeypatch, tmp_path)
    result = runner.invoke(app, ["train", "--model", "someorg/some-model", *FAST])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no network: cannot reach http://127.0.0.1:9")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_no_network_for_a_hub_dataset_is_one_clear_line(monkeypatch, tmp_path, tiny_gpt2):
    _no_network(monkeypatch, tmp_path)
    result = runner.invoke(app, ["train", "--model", str(tiny_gpt2), *FAST, "--dataset",
                                 "org/data"])
    assert result.exit_code == 2
    assert "no network: cannot reach http://127.0.0.1:9 to stream dataset 'org/data'" in " ".join(
        result.stderr.split())
