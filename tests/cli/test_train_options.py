"""`sae-kit train`'s options are TrainConfig's fields: same names, defaults and help texts."""

import dataclasses

import click
import pytest
import typer.testing
from typer.main import get_command

from sae_kit.cli import app
from sae_kit.cli.train_options import SHAPED, config_from_options
from sae_kit.record.config import MODEL_DEFAULTS, TrainConfig

HELP = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(TrainConfig)}
"""Each TrainConfig field's help text, as its docstring-like metadata declares it."""


def _train_command() -> click.Command:
    group = get_command(app)
    return group.commands["train"]  # type: ignore[attr-defined]


def test_every_field_is_an_option_with_its_default_and_help():
    params = {p.name: p for p in _train_command().params}
    for f in dataclasses.fields(TrainConfig):
        if f.name in SHAPED:
            continue
        option = params[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert option.default == default, f.name
        assert option.help == HELP[f.name], f.name
        assert f"--{f.name.replace('_', '-')}" in option.opts, f.name


def test_defaults_of_the_command_line_make_the_default_config():
    ctx = _train_command().make_context("train", [])
    assert config_from_options(ctx.params) == TrainConfig()


def test_aliases_and_shaped_options_keep_their_names():
    opts = {o for p in _train_command().params for o in p.opts}
    for flag in ("--lambda", "-O", "--loss-option", "--arch-option", "--layer", "--hook",
                 "--hook-point", "--out", "--json", "--resume", "--compile"):
        assert flag in opts, flag
    assert "--no-compile" not in {o for p in _train_command().params for o in p.secondary_opts}


def test_shaped_options_fill_the_config():
    args = ["--layer", "1", "--hook", "resid_post", "--hook-point", "blocks.3.hook_resid_pre",
            "-O", "ds_coeff=2", "--arch-option", "k=4", "--out", "here", "--lambda", "3",
            "--grad-clip", "0", "--compile"]
    config = config_from_options(_train_command().make_context("train", args).params)
    assert config.hook_points == ["blocks.1.hook_resid_post", "blocks.3.hook_resid_pre"]
    assert config.loss_options == {"ds_coeff": "2"}
    assert config.architecture_options == {"k": "4"}
    assert (config.output_dir, config.sparsity_coeff, config.grad_clip) == ("here", 3.0, None)
    assert config.compile is True


def test_model_dependent_defaults_are_one_table_shown_in_the_help():
    for name in MODEL_DEFAULTS:
        assert getattr(TrainConfig(), name) is None  # unset: filled in from the table
        assert "built-in model" in HELP[name]
    assert "5e-4" in HELP["lr"] and "2e-3" in HELP["lr"]
    assert "400k" in HELP["n_samples"]


@pytest.mark.integration
def test_help_lists_every_option():
    out = typer.testing.CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    for f in dataclasses.fields(TrainConfig):
        if f.name not in SHAPED:
            assert f"--{f.name.replace('_', '-')}" in out.output, f.name
