// The federation map: exchanges as bands, zones as cards, nodes as rows showing their Raft
// role, health, indices and lag; curves from other zones into this node's zone, weighted by
// what entered in the flows window and by the gossip messages this node received.

import { h, put, s, widthOf } from "./dom.js";
import { fmtNum, fmtTime, getLang, label, t } from "./i18n.js";

const ROLE_COLOR = {
  leader: "#d97706",
  follower: "#2563eb",
  candidate: "#ea580c",
  learner: "#64748b",
  unknown: "#94a3b8",
};

const TINTS = [
  { band: "#ecfdf5", stroke: "#34d399", text: "#065f46" },
  { band: "#eef2ff", stroke: "#818cf8", text: "#3730a3" },
  { band: "#fdf4ff", stroke: "#e879f9", text: "#86198f" },
  { band: "#fff7ed", stroke: "#fb923c", text: "#9a3412" },
];

const INK = "#0f172a";
const MUTED = "#64748b";
const BAD = "#dc2626";
const WARN = "#b45309";
const GOOD = "#059669";
const ACCENT = "#0f766e";

const PAD = 12;
const BAND_PAD = 14;
const BAND_HEAD = 34;
const BAND_GAP = 28;
const GAP = 16;
const MIN_CARD = 250;
const MAX_CARD = 360;
const CARD_HEAD = 52;
const NODE_ROW = 42;
const CARD_FOOT = 26;

/** Rough rendered width of `text` at `size` px: CJK glyphs are square, Latin about half. */
function textWidth(text, size) {
  let w = 0;
  for (const ch of String(text)) w += ch.codePointAt(0) > 0x2e80 ? size : size * 0.58;
  return w;
}

/** `text` cut with an ellipsis to fit `width` px at `size`. */
function fit(text, width, size) {
  const str = String(text ?? "");
  if (textWidth(str, size) <= width) return str;
  let out = "";
  for (const ch of str) {
    if (textWidth(`${out}${ch}…`, size) > width) break;
    out += ch;
  }
  return `${out}…`;
}

/** Adds the zones that flows or gossip name but no probe reached, so their traffic shows. */
function zonesWithFlows(overview, flows) {
  const exchanges = overview.exchanges.map((e) => ({ ...e, zones: [...e.zones] }));
  const origins = new Set((flows?.inbound ?? []).map((f) => f.origin));
  for (const g of overview.gossip ?? []) origins.add(g.zone);
  for (const origin of origins) {
    const [ex] = origin.split("/");
    const exchange = exchanges.find((e) => e.id === ex);
    if (!origin.includes("/") || !exchange || exchange.zones.some((z) => z.id === origin)) continue;
    exchange.zones.push({ id: origin, nodes: [] });
  }
  return exchanges;
}

function cardHeight(zone) {
  return CARD_HEAD + Math.max(1, zone.nodes.length) * NODE_ROW + CARD_FOOT;
}

/**
 * Positions of bands and cards for a drawing `width` px wide: exchanges side by side when
 * each fits its zones in one row, else stacked, with zones wrapping inside each band.
 */
function layout(exchanges, width) {
  const area = width - 2 * PAD;
  const need = exchanges.map((e) => Math.max(1, e.zones.length) * (MIN_CARD + GAP) - GAP + 2 * BAND_PAD);
  const sideBySide = need.reduce((a, b) => a + b, 0) + BAND_GAP * (exchanges.length - 1) <= area;
  const bands = [];
  const cards = new Map();
  const place = (ex, i, x, y, w) => {
    const inner = w - 2 * BAND_PAD;
    const cols = Math.max(1, Math.floor((inner + GAP) / (MIN_CARD + GAP)));
    const cardW = Math.min(MAX_CARD, (inner - GAP * (cols - 1)) / cols);
    let rowY = y + BAND_HEAD;
    for (let r = 0; r * cols < ex.zones.length; r++) {
      const row = ex.zones.slice(r * cols, (r + 1) * cols);
      for (const [c, zone] of row.entries()) {
        cards.set(zone.id, {
          zone, exchange: ex, x: x + BAND_PAD + c * (cardW + GAP), y: rowY, w: cardW, h: cardHeight(zone),
        });
      }
      rowY += Math.max(...row.map(cardHeight)) + GAP;
    }
    if (!ex.zones.length) rowY += 36 + GAP;
    const band = { ex, tint: TINTS[i % TINTS.length], x, y, w, h: rowY - y - GAP + BAND_PAD };
    bands.push(band);
    return band;
  };
  if (sideBySide) {
    const spare = area - need.reduce((a, b) => a + b, 0) - BAND_GAP * (exchanges.length - 1);
    const total = need.reduce((a, b) => a + b, 0);
    let x = PAD;
    for (const [i, ex] of exchanges.entries()) {
      const w = need[i] + (spare * need[i]) / total;
      place(ex, i, x, PAD, w);
      x += w + BAND_GAP;
    }
    const tallest = Math.max(...bands.map((b) => b.h));
    for (const b of bands) b.h = tallest;
    return { bands, cards, height: PAD + tallest + PAD };
  }
  let y = PAD;
  for (const [i, ex] of exchanges.entries()) y += place(ex, i, PAD, y, area).h + BAND_GAP;
  return { bands, cards, height: y - BAND_GAP + PAD };
}

