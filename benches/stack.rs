//! Whole-stack round trip: client → server → upstream → back, on loopback.
//!
//! ```sh
//! cargo bench --features bench-support --bench stack                     # everything (~45 s once built)
//! cargo bench --features bench-support --bench stack -- stream_1k        # one criterion group (the summary still runs)
//! SB_BENCH_SUMMARY=0 cargo bench --features bench-support --bench stack  # criterion only
//! ```
//!
//! Targets, side by side in one criterion group per request shape ([`Variant`]):
//!
//! - `direct`: the client calls the fast in-process upstream itself (the upstream's cost);
//! - `bare_proxy`: a bare hyper reverse proxy in front of it (the floor for any gateway);
//! - `switchboard`: the whole switchboard stack in front of it.
//!
//! After criterion, a summary measures the three targets again *interleaved* (round-robin
//! batches, rotating order) and prints the median per-request times and the paired ratios
//! `bare_proxy/direct` and `switchboard/bare_proxy`: interleaving makes the ratios robust to
//! the slow drifts of a shared machine, which separate criterion runs are not. See
//! BENCHMARKS.md.
//!
//! Runtime setup (chosen for stable numbers on 2 cores): the servers (upstream, bare proxy,
//! switchboard) share one multi-thread runtime with a single worker thread, and the client runs
//! on the bench's main thread in a current-thread runtime (`b.to_async(&rt)`). So exactly two
//! threads are busy, one per core: the client never competes with the servers for a core, the
//! proxy and the upstream hand work to each other on one worker without cross-thread wake-ups
//! (as they would on a busy server), and no idle worker spins looking for work to steal. Each
//! request still crosses threads twice (client → server → client), the same for every target.
//! `SB_BENCH_SERVER_THREADS=n` gives the servers n workers instead.
//!
//! Extending (e.g. per-layer stacks for the proof issue): add a target to [`targets`] and, if
//! it needs a new server, a function in `support`; add request shapes to `Variant`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use tokio::runtime::Runtime;
use tokio::time::Instant;

use switchboard::bench_support::stack::{
    self as support, chat_request, chat_uri, round_trip, BenchClient, Variant,
};

/// One thing to measure: a name and the address the client calls.
#[derive(Debug, Clone, Copy)]
struct Target {
    name: &'static str,
    addr: SocketAddr,
}

/// Starts the upstream and the proxies on `rt`; returns the targets in report order. The
/// ratios in the summary assume `direct`, `bare_proxy`, `switchboard` come first in that order.
fn targets(rt: &Runtime) -> Vec<Target> {
    rt.block_on(async {
        let up = support::bind(support::loopback()).await;
        let up_addr = up.local_addr().expect("a bound listener has an address");
        tokio::spawn(support::serve(up, support::upstream()));
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

fn server_runtime() -> Runtime {
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
}

fn client_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the client runtime starts")
}

fn bench_stack(c: &mut Criterion, rt: &Runtime, client: &BenchClient, targets: &[Target]) {
    for variant in Variant::ALL {
        let body = variant.body();
        let mut g = c.benchmark_group(variant.name());
        // Reported as requests per second next to the time per request.
        g.throughput(Throughput::Elements(1));
        for t in targets {
            let uri = chat_uri(t.addr);
            g.bench_function(t.name, |b| {
                b.to_async(rt).iter_batched(
                    || chat_request(&uri, &body),
                    |req| round_trip(client, req),
                    BatchSize::SmallInput,
                );
            });
        }
        g.finish();
    }
}

/// Rounds × batch of the interleaved summary (default 60 × 25 requests per target and
/// variant, a few seconds); `SB_BENCH_ROUNDS` / `SB_BENCH_BATCH` override them.
fn rounds_and_batch() -> (usize, usize) {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(d)
    };
    (env("SB_BENCH_ROUNDS", 60), env("SB_BENCH_BATCH", 25))
}

/// Median per-request time (seconds) of each target, and the per-round ratios.
struct Interleaved {
    per_request: Vec<f64>,
    bare_over_direct: f64,
    switchboard_over_bare: f64,
}

fn interleaved(rt: &Runtime, client: &BenchClient, targets: &[Target], v: Variant) -> Interleaved {
    let body = v.body();
    let uris: Vec<_> = targets.iter().map(|t| chat_uri(t.addr)).collect();
    let n = targets.len();
    let (rounds, batch) = rounds_and_batch();
    let mut times = vec![Vec::with_capacity(rounds); n];
    rt.block_on(async {
        // One discarded round warms the connections when criterion was filtered out.
        for round in 0..=rounds {
            for k in 0..n {
                let t = (round + k) % n;
                let reqs: Vec<_> = (0..batch).map(|_| chat_request(&uris[t], &body)).collect();
                let start = Instant::now();
                for req in reqs {
                    black_box(round_trip(client, req).await);
                }
                let per = start.elapsed().as_secs_f64() / batch as f64;
                if round > 0 {
                    times[t].push(per);
                }
            }
        }
    });
    let ratio =
        |a: usize, b: usize| median(times[a].iter().zip(&times[b]).map(|(x, y)| x / y).collect());
    Interleaved {
        per_request: times.iter().map(|t| median(t.clone())).collect(),
        bare_over_direct: ratio(1, 0),
        switchboard_over_bare: ratio(2, 1),
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

fn summary(rt: &Runtime, client: &BenchClient, targets: &[Target]) {
    eprintln!();
    let (rounds, batch) = rounds_and_batch();
    eprintln!(
        "stack summary: targets interleaved, median of {rounds} rounds x {batch} sequential requests"
    );
    eprintln!(
        "{:<14} {:>10} {:>11} {:>12} {:>12} {:>17} {:>17}",
        "variant",
        "direct",
        "bare_proxy",
        "switchboard",
        "bare/direct",
        "switchboard/bare",
        "switchboard-bare"
    );
    for v in Variant::ALL {
        let r = interleaved(rt, client, targets, v);
        let us = |s: f64| format!("{:.1} µs", s * 1e6);
        eprintln!(
            "{:<14} {:>10} {:>11} {:>12} {:>12.2} {:>17.2} {:>17}",
            v.name(),
            us(r.per_request[0]),
            us(r.per_request[1]),
            us(r.per_request[2]),
            r.bare_over_direct,
            r.switchboard_over_bare,
            us(r.per_request[2] - r.per_request[1]),
        );
    }
    eprintln!("(ratios are medians of per-round ratios; lower is better)");
}

/// Whether criterion runs benchmarks (`cargo bench`), not tests (`cargo test --benches`,
/// `-- --test`) or a listing.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |f: &str| args.iter().any(|a| a == f);
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

fn main() {
    let servers = server_runtime();
    let targets = targets(&servers);
    let rt = client_runtime();
    let client = support::client();

    // Every target must answer every variant correctly before anything is timed.
    rt.block_on(async {
        for v in Variant::ALL {
            let sizes: Vec<String> = {
                let mut s = Vec::new();
                for t in &targets {
                    let n = support::check(&client, t.addr, v).await;
                    s.push(format!("{} {n} B", t.name));
                }
                s
            };
            eprintln!(
                "checked {} (request {} B): {}",
                v.name(),
                v.body().len(),
                sizes.join(", ")
            );
        }
    });

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    bench_stack(&mut c, &rt, &client, &targets);
    c.final_summary();

    if benchmarking() && std::env::var("SB_BENCH_SUMMARY").as_deref() != Ok("0") {
        summary(&rt, &client, &targets);
    }
}
