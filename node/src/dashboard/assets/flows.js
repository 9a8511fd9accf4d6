// The flows panel: per-minute charts (SVG) of what entered this zone, by origin and decision,
// and of what left it (published) or was kept home by the export firewall (withheld), with
// the most frequent reasons for refusals and withholdings.

import { badge, h, put, s, widthOf } from "./dom.js";
import { fmtClock, fmtNum, getLang, label, t } from "./i18n.js";

const PALETTE = ["#0ea5e9", "#8b5cf6", "#f59e0b", "#10b981", "#ec4899", "#14b8a6", "#6366f1", "#84cc16", "#f43f5e", "#a855f7"];
const PUBLISHED = "#059669";
const WITHHELD = "#ea580c";
const MUTED = "#64748b";
const GRID = "#e2e8f0";
/** Most bars drawn; longer windows put several minutes in one bar. */
const MAX_BARS = 120;
const MARGIN = { left: 46, right: 12, top: 12, bottom: 24 };

function hatch(id, color) {
  return s("pattern", { id, patternUnits: "userSpaceOnUse", width: 6, height: 6, patternTransform: "rotate(45)" },
    s("rect", { width: 6, height: 6, fill: "#fff" }),
    s("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: color, "stroke-width": 3.2 }));
}

/**
 * One diverging bar chart: `up` and `down` are lists of {name, color, fill, counts} stacked
 * above and below the zero line; bucket `b` starts at `from + b * group` minutes.
 */
function chart({ width, height, up, down, from, group, bars, defs, empty }) {
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const sums = (series) => Array.from({ length: bars }, (_, b) => series.reduce((n, x) => n + x.counts[b], 0));
  const maxUp = Math.max(0, ...sums(up));
  const maxDown = Math.max(0, ...sums(down));
  const span = maxUp + maxDown;
  const zeroY = MARGIN.top + (span ? (plotH * maxUp) / span : plotH / 2);
  const scale = span ? plotH / span : 0;
  const step = plotW / bars;
  const barW = Math.max(1, step * 0.78);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", role: "img" });
  svg.append(s("defs", {}, defs));

  const yLabel = (y, text) => {
    svg.append(s("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y, y2: y, stroke: GRID, "stroke-dasharray": "3 3" }));
    svg.append(s("text", { x: MARGIN.left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: MUTED }, text));
  };
  if (maxUp) yLabel(MARGIN.top, fmtNum(maxUp));
  if (maxDown) yLabel(MARGIN.top + plotH, `−${fmtNum(maxDown)}`);

  const minute = 60000;
  const timeOf = (b) => from + b * group * minute;
  for (let b = 0; b < bars; b++) {
    const x = MARGIN.left + b * step + (step - barW) / 2;
    let top = zeroY;
    for (const series of up) {
      const n = series.counts[b];
      if (!n) continue;
      const hgt = n * scale;
      top -= hgt;
      svg.append(s("rect", { x, y: top, width: barW, height: hgt, fill: series.fill, stroke: series.color, "stroke-width": 0.6 },
        s("title", {}, `${fmtClock(timeOf(b))} · ${series.name} · ${fmtNum(n)}`)));
    }
    let bottom = zeroY;
    for (const series of down) {
      const n = series.counts[b];
      if (!n) continue;
      const hgt = n * scale;
      svg.append(s("rect", { x, y: bottom, width: barW, height: hgt, fill: series.fill, stroke: series.color, "stroke-width": 0.8 },
        s("title", {}, `${fmtClock(timeOf(b))} · ${series.name} · ${fmtNum(n)}`)));
      bottom += hgt;
    }
  }
  svg.append(s("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: zeroY, y2: zeroY, stroke: "#94a3b8", "stroke-width": 1 }));

  const ticks = Math.min(5, bars);
  for (let k = 0; k < ticks; k++) {
    const b = ticks === 1 ? 0 : Math.round((k * (bars - 1)) / (ticks - 1));
    const x = MARGIN.left + b * step + step / 2;
    svg.append(s("line", { x1: x, x2: x, y1: height - MARGIN.bottom, y2: height - MARGIN.bottom + 4, stroke: "#94a3b8" }));
    svg.append(s("text", {
      x, y: height - 6, "font-size": 11, fill: MUTED,
      "text-anchor": k === 0 ? "start" : k === ticks - 1 ? "end" : "middle",
    }, fmtClock(timeOf(b))));
  }
  if (!span) {
    svg.append(s("text", { x: MARGIN.left + plotW / 2, y: MARGIN.top + plotH / 2 - 8, "text-anchor": "middle", "font-size": 13, fill: MUTED }, empty));
  }
  return svg;
}

function bucket(counts, group, bars) {
  const out = new Array(bars).fill(0);
  counts.forEach((n, i) => {
    out[Math.floor(i / group)] += n;
  });
  return out;
}

let lastKey = "";

/** Draws the flows panel; `zoneName(id)` gives a zone's display name. */
export function renderFlows(els, flows, zoneName) {
  if (!flows) {
    lastKey = "";
    put(els.inbound);
    put(els.outbound);
    put(els.legend);
    put(els.reasons);
    return;
  }
  const width = widthOf(els.inbound, 300);
  const key = JSON.stringify([flows.inbound, flows.outbound, flows.pending, flows.rejections, flows.withheld, flows.minutes, width, getLang()]);
  if (key === lastKey) return;
  lastKey = key;

  const group = Math.ceil(flows.minutes / MAX_BARS);
  const bars = Math.ceil(flows.minutes / group);
  const from = new Date(flows.from).getTime();
  const origins = [...new Set(flows.inbound.map((x) => x.origin))].sort();
  const colorOf = new Map(origins.map((o, i) => [o, PALETTE[i % PALETTE.length]]));
  const defs = origins.map((o, i) => hatch(`flow-hatch-${i}`, colorOf.get(o)));
  const up = [];
  const down = [];
  const totals = new Map(origins.map((o) => [o, { recognised: 0, refused: 0 }]));
  for (const [i, origin] of origins.entries()) {
    const color = colorOf.get(origin);
    const name = zoneName(origin);
    const of = (pred) => flows.inbound.filter((x) => x.origin === origin && pred(x.decision));
    const counts = (list) => bucket(list.reduce((acc, x) => acc.map((n, k) => n + x.counts[k]), new Array(flows.minutes).fill(0)), group, bars);
    const recognised = of((d) => d === "recognised");
    const refused = of((d) => d !== "recognised");
    totals.get(origin).recognised = recognised.reduce((n, x) => n + x.total, 0);
    totals.get(origin).refused = refused.reduce((n, x) => n + x.total, 0);
    up.push({ name: `${name} · ${t("flows.recognised")}`, color, fill: color, counts: counts(recognised) });
    down.push({ name: `${name} · ${t("flows.refused")}`, color, fill: `url(#flow-hatch-${i})`, counts: counts(refused) });
  }
  put(els.inbound, chart({
    width, height: 220, up, down, from, group, bars, defs, empty: t("flows.empty"),
  }));

  const outSeries = (state) => flows.outbound.find((o) => o.state === state) ?? { counts: new Array(flows.minutes).fill(0), total: 0 };
  const published = outSeries("published");
  const withheld = outSeries("withheld");
  put(els.outbound, chart({
    width,
    height: 130,
    up: [{ name: t("flows.published"), color: PUBLISHED, fill: PUBLISHED, counts: bucket(published.counts, group, bars) }],
    down: [{ name: t("flows.withheldlabel"), color: WITHHELD, fill: "url(#flow-hatch-out)", counts: bucket(withheld.counts, group, bars) }],
    from, group, bars, defs: [hatch("flow-hatch-out", WITHHELD)], empty: t("flows.empty"),
  }));

  const swatch = (color, hatched) => {
    const el = h("span", { class: `swatch${hatched ? " hatched" : ""}` });
    el.style.setProperty("--c", color);
    return el;
  };
  put(els.legend,
    origins.map((o) => h("span", { class: "legend-item" }, swatch(colorOf.get(o)), h("span", { class: "strong" }, zoneName(o)),
      h("span", { class: "muted" }, t("flows.totals", { r: fmtNum(totals.get(o).recognised), x: fmtNum(totals.get(o).refused) })))),
    h("span", { class: "legend-item" }, swatch(PUBLISHED), `${t("flows.published")} ${fmtNum(published.total)}`),
    h("span", { class: "legend-item" }, swatch(WITHHELD, true), `${t("flows.withheldlabel")} ${fmtNum(withheld.total)}`),
    flows.pending ? badge(t("flows.pending", { n: fmtNum(flows.pending) }), "wait") : null);

  const reasons = [];
  if (flows.rejections.length) {
    reasons.push(h("div", {}, h("h4", {}, t("flows.rejections")),
      h("ul", { class: "reasons" }, flows.rejections.map((r) => h("li", {},
        h("span", { class: "count" }, `× ${fmtNum(r.count)}`),
        badge(label("decision", r.decision), r.decision === "stale" ? "warn" : "bad"),
        h("span", { class: "strong" }, zoneName(r.origin)),
        h("span", {}, r.reason))))));
  }
  if (flows.withheld.length) {
    reasons.push(h("div", {}, h("h4", {}, t("flows.withheld")),
      h("ul", { class: "reasons" }, flows.withheld.map((r) => h("li", {},
        h("span", { class: "count" }, `× ${fmtNum(r.count)}`),
        h("span", {}, r.reason))))));
  }
  put(els.reasons, reasons);
}

/** Forces the next renderFlows to draw (after a resize). */
export function invalidateFlows() {
  lastKey = "";
}
