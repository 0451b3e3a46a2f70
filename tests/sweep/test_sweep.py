"""`sae-kit sweep`: a grid grouped into shared passes, trained, evaluated, resumed and plotted."""

import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.errors import SaeKitError
from sae_kit.sweep.spec import load_sweep
from sae_kit.train import checkpoint

runner = CliRunner()
SAE = "blocks.1.hook_resid_pre"


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_sweep(tmp_path, model_dir, base, grid, top="", name="sweep.toml", device="cpu"):
    """A sweep file over the tiny model: ``top`` lines, ``base`` settings and ``grid``."""
    path = tmp_path / name
    path.write_text(f"""
out = "{tmp_path / 'runs'}"
{top}
[base]
model = "{model_dir}"
dataset = "pydoc"
context = 16
batch_size = 2
device = "{device}"
{base}
[grid]
{grid}
""")
    return path


def _sweep_file(tmp_path, model_dir, extra=""):
    return _tiny_sweep(tmp_path, model_dir, top='eval_tokens = 256\nplot = "frontier.pdf"',
                       base=f"layer = 1\ngrad_accum = 1\nn_samples = 6\ndict_ratio = 4\n"
                            f"log_every = 1\n{extra}",
                       grid='loss = ["local", "e2e"]\nlambda = [0.01, 0.5]')


def test_a_sweep_file_is_grouped_by_what_can_share_a_pass(tiny_gpt2, tmp_path):
    spec = load_sweep(_sweep_file(tmp_path, tiny_gpt2))
    assert [p.name for p in spec.points] == ["local-lambda0.01", "local-lambda0.5",
                                             "e2e-lambda0.01", "e2e-lambda0.5"]
    assert [[p.name for p in g] for g in spec.groups] == [["local-lambda0.01", "local-lambda0.5"],
                                                          ["e2e-lambda0.01", "e2e-lambda0.5"]]
    assert spec.points[1].config.sparsity_coeff == 0.5
    assert spec.points[1].config.hook_points == [SAE]


@pytest.mark.integration
def test_sweep_trains_evaluates_plots_then_skips_and_resumes(tiny_gpt2, tmp_path):
    path = _sweep_file(tmp_path, tiny_gpt2)
    result = runner.invoke(app, ["sweep", str(path)], env={"SAE_KIT_LOG_SECONDS": "0"})
    assert result.exit_code == 0, result.output
    out = tmp_path / "runs"
    assert "| e2e-lambda0.5 | e2e | relu | 0.5 |" in result.stdout
    # Off a terminal: timestamped progress lines for each group's steps and each evaluation.
    stamped = [line[20:] for line in result.stderr.splitlines()
               if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line)]
    assert "group 1/2 training (steps) 3/3 (100%)" in stamped
    assert "group 2/2 training (steps) 3/3 (100%)" in stamped
    assert any(re.fullmatch(r"group 2/2 evaluating e2e-lambda0.5 \(batches\) ([\d,]+)/\1 \(100%\)",
                            line) for line in stamped), stamped
    assert (out / "frontier.pdf").read_bytes().startswith(b"%PDF")
    assert "| local-lambda0.01 |" in (out / "results.md").read_text()
    evals = {d.name: json.loads((d / "eval.json").read_text()) for d in out.iterdir()
             if (d / "eval.json").exists()}
    assert sorted(evals) == ["e2e-lambda0.01", "e2e-lambda0.5", "local-lambda0.01",
                             "local-lambda0.5"]
    weights = load_file(str(out / "e2e-lambda0.5" / SAE / "sae.safetensors"))

    # Interrupted after its last checkpoint: no SAE saved, no eval. The rerun resumes only it.
    shutil.rmtree(out / "e2e-lambda0.5" / SAE)
    (out / "e2e-lambda0.5" / "eval.json").unlink()
    untouched = (out / "local-lambda0.5" / SAE / "sae.safetensors").stat().st_mtime_ns
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 0, result.output
    assert "resuming e2e-lambda0.5" in result.output and "training" not in result.output
    again = load_file(str(out / "e2e-lambda0.5" / SAE / "sae.safetensors"))
    assert all(torch.equal(again[k], weights[k]) for k in weights)
    assert (out / "local-lambda0.5" / SAE / "sae.safetensors").stat().st_mtime_ns == untouched
    assert checkpoint.list_checkpoints(out / "e2e-lambda0.5" / "checkpoints")


