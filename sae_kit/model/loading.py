"""Load a Hugging Face causal LM, its tokenizer and the adapter for its family."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
from torch import nn

from sae_kit import plugins
from sae_kit.builtin import BUILTIN_MODEL_NAME, builtin_model_dir
from sae_kit.errors import SaeKitError, first_line
from sae_kit.model.adapter import ModelAdapter
from sae_kit.model.generic_adapter import GenericAdapter
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.splice import ModelRunner
from sae_kit.model_names import SourceRef, source_ref
from sae_kit.network import (
    configure_hub,
    hub_endpoint,
    hub_offline,
    hub_reachable,
    is_local_ref,
    nor_here,
)

logger = logging.getLogger("sae_kit.model")


@dataclass
class LoadedModel:
    name: str
    """What the user asked for: a Hub id, a local directory or the built-in model's name."""
    source: str
    """What was passed to ``from_pretrained``."""
    model: nn.Module
    tokenizer: Any
    adapter: ModelAdapter

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers(self.model)

    @property
    def d_model(self) -> int:
        return self.adapter.d_model(self.model)

    def width_at(self, hook_point: HookPoint) -> int:
        """The activation width at ``hook_point`` (checked to exist in this model).

        Residual, attention and MLP hook points have width d_model; a module path's width is
        read from one token run through the model up to that module.
        """
        hook_point.check(self.n_layers)
        if hook_point.on_residual:
            return self.d_model
        runner = ModelRunner(self.model, self.adapter)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            probe = runner.run(torch.zeros((1, 1), dtype=torch.long, device=device),
                               capture=[hook_point.site], final_hidden=False)
        return int(probe.acts[hook_point.site].shape[-1])

    def check_fits(self, hook_point: HookPoint, d_in: int) -> None:
        """One clear line if an SAE of width ``d_in`` at ``hook_point`` cannot sit in this model."""
        width = self.width_at(hook_point)
        if d_in != width:
            raise SaeKitError(f"the SAE at {hook_point} takes width {d_in}, but {self.name!r} "
                              f"has width {width} there")

    @property
    def max_positions(self) -> int | None:
        config = self.model.config
        return getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )


def resolve_source(name: str) -> str:
    """The built-in model's name maps to its directory inside the package."""
    if name == BUILTIN_MODEL_NAME:
        return str(builtin_model_dir())
    if not is_local_ref(name):
        return name
    if not Path(name).expanduser().exists():
        raise SaeKitError(f"model directory {name!r} does not exist; pass a Hub id or a path")
    return str(Path(name).expanduser())


def adapter_for(model_type: str) -> ModelAdapter:
    """The plugin registered under ``model_type``; without one, the generic fallback."""
    installed = plugins.discover("models")
    if model_type in installed:
        return plugins.load("models", model_type)()
    return GenericAdapter(model_type, sorted(installed))


def _from_pretrained(loader: Any, source: str, revision: str | None, **kwargs: Any) -> Any:
    local = is_local_ref(source)
    if not local and hub_offline():
        # huggingface_hub reads HF_HUB_OFFLINE once, at import; set later, it would still be asked
        kwargs["local_files_only"] = True
    elif not local:
        configure_hub()
        if not hub_reachable():
            kwargs["local_files_only"] = True  # no network: the local cache is all there is
    try:
        return loader.from_pretrained(source, revision=revision, **kwargs)
    except (OSError, ValueError) as exc:
        raise SaeKitError(_load_failure(source, local, kwargs, exc)) from exc


def _load_failure(source: str, local: bool, kwargs: dict[str, Any], exc: Exception) -> str:
    if local and not (Path(source) / "config.json").is_file():
        return (f"{source!r} is not a model directory (no config.json); pass a directory saved "
                "with save_pretrained, or a Hub id")
    if kwargs.get("use_safetensors") and _only_pickles(source, local):
        return (f"{source!r} has its weights only as a pickle file (.bin/.pt), which sae-kit does "
                "not load because unpickling can run code; save it again with "
                "save_pretrained(safe_serialization=True) or use a repo with .safetensors")
    if hub_offline() and not local:
        return (f"HF_HUB_OFFLINE is set and {source!r} is not in the local Hugging Face cache"
                f"{nor_here(source)}; unset HF_HUB_OFFLINE to download it, or pass a local "
                "directory")
    if kwargs.get("local_files_only"):
        return (f"no network: cannot reach {hub_endpoint()}, and {source!r} is not in the local "
                f"Hugging Face cache{nor_here(source)}; pass a local directory saved with "
                "save_pretrained")
    where = "local directory" if local else "Hugging Face Hub (wrong id? no access?)"
    return f"could not load {source!r} from the {where}{nor_here(source)}: {first_line(exc)}"


def _only_pickles(source: str, local: bool) -> bool:
    if not local:  # a Hub repo: transformers' message names the missing safetensors file
        return False
    files = [p.name for p in Path(source).iterdir()]
    return (not any(f.endswith(".safetensors") for f in files)
            and any(f.endswith((".bin", ".pt", ".pth", ".ckpt")) for f in files))


def load_model(
    name: str, *, revision: str | None = None, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Load a frozen model in eval mode on ``device`` (weights in fp32)."""
    ref = source_ref(name)
    if ref is not None:
        return _build_from_source(name, ref, device)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr carries sae-kit's own progress, one line per error
    source = resolve_source(name)
    local = is_local_ref(source)
    if not local and sys.stderr.isatty():  # downloads show their bars; off a terminal, lines
        huggingface_hub.utils.enable_progress_bars()
    started = time.monotonic()
    config = _from_pretrained(AutoConfig, source, revision)
    adapter = adapter_for(config.model_type)  # a broken plugin fails before any download
    if not local:  # a local model loads in seconds; a download may take long: say so
        logger.info("loading model %s from %s (files not in the local cache are downloaded)",
                    name, hub_endpoint())
    # safetensors only: a pickled checkpoint (pytorch_model.bin) could run code when loaded.
    model = _from_pretrained(AutoModelForCausalLM, source, revision, dtype=torch.float32,
                             use_safetensors=True)
    adapter.check(model)
    tokenizer = _from_pretrained(AutoTokenizer, source, revision)
    model.to(device).eval().requires_grad_(False)
    if not local:
        logger.info("model %s loaded in %.1f s", name, time.monotonic() - started)
    return LoadedModel(name=name, source=source, model=model, tokenizer=tokenizer, adapter=adapter)


def _build_from_source(name: str, ref: SourceRef, device: str | torch.device) -> LoadedModel:
    """A model a source plugin builds from options (``synthetic:n_features=512``, ...)."""
    model, tokenizer = plugins.load("model_sources", ref.scheme)().build(ref.options)
    adapter = adapter_for(model.config.model_type)
    adapter.check(model)
    model.to(device).eval().requires_grad_(False)
    return LoadedModel(name=name, source=name, model=model, tokenizer=tokenizer, adapter=adapter)
