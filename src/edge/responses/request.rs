//! A Responses request becomes the canonical [`ChatRequest`] (see the mapping table in the
//! [module docs](super)).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::edge::EdgeConfig;
use crate::openai::ChatRequest;
use crate::Error;

use super::response::{decode_reasoning, Echo};

/// The top level of a Responses request. Unknown fields are refused (400).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponsesRequest {
    model: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    reasoning: Option<Value>,
    #[serde(default)]
    text: Option<Value>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    store: Option<bool>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    previous_response_id: Option<Value>,
    #[serde(default)]
    background: Option<bool>,
    #[serde(default)]
    conversation: Option<Value>,
    #[serde(default)]
    truncation: Option<String>,
    #[serde(default)]
    top_logprobs: Option<u32>,
    #[serde(default)]
    max_tool_calls: Option<Value>,
    #[serde(default)]
    prompt: Option<Value>,
    // Hints that do not change the answer: dropped.
    #[serde(default)]
    #[allow(dead_code)]
    stream_options: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    service_tier: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    prompt_cache_key: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    prompt_cache_retention: Option<Value>,
    #[serde(default)]
    safety_identifier: Option<String>,
}

/// What the edge learns from a Responses body besides the canonical request.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The canonical request.
    pub(crate) chat: ChatRequest,
    /// The request fields a response object repeats.
    pub(crate) echo: Echo,
}

/// A 400 naming the parameter.
fn bad(param: &'static str, message: impl Into<String>) -> Error {
    Error::invalid_request(message.into()).with_param(param)
}

/// A 400 for something the Responses API accepts that the gateway cannot carry.
fn unsupported(param: &'static str, message: impl Into<String>) -> Error {
    bad(param, message).with_code("unsupported_parameter")
}

/// A client string as error messages quote it: at most `n` chars, escaped.
fn quote_n(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).flat_map(char::escape_debug).collect();
    if s.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}

fn quote(s: &str) -> String {
    quote_n(s, 64)
}

/// serde's message, bounded: it may quote a key the client sent.
fn json_error(e: &serde_json::Error) -> Error {
    let text = quote_n(&e.to_string(), 300);
    let msg = match e.classify() {
        serde_json::error::Category::Data => format!("invalid request: {text}"),
        _ => format!("malformed JSON body: {text}"),
    };
    Error::invalid_request(msg).with_code("invalid_json")
}

fn over(param: &'static str, what: String) -> Error {
    Error::invalid_request(what)
        .with_param(param)
        .with_code("array_above_max_length")
}

/// OpenAI's bounds on `metadata`: 16 pairs, keys up to 64 chars, string values up to 512.
const METADATA_PAIRS: usize = 16;
const METADATA_KEY: usize = 64;
const METADATA_VALUE: usize = 512;

/// Parses a Responses body, checks the edge's limits, and converts it.
pub(crate) fn parse(body: &[u8], limits: &EdgeConfig) -> Result<Parsed, Error> {
    let req: ResponsesRequest = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    let items = match &req.input {
        Some(Value::Array(a)) => a.len(),
        _ => 1,
    };
    if items > limits.max_messages {
        return Err(over(
            "input",
            format!(
                "the request has {items} input items; at most {} are allowed",
                limits.max_messages
            ),
        ));
    }
    let tools = req.tools.as_ref().map_or(0, Vec::len);
    if tools > limits.max_tools {
        return Err(over(
            "tools",
            format!(
                "the request declares {tools} tools; at most {} are allowed",
                limits.max_tools
            ),
        ));
    }
    refuse_stateful(&req)?;
    let echo = echo(&req)?;
    let json = to_openai(req)?;
    let bytes = serde_json::to_vec(&json)
        .map_err(|_| Error::invalid_request("the request could not be converted"))?;
    let chat = ChatRequest::from_bytes(bytes.into())?;
    for (param, raw) in [
        ("tools", &chat.tools),
        ("text.format", &chat.response_format),
    ] {
        if let Some(raw) = raw {
            if raw.as_bytes().len() > limits.max_tools_bytes {
                return Err(bad(
                    param,
                    format!(
                        "`{param}` is {} bytes; at most {} are allowed",
                        raw.as_bytes().len(),
                        limits.max_tools_bytes
                    ),
                )
                .with_code("string_above_max_length"));
            }
        }
    }
    Ok(Parsed { chat, echo })
}

