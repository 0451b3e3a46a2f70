"""Saving and loading SAEs: one directory per SAE with ``sae.safetensors`` + ``config.json``.

A run directory (:mod:`sae_kit.store.run_dir`) holds one such SAE directory per hook point,
named after it (``blocks.6.hook_resid_pre/``). Weights are only ever read with safetensors: no
pickle, so a downloaded file cannot run code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from sae_kit import plugins
from sae_kit.architectures.base import SAE
from sae_kit.errors import SaeKitError, first_line
from sae_kit.model.hookpoints import HookPoint
from sae_kit.store.jsonio import read_json, write_json_atomic
from sae_kit.store.run_dir import SAE_DIR_PREFIX, RunDir

__all__ = ["CONFIG", "WEIGHTS", "load_run", "load_sae", "read_json", "sae_dirs", "save_sae",
           "write_json_atomic"]

WEIGHTS = "sae.safetensors"
CONFIG = "config.json"
"""An SAE directory's own config (architecture, sizes, options, hook point, provenance)."""


def save_sae(sae: SAE, hook_point: HookPoint, directory: Path, extra: dict[str, Any]) -> Path:
    """Write one SAE's weights and config into ``directory``; returns that directory."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous().cpu() for k, v in sae.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{WEIGHTS}.")
    os.close(fd)
    save_file(state, tmp, metadata={"format": "pt"})
    os.replace(tmp, directory / WEIGHTS)
    config = {
        "architecture": sae.name,
        "d_in": sae.d_in,
        "n_dict": sae.n_dict,
        "options": sae.options(),
        "hook_point": hook_point.name,
        **extra,
    }
    write_json_atomic(directory / CONFIG, config)
    return directory


def load_sae(directory: str | Path, device: str | torch.device = "cpu") -> tuple[SAE, dict]:
    """Load one SAE directory; returns the SAE and its config."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config = read_json(directory / CONFIG)
    try:
        arch = plugins.load("architectures", config["architecture"])
        sae = arch(config["d_in"], config["n_dict"], **config.get("options", {}))
    except KeyError as exc:
        raise SaeKitError(f"{str(directory / CONFIG)!r} lacks the field {exc}") from None
    path = directory / WEIGHTS
    if not path.exists():
        raise SaeKitError(f"{str(path)!r} is missing: this directory holds no trained SAE")
    try:
        state = load_file(str(path))
        sae.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise SaeKitError(
            f"{str(path)!r} is corrupt or does not match its config ({first_line(exc)})"
        ) from None
    return sae.to(device), config


def sae_dirs(run_dir: str | Path) -> dict[HookPoint, Path]:
    """The SAE directories in a run directory, by hook point."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SaeKitError(f"run directory {str(run_dir)!r} does not exist")
    found = {HookPoint.parse(p.name): p for p in run_dir.iterdir() if (p / CONFIG).exists()
             and p.name.startswith(SAE_DIR_PREFIX)}
    if not found:
        raise SaeKitError(
            f"{str(run_dir)!r} holds no trained SAE (no blocks.*/{WEIGHTS}); train one with "
            "`sae-kit train`"
        )
    return dict(sorted(found.items()))


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[dict, dict]:
    """A run's training config and its SAEs by hook point."""
    config = read_json(RunDir(run_dir).config)
    saes = {hp: load_sae(path, device)[0] for hp, path in sae_dirs(run_dir).items()}
    return config, saes
