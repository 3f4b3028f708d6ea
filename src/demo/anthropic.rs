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

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::common::{
    answer, chunks, fragments, hash64, sign, verify, words, Answer, Choice, Convo, Finish, ToolDef,
};
use super::server::{Ctx, Reply, StreamPlan};

const PROVIDER: &str = "anthropic";
const SIGN_DOMAIN: &str = "anthropic-thinking";
const VERSIONS: [&str; 2] = ["2023-06-01", "2023-01-01"];
const THINKING_DOCS: &str = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking";

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

const BLOCK_TAGS: &str = "'text', 'image', 'document', 'search_result', 'thinking', 'redacted_thinking', 'tool_use', 'tool_result', 'server_tool_use', 'web_search_tool_result'";

fn error_body(kind: &str, message: impl Into<String>, seq: u64) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message.into()},
           "request_id": format!("req_demo{seq}")})
}

/// An error reply; `seq` makes the request id.
fn error(status: StatusCode, kind: &str, message: impl Into<String>, seq: u64) -> Reply {
    let retry = matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error();
    Reply::json(status, error_body(kind, message, seq))
        .with_header("x-should-retry", retry.to_string())
}

/// Builds `invalid_request_error` replies for one request.
#[derive(Clone, Copy)]
struct Bad(u64);

impl Bad {
    fn msg(self, message: impl Into<String>) -> Reply {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message,
            self.0,
        )
    }
    fn required(self, at: &str) -> Reply {
        self.msg(format!("{at}: Field required"))
    }
    fn extra(self, at: &str) -> Reply {
        self.msg(format!("{at}: Extra inputs are not permitted"))
    }
    fn expected(self, at: &str, what: &str) -> Reply {
        self.msg(format!("{at}: Input should be {what}"))
    }
}

