"""``--model synthetic:...``: builds the model and generates its token stream.

Tokens are sampled from the model itself: at each position the next token is drawn from the
output distribution there, so the clean model's CE loss is the entropy of its own predictions
and a spliced model's CE increase estimates KL(p_clean || p_spliced). The train part and the
eval part are drawn from different random streams (eval always with seed 0), so evaluation
sees fresh contexts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch

from sae_kit.model.source import GroundTruth, ModelSource
from sae_kit_synthetic.generator import KEY_TOKENS, context_keys
from sae_kit_synthetic.network import (
    GROUND_TRUTH_POSITION,
    SyntheticModel,
    SyntheticTokenizer,
)
from sae_kit_synthetic.options import parse

WINDOWS_PER_DRAW = 128
"""Windows sampled side by side (one small forward per position for all of them)."""


class SyntheticSource(ModelSource):
    name = "synthetic"

    def build(self, options: dict[str, str]) -> tuple[SyntheticModel, SyntheticTokenizer]:
        parsed = parse(options)
        return SyntheticModel(parsed), SyntheticTokenizer(parsed.vocab)

    def windows(self, options: dict[str, str], part: Literal["train", "eval"], context: int,
                seed: int) -> Iterator[list[int]]:
        model = SyntheticModel(parse(options))
        stream = torch.Generator().manual_seed(seed * 2 + (part == "eval"))
        while True:  # no grad mode around a yield: it would leak into the reader's code
            yield from sample_windows(model, WINDOWS_PER_DRAW, context, stream).tolist()

    def ground_truth(self, options: dict[str, str], position: int) -> GroundTruth | None:
        if position != GROUND_TRUTH_POSITION:
            return None
        generator = SyntheticModel(parse(options)).generator
        return GroundTruth(generator.directions, generator.functional, generator.rates)


@torch.no_grad()
def sample_windows(model: SyntheticModel, n: int, context: int,
                   g: torch.Generator) -> torch.Tensor:
    """(n, context) token ids: a uniform first token, then each next one from the model."""
    o = model.options
    tokens = torch.empty(n, context, dtype=torch.long)
    tokens[:, 0] = torch.randint(0, o.vocab, (n,), generator=g)
    for p in range(context - 1):
        tail = tokens[:, max(0, p + 1 - KEY_TOKENS): p + 1]
        keys = context_keys(tail, o.vocab, o.seed)[:, -1]
        activation = model.generator.activations(model.generator.codes(keys))
        probs = torch.softmax(model.logits_from(activation), dim=-1)
        tokens[:, p + 1] = torch.multinomial(probs, 1, generator=g).squeeze(1)
    return tokens
