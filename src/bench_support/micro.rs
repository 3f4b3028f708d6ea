//! The harness and fixtures of the per-layer micro-benchmarks (`benches/layers.rs`,
//! `benches/cache.rs`, `benches/codecs.rs`).
//!
//! Every case is an [`Arm`]: a `setup` that builds one input outside the timed part and a
//! `run` that consumes it (the timed part, awaited on a current-thread runtime). A case is
//! measured twice:
//!
//! 1. by criterion (`iter_batched` with [`BatchSize::SmallInput`], `b.to_async(&rt)`), each
//!    function of a group on its own stretch of time;
//! 2. by the *interleaved summary* printed at the end (stderr): rounds of one batch of the
//!    baseline arm and one batch of the case, back to back, alternating which goes first; the
//!    table gives the median time per call of each, the median of the per-round differences
//!    ("added") and of the per-round ratios. Pairing batches a millisecond apart makes the
//!    differences survive the slow drifts of a shared machine. **Quote the summary.**
//!
//! A layer's baseline is the identity service alone ([`identity`]: a `service_fn` handing back
//! the response prebuilt in `setup`, carried on the request as a [`Canned`] extension), so
//! "added" is the layer's own cost per request. Outputs are dropped after the timed part.
//!
//! Knobs: `SB_BENCH_SUMMARY=0` (criterion only), `SB_BENCH_ROUNDS` (default 30),
//! `SB_BENCH_BATCH_US` (target time of one batch, default 1000). A criterion filter
//! (`cargo bench --features bench-support --bench layers -- fallback`) also limits the summary
//! (substring match on `group/case`).

// The harness's types hold closures, futures and criterion's state: nothing to print.
#![allow(missing_debug_implementations)]

use std::fmt::Write as _;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput};
use futures_util::StreamExt;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method};
use tokio::runtime::Runtime;
use tokio::time::Instant;

use crate::catalog::{ModelSpec, Pricing, Provider, ProviderKind};
use crate::openai::sse::SseDecoder;
use crate::openai::{ChatCompletion, ChatCompletionChunk, ChatRequest};
use crate::provider::DecodeContext;
use crate::{Catalog, ChatHttpRequest, ChatHttpResponse, ChatResponse, ChunkStream, Error};

// ---------------------------------------------------------------------------------------------
// Harness

/// One side of a comparison: `setup` builds an input (not timed), `run` consumes it (timed).
pub struct Arm<S, R> {
    setup: S,
    run: R,
}

/// An [`Arm`] from its two closures.
pub fn arm<I, F, S, R>(setup: S, run: R) -> Arm<S, R>
where
    S: Fn() -> I,
    R: Fn(I) -> F,
    F: Future,
{
    Arm { setup, run }
}

impl<S, R> Arm<S, R> {
    /// One input, one call: for the checks made before anything is timed.
    pub fn once<I, F>(&self, rt: &Runtime) -> F::Output
    where
        S: Fn() -> I,
        R: Fn(I) -> F,
        F: Future,
    {
        let input = (self.setup)();
        rt.block_on((self.run)(input))
    }

    /// Time of `n` calls in a row (inputs built before, outputs dropped after).
    fn time<I, F>(&self, rt: &Runtime, n: usize) -> Duration
    where
        S: Fn() -> I,
        R: Fn(I) -> F,
        F: Future,
    {
        let inputs: Vec<I> = (0..n).map(|_| (self.setup)()).collect();
        let mut outputs = Vec::with_capacity(n);
        let elapsed = rt.block_on(async {
            let start = Instant::now();
            for input in inputs {
                outputs.push((self.run)(input).await);
            }
            start.elapsed()
        });
        drop(black_box(outputs));
        elapsed
    }

    fn criterion<I, F>(&self, g: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, name: &str)
    where
        S: Fn() -> I,
        R: Fn(I) -> F,
        F: Future,
    {
        g.bench_function(name, |b| {
            b.to_async(rt)
                .iter_batched(&self.setup, &self.run, BatchSize::SmallInput);
        });
    }
}

/// What one call of a case stands for: `per` is the unit the summary reports in, `items` how
/// many of them one call handles (e.g. 104 SSE events per stream).
#[derive(Debug, Clone, Copy)]
pub struct Unit {
    per: &'static str,
    items: u64,
}

