//! The time limit of one request (`api.request_timeout_ms`): from its head to its answer, its
//! body included. A client that trickles its body is answered `408 request_timeout`; a request
//! whose handler is still at work is answered `504 timeout`, for a write may still be applied.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::body::{BodyWatch, Watched};
use super::error::ApiError;

/// Records that a request's body was read to its end (a body dropped unread is not: its client
/// may still be sending it).
struct ReadToEnd(Arc<AtomicBool>);

impl BodyWatch for ReadToEnd {
    fn ended(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Middleware bounding each request by the config's `api.request_timeout_ms`.
pub async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Adding a member waits for it to catch up with the whole catalog, which can take minutes:
    // that route has its own bound (`zone::MEMBERSHIP_WAIT`).
    if req.uri().path().starts_with("/v1/zone/members") {
        return next.run(req).await;
    }
    let limit = Duration::from_millis(state.config.api.limits.request_timeout_ms);
    let body_read = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| Body::new(Watched::new(body, ReadToEnd(body_read.clone()))));
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) if !body_read.load(Ordering::Acquire) => {
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the request body did not arrive within {limit:?}"),
            )
            .into_response();
            // The rest of the body may still come; the connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the node did not finish this request within {limit:?}; a write may still be \
                 applied: read it back before retrying"
            ),
        )
        .into_response(),
    }
}
