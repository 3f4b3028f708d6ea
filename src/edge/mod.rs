//! The HTTP edge: turns HTTP requests into typed ones and typed answers (and every [`Error`])
//! into HTTP, OpenAI-style.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use http_body_util::{BodyExt, Full};
//! use switchboard::edge::ChatCompletions;
//! use switchboard::{ChatHttpRequest, ChatHttpResponse, Error, ErrorKind};
//! use tower::{service_fn, ServiceExt};
//!
//! // A fake typed stack that refuses every request as rate limited.
//! let stack = service_fn(|req: ChatHttpRequest| async move {
//!     assert_eq!(req.body().model, "fast"); // parsed once by the edge
//!     Err::<ChatHttpResponse, _>(Error::new(ErrorKind::RateLimited, "slow down"))
//! });
//! let req = http::Request::post("/v1/chat/completions")
//!     .body(Full::new(r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#.into()))
//!     .unwrap();
//! let resp = ChatCompletions::new(stack).oneshot(req).await.unwrap();
//! assert_eq!(resp.status(), 429);
//! let body = resp.into_body().collect().await.unwrap().to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(json["error"]["type"], "rate_limit_error");
//! # }
//! ```
//!
//! [`ChatCompletions`] serves chat completions: it reads the body once (size limit → 413, an
//! optional read deadline → 408), parses it into a [`ChatRequest`]
//! (malformed → 400), calls the typed stack, and renders the answer as JSON or as SSE
//! (`data: {...}` … `data: [DONE]`). The final usage chunk of a stream is shown only when the
//! client asked with `stream_options.include_usage`. A stream that fails after it started ends
//! with an error chunk and `data: [DONE]`. [`Models`] serves `GET /v1/models` from the catalog
//! in OpenRouter's shape.
//!
//! Neither matches paths: the host app routes them (`Router::route_service`, `nest_service`).
//! Both are `Service<http::Request<B>, Error = Infallible>`, as axum requires.

mod body;
mod embeddings;
mod events;
pub mod future;
pub mod messages;
mod models;
mod refused;
pub mod responses;
mod service;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body::Body;
use tower::ServiceExt;

pub use body::EdgeBody;
pub use embeddings::Embeddings;
pub use messages::{CountTokens, Messages, MessagesLayer};
pub use models::Models;
pub use responses::{Responses, ResponsesLayer};

use crate::body_util::ReadError;
use crate::chat::{ChatHttpRequest, ChatHttpResponse, ChatResponse};
use crate::ext::{CacheStatus, Cost, GenerationId, Ingress, ServedBy, UpstreamRequestId};
use crate::keys::ClientKeysLayer;
use crate::openai::ChatRequest;
use crate::{BoxError, Error, ErrorKind};
use refused::RefusedLog;
use service::{Answer, Edge, EdgeSettings, Incoming, RequestBody, TypedStack};
use tracing::Instrument;

/// Default request body limit: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Layer for [`ChatCompletions`].
#[derive(Clone)]
pub struct ChatCompletionsLayer {
    settings: EdgeSettings,
}

#[derive(Debug, Clone, Copy)]
struct EdgeConfig {
    max_body_bytes: usize,
    body_timeout: Option<Duration>,
    max_messages: usize,
    max_tools: usize,
    max_tools_bytes: usize,
    keep_alive: Option<Duration>,
}

/// Default cap on the messages of one request.
pub const DEFAULT_MAX_MESSAGES: usize = 10_000;
/// Default cap on the tools of one request.
pub const DEFAULT_MAX_TOOLS: usize = 512;
/// Default cap on the bytes of a request's `tools` (their schemas) and of its
/// `response_format` (its schema), each: 1 MiB.
pub const DEFAULT_MAX_TOOLS_BYTES: usize = 1024 * 1024;

impl Default for ChatCompletionsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ChatCompletionsLayer {
    /// An edge with an 8 MiB body limit and no read deadline.
    pub const fn new() -> Self {
        Self {
            settings: EdgeSettings {
                config: EdgeConfig {
                    max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                    body_timeout: None,
                    max_messages: DEFAULT_MAX_MESSAGES,
                    max_tools: DEFAULT_MAX_TOOLS,
                    max_tools_bytes: DEFAULT_MAX_TOOLS_BYTES,
                    keep_alive: None,
                },
                keys: None,
                refused: RefusedLog::OFF,
            },
        }
    }

