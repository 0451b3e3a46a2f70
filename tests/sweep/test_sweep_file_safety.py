"""A sweep file may come from a colleague: it writes only under its `out`, and a wrong top-level
value or an absurd grid is one line before anything is made (issue 21)."""

import time

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.errors import SaeKitError
from sae_kit.sweep.names import MAX_POINTS
from sae_kit.sweep.spec import load_sweep

runner = CliRunner()


def _write(tmp_path, body, top=""):
    path = tmp_path / "sweep.toml"
    path.write_text(f'out = "{tmp_path / "runs"}"\n{top}\n[base]\nmodel = "gpt2"\n'
                    f'dataset = "pydoc"\ncontext = 16\nbatch_size = 2\ndevice = "cpu"\n{body}')
    return path


ESCAPING_NAMES = {
    "runs name ../": '[[runs]]\nname = "../model-copy"\nlambda = 1.0\n',
    "runs name nested ../": '[[runs]]\nname = "a/../../model-copy"\nlambda = 1.0\n',
    "runs name absolute": '[[runs]]\nname = "/tmp/sae-kit-escape"\nlambda = 1.0\n',
    "runs name backslash": '[[runs]]\nname = "..\\\\x"\nlambda = 1.0\n',
    "runs name ..": '[[runs]]\nname = ".."\nlambda = 1.0\n',
    "runs name .": '[[runs]]\nname = "."\nlambda = 1.0\n',
    "grid table name ../": '[grid]\narch = [{name = "../x", architecture = "relu"}]\n',
    "grid table name absolute": '[grid]\nopts = [{name = "/tmp/x", lr = 1e-3}]\n',
}


@pytest.mark.parametrize("body", ESCAPING_NAMES.values(), ids=ESCAPING_NAMES.keys())
def test_a_point_name_that_leaves_out_is_refused(tmp_path, body):
    with pytest.raises(SaeKitError, match="is not a plain directory name"):
        load_sweep(_write(tmp_path, body))


@pytest.mark.integration
def test_the_sweep_command_refuses_an_escaping_name_and_writes_nothing(tmp_path):
    victim = tmp_path / "model-copy"
    victim.mkdir()
    (victim / "config.json").write_text('{"mine": true}')
    path = _write(tmp_path, '[[runs]]\nname = "../model-copy"\nlambda = 1.0\n')
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "'../model-copy' is not a plain" in result.output
    assert "Traceback" not in result.output
    assert (victim / "config.json").read_text() == '{"mine": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-copy", "sweep.toml"]


VALUES_WITH_SEPARATORS = {
    "text_column": 'text_column = ["../../../x"]',
    "dataset": 'dataset = ["../../../data.jsonl"]',
    "two keys": 'lambda = [1.0]\ntext_column = ["../../../../x"]',
}


@pytest.mark.parametrize("grid", VALUES_WITH_SEPARATORS.values(),
                         ids=VALUES_WITH_SEPARATORS.keys())
def test_grid_values_with_separators_name_a_directory_inside_out(tmp_path, grid):
    spec = load_sweep(_write(tmp_path, f"[grid]\n{grid}\n"))
    out = (tmp_path / "runs").resolve()
    for point in spec.points:
        where = (tmp_path / "runs" / point.name).resolve()
        assert where.parent == out, point.name
        assert (tmp_path / point.config.output_dir).resolve().parent == out


def test_a_grid_larger_than_the_limit_is_refused_before_it_is_expanded(tmp_path):
    lambdas = ", ".join(str(i + 1) for i in range(101))
    lrs = ", ".join(f"{i + 1}e-4" for i in range(100))  # 10,100 points > MAX_POINTS
    with pytest.raises(SaeKitError, match=r"101 x 100 = 10,100 points"):
        load_sweep(_write(tmp_path, f"[grid]\nlambda = [{lambdas}]\nlr = [{lrs}]\n"))
    assert MAX_POINTS < 10_100


