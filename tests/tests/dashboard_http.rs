//! The dashboard over plain HTTP, against two exchanges with one node per zone
//! (`two-exchanges`): the page and every file it loads are served from the binary with the
//! right content type and name no other host, and the two routes the page draws from,
//! `/v1/federation/overview`, `/v1/federation/flows` and a listing's certificates
//! (`/v1/certificates?listing_id=`), answer as documented and refuse bad query strings naming
//! the field.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use xchg_federation_config::layout::ZoneTokens;
use xchg_tests::{Zone, eventually, example_listing};

const XUCHANG: &str = "xuchang/municipal";
const ZHENGZHOU: &str = "zhengzhou/main";
/// How long a fresh zone may take to elect its first leader.
const ELECTION: Duration = Duration::from_secs(30);
/// The first listing waits for the gossip mesh to form.
const FIRST_CROSSING: Duration = Duration::from_secs(60);

/// The SVG namespace is an XML identifier that browsers never fetch; any other absolute URL
/// in a served file would be a request to another host.
const NAMESPACES: [&str; 1] = ["http://www.w3.org/2000/svg"];

/// Every `http://` or `https://` reference in `text` that is not an XML namespace.
fn foreign_urls(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for scheme in ["http://", "https://"] {
        for (at, _) in text.match_indices(scheme) {
            let url: String = text[at..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '`' | ')' | '<'))
                .collect();
            if !NAMESPACES.contains(&url.as_str()) {
                found.push(url);
            }
        }
    }
    found
}

/// The files `text` loads: `/assets/<name>` references and `./<name>` module imports.
fn referenced_assets(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for marker in ["/assets/", "from \"./"] {
        for part in text.split(marker).skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

fn expected_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("svg") => "image/svg+xml",
        _ => "text/html",
    }
}

/// GETs `url`; the status, the Content-Type and the body.
async fn fetch(http: &reqwest::Client, url: &str) -> anyhow::Result<(u16, String, String)> {
    let resp = http.get(url).send().await?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, content_type, resp.text().await?))
}

/// The page and everything it loads, transitively.
async fn check_assets(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let (status, content_type, page) = fetch(http, &format!("{base}/")).await?;
    ensure!(status == 200, "GET / answered {status}");
    ensure!(
        content_type.starts_with("text/html"),
        "GET / is {content_type}"
    );
    ensure!(
        foreign_urls(&page).is_empty(),
        "index.html names other hosts: {:?}",
        foreign_urls(&page)
    );
    let mut todo: Vec<String> = referenced_assets(&page).into_iter().collect();
    let mut seen = BTreeSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let (status, content_type, body) = fetch(http, &format!("{base}/assets/{name}")).await?;
        ensure!(status == 200, "GET /assets/{name} answered {status}");
        ensure!(
            content_type.starts_with(expected_type(&name)),
            "/assets/{name} is served as {content_type}"
        );
        let foreign = foreign_urls(&body);
        ensure!(
            foreign.is_empty(),
            "/assets/{name} names other hosts: {foreign:?}"
        );
        todo.extend(referenced_assets(&body));
    }
    for name in [
        "app.js",
        "style.css",
        "i18n.js",
        "map.js",
        "catalog.js",
        "flows.js",
        "applications.js",
        "supervision.js",
    ] {
        ensure!(seen.contains(name), "the page never loads {name}: {seen:?}");
    }
    let (status, _, body) = fetch(http, &format!("{base}/assets/nope.js")).await?;
    ensure!(
        status == 404 && body.contains("not_found"),
        "an unknown asset: {status} {body}"
    );
    Ok(())
}

/// The node called `name` in an overview.
fn node_in<'a>(overview: &'a Value, name: &str) -> Option<&'a Value> {
    overview["exchanges"]
        .as_array()?
        .iter()
        .flat_map(|e| e["zones"].as_array().into_iter().flatten())
        .flat_map(|z| z["nodes"].as_array().into_iter().flatten())
        .find(|n| n["name"] == name)
}