@pytest.mark.integration
def test_print_commands_gives_one_line_per_group(tiny_gpt2, tmp_path):
    path = _sweep_file(tmp_path, tiny_gpt2)
    result = runner.invoke(app, ["sweep", str(path), "--print-commands", "--launcher",
                                 "torchrun --nproc-per-node 2 -m sae_kit"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"torchrun --nproc-per-node 2 -m sae_kit sweep {path} --only {i}" for i in (0, 1)]
    assert not (tmp_path / "runs").exists()


@pytest.mark.integration
@pytest.mark.parametrize(("extra", "message"), [
    ("colour = 3\n", "unknown setting(s) colour"),
    ("warmup_fraction = 2.0\n", "invalid training settings: warmup_fraction=2.0"),
])
def test_a_bad_sweep_file_is_one_line(tiny_gpt2, tmp_path, extra, message):
    result = runner.invoke(app, ["sweep", str(_sweep_file(tmp_path, tiny_gpt2, extra))])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_groups_need_distinct_names(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[runs]]\nname = "a"\nlambda = 1\n[[runs]]\nname = "a"\nlambda = 2\n')
    with pytest.raises(SaeKitError, match="share a run directory"):
        load_sweep(path)


@pytest.mark.integration
def test_a_point_that_overflows_is_reported_failed_and_not_retrained(tiny_gpt2, tmp_path):
    # lr 1e20: Adam's first step makes the next forward pass overflow
    path = _tiny_sweep(tmp_path, tiny_gpt2, top="eval_tokens = 256",
                       base='layer = 1\nloss = "local"\ngrad_accum = 1\nn_samples = 6\n'
                            "dict_ratio = 4\nsave_every = 1\nwarmup_fraction = 0.0",
                       grid="lr = [0.003, 1e20]")
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 1, result.output
    bad = tmp_path / "runs" / "lr1e+20"
    assert "| lr0.003 | local | relu | 1 | " in result.stdout  # evaluated, in the table
    assert "| lr1e+20 | local | relu | 1 | failed at step 2: non-finite " in result.stdout
    assert "failed at step 2" in (tmp_path / "runs" / "results.md").read_text()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: sweep point 'lr1e+20' stopped: ")
    assert f"to train it again, delete {bad}" in " ".join(result.stderr.split())
    assert not (bad / SAE).exists() and (tmp_path / "runs" / "lr0.003" / "eval.json").exists()
    record = (bad / "failed.json").stat().st_mtime_ns

    result = runner.invoke(app, ["sweep", str(path)])  # says so again; trains nothing
    assert result.exit_code == 1, result.output
    assert "lr1e+20 stopped earlier on a non-finite step; skipping it" in result.output
    assert "training" not in result.output and "resuming" not in result.output
    assert f"to train it again, delete {bad}" in " ".join(result.stderr.split())
    assert (bad / "failed.json").stat().st_mtime_ns == record


@pytest.mark.integration
def test_a_point_trained_with_other_settings_is_refused_naming_what_changed(tiny_gpt2,
                                                                             tmp_path):
    from sae_kit.sweep.changes import check_unchanged
    from sae_kit.train.api import train_saes

    def sweep_with(extra="", n_samples=2, k=4, device="cpu"):
        path = _tiny_sweep(tmp_path, tiny_gpt2, name="edit.toml", device=device,
                           base=f'grad_accum = 1\nn_samples = {n_samples}\ndict_ratio = 4\n'
                                f'loss = "local"\n{extra}',
                           grid=f'arch = [{{name = "topk", architecture = "topk", '
                                f'architecture_options = {{k = {k}}}}}]')
        return load_sweep(path).points

    points = sweep_with()  # no layer, no lr: the model's defaults
    run_dir = train_saes(points[0].config)  # the point's directory as a sweep leaves it
    where = str(tmp_path / "edit.toml")
    check_unchanged(points, where)  # the defaults a run fills in are no change
    saved = json.loads((run_dir / "config.json").read_text())
    del saved["architecture_options"]["bias_init"]  # as an earlier sae-kit wrote it
    (run_dir / "config.json").write_text(json.dumps(saved))
    check_unchanged(points, where)  # an option added since, at its default, is no change
    check_unchanged(sweep_with("save_every = 7\nlog_every = 3", device="auto"), where)

    for edited, change in [
        (sweep_with(n_samples=4), "n_samples 2 → 4"),
        (sweep_with("lr = 0.01"), "lr 0.0005 → 0.01"),
        (sweep_with(k=8), "architecture_options.k 4 → 8"),
        (sweep_with("layer = 2"),
         'hook_points ["blocks.1.hook_resid_pre"] → ["blocks.2.hook_resid_pre"]'),
    ]:
        with pytest.raises(SaeKitError) as info:
            check_unchanged(edited, where)
        message = str(info.value)
        assert message.startswith(f"sweep point 'topk' in {tmp_path / 'runs' / 'topk'} was "
                                  f"trained with other settings than {where} now asks for: ")
        assert change in message, message
        assert message.endswith(f"delete {tmp_path / 'runs' / 'topk'} to train it with the "
                                "new settings, or give the sweep a new `out`")


@pytest.mark.integration
def test_sweep_refuses_an_edited_point_before_training_anything(tiny_gpt2, tmp_path):
    path = _sweep_file(tmp_path, tiny_gpt2)
    assert runner.invoke(app, ["sweep", str(path), "--only", "0"]).exit_code == 0
    before = (tmp_path / "runs" / "local-lambda0.5" / "config.json").read_text()
    path.write_text(path.read_text().replace("n_samples = 6", "n_samples = 8"))
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: sweep point 'local-lambda0.01' in ")
    assert "n_samples 6 → 8" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1  # nothing trained, nothing evaluated
    assert not (tmp_path / "runs" / "e2e-lambda0.5").exists()
    assert (tmp_path / "runs" / "local-lambda0.5" / "config.json").read_text() == before


def test_the_table_of_a_sweep_whose_points_all_stopped_has_their_rows_only():
    from sae_kit.sweep.report import table

    failed = {"run_dir": "runs/s/lr1e+20", "loss": "local", "sparsity_coeff": 1.0,
              "architecture": "relu", "failed": {"step": 2, "reason": "gradient (norm inf)"}}
    lines = table([failed]).splitlines()
    assert lines[2:] == ["| lr1e+20 | local | relu | 1 | failed at step 2: non-finite gradient "
                         "(norm inf) | | | | | |"]


@pytest.mark.integration
def test_a_kl_cache_budget_edit_is_no_change_but_a_kl_chunk_edit_is(tiny_gpt2, tmp_path):
    from sae_kit.sweep.changes import check_unchanged
    from sae_kit.train.api import train_saes

    def sweep_with(options):
        path = _tiny_sweep(tmp_path, tiny_gpt2, name="kl.toml",
                           base=f"n_samples = 2\ndict_ratio = 1\nloss_options = {{{options}}}",
                           grid="lambda = [1.0]")
        return load_sweep(path).points

    points = sweep_with("kl_chunk = 8")
    train_saes(points[0].config)
    check_unchanged(sweep_with("kl_chunk = 8, kl_cache_mb = 1"), "kl.toml")  # memory only
    with pytest.raises(SaeKitError, match="loss_options.kl_chunk 8 → 4"):
        check_unchanged(sweep_with("kl_chunk = 4"), "kl.toml")


def test_the_table_shows_the_options_that_vary_and_no_lambda_for_topk():
    from sae_kit.sweep.report import table

    def evaluated(name, arch, lam, **options):
        metrics = {"l0": 16.0, "alive": 60, "n_dict": 64, "ce_loss_increase": 0.25, "kl": 0.3,
                   "explained_variance": 0.5, "downstream_mse": 1.5}
        return {"run_dir": f"runs/s/{name}", "loss": "e2e", "sparsity_coeff": lam,
                "architecture": arch, "architecture_options": options,
                "saes": {"blocks.1.hook_resid_pre": metrics}, "clean_ce_loss": 4.0,
                "n_tokens": 512}

    lines = table([evaluated("a", "topk", None, k=16, auxk=True),
                   evaluated("b", "topk", None, k=32, auxk=True),
                   evaluated("c", "relu", 2.0, bias_init="zeros")]).splitlines()
    assert lines[2:5] == [
        "| a | e2e | topk k=16 | – | 16.0 | 60/64 | 0.2500 | 0.3000 | 0.500 | 1.5 |",
        "| b | e2e | topk k=32 | – | 16.0 | 60/64 | 0.2500 | 0.3000 | 0.500 | 1.5 |",
        "| c | e2e | relu | 2 | 16.0 | 60/64 | 0.2500 | 0.3000 | 0.500 | 1.5 |"]
