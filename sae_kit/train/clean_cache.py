"""A clean-pass cache: what the frozen model computes on a dataset's windows, written once.

Every e2e step runs the original model on its batch (the residual at the SAE's position to
start the spliced pass from, and the final hidden states the KL compares against). That pass
depends only on the model and the tokens, not on the SAE, its lambda, seed or architecture, so
``sae-kit cache`` writes it to disk once and runs given ``--clean-cache DIR`` read it instead.

Layout of DIR: ``cache.json`` (what it was computed with, the shards, and a hash of every
window's tokens), written last, so a directory whose writing was cut off is never read; and
``shard-NNNNN.safetensors``, each holding ``tokens`` [windows, context] and, per cached
position, ``acts.P`` [windows, context, d_model], plus ``final_hidden`` when cached.

Windows are found by the hash of their tokens and their tokens are compared exactly, so any
seed's shuffle of the cached windows, and later epochs, read it. A batch with a window that is
not in the cache runs the model, as without one. Each window's activations equal the live
pass's bit for bit where the model computes a window independently of the others in its batch
(true of the CPU kernels tested; tests/train/test_clean_cache.py checks whole runs).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sae_kit.data import SHUFFLE_BUFFER, iter_texts, token_windows
from sae_kit.errors import SaeKitError
from sae_kit.losses.base import Loss
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import LoadedModel
from sae_kit.model.splice import RunResult, SharedClean, Splice
from sae_kit.record.config import TrainConfig
from sae_kit.store.jsonio import write_json_atomic
from sae_kit.train import precision

FORMAT = "sae-kit-clean-cache/1"
INDEX = "cache.json"
SHARD_BYTES = 256 * 2**20
"""A shard is written once its activations reach this size."""

logger = logging.getLogger("sae_kit.train")


@dataclass(frozen=True)
class CacheKey:
    """What a cached pass depends on; a run reads a cache only when every field matches."""

    model: str
    revision: str | None
    model_type: str
    unembedding_sha256: str
    dataset: str
    split: str
    text_column: str
    context: int
    dtype: str


def cache_key(config: TrainConfig, loaded: LoadedModel, context: int) -> CacheKey:
    weight = loaded.adapter.unembed(loaded.model).weight.detach().cpu().contiguous()
    return CacheKey(
        model=config.model, revision=config.revision,
        model_type=str(loaded.model.config.model_type),
        unembedding_sha256=hashlib.sha256(weight.view(torch.uint8).numpy()).hexdigest(),
        dataset=str(config.data_spec.dataset), split=config.split,
        text_column=config.text_column, context=context, dtype=config.dtype)


def window_hash(tokens: torch.Tensor) -> str:
    return hashlib.blake2b(tokens.cpu().contiguous().numpy().tobytes(), digest_size=16).hexdigest()


def clean_needs(loss: Loss, splice: Splice) -> tuple[list[int], bool]:
    """Positions and whether final hidden states: what the loss asks of the clean pass.

    The cache holds the residual stream only; a loss that reads a hook point inside a layer
    (``local`` at ``hook_mlp_out``, say) is refused in one line rather than missing every batch.
    """
    needs = getattr(loss, "clean_needs", None)
    # A loss not derived from Loss: the SAEs' sites and the output.
    sites, final_hidden = needs(splice) if needs is not None else (splice.sae_sites, True)
    inside = sorted(str(s) for s in sites if isinstance(s, HookPoint))
    if inside:
        raise SaeKitError(f"the clean cache holds the residual stream only, but this run's loss "
                          f"reads {', '.join(inside)} of the clean pass; train without "
                          "--clean-cache there (e2e and e2e+ds at any hook point can use one)")
    return sorted(set(sites)), bool(final_hidden)


def write_cache(out: Path, key: CacheKey, splice: Splice, windows: Iterable[list[int]],
                n_windows: int, positions: list[int], final_hidden: bool, batch_size: int,
                device: torch.device, on_batch: Callable[[int], None] | None = None) -> dict:
    """Run the clean model over up to ``n_windows`` windows and write them to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, Any]] = []
    pending: list[tuple[torch.Tensor, RunResult]] = []
    pending_bytes = 0
    done = 0
    for rows in _batches(itertools.islice(windows, n_windows), batch_size):
        ids = torch.tensor(rows, dtype=torch.long)
        with torch.no_grad(), precision.autocast(device, key.dtype):
            result = splice.runner.run(ids.to(device), capture=positions,
                                       final_hidden=final_hidden)
        result = RunResult(acts={p: result.acts[p].cpu() for p in positions},
                           final_hidden=None if result.final_hidden is None
                           else result.final_hidden.cpu())
        pending.append((ids, result))
        pending_bytes += sum(t.numel() * t.element_size() for t in _tensors(result))
        done += len(rows)
        if pending_bytes >= SHARD_BYTES:
            shards.append(_write_shard(out, len(shards), pending))
            pending, pending_bytes = [], 0
        if on_batch:
            on_batch(done)
    if pending:
        shards.append(_write_shard(out, len(shards), pending))
    if not shards:
        raise SaeKitError(f"dataset {key.dataset!r} has no full window of {key.context} tokens; "
                          "use more text or a smaller --context")
    sample = shards[0]
    index = {"format": FORMAT, "key": asdict(key), "positions": positions,
             "final_hidden": final_hidden, "windows": done,
             "bytes_per_token": sample["bytes"] / (sample["windows"] * key.context),
             "shards": shards}
    write_json_atomic(out / INDEX, index)  # last: only a finished cache has one
    return index


