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

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::common::{
    answer, chunks, sign, verify, words, Answer, Call, Choice, Convo, Finish, ToolDef,
};
use super::server::{Ctx, Reply, StreamPlan};

const PROVIDER: &str = "gemini";
const SIGN_DOMAIN: &str = "gemini-function-call";
/// Values Google documents as accepted in place of a real thought signature.
const DUMMY_SIGNATURES: [&str; 2] = [
    "skip_thought_signature_validator",
    "context_engineering_is_the_way_to_go",
];

fn error(code: u16, status: &str, message: impl Into<String>, details: Option<Value>) -> Reply {
    let http = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let mut e = json!({"code": code, "message": message.into(), "status": status});
    if let Some(d) = details {
        e["details"] = d;
    }
    Reply::json(http, json!({ "error": e }))
}

fn invalid(message: impl Into<String>) -> Reply {
    error(400, "INVALID_ARGUMENT", message, None)
}

/// `* GenerateContentRequest.{field}: {what}` (the format of Google's field checks).
fn field_error(field: &str, what: &str) -> Reply {
    invalid(format!("* GenerateContentRequest.{field}: {what}\n"))
}

fn unknown_name(key: &str, at: &str) -> Reply {
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

/// The answer for a status injected by [`Fault::Status`](super::Fault::Status).
pub(super) fn status_error(status: StatusCode, retry_after: Option<u64>, _seq: u64) -> Reply {
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

fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut up = false;
    for c in key.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A field by its lowerCamelCase name, also found under its snake_case name. `null` counts
/// as absent.
fn get<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    o.get(name)
        .or_else(|| o.get(&snake(name)))
        .filter(|v| !v.is_null())
}

fn check_keys(o: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), Reply> {
    match o.keys().find(|k| !allowed.contains(&camel(k).as_str())) {
        Some(k) => Err(unknown_name(k, at)),
        None => Ok(()),
    }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, Reply> {
    v.as_object()
        .ok_or_else(|| invalid(format!("Invalid value at '{at}', {v}")))
}

fn array<'a>(v: &'a Value, at: &str) -> Result<&'a Vec<Value>, Reply> {
    v.as_array()
        .ok_or_else(|| invalid(format!("Invalid value at '{at}', {v}")))
}

pub(super) fn handle(ctx: &Ctx<'_>) -> Reply {
    match run(ctx) {
        Ok(r) | Err(r) => r,
    }
}

/// What a part carries.
const DATA_FIELDS: [&str; 7] = [
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
];
const PART_FIELDS: [&str; 12] = [
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "thought",
    "thoughtSignature",
    "videoMetadata",
    "partMetadata",
    "mediaResolution",
];

