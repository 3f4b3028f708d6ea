//! In-process servers and clients for the whole-stack benchmarks.
//!
//! Shared by `benches/stack.rs`, `benches/load.rs` and the `bench_upstream` / `bench_server` /
//! `bench_client` programs (`benches/bench_*.rs`), so the criterion bench, the load bench and
//! the callgrind script (`scripts/callgrind.sh`) measure exactly the same servers and request
//! bodies.
//!
//! Three HTTP/1.1 services, all served by the same accept loop ([`serve`]) so that only the
//! service differs between targets:
//!
//! - [`upstream`]: a fast OpenAI-compatible provider with canned answers (the cost every target
//!   pays);
//! - [`bare_proxy`]: a hyper reverse proxy that forwards the request bytes and streams the
//!   response back without parsing anything, the physical floor for any gateway;
//! - [`switchboard`]: the whole switchboard stack (edge + default layers) built from a catalog
//!   that points at the upstream.
//!
//! Extending: a new target is one more function returning a hyper service plus a [`Mode`]
//! variant; a new request shape is one more [`Variant`]. Both then show up in the criterion
//! groups, the ratio summary and the callgrind script.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::Incoming;
use hyper::service::{service_fn, Service};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::catalog::{ModelSpec, Provider, ProviderKind};
use crate::edge::ChatCompletions;
use crate::{Catalog, Gateway, GatewayService};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The model every request asks for (`provider/model`, as the catalog knows it).
pub const MODEL: &str = "openai/gpt-4o-mini";
/// The path the upstream answers and every client calls.
pub const PATH: &str = "/v1/chat/completions";
/// Chunks with choices in the canned stream (role preamble, text deltas, finish), before the
/// usage chunk and `[DONE]`.
pub const STREAM_CHUNKS: usize = 20;

// ---------------------------------------------------------------------------------------------
// Request shapes

/// One request shape; each is a criterion group and a phase of the callgrind script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Non-streaming, ~1 KB request body.
    Nonstream1k,
    /// Non-streaming, ~32 KB request body (a long conversation).
    Nonstream32k,
    /// Streaming, ~1 KB request body; the whole stream is read to the end.
    Stream1k,
}

impl Variant {
    /// Every variant, in report order.
    pub const ALL: [Self; 3] = [Self::Nonstream1k, Self::Nonstream32k, Self::Stream1k];

    /// The name used for criterion groups, `--variant` and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Nonstream1k => "nonstream_1k",
            Self::Nonstream32k => "nonstream_32k",
            Self::Stream1k => "stream_1k",
        }
    }

    /// Parses [`Self::name`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }

    /// Whether the client asks for a stream.
    pub const fn is_stream(self) -> bool {
        matches!(self, Self::Stream1k)
    }

    /// The request body (build it once, outside any timed part).
    pub fn body(self) -> Bytes {
        match self {
            Self::Nonstream1k => chat_body(1024, false),
            Self::Nonstream32k => chat_body(32 * 1024, false),
            Self::Stream1k => chat_body(1024, true),
        }
    }
}

/// A chat request of about `target_len` bytes: a system prompt and alternating user /
/// assistant turns of ordinary text. Streams ask for the usage chunk, so every target returns
/// the same events.
pub fn chat_body(target_len: usize, stream: bool) -> Bytes {
    const TEXT: &str = "The quick brown fox jumps over the lazy dog while the gateway routes \
                        the request to the cheapest healthy provider. ";
    let tail = if stream {
        r#"],"max_tokens":256,"temperature":0.7,"stream":true,"stream_options":{"include_usage":true}}"#
    } else {
        r#"],"max_tokens":256,"temperature":0.7}"#
    };
    let mut out = String::with_capacity(target_len + 256);
    out.push_str(r#"{"model":""#);
    out.push_str(MODEL);
    out.push_str(
        r#"","messages":[{"role":"system","content":"You are a concise, helpful assistant."}"#,
    );
    // Turns of at most ~560 bytes until the body is within 64 bytes of `target_len`.
    let mut turn = 0usize;
    loop {
        let remaining = target_len.saturating_sub(out.len() + tail.len());
        if remaining < 64 && turn > 0 {
            break;
        }
        let role = if turn % 2 == 0 { "user" } else { "assistant" };
        let start = out.len();
        let _ = write!(out, r#",{{"role":"{role}","content":"Turn {turn}. "#);
        let room = remaining
            .saturating_sub(out.len() - start + 2)
            .clamp(16, 560);
        out.extend(TEXT.chars().cycle().take(room));
        out.push_str(r#""}"#);
        turn += 1;
    }
    out.push_str(tail);
    Bytes::from(out)
}

// ---------------------------------------------------------------------------------------------
// Servers

/// Which proxy a `bench_server` process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// [`bare_proxy`].
    BareProxy,
    /// [`switchboard`].
    Switchboard,
}

impl Mode {
    /// Both modes, in report order.
    pub const ALL: [Self; 2] = [Self::BareProxy, Self::Switchboard];

    /// `bare-proxy` / `switchboard`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::BareProxy => "bare-proxy",
            Self::Switchboard => "switchboard",
        }
    }

    /// Parses [`Self::name`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Serves this proxy on `listener`, in front of the upstream at `upstream`, forever.
    pub async fn serve(self, listener: TcpListener, upstream: SocketAddr) {
        match self {
            Self::BareProxy => serve(listener, bare_proxy(upstream)).await,
            Self::Switchboard => serve(listener, switchboard(upstream)).await,
        }
    }
}

