"""network.hub_ref: the one parser of a reference that is not a local path into the Hub repo
and the path inside it; every command that takes a run, an SAE or a model card's base model
asks it."""

import pytest

from sae_kit.errors import SaeKitError
from sae_kit.network import HubRef, hub_ref, parse_hub_ref


@pytest.mark.parametrize(("ref", "repo_id", "subfolder"), [
    ("alice/gpt2-saes", "alice/gpt2-saes", None),
    ("alice/gpt2-saes/blocks.6.hook_resid_pre", "alice/gpt2-saes", "blocks.6.hook_resid_pre"),
    ("alice/gpt2-saes/runs/a/blocks.6.hook_resid_pre", "alice/gpt2-saes",
     "runs/a/blocks.6.hook_resid_pre"),
    ("EleutherAI/pythia-70m", "EleutherAI/pythia-70m", None),
])
def test_a_hub_id_splits_into_repo_and_path_inside_it(tmp_path, monkeypatch, ref, repo_id,
                                                      subfolder):
    monkeypatch.chdir(tmp_path)
    assert hub_ref(ref) == HubRef(repo_id, subfolder)
    assert str(hub_ref(ref)) == ref


@pytest.mark.parametrize("ref", ["./alice/saes", "/abs/saes", "~/saes", "runs/a/", "alice/saes/"])
def test_what_is_written_as_a_path_is_no_hub_reference(tmp_path, monkeypatch, ref):
    monkeypatch.chdir(tmp_path)
    assert hub_ref(ref) is None


def test_an_existing_directory_or_a_name_under_one_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "a").mkdir(parents=True)
    assert hub_ref("runs/a") is None
    assert hub_ref("runs/typo") is None  # a mistyped run directory, not a Hub repo "runs/typo"


def test_a_bare_name_is_a_hub_id_only_where_legacy_ids_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hub_ref("gpt2") is None  # a run or an SAE: a missing local directory
    assert hub_ref("gpt2", bare=True) == HubRef("gpt2")  # a model: the canonical id


@pytest.mark.parametrize(("ref", "message"), [
    ("alice/my saes", "bad repo id 'alice/my saes': expected namespace/name, e.g. "
                      "alice/gpt2-e2e-saes (letters, digits, '-', '_', '.'"),
    ("alice//x", "bad repo id 'alice//x': expected namespace/name, e.g. "
                 "alice/gpt2-e2e-saes[/subfolder]"),
    ("alice/a--b/blocks.6.hook_resid_pre", "bad repo id 'alice/a--b/blocks.6.hook_resid_pre'"),
])
def test_a_malformed_hub_id_is_one_line_saying_what_an_id_looks_like(tmp_path, monkeypatch, ref,
                                                                     message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SaeKitError) as caught:
        hub_ref(ref)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_bare_name_that_cannot_be_an_id_is_refused_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SaeKitError, match="bad repo id 'my model'"):
        hub_ref("my model", bare=True)


def test_a_push_target_is_exactly_namespace_slash_name():
    assert parse_hub_ref("alice/saes", allow_subfolder=False) == HubRef("alice/saes")
    with pytest.raises(SaeKitError, match="bad repo id 'alice/saes/x': expected namespace/name"):
        parse_hub_ref("alice/saes/x", allow_subfolder=False)
