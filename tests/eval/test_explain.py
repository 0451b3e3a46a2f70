"""`sae-kit explain`: scoring math, parsing, context choice, and the whole command against a
loopback OpenAI-compatible server (tests/fake_llm.py) and a tiny in-process model."""

from __future__ import annotations

import json
import math
import re
import shutil
import socket

import pytest
import torch
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.eval.explain import answers, scoring
from sae_kit.eval.explain.examples import quiet_contexts, split_contexts
from sae_kit.explainers.base import BadAnswer, Completion, TokenLogprob
from tests.fake_llm import FakeLLM

KEY = "sk-test-secret-4f9a1c"


# --- scoring math, by hand ------------------------------------------------------------------

def test_accuracy_and_balanced_accuracy_by_hand():
    truth = [1, 1, 1, 0]
    predicted = [1, 1, 0, 0]
    assert scoring.accuracy(predicted, truth) == 3 / 4
    # recall on positives 2/3, on negatives 1/1: mean 5/6, not the plain 3/4
    assert scoring.balanced_accuracy(predicted, truth) == pytest.approx(5 / 6)
    # always answering 1 on a 3:1 mix: accuracy 0.75 but balanced 0.5 (chance)
    assert scoring.balanced_accuracy([1, 1, 1, 1], truth) == 0.5
    assert scoring.balanced_accuracy([0, 0], [0, 0]) == 1.0  # one class only: its recall


def test_pearson_by_hand():
    # x = 1,2,3 ; y = 2,4,7: means 2 and 13/3; sxy = 5, sxx = 2, syy = 38/3
    assert scoring.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(2 * 38 / 3))
    assert scoring.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert scoring.pearson([1, 1, 1], [1, 2, 3]) is None  # constant: undefined
    with pytest.raises(ValueError):
        scoring.pearson([1], [1])


# --- parsing ---------------------------------------------------------------------------------

def test_binary_list_is_strict():
    assert answers.binary_list(Completion("Sure: [1, 0, true, false]"), 4) == [1, 0, 1, 0]
    for text, n in (("[1, 0]", 3), ("[1, 2, 0]", 3), ("no list here", 1), ("[1, 0", 2)):
        with pytest.raises(BadAnswer):
            answers.binary_list(Completion(text), n)


def test_explanation_parsing_and_truncation():
    assert answers.explanation(Completion("Explanation:  the word 'def'\n")) == "the word 'def"
    with pytest.raises(BadAnswer, match="cut off"):
        answers.explanation(Completion("Explanation: the wo", truncated=True))
    with pytest.raises(BadAnswer, match="empty"):
        answers.explanation(Completion("Explanation:   "))


def test_simulated_expected_values_from_logprobs():
    lp = [TokenLogprob(" 10", {" 10": math.log(0.75), " 0": math.log(0.25)}),
          TokenLogprob("\n", {"\n": 0.0}),
          TokenLogprob(" 2", {" 2": math.log(0.5), " 4": math.log(0.3), "x": math.log(0.2)})]
    # 0.75*10 + 0.25*0 = 7.5 ; (0.5*2 + 0.3*4) / 0.8 = 2.75 (renormalised over the integers)
    assert answers.simulated(Completion(" 10\n 2", lp), 2) == pytest.approx([7.5, 2.75])
    with pytest.raises(BadAnswer, match="expected 3"):
        answers.simulated(Completion(" 10\n 2", lp), 3)
    with pytest.raises(BadAnswer, match="no logprobs"):
        answers.simulated(Completion("10"), 1)


# --- which contexts go where -----------------------------------------------------------------

def _ctx(tag: int, value: float) -> dict:
    return {"value": value, "tokens": [tag, tag + 1, -1], "acts": [value, 0.0, 0.0]}


def test_scoring_never_uses_a_context_the_explainer_saw():
    record = {"top": [_ctx(10 * i, 10.0 - i) for i in range(6)],
              "quantiles": [{"contexts": [_ctx(100 + 10 * i, 1.0) for i in range(3)]},
                            {"contexts": [_ctx(0, 10.0), _ctx(300, 0.5)]}]}  # 0: also a top
    shown, held = split_contexts(record, n_score=10)
    shown_tokens = {c.tokens for c in shown}
    assert not shown_tokens & {c.tokens for c in held}
    assert [c.tokens[0] for c in shown] == [0, 20, 40, 100, 120, 300]  # even ranks of each
    # odd ranks, top and quantile alternating; the quantile copy of top context 0 is dropped
    assert [c.tokens[0] for c in held] == [10, 110, 30, 50]
    assert len(split_contexts(record, n_score=2)[1]) == 2


