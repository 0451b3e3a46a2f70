from importlib.metadata import EntryPoint

import pytest

from sae_kit import plugins
from sae_kit.errors import SaeKitError


def test_first_party_plugins_are_found_through_entry_points():
    assert {"local", "e2e", "e2e+ds"} <= set(plugins.discover("losses"))
    assert "gpt2" in plugins.discover("models")
    assert plugins.load("losses", "e2e").name == "e2e"


def test_duplicate_names_from_two_distributions_raise(monkeypatch):
    a = EntryPoint("e2e", "pkg_a:Loss", "sae_kit.losses")
    b = EntryPoint("e2e", "pkg_b:Loss", "sae_kit.losses")
    monkeypatch.setattr(plugins, "entry_points", lambda group: [a, b])
    monkeypatch.delenv("SAE_KIT_PLUGINS")
    with pytest.raises(SaeKitError, match="two plugins named 'e2e'"):
        plugins.discover("losses")


def test_env_var_restricts_distributions(monkeypatch):
    monkeypatch.setenv("SAE_KIT_PLUGINS", "sae-kit")
    assert "gpt2" not in plugins.discover("models")
    assert "e2e" in plugins.discover("losses")


def test_broken_plugin_import_is_a_clear_error(monkeypatch):
    broken = EntryPoint("bad", "no_such_module_xyz:Thing", "sae_kit.losses")
    monkeypatch.setattr(plugins, "entry_points", lambda group: [broken])
    monkeypatch.delenv("SAE_KIT_PLUGINS")
    with pytest.raises(SaeKitError, match="plugin 'bad' from .* failed to import"):
        plugins.load("losses", "bad")