/// The answer for a status injected by [`Fault::Status`](super::Fault::Status).
pub(super) fn status_error(status: StatusCode, retry_after: Option<u64>, seq: u64) -> Reply {
    let (kind, message) = match status.as_u16() {
        400 => ("invalid_request_error", "Invalid request"),
        401 => ("authentication_error", "invalid x-api-key"),
        403 => ("permission_error", "Your API key does not have permission to use the specified resource."),
        404 => ("not_found_error", "Not found"),
        413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429 => ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit (https://docs.claude.com/en/api/rate-limits); see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase."),
        500 => ("api_error", "Internal server error"),
        529 => ("overloaded_error", "Overloaded"),
        s if s >= 500 => ("api_error", "Internal server error"),
        _ => ("invalid_request_error", "Invalid request"),
    };
    let r = error(status, kind, message, seq).with_header("request-id", format!("req_demo{seq}"));
    match retry_after {
        Some(s) => r.with_header("retry-after", s.to_string()),
        None => r,
    }
}

pub(super) fn handle(ctx: &Ctx<'_>) -> Reply {
    let reply = match run(ctx) {
        Ok(r) | Err(r) => r,
    };
    reply.with_header("request-id", format!("req_demo{}", ctx.seq))
}

/// One message, as far as pairing and thinking checks need it.
struct Msg {
    assistant: bool,
    tool_uses: Vec<String>,
    /// `(block index, tool_use_id)`.
    tool_results: Vec<(usize, String)>,
    result_texts: Vec<String>,
    first_block: Option<String>,
    text: String,
    images: usize,
}

/// One piece of the prompt for the cache: its JSON, its words, whether it has a marker.
struct CacheItem {
    json: String,
    words: u64,
    marker: bool,
}

fn run(ctx: &Ctx<'_>) -> Result<Reply, Reply> {
    let seq = ctx.seq;
    let bad = Bad(seq);
    if ctx.path != "/v1/messages" {
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
        Some(k) if k != ctx.shared.config.api_key() => {
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
        if ctx.shared.cache_hit(hash64(key_src.as_bytes())) {
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

fn cache_control(v: Option<&Value>, at: &str, bad: Bad) -> Result<bool, Reply> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Object(c)) => {
            match c.get("type").and_then(Value::as_str) {
                Some("ephemeral") => {}
                None => return Err(bad.required(&format!("{at}.cache_control.type"))),
                Some(_) => {
                    return Err(bad.expected(&format!("{at}.cache_control.type"), "'ephemeral'"))
                }
            }
            if let Some(ttl) = c.get("ttl") {
                if !matches!(ttl.as_str(), Some("5m" | "1h")) {
                    return Err(bad.expected(&format!("{at}.cache_control.ttl"), "'5m' or '1h'"));
                }
            }
            Ok(true)
        }
        Some(_) => Err(bad.expected(&format!("{at}.cache_control"), "a valid dictionary")),
    }
}

fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

const SERVER_TOOLS: [&str; 8] = [
    "bash_20250124",
    "code_execution_20250522",
    "computer_20250124",
    "text_editor_20250124",
    "text_editor_20250429",
    "text_editor_20250728",
    "web_fetch_20250910",
    "web_search_20250305",
];

fn tools(v: Option<&Value>, bad: Bad, cache: &mut Vec<CacheItem>) -> Result<Vec<ToolDef>, Reply> {
    let list = match v {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad.expected("tools", "a valid list")),
    };
    let mut out = Vec::new();
    for (j, t) in list.iter().enumerate() {
        let at = format!("tools.{j}");
        let Some(t) = t.as_object() else {
            return Err(bad.expected(&at, "a valid dictionary"));
        };
        let ty = match t.get("type") {
            None | Some(Value::Null) => "custom",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(bad.expected(&format!("{at}.type"), "a valid string")),
        };
        if ty != "custom" {
            if SERVER_TOOLS.contains(&ty) {
                let marker = cache_control(t.get("cache_control"), &at, bad)?;
                cache.push(CacheItem {
                    json: Value::Object(t.clone()).to_string(),
                    words: 0,
                    marker,
                });
                continue;
            }
            return Err(bad.msg(format!(
                "{at}: Input tag '{ty}' found using 'type' does not match any of the expected tags: 'custom', {}",
                SERVER_TOOLS.map(|s| format!("'{s}'")).join(", ")
            )));
        }
        let at = format!("{at}.custom");
        for k in t.keys() {
            if ![
                "type",
                "name",
                "description",
                "input_schema",
                "cache_control",
            ]
            .contains(&k.as_str())
            {
                return Err(bad.extra(&format!("{at}.{k}")));
            }
        }
        let name = match t.get("name") {
            None => return Err(bad.required(&format!("{at}.name"))),
            Some(Value::String(s)) => s,
            Some(_) => return Err(bad.expected(&format!("{at}.name"), "a valid string")),
        };
        if !valid_tool_name(name) {
            return Err(bad.msg(format!(
                "{at}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            )));
        }
        let schema = match t.get("input_schema") {
            None => return Err(bad.required(&format!("{at}.input_schema"))),
            Some(Value::Object(s)) => s,
            Some(_) => {
                return Err(bad.expected(&format!("{at}.input_schema"), "a valid dictionary"))
            }
        };
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(bad.expected(&format!("{at}.input_schema.type"), "'object'"));
        }
        if let Some(d) = t.get("description") {
            if !d.is_string() {
                return Err(bad.expected(&format!("{at}.description"), "a valid string"));
            }
        }
        let marker = cache_control(t.get("cache_control"), &at, bad)?;
        cache.push(CacheItem {
            json: Value::Object(t.clone()).to_string(),
            words: 0,
            marker,
        });
        out.push(ToolDef {
            name: name.clone(),
            schema: Some(Value::Object(schema.clone())),
        });
    }
    Ok(out)
}

fn tool_choice(v: Option<&Value>, tools: &[ToolDef], bad: Bad) -> Result<(Choice, bool), Reply> {
    let Some(v) = v else {
        return Ok((Choice::Auto, true));
    };
    let Some(o) = v.as_object() else {
        return Err(bad.expected(
            "tool_choice",
            "a valid dictionary or object to extract fields from",
        ));
    };
    let parallel = match o.get("disable_parallel_tool_use") {
        None => true,
        Some(Value::Bool(b)) => !b,
        Some(_) => {
            return Err(bad.expected("tool_choice.disable_parallel_tool_use", "a valid boolean"))
        }
    };
    let ty = match o.get("type") {
        None => {
            return Err(bad.msg("tool_choice: Unable to extract tag using discriminator 'type'"))
        }
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(bad.expected("tool_choice.type", "a valid string")),
    };
    let allowed: &[&str] = match ty {
        "auto" | "any" => &["type", "disable_parallel_tool_use"],
        "tool" => &["type", "name", "disable_parallel_tool_use"],
        "none" => &["type"],
        other => {
            return Err(bad.msg(format!(
                "tool_choice: Input tag '{other}' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
            )))
        }
    };
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad.extra(&format!("tool_choice.{ty}.{k}")));
    }
    if tools.is_empty() && ty != "none" {
        return Err(bad.msg("tool_choice may only be specified while providing tools."));
    }
    let choice = match ty {
        "auto" => Choice::Auto,
        "any" => Choice::Required,
        "none" => Choice::None,
        _ => {
            let name = match o.get("name") {
                None => return Err(bad.required("tool_choice.tool.name")),
                Some(Value::String(n)) => n,
                Some(_) => return Err(bad.expected("tool_choice.tool.name", "a valid string")),
            };
            if !tools.iter().any(|t| &t.name == name) {
                return Err(bad.msg(format!(
                    "tool_choice.tool.name: Tool '{name}' not found in provided tools"
                )));
            }
            Choice::Named(name.clone())
        }
    };
    Ok((choice, parallel))
}

fn thinking(v: Option<&Value>, max_tokens: u64, bad: Bad) -> Result<bool, Reply> {
    let Some(v) = v else {
        return Ok(false);
    };
    let Some(o) = v.as_object() else {
        return Err(bad.expected(
            "thinking",
            "a valid dictionary or object to extract fields from",
        ));
    };
    match o.get("type").and_then(Value::as_str) {
        None => Err(bad.msg("thinking: Unable to extract tag using discriminator 'type'")),
        Some("disabled") => Ok(false),
        Some("adaptive") => Ok(true),
        Some("enabled") => {
            let budget = match o.get("budget_tokens") {
                None => return Err(bad.required("thinking.enabled.budget_tokens")),
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.as_i64().unwrap_or(i64::MAX),
                Some(_) => {
                    return Err(bad.expected("thinking.enabled.budget_tokens", "a valid integer"))
                }
            };
            if budget < 1024 {
                return Err(bad.expected(
                    "thinking.enabled.budget_tokens",
                    "greater than or equal to 1024",
                ));
            }
            if budget as u64 >= max_tokens {
                return Err(bad.msg(format!("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at {THINKING_DOCS}#max-tokens-and-context-window-size")));
            }
            Ok(true)
        }
        Some(other) => Err(bad.msg(format!(
            "thinking: Input tag '{other}' found using 'type' does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'"
        ))),
    }
}

fn system(v: Option<&Value>, bad: Bad, cache: &mut Vec<CacheItem>) -> Result<(), Reply> {
    match v {
        None => Ok(()),
        Some(Value::String(s)) => {
            cache.push(CacheItem {
                json: Value::from(s.as_str()).to_string(),
                words: words(s),
                marker: false,
            });
            Ok(())
        }
        Some(Value::Array(blocks)) => {
            for (j, b) in blocks.iter().enumerate() {
                let at = format!("system.{j}");
                let Some(b) = b.as_object() else {
                    return Err(bad.expected(&at, "a valid dictionary"));
                };
                if b.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(bad.expected(&format!("{at}.type"), "'text'"));
                }
                if let Some(k) = b
                    .keys()
                    .find(|k| !["type", "text", "cache_control", "citations"].contains(&k.as_str()))
                {
                    return Err(bad.extra(&format!("{at}.{k}")));
                }
                let text = match b.get("text") {
                    None => return Err(bad.required(&format!("{at}.text"))),
                    Some(Value::String(t)) => t,
                    Some(_) => return Err(bad.expected(&format!("{at}.text"), "a valid string")),
                };
                if text.is_empty() {
                    return Err(bad.msg("system: text content blocks must be non-empty"));
                }
                let marker = cache_control(b.get("cache_control"), &at, bad)?;
                cache.push(CacheItem {
                    json: Value::Object(b.clone()).to_string(),
                    words: words(text),
                    marker,
                });
            }
            Ok(())
        }
        Some(_) => Err(bad.expected("system", "a valid string")),
    }
}