def test_quiet_contexts_are_silent_over_the_whole_span():
    ids = torch.arange(12).reshape(1, 12)
    codes = torch.zeros(1, 12, 2)
    codes[0, 5, 0] = 1.0  # feature 0 fires at token 5; feature 1 never
    quiet = quiet_contexts([(ids, codes)], [7, 9], before=2, after=1, n=50, seed=0)
    spans = {c.tokens for c in quiet[7]}
    # a span centred on p covers p-2..p+1: centres 4..7 include token 5, the other 8 do not
    assert len(spans) == 8 and all(5 not in s for s in spans)
    assert len(quiet[9]) == 12 and all(not c.activating for c in quiet[9])
    assert (-1, -1, 0, 1) in {c.tokens for c in quiet[9]}  # the window's start, padded


# --- the command, against the loopback server --------------------------------------------------

def _explain(report, url, model="good", *extra, env=None):
    args = ["explain", str(report), "--endpoint", url, "--model", model, "--sample", "4",
            "--api-key-env", "SAE_KIT_TEST_KEY", "--device", "cpu", "--retry-wait", "0.01",
            "--pool-tokens", "640", *extra]
    return CliRunner().invoke(app, args, env={"SAE_KIT_TEST_KEY": KEY, **(env or {})})


@pytest.fixture
def fresh_report(report, tmp_path):
    copy = tmp_path / "report"
    shutil.copytree(report, copy)
    return copy


def _all_text(root) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


@pytest.mark.integration
def test_explain_scores_land_in_the_report_and_the_cache_saves_every_call(fresh_report):
    with FakeLLM() as llm:
        result = _explain(fresh_report, llm.url)
        assert result.exit_code == 0, result.output
        first = len(llm.requests)
        again = _explain(fresh_report, llm.url)
        assert again.exit_code == 0, again.output
        assert len(llm.requests) == first  # the rerun sent nothing: every answer was cached
    assert first == 4 * 4  # per feature: explanation, detection, fuzzing, simulation
    data = json.loads((fresh_report / "explanations.json").read_text())
    assert len(data["features"]) == 4 and data["meta"]["calls_sent"] == 0
    assert data["meta"]["calls_cached"] == 16
    for f in data["features"]:
        assert f["explanation"].startswith("the token")
        assert f["unscored"] == {}
        for kind in ("detection", "fuzzing"):
            s = f[kind]
            truth = [c["truth"] for c in s["contexts"]]
            pred = [c["predicted"] for c in s["contexts"]]
            assert s["accuracy"] == scoring.accuracy(pred, truth)
            assert s["balanced_accuracy"] == scoring.balanced_accuracy(pred, truth)
        assert 0 in truth and 1 in [c["truth"] for c in f["detection"]["contexts"]]
        assert f["simulation"]["n_tokens"] > 0
    # the explainer never saw a held-out context: no scored excerpt is in its prompt
    index = (fresh_report / "index.html").read_text()
    assert "<th data-type=\"num\">detection</th>" in index and "explanations.js" in index
    assert data["features"][0]["explanation"].replace("'", "&#39;") in index
    assert (fresh_report / "data" / "explanations.js").read_text().startswith(
        "SAEReport.setExplanations(")
    # the key went to the server, and nowhere else
    assert all(h.get("Authorization") == f"Bearer {KEY}" for h in llm.headers)
    assert KEY not in _all_text(fresh_report)
    assert KEY not in result.output + again.output


@pytest.mark.integration
def test_explainer_never_sees_the_scored_contexts(fresh_report):
    summary = json.loads((fresh_report / "summary.json").read_text())
    alive = [f["index"] for f in summary["features"] if not f["dead"]]
    with FakeLLM() as llm:  # one feature: its own prompt against its own scoring contexts
        assert _explain(fresh_report, llm.url, "good", "--features", str(alive[0])).exit_code == 0
    explain_prompts = [r["messages"][-1]["content"] for r in llm.requests
                       if r["messages"][0]["content"].startswith("You are a meticulous")]
    data = json.loads((fresh_report / "explanations.json").read_text())
    shown = {line.replace("<<", "").replace(">>", "") for p in explain_prompts
             for line in re.findall(r"^Excerpt \d+: (.*)$", p, re.M)}
    assert shown
    for f in data["features"]:
        for c in f["detection"]["contexts"]:
            if c["truth"] == 1:
                assert c["text"] not in shown


