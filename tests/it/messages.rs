//! The Anthropic Messages ingress (`/v1/messages`, `/v1/messages/count_tokens`) against the
//! demo providers of every kind.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use serde_json::{json, Value};
use switchboard::catalog::{Provider, ProviderKind};
use switchboard::client::UpstreamBody;
use switchboard::demo::DemoProviders;
use switchboard::edge::Messages;
use switchboard::ext::Candidate;
use switchboard::translate::ProviderTranslateLayer;
use switchboard::{Error, Gateway};
use tower::{service_fn, ServiceExt};

const MODELS: [&str; 3] = [
    "anthropic/claude-sonnet-4",
    "openai/gpt-4o-mini",
    "google/gemini-2.5-flash",
];

async fn gateway() -> (DemoProviders, Gateway) {
    let demo = DemoProviders::start().await.unwrap();
    let g = Gateway::builder(demo.catalog()).build();
    (demo, g)
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&self.body)))
    }
}

async fn post_to(
    svc: impl tower::Service<
        http::Request<Full<Bytes>>,
        Response = http::Response<switchboard::edge::EdgeBody>,
        Error = std::convert::Infallible,
    >,
    path: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut b = http::Request::post(path).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = svc
        .oneshot(b.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

async fn post(g: &Gateway, body: &Value) -> Answer {
    post_to(g.messages(), "/v1/messages", body.to_string(), &[]).await
}

/// Parses an SSE body into (event name, data) pairs.
fn events(body: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(body).unwrap();
    let mut out = Vec::new();
    for block in text
        .split("\n\n")
        .filter(|b| !b.trim().is_empty() && !b.starts_with(':'))
    {
        let mut name = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
        let data: Value = serde_json::from_str(&data).unwrap_or_else(|_| panic!("{block}"));
        assert_eq!(
            data["type"],
            name.as_str(),
            "event name = data.type: {block}"
        );
        out.push((name, data));
    }
    out
}

/// Checks Anthropic's event grammar and rebuilds the message the way the SDK does.
fn well_formed(evs: &[(String, Value)]) -> Value {
    assert!(!evs.is_empty());
    assert_eq!(evs[0].0, "message_start", "{evs:?}");
    let mut msg = evs[0].1["message"].clone();
    let mut open: Option<u64> = None;
    let mut next = 0u64;
    let mut ended = false;
    let mut stopped = false;
    for (name, d) in &evs[1..] {
        assert!(!stopped, "nothing after message_stop: {name}");
        match name.as_str() {
            "ping" => {}
            "content_block_start" => {
                assert!(!ended && open.is_none(), "blocks do not interleave");
                assert_eq!(d["index"], next, "blocks are numbered in order");
                open = Some(next);
                next += 1;
                msg["content"]
                    .as_array_mut()
                    .unwrap()
                    .push(d["content_block"].clone());
            }
            "content_block_delta" => {
                assert_eq!(Some(d["index"].as_u64().unwrap()), open, "{d}");
                let i = usize::try_from(open.unwrap()).unwrap();
                let block = &mut msg["content"][i];
                let delta = &d["delta"];
                let append = |b: &mut Value, key: &str, piece: &Value| {
                    let s = format!(
                        "{}{}",
                        b[key].as_str().unwrap_or(""),
                        piece.as_str().unwrap()
                    );
                    b[key] = Value::from(s);
                };
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        assert_eq!(block["type"], "text");
                        append(block, "text", &delta["text"]);
                    }
                    "thinking_delta" => {
                        assert_eq!(block["type"], "thinking");
                        append(block, "thinking", &delta["thinking"]);
                    }
                    "signature_delta" => {
                        assert_eq!(block["type"], "thinking");
                        block["signature"] = delta["signature"].clone();
                    }
                    "citations_delta" => {
                        assert_eq!(block["type"], "text");
                        if block["citations"].is_null() {
                            block["citations"] = json!([]);
                        }
                        let c = delta["citation"].clone();
                        block["citations"].as_array_mut().unwrap().push(c);
                    }
                    "input_json_delta" => {
                        assert!(
                            block["type"] == "tool_use" || block["type"] == "server_tool_use",
                            "{block}"
                        );
                        append(block, "partial", &delta["partial_json"]);
                    }
                    other => panic!("unknown delta {other}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(Some(d["index"].as_u64().unwrap()), open);
                let i = usize::try_from(open.unwrap()).unwrap();
                let block = &mut msg["content"][i];
                if block["type"] == "tool_use" || block["type"] == "server_tool_use" {
                    let partial = block["partial"].as_str().unwrap_or("").to_owned();
                    block["input"] = if partial.is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&partial).expect("tool input is JSON")
                    };
                    block.as_object_mut().unwrap().remove("partial");
                }
                open = None;
            }
            "message_delta" => {
                assert!(open.is_none() && !ended);
                ended = true;
                msg["stop_reason"] = d["delta"]["stop_reason"].clone();
                msg["stop_sequence"] = d["delta"]["stop_sequence"].clone();
                // As the SDK accumulates: the delta's counts replace the start's.
                for (k, v) in d["usage"].as_object().unwrap() {
                    msg["usage"][k] = v.clone();
                }
            }
            "message_stop" => {
                assert!(ended, "message_delta before message_stop");
                stopped = true;
            }
            other => panic!("unexpected event {other}: {d}"),
        }
    }
    assert!(stopped, "ends with message_stop");
    msg
}

