//! The API's HTTP/1.1 server: at most `api.max_connections` connections, each bounded in time.
//!
//! axum's own `serve` keeps a connection for as long as its client likes: 300 clients that sent
//! half a request were all still connected after 72 s and held 400 files open (issue #12). Here
//! every connection is in one of three phases ([`watch::Phase`]), each with its limit from the
//! config's `[api]`:
//!
//! - waiting for a request's head, from the accept (or from the first byte of a next request):
//!   `header_read_timeout_ms`; a head begun and not finished is answered `408` before closing;
//! - between requests on a kept-alive connection: `idle_timeout_ms`, then closed;
//! - serving a request: `request_timeout_ms` ([`super::deadline`] answers `408` or `504`),
//!   and [`Limits::answer_grace`] more to deliver the answer, then closed.
//!
//! A connection over the cap is answered `503 too_many_connections` and closed at once, while
//! the others are served. Every answer the node writes, including the ones hyper makes by
//! itself for heads it cannot parse, has the JSON error shape.

mod watch;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch as signal};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use xchg_federation_config::HttpLimits;

use super::body::Watched;
use super::error::ApiError;
use super::metrics::Metrics;
use watch::{Expiry, Socket, Watch, WatchedSocket};

/// Most bytes hyper buffers for one connection's request head (and body reads): a head over
/// this is answered `431`. A URI over 64 KiB is `414` below it. Bounds what a connection that
/// sends a huge head costs (hyper's default is 400 KiB).
const MAX_BUFFER: usize = 128 * 1024;

/// How long to wait after a failed accept (out of file descriptors, most likely) before the
/// next: connections are closing meanwhile, and a tight loop would only burn CPU.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The server's limits, from the config's `[api]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time to receive a request's head.
    pub header_read: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle: Duration,
    /// Time from a request's head to its answer.
    pub request: Duration,
    /// After `request`, time to deliver the answer (to a client that reads slowly) before the
    /// connection is closed.
    pub answer_grace: Duration,
}

impl From<HttpLimits> for Limits {
    fn from(l: HttpLimits) -> Self {
        Limits {
            max_connections: usize::try_from(l.max_connections).unwrap_or(usize::MAX),
            header_read: Duration::from_millis(l.header_read_timeout_ms),
            idle: Duration::from_millis(l.idle_timeout_ms),
            request: Duration::from_millis(l.request_timeout_ms),
            answer_grace: Duration::from_millis(l.header_read_timeout_ms),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets every
/// connection finish its request in flight (within its limits) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = signal::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        connections.spawn(accepted_connection(
                            stream,
                            tls.clone(),
                            app.clone(),
                            limits,
                            slot,
                            stopping.clone(),
                            metrics.clone(),
                        ));
                    }
                    Err(_) => {
                        metrics.connection_refused();
                        // A TLS client cannot read a plain answer: it is only closed.
                        if tls.is_none() {
                            refuse(&stream, limits.max_connections);
                        }
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

/// Answers a connection over the cap, without waiting: `503` and close.
fn refuse(stream: &TcpStream, cap: usize) {
    let answer = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        format!("the node serves at most {cap} connections at once; retry shortly"),
    )
    .to_http1();
    let _ = stream.try_write(&answer);
    // Read what the client already sent, so that closing does not reset the connection and
    // discard the answer on its way (best effort).
    let _ = stream.try_read(&mut [0u8; 4096]);
}

/// Serves an accepted connection, after its TLS handshake when the API has TLS. The handshake
/// must finish within the time a request's head has (`header_read`); one that fails or runs
/// out closes the connection (counted as `tls_handshake` in the closed-connection metric).
#[allow(clippy::too_many_arguments)]
async fn accepted_connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    slot: OwnedSemaphorePermit,
    stopping: signal::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let _ = stream.set_nodelay(true);
    // Handlers that limit by client address read it as axum's `ConnectInfo`.
    let peer = stream.peer_addr().ok();
    let Some(tls) = tls else {
        return connection(stream, peer, app, limits, slot, stopping, metrics).await;
    };
    let _open = metrics.connection_opened();
    match tokio::time::timeout(limits.header_read, tls.accept(stream)).await {
        Ok(Ok(stream)) => {
            drop(_open);
            connection(stream, peer, app, limits, slot, stopping, metrics).await;
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, ?peer, "API TLS handshake failed");
            metrics.connection_closed("tls_handshake");
        }
        Err(_) => {
            tracing::debug!(?peer, "API TLS handshake did not finish in time");
            metrics.connection_closed("tls_handshake");
        }
    }
}

/// Serves one connection until it ends, a limit runs out, or the server stops.
async fn connection<S: Socket>(
    stream: S,
    peer: Option<SocketAddr>,
    app: Router,
    limits: Limits,
    _slot: OwnedSemaphorePermit,
    mut stopping: signal::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let _open = metrics.connection_opened();
    let peer = peer.map(axum::extract::ConnectInfo);
    let watch = Arc::new(Watch::new());
    let service = {
        let watch = watch.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            if let Some(peer) = peer {
                req.extensions_mut().insert(peer);
            }
            let app = app.clone();
            let in_flight = watch.request_started();
            async move {
                let response = app
                    .oneshot(req.map(Body::new))
                    .await
                    .unwrap_or_else(|never| match never {});
                // The request stays in flight until hyper has written (and dropped) the body.
                Ok::<_, Infallible>(response.map(|body| Body::new(Watched::new(body, in_flight))))
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder.max_buf_size(MAX_BUFFER).keep_alive(true);
    let io = TokioIo::new(WatchedSocket::new(stream, watch.clone()));
    let mut conn = std::pin::pin!(builder.serve_connection(io, service));
    let mut graceful = false;
    loop {
        let deadline = watch.deadline(&limits);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "API connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                if let Some(expiry) = watch.expired(&limits, tokio::time::Instant::now()) {
                    metrics.connection_closed(expiry.label());
                    if expiry == (Expiry::Head { begun: true }) {
                        // Written by the socket wrapper as `conn`, which owns it, drops it.
                        watch.leave_farewell(
                            ApiError::new(
                                StatusCode::REQUEST_TIMEOUT,
                                "request_timeout",
                                format!(
                                    "the request line and headers did not arrive within {:?}",
                                    limits.header_read
                                ),
                            )
                            .to_http1(),
                        );
                    }
                    return;
                }
            }
            () = watch.changed.notified() => {}
            changed = stopping.changed(), if !graceful => {
                if changed.is_ok() {
                    graceful = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
