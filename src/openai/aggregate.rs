//! Folding a stream of [`ChatCompletionChunk`]s into a [`ChatCompletion`], and rendering a
//! completion back as a short list of chunks.
//!
//! [`ChunkAggregator`] assembles, per choice index: text, reasoning, `reasoning_details`,
//! refusal, tool calls (by tool index: id, type and name from the first fragment that has
//! them, arguments concatenated), finish reasons and log probabilities; the last usage seen
//! wins. [`completion_to_chunks`] goes the other way: for each choice a role chunk, then
//! reasoning, content, refusal and one chunk per tool call, then the finish chunk; a usage
//! chunk last. Folding those chunks again gives the same completion.

use std::collections::BTreeMap;

use serde_json::Value;

use super::chunk::{ChatCompletionChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta};
use super::message::{FunctionCall, ToolCall};
use super::response::{AssistantMessage, ChatCompletion, Choice, FinishReason, Usage};

/// Folds chunks into a completion.
///
/// Per choice index: text, reasoning, `reasoning_details`, refusal, tool calls (by tool
/// index: id, type and name from the first fragment that has them, arguments concatenated),
/// finish reasons and log probabilities (arrays concatenated); the last usage seen wins.
/// [`completion_to_chunks`] goes the other way; folding its chunks gives the completion back.
///
/// ```
/// use switchboard::openai::{completion_to_chunks, ChatCompletion, ChunkAggregator};
///
/// let completion: ChatCompletion = serde_json::from_str(r#"{
///   "id": "chatcmpl-1", "created": 1, "model": "m",
///   "choices": [{"index": 0, "finish_reason": "stop",
///                "message": {"role": "assistant", "content": "Hello!"}}],
///   "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
/// }"#).unwrap();
/// let mut agg = ChunkAggregator::new();
/// for chunk in &completion_to_chunks(&completion) {
///     agg.push(chunk);
/// }
/// assert!(agg.is_complete());
/// assert_eq!(agg.finish(), completion);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ChunkAggregator {
    id: Option<String>,
    created: Option<u64>,
    model: Option<String>,
    system_fingerprint: Option<String>,
    provider: Option<String>,
    usage: Option<Usage>,
    choices: BTreeMap<u32, ChoiceAcc>,
    error: bool,
}

#[derive(Debug, Clone, Default)]
struct ChoiceAcc {
    content: String,
    reasoning: String,
    reasoning_details: Vec<Value>,
    refusal: String,
    tools: BTreeMap<u32, ToolAcc>,
    finish_reason: Option<FinishReason>,
    native_finish_reason: Option<String>,
    logprobs: Option<Value>,
}

#[derive(Debug, Clone, Default)]
struct ToolAcc {
    id: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    arguments: String,
}

impl ChunkAggregator {
    /// An empty aggregator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds in one chunk.
    pub fn push(&mut self, chunk: &ChatCompletionChunk) {
        if self.id.is_none() && !chunk.id.is_empty() {
            self.id = Some(chunk.id.clone());
        }
        if self.created.is_none() && chunk.created != 0 {
            self.created = Some(chunk.created);
        }
        if self.model.is_none() && !chunk.model.is_empty() {
            self.model = Some(chunk.model.clone());
        }
        if chunk.system_fingerprint.is_some() {
            self.system_fingerprint
                .clone_from(&chunk.system_fingerprint);
        }
        if self.provider.is_none() {
            self.provider.clone_from(&chunk.provider);
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(Usage::clone(u));
        }
        if chunk.error.is_some() {
            self.error = true;
        }
        for c in &chunk.choices {
            self.choices.entry(c.index).or_default().push(c);
        }
    }

    /// Whether the stream reached a proper end: at least one choice, every choice with a
    /// finish reason.
    pub fn is_complete(&self) -> bool {
        !self.choices.is_empty() && self.choices.values().all(|c| c.finish_reason.is_some())
    }

    /// Whether the answer is complete and successful: no error chunk, no choice that finished
    /// with [`FinishReason::Error`].
    pub fn is_success(&self) -> bool {
        self.is_complete()
            && !self.error
            && self
                .choices
                .values()
                .all(|c| c.finish_reason != Some(FinishReason::Error))
    }

