// The audit tail: the newest records of the zone's hash-chained audit log, followed live.
// Only regulator and admin tokens may read it; other roles see why the panel is empty.

import { get, query } from "./api.js";
import { badge, byId, h, put, short } from "./dom.js";
import { fmtNum, fmtTime, getLang, label, t } from "./i18n.js";

/** Records shown. */
const TAIL = 50;
/** Records fetched per poll once the tail is found. */
const BATCH = 200;

/** Creates the panel; `ctx` gives `report(source, error)` and `clear(source)`. */
export function createAudit(ctx) {
  const el = byId("audit");
  const countEl = byId("audit-count");
  let last = null;
  let rows = [];
  let forbidden = false;
  let loaded = false;
  let key = "";

  const page = (from, limit) => get(`/v1/audit${query({ from, limit, consistency: "local" })}`);
  const exists = async (seq) => (await page(seq, 1)).items.length > 0;

  /** The newest seq, by doubling then bisecting (the API pages forward from a seq). */
  async function locate() {
    if (!(await exists(1))) return 0;
    let lo = 1;
    let hi = 2;
    while (await exists(hi)) {
      lo = hi;
      hi *= 2;
    }
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (await exists(mid)) lo = mid;
      else hi = mid;
    }
    return lo;
  }

  function render() {
    const next = JSON.stringify([rows.map((r) => r.seq), forbidden, loaded, getLang()]);
    if (next === key) return;
    key = next;
    if (forbidden) {
      put(countEl);
      put(el, h("p", { class: "notice" }, t("audit.forbidden")));
      return;
    }
    if (!loaded) {
      put(countEl);
      put(el);
      return;
    }
    put(countEl, last ? t("audit.count", { n: fmtNum(last) }) : "");
    if (!rows.length) {
      put(el, h("p", { class: "muted" }, t("audit.empty")));
      return;
    }
    const head = ["seq", "at", "actor", "action", "object", "result"].map((c) => h("th", {}, t(`audit.${c}`)));
    const body = [...rows].reverse().map((r) => {
      const ok = r.result === "ok";
      return h("tr", { class: ok ? "" : "refused" },
        h("td", { class: "num" }, String(r.seq)),
        h("td", { class: "nowrap" }, fmtTime(r.at)),
        h("td", {}, r.actor, h("span", { class: "muted" }, ` · ${label("who", r.role)}`)),
        h("td", {}, label("action", r.action)),
        h("td", { class: "mono", title: r.object_id }, short(r.object_id, 14, 6)),
        h("td", { title: r.result }, ok ? badge(t("audit.ok"), "good") : badge(t("audit.refused"), "bad"),
          ok ? null : h("span", { class: "muted small" }, ` ${r.result.replace(/^refused:/, "")}`)));
    });
    put(el, h("table", { class: "audit" }, h("thead", {}, h("tr", {}, head)), h("tbody", {}, body)));
  }

  async function refresh() {
    try {
      if (last === null) {
        const end = await locate();
        const first = await page(Math.max(1, end - TAIL + 1), TAIL);
        rows = first.items;
        last = rows.length ? rows[rows.length - 1].seq : 0;
      } else {
        const more = await page(last + 1, BATCH);
        if (more.items.length) {
          rows = rows.concat(more.items).slice(-TAIL);
          last = rows[rows.length - 1].seq;
        }
      }
      forbidden = false;
      loaded = true;
      ctx.clear("audit");
    } catch (e) {
      if (e.status === 403) {
        forbidden = true;
        ctx.clear("audit");
      } else {
        ctx.report("audit", e);
      }
    }
    render();
  }

  return {
    refresh,
    redraw() {
      key = "";
      render();
    },
    reset() {
      last = null;
      rows = [];
      forbidden = false;
      loaded = false;
      key = "";
      render();
    },
  };
}
