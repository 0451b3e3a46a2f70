"""BatchTopK, JumpReLU and Matryoshka (with AuxK) under every loss, from the CLI: 20 steps,
resume from a checkpoint bit-exactly, and a shared pass of two settings equals each alone."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.record.config import TrainConfig
from sae_kit.train.build import build_run
from sae_kit.train.group import build_group
from sae_kit.train.loop import fit
from tests.helpers import SAE_AT_1, cli_train

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

# 20 optimizer steps of 2 x 16 tokens; dead after 64 tokens so AuxK works within the run.
TWENTY = ["--dataset", "pydoc", "--n-samples", "40", "--batch-size", "2", "--grad-accum", "1",
          "--context", "16", "--dict-ratio", "4", "--log-every", "1", "--device", "cpu",
          "--layer", "1", "--lr", "3e-3"]
ARCHS = {
    "batchtopk": ["--arch-option", "k=6", "--arch-option", "auxk=true",
                  "--arch-option", "dead_tokens=64", "--arch-option", "auxk_k=16"],
    "jumprelu": ["--lambda", "2", "--arch-option", "init_threshold=0.05",
                 "--arch-option", "bandwidth=0.05"],
    "matryoshka": ["--arch-option", "k=6", "--arch-option", "prefixes=16,64",
                   "--arch-option", "auxk=true", "--arch-option", "dead_tokens=64"],
}
LOSSES = ["local", "e2e", "e2e+ds"]


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_trains_20_steps_and_resumes_bit_exactly(tiny_gpt2, tmp_path, arch, loss):
    out = tmp_path / "run"
    args = [*TWENTY, "--loss", loss, "--architecture", arch, *ARCHS[arch],
            "--save-every", "10"]
    result = cli_train(tiny_gpt2, out, *args, base=[])
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    assert [r["step"] for r in rows] == list(range(1, 21))
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    if arch != "jumprelu":  # AuxK is on: dead latents appear and are logged
        assert f"dead_fraction/{SAE_AT_1}" in rows[-1] and f"auxk/{SAE_AT_1}" in rows[-1]
    if arch == "matryoshka":
        assert rows[-1][f"matryoshka/{SAE_AT_1}"] > 0
    if arch == "jumprelu":
        assert rows[-1][f"sparsity/{SAE_AT_1}"] > 0
    final = load_file(str(out / SAE_AT_1 / "sae.safetensors"))

    # As after a kill at step 15: the step-10 checkpoint is the newest, nothing after it left.
    shutil.rmtree(out / "checkpoints" / "step-000020")
    shutil.rmtree(out / SAE_AT_1)
    result = CliRunner().invoke(app, ["train", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    resumed = load_file(str(out / SAE_AT_1 / "sae.safetensors"))
    assert final.keys() == resumed.keys()
    for name, value in final.items():
        assert torch.equal(resumed[name], value), name
    assert [r["step"] for r in _rows(out)] == list(range(1, 21))


GROUPS = {  # two members that differ in lambda or k
    "batchtopk": [(0.0, {"k": 4, "auxk": True, "dead_tokens": 64}),
                  (0.0, {"k": 8, "auxk": True, "dead_tokens": 64})],
    "jumprelu": [(0.5, {"init_threshold": 0.05, "bandwidth": 0.05}),
                 (4.0, {"init_threshold": 0.05, "bandwidth": 0.05})],
    "matryoshka": [(0.0, {"k": 4, "prefixes": "16,64", "auxk": True, "dead_tokens": 64}),
                   (0.0, {"k": 8, "prefixes": "16,64", "auxk": True, "dead_tokens": 64})],
}


def _config(model_dir, out, loss, arch, lam, options):
    return TrainConfig(model=str(model_dir), dataset="pydoc", output_dir=str(out), loss=loss,
                       hook_points=[SAE_AT_1], context=16, batch_size=2, grad_accum=2,
                       dict_ratio=4, device="cpu", log_every=2, lr=3e-3, n_samples=24,
                       seed=5, sparsity_coeff=lam, architecture=arch,
                       architecture_options=dict(options))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("arch", list(GROUPS))
def test_a_group_of_two_ends_where_each_ends_alone(tiny_gpt2, tmp_path, arch, loss):
    members = GROUPS[arch]
    group = tmp_path / "group"
    fit(build_group([_config(tiny_gpt2, group / f"m{i}", loss, arch, lam, opts)
                     for i, (lam, opts) in enumerate(members)]), group_dir=group)
    for i, (lam, opts) in enumerate(members):
        alone = tmp_path / f"alone{i}"
        fit(build_run(_config(tiny_gpt2, alone, loss, arch, lam, opts)))
        shared = load_file(str(group / f"m{i}" / SAE_AT_1 / "sae.safetensors"))
        lone = load_file(str(alone / SAE_AT_1 / "sae.safetensors"))
        assert shared.keys() == lone.keys()
        for name in lone:
            assert torch.equal(shared[name], lone[name]), (arch, loss, i, name)
