// The dashboard's entry point: the token, the language toggle, the error banner, and the
// polling loop that keeps every panel live without reloading the page.

import { getToken, setToken, takeTokenFromFragment, get, query } from "./api.js";
import { createApplications } from "./applications.js";
import { createAudit } from "./audit.js";
import { createCatalog } from "./catalog.js";
import { badge, byId, debounce, h, put, short } from "./dom.js";
import { invalidateFlows, renderFlows } from "./flows.js";
import { applyStatic, fmtNum, fmtTime, getLang, onLangChange, setLang, t } from "./i18n.js";
import { invalidateMap, renderLegend, renderMap } from "./map.js";
import { createTrades } from "./trades.js";
import { createSupervision } from "./supervision.js";

/** Time between two refreshes of every panel. */
const POLL_MS = 3000;

takeTokenFromFragment();

const errors = new Map();

function describe(source, e) {
  if (e?.status === 0) return t("error.network", { msg: e.message });
  if (e?.status === 401) return t("error.unauthorized", { msg: e.message });
  const field = e?.field ? ` (${e.field})` : "";
  return `${t(`error.source.${source}`)}: ${e?.message ?? e}${field}`;
}

function showErrors() {
  const el = byId("error");
  if (!errors.size) {
    el.hidden = true;
    put(el);
    return;
  }
  put(el, [...errors.values()].map((m) => h("div", {}, m)));
  el.hidden = false;
}

const ctx = {
  overview: null,
  flows: null,
  /** Shows `e` in the error banner; an unreachable node or a bad token is reported once. */
  report(source, e) {
    const key = e?.status === 0 ? "network" : e?.status === 401 ? "auth" : source;
    errors.set(key, describe(source, e));
    showErrors();
  },
  /** `source` answered: its error, and any network or token error, is over. */
  clear(source) {
    const had = errors.size;
    errors.delete(source);
    errors.delete("network");
    errors.delete("auth");
    if (errors.size !== had) showErrors();
  },
  /** A zone's display name where the overview knows it, else its id. */
  zoneName(id) {
    for (const e of ctx.overview?.exchanges ?? []) {
      const z = e.zones.find((x) => x.id === id);
      if (z?.display_name) return z.display_name;
    }
    return id;
  },
};

const catalog = createCatalog(ctx);
const audit = createAudit(ctx);
const applications = createApplications(ctx, (id) => catalog.open(id));
const trades = createTrades(ctx, (id) => catalog.open(id));
const supervision = createSupervision(ctx, (id) => catalog.open(id));
const flowEls = {
  inbound: byId("flows-in"),
  outbound: byId("flows-out"),
  legend: byId("flows-legend"),
  reasons: byId("flows-reasons"),
};
let flowMinutes = 60;

function renderWhoami() {
  const o = ctx.overview;
  if (!o) {
    put(byId("whoami"), t("subtitle"));
    return;
  }
  const ex = o.exchanges.find((e) => e.id === o.self.exchange);
  const exchange = ex?.display_name ?? o.self.exchange;
  const zone = ctx.zoneName(o.self.zone);
  put(byId("whoami"),
    h("span", { class: "strong" }, exchange), " · ",
    zone === exchange ? null : [zone, " · "],
    h("code", {}, o.self.node), " · ", t("subtitle"));
}

/** The signed audit tree heads this node holds of other zones, a flagged zone first. */
function renderHeads() {
  const el = byId("heads");
  const heads = [...(ctx.overview?.audit_heads ?? [])].sort((a, b) => Number(a.consistent) - Number(b.consistent));
  if (!ctx.overview) {
    put(byId("heads-count"));
    put(el);
    return;
  }
  const bad = heads.filter((x) => !x.consistent).length;
  put(byId("heads-count"), heads.length ? t("heads.count", { n: fmtNum(heads.length), bad: fmtNum(bad) }) : "");
  if (!heads.length) {
    put(el, h("p", { class: "muted" }, t("heads.empty")));
    return;
  }
  const head = ["zone", "size", "root", "signed", "checked", "state"].map((c) => h("th", {}, t(`heads.${c}`)));
  const body = heads.map((x) => h("tr", { class: x.consistent ? "" : "refused" },
    h("td", {}, ctx.zoneName(x.zone), h("span", { class: "muted small" }, ` ${x.zone}`)),
    h("td", { class: "num" }, fmtNum(x.size)),
    h("td", { class: "mono", title: x.root_hash }, short(x.root_hash, 12, 6)),
    h("td", { class: "nowrap" }, fmtTime(x.timestamp)),
    h("td", { class: "nowrap" }, fmtTime(x.checked_at)),
    h("td", { title: x.problem ?? "" },
      x.consistent ? badge(t("heads.consistent"), "good") : badge(t("heads.rewritten"), "bad"),
      x.consistent ? null : h("span", { class: "muted small" }, ` ${x.problem ?? ""}`))));
  put(el, h("table", { class: "audit" }, h("thead", {}, h("tr", {}, head)), h("tbody", {}, body)));
}

