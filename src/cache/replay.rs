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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::completion_to_chunks;
    use serde_json::Value;

    fn entry(provider: Option<&str>) -> CachedEntry {
        let mut completion: ChatCompletion = serde_json::from_str(
            r#"{"id":"old","created":1,"model":"m","choices":[{"index":0,"finish_reason":"stop",
                "message":{"role":"assistant","content":"hi \"there\"\n"}}],
                "usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
        )
        .unwrap();
        completion.provider = provider.map(str::to_owned);
        CachedEntry {
            chunks: completion_to_chunks(&completion),
            completion,
            stored_at_ms: 0,
            expires_at_ms: u64::MAX,
            served_by: None,
            size_bytes: 0,
            rendered: Default::default(),
        }
    }

    #[test]
    fn a_rendered_hit_is_the_completion_under_a_new_identity() {
        let e = entry(Some("openai"));
        let typed: Value = serde_json::to_value(fresh_completion(&e)).unwrap();
        for _ in 0..2 {
            let raw = fresh_raw(&e).unwrap();
            let spliced: Value = serde_json::from_slice(&raw.to_bytes()).unwrap();
            assert_ne!(spliced["id"], "old");
            assert_ne!(spliced["created"], 1);
            let mut want = typed.clone();
            want["id"] = spliced["id"].clone();
            want["created"] = spliced["created"].clone();
            assert_eq!(spliced, want);
        }
        // Two hits, two ids.
        let a = fresh_raw(&e).unwrap().to_bytes();
        let b = fresh_raw(&e).unwrap().to_bytes();
        assert_ne!(a, b);
    }

    #[test]
    fn without_a_provider_the_typed_encoding_serves() {
        assert!(fresh_raw(&entry(None)).is_none());
    }
}
