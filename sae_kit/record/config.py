"""Training configuration. Each field's help text is also the ``sae-kit train --help`` text.

Every training option is declared once, here: ``sae-kit train`` builds its options from these
fields (see ``sae_kit.cli.train_options``). Settings whose default depends on the model are
``None`` here and take their value from ``MODEL_DEFAULTS``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sae_kit.builtin import BUILTIN_DATASET_NAME, BUILTIN_MODEL_NAME
from sae_kit.errors import SaeKitError
from sae_kit.model_names import source_ref
from sae_kit.record.setting_types import wrong_types

if TYPE_CHECKING:
    from sae_kit.data import DataSpec

# Names for --dtype; sae_kit.train.precision maps them to torch dtypes (this module stays
# torch-free).
DTYPE_NAMES = ("fp32", "bf16")
LORA_LAYERS = ("after", "all")  # the blocks from the first SAE's on, or every block


DEVICE_HELP = "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'."
"""The ``--device`` help of every command that runs a model."""


@dataclass(frozen=True)
class ModelDefault:
    """A default that differs between the paper's setting and the built-in model's short run."""

    paper: float | int
    builtin: float | int

    def for_model(self, model: str) -> float | int:
        # A model built from options (a synthetic one) is as small as the built-in one.
        small = model == BUILTIN_MODEL_NAME or source_ref(model) is not None
        return self.builtin if small else self.paper


# The built-in model's default run must finish in a few minutes on a 2-core CPU: ~200k tokens
# (2 passes over its text). The paper's lr and 16-sample steps sparsify too slowly for that, so
# it takes 100 steps of 8 samples at 4x the lr (measured: docs/method.md).
MODEL_DEFAULTS = {
    "lr": ModelDefault(paper=5e-4, builtin=2e-3),
    "grad_accum": ModelDefault(paper=2, builtin=1),
    "n_samples": ModelDefault(paper=400_000, builtin=800),
}
"""Unset (None) settings take these; ``lr`` and ``grad_accum`` are written into config.json."""


def _model_default(text: str, name: str) -> Any:
    d = MODEL_DEFAULTS[name]
    paper, builtin = _short(d.paper), _short(d.builtin)
    return _help(f"{text} (paper: {paper}); default: {paper}, or {builtin} for the built-in "
                 "model.", None)


def _short(value: float | int) -> str:
    """400000 -> 400k, 0.0005 -> 5e-4: numbers as the paper writes them."""
    if isinstance(value, int):
        return f"{value // 1000}k" if value >= 1000 and value % 1000 == 0 else str(value)
    return f"{value:.0e}".replace("e-0", "e-")


def _help(text: str, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    return field(default=default, metadata={"help": text}, **kw)


@dataclass
class TrainConfig:
    model: str = _help(
        f"Hugging Face Hub id or local directory of a causal LM; default: the built-in "
        f"{BUILTIN_MODEL_NAME!r} model that ships with sae-kit.",
        BUILTIN_MODEL_NAME,
    )
    revision: str | None = _help("Model revision (branch, tag or commit) on the Hub.", None)
    dataset: str | None = _help(
        f"Hub dataset id (streamed), local .txt/.jsonl/.parquet file or directory, or "
        f"{BUILTIN_DATASET_NAME!r} (the built-in text, ~100k tokens); default "
        f"{BUILTIN_DATASET_NAME!r} for the built-in model, required for any other.",
        None,
    )
    split: str = _help("Dataset split to train on.", "train")
    eval_split: str | None = _help(
        "Held-out split for evaluation; if unset, 1 document in 20 is held out of training.", None
    )
    text_column: str = _help("Column holding the text.", "text")
    loss: str = _help("Training objective, by plugin name: local, e2e, e2e+ds, ...", "e2e")
    loss_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Loss-specific options, e.g. {'ds_coeff': 2.5} for e2e+ds."},
    )
    hook_points: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Hook points, one SAE each, trained together: residual stream "
            "(blocks.L.hook_resid_pre/post), inside a layer (blocks.L.hook_attn_out/mlp_in/"
            "mlp_out) or a module path inside a decoder layer; default: resid_pre of the "
            "middle layer."
        },
    )
    init_from: str | None = _help(
        "Start from an existing SAE instead of a fresh one: an sae-kit SAE or run directory, an "
        "SAELens directory, a sparsify directory, or a Hub id. Its architecture, sizes and hook "
        "points are used (and checked against the model); see docs/finetune.md.",
        None,
    )
    transcoder_output: str | None = _help(
        "Train transcoders: each SAE reads its hook point and its output replaces this later "
        "hook point - a kind at the same layer (mlp_out: with --hook mlp_in, the MLP "
        "transcoder of Dunefsky et al. 2024) or a full name; it is trained to match the "
        "model's activation there (local), or spliced in its place (e2e, e2e+ds).", None)
    transcoder_skip: bool = _help(
        "With --transcoder-output: add an affine skip W_skip x to each transcoder's output "
        "(skip transcoder, Paulo et al. 2025); W_skip starts at zero.", False)
    finetune_fraction: float = _help(
        "The whole fine-tune recipe in one run: MSE pre-training (loss local) on the first 1-f of "
        "the samples, then --loss (kl+mse) from that SAE on the last f of them, each phase with "
        "its own warm-up and cosine; 0: one phase. See docs/finetune.md.",
        0.0,
    )
    skip_samples: int = _help(
        "Training windows of the data stream to pass over first (a recipe's fine-tune continues "
        "after the windows its pre-training read).",
        0,
    )
    lora: bool = _help(
        "Freeze the SAEs of --init-from and train LoRA adapters on the model instead, against "
        "KL(original || spliced + adapted) (Chen, Engels & Tegmark 2025); needs peft: pip "
        "install 'sae-kit[lora]'. See docs/finetune.md.", False)
    lora_rank: int = _help("With --lora: the adapters' rank r.", 16)
    lora_alpha: float | None = _help(
        "With --lora: LoRA's alpha (the update is scaled by alpha/r); default: r (scale 1).", None)
    lora_layers: str = _help(
        "With --lora: 'after' (adapters on the blocks from the first SAE's block on) or 'all'.",
        "after")
    lora_targets: list[str] = field(
        default_factory=list,
        metadata={"help": "With --lora: dense layers inside a block to adapt, by name or name "
                  "ending (c_attn, mlp.c_fc); default: every dense layer of the block."},
    )
    architecture: str = _help("SAE architecture, by plugin name: relu, topk, ...", "relu")
    architecture_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Architecture-specific options, e.g. {'k': 32} for topk."},
    )
    dict_ratio: float = _help("Dictionary size as a multiple of d_model (paper: 60).", 60.0)
    sparsity_coeff: float = _help(
        "lambda: weight of the sparsity penalty, mean L1 of the codes divided by d_model.", 1.0
    )
    context: int | None = _help(
        "Tokens per sample (paper: 1024); default: 1024, or the model's maximum if smaller.", None
    )
    batch_size: int = _help("Samples per micro-batch (paper: 8).", 8)
    grad_accum: int | None = _model_default("Micro-batches per optimizer step", "grad_accum")
    n_samples: int | None = _model_default("Training samples in total", "n_samples")
    lr: float | None = _model_default("Peak Adam learning rate", "lr")
    warmup_fraction: float = _help("Fraction of steps with linear warm-up from 0.", 0.05)
    min_lr_ratio: float = _help("Cosine decay ends at this fraction of the peak lr.", 0.1)
    grad_clip: float | None = _help("Clip the gradient norm to this (paper: 10).", 10.0)
    seed: int = _help("Random seed for SAE init and data order.", 0)
    device: str = _help(DEVICE_HELP, "auto")
    dtype: str = _help(
        "Precision of the frozen model's forward passes: fp32, or bf16 (autocast); SAE weights, "
        "SAE computation and the KL stay fp32 either way. On CUDA, fp32 matmuls use TF32.",
        "fp32",
    )
    compile: bool = _help(
        "torch.compile each SAE's forward pass; if compiling fails, warn and run eagerly.", False
    )
    log_every: int = _help("Optimizer steps between metric records.", 10)
    save_every: int = _help(
        "Optimizer steps between checkpoints (one is also written at the end and on "
        "SIGINT/SIGTERM); 1000 steps of the paper's GPT-2 run are ~30 minutes on one GPU.",
        1000,
    )
    keep_checkpoints: int = _help("How many of the newest checkpoints to keep.", 2)
    trackers: list[str] = field(
        default_factory=list,
        metadata={"help": "Experiment trackers (plugins) that get every metrics row too: wandb, "
                  "tensorboard, ...; metrics.jsonl stays the record."},
    )
    output_dir: str | None = _help("Run directory; default runs/<model>-<loss>-<time>.", None)
    clean_cache: str | None = _help(
        "Directory written by `sae-kit cache`: read the original model's pass on each batch "
        "from it instead of running the model (same results; windows it lacks are computed).",
        None,
    )

    def __post_init__(self) -> None:
        wrong = wrong_types(self)  # files and the Python API pass what they hold, unchecked
        if wrong:
            raise SaeKitError(f"invalid training settings: {'; '.join(wrong)}")
        if self.dataset is None:
            self.dataset = _default_dataset(self.model)
        elif source_ref(self.model) is not None and self.dataset != self.model:
            raise SaeKitError(f"--model {self.model} makes its own tokens and reads no dataset; "
                              f"leave --dataset unset (got {self.dataset!r})")
        if self.transcoder_skip and self.transcoder_output is None:
            raise SaeKitError("--transcoder-skip makes a skip transcoder: give "
                              "--transcoder-output too (e.g. mlp_out with --hook mlp_in)")
        self._check_lora()
        bad = [f"{name}={getattr(self, name)!r} must be {rule}{_flag_hint(name)}"
               for name, rule in self._broken_rules()]
        if bad:
            raise SaeKitError(f"invalid training settings: {'; '.join(bad)}; see "
                              "`sae-kit train --help`")

    def _check_lora(self) -> None:
        """--lora trains adapters around SAEs that already exist, with the KL alone."""
        if not self.lora:
            return
        if self.init_from is None:
            raise SaeKitError("--lora trains adapters around a frozen, existing SAE: give it "
                              "with --init-from SOURCE (an SAE or run directory, SAELens, "
                              "sparsify, or a Hub id)")
        if self.loss != "e2e" or self.finetune_fraction:
            what = f"--loss {self.loss}" if self.loss != "e2e" else "--finetune-fraction"
            raise SaeKitError(f"--lora trains against KL(original || spliced + adapted), the "
                              f"e2e loss: drop {what}")

    def _broken_rules(self) -> list[tuple[str, str]]:
        """(field, the rule it breaks) for each setting out of range, in field order."""
        ok = {
            "dict_ratio": (self.dict_ratio > 0, "> 0"),
            "sparsity_coeff": (self.sparsity_coeff >= 0, ">= 0"),
            "batch_size": (self.batch_size >= 1, ">= 1"),
            "grad_accum": (self.grad_accum is None or self.grad_accum >= 1, ">= 1"),
            "context": (self.context is None or self.context >= 2, ">= 2 tokens"),
            "n_samples": (self.n_samples is None or self.n_samples >= 1, ">= 1"),
            "lr": (self.lr is None or self.lr > 0, "> 0"),
            "warmup_fraction": (0 <= self.warmup_fraction < 1, "from 0 up to (not including) 1"),
            "min_lr_ratio": (0 <= self.min_lr_ratio <= 1, "from 0 to 1"),
            "grad_clip": (self.grad_clip is None or self.grad_clip > 0,
                          "> 0 (0 on the command line turns clipping off)"),
            "seed": (0 <= self.seed < 2**32, "a whole number from 0 to 2**32-1"),
            "dtype": (self.dtype in DTYPE_NAMES, f"one of {', '.join(DTYPE_NAMES)}"),
            "log_every": (self.log_every >= 1, ">= 1"),
            "save_every": (self.save_every >= 1, ">= 1"),
            "keep_checkpoints": (self.keep_checkpoints >= 1, ">= 1"),
            "finetune_fraction": (0 <= self.finetune_fraction < 1,
                                  "from 0 up to (not including) 1"),
            "skip_samples": (self.skip_samples >= 0, ">= 0"),
            "lora_rank": (self.lora_rank >= 1, ">= 1"),
            "lora_alpha": (self.lora_alpha is None or self.lora_alpha > 0, "> 0"),
            "lora_layers": (self.lora_layers in LORA_LAYERS, f"one of {', '.join(LORA_LAYERS)}"),
        }
        broken = []
        for name in (f.name for f in dataclasses.fields(self) if f.name in ok):
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                broken.append((name, "a finite number (not inf or nan)"))  # checked first
            elif not ok[name][0]:
                broken.append((name, ok[name][1]))
        return broken

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.grad_accum

    @property
    def data_spec(self) -> DataSpec:
        """The text to train on (and whose held-out part evaluates the run)."""
        from sae_kit.data import DataSpec  # imports torch; this module stays torch-free

        return DataSpec(self.dataset, self.split, self.eval_split, self.text_column)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _default_dataset(model: str) -> str:
    """The built-in text, for the built-in model only: a real model would loop over it.

    A model built by a source plugin brings its own tokens: its name is its dataset.
    """
    if source_ref(model) is not None:
        return model
    if model != BUILTIN_MODEL_NAME:
        raise SaeKitError(
            f"--model {model} needs --dataset (a Hub dataset id or local .txt/.jsonl/.parquet "
            f"files): the built-in {BUILTIN_DATASET_NAME!r} text is ~100k tokens, which the "
            "paper's 400k samples of 1024 tokens would pass over ~4,000 times; pass --dataset "
            f"{BUILTIN_DATASET_NAME} to train on it anyway"
        )
    return BUILTIN_DATASET_NAME


SHARED_IN_ONE_PASS = (
    "model", "revision", "dataset", "split", "eval_split", "text_column", "context", "batch_size",
    "grad_accum", "n_samples", "seed", "device", "dtype", "log_every", "save_every",
    "keep_checkpoints", "clean_cache", "skip_samples",
)
"""Settings that runs trained in one shared pass (``sae_kit.train.group``) must agree on: they
set the model, the data stream and the steps. The seed is among them because it sets the data
order as well as the SAEs' initialisation."""