fn weather_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "cache_control": {"type": "ephemeral"},
    })
}

fn system_blocks() -> Value {
    json!([
        {"type": "text", "text": "You are a coding agent."},
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
    ])
}

#[tokio::test]
async fn plain_answers_from_every_provider_kind_in_anthropic_shape() {
    let (_demo, g) = gateway().await;
    for model in MODELS {
        let a = post(
            &g,
            &json!({"model": model, "max_tokens": 256, "system": "Be brief.",
                "messages": [{"role": "user", "content": "Hello there"}]}),
        )
        .await;
        assert_eq!(
            a.status,
            200,
            "{model}: {}",
            String::from_utf8_lossy(&a.body)
        );
        let m = a.json();
        assert_eq!(m["type"], "message");
        assert_eq!(m["role"], "assistant");
        assert!(m["id"].as_str().unwrap().starts_with("msg_"), "{m}");
        assert_eq!(m["stop_reason"], "end_turn", "{model}");
        assert_eq!(m["content"][0]["type"], "text");
        assert!(!m["content"][0]["text"].as_str().unwrap().is_empty());
        let u = &m["usage"];
        assert!(u["input_tokens"].as_u64().unwrap() > 0, "{m}");
        assert!(u["output_tokens"].as_u64().unwrap() > 0);
        assert!(u["cache_read_input_tokens"].is_u64());
        assert!(u["cost"].as_f64().unwrap() > 0.0, "{model}: {u}");
        assert_eq!(a.headers["x-switchboard-model"], model);
    }
}

