//! The canonical answer rendered as a Responses `response` object.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::openai::{ChatCompletion, FinishReason, Usage};
use crate::Error;

/// The prefix of an `encrypted_content` the gateway made: the canonical reasoning details,
/// as JSON, follow it.
pub(crate) const ENVELOPE: &str = "switchboard.v1:";

/// The request fields a response object repeats (`instructions`, `tools`, `metadata`, …),
/// and the model the client asked for.
#[derive(Debug, Clone)]
pub(crate) struct Echo {
    model: String,
    fields: Arc<Map<String, Value>>,
    /// The response's `id`: `resp_` and the generation id.
    id: String,
}

impl Echo {
    pub(crate) fn new(model: String, fields: Map<String, Value>) -> Self {
        Self {
            model,
            fields: Arc::new(fields),
            id: new_id("resp_"),
        }
    }

    /// The response id for the request's generation id (`resp_gen-…`).
    pub(crate) fn set_generation(&mut self, generation: &str) {
        self.id = format!("resp_{generation}");
    }

    /// The response's `id`.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The model the client asked for.
    pub(crate) fn model(&self) -> &str {
        &self.model
    }
}

/// A fresh id with `prefix` (`resp_`, `msg_`, `rs_`, `fc_`).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", crate::openai::unique_hex().as_str())
}

/// The canonical reasoning details as an `encrypted_content` the request side restores.
pub(crate) fn encode_reasoning(details: &[Value]) -> String {
    let json = serde_json::to_string(details).unwrap_or_else(|_| "[]".to_owned());
    format!("{ENVELOPE}{json}")
}

/// An `encrypted_content`: `None` when the gateway did not make it, `Some(Err)` when it did
/// but it is damaged.
pub(crate) fn decode_reasoning(enc: &str) -> Option<Result<Vec<Value>, ()>> {
    let json = enc.strip_prefix(ENVELOPE)?;
    Some(
        serde_json::from_str::<Vec<Value>>(json)
            .map_err(|_| ())
            .and_then(|d| {
                if d.iter().all(Value::is_object) {
                    Ok(d)
                } else {
                    Err(())
                }
            }),
    )
}

/// Details sharing an `index` and a type (streamed fragments) joined into one.
pub(crate) fn merge_details(details: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(details.len());
    for d in details {
        let index = d.get("index").and_then(Value::as_u64);
        let kind = d.get("type").and_then(Value::as_str);
        if let Some(last) = out.last_mut() {
            let same = index.is_some()
                && last.get("index").and_then(Value::as_u64) == index
                && last.get("type").and_then(Value::as_str) == kind;
            if same {
                if let (Some(obj), Some(new)) = (last.as_object_mut(), d.as_object()) {
                    for (k, v) in new {
                        // Text pieces are appended in place (not copied anew each time).
                        if let ("text" | "summary", Some(Value::String(a)), Value::String(b)) =
                            (k.as_str(), obj.get_mut(k), v)
                        {
                            a.push_str(b);
                            continue;
                        }
                        // An empty string does not overwrite what came before.
                        let empty = v.as_str() == Some("") && obj.contains_key(k);
                        if !v.is_null() && !empty {
                            obj.insert(k.clone(), v.clone());
                        }
                    }
                }
                continue;
            }
        }
        out.push(d.clone());
    }
    out
}

/// A reasoning output item.
pub(crate) fn reasoning_item(id: &str, text: &str, details: &[Value], status: &str) -> Value {
    let summary = if text.is_empty() {
        json!([])
    } else {
        json!([{"type": "summary_text", "text": text}])
    };
    let mut item = json!({"id": id, "type": "reasoning", "summary": summary, "status": status});
    if !details.is_empty() {
        item["encrypted_content"] = Value::String(encode_reasoning(&merge_details(details)));
    }
    item
}

/// The `output_text` content part.
pub(crate) fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// The `refusal` content part.
pub(crate) fn refusal_part(text: &str) -> Value {
    json!({"type": "refusal", "refusal": text})
}

/// A `message` output item.
pub(crate) fn message_item(id: &str, content: Vec<Value>, status: &str) -> Value {
    json!({"id": id, "type": "message", "role": "assistant", "status": status, "content": content})
}

/// A `function_call` output item.
pub(crate) fn call_item(id: &str, call_id: &str, name: &str, args: &str, status: &str) -> Value {
    json!({"id": id, "type": "function_call", "call_id": call_id, "name": name,
        "arguments": args, "status": status})
}

