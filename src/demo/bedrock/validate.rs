//! Strict checks of a Converse body, and what the answer depends on.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::super::common::{sign, verify, words, Choice, Convo, ToolDef};

/// The signature domain of the demo's thinking.
pub(super) const THINKING_DOMAIN: &str = "bedrock-thinking";

/// A checked Converse request.
pub(super) struct Request {
    pub(super) convo: Convo,
    /// Words of every text in the request.
    pub(super) prompt_words: u64,
    /// Words before the last `cachePoint`, and a hash of that prefix.
    pub(super) cached: Option<(u64, u64)>,
}

const TOP_LEVEL: [&str; 10] = [
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "guardrailConfig",
    "performanceConfig",
    "promptVariables",
    "requestMetadata",
];

const BLOCKS: [&str; 9] = [
    "text",
    "image",
    "document",
    "toolUse",
    "toolResult",
    "cachePoint",
    "reasoningContent",
    "guardContent",
    "video",
];

/// Running word counts and the cache prefix.
#[derive(Default)]
struct Count {
    words: u64,
    prefix: Vec<u8>,
    cached: Option<(u64, u64)>,
}

impl Count {
    fn text(&mut self, t: &str) {
        self.words += words(t);
        self.prefix.extend_from_slice(t.as_bytes());
        self.prefix.push(0);
    }
    fn cache_point(&mut self) {
        self.cached = Some((self.words, super::super::common::hash64(&self.prefix)));
    }
}

fn cache_point(v: &Value, at: &str) -> Result<(), String> {
    match v.as_object() {
        Some(o) if o.len() == 1 && o.get("type").and_then(Value::as_str) == Some("default") => {
            Ok(())
        }
        _ => Err(format!("{at}.cachePoint: type must be \"default\"")),
    }
}

fn one_member<'a>(v: &'a Value, at: &str) -> Result<(&'a str, &'a Value), String> {
    let Some(o) = v.as_object() else {
        return Err(format!("{at}: must be an object"));
    };
    let mut it = o.iter();
    match (it.next(), it.next()) {
        (Some((k, v)), None) if BLOCKS.contains(&k.as_str()) => Ok((k.as_str(), v)),
        (Some((k, _)), None) => Err(format!("{at}: unknown content block member `{k}`")),
        _ => Err(format!(
            "{at}: a content block must have exactly one member (it is a union)"
        )),
    }
}

fn image(v: &Value, at: &str) -> Result<(), String> {
    let format = v.get("format").and_then(Value::as_str);
    if !matches!(format, Some("png" | "jpeg" | "gif" | "webp")) {
        return Err(format!("{at}.image.format: must be png, jpeg, gif or webp"));
    }
    match v.pointer("/source/bytes").and_then(Value::as_str) {
        Some(b)
            if !b.is_empty()
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')) =>
        {
            Ok(())
        }
        _ => Err(format!("{at}.image.source.bytes: must be base64 data")),
    }
}

