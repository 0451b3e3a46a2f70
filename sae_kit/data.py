"""Text datasets tokenized into fixed windows.

A dataset is the built-in ``pydoc`` text, local files (.txt, .jsonl/.json, .parquet, or a
directory of them) or a Hugging Face Hub id (streamed). Documents are tokenized, joined with the
end-of-text token and cut into windows of ``context`` tokens.

Evaluation must use tokens never trained on. Where the dataset has its own held-out split
(``eval_split``, and the built-in dataset's eval split), that is used; otherwise every
``HOLDOUT_EVERY``-th document is held out from training and used for evaluation.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from sae_kit import plugins
from sae_kit.builtin import BUILTIN_DATASET_NAME, pydoc_texts
from sae_kit.errors import SaeKitError, first_line
from sae_kit.model_names import source_ref
from sae_kit.network import hub_endpoint, hub_offline, hub_reachable, is_local_ref, nor_here

HOLDOUT_EVERY = 20
"""1 document in 20 (5%) is held out for evaluation when the dataset has no eval split."""

_BUILDERS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json",
             ".parquet": "parquet"}

Part = Literal["train", "eval"]


@dataclass(frozen=True)
class DataSpec:
    dataset: str = BUILTIN_DATASET_NAME
    split: str = "train"
    eval_split: str | None = None
    text_column: str = "text"


def iter_texts(spec: DataSpec, part: Part) -> Iterator[str]:
    """Documents of the training or the held-out part; the two never overlap."""
    if spec.dataset == BUILTIN_DATASET_NAME:
        yield from pydoc_texts(part)
        return
    if part == "eval" and spec.eval_split:
        yield from _rows(spec, spec.eval_split)
        return
    holdout = spec.eval_split is None
    for index, text in enumerate(_rows(spec, spec.split)):
        held_out = holdout and index % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
        if held_out == (part == "eval"):
            yield text


def _rows(spec: DataSpec, split: str) -> Iterator[str]:
    dataset = _open(spec, split)
    try:
        for row in dataset:
            yield from _text_of(row, spec)
    except SaeKitError:
        raise
    except Exception as exc:  # malformed JSON, bytes that are not UTF-8, a broken parquet file
        raise SaeKitError(
            f"could not read dataset {spec.dataset!r} ({type(exc).__name__}: {first_line(exc)}); "
            "text files must be UTF-8 and each .jsonl line one JSON object with a "
            f"{spec.text_column!r} field"
        ) from None


def _text_of(row: Any, spec: DataSpec) -> Iterator[str]:
    if not isinstance(row, dict) or spec.text_column not in row:
        columns = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise SaeKitError(
            f"dataset {spec.dataset!r} has no column {spec.text_column!r}; its columns are "
            f"{columns}; choose one with --text-column"
        )
    text = row[spec.text_column]
    if text and not isinstance(text, str):
        raise SaeKitError(f"column {spec.text_column!r} of dataset {spec.dataset!r} holds "
                          f"{type(text).__name__} values, not text; choose one with --text-column")
    if text:
        yield text


def _local_files(path: Path) -> tuple[str, list[str]]:
    files = sorted(p for p in path.rglob("*") if p.suffix in _BUILDERS) if path.is_dir() else [path]
    if not files:
        raise SaeKitError(f"no .txt, .jsonl, .json or .parquet files in {str(path)!r}")
    kinds = {_BUILDERS.get(p.suffix) for p in files}
    if None in kinds or len(kinds) != 1:
        raise SaeKitError(
            f"dataset files must all be one of {sorted(_BUILDERS)}; got {sorted(kinds, key=str)}"
        )
    return kinds.pop(), [str(p) for p in files]  # type: ignore[return-value]


def _open(spec: DataSpec, split: str) -> Iterable[dict[str, Any]]:
    import datasets

    datasets.utils.logging.set_verbosity(datasets.logging.CRITICAL)  # errors: our one line
    path = Path(spec.dataset).expanduser()
    if is_local_ref(spec.dataset) or path.suffix in _BUILDERS:
        if not path.exists():
            kind = "directory" if spec.dataset.endswith(("/", os.sep)) else "file"
            raise SaeKitError(f"dataset {kind} {spec.dataset!r} does not exist; check the path")
        builder, files = _local_files(path)
        return datasets.load_dataset(builder, data_files=files, split="train", streaming=True)
    if not hub_offline() and not hub_reachable():
        raise SaeKitError(
            f"no network: cannot reach {hub_endpoint()} to stream dataset {spec.dataset!r}"
            f"{nor_here(spec.dataset)}; pass a local .txt/.jsonl/.parquet file or directory (or "
            "the built-in 'pydoc')"
        )
    try:
        return datasets.load_dataset(spec.dataset, split=split, streaming=True)
    except Exception as exc:  # datasets raises many types for "not found" and "offline"
        raise SaeKitError(
            f"could not open dataset {spec.dataset!r} split {split!r} from the Hugging Face Hub "
            f"({type(exc).__name__}: {first_line(exc)}){nor_here(spec.dataset)}; "
            "pass a local .txt/.jsonl/.parquet path, or check the id and your network"
        ) from exc


def token_windows(texts: Iterable[str], tokenizer: Any, context: int) -> Iterator[list[int]]:
    """Tokenize documents, join them with end-of-text, and cut into full windows."""
    eos = tokenizer.eos_token_id
    buffer: list[int] = []
    for chunk in _chunks(texts, 64):
        # verbose=False: documents longer than the model's context are expected here (they are
        # cut into windows), so the tokenizer's "sequence length is longer" warning is noise.
        for ids in tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]:
            buffer.extend(ids)
            if eos is not None:
                buffer.append(eos)
            while len(buffer) >= context:
                yield buffer[:context]
                buffer = buffer[context:]


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def shuffled(windows: Iterable[list[int]], buffer_size: int, seed: int) -> Iterator[list[int]]:
    """Approximate shuffle with a fixed-size buffer, so streamed data need not fit in memory."""
    rng = random.Random(seed)
    buffer: list[list[int]] = []
    for window in windows:
        if len(buffer) < buffer_size:
            buffer.append(window)
            continue
        index = rng.randrange(buffer_size)
        yield buffer[index]
        buffer[index] = window
    rng.shuffle(buffer)
    yield from buffer


SHUFFLE_BUFFER = 1024
"""Windows the training stream shuffles among: its N-th window is one of the first N + this."""


def training_windows(
    spec: DataSpec, tokenizer: Any, context: int, seed: int, shuffle_buffer: int = SHUFFLE_BUFFER
) -> Iterator[list[int]]:
    """Training windows forever: each pass over the data (epoch) is shuffled anew.

    A model source's stream (the dataset is the model's name) is endless and already in random
    order: it is read as it comes.
    """
    generated = _source_windows(spec, "train", context, seed)
    if generated is not None:
        yield from generated
        return
    epoch = 0
    while True:
        count = 0
        windows = token_windows(iter_texts(spec, "train"), tokenizer, context)
        for window in shuffled(windows, shuffle_buffer, seed + epoch):
            count += 1
            yield window
        if count == 0:
            raise SaeKitError(
                f"dataset {spec.dataset!r} has no full window of {context} tokens; use more text "
                "or a smaller --context"
            )
        epoch += 1


def training_batches(
    spec: DataSpec, tokenizer: Any, context: int, seed: int, batch_size: int, *,
    skip: int = 0, rank: int = 0, world_size: int = 1,
) -> Iterator[torch.Tensor]:
    """Micro-batches for one of ``world_size`` ranks, after ``skip`` global windows.

    Rank r takes global windows skip + r, skip + r + world_size, ... so the ranks' shards never
    overlap and together cover the stream. Skipped windows (a resumed run) are still read and
    tokenized: the order is a deterministic function of the seed, so re-reading is exact.
    """
    windows = training_windows(spec, tokenizer, context, seed)
    return batches(itertools.islice(windows, skip + rank, None, world_size), batch_size)


def part_windows(spec: DataSpec, part: Part, tokenizer: Any, context: int) -> Iterator[list[int]]:
    """All windows of one part, lazily, in dataset order (a source plugin's own stream, seed 0,
    for a model built by one)."""
    windows = _source_windows(spec, part, context, seed=0)
    if windows is None:
        windows = token_windows(iter_texts(spec, part), tokenizer, context)
    return windows


def _source_windows(spec: DataSpec, part: Part, context: int,
                    seed: int) -> Iterator[list[int]] | None:
    """The token stream of a model built by a source plugin (``sae_kit.model.source``)."""
    ref = source_ref(spec.dataset)
    if ref is None:
        return None
    return plugins.load("model_sources", ref.scheme)().windows(ref.options, part, context, seed)


def batches(windows: Iterator[list[int]], batch_size: int) -> Iterator[torch.Tensor]:
    while True:
        rows = [next(windows) for _ in range(batch_size)]
        yield torch.tensor(rows, dtype=torch.long)
