//! Every bad-input case of the HTTP API, against a real 3-node zone: each is answered with the
//! right 4xx status and a JSON error `{"error":{"code","message","field"?}}` blaming the right
//! field, and none applies anything. "Nothing" means the audit chain and the catalog are as they
//! were, except for the one audit record the state machine keeps of each command it refuses.
//!
//! Requests go to a follower, so every write is forwarded to the leader and its refusal has to
//! survive the trip back.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use reqwest::Method;
use serde_json::{Value, json};
use xchg_federation_config::layout::ZoneTokens;
use xchg_tests::{Zone, example_listing};

/// How long a fresh zone may take to elect its first leader.
const ELECTION: Duration = Duration::from_secs(30);
/// The `api.max_body_bytes` of generated configs (the 1 MiB default).
const MAX_BODY: usize = 1 << 20;

/// A well-formed listing id that no listing has.
fn unknown_id() -> String {
    format!("sha256:{}", "ab".repeat(32))
}

/// A running zone, its tokens, and the follower that requests go to.
struct Api {
    zone: Zone,
    tokens: ZoneTokens,
    node: usize,
}

/// What a rejected request must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    /// The whole audit chain (a test zone has far fewer than 1000 records).
    audit: Vec<Value>,
    /// Number of listings in the catalog.
    listings: i64,
}

impl Api {
    async fn start() -> anyhow::Result<Api> {
        let mut zone = Zone::generate("single-zone", 3)?;
        zone.start_all()?;
        let leader = zone.wait_for_leader(0, ELECTION).await?;
        let tokens = zone.tokens().clone();
        Ok(Api {
            zone,
            tokens,
            node: (leader + 1) % 3,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<(u16, Value)> {
        self.zone.send(self.node, method, path, token, body).await
    }

    async fn get(&self, path: &str, token: &str) -> anyhow::Result<(u16, Value)> {
        self.zone.get(self.node, path, Some(token)).await
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let bytes = serde_json::to_vec(body)?;
        self.send(method, path, Some(token), Some(("application/json", bytes)))
            .await
    }

    /// Submits `listing` with `token` and returns its id.
    async fn submit_as(&self, token: &str, listing: &Value) -> anyhow::Result<String> {
        let (status, body) = self
            .json(Method::POST, "/v1/listings", token, listing)
            .await?;
        ensure!(status == 201, "submit: {status} {body}");
        body["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no id in {body}"))
    }

    /// Submits the example listing with the zone's provider token and returns its id.
    async fn submit(&self, suffix: &str) -> anyhow::Result<String> {
        self.submit_as(&self.tokens.provider, &example_listing(suffix))
            .await
    }

    /// `POST /v1/listings/{id}/{action}` with the operator token.
    async fn review(&self, id: &str, action: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let path = format!("/v1/listings/{id}/{action}");
        self.json(Method::POST, &path, &self.tokens.operator, body)
            .await
    }

    /// Approves `id` and waits until the zone has published its announcement, so the tests'
    /// before/after snapshots see no background write.
    async fn approve(&self, id: &str) -> anyhow::Result<()> {
        let (status, body) = self.review(id, "approve", &json!({})).await?;
        ensure!(status == 200, "approve: {status} {body}");
        xchg_tests::eventually(
            Duration::from_secs(10),
            "the approval published",
            || async {
                let l = self.listing(id).await.map_err(|e| e.to_string())?;
                let pending = l["provenance"]["export"]
                    .as_array()
                    .is_none_or(|e| e.iter().any(|x| x["state"] == "pending"));
                Ok((!pending).then_some(()))
            },
        )
        .await
    }

    /// The listing as `GET /v1/listings/{id}` shows it, history included.
    async fn listing(&self, id: &str) -> anyhow::Result<Value> {
        let (status, body) = self
            .get(&format!("/v1/listings/{id}"), &self.tokens.buyer)
            .await?;
        ensure!(status == 200, "get {id}: {status} {body}");
        Ok(body)
    }

    /// Returns once this node has applied every write acknowledged before (a linearizable
    /// read). Authentication reads the node's replica, so a token created or revoked through
    /// the leader counts here only after this.
    async fn caught_up(&self) -> anyhow::Result<()> {
        let (status, body) = self
            .get("/v1/audit?limit=1", &self.tokens.regulator)
            .await?;
        ensure!(status == 200, "audit: {status} {body}");
        Ok(())
    }

    /// Linearizable reads, so every write acknowledged before is in the snapshot.
    async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let (status, audit) = self
            .get("/v1/audit?limit=1000", &self.tokens.regulator)
            .await?;
        ensure!(status == 200, "audit: {status} {audit}");
        let (status, page) = self.get("/v1/listings?limit=1", &self.tokens.buyer).await?;
        ensure!(status == 200, "search: {status} {page}");
        Ok(Snapshot {
            audit: audit["items"].as_array().cloned().unwrap_or_default(),
            listings: page["total"]
                .as_i64()
                .with_context(|| format!("no total in {page}"))?,
        })
    }

    /// `answer` is the error `status`/`code` blaming `field`, and nothing changed since `before`.
    async fn expect_rejected(
        &self,
        answer: &(u16, Value),
        before: &Snapshot,
        status: u16,
        code: &str,
        field: Option<&str>,
    ) -> anyhow::Result<()> {
        expect_error(answer, status, code, field)?;
        let after = self.snapshot().await?;
        ensure!(
            after == *before,
            "a rejected request changed the zone:\nbefore {before:?}\nafter  {after:?}"
        );
        Ok(())
    }

    /// `answer` is the state machine's refusal `status`/`code` of `action`, and the refusal's
    /// audit record is the only change since `before`.
    async fn expect_refused(
        &self,
        answer: &(u16, Value),
        before: &Snapshot,
        status: u16,
        code: &str,
        action: &str,
    ) -> anyhow::Result<()> {
        expect_error(answer, status, code, None)?;
        let after = self.snapshot().await?;
        let n = before.audit.len();
        ensure!(
            after.listings == before.listings
                && after.audit.len() == n + 1
                && after.audit[..n] == before.audit[..],
            "a refusal did more than append its audit record:\nbefore {before:?}\nafter  {after:?}"
        );
        let record = &after.audit[n];
        let refused = format!("refused:{code}:");
        ensure!(
            record["action"] == action
                && record["result"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&refused)),
            "expected a {action} record with result {refused}..., got {record}"
        );
        Ok(())
    }
}