@pytest.mark.integration
def test_an_interrupted_run_resumes_without_sending_any_call_twice(fresh_report):
    with FakeLLM(fail_after=6) as llm:
        stopped = _explain(fresh_report, llm.url)
        assert stopped.exit_code == 2
        assert "refused the API key" in stopped.output and "Traceback" not in stopped.output
        done_before = list(llm.answered)
        llm.fail_after = None
        resumed = _explain(fresh_report, llm.url)
        assert resumed.exit_code == 0, resumed.output
    assert len(done_before) == 6
    assert len(llm.answered) == len(set(llm.answered)) == 16  # each answered call once


@pytest.mark.integration
@pytest.mark.parametrize("model, retried", [("flaky", True), ("stall", True)])
def test_429_500_and_stalls_are_retried(fresh_report, model, retried):
    with FakeLLM() as llm:
        result = _explain(fresh_report, llm.url, model, "--timeout", "0.5")
        assert result.exit_code == 0, result.output
    data = json.loads((fresh_report / "explanations.json").read_text())
    assert all(f["unscored"] == {} for f in data["features"])
    assert len(llm.requests) > len(llm.answered) == 16


@pytest.mark.integration
@pytest.mark.parametrize("model, reason", [
    ("garbage", "not a chat completion"), ("missing", "not a chat completion"),
    ("truncated", "cut off"), ("nologprobs", "no logprobs")])
def test_bad_answers_mark_features_unscored_and_the_rest_go_on(fresh_report, model, reason):
    with FakeLLM() as llm:
        result = _explain(fresh_report, llm.url, model)
    assert result.exit_code == 0, result.output
    data = json.loads((fresh_report / "explanations.json").read_text())
    assert len(data["features"]) == 4
    reasons = [why for f in data["features"] for why in f["unscored"].values()]
    assert reasons and all(reason in why for why in reasons)
    if model == "nologprobs":  # only simulation needs logprobs: the others were scored
        assert all("detection" in f and "simulation" not in f for f in data["features"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
@pytest.mark.parametrize("case, message", [
    ("model", "does not serve model 'no-such-model'"),
    ("path", "has no chat-completions API"),
    ("down", "cannot reach"),
])
def test_endpoint_problems_are_one_line(fresh_report, case, message):
    with FakeLLM() as llm:
        url = {"model": llm.url, "path": llm.url[:-3], "down": f"http://127.0.0.1:{_free_port()}/v1"}[case]
        model = "no-such-model" if case == "model" else "good"
        result = _explain(fresh_report, url, model)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


@pytest.mark.integration
def test_a_run_without_a_report_names_the_command_that_makes_it(runs):
    result = CliRunner().invoke(app, ["explain", str(runs["e2e0"]), "--endpoint",
                                      "http://127.0.0.1:9/v1", "--model", "good"])
    assert result.exit_code == 2
    assert "sae-kit features" in result.output and "Traceback" not in result.output


@pytest.mark.integration
def test_dry_run_sends_nothing(fresh_report):
    with FakeLLM() as llm:
        result = _explain(fresh_report, llm.url, "good", "--dry-run")
        assert result.exit_code == 0, result.output
        assert llm.requests == []
    plan = json.loads(result.stdout.strip().splitlines()[-1])
    assert plan["features"] == 4 and plan["calls"] == 16 and plan["characters"] > 0
    assert not (fresh_report / "explanations.json").exists()


# --- the in-process backend --------------------------------------------------------------------

@pytest.mark.integration
def test_transformers_backend_end_to_end(fresh_report, tiny_tokenizer_dir, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.helpers import save_tiny_model

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=512, n_positions=4096, n_embd=16, n_layer=1, n_head=2)
    explainer = save_tiny_model(GPT2LMHeadModel(config), tiny_tokenizer_dir, tmp_path / "llm")
    result = CliRunner().invoke(app, [
        "explain", str(fresh_report), "--backend", "transformers", "--model", str(explainer),
        "--sample", "2", "--explain-max-tokens", "6", "--device", "cpu", "--pool-tokens", "640"])
    assert result.exit_code == 0, result.output
    data = json.loads((fresh_report / "explanations.json").read_text())
    assert data["meta"]["backend"] == "transformers" and len(data["features"]) == 2
    for f in data["features"]:
        # a random tiny model writes nonsense: each scorer has a score or says why not
        assert f["explanation"] is None or isinstance(f["explanation"], str)
        for kind in ("detection", "fuzzing", "simulation"):
            assert kind in f or kind in f["unscored"]
