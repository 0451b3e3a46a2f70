"""`sae-kit train --init-from SAE --lora`: frozen SAEs, trained adapters, eval with and without.

A local SAE is trained on the tiny GPT-2 first (the source); the LoRA runs start from it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.model.lora import WEIGHTS
from sae_kit.store.run_dir import RunDir
from tests.helpers import FAST, cli_train, one_line_error

pytestmark = pytest.mark.integration  # runs the sae-kit CLI and whole runs
pytest.importorskip("peft", reason="peft is not installed (pip install 'sae-kit[lora]')")

HOOK = "blocks.1.hook_resid_pre"
_AT = FAST.index("--dict-ratio")
FROM_SOURCE = FAST[:_AT] + FAST[_AT + 2:]  # the source sets the dictionary size
LORA = ["--lora", "--lora-rank", "4", "--n-samples", "32", "--lr", "1e-2", "--seed", "3"]


@pytest.fixture(scope="module")
def source(tiny_gpt2, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("source") / "local"
    result = cli_train(tiny_gpt2, out, "--loss", "local", "--layer", "1", "--n-samples", "32")
    assert result.exit_code == 0, result.output
    return out


def lora_run(model: Path, out: Path, source: Path, *extra: str):
    return cli_train(model, out, "--init-from", str(source), *LORA, *extra, base=FROM_SOURCE)


def adapters(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(RunDir(run).lora / WEIGHTS))


def test_lora_keeps_the_sae_trains_the_adapters_and_eval_reports_both(tiny_gpt2, source,
                                                                       tmp_path):
    out = tmp_path / "lora"
    result = lora_run(tiny_gpt2, out, source)
    assert result.exit_code == 0, result.output
    sae = load_file(str(out / HOOK / "sae.safetensors"))
    start = load_file(str(source / HOOK / "sae.safetensors"))
    assert sae.keys() == start.keys() and all(torch.equal(sae[k], start[k]) for k in sae)
    weights = adapters(out)
    assert weights and all(k.startswith("base_model.model.transformer.h.") for k in weights)
    assert {k.split(".")[4] for k in weights} == {"1", "2"}  # the blocks from the SAE's on
    assert any(w.abs().max() > 0 for k, w in weights.items() if "lora_B" in k)  # B trained
    config = json.loads((out / "config.json").read_text())
    assert config["lora"] is True and config["lora_rank"] == 4
    mode = (out / "lora" / "adapter_model.safetensors").stat().st_mode & 0o777
    assert mode == (out / HOOK / "sae.safetensors").stat().st_mode & 0o777  # the umask's, not 0600

    evaluated = CliRunner().invoke(app, ["eval", str(out), "--n-tokens", "2048", "--json",
                                         "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    without, with_lora = report["saes"][HOOK], report["lora"]["saes"][HOOK]
    assert with_lora["kl"] < without["kl"]  # training lowered the held-out KL
    assert with_lora["ce_loss_increase"] < without["ce_loss_increase"]
    assert with_lora["l0"] == pytest.approx(without["l0"])  # adapters after the SAE: same input
    table = CliRunner().invoke(app, ["eval", str(out), "--n-tokens", "2048", "--device", "cpu"])
    assert "KL, with LoRA" in table.stdout and "CE loss increase, with LoRA" in table.stdout

    pushed = CliRunner().invoke(app, ["push", str(out), "me/lora-saes", "--dry-run"])
    assert pushed.exit_code == 0, pushed.output
    assert "lora/adapter_model.safetensors" in pushed.stdout
    assert "lora/adapter_config.json" in pushed.stdout
    card = pushed.stdout.split("## LoRA adapters", 1)[1]
    assert "rank 4" in card and f"{with_lora['kl']:.4g}" in card
    assert 'PeftModel.from_pretrained(base, "me/lora-saes", subfolder="lora")' in card


def test_a_resumed_lora_run_ends_bit_identical(tiny_gpt2, source, tmp_path):
    full = tmp_path / "full"
    result = lora_run(tiny_gpt2, full, source, "--save-every", "1", "--keep-checkpoints", "9")
    assert result.exit_code == 0, result.output
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    for step in sorted((cut / "checkpoints").iterdir())[3:]:  # as if killed after step 3
        shutil.rmtree(step)
    shutil.rmtree(cut / "lora")
    resumed = CliRunner().invoke(app, ["train", "--resume", str(cut)])
    assert resumed.exit_code == 0, resumed.output
    ours, reference = adapters(cut), adapters(full)
    assert ours.keys() == reference.keys()
    assert all(torch.equal(ours[k], reference[k]) for k in ours)


def test_all_layers_and_targets_choose_the_adapted_layers(tiny_gpt2, source, tmp_path):
    out = tmp_path / "all"
    result = lora_run(tiny_gpt2, out, source, "--lora-layers", "all", "--lora-target", "c_attn",
                      "--n-samples", "8")
    assert result.exit_code == 0, result.output
    layers = {k.split(".lora_")[0].removeprefix("base_model.model.") for k in adapters(out)}
    assert layers == {f"transformer.h.{i}.attn.c_attn" for i in range(3)}


@pytest.mark.parametrize(("extra", "says"), [
    (["--lora-target", "q_proj"], ["--lora-target q_proj", "attn.c_attn, attn.c_proj"]),
    (["--loss", "local"], ["--lora", "drop --loss local"]),
    (["--lora-layers", "some"], ["lora_layers='some'", "after, all"]),
    (["--lora-rank", "0"], ["lora_rank=0", ">= 1"]),
])
def test_bad_lora_settings_are_one_line(tiny_gpt2, source, tmp_path, extra, says):
    one_line_error(lora_run(tiny_gpt2, tmp_path / "bad", source, *extra), *says)


def test_lora_without_a_source_is_one_line(tiny_gpt2, tmp_path):
    result = cli_train(tiny_gpt2, tmp_path / "bad", "--lora")
    one_line_error(result, "--lora", "--init-from SOURCE")


def test_lora_without_peft_is_one_line_naming_the_extra(tiny_gpt2, source, tmp_path,
                                                        monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` raises ImportError
    one_line_error(lora_run(tiny_gpt2, tmp_path / "bad", source), "pip install 'sae-kit[lora]'")
    assert not (tmp_path / "bad").exists()  # refused before any output


def test_several_saes_share_one_set_of_adapters_from_the_first_sae_on(tiny_gpt2, tmp_path):
    source = tmp_path / "two"
    result = cli_train(tiny_gpt2, source, "--loss", "local", "--layer", "1", "--layer", "2",
                       "--n-samples", "16")
    assert result.exit_code == 0, result.output
    out = tmp_path / "lora"
    result = lora_run(tiny_gpt2, out, source, "--lora-target", "mlp.c_fc")
    assert result.exit_code == 0, result.output
    layers = {k.split(".lora_")[0].removeprefix("base_model.model.") for k in adapters(out)}
    assert layers == {"transformer.h.1.mlp.c_fc", "transformer.h.2.mlp.c_fc"}
    evaluated = CliRunner().invoke(app, ["eval", str(out), "--n-tokens", "1024", "--json",
                                         "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert sorted(report["lora"]["saes"]) == [HOOK, "blocks.2.hook_resid_pre"]
    assert report["lora"]["all_saes"]["kl"] < report["all_saes"]["kl"]
