use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Map, Value};

use super::stream::GeminiStream;
use super::thoughts::PLACEHOLDER_SIGNATURE;
use super::*;
use crate::catalog::{Provider, ProviderKind};
use crate::client::UpstreamBody;
use crate::openai::sse::{SseDecoder, SseEvent};
use crate::openai::{ChatCompletionChunk, ChatRequest, FinishReason, ToolCallDelta};
use crate::provider::{DecodeContext, EncodeContext, StreamDecode};
use crate::{Error, ErrorKind};

fn provider() -> Provider {
    Provider::new(
        "google",
        ProviderKind::Gemini,
        "https://generativelanguage.googleapis.com/",
    )
    .with_api_key("test-key")
}

fn dctx() -> DecodeContext {
    DecodeContext {
        model: "google/gemini-2.5-flash".into(),
        provider: "google".into(),
    }
}

fn encode_with(body: Value, model: &str) -> Result<http::Request<UpstreamBody>, Error> {
    let req = ChatRequest::from_slice(body.to_string().as_bytes())?;
    let p = provider();
    Gemini.encode(
        &req,
        &EncodeContext {
            provider: &p,
            upstream_model: model,
            max_output: Some(65536),
        },
    )
}

fn encode(body: Value) -> Value {
    let r = encode_with(body, "gemini-2.5-flash").unwrap();
    serde_json::from_slice(&r.body().to_bytes()).unwrap()
}

fn encode_err(body: Value) -> Error {
    encode_with(body, "gemini-2.5-flash").unwrap_err()
}

// ----- request ------------------------------------------------------------------------

#[test]
fn url_header_and_minimal_body() {
    let r = encode_with(
        json!({"model": "google/gemini-2.5-flash", "messages": [{"role": "user", "content": "Explain how AI works"}]}),
        "models/gemini-2.5-flash",
    )
    .unwrap();
    assert_eq!(r.method(), Method::POST);
    assert_eq!(
        r.uri(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(r.headers()["x-goog-api-key"], "test-key");
    assert!(r.headers()["x-goog-api-key"].is_sensitive());
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.headers().get("authorization").is_none());
    // The REST quickstart body.
    let v: Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
    assert_eq!(
        v,
        json!({"contents": [{"role": "user", "parts": [{"text": "Explain how AI works"}]}]})
    );
}

#[test]
fn streams_use_sse_method() {
    let r = encode_with(
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        "gemini-2.5-pro",
    )
    .unwrap();
    assert_eq!(
        r.uri(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    );
    let r = encode_with(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        "tunedModels/my-model-123",
    )
    .unwrap();
    assert_eq!(
        r.uri(),
        "https://generativelanguage.googleapis.com/v1beta/tunedModels/my-model-123:generateContent"
    );
}

#[test]
fn system_and_developer_become_system_instruction_and_turns_merge() {
    let v = encode(json!({"model": "m", "messages": [
        {"role": "system", "content": "You are a cat."},
        {"role": "developer", "content": [{"type": "text", "text": "Your name is Neko."}]},
        {"role": "user", "content": "Hello"},
        {"role": "user", "content": "Are you there?"},
        {"role": "assistant", "content": "Meow."},
        {"role": "assistant", "content": [{"type": "text", "text": "Purr."}]},
        {"role": "user", "content": "Good cat."}
    ]}));
    assert_eq!(
        v,
        json!({
            "systemInstruction": {"parts": [{"text": "You are a cat."}, {"text": "Your name is Neko."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hello"}, {"text": "Are you there?"}]},
                {"role": "model", "parts": [{"text": "Meow."}, {"text": "Purr."}]},
                {"role": "user", "parts": [{"text": "Good cat."}]}
            ]
        })
    );
}

#[test]
fn only_a_system_prompt_is_refused() {
    let e = encode_err(json!({"model": "m", "messages": [{"role": "system", "content": "x"}]}));
    assert_eq!(e.status(), 400);
}

#[test]
fn images_audio_and_files() {
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Caption these"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cats/photo.PNG?size=large", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/image"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
        ]}]}),
    );
    assert_eq!(
        v["contents"][0]["parts"],
        json!([
            {"text": "Caption these"},
            {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
            {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cats/photo.PNG?size=large"}},
            {"fileData": {"fileUri": "https://example.com/image"}},
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
        ])
    );
}

#[test]
fn bad_media_is_a_400() {
    for part in [
        json!({"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}),
        json!({"type": "image_url", "image_url": {"url": "ftp://host/x.png"}}),
        json!({"type": "file", "file": {"file_id": "file-abc"}}),
        json!({"type": "input_audio", "input_audio": {"data": "x", "format": "opus"}}),
    ] {
        let e =
            encode_err(json!({"model": "m", "messages": [{"role": "user", "content": [part]}]}));
        assert_eq!(e.status(), 400, "{part}");
    }
}

#[test]
fn tool_calls_and_results_match_by_id() {
    let v = encode(json!({"model": "m", "messages": [
        {"role": "user", "content": "Weather in Paris and London? And the time."},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_current_temperature", "arguments": "{\"location\": \"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_current_temperature", "arguments": "{\"location\": \"London\"}"}},
            {"id": "call_3", "type": "function", "function": {"name": "get_time", "arguments": ""}}
        ]},
        {"role": "tool", "tool_call_id": "call_3", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 15, \"unit\": \"C\"}"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "[1, 2]"}]}
    ]}));
    let contents = &v["contents"];
    assert_eq!(contents.as_array().unwrap().len(), 3);
    assert_eq!(
        contents[1],
        json!({"role": "model", "parts": [
            {"functionCall": {"name": "get_current_temperature", "args": {"location": "Paris"}}, "thoughtSignature": PLACEHOLDER_SIGNATURE},
            {"functionCall": {"name": "get_current_temperature", "args": {"location": "London"}}},
            {"functionCall": {"name": "get_time", "args": {}}}
        ]})
    );
    assert_eq!(
        contents[2],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "get_time", "response": {"content": "12:00"}}},
            {"functionResponse": {"name": "get_current_temperature", "response": {"temperature": 15, "unit": "C"}}},
            {"functionResponse": {"name": "get_current_temperature", "response": {"content": "[1, 2]"}}}
        ]})
    );
}

