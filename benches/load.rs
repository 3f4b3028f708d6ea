//! Whole stack under load: throughput, latency percentiles, CPU per request and stream
//! forwarding delay for `direct`, `bare_proxy` and `switchboard`, measured in the same run.
//!
//! ```sh
//! cargo bench --features bench-support --bench load  # everything, ~40 s once built
//! SB_LOAD_ROUNDS=8 SB_LOAD_ROUND_MS=250 ...          # rounds per phase, length of one round
//! SB_BENCH_SERVER_THREADS=2 ...                      # servers on 2 workers instead of 1
//! cargo test --features bench-support --bench load   # smoke test: every phase for a few ms
//! ```
//!
//! The targets are the ones of `benches/stack.rs` (same servers, same request bodies, from
//! `support`). The client opens its own keep-alive HTTP/1.1 connections
//! (`hyper::client::conn::http1`, one task per connection, each sending its next request as
//! soon as the previous response body has been read to the end), so "32 connections" means
//! exactly 32 requests in flight.
//!
//! Three measurements, printed as tables on stdout:
//!
//! 1. **Load** (`nonstream_1k`, `nonstream_32k` at 1 and 32 connections): each target gets a
//!    0.5 s warm-up, then `SB_LOAD_ROUNDS` (4) rounds of `SB_LOAD_ROUND_MS` (500 ms), the
//!    targets taking turns within a round in a rotating order, so every target is measured
//!    for 2 s spread over the same ~6 s. Requests/s is completed requests over the measured
//!    time; p50/p99 are over every request of the measured rounds; ratios are to
//!    `bare_proxy`, and "added" is the target's percentile minus `bare_proxy`'s.
//! 2. **CPU per request**: the process's user + system CPU time (`utime` + `stime` from
//!    `/proc/self/stat`, in clock ticks of `getconf CLK_TCK`, normally 10 ms; Linux only) read
//!    before and after every measured round, summed per target, divided by its requests. The
//!    client, the proxy and the upstream share the process, so this is the whole round trip's
//!    CPU; `direct` is the client + upstream alone, so a proxy's own share is its figure minus
//!    `direct`'s. Reported for every load phase; the 32-connection one is the meaningful one.
//! 3. **Streams** (`stream_1k`, 1 connection, same rounds): time to first byte (request sent
//!    → first body frame received), total (→ end of the stream), and the **first-chunk
//!    delay**: the upstream's body is wrapped so that when hyper takes its first SSE frame to
//!    write it, it stores `Instant::now()` in a shared slot (one request in flight, so the
//!    slot is unambiguous); the client subtracts it from the instant its first body frame
//!    arrives. For `direct` this is the upstream → client hop alone (write, loopback,
//!    wake-up); for a proxy it adds the proxy's read, processing and write of that chunk.
//!
//! Runtime setup as in `benches/stack.rs`: the servers share one multi-thread runtime with a
//! single worker; the client is a current-thread runtime on the main thread. At 32
//! connections the client thread does the same work per request for every target, so it
//! lowers every target's throughput alike and flattens ratios (more for `direct`, which is
//! the cheapest).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::{service_fn, Service};
use tokio::runtime::Runtime;
use tokio::time::Instant;

use switchboard::bench_support::stack::{self as support, Canned, Variant};

/// When the upstream handed the first frame of its latest stream to hyper.
type Stamp = Arc<Mutex<Option<Instant>>>;

/// One thing to measure: a name and the address the client calls.
#[derive(Debug, Clone, Copy)]
struct Target {
    name: &'static str,
    addr: SocketAddr,
}

/// Index of `bare_proxy` in the target list (the reference for every ratio).
const BARE: usize = 1;
/// Index of `direct`.
const DIRECT: usize = 0;

// ---------------------------------------------------------------------------------------------
// The stamping upstream

/// The upstream's body with the instant of its first frame recorded (streams only).
struct Stamped {
    inner: Canned,
    stamp: Option<Stamp>,
}

