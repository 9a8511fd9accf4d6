// The catalog panel: full-text search (Chinese and English), facets, results, and the detail
// of one listing with its registration certificates (status and this node's verification),
// its provenance (origin, signer, delegation, recognition decisions and agreement, export
// decisions) and the audit trail of its transitions.

import { get, query } from "./api.js";
import { badge, byId, debounce, h, put, short } from "./dom.js";
import { fmtNum, fmtTime, getLang, label, t } from "./i18n.js";

const CATEGORIES = [
  "agriculture", "commerce", "credit", "culture_tourism", "ecology", "education", "emergency",
  "employment", "energy", "finance", "government", "healthcare", "industry", "public_safety", "transport",
];
const STATES = ["submitted", "listed", "suspended", "rejected", "delisted", "recognised", "revoked"];
const CLASSES = ["public", "general", "important", "core"];
const MODES = ["file", "api", "sandbox", "privacy_computing", "model_output", "verification"];
const IN_DOMAIN = new Set(["sandbox", "privacy_computing", "model_output", "verification"]);
const STAYS_HOME = new Set(["important", "core"]);
const SORTS = ["relevance", "newest"];

const STATE_KIND = { submitted: "wait", listed: "good", rejected: "bad", delisted: "muted", recognised: "info", revoked: "bad" };
const CLASS_KIND = { public: "good", general: "info", important: "warn", core: "bad" };
const DECISION_KIND = { recognised: "good", rejected: "bad", stale: "warn", delisted: "muted", revoked: "bad" };
const EXPORT_KIND = { pending: "wait", published: "good", withheld: "warn" };
const CERT_KIND = { valid: "good", revoked: "bad" };
/** Certificates shown on a listing (newest first); the API pages beyond. */
const CERTS_SHOWN = 20;

/**
 * Creates the panel. `ctx` gives `report(source, error)`, `clear(source)`, `zoneName(id)`
 * and `overview` (the latest federation overview, or null).
 */
