"""LoRA adapters on the model around frozen SAEs (Chen, Engels & Tegmark 2025, arXiv 2501.19406).

    lora = Lora.add(model, adapter, LoraSpec(rank=16), first_layer=2)
    with lora.disabled():   # the original model: the clean pass
        ...
    lora.save(RunDir(run).lora, base_model="gpt2")   # loadable by peft.PeftModel.from_pretrained

``peft`` is an optional extra (``pip install 'sae-kit[lora]'``), imported only here and only when
a run uses adapters. The adapters are peft's own LoRA layers put into the model in place
(``inject_adapter_in_model``), so module names, hooks and the adapter plugin's view of the model
stay as they were. peft starts B at zero: an added adapter leaves the logits unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sae_kit.errors import SaeKitError
from sae_kit.model.adapter import ModelAdapter

# (tensors, path, metadata=...) -> None: the signature of store.files.save_tensors
TensorWriter = Callable[..., None]

EXTRA = "LoRA needs peft, which is not installed: pip install 'sae-kit[lora]'"
DENSE_KINDS = ("Linear", "Conv1D")  # torch's dense layer, and transformers' (GPT-2 style)
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
PREFIX = "base_model.model."  # how peft's PeftModel names the wrapped model's weights


def peft_module() -> Any:
    """peft, or one line naming the extra that installs it."""
    try:
        import peft
    except ImportError:
        raise SaeKitError(EXTRA) from None
    return peft


@dataclass(frozen=True)
class LoraSpec:
    """Which dense layers get adapters, and their size."""

    rank: int = 16
    alpha: float | None = None
    """LoRA's scale is alpha / rank; None: alpha = rank (scale 1)."""
    layers: str = "after"
    """'after': the blocks from the first SAE's on; 'all': every block."""
    targets: tuple[str, ...] = ()
    """Dense layers inside a block, by name or name ending (c_attn, mlp.c_fc); (): all."""


def _dense(module: nn.Module) -> bool:
    return type(module).__name__ in DENSE_KINDS


def target_names(model: nn.Module, adapter: ModelAdapter, blocks: list[int],
                 targets: tuple[str, ...]) -> list[str]:
    """Full names of the dense layers to adapt: in the given blocks, those whose name inside the
    block is or ends with one of ``targets`` (every dense layer when none are given)."""
    layers = adapter.layers(model)
    name_of = {id(module): name for name, module in model.named_modules()}
    found, used = [], set()
    for i in blocks:
        for name, module in layers[i].named_modules():
            if not _dense(module):
                continue
            hits = {t for t in targets if name == t or name.endswith("." + t)}
            if hits or not targets:
                found.append(f"{name_of[id(layers[i])]}.{name}")
                used |= hits
    missing = [t for t in targets if t not in used]
    if missing or not found:
        have = sorted(name for name, module in layers[blocks[0]].named_modules() if _dense(module))
        raise SaeKitError(f"--lora-target {', '.join(missing) or '(none)'}: no such dense layer "
                          f"in the model's blocks; a block has {', '.join(have) or 'none'}")
    return found


class Lora:
    """The adapters put into one model: their parameters, on/off, state and files."""

    def __init__(self, model: nn.Module, config: Any, first_layer: int) -> None:
        self.model = model
        self.config = config
        self.first_layer = first_layer
        """The first block holding an adapter: passes may start from the clean residual there."""

    @classmethod
    def add(cls, model: nn.Module, adapter: ModelAdapter, spec: LoraSpec,
            first_layer: int) -> Lora:
        """Adapters on the blocks from ``first_layer`` on ('after') or on all of them."""
        n_layers = len(adapter.layers(model))
        first = 0 if spec.layers == "all" else first_layer
        if first >= n_layers:
            raise SaeKitError(f"--lora: no block comes after the SAE (the model has {n_layers}); "
                              "use --lora-layers all, or an SAE at an earlier layer")
        names = target_names(model, adapter, list(range(first, n_layers)), spec.targets)
        peft = peft_module()
        modules = dict(model.named_modules())
        config = peft.LoraConfig(
            r=spec.rank, lora_alpha=spec.rank if spec.alpha is None else spec.alpha,
            target_modules=names, lora_dropout=0.0, bias="none",
            # transformers' Conv1D stores its weight transposed
            fan_in_fan_out=any(type(modules[n]).__name__ == "Conv1D" for n in names))
        peft.inject_adapter_in_model(config, model)
        return cls(model, config, first)

    @classmethod
    def load(cls, model: nn.Module, adapter: ModelAdapter, directory: Path) -> Lora:
        """The adapters saved in ``directory`` (by :meth:`save` or by peft), put into ``model``."""
        from safetensors.torch import load_file

        peft = peft_module()
        if not (directory / CONFIG).is_file() or not (directory / WEIGHTS).is_file():
            raise SaeKitError(f"{str(directory)!r} holds no LoRA adapters (expected {CONFIG} "
                              f"and {WEIGHTS})")
        config = peft.LoraConfig.from_pretrained(str(directory))
        peft.inject_adapter_in_model(config, model)
        blocks = adapter.layers(model)
        first = min((i for i, block in enumerate(blocks)
                     if any("lora_" in name for name, _ in block.named_parameters())),
                    default=len(blocks))
        lora = cls(model, config, first)
        stored = load_file(str(directory / WEIGHTS))
        lora.load_state_dict({k.removeprefix(PREFIX): v for k, v in stored.items()})
        return lora

    def parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.model.named_parameters() if "lora_" in name]

    def _layers(self) -> list[nn.Module]:
        from peft.tuners.tuners_utils import BaseTunerLayer

        return [m for m in self.model.modules() if isinstance(m, BaseTunerLayer)]

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """The original model for the duration (the clean pass)."""
        layers = self._layers()
        for layer in layers:
            layer.enable_adapters(False)
        try:
            yield
        finally:
            for layer in layers:
                layer.enable_adapters(True)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter weights by peft's names (no ``base_model.model.`` prefix)."""
        state = peft_module().get_peft_model_state_dict(self.model)
        return {k: v.detach().clone() for k, v in state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        ours = self.state_dict()
        if sorted(state) != sorted(ours):
            odd = sorted(set(state) ^ set(ours))[:3]
            raise SaeKitError(f"adapter weights do not fit this model's adapted layers "
                              f"({', '.join(odd)})")
        peft_module().set_peft_model_state_dict(self.model, state)

    def save(self, directory: Path, base_model: str, write_tensors: TensorWriter) -> None:
        """``adapter_model.safetensors`` + ``adapter_config.json``, as peft writes them.

        ``write_tensors`` is the store's safetensors writer (``store.files.save_tensors``, which
        gives the file the umask's mode); ``model`` may not import ``store`` itself.
        """
        directory.mkdir(parents=True, exist_ok=True)
        write_tensors({PREFIX + k: v.contiguous() for k, v in self.state_dict().items()},
                      directory / WEIGHTS, metadata={"format": "pt"})
        self.config.base_model_name_or_path = base_model
        self.config.save_pretrained(str(directory))


@contextlib.contextmanager
def original(lora: Lora | None) -> Iterator[None]:
    """The model without adapters (a no-op where there are none)."""
    if lora is None:
        yield
    else:
        with lora.disabled():
            yield
