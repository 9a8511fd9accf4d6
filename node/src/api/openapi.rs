//! `GET /v1/openapi.json`: the OpenAPI document of the node API, generated from the handlers'
//! `#[utoipa::path]` annotations and the types they take and answer.
//!
//! The dashboard (`/`, `/assets/{file}`) is left out: it serves a page and its files, not the
//! JSON API. `/metrics` is in, as text. What the derived schemas cannot say about request
//! bodies is added by [`rules`].

mod rules;

use std::sync::OnceLock;

use axum::Json;
use axum::response::IntoResponse;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use xchg_protocol::{ContentId, CreditCode, NodeName, PartyId};

use super::error::{BearerErrors, ErrorBody};
use super::{
    applications, audit, authorizations, certificates, complaints, dcat, demands, entrustments,
    federation, listings, metrics, parties, registrations, status, supervision, tokens, trades,
    valuations, zone,
};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "xchg node API",
        version = env!("CARGO_PKG_VERSION"),
        description = "The HTTP API of an xchg node: listings and their review, the audit \
            chain, federation (recognitions, verdicts, peers, revocations, the hub's overview and \
            flows), \
            the party registry and entrustments, scenario applications and authorisations, trades from order to settlement, tokens and zone membership. Every error answers `{\"error\":{\"code\",\"message\",\
            \"field\"}}` with the status that fits. Writes sent to any node of a zone are \
            forwarded to its leader; reads are linearizable unless `consistency=local` is asked.",
        license(name = "Apache-2.0"),
    ),
    paths(
        document,
        status::get_status,
        listings::submit,
        listings::search,
        listings::get_one,
        listings::update,
        listings::approve,
        listings::reject,
        listings::delist,
        dcat::catalog,
        audit::list,
        audit::head,
        audit::inclusion,
        audit::consistency,
        federation::recognitions,
        federation::peers,
        federation::verdicts,
        federation::received_certificates,
        federation::received_revocations,
        federation::revoke,
        overview,
        flows,
        parties::apply,
        parties::list,
        parties::get_one,
        parties::admit,
        parties::refuse,
        parties::suspend,
        parties::reinstate,
        entrustments::grant,
        entrustments::list,
        entrustments::revoke,
        applications::submit,
        applications::list,
        applications::get_one,
        applications::approve,
        applications::reject,
        authorizations::list,
        authorizations::get_one,
        authorizations::usage,
        authorizations::suspend,
        authorizations::revoke,
        authorizations::reinstate,
        registrations::submit,
        registrations::get_one,
        registrations::approve,
        registrations::reject,
        demands::post,
        demands::search,
        demands::get_one,
        demands::matches,
        demands::propose,
        demands::accept,
        demands::withdraw,
        demands::get_external,
        demands::match_external,
        valuations::create,
        valuations::get_one,
        valuations::history,
        certificates::list,
        certificates::get_one,
        certificates::revoke,
        trades::place,
        trades::list,
        trades::get_one,
        trades::confirm,
        trades::deliver,
        trades::settle,
        trades::dispute,
        trades::reverse,
        trades::set_fee_schedule,
        trades::get_fee_schedule,
        complaints::file,
        complaints::list,
        complaints::get_one,
        complaints::investigate,
        complaints::resolve,
        complaints::suspend_listing,
        complaints::lift_suspension,
        supervision::stats,
        supervision::federation,
        tokens::create,
        tokens::revoke,
        zone::backup,
        zone::add_member,
        zone::remove_member,
        metrics::render,
    ),
    // Named, not registered, by the shared error sets (`ErrorBody`) and by path parameters.
    components(schemas(ErrorBody, ContentId, NodeName, PartyId, CreditCode)),
    modifiers(&BearerToken, &OpenListing, &ServerErrors),
    tags(
        (name = "status", description = "This node's Raft view; no token needed"),
        (name = "listings", description = "Submit, review, delist, read and search listings"),
        (name = "catalog", description = "The zone's published listings as a DCAT-AP 3 catalog \
            (JSON-LD or Turtle, paged the Hydra way) for portals to harvest; no token needed"),
        (name = "audit", description = "The hash-chained audit trail (regulator, admin)"),
        (name = "federation", description = "Recognitions, this node's verdicts, gossip peers, \
            key revocations, and the hub's overview and flows. Keys, signatures and envelopes \
            are lowercase hex in JSON (PROTOCOL.md 2.10)"),
        (name = "parties", description = "The zone's party registry (交易主体): applications \
            (anyone, rate-limited), an operator's decisions, reads; entrustments of brokers \
            (委托)"),
        (name = "applications", description = "Scenario applications (一场景一申请): a buyer \
            applies for one listing and one scenario, an operator approves or rejects; \
            authorisations (一场景一授权) and the usage counted against them"),
        (name = "registrations", description = "Registration and rights confirmation (登记确权): \
            a provider registers a listing, an operator approves it (the zone issues a signed \
            certificate, PROTOCOL.md 10) or rejects it; certificates with their verification \
            and status; revocation"),
        (name = "demands", description = "Demands and matchmaking (交易撮合): a buyer (or a \
            broker it entrusted with `post_demand`) posts what data it needs; the exchange \
            matches listings to it with a score and reasons; brokers and operators propose \
            listings; the buyer accepts one and goes on to apply. A demand posted with `share: \
            federation` is also shown by the exchanges this one has agreements with, when their \
            agreement covers it, under `/v1/demands?origin=external` and \
            `/v1/demands/external/{exchange}/{zone}/{number}`, where their own listings are \
            matched to it; it is proposed to, accepted and withdrawn only at its origin \
            (PROTOCOL.md 11.9)"),
        (name = "valuations", description = "Valuation reports (数据资产评估) by the cost, \
            income and market approaches, versioned per listing: made by the listing's provider \
            or an operator, read by them, regulators and admins"),
        (name = "trades", description = "Trades (交易): an order placed from an active \
            authorisation records the contract; its provider confirms and delivers in the \
            authorised mode; an operator settles it under the zone's fee schedule (admin), \
            money as decimal strings rounded to the fen half up; a settlement is disputed and \
            reversed only by new records"),
        (name = "supervision", description = "Supervision (监管): complaints (投诉举报) filed by \
            any token, the regulator's investigation and decision on them, the suspension of a \
            listing under complaint; the zone's figures per period"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "zone", description = "Zone membership (admin)"),
        (name = "metrics", description = "Prometheus metrics"),
        (name = "openapi", description = "This document"),
    ),
)]
pub struct ApiDoc;

