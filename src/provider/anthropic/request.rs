//! Requests: a [`ChatRequest`] becomes a Messages API body (see the mapping table in the
//! module docs of [`super`]).

use std::borrow::Cow;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method};
use serde::Serialize;
use serde_json::Value;

use super::messages::{convert_messages, WireMessage, WireSystem};
use super::JSON_TOOL;
use crate::client::UpstreamBody;
use crate::openai::{ChatRequest, ResponseFormat, Tool, ToolChoice};
use crate::provider::claude::{fit_thinking, output_limit, thinking_budget};
use crate::provider::{stop_sequences, unsupported, EncodeContext};
use crate::Error;

/// The `anthropic-version` header value.
const API_VERSION: &str = "2023-06-01";

/// Builds the upstream request: `POST {base}/v1/messages` with the version and key headers.
pub(super) fn encode(
    req: &ChatRequest,
    ctx: &EncodeContext<'_>,
) -> Result<http::Request<UpstreamBody>, Error> {
    refuse_unsupported(req)?;
    let messages = req.parse_messages()?;
    let tools = req.parse_tools()?;
    let tool_choice = req.parse_tool_choice()?;
    let response_format = req.parse_response_format()?;
    let (max_tokens, thinking) = output_plan(req, ctx)?;
    let (system, messages) = convert_messages(&messages)?;
    let (tools, tool_choice) = convert_tools(
        req,
        &tools,
        tool_choice.as_ref(),
        response_format.as_ref(),
        thinking.is_some(),
    )?;

    let thinking_on = thinking.is_some();
    let wire = WireRequest {
        model: ctx.upstream_model,
        max_tokens,
        system,
        messages,
        stop_sequences: req.stop.as_ref().and_then(stop_sequences),
        temperature: req
            .temperature
            .filter(|_| !thinking_on)
            .map(|t| t.clamp(0.0, 1.0)),
        top_p: req.top_p.filter(|p| !thinking_on || *p >= 0.95),
        top_k: req.top_k.filter(|_| !thinking_on),
        stream: req.is_stream().then_some(true),
        tools,
        tool_choice,
        thinking,
        metadata: req.user.as_deref().map(|user_id| WireMetadata { user_id }),
    };
    let body = serde_json::to_vec(&wire).map_err(|e| {
        Error::upstream("could not encode the upstream request")
            .with_source(Box::new(e) as crate::BoxError)
    })?;

    let mut b = http::Request::builder()
        .method(Method::POST)
        .uri(ctx.provider.endpoint("/v1/messages")?)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("anthropic-version", HeaderValue::from_static(API_VERSION));
    if let Some(key) = &ctx.provider.api_key {
        b = b.header("x-api-key", key.header_value()?);
    }
    b.body(UpstreamBody::from(body))
        .map_err(|_| Error::upstream("could not build the upstream request"))
}

/// The client's own Messages body, `model` replaced; see the module docs of [`super`].
pub(super) fn encode_native(
    native: &crate::ext::NativeRequest,
    ctx: &EncodeContext<'_>,
) -> Option<Result<http::Request<UpstreamBody>, Error>> {
    if native.format != crate::ext::NativeFormat::AnthropicMessages
        || crate::macros::find_bytes!(&native.body, b"switchboard.v1:").is_some()
    {
        return None;
    }
    let body = crate::openai::replace_member_str(&native.body, "model", ctx.upstream_model)?;
    let version = native
        .headers
        .get("anthropic-version")
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(API_VERSION));
    let build = || {
        let mut b = http::Request::builder()
            .method(Method::POST)
            .uri(ctx.provider.endpoint("/v1/messages")?)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("anthropic-version", version);
        for beta in native.headers.get_all("anthropic-beta") {
            b = b.header("anthropic-beta", beta.clone());
        }
        if let Some(key) = &ctx.provider.api_key {
            b = b.header("x-api-key", key.header_value()?);
        }
        b.body(UpstreamBody::from(body))
            .map_err(|_| Error::upstream("could not build the upstream request"))
    };
    Some(build())
}

fn refuse_unsupported(req: &ChatRequest) -> Result<(), Error> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(unsupported(
            "n",
            "this model returns a single choice; `n` greater than 1 is not supported",
        ));
    }
    if req.logprobs == Some(true) {
        return Err(unsupported(
            "logprobs",
            "this model does not return log probabilities",
        ));
    }
    if req.top_logprobs.is_some_and(|k| k > 0) {
        return Err(unsupported(
            "top_logprobs",
            "this model does not return log probabilities",
        ));
    }
    Ok(())
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<WireSystem<'a>>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<WireTool<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<WireThinking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<WireMetadata<'a>>,
}

#[derive(Serialize)]
struct WireMetadata<'a> {
    user_id: &'a str,
}