/// Binds a listener (use port 0 for a free one).
pub async fn bind(addr: SocketAddr) -> TcpListener {
    TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"))
}

/// `127.0.0.1:0`.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The accept loop every server uses: HTTP/1.1 with keep-alive, `TCP_NODELAY`, one task per
/// connection, hyper's default buffer settings.
pub async fn serve<S, B>(listener: TcpListener, service: S)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            // Client resets are normal at the end of a run.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The fast upstream: `POST /v1/chat/completions` answers a canned `chat.completion`, or a
/// canned SSE stream ([`STREAM_CHUNKS`] chunks, a usage chunk, `[DONE]`) when the body
/// contains `"stream":true` (a byte search, no JSON parsing). Anything else is 404.
pub fn upstream() -> impl Service<
    Request<Incoming>,
    Response = Response<Canned>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    let answers = Arc::new(Answers::new());
    service_fn(move |req: Request<Incoming>| {
        let answers = answers.clone();
        async move { Ok::<_, Infallible>(answer(&answers, req).await) }
    })
}

async fn answer(answers: &Answers, req: Request<Incoming>) -> Response<Canned> {
    if req.method() != Method::POST || req.uri().path() != PATH {
        let mut r = Response::new(Canned::full(Bytes::from_static(
            br#"{"error":{"message":"not found","type":"invalid_request_error"}}"#,
        )));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let mut r = Response::new(Canned::full(Bytes::new()));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
    };
    if memchr::memmem::find(&body, br#""stream":true"#).is_some() {
        let mut r = Response::new(Canned::stream(answers.stream.clone()));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    } else {
        let mut r = Response::new(Canned::full(answers.completion.clone()));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    }
}

/// The canned answers, built once per upstream.
#[derive(Debug)]
struct Answers {
    completion: Bytes,
    stream: Arc<[Bytes]>,
}

