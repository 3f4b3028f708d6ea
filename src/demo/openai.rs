//! The OpenAI chat-completions demo provider (`POST /v1/chat/completions`).
//!
//! Errors have OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`. Unknown
//! top-level fields are accepted (real OpenAI rejects them) so pass-through can be tested;
//! they are in the request log like everything else. Among them, OpenRouter's `reasoning`
//! object turns thinking on (as `reasoning_effort` does) and the reasoning text comes back in
//! `message.reasoning` / `delta.reasoning`, as OpenRouter returns it.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::common::{
    answer, chunks, fragments, type_name, words, Answer, Choice, Convo, Finish, ToolDef,
};
use super::wire::{Ctx, Reply, StreamPlan};

const PROVIDER: &str = "openai";

fn error(
    status: StatusCode,
    message: impl Into<String>,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Reply {
    Reply::json(
        status,
        json!({"error": {"message": message.into(), "type": kind, "param": param, "code": code}}),
    )
}

fn invalid(message: impl Into<String>, param: Option<&str>, code: Option<&str>) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        param,
        code,
    )
}

fn missing(param: &str) -> Reply {
    invalid(
        format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

fn wrong_type(param: &str, expected: &str, got: &Value) -> Reply {
    invalid(
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            type_name(got)
        ),
        Some(param),
        Some("invalid_type"),
    )
}

fn supported(values: &[&str]) -> String {
    let q: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    match q.len() {
        0 => String::new(),
        1 => q[0].clone(),
        2 => format!("{} and {}", q[0], q[1]),
        n => format!("{}, and {}", q[..n - 1].join(", "), q[n - 1]),
    }
}

fn invalid_value(param: &str, got: &str, values: &[&str]) -> Reply {
    invalid(
        format!(
            "Invalid value: '{got}'. Supported values are: {}.",
            supported(values)
        ),
        Some(param),
        Some("invalid_value"),
    )
}

/// The answer for a status injected by [`Fault::Status`](super::Fault::Status).
pub(super) fn status_error(status: StatusCode, retry_after: Option<u64>, seq: u64) -> Reply {
    let r = match status.as_u16() {
        401 => error(
            status,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
        404 => error(
            status,
            "The model `demo` does not exist or you do not have access to it.",
            "invalid_request_error",
            None,
            Some("model_not_found"),
        ),
        413 => error(
            status,
            "Request too large: the request body exceeds the size limit.",
            "invalid_request_error",
            None,
            None,
        ),
        429 => error(
            status,
            format!(
                "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in {}s.",
                retry_after.unwrap_or(20)
            ),
            "requests",
            None,
            Some("rate_limit_exceeded"),
        ),
        500 => error(
            status,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
        502 => Reply::json(
            status,
            json!({"error": {"code": 502, "message": "Bad gateway.", "param": null, "type": "cf_bad_gateway"}}),
        ),
        503 => error(
            status,
            "The engine is currently overloaded, please try again later",
            "server_error",
            None,
            None,
        ),
        s if s >= 500 => error(
            status,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
        _ => error(
            status,
            format!(
                "The request failed with status {}.",
                status.as_u16()
            ),
            "invalid_request_error",
            None,
            None,
        ),
    };
    let r = r.with_header("x-request-id", format!("req_demo_{seq}"));
    match retry_after {
        Some(s) => r.with_header("retry-after", s.to_string()),
        None => r,
    }
}

pub(super) fn handle(ctx: &Ctx<'_>) -> Reply {
    let reply = match run(ctx) {
        Ok(r) | Err(r) => r,
    };
    reply.with_header("x-request-id", format!("req_demo_{}", ctx.seq))
}

fn auth(ctx: &Ctx<'_>) -> Result<(), Reply> {
    let Some(value) = ctx.header("authorization") else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        ));
    };
    let key = value.strip_prefix("Bearer ").unwrap_or("");
    if key != ctx.config.api_key() {
        let chars: Vec<char> = key.chars().collect();
        let shown = if chars.len() > 8 {
            let head: String = chars[..3].iter().collect();
            let tail: String = chars[chars.len() - 4..].iter().collect();
            format!("{head}***{tail}")
        } else {
            "***".to_owned()
        };
        return Err(error(
            StatusCode::UNAUTHORIZED,
            format!("Incorrect API key provided: {shown}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ));
    }
    Ok(())
}

/// Options read from the request that shape the response.
struct Opts<'a> {
    model: &'a str,
    include_usage: bool,
    n: u64,
    show_reasoning: bool,
}

fn run(ctx: &Ctx<'_>) -> Result<Reply, Reply> {
    if ctx.path != "/v1/chat/completions" && ctx.path != "/v1/embeddings" {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("Invalid URL ({} {})", ctx.method, ctx.path),
            "invalid_request_error",
            None,
            None,
        ));
    }
    if ctx.method != Method::POST {
        return Err(error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Invalid method for URL ({} {})", ctx.method, ctx.path),
            "invalid_request_error",
            None,
            None,
        ));
    }
    auth(ctx)?;
    let parse_error = || {
        invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
            None,
            None,
        )
    };
    let body = ctx.body.ok_or_else(parse_error)?;
    let o = body.as_object().ok_or_else(parse_error)?;

    let model = match o.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        _ => return Err(invalid("you must provide a model parameter", None, None)),
    };
    if !ctx.model_known(model) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            None,
            Some("model_not_found"),
        ));
    }
    if ctx.path == "/v1/embeddings" {
        return Ok(super::embeddings::openai(o, model));
    }
    let stream = match o.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(wrong_type("stream", "a boolean", v)),
    };
    let include_usage = match o.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(_) if !stream => {
            return Err(invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                Some("stream_options"),
                None,
            ))
        }
        Some(Value::Object(so)) => match so.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(wrong_type("stream_options.include_usage", "a boolean", v)),
        },
        Some(v) => return Err(wrong_type("stream_options", "an object", v)),
    };
    number(o, "temperature", 0.0, 2.0)?;
    number(o, "top_p", 0.0, 1.0)?;
    number(o, "frequency_penalty", -2.0, 2.0)?;
    number(o, "presence_penalty", -2.0, 2.0)?;
    let n = integer(o, "n", 1, 128)?.unwrap_or(1);
    let max_tokens = match integer(o, "max_completion_tokens", 1, u64::MAX)? {
        Some(m) => Some(m),
        None => integer(o, "max_tokens", 1, u64::MAX)?,
    };
    let stop = stop_sequences(o.get("stop"))?;
    let tools = tools(o.get("tools"))?;
    let choice = tool_choice(o.get("tool_choice"), &tools)?;
    let parallel = match o.get("parallel_tool_calls") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(wrong_type("parallel_tool_calls", "a boolean", v)),
    };
    let (thinking, show_reasoning) = reasoning(o)?;
    let msgs = messages(o.get("messages"))?;

    let convo = Convo {
        said: msgs.said,
        images: msgs.images,
        tool_result: msgs.tool_result,
        tools,
        choice,
        parallel,
        max_tokens,
        stop,
        thinking,
    };
    let a = answer(PROVIDER, &convo, ctx.text_override);
    let opts = Opts {
        model,
        include_usage,
        n,
        show_reasoning,
    };
    Ok(if stream {
        stream_reply(ctx, &opts, &a, msgs.prompt_tokens)
    } else {
        complete_reply(ctx, &opts, &a, msgs.prompt_tokens)
    })
}

