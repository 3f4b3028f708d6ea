//! End-to-end tests of the demo servers through a plain hyper-util client.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::time::{timeout, Instant};

use super::*;
use crate::openai::sse::{SseDecoder, SseEvent};

/// Generous bound for anything that should finish.
const DONE: Duration = Duration::from_secs(5);
/// How long "nothing happens" is observed.
const QUIET: Duration = Duration::from_millis(250);

type TestClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn h2_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

async fn start(kind: ProviderKind) -> DemoServer {
    DemoServer::start(kind, DemoConfig::default())
        .await
        .expect("demo server starts")
}

/// A request with the right key headers for the server's kind.
fn request(server: &DemoServer, path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}{path}", server.addr()))
        .header("content-type", "application/json");
    b = match server.kind() {
        ProviderKind::Openai => b.header("authorization", format!("Bearer {DEMO_API_KEY}")),
        ProviderKind::Anthropic => b
            .header("x-api-key", DEMO_API_KEY)
            .header("anthropic-version", "2023-06-01"),
        ProviderKind::Gemini => b.header("x-goog-api-key", DEMO_API_KEY),
        ProviderKind::Azure => b.header("api-key", DEMO_API_KEY),
        ProviderKind::Vertex | ProviderKind::Bedrock => {
            unreachable!("the Vertex and Bedrock demos have tests of their own")
        }
    };
    b.body(Full::new(body.into())).expect("valid request")
}

fn default_path(server: &DemoServer, stream: bool) -> &'static str {
    match (server.kind(), stream) {
        (ProviderKind::Openai, _) => "/v1/chat/completions",
        (ProviderKind::Azure, _) => "/openai/v1/chat/completions",
        (ProviderKind::Anthropic, _) => "/v1/messages",
        (ProviderKind::Gemini, false) => "/v1beta/models/gemini-2.5-flash:generateContent",
        (ProviderKind::Gemini, true) => {
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        }
        (ProviderKind::Vertex | ProviderKind::Bedrock, _) => {
            unreachable!("the Vertex and Bedrock demos have tests of their own")
        }
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn events(&self) -> Vec<SseEvent> {
        events(&self.body)
    }
}

fn events(bytes: &[u8]) -> Vec<SseEvent> {
    let mut d = SseDecoder::new();
    d.push(bytes);
    let mut out = Vec::new();
    while let Ok(Some(e)) = d.next_event() {
        out.push(e);
    }
    out
}

async fn send_req(c: &TestClient, req: Request<Full<Bytes>>) -> Resp {
    timeout(DONE, async {
        let r = c.request(req).await.expect("response");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r
            .into_body()
            .collect()
            .await
            .expect("whole body")
            .to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    })
    .await
    .expect("answered in time")
}

async fn post(server: &DemoServer, body: Value) -> Resp {
    let stream = body.get("stream") == Some(&Value::Bool(true));
    let path = default_path(server, stream);
    send_req(&client(), request(server, path, body.to_string())).await
}

async fn post_to(server: &DemoServer, path: &str, body: Value) -> Resp {
    send_req(&client(), request(server, path, body.to_string())).await
}

/// How a body ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Clean,
    Error,
    Quiet,
}

/// Reads a body until it ends, fails, or stays quiet for [`QUIET`].
async fn drain(mut body: Incoming) -> (Vec<u8>, Ending) {
    let mut out = Vec::new();
    loop {
        match timeout(QUIET, body.frame()).await {
            Err(_) => return (out, Ending::Quiet),
            Ok(None) => return (out, Ending::Clean),
            Ok(Some(Err(_))) => return (out, Ending::Error),
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    out.extend_from_slice(&d);
                }
            }
        }
    }
}

async fn open(server: &DemoServer, body: Value) -> hyper::Response<Incoming> {
    let stream = body.get("stream") == Some(&Value::Bool(true));
    open_at(server, default_path(server, stream), body).await
}

async fn open_at(server: &DemoServer, path: &str, body: Value) -> hyper::Response<Incoming> {
    timeout(
        DONE,
        client().request(request(server, path, body.to_string())),
    )
    .await
    .expect("headers in time")
    .expect("response")
}

fn oa(text: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
}

fn an(text: &str) -> Value {
    json!({"model": "claude-sonnet-4-20250514", "max_tokens": 1024,
           "messages": [{"role": "user", "content": text}]})
}

fn ge(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

fn weather_tools_openai() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"]}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {
            "type": "object", "properties": {"utc": {"type": "boolean"}}, "required": ["utc"]}}}
    ])
}

// ---------------------------------------------------------------- OpenAI

