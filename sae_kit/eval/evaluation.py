"""Evaluate a run's SAEs on held-out tokens: the metrics of docs/eval.md, written to eval.json.

    sae-kit eval runs/sae-kit-tiny-e2e-20261125-120000      # the CLI calls evaluate_run()

Each SAE is measured with only itself spliced into the model; with several SAEs in a run, the
CE-loss increase and KL with all of them spliced at once are reported too. Batches are
accumulated exactly (token-weighted means, merged variance sums), so the numbers do not depend
on the batch size (except ``explained_variance_e2e_sae``, the reference's per-batch quantity).
Alive elements are counted on training tokens instead (:mod:`sae_kit.eval.alive`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sae_kit.architectures.base import SAE
from sae_kit.data import DataSpec, Part, part_windows
from sae_kit.errors import SaeKitError
from sae_kit.eval.alive import count_alive
from sae_kit.eval.analysis.collect import TextRead, counted_windows
from sae_kit.eval.metrics import (
    TokenMean,
    VarianceSums,
    ce_loss,
    explained_variance_e2e_sae,
    kl_divergence,
    l0,
)
from sae_kit.eval.settings import EVAL
from sae_kit.eval.target import EvalTarget, Overrides, open_target
from sae_kit.model.hookpoints import HookPoint, Site
from sae_kit.model.loading import LoadedModel, load_model
from sae_kit.model.lora import Lora
from sae_kit.model.splice import Splice, SplicedRun
from sae_kit.progress import ProgressLines
from sae_kit.store.jsonio import write_json_atomic
from sae_kit.store.run_dir import RunDir

BatchCallback = Callable[[int, int], None]
AliveCallback = Callable[[dict[HookPoint, torch.Tensor]], None]


@dataclass
class _Sums:
    """Everything accumulated for one splice configuration."""

    ce: TokenMean = field(default_factory=TokenMean)
    kl: TokenMean = field(default_factory=TokenMean)
    l0: TokenMean = field(default_factory=TokenMean)
    variance: VarianceSums = field(default_factory=VarianceSums)
    ev_e2e_sae: TokenMean = field(default_factory=TokenMean)
    """The reference's per-batch explained variance, averaged over batches by token count."""
    downstream: dict[int, TokenMean] = field(default_factory=dict)


@dataclass
class _Evaluator:
    """The model, its SAEs and the sums; ``add_batch`` folds in one batch of windows."""

    loaded: LoadedModel
    saes: dict[HookPoint, SAE]
    outputs: dict[HookPoint, HookPoint] = field(default_factory=dict)
    """Transcoders' output hook points; an SAE not named writes its own."""
    clean_ce: TokenMean = field(default_factory=TokenMean)
    per_sae: dict[HookPoint, _Sums] = field(default_factory=dict)
    joint: _Sums = field(default_factory=_Sums)
    lora: Lora | None = None
    """A --lora run's adapters: off in the clean pass, on in the spliced ones."""

    def __post_init__(self) -> None:
        model, adapter = self.loaded.model, self.loaded.adapter
        self.all_spliced = Splice(model, adapter, self.saes, self.outputs)
        self.single = {hp: Splice(model, adapter, {hp: sae}, self.outputs)
                       for hp, sae in self.saes.items()}
        for splice in (self.all_spliced, *self.single.values()):
            splice.lora = self.lora
        self.per_sae = {hp: _Sums() for hp in self.saes}
        n_layers = self.all_spliced.n_layers
        # Downstream of where the SAE writes (a transcoder's output hook point).
        self.later = {hp: self.all_spliced.outputs[hp].downstream(n_layers) for hp in self.saes}

    def add_batch(self, input_ids: torch.Tensor) -> None:
        capture = ({hp.site for hp in self.saes} | {hp.start_position for hp in self.saes}
                   | {p for ps in self.later.values() for p in ps})
        clean = self.all_spliced.clean(input_ids, capture=capture)
        self._add_logits(self.clean_ce, None, clean.final_hidden, clean.final_hidden, input_ids)
        for hp, splice in self.single.items():
            spliced = splice.spliced(input_ids, capture=self.later[hp], clean=clean)
            sums = self.per_sae[hp]
            self._add_logits(sums.ce, sums.kl, clean.final_hidden, spliced.final_hidden,
                             input_ids)
            self._add_reconstruction(sums, hp, spliced, clean.acts)
        if len(self.saes) > 1:
            spliced = self.all_spliced.spliced(input_ids, clean=clean)
            self._add_logits(self.joint.ce, self.joint.kl, clean.final_hidden,
                             spliced.final_hidden, input_ids)

    def _add_logits(self, ce: TokenMean, kl: TokenMean | None, clean_hidden: torch.Tensor,
                    hidden: torch.Tensor, input_ids: torch.Tensor) -> None:
        # One row at a time: a full-vocabulary logits tensor for a whole batch can be GBs.
        unembed = self.all_spliced.logits
        for row in range(input_ids.shape[0]):
            logits = unembed(hidden[row])
            ce.add(ce_loss(logits, input_ids[row]), input_ids.shape[1] - 1)
            if kl is not None:
                kl.add(float(kl_divergence(unembed(clean_hidden[row]), logits)),
                       input_ids.shape[1])

    def _add_reconstruction(self, sums: _Sums, hp: HookPoint, spliced: SplicedRun,
                            clean_acts: dict[Site, torch.Tensor]) -> None:
        # Against what the output replaced: the input, or a transcoder's true output.
        out, x = spliced.sae_outputs[hp], spliced.sae_targets[hp]
        n_tokens = out.codes[..., 0].numel()
        sums.l0.add(l0(out.codes), n_tokens)
        sums.variance.add(x, out.output)
        sums.ev_e2e_sae.add(float(explained_variance_e2e_sae(x, out.output).mean()), n_tokens)
        for p in self.later[hp]:
            diff = spliced.acts[p].double() - clean_acts[p].double()
            sums.downstream.setdefault(p, TokenMean()).add(float((diff**2).mean()), n_tokens)

    def results(self, alive: dict[HookPoint, torch.Tensor]) -> dict[str, Any]:
        clean = self.clean_ce.value
        saes = {hp.name: _sae_metrics(self.per_sae[hp], clean, int(alive[hp].sum()), sae.n_dict)
                for hp, sae in self.saes.items()}
        out: dict[str, Any] = {"clean_ce_loss": clean, "saes": saes}
        if len(self.saes) > 1:
            out["all_saes"] = {"ce_loss": self.joint.ce.value,
                               "ce_loss_increase": self.joint.ce.value - clean,
                               "kl": self.joint.kl.value}
        return out


