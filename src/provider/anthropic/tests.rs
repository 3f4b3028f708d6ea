use http::Method;
use serde_json::{json, Value};

use super::*;
use crate::catalog::{Provider, ProviderKind};
use crate::openai::sse::{SseDecoder, SseEvent};
use crate::openai::{ChatCompletionChunk, FinishReason, ToolCallDelta};
use crate::ErrorKind;

fn provider() -> Provider {
    Provider::new(
        "anthropic",
        ProviderKind::Anthropic,
        "https://api.anthropic.com/",
    )
    .with_api_key("sk-ant-test")
}

fn encode_with(body: Value, max_output: Option<u32>) -> Result<http::Request<UpstreamBody>, Error> {
    let req = ChatRequest::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
    let p = provider();
    Anthropic.encode(
        &req,
        &EncodeContext {
            provider: &p,
            upstream_model: "claude-sonnet-4-20250514",
            max_output,
        },
    )
}

fn encode(body: Value) -> Value {
    let r = encode_with(body, None).unwrap();
    serde_json::from_slice(&r.body().to_bytes()).unwrap()
}

fn encode_err(body: Value) -> Error {
    encode_with(body, None).unwrap_err()
}

fn ctx() -> DecodeContext {
    DecodeContext {
        model: "anthropic/claude-sonnet-4".into(),
        provider: "anthropic".into(),
    }
}

// ----- requests ---------------------------------------------------------------------------

#[test]
fn encodes_url_headers_and_minimal_body() {
    let r = encode_with(
        json!({"model": "anthropic/claude-sonnet-4", "stream": true,
               "messages": [{"role": "user", "content": "Hello, world"}]}),
        None,
    )
    .unwrap();
    assert_eq!(r.method(), Method::POST);
    assert_eq!(r.uri(), "https://api.anthropic.com/v1/messages");
    assert_eq!(r.headers()["x-api-key"], "sk-ant-test");
    assert!(r.headers()["x-api-key"].is_sensitive());
    assert_eq!(r.headers()["anthropic-version"], "2023-06-01");
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.headers().get("authorization").is_none());
    let v: Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
    assert_eq!(
        v,
        json!({
            "model": "claude-sonnet-4-20250514",
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": "Hello, world"}],
            "stream": true
        })
    );
}

#[test]
fn max_tokens_precedence() {
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let body = |extra: Value| {
        let mut b = json!({"model": "m", "messages": msgs});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let mt = |b: Value, cap: Option<u32>| -> Value {
        let r = encode_with(b, cap).unwrap();
        serde_json::from_slice::<Value>(&r.body().to_bytes()).unwrap()["max_tokens"].clone()
    };
    assert_eq!(
        mt(
            body(json!({"max_tokens": 100, "max_completion_tokens": 200})),
            Some(8192)
        ),
        200
    );
    assert_eq!(mt(body(json!({"max_tokens": 100})), Some(8192)), 100);
    assert_eq!(mt(body(json!({})), Some(8192)), 8192);
    assert_eq!(mt(body(json!({})), None), 4096);
}

#[test]
fn lifts_system_and_merges_same_role_turns() {
    let v = encode(json!({"model": "m", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in "}, {"type": "text", "text": "French."}]},
        {"role": "user", "content": [{"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "assistant", "content": [{"type": "text", "text": "!"}]},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Bye"}
    ]}));
    assert_eq!(v["system"], "You are terse.\n\nAnswer in French.");
    assert_eq!(
        v["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Bonjour"}, {"type": "text", "text": "!"}]},
            {"role": "user", "content": "Bye"}
        ])
    );
}

#[test]
fn system_with_cache_control_becomes_text_blocks() {
    // Prompt caching example (Anthropic docs), expressed as OpenRouter content parts.
    let v = encode(json!({"model": "m", "messages": [
        {"role": "system", "content": [
            {"type": "text", "text": "You are an AI assistant tasked with analyzing literary works."},
            {"type": "text", "text": "<the entire contents of Pride and Prejudice>", "cache_control": {"type": "ephemeral"}}
        ]},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "Analyze the major themes.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ]}
    ]}));
    assert_eq!(
        v["system"],
        json!([
            {"type": "text", "text": "You are an AI assistant tasked with analyzing literary works."},
            {"type": "text", "text": "<the entire contents of Pride and Prejudice>", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be brief."}
        ])
    );
    assert_eq!(
        v["messages"][0]["content"],
        json!([{"type": "text", "text": "Analyze the major themes.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
    );
}

#[test]
fn images_by_data_url_and_by_url() {
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
            {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg", "detail": "high"}, "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Describe these images."}
        ]}]}),
    );
    assert_eq!(
        v["messages"][0]["content"],
        json!([
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
            {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"}, "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Describe these images."}
        ])
    );
    for url in ["data:image/svg+xml,<svg/>", "ftp://x/y.png"] {
        let e = encode_err(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}]}),
        );
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{url}");
    }
}

#[test]
fn pdf_files_become_documents_and_audio_is_refused() {
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}
        ]}]}),
    );
    assert_eq!(
        v["messages"][0]["content"][0],
        json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}})
    );
    let e = encode_err(
        json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]}),
    );
    assert_eq!(e.code(), Some("unsupported_parameter"));
    let e = encode_err(
        json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_id": "file-abc"}}]}]}),
    );
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}}, "required": ["location"]}
    }})
}

