"""`sae-kit train --loss kl+mse --finetune-fraction F`: MSE pre-training, then the KL fine-tune.

The recipe's fine-tune is an ordinary `--init-from` run of the pre-training, on the windows
after those the pre-training read; `--resume` continues whichever phase is left.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.record.config import TrainConfig
from sae_kit.train import recipe
from sae_kit.train.build import build_run
from sae_kit.train.group import build_group
from sae_kit.train.loop import fit
from tests.helpers import cli_train

pytestmark = pytest.mark.integration
HOOK = "blocks.1.hook_resid_pre"
RECIPE = ["--loss", "kl+mse", "--finetune-fraction", "0.5", "--layer", "1",
          "--loss-option", "balance_steps=1"]


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / HOOK / "sae.safetensors"))


def test_one_command_pretrains_with_mse_then_fine_tunes_from_it(tiny_gpt2, tmp_path):
    out = tmp_path / "ft"
    result = cli_train(tiny_gpt2, out, *RECIPE)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    pre = json.loads((out / "pretrain" / "config.json").read_text())
    tune = json.loads((out / "config.json").read_text())
    assert (pre["loss"], pre["n_samples"], pre["skip_samples"]) == ("local", 4, 0)
    assert (tune["loss"], tune["n_samples"], tune["skip_samples"]) == ("kl+mse", 4, 4)
    assert tune["resolved"]["init_from"]["source"] == str(out / "pretrain")
    assert json.loads((out / "recipe.json").read_text())["finetune_fraction"] == 0.5
    assert not torch.equal(weights(out)["W_enc"], weights(out / "pretrain")["W_enc"])


def test_the_fine_tune_reads_the_windows_after_the_pre_training(tiny_gpt2, tmp_path):
    config = TrainConfig(model=str(tiny_gpt2), dataset="pydoc", n_samples=8, batch_size=2,
                         grad_accum=2, context=32, dict_ratio=4, device="cpu",
                         output_dir=str(tmp_path / "a"))
    stream = build_run(config).data
    batches = [next(stream) for _ in range(3)]
    later = build_run(dataclasses.replace(config, skip_samples=4)).data
    assert torch.equal(next(later), batches[2])  # 4 windows = 2 micro-batches of 2


def test_resume_after_the_pre_training_ends_as_an_unbroken_recipe(tiny_gpt2, tmp_path):
    whole = cli_train(tiny_gpt2, tmp_path / "whole", *RECIPE)
    assert whole.exit_code == 0, whole.output
    config = TrainConfig.from_dict({**json.loads((tmp_path / "whole" / "recipe.json")
                                                 .read_text()),
                                    "output_dir": str(tmp_path / "cut")})
    pre, _ = recipe.start(config)  # the recipe stops after its first phase
    fit(build_group([pre.config]))
    assert recipe.remaining(tmp_path / "cut")[1] is False  # the fine-tune starts fresh
    resumed = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "cut")])
    assert resumed.exit_code == 0, resumed.output
    ours, theirs = weights(tmp_path / "cut"), weights(tmp_path / "whole")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize(("extra", "says"), [
    (["--loss", "local", "--finetune-fraction", "0.5"], "add --loss kl+mse"),
    (["--loss", "kl+mse", "--finetune-fraction", "0.01"], "each needs at least one"),
    (["--loss", "kl+mse", "--finetune-fraction", "1"], "finetune_fraction=1.0 must be"),
    (["--loss", "kl+mse", "--finetune-fraction", "0.5", "--lambda", "1,2"], "give one --lambda"),
    (["--loss", "kl+mse", "--finetune-fraction", "0.5", "--init-from", "x"], "drop --init-from"),
])
def test_recipe_settings_that_cannot_work_are_one_line(tiny_gpt2, tmp_path, extra, says):
    result = cli_train(tiny_gpt2, tmp_path / "bad", *extra)
    assert result.exit_code != 0
    assert says in result.output and "Traceback" not in result.output
    assert not (tmp_path / "bad" / "pretrain").exists()
