"""Publishing a run directory on the Hugging Face Hub, and fetching SAEs back from it.

    sae-kit push runs/gpt2-e2e-... alice/gpt2-e2e-saes      # one commit: SAEs, config, card
    sae-kit pull alice/gpt2-e2e-saes/blocks.6.hook_resid_pre

A pushed repo is laid out exactly like a run directory (``config.json``, one folder per hook
point with ``sae.safetensors`` + ``config.json``) plus the model card ``README.md``, so a pulled
snapshot is a run directory again. The endpoint is ``HF_ENDPOINT``, read when a command runs; the
token comes from huggingface_hub (``HF_TOKEN``, then the saved login) and is only ever handed to
huggingface_hub: it is never printed and never written into a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sae_kit.errors import SaeKitError
from sae_kit.network import (
    HubRef,
    configure_hub,
    hub_endpoint,
    hub_offline,
    hub_problem,
    hub_timeout,
)
from sae_kit.store import run_dir as layout
from sae_kit.store.run_dir import RunDir
from sae_kit.version import __version__

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from sae_kit.store.model_card import BaseModel, CardInputs

CARD = "README.md"


def hub_token() -> str:
    """The token huggingface_hub would use: HF_TOKEN, then the saved `hf auth login`."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise SaeKitError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (pushing needs a token "
            "with write access)"
        )
    return token


@dataclass
class Upload:
    """Everything one push sends, in one commit: repo path -> local file or bytes."""

    files: dict[str, Path | bytes]
    card: str
    hook_points: list[str]
    card_inputs: CardInputs

    def with_base_model(self, base: BaseModel) -> Upload:
        """The same upload with the card's base model and license as the Hub knows them."""
        card = self.card_inputs.render(base)
        return replace(self, files={**self.files, CARD: card.encode()}, card=card)


def plan_upload(run_dir: str | Path, repo_id: str, license: str | None = None) -> Upload:
    """Check the run directory and build the file list and model card; touches no network.

    Each SAE folder holds sae-kit's files (``sae.safetensors`` + ``config.json``, exact) and,
    where its architecture has an SAELens equivalent, SAELens' (``sae_weights.safetensors`` +
    ``cfg.json``), so ``SAE.from_pretrained(repo_id, hook_point)`` loads it too.
    """
    from sae_kit.store.model_card import CardInputs, read_evaluation
    from sae_kit.store.sae_dir import CONFIG, WEIGHTS, load_sae_dir, sae_dirs  # imports torch
    from sae_kit.store.saelens import ARCHITECTURES, saelens_files

    run = RunDir(run_dir)
    dirs = sae_dirs(run.path)  # one clear line when there is no SAE
    record = run.read()  # a broken config.json is refused before anything is planned
    configs = {hp.name: load_sae_dir(path)[1] for hp, path in dirs.items()}  # refuse broken SAEs
    evaluation = read_evaluation(run.eval)  # written by `sae-kit eval`; goes into the card
    inputs = CardInputs(repo_id, record, configs, evaluation, license)
    files: dict[str, Path | bytes] = {layout.CONFIG: run.config}
    for hp, path in dirs.items():
        files[f"{hp.name}/{WEIGHTS}"] = path / WEIGHTS
        files[f"{hp.name}/{CONFIG}"] = path / CONFIG
        if configs[hp.name]["architecture"] in ARCHITECTURES:
            for name, data in saelens_files(path).items():
                files[f"{hp.name}/{name}"] = data
    if record.config.lora:  # a --lora run's adapters, as peft saves them
        files.update({f"{layout.LORA}/{f.name}": f for f in sorted(run.lora.glob("adapter_*"))})
        if f"{layout.LORA}/adapter_model.safetensors" not in files:
            raise SaeKitError(f"{str(run.lora)!r} holds no adapters (adapter_model.safetensors): "
                              "the --lora run did not finish; resume it first")
    if evaluation is not None:
        files[layout.EVAL] = run.eval
    card = inputs.render(None)
    files[CARD] = card.encode()
    return Upload(files, card, list(configs), inputs)


def refuse_token_in_files(upload: Upload, token: str) -> None:
    """A token pasted into a config must not be published with it."""
    needle = token.encode()
    for name, src in upload.files.items():
        data = src if isinstance(src, bytes) else src.read_bytes()
        if needle in data:
            raise SaeKitError(f"refusing to push: {name} contains your Hugging Face token; "
                              "remove it from the file first")


