"""The binary classification tasks of sparse probing, read from their files.

The tasks are those of Kantamneni et al. 2025 ("Are Sparse Autoencoders Useful? A Case Study in
Sparse Probing", arXiv 2502.16681), shipped as data files by the ``sae-probes`` package
(``pip install 'sae-kit[probes]'``): ``data/cleaned_data/NN_name.csv.zst`` with columns
``prompt`` and ``target``, and ``data/probing_datasets_MASTER.csv.zst`` saying which are binary.
sae-kit reads the files directly - sae-probes itself is never imported (it would pull in
TransformerLens), so the prompts go through sae-kit's own model adapters. ``--tasks-dir DIR``
takes any directory of such CSV files (``.csv`` or ``.csv.zst``) instead.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import random
from dataclasses import dataclass
from pathlib import Path

from sae_kit.errors import SaeKitError

EXTRA = "pip install 'sae-kit[probes]'"
MASTER = "probing_datasets_MASTER.csv.zst"
_SUFFIXES = (".csv.zst", ".csv")


@dataclass(frozen=True)
class ProbeTask:
    name: str
    prompts: list[str]
    labels: list[int]
    """0 or 1 per prompt: the task's two targets in sorted order."""
    classes: tuple[str, str]


def tasks_dir(given: str | None) -> Path:
    """``--tasks-dir``, else the data sae-probes ships; one line naming the extra if neither."""
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_dir() or not task_names(path):
            raise SaeKitError(f"--tasks-dir {given!r}: no directory of task files (NAME.csv or "
                              "NAME.csv.zst with columns prompt,target)")
        return path
    spec = importlib.util.find_spec("sae_probes")
    if spec is None or not spec.submodule_search_locations:
        raise SaeKitError("sparse probing reads the sae-probes tasks, which are not installed: "
                          f"{EXTRA} (or pass --tasks-dir DIR of CSV files with columns "
                          "prompt,target)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "cleaned_data"


def task_names(directory: Path) -> list[str]:
    """The tasks in ``directory``; with sae-probes' list beside it, its binary ones only."""
    names = sorted(_stem(p) for p in directory.iterdir() if p.name.endswith(_SUFFIXES))
    master = directory.parent / MASTER
    if master.is_file():
        binary = {Path(row["Dataset save name"]).name.removesuffix(".csv")
                  for row in _rows(master) if row.get("Data type") == "Binary Classification"}
        names = [n for n in names if n in binary]
    return names


def read_task(directory: Path, name: str, max_examples: int, seed: int = 0) -> ProbeTask:
    """Up to ``max_examples`` prompts of a task (a seeded random subset) and their labels."""
    files = [directory / f"{name}{suffix}" for suffix in _SUFFIXES]
    found = [f for f in files if f.is_file()]
    if not found:
        raise SaeKitError(f"no probing task {name!r} in {str(directory)!r}; tasks there: "
                          f"{_some(task_names(directory))}")
    rows = [r for r in _rows(found[0]) if (r.get("prompt") or "").strip()]
    if rows and not {"prompt", "target"} <= set(rows[0]):
        raise SaeKitError(f"{str(found[0])!r} has no prompt and target columns")
    classes = sorted({r["target"] for r in rows})
    if len(classes) != 2:
        raise SaeKitError(f"task {name!r} has {len(classes)} classes; sparse probing takes "
                          "binary tasks")
    random.Random(seed).shuffle(rows)
    rows = rows[:max_examples]
    return ProbeTask(name, [r["prompt"] for r in rows],
                     [classes.index(r["target"]) for r in rows], (classes[0], classes[1]))


def _rows(path: Path) -> list[dict[str, str]]:
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 28))  # news articles are long
    return list(csv.DictReader(io.StringIO(_text(path))))


def _text(path: Path) -> str:
    if not path.name.endswith(".zst"):
        return path.read_text(encoding="utf-8")
    try:
        import zstandard
    except ImportError:
        raise SaeKitError(f"{str(path)!r} is zstd-compressed and zstandard is not installed: "
                          f"{EXTRA}") from None
    with path.open("rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read().decode("utf-8")


def _stem(path: Path) -> str:
    return next(path.name.removesuffix(s) for s in _SUFFIXES if path.name.endswith(s))


def _some(names: list[str]) -> str:
    return ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
