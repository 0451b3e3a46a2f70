"""``openai``: the chat-completions protocol over HTTP, for any compatible server.

    sae-kit explain RUN_DIR --endpoint http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct

POSTs ``{endpoint}/chat/completions`` with httpx (``pip install 'sae-kit[explain]'``). A 429, a
5xx or a timeout is retried with exponential backoff (``Retry-After`` is honoured); a refused
connection, a refused key, an unknown model or a server that is not OpenAI-compatible stops the
command with one line; a malformed answer marks one feature unscored.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.explainers.base import (
    BadAnswer,
    Completion,
    EndpointError,
    Explainer,
    ExplainerSettings,
    Messages,
    TokenLogprob,
)

_RETRIED = {408, 409, 425, 429, 500, 502, 503, 504}


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise SaeKitError("the 'openai' explainer needs httpx: pip install 'sae-kit[explain]'"
                          ) from None
    return httpx


def _error_text(response: Any) -> str:
    """The server's own error message, shortened to one line."""
    try:
        body = response.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        text = err.get("message", err) if isinstance(err, dict) else err
    except ValueError:
        text = response.text
    return " ".join(str(text).split())[:200]


class OpenAIExplainer(Explainer):
    name = "openai"

    def __init__(self, settings: ExplainerSettings) -> None:
        super().__init__(settings)
        if not settings.endpoint:
            raise SaeKitError("the 'openai' explainer needs --endpoint, the server's base URL "
                              "(e.g. http://127.0.0.1:8000/v1)")
        httpx = _httpx()
        self._httpx = httpx
        self._url = settings.endpoint.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(settings.timeout), headers=headers)

    def complete(self, messages: Messages, *, max_tokens: int, logprobs: int = 0) -> Completion:
        body: dict[str, Any] = {"model": self.settings.model, "messages": messages,
                                "max_tokens": max_tokens, "temperature": 0}
        if logprobs:
            body.update(logprobs=True, top_logprobs=logprobs)
        wait, last = self.settings.retry_wait, ""
        for attempt in range(self.settings.retries + 1):
            if attempt:
                time.sleep(wait)
                wait *= 2
            try:
                response = self._client.post(self._url, json=body)
            except self._httpx.TimeoutException:
                last = f"no answer within {self.settings.timeout:g} s"
                continue
            except self._httpx.TransportError as exc:
                raise EndpointError(f"cannot reach {self.settings.endpoint} ({exc}); is the "
                                    "server running, and is --endpoint its base URL?") from None
            if response.status_code in _RETRIED:
                last = f"HTTP {response.status_code}: {_error_text(response)}"
                after = response.headers.get("retry-after", "")
                wait = float(after) if after.replace(".", "", 1).isdigit() else wait
                continue
            return self._answer(response)
        raise BadAnswer(f"{last} (after {self.settings.retries + 1} tries)")

    def _answer(self, response: Any) -> Completion:
        status, where = response.status_code, self.settings.endpoint
        if status in (401, 403):
            raise EndpointError(f"{where} refused the API key (HTTP {status}: "
                                f"{_error_text(response)}); set the variable --api-key-env names")
        if status in (400, 404) and "model" in _error_text(response).lower():
            raise EndpointError(f"{where} does not serve model {self.settings.model!r} (HTTP "
                                f"{status}: {_error_text(response)}); pass a name it lists at "
                                "/models")
        if status == 404:
            raise EndpointError(f"{where} has no chat-completions API (HTTP 404 at {self._url}); "
                                "an OpenAI-compatible base URL usually ends in /v1")
        if status != 200:
            raise BadAnswer(f"HTTP {status}: {_error_text(response)}")
        try:
            choice = response.json()["choices"][0]
            text = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise BadAnswer("the answer is not a chat completion (no choices[0].message."
                            f"content): {response.text[:120]!r}") from None
        if not isinstance(text, str):
            raise BadAnswer(f"choices[0].message.content is {type(text).__name__}, not text")
        return Completion(text=text, logprobs=_logprobs(choice),
                          truncated=choice.get("finish_reason") == "length")

    def close(self) -> None:
        self._client.close()


def _logprobs(choice: dict[str, Any]) -> list[TokenLogprob] | None:
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    try:
        return [TokenLogprob(item["token"], {alt["token"]: float(alt["logprob"])
                                             for alt in item.get("top_logprobs") or []}
                             or {item["token"]: float(item["logprob"])})
                for item in content]
    except (KeyError, TypeError, ValueError):
        raise BadAnswer(f"malformed logprobs: {json.dumps(content)[:120]}") from None