/// Adds the `bearer` scheme the routes' `security(("bearer" = []))` refer to.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A token from the zone's config or from `POST /v1/tokens`: \
                 `Authorization: Bearer <token>`",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Lets the `Listing` schema admit other properties.
///
/// `Listing` refuses unknown fields when decoded, so its derived schema forbids other
/// properties; but the API only ever shows it flattened into a `ListingView` (`allOf` with the
/// view's own fields), which that prohibition would make impossible to satisfy.
struct OpenListing;

impl Modify for OpenListing {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let listing = openapi
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("Listing"));
        if let Some(RefOr::T(Schema::Object(listing))) = listing {
            listing.additional_properties = None;
        }
    }
}

/// Gives every operation a `default` answer: the errors the server itself may give any
/// request, before or around its handler (see `api::server` and `api::deadline`).
struct ServerErrors;

impl Modify for ServerErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let answer = utoipa::openapi::ResponseBuilder::new()
            .description(
                "Any other error, in the same shape; among them the server's own: 400 \
                 `bad_request` (a head it cannot parse), 408 `request_timeout` (the head or the \
                 body too slow), 414 `uri_too_long`, 431 `headers_too_large`, 503 \
                 `too_many_connections`, 504 `timeout` (the request took longer than the \
                 node's limit; a write may still be applied)",
            )
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .entry("default".to_owned())
                    .or_insert_with(|| RefOr::T(answer.clone()));
            }
        }
    }
}

/// `GET /v1/openapi.json` (no token needed).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "get_openapi_document",
    tag = "openapi",
    responses((status = 200, description = "This OpenAPI 3.1 document", body = Object))
)]
pub async fn document() -> impl IntoResponse {
    Json(served())
}

/// The document as served: [`ApiDoc`] with the request rules of [`rules`].
pub fn served() -> &'static serde_json::Value {
    static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        // The document is plain data: it always serializes.
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        let missed = rules::apply(&mut doc);
        if !missed.is_empty() {
            tracing::error!(
                ?missed,
                "OpenAPI request rules name properties that do not exist"
            );
        }
        doc
    })
}