fn number(o: &Map<String, Value>, name: &str, min: f64, max: f64) -> Result<(), Reply> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(x)) => {
            let v = x.as_f64().unwrap_or(0.0);
            if v > max {
                Err(invalid(
                    format!("Invalid '{name}': decimal above maximum value. Expected a value <= {max}, but got {x} instead."),
                    Some(name),
                    Some("decimal_above_max_value"),
                ))
            } else if v < min {
                Err(invalid(
                    format!("Invalid '{name}': decimal below minimum value. Expected a value >= {min}, but got {x} instead."),
                    Some(name),
                    Some("decimal_below_min_value"),
                ))
            } else {
                Ok(())
            }
        }
        Some(v) => Err(wrong_type(name, "a decimal", v)),
    }
}

fn integer(o: &Map<String, Value>, name: &str, min: u64, max: u64) -> Result<Option<u64>, Reply> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(x)) if x.is_i64() || x.is_u64() => {
            let v = x.as_i64().unwrap_or(i64::MAX);
            if v < min as i64 {
                Err(invalid(
                    format!("Invalid '{name}': integer below minimum value. Expected a value >= {min}, but got {x} instead."),
                    Some(name),
                    Some("integer_below_min_value"),
                ))
            } else if x.as_u64().is_some_and(|u| u > max) {
                Err(invalid(
                    format!("Invalid '{name}': integer above maximum value. Expected a value <= {max}, but got {x} instead."),
                    Some(name),
                    Some("integer_above_max_value"),
                ))
            } else {
                Ok(x.as_u64())
            }
        }
        Some(v) => Err(wrong_type(name, "an integer", v)),
    }
}

