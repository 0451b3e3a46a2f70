"""`sae-kit eval` through the CLI on tiny runs, and the Pareto plot."""

import json

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.eval.pareto import plot_pareto
from tests.helpers import FAST, pareto_series

runner = CliRunner()
EVAL = ["--n-tokens", "128", "--batch-size", "2", "--alive-tokens", "640", "--device", "cpu"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def two_runs(tiny_gpt2, tmp_path_factory):
    """A local and an e2e run, each with one SAE at layer 1."""
    root = tmp_path_factory.mktemp("runs")
    runs = []
    for loss in ("local", "e2e"):
        out = root / loss
        result = runner.invoke(app, ["train", "--model", str(tiny_gpt2), "--out", str(out),
                                     "--loss", loss, "--layer", "1", *FAST])
        assert result.exit_code == 0, result.output
        runs.append(out)
    return runs


@pytest.mark.integration
def test_eval_prints_a_table_and_writes_eval_json(two_runs):
    run = two_runs[1]
    result = runner.invoke(app, ["eval", str(run), *EVAL])
    assert result.exit_code == 0, result.output
    data = json.loads((run / "eval.json").read_text())
    assert data["n_tokens"] == 128 and data["loss"] == "e2e"
    metrics = data["saes"]["blocks.1.hook_resid_pre"]
    assert {"l0", "alive", "alive_fraction", "ce_loss_increase", "kl", "explained_variance",
            "mse", "downstream_mse", "downstream_mse/blocks.2.hook_resid_post"} <= set(metrics)
    assert 0 <= metrics["l0"] <= metrics["n_dict"] == 128
    assert "blocks.1.hook_resid_pre" in result.stdout and "CE loss increase" in result.stdout
    assert f"{metrics['kl']:.4f}" in result.stdout
    # 640 training tokens = 20 windows of 32; the table says where alive was counted.
    said = " ".join(result.stdout.split())
    assert data["alive_n_tokens"] == 640 and "counted on 640 tokens (20 windows of 32" in said
    assert data["texts"]["alive"]["n_windows"] == 20
    assert "explained variance (e2e_sae)" in result.stdout
    assert f"{metrics['explained_variance_e2e_sae']:.4f}" in result.stdout


@pytest.mark.integration
def test_eval_json_and_pareto_plot_over_several_runs(two_runs, tmp_path):
    plot = tmp_path / "pareto.png"
    result = runner.invoke(app, ["eval", *map(str, two_runs), *EVAL, "--json",
                                 "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [r["loss"] for r in payload] == ["local", "e2e"]
    assert plot.read_bytes().startswith(PNG_SIGNATURE)


def test_pareto_has_one_series_per_loss_sorted_by_l0(tmp_path):
    def result(loss, l0, ce):
        return {"loss": loss, "saes": {"blocks.2.hook_resid_pre": {"l0": l0,
                                                                  "ce_loss_increase": ce}}}

    results = [result("e2e", 30, 0.1), result("local", 20, 0.5), result("e2e", 10, 0.3),
               result("local", 40, 0.2), result("e2e+ds", 15, 0.2)]
    path = tmp_path / "p.png"
    series = plot_pareto(results, path)
    assert series == {"local": [(20, 0.5), (40, 0.2)], "e2e": [(10, 0.3), (30, 0.1)],
                      "e2e+ds": [(15, 0.2)]}
    import matplotlib.image

    image = matplotlib.image.imread(path)  # fails on a corrupt PNG
    assert image.shape[0] > 100 and image.shape[1] > 100


def test_pareto_splits_series_by_hook_point_when_runs_differ():
    point = {"l0": 1, "ce_loss_increase": 2}
    results = [{"loss": "e2e", "saes": {"blocks.1.hook_resid_pre": point,
                                        "blocks.2.hook_resid_pre": point}}]
    assert set(pareto_series(results)) == {"e2e @ blocks.1.hook_resid_pre",
                                           "e2e @ blocks.2.hook_resid_pre"}


@pytest.mark.integration
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "nothing", "no such directory"),
        (lambda tmp: tmp, "holds no trained SAE"),
    ],
)
def test_bad_run_dir_is_one_clear_line(tmp_path, make, message):
    (tmp_path / "config.json").write_text("{}")
    result = runner.invoke(app, ["eval", str(make(tmp_path)), *EVAL])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_paper_compatible_refuses_other_sizes(two_runs):
    result = runner.invoke(app, ["eval", str(two_runs[0]), "--paper-compatible", *EVAL])
    assert result.exit_code == 2
    assert ("--paper-compatible sets the evaluation sizes to the reference's; drop --n-tokens, "
            "--batch-size, --alive-tokens") in " ".join(result.stderr.split())


@pytest.mark.integration
def test_bad_numbers_are_one_clear_line(two_runs):
    result = runner.invoke(app, ["eval", str(two_runs[0]), "--n-tokens", "0"])
    assert result.exit_code == 2
    assert "--n-tokens 0: must be a positive number" in result.stderr


def test_pareto_has_one_series_per_loss_and_architecture():
    def result(arch, l0):
        return {"loss": "e2e", "architecture": arch,
                "saes": {"blocks.2.hook_resid_pre": {"l0": l0, "ce_loss_increase": 0.1}}}

    series = pareto_series([result("relu", 30), result("topk", 8), result("relu", 10)])
    assert series == {"e2e (relu)": [(10, 0.1), (30, 0.1)], "e2e (topk)": [(8, 0.1)]}


def _arch_result(loss, arch, l0, ce=0.1, **options):
    return {"loss": loss, "architecture": arch, "architecture_options": options,
            "saes": {"blocks.2.hook_resid_pre": {"l0": l0, "ce_loss_increase": ce}}}


