"""A loopback OpenAI-compatible chat-completions server for the explain tests.

Deterministic: it "explains" a feature by the first marked token of the explainer's prompt and
scores by looking for that token, so answers depend only on the prompt. The model name picks a
behaviour: ``good``, ``nologprobs``, ``flaky`` (each prompt's first request gets a 429, then a
500, then an answer), ``stall`` (each prompt's first request waits past the client's timeout),
``garbage`` (200 with a body that is not JSON), ``missing`` (JSON without ``choices``),
``truncated`` (finish_reason ``length``); any other name is refused as an unknown model.
``fail_after`` makes every request after that many answers a 401 (a run stopped midway).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODELS = {"good", "nologprobs", "flaky", "stall", "garbage", "missing", "truncated"}


def _explained(prompt: str) -> str:
    found = re.search(r"Explanation: the token '(.*?)'", prompt)
    return found.group(1) if found else ""


def _answer(system: str, prompt: str) -> tuple[str, list[tuple[str, dict[str, float]]] | None]:
    if system.startswith("You are a meticulous"):
        marked = re.search(r"<<(.+?)>>", prompt)
        return f"Explanation: the token '{marked.group(1) if marked else '?'}'", None
    word = _explained(prompt)
    excerpts = re.findall(r"^Excerpt \d+(?: \(\d+ tokens\))?: (.*)$", prompt, re.M)
    if system.startswith("You are simulating"):
        tokens = []
        for line in excerpts:
            for piece in line.split(" | "):
                hit = bool(word) and piece.strip() == word.strip()
                tokens.append(" 10" if hit else " 0")
            tokens.append("\n")
        logprobs = [(t, {t: math.log(0.8), (" 0" if t == " 10" else " 10"): math.log(0.2)})
                    if t != "\n" else (t, {t: 0.0}) for t in tokens]
        return "".join(tokens), logprobs
    if system.startswith("You are scoring") and "marked" in system:
        values = [int(any(m.strip() == word.strip() for m in re.findall(r"<<(.+?)>>", line)))
                  for line in excerpts]
    else:
        values = [int(bool(word) and word in line) for line in excerpts]
    return json.dumps(values), None


class FakeLLM:
    def __init__(self, fail_after: int | None = None) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.answered: list[str] = []  # prompt hash of every 200 with a usable answer
        self.fail_after = fail_after
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                    fake.headers.append(dict(self.headers))
                fake.handle(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None  # a client that left
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _send(self, handler: BaseHTTPRequestHandler, status: int, payload: object,
              raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def handle(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        if handler.path != "/v1/chat/completions":
            return self._send(handler, 404, {"error": {"message": "Not Found"}})
        model = body.get("model")
        if model not in MODELS:
            return self._send(handler, 404, {"error": {
                "message": f"The model `{model}` does not exist."}})
        key = hashlib.sha256(json.dumps(body["messages"]).encode()).hexdigest()
        with self.lock:
            tries = self.seen[key] = self.seen.get(key, 0) + 1
            if self.fail_after is not None and len(self.answered) >= self.fail_after:
                return self._send(handler, 401, {"error": {"message": "key revoked"}})
        if model == "flaky" and tries <= 2:
            return self._send(handler, 429 if tries == 1 else 500,
                              {"error": {"message": "busy"}})
        if model == "stall" and tries == 1:
            time.sleep(1.5)  # past the client's timeout: it has gone, nothing is answered
            return None
        if model == "garbage":
            return self._send(handler, 200, None, raw=b"<html>oops")
        if model == "missing":
            return self._send(handler, 200, {"id": "x", "object": "chat.completion"})
        system, prompt = body["messages"][0]["content"], body["messages"][-1]["content"]
        text, logprobs = _answer(system, prompt)
        choice: dict = {"index": 0, "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop"}
        if model == "truncated":
            choice["message"]["content"], choice["finish_reason"] = text[: len(text) // 2], "length"
        if body.get("logprobs") and logprobs is not None and model != "nologprobs":
            choice["logprobs"] = {"content": [
                {"token": t, "logprob": max(top.values()),
                 "top_logprobs": [{"token": a, "logprob": lp} for a, lp in top.items()]}
                for t, top in logprobs]}
        with self.lock:
            self.answered.append(key)
        return self._send(handler, 200, {"id": "x", "object": "chat.completion",
                                         "choices": [choice]})


def explain_a_copy(report, target):
    """`sae-kit explain` (model ``good``, 6 features) on a copy of ``report`` at ``target``;
    returns the copy's explanations.json features."""
    import shutil

    from typer.testing import CliRunner

    from sae_kit.cli import app

    shutil.copytree(report, target)
    with FakeLLM() as llm:
        result = CliRunner().invoke(app, [
            "explain", str(target), "--endpoint", llm.url, "--model", "good", "--sample", "6",
            "--device", "cpu", "--pool-tokens", "640"])
    assert result.exit_code == 0, result.output
    return json.loads((target / "explanations.json").read_text())["features"]
