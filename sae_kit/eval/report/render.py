"""Write the feature report: a static directory that opens from disk, no server, no network.

    report/
      index.html            # Jinja2: the sortable, searchable index and the density histogram
      report.js, report.css # shipped files: the feature panel, sorting and search
      data/tokens.js        # display text of every token the report shows
      data/features-NNNN.js # CHUNK features each, loaded by <script> when a feature is opened
      summary.json          # meta + per-feature statistics
      features.jsonl        # one full record per feature (what the panel shows)
      features.safetensors  # the raw tensors
      importance.json, importance.safetensors, density_importance.png   # with --importance
Features are loaded with <script> tags rather than fetch(), which browsers refuse on file://.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import jinja2
import torch

from sae_kit.eval.analysis.features import FeatureData, feature_records, tensors
from sae_kit.eval.analysis.importance_files import write_importance
from sae_kit.eval.analysis.importance_values import importance_columns, importance_summary
from sae_kit.eval.report.interpretability import interpretability_view
from sae_kit.progress import Progress

CHUNK = 128
"""Features per data file: a panel loads one file of ~0.5 MB, not the whole dictionary."""
_HERE = Path(__file__).resolve().parent


# The histograms' frame (SVG units): room left for the count axis and its label, below for
# the x tick labels and label, right for half an end tick label. report.js uses the same.
MARGIN = {"left": 58, "right": 16, "top": 8, "bottom": 38}


def count_ticks(peak: int) -> list[int]:
    """0 and round steps up to ``peak``: the smallest step of 1, 2 or 5 x 10^k with at most five
    steps (six ticks)."""
    steps = (m * 10**e for e in range(19) for m in (1, 2, 5))
    step = next(s for s in steps if peak <= 5 * s)
    return list(range(0, peak + 1, step))


def svg_histogram(values: list[float], n_bins: int = 40, width: int = 640,
                  height: int = 160) -> dict[str, Any]:
    """Bars, x ticks and count-axis ticks (SVG coordinates) of a histogram of ``values``, for
    the template's macro: the plot is ``width`` x ``height`` inside :data:`MARGIN`."""
    frame = {"width": width + MARGIN["left"] + MARGIN["right"],
             "height": height + MARGIN["top"] + MARGIN["bottom"], "left": MARGIN["left"],
             "top": MARGIN["top"], "plot_width": width, "plot_height": height}
    if not values:
        return {**frame, "bars": [], "ticks": [], "y_ticks": []}
    lo, hi = math.floor(min(values)), math.ceil(max(values))
    hi = hi if hi > lo else lo + 1
    counts = torch.histc(torch.tensor(values, dtype=torch.float64), n_bins, lo, hi).long()
    peak = max(int(counts.max()), 1)
    step = (hi - lo) / n_bins
    bar_w = width / n_bins
    x0, bottom = MARGIN["left"], MARGIN["top"] + height
    bars = [{"x": round(x0 + i * bar_w, 2), "w": round(bar_w - 1, 2), "count": int(c),
             "h": round(height * int(c) / peak, 2), "y": round(bottom - height * int(c) / peak, 2),
             "label": f"{lo + i * step:.2f} to {lo + (i + 1) * step:.2f}"}
            for i, c in enumerate(counts)]
    every = max(1, math.ceil((hi - lo) / 12))  # at most ~12 labels along the axis
    ticks = [{"x": round(x0 + (t - lo) / (hi - lo) * width, 2), "label": str(t)}
             for t in range(lo, hi + 1, every)]
    y_ticks = [{"y": round(bottom - height * c / peak, 2), "label": f"{c:,}"}
               for c in count_ticks(peak)]
    return {**frame, "bars": bars, "ticks": ticks, "y_ticks": y_ticks}


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(_HERE / "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined)


def _write_js(path: Path, call: str, *args: Any) -> None:
    body = ", ".join(json.dumps(a, ensure_ascii=False, separators=(",", ":")) for a in args)
    path.write_text(f"{call}({body});\n", encoding="utf-8")


def write_report(data: FeatureData, out: Path, progress: Progress | None = None,
                 explained_from: Path | None = None) -> Path:
    """Write the report directory; returns its index.html. ``progress`` hears of every chunk
    of features written (most of `sae-kit features`' time on a large dictionary). The index
    shows the explanations in ``explained_from`` (default ``out``: the report this replaces)."""
    from sae_kit.store.files import save_tensors

    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    for old in (out / "data").glob("features-*.js"):
        old.unlink()  # a smaller dictionary than last time must not leave stale chunks
    summary_keys = ("index", "density", "log10_density", "mean", "max", "dead")
    rows, chunk = [], []
    # Streamed: one chunk of records in memory at a time, not the whole dictionary's.
    with (out / "features.jsonl").open("w", encoding="utf-8") as jsonl:
        for record in feature_records(data):
            jsonl.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            rows.append({**{k: record[k] for k in summary_keys},
                         "promotes": " ".join(data.tokens.get(i, "?")
                                              for i, _ in record["promoted"][:3]),
                         **importance_columns(record.get("importance"))})
            chunk.append(record)
            if len(chunk) == CHUNK or record["index"] == data.stats.n_dict - 1:
                number = record["index"] // CHUNK
                _write_js(out / "data" / f"features-{number:04d}.js", "SAEReport.addChunk",
                          number, chunk)
                chunk = []
                if progress:
                    progress("writing report (features)", record["index"] + 1, data.stats.n_dict)
    _write_js(out / "data" / "tokens.js", "SAEReport.setTokens", data.tokens)
    importance = None
    if data.importance is not None:
        importance = importance_summary(data.importance)
        write_importance(data.importance, out)
    summary = {"meta": data.meta, "tokens": data.tokens, "features": rows,
               **({"importance": importance} if importance else {})}
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False), encoding="utf-8")
    save_tensors(tensors(data), out / "features.safetensors", metadata={"format": "pt"})
    for name in ("report.js", "report.css"):
        shutil.copyfile(_HERE / "static" / name, out / name)
    return _write_index(out, data.meta, rows, _read_explanations(explained_from or out),
                        importance)


