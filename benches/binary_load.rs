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
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::{service_fn, Service};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use switchboard::bench_support::stack::{
    self as support, Canned, Mode, Variant, PATH, STREAM_CHUNKS,
};

/// The environment variable that starts this executable as a helper process.
const ROLE: &str = "SB_BINARY_LOAD_ROLE";
/// The upstream address a `bare-proxy` helper forwards to.
const ROLE_UPSTREAM: &str = "SB_BINARY_LOAD_UPSTREAM";
/// The bare proxy helper's worker threads.
const ROLE_WORKERS: &str = "SB_BINARY_LOAD_WORKERS";

/// The default configurations of the binary (names as in `scripts/callgrind.sh`).
const DEFAULT_MODES: &str =
    "gateway gateway-miss gateway-miss-nolog gateway-miss-nodb gateway-miss-nolog-nodb";

/// Index of `bare_proxy` in the target list (the reference for every ratio; `direct` is 0).
const BARE: usize = 1;

/// SSE frames of a stream beyond the single frame of a whole answer: the chunks with choices,
/// the usage chunk and `[DONE]`, minus one.
const EXTRA_FRAMES: usize = STREAM_CHUNKS + 2 - 1;

/// Nanoseconds since the Unix epoch (comparable between processes, unlike `Instant`).
fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

// ---------------------------------------------------------------------------------------------
// The helper processes: the stamping upstream and the bare proxy

/// The upstream's body; a stream's first frame writes its wall-clock stamp to stdout.
struct Stamped {
    inner: Canned,
    stamp: bool,
}

impl Body for Stamped {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.stamp && matches!(polled, Poll::Ready(Some(_))) {
            this.stamp = false;
            let now = wall_nanos();
            let _ = writeln!(std::io::stdout().lock(), "{now}");
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

/// `support::upstream()` with the first frame of every stream stamped.
fn stamped_upstream() -> impl Service<
    Request<Incoming>,
    Response = Response<Stamped>,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    let upstream = support::upstream();
    service_fn(move |req: Request<Incoming>| {
        let answer = upstream.call(req);
        async move {
            let resp = answer.await?;
            let stamp = resp
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v == "text/event-stream");
            Ok(resp.map(|inner| Stamped { inner, stamp }))
        }
    })
}

/// Runs this executable as a helper (`upstream` or `bare-proxy`) until its stdin closes.
fn helper(role: &str) {
    // The bench holds the other end of stdin: when it is gone, so is this process.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    match role {
        "upstream" => support::runtime(0).block_on(async {
            let listener = support::bind(support::loopback()).await;
            support::announce(&listener);
            support::serve(listener, stamped_upstream()).await;
        }),
        "bare-proxy" => {
            let upstream = std::env::var(ROLE_UPSTREAM)
                .ok()
                .and_then(|s| support::parse_addr(&s))
                .expect("the bench passes the upstream's address");
            let workers = std::env::var(ROLE_WORKERS)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            support::runtime(workers).block_on(async {
                let listener = support::bind(support::loopback()).await;
                support::announce(&listener);
                Mode::BareProxy.serve(listener, upstream).await;
            });
        }
        other => panic!("unknown {ROLE}: {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Starting and stopping the processes

/// The latest stream stamp the upstream printed (nanoseconds since the epoch).
#[derive(Debug, Default)]
struct Stamps {
    latest: Mutex<u64>,
    changed: Condvar,
}

impl Stamps {
    /// The first stamp at or after `since`, waiting up to `timeout` for it.
    fn wait(&self, since: u64, timeout: Duration) -> Option<u64> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let (latest, _) = self
            .changed
            .wait_timeout_while(latest, timeout, |l| *l < since)
            .unwrap_or_else(PoisonError::into_inner);
        (*latest >= since).then_some(*latest)
    }

    fn set(&self, stamp: u64) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        self.changed.notify_all();
    }
}

/// The child processes and the temporary directory; dropping it kills the children (also when
/// the bench panics) and removes the directory.
#[derive(Debug)]
struct Processes {
    children: Vec<(String, Child)>,
    dir: PathBuf,
}

