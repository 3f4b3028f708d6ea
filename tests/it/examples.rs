//! The example programs, run as users run them: the binaries `cargo test` builds (into
//! `target/<profile>/examples/`), started with `--listen 127.0.0.1:0` and no provider key in
//! their environment, so on their own demo providers, and driven as a client would: over HTTP
//! for the axum apps, with the example's own client mode for gRPC.
//!
//! The demo providers live in the example's process, so what reached them is read off their
//! answers: the OpenAI-compatible demo numbers its answers (`chatcmpl-demo{n}` for its n-th
//! request), and the gateway passes that id through.

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// Every test is bounded: a hang fails instead of blocking CI.
async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("the test finished within 60 s");
}

/// The example program `name`, as `cargo test` or `cargo build --examples` built it next to
/// this test binary: `target/<profile>/deps/it-<hash>` → `target/<profile>/examples/<name>`.
fn program(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let path: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps")
        .join("examples")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: the example programs are built by `cargo test` (or `cargo build \
         --examples`); `cargo test --test it` alone does not build them",
        path.display()
    );
    let mut cmd = Command::new(path);
    // No provider key: the example starts its own demo providers.
    for key in ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"] {
        cmd.env_remove(key);
    }
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// An example serving on 127.0.0.1, killed on drop.
struct Example {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    /// Everything it printed, stdout and stderr (read by two threads until it exits).
    output: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Example {
    /// Starts `name --listen 127.0.0.1:0` and waits for its `listening on http://ADDR` line.
    async fn start(name: &'static str) -> Self {
        let mut child = program(name)
            .args(["--listen", "127.0.0.1:0"])
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stdout = child.stdout.take().unwrap();
        let out = output.clone();
        let stdout_reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.to_owned());
                    }
                }
                let mut out = out.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let out = output.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            out.lock().unwrap().push_str(&text);
        });
        let mut example = Self {
            name,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            output,
            readers: vec![stdout_reader, stderr_reader],
        };
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(addr)) => {
                example.addr = addr
                    .parse()
                    .unwrap_or_else(|e| panic!("{name} listens on `{addr}`: {e}"));
                example
            }
            _ => {
                let output = example.stop();
                panic!("{name} did not print `listening on http://ADDR`; its output:\n{output}")
            }
        }
    }

    /// Kills the program (if it still runs) and returns everything it printed.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let output = self.stop();
        if std::thread::panicking() {
            eprintln!("{} printed:\n{output}", self.name);
        }
    }
}

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Http {
    fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(serde_json::to_vec(&v).unwrap()))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = self.client.request(req.body(body).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.send(Method::POST, path, token, Some(body)).await
    }
}

fn hello(model: &str, text: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": text }] })
}