/**
 * A curve from card `a` into card `b`: side to side when they share a row, else from the
 * facing edges. It is drawn under the cards; the numbers are on the cards themselves.
 */
function curve(a, b) {
  let p;
  let u;
  let q;
  let r;
  if (Math.abs(a.y - b.y) < 1) {
    const right = a.x < b.x;
    p = { x: right ? a.x + a.w : a.x, y: a.y + 30 };
    u = { x: right ? b.x : b.x + b.w, y: b.y + 30 };
    q = { x: (p.x + u.x) / 2, y: p.y };
    r = q;
  } else {
    const down = a.y < b.y;
    p = { x: a.x + a.w / 2, y: down ? a.y + a.h : a.y };
    u = { x: b.x + b.w / 2 + (a.x === b.x ? 0 : a.x < b.x ? -30 : 30), y: down ? b.y : b.y + b.h };
    const dy = (u.y - p.y) / 2;
    q = { x: p.x, y: p.y + dy };
    r = { x: u.x, y: u.y - dy };
  }
  return `M${p.x},${p.y} C${q.x},${q.y} ${r.x},${r.y} ${u.x},${u.y}`;
}

function pill(x, y, text, color, background) {
  const size = 11.5;
  const w = textWidth(text, size) + 14;
  return s("g", {},
    s("rect", { x: x - w / 2, y: y - 10, width: w, height: 20, rx: 10, fill: background, stroke: color, "stroke-width": 1 }),
    s("text", { x, y: y + 4, "text-anchor": "middle", "font-size": size, fill: color, "font-weight": 600 }, text));
}

function nodeRow(node, x, y, w, isSelf) {
  const role = node.reachable ? (node.role ?? "unknown") : null;
  const color = role ? ROLE_COLOR[role] ?? ROLE_COLOR.unknown : BAD;
  const g = s("g", { class: "node" });
  const tip = [
    node.name,
    node.api_url ?? t("map.nourl"),
    node.reachable ? label("role", node.role) : `${t("map.unreachable")}: ${node.error ?? ""}`,
    node.leader ? t("map.leader", { name: node.leader }) : "",
    node.term !== null && node.term !== undefined
      ? t("map.indices", { term: node.term, commit: node.commit_index, applied: node.applied_index }) : "",
    node.lag ? t("map.lag", { lag: node.lag }) : "",
  ].filter(Boolean).join("\n");
  g.append(s("title", {}, tip));
  const cx = x + 22;
  const cy = y + 15;
  if (isSelf) g.append(s("circle", { cx, cy, r: 11.5, fill: "none", stroke: ACCENT, "stroke-width": 2 }));
  g.append(node.reachable
    ? s("circle", { cx, cy, r: 7, fill: color })
    : s("circle", { cx, cy, r: 6.5, fill: "#fff", stroke: BAD, "stroke-width": 2, "stroke-dasharray": "3 2" }));
  const nameSize = 13;
  const nameText = fit(node.name, w * 0.55, nameSize);
  const line1 = s("text", { x: x + 40, y: y + 14, "font-size": nameSize, fill: INK, "font-weight": 600 }, nameText);
  const roleText = node.reachable ? label("role", node.role) : t("map.unreachable");
  line1.append(s("tspan", { dx: 8, "font-size": 12, fill: color, "font-weight": 600 }, roleText));
  if (isSelf) line1.append(s("tspan", { dx: 6, "font-size": 11, fill: ACCENT }, `◉ ${t("map.self")}`));
  g.append(line1);
  const line2 = s("text", { x: x + 40, y: y + 31, "font-size": 11.5, fill: MUTED });
  if (node.reachable) {
    line2.append(t("map.indices", {
      term: fmtNum(node.term), commit: fmtNum(node.commit_index), applied: fmtNum(node.applied_index),
    }));
    const lag = node.lag ?? 0;
    line2.append(s("tspan", { dx: 6, fill: lag === 0 ? GOOD : lag > 100 ? BAD : WARN, "font-weight": 600 },
      t("map.lag", { lag: fmtNum(lag) })));
  } else {
    line2.setAttribute("fill", BAD);
    line2.append(fit(node.error ?? t("map.unreachable"), w - 52, 11.5));
  }
  g.append(line2);
  return g;
}