impl Processes {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("switchboard-binary-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Self {
            children: Vec::new(),
            dir,
        }
    }

    /// Starts this executable as helper `role`; returns its pid and its stdout (address first).
    fn helper(
        &mut self,
        role: &str,
        env: &[(&str, String)],
    ) -> (u32, BufReader<std::process::ChildStdout>) {
        let exe = std::env::current_exe().expect("the bench knows its own executable");
        let mut cmd = Command::new(exe);
        cmd.env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {role} helper: {e}"));
        let pid = child.id();
        let out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        self.children.push((role.to_owned(), child));
        (pid, out)
    }

    /// Starts the binary in `mode` in front of `upstream`; returns its pid and address.
    fn gateway(
        &mut self,
        bin: &Path,
        mode: &GatewayMode,
        upstream: SocketAddr,
    ) -> (u32, SocketAddr) {
        let config = mode.config(&self.dir);
        let config_path = self.dir.join(format!("{}.toml", mode.name));
        std::fs::write(&config_path, config).expect("the temporary directory is writable");
        let stdout_path = self.dir.join(format!("{}.stdout", mode.name));
        let stderr_path = self.dir.join(format!("{}.stderr", mode.name));
        let file = |p: &Path| {
            std::fs::File::create(p)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()))
        };
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config_path)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", if mode.nolog { "off" } else { "info" })
            .env("OPENAI_API_KEY", "k")
            .env("OPENAI_BASE_URL", format!("http://{upstream}/v1"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file(&stdout_path))
            .stderr(file(&stderr_path))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let pid = child.id();
        self.children.push((mode.name.clone(), child));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(addr) = out
                .lines()
                .find_map(|l| l.strip_prefix("switchboard listening on http://"))
                .and_then(support::parse_addr)
            {
                return (pid, addr);
            }
            let (_, child) = self.children.last_mut().expect("just pushed");
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!(
                    "{} did not start ({exited:?}):\nstdout:\n{out}\nstderr:\n{err}",
                    mode.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads a helper's first stdout line: its address.
fn read_addr(role: &str, out: &mut impl BufRead) -> SocketAddr {
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    support::parse_addr(line.trim())
        .unwrap_or_else(|| panic!("the {role} helper did not print its address: {line:?}"))
}

/// One configuration of the binary (a name of `scripts/callgrind.sh`).
#[derive(Debug, Clone)]
struct GatewayMode {
    name: String,
    /// The cache off: every request forwarded.
    miss: bool,
    /// `RUST_LOG=off`.
    nolog: bool,
    /// No request log.
    nodb: bool,
}

impl GatewayMode {
    fn parse(name: &str) -> Self {
        let mut mode = Self {
            name: name.to_owned(),
            miss: false,
            nolog: false,
            nodb: false,
        };
        let Some(mut rest) = name.strip_prefix("gateway") else {
            panic!("unknown mode {name}: gateway[-miss][-nolog][-nodb]");
        };
        while !rest.is_empty() {
            let flag = if let Some(r) = rest.strip_prefix("-miss") {
                rest = r;
                &mut mode.miss
            } else if let Some(r) = rest.strip_prefix("-nolog") {
                rest = r;
                &mut mode.nolog
            } else if let Some(r) = rest.strip_prefix("-nodb") {
                rest = r;
                &mut mode.nodb
            } else {
                panic!("unknown mode {name}: gateway[-miss][-nolog][-nodb]");
            };
            *flag = true;
        }
        mode
    }

    /// `examples/gateway.toml` with the cache and the request log as this mode says (the same
    /// edits as `scripts/callgrind.sh`).
    fn config(&self, dir: &Path) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.toml");
        let example = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let db = dir.join(format!("{}.db", self.name));
        let (mut cache_lines, mut log_lines) = (0, 0);
        let mut out = String::with_capacity(example.len() + 128);
        for line in example.lines() {
            if line == "enabled = true" {
                cache_lines += 1;
                out.push_str(if self.miss { "enabled = false" } else { line });
            } else if line == r#"path = "switchboard.db""# {
                log_lines += 1;
                if !self.nodb {
                    out.push_str(&format!("path = {:?}", db.display().to_string()));
                }
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        assert!(
            cache_lines == 1 && log_lines == 1,
            "examples/gateway.toml no longer has exactly one `enabled = true` ([cache]) and \
             one `path = \"switchboard.db\"` ([log]): update this bench and scripts/callgrind.sh"
        );
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Targets

/// One thing to measure.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    addr: SocketAddr,
    /// The proxy process whose CPU is measured (none for `direct`).
    pid: Option<u32>,
    /// Whether it forwards streams (not a cache HIT).
    streams: bool,
}

/// The processes whose CPU every round reads: the target's proxy, the upstream, this client.
#[derive(Debug, Clone, Copy)]
struct Pids {
    upstream: u32,
    client: u32,
}

/// Starts every process; returns the targets, the upstream's stamps and the pids.
fn start(procs: &mut Processes, modes: &[GatewayMode]) -> (Vec<Target>, Arc<Stamps>, Pids) {
    let (up_pid, mut up_out) = procs.helper("upstream", &[]);
    let up_addr = read_addr("upstream", &mut up_out);
    let stamps = Arc::new(Stamps::default());
    {
        let stamps = stamps.clone();
        std::thread::spawn(move || {
            for line in up_out.lines() {
                let Ok(line) = line else { break };
                if let Ok(stamp) = line.trim().parse() {
                    stamps.set(stamp);
                }
            }
        });
    }
    let workers = env_u64("SB_BARE_WORKERS", 0)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let (bare_pid, mut bare_out) = procs.helper(
        "bare-proxy",
        &[
            (ROLE_UPSTREAM, up_addr.to_string()),
            (ROLE_WORKERS, workers.to_string()),
        ],
    );
    let bare_addr = read_addr("bare-proxy", &mut bare_out);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut bare_out, &mut std::io::sink());
    });
    let mut targets = vec![
        Target {
            name: "direct".to_owned(),
            addr: up_addr,
            pid: None,
            streams: true,
        },
        Target {
            name: "bare_proxy".to_owned(),
            addr: bare_addr,
            pid: Some(bare_pid),
            streams: true,
        },
    ];
    if !modes.is_empty() {
        let bin = switchboard_bin();
        for mode in modes {
            let (pid, addr) = procs.gateway(&bin, mode, up_addr);
            targets.push(Target {
                name: mode.name.clone(),
                addr,
                pid: Some(pid),
                streams: mode.miss,
            });
        }
    }
    let pids = Pids {
        upstream: up_pid,
        client: std::process::id(),
    };
    (targets, stamps, pids)
}

