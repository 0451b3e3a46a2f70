"""Loss options: typed in config.json like architecture options, and old-style losses still work."""

import dataclasses
import json

import pytest

from sae_kit.errors import SaeKitError
from sae_kit.losses.base import Loss, LossResult
from sae_kit.losses.e2e_ds import E2EDownstreamLoss
from sae_kit.record.config import TrainConfig
from sae_kit.store.jsonio import write_json_atomic
from sae_kit.train.build import build_run
from sae_kit.train.loop import fit
from sae_kit.train.resume import resume

FAST = dict(device="cpu", context=16, batch_size=2, n_samples=4, dict_ratio=1, log_every=1)


def test_losses_and_architectures_share_the_options_attribute():
    loss = E2EDownstreamLoss(1.0, ds_coeff="3")
    assert loss.opts.ds_coeff == 3.0 and loss.opts.kl_coeff == 0.5
    assert loss.options is loss.opts  # the name the old guide used still reads them


def test_options_are_recorded_typed_with_defaults():
    loss = E2EDownstreamLoss(1.0, **{"ds-coeff": "3"})
    assert loss.options_record({"ds-coeff": "3"}) == {
        "kl_chunk": loss.opts.kl_chunk, "kl_cache_mb": loss.opts.kl_cache_mb, "kl_coeff": 0.5,
        "ds_coeff": 3.0, "downstream": "paper"}


class OldStyleLoss(Loss):
    """Written against the old guide: takes its options itself, declares no Options."""

    name = "old"

    def __init__(self, sparsity_coeff: float, **kwargs):
        super().__init__(sparsity_coeff)
        self.weight = float(kwargs.get("weight", 1.0))

    def __call__(self, splice, input_ids) -> LossResult:
        raise NotImplementedError


def test_a_loss_without_options_keeps_what_it_was_given():
    loss = OldStyleLoss(1.0, weight="2")
    assert loss.weight == 2.0
    assert loss.options_record({"weight": "2"}) == {"weight": "2"}  # nothing dropped


class SelfParsingLoss(Loss):
    """Also old-style: parses its options itself, into the attribute the old guide named."""

    name = "self-parsing"

    def __init__(self, sparsity_coeff: float, **options):
        self.sparsity_coeff = sparsity_coeff
        self.options = E2EDownstreamLoss.Options(**options)

    def __call__(self, splice, input_ids) -> LossResult:
        raise NotImplementedError


def test_a_loss_that_sets_options_itself_still_works():
    loss = SelfParsingLoss(1.0, ds_coeff=3.0)
    assert loss.opts.ds_coeff == 3.0 and loss.options is loss.opts
    assert loss.options_record({"ds_coeff": 3.0})["ds_coeff"] == 3.0


def test_unknown_option_is_one_line():
    with pytest.raises(SaeKitError, match="unknown option 'nope' for 'e2e\\+ds'; it takes: "):
        E2EDownstreamLoss(1.0, nope="1")


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
