//! Streaming chunks.
//!
//! The types only; their JSON writer and reader ([`ChatCompletionChunk::write_json`],
//! [`ChatCompletionChunk::to_sse_event`], the decoder) live in the `json` module, which
//! depends on this module and not the other way round.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ErrorBody;
use super::response::{FinishReason, Usage};

/// One `chat.completion.chunk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Completion id, the same for every chunk of a stream.
    pub id: String,
    /// Always `chat.completion.chunk` (borrowed when it is: no allocation per chunk).
    #[serde(default = "chunk_object")]
    pub object: Cow<'static, str>,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// The model.
    #[serde(default)]
    pub model: String,
    /// Choice deltas (empty on the usage chunk).
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Usage, on the final chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Box<Usage>>,
    /// Backend fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// The provider that served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// A mid-stream error (the stream ends after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<ErrorBody>>,
    /// The provider's own stream events behind this chunk, when the request went in the
    /// provider's format (a same-format pass-through, see
    /// [`NativeRequest`](crate::ext::NativeRequest)): an edge of that format sends these bytes
    /// instead of rendering the chunk. Events that make no chunk of their own ride on the
    /// next one. Never part of the JSON.
    #[serde(skip)]
    pub native: Option<bytes::Bytes>,
}

/// The `object` of a chunk.
pub(crate) const CHUNK_OBJECT: &str = "chat.completion.chunk";

pub(crate) fn chunk_object() -> Cow<'static, str> {
    Cow::Borrowed(CHUNK_OBJECT)
}

impl ChatCompletionChunk {
    /// An empty chunk with the given id, model and timestamp.
    pub fn new(id: impl Into<String>, model: impl Into<String>, created: u64) -> Self {
        Self {
            id: id.into(),
            object: chunk_object(),
            created,
            model: model.into(),
            choices: Vec::new(),
            usage: None,
            system_fingerprint: None,
            provider: None,
            error: None,
            native: None,
        }
    }

    /// Whether this chunk carries real output (text, reasoning, refusal or a tool call), the
    /// commit point of a stream. Role-only preambles and usage-only chunks do not.
    pub fn has_output(&self) -> bool {
        self.choices.iter().any(|c| {
            let d = &c.delta;
            d.content.as_deref().is_some_and(|s| !s.is_empty())
                || d.reasoning.as_deref().is_some_and(|s| !s.is_empty())
                || d.refusal.as_deref().is_some_and(|s| !s.is_empty())
                || d.tool_calls.as_ref().is_some_and(|t| !t.is_empty())
                || c.finish_reason.is_some()
        })
    }

    /// Whether this is a usage-only chunk (no choices, usage set).
    pub fn is_usage_only(&self) -> bool {
        self.choices.is_empty() && self.usage.is_some() && self.error.is_none()
    }

    /// The chunk that ends a stream broken after its start: a top-level `error` and a choice
    /// with `finish_reason: "error"`.
    pub fn error_chunk(id: &str, model: &str, created: u64, error: &crate::Error) -> Self {
        let mut c = Self::new(id, model, created);
        c.choices.push(ChunkChoice {
            index: 0,
            delta: Delta::default(),
            finish_reason: Some(FinishReason::Error),
            native_finish_reason: None,
            logprobs: None,
        });
        c.error = Some(Box::new(ErrorBody::from(error)));
        c
    }
}

/// One choice delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Choice index.
    #[serde(default)]
    pub index: u32,
    /// What is new.
    #[serde(default)]
    pub delta: Delta,
    /// Set on the last chunk of the choice.
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    /// The provider's own finish reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_finish_reason: Option<String>,
    /// Log probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
}

/// A message delta.
///
/// Read from JSON, `reasoning_content` (DeepSeek's name, also xAI's, vLLM's, SGLang's and
/// Together's) is taken as `reasoning` when `reasoning` itself is absent; it is never written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "DeltaWire")]
pub struct Delta {
    /// `assistant` on the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Text fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Reasoning fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// Structured reasoning fragments (signatures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_details: Option<Vec<Value>>,
    /// Refusal fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Tool-call fragments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// [`Delta`] as read: `reasoning_content` as well as `reasoning`.
#[derive(Deserialize)]
struct DeltaWire {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning_details: Option<Vec<Value>>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

impl From<DeltaWire> for Delta {
    fn from(w: DeltaWire) -> Self {
        Self {
            role: w.role,
            content: w.content,
            reasoning: w.reasoning.or(w.reasoning_content),
            reasoning_details: w.reasoning_details,
            refusal: w.refusal,
            tool_calls: w.tool_calls,
        }
    }
}

/// A tool-call fragment: id, type and name in the first, argument pieces after.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Stable index of the call within the message.
    pub index: u32,
    /// Call id (first fragment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function` (first fragment).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name and argument fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

/// A function name and/or argument fragment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    /// Name (first fragment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Arguments fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_small_to_move() {
        // Every stream wrapper moves each chunk; the rare parts (usage, error) are boxed.
        assert!(
            std::mem::size_of::<ChatCompletionChunk>() <= 200,
            "{}",
            std::mem::size_of::<ChatCompletionChunk>()
        );
    }
}
