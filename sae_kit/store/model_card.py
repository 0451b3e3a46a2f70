"""The model card (``README.md``) pushed with a run: YAML metadata the Hub indexes, then what
was trained, how, how well it did (``eval.json`` from `sae-kit eval`) and how to load it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sae_kit.builtin import BUILTIN_DATASET_NAME, BUILTIN_MODEL_NAME
from sae_kit.errors import SaeKitError
from sae_kit.network import hub_ref
from sae_kit.record.run_record import RunRecord
from sae_kit.store.jsonio import read_json

CITATION = """@article{braun2024identifying,
  title={Identifying Functionally Important Features with End-to-End Sparse Dictionary Learning},
  author={Braun, Dan and Taylor, Jordan and Goldowsky-Dill, Nicholas and Sharkey, Lee},
  journal={arXiv preprint arXiv:2405.12241},
  year={2024}
}"""


def read_evaluation(path: Path) -> dict[str, Any] | None:
    """``eval.json`` as `sae-kit eval` writes it, or None when the run was not evaluated.

    Its shape: ``{"saes": {hook point: {metric: number}}, ...}``; other top-level scalars (held-out
    token count, clean CE loss, ...) are shown as settings.
    """
    if not path.exists():
        return None
    data = read_json(path)
    saes = data.get("saes") if isinstance(data, dict) else None
    ok = isinstance(saes, dict) and all(
        isinstance(m, dict) and all(_is_number(v) or v is None for v in m.values())
        for m in saes.values()
    )
    if not ok:
        raise SaeKitError(f"{str(path)!r} is not what `sae-kit eval` writes: expected "
                          '{"saes": {hook point: {metric: number}}}; re-run `sae-kit eval`')
    return data


def hub_id_or_none(name: str | None, builtin: str) -> str | None:
    """``name`` if it can be a Hub repo id (not a local path, not sae-kit's built-in one)."""
    if not name or name == builtin:
        return None
    try:
        ref = hub_ref(name, bare=True)
    except SaeKitError:  # not a valid id: the card names it as text, without a Hub link
        return None
    return name if ref is not None and ref.subfolder is None else None


@dataclass(frozen=True)
class BaseModel:
    """The trained-on model as the Hub knows it: canonical repo id and license (None: unknown)."""

    repo_id: str | None
    license: str | None


@dataclass(frozen=True)
class CardInputs:
    """What a card is made of, kept so a push can render it again once the Hub has answered."""

    repo_id: str
    run: RunRecord
    saes: dict[str, dict[str, Any]]
    evaluation: dict[str, Any] | None
    license: str | None = None  # --license; None: the base model's

    @property
    def model(self) -> str | None:
        return self.run.config.model

    def render(self, base: BaseModel | None) -> str:
        return render_card(self.repo_id, self.run, self.saes, self.evaluation, self.license,
                           base)


def card_license(license: str | None, model: str | None, base: BaseModel | None) -> str:
    """--license, else the base model's, else MIT for sae-kit's own model, else ``other``."""
    if license:
        return license
    if base is not None and base.license:
        return base.license
    return "mit" if model == BUILTIN_MODEL_NAME else "other"


def render_card(repo_id: str, run: RunRecord, saes: dict[str, dict[str, Any]],
                evaluation: dict[str, Any] | None, license: str | None = None,
                base: BaseModel | None = None) -> str:
    """The whole README.md: metadata, SAE table, evaluation table (or why there is none), usage.

    ``base`` is what the Hub said of the model (push asks it); without it the model id is used
    as written, and the license is ``license`` or ``other``.
    """
    first = next(iter(saes.values()))
    model = run.config.model
    dataset = run.config.dataset or first.get("dataset")
    loss = run.config.loss
    base_id = base.repo_id if base is not None else hub_id_or_none(model, BUILTIN_MODEL_NAME)
    sections = [
        _metadata(card_license(license, model, base), loss, base_id,
                  hub_id_or_none(dataset, BUILTIN_DATASET_NAME), first.get("model_type"),
                  eval_results(evaluation, dataset), repo_id.split("/")[-1]),
        f"# {repo_id.split('/')[-1]}",
        f"Sparse autoencoders (SAEs) on the residual stream of {_describe_model(model)}, trained "
        f"with sae-kit's `{loss}` objective (Braun et al. 2024, *Identifying Functionally "
        "Important Features with End-to-End Sparse Dictionary Learning*).",
        "## SAEs\n\n" + _sae_table(saes),
        _training(run, first, dataset),
        "## Evaluation\n\n" + _evaluation(evaluation),
        _usage(repo_id, next(iter(saes)), saes, hub_id_or_none(model, BUILTIN_MODEL_NAME)),
        *([_lora(repo_id, run, evaluation, hub_id_or_none(model, BUILTIN_MODEL_NAME))]
          if run.config.lora else []),
        f"## Citation\n\n```bibtex\n{CITATION}\n```",
    ]
    return "\n\n".join(sections) + "\n"


def _metadata(license: str, loss: str, base_model: str | None, dataset: str | None,
              model_type: str | None, results: list[Any] | None = None,
              name: str | None = None) -> str:
    from huggingface_hub import ModelCardData

    slug = re.sub(r"[^a-z0-9]+", "-", loss.lower()).strip("-")
    tags = ["sae-kit", "saelens", "sparse-autoencoder", f"{slug}-sae", "interpretability"]
    if model_type:
        tags.append(str(model_type))
    # "saelens" is a library the Hub knows (its "Use this model" button shows the SAELens
    # snippet); "sae-kit" is not, so it is a tag.
    data = ModelCardData(library_name="saelens", license=license, tags=tags,
                         base_model=base_model, datasets=[dataset] if dataset else None,
                         eval_results=results or None,
                         model_name=name if results else None)
    return f"---\n{data.to_yaml()}\n---"


def eval_results(evaluation: dict[str, Any] | None, dataset: str | None) -> list[Any]:
    """eval.json as the Hub's machine-readable ``model-index``: one result per SAE and metric
    (metric type = the eval.json key, metric name = "hook point metric")."""
    from huggingface_hub import EvalResult

    if evaluation is None:
        return []
    data_id = hub_id_or_none(dataset, BUILTIN_DATASET_NAME) or str(dataset or "unknown")
    found = []
    for hook_point, metrics in evaluation["saes"].items():
        for metric, value in metrics.items():
            if _is_number(value):
                found.append(EvalResult(
                    task_type="sparse-autoencoder", task_name="SAE evaluation on held-out text",
                    dataset_type=data_id, dataset_name=Path(data_id).name,
                    metric_type=metric, metric_value=value,
                    metric_name=f"{hook_point} {metric}",
                ))
    return found


def _describe_model(model: str | None) -> str:
    if model == BUILTIN_MODEL_NAME:
        return f"`{model}` (the small GPT-2 that ships with sae-kit)"
    if hub_id_or_none(model, BUILTIN_MODEL_NAME):
        return f"[`{model}`](https://huggingface.co/{model})"
    return f"a local model (`{Path(str(model)).name}`)"


def _sae_table(saes: dict[str, dict[str, Any]]) -> str:
    rows = [["hook point", "architecture", "d_in", "dictionary size", "loss", "λ",
             "tokens trained"]]
    for name, c in saes.items():
        # A transcoder reads one hook point and writes another: the card names both.
        where = f"`{name}` → `{c['output_hook_point']}`" if c.get("output_hook_point") else \
            f"`{name}`"
        arch = f"{c.get('architecture')} ({'skip ' if c.get('skip') else ''}transcoder)" \
            if c.get("output_hook_point") else c.get("architecture")
        rows.append([where, arch, c.get("d_in"), c.get("n_dict"),
                     c.get("loss"), _or_dash(c.get("sparsity_coeff")), c.get("tokens_trained")])
    return _table(rows)


def _or_dash(value: Any) -> Any:
    return "—" if value is None else value  # None: the architecture has no penalty (TopK)


def _training(run: RunRecord, first: dict[str, Any], dataset: str | None) -> str:
    config = run.config
    items = {
        "model": config.model,
        "model revision": config.revision or first.get("revision") or "default branch",
        "dataset": f"{dataset} (split {config.split})" if dataset else None,
        "context": run.resolved.context,
        "samples": run.resolved.n_samples,
        "loss options": config.loss_options or first.get("loss_options") or None,
        "learning rate": config.lr,
        "seed": config.seed,
    }
    lines = [f"- {key}: {_fmt(value)}" for key, value in items.items() if value is not None]
    return ("## Training\n\n" + "\n".join(lines) + "\n\nAn SAE's input is the raw Hugging Face "
            "hidden state at its hook point (TransformerLens names, but no LayerNorm folding or "
            "centring); see `config.json` for every setting.")


def _evaluation(evaluation: dict[str, Any] | None) -> str:
    if evaluation is None:
        return ("No evaluation was run: the run directory had no `eval.json` when it was pushed "
                "(`sae-kit eval RUN_DIR` writes one).")
    saes: dict[str, dict[str, Any]] = evaluation["saes"]
    metrics = list(dict.fromkeys(k for m in saes.values() for k in m))
    rows = [["metric", *(f"`{name}`" for name in saes)]]
    rows += [[metric, *(m.get(metric) for m in saes.values())] for metric in metrics]
    settings = [f"{k} {_fmt(v)}" for k, v in evaluation.items()
                if k not in ("saes", "run_dir") and (_is_number(v) or isinstance(v, str))]
    note = f"\n\nOn held-out data (`sae-kit eval`): {'; '.join(settings)}." if settings else ""
    return _table(rows) + note


def _usage(repo_id: str, hook_point: str, saes: dict[str, dict[str, Any]],
           model: str | None) -> str:
    from sae_kit.store.saelens import ARCHITECTURES

    kit = (
        "## Usage\n\nWith sae-kit installed:\n\n```bash\n"
        f"sae-kit pull {repo_id}/{hook_point}\n```\n\n```python\nimport sae_kit\n\n"
        f'sae, config = sae_kit.load_sae("{repo_id}", "{hook_point}")\n'
        "out = sae(activations)  # out.output: reconstruction, out.codes: dictionary coefficients"
        "\n```"
    )
    lens = [h for h, c in saes.items() if c.get("architecture") in ARCHITECTURES]
    if not lens:
        return kit + ("\n\nThese architectures have no SAELens equivalent: the folders hold "
                      "sae-kit's files only.")
    tl = f'("{model}")' if model else ""
    return kit + (
        "\n\nWith [SAELens](https://github.com/decoderesearch/SAELens) (6 or later; each folder "
        "also holds `cfg.json` + `sae_weights.safetensors`):\n\n```python\n"
        "from sae_lens import SAE\n\n"
        f'sae = SAE.from_pretrained("{repo_id}", "{lens[0]}")\n'
        "codes = sae.encode(activations)\n```\n\n"
        "The SAEs read the raw Hugging Face residual stream, not TransformerLens' processed one: "
        f"in TransformerLens load the model with `HookedTransformer.from_pretrained_no_processing"
        f"{tl}`, or read the hidden states from transformers directly."
    )


def _lora(repo_id: str, run: RunRecord, evaluation: dict[str, Any] | None,
          model: str | None) -> str:
    """A --lora run: the adapters in `lora/`, how they were trained, their figures, their use."""
    config = run.config
    layers = "every block" if config.lora_layers == "all" else "the blocks from the SAE's on"
    alpha = config.lora_alpha or config.lora_rank
    targets = ", ".join(f"`{t}`" for t in config.lora_targets) or "every dense layer"
    text = (f"## LoRA adapters\n\n`lora/` holds LoRA adapters (rank {config.lora_rank}, "
            f"alpha {_fmt(alpha)}; {targets} of {layers}) trained with the SAEs frozen "
            "against KL(original model || model with SAEs and adapters) (Chen, Engels & Tegmark "
            "2025, *Low-Rank Adapting Models for Sparse Autoencoders*), saved as peft saves them "
            "(`adapter_config.json` + `adapter_model.safetensors`).")
    adapted = (evaluation or {}).get("lora")
    if adapted:
        rows = [["metric", *(f"`{name}`" for name in adapted["saes"])]]
        rows += [[f"{metric}, with LoRA", *(m.get(metric) for m in adapted["saes"].values())]
                 for metric in ("ce_loss_increase", "kl")]
        text += "\n\nOn the same held-out data, with the adapters on:\n\n" + _table(rows)
    base = f'"{model}"' if model else "BASE_MODEL"  # the built-in model has no Hub id
    return text + (
        "\n\nWith peft:\n\n```python\nfrom peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM\n\n"
        f"base = AutoModelForCausalLM.from_pretrained({base})\n"
        f'model = PeftModel.from_pretrained(base, "{repo_id}", subfolder="lora")\n```')


def _table(rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(_fmt(cell).replace("|", "\\|") for cell in row) + " |"
             for row in rows]
    lines.insert(1, "|" + " --- |" * len(rows[0]))
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not _is_number(value):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"
