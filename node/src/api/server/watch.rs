//! What one HTTP connection is doing, so that its watchdog knows which time limit applies, and
//! its socket wrapper, which tells the watch what it reads and replaces hyper's bodiless error
//! answers with the JSON error shape.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Limits;
use crate::api::error::ApiError;

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a request's head: since the connection opened (`begun` once a byte came),
    /// or since the first byte of the next request on a kept-alive connection.
    Head {
        /// Whether any byte of the head has arrived.
        begun: bool,
    },
    /// A kept-alive connection between requests.
    Idle,
    /// A request is being served, or its answer written.
    Request,
}

/// Why a watchdog closed a connection: the `reason` label of
/// `xchg_http_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A head did not arrive in time (`begun`: part of it had).
    Head {
        /// Whether part of the head had arrived.
        begun: bool,
    },
    /// A kept-alive connection sent no new request in time.
    Idle,
    /// A request's answer was not delivered within the request limit and its grace.
    Request,
}

impl Expiry {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Expiry::Head { .. } => "header_timeout",
            Expiry::Idle => "idle_timeout",
            Expiry::Request => "request_timeout",
        }
    }
}

#[derive(Debug)]
struct State {
    phase: Phase,
    since: Instant,
    in_flight: usize,
    /// Written just before the socket closes, when set.
    farewell: Option<Vec<u8>>,
}

/// A connection's phase, shared by its socket wrapper, its service and its watchdog.
#[derive(Debug)]
pub struct Watch {
    state: Mutex<State>,
    /// Woken on every phase change, so the watchdog recomputes its deadline.
    pub changed: Notify,
}

impl Watch {
    /// A connection just accepted: waiting for its first head.
    pub fn new() -> Self {
        Watch {
            state: Mutex::new(State {
                phase: Phase::Head { begun: false },
                since: Instant::now(),
                in_flight: 0,
                farewell: None,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, state: &mut State, phase: Phase) {
        state.phase = phase;
        state.since = Instant::now();
        self.changed.notify_one();
    }

    /// Bytes arrived: the head of a next request has begun.
    fn bytes_read(&self) {
        let mut s = self.lock();
        match s.phase {
            Phase::Idle => self.set(&mut s, Phase::Head { begun: true }),
            // A new connection's clock runs from its accept, not from its first byte.
            Phase::Head { begun: false } => s.phase = Phase::Head { begun: true },
            Phase::Head { begun: true } | Phase::Request => {}
        }
    }

    /// A request's head was parsed; it is in flight until the returned guard is dropped (with
    /// its answer's body, once hyper has written it).
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        self.set(&mut s, Phase::Request);
        InFlight(self.clone())
    }

    /// Requests in flight.
    fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Has `answer` written just before the socket closes (the 408 of a head that never
    /// finished: the watchdog decides, the socket wrapper owns the socket).
    pub fn leave_farewell(&self, answer: Vec<u8>) {
        self.lock().farewell = Some(answer);
    }

    /// When the current phase's limit runs out.
    pub fn deadline(&self, limits: &Limits) -> Instant {
        let s = self.lock();
        s.since
            + match s.phase {
                Phase::Head { .. } => limits.header_read,
                Phase::Idle => limits.idle,
                Phase::Request => limits.request + limits.answer_grace,
            }
    }

    /// The limit that has run out at `now`, if any.
    pub fn expired(&self, limits: &Limits, now: Instant) -> Option<Expiry> {
        if now < self.deadline(limits) {
            return None;
        }
        Some(match self.lock().phase {
            Phase::Head { begun } => Expiry::Head { begun },
            Phase::Idle => Expiry::Idle,
            Phase::Request => Expiry::Request,
        })
    }
}

/// A request in flight; dropping it ends it.
#[derive(Debug)]
pub struct InFlight(Arc<Watch>);

/// Carried by the answer's body: the request ends when hyper drops it, written or not.
impl crate::api::body::BodyWatch for InFlight {}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            self.0.set(&mut s, Phase::Idle);
        }
    }
}

