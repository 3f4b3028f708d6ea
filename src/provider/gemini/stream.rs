//! The SSE stream decoder: every frame is a whole `GenerateContentResponse`; the stream ends
//! once every candidate has a finish reason, followed by a usage-only chunk (see the module
//! docs, "Answers").

use http::HeaderMap;

use super::error::{google_error, parse_error_body};
use super::response::{
    finish_reason, logprobs_value, non_empty, usage, CallIds, ChoiceState, GenerateContentResponse,
};
use crate::openai::sse::SseEvent;
use crate::openai::{
    ChatCompletionChunk, ChunkChoice, Delta, FinishReason, FunctionCallDelta, ToolCallDelta, Usage,
};
use crate::provider::{stream_complete, DecodeContext, StreamDecode};
use crate::Error;

/// Stream state: one completion id and timestamp, per-candidate state, the last usage.
#[derive(Debug)]
pub(super) struct GeminiStream {
    ctx: DecodeContext,
    id: String,
    created: u64,
    ids: CallIds,
    choices: Vec<ChoiceState>,
    usage: Option<Usage>,
    done: bool,
}

impl GeminiStream {
    pub(super) fn new(ctx: DecodeContext, id: String, created: u64) -> Self {
        let ids = CallIds::new(&id);
        Self {
            ctx,
            id,
            created,
            ids,
            choices: Vec::new(),
            usage: None,
            done: false,
        }
    }

    fn chunk(&self) -> ChatCompletionChunk {
        let mut c = ChatCompletionChunk::new(self.id.clone(), &*self.ctx.model, self.created);
        c.provider = Some(self.ctx.provider.to_string());
        c
    }
}

/// The most candidates a stream may have (Gemini's `candidateCount` goes up to 8): the state
/// of each is found by a search, so their number is kept small.
pub(super) const MAX_CANDIDATES: usize = 128;

/// The state of candidate `index`, created on first sight; a 502 past [`MAX_CANDIDATES`].
fn state_of(choices: &mut Vec<ChoiceState>, index: u32) -> Result<&mut ChoiceState, Error> {
    let pos = match choices.iter().position(|c| c.index == index) {
        Some(p) => p,
        None if choices.len() >= MAX_CANDIDATES => {
            return Err(Error::upstream(format!(
                "bad upstream stream: more than {MAX_CANDIDATES} candidates"
            )))
        }
        None => {
            choices.push(ChoiceState::new(index));
            choices.len() - 1
        }
    };
    Ok(&mut choices[pos])
}

impl StreamDecode for GeminiStream {
    fn event(&mut self, ev: SseEvent, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        let data = ev.data.trim();
        if self.done || data.is_empty() || data == "[DONE]" {
            return Ok(());
        }
        let frame: GenerateContentResponse = serde_json::from_str(data).map_err(|e| {
            if let Some(err) = parse_error_body(data.as_bytes()) {
                return google_error(None, &HeaderMap::new(), err);
            }
            Error::upstream("the provider sent a malformed stream event")
                .with_source(Box::new(e) as crate::BoxError)
        })?;
        if let Some(err) = frame.error {
            return Err(google_error(None, &HeaderMap::new(), err));
        }
        if let Some(u) = &frame.usage_metadata {
            self.usage = Some(usage(u));
        }

        let mut chunk = self.chunk();
        if frame.candidates.is_empty() {
            if let Some(reason) = frame
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_ref())
            {
                let st = state_of(&mut self.choices, 0)?;
                st.finished = true;
                let role_sent = std::mem::replace(&mut st.role_sent, true);
                chunk.choices.push(ChunkChoice {
                    index: 0,
                    delta: Delta {
                        role: (!role_sent).then(|| "assistant".to_owned()),
                        ..Delta::default()
                    },
                    finish_reason: Some(FinishReason::ContentFilter),
                    native_finish_reason: Some(reason.clone()),
                    logprobs: None,
                });
            }
        }
        for cand in frame.candidates {
            let parts = cand.content.map(|c| c.parts).unwrap_or_default();
            let st = state_of(&mut self.choices, cand.index)?;
            let d = st.absorb(parts, &mut self.ids);
            let has_calls = st.tool_calls > 0;
            let finish = cand
                .finish_reason
                .as_deref()
                .map(|r| finish_reason(r, has_calls));
            if finish.is_some() {
                st.finished = true;
            }
            let has_delta = !d.content.is_empty()
                || !d.reasoning.is_empty()
                || !d.tool_calls.is_empty()
                || !d.details.is_empty();
            let logprobs = cand.logprobs_result.as_ref().map(logprobs_value);
            if has_delta || finish.is_some() || logprobs.is_some() {
                let role_sent = std::mem::replace(&mut st.role_sent, true);
                chunk.choices.push(ChunkChoice {
                    index: cand.index,
                    delta: Delta {
                        role: (!role_sent).then(|| "assistant".to_owned()),
                        content: non_empty(d.content),
                        reasoning: non_empty(d.reasoning),
                        reasoning_details: (!d.details.is_empty()).then_some(d.details),
                        refusal: None,
                        tool_calls: (!d.tool_calls.is_empty()).then(|| {
                            d.tool_calls
                                .into_iter()
                                .map(|c| ToolCallDelta {
                                    index: c.index,
                                    id: Some(c.id),
                                    kind: Some("function".to_owned()),
                                    function: Some(FunctionCallDelta {
                                        name: Some(c.name),
                                        arguments: Some(c.arguments),
                                    }),
                                })
                                .collect()
                        }),
                    },
                    finish_reason: finish,
                    native_finish_reason: cand.finish_reason,
                    logprobs,
                });
            }
        }
        if !chunk.choices.is_empty() {
            chunk.choices.sort_by_key(|c| c.index);
            out.push(chunk);
        }

        if !self.choices.is_empty() && self.choices.iter().all(|c| c.finished) {
            self.done = true;
            if let Some(u) = self.usage.take() {
                let mut c = self.chunk();
                c.usage = Some(Box::new(u));
                out.push(c);
            }
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self, _out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        stream_complete(self.done)
    }
}
