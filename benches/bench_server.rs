//! One proxy of the stack benchmarks (the bare hyper proxy or switchboard) as its own
//! process, so that a profiler sees only the proxy.
//!
//! ```sh
//! cargo bench --features bench-support --bench bench_server -- \
//!     --mode switchboard|bare-proxy --upstream http://127.0.0.1:PORT \
//!     [--listen 127.0.0.1:0] [--workers 0]
//! ```
//!
//! A bench target (`harness = false`) only so that it can use `switchboard::bench_support`:
//! started without its options, as `cargo bench` starts every bench, it exits at once.
//!
//! `--upstream` is the origin of an OpenAI-compatible server (e.g. `bench_upstream`):
//! switchboard calls `{upstream}/v1/chat/completions`, the bare proxy forwards every path.
//! Prints the bound address on the first line of stdout and serves until SIGINT / SIGTERM.
//! `--workers 0` (default) runs a current-thread runtime, the most repeatable under
//! callgrind; `n` a multi-thread one with n workers. `scripts/callgrind.sh` runs it under
//! valgrind. See BENCHMARKS.md.

use switchboard::bench_support::stack as support;
use switchboard::bench_support::stack::Mode;

const USAGE: &str = "usage: bench_server --mode switchboard|bare-proxy --upstream URL \
                     [--listen ADDR] [--workers N]";

fn main() {
    support::exit_unless_given(
        "bench_server",
        &["--mode", "--upstream", "--listen", "--workers"],
        USAGE,
    );
    let Some(mode) = support::arg("--mode").as_deref().and_then(Mode::parse) else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let Some(upstream) = support::arg("--upstream")
        .as_deref()
        .and_then(support::parse_addr)
    else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let listen = support::arg_or("--listen", support::loopback(), support::parse_addr, USAGE);
    let workers = support::arg_or("--workers", 0, |s| s.parse().ok(), USAGE);
    support::runtime(workers).block_on(async {
        let listener = support::bind(listen).await;
        support::announce(&listener);
        tokio::select! {
            () = mode.serve(listener, upstream) => {}
            () = support::shutdown_signal() => {}
        }
    });
}
