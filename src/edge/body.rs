use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::chat::{ChatResponse, ChunkStream};
use crate::openai::sse::DONE;
use crate::openai::{unix_now, ChatCompletionChunk};
use crate::Error;

use super::events::{EventSse, Pending};
use super::messages::StreamEncoder as MessagesEncoder;
use super::responses::StreamEncoder as ResponsesEncoder;

/// The edge's response body: a whole JSON document or an SSE stream.
pub struct EdgeBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Sse(Box<SseState>),
    Messages(Box<EventSse<MessagesEncoder>>),
    Responses(Box<EventSse<ResponsesEncoder>>),
}

/// The SSE comment sent while waiting for the first output.
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

struct SseState {
    /// The stack's answer while it is not there yet, and the keep-alive ticker.
    waiting: Option<(Pending, tokio::time::Interval)>,
    stream: ChunkStream,
    wants_usage: bool,
    id: String,
    model: String,
    created: u64,
    finished: bool,
}

impl EdgeBody {
    /// A complete body.
    pub fn full(b: Bytes) -> Self {
        Self {
            kind: Kind::Full((!b.is_empty()).then_some(b)),
        }
    }

    /// An SSE body rendering `stream`; usage-only chunks are dropped unless `wants_usage`.
    pub fn sse(stream: ChunkStream, wants_usage: bool) -> Self {
        Self {
            kind: Kind::Sse(Box::new(SseState {
                waiting: None,
                stream,
                wants_usage,
                id: String::new(),
                model: String::new(),
                created: 0,
                finished: false,
            })),
        }
    }
}

impl EdgeBody {
    /// An SSE body that sends `: keep-alive` comments every `every` until `pending` answers,
    /// then renders its stream (a whole completion as chunks), or its failure as an error
    /// chunk and `[DONE]`.
    pub(crate) fn sse_waiting(
        pending: Pending,
        wants_usage: bool,
        every: std::time::Duration,
    ) -> Self {
        let every = every.max(std::time::Duration::from_millis(10));
        let tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut body = Self::sse(Box::pin(futures_util::stream::empty()), wants_usage);
        if let Kind::Sse(s) = &mut body.kind {
            s.waiting = Some((pending, tick));
        }
        body
    }

    /// An SSE body rendering `stream` as Anthropic Messages events.
    pub(crate) fn messages_sse(stream: ChunkStream) -> Self {
        Self {
            kind: Kind::Messages(Box::new(EventSse::new(stream, MessagesEncoder::new()))),
        }
    }

    /// An SSE body that sends keep-alive comments every `every` until `pending` answers, then
    /// renders its stream as Anthropic Messages events.
    pub(crate) fn messages_waiting(pending: Pending, every: std::time::Duration) -> Self {
        let sse = EventSse::waiting(pending, every, MessagesEncoder::new());
        Self {
            kind: Kind::Messages(Box::new(sse)),
        }
    }

    /// An SSE body rendering `stream` as Responses API events.
    pub(crate) fn responses_sse(stream: ChunkStream, encoder: ResponsesEncoder) -> Self {
        Self {
            kind: Kind::Responses(Box::new(EventSse::new(stream, encoder))),
        }
    }

    /// An SSE body that sends keep-alive comments every `every` until `pending` answers, then
    /// renders its stream as Responses API events (a failure as `error` + `response.failed`).
    pub(crate) fn responses_waiting(
        pending: Pending,
        every: std::time::Duration,
        encoder: ResponsesEncoder,
    ) -> Self {
        Self {
            kind: Kind::Responses(Box::new(EventSse::waiting(pending, every, encoder))),
        }
    }
}

impl fmt::Debug for EdgeBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(b) => f.debug_tuple("EdgeBody::Full").field(b).finish(),
            Kind::Sse(_) => f.write_str("EdgeBody::Sse"),
            Kind::Messages(_) => f.write_str("EdgeBody::Messages"),
            Kind::Responses(_) => f.write_str("EdgeBody::Responses"),
        }
    }
}

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Sse(s) => s.poll_event(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
            Kind::Messages(s) => s.poll_event(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
            Kind::Responses(s) => s.poll_event(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Sse(s) => s.finished,
            Kind::Messages(s) => s.is_done(),
            Kind::Responses(s) => s.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Sse(_) | Kind::Messages(_) | Kind::Responses(_) => SizeHint::default(),
        }
    }
}

impl SseState {
    /// Waits for the stack's answer, with keep-alive comments meanwhile: `Ready(None)` once
    /// its stream is in place.
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
                Poll::Ready(Some(self.fail(&e)))
            }
            Poll::Pending => match tick.poll_tick(cx) {
                Poll::Ready(_) => Poll::Ready(Some(Bytes::from_static(KEEP_ALIVE))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.waiting.is_some() {
            match self.poll_waiting(cx) {
                Poll::Ready(None) => {}
                other => return other,
            }
            if self.finished {
                return Poll::Ready(None);
            }
        }
        loop {
            match self.stream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.finished = true;
                    return Poll::Ready(Some(Bytes::from_static(DONE)));
                }
                Poll::Ready(Some(Ok(mut chunk))) => {
                    self.remember(&chunk);
                    if !self.wants_usage {
                        if chunk.is_usage_only() {
                            continue;
                        }
                        chunk.usage = None;
                    }
                    return Poll::Ready(Some(chunk.to_sse_event()));
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(error = %e, "stream failed after it started");
                    return Poll::Ready(Some(self.fail(&e)));
                }
            }
        }
    }

    fn remember(&mut self, c: &ChatCompletionChunk) {
        if self.id.is_empty() {
            self.id.clone_from(&c.id);
            self.model.clone_from(&c.model);
            self.created = c.created;
        }
    }

    /// The error chunk followed by `[DONE]`, in one frame.
    fn fail(&mut self, e: &Error) -> Bytes {
        self.finished = true;
        if self.id.is_empty() {
            self.id = crate::openai::new_completion_id();
            self.created = unix_now();
        }
        ChatCompletionChunk::error_chunk(&self.id, &self.model, self.created, e)
            .to_sse_event_then(DONE)
    }
}