#[tokio::test]
async fn openai_answers_and_records_the_request() {
    let s = start(ProviderKind::Openai).await;
    assert_eq!(s.base_url(), format!("http://{}/v1", s.addr()));
    let mut body = oa("What is up?");
    body["x_custom_field"] = json!({"kept": true});
    let r = post(&s, body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the demo openai provider! You said: What is up?"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["completion_tokens"], 11);
    assert_eq!(v["usage"]["total_tokens"], 14);
    assert_eq!(r.header("x-request-id"), Some("req_demo_1"));

    assert_eq!(s.request_count(), 1);
    let logged = s.last_request().expect("logged");
    assert_eq!(logged.method, Method::POST);
    assert_eq!(logged.path, "/v1/chat/completions");
    assert_eq!(logged.body["x_custom_field"]["kept"], true);
    assert_eq!(logged.header("authorization"), Some("Bearer demo-key"));
}

#[tokio::test]
async fn openai_streams_chunks_usage_and_done() {
    let s = start(ProviderKind::Openai).await;
    let mut body = oa("one two three four five");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(&s, body).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/event-stream"));
    let ev = r.events();
    assert_eq!(ev.last().map(|e| e.data.as_str()), Some("[DONE]"));
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&e.data).expect("chunk JSON"))
        .collect();
    assert!(chunks.len() > 4);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        "Hello from the demo openai provider! You said: one two three four five"
    );
    let usage = chunks.last().expect("usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 5);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["usage"].is_null()));
}

#[tokio::test]
async fn openai_calls_tools_and_reads_results() {
    let s = start(ProviderKind::Openai).await;
    let mut body = oa("weather?");
    body["tools"] = weather_tools_openai();
    let v = post(&s, body.clone()).await.json();
    let calls = &v["choices"][0]["message"]["tool_calls"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(calls.as_array().map(Vec::len), Some(2));
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(
        calls[0]["function"]["arguments"],
        r#"{"city":"demo","days":1}"#
    );
    assert_eq!(calls[1]["function"]["arguments"], r#"{"utc":true}"#);

    // Streamed: ids and names first, then argument fragments by index.
    body["stream"] = json!(true);
    body["parallel_tool_calls"] = json!(false);
    let ev = post(&s, body.clone()).await.events();
    let mut args = String::new();
    let mut names = Vec::new();
    for e in ev.iter().filter(|e| e.data != "[DONE]") {
        let c: Value = serde_json::from_str(&e.data).expect("chunk");
        for tc in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(tc["index"], 0);
            if let Some(n) = tc["function"]["name"].as_str() {
                names.push(n.to_owned());
                assert!(tc["id"].as_str().is_some_and(|i| i.starts_with("call_")));
            }
            args.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(names, ["get_weather"]);
    assert_eq!(args, r#"{"city":"demo","days":1}"#);

    // The tool result comes back.
    body["stream"] = json!(false);
    body["messages"] = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    ]);
    let v = post(&s, body.clone()).await.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Tool result received: sunny"
    );

    // A named choice calls that tool only.
    body["messages"] = json!([{"role": "user", "content": "time?"}]);
    body["tool_choice"] = json!({"type": "function", "function": {"name": "get_time"}});
    let v = post(&s, body).await.json();
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_time"
    );
}