fn stop_sequences(v: Option<&Value>) -> Result<Vec<String>, Reply> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => {
            if a.len() > 4 {
                return Err(invalid(
                    format!("Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length {} instead.", a.len()),
                    Some("stop"),
                    Some("array_above_max_length"),
                ));
            }
            a.iter()
                .enumerate()
                .map(|(i, s)| {
                    s.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| wrong_type(&format!("stop[{i}]"), "a string", s))
                })
                .collect()
        }
        Some(v) => Err(wrong_type("stop", "a string or array of strings", v)),
    }
}

fn valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn tools(v: Option<&Value>) -> Result<Vec<ToolDef>, Reply> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(v) => return Err(wrong_type("tools", "an array of objects", v)),
    };
    let mut out = Vec::new();
    for (j, t) in list.iter().enumerate() {
        let p = |s: &str| format!("tools[{j}]{s}");
        let Some(t) = t.as_object() else {
            return Err(wrong_type(&p(""), "an object", t));
        };
        match t.get("type").and_then(Value::as_str) {
            None => return Err(missing(&p(".type"))),
            Some("function") => {}
            Some("custom") => continue,
            Some(other) => return Err(invalid_value(&p(".type"), other, &["function", "custom"])),
        }
        let f = match t.get("function") {
            None | Some(Value::Null) => return Err(missing(&p(".function"))),
            Some(Value::Object(f)) => f,
            Some(v) => return Err(wrong_type(&p(".function"), "an object", v)),
        };
        let name = match f.get("name") {
            None | Some(Value::Null) => return Err(missing(&p(".function.name"))),
            Some(Value::String(s)) => s,
            Some(v) => return Err(wrong_type(&p(".function.name"), "a string", v)),
        };
        if name.chars().count() > 64 {
            return Err(invalid(
                format!("Invalid '{}': string too long. Expected a string with maximum length 64, but got a string with length {} instead.", p(".function.name"), name.chars().count()),
                Some(&p(".function.name")),
                Some("string_above_max_length"),
            ));
        }
        if !valid_function_name(name) {
            return Err(invalid(
                format!("Invalid '{}': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.", p(".function.name")),
                Some(&p(".function.name")),
                Some("invalid_value"),
            ));
        }
        let schema = match f.get("parameters") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(v) => return Err(wrong_type(&p(".function.parameters"), "an object", v)),
        };
        out.push(ToolDef {
            name: name.clone(),
            schema,
        });
    }
    Ok(out)
}

