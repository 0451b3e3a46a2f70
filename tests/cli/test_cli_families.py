"""`sae-kit train --loss e2e` on tiny GPT-2, Pythia and Llama models, with each architecture.

Each model is built from config with random weights, saved, and loaded by the CLI through
`from_pretrained`; two optimizer steps are enough to show the whole path works.
"""

import dataclasses
import json

import pytest
import torch
from typer.testing import CliRunner

from sae_kit.architectures.relu import ReluSAE
from sae_kit.architectures.topk import TopKSAE
from sae_kit.cli import app
from sae_kit.record.config import TrainConfig
from sae_kit.store.sae_dir import load_sae_dir
from tests.helpers import AUXK_OFF, FAST

pytestmark = pytest.mark.slow  # trains every model family through the CLI

ADAPTERS = {
    "gpt2": "sae_kit_gpt2:GPT2Adapter",
    "gpt_neox": "sae_kit_pythia:GPTNeoXAdapter",
    "llama": "sae_kit_llama:LlamaAdapter",
}
ARCHITECTURES = {
    "relu": ([], ReluSAE, {"bias_init": "zeros"}),
    "topk": (["--architecture", "topk", "--arch-option", "k=8"], TopKSAE,
             {**AUXK_OFF, "bias_init": "zeros", "k": 8}),
}
HOOK = "blocks.1.hook_resid_pre"


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("family", list(ADAPTERS))
def test_e2e_training_on_each_family_and_architecture(tmp_path, tiny_model_dir, family, arch):
    args, sae_class, options = ARCHITECTURES[arch]
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--model", str(tiny_model_dir(family)), "--out",
                                      str(out), *FAST, "--loss", "e2e", "--layer", "1", *args])
    assert result.exit_code == 0, result.output

    saved = json.loads((out / "config.json").read_text())
    assert saved["resolved"]["model_type"] == family
    assert saved["resolved"]["adapter"] == ADAPTERS[family]
    config = TrainConfig.from_dict(saved)  # the run's settings load back as they were
    assert config.architecture == arch and config.architecture_options == options

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["kl"] > 0 and torch.isfinite(torch.tensor(row["loss"]))
        assert 0 < row[f"l0/{HOOK}"] <= options.get("k", 128)
    if arch == "topk":  # no sparsity penalty: the loss is the KL alone
        assert all(r[f"sparsity/{HOOK}"] == 0 and r["loss"] == r["kl"] for r in rows)

    sae, sae_config = load_sae_dir(out / HOOK)
    assert type(sae) is sae_class and dataclasses.asdict(sae.opts) == options
    assert sae_config["architecture"] == arch and sae_config["model_type"] == family
    torch.manual_seed(0)  # the trainer seeds with --seed (0) right before building the SAE
    initial = sae_class(32, 128, **options)
    assert not torch.equal(sae.W_enc, initial.W_enc)  # two steps of training moved it