    /// Checks the gateway key from the request's headers before the body is read (a
    /// missing or unknown key is a 401 without reading a byte of the body); the typed
    /// [`ClientKeys`](crate::keys::ClientKeys) layer then applies the key's policy without
    /// hashing the key again.
    #[must_use]
    pub fn client_keys(mut self, keys: ClientKeysLayer) -> Self {
        let s = &mut self.settings;
        s.refused = RefusedLog::new(s.refused.sink(), Some(&keys));
        s.keys = Some(keys);
        self
    }

    /// Sends a [`CostRecord`](crate::cost::CostRecord) with the error to `sink` for every
    /// request this edge (and the Messages, Responses and embeddings edges made from it)
    /// answers with an error the [`CostMeter`](crate::cost::CostMeter) did not record: the
    /// ones refused at the edge (400, 401, 408, 413) or by a layer above the meter (403, 404,
    /// 429), or by the meter before its record (402). Give it the CostMeter's sink, so that
    /// every request has one record; [`GatewayBuilder`](crate::GatewayBuilder) does. Records
    /// go to the sink on the request's task (keep it quick, as for the meter).
    #[must_use]
    pub fn refused_sink(mut self, sink: std::sync::Arc<dyn crate::cost::CostSink>) -> Self {
        self.settings.refused = RefusedLog::new(Some(sink), self.settings.keys.as_ref());
        self
    }

    /// The largest accepted request body (larger → 413).
    #[must_use]
    pub const fn max_body_bytes(mut self, n: usize) -> Self {
        self.settings.config.max_body_bytes = n;
        self
    }

    /// The most messages one request may carry (more → 400).
    #[must_use]
    pub const fn max_messages(mut self, n: usize) -> Self {
        self.settings.config.max_messages = n;
        self
    }

    /// The most tools one request may declare (more → 400).
    #[must_use]
    pub const fn max_tools(mut self, n: usize) -> Self {
        self.settings.config.max_tools = n;
        self
    }

    /// The most bytes of `tools` and of `response_format` (the schemas codecs translate) in
    /// one request (more → 400).
    #[must_use]
    pub const fn max_tools_bytes(mut self, n: usize) -> Self {
        self.settings.config.max_tools_bytes = n;
        self
    }

    /// Opt-in keep-alive for streamed requests (chat completions with `"stream": true`, and
    /// streamed Messages and Responses, see [`Messages`] and [`Responses`]): the response starts at once and an SSE comment
    /// (`: keep-alive`) goes out every `every` until the stack has the first output (Fallback
    /// works behind it as usual: nothing of an answer was sent yet). The price: the status is
    /// 200 before the answer is known, so a failure is the format's in-band error (an error
    /// chunk and `[DONE]` for chat, an `error` event for Messages, `error` and
    /// `response.failed` for Responses) rather than an HTTP status,
    /// and the `x-switchboard-*` answer headers are not sent.
    #[must_use]
    pub const fn keep_alive(mut self, every: Duration) -> Self {
        self.settings.config.keep_alive = Some(every);
        self
    }

    /// How long the client may take to send its body (slower → 408).
    #[must_use]
    pub const fn body_timeout(mut self, d: Duration) -> Self {
        self.settings.config.body_timeout = Some(d);
        self
    }
}

/// The chat-completions edge service; see the [module docs](self).
#[derive(Clone)]
pub struct ChatCompletions<S> {
    inner: S,
    settings: EdgeSettings,
}

service::edge_layer!(ChatCompletionsLayer => ChatCompletions, ChatEdge);

/// The chat-completions edge's own part (its errors are the provided OpenAI ones).
#[derive(Clone, Copy)]
struct ChatEdge;