/// `answer` is a JSON error with `status`, `code`, a message, and `field` (or no field).
fn expect_error(
    answer: &(u16, Value),
    status: u16,
    code: &str,
    field: Option<&str>,
) -> anyhow::Result<()> {
    let (got, body) = answer;
    let error = &body["error"];
    ensure!(
        *got == status && error["code"] == code,
        "expected {status} {code}, got {got} {body}"
    );
    ensure!(
        error["field"].as_str() == field,
        "expected field {field:?}, got {body}"
    );
    ensure!(
        error["message"]
            .as_str()
            .is_some_and(|m| !m.trim().is_empty()),
        "no message in {body}"
    );
    Ok(())
}

fn remove(object: &mut Value, key: &str) {
    if let Some(o) = object.as_object_mut() {
        o.remove(key);
    }
}

/// Submits the example listing changed by `change`: 400 `invalid_field` blaming `field`, and
/// nothing applied. Returns the error body.
async fn submit_invalid(change: impl FnOnce(&mut Value), field: &str) -> anyhow::Result<Value> {
    let api = Api::start().await?;
    let before = api.snapshot().await?;
    let mut listing = example_listing("invalid");
    change(&mut listing);
    let answer = api
        .json(Method::POST, "/v1/listings", &api.tokens.provider, &listing)
        .await?;
    api.expect_rejected(&answer, &before, 400, "invalid_field", Some(field))
        .await?;
    Ok(answer.1)
}

/// Submits the example listing as `content_type` bytes `body`: expects `status`/`code` and
/// nothing applied.
async fn submit_raw(
    content_type: &str,
    body: Vec<u8>,
    status: u16,
    code: &str,
) -> anyhow::Result<()> {
    let api = Api::start().await?;
    let before = api.snapshot().await?;
    let answer = api
        .send(
            Method::POST,
            "/v1/listings",
            Some(&api.tokens.provider),
            Some((content_type, body)),
        )
        .await?;
    api.expect_rejected(&answer, &before, status, code, None)
        .await
}

/// `action` (reject or delist) with `body` on a listing whose state allows it: 400
/// `invalid_field` blaming `reason`, and the listing untouched.
async fn review_with_bad_reason(action: &str, body: Value) -> anyhow::Result<()> {
    let api = Api::start().await?;
    let id = api.submit(action).await?;
    if action == "delist" {
        api.approve(&id).await?;
    }
    let before = api.snapshot().await?;
    let listing = api.listing(&id).await?;
    let answer = api.review(&id, action, &body).await?;
    api.expect_rejected(&answer, &before, 400, "invalid_field", Some("reason"))
        .await?;
    ensure!(api.listing(&id).await? == listing, "the listing changed");
    Ok(())
}

/// `action` with a good body on a listing that does not exist: 404, and nothing written (not
/// even a refusal: the node checks its catalog before proposing).
async fn review_unknown_listing(action: &str, body: Value) -> anyhow::Result<()> {
    let api = Api::start().await?;
    let before = api.snapshot().await?;
    let answer = api.review(&unknown_id(), action, &body).await?;
    api.expect_rejected(&answer, &before, 404, "not_found", None)
        .await
}

/// `action` on a listing brought to `state` (submitted or listed): 409 `illegal_transition`,
/// the listing's state and history unchanged, and only the refusal recorded.
async fn illegal_transition(state: &str, action: &str) -> anyhow::Result<()> {
    let api = Api::start().await?;
    let id = api.submit(action).await?;
    if state == "listed" {
        api.approve(&id).await?;
    }
    let before = api.snapshot().await?;
    let listing = api.listing(&id).await?;
    ensure!(listing["state"] == state, "{listing}");
    let body = match action {
        "approve" => json!({}),
        _ => json!({"reason": "test"}),
    };
    let answer = api.review(&id, action, &body).await?;
    api.expect_refused(
        &answer,
        &before,
        409,
        "illegal_transition",
        &format!("{action}_listing"),
    )
    .await?;
    let after = api.listing(&id).await?;
    ensure!(
        after == listing,
        "the listing changed:\nbefore {listing}\nafter  {after}"
    );
    Ok(())
}

/// `GET /v1/listings?{query}` with a bad parameter: 400 `code` blaming `field`.
async fn search_rejects(query: &str, code: &str, field: Option<&str>) -> anyhow::Result<Value> {
    let api = Api::start().await?;
    let answer = api
        .get(&format!("/v1/listings?{query}"), &api.tokens.buyer)
        .await?;
    expect_error(&answer, 400, code, field)?;
    Ok(answer.1)
}