#[test]
fn tools_and_every_tool_choice() {
    let base = |choice: Option<Value>, parallel: Option<bool>| {
        let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "What is the weather like in San Francisco?"}],
            "tools": [weather_tool(), {"type": "function", "function": {"name": "get_time"}, "cache_control": {"type": "ephemeral"}}]});
        if let Some(c) = choice {
            b["tool_choice"] = c;
        }
        if let Some(p) = parallel {
            b["parallel_tool_calls"] = json!(p);
        }
        encode(b)
    };
    let v = base(None, None);
    assert_eq!(
        v["tools"],
        json!([
            {"name": "get_weather", "description": "Get the current weather in a given location",
             "input_schema": {"type": "object", "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}}, "required": ["location"]}},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}, "cache_control": {"type": "ephemeral"}}
        ])
    );
    assert!(v.get("tool_choice").is_none());
    assert_eq!(
        base(Some(json!("auto")), None)["tool_choice"],
        json!({"type": "auto"})
    );
    assert_eq!(
        base(Some(json!("required")), None)["tool_choice"],
        json!({"type": "any"})
    );
    assert_eq!(
        base(Some(json!("none")), None)["tool_choice"],
        json!({"type": "none"})
    );
    assert_eq!(
        base(
            Some(json!({"type": "function", "function": {"name": "get_weather"}})),
            None
        )["tool_choice"],
        json!({"type": "tool", "name": "get_weather"})
    );
    assert_eq!(
        base(Some(json!("required")), Some(false))["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        base(None, Some(false))["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert!(base(None, Some(true)).get("tool_choice").is_none());
    // No tools: tool_choice has nothing to choose from and is dropped.
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
    );
    assert!(v.get("tool_choice").is_none() && v.get("tools").is_none());
}

#[test]
fn non_function_tools_are_refused() {
    let e = encode_err(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "web_search", "function": {"name": "s"}}]}),
    );
    assert_eq!(e.code(), Some("unsupported_parameter"));
    assert_eq!(e.param(), Some("tools"));
}

#[test]
fn tool_calls_and_grouped_tool_results() {
    let v = encode(json!({"model": "m", "messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking both.", "tool_calls": [
            {"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
            {"id": "toolu_02", "type": "function", "function": {"name": "get_time", "arguments": ""}}
        ]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "15 degrees"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": [{"type": "text", "text": "12:00"}]},
        {"role": "user", "content": "Thanks, and tomorrow?"}
    ]}));
    assert_eq!(
        v["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "15 degrees"},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": [{"type": "text", "text": "12:00"}]},
                {"type": "text", "text": "Thanks, and tomorrow?"}
            ]}
        ])
    );
}

#[test]
fn tool_results_go_before_user_text_in_a_merged_turn() {
    let v = encode(json!({"model": "m", "messages": [
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "note"},
        {"role": "tool", "tool_call_id": "t1", "content": "ok"}
    ]}));
    assert_eq!(v["messages"][1]["content"][0]["type"], "tool_result");
    assert_eq!(v["messages"][1]["content"][1]["type"], "text");
}

#[test]
fn invalid_tool_arguments_are_400() {
    for args in ["{not json", "[1, 2]", "\"s\""] {
        let e = encode_err(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": args}}]}
        ]}));
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{args}");
        assert_eq!(e.status(), 400);
    }
    let e = encode_err(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}));
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
}

#[test]
fn thinking_config_from_reasoning() {
    let msgs = json!([{"role": "user", "content": "Are there an infinite number of prime numbers such that n mod 4 == 3?"}]);
    let with = |extra: Value| {
        let mut b = json!({"model": "m", "messages": msgs});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        encode(b)
    };
    // Budget given directly (the documented example).
    let v = with(json!({"max_tokens": 16000, "reasoning": {"max_tokens": 10000}}));
    assert_eq!(v["max_tokens"], 16000);
    assert_eq!(
        v["thinking"],
        json!({"type": "enabled", "budget_tokens": 10000})
    );
    // Effort: a share of max_tokens.
    let v = with(json!({"max_tokens": 10000, "reasoning": {"effort": "high"}}));
    assert_eq!(v["thinking"]["budget_tokens"], 8000);
    let v = with(json!({"max_tokens": 10000, "reasoning_effort": "medium"}));
    assert_eq!(v["thinking"]["budget_tokens"], 5000);
    let v = with(json!({"max_tokens": 10000, "reasoning": {"enabled": true}}));
    assert_eq!(v["thinking"]["budget_tokens"], 5000);
    // At least 1024, and below max_tokens (raised when needed).
    let v = with(json!({"reasoning_effort": "low"}));
    assert_eq!(v["thinking"]["budget_tokens"], 1024);
    assert_eq!(v["max_tokens"], 4096);
    let v = with(json!({"max_tokens": 1000, "reasoning": {"max_tokens": 2000}}));
    assert_eq!(v["thinking"]["budget_tokens"], 2000);
    assert_eq!(v["max_tokens"], 3000);
    let v = with(json!({"max_tokens": 500, "reasoning": {"effort": "low"}}));
    assert_eq!(v["thinking"]["budget_tokens"], 1024);
    assert_eq!(v["max_tokens"], 1524);
    // Exclude still thinks (the translate layer strips the text from the answer).
    let v = with(json!({"reasoning": {"effort": "medium", "exclude": true}}));
    assert_eq!(v["thinking"]["type"], "enabled");
    assert!(v["thinking"].get("display").is_none());
    // Off.
    for extra in [
        json!({"reasoning": {"enabled": false, "effort": "high"}}),
        json!({"reasoning_effort": "none"}),
        json!({"reasoning": {"exclude": true}}),
        json!({}),
    ] {
        assert!(with(extra.clone()).get("thinking").is_none(), "{extra}");
    }
    // Sampling parameters Anthropic rejects while thinking are dropped.
    let v = with(json!({"reasoning_effort": "high", "temperature": 0.2, "top_k": 5, "top_p": 0.5}));
    assert!(v.get("temperature").is_none() && v.get("top_k").is_none() && v.get("top_p").is_none());
    let v = with(json!({"reasoning_effort": "high", "top_p": 0.97}));
    assert_eq!(v["top_p"], 0.97);
    // Unknown effort.
    let e = encode_err(json!({"model": "m", "messages": msgs, "reasoning_effort": "extreme"}));
    assert_eq!(e.param(), Some("reasoning_effort"));
}

