"""`sae-kit sweep`: a grid grouped into shared passes, trained, evaluated, resumed and plotted."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.errors import SaeKitError
from sae_kit.sweep.spec import load_sweep
from sae_kit.train import checkpoint

runner = CliRunner()
SAE = "blocks.1.hook_resid_pre"


pytestmark = pytest.mark.usefixtures("one_thread")


def _sweep_file(tmp_path, model_dir, extra=""):
    path = tmp_path / "sweep.toml"
    path.write_text(f"""
out = "{tmp_path / 'runs'}"
eval_tokens = 256
plot = "frontier.pdf"

[base]
model = "{model_dir}"
dataset = "pydoc"
layer = 1
context = 16
batch_size = 2
grad_accum = 1
n_samples = 6
dict_ratio = 4
device = "cpu"
log_every = 1
{extra}
[grid]
loss = ["local", "e2e"]
lambda = [0.01, 0.5]
""")
    return path


def test_a_sweep_file_is_grouped_by_what_can_share_a_pass(tiny_gpt2, tmp_path):
    spec = load_sweep(_sweep_file(tmp_path, tiny_gpt2))
    assert [p.name for p in spec.points] == ["local-lambda0.01", "local-lambda0.5",
                                             "e2e-lambda0.01", "e2e-lambda0.5"]
    assert [[p.name for p in g] for g in spec.groups] == [["local-lambda0.01", "local-lambda0.5"],
                                                          ["e2e-lambda0.01", "e2e-lambda0.5"]]
    assert spec.points[1].config.sparsity_coeff == 0.5
    assert spec.points[1].config.hook_points == [SAE]


def test_sweep_trains_evaluates_plots_then_skips_and_resumes(tiny_gpt2, tmp_path):
    path = _sweep_file(tmp_path, tiny_gpt2)
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "runs"
    assert "| e2e-lambda0.5 | e2e | relu | 0.5 |" in result.stdout
    assert (out / "frontier.pdf").read_bytes().startswith(b"%PDF")
    assert "| local-lambda0.01 |" in (out / "results.md").read_text()
    evals = {d.name: json.loads((d / "eval.json").read_text()) for d in out.iterdir()
             if (d / "eval.json").exists()}
    assert sorted(evals) == ["e2e-lambda0.01", "e2e-lambda0.5", "local-lambda0.01",
                             "local-lambda0.5"]
    weights = load_file(str(out / "e2e-lambda0.5" / SAE / "sae.safetensors"))

    # Interrupted after its last checkpoint: no SAE saved, no eval. The rerun resumes only it.
    shutil.rmtree(out / "e2e-lambda0.5" / SAE)
    (out / "e2e-lambda0.5" / "eval.json").unlink()
    untouched = (out / "local-lambda0.5" / SAE / "sae.safetensors").stat().st_mtime_ns
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 0, result.output
    assert "resuming e2e-lambda0.5" in result.output and "training" not in result.output
    again = load_file(str(out / "e2e-lambda0.5" / SAE / "sae.safetensors"))
    assert all(torch.equal(again[k], weights[k]) for k in weights)
    assert (out / "local-lambda0.5" / SAE / "sae.safetensors").stat().st_mtime_ns == untouched
    assert checkpoint.list_checkpoints(out / "e2e-lambda0.5" / "checkpoints")


def test_print_commands_gives_one_line_per_group(tiny_gpt2, tmp_path):
    path = _sweep_file(tmp_path, tiny_gpt2)
    result = runner.invoke(app, ["sweep", str(path), "--print-commands", "--launcher",
                                 "torchrun --nproc-per-node 2 -m sae_kit"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"torchrun --nproc-per-node 2 -m sae_kit sweep {path} --only {i}" for i in (0, 1)]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("extra", "message"), [
    ("colour = 3\n", "unknown setting(s) colour"),
    ("warmup_fraction = 2.0\n", "invalid training settings: warmup_fraction=2.0"),
])
def test_a_bad_sweep_file_is_one_line(tiny_gpt2, tmp_path, extra, message):
    result = runner.invoke(app, ["sweep", str(_sweep_file(tmp_path, tiny_gpt2, extra))])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_groups_need_distinct_names(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[runs]]\nname = "a"\nlambda = 1\n[[runs]]\nname = "a"\nlambda = 2\n')
    with pytest.raises(SaeKitError, match="share a run directory"):
        load_sweep(path)
