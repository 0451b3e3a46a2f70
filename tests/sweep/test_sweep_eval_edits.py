"""An edit of a sweep's own eval settings evaluates its points again (issue 21: the old
eval.json was kept silently and results.md rewritten from it). Training is never redone."""

import json

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app

runner = CliRunner()
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]


def _sweep(tmp_path, model_dir, top):
    path = tmp_path / "sweep.toml"
    path.write_text(f'out = "{tmp_path / "runs"}"\n{top}\n[base]\nmodel = "{model_dir}"\n'
                    'dataset = "pydoc"\ncontext = 16\nbatch_size = 2\ngrad_accum = 1\n'
                    'n_samples = 4\ndict_ratio = 4\nlayer = 1\nloss = "local"\ndevice = "cpu"\n'
                    '[[runs]]\nname = "a"\n')
    return path


def _sweep_run(path):
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 0, result.output
    return result.output


def _eval(tmp_path):
    return json.loads((tmp_path / "runs" / "a" / "eval.json").read_text())


@pytest.mark.parametrize(("before", "after", "said"), [
    ("eval_tokens = 64", "eval_tokens = 128", "eval_tokens 64 → 128"),
    ("eval_tokens = 64\neval_alive_tokens = 64", "eval_tokens = 64\neval_alive_tokens = 128",
     "eval_alive_tokens 64 → 128"),
])
def test_an_edited_eval_setting_evaluates_again_once(tiny_gpt2, tmp_path, before, after, said):
    path = _sweep(tmp_path, tiny_gpt2, before)
    _sweep_run(path)
    first = _eval(tmp_path)
    trained = (tmp_path / "runs" / "a" / "metrics.jsonl").read_bytes()
    path.write_text(path.read_text().replace(before, after))
    output = _sweep_run(path)
    assert f"a was evaluated with {said}; evaluating it again" in " ".join(output.split())
    second = _eval(tmp_path)
    assert (second["n_tokens"], second["alive_n_tokens"]) != (first["n_tokens"],
                                                              first["alive_n_tokens"])
    assert (tmp_path / "runs" / "a" / "metrics.jsonl").read_bytes() == trained  # not retrained
    again = _sweep_run(path)
    assert "evaluating" not in again  # up to date now


def test_a_batch_size_edit_changes_no_figure_and_evaluates_nothing(tiny_gpt2, tmp_path):
    path = _sweep(tmp_path, tiny_gpt2, "eval_tokens = 64\neval_batch_size = 2")
    _sweep_run(path)
    path.write_text(path.read_text().replace("eval_batch_size = 2", "eval_batch_size = 4"))
    assert "evaluating" not in _sweep_run(path)


def test_a_point_evaluated_by_an_older_sae_kit_is_judged_by_its_eval_json(tiny_gpt2, tmp_path):
    path = _sweep(tmp_path, tiny_gpt2, "eval_tokens = 64")
    _sweep_run(path)
    (tmp_path / "runs" / "a" / "sweep-eval.json").unlink()  # what an older sae-kit left
    assert "evaluating" not in _sweep_run(path)  # the same tokens: kept
    assert not (tmp_path / "runs" / "a" / "sweep-eval.json").exists()
    path.write_text(path.read_text().replace("eval_tokens = 64", "eval_tokens = 128"))
    output = " ".join(_sweep_run(path).split())
    assert "a was evaluated with eval_tokens 64 tokens → 128; evaluating it again" in output
    assert _eval(tmp_path)["n_tokens"] == 128
