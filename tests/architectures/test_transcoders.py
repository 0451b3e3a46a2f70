"""Transcoders (hook_mlp_in -> hook_mlp_out) and skip transcoders, per family and from the CLI.

The spliced pass is checked against a plain Hugging Face forward whose MLP output is replaced by
the transcoder applied to the MLP's own input by a hook written here; `local` is checked to
target the MLP's output, not the input; e2e trains 20 steps, resumes bit-exact and groups as
alone; eval reports the MSE against the true output; bad input is one line.
"""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.architectures.relu import ReluSAE
from sae_kit.architectures.topk import TopKSAE
from sae_kit.cli import app
from sae_kit.errors import SaeKitError
from sae_kit.losses.local import LocalLoss
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.splice import ModelRunner, Splice
from sae_kit.train import checkpoint
from tests.helpers import FAST

pytestmark = pytest.mark.slow

LAYER = 1
IN, OUT = HookPoint(LAYER, "mlp_in"), HookPoint(LAYER, "mlp_out")


@pytest.fixture(scope="module", params=["gpt2", "gpt_neox", "llama"])
def family(request):
    return request.param


def _transcoder(skip: bool) -> ReluSAE:
    torch.manual_seed(3)
    sae = ReluSAE(32, 64)
    if skip:
        sae.add_skip()
        with torch.no_grad():
            sae.W_skip.normal_(0, 0.1)  # a non-zero skip, so the test sees it
    return sae.eval()


@pytest.mark.parametrize("skip", [False, True])
def test_spliced_transcoder_equals_the_mlp_replaced_by_hand(family, loaded, ids, skip):
    sae = _transcoder(skip)
    mlp = loaded.adapter.mlp(loaded.adapter.layers(loaded.model)[LAYER])

    def by_hand(module, args, output):
        x = args[0]
        out = sae.decode(sae.encode(x))
        return out + x @ sae.W_skip.T if skip else out

    splice = Splice(loaded.model, loaded.adapter, {IN: sae}, {IN: OUT})
    with torch.no_grad():
        spliced = splice.spliced(ids, clean=splice.clean(ids, capture=[splice.first_position]))
        handle = mlp.register_forward_hook(by_hand)
        try:
            expected = loaded.model(ids).logits
        finally:
            handle.remove()
        clean = ModelRunner(loaded.model, loaded.adapter).run(ids, capture=[IN.site, OUT.site])
    torch.testing.assert_close(splice.logits(spliced.final_hidden), expected, atol=1e-5, rtol=0)
    # What the output replaced is the MLP's own output; the SAE read the MLP's input.
    torch.testing.assert_close(spliced.sae_targets[IN], clean.acts[OUT.site], atol=1e-6, rtol=0)
    torch.testing.assert_close(spliced.sae_inputs[IN], clean.acts[IN.site], atol=1e-6, rtol=0)


def test_local_loss_targets_the_mlp_output(family, loaded, ids):
    sae = TopKSAE(32, 64, k=4)  # any architecture's code rule
    splice = Splice(loaded.model, loaded.adapter, {IN: sae}, {IN: OUT})
    result = LocalLoss(0.0)(splice, ids)
    clean = ModelRunner(loaded.model, loaded.adapter).run(ids, capture=[IN.site, OUT.site])
    with torch.no_grad():
        expected = F.mse_loss(sae(clean.acts[IN.site]).output, clean.acts[OUT.site])
    assert float(result.terms[f"mse/{IN}"]) == pytest.approx(float(expected), rel=1e-6)


def test_transcoder_ends_are_checked():
    assert IN.output_for("mlp_out") == OUT
    assert HookPoint(1, "resid_pre").output_for("blocks.2.hook_resid_pre").name == \
        "blocks.2.hook_resid_pre"
    with pytest.raises(SaeKitError, match="must come after its input"):
        OUT.output_for("mlp_in")
    with pytest.raises(SaeKitError, match="must come after its input"):
        IN.output_for("mlp_in")


TWENTY_STEPS = ["--dataset", "pydoc", "--n-samples", "80", "--batch-size", "2", "--grad-accum",
                "2", "--context", "16", "--dict-ratio", "4", "--device", "cpu", "--log-every",
                "1", "--layer", "1", "--hook", "mlp_in", "--transcoder-output", "mlp_out",
                "--lr", "3e-3", "--seed", "5"]