/// A Claude-Code-like session: system blocks with cache_control, a streamed tool use with
/// thinking, the tool result, then a streamed answer, through each provider kind.
#[tokio::test]
async fn a_claude_code_conversation_streams_through_every_provider_kind() {
    let (_demo, g) = gateway().await;
    for model in MODELS {
        let thinking = model.starts_with("anthropic");
        let mut first = json!({
            "model": model, "max_tokens": 4096, "stream": true,
            "system": system_blocks(),
            "tools": [weather_tool()],
            "metadata": {"user_id": "user_123"},
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is the weather in Paris?", "cache_control": {"type": "ephemeral"}}
            ]}],
        });
        if thinking {
            first["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
        }
        let a = post(&g, &first).await;
        assert_eq!(
            a.status,
            200,
            "{model}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.headers["content-type"], "text/event-stream");
        let msg = well_formed(&events(&a.body));
        assert_eq!(msg["stop_reason"], "tool_use", "{model}: {msg}");
        let content = msg["content"].as_array().unwrap();
        let tool = content
            .iter()
            .find(|b| b["type"] == "tool_use")
            .expect("a tool use");
        assert_eq!(tool["name"], "get_weather");
        assert!(tool["input"]["city"].is_string(), "{tool}");
        if thinking {
            let t = &content[0];
            assert_eq!(t["type"], "thinking", "{msg}");
            assert!(!t["signature"].as_str().unwrap().is_empty(), "signed: {t}");
        }
        assert!(msg["usage"]["output_tokens"].as_u64().unwrap() > 0);

        // The follow-up: the assistant turn as received (thinking signature included) and
        // the tool result; the demo Anthropic verifies the signature.
        let mut second = first.clone();
        second["messages"] = json!([
            first["messages"][0],
            {"role": "assistant", "content": content},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": tool["id"], "content": "18°C and sunny"}
            ]},
        ]);
        let a = post(&g, &second).await;
        assert_eq!(
            a.status,
            200,
            "{model}: {}",
            String::from_utf8_lossy(&a.body)
        );
        let msg = well_formed(&events(&a.body));
        assert_eq!(msg["stop_reason"], "end_turn", "{model}: {msg}");
        let text = msg["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "text")
            .expect("a text answer");
        assert!(!text["text"].as_str().unwrap().is_empty());
        if thinking {
            assert_eq!(msg["content"][0]["type"], "thinking");
        }
    }
}