def _batches(windows: Iterator[list[int]], size: int) -> Iterator[list[list[int]]]:
    while rows := list(itertools.islice(windows, size)):
        yield rows


def _tensors(result: RunResult) -> list[torch.Tensor]:
    return [*result.acts.values(), *([result.final_hidden] if result.final_hidden is not None
                                     else [])]


def _write_shard(out: Path, number: int, pending: list[tuple[torch.Tensor, RunResult]]) -> dict:
    from sae_kit.store.files import save_tensors

    tokens = torch.cat([ids for ids, _ in pending])
    tensors = {"tokens": tokens}
    for p in pending[0][1].acts:
        tensors[f"acts.{p}"] = torch.cat([r.acts[p] for _, r in pending]).contiguous()
    if pending[0][1].final_hidden is not None:
        tensors["final_hidden"] = torch.cat([r.final_hidden for _, r in pending]).contiguous()
    name = f"shard-{number:05d}.safetensors"
    save_tensors(tensors, out / name)
    return {"file": name, "windows": tokens.shape[0],
            "bytes": sum(t.numel() * t.element_size() for t in tensors.values()),
            "hashes": [window_hash(row) for row in tokens]}


def read_index(cache_dir: str | Path) -> dict:
    path = Path(cache_dir) / INDEX
    if not Path(cache_dir).is_dir():
        raise SaeKitError(f"clean cache {str(cache_dir)!r} does not exist; write it with "
                          "`sae-kit cache DIR` and the run's options")
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise SaeKitError(f"{str(cache_dir)!r} holds no finished clean cache (no {INDEX}: was "
                          "its writing cut off?); write it again with `sae-kit cache`") from None
    except (OSError, ValueError) as exc:
        raise SaeKitError(f"cannot read {str(path)!r} ({exc}); write the cache again") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise SaeKitError(f"{str(path)!r} is not a sae-kit clean cache ({FORMAT})")
    return index


