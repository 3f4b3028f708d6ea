//! Shadow routing (`[[routing.shadows]]`): the client sees the primary only, however slow the
//! candidate; the candidate gets the sampled copies; `sample = 0` sends none;
//! `max_concurrency` skips and counts; the log links the two; the compare API aggregates
//! them (hand-computed figures); copies are not charged to the caller's budget.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use switchboard::catalog::ProviderKind;
use switchboard::chat::ChatHttpRequest;
use switchboard::cost::{
    Budget, Budgets, CostMeterLayer, CostRecord, CostSink, MemoryBudgetStore, Window,
};
use switchboard::demo::{DemoConfig, DemoProviders, DemoServer};
use switchboard::ext::CallerKey;
use switchboard::openai::ChatRequest;
use switchboard::server::{self, Running};
use switchboard::shadow::{ShadowLayer, ShadowRule};
use switchboard::Gateway;
use tokio::time::Instant;
use tower::ServiceExt;

const HAIKU: &str = "anthropic/claude-3-5-haiku";

struct Gw {
    running: Running,
    files: Vec<std::path::PathBuf>,
}

impl Drop for Gw {
    fn drop(&mut self) {
        for f in &self.files {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
            }
        }
    }
}

/// The gateway over the demo providers (Anthropic at `anthropic`'s address), with a SQLite log
/// keeping bodies, and `extra` config.
async fn gateway(demo: &DemoProviders, anthropic: &DemoServer, extra: &str) -> Gw {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir();
    let db = dir.join(format!("switchboard-shadow-{}-{n}.db", std::process::id()));
    let config = dir.join(format!(
        "switchboard-shadow-{}-{n}.toml",
        std::process::id()
    ));
    let catalog = demo
        .catalog_toml()
        .replace(&demo.anthropic.base_url(), &anthropic.base_url());
    let text = format!(
        "{catalog}\n[log]\npath = \"{}\"\nbodies = true\n\n{extra}\n",
        db.display()
    );
    std::fs::write(&config, text).unwrap();
    let running =
        server::start(&server::Options::new(config.to_string_lossy()).listen("127.0.0.1:0"))
            .await
            .expect("the gateway starts");
    Gw {
        running,
        files: vec![db, config],
    }
}

fn shadow_rule(source: &str, candidate: &str, sample: f64, max: usize) -> String {
    format!(
        "[[routing.shadows]]\nsource = \"{source}\"\ncandidate = \"{candidate}\"\n\
         sample = {sample:?}\nmax_concurrency = {max}\n\n"
    )
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
    fn id(&self) -> String {
        self.headers["x-generation-id"].to_str().unwrap().to_owned()
    }
}

