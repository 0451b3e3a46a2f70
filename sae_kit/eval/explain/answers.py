"""What the model said, parsed strictly: anything else is a BadAnswer with the reason."""

from __future__ import annotations

import json
import math
import re

from sae_kit.explainers.base import BadAnswer, Completion

_ARRAY = re.compile(r"\[[^\[\]]*\]")
_DIGITS = {str(d): d for d in range(11)}


def explanation(completion: Completion) -> str:
    if completion.truncated:
        raise BadAnswer("the explanation was cut off at --explain-max-tokens")
    text = completion.text.strip()
    if "explanation:" in text.lower():
        text = text[text.lower().rindex("explanation:") + len("explanation:"):]
    text = " ".join(text.split()).strip(" \"'")
    if not text:
        raise BadAnswer("the explainer answered with an empty explanation")
    return text


def binary_list(completion: Completion, n: int) -> list[int]:
    """The first JSON list in the answer: exactly ``n`` values, each 0/1 (or false/true)."""
    found = _ARRAY.search(completion.text)
    if found is None:
        cut = " (the answer was cut off)" if completion.truncated else ""
        raise BadAnswer(f"no JSON list in the answer{cut}: {completion.text[:80]!r}")
    try:
        values = json.loads(found.group(0))
    except ValueError:
        raise BadAnswer(f"not a JSON list: {found.group(0)[:80]!r}") from None
    if len(values) != n or any(v not in (0, 1) for v in values):  # True == 1, False == 0
        raise BadAnswer(f"expected a list of {n} values 0 or 1, got {found.group(0)[:80]!r}")
    return [int(v) for v in values]


def simulated(completion: Completion, n: int) -> list[float]:
    """Expected activation (0-10) of each of ``n`` tokens, from the answer's logprobs.

    Every generated token that reads as an integer 0..10 is one prediction, in order; its value
    is the probability-weighted mean over the alternatives at that position that are integers
    too (renormalised over them).
    """
    if completion.logprobs is None:
        raise BadAnswer("the backend returned no logprobs")
    out = []
    for token in completion.logprobs:
        if token.token.strip() not in _DIGITS:
            continue
        weights = {}
        for alt, logp in token.top.items():
            digit = _DIGITS.get(alt.strip())
            if digit is not None:
                weights[digit] = weights.get(digit, 0.0) + math.exp(logp)
        total = sum(weights.values())
        out.append(sum(d * w for d, w in weights.items()) / total if total
                   else float(_DIGITS[token.token.strip()]))
    if len(out) != n:
        raise BadAnswer(f"expected {n} predicted activations, got {len(out)}")
    return out
