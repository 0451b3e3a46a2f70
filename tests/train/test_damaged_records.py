"""A damaged `group.json` or `failed.json` is one line that says how to go on (issue 21: a
traceback). Each damage is tried through the command that reads the file."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app
from tests.helpers import SAVE_EVERY_STEP, cli_train, one_line_error

runner = CliRunner()
pytestmark = pytest.mark.integration  # the CLI and whole runs

DAMAGED = {
    "not JSON": b'{"format": "sae-kit-',
    "not UTF-8": b"\xff\xfe\x00",
    "a list": b"[1, 2]",
    "a number": b"5",
    "another format": b'{"format": "sae-kit-group/9", "members": ["lambda0.5"]}',
}
GROUP_DAMAGED = {
    **DAMAGED,
    "no members": b'{"format": "sae-kit-group/1"}',
    "members a string": b'{"format": "sae-kit-group/1", "members": "lambda0.5"}',
    "members numbers": b'{"format": "sae-kit-group/1", "members": [5]}',
    "members empty": b'{"format": "sae-kit-group/1", "members": []}',
    "a member blank": b'{"format": "sae-kit-group/1", "members": [""]}',
}
FAILED_DAMAGED = {
    **DAMAGED,
    "no step": b'{"format": "sae-kit-failed/1", "reason": "r", "error": "e"}',
    "step a string": b'{"format": "sae-kit-failed/1", "step": "2", "reason": "r", "error": "e"}',
    "error a list": b'{"format": "sae-kit-failed/1", "step": 2, "reason": "r", "error": []}',
}


@pytest.fixture(scope="module")
def trained_group(tiny_gpt2, tmp_path_factory):
    group = tmp_path_factory.mktemp("group") / "g"
    result = cli_train(tiny_gpt2, group, "--lambda", "0.5,1", base=SAVE_EVERY_STEP)
    assert result.exit_code == 0, result.output
    return group


@pytest.fixture
def group(trained_group, tmp_path):
    copy = tmp_path / "g"
    shutil.copytree(trained_group, copy)
    for member in ("lambda0.5", "lambda1"):  # config.json names its own directory
        config = json.loads((copy / member / "config.json").read_text())
        config["output_dir"] = str(copy / member)
        (copy / member / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize("text", GROUP_DAMAGED.values(), ids=GROUP_DAMAGED.keys())
def test_a_damaged_group_json_is_one_line_naming_the_lone_resumes(group, text):
    (group / "group.json").write_bytes(text)
    result = runner.invoke(app, ["train", "--resume", str(group)])
    one_line_error(result, f"{str(group / 'group.json')!r} is not a readable sae-kit group file",
                   f"sae-kit train --resume {group / 'lambda0.5'}; "
                   f"sae-kit train --resume {group / 'lambda1'}")


def test_the_lone_resume_a_damaged_group_json_names_works(group):
    (group / "group.json").write_text("[]")
    result = runner.invoke(app, ["train", "--resume", str(group / "lambda1")])
    assert result.exit_code == 0, result.output
    assert "all 3 steps were already trained" in result.output


@pytest.mark.parametrize("text", FAILED_DAMAGED.values(), ids=FAILED_DAMAGED.keys())
def test_a_damaged_failed_json_of_a_member_is_one_line(group, text):
    (group / "lambda1" / "failed.json").write_bytes(text)
    result = runner.invoke(app, ["train", "--resume", str(group)])
    one_line_error(result, f"{str(group / 'lambda1' / 'failed.json')!r} is not a readable "
                   "sae-kit failure record", "delete it to resume that run")
    (group / "lambda1" / "failed.json").unlink()  # the mend it names works
    assert runner.invoke(app, ["train", "--resume", str(group)]).exit_code == 0


@pytest.mark.parametrize("text", FAILED_DAMAGED.values(), ids=FAILED_DAMAGED.keys())
def test_a_damaged_failed_json_of_a_sweep_point_is_one_line(tmp_path, text):
    path = tmp_path / "sweep.toml"
    path.write_text(f'out = "{tmp_path / "runs"}"\n[base]\nmodel = "{tmp_path / "m"}"\n'
                    'dataset = "pydoc"\n[[runs]]\nname = "a"\n')
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "failed.json").write_bytes(text)
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "is not a readable sae-kit failure record" in result.output
    assert result.output.count("error:") == 1
    assert not (tmp_path / "runs" / "a" / "config.json").exists()  # nothing was trained
