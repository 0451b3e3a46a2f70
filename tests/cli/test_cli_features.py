"""`sae-kit features` and `sae-kit compare` through the CLI on tiny runs."""

import json
import re

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from tests.helpers import FAST

pytestmark = pytest.mark.integration  # runs the sae-kit CLI

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HP = "blocks.1.hook_resid_pre"


def test_report_files_and_data(report):
    summary = json.loads((report / "summary.json").read_text())
    meta = summary["meta"]
    assert meta["n_tokens"] == 320 and meta["hook_point"] == HP and meta["n_dict"] == 128
    features = summary["features"]
    assert [f["index"] for f in features] == list(range(128))
    assert meta["n_dead"] == sum(f["dead"] for f in features)
    records = [json.loads(line) for line in (report / "features.jsonl").read_text().splitlines()]
    alive = [r for r in records if not r["dead"]]
    assert alive, "some feature fires on 320 tokens"
    for r in alive:
        values = [c["value"] for c in r["top"]]
        assert values == sorted(values, reverse=True) and values[0] == pytest.approx(r["max"],
                                                                                     rel=1e-3)
        centre = meta["settings"]["before"]
        assert all(c["acts"][centre] == pytest.approx(c["value"], rel=1e-2) for c in r["top"])
        assert sum(r["histogram"]["counts"]) == round(r["density"] * 320)
        assert len(r["promoted"]) == 10 and r["promoted"][0][1] >= r["suppressed"][0][1]
        assert r["index"] not in [j for j, _ in r["neighbours"]]
        shown = {t for c in r["top"] for t in c["tokens"] if t >= 0}
        assert shown <= {int(k) for k in summary["tokens"]}
    tensors = load_file(str(report / "features.safetensors"))
    assert torch.allclose(tensors["density"], torch.tensor([f["density"] for f in features],
                                                           dtype=torch.float64))
    assert tensors["top_tokens"].shape == (10, 128, 17)
    html = (report / "index.html").read_text()
    assert "http://" not in html and "https://" not in html  # nothing from the network
    assert (report / "data" / "features-0000.js").read_text().startswith("SAEReport.addChunk(0,")


def test_default_out_is_inside_the_run_and_the_sae_loads_once(runs, monkeypatch):
    import sae_kit.eval.analysis.source as source

    loads = []
    real = source.load_sae_dir
    monkeypatch.setattr(source, "load_sae_dir", lambda *a, **k: loads.append(a) or real(*a, **k))
    result = runner.invoke(app, ["features", str(runs["e2e0"]), "--tokens", "64",
                                 "--device", "cpu", "--hook-point", HP])
    assert result.exit_code == 0, result.output
    assert (runs["e2e0"] / f"features-{HP}" / "index.html").is_file()
    assert len(loads) == 1  # naming the default directory does not load the SAE a second time


