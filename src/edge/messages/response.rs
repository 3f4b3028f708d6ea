//! The canonical answer rendered as an Anthropic `message`, and the error shape.

use serde_json::{json, Map, Value};

use crate::openai::{ChatCompletion, FinishReason, Usage};
use crate::{Error, ErrorKind};

use super::format::{ENVELOPE, REASONING_FORMAT};

/// A message id: the completion's when it is already Anthropic's, else `msg_` + it.
pub(crate) fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else if id.is_empty() {
        format!("msg_{}", crate::openai::unique_hex().as_str())
    } else {
        format!("msg_{}", id.trim_start_matches("chatcmpl-"))
    }
}

/// `stop_reason` for a finish reason (and the provider's own value when it says more).
pub(crate) fn stop_reason(finish: Option<FinishReason>, native: Option<&str>) -> &'static str {
    match (finish, native) {
        (_, Some("stop_sequence")) => "stop_sequence",
        (_, Some("pause_turn")) => "pause_turn",
        (Some(FinishReason::Length), _) => "max_tokens",
        (Some(FinishReason::ToolCalls), _) => "tool_use",
        (Some(FinishReason::ContentFilter), _) => "refusal",
        _ => "end_turn",
    }
}

/// Usage in Anthropic semantics: `input_tokens` without the cache, cache reads and writes
/// apart, and the gateway's `cost`.
pub(crate) fn usage_json(u: Option<&Usage>) -> Value {
    let Some(u) = u else {
        return json!({"input_tokens": 0, "output_tokens": 0});
    };
    let read = u.cached_tokens();
    let write = u.cache_write_tokens();
    let input = u.prompt_tokens.saturating_sub(read).saturating_sub(write);
    let mut m = Map::new();
    m.insert("input_tokens".into(), Value::from(input));
    m.insert("cache_creation_input_tokens".into(), Value::from(write));
    m.insert("cache_read_input_tokens".into(), Value::from(read));
    m.insert("output_tokens".into(), Value::from(u.completion_tokens));
    if let Some(c) = u.cost {
        m.insert("cost".into(), json!(c));
    }
    Value::Object(m)
}

/// A tool call's `arguments` (a JSON string) as Anthropic's `input` object.
/// The `"cost":…` member added to a provider's own usage object.
pub(crate) fn cost_member(cost: f64) -> Vec<u8> {
    let mut m = b"\"cost\":".to_vec();
    // An `f64` always serializes (a non-finite one as `null`).
    let _ = serde_json::to_writer(&mut m, &cost);
    m
}

/// An Anthropic target's own answer, with the gateway's `id` (`msg_` and the generation id)
/// and `model` id (as the request had it replaced), and `cost` added to its usage.
pub(crate) fn native_message(body: &[u8], id: &str, model: &str, cost: Option<f64>) -> Vec<u8> {
    let body = gateway_ids(body, id, model).unwrap_or_else(|| body.to_vec());
    cost.and_then(|c| crate::openai::add_to_member(&body, b"usage", &cost_member(c)))
        .unwrap_or(body)
}

/// A message object with the gateway's `id` and `model`.
fn gateway_ids(message: &[u8], id: &str, model: &str) -> Option<Vec<u8>> {
    let m = crate::openai::replace_member_str(message, "model", model)?;
    crate::openai::replace_member_str(&m, "id", &message_id(id))
}

/// A `message_start` event's data with the gateway's `id` and `model` in its `message`.
pub(crate) fn native_start(data: &[u8], id: &str, model: &str) -> Option<Vec<u8>> {
    let span = crate::openai::top_level_member(data, b"message")?;
    let message = gateway_ids(data.get(span.clone())?, id, model)?;
    let mut out = Vec::with_capacity(data.len() + model.len());
    out.extend_from_slice(&data[..span.start]);
    out.extend_from_slice(&message);
    out.extend_from_slice(&data[span.end..]);
    Some(out)
}

pub(crate) fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        // Not an object: carried as it came, so nothing is lost.
        Ok(v) => json!({ "value": v }),
        Err(_) => json!({ "arguments": arguments }),
    }
}