/// One content, as far as ordering and signature checks need it.
struct Turn {
    model: bool,
    /// `(part index, name, thoughtSignature)`.
    calls: Vec<(usize, String, Option<String>)>,
    responses: Vec<(String, String)>,
    text: String,
    images: usize,
    /// Has parts other than function responses.
    has_input: bool,
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
        Some(k) if k != ctx.shared.config.api_key() => {
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

struct Gen {
    max_tokens: Option<u64>,
    stop: Vec<String>,
    thinking: bool,
    include_thoughts: bool,
    candidates: u64,
}

impl Default for Gen {
    fn default() -> Self {
        Self {
            max_tokens: None,
            stop: Vec::new(),
            thinking: false,
            include_thoughts: false,
            candidates: 1,
        }
    }
}

fn generation_config(g: &Map<String, Value>) -> Result<Gen, Reply> {
    check_keys(
        g,
        &[
            "stopSequences",
            "responseMimeType",
            "responseSchema",
            "responseJsonSchema",
            "responseModalities",
            "candidateCount",
            "maxOutputTokens",
            "temperature",
            "topP",
            "topK",
            "seed",
            "presencePenalty",
            "frequencyPenalty",
            "responseLogprobs",
            "logprobs",
            "enableEnhancedCivicAnswers",
            "speechConfig",
            "thinkingConfig",
            "mediaResolution",
            "imageConfig",
        ],
        "generation_config",
    )?;
    let mut out = Gen::default();
    if let Some(v) = get(g, "maxOutputTokens") {
        out.max_tokens = Some(v.as_u64().ok_or_else(|| {
            invalid(format!(
                "Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), {v}"
            ))
        })?);
    }
    if let Some(v) = get(g, "candidateCount") {
        match v.as_u64() {
            Some(n @ 1..=8) => out.candidates = n,
            _ => {
                return Err(field_error(
                    "generation_config.candidate_count",
                    "candidate_count must be between 1 and 8.",
                ))
            }
        }
    }
    if let Some(v) = get(g, "temperature") {
        match v.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => {}
            _ => {
                return Err(field_error(
                    "generation_config.temperature",
                    "temperature must be between 0 and 2.",
                ))
            }
        }
    }
    if let Some(v) = get(g, "stopSequences") {
        let list = array(v, "generation_config.stop_sequences")?;
        if list.len() > 5 {
            return Err(field_error(
                "generation_config.stop_sequences",
                "the number of stop sequences must be at most 5.",
            ));
        }
        for s in list {
            let s = s.as_str().ok_or_else(|| {
                invalid(format!(
                    "Invalid value at 'generation_config.stop_sequences' (TYPE_STRING), {s}"
                ))
            })?;
            out.stop.push(s.to_owned());
        }
    }
    if let Some(s) = get(g, "responseSchema") {
        schema(s, "generation_config.response_schema")?;
    }
    if let Some(t) = get(g, "thinkingConfig") {
        let t = object(t, "generation_config.thinking_config")?;
        check_keys(
            t,
            &["thinkingBudget", "includeThoughts", "thinkingLevel"],
            "generation_config.thinking_config",
        )?;
        let budget = match get(t, "thinkingBudget") {
            None => None,
            Some(b) => Some(b.as_i64().ok_or_else(|| {
                invalid(format!(
                    "Invalid value at 'generation_config.thinking_config.thinking_budget' (TYPE_INT32), {b}"
                ))
            })?),
        };
        out.include_thoughts = get(t, "includeThoughts").and_then(Value::as_bool) == Some(true);
        out.thinking = budget.is_some_and(|b| b != 0)
            || get(t, "thinkingLevel").is_some()
            || out.include_thoughts;
        if budget == Some(0) {
            out.thinking = false;
            out.include_thoughts = false;
        }
    }
    Ok(out)
}

fn valid_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

const SCHEMA_FIELDS: [&str; 22] = [
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

const TYPES: [&str; 8] = [
    "type_unspecified",
    "string",
    "number",
    "integer",
    "boolean",
    "array",
    "object",
    "null",
];

/// Checks a `Schema` (the OpenAPI subset Gemini takes).
fn schema(v: &Value, at: &str) -> Result<(), Reply> {
    let s = object(v, at)?;
    for k in s.keys() {
        // `$schema`, `$ref`, `$defs`, `additionalProperties`, `const`, `oneOf`, …
        if !SCHEMA_FIELDS.contains(&camel(k).as_str()) {
            return Err(unknown_name(k, at));
        }
    }
    if let Some(t) = get(s, "type") {
        match t {
            Value::String(name) if TYPES.contains(&name.to_ascii_lowercase().as_str()) => {}
            Value::Array(_) => {
                return Err(invalid(format!("Invalid JSON payload received. Unknown name \"type\" at '{at}': Proto field is not repeating, cannot start list.")))
            }
            other => {
                return Err(invalid(format!(
                    "Invalid value at '{at}.type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), {other}"
                )))
            }
        }
    }
    if let Some(p) = get(s, "properties") {
        for (name, sub) in object(p, &format!("{at}.properties"))? {
            schema(sub, &format!("{at}.properties[{name}]"))?;
        }
    }
    if let Some(i) = get(s, "items") {
        schema(i, &format!("{at}.items"))?;
    }
    if let Some(a) = get(s, "anyOf") {
        for (k, sub) in array(a, &format!("{at}.any_of"))?.iter().enumerate() {
            schema(sub, &format!("{at}.any_of[{k}]"))?;
        }
    }
    Ok(())
}

fn tools(v: Option<&Value>) -> Result<Vec<ToolDef>, Reply> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (t, tool) in array(v, "tools")?.iter().enumerate() {
        let at = format!("tools[{t}]");
        let tool = object(tool, &at)?;
        check_keys(
            tool,
            &[
                "functionDeclarations",
                "googleSearch",
                "googleSearchRetrieval",
                "codeExecution",
                "urlContext",
                "computerUse",
                "fileSearch",
                "googleMaps",
            ],
            &at,
        )?;
        let Some(decls) = get(tool, "functionDeclarations") else {
            continue;
        };
        for (d, decl) in array(decls, &format!("{at}.function_declarations"))?
            .iter()
            .enumerate()
        {
            let dat = format!("{at}.function_declarations[{d}]");
            let decl = object(decl, &dat)?;
            check_keys(
                decl,
                &[
                    "name",
                    "description",
                    "parameters",
                    "parametersJsonSchema",
                    "response",
                    "responseJsonSchema",
                    "behavior",
                ],
                &dat,
            )?;
            let name = get(decl, "name").and_then(Value::as_str).unwrap_or("");
            if !valid_function_name(name) {
                return Err(field_error(
                    &format!("{dat}.name"),
                    "Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64.",
                ));
            }
            let params = get(decl, "parameters");
            let json_schema = get(decl, "parametersJsonSchema");
            if params.is_some() && json_schema.is_some() {
                return Err(field_error(
                    &dat,
                    "parameters and parameters_json_schema cannot both be set.",
                ));
            }
            if let Some(p) = params {
                schema(p, &format!("{dat}.parameters"))?;
            }
            if let Some(r) = get(decl, "response") {
                schema(r, &format!("{dat}.response"))?;
            }
            out.push(ToolDef {
                name: name.to_owned(),
                schema: params.or(json_schema).cloned(),
            });
        }
    }
    Ok(out)
}

fn tool_config(v: Option<&Value>, tools: &[ToolDef]) -> Result<(Vec<ToolDef>, Choice), Reply> {
    let Some(v) = v else {
        return Ok((tools.to_vec(), Choice::Auto));
    };
    let c = object(v, "tool_config")?;
    check_keys(
        c,
        &["functionCallingConfig", "retrievalConfig"],
        "tool_config",
    )?;
    let Some(f) = get(c, "functionCallingConfig") else {
        return Ok((tools.to_vec(), Choice::Auto));
    };
    let at = "tool_config.function_calling_config";
    let f = object(f, at)?;
    check_keys(f, &["mode", "allowedFunctionNames"], at)?;
    let mode = match get(f, "mode") {
        None => "AUTO".to_owned(),
        Some(Value::String(m)) => m.to_ascii_uppercase(),
        Some(other) => {
            return Err(invalid(format!(
                "Invalid value at '{at}.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), {other}"
            )))
        }
    };
    let allowed: Option<Vec<&str>> = match get(f, "allowedFunctionNames") {
        None => None,
        Some(a) => Some(
            array(a, &format!("{at}.allowed_function_names"))?
                .iter()
                .filter_map(Value::as_str)
                .collect(),
        ),
    };
    match mode.as_str() {
        "AUTO" | "MODE_UNSPECIFIED" | "VALIDATED" | "NONE" if allowed.is_some() => Err(field_error(
            &format!("{at}.allowed_function_names"),
            "allowed_function_names should only be set when the mode is ANY.",
        )),
        "AUTO" | "MODE_UNSPECIFIED" | "VALIDATED" => Ok((tools.to_vec(), Choice::Auto)),
        "NONE" => Ok((tools.to_vec(), Choice::None)),
        "ANY" => {
            let kept: Vec<ToolDef> = match &allowed {
                None => tools.to_vec(),
                Some(names) => tools
                    .iter()
                    .filter(|t| names.contains(&t.name.as_str()))
                    .cloned()
                    .collect(),
            };
            if let Some(missing) = allowed
                .iter()
                .flatten()
                .find(|n| !tools.iter().any(|t| t.name == **n))
            {
                return Err(field_error(
                    &format!("{at}.allowed_function_names"),
                    &format!("function {missing} is not declared in tools."),
                ));
            }
            Ok((kept, Choice::Required))
        }
        other => Err(invalid(format!(
            "Invalid value at '{at}.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"{other}\""
        ))),
    }
}

fn content(c: &Map<String, Value>, at: &str, system: bool) -> Result<Turn, Reply> {
    check_keys(c, &["parts", "role"], at)?;
    let model = match get(c, "role").map(|r| r.as_str()) {
        None => false,
        Some(Some("user" | "function")) => false,
        Some(Some("model")) if !system => true,
        Some(Some("model")) => false,
        Some(_) => return Err(invalid("Please use a valid role: user, model.")),
    };
    let parts = match get(c, "parts") {
        None => Vec::new(),
        Some(p) => array(p, &format!("{at}.parts"))?.clone(),
    };
    if parts.is_empty() {
        return Err(field_error(
            &format!("{at}.parts"),
            "contents.parts must not be empty.",
        ));
    }
    let mut turn = Turn {
        model,
        calls: Vec::new(),
        responses: Vec::new(),
        text: String::new(),
        images: 0,
        has_input: false,
    };
    for (j, part) in parts.iter().enumerate() {
        let pat = format!("{at}.parts[{j}]");
        let part = object(part, &pat)?;
        check_keys(part, &PART_FIELDS, &pat)?;
        let data: Vec<&str> = DATA_FIELDS
            .iter()
            .copied()
            .filter(|f| get(part, f).is_some())
            .collect();
        match data.as_slice() {
            [] => {
                return Err(field_error(
                    &format!("{pat}.data"),
                    "required oneof field 'data' must have one initialized field",
                ))
            }
            [_] => {}
            [_, second, ..] => {
                return Err(invalid(format!(
                    "Invalid JSON payload received. Oneof field 'data' is already set. Cannot set '{second}'"
                )))
            }
        }
        let signature = get(part, "thoughtSignature")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let is_thought = get(part, "thought").and_then(Value::as_bool) == Some(true);
        match data[0] {
            "text" => {
                let t = get(part, "text").and_then(Value::as_str).ok_or_else(|| {
                    invalid(format!("Invalid value at '{pat}.text' (TYPE_STRING)"))
                })?;
                if !is_thought {
                    if !turn.text.is_empty() {
                        turn.text.push(' ');
                    }
                    turn.text.push_str(t);
                }
                turn.has_input = true;
            }
            "inlineData" | "fileData" => {
                let inline = data[0] == "inlineData";
                let fat = format!("{pat}.{}", if inline { "inline_data" } else { "file_data" });
                let blob = object(get(part, data[0]).unwrap_or(&Value::Null), &fat)?;
                let (required, required_snake) = if inline {
                    ("data", "data")
                } else {
                    ("fileUri", "file_uri")
                };
                check_keys(blob, &["mimeType", required, "displayName"], &fat)?;
                if get(blob, required).is_none() {
                    return Err(field_error(
                        &format!("{fat}.{required_snake}"),
                        "required field is not specified",
                    ));
                }
                let mime = get(blob, "mimeType").and_then(Value::as_str).unwrap_or("");
                if inline && mime.is_empty() {
                    return Err(field_error(
                        &format!("{fat}.mime_type"),
                        "required field is not specified",
                    ));
                }
                if mime.starts_with("image/") {
                    turn.images += 1;
                }
                turn.has_input = true;
            }
            "functionCall" => {
                let fc = object(
                    get(part, "functionCall").unwrap_or(&Value::Null),
                    &format!("{pat}.function_call"),
                )?;
                check_keys(fc, &["id", "name", "args"], &format!("{pat}.function_call"))?;
                let name = get(fc, "name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    return Err(field_error(
                        &format!("{pat}.function_call.name"),
                        "Name cannot be empty.",
                    ));
                }
                if let Some(args) = get(fc, "args") {
                    object(args, &format!("{pat}.function_call.args"))?;
                }
                if !model {
                    return Err(invalid("Please ensure that function call turns are model turns: a function_call part may only appear in a content with role 'model'."));
                }
                turn.calls.push((j, name.to_owned(), signature));
            }
            "functionResponse" => {
                let fr = object(
                    get(part, "functionResponse").unwrap_or(&Value::Null),
                    &format!("{pat}.function_response"),
                )?;
                check_keys(
                    fr,
                    &[
                        "id",
                        "name",
                        "response",
                        "willContinue",
                        "scheduling",
                        "parts",
                    ],
                    &format!("{pat}.function_response"),
                )?;
                let name = get(fr, "name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    return Err(field_error(
                        &format!("{pat}.function_response.name"),
                        "Name cannot be empty.",
                    ));
                }
                let response = match get(fr, "response") {
                    Some(r) => object(r, &format!("{pat}.function_response.response"))?,
                    None => {
                        return Err(field_error(
                            &format!("{pat}.function_response.response"),
                            "required field is not specified",
                        ))
                    }
                };
                if model {
                    return Err(invalid("Please ensure that function response turns are user turns: a function_response part may only appear in a content with role 'user'."));
                }
                turn.responses
                    .push((name.to_owned(), Value::Object(response.clone()).to_string()));
            }
            _ => turn.has_input = true,
        }
    }
    Ok(turn)
}

