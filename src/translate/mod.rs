//! ProviderTranslate: the innermost layer. Turns a [`ChatRequest`](crate::openai::ChatRequest) and the [`Target`] being
//! tried into the provider's native HTTP request, calls the HTTP client, and turns the answer
//! (a body or an SSE stream, decoded as bytes arrive) back into a [`ChatResponse`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use switchboard::catalog::{Provider, ProviderKind};
//! use switchboard::client::UpstreamBody;
//! use switchboard::ext::{Candidate, Target};
//! use switchboard::openai::ChatRequest;
//! use switchboard::translate::ProviderTranslate;
//! use switchboard::Error;
//! use tower::{service_fn, ServiceExt};
//!
//! // A fake HTTP client standing in for Anthropic: checks the native request, answers natively.
//! let client = service_fn(|req: http::Request<UpstreamBody>| async move {
//!     assert_eq!(req.uri(), "https://api.anthropic.com/v1/messages");
//!     assert_eq!(req.headers()["x-api-key"], "sk-ant");
//!     let body = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-20250514",
//!         "content":[{"type":"text","text":"Hello!"}],"stop_reason":"end_turn","stop_sequence":null,
//!         "usage":{"input_tokens":10,"output_tokens":3}}"#;
//!     Ok::<_, Error>(http::Response::new(Full::new(Bytes::from(body))))
//! });
//! let provider = Arc::new(
//!     Provider::new("anthropic", ProviderKind::Anthropic, "https://api.anthropic.com").with_api_key("sk-ant"),
//! );
//! let mut req = http::Request::new(Arc::new(
//!     ChatRequest::from_slice(br#"{"model":"x","max_tokens":100,"messages":[{"role":"user","content":"Hi"}]}"#).unwrap(),
//! ));
//! req.extensions_mut().insert(Target::new(Candidate::passthrough(
//!     "anthropic/claude-sonnet-4".into(),
//!     provider,
//!     "claude-sonnet-4-20250514".into(),
//! )));
//! let resp = ProviderTranslate::new(client).oneshot(req).await.unwrap();
//! let c = resp.into_body().into_complete().unwrap().into_typed().unwrap();
//! assert_eq!(c.model, "anthropic/claude-sonnet-4");
//! assert_eq!(c.choices[0].message.content.as_deref(), Some("Hello!"));
//! assert_eq!(c.usage.unwrap().total_tokens, 13);
//! # }
//! ```
//!
//! Requires: [`Target`] (written by [`Fallback`](crate::fallback::Fallback)); without one the
//! layer's default target is used, and without that the request fails with a clear 502.
//! Provides: the canonical answer; upstream errors mapped to [`ErrorKind`](crate::ErrorKind)
//! per the error table.
//!
//! With `reasoning.exclude: true` the reasoning text (`reasoning`) is removed from the answer;
//! structured `reasoning_details` stay, because providers need them back (with their
//! signatures) on the next turn.
//!
//! # Streaming
//! The stream yields chunks as the upstream's bytes arrive; nothing is buffered beyond one
//! partial SSE event, which may not grow past `max_response_bytes` (nor 16 MiB). A stream that breaks (connection reset, malformed event, missing end
//! marker) yields one `Err` and ends.

pub mod future;

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use http_body::Body;
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::body_util::ReadError;
use crate::chat::{ChatHttpRequest, ChatHttpResponse, ChatResponse};
use crate::client::UpstreamBody;
use crate::ext::{Candidate, NativeAnswer, NativeFormat, NativeRequest, Target};
use crate::openai::sse::{SseDecoder, SseEvent};
use crate::openai::ChatCompletionChunk;
use crate::provider::{DecodeContext, EncodeContext, StreamDecode};
use crate::{BoxError, Error};

/// Default cap on a non-streaming upstream body: 32 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Cap on one event of an upstream stream (and on one line of it).
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Cap on an upstream error body that is read for its message.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Layer for [`ProviderTranslate`].
#[derive(Debug, Clone)]
pub struct ProviderTranslateLayer {
    config: Arc<Config>,
}

#[derive(Debug, Clone)]
struct Config {
    max_response_bytes: usize,
    default_target: Option<Candidate>,
}

