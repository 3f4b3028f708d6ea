//! The accept loop: connection cap, per-connection watchdog (no request yet, idle keep-alive),
//! HTTP/1.1 and HTTP/2 limits, graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Semaphore};
use tower::Service;

/// Connection limits and timeouts of the gateway's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnLimits {
    /// Open connections at most; a connection over the cap gets a 503 and is closed.
    pub max_connections: usize,
    /// Time a client has to send a whole request head (HTTP/1.1), and to send its first
    /// request on a new connection (any protocol).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and none started for this long is closed.
    pub idle_timeout: Duration,
    /// Bytes of one request head (HTTP/1.1: request line and headers; above it, 431) and of
    /// one header list (HTTP/2).
    pub max_header_bytes: usize,
    /// Header fields in one HTTP/1.1 request head (above it, 431).
    pub max_headers: usize,
    /// Concurrent streams on one HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
    /// Streams an HTTP/2 client may reset before the server closes the connection (the rapid
    /// reset flood).
    pub h2_max_pending_accept_reset_streams: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            h2_max_concurrent_streams: 256,
            h2_max_pending_accept_reset_streams: 20,
        }
    }
}

impl From<&crate::config::ServerSettings> for ConnLimits {
    fn from(s: &crate::config::ServerSettings) -> Self {
        Self {
            max_connections: s.max_connections,
            header_read_timeout: Duration::from_millis(s.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(s.idle_timeout_ms),
            max_header_bytes: s.max_header_bytes,
            max_headers: s.max_headers,
            h2_max_concurrent_streams: s.h2_max_concurrent_streams,
            ..Self::default()
        }
    }
}

/// What the watchdog of one connection reads.
#[derive(Debug, Default)]
struct ConnState {
    started: AtomicU64,
    in_flight: AtomicUsize,
}

const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 129\r\n\r\n\
{\"error\":{\"message\":\"the gateway has too many open connections\",\"type\":\"server_error\",\
\"param\":null,\"code\":\"too_many_connections\"}}";

/// hyper's own limit on a request head's fields (431 above it).
const HYPER_MAX_HEADERS: usize = 100;

/// Serves `app` on `listener` until `stop` fires, then lets open connections finish.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    stop: oneshot::Receiver<()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut http1 = builder.http1();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    // hyper parses a head into an array of 100 slots on the stack unless a limit is set;
    // any other limit costs a heap buffer filled for every request (~1.7 k instructions).
    if limits.max_headers != HYPER_MAX_HEADERS {
        http1.max_headers(limits.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (draining_tx, draining) = watch::channel(false);
    // Connections live in a set owned by this future: aborting it closes them all.
    let mut open = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        while open.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let app = app.clone();
        let limits = limits.clone();
        let draining = draining.clone();
        open.spawn(async move {
            connection(&builder, stream, peer, app, &limits, draining).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = draining_tx.send(true);
    while open.join_next().await.is_some() {}
}

/// Answers a connection over the cap with a 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(OVERLOADED).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn connection(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: &ConnLimits,
    mut draining: watch::Receiver<bool>,
) {
    let state = Arc::new(ConnState::default());
    let svc_state = state.clone();
    let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        svc_state.started.fetch_add(1, Ordering::Relaxed);
        svc_state.in_flight.fetch_add(1, Ordering::Relaxed);
        req.extensions_mut().insert(ConnectInfo(peer));
        let guard = InFlight(svc_state.clone());
        let fut = app.clone().call(req);
        async move {
            let resp = match fut.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(resp.map(|body| Tracked {
                body,
                _guard: guard,
            }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    // The watchdog looks every half of the shorter deadline: a connection that never started a
    // request is closed `header_read_timeout` after it was accepted; one with nothing in
    // flight, `idle_timeout` after it was last seen busy.
    let tick =
        (limits.header_read_timeout.min(limits.idle_timeout) / 2).max(Duration::from_millis(10));
    let accepted = tokio::time::Instant::now();
    let mut last_busy = accepted;
    let mut seen = 0;
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            () = tokio::time::sleep(tick), if !closing => {
                let now = tokio::time::Instant::now();
                let started = state.started.load(Ordering::Relaxed);
                let busy = state.in_flight.load(Ordering::Relaxed) > 0;
                if started != seen || busy {
                    seen = started;
                    last_busy = now;
                }
                let expired = if seen == 0 {
                    now.duration_since(accepted) >= limits.header_read_timeout
                } else {
                    now.duration_since(last_busy) >= limits.idle_timeout
                };
                if expired && !busy {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            changed = draining.changed(), if !closing => {
                if changed.is_err() || *draining.borrow() {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Counts a request as in flight until its response body is dropped.
#[derive(Debug)]
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body carrying its request's [`InFlight`] guard.
#[derive(Debug)]
struct Tracked<B> {
    body: B,
    _guard: InFlight,
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