#[test]
fn catalog_cap_bounds_the_raised_max_tokens() {
    let r = encode_with(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
               "max_tokens": 4000, "reasoning": {"max_tokens": 8000}}),
        Some(8192),
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
    assert_eq!(v["max_tokens"], 8192);
    assert_eq!(v["thinking"]["budget_tokens"], 8000);
}

#[test]
fn forced_tool_choice_while_thinking_is_refused() {
    let e = encode_err(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [weather_tool()], "tool_choice": "required", "reasoning": {"effort": "low"}}),
    );
    assert_eq!(e.code(), Some("unsupported_parameter"));
    assert_eq!(e.param(), Some("tool_choice"));
}

#[test]
fn sampling_stop_and_user() {
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "temperature": 1.5, "top_p": 0.9, "top_k": 40, "stop": ["\n\nHuman:", "END"],
        "user": "user-123", "n": 1, "seed": 7, "frequency_penalty": 0.5, "presence_penalty": 0.1,
        "logprobs": false, "metadata": {"task": "t"}, "logit_bias": {"1": 2}}),
    );
    assert_eq!(v["temperature"], 1.0);
    assert_eq!(v["top_p"], 0.9);
    assert_eq!(v["top_k"], 40);
    assert_eq!(v["stop_sequences"], json!(["\n\nHuman:", "END"]));
    assert_eq!(v["metadata"], json!({"user_id": "user-123"}));
    for dropped in [
        "n",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "logprobs",
        "logit_bias",
        "user",
        "stream",
    ] {
        assert!(v.get(dropped).is_none(), "{dropped}");
    }
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": "END"}),
    );
    assert_eq!(v["stop_sequences"], json!(["END"]));
}

#[test]
fn refused_parameters() {
    for (extra, param) in [
        (json!({"n": 2}), "n"),
        (json!({"logprobs": true}), "logprobs"),
        (json!({"logprobs": true, "top_logprobs": 3}), "logprobs"),
        (json!({"top_logprobs": 3}), "top_logprobs"),
    ] {
        let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let e = encode_err(b);
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert_eq!(e.code(), Some("unsupported_parameter"));
        assert_eq!(e.param(), Some(param));
    }
    let e = encode_err(
        json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
    );
    assert_eq!(e.code(), Some("unsupported_parameter"));
}

#[test]
fn reasoning_details_restore_signed_thinking_before_tool_use() {
    let v = encode(
        json!({"model": "m", "reasoning": {"max_tokens": 2000}, "max_tokens": 4000, "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "content": "Let me check.", "reasoning": "The user wants the weather.",
             "tool_calls": [{"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}],
             "reasoning_details": [
                {"type": "reasoning.text", "text": "The user wants ", "format": "anthropic-claude-v1", "index": 0},
                {"type": "reasoning.text", "text": "the weather.", "format": "anthropic-claude-v1", "index": 0},
                {"type": "reasoning.text", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h", "format": "anthropic-claude-v1", "index": 0},
                {"type": "reasoning.encrypted", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a", "format": "anthropic-claude-v1", "index": 1},
                {"type": "reasoning.text", "text": "unsigned", "format": "anthropic-claude-v1", "index": 2},
                {"type": "reasoning.summary", "summary": "s", "format": "openai-responses-v1", "index": 3},
                {"type": "reasoning.text", "text": "other", "signature": "x", "format": "google-gemini-v1", "index": 4}
             ]},
            {"role": "tool", "tool_call_id": "toolu_01", "content": "15 degrees"}
        ]}),
    );
    assert_eq!(
        v["messages"][1],
        json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The user wants the weather.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris"}}
        ]})
    );
}

#[test]
fn decoded_reasoning_details_round_trip() {
    let c = Anthropic
        .decode(THINKING_RESPONSE.as_bytes(), &ctx())
        .unwrap();
    let m = &c.choices[0].message;
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": m.content, "reasoning_details": m.reasoning_details},
        {"role": "user", "content": "and?"}
    ]});
    let v = encode(body);
    assert_eq!(v["messages"][1]["content"][0]["type"], "thinking");
    assert_eq!(
        v["messages"][1]["content"][0]["signature"],
        "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL...."
    );
    assert_eq!(v["messages"][1]["content"][1]["type"], "redacted_thinking");
    assert_eq!(v["messages"][1]["content"][2]["type"], "text");
}