def _check_online() -> str:
    endpoint = hub_endpoint()
    configure_hub()
    if hub_offline():
        raise SaeKitError("HF_HUB_OFFLINE is set: unset it to reach the Hugging Face Hub")
    problem = hub_problem()
    if problem:
        raise SaeKitError(f"{problem}; check your connection or HF_ENDPOINT")
    return endpoint


def push(upload: Upload, ref: HubRef, token: str, private: bool = False,
         revision: str | None = None) -> tuple[str, Upload]:
    """Create the repo (and branch) if needed and upload everything in one commit.

    Returns the commit URL and the upload as sent (its card names the base model as the Hub
    knows it). Files are only written by the final commit, so a failure at any
    earlier step leaves nothing uploaded. The same commit deletes what an earlier push left that
    this run lacks (``STALE``: other SAE folders, an old eval.json): they would make the repo
    disagree with its card and config; anything else in the repo is left alone.
    """
    from huggingface_hub import HfApi

    refuse_token_in_files(upload, token)
    endpoint = _check_online()
    api = HfApi(endpoint=endpoint, token=token, library_name="sae-kit",
                library_version=__version__)
    with tempfile.TemporaryDirectory() as staging, _quiet_retries(), \
            hub_errors(endpoint, ref, revision, token):
        upload = upload.with_base_model(find_base_model(api, upload.card_inputs.model))
        _stage(upload, Path(staging))
        api.create_repo(ref.repo_id, private=private or None, exist_ok=True)  # None: Hub default
        if revision and revision != "main":
            api.create_branch(ref.repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=ref.repo_id, folder_path=staging, revision=revision,
            delete_patterns=STALE,
            commit_message=f"Upload {_count(len(upload.hook_points), 'SAE')} with sae-kit "
                           f"{__version__}",
        )
    return str(info.commit_url), upload


STALE = [f"{layout.SAE_DIR_PREFIX}*", layout.EVAL, f"{layout.LORA}/*"]
"""What a push replaces wholesale: the SAE folders (hook-point names start so), eval.json and
a --lora run's adapters."""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def find_base_model(api: HfApi, model: str | None) -> BaseModel:
    """The model's canonical Hub id (``gpt2`` -> ``openai-community/gpt2``) and its license.

    The Hub redirects legacy ids; ``base_model`` metadata must name the repo itself. A model the
    Hub does not know (a local path, a private repo of someone else) gives an empty answer.
    """
    from huggingface_hub import errors

    from sae_kit.builtin import BUILTIN_MODEL_NAME
    from sae_kit.store.model_card import BaseModel, hub_id_or_none

    model_id = hub_id_or_none(model, BUILTIN_MODEL_NAME)
    if model_id is None:
        return BaseModel(None, None)
    try:
        info = api.model_info(model_id)
    except (errors.RepositoryNotFoundError, errors.GatedRepoError):
        return BaseModel(None, None)
    license = getattr(info.card_data, "license", None) if info.card_data else None
    if not license:  # the Hub also states it as a tag
        license = next((t.split(":", 1)[1] for t in info.tags or [] if t.startswith("license:")),
                       None)
    return BaseModel(info.id, license if isinstance(license, str) else None)


@contextlib.contextmanager
def _quiet_retries() -> Iterator[None]:
    """huggingface_hub logs each retry of a failed request; the user sees one line at the end."""
    from huggingface_hub.utils import logging as hf_logging

    logger = hf_logging.get_logger()
    level = logger.level
    logger.setLevel(hf_logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _stage(upload: Upload, folder: Path) -> None:
    """The upload as a folder: files linked (or copied) in, generated ones written."""
    for name, src in upload.files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, bytes):
            target.write_bytes(src)
            continue
        try:
            os.link(src, target)
        except OSError:  # another file system
            shutil.copyfile(src, target)


def download(ref: HubRef, revision: str | None = None, out: str | Path | None = None) -> Path:
    """Fetch a repo (or one folder of it) into ``out`` or the Hugging Face cache.

    Returns the local directory of ``ref``: a run directory for a whole repo, an SAE directory
    for ``repo/subfolder``. Without network, a copy already in the cache is used.
    """
    from huggingface_hub import HfApi, snapshot_download

    endpoint = hub_endpoint()
    configure_hub()
    problem = "HF_HUB_OFFLINE is set" if hub_offline() else hub_problem()
    offline = problem is not None
    patterns = [f"{ref.subfolder}/*"] if ref.subfolder else None
    with hub_errors(endpoint, ref, revision, None, why_offline=problem):
        if ref.subfolder and not offline:  # say "no such folder" before fetching nothing
            api = HfApi(endpoint=endpoint, library_name="sae-kit", library_version=__version__)
            if not any(api.list_repo_tree(ref.repo_id, ref.subfolder, revision=revision)):
                raise SaeKitError(_no_folder(ref, revision))
        root = snapshot_download(
            ref.repo_id, revision=revision, allow_patterns=patterns,
            local_dir=str(out) if out is not None else None, endpoint=endpoint,
            local_files_only=offline, library_name="sae-kit", library_version=__version__,
        )
    path = Path(root) / ref.subfolder if ref.subfolder else Path(root)
    if not path.is_dir():
        raise SaeKitError(_no_folder(ref, revision))
    return path