async fn call(
    g: &Gw,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", g.running.addr()))
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let body = body.map_or_else(Bytes::new, |v| Bytes::from(serde_json::to_vec(&v).unwrap()));
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

fn chat(model: &str, text: &str, stream: bool) -> Value {
    let mut v = json!({"model": model, "messages": [{"role": "user", "content": text}]});
    if stream {
        v["stream"] = json!(true);
        v["stream_options"] = json!({"include_usage": true});
    }
    v
}

const NO_STORE: (&str, &str) = ("cache-control", "no-store");

/// The row of `id`, waiting (bounded) for the writer; `until` says when it is complete.
async fn row_where(g: &Gw, id: &str, until: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let r = call(g, "GET", &format!("/api/v1/generation?id={id}"), &[], None).await;
        if r.status == 200 {
            let v = r.json()["data"].clone();
            if until(&v) {
                return v;
            }
        } else {
            assert_eq!(r.status, 404, "{}", r.body);
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "row {id} not complete after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn row(g: &Gw, id: &str) -> Value {
    row_where(g, id, |_| true).await
}

#[tokio::test]
async fn the_client_sees_the_primary_unchanged_and_the_log_links_the_copy() {
    let demo = DemoProviders::start().await.unwrap();
    let slow = DemoServer::start(
        ProviderKind::Anthropic,
        DemoConfig::default().with_latency(Duration::from_millis(1500)),
    )
    .await
    .unwrap();
    let plain = gateway(&demo, &slow, "").await;
    let g = gateway(&demo, &slow, &shadow_rule("fast", HAIKU, 1.0, 4)).await;

    // Without shadows, the answer the client gets.
    let baseline = call(
        &plain,
        "POST",
        "/v1/chat/completions",
        &[NO_STORE],
        Some(chat("fast", "shadow me", false)),
    )
    .await;
    assert_eq!(baseline.status, 200, "{}", baseline.body);
    assert_eq!(slow.request_count(), 0);

    // With them: the same answer, as fast, although the candidate takes 1.5 s.
    let started = Instant::now();
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[NO_STORE],
        Some(chat("fast", "shadow me", false)),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        took < Duration::from_millis(1000),
        "the primary waited: {took:?}"
    );
    let (a, b) = (r.json(), baseline.json());
    assert_eq!(a["model"], "openai/gpt-4o-mini");
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["usage"]["prompt_tokens"], b["usage"]["prompt_tokens"]);
    assert_eq!(
        r.headers["x-switchboard-cost"],
        baseline.headers["x-switchboard-cost"]
    );

    // A stream: its chunks are not held either.
    let started = Instant::now();
    let s = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[NO_STORE],
        Some(chat("fast", "stream me", true)),
    )
    .await;
    assert_eq!(s.status, 200);
    assert!(s.body.contains("[DONE]"));
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "the stream waited"
    );

    // The candidate got both copies, with the client's prompt and its own model.
    tokio::time::timeout(Duration::from_secs(10), slow.wait_for_requests(2))
        .await
        .expect("the copies reach the candidate");
    let bodies: Vec<Value> = slow.requests().into_iter().map(|r| r.body).collect();
    assert!(
        bodies
            .iter()
            .all(|b| b["model"] == "claude-3-5-haiku-20241022"),
        "{bodies:?}"
    );
    assert!(bodies.iter().any(|b| b.to_string().contains("shadow me")));
    assert!(bodies.iter().any(|b| b.to_string().contains("stream me")));

    // The log: the primary lists its copy; the copy names its primary and has its figures.
    let id = r.id();
    let primary = row_where(&g, &id, |v| {
        v["shadow_ids"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert!(primary["shadow_of"].is_null());
    let copies = primary["shadow_ids"].as_array().unwrap();
    assert_eq!(copies.len(), 1, "{primary}");
    let copy = row(&g, copies[0].as_str().unwrap()).await;
    assert_eq!(copy["shadow_of"], id);
    assert_eq!(copy["requested_model"], HAIKU);
    assert_eq!(copy["model"], HAIKU);
    assert_eq!(copy["provider_name"], "anthropic");
    assert_eq!(copy["status"], 200);
    assert!(copy["latency"].as_i64().unwrap() >= 1400, "{copy}");
    assert!(copy["time_to_first_token"].is_i64());
    assert!(copy["tokens_completion"].as_i64().unwrap() > 0);
    assert!(copy["total_cost"].as_f64().unwrap() > 0.0);
    assert!(copy["api_key_name"].is_null());
    assert!(copy["prompt"].as_str().unwrap().contains("shadow me"));
    assert!(!copy["answer"].as_str().unwrap().is_empty());
    assert!(!primary["answer"].as_str().unwrap().is_empty());
    assert_ne!(copy["id"], primary["id"]);

    // Stats count the copies as shadow spend.
    let stats = call(
        &g,
        "GET",
        &format!("/api/v1/stats?group_by=model&model={HAIKU}"),
        &[],
        None,
    )
    .await;
    let st = &stats.json()["data"][0];
    assert_eq!(st["shadow_requests"], 2, "{st}");
    assert!((st["shadow_cost"].as_f64().unwrap() - st["cost"].as_f64().unwrap()).abs() < 1e-12);
}

#[tokio::test]
async fn sample_zero_sends_nothing_and_other_models_are_not_copied() {
    let demo = DemoProviders::start().await.unwrap();
    let cand = DemoServer::start(ProviderKind::Anthropic, DemoConfig::default())
        .await
        .unwrap();
    let extra = shadow_rule("fast", HAIKU, 0.0, 4) + &shadow_rule("openai/gpt-4o", HAIKU, 1.0, 4);
    let g = gateway(&demo, &cand, &extra).await;
    for i in 0..5 {
        let r = call(
            &g,
            "POST",
            "/v1/chat/completions",
            &[NO_STORE],
            Some(chat("fast", &format!("n{i}"), false)),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    // `openai/gpt-4o-mini` by its id is not the source `fast`.
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[NO_STORE],
        Some(chat("openai/gpt-4o-mini", "id", false)),
    )
    .await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cand.request_count(), 0);
    // The second rule copies.
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[NO_STORE],
        Some(chat("openai/gpt-4o", "big", false)),
    )
    .await;
    assert_eq!(r.status, 200);
    tokio::time::timeout(Duration::from_secs(10), cand.wait_for_requests(1))
        .await
        .expect("a copy");
}

/// Records every CostRecord.
#[derive(Clone, Default)]
struct Records(Arc<Mutex<Vec<CostRecord>>>);

impl CostSink for Records {
    fn record(&self, record: &CostRecord) {
        self.0.lock().unwrap().push(record.clone());
    }
}

fn typed(model: &str, text: &str, key: Option<&str>) -> ChatHttpRequest {
    let body = chat(model, text, false).to_string();
    let mut r = http::Request::new(Arc::new(ChatRequest::from_slice(body.as_bytes()).unwrap()));
    r.headers_mut()
        .insert("cache-control", http::HeaderValue::from_static("no-store"));
    if let Some(k) = key {
        r.extensions_mut().insert(CallerKey(k.into()));
    }
    r
}

async fn wait_records(records: &Records, n: usize) {
    let started = Instant::now();
    while records.0.lock().unwrap().len() < n {
        assert!(started.elapsed() < Duration::from_secs(10), "{n} records");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn max_concurrency_skips_and_counts() {
    let demo = DemoProviders::start().await.unwrap();
    let slow = DemoServer::start(
        ProviderKind::Anthropic,
        DemoConfig::default().with_latency(Duration::from_millis(800)),
    )
    .await
    .unwrap();
    let mut catalog = demo.catalog();
    let base = slow.base_url();
    catalog = catalog.map_providers(|p| {
        let mut p = p.clone();
        if p.name.as_ref() == "anthropic" {
            p.base_url = base.as_str().into();
        }
        p
    });
    let layer = ShadowLayer::new([ShadowRule::new("fast", HAIKU)
        .sample(1.0)
        .max_concurrency(1)]);
    let gw = Gateway::builder(catalog).shadows(layer.clone()).build();
    for i in 0..3 {
        let r = gw
            .service()
            .oneshot(typed("fast", &format!("c{i}"), None))
            .await
            .unwrap();
        assert!(r.into_body().into_complete().is_some());
    }
    let counts = layer.counts()[0].1;
    assert_eq!(
        (counts.sent, counts.skipped, counts.failed),
        (1, 2, 0),
        "{counts:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), slow.wait_for_requests(1))
        .await
        .unwrap();
    // Once the copy is done, its permit is free again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let started = Instant::now();
    while layer.counts()[0].1.sent < 2 {
        gw.service()
            .oneshot(typed("fast", "again", None))
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn copies_are_not_charged_to_the_callers_budget() {
    let demo = DemoProviders::start().await.unwrap();
    let store = Arc::new(MemoryBudgetStore::new());
    let budgets = Budgets::new(store.clone()).with("alice", Budget::usd(1.0, Window::Total));
    let records = Records::default();
    let layer = ShadowLayer::new([ShadowRule::new("fast", "anthropic/claude-sonnet-4")]);
    let gw = Gateway::builder(demo.catalog())
        .shadows(layer.clone())
        .cost_meter(CostMeterLayer::new().budgets(budgets).sink(records.clone()))
        .build();
    let r = gw
        .service()
        .oneshot(typed("fast", "who pays", Some("alice")))
        .await
        .unwrap();
    assert!(r.into_body().into_complete().is_some());
    wait_records(&records, 2).await;
    let recs = records.0.lock().unwrap().clone();
    let primary = recs
        .iter()
        .find(|r| r.shadow_of.is_none())
        .expect("the primary's record");
    let copy = recs
        .iter()
        .find(|r| r.shadow_of.is_some())
        .expect("the copy's record");
    assert_eq!(copy.shadow_of, primary.generation_id);
    assert!(primary.caller.is_some());
    assert!(copy.caller.is_none(), "a copy has no caller");
    assert_eq!(copy.requested.as_deref(), Some("anthropic/claude-sonnet-4"));
    let copy_cost = copy.cost.expect("the copy is priced").total();
    assert!(copy_cost.0 > 0);
    // The reservation is settled in the background: wait for it.
    let want = primary.cost.unwrap().total();
    let committed = || async {
        switchboard::cost::BudgetStore::committed(&*store, "alice", &Window::Total.current_id())
            .await
    };
    let started = Instant::now();
    while committed().await != want {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "committed {:?}, the primary cost {want:?}",
            committed().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And it stays so once the copy is done too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(committed().await, want, "only the primary is charged");
}

#[tokio::test]
async fn a_caller_over_budget_makes_no_copy() {
    let demo = DemoProviders::start().await.unwrap();
    let store = Arc::new(MemoryBudgetStore::new());
    let budgets = Budgets::new(store).with("broke", Budget::usd(0.0, Window::Total));
    let records = Records::default();
    let layer = ShadowLayer::new([ShadowRule::new("fast", "anthropic/claude-sonnet-4")]);
    let gw = Gateway::builder(demo.catalog())
        .shadows(layer.clone())
        .cost_meter(CostMeterLayer::new().budgets(budgets).sink(records.clone()))
        .build();
    for i in 0..3 {
        let e = gw
            .service()
            .oneshot(typed("fast", &format!("over {i}"), Some("broke")))
            .await
            .expect_err("over budget");
        assert_eq!(e.status(), http::StatusCode::PAYMENT_REQUIRED, "{e}");
    }
    // A caller with budget left is copied as before.
    let r = gw
        .service()
        .oneshot(typed("fast", "anyone", None))
        .await
        .unwrap();
    assert!(r.into_body().into_complete().is_some());
    wait_records(&records, 2).await;
    let counts = layer.counts()[0].1;
    assert_eq!((counts.sent, counts.skipped), (1, 3), "{counts:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let recs = records.0.lock().unwrap().clone();
    assert_eq!(
        recs.iter().filter(|r| r.shadow_of.is_some()).count(),
        1,
        "only the funded request was copied"
    );
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[tokio::test]
async fn the_compare_api_aggregates_the_pairs() {
    let demo = DemoProviders::start().await.unwrap();
    let extra = shadow_rule("fast", HAIKU, 1.0, 8)
        + &shadow_rule("task:code", "google/gemini-2.5-flash", 1.0, 8);
    let g = gateway(&demo, &demo.anthropic, &extra).await;
    let mut ids = Vec::new();
    for (i, text) in ["one", "two two", "three three three"].iter().enumerate() {
        let r = call(
            &g,
            "POST",
            "/v1/chat/completions",
            &[NO_STORE],
            Some(chat("fast", text, i == 1)),
        )
        .await;
        assert_eq!(r.status, 200);
        ids.push(r.id());
    }
    let coded = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[NO_STORE, ("x-switchboard-task", "code")],
        Some(chat("deep", "code it", false)),
    )
    .await;
    assert_eq!(coded.status, 200);
    // Every pair's two rows, as the generation API has them.
    let mut prim = Vec::new();
    let mut copies = Vec::new();
    for id in &ids {
        let p = row_where(&g, id, |v| {
            v["shadow_ids"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
        copies.push(row(&g, p["shadow_ids"][0].as_str().unwrap()).await);
        prim.push(p);
    }
    for (id, score) in ids.iter().zip([1.0, 0.0]) {
        let f = call(
            &g,
            "POST",
            "/api/v1/feedback",
            &[],
            Some(json!({"generation_id": id, "score": score})),
        )
        .await;
        assert_eq!(f.status, 201, "{}", f.body);
    }
    let sum = |rows: &[Value], k: &str| {
        rows.iter()
            .map(|r| r[k].as_f64().unwrap_or(0.0))
            .sum::<f64>()
    };
    let nearest = |rows: &[Value], k: &str, q: f64| {
        let mut v: Vec<i64> = rows.iter().filter_map(|r| r[k].as_i64()).collect();
        v.sort_unstable();
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    };
    let c = call(
        &g,
        "GET",
        &format!("/api/v1/shadow/compare?source=fast&candidate={HAIKU}"),
        &[],
        None,
    )
    .await;
    assert_eq!(c.status, 200, "{}", c.body);
    let d = c.json()["data"].clone();
    for (side, rows) in [("primary", &prim), ("shadow", &copies)] {
        let s = &d[side];
        assert_eq!(s["requests"], 3, "{side}: {s}");
        assert_eq!(s["errors"], 0);
        assert!(
            close(s["cost"].as_f64().unwrap(), sum(rows, "total_cost")),
            "{side}: {s}"
        );
        assert_eq!(
            s["tokens_prompt"].as_f64().unwrap(),
            sum(rows, "tokens_prompt")
        );
        assert_eq!(
            s["tokens_completion"].as_f64().unwrap(),
            sum(rows, "tokens_completion")
        );
        assert_eq!(s["latency_p50_ms"], nearest(rows, "latency", 0.5));
        assert_eq!(s["latency_p95_ms"], nearest(rows, "latency", 0.95));
        assert_eq!(s["ttft_p50_ms"], nearest(rows, "time_to_first_token", 0.5));
    }
    assert_eq!(d["primary"]["feedback_mean"], 0.5);
    assert_eq!(d["primary"]["feedback_count"], 2);
    assert!(d["shadow"]["feedback_mean"].is_null());
    assert_eq!(d["groups"].as_array().unwrap().len(), 1);
    assert_eq!(d["groups"][0]["source"], "fast");
    assert_eq!(d["groups"][0]["candidate"], HAIKU);
    let pairs = d["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 3);
    assert_eq!(pairs[0]["primary"]["id"], ids[2], "newest first");
    assert_eq!(pairs[0]["shadow"]["model"], HAIKU);
    assert!(pairs[0]["shadow"]["answer"].is_string());
    let one = call(
        &g,
        "GET",
        "/api/v1/shadow/compare?source=fast&limit=1",
        &[],
        None,
    )
    .await;
    let one = one.json();
    assert_eq!(one["data"]["pairs"].as_array().unwrap().len(), 1);
    assert!(one["data"]["pairs"][0]["shadow"]["answer"].is_string());
    // Figures still count every pair; only the listed ones carry answers.
    assert_eq!(one["data"]["shadow"]["requests"], 3);

    // A task source: the pairs whose primary had that task.
    let t = call(
        &g,
        "GET",
        "/api/v1/shadow/compare?source=task:code",
        &[],
        None,
    )
    .await;
    let t = t.json()["data"].clone();
    assert_eq!(t["primary"]["requests"], 1, "{t}");
    assert_eq!(t["groups"][0]["source"], "task:code");
    assert_eq!(t["groups"][0]["candidate"], "google/gemini-2.5-flash");
    assert_eq!(t["pairs"][0]["primary"]["id"], coded.id());

    // Everything: two groups. A range before the pairs: none.
    let all = call(&g, "GET", "/api/v1/shadow/compare", &[], None).await;
    assert_eq!(all.json()["data"]["groups"].as_array().unwrap().len(), 2);
    let none = call(&g, "GET", "/api/v1/shadow/compare?to=2020-01-01", &[], None).await;
    assert_eq!(none.json()["data"]["primary"]["requests"], 0);
}