#[test]
fn response_format_is_emulated_with_a_forced_tool() {
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "Extract."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true,
            "schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}}),
    );
    assert_eq!(
        v["tools"],
        json!([{"name": JSON_TOOL, "description": "Give the final answer as JSON.",
                "input_schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}])
    );
    assert_eq!(v["tool_choice"], json!({"type": "tool", "name": JSON_TOOL}));
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_object"}}),
    );
    assert_eq!(v["tools"][0]["input_schema"], json!({"type": "object"}));
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "text"}}),
    );
    assert!(v.get("tools").is_none());
    for extra in [
        json!({"tools": [weather_tool()]}),
        json!({"reasoning": {"effort": "low"}}),
        json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "array"}}}}),
    ] {
        let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"}});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let e = encode_err(b);
        assert_eq!(e.param(), Some("response_format"), "{extra}");
    }
    let e = encode_err(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": JSON_TOOL}}]}),
    );
    assert_eq!(e.param(), Some("tools"));
}

// ----- responses --------------------------------------------------------------------------

// Anthropic docs: Messages API response example.
const TEXT_RESPONSE: &str = r#"{
  "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-20250514",
  "content": [{"type": "text", "text": "Hi! My name is Claude."}],
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1800}
}"#;

// Anthropic docs: tool use response.
const TOOL_RESPONSE: &str = r#"{
  "id": "msg_01Aq9w938a90dw8q",
  "type": "message",
  "model": "claude-sonnet-4-20250514",
  "stop_reason": "tool_use",
  "role": "assistant",
  "content": [
    {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
    {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA", "unit": "celsius"}}
  ],
  "usage": {"input_tokens": 472, "output_tokens": 89}
}"#;

// Anthropic docs: extended thinking response (plus a redacted block).
const THINKING_RESPONSE: &str = r#"{
  "id": "msg_01ThinkingExample",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-20250514",
  "content": [
    {"type": "thinking", "thinking": "Let me analyze this step by step...", "signature": "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL...."},
    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"},
    {"type": "text", "text": "Based on my analysis..."}
  ],
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {"input_tokens": 50, "output_tokens": 300}
}"#;

#[test]
fn decodes_text_response_with_cache_usage() {
    let c = Anthropic.decode(TEXT_RESPONSE.as_bytes(), &ctx()).unwrap();
    assert_eq!(c.id, "msg_013Zva2CMHLNnXjNJJKqJ2EF");
    assert_eq!(c.object, "chat.completion");
    assert_eq!(c.model, "anthropic/claude-sonnet-4");
    assert_eq!(c.provider.as_deref(), Some("anthropic"));
    let ch = &c.choices[0];
    assert_eq!(ch.message.role, "assistant");
    assert_eq!(
        ch.message.content.as_deref(),
        Some("Hi! My name is Claude.")
    );
    assert!(ch.message.tool_calls.is_none() && ch.message.reasoning.is_none());
    assert_eq!(ch.finish_reason, Some(FinishReason::Stop));
    assert_eq!(ch.native_finish_reason.as_deref(), Some("end_turn"));
    let u = c.usage.unwrap();
    assert_eq!(u.prompt_tokens, 2095 + 1800 + 100);
    assert_eq!(u.completion_tokens, 503);
    assert_eq!(u.total_tokens, 2095 + 1800 + 100 + 503);
    assert_eq!(u.cached_tokens(), 1800);
    assert_eq!(u.cache_write_tokens(), 100);
    assert_eq!(u.reasoning_tokens(), 0);
}

#[test]
fn decodes_tool_use_response() {
    let c = Anthropic.decode(TOOL_RESPONSE.as_bytes(), &ctx()).unwrap();
    let ch = &c.choices[0];
    assert_eq!(
        ch.message.content.as_deref(),
        Some("I'll check the current weather in San Francisco for you.")
    );
    let calls = ch.message.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(calls[0].kind, "function");
    assert_eq!(calls[0].function.name, "get_weather");
    let args: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
    assert_eq!(
        args,
        json!({"location": "San Francisco, CA", "unit": "celsius"})
    );
    assert_eq!(ch.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(ch.native_finish_reason.as_deref(), Some("tool_use"));
    let u = c.usage.unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (472, 89));
}

#[test]
fn decodes_thinking_response() {
    let c = Anthropic
        .decode(THINKING_RESPONSE.as_bytes(), &ctx())
        .unwrap();
    let m = &c.choices[0].message;
    assert_eq!(m.content.as_deref(), Some("Based on my analysis..."));
    assert_eq!(
        m.reasoning.as_deref(),
        Some("Let me analyze this step by step...")
    );
    assert_eq!(
        m.reasoning_details.as_ref().unwrap(),
        &vec![
            json!({"type": "reasoning.text", "text": "Let me analyze this step by step...",
                   "signature": "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL....",
                   "format": "anthropic-claude-v1", "index": 0}),
            json!({"type": "reasoning.encrypted", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP",
                   "format": "anthropic-claude-v1", "index": 1}),
        ]
    );
}

