//! Google Vertex AI (`kind = "vertex"`): Gemini and Claude through the Vertex demo, with
//! service-account tokens from its own token endpoint — translation, streams, tools, usage,
//! errors, fallback, token caching and refresh, and the Messages edge.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use switchboard::catalog::ProviderKind;
use switchboard::demo::{test_service_account_json, DemoConfig, DemoServer, Fault};
use switchboard::fallback::FallbackLayer;
use switchboard::health::{Health, HealthConfig};
use switchboard::{Catalog, Gateway};
use tower::ServiceExt;

/// TEST-ONLY: an RSA key no demo trusts (a service account with a wrong key).
const OTHER_TEST_KEY: &str = include_str!("vertex_data/other_test_key.pem");

const CLAUDE: &str = "claude-sonnet-4@20250514";

struct Env {
    gateway: Gateway,
    v: DemoServer,
    backup: DemoServer,
}

/// The Vertex demo (`vertex`, project `demo-proj` in `us-central1`) with credentials `creds`
/// (a key file's JSON, from an environment variable), and an OpenAI-compatible `backup`
/// behind Claude.
async fn env_with(config: DemoConfig, creds: Option<String>) -> Env {
    let v = DemoServer::start(ProviderKind::Vertex, config)
        .await
        .unwrap();
    let backup = DemoServer::start(ProviderKind::Openai, DemoConfig::default())
        .await
        .unwrap();
    let creds = creds.unwrap_or_else(|| v.service_account_json());
    let toml = format!(
        r#"
[settings]
passthrough = true

[providers.vertex]
kind = "vertex"
base_url = "{}"
project = "demo-proj"
location = "us-central1"
credentials_env = "VERTEX_SA"

[providers.backup]
kind = "openai"
base_url = "{}"
api_key = "demo-key"

[[models]]
id = "google/gemini-2.5-flash"
[[models.endpoints]]
provider = "vertex"
upstream = "gemini-2.5-flash"

[[models]]
id = "anthropic/claude-sonnet-4"
max_output = 64000
capabilities = {{ tools = true, reasoning = true }}
[[models.endpoints]]
provider = "vertex"
upstream = "{CLAUDE}"
pricing = {{ input = 3.0, output = 15.0, cached_input = 0.3, cache_write = 3.75 }}
[[models.endpoints]]
provider = "backup"
upstream = "gpt-4o-mini"
"#,
        v.base_url(),
        backup.base_url()
    );
    let catalog = Catalog::from_toml_with_env(&toml, |k| match k {
        "VERTEX_SA" => Some(creds.clone()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{}", e.message()));
    let gateway = Gateway::builder(catalog)
        .fallback(FallbackLayer::new().max_budget(Duration::from_secs(30)))
        .health(Health::new(HealthConfig {
            failure_threshold: 1_000,
            ..HealthConfig::default()
        }))
        .build();
    Env { gateway, v, backup }
}

async fn env() -> Env {
    env_with(DemoConfig::default(), None).await
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    /// The data of each SSE event (`[DONE]` included).
    fn events(&self) -> Vec<Value> {
        self.body
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.to_owned())))
            .collect()
    }
    /// The text of a stream's deltas.
    fn streamed_text(&self) -> String {
        self.events()
            .iter()
            .filter_map(|e| {
                e["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }
}

async fn post(g: &Gateway, body: &Value) -> Answer {
    let req = http::Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = g.chat_completions().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn hello(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream,
           "messages": [{"role": "user", "content": "hello there"}]})
}

fn model_path(publisher: &str, model: &str, method: &str) -> String {
    format!(
        "/v1/projects/demo-proj/locations/us-central1/publishers/{publisher}/models/{model}:{method}"
    )
}

#[tokio::test]
async fn gemini_on_vertex_answers_and_streams_with_a_bearer_token() {
    let e = env().await;
    let a = post(&e.gateway, &hello("google/gemini-2.5-flash", false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["model"], "google/gemini-2.5-flash");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the demo gemini provider! You said: hello there"
    );
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(a.headers["x-switchboard-provider"], "vertex");
    let sent = e.v.last_request().unwrap();
    assert_eq!(
        sent.path,
        model_path("google", "gemini-2.5-flash", "generateContent")
    );
    assert!(sent
        .header("authorization")
        .unwrap()
        .starts_with("Bearer ya29.demo-"));
    assert!(sent.header("x-goog-api-key").is_none());
    assert!(sent.body["contents"].is_array());

    let a = post(&e.gateway, &hello("google/gemini-2.5-flash", true)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.streamed_text(),
        "Hello from the demo gemini provider! You said: hello there"
    );
    let events = a.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert_eq!(
        e.v.last_request().unwrap().path,
        model_path(
            "google",
            "gemini-2.5-flash",
            "streamGenerateContent?alt=sse"
        )
    );
    // One token served all three requests (the first fetched it).
    assert_eq!(e.v.tokens_issued(), 1);
}

#[tokio::test]
async fn claude_on_vertex_uses_raw_predict_with_vertex_body() {
    let e = env().await;
    let a = post(&e.gateway, &hello("anthropic/claude-sonnet-4", false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the demo anthropic provider! You said: hello there"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let sent = e.v.last_request().unwrap();
    assert_eq!(sent.path, model_path("anthropic", CLAUDE, "rawPredict"));
    assert_eq!(sent.body["anthropic_version"], "vertex-2023-10-16");
    assert!(sent.body.get("model").is_none());
    assert!(sent.header("anthropic-version").is_none());
    assert!(sent.header("x-api-key").is_none());
    assert!(String::from_utf8_lossy(&sent.raw_body).starts_with("{\"anthropic_version\""));

    let a = post(&e.gateway, &hello("anthropic/claude-sonnet-4", true)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.streamed_text(),
        "Hello from the demo anthropic provider! You said: hello there"
    );
    let sent = e.v.last_request().unwrap();
    assert_eq!(
        sent.path,
        model_path("anthropic", CLAUDE, "streamRawPredict")
    );
    assert_eq!(sent.body["stream"], true);
    assert_eq!(e.backup.request_count(), 0);
}

#[tokio::test]
async fn pass_through_ids_pick_the_publisher_by_name() {
    let e = env().await;
    let a = post(
        &e.gateway,
        &hello("vertex/claude-3-5-haiku@20241022", false),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        e.v.last_request().unwrap().path,
        model_path("anthropic", "claude-3-5-haiku@20241022", "rawPredict")
    );
    let a = post(&e.gateway, &hello("vertex/gemini-2.0-flash-001", false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        e.v.last_request().unwrap().path,
        model_path("google", "gemini-2.0-flash-001", "generateContent")
    );
    // Names that would reach another path or method are refused before any request.
    let before = e.v.request_count();
    for bad in ["vertex/gemini:x", "vertex/../x", "vertex/a%2Fb"] {
        let a = post(&e.gateway, &hello(bad, false)).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
    }
    assert_eq!(e.v.request_count(), before);
}

fn tool_request(model: &str, stream: bool) -> Value {
    json!({
        "model": model, "stream": stream,
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}]
    })
}

#[tokio::test]
async fn tools_round_trip_on_both_publishers() {
    let e = env().await;
    for model in ["google/gemini-2.5-flash", "anthropic/claude-sonnet-4"] {
        let a = post(&e.gateway, &tool_request(model, false)).await;
        assert_eq!(a.status, 200, "{model}: {}", a.body);
        let v = a.json();
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather", "{model}: {v}");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "demo"}));

        // The result goes back; the model answers with it.
        let id = call["id"].as_str().unwrap();
        let follow = json!({"model": model, "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": id, "content": "{\"temp\":21}"}
        ], "tools": tool_request(model, false)["tools"]});
        let a = post(&e.gateway, &follow).await;
        assert_eq!(a.status, 200, "{model}: {}", a.body);
        let text = a.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.starts_with("Tool result received"), "{model}: {text}");

        let a = post(&e.gateway, &tool_request(model, true)).await;
        assert_eq!(a.status, 200, "{model}: {}", a.body);
        let names: Vec<_> = a
            .events()
            .iter()
            .filter_map(|ev| {
                ev["choices"][0]["delta"]["tool_calls"][0]["function"]["name"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(names, ["get_weather"], "{model}: {}", a.body);
    }
}

#[tokio::test]
async fn claude_cache_tokens_and_reasoning_come_through() {
    let e = env().await;
    let long = "word ".repeat(50);
    let body = json!({"model": "anthropic/claude-sonnet-4", "messages": [
        {"role": "system", "content": [{"type": "text", "text": long,
                                         "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "hello"}
    ]});
    let first = post(&e.gateway, &body).await.json();
    let second = post(&e.gateway, &body).await.json();
    let u1 = &first["usage"];
    let u2 = &second["usage"];
    assert_eq!(u1["prompt_tokens_details"]["cached_tokens"], 0, "{u1}");
    assert!(
        u1["prompt_tokens_details"]["cache_write_tokens"].as_u64() > Some(0),
        "{u1}"
    );
    assert!(
        u2["prompt_tokens_details"]["cached_tokens"].as_u64() > Some(0),
        "{u2}"
    );
    assert!(u2["cost"].as_f64().unwrap() < u1["cost"].as_f64().unwrap());

    for model in ["anthropic/claude-sonnet-4", "google/gemini-2.5-flash"] {
        let a = post(
            &e.gateway,
            &json!({"model": model, "max_tokens": 4000, "reasoning": {"effort": "low"},
                    "messages": [{"role": "user", "content": "think"}]}),
        )
        .await;
        assert_eq!(a.status, 200, "{model}: {}", a.body);
        let v = a.json();
        assert!(
            v["choices"][0]["message"]["reasoning"].is_string(),
            "{model}: {v}"
        );
        assert!(
            v["usage"]["completion_tokens_details"]["reasoning_tokens"].is_u64()
                || model.starts_with("anthropic")
        );
    }
}

#[tokio::test]
async fn vertex_errors_follow_the_table() {
    let cases: Vec<(Fault, u16)> = vec![
        (Fault::Status(429, Some(3)), 429),
        (Fault::status(500), 502),
        (Fault::status(503), 503),
        (Fault::status(400), 400),
        (Fault::status(404), 404),
        (Fault::status(401), 502),
        (Fault::status(403), 502),
        (Fault::Garbage, 502),
        (Fault::Truncated, 502),
    ];
    let e = env().await;
    for (fault, status) in cases {
        e.v.faults().push(fault.clone());
        let a = post(&e.gateway, &hello("google/gemini-2.5-flash", false)).await;
        assert_eq!(a.status, status, "{fault:?}: {}", a.body);
        assert!(!a.body.contains("ya29."), "{}", a.body);
    }
    // A stream cut short is an error, not a success.
    e.v.faults().push(Fault::NoDone);
    let a = post(&e.gateway, &hello("google/gemini-2.5-flash", true)).await;
    assert!(a.status != 200 || a.body.contains("error"), "{}", a.body);
    // The demo's 401 (an expired or unknown token) is the gateway's credentials: 502.
    e.v.faults().push(Fault::status(401));
    let a = post(
        &e.gateway,
        &json!({"model": "vertex/claude-x", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(a.status, 502, "{}", a.body);
}

#[tokio::test]
async fn claude_on_vertex_falls_back_to_another_provider() {
    let e = env().await;
    e.v.faults().push(Fault::status(500));
    let a = post(&e.gateway, &hello("anthropic/claude-sonnet-4", false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers["x-switchboard-provider"], "backup");
    e.v.faults().push(Fault::Status(429, Some(1)));
    let a = post(&e.gateway, &hello("anthropic/claude-sonnet-4", true)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers["x-switchboard-provider"], "backup");
}

#[tokio::test]
async fn many_concurrent_requests_share_one_token_fetch_and_refresh_after_expiry() {
    let e = env_with(
        DemoConfig::default().with_token_lifetime(Duration::from_secs(2)),
        None,
    )
    .await;
    let burst = |round: u32| {
        let g = e.gateway.clone();
        async move {
            let tasks: Vec<_> = (0..24)
                .map(|i| {
                    let g = g.clone();
                    tokio::spawn(async move {
                        let model = if i % 2 == 0 {
                            "google/gemini-2.5-flash"
                        } else {
                            "anthropic/claude-sonnet-4"
                        };
                        let mut body = hello(model, i % 3 == 0);
                        // Distinct prompts: no response-cache hits.
                        body["messages"][0]["content"] = format!("hello {i} {round}").into();
                        post(&g, &body).await.status
                    })
                })
                .collect();
            for t in tasks {
                assert_eq!(t.await.unwrap(), 200);
            }
        }
    };
    burst(1).await;
    assert_eq!(e.v.tokens_issued(), 1, "one fetch for the whole burst");
    let first_token =
        e.v.last_request()
            .unwrap()
            .header("authorization")
            .unwrap()
            .to_owned();
    // The token expires after 2 s; the demo refuses it from then on.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = http::Request::post(format!(
        "{}{}",
        e.v.base_url(),
        model_path("google", "gemini-2.5-flash", "generateContent")
    ))
    .header("authorization", &first_token)
    .body(switchboard::client::UpstreamBody::from(
        hello("x", false).to_string(),
    ))
    .unwrap();
    let resp = switchboard::client::HttpClient::new()
        .oneshot(stale)
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the expired token is refused");
    burst(2).await;
    assert_eq!(e.v.tokens_issued(), 2, "one refresh for the second burst");
    assert_eq!(e.backup.request_count(), 0, "no request was refused");
    let token_fetches = e.v.requests().iter().filter(|r| r.path == "/token").count();
    assert_eq!(token_fetches, 2);
    // The grant is a form with the JWT bearer grant type.
    let grant =
        e.v.requests()
            .into_iter()
            .find(|r| r.path == "/token")
            .unwrap();
    assert_eq!(
        grant.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert!(String::from_utf8_lossy(&grant.raw_body).starts_with(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
    ));
}

#[tokio::test]
async fn a_wrong_key_is_502_and_fallback_moves_on() {
    let e = env().await;
    // The test account's key file with another key in it.
    let mut file: Value =
        serde_json::from_str(&test_service_account_json(&e.v.token_uri())).unwrap();
    file["private_key"] = OTHER_TEST_KEY.into();
    let bad = env_with(DemoConfig::default(), Some(file.to_string())).await;
    let a = post(&bad.gateway, &hello("google/gemini-2.5-flash", false)).await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert!(a.body.contains("token endpoint refused"), "{}", a.body);
    assert!(a.body.contains("invalid_grant"), "{}", a.body);
    assert!(!a.body.contains("PRIVATE KEY"));
    assert_eq!(bad.v.tokens_issued(), 0);
    let models_called = bad
        .v
        .requests()
        .iter()
        .filter(|r| r.path != "/token")
        .count();
    assert_eq!(models_called, 0, "nothing sent without a token");
    let a = post(&bad.gateway, &hello("anthropic/claude-sonnet-4", false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers["x-switchboard-provider"], "backup");
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_is_502_and_fallback_moves_on() {
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let creds = test_service_account_json(&format!("http://{dead}/token"));
    let e = env_with(DemoConfig::default(), Some(creds)).await;
    let a = post(&e.gateway, &hello("google/gemini-2.5-flash", false)).await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert_eq!(a.json()["error"]["type"], "upstream_error");
    let a = post(&e.gateway, &hello("anthropic/claude-sonnet-4", true)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers["x-switchboard-provider"], "backup");
    assert_eq!(e.v.request_count(), 0);
}

#[tokio::test]
async fn the_metadata_server_gives_tokens_too() {
    let e = env().await;
    let toml_catalog = format!(
        "[providers.vertex]\nkind = \"vertex\"\nbase_url = \"{}\"\nproject = \"p\"\nmetadata_url = \"{}\"\n\
         [[models]]\nid = \"vertex/gemini-2.5-flash\"\n",
        e.v.base_url(),
        e.v.metadata_url()
    );
    let catalog = Catalog::from_toml_with_env(&toml_catalog, |_| None).unwrap();
    let g = Gateway::builder(catalog).build();
    let a = post(&g, &hello("vertex/gemini-2.5-flash", false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(e.v.tokens_issued(), 1);
    let fetch =
        e.v.requests()
            .into_iter()
            .find(|r| r.path.starts_with("/computeMetadata"))
            .unwrap();
    assert_eq!(fetch.header("metadata-flavor"), Some("Google"));
    assert_eq!(
        e.v.last_request().unwrap().path,
        "/v1/projects/p/locations/global/publishers/google/models/gemini-2.5-flash:generateContent"
    );
}

#[tokio::test]
async fn config_errors_name_the_field_and_never_the_key() {
    let bad = |section: &str, env: Option<String>| {
        let toml = format!("[providers.v]\nkind = \"vertex\"\n{section}\n");
        Catalog::from_toml_with_env(&toml, |k| (k == "SA").then(|| env.clone()).flatten())
            .unwrap_err()
            .message()
            .to_owned()
    };
    assert!(bad("location = \"us-east5\"", None).contains("providers.v.project"));
    assert!(bad("project = \"p/../x\"", None).contains("project"));
    let m = bad(
        "project = \"p\"\ncredentials_file = \"/nonexistent/key.json\"",
        None,
    );
    assert!(m.contains("credentials_file"), "{m}");
    let m = bad("project = \"p\"\ncredentials_env = \"SA\"", None);
    assert!(m.contains("`SA` is not set"), "{m}");
    let mut file: Value =
        serde_json::from_str(&test_service_account_json("https://x/token")).unwrap();
    file["private_key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
    let m = bad(
        "project = \"p\"\ncredentials_env = \"SA\"",
        Some(file.to_string()),
    );
    assert!(m.contains("credentials_env") && !m.contains("AAAA"), "{m}");
    file["type"] = "authorized_user".into();
    let m = bad(
        "project = \"p\"\ncredentials_env = \"SA\"",
        Some(file.to_string()),
    );
    assert!(m.contains("service_account"), "{m}");
    // Vertex settings on another kind are refused.
    let m = Catalog::from_toml_with_env(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nproject = \"p\"\n",
        |_| None,
    )
    .unwrap_err();
    assert!(m.message().contains("vertex"), "{}", m.message());
    // The default base URL follows the location.
    let c = Catalog::from_toml_with_env(
        "[providers.v]\nkind = \"vertex\"\nproject = \"p\"\nlocation = \"europe-west4\"\n",
        |_| None,
    )
    .unwrap();
    assert_eq!(
        &*c.provider("v").unwrap().base_url,
        "https://europe-west4-aiplatform.googleapis.com"
    );
}

/// The Messages edge: a Claude-on-Vertex target gets the client's own body (model removed,
/// `anthropic_version` added) and the answer comes back as Vertex sent it.
#[tokio::test]
async fn messages_edge_sends_the_clients_body_to_claude_on_vertex() {
    let e = env().await;
    let body = json!({"model": "anthropic/claude-sonnet-4", "max_tokens": 100,
                      "messages": [{"role": "user", "content": "hello there"}]});
    for stream in [false, true] {
        let mut body = body.clone();
        if stream {
            body["stream"] = true.into();
        }
        let req = http::Request::post("/v1/messages")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = e.gateway.messages().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let out = resp.into_body().collect().await.unwrap().to_bytes();
        let out = String::from_utf8_lossy(&out).into_owned();
        let sent = e.v.last_request().unwrap();
        let raw = String::from_utf8_lossy(&sent.raw_body).into_owned();
        assert!(
            raw.starts_with("{\"anthropic_version\":\"vertex-2023-10-16\",\"max_tokens\":100"),
            "{raw}"
        );
        assert!(!raw.contains("\"model\""), "{raw}");
        if stream {
            assert_eq!(
                sent.path,
                model_path("anthropic", CLAUDE, "streamRawPredict")
            );
            assert!(out.contains("event: message_stop"), "{out}");
        } else {
            assert_eq!(sent.path, model_path("anthropic", CLAUDE, "rawPredict"));
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["type"], "message");
            assert_eq!(v["model"], "anthropic/claude-sonnet-4");
            assert_eq!(
                v["content"][0]["text"],
                "Hello from the demo anthropic provider! You said: hello there"
            );
        }
    }
}
