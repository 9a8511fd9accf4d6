//! The clients: each scheduled operation sent to its node's API, with when it was invoked,
//! when it completed and what it returned, as the history the checkers read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::scenario::Op;

/// How long a client waits for an answer before it counts the outcome as unknown.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What an operation returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Outcome {
    /// Done: for a submission the listing id, for a read the state (`None`: no such listing).
    Ok(Option<String>),
    /// Refused by the zone with this error code: nothing changed.
    Refused(String),
    /// No answer, a timeout, or `outcome_unknown`: it may or may not have taken effect.
    Unknown,
    /// Not sent: the node is down, or the listing's id is unknown to the client.
    NotSent,
}

/// One operation as the history records it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// The operation.
    pub op: Op,
    /// When it was sent, microseconds after the start.
    pub invoked_us: u64,
    /// When the answer came, microseconds after the start; `None` for an unknown outcome.
    pub completed_us: Option<u64>,
    /// What it returned.
    pub outcome: Outcome,
}

/// The listing body of key `key` in a zone whose provider party is `(id, name)`.
pub fn listing_body(key: u64, party: (&str, &str), large: bool, sensitive: bool) -> Value {
    let mut draft = xchg_protocol::vectors::credit_draft();
    draft.title = format!("{} sim-{key}", draft.title);
    let mut listing = serde_json::to_value(draft).unwrap_or_default();
    listing["provider"] = json!({"id": party.0, "name": party.1});
    if large {
        // Near the description's limit (8000 characters), in three-byte characters.
        listing["description"] = json!("数".repeat(7_900));
    }
    if sensitive {
        listing["classification"] = json!("important");
    }
    listing
}

/// The HTTP client of a run, with the listing ids learnt so far; clones share them.
#[derive(Clone)]
pub struct Clients {
    http: reqwest::Client,
    start: Instant,
    /// Listing id of each key whose submission was acknowledged.
    ids: Arc<Mutex<BTreeMap<u64, String>>>,
}

impl Clients {
    /// Clients whose clock starts now.
    ///
    /// # Errors
    /// If the HTTP client cannot be built.
    pub fn new(start: Instant) -> anyhow::Result<Clients> {
        Ok(Clients {
            http: reqwest::Client::builder().timeout(CLIENT_TIMEOUT).build()?,
            start,
            ids: Arc::default(),
        })
    }

