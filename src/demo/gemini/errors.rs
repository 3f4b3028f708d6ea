//! Google's error answers.

use http::StatusCode;
use serde_json::{json, Value};

use crate::demo::wire::Reply;

pub(super) fn error(
    code: u16,
    status: &str,
    message: impl Into<String>,
    details: Option<Value>,
) -> Reply {
    let http = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let mut e = json!({"code": code, "message": message.into(), "status": status});
    if let Some(d) = details {
        e["details"] = d;
    }
    Reply::json(http, json!({ "error": e }))
}

pub(super) fn invalid(message: impl Into<String>) -> Reply {
    error(400, "INVALID_ARGUMENT", message, None)
}

/// `* GenerateContentRequest.{field}: {what}` (the format of Google's field checks).
pub(super) fn field_error(field: &str, what: &str) -> Reply {
    invalid(format!("* GenerateContentRequest.{field}: {what}\n"))
}

pub(super) fn unknown_name(key: &str, at: &str) -> Reply {
    let message = if at.is_empty() {
        format!("Invalid JSON payload received. Unknown name \"{key}\": Cannot find field.")
    } else {
        format!(
            "Invalid JSON payload received. Unknown name \"{key}\" at '{at}': Cannot find field."
        )
    };
    let details = json!([{
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": at, "description": message}],
    }]);
    error(400, "INVALID_ARGUMENT", message, Some(details))
}

/// The answer for a status injected by [`Fault::Status`](crate::demo::Fault::Status).
pub(crate) fn status_error(status: StatusCode, retry_after: Option<u64>, _seq: u64) -> Reply {
    let code = status.as_u16();
    let (name, message) = match code {
        400 => ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        401 => ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
        403 => ("PERMISSION_DENIED", "The caller does not have permission"),
        404 => ("NOT_FOUND", "Requested entity was not found."),
        413 => ("INVALID_ARGUMENT", "Request payload size exceeds the limit: 20971520 bytes."),
        429 => ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."),
        500 => ("INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
        502 => ("UNAVAILABLE", "Bad Gateway"),
        503 => ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        504 => ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
        _ if status.is_server_error() => ("UNKNOWN", "An unknown error occurred."),
        _ => ("FAILED_PRECONDITION", "The request failed."),
    };
    let details = retry_after.map(|s| {
        json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{s}s")}])
    });
    error(code, name, message, details)
}
