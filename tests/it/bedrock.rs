//! AWS Bedrock (`kind = "bedrock"`): Converse and ConverseStream through the strict Bedrock
//! demo, which verifies the SigV4 signature of every request — translation, streams in AWS's
//! binary event stream, tools, usage with cache tokens, reasoning signatures, the error table,
//! fallback, a wrong secret, profile credentials, and Titan / Cohere embeddings.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use switchboard::catalog::ProviderKind;
use switchboard::demo::{
    DemoConfig, DemoServer, Fault, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY,
};
use switchboard::fallback::FallbackLayer;
use switchboard::health::{Health, HealthConfig};
use switchboard::{Catalog, Gateway};
use tower::ServiceExt;

const HAIKU: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const SONNET: &str = "us.anthropic.claude-sonnet-4-20250514-v1:0";

struct Env {
    gateway: Gateway,
    b: DemoServer,
    _backup: DemoServer,
}

/// The Bedrock demo (`bedrock`, us-east-1) with credentials from `creds` (a TOML fragment),
/// and an OpenAI-compatible `backup` behind Claude Haiku.
async fn env_with(creds: &str, secret: &str) -> Env {
    let b = DemoServer::start(ProviderKind::Bedrock, DemoConfig::default())
        .await
        .unwrap();
    let backup = DemoServer::start(ProviderKind::Openai, DemoConfig::default())
        .await
        .unwrap();
    let toml = format!(
        r#"
[providers.bedrock]
kind = "bedrock"
base_url = "{}"
region = "us-east-1"
{creds}

[providers.backup]
kind = "openai"
base_url = "{}"
api_key = "demo-key"

[[models]]
id = "anthropic/claude-3-5-haiku"
capabilities = {{ tools = true, images = true }}
[[models.endpoints]]
provider = "bedrock"
upstream = "{HAIKU}"
pricing = {{ input = 0.8, output = 4.0, cached_input = 0.08, cache_write = 1.0 }}
[[models.endpoints]]
provider = "backup"
upstream = "gpt-4o-mini"

[[models]]
id = "anthropic/claude-sonnet-4"
max_output = 64000
capabilities = {{ tools = true, reasoning = true }}
[[models.endpoints]]
provider = "bedrock"
upstream = "{SONNET}"

[[models]]
id = "amazon/titan-embed-text-v2"
kind = "embedding"
dimensions = 1024
[[models.endpoints]]
provider = "bedrock"
upstream = "amazon.titan-embed-text-v2:0"
pricing = {{ input = 0.02, output = 0.0 }}

[[models]]
id = "cohere/embed-english-v3"
kind = "embedding"
dimensions = 1024
[[models.endpoints]]
provider = "bedrock"
upstream = "cohere.embed-english-v3"
pricing = {{ input = 0.1, output = 0.0 }}
"#,
        b.base_url(),
        backup.base_url()
    );
    let secret = secret.to_owned();
    let catalog = Catalog::from_toml_with_env(&toml, |k| match k {
        "BR_KEY" => Some(TEST_ACCESS_KEY_ID.to_owned()),
        "BR_SECRET" => Some(secret.clone()),
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
    Env {
        gateway,
        b,
        _backup: backup,
    }
}

const KEYS: &str = "access_key_id_env = \"BR_KEY\"\nsecret_access_key_env = \"BR_SECRET\"";

async fn env() -> Env {
    env_with(KEYS, TEST_SECRET_ACCESS_KEY).await
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
    fn events(&self) -> Vec<Value> {
        self.body
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.to_owned())))
            .collect()
    }
    fn streamed(&self, field: &str) -> String {
        self.events()
            .iter()
            .filter_map(|e| e["choices"][0]["delta"][field].as_str().map(str::to_owned))
            .collect()
    }
}

async fn post_to(g: &Gateway, path: &str, body: &Value) -> Answer {
    let req = http::Request::post(path)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = if path == "/v1/embeddings" {
        g.embeddings().oneshot(req).await.unwrap()
    } else {
        g.chat_completions().oneshot(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn post(g: &Gateway, body: &Value) -> Answer {
    post_to(g, "/v1/chat/completions", body).await
}

fn hello(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 200,
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "hello there"}]})
}

