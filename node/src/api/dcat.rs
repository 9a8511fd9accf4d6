//! `GET /v1/catalog/dcat`: the zone's published listings as a DCAT-AP 3 catalog, for portals
//! and national platforms to harvest (CKAN's `dcat_rdf_harvester`, for one).
//!
//! Published are the listings this zone holds in state `listed` or `recognised` whose
//! classification is `public` or `general`; no token is needed, and nothing else is shown.
//! The answer is one page of an RDF graph: the `dcat:Catalog` with its datasets on this page, a
//! `dcat:Dataset` per listing (its distributions, publisher, theme, place), and a Hydra
//! `PagedCollection` naming the next page, which is how harvesters page. JSON-LD by default,
//! Turtle when the `Accept` header prefers `text/turtle`.
//!
//! The graph is built once as triples ([`Graph`]) and written in either syntax, so the two
//! always say the same.
//!
//! What a harvester keys on does not depend on how it reached the node: the catalog, datasets,
//! distributions, publishers, themes and places are URNs (`urn:xchg:listing:<id>`, a provider
//! as `urn:xchg:party:<zone>:<id>`, party ids being unique within a zone). Only the links to
//! follow (the pages, a dataset's access URL, the homepage) are built from the request's
//! `Host`.

use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use xchg_federation_config::{Host, HostPort};
use xchg_protocol::{Classification, Listing, PricingModel};

use std::collections::HashMap;

use super::error::ApiError;
use super::listings::query_error;
use super::{AppState, Consistency, params};
use crate::catalog::query::ListingView;
use crate::catalog::tables::{listings, parties};

/// Datasets on a page unless `limit` says otherwise.
pub const DEFAULT_PAGE: u32 = 100;
/// The most datasets on one page.
pub const MAX_PAGE: u32 = 500;
/// The most listings one page looks at, published or not: a page costs at most this many rows
/// read, and may then hold fewer datasets than asked (its `hydra:next` goes on from there).
pub const WINDOW: u32 = 10_000;

/// The prefixes the graph is written with, in both syntaxes.
const PREFIXES: &[(&str, &str)] = &[
    ("dcat", "http://www.w3.org/ns/dcat#"),
    ("dct", "http://purl.org/dc/terms/"),
    ("foaf", "http://xmlns.com/foaf/0.1/"),
    ("hydra", "http://www.w3.org/ns/hydra/core#"),
    ("rdf", "http://www.w3.org/1999/02/22-rdf-syntax-ns#"),
    ("rdfs", "http://www.w3.org/2000/01/rdf-schema#"),
    ("skos", "http://www.w3.org/2004/02/skos/core#"),
    ("xsd", "http://www.w3.org/2001/XMLSchema#"),
];

/// The EU vocabularies DCAT-AP asks for: access rights, languages and data themes.
const ACCESS_RIGHT: &str = "http://publications.europa.eu/resource/authority/access-right/";
const LANGUAGE_ZH: &str = "http://publications.europa.eu/resource/authority/language/ZHO";
const DATA_THEME: &str = "http://publications.europa.eu/resource/authority/data-theme";