/// One call is one request.
pub const REQUEST: Unit = Unit {
    per: "request",
    items: 1,
};

/// One call handles `items` of `per` (reported per item).
pub const fn per(per: &'static str, items: u64) -> Unit {
    Unit { per, items }
}

/// One line of the summary.
struct Row {
    id: String,
    base: Option<&'static str>,
    unit: Unit,
    base_s: Option<f64>,
    case_s: f64,
    added_s: Option<f64>,
    ratio: Option<f64>,
    target_ns: Option<f64>,
}

/// The whole bench: criterion plus the interleaved summary.
pub struct Bench<'r> {
    title: &'static str,
    c: Criterion,
    rt: &'r Runtime,
    rows: Vec<Row>,
    filter: Option<String>,
    summary: bool,
}

impl<'r> Bench<'r> {
    /// Criterion with short warm-up (0.5 s) and measurement (2 s) times; command-line
    /// arguments override them.
    pub fn new(title: &'static str, rt: &'r Runtime) -> Self {
        let c = Criterion::default()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .configure_from_args();
        Self {
            title,
            c,
            rt,
            rows: Vec::new(),
            filter: filter_arg(),
            summary: benchmarking() && std::env::var("SB_BENCH_SUMMARY").as_deref() != Ok("0"),
        }
    }

    /// A criterion group (and a section of the summary).
    pub fn group(&mut self, name: &'static str) -> Group<'_> {
        Group {
            name,
            g: self.c.benchmark_group(name),
            rt: self.rt,
            rows: &mut self.rows,
            filter: self.filter.as_deref(),
            summary: self.summary,
        }
    }

    /// Criterion's final summary, then the interleaved table.
    pub fn finish(self) {
        self.c.final_summary();
        if self.summary && !self.rows.is_empty() {
            eprintln!("{}", table(self.title, &self.rows));
        }
    }
}

/// One criterion group; see [`Bench`].
pub struct Group<'a> {
    name: &'static str,
    g: BenchmarkGroup<'a, WallTime>,
    rt: &'a Runtime,
    rows: &'a mut Vec<Row>,
    filter: Option<&'a str>,
    summary: bool,
}