#[test]
fn maps_stop_reasons() {
    for (native, finish) in [
        ("end_turn", FinishReason::Stop),
        ("stop_sequence", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("model_context_window_exceeded", FinishReason::Length),
        ("tool_use", FinishReason::ToolCalls),
        ("refusal", FinishReason::ContentFilter),
        ("pause_turn", FinishReason::Stop),
    ] {
        let body = format!(
            r#"{{"id":"msg_1","type":"message","role":"assistant","content":[{{"type":"text","text":"x"}}],"stop_reason":"{native}","usage":{{"input_tokens":1,"output_tokens":1}}}}"#
        );
        let c = Anthropic.decode(body.as_bytes(), &ctx()).unwrap();
        assert_eq!(c.choices[0].finish_reason, Some(finish), "{native}");
        assert_eq!(c.choices[0].native_finish_reason.as_deref(), Some(native));
    }
}

#[test]
fn decodes_emulated_json_output_as_content() {
    let body = format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","content":[{{"type":"tool_use","id":"toolu_1","name":"{JSON_TOOL}","input":{{"name":"Ada"}}}}],"stop_reason":"tool_use","usage":{{"input_tokens":1,"output_tokens":1}}}}"#
    );
    let c = Anthropic.decode(body.as_bytes(), &ctx()).unwrap();
    assert_eq!(
        c.choices[0].message.content.as_deref(),
        Some(r#"{"name":"Ada"}"#)
    );
    assert!(c.choices[0].message.tool_calls.is_none());
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        c.choices[0].native_finish_reason.as_deref(),
        Some("tool_use")
    );
}

#[test]
fn garbage_body_is_502() {
    let e = Anthropic.decode(b"<html>oops", &ctx()).unwrap_err();
    assert_eq!(e.status(), 502);
    let e = Anthropic
        .decode(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            &ctx(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded);
}

// ----- errors -----------------------------------------------------------------------------

fn error_body(kind: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"type": "error", "error": {"type": kind, "message": message},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}),
    )
    .unwrap()
}

#[test]
fn maps_error_bodies() {
    let h = HeaderMap::new();
    let cases = [
        (
            400,
            "invalid_request_error",
            "messages: roles must alternate between \"user\" and \"assistant\"",
            ErrorKind::UpstreamInvalidRequest,
        ),
        (
            401,
            "authentication_error",
            "invalid x-api-key",
            ErrorKind::Upstream,
        ),
        (
            403,
            "permission_error",
            "Your API key does not have permission",
            ErrorKind::Upstream,
        ),
        (
            404,
            "not_found_error",
            "model: claude-nope",
            ErrorKind::UpstreamNotFound,
        ),
        (
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
            ErrorKind::UpstreamInvalidRequest,
        ),
        (
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            ErrorKind::RateLimited,
        ),
        (
            500,
            "api_error",
            "Internal server error",
            ErrorKind::Upstream,
        ),
        (529, "overloaded_error", "Overloaded", ErrorKind::Overloaded),
    ];
    for (status, kind, message, expected) in cases {
        let e = Anthropic.decode_error(
            StatusCode::from_u16(status).unwrap(),
            &h,
            &error_body(kind, message),
        );
        assert_eq!(e.kind(), expected, "{status}");
        // The provider's words reach the client only about the client's own request.
        if matches!(status, 400 | 404 | 413) {
            assert_eq!(e.message(), message, "{status}");
        } else {
            assert!(!e.message().contains(message), "{status}: {}", e.message());
        }
    }
    assert_eq!(
        Anthropic
            .decode_error(StatusCode::from_u16(529).unwrap(), &h, b"")
            .status(),
        503
    );
}

#[test]
fn context_length_and_retry_after() {
    let e = Anthropic.decode_error(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        &error_body(
            "invalid_request_error",
            "prompt is too long: 208000 tokens > 200000 maximum",
        ),
    );
    assert_eq!(e.code(), Some("context_length_exceeded"));
    let mut h = HeaderMap::new();
    h.insert("retry-after", "7".parse().unwrap());
    let e = Anthropic.decode_error(StatusCode::TOO_MANY_REQUESTS, &h, b"<html>busy</html>");
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(7)));
    assert!(e.message().contains("429"));
}

// ----- streams ----------------------------------------------------------------------------

// Anthropic docs: basic streaming request (cache counts added to message_start).
const TEXT_STREAM: &str = "event: message_start\n\
data: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\", \"type\": \"message\", \"role\": \"assistant\", \"content\": [], \"model\": \"claude-sonnet-4-20250514\", \"stop_reason\": null, \"stop_sequence\": null, \"usage\": {\"input_tokens\": 25, \"cache_creation_input_tokens\": 10, \"cache_read_input_tokens\": 100, \"output_tokens\": 1}}}\n\n\
event: content_block_start\n\
data: {\"type\": \"content_block_start\", \"index\": 0, \"content_block\": {\"type\": \"text\", \"text\": \"\"}}\n\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"Hello\"}}\n\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"!\"}}\n\n\
event: content_block_stop\n\
data: {\"type\": \"content_block_stop\", \"index\": 0}\n\n\
event: message_delta\n\
data: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": \"end_turn\", \"stop_sequence\":null}, \"usage\": {\"output_tokens\": 15}}\n\n\
event: message_stop\n\
data: {\"type\": \"message_stop\"}\n\n";

// Anthropic docs: streaming with tool use, here with two parallel calls after a text block.
const TOOL_STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-20250514\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"output_tokens\":2},\"content\":[],\"stop_reason\":null}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Okay, let's check both cities.\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\":\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"San Francisco, CA\\\"}\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_02B2y2gK45rBnl3uOUsO8Vq7\",\"name\":\"get_weather\",\"input\":{}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \\\"Ne\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"w York, NY\\\"}\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":2}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