    /// The completion the chunks add up to.
    pub fn finish(self) -> ChatCompletion {
        ChatCompletion {
            id: self.id.unwrap_or_default(),
            object: "chat.completion".to_owned(),
            created: self.created.unwrap_or(0),
            model: self.model.unwrap_or_default(),
            choices: self
                .choices
                .into_iter()
                .map(|(index, c)| c.finish(index))
                .collect(),
            usage: self.usage,
            system_fingerprint: self.system_fingerprint,
            service_tier: None,
            provider: self.provider,
        }
    }
}

impl ChoiceAcc {
    fn push(&mut self, c: &ChunkChoice) {
        let d = &c.delta;
        if let Some(s) = &d.content {
            self.content.push_str(s);
        }
        if let Some(s) = &d.reasoning {
            self.reasoning.push_str(s);
        }
        if let Some(details) = &d.reasoning_details {
            self.reasoning_details.extend(details.iter().cloned());
        }
        if let Some(s) = &d.refusal {
            self.refusal.push_str(s);
        }
        for t in d.tool_calls.iter().flatten() {
            let acc = self.tools.entry(t.index).or_default();
            if acc.id.is_none() {
                acc.id = t.id.clone().filter(|s| !s.is_empty());
            }
            if acc.kind.is_none() {
                acc.kind.clone_from(&t.kind);
            }
            if let Some(f) = &t.function {
                if acc.name.is_none() {
                    acc.name = f.name.clone().filter(|s| !s.is_empty());
                }
                if let Some(a) = &f.arguments {
                    acc.arguments.push_str(a);
                }
            }
        }
        if c.finish_reason.is_some() {
            self.finish_reason = c.finish_reason;
        }
        if c.native_finish_reason.is_some() {
            self.native_finish_reason
                .clone_from(&c.native_finish_reason);
        }
        if let Some(lp) = &c.logprobs {
            merge_logprobs(&mut self.logprobs, lp);
        }
    }

    fn finish(self, index: u32) -> Choice {
        let tool_calls: Vec<ToolCall> = self
            .tools
            .into_values()
            .map(|t| ToolCall {
                id: t.id.unwrap_or_default(),
                kind: t.kind.unwrap_or_else(|| "function".to_owned()),
                function: FunctionCall {
                    name: t.name.unwrap_or_default(),
                    arguments: t.arguments,
                },
            })
            .collect();
        let refusal = non_empty(self.refusal);
        // OpenAI answers `content: null` when the message is only tool calls or a refusal.
        let content = if self.content.is_empty() && (!tool_calls.is_empty() || refusal.is_some()) {
            None
        } else {
            Some(self.content)
        };
        Choice {
            index,
            message: AssistantMessage {
                content,
                refusal,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                reasoning: non_empty(self.reasoning),
                reasoning_details: (!self.reasoning_details.is_empty())
                    .then_some(self.reasoning_details),
                ..AssistantMessage::default()
            },
            finish_reason: self.finish_reason,
            native_finish_reason: self.native_finish_reason,
            logprobs: self.logprobs,
        }
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Chunk log probabilities are `{"content": [...], "refusal": [...]}` with the tokens of that
/// chunk; the completion's hold all of them: arrays are concatenated, other values kept.
fn merge_logprobs(acc: &mut Option<Value>, new: &Value) {
    let Some(prev) = acc else {
        *acc = Some(new.clone());
        return;
    };
    match (prev, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match (a.get_mut(k), v) {
                    (Some(Value::Array(x)), Value::Array(y)) => x.extend(y.iter().cloned()),
                    (Some(Value::Null) | None, v) => {
                        a.insert(k.clone(), v.clone());
                    }
                    _ => {}
                }
            }
        }
        (prev, new) if prev.is_null() => *prev = new.clone(),
        _ => {}
    }
}

