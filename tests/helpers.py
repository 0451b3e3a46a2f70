"""Helpers shared by the tests (fixtures live in conftest.py; tiny model builders in
tiny_models.py; the fake Hub server in fake_hub.py; the fake LLM server in fake_llm.py; metric
oracles in oracles.py). Test files import from here, never from each other."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

FIRST_PARTY = "sae-kit,sae-kit-gpt2,sae-kit-pythia,sae-kit-llama,sae-kit-synthetic"
"""The distributions whose plugins the tests see (SAE_KIT_PLUGINS)."""

FAST = ["--dataset", "pydoc", "--n-samples", "8", "--batch-size", "2", "--grad-accum", "2",
        "--context", "32", "--dict-ratio", "4", "--log-every", "1", "--device", "cpu"]
"""`sae-kit train` options for a run of a few seconds on a tiny model."""

SAE_AT_1 = "blocks.1.hook_resid_pre"
SAVE_EVERY_STEP = ["--dataset", "pydoc", "--n-samples", "12", "--batch-size", "2",
                   "--grad-accum", "2", "--context", "16", "--dict-ratio", "4", "--log-every",
                   "1", "--device", "cpu", "--layer", "1", "--save-every", "1",
                   "--keep-checkpoints", "2"]
"""Three optimizer steps with an SAE at SAE_AT_1 and a checkpoint after each (two kept)."""

HUB_TOKEN = "hf_TestTokenDoNotLeak0123456789abcdefXYZ"
"""The token the fake Hub accepts; no output or file may ever contain it."""

AUXK_OFF = {"auxk": False, "auxk_k": 512, "auxk_coeff": 1 / 32, "dead_tokens": 10_000_000}
"""The AuxK options every TopK-family SAE records: off, with Gao et al. 2024's defaults."""

def identity_sae(d_in: int, n_dict: int) -> Any:
    """A ReLU SAE whose output is its input exactly (its codes are the ReLU SAE's, so a
    sparsity term is defined): splicing it must leave the model's outputs unchanged."""
    from sae_kit.architectures.relu import ReluSAE

    class IdentitySAE(ReluSAE):
        def forward(self, x, *args, **kwargs):
            out = super().forward(x, *args, **kwargs)
            out.output = x
            return out

    return IdentitySAE(d_in, n_dict)


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
                 hook_point: str | None = None, **options: int) -> Path:
    """An SAE directory with a non-zero b_dec and decoder columns of very different norms
    (at ``hook_point``, by default ``blocks.{layer}.hook_resid_pre``)."""
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
    hp = HookPoint.parse(hook_point) if hook_point else HookPoint(layer)
    return save_sae(sae, hp, path / hp.name, extra)


def run_record(context: int = 64, d_in: int = SAE_D_IN, n_dict: int = SAE_N_DICT,
               **settings: Any) -> Any:
    """A RunRecord as training writes it; ``settings`` are TrainConfig fields (by default
    model gpt2, dataset pydoc, loss e2e)."""
    from sae_kit.record.config import TrainConfig
    from sae_kit.record.run_record import Resolved, RunRecord

    config = TrainConfig(**{"model": "gpt2", "dataset": "pydoc", "loss": "e2e", **settings})
    resolved = Resolved(context=context, n_samples=1, total_steps=1, warmup_steps=0,
                        d_model=d_in, n_dict=n_dict, n_layers=2, model_type="gpt2",
                        adapter="gpt2", device="cpu")
    return RunRecord(config, resolved)


def write_run_record(run_dir: Path, context: int = 64, d_in: int = SAE_D_IN,
                     n_dict: int = SAE_N_DICT, **settings: Any) -> Path:
    """A run directory's config.json as training writes it (a RunRecord), for SAEs saved by
    hand; ``settings`` are TrainConfig fields. Returns the file."""
    from sae_kit.store.jsonio import write_json_atomic
    from sae_kit.store.run_dir import RunDir

    path = RunDir(run_dir).config
    write_json_atomic(path, run_record(context, d_in, n_dict, **settings).to_json())
    return path


def hub_cli(args: list[str], home: Path, endpoint: str, token: str | None = HUB_TOKEN,
            python: str | None = None, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the CLI (or a Python snippet) in a clean process: no HF_* settings but ours."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("HF_", "HUGGING_FACE_", "TRANSFORMERS_OFFLINE"))}
    clean.update(HF_HOME=str(home), HF_ENDPOINT=endpoint, SAE_KIT_PLUGINS=FIRST_PARTY,
                 **(env or {}))
    if token:
        clean["HF_TOKEN"] = token
    cmd = [sys.executable, "-c", python, *args] if python else [sys.executable, "-m", "sae_kit",
                                                                 *args]
    # The bound only catches a hang: importing sae_lens (and transformer_lens) on a loaded
    # 2-core machine took over 180 s.
    return subprocess.run(cmd, env=clean, capture_output=True, text=True, timeout=600, cwd=cwd)


def one_line_error(result: Any, *needles: str) -> str:
    """Exit code 2, no traceback, and one `error: ...` line, the last (log lines may precede)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", line)  # log timestamps
             for line in result.stderr.strip().splitlines()]
    assert "Traceback" not in result.output
    assert [line for line in lines if line.startswith("error")] == lines[-1:], lines
    assert all(line.startswith(("error: ", "loading model", "model ", "run directory",
                                    "eval "))
               or re.search(r" \d+/\d+ \(\d+%\)", line)  # progress lines off a terminal
               for line in lines), lines
    flat = " ".join(lines[-1].split())
    for needle in needles:
        assert needle in flat, flat
    return flat


def pareto_series(results: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """eval.pareto.pareto_points without the point labels: (L0, CE increase) per series."""
    from sae_kit.eval.pareto import pareto_points

    return {label: [(x, y) for x, y, _ in points]
            for label, points in pareto_points(results).items()}


def first_windows(spec: Any, part: str, tokenizer: Any, context: int,
                  limit: int) -> list[list[int]]:
    """Up to ``limit`` windows of one part, in dataset order, as evaluation reads them."""
    import itertools

    from sae_kit.data import part_windows

    return list(itertools.islice(part_windows(spec, part, tokenizer, context), limit))
