"""Training-loop behaviour through the Python API."""

import json
import math

import pytest
import torch

from sae_kit.record.config import TrainConfig
from sae_kit.train.build import build_run
from sae_kit.train.loop import fit

pytestmark = pytest.mark.integration  # trains whole runs


def _config(model_dir, out, **overrides):
    settings = dict(model=str(model_dir), dataset="pydoc", output_dir=str(out), loss="e2e",
                    hook_points=["blocks.1.hook_resid_pre"], context=32, batch_size=4,
                    grad_accum=1, dict_ratio=4, device="cpu", log_every=1, lr=3e-3,
                    sparsity_coeff=0.05, warmup_fraction=0.0)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_only_sae_parameters_change(tiny_gpt2, tmp_path):
    run = build_run(_config(tiny_gpt2, tmp_path / "run", n_samples=16))
    model_before = {k: v.clone() for k, v in run.loaded.model.state_dict().items()}
    sae_before = {k: v.clone() for k, v in next(iter(run.saes.values())).state_dict().items()}
    fit(run)
    for name, value in run.loaded.model.state_dict().items():
        assert torch.equal(value, model_before[name]), name  # bit-identical
    sae_after = next(iter(run.saes.values())).state_dict()
    assert all(not torch.equal(sae_after[k], v) for k, v in sae_before.items())


def test_e2e_loss_goes_down_with_a_fixed_seed(tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    fit(build_run(_config(tiny_gpt2, out, n_samples=4 * 40, seed=3)))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    kl = [r["kl"] for r in rows]
    assert len(kl) == 40
    first, last = sum(kl[:5]) / 5, sum(kl[-5:]) / 5
    assert last < 0.5 * first, (first, last)


def test_learning_rate_follows_warmup_then_cosine(tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    fit(build_run(_config(tiny_gpt2, out, n_samples=4 * 20, warmup_fraction=0.25)))
    lrs = [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    peak = 3e-3
    assert lrs[0] == peak / 5 and max(lrs) == peak and lrs.index(peak) == 4
    # last step: 14 of 15 decay steps done
    expected_last = peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 14 / 15)))
    assert abs(lrs[-1] - expected_last) < 1e-9
