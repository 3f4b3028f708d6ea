//! The typed request and response that travel between the layers.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

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

/// An answer: a whole completion (typed, or an OpenAI-compatible provider's own bytes) or a
/// stream of chunks.
pub enum ChatResponse {
    /// A non-streaming completion.
    Complete(Box<ChatCompletion>),
    /// A non-streaming completion passed through from an OpenAI-compatible provider: its bytes
    /// with `model`, `provider` and `usage` replaced ([`RawCompletion`]).
    Raw(Box<RawCompletion>),
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

    /// The typed completion, if this is one (`None` for a stream and for a [`Raw`](Self::Raw)
    /// pass-through: use [`into_complete`](Self::into_complete) or
    /// [`RawCompletion::to_completion`] to look inside one of those).
    pub fn as_complete(&self) -> Option<&ChatCompletion> {
        match self {
            Self::Complete(c) => Some(c),
            Self::Raw(_) | Self::Stream(_) => None,
        }
    }

    /// The completion, typed, if this is one (a pass-through is parsed; `None` if its bytes do
    /// not parse as a completion).
    pub fn into_complete(self) -> Option<ChatCompletion> {
        match self {
            Self::Complete(c) => Some(*c),
            Self::Raw(r) => r.to_completion().ok(),
            Self::Stream(_) => None,
        }
    }

    /// The stream, if this is one.
    pub fn into_stream(self) -> Option<ChunkStream> {
        match self {
            Self::Complete(_) | Self::Raw(_) => None,
            Self::Stream(s) => Some(s),
        }
    }

    /// The usage of a whole completion (typed or passed through), mutable; `None` for a stream.
    pub fn usage_mut(&mut self) -> Option<&mut Option<Usage>> {
        match self {
            Self::Complete(c) => Some(&mut c.usage),
            Self::Raw(r) => Some(r.usage_mut()),
            Self::Stream(_) => None,
        }
    }
}

impl From<RawCompletion> for ChatResponse {
    fn from(r: RawCompletion) -> Self {
        Self::Raw(Box::new(r))
    }
}

impl From<ChatCompletion> for ChatResponse {
    fn from(c: ChatCompletion) -> Self {
        Self::Complete(Box::new(c))
    }
}

impl fmt::Debug for ChatResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Complete(c) => f.debug_tuple("Complete").field(c).finish(),
            Self::Raw(r) => f.debug_tuple("Raw").field(r).finish(),
            Self::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}