/// The EU data theme (DCAT-AP's controlled vocabulary for `dcat:theme`) of a listing category,
/// for the categories whose theme is plain from their name; `None` for the others, which keep
/// only this exchange's own concept.
fn eu_data_theme(category: &str) -> Option<&'static str> {
    const THEMES: &[(&str, &[&str])] = &[
        (
            "AGRI",
            &["agriculture", "farming", "fishery", "forestry", "food"],
        ),
        (
            "ECON",
            &[
                "economy",
                "finance",
                "credit",
                "commerce",
                "trade",
                "business",
                "enterprise",
                "tax",
            ],
        ),
        (
            "EDUC",
            &["education", "culture", "sport", "sports", "tourism"],
        ),
        ("ENER", &["energy", "power", "electricity"]),
        (
            "ENVI",
            &[
                "environment",
                "climate",
                "weather",
                "meteorology",
                "ecology",
            ],
        ),
        (
            "GOVE",
            &[
                "government",
                "public-sector",
                "public_sector",
                "administration",
            ],
        ),
        ("HEAL", &["health", "healthcare", "medical", "medicine"]),
        ("INTR", &["international"]),
        (
            "JUST",
            &["justice", "legal", "law", "public-safety", "public_safety"],
        ),
        (
            "REGI",
            &[
                "regions", "region", "city", "cities", "urban", "housing", "land", "planning",
            ],
        ),
        (
            "SOCI",
            &[
                "society",
                "social",
                "population",
                "employment",
                "labour",
                "labor",
            ],
        ),
        (
            "TECH",
            &[
                "science",
                "technology",
                "research",
                "telecom",
                "telecommunications",
            ],
        ),
        (
            "TRAN",
            &[
                "transport",
                "traffic",
                "logistics",
                "mobility",
                "aviation",
                "shipping",
            ],
        ),
    ];
    THEMES
        .iter()
        .find(|(_, names)| names.contains(&category))
        .map(|(code, _)| *code)
}

/// The query string.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DcatParams {
    /// Continue after this position (the `after` of the previous page's `hydra:next`); absent,
    /// the first page.
    #[param(schema_with = after_schema)]
    pub after: Option<String>,
    /// Datasets per page.
    #[param(schema_with = page_size_schema)]
    pub limit: Option<String>,
}

fn after_schema() -> utoipa::openapi::schema::Object {
    params::position_schema(
        "A position this node wrote into the previous page's `hydra:next`; a larger one than \
         any held finds nothing",
    )
}

fn page_size_schema() -> utoipa::openapi::schema::Object {
    params::page_size_schema(DEFAULT_PAGE, MAX_PAGE)
}

