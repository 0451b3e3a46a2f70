"""Which torch device a run uses: one rule for `train` and `eval`."""

from __future__ import annotations

import torch

from sae_kit.errors import SaeKitError


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present, else CPU; an absent or unknown device is one clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SaeKitError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "meta":  # tensors without data: nothing could be trained or measured
        raise SaeKitError("--device meta holds no data; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SaeKitError(f"device {name!r} asked for, but CUDA is not available; use "
                              "--device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SaeKitError(f"device {name!r} asked for, but this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s): cuda:0 and up")
    elif device.type != "cpu" and not _available(device.type):
        raise SaeKitError(f"device {name!r} is not available on this machine; use auto or cpu")
    return device


def _available(kind: str) -> bool:
    """Whether torch reports an accelerator of this kind (mps, xpu, ...) as usable."""
    for module in (getattr(torch.backends, kind, None), getattr(torch, kind, None)):
        check = getattr(module, "is_available", None)
        if callable(check):
            return bool(check())
    return False