/// Checks the body; the `ValidationException` message when it is refused.
pub(super) fn converse(o: &Map<String, Value>, model: &str) -> Result<Request, String> {
    for k in o.keys() {
        if !TOP_LEVEL.contains(&k.as_str()) {
            return Err(format!(
                "Malformed input request: extraneous key [{k}] is not permitted, please reformat your input and try again."
            ));
        }
    }
    let mut convo = Convo::default();
    let mut count = Count::default();
    if let Some(system) = o.get("system") {
        let Some(blocks) = system.as_array() else {
            return Err("system: must be a list".into());
        };
        for (i, b) in blocks.iter().enumerate() {
            let at = format!("system.{i}");
            match one_member(b, &at)? {
                ("text", Value::String(t)) if !t.is_empty() => count.text(t),
                ("cachePoint", v) => {
                    cache_point(v, &at)?;
                    count.cache_point();
                }
                _ => {
                    return Err(format!(
                        "{at}: system blocks are non-empty text or cachePoint"
                    ))
                }
            }
        }
    }

    // Tools first: the blocks are checked against them.
    let mut tool_names = HashSet::new();
    if let Some(tc) = o.get("toolConfig") {
        let Some(tools) = tc
            .get("tools")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
        else {
            return Err("toolConfig.tools: at least one tool is required".into());
        };
        for (i, t) in tools.iter().enumerate() {
            let at = format!("toolConfig.tools.{i}");
            if let Some(cp) = t.get("cachePoint") {
                cache_point(cp, &at)?;
                continue;
            }
            let Some(spec) = t.get("toolSpec") else {
                return Err(format!("{at}: toolSpec or cachePoint is required"));
            };
            let name = spec.get("name").and_then(Value::as_str).unwrap_or("");
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !name_ok {
                return Err(format!(
                    "{at}.toolSpec.name: must match [a-zA-Z0-9_-]{{1,64}}"
                ));
            }
            let Some(schema) = spec.pointer("/inputSchema/json").filter(|s| s.is_object()) else {
                return Err(format!(
                    "{at}.toolSpec.inputSchema.json: a JSON schema object is required"
                ));
            };
            if !tool_names.insert(name.to_owned()) {
                return Err(format!("{at}.toolSpec.name: tool names must be unique"));
            }
            convo.tools.push(ToolDef {
                name: name.to_owned(),
                schema: Some(schema.clone()),
            });
        }
        convo.choice = match tc.get("toolChoice") {
            None => Choice::Auto,
            Some(c) => match c
                .as_object()
                .map(|o| o.iter().collect::<Vec<_>>())
                .as_deref()
            {
                Some([(k, _)]) if k.as_str() == "auto" => Choice::Auto,
                Some([(k, _)]) if k.as_str() == "any" => Choice::Required,
                Some([(k, v)]) if k.as_str() == "tool" => {
                    let n = v.get("name").and_then(Value::as_str).unwrap_or("");
                    if !tool_names.contains(n) {
                        return Err("toolConfig.toolChoice.tool.name: no tool of that name".into());
                    }
                    Choice::Named(n.to_owned())
                }
                _ => return Err("toolConfig.toolChoice: exactly one of auto, any, tool".into()),
            },
        };
    }

    let Some(messages) = o
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return Err("messages: at least one message is required".into());
    };
    let mut last_role = "";
    let mut open_calls: HashSet<String> = HashSet::new();
    let mut any_tool_blocks = false;
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages.{i}");
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !matches!(role, "user" | "assistant") {
            return Err(format!("{at}.role: must be user or assistant"));
        }
        if i == 0 && role != "user" {
            return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
        }
        if role == last_role {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into());
        }
        last_role = role;
        let Some(content) = m
            .get("content")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
        else {
            return Err(format!(
                "{at}.content: at least one content block is required"
            ));
        };
        let answered = std::mem::take(&mut open_calls);
        let mut said = String::new();
        let mut images = 0;
        let mut result = None;
        for (j, b) in content.iter().enumerate() {
            let at = format!("{at}.content.{j}");
            match one_member(b, &at)? {
                ("text", Value::String(t)) => {
                    if t.trim().is_empty() {
                        return Err(format!("{at}.text: text content blocks must be non-empty"));
                    }
                    count.text(t);
                    if !said.is_empty() {
                        said.push(' ');
                    }
                    said.push_str(t);
                }
                ("image", v) => {
                    image(v, &at)?;
                    images += 1;
                }
                ("document", v) => {
                    if v.get("format").and_then(Value::as_str).is_none()
                        || v.get("name").and_then(Value::as_str).is_none()
                        || v.pointer("/source/bytes").and_then(Value::as_str).is_none()
                    {
                        return Err(format!(
                            "{at}.document: format, name and source.bytes are required"
                        ));
                    }
                }
                ("cachePoint", v) => {
                    cache_point(v, &at)?;
                    count.cache_point();
                }
                ("toolUse", v) if role == "assistant" => {
                    any_tool_blocks = true;
                    let id = v.get("toolUseId").and_then(Value::as_str).unwrap_or("");
                    let name = v.get("name").and_then(Value::as_str).unwrap_or("");
                    if id.is_empty()
                        || name.is_empty()
                        || !v.get("input").is_some_and(Value::is_object)
                    {
                        return Err(format!(
                            "{at}.toolUse: toolUseId, name and an object input are required"
                        ));
                    }
                    open_calls.insert(id.to_owned());
                }
                ("toolResult", v) if role == "user" => {
                    any_tool_blocks = true;
                    let id = v.get("toolUseId").and_then(Value::as_str).unwrap_or("");
                    if !answered.contains(id) {
                        return Err(format!("{at}.toolResult.toolUseId: the toolUseId does not match a toolUse block of the previous turn"));
                    }
                    if let Some(s) = v.get("status") {
                        if !matches!(s.as_str(), Some("success" | "error")) {
                            return Err(format!("{at}.toolResult.status: success or error"));
                        }
                    }
                    let Some(parts) = v.get("content").and_then(Value::as_array) else {
                        return Err(format!("{at}.toolResult.content: a list is required"));
                    };
                    let mut texts = Vec::new();
                    for (k, p) in parts.iter().enumerate() {
                        let pat = format!("{at}.toolResult.content.{k}");
                        match p
                            .as_object()
                            .map(|o| o.iter().collect::<Vec<_>>())
                            .as_deref()
                        {
                            Some([(k, Value::String(t))]) if k.as_str() == "text" => {
                                count.text(t);
                                texts.push(t.clone());
                            }
                            Some([(k, j)]) if k.as_str() == "json" => {
                                let t = j.to_string();
                                count.text(&t);
                                texts.push(t);
                            }
                            Some([(k, v)]) if k.as_str() == "image" => image(v, &pat)?,
                            Some([(k, _)]) if k.as_str() == "document" => {}
                            _ => return Err(format!("{pat}: one of text, json, image, document")),
                        }
                    }
                    result = Some(texts.join("; "));
                }
                ("reasoningContent", v) if role == "assistant" => {
                    if let Some(rt) = v.get("reasoningText") {
                        let text = rt.get("text").and_then(Value::as_str).unwrap_or("");
                        let sig = rt.get("signature").and_then(Value::as_str).unwrap_or("");
                        if !verify(THINKING_DOMAIN, text, sig) {
                            return Err(format!("{at}.reasoningContent.reasoningText.signature: Invalid signature in thinking block"));
                        }
                    } else if v.get("redactedContent").and_then(Value::as_str).is_none() {
                        return Err(format!(
                            "{at}.reasoningContent: reasoningText or redactedContent"
                        ));
                    }
                }
                (k, _) => return Err(format!("{at}.{k}: not allowed in a {role} message")),
            }
        }
        if role == "user" {
            convo.said = said;
            convo.images = images;
            convo.tool_result = result;
        }
    }
    if last_role != "user" && !open_calls.is_empty() {
        return Err("The conversation ends with toolUse blocks without their toolResult".into());
    }
    if any_tool_blocks && o.get("toolConfig").is_none() {
        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
    }

    if let Some(ic) = o.get("inferenceConfig") {
        let Some(ic) = ic.as_object() else {
            return Err("inferenceConfig: must be an object".into());
        };
        for (k, v) in ic {
            match k.as_str() {
                "maxTokens" => match v.as_u64() {
                    Some(n) if n >= 1 => convo.max_tokens = Some(n),
                    _ => return Err("inferenceConfig.maxTokens: must be at least 1".into()),
                },
                "temperature" | "topP" => {
                    if !v.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t)) {
                        return Err(format!("inferenceConfig.{k}: must be between 0 and 1"));
                    }
                }
                "stopSequences" => {
                    let Some(list) = v.as_array().filter(|l| l.len() <= 4) else {
                        return Err("inferenceConfig.stopSequences: at most 4".into());
                    };
                    convo.stop = list
                        .iter()
                        .map(|s| s.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or("inferenceConfig.stopSequences: strings")?;
                }
                other => {
                    return Err(format!("inferenceConfig: unknown member `{other}`"));
                }
            }
        }
    }
    if let Some(th) = o
        .get("additionalModelRequestFields")
        .and_then(|a| a.get("thinking"))
    {
        if !model.contains("anthropic.claude") {
            return Err("The model does not support thinking".into());
        }
        if th.get("type").and_then(Value::as_str) == Some("enabled") {
            let budget = th.get("budget_tokens").and_then(Value::as_u64).unwrap_or(0);
            if budget < 1024 {
                return Err(
                    "thinking.budget_tokens: Input should be greater than or equal to 1024".into(),
                );
            }
            if convo.max_tokens.is_none_or(|m| budget >= m) {
                return Err("max_tokens must be greater than thinking.budget_tokens".into());
            }
            if o.get("inferenceConfig")
                .and_then(|i| i.get("temperature"))
                .is_some()
            {
                return Err("temperature may only be set to 1 when thinking is enabled".into());
            }
            if matches!(convo.choice, Choice::Required | Choice::Named(_)) {
                return Err("Thinking may not be enabled when tool_choice forces tool use.".into());
            }
            convo.thinking = true;
        }
    }
    let _ = sign;
    Ok(Request {
        convo,
        prompt_words: count.words,
        cached: count.cached,
    })
}
