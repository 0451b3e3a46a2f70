"""Saving and loading SAEs: one directory per SAE with ``sae.safetensors`` + ``config.json``.

A run directory (:mod:`sae_kit.store.run_dir`) holds one such SAE directory per hook point,
named after it (``blocks.6.hook_resid_pre/``). Weights are only ever read with safetensors: no
pickle, so a downloaded file cannot run code.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from sae_kit import plugins
from sae_kit.architectures.base import SAE
from sae_kit.errors import SaeKitError, first_line, os_error_of
from sae_kit.model.hookpoints import HookPoint
from sae_kit.record.run_record import RunRecord
from sae_kit.store.files import as_umask_says
from sae_kit.store.jsonio import read_json, write_json_atomic
from sae_kit.store.run_dir import RunDir, named_hook_point

__all__ = ["CONFIG", "WEIGHTS", "is_sae_dir", "load_run", "load_sae_dir", "output_hook_point",
           "run_outputs", "sae_dirs", "saved_every_sae", "save_sae"]

WEIGHTS = "sae.safetensors"
CONFIG = "config.json"
"""An SAE directory's own config (architecture, sizes, options, hook point, provenance)."""


def is_sae_dir(path: Path) -> bool:
    return (path / WEIGHTS).is_file()


def saved_every_sae(run: RunDir) -> bool:
    """The run saved the SAE of every hook point it trains (a run writes them when it ends)."""
    names = run.read().config.hook_points if run.is_run() else []
    return bool(names) and all(is_sae_dir(run.sae(name)) for name in names)


def save_sae(sae: SAE, hook_point: HookPoint, directory: Path, extra: dict[str, Any],
             output: HookPoint | None = None) -> Path:
    """Write one SAE's weights and config into ``directory``; returns that directory.

    ``output``: a transcoder's output hook point (recorded only where it is not
    ``hook_point``); a skip transcoder's config says ``skip``."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(f".{WEIGHTS}.*"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    # Floats as fp32; integer state (AuxK's token counter) keeps its dtype, exact.
    state = {k: (v.detach().float() if v.is_floating_point() else v).contiguous().cpu()
             for k, v in sae.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{WEIGHTS}.")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"format": "pt"})
        as_umask_says(tmp)
        os.replace(tmp, directory / WEIGHTS)
    except BaseException as exc:  # an error or a signal mid-write: no temp file is left
        Path(tmp).unlink(missing_ok=True)
        io = os_error_of(exc)  # a full disk: name the file, not its temp name
        if io is not None:
            raise OSError(io.errno, io.strerror, str(directory / WEIGHTS)) from None
        raise
    config = {
        "architecture": sae.name,
        "d_in": sae.d_in,
        "n_dict": sae.n_dict,
        "options": dataclasses.asdict(sae.opts),  # architecture options, saved with the weights
        "hook_point": hook_point.name,
        **({"output_hook_point": output.name} if output and output != hook_point else {}),
        **({"skip": True} if sae.W_skip is not None else {}),
        **extra,
    }
    write_json_atomic(directory / CONFIG, config)
    return directory


def load_sae_dir(directory: str | Path, device: str | torch.device = "cpu") -> tuple[SAE, dict]:
    """Load one SAE directory; returns the SAE, in eval mode, and its config.

    Nothing in a (perhaps downloaded) config is trusted before it is checked: sizes must be
    whole numbers and must match the tensors the weight file holds, so a config claiming a huge
    dictionary is refused before anything is allocated.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config = read_json(directory / CONFIG)
    arch, options = _checked_config(config, directory / CONFIG)
    path = directory / WEIGHTS
    if not path.exists():
        raise SaeKitError(f"{str(path)!r} is missing: this directory holds no trained SAE")
    try:
        _check_shapes(arch, config, options, path)
        sae = _make(arch, config, options)
        state = load_file(str(path))
        sae.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise SaeKitError(
            f"{str(path)!r} is corrupt or does not match its config ({first_line(exc)})"
        ) from None
    # Eval mode: a loaded SAE is for inference (BatchTopK then uses its threshold, and no
    # training state such as AuxK's counter moves); call .train() to train it further.
    return sae.to(device).eval(), config