export function createCatalog(ctx) {
  const els = {
    search: byId("search"),
    facets: byId("facets"),
    results: byId("results"),
    total: byId("total"),
    more: byId("more"),
    detail: byId("detail"),
  };
  const filters = { origin: "", category: "", classification: "", delivery_mode: "", state: "" };
  const categories = new Set(CATEGORIES);
  let items = [];
  let next = null;
  let total = 0;
  /** The last page's facet counts ({facet: {value: n}}), its sort and its index lag. */
  let counts = null;
  let sorted = "";
  let lag = 0;
  /** The sort the reader picked, or "" to let the API choose. */
  let sort = "";
  let loaded = false;
  let seq = 0;
  let listKey = "";
  let facetKey = "";
  let countKey = "";
  let selected = null;
  let detailKey = "";

  function option(value, text, current) {
    return h("option", { value, selected: value === current }, text);
  }

  function facet(name, options) {
    const select = h("select", {
      id: `f-${name}`,
      onchange: () => {
        filters[name] = select.value;
        search();
      },
    }, option("", t("facet.all"), filters[name]), options);
    return h("label", { class: "facet" }, h("span", {}, t(`facet.${name}`)), select);
  }

  /** How many results choosing `value` of facet `name` would give, or null before any page. */
  function count(name, value) {
    return counts ? counts[name]?.[value] ?? 0 : null;
  }

  /**
   * The count of an origin option, matched as the API filters: this zone, the others, a zone
   * id ("exchange/zone") or an exchange id (its zones' counts summed). Null before any page,
   * and for local/external until the overview names this zone.
   */
  function originCount(value) {
    if (!counts) return null;
    const zones = counts.origin ?? {};
    const self = ctx.overview?.self?.zone;
    const sum = (pick) => Object.entries(zones).reduce((n, [z, c]) => (pick(z) ? n + c : n), 0);
    if (value === "local") return self ? zones[self] ?? 0 : null;
    if (value === "external") return self ? sum((z) => z !== self) : null;
    if (value.includes("/")) return zones[value] ?? 0;
    return sum((z) => z.startsWith(`${value}/`));
  }

  /** An option whose text ends with its count ("信用 (1,234)"), or without one when unknown. */
  function counted(value, text, current, n) {
    return option(value, n === null ? text : `${text} (${fmtNum(n)})`, current);
  }

  /** The sort select: the API's choice (shown in brackets) or one the reader picked. */
  function sortControl() {
    const auto = sorted ? `${t("sort.auto")} (${label("sort", sorted)})` : t("sort.auto");
    const select = h("select", {
      id: "f-sort",
      onchange: () => {
        sort = select.value;
        search();
      },
    }, option("", auto, sort), SORTS.map((v) => option(v, label("sort", v), sort)));
    return h("label", { class: "facet" }, h("span", {}, t("sort.title")), select);
  }

  /** Rebuilds the facet selects (language change, new zones or categories). */
  function renderFacets() {
    const exchanges = ctx.overview?.exchanges ?? [];
    const key = JSON.stringify([exchanges.map((e) => [e.id, e.zones.map((z) => z.id)]), [...categories], getLang()]);
    const keyOfCounts = JSON.stringify([counts, sorted, sort, ctx.overview?.self?.zone]);
    if (key === facetKey && keyOfCounts === countKey) return;
    facetKey = key;
    countKey = keyOfCounts;
    const originOption = (value, text) => counted(value, text, filters.origin, originCount(value));
    const origins = [originOption("local", t("origin.local")), originOption("external", t("origin.external"))];
    for (const e of exchanges) {
      origins.push(originOption(e.id, t("origin.exchange", { name: e.display_name ?? e.id })));
      for (const z of e.zones) origins.push(originOption(z.id, `\u3000${ctx.zoneName(z.id)}`));
    }
    if (filters.origin && !origins.some((o) => o.value === filters.origin)) {
      origins.push(originOption(filters.origin, filters.origin));
    }
    const opt = (name, group) => (v) => counted(v, label(group, v), filters[name], count(name, v));
    const sortedCategories = [...categories].sort((a, b) => label("cat", a).localeCompare(label("cat", b), getLang()));
    // Rebuilding the selects drops the focus; give it back to the same select.
    const focused = els.facets.contains(document.activeElement) ? document.activeElement.id : "";
    put(els.facets,
      facet("origin", origins),
      facet("category", sortedCategories.map(opt("category", "cat"))),
      facet("classification", CLASSES.map(opt("classification", "class"))),
      facet("delivery_mode", MODES.map(opt("delivery_mode", "delivery"))),
      facet("state", STATES.map(opt("state", "state"))),
      sortControl());
    if (focused) byId(focused)?.focus();
  }

  function resultItem(item) {
    const li = h("li", {
      class: `result${item.id === selected ? " selected" : ""}`,
      dataset: { id: item.id },
      tabindex: 0,
      role: "button",
      onclick: () => select(item.id),
      onkeydown: (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          select(item.id);
        }
      },
    },
    h("div", { class: "r-title" }, item.title),
    h("div", { class: "r-meta" },
      badge(label("state", item.state), STATE_KIND[item.state]),
      badge(label("class", item.classification), CLASS_KIND[item.classification]),
      h("span", { class: "r-origin" }, ctx.zoneName(item.origin)),
      h("span", {}, label("cat", item.category)),
      h("span", { class: "muted" }, item.provider?.name ?? "")));
    return li;
  }

  function renderResults() {
    const key = JSON.stringify([items.map((i) => [i.id, i.state, i.version, i.origin]), total, lag, loaded, selected, getLang(), facetKey]);
    if (key === listKey) return;
    listKey = key;
    if (!loaded) {
      put(els.results);
      put(els.total);
      els.more.hidden = true;
      return;
    }
    put(els.total, t("catalog.total", { n: fmtNum(total) }),
      lag > 0 ? h("span", { class: "small" }, ` · ${t("catalog.lag", { n: fmtNum(lag) })}`) : null);
    if (!items.length) {
      put(els.results, h("li", { class: "empty" }, t("catalog.empty")));
    } else {
      put(els.results, items.map(resultItem));
    }
    els.more.hidden = !next;
  }

  /** Runs the search: page 1 (as many items as are shown), or the next page when `append`. */
  async function search({ append = false } = {}) {
    const mine = ++seq;
    const limit = append ? 20 : Math.min(100, Math.max(20, items.length));
    const params = {
      q: els.search.value.trim(),
      ...filters,
      sort,
      limit,
      cursor: append ? next : "",
      consistency: "local",
    };
    try {
      const page = await get(`/v1/listings${query(params)}`);
      if (mine !== seq) return;
      ctx.clear("catalog");
      items = append ? items.concat(page.items) : page.items;
      next = page.next_cursor ?? null;
      total = page.total;
      // A page appended to the list has the same counts as the first, so it keeps them.
      if (!append) {
        counts = page.facets ?? null;
        sorted = page.sort ?? "";
        lag = page.index_lag ?? 0;
      }
      loaded = true;
      for (const it of page.items) categories.add(it.category);
      for (const c of Object.keys(page.facets?.category ?? {})) categories.add(c);
      renderFacets();
      renderResults();
    } catch (e) {
      if (mine === seq) ctx.report("catalog", e);
    }
  }

  function fact(name, ...value) {
    const parts = value.flat().filter((v) => v !== null && v !== undefined && v !== "");
    if (!parts.length) return [];
    return [h("dt", {}, name), h("dd", {}, parts)];
  }

  function list(values, group) {
    return (values ?? []).map((v) => h("span", { class: "chip" }, group ? label(group, v) : v));
  }

  function agreementText(agreement) {
    if (agreement === "sibling") return t("agreement.sibling");
    if (agreement?.startsWith("outside:")) return t("agreement.outside", { ex: agreement.slice(8) });
    return agreement;
  }

  function recognitionCard(r) {
    const d = r.delegation;
    return h("li", { class: "card" },
      h("div", { class: "card-head" },
        badge(label("decision", r.decision), DECISION_KIND[r.decision]),
        h("span", { class: "strong" }, label("kind", r.kind)),
        r.version ? h("span", { class: "muted" }, t("detail.version", { v: r.version })) : null,
        h("span", { class: "muted right" }, fmtTime(r.at))),
      h("dl", { class: "facts compact" },
        fact(t("prov.agreement"), h("code", {}, r.agreement), h("span", { class: "muted" }, ` ${agreementText(r.agreement)}`)),
        fact(t("prov.origin"), ctx.zoneName(r.origin), r.origin !== ctx.zoneName(r.origin) ? h("code", { class: "muted" }, ` ${r.origin}`) : null),
        fact(t("prov.reason"), r.reason),
        fact(t("prov.signer"), h("code", { title: r.signer }, short(r.signer, 12, 6))),
        d ? fact(t("prov.delegation"), t("prov.delegation.value", {
          exchange: d.exchange, zone: d.zone, from: fmtTime(d.not_before), to: fmtTime(d.not_after),
        })) : [],
        d ? fact(t("prov.nodekey"), h("code", { title: d.node_key }, short(d.node_key, 12, 6))) : [],
        d ? fact(t("prov.rootkey"), h("code", { title: d.root_key }, short(d.root_key, 12, 6))) : [],
        fact(t("prov.received"), h("code", { title: r.received_from }, short(r.received_from, 10, 6))),
        fact(t("prov.raft"), String(r.raft_index))));
  }

  function exportCard(x) {
    return h("li", { class: "card" },
      h("div", { class: "card-head" },
        badge(label("export", x.state), EXPORT_KIND[x.state]),
        h("span", { class: "strong" }, label("kind", x.kind)),
        h("span", { class: "muted" }, t("detail.version", { v: x.version })),
        h("span", { class: "muted right" }, fmtTime(x.at))),
      x.reason || x.published_at ? h("dl", { class: "facts compact" },
        fact(t("prov.reason"), x.reason),
        x.published_at ? fact(t("export.published"), fmtTime(x.published_at)) : []) : null);
  }

  function detailText(detail) {
    if (detail === null || detail === undefined) return null;
    if (typeof detail !== "object") return String(detail);
    return Object.entries(detail)
      .filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join(" · ");
  }

  function historyItem(e) {
    return h("li", {},
      h("div", { class: "tl-head" },
        h("span", { class: "strong" }, label("action", e.action)),
        h("span", { class: "muted" }, e.from_state
          ? `${label("state", e.from_state)} → ${label("state", e.to_state)}`
          : `→ ${label("state", e.to_state)}`),
        h("span", { class: "muted right" }, fmtTime(e.at))),
      h("div", { class: "tl-body" },
        t("history.by", { actor: e.actor, role: label("who", e.role) }),
        h("span", { class: "muted" }, ` · v${e.version} · ${t("prov.raft")} ${e.raft_index}`),
        detailText(e.detail) ? h("div", { class: "tl-detail" }, detailText(e.detail)) : null));
  }

  function certificateCard(c) {
    const cert = c.certificate ?? {};
    const check = c.verification ?? {};
    const revoked = c.status === "revoked";
    return h("li", { class: "card cert", dataset: { number: c.number } },
      h("div", { class: "card-head" },
        h("span", { class: "strong mono" }, c.number),
        badge(label("certstatus", c.status), CERT_KIND[c.status] ?? "muted"),
        check.valid ? badge(t("cert.verified"), "good") : badge(t("cert.unverified"), "bad"),
        h("span", { class: "muted right" }, fmtTime(cert.issued_at))),
      h("dl", { class: "facts compact" },
        fact(t("cert.verification"), check.valid
          ? t("cert.verification.ok", { n: check.checks?.length ?? 0 })
          : [h("code", {}, check.error ?? ""), check.message ? h("span", { class: "muted" }, ` ${check.message}`) : null]),
        revoked ? fact(t("cert.revoked"), t("cert.revoked.value", { at: fmtTime(c.revoked_at), by: c.revoked_by ?? "" })) : [],
        revoked ? fact(t("prov.reason"), c.revoke_reason) : [],
        fact(t("cert.holder"), cert.holder),
        fact(t("cert.rights"), list(cert.rights, "right")),
        fact(t("cert.source"), label("source", cert.source)),
        fact(t("cert.issued"), fmtTime(cert.issued_at)),
        fact(t("cert.zone"), cert.zone ? ctx.zoneName(cert.zone) : "")));
  }

  /** The certificates section: `certs` is the API's page, or null when it could not be read. */
  function certificateSection(certs, recognised) {
    let body;
    if (!certs) body = h("p", { class: "muted" }, t("cert.unreadable"));
    else if (!certs.items.length) body = h("p", { class: "muted" }, recognised ? t("cert.atorigin") : t("cert.none"));
    else {
      body = [h("ol", { class: "cards" }, certs.items.map(certificateCard)),
        certs.next_before ? h("p", { class: "muted small" }, t("cert.newest", { n: CERTS_SHOWN })) : null];
    }
    return h("section", { id: "certificates", class: "certificates" }, h("h3", {}, t("cert.title")), body);
  }

  function renderDetail(v, certs) {
    const p = v.provenance ?? { origin: v.origin, exchange: "", recognised: false, recognitions: [], export: [] };
    const pricing = v.pricing
      ? [label("pricing", v.pricing.model), v.pricing.amount ? ` ${v.pricing.amount} ${v.pricing.currency ?? ""}` : ""].join("")
      : "";
    const modes = (v.delivery_modes ?? []).map((m) =>
      h("span", { class: `chip${IN_DOMAIN.has(m) ? " chip-safe" : ""}`, title: IN_DOMAIN.has(m) ? t("detail.indomain") : null }, label("delivery", m)));
    const exchange = ctx.overview?.exchanges.find((e) => e.id === p.exchange);
    put(els.detail,
      h("div", { class: "detail-head" },
        h("h2", {}, v.title),
        h("div", { class: "badges" },
          badge(label("state", v.state), STATE_KIND[v.state]),
          badge(label("class", v.classification), CLASS_KIND[v.classification]),
          STAYS_HOME.has(v.classification) ? badge(t("detail.stayshome"), "bad") : null,
          badge(t("detail.version", { v: v.version }), "muted")),
        h("p", { class: "mono muted", title: t("detail.id") }, v.id)),
      h("p", { class: "desc" }, v.description),
      h("dl", { class: "facts" },
        fact(t("detail.provider"), v.provider?.name, h("code", { class: "muted" }, ` ${v.provider?.id ?? ""}`)),
        fact(t("detail.category"), label("cat", v.category)),
        fact(t("detail.form"), label("form", v.product_form)),
        fact(t("detail.personal"), v.contains_personal_info ? t("detail.yes") : t("detail.no")),
        fact(t("detail.delivery"), modes),
        fact(t("detail.pricing"), pricing),
        fact(t("detail.frequency"), label("freq", v.update_frequency)),
        fact(t("detail.rights"), list(v.rights, "right")),
        fact(t("detail.scenarios"), list(v.scenarios)),
        fact(t("detail.keywords"), list(v.keywords)),
        fact(t("detail.spatial"), v.spatial_coverage),
        fact(t("detail.temporal"), v.temporal_coverage),
        fact(t("detail.registration"), v.registration ? `${v.registration.certificate_id} · ${v.registration.issuer}` : ""),
        fact(t("detail.created"), fmtTime(v.created_at)),
        fact(t("detail.updated"), fmtTime(v.updated_at))),
      certificateSection(certs, p.recognised),
      h("section", { id: "provenance", class: "provenance" },
        h("h3", {}, t("prov.title")),
        h("dl", { class: "facts" },
          fact(t("prov.origin"), h("span", { class: "strong" }, ctx.zoneName(p.origin)),
            ctx.zoneName(p.origin) !== p.origin ? h("code", { class: "muted" }, ` ${p.origin}`) : null),
          fact(t("prov.exchange"), exchange?.display_name ?? p.exchange, exchange ? h("code", { class: "muted" }, ` ${p.exchange}`) : null),
          fact(t("prov.kind"), p.recognised ? badge(t("prov.copy"), "info") : badge(t("prov.local"), "good"))),
        h("h4", {}, t("prov.recognitions")),
        p.recognitions.length
          ? h("ol", { class: "cards" }, p.recognitions.map(recognitionCard))
          : h("p", { class: "muted" }, t("prov.none")),
        h("h4", {}, t("prov.export")),
        p.export.length
          ? h("ol", { class: "cards" }, p.export.map(exportCard))
          : h("p", { class: "muted" }, t("prov.none"))),
      h("section", { class: "history" },
        h("h3", {}, t("history.title")),
        h("ol", { class: "timeline" }, (v.history ?? []).map(historyItem))));
  }

  function placeholder() {
    put(els.detail, h("p", { class: "placeholder" }, t("detail.placeholder")));
  }

  async function loadDetail() {
    const id = selected;
    if (!id) return;
    const certPath = `/v1/certificates${query({ listing_id: id, limit: CERTS_SHOWN, consistency: "local" })}`;
    // The listing is shown even when its certificates cannot be read; that error is reported apart.
    const certs = get(certPath).then((page) => {
      if (id === selected) ctx.clear("certificates");
      return page;
    }, (e) => {
      if (id === selected) ctx.report("certificates", e);
      return null;
    });
    try {
      const [v, page] = await Promise.all([get(`/v1/listings/${encodeURIComponent(id)}?consistency=local`), certs]);
      if (id !== selected) return;
      ctx.clear("detail");
      const key = JSON.stringify([v, page, getLang(), facetKey]);
      if (key === detailKey) return;
      detailKey = key;
      renderDetail(v, page);
    } catch (e) {
      if (id === selected) ctx.report("detail", e);
    }
  }

  function select(id) {
    selected = id;
    detailKey = "";
    for (const li of els.results.querySelectorAll(".result")) {
      li.classList.toggle("selected", li.dataset.id === id);
    }
    put(els.detail, h("p", { class: "placeholder" }, t("detail.loading")));
    els.detail.scrollIntoView({ block: "nearest", behavior: "smooth" });
    loadDetail();
  }

  const onInput = debounce(() => {
    items = [];
    search();
  }, 250);
  els.search.addEventListener("input", onInput);
  els.more.addEventListener("click", () => search({ append: true }));
  placeholder();
  renderFacets();

  return {
    /** Re-runs the current search (polling). */
    refresh: () => search(),
    /** Re-reads the open listing (polling). */
    refreshDetail: () => loadDetail(),
    /** Opens listing `id` in the detail view (from another panel). */
    open: (id) => select(id),
    /** New overview: the origin facet lists its exchanges and zones. */
    onOverview: () => renderFacets(),
    /** Language change: redraw everything. */
    redraw() {
      facetKey = "";
      listKey = "";
      detailKey = "";
      renderFacets();
      renderResults();
      if (selected) loadDetail();
      else placeholder();
    },
    /** Token change: forget what the old token saw. */
    reset() {
      items = [];
      next = null;
      counts = null;
      sorted = "";
      lag = 0;
      loaded = false;
      selected = null;
      listKey = "";
      detailKey = "";
      renderFacets();
      renderResults();
      placeholder();
    },
  };
}
