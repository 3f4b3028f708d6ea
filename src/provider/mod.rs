//! Pure provider codecs: typed values in, typed values out, no I/O.
//!
//! Each codec turns a [`ChatRequest`] into the provider's native HTTP request, its answer back
//! into a [`ChatCompletion`], its SSE events into [`ChatCompletionChunk`]s, and its error bodies
//! into [`Error`]s with the right [`ErrorKind`]. The
//! [`ProviderTranslate`](crate::translate::ProviderTranslate) layer does the I/O around them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::client::UpstreamBody;
use crate::openai::sse::SseEvent;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, EmbeddingsRequest, EmbeddingsResponse,
    RawCompletion, Stop,
};
use crate::{Error, ErrorKind};

pub mod anthropic;
pub mod azure;
pub mod bedrock;
mod claude;
mod config;
mod embeddings;
pub mod gemini;
pub mod openai_compat;
mod params;
pub mod vertex;

pub(crate) use config::join_url;
pub use config::{ApiKey, Deadlines, OpenAiDialect, Provider, ProviderKind};
pub use params::Parameters;

/// What a codec needs to know to encode one attempt.
#[derive(Debug, Clone, Copy)]
pub struct EncodeContext<'a> {
    /// The provider (base URL, key).
    pub provider: &'a Provider,
    /// The provider's model name.
    pub upstream_model: &'a str,
    /// The model's output cap from the catalog (Anthropic needs `max_tokens`).
    pub max_output: Option<u32>,
}

/// What a codec needs to know to decode an answer.
#[derive(Debug, Clone)]
pub struct DecodeContext {
    /// The public model id reported in `model`.
    pub model: Arc<str>,
    /// The provider name (OpenRouter's `provider` field).
    pub provider: Arc<str>,
}

/// A provider wire format.
pub trait ProviderCodec: fmt::Debug + Send + Sync {
    /// Builds the upstream HTTP request (absolute URI, auth and content-type headers, body).
    fn encode(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error>;

    /// Encodes the client's own request when it is in this codec's wire format
    /// ([`NativeRequest`](crate::ext::NativeRequest)): the client's bytes with only the model
    /// (and the provider's auth) changed. `None` (the default, and for other formats): encode
    /// the canonical request with [`encode`](Self::encode).
    fn encode_native(
        &self,
        native: &crate::ext::NativeRequest,
        ctx: &EncodeContext<'_>,
    ) -> Option<Result<http::Request<UpstreamBody>, Error>> {
        let _ = (native, ctx);
        None
    }

    /// Decodes a successful non-streaming body.
    fn decode(&self, body: &[u8], ctx: &DecodeContext) -> Result<ChatCompletion, Error>;

    /// A successful non-streaming body kept as the provider's bytes, for formats that already
    /// are the canonical one (the OpenAI-compatible codec). `None` (the default): decode it
    /// with [`decode`](Self::decode).
    fn passthrough(&self, body: &Bytes, ctx: &DecodeContext) -> Option<RawCompletion> {
        let _ = (body, ctx);
        None
    }

    /// Maps a non-success upstream answer to an [`Error`] per the error table.
    fn decode_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error;

    /// A decoder for one stream, fed the events of the codec's [`framing`](Self::framing).
    fn stream_decoder(&self, ctx: &DecodeContext) -> Box<dyn StreamDecode>;

    /// How the provider frames a streamed answer (default: server-sent events). Each frame
    /// reaches [`StreamDecode::event`] as an event name and its data.
    fn framing(&self) -> StreamFraming {
        StreamFraming::Sse
    }

    /// The codec's embeddings wire format, if its provider serves embedding models (`None`,
    /// the default: `/v1/embeddings` never routes to it). Errors of an embeddings call are
    /// mapped by [`decode_error`](Self::decode_error), as for chat.
    fn embeddings(&self) -> Option<&dyn EmbeddingsCodec> {
        None
    }
}

/// A provider's embeddings wire format (`POST /v1/embeddings` through the gateway): pure,
/// like [`ProviderCodec`]. A provider kind plugs its embedding models in by returning one from
/// [`ProviderCodec::embeddings`].
pub trait EmbeddingsCodec: fmt::Debug + Send + Sync {
    /// Builds the upstream request for `req` on `ctx.upstream_model`.
    fn encode_embeddings(
        &self,
        req: &EmbeddingsRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error>;

    /// Decodes a successful body into OpenAI's shape: one vector per input, in input order,
    /// as float arrays or (with `encoding_format: "base64"`) base64 strings; `usage` as the
    /// provider counted it, or an estimate when it sends none.
    fn decode_embeddings(
        &self,
        body: &[u8],
        req: &EmbeddingsRequest,
        ctx: &DecodeContext,
    ) -> Result<EmbeddingsResponse, Error>;
}

/// How a provider frames the events of a streamed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamFraming {
    /// Server-sent events (`text/event-stream`): `event:` and `data:` lines.
    Sse,
    /// AWS's binary event stream (`application/vnd.amazon.eventstream`, Bedrock's
    /// ConverseStream): each message reaches the decoder as an event named by its
    /// `:event-type` with its payload as data (see [`bedrock::eventstream`]).
    AwsEventStream,
}

/// A provider's own authentication step, run on every encoded request after
/// [`ProviderCodec::encode`] and before it is sent: it may add a header from a cached token
/// it refreshes (OAuth2 from a service account), or sign the final method, URL, headers and
/// body bytes (AWS SigV4). Providers that send a static key need none: their codec puts the
/// [`Provider::api_key`] in the header the API expects.
///
/// A failure is the gateway's own credentials failing: return an [`ErrorKind::Upstream`]
/// error (502, retryable on another provider), never the client's 401.
pub trait ProviderAuth: fmt::Debug + Send + Sync {
    /// Adds credentials to `req`.
    fn authorize<'a>(
        &'a self,
        req: &'a mut http::Request<UpstreamBody>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), Error>>;

