//! `GET /v1/catalog/dcat` (issue #18): the zone's published listings as DCAT-AP 3, read the way
//! a harvester reads them. Xuchang lists a public and a general product, an important one, and
//! one still under review, and one it then delists; Zhengzhou lists a general one that Xuchang
//! recognises. Paged two at a time by following `hydra:next`, Xuchang's catalog holds exactly
//! the public, the general and the recognised products, each once, each a `dcat:Dataset` with the properties DCAT-AP makes mandatory
//! and the ones this exchange promises; JSON-LD and Turtle (by `Accept`) are parsed with
//! oxigraph's parsers, written independently of the node, and say the same. No token is used.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use oxrdf::{NamedNode, NamedOrBlankNode, Term, Triple};
use serde_json::Value;
use xchg_federation_config::layout::LayoutKind;
use xchg_node::federation::Tuning;
use xchg_tests::example_listing;
use xchg_tests::in_process::Federation;

const X: usize = 0;
const Z: usize = 1;

const RDF_TYPE: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type";
const DCAT: &str = "http://www.w3.org/ns/dcat#";
const DCT: &str = "http://purl.org/dc/terms/";
const HYDRA: &str = "http://www.w3.org/ns/hydra/core#";
const DATA_THEME: &str = "http://publications.europa.eu/resource/authority/data-theme";

fn classified(suffix: &str, classification: &str) -> Value {
    let mut l = example_listing(suffix);
    l["classification"] = Value::String(classification.to_owned());
    l["keywords"] = serde_json::json!(["信用", "核验"]);
    l
}

/// One page as the node answers it: status, content type, body.
async fn page(url: &str, accept: Option<&str>) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let mut req = reqwest::Client::new().get(url);
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, content_type, resp.bytes().await?.to_vec()))
}

fn json_ld(body: &[u8]) -> anyhow::Result<Vec<Triple>> {
    oxjsonld::JsonLdParser::new()
        .for_slice(body)
        .map(|q| q.map(Triple::from).context("JSON-LD an RDF parser accepts"))
        .collect()
}

fn turtle(body: &[u8]) -> anyhow::Result<Vec<Triple>> {
    oxttl::TurtleParser::new()
        .for_slice(body)
        .map(|t| t.context("Turtle an RDF parser accepts"))
        .collect()
}

fn iri(s: &str) -> NamedNode {
    NamedNode::new_unchecked(s)
}

/// The subjects of `class`.
fn of_type(triples: &[Triple], class: &str) -> Vec<NamedOrBlankNode> {
    triples
        .iter()
        .filter(|t| t.predicate.as_str() == RDF_TYPE && t.object == Term::NamedNode(iri(class)))
        .map(|t| t.subject.clone())
        .collect()
}

/// The objects of `subject` `predicate`.
fn objects<'t>(
    triples: &'t [Triple],
    subject: &NamedOrBlankNode,
    predicate: &str,
) -> Vec<&'t Term> {
    triples
        .iter()
        .filter(|t| t.subject == *subject && t.predicate.as_str() == predicate)
        .map(|t| &t.object)
        .collect()
}

/// A triple with no blank node, as text (blank node labels differ between the syntaxes).
fn ground(triples: &[Triple]) -> BTreeSet<String> {
    triples
        .iter()
        .filter(|t| {
            !matches!(t.subject, NamedOrBlankNode::BlankNode(_))
                && !matches!(t.object, Term::BlankNode(_))
        })
        .map(ToString::to_string)
        .collect()
}