impl Edge for ChatEdge {
    async fn answer<S: TypedStack, B: RequestBody>(self, mut req: Incoming<'_, S, B>) -> Answer {
        let refuse = |watch: Option<&refused::Watch>, e: &Error| {
            refused::note(watch, e);
            error_response(e)
        };
        let bytes = match read_request_body(&req.parts.headers, req.body, req.config).await {
            Ok(b) => b,
            Err(e) => return refuse(req.watch.as_ref(), &e),
        };
        let chat = match ChatRequest::from_bytes(bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(request_id = ?req.id.0, error = %e, "rejected request");
                return refuse(req.watch.as_ref(), &e);
            }
        };
        if let Err(e) = check_limits(&chat, &req.config) {
            return refuse(req.watch.as_ref(), &e);
        }
        let wants_usage = chat.wants_stream_usage();
        // DEBUG: the `request finished` event (or the access log) carries the same fields at INFO.
        let span = service::chat_span!(DEBUG, chat, req.parts, req.id);
        let typed = typed_request(req.parts, chat, req.id);
        if let Some(w) = &mut req.watch {
            w.typed(&typed);
        }
        if let (Some(every), true) = (req.config.keep_alive, typed.body().is_stream()) {
            // The 200 goes out now with SSE comments while nothing has arrived; the stack's
            // stream (Fallback still working behind the comments) or its failure follows.
            let pending = refused::watched(req.inner.oneshot(typed).instrument(span), req.watch);
            return sse_response(EdgeBody::sse_waiting(pending, wants_usage, every));
        }
        match service::traced_call!(req.inner, typed, span) {
            Ok(resp) => {
                if let Some(up) = resp.extensions().get::<UpstreamRequestId>() {
                    span.in_scope(
                        || tracing::debug!(upstream_request_id = ?up.0, "upstream answered"),
                    );
                }
                render(resp, wants_usage)
            }
            Err(e) => refuse(req.watch.as_ref(), &e),
        }
    }
}

/// The request id header, taken from the request or generated, returned on the response.
pub use crate::headers::REQUEST_ID;

pub use crate::ext::RequestId;

async fn read_request_body<B>(
    headers: &HeaderMap,
    body: B,
    config: EdgeConfig,
) -> Result<Bytes, Error>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let too_large = || {
        Error::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "request body is larger than the {} byte limit",
                config.max_body_bytes
            ),
        )
    };
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > config.max_body_bytes as u64 {
            return Err(too_large());
        }
    }
    let read = crate::body_util::read_to_bytes(body, config.max_body_bytes);
    let read = match config.body_timeout {
        Some(d) => tokio::time::timeout(d, read).await.map_err(|_| {
            Error::new(
                ErrorKind::ClientTimeout,
                "the request body was not received in time",
            )
        })?,
        None => read.await,
    };
    match read {
        Ok(b) => Ok(b),
        Err(ReadError::TooLarge) => Err(too_large()),
        Err(ReadError::Body(e)) => {
            Err(Error::invalid_request("could not read the request body").with_source(e))
        }
    }
}

/// What one request may carry, checked once it is parsed and before any layer works on it.
fn check_limits(chat: &ChatRequest, config: &EdgeConfig) -> Result<(), Error> {
    let over = |param: &'static str, what: String| {
        Err(Error::invalid_request(what)
            .with_param(param)
            .with_code("array_above_max_length"))
    };
    if chat.summary.count > config.max_messages {
        return over(
            "messages",
            format!(
                "the request has {} messages; at most {} are allowed",
                chat.summary.count, config.max_messages
            ),
        );
    }
    for (param, raw) in [
        ("tools", &chat.tools),
        ("response_format", &chat.response_format),
    ] {
        if let Some(raw) = raw {
            if raw.get().len() > config.max_tools_bytes {
                return Err(Error::invalid_request(format!(
                    "`{param}` is {} bytes; at most {} are allowed",
                    raw.get().len(),
                    config.max_tools_bytes
                ))
                .with_param(param)
                .with_code("string_above_max_length"));
            }
        }
    }
    if let Some(tools) = &chat.tools {
        // Bounded by the byte limit above; a non-array is the codecs' 400 to give.
        if let Ok(list) = serde_json::from_str::<Vec<&serde_json::value::RawValue>>(tools.get()) {
            if list.len() > config.max_tools {
                return over(
                    "tools",
                    format!(
                        "the request declares {} tools; at most {} are allowed",
                        list.len(),
                        config.max_tools
                    ),
                );
            }
        }
    }
    Ok(())
}

