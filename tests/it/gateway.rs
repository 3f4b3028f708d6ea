//! The ready gateway (the ready gateway) end to end: metrics, health, readiness, client
//! keys, request ids, secrets, graceful shutdown.

use switchboard::server;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use switchboard::catalog::ProviderKind;
use switchboard::demo::{DemoConfig, DemoServer, Fault};

const SECRET: &str = "sk-live-SECRET-4f9c2a";

/// Every log line of this test binary (of every module, once installed), at every level.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Writer(b.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(sub);
        buf
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);
impl Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let body = body.map_or_else(Bytes::new, |v| Bytes::from(serde_json::to_vec(&v).unwrap()));
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
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

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello gateway"}]})
}

fn write_config(text: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::new(text)
}

/// A minimal temp file helper (no extra dependency).
mod tempfile_path {
    pub(crate) struct TempPath(pub(crate) std::path::PathBuf);
    impl TempPath {
        pub(crate) fn new(text: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "switchboard-test-{}-{}.toml",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::write(&p, text).unwrap();
            Self(p)
        }
        pub(crate) fn path(&self) -> String {
            self.0.to_string_lossy().into_owned()
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

async fn start(config: &str) -> server::Running {
    let options = server::Options::new(config).listen("127.0.0.1:0");
    server::start(&options).await.unwrap()
}

#[tokio::test]
async fn demo_mode_health_ready_models_metrics_and_request_ids() {
    let _ = logs();
    let g = start("examples/gateway.toml").await;
    assert!(g.notes().iter().any(|n| n.contains("demo providers")));
    assert_eq!(
        call(g.addr(), "GET", "/health", &[], None).await.status,
        200
    );
    assert_eq!(call(g.addr(), "GET", "/ready", &[], None).await.status, 200);
    let nowhere = call(g.addr(), "POST", "/v1/completions", &[], None).await;
    assert_eq!(nowhere.status, 404);
    let v: Value = serde_json::from_str(&nowhere.body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let models: Value =
        serde_json::from_str(&call(g.addr(), "GET", "/v1/models", &[], None).await.body).unwrap();
    assert!(models["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "anthropic/claude-sonnet-4"));

    let r = call(
        g.addr(),
        "POST",
        "/v1/chat/completions",
        &[("x-request-id", "req-123")],
        Some(chat("fast")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["x-request-id"], "req-123");
    let r = call(
        g.addr(),
        "POST",
        "/v1/chat/completions",
        &[],
        Some(chat("google/gemini-2.5-flash")),
    )
    .await;
    assert!(
        !r.headers["x-request-id"].is_empty(),
        "generated when absent"
    );
    let _ = call(
        g.addr(),
        "POST",
        "/v1/chat/completions",
        &[],
        Some(chat("nobody/x")),
    )
    .await;

    let m = call(g.addr(), "GET", "/metrics", &[], None).await;
    assert_eq!(m.status, 200);
    let line = |name: &str, needle: &str| {
        m.body
            .lines()
            .find(|l| l.starts_with(name) && l.contains(needle))
            .unwrap_or_else(|| panic!("no {name} with {needle} in\n{}", m.body))
            .to_owned()
    };
    // Other tests in this binary share the global recorder: at least this test's request.
    let req = line("switchboard_requests_total", "provider=\"openai\"");
    let n: f64 = req.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{req}");
    let cost = line(
        "switchboard_cost_nanodollars_total",
        "model=\"openai/gpt-4o-mini\",cache=\"miss\"",
    );
    let value: f64 = cost.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value > 0.0, "{cost}");
    line("switchboard_tokens_total", "type=\"input\"");
    line(
        "switchboard_gateway_overhead_seconds",
        "provider=\"openai\"",
    );
    line(
        "switchboard_request_duration_seconds",
        "provider=\"google\"",
    );
    g.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn demo_mode_serves_the_examples_bedrock_and_vertex_models() {
    let _ = logs();
    let g = start("examples/gateway.toml").await;
    let note = g
        .notes()
        .iter()
        .find(|n| n.contains("demo providers"))
        .expect("the demo note");
    assert!(
        note.contains("Bedrock at") && note.contains("Vertex AI at"),
        "{note}"
    );
    for (model, provider, says) in [
        (
            "bedrock/claude-3-5-haiku",
            "bedrock",
            "demo bedrock provider",
        ),
        ("vertex/gemini-2.5-flash", "vertex", "demo gemini provider"),
        (
            "vertex/claude-sonnet-4",
            "vertex",
            "demo anthropic provider",
        ),
    ] {
        let r = call(
            g.addr(),
            "POST",
            "/v1/chat/completions",
            &[],
            Some(chat(model)),
        )
        .await;
        assert_eq!(r.status, 200, "{model}: {}", r.body);
        assert_eq!(r.headers["x-switchboard-provider"], provider, "{model}");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        let text = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(text.contains(says), "{model}: {text}");
        assert!(
            v["usage"]["cost"].as_f64().unwrap() > 0.0,
            "{model}: priced"
        );
    }
    for (model, dims) in [
        ("vertex/text-embedding-005", 768),
        ("bedrock/titan-embed-text-v2", 1024),
    ] {
        let r = call(
            g.addr(),
            "POST",
            "/v1/embeddings",
            &[],
            Some(json!({"model": model, "input": "hello embeddings"})),
        )
        .await;
        assert_eq!(r.status, 200, "{model}: {}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            v["data"][0]["embedding"].as_array().unwrap().len(),
            dims,
            "{model}"
        );
        assert_eq!(v["usage"]["prompt_tokens"], 2, "{model}");
        assert!(
            v["usage"]["cost"].as_f64().unwrap() > 0.0,
            "{model}: priced"
        );
    }
    g.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn client_keys_allow_lists_and_rate_limits() {
    let base = std::fs::read_to_string("examples/gateway.toml").unwrap();
    let cfg = write_config(&format!(
        "{base}\n[[keys]]\nname = \"alice\"\nkey = \"sk-gw-alice\"\nmodels = [\"openai/*\", \"fast\"]\nrequests_per_minute = 2\n\n[[keys]]\nname = \"bob\"\nkey = \"sk-gw-bob\"\nbudget = {{ usd = 0.0, window = \"day\" }}\n"
    ));
    let g = start(&cfg.path()).await;
    let no_key = call(
        g.addr(),
        "POST",
        "/v1/chat/completions",
        &[],
        Some(chat("fast")),
    )
    .await;
    assert_eq!(no_key.status, 401);
    let bad = call(
        g.addr(),
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer nope")],
        Some(chat("fast")),
    )
    .await;
    assert_eq!(bad.status, 401);
    let alice = [("authorization", "Bearer sk-gw-alice")];
    assert_eq!(
        call(
            g.addr(),
            "POST",
            "/v1/chat/completions",
            &alice,
            Some(chat("fast"))
        )
        .await
        .status,
        200
    );
    let forbidden = call(
        g.addr(),
        "POST",
        "/v1/chat/completions",
        &alice,
        Some(chat("anthropic/claude-sonnet-4")),
    )
    .await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(
        call(
            g.addr(),
            "POST",
            "/v1/chat/completions",
            &alice,
            Some(chat("fast"))
        )
        .await
        .status,
        200
    );
    let limited = call(
        g.addr(),
        "POST",
        "/v1/chat/completions",
        &alice,
        Some(chat("fast")),
    )
    .await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.headers.contains_key("retry-after"));
    let broke = call(
        g.addr(),
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-gw-bob")],
        Some(chat("fast")),
    )
    .await;
    assert_eq!(broke.status, 402, "{}", broke.body);
    g.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn provider_keys_never_leak() {
    let logs = logs();
    let upstream = DemoServer::start(
        ProviderKind::Openai,
        DemoConfig::default().with_api_key(SECRET),
    )
    .await
    .unwrap();
    let wrong = DemoServer::start(ProviderKind::Anthropic, DemoConfig::default())
        .await
        .unwrap();
    let cfg = write_config(&format!(
        r#"
[providers.openai]
kind = "openai"
base_url = "{}"
api_key = "{SECRET}"

[providers.anthropic]
kind = "anthropic"
base_url = "{}"
api_key = "{SECRET}-anthropic"

[[models]]
id = "openai/gpt-4o-mini"
pricing = {{ input = 1.0, output = 1.0 }}

[[models]]
id = "anthropic/claude-3-5-haiku"
upstream = "claude-3-5-haiku-20241022"
"#,
        upstream.base_url(),
        wrong.base_url()
    ));
    let g = start(&cfg.path()).await;
    let mut seen = String::new();
    for fault in [
        None,
        Some(Fault::status(500)),
        Some(Fault::status(401)),
        Some(Fault::Garbage),
        Some(Fault::DropBeforeHeaders),
        Some(Fault::Status(429, Some(1))),
    ] {
        if let Some(f) = fault {
            upstream.faults().push(f);
        }
        for stream in [false, true] {
            let mut body = chat("openai/gpt-4o-mini");
            body["stream"] = json!(stream);
            let r = call(
                g.addr(),
                "POST",
                "/v1/chat/completions",
                &[("cache-control", "no-store")],
                Some(body),
            )
            .await;
            seen.push_str(&format!("{:?}{}", r.headers, r.body));
        }
    }
    // Our key for anthropic is wrong: 502, not the client's 401.
    let r = call(
        g.addr(),
        "POST",
        "/v1/chat/completions",
        &[],
        Some(chat("anthropic/claude-3-5-haiku")),
    )
    .await;
    assert_eq!(r.status, 502);
    seen.push_str(&r.body);
    seen.push_str(&call(g.addr(), "GET", "/v1/models", &[], None).await.body);
    seen.push_str(&call(g.addr(), "GET", "/metrics", &[], None).await.body);
    assert!(upstream.request_count() >= 10);
    assert!(!seen.contains(SECRET), "a provider key leaked to a client");
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logged.contains("request finished"), "logs are captured");
    assert!(
        !logged.contains(SECRET),
        "a provider key leaked into the logs"
    );
    g.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_stream_finish() {
    let upstream = DemoServer::start(
        ProviderKind::Openai,
        DemoConfig::default().with_chunk_delay(Duration::from_millis(40)),
    )
    .await
    .unwrap();
    let cfg = write_config(&format!(
        "[providers.openai]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"demo-key\"\n[[models]]\nid = \"openai/gpt-4o-mini\"\n",
        upstream.base_url()
    ));
    let g = start(&cfg.path()).await;
    let addr = g.addr();
    let mut body = chat("openai/gpt-4o-mini");
    body["stream"] = json!(true);
    let in_flight =
        tokio::spawn(
            async move { call(addr, "POST", "/v1/chat/completions", &[], Some(body)).await },
        );
    upstream.wait_for_requests(1).await;
    g.shutdown(Duration::from_secs(10)).await;
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.trim_end().ends_with("data: [DONE]"), "{}", r.body);
    assert!(!r.body.contains("\"error\""));
}
