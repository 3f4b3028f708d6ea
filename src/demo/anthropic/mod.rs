//! The Anthropic Messages demo provider (`POST /v1/messages`).
//!
//! Errors have Anthropic's shape: `{"type": "error", "error": {"type", "message"},
//! "request_id"}`, with the `request-id` and `x-should-retry` headers. Unknown fields (OpenAI's
//! `n`, `response_format`, `stream_options`, `tools[].function`, …) are rejected with
//! "Extra inputs are not permitted", as the real API does.
//!
//! Roles: `user` and `assistant` only, the first message from the user. Consecutive turns of
//! the same role are accepted, as the current API does (it merges them). Every `tool_result`
//! must answer a `tool_use` of the message just before it, and every `tool_use` must be
//! answered in the next message. With thinking on, `budget_tokens` is at least 1024 and below
//! `max_tokens`, `temperature` can only be 1, `tool_choice` cannot force a tool, and an
//! assistant turn whose tool calls are being answered must start with a thinking block; every
//! thinking block's `signature` must be one this demo made.

mod errors;
mod reply;
mod request;

use http::{Method, StatusCode};
use serde_json::Value;

pub(super) use self::errors::status_error;
use self::errors::{error, Bad, THINKING_DOCS};
use self::reply::{complete_reply, stream_reply, Usage};
use self::request::{
    final_assistant_thinking, messages, pairing, system, thinking, tool_choice, tools,
};
use super::common::{answer, hash64, Choice, Convo};
use super::wire::{Ctx, Reply};

const PROVIDER: &str = "anthropic";
const VERSIONS: [&str; 2] = ["2023-06-01", "2023-01-01"];

const TOP_LEVEL: [&str; 17] = [
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_k",
    "top_p",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
];

/// The token-counting endpoint: no generation, `{"input_tokens": n}`.
const COUNT_PATH: &str = "/v1/messages/count_tokens";
const COUNT_FIELDS: [&str; 6] = [
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
];

/// Counts the words of every string in `system`, `messages` and `tools` (the demo's tokens).
fn count_tokens(o: &serde_json::Map<String, Value>, bad: Bad) -> Result<Reply, Reply> {
    for k in o.keys() {
        if !COUNT_FIELDS.contains(&k.as_str()) {
            return Err(bad.extra(k));
        }
    }
    if !matches!(o.get("model"), Some(Value::String(_))) {
        return Err(bad.required("model"));
    }
    if !matches!(o.get("messages"), Some(Value::Array(_))) {
        return Err(bad.required("messages"));
    }
    fn walk(v: &Value, n: &mut u64) {
        match v {
            Value::String(s) => *n += super::common::words(s),
            Value::Array(a) => a.iter().for_each(|x| walk(x, n)),
            Value::Object(m) => m.values().for_each(|x| walk(x, n)),
            _ => {}
        }
    }
    let mut n = 0;
    for k in ["system", "messages", "tools"] {
        if let Some(v) = o.get(k) {
            walk(v, &mut n);
        }
    }
    Ok(Reply::json(
        StatusCode::OK,
        serde_json::json!({ "input_tokens": n }),
    ))
}

pub(super) fn handle(ctx: &Ctx<'_>) -> Reply {
    let reply = match run(ctx) {
        Ok(r) | Err(r) => r,
    };
    reply.with_header("request-id", format!("req_demo{}", ctx.seq))
}

