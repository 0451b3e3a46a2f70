"""`evaluate_run` checked against the Hugging Face model run directly, on a tiny GPT-2."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sae_kit.architectures.relu import ReluSAE
from sae_kit.data import DataSpec
from sae_kit.errors import SaeKitError
from sae_kit.eval.evaluation import evaluate_run
from sae_kit.eval.metrics import explained_variance_e2e_sae
from sae_kit.model.hookpoints import HookPoint
from sae_kit.store.jsonio import read_json, write_json_atomic
from sae_kit.store.sae_dir import save_sae
from tests.helpers import first_windows, write_run_record
from tests.oracles import explained_variance, mse

pytestmark = pytest.mark.integration  # evaluates whole runs

CONTEXT = 32
N_TOKENS = 5 * CONTEXT
ALIVE_WINDOWS = 12
ALIVE_TOKENS = ALIVE_WINDOWS * CONTEXT + 7  # rounded down to whole windows, as the reference
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
    sae = next(iter(saes.values()))
    write_run_record(run_dir, CONTEXT, sae.d_in, sae.n_dict, model=str(model_dir),
                     dataset="pydoc", sparsity_coeff=1.0, hook_points=list(saes))
    return run_dir


def held_out(model_dir: Path, part: str = "eval", n_windows: int = N_TOKENS // CONTEXT
             ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Input ids, HF hidden states and HF's own mean next-token loss on the first windows."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = torch.tensor(first_windows(DataSpec(), part, tokenizer, CONTEXT, n_windows))
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids, output_hidden_states=True)
    return ids, list(out.hidden_states), out.loss


def test_an_exact_sae_costs_nothing_and_metrics_match_hf(tiny_gpt2, tmp_path):
    run = write_run(tiny_gpt2, tmp_path / "run", {"blocks.1.hook_resid_pre": identity_sae(32)})
    result = evaluate_run(str(run), N_TOKENS, batch_size=2, device="cpu",
                          alive_tokens=ALIVE_TOKENS)
    ids, hidden, hf_loss = held_out(tiny_gpt2)
    # Alive elements are counted on the first training windows, not on the held-out ones.
    x = held_out(tiny_gpt2, "train", ALIVE_WINDOWS)[1][1]  # input of layer 1

    assert result["n_tokens"] == ids.numel() == N_TOKENS
    assert result["alive_n_tokens"] == ALIVE_WINDOWS * CONTEXT
    assert result["alive_part"] == "train" and result["paper_compatible"] is False
    assert result["clean_ce_loss"] == pytest.approx(float(hf_loss), rel=1e-5)
    m = result["saes"]["blocks.1.hook_resid_pre"]
    assert m["l0"] == D_MODEL  # each coordinate is nonzero in exactly one of x+, x-
    expected_alive = int((x > 0).reshape(-1, D_MODEL).any(0).sum()
                         + (x < 0).reshape(-1, D_MODEL).any(0).sum())
    assert m["alive"] == expected_alive and m["n_dict"] == 2 * D_MODEL
    assert m["alive_fraction"] == pytest.approx(expected_alive / (2 * D_MODEL))
    assert m["explained_variance"] == pytest.approx(1.0, abs=1e-6)
    assert m["explained_variance_e2e_sae"] == pytest.approx(1.0, abs=1e-6)
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
    one = evaluate_run(str(run), N_TOKENS, batch_size=1, device="cpu", alive_tokens=ALIVE_TOKENS)
    many = evaluate_run(str(run), N_TOKENS, batch_size=3, device="cpu",
                        alive_tokens=ALIVE_TOKENS)
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
    # The reference's explained variance is a per-batch quantity: batches of 3 windows, the
    # mean taken over each batch's tokens, averaged with token weights (5 windows: 3 + 2).
    per_batch = [(explained_variance_e2e_sae(x[i:i + 3], out.output[i:i + 3]).mean(), i)
                 for i in (0, 3)]
    expected = sum(float(v) * min(3, 5 - i) for v, i in per_batch) / 5
    assert m["explained_variance_e2e_sae"] == pytest.approx(expected, rel=1e-5)
    assert m["explained_variance_e2e_sae"] < m["explained_variance"]
    for name in saes:
        for key, value in one["saes"][name].items():
            if key == "explained_variance_e2e_sae":  # depends on the batch, by definition
                continue
            assert value == pytest.approx(many["saes"][name][key], rel=1e-5, abs=1e-9), key


def test_paper_compatible_evaluates_the_reference_s_500_windows(tiny_gpt2, tmp_path):
    run = write_run(tiny_gpt2, tmp_path / "run", {"blocks.1.hook_resid_pre": identity_sae(32)})
    result = evaluate_run(str(run), device="cpu", alive_tokens=ALIVE_TOKENS,
                          paper_compatible=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    available = len(first_windows(DataSpec(), "eval", tokenizer, CONTEXT, 10**6))
    assert result["n_windows"] == min(500, available) and result["paper_compatible"] is True


def test_run_dir_without_resolved_settings_is_one_clear_error(tiny_gpt2, tmp_path):
    run = write_run(tiny_gpt2, tmp_path / "run", {"blocks.1.hook_resid_pre": identity_sae(32)})
    config = read_json(run / "config.json")
    del config["resolved"]
    write_json_atomic(run / "config.json", config)
    with pytest.raises(SaeKitError, match=r"lacks \['resolved'\]"):
        evaluate_run(str(run), N_TOKENS, device="cpu")
