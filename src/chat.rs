//! The typed request and response that travel between the layers.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_core::Stream;

use crate::openai::{ChatCompletion, ChatCompletionChunk, ChatRequest, RawCompletion, Usage};
use crate::Error;

/// A stream of chunks. Ends after an `Err` item (the edge renders it as an error chunk
/// followed by `[DONE]`).
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChatCompletionChunk, Error>> + Send>>;

/// The request every layer below the edge takes.
pub type ChatHttpRequest = http::Request<Arc<ChatRequest>>;

/// The response every layer below the edge returns.
pub type ChatHttpResponse = http::Response<ChatResponse>;

/// An answer: a whole completion or a stream of chunks.
pub enum ChatResponse {
    /// A non-streaming completion (typed, or an OpenAI-compatible provider's own bytes passed
    /// through; see [`Completion`]).
    Complete(Completion),
    /// A stream of chunks.
    Stream(ChunkStream),
}

impl ChatResponse {
    /// Wraps a stream.
    pub fn stream<S>(s: S) -> Self
    where
        S: Stream<Item = Result<ChatCompletionChunk, Error>> + Send + 'static,
    {
        Self::Stream(Box::pin(s))
    }

    /// The completion, if this is one.
    pub fn as_complete(&self) -> Option<&Completion> {
        match self {
            Self::Complete(c) => Some(c),
            Self::Stream(_) => None,
        }
    }

    /// The completion, mutably, if this is one.
    pub fn as_complete_mut(&mut self) -> Option<&mut Completion> {
        match self {
            Self::Complete(c) => Some(c),
            Self::Stream(_) => None,
        }
    }

    /// The completion, if this is one.
    pub fn into_complete(self) -> Option<Completion> {
        match self {
            Self::Complete(c) => Some(c),
            Self::Stream(_) => None,
        }
    }

    /// The stream, if this is one.
    pub fn into_stream(self) -> Option<ChunkStream> {
        match self {
            Self::Complete(_) => None,
            Self::Stream(s) => Some(s),
        }
    }

    /// The usage of a completion, mutable; `None` for a stream.
    pub fn usage_mut(&mut self) -> Option<&mut Option<Usage>> {
        self.as_complete_mut().map(Completion::usage_mut)
    }
}

impl From<Completion> for ChatResponse {
    fn from(c: Completion) -> Self {
        Self::Complete(c)
    }
}

impl From<ChatCompletion> for ChatResponse {
    fn from(c: ChatCompletion) -> Self {
        Self::Complete(Completion::from(c))
    }
}

impl From<RawCompletion> for ChatResponse {
    fn from(r: RawCompletion) -> Self {
        Self::Complete(Completion::from(r))
    }
}

impl fmt::Debug for ChatResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Complete(c) => f.debug_tuple("Complete").field(c).finish(),
            Self::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// A whole (non-streaming) completion: either typed values ([`ChatCompletion`]) or, from an
/// OpenAI-compatible provider, the provider's own bytes passed through with `model`,
/// `provider` and `usage` replaced ([`RawCompletion`]). Which one is an implementation detail:
/// read it through [`usage`](Self::usage), [`model`](Self::model) and
/// [`to_bytes`](Self::to_bytes), and ask for [`to_typed`](Self::to_typed) /
/// [`into_typed`](Self::into_typed) to look at the choices (a full parse of a pass-through).
///
/// ```
/// use switchboard::openai::ChatCompletion;
/// use switchboard::Completion;
///
/// let typed: ChatCompletion = serde_json::from_str(
///     r#"{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
/// )
/// .unwrap();
/// let mut c = Completion::from(typed);
/// assert_eq!(c.model(), "m");
/// c.usage_mut().as_mut().unwrap().cost = Some(0.5);
/// let json: serde_json::Value = serde_json::from_slice(&c.to_bytes().unwrap()).unwrap();
/// assert_eq!(json["usage"]["cost"], 0.5);
/// assert_eq!(c.into_typed().unwrap().usage.unwrap().total_tokens, 5);
/// ```
#[derive(Clone)]
pub struct Completion {
    // One allocation, as each of the two shapes had on its own; keeps `ChatResponse` small.
    repr: Box<Repr>,
}

#[derive(Clone)]
enum Repr {
    Typed(ChatCompletion),
    Raw(RawCompletion),
}

impl Completion {
    /// Token usage (and, after a CostMeter, cost).
    pub fn usage(&self) -> Option<&Usage> {
        match &*self.repr {
            Repr::Typed(c) => c.usage.as_ref(),
            Repr::Raw(r) => r.usage(),
        }
    }

    /// Token usage, mutable: what is here is what the client receives.
    pub fn usage_mut(&mut self) -> &mut Option<Usage> {
        match &mut *self.repr {
            Repr::Typed(c) => &mut c.usage,
            Repr::Raw(r) => r.usage_mut(),
        }
    }

    /// Bytes of output (text, reasoning, refusals, tool calls), for an estimate of the
    /// completion tokens when the upstream sent no usage. A pass-through counts its whole
    /// body (more than the output: an estimate that errs on the side of billing).
    pub(crate) fn output_bytes(&self) -> usize {
        match &*self.repr {
            Repr::Typed(c) => c
                .choices
                .iter()
                .map(|ch| {
                    let m = &ch.message;
                    m.content.as_ref().map_or(0, String::len)
                        + m.reasoning.as_ref().map_or(0, String::len)
                        + m.refusal.as_ref().map_or(0, String::len)
                        + m.tool_calls
                            .iter()
                            .flatten()
                            .map(|t| t.function.name.len() + t.function.arguments.len())
                            .sum::<usize>()
                })
                .sum(),
            Repr::Raw(r) => r.upstream_body().len(),
        }
    }

