"""One home per shared rule: run-directory names, local path or Hub id, hook-point arithmetic."""

import subprocess
import sys

import pytest

from sae_kit.model.hookpoints import HookPoint
from sae_kit.network import is_local_ref
from sae_kit.store.run_dir import RunDir


def test_run_dir_names_its_files(tmp_path):
    run = RunDir(tmp_path)
    assert run.config == tmp_path / "config.json"
    assert run.metrics == tmp_path / "metrics.jsonl"
    assert run.eval == tmp_path / "eval.json"
    assert run.checkpoints == tmp_path / "checkpoints"
    assert run.sae(HookPoint(2)) == tmp_path / "blocks.2.hook_resid_pre"
    assert not run.is_run()
    run.config.write_text("{}")
    assert run.is_run()


@pytest.mark.parametrize("ref, local", [
    ("./missing", True), ("/missing/abs", True), ("~/missing", True),
    ("alice/data", False), ("gpt2", False),
])
def test_local_path_or_hub_id(ref, local):
    assert is_local_ref(ref) is local


def test_an_existing_directory_is_local_even_without_a_path_prefix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alice" / "data").mkdir(parents=True)
    assert is_local_ref("alice/data")


def test_hook_point_arithmetic():
    assert HookPoint(3, "resid_post").position == HookPoint(4, "resid_pre").position == 4
    assert HookPoint.output_at(4) == HookPoint(3, "resid_post")
    assert HookPoint(1).downstream(4) == [2, 3, 4]
    assert HookPoint(1, "resid_post").downstream(4) == [3, 4]
    assert HookPoint(3, "resid_post").downstream(4) == []


@pytest.mark.integration
def test_json_helpers_and_run_layout_import_no_torch():
    code = ("import sys, sae_kit.store.jsonio, sae_kit.store.run_dir, sae_kit.network; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
