"""Calls to the explainer: a cache keyed by the prompt's hash, bounded concurrency, a count.

Each answer is written to ``CACHE/<sha256>.json`` as soon as it arrives (atomically), so a rerun
or a run resumed after an interrupt sends no call twice. The key is the SHA-256 of the backend's
identity (name, model, endpoint), the messages and the call's parameters; never the API key.
Failed calls are not cached: a rerun tries them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

from sae_kit.explainers.base import BadAnswer, Completion, EndpointError, Explainer, TokenLogprob


@dataclass(frozen=True)
class Call:
    messages: list[dict[str, str]]
    max_tokens: int
    logprobs: int = 0

    def size(self) -> int:
        """Characters sent: what --dry-run counts (tokens ~ characters / 4 for English)."""
        return sum(len(m["content"]) for m in self.messages)


Result = Completion | BadAnswer


def _completion(data: dict) -> Completion:
    lps = data.get("logprobs")
    return Completion(data["text"], None if lps is None else [TokenLogprob(**t) for t in lps],
                      data.get("truncated", False))


class Caller:
    """Runs calls through one explainer; ``sent`` counts those that reached the backend."""

    def __init__(self, explainer: Explainer, cache: Path, concurrency: int) -> None:
        self.explainer, self.cache = explainer, cache
        limit = explainer.max_concurrency
        self.concurrency = min(concurrency, limit) if limit else concurrency
        self.sent = self.cached = 0
        self._lock = threading.Lock()

    def key(self, call: Call) -> str:
        blob = json.dumps({"who": self.explainer.identity(), "call": asdict(call)},
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _read(self, key: str) -> Completion | None:
        try:
            return _completion(json.loads((self.cache / f"{key}.json").read_text("utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent, or damaged: ask again

    def _write(self, key: str, completion: Completion) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(completion), f, ensure_ascii=False)
        os.replace(tmp, self.cache / f"{key}.json")

    def _one(self, call: Call) -> Result:
        key = self.key(call)
        if (hit := self._read(key)) is not None:
            with self._lock:
                self.cached += 1
            return hit
        with self._lock:
            self.sent += 1
        try:
            answer = self.explainer.complete(call.messages, max_tokens=call.max_tokens,
                                             logprobs=call.logprobs)
        except BadAnswer as exc:
            return exc
        self._write(key, answer)
        return answer

    def run(self, calls: Sequence[Call], done: Callable[[], None] | None = None) -> list[Result]:
        """Every call's completion or BadAnswer, in order; an EndpointError stops them all."""
        results: list[Result | None] = [None] * len(calls)
        stop = threading.Event()

        def task(i: int) -> None:
            if stop.is_set():
                return
            try:
                results[i] = self._one(calls[i])
            except EndpointError:
                stop.set()
                raise
            if done:
                done()

        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(task, i) for i in range(len(calls))]
            wait(futures, return_when=FIRST_EXCEPTION)
            for f in futures:
                f.cancel()
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        return results  # type: ignore[return-value]
