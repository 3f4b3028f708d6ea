//! The Google Gemini demo provider (`POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent`).
//!
//! Errors have Google's shape: `{"error": {"code", "message", "status", "details"}}`. Field
//! names are accepted in lowerCamelCase and in snake_case, as protobuf JSON parsing does;
//! unknown fields are rejected ("Unknown name … Cannot find field."), and so are JSON-schema
//! keywords the `Schema` object does not have (`additionalProperties`, `$schema`, `$ref`, …;
//! `parametersJsonSchema` takes full JSON Schema).
//!
//! Key: `x-goog-api-key` or `?key=`; a missing key gets `403 PERMISSION_DENIED`, a wrong one
//! `400 INVALID_ARGUMENT` with reason `API_KEY_INVALID`, as the real API answers. Roles are
//! `user` and `model` (the legacy `function` role is taken as `user`). Function calls must
//! follow a user turn or a function-response turn; function responses must come right after
//! the call turn, one per call, with the calls' names. With thinking on (`thinkingConfig` with
//! a non-zero `thinkingBudget`, `thinkingLevel` or `includeThoughts`) the first
//! `functionCall` part of each model step of the current turn must carry the
//! `thoughtSignature` the demo gave it, as Gemini 3 models require (Google's documented dummy
//! values are accepted too). Rate limits report the delay as a `RetryInfo` detail in the body,
//! with no `Retry-After` header.

mod contents;
mod errors;
mod fields;
mod reply;
mod request;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use self::contents::{content, contents, ordering, signatures};
pub(super) use self::errors::status_error;
use self::errors::{error, invalid};
use self::fields::{check_keys, get, object};
use self::reply::{response, stream_reply, Out};
use self::request::{generation_config, tool_config, tools};
use super::common::{answer, words, Convo};
use super::wire::{Ctx, Reply};

const PROVIDER: &str = "gemini";

/// `:countTokens`: `{"contents"}` or `{"generateContentRequest"}` → `{"totalTokens"}`, the
/// words of every string in the contents, system instruction and tools (no generation).
fn count_tokens(o: &serde_json::Map<String, Value>) -> Result<Reply, Reply> {
    check_keys(o, &["contents", "generateContentRequest"], "")?;
    let inner = match (get(o, "contents"), get(o, "generateContentRequest")) {
        (Some(c), None) => json!({ "contents": c }),
        (None, Some(Value::Object(r))) => Value::Object(r.clone()),
        _ => {
            return Err(invalid(
                "Exactly one of contents or generateContentRequest must be set.",
            ))
        }
    };
    fn walk(v: &Value, n: &mut u64) {
        match v {
            Value::String(s) => *n += super::common::words(s),
            Value::Array(a) => a.iter().for_each(|x| walk(x, n)),
            Value::Object(m) => m
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "model" | "role"))
                .for_each(|(_, x)| walk(x, n)),
            _ => {}
        }
    }
    let mut n = 0;
    walk(&inner, &mut n);
    Ok(Reply::json(
        http::StatusCode::OK,
        json!({ "totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}] }),
    ))
}

pub(super) fn handle(ctx: &Ctx<'_>) -> Reply {
    match run(ctx) {
        Ok(r) | Err(r) => r,
    }
}

fn run(ctx: &Ctx<'_>) -> Result<Reply, Reply> {
    let not_found = || error(404, "NOT_FOUND", "Requested entity was not found.", None);
    let rest = ctx
        .path
        .strip_prefix("/v1beta/models/")
        .or_else(|| ctx.path.strip_prefix("/v1/models/"))
        .ok_or_else(not_found)?;
    let (model, method) = rest.rsplit_once(':').ok_or_else(not_found)?;
    let streaming = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        "countTokens" | "batchEmbedContents" => false,
        _ => return Err(not_found()),
    };
    if ctx.method != Method::POST || model.is_empty() {
        return Err(not_found());
    }
    let key = ctx
        .header("x-goog-api-key")
        .or_else(|| ctx.query_param("key"));
    match key {
        None => return Err(error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            None,
        )),
        Some(k) if k != ctx.config.api_key() => {
            let message = "API key not valid. Please pass a valid API key.";
            return Err(error(
                400,
                "INVALID_ARGUMENT",
                message,
                Some(json!([
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                     "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
                    {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message},
                ])),
            ));
        }
        Some(_) => {}
    }
    if !ctx.model_known(model) {
        return Err(error(
            404,
            "NOT_FOUND",
            format!("models/{model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."),
            None,
        ));
    }
    let Some(Value::Object(o)) = ctx.body else {
        return Err(invalid("Invalid JSON payload received. Unexpected token."));
    };
    if method == "countTokens" {
        return count_tokens(o);
    }
    if method == "batchEmbedContents" {
        return super::embeddings::gemini(o, model).map_err(|(_, m)| invalid(m));
    }
    check_keys(
        o,
        &[
            "model",
            "contents",
            "tools",
            "toolConfig",
            "safetySettings",
            "systemInstruction",
            "generationConfig",
            "cachedContent",
        ],
        "",
    )?;

    let gen = match get(o, "generationConfig") {
        Some(g) => Some(generation_config(object(g, "generation_config")?)?),
        None => None,
    }
    .unwrap_or_default();
    let tools = tools(get(o, "tools"))?;
    let choice = tool_config(get(o, "toolConfig"), &tools)?;
    let system_words = match get(o, "systemInstruction") {
        Some(s) => {
            let turn = content(object(s, "system_instruction")?, "system_instruction", true)?;
            words(&turn.text)
        }
        None => 0,
    };
    let turns = contents(get(o, "contents"))?;
    ordering(&turns)?;
    if gen.thinking {
        signatures(&turns)?;
    }

    let mut prompt = system_words;
    for t in &turns {
        prompt += words(&t.text);
        prompt += t.responses.iter().map(|(_, r)| words(r)).sum::<u64>();
    }
    let last = turns.last();
    let last_input = turns.iter().rev().find(|t| !t.model && t.has_input);
    let (tools, choice) = choice;
    let convo = Convo {
        said: last_input.map(|t| t.text.clone()).unwrap_or_default(),
        images: last_input.map_or(0, |t| t.images),
        tool_result: last
            .filter(|t| !t.model && !t.responses.is_empty())
            .map(|t| {
                t.responses
                    .iter()
                    .map(|(_, r)| r.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
        tools,
        choice,
        parallel: true,
        max_tokens: gen.max_tokens,
        stop: gen.stop,
        thinking: gen.thinking,
    };
    let a = answer(PROVIDER, &convo, ctx.text_override);
    let out = Out {
        model,
        prompt,
        candidates: gen.candidates,
        show_thoughts: gen.include_thoughts,
        thinking: gen.thinking,
    };
    Ok(if streaming {
        stream_reply(ctx, &out, &a)
    } else {
        Reply::json(StatusCode::OK, response(ctx, &out, &a, None, true))
    })
}