/// Thinking blocks from `reasoning_details` (signed text and redacted data); when there are
/// none, the plain `reasoning` text as one unsigned thinking block.
pub(crate) fn thinking_blocks(reasoning: Option<&str>, details: Option<&[Value]>) -> Vec<Value> {
    let mut blocks: Vec<Value> = Vec::new();
    // Details sharing an `index` are one block (streamed fragments).
    let mut last_index: Option<u64> = None;
    for d in details.unwrap_or_default() {
        let index = d.get("index").and_then(Value::as_u64);
        match d.get("type").and_then(Value::as_str) {
            Some("reasoning.text") => {
                let text = d.get("text").and_then(Value::as_str).unwrap_or_default();
                let sig = d.get("signature").and_then(Value::as_str);
                let same = index.is_some() && index == last_index;
                match blocks.last_mut() {
                    Some(b) if same && b["type"] == "thinking" => {
                        if let Some(t) = b["thinking"].as_str() {
                            let joined = format!("{t}{text}");
                            b["thinking"] = Value::String(joined);
                        }
                        if let Some(s) = sig {
                            b["signature"] = Value::from(s);
                        }
                    }
                    _ => blocks.push(json!({
                        "type": "thinking",
                        "thinking": text,
                        "signature": sig.unwrap_or_default(),
                    })),
                }
            }
            Some("reasoning.encrypted") if is_anthropic(d) => {
                if let Some(data) = d.get("data").and_then(Value::as_str) {
                    blocks.push(json!({"type": "redacted_thinking", "data": data}));
                }
            }
            // Another provider's signed reasoning (Gemini's thought signatures): carried in
            // an envelope the request side restores, so multi-turn tool use keeps working.
            Some(_) if !is_anthropic(d) => {
                blocks.push(json!({"type": "redacted_thinking", "data": envelope(d)}));
            }
            _ => {}
        }
        last_index = index;
    }
    let has_text = blocks
        .iter()
        .any(|b| b["thinking"].as_str().is_some_and(|t| !t.is_empty()));
    if !has_text {
        if let Some(r) = reasoning.filter(|r| !r.is_empty()) {
            match blocks.iter_mut().find(|b| b["type"] == "thinking") {
                Some(b) => b["thinking"] = Value::from(r),
                None => blocks.insert(
                    0,
                    json!({"type": "thinking", "thinking": r, "signature": ""}),
                ),
            }
        }
    }
    blocks
}

/// Whether a reasoning detail is Anthropic's own (or says nothing of its format).
fn is_anthropic(d: &Value) -> bool {
    d.get("format")
        .and_then(Value::as_str)
        .is_none_or(|f| f == REASONING_FORMAT)
}

/// Another provider's reasoning detail as `redacted_thinking` data.
pub(crate) fn envelope(d: &Value) -> String {
    format!("{ENVELOPE}{d}")
}

/// A whole completion as an Anthropic message.
pub(crate) fn message_json(c: &ChatCompletion) -> Value {
    let mut content = Vec::new();
    let (finish, native) = match c.choices.first() {
        Some(choice) => {
            let m = &choice.message;
            content.extend(thinking_blocks(
                m.reasoning.as_deref(),
                m.reasoning_details.as_deref(),
            ));
            let text = m
                .content
                .as_deref()
                .or(m.refusal.as_deref())
                .unwrap_or_default();
            if !text.is_empty() {
                content.push(json!({"type": "text", "text": text}));
            }
            for call in m.tool_calls.iter().flatten() {
                content.push(json!({
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.function.name,
                    "input": tool_input(&call.function.arguments),
                }));
            }
            (choice.finish_reason, choice.native_finish_reason.as_deref())
        }
        None => (None, None),
    };
    json!({
        "id": message_id(&c.id),
        "type": "message",
        "role": "assistant",
        "model": c.model,
        "content": content,
        "stop_reason": stop_reason(finish, native),
        "stop_sequence": null,
        "usage": usage_json(c.usage.as_ref()),
    })
}

/// Anthropic's status and error `type` for an error kind (Overloaded is Anthropic's 529).
pub(crate) fn error_status(kind: ErrorKind) -> (u16, &'static str) {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::UpstreamInvalidRequest => {
            (400, "invalid_request_error")
        }
        ErrorKind::Unauthorized => (401, "authentication_error"),
        ErrorKind::BudgetExhausted => (402, "billing_error"),
        ErrorKind::Forbidden => (403, "permission_error"),
        ErrorKind::NotFound | ErrorKind::UpstreamNotFound => (404, "not_found_error"),
        ErrorKind::ClientTimeout => (408, "timeout_error"),
        ErrorKind::PayloadTooLarge => (413, "request_too_large"),
        ErrorKind::RateLimited => (429, "rate_limit_error"),
        ErrorKind::Upstream => (502, "api_error"),
        ErrorKind::Overloaded => (529, "overloaded_error"),
        ErrorKind::Timeout => (504, "timeout_error"),
    }
}

/// `{"type":"error","error":{"type","message"}}`.
pub(crate) fn error_json(e: &Error) -> Value {
    let (_, kind) = error_status(e.kind());
    json!({"type": "error", "error": {"type": kind, "message": e.message()}})
}
