//! The fast OpenAI-compatible upstream of the stack benchmarks, as its own process.
//!
//! ```sh
//! cargo bench --features bench-support --bench bench_upstream -- --listen 127.0.0.1:0 [--workers 0]
//! ```
//!
//! A bench target (`harness = false`) only so that it can use `switchboard::bench_support`:
//! started without its options, as `cargo bench` starts every bench, it exits at once (so give
//! at least `--listen`).
//!
//! Answers `POST /v1/chat/completions` with a canned `chat.completion`, or with a canned SSE
//! stream (20 chunks, a usage chunk, `[DONE]`) when the body contains `"stream":true`. Prints
//! the bound address on the first line of stdout and serves until SIGINT / SIGTERM.
//! `--workers 0` (default) runs a current-thread runtime; `n` a multi-thread one.
//! The same upstream runs in process in `benches/stack.rs`; `scripts/callgrind.sh` starts this
//! one. See BENCHMARKS.md.

use switchboard::bench_support::stack as support;

const USAGE: &str = "usage: bench_upstream --listen ADDR [--workers N]";

fn main() {
    support::exit_unless_given("bench_upstream", &["--listen", "--workers"], USAGE);
    let listen = support::arg_or("--listen", support::loopback(), support::parse_addr, USAGE);
    let workers = support::arg_or("--workers", 0, |s| s.parse().ok(), USAGE);
    support::runtime(workers).block_on(async {
        let listener = support::bind(listen).await;
        support::announce(&listener);
        tokio::select! {
            () = support::serve(listener, support::upstream()) => {}
            () = support::shutdown_signal() => {}
        }
    });
}
