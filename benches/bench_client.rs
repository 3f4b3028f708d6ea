//! A tiny sequential keep-alive client for the stack benchmarks: sends N requests of one
//! shape over one connection, each read to the end, then prints what it did.
//!
//! ```sh
//! cargo bench --features bench-support --bench bench_client -- --target http://127.0.0.1:PORT \
//!     [--variant nonstream_1k|nonstream_32k|stream_1k] [--requests 100] [--report-every 0]
//! ```
//!
//! A bench target (`harness = false`) only so that it can use `switchboard::bench_support`:
//! started without its options, as `cargo bench` starts every bench, it exits at once.
//!
//! The request bodies are the ones `benches/stack.rs` uses. The first request is checked
//! (status 200, a complete answer); any non-200 answer stops the client with an error.
//! `--report-every k` also prints the mean time of every k requests (to spot drift).
//! `scripts/callgrind.sh` drives `bench_server` with it. See BENCHMARKS.md.

use switchboard::bench_support::stack as support;
use switchboard::bench_support::stack::Variant;
use tokio::time::Instant;

const USAGE: &str = "usage: bench_client --target URL [--variant NAME] [--requests N] \
                     [--report-every K]";

fn main() {
    support::exit_unless_given(
        "bench_client",
        &["--target", "--variant", "--requests", "--report-every"],
        USAGE,
    );
    let Some(target) = support::arg("--target")
        .as_deref()
        .and_then(support::parse_addr)
    else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let variant = support::arg_or("--variant", Variant::Nonstream1k, Variant::parse, USAGE);
    let requests: usize = support::arg_or("--requests", 100, |s| s.parse().ok(), USAGE);
    let every: usize = support::arg_or("--report-every", 0, |s| s.parse().ok(), USAGE);
    support::runtime(0).block_on(async {
        let client = support::client();
        let uri = support::chat_uri(target);
        let body = variant.body();
        let start = Instant::now();
        let mut lap = start;
        let mut bytes = 0;
        for i in 0..requests {
            bytes += if i == 0 {
                support::check(&client, target, variant).await
            } else {
                support::round_trip(&client, support::chat_request(&uri, &body)).await
            };
            if every > 0 && (i + 1) % every == 0 {
                let per = lap.elapsed().as_secs_f64() / every as f64;
                println!("{:>8} requests: {:.1} µs/request", i + 1, per * 1e6);
                lap = Instant::now();
            }
        }
        let total = start.elapsed().as_secs_f64();
        println!(
            "{} x {} to {target}: {bytes} response bytes, {:.3} s, {:.1} µs/request",
            requests,
            variant.name(),
            total,
            total / requests.max(1) as f64 * 1e6
        );
    });
}