#[tokio::test]
async fn openai_limits_stops_images_choices_and_reasoning() {
    let s = start(ProviderKind::Openai).await;
    let mut body = oa("hi");
    body["max_tokens"] = json!(4);
    let v = post(&s, body).await.json();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from the demo");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 4);

    let mut body = oa("hi");
    body["stop"] = json!(["demo"]);
    body["n"] = json!(2);
    let v = post(&s, body).await.json();
    assert_eq!(v["choices"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["choices"][1]["message"]["content"], "Hello from the ");
    assert_eq!(v["choices"][1]["finish_reason"], "stop");

    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}]}]});
    let v = post(&s, body).await.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the demo openai provider! You said: look I saw 2 images."
    );

    let mut body = oa("think");
    body["reasoning"] = json!({"effort": "high"});
    let v = post(&s, body).await.json();
    assert!(v["choices"][0]["message"]["reasoning"]
        .as_str()
        .is_some_and(|r| r.contains("think")));
    assert!(v["usage"]["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));
}

#[tokio::test]
async fn openai_rejects_invalid_requests_like_the_real_api() {
    let s = start(ProviderKind::Openai).await;
    let user = json!({"role": "user", "content": "hi"});
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (json!({"messages": [user]}), "you must provide a model parameter", None),
        (json!({"model": "m"}), "Missing required parameter: 'messages'.", Some("missing_required_parameter")),
        (json!({"model": "m", "messages": []}), "empty array", Some("empty_array")),
        (json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}), "Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.", Some("invalid_value")),
        (json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]}), "Invalid value: 'video'", Some("invalid_value")),
        (json!({"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}), "Supported values are: 'text'.", Some("invalid_value")),
        (json!({"model": "m", "messages": [user, {"role": "tool", "tool_call_id": "call_x", "content": "r"}]}), "messages with role 'tool' must be a response to a preceeding message with 'tool_calls'", None),
        (json!({"model": "m", "messages": [user,
            {"role": "assistant", "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_b", "content": "r"}]}), "'tool_call_id' of 'call_b' not found", None),
        (json!({"model": "m", "messages": [user,
            {"role": "assistant", "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            user]}), "did not have response messages: call_a", None),
        (json!({"model": "m", "messages": [user], "stream_options": {"include_usage": true}}), "The 'stream_options' parameter is only allowed when 'stream' is enabled.", None),
        (json!({"model": "m", "messages": [user], "temperature": 3}), "Expected a value <= 2", Some("decimal_above_max_value")),
        (json!({"model": "m", "messages": [user], "n": 0}), "Expected a value >= 1", Some("integer_below_min_value")),
        (json!({"model": "m", "messages": [user], "tools": [{"type": "function"}]}), "Missing required parameter: 'tools[0].function'.", Some("missing_required_parameter")),
        (json!({"model": "m", "messages": [user], "tools": [{"type": "function", "function": {"name": "bad name"}}]}), "does not match pattern", Some("invalid_value")),
        (json!({"model": "m", "messages": [user], "tool_choice": "auto"}), "'tool_choice' is only allowed when 'tools' are specified", None),
    ];
    for (body, message, code) in cases {
        let r = post(&s, body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        let v = r.json();
        let m = v["error"]["message"].as_str().unwrap_or("");
        assert!(m.contains(message), "{body}: {m}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"].as_str(), code, "{body}");
        assert!(v["error"].get("param").is_some());
    }
    let r = send_req(&client(), request(&s, "/v1/chat/completions", "{not json")).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("could not parse the JSON body")));
    let r = post_to(&s, "/v1/completions", oa("x")).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn openai_401_for_missing_or_wrong_key() {
    let s = start(ProviderKind::Openai).await;
    let mut req = request(&s, "/v1/chat/completions", oa("x").to_string());
    req.headers_mut().remove("authorization");
    let r = send_req(&client(), req).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("You didn't provide an API key")));
    let mut req = request(&s, "/v1/chat/completions", oa("x").to_string());
    req.headers_mut()
        .insert("authorization", "Bearer sk-wrong-key-123".parse().unwrap());
    let r = send_req(&client(), req).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    assert!(!String::from_utf8_lossy(&r.body).contains("sk-wrong-key-123"));
}

#[tokio::test]
async fn unknown_models_get_404_when_a_model_list_is_set() {
    let config = DemoConfig::default().with_models([
        "gpt-4o-mini",
        "claude-sonnet-4-20250514",
        "gemini-2.5-flash",
    ]);
    let demo = DemoProviders::start_with(config).await.expect("start");
    let r = post(
        &demo.openai,
        json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    let mut body = an("x");
    body["model"] = json!("claude-9");
    let r = post(&demo.anthropic, body).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    let r = post_to(
        &demo.gemini,
        "/v1beta/models/gemini-9:generateContent",
        ge("x"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["status"], "NOT_FOUND");
    assert_eq!(post(&demo.openai, oa("x")).await.status, 200);
}

// ---------------------------------------------------------------- Anthropic

#[tokio::test]
async fn anthropic_answers_and_streams() {
    let s = start(ProviderKind::Anthropic).await;
    assert_eq!(s.base_url(), format!("http://{}", s.addr()));
    let mut body = an("Hi there");
    body["system"] = json!("Be brief");
    let r = post(&s, body.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("request-id"), Some("req_demo1"));
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hello from the demo anthropic provider! You said: Hi there"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert_eq!(v["usage"]["input_tokens"], 4);
    assert_eq!(v["usage"]["output_tokens"], 10);

    body["stream"] = json!(true);
    let ev = post(&s, body).await.events();
    let kinds: Vec<&str> = ev.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(kinds[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(
        kinds[kinds.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let datas: Vec<Value> = ev
        .iter()
        .map(|e| serde_json::from_str(&e.data).expect("json"))
        .collect();
    assert!(ev
        .iter()
        .zip(&datas)
        .all(|(e, d)| e.event.as_deref() == d["type"].as_str()));
    let text: String = datas
        .iter()
        .filter(|d| d["type"] == "content_block_delta")
        .filter_map(|d| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(
        text,
        "Hello from the demo anthropic provider! You said: Hi there"
    );
    assert_eq!(datas[0]["message"]["usage"]["input_tokens"], 4);
    let delta = &datas[datas.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 10);
}

fn anthropic_tools() -> Value {
    json!([
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
    ])
}

#[tokio::test]
async fn anthropic_tool_use_streams_input_json_and_pairs_results() {
    let s = start(ProviderKind::Anthropic).await;
    let mut body = an("weather?");
    body["tools"] = anthropic_tools();
    body["tool_choice"] = json!({"type": "auto", "disable_parallel_tool_use": true});
    body["stream"] = json!(true);
    let ev = post(&s, body.clone()).await.events();
    let datas: Vec<Value> = ev
        .iter()
        .map(|e| serde_json::from_str(&e.data).expect("json"))
        .collect();
    let start = datas
        .iter()
        .find(|d| d["type"] == "content_block_start")
        .expect("block start");
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["name"], "get_weather");
    assert_eq!(start["content_block"]["input"], json!({}));
    let id = start["content_block"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let partial: String = datas
        .iter()
        .filter(|d| d["delta"]["type"] == "input_json_delta")
        .filter_map(|d| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).ok(),
        Some(json!({"city": "demo"}))
    );
    assert!(datas
        .iter()
        .any(|d| d["delta"]["stop_reason"] == "tool_use"));

    body["stream"] = json!(false);
    body["messages"] = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "get_weather", "input": {"city": "demo"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": [{"type": "text", "text": "sunny"}]}]}
    ]);
    let r = post(&s, body.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.json()["content"][0]["text"],
        "Tool result received: sunny"
    );

    body["messages"][2]["content"][0]["tool_use_id"] = json!("toolu_other");
    let r = post(&s, body.clone()).await;
    assert_eq!(r.status, 400);
    let m = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        m.contains("unexpected `tool_use_id` found in `tool_result` blocks: toolu_other"),
        "{m}"
    );
}

#[tokio::test]
async fn anthropic_thinking_is_signed_and_verified() {
    let s = start(ProviderKind::Anthropic).await;
    let mut body = an("weather?");
    body["max_tokens"] = json!(4096);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    body["tools"] = anthropic_tools();
    body["tool_choice"] = json!({"type": "auto", "disable_parallel_tool_use": true});
    let v = post(&s, body.clone()).await.json();
    let content = v["content"].as_array().expect("content").clone();
    assert_eq!(content[0]["type"], "thinking");
    assert!(content[0]["signature"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert_eq!(content[1]["type"], "tool_use");
    let id = content[1]["id"].clone();
    let result = json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "sunny"}]});

    // Sent back whole: accepted.
    body["messages"] = json!([{"role": "user", "content": "weather?"}, {"role": "assistant", "content": content}, result]);
    let r = post(&s, body.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Without the thinking block: rejected.
    body["messages"][1]["content"] = json!([content[1]]);
    let r = post(&s, body.clone()).await;
    assert_eq!(r.status, 400);
    let m = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(m.starts_with("messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`."), "{m}");

    // With a forged signature: rejected.
    let mut forged = content.clone();
    forged[0]["signature"] = json!("c2lnbmF0dXJl");
    body["messages"][1]["content"] = Value::Array(forged);
    let r = post(&s, body.clone()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["message"],
        "messages.1.content.0: Invalid `signature` in `thinking` block"
    );

    // Streamed thinking ends with a signature_delta.
    body["messages"] = json!([{"role": "user", "content": "hello"}]);
    body["stream"] = json!(true);
    let ev = post(&s, body).await.events();
    assert!(ev.iter().any(|e| e.data.contains("\"thinking_delta\"")));
    assert!(ev.iter().any(|e| e.data.contains("\"signature_delta\"")));
}

#[tokio::test]
async fn anthropic_reports_prompt_cache_reads_on_the_second_request() {
    let s = start(ProviderKind::Anthropic).await;
    let mut body = an("question");
    body["system"] = json!([{"type": "text", "text": "a long shared system prompt of eight words",
                             "cache_control": {"type": "ephemeral"}}]);
    let first = post(&s, body.clone()).await.json();
    assert_eq!(first["usage"]["cache_creation_input_tokens"], 8);
    assert_eq!(first["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(first["usage"]["input_tokens"], 1);
    let second = post(&s, body).await.json();
    assert_eq!(second["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(second["usage"]["cache_read_input_tokens"], 8);
    assert_eq!(second["usage"]["input_tokens"], 1);
}

#[tokio::test]
async fn anthropic_rejects_invalid_requests_like_the_real_api() {
    let s = start(ProviderKind::Anthropic).await;
    let user = json!({"role": "user", "content": "hi"});
    let base = |extra: Value| {
        let mut b = an("hi");
        if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"model": "m", "messages": [user]}),
            "max_tokens: Field required",
        ),
        (
            base(json!({"messages": [{"role": "system", "content": "x"}, user]})),
            "messages: Unexpected role \"system\"",
        ),
        (
            base(json!({"messages": [{"role": "assistant", "content": "x"}, user]})),
            "messages: first message must use the \"user\" role",
        ),
        (base(json!({"n": 2})), "n: Extra inputs are not permitted"),
        (
            base(json!({"frequency_penalty": 0.5})),
            "frequency_penalty: Extra inputs are not permitted",
        ),
        (
            base(json!({"response_format": {"type": "json_object"}})),
            "response_format: Extra inputs are not permitted",
        ),
        (
            base(json!({"stream_options": {"include_usage": true}})),
            "stream_options: Extra inputs are not permitted",
        ),
        (
            base(json!({"tools": anthropic_tools(), "tool_choice": "auto"})),
            "tool_choice: Input should be a valid dictionary",
        ),
        (
            base(
                json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}),
            ),
            "tools.0: Input tag 'function' found using 'type' does not match",
        ),
        (
            base(
                json!({"tools": [{"name": "f", "function": {}, "input_schema": {"type": "object"}}]}),
            ),
            "tools.0.custom.function: Extra inputs are not permitted",
        ),
        (
            base(
                json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}]}),
            ),
            "unexpected `tool_use_id` found in `tool_result` blocks: toolu_x",
        ),
        (
            base(json!({"thinking": {"type": "enabled", "budget_tokens": 512}})),
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        ),
        (
            base(json!({"thinking": {"type": "enabled", "budget_tokens": 2048}})),
            "`max_tokens` must be greater than `thinking.budget_tokens`",
        ),
        (
            base(json!({"messages": [{"role": "user", "content": ""}]})),
            "all messages must have non-empty content",
        ),
        (
            base(json!({"temperature": 1.5})),
            "temperature: Input should be less than or equal to 1",
        ),
        (
            base(json!({"system": [
            {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "c", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "d", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "e", "cache_control": {"type": "ephemeral"}}]})),
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
    ];
    for (body, message) in cases {
        let r = post(&s, body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        let v = r.json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let m = v["error"]["message"].as_str().unwrap_or("");
        assert!(m.contains(message), "{body}: {m}");
        assert!(v["request_id"].is_string());
    }

    let mut req = request(&s, "/v1/messages", an("x").to_string());
    req.headers_mut().remove("anthropic-version");
    let r = send_req(&client(), req).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["message"],
        "anthropic-version: header is required"
    );

    let mut req = request(&s, "/v1/messages", an("x").to_string());
    req.headers_mut().remove("x-api-key");
    let r = send_req(&client(), req).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let mut req = request(&s, "/v1/messages", an("x").to_string());
    req.headers_mut()
        .insert("x-api-key", "wrong".parse().unwrap());
    let r = send_req(&client(), req).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["message"], "invalid x-api-key");
}

#[tokio::test]
async fn anthropic_overloaded_fault_has_the_real_body() {
    let s = start(ProviderKind::Anthropic).await;
    s.faults().push(Fault::Status(529, None));
    s.faults().push(Fault::Status(429, Some(7)));
    let r = post(&s, an("x")).await;
    assert_eq!(r.status, 529);
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert_eq!(v["error"]["message"], "Overloaded");
    assert_eq!(r.header("x-should-retry"), Some("true"));
    let r = post(&s, an("x")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(post(&s, an("x")).await.status, 200);
}

// ---------------------------------------------------------------- Gemini

fn gemini_tools() -> Value {
    json!([{"functionDeclarations": [
        {"name": "get_weather", "parameters": {"type": "OBJECT",
            "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}
    ]}])
}

#[tokio::test]
async fn gemini_answers_and_streams() {
    let s = start(ProviderKind::Gemini).await;
    let mut body = ge("Hello Gemini");
    body["system_instruction"] = json!({"parts": [{"text": "be nice"}]});
    body["generationConfig"] = json!({"temperature": 0.5, "max_output_tokens": 100});
    let r = post(&s, body.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = r.json();
    assert_eq!(
        v["candidates"][0]["content"],
        json!({"parts": [{"text": "Hello from the demo gemini provider! You said: Hello Gemini"}], "role": "model"})
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 4);
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 10);
    assert_eq!(v["usageMetadata"]["totalTokenCount"], 14);
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");

    let r = post_to(
        &s,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 200);
    let frames: Vec<Value> = r
        .events()
        .iter()
        .map(|e| serde_json::from_str(&e.data).expect("frame JSON"))
        .collect();
    assert!(frames.len() > 3);
    let text: String = frames
        .iter()
        .filter_map(|f| f["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(
        text,
        "Hello from the demo gemini provider! You said: Hello Gemini"
    );
    let last = frames.last().expect("last");
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 10);
    assert!(frames[..frames.len() - 1]
        .iter()
        .all(|f| f["candidates"][0].get("finishReason").is_none()));

    // Without alt=sse the stream is a JSON array.
    let r = post_to(
        &s,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        body,
    )
    .await;
    let arr = r.json();
    assert_eq!(arr.as_array().map(Vec::len), Some(frames.len()));
}

#[tokio::test]
async fn gemini_function_calls_carry_verified_thought_signatures() {
    let s = start(ProviderKind::Gemini).await;
    let mut body = ge("weather?");
    body["tools"] = gemini_tools();
    body["generationConfig"] =
        json!({"thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}});
    let v = post(&s, body.clone()).await.json();
    let parts = v["candidates"][0]["content"]["parts"]
        .as_array()
        .expect("parts")
        .clone();
    assert_eq!(parts[0]["thought"], true);
    let call = parts[1].clone();
    assert_eq!(
        call["functionCall"],
        json!({"name": "get_weather", "args": {"city": "demo"}})
    );
    assert!(call["thoughtSignature"].is_string());
    assert!(v["usageMetadata"]["thoughtsTokenCount"]
        .as_u64()
        .is_some_and(|n| n > 0));

    let response = json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}]});
    body["contents"] =
        json!([ge("weather?")["contents"][0], {"role": "model", "parts": [call]}, response]);
    let r = post(&s, body.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.json()["candidates"][0]["content"]["parts"][1]["text"],
        r#"Tool result received: {"result":"sunny"}"#
    );

    let mut unsigned = call.clone();
    if let Some(o) = unsigned.as_object_mut() {
        o.remove("thoughtSignature");
    }
    body["contents"][1]["parts"] = json!([unsigned]);
    let r = post(&s, body.clone()).await;
    assert_eq!(r.status, 400);
    let m = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        m.starts_with("Function call is missing a thought_signature in functionCall parts."),
        "{m}"
    );

    let mut forged = call.clone();
    forged["thoughtSignature"] = json!("Zm9yZ2Vk");
    body["contents"][1]["parts"] = json!([forged]);
    let r = post(&s, body.clone()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["status"], "INVALID_ARGUMENT");

    // Without thinking the signature is not required.
    body["generationConfig"] = json!({});
    body["contents"][1]["parts"] = json!([unsigned]);
    assert_eq!(post(&s, body).await.status, 200);
}

#[tokio::test]
async fn gemini_rejects_invalid_requests_like_the_real_api() {
    let s = start(ProviderKind::Gemini).await;
    let call_turn =
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"contents": []}), "* GenerateContentRequest.contents: contents is not specified"),
        (json!({}), "contents is not specified"),
        (json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}), "Please use a valid role: user, model."),
        (json!({"contents": [{"role": "user", "parts": []}]}), "contents.parts must not be empty."),
        (json!({"contents": [{"role": "user", "parts": [{}]}]}), "required oneof field 'data' must have one initialized field"),
        (json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "temperature": 1}), "Unknown name \"temperature\": Cannot find field."),
        (json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [
            {"name": "f", "parameters": {"type": "object", "properties": {}, "additionalProperties": false}}]}]}),
            "Unknown name \"additionalProperties\" at 'tools[0].function_declarations[0].parameters': Cannot find field."),
        (json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [
            {"name": "f", "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}}]}]}),
            "Unknown name \"$schema\""),
        (json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [
            {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": ["string", "null"]}}}}]}]}),
            "Proto field is not repeating, cannot start list."),
        (json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"name": "1bad"}]}]}),
            "Invalid function name."),
        (json!({"contents": [{"role": "user", "parts": [{"text": "x"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {}}}]}]}),
            "Please ensure that function response turn comes immediately after a function call turn."),
        (json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}, call_turn,
            {"role": "user", "parts": [{"functionResponse": {"name": "other", "response": {}}}]}]}),
            "function response names match the function call names"),
        (json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}, call_turn,
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {}}},
                {"functionResponse": {"name": "get_weather", "response": {}}}]}]}),
            "number of function response parts is equal to the number of function call parts"),
        (json!({"contents": [call_turn]}), "function call turn comes immediately after a user turn"),
    ];
    for (body, message) in cases {
        let r = post(&s, body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        let v = r.json();
        assert_eq!(v["error"]["code"], 400);
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        let m = v["error"]["message"].as_str().unwrap_or("");
        assert!(m.contains(message), "{body}: {m}");
    }

    assert_eq!(
        post_to(&s, "/v1beta/models/gemini-2.5-flash:embedContent", ge("x"))
            .await
            .status,
        404
    );
    assert_eq!(post_to(&s, "/v1beta/chat", ge("x")).await.status, 404);

    // snake_case field names are as good as lowerCamelCase ones.
    let body = json!({"contents": [{"role": "user", "parts": [{"inline_data": {"mime_type": "image/png", "data": "AAAA"}}, {"text": "see"}]}],
                      "generation_config": {"stop_sequences": ["demo"]}});
    let r = post(&s, body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.json()["candidates"][0]["content"]["parts"][0]["text"],
        "Hello from the "
    );

    let mut req = request(&s, default_path(&s, false), ge("x").to_string());
    req.headers_mut().remove("x-goog-api-key");
    let r = send_req(&client(), req).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["status"], "PERMISSION_DENIED");
    let mut req = request(&s, default_path(&s, false), ge("x").to_string());
    req.headers_mut()
        .insert("x-goog-api-key", "nope".parse().unwrap());
    let r = send_req(&client(), req).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["details"][0]["reason"], "API_KEY_INVALID");
    let mut req = request(
        &s,
        &format!("{}?key={DEMO_API_KEY}", default_path(&s, false)),
        ge("x").to_string(),
    );
    req.headers_mut().remove("x-goog-api-key");
    assert_eq!(send_req(&client(), req).await.status, 200);
}

