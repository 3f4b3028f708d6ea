//! Non-streaming answers: a Converse response becomes a [`ChatCompletion`], plus the pieces
//! the stream decoder shares (usage, finish reasons, reasoning details).

use serde::Deserialize;
use serde_json::Value;

use crate::openai::{new_completion_id, ChatCompletion, FinishReason, Usage};
use crate::provider::claude::{self, AnswerMessage};
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
    let mut answer = AnswerMessage::default();
    for block in output.message.content {
        if let Some(t) = block.text {
            answer.push_text(&t);
        } else if let Some(tu) = block.tool_use {
            answer.push_tool_call(tu.tool_use_id, tu.name, &tu.input);
        } else if let Some(rc) = block.reasoning_content {
            if let Some(rt) = rc.reasoning_text {
                answer.push_thinking(&rt.text, rt.signature.as_deref());
            } else if let Some(data) = rc.redacted_content {
                answer.push_redacted(&data);
            }
        }
    }
    let native = resp.stop_reason;
    let finish = finish_reason(native.as_deref());
    let usage = resp.usage.unwrap_or_default().to_openai();
    Ok(answer.into_completion(new_completion_id(), finish, native, usage, ctx))
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
        claude::usage(
            self.input_tokens,
            self.output_tokens,
            self.cache_read_input_tokens,
            self.cache_write_input_tokens,
        )
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
