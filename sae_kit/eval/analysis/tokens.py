"""Tokens as text for display: each id decoded on its own, whitespace made visible."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Shown instead of invisible characters, so " the" and "the" look different.
_VISIBLE = str.maketrans({" ": "·", "\n": "↵", "\t": "⇥", "\r": "␍"})


def decode_token(tokenizer: Any, token_id: int) -> str:
    """One token's own text: for byte-level BPE (GPT-2) "Ġthe" becomes " the". A token that
    is part of a multi-byte character (a curly quote's first two bytes) would decode to "\ufffd"
    on its own, telling tokens apart no more; it shows its bytes instead: "\\xe2\\x80"."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if piece is None:
        return f"<{token_id}>"
    text = tokenizer.convert_tokens_to_string([piece])
    if "\ufffd" in text and all(ch in _BYTE_OF for ch in piece):
        return bytes(_BYTE_OF[ch] for ch in piece).decode("utf-8", "backslashreplace")
    return text


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's characters back to the bytes they stand for (GPT-2's published table:
    printable Latin-1 bytes stand for themselves, the other 68 for chr(256 + n))."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in kept:
            table[chr(byte)] = byte
        else:
            table[chr(256 + extra)] = byte
            extra += 1
    return table


_BYTE_OF = _byte_level_alphabet()


def visible(text: str) -> str:
    return text.translate(_VISIBLE) if text else "∅"


def token_table(tokenizer: Any, ids: Iterable[int]) -> dict[int, str]:
    """Display text of every distinct id in ``ids`` (negative ids, padding, left out)."""
    return {i: visible(decode_token(tokenizer, i)) for i in sorted(set(ids)) if i >= 0}
