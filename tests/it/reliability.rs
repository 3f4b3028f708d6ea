//! Reliability: the gateway served over a real socket on 127.0.0.1 while providers and clients
//! misbehave.
//!
//! 1. Fault injection end to end for the three provider kinds, streaming and not: every fault
//!    ends in a correct answer (from a healthy second candidate when the route has one) or a
//!    clear error (an error chunk then `[DONE]` once a stream has started), within the
//!    deadlines, and leaves no task behind.
//! 2. Misbehaving clients: oversized bodies however they are framed (413), slow bodies (408),
//!    hang-ups mid-stream (the upstream request is cancelled, partial usage is metered, no task
//!    is left behind), thousands of idle connections.
//! 3. Property tests: arbitrary bytes and arbitrary JSON never panic the request parser, the
//!    encoders or the stream decoders.
//!
//! Every wait is bounded by a timeout; nothing sleeps to order events.

use switchboard::server;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use switchboard::catalog::{Deadlines, ModelSpec, Provider, ProviderKind};
use switchboard::client::HttpClient;
use switchboard::cost::{CostMeterLayer, CostRecord};
use switchboard::demo::{DemoConfig, DemoServer, Fault, DEMO_API_KEY};
use switchboard::health::{Health, HealthConfig};
use switchboard::{Catalog, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::support::answers::{self, post, Reply, Shape};
use crate::support::served::{base_url, chat, closed_port, serve, upstream_model};

/// No single exchange may take longer than this: past it the test fails as a hang.
const HANG: Duration = Duration::from_secs(20);
/// Added to every upper bound on elapsed time: debug builds on two shared, busy cores.
const SLACK: Duration = Duration::from_millis(2500);
/// An answer that involves no deadline must come at least this fast.
const FAST: Duration = Duration::from_secs(4);

// The idle gap applies before the first output too: keep it longer than the first-token
// deadline so that one decides for streams that never start.
const FIRST_TOKEN: Duration = Duration::from_millis(600);
const IDLE: Duration = Duration::from_millis(800);
const TOTAL: Duration = Duration::from_millis(2000);
const DEADLINES: Deadlines = Deadlines {
    total: Some(TOTAL),
    first_token: Some(FIRST_TOKEN),
    idle: Some(IDLE),
};

/// The upstream body of the "huge response" fault, and the gateway's limit for it.
const HUGE: usize = 50 * 1024 * 1024;
const MAX_RESPONSE: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// Tasks alive on this test's runtime (servers, connections, stream writers, …).
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits until at most `n` tasks are alive; returns the last count seen.
async fn tasks_settle_to(n: usize, limit: Duration) -> usize {
    let until = Instant::now() + limit;
    loop {
        let now = alive_tasks();
        if now <= n || Instant::now() >= until {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Fault injection, end to end

#[derive(Debug, Clone)]
enum Inject {
    /// The provider's base URL points at a closed port.
    Refused,
    /// The demo provider injects this fault into every request.
    Fault(Fault),
}

/// What the client must get when the faulty provider is the only candidate.
#[derive(Debug, Clone)]
enum Expect {
    /// A complete answer from the faulty provider (the fault does not apply).
    Served,
    /// This HTTP error (all are retryable, so with a healthy second candidate the client gets
    /// that candidate's answer instead). `says` is part of the message.
    Error {
        status: u16,
        kind: &'static str,
        retry_after: Option<&'static str>,
        says: &'static str,
    },
    /// The stream started, then broke: an error chunk then `[DONE]`, with or without a second
    /// candidate (nothing is retried after the commit point).
    Broken { says: &'static str },
}

/// Which deadline, if any, decides the elapsed time.
#[derive(Debug, Clone, Copy)]
enum Timing {
    Fast,
    Deadline(Duration),
}

struct Case {
    inject: Inject,
    stream: bool,
    expect: Expect,
    timing: Timing,
}

fn injects() -> Vec<Inject> {
    let f = Inject::Fault;
    vec![
        Inject::Refused,
        f(Fault::DropBeforeHeaders),
        f(Fault::Status(429, Some(2))),
        f(Fault::Status(429, None)),
        f(Fault::status(500)),
        f(Fault::status(502)),
        f(Fault::status(503)),
        f(Fault::status(529)),
        f(Fault::Garbage),
        f(Fault::Truncated),
        f(Fault::MalformedEvent),
        f(Fault::NoDone),
        f(Fault::Hang),
        f(Fault::SlowFirstByte(Duration::from_secs(30))),
        f(Fault::DropMidStream { after_chunks: 0 }),
        f(Fault::DropMidStream { after_chunks: 5 }),
        f(Fault::StallMidStream { after_chunks: 0 }),
        f(Fault::StallMidStream { after_chunks: 5 }),
        f(Fault::Huge(HUGE)),
    ]
}

fn expect(kind: ProviderKind, inject: &Inject, stream: bool) -> (Expect, Timing) {
    let error = |status, kind, says| Expect::Error {
        status,
        kind,
        retry_after: None,
        says,
    };
    let upstream = |says| error(502, "upstream_error", says);
    let overloaded = error(503, "overloaded_error", "");
    let rate_limited = |retry_after| Expect::Error {
        status: 429,
        kind: "rate_limit_error",
        retry_after,
        says: "",
    };
    let waited = |stream: bool| {
        if stream {
            (
                error(504, "timeout_error", "first-token deadline"),
                Timing::Deadline(FIRST_TOKEN),
            )
        } else {
            (
                error(504, "timeout_error", "total deadline"),
                Timing::Deadline(TOTAL),
            )
        }
    };
    let broken = |says| Expect::Broken { says };
    let fast = |e| (e, Timing::Fast);
    let Inject::Fault(fault) = inject else {
        return fast(upstream("connect"));
    };
    match fault {
        Fault::Status(429, Some(_)) => fast(rate_limited(Some("2"))),
        Fault::Status(429, None) => fast(rate_limited(None)),
        // Gemini's real 502 body says `UNAVAILABLE`, which its codec maps to overloaded.
        Fault::Status(502, _) if kind == ProviderKind::Gemini => fast(overloaded),
        // 529 is Anthropic's; Gemini's body for it says `UNKNOWN`, a server error.
        Fault::Status(529, _) if kind == ProviderKind::Gemini => fast(upstream("")),
        Fault::Status(500 | 502, _) => fast(upstream("")),
        Fault::Status(503 | 529, _) => fast(overloaded),
        Fault::DropBeforeHeaders | Fault::Garbage => fast(upstream("")),
        Fault::Truncated | Fault::NoDone if stream => fast(broken("")),
        Fault::Truncated => fast(upstream("")),
        Fault::NoDone => fast(Expect::Served),
        // The broken event comes second: after Gemini's first event, which carries text.
        Fault::MalformedEvent if stream && kind == ProviderKind::Gemini => fast(broken("")),
        Fault::MalformedEvent => fast(upstream("")),
        Fault::Hang | Fault::SlowFirstByte(_) | Fault::StallMidStream { after_chunks: 0 } => {
            waited(stream)
        }
        Fault::StallMidStream { .. } if stream => (broken("idle deadline"), Timing::Deadline(IDLE)),
        Fault::StallMidStream { .. } => waited(false),
        Fault::DropMidStream { after_chunks: 0 } => fast(upstream("")),
        Fault::DropMidStream { .. } if stream => fast(broken("")),
        Fault::DropMidStream { .. } => fast(upstream("")),
        Fault::Huge(_) => fast(upstream("limit")),
        other => panic!("no expectation for {other:?}"),
    }
}

fn next_kind(kind: ProviderKind) -> ProviderKind {
    match kind {
        ProviderKind::Openai => ProviderKind::Anthropic,
        ProviderKind::Anthropic => ProviderKind::Gemini,
        _ => ProviderKind::Openai,
    }
}

/// Checks one answer against its case; `dual` says whether a healthy second candidate
/// (provider `backup`) followed the faulty one (`p{i}`).
fn check(case: &Case, i: usize, dual: bool, r: &Reply) -> Result<(), String> {
    let shape = r.shape()?;
    let me = format!("p{i}");
    let model = format!("p{i}/{}", if dual { "dual" } else { "solo" });
    let attempts = r.header("x-switchboard-attempts").unwrap_or_default();
    let provider = r.header("x-switchboard-provider").unwrap_or_default();
    let (low, high) = match case.timing {
        Timing::Fast => (Duration::ZERO, FAST),
        Timing::Deadline(d) => (d, d + SLACK),
    };
    if r.elapsed < low || r.elapsed > high {
        return Err(format!(
            "took {:?}, expected between {low:?} and {high:?}",
            r.elapsed
        ));
    }
    let served = |by: &str| -> Result<(), String> {
        let text = shape.text();
        let complete = match &shape {
            Shape::Complete(_) => !case.stream,
            Shape::Streamed { error: None, .. } => case.stream,
            _ => false,
        };
        if r.status != 200 || !complete || !text.contains("You said: hello there") {
            return Err(format!("expected a complete answer from {by}: {shape:?}"));
        }
        if provider != by {
            return Err(format!("served by {provider:?}, expected {by}"));
        }
        Ok(())
    };
    match &case.expect {
        Expect::Served => {
            served(&me)?;
            if attempts != format!("{me}:{model}=ok") {
                return Err(format!("attempts {attempts:?}"));
            }
        }
        Expect::Error { .. } if dual => {
            served("backup")?;
            let (first, second) = attempts.split_once(", ").unwrap_or_default();
            if !first.starts_with(&format!("{me}:{model}=")) || first.ends_with("=ok") {
                return Err(format!("the faulty attempt is not recorded: {attempts:?}"));
            }
            if second != format!("backup:{model}=ok") {
                return Err(format!("attempts {attempts:?}"));
            }
        }
        Expect::Error {
            status,
            kind,
            retry_after,
            says,
        } => {
            let Shape::Failed(v) = &shape else {
                return Err(format!("expected an HTTP error, got {shape:?}"));
            };
            if r.status != *status || v["error"]["type"] != *kind {
                return Err(format!(
                    "expected {status} {kind}, got {} {}",
                    r.status, v["error"]
                ));
            }
            let message = v["error"]["message"].as_str().unwrap_or_default();
            if !message.contains(says) {
                return Err(format!("the message {message:?} does not say {says:?}"));
            }
            if r.header("retry-after") != *retry_after {
                return Err(format!(
                    "retry-after {:?}, expected {retry_after:?}",
                    r.header("retry-after")
                ));
            }
            if !attempts.starts_with(&format!("{me}:{model}=")) {
                return Err(format!("attempts {attempts:?}"));
            }
        }
        Expect::Broken { says } => {
            let Shape::Streamed { error: Some(e), .. } = &shape else {
                return Err(format!(
                    "expected a stream ending in an error chunk: {shape:?}"
                ));
            };
            let message = e["error"]["message"].as_str().unwrap_or_default();
            if !message.contains(says) {
                return Err(format!("the message {message:?} does not say {says:?}"));
            }
            if shape.text().is_empty() {
                return Err("a broken stream that never started".into());
            }
            if provider != me || attempts != format!("{me}:{model}=ok") {
                return Err(format!(
                    "retried after the commit point: {provider:?} {attempts:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Every fault, streaming and not, against a provider of `kind`, alone (`p{i}/solo`) and
/// followed by a healthy provider of another kind (`p{i}/dual`), all at once.
async fn fault_matrix(kind: ProviderKind) {
    let backup_kind = next_kind(kind);
    let backup = DemoServer::start(backup_kind, DemoConfig::default())
        .await
        .unwrap();
    let (_closed, closed_addr) = closed_port();
    let mut cases = Vec::new();
    for inject in injects() {
        for stream in [false, true] {
            let (expect, timing) = expect(kind, &inject, stream);
            cases.push(Case {
                inject: inject.clone(),
                stream,
                expect,
                timing,
            });
        }
    }
    // One demo server per case, with its fault set for every request, so cases can run
    // concurrently. Deadlines only on the faulty providers: the backup is never cut short.
    let mut servers = Vec::new();
    let mut catalog = Catalog::builder().provider(
        Provider::new("backup", backup_kind, &backup.base_url()).with_api_key(DEMO_API_KEY),
    );
    for (i, case) in cases.iter().enumerate() {
        let base = match &case.inject {
            Inject::Refused => base_url(kind, closed_addr),
            Inject::Fault(f) => {
                let s = DemoServer::start(kind, DemoConfig::default().with_words_per_chunk(1))
                    .await
                    .unwrap();
                s.faults().set(f.clone());
                let url = s.base_url();
                servers.push(s);
                url
            }
        };
        let name = format!("p{i}");
        catalog = catalog
            .provider(
                Provider::new(name.as_str(), kind, &base)
                    .with_api_key(DEMO_API_KEY)
                    .with_deadlines(DEADLINES),
            )
            .model(
                ModelSpec::new(format!("{name}/solo"))
                    .max_output(1024)
                    .endpoint(&name, upstream_model(kind), None),
            )
            .model(
                ModelSpec::new(format!("{name}/dual"))
                    .max_output(1024)
                    .endpoint(&name, upstream_model(kind), None)
                    .endpoint("backup", upstream_model(backup_kind), None),
            );
    }
    let gateway = Gateway::builder(catalog.build().unwrap())
        // No idle upstream connections are kept, so every task of a request ends with it.
        .client(
            HttpClient::builder()
                .connect_timeout(Duration::from_secs(2))
                .pool_max_idle_per_host(0)
                .build(),
        )
        .max_response_bytes(MAX_RESPONSE)
        // Every fault must reach its provider: no cool-down.
        .health(Health::new(HealthConfig {
            failure_threshold: u32::MAX,
            ..HealthConfig::default()
        }))
        .build();
    let served = serve(&gateway).await;
    let baseline = alive_tasks();

    let client = answers::client();
    let addr = served.addr;
    let runs = cases.iter().enumerate().flat_map(|(i, case)| {
        let client = &client;
        [false, true].map(move |dual| async move {
            let model = format!("p{i}/{}", if dual { "dual" } else { "solo" });
            let what = format!("{kind:?} {:?} stream={} {model}", case.inject, case.stream);
            match post(client, addr, &chat(&model, case.stream), &[], HANG).await {
                Ok(r) => check(case, i, dual, &r)
                    .err()
                    .map(|e| format!("{what}: {e}")),
                Err(e) => Some(format!("{what}: {e}")),
            }
        })
    });
    let failures: Vec<String> = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} answers were wrong:\n{}",
        failures.len(),
        cases.len() * 2,
        failures.join("\n")
    );

    // Every faulty provider was really asked (no cool-down skipped it).
    for s in &servers {
        assert!(
            s.request_count() >= 2,
            "{s:?} got {} requests",
            s.request_count()
        );
    }

    // No task outlives its request: connections to the faulty providers (hung, stalled,
    // huge) were closed, stream writers stopped.
    drop(client);
    let left = tasks_settle_to(baseline, Duration::from_secs(5)).await;
    assert!(left <= baseline, "{left} tasks alive, {baseline} before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_faults_end_in_an_answer_or_a_clear_error() {
    fault_matrix(ProviderKind::Openai).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_faults_end_in_an_answer_or_a_clear_error() {
    fault_matrix(ProviderKind::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_faults_end_in_an_answer_or_a_clear_error() {
    fault_matrix(ProviderKind::Gemini).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Misbehaving clients

/// A temp file removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(text: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "switchboard-reliability-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&p, text).unwrap();
        Self(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const BODY_LIMIT: usize = 64 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_millis(600);

/// The ready gateway (the ready gateway) over one OpenAI demo provider, with a 64 KiB body
/// limit and a 600 ms body deadline.
async fn ready_gateway(upstream: &DemoServer) -> (server::Running, TempFile) {
    let config = TempFile::new(&format!(
        "[gateway]\nmax_body_bytes = {BODY_LIMIT}\nbody_timeout_ms = {}\n\n\
         [providers.openai]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"{DEMO_API_KEY}\"\n\n\
         [[models]]\nid = \"openai/gpt-4o-mini\"\n",
        BODY_TIMEOUT.as_millis(),
        upstream.base_url()
    ));
    let options =
        server::Options::new(config.0.to_string_lossy().into_owned()).listen("127.0.0.1:0");
    (server::start(&options).await.unwrap(), config)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1.1 response (its head and a `Content-Length` body) from a raw socket.
async fn read_response<R: tokio::io::AsyncRead + Unpin>(
    s: &mut R,
) -> Result<(u16, String), String> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let read = async {
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse::<u16>().ok())
                    .ok_or_else(|| format!("bad status line: {head}"))?;
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let body = &buf[end + 4..buf.len().min(end + 4 + len)];
                let body = String::from_utf8_lossy(body).into_owned();
                return Ok((status, body));
            }
            match s.read(&mut tmp).await {
                Ok(0) => return Err("closed before a response".to_owned()),
                Err(e) => return Err(format!("read failed: {e}")),
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
    };
    tokio::time::timeout(HANG, read)
        .await
        .map_err(|_| "no response (hang)".to_owned())?
}

const HEAD: &str =
    "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n";

fn valid_body() -> Vec<u8> {
    serde_json::to_vec(&chat("openai/gpt-4o-mini", false)).unwrap()
}

/// `data` in HTTP/1.1 chunked framing, `size` bytes per chunk, with the final empty chunk.
fn chunked(data: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / size * 8 + 8);
    for c in data.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// What a misbehaving client sends after its request head. It never closes its side: the
/// connection stays open until the test ends it.
enum Feed {
    Nothing,
    Bytes(Vec<u8>),
    /// One byte per interval.
    Trickle(Vec<u8>, Duration),
}

async fn feed(mut wr: tokio::net::tcp::OwnedWriteHalf, feed: Feed) {
    match feed {
        Feed::Nothing => {}
        // Writes fail once the gateway has answered and closed: that is expected.
        Feed::Bytes(b) => {
            let _ = wr.write_all(&b).await;
        }
        Feed::Trickle(b, every) => {
            for byte in b {
                if wr.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(every).await;
            }
        }
    }
    std::future::pending::<()>().await;
}

/// Sends `head` then `body` (concurrently with reading) on a fresh connection; returns the
/// first response and the time it took.
async fn exchange(addr: SocketAddr, head: String, body: Feed) -> (u16, String, Duration) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let started = Instant::now();
    wr.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(feed(wr, body));
    let answer = read_response(&mut rd).await;
    let elapsed = started.elapsed();
    writer.abort();
    let (status, body) = answer.unwrap_or_else(|e| panic!("{head:?}: {e}"));
    (status, body, elapsed)
}

/// A normal request still gets a complete answer, quickly.
async fn still_serves(addr: SocketAddr) {
    let client = answers::client();
    for stream in [false, true] {
        let r = post(
            &client,
            addr,
            &chat("openai/gpt-4o-mini", stream),
            &[],
            HANG,
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.elapsed < FAST, "took {:?}", r.elapsed);
        assert!(r.shape().unwrap().text().contains("You said: hello there"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413_however_they_are_framed() {
    let upstream = DemoServer::start(ProviderKind::Openai, DemoConfig::default())
        .await
        .unwrap();
    let (g, _config) = ready_gateway(&upstream).await;
    let addr = g.addr();
    let big = 1024 * 1024;
    let mut lying_chunk = format!("{:x}\r\n", 16 * 1024 * 1024).into_bytes();
    lying_chunk.extend(std::iter::repeat_n(b' ', 80 * 1024));
    let cases = vec![
        (
            "honest Content-Length, body never sent",
            format!("{HEAD}content-length: {big}\r\n\r\n"),
            Feed::Nothing,
            413,
        ),
        (
            "honest Content-Length, body sent",
            format!("{HEAD}content-length: {big}\r\n\r\n"),
            Feed::Bytes(vec![b' '; big]),
            413,
        ),
        (
            "Content-Length lying high",
            format!("{HEAD}content-length: 10000000000\r\n\r\n"),
            Feed::Bytes(valid_body()),
            413,
        ),
        (
            "chunked, no Content-Length",
            format!("{HEAD}transfer-encoding: chunked\r\n\r\n"),
            Feed::Bytes(chunked(&vec![b' '; big], 8192)),
            413,
        ),
        (
            "a chunk size lying high, then a stall",
            format!("{HEAD}transfer-encoding: chunked\r\n\r\n"),
            Feed::Bytes(lying_chunk),
            413,
        ),
        // Not oversized as framed: the body is cut at the stated length.
        (
            "Content-Length lying low",
            format!("{HEAD}content-length: 16\r\n\r\n"),
            Feed::Bytes([valid_body(), vec![b' '; big]].concat()),
            400,
        ),
        // No length and not chunked: an HTTP/1.1 request body is empty.
        (
            "no Content-Length, not chunked",
            format!("{HEAD}\r\n"),
            Feed::Bytes(valid_body()),
            400,
        ),
    ];
    let runs = cases
        .into_iter()
        .map(|(what, head, body, want)| async move {
            let (status, text, took) = exchange(addr, head, body).await;
            assert_eq!(status, want, "{what}: {text}");
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e} {text}"));
            assert!(v["error"]["message"].is_string(), "{what}: {text}");
            assert!(took < FAST, "{what}: took {took:?}");
            // The limit decides, not the body deadline.
            if want == 413 {
                assert!(took < BODY_TIMEOUT + SLACK, "{what}: took {took:?}");
            }
        });
    futures_util::future::join_all(runs).await;
    still_serves(g.addr()).await;
    g.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_408_within_the_body_deadline() {
    let upstream = DemoServer::start(ProviderKind::Openai, DemoConfig::default())
        .await
        .unwrap();
    let (g, _config) = ready_gateway(&upstream).await;
    let addr = g.addr();
    let body = valid_body();
    let every = Duration::from_millis(50);
    assert!(every * body.len() as u32 > BODY_TIMEOUT * 4);
    let cases = vec![
        (
            "headers only",
            format!("{HEAD}content-length: {}\r\n\r\n", body.len()),
            Feed::Nothing,
        ),
        (
            "a few bytes, then a stall",
            format!("{HEAD}content-length: {}\r\n\r\n", body.len()),
            Feed::Bytes(body[..20].to_vec()),
        ),
        (
            "a byte every 50 ms",
            format!("{HEAD}content-length: {}\r\n\r\n", body.len()),
            Feed::Trickle(body.clone(), every),
        ),
        (
            "chunked, a byte every 50 ms",
            format!("{HEAD}transfer-encoding: chunked\r\n\r\n"),
            Feed::Trickle(chunked(&body, 16), every),
        ),
    ];
    let runs = cases.into_iter().map(|(what, head, feed)| async move {
        let (status, text, took) = exchange(addr, head, feed).await;
        assert_eq!(status, 408, "{what}: {text}");
        assert!(text.contains("in time"), "{what}: {text}");
        assert!(
            took >= BODY_TIMEOUT && took < BODY_TIMEOUT + SLACK,
            "{what}: took {took:?}"
        );
    });
    futures_util::future::join_all(runs).await;
    still_serves(g.addr()).await;
    g.shutdown(Duration::from_secs(5)).await;
}

/// Sends a streaming request on a raw connection and reads until the first words arrive.
async fn start_stream(addr: SocketAddr, model: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = serde_json::to_vec(&chat(model, true)).unwrap();
    s.write_all(format!("{HEAD}content-length: {}\r\n\r\n", body.len()).as_bytes())
        .await
        .unwrap();
    s.write_all(&body).await.unwrap();
    let mut seen = Vec::new();
    let mut tmp = [0u8; 4096];
    let read = async {
        while find(&seen, b"Hello").is_none() {
            let n = s.read(&mut tmp).await.unwrap();
            assert!(
                n > 0,
                "closed before the first words: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&tmp[..n]);
        }
    };
    tokio::time::timeout(HANG, read)
        .await
        .expect("the first words in time");
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    s
}

/// A client hangs up in the middle of a stream from a provider of `kind` that then stalls
/// with its connection open and no deadline: only the hang-up can end the request.
async fn hang_up_mid_stream(kind: ProviderKind) {
    let upstream = DemoServer::start(kind, DemoConfig::default().with_words_per_chunk(1))
        .await
        .unwrap();
    upstream
        .faults()
        .push(Fault::StallMidStream { after_chunks: 5 });
    let records = Arc::new(Mutex::new(Vec::<CostRecord>::new()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let sink = {
        let records = records.clone();
        move |r: &CostRecord| {
            records.lock().unwrap().push(r.clone());
            let _ = tx.send(());
        }
    };
    let catalog = Catalog::builder()
        .provider(Provider::new("up", kind, &upstream.base_url()).with_api_key(DEMO_API_KEY))
        .model(ModelSpec::new("up/model").max_output(1024).endpoint(
            "up",
            upstream_model(kind),
            None,
        ))
        .build()
        .unwrap();
    let gateway = Gateway::builder(catalog)
        .cost_meter(CostMeterLayer::new().sink(sink))
        .build();
    let served = serve(&gateway).await;
    let baseline = alive_tasks();

    let s = start_stream(served.addr, "up/model").await;
    assert!(records.lock().unwrap().is_empty(), "metered before the end");
    drop(s);

    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a cost record soon after the hang-up");
    {
        let records = records.lock().unwrap();
        assert_eq!(records.len(), 1, "{records:?}");
        let r = &records[0];
        assert!(r.stream && r.usage_estimated, "{r:?}");
        let usage = r.usage.as_ref().expect("estimated usage");
        assert!(
            usage.prompt_tokens > 0 && usage.completion_tokens > 0,
            "{usage:?}"
        );
        assert_eq!(r.provider.as_deref(), Some("up"));
    }
    // The upstream connection was closed (its stalled writer and connection tasks ended),
    // and nothing else of the request lives on.
    let left = tasks_settle_to(baseline, Duration::from_secs(5)).await;
    assert!(left <= baseline, "{left} tasks alive, {baseline} before");
    assert_eq!(upstream.request_count(), 1);
    assert_eq!(records.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_hang_up_cancels_upstream_meters_usage_and_leaves_no_task() {
    hang_up_mid_stream(ProviderKind::Openai).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_hang_up_cancels_upstream_meters_usage_and_leaves_no_task() {
    hang_up_mid_stream(ProviderKind::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_hang_up_cancels_upstream_meters_usage_and_leaves_no_task() {
    hang_up_mid_stream(ProviderKind::Gemini).await;
}

/// The same hang-up against a hand-written OpenAI-compatible upstream that streams one word,
/// then only waits, and tells when the gateway closes its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_up_closes_the_upstream_connection() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let up = listener.local_addr().unwrap();
    let (closed_tx, mut closed_rx) = oneshot::channel::<()>();
    let upstream = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        // The request: head, then a Content-Length body.
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
            let n = s.read(&mut tmp).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&tmp[..n]);
        }
        let chunk = |delta: Value| {
            let c = json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1,
                "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
            format!("data: {c}\n\n")
        };
        let events = chunk(json!({"role": "assistant", "content": ""}))
            + &chunk(json!({"content": "Hello"}));
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        s.write_all(head.as_bytes()).await.unwrap();
        // One chunk of the chunked body, never the final empty one.
        s.write_all(format!("{:x}\r\n{events}\r\n", events.len()).as_bytes())
            .await
            .unwrap();
        // From now on only the gateway closing the connection ends this.
        loop {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = closed_tx.send(());
    });
    let catalog = Catalog::builder()
        .provider(
            Provider::new(
                "up",
                ProviderKind::Openai,
                &base_url(ProviderKind::Openai, up),
            )
            .with_api_key(DEMO_API_KEY),
        )
        .model(ModelSpec::new("up/model").endpoint("up", "m", None))
        .build()
        .unwrap();
    let gateway = Gateway::builder(catalog).build();
    let served = serve(&gateway).await;
    let s = start_stream(served.addr, "up/model").await;
    assert!(
        closed_rx.try_recv().is_err(),
        "the upstream connection is open while the client reads"
    );
    let hung_up = Instant::now();
    drop(s);
    tokio::time::timeout(Duration::from_secs(5), closed_rx)
        .await
        .expect("the gateway closed the upstream connection after the hang-up")
        .unwrap();
    assert!(hung_up.elapsed() < FAST);
    upstream.await.unwrap();
}

/// Waits until at least `n` tasks are alive.
async fn tasks_reach(n: usize, limit: Duration) -> usize {
    let until = Instant::now() + limit;
    loop {
        let now = alive_tasks();
        if now >= n || Instant::now() >= until {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_do_not_block_a_real_request() {
    const IDLE_CONNECTIONS: usize = 2000;
    // Both ends of every connection live in this process.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        limit >= 2 * IDLE_CONNECTIONS as u64 + 1024,
        "RLIMIT_NOFILE is {limit}: raise the hard limit (ulimit -Hn) to run this test"
    );
    let upstream = DemoServer::start(ProviderKind::Openai, DemoConfig::default())
        .await
        .unwrap();
    let (g, _config) = ready_gateway(&upstream).await;
    let addr = g.addr();
    // Warm up first: the server's and the provider connection pool's tasks are running.
    still_serves(addr).await;
    let baseline = alive_tasks();
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for i in 0..IDLE_CONNECTIONS {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 4 == 0 {
            // A request head that is never finished.
            s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n")
                .await
                .unwrap();
        }
        idle.push(s);
    }
    // The gateway accepted every one: a connection task each. (A few tasks of the warm-up
    // may still have been ending when the baseline was taken.)
    let want = baseline + IDLE_CONNECTIONS - 8;
    let open = tasks_reach(want, Duration::from_secs(10)).await;
    assert!(open >= want, "{open} tasks, {baseline} before");

    still_serves(addr).await;

    drop(idle);
    // A few tasks may come and go: pooled connections to the provider, the last client's
    // connection closing.
    let left = tasks_settle_to(baseline + 4, Duration::from_secs(10)).await;
    assert!(
        left <= baseline + 4,
        "{left} tasks alive, {baseline} before"
    );
    g.shutdown(Duration::from_secs(5)).await;
}

mod properties {
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};
    use switchboard::catalog::{Provider, ProviderKind};
    use switchboard::openai::sse::{SseDecoder, SseEvent};
    use switchboard::openai::ChatRequest;
    use switchboard::provider::{DecodeContext, EncodeContext, ProviderCodec};

    /// The built-in codec of a provider kind.
    fn codec(kind: ProviderKind) -> &'static dyn ProviderCodec {
        static PROVIDERS: std::sync::OnceLock<[Provider; 3]> = std::sync::OnceLock::new();
        let [o, a, g] = PROVIDERS.get_or_init(|| {
            [
                ProviderKind::Openai,
                ProviderKind::Anthropic,
                ProviderKind::Gemini,
            ]
            .map(|k| Provider::new(k.as_str(), k, "http://127.0.0.1:1"))
        });
        match kind {
            ProviderKind::Anthropic => a.codec(),
            ProviderKind::Gemini => g.codec(),
            _ => o.codec(),
        }
    }

    const KINDS: [ProviderKind; 3] = [
        ProviderKind::Openai,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
    ];

    /// Field names and values of requests and of the three providers' answers and events, so
    /// arbitrary JSON often has the right shape and reaches deep into the codecs.
    const WORDS: &[&str] = &[
        // requests
        "model",
        "messages",
        "models",
        "route",
        "provider",
        "stream",
        "stream_options",
        "include_usage",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "n",
        "stop",
        "seed",
        "user",
        "metadata",
        "logprobs",
        "top_logprobs",
        "reasoning_effort",
        "reasoning",
        "effort",
        "exclude",
        "response_format",
        "json_schema",
        "schema",
        "strict",
        "json_object",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "role",
        "system",
        "user",
        "assistant",
        "tool",
        "developer",
        "content",
        "name",
        "tool_calls",
        "tool_call_id",
        "type",
        "text",
        "image_url",
        "url",
        "detail",
        "function",
        "arguments",
        "parameters",
        "properties",
        "required",
        "auto",
        "none",
        "required",
        "cache_control",
        "ephemeral",
        "data:image/png;base64,iVBORw0KGgo=",
        "https://example.com/a.png",
        "order",
        "only",
        // OpenAI answers
        "id",
        "object",
        "created",
        "choices",
        "index",
        "delta",
        "message",
        "finish_reason",
        "usage",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "cached_tokens",
        "completion_tokens_details",
        "reasoning_tokens",
        "error",
        "code",
        "refusal",
        "stop",
        "length",
        "tool_calls",
        "content_filter",
        "[DONE]",
        // Anthropic
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "content_block",
        "text_delta",
        "input_json_delta",
        "thinking_delta",
        "signature_delta",
        "partial_json",
        "thinking",
        "signature",
        "redacted_thinking",
        "data",
        "tool_use",
        "input",
        "stop_reason",
        "stop_sequence",
        "end_turn",
        "max_tokens",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "overloaded_error",
        // Gemini
        "candidates",
        "parts",
        "thought",
        "thoughtSignature",
        "functionCall",
        "args",
        "finishReason",
        "STOP",
        "MAX_TOKENS",
        "SAFETY",
        "usageMetadata",
        "promptTokenCount",
        "candidatesTokenCount",
        "totalTokenCount",
        "thoughtsTokenCount",
        "cachedContentTokenCount",
        "modelVersion",
        "responseId",
        "status",
        "details",
        "retryDelay",
        "RESOURCE_EXHAUSTED",
    ];

    fn word() -> impl Strategy<Value = String> {
        prop::sample::select(WORDS).prop_map(str::to_owned)
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            prop_oneof![
                Just(json!(0)),
                Just(json!(-1)),
                Just(json!(u64::MAX)),
                Just(json!(i64::MIN)),
                Just(json!(1e308)),
                Just(json!(0.5)),
                any::<i32>().prop_map(|n| json!(n)),
            ],
            word().prop_map(Value::String),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((word(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    /// A request object: usually valid at the top (a model and messages with roles), with
    /// arbitrary fields and contents.
    fn request_json() -> impl Strategy<Value = Value> {
        let message = (
            prop::sample::select(&["system", "user", "assistant", "tool", "developer", "x"][..]),
            json_value(),
            prop::collection::vec((word(), json_value()), 0..3),
        )
            .prop_map(|(role, content, extra)| {
                let mut m: Map<String, Value> = extra.into_iter().collect();
                m.insert("role".into(), json!(role));
                m.insert("content".into(), content);
                Value::Object(m)
            });
        (
            prop::collection::vec(message, 1..4),
            prop::collection::vec((word(), json_value()), 0..6),
        )
            .prop_map(|(messages, extra)| {
                let mut m: Map<String, Value> = extra.into_iter().collect();
                m.insert("model".into(), json!("m"));
                m.insert("messages".into(), Value::Array(messages));
                Value::Object(m)
            })
    }

    fn dctx() -> DecodeContext {
        DecodeContext {
            model: "p/m".into(),
            provider: "p".into(),
        }
    }

    /// Every codec encodes `req` (errors are fine, panics are not).
    fn encode_everywhere(req: &ChatRequest) {
        let _ = req.parse_messages();
        let _ = req.parse_tools();
        let _ = req.parse_tool_choice();
        let _ = req.parse_response_format();
        let _ = req.to_openai_json("m", true, false);
        for kind in KINDS {
            let p = Provider::new("p", kind, "http://127.0.0.1:1").with_api_key("k");
            let _ = codec(kind).encode(
                req,
                &EncodeContext {
                    provider: &p,
                    upstream_model: "m",
                    max_output: Some(1024),
                },
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn request_parser_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(req) = ChatRequest::from_slice(&bytes) {
                encode_everywhere(&req);
            }
        }

        #[test]
        fn request_parser_and_encoders_survive_arbitrary_json(v in request_json()) {
            let bytes = serde_json::to_vec(&v).unwrap();
            if let Ok(req) = ChatRequest::from_slice(&bytes) {
                encode_everywhere(&req);
            }
            // The same document cut anywhere is a clean error.
            for cut in [1, bytes.len() / 2, bytes.len() - 1] {
                prop_assert!(ChatRequest::from_slice(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn stream_decoders_survive_arbitrary_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..1024),
            mut splits in prop::collection::vec(0usize..1024, 0..6),
        ) {
            splits.sort_unstable();
            for kind in KINDS {
                let mut sse = SseDecoder::new();
                let mut dec = codec(kind).stream_decoder(&dctx());
                let mut out = Vec::new();
                let mut last = 0;
                'feed: for s in splits.iter().map(|s| (*s).min(bytes.len())).chain([bytes.len()]) {
                    sse.push(&bytes[last..s.max(last)]);
                    last = s.max(last);
                    loop {
                        match sse.next_event() {
                            Ok(Some(ev)) => {
                                if dec.event(ev, &mut out).is_err() {
                                    break 'feed;
                                }
                            }
                            Ok(None) => break,
                            Err(_) => break 'feed,
                        }
                    }
                }
                let _ = dec.finish(&mut out);
                let _ = dec.is_done();
            }
        }

        #[test]
        fn stream_decoders_survive_arbitrary_json_events(
            events in prop::collection::vec((prop::option::of(word()), json_value()), 0..16),
        ) {
            for kind in KINDS {
                let mut dec = codec(kind).stream_decoder(&dctx());
                let mut out = Vec::new();
                for (event, data) in &events {
                    let ev = SseEvent { event: event.clone(), data: data.to_string() };
                    if dec.event(ev, &mut out).is_err() {
                        break;
                    }
                }
                let _ = dec.finish(&mut out);
            }
        }

        #[test]
        fn answer_and_error_decoders_survive_arbitrary_bodies(
            v in json_value(),
            bytes in prop::collection::vec(any::<u8>(), 0..256),
            status in 400u16..600,
        ) {
            let json = v.to_string();
            let status = http::StatusCode::from_u16(status).unwrap();
            for kind in KINDS {
                let c = codec(kind);
                for body in [json.as_bytes(), &bytes[..]] {
                    let _ = c.decode(body, &dctx());
                    let e = c.decode_error(status, &http::HeaderMap::new(), body);
                    prop_assert!(e.status().as_u16() >= 400);
                }
            }
        }
    }
}

/// With the default limits a stream event may grow to 16 MiB: the decoder reaches that limit
/// quickly (it used to rescan the whole buffer on every read, minutes in a debug build, with
/// the deadlines starved meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_stream_event_is_a_quick_502_with_default_limits() {
    let upstream = DemoServer::start(ProviderKind::Anthropic, DemoConfig::default())
        .await
        .unwrap();
    upstream.faults().push(Fault::Huge(HUGE));
    let catalog = Catalog::builder()
        .provider(
            Provider::new("up", ProviderKind::Anthropic, &upstream.base_url())
                .with_api_key(DEMO_API_KEY),
        )
        .model(ModelSpec::new("up/model").max_output(1024).endpoint(
            "up",
            upstream_model(ProviderKind::Anthropic),
            None,
        ))
        .build()
        .unwrap();
    let served = serve(&Gateway::builder(catalog).build()).await;
    let r = post(
        &answers::client(),
        served.addr,
        &chat("up/model", true),
        &[],
        HANG,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("size limit"), "{}", r.text());
    assert!(r.elapsed < FAST + SLACK, "took {:?}", r.elapsed);
}