impl Body for Stamped {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(Some(_))) {
            if let Some(stamp) = this.stamp.take() {
                *stamp.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `support::upstream()` with the first frame of every stream stamped into `stamp`.
fn stamped_upstream(
    stamp: Stamp,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Stamped>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    let upstream = support::upstream();
    service_fn(move |req: Request<Incoming>| {
        let answer = upstream.call(req);
        let stamp = stamp.clone();
        async move {
            let resp = answer.await?;
            let is_stream = resp
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v == "text/event-stream");
            Ok(resp.map(|inner| Stamped {
                inner,
                stamp: is_stream.then_some(stamp),
            }))
        }
    })
}

/// Starts the stamping upstream and the two proxies on `rt`.
fn targets(rt: &Runtime, stamp: Stamp) -> Vec<Target> {
    rt.block_on(async {
        let up = support::bind(support::loopback()).await;
        let up_addr = up.local_addr().expect("a bound listener has an address");
        tokio::spawn(support::serve(up, stamped_upstream(stamp)));
        let mut out = vec![Target {
            name: "direct",
            addr: up_addr,
        }];
        for (name, addr) in support::start_proxies(up_addr).await {
            out.push(Target { name, addr });
        }
        out
    })
}

// ---------------------------------------------------------------------------------------------
// Client

async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    support::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Timings of one request (nanoseconds).
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Request sent → end of the body.
    total: u64,
    /// Request sent → first body frame.
    first: u64,
    /// Upstream's first frame → client's first frame (streams only, else 0).
    forward: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Sends one request on `send` and reads the body to the end. Panics on a non-200 answer.
async fn one(
    send: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    stamp: Option<&Stamp>,
) -> Sample {
    send.ready()
        .await
        .unwrap_or_else(|e| panic!("connection closed: {e}"));
    if let Some(s) = stamp {
        *s.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
    let start = Instant::now();
    let resp = send
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("request failed: {e}"));
    assert_eq!(resp.status(), StatusCode::OK, "a bench request failed");
    let mut body = resp.into_body();
    let mut first = None;
    let mut forward = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap_or_else(|e| panic!("response body failed: {e}"));
        if first.is_none() && frame.is_data() {
            let now = Instant::now();
            first = Some(now - start);
            if let Some(s) = stamp {
                let sent = s.lock().unwrap_or_else(PoisonError::into_inner).take();
                let sent =
                    sent.expect("the upstream stamps a stream's first frame before sending it");
                forward = nanos(now.saturating_duration_since(sent));
            }
        }
    }
    let total = start.elapsed();
    Sample {
        total: nanos(total),
        first: nanos(first.unwrap_or(total)),
        forward,
    }
}

/// Keeps every connection busy with `variant` until `for_` has passed; returns the
/// connections, the samples and the wall time.
async fn phase(
    conns: Vec<SendRequest<Full<Bytes>>>,
    addr: SocketAddr,
    body: &Bytes,
    for_: Duration,
    stamp: Option<&Stamp>,
) -> (Vec<SendRequest<Full<Bytes>>>, Vec<Sample>, Duration) {
    let host = support::host_header(addr);
    let start = Instant::now();
    let deadline = start + for_;
    let mut tasks = Vec::with_capacity(conns.len());
    for mut send in conns {
        let host = host.clone();
        let body = body.clone();
        let stamp = stamp.cloned();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                samples.push(
                    one(
                        &mut send,
                        support::origin_request(&host, &body),
                        stamp.as_ref(),
                    )
                    .await,
                );
            }
            (send, samples)
        }));
    }
    let mut conns = Vec::with_capacity(tasks.len());
    let mut samples = Vec::new();
    for t in tasks {
        let (send, s) = t.await.expect("a client task panicked");
        conns.push(send);
        samples.extend(s);
    }
    (conns, samples, start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// CPU time

/// The process's user + system CPU time so far, in clock ticks (`/proc/self/stat` fields 14
/// and 15), or `None` where that file does not exist.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Seconds per clock tick (`getconf CLK_TCK`, 100 if that fails: Linux's `USER_HZ`).
fn tick_seconds() -> f64 {
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|hz| *hz > 0.0)
        .unwrap_or(100.0);
    1.0 / hz
}