#[tokio::test]
async fn gemini_rate_limit_reports_retry_info_in_the_body() {
    let s = start(ProviderKind::Gemini).await;
    s.faults().push(Fault::Status(429, Some(3)));
    let r = post(&s, ge("x")).await;
    assert_eq!(r.status, 429);
    let v = r.json();
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(v["error"]["details"][0]["retryDelay"], "3s");
}

// ---------------------------------------------------------------- Faults

#[tokio::test]
async fn status_fault_uses_the_provider_body_and_retry_after() {
    let s = start(ProviderKind::Openai).await;
    s.faults().extend([
        Fault::Status(429, Some(2)),
        Fault::status(500),
        Fault::status(503),
    ]);
    let r = post(&s, oa("x")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    let r = post(&s, oa("x")).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["type"], "server_error");
    assert_eq!(post(&s, oa("x")).await.status, 503);
    assert_eq!(post(&s, oa("x")).await.status, 200);
    assert_eq!(s.faults().queued(), 0);

    s.faults().set(Fault::status(502));
    assert_eq!(post(&s, oa("x")).await.status, 502);
    assert_eq!(post(&s, oa("x")).await.status, 502);
    s.faults().clear();
    assert_eq!(post(&s, oa("x")).await.status, 200);
}

#[tokio::test]
async fn garbage_truncated_and_huge_bodies() {
    let s = start(ProviderKind::Openai).await;
    s.faults()
        .extend([Fault::Garbage, Fault::Truncated, Fault::Huge(300_000)]);
    let r = post(&s, oa("x")).await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
    let r = post(&s, oa("x")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with(b"{"));
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
    let r = post(&s, oa("x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 300_000);
    let content = &r.json()["choices"][0]["message"]["content"];
    assert!(content
        .as_str()
        .is_some_and(|c| c.len() > 200_000 && c.bytes().all(|b| b == b'x')));

    // A huge stream: valid events, one of them carrying the padding.
    s.faults().push(Fault::Huge(200_000));
    let mut body = oa("x");
    body["stream"] = json!(true);
    let r = post(&s, body).await;
    assert_eq!(r.body.len(), 200_000);
    let ev = r.events();
    assert_eq!(ev.last().map(|e| e.data.as_str()), Some("[DONE]"));
    assert!(ev[..ev.len() - 1]
        .iter()
        .all(|e| serde_json::from_str::<Value>(&e.data).is_ok()));

    // A truncated stream ends cleanly without its end marker.
    s.faults().push(Fault::Truncated);
    let mut body = oa("x");
    body["stream"] = json!(true);
    let r = post(&s, body).await;
    assert!(!r.events().iter().any(|e| e.data == "[DONE]"));
}

#[tokio::test]
async fn hang_and_drop_before_headers() {
    let s = start(ProviderKind::Anthropic).await;
    s.faults().extend([Fault::Hang, Fault::DropBeforeHeaders]);
    let c = client();
    let hung = timeout(
        QUIET,
        c.request(request(&s, "/v1/messages", an("x").to_string())),
    )
    .await;
    assert!(hung.is_err(), "a hung request must not answer");
    let dropped = timeout(
        DONE,
        c.request(request(&s, "/v1/messages", an("x").to_string())),
    )
    .await
    .expect("the drop is immediate");
    assert!(
        dropped.is_err(),
        "the connection is closed without a response"
    );
    assert_eq!(post(&s, an("x")).await.status, 200);
    assert_eq!(s.request_count(), 3);
}

#[tokio::test]
async fn drop_and_stall_mid_stream() {
    for kind in [
        ProviderKind::Openai,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
    ] {
        let s = start(kind).await;
        let body = match kind {
            ProviderKind::Openai | ProviderKind::Azure => json!({"model": "m", "stream": true,
                "messages": [{"role": "user", "content": "a b c d e f g h"}]}),
            ProviderKind::Anthropic => json!({"model": "m", "stream": true, "max_tokens": 100,
                "messages": [{"role": "user", "content": "a b c d e f g h"}]}),
            ProviderKind::Gemini => ge("a b c d e f g h"),
            ProviderKind::Vertex | ProviderKind::Bedrock => unreachable!(),
        };
        let path = default_path(&s, true);
        s.faults().push(Fault::DropMidStream { after_chunks: 2 });
        let (bytes, end) = drain(open_at(&s, path, body.clone()).await.into_body()).await;
        assert_eq!(end, Ending::Error, "{kind:?}");
        assert_eq!(events(&bytes).len(), 2, "{kind:?}");

        s.faults().push(Fault::StallMidStream { after_chunks: 3 });
        let (bytes, end) = drain(open_at(&s, path, body.clone()).await.into_body()).await;
        assert_eq!(end, Ending::Quiet, "{kind:?}");
        assert_eq!(events(&bytes).len(), 3, "{kind:?}");

        s.faults().push(Fault::NoDone);
        let (bytes, end) = drain(open_at(&s, path, body.clone()).await.into_body()).await;
        assert_eq!(end, Ending::Clean);
        let ev = events(&bytes);
        let (full, _) = drain(open_at(&s, path, body.clone()).await.into_body()).await;
        assert_eq!(ev.len() + 1, events(&full).len(), "{kind:?}");
        match kind {
            ProviderKind::Openai | ProviderKind::Azure => {
                assert!(ev.iter().all(|e| e.data != "[DONE]"))
            }
            ProviderKind::Anthropic => {
                assert!(ev
                    .iter()
                    .all(|e| e.event.as_deref() != Some("message_stop")))
            }
            ProviderKind::Gemini => assert!(ev.iter().all(|e| !e.data.contains("finishReason"))),
            ProviderKind::Vertex | ProviderKind::Bedrock => unreachable!(),
        }
    }
}

#[tokio::test]
async fn malformed_event_breaks_one_event_only() {
    let s = start(ProviderKind::Openai).await;
    s.faults().push(Fault::MalformedEvent);
    let mut body = oa("x");
    body["stream"] = json!(true);
    let ev = post(&s, body).await.events();
    assert!(serde_json::from_str::<Value>(&ev[1].data).is_err());
    assert_eq!(
        ev.iter()
            .filter(|e| e.data != "[DONE]" && serde_json::from_str::<Value>(&e.data).is_err())
            .count(),
        1
    );
    assert_eq!(ev.last().map(|e| e.data.as_str()), Some("[DONE]"));
}

#[tokio::test]
async fn latency_slow_first_byte_and_chunk_delay() {
    let config = DemoConfig::default()
        .with_latency(Duration::from_millis(60))
        .with_chunk_delay(Duration::from_millis(10));
    let s = DemoServer::start(ProviderKind::Openai, config)
        .await
        .expect("start");
    let t = Instant::now();
    post(&s, oa("x")).await;
    assert!(t.elapsed() >= Duration::from_millis(60));

    s.faults()
        .push(Fault::SlowFirstByte(Duration::from_millis(120)));
    let t = Instant::now();
    let resp = open(&s, oa("x")).await;
    let headers_at = t.elapsed();
    let (bytes, end) = drain(resp.into_body()).await;
    assert_eq!(end, Ending::Clean);
    assert!(serde_json::from_slice::<Value>(&bytes).is_ok());
    // The pause starts as the headers leave, a little before they arrive.
    assert!(t.elapsed() >= headers_at + Duration::from_millis(100));

    let mut body = oa("x");
    body["stream"] = json!(true);
    let t = Instant::now();
    let n = post(&s, body).await.events().len() as u32;
    assert!(t.elapsed() >= Duration::from_millis(60) + Duration::from_millis(10) * (n - 1));
}

// ---------------------------------------------------------------- Server

#[tokio::test]
async fn waits_for_requests_and_serves_http2() {
    let s = start(ProviderKind::Gemini).await;
    let c = h2_client();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let req = request(
            &s,
            default_path(&s, false),
            ge(&format!("hi {i}")).to_string(),
        );
        let c = c.clone();
        tasks.push(tokio::spawn(async move { send_req(&c, req).await }));
    }
    timeout(DONE, s.wait_for_requests(3))
        .await
        .expect("three requests");
    for t in tasks {
        assert_eq!(t.await.expect("task").status, 200);
    }
    let log = s.requests();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|r| r.version == Version::HTTP_2));
    s.clear_requests();
    assert!(s.requests().is_empty());
    assert_eq!(s.request_count(), 3);
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let s = start(ProviderKind::Openai).await;
    let addr = s.addr();
    assert_eq!(post(&s, oa("x")).await.status, 200);
    s.shutdown().await;
    let r = timeout(DONE, tokio::net::TcpStream::connect(addr))
        .await
        .expect("quick");
    assert!(r.is_err(), "nothing listens after shutdown");
}

