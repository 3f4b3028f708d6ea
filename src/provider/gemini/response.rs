//! Decoding a whole answer: Gemini's `GenerateContentResponse` → a chat completion (choices,
//! tool calls, thoughts, finish reasons, usage, log probabilities), and the per-candidate state
//! the stream decoder shares (see the module docs, "Answers").

use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{google_error, parse_error_body, GoogleError};
use super::thoughts::{text_detail, DETAIL_FORMAT};
use crate::openai::{
    AssistantMessage, ChatCompletion, Choice, CompletionTokensDetails, FinishReason, FunctionCall,
    PromptTokensDetails, ToolCall, Usage,
};
use crate::provider::DecodeContext;
use crate::Error;

/// Decodes a whole (non-streaming) `GenerateContentResponse` into a chat completion.
pub(super) fn decode(body: &[u8], ctx: &DecodeContext) -> Result<ChatCompletion, Error> {
    let resp: GenerateContentResponse = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            if let Some(err) = parse_error_body(body) {
                return Err(google_error(None, &HeaderMap::new(), err));
            }
            return Err(
                Error::upstream("the provider sent an invalid response body")
                    .with_source(Box::new(e) as crate::BoxError),
            );
        }
    };
    if let Some(err) = resp.error {
        return Err(google_error(None, &HeaderMap::new(), err));
    }
    let id = crate::openai::new_completion_id();
    let mut ids = CallIds::new(&id);
    let mut choices = Vec::with_capacity(resp.candidates.len().max(1));
    for cand in resp.candidates {
        let mut state = ChoiceState::new(cand.index);
        let parts = cand.content.map(|c| c.parts).unwrap_or_default();
        let d = state.absorb(parts, &mut ids);
        let has_calls = state.tool_calls > 0;
        let finish = finish_reason(cand.finish_reason.as_deref().unwrap_or(""), has_calls);
        choices.push(Choice {
            index: cand.index,
            message: AssistantMessage {
                content: non_empty(d.content),
                tool_calls: (!d.tool_calls.is_empty()).then(|| {
                    d.tool_calls
                        .into_iter()
                        .map(|c| ToolCall {
                            id: c.id,
                            kind: "function".to_owned(),
                            function: FunctionCall {
                                name: c.name,
                                arguments: c.arguments,
                            },
                        })
                        .collect()
                }),
                reasoning: non_empty(d.reasoning),
                reasoning_details: (!d.details.is_empty()).then_some(d.details),
                ..AssistantMessage::default()
            },
            finish_reason: Some(finish),
            native_finish_reason: cand.finish_reason,
            logprobs: cand.logprobs_result.as_ref().map(logprobs_value),
        });
    }
    if choices.is_empty() {
        let Some(reason) = resp.prompt_feedback.and_then(|f| f.block_reason) else {
            return Err(Error::upstream(
                "the provider answered without candidates or a block reason",
            ));
        };
        choices.push(blocked_choice(reason));
    }
    choices.sort_by_key(|c| c.index);
    Ok(ChatCompletion {
        id,
        object: "chat.completion".to_owned(),
        created: crate::openai::unix_now(),
        model: ctx.model.to_string(),
        choices,
        usage: resp.usage_metadata.as_ref().map(usage),
        system_fingerprint: None,
        service_tier: None,
        provider: Some(ctx.provider.to_string()),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateContentResponse {
    #[serde(default)]
    pub(super) candidates: Vec<Candidate>,
    #[serde(default)]
    pub(super) prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub(super) usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub(super) error: Option<GoogleError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate {
    #[serde(default)]
    pub(super) content: Option<CandidateContent>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
    #[serde(default)]
    pub(super) index: u32,
    #[serde(default)]
    pub(super) logprobs_result: Option<LogprobsResult>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CandidateContent {
    #[serde(default)]
    pub(super) parts: Vec<ResponsePart>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResponsePart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default)]
    thought_signature: Option<String>,
    #[serde(default)]
    function_call: Option<ResponseFunctionCall>,
}

#[derive(Debug, Deserialize)]
struct ResponseFunctionCall {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromptFeedback {
    #[serde(default)]
    pub(super) block_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
    #[serde(default)]
    total_token_count: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LogprobsResult {
    #[serde(default)]
    top_candidates: Vec<TopCandidates>,
    #[serde(default)]
    chosen_candidates: Vec<LogprobCandidate>,
}

#[derive(Debug, Deserialize)]
struct TopCandidates {
    #[serde(default)]
    candidates: Vec<LogprobCandidate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogprobCandidate {
    #[serde(default)]
    token: String,
    #[serde(default)]
    log_probability: f64,
}

pub(super) fn usage(u: &UsageMetadata) -> Usage {
    let prompt = u.prompt_token_count + u.tool_use_prompt_token_count;
    let completion = u.candidates_token_count + u.thoughts_token_count;
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: u.total_token_count.unwrap_or(prompt + completion),
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: u.cached_content_token_count,
            ..PromptTokensDetails::default()
        }),
        completion_tokens_details: Some(CompletionTokensDetails {
            reasoning_tokens: u.thoughts_token_count,
            ..CompletionTokensDetails::default()
        }),
        cost: None,
        cost_details: None,
    }
}

pub(super) fn finish_reason(native: &str, has_calls: bool) -> FinishReason {
    match native {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "LANGUAGE"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => FinishReason::ContentFilter,
        "MALFORMED_FUNCTION_CALL"
        | "UNEXPECTED_TOOL_CALL"
        | "TOO_MANY_TOOL_CALLS"
        | "MISSING_THOUGHT_SIGNATURE"
        | "MALFORMED_RESPONSE"
        | "OTHER"
        | "IMAGE_OTHER"
        | "NO_IMAGE" => FinishReason::Error,
        _ if has_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// The choice answering a prompt Gemini blocked (`promptFeedback.blockReason`).
fn blocked_choice(reason: String) -> Choice {
    Choice {
        index: 0,
        message: AssistantMessage::default(),
        finish_reason: Some(FinishReason::ContentFilter),
        native_finish_reason: Some(reason),
        logprobs: None,
    }
}

/// OpenAI's `logprobs` object from Gemini's `logprobsResult`.
pub(super) fn logprobs_value(l: &LogprobsResult) -> Value {
    let entry = |c: &LogprobCandidate| {
        let mut o = Map::with_capacity(3);
        o.insert("token".to_owned(), c.token.clone().into());
        o.insert("logprob".to_owned(), c.log_probability.into());
        o.insert(
            "bytes".to_owned(),
            Value::Array(c.token.bytes().map(Value::from).collect()),
        );
        o
    };
    let content = l
        .chosen_candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut o = entry(c);
            let top = l
                .top_candidates
                .get(i)
                .map(|t| {
                    t.candidates
                        .iter()
                        .map(|c| Value::Object(entry(c)))
                        .collect()
                })
                .unwrap_or_default();
            o.insert("top_logprobs".to_owned(), Value::Array(top));
            Value::Object(o)
        })
        .collect();
    let mut o = Map::with_capacity(2);
    o.insert("content".to_owned(), Value::Array(content));
    o.insert("refusal".to_owned(), Value::Null);
    Value::Object(o)
}

pub(super) fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Tool-call ids for one completion: `call_<completion suffix>_<n>`, deterministic per
/// completion id and unique across a conversation.
#[derive(Debug)]
pub(super) struct CallIds {
    prefix: String,
    next: u32,
}

impl CallIds {
    pub(super) fn new(completion_id: &str) -> Self {
        let suffix = completion_id
            .strip_prefix("chatcmpl-")
            .unwrap_or(completion_id);
        Self {
            prefix: format!("call_{suffix}_"),
            next: 0,
        }
    }

    fn next(&mut self) -> String {
        let id = format!("{}{}", self.prefix, self.next);
        self.next += 1;
        id
    }
}

/// One complete function call.
#[derive(Debug)]
pub(super) struct CallOut {
    pub(super) index: u32,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) arguments: String,
}

/// What a batch of parts contributes to one choice.
#[derive(Debug, Default)]
pub(super) struct PartsOut {
    pub(super) content: String,
    pub(super) reasoning: String,
    pub(super) tool_calls: Vec<CallOut>,
    pub(super) details: Vec<Value>,
}

/// Per-candidate state shared by whole answers and streams.
#[derive(Debug)]
pub(super) struct ChoiceState {
    pub(super) index: u32,
    pub(super) role_sent: bool,
    pub(super) finished: bool,
    pub(super) tool_calls: u32,
    details: u32,
    /// Index of the `reasoning.text` detail that thought fragments extend.
    open_text: Option<u32>,
}

impl ChoiceState {
    pub(super) const fn new(index: u32) -> Self {
        Self {
            index,
            role_sent: false,
            finished: false,
            tool_calls: 0,
            details: 0,
            open_text: None,
        }
    }

    pub(super) fn absorb(&mut self, parts: Vec<ResponsePart>, ids: &mut CallIds) -> PartsOut {
        let mut out = PartsOut::default();
        for p in parts {
            let mut call_id = None;
            if let Some(fc) = p.function_call {
                self.open_text = None;
                let id = fc
                    .id
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| ids.next());
                let arguments = match fc.args {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(v) => v.to_string(),
                };
                call_id = Some(id.clone());
                out.tool_calls.push(CallOut {
                    index: self.tool_calls,
                    id,
                    name: fc.name,
                    arguments,
                });
                self.tool_calls += 1;
            } else if let Some(text) = p.text {
                if p.thought == Some(true) {
                    if !text.is_empty() {
                        self.thought_text(&text, &mut out.details);
                        out.reasoning.push_str(&text);
                    }
                } else if !text.is_empty() {
                    self.open_text = None;
                    out.content.push_str(&text);
                }
            }
            if let Some(sig) = p.thought_signature.filter(|s| !s.is_empty()) {
                self.open_text = None;
                let mut d = Map::with_capacity(5);
                d.insert("type".to_owned(), "reasoning.encrypted".into());
                d.insert("data".to_owned(), sig.into());
                d.insert("id".to_owned(), call_id.map_or(Value::Null, Value::String));
                d.insert("format".to_owned(), DETAIL_FORMAT.into());
                d.insert("index".to_owned(), self.details.into());
                self.details += 1;
                out.details.push(Value::Object(d));
            }
        }
        out
    }

    fn thought_text(&mut self, text: &str, details: &mut Vec<Value>) {
        if let Some(i) = self.open_text {
            // Extend the entry if it is already part of this batch.
            if let Some(Value::Object(last)) = details.last_mut() {
                if last.get("index").and_then(Value::as_u64) == Some(u64::from(i)) {
                    if let Some(Value::String(t)) = last.get_mut("text") {
                        t.push_str(text);
                        return;
                    }
                }
            }
            details.push(text_detail(text, i));
            return;
        }
        let i = self.details;
        self.details += 1;
        self.open_text = Some(i);
        details.push(text_detail(text, i));
    }
}
