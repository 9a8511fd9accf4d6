//! `/metrics` in Prometheus text, and the middleware that counts every request. The metrics
//! themselves live in [`crate::metrics`], which every layer may use.
//!
//! Every label value comes from a fixed set, never from what a client sent: the route label is
//! the router's template (`/v1/listings/{id}`) or `unmatched`, the method one of nine or `other`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::metrics::RaftReading;
pub use crate::metrics::{METHODS, Metrics, OpenConnection, UNMATCHED, method_label};

/// Middleware counting and timing every request by its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // The template (`/v1/listings/{id}`), never the path the client sent.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .observe_request(route, method, response.status().as_u16(), started.elapsed());
    response
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "get_metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition (no token needed)", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 500, description = "The metrics could not be encoded",
            body = super::error::ErrorBody),
    )
)]
pub async fn render(State(state): State<AppState>) -> Response {
    let m = state.raft.metrics().borrow().clone();
    let applied = m.last_applied.map_or(0, |l| l.index);
    state.metrics.set_raft(RaftReading {
        term: m.current_term,
        is_leader: m.current_leader == Some(m.id),
        last_log_index: m.last_log_index.unwrap_or(0),
        applied_index: applied,
        commit_index: state
            .committed
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(applied),
    });
    let text = match state.metrics.encode() {
        Ok(text) => text,
        Err(e) => return super::error::ApiError::internal(e).into_response(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
