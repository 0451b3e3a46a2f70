"""Training checkpoints: written atomically, read without pickle, the last K kept.

A checkpoint is a directory ``RUN_DIR/checkpoints/step-000042/`` holding

- ``tensors.safetensors``: every tensor of the training state (SAE weights, Adam moments, RNG
  states), keyed by its path in the state tree, e.g. ``optimizer/state/0/exp_avg``;
- ``state.json``: the counters (step, tokens, data windows consumed, metrics-log length), the
  rest of the state tree (scheduler, optimizer settings, Python RNG) with a placeholder for each
  tensor, and the SHA-256 of the tensor file, so a corrupt or truncated file is caught on load.

It is written into a hidden temporary directory and renamed into place, so a crash (even
``kill -9``) leaves either the whole checkpoint or none. Loading uses safetensors and JSON only:
a checkpoint cannot run code. What goes into the tree is the run's business
(:func:`sae_kit.train.run.capture`); this module only stores and checks trees.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from sae_kit.errors import SaeKitError
from sae_kit.store.files import as_umask_says

FORMAT = "sae-kit-checkpoint/2"  # /2: state.json carries a checksum of itself
TENSORS = "tensors.safetensors"
STATE = "state.json"
_NAME = re.compile(r"^step-(\d+)$")
_TENSOR = "__tensor__"  # placeholder for a tensor in the JSON tree
_INT_KEYS = "__int_keys__"  # a dict whose keys are ints (optimizer state is keyed by index)


@dataclass
class TrainState:
    """Where training stands; everything else follows from the config and these."""

    step: int = 0
    """Optimizer steps done."""
    tokens: int = 0
    """Tokens trained on, over all ranks."""
    windows: int = 0
    """Data windows consumed, over all ranks: resume skips exactly these."""
    metrics_offset: int = 0
    """Length in bytes of metrics.jsonl at this step: resume cuts what was logged after it."""


@dataclass
class Checkpoint:
    path: Path
    counters: TrainState
    tree: dict[str, Any]


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint directories under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save(root: Path, counters: TrainState, tree: dict[str, Any], keep: int | None) -> Path:
    """Write one checkpoint atomically, then delete all but the newest ``keep`` (None: keep
    all; a group prunes only once every member has saved, see ``prune``).

    A failed write (disk full, no permission) raises SaeKitError and leaves the earlier
    checkpoints as they were.
    """
    from safetensors import SafetensorError

    final = root / checkpoint_name(counters.step)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}."))
        as_umask_says(tmp)
    except OSError as exc:
        raise _unwritable(final, exc) from None
    try:
        _write(tmp, counters, tree)
        if final.exists():  # the same step saved again (a finished run resumed): newest wins
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync(root)
    except (OSError, SafetensorError) as exc:  # safetensors wraps I/O errors in its own type
        shutil.rmtree(tmp, ignore_errors=True)
        raise _unwritable(final, exc) from None
    if keep is not None:
        prune(root, keep)
    return final


def _write(directory: Path, counters: TrainState, tree: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(tree, [], tensors)
    save_file(tensors, str(directory / TENSORS), metadata={"format": FORMAT})
    state = {"format": FORMAT, "counters": asdict(counters), "tree": encoded,
             "sha256": {TENSORS: _sha256(directory / TENSORS)}}
    state["sha256"][STATE] = _state_digest(state)
    (directory / STATE).write_text(json.dumps(state, indent=1) + "\n")
    for name in (TENSORS, STATE):
        as_umask_says(directory / name)  # safetensors writes its files 0600
        _fsync(directory / name)


def _unwritable(path: Path, exc: Exception) -> SaeKitError:
    reason = getattr(exc, "strerror", None) or str(exc)
    return SaeKitError(
        f"could not write checkpoint {str(path)!r} ({reason}); the earlier "
        "checkpoints are intact: free disk space, then resume with `sae-kit train --resume`"
    )


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints, and any half-written one."""
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".step-*"):  # half-written by a process that was killed
        shutil.rmtree(stale, ignore_errors=True)