class CachedClean(SharedClean):
    """Clean passes read from a cache, for a run (or a group of runs) on the cached model.

    Answers the same calls as :class:`SharedClean`; a batch the cache cannot answer (a window
    it lacks, a position it did not store) runs the model instead.
    """

    def __init__(self, splice: Splice, cache_dir: str | Path, key: CacheKey,
                 needs: tuple[list[int], bool]) -> None:
        super().__init__(splice.runner)
        self.dir = Path(cache_dir)
        index = read_index(cache_dir)
        theirs = index["key"]
        wrong = [f"{name} {theirs.get(name)!r} (the run's: {value!r})"
                 for name, value in asdict(key).items() if theirs.get(name) != value]
        if wrong:
            raise SaeKitError(f"clean cache {str(cache_dir)!r} was written for another "
                              f"{'; '.join(wrong)}; write a cache for this run with "
                              "`sae-kit cache` and the run's options")
        self.positions = set(index["positions"])
        self.has_final = bool(index["final_hidden"])
        positions, final_hidden = needs
        missing = sorted(set(positions) - self.positions)
        if missing or (final_hidden and not self.has_final):
            what = [f"the residual at position(s) {missing}"] if missing else []
            what += ["the final hidden states"] if final_hidden and not self.has_final else []
            raise SaeKitError(f"clean cache {str(cache_dir)!r} lacks {' and '.join(what)} "
                              "that this run's loss reads; write it with the run's --loss, "
                              "hook points and loss options")
        self.where = {h: (i, row) for i, shard in enumerate(index["shards"])
                      for row, h in enumerate(shard["hashes"])}
        self.files = [self.dir / s["file"] for s in index["shards"]]
        self._open: dict[int, Any] = {}
        self.hits = self.misses = 0

    def get(self, input_ids: torch.Tensor, capture: Iterable[int], final_hidden: bool
            ) -> RunResult:
        capture = set(capture)
        if input_ids is self._input_ids and capture <= self._capture and (
                self._final_hidden or not final_hidden):
            return self._result  # type: ignore[return-value]
        if input_ids is not self._input_ids:
            self.clear()  # the stale batch's pass is freed before this one is read
        found = self._read(input_ids, capture, final_hidden)
        if found is None:
            self.misses += 1
            if self.misses == 1:
                logger.warning("a batch is not in the clean cache %s: the model runs for it "
                               "(and for any other)", self.dir)
            return super().get(input_ids, capture, final_hidden)
        self.hits += 1
        self._input_ids, self._capture, self._final_hidden = input_ids, capture, final_hidden
        self._result = found
        return found

    def _read(self, input_ids: torch.Tensor, capture: set[int], final_hidden: bool
              ) -> RunResult | None:
        if not capture <= self.positions or (final_hidden and not self.has_final):
            return None
        rows = [self.where.get(window_hash(w)) for w in input_ids]
        if None in rows:
            return None
        names = [f"acts.{p}" for p in sorted(capture)] + (["final_hidden"] if final_hidden
                                                           else [])
        parts: dict[str, list[torch.Tensor]] = {n: [] for n in ["tokens", *names]}
        for shard, row in rows:  # type: ignore[misc]
            f = self._shard(shard)
            for n in parts:
                parts[n].append(f.get_slice(n)[row:row + 1])
        tokens = torch.cat(parts.pop("tokens"))
        if not torch.equal(tokens, input_ids.cpu()):  # a hash collision: never trust it
            return None
        device = input_ids.device
        got = {n: torch.cat(ts).to(device) for n, ts in parts.items()}
        return RunResult(acts={p: got[f"acts.{p}"] for p in sorted(capture)},
                         final_hidden=got.get("final_hidden"))

    def _shard(self, number: int) -> Any:
        if number not in self._open:
            from safetensors import safe_open

            self._open[number] = safe_open(str(self.files[number]), framework="pt")
        return self._open[number]


def open_cache(run_splice: Splice, config: TrainConfig, loaded: LoadedModel, context: int,
               loss: Loss) -> CachedClean:
    """The cache ``config.clean_cache`` names, checked against this run."""
    return CachedClean(run_splice, config.clean_cache or "", cache_key(config, loaded, context),
                       clean_needs(loss, run_splice))


def dataset_windows(config: TrainConfig, loaded: LoadedModel, context: int
                    ) -> Iterator[list[int]]:
    """The training part's windows in dataset order: any seed's first N windows are among the
    first N + the shuffle buffer of them."""
    return token_windows(iter_texts(config.data_spec, "train"), loaded.tokenizer, context)


def windows_for(n_samples: int) -> int:
    return n_samples + SHUFFLE_BUFFER