fn contents(v: Option<&Value>) -> Result<Vec<Turn>, Reply> {
    let list = match v {
        None => return Err(field_error("contents", "contents is not specified")),
        Some(v) => array(v, "contents")?,
    };
    if list.is_empty() {
        return Err(field_error("contents", "contents is not specified"));
    }
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            let at = format!("contents[{i}]");
            content(object(c, &at)?, &at, false)
        })
        .collect()
}

/// Function calls follow a user turn or function responses; function responses follow the
/// call turn and answer every call by name.
fn ordering(turns: &[Turn]) -> Result<(), Reply> {
    for (i, t) in turns.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| &turns[p]);
        if !t.calls.is_empty() && prev.is_none_or(|p| p.model) {
            return Err(invalid("Please ensure that function call turn comes immediately after a user turn or after a function response turn."));
        }
        if !t.responses.is_empty() {
            let Some(p) = prev.filter(|p| !p.calls.is_empty()) else {
                return Err(invalid("Please ensure that function response turn comes immediately after a function call turn."));
            };
            if p.calls.len() != t.responses.len() {
                return Err(invalid("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn."));
            }
            let mut names: Vec<&str> = p.calls.iter().map(|(_, n, _)| n.as_str()).collect();
            for (name, _) in &t.responses {
                match names.iter().position(|n| n == name) {
                    Some(k) => {
                        names.swap_remove(k);
                    }
                    None => {
                        return Err(invalid(format!("Please ensure that function response names match the function call names of the function call turn: no function call named '{name}'.")))
                    }
                }
            }
        }
    }
    Ok(())
}

