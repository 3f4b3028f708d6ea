//! An Anthropic Messages request becomes the canonical [`ChatRequest`] (see the mapping table
//! in the [module docs](super)).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::edge::EdgeConfig;
use crate::openai::ChatRequest;
use crate::Error;

use super::format::{ENVELOPE, REASONING_FORMAT};

/// The top level of a Messages request. Other fields only an Anthropic target can carry
/// (see [`KNOWN`]).
#[derive(Deserialize)]
struct MessagesRequest {
    model: String,
    #[serde(default)]
    max_tokens: Option<u32>,
    messages: Vec<InMessage>,
    #[serde(default)]
    system: Option<Value>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    thinking: Option<Value>,
    // Which capacity tier serves the request; does not change the answer.
    #[serde(default)]
    #[allow(dead_code)]
    service_tier: Option<Value>,
}

/// The fields [`MessagesRequest`] reads.
const KNOWN: [&str; 14] = [
    "model",
    "max_tokens",
    "messages",
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
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    content: Value,
}

/// What the edge learns from a Messages body besides the canonical request.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The canonical request.
    pub(crate) chat: ChatRequest,
    /// Why the canonical request is not the whole request: the first part only an Anthropic
    /// target can carry (left out of `chat`), as the 400 other targets answer.
    pub(crate) native_only: Option<Error>,
}

/// Collects what only an Anthropic target can carry: such a part is left out of the
/// canonical request and its error kept for the targets that would need it.
#[derive(Default)]
struct Deferred(Option<Error>);

impl Deferred {
    /// Passes `r` on, except that an `unsupported_parameter` error is kept (the first one)
    /// and the part it was about is skipped.
    fn keep(&mut self, r: Result<(), Error>) -> Result<(), Error> {
        match r {
            Err(e) if e.code() == Some(UNSUPPORTED) => {
                if self.0.is_none() {
                    self.0 = Some(e);
                }
                Ok(())
            }
            other => other,
        }
    }
}

const UNSUPPORTED: &str = "unsupported_parameter";

/// A 400 naming the parameter.
fn bad(param: &'static str, message: impl Into<String>) -> Error {
    Error::invalid_request(message.into()).with_param(param)
}

/// A 400 for something Anthropic accepts that the gateway cannot carry to other providers.
fn unsupported(param: &'static str, message: impl Into<String>) -> Error {
    let message = format!("{} (only an Anthropic model can serve it)", message.into());
    bad(param, message).with_code(UNSUPPORTED)
}

