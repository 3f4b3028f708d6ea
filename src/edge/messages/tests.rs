//! Unit tests of the Messages conversions.

use serde_json::{json, Value};

use super::request::parse;
use super::response::{error_status, message_json, thinking_blocks, usage_json};
use crate::edge::ChatCompletionsLayer;
use crate::openai::{ChatCompletion, PromptTokensDetails, Usage};
use crate::ErrorKind;

fn convert(body: Value) -> Result<Value, crate::Error> {
    let p = parse(
        body.to_string().as_bytes(),
        &ChatCompletionsLayer::new().settings.config,
        false,
    )?;
    Ok(serde_json::from_slice(&p.chat.to_openai_json("m", false, false)).unwrap())
}

#[test]
fn errors_use_anthropics_statuses_and_types() {
    assert_eq!(
        error_status(ErrorKind::Overloaded),
        (529, "overloaded_error")
    );
    assert_eq!(
        error_status(ErrorKind::BudgetExhausted),
        (402, "billing_error")
    );
    assert_eq!(
        error_status(ErrorKind::PayloadTooLarge),
        (413, "request_too_large")
    );
    assert_eq!(error_status(ErrorKind::Upstream), (502, "api_error"));
    assert_eq!(error_status(ErrorKind::Timeout), (504, "timeout_error"));
    assert_eq!(
        error_status(ErrorKind::UpstreamNotFound),
        (404, "not_found_error")
    );
}

#[test]
fn a_conversation_maps_to_the_canonical_request() {
    let out = convert(json!({
        "model": "x", "max_tokens": 100,
        "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "tool_use", "id": "tu_1", "name": "t", "input": {"a": 1}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "tu_1", "content": "ok", "is_error": true},
                {"type": "text", "text": "go on"},
            ]},
        ],
    }))
    .unwrap();
    let m = &out["messages"];
    assert_eq!(m[0]["content"][0]["cache_control"]["type"], "ephemeral");
    assert_eq!(m[2]["tool_calls"][0]["function"]["arguments"], r#"{"a":1}"#);
    assert_eq!(m[2]["reasoning_details"][0]["signature"], "sig");
    assert_eq!(m[3]["role"], "tool");
    assert_eq!(m[3]["content"], "[tool error] ok");
    assert_eq!(m[4]["content"][0]["text"], "go on");
    assert_eq!(out["tool_choice"], "required");
    assert_eq!(out["parallel_tool_calls"], false);
    assert_eq!(out["reasoning"]["max_tokens"], 2048);
}

#[test]
fn what_only_anthropic_can_carry_is_left_out_and_kept_as_a_400() {
    let parse_one = |body: &Value| {
        parse(
            body.to_string().as_bytes(),
            &ChatCompletionsLayer::new().settings.config,
            false,
        )
    };
    for (body, param) in [
        (
            json!({"model": "x", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}], "container": "c"}),
            "container",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "search_result"}]}]}),
            "messages",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "a", "bogus": 1}]}]}),
            "messages",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}}]}]}),
            "messages",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "tools",
        ),
    ] {
        let p = parse_one(&body).unwrap();
        let e = p.native_only.expect("kept for other targets");
        assert_eq!(e.status(), 400, "{body}");
        assert_eq!(e.code(), Some("unsupported_parameter"));
        assert_eq!(e.param(), Some(param), "{body}");
        assert!(e.message().contains("only an Anthropic model"), "{e}");
        // The rest is converted; the part is not.
        let chat = String::from_utf8(p.chat.to_openai_json("m", false, false)).unwrap();
        assert!(chat.contains("hi"), "{chat}");
        assert!(
            !chat.contains("search_result") && !chat.contains("doc\""),
            "{chat}"
        );
        assert!(p.chat.tools.is_none());
    }
    // Mistakes are a 400 for every target.
    for body in [
        json!({"model": "x", "max_tokens": 1, "messages": [{"role": "system", "content": "hi"}]}),
        json!({"model": "x", "messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "x", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
    ] {
        let e = convert(body.clone()).unwrap_err();
        assert_eq!(e.status(), 400, "{body}");
    }
}

#[test]
fn answers_render_in_anthropic_shape() {
    let c: ChatCompletion = serde_json::from_value(json!({
        "id": "chatcmpl-1", "model": "p/m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "x", "reasoning": "r",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "t", "arguments": "{\"a\":1}"}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "cost": 0.5,
            "prompt_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 2}},
    }))
    .unwrap();
    let m = message_json(&c);
    assert_eq!(m["id"], "msg_1");
    assert_eq!(
        m["content"][0],
        json!({"type": "thinking", "thinking": "r", "signature": ""})
    );
    assert_eq!(m["content"][1]["text"], "x");
    assert_eq!(m["content"][2]["input"], json!({"a": 1}));
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(
        m["usage"],
        json!({"input_tokens": 5, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 2,
            "output_tokens": 2, "cost": 0.5})
    );
    let u = Usage {
        prompt_tokens: 1,
        prompt_tokens_details: Some(PromptTokensDetails::default()),
        ..Usage::default()
    };
    assert_eq!(usage_json(Some(&u))["input_tokens"], 1);
    // A Gemini thought signature survives as an envelope.
    let d = json!({"type": "reasoning.encrypted", "data": "s", "format": "google-gemini-v1", "index": 0});
    let b = thinking_blocks(None, Some(std::slice::from_ref(&d)));
    assert_eq!(b[0]["type"], "redacted_thinking");
    let back = convert(json!({"model": "x", "max_tokens": 1, "messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [b[0].clone(), {"type": "text", "text": "t"}]},
        {"role": "user", "content": "b"}]}))
    .unwrap();
    assert_eq!(back["messages"][1]["reasoning_details"][0], d);
}