/// With thinking on, the first function call of each model step in the current turn carries
/// the `thoughtSignature` the demo gave it.
fn signatures(turns: &[Turn]) -> Result<(), Reply> {
    let start = turns
        .iter()
        .rposition(|t| !t.model && t.has_input)
        .map_or(0, |i| i + 1);
    for (i, t) in turns.iter().enumerate().skip(start) {
        let Some((_, name, sig)) = t.calls.first() else {
            continue;
        };
        match sig {
            None => {
                return Err(invalid(format!("Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{name}` , position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.", i + 1)))
            }
            Some(s) if DUMMY_SIGNATURES.contains(&s.as_str()) || verify(SIGN_DOMAIN, name, s) => {}
            Some(_) => return Err(invalid("Corrupted thought signature.")),
        }
    }
    Ok(())
}

/// Response-wide facts.
struct Out<'a> {
    model: &'a str,
    prompt: u64,
    candidates: u64,
    show_thoughts: bool,
    thinking: bool,
}

fn finish_reason(f: &Finish) -> &'static str {
    match f {
        Finish::Length => "MAX_TOKENS",
        Finish::Stop | Finish::StopSequence(_) | Finish::ToolCalls => "STOP",
    }
}

fn usage(out: &Out<'_>, a: &Answer) -> Value {
    let mut u = json!({
        "promptTokenCount": out.prompt,
        "candidatesTokenCount": a.output_tokens - a.thinking_tokens,
        "totalTokenCount": out.prompt + a.output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": out.prompt}],
    });
    if a.thinking_tokens > 0 {
        u["thoughtsTokenCount"] = Value::from(a.thinking_tokens);
    }
    u
}