def test_pareto_keeps_k_in_one_series_and_splits_by_the_other_options():
    # k sets TopK's sparsity (TopKSAE.sparsity_options): a frontier; AuxK on or off: two.
    series = pareto_series([
        _arch_result("local", "topk", 32, k=32, auxk=False),
        _arch_result("local", "topk", 16, k=16, auxk=False),
        _arch_result("local", "topk", 15, k=16, auxk=True),
        _arch_result("local", "jumprelu", 40, bandwidth=0.1),
    ])
    assert series == {"local (topk auxk=false)": [(16, 0.1), (32, 0.1)],
                      "local (topk auxk=true)": [(15, 0.1)], "local (jumprelu)": [(40, 0.1)]}


def test_pareto_of_several_losses_and_architectures_draws_a_panel_per_loss(tmp_path):
    import matplotlib.image

    results = [_arch_result(loss, arch, l0, ce, k=l0)
               for loss in ("local", "e2e") for arch in ("topk", "batchtopk")
               for l0, ce in ((8, 0.4), (16, 0.2))]
    path = tmp_path / "p.png"
    series = plot_pareto(results, path)
    assert list(series) == ["local (batchtopk)", "local (topk)", "e2e (batchtopk)", "e2e (topk)"]
    assert series["e2e (topk)"] == [(8, 0.4), (16, 0.2)]
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > 1.5 * height  # two panels side by side; one panel is 6 x 4.2


@pytest.mark.parametrize(("name", "magic"), [("p.pdf", b"%PDF"), ("p.svg", b"<?xml"),
                                             ("p.png", PNG_SIGNATURE)])
def test_pareto_writes_the_format_its_extension_names_on_a_log_l0_axis(tmp_path, name, magic):
    import matplotlib.pyplot as plt

    point = {"blocks.2.hook_resid_pre": {"l0": 3.0, "ce_loss_increase": 0.2}}
    seen = []
    original = plt.Axes.set_xscale
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt.Axes, "set_xscale",
                   lambda self, scale, **kw: seen.append(scale) or original(self, scale, **kw))
        plot_pareto([{"loss": "e2e", "saes": point}], tmp_path / name)
    assert (tmp_path / name).read_bytes().startswith(magic)
    assert seen == ["log"]


@pytest.mark.integration
def test_a_plot_name_without_a_known_format_is_one_line_before_evaluating(tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "nothing"), "--plot",
                                 str(tmp_path / "plot.xyz")])
    assert result.exit_code == 2
    assert "cannot tell the plot format from" in result.output and ".pdf" in result.output


def test_log_l0_ticks_read_as_plain_numbers_with_only_2s_and_5s_between_decades():
    from sae_kit.eval.pareto import _minor_tick_label

    labels = {v: _minor_tick_label(v, 0) for v in (20, 30, 40, 50, 60, 200, 500, 700, 0.2, 0)}
    assert labels == {20: "20", 30: "", 40: "", 50: "50", 60: "", 200: "200", 500: "500",
                      700: "", 0.2: "0.2", 0: ""}


@pytest.mark.integration
def test_eval_takes_one_sae_a_saelens_export_and_an_import(two_runs, tmp_path):
    """Any SAE source `features` takes: one SAE of a run, an SAELens folder, an imported SAE."""
    run = two_runs[1]
    whole = runner.invoke(app, ["eval", str(run), *EVAL, "--json"])
    assert whole.exit_code == 0, whole.output
    expected = json.loads(whole.stdout)["saes"]["blocks.1.hook_resid_pre"]

    sae_dir = run / "blocks.1.hook_resid_pre"
    one = runner.invoke(app, ["eval", str(sae_dir), *EVAL, "--json"])
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["saes"]["blocks.1.hook_resid_pre"] == expected
    assert json.loads((sae_dir / "eval.json").read_text())["run_dir"] == str(sae_dir)

    lens = tmp_path / "sl"
    assert runner.invoke(app, ["export", str(sae_dir), str(lens)]).exit_code == 0
    back = tmp_path / "kit"
    assert runner.invoke(app, ["import", str(lens), str(back)]).exit_code == 0
    for source in (lens, back):  # the SAELens cfg records model, dataset and context
        result = runner.invoke(app, ["eval", str(source), *EVAL, "--json"])
        assert result.exit_code == 0, result.output
        got = json.loads(result.stdout)["saes"]["blocks.1.hook_resid_pre"]
        assert got["l0"] == pytest.approx(expected["l0"], rel=1e-3)
        assert got["ce_loss_increase"] == pytest.approx(expected["ce_loss_increase"], abs=1e-4)
        assert (source / "eval.json").is_file()


@pytest.mark.integration
def test_eval_of_an_sae_that_does_not_say_asks_for_model_and_dataset(two_runs, tmp_path,
                                                                     tiny_gpt2):
    lens = tmp_path / "sl"
    sae_dir = two_runs[0] / "blocks.1.hook_resid_pre"
    assert runner.invoke(app, ["export", str(sae_dir), str(lens)]).exit_code == 0
    cfg = json.loads((lens / "cfg.json").read_text())
    cfg.update(model_name=None, dataset_path=None, sae_kit={})
    (lens / "cfg.json").write_text(json.dumps(cfg))
    result = runner.invoke(app, ["eval", str(lens), *EVAL])
    assert result.exit_code == 2
    assert result.stderr.strip().endswith(
        "does not record its model, dataset; pass --model and --dataset")
    result = runner.invoke(app, ["eval", str(lens), *EVAL, "--model", str(tiny_gpt2),
                                 "--dataset", "pydoc", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == str(tiny_gpt2)
