//! One crate-wide error type.
//!
//! Every layer fails with [`Error`]; its [`ErrorKind`] decides the HTTP status (the table in
//! the crate docs), whether [`Fallback`](crate::fallback::Fallback) may try the next candidate,
//! and the `type` / `code` of the OpenAI-style JSON body that the edge renders. The edge is the
//! only place that turns an `Error` into HTTP.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, in the terms the gateway acts on.
///
/// | kind | status | retryable |
/// | --- | --- | --- |
/// | [`InvalidRequest`](Self::InvalidRequest) | 400 | no |
/// | [`Unauthorized`](Self::Unauthorized) | 401 | no |
/// | [`BudgetExhausted`](Self::BudgetExhausted) | 402 | no |
/// | [`Forbidden`](Self::Forbidden) | 403 | no |
/// | [`NotFound`](Self::NotFound) | 404 | no |
/// | [`ClientTimeout`](Self::ClientTimeout) | 408 | no |
/// | [`PayloadTooLarge`](Self::PayloadTooLarge) | 413 | no |
/// | [`RateLimited`](Self::RateLimited) | 429 | yes |
/// | [`Upstream`](Self::Upstream) | 502 | yes |
/// | [`Overloaded`](Self::Overloaded) | 503 | yes |
/// | [`Timeout`](Self::Timeout) | 504 | yes |
/// | [`UpstreamInvalidRequest`](Self::UpstreamInvalidRequest) | 400 | no |
/// | [`UpstreamNotFound`](Self::UpstreamNotFound) | 404 | no |
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Malformed JSON, an invalid request, a parameter no candidate supports, a prompt longer
    /// than every candidate's context window.
    InvalidRequest,
    /// Missing or bad client key (the gateway's own auth).
    Unauthorized,
    /// The caller's spend budget is exhausted.
    BudgetExhausted,
    /// The model is not allowed for this key.
    Forbidden,
    /// Unknown model.
    NotFound,
    /// The client sent its body too slowly.
    ClientTimeout,
    /// The request body is too large.
    PayloadTooLarge,
    /// Rate limited: by the upstream (retryable) or by a per-key limit.
    RateLimited,
    /// Upstream 5xx, a bad upstream body, an upstream auth failure (our provider key), an
    /// upstream body over the size limit, a connection failure.
    Upstream,
    /// The upstream is overloaded (Anthropic 529, HTTP 503) or every candidate is cooling down.
    Overloaded,
    /// A deadline was missed.
    Timeout,
    /// The upstream rejected this request as invalid (HTTP 400 / 422).
    UpstreamInvalidRequest,
    /// The upstream does not know the model (HTTP 404).
    UpstreamNotFound,
}

impl ErrorKind {
    /// The HTTP status the edge answers with.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest | Self::UpstreamInvalidRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BudgetExhausted => StatusCode::PAYMENT_REQUIRED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound | Self::UpstreamNotFound => StatusCode::NOT_FOUND,
            Self::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Upstream => StatusCode::BAD_GATEWAY,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether [`Fallback`](crate::fallback::Fallback) may try another candidate.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited | Self::Upstream | Self::Overloaded | Self::Timeout
        )
    }

    /// The OpenAI-style error `type`.
    pub const fn error_type(self) -> &'static str {
        match self {
            Self::InvalidRequest
            | Self::UpstreamInvalidRequest
            | Self::PayloadTooLarge
            | Self::NotFound
            | Self::UpstreamNotFound => "invalid_request_error",
            Self::Unauthorized => "authentication_error",
            Self::BudgetExhausted => "insufficient_quota",
            Self::Forbidden => "permission_error",
            Self::ClientTimeout | Self::Timeout => "timeout_error",
            Self::RateLimited => "rate_limit_error",
            Self::Upstream => "upstream_error",
            Self::Overloaded => "overloaded_error",
        }
    }

    /// A stable, low-cardinality name (metric labels, logs).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::BudgetExhausted => "budget_exhausted",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::ClientTimeout => "client_timeout",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::Upstream => "upstream",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::UpstreamInvalidRequest => "upstream_invalid_request",
            Self::UpstreamNotFound => "upstream_not_found",
        }
    }

    /// The default `code` when none is more specific.
    const fn default_code(self) -> Option<&'static str> {
        match self {
            Self::NotFound | Self::UpstreamNotFound => Some("model_not_found"),
            Self::Unauthorized => Some("invalid_api_key"),
            Self::BudgetExhausted => Some("budget_exhausted"),
            Self::Forbidden => Some("model_not_allowed"),
            Self::ClientTimeout => Some("request_timeout"),
            Self::PayloadTooLarge => Some("request_too_large"),
            Self::RateLimited => Some("rate_limit_exceeded"),
            Self::Upstream => Some("upstream_error"),
            Self::Overloaded => Some("overloaded"),
            Self::Timeout => Some("timeout"),
            Self::InvalidRequest | Self::UpstreamInvalidRequest => None,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error every switchboard layer fails with. Cheap to clone.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: Cow<'static, str>,
    code: Option<Cow<'static, str>>,
    param: Option<Cow<'static, str>>,
    retry_after: Option<Duration>,
    provider: Option<Arc<str>>,
    attempts: Option<Arc<[crate::ext::Attempt]>>,
    /// Shared, so an error modified after it was shared keeps its cause.
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    /// The CostMeter has recorded this request (its sink has the row): the edge must not log
    /// it again as refused.
    metered: bool,
}

