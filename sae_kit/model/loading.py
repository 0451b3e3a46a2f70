"""Load a Hugging Face causal LM, its tokenizer and the adapter for its family."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sae_kit import plugins
from sae_kit.builtin import BUILTIN_MODEL_NAME, builtin_model_dir
from sae_kit.errors import SaeKitError, first_line
from sae_kit.model.adapter import ModelAdapter
from sae_kit.model.generic_adapter import GenericAdapter
from sae_kit.network import hub_endpoint, hub_offline, hub_reachable, is_local_ref


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
    if not local and not hub_offline() and not hub_reachable():
        kwargs["local_files_only"] = True  # no network: the local cache is all there is
    try:
        return loader.from_pretrained(source, revision=revision, **kwargs)
    except OSError as exc:
        if kwargs.get("local_files_only") and not hub_offline():
            raise SaeKitError(
                f"no network: cannot reach {hub_endpoint()}, and {source!r} is not in the local "
                "Hugging Face cache; pass a local directory saved with save_pretrained"
            ) from exc
        where = "local directory" if local else "Hugging Face Hub (wrong id? no access?)"
        raise SaeKitError(
            f"could not load {source!r} from the {where}: {first_line(exc)}"
        ) from exc


def load_model(
    name: str, *, revision: str | None = None, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Load a frozen model in eval mode on ``device`` (weights in fp32)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr carries sae-kit's own progress, one line per error
    source = resolve_source(name)
    config = _from_pretrained(AutoConfig, source, revision)
    adapter = adapter_for(config.model_type)  # a broken plugin fails before any download
    model = _from_pretrained(AutoModelForCausalLM, source, revision, dtype=torch.float32)
    adapter.check(model)
    tokenizer = _from_pretrained(AutoTokenizer, source, revision)
    model.to(device).eval().requires_grad_(False)
    return LoadedModel(name=name, source=source, model=model, tokenizer=tokenizer, adapter=adapter)