/** The traffic line at the foot of a card. */
function footer(c, isHub, link, inbound, outbound) {
  const text = s("text", { x: c.x + 14, y: c.y + c.h - 10, "font-size": 11.5, fill: MUTED });
  const part = (str, color) => text.append(s("tspan", { fill: color, "font-weight": 600 }, str));
  if (isHub) {
    part(`↓ ${t("map.recognised", { n: fmtNum(inbound.recognised) })}`, GOOD);
    if (inbound.refused) part(` · ${t("map.refused", { n: fmtNum(inbound.refused) })}`, BAD);
    if (outbound) {
      part(`   ↑ ${t("map.published", { n: fmtNum(outbound.published) })}`, ACCENT);
      if (outbound.withheld) part(` · ${t("map.withheld", { n: fmtNum(outbound.withheld) })}`, WARN);
    }
  } else if (link && (link.recognised || link.refused || link.messages)) {
    part("→ ", MUTED);
    if (link.recognised) part(`${t("map.recognised", { n: fmtNum(link.recognised) })} `, GOOD);
    if (link.refused) part(`${t("map.refused", { n: fmtNum(link.refused) })} `, BAD);
    if (link.messages) part(t("map.messages", { n: fmtNum(link.messages) }), MUTED);
  } else {
    text.append(t("map.quiet"));
  }
  return text;
}

function card(c, self, link, inbound, outbound) {
  const isHub = c.zone.id === self.zone;
  const g = s("g", { class: "zone", "data-zone": c.zone.id });
  g.append(s("rect", {
    x: c.x, y: c.y, width: c.w, height: c.h, rx: 10, fill: "#fff",
    stroke: isHub ? ACCENT : "#cbd5e1", "stroke-width": isHub ? 2.5 : 1.2,
  }));
  const title = c.zone.display_name ?? c.zone.id;
  g.append(s("text", { x: c.x + 14, y: c.y + 22, "font-size": 14.5, "font-weight": 700, fill: INK },
    fit(title, c.w - (isHub ? 92 : 28), 14.5)));
  const leaders = c.zone.nodes.filter((n) => n.reachable && n.role === "leader");
  const reported = c.zone.nodes.find((n) => n.reachable && n.leader)?.leader;
  const leaderName = leaders[0]?.name ?? reported;
  const sub = s("text", { x: c.x + 14, y: c.y + 40, "font-size": 11.5, fill: MUTED });
  if (c.zone.display_name) sub.append(`${c.zone.id} · `);
  if (c.zone.nodes.some((n) => n.reachable)) {
    sub.append(s("tspan", { fill: leaderName ? MUTED : BAD, "font-weight": leaderName ? 400 : 700 },
      leaderName ? t("map.leader", { name: leaderName }) : t("map.noleader")));
  }
  g.append(sub);
  if (isHub) g.append(pill(c.x + c.w - 44, c.y + 18, t("map.hub"), ACCENT, "#f0fdfa"));
  if (!c.zone.nodes.length) {
    g.append(s("text", { x: c.x + 14, y: c.y + CARD_HEAD + 18, "font-size": 12, fill: MUTED }, t("map.nonodes")));
  }
  for (const [i, node] of c.zone.nodes.entries()) {
    const isSelf = isHub && node.name === self.node;
    g.append(nodeRow(node, c.x, c.y + CARD_HEAD + i * NODE_ROW, c.w, isSelf));
  }
  g.append(footer(c, isHub, link, inbound, outbound));
  return g;
}

function traffic(overview, flows) {
  const links = new Map();
  const entry = (zone) => {
    if (!links.has(zone)) links.set(zone, { recognised: 0, refused: 0, messages: 0 });
    return links.get(zone);
  };
  for (const f of flows?.inbound ?? []) {
    if (f.decision === "recognised") entry(f.origin).recognised += f.total;
    else entry(f.origin).refused += f.total;
  }
  for (const g of overview.gossip ?? []) entry(g.zone).messages += g.messages;
  links.delete(overview.self.zone);
  return links;
}

function outboundTotals(flows) {
  if (!flows) return null;
  const total = (state) => flows.outbound.find((o) => o.state === state)?.total ?? 0;
  return { published: total("published"), withheld: total("withheld") };
}

let lastKey = "";

/**
 * Draws the map into `container` and a one-line health summary into `summary`; without an
 * overview yet, shows `waiting` instead.
 */