/// A client string as error messages quote it: at most 64 chars, escaped.
fn quote(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

/// serde's message, bounded: it may quote a key the client sent.
fn json_error(e: &serde_json::Error) -> Error {
    let text = e.to_string();
    let msg = match e.classify() {
        serde_json::error::Category::Data => format!("invalid request: {}", quote_long(&text)),
        _ => format!("malformed JSON body: {}", quote_long(&text)),
    };
    Error::invalid_request(msg).with_code("invalid_json")
}

fn quote_long(s: &str) -> String {
    let mut out: String = s.chars().take(300).flat_map(char::escape_debug).collect();
    if s.chars().nth(300).is_some() {
        out.push('…');
    }
    out
}

fn over(param: &'static str, what: String) -> Error {
    Error::invalid_request(what)
        .with_param(param)
        .with_code("array_above_max_length")
}

/// Parses a Messages body, checks the edge's limits, and converts it.
/// `count`: a count_tokens body, where `max_tokens` is not required.
pub(crate) fn parse(body: &[u8], limits: &EdgeConfig, count: bool) -> Result<Parsed, Error> {
    let mut req: MessagesRequest = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    let mut deferred = Deferred::default();
    if let Ok(Some(key)) = crate::openai::unknown_top_level_key(body, &KNOWN) {
        let key = String::from_utf8_lossy(key);
        deferred.keep(Err(Error::invalid_request(format!(
            "`{}` is not supported by the gateway (only an Anthropic model can serve it)",
            quote(&key)
        ))
        .with_param(quote(&key))
        .with_code(UNSUPPORTED)))?;
    }
    let messages = req.messages.len();
    let tools = req.tools.as_ref().map_or(0, Vec::len);
    if messages > limits.max_messages {
        return Err(over(
            "messages",
            format!(
                "the request has {messages} messages; at most {} are allowed",
                limits.max_messages
            ),
        ));
    }
    if tools > limits.max_tools {
        return Err(over(
            "tools",
            format!(
                "the request declares {tools} tools; at most {} are allowed",
                limits.max_tools
            ),
        ));
    }
    if count {
        req.max_tokens = req.max_tokens.or(Some(1));
    }
    let json = to_openai(req, &mut deferred)?;
    let bytes = serde_json::to_vec(&json)
        .map_err(|_| Error::invalid_request("the request could not be converted"))?;
    let chat = ChatRequest::from_bytes(bytes.into())?;
    if let Some(raw) = &chat.tools {
        if raw.as_bytes().len() > limits.max_tools_bytes {
            return Err(Error::invalid_request(format!(
                "`tools` is {} bytes; at most {} are allowed",
                raw.as_bytes().len(),
                limits.max_tools_bytes
            ))
            .with_param("tools")
            .with_code("string_above_max_length"));
        }
    }
    Ok(Parsed {
        chat,
        native_only: deferred.0,
    })
}

fn to_openai(req: MessagesRequest, d: &mut Deferred) -> Result<Value, Error> {
    if req.model.is_empty() {
        return Err(bad("model", "`model` is required"));
    }
    let max_tokens = req
        .max_tokens
        .ok_or_else(|| bad("max_tokens", "`max_tokens` is required"))?;
    if max_tokens == 0 {
        return Err(bad("max_tokens", "`max_tokens` must be at least 1"));
    }
    if req.messages.is_empty() {
        return Err(bad(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    if let Some(t) = req.temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(bad("temperature", "`temperature` must be between 0 and 1"));
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(req.model));
    let mut msgs = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system {
        msgs.push(system_message(system, d)?);
    }
    for m in req.messages {
        convert_message(m, &mut msgs, d)?;
    }
    out.insert("messages".into(), Value::Array(msgs));
    out.insert("max_tokens".into(), Value::from(max_tokens));
    if req.stream == Some(true) {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(stop) = req.stop_sequences.filter(|s| !s.is_empty()) {
        out.insert("stop".into(), json!(stop));
    }
    if let Some(t) = req.temperature {
        out.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        out.insert("top_p".into(), json!(p));
    }
    if let Some(k) = req.top_k {
        out.insert("top_k".into(), json!(k));
    }
    if let Some(user) = req.metadata.and_then(|m| m.user_id) {
        out.insert("user".into(), Value::String(user));
    }
    let tools = req.tools.unwrap_or_default();
    if !tools.is_empty() {
        let mut list = Vec::with_capacity(tools.len());
        for t in tools {
            d.keep(tool(t).map(|t| list.push(t)))?;
        }
        if !list.is_empty() {
            out.insert("tools".into(), Value::Array(list));
        }
    }
    if let Some(choice) = req.tool_choice {
        tool_choice(&choice, &mut out)?;
    }
    if let Some(thinking) = req.thinking {
        if let Some(r) = reasoning(&thinking)? {
            out.insert("reasoning".into(), r);
        }
    }
    Ok(Value::Object(out))
}

fn str_field<'a>(block: &'a Value, key: &str) -> Option<&'a str> {
    block.get(key).and_then(Value::as_str)
}

/// Refuses keys of a block other than `allowed` (each block type's own fields).
fn only_keys(block: &Map<String, Value>, kind: &str, allowed: &[&str]) -> Result<(), Error> {
    for k in block.keys() {
        if k != "type" && k != "cache_control" && !allowed.contains(&k.as_str()) {
            return Err(unsupported(
                "messages",
                format!(
                    "`{}` in a `{}` block is not supported by the gateway",
                    quote(k),
                    quote(kind)
                ),
            ));
        }
    }
    Ok(())
}

fn system_message(system: Value, d: &mut Deferred) -> Result<Value, Error> {
    match system {
        Value::String(s) => Ok(json!({"role": "system", "content": s})),
        Value::Array(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for b in &blocks {
                let obj = b
                    .as_object()
                    .ok_or_else(|| bad("system", "`system` blocks must be objects"))?;
                let r = if str_field(b, "type") == Some("text") {
                    only_keys(obj, "text", &["text", "citations"])
                } else {
                    Err(unsupported(
                        "system",
                        "`system` blocks other than `text` blocks are not supported by the gateway",
                    ))
                };
                d.keep(
                    r.and_then(|()| text_part(b, "system"))
                        .map(|p| parts.push(p)),
                )?;
            }
            Ok(json!({"role": "system", "content": parts}))
        }
        _ => Err(bad(
            "system",
            "`system` must be a string or a list of text blocks",
        )),
    }
}

/// A `text` block → a text part (with its `cache_control`).
fn text_part(b: &Value, param: &'static str) -> Result<Value, Error> {
    let text =
        str_field(b, "text").ok_or_else(|| bad(param, "a `text` block needs a string `text`"))?;
    let mut part = json!({"type": "text", "text": text});
    if let Some(cc) = b.get("cache_control").filter(|v| !v.is_null()) {
        part["cache_control"] = cc.clone();
    }
    Ok(part)
}

/// An `image` block → an `image_url` part (base64 → `data:` URL).
fn image_part(b: &Value) -> Result<Value, Error> {
    let src = b
        .get("source")
        .ok_or_else(|| bad("messages", "an `image` block needs a `source`"))?;
    let url = match str_field(src, "type") {
        Some("base64") => {
            let media = str_field(src, "media_type")
                .ok_or_else(|| bad("messages", "a base64 image needs a `media_type`"))?;
            let data = str_field(src, "data")
                .ok_or_else(|| bad("messages", "a base64 image needs `data`"))?;
            format!("data:{media};base64,{data}")
        }
        Some("url") => str_field(src, "url")
            .ok_or_else(|| bad("messages", "a url image needs a `url`"))?
            .to_owned(),
        _ => {
            return Err(unsupported(
                "messages",
                "image sources must be `base64` or `url` (file ids are not supported)",
            ))
        }
    };
    let mut part = json!({"type": "image_url", "image_url": {"url": url}});
    if let Some(cc) = b.get("cache_control").filter(|v| !v.is_null()) {
        part["cache_control"] = cc.clone();
    }
    Ok(part)
}

/// A `document` block: only base64 PDFs (a `file` part with a PDF `data:` URL).
fn document_part(b: &Value) -> Result<Value, Error> {
    let src = b.get("source");
    let media = src.and_then(|s| str_field(s, "media_type"));
    let data = src.and_then(|s| str_field(s, "data"));
    match (src.and_then(|s| str_field(s, "type")), media, data) {
        (Some("base64"), Some("application/pdf"), Some(data)) => Ok(json!({
            "type": "file",
            "file": {"filename": "document.pdf", "file_data": format!("data:application/pdf;base64,{data}")},
        })),
        _ => Err(unsupported(
            "messages",
            "only base64 PDF `document` blocks are supported",
        )),
    }
}

fn convert_message(m: InMessage, out: &mut Vec<Value>, d: &mut Deferred) -> Result<(), Error> {
    let role = match m.role.as_str() {
        "user" => "user",
        "assistant" => "assistant",
        other => {
            return Err(bad(
                "messages",
                format!(
                    "message roles must be `user` or `assistant`, not `{}`",
                    quote(other)
                ),
            ))
        }
    };
    let blocks = match m.content {
        Value::String(s) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(bad(
                "messages",
                "message `content` must be a string or a list of blocks",
            ))
        }
    };
    if role == "user" {
        user_blocks(blocks, out, d)
    } else {
        assistant_blocks(blocks, out, d)
    }
}

fn block_type(b: &Value) -> Result<(&Map<String, Value>, &str), Error> {
    let obj = b
        .as_object()
        .ok_or_else(|| bad("messages", "content blocks must be objects"))?;
    let kind =
        str_field(b, "type").ok_or_else(|| bad("messages", "content blocks need a `type`"))?;
    Ok((obj, kind))
}

fn user_blocks(blocks: Vec<Value>, out: &mut Vec<Value>, d: &mut Deferred) -> Result<(), Error> {
    let mut parts = Vec::new();
    for b in &blocks {
        let (obj, kind) = block_type(b)?;
        let r = match kind {
            "text" => only_keys(obj, kind, &["text", "citations"])
                .and_then(|()| text_part(b, "messages"))
                .map(|p| parts.push(p)),
            "image" => only_keys(obj, kind, &["source"])
                .and_then(|()| image_part(b))
                .map(|p| parts.push(p)),
            "document" => only_keys(obj, kind, &["source"])
                .and_then(|()| document_part(b))
                .map(|p| parts.push(p)),
            "tool_result" => only_keys(obj, kind, &["tool_use_id", "content", "is_error"])
                .and_then(|()| tool_message(b))
                .map(|m| out.push(m)),
            other => Err(unsupported(
                "messages",
                format!(
                    "`{}` blocks in user messages are not supported by the gateway",
                    quote(other)
                ),
            )),
        };
        d.keep(r)?;
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

/// A `tool_result` block → a `tool` message; `is_error: true` is emulated with a prefix.
fn tool_message(b: &Value) -> Result<Value, Error> {
    let id = str_field(b, "tool_use_id")
        .ok_or_else(|| bad("messages", "a `tool_result` block needs a `tool_use_id`"))?;
    let is_error = b.get("is_error").and_then(Value::as_bool) == Some(true);
    let prefix = if is_error { "[tool error] " } else { "" };
    let content = match b.get("content") {
        None | Some(Value::Null) => Value::String(prefix.trim_end().to_owned()),
        Some(Value::String(s)) => Value::String(format!("{prefix}{s}")),
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len() + 1);
            if is_error {
                parts.push(json!({"type": "text", "text": prefix.trim_end()}));
            }
            for item in items {
                let (obj, kind) = block_type(item)?;
                match kind {
                    "text" => {
                        only_keys(obj, kind, &["text", "citations"])?;
                        parts.push(text_part(item, "messages")?);
                    }
                    "image" => {
                        only_keys(obj, kind, &["source"])?;
                        parts.push(image_part(item)?);
                    }
                    other => {
                        return Err(unsupported(
                            "messages",
                            format!(
                                "`{}` blocks in tool results are not supported by the gateway",
                                quote(other)
                            ),
                        ))
                    }
                }
            }
            Value::Array(parts)
        }
        Some(_) => {
            return Err(bad(
                "messages",
                "`tool_result.content` must be a string or a list of blocks",
            ))
        }
    };
    Ok(json!({"role": "tool", "tool_call_id": id, "content": content}))
}

fn assistant_blocks(
    blocks: Vec<Value>,
    out: &mut Vec<Value>,
    d: &mut Deferred,
) -> Result<(), Error> {
    let mut parts: Vec<Value> = Vec::new();
    let mut cached = false;
    let mut calls = Vec::new();
    let mut details = Vec::new();
    let mut reasoning = String::new();
    for b in &blocks {
        let (obj, kind) = block_type(b)?;
        let mut one = || -> Result<(), Error> {
            match kind {
                "text" => {
                    only_keys(obj, kind, &["text", "citations"])?;
                    parts.push(text_part(b, "messages")?);
                    cached |= b.get("cache_control").is_some_and(|v| !v.is_null());
                }
                "tool_use" => {
                    only_keys(obj, kind, &["id", "name", "input"])?;
                    let id = str_field(b, "id")
                        .ok_or_else(|| bad("messages", "a `tool_use` block needs an `id`"))?;
                    let name = str_field(b, "name")
                        .ok_or_else(|| bad("messages", "a `tool_use` block needs a `name`"))?;
                    let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                    if !input.is_object() {
                        return Err(bad("messages", "`tool_use.input` must be an object"));
                    }
                    calls.push(json!({
                        "id": id,
                        "type": "function",
                        "function": {"name": name, "arguments": input.to_string()},
                    }));
                }
                "thinking" => {
                    only_keys(obj, kind, &["thinking", "signature"])?;
                    let text = str_field(b, "thinking").unwrap_or_default();
                    reasoning.push_str(text);
                    let mut d = json!({
                        "type": "reasoning.text",
                        "text": text,
                        "format": REASONING_FORMAT,
                        "index": details.len(),
                    });
                    if let Some(sig) = str_field(b, "signature") {
                        d["signature"] = Value::from(sig);
                    }
                    details.push(d);
                }
                "redacted_thinking" => {
                    only_keys(obj, kind, &["data"])?;
                    let data = str_field(b, "data").ok_or_else(|| {
                        bad("messages", "a `redacted_thinking` block needs `data`")
                    })?;
                    if let Some(inner) = data.strip_prefix(ENVELOPE) {
                        // Another provider's reasoning detail, restored as it was.
                        let detail: Value = serde_json::from_str(inner).map_err(|_| {
                            bad("messages", "a `redacted_thinking` block has damaged `data`")
                        })?;
                        details.push(detail);
                    } else {
                        details.push(json!({
                            "type": "reasoning.encrypted",
                            "data": data,
                            "format": REASONING_FORMAT,
                            "index": details.len(),
                        }));
                    }
                }
                other => {
                    return Err(unsupported(
                        "messages",
                        format!(
                            "`{}` blocks in assistant messages are not supported by the gateway",
                            quote(other)
                        ),
                    ))
                }
            }
            Ok(())
        };
        let r = one();
        d.keep(r)?;
    }
    let mut m = Map::new();
    m.insert("role".into(), Value::from("assistant"));
    if cached {
        m.insert("content".into(), Value::Array(parts));
    } else {
        let text: String = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        m.insert(
            "content".into(),
            if text.is_empty() && !calls.is_empty() {
                Value::Null
            } else {
                Value::String(text)
            },
        );
    }
    if !calls.is_empty() {
        m.insert("tool_calls".into(), Value::Array(calls));
    }
    if !reasoning.is_empty() {
        m.insert("reasoning".into(), Value::String(reasoning));
    }
    if !details.is_empty() {
        m.insert("reasoning_details".into(), Value::Array(details));
    }
    out.push(Value::Object(m));
    Ok(())
}

/// A client tool → a function tool. Anthropic's server tools (typed `web_search_…`,
/// `bash_…`, …) are refused: no other provider runs them.
fn tool(t: Value) -> Result<Value, Error> {
    let obj = t
        .as_object()
        .ok_or_else(|| bad("tools", "each tool must be an object"))?;
    match str_field(&t, "type") {
        None | Some("custom") => {}
        Some(other) => {
            return Err(unsupported(
                "tools",
                format!(
                    "the server tool `{}` is not supported by the gateway; declare client tools",
                    quote(other)
                ),
            ))
        }
    }
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "type" | "name" | "description" | "input_schema" | "cache_control"
        ) {
            return Err(unsupported(
                "tools",
                format!("`{}` in a tool is not supported by the gateway", quote(k)),
            ));
        }
    }
    let name = str_field(&t, "name").ok_or_else(|| bad("tools", "each tool needs a `name`"))?;
    let schema = t
        .get("input_schema")
        .filter(|s| s.is_object())
        .ok_or_else(|| bad("tools", "each tool needs an object `input_schema`"))?;
    let mut f = json!({"name": name, "parameters": schema});
    if let Some(d) = str_field(&t, "description") {
        f["description"] = Value::from(d);
    }
    let mut out = json!({"type": "function", "function": f});
    if let Some(cc) = t.get("cache_control").filter(|v| !v.is_null()) {
        out["cache_control"] = cc.clone();
    }
    Ok(out)
}

