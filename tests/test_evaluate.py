"""`evaluate_run` checked against the Hugging Face model run directly, on a tiny GPT-2."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sae_kit.architectures.relu import ReluSAE
from sae_kit.data import DataSpec, eval_windows
from sae_kit.errors import SaeKitError
from sae_kit.eval.evaluation import evaluate_run
from sae_kit.eval.metrics import explained_variance, mse
from sae_kit.model.hookpoints import HookPoint
from sae_kit.store.sae_dir import read_json, save_sae, write_json_atomic

CONTEXT = 32
N_TOKENS = 5 * CONTEXT
D_MODEL = 32  # the tiny_gpt2 fixture's width


def identity_sae(d: int) -> ReluSAE:
    """ReLU(x) - ReLU(-x) = x: a 2d-element SAE that reconstructs exactly."""
    sae = ReluSAE(d, 2 * d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=1))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def write_run(model_dir: Path, run_dir: Path, saes: dict[str, ReluSAE]) -> Path:
    extra = {"model": str(model_dir), "loss": "e2e"}
    for name, sae in saes.items():
        save_sae(sae, HookPoint.parse(name), run_dir / name, extra)
    config = {"model": str(model_dir), "dataset": "pydoc", "split": "train", "eval_split": None,
              "text_column": "text", "loss": "e2e", "sparsity_coeff": 1.0,
              "resolved": {"context": CONTEXT}}
    write_json_atomic(run_dir / "config.json", config)
    return run_dir


def held_out(model_dir: Path) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Input ids, HF hidden states and HF's own mean next-token loss on the eval windows."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = torch.tensor(eval_windows(DataSpec(), tokenizer, CONTEXT, N_TOKENS // CONTEXT))
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids, output_hidden_states=True)
    return ids, list(out.hidden_states), out.loss


def test_an_exact_sae_costs_nothing_and_metrics_match_hf(tiny_gpt2, tmp_path):
    run = write_run(tiny_gpt2, tmp_path / "run", {"blocks.1.hook_resid_pre": identity_sae(32)})
    result = evaluate_run(str(run), N_TOKENS, batch_size=2, device="cpu")
    ids, hidden, hf_loss = held_out(tiny_gpt2)
    x = hidden[1]  # input of layer 1

    assert result["n_tokens"] == ids.numel() == N_TOKENS
    assert result["clean_ce_loss"] == pytest.approx(float(hf_loss), rel=1e-5)
    m = result["saes"]["blocks.1.hook_resid_pre"]
    assert m["l0"] == D_MODEL  # each coordinate is nonzero in exactly one of x+, x-
    expected_alive = int((x > 0).reshape(-1, D_MODEL).any(0).sum()
                         + (x < 0).reshape(-1, D_MODEL).any(0).sum())
    assert m["alive"] == expected_alive and m["n_dict"] == 2 * D_MODEL
    assert m["alive_fraction"] == pytest.approx(expected_alive / (2 * D_MODEL))
    assert m["explained_variance"] == pytest.approx(1.0, abs=1e-6)
    assert m["mse"] == pytest.approx(0.0, abs=1e-10)
    assert m["ce_loss_increase"] == pytest.approx(0.0, abs=1e-5)
    assert m["kl"] == pytest.approx(0.0, abs=1e-6)
    assert set(k for k in m if k.startswith("downstream_mse/")) == {
        "downstream_mse/blocks.1.hook_resid_post", "downstream_mse/blocks.2.hook_resid_post"}
    assert m["downstream_mse"] == pytest.approx(0.0, abs=1e-10)
    assert read_json(run / "eval.json") == result


def test_random_sae_metrics_match_direct_computation_at_any_batch_size(tiny_gpt2, tmp_path):
    torch.manual_seed(1)
    random_sae = ReluSAE(D_MODEL, 64)
    saes = {"blocks.0.hook_resid_pre": identity_sae(32), "blocks.2.hook_resid_pre": random_sae}
    run = write_run(tiny_gpt2, tmp_path / "run", saes)
    one = evaluate_run(str(run), N_TOKENS, batch_size=1, device="cpu")
    many = evaluate_run(str(run), N_TOKENS, batch_size=3, device="cpu")
    _, hidden, _ = held_out(tiny_gpt2)

    x = hidden[2]
    with torch.no_grad():
        out = random_sae(x)
    m = many["saes"]["blocks.2.hook_resid_pre"]
    assert m["l0"] == pytest.approx(float((out.codes > 0).sum(-1).float().mean()), rel=1e-6)
    assert m["explained_variance"] == pytest.approx(explained_variance(x, out.output), rel=1e-5)
    assert m["mse"] == pytest.approx(mse(x, out.output), rel=1e-5)
    assert m["ce_loss_increase"] > 0.01 and m["kl"] > 0.01  # an untrained SAE hurts
    # Only the random SAE changes anything, so splicing both equals splicing it alone.
    assert many["all_saes"]["kl"] == pytest.approx(m["kl"], rel=1e-4)
    assert many["all_saes"]["ce_loss_increase"] == pytest.approx(m["ce_loss_increase"], rel=1e-4)
    for name in saes:
        for key, value in one["saes"][name].items():
            assert value == pytest.approx(many["saes"][name][key], rel=1e-5, abs=1e-9), key


def test_run_dir_without_resolved_settings_is_one_clear_error(tiny_gpt2, tmp_path):
    run = write_run(tiny_gpt2, tmp_path / "run", {"blocks.1.hook_resid_pre": identity_sae(32)})
    config = read_json(run / "config.json")
    del config["resolved"]
    write_json_atomic(run / "config.json", config)
    with pytest.raises(SaeKitError, match=r"lacks \['resolved'\]"):
        evaluate_run(str(run), N_TOKENS, device="cpu")
