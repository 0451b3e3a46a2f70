"""Helpers shared by the tests (fixtures live in conftest.py; tiny model builders in
tiny_models.py; the fake Hub server in fake_hub.py). Test files import from here, never from
each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIRST_PARTY = "sae-kit,sae-kit-gpt2,sae-kit-pythia,sae-kit-llama"
"""The distributions whose plugins the tests see (SAE_KIT_PLUGINS)."""

FAST = ["--dataset", "pydoc", "--n-samples", "8", "--batch-size", "2", "--grad-accum", "2",
        "--context", "32", "--dict-ratio", "4", "--log-every", "1", "--device", "cpu"]
"""`sae-kit train` options for a run of a few seconds on a tiny model."""

SAE_D_IN, SAE_N_DICT = 8, 24
"""Sizes of the SAE that make_sae_dir writes."""


def cli_train(model_dir: Path | str, out: Path, *extra: str, base: list[str] = FAST) -> Any:
    """`sae-kit train --model MODEL_DIR --out OUT` with ``base`` and ``extra`` options."""
    from typer.testing import CliRunner

    from sae_kit.cli import app

    return CliRunner().invoke(app, ["train", "--model", str(model_dir), "--out", str(out),
                                    *base, *extra])


def save_tiny_model(model: Any, tokenizer_dir: Path, path: Path) -> Path:
    """Save a model with the tiny tokenizer, loadable by `from_pretrained`."""
    from transformers import AutoTokenizer

    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(path)
    return path


def make_sae_dir(path: Path, layer: int = 1, seed: int = 0, arch: type | None = None,
                 **options: int) -> Path:
    """An SAE directory with a non-zero b_dec and decoder columns of very different norms."""
    import torch

    from sae_kit.architectures.relu import ReluSAE
    from sae_kit.model.hookpoints import HookPoint
    from sae_kit.store.sae_dir import save_sae

    torch.manual_seed(seed)
    sae = (arch or ReluSAE)(SAE_D_IN, SAE_N_DICT, **options)
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.2, 5.0, SAE_N_DICT))
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    extra = {"model": "gpt2", "revision": None, "loss": "e2e", "sparsity_coeff": 1.5,
             "dataset": "Skylion007/openwebtext", "context": 64, "tokens_trained": 1000}
    return save_sae(sae, HookPoint(layer), path / HookPoint(layer).name, extra)
