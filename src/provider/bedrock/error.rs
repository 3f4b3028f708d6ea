//! Errors: error answers (`x-amzn-errortype` header or the body's `__type`, and `message`)
//! and the exception events of a stream, mapped through the crate's one status table.

use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::provider::error_for_status;
use crate::Error;

#[derive(Default, Deserialize)]
struct WireError {
    #[serde(default, rename = "__type")]
    kind: Option<String>,
    #[serde(default, alias = "Message")]
    message: Option<String>,
}

/// The bare exception name of `ValidationException:http://internal…` or
/// `com.amazon.coral.validate#ValidationException`.
fn bare(kind: &str) -> &str {
    let kind = kind.split(':').next().unwrap_or(kind);
    kind.rsplit('#').next().unwrap_or(kind).trim()
}

/// The status AWS documents for an exception name (case-insensitive, so stream exception
/// members like `throttlingException` match too); `None` for an unknown one.
pub(super) fn status_for(kind: &str) -> Option<u16> {
    let k = bare(kind).to_ascii_lowercase();
    Some(match k.as_str() {
        "throttlingexception" | "servicequotaexceededexception" | "toomanyrequestsexception" => 429,
        "modelnotreadyexception" | "serviceunavailableexception" => 503,
        "accessdeniedexception"
        | "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "incompletesignatureexception"
        | "missingauthenticationtokenexception"
        | "expiredtokenexception"
        | "invalidclienttokenid"
        | "signaturedoesnotmatch" => 403,
        "validationexception" => 400,
        "resourcenotfoundexception" => 404,
        "modeltimeoutexception" => 408,
        "internalserverexception" | "modelerrorexception" | "modelstreamerrorexception" => 500,
        _ => return None,
    })
}

/// Maps a non-success answer to an [`Error`].
pub(super) fn decode_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let wire: WireError = serde_json::from_slice(body).unwrap_or_default();
    let kind = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(wire.kind);
    let mapped = kind
        .as_deref()
        .and_then(status_for)
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(status);
    let message = wire.message.filter(|m| !m.is_empty());
    let code = kind.as_deref().map(|k| bare(k).to_owned());
    let code = code.filter(|_| mapped.as_u16() == 400 || mapped.as_u16() == 404);
    let mut e = error_for_status(mapped, headers, message, code);
    if e.code().is_none() && is_too_long(&e) {
        e = e.with_code("context_length_exceeded");
    }
    e
}

fn is_too_long(e: &Error) -> bool {
    let m = e.message();
    e.status() == 400 && (m.contains("Input is too long") || m.contains("too many input tokens"))
}

/// An exception event of a stream (`exception:{name}` with `{"message": …}`) as an [`Error`].
pub(super) fn stream_exception(kind: &str, payload: &str) -> Error {
    let wire: WireError = serde_json::from_str(payload).unwrap_or_default();
    let status = status_for(kind).unwrap_or(500);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    error_for_status(
        status,
        &HeaderMap::new(),
        wire.message.filter(|m| !m.is_empty()),
        None,
    )
}
