//! Errors: the 400s for requests Gemini cannot take, and the mapping of Google's error bodies
//! (`{"error": {"code", "message", "status", "details"}}`) to gateway errors (see the module
//! docs, "Errors").

use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::provider::{error_for_status, gateway_message, retry_after, retry_secs};
use crate::{Error, ErrorKind};

pub(super) fn invalid(param: &'static str, message: impl Into<Cow<'static, str>>) -> Error {
    Error::invalid_request(message).with_param(param)
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: GoogleError,
}

#[derive(Debug, Deserialize)]
pub(super) struct GoogleError {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<Value>,
}

/// `{"error": {...}}`, or the same inside a one-element array (streamed errors).
pub(super) fn parse_error_body(body: &[u8]) -> Option<GoogleError> {
    if let Ok(e) = serde_json::from_slice::<ErrorEnvelope>(body) {
        return Some(e.error);
    }
    serde_json::from_slice::<Vec<ErrorEnvelope>>(body)
        .ok()?
        .into_iter()
        .next()
        .map(|e| e.error)
}

fn detail_of<'e>(e: &'e GoogleError, kind: &str) -> impl Iterator<Item = &'e Value> + 'e {
    let suffix = format!("google.rpc.{kind}");
    e.details.iter().filter(move |d| {
        d.get("@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with(&suffix))
    })
}

/// `RetryInfo.retryDelay`, a protobuf duration such as `"37s"` or `"0.5s"`, capped at
/// [`MAX_RETRY_AFTER`](crate::provider::MAX_RETRY_AFTER) (any number, never a panic).
fn retry_delay(e: &GoogleError) -> Option<Duration> {
    detail_of(e, "RetryInfo").find_map(|d| {
        let s = d.get("retryDelay")?.as_str()?.strip_suffix('s')?;
        retry_secs(s.trim().parse::<f64>().ok()?)
    })
}

/// Maps a Google error (with the HTTP status when there was one) per the module docs.
pub(super) fn google_error(http: Option<StatusCode>, headers: &HeaderMap, e: GoogleError) -> Error {
    let key_problem = detail_of(&e, "ErrorInfo").any(|d| {
        d.get("reason")
            .and_then(Value::as_str)
            .is_some_and(|r| r.starts_with("API_KEY_"))
    });
    let by_status = match e.status.as_deref() {
        _ if key_problem => Some(StatusCode::UNAUTHORIZED),
        Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE") => {
            Some(StatusCode::BAD_REQUEST)
        }
        Some("UNAUTHENTICATED") => Some(StatusCode::UNAUTHORIZED),
        Some("PERMISSION_DENIED") => Some(StatusCode::FORBIDDEN),
        Some("NOT_FOUND") => Some(StatusCode::NOT_FOUND),
        Some("RESOURCE_EXHAUSTED") => Some(StatusCode::TOO_MANY_REQUESTS),
        Some("UNAVAILABLE") => Some(StatusCode::SERVICE_UNAVAILABLE),
        Some("INTERNAL" | "UNKNOWN" | "DATA_LOSS") => Some(StatusCode::INTERNAL_SERVER_ERROR),
        Some("DEADLINE_EXCEEDED") => Some(StatusCode::GATEWAY_TIMEOUT),
        _ => None,
    };
    let from_code = || {
        e.code
            .as_ref()
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(|s| s.is_client_error() || s.is_server_error())
    };
    let status = by_status
        .or(http.filter(|s| !s.is_success()))
        .or_else(from_code)
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let retry = retry_delay(&e);
    let mut err = if status == StatusCode::GATEWAY_TIMEOUT {
        // Like `error_for_status`'s timeouts: the gateway's words, the provider's to the log.
        let msg = gateway_message(status, e.message.as_deref(), "the provider timed out");
        let mut err = Error::new(ErrorKind::Timeout, msg);
        if let Some(after) = retry_after(headers) {
            err = err.with_retry_after(after);
        }
        err
    } else {
        error_for_status(status, headers, e.message, None)
    };
    if err.retry_after().is_none() {
        if let Some(after) = retry {
            err = err.with_retry_after(after);
        }
    }
    err
}
