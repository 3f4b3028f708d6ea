//! Tokens per minute settle on real usage: the reservation a request holds, and the stream
//! wrapper that settles it on the usage chunk (or from an estimate at the end).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

use super::store::{LimitKind, MemoryRateLimitStore, RateLimitStore};
use crate::chat::{ChatHttpResponse, ChatResponse, ChunkStream};
use crate::openai::{ChatCompletionChunk, Usage};
use crate::Error;

/// Where a request's draws were taken: the shared store, or this instance's buckets.
#[derive(Debug, Clone)]
pub(super) enum Taken {
    Local(Arc<MemoryRateLimitStore>),
    Shared(Arc<dyn RateLimitStore>),
}

/// The tokens a request reserved, given back or topped up once its usage is known (exactly
/// once; a request abandoned before its answer keeps what it reserved).
#[derive(Debug)]
pub(crate) struct TokenHold {
    pub(super) caller: Arc<str>,
    pub(super) per_minute: u32,
    pub(super) reserved: u64,
    pub(super) prompt_estimate: u64,
    pub(super) taken: Taken,
}

/// The tokens a usage counts.
fn used(u: &Usage) -> u64 {
    u.total_tokens
        .max(u.prompt_tokens.saturating_add(u.completion_tokens))
}

impl TokenHold {
    /// Replaces the reservation with `used` tokens.
    pub(super) fn settle(self, used: u64) {
        let delta = i128::from(used) - i128::from(self.reserved);
        let delta = i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX });
        if delta == 0 {
            return;
        }
        match self.taken {
            Taken::Local(local) => {
                local.adjust_now(&self.caller, LimitKind::Tokens, self.per_minute, delta);
            }
            Taken::Shared(store) => {
                let (caller, per_minute) = (self.caller, self.per_minute);
                let fut = async move {
                    if let Err(e) = store
                        .adjust(&caller, LimitKind::Tokens, per_minute, delta)
                        .await
                    {
                        store_failed("adjust", &e);
                    }
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(h) => {
                        h.spawn(fut);
                    }
                    Err(_) => tracing::warn!(
                        "no tokio runtime: a tokens-per-minute reservation was not settled"
                    ),
                }
            }
        }
    }

    /// Settles on the answer: a whole completion's usage (kept as reserved when it has none),
    /// a stream's usage chunk, or for a failure nothing used.
    pub(super) fn settle_on(
        self,
        result: Result<ChatHttpResponse, Error>,
    ) -> Result<ChatHttpResponse, Error> {
        match result {
            Ok(resp) => Ok(resp.map(|body| match body {
                ChatResponse::Complete(c) => {
                    if let Some(u) = c.usage() {
                        self.settle(used(u));
                    }
                    ChatResponse::Complete(c)
                }
                ChatResponse::Stream(s) => ChatResponse::Stream(Box::pin(SettlingStream {
                    inner: s,
                    hold: Some(self),
                    streamed_bytes: 0,
                })),
            })),
            Err(e) => {
                self.settle(0);
                Err(e)
            }
        }
    }
}

/// Counts a failed store call: a metric, and a warning at most every ten seconds.
pub(super) fn store_failed(op: &'static str, e: &Error) {
    static LAST_WARNING: Mutex<Option<tokio::time::Instant>> = Mutex::new(None);
    metrics::counter!("switchboard_rate_limit_store_errors_total", "op" => op).increment(1);
    let warn = {
        let mut last = LAST_WARNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if due {
            *last = Some(tokio::time::Instant::now());
        }
        due
    };
    if warn {
        tracing::warn!(
            op,
            error = %e,
            "rate-limit store unavailable: this instance counts the limits on its own until it answers"
        );
    } else {
        tracing::debug!(op, error = %e, "rate-limit store unavailable");
    }
}

/// Settles a stream's reservation on its usage chunk; without one (the client hung up, the
/// stream failed), from the prompt estimate plus the streamed text at four bytes a token.
struct SettlingStream {
    inner: ChunkStream,
    hold: Option<TokenHold>,
    streamed_bytes: usize,
}

impl SettlingStream {
    fn observe(&mut self, chunk: &ChatCompletionChunk) {
        if let Some(u) = chunk.usage.as_deref() {
            if let Some(hold) = self.hold.take() {
                hold.settle(used(u));
            }
            return;
        }
        for c in &chunk.choices {
            let d = &c.delta;
            self.streamed_bytes += d.content.as_ref().map_or(0, String::len)
                + d.reasoning.as_ref().map_or(0, String::len)
                + d.tool_calls.as_deref().map_or(0, |calls| {
                    calls
                        .iter()
                        .filter_map(|t| t.function.as_ref())
                        .map(|f| {
                            f.arguments.as_ref().map_or(0, String::len)
                                + f.name.as_ref().map_or(0, String::len)
                        })
                        .sum()
                });
        }
    }

    fn finish(&mut self) {
        if let Some(hold) = self.hold.take() {
            let estimate = hold.prompt_estimate + (self.streamed_bytes as u64).div_ceil(4);
            hold.settle(estimate);
        }
    }
}

impl Stream for SettlingStream {
    type Item = Result<ChatCompletionChunk, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let poll = this.inner.as_mut().poll_next(cx);
        match &poll {
            Poll::Pending => {}
            Poll::Ready(Some(Ok(chunk))) => {
                if this.hold.is_some() {
                    this.observe(chunk);
                }
            }
            Poll::Ready(Some(Err(_)) | None) => this.finish(),
        }
        poll
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl Drop for SettlingStream {
    fn drop(&mut self) {
        self.finish();
    }
}
