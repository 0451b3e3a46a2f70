"""`sae-kit train`'s options, made from TrainConfig's fields: each option is declared once.

Every TrainConfig field becomes ``--field-name`` with the field's default and help text. A few
fields are given in a shape that suits a command line better (``SHAPED``): hook points as
``--layer``/``--hook``/``--hook-point``, plugin options as repeatable ``key=value``, the output
directory as ``--out``. :func:`config_from_options` turns the parsed values back into a
TrainConfig. Imports no torch.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

import typer

from sae_kit.cli.common import parse_floats, parse_key_values
from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import LAYER_KINDS, RESIDUAL_KINDS, HookPoint
from sae_kit.record.config import TrainConfig

ALIASES = {"compile": ("--compile",), "lora": ("--lora",)}
"""Flags other than the field's own ``--field-name`` (a bool given alone is an on-switch)."""


def _option(name: str, annotation: Any, default: Any, *flags: str, **kw: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=typer.Option(default, *flags, **kw))


KINDS_AT_A_LAYER = RESIDUAL_KINDS + LAYER_KINDS

SHAPED: dict[str, list[inspect.Parameter]] = {
    "loss_options": [_option(
        "loss_option", list[str], [], "--loss-option", "-O", metavar="KEY=VALUE",
        help="Loss option as key=value, repeatable (e.g. ds_coeff=2.5).")],
    "hook_points": [
        _option("layer", list[int], [], metavar="N", help="Layer for an SAE, repeatable (several "
                "SAEs train together); default: middle."),
        _option("hook", str, "resid_pre", help="Where at each --layer: resid_pre, resid_post, "
                "attn_out, mlp_in or mlp_out."),
        _option("hook_point", list[str], [], metavar="NAME",
                help="Full hook-point name, repeatable, e.g. blocks.6.hook_mlp_out, or a module "
                "path inside a decoder layer, e.g. transformer.h.6.mlp.c_fc."),
    ],
    "sparsity_coeff": [_option(
        "sparsity_coeff", str, "1.0", "--sparsity-coeff", "--lambda",
        help=TrainConfig.__dataclass_fields__["sparsity_coeff"].metadata["help"] + " Several, "
        "comma-separated (0.5,1,2), train one SAE each in one shared pass, each in its own run "
        "directory OUT/lambda<λ>/.")],
    "architecture_options": [_option(
        "arch_option", list[str], [], "--arch-option", metavar="KEY=VALUE",
        help="Architecture option as key=value, repeatable (e.g. k=32).")],
    "lora_targets": [_option(
        "lora_target", list[str], [], "--lora-target", metavar="NAME",
        help=TrainConfig.__dataclass_fields__["lora_targets"].metadata["help"] + " Repeatable.")],
    "trackers": [_option(
        "tracker", list[str], [], "--tracker", metavar="NAME",
        help="Experiment tracker that gets every metrics row too, repeatable: wandb, "
        "tensorboard, ... (each needs its package); metrics.jsonl stays the record.")],
    "output_dir": [
        _option("config", str, None, "--config", metavar="FILE",
                help="Read the settings from a TOML, JSON or YAML file (a run's config.json "
                "reruns it, in a fresh directory unless --out is given); options given on the "
                "command line override the file's values."),
        _option("resume", str, None, "--resume", metavar="RUN_DIR",
                help="Continue the run in RUN_DIR from its latest checkpoint, with the settings "
                "in its config.json; only --device, --save-every and --keep-checkpoints may be "
                "given again."),
        _option("out", str, None, "--out", help=TrainConfig.__dataclass_fields__["output_dir"]
                .metadata["help"]),
        _option("as_json", bool, False, "--json",
                help="Print the run dir and last metrics as JSON."),
    ],
}
"""Fields the command line takes in another shape, and the options that stand for them."""


def config_parameters() -> list[inspect.Parameter]:
    """One keyword parameter per option, in TrainConfig's field order, for a Typer command."""
    hints = typing.get_type_hints(TrainConfig)
    params: list[inspect.Parameter] = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in SHAPED:
            params += SHAPED[f.name]
            continue
        params.append(_option(f.name, hints[f.name], f.default, *ALIASES.get(f.name, ()),
                              help=f.metadata["help"]))
    return params


def config_from_options(values: dict[str, Any]) -> TrainConfig:
    """The TrainConfig for the parsed command-line ``values`` (keyed by parameter name)."""
    if values["hook"] not in KINDS_AT_A_LAYER:
        raise SaeKitError(f"--hook must be one of {', '.join(KINDS_AT_A_LAYER)}, got "
                          f"{values['hook']!r}")
    points = [HookPoint(n, values["hook"]).name for n in values["layer"]]
    points += [HookPoint.parse(h).name for h in values["hook_point"]]
    plain = {f.name: values[f.name] for f in dataclasses.fields(TrainConfig)
             if f.name not in SHAPED}
    if plain["grad_clip"] is not None and plain["grad_clip"] <= 0:
        plain["grad_clip"] = None  # --grad-clip 0 turns clipping off
    return TrainConfig(
        **plain,
        loss_options=parse_key_values(values["loss_option"], "--loss-option"),
        hook_points=list(dict.fromkeys(points)),
        architecture_options=parse_key_values(values["arch_option"], "--arch-option"),
        sparsity_coeff=lambdas_from_options(values)[0], trackers=list(values["tracker"]),
        lora_targets=list(values["lora_target"]),
        output_dir=values["out"],
    )


def lambdas_from_options(values: dict[str, Any]) -> list[float]:
    """``--lambda 0.5,1,2``: one SAE per value, trained in one pass."""
    return parse_floats(values["sparsity_coeff"], "--lambda")


OPTION_FIELDS = {"loss_option": "loss_options", "layer": "hook_points", "hook": "hook_points",
                 "hook_point": "hook_points", "arch_option": "architecture_options",
                 "out": "output_dir", "tracker": "trackers", "lora_target": "lora_targets"}
"""The TrainConfig field each shaped option sets (the others are named as their field)."""


def config_with_file(values: dict[str, Any], given: set[str]) -> tuple[TrainConfig, list[float]]:
    """``--config FILE`` with the options in ``given`` (those on the command line) overriding
    the file's values; the config and its lambdas."""
    from sae_kit.train.api import load_config

    cli = config_from_options(values)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides: dict[str, Any] = {}
    for name in given:
        field = OPTION_FIELDS.get(name, name)
        if field in fields:
            overrides[field] = getattr(cli, field)
    if "sparsity_coeff" in given:
        overrides["sparsity_coeff"] = lambdas_from_options(values)
    return load_config(values["config"], **overrides)
