"""A run or SAE directory plus a hook point names one SAE: `sae_kit.load_sae` and the analysis
commands' open_source (features, importance, compare, explain) ask one helper
(store.sources.pick_sae), so each mistake reads the same in both."""

from __future__ import annotations

import pytest

import sae_kit
from sae_kit.errors import SaeKitError
from sae_kit.eval.analysis.source import open_source
from tests.helpers import make_sae_dir

HOOK0, HOOK2 = "blocks.0.hook_resid_pre", "blocks.2.hook_resid_pre"


@pytest.fixture
def run(tmp_path):
    make_sae_dir(tmp_path / "run", layer=0)
    make_sae_dir(tmp_path / "run", layer=2, seed=1)
    return tmp_path / "run"


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