fn run(ctx: &Ctx<'_>) -> Result<Reply, Reply> {
    let seq = ctx.seq;
    let bad = Bad(seq);
    if ctx.path != "/v1/messages" && ctx.path != COUNT_PATH {
        return Err(error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "Not Found",
            seq,
        ));
    }
    if ctx.method != Method::POST {
        return Err(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "Method Not Allowed",
            seq,
        ));
    }
    match ctx.header("x-api-key") {
        None => {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "x-api-key header is required",
                seq,
            ))
        }
        Some(k) if k != ctx.config.api_key() => {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid x-api-key",
                seq,
            ))
        }
        Some(_) => {}
    }
    match ctx.header("anthropic-version") {
        None => return Err(bad.msg("anthropic-version: header is required")),
        Some(v) if !VERSIONS.contains(&v) => {
            return Err(bad.msg(format!("anthropic-version: \"{v}\" is not a valid version")))
        }
        Some(_) => {}
    }
    let Some(Value::Object(o)) = ctx.body else {
        return Err(bad
            .msg("There was an error parsing the body of your request: it is not a JSON object."));
    };
    if ctx.path == COUNT_PATH {
        return count_tokens(o, bad);
    }
    for k in o.keys() {
        if !TOP_LEVEL.contains(&k.as_str()) {
            return Err(bad.extra(k));
        }
    }
    let model = match o.get("model") {
        None => return Err(bad.required("model")),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(bad.expected("model", "a valid string")),
    };
    let max_tokens = match o.get("max_tokens") {
        None => return Err(bad.required("max_tokens")),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
            let v = n.as_i64().unwrap_or(i64::MAX);
            if v < 1 {
                return Err(bad.expected("max_tokens", "greater than or equal to 1"));
            }
            v as u64
        }
        Some(_) => return Err(bad.expected("max_tokens", "a valid integer")),
    };
    let stream = match o.get("stream") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad.expected("stream", "a valid boolean")),
    };
    let temperature = match o.get("temperature") {
        None => None,
        Some(Value::Number(n)) => {
            let t = n.as_f64().unwrap_or(0.0);
            if t > 1.0 {
                return Err(bad.expected("temperature", "less than or equal to 1"));
            }
            if t < 0.0 {
                return Err(bad.expected("temperature", "greater than or equal to 0"));
            }
            Some(t)
        }
        Some(_) => return Err(bad.expected("temperature", "a valid number")),
    };
    if let Some(v) = o.get("top_p") {
        match v.as_f64() {
            Some(p) if (0.0..=1.0).contains(&p) => {}
            Some(_) => return Err(bad.expected("top_p", "less than or equal to 1")),
            None => return Err(bad.expected("top_p", "a valid number")),
        }
    }
    if let Some(v) = o.get("top_k") {
        if v.as_u64().is_none() {
            return Err(bad.expected("top_k", "a valid integer"));
        }
    }
    let stop = match o.get("stop_sequences") {
        None => Vec::new(),
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for (i, s) in a.iter().enumerate() {
                match s {
                    Value::String(s) => out.push(s.clone()),
                    _ => return Err(bad.expected(&format!("stop_sequences.{i}"), "a valid string")),
                }
            }
            out
        }
        Some(_) => return Err(bad.expected("stop_sequences", "a valid list")),
    };
    if let Some(m) = o.get("metadata") {
        let Some(m) = m.as_object() else {
            return Err(bad.expected("metadata", "a valid dictionary"));
        };
        if let Some(k) = m.keys().find(|k| *k != "user_id") {
            return Err(bad.extra(&format!("metadata.{k}")));
        }
    }
    let mut cache_items = Vec::new();
    let tools = tools(o.get("tools"), bad, &mut cache_items)?;
    let (choice, parallel) = tool_choice(o.get("tool_choice"), &tools, bad)?;
    let thinking = thinking(o.get("thinking"), max_tokens, bad)?;
    if thinking {
        if temperature.is_some_and(|t| t != 1.0) {
            return Err(bad.msg(format!("`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at {THINKING_DOCS}#feature-compatibility")));
        }
        if matches!(choice, Choice::Required | Choice::Named(_)) {
            return Err(bad.msg("Thinking may not be enabled when tool_choice forces tool use."));
        }
    }
    system(o.get("system"), bad, &mut cache_items)?;
    let msgs = messages(o.get("messages"), bad, &mut cache_items)?;
    pairing(&msgs, bad)?;
    if thinking {
        final_assistant_thinking(&msgs, bad)?;
    }
    let markers = cache_items.iter().filter(|c| c.marker).count();
    if markers > 4 {
        return Err(bad.msg(format!(
            "A maximum of 4 blocks with cache_control may be provided. Found {markers}."
        )));
    }
    if !ctx.model_known(model) {
        return Err(error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!("model: {model}"),
            seq,
        ));
    }

    // Prompt tokens and the prompt cache.
    let total: u64 = cache_items.iter().map(|c| c.words).sum();
    let (mut cache_write, mut cache_read) = (0, 0);
    if let Some(last) = cache_items.iter().rposition(|c| c.marker) {
        let prefix = &cache_items[..=last];
        let mut key_src = String::from(model);
        for c in prefix {
            key_src.push('\u{1f}');
            key_src.push_str(&c.json);
        }
        let prefix_words: u64 = prefix.iter().map(|c| c.words).sum();
        if ctx.cache_hit(hash64(key_src.as_bytes())) {
            cache_read = prefix_words;
        } else {
            cache_write = prefix_words;
        }
    }
    let usage_in = Usage {
        input: total - cache_read - cache_write,
        cache_write,
        cache_read,
    };

    let last = msgs.last();
    let last_user_text = msgs
        .iter()
        .rev()
        .find(|m| !m.assistant && m.tool_results.is_empty());
    let convo = Convo {
        said: last_user_text.map(|m| m.text.clone()).unwrap_or_default(),
        images: last_user_text.map_or(0, |m| m.images),
        tool_result: last
            .filter(|m| !m.assistant && !m.tool_results.is_empty())
            .map(|m| m.result_texts.join("; ")),
        tools,
        choice,
        parallel,
        max_tokens: Some(max_tokens),
        stop,
        thinking,
    };
    let a = answer(PROVIDER, &convo, ctx.text_override);
    Ok(if stream {
        stream_reply(ctx, model, &a, &usage_in)
    } else {
        complete_reply(ctx, model, &a, &usage_in)
    })
}