impl Answers {
    fn new() -> Self {
        const HEAD: &str = r#""id":"chatcmpl-bench","created":1763683200,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_bench""#;
        const WORDS: [&str; 6] = ["Sure", ", here", " is", " a", " short", " answer."];
        let text: String = (0..STREAM_CHUNKS - 2)
            .map(|i| WORDS[i % WORDS.len()])
            .collect();
        let completion = format!(
            r#"{{{HEAD},"object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":212,"completion_tokens":18,"total_tokens":230,"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"service_tier":"default"}}"#
        );
        let chunk = |delta: &str, finish: &str| {
            Bytes::from(format!(
                "data: {{{HEAD},\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
            ))
        };
        let mut stream = Vec::with_capacity(STREAM_CHUNKS + 2);
        stream.push(chunk(
            r#"{"role":"assistant","content":"","refusal":null}"#,
            "null",
        ));
        for i in 0..STREAM_CHUNKS - 2 {
            stream.push(chunk(
                &format!(r#"{{"content":"{}"}}"#, WORDS[i % WORDS.len()]),
                "null",
            ));
        }
        stream.push(chunk("{}", r#""stop""#));
        stream.push(Bytes::from(format!(
            "data: {{{HEAD},\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{{\"prompt_tokens\":212,\"completion_tokens\":18,\"total_tokens\":230}}}}\n\n"
        )));
        stream.push(Bytes::from_static(b"data: [DONE]\n\n"));
        Self {
            completion: Bytes::from(completion),
            stream: stream.into(),
        }
    }
}

/// The upstream's response body: prebuilt frames, handed out one per poll (a stream is sent
/// chunked, one SSE event per frame; a whole answer with `Content-Length`).
#[derive(Debug)]
pub struct Canned {
    frames: Arc<[Bytes]>,
    next: usize,
    exact: bool,
}

impl Canned {
    fn full(b: Bytes) -> Self {
        Self {
            frames: Arc::from([b]),
            next: 0,
            exact: true,
        }
    }

    fn stream(frames: Arc<[Bytes]>) -> Self {
        Self {
            frames,
            next: 0,
            exact: false,
        }
    }
}

impl Body for Canned {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let frame = this.frames.get(this.next).cloned();
        this.next += 1;
        Poll::Ready(frame.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.frames.len()
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            let rest = self.frames.get(self.next..).unwrap_or_default();
            SizeHint::with_exact(rest.iter().map(|b| b.len() as u64).sum())
        } else {
            SizeHint::default()
        }
    }
}

/// The bare reverse proxy: rewrites the URI to the upstream, drops `Host` (the client sets
/// it), forwards the request body as it arrives and returns the upstream's response with its
/// body streamed through. No parsing, no header filtering beyond that: the floor.
///
/// Its pooled client has the same settings as switchboard's `HttpClient` (keep-alive pool,
/// `TCP_NODELAY`, 90 s idle timeout, 64 idle connections per host).
pub fn bare_proxy(
    upstream: SocketAddr,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Either<Incoming, Empty<Bytes>>>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .pool_timer(TokioTimer::new())
        .build(connector);
    let authority: Authority = upstream
        .to_string()
        .parse()
        .expect("a socket address is a valid URI authority");
    service_fn(move |req: Request<Incoming>| {
        let client = client.clone();
        let authority = authority.clone();
        async move { Ok::<_, Infallible>(forward(&client, authority, req).await) }
    })
}

async fn forward(
    client: &Client<HttpConnector, Incoming>,
    authority: Authority,
    req: Request<Incoming>,
) -> Response<Either<Incoming, Empty<Bytes>>> {
    let (mut parts, body) = req.into_parts();
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority);
    uri.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    let Ok(uri) = Uri::from_parts(uri) else {
        return bad_gateway();
    };
    parts.uri = uri;
    parts.headers.remove(HOST);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => resp.map(Either::Left),
        Err(_) => bad_gateway(),
    }
}

fn bad_gateway() -> Response<Either<Incoming, Empty<Bytes>>> {
    let mut r = Response::new(Either::Right(Empty::new()));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}

/// The switchboard stack in front of the upstream: a one-provider, one-model catalog and
/// `Gateway::builder(catalog).build().chat_completions()`, served by hyper through
/// `TowerToHyperService`.
pub fn switchboard(upstream: SocketAddr) -> TowerToHyperService<ChatCompletions<GatewayService>> {
    let catalog = Catalog::builder()
        .provider(
            Provider::new(
                "openai",
                ProviderKind::Openai,
                &format!("http://{upstream}/v1"),
            )
            .with_api_key("k"),
        )
        .model(ModelSpec::new(MODEL))
        .build()
        .expect("the bench catalog is valid");
    TowerToHyperService::new(Gateway::builder(catalog).build().chat_completions())
}

// ---------------------------------------------------------------------------------------------
// Client

/// A keep-alive HTTP/1.1 client (one pooled connection per target when used sequentially).
pub type BenchClient = Client<HttpConnector, Full<Bytes>>;

/// A client with `TCP_NODELAY`, like the servers.
pub fn client() -> BenchClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// `http://{addr}/v1/chat/completions`.
pub fn chat_uri(addr: SocketAddr) -> Uri {
    format!("http://{addr}{PATH}")
        .parse()
        .expect("a socket address makes a valid URI")
}

/// One chat request (cheap: the URI and body are reference-counted). Build it outside the
/// timed part.
pub fn chat_request(uri: &Uri, body: &Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri.clone();
    let h = req.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer k"));
    req
}

/// Sends `req` and reads the response body to the end, frame by frame, without keeping it.
/// Returns the number of body bytes. Panics on a non-200 answer: a bench that measures error
/// paths by accident is worse than one that stops.
pub async fn round_trip(client: &BenchClient, req: Request<Full<Bytes>>) -> usize {
    let resp = client
        .request(req)
        .await
        .unwrap_or_else(|e| panic!("request failed: {e}"));
    let status = resp.status();
    let mut body = resp.into_body();
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap_or_else(|e| panic!("response body failed: {e}"));
        if let Some(data) = frame.data_ref() {
            n += data.len();
        }
    }
    assert_eq!(status, StatusCode::OK, "a bench request failed");
    n
}

/// Sends `req` and returns the status and the whole body (for checks, not for timing).
pub async fn fetch(client: &BenchClient, req: Request<Full<Bytes>>) -> (StatusCode, Bytes) {
    let resp = client
        .request(req)
        .await
        .unwrap_or_else(|e| panic!("request failed: {e}"));
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("response body failed: {e}"))
        .to_bytes();
    (status, body)
}