/// Has `party` apply and admits it (a token is only for an admitted party), then creates a
/// provider token bound to it with the admin token; returns its text.
async fn provider_token_for(api: &Api, party: &str) -> anyhow::Result<String> {
    let application = xchg_tests::party_application(party, &["resource_holder"]);
    let (status, body) = api
        .json(
            Method::POST,
            "/v1/parties",
            &api.tokens.operator,
            &application,
        )
        .await?;
    ensure!(status == 201, "apply: {status} {body}");
    let admit = format!("/v1/parties/{party}/admit");
    let (status, body) = api
        .json(Method::POST, &admit, &api.tokens.operator, &json!({}))
        .await?;
    ensure!(status == 200, "admit: {status} {body}");
    let (status, body) = api
        .json(
            Method::POST,
            "/v1/tokens",
            &api.tokens.admin,
            &json!({"role": "provider", "party": party, "label": "t"}),
        )
        .await?;
    ensure!(status == 201, "create token: {status} {body}");
    api.caught_up().await?;
    body["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no token in {body}"))
}

#[tokio::test]
async fn submitted_and_approved_listing_reads_back_listed_with_two_history_entries()
-> anyhow::Result<()> {
    let api = Api::start().await?;
    let id = api.submit("control").await?;
    api.approve(&id).await?;
    let listing = api.listing(&id).await?;
    ensure!(listing["state"] == "listed", "{listing}");
    let actions: Vec<&str> = listing["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["action"].as_str())
        .collect();
    ensure!(actions == ["submit", "approve"], "history: {listing}");
    Ok(())
}

#[tokio::test]
async fn malformed_json_is_400_and_applies_nothing() -> anyhow::Result<()> {
    submit_raw(
        "application/json",
        br#"{"title": "#.to_vec(),
        400,
        "malformed_json",
    )
    .await
}

#[tokio::test]
async fn json_followed_by_trailing_data_is_400_and_applies_nothing() -> anyhow::Result<()> {
    let mut body = serde_json::to_vec(&example_listing("trailing"))?;
    body.extend_from_slice(br#" {"title": "a second document"}"#);
    submit_raw("application/json", body, 400, "malformed_json").await
}

#[tokio::test]
async fn unknown_field_is_400_naming_the_field() -> anyhow::Result<()> {
    submit_invalid(|l| l["colour"] = json!("red"), "colour").await?;
    Ok(())
}

#[tokio::test]
async fn unknown_nested_field_is_400_naming_its_dotted_path() -> anyhow::Result<()> {
    submit_invalid(
        |l| l["provider"]["email"] = json!("a@b.c"),
        "provider.email",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn missing_description_is_400_naming_description() -> anyhow::Result<()> {
    submit_invalid(|l| remove(l, "description"), "description").await?;
    Ok(())
}

#[tokio::test]
async fn missing_provider_name_is_400_naming_its_dotted_path() -> anyhow::Result<()> {
    submit_invalid(|l| remove(&mut l["provider"], "name"), "provider.name").await?;
    Ok(())
}

#[tokio::test]
async fn empty_title_is_400_naming_title() -> anyhow::Result<()> {
    submit_invalid(|l| l["title"] = json!(""), "title").await?;
    Ok(())
}

#[tokio::test]
async fn per_call_pricing_without_amount_is_400_naming_pricing_amount() -> anyhow::Result<()> {
    submit_invalid(|l| remove(&mut l["pricing"], "amount"), "pricing.amount").await?;
    Ok(())
}

#[tokio::test]
async fn currency_that_is_not_iso_4217_is_400_naming_pricing_currency() -> anyhow::Result<()> {
    submit_invalid(
        |l| l["pricing"]["currency"] = json!("yuan"),
        "pricing.currency",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn unknown_classification_is_400_naming_classification() -> anyhow::Result<()> {
    submit_invalid(|l| l["classification"] = json!("secret"), "classification").await?;
    Ok(())
}

#[tokio::test]
async fn no_delivery_modes_is_400_naming_delivery_modes() -> anyhow::Result<()> {
    submit_invalid(|l| l["delivery_modes"] = json!([]), "delivery_modes").await?;
    Ok(())
}

#[tokio::test]
async fn several_invalid_fields_are_all_listed_in_details() -> anyhow::Result<()> {
    let body = submit_invalid(
        |l| {
            l["title"] = json!("  ");
            l["delivery_modes"] = json!([]);
            l["pricing"]["currency"] = json!("yuan");
        },
        "title",
    )
    .await?;
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["field"].as_str())
        .collect();
    ensure!(
        fields == ["title", "delivery_modes", "pricing.currency"],
        "details: {body}"
    );
    Ok(())
}

#[tokio::test]
async fn text_plain_body_is_415_and_applies_nothing() -> anyhow::Result<()> {
    let body = serde_json::to_vec(&example_listing("text"))?;
    submit_raw("text/plain", body, 415, "unsupported_media_type").await
}

#[tokio::test]
async fn body_over_one_mebibyte_is_413_and_applies_nothing() -> anyhow::Result<()> {
    let mut listing = example_listing("huge");
    listing["description"] = json!("a".repeat(MAX_BODY + 1));
    let body = serde_json::to_vec(&listing)?;
    submit_raw("application/json", body, 413, "payload_too_large").await
}

#[tokio::test]
async fn approve_with_a_text_plain_review_is_415_and_applies_nothing() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let id = api.submit("text-review").await?;
    let before = api.snapshot().await?;
    let answer = api
        .send(
            Method::POST,
            &format!("/v1/listings/{id}/approve"),
            Some(&api.tokens.operator),
            Some(("text/plain", br#"{"notes": "ok"}"#.to_vec())),
        )
        .await?;
    api.expect_rejected(&answer, &before, 415, "unsupported_media_type", None)
        .await
}

#[tokio::test]
async fn approve_with_a_review_over_one_mebibyte_is_413_json_error() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let id = api.submit("huge-review").await?;
    let before = api.snapshot().await?;
    let answer = api
        .review(&id, "approve", &json!({"notes": "a".repeat(MAX_BODY + 1)}))
        .await?;
    api.expect_rejected(&answer, &before, 413, "payload_too_large", None)
        .await
}

#[tokio::test]
async fn request_without_authorization_is_401_and_applies_nothing() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let before = api.snapshot().await?;
    let body = serde_json::to_vec(&example_listing("anonymous"))?;
    let answer = api
        .send(
            Method::POST,
            "/v1/listings",
            None,
            Some(("application/json", body)),
        )
        .await?;
    api.expect_rejected(&answer, &before, 401, "unauthorized", None)
        .await
}

#[tokio::test]
async fn unknown_token_is_401_and_applies_nothing() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let before = api.snapshot().await?;
    let answer = api
        .json(
            Method::POST,
            "/v1/listings",
            "xchg-provider-not-a-token-of-this-zone",
            &example_listing("stranger"),
        )
        .await?;
    api.expect_rejected(&answer, &before, 401, "unauthorized", None)
        .await
}

#[tokio::test]
async fn buyer_submitting_a_listing_is_403_and_applies_nothing() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let before = api.snapshot().await?;
    let answer = api
        .json(
            Method::POST,
            "/v1/listings",
            &api.tokens.buyer,
            &example_listing("buyer"),
        )
        .await?;
    api.expect_rejected(&answer, &before, 403, "forbidden", None)
        .await
}

#[tokio::test]
async fn provider_approving_a_listing_is_403_and_applies_nothing() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let id = api.submit("self-approval").await?;
    let before = api.snapshot().await?;
    let answer = api
        .json(
            Method::POST,
            &format!("/v1/listings/{id}/approve"),
            &api.tokens.provider,
            &json!({}),
        )
        .await?;
    api.expect_rejected(&answer, &before, 403, "forbidden", None)
        .await?;
    let listing = api.listing(&id).await?;
    ensure!(listing["state"] == "submitted", "{listing}");
    Ok(())
}

#[tokio::test]
async fn provider_reading_the_audit_chain_is_403() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let answer = api.get("/v1/audit", &api.tokens.provider).await?;
    expect_error(&answer, 403, "forbidden", None)
}

