//! Requests: a [`ChatRequest`] becomes a Converse body (see the mapping table in the module
//! docs of [`super`]).

use serde_json::{json, Map, Value};

use crate::openai::{
    ChatRequest, ContentPart, Message, MessageContent, ResponseFormat, Role, ToolChoice,
};
use crate::provider::claude::{
    self, fit_thinking, function_message_refused, output_limit, parse_data_url, push_turn,
    signed_reasoning, SignedReasoning, Turn, DEFAULT_MAX_TOKENS,
};
use crate::provider::{stop_sequences, unsupported, EncodeContext};
use crate::Error;

/// The most images Converse takes in one request (a 400 beyond, refused here first).
const MAX_IMAGES: usize = 20;

fn bad_message(message: impl Into<String>) -> Error {
    Error::invalid_request(message.into()).with_param("messages")
}

/// Whether the model takes Anthropic's `thinking` in `additionalModelRequestFields` (Claude,
/// by id, inference profile or ARN).
pub(super) fn is_claude(upstream_model: &str) -> bool {
    upstream_model.contains("anthropic.claude")
}

/// The Converse body for `req` (the same for `/converse` and `/converse-stream`).
pub(super) fn body(req: &ChatRequest, ctx: &EncodeContext<'_>) -> Result<Value, Error> {
    refuse_unsupported(req)?;
    let messages = req.parse_messages()?;
    let tools = req.parse_tools()?;
    let tool_choice = req.parse_tool_choice()?;
    let (system, turns) = convert_messages(&messages)?;

    let mut body = Map::new();
    body.insert("messages".into(), Value::Array(turns));
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }

    let thinking = if is_claude(ctx.upstream_model) {
        thinking_budget(req)?
    } else {
        None
    };
    let mut inference = Map::new();
    let mut max_tokens = req.max_output_tokens();
    let mut additional = Map::new();
    if let Some(budget) = thinking {
        let (max, budget) = fit_thinking(budget, output_limit(req, ctx), ctx.max_output)?;
        max_tokens = Some(max);
        additional.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    if let Some(m) = max_tokens {
        inference.insert("maxTokens".into(), m.into());
    }
    let thinking_on = thinking.is_some();
    if let Some(t) = req.temperature.filter(|_| !thinking_on) {
        let t = if is_claude(ctx.upstream_model) {
            t.clamp(0.0, 1.0)
        } else {
            t
        };
        inference.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p.filter(|p| !thinking_on || *p >= 0.95) {
        inference.insert("topP".into(), p.into());
    }
    if let Some(v) = req.stop.as_ref().and_then(stop_sequences) {
        inference.insert("stopSequences".into(), json!(v));
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }

    if !tools.is_empty() {
        let mut specs = Vec::with_capacity(tools.len() + 1);
        for t in &tools {
            if t.kind != "function" {
                return Err(unsupported(
                    "tools",
                    "this model only supports `function` tools",
                ));
            }
            let mut spec = Map::new();
            spec.insert("name".into(), Value::from(t.function.name.as_str()));
            if let Some(d) = t.function.description.as_deref().filter(|d| !d.is_empty()) {
                spec.insert("description".into(), Value::from(d));
            }
            let schema = t
                .function
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            spec.insert("inputSchema".into(), json!({ "json": schema }));
            specs.push(json!({ "toolSpec": spec }));
            if t.cache_control.is_some() {
                specs.push(cache_point());
            }
        }
        let mut config = Map::new();
        config.insert("tools".into(), Value::Array(specs));
        let choice = match tool_choice {
            None | Some(ToolChoice::None) => None,
            Some(ToolChoice::Auto) => Some(json!({"auto": {}})),
            Some(ToolChoice::Required) => Some(json!({"any": {}})),
            Some(ToolChoice::Function(name)) => Some(json!({"tool": {"name": name}})),
        };
        if thinking_on && choice.as_ref().is_some_and(|c| c.get("auto").is_none()) {
            return Err(unsupported(
                "tool_choice",
                "this model cannot force tool use while reasoning; use `auto` or turn reasoning off",
            ));
        }
        if let Some(c) = choice {
            config.insert("toolChoice".into(), c);
        }
        body.insert("toolConfig".into(), Value::Object(config));
    }
    if !additional.is_empty() {
        body.insert(
            "additionalModelRequestFields".into(),
            Value::Object(additional),
        );
    }
    Ok(Value::Object(body))
}

fn refuse_unsupported(req: &ChatRequest) -> Result<(), Error> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(unsupported(
            "n",
            "this model returns a single choice; `n` greater than 1 is not supported",
        ));
    }
    if req.logprobs == Some(true) || req.top_logprobs.is_some_and(|k| k > 0) {
        return Err(unsupported(
            "logprobs",
            "this model does not return log probabilities",
        ));
    }
    match req.parse_response_format()? {
        None | Some(ResponseFormat::Text) => Ok(()),
        Some(_) => Err(unsupported(
            "response_format",
            "Bedrock's Converse API has no structured output; use a tool instead",
        )),
    }
}

