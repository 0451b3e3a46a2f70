"""Unset training settings get the built-in model's short-run defaults, or the paper's."""

import copy

import pytest

from sae_kit.train.build import build_run
from sae_kit.train.config import MODEL_DEFAULTS, TrainConfig


@pytest.mark.parametrize("builtin", [True, False])
def test_unset_settings_follow_the_model(builtin, tiny_gpt2, tmp_path):
    model = "sae-kit-tiny" if builtin else str(tiny_gpt2)
    run = build_run(TrainConfig(model=model, output_dir=str(tmp_path), device="cpu",
                                context=32, dict_ratio=1))
    expected = (2e-3, 1, MODEL_DEFAULTS["n_samples"].builtin) if builtin else (
        5e-4, 2, MODEL_DEFAULTS["n_samples"].paper)
    assert (run.config.lr, run.config.grad_accum, run.resolved["n_samples"]) == expected
    assert run.optimizer.param_groups[0]["initial_lr"] == expected[0]
    assert run.config.to_dict()["lr"] == expected[0]  # what config.json records


def test_given_settings_win_on_the_built_in_model(tmp_path):
    run = build_run(TrainConfig(output_dir=str(tmp_path), device="cpu", context=32,
                                dict_ratio=1, lr=1e-4, grad_accum=3))
    assert (run.config.lr, run.config.grad_accum) == (1e-4, 3)


def test_build_run_leaves_the_given_config_unchanged(tmp_path):
    config = TrainConfig(output_dir=str(tmp_path), device="cpu", context=32, dict_ratio=1,
                         architecture="topk", architecture_options={"k": "4"})
    before = copy.deepcopy(config)
    run = build_run(config)
    assert config == before  # unset values stay unset in the caller's config
    assert run.config is not config
    assert run.config.hook_points == ["blocks.2.hook_resid_pre"]  # filled in on the copy
    assert run.config.architecture_options["k"] == 4