fn tool_choice(v: Option<&Value>, tools: &[ToolDef]) -> Result<Choice, Reply> {
    let v = match v {
        None | Some(Value::Null) => return Ok(Choice::Auto),
        Some(v) => v,
    };
    if tools.is_empty() {
        return Err(invalid(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            Some("tool_choice"),
            None,
        ));
    }
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(Choice::Auto),
            "none" => Ok(Choice::None),
            "required" => Ok(Choice::Required),
            other => Err(invalid_value(
                "tool_choice",
                other,
                &["none", "auto", "required"],
            )),
        },
        Value::Object(o) => {
            match o.get("type").and_then(Value::as_str) {
                Some("function") => {}
                None => return Err(missing("tool_choice.type")),
                Some(other) => {
                    return Err(invalid_value(
                        "tool_choice.type",
                        other,
                        &["function", "allowed_tools", "custom"],
                    ))
                }
            }
            let Some(name) = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
            else {
                return Err(missing("tool_choice.function.name"));
            };
            if !tools.iter().any(|t| t.name == name) {
                return Err(invalid(
                    format!("Invalid value for 'tool_choice': no function named '{name}' was specified in the 'tools' parameter."),
                    Some("tool_choice"),
                    None,
                ));
            }
            Ok(Choice::Named(name.to_owned()))
        }
        v => Err(wrong_type("tool_choice", "a string or object", v)),
    }
}

/// `(thinking, show the reasoning text)` from OpenRouter's `reasoning` or `reasoning_effort`.
fn reasoning(o: &Map<String, Value>) -> Result<(bool, bool), Reply> {
    const EFFORTS: [&str; 6] = ["none", "minimal", "low", "medium", "high", "xhigh"];
    let mut on = false;
    let mut show = true;
    match o.get("reasoning_effort") {
        None | Some(Value::Null) => {}
        Some(Value::String(e)) if EFFORTS.contains(&e.as_str()) => on = e != "none",
        Some(Value::String(e)) => {
            return Err(invalid_value(
                "reasoning_effort",
                e,
                &["minimal", "low", "medium", "high"],
            ))
        }
        Some(v) => return Err(wrong_type("reasoning_effort", "a string", v)),
    }
    match o.get("reasoning") {
        None | Some(Value::Null) => {}
        Some(Value::Object(r)) => {
            let enabled = r.get("enabled").and_then(Value::as_bool) != Some(false)
                && r.get("effort").and_then(Value::as_str) != Some("none");
            on |= enabled;
            show = r.get("exclude").and_then(Value::as_bool) != Some(true);
        }
        Some(v) => return Err(wrong_type("reasoning", "an object", v)),
    }
    Ok((on, show))
}

/// What the messages say.
struct Messages {
    said: String,
    images: usize,
    tool_result: Option<String>,
    prompt_tokens: u64,
}

/// Text and images of one message's content.
#[derive(Default)]
struct ContentInfo {
    text: String,
    images: usize,
}