/// POSTs `body` to `/v1/tokens` with `token` and expects it refused as `status` `code`
/// (naming `field`) with nothing applied; the answer, for more checks.
async fn create_token_refused(
    api: &Api,
    token: &str,
    body: &Value,
    status: u16,
    code: &str,
    field: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let before = api.snapshot().await?;
    let answer = api.json(Method::POST, "/v1/tokens", token, body).await?;
    api.expect_rejected(&answer, &before, status, code, field)
        .await?;
    Ok(answer)
}

#[tokio::test]
async fn provider_creating_a_token_is_403_naming_only_admin() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let body = json!({"role": "admin", "label": "escalation"});
    let answer =
        create_token_refused(&api, &api.tokens.provider, &body, 403, "forbidden", None).await?;
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        message.ends_with("it needs one of: admin"),
        "the message should name the admin role alone: {message:?}"
    );
    Ok(())
}

#[tokio::test]
async fn get_of_an_unknown_listing_is_404() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let answer = api
        .get(&format!("/v1/listings/{}", unknown_id()), &api.tokens.buyer)
        .await?;
    expect_error(&answer, 404, "not_found", None)
}

#[tokio::test]
async fn approve_of_an_unknown_listing_is_404_and_writes_nothing() -> anyhow::Result<()> {
    review_unknown_listing("approve", json!({})).await
}

#[tokio::test]
async fn reject_of_an_unknown_listing_is_404_and_writes_nothing() -> anyhow::Result<()> {
    review_unknown_listing("reject", json!({"reason": "incomplete"})).await
}

#[tokio::test]
async fn delist_of_an_unknown_listing_is_404_and_writes_nothing() -> anyhow::Result<()> {
    review_unknown_listing("delist", json!({"reason": "withdrawn"})).await
}

#[tokio::test]
async fn malformed_listing_id_is_404_on_every_listing_route_and_applies_nothing()
-> anyhow::Result<()> {
    let api = Api::start().await?;
    let before = api.snapshot().await?;
    let t = &api.tokens;
    let listing = example_listing("malformed-id");
    let reason = json!({"reason": "test"});
    for id in [
        "nope",
        "sha256:xyz",
        &format!("sha256:{}", "a".repeat(63)),
        &format!("sha256:{}", "AB".repeat(32)),
        &format!("md5:{}", "ab".repeat(16)),
    ] {
        let routes = [
            (Method::GET, format!("/v1/listings/{id}"), &t.buyer, None),
            (
                Method::PUT,
                format!("/v1/listings/{id}"),
                &t.provider,
                Some(&listing),
            ),
            (
                Method::POST,
                format!("/v1/listings/{id}/approve"),
                &t.operator,
                None,
            ),
            (
                Method::POST,
                format!("/v1/listings/{id}/reject"),
                &t.operator,
                Some(&reason),
            ),
            (
                Method::POST,
                format!("/v1/listings/{id}/delist"),
                &t.operator,
                Some(&reason),
            ),
        ];
        for (method, path, token, body) in routes {
            let body = body
                .map(serde_json::to_vec)
                .transpose()?
                .map(|b| ("application/json", b));
            let answer = api.send(method.clone(), &path, Some(token), body).await?;
            expect_error(&answer, 404, "not_found", None)
                .with_context(|| format!("{method} {path}"))?;
        }
    }
    ensure!(
        api.snapshot().await? == before,
        "a malformed id applied something"
    );
    Ok(())
}