// ---------------------------------------------------------------------------------------------
// Runs

/// Rounds, round length and warm-up; a few milliseconds when not run by `cargo bench`.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rounds: usize,
    round: Duration,
    warm_up: Duration,
}

impl Plan {
    fn from_env() -> Self {
        let env = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(d)
        };
        if benchmarking() {
            Self {
                rounds: usize::try_from(env("SB_LOAD_ROUNDS", 4)).unwrap_or(4),
                round: Duration::from_millis(env("SB_LOAD_ROUND_MS", 500)),
                warm_up: Duration::from_millis(500),
            }
        } else {
            Self {
                rounds: 2,
                round: Duration::from_millis(20),
                warm_up: Duration::from_millis(20),
            }
        }
    }
}

/// What one target did over the measured rounds.
#[derive(Debug, Default)]
struct Tally {
    samples: Vec<Sample>,
    elapsed: Duration,
    ticks: Option<u64>,
    /// Requests/s per round, for the per-round ratios.
    per_round: Vec<f64>,
}

impl Tally {
    fn rate(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `variant` on `connections` connections per target, interleaved; one tally per target.
fn run(
    rt: &Runtime,
    targets: &[Target],
    variant: Variant,
    connections: usize,
    plan: Plan,
    stamp: Option<&Stamp>,
) -> Vec<Tally> {
    let body = variant.body();
    rt.block_on(async {
        let mut conns = Vec::with_capacity(targets.len());
        for t in targets {
            let mut c = Vec::with_capacity(connections);
            for _ in 0..connections {
                c.push(connect(t.addr).await);
            }
            conns.push(c);
        }
        for (k, t) in targets.iter().enumerate() {
            let c = std::mem::take(&mut conns[k]);
            conns[k] = phase(c, t.addr, &body, plan.warm_up, stamp).await.0;
        }
        let mut tallies: Vec<Tally> = targets.iter().map(|_| Tally::default()).collect();
        for round in 0..plan.rounds {
            for i in 0..targets.len() {
                let k = (round + i) % targets.len();
                let c = std::mem::take(&mut conns[k]);
                let before = cpu_ticks();
                let (c, samples, elapsed) =
                    phase(c, targets[k].addr, &body, plan.round, stamp).await;
                let after = cpu_ticks();
                conns[k] = c;
                let t = &mut tallies[k];
                t.per_round
                    .push(samples.len() as f64 / elapsed.as_secs_f64());
                t.samples.extend(samples);
                t.elapsed += elapsed;
                t.ticks = match (t.ticks.or(Some(0)), before, after) {
                    (Some(sum), Some(b), Some(a)) => Some(sum + a.saturating_sub(b)),
                    _ => None,
                };
            }
        }
        tallies
    })
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64
}

fn pcts(samples: &[Sample], field: fn(&Sample) -> u64) -> (f64, f64) {
    let mut v: Vec<u64> = samples.iter().map(field).collect();
    v.sort_unstable();
    (percentile(&v, 0.50), percentile(&v, 0.99))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn us(ns: f64) -> String {
    format!("{:.1}", ns / 1e3)
}

fn print_load(targets: &[Target], tallies: &[Tally], tick: f64) {
    println!(
        "{:<12} {:>9} {:>7} {:>18} {:>8} {:>8} {:>9} {:>9} {:>12} {:>13}",
        "target",
        "req/s",
        "x bare",
        "round x (range)",
        "p50 µs",
        "p99 µs",
        "+p50 µs",
        "+p99 µs",
        "CPU/req µs",
        "- direct µs"
    );
    let (bare50, bare99) = pcts(&tallies[BARE].samples, |s| s.total);
    let cpu = |t: &Tally| {
        t.ticks
            .map(|k| k as f64 * tick / t.samples.len() as f64 * 1e6)
    };
    let direct_cpu = cpu(&tallies[DIRECT]);
    for (t, tally) in targets.iter().zip(tallies) {
        let (p50, p99) = pcts(&tally.samples, |s| s.total);
        let rounds: Vec<f64> = tally
            .per_round
            .iter()
            .zip(&tallies[BARE].per_round)
            .map(|(a, b)| a / b)
            .collect();
        let lo = rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mid = median(rounds);
        let c = cpu(tally);
        println!(
            "{:<12} {:>9.0} {:>7.2} {:>18} {:>8} {:>8} {:>9} {:>9} {:>12} {:>13}",
            t.name,
            tally.rate(),
            tally.rate() / tallies[BARE].rate(),
            format!("{mid:.2} ({lo:.2}-{hi:.2})"),
            us(p50),
            us(p99),
            us(p50 - bare50),
            us(p99 - bare99),
            c.map_or_else(|| "n/a".to_owned(), |c| format!("{c:.1}")),
            match (c, direct_cpu) {
                (Some(c), Some(d)) => format!("{:.1}", c - d),
                _ => "n/a".to_owned(),
            },
        );
    }
}

fn print_streams(targets: &[Target], tallies: &[Tally]) {
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "target",
        "requests",
        "TTFB p50",
        "TTFB p99",
        "total p50",
        "total p99",
        "fwd p50",
        "fwd p99",
        "fwd-direct",
        "fwd-bare"
    );
    let (d50, _) = pcts(&tallies[DIRECT].samples, |s| s.forward);
    let (b50, _) = pcts(&tallies[BARE].samples, |s| s.forward);
    for (t, tally) in targets.iter().zip(tallies) {
        let (f50, f99) = pcts(&tally.samples, |s| s.first);
        let (t50, t99) = pcts(&tally.samples, |s| s.total);
        let (w50, w99) = pcts(&tally.samples, |s| s.forward);
        println!(
            "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
            t.name,
            tally.samples.len(),
            us(f50),
            us(f99),
            us(t50),
            us(t99),
            us(w50),
            us(w99),
            us(w50 - d50),
            us(w50 - b50),
        );
    }
    println!("(all times in µs; fwd = upstream's first frame handed to hyper -> client's first body frame; fwd-direct / fwd-bare: p50 minus that target's p50)");
}

/// Whether this is `cargo bench` (not `cargo test --benches`, which gets a smoke run).
fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn main() {
    let servers = {
        let workers = std::env::var("SB_BENCH_SERVER_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(1);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("bench-server")
            .enable_all()
            .build()
            .expect("the server runtime starts")
    };
    let stamp: Stamp = Arc::default();
    let targets = targets(&servers, stamp.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the client runtime starts");

    // Every target must answer every variant correctly before anything is timed.
    let client = support::client();
    rt.block_on(async {
        for v in Variant::ALL {
            for t in &targets {
                support::check(&client, t.addr, v).await;
            }
        }
    });
    drop(client);

    let plan = Plan::from_env();
    let tick = tick_seconds();
    println!(
        "load bench: {} rounds x {} ms per target after {} ms warm-up, targets interleaved; CPU tick {:.0} ms",
        plan.rounds,
        plan.round.as_millis(),
        plan.warm_up.as_millis(),
        tick * 1e3
    );
    for variant in [Variant::Nonstream1k, Variant::Nonstream32k] {
        for connections in [1, 32] {
            println!();
            println!("{} at {connections} connection(s)", variant.name());
            let tallies = run(&rt, &targets, variant, connections, plan, None);
            print_load(&targets, &tallies, tick);
        }
    }
    println!();
    println!("{} at 1 connection: streams", Variant::Stream1k.name());
    let tallies = run(&rt, &targets, Variant::Stream1k, 1, plan, Some(&stamp));
    print_streams(&targets, &tallies);
}