function renderAll() {
  renderWhoami();
  renderHeads();
  const waiting = getToken() ? t("map.waiting") : t("token.needed");
  renderMap(byId("map"), byId("map-summary"), ctx.overview, ctx.flows, waiting);
  renderFlows(flowEls, ctx.flows, ctx.zoneName);
}

async function loadOverview() {
  try {
    ctx.overview = await get("/v1/federation/overview");
    ctx.clear("overview");
    catalog.onOverview();
  } catch (e) {
    ctx.report("overview", e);
  }
}

async function loadFlows() {
  try {
    ctx.flows = await get(`/v1/federation/flows${query({ minutes: flowMinutes })}`);
    ctx.clear("flows");
  } catch (e) {
    ctx.report("flows", e);
  }
}

function setLive(state) {
  const el = byId("live");
  el.dataset.state = state;
  const live = state === "on" || state === "error";
  put(el, t(`live.${state}`), live ? ` · ${t("live.updated", { time: fmtTime(Date.now()) })}` : "");
}

let timer = 0;
let running = false;

/** Refreshes every panel, then schedules the next round. */
async function tick() {
  clearTimeout(timer);
  if (running) return;
  if (!getToken()) {
    setLive("idle");
    return;
  }
  if (document.hidden) {
    setLive("paused");
    return;
  }
  running = true;
  try {
    await Promise.allSettled([loadOverview(), loadFlows(), catalog.refresh(), catalog.refreshDetail(), applications.refresh(), trades.refresh(), audit.refresh()]);
    await Promise.allSettled([loadOverview(), loadFlows(), catalog.refresh(), catalog.refreshDetail(), applications.refresh(), supervision.refresh(), audit.refresh()]);
    renderAll();
    setLive(errors.size ? "error" : "on");
  } finally {
    running = false;
  }
  timer = setTimeout(tick, POLL_MS);
}

function renderToken() {
  const tok = getToken();
  byId("token-form").hidden = Boolean(tok);
  byId("token-state").hidden = !tok;
  byId("token-panel").classList.toggle("needed", !tok);
  put(byId("token-status"), tok ? t("token.set", { hint: `••••${tok.slice(-4)}` }) : t("token.needed"));
}

function useToken(tok) {
  setToken(tok);
  ctx.overview = null;
  ctx.flows = null;
  errors.clear();
  showErrors();
  catalog.reset();
  applications.reset();
  trades.reset();
  supervision.reset();
  audit.reset();
  renderAll();
  renderToken();
  tick();
}

byId("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = byId("token");
  const tok = input.value.trim();
  input.value = "";
  if (tok) useToken(tok);
});
byId("token-change").addEventListener("click", () => {
  byId("token-form").hidden = false;
  byId("token").focus();
});
byId("token-clear").addEventListener("click", () => useToken(""));
byId("lang").addEventListener("click", () => setLang(getLang() === "zh" ? "en" : "zh"));
byId("flow-window").addEventListener("change", async (e) => {
  flowMinutes = Number(e.target.value);
  await loadFlows();
  renderAll();
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) tick();
});
window.addEventListener("resize", debounce(() => {
  supervision.redraw();
  invalidateMap();
  invalidateFlows();
  renderAll();
}, 200));

onLangChange(() => {
  renderLegend(byId("map-legend"));
  renderToken();
  invalidateMap();
  invalidateFlows();
  catalog.redraw();
  applications.redraw();
  trades.redraw();
  supervision.redraw();
  audit.redraw();
  renderAll();
  setLive(!getToken() ? "idle" : errors.size ? "error" : "on");
});

applyStatic();
renderLegend(byId("map-legend"));
renderToken();
renderAll();
tick();