def _no_folder(ref: HubRef, revision: str | None) -> str:
    at = f" at revision {revision!r}" if revision else ""
    return f"{ref.repo_id} has no folder {ref.subfolder!r}{at}"


@contextlib.contextmanager
def hub_errors(endpoint: str, ref: HubRef, revision: str | None,
               token: str | None, why_offline: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into one line; the token is scrubbed from it."""
    from huggingface_hub import errors

    try:
        yield
    except errors.LocalEntryNotFoundError as exc:  # also an EntryNotFoundError: check it first
        # huggingface_hub falls back to the cache on any failed call and chains that failure:
        # a Hub that answered 500 or stalled is not "no network".
        why = (_why_not_fetched(exc.__cause__, endpoint) or why_offline
               or f"no network: cannot reach {endpoint}")
        raise SaeKitError(_scrub(f"{why}, and {ref} is not in the local Hugging Face cache",
                                 token)) from None
    except errors.RevisionNotFoundError:
        raise SaeKitError(f"{ref.repo_id} has no revision {revision!r} at {endpoint}") from None
    except errors.GatedRepoError:
        raise SaeKitError(f"{ref.repo_id} is gated: accept its terms on the Hub with the account "
                          "of your token") from None
    except errors.RepositoryNotFoundError:
        raise SaeKitError(f"repo {ref.repo_id!r} not found at {endpoint} (or your token cannot "
                          "see it)") from None
    except errors.EntryNotFoundError:
        raise SaeKitError(f"{ref} not found at {endpoint}") from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        hint = {401: "; check your token", 403: "; your token lacks write access to it"}
        raise SaeKitError(_scrub(f"the Hub at {endpoint} refused the request for {ref.repo_id} "
                                 f"(HTTP {status}: {_first_line(exc)}){hint.get(status, '')}",
                                 token)) from None
    except (OSError, ValueError) as exc:  # e.g. a server at HF_ENDPOINT that is not a Hub
        raise SaeKitError(_scrub(f"talking to the Hub at {endpoint} failed: "
                                 f"{type(exc).__name__}: {_first_line(exc)}", token)) from None
    except Exception as exc:  # the HTTP client's own transport errors (httpx, requests)
        if _is_timeout(exc):
            raise SaeKitError(f"the Hub at {endpoint} did not answer within {hub_timeout():g} s; "
                              "try again later, or allow longer with SAE_KIT_HUB_TIMEOUT=SECONDS"
                              ) from None
        if not _is_transport_error(exc):
            raise
        raise SaeKitError(_scrub(f"no network: cannot reach {endpoint} "
                                 f"({type(exc).__name__}: {_first_line(exc)})", token)) from None


def _why_not_fetched(cause: BaseException | None, endpoint: str) -> str | None:
    """What a Hub that was reached did wrong, in a few words; None when it was not reached."""
    from huggingface_hub import errors

    if isinstance(cause, errors.HfHubHTTPError) and cause.response is not None:
        return (f"the Hub at {endpoint} answered HTTP {cause.response.status_code} "
                f"({_first_line(cause)}); try again later")
    if cause is not None and _is_timeout(cause):
        return (f"the Hub at {endpoint} did not answer within {hub_timeout():g} s (try again "
                "later, or allow longer with SAE_KIT_HUB_TIMEOUT=SECONDS)")
    return None


def _is_timeout(exc: BaseException) -> bool:
    return any("Timeout" in cls.__name__ for cls in type(exc).__mro__)


def _is_transport_error(exc: BaseException) -> bool:
    # huggingface_hub has used requests, httpx and httpx2; match their transport errors by name.
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"TransportError", "ConnectionError", "TimeoutException", "ConnectError",
                         "RequestException"})


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _scrub(message: str, token: str | None) -> str:
    return message.replace(token, "<token>") if token else message

