//! The hyper server under every demo provider: accept loop, request log, faults, and the
//! response body (whole, or written by a small task for streams and faults).

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};

use super::wire::{Ctx, PromptCache, Reply};
use super::{
    anthropic, azure, bedrock, gemini, openai, vertex, DemoConfig, Fault, Faults, RecordedRequest,
};
use crate::catalog::ProviderKind;

/// Requests larger than this get the provider's 413.
const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// Replaces the answer text for [`Fault::Huge`]; padded to the asked size on the way out.
pub(super) const HUGE_MARKER: &str = "SBDEMOHUGEPADDING";

/// How long a cut connection waits so the bytes already handed to hyper reach the client.
const FLUSH_GRACE: Duration = Duration::from_millis(25);

/// Padding for [`Fault::Huge`].
static PAD: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// The response body type.
pub(super) type DemoBody = BoxBody<Bytes, io::Error>;

/// State shared by a server's connections.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) kind: ProviderKind,
    pub(super) config: DemoConfig,
    pub(super) faults: Faults,
    log: Mutex<VecDeque<RecordedRequest>>,
    notify: Notify,
    received: AtomicU64,
    /// Anthropic prompt-cache prefixes seen so far.
    prompt_cache: PromptCache,
    /// Vertex AI access tokens issued.
    pub(super) tokens: vertex::Tokens,
    shutdown: watch::Receiver<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn record(&self, r: RecordedRequest) -> u64 {
        {
            let mut log = lock(&self.log);
            log.push_back(r);
            while log.len() > self.config.log_limit {
                log.pop_front();
            }
        }
        let n = self.received.fetch_add(1, Ordering::AcqRel) + 1;
        self.notify.notify_waiters();
        n
    }

    pub(super) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.log).iter().cloned().collect()
    }

    pub(super) fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.log).back().cloned()
    }

    pub(super) fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    pub(super) fn request_count(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }

    pub(super) async fn wait_for_requests(&self, n: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.request_count() >= n {
                return;
            }
            notified.await;
        }
    }
}

/// Binds 127.0.0.1:0 and spawns the accept loop.
pub(super) async fn start(
    kind: ProviderKind,
    config: DemoConfig,
) -> io::Result<(
    SocketAddr,
    Arc<Shared>,
    watch::Sender<()>,
    tokio::task::JoinHandle<()>,
)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = watch::channel(());
    let shared = Arc::new(Shared {
        kind,
        config,
        faults: Faults::default(),
        log: Mutex::new(VecDeque::new()),
        notify: Notify::new(),
        received: AtomicU64::new(0),
        prompt_cache: PromptCache::default(),
        tokens: vertex::Tokens::default(),
        shutdown: rx.clone(),
    });
    let task = tokio::spawn(accept_loop(listener, shared.clone(), rx));
    Ok((addr, shared, tx, task))
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors or similar: back off a little instead of spinning.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(shared.clone(), req));
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> io::Result<Response<DemoBody>> {
    let (parts, body) = req.into_parts();
    let (raw, too_large) = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(c) => (c.to_bytes(), false),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => (Bytes::new(), true),
        Err(_) => return Err(io::Error::other("demo: could not read the request body")),
    };
    let json = serde_json::from_slice::<Value>(&raw).ok();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let seq = shared.record(RecordedRequest {
        method: parts.method.clone(),
        path: path_and_query,
        version: parts.version,
        headers: parts.headers.clone(),
        body: json.clone().unwrap_or(Value::Null),
        raw_body: raw.clone(),
    });

    // Vertex AI's token endpoints: never faulted (tests fault the model endpoints).
    if shared.kind == ProviderKind::Vertex
        && matches!(parts.uri.path(), vertex::TOKEN_PATH | vertex::METADATA_PATH)
    {
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let reply = vertex::token_endpoint(
            &shared.tokens,
            shared.config.token_lifetime,
            &parts.method,
            parts.uri.path(),
            &parts.headers,
            &authority,
            &raw,
        );
        return Ok(respond(reply, None, &shared));
    }
    let fault = shared.faults.take();
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    let reply = match &fault {
        Some(Fault::Hang) => {
            let mut s = shared.shutdown.clone();
            let _ = s.changed().await;
            return Err(io::Error::other("demo: shutting down"));
        }
        Some(Fault::DropBeforeHeaders) => {
            return Err(io::Error::other(
                "demo fault: connection dropped before headers",
            ))
        }
        Some(Fault::Garbage) => return Ok(garbage()),
        Some(Fault::Status(code, retry)) => status_reply(shared.kind, *code, *retry, seq),
        _ if too_large => status_reply(shared.kind, 413, None, seq),
        _ => {
            let ctx = Ctx {
                config: &shared.config,
                prompt_cache: &shared.prompt_cache,
                method: &parts.method,
                path: parts.uri.path(),
                query: parts.uri.query(),
                headers: &parts.headers,
                body: json.as_ref(),
                seq,
                text_override: matches!(fault, Some(Fault::Huge(_))).then_some(HUGE_MARKER),
            };
            match shared.kind {
                ProviderKind::Openai => openai::handle(&ctx),
                ProviderKind::Anthropic => anthropic::handle(&ctx),
                ProviderKind::Gemini => gemini::handle(&ctx),
                ProviderKind::Azure => azure::handle(&ctx),
                ProviderKind::Vertex => vertex::handle(&ctx, &shared.tokens),
                ProviderKind::Bedrock => {
                    let authority = parts
                        .uri
                        .authority()
                        .map_or_else(String::new, |a| a.as_str().to_owned());
                    bedrock::handle(&ctx, &raw, &authority)
                }
            }
        }
    };
    Ok(respond(reply, fault.as_ref(), &shared))
}

