"""Where a fine-tune starts: any existing SAE, read as sae-kit SAEs (``--init-from SOURCE``).

    start = read_start("runs/local-20261201-120000")      # or an SAE dir, SAELens, sparsify, Hub id
    start.saes        # {HookPoint: SAE}, CPU, fp32, computing the source's codes
    start.record      # what config.json records: source, format, path, sha256 of each weight file

Formats, told apart by their files:

- sae-kit: an SAE directory (``config.json`` + ``sae.safetensors``) or a run directory
  (``blocks.*/`` of them);
- SAELens: ``cfg.json`` + ``sae_weights.safetensors`` (:mod:`sae_kit.store.saelens`);
- sparsify: ``cfg.json`` + ``sae.safetensors``, or a directory of them, one per hook point
  (:mod:`sae_kit.store.sparsify`);
- a Hub id (``namespace/name[/subfolder]``), fetched by the pull path into the cache, then any of
  the above.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sae_kit.architectures.base import SAE
from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.record.run_record import StartRecord
from sae_kit.store import saelens, sparsify
from sae_kit.store.sae_dir import CONFIG, WEIGHTS, load_sae_dir, sae_dirs
from sae_kit.store.sources import resolve_sae_source

FORMATS_EXPECTED = (
    "an sae-kit SAE directory (config.json + sae.safetensors) or run directory (blocks.*/ "
    "of them), an SAELens directory (cfg.json + sae_weights.safetensors), a sparsify "
    "directory (cfg.json + sae.safetensors, or one such folder per hook point), or a Hub id"
)


@dataclass(frozen=True)
class StartingPoint:
    """The SAEs a fine-tune starts from, and where they came from."""

    record: StartRecord
    """What the run's record keeps (``resolved.init_from`` in config.json): source as given,
    format (sae-kit, saelens, sparsify), the local directory read, sha256 of each weight file."""
    saes: dict[HookPoint, SAE]
    configs: dict[HookPoint, dict[str, Any]]
    """What the source says of each SAE (model, loss, ...), as far as its format records it."""

    @property
    def source(self) -> str:
        return self.record.source

    @property
    def format(self) -> str:
        return self.record.format


def read_start(source: str, hook_points: list[HookPoint] | None = None) -> StartingPoint:
    """Read ``source``; with ``hook_points`` given, only those of its SAEs (all must exist)."""
    path = resolve_sae_source(source)
    found = _read_any(path, hook_points)
    if found is None:
        raise SaeKitError(f"--init-from {source!r} is none of the formats sae-kit reads; "
                          f"expected {FORMATS_EXPECTED}")
    fmt, saes, configs, files = found
    if hook_points:
        missing = [hp.name for hp in hook_points if hp not in saes]
        if missing:
            raise SaeKitError(f"--init-from {source!r} has no SAE at {', '.join(missing)}; it "
                              f"has {', '.join(hp.name for hp in saes)} (leave --hook-point "
                              "out to fine-tune all of them)")
        saes = {hp: saes[hp] for hp in hook_points}
    names = {sae.name for sae in saes.values()}
    if len(names) > 1:
        raise SaeKitError(f"--init-from {source!r} mixes architectures ({', '.join(names)}); "
                          "pick SAEs of one with --hook-point")
    sha = {hp.name: _sha256(files[hp]) for hp in saes}
    return StartingPoint(StartRecord(source, fmt, str(path), sha), dict(sorted(saes.items())),
                         {hp: configs[hp] for hp in saes})


Found = tuple[str, dict[HookPoint, SAE], dict[HookPoint, dict], dict[HookPoint, Path]]


def _read_any(path: Path, hook_points: list[HookPoint] | None) -> Found | None:
    if (path / CONFIG).is_file() and (path / WEIGHTS).is_file():  # one sae-kit SAE
        sae, config = load_sae_dir(path)
        hp = HookPoint.parse(config["hook_point"])
        return "sae-kit", {hp: sae}, {hp: config}, {hp: path / WEIGHTS}
    if (path / saelens.CFG).is_file() and (path / saelens.WEIGHTS).is_file():
        sae, hp, extra, output = saelens.read_saelens(path)
        if output is not None:
            raise SaeKitError(f"--init-from {str(path)!r} is an SAELens transcoder (its output "
                              f"replaces {output}); --init-from starts SAEs, not transcoders")
        return "saelens", {hp: sae}, {hp: extra}, {hp: path / saelens.WEIGHTS}
    if sparsify.is_sparsify_dir(path):
        one = hook_points[0] if hook_points and len(hook_points) == 1 else None
        sae, hp, extra = sparsify.read_sparsify(path, one)
        return "sparsify", {hp: sae}, {hp: extra}, {hp: path / sparsify.WEIGHTS}
    if not path.is_dir():
        return None
    if any((p / CONFIG).is_file() for p in path.glob("blocks.*")):  # an sae-kit run
        loaded = {hp: load_sae_dir(p) for hp, p in sae_dirs(path).items()}
        return ("sae-kit", {hp: s for hp, (s, _) in loaded.items()},
                {hp: c for hp, (_, c) in loaded.items()},
                {hp: p / WEIGHTS for hp, p in sae_dirs(path).items()})
    folders = sorted(p for p in path.iterdir() if sparsify.is_sparsify_dir(p))
    if not folders:
        return None
    read = [sparsify.read_sparsify(p) for p in folders]  # each names its hook point
    return ("sparsify", {hp: s for s, hp, _ in read}, {hp: e for _, hp, e in read},
            {hp: p / sparsify.WEIGHTS for (_, hp, _), p in zip(read, folders, strict=True)})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
