//! The SSE body of an ingress format with named events (Anthropic Messages, the Responses
//! API): canonical chunks rendered by the format's encoder, with keep-alive comments while the
//! stack has not answered yet.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use crate::chat::{ChatHttpResponse, ChatResponse, ChunkStream};
use crate::openai::ChatCompletionChunk;
use crate::Error;

/// The stack's answer, not yet there (keep-alive mode).
pub(crate) type Pending = Pin<Box<dyn Future<Output = Result<ChatHttpResponse, Error>> + Send>>;

/// Renders canonical chunks as one format's events, appended to a buffer.
pub(crate) trait EventEncoder: Send + 'static {
    /// Renders one chunk.
    fn chunk(&mut self, c: &ChatCompletionChunk, out: &mut Vec<u8>);
    /// The end of the stream.
    fn finish(&mut self, out: &mut Vec<u8>);
    /// A failure after the start (or while waiting): the format's in-band error; the stream
    /// ends.
    fn fail(&mut self, e: &Error, out: &mut Vec<u8>);
    /// Whether the last event has been written.
    fn is_done(&self) -> bool;
}

/// The SSE comment sent while waiting.
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// An SSE body of `E`'s events.
pub(crate) struct EventSse<E> {
    waiting: Option<(Pending, tokio::time::Interval)>,
    stream: ChunkStream,
    encoder: E,
}

impl<E> fmt::Debug for EventSse<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSse")
            .field("waiting", &self.waiting.is_some())
            .finish_non_exhaustive()
    }
}

impl<E: EventEncoder> EventSse<E> {
    pub(crate) fn new(stream: ChunkStream, encoder: E) -> Self {
        Self {
            waiting: None,
            stream,
            encoder,
        }
    }

    /// Waits for `pending` with a keep-alive comment every `every` (at least 10 ms).
    pub(crate) fn waiting(pending: Pending, every: Duration, encoder: E) -> Self {
        let every = every.max(Duration::from_millis(10));
        let tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        Self {
            waiting: Some((pending, tick)),
            stream: Box::pin(futures_util::stream::empty()),
            encoder,
        }
    }

    /// Waits for the stack: keep-alive comments meanwhile, then its stream (a whole
    /// completion as chunks), or its failure in-band.
    fn poll_waiting(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let Some((pending, tick)) = &mut self.waiting else {
            return Poll::Ready(None);
        };
        match pending.as_mut().poll(cx) {
            Poll::Ready(Ok(resp)) => {
                self.waiting = None;
                self.stream = match resp.into_body() {
                    ChatResponse::Stream(s) => s,
                    ChatResponse::Complete(c) => match c.into_typed() {
                        Ok(c) => Box::pin(futures_util::stream::iter(
                            crate::openai::completion_to_chunks(&c).into_iter().map(Ok),
                        )),
                        Err(e) => Box::pin(futures_util::stream::iter([Err(e)])),
                    },
                };
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                self.waiting = None;
                let mut out = Vec::new();
                self.encoder.fail(&e, &mut out);
                Poll::Ready(Some(Bytes::from(out)))
            }
            Poll::Pending => match tick.poll_tick(cx) {
                Poll::Ready(_) => Poll::Ready(Some(Bytes::from_static(KEEP_ALIVE))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.encoder.is_done()
    }

    /// The next piece of the body: the events of every chunk that is ready.
    pub(crate) fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.waiting.is_some() {
            match self.poll_waiting(cx) {
                Poll::Ready(None) => {}
                other => return other,
            }
        }
        let mut out = Vec::new();
        loop {
            if self.encoder.is_done() {
                return Poll::Ready((!out.is_empty()).then(|| Bytes::from(out)));
            }
            match self.stream.as_mut().poll_next(cx) {
                Poll::Pending => {
                    return if out.is_empty() {
                        Poll::Pending
                    } else {
                        Poll::Ready(Some(Bytes::from(out)))
                    }
                }
                Poll::Ready(None) => self.encoder.finish(&mut out),
                Poll::Ready(Some(Ok(chunk))) => {
                    self.encoder.chunk(&chunk, &mut out);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Bytes::from(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(error = %e, "stream failed after it started");
                    self.encoder.fail(&e, &mut out);
                }
            }
        }
    }
}
