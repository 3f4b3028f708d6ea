//! Claude's conventions, shared by the two codecs that carry its content blocks: the
//! [Anthropic Messages](super::anthropic) codec and [Bedrock's Converse](super::bedrock) codec
//! (whose `reasoningContent` and `toolUse` blocks are Anthropic's in another envelope).
//!
//! Each codec keeps its own wire types, finish-reason table and errors; what is here is the
//! logic both follow to the letter: extended-thinking budgets, OpenRouter-style
//! `reasoning_details` (read back from a request, written into an answer or a stream), tool
//! input, usage with cache reads and writes, base64 `data:` URLs, and the grouping of
//! messages into alternating turns.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{unsupported, DecodeContext, EncodeContext};
use crate::openai::{
    unix_now, AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatRequest, Choice,
    ChunkChoice, CompletionTokensDetails, Delta, FinishReason, FunctionCall, FunctionCallDelta,
    PromptTokensDetails, Role, ToolCall, ToolCallDelta, Usage,
};
use crate::Error;

/// OpenRouter's `format` tag for Claude's reasoning details.
pub(super) const REASONING_FORMAT: &str = "anthropic-claude-v1";

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// The output limit when neither the client nor the catalog sets one.
pub(super) const DEFAULT_MAX_TOKENS: u32 = 4096;
/// Claude's smallest thinking budget.
const MIN_THINKING_BUDGET: u32 = 1024;
/// The largest budget derived from an effort level (OpenRouter's cap).
const MAX_EFFORT_BUDGET: u32 = 128_000;

/// The output limit asked for: the client's, else the catalog's `max_output`, else
/// [`DEFAULT_MAX_TOKENS`]; at least 1.
pub(super) fn output_limit(req: &ChatRequest, ctx: &EncodeContext<'_>) -> u32 {
    req.max_output_tokens()
        .or(ctx.max_output)
        .unwrap_or(DEFAULT_MAX_TOKENS)
        .max(1)
}

/// The thinking budget the client asked for, if any: `reasoning.max_tokens` (at least
/// [`MIN_THINKING_BUDGET`]; zero turns thinking off), else an effort level as OpenRouter's
/// share of `base` (`minimal` 10 %, `low` 20 %, `medium` 50 %, `high` 80 %, `xhigh` 95 %)
/// clamped to `1024..=128000`; `enabled: true` alone means `medium`; `enabled: false` and
/// effort `none` turn thinking off. An unknown effort is a 400 naming the field it was in.
pub(super) fn thinking_budget(req: &ChatRequest, base: u32) -> Result<Option<u32>, Error> {
    let (effort, param) = match &req.reasoning {
        Some(r) if r.enabled == Some(false) => return Ok(None),
        Some(r) if r.max_tokens.is_some() => {
            return Ok(r
                .max_tokens
                .filter(|b| *b > 0)
                .map(|b| b.max(MIN_THINKING_BUDGET)));
        }
        Some(r) if r.effort.is_some() => (r.effort.as_deref(), "reasoning.effort"),
        Some(r) if r.enabled == Some(true) => (Some("medium"), "reasoning.enabled"),
        _ => (req.reasoning_effort.as_deref(), "reasoning_effort"),
    };
    let Some(effort) = effort else {
        return Ok(None);
    };
    let ratio = match effort {
        "none" => return Ok(None),
        "minimal" => 0.1,
        "low" => 0.2,
        "medium" => 0.5,
        "high" => 0.8,
        "xhigh" => 0.95,
        _ => {
            return Err(Error::invalid_request(format!(
                "unknown reasoning effort `{effort}` (expected none, minimal, low, medium, high or xhigh)"
            ))
            .with_param(param))
        }
    };
    let budget = (f64::from(base) * ratio) as u32;
    Ok(Some(budget.clamp(MIN_THINKING_BUDGET, MAX_EFFORT_BUDGET)))
}

