"""A process killed at the rename of a JSON file (an SAE's or a run's config.json, eval.json,
group.json, failed.json) leaves its `.NAME.XXXXXXXX` temp file; the next write of that file
deletes it, so none stays for good (issue 21). The kill is a real SIGKILL in a subprocess."""

import subprocess
import sys
import textwrap

import pytest

from sae_kit.model.hookpoints import HookPoint
from sae_kit.store import sae_dir
from sae_kit.store.jsonio import write_json_atomic
from tests.helpers import make_sae_dir

pytestmark = pytest.mark.integration  # the CLI, a subprocess, whole runs

KILLED_AT_THE_RENAME = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from sae_kit.store.jsonio import write_json_atomic
    os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
    write_json_atomic(Path(sys.argv[1]), {"half": True})
""")


def _killed_at_the_rename(path):
    proc = subprocess.run([sys.executable, "-c", KILLED_AT_THE_RENAME, str(path)])
    assert proc.returncode == -9
    left = sorted(p.name for p in path.parent.glob(f".{path.name}.*"))
    assert len(left) == 1, left  # what a kill at that moment leaves
    return left


@pytest.mark.parametrize("name", ["config.json", "eval.json", "group.json", "failed.json"])
def test_the_next_write_deletes_what_a_kill_at_the_rename_left(tmp_path, name):
    path = tmp_path / name
    _killed_at_the_rename(path)
    write_json_atomic(path, {"whole": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_an_sae_saved_again_leaves_no_temp_config(tmp_path):
    directory = make_sae_dir(tmp_path / "sae")
    _killed_at_the_rename(directory / sae_dir.CONFIG)
    sae, config = sae_dir.load_sae_dir(directory)  # the half-written temp file is never read
    sae_dir.save_sae(sae, HookPoint.parse(config["hook_point"]), directory, {})
    assert sorted(p.name for p in directory.iterdir()) == [sae_dir.CONFIG, sae_dir.WEIGHTS]


def test_files_of_the_user_that_only_look_alike_are_kept(tmp_path):
    kept = [".config.json.bak", ".config.json.my-notes", ".config.json.ABCDEFGH"]
    for name in kept:
        (tmp_path / name).write_text("mine")
    write_json_atomic(tmp_path / "config.json", {})
    assert sorted(p.name for p in tmp_path.glob(".*")) == sorted(kept)
