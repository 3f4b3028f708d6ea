//! Reasoning models across turns, end to end against the strict demo providers: thinking
//! signatures survive the round trip through `reasoning_details`, so tool use with thinking
//! keeps working (the demo Anthropic server verifies signatures as the real API does).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use switchboard::demo::DemoProviders;
use switchboard::Gateway;
use tower::ServiceExt;

async fn post(g: &Gateway, body: &Value) -> (u16, Value) {
    let req = http::Request::post("/v1/chat/completions")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap();
    let resp = g.chat_completions().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

async fn round_trip(model: &str, strip_details: bool) -> (u16, Value) {
    let demo = DemoProviders::start().await.unwrap();
    let g = Gateway::builder(demo.catalog()).build();
    let mut messages = vec![json!({"role": "user", "content": "Weather in Paris?"})];
    let first = json!({
        "model": model, "max_tokens": 4000, "reasoning": {"effort": "low"},
        "tools": weather_tool(), "messages": messages,
    });
    let (status, v) = post(&g, &first).await;
    assert_eq!(status, 200, "{v}");
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    assert!(msg["reasoning"].is_string(), "reasoning text returned: {v}");
    let details = msg["reasoning_details"]
        .as_array()
        .expect("reasoning_details");
    assert!(!details.is_empty());
    let mut assistant = msg.clone();
    if strip_details {
        assistant
            .as_object_mut()
            .unwrap()
            .remove("reasoning_details");
    }
    let call_id = msg["tool_calls"][0]["id"].as_str().unwrap().to_owned();
    messages.push(assistant);
    messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": "21 degrees"}));
    let second = json!({
        "model": model, "max_tokens": 4000, "reasoning": {"effort": "low"},
        "tools": weather_tool(), "messages": messages,
    });
    post(&g, &second).await
}

#[tokio::test]
async fn anthropic_thinking_signatures_survive_tool_turns() {
    let (status, v) = round_trip("anthropic/claude-sonnet-4", false).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("21 degrees"));
    // Without the signed thinking the provider refuses the turn, as Anthropic does.
    let (status, v) = round_trip("anthropic/claude-sonnet-4", true).await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn gemini_thought_signatures_survive_tool_turns() {
    let (status, v) = round_trip("google/gemini-2.5-flash", false).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("21 degrees"));
    assert!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn exclude_hides_reasoning_text_but_keeps_details() {
    let demo = DemoProviders::start().await.unwrap();
    let g = Gateway::builder(demo.catalog()).build();
    let body = json!({
        "model": "anthropic/claude-sonnet-4", "max_tokens": 4000,
        "reasoning": {"effort": "low", "exclude": true},
        "messages": [{"role": "user", "content": "think about it"}],
    });
    let (status, v) = post(&g, &body).await;
    assert_eq!(status, 200, "{v}");
    let msg = &v["choices"][0]["message"];
    assert!(msg.get("reasoning").is_none(), "{v}");
    assert!(
        msg["reasoning_details"]
            .as_array()
            .is_some_and(|d| !d.is_empty()),
        "{v}"
    );
}
