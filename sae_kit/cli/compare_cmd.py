"""`sae-kit compare`: the geometry of several dictionaries at one hook point (docs/analysis.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from sae_kit.cli.common import err, friendly_errors, out_console
from sae_kit.cli.logs import callback, progress, setup_logging
from sae_kit.eval.settings import COMPARE, EVAL
from sae_kit.record.config import DEVICE_HELP


@friendly_errors
def compare(
    sources: list[str] = typer.Argument(
        ..., metavar="SOURCE",
        help="Run directories, SAE directories or Hub ids, all at one hook point."
    ),
    hook_point: str = typer.Option(
        None, help="Which SAE of each run (needed if a run has several)."
    ),
    out: str = typer.Option("compare", help="Directory for summary.json and the PNG plots."),
    tokens: int = typer.Option(
        COMPARE.n_tokens, help="Held-out tokens for L0, ‖â‖/‖a‖ and cos(â, a), whole windows "
        "(fewer if there are fewer)."
    ),
    alive_tokens: int = typer.Option(
        EVAL.alive_tokens, help="Alive elements (fired at least once) are counted on the first "
        "this many tokens of the training part, as `sae-kit eval --alive-tokens` counts them."
    ),
    dataset: str = typer.Option(
        None, help="Run over this text instead of the run's own (alive elements counted on it "
        "too)."
    ),
    split: str = typer.Option("train", help="Split of --dataset."),
    embedding: str = typer.Option(
        "auto", help="2-D embedding: auto (UMAP if installed), umap, pca."
    ),
    importance: bool = typer.Option(
        False, "--importance", help="Also each SAE's attribution (-c * dM/dc, as `sae-kit "
        "importance`; a backward pass per batch per SAE): how concentrated its importance is."
    ),
    batch_size: int = typer.Option(COMPARE.batch_size, help="Windows per forward pass."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json."),
) -> None:
    """Compare dictionaries: orthogonality, cross-dictionary similarity, movement from their
    initialisation, a 2-D embedding, and ‖â‖/‖a‖ and cos(â, a) on held-out tokens; with
    --importance, the SAEs' importance distributions side by side."""
    from pathlib import Path

    from sae_kit.errors import SaeKitError
    from sae_kit.eval.analysis.collect import TextChoice
    from sae_kit.eval.analysis.compare import compare_sources

    if tokens < 1 or batch_size < 1 or alive_tokens < 1:
        raise SaeKitError(f"--tokens, --alive-tokens and --batch-size must be positive, got "
                          f"{tokens}, {alive_tokens}, {batch_size}")
    choice = TextChoice(dataset, split) if dataset else TextChoice()
    _check_out(Path(out))
    setup_logging()
    with progress("compare") as bar:
        summary = compare_sources(sources, hook_point, Path(out), tokens, batch_size, device,
                                  choice, embedding, callback(bar), importance, alive_tokens)
    for what, text in (("metrics", summary["texts"]["activations"]),
                       ("alive", summary["texts"]["alive"])):
        err.print(f"{what}: {text['read']} of {text['text']}", soft_wrap=True, highlight=False)
    err.print(f"[green]written[/]: {Path(out) / 'summary.json'} and "
              f"{', '.join(summary['plots'])} (embedding: {summary['embedding_method']})")
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console = out_console()
    console.print(saes_table(summary))
    if summary["pairs"]:
        console.print(pairs_table(summary))
    if importance:
        console.print(importance_table(summary))


def _check_out(out: Path) -> None:
    """An earlier comparison in ``out`` is replaced, and said to be; other files are not."""
    from sae_kit.errors import SaeKitError

    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / "summary.json").is_file():
        raise SaeKitError(f"--out {str(out)!r} is not empty and holds no earlier comparison "
                          "(no summary.json); name a new or empty directory")
    err.print(f"[yellow]note[/]: replacing the earlier comparison in {escape(str(out))}",
              highlight=False, soft_wrap=True)


def _f(value: Any, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def saes_table(summary: dict[str, Any]) -> Table:
    table = Table("SAE", "loss", "L0", "alive", "within max cos", "random max cos",
                  "max cos to init", "‖â‖/‖a‖", "cos(â, a)", title=summary["hook_point"])
    for label, s in summary["saes"].items():
        a = s["activations"]
        table.add_row(label, str(s.get("loss")), _f(a["l0"], ".1f"),
                      f"{s['n_alive']}/{s['n_dict']}", _f(s["within_max_cos_mean"]),
                      _f(s["random_max_cos_mean"]), _f(s.get("init_max_cos_mean")),
                      _f(a["l2_ratio"]), _f(a["cosine"]))
    return table


def pairs_table(summary: dict[str, Any]) -> Table:
    table = Table("A", "B", "A→B max cos", "B→A max cos", "p (A→B = B→A)",
                  "p (within A = within B)", title="across dictionaries")
    for p in summary["pairs"]:
        table.add_row(p["a"], p["b"], _f(p["a_to_b_mean"]), _f(p["b_to_a_mean"]),
                      _f(p["p_a_to_b_vs_b_to_a"], ".4f"), _f(p["p_within_a_vs_within_b"], ".4f"))
    return table


def importance_table(summary: dict[str, Any]) -> Table:
    """Concentration of |KL attribution| under the default (spliced) convention."""
    table = Table("SAE", "|KL attr.| per token", "top 1% share", "top 10% share",
                  "features for 50%", "for 90%", title="importance (KL, spliced)")
    for label, s in summary["saes"].items():
        kl = s["importance"]["spliced"]["kl"]
        shares = kl["share_of_abs_attribution"]
        table.add_row(label, _f(kl["total_abs_attribution"], ".4g"),
                      _pct(shares["top_1pct"]), _pct(shares["top_10pct"]),
                      str(kl["features_for_50pct"]), str(kl["features_for_90pct"]))
    return table


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