/// Checks that `addr` answers `variant` correctly: status 200 and a complete answer (a
/// `chat.completion`, or a stream of [`STREAM_CHUNKS`] chunks + usage ending in `[DONE]`).
/// Returns the response body size. Run it once per target before measuring.
pub async fn check(client: &BenchClient, addr: SocketAddr, variant: Variant) -> usize {
    let (status, body) = fetch(client, chat_request(&chat_uri(addr), &variant.body())).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::OK, "{addr} {}: {text}", variant.name());
    if variant.is_stream() {
        let events = text.matches("data: ").count();
        assert_eq!(
            events,
            STREAM_CHUNKS + 2,
            "{addr} {}: wrong number of events: {text}",
            variant.name()
        );
        assert!(
            text.ends_with("data: [DONE]\n\n") && text.contains(r#""usage":"#),
            "{addr} {}: incomplete stream: {text}",
            variant.name()
        );
    } else {
        assert!(
            text.contains(r#""object":"chat.completion""#) && text.contains("Sure, here is"),
            "{addr} {}: not a completion: {text}",
            variant.name()
        );
    }
    body.len()
}

// ---------------------------------------------------------------------------------------------
// Process helpers for the bench_* programs

/// One keep-alive HTTP/1.1 connection to `addr` (no Nagle), its driver spawned on the current
/// runtime: what the load benches' clients send on.
///
/// # Errors
/// The connection or the handshake failed (the message names `addr`).
pub async fn connect(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake with {addr} failed: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// A chat request in origin form ([`PATH`]), as a client on a connection sends it.
pub fn origin_request(host: &HeaderValue, body: &Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = Uri::from_static(PATH);
    let h = req.headers_mut();
    h.insert(HOST, host.clone());
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer k"));
    req
}

/// `addr` as a `Host` header value.
pub fn host_header(addr: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&addr.to_string()).unwrap_or_else(|_| HeaderValue::from_static("x"))
}

/// Starts the bare proxy and switchboard in front of the upstream at `upstream`, on the
/// current runtime: `[("bare_proxy", addr), ("switchboard", addr)]`.
pub async fn start_proxies(upstream: SocketAddr) -> [(&'static str, SocketAddr); 2] {
    let mut out = [("bare_proxy", upstream), ("switchboard", upstream)];
    for (slot, mode) in out.iter_mut().zip([Mode::BareProxy, Mode::Switchboard]) {
        let l = bind(loopback()).await;
        slot.1 = l.local_addr().expect("a bound listener has an address");
        tokio::spawn(mode.serve(l, upstream));
    }
    out
}

/// For the `bench_*` programs, which are bench targets (`harness = false`) so that they can use
/// this module: `cargo bench` and `cargo test --benches` start every bench target, with their
/// own arguments (`--bench`, a filter, criterion's options) or none. A program goes on only
/// when one of its `own` options is on the command line; otherwise it says what it is and
/// exits at once (successfully), instead of serving forever or failing the run.
pub fn exit_unless_given(name: &str, own: &[&str], usage: &str) {
    let given = std::env::args().skip(1).any(|a| {
        own.iter()
            .any(|o| a == *o || a.strip_prefix(o).is_some_and(|r| r.starts_with('=')))
    });
    if !given {
        println!(
            "{name}: a helper program of scripts/callgrind.sh, not a benchmark; nothing to do \
             without its options ({usage})"
        );
        std::process::exit(0);
    }
}

/// The value after `--name` on the command line, if any.
pub fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == name {
            return args.next();
        }
        if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_owned());
        }
    }
    None
}

/// Parses `--name` with `parse`, or exits with a usage message.
pub fn arg_or<T>(name: &str, default: T, parse: impl Fn(&str) -> Option<T>, usage: &str) -> T {
    match arg(name) {
        None => default,
        Some(v) => parse(&v).unwrap_or_else(|| {
            eprintln!("bad value for {name}: {v}\n{usage}");
            std::process::exit(2)
        }),
    }
}

/// `http://host:port[/]`, `host:port` → a socket address (resolving `localhost`).
pub fn parse_addr(s: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs as _;
    let s = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    s.to_socket_addrs().ok()?.next()
}

/// A runtime for a bench process: `workers == 0` is a current-thread runtime (the most
/// repeatable under callgrind), otherwise a multi-thread one with that many workers.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    let mut b = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    b.enable_all().build().expect("the runtime starts")
}

/// Prints the bound address as the first line of stdout (scripts wait for it).
pub fn announce(listener: &TcpListener) -> SocketAddr {
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    println!("{addr}");
    addr
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM can be handled");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