/// `GET /v1/federation/overview` (admin, operator, regulator), served by
/// `overview::overview`: documentation only.
#[utoipa::path(
    get,
    path = "/v1/federation/overview",
    operation_id = "get_federation_overview",
    tag = "federation",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every node this node can find, with its Raft role, \
            indices and lag, grouped by exchange and zone", body = super::overview::Overview),
        (status = 400, description = "A query parameter (there are none)", body = ErrorBody),
        (status = 403, description = "The token's role may not make this node call others",
            body = ErrorBody),
        BearerErrors,
    )
)]
#[allow(dead_code)]
async fn overview() {}

/// `GET /v1/federation/flows` (any token), served by `overview::flows`: documentation only.
#[utoipa::path(
    get,
    path = "/v1/federation/flows",
    operation_id = "get_federation_flows",
    tag = "federation",
    params(("minutes" = Option<u32>, Query, minimum = 1, maximum = 1440,
        description = "Window length in minutes, 1 to 1440 (default 60)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Per-minute recognition decisions by origin, and this \
            zone's published and withheld announcements, from this node's replica",
            body = super::overview::Flows),
        (status = 400, description = "`minutes` outside 1 to 1440, or an unknown parameter",
            body = ErrorBody),
        BearerErrors,
    )
)]
#[allow(dead_code)]
async fn flows() {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde::Serialize;
    use serde_json::{Value, json};
    use xchg_protocol::{Listing, Timestamp};

    use super::*;
    use crate::api::overview;

    fn doc() -> Value {
        served().clone()
    }

    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> Result<&'a Value, String> {
        match schema.get("$ref").and_then(Value::as_str) {
            None => Ok(schema),
            Some(r) => {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .ok_or_else(|| format!("unexpected reference {r}"))?;
                let target = &doc["components"]["schemas"][name];
                if target.is_null() {
                    return Err(format!("unresolved reference {r}"));
                }
                resolve(doc, target)
            }
        }
    }

    fn type_allows(schema: &Value, value: &Value) -> bool {
        let allows = |t: &str| match t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        };
        match schema.get("type") {
            None => true,
            Some(Value::String(t)) => allows(t),
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).any(allows),
            Some(_) => false,
        }
    }

    /// Whether `value` is what `schema` describes: types, required properties, no undocumented
    /// property, and with `complete` every documented property present.
    fn conforms(
        doc: &Value,
        schema: &Value,
        value: &Value,
        complete: bool,
        at: &str,
    ) -> Result<(), String> {
        let schema = resolve(doc, schema)?;
        if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
            let errors: Vec<String> = branches
                .iter()
                .filter_map(|b| conforms(doc, b, value, complete, at).err())
                .collect();
            return if errors.len() < branches.len() {
                Ok(())
            } else {
                Err(errors.join(" / "))
            };
        }
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            // A flattened struct: the parts' properties together describe one object.
            let mut merged = json!({"type": "object", "properties": {}, "required": []});
            for part in parts {
                let part = resolve(doc, part)?;
                for (k, v) in part["properties"].as_object().into_iter().flatten() {
                    merged["properties"][k] = v.clone();
                }
                for r in part["required"].as_array().into_iter().flatten() {
                    merged["required"]
                        .as_array_mut()
                        .expect("an array")
                        .push(r.clone());
                }
            }
            return conforms(doc, &merged, value, complete, at);
        }
        if !type_allows(schema, value) {
            return Err(format!("{at}: {value} is not of type {}", schema["type"]));
        }
        if let Some(items) = schema.get("items")
            && let Some(values) = value.as_array()
        {
            for (i, v) in values.iter().enumerate() {
                conforms(doc, items, v, complete, &format!("{at}[{i}]"))?;
            }
        }
        let (Some(properties), Some(map)) = (
            schema.get("properties").and_then(Value::as_object),
            value.as_object(),
        ) else {
            return Ok(());
        };
        for required in schema["required"].as_array().into_iter().flatten() {
            let key = required.as_str().unwrap_or_default();
            if !map.contains_key(key) {
                return Err(format!("{at}: required property {key} missing"));
            }
        }
        for (key, v) in map {
            let Some(s) = properties.get(key) else {
                return Err(format!("{at}: property {key} is not documented"));
            };
            conforms(doc, s, v, complete, &format!("{at}.{key}"))?;
        }
        if complete && let Some(missing) = properties.keys().find(|k| !map.contains_key(*k)) {
            return Err(format!("{at}: documented property {missing} never appears"));
        }
        Ok(())
    }

    /// Checks a fully populated value of a real type against the named schema of the document.
    fn assert_documented_as(name: &str, value: &impl Serialize) {
        let doc = doc();
        let value = serde_json::to_value(value).expect("serializes");
        let schema = json!({"$ref": format!("#/components/schemas/{name}")});
        if let Err(e) = conforms(&doc, &schema, &value, true, name) {
            panic!("{name} drifted from its schema: {e}\nvalue: {value:#}");
        }
    }

    fn at() -> Timestamp {
        Timestamp(1_780_272_000_000)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn every_request_rule_lands_on_a_property_that_exists() {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        assert_eq!(rules::apply(&mut doc), Vec::<String>::new());
        let draft = &doc["components"]["schemas"]["ListingDraft"]["properties"];
        assert_eq!(draft["title"]["maxLength"], 200);
        assert_eq!(draft["scenarios"]["items"]["minLength"], 1);
        assert_eq!(draft["delivery_modes"]["uniqueItems"], true);
        // Nothing but the rules was added: no operation gained a `parameters: null`.
        let before = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("an item") {
                assert_eq!(
                    op.get("parameters").is_some(),
                    before["paths"][path][method].get("parameters").is_some(),
                    "{method} {path}"
                );
            }
        }
    }

    #[test]
    fn every_reference_in_the_document_resolves() {
        fn walk(doc: &Value, v: &Value, broken: &mut BTreeSet<String>) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref")
                        && resolve(doc, v).is_err()
                    {
                        broken.insert(r.clone());
                    }
                    map.values().for_each(|v| walk(doc, v, broken));
                }
                Value::Array(vs) => vs.iter().for_each(|v| walk(doc, v, broken)),
                _ => {}
            }
        }
        let doc = doc();
        let mut broken = BTreeSet::new();
        walk(&doc, &doc, &mut broken);
        assert!(broken.is_empty(), "unresolved references: {broken:?}");
    }

    #[test]
    fn operations_have_unique_ids_declared_path_parameters_and_error_body_errors() {
        let doc = doc();
        let paths = doc["paths"].as_object().expect("paths");
        let mut operation_ids = BTreeSet::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("a path item") {
                let declared: BTreeSet<&str> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                let in_path: BTreeSet<&str> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                    .collect();
                assert_eq!(declared, in_path, "{method} {path}");
                let id = op["operationId"].as_str().expect("an operation id");
                assert!(operation_ids.insert(id), "operation id {id} used twice");
                let responses = op["responses"].as_object().expect("responses");
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path} has no success answer"
                );
                for (status, response) in responses {
                    if status.starts_with('4') || status.starts_with('5') || status == "default" {
                        assert_eq!(
                            response["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
                if op.get("security").is_some() {
                    assert!(responses.contains_key("401"), "{method} {path} lacks 401");
                }
                assert!(
                    responses.contains_key("default"),
                    "{method} {path} lacks the server's own errors"
                );
            }
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(doc["info"]["title"], "xchg node API");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn an_api_error_is_documented_as_error_body() {
        let err = crate::api::error::ApiError::invalid_field("title", "must not be empty");
        let response = axum::response::IntoResponse::into_response(err);
        let body = futures::executor::block_on(axum::body::to_bytes(response.into_body(), 4096))
            .expect("a body");
        let value: Value = serde_json::from_slice(&body).expect("JSON");
        let doc = doc();
        let schema = json!({"$ref": "#/components/schemas/ErrorBody"});
        conforms(&doc, &schema, &value, false, "error").expect("conforms");
        assert_eq!(value["error"]["field"], "title");
    }

    #[test]
    fn a_listing_view_flattens_its_listing_as_documented() {
        let listing = Listing::first_version(
            xchg_protocol::vectors::credit_draft(),
            "xuchang/yuzhou".parse().expect("zone"),
            at(),
        );
        let view = crate::catalog::query::ListingView {
            id: "sha256:00".into(),
            state: "listed".into(),
            content_id: "sha256:00".into(),
            submitted_by: "yuzhou-credit-center".into(),
            listing,
            history: Some(Vec::new()),
            provenance: None,
        };
        let doc = doc();
        let value = serde_json::to_value(&view).expect("serializes");
        let schema = json!({"$ref": "#/components/schemas/ListingView"});
        conforms(&doc, &schema, &value, false, "ListingView").expect("conforms");
        // A part of an `allOf` that forbids other properties would refuse the view's own.
        for part in doc["components"]["schemas"]["ListingView"]["allOf"]
            .as_array()
            .expect("ListingView is an allOf")
        {
            let part = resolve(&doc, part).expect("resolves");
            assert_ne!(part["additionalProperties"], false, "{part}");
        }
    }

    #[test]
    fn the_overview_schema_matches_the_overview_handlers_answer() {
        let node = overview::NodeView {
            name: "yuzhou-1".into(),
            api_url: some("http://127.0.0.1:7100"),
            reachable: false,
            error: some("connection failed"),
            role: some("follower"),
            leader: some("yuzhou-2"),
            term: Some(3),
            commit_index: Some(10),
            applied_index: Some(9),
            lag: Some(1),
        };
        let value = overview::Overview {
            this: overview::SelfView {
                exchange: "xuchang".into(),
                zone: "xuchang/yuzhou".into(),
                node: "yuzhou-1".into(),
            },
            exchanges: vec![overview::ExchangeView {
                id: "xuchang".into(),
                display_name: some("许昌"),
                zones: vec![overview::ZoneView {
                    id: "xuchang/yuzhou".into(),
                    display_name: some("禹州"),
                    nodes: vec![node],
                }],
            }],
            gossip: vec![overview::GossipLink {
                zone: "xuchang/weidu".into(),
                node: "weidu-1".into(),
                messages: 4,
                last_message_at: Some(at()),
            }],
            unverified: vec![overview::UnverifiedPeer {
                peer: "12D3KooW".into(),
                agent: some("xchg/0.1.0 xuchang/municipal municipal-9 -"),
                address: some("/ip4/127.0.0.1/tcp/7120"),
                reason: "no identity answer".into(),
                messages: 1,
            }],
            audit_heads: vec![crate::federation::heads::ZoneHead {
                zone: "xuchang/weidu".into(),
                size: 7,
                root_hash: "ab".repeat(32),
                timestamp: at(),
                signer: "cd".repeat(32),
                checked_at: at(),
                consistent: false,
                problem: Some("the head of 8 records does not extend …".into()),
                signed_head: "a5".into(),
                evidence: Some(crate::federation::heads::Evidence {
                    signed_head: "a5".into(),
                    size: 8,
                    root_hash: "ef".repeat(32),
                    proof: vec!["01".repeat(32)],
                }),
            }],
            at: at(),
        };
        assert_documented_as("Overview", &value);
    }

    #[test]
    fn the_flows_schema_matches_the_flows_handlers_answer() {
        let value = overview::Flows {
            zone: "xuchang/yuzhou".into(),
            minutes: 2,
            from: at(),
            to: at(),
            inbound: vec![overview::InboundSeries {
                origin: "xuchang/weidu".into(),
                exchange: "xuchang".into(),
                decision: "recognised".into(),
                total: 1,
                counts: vec![0, 1],
            }],
            outbound: vec![overview::OutboundSeries {
                state: "published".into(),
                total: 0,
                counts: vec![0, 0],
            }],
            pending: 0,
            rejections: vec![overview::InboundReason {
                origin: "xuchang/weidu".into(),
                decision: "rejected".into(),
                reason: "classification".into(),
                count: 1,
            }],
            withheld: vec![overview::OutboundReason {
                reason: "important data stays home".into(),
                count: 1,
            }],
        };
        assert_documented_as("Flows", &value);
    }

    #[test]
    fn the_audit_record_schema_matches_the_audit_chains_json() {
        let value = crate::audit::AuditRecord {
            content: crate::audit::AuditContent {
                seq: 1,
                raft_index: 3,
                at: at(),
                actor: "token:0123abcd".into(),
                role: "admin".into(),
                action: "create_token".into(),
                object_id: "ab".repeat(32),
                result: "ok".into(),
                prev_hash: [0; 32],
            },
            hash: [1; 32],
        };
        assert_documented_as("AuditRecord", &value);
    }

    #[test]
    fn the_peer_schema_matches_the_gossip_peers_json() {
        let value = crate::gossip::PeerInfo {
            peer: "12D3KooW".into(),
            address: some("/ip4/127.0.0.1/tcp/7120"),
            agent: some("xchg/0.1.0 xuchang/weidu weidu-1 http://127.0.0.1:7200"),
            score: Some(0.5),
            topics: std::sync::Arc::from(["xchg/xuchang/v1".to_owned()]),
            last_message_ms: Some(1),
            messages: 2,
            connected_since_ms: Some(0),
        };
        assert_documented_as("PeerInfo", &value);
    }

    /// A party as the registry shows it (with history and contact) and an entrustment (revoked)
    /// are what their schemas say.
    #[test]
    fn the_party_and_entrustment_schemas_match_their_json() {
        use crate::catalog::parties::{
            Act, Entrustment, PartyHistoryEntry, PartyOrigin, PartyState, PartyView,
        };
        let party = PartyView {
            id: "yuzhou-rural-bank".parse().expect("id"),
            name: "禹州市农村商业银行股份有限公司".into(),
            credit_code: "91411081X35R9BLFW5".parse().expect("code"),
            kinds: vec![xchg_protocol::PartyKind::Processor],
            contact: Some(xchg_protocol::Contact {
                name: "数据专员".into(),
                phone: some("0374-8888888"),
                email: some("data@yuzhou-rural-bank.example"),
            }),
            state: PartyState::Suspended,
            origin: PartyOrigin::Application,
            applied_at: Some(at()),
            updated_at: Some(at()),
            history: Some(vec![PartyHistoryEntry {
                seq: 1,
                at: at(),
                actor: "anonymous via municipal-1".into(),
                role: "anonymous".into(),
                action: "apply".into(),
                from_state: None,
                to_state: PartyState::Applied,
                reason: some("review notes"),
                raft_index: 4,
            }]),
        };
        assert_documented_as("PartyView", &party);
        let entrustment = Entrustment {
            id: 3,
            party: "yuzhou-credit-center".parse().expect("id"),
            broker: "henan-data-broker".parse().expect("id"),
            scope: vec![Act::SubmitListing, Act::UpdateListing],
            expires_at: at(),
            granted_at: at(),
            granted_by: "yuzhou-credit-center".into(),
            revoked_at: Some(at()),
            revoked_by: some("token:0perator"),
            revoke_reason: some("contract ended"),
        };
        assert_documented_as("Entrustment", &entrustment);
    }

    /// The rules `GET /v1/certificates` enforces on its query string are in the document: a
    /// listing id's pattern, the page size's range, the cursor's digits.
    #[test]
    fn the_certificate_list_states_its_query_rules() {
        let doc = doc();
        let op = &doc["paths"]["/v1/certificates"]["get"];
        assert_eq!(op["operationId"], "list_certificates", "{op}");
        let param = |name: &str| {
            op["parameters"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == name))
                .map(|p| p["schema"].clone())
                .unwrap_or_default()
        };
        assert_eq!(param("listing_id")["pattern"], "^sha256:[0-9a-f]{64}$");
        assert_eq!(param("limit")["default"], 20);
        assert!(
            param("limit")["description"]
                .as_str()
                .is_some_and(|d| d.contains("1 to 100")),
            "{}",
            param("limit")
        );
        assert_eq!(param("before")["pattern"], "^[0-9]+$");
        let page = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].clone();
        assert_eq!(page, "#/components/schemas/CertificatePage");
        let items = &doc["components"]["schemas"]["CertificatePage"]["properties"]["items"];
        assert_eq!(
            items["items"]["$ref"], "#/components/schemas/CertificateView",
            "{items}"
        );
    }

    /// The rules `GET /v1/authorizations` enforces on its query string are in the document,
    /// and a page is what its schema says.
    #[test]
    fn the_authorization_list_states_its_query_rules() {
        let doc = doc();
        let op = &doc["paths"]["/v1/authorizations"]["get"];
        assert_eq!(op["operationId"], "list_authorizations", "{op}");
        let param = |name: &str| {
            op["parameters"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == name))
                .map(|p| p["schema"].clone())
                .unwrap_or_default()
        };
        assert_eq!(param("ids")["pattern"], "^[0-9]+(,[0-9]+){0,99}$");
        assert_eq!(param("limit")["default"], 50);
        assert_eq!(param("before")["pattern"], "^[0-9]+$");
        let states = resolve(&doc, &param("state"))
            .expect("state schema")
            .clone();
        assert_eq!(
            states["enum"],
            json!(["active", "suspended", "revoked"]),
            "{states}"
        );
        let page = super::authorizations::AuthorizationPage {
            items: Vec::new(),
            next_before: Some(3),
        };
        assert_documented_as("AuthorizationPage", &page);
    }

    /// An application (decided, with its precedents), an authorisation (suspended, with a
    /// refusal) and the answers of approval and usage are what their schemas say.
    #[test]
    fn the_application_and_authorization_schemas_match_their_json() {
        use crate::catalog::applications::{
            ApplicationState, ApplicationView, AuthorizationState, AuthorizationView, Precedent,
        };
        use xchg_protocol::DeliveryMode;
        let listing_id: ContentId = ContentId::of(b"listing");
        let application = ApplicationView {
            id: 2,
            listing_id,
            buyer: "xuchang-bank".into(),
            scenario: "企业贷款授信审查".into(),
            purpose: "授信前核验".into(),
            delivery_mode: DeliveryMode::Api,
            duration_days: 30,
            usage_limit: 100,
            state: ApplicationState::Rejected,
            submitted_at: at(),
            decided_at: Some(at()),
            decided_by: some("token:0perator"),
            reason: some("用途与场景不符"),
            authorization_id: Some(1),
            across: Some(crate::catalog::applications::AcrossView {
                origin_zone: some("zhengzhou/main"),
                applicant_zone: some("xuchang/municipal"),
                applicant_application: Some(42),
                request_id: format!("sha256:{}", "ab".repeat(32)),
                forwarded_at: Some(at()),
                decision_id: Some(format!("sha256:{}", "cd".repeat(32))),
            }),
        };
        let precedent = Precedent {
            application_id: 1,
            decision: ApplicationState::Approved,
            decided_at: at(),
            delivery_mode: Some(DeliveryMode::Verification),
            duration_days: Some(7),
            usage_limit: Some(10),
            reason: some("用途与场景不符"),
            decided_in: some("zhengzhou/main"),
        };
        let detail = super::applications::ApplicationDetail {
            application: application.clone(),
            precedents: vec![precedent.clone()],
        };
        assert_documented_as("ApplicationDetail", &detail);
        let written = super::applications::ApplicationWrite {
            id: 2,
            state: ApplicationState::Submitted,
            precedents: vec![precedent],
        };
        assert_documented_as("ApplicationWrite", &written);
        let authorization = AuthorizationView {
            id: 1,
            application_id: 1,
            listing_id,
            provider: "yuzhou-credit-center".into(),
            buyer: "xuchang-bank".into(),
            scenario: "企业贷款授信审查".into(),
            delivery_mode: DeliveryMode::Verification,
            usage_limit: 10,
            used: 4,
            remaining: 6,
            refused: 1,
            last_refusal: some("authorization_suspended: suspended"),
            state: AuthorizationState::Suspended,
            granted_at: at(),
            expires_at: at(),
            granted_by: "token:0perator".into(),
            changed_at: Some(at()),
            changed_by: some("token:0perator"),
            reason: some("合规检查"),
            origin: Some(crate::catalog::applications::OriginAuthorization {
                zone: "zhengzhou/main".into(),
                authorization: 7,
            }),
        };
        assert_documented_as("AuthorizationView", &authorization);
        let approval = super::applications::Approval {
            authorization_id: 1,
            application_id: 1,
            state: ApplicationState::Approved,
            authorization,
        };
        assert_documented_as("Approval", &approval);
        let count = super::authorizations::UsageCount {
            authorization_id: 1,
            used: 4,
            remaining: 6,
        };
        assert_documented_as("UsageCount", &count);
    }
}