#[tokio::test]
async fn approving_twice_is_409_and_leaves_the_listing_unchanged() -> anyhow::Result<()> {
    illegal_transition("listed", "approve").await
}

#[tokio::test]
async fn delisting_a_submitted_listing_is_409_and_leaves_it_unchanged() -> anyhow::Result<()> {
    illegal_transition("submitted", "delist").await
}

#[tokio::test]
async fn rejecting_a_listed_listing_is_409_and_leaves_it_unchanged() -> anyhow::Result<()> {
    illegal_transition("listed", "reject").await
}

#[tokio::test]
async fn reject_without_reason_is_400_naming_reason() -> anyhow::Result<()> {
    review_with_bad_reason("reject", json!({})).await
}

#[tokio::test]
async fn reject_with_empty_reason_is_400_naming_reason() -> anyhow::Result<()> {
    review_with_bad_reason("reject", json!({"reason": ""})).await
}

#[tokio::test]
async fn delist_without_reason_is_400_naming_reason() -> anyhow::Result<()> {
    review_with_bad_reason("delist", json!({})).await
}

#[tokio::test]
async fn delist_with_blank_reason_is_400_naming_reason() -> anyhow::Result<()> {
    review_with_bad_reason("delist", json!({"reason": "  \n"})).await
}

#[tokio::test]
async fn search_with_non_numeric_limit_is_400_naming_limit() -> anyhow::Result<()> {
    search_rejects("limit=abc", "invalid_field", Some("limit")).await?;
    Ok(())
}

#[tokio::test]
async fn search_with_unknown_state_is_400_naming_state() -> anyhow::Result<()> {
    search_rejects("state=bogus", "invalid_field", Some("state")).await?;
    Ok(())
}

#[tokio::test]
async fn search_with_unknown_classification_is_400_naming_classification() -> anyhow::Result<()> {
    search_rejects(
        "classification=secret",
        "invalid_field",
        Some("classification"),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn search_with_unknown_parameter_is_400_naming_it_in_the_message() -> anyhow::Result<()> {
    let body = search_rejects("colour=red", "invalid_query", None).await?;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    ensure!(message.contains("colour"), "{body}");
    Ok(())
}

#[tokio::test]
async fn audit_limit_above_1000_is_clamped_not_refused() -> anyhow::Result<()> {
    let api = Api::start().await?;
    api.submit("audit").await?;
    let chain = api.snapshot().await?.audit;
    let (status, page) = api
        .get("/v1/audit?limit=5000", &api.tokens.regulator)
        .await?;
    ensure!(status == 200, "{status} {page}");
    let items = page["items"].as_array().cloned().unwrap_or_default();
    ensure!(
        !items.is_empty() && items.len() <= 1000 && items == chain,
        "expected the whole chain of {} records, got {page}",
        chain.len()
    );
    Ok(())
}

#[tokio::test]
async fn provider_may_update_only_its_own_listing() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let id = api.submit("owned").await?;
    let other = provider_token_for(&api, "other-provider").await?;
    let before = api.snapshot().await?;
    let listing = api.listing(&id).await?;
    let path = format!("/v1/listings/{id}");

    let mut draft = example_listing("taken over");
    draft["provider"]["id"] = json!("other-provider");
    let answer = api.json(Method::PUT, &path, &other, &draft).await?;
    api.expect_refused(&answer, &before, 403, "forbidden", "update_listing")
        .await?;
    ensure!(api.listing(&id).await? == listing, "the listing changed");

    let (status, body) = api
        .json(
            Method::PUT,
            &path,
            &api.tokens.provider,
            &example_listing("owned v2"),
        )
        .await?;
    ensure!(
        status == 200 && body["version"] == 2 && body["state"] == "submitted",
        "owner's update: {status} {body}"
    );
    Ok(())
}

#[tokio::test]
async fn bound_provider_token_cannot_update_its_listing_into_another_partys_name()
-> anyhow::Result<()> {
    let api = Api::start().await?;
    let token = provider_token_for(&api, "other-provider").await?;
    let mut own = example_listing("bound");
    own["provider"]["id"] = json!("other-provider");
    let id = api.submit_as(&token, &own).await?;
    let before = api.snapshot().await?;
    let listing = api.listing(&id).await?;

    let answer = api
        .json(
            Method::PUT,
            &format!("/v1/listings/{id}"),
            &token,
            &example_listing("bound"),
        )
        .await?;
    api.expect_rejected(&answer, &before, 403, "forbidden", Some("provider.id"))
        .await?;
    ensure!(api.listing(&id).await? == listing, "the listing changed");
    Ok(())
}

#[tokio::test]
async fn revoking_a_config_token_by_its_uppercase_hash_really_revokes_it() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let upper: String = xchg_federation_config::token_hash(&api.tokens.buyer)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let (status, body) = api
        .send(
            Method::DELETE,
            &format!("/v1/tokens/{upper}"),
            Some(&api.tokens.admin),
            None,
        )
        .await?;
    ensure!(status == 204, "revoke: {status} {body}");
    api.caught_up().await?;
    let answer = api.get("/v1/listings", &api.tokens.buyer).await?;
    expect_error(&answer, 401, "unauthorized", None).context("the revoked buyer token still works")
}

#[tokio::test]
async fn unknown_route_is_404_json_error() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let answer = api.get("/v1/no-such-resource", &api.tokens.buyer).await?;
    expect_error(&answer, 404, "not_found", None)
}

#[tokio::test]
async fn wrong_method_on_a_known_route_is_405_json_error() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let before = api.snapshot().await?;
    let answer = api
        .send(
            Method::DELETE,
            "/v1/listings",
            Some(&api.tokens.admin),
            None,
        )
        .await?;
    api.expect_rejected(&answer, &before, 405, "method_not_allowed", None)
        .await
}

