//! Encoding: a chat request → the `generateContent` URL, headers and body (generation config,
//! tools and tool choice, thinking; see the module docs, "Parameters").

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method};
use serde::Serialize;
use serde_json::Value;

use super::contents::{Content, Contents, Part};
use super::error::invalid;
use super::schema::{clean_schema, function_parameters, InlineBudget};
use crate::client::UpstreamBody;
use crate::openai::{ChatRequest, Message, ResponseFormat, Tool, ToolChoice};
use crate::provider::{join_url, stop_sequences, unsupported, EncodeContext};
use crate::Error;

/// The upstream request: `:generateContent` (or `:streamGenerateContent?alt=sse`) on the
/// model's path, the API key header and the JSON body.
pub(super) fn encode(
    req: &ChatRequest,
    ctx: &EncodeContext<'_>,
) -> Result<http::Request<UpstreamBody>, Error> {
    let method = if req.is_stream() {
        ":streamGenerateContent?alt=sse"
    } else {
        ":generateContent"
    };
    let path = format!("/v1beta/{}{method}", model_path(ctx.upstream_model)?);

    let messages = req.parse_messages()?;
    let tools = req.parse_tools()?;
    let body = build_request(req, &messages, &tools, ctx.upstream_model)?;
    let json = serde_json::to_vec(&body).map_err(|e| {
        Error::invalid_request("the request could not be encoded for Gemini")
            .with_source(Box::new(e) as crate::BoxError)
    })?;
    let mut b = http::Request::builder()
        .method(Method::POST)
        .uri(join_url(&ctx.provider.base_url, &path)?)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(key) = &ctx.provider.api_key {
        b = b.header("x-goog-api-key", key.header_value()?);
    }
    b.body(UpstreamBody::from(json))
        .map_err(|_| Error::upstream("could not build the upstream request"))
}

/// `models/{name}` or `tunedModels/{name}`: the name (after a leading `models/` or
/// `tunedModels/`) percent-encoded as one path segment, so that no model name can reach
/// another path, a query or a fragment.
pub(super) fn model_path(upstream_model: &str) -> Result<String, Error> {
    let (collection, name) = match upstream_model.strip_prefix("tunedModels/") {
        Some(name) => ("tunedModels/", name),
        None => (
            "models/",
            upstream_model
                .strip_prefix("models/")
                .unwrap_or(upstream_model),
        ),
    };
    if matches!(name, "" | "." | "..") {
        return Err(invalid(
            "model",
            "the upstream model name is empty, `.` or `..`",
        ));
    }
    let mut path = String::with_capacity(collection.len() + name.len());
    path.push_str(collection);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            path.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            path.push('%');
            path.push(char::from(HEX[usize::from(b >> 4)]));
            path.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    Ok(path)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContentRequest<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<SystemInstruction<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolDecl<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    generation_config: GenerationConfig<'a>,
}

#[derive(Debug, Serialize)]
struct SystemInstruction<'a> {
    parts: Vec<Part<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolDecl<'a> {
    function_declarations: Vec<FunctionDecl<'a>>,
}

#[derive(Debug, Serialize)]
struct FunctionDecl<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    function_calling_config: FunctionCallingConfig<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<[&'a str; 1]>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<ThinkingConfig>,
}

impl GenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_output_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.stop_sequences.is_none()
            && self.candidate_count.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_mime_type.is_none()
            && self.response_schema.is_none()
            && self.response_logprobs.is_none()
            && self.logprobs.is_none()
            && self.thinking_config.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct ThinkingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_budget: Option<i64>,
    include_thoughts: bool,
}