#[test]
fn bad_tool_messages_are_400s() {
    let call = json!({"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
    for msgs in [
        json!([{"role": "user", "content": "x"}, call, {"role": "tool", "tool_call_id": "nope", "content": "r"}]),
        json!([{"role": "user", "content": "x"}, call, {"role": "tool", "content": "r"}]),
        json!([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]),
        json!([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]),
    ] {
        let e = encode_err(json!({"model": "m", "messages": msgs}));
        assert_eq!(e.status(), 400, "{msgs}");
        assert_eq!(e.param(), Some("messages"));
    }
}

#[test]
fn placeholder_signature_only_in_the_current_turn() {
    let v = encode(json!({"model": "m", "messages": [
        {"role": "user", "content": "first"},
        {"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "a", "content": "r"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "tool_calls": [{"id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "b", "content": "r"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "r"}
    ]}));
    let c = v["contents"].as_array().unwrap();
    // Turn 1 (older): untouched.
    assert!(c[1]["parts"][0].get("thoughtSignature").is_none());
    // Turn 2: every step's first call is signed.
    assert_eq!(c[5]["parts"][0]["thoughtSignature"], PLACEHOLDER_SIGNATURE);
    assert_eq!(c[7]["parts"][0]["thoughtSignature"], PLACEHOLDER_SIGNATURE);
}

#[test]
fn tools_and_every_tool_choice() {
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Get the weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
    ]);
    let base = |choice: Value| {
        let mut b =
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools});
        if !choice.is_null() {
            b["tool_choice"] = choice;
        }
        encode(b)
    };
    let v = base(Value::Null);
    assert_eq!(
        v["tools"],
        json!([{"functionDeclarations": [
            {"name": "get_weather", "description": "Get the weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "now"}
        ]}])
    );
    assert!(v.get("toolConfig").is_none());
    let mode = |c: Value| base(c)["toolConfig"]["functionCallingConfig"].clone();
    assert_eq!(mode(json!("auto")), json!({"mode": "AUTO"}));
    assert_eq!(mode(json!("none")), json!({"mode": "NONE"}));
    assert_eq!(mode(json!("required")), json!({"mode": "ANY"}));
    assert_eq!(
        mode(json!({"type": "function", "function": {"name": "get_weather"}})),
        json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})
    );
    let e = encode_err(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "missing"}}}),
    );
    assert_eq!(e.param(), Some("tool_choice"));
    let e = encode_err(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "web_search", "function": {"name": "x"}}]}),
    );
    assert_eq!(e.code(), Some("unsupported_parameter"));
}

#[test]
fn schemas_are_cleaned() {
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Args",
        "type": "object",
        "additionalProperties": false,
        "$defs": {"Unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "title": "Unit"}},
        "properties": {
            "city": {"type": "string", "default": "Paris", "examples": ["Rome"], "format": "uri", "minLength": 1},
            "unit": {"$ref": "#/$defs/Unit", "description": "Temperature unit"},
            "days": {"type": ["integer", "null"], "minimum": 1, "maximum": 14, "format": "int32"},
            "when": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
            "tags": {"type": "array", "items": {"type": "string", "const": "x"}, "uniqueItems": true, "maxItems": 3},
            "filter": {"oneOf": [{"type": "string"}, {"type": "number"}]},
            "mixed": {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                                {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}]},
            "empty": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
            "level": {"type": "integer", "enum": [1, 2, 3]}
        },
        "required": ["city", "ghost"]
    });
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]}),
    );
    assert_eq!(
        v["tools"][0]["functionDeclarations"][0]["parameters"],
        json!({
            "type": "object",
            "description": "Args",
            "properties": {
                "city": {"type": "string", "minLength": 1},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
                "days": {"type": "integer", "minimum": 1, "maximum": 14, "format": "int32", "nullable": true},
                "when": {"type": "string", "format": "date-time", "nullable": true},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["x"]}, "maxItems": 3},
                "filter": {"anyOf": [{"type": "string"}, {"type": "number"}]},
                "mixed": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "boolean"}}, "required": ["a", "b"]},
                "empty": {"type": "object"},
                "level": {"type": "integer"}
            },
            "required": ["city"]
        })
    );
}

#[test]
fn recursive_refs_terminate() {
    let schema = json!({"type": "object", "properties": {"root": {"$ref": "#/definitions/Node"}},
        "definitions": {"Node": {"type": "object", "properties": {
            "value": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/definitions/Node"}}}}}});
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]}),
    );
    let root = &v["tools"][0]["functionDeclarations"][0]["parameters"]["properties"]["root"];
    assert_eq!(root["properties"]["value"], json!({"type": "string"}));
    assert_eq!(
        root["properties"]["children"]["items"],
        json!({"type": "object"})
    );

    // A reference explosion is refused instead of exhausting memory.
    let mut defs = Map::new();
    for i in 0..24 {
        defs.insert(
            format!("D{i}"),
            json!({"type": "object", "properties": {
                "a": {"$ref": format!("#/$defs/D{}", i + 1)},
                "b": {"$ref": format!("#/$defs/D{}", i + 1)}}}),
        );
    }
    defs.insert("D24".into(), json!({"type": "string"}));
    let schema =
        json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/D0"}}, "$defs": defs});
    let e = encode_err(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]}),
    );
    assert_eq!(e.status(), 400);
}

#[test]
fn generation_config_fields() {
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 100, "max_completion_tokens": 800, "temperature": 1.0, "top_p": 0.8,
        "top_k": 10, "stop": ["Title"], "n": 2, "seed": 42,
        "presence_penalty": 0.5, "frequency_penalty": 0.0, "user": "u-1",
        "parallel_tool_calls": false, "metadata": {"a": "b"}, "logprobs": true, "top_logprobs": 3}),
    );
    assert_eq!(
        v["generationConfig"],
        json!({"maxOutputTokens": 800, "temperature": 1.0, "topP": 0.8, "topK": 10,
               "stopSequences": ["Title"], "candidateCount": 2, "seed": 42,
               "responseLogprobs": true, "logprobs": 3})
    );
    // Harmless values never reach Gemini.
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "n": 1, "stop": "END", "seed": 9_000_000_000_i64}),
    );
    assert_eq!(v["generationConfig"]["stopSequences"], json!(["END"]));
    assert!(v["generationConfig"].get("candidateCount").is_none());
    let seed = v["generationConfig"]["seed"].as_i64().unwrap();
    assert!(i32::try_from(seed).is_ok());
    // Penalties only for the models that accept them.
    let r = encode_with(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "presence_penalty": 0.5, "frequency_penalty": 0.25}),
        "gemini-2.0-flash-001",
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
    assert_eq!(
        v["generationConfig"],
        json!({"presencePenalty": 0.5, "frequencyPenalty": 0.25})
    );
}

#[test]
fn response_formats() {
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "recipe", "strict": true, "schema": {
            "type": "object", "additionalProperties": false,
            "properties": {"recipeName": {"type": "string"}, "ingredients": {"type": "array", "items": {"type": "string"}}},
            "required": ["recipeName", "ingredients"]}}}}),
    );
    assert_eq!(
        v["generationConfig"],
        json!({"responseMimeType": "application/json", "responseSchema": {
            "type": "object",
            "properties": {"recipeName": {"type": "string"}, "ingredients": {"type": "array", "items": {"type": "string"}}},
            "required": ["recipeName", "ingredients"]}})
    );
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_object"}}),
    );
    assert_eq!(
        v["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "text"}}),
    );
    assert!(v.get("generationConfig").is_none());
}