/// What needs state the gateway does not keep, or work it does not do, is a 400.
fn refuse_stateful(req: &ResponsesRequest) -> Result<(), Error> {
    if req.store == Some(true) {
        return Err(unsupported(
            "store",
            "the gateway is stateless: `store: true` is not supported; send `store: false` (or leave it out) and pass the conversation in `input`",
        ));
    }
    if req
        .previous_response_id
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return Err(unsupported(
            "previous_response_id",
            "the gateway is stateless: `previous_response_id` is not supported; pass the conversation in `input`",
        ));
    }
    if req.conversation.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "conversation",
            "the gateway is stateless: `conversation` is not supported; pass the conversation in `input`",
        ));
    }
    if req.background == Some(true) {
        return Err(unsupported(
            "background",
            "`background: true` is not supported by the gateway",
        ));
    }
    if req.prompt.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "prompt",
            "stored prompt templates are not supported by the gateway",
        ));
    }
    if req.max_tool_calls.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "max_tool_calls",
            "`max_tool_calls` is not supported by the gateway",
        ));
    }
    if req.top_logprobs.is_some_and(|n| n > 0) {
        return Err(unsupported(
            "top_logprobs",
            "log probabilities are not supported by the gateway",
        ));
    }
    for inc in req.include.iter().flatten() {
        // Reasoning is always returned with its `encrypted_content` when there is any.
        if inc != "reasoning.encrypted_content" {
            return Err(unsupported(
                "include",
                format!(
                    "`include` value `{}` is not supported by the gateway",
                    quote(inc)
                ),
            ));
        }
    }
    match req.truncation.as_deref() {
        None | Some("disabled" | "auto") => {}
        Some(other) => {
            return Err(bad(
                "truncation",
                format!(
                    "`truncation` must be `auto` or `disabled`, not `{}`",
                    quote(other)
                ),
            ))
        }
    }
    Ok(())
}

/// The request fields a response object repeats, checked.
fn echo(req: &ResponsesRequest) -> Result<Echo, Error> {
    let mut m = Map::new();
    if let Some(meta) = &req.metadata {
        if meta.len() > METADATA_PAIRS {
            return Err(bad(
                "metadata",
                format!("`metadata` has at most {METADATA_PAIRS} pairs"),
            ));
        }
        for (k, v) in meta {
            let ok = k.chars().count() <= METADATA_KEY
                && v.as_str()
                    .is_some_and(|s| s.chars().count() <= METADATA_VALUE);
            if !ok {
                return Err(bad(
                    "metadata",
                    format!("`metadata` keys are at most {METADATA_KEY} chars and values strings of at most {METADATA_VALUE}"),
                ));
            }
        }
        m.insert("metadata".into(), Value::Object(meta.clone()));
    } else {
        m.insert("metadata".into(), json!({}));
    }
    m.insert("instructions".into(), json!(req.instructions));
    m.insert("tools".into(), json!(req.tools.clone().unwrap_or_default()));
    m.insert(
        "tool_choice".into(),
        req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
    );
    m.insert(
        "parallel_tool_calls".into(),
        json!(req.parallel_tool_calls.unwrap_or(true)),
    );
    m.insert("temperature".into(), json!(req.temperature.unwrap_or(1.0)));
    m.insert("top_p".into(), json!(req.top_p.unwrap_or(1.0)));
    m.insert("max_output_tokens".into(), json!(req.max_output_tokens));
    let reasoning = req.reasoning.as_ref().filter(|v| !v.is_null());
    m.insert(
        "reasoning".into(),
        json!({
            "effort": reasoning.and_then(|r| r.get("effort")).cloned().unwrap_or(Value::Null),
            "summary": reasoning.and_then(|r| r.get("summary")).cloned().unwrap_or(Value::Null),
        }),
    );
    let format = req
        .text
        .as_ref()
        .and_then(|t| t.get("format"))
        .filter(|f| !f.is_null())
        .cloned()
        .unwrap_or_else(|| json!({"type": "text"}));
    m.insert("text".into(), json!({"format": format}));
    m.insert("store".into(), Value::Bool(false));
    m.insert("background".into(), Value::Bool(false));
    m.insert("previous_response_id".into(), Value::Null);
    m.insert(
        "truncation".into(),
        json!(req.truncation.as_deref().unwrap_or("disabled")),
    );
    m.insert("user".into(), json!(req.user));
    Ok(Echo::new(req.model.clone(), m))
}

