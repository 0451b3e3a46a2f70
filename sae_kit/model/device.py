"""Which torch device a run uses: one rule for `train` and `eval`."""

from __future__ import annotations

import torch

from sae_kit.errors import SaeKitError


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present, else CPU; an absent or unknown device is one clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SaeKitError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SaeKitError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