#[test]
fn thinking_config_from_reasoning() {
    let tc = |extra: Value| {
        let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        encode(b)["generationConfig"]["thinkingConfig"].clone()
    };
    assert_eq!(tc(json!({})), Value::Null);
    assert_eq!(
        tc(json!({"reasoning": {"max_tokens": 1024}})),
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );
    assert_eq!(
        tc(json!({"reasoning": {"effort": "high", "exclude": true}})),
        json!({"thinkingBudget": 24576, "includeThoughts": false})
    );
    assert_eq!(
        tc(json!({"reasoning_effort": "low"})),
        json!({"thinkingBudget": 2048, "includeThoughts": true})
    );
    assert_eq!(
        tc(json!({"reasoning_effort": "low", "reasoning": {"effort": "medium"}})),
        json!({"thinkingBudget": 8192, "includeThoughts": true})
    );
    assert_eq!(
        tc(json!({"reasoning": {"enabled": true}})),
        json!({"thinkingBudget": -1, "includeThoughts": true})
    );
    assert_eq!(
        tc(json!({"reasoning": {"enabled": false}})),
        json!({"thinkingBudget": 0, "includeThoughts": false})
    );
    assert_eq!(
        tc(json!({"reasoning_effort": "none"})),
        json!({"thinkingBudget": 0, "includeThoughts": false})
    );
    assert_eq!(
        tc(json!({"reasoning": {"exclude": true}})),
        json!({"includeThoughts": false})
    );
    let e = encode_err(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "max"}),
    );
    assert_eq!(e.status(), 400);
}

#[test]
fn refused_parameters() {
    for (extra, param) in [
        (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
        (
            json!({"audio": {"voice": "alloy", "format": "wav"}}),
            "audio",
        ),
    ] {
        let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        let e = encode_err(b);
        assert_eq!(e.status(), 400);
        assert_eq!(e.code(), Some("unsupported_parameter"));
        assert_eq!(e.param(), Some(param));
    }
    // Unknown fields and empty logit_bias are dropped.
    let v = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "logit_bias": {}, "store": true, "service_tier": "auto"}),
    );
    assert!(v.get("store").is_none() && v.get("generationConfig").is_none());
}

// ----- whole answers ------------------------------------------------------------------

// The REST text-generation example of the Gemini API reference.
const TEXT_RESPONSE: &str = r#"{
  "candidates": [{
    "content": {"parts": [{"text": "AI learns patterns from data "}, {"text": "to make predictions."}], "role": "model"},
    "finishReason": "STOP",
    "avgLogprobs": -0.1830
  }],
  "usageMetadata": {
    "promptTokenCount": 4, "candidatesTokenCount": 12, "totalTokenCount": 16,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 4}],
    "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]
  },
  "modelVersion": "gemini-2.0-flash",
  "responseId": "mAitaLmkHPPlz7IPvtfUqQ4"
}"#;

#[test]
fn decodes_text() {
    let c = Gemini.decode(TEXT_RESPONSE.as_bytes(), &dctx()).unwrap();
    assert!(c.id.starts_with("chatcmpl-"));
    assert_eq!(c.object, "chat.completion");
    assert_eq!(c.model, "google/gemini-2.5-flash");
    assert_eq!(c.provider.as_deref(), Some("google"));
    assert_eq!(c.choices.len(), 1);
    let ch = &c.choices[0];
    assert_eq!(ch.index, 0);
    assert_eq!(
        ch.message.content.as_deref(),
        Some("AI learns patterns from data to make predictions.")
    );
    assert_eq!(ch.finish_reason, Some(FinishReason::Stop));
    assert_eq!(ch.native_finish_reason.as_deref(), Some("STOP"));
    assert!(ch.message.tool_calls.is_none() && ch.message.reasoning.is_none());
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (4, 12, 16)
    );
    assert_eq!(u.cached_tokens(), 0);
}

// Parallel function calling, as in the function-calling guide (Gemini 3 returns the thought
// signature on the first call only).
const CALLS_RESPONSE: &str = r#"{
  "candidates": [{
    "content": {"role": "model", "parts": [
      {"functionCall": {"name": "get_current_temperature", "args": {"location": "Paris"}}, "thoughtSignature": "Q2lZQWRPRmJ5ZVBhcmlz"},
      {"functionCall": {"name": "get_current_temperature", "args": {"location": "London"}}},
      {"functionCall": {"id": "fc-77", "name": "get_time"}}
    ]},
    "finishReason": "STOP",
    "index": 0
  }],
  "usageMetadata": {"promptTokenCount": 80, "candidatesTokenCount": 30, "thoughtsTokenCount": 120, "totalTokenCount": 230}
}"#;

#[test]
fn decodes_function_calls() {
    let c = Gemini.decode(CALLS_RESPONSE.as_bytes(), &dctx()).unwrap();
    let ch = &c.choices[0];
    assert_eq!(ch.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(ch.native_finish_reason.as_deref(), Some("STOP"));
    assert_eq!(ch.message.content, None);
    let calls = ch.message.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].function.name, "get_current_temperature");
    assert_eq!(calls[0].function.arguments, r#"{"location":"Paris"}"#);
    assert_eq!(calls[1].function.arguments, r#"{"location":"London"}"#);
    assert_eq!(calls[2].id, "fc-77");
    assert_eq!(calls[2].function.arguments, "{}");
    assert!(calls.iter().all(|c| c.kind == "function"));
    assert!(calls[0].id.starts_with("call_") && calls[1].id.starts_with("call_"));
    assert_ne!(calls[0].id, calls[1].id);
    let suffix = c.id.strip_prefix("chatcmpl-").unwrap();
    assert!(
        calls[0].id.contains(suffix),
        "ids are unique across completions"
    );
    assert_eq!(
        ch.message.reasoning_details,
        Some(vec![
            json!({"type": "reasoning.encrypted", "data": "Q2lZQWRPRmJ5ZVBhcmlz",
            "id": calls[0].id, "format": "google-gemini-v1", "index": 0})
        ])
    );
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (80, 150, 230)
    );
    assert_eq!(u.reasoning_tokens(), 120);
}

