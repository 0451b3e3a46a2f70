"""Built-in text dataset and the location of the model that ships with sae-kit.

The dataset is the standard library's ``pydoc_data.topics`` (the text behind ``help("topic")``),
so it is available on every Python install without any download. The shipped language model
(``sae-kit-tiny``) is trained on its train split by ``scripts/train_tiny_lm.py``.

This module is imported by the CLI at start-up, so it must stay free of heavy imports.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Literal

BUILTIN_MODEL_NAME = "sae-kit-tiny"
BUILTIN_DATASET_NAME = "pydoc"

# Fraction of topics (by count) held out for evaluation.
_EVAL_FRACTION = 0.1
# Train paragraphs at least this long that also occur verbatim in an eval topic are dropped.
# Shorter ones are boilerplate ("Note:", "See also:") and carry no held-out content.
_MIN_DEDUP_CHARS = 40


def builtin_model_dir() -> Path:
    """Directory of the shipped model (``sae_kit/assets/sae-kit-tiny/`` inside the package).

    It holds a Hugging Face model + tokenizer, so it can be passed anywhere a Hub id is accepted,
    e.g. ``AutoModelForCausalLM.from_pretrained(builtin_model_dir())``.
    """
    return Path(__file__).resolve().parent / "assets" / BUILTIN_MODEL_NAME


def _topic_rank(key: str) -> str:
    # sha256 rather than hash(): Python's str hash is salted per process.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _paragraphs(text: str) -> list[str]:
    return text.split("\n\n")


@lru_cache(maxsize=1)
def _splits() -> tuple[tuple[str, ...], tuple[str, ...]]:
    from pydoc_data.topics import topics  # deferred: ~460 KB module

    keys = sorted(topics, key=lambda k: (_topic_rank(k), k))
    n_eval = max(1, round(len(keys) * _EVAL_FRACTION))
    eval_keys = sorted(keys[:n_eval])
    train_keys = sorted(keys[n_eval:])

    eval_texts = tuple(topics[k] for k in eval_keys)
    # Many pydoc topics are excerpts of others (e.g. "with" is a section of "compound"), so a
    # split by key alone would leak eval text into training. Remove such shared paragraphs
    # from the train side so the eval topics stay whole documents.
    eval_paras = {
        p.strip()
        for text in eval_texts
        for p in _paragraphs(text)
        if len(p.strip()) >= _MIN_DEDUP_CHARS
    }
    train_texts = []
    for k in train_keys:
        kept = [p for p in _paragraphs(topics[k]) if p.strip() not in eval_paras]
        text = "\n\n".join(kept).strip("\n")
        if text.strip():
            train_texts.append(text)
    return tuple(train_texts), eval_texts


def pydoc_texts(split: Literal["train", "eval"]) -> list[str]:
    """Return the documents of one split of the built-in ``pydoc`` dataset.

    Each document is the text of one topic in ``pydoc_data.topics.topics``. The split is made by
    topic key and is deterministic across processes and machines:

    * the keys are ordered by the SHA-256 hex digest of the key (a stable hash, unlike ``hash``);
    * the first ``round(0.1 * n_topics)`` keys (at least one) form the eval split, the rest the
      train split, so train and eval never share a topic; each split is returned in sorted key
      order;
    * because some topics quote whole sections of others, any train paragraph (text between
      blank lines) of at least 40 characters that also appears verbatim in an eval topic is
      removed from the train document. Eval documents are returned unchanged.

    The exact text depends on the Python version, since ``pydoc_data`` ships with the
    interpreter.
    """
    train, eval_ = _splits()
    if split == "train":
        return list(train)
    if split == "eval":
        return list(eval_)
    raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