fn call_part(c: &Call, signed: bool) -> Value {
    let mut p = json!({"functionCall": {"name": c.name, "args": c.args}});
    if signed {
        p["thoughtSignature"] = Value::from(sign(SIGN_DOMAIN, &c.name));
    }
    p
}

/// The whole answer's parts.
fn parts(out: &Out<'_>, a: &Answer) -> Vec<Value> {
    let mut parts = Vec::new();
    if let (Some(t), true) = (&a.thinking, out.show_thoughts) {
        parts.push(json!({"text": t, "thought": true}));
    }
    if !a.text.is_empty() || a.calls.is_empty() {
        parts.push(json!({"text": a.text}));
    }
    for (k, c) in a.calls.iter().enumerate() {
        parts.push(call_part(c, out.thinking && k == 0));
    }
    parts
}

/// A `GenerateContentResponse`: `parts` for every candidate (the whole answer when `None`),
/// and the finish reason and full usage when `last`.
fn response(ctx: &Ctx<'_>, out: &Out<'_>, a: &Answer, part: Option<Value>, last: bool) -> Value {
    let ps = match part {
        Some(p) => vec![p],
        None => parts(out, a),
    };
    let candidates: Vec<Value> = (0..out.candidates)
        .map(|i| {
            let mut c = json!({"content": {"parts": ps, "role": "model"}, "index": i});
            if last {
                c["finishReason"] = Value::from(finish_reason(&a.finish));
            }
            c
        })
        .collect();
    let usage = if last {
        usage(out, a)
    } else {
        json!({"promptTokenCount": out.prompt, "totalTokenCount": out.prompt})
    };
    json!({
        "candidates": candidates,
        "usageMetadata": usage,
        "modelVersion": out.model,
        "responseId": format!("demo{}", ctx.seq),
    })
}