fn to_openai(req: ResponsesRequest) -> Result<Value, Error> {
    if req.model.is_empty() {
        return Err(bad("model", "`model` is required"));
    }
    if let Some(t) = req.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(bad("temperature", "`temperature` must be between 0 and 2"));
        }
    }
    if let Some(p) = req.top_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(bad("top_p", "`top_p` must be between 0 and 1"));
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(req.model));
    let mut msgs = Vec::new();
    if let Some(i) = req.instructions.filter(|i| !i.is_empty()) {
        msgs.push(json!({"role": "system", "content": i}));
    }
    match req.input {
        Some(Value::String(s)) => msgs.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => convert_items(items, &mut msgs)?,
        None | Some(Value::Null) => {}
        Some(_) => return Err(bad("input", "`input` must be a string or a list of items")),
    }
    if !msgs.iter().any(|m| m["role"] != "system") {
        return Err(bad("input", "`input` must contain at least one item"));
    }
    out.insert("messages".into(), Value::Array(msgs));
    if let Some(n) = req.max_output_tokens {
        if n == 0 {
            return Err(bad(
                "max_output_tokens",
                "`max_output_tokens` must be at least 1",
            ));
        }
        out.insert("max_completion_tokens".into(), Value::from(n));
    }
    if req.stream == Some(true) {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(t) = req.temperature {
        out.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        out.insert("top_p".into(), json!(p));
    }
    if let Some(user) = req.user.or(req.safety_identifier) {
        out.insert("user".into(), Value::String(user));
    }
    if let Some(meta) = req.metadata.filter(|m| !m.is_empty()) {
        out.insert("metadata".into(), Value::Object(meta));
    }
    if let Some(p) = req.parallel_tool_calls {
        out.insert("parallel_tool_calls".into(), Value::Bool(p));
    }
    let tools = req.tools.unwrap_or_default();
    if !tools.is_empty() {
        let list = tools.iter().map(tool).collect::<Result<Vec<_>, _>>()?;
        out.insert("tools".into(), Value::Array(list));
    }
    if let Some(choice) = req.tool_choice.filter(|c| !c.is_null()) {
        let v = tool_choice(&choice)?;
        if out.contains_key("tools") {
            out.insert("tool_choice".into(), v);
        }
    }
    if let Some(r) = req.reasoning.filter(|r| !r.is_null()) {
        if let Some(r) = reasoning(&r)? {
            out.insert("reasoning".into(), r);
        }
    }
    if let Some(t) = req.text.filter(|t| !t.is_null()) {
        text(&t, &mut out)?;
    }
    Ok(Value::Object(out))
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Refuses keys of an object other than `allowed` (always allowed: `type`).
fn only_keys(
    obj: &Map<String, Value>,
    param: &'static str,
    what: &str,
    allowed: &[&str],
) -> Result<(), Error> {
    for k in obj.keys() {
        if k != "type" && !allowed.contains(&k.as_str()) {
            return Err(unsupported(
                param,
                format!("`{}` in {what} is not supported by the gateway", quote(k)),
            ));
        }
    }
    Ok(())
}

/// The assistant turn being gathered from consecutive output items.
#[derive(Default)]
struct Assistant {
    text: String,
    refusal: String,
    calls: Vec<Value>,
    reasoning: String,
    details: Vec<Value>,
}

impl Assistant {
    fn is_empty(&self) -> bool {
        self.text.is_empty()
            && self.refusal.is_empty()
            && self.calls.is_empty()
            && self.reasoning.is_empty()
            && self.details.is_empty()
    }

    fn flush(&mut self, out: &mut Vec<Value>) {
        if self.is_empty() {
            return;
        }
        let a = std::mem::take(self);
        let mut m = Map::new();
        m.insert("role".into(), Value::from("assistant"));
        let content = if a.text.is_empty() && !a.calls.is_empty() {
            Value::Null
        } else {
            Value::String(a.text)
        };
        m.insert("content".into(), content);
        if !a.refusal.is_empty() {
            m.insert("refusal".into(), Value::String(a.refusal));
        }
        if !a.calls.is_empty() {
            m.insert("tool_calls".into(), Value::Array(a.calls));
        }
        if !a.reasoning.is_empty() {
            m.insert("reasoning".into(), Value::String(a.reasoning));
        }
        if !a.details.is_empty() {
            m.insert("reasoning_details".into(), Value::Array(a.details));
        }
        out.push(Value::Object(m));
    }
}

fn convert_items(items: Vec<Value>, out: &mut Vec<Value>) -> Result<(), Error> {
    let mut turn = Assistant::default();
    for item in &items {
        let obj = item
            .as_object()
            .ok_or_else(|| bad("input", "each input item must be an object"))?;
        let kind = match str_field(item, "type") {
            Some(k) => k,
            None if obj.contains_key("role") => "message",
            None => return Err(bad("input", "each input item needs a `type`")),
        };
        match kind {
            "message" => {
                only_keys(obj, "input", "a message", &["role", "content", "id", "status", "phase"])?;
                let role = str_field(item, "role")
                    .ok_or_else(|| bad("input", "a message needs a `role`"))?;
                if role == "assistant" {
                    // A new assistant message after text or calls starts a new turn.
                    if !turn.text.is_empty() || !turn.calls.is_empty() {
                        turn.flush(out);
                    }
                    assistant_content(item.get("content"), &mut turn)?;
                    continue;
                }
                turn.flush(out);
                let role = match role {
                    "user" => "user",
                    "system" | "developer" => "system",
                    other => {
                        return Err(bad(
                            "input",
                            format!(
                                "message roles must be user, assistant, system or developer, not `{}`",
                                quote(other)
                            ),
                        ))
                    }
                };
                let content = input_content(item.get("content"), role == "system")?;
                out.push(json!({"role": role, "content": content}));
            }
            "function_call" => {
                only_keys(obj, "input", "a function_call", &["id", "call_id", "name", "arguments", "status", "parsed_arguments"])?;
                let call_id = str_field(item, "call_id")
                    .ok_or_else(|| bad("input", "a `function_call` needs a `call_id`"))?;
                let name = str_field(item, "name")
                    .ok_or_else(|| bad("input", "a `function_call` needs a `name`"))?;
                let args = str_field(item, "arguments").unwrap_or("{}");
                turn.calls.push(json!({
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": args},
                }));
            }
            "function_call_output" => {
                only_keys(obj, "input", "a function_call_output", &["id", "call_id", "output", "status"])?;
                turn.flush(out);
                let call_id = str_field(item, "call_id")
                    .ok_or_else(|| bad("input", "a `function_call_output` needs a `call_id`"))?;
                let content = match item.get("output") {
                    Some(Value::String(s)) => Value::String(s.clone()),
                    Some(Value::Array(_)) => input_content(item.get("output"), false)?,
                    _ => {
                        return Err(bad(
                            "input",
                            "`function_call_output.output` must be a string or a list of parts",
                        ))
                    }
                };
                out.push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
            }
            "reasoning" => {
                only_keys(obj, "input", "a reasoning item", &["id", "summary", "content", "encrypted_content", "status"])?;
                if !turn.text.is_empty() || !turn.calls.is_empty() {
                    turn.flush(out);
                }
                reasoning_item(item, &mut turn)?;
            }
            "item_reference" => {
                return Err(unsupported(
                    "input",
                    "the gateway is stateless: `item_reference` items are not supported; send the items themselves",
                ))
            }
            other => {
                return Err(unsupported(
                    "input",
                    format!(
                        "`{}` input items are not supported by the gateway",
                        quote(other)
                    ),
                ))
            }
        }
    }
    turn.flush(out);
    Ok(())
}

/// A user, system or tool-output content: a string, or `input_text` / `input_image` /
/// `input_file` parts. System content becomes one string.
fn input_content(content: Option<&Value>, system: bool) -> Result<Value, Error> {
    let parts = match content {
        Some(Value::String(s)) => return Ok(Value::String(s.clone())),
        Some(Value::Array(parts)) => parts,
        _ => {
            return Err(bad(
                "input",
                "message `content` must be a string or a list of parts",
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let obj = p
            .as_object()
            .ok_or_else(|| bad("input", "content parts must be objects"))?;
        match str_field(p, "type") {
            Some("input_text") => {
                only_keys(obj, "input", "an `input_text` part", &["text"])?;
                let text = str_field(p, "text")
                    .ok_or_else(|| bad("input", "an `input_text` part needs a string `text`"))?;
                out.push(json!({"type": "text", "text": text}));
            }
            Some("input_image") if !system => {
                only_keys(
                    obj,
                    "input",
                    "an `input_image` part",
                    &["image_url", "detail", "file_id"],
                )?;
                let url = str_field(p, "image_url").ok_or_else(|| {
                    unsupported(
                        "input",
                        "`input_image` needs an `image_url` (file ids are not supported)",
                    )
                })?;
                let mut image = json!({"url": url});
                if let Some(d) = str_field(p, "detail") {
                    image["detail"] = Value::from(d);
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            Some("input_file") if !system => {
                only_keys(
                    obj,
                    "input",
                    "an `input_file` part",
                    &["file_data", "filename", "file_id", "file_url"],
                )?;
                let data = str_field(p, "file_data").ok_or_else(|| {
                    unsupported(
                        "input",
                        "`input_file` needs `file_data` (file ids and URLs are not supported)",
                    )
                })?;
                let mut file = json!({"file_data": data});
                if let Some(f) = str_field(p, "filename") {
                    file["filename"] = Value::from(f);
                }
                out.push(json!({"type": "file", "file": file}));
            }
            other => {
                return Err(unsupported(
                    "input",
                    format!(
                        "`{}` content parts are not supported here",
                        quote(other.unwrap_or("(none)"))
                    ),
                ))
            }
        }
    }
    if system {
        let text: String = out
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n");
        return Ok(Value::String(text));
    }
    Ok(Value::Array(out))
}

/// An assistant message from a previous turn: a string or `output_text` / `refusal` parts.
fn assistant_content(content: Option<&Value>, turn: &mut Assistant) -> Result<(), Error> {
    match content {
        Some(Value::String(s)) => {
            turn.text.push_str(s);
            Ok(())
        }
        Some(Value::Array(parts)) => {
            for p in parts {
                let obj = p
                    .as_object()
                    .ok_or_else(|| bad("input", "content parts must be objects"))?;
                match str_field(p, "type") {
                    Some("output_text" | "input_text") => {
                        only_keys(
                            obj,
                            "input",
                            "an `output_text` part",
                            &["text", "annotations", "logprobs", "parsed"],
                        )?;
                        let text = str_field(p, "text").ok_or_else(|| {
                            bad("input", "an `output_text` part needs a string `text`")
                        })?;
                        turn.text.push_str(text);
                    }
                    Some("refusal") => {
                        only_keys(obj, "input", "a `refusal` part", &["refusal"])?;
                        turn.refusal
                            .push_str(str_field(p, "refusal").unwrap_or_default());
                    }
                    other => {
                        return Err(unsupported(
                            "input",
                            format!(
                                "`{}` parts in assistant messages are not supported",
                                quote(other.unwrap_or("(none)"))
                            ),
                        ))
                    }
                }
            }
            Ok(())
        }
        _ => Err(bad(
            "input",
            "message `content` must be a string or a list of parts",
        )),
    }
}

/// A reasoning item from a previous turn: its summary (or content) text is the reasoning, its
/// `encrypted_content` the signed details, restored when the gateway made it.
fn reasoning_item(item: &Value, turn: &mut Assistant) -> Result<(), Error> {
    let texts = |key: &str| -> String {
        item.get(key)
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n\n")
            })
            .unwrap_or_default()
    };
    let mut text = texts("content");
    if text.is_empty() {
        text = texts("summary");
    }
    turn.reasoning.push_str(&text);
    if let Some(enc) = str_field(item, "encrypted_content").filter(|e| !e.is_empty()) {
        match decode_reasoning(enc) {
            Some(Ok(details)) => turn.details.extend(details),
            Some(Err(())) => {
                return Err(bad(
                    "input",
                    "a reasoning item has damaged `encrypted_content`",
                ))
            }
            // Another service's opaque reasoning: carried along; codecs that do not know
            // the format leave it out.
            None => turn.details.push(json!({
                "type": "reasoning.encrypted",
                "data": enc,
                "format": "openai-responses-v1",
                "index": turn.details.len(),
            })),
        }
    }
    Ok(())
}

/// A function tool → a canonical function tool; built-in tools are refused.
fn tool(t: &Value) -> Result<Value, Error> {
    let obj = t
        .as_object()
        .ok_or_else(|| bad("tools", "each tool must be an object"))?;
    match str_field(t, "type") {
        Some("function") => {}
        Some(other) => {
            return Err(unsupported(
                "tools",
                format!(
                "the built-in tool `{}` is not supported by the gateway; declare function tools",
                quote(other)
            ),
            ))
        }
        None => return Err(bad("tools", "each tool needs a `type`")),
    }
    only_keys(
        obj,
        "tools",
        "a function tool",
        &["name", "description", "parameters", "strict"],
    )?;
    let name = str_field(t, "name").ok_or_else(|| bad("tools", "each tool needs a `name`"))?;
    let mut f = json!({"name": name});
    if let Some(p) = t.get("parameters").filter(|p| !p.is_null()) {
        if !p.is_object() {
            return Err(bad("tools", "`parameters` must be an object"));
        }
        f["parameters"] = p.clone();
    }
    if let Some(d) = str_field(t, "description") {
        f["description"] = Value::from(d);
    }
    if let Some(s) = t.get("strict").and_then(Value::as_bool) {
        f["strict"] = Value::Bool(s);
    }
    Ok(json!({"type": "function", "function": f}))
}

fn tool_choice(choice: &Value) -> Result<Value, Error> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(_) if str_field(choice, "type") == Some("function") => {
            let name = str_field(choice, "name")
                .ok_or_else(|| bad("tool_choice", "`tool_choice.name` is required"))?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        Value::Object(_) => Err(unsupported(
            "tool_choice",
            "`tool_choice` must be auto, none, required or a named function",
        )),
        _ => Err(bad(
            "tool_choice",
            "`tool_choice` must be auto, none, required or a named function",
        )),
    }
}

/// `reasoning {effort, summary}` → canonical `reasoning.effort`; `summary` is emulated (the
/// provider's reasoning text, when it gives one, is the summary).
fn reasoning(r: &Value) -> Result<Option<Value>, Error> {
    let obj = r
        .as_object()
        .ok_or_else(|| bad("reasoning", "`reasoning` must be an object"))?;
    only_keys(
        obj,
        "reasoning",
        "`reasoning`",
        &["effort", "summary", "generate_summary"],
    )?;
    match r.get("effort") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(e)) => match e.as_str() {
            "none" => Ok(Some(json!({"enabled": false}))),
            "minimal" | "low" | "medium" | "high" | "xhigh" => Ok(Some(json!({"effort": e}))),
            other => Err(bad(
                "reasoning.effort",
                format!(
                    "`reasoning.effort` must be none, minimal, low, medium, high or xhigh, not `{}`",
                    quote(other)
                ),
            )),
        },
        Some(_) => Err(bad("reasoning.effort", "`reasoning.effort` must be a string")),
    }
}

/// `text {format, verbosity}`: `format` → `response_format`; only the default verbosity.
fn text(t: &Value, out: &mut Map<String, Value>) -> Result<(), Error> {
    let obj = t
        .as_object()
        .ok_or_else(|| bad("text", "`text` must be an object"))?;
    only_keys(obj, "text", "`text`", &["format", "verbosity"])?;
    match t.get("verbosity") {
        None | Some(Value::Null) => {}
        Some(v) if v == "medium" => {}
        Some(_) => {
            return Err(unsupported(
                "text.verbosity",
                "only the default `text.verbosity` (`medium`) is supported by the gateway",
            ))
        }
    }
    let Some(f) = t.get("format").filter(|f| !f.is_null()) else {
        return Ok(());
    };
    let fobj = f
        .as_object()
        .ok_or_else(|| bad("text.format", "`text.format` must be an object"))?;
    match str_field(f, "type") {
        Some("text") => {}
        Some("json_object") => {
            out.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some("json_schema") => {
            only_keys(
                fobj,
                "text.format",
                "`text.format`",
                &["name", "schema", "strict", "description"],
            )?;
            let name = str_field(f, "name")
                .ok_or_else(|| bad("text.format", "`text.format.name` is required"))?;
            let schema = f
                .get("schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| bad("text.format", "`text.format.schema` must be an object"))?;
            let mut js = json!({"name": name, "schema": schema});
            if let Some(s) = f.get("strict").and_then(Value::as_bool) {
                js["strict"] = Value::Bool(s);
            }
            if let Some(d) = str_field(f, "description") {
                js["description"] = Value::from(d);
            }
            out.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": js}),
            );
        }
        _ => {
            return Err(bad(
                "text.format",
                "`text.format.type` must be text, json_object or json_schema",
            ))
        }
    }
    Ok(())
}