/// A connection's byte stream: a TCP socket, or TLS over one.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Writes `bytes` if the socket takes them at once, without waiting (best effort).
    fn write_now(&mut self, bytes: &[u8]);
}

impl Socket for TcpStream {
    fn write_now(&mut self, bytes: &[u8]) {
        let _ = self.try_write(bytes);
    }
}

impl Socket for tokio_rustls::server::TlsStream<TcpStream> {
    fn write_now(&mut self, bytes: &[u8]) {
        /// The TCP socket as a writer that never waits.
        struct Now<'a>(&'a TcpStream);
        impl io::Write for Now<'_> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.try_write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (tcp, tls) = self.get_mut();
        if io::Write::write_all(&mut tls.writer(), bytes).is_err() {
            return;
        }
        while tls.wants_write() {
            if tls.write_tls(&mut Now(tcp)).is_err() {
                return;
            }
        }
    }
}

/// The connection's socket as hyper sees it.
pub struct WatchedSocket<S: Socket> {
    stream: S,
    watch: Arc<Watch>,
    /// Bytes of a replacement answer not yet written.
    pending: Vec<u8>,
}

impl<S: Socket> WatchedSocket<S> {
    /// Wraps an accepted socket.
    pub fn new(stream: S, watch: Arc<Watch>) -> Self {
        WatchedSocket {
            stream,
            watch,
            pending: Vec::new(),
        }
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

/// The status of an answer hyper wrote by itself, if `buf` starts one: hyper answers a head it
/// cannot parse (malformed, a URI over 64 KiB, headers over its buffer) with a status and an
/// empty body, before any router runs. No answer of the router looks like that: every error
/// it gives has a JSON body, so never `content-length: 0`.
pub fn own_error_status(buf: &[u8]) -> Option<StatusCode> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status = StatusCode::from_bytes(rest.get(..3)?).ok()?;
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = buf[..end + 2].to_ascii_lowercase();
    head.windows(21)
        .any(|w| w == b"\r\ncontent-length: 0\r\n")
        .then_some(status)
}

/// The JSON answer that replaces hyper's own answer of `status`.
fn replacement(status: StatusCode) -> Vec<u8> {
    let message = match status {
        StatusCode::URI_TOO_LONG => "the request URI is longer than 65534 bytes",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            "the request line and headers are larger than the node reads"
        }
        _ => "the request line or a header is malformed",
    };
    ApiError::for_status(status, message).to_http1()
}

impl<S: Socket> AsyncRead for WatchedSocket<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.watch.bytes_read();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: Socket> AsyncWrite for WatchedSocket<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        // Outside a request only hyper itself answers; with `is_write_vectored` false it hands
        // over each answer's head in one buffer.
        if this.watch.in_flight() == 0
            && let Some(status) = own_error_status(buf)
        {
            this.pending = replacement(status);
            // Hyper's bytes count as written: they are replaced, not sent.
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl<S: Socket> Drop for WatchedSocket<S> {
    fn drop(&mut self) {
        // Best effort and without waiting: a fresh answer fits an idle socket's send buffer.
        let farewell = self.watch.lock().farewell.take();
        if let Some(bytes) = farewell {
            self.stream.write_now(&bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bodiless_error_answers_are_recognised_and_nothing_else() {
        let own = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 \
                    10:00:00 GMT\r\n\r\n";
        assert_eq!(own_error_status(own), Some(StatusCode::URI_TOO_LONG));
        let own = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(own_error_status(own), Some(StatusCode::BAD_REQUEST));
        for not_own in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n{",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0",
            b"{\"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            b"",
        ] {
            assert_eq!(own_error_status(not_own), None, "{not_own:?}");
        }
    }

    #[test]
    fn the_replacement_is_a_complete_json_answer_that_closes() {
        let bytes = replacement(StatusCode::URI_TOO_LONG);
        let text = String::from_utf8(bytes).expect("UTF-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let value: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(value["error"]["code"], "uri_too_long");
    }
}
