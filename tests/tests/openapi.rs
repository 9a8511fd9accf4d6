//! The OpenAPI document a node serves at `GET /v1/openapi.json`, checked against the routes the
//! node really has: every documented operation is routed (it answers something other than the
//! router's fallbacks), and every route of `api::router()` is documented.
//!
//! The router's routes are read from its source, `node/src/api/mod.rs`, so a route added there
//! without documentation fails here. The dashboard (`/`, `/assets/{file}`) and `/metrics` are
//! not JSON API routes and need not be documented (`/metrics` is, as text, and is then checked
//! like every other documented route).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use reqwest::Method;
use serde_json::Value;
use xchg_tests::Zone;

/// How long a fresh zone may take to elect its first leader.
const ELECTION: Duration = Duration::from_secs(30);

/// Routes of the router that are not part of the JSON API.
const NOT_API: [&str; 3] = ["/metrics", "/", "/assets/{file}"];

/// The router's source, relative to this crate.
const ROUTER_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../node/src/api/mod.rs");

/// A syntactically valid value for a path parameter, which names nothing that exists.
fn dummy(param: &str) -> anyhow::Result<String> {
    Ok(match param {
        "id" => format!("sha256:{}", "ab".repeat(32)),
        "hash" => "cd".repeat(32),
        "name" => "no-such-node".to_owned(),
        "number" => "XC-2026-NOWHERE-000000".to_owned(),
        "exchange" => "nowhere".to_owned(),
        "zone" => "no-such-zone".to_owned(),
        other => bail!("no dummy value for path parameter {{{other}}}: add one to this test"),
    })
}

/// `path` with each `{param}` replaced by its dummy value.
fn concrete(path: &str) -> anyhow::Result<String> {
    path.split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(param) => dummy(param),
                None => Ok(segment.to_owned()),
            },
        )
        .collect::<anyhow::Result<Vec<_>>>()
        .map(|segments| segments.join("/"))
}

/// The `(METHOD, path)` pairs the document describes.
fn documented(doc: &Value) -> anyhow::Result<BTreeSet<(String, String)>> {
    let paths = doc["paths"]
        .as_object()
        .context("the document has no paths")?;
    let mut operations = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().context("a path item is not an object")?;
        for method in item.keys() {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    Ok(operations)
}

/// The `(METHOD, path)` pairs registered by `router()` in `source`: every
/// `.route("PATH", get(..).post(..))` call of its body.
fn routed(source: &str) -> anyhow::Result<BTreeSet<(String, String)>> {
    let start = source
        .find("pub fn router(")
        .context("no `pub fn router(` in the router's source")?;
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").context("router() does not end")?];
    for unparsed in [".nest(", ".merge(", ".route_service(", ".nest_service("] {
        ensure!(
            !body.contains(unparsed),
            "router() uses {unparsed}, which this test does not read; teach it"
        );
    }
    let mut routes = BTreeSet::new();
    for call in body.split(".route(").skip(1) {
        let (path, rest) = call
            .trim_start()
            .strip_prefix('"')
            .and_then(|s| s.split_once('"'))
            .with_context(|| format!("a .route( call without a path literal: {call}"))?;
        let rest = rest.trim_start().strip_prefix(',').unwrap_or(rest);
        // The method routers are the calls at the top level of the second argument, up to the
        // parenthesis that closes `.route(`.
        let mut depth = 0usize;
        let mut word = String::new();
        let mut methods = Vec::new();
        for c in rest.chars() {
            match c {
                '(' if depth == 0 => {
                    methods.push(std::mem::take(&mut word));
                    depth += 1;
                }
                '(' => depth += 1,
                ')' if depth == 0 => break,
                ')' => depth -= 1,
                c if depth == 0 && (c.is_alphanumeric() || c == '_') => word.push(c),
                _ if depth == 0 => word.clear(),
                _ => {}
            }
        }
        ensure!(!methods.is_empty(), "no method router for {path}");
        for method in methods {
            ensure!(
                ["get", "post", "put", "delete", "patch"].contains(&method.as_str()),
                "route {path}: method router {method:?} is not one this test reads"
            );
            routes.insert((method.to_uppercase(), path.to_owned()));
        }
    }
    ensure!(!routes.is_empty(), "no routes found in router()");
    Ok(routes)
}

/// Whether an answer is the router's own: the fallback for unknown paths (`error::not_found`,
/// whose message is `no route <path>`), or a method the path does not serve.
fn from_router_fallback(status: u16, body: &Value) -> bool {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    status == 405 || (status == 404 && message.starts_with("no route "))
}

#[tokio::test]
async fn every_documented_route_answers_and_every_route_is_documented() -> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 1)?;
    zone.start_all()?;
    zone.wait_for_leader(0, ELECTION).await?;
    let admin = zone.tokens().admin.clone();

    let (status, doc) = zone.get(0, "/v1/openapi.json", None).await?;
    ensure!(
        status == 200,
        "GET /v1/openapi.json answered {status}: {doc}"
    );
    ensure!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not an OpenAPI 3 document: {}",
        doc["openapi"]
    );
    let documented = documented(&doc)?;

    // An empty JSON object for writes: every handler refuses it or finds nothing to act on, so
    // the zone is left as it was.
    for (method, path) in &documented {
        let url = concrete(path)?;
        let method = Method::from_bytes(method.as_bytes())?;
        let body = matches!(method, Method::POST | Method::PUT)
            .then(|| ("application/json", b"{}".to_vec()));
        let (status, answer) = zone
            .send(0, method.clone(), &url, Some(&admin), body)
            .await?;
        ensure!(
            !from_router_fallback(status, &answer),
            "{method} {path} is documented but not routed: {method} {url} answered {status} \
             {answer}"
        );
    }

    let source = std::fs::read_to_string(ROUTER_SOURCE)
        .with_context(|| format!("reading {ROUTER_SOURCE}"))?;
    let api = |set: &BTreeSet<(String, String)>| -> BTreeSet<(String, String)> {
        set.iter()
            .filter(|(_, path)| !NOT_API.contains(&path.as_str()))
            .cloned()
            .collect()
    };
    let routed = api(&routed(&source)?);
    let documented = api(&documented);
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    ensure!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes of router() missing from the document: {undocumented:?}; documented but not in \
         router(): {unrouted:?}"
    );
    Ok(())
}

#[test]
fn the_route_reader_finds_chained_and_wrapped_method_routers() -> anyhow::Result<()> {
    let source = r#"
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/a", post(a::create).get(a::list))
        .route(
            "/v1/a/{id}",
            get(a::get_one).put(a::update),
        )
        .route("/", get(crate::dashboard::index))
        .fallback(error::not_found)
        .with_state(state)
}
"#;
    let expected: BTreeSet<(String, String)> = [
        ("POST", "/v1/a"),
        ("GET", "/v1/a"),
        ("GET", "/v1/a/{id}"),
        ("PUT", "/v1/a/{id}"),
        ("GET", "/"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(routed(source)?, expected);
    Ok(())
}