fn text_of_result(content: Option<&Value>, at: &str, bad: Bad) -> Result<(String, usize), Reply> {
    match content {
        None | Some(Value::Null) => Ok((String::new(), 0)),
        Some(Value::String(s)) => Ok((s.clone(), 0)),
        Some(Value::Array(a)) => {
            let mut text = String::new();
            let mut images = 0;
            for (k, b) in a.iter().enumerate() {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let Some(t) = b.get("text").and_then(Value::as_str) else {
                            return Err(bad.required(&format!("{at}.content.{k}.text.text")));
                        };
                        if !text.is_empty() {
                            text.push(' ');
                        }
                        text.push_str(t);
                    }
                    Some("image") => images += 1,
                    Some("document" | "search_result") => {}
                    _ => {
                        return Err(bad.msg(format!(
                            "{at}.content.{k}: Input tag '{}' found using 'type' does not match any of the expected tags: 'text', 'image', 'search_result', 'document'",
                            b.get("type").and_then(Value::as_str).unwrap_or("")
                        )))
                    }
                }
            }
            Ok((text, images))
        }
        Some(_) => Err(bad.expected(&format!("{at}.content"), "a valid list")),
    }
}

fn check_keys(b: &Map<String, Value>, allowed: &[&str], at: &str, bad: Bad) -> Result<(), Reply> {
    match b.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad.extra(&format!("{at}.{k}"))),
        None => Ok(()),
    }
}

