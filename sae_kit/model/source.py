"""The interface of a model source: a model built from options, with its own token stream.

A model source is for models that are generated rather than downloaded - a synthetic model
whose ground truth is known, say. ``--model NAME:key=value,...`` picks the source registered
as NAME in the ``sae_kit.model_sources`` entry-point group (the naming rule is
:func:`sae_kit.model_names.source_ref`). Everything downstream is unchanged: the model it builds
is run through the adapter registered under its ``config.model_type``, like any Hugging Face
model, and its token windows stand in for a dataset (the run's dataset is the model's name).

A source may also know the ground truth of its activations; ``ground_truth`` gives it to
``sae-kit bench``. A complete source (``sae_kit_toy.py``, registered as
``[project.entry-points."sae_kit.model_sources"] toy = "sae_kit_toy:ToySource"``)::

    import itertools, torch
    from sae_kit.model.source import ModelSource

    class ToySource(ModelSource):
        name = "toy"

        def build(self, options):
            model = make_my_model(**options)        # an nn.Module with .config.model_type
            return model, MyTokenizer()

        def windows(self, options, part, context, seed):
            g = torch.Generator().manual_seed(seed * 2 + (part == "eval"))
            while True:
                yield torch.randint(0, 64, (context,), generator=g).tolist()
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn


@dataclass(frozen=True)
class GroundTruth:
    """The true features of the activations at one hook point."""

    directions: torch.Tensor
    """(n_features, d_model), unit rows: each feature's direction in the activation."""
    functional: torch.Tensor
    """(n_features,) bool: the features the model's output depends on (the set F)."""
    firing_rates: torch.Tensor
    """(n_features,) the probability that each feature is active at a token."""


class ModelSource:
    """Builds one kind of model from ``key=value`` options. Sources hold no state."""

    name: ClassVar[str] = ""

    def build(self, options: dict[str, str]) -> tuple[nn.Module, Any]:
        """The model (frozen weights, ``.config.model_type`` set) and its tokenizer.

        Raise :class:`sae_kit.errors.SaeKitError` (one line) for options that cannot be met.
        The tokenizer needs ``convert_ids_to_tokens`` and ``convert_tokens_to_string`` (feature
        dashboards show tokens); it is never asked to tokenize text.
        """
        raise NotImplementedError

    def windows(self, options: dict[str, str], part: Literal["train", "eval"], context: int,
                seed: int) -> Iterator[list[int]]:
        """Token windows of ``context`` tokens, forever, deterministic from ``seed``.

        The ``eval`` part must never repeat the ``train`` part's tokens; it is read with seed 0.
        """
        raise NotImplementedError

    def ground_truth(self, options: dict[str, str], position: int) -> GroundTruth | None:
        """The true features at residual-stream ``position``, or None where none is known."""
        return None
