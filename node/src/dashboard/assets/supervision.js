// The supervision panel (监管): the zone's figures per day, week or month from
// GET /v1/supervision/stats, drawn as a grouped bar chart (SVG built here, no library), what
// stood at the end of the last period, and the complaints (投诉举报) with their state. Only a
// regulator, operator or admin token reads the figures; any other token sees its own
// complaints and a note that the figures need one of those roles.

import { get, query } from "./api.js";
import { badge, byId, h, put, s, short, widthOf } from "./dom.js";
import { fmtNum, fmtTime, getLang, label, t } from "./i18n.js";

const MUTED = "#64748b";
const GRID = "#e2e8f0";
const MARGIN = { left: 40, right: 10, top: 12, bottom: 26 };
/** The series drawn, each a path into a period's figures. */
const SERIES = [
  { key: "listed", color: "#059669", of: (p) => p.listings.entered.listed ?? 0 },
  { key: "applied", color: "#0ea5e9", of: (p) => p.applications.submitted },
  { key: "approved", color: "#8b5cf6", of: (p) => p.applications.approved },
  { key: "granted", color: "#f59e0b", of: (p) => p.authorizations.granted },
  { key: "complaints", color: "#e11d48", of: (p) => p.complaints.steps.file ?? 0 },
  { key: "orders", color: "#64748b", of: (p) => p.orders?.placed ?? 0 },
  { key: "settled", color: "#0f766e", of: (p) => p.orders?.settled ?? 0 },
];
const COMPLAINT_KIND = { received: "wait", investigating: "warn", resolved: "good", dismissed: "muted" };
const COMPLAINTS_PAGE = 50;
/** Refreshes between two readings of every zone's figures (each asks the other zones). */
const ZONES_EVERY = 5;

/** The label of period `p` for the x axis. */
function periodLabel(p, period) {
  const d = new Date(p.start);
  const iso = d.toISOString();
  return period === "month" ? iso.slice(0, 7) : iso.slice(5, 10);
}

