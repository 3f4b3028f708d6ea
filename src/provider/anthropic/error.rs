//! Errors: error bodies, `error` objects on 200 and stream `error` events.

use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::provider::error_for_status;
use crate::Error;

/// Maps a non-success upstream answer to an [`Error`] per the error table.
pub(super) fn decode_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<WireErrorResponse>(body)
        .ok()
        .map(|e| e.error.message)
        .filter(|m| !m.is_empty());
    error_for_status(status, headers, message, None)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct WireError {
    #[serde(rename = "type", default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) message: String,
}

#[derive(Deserialize)]
struct WireErrorResponse {
    error: WireError,
}

/// Maps an Anthropic error `type` (stream `error` events, error bodies on 200) to an [`Error`]
/// through the status Anthropic documents for it.
pub(super) fn error_from_type(kind: &str, message: String) -> Error {
    let status = match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    error_for_status(
        status,
        &HeaderMap::new(),
        Some(message).filter(|m| !m.is_empty()),
        None,
    )
}