@pytest.mark.parametrize("args, message", [
    (["--tokens", "0"], "--tokens"),
    (["--hook-point", "blocks.2.hook_resid_pre"], "has no SAE at blocks.2.hook_resid_pre"),
    (["--hook-point", "layer2"], "bad hook point"),
    (["--dataset", "pydoc", "--split", "test"], "splits 'train' and 'eval'"),
])
def test_bad_input_is_one_error_line(runs, tmp_path, args, message):
    result = runner.invoke(app, ["features", str(runs["local0"]), "--out", str(tmp_path),
                                 "--device", "cpu", *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_run_dir_without_saes_is_one_error_line(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    for command in (["features", str(tmp_path)], ["compare", str(tmp_path)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and result.output.startswith("error:"), result.output
        assert "holds no trained SAE" in result.output


def test_compare_writes_summary_and_plots(runs, tmp_path):
    paths = [str(runs[n]) for n in ("local0", "local1", "e2e0")]
    result = runner.invoke(app, ["compare", *paths, "--out", str(tmp_path), "--tokens", "256",
                                 "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert json.loads(result.stdout) == summary
    assert summary["hook_point"] == HP and summary["embedding_method"] in ("umap", "pca")
    assert len(summary["pairs"]) == 3
    for name in ("within.png", "across.png", "activations.png", "embedding.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)
    values = load_file(str(tmp_path / "maxcos.safetensors"))
    for label, s in summary["saes"].items():
        assert s["n_alive"] == len(values[f"within/{label}"]) > 0
        assert s["within_max_cos_mean"] == pytest.approx(float(values[f"within/{label}"].mean()),
                                                         rel=1e-5)
        # Eight training steps barely move the decoder from its (recomputed) initialisation.
        assert s["init_max_cos_mean"] > 0.9
        assert s["activations"]["l2_ratio"] > 0 and -1 <= s["activations"]["cosine"] <= 1
        assert len(s["activations"]["per_position"]["l2_ratio"]) == 32
    local_e2e = next(p for p in summary["pairs"] if {p["a"], p["b"]} == {"local0", "e2e0"})
    local_local = next(p for p in summary["pairs"] if {p["a"], p["b"]} == {"local0", "local1"})
    # Same seed, same initial decoder: far more alike than two seeds of one loss.
    assert local_e2e["a_to_b_mean"] > local_local["a_to_b_mean"] + 0.3


def test_compare_refuses_different_hook_points(tiny_gpt2, runs, tmp_path):
    other = tmp_path / "other"
    result = runner.invoke(app, ["train", "--model", str(tiny_gpt2), "--out", str(other),
                                 "--layer", "2", "--loss", "local", *FAST])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["compare", str(runs["local0"]), str(other), "--out",
                                 str(tmp_path / "c")])
    assert result.exit_code == 2 and "different hook points" in result.output


def test_blocks_and_chunks_do_not_change_the_data(runs, report, tmp_path, monkeypatch):
    from sae_kit.eval.analysis import features
    from sae_kit.eval.report import render

    monkeypatch.setattr(features, "BLOCK", 50)
    monkeypatch.setattr(render, "CHUNK", 40)
    result = runner.invoke(app, ["features", str(runs["local0"]), "--tokens", "320", "--out",
                                 str(tmp_path), "--device", "cpu", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "features.jsonl").read_text() == (report / "features.jsonl").read_text()
    assert len(list((tmp_path / "data").glob("features-*.js"))) == 4  # 128 features / 40


def test_piped_compare_and_features_keep_paths_and_names_whole(runs, tmp_path):
    """Through the real command, off a terminal: no cell cut, no path broken across lines."""
    import os
    import shutil
    import subprocess
    import sys

    long = {n: tmp_path / f"a-rather-long-run-name-that-rich-would-cut-{n}" for n in ("a", "b")}
    shutil.copytree(runs["local0"], long["a"])
    shutil.copytree(runs["local1"], long["b"])
    env = {**{k: v for k, v in os.environ.items() if k != "COLUMNS"}, "SAE_KIT_LOG_SECONDS": "0"}
    out = tmp_path / ("deeply-nested-report-directory-" * 3) / "report"

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "sae_kit", *args, "--device", "cpu"],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    compared = run("compare", str(long["a"]), str(long["b"]), "--out", str(tmp_path / "c"),
                   "--tokens", "256")
    assert "…" not in compared.stdout
    rows = [line for line in compared.stdout.splitlines() if long["a"].name in line]
    assert rows and any(long["b"].name in line for line in rows)  # the pair's row, whole
    features = run("features", str(long["a"]), "--tokens", "320", "--out", str(out),
                   "--batch-size", "3")
    assert features.stdout.strip() == str(out / "index.html")
    assert any(line.endswith(f"open {out / 'index.html'}")
               for line in features.stderr.splitlines())
    # Progress off a terminal: timestamped lines with counts, not a silent minute.
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    assert re.search(stamp + r"reading held-out part \(tokens\) \d+/256 \(\d+%\)",
                     compared.stderr)
    assert re.search(stamp + r"reading training part \(tokens\) \d+/", compared.stderr)
    assert re.search(stamp + r"comparing \(steps\) 3/3 \(100%\)", compared.stderr)
    from sae_kit.store.files import current_umask

    for written in (out / "features.safetensors", tmp_path / "c" / "maxcos.safetensors"):
        assert written.stat().st_mode & 0o777 == 0o666 & ~current_umask(), written
    meta = json.loads((out / "summary.json").read_text())["meta"]
    n_dict, read = meta["n_dict"], meta["n_tokens"]
    assert f"reading text (tokens) {read}/{max(read, 320)} (" in features.stderr
    assert re.search(stamp + rf"writing report \(features\) {n_dict}/{n_dict} \(100%\)",
                     features.stderr), features.stderr


def test_compare_says_it_replaces_an_earlier_comparison_and_refuses_other_files(runs, tmp_path):
    paths = [str(runs[n]) for n in ("local0", "local1")]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("mine")
    refused = runner.invoke(app, ["compare", *paths, "--out", str(other), "--device", "cpu"])
    assert refused.exit_code == 2 and "holds no earlier comparison" in refused.stderr
    assert sorted(p.name for p in other.iterdir()) == ["thesis.tex"]  # nothing written
    out = tmp_path / "c"
    args = ["compare", *paths, "--out", str(out), "--tokens", "64", "--device", "cpu"]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert f"note: replacing the earlier comparison in {out}" in " ".join(again.stderr.split())


def test_eval_features_and_compare_count_the_same_alive_elements(tiny_gpt2, tmp_path):
    """One SAE, one alive budget: the three commands read the same training windows and print
    and write one alive count (before, each counted on other text and gave its own)."""
    from tests.helpers import cli_train

    # TopK with k=2 on 1 window of 32 tokens: at most 64 of 128 elements can fire.
    run, budget = tmp_path / "topk", "32"
    trained = cli_train(tiny_gpt2, run, "--layer", "1", "--loss", "local", "--architecture",
                        "topk", "--arch-option", "k=2")
    assert trained.exit_code == 0, trained.output
    evaluated = runner.invoke(app, ["eval", str(run), "--alive-tokens", budget, "--n-tokens",
                                    "32", "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    eval_alive = json.loads((run / "eval.json").read_text())["saes"][HP]["alive"]
    assert "counted on 32 tokens (1 window of 32" in " ".join(evaluated.stdout.split())
    features = runner.invoke(app, ["features", str(run), "--tokens", budget, "--out",
                                   str(tmp_path / "report"), "--device", "cpu"])
    assert features.exit_code == 0, features.output
    meta = json.loads((tmp_path / "report" / "summary.json").read_text())["meta"]
    compared = runner.invoke(app, ["compare", str(run), "--alive-tokens", budget, "--tokens",
                                   "32", "--out", str(tmp_path / "compare"), "--device", "cpu"])
    assert compared.exit_code == 0, compared.output
    summary = json.loads((tmp_path / "compare" / "summary.json").read_text())
    compare_alive = summary["saes"]["topk"]["n_alive"]

    assert eval_alive == meta["n_alive"] == compare_alive == meta["n_dict"] - meta["n_dead"]
    assert 0 < eval_alive < 128, "the budget leaves some elements unfired: a real check"
    assert f"{eval_alive:,} of 128 features alive" in " ".join(features.output.split())
    assert f"{compare_alive}/128" in compared.stdout
    assert meta["text_part"] == "train" and summary["texts"]["alive"]["part"] == "train"
    assert summary["texts"]["activations"]["part"] == "eval"  # L0, ‖â‖/‖a‖ stay held out

    # The held-out text is another text: another count, and the header names it.
    held_out = runner.invoke(app, ["features", str(run), "--held-out", "--tokens", budget,
                                   "--out", str(tmp_path / "held-out"), "--device", "cpu"])
    assert held_out.exit_code == 0, held_out.output
    assert "(held-out part)" in " ".join(held_out.output.split())


def test_headers_say_capped_or_all_there_is(runs, tmp_path):
    from sae_kit.builtin import pydoc_texts

    capped = runner.invoke(app, ["features", str(runs["local0"]), "--tokens", "70", "--out",
                                 str(tmp_path / "capped"), "--device", "cpu"])
    assert capped.exit_code == 0, capped.output
    said = " ".join(capped.output.split())
    # Whole windows within the budget: 70 tokens hold 2 windows of 32.
    assert "64 tokens (2 windows of 32," in said and "capped at 70 tokens" in said
    assert "all the text there is" not in said and "all of it" not in said
    index = (tmp_path / "capped" / "index.html").read_text()
    assert "capped at 70 tokens" in index

    short = tmp_path / "short.txt"
    short.write_text(pydoc_texts("eval")[0][:1500], encoding="utf-8")
    whole = runner.invoke(app, ["features", str(runs["local0"]), "--dataset", str(short),
                                "--tokens", "100000", "--out", str(tmp_path / "whole"),
                                "--device", "cpu"])
    assert whole.exit_code == 0, whole.output
    said = " ".join(whole.output.split())
    assert "all the text there is" in said and "capped at" not in said
    meta = json.loads((tmp_path / "whole" / "summary.json").read_text())["meta"]
    assert meta["capped"] is False and 0 < meta["n_tokens"] < 100000