/// The example listing as a JSON array of its field values, in the struct's field order: what
/// serde's derived structs also accepted.
fn listing_as_array(suffix: &str) -> Value {
    let listing = example_listing(suffix);
    let order = [
        "title",
        "description",
        "provider",
        "category",
        "product_form",
        "classification",
        "contains_personal_info",
        "delivery_modes",
        "pricing",
        "scenarios",
        "update_frequency",
        "rights",
    ];
    Value::Array(order.iter().map(|k| listing[*k].clone()).collect())
}

#[tokio::test]
async fn a_listing_sent_as_an_array_of_field_values_is_400_and_creates_nothing()
-> anyhow::Result<()> {
    let body = serde_json::to_vec(&listing_as_array("array"))?;
    submit_raw("application/json", body, 400, "invalid_field").await
}

#[tokio::test]
async fn a_nested_struct_sent_as_an_array_is_400_naming_it() -> anyhow::Result<()> {
    submit_invalid(
        |l| l["provider"] = json!(["yuzhou-credit-center", "禹州市信用中心"]),
        "provider",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn an_approval_body_of_an_array_is_400_and_approves_nothing() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let id = api.submit("array-review").await?;
    let before = api.snapshot().await?;
    let answer = api.review(&id, "approve", &json!([null, null])).await?;
    api.expect_rejected(&answer, &before, 400, "invalid_field", None)
        .await?;
    ensure!(api.listing(&id).await?["state"] == "submitted");
    Ok(())
}

#[tokio::test]
async fn an_approval_body_of_null_approves_as_documented() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let id = api.submit("null-review").await?;
    let (status, body) = api.review(&id, "approve", &Value::Null).await?;
    ensure!(
        status == 200 && body["state"] == "listed",
        "{status} {body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_content_type_that_only_starts_like_json_is_415_and_applies_nothing() -> anyhow::Result<()>
{
    let body = serde_json::to_vec(&example_listing("jsonp"))?;
    submit_raw("application/jsonp", body, 415, "unsupported_media_type").await
}

#[tokio::test]
async fn json_with_a_utf8_charset_parameter_is_accepted() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let body = serde_json::to_vec(&example_listing("charset"))?;
    let (status, answer) = api
        .send(
            Method::POST,
            "/v1/listings",
            Some(&api.tokens.provider),
            Some(("Application/JSON; charset=\"UTF-8\"", body)),
        )
        .await?;
    ensure!(status == 201, "{status} {answer}");
    Ok(())
}

#[tokio::test]
async fn update_of_an_unknown_listing_is_404_and_writes_nothing() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let before = api.snapshot().await?;
    let answer = api
        .json(
            Method::PUT,
            &format!("/v1/listings/{}", unknown_id()),
            &api.tokens.provider,
            &example_listing("nobody's"),
        )
        .await?;
    api.expect_rejected(&answer, &before, 404, "not_found", None)
        .await
}

#[tokio::test]
async fn approving_a_listing_just_submitted_through_another_node_finds_it() -> anyhow::Result<()> {
    // The catalog check before proposing must not answer 404 for a listing this node has not
    // applied yet: the submit goes to the leader, the approval to a follower at once.
    let api = Api::start().await?;
    let leader = (api.node + 2) % 3;
    for i in 0..5 {
        let (status, body) = api
            .zone
            .post(
                leader,
                "/v1/listings",
                &api.tokens.provider,
                &example_listing(&format!("fresh {i}")),
            )
            .await?;
        ensure!(status == 201, "submit: {status} {body}");
        let id = body["id"].as_str().context("an id")?;
        let (status, body) = api.review(id, "approve", &json!({})).await?;
        ensure!(status == 200, "approve right after submit: {status} {body}");
    }
    Ok(())
}