fn json_response(json: Bytes) -> http::Response<EdgeBody> {
    let mut r = http::Response::new(EdgeBody::full(json));
    // Room for the gateway's headers up front: growing the map one insert at a time
    // rehashes it twice.
    *r.headers_mut() = HeaderMap::with_capacity(RESPONSE_HEADERS);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The headers an answer usually carries: content type, the `x-switchboard-*` ones, the
/// generation and request ids.
const RESPONSE_HEADERS: usize = 12;

fn render(resp: ChatHttpResponse, wants_usage: bool) -> http::Response<EdgeBody> {
    let (parts, answer) = resp.into_parts();
    let mut out = match answer {
        ChatResponse::Complete(c) => match c.to_bytes() {
            Ok(json) => json_response(json),
            Err(e) => return error_response(&e),
        },
        ChatResponse::Stream(s) => sse_response(EdgeBody::sse(s, wants_usage)),
    };
    decorate(&mut out, parts);
    out
}

/// An SSE response around `body`.
fn sse_response(body: EdgeBody) -> http::Response<EdgeBody> {
    let mut r = http::Response::new(body);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// The gateway's `x-switchboard-*` headers from the typed answer's parts, and its extensions.
fn decorate(out: &mut http::Response<EdgeBody>, parts: http::response::Parts) {
    let h = out.headers_mut();
    if let Some(served) = parts.extensions.get::<ServedBy>() {
        insert_header(h, X_MODEL, &served.model);
        insert_header(h, X_PROVIDER, &served.provider);
        insert_owned_header(h, X_ATTEMPTS, ServedBy::attempts_header(&served.attempts));
    }
    if let Some(cache) = parts.extensions.get::<CacheStatus>() {
        h.insert(X_CACHE, HeaderValue::from_static(cache.as_str()));
    }
    if let Some(cost) = parts.extensions.get::<Cost>() {
        if let Some(v) = cost_header(cost.0) {
            h.insert(X_COST, v);
        }
    }
    for (name, value) in &parts.headers {
        if name.as_str().starts_with("x-switchboard-") {
            h.insert(name.clone(), value.clone());
        }
    }
    *out.extensions_mut() = parts.extensions;
}

use crate::headers::{ATTEMPTS as X_ATTEMPTS, CACHE as X_CACHE, COST as X_COST};
use crate::headers::{MODEL as X_MODEL, PROVIDER as X_PROVIDER};

fn insert_header(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// `usd` with nine decimals, as `format!("{usd:.9}")` writes it, without the formatting
/// machinery for the usual amounts (non-negative, under a billion dollars).
fn cost_header(usd: f64) -> Option<HeaderValue> {
    const SCALE: f64 = 1e9;
    if !(0.0..1e9).contains(&usd) {
        return HeaderValue::from_str(&format!("{usd:.9}")).ok();
    }
    // Below 1e18 nano-dollars: exact in u64.
    let nanos = (usd * SCALE).round() as u64;
    let mut out = [0u8; 32];
    let mut int = itoa::Buffer::new();
    let int = int.format(nanos / 1_000_000_000).as_bytes();
    out[..int.len()].copy_from_slice(int);
    out[int.len()] = b'.';
    let mut frac = nanos % 1_000_000_000;
    let end = int.len() + 10;
    for slot in out[int.len() + 1..end].iter_mut().rev() {
        *slot = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    HeaderValue::from_bytes(&out[..end]).ok()
}

/// [`insert_header`] for a value built for the header: its buffer becomes the header's.
fn insert_owned_header(h: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value.into_bytes())) {
        h.insert(name, v);
    }
}

/// The OpenAI-style JSON body of an error: `{"error": {"message", "type", "param", "code"}}`.
/// The edge is the only place an [`Error`] becomes JSON.
pub(crate) fn error_json(e: &Error) -> Vec<u8> {
    let body = crate::openai::ErrorBody::from(e);
    serde_json::to_vec(&crate::openai::ErrorResponse { error: body }).unwrap_or_else(|_| {
        br#"{"error":{"message":"internal error","type":"api_error","param":null,"code":null}}"#
            .to_vec()
    })
}

/// Renders an [`Error`] as an OpenAI-style JSON response with the status from the error table
/// (and `Retry-After` when known).
pub fn error_response(e: &Error) -> http::Response<EdgeBody> {
    let mut r = http::Response::new(EdgeBody::full(Bytes::from(error_json(e))));
    *r.status_mut() = e.status();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    error_headers(r.headers_mut(), e);
    r
}

/// The headers every ingress sends with an error: `Retry-After` (whole seconds, rounded up)
/// when known, and the attempts made.
fn error_headers(h: &mut HeaderMap, e: &Error) {
    if let Some(after) = e.retry_after() {
        let secs = after
            .as_secs()
            .saturating_add(u64::from(after.subsec_nanos() > 0));
        h.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(attempts) = e.attempts() {
        insert_owned_header(h, X_ATTEMPTS, ServedBy::attempts_header(attempts));
    }
}

/// The typed request the layers take: the client's method, URI, version, headers and
/// extensions moved over from `parts`, with the request id.
fn typed_request(
    parts: &mut http::request::Parts,
    chat: ChatRequest,
    id: &RequestId,
) -> ChatHttpRequest {
    let mut typed = http::Request::new(Arc::new(chat));
    *typed.method_mut() = parts.method.clone();
    *typed.uri_mut() = parts.uri.clone();
    *typed.version_mut() = parts.version;
    *typed.headers_mut() = std::mem::take(&mut parts.headers);
    *typed.extensions_mut() = std::mem::take(&mut parts.extensions);
    typed.extensions_mut().insert(id.clone());
    // Every ingress has a generation id and says which format it came in by.
    if typed.extensions().get::<GenerationId>().is_none() {
        typed.extensions_mut().insert(GenerationId::new());
    }
    if typed.extensions().get::<Ingress>().is_none() {
        let ingress = Ingress::from_path(typed.uri().path());
        typed.extensions_mut().insert(ingress);
    }
    typed
}

fn method_not_allowed(allow: &'static str) -> http::Response<EdgeBody> {
    let body = format!(
        r#"{{"error":{{"message":"method not allowed; use {allow}","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}}}"#
    );
    let mut r = http::Response::new(EdgeBody::full(Bytes::from(body)));
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ModelSpec, Provider, ProviderKind};
    use crate::keys::KeyPolicy;
    use crate::ErrorKind;
    use std::convert::Infallible;
    use tower::ServiceExt;

    /// A body that never sends a byte.
    fn stalled() -> http_body_util::StreamBody<
        futures_util::stream::Pending<Result<http_body::Frame<Bytes>, Infallible>>,
    > {
        http_body_util::StreamBody::new(futures_util::stream::pending())
    }

    #[tokio::test]
    async fn keys_are_checked_before_the_body_is_read() {
        let catalog = crate::Catalog::builder()
            .provider(Provider::new(
                "p",
                ProviderKind::Openai,
                "http://127.0.0.1:9/v1",
            ))
            .model(ModelSpec::new("p/m"))
            .build()
            .unwrap();
        let gateway = crate::Gateway::builder(catalog)
            .client_keys(ClientKeysLayer::new().key("sk-good", KeyPolicy::new("a")))
            .build();
        for (name, value) in [
            ("authorization", "Bearer sk-bad"),
            ("x-api-key", "sk-bad"),
            ("x-other", "x"),
        ] {
            let req = http::Request::post("/v1/chat/completions")
                .header(name, value)
                .body(stalled())
                .unwrap();
            let resp = tokio::time::timeout(
                Duration::from_secs(5),
                gateway.chat_completions().oneshot(req),
            )
            .await
            .expect("answered without waiting for the body")
            .unwrap();
            assert_eq!(resp.status(), 401, "{name}");
            assert!(resp.headers().contains_key(REQUEST_ID));
        }
        // A good key (either header) gets past the check: the stalled body is then awaited.
        for (name, value) in [
            ("authorization", "Bearer sk-good"),
            ("x-api-key", "sk-good"),
        ] {
            let req = http::Request::post("/v1/chat/completions")
                .header(name, value)
                .body(stalled())
                .unwrap();
            let waited = tokio::time::timeout(
                Duration::from_millis(200),
                gateway.chat_completions().oneshot(req),
            )
            .await;
            assert!(waited.is_err(), "{name}: a good key waits for the body");
        }
    }

    #[test]
    fn cost_headers_read_as_formatted() {
        for usd in [
            0.0,
            0.000_003_6,
            0.123_456_789,
            1.5,
            12.000_000_001,
            999_999.25,
        ] {
            assert_eq!(
                cost_header(usd).unwrap().to_str().unwrap(),
                format!("{usd:.9}"),
                "{usd}"
            );
        }
        assert_eq!(
            cost_header(2e9).unwrap().to_str().unwrap(),
            "2000000000.000000000"
        );
        assert_eq!(cost_header(-1.0).unwrap().to_str().unwrap(), "-1.000000000");
    }

    #[test]
    fn renders_openai_json() {
        let e = Error::new(ErrorKind::NotFound, "no such model").with_param("model");
        let v: serde_json::Value = serde_json::from_slice(&error_json(&e)).unwrap();
        assert_eq!(v["error"]["message"], "no such model");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
    }
}