/** A grouped bar chart of `periods`. */
function chart(width, periods, period) {
  const height = 220;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const max = Math.max(1, ...periods.flatMap((p) => SERIES.map((x) => x.of(p))));
  const step = plotW / Math.max(1, periods.length);
  const barW = Math.max(1, (step * 0.8) / SERIES.length);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", role: "img", "aria-label": t("sup.chart") });
  for (const frac of [0, 0.5, 1]) {
    const y = MARGIN.top + plotH * (1 - frac);
    svg.append(s("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y, y2: y, stroke: GRID, "stroke-dasharray": "3 3" }));
    svg.append(s("text", { x: MARGIN.left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: MUTED }, fmtNum(Math.round(max * frac))));
  }
  periods.forEach((p, i) => {
    const x0 = MARGIN.left + i * step + step * 0.1;
    SERIES.forEach((series, k) => {
      const n = series.of(p);
      if (!n) return;
      const hgt = (n / max) * plotH;
      svg.append(s("rect", {
        x: x0 + k * barW, y: MARGIN.top + plotH - hgt, width: barW, height: hgt, fill: series.color,
        class: `bar bar-${series.key}`,
      }, s("title", {}, `${periodLabel(p, period)} · ${t(`sup.series.${series.key}`)} · ${fmtNum(n)}`)));
    });
  });
  const ticks = Math.min(6, periods.length);
  for (let k = 0; k < ticks; k++) {
    const i = ticks === 1 ? 0 : Math.round((k * (periods.length - 1)) / (ticks - 1));
    const x = MARGIN.left + i * step + step / 2;
    svg.append(s("text", { x, y: height - 8, "font-size": 11, fill: MUTED, "text-anchor": "middle" }, periodLabel(periods[i], period)));
  }
  svg.append(s("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: MARGIN.top + plotH, y2: MARGIN.top + plotH, stroke: "#94a3b8" }));
  return svg;
}

function legend(periods) {
  return SERIES.map((x) => {
    const sw = h("span", { class: "swatch" });
    sw.style.setProperty("--c", x.color);
    const total = periods.reduce((n, p) => n + x.of(p), 0);
    return h("span", { class: "legend-item" }, sw, `${t(`sup.series.${x.key}`)} ${fmtNum(total)}`);
  });
}

/** What stood at the end of the last period. */
function standing(last) {
  const colon = getLang() === "zh" ? "：" : ": ";
  const part = (title, counts, group) => h("span", {}, h("span", { class: "strong" }, `${title}${colon}`),
    Object.keys(counts).length
      ? Object.entries(counts).map(([k, n], i) => [i ? " · " : "", `${label(group, k)} ${fmtNum(n)}`])
      : "—");
  return [
    part(t("sup.now.listings"), last.listings.by_state, "state"),
    part(t("sup.now.authorizations"), last.authorizations.at_end, "authend"),
    part(t("sup.now.complaints"), last.complaints.at_end, "complaint"),
  ];
}

/** Creates the panel. `ctx` gives `report(source, error)` and `clear(source)`. */
export function createSupervision(ctx, openListing) {
  const els = {
    chart: byId("sup-chart"),
    legend: byId("sup-legend"),
    now: byId("sup-now"),
    period: byId("sup-period"),
    complaints: byId("complaints"),
    count: byId("complaints-count"),
    zones: byId("sup-zones"),
  };
  let stats = null;
  let refused = false;
  let complaints = null;
  let zones = null;
  let ticks = 0;
  let key = "";

  function target(c) {
    if (c.target.kind === "listing") {
      return h("a", {
        href: "#", class: "mono small", title: c.target.id,
        onclick: (e) => {
          e.preventDefault();
          openListing(c.target.id);
        },
      }, short(c.target.id, 14, 6));
    }
    return h("span", {}, c.target.id);
  }

  function complaintRow(c) {
    return h("tr", { dataset: { id: String(c.id) } },
      h("td", { class: "num" }, String(c.id)),
      h("td", { class: "nowrap" }, fmtTime(c.filed_at)),
      h("td", {}, label("target", c.target.kind), " ", target(c)),
      h("td", {}, c.category ?? "—"),
      h("td", { class: "small" }, c.text),
      h("td", {}, c.filed_by),
      h("td", {}, badge(label("complaint", c.state), COMPLAINT_KIND[c.state]),
        c.suspended_listing ? [" ", badge(t("sup.suspended"), "bad")] : null));
  }

  /** Every zone of the exchange that answered, with its totals over the periods shown. */
  function zoneTable() {
    if (!zones || zones.zones.length < 2) return null;
    const head = ["zone", ...SERIES.map((x) => `series.${x.key}`), "open"].map((c) => h("th", {}, t(`sup.${c}`)));
    const rows = zones.zones.map((z) => {
      if (!z.stats) {
        return h("tr", {}, h("td", {}, ctx.zoneName(z.zone)),
          h("td", { colspan: SERIES.length + 1, class: "muted small" }, z.error ?? "—"));
      }
      const last = z.stats.periods[z.stats.periods.length - 1];
      const open = last ? (last.complaints.at_end.received ?? 0) + (last.complaints.at_end.investigating ?? 0) : 0;
      return h("tr", { dataset: { zone: z.zone } }, h("td", { title: z.zone }, ctx.zoneName(z.zone)),
        SERIES.map((x) => h("td", { class: "num" }, fmtNum(z.stats.periods.reduce((n, p) => n + x.of(p), 0)))),
        h("td", { class: "num" }, fmtNum(open)));
    });
    return [h("h4", {}, t("sup.zones")), h("table", { class: "audit zones" }, h("thead", {}, h("tr", {}, head)), h("tbody", {}, rows))];
  }

  function render() {
    const drawn = JSON.stringify([stats, refused, complaints, zones, getLang(), widthOf(els.chart)]);
    if (drawn === key) return;
    key = drawn;
    put(els.zones, refused ? null : zoneTable());
    if (refused) {
      put(els.chart, h("p", { class: "muted" }, t("sup.needs_role")));
      put(els.legend);
      put(els.now);
    } else if (stats) {
      put(els.chart, chart(widthOf(els.chart), stats.periods, stats.period));
      put(els.legend, legend(stats.periods));
      const last = stats.periods[stats.periods.length - 1];
      put(els.now, last ? standing(last) : null);
    } else {
      put(els.zones);
      put(els.chart);
      put(els.legend);
      put(els.now);
    }
    if (!complaints) {
      put(els.count);
      put(els.complaints);
      return;
    }
    put(els.count, t("sup.complaints.count", { n: fmtNum(complaints.length) }));
    if (!complaints.length) {
      put(els.complaints, h("p", { class: "muted" }, t("sup.complaints.empty")));
      return;
    }
    const head = ["id", "filed", "target", "category", "text", "by", "state"].map((c) => h("th", {}, t(`sup.col.${c}`)));
    put(els.complaints, h("table", { class: "audit complaints" },
      h("thead", {}, h("tr", {}, head)),
      h("tbody", {}, complaints.map(complaintRow))));
  }

  async function load() {
    const period = els.period.value || "day";
    try {
      stats = await get(`/v1/supervision/stats${query({ period, consistency: "local" })}`);
      refused = false;
      ctx.clear("supervision");
    } catch (e) {
      if (e?.status === 403) {
        refused = true;
        stats = null;
      } else {
        ctx.report("supervision", e);
      }
    }
    if (!refused && ticks++ % ZONES_EVERY === 0) {
      try {
        zones = await get(`/v1/supervision/federation${query({ period, consistency: "local" })}`);
        ctx.clear("zones");
      } catch (e) {
        if (e?.status !== 403) ctx.report("zones", e);
      }
    }
    try {
      const page = await get(`/v1/complaints${query({ limit: COMPLAINTS_PAGE, consistency: "local" })}`);
      complaints = page.items;
      ctx.clear("complaints");
    } catch (e) {
      ctx.report("complaints", e);
    }
    render();
  }

  els.period.addEventListener("change", () => {
    stats = null;
    zones = null;
    ticks = 0;
    load();
  });

  return {
    refresh: () => load(),
    redraw() {
      key = "";
      render();
    },
    reset() {
      stats = null;
      refused = false;
      complaints = null;
      zones = null;
      ticks = 0;
      key = "";
      render();
    },
  };
}