def _make(arch: type[SAE], config: dict[str, Any], options: dict[str, Any]) -> SAE:
    sae = arch(config["d_in"], config["n_dict"], **options)
    if config.get("skip") is True:
        sae.add_skip()
    return sae


def output_hook_point(config: dict[str, Any]) -> HookPoint:
    """Where an SAE directory's SAE writes: its ``output_hook_point`` (a transcoder's), else
    its ``hook_point``."""
    return HookPoint.parse(str(config.get("output_hook_point") or config["hook_point"]))


def _checked_config(config: Any, where: Path) -> tuple[type[SAE], dict[str, Any]]:
    if not isinstance(config, dict):
        raise SaeKitError(f"{str(where)!r} is not an SAE config (a JSON object with "
                          f"architecture, d_in, n_dict), but a JSON {type(config).__name__}")
    missing = [k for k in ("architecture", "d_in", "n_dict") if k not in config]
    if missing:
        noun = "the field" if len(missing) == 1 else "the fields"
        raise SaeKitError(f"{str(where)!r} lacks {noun} {', '.join(missing)}")
    for key in ("d_in", "n_dict"):
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SaeKitError(f"{str(where)!r} has {key} = {value!r}; want a positive whole "
                              "number")
    options = config.get("options", {})
    if not isinstance(options, dict) or not isinstance(config["architecture"], str):
        raise SaeKitError(f"{str(where)!r} has a malformed architecture or options field")
    return plugins.load("architectures", config["architecture"]), options


def _check_shapes(arch: type[SAE], config: dict[str, Any], options: dict[str, Any],
                  path: Path) -> None:
    """The weight file's tensor shapes against the config's, read from headers only."""
    from safetensors import safe_open

    with torch.device("meta"):  # shapes without memory, however large the config claims
        expected = {k: tuple(v.shape) for k, v in
                    _make(arch, config, options).state_dict().items()}
    with safe_open(str(path), framework="pt") as f:
        stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    if stored != expected:
        wrong = sorted(k for k in expected.keys() | stored.keys()
                       if expected.get(k) != stored.get(k))
        raise ValueError(f"tensor shapes differ for {', '.join(wrong)}: config "
                         f"d_in={config['d_in']}, n_dict={config['n_dict']}")


def sae_dirs(run_dir: str | Path) -> dict[HookPoint, Path]:
    """The SAE directories in a run directory, by hook point."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SaeKitError(f"run directory {str(run_dir)!r} does not exist")
    found = {}
    for p in run_dir.iterdir():
        hook_point = named_hook_point(p.name)
        if hook_point is not None and (p / CONFIG).exists():
            found[hook_point] = p
    if not found:
        raise SaeKitError(
            f"{str(run_dir)!r} holds no trained SAE (no blocks.*/{WEIGHTS} nor one at a module "
            "path); train one with `sae-kit train`"
        )
    return dict(sorted(found.items()))


def run_outputs(run_dir: str | Path) -> dict[HookPoint, HookPoint]:
    """Where each SAE of a run writes, by hook point: a transcoder's output hook point, or
    its own."""
    return {hp: output_hook_point(read_json(path / CONFIG))
            for hp, path in sae_dirs(run_dir).items()}


def load_run(run_dir: str | Path, device: str | torch.device = "cpu"
             ) -> tuple[RunRecord, dict[HookPoint, SAE]]:
    """A run's record (settings and what they resolved to) and its SAEs by hook point."""
    dirs = sae_dirs(run_dir)  # "holds no trained SAE" comes before a complaint about its config
    record = RunDir(run_dir).read()
    return record, {hp: load_sae_dir(path, device)[0] for hp, path in dirs.items()}