fn content(
    i: usize,
    v: Option<&Value>,
    allowed: &[&str],
    required: bool,
) -> Result<ContentInfo, Reply> {
    let param = format!("messages[{i}].content");
    let parts = match v {
        None | Some(Value::Null) if required => return Err(missing(&param)),
        None | Some(Value::Null) => return Ok(ContentInfo::default()),
        Some(Value::String(s)) => {
            return Ok(ContentInfo {
                text: s.clone(),
                images: 0,
            })
        }
        Some(Value::Array(a)) => a,
        Some(v) => return Err(wrong_type(&param, "one of a string or array of objects", v)),
    };
    if parts.is_empty() && required {
        return Err(invalid(
            format!("Invalid '{param}': empty array. Expected an array with minimum length 1, but got an empty array instead."),
            Some(&param),
            Some("empty_array"),
        ));
    }
    let mut info = ContentInfo::default();
    for (j, part) in parts.iter().enumerate() {
        let pp = format!("{param}[{j}]");
        let Some(part) = part.as_object() else {
            return Err(wrong_type(&pp, "an object", part));
        };
        let ty = match part.get("type") {
            None | Some(Value::Null) => return Err(missing(&format!("{pp}.type"))),
            Some(Value::String(t)) => t.as_str(),
            Some(v) => return Err(wrong_type(&format!("{pp}.type"), "a string", v)),
        };
        if !allowed.contains(&ty) {
            return Err(invalid_value(&format!("{pp}.type"), ty, allowed));
        }
        let field = |name: &str| -> Result<&Value, Reply> {
            part.get(name)
                .filter(|v| !v.is_null())
                .ok_or_else(|| missing(&format!("{pp}.{name}")))
        };
        match ty {
            "text" => match field("text")? {
                Value::String(t) => {
                    if !info.text.is_empty() {
                        info.text.push(' ');
                    }
                    info.text.push_str(t);
                }
                v => return Err(wrong_type(&format!("{pp}.text"), "a string", v)),
            },
            "image_url" => {
                let img = field("image_url")?;
                match img.get("url") {
                    Some(Value::String(u)) if !u.is_empty() => info.images += 1,
                    Some(Value::String(_)) | None | Some(Value::Null) => {
                        return Err(missing(&format!("{pp}.image_url.url")))
                    }
                    Some(v) => {
                        return Err(wrong_type(&format!("{pp}.image_url.url"), "a string", v))
                    }
                }
            }
            "input_audio" => {
                let a = field("input_audio")?;
                for k in ["data", "format"] {
                    if a.get(k).and_then(Value::as_str).is_none() {
                        return Err(missing(&format!("{pp}.input_audio.{k}")));
                    }
                }
            }
            "file" => {
                field("file")?;
            }
            "refusal" => {
                field("refusal")?;
            }
            _ => {}
        }
    }
    Ok(info)
}

const ROLES: [&str; 6] = [
    "system",
    "assistant",
    "user",
    "function",
    "tool",
    "developer",
];

