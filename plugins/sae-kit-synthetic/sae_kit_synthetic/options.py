"""The synthetic model's settings: ``--model synthetic:n_features=512,d_model=64,...``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.options import parse_options


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class SyntheticOptions:
    n_features: int = _help("N, ground-truth features (N > d_model: superposition).", 512)
    d_model: int = _help("d, width of the activation.", 64)
    n_functional: int = _help("|F|, features the output reads (features 0 .. |F|-1).", 128)
    d_functional: int = _help("Dimensions of F's subspace; the other features fill the rest.",
                              16)
    active: float = _help("Expected active features per token (the true L0).", 4.0)
    zipf: float = _help("Zipf exponent of the firing rates (rate of the r-th most frequent "
                        "feature ~ r^-zipf).", 1.0)
    hierarchy: float = _help("Share of features that are children: they fire only with "
                             "their parent, a more frequent feature.", 0.0)
    correlation: float = _help("Probability that a pair of features fires on one shared "
                               "coin at a token (correlated features).", 0.0)
    vocab: int = _help("Tokens of the vocabulary.", 256)
    context: int = _help("Longest window (max positions).", 128)
    hidden: int = _help("Hidden width of the downstream MLP.", 64)
    seed: int = _help("Seed of everything: directions, rates, F, downstream network.", 0)

    def __post_init__(self) -> None:
        problems = [
            (self.n_features >= 1, f"n_features={self.n_features} must be at least 1"),
            (self.d_model >= 1, f"d_model={self.d_model} must be at least 1"),
            (1 <= self.n_functional <= self.n_features,
             f"n_functional={self.n_functional} must be 1 to n_features={self.n_features}"),
            (1 <= self.d_functional <= self.d_model,
             f"d_functional={self.d_functional} must be 1 to d_model={self.d_model}"),
            (self.n_functional == self.n_features or self.d_functional < self.d_model,
             f"d_functional={self.d_functional} leaves no dimension for the "
             f"{self.n_features - self.n_functional} features outside F; make it < d_model"),
            (0 < self.active <= self.n_features,
             f"active={self.active} must be > 0 and at most n_features"),
            (self.zipf >= 0, f"zipf={self.zipf} must be >= 0"),
            (0 <= self.hierarchy < 1, f"hierarchy={self.hierarchy} must be in [0, 1)"),
            (0 <= self.correlation <= 1, f"correlation={self.correlation} must be in [0, 1]"),
            (self.vocab >= 2, f"vocab={self.vocab} must be at least 2"),
            (self.context >= 2, f"context={self.context} must be at least 2"),
            (self.hidden >= 1, f"hidden={self.hidden} must be at least 1"),
            (0 <= self.seed < 2**31, f"seed={self.seed} must be 0 to 2**31-1"),
        ]
        bad = [text for ok, text in problems if not ok]
        if bad:
            raise SaeKitError(f"synthetic model: {bad[0]}")


def parse(raw: dict[str, str]) -> SyntheticOptions:
    return parse_options(SyntheticOptions, raw, "synthetic")
