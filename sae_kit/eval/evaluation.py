"""Evaluate a run's SAEs on held-out tokens: the metrics of docs/eval.md, written to eval.json.

    sae-kit eval runs/sae-kit-tiny-e2e-20261125-120000      # the CLI calls evaluate_run()

Each SAE is measured with only itself spliced into the model; with several SAEs in a run, the
CE-loss increase and KL with all of them spliced at once are reported too. Batches are
accumulated exactly (token-weighted means, merged variance sums), so the numbers do not depend
on the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sae_kit.architectures.base import SAE
from sae_kit.data import DataSpec, eval_windows
from sae_kit.errors import SaeKitError
from sae_kit.eval.metrics import TokenMean, VarianceSums, ce_loss, fired, kl_divergence, l0
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import LoadedModel, load_model
from sae_kit.model.splice import Splice, SplicedRun
from sae_kit.network import is_local_ref
from sae_kit.store.jsonio import write_json_atomic
from sae_kit.store.run_dir import RunDir
from sae_kit.store.sae_dir import load_run

BatchCallback = Callable[[int, int], None]


HUB_RUNS = Path("runs") / "hub"
"""Where a run named by Hub id is downloaded: a directory of the user's, so eval.json fits."""


def resolve_run_dir(ref: str) -> Path:
    """Turn what the user typed into a local run directory: a path, or a Hub id (downloaded)."""
    path = Path(ref).expanduser()
    if is_local_ref(ref) or ref.count("/") != 1:
        if path.is_dir():
            return path
        raise SaeKitError(
            f"run directory {ref!r} does not exist (nor is it a Hub id like namespace/name)"
        )
    from sae_kit.store.sources import resolve_sae_source

    return resolve_sae_source(ref, out=HUB_RUNS / ref.replace("/", "--"))


@dataclass
class _Sums:
    """Everything accumulated for one splice configuration."""

    ce: TokenMean = field(default_factory=TokenMean)
    kl: TokenMean = field(default_factory=TokenMean)
    l0: TokenMean = field(default_factory=TokenMean)
    fired: torch.Tensor | None = None
    variance: VarianceSums = field(default_factory=VarianceSums)
    downstream: dict[int, TokenMean] = field(default_factory=dict)

    def add_codes(self, codes: torch.Tensor) -> None:
        mask = fired(codes).cpu()
        self.fired = mask if self.fired is None else self.fired | mask
        self.l0.add(l0(codes), codes[..., 0].numel())


@dataclass
class _Evaluator:
    """The model, its SAEs and the sums; ``add_batch`` folds in one batch of windows."""

    loaded: LoadedModel
    saes: dict[HookPoint, SAE]
    clean_ce: TokenMean = field(default_factory=TokenMean)
    per_sae: dict[HookPoint, _Sums] = field(default_factory=dict)
    joint: _Sums = field(default_factory=_Sums)

    def __post_init__(self) -> None:
        model, adapter = self.loaded.model, self.loaded.adapter
        self.all_spliced = Splice(model, adapter, self.saes)
        self.single = {hp: Splice(model, adapter, {hp: sae}) for hp, sae in self.saes.items()}
        self.per_sae = {hp: _Sums() for hp in self.saes}
        n_layers = self.all_spliced.n_layers
        self.later = {hp: hp.downstream(n_layers) for hp in self.saes}

    def add_batch(self, input_ids: torch.Tensor) -> None:
        capture = {hp.position for hp in self.saes} | {p for ps in self.later.values() for p in ps}
        clean = self.all_spliced.clean(input_ids, capture=capture)
        self._add_logits(self.clean_ce, None, clean.final_hidden, clean.final_hidden, input_ids)
        for hp, splice in self.single.items():
            spliced = splice.spliced(input_ids, capture=self.later[hp], clean=clean)
            sums = self.per_sae[hp]
            self._add_logits(sums.ce, sums.kl, clean.final_hidden, spliced.run.final_hidden,
                             input_ids)
            self._add_reconstruction(sums, hp, spliced, clean.acts)
        if len(self.saes) > 1:
            spliced = self.all_spliced.spliced(input_ids, clean=clean)
            self._add_logits(self.joint.ce, self.joint.kl, clean.final_hidden,
                             spliced.run.final_hidden, input_ids)

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
                            clean_acts: dict[int, torch.Tensor]) -> None:
        out = spliced.sae_outputs[hp]
        sums.add_codes(out.codes)
        sums.variance.add(spliced.sae_inputs[hp], out.output)
        n_tokens = out.codes[..., 0].numel()
        for p in self.later[hp]:
            diff = spliced.run.acts[p].double() - clean_acts[p].double()
            sums.downstream.setdefault(p, TokenMean()).add(float((diff**2).mean()), n_tokens)

    def results(self) -> dict[str, Any]:
        clean = self.clean_ce.value
        saes = {hp.name: _sae_metrics(self.per_sae[hp], clean, sae.n_dict)
                for hp, sae in self.saes.items()}
        out: dict[str, Any] = {"clean_ce_loss": clean, "saes": saes}
        if len(self.saes) > 1:
            out["all_saes"] = {"ce_loss": self.joint.ce.value,
                               "ce_loss_increase": self.joint.ce.value - clean,
                               "kl": self.joint.kl.value}
        return out