#[test]
fn thought_signatures_round_trip() {
    let c = Gemini.decode(CALLS_RESPONSE.as_bytes(), &dctx()).unwrap();
    let msg = serde_json::to_value(&c.choices[0].message).unwrap();
    let calls = msg["tool_calls"].as_array().unwrap().clone();
    let results: Vec<Value> = calls
        .iter()
        .map(|tc| json!({"role": "tool", "tool_call_id": tc["id"], "content": "{\"ok\": true}"}))
        .collect();
    let mut messages = vec![
        json!({"role": "user", "content": "Paris, London, time?"}),
        msg,
    ];
    messages.extend(results);
    let v = encode(json!({"model": "m", "messages": messages}));
    let parts = v["contents"][1]["parts"].as_array().unwrap();
    assert_eq!(parts[0]["thoughtSignature"], "Q2lZQWRPRmJ5ZVBhcmlz");
    assert!(parts[1].get("thoughtSignature").is_none());
    assert!(parts[2].get("thoughtSignature").is_none());
    assert_eq!(
        v["contents"][2]["parts"][2]["functionResponse"]["name"],
        "get_time"
    );

    // A signature without an id goes to the first call; one after text-only answers to the
    // last part; other providers' formats are never forwarded.
    let v = encode(json!({"model": "m", "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "x1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "x2", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
         "reasoning_details": [
            {"type": "reasoning.text", "text": "thinking", "format": "google-gemini-v1", "index": 0},
            {"type": "reasoning.encrypted", "data": "U0lHMQ==", "format": "google-gemini-v1", "index": 1}]},
        {"role": "tool", "tool_call_id": "x1", "content": "a"},
        {"role": "tool", "tool_call_id": "x2", "content": "b"},
        {"role": "assistant", "content": "All done.", "reasoning_details": [
            {"type": "reasoning.encrypted", "data": "U0lHMg==", "id": null, "format": "google-gemini-v1", "index": 0},
            {"type": "reasoning.encrypted", "data": "Q0xBVURF", "format": "anthropic-claude-v1", "index": 1}]},
        {"role": "user", "content": "thanks"}
    ]}));
    let c = v["contents"].as_array().unwrap();
    assert_eq!(c[1]["parts"][0], json!({"text": "Let me check."}));
    assert_eq!(c[1]["parts"][1]["thoughtSignature"], "U0lHMQ==");
    assert!(c[1]["parts"][2].get("thoughtSignature").is_none());
    assert_eq!(
        c[3],
        json!({"role": "model", "parts": [{"text": "All done.", "thoughtSignature": "U0lHMg=="}]})
    );
}

// Thinking with thought summaries (includeThoughts), per the thinking guide.
const THOUGHTS_RESPONSE: &str = r#"{
  "candidates": [{
    "content": {"role": "model", "parts": [
      {"text": "**Analyzing the request**\nThe user asks for a prime. ", "thought": true},
      {"text": "Checking 7 is prime.", "thought": true},
      {"text": "7 is a prime number.", "thoughtSignature": "RW5jcnlwdGVkVGhvdWdodA=="}
    ]},
    "finishReason": "STOP",
    "index": 0
  }],
  "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 6, "thoughtsTokenCount": 250,
                    "cachedContentTokenCount": 4, "totalTokenCount": 266}
}"#;

#[test]
fn decodes_thoughts() {
    let c = Gemini
        .decode(THOUGHTS_RESPONSE.as_bytes(), &dctx())
        .unwrap();
    let m = &c.choices[0].message;
    assert_eq!(m.content.as_deref(), Some("7 is a prime number."));
    assert_eq!(
        m.reasoning.as_deref(),
        Some("**Analyzing the request**\nThe user asks for a prime. Checking 7 is prime.")
    );
    assert_eq!(
        m.reasoning_details,
        Some(vec![
            json!({"type": "reasoning.text", "text": "**Analyzing the request**\nThe user asks for a prime. Checking 7 is prime.",
                   "format": "google-gemini-v1", "index": 0}),
            json!({"type": "reasoning.encrypted", "data": "RW5jcnlwdGVkVGhvdWdodA==", "id": null,
                   "format": "google-gemini-v1", "index": 1}),
        ])
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (10, 256, 266)
    );
    assert_eq!((u.cached_tokens(), u.reasoning_tokens()), (4, 250));
}

#[test]
fn decodes_safety_blocks() {
    // A blocked prompt: no candidates, only promptFeedback.
    let body = r#"{"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}}"#;
    let c = Gemini.decode(body.as_bytes(), &dctx()).unwrap();
    assert_eq!(c.choices.len(), 1);
    assert_eq!(
        c.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    assert_eq!(c.choices[0].native_finish_reason.as_deref(), Some("SAFETY"));
    assert_eq!(c.choices[0].message.content, None);
    assert_eq!(c.usage.unwrap().total_tokens, 9);
    // A blocked candidate, and several candidates.
    let body = r#"{"candidates": [
        {"index": 1, "content": {"role": "model", "parts": [{"text": "Sure."}]}, "finishReason": "MAX_TOKENS"},
        {"finishReason": "RECITATION", "index": 0},
        {"index": 2, "content": {"parts": [{"text": "x"}]}, "finishReason": "MALFORMED_FUNCTION_CALL"}]}"#;
    let c = Gemini.decode(body.as_bytes(), &dctx()).unwrap();
    assert_eq!(
        c.choices.iter().map(|c| c.index).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(
        c.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    assert_eq!(c.choices[0].message.content, None);
    assert_eq!(c.choices[1].finish_reason, Some(FinishReason::Length));
    assert_eq!(c.choices[2].finish_reason, Some(FinishReason::Error));
    assert!(c.usage.is_none());
}

#[test]
fn decodes_logprobs() {
    let body = r#"{"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP",
        "logprobsResult": {
          "topCandidates": [{"candidates": [{"token": "Hi", "logProbability": -0.1}, {"token": "Hello", "logProbability": -2.5}]}],
          "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}]}}]}"#;
    let c = Gemini.decode(body.as_bytes(), &dctx()).unwrap();
    assert_eq!(
        c.choices[0].logprobs,
        Some(
            json!({"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [
            {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
            {"token": "Hello", "logprob": -2.5, "bytes": [72, 101, 108, 108, 111]}]}], "refusal": null})
        )
    );
}

