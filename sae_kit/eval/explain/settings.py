"""Every setting of `sae-kit explain`, declared once: the CLI's options are made from these."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ExplainSettings:
    sample: int = _opt(20, "Explain this many features drawn at random from those that fired "
                       "(ignored with --features).")
    seed: int = _opt(0, "Seed of the feature sample and of the context shuffles.")
    score_contexts: int = _opt(10, "Held-out activating contexts per feature for scoring; as "
                               "many non-activating ones are added for detection.")
    explain_max_tokens: int = _opt(120, "Longest explanation, in tokens.")
    concurrency: int = _opt(4, "Calls in flight at once.")
    timeout: float = _opt(60.0, "Seconds a call may wait for an answer before it is retried.")
    retries: int = _opt(4, "Retries of a call after a 429, a 5xx or a timeout (backoff 1, 2, "
                        "4, ... s).")
    retry_wait: float = _opt(1.0, "Seconds before the first retry (doubled for each next one; "
                             "a Retry-After header wins).")
    simulation: bool = _opt(True, "Also score by simulation where the backend returns logprobs.")
    pool_tokens: int = _opt(8192, "Held-out tokens searched for non-activating contexts.")

    def check(self) -> None:
        from sae_kit.errors import SaeKitError

        for name in ("sample", "score_contexts", "explain_max_tokens", "concurrency",
                     "pool_tokens"):
            if getattr(self, name) < 1:
                raise SaeKitError(f"--{name.replace('_', '-')} must be at least 1, got "
                                  f"{getattr(self, name)}")
        if self.retries < 0 or not self.timeout > 0 or not self.retry_wait >= 0:
            raise SaeKitError(f"--retries and --retry-wait must be >= 0 and --timeout > 0, got "
                              f"{self.retries}, {self.retry_wait} and {self.timeout}")


def help_of(name: str) -> str:
    return next(f.metadata["help"] for f in fields(ExplainSettings) if f.name == name)