def load(path: Path) -> Checkpoint:
    """Read one checkpoint; a corrupt or truncated one raises SaeKitError naming the fault."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = json.loads((path / STATE).read_text())
    except FileNotFoundError:
        raise _corrupt(path, f"{STATE} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _corrupt(path, f"{STATE} is not valid JSON: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise _corrupt(path, f"format is {found!r}, expected {FORMAT!r}")
    sums = state.get("sha256")
    if not isinstance(sums, dict) or sums.get(STATE) != _state_digest(state):
        raise _corrupt(path, f"{STATE} does not match its checksum (edited or damaged)")
    tensor_file = path / TENSORS
    if not tensor_file.exists():
        raise _corrupt(path, f"{TENSORS} is missing")
    if _sha256(tensor_file) != sums.get(TENSORS):
        raise _corrupt(path, f"{TENSORS} does not match its checksum (truncated or altered)")
    try:
        tensors = load_file(str(tensor_file))
        tree = _decode(state["tree"], tensors)
        counters = _counters(state["counters"])
    except (SafetensorError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from None
    return Checkpoint(path=path, counters=counters, tree=tree)


def _state_digest(state: dict[str, Any]) -> str:
    """SHA-256 of state.json's content without its own checksum, in one canonical form."""
    sums = state.get("sha256")
    rest = {**state, "sha256": {k: v for k, v in sums.items() if k != STATE}
            if isinstance(sums, dict) else sums}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def _counters(saved: Any) -> TrainState:
    """Whole, non-negative numbers only: a float or a negative count is damage, not a value."""
    values = {f.name: saved[f.name] for f in fields(TrainState)}
    bad = [f"{k}={v!r}" for k, v in values.items()
           if not isinstance(v, int) or isinstance(v, bool) or v < 0]
    if bad:
        raise ValueError(f"counters must be whole numbers >= 0: {', '.join(bad)}")
    return TrainState(**values)


def load_latest(root: Path, accept: Callable[[Checkpoint], None] | None = None
                ) -> tuple[Checkpoint, list[tuple[Path, str]]]:
    """The newest usable checkpoint, and the newer ones skipped as corrupt (path, reason).

    A checkpoint is usable when it reads back intact and ``accept`` (which raises SaeKitError
    for one that does not fit the run, e.g. by putting it into the run) takes it. Raises
    SaeKitError when there is none, or when every kept checkpoint is unusable.
    """
    candidates = list_checkpoints(root)
    if not candidates:
        raise SaeKitError(
            f"no checkpoint in {str(root)!r}: this run saved none yet (checkpoints are written "
            "every --save-every steps); start it again without --resume"
        )
    skipped: list[tuple[Path, str]] = []
    for path in reversed(candidates):
        try:
            found = load(path)
            if accept:
                accept(found)
            return found, skipped
        except SaeKitError as exc:
            skipped.append((path, str(exc)))
    reasons = "; ".join(reason for _, reason in skipped)
    raise SaeKitError(f"every checkpoint in {str(root)!r} is unreadable: {reasons}")


def quarantine(path: Path) -> Path:
    """Rename a corrupt checkpoint out of the way (kept for inspection, never loaded or pruned)."""
    target = path.with_name(path.name + ".corrupt")
    if target.exists():
        shutil.rmtree(target)
    os.replace(path, target)
    return target


def _corrupt(path: Path, reason: str) -> SaeKitError:
    return SaeKitError(f"checkpoint {str(path)!r} is corrupt: {reason}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    # A rename is only durable once the data and the directory entry reach the disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode(tree: Any, path: list[str], tensors: dict[str, torch.Tensor]) -> Any:
    """Tensors out to ``tensors`` (keyed by their path), the rest to a JSON-able tree."""
    if isinstance(tree, torch.Tensor):
        key = "/".join(path)
        tensors[key] = tree.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(tree, dict):
        items = {str(k): _encode(v, [*path, str(k)], tensors) for k, v in tree.items()}
        if all(isinstance(k, str) for k in tree):
            return items
        if all(isinstance(k, int) for k in tree):
            return {_INT_KEYS: items}
        raise TypeError(f"cannot checkpoint a dict with mixed keys at {'/'.join(path)!r}")
    if isinstance(tree, (list, tuple)):
        return [_encode(v, [*path, str(i)], tensors) for i, v in enumerate(tree)]
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot checkpoint a {type(tree).__name__} at {'/'.join(path)!r}")


def _decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {_TENSOR}:
            return tensors[tree[_TENSOR]]
        if set(tree) == {_INT_KEYS}:
            return {int(k): _decode(v, tensors) for k, v in tree[_INT_KEYS].items()}
        return {k: _decode(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_decode(v, tensors) for v in tree]
    return tree
