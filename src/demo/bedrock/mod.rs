//! The AWS Bedrock demo provider: `POST /model/{modelId}/converse`, `/converse-stream` and
//! `/invoke` (Titan and Cohere embeddings), every request SigV4-verified.
//!
//! - **Signature**: the `Authorization` header must be an `AWS4-HMAC-SHA256` signature by the
//!   [test key pair](TEST_ACCESS_KEY_ID) for service `bedrock`, over at least `host` and
//!   `x-amz-date`, with `x-amz-date` within 15 minutes of now and the credential scope's date
//!   its date. The server recomputes the canonical request from what it received (the raw
//!   path, double-encoded; the signed headers; the SHA-256 of the exact body bytes, which must
//!   also match `x-amz-content-sha256` when sent). A wrong signature gets Bedrock's
//!   `403 InvalidSignatureException` (`{"message": "The request signature we calculated does
//!   not match…"}`), an unknown key `403 UnrecognizedClientException`, no signature `403
//!   MissingAuthenticationTokenException`, all with `x-amzn-errortype`.
//! - **Converse**: the body is validated strictly (known top-level members; alternating
//!   `user`/`assistant` turns starting with `user`; each content block exactly one of `text`,
//!   `image`, `document`, `toolUse`, `toolResult`, `cachePoint`, `reasoningContent`; image
//!   formats; `toolConfig` required with tool blocks, tool results answering the previous
//!   turn's `toolUse` ids; `inferenceConfig` ranges; `toolChoice`; Claude's `thinking`
//!   budget) and violations get `400 ValidationException`. Answers follow the demo rules
//!   (see [`demo`](super)): `Hello from the demo bedrock provider! You said: …`, tool calls,
//!   thinking as `reasoningContent` with a signature the server verifies when it comes back,
//!   and a prompt cache: the words before the last `cachePoint` are `cacheWriteInputTokens`
//!   the first time and `cacheReadInputTokens` after (`inputTokens` excludes them).
//! - **ConverseStream** answers in the binary event stream: `messageStart`,
//!   `contentBlockDelta` / `contentBlockStart` / `contentBlockStop`, `messageStop`,
//!   `metadata`. [`Fault::MalformedEvent`](super::Fault::MalformedEvent) inserts an event
//!   whose JSON is broken (with valid CRCs).
//! - **Embeddings**: `amazon.titan-embed-text-*` (`inputText`, `dimensions`, `normalize`)
//!   and `cohere.embed-*` (`texts`, `input_type`).

mod reply;
mod validate;

use http::StatusCode;
use serde_json::{json, Value};

use super::wire::{Ctx, Reply};
use crate::provider::bedrock::sigv4;

/// TEST-ONLY: the access key id the demo accepts (made for the demo; trusted by nothing else).
pub const TEST_ACCESS_KEY_ID: &str = "AKIDSWITCHBOARDDEMO";
/// TEST-ONLY: the secret access key the demo verifies signatures with.
pub const TEST_SECRET_ACCESS_KEY: &str = "switchboard/demo/SECRET+KEY/not-a-real-one";

const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// A Bedrock error: status, `x-amzn-errortype` and `{"message"}`.
pub(super) fn aws_error(status: StatusCode, kind: &str, message: &str) -> Reply {
    Reply::json(status, json!({ "message": message })).with_header(
        "x-amzn-errortype",
        format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
    )
}

pub(super) fn validation(message: impl AsRef<str>) -> Reply {
    aws_error(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        message.as_ref(),
    )
}

