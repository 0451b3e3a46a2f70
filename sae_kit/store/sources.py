"""Where an SAE comes from: a local SAE directory, a run directory, or the Hugging Face Hub.

Commands that take an SAE or a run call :func:`resolve_sae_source` once and then work on the
local directory it returns::

    from sae_kit.store.sources import resolve_sae_source
    run_dir = resolve_sae_source("alice/gpt2-e2e-saes")   # or "runs/gpt2-e2e-..."

An existing local path always wins; anything else of the form ``namespace/name[/subfolder]`` is
fetched from the Hub (``HF_ENDPOINT``) into the Hugging Face cache, or into ``out``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sae_kit.architectures.base import SAE
from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.network import hub_ref
from sae_kit.store.jsonio import read_json
from sae_kit.store.sae_dir import CONFIG, is_sae_dir, load_sae_dir, sae_dirs


def resolve_sae_source(source: str | Path, revision: str | None = None,
                       out: str | Path | None = None) -> Path:
    """A local directory for ``source``: the path itself, or the downloaded Hub snapshot.

    For a Hub id the result is a run directory (``namespace/name``) or an SAE directory
    (``namespace/name/blocks.6.hook_resid_pre``). Files in the cache are shared and read-only:
    write outputs elsewhere, or pass ``out`` to download into a directory of your own.
    """
    path = Path(source).expanduser()
    text = str(source)
    if path.exists():
        if revision is not None:
            raise SaeKitError(f"--revision applies to Hub repos, but {text!r} is a local path")
        return path
    from sae_kit.store.hub import download

    ref = hub_ref(text)
    if ref is None:
        raise SaeKitError(f"{text!r} does not exist (not a local directory, and not a Hub id "
                          "like namespace/name[/subfolder])")
    return download(ref, revision=revision, out=out)


def pick_sae(path: Path, hook_point: str | None, name: str | None = None
             ) -> tuple[HookPoint, Path]:
    """The one SAE directory that ``path`` (an SAE directory, or a run directory) and
    ``hook_point`` (None: the run's only SAE) name, and its hook point; ``name`` (what the user
    typed, by default ``path``) is what the errors call it."""
    name = str(path) if name is None else name
    if is_sae_dir(path):
        config = read_json(path / CONFIG)  # not a dict: loading it says what is wrong
        found = HookPoint.parse(config.get("hook_point", path.name) if isinstance(config, dict)
                                else path.name)
        check_hook_point(name, found, hook_point)
        return found, path
    dirs = sae_dirs(path)
    if hook_point is None:
        if len(dirs) != 1:
            raise SaeKitError(f"{name!r} holds {len(dirs)} SAEs ({_names(dirs)}); name the hook "
                              "point (--hook-point)")
        return next(iter(dirs.items()))
    wanted = HookPoint.parse(hook_point)
    if wanted not in dirs:
        raise SaeKitError(f"{name!r} has no SAE at {wanted.name}; it has {_names(dirs)}")
    return wanted, dirs[wanted]


def check_hook_point(name: str, found: HookPoint, hook_point: str | None) -> None:
    """One line when a single SAE (at ``found``) is asked for another ``hook_point``."""
    if hook_point is not None and HookPoint.parse(hook_point) != found:
        raise SaeKitError(f"{name!r} is the SAE at {found.name}, not {hook_point}")


def _names(dirs: dict[HookPoint, Path]) -> str:
    return ", ".join(hp.name for hp in dirs)


def load_sae(source: str | Path, hook_point: str | None = None, *, revision: str | None = None,
             device: str | torch.device = "cpu") -> tuple[SAE, dict]:
    """Load one SAE from a local SAE directory, a run directory + hook point, or the Hub.

    ``source`` is a path or a Hub id (``alice/gpt2-e2e-saes`` or
    ``alice/gpt2-e2e-saes/blocks.6.hook_resid_pre``). ``hook_point`` picks the SAE of a run; it
    may be left out when the run holds exactly one. Returns the SAE and its config.
    """
    if hook_point is not None:
        HookPoint.parse(hook_point)
        if hub_ref(source) is not None:
            source = f"{str(source).rstrip('/')}/{hook_point}"  # fetch only that SAE
            hook_point = None
    path = resolve_sae_source(source, revision=revision)
    return load_sae_dir(pick_sae(path, hook_point, str(source))[1], device)