impl Default for ProviderTranslateLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ProviderTranslateLayer {
    /// A layer with default settings.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
                default_target: None,
            }),
        }
    }

    /// The largest non-streaming upstream body accepted, and the largest single event of a
    /// stream (larger → 502; stream events are capped at 16 MiB in any case).
    #[must_use]
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        Arc::make_mut(&mut self.config).max_response_bytes = n;
        self
    }

    /// The candidate used when a request carries no [`Target`].
    #[must_use]
    pub fn default_target(mut self, c: Candidate) -> Self {
        Arc::make_mut(&mut self.config).default_target = Some(c);
        self
    }
}

impl<C> Layer<C> for ProviderTranslateLayer {
    type Service = ProviderTranslate<C>;
    fn layer(&self, client: C) -> ProviderTranslate<C> {
        ProviderTranslate {
            client,
            config: self.config.clone(),
        }
    }
}

/// The translating service; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ProviderTranslate<C> {
    client: C,
    config: Arc<Config>,
}

impl<C> ProviderTranslate<C> {
    /// Wraps a client with default settings.
    pub fn new(client: C) -> Self {
        ProviderTranslateLayer::new().layer(client)
    }
    crate::macros::inner_service_accessors!(client: C);
}

impl<C, B> Service<ChatHttpRequest> for ProviderTranslate<C>
where
    C: Service<http::Request<UpstreamBody>, Response = http::Response<B>, Error = Error>
        + Clone
        + Send
        + 'static,
    C::Future: Send,
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = future::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.client.poll_ready(cx)
    }

    fn call(&mut self, req: ChatHttpRequest) -> future::ResponseFuture {
        let (parts, chat) = req.into_parts();
        let candidate = match parts.extensions.get::<Target>() {
            Some(t) => t.candidate.clone(),
            None => match &self.config.default_target {
                Some(c) => c.clone(),
                None => {
                    return future::ResponseFuture::new(Box::pin(std::future::ready(Err(
                        Error::upstream(
                            "no provider target for this request (ModelResolve and Fallback must run first)",
                        ),
                    ))))
                }
            },
        };
        let ectx = EncodeContext {
            provider: &candidate.provider,
            upstream_model: &candidate.upstream_model,
            max_output: candidate.max_output,
        };
        let codec = candidate.provider.codec();
        // A request in the provider's own format goes as the client sent it.
        let mut native: Option<NativeFormat> = None;
        let client_native = parts.extensions.get::<NativeRequest>();
        let encoded = match client_native.and_then(|n| {
            let r = codec.encode_native(n, &ectx)?;
            native = Some(n.format);
            Some(r)
        }) {
            Some(r) => r,
            // Parts of the request only its own format carries: refused, not dropped.
            None => match client_native.and_then(|n| n.only_native.clone()) {
                Some(e) => Err(e),
                None => codec.encode(&chat, &ectx),
            },
        };
        let mut upstream_req = match encoded {
            Ok(r) => r,
            Err(e) => return future::ResponseFuture::new(Box::pin(std::future::ready(Err(e)))),
        };
        // Readiness was driven by poll_ready on `self.client`; take it and leave a clone.
        let clone = self.client.clone();
        let mut client = std::mem::replace(&mut self.client, clone);
        let sent = tokio::time::Instant::now();
        let max = self.config.max_response_bytes;
        let provider_name = candidate.provider.name.clone();
        // Without an auth step the request is handed to the client now; with one, the
        // future signs it or adds its token first.
        let ready = candidate
            .provider
            .auth()
            .is_none()
            .then(|| client.call(std::mem::take(&mut upstream_req)));
        future::ResponseFuture::new(Box::pin(async move {
            let codec = candidate.provider.codec();
            let ctx = DecodeContext {
                model: candidate.model.clone(),
                provider: provider_name.clone(),
            };
            let fut = match ready {
                Some(fut) => fut,
                None => {
                    if let Some(auth) = candidate.provider.auth() {
                        auth.authorize(&mut upstream_req)
                            .await
                            .map_err(|e| e.with_provider(provider_name.clone()))?;
                    }
                    client.call(upstream_req)
                }
            };
            let resp = fut
                .await
                .map_err(|e| e.with_provider(provider_name.clone()))?;
            let (rparts, body) = resp.into_parts();
            if !rparts.status.is_success() {
                let bytes = read_body(body, MAX_ERROR_BYTES, true)
                    .await
                    .unwrap_or_default();
                return Err(codec
                    .decode_error(rparts.status, &rparts.headers, &bytes)
                    .with_provider(provider_name));
            }
            let exclude_reasoning = chat.reasoning.as_ref().and_then(|r| r.exclude) == Some(true);
            let mut native_answer = None;
            let answer = if chat.is_stream() {
                let mut s = TranslateStream::new(body, codec.stream_decoder(&ctx), max);
                s.sse = Frames::new(codec.framing(), max);
                s.exclude_reasoning = exclude_reasoning;
                s.native = native.map(|_| Vec::new());
                ChatResponse::Stream(Box::pin(s))
            } else {
                let bytes = read_body(body, max, false)
                    .await
                    .map_err(|e| e.with_provider(provider_name.clone()))?;
                native_answer = native.map(|format| NativeAnswer {
                    format,
                    body: bytes.clone(),
                });
                // Dropping reasoning needs the typed choices; otherwise a codec may pass the
                // provider's bytes through.
                match (!exclude_reasoning)
                    .then(|| codec.passthrough(&bytes, &ctx))
                    .flatten()
                {
                    Some(raw) => ChatResponse::from(raw),
                    None => {
                        let mut c = codec
                            .decode(&bytes, &ctx)
                            .map_err(|e| e.with_provider(provider_name))?;
                        if exclude_reasoning {
                            for ch in &mut c.choices {
                                ch.message.reasoning = None;
                            }
                        }
                        ChatResponse::from(c)
                    }
                }
            };
            let mut out = http::Response::new(answer);
            out.extensions_mut().insert(UpstreamLatency(sent.elapsed()));
            if let Some(n) = native_answer {
                out.extensions_mut().insert(n);
            }
            if let Some(id) = rparts
                .headers
                .get(&X_REQUEST_ID)
                .or_else(|| rparts.headers.get(&REQUEST_ID))
            {
                out.extensions_mut().insert(UpstreamRequestId(id.clone()));
            }
            Ok(out)
        }))
    }
}