#[tokio::test]
async fn same_format_requests_reach_anthropic_as_sent_except_the_model() {
    let (demo, g) = gateway().await;
    let body = r#"{ "model" : "anthropic/claude-sonnet-4", "max_tokens": 300,
        "system": [{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],
        "messages": [{"role":"user","content":[{"type":"text","text":"Hi \u00e9"}]}],
        "temperature": 0.5, "service_tier": "auto" }"#;
    let anthropic = demo.server(ProviderKind::Anthropic);
    anthropic.clear_requests();
    let a = post_to(
        g.messages(),
        "/v1/messages",
        body,
        &[
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "prompt-caching-2024-07-31"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let sent = anthropic
        .last_request()
        .expect("the upstream got a request");
    let expected = body.replace(
        r#""anthropic/claude-sonnet-4""#,
        r#""claude-sonnet-4-20250514""#,
    );
    assert_eq!(sent.raw_body, expected.as_bytes(), "byte for byte");
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        sent.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    assert_eq!(sent.header("x-api-key"), Some(anthropic.config().api_key()));
}

#[tokio::test]
async fn errors_come_in_anthropic_shape() {
    let (_demo, g) = gateway().await;
    let cases = [
        (
            json!({"model": "nope/none", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}),
            404,
            "not_found_error",
        ),
        (
            json!({"model": "fast", "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
        ),
        (
            json!({"model": "fast", "max_tokens": 10, "messages": [], "bogus": 1}),
            400,
            "invalid_request_error",
        ),
        (
            json!({"model": "fast", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            400,
            "invalid_request_error",
        ),
        (
            json!({"model": "x".repeat(10_000), "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
        ),
    ];
    for (body, status, kind) in cases {
        let a = post(&g, &body).await;
        assert_eq!(a.status, status, "{}", String::from_utf8_lossy(&a.body));
        let e = a.json();
        assert_eq!(e["type"], "error");
        assert_eq!(e["error"]["type"], kind);
        assert!(e["error"]["message"].as_str().unwrap().len() < 1000, "{e}");
        assert!(a.headers.contains_key("request-id"));
    }
    let a = post_to(g.messages(), "/v1/messages", "{not json", &[]).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn keys_are_checked_from_x_api_key_or_bearer() {
    let demo = DemoProviders::start().await.unwrap();
    let keys = switchboard::keys::ClientKeysLayer::new()
        .key("sk-good", switchboard::keys::KeyPolicy::new("team"));
    let g = Gateway::builder(demo.catalog()).client_keys(keys).build();
    let body =
        json!({"model": "fast", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
            .to_string();
    let a = post_to(
        g.messages(),
        "/v1/messages",
        body.clone(),
        &[("x-api-key", "sk-bad")],
    )
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["error"]["type"], "authentication_error");
    for h in [
        ("x-api-key", "sk-good"),
        ("authorization", "Bearer sk-good"),
    ] {
        let a = post_to(g.messages(), "/v1/messages", body.clone(), &[h]).await;
        assert_eq!(a.status, 200, "{h:?}");
    }
    let a = post_to(g.count_tokens(), "/v1/messages/count_tokens", body, &[]).await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn count_tokens_never_generates() {
    let (demo, g) = gateway().await;
    for model in MODELS {
        let before: u64 = [ProviderKind::Openai, ProviderKind::Gemini]
            .iter()
            .map(|k| demo.server(*k).request_count())
            .sum();
        let body = json!({"model": model, "max_tokens": 10, "system": "Be brief.",
            "messages": [{"role": "user", "content": "How many tokens is this?"}]});
        let a = post_to(
            g.count_tokens(),
            "/v1/messages/count_tokens",
            body.to_string(),
            &[],
        )
        .await;
        let after: u64 = [ProviderKind::Openai, ProviderKind::Gemini]
            .iter()
            .map(|k| demo.server(*k).request_count())
            .sum();
        assert_eq!(
            a.status,
            200,
            "{model}: {}",
            String::from_utf8_lossy(&a.body)
        );
        if model.starts_with("anthropic") {
            // Anthropic's own count endpoint, with the client's body minus generation fields.
            let last = demo.server(ProviderKind::Anthropic).last_request().unwrap();
            assert_eq!(last.path, "/v1/messages/count_tokens");
            assert!(last.body.get("max_tokens").is_none());
            assert_eq!(last.body["model"], "claude-sonnet-4-20250514");
            assert!(a.json()["input_tokens"].as_u64().unwrap() > 0);
            assert!(!a.headers.contains_key("x-switchboard-token-count"));
            continue;
        }
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert!(a.json()["input_tokens"].as_u64().unwrap() > 0);
        assert!(!a.headers.contains_key("x-switchboard-token-count"));
        if model.starts_with("openai") {
            // tiktoken (o200k for gpt-4o-mini); system 3+1+3, user 3+1+6, priming 3.
            assert_eq!(a.json()["input_tokens"], 20, "{}", a.json());
        } else {
            // Gemini's own countTokens (the demo counts words), no generation.
            let last = demo.server(ProviderKind::Gemini).last_request().unwrap();
            assert!(last.path.ends_with(":countTokens"), "{}", last.path);
            let inner = &last.body["generateContentRequest"];
            assert_eq!(inner["model"], "models/gemini-2.5-flash");
            assert!(inner["contents"].is_array());
            assert_eq!(a.json()["input_tokens"], 7, "{}", a.json());
        }
        let calls = if model.starts_with("google") { 1 } else { 0 };
        assert_eq!(after - before, calls, "{model}: only the count call");
    }
}

#[tokio::test]
async fn keep_alive_comments_flow_while_waiting_then_the_stream() {
    let demo = DemoProviders::start_with(
        switchboard::demo::DemoConfig::default()
            .with_latency(std::time::Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let g = Gateway::builder(demo.catalog())
        .keep_alive(std::time::Duration::from_millis(50))
        .build();
    for model in MODELS {
        let a = post(
            &g,
            &json!({"model": model, "max_tokens": 64, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(a.status, 200);
        let text = String::from_utf8_lossy(&a.body);
        assert!(text.starts_with(": keep-alive\n\n"), "{model}: {text}");
        let msg = well_formed(&events(&a.body));
        assert_eq!(msg["stop_reason"], "end_turn", "{model}");
    }
    // A failure after the start is an `error` event.
    let a = post(
        &g,
        &json!({"model": "nobody/nothing", "max_tokens": 64, "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(a.status, 200);
    let evs = events(&a.body);
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].0, "error");
    assert_eq!(evs[0].1["error"]["type"], "not_found_error");
    // Without a stream nothing changes.
    let a = post(
        &g,
        &json!({"model": "fast", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["type"], "message");
}

// --- stream translation under arbitrary upstream chunking ---------------------------------

const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n",
    "event: ping\ndata: {\"type\":\"ping\"}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me \"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"think.\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig-abc\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking \u{e9}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":30}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

/// The same answer from an OpenAI-compatible upstream (translated, not passed through).
const OPENAI_STREAM: &str = concat!(
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning\":\"Let me \",\"reasoning_details\":[{\"type\":\"reasoning.text\",\"text\":\"Let me \",\"format\":\"anthropic-claude-v1\",\"index\":0}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"think.\",\"reasoning_details\":[{\"type\":\"reasoning.text\",\"text\":\"think.\",\"format\":\"anthropic-claude-v1\",\"index\":0}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_details\":[{\"type\":\"reasoning.text\",\"signature\":\"sig-abc\",\"format\":\"anthropic-claude-v1\",\"index\":0}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Checking \"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\u{e9}\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"toolu_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":17,\"completion_tokens\":30,\"total_tokens\":47,\"prompt_tokens_details\":{\"cached_tokens\":5}}}\n\n",
    "data: [DONE]\n\n",
);

/// Streams `upstream` cut at `cuts` from a provider of `kind` through the Messages edge; the
/// body and the message the events build.
fn run_split(kind: ProviderKind, upstream: &'static str, cuts: Vec<usize>) -> (Bytes, Value) {
    let bytes = upstream.as_bytes();
    let mut points: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    let pieces: Vec<Bytes> = points
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&bytes[w[0]..w[1]]))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = service_fn(move |_req: http::Request<UpstreamBody>| {
            let frames: Vec<Result<http_body::Frame<Bytes>, Error>> = pieces
                .iter()
                .cloned()
                .map(|b| Ok(http_body::Frame::data(b)))
                .collect();
            async move {
                Ok::<_, Error>(http::Response::new(http_body_util::StreamBody::new(
                    futures_util::stream::iter(frames),
                )))
            }
        });
        let provider = Arc::new(Provider::new("a", kind, "http://127.0.0.1:9"));
        let stack = tower::Layer::layer(
            &ProviderTranslateLayer::new().default_target(Candidate::passthrough(
                "a/m".into(),
                provider,
                "m".into(),
            )),
            client,
        );
        let body = json!({"model": "a/m", "max_tokens": 100, "stream": true,
            "messages": [{"role": "user", "content": "hi"}]});
        let a = post_to(Messages::new(stack), "/v1/messages", body.to_string(), &[]).await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let msg = well_formed(&events(&a.body));
        (a.body, msg)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn the_stream_translation_is_well_formed_for_any_upstream_chunking(
        cuts in proptest::collection::vec(0usize..10_000, 0..40)
    ) {
        // Translated from an OpenAI-compatible stream.
        let (_, msg) = run_split(ProviderKind::Openai, OPENAI_STREAM, cuts.clone());
        check_split(&msg)?;
        // Passed through from an Anthropic stream: the provider's events, byte for byte.
        let (body, msg) = run_split(ProviderKind::Anthropic, ANTHROPIC_STREAM, cuts);
        // (with the gateway's model id, as in the request).
        let sent = ANTHROPIC_STREAM.replace(r#""model":"m""#, r#""model":"a/m""#);
        prop_assert_eq!(&body[..], sent.as_bytes());
        check_split(&msg)?;
    }
}

fn check_split(msg: &Value) -> Result<(), TestCaseError> {
    {
        let c = msg["content"].as_array().unwrap();
        prop_assert_eq!(c.len(), 3, "{}", msg);
        prop_assert_eq!(&c[0]["type"], "thinking");
        prop_assert_eq!(&c[0]["thinking"], "Let me think.");
        prop_assert_eq!(&c[0]["signature"], "sig-abc");
        prop_assert_eq!(&c[1]["text"], "Checking \u{e9}");
        prop_assert_eq!(&c[2]["id"], "toolu_1");
        prop_assert_eq!(&c[2]["input"], &json!({"city": "Paris"}));
        prop_assert_eq!(&msg["stop_reason"], "tool_use");
        prop_assert_eq!(&msg["usage"]["input_tokens"], 12);
        prop_assert_eq!(&msg["usage"]["cache_read_input_tokens"], 5);
        prop_assert_eq!(&msg["usage"]["output_tokens"], 30);
    }
    Ok(())
}

// --- same format: the answer as the provider sent it ---------------------------------------

const NATIVE_ANSWER: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-x","content":[{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"q"}},{"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[]},{"type":"text","text":"Hi","citations":[{"type":"char_location","cited_text":"x","document_index":0,"document_title":null,"start_char_index":0,"end_char_index":1}]}],"stop_reason":"stop_sequence","stop_sequence":"END","container":null,"usage":{"input_tokens":100,"cache_creation_input_tokens":200,"cache_read_input_tokens":300,"output_tokens":50,"service_tier":"standard"}}"#;

const NATIVE_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_02\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":100,\"cache_creation_input_tokens\":200,\"cache_read_input_tokens\":300,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"web_search\",\"input\":{}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"query\\\":\\\"q\\\"}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: ping\ndata: {\"type\":\"ping\"}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"citations_delta\",\"citation\":{\"type\":\"char_location\",\"cited_text\":\"x\",\"document_index\":0,\"start_char_index\":0,\"end_char_index\":1}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"END\"},\"usage\":{\"output_tokens\":50}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

type Seen = Arc<std::sync::Mutex<Vec<Bytes>>>;

/// An Anthropic upstream that answers `NATIVE_ANSWER`, or `NATIVE_STREAM` to a stream, and
/// keeps the bodies it got.
async fn scripted_anthropic() -> (tokio::task::JoinHandle<()>, Gateway, Seen) {
    use axum::response::IntoResponse;
    let seen = Seen::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/v1/messages",
        axum::routing::post(move |body: Bytes| async move {
            log.lock().unwrap().push(body.clone());
            let req: Value = serde_json::from_slice(&body).unwrap();
            if req["stream"] == true {
                ([("content-type", "text/event-stream")], NATIVE_STREAM).into_response()
            } else {
                ([("content-type", "application/json")], NATIVE_ANSWER).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let catalog = switchboard::Catalog::builder()
        .provider(
            Provider::new("anth", ProviderKind::Anthropic, &format!("http://{addr}"))
                .with_api_key("k"),
        )
        .model(
            switchboard::catalog::ModelSpec::new("anth/claude-x").pricing(
                switchboard::catalog::Pricing {
                    input: 3.0,
                    output: 15.0,
                    cached_input: Some(0.3),
                    cache_write: Some(3.75),
                    ..Default::default()
                },
            ),
        )
        .build()
        .unwrap();
    let g = Gateway::builder(catalog)
        .response_cache(switchboard::cache::ResponseCacheLayer::default())
        .build();
    (task, g, seen)
}

/// `body` with its one `,"cost":<number>` member taken out, and that number.
fn without_cost(body: &[u8]) -> (String, f64) {
    let text = String::from_utf8(body.to_vec()).unwrap();
    let start = text.find(r#","cost":"#).expect("a cost");
    let rest = &text[start + 8..];
    let end = rest.find(['}', ',']).unwrap();
    let cost: f64 = rest[..end].parse().unwrap();
    (format!("{}{}", &text[..start], &rest[end..]), cost)
}

#[tokio::test]
async fn same_format_answers_come_back_as_the_provider_sent_them_with_the_cost() {
    let (_task, g, _) = scripted_anthropic().await;
    // Input 100 × 3, cache writes 200 × 3.75, cache reads 300 × 0.3, output 50 × 15 (per M).
    let expected_cost = (100.0 * 3.0 + 200.0 * 3.75 + 300.0 * 0.3 + 50.0 * 15.0) / 1e6;
    let req = json!({"model": "anth/claude-x", "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}]});
    let a = post(&g, &req).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let (rest, cost) = without_cost(&a.body);
    // As sent, with the gateway's id and model id (as the request had it replaced), and the
    // cost.
    let gateway = |s: &str, a: &Answer, id: &str| {
        let generation = a.headers["x-generation-id"].to_str().unwrap();
        s.replace(r#""model":"claude-x""#, r#""model":"anth/claude-x""#)
            .replace(id, &format!("msg_{generation}"))
    };
    assert_eq!(
        rest,
        gateway(NATIVE_ANSWER, &a, "msg_01"),
        "every block and field as sent"
    );
    assert!((cost - expected_cost).abs() < 1e-12, "{cost}");

    let mut req = req;
    req["stream"] = json!(true);
    let a = post(&g, &req).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let (rest, cost) = without_cost(&a.body);
    assert_eq!(
        rest,
        gateway(NATIVE_STREAM, &a, "msg_02"),
        "every event as sent"
    );
    assert!((cost - expected_cost).abs() < 1e-12, "{cost}");
    let msg = well_formed(&events(&a.body));
    assert_eq!(msg["stop_sequence"], "END");
    assert_eq!(msg["usage"]["cache_read_input_tokens"], 300);
}

#[tokio::test]
async fn what_only_anthropic_carries_reaches_it_and_is_refused_elsewhere() {
    let body = |model: &str| {
        format!(
            r#"{{"model":"{model}","max_tokens":100,"container":"c_1","tools":[{{"type":"web_search_20250305","name":"web_search","max_uses":2}}],"messages":[{{"role":"user","content":[{{"type":"document","source":{{"type":"text","media_type":"text/plain","data":"The sky is blue."}},"title":"Sky","citations":{{"enabled":true}}}},{{"type":"text","text":"What colour is the sky?"}}]}}]}}"#
        )
    };
    let (_task, g, seen) = scripted_anthropic().await;
    let a = post_to(g.messages(), "/v1/messages", body("anth/claude-x"), &[]).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        body("claude-x").as_bytes(),
        "sent as the client wrote it"
    );
    assert_eq!(
        a.headers["x-switchboard-cache"], "BYPASS",
        "the canonical request is not all of it"
    );
    // Any other provider would get less than was asked: a 400 naming the first such part.
    let (_demo, g) = gateway().await;
    for model in ["openai/gpt-4o-mini", "google/gemini-2.5-flash"] {
        for path in ["/v1/messages", "/v1/messages/count_tokens"] {
            let a = if path == "/v1/messages" {
                post_to(g.messages(), path, body(model), &[]).await
            } else {
                post_to(g.count_tokens(), path, body(model), &[]).await
            };
            assert_eq!(a.status, 400, "{model} {path}");
            let e = a.json();
            assert_eq!(e["error"]["type"], "invalid_request_error");
            let msg = e["error"]["message"].as_str().unwrap();
            assert!(
                msg.contains("container") && msg.contains("only an Anthropic model"),
                "{msg}"
            );
        }
    }
}

/// A same-format stream whose events make no output without end (pings) is cut with the
/// in-band error once they pass the response limit: the pass-through buffer is bounded.
#[tokio::test]
async fn events_without_output_do_not_pile_up_in_the_pass_through() {
    let mut upstream = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n",
    );
    for _ in 0..2_000 {
        upstream.push_str("event: ping\ndata: {\"type\": \"ping\"}\n\n");
    }
    let client = service_fn(move |_req: http::Request<UpstreamBody>| {
        let body = Bytes::from(upstream.clone());
        async move { Ok::<_, Error>(http::Response::new(Full::new(body))) }
    });
    let provider = Arc::new(Provider::new(
        "a",
        ProviderKind::Anthropic,
        "http://127.0.0.1:9",
    ));
    let stack = tower::Layer::layer(
        &ProviderTranslateLayer::new()
            .max_response_bytes(16 * 1024)
            .default_target(Candidate::passthrough("a/m".into(), provider, "m".into())),
        client,
    );
    let body = json!({"model": "a/m", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let a = post_to(Messages::new(stack), "/v1/messages", body.to_string(), &[]).await;
    let text = String::from_utf8_lossy(&a.body);
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains("without output"), "{text}");
    assert!(
        a.body.len() < 4096,
        "nothing piled up was sent: {}",
        a.body.len()
    );
}