// Anthropic docs: streaming with extended thinking.
const THINKING_STREAM: &str = "event: message_start\n\
data: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_01ThinkStream\", \"type\": \"message\", \"role\": \"assistant\", \"content\": [], \"model\": \"claude-sonnet-4-20250514\", \"stop_reason\": null, \"stop_sequence\": null, \"usage\": {\"input_tokens\": 50, \"output_tokens\": 1}}}\n\n\
event: content_block_start\n\
data: {\"type\": \"content_block_start\", \"index\": 0, \"content_block\": {\"type\": \"thinking\", \"thinking\": \"\"}}\n\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"thinking_delta\", \"thinking\": \"I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\\n\\n1071 = 2 × 462 + 147\"}}\n\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"thinking_delta\", \"thinking\": \"\\n462 = 3 × 147 + 21\\n147 = 7 × 21 + 0\\n\\nSo GCD(1071, 462) = 21\"}}\n\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"signature_delta\", \"signature\": \"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds...\"}}\n\n\
event: content_block_stop\n\
data: {\"type\": \"content_block_stop\", \"index\": 0}\n\n\
event: content_block_start\n\
data: {\"type\": \"content_block_start\", \"index\": 1, \"content_block\": {\"type\": \"text\", \"text\": \"\"}}\n\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 1, \"delta\": {\"type\": \"text_delta\", \"text\": \"The greatest common divisor of 1071 and 462 is **21**.\"}}\n\n\
event: content_block_stop\n\
data: {\"type\": \"content_block_stop\", \"index\": 1}\n\n\
event: message_delta\n\
data: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": \"end_turn\", \"stop_sequence\": null}, \"usage\": {\"output_tokens\": 120}}\n\n\
event: message_stop\n\
data: {\"type\": \"message_stop\"}\n\n";

fn decode_stream(input: &[u8], splits: &[usize]) -> Result<Vec<ChatCompletionChunk>, Error> {
    let mut sse = SseDecoder::new();
    let mut dec = Anthropic.stream_decoder(&ctx());
    let mut out = Vec::new();
    let mut last = 0;
    for &s in splits.iter().chain(std::iter::once(&input.len())) {
        let s = s.clamp(last, input.len());
        sse.push(&input[last..s]);
        last = s;
        while let Some(ev) = sse.next_event()? {
            dec.event(ev, &mut out)?;
        }
    }
    dec.finish(&mut out)?;
    assert!(dec.is_done());
    Ok(out)
}

fn same_stream_identity(chunks: &[ChatCompletionChunk], id: &str) {
    let created = chunks[0].created;
    for c in chunks {
        assert_eq!(c.id, id);
        assert_eq!(c.created, created);
        assert_eq!(c.object, "chat.completion.chunk");
        assert_eq!(c.model, "anthropic/claude-sonnet-4");
    }
}

#[test]
fn decodes_text_stream() {
    let chunks = decode_stream(TEXT_STREAM.as_bytes(), &[]).unwrap();
    same_stream_identity(&chunks, "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY");
    assert_eq!(chunks.len(), 5);
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    assert!(!chunks[0].has_output());
    assert_eq!(chunks[1].choices[0].delta.content.as_deref(), Some("Hello"));
    assert_eq!(chunks[2].choices[0].delta.content.as_deref(), Some("!"));
    assert!(chunks[1..]
        .iter()
        .all(|c| c.choices.iter().all(|ch| ch.delta.role.is_none())));
    assert_eq!(chunks[3].choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        chunks[3].choices[0].native_finish_reason.as_deref(),
        Some("end_turn")
    );
    assert!(chunks[4].is_usage_only());
    let u = chunks[4].usage.as_ref().unwrap();
    assert_eq!(u.prompt_tokens, 25 + 10 + 100);
    assert_eq!(u.completion_tokens, 15);
    assert_eq!(u.total_tokens, 150);
    assert_eq!(u.cached_tokens(), 100);
    assert_eq!(u.cache_write_tokens(), 10);
}

#[test]
fn decodes_parallel_tool_call_stream() {
    let chunks = decode_stream(TOOL_STREAM.as_bytes(), &[]).unwrap();
    same_stream_identity(&chunks, "msg_014p7gG3wDgGV9EUtLvnow3U");
    let deltas: Vec<&ToolCallDelta> = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|c| c.delta.tool_calls.as_ref())
        .flatten()
        .collect();
    // Each call starts with id, type and name; argument pieces follow.
    let firsts: Vec<_> = deltas.iter().filter(|d| d.id.is_some()).collect();
    assert_eq!(firsts.len(), 2);
    assert_eq!(firsts[0].index, 0);
    assert_eq!(
        firsts[0].id.as_deref(),
        Some("toolu_01T1x1fJ34qAmk2tNTrN7Up6")
    );
    assert_eq!(firsts[0].kind.as_deref(), Some("function"));
    assert_eq!(
        firsts[0].function.as_ref().unwrap().name.as_deref(),
        Some("get_weather")
    );
    assert_eq!(firsts[1].index, 1);
    assert_eq!(
        firsts[1].id.as_deref(),
        Some("toolu_02B2y2gK45rBnl3uOUsO8Vq7")
    );
    let mut args = [String::new(), String::new()];
    for d in &deltas {
        if d.id.is_none() {
            assert!(d.kind.is_none() && d.function.as_ref().unwrap().name.is_none());
        }
        if let Some(a) = d.function.as_ref().and_then(|f| f.arguments.as_deref()) {
            args[d.index as usize].push_str(a);
        }
    }
    let a0: Value = serde_json::from_str(&args[0]).unwrap();
    let a1: Value = serde_json::from_str(&args[1]).unwrap();
    assert_eq!(a0, json!({"location": "San Francisco, CA"}));
    assert_eq!(a1, json!({"location": "New York, NY"}));
    let text: String = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(text, "Okay, let's check both cities.");
    let finish = &chunks[chunks.len() - 2].choices[0];
    assert_eq!(finish.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(finish.native_finish_reason.as_deref(), Some("tool_use"));
    let u = chunks.last().unwrap().usage.as_ref().unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (472, 89));
}