impl Group<'_> {
    fn selected(&self, id: &str) -> bool {
        self.filter.is_none_or(|f| id.contains(f))
    }

    /// A criterion function only: the baseline that [`Self::versus`] cases compare with.
    pub fn baseline<I, F, S, R>(&mut self, name: &'static str, unit: Unit, a: &Arm<S, R>)
    where
        S: Fn() -> I,
        R: Fn(I) -> F,
        F: Future,
    {
        self.g.throughput(Throughput::Elements(unit.items));
        a.criterion(&mut self.g, self.rt, name);
    }

    /// A case compared with `base` (a criterion function, and a summary line measured
    /// interleaved with the baseline). `target_ns` is the issue's budget for the added time
    /// per call, if it has one.
    pub fn versus<I1, F1, S1, R1, I2, F2, S2, R2>(
        &mut self,
        name: &'static str,
        unit: Unit,
        base: (&'static str, &Arm<S1, R1>),
        case: &Arm<S2, R2>,
        target_ns: Option<f64>,
    ) where
        S1: Fn() -> I1,
        R1: Fn(I1) -> F1,
        F1: Future,
        S2: Fn() -> I2,
        R2: Fn(I2) -> F2,
        F2: Future,
    {
        self.g.throughput(Throughput::Elements(unit.items));
        case.criterion(&mut self.g, self.rt, name);
        let id = format!("{}/{name}", self.name);
        if !self.summary || !self.selected(&id) {
            return;
        }
        let rt = self.rt;
        let t = interleave(
            Some(&|n| base.1.time(rt, n)),
            &|n| case.time(rt, n),
            unit.items,
        );
        self.rows.push(Row {
            id,
            base: Some(base.0),
            unit,
            base_s: t.base,
            case_s: t.case,
            added_s: t.added,
            ratio: t.ratio,
            target_ns,
        });
    }

    /// A case measured alone (no baseline): absolute time per call.
    pub fn alone<I, F, S, R>(&mut self, name: &'static str, unit: Unit, case: &Arm<S, R>)
    where
        S: Fn() -> I,
        R: Fn(I) -> F,
        F: Future,
    {
        self.g.throughput(Throughput::Elements(unit.items));
        case.criterion(&mut self.g, self.rt, name);
        let id = format!("{}/{name}", self.name);
        if !self.summary || !self.selected(&id) {
            return;
        }
        let rt = self.rt;
        let t = interleave(None, &|n| case.time(rt, n), unit.items);
        self.rows.push(Row {
            id,
            base: None,
            unit,
            base_s: None,
            case_s: t.case,
            added_s: None,
            ratio: None,
            target_ns: None,
        });
    }

    /// Ends the criterion group.
    pub fn finish(self) {
        self.g.finish();
    }
}

/// Medians of one interleaved measurement, in seconds per item.
struct Timing {
    base: Option<f64>,
    case: f64,
    added: Option<f64>,
    ratio: Option<f64>,
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(d)
}

/// Calibrates a batch size on `case` (about `SB_BENCH_BATCH_US` per batch), warms both arms,
/// then runs `SB_BENCH_ROUNDS` rounds of one batch per arm, alternating the order.
fn interleave(
    base: Option<&dyn Fn(usize) -> Duration>,
    case: &dyn Fn(usize) -> Duration,
    items: u64,
) -> Timing {
    let rounds = env_usize("SB_BENCH_ROUNDS", 30);
    let target = Duration::from_micros(env_usize("SB_BENCH_BATCH_US", 1000) as u64);
    let mut n = 1usize;
    loop {
        let t = case(n);
        if t >= target || n >= 100_000 {
            break;
        }
        let scale = target.as_secs_f64() / t.as_secs_f64().max(1e-9);
        n = ((n as f64 * scale.clamp(1.5, 10.0)).ceil() as usize).min(100_000);
    }
    if let Some(b) = base {
        b(n);
    }
    let per_item = |d: Duration| d.as_secs_f64() / n as f64 / items as f64;
    let mut bases = Vec::with_capacity(rounds);
    let mut cases = Vec::with_capacity(rounds);
    for round in 0..rounds {
        match base {
            Some(b) if round % 2 == 0 => {
                bases.push(per_item(b(n)));
                cases.push(per_item(case(n)));
            }
            Some(b) => {
                cases.push(per_item(case(n)));
                bases.push(per_item(b(n)));
            }
            None => cases.push(per_item(case(n))),
        }
    }
    let pairs = || bases.iter().zip(&cases);
    Timing {
        base: base.map(|_| median(bases.clone())),
        case: median(cases.clone()),
        added: base.map(|_| median(pairs().map(|(b, c)| c - b).collect())),
        ratio: base.map(|_| median(pairs().map(|(b, c)| c / b).collect())),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `123 ns`, `4.56 µs`, `1.23 ms`.
pub fn fmt_time(s: f64) -> String {
    let ns = s * 1e9;
    if ns.abs() < 10_000.0 {
        format!("{ns:.0} ns")
    } else if ns.abs() < 10_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn table(title: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{title} summary: baseline and case interleaved, medians of {} rounds (batches of ~{} µs)",
        env_usize("SB_BENCH_ROUNDS", 30),
        env_usize("SB_BENCH_BATCH_US", 1000)
    );
    let _ = writeln!(
        out,
        "{:<36} {:<9} {:<12} {:>10} {:>10} {:>10} {:>7} {:>8} {:>7}",
        "case", "per", "baseline", "base", "case", "added", "ratio", "target", "verdict"
    );
    for r in rows {
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), fmt_time);
        let added = r
            .added_s
            .map_or_else(|| "-".to_owned(), |a| format!("+{}", fmt_time(a)));
        let ratio = r
            .ratio
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
        let (target, verdict) = match (r.target_ns, r.added_s) {
            (Some(t), Some(a)) => {
                let per_call = a * r.unit.items as f64 * 1e9;
                (
                    fmt_time(t / 1e9),
                    if per_call <= t { "pass" } else { "MISS" },
                )
            }
            _ => ("-".to_owned(), "-"),
        };
        let per = if r.unit.items == 1 {
            r.unit.per.to_owned()
        } else {
            format!("{}/{}", r.unit.per, r.unit.items)
        };
        let _ = writeln!(
            out,
            "{:<36} {:<9} {:<12} {:>10} {:>10} {:>10} {:>7} {:>8} {:>7}",
            r.id,
            per,
            r.base.unwrap_or("-"),
            opt(r.base_s),
            fmt_time(r.case_s),
            added,
            ratio,
            target,
            verdict
        );
    }
    let _ = write!(
        out,
        "(times per `per` unit; `event/104` = per SSE event of a 104-event stream; targets apply \
         to the added time per request; ratio = case/base)"
    );
    out
}

/// The filter criterion was given, if any: the first positional argument.
fn filter_arg() -> Option<String> {
    // Criterion options that take a value.
    const WITH_VALUE: [&str; 16] = [
        "--save-baseline",
        "-s",
        "--baseline",
        "-b",
        "--baseline-lenient",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--plotting-backend",
        "--output-format",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if WITH_VALUE.contains(&a.as_str()) || a == "--color" || a == "-c" || a == "--format" {
            let _ = args.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// Whether criterion runs benchmarks (`cargo bench`), not tests (`cargo test --benches`,
/// `-- --test`) or a listing.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |f: &str| args.iter().any(|a| a == f);
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

/// The current-thread runtime every bench runs on (timers enabled for ModelTimeout).
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the bench runtime starts")
}

// ---------------------------------------------------------------------------------------------
// The identity service

/// The response an [`identity`] service hands back, built in `setup` and carried on the
/// request, so the timed part does not pay for building it.
#[derive(Clone)]
pub struct Canned(Arc<Mutex<Option<ChatHttpResponse>>>);

impl Canned {
    pub fn new(resp: ChatHttpResponse) -> Self {
        Self(Arc::new(Mutex::new(Some(resp))))
    }

    pub fn take(&self) -> Option<ChatHttpResponse> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// The identity service's future.
pub type Answer = std::future::Ready<Result<ChatHttpResponse, Error>>;

/// The identity service: answers with the request's [`Canned`] response.
pub type Identity = tower::util::ServiceFn<fn(ChatHttpRequest) -> Answer>;

/// An identity service.
pub fn identity() -> Identity {
    tower::service_fn(answer as fn(ChatHttpRequest) -> Answer)
}

/// What [`identity`] does.
pub fn answer(req: ChatHttpRequest) -> Answer {
    std::future::ready(
        req.extensions()
            .get::<Canned>()
            .and_then(Canned::take)
            .ok_or_else(|| Error::upstream("no canned response on the request")),
    )
}

/// Drives `svc` to readiness and calls it once (the service is borrowed, not cloned, so the
/// timed part contains only what a long-lived stack does per request).
pub async fn call<S, Req>(svc: &std::cell::RefCell<S>, req: Req) -> S::Response
where
    S: tower::Service<Req>,
    S::Error: std::fmt::Debug,
{
    std::future::poll_fn(|cx| svc.borrow_mut().poll_ready(cx))
        .await
        .expect("the service is ready");
    let fut = svc.borrow_mut().call(req);
    fut.await.expect("the bench call succeeds")
}

/// Reads a stream response to the end into `out` (capacity reserved in setup), so that the
/// chunks are dropped after the timed part. Returns the chunks and the spent stream.
pub async fn drain(
    resp: ChatHttpResponse,
    mut out: Vec<ChatCompletionChunk>,
) -> (Vec<ChatCompletionChunk>, ChunkStream) {
    let mut s = resp.into_body().into_stream().expect("a stream response");
    while let Some(item) = s.next().await {
        out.push(item.expect("no error item in the bench stream"));
    }
    (out, s)
}

/// A response carrying a stream of `chunks` (cloned, in setup).
pub fn stream_response(chunks: &[ChatCompletionChunk]) -> ChatHttpResponse {
    let v = chunks.to_vec();
    http::Response::new(ChatResponse::stream(futures_util::stream::iter(
        v.into_iter().map(Ok),
    )))
}

/// A response carrying a stream that clones each of `chunks` when it is polled, the way a
/// decoder hands over a chunk it has just written: the chunk is in cache when the layers look
/// at it. ([`stream_response`] builds every chunk in setup, long before the timed part reads
/// them; a layer that is the first to touch a chunk then pays the cache misses.)
pub fn fresh_stream_response(chunks: &Arc<[ChatCompletionChunk]>) -> ChatHttpResponse {
    let chunks = chunks.clone();
    let n = chunks.len();
    http::Response::new(ChatResponse::stream(futures_util::stream::iter(
        (0..n).map(move |i| Ok(chunks[i].clone())),
    )))
}

/// A response carrying `c` (cloned, in setup).
pub fn complete_response(c: &ChatCompletion) -> ChatHttpResponse {
    http::Response::new(ChatResponse::from(c.clone()))
}

/// Wraps a future so that `metrics` calls made while polling it go to `recorder` (a
/// thread-local recorder: nothing global is installed).
pub struct WithRecorder<'a, F> {
    pub recorder: &'a dyn metrics::Recorder,
    pub fut: Pin<Box<F>>,
}

impl<F: Future> Future for WithRecorder<'_, F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let recorder = self.recorder;
        metrics::with_local_recorder(recorder, || self.fut.as_mut().poll(cx))
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

/// Headers a typical OpenAI SDK request arrives with (the edge passes them down).
pub fn sdk_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(HOST, HeaderValue::from_static("gateway.internal:8080"));
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(ACCEPT, HeaderValue::from_static("application/json"));
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_static("Bearer sk-gw-0123456789abcdef0123456789abcdef"),
    );
    h.insert(USER_AGENT, HeaderValue::from_static("OpenAI/Python 1.54.4"));
    h.insert("x-stainless-lang", HeaderValue::from_static("python"));
    h.insert("x-stainless-retry-count", HeaderValue::from_static("0"));
    h
}

/// A typed request as the edge hands it down: method, URI, the SDK's headers and `chat`.
pub fn typed(chat: &Arc<ChatRequest>, headers: &HeaderMap) -> ChatHttpRequest {
    let mut req = http::Request::new(chat.clone());
    *req.method_mut() = Method::POST;
    *req.uri_mut() = http::Uri::from_static("/v1/chat/completions");
    *req.headers_mut() = headers.clone();
    req
}

/// A chat request body of about `target_len` bytes: `{head, "messages": [system prompt,
/// alternating user / assistant turns of plain text], tail}`. `salt` goes into the first user
/// turn (unique requests for cache misses).
pub fn chat_body(head: &str, target_len: usize, tail: &str, salt: u64) -> Vec<u8> {
    const TEXT: &str = "The quick brown fox jumps over the lazy dog while the gateway routes \
                        the request to the cheapest healthy provider. ";
    let mut out = String::with_capacity(target_len + 256);
    out.push('{');
    out.push_str(head);
    out.push_str(
        r#","messages":[{"role":"system","content":"You are a concise, helpful assistant."}"#,
    );
    let tail_len = tail.len() + 3;
    let mut turn = 0usize;
    loop {
        let remaining = target_len.saturating_sub(out.len() + tail_len);
        if remaining < 64 && turn > 0 {
            break;
        }
        let role = if turn % 2 == 0 { "user" } else { "assistant" };
        let start = out.len();
        if turn == 0 {
            let _ = write!(
                out,
                r#",{{"role":"{role}","content":"Request {salt}. Turn {turn}. "#
            );
        } else {
            let _ = write!(out, r#",{{"role":"{role}","content":"Turn {turn}. "#);
        }
        let room = remaining
            .saturating_sub(out.len() - start + 2)
            .clamp(16, 560);
        out.extend(TEXT.chars().cycle().take(room));
        out.push_str(r#""}"#);
        turn += 1;
    }
    out.push_str("],");
    out.push_str(tail);
    out.push('}');
    out.into_bytes()
}

/// Parses a body the bench built (panics on a bench bug).
pub fn parse(body: &[u8]) -> Arc<ChatRequest> {
    Arc::new(ChatRequest::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "bench request does not parse: {e}: {}",
            String::from_utf8_lossy(body)
        )
    }))
}

/// The common tail of a non-streaming request.
pub const TAIL: &str = r#""max_tokens":256,"temperature":0.7"#;
/// The common tail of a streaming request that asks for usage.
pub const STREAM_TAIL: &str =
    r#""max_tokens":256,"temperature":0.7,"stream":true,"stream_options":{"include_usage":true}"#;

// ---------------------------------------------------------------------------------------------
// Catalog

fn price(input: f64, output: f64) -> Option<Pricing> {
    Some(Pricing {
        input,
        output,
        ..Pricing::default()
    })
}

/// A gateway-sized catalog: six providers (three OpenAI-compatible deployments, Anthropic,
/// Gemini, Groq), nine models, several with more than one endpoint, prices everywhere, two
/// aliases.
pub fn catalog() -> Catalog {
    Catalog::builder()
        .provider(
            Provider::new("openai", ProviderKind::Openai, "https://api.openai.com/v1")
                .with_api_key("sk-openai"),
        )
        .provider(
            Provider::new(
                "azure",
                ProviderKind::Openai,
                "https://example.openai.azure.com/openai/v1",
            )
            .with_api_key("azure-key"),
        )
        .provider(
            Provider::new(
                "openrouter",
                ProviderKind::Openai,
                "https://openrouter.ai/api/v1",
            )
            .with_api_key("sk-or"),
        )
        .provider(
            Provider::new(
                "anthropic",
                ProviderKind::Anthropic,
                "https://api.anthropic.com",
            )
            .with_api_key("sk-ant"),
        )
        .provider(
            Provider::new(
                "google",
                ProviderKind::Gemini,
                "https://generativelanguage.googleapis.com",
            )
            .with_api_key("goog"),
        )
        .provider(
            Provider::new(
                "groq",
                ProviderKind::Openai,
                "https://api.groq.com/openai/v1",
            )
            .with_api_key("gsk"),
        )
        .model(
            ModelSpec::new("openai/gpt-4o-mini")
                .context_length(128_000)
                .max_output(16_384)
                .endpoint("openai", "gpt-4o-mini", price(0.15, 0.6))
                .endpoint("openrouter", "openai/gpt-4o-mini", price(0.15, 0.6)),
        )
        .model(
            ModelSpec::new("openai/gpt-4o")
                .context_length(128_000)
                .max_output(16_384)
                .endpoint("openai", "gpt-4o", price(2.5, 10.0))
                .endpoint("openrouter", "openai/gpt-4o", price(2.75, 11.0))
                .endpoint("azure", "gpt-4o", price(2.2, 9.0)),
        )
        .model(
            ModelSpec::new("openai/gpt-4.1")
                .context_length(1_047_576)
                .max_output(32_768)
                .endpoint("openai", "gpt-4.1", price(2.0, 8.0)),
        )
        .model(
            ModelSpec::new("anthropic/claude-sonnet-4")
                .context_length(200_000)
                .max_output(64_000)
                .endpoint("anthropic", "claude-sonnet-4-20250514", price(3.0, 15.0))
                .endpoint("openrouter", "anthropic/claude-sonnet-4", price(3.0, 15.0)),
        )
        .model(
            ModelSpec::new("anthropic/claude-3-5-haiku")
                .context_length(200_000)
                .max_output(8_192)
                .endpoint("anthropic", "claude-3-5-haiku-20241022", price(0.8, 4.0)),
        )
        .model(
            ModelSpec::new("google/gemini-2.5-flash")
                .context_length(1_048_576)
                .max_output(65_536)
                .endpoint("google", "gemini-2.5-flash", price(0.3, 2.5))
                .endpoint("openrouter", "google/gemini-2.5-flash", price(0.3, 2.5)),
        )
        .model(
            ModelSpec::new("google/gemini-2.5-pro")
                .context_length(1_048_576)
                .max_output(65_536)
                .endpoint("google", "gemini-2.5-pro", price(1.25, 10.0)),
        )
        .model(
            ModelSpec::new("meta-llama/llama-3.3-70b")
                .context_length(131_072)
                .max_output(32_768)
                .endpoint("groq", "llama-3.3-70b-versatile", price(0.59, 0.79))
                .endpoint(
                    "openrouter",
                    "meta-llama/llama-3.3-70b-instruct",
                    price(0.13, 0.4),
                ),
        )
        .model(ModelSpec::new("mistralai/mistral-small").endpoint(
            "openrouter",
            "mistralai/mistral-small-3.2-24b-instruct",
            price(0.05, 0.1),
        ))
        .alias("fast", "openai/gpt-4o-mini")
        .alias("smart", "anthropic/claude-sonnet-4")
        .build()
        .expect("the bench catalog is valid")
}

// ---------------------------------------------------------------------------------------------
// Answers

/// The answer text of the canned completion and streams (~600 bytes).
pub const ANSWER_WORDS: [&str; 12] = [
    "Sure",
    "! Here",
    " is",
    " a",
    " short",
    " answer",
    " about",
    " routing",
    " requests",
    " to",
    " cheap",
    " providers.",
];

fn answer_text(words: usize) -> String {
    (0..words)
        .map(|i| ANSWER_WORDS[i % ANSWER_WORDS.len()])
        .collect()
}

/// A `chat.completion` body as OpenAI sends it (its API reference's shape), ~1 KB.
pub fn openai_completion_json() -> String {
    format!(
        r#"{{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4o-mini-2024-07-18","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":212,"completion_tokens":120,"total_tokens":332,"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"service_tier":"default","system_fingerprint":"fp_b8bc95a0ac"}}"#,
        answer_text(96)
    )
}

/// The canned completion of the layer benches (decoded from [`openai_completion_json`]).
pub fn completion() -> ChatCompletion {
    serde_json::from_str(&openai_completion_json()).expect("the canned completion parses")
}

/// An OpenAI text stream: a role preamble, `deltas` content deltas, a finish chunk, a usage
/// chunk and `[DONE]`; one string per SSE event.
pub fn openai_text_events(deltas: usize) -> Vec<String> {
    const HEAD: &str = r#""id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_b8bc95a0ac""#;
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{{HEAD},\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let mut out = Vec::with_capacity(deltas + 4);
    out.push(chunk(
        r#"{"role":"assistant","content":"","refusal":null}"#,
        "null",
    ));
    for i in 0..deltas {
        out.push(chunk(
            &format!(
                r#"{{"content":"{}"}}"#,
                ANSWER_WORDS[i % ANSWER_WORDS.len()]
            ),
            "null",
        ));
    }
    out.push(chunk("{}", r#""stop""#));
    out.push(format!(
        "data: {{{HEAD},\"choices\":[],\"usage\":{{\"prompt_tokens\":212,\"completion_tokens\":{deltas},\"total_tokens\":{},\"prompt_tokens_details\":{{\"cached_tokens\":0,\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}}}\n\n",
        212 + deltas
    ));
    out.push("data: [DONE]\n\n".to_owned());
    out
}

/// The decode context of the OpenAI-shaped fixtures.
pub fn openai_ctx() -> DecodeContext {
    DecodeContext {
        model: "openai/gpt-4o-mini".into(),
        provider: "openai".into(),
    }
}

/// Decodes SSE events with a provider's stream decoder (for building fixtures).
pub fn decode_events(
    kind: ProviderKind,
    ctx: &DecodeContext,
    events: &[String],
) -> Vec<ChatCompletionChunk> {
    let mut sse = SseDecoder::new();
    let mut dec = crate::provider::Provider::new("bench", kind, "http://127.0.0.1:1")
        .codec()
        .stream_decoder(ctx);
    let mut out = Vec::new();
    for e in events {
        sse.push(e.as_bytes());
        while let Some(ev) = sse.next_event().expect("fixture SSE is valid") {
            dec.event(ev, &mut out).expect("fixture events decode");
        }
    }
    dec.finish(&mut out).expect("fixture stream is complete");
    out
}

/// `n` chunks of a canonical text stream (role preamble, text deltas, finish, usage), as the
/// translate layer would hand them up.
pub fn text_chunks(n: usize) -> Vec<ChatCompletionChunk> {
    assert!(
        n >= 4,
        "a stream has a preamble, a delta, a finish and a usage chunk"
    );
    let chunks = decode_events(
        ProviderKind::Openai,
        &openai_ctx(),
        &openai_text_events(n - 3),
    );
    assert_eq!(chunks.len(), n, "fixture stream length");
    chunks
}
