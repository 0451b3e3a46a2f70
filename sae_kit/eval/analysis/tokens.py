"""Tokens as text for display: each id decoded on its own, whitespace made visible."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Shown instead of invisible characters, so " the" and "the" look different.
_VISIBLE = str.maketrans({" ": "·", "\n": "↵", "\t": "⇥", "\r": "␍"})


def decode_token(tokenizer: Any, token_id: int) -> str:
    """One token's own text: for byte-level BPE (GPT-2) "Ġthe" becomes " the". A token that
    is part of a multi-byte character decodes to U+FFFD on its own, as it should."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if piece is None:
        return f"<{token_id}>"
    return tokenizer.convert_tokens_to_string([piece])


def visible(text: str) -> str:
    return text.translate(_VISIBLE) if text else "∅"


def token_table(tokenizer: Any, ids: Iterable[int]) -> dict[int, str]:
    """Display text of every distinct id in ``ids`` (negative ids, padding, left out)."""
    return {i: visible(decode_token(tokenizer, i)) for i in sorted(set(ids)) if i >= 0}