/// Renders a completion as a short stream: per choice a role chunk, a reasoning chunk, a
/// content chunk, a refusal chunk and one chunk per tool call (each when present), then a
/// finish chunk; a usage chunk (no choices) last. Every chunk carries the completion's id,
/// `created`, model, system fingerprint and provider.
pub fn completion_to_chunks(c: &ChatCompletion) -> Vec<ChatCompletionChunk> {
    let base = || {
        let mut k = ChatCompletionChunk::new(c.id.clone(), c.model.clone(), c.created);
        k.system_fingerprint.clone_from(&c.system_fingerprint);
        k.provider.clone_from(&c.provider);
        k
    };
    let with = |index: u32, delta: Delta| {
        let mut k = base();
        k.choices.push(ChunkChoice {
            index,
            delta,
            finish_reason: None,
            native_finish_reason: None,
            logprobs: None,
        });
        k
    };
    let mut out = Vec::with_capacity(c.choices.len() * 3 + 1);
    for choice in &c.choices {
        let m = &choice.message;
        let i = choice.index;
        out.push(with(
            i,
            Delta {
                role: Some("assistant".to_owned()),
                ..Delta::default()
            },
        ));
        let details = m.reasoning_details.as_ref().filter(|d| !d.is_empty());
        if m.reasoning.as_deref().is_some_and(|s| !s.is_empty()) || details.is_some() {
            out.push(with(
                i,
                Delta {
                    reasoning: m.reasoning.clone().filter(|s| !s.is_empty()),
                    reasoning_details: details.cloned(),
                    ..Delta::default()
                },
            ));
        }
        if let Some(text) = m.content.as_ref().filter(|s| !s.is_empty()) {
            out.push(with(
                i,
                Delta {
                    content: Some(text.clone()),
                    ..Delta::default()
                },
            ));
        }
        if let Some(r) = m.refusal.as_ref().filter(|s| !s.is_empty()) {
            out.push(with(
                i,
                Delta {
                    refusal: Some(r.clone()),
                    ..Delta::default()
                },
            ));
        }
        for (n, call) in m.tool_calls.iter().flatten().enumerate() {
            out.push(with(
                i,
                Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: u32::try_from(n).unwrap_or(u32::MAX),
                        id: Some(call.id.clone()),
                        kind: Some(call.kind.clone()),
                        function: Some(FunctionCallDelta {
                            name: Some(call.function.name.clone()),
                            arguments: Some(call.function.arguments.clone()),
                        }),
                    }]),
                    ..Delta::default()
                },
            ));
        }
        let mut fin = with(i, Delta::default());
        if let Some(ch) = fin.choices.first_mut() {
            ch.finish_reason = choice.finish_reason;
            ch.native_finish_reason
                .clone_from(&choice.native_finish_reason);
            ch.logprobs.clone_from(&choice.logprobs);
        }
        out.push(fin);
    }
    if let Some(u) = &c.usage {
        let mut k = base();
        k.usage = Some(Box::new(u.clone()));
        out.push(k);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(json: &str) -> ChatCompletionChunk {
        serde_json::from_str(json).unwrap()
    }

    /// An OpenAI-style stream with reasoning, text, two parallel tool calls split into
    /// fragments, a second choice, log probabilities and a final usage chunk.
    fn stream() -> Vec<ChatCompletionChunk> {
        [
            r#"{"id":"chatcmpl-a","object":"chat.completion.chunk","created":7,"model":"gpt-4o","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-a","created":7,"model":"gpt-4o","choices":[{"index":0,"delta":{"reasoning":"Think","reasoning_details":[{"type":"reasoning.text","text":"Think","index":0}]},"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-a","created":7,"model":"gpt-4o","choices":[{"index":0,"delta":{"reasoning":"ing."},"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-a","created":7,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Let me "},"logprobs":{"content":[{"token":"Let","logprob":-0.1}],"refusal":null},"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-a","created":7,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"check."},"logprobs":{"content":[{"token":" check","logprob":-0.2}],"refusal":null},"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-a","created":7,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-a","created":7,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{\"tz\":"}}]},"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-a","created":7,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-a","created":7,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}},{"index":1,"function":{"arguments":"\"UTC\"}"}}]},"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-a","created":7,"model":"gpt-4o","choices":[{"index":1,"delta":{"role":"assistant","refusal":"I can't"},"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-a","created":7,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls","native_finish_reason":"tool_calls"}]}"#,
            r#"{"id":"chatcmpl-a","created":7,"model":"gpt-4o","choices":[{"index":1,"delta":{"refusal":" help."},"finish_reason":"content_filter"}]}"#,
            r#"{"id":"chatcmpl-a","created":7,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":22,"total_tokens":33,"completion_tokens_details":{"reasoning_tokens":4}}}"#,
        ]
        .iter()
        .map(|s| chunk(s))
        .collect()
    }

    fn fold(chunks: &[ChatCompletionChunk]) -> ChunkAggregator {
        let mut a = ChunkAggregator::new();
        for c in chunks {
            a.push(c);
        }
        a
    }

    #[test]
    fn folds_text_reasoning_tools_refusal_and_usage() {
        let agg = fold(&stream());
        assert!(agg.is_complete());
        assert!(agg.is_success());
        let c = agg.finish();
        assert_eq!(c.id, "chatcmpl-a");
        assert_eq!(c.created, 7);
        assert_eq!(c.model, "gpt-4o");
        assert_eq!(c.system_fingerprint.as_deref(), Some("fp_1"));
        assert_eq!(c.choices.len(), 2);
        let m = &c.choices[0].message;
        assert_eq!(m.content.as_deref(), Some("Let me check."));
        assert_eq!(m.reasoning.as_deref(), Some("Thinking."));
        assert_eq!(m.reasoning_details.as_ref().unwrap().len(), 1);
        let calls = m.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].id, "call_1");
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
        assert_eq!(calls[1].id, "call_2");
        assert_eq!(calls[1].function.arguments, r#"{"tz":"UTC"}"#);
        assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
        let lp = c.choices[0].logprobs.as_ref().unwrap();
        assert_eq!(lp["content"].as_array().unwrap().len(), 2);
        let refused = &c.choices[1];
        assert_eq!(refused.index, 1);
        assert_eq!(refused.message.refusal.as_deref(), Some("I can't help."));
        assert_eq!(refused.message.content, None);
        assert_eq!(refused.finish_reason, Some(FinishReason::ContentFilter));
        let u = c.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (11, 22, 33)
        );
        assert_eq!(u.reasoning_tokens(), 4);
    }

    #[test]
    fn chunks_completion_chunks_completion_is_stable() {
        let first = fold(&stream()).finish();
        let rendered = completion_to_chunks(&first);
        let again = fold(&rendered);
        assert!(again.is_success());
        let second = again.finish();
        assert_eq!(first, second);
        assert_eq!(completion_to_chunks(&second), rendered);
        // Tool-call chunks carry their indices; the usage chunk comes last.
        let tool_indices: Vec<u32> = rendered
            .iter()
            .flat_map(|k| k.choices.iter())
            .flat_map(|c| c.delta.tool_calls.iter().flatten())
            .map(|t| t.index)
            .collect();
        assert_eq!(tool_indices, [0, 1]);
        assert!(rendered.last().unwrap().is_usage_only());
        assert_eq!(
            rendered[0].choices[0].delta.role.as_deref(),
            Some("assistant")
        );
    }

    #[test]
    fn a_stream_without_finish_reason_is_incomplete() {
        let mut chunks = stream();
        chunks.retain(|c| c.choices.iter().all(|ch| ch.finish_reason.is_none()));
        let agg = fold(&chunks);
        assert!(!agg.is_complete());
        assert!(!agg.is_success());
        assert!(!ChunkAggregator::new().is_complete());
    }

    #[test]
    fn error_chunks_are_not_success() {
        let mut chunks = stream();
        chunks.push(ChatCompletionChunk::error_chunk(
            "chatcmpl-a",
            "gpt-4o",
            7,
            &crate::Error::upstream("broke"),
        ));
        let agg = fold(&chunks);
        assert!(agg.is_complete());
        assert!(!agg.is_success());
    }

    #[test]
    fn plain_text_answer_keeps_empty_content_as_string() {
        let chunks = [
            r#"{"id":"x","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"id":"x","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
        ]
        .map(chunk);
        let c = fold(&chunks).finish();
        assert_eq!(c.choices[0].message.content.as_deref(), Some(""));
        assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Length));
        assert_eq!(c.usage, None);
        let back = completion_to_chunks(&c);
        assert_eq!(back.len(), 2);
        assert_eq!(fold(&back).finish(), c);
    }
}