HOW_NOT_WHAT = ("output_dir", "device", "compile", "save_every", "keep_checkpoints",
                "log_every", "trackers", "clean_cache")
"""Settings that say where and how a run went, not what it trained: a sweep never compares
them, a Pareto series never splits on them."""
HOW_NOT_WHAT_OPTIONS = ("loss_options.kl_cache_mb",)
"""Options of that kind: the KL's cache budget changes memory, not a single value."""


def trained_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """What a run trained, from a config's fields (``to_dict()`` or a config.json): JSON values
    (tuples as lists, as saved), a table's keys as ``name.key`` (so a message can name the one
    option that differs), HOW_NOT_WHAT left out."""
    kept = json.loads(json.dumps({k: v for k, v in settings.items() if k not in HOW_NOT_WHAT},
                                 default=str))
    flat = {}
    for name, value in kept.items():
        if isinstance(value, dict):
            flat.update({f"{name}.{key}": v for key, v in value.items()})
        else:
            flat[name] = value
    return {name: value for name, value in flat.items() if name not in HOW_NOT_WHAT_OPTIONS}


def _flag_hint(name: str) -> str:
    """`` (--lambda)`` where a field's flag is not its ``--field-name``."""
    return " (--lambda, or lambda in a settings file)" if name == "sparsity_coeff" else ""