/// The thinking budget the client asked for, if any: as for Anthropic, with effort ratios of
/// the client's own output limit (not the catalog's), and an unknown effort reported against
/// `reasoning` whichever field held it.
fn thinking_budget(req: &ChatRequest) -> Result<Option<u32>, Error> {
    let base = req.max_output_tokens().unwrap_or(DEFAULT_MAX_TOKENS).max(1);
    claude::thinking_budget(req, base).map_err(|e| e.with_param("reasoning"))
}

fn cache_point() -> Value {
    json!({"cachePoint": {"type": "default"}})
}

/// System blocks and alternating turns.
fn convert_messages(messages: &[Message]) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn<Value>> = Vec::new();
    let mut images = 0usize;
    let mut docs = 0usize;
    for m in messages {
        let mut lead = Vec::new();
        let mut rest = Vec::new();
        let role = match m.role {
            Role::System | Role::Developer => {
                match &m.content {
                    Some(MessageContent::Text(s)) if !s.is_empty() => {
                        system.push(json!({ "text": s }));
                    }
                    None | Some(MessageContent::Text(_)) => {}
                    Some(MessageContent::Parts(parts)) => {
                        for p in parts {
                            let ContentPart::Text {
                                text,
                                cache_control,
                            } = p
                            else {
                                return Err(bad_message(
                                    "system and developer messages may only contain text",
                                ));
                            };
                            if !text.is_empty() {
                                system.push(json!({ "text": text }));
                            }
                            if cache_control.is_some() {
                                system.push(cache_point());
                            }
                        }
                    }
                }
                continue;
            }
            Role::User => {
                user_blocks(m.content.as_ref(), &mut rest, &mut images, &mut docs)?;
                Role::User
            }
            Role::Tool => {
                lead.push(tool_result(m, &mut images, &mut docs)?);
                Role::User
            }
            Role::Assistant => {
                if let Some(details) = &m.reasoning_details {
                    restore_reasoning(details, &mut lead);
                }
                assistant_blocks(m, &mut rest)?;
                Role::Assistant
            }
            Role::Function => return Err(function_message_refused()),
        };
        push_turn(&mut turns, role, lead, rest);
    }
    if images > MAX_IMAGES {
        return Err(bad_message(format!(
            "this model takes at most {MAX_IMAGES} images per request"
        )));
    }
    let turns = turns
        .into_iter()
        .map(|t| {
            let role = t.wire_role();
            let mut content = t.lead;
            content.extend(t.rest);
            json!({ "role": role, "content": content })
        })
        .collect();
    Ok((system, turns))
}

fn user_blocks(
    content: Option<&MessageContent>,
    out: &mut Vec<Value>,
    images: &mut usize,
    docs: &mut usize,
) -> Result<(), Error> {
    match content {
        Some(MessageContent::Text(s)) if !s.is_empty() => out.push(json!({ "text": s })),
        None | Some(MessageContent::Text(_)) => {}
        Some(MessageContent::Parts(parts)) => {
            for p in parts {
                part_blocks(p, out, images, docs)?;
            }
        }
    }
    Ok(())
}

fn part_blocks(
    part: &ContentPart,
    out: &mut Vec<Value>,
    images: &mut usize,
    docs: &mut usize,
) -> Result<(), Error> {
    let cached = match part {
        ContentPart::Text {
            text,
            cache_control,
        } => {
            if !text.is_empty() {
                out.push(json!({ "text": text }));
            }
            cache_control.is_some()
        }
        ContentPart::ImageUrl {
            image_url,
            cache_control,
        } => {
            *images += 1;
            out.push(image_block(&image_url.url)?);
            cache_control.is_some()
        }
        ContentPart::File { file } => {
            *docs += 1;
            out.push(document_block(file, *docs)?);
            false
        }
        ContentPart::InputAudio { .. } => {
            return Err(
                Error::invalid_request("this model does not accept audio input")
                    .with_code("unsupported_parameter")
                    .with_param("messages"),
            )
        }
    };
    if cached {
        out.push(cache_point());
    }
    Ok(())
}

