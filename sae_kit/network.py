"""The Hugging Face Hub as a source: local path or Hub id, the endpoint, reachability, timeouts.

:func:`is_local_ref` is the one rule, used for models, datasets, SAEs and runs alike, deciding
whether a name is a local path or a Hub id; :func:`hub_ref` is the one parser of what is left
(repo id, and the path inside the repo). :func:`hub_problem` is a fast check so "no
network" is one quick line: without it, huggingface_hub retries each request for half a minute
and logs every retry. Without the timeouts, a server that accepts the
connection and never answers makes ``sae-kit push`` wait forever (huggingface_hub's HTTP client
has no timeout of its own). ``SAE_KIT_HUB_TIMEOUT`` (seconds, default 60) bounds every wait for
the Hub: connecting, each read and each write, the metadata (ETag) request and each download
chunk; ``HF_HUB_ETAG_TIMEOUT`` / ``HF_HUB_DOWNLOAD_TIMEOUT``, when set, win for those two.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError

DEFAULT_TIMEOUT = 60.0
"""Seconds without progress before a Hub request fails: long enough for a slow link."""


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def is_local_ref(ref: str | os.PathLike[str]) -> bool:
    """True when ``ref`` names a local path, not a Hub id: it exists, or is written as a path.

    ``./x``, ``/x``, ``~/x`` and ``x/`` (no Hub id ends in a slash) are paths even when
    missing (so the error says "does not exist", not "not found on the Hub"); so is
    ``runs/typo`` when ``runs/`` is a directory here (a mistyped run or model directory).
    ``alice/data`` is a Hub id unless such a directory exists here.
    """
    text = os.fspath(ref)
    if text.startswith((".", "/", "~")) or text.endswith(("/", os.sep)):
        return True
    if Path(text).expanduser().exists():
        return True
    first, sep, _ = text.partition("/")
    return bool(sep) and Path(first).is_dir()


REPO_HINT = "expected namespace/name, e.g. alice/gpt2-e2e-saes"


@dataclass(frozen=True)
class HubRef:
    """A Hub model repo and, optionally, a folder in it (one SAE of a pushed run)."""

    repo_id: str
    subfolder: str | None = None

    def __str__(self) -> str:
        return f"{self.repo_id}/{self.subfolder}" if self.subfolder else self.repo_id


def parse_hub_ref(text: str, allow_subfolder: bool = True) -> HubRef:
    """``namespace/name[/subfolder]`` -> HubRef; one clear line when malformed."""
    parts = text.strip().strip("/").split("/")
    if len(parts) < 2 or (len(parts) > 2 and not allow_subfolder) or not all(parts):
        raise SaeKitError(f"bad repo id {text!r}: {REPO_HINT}"
                          + ("[/subfolder]" if allow_subfolder else ""))
    return HubRef(_valid_repo_id("/".join(parts[:2]), text), "/".join(parts[2:]) or None)


def hub_ref(ref: str | os.PathLike[str], *, bare: bool = False) -> HubRef | None:
    """The Hub repo (and the path inside it) that ``ref`` names; None when it is a local path.

    ``alice/saes`` -> ``HubRef("alice/saes")``, ``alice/saes/blocks.6.hook_resid_pre`` ->
    ``HubRef("alice/saes", "blocks.6.hook_resid_pre")``; whatever :func:`is_local_ref` calls a
    path -> None. A bare name (``gpt2``) is a Hub id only with ``bare=True`` (models and
    datasets have such legacy ids; a run or an SAE never does, so there it is a missing local
    directory). A malformed id raises SaeKitError (one line).
    """
    text = os.fspath(ref)
    if is_local_ref(text):
        return None
    if "/" not in text:
        return HubRef(_valid_repo_id(text, text)) if bare else None
    return parse_hub_ref(text)


def _valid_repo_id(repo_id: str, text: str) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise SaeKitError(
            f"bad repo id {text!r}: {REPO_HINT} (letters, digits, '-', '_', '.'; no '--' or "
            "'..'; at most 96 characters)"
        ) from None
    return repo_id


def nor_here(ref: str) -> str:
    """``", nor is there a file or directory 'models/x' here"`` for a Hub-id-shaped name that
    names nothing here either (a mistyped local path reads as a Hub id), else ``""``."""
    if "/" not in ref or Path(ref).expanduser().exists():
        return ""
    return f", nor is there a file or directory {ref!r} here (a typo in a local path?)"


def hub_timeout() -> float:
    """``SAE_KIT_HUB_TIMEOUT`` in seconds; one clear line when it is not a positive number."""
    text = os.environ.get("SAE_KIT_HUB_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise SaeKitError(f"SAE_KIT_HUB_TIMEOUT must be a positive number of seconds, got {text!r}")
    return value


class HubTimeout(Exception):  # noqa: N818 (named as the HTTP clients name theirs)
    """A Hub request got no answer within the timeout, and is being sent again: give up."""


def configure_hub() -> float:
    """Bound every huggingface_hub request by ``hub_timeout()``; returns that timeout.

    Called before each command's first Hub request (it reads the environment each time).
    huggingface_hub retries a request that timed out five more times with growing pauses; a
    request that already waited the whole timeout is not sent again (HubTimeout), so a Hub that
    never answers costs one timeout, not six plus half a minute of pauses.
    """
    from huggingface_hub import constants, get_session, set_client_factory
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # its per-retry warnings: the one error line says it all
    timeout = hub_timeout()
    for name in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        if not os.environ.get(name):  # the user's own setting wins
            setattr(constants, name, timeout)
    session = get_session()  # huggingface_hub's client: keep its own hooks (offline guard, ids)
    client_cls = type(session)
    hooks = {kind: [h for h in found if not hasattr(h, "hub_timeout")]
             for kind, found in session.event_hooks.items()}
    waiting: dict[tuple[str, str], float] = {}  # request -> when it was sent, until answered

    def on_request(request: Any) -> None:
        key = (request.method, str(request.url))
        sent = waiting.get(key)
        if sent is not None and time.monotonic() - sent >= 0.9 * timeout:
            raise HubTimeout(f"{request.method} {request.url}")
        waiting[key] = time.monotonic()
        phases = request.extensions.get("timeout") or {}  # some requests pass None: no limit
        request.extensions["timeout"] = {
            phase: phases.get(phase) or timeout for phase in ("connect", "read", "write", "pool")
        }

    def on_response(response: Any) -> None:
        waiting.pop((response.request.method, str(response.request.url)), None)

    on_request.hub_timeout = on_response.hub_timeout = timeout  # type: ignore[attr-defined]

    def client_factory() -> Any:
        return client_cls(follow_redirects=True, timeout=timeout, event_hooks={
            "request": [*hooks.get("request", []), on_request],
            "response": [*hooks.get("response", []), on_response]})

    set_client_factory(client_factory)  # also for clients made after an error closed this one
    return timeout


def hub_problem(timeout: float = 3.0) -> str | None:
    """Why the Hub endpoint cannot be used now, in a few words; None when it answers.

    One HTTP request through huggingface_hub's own client, so HTTPS_PROXY / HTTP_PROXY /
    NO_PROXY are honoured exactly as they are for the real requests.
    """
    from huggingface_hub import get_session

    timeout = min(timeout, configure_hub())
    endpoint = hub_endpoint()
    try:
        get_session().head(endpoint + "/", timeout=timeout, follow_redirects=False)
    except Exception as exc:  # any transport failure (DNS, refused, proxy, TLS, timeout)
        if any("Timeout" in cls.__name__ for cls in type(exc).__mro__):
            return f"the Hub at {endpoint} did not answer within {timeout:g} s"
        return f"no network: cannot reach {endpoint}"
    return None


def hub_reachable(timeout: float = 3.0) -> bool:
    """True if the Hub endpoint answers an HTTP request within ``timeout`` seconds."""
    return hub_problem(timeout) is None