fn messages(v: Option<&Value>, bad: Bad, cache: &mut Vec<CacheItem>) -> Result<Vec<Msg>, Reply> {
    let list = match v {
        None => return Err(bad.required("messages")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad.expected("messages", "a valid list")),
    };
    if list.is_empty() {
        return Err(bad.msg("messages: at least one message is required"));
    }
    let non_empty = |i: usize| {
        bad.msg(format!("messages.{i}: all messages must have non-empty content except for the optional final assistant message"))
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages.{i}");
        let Some(m) = m.as_object() else {
            return Err(bad.expected(&at, "a valid dictionary"));
        };
        let assistant = match m.get("role") {
            None => return Err(bad.required(&format!("{at}.role"))),
            Some(Value::String(r)) if r == "user" => false,
            Some(Value::String(r)) if r == "assistant" => true,
            Some(Value::String(r)) if r == "system" => {
                return Err(bad.msg("messages: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role."))
            }
            Some(_) => return Err(bad.expected(&format!("{at}.role"), "'user' or 'assistant'")),
        };
        if i == 0 && assistant {
            return Err(bad.msg("messages: first message must use the \"user\" role"));
        }
        check_keys(m, &["role", "content"], &at, bad)?;
        let final_assistant = assistant && i + 1 == list.len();
        let mut msg = Msg {
            assistant,
            tool_uses: Vec::new(),
            tool_results: Vec::new(),
            result_texts: Vec::new(),
            first_block: None,
            text: String::new(),
            images: 0,
        };
        let role = if assistant { "assistant" } else { "user" };
        match m.get("content") {
            None => return Err(bad.required(&format!("{at}.content"))),
            Some(Value::String(s)) => {
                if s.trim().is_empty() && !final_assistant {
                    return Err(non_empty(i));
                }
                msg.text = s.clone();
                msg.first_block = Some("text".into());
                cache.push(CacheItem {
                    json: json!({"role": role, "content": s}).to_string(),
                    words: words(s),
                    marker: false,
                });
            }
            Some(Value::Array(blocks)) => {
                if blocks.is_empty() && !final_assistant {
                    return Err(non_empty(i));
                }
                for (j, b) in blocks.iter().enumerate() {
                    let bat = format!("{at}.content.{j}");
                    let Some(b) = b.as_object() else {
                        return Err(bad.expected(&bat, "a valid dictionary"));
                    };
                    let ty = match b.get("type") {
                        Some(Value::String(t)) => t.as_str(),
                        _ => {
                            return Err(bad.msg(format!(
                                "{bat}: Unable to extract tag using discriminator 'type'"
                            )))
                        }
                    };
                    if j == 0 {
                        msg.first_block = Some(ty.to_owned());
                    }
                    let mut block_words = 0;
                    match ty {
                        "text" => {
                            check_keys(b, &["type", "text", "cache_control", "citations"], &format!("{bat}.text"), bad)?;
                            let text = match b.get("text") {
                                None => return Err(bad.required(&format!("{bat}.text.text"))),
                                Some(Value::String(t)) => t,
                                Some(_) => {
                                    return Err(bad.expected(&format!("{bat}.text.text"), "a valid string"))
                                }
                            };
                            if text.is_empty() {
                                return Err(bad.msg("messages: text content blocks must be non-empty"));
                            }
                            if !msg.text.is_empty() {
                                msg.text.push(' ');
                            }
                            msg.text.push_str(text);
                            block_words = words(text);
                        }
                        "image" => {
                            check_keys(b, &["type", "source", "cache_control"], &format!("{bat}.image"), bad)?;
                            image_source(b.get("source"), &format!("{bat}.image.source"), bad)?;
                            msg.images += 1;
                        }
                        "document" | "search_result" | "server_tool_use" | "web_search_tool_result" => {}
                        "tool_use" if !assistant => {
                            return Err(bad.msg(format!(
                                "{bat}: `tool_use` blocks can only be in `assistant` messages"
                            )))
                        }
                        "tool_use" => {
                            check_keys(b, &["type", "id", "name", "input", "cache_control"], &format!("{bat}.tool_use"), bad)?;
                            let Some(id) = b.get("id").and_then(Value::as_str) else {
                                return Err(bad.required(&format!("{bat}.tool_use.id")));
                            };
                            if b.get("name").and_then(Value::as_str).is_none() {
                                return Err(bad.required(&format!("{bat}.tool_use.name")));
                            }
                            match b.get("input") {
                                None => return Err(bad.required(&format!("{bat}.tool_use.input"))),
                                Some(Value::Object(_)) => {}
                                Some(_) => {
                                    return Err(bad.expected(
                                        &format!("{bat}.tool_use.input"),
                                        "a valid dictionary",
                                    ))
                                }
                            }
                            msg.tool_uses.push(id.to_owned());
                        }
                        "tool_result" if assistant => {
                            return Err(bad.msg(format!(
                                "{bat}: `tool_result` blocks can only be in `user` messages"
                            )))
                        }
                        "tool_result" => {
                            check_keys(b, &["type", "tool_use_id", "content", "is_error", "cache_control"], &format!("{bat}.tool_result"), bad)?;
                            let Some(id) = b.get("tool_use_id").and_then(Value::as_str) else {
                                return Err(bad.required(&format!("{bat}.tool_result.tool_use_id")));
                            };
                            let (text, _) = text_of_result(b.get("content"), &format!("{bat}.tool_result"), bad)?;
                            block_words = words(&text);
                            msg.tool_results.push((j, id.to_owned()));
                            msg.result_texts.push(text);
                        }
                        "thinking" | "redacted_thinking" if !assistant => {
                            return Err(bad.msg(format!(
                                "{bat}: `{ty}` blocks can only be in `assistant` messages"
                            )))
                        }
                        "thinking" => {
                            check_keys(b, &["type", "thinking", "signature"], &format!("{bat}.thinking"), bad)?;
                            let Some(text) = b.get("thinking").and_then(Value::as_str) else {
                                return Err(bad.required(&format!("{bat}.thinking.thinking")));
                            };
                            let Some(sig) = b.get("signature").and_then(Value::as_str) else {
                                return Err(bad.required(&format!("{bat}.thinking.signature")));
                            };
                            if !verify(SIGN_DOMAIN, text, sig) {
                                return Err(bad.msg(format!("{bat}: Invalid `signature` in `thinking` block")));
                            }
                        }
                        "redacted_thinking" => {
                            if b.get("data").and_then(Value::as_str).is_none() {
                                return Err(bad.required(&format!("{bat}.redacted_thinking.data")));
                            }
                        }
                        other => {
                            return Err(bad.msg(format!(
                                "{bat}: Input tag '{other}' found using 'type' does not match any of the expected tags: {BLOCK_TAGS}"
                            )))
                        }
                    }
                    let marker = cache_control(b.get("cache_control"), &bat, bad)?;
                    cache.push(CacheItem {
                        json: json!({"role": role, "block": b}).to_string(),
                        words: block_words,
                        marker,
                    });
                }
            }
            Some(_) => return Err(bad.expected(&format!("{at}.content"), "a valid list")),
        }
        out.push(msg);
    }
    Ok(out)
}

