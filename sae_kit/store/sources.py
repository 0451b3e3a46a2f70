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
from sae_kit.store.sae_dir import WEIGHTS, sae_dirs
from sae_kit.store.sae_dir import load_sae as load_sae_dir


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


def is_sae_dir(path: Path) -> bool:
    return (path / WEIGHTS).is_file()


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
    if is_sae_dir(path):
        if hook_point is not None and path.name != hook_point:
            raise SaeKitError(f"{str(path)!r} is one SAE ({path.name}), not a run with "
                              f"{hook_point}")
        return load_sae_dir(path, device)
    dirs = {hp.name: p for hp, p in sae_dirs(path).items()}
    if hook_point is None:
        if len(dirs) != 1:
            raise SaeKitError(f"{str(source)!r} holds {len(dirs)} SAEs ({', '.join(dirs)}); "
                              "name the hook point")
        hook_point = next(iter(dirs))
    if hook_point not in dirs:
        raise SaeKitError(f"{str(source)!r} has no SAE at {hook_point}; it has "
                          f"{', '.join(dirs)}")
    return load_sae_dir(dirs[hook_point], device)
