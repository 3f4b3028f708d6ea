//! Serving a stored answer: [`ReplayStream`] for streams, [`fresh_completion`] for
//! completions, both with a fresh `id` and `created`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::store::CachedEntry;
use crate::openai::{new_completion_id, unix_now, ChatCompletion, ChatCompletionChunk};
use crate::Error;

/// Replays a stored answer's chunks (usage chunk included) with a fresh `id` and `created`.
/// Never fails; each chunk is cloned as it is polled.
#[derive(Debug)]
pub struct ReplayStream {
    entry: Arc<CachedEntry>,
    next: usize,
    id: String,
    created: u64,
}

impl ReplayStream {
    /// A replay of `entry` under a new completion id, created now.
    pub fn new(entry: Arc<CachedEntry>) -> Self {
        Self {
            entry,
            next: 0,
            id: new_completion_id(),
            created: unix_now(),
        }
    }

    /// The id every replayed chunk carries.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Stream for ReplayStream {
    type Item = Result<ChatCompletionChunk, Error>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(chunk) = this.entry.chunks.get(this.next) else {
            return Poll::Ready(None);
        };
        this.next += 1;
        let mut c = chunk.clone();
        c.id.clone_from(&this.id);
        c.created = this.created;
        Poll::Ready(Some(Ok(c)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.entry.chunks.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

/// The stored completion, as its rendered bytes, under a new id, created now; `None` when it
/// cannot be rendered (then [`fresh_completion`]).
pub(super) fn fresh_raw(entry: &CachedEntry) -> Option<crate::openai::RawCompletion> {
    let mut raw = entry.rendered.get(&entry.completion)?.clone();
    raw.set_identity(new_completion_id(), unix_now());
    Some(raw)
}

/// The stored completion under a new id, created now.
pub fn fresh_completion(entry: &CachedEntry) -> ChatCompletion {
    let mut c = entry.completion.clone();
    c.id = new_completion_id();
    c.created = unix_now();
    c
}
