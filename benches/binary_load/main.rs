//! The shipped binary under load: throughput, latency percentiles, CPU per request of the
//! proxy process alone, and stream forwarding delay, for the `switchboard` binary in several
//! configurations, the bare hyper proxy and the upstream called directly, each a separate
//! process, all measured in the same run.
//!
//! ```sh
//! cargo bench --features bench-support --bench binary_load   # ~1 min once built (4 rounds)
//! SB_LOAD_ROUNDS=8 SB_LOAD_ROUND_MS=500 ...                  # rounds per phase, length of one round (~2 min)
//! SB_BINARY_MODES="gateway gateway-miss" ...                 # which configurations of the binary
//! SB_BARE_WORKERS=1 ...                                      # the bare proxy's worker threads
//! SB_SWITCHBOARD_BIN=/path/to/switchboard ...                # another build of the binary
//! cargo test --features bench-support --bench binary_load    # smoke test: every phase for a few ms
//! ```
//!
//! **Processes.** Cargo builds the `switchboard` binary with every bench and names its path
//! (`CARGO_BIN_EXE_switchboard`: `$CARGO_TARGET_DIR/release/switchboard` under `cargo bench`,
//! built with the bench's features, which add only the hidden `bench_support` module), so the
//! figures are always those of the current source. The upstream and the bare proxy are this
//! bench's own executable started again in another role (`SB_BINARY_LOAD_ROLE`), running the
//! same `switchboard::bench_support::stack` code as `bench_upstream` and `bench_server --mode
//! bare-proxy` (no hashed executable names to find). The upstream also writes the wall-clock
//! time at which hyper takes each stream's first frame to its standard output, for the
//! first-chunk delay. Every child is killed when the bench ends or panics (a drop guard);
//! the two helper roles also exit when their standard input closes, i.e. when the bench is
//! gone. Everything listens on `127.0.0.1`, port 0.
//!
//! **Targets.**
//!
//! - `direct`: the client calls the upstream (current-thread runtime, like `bench_upstream`).
//! - `bare_proxy`: the bare hyper proxy on a multi-thread runtime with as many workers as the
//!   binary's `#[tokio::main]` starts (the machine's parallelism; `SB_BARE_WORKERS`).
//! - the binary, `switchboard --config CONFIG --listen 127.0.0.1:0` with `examples/gateway.toml`
//!   routed to the upstream (`OPENAI_API_KEY=k`, `OPENAI_BASE_URL=http://UPSTREAM/v1`), in the
//!   modes of `scripts/callgrind.sh` (`SB_BINARY_MODES`, default `gateway gateway-miss
//!   gateway-miss-nolog gateway-miss-nodb gateway-miss-nolog-nodb`): `gateway` is the example
//!   config as shipped (cache on, so every measured request is a HIT; a SQLite request log;
//!   `RUST_LOG=info`, the access log and tracing to standard output, here a file), `-miss`
//!   turns the cache off (every request forwarded), `-nolog` sets `RUST_LOG=off`, `-nodb`
//!   removes the request log. The binary has no switch for its Prometheus recorder, so metrics
//!   always run. Its standard output and error, its config and its request log are files in a
//!   temporary directory, removed at the end.
//!
//! **Client.** As in `benches/load.rs`: this process, a current-thread runtime, its own
//! keep-alive HTTP/1.1 connections (one task per connection, the next request sent as soon as
//! the previous response body was read to the end), so "32 connections" is exactly 32
//! requests in flight. A non-200 answer or a broken connection is counted as an error (and the
//! connection replaced), not fatal; every target must answer each variant correctly once
//! before anything is timed.
//!
//! **Phases** (`nonstream_1k` and `stream_1k` of `switchboard::bench_support::stack`, at 1 and
//! 32 connections): each target gets a 0.5 s warm-up, then `SB_LOAD_ROUNDS` (4) rounds of
//! `SB_LOAD_ROUND_MS` (500 ms), the targets taking turns within a round in a rotating order.
//! The stream phases leave out cache-HIT modes (a HIT replays the stream from the cache; there
//! is nothing to forward). Reported:
//!
//! - requests/s over the measured time, its ratio to `bare_proxy`, and the median (range) of
//!   the per-round ratios (each round's targets run within a few seconds of each other);
//! - p50/p99 of request sent → body read to the end;
//! - **CPU per request of the proxy process alone**: `utime + stime` of `/proc/PID/stat`
//!   (every thread, in clock ticks of `getconf CLK_TCK`, normally 10 ms; Linux only) read
//!   before and after every measured round, summed, divided by the requests; the same for the
//!   upstream and this client together;
//! - the share of the machine's CPU (`/proc/stat`) the three processes used during the target's
//!   rounds, and the share everything else used (other jobs, kernel threads, the hypervisor's
//!   steal): a run where the second is more than a few percent is not worth quoting;
//! - streams: time to first byte (request sent → first body frame), and the **first-chunk
//!   delay**: the upstream's wall-clock stamp of handing its first frame to hyper → the
//!   client's first body frame (1 connection, so one stream in flight);
//! - **per-chunk cost**: the proxy's CPU per stream minus its CPU per non-streaming request
//!   (32 connections, same request but for `"stream":true`), divided by the 21 frames a stream
//!   has beyond a whole answer's one; ratio to `bare_proxy`.
//!
//! At the end it prints the binary's dropped-line and error counters (`/metrics`) and the
//! warnings and errors in its log. Everything shares the machine: on 2 cores the client, the
//! upstream and the proxy compete, so throughput ratios are flatter than CPU ratios. See
//! BENCHMARKS.md.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::{service_fn, Service};
use tokio::time::Instant;

