//! A body with a watcher: the server keeps a request in flight until hyper has written (and
//! dropped) its answer's body; the request time limit needs to know whether a request's body
//! was read to its end.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use http_body::{Body as _, Frame, SizeHint};

/// What watches a body.
pub trait BodyWatch: Unpin + Send + 'static {
    /// The body has been read to its end (called once, or more; a body with no data at all
    /// ends before it is read).
    fn ended(&mut self) {}
}

/// `inner`, reporting its end to `watch`, and dropping `watch` with itself.
pub struct Watched<W> {
    inner: Body,
    watch: W,
}

impl<W: BodyWatch> Watched<W> {
    /// Wraps `inner`.
    pub fn new(inner: Body, mut watch: W) -> Self {
        if inner.is_end_stream() {
            watch.ended();
        }
        Watched { inner, watch }
    }
}

impl<W: BodyWatch> http_body::Body for Watched<W> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.watch.ended();
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