#[test]
fn garbage_and_error_bodies_fail_decode() {
    assert_eq!(Gemini.decode(b"<html>", &dctx()).unwrap_err().status(), 502);
    assert_eq!(Gemini.decode(b"{}", &dctx()).unwrap_err().status(), 502);
    let e = Gemini
        .decode(br#"{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}"#, &dctx())
        .unwrap_err();
    assert_eq!(e.status(), 503);
}

// ----- streams ------------------------------------------------------------------------

fn frames(frames: &[&str]) -> String {
    frames
        .iter()
        .map(|f| format!("data: {f}\r\n\r\n"))
        .collect()
}

// Text streaming with `alt=sse`, as in the streaming guide.
fn text_stream() -> String {
    frames(&[
        r#"{"candidates": [{"content": {"parts": [{"text": "The"}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": " quick brown fox"}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": " jumps."}], "role": "model"}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 7, "cachedContentTokenCount": 2, "thoughtsTokenCount": 5, "totalTokenCount": 21}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}"#,
    ])
}

// Parallel function calls arrive whole, possibly across frames.
fn calls_stream() -> String {
    frames(&[
        r#"{"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "get_current_temperature", "args": {"location": "Paris"}}, "thoughtSignature": "U2lnUGFyaXM="}, {"functionCall": {"name": "get_current_temperature", "args": {"location": "London"}}}]}, "index": 0}], "usageMetadata": {"promptTokenCount": 70, "totalTokenCount": 70}}"#,
        r#"{"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"id": "srv-1", "name": "get_time", "args": {}}}]}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 70, "candidatesTokenCount": 25, "totalTokenCount": 95}}"#,
    ])
}

// Thought summaries streamed, then the answer with its signature on an empty final part.
fn thoughts_stream() -> String {
    frames(&[
        r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": "**Planning** I should", "thought": true}]}, "index": 0}]}"#,
        r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": " compute 2+2.", "thought": true}]}, "index": 0}]}"#,
        r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": "2 + 2 = 4."}]}, "index": 0}]}"#,
        r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": "", "thoughtSignature": "VGhvdWdodFNpZw=="}]}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 8, "thoughtsTokenCount": 40, "totalTokenCount": 60}}"#,
    ])
}

fn decode_stream(input: &[u8], splits: &[usize]) -> Result<Vec<ChatCompletionChunk>, Error> {
    let mut sse = SseDecoder::new();
    let mut dec = GeminiStream::new(dctx(), "chatcmpl-test".to_owned(), 1_700_000_000);
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
    Ok(out)
}

#[test]
fn streams_text_with_usage() {
    let chunks = decode_stream(text_stream().as_bytes(), &[]).unwrap();
    assert_eq!(chunks.len(), 4);
    assert!(chunks.iter().all(|c| c.id == "chatcmpl-test"
        && c.created == 1_700_000_000
        && c.model == "google/gemini-2.5-flash"
        && c.object == "chat.completion.chunk"));
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    assert_eq!(chunks[0].choices[0].delta.content.as_deref(), Some("The"));
    assert_eq!(chunks[1].choices[0].delta.role, None);
    assert_eq!(
        chunks[1].choices[0].delta.content.as_deref(),
        Some(" quick brown fox")
    );
    assert_eq!(
        chunks[2].choices[0].delta.content.as_deref(),
        Some(" jumps.")
    );
    assert_eq!(chunks[2].choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        chunks[2].choices[0].native_finish_reason.as_deref(),
        Some("STOP")
    );
    assert!(chunks[..3].iter().all(|c| c.usage.is_none()));
    assert!(chunks[3].is_usage_only());
    let u = chunks[3].usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (9, 12, 21)
    );
    assert_eq!((u.cached_tokens(), u.reasoning_tokens()), (2, 5));
}

#[test]
fn streams_parallel_function_calls() {
    let chunks = decode_stream(calls_stream().as_bytes(), &[]).unwrap();
    let calls: Vec<&ToolCallDelta> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.tool_calls.as_ref())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls.iter().map(|c| c.index).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(calls[0].id.as_deref(), Some("call_test_0"));
    assert_eq!(calls[1].id.as_deref(), Some("call_test_1"));
    assert_eq!(calls[2].id.as_deref(), Some("srv-1"));
    assert!(calls.iter().all(|c| c.kind.as_deref() == Some("function")));
    let f = calls[1].function.as_ref().unwrap();
    assert_eq!(f.name.as_deref(), Some("get_current_temperature"));
    assert_eq!(f.arguments.as_deref(), Some(r#"{"location":"London"}"#));
    assert_eq!(
        chunks[0].choices[0].delta.reasoning_details,
        Some(vec![
            json!({"type": "reasoning.encrypted", "data": "U2lnUGFyaXM=", "id": "call_test_0",
            "format": "google-gemini-v1", "index": 0})
        ])
    );
    let last = &chunks[1].choices[0];
    assert_eq!(last.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(last.native_finish_reason.as_deref(), Some("STOP"));
    assert!(chunks[2].is_usage_only());
    assert_eq!(chunks[2].usage.as_ref().unwrap().total_tokens, 95);
}

#[test]
fn streams_thoughts_with_signatures() {
    let chunks = decode_stream(thoughts_stream().as_bytes(), &[]).unwrap();
    assert_eq!(chunks.len(), 5);
    let d0 = &chunks[0].choices[0].delta;
    assert_eq!(d0.role.as_deref(), Some("assistant"));
    assert_eq!(d0.reasoning.as_deref(), Some("**Planning** I should"));
    assert_eq!(d0.content, None);
    assert!(chunks[0].has_output());
    assert_eq!(
        d0.reasoning_details,
        Some(vec![
            json!({"type": "reasoning.text", "text": "**Planning** I should", "format": "google-gemini-v1", "index": 0})
        ])
    );
    let d1 = &chunks[1].choices[0].delta;
    assert_eq!(d1.reasoning.as_deref(), Some(" compute 2+2."));
    assert_eq!(d1.reasoning_details.as_ref().unwrap()[0]["index"], 0);
    assert_eq!(
        chunks[2].choices[0].delta.content.as_deref(),
        Some("2 + 2 = 4.")
    );
    let end = &chunks[3].choices[0];
    assert_eq!(end.delta.content, None);
    assert_eq!(
        end.delta.reasoning_details,
        Some(vec![
            json!({"type": "reasoning.encrypted", "data": "VGhvdWdodFNpZw==", "id": null,
            "format": "google-gemini-v1", "index": 1})
        ])
    );
    assert_eq!(end.finish_reason, Some(FinishReason::Stop));
    let u = chunks[4].usage.as_ref().unwrap();
    assert_eq!((u.completion_tokens, u.reasoning_tokens()), (48, 40));
}

#[test]
fn stream_and_whole_answer_agree_on_reasoning_details() {
    // Accumulating stream details by index gives the non-stream array.
    let chunks = decode_stream(thoughts_stream().as_bytes(), &[]).unwrap();
    let mut merged: Vec<Value> = Vec::new();
    for d in chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.reasoning_details.as_ref())
        .flatten()
    {
        match merged.iter_mut().find(|m| m["index"] == d["index"]) {
            Some(m) => {
                let t = format!(
                    "{}{}",
                    m["text"].as_str().unwrap(),
                    d["text"].as_str().unwrap()
                );
                m["text"] = t.into();
            }
            None => merged.push(d.clone()),
        }
    }
    let whole = r#"{"candidates": [{"content": {"role": "model", "parts": [
        {"text": "**Planning** I should", "thought": true}, {"text": " compute 2+2.", "thought": true},
        {"text": "2 + 2 = 4."}, {"text": "", "thoughtSignature": "VGhvdWdodFNpZw=="}]}, "finishReason": "STOP"}]}"#;
    let c = Gemini.decode(whole.as_bytes(), &dctx()).unwrap();
    assert_eq!(
        c.choices[0].message.reasoning_details.as_ref(),
        Some(&merged)
    );
}

#[test]
fn stream_blocked_prompt_ends_with_content_filter() {
    let s = frames(&[
        r#"{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}"#,
    ]);
    let chunks = decode_stream(s.as_bytes(), &[]).unwrap();
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        chunks[0].choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    assert_eq!(
        chunks[0].choices[0].native_finish_reason.as_deref(),
        Some("PROHIBITED_CONTENT")
    );
    assert!(chunks[1].is_usage_only());
}