/// The binary: `SB_SWITCHBOARD_BIN`, else the one cargo built with this bench.
fn switchboard_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SB_SWITCHBOARD_BIN") {
        return PathBuf::from(p);
    }
    match option_env!("CARGO_BIN_EXE_switchboard") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "the switchboard binary was not built with this bench (it needs the default \
             feature `server`); set SB_SWITCHBOARD_BIN or SB_BINARY_MODES=\"\""
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Client (as in benches/load.rs, with errors counted instead of fatal)

/// One keep-alive connection to `addr`, its driver spawned on the current runtime.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = TcpStream::connect(addr)
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

/// A chat request in origin form, as a client on a connection sends it.
fn request(host: &HeaderValue, body: &Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = http::Uri::from_static(PATH);
    let h = req.headers_mut();
    h.insert(HOST, host.clone());
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer k"));
    req
}

/// Timings of one request (nanoseconds).
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Request sent → end of the body.
    total: u64,
    /// Request sent → first body frame.
    first: u64,
    /// Upstream's stamp of its first frame → client's first frame (streams with stamps only).
    forward: Option<u64>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Why a request did not count.
enum Failure {
    /// A non-200 answer (read to the end; the connection stays).
    Status(String),
    /// The connection is unusable.
    Connection(String),
}

/// Sends one request on `send` and reads the body to the end.
async fn one(
    send: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    stamps: Option<&Stamps>,
) -> Result<Sample, Failure> {
    send.ready()
        .await
        .map_err(|e| Failure::Connection(format!("connection closed: {e}")))?;
    let sent_wall = wall_nanos();
    let start = Instant::now();
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| Failure::Connection(format!("request failed: {e}")))?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut first = None;
    let mut first_wall = 0;
    let mut error_body = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Connection(format!("response body failed: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if first.is_none() {
                first = Some(start.elapsed());
                first_wall = wall_nanos();
            }
            if status != StatusCode::OK && error_body.len() < 300 {
                error_body.extend_from_slice(data);
            }
        }
    }
    let total = start.elapsed();
    if status != StatusCode::OK {
        return Err(Failure::Status(format!(
            "{status}: {}",
            String::from_utf8_lossy(&error_body)
        )));
    }
    // The stamp is written before the proxy can see the frame, so it is there by now unless
    // the reader thread has not run yet.
    let forward = stamps
        .and_then(|s| s.wait(sent_wall, Duration::from_millis(50)))
        .map(|stamp| first_wall.saturating_sub(stamp));
    Ok(Sample {
        total: nanos(total),
        first: nanos(first.unwrap_or(total)),
        forward,
    })
}