#[tokio::test]
async fn audit_from_beyond_any_record_returns_none_instead_of_wrapping() -> anyhow::Result<()> {
    let api = Api::start().await?;
    api.submit("audit-from").await?;
    for from in [
        "9223372036854775808",
        "18446744073709551615",
        "99999999999999999999999",
    ] {
        let (status, page) = api
            .get(&format!("/v1/audit?from={from}"), &api.tokens.regulator)
            .await?;
        ensure!(status == 200, "from={from}: {status} {page}");
        ensure!(
            page["items"].as_array().is_some_and(Vec::is_empty),
            "from={from} returned records: {page}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn audit_with_a_non_numeric_from_or_limit_is_400_naming_it() -> anyhow::Result<()> {
    let api = Api::start().await?;
    for (query, field) in [
        ("from=-1", "from"),
        ("limit=ten", "limit"),
        ("from=1.5", "from"),
    ] {
        let answer = api
            .get(&format!("/v1/audit?{query}"), &api.tokens.regulator)
            .await?;
        expect_error(&answer, 400, "invalid_field", Some(field)).context(query)?;
    }
    Ok(())
}

#[tokio::test]
async fn page_sizes_of_any_whole_number_are_brought_within_range() -> anyhow::Result<()> {
    let api = Api::start().await?;
    for query in ["limit=0", "limit=100000", "limit=18446744073709551616"] {
        for path in ["/v1/listings", "/v1/recognitions", "/v1/audit"] {
            let (status, body) = api
                .get(&format!("{path}?{query}"), &api.tokens.admin)
                .await?;
            ensure!(status == 200, "{path}?{query}: {status} {body}");
        }
    }
    let answer = api
        .get("/v1/listings?cursor=abc", &api.tokens.buyer)
        .await?;
    expect_error(&answer, 400, "invalid_field", Some("cursor"))
}

#[tokio::test]
async fn a_title_of_only_zero_width_characters_is_400_naming_title() -> anyhow::Result<()> {
    submit_invalid(|l| l["title"] = json!("\u{200B}\u{200C}\u{FEFF}"), "title").await?;
    Ok(())
}

#[tokio::test]
async fn a_bidirectional_override_in_the_description_is_400_naming_it() -> anyhow::Result<()> {
    submit_invalid(
        |l| l["description"] = json!("信用核验\u{202E}exe.fdp"),
        "description",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_noncharacter_in_a_scenario_is_400_naming_the_entry() -> anyhow::Result<()> {
    submit_invalid(
        |l| l["scenarios"] = json!(["贷款\u{FDD0}审查"]),
        "scenarios[0]",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_reject_reason_of_only_zero_width_characters_is_400_naming_reason() -> anyhow::Result<()>
{
    review_with_bad_reason("reject", json!({"reason": "\u{200B}\u{2060}"})).await
}

#[tokio::test]
async fn a_delist_reason_with_an_isolate_control_is_400_naming_reason() -> anyhow::Result<()> {
    review_with_bad_reason("delist", json!({"reason": "withdrawn \u{2067}by request"})).await
}

#[tokio::test]
async fn review_notes_with_a_control_or_override_character_are_400_naming_them()
-> anyhow::Result<()> {
    let api = Api::start().await?;
    let id = api.submit("bad-notes").await?;
    let before = api.snapshot().await?;
    let body = json!({"notes": "ok\u{0007}", "compliance_review": "pass\u{202D}"});
    let answer = api.review(&id, "approve", &body).await?;
    api.expect_rejected(
        &answer,
        &before,
        400,
        "invalid_field",
        Some("compliance_review"),
    )
    .await?;
    let fields: Vec<&str> = answer.1["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["field"].as_str())
        .collect();
    ensure!(fields == ["compliance_review", "notes"], "{}", answer.1);
    Ok(())
}

#[tokio::test]
async fn a_token_label_with_a_control_character_is_400_naming_label() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let body = json!({"role": "buyer", "label": "desk\u{001B}[31m 3"});
    create_token_refused(
        &api,
        &api.tokens.admin,
        &body,
        400,
        "invalid_field",
        Some("label"),
    )
    .await
    .map(drop)
}

/// The highest log index the zone's leader has committed: a request that writes nothing
/// leaves it where it was.
async fn committed(api: &Api) -> anyhow::Result<u64> {
    let leader = api.zone.wait_for_leader(api.node, ELECTION).await?;
    let (_, status) = api.zone.get(leader, "/v1/status", None).await?;
    status["commit_index"]
        .as_u64()
        .with_context(|| format!("no commit_index in {status}"))
}

/// Hex SHA-256 of a token: the handle `DELETE /v1/tokens/{hash}` takes.
fn hash_of(token: &str) -> String {
    xchg_federation_config::token_hash(token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The generated layout binds the zone's provider token to the zone's demo party
/// (`provider_party` in layout.json): it submits in that party's name, and a listing naming any
/// other party is 403 blaming `provider.id`, with nothing written.
#[tokio::test]
async fn the_zones_provider_token_submits_only_for_the_party_it_is_bound_to() -> anyhow::Result<()>
{
    let api = Api::start().await?;
    let party = api.zone.zone_party("xuchang/municipal").clone();
    let before = api.snapshot().await?;
    let index = committed(&api).await?;
    let mut foreign = example_listing("in another party's name");
    foreign["provider"] = json!({"id": "yuzhou-credit-center", "name": "禹州市信用中心"});
    let answer = api
        .json(Method::POST, "/v1/listings", &api.tokens.provider, &foreign)
        .await?;
    api.expect_rejected(&answer, &before, 403, "forbidden", Some("provider.id"))
        .await?;
    ensure!(committed(&api).await? == index, "a Raft entry was written");

    let id = api
        .submit_as(
            &api.tokens.provider,
            &xchg_tests::for_party(example_listing("own party"), &party),
        )
        .await?;
    ensure!(
        api.listing(&id).await?["provider"]["id"] == party.id.as_str(),
        "submitted in the bound party's name"
    );
    Ok(())
}

/// A provider token created at run time must name its party: without one it could list in
/// any party's name.
#[tokio::test]
async fn a_provider_token_without_a_party_is_400_naming_party() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let body = json!({"role": "provider", "label": "unbound"});
    create_token_refused(
        &api,
        &api.tokens.admin,
        &body,
        400,
        "invalid_field",
        Some("party"),
    )
    .await
    .map(drop)
}

/// Revoking the zone's last working admin token would leave nobody able to manage the zone:
/// it is 409 `last_admin`, and writes nothing (no audit record, no Raft entry). With a second
/// admin token the first can go, and then the second is the last.
#[tokio::test]
async fn revoking_the_last_admin_token_is_409_last_admin_and_writes_nothing() -> anyhow::Result<()>
{
    let api = Api::start().await?;
    let admin = api.tokens.admin.clone();
    let before = api.snapshot().await?;
    let index = committed(&api).await?;
    let path = format!("/v1/tokens/{}", hash_of(&admin));
    let answer = api.send(Method::DELETE, &path, Some(&admin), None).await?;
    api.expect_rejected(&answer, &before, 409, "last_admin", None)
        .await?;
    ensure!(committed(&api).await? == index, "a Raft entry was written");

    let (status, second) = api
        .json(
            Method::POST,
            "/v1/tokens",
            &admin,
            &json!({"role": "admin", "label": "second admin"}),
        )
        .await?;
    ensure!(status == 201, "create: {status} {second}");
    let second = second["token"].as_str().context("token")?.to_owned();
    api.caught_up().await?;
    let (status, body) = api.send(Method::DELETE, &path, Some(&second), None).await?;
    ensure!(status == 204, "the first admin token goes: {status} {body}");
    api.caught_up().await?;

    let before = api.snapshot().await?;
    let index = committed(&api).await?;
    let own = format!("/v1/tokens/{}", hash_of(&second));
    let answer = api.send(Method::DELETE, &own, Some(&second), None).await?;
    api.expect_rejected(&answer, &before, 409, "last_admin", None)
        .await?;
    ensure!(committed(&api).await? == index, "a Raft entry was written");
    let (status, body) = api.get("/v1/audit?limit=1", &second).await?;
    ensure!(status == 200, "the last admin still works: {status} {body}");
    Ok(())
}

/// Revoking a token already revoked, or one the zone never had, is 404 and writes nothing: no
/// audit record, no Raft entry.
#[tokio::test]
async fn revoking_a_revoked_or_unknown_token_is_404_and_writes_nothing() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let admin = api.tokens.admin.clone();
    let operator = format!("/v1/tokens/{}", hash_of(&api.tokens.operator));
    let (status, body) = api
        .send(Method::DELETE, &operator, Some(&admin), None)
        .await?;
    ensure!(status == 204, "first revocation: {status} {body}");
    api.caught_up().await?;
    for path in [operator, format!("/v1/tokens/{}", "cd".repeat(32))] {
        let before = api.snapshot().await?;
        let index = committed(&api).await?;
        let answer = api.send(Method::DELETE, &path, Some(&admin), None).await?;
        api.expect_rejected(&answer, &before, 404, "not_found", None)
            .await?;
        ensure!(
            committed(&api).await? == index,
            "{path}: a Raft entry was written"
        );
    }
    Ok(())
}

/// A new member's `raft_addr` must be `host:port` with an IP address or a host name: anything
/// else is 400 `invalid_field` blaming it, and the membership is untouched.
#[tokio::test]
async fn a_new_member_whose_raft_addr_is_no_host_port_is_400_naming_it() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let admin = api.tokens.admin.clone();
    let key = xchg_protocol::Keypair::generate().public().to_base64();
    for (bad, says) in [
        ("xc_4.example.cn:7110", "host:port"),
        ("xc-4.example.cn", "host:port"),
        ("fd00::4:7110", "host:port"),
        ("xc-4.example.cn:0", "host:port"),
        ("10.20.0.300:7110", "host:port"),
        ("0.0.0.0:7110", "no one's address"),
    ] {
        let before = api.snapshot().await?;
        let index = committed(&api).await?;
        let body = json!({
            "name": "municipal-4", "raft_addr": bad,
            "api_url": "https://xc-4.example.cn:7109", "public_key": key,
        });
        let answer = api
            .json(Method::POST, "/v1/zone/members", &admin, &body)
            .await?;
        api.expect_rejected(&answer, &before, 400, "invalid_field", Some("raft_addr"))
            .await
            .with_context(|| format!("raft_addr {bad:?}"))?;
        ensure!(
            answer.1["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{bad}: {}",
            answer.1
        );
        ensure!(committed(&api).await? == index, "a Raft entry was written");
    }
    let before = api.snapshot().await?;
    let body = json!({
        "name": "municipal-4", "raft_addr": "xc-4.example.cn:7110",
        "api_url": "https://bad_host:7109", "public_key": key,
    });
    let answer = api
        .json(Method::POST, "/v1/zone/members", &admin, &body)
        .await?;
    api.expect_rejected(&answer, &before, 400, "invalid_field", Some("api_url"))
        .await?;
    Ok(())
}

/// A node to add that does not answer at its `raft_addr` with its own key is not added: `503
/// membership_change_failed` (recorded in the audit chain as a failed change), the voters as
/// they were. Before the zone asked it first, such a node was made a voter at once (openraft
/// counts a new learner as caught up while the log is short), and a few of them cost a zone its
/// majority. Another member answering at that address does not count: only the key given may.
#[tokio::test]
async fn adding_a_member_that_does_not_answer_is_503_and_changes_nothing() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let admin = api.tokens.admin.clone();
    let key = xchg_protocol::Keypair::generate().public().to_base64();
    let members_addr = api.zone.layout.exchanges[0].zones[0].nodes[0]
        .raft_addr
        .to_string();
    for (name, raft_addr) in [
        ("municipal-4", "127.0.0.1:1".to_owned()),
        ("municipal-5", "nothing-here.invalid:7110".to_owned()),
        ("municipal-6", members_addr),
    ] {
        let body = json!({
            "name": name, "raft_addr": raft_addr,
            "api_url": "https://127.0.0.1:7109", "public_key": key,
        });
        let answer = api
            .json(Method::POST, "/v1/zone/members", &admin, &body)
            .await?;
        expect_error(&answer, 503, "membership_change_failed", None)
            .with_context(|| format!("raft_addr {raft_addr}"))?;
        ensure!(
            answer.1["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("did not answer") && m.contains("nothing changed")),
            "{}",
            answer.1
        );
        let (_, status) = api.get("/v1/status", &admin).await?;
        let members = status["members"].as_array().map(Vec::len);
        ensure!(members == Some(3), "the voters as they were: {status}");
    }
    let (_, audit) = api.get("/v1/audit?limit=1000", &admin).await?;
    let items = audit["items"].as_array().cloned().unwrap_or_default();
    let last = items.last().context("audit records")?;
    ensure!(
        last["action"] == "request_membership_change"
            && last["result"]
                .as_str()
                .is_some_and(|r| r.starts_with("failed:")),
        "the failed change is recorded: {last}"
    );
    Ok(())
}
