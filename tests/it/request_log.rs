//! The request log (`[log]`): a row for every ingress and outcome, readable through
//! `/api/v1/*` with the answer's own figures, per-key isolation, feedback, stats against
//! hand-computed figures, persistence across a restart, a database that stalls or vanishes.
//! Each scenario runs on SQLite and, when it is installed (required in CI), PostgreSQL.

use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use switchboard::catalog::ProviderKind;
use switchboard::cost::{CostRecord, CostSink};
use switchboard::demo::{DemoProviders, Fault};
use switchboard::ext::{Attempt, CacheStatus, CallerKey};
use switchboard::openai::Usage;
use switchboard::request_log::{Filter, GroupBy, LogOptions, NewFeedback, RequestLog, Sort};
use switchboard::server::{self, Running};
use switchboard::ErrorKind;

use crate::support::postgres_server::{self, PostgresServer};

/// Requests refused before the CostMeter (every status, every ingress) have rows too.
#[path = "request_log_refused.rs"]
mod refused;

const ALICE: &str = "Bearer sk-alice";
const BOB: &str = "Bearer sk-bob";

/// Where the log lives: a SQLite file (removed on drop) or a PostgreSQL server of our own.
enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres(PostgresServer),
}

impl Backend {
    fn sqlite() -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        Self::Sqlite(std::env::temp_dir().join(format!(
            "switchboard-log-{}-{}.db",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        )))
    }

    fn postgres() -> Option<Self> {
        postgres_server::start().map(Self::Postgres)
    }

    fn config(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("[log]\npath = \"{}\"\n", p.display()),
            Self::Postgres(pg) => format!("[log]\nurl = \"{}\"\n", pg.url),
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite://{}", p.display()),
            Self::Postgres(pg) => pg.url.clone(),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Self::Sqlite(p) = self {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
            }
        }
    }
}

struct Gw {
    running: Running,
    _config: TempFile,
}

struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn gateway(demo: &DemoProviders, backend: &Backend, extra: &str) -> Gw {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let config = std::env::temp_dir().join(format!(
        "switchboard-log-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    let text = format!(
        "{}\n{}{extra}\n[[keys]]\nname = \"alice\"\nkey = \"sk-alice\"\n\n\
         [[keys]]\nname = \"bob\"\nkey = \"sk-bob\"\n",
        demo.catalog_toml(),
        backend.config()
    );
    std::fs::write(&config, text).unwrap();
    let running =
        server::start(&server::Options::new(config.to_string_lossy()).listen("127.0.0.1:0"))
            .await
            .expect("the gateway starts");
    Gw {
        running,
        _config: TempFile(config),
    }
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn generation_id(&self) -> String {
        self.headers
            .get("x-generation-id")
            .expect("an x-generation-id header")
            .to_str()
            .unwrap()
            .to_owned()
    }
}

async fn call(
    g: &Gw,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let body = body.map_or_else(Bytes::new, |v| Bytes::from(serde_json::to_vec(&v).unwrap()));
    call_bytes(g, method, path, headers, body).await
}

async fn call_bytes(
    g: &Gw,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", g.running.addr()))
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        client.request(b.body(Full::new(body)).unwrap()),
    )
    .await
    .expect("answer in time")
    .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn chat(model: &str, stream: bool) -> Value {
    let mut v = json!({"model": model, "messages": [{"role": "user", "content": "hello log"}]});
    if stream {
        v["stream"] = json!(true);
        v["stream_options"] = json!({"include_usage": true});
    }
    v
}

/// The row of `id` as `auth` sees it, waiting (bounded) for the writer.
async fn row(g: &Gw, id: &str, auth: Option<&str>) -> Value {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    let started = Instant::now();
    loop {
        let r = call(
            g,
            "GET",
            &format!("/api/v1/generation?id={id}"),
            &headers,
            None,
        )
        .await;
        if r.status == 200 {
            return r.json()["data"].clone();
        }
        assert_eq!(r.status, 404, "{}", r.body);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no row for {id} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ids of an SSE answer's chunks.
fn chunk_ids(sse: &str) -> Vec<String> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}

async fn every_ingress_and_outcome(backend: Backend) {
    let demo = DemoProviders::start().await.unwrap();
    let g = gateway(&demo, &backend, "").await;
    let no_store = ("cache-control", "no-store");

    // A whole completion: the header is the body's id; the row has the answer's figures.
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[("authorization", ALICE), no_store],
        Some(chat("fast", false)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.generation_id();
    assert!(id.starts_with("gen-"), "{id}");
    let answer = r.json();
    assert_eq!(answer["id"], id);
    let first_seen = Instant::now();
    let row1 = row(&g, &id, Some(ALICE)).await;
    eprintln!("row readable after {:?}", first_seen.elapsed());
    assert_eq!(row1["id"], id);
    assert_eq!(row1["api_key_name"], "alice");
    assert_eq!(row1["requested_model"], "fast");
    assert_eq!(row1["model"], "openai/gpt-4o-mini");
    assert_eq!(row1["provider_name"], "openai");
    assert_eq!(row1["ingress"], "chat");
    assert_eq!(row1["status"], 200);
    assert_eq!(row1["streamed"], false);
    assert_eq!(row1["finish_reason"], "stop");
    assert_eq!(row1["tokens_prompt"], answer["usage"]["prompt_tokens"]);
    assert_eq!(
        row1["tokens_completion"],
        answer["usage"]["completion_tokens"]
    );
    let cost = answer["usage"]["cost"].as_f64().unwrap();
    assert!(
        (row1["total_cost"].as_f64().unwrap() - cost).abs() < 1e-12,
        "{row1}"
    );
    assert_eq!(row1["attempts"].as_array().unwrap().len(), 1);
    assert!(row1["latency"].as_i64().unwrap() >= 0);
    assert!(row1.get("prompt").is_none(), "bodies are off by default");

    // A stream: every chunk carries the generation id.
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[("authorization", ALICE), no_store],
        Some(chat("fast", true)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sid = r.generation_id();
    let ids = chunk_ids(&r.body);
    assert!(
        !ids.is_empty() && ids.iter().all(|i| *i == sid),
        "{ids:?} vs {sid}"
    );
    let srow = row(&g, &sid, Some(ALICE)).await;
    assert_eq!(srow["streamed"], true);
    assert_eq!(srow["finish_reason"], "stop");
    assert!(srow["time_to_first_token"].is_i64(), "{srow}");
    assert!(srow["tokens_completion"].as_i64().unwrap() > 0);

    // Anthropic Messages: `msg_` + the generation id.
    let r = call(
        &g,
        "POST",
        "/v1/messages",
        &[("x-api-key", "sk-alice"), no_store],
        Some(json!({
        "model": "fast", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mid = r.generation_id();
    assert_eq!(r.json()["id"], format!("msg_{mid}"));
    let mrow = row(&g, &format!("msg_{mid}"), Some(ALICE)).await;
    assert_eq!(mrow["id"], mid);
    assert_eq!(mrow["ingress"], "messages");

    // A fallback: the first attempt fails, the second serves.
    let openai = demo.server(ProviderKind::Openai);
    openai.faults().push(Fault::status(500));
    let mut body = chat("openai/gpt-4o-mini", false);
    body["models"] = json!(["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"]);
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[("authorization", ALICE), no_store],
        Some(body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let frow = row(&g, &r.generation_id(), Some(ALICE)).await;
    let attempts = frow["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{frow}");
    assert_ne!(attempts[0]["outcome"], "ok");
    assert_eq!(attempts[1]["outcome"], "ok");
    assert_eq!(frow["provider_name"], "anthropic");

    // An error: every attempt fails; the error answer has its id too.
    openai.faults().set_persistent(Some(Fault::status(500)));
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[("authorization", BOB), no_store],
        Some(chat("openai/gpt-4o-mini", false)),
    )
    .await;
    openai.faults().set_persistent(None);
    assert_eq!(r.status, 502, "{}", r.body);
    let erow = row(&g, &r.generation_id(), Some(BOB)).await;
    assert_eq!(erow["status"], 502);
    assert_eq!(erow["api_key_name"], "bob");
    assert!(erow["error_kind"].is_string(), "{erow}");
    assert!(erow["provider_name"].is_null());

    // A cache hit costs nothing.
    let body = chat("openai/gpt-4o", false);
    let r1 = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[("authorization", ALICE)],
        Some(body.clone()),
    )
    .await;
    let r2 = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[("authorization", ALICE)],
        Some(body),
    )
    .await;
    assert_eq!(r2.headers["x-switchboard-cache"], "HIT", "{}", r1.body);
    assert_ne!(r1.generation_id(), r2.generation_id());
    assert_eq!(r2.json()["id"], r2.generation_id());
    let hrow = row(&g, &r2.generation_id(), Some(ALICE)).await;
    assert_eq!(hrow["cache_status"], "HIT");
    assert_eq!(hrow["total_cost"], 0.0);

    // A stream the client abandons after its first bytes.
    openai
        .faults()
        .push(Fault::StallMidStream { after_chunks: 2 });
    // A raw socket, closed by the drop (a pooled client may keep an idle connection open).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = chat("fast", true).to_string();
    let mut sock = tokio::net::TcpStream::connect(g.running.addr())
        .await
        .unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: {ALICE}\r\n\
         cache-control: no-store\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The head and the first chunk, then the client goes away.
    while !String::from_utf8_lossy(&got).contains("data: ") {
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    drop(sock);
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let aid = text
        .lines()
        .find_map(|l| l.strip_prefix("x-generation-id: "))
        .expect("an x-generation-id")
        .trim()
        .to_owned();
    let arow = row(&g, &aid, Some(ALICE)).await;
    assert_eq!(arow["cancelled"], true, "{arow}");
    assert_eq!(arow["status"], 499);

    // Isolation: bob sees neither alice's row nor can rate it; the admin (loopback, no
    // admin key) sees everything.
    let r = call(
        &g,
        "GET",
        &format!("/api/v1/generation?id={id}"),
        &[("authorization", BOB)],
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "generation_not_found");
    let fb = |gid: &str, score: f64| json!({"generation_id": gid, "score": score, "label": "good"});
    let r = call(
        &g,
        "POST",
        "/api/v1/feedback",
        &[("authorization", BOB)],
        Some(fb(&id, 1.0)),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = call(
        &g,
        "POST",
        "/api/v1/feedback",
        &[("authorization", ALICE)],
        Some(fb(&id, 1.0)),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(
        &g,
        "POST",
        "/api/v1/feedback",
        &[("authorization", ALICE)],
        Some(fb(&id, -0.5)),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(
        &g,
        "POST",
        "/api/v1/feedback",
        &[("authorization", ALICE)],
        Some(fb(&id, 2.0)),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let long = json!({"generation_id": id, "score": 0, "comment": "x".repeat(5000)});
    let r = call(
        &g,
        "POST",
        "/api/v1/feedback",
        &[("authorization", ALICE)],
        Some(long),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let admin = row(&g, &id, None).await;
    assert_eq!(admin["feedback"].as_array().unwrap().len(), 2, "{admin}");
    let r = call(
        &g,
        "GET",
        "/api/v1/generation?id=x",
        &[("authorization", "Bearer sk-nobody")],
        None,
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);

    // Lists: a key lists its own rows only; the admin filters, sorts, pages, exports.
    let r = call(
        &g,
        "GET",
        "/api/v1/generations",
        &[("authorization", BOB)],
        None,
    )
    .await;
    let bob_rows = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(bob_rows.len(), 1, "{}", r.body);
    let r = call(
        &g,
        "GET",
        "/api/v1/generations?key=alice&limit=2",
        &[],
        None,
    )
    .await;
    let page = r.json();
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let mut seen: Vec<String> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    let mut cursor = page["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let r = call(
            &g,
            "GET",
            &format!("/api/v1/generations?key=alice&limit=2&cursor={c}"),
            &[],
            None,
        )
        .await;
        let p = r.json();
        seen.extend(
            p["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_owned()),
        );
        cursor = p["next_cursor"].as_str().map(str::to_owned);
    }
    let alice_rows = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), alice_rows, "pages do not overlap");
    assert!(seen.contains(&id) && seen.contains(&sid) && seen.contains(&aid));
    let r = call(
        &g,
        "GET",
        "/api/v1/generations?sort=-latency&status=error",
        &[],
        None,
    )
    .await;
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 1, "{}", r.body);
    let r = call(&g, "GET", "/api/v1/generations?format=csv", &[], None).await;
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_eq!(r.body.lines().count(), alice_rows + 1 + 1, "{}", r.body);

    // Stats: alice's requests and her feedback, against the rows.
    let r = call(&g, "GET", "/api/v1/stats?group_by=key", &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let data = r.json()["data"].as_array().unwrap().clone();
    let alice = data.iter().find(|d| d["key"] == "alice").unwrap();
    assert_eq!(alice["requests"], alice_rows as u64);
    assert_eq!(alice["fallbacks"], 1);
    assert_eq!(alice["cache_hits"], 1);
    assert_eq!(alice["feedback_count"], 2);
    assert_eq!(alice["feedback_mean"], 0.25);
    let bob = data.iter().find(|d| d["key"] == "bob").unwrap();
    assert_eq!(bob["errors"], 1);

    g.running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rows_for_every_ingress_and_outcome() {
    every_ingress_and_outcome(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_for_every_ingress_and_outcome() {
    if let Some(b) = Backend::postgres() {
        every_ingress_and_outcome(b).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_persist_across_a_restart() {
    let backend = Backend::sqlite();
    let demo = DemoProviders::start().await.unwrap();
    let g = gateway(&demo, &backend, "").await;
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[("authorization", ALICE)],
        Some(chat("fast", false)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.generation_id();
    // Shutdown flushes the queue: the row is there at once after the restart.
    g.running.shutdown(Duration::from_secs(5)).await;
    let g = gateway(&demo, &backend, "").await;
    let r = call(
        &g,
        "GET",
        &format!("/api/v1/generation?id={id}"),
        &[("authorization", ALICE)],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["data"]["api_key_name"], "alice");
    g.running.shutdown(Duration::from_secs(5)).await;
}

/// A record for the stats: key, served model, latency, ttft, cost, attempts, cache, error.
#[allow(clippy::too_many_arguments)]
fn record(
    id: &str,
    key: &str,
    model: &str,
    latency_ms: u64,
    ttft_ms: Option<u64>,
    tokens: (u64, u64),
    attempts: usize,
    cache: Option<CacheStatus>,
    error: Option<ErrorKind>,
) -> CostRecord {
    let mut r = CostRecord::default();
    r.generation_id = Some(id.into());
    r.caller = Some(CallerKey(key.into()));
    r.requested = Some("fast".into());
    r.provider = error.is_none().then(|| "p".into());
    r.model = Some(model.into());
    r.attempts = (0..attempts)
        .map(|i| Attempt {
            provider: "p".into(),
            model: model.into(),
            error: (i + 1 < attempts || error.is_some()).then_some(ErrorKind::Upstream),
        })
        .collect();
    r.usage = Some(Usage {
        prompt_tokens: tokens.0,
        completion_tokens: tokens.1,
        total_tokens: tokens.0 + tokens.1,
        ..Usage::default()
    });
    r.latency = Duration::from_millis(latency_ms);
    r.time_to_first_token = ttft_ms.map(Duration::from_millis);
    r.cache = cache;
    r.error = error;
    r
}

async fn stats_by_hand(backend: Backend) {
    let log = RequestLog::open(&backend.url(), LogOptions::default())
        .await
        .unwrap();
    // Key `a`, model m1: latencies 10, 20, …, 200 ms (20 rows); ttft = latency / 2.
    for i in 1..=20u64 {
        let cache = (i == 3).then_some(CacheStatus::Hit);
        let error = (i == 5).then_some(ErrorKind::Timeout);
        let attempts = if i % 4 == 0 { 2 } else { 1 };
        log.record_owned(record(
            &format!("gen-a{i}"),
            "a",
            "m1",
            i * 10,
            Some(i * 5),
            (100, 10),
            attempts,
            cache,
            error,
        ));
    }
    // Key `b`, model m2: 3 rows, latencies 7, 1, 4 ms, no ttft.
    for (i, l) in [7u64, 1, 4].into_iter().enumerate() {
        log.record_owned(record(
            &format!("gen-b{i}"),
            "b",
            "m2",
            l,
            None,
            (1, 2),
            1,
            None,
            None,
        ));
    }
    assert!(log.flush(Duration::from_secs(10)).await);
    for (gid, score) in [("gen-a1", 1.0), ("gen-a2", 0.0), ("gen-a2", -0.5)] {
        log.add_feedback(NewFeedback::new(gid, score), None)
            .await
            .unwrap()
            .unwrap();
    }
    let (data, truncated) = log
        .stats(&Filter::default(), &[GroupBy::Key, GroupBy::Model])
        .await
        .unwrap();
    assert!(!truncated);
    assert_eq!(data.len(), 2, "{data:?}");
    let a = &data[0];
    assert_eq!(
        (a["key"].as_str(), a["model"].as_str()),
        (Some("a"), Some("m1"))
    );
    assert_eq!(a["requests"], 20);
    assert_eq!(a["errors"], 1);
    assert_eq!(a["fallbacks"], 5);
    assert_eq!(a["cache_hits"], 1);
    assert_eq!(a["tokens_prompt"], 2000);
    assert_eq!(a["tokens_completion"], 200);
    // Nearest rank: p50 of 20 values is the 10th, p95 the 19th.
    assert_eq!(a["latency_p50_ms"], 100);
    assert_eq!(a["latency_p95_ms"], 190);
    assert_eq!(a["ttft_p50_ms"], 50);
    assert_eq!(a["ttft_p95_ms"], 95);
    assert_eq!(a["feedback_count"], 3);
    assert!((a["feedback_mean"].as_f64().unwrap() - 0.5 / 3.0).abs() < 1e-12);
    let b = &data[1];
    assert_eq!(b["requests"], 3);
    assert_eq!(b["latency_p50_ms"], 4);
    assert_eq!(b["latency_p95_ms"], 7);
    assert!(b["ttft_p50_ms"].is_null());
    assert!(b["feedback_mean"].is_null());
    // Filters and the newest-first page.
    let mut only_b = Filter::default();
    only_b.key = Some("b".into());
    let (data, _) = log.stats(&only_b, &[]).await.unwrap();
    assert_eq!(data[0]["requests"], 3);
    let page = log
        .generations(&Filter::default(), Sort::Latency, 3, None)
        .await
        .unwrap();
    let ids: Vec<&str> = page.data.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["gen-a20", "gen-a19", "gen-a18"]);
    let next = log
        .generations(
            &Filter::default(),
            Sort::Latency,
            3,
            page.next_cursor.as_deref(),
        )
        .await
        .unwrap();
    assert_eq!(next.data[0].id, "gen-a17");
    assert_eq!(log.dropped(), 0);
}

#[tokio::test]
async fn sqlite_stats_match_hand_computed_figures() {
    stats_by_hand(Backend::sqlite()).await;
}

#[tokio::test]
async fn postgres_stats_match_hand_computed_figures() {
    if let Some(b) = Backend::postgres() {
        stats_by_hand(b).await;
    }
}

/// Requests while the database is locked: all answered at once; the full queue drops rows
/// (counted); once the lock is gone new rows are written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sqlite_never_delays_requests() {
    let backend = Backend::sqlite();
    let demo = DemoProviders::start().await.unwrap();
    let g = gateway(&demo, &backend, "queue = 4\n").await;
    let log = g.running.request_log().unwrap().clone();
    // Another connection holds the write lock.
    use sqlx::Connection;
    let mut locker = sqlx::SqliteConnection::connect(&backend.url())
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    let started = Instant::now();
    for _ in 0..30 {
        let r = call(
            &g,
            "POST",
            "/v1/chat/completions",
            &[("authorization", ALICE), ("cache-control", "no-store")],
            Some(chat("fast", false)),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(log.dropped() > 0, "a full queue drops rows");
    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
    drop(locker);
    // Recovery: once the queue has drained, a new request's row is written.
    assert!(log.flush(Duration::from_secs(20)).await);
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[("authorization", ALICE)],
        Some(chat("fast", false)),
    )
    .await;
    row(&g, &r.generation_id(), Some(ALICE)).await;
    assert!(log.written() > 0);
    g.running.shutdown(Duration::from_secs(5)).await;
}

/// PostgreSQL goes away while requests flow, then comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanishing_postgres_never_fails_requests() {
    let Some(mut backend) = Backend::postgres() else {
        return;
    };
    let demo = DemoProviders::start().await.unwrap();
    let g = gateway(&demo, &backend, "").await;
    let log = g.running.request_log().unwrap().clone();
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[("authorization", ALICE)],
        Some(chat("fast", false)),
    )
    .await;
    row(&g, &r.generation_id(), Some(ALICE)).await;
    if let Backend::Postgres(pg) = &mut backend {
        pg.stop();
    }
    for _ in 0..10 {
        let r = call(
            &g,
            "POST",
            "/v1/chat/completions",
            &[("authorization", ALICE), ("cache-control", "no-store")],
            Some(chat("fast", false)),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = call(&g, "GET", "/api/v1/generations", &[], None).await;
    assert_eq!(r.status, 503, "{}", r.body);
    // The writer gives up on the batch it holds: dropped and counted.
    let waited = Instant::now();
    while log.dropped() == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "no drop counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Backend::Postgres(pg) = &mut backend {
        pg.resume();
    }
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[("authorization", ALICE), ("cache-control", "no-store")],
        Some(chat("fast", false)),
    )
    .await;
    row(&g, &r.generation_id(), Some(ALICE)).await;
    g.running.shutdown(Duration::from_secs(5)).await;
}
