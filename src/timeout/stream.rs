use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::{deadline_error, earliest};
use crate::chat::ChunkStream;
use crate::openai::ChatCompletionChunk;
use crate::Error;

pin_project! {
    /// Enforces first-token, idle and total deadlines on a chunk stream. One timer, re-armed
    /// per chunk; ends with an [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) item.
    pub struct TimeoutStream {
        inner: ChunkStream,
        #[pin]
        timer: Sleep,
        total: Option<Instant>,
        first: Option<Instant>,
        idle: Option<Duration>,
        started: bool,
        done: bool,
    }
}

impl fmt::Debug for TimeoutStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutStream")
            .field("total", &self.total)
            .field("first", &self.first)
            .field("idle", &self.idle)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl TimeoutStream {
    /// Wraps `inner` with absolute `total` and `first` output deadlines and an `idle` gap.
    pub fn new(
        inner: ChunkStream,
        total: Option<Instant>,
        first: Option<Instant>,
        idle: Option<Duration>,
    ) -> Self {
        let now = Instant::now();
        let first_deadline = earliest(first, idle.map(|i| now + i));
        let at = earliest(total, first_deadline);
        Self {
            inner,
            // Far future when nothing applies: never fires.
            timer: tokio::time::sleep_until(
                at.unwrap_or_else(|| now + Duration::from_secs(86_400 * 365)),
            ),
            total,
            first,
            idle,
            started: false,
            done: false,
        }
    }
}

impl Stream for TimeoutStream {
    type Item = Result<ChatCompletionChunk, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => {
                if let Ok(chunk) = &item {
                    if chunk.has_output() {
                        *this.started = true;
                    }
                }
                let now = Instant::now();
                let next_gap = this.idle.map(|i| now + i);
                let next = if *this.started {
                    earliest(*this.total, next_gap)
                } else {
                    earliest(*this.total, earliest(*this.first, next_gap))
                };
                if let Some(at) = next {
                    this.timer.as_mut().reset(at);
                }
                if item.is_err() {
                    *this.done = true;
                }
                return Poll::Ready(Some(item));
            }
            Poll::Ready(None) => {
                *this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            *this.done = true;
            let now = Instant::now();
            let what = if this.total.is_some_and(|t| t <= now) {
                "total"
            } else if !*this.started && this.first.is_some_and(|f| f <= now) {
                "first-token"
            } else {
                "idle"
            };
            return Poll::Ready(Some(Err(deadline_error(what))));
        }
        Poll::Pending
    }
}
