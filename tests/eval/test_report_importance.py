"""`sae-kit features --importance`: the attribution rides on the report's pass and equals
`sae-kit importance`'s; the report's rows, records and files carry it."""

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.eval.analysis.attribution import CONVENTIONS, METRICS
from sae_kit.eval.analysis.importance_values import COLUMNS

HP = "blocks.1.hook_resid_pre"


@pytest.mark.integration
def test_report_importance_equals_sae_kit_importance(runs, importance_report, tmp_path):
    result = CliRunner().invoke(app, ["importance", str(runs["e2e0"]), "--tokens", "192",
                                      "--device", "cpu", "--batch-size", "2", "--exact-top", "5",
                                      "--exact-random", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    alone = load_file(str(tmp_path / f"importance-{HP}" / "importance.safetensors"))
    shared = load_file(str(importance_report / "importance.safetensors"))
    contexts = {f"{c}.context_kl{part}" for c in CONVENTIONS for part in ("", "_rest")}
    assert shared.keys() == alone.keys() | contexts  # the report adds per-context effects
    assert shared["spliced.context_kl"].shape == (10, 8, 5)  # top k, exact features, 1 + after
    for name, value in alone.items():
        assert torch.allclose(shared[name].double(), value.double(), rtol=1e-6, atol=1e-12), name
    summary = json.loads((importance_report / "importance.json").read_text())["summary"]
    want = json.loads((tmp_path / f"importance-{HP}" / "importance.json").read_text())["summary"]
    flat, flat_want = _leaves(summary), _leaves(want)
    assert flat.keys() == flat_want.keys()
    for key, value in flat_want.items():
        assert flat[key] == (value if value is None else pytest.approx(value, rel=1e-6)), key


def _leaves(tree, prefix=""):
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, sub in tree.items() for k, v in _leaves(sub, f"{prefix}/{key}").items()}


@pytest.mark.integration
def test_rows_records_and_header(importance_report):
    values = load_file(str(importance_report / "importance.safetensors"))
    summary = json.loads((importance_report / "summary.json").read_text())
    rows = summary["features"]
    exact = {int(f): i for i, f in enumerate(values["exact_features"].tolist())}
    for row in rows:
        for name, (c, m, v) in COLUMNS.items():
            if v == "exact":
                got, want = row[name], (None if row["index"] not in exact else
                                        float(values[f"{c}.{m}.exact"][exact[row["index"]]]))
                if want is None:
                    assert got is None
                    continue
            else:
                got, want = row[name], float(values[f"{c}.{m}.{v}"][row["index"]])
            assert got == pytest.approx(want, rel=1e-3, abs=1e-300), (row["index"], name)
    records = [json.loads(line) for line in
               (importance_report / "features.jsonl").read_text().splitlines()]
    for record in records:
        imp = record["importance"]
        with_contexts = {"contexts"} if imp["exact"] is not None else set()
        assert set(imp) == {*CONVENTIONS, "exact", *with_contexts}
        assert (imp["exact"] is not None) == (record["index"] in exact)
        for c in CONVENTIONS:
            for m in METRICS:
                assert (imp[c][m]["exact"] is None) == (record["index"] not in exact)
        if imp["exact"] is not None:  # per-context effects, one per top context shown
            assert len(imp["contexts"]) == 10
            shown = [c for c in imp["contexts"] if c is not None]
            assert len(shown) == len(record["top"]) > 0
            for effect in shown:
                assert len(effect["spliced"]["near"]) == 5
                assert isinstance(effect["with_error"]["rest"], float)
    top = values["exact_features"][values["exact_is_top"]].tolist()
    assert [r["importance"]["exact"] for r in records if r["index"] in top] == ["top"] * 5
    assert summary["importance"]["n_exact_top"] == 5
    assert summary["importance"]["n_exact_random"] == 3
    html = (importance_report / "index.html").read_text()
    assert 'id="importance-table"' in html and "density_importance.png" in html
    assert (importance_report / "density_importance.png").stat().st_size > 1000


@pytest.mark.integration
def test_without_importance_the_report_has_none(report):
    rows = json.loads((report / "summary.json").read_text())["features"]
    assert not set(COLUMNS) & set(rows[0])
    assert not (report / "importance.json").exists()
    assert "importance-table" not in (report / "index.html").read_text()
    assert "importance" not in json.loads((report / "features.jsonl").open().readline())


@pytest.mark.integration
def test_bad_exact_counts_are_one_line(runs):
    result = CliRunner().invoke(app, ["features", str(runs["e2e0"]), "--importance",
                                      "--exact-top", "500", "--device", "cpu", "--tokens", "64"])
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1].startswith("error: --exact-top must be")


def test_interpretability_view_on_a_constructed_example():
    from sae_kit.eval.report.interpretability import interpretability_view

    rows = [{"index": i, "importance_kl": v} for i, v in enumerate([1e-3, 1e-2, 1e-1, 0.0, 1.0])]
    explained = {0: {"detection": 0.5, "fuzzing": 0.9, "simulation": None},
                 1: {"detection": 0.6, "fuzzing": 0.8, "simulation": None},
                 2: {"detection": 0.8, "fuzzing": 0.7, "simulation": None},
                 3: {"detection": 1.0, "fuzzing": 0.1, "simulation": None},  # no importance
                 4: {"detection": 0.9, "fuzzing": 0.6, "simulation": None}}
    panels = {p["score"]: p for p in interpretability_view(rows, explained)}
    assert set(panels) == {"detection", "fuzzing"}  # no simulation scores: no panel
    assert panels["detection"]["n"] == 4 and panels["fuzzing"]["spearman"] == pytest.approx(-1)
    assert panels["detection"]["spearman"] == pytest.approx(1.0)
    xs = [p["cx"] for p in panels["detection"]["points"]]
    assert xs == [0.0, 100.0, 200.0, 300.0]  # log10 -3..0 across the 300-wide axis
    assert [t["label"] for t in panels["detection"]["x_ticks"]] == ["-3", "-2", "-1", "0"]


@pytest.mark.integration
def test_explain_on_an_importance_report_plots_scores_against_importance(importance_report,
                                                                         tmp_path):
    import re

    from sae_kit.eval.analysis.attribution import spearman
    from tests.fake_llm import explain_a_copy

    copy = tmp_path / "report"
    explained = explain_a_copy(importance_report, copy)
    rows = {r["index"]: r for r in json.loads((copy / "summary.json").read_text())["features"]}
    pairs = [(rows[f["index"]]["importance_kl"], f["detection"]["balanced_accuracy"])
             for f in explained if f.get("detection") and rows[f["index"]]["importance_kl"]]
    html = (copy / "index.html").read_text()
    assert 'id="importance-table"' in html  # explain re-renders the index, importance kept
    figure = re.search(r'<figure class="versus" data-score="detection">(.*?)</figure>', html,
                       re.S).group(1)
    assert figure.count("<circle") == len(pairs) > 0
    rho = spearman(torch.tensor([v for v, _ in pairs]).log10(),
                   torch.tensor([s for _, s in pairs]))
    shown = re.search(r"Spearman\s+(\S+)</figcaption>", figure).group(1)
    assert shown == ("undefined" if rho is None else f"{rho:.2f}")
