"""One streaming pass of the model over text, yielding the activations at some hook points.

Windows are tokenized lazily and dropped after their batch, so memory does not grow with the
number of tokens. The text is one part of the run's dataset (``TextChoice.part``: the held-out
part, as `sae-kit eval` measures on, or the training part's first windows in dataset order, as
it counts alive elements on), or ``dataset``/``split`` name other text. A pass reads the whole
windows within its token budget; :class:`TextRead` says how much it read and whether the budget
or the text ended first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from sae_kit.builtin import BUILTIN_DATASET_NAME, pydoc_texts
from sae_kit.data import DataSpec, Part, iter_texts, part_windows, token_windows
from sae_kit.errors import SaeKitError, counted
from sae_kit.eval.alive import alive_window_count
from sae_kit.model.hookpoints import Site
from sae_kit.model.loading import LoadedModel
from sae_kit.model.splice import ModelRunner


@dataclass(frozen=True)
class TextChoice:
    """Which text to run over: a part of the run's dataset (``part``: "eval", the held-out part,
    or "train", the training part from its start), or ``dataset``'s ``split`` (all of it that
    the token budget allows)."""

    dataset: str | None = None
    split: str = "train"
    part: Part = "eval"


ALIVE_TEXT = TextChoice(part="train")
"""The text `sae-kit eval` counts alive elements on (:mod:`sae_kit.eval.alive`)."""


def describe_text(spec: DataSpec, choice: TextChoice) -> str:
    """How reports name the text a pass ran over (how much of it: :meth:`TextRead.describe`)."""
    if choice.dataset:
        return f"{choice.dataset} ({choice.split})"
    if choice.part == "train":
        return (f"{spec.dataset} (training part from its start, in dataset order: the tokens "
                "`sae-kit eval` counts alive elements on)")
    return f"{spec.dataset} (held-out part)"


@dataclass
class TextRead:
    """How much text a pass read: what every header states."""

    context: int
    asked: int
    """The token budget (--tokens): whole windows within it are read, at least one."""
    windows: int = 0
    ends: int = 0
    """End-of-text tokens read: documents that ended inside the windows."""
    capped: bool = False
    """The text had more windows than the budget allowed."""

    @property
    def n_tokens(self) -> int:
        return self.windows * self.context

    @property
    def budget(self) -> int:
        """Tokens in the whole windows the budget allows."""
        return alive_window_count(self.asked, self.context) * self.context

    @property
    def documents(self) -> int:
        """Documents the windows touch: those that ended in them, and the one they end in."""
        return self.ends + 1 if self.windows else 0

    def describe(self) -> str:
        """E.g. "4,864 tokens (19 windows of 256, 8 documents; all the text there is)"."""
        how = (f"capped at {self.asked:,} tokens; the text has more" if self.capped
               else "all the text there is")
        return (f"{self.n_tokens:,} tokens ({counted(self.windows, 'window')} of "
                f"{self.context:,}, {counted(self.documents, 'document')}; {how})")

    def as_dict(self) -> dict[str, int | bool | str]:
        return {"n_tokens": self.n_tokens, "n_windows": self.windows,
                "n_documents": self.documents, "capped": self.capped, "asked": self.asked,
                "read": self.describe()}


NO_WINDOW = ("the text has no full window of the run's context length; use more text "
             "(--dataset) or a run with a shorter context")


def choose_texts(spec: DataSpec, choice: TextChoice) -> Iterator[str]:
    if choice.dataset is None:
        return iter_texts(spec, choice.part)
    if choice.dataset == BUILTIN_DATASET_NAME:
        if choice.split not in ("train", "eval"):
            raise SaeKitError(f"the built-in {BUILTIN_DATASET_NAME!r} text has splits 'train' "
                              f"and 'eval', not {choice.split!r}")
        return iter(pydoc_texts(choice.split))  # type: ignore[arg-type]
    # eval_split = split: the "eval" part of this spec is the whole split, nothing held out.
    other = DataSpec(choice.dataset, choice.split, choice.split, spec.text_column)
    return iter_texts(other, "eval")


def text_windows(spec: DataSpec, choice: TextChoice, tokenizer: object, context: int,
                 n_tokens: int) -> tuple[Iterator[list[int]], TextRead]:
    """The windows of ``choice`` within ``n_tokens`` (whole windows, at least one, as
    `sae-kit eval` counts them), and the :class:`TextRead` they fill in as they are read.

    A part of the run's dataset is read as `sae-kit eval` reads it (a source plugin's own
    stream for a model built by one), so the same budget gives the same windows."""
    if n_tokens < 1:
        raise SaeKitError(f"--tokens must be positive, got {n_tokens}")
    if choice.dataset is None:
        windows = part_windows(spec, choice.part, tokenizer, context)
    else:
        windows = token_windows(choose_texts(spec, choice), tokenizer, context)
    read = TextRead(context, n_tokens)
    return counted_windows(windows, read, read.budget // context, tokenizer), read


def counted_windows(windows: Iterable[list[int]], read: TextRead, limit: int,
                    tokenizer: object) -> Iterator[list[int]]:
    """Up to ``limit`` of ``windows``, counted into ``read`` as they pass (its windows and
    ends of text; capped when the text had another window)."""
    eos = getattr(tokenizer, "eos_token_id", None)
    for window in windows:
        if read.windows == limit:  # one window past the budget: the text had more
            read.capped = True
            return
        read.windows += 1
        if eos is not None:
            read.ends += window.count(eos)
        yield window


def window_batches(windows: Iterable[list[int]], batch_size: int) -> Iterator[torch.Tensor]:
    """Batches of up to ``batch_size`` windows."""
    if batch_size < 1:
        raise SaeKitError(f"--batch-size must be positive, got {batch_size}")
    rows: list[list[int]] = []
    for window in windows:
        rows.append(window)
        if len(rows) == batch_size:
            yield torch.tensor(rows, dtype=torch.long)
            rows = []
    if rows:
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
