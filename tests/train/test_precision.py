"""--dtype, TF32 and --compile: what they change and what they must leave alone."""

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit import plugins
from sae_kit.architectures.relu import ReluSAE
from sae_kit.cli import app
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import load_model
from sae_kit.model.splice import Splice
from sae_kit.train import precision
from tests.helpers import cli_train

runner = CliRunner()
CPU = torch.device("cpu")
SAE_DIR = "blocks.1.hook_resid_pre"


def _train(model_dir, out, *extra):
    return cli_train(model_dir, out, "--loss", "e2e", "--layer", "1", *extra)


def test_the_sae_computes_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    sae, x = ReluSAE(32, 64), torch.randn(5, 32)
    plain = sae(x)
    with precision.autocast(CPU, "bf16"):
        assert torch.mm(x, x.T).dtype == torch.bfloat16  # autocast is really on here
        mixed = sae(x)
    assert mixed.output.dtype == mixed.codes.dtype == torch.float32
    torch.testing.assert_close(mixed.output, plain.output, rtol=0, atol=0)


def test_bf16_runs_the_model_in_bf16_and_keeps_the_kl_close(tiny_gpt2):
    loaded = load_model(str(tiny_gpt2))
    torch.manual_seed(0)
    splice = Splice(loaded.model, loaded.adapter, {HookPoint(1): ReluSAE(32, 64)})
    ids = torch.randint(0, 512, (2, 16))
    loss = plugins.load("losses", "e2e")(sparsity_coeff=0.0)
    fp32 = loss(splice, ids)
    with precision.autocast(CPU, "bf16"):
        bf16 = loss(splice, ids)
    kl32, kl16 = fp32.terms["kl"].item(), bf16.terms["kl"].item()
    assert kl16 != kl32  # the model's matmuls did run in bf16
    assert kl16 == pytest.approx(kl32, rel=0.05)
    bf16.loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32
               for p in splice.saes[HookPoint(1)].parameters())


@pytest.mark.integration
def test_train_with_bf16_saves_fp32_weights(tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    result = _train(tiny_gpt2, out, "--dtype", "bf16")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["dtype"] == "bf16"
    state = load_file(str(out / SAE_DIR / "sae.safetensors"))
    assert {t.dtype for t in state.values()} == {torch.float32}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(row["kl"] > 0 and row["loss"] == row["loss"] for row in rows)  # finite, not NaN


@pytest.mark.integration
def test_unknown_dtype_is_one_clear_line(tiny_gpt2, tmp_path):
    result = _train(tiny_gpt2, tmp_path / "run", "--dtype", "fp16")
    assert result.exit_code == 2
    assert "invalid training settings: dtype='fp16'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_help_documents_the_new_options():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("--dtype", "bf16 (autocast)", "--compile", "run eagerly"):
        assert text in result.output


@pytest.mark.integration
def test_compile_wraps_each_sae_forward(tiny_gpt2, tmp_path, monkeypatch):
    compiled_calls = []

    def fake_compile(fn):
        def run(*args, **kwargs):
            compiled_calls.append(fn)
            return fn(*args, **kwargs)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    result = _train(tiny_gpt2, tmp_path / "run", "--compile")
    assert result.exit_code == 0, result.output
    assert len(compiled_calls) == 4  # 2 steps x 2 micro-batches, one SAE
    assert "warning" not in result.stderr


@pytest.mark.integration
def test_a_failing_compile_warns_once_and_trains_eagerly(tiny_gpt2, tmp_path, monkeypatch):
    eager = _train(tiny_gpt2, tmp_path / "eager")
    assert eager.exit_code == 0, eager.output

    def broken_compile(fn):
        def run(*args, **kwargs):
            raise RuntimeError("no working C++ compiler\nlong details")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    result = _train(tiny_gpt2, tmp_path / "fallback", "--compile")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: --compile: compiling {SAE_DIR} failed (RuntimeError: no "
                        "working C++ compiler); running it eagerly"]
    trained = [load_file(str(tmp_path / run / SAE_DIR / "sae.safetensors"))
               for run in ("eager", "fallback")]
    for name, value in trained[0].items():
        torch.testing.assert_close(trained[1][name], value, rtol=0, atol=0)


def test_fused_adam_takes_the_same_steps_as_plain_adam():
    torch.manual_seed(0)
    start = torch.randn(50)
    weights = [torch.nn.Parameter(start.clone()) for _ in range(2)]
    optimizers = [precision.adam([weights[0]], lr=1e-2), torch.optim.Adam([weights[1]], lr=1e-2)]
    for step in range(3):
        grad = torch.randn(50, generator=torch.Generator().manual_seed(step))
        for weight, optimizer in zip(weights, optimizers, strict=True):
            weight.grad = grad.clone()
            optimizer.step()
    assert not torch.equal(weights[0], start)
    torch.testing.assert_close(weights[0], weights[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tf32_is_switched_on_for_cuda():
    precision.configure_backends(torch.device("cuda"))
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        assert matmul.fp32_precision == "tf32"
    else:
        assert matmul.allow_tf32