#[test]
fn stream_with_two_candidates_waits_for_both() {
    let s = frames(&[
        r#"{"candidates": [{"content": {"parts": [{"text": "A"}]}, "index": 0}, {"content": {"parts": [{"text": "B"}]}, "index": 1}]}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": "!"}]}, "finishReason": "STOP", "index": 0}]}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": "?"}]}, "finishReason": "STOP", "index": 1}], "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 4, "totalTokenCount": 5}}"#,
    ]);
    let mut sse = SseDecoder::new();
    let mut dec = GeminiStream::new(dctx(), "chatcmpl-x".into(), 1);
    sse.push(s.as_bytes());
    let mut out = Vec::new();
    let mut done_after = Vec::new();
    while let Some(ev) = sse.next_event().unwrap() {
        dec.event(ev, &mut out).unwrap();
        done_after.push(dec.is_done());
    }
    assert_eq!(done_after, [false, false, true]);
    assert_eq!(out[0].choices.len(), 2);
    assert_eq!(out[0].choices[1].delta.role.as_deref(), Some("assistant"));
    assert!(out.last().unwrap().is_usage_only());
}

#[test]
fn truncated_stream_is_an_error() {
    let s = text_stream();
    let cut = s.rfind("data: ").unwrap();
    let e = decode_stream(&s.as_bytes()[..cut], &[]).unwrap_err();
    assert_eq!(e.status(), 502);
    // Nothing at all is truncated too.
    assert!(decode_stream(b"", &[]).is_err());
}

#[test]
fn error_frames_end_the_stream() {
    let s = format!(
        "{}data: {}\r\n\r\n",
        frames(&[r#"{"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "index": 0}]}"#]),
        r#"{"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}"#
    );
    let e = decode_stream(s.as_bytes(), &[]).unwrap_err();
    assert_eq!(e.status(), 429);
    let s = "data: [{\"error\": {\"code\": 500, \"message\": \"An internal error has occurred.\", \"status\": \"INTERNAL\"}}]\n\n";
    assert_eq!(decode_stream(s.as_bytes(), &[]).unwrap_err().status(), 502);
    let e = decode_stream(b"data: {not json\n\n", &[]).unwrap_err();
    assert_eq!(e.status(), 502);
}

// ----- errors -------------------------------------------------------------------------

fn err(status: u16, body: &str) -> Error {
    Gemini.decode_error(
        StatusCode::from_u16(status).unwrap(),
        &HeaderMap::new(),
        body.as_bytes(),
    )
}

#[test]
fn maps_error_bodies() {
    let e = err(
        400,
        r#"{"error": {"code": 400, "message": "* GenerateContentRequest.contents: contents is not specified\n", "status": "INVALID_ARGUMENT"}}"#,
    );
    assert_eq!(e.kind(), ErrorKind::UpstreamInvalidRequest);
    assert!(e.message().contains("contents is not specified"));

    let e = err(
        400,
        r#"{"error": {"code": 400, "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}}"#,
    );
    assert_eq!(e.code(), Some("context_length_exceeded"));

    let e = err(
        400,
        r#"{"error": {"code": 400, "message": "User location is not supported for the API use.", "status": "FAILED_PRECONDITION"}}"#,
    );
    assert_eq!(e.status(), 400);

    // Gemini reports a bad key as INVALID_ARGUMENT: it is our key, not the client's request.
    let e = err(
        400,
        r#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                     "metadata": {"service": "generativelanguage.googleapis.com"}}]}}"#,
    );
    assert_eq!((e.kind(), e.status().as_u16()), (ErrorKind::Upstream, 502));
    assert!(!e.message().contains("API key not valid"));

    for (status, body) in [
        (
            403,
            r#"{"error": {"code": 403, "message": "Method doesn't allow unregistered callers.", "status": "PERMISSION_DENIED"}}"#,
        ),
        (
            401,
            r#"{"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}"#,
        ),
    ] {
        let e = err(status, body);
        assert_eq!(e.status(), 502);
        assert!(
            !e.message().contains("unregistered")
                && !e.message().contains("invalid authentication")
        );
    }

    let e = err(
        404,
        r#"{"error": {"code": 404, "message": "models/gemini-9 is not found for API version v1beta, or is not supported for generateContent.", "status": "NOT_FOUND"}}"#,
    );
    assert_eq!(e.kind(), ErrorKind::UpstreamNotFound);

    let e = err(
        429,
        r#"{"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}}"#,
    );
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(37)));

    let e = err(
        503,
        r#"{"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}"#,
    );
    assert_eq!(e.kind(), ErrorKind::Overloaded);

    let e = err(
        500,
        r#"{"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}}"#,
    );
    assert_eq!((e.kind(), e.status().as_u16()), (ErrorKind::Upstream, 502));

    let e = err(
        504,
        r#"{"error": {"code": 504, "message": "The request timed out.", "status": "DEADLINE_EXCEEDED"}}"#,
    );
    assert_eq!((e.kind(), e.status().as_u16()), (ErrorKind::Timeout, 504));

    // The array form, and bodies that say nothing useful.
    let e = err(
        429,
        r#"[{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}]"#,
    );
    assert_eq!(e.status(), 429);
    assert_eq!(err(502, "<html>Bad Gateway</html>").status(), 502);
    assert_eq!(err(503, "").kind(), ErrorKind::Overloaded);

    let mut h = HeaderMap::new();
    h.insert("retry-after", "3".parse().unwrap());
    let e = Gemini.decode_error(
        StatusCode::TOO_MANY_REQUESTS,
        &h,
        br#"{"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"}]}}"#,
    );
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
}