/// The output limit and thinking budget to send, as `(max_tokens, budget)`. A budget below
/// `base` (the output limit asked for) fits as it is; a larger one gets room for an answer of
/// `base` tokens on top, within the model's `cap`, and shrinks below the limit if it must.
/// A 400 when less than [`MIN_THINKING_BUDGET`] is left for thinking.
pub(super) fn fit_thinking(
    mut budget: u32,
    base: u32,
    cap: Option<u32>,
) -> Result<(u32, u32), Error> {
    let mut max_tokens = base;
    if budget >= max_tokens {
        // Room for the answer on top of the thinking budget, within the model's cap.
        max_tokens = budget.saturating_add(base);
        if let Some(cap) = cap {
            max_tokens = max_tokens.min(cap.max(base));
        }
        if budget >= max_tokens {
            budget = max_tokens.saturating_sub(1);
        }
        if budget < MIN_THINKING_BUDGET {
            return Err(unsupported(
                "reasoning",
                "the model's output limit is too small for extended thinking",
            ));
        }
    }
    Ok((max_tokens, budget))
}

/// One signed reasoning block to send back to Claude.
pub(super) enum SignedReasoning<'a> {
    /// A `thinking` block: the text (fragments merged) and its signature.
    Text {
        text: Cow<'a, str>,
        signature: &'a str,
    },
    /// A `redacted_thinking` block's encrypted data.
    Redacted { data: &'a str },
}

/// The signed reasoning in OpenRouter-style `reasoning_details`, in order: `reasoning.text`
/// entries with a signature (entries sharing an `index`, a stream's fragments, merged into
/// one) and `reasoning.encrypted` ones. Entries of other formats, and unsigned text, are
/// skipped.
pub(super) fn signed_reasoning(details: &[Value]) -> impl Iterator<Item = SignedReasoning<'_>> {
    enum Entry<'a> {
        Text {
            text: Cow<'a, str>,
            signature: Option<&'a str>,
        },
        Encrypted {
            data: &'a str,
        },
    }
    let mut entries: Vec<Entry<'_>> = Vec::new();
    // `index` → the position of the text entry with that index (one per index), so that
    // merging a fragment is a lookup rather than a search through every earlier entry.
    let mut by_index: HashMap<u64, usize> = HashMap::new();
    for d in details {
        let format = d.get("format").and_then(Value::as_str);
        if format.is_some_and(|f| f != REASONING_FORMAT) {
            continue;
        }
        match d.get("type").and_then(Value::as_str) {
            Some("reasoning.text") => {
                let index = d.get("index").and_then(Value::as_u64);
                let text = d.get("text").and_then(Value::as_str).unwrap_or("");
                let signature = d
                    .get("signature")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty());
                let existing = index.and_then(|i| by_index.get(&i)).and_then(|&at| {
                    match entries.get_mut(at) {
                        Some(Entry::Text {
                            text: t,
                            signature: sig,
                        }) => Some((t, sig)),
                        _ => None,
                    }
                });
                match existing {
                    Some((t, sig)) => {
                        if !text.is_empty() {
                            t.to_mut().push_str(text);
                        }
                        if signature.is_some() {
                            *sig = signature;
                        }
                    }
                    None => {
                        if let Some(i) = index {
                            by_index.insert(i, entries.len());
                        }
                        entries.push(Entry::Text {
                            text: Cow::Borrowed(text),
                            signature,
                        });
                    }
                }
            }
            Some("reasoning.encrypted") => {
                if let Some(data) = d.get("data").and_then(Value::as_str) {
                    entries.push(Entry::Encrypted { data });
                }
            }
            _ => {}
        }
    }
    entries.into_iter().filter_map(|e| match e {
        Entry::Text {
            text,
            signature: Some(signature),
        } => Some(SignedReasoning::Text { text, signature }),
        Entry::Text { .. } => None,
        Entry::Encrypted { data } => Some(SignedReasoning::Redacted { data }),
    })
}

/// Splits a base64 `data:` URL into media type and payload.
pub(super) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (header, data) = rest.split_once(',')?;
    let mut params = header.split(';');
    let media_type = params.next().filter(|m| !m.is_empty())?;
    params
        .any(|p| p.eq_ignore_ascii_case("base64"))
        .then_some((media_type, data))
}

/// The 400 for a legacy `function` message.
pub(super) fn function_message_refused() -> Error {
    Error::invalid_request(
        "legacy `function` messages are not supported by this model; use `tool` messages",
    )
    .with_code("unsupported_parameter")
    .with_param("messages")
}