    /// Whether credentials were found, judged without the network: a key pair in the
    /// environment or a readable profile, a service account key file. A source only a request
    /// can try (the GCE metadata server) is `false`. The ready gateway counts a provider with
    /// an auth step as configured only when this holds. The default is `true`.
    fn has_credentials(&self) -> bool {
        true
    }
}

/// Turns one provider's SSE events into chunks, keeping whatever state the format needs
/// (ids, tool-call indices, usage).
pub trait StreamDecode: fmt::Debug + Send + Sync {
    /// Decodes one event, pushing zero or more chunks. An error ends the stream.
    fn event(&mut self, event: SseEvent, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error>;

    /// Whether the provider's end-of-stream marker has been seen.
    fn is_done(&self) -> bool;

    /// The upstream closed the connection: push what is left, or fail if the stream was cut
    /// short (a truncated stream must never look like success).
    fn finish(&mut self, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error>;
}

/// The built-in codec of a provider kind.
pub(crate) fn builtin(kind: ProviderKind) -> Arc<dyn ProviderCodec> {
    match kind {
        ProviderKind::Openai => Arc::new(openai_compat::OpenAiCompat),
        ProviderKind::Anthropic => Arc::new(anthropic::Anthropic),
        ProviderKind::Gemini => Arc::new(gemini::Gemini),
        ProviderKind::Azure => Arc::new(azure::Azure::default()),
        ProviderKind::Vertex => Arc::new(vertex::Vertex::unconfigured()),
        ProviderKind::Bedrock => Arc::new(bedrock::Bedrock),
    }
}

/// A 400 for a parameter the provider cannot honour (`unsupported_parameter`, naming `param`).
fn unsupported(param: &'static str, message: &'static str) -> Error {
    Error::invalid_request(message)
        .with_code("unsupported_parameter")
        .with_param(param)
}

/// `stop` as a list of sequences; `None` when it has none.
fn stop_sequences(stop: &Stop) -> Option<Vec<&str>> {
    let v: Vec<&str> = match stop {
        Stop::One(s) => vec![s.as_str()],
        Stop::Many(v) => v.iter().map(String::as_str).collect(),
    };
    (!v.is_empty()).then_some(v)
}

/// The end of a stream whose decoder has seen its end-of-stream marker (`done`) or not: a
/// stream cut short is an error, never a success.
fn stream_complete(done: bool) -> Result<(), Error> {
    if done {
        Ok(())
    } else {
        Err(Error::upstream(
            "the provider's stream ended before it was complete",
        ))
    }
}

/// The longest wait an upstream can ask for: anything longer is read as this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A wait of `secs` seconds from an upstream, capped at [`MAX_RETRY_AFTER`]; `None` for a
/// negative or not-a-number value. Never panics, whatever the number.
pub(crate) fn retry_secs(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).map_or(MAX_RETRY_AFTER, |d| d.min(MAX_RETRY_AFTER)))
}

/// Reads `Retry-After` (seconds or an HTTP date) or `retry-after-ms`, capped at an hour.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|ms| retry_secs(ms / 1000.0))
    {
        return Some(ms);
    }
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<f64>() {
        return retry_secs(secs);
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// Maps an upstream status (and the provider's message and code) to an [`Error`], following
/// the error table. Auth failures never pass the upstream's message on: it is about the
/// gateway's provider key, not the client's.
pub fn error_for_status(
    status: StatusCode,
    headers: &HeaderMap,
    message: Option<String>,
    code: Option<String>,
) -> Error {
    // The provider's own words only where they are about the client's request (400, 404);
    // about the gateway's key, quota or the provider's health they may name the operator's
    // account or organisation, so the client gets the gateway's message and the log the
    // provider's (inside the request's span, with its request id).
    let msg = |fallback: &str| {
        message
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("{fallback} (upstream status {})", status.as_u16()))
    };
    let own = |fallback: &str| gateway_message(status, message.as_deref(), fallback);
    let mut err = match status.as_u16() {
        401 | 403 => Error::new(
            ErrorKind::Upstream,
            own("the provider rejected the gateway's credentials"),
        ),
        404 => Error::new(
            ErrorKind::UpstreamNotFound,
            msg("the provider does not know this model"),
        ),
        408 => Error::new(ErrorKind::Timeout, own("the provider timed out")),
        429 => Error::new(
            ErrorKind::RateLimited,
            own("the provider is rate limiting requests"),
        ),
        503 | 529 => Error::new(ErrorKind::Overloaded, own("the provider is overloaded")),
        400..=499 => {
            let m = msg("the provider rejected the request");
            let ctx = is_context_length(&m, code.as_deref());
            let e = Error::new(ErrorKind::UpstreamInvalidRequest, m);
            if ctx {
                e.with_code("context_length_exceeded")
            } else {
                e
            }
        }
        _ => Error::new(ErrorKind::Upstream, own("the provider failed")),
    };
    if let Some(after) = retry_after(headers) {
        err = err.with_retry_after(after);
    }
    if let Some(c) = code {
        if err.kind() == ErrorKind::UpstreamInvalidRequest && err.code().is_none() {
            err = err.with_code(c);
        }
    }
    err
}

/// The gateway's own message for an upstream failure that is not about the client's request
/// (`{fallback} (upstream status N)`); the provider's `message` goes to the log instead, with
/// account ids and keys redacted, and not at all for a 401 or 403 (about the gateway's key).
pub(crate) fn gateway_message(status: StatusCode, message: Option<&str>, fallback: &str) -> String {
    // Auth failures are about our key: their text may quote it, so none of it is kept.
    let keep = !matches!(status.as_u16(), 401 | 403);
    if let Some(m) = message.filter(|m| keep && !m.is_empty()) {
        tracing::warn!(
            upstream_status = status.as_u16(),
            upstream_message = ?redact_ids(m),
            "provider error (not shown to the client)"
        );
    }
    format!("{fallback} (upstream status {})", status.as_u16())
}

/// `text` with words that look like account identifiers or keys (`org-…`, `sk-…`, `proj_…`,
/// `key-…`, long hex or base64 runs) replaced by `<redacted>`, for logging a provider's
/// message.
pub(crate) fn redact_ids(text: &str) -> String {
    let looks_secret = |w: &str| {
        let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        let lower = w.to_ascii_lowercase();
        [
            "org-", "org_", "sk-", "sk_", "proj-", "proj_", "key-", "user-",
        ]
        .iter()
        .any(|p| lower.starts_with(p))
            || (w.len() >= 20 && w.chars().any(|c| c.is_ascii_digit()) && !w.contains(' '))
    };
    text.split(' ')
        .map(|w| if looks_secret(w) { "<redacted>" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_context_length(message: &str, code: Option<&str>) -> bool {
    code == Some("context_length_exceeded")
        || message.contains("context length")
        || message.contains("context_length")
        || message.contains("prompt is too long")
        || message.contains("input token count")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_table() {
        let h = HeaderMap::new();
        let k = |s: u16| error_for_status(StatusCode::from_u16(s).unwrap(), &h, None, None);
        assert_eq!(k(401).kind(), ErrorKind::Upstream);
        assert_eq!(k(401).status(), 502);
        assert_eq!(k(403).status(), 502);
        assert_eq!(k(404).status(), 404);
        assert_eq!(k(408).status(), 504);
        assert_eq!(k(429).status(), 429);
        assert_eq!(k(500).status(), 502);
        assert_eq!(k(503).status(), 503);
        assert_eq!(k(529).status(), 503);
        assert_eq!(k(400).status(), 400);
        assert!(!k(400).is_retryable());
    }

    #[test]
    fn auth_errors_hide_upstream_message() {
        let e = error_for_status(
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            Some("Incorrect API key provided: sk-abc".into()),
            None,
        );
        assert!(!e.message().contains("sk-abc"));
    }

    #[test]
    fn quota_and_server_errors_hide_upstream_message() {
        let secret = "Rate limit reached for gpt-4o in organization org-SECRET on tokens";
        for status in [429, 500, 502, 503, 529, 408, 403] {
            let e = error_for_status(
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                Some(secret.into()),
                None,
            );
            assert!(
                !e.message().contains("org-SECRET"),
                "{status}: {}",
                e.message()
            );
            assert!(e.message().contains(&status.to_string()), "{}", e.message());
        }
        // About the client's own request, the provider's words help and are kept.
        let e = error_for_status(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            Some("max_tokens is too large".into()),
            None,
        );
        assert_eq!(e.message(), "max_tokens is too large");
    }

    #[test]
    fn logged_provider_messages_lose_account_ids() {
        let r = redact_ids(
            "Rate limit reached for gpt-4o in organization org-AbC123 on tokens per min. \
             Key sk-proj-xyz; request req_8f3a9c2e1b7d4a6f9e0c1d2b",
        );
        assert!(
            !r.contains("org-AbC123") && !r.contains("sk-proj") && !r.contains("req_8f3a"),
            "{r}"
        );
        assert!(
            r.starts_with("Rate limit reached for gpt-4o in organization <redacted>"),
            "{r}"
        );
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

    #[test]
    fn any_retry_after_is_read_without_panic_and_capped() {
        for (name, v) in [
            ("retry-after", "18446744073709551616"),
            ("retry-after", "1e308"),
            ("retry-after", "inf"),
            ("retry-after-ms", "1e300"),
            ("retry-after-ms", "18446744073709551616000"),
            ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, v.parse().unwrap());
            assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER), "{name}: {v}");
            let e = error_for_status(StatusCode::TOO_MANY_REQUESTS, &h, None, None);
            assert_eq!(e.retry_after(), Some(MAX_RETRY_AFTER));
        }
        for v in ["-1", "NaN", "soon"] {
            let mut h = HeaderMap::new();
            h.insert("retry-after", v.parse().unwrap());
            assert_eq!(retry_after(&h), None, "{v}");
        }
    }
}