/// `data:image/png;base64,…` → `{"image": {"format": "png", "source": {"bytes": …}}}`.
fn image_block(url: &str) -> Result<Value, Error> {
    let Some((media_type, data)) = parse_data_url(url) else {
        return Err(bad_message(
            "this model takes images as base64 `data:` URLs only (`data:image/png;base64,…`)",
        ));
    };
    let format = match media_type.to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => {
            return Err(bad_message(
                "this model takes PNG, JPEG, GIF or WebP images",
            ))
        }
    };
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

/// A PDF `file` part → a `document` block.
fn document_block(file: &Value, n: usize) -> Result<Value, Error> {
    let url = file.get("file_data").and_then(Value::as_str);
    match url.and_then(parse_data_url) {
        Some(("application/pdf", data)) => Ok(json!({"document": {
            "format": "pdf",
            "name": format!("document-{n}"),
            "source": {"bytes": data},
        }})),
        _ => Err(Error::invalid_request(
            "this model only accepts `file` parts carrying a PDF as a base64 `data:` URL in `file_data`",
        )
        .with_code("unsupported_parameter")
        .with_param("messages")),
    }
}

/// A `role: tool` message → a `toolResult` block. Text that is a JSON object or array is
/// sent as `{"json": …}`, other text as `{"text": …}`, images as `{"image": …}`.
fn tool_result(m: &Message, images: &mut usize, docs: &mut usize) -> Result<Value, Error> {
    let id = m
        .tool_call_id
        .as_deref()
        .ok_or_else(|| bad_message("`tool` messages need a `tool_call_id`"))?;
    let text_block = |s: &str| {
        let t = s.trim_start();
        if t.starts_with('{') || t.starts_with('[') {
            if let Ok(v) = serde_json::from_str::<Value>(s) {
                if v.is_object() {
                    return json!({ "json": v });
                }
            }
        }
        json!({ "text": s })
    };
    let mut content = Vec::new();
    match &m.content {
        Some(MessageContent::Text(s)) if !s.is_empty() => content.push(text_block(s)),
        None | Some(MessageContent::Text(_)) => {}
        Some(MessageContent::Parts(parts)) => {
            for p in parts {
                match p {
                    ContentPart::Text { text, .. } => {
                        if !text.is_empty() {
                            content.push(text_block(text));
                        }
                    }
                    other => part_blocks(other, &mut content, images, docs)?,
                }
            }
            content.retain(|b| b.get("cachePoint").is_none());
        }
    }
    if content.is_empty() {
        content.push(json!({"text": ""}));
    }
    Ok(json!({"toolResult": {"toolUseId": id, "content": content}}))
}

fn assistant_blocks(m: &Message, out: &mut Vec<Value>) -> Result<(), Error> {
    match &m.content {
        Some(MessageContent::Text(s)) if !s.is_empty() => out.push(json!({ "text": s })),
        None | Some(MessageContent::Text(_)) => {}
        Some(MessageContent::Parts(parts)) => {
            for p in parts {
                if let ContentPart::Text {
                    text,
                    cache_control,
                } = p
                {
                    if !text.is_empty() {
                        out.push(json!({ "text": text }));
                    }
                    if cache_control.is_some() {
                        out.push(cache_point());
                    }
                }
            }
        }
    }
    for call in m.tool_calls.iter().flatten() {
        let args = call.function.arguments.trim();
        let input = if args.is_empty() {
            json!({})
        } else {
            let v: Value = serde_json::from_str(args).map_err(|_| {
                bad_message(format!(
                    "the arguments of tool call `{}` are not valid JSON",
                    call.id
                ))
            })?;
            if !v.is_object() {
                return Err(bad_message(format!(
                    "the arguments of tool call `{}` must be a JSON object",
                    call.id
                )));
            }
            v
        };
        out.push(json!({"toolUse": {
            "toolUseId": call.id,
            "name": call.function.name,
            "input": input,
        }}));
    }
    Ok(())
}

/// Signed reasoning back as `reasoningContent` blocks: `reasoning.text` details with a
/// signature (fragments sharing an `index` merged) and `reasoning.encrypted` ones as
/// `redactedContent`. Details of other formats, and unsigned text, are skipped.
fn restore_reasoning(details: &[Value], out: &mut Vec<Value>) {
    out.extend(signed_reasoning(details).map(|r| match r {
        SignedReasoning::Text { text, signature } => json!({"reasoningContent": {
            "reasoningText": {"text": text, "signature": signature}
        }}),
        SignedReasoning::Redacted { data } => {
            json!({"reasoningContent": {"redactedContent": data}})
        }
    }));
}