/// The headers an upstream names its request id in (OpenAI's, then Anthropic's).
use crate::headers::{REQUEST_ID as X_REQUEST_ID, UPSTREAM_REQUEST_ID as REQUEST_ID};

pub use crate::ext::{UpstreamLatency, UpstreamRequestId};

pub(crate) async fn read_body<B>(body: B, max: usize, truncate: bool) -> Result<Bytes, Error>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if truncate {
        // Error bodies: read at most `max` bytes, ignore the rest.
        let mut body = std::pin::pin!(body);
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| Error::upstream("reading the error body failed").with_source(e))?;
            if let Ok(data) = frame.into_data() {
                let room = max.saturating_sub(buf.len());
                buf.extend_from_slice(&data[..data.len().min(room)]);
                if buf.len() >= max {
                    break;
                }
            }
        }
        return Ok(Bytes::from(buf));
    }
    match crate::body_util::read_to_bytes(body, max).await {
        Ok(b) => Ok(b),
        Err(ReadError::TooLarge) => Err(Error::upstream(format!(
            "the provider's response is larger than the {max} byte limit"
        ))
        .with_code("upstream_response_too_large")),
        Err(ReadError::Body(e)) => Err(Error::upstream(
            "the connection to the provider failed while reading the response",
        )
        .with_source(e)),
    }
}

pin_project! {
    /// Decodes an upstream SSE body into chunks as bytes arrive.
    pub struct TranslateStream<B> {
        #[pin]
        body: B,
        sse: Frames,
        decoder: Box<dyn StreamDecode>,
        queue: VecDeque<ChatCompletionChunk>,
        scratch: Vec<ChatCompletionChunk>,
        state: StreamState,
        error: Option<Error>,
        exclude_reasoning: bool,
        // A same-format pass-through: the upstream's events not yet attached to a chunk.
        native: Option<Vec<u8>>,
        // The most bytes of events `native` may hold (as much as one event may be).
        native_limit: usize,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Open,
    Draining,
    Done,
}

impl<B> fmt::Debug for TranslateStream<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TranslateStream")
            .field("state", &self.state)
            .field("queued", &self.queue.len())
            .finish()
    }
}

impl<B> TranslateStream<B> {
    /// No single event may be larger than `max_event` bytes (nor than the SSE decoder's own
    /// limit).
    fn new(body: B, decoder: Box<dyn StreamDecode>, max_event: usize) -> Self {
        Self {
            body,
            sse: Frames::Sse(SseDecoder::with_limit(max_event.min(MAX_EVENT_BYTES))),
            decoder,
            queue: VecDeque::new(),
            scratch: Vec::new(),
            state: StreamState::Open,
            error: None,
            exclude_reasoning: false,
            native: None,
            native_limit: max_event.min(MAX_EVENT_BYTES),
        }
    }
}