#[test]
fn codec_is_registered() {
    let c = &*super::super::builtin(ProviderKind::Gemini);
    assert!(format!("{c:?}").contains("Gemini"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    #[test]
    fn any_split_decodes_identically(
        which in 0usize..3,
        mut splits in proptest::collection::vec(0usize..4096, 0..12),
    ) {
        let input = [text_stream(), calls_stream(), thoughts_stream()][which].clone();
        for s in &mut splits {
            *s %= input.len() + 1;
        }
        splits.sort_unstable();
        proptest::prop_assert_eq!(
            decode_stream(input.as_bytes(), &splits).unwrap(),
            decode_stream(input.as_bytes(), &[]).unwrap()
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = decode_stream(&bytes, &[]);
        let _ = Gemini.decode(&bytes, &dctx());
        let _ = Gemini.decode_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), &bytes);
    }

    #[test]
    fn arbitrary_frames_never_panic(data in "\\PC{0,200}") {
        let mut dec = GeminiStream::new(dctx(), "chatcmpl-p".into(), 0);
        let mut out = Vec::new();
        let _ = dec.event(SseEvent { event: None, data }, &mut out);
        let _ = dec.finish(&mut out);
    }
}

// ----- hostile inputs ----------------------------------------------------------------------

/// A request whose `param` (`tools` or `response_format`) carries `schema`.
fn with_schema(param: &str, schema: &Value) -> Value {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    if param == "tools" {
        body["tools"] =
            json!([{"type": "function", "function": {"name": "f", "parameters": schema}}]);
    } else {
        body["response_format"] =
            json!({"type": "json_schema", "json_schema": {"name": "r", "schema": schema}});
    }
    body
}

#[test]
fn ref_inlining_has_a_byte_budget() {
    // One 50 KB definition referenced 3,000 times (a 150 KB request) once made a 150 MB body.
    let props: Map<String, Value> = (0..3000)
        .map(|i| (format!("p{i}"), json!({"$ref": "#/$defs/Big"})))
        .collect();
    let schema = json!({"type": "object", "properties": props,
        "$defs": {"Big": {"type": "string", "description": "x".repeat(50_000)}}});
    for param in ["response_format", "tools"] {
        let e = encode_with(with_schema(param, &schema), "gemini-2.5-flash").unwrap_err();
        assert_eq!(
            (e.kind(), e.param()),
            (ErrorKind::InvalidRequest, Some(param))
        );
    }

    // Fan-out 8, depth 4 and a 1 KB description at the bottom: 2 KB in, once 4 MB out.
    let mut defs = Map::new();
    defs.insert(
        "L4".into(),
        json!({"type": "string", "description": "d".repeat(1024)}),
    );
    for level in (0..4).rev() {
        let props: Map<String, Value> = (0..8)
            .map(|i| {
                (
                    format!("f{i}"),
                    json!({"$ref": format!("#/$defs/L{}", level + 1)}),
                )
            })
            .collect();
        defs.insert(
            format!("L{level}"),
            json!({"type": "object", "properties": props}),
        );
    }
    let schema = json!({"$ref": "#/$defs/L0", "$defs": defs});
    assert!(schema.to_string().len() < 2500);
    for param in ["response_format", "tools"] {
        let e = encode_with(with_schema(param, &schema), "gemini-2.5-flash").unwrap_err();
        assert_eq!(
            (e.kind(), e.param()),
            (ErrorKind::InvalidRequest, Some(param))
        );
        assert!(e.message().contains("$ref"), "{}", e.message());
    }

    // Ordinary reuse is inlined as before: a 1 KB definition used 40 times.
    let props: Map<String, Value> = (0..40)
        .map(|i| (format!("p{i}"), json!({"$ref": "#/$defs/Addr"})))
        .collect();
    let schema = json!({"type": "object", "properties": props, "$defs": {"Addr": {
        "type": "object", "description": "a".repeat(1000),
        "properties": {"street": {"type": "string"}, "zip": {"type": "string"}}}}});
    let r = encode_with(with_schema("response_format", &schema), "gemini-2.5-flash").unwrap();
    let v: Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
    let s = &v["generationConfig"]["responseSchema"];
    assert_eq!(s["properties"].as_object().unwrap().len(), 40);
    assert_eq!(
        s["properties"]["p39"]["properties"]["zip"],
        json!({"type": "string"})
    );
}

#[test]
fn the_budget_is_shared_by_the_schemas_of_a_request() {
    // Each tool alone fits; 200 of them together would be 200 times the amplification.
    let mut defs = Map::new();
    defs.insert(
        "D8".into(),
        json!({"type": "string", "description": "z".repeat(40)}),
    );
    for i in (0..8).rev() {
        defs.insert(
            format!("D{i}"),
            json!({"type": "object", "properties": {
                "a": {"$ref": format!("#/$defs/D{}", i + 1)},
                "b": {"$ref": format!("#/$defs/D{}", i + 1)}}}),
        );
    }
    let schema = json!({"$ref": "#/$defs/D0", "$defs": defs});
    let one = encode_with(with_schema("tools", &schema), "gemini-2.5-flash").unwrap();
    assert!(one.body().to_bytes().len() < 64 * 1024);
    let tools: Vec<Value> = (0..200)
        .map(|i| json!({"type": "function", "function": {"name": format!("f{i}"), "parameters": schema}}))
        .collect();
    let e = encode_with(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools}),
        "gemini-2.5-flash",
    )
    .unwrap_err();
    assert_eq!((e.status().as_u16(), e.param()), (400, Some("tools")));

    // Large schemas without `$ref`s are not amplified and pass whatever their total size:
    // 300 tools of 4 KB each.
    let props: Map<String, Value> = (0..100)
        .map(|i| {
            (
                format!("field_{i}"),
                json!({"type": "string", "description": "y".repeat(20)}),
            )
        })
        .collect();
    let tools: Vec<Value> = (0..300)
        .map(|i| {
            json!({"type": "function", "function": {"name": format!("f{i}"),
            "parameters": {"type": "object", "properties": props}}})
        })
        .collect();
    let r = encode_with(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools}),
        "gemini-2.5-flash",
    )
    .unwrap();
    assert!(r.body().to_bytes().len() > 1 << 20);
}

#[test]
fn deep_schemas_are_refused_without_overflowing_the_stack() {
    // 8 definitions chained, each 55 levels deep: 440 levels through the refs.
    let mut defs = Map::new();
    for d in 0..8 {
        let mut node = if d == 7 {
            json!({"type": "string"})
        } else {
            json!({"$ref": format!("#/$defs/D{}", d + 1)})
        };
        for _ in 0..55 {
            node = json!({"type": "array", "items": node});
        }
        defs.insert(format!("D{d}"), node);
    }
    let schema = json!({"$ref": "#/$defs/D0", "$defs": defs});
    let body = with_schema("response_format", &schema);
    // A test thread's default stack (2 MiB), like a runtime worker's.
    let e = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || encode_with(body, "gemini-2.5-flash").unwrap_err())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(
        (e.kind(), e.param()),
        (ErrorKind::InvalidRequest, Some("response_format"))
    );
    assert!(e.message().contains("deep"), "{}", e.message());

    // 30 levels are fine.
    let mut node = json!({"type": "string"});
    for _ in 0..30 {
        node = json!({"type": "array", "items": node});
    }
    encode_with(
        with_schema(
            "tools",
            &json!({"type": "object", "properties": {"x": node}}),
        ),
        "m",
    )
    .unwrap();
}

#[test]
fn merging_long_required_lists_is_linear() {
    // An `allOf` branch requiring one property 100,000 times and another requiring 10,000
    // distinct ones: merging them once compared every pair (a billion comparisons).
    let names: Vec<String> = (0..10_000).map(|i| format!("b{i}")).collect();
    let props: Map<String, Value> = names
        .iter()
        .map(|n| (n.clone(), json!({"type": "string"})))
        .collect();
    let schema = json!({"allOf": [
        {"type": "object", "properties": {"a0": {"type": "string"}}, "required": vec!["a0"; 100_000]},
        {"type": "object", "properties": props, "required": names}
    ], "required": ["b1"]});
    let started = tokio::time::Instant::now();
    let v = encode(with_schema("response_format", &schema));
    assert!(started.elapsed() < Duration::from_secs(10));
    let req = v["generationConfig"]["responseSchema"]["required"]
        .as_array()
        .unwrap();
    // The union, each name once: the schema's own names, then the branches' others.
    assert_eq!(req.len(), 10_001);
    assert_eq!(
        req[..4],
        [json!("b1"), json!("a0"), json!("b0"), json!("b2")]
    );
}

