"""Unset training settings get the built-in model's short-run defaults, or the paper's."""

import copy

import pytest
import torch

from sae_kit.errors import SaeKitError
from sae_kit.record.config import MODEL_DEFAULTS, TrainConfig
from sae_kit.train.build import build_run


@pytest.mark.parametrize("builtin", [True, False])
def test_unset_settings_follow_the_model(builtin, tiny_gpt2, tmp_path):
    model = "sae-kit-tiny" if builtin else str(tiny_gpt2)
    run = build_run(TrainConfig(model=model, dataset="pydoc", output_dir=str(tmp_path),
                                device="cpu", context=32, dict_ratio=1))
    expected = (2e-3, 1, MODEL_DEFAULTS["n_samples"].builtin) if builtin else (
        5e-4, 2, MODEL_DEFAULTS["n_samples"].paper)
    assert (run.config.lr, run.config.grad_accum, run.resolved.n_samples) == expected
    assert run.optimizer.param_groups[0]["initial_lr"] == expected[0]
    assert run.config.to_dict()["lr"] == expected[0]  # what config.json records


def test_another_model_without_a_dataset_is_one_clear_error():
    with pytest.raises(SaeKitError) as caught:
        TrainConfig(model="gpt2")
    assert str(caught.value) == (
        "--model gpt2 needs --dataset (a Hub dataset id or local .txt/.jsonl/.parquet files): the "
        "built-in 'pydoc' text is ~100k tokens, which the paper's 400k samples of 1024 tokens "
        "would pass over ~4,000 times; pass --dataset pydoc to train on it anyway")
    assert TrainConfig(model="gpt2", dataset="pydoc").dataset == "pydoc"  # asked for: allowed
    assert TrainConfig().dataset == "pydoc"  # the built-in model defaults to the built-in text


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


def test_uniform_bias_init_through_a_run_keeps_the_seed_s_weights(tiny_gpt2, tmp_path):
    def sae(**arch_options):
        run = build_run(TrainConfig(model=str(tiny_gpt2), dataset="pydoc", device="cpu",
                                    output_dir=str(tmp_path), context=32, dict_ratio=1, seed=4,
                                    architecture_options=arch_options))
        assert run.config.architecture_options == {"bias_init": arch_options.get(
            "bias_init", "zeros")}  # recorded in config.json
        return next(iter(run.saes.values()))

    zeros, uniform = sae(), sae(bias_init="uniform")
    assert torch.equal(zeros.W_enc, uniform.W_enc) and torch.equal(zeros.W_dec, uniform.W_dec)
    assert not zeros.b_enc.any() and uniform.b_enc.abs().min() > 0
