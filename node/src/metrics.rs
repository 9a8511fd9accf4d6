//! The node's metrics, one registry every layer may count into: Raft role, term and indices;
//! apply, append and write latency; API requests by route, method and status; gossip verdicts,
//! publishes and catch-up; HTTP connections. The API serves them at `/metrics`
//! (`api::metrics`).
//!
//! Every label value comes from a fixed set, never from what a client or peer sent: a series
//! lives as long as the process, so one label fed by a request would let anyone grow the node's
//! memory and this page without bound (issue #12). Label values are `&'static str` (names
//! compiled into the node, which the type enforces) or route templates of the router.
//!
//! Layer: a leaf every layer may count into; imports nothing of the crate.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// A route template of the router, or [`UNMATCHED`].
    route: String,
    /// One of [`METHODS`] or `other`.
    method: &'static str,
    /// The status the node answered (the node chooses it, not the client).
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The `route` label of a request that matched no route (unknown paths all count here).
pub const UNMATCHED: &str = "unmatched";

/// The `method` label values besides `other`: the methods of RFC 9110 and PATCH.
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// The `method` label of `method`: its name if it is one of [`METHODS`], else `other`
/// (a client may send any token as a method).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    METHODS
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("other")
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram>,
    write_seconds: Histogram,
    apply_batch_seconds: Histogram,
    applied_commands: Counter,
    append_batch_seconds: Histogram,
    appended_entries: Counter,
    term: Gauge,
    is_leader: Gauge,
    last_log_index: Gauge,
    applied_index: Gauge,
    commit_index: Gauge,
    gossip_verdicts: Family<VerdictLabels, Counter>,
    published: Family<OutcomeLabels, Counter>,
    catchup: Family<OutcomeLabels, Counter>,
    connections: Gauge,
    connections_refused: Counter,
    connections_closed: Family<ReasonLabels, Counter>,
}

/// An open API connection, counted until dropped.
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("xchg");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "API requests by route, method and status",
            requests.clone(),
        );
        let request_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "http_request_duration_seconds",
            "API request latency by route",
            request_seconds.clone(),
        );
        let write_seconds = Histogram::new(latency_buckets());
        registry.register(
            "write_duration_seconds",
            "From proposal to applied response, per catalog write",
            write_seconds.clone(),
        );
        let apply_batch_seconds = Histogram::new(latency_buckets());
        registry.register(
            "apply_batch_duration_seconds",
            "Time to apply one batch of committed entries",
            apply_batch_seconds.clone(),
        );
        let applied_commands = Counter::default();
        registry.register(
            "applied_commands",
            "Catalog commands applied (one log entry carries a batch of them)",
            applied_commands.clone(),
        );
        let append_batch_seconds = Histogram::new(latency_buckets());
        registry.register(
            "log_append_duration_seconds",
            "Time to write and fsync one batch of Raft log entries (count = number of fsyncs)",
            append_batch_seconds.clone(),
        );
        let appended_entries = Counter::default();
        registry.register(
            "log_appended_entries",
            "Raft log entries written",
            appended_entries.clone(),
        );
        let term = Gauge::default();
        registry.register("raft_term", "Current Raft term", term.clone());
        let is_leader = Gauge::default();
        registry.register(
            "raft_is_leader",
            "1 if this node leads its zone",
            is_leader.clone(),
        );
        let last_log_index = Gauge::default();
        registry.register(
            "raft_last_log_index",
            "Last log index on this node",
            last_log_index.clone(),
        );
        let applied_index = Gauge::default();
        registry.register(
            "raft_applied_index",
            "Last log index applied to the catalog",
            applied_index.clone(),
        );
        let commit_index = Gauge::default();
        registry.register(
            "raft_commit_index",
            "Highest committed log index known here",
            commit_index.clone(),
        );
        let gossip_verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "gossip_verdicts",
            "Announcements judged (gossip and catch-up), by verdict and reason",
            gossip_verdicts.clone(),
        );
        let published = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "federation_published",
            "Outbox entries signed and published, by outcome of the gossip publish",
            published.clone(),
        );
        let catchup = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "federation_catchup",
            "Catch-up rounds and envelopes fetched, by outcome",
            catchup.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "http_connections",
            "API connections open now",
            connections.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "http_connections_refused",
            "API connections answered 503 and closed because api.max_connections were open",
            connections_refused.clone(),
        );
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "http_connections_closed",
            "API connections the node closed because a time limit ran out, by limit",
            connections_closed.clone(),
        );
        Metrics {
            registry,
            connections,
            connections_refused,
            connections_closed,
            gossip_verdicts,
            published,
            catchup,
            requests,
            request_seconds,
            write_seconds,
            apply_batch_seconds,
            applied_commands,
            append_batch_seconds,
            appended_entries,
            term,
            is_leader,
            last_log_index,
            applied_index,
            commit_index,
        }
    }

    /// Records one applied batch of `n` commands.
    pub fn observe_apply(&self, elapsed: Duration, n: usize) {
        self.apply_batch_seconds.observe(elapsed.as_secs_f64());
        self.applied_commands.inc_by(n as u64);
    }

    /// Records one log append of `n` entries, its fsync included.
    pub fn observe_append(&self, elapsed: Duration, n: usize) {
        self.append_batch_seconds.observe(elapsed.as_secs_f64());
        self.appended_entries.inc_by(n as u64);
    }

    /// Counts and times one API request by its route template (never the path sent).
    pub fn observe_request(
        &self,
        route: String,
        method: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method,
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the Raft gauges from a reading of the node's Raft.
    pub fn set_raft(&self, raft: RaftReading) {
        self.term.set(gauge(raft.term));
        self.is_leader.set(i64::from(raft.is_leader));
        self.last_log_index.set(gauge(raft.last_log_index));
        self.applied_index.set(gauge(raft.applied_index));
        self.commit_index.set(gauge(raft.commit_index));
    }

    /// The Prometheus text exposition of every metric.
    ///
    /// # Errors
    /// If encoding fails.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Counts one judged announcement. Both labels are names compiled into the node (a verdict
    /// and a reason kind, PROTOCOL.md 7.4), never text from the message.
    pub fn gossip_verdict(&self, verdict: &'static str, reason: &'static str) {
        self.gossip_verdicts
            .get_or_create(&VerdictLabels { verdict, reason })
            .inc();
    }

    /// Counts one published outbox entry (`published`, `duplicate`, `failed`).
    pub fn published(&self, outcome: &'static str) {
        self.published
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts catch-up events (`round`, `fetched`, `failed`).
    pub fn catchup(&self, outcome: &'static str, n: u64) {
        self.catchup
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(n);
    }

    /// Counts an accepted API connection as open until the returned value is dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections.inc();
        OpenConnection(self.connections.clone())
    }

    /// Counts a connection refused over the cap.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Counts a connection closed by a time limit (`header_timeout`, `idle_timeout`,
    /// `request_timeout`) or a failed TLS handshake (`tls_handshake`).
    pub fn connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Records one catalog write's latency.
    pub fn observe_write(&self, elapsed: Duration) {
        self.write_seconds.observe(elapsed.as_secs_f64());
    }
}

/// What the Raft gauges show.
#[derive(Debug, Clone, Copy, Default)]
pub struct RaftReading {
    /// The current term.
    pub term: u64,
    /// Whether this node leads.
    pub is_leader: bool,
    /// The last log index.
    pub last_log_index: u64,
    /// The last applied index.
    pub applied_index: u64,
    /// The commit index.
    pub commit_index: u64,
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