/// `GET /v1/catalog/dcat` (no token).
#[utoipa::path(
    get,
    path = "/v1/catalog/dcat",
    operation_id = "get_dcat_catalog",
    tag = "catalog",
    params(DcatParams),
    responses(
        (status = 200, description = "One page of the zone's published listings (listed or \
            recognised, classified public or general) as a DCAT-AP 3 catalog: JSON-LD, or \
            Turtle when `Accept` prefers `text/turtle` (a higher `q` than JSON-LD's, or equal \
            and named more specifically or first). The page is a `hydra:PagedCollection`; \
            `hydra:next` (and `hydra:nextPage`) is absent on the last page. A page looks at no \
            more than 10,000 listings, so it may hold fewer datasets than `limit` and still \
            have a next page",
            content(
                (Object = "application/ld+json"),
                (String = "text/turtle"),
            )),
        (status = 400, description = "`after` or `limit` is not a whole number, or an unknown \
            query parameter (`invalid_field`, `invalid_query`)", body = super::error::ErrorBody),
        (status = 503, description = "The zone has no leader to read the catalog's commit \
            point from (`unavailable`); try again", body = super::error::ErrorBody),
    )
)]
pub async fn catalog(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<DcatParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(query_error)?;
    let after = p
        .after
        .as_deref()
        .map(|a| params::position("after", a))
        .transpose()?
        .unwrap_or(0);
    let limit = params::page_size("limit", p.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    // A member behind its zone (catching up, restoring a snapshot) would hand a harvester a
    // catalog with listings missing, which it takes for withdrawn: read what the zone agreed.
    state.read_barrier(&Consistency::Linearizable).await?;
    let published = {
        let mut conn = state.db.reader().await?;
        listings::published_after(&mut conn, after, limit, WINDOW).await?
    };
    // This zone's providers are named as its registry knows them, not as a listing says.
    let registered = {
        let own = state.config.zone.id.to_string();
        let ids: std::collections::BTreeSet<&str> = published
            .items
            .iter()
            .map(|(_, v)| &v.listing)
            .filter(|l| l.origin.to_string() == own)
            .map(|l| l.provider.id.as_str())
            .collect();
        let mut conn = state.db.reader().await?;
        parties::names(&mut conn, ids).await?
    };
    let base = base_url(&headers, &state);
    let page = Page {
        registered: &registered,
        base: &base,
        after,
        limit,
        next: published.next,
        exchange: (
            state.config.exchange.id.as_str(),
            &state.config.exchange.display_name,
        ),
        zone: (
            state.config.zone.id.to_string(),
            &state.config.zone.display_name,
        ),
    };
    let graph = page.graph(published.items.iter().map(|(_, v)| v));
    let turtle = wants_turtle(&headers);
    let (body, content_type) = if turtle {
        (graph.turtle(), "text/turtle; charset=utf-8")
    } else {
        (graph.json_ld().to_string(), "application/ld+json")
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    Ok(response)
}

/// Whether `Accept` prefers Turtle to JSON-LD: the higher quality wins (`q`, 1 when absent,
/// from the most specific range naming each: `text/turtle` over `text/*` over `*/*`, and
/// `application/ld+json` or `application/json` over `application/*` over `*/*`); at equal
/// quality the more specific range, then the one listed first. A format no range names, or
/// names with `q=0`, is not wanted; JSON-LD when neither is.
fn wants_turtle(headers: &HeaderMap) -> bool {
    /// How a range named a format: quality, specificity (2 exact, 1 `type/*`, 0 `*/*`), and
    /// its place in the header (earlier wins a tie).
    #[derive(Clone, Copy)]
    struct Named {
        q: f32,
        specific: u8,
        at: usize,
    }
    /// The most specific range naming a format decides its quality.
    fn take(slot: &mut Option<Named>, named: Named) {
        if slot.is_none_or(|old| named.specific > old.specific) {
            *slot = Some(named);
        }
    }
    let (mut turtle, mut json_ld) = (None, None);
    let ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for (at, range) in ranges.enumerate() {
        let mut parts = range.split(';').map(str::trim);
        let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find_map(|(name, q)| name.trim().eq_ignore_ascii_case("q").then_some(q.trim()))
            .map_or(Some(1.0), |q| {
                q.parse::<f32>().ok().filter(|q| q.is_finite())
            })
            .unwrap_or(0.0)
            .clamp(0.0, 1.0);
        let named = |specific| Named { q, specific, at };
        match kind.as_str() {
            "text/turtle" => take(&mut turtle, named(2)),
            "application/ld+json" | "application/json" => take(&mut json_ld, named(2)),
            "text/*" => take(&mut turtle, named(1)),
            "application/*" => take(&mut json_ld, named(1)),
            "*/*" => {
                take(&mut turtle, named(0));
                take(&mut json_ld, named(0));
            }
            _ => {}
        }
    }
    let Some(t) = turtle.filter(|t| t.q > 0.0) else {
        return false;
    };
    let Some(j) = json_ld.filter(|j| j.q > 0.0) else {
        return true;
    };
    (t.q, t.specific, std::cmp::Reverse(t.at)) > (j.q, j.specific, std::cmp::Reverse(j.at))
}

/// The URL the client reached this node by: `http://` and the `Host` header when it is a plain
/// host name or address with an optional port, else this node's API URL as its zone knows it
/// (not its listen address, which may be every interface, 0.0.0.0).
fn base_url(headers: &HeaderMap, state: &AppState) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| plain_host_and_port(h));
    let scheme = state.config.api.scheme();
    match (host, state.config.own_member()) {
        (Some(host), _) => format!("{scheme}://{host}"),
        (None, Some(me)) => me.api_url.clone(),
        (None, None) => format!("{scheme}://{}", state.config.listen.api),
    }
}

/// Whether `host` is a plain host and optional port, as links may be built from it: what a
/// config takes as a host ([`Host`]: a DNS name, an IPv4 address, a bracketed IPv6 address),
/// then `:` and a port ([`HostPort`]).
fn plain_host_and_port(host: &str) -> bool {
    // Bare, an IPv6 address would run into the port: only bracketed, or with no colon at all.
    let bare = !host.contains(':') || (host.starts_with('[') && host.ends_with(']'));
    host.parse::<HostPort>().is_ok() || (bare && host.parse::<Host>().is_ok())
}