    /// The listing id of each key whose submission was acknowledged.
    pub fn ids(&self) -> BTreeMap<u64, String> {
        self.ids.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Sends `op` to the node at `url` (`None`: down) with `token` and `body`, and records it.
    pub async fn run(
        &self,
        op: Op,
        url: Option<String>,
        token: &str,
        body: Option<Value>,
    ) -> Record {
        let invoked_us = self.now_us();
        let not_sent = |op| Record {
            op,
            invoked_us,
            completed_us: Some(invoked_us),
            outcome: Outcome::NotSent,
        };
        let Some(url) = url else {
            return not_sent(op);
        };
        let key = key_of(&op);
        let id = self.ids.lock().ok().and_then(|m| m.get(&key).cloned());
        let (method, path) = match (&op, &id) {
            (Op::Submit { .. }, _) => (reqwest::Method::POST, "/v1/listings".to_owned()),
            (Op::Approve { .. }, Some(id)) => {
                (reqwest::Method::POST, format!("/v1/listings/{id}/approve"))
            }
            (Op::Delist { .. }, Some(id)) => {
                (reqwest::Method::POST, format!("/v1/listings/{id}/delist"))
            }
            (Op::Read { .. }, Some(id)) => (reqwest::Method::GET, format!("/v1/listings/{id}")),
            (Op::Revoke { .. }, _) => (
                reqwest::Method::POST,
                "/v1/federation/revocations".to_owned(),
            ),
            _ => return not_sent(op),
        };
        let mut request = self
            .http
            .request(method, format!("{url}{path}"))
            .bearer_auth(token);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let answer = request.send().await;
        let (outcome, completed_us) = match answer {
            // Not connected: the request never reached the node.
            Err(e) if e.is_connect() => (Outcome::NotSent, Some(self.now_us())),
            Err(_) => (Outcome::Unknown, None),
            Ok(resp) => {
                let status = resp.status().as_u16();
                // The body, if it arrived whole and parses: the client's time limit can run
                // out between the head and the end of the body on a starved machine.
                let body = resp
                    .bytes()
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                judge(&op, status, body.as_ref(), self.now_us())
            }
        };
        if let (Op::Submit { .. }, Outcome::Ok(Some(id))) = (&op, &outcome)
            && let Ok(mut ids) = self.ids.lock()
        {
            ids.insert(key, id.clone());
        }
        Record {
            op,
            invoked_us,
            completed_us,
            outcome,
        }
    }
}

/// The key an operation names.
pub fn key_of(op: &Op) -> u64 {
    match op {
        Op::Submit { key, .. }
        | Op::Approve { key, .. }
        | Op::Delist { key, .. }
        | Op::Read { key, .. }
        | Op::Revoke { key, .. } => *key,
    }
}

/// What `status` and `body` (`None`: it did not arrive whole, or is not JSON) mean for `op`.
fn judge(op: &Op, status: u16, body: Option<&Value>, completed: u64) -> (Outcome, Option<u64>) {
    let field = |name: &str| body.and_then(|v| v[name].as_str()).map(str::to_owned);
    let code = body
        .and_then(|v| v["error"]["code"].as_str())
        .unwrap_or_default()
        .to_owned();
    match (op, status) {
        (Op::Submit { .. }, 201) => (Outcome::Ok(field("id")), Some(completed)),
        (Op::Read { .. }, 200) => match field("state") {
            Some(state) => (Outcome::Ok(Some(state)), Some(completed)),
            // A read whose answer did not arrive saw nothing (not "no such listing").
            None => (Outcome::NotSent, Some(completed)),
        },
        (Op::Read { .. }, 404) => (Outcome::Ok(None), Some(completed)),
        // A read that failed changed nothing and saw nothing.
        (Op::Read { .. }, _) => (Outcome::NotSent, Some(completed)),
        (Op::Approve { .. } | Op::Delist { .. }, 200) => (Outcome::Ok(None), Some(completed)),
        (Op::Revoke { .. }, 200 | 201) => (Outcome::Ok(None), Some(completed)),
        // No leader, or a timeout: the write may still be applied (503 is counted so too,
        // the weaker claim).
        (_, 503 | 504) => (Outcome::Unknown, None),
        (_, 400..=499) => (Outcome::Refused(code), Some(completed)),
        _ => (Outcome::Unknown, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read() -> Op {
        Op::Read {
            zone: 0,
            node: 0,
            key: 1,
        }
    }

    #[test]
    fn a_read_whose_answer_did_not_arrive_saw_nothing() {
        // A 200 whose body the client's time limit cut (seen in CI: the read was taken for
        // "no such listing", and the history of a listed listing had no linearization).
        assert_eq!(judge(&read(), 200, None, 7), (Outcome::NotSent, Some(7)));
        let listed = json!({"state": "listed"});
        assert_eq!(
            judge(&read(), 200, Some(&listed), 7),
            (Outcome::Ok(Some("listed".into())), Some(7))
        );
        // A 404 says there is no such listing, body or not.
        assert_eq!(judge(&read(), 404, None, 7), (Outcome::Ok(None), Some(7)));
    }

    #[test]
    fn a_write_is_judged_by_its_status_whether_its_body_arrived_or_not() {
        let submit = Op::Submit {
            zone: 0,
            node: 0,
            key: 1,
            large: false,
            sensitive: false,
        };
        assert_eq!(judge(&submit, 201, None, 7), (Outcome::Ok(None), Some(7)));
        let refused = json!({"error": {"code": "invalid_listing"}});
        assert_eq!(
            judge(&submit, 422, Some(&refused), 7),
            (Outcome::Refused("invalid_listing".into()), Some(7))
        );
        assert_eq!(judge(&submit, 504, None, 7), (Outcome::Unknown, None));
    }
}
