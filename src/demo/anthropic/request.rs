//! Checks of the request's parts (tools, tool choice, thinking, system prompt, messages), as
//! strict as the real API's; they also collect the prompt-cache items.

use serde_json::{json, Map, Value};

use super::errors::{Bad, THINKING_DOCS};
use super::reply::SIGN_DOMAIN;
use crate::demo::common::{verify, words, Choice, ToolDef};
use crate::demo::wire::Reply;

const BLOCK_TAGS: &str = "'text', 'image', 'document', 'search_result', 'thinking', 'redacted_thinking', 'tool_use', 'tool_result', 'server_tool_use', 'web_search_tool_result'";

/// One message, as far as pairing and thinking checks need it.
pub(super) struct Msg {
    pub(super) assistant: bool,
    pub(super) tool_uses: Vec<String>,
    /// `(block index, tool_use_id)`.
    pub(super) tool_results: Vec<(usize, String)>,
    pub(super) result_texts: Vec<String>,
    pub(super) first_block: Option<String>,
    pub(super) text: String,
    pub(super) images: usize,
}

/// One piece of the prompt for the cache: its JSON, its words, whether it has a marker.
pub(super) struct CacheItem {
    pub(super) json: String,
    pub(super) words: u64,
    pub(super) marker: bool,
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

pub(super) fn tools(
    v: Option<&Value>,
    bad: Bad,
    cache: &mut Vec<CacheItem>,
) -> Result<Vec<ToolDef>, Reply> {
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

pub(super) fn tool_choice(
    v: Option<&Value>,
    tools: &[ToolDef],
    bad: Bad,
) -> Result<(Choice, bool), Reply> {
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

pub(super) fn thinking(v: Option<&Value>, max_tokens: u64, bad: Bad) -> Result<bool, Reply> {
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

pub(super) fn system(v: Option<&Value>, bad: Bad, cache: &mut Vec<CacheItem>) -> Result<(), Reply> {
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

pub(super) fn messages(
    v: Option<&Value>,
    bad: Bad,
    cache: &mut Vec<CacheItem>,
) -> Result<Vec<Msg>, Reply> {
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
pub(super) fn pairing(msgs: &[Msg], bad: Bad) -> Result<(), Reply> {
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
pub(super) fn final_assistant_thinking(msgs: &[Msg], bad: Bad) -> Result<(), Reply> {
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