/// What one page shows besides its listings.
struct Page<'a> {
    /// The registry's names of this zone's providers on the page, by party id.
    registered: &'a HashMap<String, String>,
    base: &'a str,
    after: i64,
    limit: u32,
    /// The position the next page starts after, if there is one.
    next: Option<i64>,
    /// The exchange's id and name.
    exchange: (&'a str, &'a str),
    /// The zone's id and name.
    zone: (String, &'a str),
}

impl Page<'_> {
    fn graph<'v>(&self, listings: impl Iterator<Item = &'v ListingView>) -> Graph {
        let mut g = Graph::default();
        let catalog = format!("{}/v1/catalog/dcat", self.base);
        let exchange = format!("urn:xchg:exchange:{}", iri_part(self.exchange.0));
        let catalog_id = format!("urn:xchg:catalog:{}", iri_part(&self.zone.0));
        let datasets: Vec<&ListingView> = listings.collect();

        let c = g.node(Term::iri(&catalog_id), "dcat:Catalog");
        g.add(
            c,
            "dct:title",
            Term::lang(&format!("{} · {}", self.exchange.1, self.zone.1), "zh"),
        );
        g.add(
            c,
            "dct:description",
            Term::lang(
                &format!(
                    "Data products listed or recognised in zone {} of exchange {}, public or \
                     general classification",
                    self.zone.0, self.exchange.0
                ),
                "en",
            ),
        );
        g.add(c, "dct:publisher", Term::iri(&exchange));
        g.add(c, "foaf:homepage", Term::iri(&format!("{}/", self.base)));
        g.add(c, "dct:language", Term::iri(LANGUAGE_ZH));
        g.add(c, "dcat:themeTaxonomy", Term::iri(DATA_THEME));
        for v in &datasets {
            g.add(c, "dcat:dataset", Term::iri(&self.dataset_iri(v)));
        }
        let e = g.node(Term::iri(&exchange), "foaf:Agent");
        g.add(e, "foaf:name", Term::lang(self.exchange.1, "zh"));

        let here = match self.after {
            0 => format!("{catalog}?limit={}", self.limit),
            after => format!("{catalog}?after={after}&limit={}", self.limit),
        };
        let first = format!("{catalog}?limit={}", self.limit);
        let p = g.node(Term::iri(&here), "hydra:PagedCollection");
        g.add(
            p,
            "hydra:itemsPerPage",
            Term::typed(&self.limit.to_string(), "xsd:integer"),
        );
        g.add(p, "hydra:first", Term::iri(&first));
        g.add(p, "hydra:firstPage", Term::iri(&first));
        if let Some(next) = self.next {
            let next = format!("{catalog}?after={next}&limit={}", self.limit);
            g.add(p, "hydra:next", Term::iri(&next));
            g.add(p, "hydra:nextPage", Term::iri(&next));
        }
        for v in &datasets {
            self.dataset(&mut g, v);
        }
        g
    }

    fn dataset_iri(&self, v: &ListingView) -> String {
        format!("urn:xchg:listing:{}", iri_part(&v.id))
    }

    fn dataset(&self, g: &mut Graph, v: &ListingView) {
        let l: &Listing = &v.listing;
        let iri = self.dataset_iri(v);
        let url = format!("{}/v1/listings/{}", self.base, iri_part(&v.id));
        let d = g.node(Term::iri(&iri), "dcat:Dataset");
        g.add(d, "dct:identifier", Term::plain(&v.id));
        g.add(d, "dct:title", Term::lang(&l.title, "zh"));
        g.add(d, "dct:description", Term::lang(&l.description, "zh"));
        for k in &l.keywords {
            g.add(d, "dcat:keyword", Term::lang(k, "zh"));
        }
        let theme = format!("urn:xchg:category:{}", iri_part(&l.category));
        g.add(d, "dcat:theme", Term::iri(&theme));
        let eu_theme = eu_data_theme(&l.category).map(|code| format!("{DATA_THEME}/{code}"));
        if let Some(eu_theme) = &eu_theme {
            g.add(d, "dcat:theme", Term::iri(eu_theme));
        }
        let provider = format!(
            "urn:xchg:party:{}:{}",
            iri_part(&l.origin.to_string()),
            iri_part(l.provider.id.as_str())
        );
        g.add(d, "dct:publisher", Term::iri(&provider));
        let access = match l.classification {
            Classification::Public => "PUBLIC",
            _ => "RESTRICTED",
        };
        g.add(
            d,
            "dct:accessRights",
            Term::iri(&format!("{ACCESS_RIGHT}{access}")),
        );
        g.add(d, "dct:issued", Term::time(l.created_at));
        g.add(d, "dct:modified", Term::time(l.updated_at));
        g.add(d, "dcat:version", Term::plain(&l.version.to_string()));
        let place = format!("urn:xchg:zone:{}", iri_part(&l.origin.to_string()));
        g.add(d, "dct:spatial", Term::iri(&place));
        let provenance = g.blank("dct:ProvenanceStatement");
        g.link(d, "dct:provenance", provenance);
        let said = if v.state == "recognised" {
            format!(
                "A copy recognised by zone {} of a listing submitted in zone {} of exchange {}",
                self.zone.0,
                l.origin,
                l.origin.exchange()
            )
        } else {
            format!("Listed in zone {} after its review", l.origin)
        };
        g.add(provenance, "rdfs:label", Term::lang(&said, "en"));
        for mode in &l.delivery_modes {
            let name = crate::catalog::tables::enum_name(mode);
            let dist = g.node(
                Term::iri(&format!("{iri}#distribution-{}", iri_part(&name))),
                "dcat:Distribution",
            );
            g.link(d, "dcat:distribution", dist);
            g.add(dist, "dct:title", Term::plain(&name));
            g.add(dist, "dcat:accessURL", Term::iri(&url));
            let rights = g.blank("dct:RightsStatement");
            g.link(dist, "dct:rights", rights);
            g.add(rights, "rdfs:label", Term::plain(&price(l)));
        }

        let t = g.node(Term::iri(&theme), "skos:Concept");
        g.add(t, "skos:prefLabel", Term::plain(&l.category));
        if let Some(eu_theme) = &eu_theme {
            let e = g.node(Term::iri(eu_theme), "skos:Concept");
            g.add(e, "skos:inScheme", Term::iri(DATA_THEME));
            g.add(t, "skos:broadMatch", Term::iri(eu_theme));
        }
        let a = g.node(Term::iri(&provider), "foaf:Agent");
        // One name per agent: the registry's for this zone's parties, else the first listing's
        // on the page (a provider's own listings could otherwise give it several).
        let name = self
            .registered
            .get(l.provider.id.as_str())
            .filter(|_| l.origin.to_string() == self.zone.0)
            .unwrap_or(&l.provider.name);
        if !g.nodes[a].1.iter().any(|(p, _)| *p == "foaf:name") {
            g.add(a, "foaf:name", Term::lang(name, "zh"));
        }
        g.add(a, "dct:identifier", Term::plain(l.provider.id.as_str()));
        let z = g.node(Term::iri(&place), "dct:Location");
        g.add(z, "skos:prefLabel", Term::plain(&l.origin.to_string()));
    }
}

