use serde::{Deserialize, Serialize};

use crate::Error;

/// The OpenAI-style error object: `{"message", "type", "param", "code"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable message.
    pub message: String,
    /// Error type, e.g. `invalid_request_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending parameter.
    #[serde(default)]
    pub param: Option<String>,
    /// A machine-readable code; OpenAI sends a string, some compatible servers a number.
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

/// `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorBody,
}

impl From<&Error> for ErrorBody {
    fn from(e: &Error) -> Self {
        Self {
            message: e.message().to_owned(),
            kind: e.kind().error_type().to_owned(),
            param: e.param().map(str::to_owned),
            code: e.code().map(|c| serde_json::Value::String(c.to_owned())),
        }
    }
}