def _train(*args):
    result = CliRunner().invoke(app, ["train", *args])
    assert result.exit_code == 0, result.output
    return result


def _weights(run_dir):
    return load_file(str(run_dir / IN.name / "sae.safetensors"))


def _metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


def test_e2e_skip_transcoder_trains_20_steps_resumes_bit_exact_and_evaluates(
        tiny_gpt2, tmp_path, one_thread):
    out = tmp_path / "run"
    _train("--model", str(tiny_gpt2), "--out", str(out), "--loss", "e2e", *TWENTY_STEPS,
           "--transcoder-skip", "--save-every", "7", "--keep-checkpoints", "3")
    rows, weights = _metrics(out), _weights(out)
    assert [r["step"] for r in rows] == list(range(1, 21)) and rows[0]["kl"] != rows[-1]["kl"]
    saved = json.loads((out / IN.name / "config.json").read_text())
    assert (saved["hook_point"], saved["output_hook_point"], saved["skip"]) == \
        (IN.name, OUT.name, True)
    assert weights["W_skip"].shape == (32, 32) and weights["W_skip"].abs().max() > 0
    for later in checkpoint.list_checkpoints(out / "checkpoints"):
        if int(later.name.split("-")[1]) > 14:
            shutil.rmtree(later)
    shutil.rmtree(out / IN.name)
    _train("--resume", str(out), "--device", "cpu")
    after = _weights(out)
    assert after.keys() == weights.keys()
    assert all(torch.equal(after[k], weights[k]) for k in weights)
    assert _metrics(out) == rows
    result = CliRunner().invoke(app, ["eval", str(out), "--n-tokens", "128", "--batch-size",
                                      "2", "--alive-tokens", "256", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "eval.json").read_text())["saes"][IN.name]
    assert metrics["kl"] > 0 and metrics["ce_loss_increase"] == pytest.approx(
        metrics["ce_loss"] - json.loads((out / "eval.json").read_text())["clean_ce_loss"])
    # The MSE is against the MLP's output: reconstructing the input would score otherwise.
    assert metrics["mse"] > 0 and {"downstream_mse/blocks.1.hook_resid_post"} <= set(metrics)
    # features and compare read the transcoder's codes at its input hook point.
    report = tmp_path / "report"
    result = CliRunner().invoke(app, ["features", str(out), "--tokens", "128", "--out",
                                      str(report), "--device", "cpu", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads((report / "summary.json").read_text())
    assert summary["meta"]["hook_point"] == IN.name and summary["meta"]["n_tokens"] == 128
    result = CliRunner().invoke(app, ["compare", str(out), str(out), "--out",
                                      str(tmp_path / "compare"), "--tokens", "128", "--device",
                                      "cpu"])
    assert result.exit_code == 0, result.output


def test_a_lambda_group_of_transcoders_equals_each_trained_alone(tiny_gpt2, tmp_path, one_thread):
    group, alone = tmp_path / "group", tmp_path / "alone"
    _train("--model", str(tiny_gpt2), "--out", str(group), "--loss", "e2e", *TWENTY_STEPS,
           "--lambda", "0.05,0.5")
    _train("--model", str(tiny_gpt2), "--out", str(alone), "--loss", "e2e", *TWENTY_STEPS,
           "--lambda", "0.5")
    shared, lone = _weights(group / "lambda0.5"), _weights(alone)
    assert all(torch.equal(shared[k], lone[k]) for k in lone)
    assert _metrics(group / "lambda0.5") == _metrics(alone)


def _one_line(result, *words):
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(("extra", "words"), [
    (["--layer", "1", "--hook", "mlp_out", "--transcoder-output", "mlp_in"],
     ("must come after its input",)),
    (["--hook-point", "transformer.h.1.mlp.c_fc", "--transcoder-output", "mlp_out"],
     ("width 128", "width 32")),
    (["--transcoder-skip"], ("--transcoder-output",)),
    (["--layer", "1", "--transcoder-output", "hook_nothing"], ("bad hook point",)),
])
def test_bad_transcoder_input_is_one_line(tiny_gpt2, tmp_path, extra, words):
    result = CliRunner().invoke(app, ["train", "--model", str(tiny_gpt2), "--out",
                                      str(tmp_path / "run"), *FAST, *extra])
    _one_line(result, *words)
    assert not (tmp_path / "run").exists()
