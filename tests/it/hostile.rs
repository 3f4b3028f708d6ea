//! The hostile-input suite: the ready gateway (`switchboard::server`, demo providers) over
//! loopback, fed what an attacker would send. Each test is bounded in time and requests; each
//! is a finding that once held and must not again (SECURITY.md lists them).

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Value};
use switchboard::server::{self, ConnLimits, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";
const COUNT: &str = "/v1/messages/count_tokens";
const RESPONSES: &str = "/v1/responses";

async fn gateway(limits: ConnLimits) -> Running {
    server::raise_fd_limit();
    server::start(
        &server::Options::new("examples/gateway.toml")
            .listen("127.0.0.1:0")
            .limits(limits),
    )
    .await
    .expect("the gateway starts")
}

/// Sends raw bytes and reads until the server closes or `wait` passes: (status, whole answer).
async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = timeout(wait, s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn post(body: &str) -> Vec<u8> {
    post_to(CHAT, body)
}

fn post_to(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn hello(model: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

/// A normal request answers 200 within `within`.
async fn still_serves(addr: SocketAddr, within: Duration) {
    let start = Instant::now();
    let (status, text) = raw(addr, &post(&hello("fast")), Duration::from_secs(10)).await;
    assert_eq!(status, 200, "{text}");
    assert!(start.elapsed() < within, "took {:?}", start.elapsed());
}

/// Splits an answer into head and body.
fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn half_sent_heads_neither_delay_others_nor_stay_open() {
    let mut limits = ConnLimits::default();
    limits.header_read_timeout = Duration::from_secs(2);
    let g = gateway(limits).await;
    let addr = g.addr();
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-")
            .await
            .expect("write");
        idle.push(s);
    }
    still_serves(addr, Duration::from_secs(2)).await;
    // After the header deadline every half-sent head has been closed by the server.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut closed = 0;
    for s in &mut idle {
        let mut buf = [0u8; 512];
        if let Ok(Ok(_)) = timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, idle.len(), "every half-sent head is closed");
    still_serves(addr, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_and_the_cap_answers_503() {
    let mut limits = ConnLimits::default();
    limits.header_read_timeout = Duration::from_secs(1);
    limits.max_connections = 4;
    let g = gateway(limits).await;
    let addr = g.addr();
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Over the cap: a clear overload answer, at once.
    let (status, text) = raw(addr, &post(&hello("fast")), Duration::from_secs(2)).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("too_many_connections"), "{text}");
    // The silent ones are closed after the deadline for a first request; then room again.
    for s in &mut silent {
        let mut buf = [0u8; 16];
        let n = timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed within the deadline");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    still_serves(addr, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn oversized_or_too_many_headers_are_431() {
    let g = gateway(ConnLimits::default()).await;
    let big = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let (status, _) = raw(g.addr(), big.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status, 431);
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let req = format!("GET /health HTTP/1.1\r\nhost: x\r\n{many}connection: close\r\n\r\n");
    let (status, _) = raw(g.addr(), req.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status, 431);
    still_serves(g.addr(), Duration::from_secs(2)).await;
}

/// A head of `fields` fields in all (`host` and `connection` among them) for `/health`.
fn head_of(fields: usize) -> String {
    let extra: String = (2..fields).map(|i| format!("x-h{i}: v\r\n")).collect();
    format!("GET /health HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\n\r\n")
}

#[tokio::test]
async fn the_header_count_limit_holds_at_its_edge_default_or_set() {
    for (limit, limits) in [
        (100, ConnLimits::default()),
        (20, {
            let mut l = ConnLimits::default();
            l.max_headers = 20;
            l
        }),
    ] {
        let g = gateway(limits).await;
        let (status, text) = raw(g.addr(), head_of(limit).as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status, 200, "{limit} fields are allowed: {text}");
        let (status, _) = raw(
            g.addr(),
            head_of(limit + 1).as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(status, 431, "{} fields are too many", limit + 1);
    }
}

#[tokio::test]
async fn a_huge_model_id_is_a_short_400_that_echoes_nothing() {
    let g = gateway(ConnLimits::default()).await;
    let model = format!("openai/{}", "a".repeat(4 << 20));
    let (status, text) = raw(g.addr(), &post(&hello(&model)), Duration::from_secs(10)).await;
    assert_eq!(status, 400, "{}", &text[..text.len().min(500)]);
    assert!(text.len() < 2_048, "the answer is {} bytes", text.len());
    assert!(!text.contains("x-switchboard-model"));
    let v: Value = serde_json::from_str(body_of(&text)).expect("JSON error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn two_hundred_thousand_models_are_a_quick_400() {
    let g = gateway(ConnLimits::default()).await;
    let models: Vec<String> = (0..200_000).map(|i| format!("m{i}")).collect();
    let body = json!({"models": models, "messages": [{"role": "user", "content": "hi"}]});
    let start = Instant::now();
    let (status, text) = raw(g.addr(), &post(&body.to_string()), Duration::from_secs(20)).await;
    assert_eq!(status, 400, "{}", &text[..text.len().min(500)]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(text.len() < 2_048);
}

#[tokio::test]
async fn unique_invalid_pass_through_ids_are_refused_without_upstream_calls() {
    let g = gateway(ConnLimits::default()).await;
    let pad = "x".repeat(100 * 1024);
    for n in 0..200 {
        let (status, text) = raw(
            g.addr(),
            &post(&hello(&format!("google/{n} {pad}"))),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(status, 400, "{}", &text[..text.len().min(300)]);
        assert!(text.len() < 2_048);
    }
    for n in 0..200 {
        let (status, _) = raw(
            g.addr(),
            &post(&hello(&format!("google/bad name {n}"))),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(status, 400);
    }
    let (status, _) = raw(
        g.addr(),
        b"GET /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status, 200, "nothing cooled down");
}

#[tokio::test]
async fn too_many_messages_or_tools_are_400() {
    let g = gateway(ConnLimits::default()).await;
    let messages: Vec<Value> = (0..10_001)
        .map(|_| json!({"role": "user", "content": "x"}))
        .collect();
    let body = json!({"model": "fast", "messages": messages});
    let (status, text) = raw(g.addr(), &post(&body.to_string()), Duration::from_secs(10)).await;
    assert_eq!(status, 400, "{}", &text[..text.len().min(300)]);
    assert!(text.contains("messages"));
    let tools: Vec<Value> = (0..600)
        .map(|i| json!({"type": "function", "function": {"name": format!("f{i}"), "parameters": {"type": "object"}}}))
        .collect();
    let body =
        json!({"model": "fast", "messages": [{"role": "user", "content": "x"}], "tools": tools});
    let (status, text) = raw(g.addr(), &post(&body.to_string()), Duration::from_secs(10)).await;
    assert_eq!(status, 400, "{}", &text[..text.len().min(300)]);
    assert!(text.contains("tools"));
}

#[tokio::test]
async fn metrics_are_bucketed_histograms() {
    let g = gateway(ConnLimits::default()).await;
    still_serves(g.addr(), Duration::from_secs(5)).await;
    let (status, text) = raw(
        g.addr(),
        b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status, 200);
    // Buckets are a fixed set of counters: memory stays flat whether or not anyone scrapes.
    assert!(
        text.contains("switchboard_request_duration_seconds_bucket{"),
        "{}",
        &text[..text.len().min(2000)]
    );
    assert!(!text.contains("quantile="), "no summaries keeping samples");
}

/// The binary's standard output, with `RUST_LOG=debug`, after a request whose model holds a
/// forged log line.
#[tokio::test]
async fn log_lines_cannot_be_forged() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "--config",
            "examples/gateway.toml",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr: SocketAddr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the listening line");
        if let Some(a) = line.strip_prefix("switchboard listening on http://") {
            break a.parse().expect("an address");
        }
    };
    let forged = "2026-01-01T00:00:00.000000Z  INFO FORGED: admin logged in";
    for model in [format!("openai/x\n{forged}"), format!("nope\n{forged}")] {
        let (status, _) = raw(addr, &post(&hello(&model)), Duration::from_secs(5)).await;
        assert_eq!(status / 100, 4);
    }
    still_serves(addr, Duration::from_secs(5)).await;
    let _ = child.kill();
    let _ = child.wait();
    let lines: Vec<String> = rx.try_iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("FORGED")),
        "the attempt was logged"
    );
    for l in &lines {
        assert!(!l.starts_with("2026-01-01"), "a forged line: {l}");
    }
}

/// The gateway under arbitrary bytes and arbitrary JSON: every answer is a clean HTTP status
/// with a JSON error for the 4xx/5xx, and the server keeps serving.
#[test]
fn arbitrary_bodies_get_clean_answers() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let g = rt.block_on(gateway(ConnLimits::default()));
    let addr = g.addr();
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z/ .\\-\n]{0,12}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("model".to_owned()),
                    Just("messages".to_owned()),
                    Just("role".to_owned()),
                    Just("content".to_owned()),
                    Just("stream".to_owned()),
                    Just("tools".to_owned()),
                    Just("models".to_owned()),
                    Just("max_tokens".to_owned()),
                    Just("system".to_owned()),
                    Just("type".to_owned()),
                    Just("input".to_owned()),
                    Just("call_id".to_owned()),
                    Just("encrypted_content".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        value.prop_map(|v| v.to_string().into_bytes()),
    ];
    let path = prop_oneof![Just(CHAT), Just(MESSAGES), Just(COUNT), Just(RESPONSES)];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    });
    runner
        .run(&(path, body), |(path, bytes)| {
            let mut req = format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                bytes.len()
            )
            .into_bytes();
            req.extend_from_slice(&bytes);
            let (status, text) = rt.block_on(raw(addr, &req, Duration::from_secs(10)));
            prop_assert!(
                (200..600).contains(&status),
                "no answer: {}",
                &text[..text.len().min(300)]
            );
            prop_assert!(status != 500, "{}", &text[..text.len().min(300)]);
            if status >= 400 {
                let v: Value = serde_json::from_str(body_of(&text))
                    .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
                prop_assert!(v["error"]["message"].is_string(), "{}", text);
                if path == MESSAGES || path == COUNT {
                    // Anthropic's shape on the Messages endpoints.
                    prop_assert_eq!(&v["type"], "error", "{}", text);
                    prop_assert!(v["error"]["type"].is_string(), "{}", text);
                }
            }
            Ok(())
        })
        .expect("every body gets a clean answer");
    rt.block_on(still_serves(addr, Duration::from_secs(5)));
}

/// The Messages endpoints hold the chat endpoint's limits, in Anthropic's error shape.
#[tokio::test]
async fn messages_endpoints_hold_the_limits_in_anthropic_shape() {
    let g = gateway(ConnLimits::default()).await;
    let addr = g.addr();
    let anthropic_error = |text: &str, kind: &str| {
        let v: Value = serde_json::from_str(body_of(text)).expect("JSON");
        assert_eq!(v["type"], "error", "{text}");
        assert_eq!(v["error"]["type"], kind, "{text}");
        let message = v["error"]["message"].as_str().expect("a message");
        assert!(message.len() < 400, "short: {message}");
    };
    for path in [MESSAGES, COUNT] {
        // Oversized: 413 from the content-length, before the body is read.
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{{",
            64 * 1024 * 1024
        );
        let (status, text) = raw(addr, head.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status, 413, "{path}: {text}");
        anthropic_error(&text, "request_too_large");
        // A huge model id: a short 400 that does not echo it.
        let huge = "m".repeat(1_000_000);
        let body = json!({"model": huge, "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}]})
        .to_string();
        let (status, text) = raw(addr, &post_to(path, &body), Duration::from_secs(10)).await;
        assert_eq!(status, 400, "{path}: {}", &text[..text.len().min(300)]);
        assert!(text.len() < 2_000, "nothing echoed");
        anthropic_error(&text, "invalid_request_error");
        // Too many messages, too many tools.
        let messages: Vec<Value> = (0..10_001)
            .map(|_| json!({"role": "user", "content": "x"}))
            .collect();
        let body = json!({"model": "fast", "max_tokens": 5, "messages": messages}).to_string();
        let (status, text) = raw(addr, &post_to(path, &body), Duration::from_secs(10)).await;
        assert_eq!(status, 400, "{path}: {}", &text[..text.len().min(300)]);
        anthropic_error(&text, "invalid_request_error");
        let tools: Vec<Value> = (0..513)
            .map(|i| json!({"name": format!("t{i}"), "input_schema": {"type": "object"}}))
            .collect();
        let body = json!({"model": "fast", "max_tokens": 5, "tools": tools,
            "messages": [{"role": "user", "content": "hi"}]})
        .to_string();
        let (status, text) = raw(addr, &post_to(path, &body), Duration::from_secs(10)).await;
        assert_eq!(status, 400, "{path}: {}", &text[..text.len().min(300)]);
        anthropic_error(&text, "invalid_request_error");
        // A field name a megabyte long is refused without being echoed.
        let body = format!(
            r#"{{"model":"fast","max_tokens":5,"messages":[],"{}":1}}"#,
            "k".repeat(1_000_000)
        );
        let (status, text) = raw(addr, &post_to(path, &body), Duration::from_secs(10)).await;
        assert_eq!(status, 400, "{path}");
        assert!(text.len() < 2_000, "nothing echoed: {}", text.len());
    }
    still_serves(addr, Duration::from_secs(2)).await;
}

/// `/v1/responses` holds the chat endpoint's limits, in OpenAI's error shape.
#[tokio::test]
async fn the_responses_endpoint_holds_the_limits() {
    let g = gateway(ConnLimits::default()).await;
    let addr = g.addr();
    let openai_error = |text: &str, status: u16, expect: u16| {
        assert_eq!(status, expect, "{}", &text[..text.len().min(300)]);
        assert!(text.len() < 2_000, "nothing echoed: {}", text.len());
        let v: Value = serde_json::from_str(body_of(text)).expect("JSON");
        assert!(v["error"]["type"].is_string(), "{text}");
        assert!(v["error"]["message"].as_str().expect("a message").len() < 400);
    };
    let send = |body: String| async move {
        raw(addr, &post_to(RESPONSES, &body), Duration::from_secs(10)).await
    };
    // Oversized: 413 from the content-length, before the body is read.
    let head = format!(
        "POST {RESPONSES} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{{",
        64 * 1024 * 1024
    );
    let (status, text) = raw(addr, head.as_bytes(), Duration::from_secs(5)).await;
    openai_error(&text, status, 413);
    // A slow body: 408 after the configured read deadline (30 s in the example config).
    let (status, text) = {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST {RESPONSES} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: 100\r\nconnection: close\r\n\r\n{{\"model\":"
        );
        s.write_all(head.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let _ = timeout(Duration::from_secs(40), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, text)
    };
    openai_error(&text, status, 408);
    // Malformed JSON, deep nesting, a huge model id, a huge unknown key.
    let (status, text) = send("{not json".to_owned()).await;
    openai_error(&text, status, 400);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, text) = send(format!(r#"{{"model":"fast","input":{deep}}}"#)).await;
    openai_error(&text, status, 400);
    let (status, text) =
        send(json!({"model": "m".repeat(1_000_000), "input": "hi"}).to_string()).await;
    openai_error(&text, status, 400);
    let (status, text) = send(format!(
        r#"{{"model":"fast","input":"hi","{}":1}}"#,
        "k".repeat(1_000_000)
    ))
    .await;
    openai_error(&text, status, 400);
    // Too many items, too many tools, oversized metadata values and a huge foreign tool type.
    let items: Vec<Value> = (0..10_001)
        .map(|_| json!({"role": "user", "content": "x"}))
        .collect();
    let (status, text) = send(json!({"model": "fast", "input": items}).to_string()).await;
    openai_error(&text, status, 400);
    assert!(text.contains("input"), "{text}");
    let tools: Vec<Value> = (0..513)
        .map(|i| json!({"type": "function", "name": format!("t{i}"), "parameters": {"type": "object"}}))
        .collect();
    let (status, text) =
        send(json!({"model": "fast", "input": "hi", "tools": tools}).to_string()).await;
    openai_error(&text, status, 400);
    let (status, text) = send(
        json!({"model": "fast", "input": "hi", "metadata": {"k": "v".repeat(1_000_000)}})
            .to_string(),
    )
    .await;
    openai_error(&text, status, 400);
    let (status, text) = send(
        json!({"model": "fast", "input": "hi", "tools": [{"type": "x".repeat(1_000_000)}]})
            .to_string(),
    )
    .await;
    openai_error(&text, status, 400);
    let (status, text) = send(
        json!({"model": "fast", "input": [{"type": "reasoning", "summary": [],
            "encrypted_content": format!("switchboard.v1:{}", "[".repeat(100_000))}]})
        .to_string(),
    )
    .await;
    openai_error(&text, status, 400);
    still_serves(addr, Duration::from_secs(2)).await;
}

/// The ready gateway over one OpenAI demo provider whose faults the test scripts.
async fn over_demo(demo: &switchboard::demo::DemoServer) -> (Running, std::path::PathBuf) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "switchboard-hostile-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(
        &path,
        format!(
            "[providers.openai]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"{}\"\n\
             deadlines = {{ total_ms = 60000 }}\n\n[[models]]\nid = \"openai/gpt-4o-mini\"\n",
            demo.base_url(),
            switchboard::demo::DEMO_API_KEY
        ),
    )
    .expect("config written");
    let g = server::start(
        &server::Options::new(path.to_string_lossy().into_owned()).listen("127.0.0.1:0"),
    )
    .await
    .expect("the gateway starts");
    (g, path)
}

#[tokio::test]
async fn a_clients_own_deadline_does_not_cool_the_target_down_for_others() {
    use switchboard::catalog::ProviderKind;
    use switchboard::demo::{DemoServer, Fault};

    let demo = DemoServer::start(ProviderKind::Openai, Default::default())
        .await
        .expect("demo");
    let (g, path) = over_demo(&demo).await;
    for _ in 0..3 {
        demo.faults()
            .push(Fault::SlowFirstByte(Duration::from_millis(500)));
        let req = format!(
            "POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             x-switchboard-timeout-ms: 50\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
            hello("openai/gpt-4o-mini").len(),
            hello("openai/gpt-4o-mini")
        );
        let (status, text) = raw(g.addr(), req.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status, 504, "{text}");
    }
    // Anyone else is still served.
    let (status, text) = raw(
        g.addr(),
        &post(&hello("openai/gpt-4o-mini")),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn upstream_quota_and_server_texts_never_reach_the_client() {
    use switchboard::catalog::ProviderKind;
    use switchboard::demo::{DemoServer, Fault};

    let demo = DemoServer::start(ProviderKind::Openai, Default::default())
        .await
        .expect("demo");
    let (g, path) = over_demo(&demo).await;
    // Three retryable failures: the third cools the target down after it answers.
    for code in [429, 503, 401] {
        demo.faults().push(Fault::status(code));
        let (status, text) = raw(
            g.addr(),
            &post(&hello("openai/gpt-4o-mini")),
            Duration::from_secs(5),
        )
        .await;
        assert!(status >= 400, "{code}: {text}");
        let v: Value = serde_json::from_str(body_of(&text)).expect("JSON");
        let message = v["error"]["message"].as_str().expect("a message");
        assert!(
            message.contains(&format!("upstream status {code}")),
            "{code}: the gateway's own words: {message}"
        );
    }
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let mut limits = ConnLimits::default();
    limits.idle_timeout = Duration::from_millis(500);
    limits.header_read_timeout = Duration::from_secs(30);
    let g = gateway(limits).await;
    let mut s = TcpStream::connect(g.addr()).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Nothing more is sent: the watchdog closes the connection after the idle timeout
    // (between one and two ticks), well before the header deadline.
    let start = Instant::now();
    let closed = timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("closed before the header deadline");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

/// The request log's API (`/api/v1/*`): oversized query strings and bodies, unknown or
/// repeated parameters, bad encodings, ids, cursors and methods are short OpenAI-shaped
/// errors with their proper statuses, and the gateway keeps serving.
#[tokio::test]
async fn the_log_api_refuses_hostile_queries_and_bodies() {
    let g = gateway(ConnLimits::default()).await;
    // Loopback clients are admin here (no admin key), as long as they name this machine.
    let get = |path: String| {
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").into_bytes()
    };
    let long_id = "g".repeat(300);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        // A page that reached the loopback port by DNS rebinding names its own host.
        (
            b"GET /api/v1/generations HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n"
                .to_vec(),
            401,
        ),
        (
            get(format!("/api/v1/generation?id={}", "a".repeat(5000))),
            414,
        ),
        (get(format!("/api/v1/generation?id={long_id}")), 400),
        (get("/api/v1/generation".into()), 400),
        (get("/api/v1/generation?id=a&id=b".into()), 400),
        (get("/api/v1/generation?nope=1".into()), 400),
        (get("/api/v1/generation?id=%ff%fe".into()), 400),
        (get("/api/v1/generation?id=%zz".into()), 400),
        (get("/api/v1/generation?id=gen-unknown".into()), 404),
        (get("/api/v1/generations?cursor=garbage".into()), 400),
        (get("/api/v1/generations?cursor=1_".into()), 400),
        (
            get("/api/v1/generations?sort=-cost&cursor=NaN_gen-x".into()),
            400,
        ),
        (get("/api/v1/generations?limit=-1".into()), 400),
        (get("/api/v1/generations?status=999".into()), 400),
        (get("/api/v1/generations?from=2024-99-99".into()), 400),
        (get("/api/v1/generations?format=xml".into()), 400),
        (get("/api/v1/stats?group_by=model,model".into()), 400),
        (get("/api/v1/stats?group_by=password".into()), 400),
        (
            get("/api/v1/stats?group_by=model,key,task,day,hour".into()),
            400,
        ),
        (post_to("/api/v1/generation", "{}"), 405),
        (get("/api/v1/feedback".into()), 405),
        (post_to("/api/v1/feedback", "{"), 400),
        (
            post_to(
                "/api/v1/feedback",
                r#"{"generation_id":"x","score":1,"extra":1}"#,
            ),
            400,
        ),
        (
            post_to("/api/v1/feedback", r#"{"generation_id":"x","score":1e309}"#),
            400,
        ),
        (
            post_to(
                "/api/v1/feedback",
                &format!(
                    r#"{{"generation_id":"x","score":1,"comment":"{}"}}"#,
                    "c".repeat(20_000)
                ),
            ),
            413,
        ),
        (
            post_to(
                "/api/v1/feedback",
                r#"{"generation_id":"gen-none","score":0.5}"#,
            ),
            404,
        ),
    ];
    for (req, want) in cases {
        let (status, answer) = raw(g.addr(), &req, Duration::from_secs(5)).await;
        let head = String::from_utf8_lossy(&req[..req.len().min(80)]).into_owned();
        assert_eq!(status, want, "{head}: {answer}");
        let v: Value = serde_json::from_str(body_of(&answer))
            .unwrap_or_else(|e| panic!("{head}: {e}: {answer}"));
        assert!(v["error"]["message"].is_string(), "{head}: {answer}");
        assert!(answer.len() < 4096, "{head}: a short answer");
    }
    still_serves(g.addr(), Duration::from_secs(5)).await;
    g.shutdown(Duration::from_secs(5)).await;
}

/// The dashboard and the shadow comparison API: bad parameters, methods and paths are short
/// errors; the page echoes nothing of the request and carries its security headers.
#[tokio::test]
async fn the_dashboard_and_shadow_compare_refuse_hostile_input() {
    let g = gateway(ConnLimits::default()).await;
    let get = |path: String| {
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").into_bytes()
    };
    const C: &str = "/api/v1/shadow/compare";
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (get(format!("{C}?source={}", "s".repeat(5000))), 414),
        (get(format!("{C}?source={}", "s".repeat(300))), 400),
        (get(format!("{C}?source=a&source=b")), 400),
        (get(format!("{C}?password=1")), 400),
        (get(format!("{C}?candidate=%ff")), 400),
        (get(format!("{C}?limit=101")), 400),
        (get(format!("{C}?limit=-1")), 400),
        (get(format!("{C}?from=yesterday")), 400),
        (post_to(C, "{}"), 405),
        (post_to("/dashboard", "{}"), 405),
        (get("/dashboard/../../etc/passwd".into()), 404),
        (get("/dashboard.json".into()), 404),
    ];
    for (req, want) in cases {
        let (status, answer) = raw(g.addr(), &req, Duration::from_secs(5)).await;
        let head = String::from_utf8_lossy(&req[..req.len().min(80)]).into_owned();
        assert_eq!(status, want, "{head}: {answer}");
        let v: Value = serde_json::from_str(body_of(&answer))
            .unwrap_or_else(|e| panic!("{head}: {e}: {answer}"));
        assert!(v["error"]["message"].is_string(), "{head}: {answer}");
        assert!(answer.len() < 4096, "{head}: a short answer");
    }
    let (status, page) = raw(
        g.addr(),
        &get("/dashboard?x=%3Cscript%3Ealert(1)%3C/script%3E#key=k".into()),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status, 200);
    let head = page.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(!page.contains("alert(1)") && !page.contains("%3Cscript"));
    still_serves(g.addr(), Duration::from_secs(5)).await;
    g.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_embeddings_endpoint_holds_the_limits() {
    const EMBEDDINGS: &str = "/v1/embeddings";
    let g = gateway(ConnLimits::default()).await;
    let addr = g.addr();
    let check = |text: &str, status: u16, expect: u16| {
        assert_eq!(status, expect, "{}", &text[..text.len().min(300)]);
        assert!(text.len() < 2_000, "nothing echoed: {}", text.len());
        let v: Value = serde_json::from_str(body_of(text)).expect("JSON");
        assert!(v["error"]["message"].as_str().expect("a message").len() < 600);
    };
    let send = |body: String| async move {
        raw(addr, &post_to(EMBEDDINGS, &body), Duration::from_secs(10)).await
    };
    // Oversized: 413 from the content-length, before the body is read.
    let head = format!(
        "POST {EMBEDDINGS} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{{",
        64 * 1024 * 1024
    );
    let (status, text) = raw(addr, head.as_bytes(), Duration::from_secs(5)).await;
    check(&text, status, 413);
    let model = "openai/text-embedding-3-small";
    for body in [
        "{not json".to_owned(),
        format!(
            r#"{{"model":"{model}","input":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
        json!({"model": "m".repeat(1_000_000), "input": "hi"}).to_string(),
        json!({"model": model, "input": "hi", "encoding_format": "x".repeat(1_000_000)})
            .to_string(),
        json!({"model": model, "input": vec!["a"; 3000]}).to_string(),
        json!({"model": model, "input": "a".repeat(5 * 1024 * 1024)}).to_string(),
        json!({"model": model, "input": []}).to_string(),
        json!({"model": model, "input": [[]]}).to_string(),
        json!({"model": model, "input": [1, -1]}).to_string(),
        json!({"model": model, "input": {"text": "x"}}).to_string(),
        json!({"model": "openai/gpt-4o-mini", "input": "x"}).to_string(),
    ] {
        let (status, text) = send(body).await;
        check(&text, status, 400);
    }
    // Unknown models are 404; the gateway keeps serving.
    let (status, text) = send(json!({"model": "nobody/x", "input": "x"}).to_string()).await;
    check(&text, status, 404);
    let (status, text) = send(json!({"model": model, "input": "x"}).to_string()).await;
    assert_eq!(status, 200, "{text}");
}
