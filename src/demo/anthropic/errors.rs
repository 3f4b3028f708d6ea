//! Anthropic's error answers.

use http::StatusCode;
use serde_json::{json, Value};

use crate::demo::wire::Reply;

/// The extended-thinking documentation the real API cites in its errors.
pub(super) const THINKING_DOCS: &str =
    "https://docs.claude.com/en/docs/build-with-claude/extended-thinking";

fn error_body(kind: &str, message: impl Into<String>, seq: u64) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message.into()},
           "request_id": format!("req_demo{seq}")})
}

/// An error reply; `seq` makes the request id.
pub(super) fn error(status: StatusCode, kind: &str, message: impl Into<String>, seq: u64) -> Reply {
    let retry = matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error();
    Reply::json(status, error_body(kind, message, seq))
        .with_header("x-should-retry", retry.to_string())
}

/// Builds `invalid_request_error` replies for one request.
#[derive(Clone, Copy)]
pub(super) struct Bad(pub(super) u64);

impl Bad {
    pub(super) fn msg(self, message: impl Into<String>) -> Reply {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message,
            self.0,
        )
    }
    pub(super) fn required(self, at: &str) -> Reply {
        self.msg(format!("{at}: Field required"))
    }
    pub(super) fn extra(self, at: &str) -> Reply {
        self.msg(format!("{at}: Extra inputs are not permitted"))
    }
    pub(super) fn expected(self, at: &str, what: &str) -> Reply {
        self.msg(format!("{at}: Input should be {what}"))
    }
}

/// The answer for a status injected by [`Fault::Status`](crate::demo::Fault::Status).
pub(crate) fn status_error(status: StatusCode, retry_after: Option<u64>, seq: u64) -> Reply {
    let (kind, message) = match status.as_u16() {
        400 => ("invalid_request_error", "Invalid request"),
        401 => ("authentication_error", "invalid x-api-key"),
        403 => ("permission_error", "Your API key does not have permission to use the specified resource."),
        404 => ("not_found_error", "Not found"),
        413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429 => ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit (https://docs.claude.com/en/api/rate-limits); see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase."),
        500 => ("api_error", "Internal server error"),
        529 => ("overloaded_error", "Overloaded"),
        s if s >= 500 => ("api_error", "Internal server error"),
        _ => ("invalid_request_error", "Invalid request"),
    };
    let r = error(status, kind, message, seq).with_header("request-id", format!("req_demo{seq}"));
    match retry_after {
        Some(s) => r.with_header("retry-after", s.to_string()),
        None => r,
    }
}
