//! The benches' shared code, behind the non-default feature `bench-support`: hidden from the
//! docs and not a public API (it changes with the benches, in any release). It lives in the
//! crate so that every bench target can use it without including files by path.
//!
//! - [`stack`]: the whole-stack benchmarks' servers (the fast upstream, the bare hyper proxy,
//!   switchboard), client and request shapes; used by `benches/stack.rs`, `benches/load.rs` and
//!   the `bench_upstream` / `bench_server` / `bench_client` programs that
//!   `scripts/callgrind.sh` runs;
//! - [`micro`]: the harness and fixtures of the per-layer micro-benchmarks
//!   (`benches/layers.rs`, `benches/cache.rs`, `benches/codecs.rs`).
//!
//! ```sh
//! cargo bench --features bench-support                 # every bench
//! cargo bench --features bench-support --bench layers  # one
//! ```
//!
//! See BENCHMARKS.md.

pub mod micro;
pub mod stack;
