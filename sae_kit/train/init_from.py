"""``--init-from SOURCE``: a run whose SAEs start as an existing SAE's, not freshly initialised.

The source sets the architecture, its options, the dictionary size and the hook points; a
setting given as well must agree with it (a default left alone is no contradiction). lambda left
at its default becomes the source's, where it records one (sae-kit SAEs and their exports).
After the model loads, the source's width must be the model's d_model. The run's config.json
records the source, its format and the sha256 of each weight file (``resolved.init_from``); a
resumed run reads the source again and then takes every weight from its checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sae_kit import plugins
from sae_kit.architectures.base import SAE
from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import LoadedModel
from sae_kit.options import parse_options
from sae_kit.record.config import TrainConfig
from sae_kit.store.start_from import StartingPoint, read_start

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def resolve_start(config: TrainConfig) -> tuple[TrainConfig, StartingPoint | None]:
    """A copy of ``config`` whose SAE settings are the source's, and the source's SAEs."""
    if not config.init_from:
        return config, None
    points = [HookPoint.parse(name) for name in config.hook_points] or None
    start = read_start(config.init_from, points)
    first = next(iter(start.saes.values()))
    if any((s.n_dict, s.d_in, _opts(s)) != (first.n_dict, first.d_in, _opts(first))
           for s in start.saes.values()):
        raise SaeKitError(f"--init-from {config.init_from!r} holds SAEs of different sizes or "
                          "options; fine-tune them one at a time with --hook-point")
    contradictions = _contradictions(config, start)
    if contradictions:
        raise SaeKitError(f"--init-from {config.init_from!r} contradicts "
                          f"{'; '.join(contradictions)}; leave these out: the source sets them")
    return dataclasses.replace(
        config, architecture=first.name, architecture_options=_opts(first),
        dict_ratio=first.n_dict / first.d_in, hook_points=[hp.name for hp in start.saes],
        sparsity_coeff=_sparsity_coeff(config, start),
    ), start


def _sparsity_coeff(config: TrainConfig, start: StartingPoint) -> float:
    """lambda left at its default: the one the source was trained with, where it records one
    (kl+mse's balance keeps the MSE phase's scale, so that lambda carries over)."""
    if config.sparsity_coeff != _DEFAULTS["sparsity_coeff"]:
        return config.sparsity_coeff
    recorded = [c.get("sparsity_coeff") for c in start.configs.values()]
    found = next((v for v in recorded if isinstance(v, (int, float)) and not isinstance(v, bool)
                  and v >= 0), None)
    return config.sparsity_coeff if found is None else float(found)


def _contradictions(config: TrainConfig, start: StartingPoint) -> list[str]:
    first = next(iter(start.saes.values()))
    found = []
    if config.transcoder_output:
        found.append(f"--transcoder-output {config.transcoder_output} (--init-from starts SAEs, "
                     "not transcoders)")
    if config.architecture != _DEFAULTS["architecture"] and config.architecture != first.name:
        found.append(f"--architecture {config.architecture} (the source is {first.name})")
    if config.architecture_options:
        arch = plugins.load("architectures", first.name)
        given = {k.replace("-", "_"): v for k, v in config.architecture_options.items()}
        typed = dataclasses.asdict(parse_options(arch.Options, {**_opts(first), **given},
                                                 first.name))
        found += [f"--arch-option {key}={given[key]} (the source has {_opts(first)[key]!r})"
                  for key in given if typed[key] != _opts(first).get(key)]
    if config.sparsity_coeff != _DEFAULTS["sparsity_coeff"] and not first.penalised:
        found.append(f"--lambda {config.sparsity_coeff:g} (the source is {first.name}: it has no "
                     "sparsity penalty, its k sets L0)")
    if (config.dict_ratio != _DEFAULTS["dict_ratio"]
            and round(config.dict_ratio * first.d_in) != first.n_dict):
        found.append(f"--dict-ratio {config.dict_ratio:g} (the source has {first.n_dict} "
                     f"elements of width {first.d_in}: ratio {first.n_dict / first.d_in:g})")
    return found


def _opts(sae: SAE) -> dict[str, Any]:
    return dataclasses.asdict(sae.opts)


def check_fits(start: StartingPoint, loaded: LoadedModel, model: str) -> None:
    """The source's SAEs read this model's activations: layers that exist, the same width."""
    for hp in start.saes:
        if hp.layer >= loaded.n_layers:
            raise SaeKitError(f"--init-from {start.source!r} has an SAE at {hp.name}, but {model} "
                              f"has {loaded.n_layers} layers (0 to {loaded.n_layers - 1})")
    for hp, sae in start.saes.items():
        width = loaded.width_at(hp)
        if sae.d_in != width:
            trained_on = _trained_on(start)
            has = (f"d_model {width}" if hp.on_residual else f"width {width} at {hp.name}")
            raise SaeKitError(
                f"--init-from {start.source!r} has SAEs of width {sae.d_in}, but {model} has "
                f"{has}" + (f"; it was trained on {trained_on}" if trained_on else "")
                + ": choose the model it was trained on")


def _trained_on(start: StartingPoint) -> Any:
    return next((c.get("model") for c in start.configs.values() if c.get("model")), None)