#[tokio::test]
async fn demo_providers_catalog_and_toml_agree() {
    let demo = DemoProviders::start().await.expect("start");
    let c = demo.catalog();
    assert_eq!(c.alias("fast"), Some("openai/gpt-4o-mini"));
    assert_eq!(c.alias("balanced"), Some("anthropic/claude-sonnet-4"));
    assert_eq!(c.alias("deep"), Some("google/gemini-2.5-pro"));
    let google = c.provider("google").expect("google");
    assert_eq!(google.kind, ProviderKind::Gemini);
    assert_eq!(&*google.base_url, demo.gemini.base_url());
    assert_eq!(
        google.api_key.as_ref().map(|k| k.expose()),
        Some(DEMO_API_KEY)
    );
    let sonnet = c.model("anthropic/claude-sonnet-4").expect("sonnet");
    assert_eq!(&*sonnet.endpoints[0].upstream, "claude-sonnet-4-20250514");
    assert_eq!(sonnet.context_length, Some(200_000));

    let from_toml =
        Catalog::from_toml_with_env(&demo.catalog_toml(), |_| None).expect("valid TOML");
    assert_eq!(from_toml.models().len(), c.models().len());
    for m in c.models() {
        let t = from_toml.model(&m.id).expect("same model");
        assert_eq!(t.context_length, m.context_length);
        assert_eq!(t.max_output, m.max_output);
        assert_eq!(t.capabilities, m.capabilities);
        assert_eq!(t.endpoints[0].pricing, m.endpoints[0].pricing);
        assert_eq!(t.endpoints[0].upstream, m.endpoints[0].upstream);
        assert_eq!(
            t.endpoints[0].provider.base_url,
            m.endpoints[0].provider.base_url
        );
    }

    // Every server answers the model names the catalog routes to it.
    for m in c.models() {
        if m.kind == crate::catalog::ModelKind::Embedding {
            continue;
        }
        let ep = &m.endpoints[0];
        let server = demo.server(ep.provider.kind);
        let r = match ep.provider.kind {
            ProviderKind::Azure => {
                post_to(
                    server,
                    &format!(
                        "/openai/deployments/{}/chat/completions?api-version=2024-10-21",
                        ep.upstream
                    ),
                    json!({"messages": [{"role": "user", "content": "x"}]}),
                )
                .await
            }
            ProviderKind::Openai => {
                post(
                    server,
                    json!({"model": &*ep.upstream,
                "messages": [{"role": "user", "content": "x"}]}),
                )
                .await
            }
            ProviderKind::Anthropic => {
                post(
                    server,
                    json!({"model": &*ep.upstream, "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}]}),
                )
                .await
            }
            ProviderKind::Gemini => {
                post_to(
                    server,
                    &format!("/v1beta/models/{}:generateContent", ep.upstream),
                    ge("x"),
                )
                .await
            }
            ProviderKind::Vertex | ProviderKind::Bedrock => {
                unreachable!("the demo catalog has no Vertex or Bedrock provider")
            }
        };
        assert_eq!(r.status, 200, "{}", m.id);
    }
}