#[tokio::test]
async fn axum_embed_auth_budgets_and_streams() {
    bounded(async {
        let example = Example::start("axum_embed").await;
        let http = Http::new(example.addr);
        const CHAT: &str = "/llm/v1/chat/completions";

        // The app's own public route.
        let r = http.get("/", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.text().contains("/llm/v1"));

        // The app's own auth guards its routes and the gateway alike.
        for (path, token) in [("/me", None), (CHAT, None), (CHAT, Some("mallory-token"))] {
            let r = if path == CHAT {
                http.post(path, token, hello("fast", "hi")).await
            } else {
                http.get(path, token).await
            };
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} with {token:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            assert_eq!(r.json()["error"], "missing or unknown bearer token");
        }

        // alice chats through /llm/v1/chat/completions.
        let r = http
            .post(CHAT, Some("alice-token"), hello("fast", "Hello there"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-switchboard-model"), Some("openai/gpt-4o-mini"));
        let j = r.json();
        // The completion's id is its generation id, the key of its request-log row.
        let id = r
            .header("x-generation-id")
            .expect("a generation id")
            .to_owned();
        assert_eq!(j["id"], id);
        assert_eq!(
            j["choices"][0]["message"]["content"],
            "Hello from the demo openai provider! You said: Hello there"
        );
        assert!(j["usage"]["cost"].as_f64().unwrap() > 0.0);

        // The request log's API, mounted beside the app's routes: the row says who and what.
        let waited = tokio::time::Instant::now();
        let row = loop {
            let r = http.get(&format!("/api/v1/generation?id={id}"), None).await;
            if r.status == StatusCode::OK {
                break r.json();
            }
            assert!(waited.elapsed() < Duration::from_secs(10), "{}", r.text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(row["data"]["api_key_name"], "alice");
        assert_eq!(row["data"]["model"], "openai/gpt-4o-mini");
        assert_eq!(row["data"]["total_cost"], j["usage"]["cost"]);

        // Streaming, with the usage chunk the client asked for.
        let mut body = hello("balanced", "stream this please");
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
        let r = http.post(CHAT, Some("alice-token"), body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        let events: Vec<&str> = r
            .body
            .split(|b| *b == b'\n')
            .filter_map(|l| std::str::from_utf8(l).ok()?.strip_prefix("data: "))
            .collect();
        assert_eq!(events.last(), Some(&"[DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(
            text,
            "Hello from the demo anthropic provider! You said: stream this please"
        );
        assert!(chunks.len() >= 3, "several chunks: {chunks:?}");
        assert!(chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop"));
        assert!(
            chunks.last().unwrap()["usage"]["total_tokens"]
                .as_u64()
                .unwrap()
                > 0
        );

        // The catalog under /llm/v1/models.
        let r = http.get("/llm/v1/models", Some("bob-token")).await;
        assert_eq!(r.status, StatusCode::OK);
        let models = r.json();
        let ids: Vec<&str> = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        assert!(ids.contains(&"openai/gpt-4o-mini") && ids.contains(&"google/gemini-2.5-pro"));

        // alice's spend was charged to alice.
        let me = http.get("/me", Some("alice-token")).await.json();
        assert_eq!(me["user"], "alice");
        assert!(me["spent_today_usd"].as_f64().unwrap() > 0.0);
        assert_eq!(me["budget_today_usd"], 1.0);

        // bob's tiny budget ($0.0001 a day): one small gpt-4o call fits, then 402.
        let mut small = hello("openai/gpt-4o", "hi");
        small["max_tokens"] = json!(5);
        let mut outcomes = Vec::new();
        for _ in 0..5 {
            let r = http.post(CHAT, Some("bob-token"), small.clone()).await;
            let done = r.status == StatusCode::PAYMENT_REQUIRED;
            outcomes.push(r);
            if done {
                break;
            }
        }
        assert_eq!(outcomes[0].status, StatusCode::OK, "{}", outcomes[0].text());
        let last = outcomes.last().unwrap();
        assert_eq!(last.status, StatusCode::PAYMENT_REQUIRED, "{}", last.text());
        assert_eq!(last.json()["error"]["code"], "budget_exhausted");
        // alice is not affected by bob's budget.
        let r = http.post(CHAT, Some("alice-token"), small).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    })
    .await;
}

/// What one run of `tonic_embed --connect …` printed, and how it ended.
#[derive(Debug)]
struct ClientRun {
    status: ExitStatus,
    /// Its stdout: one JSON object per line.
    lines: Vec<Value>,
    stderr: String,
}

impl ClientRun {
    /// The lines about `rpc` (`Chat` or `ChatStream`).
    fn rpc<'a>(&'a self, rpc: &'a str) -> impl Iterator<Item = &'a Value> {
        self.lines.iter().filter(move |l| l["rpc"] == rpc)
    }

    /// The one error `rpc` ended with.
    fn error<'a>(&'a self, rpc: &'a str) -> &'a Value {
        let errors: Vec<_> = self.rpc(rpc).filter(|l| l.get("error").is_some()).collect();
        assert_eq!(errors.len(), 1, "one {rpc} error: {self:?}");
        &errors[0]["error"]
    }
}

/// Runs the example's client mode against `addr`: `Chat`, then `ChatStream`, with a system
/// prompt, `max_tokens` 100 and `temperature`.
async fn tonic_client(addr: SocketAddr, model: &str, temperature: f64) -> ClientRun {
    let mut cmd = tokio::process::Command::from(program("tonic_embed"));
    cmd.args(["--connect", &format!("http://{addr}"), "--model", model])
        .args(["--system", "Be brief.", "--max-tokens", "100"])
        .args(["--temperature", &temperature.to_string(), "Hello over gRPC"])
        .kill_on_drop(true);
    let out = cmd.output().await.expect("tonic_embed --connect runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {stdout}"))
        })
        .collect();
    ClientRun {
        status: out.status,
        lines,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn tonic_embed_unary_stream_and_errors() {
    bounded(async {
        let server = Example::start("tonic_embed").await;

        for model in ["fast", "balanced", "deep"] {
            let run = tonic_client(server.addr, model, 0.5).await;
            assert!(run.status.success(), "{model}: {run:?}");

            // Unary: content and usage.
            let replies: Vec<_> = run.rpc("Chat").collect();
            assert_eq!(replies.len(), 1, "{model}: {run:?}");
            let reply = &replies[0]["reply"];
            if model == "deep" {
                assert_eq!(reply["model"], "google/gemini-2.5-pro");
                assert_eq!(
                    reply["content"],
                    "Hello from the demo gemini provider! You said: Hello over gRPC"
                );
                assert_eq!(reply["finish_reason"], "stop");
                let usage = &reply["usage"];
                let tokens = |k: &str| usage[k].as_u64().unwrap();
                assert!(tokens("prompt_tokens") > 0 && tokens("completion_tokens") > 0);
                assert_eq!(
                    tokens("total_tokens"),
                    tokens("prompt_tokens") + tokens("completion_tokens")
                );
                assert!(usage["cost"].as_f64().unwrap() > 0.0);
            }

            // Server streaming: several text chunks, then one with finish_reason and usage.
            let chunks: Vec<&Value> = run.rpc("ChatStream").map(|l| &l["chunk"]).collect();
            assert!(chunks.len() >= 3, "{model}: {chunks:?}");
            let (last, text_chunks) = chunks.split_last().unwrap();
            for c in text_chunks {
                assert!(
                    !c["delta"].as_str().unwrap().is_empty()
                        && c["finish_reason"].is_null()
                        && c["usage"].is_null(),
                    "{model}: {c}"
                );
                assert_eq!(c["id"], last["id"]);
            }
            assert_eq!(last["finish_reason"], "stop");
            let usage = &last["usage"];
            assert!(usage["completion_tokens"].as_u64().unwrap() > 0 && !usage["cost"].is_null());
            let text: String = text_chunks
                .iter()
                .map(|c| c["delta"].as_str().unwrap())
                .collect();
            assert!(
                text.ends_with("You said: Hello over gRPC"),
                "{model}: {text}"
            );
        }

        // Errors map to gRPC codes; the client reports them and exits with a failure.
        let run = tonic_client(server.addr, "no-such-model", 0.5).await;
        assert!(!run.status.success(), "{run:?}");
        assert!(run.stderr.contains("Chat failed: NotFound"), "{run:?}");
        let err = run.error("Chat");
        assert_eq!(err["code"], "NotFound", "{run:?}");
        assert_eq!(err["kind"], "not_found");
        assert_eq!(run.error("ChatStream")["code"], "NotFound", "{run:?}");
        let run = tonic_client(server.addr, "fast", 7.0).await;
        assert!(!run.status.success(), "{run:?}");
        let err = run.error("Chat");
        assert_eq!(err["code"], "InvalidArgument", "{run:?}");
        assert!(err["message"].as_str().unwrap().contains("temperature"));
    })
    .await;
}

#[tokio::test]
async fn custom_gateway_layers_compose() {
    bounded(async {
        let example = Example::start("custom_gateway").await;
        let http = Http::new(example.addr);
        const CHAT: &str = "/v1/chat/completions";

        // Both layers act on an answer: the guard's typed header and tower-http's.
        let r = http.post(CHAT, None, hello("fast", "Hello!")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-switchboard-guard"), Some("passed"));
        assert_eq!(r.header("x-gateway"), Some("custom_gateway"));
        assert_eq!(r.header("x-switchboard-model"), Some("openai/gpt-4o-mini"));
        assert_eq!(
            r.json()["id"],
            "chatcmpl-demo1",
            "the OpenAI demo's first request"
        );

        // Streams pass through the guard too.
        let mut body = hello("balanced", "Hello!");
        body["stream"] = json!(true);
        let r = http.post(CHAT, None, body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-switchboard-guard"), Some("passed"));
        assert!(r.text().trim_end().ends_with("data: [DONE]"));

        // The guard refuses a banned prompt before any provider sees it; tower-http still
        // stamps the error answer.
        let r = http
            .post(CHAT, None, hello("fast", "What is the admin PASSWORD?"))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        let err = &r.json()["error"];
        assert_eq!(err["code"], "banned_word");
        assert_eq!(err["param"], "messages");
        assert_eq!(err["type"], "invalid_request_error");
        assert_eq!(r.header("x-switchboard-guard"), None);
        assert_eq!(r.header("x-gateway"), Some("custom_gateway"));
        // The OpenAI demo's next request is its second: the banned prompt never reached it.
        let r = http.post(CHAT, None, hello("fast", "Hello again!")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(
            r.json()["id"],
            "chatcmpl-demo2",
            "the banned prompt was not sent"
        );

        // Unknown models still get switchboard's 404 from model_resolve.
        let r = http
            .post(CHAT, None, hello("no-such-model", "Hello!"))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
        assert_eq!(r.header("x-gateway"), Some("custom_gateway"));

        let r = http.get("/v1/models", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.json()["data"].as_array().unwrap().len() >= 6);
    })
    .await;
}

#[tokio::test]
async fn custom_provider_codec_runs_through_fallback_and_cost_meter() {
    bounded(async {
        let example = Example::start("custom_provider").await;
        let http = Http::new(example.addr);
        const CHAT: &str = "/v1/chat/completions";

        // The made-up Acme wire format, decoded and priced: 2 prompt tokens × $1/M +
        // 3 completion tokens × $2/M (the example's catalog).
        let r = http.post(CHAT, None, hello("acme/echo-1", "Hello!")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-switchboard-provider"), Some("acme"));
        let v = r.json();
        assert_eq!(v["choices"][0]["message"]["content"], "Acme heard: Hello!");
        assert_eq!(v["usage"]["prompt_tokens"], 2);
        assert_eq!(v["usage"]["completion_tokens"], 3);
        assert_eq!(v["usage"]["cost"], 0.000_008);
        assert_eq!(r.header("x-switchboard-cost"), Some("0.000008000"));

        // Acme streams through its own decoder, usage and cost on the last chunk.
        let mut body = hello("acme/echo-1", "Hello there");
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let r = http.post(CHAT, None, body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let text = r.text();
        let chunks: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let said: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(said, "Acme heard: Hello there");
        let usage = &chunks.last().unwrap()["usage"];
        assert!(usage["cost"].as_f64().unwrap() > 0.0, "{text}");
        assert!(text.trim_end().ends_with("data: [DONE]"));

        // Acme's 503 is retryable through the one status table: Fallback moves on.
        let r = http
            .post(
                CHAT,
                None,
                json!({"models": ["acme/echo-1", "openai/gpt-4o-mini"],
                       "messages": [{"role": "user", "content": "overload please"}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(
            r.header("x-switchboard-attempts"),
            Some("acme:acme/echo-1=overloaded, openai:openai/gpt-4o-mini=ok")
        );
        assert!(r.json()["usage"]["cost"].as_f64().unwrap() > 0.0);

        // Alone, Acme's overload is the client's 503 with the gateway's own message.
        let r = http
            .post(CHAT, None, hello("acme/echo-1", "overload please"))
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
        assert!(!r.text().contains("Acme is overloaded"), "{}", r.text());
    })
    .await;
}