/// The answer to an injected status.
pub(super) fn status_error(status: StatusCode, retry_after: Option<u64>) -> Reply {
    let (kind, message) = match status.as_u16() {
        400 | 413 => (
            "ValidationException",
            "Input is too long for requested model.",
        ),
        403 => (
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        ),
        404 => (
            "ResourceNotFoundException",
            "Could not resolve the foundation model from the provided model identifier.",
        ),
        408 => (
            "ModelTimeoutException",
            "Model has timed out in processing the request.",
        ),
        429 => (
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        503 | 529 => (
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        ),
        _ => (
            "InternalServerException",
            "The server encountered an internal error.",
        ),
    };
    let r = aws_error(status, kind, message);
    match retry_after {
        Some(s) => r.with_header("retry-after", s.to_string()),
        None => r,
    }
}

fn forbidden(kind: &str, message: &str) -> Reply {
    aws_error(StatusCode::FORBIDDEN, kind, message)
}

/// Verifies the request's SigV4 signature; the error reply if it does not hold.
fn verify_signature(ctx: &Ctx<'_>, body: &[u8], authority: &str) -> Result<(), Reply> {
    let Some(auth) = ctx.header("authorization") else {
        return Err(forbidden(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let Some(p) = sigv4::parse_authorization(auth) else {
        return Err(forbidden(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
        ));
    };
    if p.access_key_id != TEST_ACCESS_KEY_ID {
        return Err(forbidden(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    let Some(stamp) = ctx.header("x-amz-date") else {
        return Err(forbidden(
            "IncompleteSignatureException",
            "X-Amz-Date is required.",
        ));
    };
    let now = std::time::SystemTime::now();
    let fresh = [-900i64, 0, 900].iter().any(|off| {
        let t = if *off < 0 {
            now - std::time::Duration::from_secs(900)
        } else {
            now + std::time::Duration::from_secs(off.unsigned_abs())
        };
        sigv4::amz_date(t).1 == p.date
    });
    let stamp_ok = stamp.len() == 16 && stamp.starts_with(&p.date);
    let within = {
        let (a, _) = sigv4::amz_date(now - std::time::Duration::from_secs(900));
        let (b, _) = sigv4::amz_date(now + std::time::Duration::from_secs(900));
        stamp >= a.as_str() && stamp <= b.as_str()
    };
    if !(fresh && stamp_ok && within) {
        return Err(forbidden("InvalidSignatureException", "Signature expired."));
    }
    if p.service != "bedrock"
        || !p.signed_headers.iter().any(|h| h == "host")
        || !p.signed_headers.iter().any(|h| h == "x-amz-date")
    {
        return Err(forbidden("InvalidSignatureException", MISMATCH));
    }
    let payload_hash = sigv4::sha256_hex(body);
    if ctx
        .header("x-amz-content-sha256")
        .is_some_and(|h| h != payload_hash)
    {
        return Err(validation(
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }
    let mut pairs = Vec::with_capacity(p.signed_headers.len());
    for name in &p.signed_headers {
        if name == "host" {
            let host = ctx.header("host").unwrap_or(authority);
            pairs.push((name.clone(), host.to_owned()));
            continue;
        }
        let values: Vec<&str> = ctx
            .headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return Err(forbidden("InvalidSignatureException", MISMATCH));
        }
        for v in values {
            pairs.push((name.clone(), v.to_owned()));
        }
    }
    let mut uri = ctx.path.to_owned();
    if let Some(q) = ctx.query {
        uri.push('?');
        uri.push_str(q);
    }
    let Ok(uri) = uri.parse::<http::Uri>() else {
        return Err(forbidden("InvalidSignatureException", MISMATCH));
    };
    let (creq, signed) = sigv4::canonical_request(ctx.method.as_str(), &uri, &pairs, &payload_hash);
    let expected = sigv4::signature(
        &creq,
        TEST_SECRET_ACCESS_KEY,
        stamp,
        &p.date,
        &p.region,
        &p.service,
    );
    if signed != p.signed_headers.join(";") || expected != p.signature {
        return Err(forbidden("InvalidSignatureException", MISMATCH));
    }
    Ok(())
}

/// Percent-decodes a path segment.
fn decode_segment(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let h = b.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Every Bedrock request (faults already applied).
pub(super) fn handle(ctx: &Ctx<'_>, body: &[u8], authority: &str) -> Reply {
    if let Err(r) = verify_signature(ctx, body, authority) {
        return r;
    }
    let segs: Vec<&str> = ctx.path.split('/').collect();
    let ["", "model", id, action] = segs.as_slice() else {
        return aws_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "Unknown operation",
        );
    };
    let Some(model) = decode_segment(id).filter(|m| !m.is_empty()) else {
        return validation("The provided model identifier is invalid.");
    };
    if ctx.method != http::Method::POST {
        return aws_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "Unknown operation",
        );
    }
    if !ctx.model_known(&model) {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "Could not resolve the foundation model from the provided model identifier.",
        );
    }
    let Some(Value::Object(o)) = ctx.body else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "Could not parse the request body as JSON.",
        );
    };
    match *action {
        "converse" | "converse-stream" => {
            let req = match validate::converse(o, &model) {
                Ok(r) => r,
                Err(msg) => return validation(msg),
            };
            reply::converse(ctx, &model, &req, *action == "converse-stream")
        }
        "invoke" => reply::embeddings(o, &model),
        _ => aws_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "Unknown operation",
        ),
    }
}
