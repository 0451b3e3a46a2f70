"""e2e and e2e+ds with an SAE inside a layer (hook_mlp_out): 20 steps from the CLI, a resume
that ends bit-exact, and a group of several lambdas whose members equal each trained alone."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.record.config import TrainConfig
from sae_kit.train import checkpoint
from sae_kit.train.build import build_run
from sae_kit.train.group import build_group
from sae_kit.train.loop import fit
from tests.helpers import FAST

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

SAE = "blocks.1.hook_mlp_out"
TWENTY_STEPS = ["--dataset", "pydoc", "--n-samples", "80", "--batch-size", "2", "--grad-accum",
                "2", "--context", "16", "--dict-ratio", "4", "--device", "cpu", "--log-every",
                "1", "--layer", "1", "--hook", "mlp_out", "--lr", "3e-3", "--seed", "5"]


def _weights(run_dir):
    return load_file(str(run_dir / SAE / "sae.safetensors"))


def _metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


def _train(*args):
    result = CliRunner().invoke(app, ["train", *args])
    assert result.exit_code == 0, result.output
    return result


def test_e2e_at_mlp_out_trains_20_steps_and_resumes_bit_exact(tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    _train("--model", str(tiny_gpt2), "--out", str(out), "--loss", "e2e", *TWENTY_STEPS,
           "--save-every", "7", "--keep-checkpoints", "3")
    rows, weights = _metrics(out), _weights(out)
    assert [r["step"] for r in rows] == list(range(1, 21)) and rows[0]["kl"] != rows[-1]["kl"]
    saved = json.loads((out / SAE / "config.json").read_text())
    assert saved["hook_point"] == SAE and saved["d_in"] == 32
    # As if killed after step 14: the later checkpoint and the final SAE are gone.
    for later in checkpoint.list_checkpoints(out / "checkpoints"):
        if int(later.name.split("-")[1]) > 14:
            shutil.rmtree(later)
    shutil.rmtree(out / SAE)
    _train("--resume", str(out), "--device", "cpu")
    after = _weights(out)
    assert after.keys() == weights.keys()
    assert all(torch.equal(after[k], weights[k]) for k in weights)
    assert _metrics(out) == rows


def test_a_lambda_group_at_mlp_out_equals_each_trained_alone(tiny_gpt2, tmp_path):
    group = tmp_path / "group"
    _train("--model", str(tiny_gpt2), "--out", str(group), "--loss", "e2e", *TWENTY_STEPS,
           "--lambda", "0.05,0.5")
    alone = tmp_path / "alone"
    _train("--model", str(tiny_gpt2), "--out", str(alone), "--loss", "e2e", *TWENTY_STEPS,
           "--lambda", "0.5")
    shared, lone = _weights(group / "lambda0.5"), _weights(alone)
    assert all(torch.equal(shared[k], lone[k]) for k in lone)
    assert _metrics(group / "lambda0.5") == _metrics(alone)
    assert not torch.equal(_weights(group / "lambda0.05")["W_dec"], lone["W_dec"])


def _config(model_dir, out, **overrides):
    settings = dict(model=str(model_dir), dataset="pydoc", output_dir=str(out), loss="e2e+ds",
                    hook_points=[SAE, "blocks.0.hook_attn_out"], context=16, batch_size=2,
                    grad_accum=2, dict_ratio=4, device="cpu", log_every=1, lr=3e-3,
                    n_samples=24, seed=5)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_e2e_ds_with_saes_at_two_kinds_of_hook_point_groups_as_alone(tiny_gpt2, tmp_path):
    runs = build_group([_config(tiny_gpt2, tmp_path / f"m{i}", sparsity_coeff=lam)
                        for i, lam in enumerate((0.1, 1.0))])
    fit(runs, group_dir=tmp_path)
    fit(build_run(_config(tiny_gpt2, tmp_path / "alone", sparsity_coeff=1.0)))
    rows = _metrics(tmp_path / "alone")
    assert "ds_mse" in rows[-1] and f"sparsity/{SAE}" in rows[-1]
    assert _metrics(tmp_path / "m1") == rows
    for hp in (SAE, "blocks.0.hook_attn_out"):
        lone = load_file(str(tmp_path / "alone" / hp / "sae.safetensors"))
        shared = load_file(str(tmp_path / "m1" / hp / "sae.safetensors"))
        assert all(torch.equal(shared[k], lone[k]) for k in lone)


EVAL = ["--n-tokens", "128", "--batch-size", "2", "--alive-tokens", "256", "--device", "cpu"]


@pytest.mark.parametrize("loss", ["local", "e2e"])
def test_an_sae_at_a_module_path_trains_evaluates_and_reports(tiny_gpt2, tmp_path, loss):
    """The MLP's hidden layer (c_fc's output, width 4 x 32) under local and e2e: the SAE takes
    the module's width, and eval and features read the same place."""
    path, out = "transformer.h.1.mlp.c_fc", tmp_path / loss
    _train("--model", str(tiny_gpt2), "--out", str(out), "--loss", loss, "--hook-point", path,
           *FAST)
    saved = json.loads((out / path / "config.json").read_text())
    assert (saved["hook_point"], saved["d_in"], saved["n_dict"]) == (path, 128, 128)
    result = CliRunner().invoke(app, ["eval", str(out), *EVAL])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "eval.json").read_text())["saes"][path]
    assert metrics["mse"] > 0 and metrics["kl"] > 0 and 0 < metrics["l0"] <= 128
    # Downstream MSE is read on the residual stream from layer 1's output on.
    assert {"downstream_mse/blocks.1.hook_resid_post",
            "downstream_mse/blocks.2.hook_resid_post"} <= set(metrics)
    report = tmp_path / f"report-{loss}"
    result = CliRunner().invoke(app, ["features", str(out), "--tokens", "128", "--out",
                                      str(report), "--device", "cpu", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads((report / "summary.json").read_text())
    assert (summary["meta"]["hook_point"], summary["meta"]["d_in"]) == (path, 128)
    assert summary["meta"]["n_tokens"] == 128 and len(summary["features"]) == 128
    assert all(f["promotes"] == "" for f in summary["features"])  # no direction in d_model
    # importance replaces the module's output: with the SAE's error added back the model is
    # the original one (KL 0), the SAE alone changes it.
    result = CliRunner().invoke(app, ["importance", str(out), "--tokens", "96", "--device",
                                      "cpu", "--batch-size", "2", "--exact-top", "2",
                                      "--exact-random", "1", "--out", str(tmp_path / "imp")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "imp" / f"importance-{path}" / "importance.json")
                         .read_text())["summary"]
    assert summary["spliced"]["kl"]["whole_sae"] > 0
    assert abs(summary["with_error"]["kl"]["whole_sae"]) < 1e-6