/// Usage in the Responses API's names, with the gateway's `cost` (absent when unpriced).
pub(crate) fn usage_json(u: Option<&Usage>) -> Value {
    let u = u.cloned().unwrap_or_default();
    let mut m = Map::new();
    m.insert("input_tokens".into(), Value::from(u.prompt_tokens));
    m.insert(
        "input_tokens_details".into(),
        json!({"cached_tokens": u.cached_tokens(), "cache_write_tokens": u.cache_write_tokens()}),
    );
    m.insert("output_tokens".into(), Value::from(u.completion_tokens));
    m.insert(
        "output_tokens_details".into(),
        json!({"reasoning_tokens": u.reasoning_tokens()}),
    );
    let total = if u.total_tokens > 0 {
        u.total_tokens
    } else {
        u.prompt_tokens.saturating_add(u.completion_tokens)
    };
    m.insert("total_tokens".into(), Value::from(total));
    if let Some(c) = u.cost {
        m.insert("cost".into(), json!(c));
    }
    Value::Object(m)
}

/// How an answer ended, for `status` and `incomplete_details`.
pub(crate) fn end_status(finish: Option<FinishReason>) -> (&'static str, Option<&'static str>) {
    match finish {
        Some(FinishReason::Length) => ("incomplete", Some("max_output_tokens")),
        Some(FinishReason::ContentFilter) => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// What a response object says besides the echoed request.
pub(crate) struct Head<'a> {
    pub(crate) id: &'a str,
    pub(crate) created_at: u64,
    pub(crate) model: &'a str,
    pub(crate) status: &'a str,
}

/// A response object.
pub(crate) fn response_object(
    head: &Head<'_>,
    echo: &Echo,
    output: Vec<Value>,
    usage: Option<Value>,
    incomplete: Option<&str>,
    error: Option<Value>,
) -> Value {
    let mut m = (*echo.fields).clone();
    m.insert("id".into(), Value::from(head.id));
    m.insert("object".into(), Value::from("response"));
    m.insert("created_at".into(), Value::from(head.created_at));
    m.insert("status".into(), Value::from(head.status));
    m.insert(
        "model".into(),
        Value::from(if head.model.is_empty() {
            echo.model()
        } else {
            head.model
        }),
    );
    m.insert("output".into(), Value::Array(output));
    m.insert("usage".into(), usage.unwrap_or(Value::Null));
    m.insert(
        "incomplete_details".into(),
        incomplete.map_or(Value::Null, |r| json!({ "reason": r })),
    );
    m.insert("error".into(), error.unwrap_or(Value::Null));
    Value::Object(m)
}

/// A whole completion as a response object.
pub(crate) fn response_json(c: &ChatCompletion, echo: &Echo) -> Value {
    let mut output = Vec::new();
    let mut finish = None;
    if let Some(choice) = c.choices.first() {
        let m = &choice.message;
        finish = choice.finish_reason;
        let details = m.reasoning_details.as_deref().unwrap_or_default();
        let text = m.reasoning.as_deref().unwrap_or_default();
        if !text.is_empty() || !details.is_empty() {
            let text = if text.is_empty() {
                reasoning_text(details)
            } else {
                text.to_owned()
            };
            output.push(reasoning_item(&new_id("rs_"), &text, details, "completed"));
        }
        let (status, _) = end_status(finish);
        let mut content = Vec::new();
        if let Some(t) = m.content.as_deref().filter(|t| !t.is_empty()) {
            content.push(text_part(t));
        }
        if let Some(r) = m.refusal.as_deref().filter(|t| !t.is_empty()) {
            content.push(refusal_part(r));
        }
        if !content.is_empty() {
            output.push(message_item(&new_id("msg_"), content, status));
        }
        for call in m.tool_calls.iter().flatten() {
            output.push(call_item(
                &new_id("fc_"),
                &call.id,
                &call.function.name,
                &call.function.arguments,
                "completed",
            ));
        }
    }
    let (status, incomplete) = end_status(finish);
    let head = Head {
        id: echo.id(),
        created_at: c.created,
        model: &c.model,
        status,
    };
    response_object(
        &head,
        echo,
        output,
        Some(usage_json(c.usage.as_ref())),
        incomplete,
        None,
    )
}

/// The text of `reasoning.text` details (when the answer has no `reasoning`).
pub(crate) fn reasoning_text(details: &[Value]) -> String {
    details
        .iter()
        .filter(|d| d.get("type").and_then(Value::as_str) == Some("reasoning.text"))
        .filter_map(|d| d.get("text").and_then(Value::as_str))
        .collect()
}

/// The `response.error` of a failed response: `code` from OpenAI's list, and the message.
pub(crate) fn failure(e: &Error) -> Value {
    let code = match e.kind() {
        crate::ErrorKind::RateLimited => "rate_limit_exceeded",
        crate::ErrorKind::InvalidRequest | crate::ErrorKind::UpstreamInvalidRequest => {
            "invalid_prompt"
        }
        _ => "server_error",
    };
    json!({"code": code, "message": e.message()})
}