/// The total of the flows series whose `key` is `value` and, for inbound series, whose
/// origin is `origin`.
fn total(flows: &Value, list: &str, key: &str, value: &str, origin: Option<&str>) -> u64 {
    flows[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s[key] == value && origin.is_none_or(|o| s["origin"] == o))
        .filter_map(|s| s["total"].as_u64())
        .sum()
}

/// The numbers of the certificates in a page of `GET /v1/certificates`, after checking that
/// each is valid, verifies here and certifies `listing`.
fn numbers(page: &Value, listing: &str) -> anyhow::Result<Vec<String>> {
    let items = page["items"].as_array().context("items")?;
    items
        .iter()
        .map(|c| {
            ensure!(c["status"] == "valid", "{c}");
            ensure!(c["verification"]["valid"] == true, "{c}");
            ensure!(c["certificate"]["listing_id"] == listing, "{c}");
            c["number"].as_str().map(str::to_owned).context("number")
        })
        .collect()
}

/// Listing `id`, listed in Xuchang (node `xu`) and recognised in Zhengzhou (node `zz`), is
/// certified twice: the detail view finds both certificates by the listing, newest first and in
/// pages, in its origin zone only.
async fn check_certificates(
    fed: &Zone,
    (xu, xt): (usize, &ZoneTokens),
    (zz, zt): (usize, &ZoneTokens),
    id: &str,
) -> anyhow::Result<()> {
    let first = fed.certify(xu, xt, id).await?;
    let second = fed.certify(xu, xt, id).await?;
    let path = format!("/v1/certificates?listing_id={id}");
    let (s, page) = fed.get(xu, &path, Some(&xt.buyer)).await?;
    ensure!(s == 200, "{path}: {s} {page}");
    ensure!(
        numbers(&page, id)? == [second.clone(), first.clone()],
        "newest first: {page}"
    );
    ensure!(page.get("next_before").is_none(), "one page: {page}");
    let (s, page) = fed
        .get(xu, &format!("{path}&limit=1"), Some(&xt.regulator))
        .await?;
    ensure!(s == 200 && numbers(&page, id)? == [second], "{page}");
    let before = page["next_before"].as_u64().context("a next page")?;
    let (s, page) = fed
        .get(
            xu,
            &format!("{path}&limit=1&before={before}&consistency=local"),
            Some(&xt.regulator),
        )
        .await?;
    ensure!(s == 200 && numbers(&page, id)? == [first], "{page}");
    ensure!(page.get("next_before").is_none(), "the last page: {page}");
    // Certificates stay with the zone that issued them; a recognised copy has none.
    let (s, page) = fed.get(zz, &path, Some(&zt.regulator)).await?;
    ensure!(
        s == 200 && page["items"].as_array().is_some_and(Vec::is_empty),
        "{page}"
    );
    for (query, field) in [
        ("listing_id=abc", Some("listing_id")),
        ("limit=ten", Some("limit")),
        ("before=-1", Some("before")),
        ("number=1", None),
    ] {
        let path = format!("/v1/certificates?{query}");
        let (s, v) = fed.get(xu, &path, Some(&xt.regulator)).await?;
        ensure!(s == 400, "{path}: {s} {v}");
        match field {
            Some(f) => ensure!(
                v["error"]["code"] == "invalid_field" && v["error"]["field"] == f,
                "{path}: {v}"
            ),
            None => ensure!(v["error"]["code"] == "invalid_query", "{path}: {v}"),
        }
    }
    let (s, v) = fed.get(xu, "/v1/certificates", None).await?;
    ensure!(s == 401, "without a token: {s} {v}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_assets_overview_flows_and_certificates_are_served() -> anyhow::Result<()> {
    let mut fed = Zone::generate("two-exchanges", 1)?;
    fed.start_all()?;
    let xu = fed.zone_nodes(XUCHANG)[0];
    let zz = fed.zone_nodes(ZHENGZHOU)[0];
    let xt = fed.zone_tokens(XUCHANG).clone();
    let zt = fed.zone_tokens(ZHENGZHOU).clone();
    fed.wait_for_leader(xu, ELECTION).await?;
    fed.wait_for_leader(zz, ELECTION).await?;
    let http = reqwest::Client::new();

    check_assets(&http, &fed.nodes[zz].api_url).await?;

    let id = fed
        .approve_new(xu, &xt, &example_listing("dashboard-http"))
        .await?;
    fed.wait_for_state(&[zz], &zt.buyer, &id, "recognised", FIRST_CROSSING)
        .await?;

    // The overview makes the node call others: operators and regulators only.
    let (s, v) = fed
        .get(zz, "/v1/federation/overview", Some(&zt.buyer))
        .await?;
    assert_eq!(s, 403, "{v}");
    // The hub in Zhengzhou finds Xuchang's node through gossip.
    let names: Vec<String> = fed.nodes.iter().map(|n| n.name.clone()).collect();
    let overview = eventually(
        Duration::from_secs(20),
        "every node reachable in Zhengzhou's overview",
        || async {
            let (s, v) = fed
                .get(zz, "/v1/federation/overview", Some(&zt.regulator))
                .await
                .map_err(|e| e.to_string())?;
            if s != 200 {
                return Err(format!("{s}: {v}"));
            }
            for name in &names {
                match node_in(&v, name) {
                    Some(n) if n["reachable"] == true => {}
                    other => return Err(format!("{name}: {other:?} in {v}")),
                }
            }
            Ok(Some(v))
        },
    )
    .await?;
    assert_eq!(overview["self"]["zone"], ZHENGZHOU, "{overview}");
    let exchanges: Vec<&str> = overview["exchanges"]
        .as_array()
        .context("exchanges")?
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(exchanges, ["zhengzhou", "xuchang"], "{overview}");
    for node in &fed.nodes {
        let n = node_in(&overview, &node.name).context("node listed")?;
        assert_eq!(n["api_url"], node.api_url.trim_end_matches('/'), "{n}");
        assert_eq!(n["role"], "leader", "a one-node zone leads itself: {n}");
        assert_eq!(n["lag"], 0, "{n}");
        assert!(n["applied_index"].as_u64() > Some(0), "{n}");
    }

    // Zhengzhou's flows show the recognition; Xuchang's show the publication.
    let (s, flows) = fed.get(zz, "/v1/federation/flows", Some(&zt.buyer)).await?;
    assert_eq!(s, 200, "{flows}");
    assert_eq!(flows["minutes"], 60, "{flows}");
    assert!(
        total(&flows, "inbound", "decision", "recognised", Some(XUCHANG)) >= 1,
        "{flows}"
    );
    let series = &flows["inbound"][0]["counts"];
    assert_eq!(series.as_array().map(Vec::len), Some(60), "{flows}");
    eventually(
        Duration::from_secs(10),
        "Xuchang's flows count the publication",
        || async {
            let (s, v) = fed
                .get(xu, "/v1/federation/flows?minutes=15", Some(&xt.regulator))
                .await
                .map_err(|e| e.to_string())?;
            if s != 200 {
                return Err(format!("{s}: {v}"));
            }
            Ok((total(&v, "outbound", "state", "published", None) >= 1).then_some(()))
        },
    )
    .await?;

    check_certificates(&fed, (xu, &xt), (zz, &zt), &id).await?;

    // Bad query strings are refused, naming the field.
    for (path, field) in [
        ("/v1/federation/flows?minutes=0", Some("minutes")),
        ("/v1/federation/flows?minutes=1441", Some("minutes")),
        ("/v1/federation/flows?minutes=ten", Some("minutes")),
        ("/v1/federation/flows?window=5", None),
        ("/v1/federation/overview?verbose=1", None),
    ] {
        let (s, v) = fed.get(zz, path, Some(&zt.regulator)).await?;
        assert_eq!(s, 400, "{path}: {v}");
        match field {
            Some(f) => assert_eq!(v["error"]["field"], f, "{path}: {v}"),
            None => assert_eq!(v["error"]["code"], "invalid_query", "{path}: {v}"),
        }
    }
    for path in ["/v1/federation/overview", "/v1/federation/flows"] {
        let (s, v) = fed.get(zz, path, None).await?;
        if s != 401 {
            bail!("{path} without a token answered {s}: {v}");
        }
    }
    Ok(())
}
