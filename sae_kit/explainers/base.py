"""The explainer interface: chat messages in, one completion (and its logprobs) out.

A backend is a class with a ``name``, built from :class:`ExplainerSettings`, whose
:meth:`Explainer.complete` sends one conversation. Example plugin (two files, as for losses)::

    # my_explainer.py
    from sae_kit.explainers.base import Completion, Explainer

    class Echo(Explainer):
        name = "echo"

        def complete(self, messages, *, max_tokens, logprobs=0):
            return Completion(text=messages[-1]["content"][:max_tokens])

    # pyproject.toml
    [project.entry-points."sae_kit.explainers"]
    echo = "my_explainer:Echo"

Errors: raise :class:`EndpointError` when nothing can work (server unreachable, model or key
refused: the command stops with one line), :class:`BadAnswer` when this one answer is unusable
(the feature is marked unscored with the reason and the others go on).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from sae_kit.errors import SaeKitError

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class ExplainerSettings:
    model: str
    """The model name the server knows (openai) or a local directory / Hub id (transformers)."""
    endpoint: str | None = None
    """Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."""
    api_key: str | None = None
    """Held in memory only: never written to a file, a log or the cache key."""
    timeout: float = 60.0
    """Seconds a request may wait without an answer before it is retried."""
    retries: int = 4
    """Further tries after a 429, a 5xx or a timeout, with exponential backoff."""
    retry_wait: float = 1.0
    """Seconds before the first retry; doubled for each next one (a Retry-After header wins)."""
    device: str = "cpu"


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    """One generated token's text."""
    top: dict[str, float]
    """The most likely alternatives at that position (text → natural-log probability)."""


@dataclass(frozen=True)
class Completion:
    text: str
    logprobs: list[TokenLogprob] | None = None
    """Per generated token, where the backend returns them; None where it does not."""
    truncated: bool = False
    """The answer stopped at ``max_tokens`` rather than where the model ended it."""


class EndpointError(SaeKitError):
    """Nothing can work with these settings: the command stops with this one line."""


class BadAnswer(Exception):
    """This one answer is unusable (malformed, truncated, refused): the feature goes unscored."""


class Explainer(ABC):
    name: ClassVar[str]
    max_concurrency: ClassVar[int | None] = None
    """At most this many calls at once (None: as many as --concurrency asks)."""

    def __init__(self, settings: ExplainerSettings) -> None:
        self.settings = settings

    def identity(self) -> dict[str, Any]:
        """What, besides the messages, decides an answer: part of each call's cache key."""
        return {"backend": self.name, "model": self.settings.model,
                "endpoint": self.settings.endpoint}

    @abstractmethod
    def complete(self, messages: Messages, *, max_tokens: int, logprobs: int = 0) -> Completion:
        """One greedy (temperature 0) answer to ``messages``; ``logprobs`` > 0 asks for that
        many alternatives per generated token."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or memory."""
