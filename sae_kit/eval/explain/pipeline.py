"""`sae-kit explain`: explain features of a feature report, score the explanations, write them.

    sae-kit explain RUN_DIR --endpoint http://127.0.0.1:8000/v1 --model NAME --sample 20

Per feature: one call writes the explanation from the shown contexts; then one call each for
detection, fuzzing and (where the backend returns logprobs) simulation, on held-out contexts.
Results go to ``REPORT/explanations.json`` and into the report's index and panels.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sae_kit.errors import SaeKitError
from sae_kit.eval.explain import answers, scoring
from sae_kit.eval.explain.calls import Call, Caller
from sae_kit.eval.explain.examples import (
    Context,
    FeatureExamples,
    choose_features,
    iter_records,
    quiet_contexts,
    read_summary,
    split_contexts,
)
from sae_kit.eval.explain.prompts import (
    active_positions,
    excerpt,
    explain_messages,
    flat,
    scoring_messages,
)
from sae_kit.eval.explain.settings import ExplainSettings
from sae_kit.progress import Progress

SCORERS = ("detection", "fuzzing", "simulation")
RESULTS = "explanations.json"
CACHE = "explain-cache"


@dataclass(frozen=True)
class Plan:
    """What a run would send: the dry run prints it."""

    features: int
    calls: int
    characters: int
    max_answer_tokens: int


def find_report(ref: str, hook_point: str | None) -> Path:
    """``ref`` itself when it is a report directory, else the report `sae-kit features` writes
    by default for that run or SAE (``features-HOOK_POINT`` inside it)."""
    path = Path(ref)
    if (path / "summary.json").is_file():
        return path
    from sae_kit.eval.analysis.source import open_source

    source = open_source(ref, hook_point)
    report = source.path / f"features-{source.hook_point.name}"
    if not (report / "summary.json").is_file():
        raise SaeKitError(f"no feature report at {str(report)!r}: `sae-kit explain` explains "
                          f"a report's features; make it with `sae-kit features {ref}` (or pass "
                          "the report directory)")
    return report


def _examples(report: Path, meta: dict[str, Any], features: list[int], settings: ExplainSettings,
              device: torch.device) -> tuple[list[FeatureExamples], Callable[[int], str]]:
    from sae_kit.eval.analysis.collect import (
        TextChoice,
        activation_batches,
        text_windows,
        window_batches,
    )
    from sae_kit.eval.analysis.source import open_source
    from sae_kit.eval.analysis.tokens import decode_token
    from sae_kit.model.loading import load_model

    source = open_source(meta["source"], meta["hook_point"], device)
    loaded = load_model(source.model, revision=source.revision, device=device)
    loaded.check_fits(source.hook_point, source.sae.d_in)
    position, columns = source.hook_point.site, torch.tensor(features)
    held_out, _ = text_windows(source.data_spec, TextChoice(), loaded.tokenizer, source.context,
                               settings.pool_tokens)
    windows = window_batches(held_out, 8)

    def batches():
        for ids, acts in activation_batches(loaded, [position], windows, device):
            with torch.no_grad():
                codes = source.sae.encode(acts[position].to(source.sae.W_enc.dtype))
            yield ids, codes[..., columns.to(codes.device)].cpu()

    s = meta["settings"]
    quiet = quiet_contexts(batches(), features, s["before"], s["after"],
                           settings.score_contexts, settings.seed)
    out = []
    for record in iter_records(report, set(features)):
        shown, held = split_contexts(record, settings.score_contexts)
        out.append(FeatureExamples(record["index"], shown, held, quiet[record["index"]]))
    words: dict[int, str] = {}

    def decode(token: int) -> str:
        if token not in words:
            words[token] = decode_token(loaded.tokenizer, token)
        return words[token]

    return sorted(out, key=lambda e: e.index), decode


def _fuzz_marks(ex: FeatureExamples, rng: random.Random) -> list[tuple[Context, list[int], int]]:
    """Held-out contexts, half marked on their active tokens (truth 1), half on as many other
    tokens (truth 0)."""
    items = []
    for i, c in enumerate(ex.held_out):
        active = active_positions(c)
        others = [p for p, t in enumerate(c.tokens) if t >= 0 and p not in active]
        if i % 2 == 0 or not others:
            items.append((c, active, 1))
        else:
            items.append((c, sorted(rng.sample(others, min(len(active), len(others)))), 0))
    rng.shuffle(items)
    return items


def _scoring_calls(ex: FeatureExamples, explanation: str, decode: Callable[[int], str],
                   settings: ExplainSettings, logprobs: bool) -> dict[str, tuple[Call, Any]]:
    """Per scorer, the call and what is needed to score its answer."""
    rng = random.Random(settings.seed * 7919 + ex.index)
    detect = [(c, 1) for c in ex.held_out] + [(c, 0) for c in ex.quiet]
    rng.shuffle(detect)
    fuzz = _fuzz_marks(ex, rng)
    calls: dict[str, tuple[Call, Any]] = {}
    if detect:
        texts = [excerpt(c, decode) for c, _ in detect]
        calls["detection"] = (Call(scoring_messages("detection", explanation, texts),
                                   8 + 3 * len(texts)), (texts, [t for _, t in detect]))
    if fuzz:
        texts = [excerpt(c, decode, marks) for c, marks, _ in fuzz]
        calls["fuzzing"] = (Call(scoring_messages("fuzzing", explanation, texts),
                                 8 + 3 * len(texts)), (texts, [t for _, _, t in fuzz]))
    if logprobs and settings.simulation:
        contexts = ex.held_out + ex.quiet
        tokens = [[flat(decode(t)) for t in c.tokens if t >= 0] for c in contexts]
        truth = [a for c in contexts for t, a in zip(c.tokens, c.acts, strict=True) if t >= 0]
        calls["simulation"] = (Call(scoring_messages("simulation", explanation, tokens),
                                    2 * len(truth) + 4 * len(tokens) + 8, logprobs=5), truth)
    return calls


def _score(kind: str, completion: Any, data: Any) -> dict[str, Any]:
    if kind == "simulation":
        predicted = answers.simulated(completion, len(data))
        return {"correlation": scoring.pearson(predicted, data), "n_tokens": len(data)}
    texts, truth = data
    predicted = answers.binary_list(completion, len(truth))
    return {"accuracy": scoring.accuracy(predicted, truth),
            "balanced_accuracy": scoring.balanced_accuracy(predicted, truth), "n": len(truth),
            "contexts": [{"text": t, "truth": y, "predicted": p}
                         for t, y, p in zip(texts, truth, predicted, strict=True)]}


def _write_json(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def explain_report(report: Path, explainer: Any, features: list[int] | None,
                   settings: ExplainSettings, *, identity: dict[str, Any], device: torch.device,
                   dry_run: bool = False, progress: Progress | None = None,
                   ) -> dict[str, Any] | Plan:
    """Explain and score ``features`` of the report; returns explanations.json's content, or
    with ``dry_run`` the :class:`Plan` (nothing sent; ``explainer`` may then be None)."""
    settings.check()
    summary = read_summary(report)
    chosen = choose_features(summary, features, settings.sample, settings.seed)
    examples, decode = _examples(report, summary["meta"], chosen, settings, device)
    first = [Call(explain_messages(ex.shown, decode), settings.explain_max_tokens)
             for ex in examples]
    if dry_run:
        placeholder = "x" * 4 * settings.explain_max_tokens  # an explanation of the longest kind
        later = [c for ex in examples for c, _ in
                 _scoring_calls(ex, placeholder, decode, settings, True).values()]
        calls = first + later
        return Plan(len(examples), len(calls), sum(c.size() for c in calls),
                    sum(c.max_tokens for c in calls))
    caller = Caller(explainer, report / CACHE, settings.concurrency)
    tick = _ticker(progress, "explaining", len(first))
    results = {ex.index: {"index": ex.index, "shown": len(ex.shown), "unscored": {}}
               for ex in examples}
    later_calls, later_keys = [], []
    for ex, answer in zip(examples, caller.run(first, tick), strict=True):
        row = results[ex.index]
        try:
            row["explanation"] = answers.explanation(_ok(answer))
        except answers.BadAnswer as exc:
            row["explanation"] = None
            row["unscored"] = {k: f"no explanation: {exc}" for k in SCORERS}
            continue
        # Simulation is asked for every time: only the answer says whether logprobs came back.
        for kind, (call, data) in _scoring_calls(ex, row["explanation"], decode, settings,
                                                 True).items():
            later_calls.append(call)
            later_keys.append((ex.index, kind, data))
    tick = _ticker(progress, "scoring", len(later_calls))
    for (index, kind, data), answer in zip(later_keys, caller.run(later_calls, tick),
                                           strict=True):
        try:
            results[index][kind] = _score(kind, _ok(answer), data)
        except answers.BadAnswer as exc:
            results[index]["unscored"][kind] = str(exc)
    return _save(report, results, identity, settings, caller)


def _ok(answer: Any) -> Any:
    if isinstance(answer, answers.BadAnswer):
        raise answer
    return answer


def _ticker(progress: Progress | None, what: str, total: int) -> Callable[[], None] | None:
    if progress is None:
        return None
    count = [0]
    progress(what, 0, total)

    def tick() -> None:
        count[0] += 1
        progress(what, count[0], total)

    return tick


def _save(report: Path, results: dict[int, dict[str, Any]], identity: dict[str, Any],
          settings: ExplainSettings, caller: Caller) -> dict[str, Any]:
    """Merge into explanations.json (same backend and model: earlier features are kept)."""
    from sae_kit.eval.report.render import write_explanations

    path = report / RESULTS
    meta = {**identity, "settings": asdict(settings), "calls_sent": caller.sent,
            "calls_cached": caller.cached, "templates": "sae_kit/eval/explain/templates"}
    features: dict[int, dict[str, Any]] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            same = all(old["meta"].get(k) == identity.get(k) for k in ("backend", "model"))
            features = {f["index"]: f for f in old["features"]} if same else {}
        except (ValueError, KeyError, TypeError):
            features = {}  # a damaged file is replaced, not trusted
    features.update(results)
    data = {"meta": meta, "features": [features[i] for i in sorted(features)]}
    _write_json(path, data)
    write_explanations(report, data)
    return data
