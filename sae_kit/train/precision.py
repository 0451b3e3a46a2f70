"""Numeric precision and compilation for a training run.

``--dtype bf16`` runs the frozen model's forward passes under autocast (bf16 matmuls, fp32
weights kept as loaded); the SAEs keep fp32 master weights and compute in fp32 (the SAE base
class turns autocast off inside its forward pass), and the KL is computed in fp32. On CUDA,
fp32 matmuls use TF32. ``--compile`` wraps each SAE's forward in ``torch.compile`` and goes back
to eager mode, with one warning, if compiling fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from sae_kit.errors import first_line

# The names are sae_kit.record.config.DTYPE_NAMES.
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}


def configure_backends(device: torch.device) -> None:
    """TF32 for fp32 matmuls on CUDA (about 10 mantissa bits in the products, fp32 sums)."""
    if device.type != "cuda":
        return
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9; the older flag is deprecated there
        matmul.fp32_precision = "tf32"
    else:
        matmul.allow_tf32 = True


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """The context the loss runs in: bf16 autocast, or nothing for fp32."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def adam(params: list[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam, with the fused kernel (one pass over each parameter) where this torch has one.

    The update and the optimizer state are those of the default implementation, which makes
    several passes over each parameter.
    """
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device in this torch
        return torch.optim.Adam(params, lr=lr)


class CompiledOrEager:
    """Calls a ``torch.compile``d function; on the first failure, warns once and runs eager.

    Compiling happens lazily on the first call, so that is where a missing compiler or an
    unsupported operation shows up.
    """

    def __init__(self, fn: Callable[..., Any], name: str, warn: Callable[[str], None]) -> None:
        self.eager = fn
        self.name = name
        self.warn = warn
        self.compiled: Callable[..., Any] | None = None
        try:
            self.compiled = torch.compile(fn)
        except Exception as exc:  # e.g. a Python version this torch cannot compile for
            self._give_up(exc)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # any compiler failure: training goes on, eagerly
                self._give_up(exc)
        return self.eager(*args, **kwargs)

    def _give_up(self, exc: Exception) -> None:
        first = first_line(exc)[:200]
        self.warn(f"--compile: compiling {self.name} failed ({type(exc).__name__}: {first}); "
                  "running it eagerly")
        self.compiled = None




def compile_modules(modules: Iterable[tuple[str, nn.Module]],
                    warn: Callable[[str], None]) -> None:
    """Replace each module's forward with a compiled one that falls back to eager mode.

    The module object, its parameters and its state dict stay as they were.
    """
    for name, module in modules:
        module.forward = CompiledOrEager(module.forward, name, warn)  # type: ignore[method-assign]