fn image_source(v: Option<&Value>, at: &str, bad: Bad) -> Result<(), Reply> {
    let Some(s) = v.and_then(Value::as_object) else {
        return Err(bad.required(at));
    };
    match s.get("type").and_then(Value::as_str) {
        Some("base64") => {
            match s.get("media_type").and_then(Value::as_str) {
                Some("image/jpeg" | "image/png" | "image/gif" | "image/webp") => {}
                Some(_) => {
                    return Err(bad.expected(
                        &format!("{at}.base64.media_type"),
                        "'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
                    ))
                }
                None => return Err(bad.required(&format!("{at}.base64.media_type"))),
            }
            if s.get("data").and_then(Value::as_str).is_none() {
                return Err(bad.required(&format!("{at}.base64.data")));
            }
        }
        Some("url") => {
            if s.get("url").and_then(Value::as_str).is_none() {
                return Err(bad.required(&format!("{at}.url.url")));
            }
        }
        Some("file") => {
            if s.get("file_id").and_then(Value::as_str).is_none() {
                return Err(bad.required(&format!("{at}.file.file_id")));
            }
        }
        _ => {
            return Err(bad.msg(format!(
                "{at}: Input tag '{}' found using 'type' does not match any of the expected tags: 'base64', 'url', 'file'",
                s.get("type").and_then(Value::as_str).unwrap_or("")
            )))
        }
    }
    Ok(())
}

