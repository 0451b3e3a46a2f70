"""Loss options: ``opts`` on losses as on architectures, typed in config.json with defaults."""

import dataclasses
import json

import pytest

from sae_kit.architectures.topk import TopKSAE
from sae_kit.errors import SaeKitError
from sae_kit.losses.base import Loss, LossResult
from sae_kit.losses.e2e_ds import E2EDownstreamLoss
from sae_kit.record.config import TrainConfig
from sae_kit.store.jsonio import write_json_atomic
from sae_kit.train.build import build_run, resolve_defaults
from sae_kit.train.loop import fit
from sae_kit.train.resume import resume

FAST = dict(device="cpu", context=16, batch_size=2, n_samples=4, dict_ratio=1, log_every=1)


def test_losses_and_architectures_share_the_options_attribute():
    loss = E2EDownstreamLoss(1.0, ds_coeff="3")
    assert loss.opts.ds_coeff == 3.0 and loss.opts.kl_coeff == 0.5
    sae = TopKSAE(4, 8, k="2")
    assert sae.opts.k == 2
    # One name on both plugin kinds: the old second names (a property on losses, a method on
    # SAEs) are gone.
    assert not hasattr(loss, "options") and not hasattr(sae, "options")


def test_options_are_recorded_typed_with_defaults(tiny_gpt2):
    config = TrainConfig(model=str(tiny_gpt2), dataset="pydoc", loss="e2e+ds",
                         loss_options={"ds-coeff": "3"},
                         architecture="topk", architecture_options={"k": "2"}, **FAST)
    loss = E2EDownstreamLoss(1.0, **config.loss_options)
    resolved = resolve_defaults(config, loss)
    assert resolved.loss_options == {
        "kl_chunk": loss.opts.kl_chunk, "kl_cache_mb": loss.opts.kl_cache_mb, "kl_coeff": 0.5,
        "ds_coeff": 3.0, "downstream": "paper"}
    assert resolved.architecture_options["k"] == 2


class NoOptionsLoss(Loss):
    name = "plain"

    def __call__(self, splice, input_ids) -> LossResult:
        raise NotImplementedError


def test_a_loss_without_options_refuses_one_in_one_line():
    with pytest.raises(SaeKitError, match="unknown option 'weight' for 'plain'; it takes: none"):
        NoOptionsLoss(1.0, weight="2")
    assert dataclasses.asdict(NoOptionsLoss(1.0).opts) == {}


def test_unknown_option_is_one_line():
    with pytest.raises(SaeKitError, match="unknown option 'nope' for 'e2e\\+ds'; it takes: "):
        E2EDownstreamLoss(1.0, nope="1")


@pytest.mark.integration
def test_config_json_records_typed_loss_options(tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(model=str(tiny_gpt2), dataset="pydoc", output_dir=str(out), loss="e2e+ds",
                         loss_options={"ds_coeff": "2"}, **FAST)
    fit(build_run(config))
    saved = json.loads((out / "config.json").read_text())
    assert saved["loss_options"]["ds_coeff"] == 2.0
    assert saved["loss_options"]["kl_coeff"] == 0.5
    assert config.loss_options == {"ds_coeff": "2"}  # the caller's config is left alone
    sae_config = json.loads((out / "blocks.1.hook_resid_pre" / "config.json").read_text())
    assert sae_config["loss_options"] == saved["loss_options"]


@pytest.mark.integration
def test_a_run_saved_with_plain_string_options_still_resumes(tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(model=str(tiny_gpt2), dataset="pydoc", output_dir=str(out), loss="e2e+ds",
                         save_every=1, **{**FAST, "n_samples": 8})
    run = build_run(config)
    # stop after one step: a checkpoint to resume from
    run.resolved = dataclasses.replace(run.resolved, total_steps=1)
    fit(run)
    saved = json.loads((out / "config.json").read_text())
    saved["loss_options"] = {"ds_coeff": "2.5"}  # what earlier releases wrote
    write_json_atomic(out / "config.json", saved)
    resumed, state = resume(out)
    assert state.step == 1 and resumed.config.loss_options["ds_coeff"] == 2.5
    fit(resumed, start=state)
    assert json.loads((out / "config.json").read_text())["loss_options"]["ds_coeff"] == 2.5
