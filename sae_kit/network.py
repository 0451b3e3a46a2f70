"""The Hugging Face Hub as a source: local path or Hub id, the endpoint, and a reachability check.

:func:`is_local_ref` is the one rule, used for models, datasets, SAEs and runs alike, deciding
whether a name is a local path or a Hub id. :func:`hub_reachable` is a fast check so "no
network" is one quick line: without it, huggingface_hub retries each request for half a minute
and logs every retry.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse


def is_local_ref(ref: str | os.PathLike[str]) -> bool:
    """True when ``ref`` names a local path, not a Hub id: it exists, or is written as a path.

    ``./x``, ``/x`` and ``~/x`` are paths even when missing (so the error says "does not
    exist", not "not found on the Hub"); ``alice/data`` is a Hub id unless such a directory
    exists here.
    """
    text = os.fspath(ref)
    return text.startswith((".", "/", "~")) or Path(text).expanduser().exists()


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_reachable(timeout: float = 3.0) -> bool:
    """True if a TCP connection to the Hub endpoint opens within ``timeout`` seconds."""
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False