/// Every `tool_result` answers a `tool_use` of the previous message, and every `tool_use` is
/// answered in the next one.
fn pairing(msgs: &[Msg], bad: Bad) -> Result<(), Reply> {
    for (i, m) in msgs.iter().enumerate() {
        if m.tool_results.is_empty() {
            continue;
        }
        let prev: &[String] = match i.checked_sub(1).map(|p| &msgs[p]) {
            Some(p) if p.assistant => &p.tool_uses,
            _ => &[],
        };
        if let Some((j, id)) = m.tool_results.iter().find(|(_, id)| !prev.contains(id)) {
            return Err(bad.msg(format!("messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.")));
        }
    }
    for (i, m) in msgs.iter().enumerate() {
        let Some(next) = msgs.get(i + 1).filter(|_| m.assistant) else {
            continue;
        };
        let missing: Vec<&str> = m
            .tool_uses
            .iter()
            .filter(|id| !next.tool_results.iter().any(|(_, r)| r == *id))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(bad.msg(format!("messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.", missing.join(", "))));
        }
    }
    Ok(())
}

/// With thinking on, an assistant turn that used tools and is being answered with tool
/// results must start with a thinking block.
fn final_assistant_thinking(msgs: &[Msg], bad: Bad) -> Result<(), Reply> {
    let Some(a) = msgs.iter().rposition(|m| m.assistant) else {
        return Ok(());
    };
    let answered = a + 2 == msgs.len() && !msgs[a + 1].tool_results.is_empty();
    if !msgs[a].tool_uses.is_empty() && answered {
        let first = msgs[a].first_block.as_deref().unwrap_or("text");
        if first != "thinking" && first != "redacted_thinking" {
            return Err(bad.msg(format!("messages.{a}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at {THINKING_DOCS}")));
        }
    }
    Ok(())
}

/// Input-side usage.
struct Usage {
    input: u64,
    cache_write: u64,
    cache_read: u64,
}

fn usage(u: &Usage, output: u64) -> Value {
    json!({
        "input_tokens": u.input,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output,
        "service_tier": "standard",
    })
}

fn stop_reason(f: &Finish) -> (&'static str, Value) {
    match f {
        Finish::Stop => ("end_turn", Value::Null),
        Finish::Length => ("max_tokens", Value::Null),
        Finish::ToolCalls => ("tool_use", Value::Null),
        Finish::StopSequence(s) => ("stop_sequence", Value::from(s.as_str())),
    }
}