fn stream_reply(ctx: &Ctx<'_>, out: &Out<'_>, a: &Answer) -> Reply {
    let per = ctx.words_per_chunk();
    let mut objects = Vec::new();
    if let (Some(t), true) = (&a.thinking, out.show_thoughts) {
        for piece in chunks(t, per) {
            objects.push(response(
                ctx,
                out,
                a,
                Some(json!({"text": piece, "thought": true})),
                false,
            ));
        }
    }
    for piece in chunks(&a.text, per) {
        objects.push(response(ctx, out, a, Some(json!({"text": piece})), false));
    }
    // Function calls arrive whole, one per chunk.
    for (k, c) in a.calls.iter().enumerate() {
        objects.push(response(
            ctx,
            out,
            a,
            Some(call_part(c, out.thinking && k == 0)),
            false,
        ));
    }
    objects.push(response(ctx, out, a, Some(json!({"text": ""})), true));

    let sse = ctx.query_param("alt") == Some("sse");
    let (frames, end_frames, content_type, malformed) = if sse {
        (
            objects
                .iter()
                .map(|o| Bytes::from(format!("data: {o}\r\n\r\n")))
                .collect(),
            1,
            "text/event-stream",
            Bytes::from_static(
                b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"brok\r\n\r\n",
            ),
        )
    } else {
        // Without `alt=sse` the stream is one JSON array, written element by element.
        let mut frames: Vec<Bytes> = objects
            .iter()
            .enumerate()
            .map(|(i, o)| Bytes::from(format!("{}{o}", if i == 0 { "[" } else { ",\r\n" })))
            .collect();
        frames.push(Bytes::from_static(b"]"));
        (
            frames,
            2,
            "application/json; charset=UTF-8",
            Bytes::from_static(
                b",\r\n{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"brok",
            ),
        )
    };
    Reply::Stream(StreamPlan {
        content_type,
        headers: Vec::new(),
        frames,
        end_frames,
        malformed,
    })
}
