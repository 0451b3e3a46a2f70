"""One streaming pass of the model over text, yielding the activations at some hook points.

Windows are tokenized lazily and dropped after their batch, so memory does not grow with the
number of tokens. By default the text is the run's held-out split (as `sae-kit eval` uses);
``dataset``/``split`` name other text, all of which is used.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from sae_kit.builtin import BUILTIN_DATASET_NAME, pydoc_texts
from sae_kit.data import DataSpec, iter_texts, token_windows
from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import Site
from sae_kit.model.loading import LoadedModel
from sae_kit.model.splice import ModelRunner


@dataclass(frozen=True)
class TextChoice:
    """Which text to run over: the run's held-out split, or all of ``dataset``'s ``split``."""

    dataset: str | None = None
    split: str = "train"


def describe_text(spec: DataSpec, choice: TextChoice) -> str:
    """How reports name the text a pass ran over."""
    if choice.dataset:
        return f"{choice.dataset} ({choice.split}, all of it)"
    return f"{spec.dataset} (held-out part)"


NO_WINDOW = ("the text has no full window of the run's context length; use more text "
             "(--dataset) or a run with a shorter context")


def choose_texts(spec: DataSpec, choice: TextChoice) -> Iterator[str]:
    if choice.dataset is None:
        return iter_texts(spec, "eval")
    if choice.dataset == BUILTIN_DATASET_NAME:
        if choice.split not in ("train", "eval"):
            raise SaeKitError(f"the built-in {BUILTIN_DATASET_NAME!r} text has splits 'train' "
                              f"and 'eval', not {choice.split!r}")
        return iter(pydoc_texts(choice.split))  # type: ignore[arg-type]
    # eval_split = split: the "eval" part of this spec is the whole split, nothing held out.
    other = DataSpec(choice.dataset, choice.split, choice.split, spec.text_column)
    return iter_texts(other, "eval")


def window_batches(texts: Iterable[str], tokenizer: object, context: int, n_tokens: int,
                   batch_size: int) -> Iterator[torch.Tensor]:
    """Batches of up to ``batch_size`` windows, ``ceil(n_tokens / context)`` windows at most."""
    if n_tokens < 1 or batch_size < 1:
        raise SaeKitError(f"--tokens and --batch-size must be positive, got {n_tokens} and "
                          f"{batch_size}")
    windows = itertools.islice(token_windows(texts, tokenizer, context),
                               math.ceil(n_tokens / context))
    while rows := list(itertools.islice(windows, batch_size)):
        yield torch.tensor(rows, dtype=torch.long)


Batch = tuple[torch.Tensor, dict[Site, torch.Tensor]]


def activation_batches(loaded: LoadedModel, sites: Iterable[Site],
                       batches: Iterable[torch.Tensor], device: torch.device) -> Iterator[Batch]:
    """(input_ids, {site: activation}) per batch, for sites (``HookPoint.site``: residual
    positions or hook points inside a layer); stops the forward pass early."""
    runner = ModelRunner(loaded.model, loaded.adapter)
    sites = list(dict.fromkeys(sites))
    seen = 0
    with torch.no_grad():
        for input_ids in batches:
            seen += 1
            run = runner.run(input_ids.to(device), capture=sites, final_hidden=False)
            yield input_ids, run.acts
    if not seen:
        raise SaeKitError(NO_WINDOW)
