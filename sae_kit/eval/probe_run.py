"""`sae-kit probe`: sparse probing of a run's SAEs on the sae-probes tasks (or any CSV tasks).

Activations come from sae-kit's own model loading and adapters (raw Hugging Face residual
stream, at each SAE's hook point, at each prompt's last token, the prompt cut to ``context``
tokens); the probes are :mod:`sae_kit.eval.probing`'s. The JSON also carries SAEBench's
``sparse_probing_sae_probes`` names (``llm_test_accuracy``, ``sae_top_1_test_auc``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from sae_kit.errors import SaeKitError
from sae_kit.eval.probe_tasks import ProbeTask, read_task, task_names, tasks_dir
from sae_kit.eval.probing import check_ks, probe_scores, sparse_probes, split
from sae_kit.eval.settings import PROBE
from sae_kit.eval.target import Overrides, open_target
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import LoadedModel, load_model
from sae_kit.model.splice import ModelRunner

TaskCallback = Callable[[str, int, int], None]
"""(task name, tasks done, tasks in all)."""


def last_token_activations(loaded: LoadedModel, positions: list[int], prompts: list[str],
                           context: int, batch_size: int, device: torch.device
                           ) -> dict[int, torch.Tensor]:
    """(n_prompts, d_model) per residual position: each prompt's last token (after cutting it
    to ``context`` tokens). Prompts are right-padded: a causal model's earlier positions do not
    see the padding."""
    tokenizer = loaded.tokenizer
    if not callable(tokenizer):
        raise SaeKitError(f"{loaded.name!r} takes no text (its tokenizer cannot tokenize); "
                          "sparse probing needs a model with a text tokenizer")
    ids = [list(tokenizer(p)["input_ids"])[:context] or [0] for p in prompts]
    runner = ModelRunner(loaded.model, loaded.adapter)
    found: dict[int, list[torch.Tensor]] = {p: [] for p in positions}
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            rows = ids[start:start + batch_size]
            width = max(map(len, rows))
            batch = torch.tensor([r + [0] * (width - len(r)) for r in rows], device=device)
            last = torch.tensor([len(r) - 1 for r in rows], device=device)
            acts = runner.run(batch, capture=positions, final_hidden=False).acts
            for p in positions:
                found[p].append(acts[p][torch.arange(len(rows), device=device), last].float().cpu())
    return {p: torch.cat(chunks) for p, chunks in found.items()}


def probe_run(run_ref: str, *, tasks: Sequence[str] = (), ks: Sequence[int] = PROBE.ks,
              max_examples: int = PROBE.max_examples, tasks_from: str | None = None,
              batch_size: int = PROBE.batch_size, device: str = "auto", seed: int = PROBE.seed,
              on_task: TaskCallback | None = None) -> dict[str, Any]:
    """Sparse probes (k latents) and the raw-activation baseline on each task, per SAE."""
    from sae_kit.model.device import resolve_device

    if max_examples < 4 or batch_size < 1:
        raise SaeKitError(f"--max-examples {max_examples}, --batch-size {batch_size}: need at "
                          "least 4 examples (2 per class) and a positive batch size")
    directory = tasks_dir(tasks_from)
    names = list(tasks) or task_names(directory)
    torch_device = resolve_device(device)
    target = open_target(run_ref, torch_device, Overrides())
    for sae in target.saes.values():
        check_ks(ks, sae.n_dict)
    read = [read_task(directory, name, max_examples, seed) for name in names]  # all, first
    loaded = load_model(target.model, revision=target.revision, device=torch_device)
    for hp, sae in target.saes.items():
        loaded.check_fits(hp, sae.d_in)
    results = []
    for i, task in enumerate(read):
        results.append(_probe_task(task, loaded, target.saes, target.context, ks, batch_size,
                                   torch_device, seed))
        if on_task:
            on_task(task.name, i + 1, len(read))
    return {"run_dir": str(target.path), "model": target.model, "ks": list(ks),
            "max_examples": max_examples, "seed": seed, "tasks": results,
            "saebench": {hp.name: saebench_fields(results, hp.name, ks) for hp in target.saes}}


def _probe_task(task: ProbeTask, loaded: LoadedModel, saes: dict[HookPoint, Any], context: int,
                ks: Sequence[int], batch_size: int, device: torch.device,
                seed: int) -> dict[str, Any]:
    y = torch.tensor(task.labels)
    train, test = split(task.labels, seed=seed)
    acts = last_token_activations(loaded, sorted({hp.position for hp in saes}), task.prompts,
                                  context, batch_size, device)
    out: dict[str, Any] = {"task": task.name, "classes": list(task.classes),
                           "n_train": len(train), "n_test": len(test), "baseline": {}, "saes": {}}
    for hp, sae in saes.items():
        x = acts[hp.position]
        with torch.no_grad():
            codes = sae.encode(x.to(device, sae.W_enc.dtype)).float().cpu()
        out["baseline"][hp.name] = probe_scores(x[train], y[train], x[test], y[test])
        out["saes"][hp.name] = sparse_probes(codes[train], y[train], codes[test], y[test], ks)
    return out


def saebench_fields(results: list[dict[str, Any]], hook_point: str,
                    ks: Sequence[int]) -> dict[str, Any]:
    """Means over tasks under SAEBench's ``sparse_probing_sae_probes`` names, and per task."""
    details = []
    for r in results:
        row: dict[str, Any] = {"dataset_name": r["task"]}
        base = r["baseline"][hook_point]
        row.update(llm_test_accuracy=base["test_accuracy"], llm_test_auc=base["test_auc"])
        for k in ks:
            probe = r["saes"][hook_point][str(k)]
            row[f"sae_top_{k}_test_accuracy"] = probe["test_accuracy"]
            row[f"sae_top_{k}_test_auc"] = probe["test_auc"]
        details.append(row)
    means = {key: sum(d[key] for d in details) / len(details)
             for key in details[0] if key != "dataset_name"} if details else {}
    return {"eval_type_id": "sparse_probing_sae_probes",
            "eval_result_metrics": {
                "llm": {k: v for k, v in means.items() if k.startswith("llm_")},
                "sae": {k: v for k, v in means.items() if k.startswith("sae_")}},
            "eval_result_details": details}
