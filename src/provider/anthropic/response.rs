//! Non-streaming responses: a Messages API answer becomes a [`ChatCompletion`], plus the
//! pieces the stream decoder shares (content blocks, usage, finish reasons, reasoning details).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{error_from_type, WireError};
use super::{JSON_TOOL, REASONING_FORMAT};
use crate::openai::{
    new_completion_id, unix_now, AssistantMessage, ChatCompletion, Choice, CompletionTokensDetails,
    FinishReason, FunctionCall, PromptTokensDetails, ToolCall, Usage,
};
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

    let mut text: Option<String> = None;
    let mut reasoning = String::new();
    let mut details = Vec::new();
    let mut tool_calls = Vec::new();
    let mut json_output = false;
    for block in msg.content {
        match block {
            RespBlock::Text { text: t } => text.get_or_insert_with(String::new).push_str(&t),
            RespBlock::ToolUse { id, name, input } => {
                let arguments = serialize_input(&input);
                if name == JSON_TOOL {
                    json_output = true;
                    text.get_or_insert_with(String::new).push_str(&arguments);
                } else {
                    tool_calls.push(ToolCall {
                        id,
                        kind: "function".to_owned(),
                        function: FunctionCall { name, arguments },
                    });
                }
            }
            RespBlock::Thinking {
                thinking,
                signature,
            } => {
                let index = details.len() as u32;
                details.push(text_detail(
                    (!thinking.is_empty()).then_some(thinking.as_str()),
                    signature.as_deref(),
                    index,
                ));
                reasoning.push_str(&thinking);
            }
            RespBlock::RedactedThinking { data } => {
                let index = details.len() as u32;
                details.push(encrypted_detail(&data, index));
            }
            RespBlock::Other => {}
        }
    }

    let native = msg.stop_reason;
    let finish = finish_reason(native.as_deref(), json_output && tool_calls.is_empty());
    let message = AssistantMessage {
        content: text,
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        reasoning: (!reasoning.is_empty()).then_some(reasoning),
        reasoning_details: (!details.is_empty()).then_some(details),
        ..AssistantMessage::default()
    };
    Ok(ChatCompletion {
        id: if msg.id.is_empty() {
            new_completion_id()
        } else {
            msg.id
        },
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: ctx.model.to_string(),
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(finish),
            native_finish_reason: native,
            logprobs: None,
        }],
        usage: Some(msg.usage.unwrap_or_default().to_openai()),
        system_fingerprint: None,
        service_tier: None,
        provider: Some(ctx.provider.to_string()),
    })
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
        let input = self.input_tokens.unwrap_or(0);
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        let output = self.output_tokens.unwrap_or(0);
        let prompt = input.saturating_add(read).saturating_add(write);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: output,
            total_tokens: prompt.saturating_add(output),
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

/// Normalises a `stop_reason`; `json_output`: the forced JSON tool answered.
pub(super) fn finish_reason(native: Option<&str>, json_output: bool) -> FinishReason {
    match native {
        None => FinishReason::Stop,
        Some("tool_use") if json_output => FinishReason::Stop,
        Some("model_context_window_exceeded") => FinishReason::Length,
        Some(s) => FinishReason::from_native(s),
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
