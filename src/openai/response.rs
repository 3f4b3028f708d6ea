//! Non-streaming completions and usage.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::message::ToolCall;

/// A whole chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// Completion id.
    pub id: String,
    /// Always `chat.completion`.
    #[serde(default = "completion_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// The model that answered (the gateway writes the id the client knows).
    pub model: String,
    /// The choices.
    pub choices: Vec<Choice>,
    /// Token usage (and, with a CostMeter, cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Backend fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Service tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// The provider that served (OpenRouter's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

fn completion_object() -> String {
    "chat.completion".to_owned()
}

/// One choice of a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Choice index.
    #[serde(default)]
    pub index: u32,
    /// The assistant message.
    pub message: AssistantMessage,
    /// Why generation stopped, normalised.
    pub finish_reason: Option<FinishReason>,
    /// The provider's own finish reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_finish_reason: Option<String>,
    /// Log probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
}

/// The assistant's answer.
///
/// Read from JSON, `reasoning_content` (DeepSeek's name for the reasoning text, also used by
/// xAI, vLLM, SGLang and Together) is taken as `reasoning` when `reasoning` itself is absent;
/// it is never written back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "AssistantMessageWire")]
pub struct AssistantMessage {
    /// Always `assistant`.
    #[serde(default = "assistant_role")]
    pub role: String,
    /// Text (null when the answer is only tool calls).
    #[serde(default)]
    pub content: Option<String>,
    /// Refusal text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Reasoning text (OpenRouter's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// Structured reasoning with signatures, to be sent back on the next turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_details: Option<Vec<Value>>,
    /// Annotations (citations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
}

impl Default for AssistantMessage {
    fn default() -> Self {
        Self {
            role: assistant_role(),
            content: None,
            refusal: None,
            tool_calls: None,
            reasoning: None,
            reasoning_details: None,
            annotations: None,
        }
    }
}

/// [`AssistantMessage`] as read: `reasoning_content` as well as `reasoning`.
#[derive(Deserialize)]
struct AssistantMessageWire {
    #[serde(default = "assistant_role")]
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning_details: Option<Vec<Value>>,
    #[serde(default)]
    annotations: Option<Value>,
}

impl From<AssistantMessageWire> for AssistantMessage {
    fn from(w: AssistantMessageWire) -> Self {
        Self {
            role: w.role,
            content: w.content,
            refusal: w.refusal,
            tool_calls: w.tool_calls,
            reasoning: w.reasoning.or(w.reasoning_content),
            reasoning_details: w.reasoning_details,
            annotations: w.annotations,
        }
    }
}

pub(crate) fn assistant_role() -> String {
    "assistant".to_owned()
}

/// Why generation stopped, normalised across providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// The output cap was reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// Output was filtered.
    ContentFilter,
    /// Generation failed.
    Error,
}

impl FinishReason {
    /// The OpenAI name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
            Self::Error => "error",
        }
    }

    /// Normalises a provider's own value (OpenAI, Anthropic, Gemini spellings).
    pub fn from_native(s: &str) -> Self {
        match s {
            "length" | "max_tokens" | "MAX_TOKENS" | "model_length" => Self::Length,
            "tool_calls" | "function_call" | "tool_use" => Self::ToolCalls,
            "content_filter" | "refusal" | "SAFETY" | "RECITATION" | "PROHIBITED_CONTENT"
            | "BLOCKLIST" | "SPII" | "IMAGE_SAFETY" => Self::ContentFilter,
            "error" | "MALFORMED_FUNCTION_CALL" | "OTHER" => Self::Error,
            _ => Self::Stop,
        }
    }
}

impl Serialize for FinishReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FinishReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Self::from_native(&s))
    }
}

/// Token usage in OpenAI semantics: cached ⊂ prompt, reasoning ⊂ completion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens, cached and cache-write included.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output tokens, reasoning included.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Sum of both.
    #[serde(default)]
    pub total_tokens: u64,
    /// Breakdown of prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Breakdown of completion tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// Cost in USD, set by the CostMeter; `null` when the serving target has no prices.
    #[serde(default)]
    pub cost: Option<f64>,
    /// Cost breakdown (set by the CostMeter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_details: Option<CostDetails>,
}

/// `usage.cost_details`: the parts of `usage.cost`, in USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CostDetails {
    /// Uncached input tokens.
    pub input: f64,
    /// Output tokens (reasoning included).
    pub output: f64,
    /// Input tokens read from the prompt cache.
    pub cached_input: f64,
    /// Input tokens written to the prompt cache.
    pub cache_write: f64,
    /// The per-request price.
    pub request: f64,
}

impl Usage {
    /// Tokens read from the provider's prompt cache.
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .as_ref()
            .map_or(0, |d| d.cached_tokens)
    }

    /// Tokens written to the provider's prompt cache.
    pub fn cache_write_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cache_write_tokens)
            .unwrap_or(0)
    }

    /// Reasoning tokens.
    pub fn reasoning_tokens(&self) -> u64 {
        self.completion_tokens_details
            .as_ref()
            .map_or(0, |d| d.reasoning_tokens)
    }
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Tokens served from the prompt cache.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Tokens written to the prompt cache (Anthropic cache creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    /// Audio input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u64>,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    /// Reasoning tokens.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Audio output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u64>,
    /// Accepted predicted-output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_prediction_tokens: Option<u64>,
    /// Rejected predicted-output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_prediction_tokens: Option<u64>,
}