fn messages(v: Option<&Value>) -> Result<Messages, Reply> {
    let list = match v {
        None | Some(Value::Null) => return Err(missing("messages")),
        Some(Value::Array(a)) => a,
        Some(v) => return Err(wrong_type("messages", "an array of objects", v)),
    };
    if list.is_empty() {
        return Err(invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages"),
            Some("empty_array"),
        ));
    }
    let mut out = Messages {
        said: String::new(),
        images: 0,
        tool_result: None,
        prompt_tokens: 0,
    };
    // The last assistant message with tool calls: (index, ids, answered).
    let mut open: Option<(usize, Vec<String>, Vec<bool>)> = None;
    let unanswered = |open: &Option<(usize, Vec<String>, Vec<bool>)>| -> Result<(), Reply> {
        if let Some((at, ids, done)) = open {
            let left: Vec<&str> = ids
                .iter()
                .zip(done)
                .filter(|(_, d)| !**d)
                .map(|(id, _)| id.as_str())
                .collect();
            if !left.is_empty() {
                return Err(invalid(
                    format!("An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}", left.join(", ")),
                    Some(&format!("messages.[{at}].role")),
                    None,
                ));
            }
        }
        Ok(())
    };
    let mut tool_results: Vec<String> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let Some(m) = m.as_object() else {
            return Err(wrong_type(&format!("messages[{i}]"), "an object", m));
        };
        let role = match m.get("role") {
            None | Some(Value::Null) => return Err(missing(&format!("messages[{i}].role"))),
            Some(Value::String(r)) => r.as_str(),
            Some(v) => return Err(wrong_type(&format!("messages[{i}].role"), "a string", v)),
        };
        if role != "tool" {
            tool_results.clear();
        }
        match role {
            "system" | "developer" => {
                unanswered(&open)?;
                open = None;
                let c = content(i, m.get("content"), &["text"], true)?;
                out.prompt_tokens += words(&c.text);
            }
            "user" => {
                unanswered(&open)?;
                open = None;
                let c = content(
                    i,
                    m.get("content"),
                    &["text", "image_url", "input_audio", "file"],
                    true,
                )?;
                out.prompt_tokens += words(&c.text);
                out.said = c.text;
                out.images = c.images;
            }
            "assistant" => {
                unanswered(&open)?;
                let calls = match m.get("tool_calls") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(a)) => a.iter().collect(),
                    Some(v) => {
                        return Err(wrong_type(
                            &format!("messages[{i}].tool_calls"),
                            "an array of objects",
                            v,
                        ))
                    }
                };
                let has_other = !calls.is_empty()
                    || m.get("function_call").is_some_and(|v| !v.is_null())
                    || m.get("refusal").is_some_and(|v| !v.is_null());
                let c = content(i, m.get("content"), &["text", "refusal"], !has_other)?;
                out.prompt_tokens += words(&c.text);
                let mut ids = Vec::new();
                for (k, call) in calls.into_iter().enumerate() {
                    let cp = format!("messages[{i}].tool_calls[{k}]");
                    let id = call
                        .get("id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| missing(&format!("{cp}.id")))?;
                    match call.get("type").and_then(Value::as_str) {
                        None => return Err(missing(&format!("{cp}.type"))),
                        Some("function") => {}
                        Some(other) => {
                            return Err(invalid_value(&format!("{cp}.type"), other, &["function"]))
                        }
                    }
                    let f = call
                        .get("function")
                        .ok_or_else(|| missing(&format!("{cp}.function")))?;
                    if f.get("name").and_then(Value::as_str).is_none() {
                        return Err(missing(&format!("{cp}.function.name")));
                    }
                    match f.get("arguments") {
                        Some(Value::String(_)) => {}
                        None | Some(Value::Null) => {
                            return Err(missing(&format!("{cp}.function.arguments")))
                        }
                        Some(v) => {
                            return Err(wrong_type(
                                &format!("{cp}.function.arguments"),
                                "a string",
                                v,
                            ))
                        }
                    }
                    ids.push(id.to_owned());
                }
                open = (!ids.is_empty()).then(|| {
                    let n = ids.len();
                    (i, ids, vec![false; n])
                });
            }
            "tool" => {
                let c = content(i, m.get("content"), &["text"], true)?;
                let id = match m.get("tool_call_id") {
                    None | Some(Value::Null) => {
                        return Err(missing(&format!("messages[{i}].tool_call_id")))
                    }
                    Some(Value::String(s)) => s,
                    Some(v) => {
                        return Err(wrong_type(
                            &format!("messages[{i}].tool_call_id"),
                            "a string",
                            v,
                        ))
                    }
                };
                let Some((_, ids, done)) = open.as_mut() else {
                    return Err(invalid(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                        Some(&format!("messages.[{i}].role")),
                        None,
                    ));
                };
                let Some(k) = ids.iter().position(|x| x == id) else {
                    return Err(invalid(
                        format!("Invalid parameter: 'tool_call_id' of '{id}' not found in 'tool_calls' of previous message."),
                        Some(&format!("messages.[{i}].tool_call_id")),
                        None,
                    ));
                };
                done[k] = true;
                out.prompt_tokens += words(&c.text);
                tool_results.push(c.text);
            }
            "function" => {
                unanswered(&open)?;
                open = None;
                if m.get("name").and_then(Value::as_str).is_none() {
                    return Err(missing(&format!("messages[{i}].name")));
                }
                let c = content(i, m.get("content"), &["text"], true)?;
                out.prompt_tokens += words(&c.text);
            }
            other => return Err(invalid_value(&format!("messages[{i}].role"), other, &ROLES)),
        }
    }
    unanswered(&open)?;
    if !tool_results.is_empty() {
        out.tool_result = Some(tool_results.join("; "));
    }
    Ok(out)
}

fn finish_reason(f: &Finish) -> &'static str {
    match f {
        Finish::Stop | Finish::StopSequence(_) => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
    }
}

