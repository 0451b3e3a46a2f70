"""Is functional importance more concentrated in e2e dictionaries than in local ones?

    OMP_NUM_THREADS=1 python scripts/importance_experiment.py --out runs/geometry   # reuses runs

On the SAEs of docs/experiments/geometry.md (sae-kit-tiny, blocks.2.hook_resid_pre, local /
e2e / e2e+ds at similar L0; trained here by that experiment's own settings where missing), runs
`sae-kit importance`'s computation on the held-out split and reports, per SAE: L0 and alive
features, the whole-SAE KL and CE, how much of the total |attribution| the top 1% / 10% of
features carry and how many features carry half and 90% of it, and the Spearman agreement of
attribution and exact ablation - for both conventions. Writes --out/importance/<run>/ (the
command's files), --out/importance/results.md (the tables of docs/experiments/importance.md)
and --out/importance/concentration.png (cumulative share of |attribution| against the fraction
of the dictionary, one curve per SAE).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from geometry_experiment import HOOK_POINT, LAMBDAS, train_one  # noqa: E402

from sae_kit.eval.analysis.attribution import cumulative_share, features_for_share  # noqa: E402
from sae_kit.eval.analysis.collect import TextChoice  # noqa: E402
from sae_kit.eval.analysis.importance import collect_importance  # noqa: E402
from sae_kit.eval.analysis.importance_files import write_importance  # noqa: E402
from sae_kit.eval.analysis.importance_plot import concentration_plot  # noqa: E402
from sae_kit.eval.analysis.importance_values import per_feature, summary  # noqa: E402
from sae_kit.eval.analysis.source import open_source  # noqa: E402
from sae_kit.eval.settings import ImportanceSettings  # noqa: E402
from sae_kit.model.loading import load_model  # noqa: E402

# (convention, metric) pairs reported: KL under `spliced` (the e2e training objective's model),
# CE under both; `with_error` KL attribution is ~0 by construction (docs/analysis.md).
VIEWS = (("spliced", "kl"), ("spliced", "ce"), ("with_error", "ce"), ("with_error", "kl"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/geometry", help="The geometry experiment's runs.")
    parser.add_argument("--seed", type=int, default=0, help="Which seed's SAEs.")
    parser.add_argument("--tokens", type=int, default=100_000,
                        help="Held-out tokens (the built-in split has ~4.9k: all of it).")
    parser.add_argument("--exact-top", type=int, default=32)
    parser.add_argument("--exact-random", type=int, default=32)
    return parser.parse_args()


def measure(run: Path, args: argparse.Namespace) -> dict[str, Any]:
    source = open_source(str(run), HOOK_POINT, "cpu")
    loaded = load_model(source.model, revision=source.revision, device=torch.device("cpu"))
    settings = ImportanceSettings(n_tokens=args.tokens, exact_top=args.exact_top,
                                  exact_random=args.exact_random, seed=args.seed)
    started = time.perf_counter()
    data = collect_importance(source, loaded, TextChoice(), settings, torch.device("cpu"))
    seconds = time.perf_counter() - started
    write_importance(data, Path(args.out) / "importance" / run.name)
    values, s = per_feature(data), summary(data)
    row: dict[str, Any] = {"name": run.name, "seconds": seconds, "n_tokens": data.n_tokens,
                           "n_dict": source.sae.n_dict, "alive": int((data.count > 0).sum()),
                           "l0": float(data.count.sum()) / data.n_tokens, "summary": s,
                           "curves": {}}
    for c, m in VIEWS:
        importance = values[f"{c}.{m}.attribution_abs"]
        row[c, m] = {"half": features_for_share(importance, 0.5),
                     "ninety": features_for_share(importance, 0.9),
                     **s[c][m]}
        row["curves"][f"{c}.{m}"] = cumulative_share(importance)
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| SAE | L0 | alive | KL (spliced) | CE (spliced) | CE (with error) | clean CE |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        s = r["summary"]
        kl, ce = s["spliced"]["kl"]["whole_sae"], s["spliced"]["ce"]["whole_sae"]
        lines.append(f"| {r['name']} | {r['l0']:.1f} | {r['alive']}/{r['n_dict']} | {kl:.4f} | "
                     f"{ce:.4f} | {s['with_error']['ce']['whole_sae']:.4f} | "
                     f"{s['clean_ce']:.4f} |")
    lines += ["", "| SAE | convention | metric | top 1% share | top 10% share | features for 50% "
              "| for 90% | Spearman attr. vs exact | sum of exact (per token) |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c, m in VIEWS:
        for r in rows:
            v = r[c, m]
            shares = v["share_of_abs_attribution"]
            rho = v["spearman_attribution_vs_exact"]
            lines.append(f"| {r['name']} | {c} | {m.upper()} | {_pct(shares['top_1pct'])} | "
                         f"{_pct(shares['top_10pct'])} | {v['half']} | {v['ninety']} | "
                         f"{'n/a' if rho is None else f'{rho:.2f}'} | {v['sum_of_exact']:.4g} |")
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    rows = []
    for loss in LAMBDAS:
        run = train_one(out, loss, args.seed)
        rows.append(measure(run, args))
        print(f"{run.name}: importance in {rows[-1]['seconds']:.0f} s", file=sys.stderr,
              flush=True)
    target = out / "importance"
    (target / "results.md").write_text(markdown(rows))
    concentration_plot({r["name"]: r["curves"] for r in rows}, target / "concentration.png")
    print(target / "results.md")


if __name__ == "__main__":
    main()