impl<B> Stream for TranslateStream<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Item = Result<ChatCompletionChunk, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(mut c) = this.queue.pop_front() {
                if *this.exclude_reasoning {
                    for ch in &mut c.choices {
                        ch.delta.reasoning = None;
                    }
                }
                return Poll::Ready(Some(Ok(c)));
            }
            if let Some(e) = this.error.take() {
                *this.state = StreamState::Done;
                return Poll::Ready(Some(Err(e)));
            }
            match *this.state {
                StreamState::Done => return Poll::Ready(None),
                StreamState::Draining => {
                    // The end marker was seen: read what is already buffered (so an HTTP/1.1
                    // connection can go back to the pool) but never wait for more.
                    match this.body.as_mut().poll_frame(cx) {
                        Poll::Ready(Some(Ok(_))) => continue,
                        _ => {
                            *this.state = StreamState::Done;
                            return Poll::Ready(None);
                        }
                    }
                }
                StreamState::Open => {}
            }
            let step = match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.sse.push(&data);
                        decode_events(
                            this.sse,
                            this.decoder.as_mut(),
                            this.scratch,
                            this.native.as_mut().map(|n| (n, *this.native_limit)),
                        )
                    }
                    Err(_) => Ok(()),
                },
                Some(Err(e)) => Err(Error::upstream(
                    "the connection to the provider broke mid-stream",
                )
                .with_source(e)),
                None => {
                    *this.state = StreamState::Done;
                    this.sse
                        .check_end()
                        .and_then(|()| this.decoder.finish(this.scratch))
                }
            };
            // Chunks decoded before a failure go out first, then the error.
            this.queue.extend(this.scratch.drain(..));
            match step {
                Err(e) => *this.error = Some(e),
                Ok(()) if *this.state == StreamState::Open && this.decoder.is_done() => {
                    *this.state = StreamState::Draining;
                }
                Ok(()) => {}
            }
        }
    }
}

/// The framing decoder of a stream ([`StreamFraming`](crate::provider::StreamFraming)).
enum Frames {
    Sse(SseDecoder),
    Aws(crate::provider::bedrock::eventstream::EventStreamDecoder),
}

impl Frames {
    fn new(framing: crate::provider::StreamFraming, max_event: usize) -> Self {
        let max = max_event.min(MAX_EVENT_BYTES);
        match framing {
            crate::provider::StreamFraming::AwsEventStream => Self::Aws(
                crate::provider::bedrock::eventstream::EventStreamDecoder::with_limit(max),
            ),
            _ => Self::Sse(SseDecoder::with_limit(max)),
        }
    }

    fn push(&mut self, data: &[u8]) {
        match self {
            Self::Sse(d) => d.push(data),
            Self::Aws(d) => d.push(data),
        }
    }

    fn next_event(&mut self) -> Result<Option<SseEvent>, Error> {
        match self {
            Self::Sse(d) => d.next_event(),
            Self::Aws(d) => d.next_event(),
        }
    }

    /// At the end of the body: a binary message cut short is an error.
    fn check_end(&self) -> Result<(), Error> {
        match self {
            Self::Aws(d) if d.has_partial() => Err(Error::upstream(
                "the provider's event stream ended in the middle of a message",
            )),
            _ => Ok(()),
        }
    }
}

fn decode_events(
    sse: &mut Frames,
    decoder: &mut dyn StreamDecode,
    out: &mut Vec<ChatCompletionChunk>,
    mut native: Option<(&mut Vec<u8>, usize)>,
) -> Result<(), Error> {
    while let Some(ev) = sse.next_event()? {
        let Some((pending, limit)) = native.as_mut() else {
            decoder.event(ev, out)?;
            continue;
        };
        write_event(pending, &ev);
        if pending.len() > *limit {
            // Events that make no output (pings, server-tool blocks) without end.
            return Err(Error::upstream(format!(
                "bad upstream stream: more than {limit} bytes of events without output"
            )));
        }
        let before = out.len();
        decoder.event(ev, out)?;
        // The events so far ride on the last chunk this one made (the one that carries the
        // usage at the end of a stream, so the edge can add the cost to them).
        if out.len() > before {
            if let Some(last) = out.last_mut() {
                last.native = Some(Bytes::from(std::mem::take(*pending)));
            }
        }
    }
    Ok(())
}

/// One SSE event as the provider framed it (`event:` and `data:` lines).
fn write_event(out: &mut Vec<u8>, ev: &SseEvent) {
    if let Some(name) = &ev.event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in ev.data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}