/// Checks one page's datasets and returns their identifiers and the next page's URL.
fn check_page(triples: &[Triple]) -> anyhow::Result<(Vec<String>, Option<String>)> {
    let catalogs = of_type(triples, &format!("{DCAT}Catalog"));
    ensure!(catalogs.len() == 1, "one dcat:Catalog: {catalogs:?}");
    let catalog = &catalogs[0];
    for p in ["title", "description", "publisher"] {
        ensure!(
            !objects(triples, catalog, &format!("{DCT}{p}")).is_empty(),
            "the catalog has dct:{p}"
        );
    }
    let taxonomy: Vec<String> = objects(triples, catalog, &format!("{DCAT}themeTaxonomy"))
        .iter()
        .map(ToString::to_string)
        .collect();
    ensure!(
        taxonomy == [format!("<{DATA_THEME}>")],
        "the catalog names the EU data themes as its theme taxonomy: {taxonomy:?}"
    );
    let listed: BTreeSet<String> = objects(triples, catalog, &format!("{DCAT}dataset"))
        .into_iter()
        .map(ToString::to_string)
        .collect();
    let datasets = of_type(triples, &format!("{DCAT}Dataset"));
    let named: BTreeSet<String> = datasets.iter().map(ToString::to_string).collect();
    ensure!(
        named == listed,
        "the catalog lists exactly the page's datasets: {named:?} {listed:?}"
    );
    let mut ids = Vec::new();
    for d in &datasets {
        let literal = |p: &str| -> anyhow::Result<oxrdf::Literal> {
            match objects(triples, d, p).first() {
                Some(Term::Literal(l)) => Ok(l.clone()),
                other => bail!("{d} {p}: {other:?}"),
            }
        };
        let id = literal(&format!("{DCT}identifier"))?;
        ids.push(id.value().to_owned());
        ensure!(
            d.to_string() == format!("<urn:xchg:listing:{}>", id.value()),
            "a dataset is named by its listing id, not by the host asked: {d}"
        );
        let access: Vec<String> = objects(triples, d, &format!("{DCT}accessRights"))
            .iter()
            .map(ToString::to_string)
            .collect();
        ensure!(
            access.len() == 1
                && access[0]
                    .starts_with("<http://publications.europa.eu/resource/authority/access-right/")
                && (access[0].ends_with("/PUBLIC>") || access[0].ends_with("/RESTRICTED>")),
            "{d} dct:accessRights from the EU vocabulary: {access:?}"
        );
        // Every product here is a credit product: the EU data theme "economy and finance",
        // besides this exchange's own concept for the category.
        let themes: BTreeSet<String> = objects(triples, d, &format!("{DCAT}theme"))
            .iter()
            .map(ToString::to_string)
            .collect();
        ensure!(
            themes.contains(&format!("<{DATA_THEME}/ECON>"))
                && themes.contains("<urn:xchg:category:credit>"),
            "{d} dcat:theme from the EU vocabulary and its own: {themes:?}"
        );
        for p in ["title", "description"] {
            let l = literal(&format!("{DCT}{p}"))?;
            ensure!(l.language() == Some("zh"), "{d} dct:{p} is tagged @zh: {l}");
        }
        for p in ["issued", "modified"] {
            let l = literal(&format!("{DCT}{p}"))?;
            ensure!(
                l.datatype().as_str() == "http://www.w3.org/2001/XMLSchema#dateTime",
                "{d} dct:{p} is an xsd:dateTime: {l}"
            );
        }
        for p in [
            format!("{DCT}publisher"),
            format!("{DCT}accessRights"),
            format!("{DCT}spatial"),
            format!("{DCT}provenance"),
            format!("{DCAT}theme"),
            format!("{DCAT}distribution"),
            format!("{DCAT}keyword"),
        ] {
            ensure!(!objects(triples, d, &p).is_empty(), "{d} has {p}");
        }
        for dist in objects(triples, d, &format!("{DCAT}distribution")) {
            let Term::NamedNode(dist) = dist else {
                bail!("a distribution named by an IRI: {dist}")
            };
            let dist = NamedOrBlankNode::NamedNode(dist.clone());
            ensure!(
                !objects(triples, &dist, &format!("{DCAT}accessURL")).is_empty(),
                "{dist} has dcat:accessURL"
            );
        }
    }
    let pages = of_type(triples, &format!("{HYDRA}PagedCollection"));
    ensure!(pages.len() == 1, "one hydra:PagedCollection: {pages:?}");
    let next = match objects(triples, &pages[0], &format!("{HYDRA}next")).first() {
        Some(Term::NamedNode(n)) => Some(n.as_str().to_owned()),
        None => None,
        Some(other) => bail!("hydra:next is an IRI: {other}"),
    };
    // Older harvesters read hydra:nextPage: the same link.
    let next_page = match objects(triples, &pages[0], &format!("{HYDRA}nextPage")).first() {
        Some(Term::NamedNode(n)) => Some(n.as_str().to_owned()),
        _ => None,
    };
    ensure!(
        next == next_page,
        "hydra:next {next:?}, hydra:nextPage {next_page:?}"
    );
    Ok((ids, next))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harvester_pages_through_the_public_catalog_in_json_ld_and_turtle() -> anyhow::Result<()>
{
    let tuning = Tuning {
        catchup_every: Duration::from_secs(1),
        ..Tuning::default()
    };
    let fed = Federation::start(LayoutKind::TwoExchanges, 1, tuning, |_, _| {}).await?;
    let public = fed.approve_new(X, classified("公开", "public")).await?;
    let general = fed.approve_new(X, classified("一般", "general")).await?;
    let important = fed.approve_new(X, classified("重要", "important")).await?;
    let recognised = fed
        .approve_new(Z, classified("郑州 一般", "general"))
        .await?;
    fed.wait_for_state(X, 0, &recognised, "recognised").await?;
    // One still under review: submitted, never approved.
    let t = fed.zone_tokens(X).clone();
    let pending = xchg_tests::for_party(classified("待审", "public"), fed.zone_party(X));
    let (s, v) = fed
        .call(
            X,
            0,
            reqwest::Method::POST,
            "/v1/listings",
            &t.provider,
            Some(pending),
        )
        .await?;
    ensure!(s == 201 || s == 200, "submit: {s} {v}");
    let pending = v["id"].as_str().context("an id")?.to_owned();
    // One listed, then delisted.
    let delisted = fed.approve_new(X, classified("下架", "public")).await?;
    let (s, v) = fed
        .call(
            X,
            0,
            reqwest::Method::POST,
            &format!("/v1/listings/{delisted}/delist"),
            &t.operator,
            Some(serde_json::json!({ "reason": "停止提供" })),
        )
        .await?;
    ensure!(s == 200, "delist: {s} {v}");

    let base = format!("http://{}", fed.zones[X][0].api_addr);
    let mut url = Some(format!("{base}/v1/catalog/dcat?limit=2"));
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(at) = url.take() {
        pages += 1;
        ensure!(pages <= 5, "paging ends");
        let (s, content_type, body) = page(&at, None).await?;
        ensure!(s == 200, "{at}: {s} {}", String::from_utf8_lossy(&body));
        ensure!(content_type == "application/ld+json", "{content_type}");
        let from_json = json_ld(&body)?;
        let (ids, next) = check_page(&from_json)?;
        ensure!(ids.len() <= 2, "at most the page size: {ids:?}");
        // The same page in Turtle says the same.
        let (s, content_type, body) = page(&at, Some("text/turtle")).await?;
        ensure!(
            s == 200 && content_type.starts_with("text/turtle"),
            "{s} {content_type}"
        );
        let from_turtle = turtle(&body)?;
        ensure!(
            from_turtle.len() == from_json.len() && ground(&from_turtle) == ground(&from_json),
            "the Turtle and the JSON-LD of {at} differ:\n{}",
            String::from_utf8_lossy(&body)
        );
        seen.extend(ids);
        url = next;
    }
    let once: BTreeSet<String> = seen.iter().cloned().collect();
    ensure!(
        once.len() == seen.len(),
        "no dataset on two pages: {seen:?}"
    );
    let seen = once;
    let expected: BTreeSet<String> = [&public, &general, &recognised]
        .into_iter()
        .cloned()
        .collect();
    ensure!(
        seen == expected,
        "published: {seen:?}, expected {expected:?} (not the important {important}, not the \
         pending {pending}, not the delisted {delisted})"
    );
    ensure!(pages == 2, "three datasets, two a page: {pages} pages");

    // Bad input is refused by name.
    for (query, field) in [("after=-1", "after"), ("limit=x", "limit"), ("other=1", "")] {
        let (s, _, body) = page(&format!("{base}/v1/catalog/dcat?{query}"), None).await?;
        let v: Value = serde_json::from_slice(&body)?;
        ensure!(s == 400, "{query}: {s} {v}");
        ensure!(
            field.is_empty() || v["error"]["field"] == field,
            "{query} names {field}: {v}"
        );
    }
    fed.shutdown().await;
    Ok(())
}
