//! The time limit of one request (`api.request_timeout_ms`): from its head to its answer, its
//! body included. A client that trickles its body is answered `408 request_timeout`; a request
//! whose handler is still at work is answered `504 timeout`, for a write may still be applied.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Body as _, Frame, SizeHint};

use super::AppState;
use super::error::ApiError;

/// A body that holds `guard` until it is dropped: when hyper has written it, or gives it up.
pub struct Guarded<G> {
    inner: Body,
    _guard: G,
}

impl<G> Guarded<G> {
    /// Wraps `inner`.
    pub fn new(inner: Body, guard: G) -> Self {
        Guarded {
            inner,
            _guard: guard,
        }
    }
}

impl<G: Unpin> http_body::Body for Guarded<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that records when it has been read to its end (a body dropped unread is
/// not: its client may still be sending it).
struct Tracked {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl Tracked {
    fn new(inner: Body, read: Arc<AtomicBool>) -> Self {
        // A request without a body has nothing to wait for.
        if inner.is_end_stream() {
            read.store(true, Ordering::Release);
        }
        Tracked { inner, read }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.read.store(true, Ordering::Release);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware bounding each request by the config's `api.request_timeout_ms`.
pub async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = Duration::from_millis(state.config.api.limits.request_timeout_ms);
    let body_read = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| Body::new(Tracked::new(body, body_read.clone())));
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