def _sae_metrics(sums: _Sums, clean_ce: float, n_dict: int) -> dict[str, float]:
    alive = int(sums.fired.sum()) if sums.fired is not None else 0
    metrics: dict[str, Any] = {
        "l0": sums.l0.value, "alive": alive, "alive_fraction": alive / n_dict, "n_dict": n_dict,
        "ce_loss": sums.ce.value, "ce_loss_increase": sums.ce.value - clean_ce,
        "kl": sums.kl.value, "explained_variance": sums.variance.explained_variance,
        "mse": sums.variance.mse,
    }
    if sums.downstream:
        per_layer = {HookPoint.output_at(p).name: m.value
                     for p, m in sorted(sums.downstream.items())}
        metrics["downstream_mse"] = sum(per_layer.values()) / len(per_layer)
        metrics.update({f"downstream_mse/{name}": v for name, v in per_layer.items()})
    return metrics


def _load(run_dir: Path, device: torch.device) -> tuple[dict, dict[HookPoint, SAE]]:
    config, saes = load_run(run_dir, device)
    missing = [k for k in ("model", "dataset", "resolved") if k not in config]
    if missing:
        raise SaeKitError(
            f"{str(run_dir / 'config.json')!r} lacks {missing}; was it written by `sae-kit train`?"
        )
    return config, saes


def evaluate_run(
    run_ref: str,
    n_tokens: int,
    batch_size: int = 8,
    device: str = "auto",
    on_batch: BatchCallback | None = None,
) -> dict[str, Any]:
    """Evaluate every SAE of a run on held-out tokens; writes and returns ``eval.json``'s data."""
    from sae_kit.model.device import resolve_device

    if n_tokens < 1 or batch_size < 1:
        raise SaeKitError(f"--n-tokens and --batch-size must be positive, got {n_tokens}, "
                          f"{batch_size}")
    run_dir = resolve_run_dir(run_ref)
    torch_device = resolve_device(device)
    config, saes = _load(run_dir, torch_device)
    loaded = load_model(config["model"], revision=config.get("revision"), device=torch_device)
    for hp, sae in saes.items():
        hp.check(loaded.n_layers)
        if sae.d_in != loaded.d_model:
            raise SaeKitError(f"SAE {hp} takes width {sae.d_in}, but {config['model']!r} has "
                              f"d_model {loaded.d_model}")
    context = int(config["resolved"]["context"])
    spec = DataSpec(config["dataset"], config.get("split", "train"), config.get("eval_split"),
                    config.get("text_column", "text"))
    windows = eval_windows(spec, loaded.tokenizer, context, math.ceil(n_tokens / context))
    if not windows:
        raise SaeKitError(f"the held-out part of {config['dataset']!r} has no full window of "
                          f"{context} tokens")
    evaluator = _Evaluator(loaded, saes)
    n_batches = math.ceil(len(windows) / batch_size)
    with torch.no_grad():
        for index in range(n_batches):
            rows = windows[index * batch_size:(index + 1) * batch_size]
            evaluator.add_batch(torch.tensor(rows, dtype=torch.long, device=torch_device))
            if on_batch:
                on_batch(index + 1, n_batches)
    result = {
        "run_dir": str(run_dir), "model": config["model"], "dataset": config["dataset"],
        "loss": config.get("loss"), "sparsity_coeff": config.get("sparsity_coeff"),
        "context": context, "n_windows": len(windows), "n_tokens": len(windows) * context,
        **evaluator.results(),
    }
    write_json_atomic(RunDir(run_dir).eval, result)
    return result
