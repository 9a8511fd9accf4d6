// The trades panel: this zone's orders (交易), newest first, each with its contract (listing,
// scenario, parties, quantity × unit price), its state, what was delivered, and its settlement
// records: the settlement (amount, fees, the split between provider, operator and broker) and
// any reversal, never edited. The fee schedule in force heads the panel. A buyer token sees its
// party's orders, a provider token those for its listings, the zone's staff all (the API
// decides).

import { get, query } from "./api.js";
import { badge, byId, h, put, short } from "./dom.js";
import { fmtNum, fmtTime, getLang, label, t } from "./i18n.js";

/** Orders read per page. */
const PAGE = 20;
/** The most the API gives in one page; a refresh re-reads what is shown up to this. */
const MAX_PAGE = 100;
const STATES = ["placed", "confirmed", "delivering", "delivered", "settled", "disputed", "reversed"];
const KIND = {
  placed: "wait",
  confirmed: "wait",
  delivering: "warn",
  delivered: "good",
  settled: "good",
  disputed: "bad",
  reversed: "muted",
};

/** Basis points as a percentage, `250` → `2.5%`. */
function pct(bp) {
  return `${(bp / 100).toFixed(2).replace(/\.?0+$/, "")}%`;
}

/**
 * Creates the panel. `ctx` gives `report(source, error)` and `clear(source)`; `openListing(id)`
 * shows a listing in the catalog's detail view.
 */
export function createTrades(ctx, openListing) {
  const els = {
    body: byId("orders"),
    count: byId("orders-count"),
    filter: byId("orders-state"),
    more: byId("orders-more"),
    fees: byId("fee-schedule"),
  };
  let items = [];
  let schedule = null;
  let next = null;
  let loaded = false;
  let seq = 0;
  let key = "";

  function contract(o) {
    return h("td", {},
      h("div", {}, o.scenario),
      h("a", {
        href: "#",
        class: "mono small",
        title: `${o.listing_id}\n${o.content_id}`,
        onclick: (e) => {
          e.preventDefault();
          openListing(o.listing_id);
        },
      }, short(o.listing_id, 14, 6)),
      o.certificate_number ? h("div", { class: "muted small" }, o.certificate_number) : null);
  }

  function parties(o) {
    return h("td", {},
      h("div", {}, `${t("orders.buyer")}：${o.buyer}`),
      o.broker ? h("div", { class: "muted small" }, `${t("orders.broker")}：${o.broker}`) : null,
      h("div", { class: "muted small" }, `${t("orders.provider")}：${o.provider}`));
  }

  function price(o) {
    return h("td", { class: "nowrap" },
      h("div", {}, `${o.currency} ${o.total}`),
      h("div", { class: "muted small" },
        `${fmtNum(o.quantity)} × ${o.unit_price} · ${label("pricing", o.pricing_model)}`));
  }

  function delivered(o) {
    const per = o.pricing_model === "per_call";
    return h("td", { class: "nowrap" },
      label("delivery", o.delivery_mode),
      per ? h("div", { class: "muted small" }, `${fmtNum(o.delivered_calls)} / ${fmtNum(o.quantity)}`) : null);
  }

  /** The settlement records of `o`, oldest first: a settlement and any reversal. */
  function settlements(o) {
    if (!o.settlements.length) return h("td", { class: "muted" }, "—");
    return h("td", {}, o.settlements.map((s) => {
      const reversal = s.kind === "reversal";
      const split = s.split;
      return h("div", { class: reversal ? "muted small" : "small", title: s.reason ?? "" },
        reversal ? badge(t("orders.reversal", { n: String(s.reverses) }), "muted") : null,
        h("span", { class: "strong" }, ` ${s.currency} ${s.amount}`),
        ` · ${t("orders.fees")} ${s.fees}`,
        ` · ${t("orders.provider")} ${split.provider} · ${t("orders.operator")} ${split.operator}`,
        split.broker !== "0.00" ? ` · ${t("orders.broker")} ${split.broker}` : null,
        h("span", { class: "muted" }, ` (${t("orders.schedule", { v: String(s.fee_schedule_version) })})`));
    }), o.disputes.map((d) => h("div", { class: "muted small" },
      badge(t("orders.disputed_by", { who: d.by }), "bad"), ` ${d.reason}`)));
  }

  function row(o) {
    return h("tr", { dataset: { id: String(o.id) } },
      h("td", { class: "num" }, String(o.id)),
      h("td", { class: "nowrap" }, fmtTime(o.placed_at)),
      contract(o),
      parties(o),
      price(o),
      delivered(o),
      h("td", {}, badge(label("orderstate", o.state), KIND[o.state])),
      settlements(o));
  }

  function renderSchedule() {
    if (!schedule) {
      put(els.fees);
      return;
    }
    const c = schedule.current;
    put(els.fees,
      h("span", { class: "strong" }, t("orders.fee_schedule", { v: String(c.version) })), " ",
      t("orders.rates", {
        fee: pct(c.platform_fee_bp),
        min: c.minimum_fee,
        operator: pct(c.operator_share_bp),
        broker: pct(c.broker_share_bp),
      }),
      c.set_at ? h("span", { class: "muted" }, ` · ${c.set_by} · ${fmtTime(c.set_at)}`) : null);
  }

  function render() {
    const drawn = JSON.stringify([items, schedule, loaded, next, getLang()]);
    if (drawn === key) return;
    key = drawn;
    els.more.hidden = !next;
    renderSchedule();
    if (!loaded) {
      put(els.count);
      put(els.body);
      return;
    }
    put(els.count, t("orders.count", { n: fmtNum(items.length) }) + (next ? "+" : ""));
    if (!items.length) {
      put(els.body, h("p", { class: "muted" }, t("orders.empty")));
      return;
    }
    const head = ["id", "placed", "contract", "parties", "price", "delivered", "state", "settlement"]
      .map((c) => h("th", {}, t(`orders.${c}`)));
    put(els.body, h("table", { class: "audit orders" },
      h("thead", {}, h("tr", {}, head)),
      h("tbody", {}, items.map(row))));
  }

  /** Reads page 1 (as many as are shown), or the next page when `append`. */
  async function load({ append = false } = {}) {
    const mine = ++seq;
    const limit = append ? PAGE : Math.min(MAX_PAGE, Math.max(PAGE, items.length));
    const params = {
      state: els.filter.value,
      limit,
      before: append ? next : "",
      consistency: "local",
    };
    try {
      const [page, fees] = await Promise.all([
        get(`/v1/orders${query(params)}`),
        get(`/v1/zone/fee-schedule${query({ consistency: "local" })}`),
      ]);
      if (mine !== seq) return;
      items = append ? items.concat(page.items) : page.items;
      schedule = fees;
      next = page.next_before ?? null;
      loaded = true;
      ctx.clear("orders");
    } catch (e) {
      if (mine === seq) ctx.report("orders", e);
    }
    render();
  }

  function renderFilter() {
    const current = els.filter.value;
    put(els.filter,
      h("option", { value: "" }, t("facet.all")),
      STATES.map((st) => h("option", { value: st, selected: st === current }, label("orderstate", st))));
  }

  els.filter.addEventListener("change", () => {
    items = [];
    load();
  });
  els.more.addEventListener("click", () => load({ append: true }));
  renderFilter();

  return {
    /** Re-reads what is shown (polling). */
    refresh: () => load(),
    /** Language change. */
    redraw() {
      renderFilter();
      key = "";
      render();
    },
    /** Token change: forget what the old token saw. */
    reset() {
      seq++;
      items = [];
      schedule = null;
      next = null;
      loaded = false;
      key = "";
      render();
    },
  };
}