fn build_request<'a>(
    req: &'a ChatRequest,
    messages: &'a [Message],
    tools: &'a [Tool],
    upstream_model: &str,
) -> Result<GenerateContentRequest<'a>, Error> {
    refuse_extras(req)?;
    let mut b = Contents::default();
    for m in messages {
        b.message(m)?;
    }
    if b.contents.is_empty() {
        return Err(invalid(
            "messages",
            "Gemini needs at least one user, assistant or tool message besides the system prompt",
        ));
    }
    b.sign_current_turn();

    let response_format = req.parse_response_format()?;
    let response_schema = match &response_format {
        Some(ResponseFormat::JsonSchema { json_schema }) => json_schema.get("schema"),
        _ => None,
    };
    let mut budget = InlineBudget::for_schemas(
        tools
            .iter()
            .filter_map(|t| t.function.parameters.as_ref())
            .chain(response_schema),
    );

    let mut decls = Vec::with_capacity(tools.len());
    for t in tools {
        if t.kind != "function" {
            return Err(unsupported(
                "tools",
                "Gemini only supports tools of type `function`",
            ));
        }
        let parameters = match &t.function.parameters {
            Some(p) => function_parameters(p, &mut budget)?,
            None => None,
        };
        decls.push(FunctionDecl {
            name: &t.function.name,
            description: t.function.description.as_deref(),
            parameters,
        });
    }

    let tool_config = match req.parse_tool_choice()? {
        _ if decls.is_empty() => None,
        None => None,
        Some(ToolChoice::Auto) => Some(("AUTO", None)),
        Some(ToolChoice::None) => Some(("NONE", None)),
        Some(ToolChoice::Required) => Some(("ANY", None)),
        Some(ToolChoice::Function(name)) => {
            let Some(d) = decls.iter().find(|d| d.name == name) else {
                return Err(invalid(
                    "tool_choice",
                    format!("`tool_choice` names `{name}`, which is not among the tools"),
                ));
            };
            Some(("ANY", Some([d.name])))
        }
    }
    .map(|(mode, names)| ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode,
            allowed_function_names: names,
        },
    });

    let mut generation_config = generation_config(req, upstream_model)?;
    match response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            generation_config.response_mime_type = Some("application/json");
        }
        Some(ResponseFormat::JsonSchema { .. }) => {
            generation_config.response_mime_type = Some("application/json");
            if let Some(schema) = response_schema {
                generation_config.response_schema =
                    Some(clean_schema(schema, "response_format", &mut budget)?);
            }
        }
    }
    let system_instruction =
        (!b.system.is_empty()).then_some(SystemInstruction { parts: b.system });
    Ok(GenerateContentRequest {
        contents: b.contents,
        system_instruction,
        tools: if decls.is_empty() {
            Vec::new()
        } else {
            vec![ToolDecl {
                function_declarations: decls,
            }]
        },
        tool_config,
        generation_config,
    })
}

fn refuse_extras(req: &ChatRequest) -> Result<(), Error> {
    for (k, v) in &req.extra {
        let set = || match serde_json::from_str::<Value>(v.get()) {
            Ok(Value::Null) => false,
            Ok(Value::Object(o)) => !o.is_empty(),
            _ => true,
        };
        match k.as_str() {
            "logit_bias" if set() => {
                return Err(unsupported(
                    "logit_bias",
                    "Gemini does not support `logit_bias`",
                ))
            }
            "audio" if set() => {
                return Err(unsupported(
                    "audio",
                    "Gemini does not produce audio output here",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn generation_config<'a>(
    req: &'a ChatRequest,
    upstream_model: &str,
) -> Result<GenerationConfig<'a>, Error> {
    let mut g = GenerationConfig {
        max_output_tokens: req.max_output_tokens(),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        stop_sequences: req.stop.as_ref().and_then(stop_sequences),
        candidate_count: req.n.filter(|&n| n > 1),
        seed: req.seed.map(fold_seed),
        ..GenerationConfig::default()
    };
    let model = upstream_model
        .strip_prefix("models/")
        .unwrap_or(upstream_model);
    if model.starts_with("gemini-2.0-") {
        g.presence_penalty = req.presence_penalty.filter(|&p| p != 0.0);
        g.frequency_penalty = req.frequency_penalty.filter(|&p| p != 0.0);
    }
    if req.logprobs == Some(true) {
        g.response_logprobs = Some(true);
        g.logprobs = req.top_logprobs;
    }
    g.thinking_config = thinking_config(req)?;
    Ok(g)
}

/// Gemini's seed is an `int32`; larger client seeds are folded in deterministically.
fn fold_seed(seed: i64) -> i32 {
    i32::try_from(seed).unwrap_or_else(|_| {
        let folded = (seed ^ (seed >> 32)) & 0x7fff_ffff;
        i32::try_from(folded).unwrap_or(i32::MAX)
    })
}

fn thinking_config(req: &ChatRequest) -> Result<Option<ThinkingConfig>, Error> {
    let r = req.reasoning.as_ref();
    if r.is_none() && req.reasoning_effort.is_none() {
        return Ok(None);
    }
    let effort = r
        .and_then(|r| r.effort.as_deref())
        .or(req.reasoning_effort.as_deref());
    let enabled = r.and_then(|r| r.enabled);
    let exclude = r.and_then(|r| r.exclude).unwrap_or(false);
    let budget = if enabled == Some(false) {
        Some(0)
    } else if let Some(max) = r.and_then(|r| r.max_tokens) {
        Some(i64::from(max))
    } else if let Some(e) = effort {
        Some(match e {
            "none" => 0,
            "minimal" => 512,
            "low" => 2048,
            "medium" => 8192,
            "high" | "xhigh" => 24576,
            _ => {
                return Err(invalid(
                    "reasoning",
                    "reasoning effort must be one of none, minimal, low, medium, high, xhigh",
                ))
            }
        })
    } else if enabled == Some(true) {
        Some(-1)
    } else {
        None
    };
    Ok(Some(ThinkingConfig {
        thinking_budget: budget,
        include_thoughts: !exclude && budget != Some(0),
    }))
}