use switchboard::bench_support::stack::{self as support, Canned, Mode, Variant, STREAM_CHUNKS};

mod client;
mod processes;
mod report;
mod roles;

use client::*;
use processes::*;
use report::*;
use roles::*;

/// The environment variable that starts this executable as a helper process.
pub(crate) const ROLE: &str = "SB_BINARY_LOAD_ROLE";
/// The upstream address a `bare-proxy` helper forwards to.
pub(crate) const ROLE_UPSTREAM: &str = "SB_BINARY_LOAD_UPSTREAM";
/// The bare proxy helper's worker threads.
pub(crate) const ROLE_WORKERS: &str = "SB_BINARY_LOAD_WORKERS";

/// The default configurations of the binary (names as in `scripts/callgrind.sh`).
pub(crate) const DEFAULT_MODES: &str =
    "gateway gateway-miss gateway-miss-nolog gateway-miss-nodb gateway-miss-nolog-nodb";

/// Index of `bare_proxy` in the target list (the reference for every ratio; `direct` is 0).
pub(crate) const BARE: usize = 1;

/// SSE frames of a stream beyond the single frame of a whole answer: the chunks with choices,
/// the usage chunk and `[DONE]`, minus one.
pub(crate) const EXTRA_FRAMES: usize = STREAM_CHUNKS + 2 - 1;

/// Nanoseconds since the Unix epoch (comparable between processes, unlike `Instant`).
pub(crate) fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

// ---------------------------------------------------------------------------------------------
// Runs

pub(crate) fn env_u64(k: &str, default: u64) -> Option<u64> {
    match std::env::var(k) {
        Ok(v) => v.parse().ok().filter(|n| *n > 0),
        Err(_) => (default > 0).then_some(default),
    }
}

/// Rounds, round length and warm-up; a few milliseconds when not run by `cargo bench`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    rounds: usize,
    round: Duration,
    warm_up: Duration,
}

