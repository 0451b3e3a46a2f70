"""The figure of docs/experiments/ground-truth.md: recovery of F and of the rest against L0.

    sae-kit sweep docs/sweeps/ground-truth.toml
    sae-kit bench runs/ground-truth --json > bench.json
    python benchmarks/ground_truth.py bench.json --out docs/experiments/ground-truth.png

Reads the JSON of ``sae-kit bench`` (its ``points``: mean and standard deviation over seeds),
draws two panels - mean max cosine of the functional features F, and of the rest, against L0,
one line per loss with 1-standard-deviation error bars and the random-dictionary chance level -
and prints the points as a Markdown table for the experiment page.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

PANELS = [("mmcs_functional", "MMCS of F (the features the output reads)"),
          ("mmcs_rest", "MMCS of the rest (structure the output ignores)")]
TABLE = ["l0", "alive", "ce_loss_increase", "mmcs_functional", "mmcs_rest", "mcc_functional",
         "mcc_rest", "recovered_functional", "recovered_rest", "latents_on_functional"]


def loss_of(point: dict[str, Any]) -> str:
    return str(point["point"]).split(" ")[0]


def true_l0(data: dict[str, Any]) -> float:
    """The synthetic model's ``active`` option: its expected number of features per token."""
    from sae_kit_synthetic.options import parse

    from sae_kit.model_names import source_ref

    ref = source_ref(data["runs"][0]["model"])
    return parse(ref.options).active if ref else float("nan")


def plot(data: dict[str, Any], out: Path) -> None:
    points = data["points"]
    chance = sum(r["ground_truth"]["chance_mmcs"] for r in data["runs"]) / len(data["runs"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (key, title) in zip(axes, PANELS, strict=True):
        for loss in sorted({loss_of(p) for p in points}):
            mine = sorted((p for p in points if loss_of(p) == loss), key=lambda p: p["l0"][0])
            ax.errorbar([p["l0"][0] for p in mine], [p[key][0] for p in mine],
                        xerr=[p["l0"][1] for p in mine], yerr=[p[key][1] for p in mine],
                        marker="o", capsize=3, label=loss)
        ax.axhline(chance, color="grey", linestyle=":", label="random dictionary (alive size)")
        ax.axvline(true_l0(data), color="grey", linestyle="--", linewidth=0.8,
                   label="true L0 (active features per token)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("L0 (held-out tokens)")
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("mean max cosine to the dictionary")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def markdown(points: list[dict[str, Any]]) -> str:
    head = "| point | seeds | " + " | ".join(TABLE) + " |"
    rows = [head, "|" + " --- |" * (len(TABLE) + 2)]
    for p in sorted(points, key=lambda p: (loss_of(p), p["l0"][0])):
        cells = [_cell(p[k], ".0f" if k == "alive" else ".3f") for k in TABLE]
        rows.append(f"| {p['point']} | {len(p['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _cell(value: list[float] | None, spec: str) -> str:
    return "" if value is None else f"{value[0]:{spec}} ± {value[1]:{spec}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path, help="the output of `sae-kit bench --json`")
    parser.add_argument("--out", type=Path, default=Path("ground-truth.png"))
    args = parser.parse_args()
    data = json.loads(args.bench_json.read_text())
    plot(data, args.out)
    print(markdown(data["points"]))
    print(f"\nfigure: {args.out}")


if __name__ == "__main__":
    main()