#[test]
fn decodes_thinking_stream_with_signature() {
    let chunks = decode_stream(THINKING_STREAM.as_bytes(), &[]).unwrap();
    same_stream_identity(&chunks, "msg_01ThinkStream");
    let reasoning: String = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|c| c.delta.reasoning.as_deref())
        .collect();
    assert!(reasoning.starts_with("I need to find the GCD"));
    assert!(reasoning.ends_with("So GCD(1071, 462) = 21"));
    assert!(chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .all(|c| c.delta.reasoning.is_none() || c.delta.content.is_none()));
    let details: Vec<&Value> = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|c| c.delta.reasoning_details.as_ref())
        .flatten()
        .collect();
    let sig = details
        .iter()
        .find(|d| d.get("signature").is_some())
        .unwrap();
    assert_eq!(
        **sig,
        json!({"type": "reasoning.text", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds...",
               "format": "anthropic-claude-v1", "index": 0})
    );
    assert!(details.iter().all(|d| d["index"] == 0));
    let text: String = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(
        text,
        "The greatest common divisor of 1071 and 462 is **21**."
    );
    // The streamed details, sent back as they came, restore the signed thinking block.
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "GCD?"},
        {"role": "assistant", "content": text, "reasoning_details": details},
        {"role": "user", "content": "Thanks"}
    ]});
    let v = encode(body);
    assert_eq!(
        v["messages"][1]["content"][0],
        json!({"type": "thinking", "thinking": reasoning,
               "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."})
    );
}

#[test]
fn decodes_emulated_json_stream_as_content() {
    let s = format!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_j\",\"usage\":{{\"input_tokens\":5,\"output_tokens\":1}}}}}}\n\n\
event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"tool_use\",\"id\":\"toolu_j\",\"name\":\"{JSON_TOOL}\",\"input\":{{}}}}}}\n\n\
event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\"{{\\\"name\\\":\"}}}}\n\n\
event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"Ada\\\"}}\"}}}}\n\n\
event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"tool_use\"}},\"usage\":{{\"output_tokens\":9}}}}\n\n\
event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    );
    let chunks = decode_stream(s.as_bytes(), &[]).unwrap();
    let text: String = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(text, "{\"name\": \"Ada\"}");
    assert!(chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .all(|c| c.delta.tool_calls.is_none()));
    assert_eq!(
        chunks[chunks.len() - 2].choices[0].finish_reason,
        Some(FinishReason::Stop)
    );
}

#[test]
fn error_event_mid_stream_is_an_error_of_its_kind() {
    let cut = TEXT_STREAM.find("event: content_block_stop").unwrap();
    for (kind, expected) in [
        ("overloaded_error", ErrorKind::Overloaded),
        ("rate_limit_error", ErrorKind::RateLimited),
        ("api_error", ErrorKind::Upstream),
        ("invalid_request_error", ErrorKind::UpstreamInvalidRequest),
        ("something_new", ErrorKind::Upstream),
    ] {
        let s = format!(
            "{}event: error\ndata: {{\"type\": \"error\", \"error\": {{\"type\": \"{kind}\", \"message\": \"Overloaded\"}}}}\n\n",
            &TEXT_STREAM[..cut]
        );
        let e = decode_stream(s.as_bytes(), &[]).unwrap_err();
        assert_eq!(e.kind(), expected, "{kind}");
        assert_eq!(
            e.message() == "Overloaded",
            kind == "invalid_request_error",
            "{kind}: {}",
            e.message()
        );
    }
}

#[test]
fn truncated_stream_fails_in_finish() {
    let cut = TEXT_STREAM.find("event: message_stop").unwrap();
    let mut sse = SseDecoder::new();
    let mut dec = Anthropic.stream_decoder(&ctx());
    let mut out = Vec::new();
    sse.push(&TEXT_STREAM.as_bytes()[..cut]);
    while let Some(ev) = sse.next_event().unwrap() {
        dec.event(ev, &mut out).unwrap();
    }
    assert!(!dec.is_done());
    assert!(out
        .iter()
        .all(|c| c.choices.iter().all(|ch| ch.finish_reason.is_none())));
    let e = dec.finish(&mut out).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Upstream);
}

#[test]
fn content_before_message_start_is_an_error() {
    let s = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n";
    assert!(decode_stream(s.as_bytes(), &[]).is_err());
    assert!(decode_stream(b"data: {not json}\n\n", &[]).is_err());
}

fn normalized(mut chunks: Vec<ChatCompletionChunk>) -> Vec<ChatCompletionChunk> {
    for c in &mut chunks {
        c.created = 0;
    }
    chunks
}