/// One conversation turn being assembled from a codec's blocks `B`: `lead` blocks go first
/// (tool results in a user turn, reasoning in an assistant turn), then the rest in order.
pub(super) struct Turn<B> {
    pub(super) role: Role,
    pub(super) lead: Vec<B>,
    pub(super) rest: Vec<B>,
}

impl<B> Turn<B> {
    /// The turn's wire role: `assistant`, or `user` (which also carries tool results).
    pub(super) fn wire_role(&self) -> &'static str {
        if self.role == Role::Assistant {
            "assistant"
        } else {
            "user"
        }
    }
}

/// Adds one message's blocks to `turns`: consecutive messages of one role share a turn, and a
/// message without blocks adds none.
pub(super) fn push_turn<B>(
    turns: &mut Vec<Turn<B>>,
    role: Role,
    mut lead: Vec<B>,
    mut rest: Vec<B>,
) {
    if lead.is_empty() && rest.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(t) if t.role == role => {
            t.lead.append(&mut lead);
            t.rest.append(&mut rest);
        }
        _ => turns.push(Turn { role, lead, rest }),
    }
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

/// A tool call's arguments: its `input` serialized (`{}` for none).
pub(super) fn serialize_input(input: &Value) -> String {
    if input.is_null() {
        return "{}".to_owned();
    }
    serde_json::to_string(input).unwrap_or_else(|_| "{}".to_owned())
}

/// A `reasoning.text` detail: thinking text and/or its signature.
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

/// A `reasoning.encrypted` detail: redacted thinking.
pub(super) fn encrypted_detail(data: &str, index: u32) -> Value {
    let mut m = Map::with_capacity(4);
    m.insert("type".into(), Value::from("reasoning.encrypted"));
    m.insert("data".into(), Value::from(data));
    m.insert("format".into(), Value::from(REASONING_FORMAT));
    m.insert("index".into(), Value::from(index));
    Value::Object(m)
}

/// OpenAI usage from Claude's counts, in which `input` excludes the cache: `prompt_tokens` =
/// input + cache reads + cache writes, `cached_tokens` = cache reads, `cache_write_tokens` =
/// cache writes (when there are any). Thinking is not counted apart from the output.
pub(super) fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Usage {
    let prompt = input.saturating_add(cache_read).saturating_add(cache_write);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: output,
        total_tokens: prompt.saturating_add(output),
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: cache_read,
            cache_write_tokens: (cache_write > 0).then_some(cache_write),
            audio_tokens: None,
        }),
        completion_tokens_details: Some(CompletionTokensDetails::default()),
        cost: None,
        cost_details: None,
    }
}

/// The assistant message of a whole answer, assembled from its content blocks in order.
#[derive(Default)]
pub(super) struct AnswerMessage {
    text: Option<String>,
    reasoning: String,
    details: Vec<Value>,
    tool_calls: Vec<ToolCall>,
}

impl AnswerMessage {
    /// Text for `content`.
    pub(super) fn push_text(&mut self, text: &str) {
        self.text.get_or_insert_with(String::new).push_str(text);
    }

    /// A tool call (arguments: the serialized `input`).
    pub(super) fn push_tool_call(&mut self, id: String, name: String, input: &Value) {
        self.tool_calls.push(ToolCall {
            id,
            kind: "function".to_owned(),
            function: FunctionCall {
                name,
                arguments: serialize_input(input),
            },
        });
    }

    /// A thinking block: its text joins `reasoning`; a `reasoning.text` detail keeps it with
    /// its signature.
    pub(super) fn push_thinking(&mut self, text: &str, signature: Option<&str>) {
        let index = self.details.len() as u32;
        self.details.push(text_detail(
            (!text.is_empty()).then_some(text),
            signature,
            index,
        ));
        self.reasoning.push_str(text);
    }

    /// A redacted thinking block, as a `reasoning.encrypted` detail.
    pub(super) fn push_redacted(&mut self, data: &str) {
        let index = self.details.len() as u32;
        self.details.push(encrypted_detail(data, index));
    }