#[test]
fn own_required_is_added_to_merged_required() {
    let schema = json!({
        "allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}],
        "properties": {"b": {"type": "string"}},
        "required": ["b"]
    });
    let v = encode(with_schema("response_format", &schema));
    assert_eq!(
        v["generationConfig"]["responseSchema"]["required"],
        json!(["b", "a"])
    );
}

#[test]
fn huge_retry_delays_are_capped_not_a_panic() {
    for delay in ["1e30s", "1e308s", "18446744073709551616s", "inf s"] {
        let body = format!(
            r#"{{"error": {{"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
            "details": [{{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "{delay}"}}]}}}}"#
        );
        let e = err(429, &body);
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3600)), "{delay}");
    }
    for delay in ["-1s", "NaNs", "soon"] {
        let body = format!(
            r#"{{"error": {{"code": 429, "status": "RESOURCE_EXHAUSTED",
            "details": [{{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "{delay}"}}]}}}}"#
        );
        assert_eq!(err(429, &body).retry_after(), None, "{delay}");
    }
}

#[test]
fn timeouts_hide_the_upstream_message() {
    let e = err(
        504,
        r#"{"error": {"code": 504, "message": "Deadline exceeded for project 123456789012 key AIzaSyA-SECRETSECRET", "status": "DEADLINE_EXCEEDED"}}"#,
    );
    assert_eq!((e.kind(), e.status().as_u16()), (ErrorKind::Timeout, 504));
    assert!(!e.message().contains("SECRET") && !e.message().contains("123456789012"));
    assert!(e.message().contains("timed out"), "{}", e.message());
    // In a stream frame (no HTTP status) too.
    let frame = r#"{"error": {"code": 504, "message": "project 123456789012", "status": "DEADLINE_EXCEEDED"}}"#;
    let e = decode_stream(frames(&[frame]).as_bytes(), &[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(!e.message().contains("123456789012"), "{}", e.message());
}

#[test]
fn many_signatures_are_matched_in_linear_time() {
    // 20,000 tool calls and 20,000 signatures (3 MB) once took 14 s; 30,000 take twice that.
    let n = 30_000;
    let calls: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("call_{i}"), "type": "function", "function": {"name": "f", "arguments": "{}"}}))
        .collect();
    // In reverse order, so a search from the front finds each late; plus id-less ones.
    let mut details: Vec<Value> = (0..n)
        .rev()
        .map(|i| json!({"type": "reasoning.encrypted", "data": format!("sig{i}"), "id": format!("call_{i}"), "format": "google-gemini-v1"}))
        .collect();
    details.extend((0..n).map(|i| json!({"type": "reasoning.encrypted", "data": format!("nosig{i}"), "id": format!("other_{i}")})));
    let mut messages = vec![
        json!({"role": "user", "content": "go"}),
        json!({"role": "assistant", "content": "ok", "tool_calls": calls, "reasoning_details": details}),
    ];
    messages.extend(
        (0..n)
            .map(|i| json!({"role": "tool", "tool_call_id": format!("call_{i}"), "content": "r"})),
    );
    let req = ChatRequest::from_slice(
        json!({"model": "m", "messages": messages})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let p = provider();
    let ctx = EncodeContext {
        provider: &p,
        upstream_model: "gemini-2.5-flash",
        max_output: None,
    };
    let started = tokio::time::Instant::now();
    let r = Gemini.encode(&req, &ctx).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let v: Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
    let parts = v["contents"][1]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), n + 1);
    // The text part got the first id-less signature (every call had its own).
    assert_eq!(parts[0]["thoughtSignature"], "nosig0");
    assert_eq!(parts[1]["thoughtSignature"], "sig0");
    assert_eq!(parts[n]["thoughtSignature"], format!("sig{}", n - 1));
}

#[test]
fn hostile_model_names_stay_one_path_segment() {
    let prefix = "https://generativelanguage.googleapis.com/v1beta/models/";
    for (model, segment) in [
        ("../../v1/files", "..%2F..%2Fv1%2Ffiles"),
        ("a/b:c", "a%2Fb%3Ac"),
        ("%2e%2e", "%252e%252e"),
        ("gemini 2.5", "gemini%202.5"),
        ("gemini\n2.5", "gemini%0A2.5"),
        ("x?alt=json#y", "x%3Falt%3Djson%23y"),
        ("models/../x", "..%2Fx"),
        ("ünï", "%C3%BCn%C3%AF"),
        ("gemini-2.5_flash.~1", "gemini-2.5_flash.~1"),
    ] {
        let r = encode_with(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            model,
        )
        .unwrap();
        assert_eq!(
            r.uri().to_string(),
            format!("{prefix}{segment}:generateContent"),
            "{model:?}"
        );
        assert_eq!(
            r.uri().path(),
            format!("/v1beta/models/{segment}:generateContent")
        );
        assert_eq!(r.uri().query(), None, "{model:?}");
    }
    // A tuned model keeps its collection; its name is one segment too.
    let r = encode_with(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        "tunedModels/../../v1/files",
    )
    .unwrap();
    assert_eq!(
        r.uri().path(),
        "/v1beta/tunedModels/..%2F..%2Fv1%2Ffiles:generateContent"
    );
    for model in [
        "",
        ".",
        "..",
        "models/",
        "models/..",
        "tunedModels/",
        "tunedModels/.",
    ] {
        let e = encode_with(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            model,
        )
        .unwrap_err();
        assert_eq!(
            (e.kind(), e.param()),
            (ErrorKind::InvalidRequest, Some("model")),
            "{model:?}"
        );
    }
}

#[test]
fn streamed_candidates_are_bounded() {
    // One frame of 100,000 candidates (each once searched for among all the earlier ones).
    let cands: Vec<Value> = (0..100_000)
        .map(|i| json!({"content": {"parts": [{"text": "x"}]}, "index": i}))
        .collect();
    let frame = json!({"candidates": cands}).to_string();
    let started = tokio::time::Instant::now();
    let e = decode_stream(frames(&[&frame]).as_bytes(), &[]).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!((e.kind(), e.status().as_u16()), (ErrorKind::Upstream, 502));
    assert!(
        e.message().contains("bad upstream stream"),
        "{}",
        e.message()
    );
    // Up to the limit is fine.
    let cands: Vec<Value> = (0..super::stream::MAX_CANDIDATES)
        .map(|i| json!({"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP", "index": i}))
        .collect();
    let frame = json!({"candidates": cands}).to_string();
    let out = decode_stream(frames(&[&frame]).as_bytes(), &[]).unwrap();
    assert_eq!(out[0].choices.len(), super::stream::MAX_CANDIDATES);
}