/// A listing's price as text: its model, then the amount and currency when it has them.
fn price(l: &Listing) -> String {
    let model = match l.pricing.model {
        PricingModel::Free => "free",
        PricingModel::Fixed => "fixed price",
        PricingModel::PerCall => "per call",
        PricingModel::Subscription => "subscription",
        PricingModel::Negotiated => "negotiated",
    };
    match (&l.pricing.amount, &l.pricing.currency) {
        (Some(amount), Some(currency)) => format!("price: {model}, {amount} {currency}"),
        (Some(amount), None) => format!("price: {model}, {amount}"),
        _ => format!("price: {model}"),
    }
}

/// `text` for use inside an IRI: ASCII letters, digits and `-._~:/` as they are, every other
/// byte percent-encoded (so no text can end the IRI or break out of it in either syntax).
fn iri_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// An RDF term.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    /// An IRI, already safe ([`iri_part`]).
    Iri(String),
    /// A blank node, by number.
    Blank(usize),
    /// A literal: its text, and a language tag or a datatype (a prefixed name).
    Literal {
        value: String,
        lang: Option<&'static str>,
        datatype: Option<&'static str>,
    },
}

impl Term {
    fn iri(iri: &str) -> Self {
        Term::Iri(iri.to_owned())
    }
    fn plain(value: &str) -> Self {
        Term::Literal {
            value: value.to_owned(),
            lang: None,
            datatype: None,
        }
    }
    fn lang(value: &str, lang: &'static str) -> Self {
        Term::Literal {
            value: value.to_owned(),
            lang: Some(lang),
            datatype: None,
        }
    }
    fn typed(value: &str, datatype: &'static str) -> Self {
        Term::Literal {
            value: value.to_owned(),
            lang: None,
            datatype: Some(datatype),
        }
    }
    fn time(t: xchg_protocol::Timestamp) -> Self {
        Term::typed(&t.to_string(), "xsd:dateTime")
    }
}

