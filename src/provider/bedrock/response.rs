//! Non-streaming answers: a Converse response becomes a [`ChatCompletion`], plus the pieces
//! the stream decoder shares (usage, finish reasons, reasoning details).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::REASONING_FORMAT;
use crate::openai::{
    new_completion_id, unix_now, AssistantMessage, ChatCompletion, Choice, CompletionTokensDetails,
    FinishReason, FunctionCall, PromptTokensDetails, ToolCall, Usage,
};
use crate::provider::DecodeContext;
use crate::Error;

/// Decodes a successful `/converse` body.
pub(super) fn decode(body: &[u8], ctx: &DecodeContext) -> Result<ChatCompletion, Error> {
    let resp: WireResponse = serde_json::from_slice(body).map_err(|e| {
        Error::upstream("the provider sent an invalid response body")
            .with_source(Box::new(e) as crate::BoxError)
    })?;
    let Some(output) = resp.output else {
        return Err(Error::upstream(
            "the provider's response has no `output.message`",
        ));
    };
    let mut text: Option<String> = None;
    let mut reasoning = String::new();
    let mut details = Vec::new();
    let mut tool_calls = Vec::new();
    for block in output.message.content {
        if let Some(t) = block.text {
            text.get_or_insert_with(String::new).push_str(&t);
        } else if let Some(tu) = block.tool_use {
            tool_calls.push(ToolCall {
                id: tu.tool_use_id,
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: tu.name,
                    arguments: serialize_input(&tu.input),
                },
            });
        } else if let Some(rc) = block.reasoning_content {
            let index = details.len() as u32;
            if let Some(rt) = rc.reasoning_text {
                details.push(text_detail(
                    Some(rt.text.as_str()).filter(|t| !t.is_empty()),
                    rt.signature.as_deref(),
                    index,
                ));
                reasoning.push_str(&rt.text);
            } else if let Some(data) = rc.redacted_content {
                details.push(encrypted_detail(&data, index));
            }
        }
    }
    let native = resp.stop_reason;
    let message = AssistantMessage {
        content: text,
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        reasoning: (!reasoning.is_empty()).then_some(reasoning),
        reasoning_details: (!details.is_empty()).then_some(details),
        ..AssistantMessage::default()
    };
    Ok(ChatCompletion {
        id: new_completion_id(),
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: ctx.model.to_string(),
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(finish_reason(native.as_deref())),
            native_finish_reason: native,
            logprobs: None,
        }],
        usage: Some(resp.usage.unwrap_or_default().to_openai()),
        system_fingerprint: None,
        service_tier: None,
        provider: Some(ctx.provider.to_string()),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    output: Option<WireOutput>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireOutput {
    message: WireMessage,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Vec<WireBlock>,
}

/// A content block of an answer: a union, exactly one member set.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBlock {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<WireToolUse>,
    #[serde(default)]
    reasoning_content: Option<WireReasoning>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireToolUse {
    #[serde(default)]
    tool_use_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    input: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReasoning {
    #[serde(default)]
    reasoning_text: Option<WireReasoningText>,
    #[serde(default)]
    redacted_content: Option<String>,
}

#[derive(Deserialize)]
struct WireReasoningText {
    #[serde(default)]
    text: String,
    #[serde(default)]
    signature: Option<String>,
}

/// Converse usage: `inputTokens` excludes the cache reads and writes.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
}

impl WireUsage {
    /// OpenAI semantics: `prompt_tokens` = input + cache read + cache write, `cached_tokens` =
    /// cache read, `cache_write_tokens` = cache write.
    pub(super) fn to_openai(self) -> Usage {
        let read = self.cache_read_input_tokens;
        let write = self.cache_write_input_tokens;
        let prompt = self.input_tokens.saturating_add(read).saturating_add(write);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: self.output_tokens,
            total_tokens: prompt.saturating_add(self.output_tokens),
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: read,
                cache_write_tokens: (write > 0).then_some(write),
                audio_tokens: None,
            }),
            completion_tokens_details: Some(CompletionTokensDetails::default()),
            cost: None,
            cost_details: None,
        }
    }
}

/// Normalises a `stopReason`.
pub(super) fn finish_reason(native: Option<&str>) -> FinishReason {
    match native {
        None | Some("end_turn" | "stop_sequence") => FinishReason::Stop,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("guardrail_intervened" | "content_filtered") => FinishReason::ContentFilter,
        Some("malformed_model_output" | "malformed_tool_use") => FinishReason::Error,
        Some(other) => FinishReason::from_native(other),
    }
}

fn serialize_input(input: &Value) -> String {
    if input.is_null() {
        return "{}".to_owned();
    }
    serde_json::to_string(input).unwrap_or_else(|_| "{}".to_owned())
}

pub(super) fn text_detail(text: Option<&str>, signature: Option<&str>, index: u32) -> Value {
    let mut m = Map::with_capacity(5);
    m.insert("type".into(), Value::from("reasoning.text"));
    if let Some(t) = text {
        m.insert("text".into(), Value::from(t));
    }
    if let Some(s) = signature {
        m.insert("signature".into(), Value::from(s));
    }
    m.insert("format".into(), Value::from(REASONING_FORMAT));
    m.insert("index".into(), Value::from(index));
    Value::Object(m)
}

pub(super) fn encrypted_detail(data: &str, index: u32) -> Value {
    let mut m = Map::with_capacity(4);
    m.insert("type".into(), Value::from("reasoning.encrypted"));
    m.insert("data".into(), Value::from(data));
    m.insert("format".into(), Value::from(REASONING_FORMAT));
    m.insert("index".into(), Value::from(index));
    Value::Object(m)
}
