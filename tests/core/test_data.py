"""Datasets: local files of each format, fixed windows, and a held-out part never trained on."""

import json

import pytest
from transformers import AutoTokenizer

from sae_kit.data import HOLDOUT_EVERY, DataSpec, iter_texts, token_windows
from sae_kit.errors import SaeKitError
from tests.helpers import first_windows

DOCS = [f"document number {i} says something about topic {i % 7}." for i in range(60)]


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def _write(tmp_path, kind):
    if kind == "txt":
        path = tmp_path / "docs.txt"
        path.write_text("\n".join(DOCS) + "\n")
    elif kind == "jsonl":
        path = tmp_path / "docs.jsonl"
        rows = [json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(DOCS)]
        path.write_text("".join(rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "docs.parquet"
        pq.write_table(pa.table({"text": DOCS}), path)
    return path


@pytest.mark.parametrize("kind", ["txt", "jsonl", "parquet"])
def test_local_files_split_into_disjoint_train_and_eval(tmp_path, kind):
    spec = DataSpec(str(_write(tmp_path, kind)))
    train, held_out = list(iter_texts(spec, "train")), list(iter_texts(spec, "eval"))
    assert len(held_out) == len(DOCS) // HOLDOUT_EVERY
    assert sorted(train + held_out) == sorted(DOCS)
    assert not set(train) & set(held_out)


def test_a_directory_of_files_is_one_dataset(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(DOCS[:30]) + "\n")
    (tmp_path / "b.txt").write_text("\n".join(DOCS[30:]) + "\n")
    spec = DataSpec(str(tmp_path))
    assert len(list(iter_texts(spec, "train"))) + len(list(iter_texts(spec, "eval"))) == 60


def test_windows_are_full_and_documents_joined_by_eos(tokenizer):
    windows = list(token_windows(DOCS, tokenizer, context=16))
    stream = []
    for doc in DOCS:
        stream += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert all(len(w) == 16 for w in windows)
    assert [t for w in windows for t in w] == stream[: len(windows) * 16]


def test_eval_windows_come_from_held_out_text_only(tmp_path, tokenizer):
    spec = DataSpec(str(_write(tmp_path, "jsonl")))
    held = {t for w in first_windows(spec, "eval", tokenizer, 4, limit=100) for t in w}
    held_text = " ".join(iter_texts(spec, "eval"))
    assert held and all(tokenizer.decode([t]) in held_text + "<|endoftext|>" for t in held)


def test_missing_column_and_missing_file_are_clear(tmp_path):
    spec = DataSpec(str(_write(tmp_path, "jsonl")), text_column="body")
    with pytest.raises(SaeKitError, match="no column 'body'.*'id', 'text'"):
        list(iter_texts(spec, "train"))
    with pytest.raises(SaeKitError, match="does not exist"):
        list(iter_texts(DataSpec(str(tmp_path / "nope.txt")), "train"))


def test_builtin_dataset_has_disjoint_splits():
    spec = DataSpec("pydoc")
    train, held_out = list(iter_texts(spec, "train")), list(iter_texts(spec, "eval"))
    assert train and held_out and not set(train) & set(held_out)
