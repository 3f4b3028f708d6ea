//! Non-streaming responses: a Messages API answer becomes a [`ChatCompletion`], plus the
//! pieces the stream decoder shares (content blocks, usage, finish reasons, reasoning details).

use serde::Deserialize;
use serde_json::Value;

use super::error::{error_from_type, WireError};
use super::JSON_TOOL;
use crate::openai::{new_completion_id, ChatCompletion, FinishReason, Usage};
use crate::provider::claude::{self, serialize_input, AnswerMessage};
use crate::provider::DecodeContext;
use crate::Error;

/// Decodes a successful non-streaming body (an `error` object on 200 is an error).
pub(super) fn decode(body: &[u8], ctx: &DecodeContext) -> Result<ChatCompletion, Error> {
    let msg: WireResponse = serde_json::from_slice(body).map_err(|e| {
        Error::upstream("the provider sent an invalid response body")
            .with_source(Box::new(e) as crate::BoxError)
    })?;
    if msg.kind.as_deref() == Some("error") {
        let err = msg.error.unwrap_or_default();
        return Err(error_from_type(&err.kind, err.message));
    }

    let mut answer = AnswerMessage::default();
    let mut json_output = false;
    for block in msg.content {
        match block {
            RespBlock::Text { text } => answer.push_text(&text),
            RespBlock::ToolUse { name, input, .. } if name == JSON_TOOL => {
                json_output = true;
                answer.push_text(&serialize_input(&input));
            }
            RespBlock::ToolUse { id, name, input } => answer.push_tool_call(id, name, &input),
            RespBlock::Thinking {
                thinking,
                signature,
            } => answer.push_thinking(&thinking, signature.as_deref()),
            RespBlock::RedactedThinking { data } => answer.push_redacted(&data),
            RespBlock::Other => {}
        }
    }

    let native = msg.stop_reason;
    let finish = finish_reason(native.as_deref(), json_output && !answer.has_tool_calls());
    let id = if msg.id.is_empty() {
        new_completion_id()
    } else {
        msg.id
    };
    let usage = msg.usage.unwrap_or_default().to_openai();
    Ok(answer.into_completion(id, finish, native, usage, ctx))
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    content: Vec<RespBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

/// A content block of a response (or the start of one in a stream).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum RespBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        #[serde(default)]
        data: String,
    },
    #[serde(other)]
    Other,
}

/// Anthropic usage; every field optional because `message_delta` may carry only some.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Overwrites the fields `newer` reports (Anthropic's counts are cumulative).
    pub(super) fn update(&mut self, newer: &Self) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = newer
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    pub(super) fn to_openai(self) -> Usage {
        claude::usage(
            self.input_tokens.unwrap_or(0),
            self.output_tokens.unwrap_or(0),
            self.cache_read_input_tokens.unwrap_or(0),
            self.cache_creation_input_tokens.unwrap_or(0),
        )
    }
}

/// Normalises a `stop_reason`; `json_output`: the forced JSON tool answered.
pub(super) fn finish_reason(native: Option<&str>, json_output: bool) -> FinishReason {
    match native {
        None => FinishReason::Stop,
        Some("tool_use") if json_output => FinishReason::Stop,
        Some("model_context_window_exceeded") => FinishReason::Length,
        Some(s) => FinishReason::from_native(s),
    }
}
