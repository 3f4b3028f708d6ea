//! The typed request and response that travel between the layers.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;

use crate::openai::{ChatCompletion, ChatCompletionChunk, ChatRequest};
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
    /// A non-streaming completion.
    Complete(Box<ChatCompletion>),
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
    pub fn as_complete(&self) -> Option<&ChatCompletion> {
        match self {
            Self::Complete(c) => Some(c),
            Self::Stream(_) => None,
        }
    }

    /// The completion, if this is one.
    pub fn into_complete(self) -> Option<ChatCompletion> {
        match self {
            Self::Complete(c) => Some(*c),
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
            Self::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}
