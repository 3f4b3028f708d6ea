//! The Azure OpenAI demo provider: OpenAI's chat completions and embeddings under Azure's
//! URLs, with Azure's auth, errors and content-filter annotations.
//!
//! - `POST /openai/deployments/{deployment}/chat/completions?api-version=V` and
//!   `…/{deployment}/embeddings?api-version=V` (a missing `api-version` is Azure's 404
//!   `Resource not found`); `POST /openai/v1/chat/completions` and `/openai/v1/embeddings`
//!   (deployment in `model`).
//! - Key: `api-key: KEY` or `Authorization: Bearer KEY`; otherwise Azure's 401.
//! - Answers are the OpenAI demo's (`Hello from the demo azure provider! …`), with
//!   `prompt_filter_results` on whole answers, `content_filter_results` on every choice, and
//!   a first stream chunk that only carries `prompt_filter_results` (empty `id`, no choices).
//! - Filtering: a prompt containing [`FILTER_PROMPT`] gets Azure's 400 `content_filter`
//!   error; one containing [`FILTER_ANSWER`] gets an answer that ends with
//!   `finish_reason: "content_filter"` (no content in a whole answer).

use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::wire::{Ctx, Reply};

/// A prompt containing this is refused by the demo's content filter (400 `content_filter`).
pub const FILTER_PROMPT: &str = "SB-FILTER-PROMPT";
/// A prompt containing this gets an answer cut by the demo's content filter.
pub const FILTER_ANSWER: &str = "SB-FILTER-ANSWER";

fn azure_error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": code, "message": message}}))
}

fn safe() -> Value {
    json!({
        "hate": {"filtered": false, "severity": "safe"},
        "self_harm": {"filtered": false, "severity": "safe"},
        "sexual": {"filtered": false, "severity": "safe"},
        "violence": {"filtered": false, "severity": "safe"},
    })
}

fn prompt_filter_results() -> Value {
    json!([{"prompt_index": 0, "content_filter_results": safe()}])
}

pub(super) fn handle(ctx: &Ctx<'_>) -> Reply {
    let reply = match run(ctx) {
        Ok(r) | Err(r) => r,
    };
    reply.with_header("apim-request-id", format!("demo-{}", ctx.seq))
}

fn run(ctx: &Ctx<'_>) -> Result<Reply, Reply> {
    let not_found = || azure_error(StatusCode::NOT_FOUND, "404", "Resource not found");
    let (deployment, op) = if let Some(rest) = ctx.path.strip_prefix("/openai/deployments/") {
        let (d, op) = rest.split_once('/').ok_or_else(not_found)?;
        if ctx.query_param("api-version").is_none_or(str::is_empty) {
            return Err(not_found());
        }
        (Some(d), op)
    } else if let Some(op) = ctx.path.strip_prefix("/openai/v1/") {
        (None, op)
    } else {
        return Err(not_found());
    };
    let path = match op {
        "chat/completions" => "/v1/chat/completions",
        "embeddings" => "/v1/embeddings",
        _ => return Err(not_found()),
    };
    let key = ctx.config.api_key();
    let presented = ctx.header("api-key").or_else(|| {
        ctx.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
    });
    if presented != Some(key) {
        return Err(azure_error(
            StatusCode::UNAUTHORIZED,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        ));
    }
    let mut body = ctx.body.cloned();
    if let (Some(d), Some(Value::Object(o))) = (deployment, body.as_mut()) {
        if !ctx.model_known(d) {
            return Err(azure_error(
                StatusCode::NOT_FOUND,
                "DeploymentNotFound",
                "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.",
            ));
        }
        o.insert("model".into(), Value::from(d));
    }
    let text = body.as_ref().map(|b| b.to_string()).unwrap_or_default();
    if path == "/v1/chat/completions" && text.contains(FILTER_PROMPT) {
        return Err(Reply::json(
            StatusCode::BAD_REQUEST,
            json!({"error": {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
                "type": null, "param": "prompt", "code": "content_filter", "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                    "hate": {"filtered": false, "severity": "safe"},
                    "self_harm": {"filtered": false, "severity": "safe"},
                    "sexual": {"filtered": false, "severity": "safe"},
                    "violence": {"filtered": true, "severity": "high"},
                }},
            }}),
        ));
    }
    let filter_answer = text.contains(FILTER_ANSWER);
    let mut headers = HeaderMap::new();
    for (k, v) in ctx.headers {
        if k != "api-key" && k != http::header::AUTHORIZATION {
            headers.append(k.clone(), v.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {key}")) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    let inner = Ctx {
        config: ctx.config,
        prompt_cache: ctx.prompt_cache,
        method: ctx.method,
        path,
        query: None,
        headers: &headers,
        body: body.as_ref(),
        seq: ctx.seq,
        text_override: ctx.text_override,
    };
    let reply = super::openai::handle(&inner);
    if path == "/v1/embeddings" {
        return Ok(reply);
    }
    Ok(annotate(reply, filter_answer))
}

fn rename(s: &mut Value) {
    if let Value::String(t) = s {
        if t.contains("demo openai provider") {
            *t = t.replace("demo openai provider", "demo azure provider");
        }
    }
}

/// Azure's filter annotations on an OpenAI answer.
fn annotate(reply: Reply, filter_answer: bool) -> Reply {
    match reply {
        Reply::Json {
            status,
            headers,
            mut body,
        } => {
            if status == StatusCode::OK {
                body["prompt_filter_results"] = prompt_filter_results();
                if let Some(choices) = body.get_mut("choices").and_then(Value::as_array_mut) {
                    for c in choices {
                        c["content_filter_results"] = safe();
                        rename(&mut c["message"]["content"]);
                        if filter_answer {
                            c["message"]["content"] = Value::Null;
                            c["finish_reason"] = Value::from("content_filter");
                        }
                    }
                }
            }
            Reply::Json {
                status,
                headers,
                body,
            }
        }
        Reply::Stream(mut plan) => {
            let mut frames = Vec::with_capacity(plan.frames.len() + 1);
            frames.push(bytes::Bytes::from(format!(
                "data: {}\n\n",
                json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                       "prompt_filter_results": prompt_filter_results()})
            )));
            for f in plan.frames {
                let Some(mut v) = f
                    .strip_prefix(b"data: ")
                    .and_then(|d| serde_json::from_slice::<Value>(d.trim_ascii()).ok())
                else {
                    frames.push(f);
                    continue;
                };
                if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
                    for c in choices {
                        c["content_filter_results"] = safe();
                        rename(&mut c["delta"]["content"]);
                        if filter_answer && !c["finish_reason"].is_null() {
                            c["finish_reason"] = Value::from("content_filter");
                        }
                    }
                }
                frames.push(bytes::Bytes::from(format!("data: {v}\n\n")));
            }
            plan.frames = frames;
            Reply::Stream(plan)
        }
    }
}