/// What one connection did in one phase.
#[derive(Debug, Default)]
struct ConnResult {
    samples: Vec<Sample>,
    errors: u64,
    first_error: Option<String>,
}

/// Keeps every connection busy with `body` until `for_` has passed; returns the connections
/// (`None` where one broke and could not be replaced), what they did and the wall time.
async fn phase(
    conns: Vec<Option<SendRequest<Full<Bytes>>>>,
    addr: SocketAddr,
    body: &Bytes,
    for_: Duration,
    stamps: Option<&Arc<Stamps>>,
) -> (Vec<Option<SendRequest<Full<Bytes>>>>, ConnResult, Duration) {
    let host =
        HeaderValue::from_str(&addr.to_string()).expect("a socket address is a valid header value");
    let start = Instant::now();
    let deadline = start + for_;
    let mut tasks = Vec::with_capacity(conns.len());
    for mut send in conns {
        let host = host.clone();
        let body = body.clone();
        let stamps = stamps.cloned();
        tasks.push(tokio::spawn(async move {
            let mut r = ConnResult {
                samples: Vec::with_capacity(4096),
                ..ConnResult::default()
            };
            let fail = |r: &mut ConnResult, e: String| {
                r.errors += 1;
                r.first_error.get_or_insert(e);
            };
            while Instant::now() < deadline {
                let s = match send.as_mut() {
                    Some(s) => s,
                    None => match connect(addr).await {
                        Ok(s) => send.insert(s),
                        Err(e) => {
                            fail(&mut r, e);
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            continue;
                        }
                    },
                };
                match one(s, request(&host, &body), stamps.as_deref()).await {
                    Ok(sample) => r.samples.push(sample),
                    Err(Failure::Status(e)) => fail(&mut r, e),
                    Err(Failure::Connection(e)) => {
                        fail(&mut r, e);
                        send = None;
                    }
                }
            }
            (send, r)
        }));
    }
    let mut conns = Vec::with_capacity(tasks.len());
    let mut all = ConnResult::default();
    for t in tasks {
        let (send, r) = t.await.expect("a client task panicked");
        conns.push(send);
        all.samples.extend(r.samples);
        all.errors += r.errors;
        if all.first_error.is_none() {
            all.first_error = r.first_error;
        }
    }
    (conns, all, start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// CPU time

/// A process's user + system CPU time so far, in clock ticks (`/proc/PID/stat` fields 14 and
/// 15, every thread, live or exited), or `None` where that file does not exist.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The machine's busy (user, nice, system, irq, softirq, steal) and total CPU ticks so far,
/// over every core (the `cpu` line of `/proc/stat`), or `None` where that file does not exist.
fn machine_ticks() -> Option<[u64; 2]> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = f[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    Some([busy, busy + idle + iowait])
}

/// Seconds per clock tick (`getconf CLK_TCK`, 100 if that fails: Linux's `USER_HZ`).
fn tick_seconds() -> f64 {
    let hz = Command::new("getconf")
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

fn env_u64(k: &str, default: u64) -> Option<u64> {
    match std::env::var(k) {
        Ok(v) => v.parse().ok().filter(|n| *n > 0),
        Err(_) => (default > 0).then_some(default),
    }
}

/// Rounds, round length and warm-up; a few milliseconds when not run by `cargo bench`.
#[derive(Debug, Clone, Copy)]
struct Plan {
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
struct Tally {
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
fn add_ticks(sum: Option<u64>, before: Option<u64>, after: Option<u64>) -> Option<u64> {
    match (sum, before, after) {
        (Some(sum), Some(b), Some(a)) => Some(sum + a.saturating_sub(b)),
        _ => None,
    }
}

/// What every phase runs on.
#[derive(Debug, Clone, Copy)]
struct Setup<'a> {
    rt: &'a tokio::runtime::Runtime,
    targets: &'a [Target],
    plan: Plan,
    pids: Pids,
}

/// Runs `variant` on `connections` connections per target, interleaved; one tally per target
/// (`None` for the targets left out).
fn run(
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

// ---------------------------------------------------------------------------------------------
// Reports

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64
}

fn pcts(values: impl Iterator<Item = u64>) -> (f64, f64) {
    let mut v: Vec<u64> = values.collect();
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

fn opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

/// The median (range) of a target's per-round throughput ratios to `bare_proxy`.
fn round_ratios(t: &Tally, bare: &Tally) -> (f64, f64, f64) {
    let r: Vec<f64> = t
        .per_round
        .iter()
        .zip(&bare.per_round)
        .map(|(a, b)| a / b)
        .collect();
    let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(r), lo, hi)
}

fn print_load(title: &str, targets: &[Target], tallies: &[Option<Tally>], tick: f64) {
    println!("\n#### {title}\n");
    println!(
        "| target | req/s | × bare | per round × bare: median (range) | p50 µs | p99 µs | proxy CPU/req µs | × bare | upstream + client CPU/req µs | machine CPU: bench / others | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let bare = tallies[BARE]
        .as_ref()
        .expect("bare_proxy is always measured");
    let bare_cpu = bare.cpu_us(tick);
    for (t, tally) in targets.iter().zip(tallies) {
        let Some(tally) = tally else { continue };
        let (p50, p99) = pcts(tally.samples.iter().map(|s| s.total));
        let (mid, lo, hi) = round_ratios(tally, bare);
        let cpu = tally.cpu_us(tick);
        println!(
            "| {} | {:.0} | {:.2} | {mid:.2} ({lo:.2}–{hi:.2}) | {} | {} | {} | {} | {} | {} | {} |",
            t.name,
            tally.rate(),
            tally.rate() / bare.rate(),
            us(p50),
            us(p99),
            opt(cpu, 1),
            opt(cpu.zip(bare_cpu).map(|(c, b)| c / b), 2),
            opt(tally.others_us(tick), 1),
            shares(tally),
            tally.errors,
        );
    }
    report_errors(targets, tallies);
}

fn print_streams(title: &str, targets: &[Target], tallies: &[Option<Tally>], tick: f64) {
    println!("\n#### {title}\n");
    println!(
        "| target | streams/s | TTFB p50 µs | TTFB p99 µs | total p50 µs | first-chunk delay p50 µs | p99 µs | − bare p50 µs | proxy CPU/stream µs | × bare | machine CPU: bench / others | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let bare = tallies[BARE]
        .as_ref()
        .expect("bare_proxy is always measured");
    let (b50, _) = pcts(bare.samples.iter().filter_map(|s| s.forward));
    let bare_cpu = bare.cpu_us(tick);
    for (t, tally) in targets.iter().zip(tallies) {
        let Some(tally) = tally else { continue };
        let (f50, f99) = pcts(tally.samples.iter().map(|s| s.first));
        let (t50, _) = pcts(tally.samples.iter().map(|s| s.total));
        let (w50, w99) = pcts(tally.samples.iter().filter_map(|s| s.forward));
        let cpu = tally.cpu_us(tick);
        let stamped = tally.samples.iter().filter(|s| s.forward.is_some()).count();
        let delay = |v: f64| {
            if stamped == 0 {
                "–".to_owned()
            } else {
                us(v)
            }
        };
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.name,
            tally.rate(),
            us(f50),
            us(f99),
            us(t50),
            delay(w50),
            delay(w99),
            if t.pid.is_some() {
                delay(w50 - b50)
            } else {
                "–".to_owned()
            },
            opt(cpu, 1),
            opt(cpu.zip(bare_cpu).map(|(c, b)| c / b), 2),
            shares(tally),
            tally.errors,
        );
        let missing = tally.samples.len() - stamped;
        if missing > 0 && stamped > 0 {
            println!("<!-- {}: {missing} streams without a stamp -->", t.name);
        }
    }
    report_errors(targets, tallies);
}

/// The machine CPU cell: the bench's three processes / everything else.
fn shares(tally: &Tally) -> String {
    tally.machine_shares().map_or_else(
        || "–".to_owned(),
        |(ours, others)| format!("{:.0} % / {:.0} %", ours * 100.0, others * 100.0),
    )
}

fn report_errors(targets: &[Target], tallies: &[Option<Tally>]) {
    for (t, tally) in targets.iter().zip(tallies) {
        if let Some(Tally {
            errors,
            first_error: Some(e),
            ..
        }) = tally
        {
            println!("\n{}: {errors} errors, the first: {e}", t.name);
        }
    }
}

/// The per-chunk CPU estimate of each target, in µs: (CPU per stream − CPU per whole answer)
/// ÷ the extra frames.
fn per_chunk(whole: &[Option<Tally>], streams: &[Option<Tally>], tick: f64) -> Vec<Option<f64>> {
    whole
        .iter()
        .zip(streams)
        .map(|(w, s)| {
            let w = w.as_ref()?.cpu_us(tick)?;
            let s = s.as_ref()?.cpu_us(tick)?;
            Some((s - w) / EXTRA_FRAMES as f64)
        })
        .collect()
}

/// The issue's targets, one row per configuration of the binary.
fn print_summary(targets: &[Target], r: &Results, tick: f64) {
    let bare32 = r.whole32[BARE]
        .as_ref()
        .expect("bare_proxy is always measured");
    let bare_cpu = bare32.cpu_us(tick);
    let chunk = per_chunk(&r.whole32, &r.streams32, tick);
    let bare_fwd = r.streams1[BARE]
        .as_ref()
        .map(|t| pcts(t.samples.iter().filter_map(|s| s.forward)).0);
    println!("\n#### Against the targets (× bare proxy, same run)\n");
    println!(
        "| target | throughput, 1 KiB, 32 conns (≥ 0.8): total / per-round median | proxy CPU per request, 32 conns (≤ 1.5) | first chunk − bare, p50 µs (≤ 30) | per-chunk CPU µs (≤ 1.2×) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (k, t) in targets.iter().enumerate().skip(BARE) {
        let Some(w) = r.whole32[k].as_ref() else {
            continue;
        };
        let (mid, _, _) = round_ratios(w, bare32);
        let cpu = w.cpu_us(tick).zip(bare_cpu).map(|(c, b)| c / b);
        let fwd = r.streams1[k].as_ref().and_then(|s| {
            let (w50, _) = pcts(s.samples.iter().filter_map(|x| x.forward));
            bare_fwd.map(|b| w50 - b)
        });
        let chunk_cell = match (chunk[k], chunk[BARE]) {
            (Some(c), Some(b)) => format!("{c:.2} ({:.2}×)", c / b),
            _ => "–".to_owned(),
        };
        println!(
            "| {} | {:.2} / {mid:.2} | {} | {} | {chunk_cell} |",
            t.name,
            w.rate() / bare32.rate(),
            opt(cpu, 2),
            fwd.map_or_else(|| "–".to_owned(), us),
        );
    }
    println!(
        "\n(per-chunk: (proxy CPU per stream − per whole answer) ÷ {EXTRA_FRAMES} extra frames, both at 32 connections)"
    );
}

/// Every phase's tallies.
#[derive(Debug)]
struct Results {
    whole32: Vec<Option<Tally>>,
    streams1: Vec<Option<Tally>>,
    streams32: Vec<Option<Tally>>,
}

/// Prints each binary's dropped-line and error counters from `/metrics`, and the warnings and
/// errors of its log.
fn print_gateway_health(rt: &tokio::runtime::Runtime, targets: &[Target], dir: &Path) {
    println!("\n#### The binary's own counters after the run\n");
    let client = support::client();
    for t in targets.iter().skip(BARE + 1) {
        let uri: http::Uri = format!("http://{}/metrics", t.addr)
            .parse()
            .expect("a socket address makes a valid URI");
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = uri;
        let (status, body) = rt.block_on(support::fetch(&client, req));
        let text = String::from_utf8_lossy(&body);
        let counters: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.starts_with('#')
                    && (l.contains("dropped") || l.starts_with("switchboard_errors_total"))
            })
            .collect();
        let log =
            std::fs::read_to_string(dir.join(format!("{}.stdout", t.name))).unwrap_or_default();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        println!(
            "- {}: /metrics {status}; {}; {} WARN/ERROR log lines{}",
            t.name,
            if counters.is_empty() {
                "no dropped-line or error counters".to_owned()
            } else {
                counters.join(", ")
            },
            warnings.len(),
            warnings
                .first()
                .map_or_else(String::new, |w| format!(", the first: {w}")),
        );
    }
}

/// Whether this is `cargo bench` (not `cargo test --benches`, which gets a smoke run).
fn benchmarking() -> bool {
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