fn usage(prompt: u64, a: &Answer) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": a.output_tokens,
        "total_tokens": prompt + a.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": a.thinking_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

fn call_id(ctx: &Ctx<'_>, k: usize) -> String {
    format!("call_demo_{}_{k}", ctx.seq)
}

fn complete_reply(ctx: &Ctx<'_>, opts: &Opts<'_>, a: &Answer, prompt: u64) -> Reply {
    let mut message = json!({
        "role": "assistant",
        "content": if a.calls.is_empty() { Value::from(a.text.as_str()) } else { Value::Null },
        "refusal": null,
        "annotations": [],
    });
    if let (Some(r), true) = (&a.thinking, opts.show_reasoning) {
        message["reasoning"] = Value::from(r.as_str());
    }
    if !a.calls.is_empty() {
        message["tool_calls"] = a
            .calls
            .iter()
            .enumerate()
            .map(|(k, c)| {
                json!({"id": call_id(ctx, k), "type": "function",
                       "function": {"name": c.name, "arguments": c.args_json()}})
            })
            .collect();
    }
    let choices: Vec<Value> = (0..opts.n)
        .map(|i| {
            json!({"index": i, "message": message, "logprobs": null,
                   "finish_reason": finish_reason(&a.finish)})
        })
        .collect();
    Reply::json(
        StatusCode::OK,
        json!({
            "id": format!("chatcmpl-demo{}", ctx.seq),
            "object": "chat.completion",
            "created": crate::openai::unix_now(),
            "model": opts.model,
            "choices": choices,
            "usage": usage(prompt, a),
            "service_tier": "default",
            "system_fingerprint": "fp_demo",
        }),
    )
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn stream_reply(ctx: &Ctx<'_>, opts: &Opts<'_>, a: &Answer, prompt: u64) -> Reply {
    let id = format!("chatcmpl-demo{}", ctx.seq);
    let created = crate::openai::unix_now();
    let chunk = |index: u64, delta: Value, finish: Option<&str>| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created,
            "model": opts.model, "service_tier": "default", "system_fingerprint": "fp_demo",
            "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if opts.include_usage {
            c["usage"] = Value::Null;
        }
        sse(&c)
    };
    let per = ctx.words_per_chunk();
    let mut frames = Vec::new();
    for i in 0..opts.n {
        if a.calls.is_empty() {
            frames.push(chunk(
                i,
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ));
        }
        if let (Some(r), true) = (&a.thinking, opts.show_reasoning) {
            for piece in chunks(r, per) {
                frames.push(chunk(i, json!({"reasoning": piece}), None));
            }
        }
        for piece in chunks(&a.text, per) {
            frames.push(chunk(i, json!({"content": piece}), None));
        }
        for (k, c) in a.calls.iter().enumerate() {
            let mut head = json!({"tool_calls": [{"index": k, "id": call_id(ctx, k), "type": "function",
                                   "function": {"name": c.name, "arguments": ""}}]});
            if k == 0 {
                head["role"] = Value::from("assistant");
                head["content"] = Value::Null;
                head["refusal"] = Value::Null;
            }
            frames.push(chunk(i, head, None));
            for frag in fragments(&c.args_json(), 8) {
                frames.push(chunk(
                    i,
                    json!({"tool_calls": [{"index": k, "function": {"arguments": frag}}]}),
                    None,
                ));
            }
        }
        frames.push(chunk(i, json!({}), Some(finish_reason(&a.finish))));
    }
    if opts.include_usage {
        frames.push(sse(&json!({
            "id": id, "object": "chat.completion.chunk", "created": created,
            "model": opts.model, "service_tier": "default", "system_fingerprint": "fp_demo",
            "choices": [], "usage": usage(prompt, a),
        })));
    }
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Reply::Stream(StreamPlan {
        content_type: "text/event-stream; charset=utf-8",
        headers: Vec::new(),
        frames,
        end_frames: 1,
        malformed: Bytes::from(format!(
            "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"brok\n\n"
        )),
    })
}