fn tool_id(ctx: &Ctx<'_>, k: usize) -> String {
    format!("toolu_demo{}_{k}", ctx.seq)
}

fn complete_reply(ctx: &Ctx<'_>, model: &str, a: &Answer, u: &Usage) -> Reply {
    let mut content = Vec::new();
    if let Some(t) = &a.thinking {
        content.push(json!({"type": "thinking", "thinking": t, "signature": sign(SIGN_DOMAIN, t)}));
    }
    if !a.text.is_empty() {
        content.push(json!({"type": "text", "text": a.text}));
    }
    for (k, c) in a.calls.iter().enumerate() {
        content.push(
            json!({"type": "tool_use", "id": tool_id(ctx, k), "name": c.name, "input": c.args}),
        );
    }
    let (reason, seq) = stop_reason(&a.finish);
    Reply::json(
        StatusCode::OK,
        json!({
            "id": format!("msg_demo{}", ctx.seq),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": seq,
            "usage": usage(u, a.output_tokens),
        }),
    )
}

fn event(v: &Value) -> Bytes {
    let ty = v.get("type").and_then(Value::as_str).unwrap_or("message");
    Bytes::from(format!("event: {ty}\ndata: {v}\n\n"))
}

fn stream_reply(ctx: &Ctx<'_>, model: &str, a: &Answer, u: &Usage) -> Reply {
    let per = ctx.words_per_chunk();
    let mut frames = vec![event(&json!({
        "type": "message_start",
        "message": {
            "id": format!("msg_demo{}", ctx.seq), "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage(u, 1),
        }
    }))];
    let mut index = 0;
    let mut pinged = false;
    let mut start = |frames: &mut Vec<Bytes>, block: Value, index: usize| {
        frames.push(event(
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        if !pinged {
            frames.push(event(&json!({"type": "ping"})));
            pinged = true;
        }
    };
    let delta = |index: usize, d: Value| {
        event(&json!({"type": "content_block_delta", "index": index, "delta": d}))
    };
    let stop = |index: usize| event(&json!({"type": "content_block_stop", "index": index}));
    if let Some(t) = &a.thinking {
        start(
            &mut frames,
            json!({"type": "thinking", "thinking": ""}),
            index,
        );
        for piece in chunks(t, per) {
            frames.push(delta(
                index,
                json!({"type": "thinking_delta", "thinking": piece}),
            ));
        }
        frames.push(delta(
            index,
            json!({"type": "signature_delta", "signature": sign(SIGN_DOMAIN, t)}),
        ));
        frames.push(stop(index));
        index += 1;
    }
    if !a.text.is_empty() {
        start(&mut frames, json!({"type": "text", "text": ""}), index);
        for piece in chunks(&a.text, per) {
            frames.push(delta(index, json!({"type": "text_delta", "text": piece})));
        }
        frames.push(stop(index));
        index += 1;
    }
    for (k, c) in a.calls.iter().enumerate() {
        start(
            &mut frames,
            json!({"type": "tool_use", "id": tool_id(ctx, k), "name": c.name, "input": {}}),
            index,
        );
        frames.push(delta(
            index,
            json!({"type": "input_json_delta", "partial_json": ""}),
        ));
        for frag in fragments(&c.args_json(), 8) {
            frames.push(delta(
                index,
                json!({"type": "input_json_delta", "partial_json": frag}),
            ));
        }
        frames.push(stop(index));
        index += 1;
    }
    let (reason, seq) = stop_reason(&a.finish);
    frames.push(event(&json!({
        "type": "message_delta",
        "delta": {"stop_reason": reason, "stop_sequence": seq},
        "usage": {
            "input_tokens": u.input,
            "cache_creation_input_tokens": u.cache_write,
            "cache_read_input_tokens": u.cache_read,
            "output_tokens": a.output_tokens,
        },
    })));
    frames.push(event(&json!({"type": "message_stop"})));
    Reply::Stream(StreamPlan {
        content_type: "text/event-stream; charset=utf-8",
        headers: Vec::new(),
        frames,
        end_frames: 1,
        malformed: Bytes::from_static(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"brok\n\n",
        ),
    })
}