/// The provider's real error answer for `status`.
fn status_reply(kind: ProviderKind, status: u16, retry_after: Option<u64>, seq: u64) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match kind {
        ProviderKind::Openai => openai::status_error(status, retry_after, seq),
        ProviderKind::Anthropic => anthropic::status_error(status, retry_after, seq),
        ProviderKind::Gemini | ProviderKind::Vertex => {
            gemini::status_error(status, retry_after, seq)
        }
        ProviderKind::Azure => openai::status_error(status, retry_after, seq),
        ProviderKind::Bedrock => bedrock::status_error(status, retry_after),
    }
}

fn garbage() -> Response<DemoBody> {
    let mut r = Response::new(full(Bytes::from_static(
        b"<html><body><h1>200 OK</h1>This demo answer is deliberately not JSON.</body></html>",
    )));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn full(b: Bytes) -> DemoBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

enum Piece {
    Data(Bytes),
    Pad(usize),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Clean,
    Drop,
    Stall,
}

struct BodyPlan {
    pieces: Vec<Piece>,
    first_delay: Duration,
    gap: Duration,
    end: End,
}

/// Turns a reply into a response, shaped by the fault.
fn respond(reply: Reply, fault: Option<&Fault>, shared: &Shared) -> Response<DemoBody> {
    let (status, content_type, headers, end_frames, frames, malformed, stream) = match reply {
        Reply::Json {
            status,
            headers,
            body,
        } => (
            status,
            "application/json",
            headers,
            0,
            vec![Bytes::from(body.to_string())],
            None,
            false,
        ),
        Reply::Stream(p) => (
            StatusCode::OK,
            p.content_type,
            p.headers,
            p.end_frames.min(p.frames.len()),
            p.frames,
            Some(p.malformed),
            true,
        ),
    };
    let gap = if stream {
        shared.config.chunk_delay
    } else {
        Duration::ZERO
    };
    let plan = shape(frames, end_frames, malformed, stream, fault, gap);

    let mut builder = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type);
    if stream {
        builder = builder.header("cache-control", "no-cache");
    }
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            builder = builder.header(n, v);
        }
    }
    // Without pauses or faults the whole body goes out at once (no writer task).
    let simple = plan.first_delay.is_zero()
        && (plan.gap.is_zero() || plan.pieces.len() <= 1)
        && plan.end == End::Clean
        && plan.pieces.iter().all(|p| matches!(p, Piece::Data(_)));
    let body = if simple {
        let mut pieces = plan.pieces.into_iter().filter_map(|p| match p {
            Piece::Data(b) => Some(b),
            Piece::Pad(_) => None,
        });
        match (pieces.next(), pieces.next()) {
            (None, _) => full(Bytes::new()),
            (Some(one), None) => full(one),
            (Some(a), Some(b)) => {
                let mut all = BytesMut::from(&a[..]);
                all.extend_from_slice(&b);
                for p in pieces {
                    all.extend_from_slice(&p);
                }
                full(all.freeze())
            }
        }
    } else {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(write_body(plan, tx, shared.shutdown.clone()));
        ChannelBody { rx }.boxed()
    };
    builder.body(body).unwrap_or_else(|_| {
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

fn half(b: &Bytes) -> Bytes {
    b.slice(..b.len() / 2)
}

fn shape(
    mut frames: Vec<Bytes>,
    end_frames: usize,
    malformed: Option<Bytes>,
    stream: bool,
    fault: Option<&Fault>,
    gap: Duration,
) -> BodyPlan {
    let mut plan = BodyPlan {
        pieces: Vec::new(),
        first_delay: Duration::ZERO,
        gap,
        end: End::Clean,
    };
    let content = frames.len() - end_frames;
    let data = |fs: &[Bytes]| fs.iter().cloned().map(Piece::Data).collect::<Vec<_>>();
    match fault {
        Some(Fault::Truncated) | Some(Fault::MalformedEvent) if !stream => {
            plan.pieces = frames
                .first()
                .map(half)
                .map(Piece::Data)
                .into_iter()
                .collect();
        }
        Some(Fault::Truncated) => {
            let keep = frames.len() / 2;
            plan.pieces = data(&frames[..keep]);
            if let Some(f) = frames.get(keep) {
                plan.pieces.push(Piece::Data(half(f)));
            }
        }
        Some(
            f @ (Fault::DropMidStream { after_chunks } | Fault::StallMidStream { after_chunks }),
        ) => {
            plan.end = if matches!(f, Fault::DropMidStream { .. }) {
                End::Drop
            } else {
                End::Stall
            };
            plan.pieces = if stream {
                data(&frames[..(*after_chunks).min(content)])
            } else {
                frames
                    .first()
                    .map(half)
                    .map(Piece::Data)
                    .into_iter()
                    .collect()
            };
        }
        Some(Fault::NoDone) if stream => plan.pieces = data(&frames[..content]),
        Some(Fault::MalformedEvent) => {
            if let Some(m) = malformed {
                frames.insert(1.min(frames.len()), m);
            }
            plan.pieces = data(&frames);
        }
        Some(Fault::Huge(n)) => {
            let marker = HUGE_MARKER.as_bytes();
            let others: usize = frames.iter().map(Bytes::len).sum::<usize>()
                - marker.len() * frames.iter().filter(|f| find(f, marker).is_some()).count();
            let mut pad = Some(n.saturating_sub(others));
            for f in frames {
                match find(&f, marker) {
                    Some(at) => {
                        plan.pieces.push(Piece::Data(f.slice(..at)));
                        if let Some(k) = pad.take() {
                            plan.pieces.push(Piece::Pad(k));
                        }
                        plan.pieces.push(Piece::Data(f.slice(at + marker.len()..)));
                    }
                    None => plan.pieces.push(Piece::Data(f)),
                }
            }
        }
        Some(Fault::SlowFirstByte(d)) => {
            plan.first_delay = *d;
            plan.pieces = data(&frames);
        }
        _ => plan.pieces = data(&frames),
    }
    plan
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Writes a planned body into the channel, with the configured pauses.
async fn write_body(
    plan: BodyPlan,
    tx: mpsc::Sender<io::Result<Bytes>>,
    mut shutdown: watch::Receiver<()>,
) {
    for (i, piece) in plan.pieces.into_iter().enumerate() {
        let wait = if i == 0 { plan.first_delay } else { plan.gap };
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = tx.closed() => return,
                _ = shutdown.changed() => return,
            }
        }
        match piece {
            Piece::Data(b) => {
                if !b.is_empty() && tx.send(Ok(b)).await.is_err() {
                    return;
                }
            }
            Piece::Pad(mut left) => {
                while left > 0 {
                    let k = left.min(PAD.len());
                    if tx.send(Ok(Bytes::from_static(&PAD[..k]))).await.is_err() {
                        return;
                    }
                    left -= k;
                }
            }
        }
    }
    match plan.end {
        End::Clean => {}
        End::Drop => {
            // Let hyper flush what it already took before the connection is cut.
            let Ok(permit) = tx.reserve().await else {
                return;
            };
            tokio::time::sleep(FLUSH_GRACE).await;
            permit.send(Err(io::Error::other(
                "demo fault: connection cut mid-stream",
            )));
        }
        End::Stall => {
            tokio::select! {
                _ = tx.closed() => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// A body fed by [`write_body`].
struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}