const GOLDEN_STREAMS: [&str; 3] = [TEXT_STREAM, TOOL_STREAM, THINKING_STREAM];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
    #[test]
    fn any_split_decodes_identically(
        which in 0usize..GOLDEN_STREAMS.len(),
        mut splits in proptest::collection::vec(0usize..4096, 0..12),
    ) {
        let input = GOLDEN_STREAMS[which].as_bytes();
        for s in &mut splits {
            *s %= input.len();
        }
        splits.sort_unstable();
        proptest::prop_assert_eq!(
            normalized(decode_stream(input, &splits).unwrap()),
            normalized(decode_stream(input, &[]).unwrap())
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let mut sse = SseDecoder::with_limit(1024);
        let mut dec = Anthropic.stream_decoder(&ctx());
        let mut out = Vec::new();
        sse.push(&bytes);
        while let Ok(Some(ev)) = sse.next_event() {
            if dec.event(ev, &mut out).is_err() {
                break;
            }
        }
        let _ = dec.finish(&mut out);
    }

    #[test]
    fn arbitrary_event_sequences_never_panic(
        events in proptest::collection::vec((0usize..9, 0u32..4, "[a-z\" {}:,\\\\]{0,12}"), 0..24),
    ) {
        let mut dec = Anthropic.stream_decoder(&ctx());
        let mut out = Vec::new();
        for (kind, index, text) in events {
            let text = serde_json::to_string(&text).unwrap();
            let data = match kind {
                0 => "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":18446744073709551615,\"cache_read_input_tokens\":18446744073709551615}}}".to_owned(),
                1 => format!("{{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"t\",\"name\":{text},\"input\":{{}}}}}}"),
                2 => format!("{{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"thinking\",\"thinking\":{text}}}}}"),
                3 => format!("{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":{text}}}}}"),
                4 => format!("{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"signature_delta\",\"signature\":{text}}}}}"),
                5 => format!("{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"thinking_delta\",\"thinking\":{text}}}}}"),
                6 => "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":18446744073709551615}}".to_owned(),
                7 => "{\"type\":\"message_stop\"}".to_owned(),
                _ => text,
            };
            let _ = dec.event(SseEvent { event: None, data }, &mut out);
        }
        let _ = dec.finish(&mut out);
    }
}

// ----- hostile inputs ----------------------------------------------------------------------

#[test]
fn restoring_many_reasoning_entries_is_linear() {
    // 60,000 distinct indices (each once searched for through every earlier entry), then a
    // second fragment for each, in reverse order.
    let n = 60_000;
    let mut details: Vec<Value> = (0..n)
        .map(|i| json!({"type": "reasoning.text", "text": "t", "format": "anthropic-claude-v1", "index": i}))
        .collect();
    details.extend((0..n).rev().map(|i| {
        json!({"type": "reasoning.text", "text": "u", "signature": format!("s{i}"), "format": "anthropic-claude-v1", "index": i})
    }));
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning_details": details},
        {"role": "user", "content": "and?"}
    ]});
    let req = ChatRequest::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
    let p = provider();
    let ctx = EncodeContext {
        provider: &p,
        upstream_model: "claude-sonnet-4-20250514",
        max_output: None,
    };
    let started = tokio::time::Instant::now();
    let r = Anthropic.encode(&req, &ctx).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let v: Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
    let content = v["messages"][1]["content"].as_array().unwrap();
    assert_eq!(content.len(), n + 1);
    assert_eq!(
        content[0],
        json!({"type": "thinking", "thinking": "tu", "signature": "s0"})
    );
    assert_eq!(content[n - 1]["signature"], format!("s{}", n - 1));
}

fn start_event(index: usize) -> String {
    format!(
        "data: {{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"t{index}\",\"name\":\"f\",\"input\":{{}}}}}}\n\n"
    )
}

const START: &str = "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":1}}}\n\n";
const END: &str = "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"}}\n\ndata: {\"type\":\"message_stop\"}\n\n";

#[test]
fn open_content_blocks_are_bounded() {
    let limit = super::stream::MAX_OPEN_BLOCKS;
    let mut s = String::from(START);
    for i in 0..=limit {
        s.push_str(&start_event(i));
    }
    s.push_str(END);
    let e = decode_stream(s.as_bytes(), &[]).unwrap_err();
    assert_eq!((e.kind(), e.status().as_u16()), (ErrorKind::Upstream, 502));
    assert!(
        e.message().contains("bad upstream stream"),
        "{}",
        e.message()
    );

    // Blocks that are stopped do not count: twice the limit, one after the other, is fine.
    let mut s = String::from(START);
    for i in 0..2 * limit {
        s.push_str(&start_event(i));
        s.push_str(&format!(
            "data: {{\"type\":\"content_block_stop\",\"index\":{i}}}\n\n"
        ));
    }
    s.push_str(END);
    let chunks = decode_stream(s.as_bytes(), &[]).unwrap();
    let calls = chunks
        .iter()
        .filter(|c| {
            c.choices
                .first()
                .is_some_and(|c| c.delta.tool_calls.is_some())
        })
        .count();
    assert_eq!(calls, 2 * limit);
}

#[test]
fn deltas_find_their_block_in_constant_time() {
    // The limit of open blocks, then 200,000 deltas for the oldest (once a search through
    // all of them each).
    let limit = super::stream::MAX_OPEN_BLOCKS;
    let mut s = String::from(START);
    for i in 0..limit {
        s.push_str(&start_event(i));
    }
    // (Deltas of a type the decoder ignores: the lookup is all the work they cause.)
    for _ in 0..200_000 {
        s.push_str(
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"x\"}}\n\n",
        );
    }
    s.push_str("data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1\"}}\n\n");
    s.push_str(END);
    let started = tokio::time::Instant::now();
    let chunks = decode_stream(s.as_bytes(), &[]).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(chunks.len(), 1 + limit + 1 + 2);
    let last_delta = &chunks[chunks.len() - 3].choices[0].delta;
    assert_eq!(last_delta.tool_calls.as_ref().unwrap()[0].index, 0);
}
