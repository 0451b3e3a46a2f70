"""`sae_kit.load_sae` and `resolve_sae_source` on local directories (the Hub: test_hub.py).

A run or SAE directory plus a hook point names one SAE: `sae_kit.load_sae` and the analysis
commands' open_source (features, importance, compare, explain) ask one helper
(store.sources.pick_sae), so each mistake reads the same in both."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import sae_kit
from sae_kit.errors import SaeKitError
from sae_kit.eval.analysis.source import open_source
from sae_kit.store.sae_dir import load_sae_dir
from sae_kit.store.sources import resolve_sae_source
from tests.helpers import make_sae_dir

HOOK0, HOOK2 = "blocks.0.hook_resid_pre", "blocks.2.hook_resid_pre"


@pytest.fixture
def run(tmp_path):
    make_sae_dir(tmp_path / "run", layer=0)
    make_sae_dir(tmp_path / "run", layer=2, seed=1)
    return tmp_path / "run"


def test_load_by_sae_dir_or_run_dir_and_hook_point(run):
    x = torch.randn(3, 8)
    by_dir, _ = sae_kit.load_sae(run / HOOK2)
    by_run, config = sae_kit.load_sae(run, HOOK2)
    direct, _ = load_sae_dir(run / HOOK2)
    assert config["hook_point"] == HOOK2
    assert torch.equal(by_dir(x).output, direct(x).output)
    assert torch.equal(by_run(x).output, direct(x).output)


def test_a_run_with_one_sae_needs_no_hook_point(tmp_path):
    make_sae_dir(tmp_path / "run", layer=0)
    _, config = sae_kit.load_sae(str(tmp_path / "run"))
    assert config["hook_point"] == HOOK0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None,), f"holds 2 SAEs ({HOOK0}, {HOOK2}); name the hook point"),
        (("blocks.1.hook_resid_pre",), f"has no SAE at blocks.1.hook_resid_pre; it has {HOOK0}"),
        (("blocks.1.hook_attn",), "unknown hook point kind hook_attn in 'blocks.1.hook_attn'"),
        (("1.attn",), "bad hook point '1.attn'"),
        (("blocks.1.attn",), "has no SAE at blocks.1.attn; it has"),  # a module path
    ],
)
def test_ambiguous_or_missing_sae_is_a_clear_error(run, args, message):
    with pytest.raises(SaeKitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sae_kit.load_sae(run, *args)


def test_local_paths_resolve_as_themselves(run):
    assert resolve_sae_source(str(run)) == run
    with pytest.raises(SaeKitError, match="does not exist"):
        resolve_sae_source(str(run / "nope"))
    with pytest.raises(SaeKitError, match="does not exist"):
        resolve_sae_source("justaname")
    with pytest.raises(SaeKitError, match="'justaname' does not exist"):  # the Hub is not asked
        sae_kit.load_sae("justaname", HOOK0)
    with pytest.raises(SaeKitError, match="--revision applies to Hub repos"):
        resolve_sae_source(run, revision="dev")


@pytest.mark.integration
def test_importing_sae_kit_stays_light():
    code = "import sys, sae_kit; print('torch' in sys.modules, callable(sae_kit.load_sae))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def both_errors(ref: str, hook_point: str | None) -> list[str]:
    said = []
    for load in (sae_kit.load_sae, open_source):
        with pytest.raises(SaeKitError) as caught:
            load(ref, hook_point)
        said.append(str(caught.value))
    return said


@pytest.mark.parametrize(("where", "hook_point", "message"), [
    ("", None, f"'{{ref}}' holds 2 SAEs ({HOOK0}, {HOOK2}); name the hook point (--hook-point)"),
    ("", "blocks.1.hook_resid_pre",
     f"'{{ref}}' has no SAE at blocks.1.hook_resid_pre; it has {HOOK0}, {HOOK2}"),
    (HOOK0, HOOK2, f"'{{ref}}' is the SAE at {HOOK0}, not {HOOK2}"),
])
def test_each_mistake_is_one_line_worded_alike_by_both(run, where, hook_point, message):
    ref = str(run / where) if where else str(run)
    assert both_errors(ref, hook_point) == [message.format(ref=ref)] * 2


def test_both_pick_the_same_sae(run):
    _, config = sae_kit.load_sae(str(run), HOOK2)
    source = open_source(str(run), HOOK2)
    assert config["hook_point"] == source.hook_point.name == HOOK2
    assert source.label == "run" and open_source(str(run / HOOK0)).hook_point.name == HOOK0