def _write_index(out: Path, meta: dict[str, Any], rows: list[dict[str, Any]],
                 explained: dict[int, dict[str, Any]],
                 importance: dict[str, Any] | None = None) -> Path:
    alive = [r["log10_density"] for r in rows if r["log10_density"] is not None]
    versus = interpretability_view(rows, explained) if importance and explained else []
    html = _environment().get_template("index.html.j2").render(
        meta=meta, rows=rows, chunk=CHUNK, density_hist=svg_histogram(alive),
        explained=explained, importance=importance, versus=versus)
    (out / "index.html").write_text(html, encoding="utf-8")
    return out / "index.html"


def _scores(feature: dict[str, Any]) -> dict[str, Any]:
    """The index's columns for one explained feature (None: unscored)."""
    def pick(kind: str, key: str) -> float | None:
        return (feature.get(kind) or {}).get(key)

    return {"explanation": feature.get("explanation") or "",
            "detection": pick("detection", "balanced_accuracy"),
            "fuzzing": pick("fuzzing", "balanced_accuracy"),
            "simulation": pick("simulation", "correlation")}


def _read_explanations(out: Path) -> dict[int, dict[str, Any]]:
    """Index columns from ``explanations.json`` (`sae-kit explain`), where the report has one."""
    try:
        data = json.loads((out / "explanations.json").read_text(encoding="utf-8"))
        return {int(f["index"]): _scores(f) for f in data["features"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_explanations(out: Path, explanations: dict[str, Any]) -> Path:
    """Add `sae-kit explain`'s results to an existing report: data/explanations.js for the
    panels, and the index rendered again with explanation and score columns."""
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    rows = summary["features"]
    if rows and "promotes" not in rows[0]:  # a report written before summaries held it
        tokens = summary["tokens"]
        with (out / "features.jsonl").open(encoding="utf-8") as lines:
            for row, line in zip(rows, lines, strict=True):
                promoted = json.loads(line)["promoted"][:3]
                row["promotes"] = " ".join(tokens.get(str(i), "?") for i, _ in promoted)
    _write_js(out / "data" / "explanations.js", "SAEReport.setExplanations",
              {f["index"]: f for f in explanations["features"]})
    return _write_index(out, summary["meta"], rows,
                        {int(f["index"]): _scores(f) for f in explanations["features"]},
                        summary.get("importance"))
