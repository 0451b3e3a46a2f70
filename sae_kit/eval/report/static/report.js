// sae-kit feature report: sorting and search of the index, and the per-feature panel (#f123).
// Feature data arrive as data/features-NNNN.js files calling SAEReport.addChunk; they are
// loaded with <script> tags because browsers refuse fetch() on file:// pages.
"use strict";

const SAEReport = {
  chunks: {}, tokens: {}, waiting: {}, explanations: {},
  chunkSize: Number(document.body.dataset.chunk),
  setTokens(tokens) { this.tokens = tokens; },
  setExplanations(explanations) { this.explanations = explanations; },
  addChunk(index, features) {
    this.chunks[index] = features;
    (this.waiting[index] || []).forEach((done) => done());
    delete this.waiting[index];
  },
  withChunk(index, done) {
    if (this.chunks[index]) { done(); return; }
    if (this.waiting[index]) { this.waiting[index].push(done); return; }
    this.waiting[index] = [done];
    const script = document.createElement("script");
    script.src = `data/features-${String(index).padStart(4, "0")}.js`;
    document.body.appendChild(script);
  },
  token(id) { return id < 0 ? "" : (this.tokens[id] ?? `<${id}>`); },
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function fmt(x) { return Number(x).toPrecision(3); }

// One context: every token shaded by the feature's activation relative to its maximum.
function contextRow(ctx, max, centre) {
  const row = el("div", { class: "context" }, el("span", { class: "ctx-value" }, fmt(ctx.value)));
  ctx.tokens.forEach((id, i) => {
    if (id < 0) return;
    const act = ctx.acts[i];
    const span = el("span", { class: i === centre ? "tok centre" : "tok",
      title: `${SAEReport.token(id)}  ${fmt(act)}` }, SAEReport.token(id));
    if (act !== 0) span.style.backgroundColor = `rgba(255, 110, 0, ${Math.min(1, Math.abs(act) / max).toFixed(3)})`;
    row.append(span);
  });
  return row;
}

// The same frame as the index's histogram (render.py's MARGIN): a count axis on the left,
// |activation| ticks at the decades (or the ends) below, every label inside the viewBox.
const MARGIN = { left: 58, right: 16, top: 8, bottom: 38 };

function svgEl(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function countTicks(peak) {  // as render.py's count_ticks: 1, 2 or 5 x 10^k, at most 5 steps
  for (let e = 0; ; e++) for (const m of [1, 2, 5]) {
    const step = m * 10 ** e;
    if (peak <= 5 * step) return Array.from({ length: Math.floor(peak / step) + 1 }, (_, i) => i * step);
  }
}

function edgeTicks(edges) {  // indices of the edges to label: decades, else the two ends
  let picked = edges.map((e, i) => [e, i]).filter(([e]) => Math.abs(Math.log10(e) - Math.round(Math.log10(e))) < 1e-6).map(([, i]) => i);
  if (picked.length < 2) picked = [...new Set([0, ...picked, edges.length - 1])].sort((a, b) => a - b);
  return picked;
}

function histogramSvg(hist) {
  const w = 480, h = 120, x0 = MARGIN.left, bottom = MARGIN.top + h;
  const width = w + MARGIN.left + MARGIN.right, height = h + MARGIN.top + MARGIN.bottom;
  const svg = svgEl("svg", { id: "activation-histogram", class: "histogram",
    viewBox: `0 0 ${width} ${height}`, width, height });
  const peak = Math.max(1, ...hist.counts), bw = w / Math.max(1, hist.counts.length);
  hist.counts.forEach((c, i) => {
    const bh = h * c / peak;
    const rect = svgEl("rect", { x: x0 + i * bw, y: bottom - bh, width: Math.max(1, bw - 1), height: bh });
    rect.append(svgEl("title", {}, `${fmt(hist.edges[i])} to ${fmt(hist.edges[i + 1])}: ${c}`));
    svg.append(rect);
  });
  svg.append(svgEl("line", { class: "axis", x1: x0, y1: bottom, x2: x0 + w, y2: bottom }),
    svgEl("line", { class: "axis", x1: x0, y1: MARGIN.top, x2: x0, y2: bottom }));
  let last = -Infinity;
  if (hist.edges.length) edgeTicks(hist.edges).forEach((i) => {
    const x = x0 + i * bw;
    if (x - last < 36) return;  // no two labels on top of each other
    last = x;
    svg.append(svgEl("text", { class: "xtick", x, y: bottom + 14, "text-anchor": "middle" },
      String(Number(hist.edges[i].toPrecision(3)))));
  });
  countTicks(peak).forEach((c) => svg.append(svgEl("text", { class: "ytick", x: x0 - 5,
    y: bottom - h * c / peak + 4, "text-anchor": "end" }, c.toLocaleString("en"))));
  svg.append(svgEl("text", { class: "xlabel", x: x0 + w / 2, y: bottom + 31, "text-anchor": "middle" },
    "|activation| (log-spaced bins)"),
    svgEl("text", { class: "ylabel", transform: `translate(13 ${MARGIN.top + h / 2}) rotate(-90)`,
      "text-anchor": "middle" }, "firing tokens"));
  return svg;
}

function tokenTable(id, caption, pairs) {
  const table = el("table", { id, class: "logits" }, el("caption", {}, caption),
    el("tr", {}, el("th", {}, "token"), el("th", {}, "logit effect")));
  pairs.forEach(([tok, v]) => table.append(el("tr", {},
    el("td", { class: "tok" }, SAEReport.token(tok)), el("td", {}, fmt(v)))));
  return table;
}

// `sae-kit explain`'s explanation and scores, with the held-out contexts each scorer judged.
function explanationSection(e) {
  const section = el("section", { id: "explanation" }, el("h3", {}, "Explanation"),
    el("p", { class: "explanation-text" }, e.explanation ?? "(none)"));
  const line = [];
  if (e.detection) line.push(`detection balanced accuracy ${fmt(e.detection.balanced_accuracy)} (accuracy ${fmt(e.detection.accuracy)}, ${e.detection.n} contexts)`);
  if (e.fuzzing) line.push(`fuzzing balanced accuracy ${fmt(e.fuzzing.balanced_accuracy)} (accuracy ${fmt(e.fuzzing.accuracy)}, ${e.fuzzing.n} contexts)`);
  if (e.simulation) line.push(`simulation correlation ${e.simulation.correlation === null ? "undefined" : fmt(e.simulation.correlation)} (${e.simulation.n_tokens} tokens)`);
  section.append(el("p", { class: "scores" }, line.join("; ") || "not scored"));
  Object.entries(e.unscored || {}).forEach(([k, why]) => section.append(el("p", { class: "unscored" }, `${k}: not scored (${why})`)));
  ["detection", "fuzzing"].forEach((kind) => {
    if (!e[kind]) return;
    const table = el("table", { class: `scored ${kind}` }, el("caption", {}, `${kind}: held-out contexts`),
      el("tr", {}, el("th", {}, "context"), el("th", {}, "truth"), el("th", {}, "answer")));
    e[kind].contexts.forEach((c) => table.append(el("tr", { class: c.truth === c.predicted ? "right" : "wrong" },
      el("td", { class: "tok" }, c.text), el("td", {}, String(c.truth)), el("td", {}, String(c.predicted)))));
    section.append(table);
  });
  return section;
}

// `sae-kit features --importance`: both conventions, attribution next to the exact ablation.
function importanceSection(imp, top) {
  const names = [["attribution", "attribution"], ["attribution_abs", "|attribution|"],
    ["attribution_firing", "attribution per firing token"], ["exact", "exact"],
    ["exact_firing", "exact per firing token"]];
  const table = el("table", { id: "importance-panel" },
    el("caption", {}, "change when the feature's code is zeroed (nats per token)"),
    el("tr", {}, el("th", {}, "convention"), el("th", {}, "metric"),
      ...names.map(([, label]) => el("th", {}, label))));
  [["spliced", "spliced"], ["with_error", "with error"]].forEach(([c, label]) => {
    ["kl", "ce"].forEach((m) => table.append(el("tr", { "data-convention": c, "data-metric": m },
      el("td", {}, label), el("td", {}, m.toUpperCase()),
      ...names.map(([k]) => el("td", {}, imp[c][m][k] === null ? "—" : fmt(imp[c][m][k]))))));
  });
  const how = imp.exact === null ? "not ablated exactly (only the top and a random sample are)"
    : `ablated exactly (${imp.exact === "top" ? "among the top by |KL attribution|" : "random sample"})`;
  const section = el("section", { id: "importance" }, el("h3", {}, "Functional importance"),
    el("p", {}, `Attribution is the first-order estimate −c·∂M/∂c; ${how}.`), table);
  if (imp.contexts && top) section.append(contextEffects(imp.contexts, top));
  return section;
}

// ΔKL at the outlined token and the ones after it when the feature is removed there only.
function contextEffects(effects, top) {
  const centre = SAEReport.before;
  const box = el("div", { id: "context-effects" }, el("h4", {}, "Per-context effect: ΔKL at each later position when the feature is removed at the outlined token only"));
  top.forEach((ctx, j) => {
    const effect = effects[j];
    if (!effect) return;
    [["spliced", "spliced"], ["with_error", "with error"]].forEach(([c, label]) => {
      const near = effect[c].near, peak = Math.max(1e-12, ...near.map((v) => Math.abs(v ?? 0)));
      const row = el("div", { class: "context effect", "data-convention": c },
        el("span", { class: "ctx-value" }, label));
      ctx.tokens.forEach((id, i) => {
        if (id < 0) return;
        const v = i >= centre ? near[i - centre] : undefined;
        const span = el("span", { class: i === centre ? "tok centre" : "tok",
          title: v === undefined || v === null ? SAEReport.token(id) : `${SAEReport.token(id)}  ΔKL ${fmt(v)}` },
          SAEReport.token(id));
        if (v) span.style.backgroundColor = `rgba(${v > 0 ? "40, 90, 200" : "200, 40, 40"}, ${Math.min(1, Math.abs(v) / peak).toFixed(3)})`;
        row.append(span);
      });
      row.append(el("span", { class: "rest" }, ` ΔKL here ${fmt(near[0])}, rest of window ${fmt(effect[c].rest)}`));
      box.append(row);
    });
  });
  return box;
}

function renderFeature(f) {
  const body = document.getElementById("feature-body");
  body.replaceChildren(el("h2", {}, `Feature ${f.index}`),
    el("p", { class: "stats" }, f.dead ? "dead: never fired on these tokens" :
      `density ${fmt(f.density)} (log10 ${fmt(f.log10_density)}), mean ${fmt(f.mean)}, max ${fmt(f.max)}`));
  if (f.dead) return;
  const explained = SAEReport.explanations[f.index];
  if (explained) body.append(explanationSection(explained));
  if (f.importance) body.append(importanceSection(f.importance, f.top));
  const max = f.max || 1, centre = SAEReport.before;
  const top = el("section", { id: "top-contexts" }, el("h3", {}, "Top activations"));
  f.top.forEach((ctx) => top.append(contextRow(ctx, max, centre)));
  const quant = el("section", { id: "quantiles" }, el("h3", {}, "Samples by activation quantile"));
  f.quantiles.forEach((q) => {
    quant.append(el("h4", {}, `quantile ${q.quantile} of ${q.of} (${fmt(q.low)} to ${fmt(q.high)})`));
    q.contexts.forEach((ctx) => quant.append(contextRow(ctx, max, centre)));
  });
  const near = el("ul", { id: "neighbours" });
  f.neighbours.forEach(([j, c]) => near.append(el("li", {}, el("a", { href: `#f${j}` }, `feature ${j}`), ` cos ${fmt(c)}`)));
  body.append(top, quant,
    el("section", {}, el("h3", {}, "Activation histogram (firing tokens)"), histogramSvg(f.histogram)),
    el("section", { class: "side" }, el("h3", {}, "Output tokens"),
      tokenTable("promoted", "most promoted", f.promoted),
      tokenTable("suppressed", "most suppressed", f.suppressed)),
    el("section", {}, el("h3", {}, "Nearest features (decoder cosine)"), near));
}

function route() {
  const match = /^#f(\d+)$/.exec(location.hash);
  document.getElementById("feature").hidden = !match;
  document.getElementById("index").hidden = Boolean(match);
  if (!match) return;
  const i = Number(match[1]), chunk = Math.floor(i / SAEReport.chunkSize);
  SAEReport.withChunk(chunk, () => {
    const f = SAEReport.chunks[chunk][i - chunk * SAEReport.chunkSize];
    if (f) renderFeature(f); else document.getElementById("feature-body").textContent = `no feature ${i}`;
    window.scrollTo(0, 0);
  });
}

function setUpTable() {
  const table = document.getElementById("features"), tbody = table.tBodies[0];
  const rows = Array.from(tbody.rows);
  table.tHead.querySelectorAll("th").forEach((th, col) => th.addEventListener("click", () => {
    const descending = th.dataset.sorted !== "desc";
    table.tHead.querySelectorAll("th").forEach((h) => delete h.dataset.sorted);
    th.dataset.sorted = descending ? "desc" : "asc";
    const key = (r) => r.cells[col].dataset.value;
    const numeric = th.dataset.type === "num";
    rows.sort((a, b) => {
      const d = numeric ? Number(key(a)) - Number(key(b)) : key(a).localeCompare(key(b));
      return descending ? -d : d;
    });
    tbody.append(...rows);
  }));
  document.getElementById("search").addEventListener("input", (event) => {
    const q = event.target.value.trim().toLowerCase();
    let shown = 0;
    rows.forEach((r) => {
      const hit = !q || r.dataset.search.toLowerCase().split(" ").some((w) => w.startsWith(q));
      r.hidden = !hit; shown += hit;
    });
    document.getElementById("shown").textContent = shown;
  });
}

// After every <script> of the page has run (data/tokens.js comes after this file).
document.addEventListener("DOMContentLoaded", () => {
  SAEReport.before = Number(document.body.dataset.before);
  setUpTable();
  window.addEventListener("hashchange", route);
  route();
});
