// The applications panel: this zone's scenario applications (一场景一申请), newest first, and
// for each approved one its authorisation (一场景一授权): state, usage against its limit and
// expiry, followed live. A buyer token sees its party's, a provider token those for its
// listings, the zone's staff all (the API decides). An application across exchanges shows where
// it travels: forwarded to the listing's origin zone (in flight while `forwarding` or
// `submitted` there), or received from the applying zone.

import { get, query } from "./api.js";
import { badge, byId, h, put, short } from "./dom.js";
import { fmtNum, fmtTime, getLang, label, t } from "./i18n.js";

/** Applications read per page. */
const PAGE = 20;
/** The most the API gives in one page; a refresh re-reads what is shown up to this. */
const MAX_PAGE = 100;
const STATES = ["forwarding", "submitted", "approved", "rejected"];
const APP_KIND = { forwarding: "warn", submitted: "wait", approved: "good", rejected: "bad" };
const AUTH_KIND = { active: "good", suspended: "warn", revoked: "bad" };

/**
 * Creates the panel. `ctx` gives `report(source, error)` and `clear(source)`; `openListing(id)`
 * shows a listing in the catalog's detail view.
 */
export function createApplications(ctx, openListing) {
  const els = {
    body: byId("applications"),
    count: byId("applications-count"),
    filter: byId("applications-state"),
    more: byId("applications-more"),
  };
  let items = [];
  /** Authorisations by id, as last read. */
  let grants = new Map();
  let next = null;
  let loaded = false;
  let seq = 0;
  let key = "";

  function usage(a) {
    const ratio = a.usage_limit ? Math.min(1, a.used / a.usage_limit) : 0;
    const bar = h("span", { class: "usage-bar" }, h("span", { class: "usage-fill" }));
    bar.firstChild.style.width = `${(ratio * 100).toFixed(1)}%`;
    bar.classList.toggle("full", a.remaining === 0);
    return h("span", { class: "usage", title: t("apps.remaining", { n: fmtNum(a.remaining) }) },
      h("span", { class: "usage-text" }, `${fmtNum(a.used)} / ${fmtNum(a.usage_limit)}`), bar,
      a.refused ? h("span", { class: "muted small", title: a.last_refusal ?? "" }, ` ${t("apps.refused", { n: fmtNum(a.refused) })}`) : null);
  }

  function expiry(a) {
    const expired = new Date(a.expires_at).getTime() <= Date.now();
    return h("span", { class: expired ? "expired" : "" }, fmtTime(a.expires_at),
      expired ? [" ", badge(t("apps.expired"), "muted")] : null);
  }

  /** The authorisation cells of application `x`: state, usage, expiry (or why there is none). */
  function grantCells(x) {
    if (!x.authorization_id) {
      const why = x.state === "rejected" ? x.reason : null;
      return [h("td", { colspan: 3, class: "muted" }, why ? `${t("prov.reason")}：${why}` : "—")];
    }
    const a = grants.get(x.authorization_id);
    if (!a) return [h("td", { colspan: 3, class: "muted" }, `#${x.authorization_id}`)];
    const state = badge(label("auth", a.state), AUTH_KIND[a.state]);
    return [
      h("td", { title: a.reason ?? "" }, h("span", { class: "muted" }, `#${a.id} `), state,
        a.reason ? h("div", { class: "muted small" }, a.reason) : null),
      h("td", { class: "nowrap" }, usage(a)),
      h("td", { class: "nowrap" }, expiry(a)),
    ];
  }

  /** Where an application across exchanges travels: to its origin zone, or from the zone that
   * forwarded it. */
  function route(x) {
    const a = x.across;
    if (!a) return null;
    const text = a.origin_zone
      ? t("apps.to_origin", { zone: a.origin_zone })
      : t("apps.from_applicant", { zone: a.applicant_zone ?? "?", n: String(a.applicant_application ?? "?") });
    return h("div", { class: "muted small", title: a.request_id }, text);
  }

  function row(x) {
    const mode = grants.get(x.authorization_id)?.delivery_mode ?? x.delivery_mode;
    return h("tr", { dataset: { id: String(x.id) } },
      h("td", { class: "num" }, String(x.id)),
      h("td", { class: "nowrap" }, fmtTime(x.submitted_at)),
      h("td", {},
        h("div", {}, x.scenario),
        h("a", {
          href: "#",
          class: "mono small",
          title: x.listing_id,
          onclick: (e) => {
            e.preventDefault();
            openListing(x.listing_id);
          },
        }, short(x.listing_id, 14, 6))),
      h("td", {}, x.buyer),
      h("td", {}, label("delivery", mode)),
      h("td", {}, badge(label("appstate", x.state), APP_KIND[x.state]), route(x)),
      grantCells(x));
  }

  function render() {
    // The minute is part of the key so that an authorisation passing its expiry is redrawn.
    const drawn = JSON.stringify([items, [...grants.values()], loaded, next, getLang(), Math.floor(Date.now() / 60000)]);
    if (drawn === key) return;
    key = drawn;
    els.more.hidden = !next;
    if (!loaded) {
      put(els.count);
      put(els.body);
      return;
    }
    put(els.count, t("apps.count", { n: fmtNum(items.length) }) + (next ? "+" : ""));
    if (!items.length) {
      put(els.body, h("p", { class: "muted" }, t("apps.empty")));
      return;
    }
    const head = ["id", "submitted", "scenario", "buyer", "mode", "state", "grant", "usage", "expires"]
      .map((c) => h("th", {}, t(`apps.${c}`)));
    put(els.body, h("table", { class: "audit apps" },
      h("thead", {}, h("tr", {}, head)),
      h("tbody", {}, items.map(row))));
  }

  /** The authorisations of the applications in `list`, in one request (a page names at most
   * `MAX_PAGE`, as many as `ids` takes). */
  async function readGrants(list) {
    const ids = list.map((x) => x.authorization_id).filter(Boolean);
    if (!ids.length) return new Map();
    const page = await get(`/v1/authorizations${query({ ids: ids.join(","), limit: MAX_PAGE, consistency: "local" })}`);
    return new Map(page.items.map((a) => [a.id, a]));
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
      const page = await get(`/v1/applications${query(params)}`);
      const read = await readGrants(page.items);
      if (mine !== seq) return;
      items = append ? items.concat(page.items) : page.items;
      grants = append ? new Map([...grants, ...read]) : read;
      next = page.next_before ?? null;
      loaded = true;
      ctx.clear("applications");
    } catch (e) {
      if (mine === seq) ctx.report("applications", e);
    }
    render();
  }

  function renderFilter() {
    const current = els.filter.value;
    put(els.filter,
      h("option", { value: "" }, t("facet.all")),
      STATES.map((st) => h("option", { value: st, selected: st === current }, label("appstate", st))));
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
      grants = new Map();
      next = null;
      loaded = false;
      key = "";
      render();
    },
  };
}