fn tool_choice(choice: &Value, out: &mut Map<String, Value>) -> Result<(), Error> {
    let v = match str_field(choice, "type") {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = str_field(choice, "name")
                .ok_or_else(|| bad("tool_choice", "`tool_choice.name` is required"))?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(bad(
                "tool_choice",
                "`tool_choice.type` must be auto, any, tool or none",
            ))
        }
    };
    if choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        == Some(true)
    {
        out.insert("parallel_tool_calls".into(), Value::Bool(false));
    }
    // Without tools a choice means nothing (Anthropic ignores it too).
    if out.contains_key("tools") {
        out.insert("tool_choice".into(), v);
    }
    Ok(())
}

/// `thinking` → OpenRouter `reasoning`: the budget is `reasoning.max_tokens`.
fn reasoning(thinking: &Value) -> Result<Option<Value>, Error> {
    match str_field(thinking, "type") {
        Some("enabled") => {
            let budget = thinking
                .get("budget_tokens")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("thinking", "`thinking.budget_tokens` is required"))?;
            if budget < 1024 {
                return Err(bad(
                    "thinking",
                    "`thinking.budget_tokens` must be at least 1024",
                ));
            }
            Ok(Some(json!({"max_tokens": budget})))
        }
        Some("disabled") => Ok(None),
        _ => Err(bad(
            "thinking",
            "`thinking.type` must be `enabled` or `disabled`",
        )),
    }
}