impl Plan {
    fn from_env() -> Self {
        if benchmarking() {
            Self {
                rounds: env_u64("SB_LOAD_ROUNDS", 4)
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(4),
                round: Duration::from_millis(env_u64("SB_LOAD_ROUND_MS", 500).unwrap_or(500)),
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
pub(crate) struct Tally {
    samples: Vec<Sample>,
    elapsed: Duration,
    /// CPU ticks over the measured rounds of the proxy process (`None` for `direct`).
    ticks: Option<u64>,
    /// The same for the upstream and for this client.
    upstream_ticks: Option<u64>,
    client_ticks: Option<u64>,
    /// The whole machine's busy and total CPU ticks over the same rounds (`/proc/stat`).
    machine_busy: Option<u64>,
    machine_total: Option<u64>,
    /// Requests/s per round, for the per-round ratios.
    per_round: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn rate(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The proxy's CPU per request, in µs.
    fn cpu_us(&self, tick: f64) -> Option<f64> {
        self.per_request(self.ticks, tick)
    }

    /// The upstream's and the client's CPU per request, in µs.
    fn others_us(&self, tick: f64) -> Option<f64> {
        let both = self
            .upstream_ticks
            .zip(self.client_ticks)
            .map(|(u, c)| u + c);
        self.per_request(both, tick)
    }

    fn per_request(&self, ticks: Option<u64>, tick: f64) -> Option<f64> {
        let n = self.samples.len();
        ticks
            .filter(|_| n > 0)
            .map(|k| k as f64 * tick / n as f64 * 1e6)
    }

    /// The share of the machine's CPU the three processes used over the measured rounds, and
    /// the share everything else used (other people's work on a shared machine, the
    /// hypervisor's steal).
    fn machine_shares(&self) -> Option<(f64, f64)> {
        let ours = self.ticks.unwrap_or(0) + self.upstream_ticks? + self.client_ticks?;
        let total = self.machine_total.filter(|t| *t > 0)? as f64;
        let others = self.machine_busy?.saturating_sub(ours);
        Some((ours as f64 / total, others as f64 / total))
    }
}

/// Adds the ticks between `before` and `after` to `sum` (`None` once a reading failed).
pub(crate) fn add_ticks(sum: Option<u64>, before: Option<u64>, after: Option<u64>) -> Option<u64> {
    match (sum, before, after) {
        (Some(sum), Some(b), Some(a)) => Some(sum + a.saturating_sub(b)),
        _ => None,
    }
}

/// What every phase runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup<'a> {
    rt: &'a tokio::runtime::Runtime,
    targets: &'a [Target],
    plan: Plan,
    pids: Pids,
}

/// Runs `variant` on `connections` connections per target, interleaved; one tally per target
/// (`None` for the targets left out).
pub(crate) fn run(
    setup: Setup<'_>,
    included: &[bool],
    variant: Variant,
    connections: usize,
    stamps: Option<&Arc<Stamps>>,
) -> Vec<Option<Tally>> {
    let Setup {
        rt,
        targets,
        plan,
        pids,
    } = setup;
    let body = variant.body();
    let active: Vec<usize> = (0..targets.len()).filter(|&k| included[k]).collect();
    rt.block_on(async {
        let mut conns: Vec<Vec<Option<SendRequest<Full<Bytes>>>>> =
            targets.iter().map(|_| Vec::new()).collect();
        for &k in &active {
            for _ in 0..connections {
                let c = connect(targets[k].addr)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", targets[k].name));
                conns[k].push(Some(c));
            }
        }
        for &k in &active {
            let c = std::mem::take(&mut conns[k]);
            conns[k] = phase(c, targets[k].addr, &body, plan.warm_up, stamps)
                .await
                .0;
        }
        let mut tallies: Vec<Option<Tally>> = targets
            .iter()
            .enumerate()
            .map(|(k, t)| {
                included[k].then(|| Tally {
                    ticks: t.pid.map(|_| 0),
                    upstream_ticks: Some(0),
                    client_ticks: Some(0),
                    machine_busy: Some(0),
                    machine_total: Some(0),
                    ..Tally::default()
                })
            })
            .collect();
        for round in 0..plan.rounds {
            for i in 0..active.len() {
                let k = active[(round + i) % active.len()];
                let c = std::mem::take(&mut conns[k]);
                let read = || {
                    let machine = machine_ticks();
                    [
                        targets[k].pid.and_then(cpu_ticks),
                        cpu_ticks(pids.upstream),
                        cpu_ticks(pids.client),
                        machine.map(|m| m[0]),
                        machine.map(|m| m[1]),
                    ]
                };
                let before = read();
                let (c, r, elapsed) = phase(c, targets[k].addr, &body, plan.round, stamps).await;
                let after = read();
                conns[k] = c;
                let t = tallies[k].as_mut().expect("an active target has a tally");
                t.per_round
                    .push(r.samples.len() as f64 / elapsed.as_secs_f64());
                t.samples.extend(r.samples);
                t.elapsed += elapsed;
                t.errors += r.errors;
                if t.first_error.is_none() {
                    t.first_error = r.first_error;
                }
                t.ticks = add_ticks(t.ticks, before[0], after[0]);
                t.upstream_ticks = add_ticks(t.upstream_ticks, before[1], after[1]);
                t.client_ticks = add_ticks(t.client_ticks, before[2], after[2]);
                t.machine_busy = add_ticks(t.machine_busy, before[3], after[3]);
                t.machine_total = add_ticks(t.machine_total, before[4], after[4]);
            }
        }
        tallies
    })
}

/// Whether this is `cargo bench` (not `cargo test --benches`, which gets a smoke run).
pub(crate) fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        helper(&role);
        return;
    }
    let modes: Vec<GatewayMode> = std::env::var("SB_BINARY_MODES")
        .unwrap_or_else(|_| DEFAULT_MODES.to_owned())
        .split_whitespace()
        .map(GatewayMode::parse)
        .collect();
    let mut procs = Processes::new();
    let (targets, stamps, pids) = start(&mut procs, &modes);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the client runtime starts");

    // Every target must answer correctly before anything is timed.
    let client = support::client();
    rt.block_on(async {
        for t in &targets {
            support::check(&client, t.addr, Variant::Nonstream1k).await;
            if t.streams {
                support::check(&client, t.addr, Variant::Stream1k).await;
            }
        }
    });
    drop(client);

    let plan = Plan::from_env();
    let tick = tick_seconds();
    let bin = if modes.is_empty() {
        String::new()
    } else {
        format!(", binary {}", switchboard_bin().display())
    };
    println!(
        "binary load bench: {} rounds × {} ms per target after {} ms warm-up, targets interleaved; \
         CPU tick {:.0} ms; {} CPUs{bin}",
        plan.rounds,
        plan.round.as_millis(),
        plan.warm_up.as_millis(),
        tick * 1e3,
        std::thread::available_parallelism().map_or(1, usize::from),
    );
    let all = vec![true; targets.len()];
    let forwarding: Vec<bool> = targets.iter().map(|t| t.streams).collect();

    let setup = Setup {
        rt: &rt,
        targets: &targets,
        plan,
        pids,
    };
    let measure = |included: &[bool], variant: Variant, connections: usize, stamps| {
        run(setup, included, variant, connections, stamps)
    };
    let title = |variant: Variant, connections: usize| {
        let plural = if connections == 1 { "" } else { "s" };
        format!("{}, {connections} connection{plural}", variant.name())
    };
    let whole1 = measure(&all, Variant::Nonstream1k, 1, None);
    print_load(&title(Variant::Nonstream1k, 1), &targets, &whole1, tick);
    let whole32 = measure(&all, Variant::Nonstream1k, 32, None);
    print_load(&title(Variant::Nonstream1k, 32), &targets, &whole32, tick);
    let streams1 = measure(&forwarding, Variant::Stream1k, 1, Some(&stamps));
    print_streams(&title(Variant::Stream1k, 1), &targets, &streams1, tick);
    let streams32 = measure(&forwarding, Variant::Stream1k, 32, None);
    print_streams(&title(Variant::Stream1k, 32), &targets, &streams32, tick);

    let results = Results {
        whole32,
        streams1,
        streams32,
    };
    print_summary(&targets, &results, tick);
    print_gateway_health(&rt, &targets, &procs.dir);
    let _ = std::io::stdout().flush();
    drop(procs);
}