export function renderMap(container, summary, overview, flows, waiting) {
  if (!overview) {
    lastKey = "";
    put(container, h("p", { class: "placeholder" }, waiting));
    put(summary);
    return;
  }
  const width = widthOf(container);
  const exchanges = zonesWithFlows(overview, flows);
  const links = traffic(overview, flows);
  const outbound = outboundTotals(flows);
  const key = JSON.stringify([exchanges, [...links], outbound, width, getLang()]);
  if (key === lastKey) return;
  lastKey = key;

  const { bands, cards, height } = layout(exchanges, width);
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "map-svg",
    "aria-label": t("map.title"),
  });
  const defs = s("defs", {});
  for (const [id, color] of [["arrow-flow", GOOD], ["arrow-refused", BAD], ["arrow-gossip", "#94a3b8"]]) {
    defs.append(s("marker", {
      id, viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
    }, s("path", { d: "M0,0 L10,5 L0,10 z", fill: color })));
  }
  svg.append(defs);

  for (const b of bands) {
    svg.append(s("rect", { x: b.x, y: b.y, width: b.w, height: b.h, rx: 14, fill: b.tint.band, stroke: b.tint.stroke, "stroke-opacity": 0.5 }));
    const head = s("text", { x: b.x + BAND_PAD, y: b.y + 23, "font-size": 15, "font-weight": 700, fill: b.tint.text },
      fit(b.ex.display_name ?? b.ex.id, b.w - 2 * BAND_PAD - textWidth(b.ex.id, 12) - 12, 15));
    head.append(s("tspan", { dx: 8, "font-size": 12, "font-weight": 400, fill: MUTED }, b.ex.id));
    svg.append(head);
    if (!b.ex.zones.length) {
      svg.append(s("text", { x: b.x + BAND_PAD, y: b.y + BAND_HEAD + 20, "font-size": 12, fill: MUTED }, t("map.nonodes")));
    }
  }

  const hub = cards.get(overview.self.zone);
  if (hub) {
    for (const [zone, l] of links) {
      const from = cards.get(zone);
      if (!from) continue;
      const flowing = l.recognised + l.refused;
      const color = flowing ? (l.recognised ? GOOD : BAD) : "#94a3b8";
      svg.append(s("path", {
        d: curve(from, hub), fill: "none", stroke: color, "stroke-opacity": 0.55,
        "stroke-width": flowing ? 1.2 + Math.min(3, Math.log2(1 + flowing)) : 1.2,
        "stroke-dasharray": flowing ? null : "5 4",
        "marker-end": `url(#${flowing ? (l.recognised ? "arrow-flow" : "arrow-refused") : "arrow-gossip"})`,
      }));
    }
  }
  const inbound = { recognised: 0, refused: 0 };
  for (const l of links.values()) {
    inbound.recognised += l.recognised;
    inbound.refused += l.refused;
  }
  for (const c of cards.values()) svg.append(card(c, overview.self, links.get(c.zone.id), inbound, outbound));
  put(container, svg);

  const nodes = exchanges.flatMap((e) => e.zones.flatMap((z) => z.nodes));
  const zones = exchanges.flatMap((e) => e.zones);
  const leaderless = zones.filter((z) => z.nodes.some((n) => n.reachable) && !z.nodes.some((n) => n.reachable && n.role === "leader"));
  const lagging = nodes.filter((n) => (n.lag ?? 0) > 0);
  put(summary,
    h("span", {}, t("map.summary", {
      ex: exchanges.length, zones: zones.length,
      up: nodes.filter((n) => n.reachable).length, nodes: nodes.length,
    })),
    h("span", { class: leaderless.length ? "warn" : "ok" },
      leaderless.length ? t("map.missingleaders", { n: leaderless.length }) : t("map.allleaders")),
    lagging.length ? h("span", { class: "warn" }, t("map.lagging", { n: lagging.length })) : null,
    h("span", { class: "muted" }, fmtTime(overview.at)));
}

/** The legend under the map title. */
export function renderLegend(el) {
  const dot = (color, hollow) => h("span", { class: `dot${hollow ? " hollow" : ""}`, "data-color": color });
  const items = ["leader", "follower", "candidate", "learner"].map((r) =>
    h("span", { class: "legend-item" }, dot(ROLE_COLOR[r]), label("role", r)));
  items.push(h("span", { class: "legend-item" }, dot(BAD, true), t("legend.unreachable")));
  items.push(h("span", { class: "legend-item" }, h("span", { class: "line solid" }), t("legend.link")));
  items.push(h("span", { class: "legend-item" }, h("span", { class: "line dashed" }), t("legend.gossip")));
  put(el, ...items);
  for (const d of el.querySelectorAll(".dot")) {
    if (d.classList.contains("hollow")) d.style.borderColor = d.dataset.color;
    else d.style.background = d.dataset.color;
  }
}

/** Forces the next renderMap to draw even if nothing changed (after a resize). */
export function invalidateMap() {
  lastKey = "";
}
