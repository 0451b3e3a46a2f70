"""Shared fixtures: tiny models built from config, saved and loaded through `from_pretrained`.

Also the feature-report runs that test_cli_features and test_report_browser share. Nothing is
downloaded. Plugins are restricted to the first-party distributions so a plugin
installed locally by a developer cannot change what the tests see.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import FIRST_PARTY, cli_train, save_tiny_model
from tests.suite_rules import mark_units


def pytest_configure(config: pytest.Config) -> None:
    # Tiny models gain nothing from threads, and on a shared 2-core machine threads make them
    # many times slower; subprocesses (CLI, torchrun tests) inherit the variable.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_units(items)  # `pytest -m unit` is the fast inner loop


@pytest.fixture(autouse=True)
def _only_first_party_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAE_KIT_PLUGINS", FIRST_PARTY)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer (vocab 512) trained on the built-in text, saved to disk."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from sae_kit.builtin import pydoc_texts

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(pydoc_texts("train")[:200], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    path = tmp_path_factory.mktemp("tokenizer")
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: Path) -> Path:
    """A 3-layer GPT-2 with random weights, as a local directory."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=512, n_positions=64, n_embd=32, n_layer=3, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    return save_tiny_model(
        GPT2LMHeadModel(config), tiny_tokenizer_dir, tmp_path_factory.mktemp("tiny-gpt2")
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: Path, tiny_gpt2):
    """Family name (gpt2 or one in tests/tiny_models.py) -> a tiny model's directory."""
    from tests.tiny_models import build

    made = {"gpt2": tiny_gpt2}

    def get(family: str) -> Path:
        if family not in made:
            path = tmp_path_factory.mktemp(f"tiny-{family}")
            made[family] = save_tiny_model(build(family), tiny_tokenizer_dir, path)
        return made[family]

    return get


@pytest.fixture(scope="module")
def runs(tiny_gpt2, tmp_path_factory):
    """local (seed 0), local (seed 1) and e2e (seed 0) runs at layer 1 of the tiny GPT-2."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, args in {"local0": ["--loss", "local"], "local1": ["--loss", "local", "--seed", "1"],
                       "e2e0": ["--loss", "e2e"]}.items():
        result = cli_train(tiny_gpt2, root / name, "--layer", "1", *args)
        assert result.exit_code == 0, result.output
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    """`sae-kit features` on the first local run: the report directory."""
    from typer.testing import CliRunner

    from sae_kit.cli import app

    runner = CliRunner()
    out = tmp_path_factory.mktemp("report")
    result = runner.invoke(app, ["features", str(runs["local0"]), "--tokens", "320", "--out",
                                 str(out), "--device", "cpu", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out / "index.html")
    return out


@pytest.fixture(scope="module")
def loaded(family, tiny_model_dir):
    """The tiny model of the module's ``family`` fixture, through ``load_model`` (modules
    without a ``family`` define their own ``loaded``)."""
    from sae_kit.model.loading import load_model

    return load_model(str(tiny_model_dir(family)))


@pytest.fixture(scope="module")
def ids():
    """A batch of 2 x 16 token ids of the tiny models' 512-token vocabulary."""
    import torch

    torch.manual_seed(1)
    return torch.randint(0, 512, (2, 16))


@pytest.fixture(scope="module")
def reference(loaded, ids):
    """Hugging Face's own forward pass of ``loaded`` on ``ids``, with every hidden state."""
    import torch

    with torch.no_grad():
        return loaded.model(ids, output_hidden_states=True)


@pytest.fixture(scope="module")
def importance_report(runs, tmp_path_factory):
    """`sae-kit features --importance` on the e2e run: the report directory."""
    from typer.testing import CliRunner

    from sae_kit.cli import app

    out = tmp_path_factory.mktemp("importance-report")
    result = CliRunner().invoke(app, ["features", str(runs["e2e0"]), "--tokens", "192", "--out",
                                      str(out), "--device", "cpu", "--batch-size", "2",
                                      "--importance", "--exact-top", "5", "--exact-random", "3"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def one_thread():
    """torch on one thread for the test (deterministic CPU kernels for exact comparisons)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