#[derive(Debug, Serialize)]
struct WireThinking {
    #[serde(rename = "type")]
    kind: &'static str,
    budget_tokens: u32,
}

#[derive(Serialize)]
struct WireTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Cow<'a, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<&'a Value>,
}

#[derive(Debug, Serialize)]
struct WireToolChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<bool>,
}

/// `max_tokens` and the thinking config.
fn output_plan(
    req: &ChatRequest,
    ctx: &EncodeContext<'_>,
) -> Result<(u32, Option<WireThinking>), Error> {
    let base = output_limit(req, ctx);
    let Some(budget) = thinking_budget(req, base)? else {
        return Ok((base, None));
    };
    let (max_tokens, budget) = fit_thinking(budget, base, ctx.max_output)?;
    Ok((
        max_tokens,
        Some(WireThinking {
            kind: "enabled",
            budget_tokens: budget,
        }),
    ))
}

/// Tools, tool choice and the `response_format` emulation.
fn convert_tools<'a>(
    req: &ChatRequest,
    tools: &'a [Tool],
    choice: Option<&'a ToolChoice>,
    format: Option<&'a ResponseFormat>,
    thinking: bool,
) -> Result<(Option<Vec<WireTool<'a>>>, Option<WireToolChoice<'a>>), Error> {
    let mut wire = Vec::with_capacity(tools.len());
    for t in tools {
        if t.kind != "function" {
            return Err(unsupported(
                "tools",
                "this model only supports `function` tools",
            ));
        }
        if t.function.name == JSON_TOOL {
            return Err(Error::invalid_request(format!(
                "the tool name `{JSON_TOOL}` is reserved by the gateway"
            ))
            .with_param("tools"));
        }
        wire.push(WireTool {
            name: &t.function.name,
            description: t.function.description.as_deref(),
            input_schema: t
                .function
                .parameters
                .as_ref()
                .map_or_else(|| Cow::Owned(empty_schema()), Cow::Borrowed),
            cache_control: t.cache_control.as_ref(),
        });
    }

    let json_schema: Option<Cow<'a, Value>> = match format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(Cow::Owned(serde_json::json!({"type": "object"}))),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            let schema = json_schema.get("schema").ok_or_else(|| {
                Error::invalid_request("`response_format.json_schema.schema` is required")
                    .with_param("response_format")
            })?;
            if schema.get("type").and_then(Value::as_str) != Some("object") {
                return Err(unsupported(
                    "response_format",
                    "this model only supports JSON schemas whose root is an object",
                ));
            }
            Some(Cow::Borrowed(schema))
        }
    };
    if let Some(schema) = json_schema {
        if !wire.is_empty() {
            return Err(unsupported(
                "response_format",
                "this model cannot combine `response_format` with `tools`",
            ));
        }
        if thinking {
            return Err(unsupported(
                "response_format",
                "this model cannot combine `response_format` with reasoning",
            ));
        }
        let description = match format {
            Some(ResponseFormat::JsonSchema { json_schema }) => {
                json_schema.get("description").and_then(Value::as_str)
            }
            _ => None,
        };
        let tool = WireTool {
            name: JSON_TOOL,
            description: Some(description.unwrap_or("Give the final answer as JSON.")),
            input_schema: schema,
            cache_control: None,
        };
        let choice = WireToolChoice {
            kind: "tool",
            name: Some(JSON_TOOL),
            disable_parallel_tool_use: None,
        };
        return Ok((Some(vec![tool]), Some(choice)));
    }

    if wire.is_empty() {
        return Ok((None, None));
    }
    let mut choice = match choice {
        None => None,
        Some(ToolChoice::Auto) => Some(("auto", None)),
        Some(ToolChoice::None) => Some(("none", None)),
        Some(ToolChoice::Required) => Some(("any", None)),
        Some(ToolChoice::Function(name)) => Some(("tool", Some(name.as_str()))),
    }
    .map(|(kind, name)| WireToolChoice {
        kind,
        name,
        disable_parallel_tool_use: None,
    });
    if thinking
        && choice
            .as_ref()
            .is_some_and(|c| matches!(c.kind, "any" | "tool"))
    {
        return Err(unsupported(
            "tool_choice",
            "this model cannot force tool use while reasoning; use `auto` or turn reasoning off",
        ));
    }
    if req.parallel_tool_calls == Some(false) {
        match &mut choice {
            Some(c) if c.kind == "none" => {}
            Some(c) => c.disable_parallel_tool_use = Some(true),
            None => {
                choice = Some(WireToolChoice {
                    kind: "auto",
                    name: None,
                    disable_parallel_tool_use: Some(true),
                });
            }
        }
    }
    Ok((Some(wire), choice))
}

fn empty_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}