    /// Whether any tool call was added.
    pub(super) fn has_tool_calls(&self) -> bool {
        !self.tool_calls.is_empty()
    }

    /// The completion of one choice carrying this message.
    pub(super) fn into_completion(
        self,
        id: String,
        finish: FinishReason,
        native_finish_reason: Option<String>,
        usage: Usage,
        ctx: &DecodeContext,
    ) -> ChatCompletion {
        let message = AssistantMessage {
            content: self.text,
            tool_calls: (!self.tool_calls.is_empty()).then_some(self.tool_calls),
            reasoning: (!self.reasoning.is_empty()).then_some(self.reasoning),
            reasoning_details: (!self.details.is_empty()).then_some(self.details),
            ..AssistantMessage::default()
        };
        ChatCompletion {
            id,
            object: "chat.completion".to_owned(),
            created: unix_now(),
            model: ctx.model.to_string(),
            choices: vec![Choice {
                index: 0,
                message,
                finish_reason: Some(finish),
                native_finish_reason,
                logprobs: None,
            }],
            usage: Some(usage),
            system_fingerprint: None,
            service_tier: None,
            provider: Some(ctx.provider.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

/// What every chunk of one streamed answer repeats: the completion id, model, `created` and
/// provider name.
#[derive(Debug)]
pub(super) struct ChunkHead {
    ctx: DecodeContext,
    provider: String,
    /// The completion id, set when the message starts.
    pub(super) id: String,
    /// The answer's timestamp, set when the message starts.
    pub(super) created: u64,
}

impl ChunkHead {
    pub(super) fn new(ctx: DecodeContext) -> Self {
        Self {
            provider: ctx.provider.to_string(),
            ctx,
            id: String::new(),
            created: 0,
        }
    }

    /// A chunk without choices.
    pub(super) fn chunk(&self) -> ChatCompletionChunk {
        let mut c = ChatCompletionChunk::new(self.id.as_str(), &*self.ctx.model, self.created);
        c.provider = Some(self.provider.clone());
        c
    }

    /// A chunk carrying `delta` for choice 0.
    pub(super) fn delta(&self, delta: Delta) -> ChatCompletionChunk {
        let mut c = self.chunk();
        c.choices.push(ChunkChoice {
            index: 0,
            delta,
            finish_reason: None,
            native_finish_reason: None,
            logprobs: None,
        });
        c
    }
}

/// The delta that starts tool call `index`: its id, type and name, and empty arguments.
pub(super) fn tool_call_start(index: u32, id: String, name: String) -> Delta {
    Delta {
        tool_calls: Some(vec![ToolCallDelta {
            index,
            id: Some(id),
            kind: Some("function".to_owned()),
            function: Some(FunctionCallDelta {
                name: Some(name),
                arguments: Some(String::new()),
            }),
        }]),
        ..Delta::default()
    }
}

/// A fragment of the arguments of tool call `index`.
pub(super) fn tool_call_arguments(index: u32, arguments: String) -> Delta {
    Delta {
        tool_calls: Some(vec![ToolCallDelta {
            index,
            id: None,
            kind: None,
            function: Some(FunctionCallDelta {
                name: None,
                arguments: Some(arguments),
            }),
        }]),
        ..Delta::default()
    }
}

/// A fragment of thinking text, as `reasoning` and in the `reasoning.text` detail `index`.
pub(super) fn thinking_delta(text: String, index: u32) -> Delta {
    let detail = text_detail(Some(&text), None, index);
    Delta {
        reasoning: Some(text),
        reasoning_details: Some(vec![detail]),
        ..Delta::default()
    }
}

/// The signature of the `reasoning.text` detail `index`.
pub(super) fn signature_delta(signature: &str, index: u32) -> Delta {
    Delta {
        reasoning_details: Some(vec![text_detail(None, Some(signature), index)]),
        ..Delta::default()
    }
}

/// Redacted thinking, as the `reasoning.encrypted` detail `index`.
pub(super) fn redacted_delta(data: &str, index: u32) -> Delta {
    Delta {
        reasoning_details: Some(vec![encrypted_detail(data, index)]),
        ..Delta::default()
    }
}