impl Error {
    /// A new error of `kind` with a client-safe `message`.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                message: message.into(),
                code: None,
                param: None,
                retry_after: None,
                provider: None,
                attempts: None,
                source: None,
                metered: false,
            }),
        }
    }

    /// An [`ErrorKind::InvalidRequest`] error.
    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// An [`ErrorKind::Upstream`] error (502).
    pub fn upstream(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Upstream, message)
    }

    fn inner_mut(&mut self) -> &mut Inner {
        // Errors are built by one owner before being shared; if shared, copy the plain parts.
        if Arc::get_mut(&mut self.inner).is_none() {
            let i = &self.inner;
            self.inner = Arc::new(Inner {
                kind: i.kind,
                message: i.message.clone(),
                code: i.code.clone(),
                param: i.param.clone(),
                retry_after: i.retry_after,
                provider: i.provider.clone(),
                attempts: i.attempts.clone(),
                source: i.source.clone(),
                metered: i.metered,
            });
        }
        Arc::get_mut(&mut self.inner).expect("unique after copy-on-write")
    }

    /// Sets the OpenAI-style `code` (e.g. `context_length_exceeded`).
    #[must_use]
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.inner_mut().code = Some(code.into());
        self
    }

    /// Sets the offending request parameter.
    #[must_use]
    pub fn with_param(mut self, param: impl Into<Cow<'static, str>>) -> Self {
        self.inner_mut().param = Some(param.into());
        self
    }

    /// Sets the delay after which a retry may succeed (`Retry-After`).
    #[must_use]
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.inner_mut().retry_after = Some(after);
        self
    }

    /// Names the provider the error came from (kept out of client-visible messages).
    #[must_use]
    pub fn with_provider(mut self, provider: Arc<str>) -> Self {
        self.inner_mut().provider = Some(provider);
        self
    }

    /// Records every attempt made before failing (the `x-switchboard-attempts` header).
    #[must_use]
    pub fn with_attempts(mut self, attempts: impl Into<Arc<[crate::ext::Attempt]>>) -> Self {
        self.inner_mut().attempts = Some(attempts.into());
        self
    }

    /// The attempts made before failing, if a Fallback recorded them.
    pub fn attempts(&self) -> Option<&[crate::ext::Attempt]> {
        self.inner.attempts.as_deref()
    }

    /// Attaches the underlying cause (logged, never shown to clients).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner_mut().source = Some(Arc::from(source.into()));
        self
    }

    /// Marks the error as recorded by the CostMeter (its sink has the request's record).
    pub(crate) fn metered(mut self) -> Self {
        if !self.inner.metered {
            self.inner_mut().metered = true;
        }
        self
    }

    /// Whether the CostMeter recorded the request that failed with this error.
    pub(crate) fn is_metered(&self) -> bool {
        self.inner.metered
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The client-safe message.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The OpenAI-style `code`, if any.
    pub fn code(&self) -> Option<&str> {
        self.inner
            .code
            .as_deref()
            .or_else(|| self.inner.kind.default_code())
    }

    /// The offending request parameter, if known.
    pub fn param(&self) -> Option<&str> {
        self.inner.param.as_deref()
    }

    /// How long to wait before retrying, if the upstream said so.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The provider this error came from, if known.
    pub fn provider(&self) -> Option<&str> {
        self.inner.provider.as_deref()
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        self.inner.kind.status()
    }

    /// Whether another candidate may be tried.
    pub fn is_retryable(&self) -> bool {
        self.inner.kind.is_retryable()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(code) = &self.inner.code {
            d.field("code", code);
        }
        if let Some(p) = &self.inner.provider {
            d.field("provider", p);
        }
        if let Some(r) = self.inner.retry_after {
            d.field("retry_after", &r);
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    /// `kind: message`, with control characters in the message escaped: messages may quote
    /// what a client or an upstream sent, and a newline must not forge a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.inner.kind)?;
        write_escaped(f, &self.inner.message)
    }
}

/// Writes `s` with control characters escaped (`\n`, `\u{1b}`, …); the rest as it is.
pub(crate) fn write_escaped(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let mut rest = s;
    while let Some(at) = rest.find(char::is_control) {
        f.write_str(&rest[..at])?;
        let c = rest[at..].chars().next().unwrap_or('\0');
        write!(f, "{}", c.escape_default())?;
        rest = &rest[at + c.len_utf8()..];
    }
    f.write_str(rest)
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|e| &**e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_matches_architecture() {
        assert_eq!(ErrorKind::BudgetExhausted.status(), 402);
        assert_eq!(ErrorKind::Overloaded.status(), 503);
        assert!(ErrorKind::Overloaded.is_retryable());
        assert!(!ErrorKind::UpstreamInvalidRequest.is_retryable());
    }

    #[test]
    fn display_escapes_control_characters() {
        let e = Error::new(
            ErrorKind::NotFound,
            "unknown model `x\n2026-01-01 INFO forged\u{1b}[31m` — é",
        );
        let shown = e.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(
            shown.contains("x\\n2026") && shown.contains("\\u{1b}[31m` — é"),
            "{shown}"
        );
    }

    #[test]
    fn a_shared_error_keeps_its_source_when_modified() {
        use std::error::Error as _;
        let e = Error::upstream("x").with_source(std::io::Error::other("the cause"));
        let shared = e.clone();
        let modified = shared
            .with_code("y")
            .with_retry_after(Duration::from_secs(1));
        assert_eq!(
            modified.source().map(ToString::to_string).as_deref(),
            Some("the cause")
        );
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("the cause")
        );
    }

    #[test]
    fn builders_after_clone_keep_fields() {
        let e = Error::upstream("x").with_retry_after(Duration::from_secs(2));
        let e2 = e.clone().with_code("y");
        assert_eq!(e2.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(e2.code(), Some("y"));
        assert_eq!(e.code(), Some("upstream_error"));
    }
}
