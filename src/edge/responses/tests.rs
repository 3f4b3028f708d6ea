//! Unit tests of the Responses conversions.

use serde_json::{json, Value};

use super::request::parse;
use super::response::{decode_reasoning, encode_reasoning, merge_details, response_json};
use super::StreamEncoder;
use crate::edge::ChatCompletionsLayer;
use crate::openai::{ChatCompletion, ChatCompletionChunk};

fn convert(body: Value) -> Result<(Value, super::response::Echo), crate::Error> {
    let p = parse(
        body.to_string().as_bytes(),
        &ChatCompletionsLayer::new().settings.config,
    )?;
    let json = serde_json::from_slice(&p.chat.to_openai_json("m", false, false)).unwrap();
    Ok((json, p.echo))
}

#[test]
fn a_conversation_maps_to_the_canonical_request() {
    let details = json!([{"type": "reasoning.text", "text": "hmm", "signature": "sig",
        "format": "anthropic-claude-v1", "index": 0}]);
    let enc = encode_reasoning(details.as_array().unwrap());
    let (out, _) = convert(json!({
        "model": "x",
        "instructions": "Be brief.",
        "max_output_tokens": 100,
        "reasoning": {"effort": "high", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "r", "schema": {"type": "object"}, "strict": true}},
        "tools": [{"type": "function", "name": "t", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "t"},
        "parallel_tool_calls": false,
        "stream": true,
        "input": [
            {"role": "developer", "content": [{"type": "input_text", "text": "D"}]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "hi"},
                {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hmm"}],
                "encrypted_content": enc},
            {"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "Let me check.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "t", "arguments": "{\"a\":1}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        ],
    }))
    .unwrap();
    let m = &out["messages"];
    assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(m[1], json!({"role": "system", "content": "D"}));
    assert_eq!(m[2]["content"][1]["image_url"]["detail"], "low");
    let turn = &m[3];
    assert_eq!(turn["role"], "assistant");
    assert_eq!(turn["content"], "Let me check.");
    assert_eq!(turn["reasoning"], "hmm");
    assert_eq!(turn["reasoning_details"], details);
    assert_eq!(turn["tool_calls"][0]["id"], "c1");
    assert_eq!(turn["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
    assert_eq!(
        m[4],
        json!({"role": "tool", "tool_call_id": "c1", "content": "ok"})
    );
    assert_eq!(out["max_completion_tokens"], 100);
    assert_eq!(out["reasoning"]["effort"], "high");
    assert_eq!(out["response_format"]["type"], "json_schema");
    assert_eq!(out["response_format"]["json_schema"]["name"], "r");
    assert_eq!(out["response_format"]["json_schema"]["strict"], true);
    assert_eq!(out["tools"][0]["function"]["strict"], true);
    assert_eq!(out["tool_choice"]["function"]["name"], "t");
    assert_eq!(out["parallel_tool_calls"], false);
    assert_eq!(out["stream_options"]["include_usage"], true);
}

#[test]
fn what_cannot_be_carried_is_a_400() {
    let hi = |k: &str, v: Value| {
        let mut b = json!({"model": "x", "input": "hi"});
        b[k] = v;
        b
    };
    for body in [
        hi("store", json!(true)),
        hi("previous_response_id", json!("resp_1")),
        hi("background", json!(true)),
        hi("conversation", json!({"id": "c"})),
        hi("tools", json!([{"type": "computer_use_preview"}])),
        hi(
            "tools",
            json!([{"type": "function", "name": "t", "bogus": 1}]),
        ),
        hi("tool_choice", json!({"type": "allowed_tools"})),
        hi("include", json!(["message.output_text.logprobs"])),
        hi("text", json!({"verbosity": "low"})),
        hi("reasoning", json!({"effort": "extreme"})),
        hi("top_logprobs", json!(3)),
        hi("metadata", json!({"k": 1})),
        hi("temperature", json!(3)),
        hi("unknown", json!(1)),
        json!({"model": "x", "input": [{"type": "web_search_call", "id": "w"}]}),
        json!({"model": "x", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
        json!({"model": "x", "input": [{"type": "reasoning", "summary": [], "encrypted_content": "switchboard.v1:{"}]}),
        json!({"model": "x", "input": [{"role": "tool", "content": "x"}]}),
        json!({"model": "x", "input": 5}),
        json!({"model": "", "input": "hi"}),
        json!({"model": "x", "instructions": "only"}),
    ] {
        let e = convert(body.clone()).unwrap_err();
        assert_eq!(e.status(), 400, "{body}");
    }
    // Refusals name the parameter.
    let e = convert(hi("store", json!(true))).unwrap_err();
    assert_eq!(e.param(), Some("store"));
    assert_eq!(e.code(), Some("unsupported_parameter"));
}

#[test]
fn foreign_encrypted_reasoning_travels_as_an_opaque_detail() {
    let (out, _) = convert(json!({"model": "x", "input": [
        {"role": "user", "content": "a"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA-opaque"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]}))
    .unwrap();
    let d = &out["messages"][1]["reasoning_details"][0];
    assert_eq!(d["type"], "reasoning.encrypted");
    assert_eq!(d["data"], "gAAAA-opaque");
    assert!(decode_reasoning("gAAAA").is_none());
    assert_eq!(decode_reasoning("switchboard.v1:[1]"), Some(Err(())));
}

#[test]
fn streamed_detail_fragments_merge_by_index() {
    let merged = merge_details(&[
        json!({"type": "reasoning.text", "text": "a", "index": 0, "format": "f"}),
        json!({"type": "reasoning.text", "text": "b", "index": 0}),
        json!({"type": "reasoning.text", "signature": "s", "index": 0}),
        json!({"type": "reasoning.encrypted", "data": "d", "index": 1}),
    ]);
    assert_eq!(
        merged,
        vec![
            json!({"type": "reasoning.text", "text": "ab", "index": 0, "format": "f", "signature": "s"}),
            json!({"type": "reasoning.encrypted", "data": "d", "index": 1}),
        ]
    );
}

fn completion(v: Value) -> ChatCompletion {
    serde_json::from_value(v).unwrap()
}

#[test]
fn answers_render_as_a_response_object() {
    let (_, echo) = convert(
        json!({"model": "fast", "input": "hi", "metadata": {"a": "b"},
        "max_output_tokens": 5}),
    )
    .unwrap();
    let c = completion(json!({
        "id": "chatcmpl-1", "created": 7, "model": "p/m",
        "choices": [{"index": 0, "finish_reason": "length", "message": {
            "role": "assistant", "content": "x", "reasoning": "r",
            "reasoning_details": [{"type": "reasoning.encrypted", "data": "s", "format": "google-gemini-v1", "index": 0}],
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "t", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "cost": 0.5,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 1}},
    }));
    let r = response_json(&c, &echo);
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(r["object"], "response");
    assert_eq!(r["created_at"], 7);
    assert_eq!(r["model"], "p/m");
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(r["metadata"], json!({"a": "b"}));
    assert_eq!(r["max_output_tokens"], 5);
    assert_eq!(r["store"], false);
    let o = r["output"].as_array().unwrap();
    assert_eq!(o[0]["type"], "reasoning");
    assert_eq!(
        o[0]["summary"][0],
        json!({"type": "summary_text", "text": "r"})
    );
    let enc = o[0]["encrypted_content"].as_str().unwrap();
    assert_eq!(
        decode_reasoning(enc).unwrap().unwrap()[0]["format"],
        "google-gemini-v1"
    );
    assert_eq!(o[1]["type"], "message");
    assert_eq!(o[1]["status"], "incomplete");
    assert_eq!(o[1]["content"][0]["text"], "x");
    assert_eq!(o[2]["type"], "function_call");
    assert_eq!(o[2]["call_id"], "c1");
    assert_eq!(
        r["usage"],
        json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
            "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 1},
            "total_tokens": 12, "cost": 0.5})
    );
    // Unpriced: no `cost`.
    let mut c = c;
    if let Some(u) = c.usage.as_mut() {
        u.cost = None;
    }
    assert!(response_json(&c, &echo)["usage"].get("cost").is_none());
}

#[test]
fn a_failure_before_any_output_is_still_a_well_formed_stream() {
    let (_, echo) = convert(json!({"model": "fast", "input": "hi", "stream": true})).unwrap();
    let mut enc = StreamEncoder::new(echo);
    let mut out = Vec::new();
    enc.fail(
        &crate::Error::new(crate::ErrorKind::Overloaded, "busy"),
        &mut out,
    );
    assert!(enc.is_done());
    let text = String::from_utf8(out).unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "error",
            "response.failed"
        ]
    );
    assert!(text.contains("\"sequence_number\":3"));
    assert!(text.contains("\"model\":\"fast\""));
    // Nothing after the end.
    let mut more = Vec::new();
    enc.chunk(&ChatCompletionChunk::new("c", "m", 1), &mut more);
    enc.finish(&mut more);
    assert!(more.is_empty());
}
