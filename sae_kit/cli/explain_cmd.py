"""`sae-kit explain`: explanations and their scores from any OpenAI-compatible model."""

from __future__ import annotations

import typer

from sae_kit.cli.common import err, friendly_errors
from sae_kit.eval.explain.settings import ExplainSettings, help_of

_D = ExplainSettings()


def _features(text: str | None) -> list[int] | None:
    from sae_kit.errors import SaeKitError

    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SaeKitError(f"--features takes comma-separated feature indices, e.g. 3,17,42; "
                          f"got {text!r}") from None


@friendly_errors
def explain(
    run_dir: str = typer.Argument(..., help="A feature report directory (`sae-kit features "
                                  "--out`), or the run / SAE directory whose default report to "
                                  "use."),
    model: str = typer.Option(..., help="The model: a name the server serves (openai), or a "
                              "local directory or Hub id (transformers)."),
    endpoint: str = typer.Option(None, help="Base URL of an OpenAI-compatible server, e.g. "
                                 "http://127.0.0.1:8000/v1 (vLLM, llama.cpp, Ollama, hosted)."),
    backend: str = typer.Option("openai", help="Explainer plugin: 'openai' (HTTP) or "
                                "'transformers' (in-process); `sae-kit plugins` lists them."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="Environment variable holding the "
                                    "API key; it is read, never written anywhere."),
    hook_point: str = typer.Option(None, help="Which SAE of a run with several."),
    features: str = typer.Option(None, help="Comma-separated feature indices to explain "
                                 "instead of a sample."),
    sample: int = typer.Option(_D.sample, help=help_of("sample")),
    seed: int = typer.Option(_D.seed, help=help_of("seed")),
    score_contexts: int = typer.Option(_D.score_contexts, help=help_of("score_contexts")),
    explain_max_tokens: int = typer.Option(_D.explain_max_tokens,
                                           help=help_of("explain_max_tokens")),
    concurrency: int = typer.Option(_D.concurrency, help=help_of("concurrency")),
    timeout: float = typer.Option(_D.timeout, help=help_of("timeout")),
    retries: int = typer.Option(_D.retries, help=help_of("retries")),
    retry_wait: float = typer.Option(_D.retry_wait, help=help_of("retry_wait")),
    simulation: bool = typer.Option(_D.simulation, help=help_of("simulation")),
    pool_tokens: int = typer.Option(_D.pool_tokens, help=help_of("pool_tokens")),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the calls and characters it "
                                 "would send, and send nothing."),
    device: str = typer.Option("auto", help="Device of the model whose features are explained "
                               "(and of a transformers explainer)."),
    json_out: bool = typer.Option(False, "--json", help="Print explanations.json's summary as "
                                  "JSON."),
) -> None:
    """Explain features with an LLM and score the explanations (detection, fuzzing, simulation)."""
    import json
    import os

    from sae_kit.cli.logs import callback, progress
    from sae_kit.eval.explain.pipeline import RESULTS, explain_report, find_report
    from sae_kit.explainers.base import ExplainerSettings
    from sae_kit.model.device import resolve_device
    from sae_kit.plugins import load

    settings = ExplainSettings(sample=sample, seed=seed, score_contexts=score_contexts,
                               explain_max_tokens=explain_max_tokens, concurrency=concurrency,
                               timeout=timeout, retries=retries, retry_wait=retry_wait,
                               simulation=simulation,
                               pool_tokens=pool_tokens)
    settings.check()
    wanted = _features(features)
    torch_device = resolve_device(device)
    report = find_report(run_dir, hook_point)
    identity = {"backend": backend, "model": model, "endpoint": endpoint,
                "api_key_env": api_key_env}
    if dry_run:
        plan = explain_report(report, None, wanted, settings, identity=identity,
                              device=torch_device, dry_run=True)
        err.print(f"would explain {plan.features} features with {plan.calls} calls: "
                  f"{plan.characters:,} characters sent (about {plan.characters // 4:,} tokens), "
                  f"at most {plan.max_answer_tokens:,} tokens answered; nothing was sent")
        typer.echo(json.dumps({"features": plan.features, "calls": plan.calls,
                               "characters": plan.characters,
                               "max_answer_tokens": plan.max_answer_tokens}))
        return
    explainer_cls = load("explainers", backend)
    explainer = explainer_cls(ExplainerSettings(
        model=model, endpoint=endpoint, api_key=os.environ.get(api_key_env) or None,
        timeout=timeout, retries=retries, retry_wait=retry_wait, device=str(torch_device)))
    bar = progress("explain")
    try:
        with bar:
            data = explain_report(report, explainer, wanted, settings, identity=identity,
                                  device=torch_device, progress=callback(bar))
    finally:
        explainer.close()
    _summarise(data)
    path = report / RESULTS
    typer.echo(json.dumps(data["meta"]) if json_out else path)


def _summarise(data: dict) -> None:
    rows = data["features"]
    parts = []
    for kind, key in (("detection", "balanced_accuracy"), ("fuzzing", "balanced_accuracy"),
                      ("simulation", "correlation")):
        scored = [r[kind][key] for r in rows if r.get(kind)]
        values = [v for v in scored if v is not None]
        undefined = f", {len(scored) - len(values)} undefined" if len(values) < len(scored) else ""
        parts.append(f"{kind} {sum(values) / len(values):.3f} (n={len(values)}{undefined})"
                     if values else f"{kind} unscored" if not scored
                     else f"{kind} undefined for all {len(scored)} (constant predictions)")
    meta = data["meta"]
    err.print(f"{len(rows)} features explained; mean {', '.join(parts)}; "
              f"{meta['calls_sent']} calls sent, {meta['calls_cached']} from the cache")
    reasons: dict[str, int] = {}
    for r in rows:
        for kind, why in r["unscored"].items():
            reasons[f"{kind}: {why}"] = reasons.get(f"{kind}: {why}", 0) + 1
    for why, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
        err.print(f"[yellow]unscored[/] ({n} features) {why}")