@pytest.mark.integration
def test_a_grid_of_10_to_the_8_points_is_one_line_at_once(tmp_path):
    ten = ", ".join(str(i + 1) for i in range(10))
    keys = ["lambda", "lr", "seed", "dict_ratio", "grad_clip", "n_samples", "context", "log_every"]
    grid = "\n".join(f"{k} = [{ten}]" for k in keys)
    path = _write(tmp_path, f"[grid]\n{grid}\n")
    began = time.monotonic()
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2, result.output
    assert "100,000,000 points" in result.output and "Traceback" not in result.output
    assert time.monotonic() - began < 60  # it was 1 GB and growing, with nothing printed


TOP_LEVEL = {
    "runs = 5": ("runs = 5", "runs = 5 must be a list of tables"),
    "runs = [5]": ("runs = [5]", "runs must be a list of tables"),
    "out = 5": ("out = 5", "out = 5 must be a string"),
    "out = ''": ('out = ""', "out must name a directory"),
    "eval_tokens = 'x'": ('eval_tokens = "x"', "eval_tokens = 'x' must be a whole number"),
    "eval_tokens = 0": ("eval_tokens = 0", "eval_tokens = 0 must be 1 or more"),
    "eval_tokens = 1.5": ("eval_tokens = 1.5", "eval_tokens = 1.5 must be a whole number"),
    "eval_batch_size = true": ("eval_batch_size = true", "must be a whole number"),
    "eval_alive_tokens = 0": ("eval_alive_tokens = 0", "eval_alive_tokens = 0 must be 1 or more"),
    "plot = 5": ("plot = 5", "plot = 5 must be a string"),
    "plot escapes": ('plot = "../pareto.png"', "must be a file name"),
    "base = 5": ("base = 5", "base = 5 must be a table"),
}


@pytest.mark.integration
@pytest.mark.parametrize(("line", "message"), TOP_LEVEL.values(), ids=TOP_LEVEL.keys())
def test_a_wrong_top_level_value_is_one_line_naming_the_file_and_key(tmp_path, line, message):
    path = tmp_path / "sweep.toml"
    has_out = line.startswith("out")
    out = "" if has_out else f'out = "{tmp_path / "runs"}"\n'
    rest = "" if line.startswith(("base", "runs")) else '[[runs]]\nlambda = 1.0\n'
    path.write_text(f"{out}{line}\n{rest}")
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and str(path) in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


LATER_POINTS = {
    "unknown loss": ('loss = "nope"', "no loss plugin named 'nope'"),
    "unknown architecture": ('architecture = "nope"', "no architecture plugin named 'nope'"),
    "bad architecture option": ('architecture = "topk"\narchitecture_options = {kk = 3}',
                                "kk"),
    "bad loss option": ('loss = "e2e+ds"\nloss_options = {nope = 1}', "nope"),
    "bad hook point": ('hook_points = ["blocks.1.hook_nowhere"]', "hook_nowhere"),
    "unknown tracker": ('trackers = ["nope"]', "no tracker plugin named 'nope'"),
}


@pytest.mark.integration
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("line", "message"), LATER_POINTS.values(), ids=LATER_POINTS.keys())
def test_a_bad_later_point_fails_before_the_first_group_trains(tiny_gpt2, tmp_path, line,
                                                               message):
    path = tmp_path / "sweep.toml"
    path.write_text(f'out = "{tmp_path / "runs"}"\n[base]\nmodel = "{tiny_gpt2}"\n'
                    'dataset = "pydoc"\ncontext = 16\nbatch_size = 2\ngrad_accum = 1\n'
                    'n_samples = 2\ndict_ratio = 2\ndevice = "cpu"\n'
                    'hook_points = ["blocks.1.hook_resid_pre"]\n'
                    f'[[runs]]\nname = "good"\nloss = "local"\n'
                    f'[[runs]]\nname = "bad"\nn_samples = 4\n{line}\n')
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2, result.output
    assert "point 'bad'" in result.output and message in result.output, result.output
    assert "nothing was trained" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs" / "good").exists()  # the good group did not train first
