"""A mistyped local path says "does not exist" / "no file or directory here", never only
"no network": `--dataset my_texts/` (README's own example) and `--model models/x`."""

import pytest

from sae_kit.data import DataSpec, iter_texts
from sae_kit.errors import SaeKitError
from sae_kit.network import is_local_ref, nor_here


def test_a_name_ending_in_a_slash_is_a_path_and_a_hub_id_is_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_local_ref("my_texts/") and is_local_ref("runs/a/")
    assert not is_local_ref("alice/data") and not is_local_ref("gpt2")


def test_nor_here_speaks_only_of_path_shaped_names_that_are_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert nor_here("gpt2") == ""  # one word: a Hub id, nothing to say about paths
    assert "nor is there a file or directory 'models/x' here" in nor_here("models/x")
    (tmp_path / "models" / "x").mkdir(parents=True)
    assert nor_here("models/x") == ""


def test_a_missing_dataset_directory_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SaeKitError, match="dataset directory 'my_texts/' does not exist"):
        next(iter_texts(DataSpec("my_texts/"), "train"))


def test_a_mistyped_model_directory_is_named_as_a_possible_typo(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import huggingface_hub.file_download

    from sae_kit.model.loading import load_model

    monkeypatch.chdir(tmp_path)  # HF_HUB_OFFLINE=1 (conftest): the Hub is not asked
    # huggingface_hub read the variable at import, before conftest set it: as if it were unset
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    asked: list[str] = []

    def no_metadata(url: str, *args: object, **kwargs: object) -> None:
        asked.append(url)
        raise OSError("no network in tests")

    monkeypatch.setattr(huggingface_hub.file_download, "get_hf_file_metadata", no_metadata)
    with pytest.raises(SaeKitError) as caught:
        load_model("models/x", device="cpu")
    message = str(caught.value)
    assert "'models/x' is not in the local Hugging Face cache" in message
    assert "nor is there a file or directory 'models/x' here (a typo in a local path?)" in message
    assert asked == []  # local_files_only: no file of the repo was asked for