def _sae_metrics(sums: _Sums, clean_ce: float, alive: int, n_dict: int) -> dict[str, float]:
    metrics: dict[str, Any] = {
        "l0": sums.l0.value, "alive": alive, "alive_fraction": alive / n_dict, "n_dict": n_dict,
        "ce_loss": sums.ce.value, "ce_loss_increase": sums.ce.value - clean_ce,
        "kl": sums.kl.value, "explained_variance": sums.variance.explained_variance,
        "explained_variance_e2e_sae": sums.ev_e2e_sae.value, "mse": sums.variance.mse,
    }
    if sums.downstream:
        per_layer = {HookPoint.output_at(p).name: m.value
                     for p, m in sorted(sums.downstream.items())}
        metrics["downstream_mse"] = sum(per_layer.values()) / len(per_layer)
        metrics.update({f"downstream_mse/{name}": v for name, v in per_layer.items()})
    return metrics


def evaluate_run(
    run_ref: str,
    n_tokens: int | None = None,
    batch_size: int = EVAL.batch_size,
    device: str = "auto",
    on_batch: BatchCallback | None = None,
    *,
    alive_tokens: int = EVAL.alive_tokens,
    paper_compatible: bool = False,
    overrides: Overrides | None = None,
    on_alive: AliveCallback | None = None,
) -> dict[str, Any]:
    """Evaluate every SAE of a run (or one SAE) on held-out tokens; writes and returns eval.json.

    ``run_ref`` is a run directory, an SAE directory (of a run, imported, or SAELens'), or a Hub
    id; ``overrides`` gives the model, text or context a single SAE does not record
    (:mod:`sae_kit.eval.target`). ``n_tokens`` defaults to 100,000, or with ``paper_compatible``
    to the reference's 500 windows. Alive elements are counted on the first ``alive_tokens``
    training tokens; ``on_alive`` is given each SAE's mask of them (``sae-kit bench`` scores
    alive latents). ``on_batch(done, total)`` hears of every batch; without it progress goes to
    the ``sae_kit`` logger (sae_kit.progress).
    """
    from sae_kit.model.device import resolve_device

    _check_sizes(n_tokens, batch_size, alive_tokens)
    torch_device = resolve_device(device)
    target = open_target(run_ref, torch_device, overrides or Overrides())
    check_writable(target.eval_file)  # before minutes of evaluation, not after
    loaded = _load_model(target, torch_device)
    context = target.context
    if n_tokens is None:
        n_tokens = EVAL.paper_windows * context if paper_compatible else EVAL.n_tokens
    spec = target.spec
    held_out, alive_read = TextRead(context, n_tokens), TextRead(context, alive_tokens)
    windows = _windows(spec, "eval", loaded, held_out, math.ceil(n_tokens / context))
    # the windows `sae-kit features` and `compare` count alive elements on (ALIVE_TEXT)
    alive_rows = _windows(spec, "train", loaded, alive_read, alive_read.budget // context)
    evaluator = _Evaluator(loaded, target.saes, target.outputs)
    lora_dir = RunDir(target.path).lora
    passes = 2 if lora_dir.is_dir() else 1  # a --lora run: without its adapters, then with
    total = math.ceil(len(alive_rows) / batch_size) + passes * math.ceil(len(windows) / batch_size)
    done = iter(range(1, total + 1))
    lines = ProgressLines()  # without on_batch (the Python API): lines on the sae_kit logger

    def step() -> None:
        if on_batch:
            on_batch(next(done), total)
        else:
            lines(f"eval {run_ref} (batches)", next(done), total)

    with torch.no_grad():
        alive = count_alive(evaluator.all_spliced, alive_rows, batch_size, torch_device, step)
        if on_alive:
            on_alive({hp: mask.cpu() for hp, mask in alive.items()})
        _add_windows(evaluator, windows, batch_size, torch_device, step)
        adapted = None
        if passes == 2:  # the adapters go into the model only now: the pass above had none
            lora = Lora.load(loaded.model, loaded.adapter, lora_dir)
            adapted = _Evaluator(loaded, target.saes, target.outputs, lora=lora)
            _add_windows(adapted, windows, batch_size, torch_device, step)
    result = {
        "run_dir": str(target.path), "model": target.model, "dataset": spec.dataset,
        "loss": target.loss,
        "sparsity_coeff": target.sparsity_coeff,  # None: no SAE has a penalty (TopK)
        "context": context, "n_windows": len(windows), "n_tokens": len(windows) * context,
        "alive_n_tokens": len(alive_rows) * context, "alive_part": "train",
        "texts": {"held_out": held_out.as_dict(), "alive": alive_read.as_dict()},
        "paper_compatible": paper_compatible, **evaluator.results(alive),
    }
    if adapted is not None:
        result["lora"] = {"dir": str(lora_dir), **_lora_results(adapted.results(alive))}
    try:
        write_json_atomic(target.eval_file, result)
    except OSError as exc:
        raise _unwritable(target.eval_file, exc) from None
    return result


def _add_windows(evaluator: _Evaluator, windows: list[list[int]], batch_size: int,
                 device: torch.device, step: Callable[[], None]) -> None:
    for start in range(0, len(windows), batch_size):
        rows = windows[start:start + batch_size]
        evaluator.add_batch(torch.tensor(rows, dtype=torch.long, device=device))
        step()


LORA_METRICS = ("ce_loss", "ce_loss_increase", "kl", "l0", "explained_variance", "mse")
"""What changes with the adapters on (the alive count is the SAE's, measured without)."""


def _lora_results(results: dict[str, Any]) -> dict[str, Any]:
    """The metrics of the pass with adapters: against the original model's CE and outputs."""
    out: dict[str, Any] = {"saes": {name: {k: m[k] for k in LORA_METRICS}
                                    for name, m in results["saes"].items()}}
    if "all_saes" in results:
        out["all_saes"] = results["all_saes"]
    return out


def _check_sizes(n_tokens: int | None, batch_size: int, alive_tokens: int) -> None:
    sizes = {"--n-tokens": 1 if n_tokens is None else n_tokens, "--batch-size": batch_size,
             "--alive-tokens": alive_tokens}
    bad = [f"{flag} {value}" for flag, value in sizes.items() if value < 1]
    if bad:
        raise SaeKitError(f"{', '.join(bad)}: must be a positive number")


def _load_model(target: EvalTarget, device: torch.device) -> LoadedModel:
    loaded = load_model(target.model, revision=target.revision, device=device)
    for hp, sae in target.saes.items():
        loaded.check_fits(hp, sae.d_in)
    return loaded


def _windows(spec: DataSpec, part: Part, loaded: LoadedModel, read: TextRead,
             limit: int) -> list[list[int]]:
    """The first ``limit`` windows of ``part``, in dataset order, counted into ``read``."""
    context = read.context
    windows = list(counted_windows(part_windows(spec, part, loaded.tokenizer, context), read,
                                   limit, loaded.tokenizer))
    if not windows:
        what = "held-out" if part == "eval" else "training"
        raise SaeKitError(f"the {what} part of {spec.dataset!r} has no full window of "
                          f"{context} tokens")
    return windows


def check_writable(path: Path) -> None:
    """One clear line now if ``path`` could not be written later (missing or read-only place)."""
    parent = path.parent
    if not parent.is_dir():
        raise SaeKitError(f"cannot write {str(path)!r}: {str(parent)!r} is not a directory; "
                          "create it first or choose another path")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise _unwritable(path, PermissionError(13, "not writable"))


def _unwritable(path: Path, exc: OSError) -> SaeKitError:
    return SaeKitError(f"cannot write {str(path)!r} ({exc.strerror or exc}); copy the run "
                       "somewhere writable, or choose a writable path")