/// Subjects in the order first met, each with its type and its (predicate, object) pairs;
/// predicates and types are prefixed names of [`PREFIXES`].
#[derive(Debug, Default)]
struct Graph {
    nodes: Vec<(Term, Vec<(&'static str, Term)>)>,
    /// Where each subject is in `nodes`.
    at: HashMap<String, usize>,
    blanks: usize,
}

impl Graph {
    /// The node for `subject` of type `class` (made if new); its index.
    fn node(&mut self, subject: Term, class: &'static str) -> usize {
        let key = json_ld_id(&subject);
        if let Some(&at) = self.at.get(&key) {
            return at;
        }
        self.nodes
            .push((subject, vec![("rdf:type", Term::Iri(class.to_owned()))]));
        self.at.insert(key, self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// A new blank node of type `class`; its index.
    fn blank(&mut self, class: &'static str) -> usize {
        self.blanks += 1;
        self.node(Term::Blank(self.blanks), class)
    }

    /// Adds `predicate` to node `from`, its object node `to`.
    fn link(&mut self, from: usize, predicate: &'static str, to: usize) {
        let object = self.nodes[to].0.clone();
        self.add(from, predicate, object);
    }

    /// Adds `predicate` `object` to node `at`, once.
    fn add(&mut self, at: usize, predicate: &'static str, object: Term) {
        let pairs = &mut self.nodes[at].1;
        if !pairs.iter().any(|(p, o)| *p == predicate && *o == object) {
            pairs.push((predicate, object));
        }
    }

    /// The graph in Turtle.
    fn turtle(&self) -> String {
        let mut out = String::new();
        for (prefix, iri) in PREFIXES {
            let _ = writeln!(out, "@prefix {prefix}: <{iri}> .");
        }
        for (subject, pairs) in &self.nodes {
            out.push('\n');
            out.push_str(&turtle_term(subject));
            for (i, (predicate, object)) in pairs.iter().enumerate() {
                let sep = if i == 0 { " " } else { " ;\n    " };
                let predicate = if *predicate == "rdf:type" {
                    "a"
                } else {
                    predicate
                };
                let object = match (predicate, object) {
                    ("a", Term::Iri(class)) => class.clone(),
                    _ => turtle_term(object),
                };
                let _ = write!(out, "{sep}{predicate} {object}");
            }
            out.push_str(" .\n");
        }
        out
    }

    /// The graph in JSON-LD: the prefixes as the context, every node in `@graph`.
    fn json_ld(&self) -> serde_json::Value {
        use serde_json::{Map, Value, json};
        let context: Map<String, Value> = PREFIXES
            .iter()
            .map(|(p, iri)| ((*p).to_owned(), Value::String((*iri).to_owned())))
            .collect();
        let graph: Vec<Value> = self
            .nodes
            .iter()
            .map(|(subject, pairs)| {
                let mut node = Map::new();
                node.insert("@id".into(), Value::String(json_ld_id(subject)));
                for (predicate, object) in pairs {
                    let (key, value) = match (*predicate, object) {
                        ("rdf:type", Term::Iri(class)) => ("@type", Value::String(class.clone())),
                        (p, Term::Iri(iri)) => (p, json!({ "@id": iri })),
                        (p, Term::Blank(_)) => (p, json!({ "@id": json_ld_id(object) })),
                        (
                            p,
                            Term::Literal {
                                value,
                                lang,
                                datatype,
                            },
                        ) => {
                            let mut v = Map::new();
                            v.insert("@value".into(), Value::String(value.clone()));
                            if let Some(lang) = lang {
                                v.insert("@language".into(), Value::String((*lang).into()));
                            }
                            if let Some(datatype) = datatype {
                                v.insert("@type".into(), Value::String((*datatype).into()));
                            }
                            (p, Value::Object(v))
                        }
                    };
                    match node.get_mut(key) {
                        Some(Value::Array(values)) => values.push(value),
                        _ => {
                            node.insert(key.to_owned(), Value::Array(vec![value]));
                        }
                    }
                }
                Value::Object(node)
            })
            .collect();
        json!({ "@context": context, "@graph": graph })
    }
}

fn json_ld_id(term: &Term) -> String {
    match term {
        Term::Iri(iri) => iri.clone(),
        Term::Blank(n) => format!("_:b{n}"),
        Term::Literal { value, .. } => value.clone(),
    }
}

fn turtle_term(term: &Term) -> String {
    match term {
        Term::Iri(iri) => format!("<{iri}>"),
        Term::Blank(n) => format!("_:b{n}"),
        Term::Literal {
            value,
            lang,
            datatype,
        } => {
            let mut out = String::with_capacity(value.len() + 2);
            out.push('"');
            for c in value.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => {
                        let _ = write!(out, "\\u{:04X}", u32::from(c));
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
            if let Some(lang) = lang {
                let _ = write!(out, "@{lang}");
            } else if let Some(datatype) = datatype {
                let _ = write!(out, "^^{datatype}");
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cannot_leave_an_iri_or_a_literal() {
        assert_eq!(iri_part("a b>\"c}"), "a%20b%3E%22c%7D");
        assert_eq!(iri_part("信用"), "%E4%BF%A1%E7%94%A8");
        assert_eq!(
            turtle_term(&Term::lang("say \"hi\"\\\n\u{1}", "zh")),
            "\"say \\\"hi\\\"\\\\\\n\\u0001\"@zh"
        );
    }

    /// Found by an attacker's review: `a]b[c:::` and `[::1` were taken as hosts and written
    /// into the page's links.
    #[test]
    fn links_are_built_only_from_a_plain_host_and_port() {
        for good in [
            "example.cn",
            "node-1.example.cn:8443",
            "127.0.0.1:7100",
            "[::1]",
            "[::1]:8443",
            "localhost",
        ] {
            assert!(plain_host_and_port(good), "{good}");
        }
        for bad in [
            "",
            "a]b[c:::",
            "[::1",
            "[nope]:80",
            "[::1]x",
            "host:",
            "host:123456",
            "host:80:80",
            "a..b",
            ".a",
            "a b",
            "user@host",
            "host/path",
        ] {
            assert!(!plain_host_and_port(bad), "{bad}");
        }
    }

    #[test]
    fn turtle_only_when_accept_prefers_it() {
        let with = |accept: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::ACCEPT,
                HeaderValue::from_str(accept).expect("header"),
            );
            wants_turtle(&h)
        };
        assert!(with("text/turtle"));
        assert!(with("application/ld+json;q=0.5, Text/Turtle ; q=0.9"));
        assert!(!with("text/turtle;q=0"));
        assert!(!with("application/ld+json, */*"));
        assert!(!with("text/turtlex"));
        assert!(!wants_turtle(&HeaderMap::new()));
        // The higher quality wins (found by a newcomer: Turtle was chosen whenever named).
        assert!(!with("text/turtle;q=0.9, application/ld+json"));
        assert!(with("text/turtle;q=0.9, */*;q=0.1"));
        assert!(!with("text/turtle;q=0.9, */*"));
        // At equal quality the more specific range, then the first listed.
        assert!(with("text/turtle, */*"));
        assert!(with("text/turtle, application/ld+json"));
        assert!(!with("application/ld+json, text/turtle"));
        assert!(!with("*/*"));
        assert!(with("text/*"));
        // The most specific range decides a format's quality, wherever it is listed.
        assert!(!with("text/*, text/turtle;q=0"));
        assert!(with(
            "application/*;q=0.2, text/turtle;q=0.5, application/ld+json;q=0.1"
        ));
        // A quality that does not parse counts as 0.
        assert!(!with("text/turtle;q=high"));
        assert!(!with("text/turtle;Q=0"));
        assert!(!with("application/json, text/turtle;q=0.1"));
        assert!(with("text/turtle ; q = 0.8, application/ld+json;q=0.7"));
    }

    /// A page looks at no more than its window of rows: where few are published it holds fewer
    /// datasets than asked and still says where to go on, and paging to the end finds each
    /// published listing once.
    #[tokio::test]
    async fn a_page_looks_at_a_window_of_rows_and_paging_finds_every_published_listing_once() {
        use crate::catalog::ListingState;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut published = Vec::new();
        {
            let db = crate::catalog::test_db(dir.path());
            for i in 0..40u32 {
                let mut draft = xchg_protocol::vectors::credit_draft();
                draft.title = format!("listing {i}");
                let listing = Listing::first_version(
                    draft,
                    "xuchang/yuzhou".parse().expect("zone"),
                    xchg_protocol::Timestamp(1),
                );
                // Every fifth is listed; the rest are still under review.
                let state = if i % 5 == 0 {
                    published.push(listing.id().to_string());
                    ListingState::Listed
                } else {
                    ListingState::Submitted
                };
                listings::write(&db, &listing, state, "p1").expect("write");
            }
        }
        let db = crate::store::Db::open(dir.path()).await.expect("db");
        let mut conn = db.reader().await.expect("reader");
        let (mut after, mut seen, mut pages) = (0, Vec::new(), 0);
        loop {
            let page = listings::published_after(&mut conn, after, 3, 7)
                .await
                .expect("page");
            pages += 1;
            assert!(page.items.len() <= 3);
            seen.extend(page.items.iter().map(|(_, v)| v.id.clone()));
            match page.next {
                Some(next) => {
                    assert!(next > after, "paging moves on");
                    after = next;
                }
                None => break,
            }
        }
        assert_eq!(seen, published, "each published listing once, in order");
        assert!(pages >= 40 / 7, "windows of 7 rows: {pages} pages");
        drop(conn);
        db.close().await;
    }

    #[test]
    fn both_syntaxes_say_the_same_triples() {
        let mut g = Graph::default();
        let a = g.node(Term::iri("http://x/a"), "dcat:Dataset");
        g.add(a, "dct:title", Term::lang("标题", "zh"));
        g.add(a, "dct:title", Term::lang("标题", "zh"));
        let b = g.blank("dct:RightsStatement");
        g.link(a, "dct:rights", b);
        g.add(b, "rdfs:label", Term::plain("price: free"));
        let ttl = g.turtle();
        assert!(
            ttl.contains(
                "<http://x/a> a dcat:Dataset ;\n    dct:title \"标题\"@zh ;\n    dct:rights _:b1 ."
            ),
            "{ttl}"
        );
        assert!(
            ttl.contains("_:b1 a dct:RightsStatement ;\n    rdfs:label \"price: free\" ."),
            "{ttl}"
        );
        let json = g.json_ld();
        assert_eq!(
            json["@graph"][0]["dct:title"].as_array().map(Vec::len),
            Some(1),
            "added once"
        );
        assert_eq!(json["@graph"][0]["dct:rights"][0]["@id"], "_:b1");
        assert_eq!(json["@graph"][1]["@type"][0], "dct:RightsStatement");
    }
}