    /// Sets the completion's `id` (the request's generation id), keeping its `created`.
    pub fn set_id(&mut self, id: &str) {
        match &mut *self.repr {
            Repr::Typed(c) => {
                c.id.clear();
                c.id.push_str(id);
            }
            Repr::Raw(r) => r.set_id(id.to_owned()),
        }
    }

    /// The first choice's finish reason (`stop`, `length`, …), if any. A pass-through's body
    /// is searched for it, not parsed.
    pub fn finish_reason(&self) -> Option<String> {
        match &*self.repr {
            Repr::Typed(c) => c
                .choices
                .first()
                .and_then(|ch| ch.finish_reason)
                .map(|f| f.as_str().to_owned()),
            Repr::Raw(r) => {
                let body = r.upstream_body();
                let at = crate::macros::find_bytes!(body, b"\"finish_reason\":\"")? + 17;
                let rest = body.get(at..)?;
                let end = memchr::memchr(b'"', rest)?.min(32);
                std::str::from_utf8(&rest[..end]).ok().map(str::to_owned)
            }
        }
    }

    /// The model id the client receives in `model`.
    pub fn model(&self) -> &str {
        match &*self.repr {
            Repr::Typed(c) => &c.model,
            Repr::Raw(r) => r.model(),
        }
    }

    /// The JSON body the client receives. A pass-through is the provider's bytes with `model`,
    /// `provider` and `usage` spliced in (no parse); a typed completion is serialised.
    ///
    /// # Errors
    /// If a typed completion cannot be serialised ([`ErrorKind::Upstream`](crate::ErrorKind)).
    pub fn to_bytes(&self) -> Result<Bytes, Error> {
        match &*self.repr {
            Repr::Typed(c) => serde_json::to_vec(c)
                .map(Bytes::from)
                .map_err(|e| Error::upstream("could not encode the answer").with_source(e)),
            Repr::Raw(r) => Ok(r.to_bytes()),
        }
    }

    /// The typed completion, if this is one (`None` for a pass-through: see
    /// [`to_typed`](Self::to_typed)).
    pub fn as_typed(&self) -> Option<&ChatCompletion> {
        match &*self.repr {
            Repr::Typed(c) => Some(c),
            Repr::Raw(_) => None,
        }
    }

    /// The completion as typed values: a copy of a typed one, a full parse of a pass-through.
    ///
    /// # Errors
    /// If a pass-through's bytes do not parse as a completion ([`ErrorKind::Upstream`](crate::ErrorKind)).
    pub fn to_typed(&self) -> Result<ChatCompletion, Error> {
        match &*self.repr {
            Repr::Typed(c) => Ok(c.clone()),
            Repr::Raw(r) => r.to_completion(),
        }
    }

    /// The completion as typed values, without a copy when it is typed already.
    ///
    /// # Errors
    /// As [`to_typed`](Self::to_typed).
    pub fn into_typed(self) -> Result<ChatCompletion, Error> {
        match *self.repr {
            Repr::Typed(c) => Ok(c),
            Repr::Raw(r) => r.to_completion(),
        }
    }
}

impl From<ChatCompletion> for Completion {
    fn from(c: ChatCompletion) -> Self {
        Self {
            repr: Box::new(Repr::Typed(c)),
        }
    }
}

impl From<RawCompletion> for Completion {
    fn from(r: RawCompletion) -> Self {
        Self {
            repr: Box::new(Repr::Raw(r)),
        }
    }
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.repr {
            Repr::Typed(c) => fmt::Debug::fmt(c, f),
            Repr::Raw(r) => fmt::Debug::fmt(r, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},"x_unknown":[1]}"#;

    fn raw() -> RawCompletion {
        RawCompletion::parse(
            Bytes::from_static(BODY.as_bytes()),
            "openai/gpt-4o".into(),
            "openai".into(),
        )
        .unwrap()
    }

    #[test]
    fn a_pass_through_is_a_completion_like_a_typed_one() {
        let mut resp = ChatResponse::from(raw());
        let c = resp.as_complete().unwrap();
        assert!(c.as_typed().is_none());
        assert_eq!(c.model(), "openai/gpt-4o");
        assert_eq!(c.usage().unwrap().total_tokens, 5);
        resp.usage_mut().unwrap().as_mut().unwrap().cost = Some(0.25);
        let c = resp.into_complete().unwrap();
        // The bytes are the pass-through's own splice, unknown fields kept.
        assert_eq!(c.to_bytes().unwrap(), {
            let mut r = raw();
            r.usage_mut().as_mut().unwrap().cost = Some(0.25);
            r.to_bytes()
        });
        let typed = c.to_typed().unwrap();
        assert_eq!(typed.model, "openai/gpt-4o");
        assert_eq!(typed.usage.as_ref().unwrap().cost, Some(0.25));
        assert_eq!(c.into_typed().unwrap(), typed);
    }

    #[test]
    fn a_typed_completion_serialises_as_before() {
        let typed: ChatCompletion = serde_json::from_str(BODY).unwrap();
        let c = Completion::from(typed.clone());
        assert_eq!(c.as_typed(), Some(&typed));
        assert_eq!(c.model(), "gpt-4o-2024-08-06");
        assert_eq!(
            &c.to_bytes().unwrap()[..],
            serde_json::to_vec(&typed).unwrap()
        );
        assert_eq!(c.into_typed().unwrap(), typed);
        assert!(ChatResponse::stream(futures_util::stream::empty())
            .as_complete()
            .is_none());
    }
}
