"""The shipped sae-kit-tiny model loads like a Hub model and is a real (trained) LM."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from sae_kit.builtin import (
    BUILTIN_DATASET_NAME,
    BUILTIN_MODEL_NAME,
    builtin_model_dir,
    pydoc_texts,
)


def test_names() -> None:
    assert BUILTIN_MODEL_NAME == "sae-kit-tiny"
    assert BUILTIN_DATASET_NAME == "pydoc"
    assert builtin_model_dir().name == BUILTIN_MODEL_NAME


def test_split_nonempty_disjoint_deterministic() -> None:
    train, eval_ = pydoc_texts("train"), pydoc_texts("eval")
    assert train and eval_
    assert all(t.strip() for t in train + eval_)
    assert not set(train) & set(eval_)
    # No substantive eval paragraph leaks into training through overlapping topics.
    train_text = "\n\n".join(train)
    for doc in eval_:
        for para in doc.split("\n\n"):
            if len(para.strip()) >= 40:
                assert para.strip() not in train_text
    assert pydoc_texts("train") == train
    assert pydoc_texts("eval") == eval_
    # Callers may mutate what they get back without affecting later calls.
    train.clear()
    assert pydoc_texts("train")
    with pytest.raises(ValueError):
        pydoc_texts("test")  # type: ignore[arg-type]


@pytest.mark.integration
def test_split_is_stable_across_processes() -> None:
    # str hashes are salted per process; the split must not depend on them.
    code = (
        "from sae_kit.builtin import pydoc_texts; import hashlib;"
        "print(hashlib.sha256('\\x00'.join(pydoc_texts('eval')).encode()).hexdigest())"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2)
    }
    assert len(outs) == 1


def test_shipped_model_beats_uniform_on_heldout() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = builtin_model_dir()
    assert (path / "model.safetensors").is_file(), "run: python scripts/train_tiny_lm.py"

    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    vocab = model.config.vocab_size
    assert len(tok) == vocab
    assert tok.eos_token == tok.bos_token == "<|endoftext|>"
    assert next(model.parameters()).dtype == torch.float32

    # Same stream layout as training: each document preceded by eos.
    ids: list[int] = []
    for doc in pydoc_texts("eval"):
        ids.append(tok.eos_token_id)
        # verbose=False: whole documents exceed model_max_length; they are cut below.
        ids.extend(tok(doc, add_special_tokens=False, verbose=False)["input_ids"])
    seq = 128
    n_win = min(8, (len(ids) - 1) // seq)
    assert n_win >= 4
    x = torch.tensor([ids[i * seq : i * seq + seq + 1] for i in range(n_win)])
    with torch.no_grad():
        logits = model(x[:, :-1]).logits
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, vocab), x[:, 1:].reshape(-1)
    ).item()
    assert math.isfinite(ce)
    assert ce < 0.75 * math.log(vocab), (ce, math.log(vocab))

    summary = json.loads((path / "training_summary.json").read_text())
    assert summary["heldout_loss"] < 0.75 * summary["ln_vocab"]
    assert summary["params"] == sum(p.numel() for p in model.parameters())