const GREETING: &str = "Hello from the demo bedrock provider! You said: hello there";

#[tokio::test]
async fn converse_answers_and_streams_with_a_verified_signature() {
    let e = env().await;
    let a = post(&e.gateway, &hello("anthropic/claude-3-5-haiku", false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["choices"][0]["message"]["content"], GREETING);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(a.headers["x-switchboard-provider"], "bedrock");
    let sent = e.b.last_request().unwrap();
    // The model id is one percent-encoded path segment.
    assert_eq!(
        sent.path,
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    );
    let auth = sent.header("authorization").unwrap();
    assert!(auth.starts_with(&format!(
        "AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY_ID}/"
    )));
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    assert!(!auth.contains(TEST_SECRET_ACCESS_KEY));
    assert_eq!(sent.body["system"], json!([{"text": "Be brief."}]));
    assert_eq!(sent.body["inferenceConfig"]["maxTokens"], 200);
    assert!(sent.body.get("model").is_none());

    let a = post(&e.gateway, &hello("anthropic/claude-3-5-haiku", true)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.streamed("content"), GREETING);
    let events = a.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let finish = events
        .iter()
        .find_map(|e| e["choices"][0]["finish_reason"].as_str())
        .unwrap();
    assert_eq!(finish, "stop");
    assert_eq!(
        e.b.last_request().unwrap().path,
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
    );
}

fn tool_request(stream: bool) -> Value {
    json!({"model": "anthropic/claude-3-5-haiku", "stream": stream,
           "messages": [{"role": "user", "content": "weather in Paris?"}],
           "tools": [{"type": "function", "function": {"name": "get_weather",
               "description": "Weather", "parameters": {"type": "object",
               "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
           "tool_choice": "required"})
}

#[tokio::test]
async fn tools_round_trip_streamed_and_not() {
    let e = env().await;
    let a = post(&e.gateway, &tool_request(false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"demo\"}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let sent = e.b.last_request().unwrap();
    assert_eq!(sent.body["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(
        sent.body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"],
        json!(["city"])
    );

    let s = post(&e.gateway, &tool_request(true)).await;
    assert_eq!(s.status, 200, "{}", s.body);
    let args: String = s
        .events()
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(args, "{\"city\":\"demo\"}");

    // The result goes back as a toolResult (JSON content as `json`) the fake pairs with the
    // call.
    let id = call["id"].as_str().unwrap();
    let mut follow = tool_request(false);
    follow["tool_choice"] = json!("auto");
    follow["messages"] = json!([
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": id, "content": "{\"temp\":21}"}
    ]);
    let a = post(&e.gateway, &follow).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json()["choices"][0]["message"]["content"],
        "Tool result received: {\"temp\":21}"
    );
    let sent = e.b.last_request().unwrap();
    assert_eq!(
        sent.body["messages"][2]["content"][0]["toolResult"],
        json!({"toolUseId": id, "content": [{"json": {"temp": 21}}]})
    );
}

#[tokio::test]
async fn cache_tokens_and_reasoning_signatures_come_through() {
    let e = env().await;
    let body = json!({"model": "anthropic/claude-3-5-haiku",
        "messages": [{"role": "system", "content": [
            {"type": "text", "text": "a long shared prefix of nine words right here",
             "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "hello there"}]});
    let first = post(&e.gateway, &body).await.json();
    assert_eq!(
        first["usage"]["prompt_tokens_details"]["cache_write_tokens"],
        9
    );
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(first["usage"]["prompt_tokens"], 11);
    let sent = e.b.last_request().unwrap();
    assert_eq!(
        sent.body["system"][1],
        json!({"cachePoint": {"type": "default"}})
    );
    let second = post(&e.gateway, &body).await.json();
    assert_eq!(second["usage"]["prompt_tokens_details"]["cached_tokens"], 9);
    assert_eq!(second["usage"]["prompt_tokens"], 11);

    // Thinking on Claude: reasoning with a signature that goes back on the next turn.
    let think = json!({"model": "anthropic/claude-sonnet-4", "max_tokens": 4000,
        "reasoning": {"max_tokens": 2000},
        "messages": [{"role": "user", "content": "hello there"}]});
    let a = post(&e.gateway, &think).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    let msg = &v["choices"][0]["message"];
    assert!(msg["reasoning"]
        .as_str()
        .unwrap()
        .starts_with("The user said"));
    let details = msg["reasoning_details"].clone();
    assert!(details[0]["signature"].as_str().is_some());
    let sent = e.b.last_request().unwrap();
    assert_eq!(
        sent.body["additionalModelRequestFields"]["thinking"],
        json!({"type": "enabled", "budget_tokens": 2000})
    );
    let mut next = think.clone();
    next["messages"] = json!([
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": msg["content"], "reasoning_details": details},
        {"role": "user", "content": "again"}
    ]);
    let a = post(&e.gateway, &next).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // A tampered signature is refused by the fake (Bedrock's 400).
    let mut bad = next.clone();
    bad["messages"][1]["reasoning_details"][0]["signature"] = json!("forged");
    let a = post(&e.gateway, &bad).await;
    assert_eq!(a.status, 400, "{}", a.body);

    // Streamed reasoning carries the signature too.
    let mut s = think.clone();
    s["stream"] = json!(true);
    let a = post(&e.gateway, &s).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.streamed("reasoning").starts_with("The user said"));
    assert!(a
        .events()
        .iter()
        .any(|e| e["choices"][0]["delta"]["reasoning_details"][0]["signature"].is_string()));
    assert_eq!(a.streamed("content"), GREETING);
}

#[tokio::test]
async fn bedrock_errors_follow_the_table() {
    let cases: Vec<(Fault, u16)> = vec![
        (Fault::Status(429, Some(3)), 429),
        (Fault::status(500), 502),
        (Fault::status(503), 503),
        (Fault::status(400), 400),
        (Fault::status(404), 404),
        (Fault::status(403), 502),
        (Fault::status(408), 504),
        (Fault::Garbage, 502),
        (Fault::Truncated, 502),
    ];
    let e = env().await;
    for (fault, status) in cases {
        e.b.faults().push(fault.clone());
        let a = post(&e.gateway, &hello("anthropic/claude-sonnet-4", false)).await;
        assert_eq!(a.status, status, "{fault:?}: {}", a.body);
    }
    // Streams cut short, or with a broken event, end in an error, never a success.
    for fault in [
        Fault::NoDone,
        Fault::Truncated,
        Fault::MalformedEvent,
        Fault::DropMidStream { after_chunks: 2 },
    ] {
        e.b.faults().push(fault.clone());
        let a = post(&e.gateway, &hello("anthropic/claude-sonnet-4", true)).await;
        assert!(
            a.status != 200 || a.body.contains("\"error\""),
            "{fault:?}: {}",
            a.body
        );
        assert!(
            !a.body.contains("[DONE]") || a.body.contains("\"error\""),
            "{fault:?}: {}",
            a.body
        );
    }
    // A validation error is the client's 400 with Bedrock's words.
    let a = post(
        &e.gateway,
        &json!({"model": "anthropic/claude-sonnet-4",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "bad name!"}}]}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("toolSpec.name"), "{}", a.body);
}

#[tokio::test]
async fn throttling_and_server_errors_fall_back_to_another_provider() {
    let e = env().await;
    e.b.faults().push(Fault::Status(429, Some(1)));
    let a = post(&e.gateway, &hello("anthropic/claude-3-5-haiku", false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers["x-switchboard-provider"], "backup");
    e.b.faults().push(Fault::status(503));
    let a = post(&e.gateway, &hello("anthropic/claude-3-5-haiku", true)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers["x-switchboard-provider"], "backup");
}

#[tokio::test]
async fn a_wrong_secret_is_rejected_by_signature_then_502_and_fallback_moves_on() {
    let e = env_with(KEYS, "not-the-secret").await;
    let a = post(&e.gateway, &hello("anthropic/claude-sonnet-4", false)).await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert!(!a.body.contains("not-the-secret"));
    assert!(!a.body.contains("signature we calculated"), "{}", a.body);
    let a = post(&e.gateway, &hello("anthropic/claude-3-5-haiku", false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers["x-switchboard-provider"], "backup");
}

#[tokio::test]
async fn credentials_come_from_a_profile_file_and_its_changes() {
    let dir = std::env::temp_dir().join(format!("sb-bedrock-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("credentials");
    std::fs::write(
        &path,
        format!(
            "[work]\naws_access_key_id = {TEST_ACCESS_KEY_ID}\naws_secret_access_key = wrong\n"
        ),
    )
    .unwrap();
    let creds = format!(
        "profile = \"work\"\ncredentials_file = \"{}\"",
        path.display()
    );
    let e = env_with(&creds, TEST_SECRET_ACCESS_KEY).await;
    let a = post(&e.gateway, &hello("anthropic/claude-sonnet-4", false)).await;
    assert_eq!(a.status, 502, "{}", a.body);
    std::fs::write(
        &path,
        format!(
            "[work]\naws_access_key_id = {TEST_ACCESS_KEY_ID}\naws_secret_access_key = {TEST_SECRET_ACCESS_KEY}\naws_session_token = tok123\n"
        ),
    )
    .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(10))
        .unwrap();
    let a = post(&e.gateway, &hello("anthropic/claude-sonnet-4", false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sent = e.b.last_request().unwrap();
    assert_eq!(sent.header("x-amz-security-token"), Some("tok123"));
    assert!(sent
        .header("authorization")
        .unwrap()
        .contains("x-amz-security-token"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn titan_and_cohere_embeddings_through_bedrock() {
    let e = env().await;
    let a = post_to(
        &e.gateway,
        "/v1/embeddings",
        &json!({"model": "amazon/titan-embed-text-v2", "input": "hello embedding world", "dimensions": 256}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 256);
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    let sent = e.b.last_request().unwrap();
    assert_eq!(sent.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert_eq!(
        sent.body,
        json!({"inputText": "hello embedding world", "dimensions": 256, "normalize": true})
    );

    let a = post_to(
        &e.gateway,
        "/v1/embeddings",
        &json!({"model": "cohere/embed-english-v3", "input": ["a b", "c"]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(
        e.b.last_request().unwrap().body["input_type"],
        "search_document"
    );
    // Titan embeds one text per request.
    let a = post_to(
        &e.gateway,
        "/v1/embeddings",
        &json!({"model": "amazon/titan-embed-text-v2", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
}

#[tokio::test]
async fn config_errors_name_the_field_and_never_the_secret() {
    let err = |extra: &str| {
        let toml = format!(
            "[providers.b]\nkind = \"bedrock\"\n{extra}\n[[models]]\nid = \"x/y\"\n[[models.endpoints]]\nprovider = \"b\"\nupstream = \"{HAIKU}\"\n"
        );
        Catalog::from_toml_with_env(&toml, |k| (k == "S").then(|| "topsecret".to_owned()))
            .err()
            .map(|e| e.message().to_owned())
    };
    let m = err("").unwrap();
    assert!(m.contains("region"), "{m}");
    let m =
        err("region = \"us-east-1\"\naccess_key_id_env = \"NOPE\"\nsecret_access_key_env = \"S\"")
            .unwrap();
    assert!(
        m.contains("access_key_id_env") && !m.contains("topsecret"),
        "{m}"
    );
    let m = err("region = \"Bad Region\"").unwrap();
    assert!(m.contains("region"), "{m}");
    assert!(err(
        "region = \"eu-west-1\"\naccess_key_id_env = \"S\"\nsecret_access_key_env = \"S\""
    )
    .is_none());
    let toml =
        "[providers.o]\nkind = \"openai\"\nbase_url = \"https://x\"\nregion = \"us-east-1\"\n";
    assert!(Catalog::from_toml(toml).is_err());
}
