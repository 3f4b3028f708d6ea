//! The Google Gemini codec: `POST {base}/v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, authenticated with the `x-goog-api-key` header.
//!
//! `base` is the bare origin (`https://generativelanguage.googleapis.com`). The upstream model
//! is [`EncodeContext::upstream_model`] with a leading `models/` removed; a name with its own
//! collection (`tunedModels/…`) is used as the path as is.
//!
//! # Messages
//!
//! - `system` and `developer` messages (wherever they appear, in order) become
//!   `systemInstruction: {parts: [{text}]}` (text only).
//! - `user` → role `user`, `assistant` → role `model`; consecutive turns of the same role are
//!   merged into one `Content` (Gemini wants the roles to alternate).
//! - Parts: text → `{text}`; `data:` URLs (images, `input_audio`, `file.file_data`) →
//!   `inlineData {mimeType, data}` (the base64 payload is passed on without decoding; a data
//!   URL that is not base64 is refused with 400); `http(s)://` and `gs://` image URLs →
//!   `fileData {mimeType, fileUri}` with the media type guessed from the extension (left out
//!   when unknown). Google documents that the API fetches public and signed HTTPS URLs itself
//!   ("External URLs" in *File input methods*, January 2026), so they are not refused.
//!   `file.file_id` (an OpenAI file id) is refused with 400.
//! - Assistant `tool_calls` → `functionCall {name, args}` parts (`arguments` must be a JSON
//!   object or empty, else 400). Call ids are not sent: Gemini pairs calls and responses by
//!   name and order.
//! - `role: tool` messages → `functionResponse {name, response}` parts in a `user` turn. The
//!   name is the function of the earlier call with that `tool_call_id` (an unknown id is a
//!   400); `response` is the tool content if it is a JSON object, else `{"content": <text>}`.
//!   Legacy `role: function` messages use their `name`.
//!
//! # Thought signatures
//!
//! Response parts may carry a `thoughtSignature`; each becomes a `reasoning_details` entry in
//! OpenRouter's format, `{"type": "reasoning.encrypted", "data": <signature>, "id": <tool call
//! id or null>, "format": "google-gemini-v1", "index": n}`, and thought text (`thought: true`
//! parts) becomes `message.reasoning` / `delta.reasoning` plus a `reasoning.text` entry. When a
//! client sends `reasoning_details` back on an assistant message, each `google-gemini-v1` (or
//! format-less) encrypted entry is put back where Google requires it: on the `functionCall`
//! part of the call it names, else on the first `functionCall` part of that turn, else on the
//! turn's last part (Google: "pass it back exactly as received … in the part it was
//! received"; parallel calls carry one signature, on the first call). Entries of other
//! formats (another provider's signatures) are never sent to Gemini, which rejects them.
//!
//! Gemini 3 refuses (400) a conversation whose current turn (the model steps after the last
//! user message with ordinary content) has a function call without a signature, which happens
//! when the history came from another model or a client dropped `reasoning_details`. For that
//! case the first `functionCall` of each such step gets Google's documented placeholder
//! signature `skip_thought_signature_validator`; earlier turns are not validated and are left
//! alone.
//!
//! # Parameters
//!
//! | parameter | handling |
//! | --- | --- |
//! | `max_completion_tokens` / `max_tokens` | mapped: `generationConfig.maxOutputTokens` (the first wins) |
//! | `temperature`, `top_p`, `top_k` | mapped: `temperature`, `topP`, `topK` |
//! | `stop` | mapped: `stopSequences` |
//! | `n` | mapped: `candidateCount` when above 1; `n: 1` is dropped |
//! | `seed` | mapped: `seed` (Gemini's seed is 32-bit: larger values are folded into range) |
//! | `presence_penalty`, `frequency_penalty` | mapped for `gemini-2.0-*` models; dropped for others, which answer "Penalty is not enabled" (400) to any non-zero value; zero is always dropped |
//! | `response_format` | mapped: `json_schema` → `responseMimeType: "application/json"` + `responseSchema` (cleaned, below); `json_object` → `responseMimeType` only; `text` → nothing |
//! | `tools` | mapped: `tools: [{functionDeclarations: [{name, description, parameters}]}]`, schemas cleaned; a tool whose type is not `function` is refused (400 `unsupported_parameter`) |
//! | `tool_choice` | mapped: `toolConfig.functionCallingConfig.mode` `AUTO` / `NONE` / `ANY`, a named function → `ANY` + `allowedFunctionNames` |
//! | `reasoning`, `reasoning_effort` | mapped: `generationConfig.thinkingConfig {thinkingBudget, includeThoughts}` (below) |
//! | `logprobs`, `top_logprobs` | mapped: `responseLogprobs`, `logprobs`; `logprobsResult` is decoded into OpenAI's `logprobs.content` (models without log probabilities answer 400) |
//! | `stream` | mapped: the `:streamGenerateContent?alt=sse` method |
//! | `stream_options` | emulated: the usage chunk is always produced (Gemini sends usage on every frame) |
//! | `user`, `parallel_tool_calls`, `metadata`, routing fields, unknown fields | dropped |
//! | `logit_bias` (non-empty), `audio` | refused: 400 `unsupported_parameter` |
//!
//! `reasoning` (OpenRouter) takes precedence over `reasoning_effort`: `enabled: false` or effort
//! `none` → `thinkingBudget: 0`; `max_tokens` → that budget; effort `minimal` / `low` /
//! `medium` / `high` / `xhigh` → 512 / 2048 / 8192 / 24576 / 24576 tokens (inside every
//! 2.5-series range; Gemini 3 accepts budgets for compatibility, while its `thinkingLevel`
//! values differ per model); `enabled: true` alone → `-1` (dynamic). `includeThoughts` is
//! true unless `exclude` is set or thinking is off. Without either parameter no
//! `thinkingConfig` is sent (the model's defaults apply and thoughts are not returned).
//!
//! Schemas (tool parameters, `responseSchema`) are reduced to the OpenAPI subset Gemini's
//! `Schema` accepts: local `$ref`s are inlined from `$defs` / `definitions` (a recursive
//! reference becomes `{"type": "object"}`); `type: [T, "null"]` and `anyOf` / `oneOf` with a
//! `null` branch become `nullable`; `oneOf` becomes `anyOf`; `allOf` is merged; `const`
//! becomes a one-value `enum`; non-string enums, `format`s other than `enum` / `date-time` /
//! `float` / `double` / `int32` / `int64`, and every keyword outside `type`, `format`,
//! `description`, `nullable`, `enum`, `properties`, `required`, `items`, `anyOf`,
//! `propertyOrdering`, `minimum`, `maximum`, `minItems`, `maxItems`, `minLength`,
//! `maxLength`, `minProperties`, `maxProperties` and `pattern` are dropped (`title` becomes
//! the description when there is none). Empty `properties` are removed, and a function whose
//! parameters end up with no properties is declared without `parameters` (Gemini rejects
//! empty `OBJECT`s).
//!
//! # Answers
//!
//! Candidates become choices (index from the candidate), text parts are joined, function calls
//! become `tool_calls` with Gemini's `id` when it sends one, else `call_<completion>_<n>`
//! (unique in the response and across turns). `finishReason` maps as `STOP` → `stop`
//! (`tool_calls` when the candidate called functions), `MAX_TOKENS` → `length`, `SAFETY`,
//! `RECITATION`, `LANGUAGE`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII` and the image variants →
//! `content_filter`, `MALFORMED_FUNCTION_CALL`, `OTHER` and the other failure values →
//! `error`; the native value is kept in `native_finish_reason`. A prompt blocked by
//! `promptFeedback.blockReason` (no candidates) is answered with one empty choice whose
//! finish reason is `content_filter` (native: the block reason), like an output filter,
//! rather than an error: the upstream did answer, and a stream could not report it otherwise.
//!
//! Usage: `prompt_tokens` = `promptTokenCount` + `toolUsePromptTokenCount`,
//! `completion_tokens` = `candidatesTokenCount` + `thoughtsTokenCount`, `reasoning_tokens` =
//! `thoughtsTokenCount`, `cached_tokens` = `cachedContentTokenCount`, `total_tokens` =
//! `totalTokenCount` (or the sum).
//!
//! Streams: every SSE frame is a whole `GenerateContentResponse`; text and thoughts arrive as
//! fragments, function calls whole (one delta each, with id, type, name and full arguments, at
//! a stable index). Gemini has no end marker: the stream is complete once every candidate has
//! sent a `finishReason`; then a usage-only chunk (`choices: []`) is pushed from the last
//! `usageMetadata`. A connection that closes before is an error, as is an `error` object in a
//! frame.
//!
//! # Errors
//!
//! `{"error": {"code", "message", "status", "details"}}` (also as a one-element array): the
//! `status` decides — `INVALID_ARGUMENT`, `FAILED_PRECONDITION`, `OUT_OF_RANGE` → 400 (context
//! overflows get `context_length_exceeded`), `PERMISSION_DENIED`, `UNAUTHENTICATED` and
//! `API_KEY_*` reasons (Gemini reports a bad key as a 400 `INVALID_ARGUMENT`) → 502 with the
//! upstream message hidden, `NOT_FOUND` → 404, `RESOURCE_EXHAUSTED` → 429 (delay from
//! `Retry-After` or `RetryInfo.retryDelay`), `UNAVAILABLE` → 503, `INTERNAL` → 502,
//! `DEADLINE_EXCEEDED` → 504; otherwise the HTTP status decides via
//! [`error_for_status`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{error_for_status, DecodeContext, EncodeContext, ProviderCodec, StreamDecode};
use crate::catalog::join_url;
use crate::client::UpstreamBody;
use crate::openai::sse::SseEvent;
use crate::openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatRequest, Choice, ChunkChoice,
    CompletionTokensDetails, ContentPart, Delta, FinishReason, FunctionCall, FunctionCallDelta,
    Message, MessageContent, PromptTokensDetails, ResponseFormat, Role, Stop, Tool, ToolCall,
    ToolCallDelta, ToolChoice, Usage,
};
use crate::{Error, ErrorKind};

/// The `reasoning_details` format name OpenRouter uses for Gemini.
const DETAIL_FORMAT: &str = "google-gemini-v1";

/// Google's documented placeholder for function calls that have no signature of their own.
const PLACEHOLDER_SIGNATURE: &str = "skip_thought_signature_validator";

/// The Gemini codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gemini;

impl ProviderCodec for Gemini {
    fn encode(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        let model = ctx
            .upstream_model
            .strip_prefix("models/")
            .unwrap_or(ctx.upstream_model);
        if model.is_empty() || model.contains(['?', '#', ' ']) {
            return Err(Error::upstream("the upstream model name is invalid"));
        }
        let collection = if model.contains('/') { "" } else { "models/" };
        let method = if req.is_stream() {
            ":streamGenerateContent?alt=sse"
        } else {
            ":generateContent"
        };
        let path = format!("/v1beta/{collection}{model}{method}");

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

    fn decode(&self, body: &[u8], ctx: &DecodeContext) -> Result<ChatCompletion, Error> {
        let resp: GenerateContentResponse = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                if let Some(err) = parse_error_body(body) {
                    return Err(google_error(None, &HeaderMap::new(), err));
                }
                return Err(
                    Error::upstream("the provider sent an invalid response body")
                        .with_source(Box::new(e) as crate::BoxError),
                );
            }
        };
        if let Some(err) = resp.error {
            return Err(google_error(None, &HeaderMap::new(), err));
        }
        let id = crate::openai::new_completion_id();
        let mut ids = CallIds::new(&id);
        let mut choices = Vec::with_capacity(resp.candidates.len().max(1));
        for cand in resp.candidates {
            let mut state = ChoiceState::new(cand.index);
            let parts = cand.content.map(|c| c.parts).unwrap_or_default();
            let d = state.absorb(parts, &mut ids);
            let has_calls = state.tool_calls > 0;
            let finish = finish_reason(cand.finish_reason.as_deref().unwrap_or(""), has_calls);
            choices.push(Choice {
                index: cand.index,
                message: AssistantMessage {
                    content: non_empty(d.content),
                    tool_calls: (!d.tool_calls.is_empty()).then(|| {
                        d.tool_calls
                            .into_iter()
                            .map(|c| ToolCall {
                                id: c.id,
                                kind: "function".to_owned(),
                                function: FunctionCall {
                                    name: c.name,
                                    arguments: c.arguments,
                                },
                            })
                            .collect()
                    }),
                    reasoning: non_empty(d.reasoning),
                    reasoning_details: (!d.details.is_empty()).then_some(d.details),
                    ..AssistantMessage::default()
                },
                finish_reason: Some(finish),
                native_finish_reason: cand.finish_reason,
                logprobs: cand.logprobs_result.as_ref().map(logprobs_value),
            });
        }
        if choices.is_empty() {
            let Some(reason) = resp.prompt_feedback.and_then(|f| f.block_reason) else {
                return Err(Error::upstream(
                    "the provider answered without candidates or a block reason",
                ));
            };
            choices.push(blocked_choice(reason));
        }
        choices.sort_by_key(|c| c.index);
        Ok(ChatCompletion {
            id,
            object: "chat.completion".to_owned(),
            created: crate::openai::unix_now(),
            model: ctx.model.to_string(),
            choices,
            usage: resp.usage_metadata.as_ref().map(usage),
            system_fingerprint: None,
            service_tier: None,
            provider: Some(ctx.provider.to_string()),
        })
    }

    fn decode_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        match parse_error_body(body) {
            Some(err) => google_error(Some(status), headers, err),
            None => error_for_status(status, headers, None, None),
        }
    }

    fn stream_decoder(&self, ctx: &DecodeContext) -> Box<dyn StreamDecode> {
        Box::new(GeminiStream::new(
            ctx.clone(),
            crate::openai::new_completion_id(),
            crate::openai::unix_now(),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

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
struct Content<'a> {
    role: &'static str,
    parts: Vec<Part<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Part<'a> {
    #[serde(flatten)]
    data: PartData<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought_signature: Option<&'a str>,
}

impl<'a> Part<'a> {
    const fn new(data: PartData<'a>) -> Self {
        Self {
            data,
            thought_signature: None,
        }
    }

    const fn is_call(&self) -> bool {
        matches!(self.data, PartData::FunctionCall { .. })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
enum PartData<'a> {
    Text(&'a str),
    #[serde(rename_all = "camelCase")]
    InlineData {
        mime_type: &'a str,
        data: &'a str,
    },
    #[serde(rename_all = "camelCase")]
    FileData {
        #[serde(skip_serializing_if = "Option::is_none")]
        mime_type: Option<&'static str>,
        file_uri: &'a str,
    },
    FunctionCall {
        name: &'a str,
        args: Value,
    },
    FunctionResponse {
        name: &'a str,
        response: Value,
    },
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

fn unsupported(param: &'static str, message: &'static str) -> Error {
    Error::invalid_request(message)
        .with_code("unsupported_parameter")
        .with_param(param)
}

fn invalid(param: &'static str, message: impl Into<Cow<'static, str>>) -> Error {
    Error::invalid_request(message).with_param(param)
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

    let mut decls = Vec::with_capacity(tools.len());
    for t in tools {
        if t.kind != "function" {
            return Err(unsupported(
                "tools",
                "Gemini only supports tools of type `function`",
            ));
        }
        let parameters = match &t.function.parameters {
            Some(p) => function_parameters(p)?,
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

    let generation_config = generation_config(req, upstream_model)?;
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
        stop_sequences: req
            .stop
            .as_ref()
            .map(|s| match s {
                Stop::One(s) => vec![s.as_str()],
                Stop::Many(v) => v.iter().map(String::as_str).collect(),
            })
            .filter(|v| !v.is_empty()),
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
    match req.parse_response_format()? {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => g.response_mime_type = Some("application/json"),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            g.response_mime_type = Some("application/json");
            if let Some(schema) = json_schema.get("schema") {
                g.response_schema = Some(clean_schema(schema)?);
            }
        }
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

/// Builds `contents` and `systemInstruction`.
#[derive(Default)]
struct Contents<'a> {
    system: Vec<Part<'a>>,
    contents: Vec<Content<'a>>,
    /// `tool_call_id` → function name, for `role: tool` messages.
    calls: HashMap<&'a str, &'a str>,
}

impl<'a> Contents<'a> {
    fn push(&mut self, role: &'static str, parts: Vec<Part<'a>>) {
        if parts.is_empty() {
            return;
        }
        match self.contents.last_mut() {
            Some(c) if c.role == role => c.parts.extend(parts),
            _ => self.contents.push(Content { role, parts }),
        }
    }

    fn message(&mut self, m: &'a Message) -> Result<(), Error> {
        match m.role {
            Role::System | Role::Developer => {
                match &m.content {
                    Some(MessageContent::Text(s)) if !s.is_empty() => {
                        self.system.push(Part::new(PartData::Text(s)));
                    }
                    Some(MessageContent::Parts(ps)) => {
                        for p in ps {
                            if let ContentPart::Text { text, .. } = p {
                                self.system.push(Part::new(PartData::Text(text)));
                            }
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
            Role::User => {
                let parts = user_parts(m)?;
                self.push("user", parts);
                Ok(())
            }
            Role::Assistant => {
                let parts = self.assistant_parts(m)?;
                self.push("model", parts);
                Ok(())
            }
            Role::Tool => {
                let Some(id) = m.tool_call_id.as_deref() else {
                    return Err(invalid(
                        "messages",
                        "a `tool` message needs a `tool_call_id`",
                    ));
                };
                let Some(&name) = self.calls.get(id) else {
                    return Err(invalid(
                        "messages",
                        format!("`tool_call_id` `{id}` does not match a tool call of an earlier assistant message"),
                    ));
                };
                self.push("user", vec![function_response(name, m)]);
                Ok(())
            }
            Role::Function => {
                let Some(name) = m.name.as_deref() else {
                    return Err(invalid("messages", "a `function` message needs a `name`"));
                };
                self.push("user", vec![function_response(name, m)]);
                Ok(())
            }
        }
    }

    fn assistant_parts(&mut self, m: &'a Message) -> Result<Vec<Part<'a>>, Error> {
        let mut parts = Vec::new();
        match &m.content {
            Some(MessageContent::Text(s)) if !s.is_empty() => {
                parts.push(Part::new(PartData::Text(s)));
            }
            Some(MessageContent::Parts(ps)) => {
                for p in ps {
                    match p {
                        ContentPart::Text { text, .. } if !text.is_empty() => {
                            parts.push(Part::new(PartData::Text(text)));
                        }
                        ContentPart::Text { .. } => {}
                        _ => {
                            return Err(invalid(
                                "messages",
                                "assistant messages may only contain text parts",
                            ))
                        }
                    }
                }
            }
            _ => {}
        }
        // (tool call id, part index)
        let mut call_parts: Vec<(&'a str, usize)> = Vec::new();
        for tc in m.tool_calls.iter().flatten() {
            let args = match tc.function.arguments.trim() {
                "" => Value::Object(Map::new()),
                s => match serde_json::from_str::<Value>(s) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => {
                        return Err(invalid(
                            "messages",
                            format!(
                                "the arguments of tool call `{}` are not a JSON object",
                                tc.id
                            ),
                        ))
                    }
                },
            };
            self.calls.insert(&tc.id, &tc.function.name);
            call_parts.push((&tc.id, parts.len()));
            parts.push(Part::new(PartData::FunctionCall {
                name: &tc.function.name,
                args,
            }));
        }
        for (id, sig) in signatures(m) {
            let by_id = id.and_then(|id| call_parts.iter().find(|(c, _)| *c == id));
            let slot = match by_id {
                Some(&(_, i)) => Some(i),
                None => parts
                    .iter()
                    .position(Part::is_call)
                    .filter(|&i| parts[i].thought_signature.is_none())
                    .or_else(|| {
                        parts
                            .iter()
                            .rposition(|p| !p.is_call() && p.thought_signature.is_none())
                    }),
            };
            if let Some(i) = slot {
                if parts[i].thought_signature.is_none() {
                    parts[i].thought_signature = Some(sig);
                }
            }
        }
        Ok(parts)
    }

    /// Gives the first function call of every model step in the current turn a signature
    /// (Gemini 3 refuses unsigned calls there; see the module docs).
    fn sign_current_turn(&mut self) {
        let start = self
            .contents
            .iter()
            .rposition(|c| {
                c.role == "user"
                    && c.parts
                        .iter()
                        .any(|p| !matches!(p.data, PartData::FunctionResponse { .. }))
            })
            .map_or(0, |i| i + 1);
        for c in &mut self.contents[start..] {
            if c.role != "model" {
                continue;
            }
            if let Some(p) = c.parts.iter_mut().find(|p| p.is_call()) {
                if p.thought_signature.is_none() {
                    p.thought_signature = Some(PLACEHOLDER_SIGNATURE);
                }
            }
        }
    }
}

/// The Gemini signatures among an assistant message's `reasoning_details`: `(id, data)`.
fn signatures(m: &Message) -> impl Iterator<Item = (Option<&str>, &str)> {
    m.reasoning_details.iter().flatten().filter_map(|d| {
        let d = d.as_object()?;
        if d.get("type").and_then(Value::as_str) != Some("reasoning.encrypted") {
            return None;
        }
        match d.get("format") {
            None | Some(Value::Null) => {}
            Some(f) if f.as_str() == Some(DETAIL_FORMAT) => {}
            Some(_) => return None,
        }
        let data = d.get("data").and_then(Value::as_str)?;
        (!data.is_empty()).then(|| (d.get("id").and_then(Value::as_str), data))
    })
}

fn function_response<'a>(name: &'a str, m: &Message) -> Part<'a> {
    let text = m.text();
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            let mut o = Map::with_capacity(1);
            o.insert("content".to_owned(), Value::String(text));
            Value::Object(o)
        }
    };
    Part::new(PartData::FunctionResponse { name, response })
}

fn user_parts(m: &Message) -> Result<Vec<Part<'_>>, Error> {
    let mut parts = Vec::new();
    match &m.content {
        Some(MessageContent::Text(s)) if !s.is_empty() => {
            parts.push(Part::new(PartData::Text(s)));
        }
        None | Some(MessageContent::Text(_)) => {}
        Some(MessageContent::Parts(ps)) => {
            for p in ps {
                parts.push(Part::new(content_part(p)?));
            }
        }
    }
    Ok(parts)
}

fn content_part(p: &ContentPart) -> Result<PartData<'_>, Error> {
    match p {
        ContentPart::Text { text, .. } => Ok(PartData::Text(text)),
        ContentPart::ImageUrl { image_url, .. } => url_part(&image_url.url),
        ContentPart::InputAudio { input_audio } => {
            let data = input_audio.get("data").and_then(Value::as_str);
            let format = input_audio.get("format").and_then(Value::as_str);
            let (Some(data), Some(format)) = (data, format) else {
                return Err(invalid(
                    "messages",
                    "`input_audio` needs `data` and `format`",
                ));
            };
            let mime = match format {
                "wav" => "audio/wav",
                "mp3" => "audio/mp3",
                "aac" => "audio/aac",
                "flac" => "audio/flac",
                "ogg" => "audio/ogg",
                "aiff" => "audio/aiff",
                _ => {
                    return Err(unsupported(
                        "messages",
                        "Gemini accepts `input_audio` as wav, mp3, aac, flac, ogg or aiff",
                    ))
                }
            };
            Ok(PartData::InlineData {
                mime_type: mime,
                data,
            })
        }
        ContentPart::File { file } => {
            if let Some(data) = file.get("file_data").and_then(Value::as_str) {
                return url_part(data);
            }
            Err(unsupported(
                "messages",
                "Gemini needs file contents (`file_data`); file ids are not supported",
            ))
        }
    }
}

/// A data URL → `inlineData`; an http(s) or gs URL → `fileData`.
fn url_part(url: &str) -> Result<PartData<'_>, Error> {
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((header, data)) = rest.split_once(',') else {
            return Err(invalid("messages", "malformed data URL"));
        };
        let Some(mime) = header.strip_suffix(";base64") else {
            return Err(invalid(
                "messages",
                "data URLs must be base64-encoded (`data:<type>;base64,…`)",
            ));
        };
        let mime = mime.split(';').next().unwrap_or("");
        if mime.is_empty() {
            return Err(invalid("messages", "data URLs need a media type"));
        }
        return Ok(PartData::InlineData {
            mime_type: mime,
            data,
        });
    }
    let lower_scheme = url
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if lower_scheme.starts_with("https://")
        || lower_scheme.starts_with("http://")
        || lower_scheme.starts_with("gs://")
    {
        return Ok(PartData::FileData {
            mime_type: guess_mime(url),
            file_uri: url,
        });
    }
    Err(invalid(
        "messages",
        "media URLs must be `data:`, `https://`, `http://` or `gs://` URLs",
    ))
}

fn guess_mime(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "wav" => "audio/wav",
        "mp3" => "audio/mp3",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "txt" => "text/plain",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

/// Cleans a tool's `parameters`; `None` when nothing is left to declare.
fn function_parameters(schema: &Value) -> Result<Option<Value>, Error> {
    let mut cleaned = clean_schema(schema)?;
    let Some(o) = cleaned.as_object_mut() else {
        return Ok(None);
    };
    let has_properties = o
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty());
    if !has_properties {
        return Ok(None);
    }
    o.insert("type".to_owned(), Value::String("object".to_owned()));
    Ok(Some(cleaned))
}

/// Reduces a JSON Schema to the subset Gemini's `Schema` accepts (see the module docs).
fn clean_schema(schema: &Value) -> Result<Value, Error> {
    let mut c = Cleaner {
        root: schema,
        refs: Vec::new(),
        budget: 20_000,
    };
    c.clean(schema)
}

struct Cleaner<'s> {
    root: &'s Value,
    /// The `$ref`s being expanded (cycle detection).
    refs: Vec<&'s str>,
    /// Nodes left to produce (bounds `$ref` expansion).
    budget: usize,
}

impl<'s> Cleaner<'s> {
    fn resolve(&self, r: &str) -> Option<&'s Value> {
        let name = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"))?;
        let defs = self
            .root
            .get("$defs")
            .or_else(|| self.root.get("definitions"))?;
        defs.get(name)
    }

    fn clean(&mut self, v: &'s Value) -> Result<Value, Error> {
        self.budget = self.budget.checked_sub(1).ok_or_else(|| {
            invalid(
                "tools",
                "a JSON schema is too large once its `$ref`s are expanded",
            )
        })?;
        let Some(s) = v.as_object() else {
            return Ok(Value::Object(Map::new()));
        };
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            if self.refs.contains(&r) || self.refs.len() >= 32 {
                let mut o = Map::new();
                o.insert("type".to_owned(), "object".into());
                return Ok(Value::Object(o));
            }
            if let Some(target) = self.resolve(r) {
                self.refs.push(r);
                let mut out = self.clean(target)?;
                self.refs.pop();
                if let (Some(o), Some(d)) = (
                    out.as_object_mut(),
                    s.get("description").and_then(Value::as_str),
                ) {
                    o.insert("description".to_owned(), d.into());
                }
                return Ok(out);
            }
        }

        let mut out = Map::new();
        let mut nullable = false;
        match s.get("type") {
            Some(Value::String(t)) if t == "null" => nullable = true,
            Some(Value::String(t)) => {
                out.insert("type".to_owned(), t.clone().into());
            }
            Some(Value::Array(ts)) => {
                let named: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
                nullable |= named.contains(&"null");
                let rest: Vec<&str> = named.into_iter().filter(|t| *t != "null").collect();
                match rest.as_slice() {
                    [] => {}
                    [one] => {
                        out.insert("type".to_owned(), (*one).into());
                    }
                    many => {
                        let any = many
                            .iter()
                            .map(|t| {
                                let mut o = Map::new();
                                o.insert("type".to_owned(), (*t).into());
                                Value::Object(o)
                            })
                            .collect();
                        out.insert("anyOf".to_owned(), Value::Array(any));
                    }
                }
            }
            _ => {}
        }

        for (k, val) in s {
            // Keywords copied as they are when their value has the right shape.
            let copy = match k.as_str() {
                "description" | "pattern" => val.is_string(),
                "minimum" | "maximum" => val.is_number(),
                "minItems" | "maxItems" | "minLength" | "maxLength" | "minProperties"
                | "maxProperties" => val.is_u64(),
                "propertyOrdering" => val
                    .as_array()
                    .is_some_and(|a| a.iter().all(Value::is_string)),
                _ => false,
            };
            if copy {
                out.insert(k.clone(), val.clone());
                continue;
            }
            match k.as_str() {
                "nullable" => nullable |= val.as_bool() == Some(true),
                "properties" => {
                    if let Some(props) = val.as_object() {
                        let mut o = Map::with_capacity(props.len());
                        for (name, p) in props {
                            o.insert(name.clone(), self.clean(p)?);
                        }
                        if !o.is_empty() {
                            out.insert(k.clone(), Value::Object(o));
                        }
                    }
                }
                "items" => {
                    let item = match val {
                        Value::Array(a) => a.first(),
                        other => Some(other),
                    };
                    if let Some(item) = item {
                        out.insert(k.clone(), self.clean(item)?);
                    }
                }
                "enum" => {
                    if let Some(a) = val.as_array() {
                        nullable |= a.iter().any(Value::is_null);
                        let values: Vec<&Value> = a.iter().filter(|x| !x.is_null()).collect();
                        if !values.is_empty() && values.iter().all(|x| x.is_string()) {
                            out.insert(
                                k.clone(),
                                Value::Array(values.into_iter().cloned().collect()),
                            );
                        }
                    }
                }
                "const" => {
                    if let Some(c) = val.as_str() {
                        out.insert("enum".to_owned(), Value::Array(vec![c.into()]));
                    }
                }
                _ => {}
            }
        }

        if !out.contains_key("description") {
            if let Some(t) = s.get("title").and_then(Value::as_str) {
                out.insert("description".to_owned(), t.into());
            }
        }

        // anyOf / oneOf: null branches become `nullable`; a single branch is inlined.
        let mut branches = Vec::new();
        for key in ["anyOf", "oneOf"] {
            for b in s.get(key).and_then(Value::as_array).into_iter().flatten() {
                if b.get("type").and_then(Value::as_str) == Some("null") {
                    nullable = true;
                    continue;
                }
                branches.push(self.clean(b)?);
            }
        }
        if branches.len() == 1 {
            if let Some(Value::Object(b)) = branches.pop() {
                merge_missing(&mut out, b);
            }
        } else if !branches.is_empty() {
            out.insert("anyOf".to_owned(), Value::Array(branches));
        }

        for b in s
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Value::Object(b) = self.clean(b)? {
                merge_missing(&mut out, b);
            }
        }

        if let Some(f) = s.get("format").and_then(Value::as_str) {
            let ok = match out.get("type").and_then(Value::as_str) {
                Some("string") => matches!(f, "enum" | "date-time"),
                Some("number") => matches!(f, "float" | "double"),
                Some("integer") => matches!(f, "int32" | "int64"),
                _ => false,
            };
            if ok {
                out.insert("format".to_owned(), f.into());
            }
        }

        if !out.contains_key("type") && !out.contains_key("anyOf") {
            if out.contains_key("properties") {
                out.insert("type".to_owned(), "object".into());
            } else if out.contains_key("items") {
                out.insert("type".to_owned(), "array".into());
            }
        }

        if let Some(req) = s.get("required").and_then(Value::as_array) {
            let props = out.get("properties").and_then(Value::as_object);
            let kept: Vec<Value> = req
                .iter()
                .filter_map(Value::as_str)
                .filter(|n| props.is_some_and(|p| p.contains_key(*n)))
                .map(Value::from)
                .collect();
            if !kept.is_empty() {
                out.insert("required".to_owned(), Value::Array(kept));
            }
        }

        if nullable {
            out.insert("nullable".to_owned(), Value::Bool(true));
        }
        Ok(Value::Object(out))
    }
}

/// Merges `from` into `into`: keys missing in `into` are added; `properties` and `required`
/// are unioned.
fn merge_missing(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (k.as_str(), into.get_mut(&k)) {
            ("properties", Some(Value::Object(mine))) => {
                if let Value::Object(theirs) = v {
                    for (pk, pv) in theirs {
                        mine.entry(pk).or_insert(pv);
                    }
                }
            }
            ("required", Some(Value::Array(mine))) => {
                if let Value::Array(theirs) = v {
                    for r in theirs {
                        if !mine.contains(&r) {
                            mine.push(r);
                        }
                    }
                }
            }
            (_, Some(_)) => {}
            (_, None) => {
                into.insert(k, v);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContentResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    error: Option<GoogleError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<CandidateContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    index: u32,
    #[serde(default)]
    logprobs_result: Option<LogprobsResult>,
}

#[derive(Debug, Deserialize)]
struct CandidateContent {
    #[serde(default)]
    parts: Vec<ResponsePart>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponsePart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default)]
    thought_signature: Option<String>,
    #[serde(default)]
    function_call: Option<ResponseFunctionCall>,
}

#[derive(Debug, Deserialize)]
struct ResponseFunctionCall {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
    #[serde(default)]
    total_token_count: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogprobsResult {
    #[serde(default)]
    top_candidates: Vec<TopCandidates>,
    #[serde(default)]
    chosen_candidates: Vec<LogprobCandidate>,
}

#[derive(Debug, Deserialize)]
struct TopCandidates {
    #[serde(default)]
    candidates: Vec<LogprobCandidate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogprobCandidate {
    #[serde(default)]
    token: String,
    #[serde(default)]
    log_probability: f64,
}

fn usage(u: &UsageMetadata) -> Usage {
    let prompt = u.prompt_token_count + u.tool_use_prompt_token_count;
    let completion = u.candidates_token_count + u.thoughts_token_count;
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: u.total_token_count.unwrap_or(prompt + completion),
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: u.cached_content_token_count,
            ..PromptTokensDetails::default()
        }),
        completion_tokens_details: Some(CompletionTokensDetails {
            reasoning_tokens: u.thoughts_token_count,
            ..CompletionTokensDetails::default()
        }),
        cost: None,
        cost_details: None,
    }
}

fn finish_reason(native: &str, has_calls: bool) -> FinishReason {
    match native {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "LANGUAGE"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => FinishReason::ContentFilter,
        "MALFORMED_FUNCTION_CALL"
        | "UNEXPECTED_TOOL_CALL"
        | "TOO_MANY_TOOL_CALLS"
        | "MISSING_THOUGHT_SIGNATURE"
        | "MALFORMED_RESPONSE"
        | "OTHER"
        | "IMAGE_OTHER"
        | "NO_IMAGE" => FinishReason::Error,
        _ if has_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// The choice answering a prompt Gemini blocked (`promptFeedback.blockReason`).
fn blocked_choice(reason: String) -> Choice {
    Choice {
        index: 0,
        message: AssistantMessage::default(),
        finish_reason: Some(FinishReason::ContentFilter),
        native_finish_reason: Some(reason),
        logprobs: None,
    }
}

/// OpenAI's `logprobs` object from Gemini's `logprobsResult`.
fn logprobs_value(l: &LogprobsResult) -> Value {
    let entry = |c: &LogprobCandidate| {
        let mut o = Map::with_capacity(3);
        o.insert("token".to_owned(), c.token.clone().into());
        o.insert("logprob".to_owned(), c.log_probability.into());
        o.insert(
            "bytes".to_owned(),
            Value::Array(c.token.bytes().map(Value::from).collect()),
        );
        o
    };
    let content = l
        .chosen_candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut o = entry(c);
            let top = l
                .top_candidates
                .get(i)
                .map(|t| {
                    t.candidates
                        .iter()
                        .map(|c| Value::Object(entry(c)))
                        .collect()
                })
                .unwrap_or_default();
            o.insert("top_logprobs".to_owned(), Value::Array(top));
            Value::Object(o)
        })
        .collect();
    let mut o = Map::with_capacity(2);
    o.insert("content".to_owned(), Value::Array(content));
    o.insert("refusal".to_owned(), Value::Null);
    Value::Object(o)
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Tool-call ids for one completion: `call_<completion suffix>_<n>`, deterministic per
/// completion id and unique across a conversation.
#[derive(Debug)]
struct CallIds {
    prefix: String,
    next: u32,
}

impl CallIds {
    fn new(completion_id: &str) -> Self {
        let suffix = completion_id
            .strip_prefix("chatcmpl-")
            .unwrap_or(completion_id);
        Self {
            prefix: format!("call_{suffix}_"),
            next: 0,
        }
    }

    fn next(&mut self) -> String {
        let id = format!("{}{}", self.prefix, self.next);
        self.next += 1;
        id
    }
}

/// One complete function call.
#[derive(Debug)]
struct CallOut {
    index: u32,
    id: String,
    name: String,
    arguments: String,
}

/// What a batch of parts contributes to one choice.
#[derive(Debug, Default)]
struct PartsOut {
    content: String,
    reasoning: String,
    tool_calls: Vec<CallOut>,
    details: Vec<Value>,
}

/// Per-candidate state shared by whole answers and streams.
#[derive(Debug)]
struct ChoiceState {
    index: u32,
    role_sent: bool,
    finished: bool,
    tool_calls: u32,
    details: u32,
    /// Index of the `reasoning.text` detail that thought fragments extend.
    open_text: Option<u32>,
}

impl ChoiceState {
    const fn new(index: u32) -> Self {
        Self {
            index,
            role_sent: false,
            finished: false,
            tool_calls: 0,
            details: 0,
            open_text: None,
        }
    }

    fn absorb(&mut self, parts: Vec<ResponsePart>, ids: &mut CallIds) -> PartsOut {
        let mut out = PartsOut::default();
        for p in parts {
            let mut call_id = None;
            if let Some(fc) = p.function_call {
                self.open_text = None;
                let id = fc
                    .id
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| ids.next());
                let arguments = match fc.args {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(v) => v.to_string(),
                };
                call_id = Some(id.clone());
                out.tool_calls.push(CallOut {
                    index: self.tool_calls,
                    id,
                    name: fc.name,
                    arguments,
                });
                self.tool_calls += 1;
            } else if let Some(text) = p.text {
                if p.thought == Some(true) {
                    if !text.is_empty() {
                        self.thought_text(&text, &mut out.details);
                        out.reasoning.push_str(&text);
                    }
                } else if !text.is_empty() {
                    self.open_text = None;
                    out.content.push_str(&text);
                }
            }
            if let Some(sig) = p.thought_signature.filter(|s| !s.is_empty()) {
                self.open_text = None;
                let mut d = Map::with_capacity(5);
                d.insert("type".to_owned(), "reasoning.encrypted".into());
                d.insert("data".to_owned(), sig.into());
                d.insert("id".to_owned(), call_id.map_or(Value::Null, Value::String));
                d.insert("format".to_owned(), DETAIL_FORMAT.into());
                d.insert("index".to_owned(), self.details.into());
                self.details += 1;
                out.details.push(Value::Object(d));
            }
        }
        out
    }

    fn thought_text(&mut self, text: &str, details: &mut Vec<Value>) {
        if let Some(i) = self.open_text {
            // Extend the entry if it is already part of this batch.
            if let Some(Value::Object(last)) = details.last_mut() {
                if last.get("index").and_then(Value::as_u64) == Some(u64::from(i)) {
                    if let Some(Value::String(t)) = last.get_mut("text") {
                        t.push_str(text);
                        return;
                    }
                }
            }
            details.push(text_detail(text, i));
            return;
        }
        let i = self.details;
        self.details += 1;
        self.open_text = Some(i);
        details.push(text_detail(text, i));
    }
}

fn text_detail(text: &str, index: u32) -> Value {
    let mut d = Map::with_capacity(4);
    d.insert("type".to_owned(), "reasoning.text".into());
    d.insert("text".to_owned(), text.into());
    d.insert("format".to_owned(), DETAIL_FORMAT.into());
    d.insert("index".to_owned(), index.into());
    Value::Object(d)
}

// ---------------------------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------------------------

/// Stream state: one completion id and timestamp, per-candidate state, the last usage.
#[derive(Debug)]
struct GeminiStream {
    ctx: DecodeContext,
    id: String,
    created: u64,
    ids: CallIds,
    choices: Vec<ChoiceState>,
    usage: Option<Usage>,
    done: bool,
}

impl GeminiStream {
    fn new(ctx: DecodeContext, id: String, created: u64) -> Self {
        let ids = CallIds::new(&id);
        Self {
            ctx,
            id,
            created,
            ids,
            choices: Vec::new(),
            usage: None,
            done: false,
        }
    }

    fn chunk(&self) -> ChatCompletionChunk {
        let mut c = ChatCompletionChunk::new(self.id.clone(), &*self.ctx.model, self.created);
        c.provider = Some(self.ctx.provider.to_string());
        c
    }
}

/// The state of candidate `index`, created on first sight.
fn state_of(choices: &mut Vec<ChoiceState>, index: u32) -> &mut ChoiceState {
    let pos = match choices.iter().position(|c| c.index == index) {
        Some(p) => p,
        None => {
            choices.push(ChoiceState::new(index));
            choices.len() - 1
        }
    };
    &mut choices[pos]
}

impl StreamDecode for GeminiStream {
    fn event(&mut self, ev: SseEvent, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        let data = ev.data.trim();
        if self.done || data.is_empty() || data == "[DONE]" {
            return Ok(());
        }
        let frame: GenerateContentResponse = serde_json::from_str(data).map_err(|e| {
            if let Some(err) = parse_error_body(data.as_bytes()) {
                return google_error(None, &HeaderMap::new(), err);
            }
            Error::upstream("the provider sent a malformed stream event")
                .with_source(Box::new(e) as crate::BoxError)
        })?;
        if let Some(err) = frame.error {
            return Err(google_error(None, &HeaderMap::new(), err));
        }
        if let Some(u) = &frame.usage_metadata {
            self.usage = Some(usage(u));
        }

        let mut chunk = self.chunk();
        if frame.candidates.is_empty() {
            if let Some(reason) = frame
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_ref())
            {
                let st = state_of(&mut self.choices, 0);
                st.finished = true;
                let role_sent = std::mem::replace(&mut st.role_sent, true);
                chunk.choices.push(ChunkChoice {
                    index: 0,
                    delta: Delta {
                        role: (!role_sent).then(|| "assistant".to_owned()),
                        ..Delta::default()
                    },
                    finish_reason: Some(FinishReason::ContentFilter),
                    native_finish_reason: Some(reason.clone()),
                    logprobs: None,
                });
            }
        }
        for cand in frame.candidates {
            let parts = cand.content.map(|c| c.parts).unwrap_or_default();
            let st = state_of(&mut self.choices, cand.index);
            let d = st.absorb(parts, &mut self.ids);
            let has_calls = st.tool_calls > 0;
            let finish = cand
                .finish_reason
                .as_deref()
                .map(|r| finish_reason(r, has_calls));
            if finish.is_some() {
                st.finished = true;
            }
            let has_delta = !d.content.is_empty()
                || !d.reasoning.is_empty()
                || !d.tool_calls.is_empty()
                || !d.details.is_empty();
            let logprobs = cand.logprobs_result.as_ref().map(logprobs_value);
            if has_delta || finish.is_some() || logprobs.is_some() {
                let role_sent = std::mem::replace(&mut st.role_sent, true);
                chunk.choices.push(ChunkChoice {
                    index: cand.index,
                    delta: Delta {
                        role: (!role_sent).then(|| "assistant".to_owned()),
                        content: non_empty(d.content),
                        reasoning: non_empty(d.reasoning),
                        reasoning_details: (!d.details.is_empty()).then_some(d.details),
                        refusal: None,
                        tool_calls: (!d.tool_calls.is_empty()).then(|| {
                            d.tool_calls
                                .into_iter()
                                .map(|c| ToolCallDelta {
                                    index: c.index,
                                    id: Some(c.id),
                                    kind: Some("function".to_owned()),
                                    function: Some(FunctionCallDelta {
                                        name: Some(c.name),
                                        arguments: Some(c.arguments),
                                    }),
                                })
                                .collect()
                        }),
                    },
                    finish_reason: finish,
                    native_finish_reason: cand.finish_reason,
                    logprobs,
                });
            }
        }
        if !chunk.choices.is_empty() {
            chunk.choices.sort_by_key(|c| c.index);
            out.push(chunk);
        }

        if !self.choices.is_empty() && self.choices.iter().all(|c| c.finished) {
            self.done = true;
            if let Some(u) = self.usage.take() {
                let mut c = self.chunk();
                c.usage = Some(Box::new(u));
                out.push(c);
            }
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self, _out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        if self.done {
            Ok(())
        } else {
            Err(Error::upstream(
                "the provider's stream ended before it was complete",
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: GoogleError,
}

#[derive(Debug, Deserialize)]
struct GoogleError {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<Value>,
}

/// `{"error": {...}}`, or the same inside a one-element array (streamed errors).
fn parse_error_body(body: &[u8]) -> Option<GoogleError> {
    if let Ok(e) = serde_json::from_slice::<ErrorEnvelope>(body) {
        return Some(e.error);
    }
    serde_json::from_slice::<Vec<ErrorEnvelope>>(body)
        .ok()?
        .into_iter()
        .next()
        .map(|e| e.error)
}

fn detail_of<'e>(e: &'e GoogleError, kind: &str) -> impl Iterator<Item = &'e Value> + 'e {
    let suffix = format!("google.rpc.{kind}");
    e.details.iter().filter(move |d| {
        d.get("@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with(&suffix))
    })
}

/// `RetryInfo.retryDelay`, a protobuf duration such as `"37s"` or `"0.5s"`.
fn retry_delay(e: &GoogleError) -> Option<Duration> {
    detail_of(e, "RetryInfo").find_map(|d| {
        let s = d.get("retryDelay")?.as_str()?.strip_suffix('s')?;
        let secs = s.trim().parse::<f64>().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
    })
}

/// Maps a Google error (with the HTTP status when there was one) per the module docs.
fn google_error(http: Option<StatusCode>, headers: &HeaderMap, e: GoogleError) -> Error {
    let key_problem = detail_of(&e, "ErrorInfo").any(|d| {
        d.get("reason")
            .and_then(Value::as_str)
            .is_some_and(|r| r.starts_with("API_KEY_"))
    });
    let by_status = match e.status.as_deref() {
        _ if key_problem => Some(StatusCode::UNAUTHORIZED),
        Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE") => {
            Some(StatusCode::BAD_REQUEST)
        }
        Some("UNAUTHENTICATED") => Some(StatusCode::UNAUTHORIZED),
        Some("PERMISSION_DENIED") => Some(StatusCode::FORBIDDEN),
        Some("NOT_FOUND") => Some(StatusCode::NOT_FOUND),
        Some("RESOURCE_EXHAUSTED") => Some(StatusCode::TOO_MANY_REQUESTS),
        Some("UNAVAILABLE") => Some(StatusCode::SERVICE_UNAVAILABLE),
        Some("INTERNAL" | "UNKNOWN" | "DATA_LOSS") => Some(StatusCode::INTERNAL_SERVER_ERROR),
        Some("DEADLINE_EXCEEDED") => Some(StatusCode::GATEWAY_TIMEOUT),
        _ => None,
    };
    let from_code = || {
        e.code
            .as_ref()
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(|s| s.is_client_error() || s.is_server_error())
    };
    let status = by_status
        .or(http.filter(|s| !s.is_success()))
        .or_else(from_code)
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let retry = retry_delay(&e);
    let mut err = if status == StatusCode::GATEWAY_TIMEOUT {
        let msg = e
            .message
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "the provider timed out".to_owned());
        let mut err = Error::new(ErrorKind::Timeout, msg);
        if let Some(after) = super::retry_after(headers) {
            err = err.with_retry_after(after);
        }
        err
    } else {
        error_for_status(status, headers, e.message, None)
    };
    if err.retry_after().is_none() {
        if let Some(after) = retry {
            err = err.with_retry_after(after);
        }
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Provider, ProviderKind};
    use crate::openai::sse::SseDecoder;
    use serde_json::json;

    fn provider() -> Provider {
        Provider::new(
            "google",
            ProviderKind::Gemini,
            "https://generativelanguage.googleapis.com/",
        )
        .with_api_key("test-key")
    }

    fn dctx() -> DecodeContext {
        DecodeContext {
            model: "google/gemini-2.5-flash".into(),
            provider: "google".into(),
        }
    }

    fn encode_with(body: Value, model: &str) -> Result<http::Request<UpstreamBody>, Error> {
        let req = ChatRequest::from_slice(body.to_string().as_bytes())?;
        let p = provider();
        Gemini.encode(
            &req,
            &EncodeContext {
                provider: &p,
                upstream_model: model,
                max_output: Some(65536),
            },
        )
    }

    fn encode(body: Value) -> Value {
        let r = encode_with(body, "gemini-2.5-flash").unwrap();
        serde_json::from_slice(&r.body().to_bytes()).unwrap()
    }

    fn encode_err(body: Value) -> Error {
        encode_with(body, "gemini-2.5-flash").unwrap_err()
    }

    // ----- request ------------------------------------------------------------------------

    #[test]
    fn url_header_and_minimal_body() {
        let r = encode_with(
            json!({"model": "google/gemini-2.5-flash", "messages": [{"role": "user", "content": "Explain how AI works"}]}),
            "models/gemini-2.5-flash",
        )
        .unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(
            r.uri(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(r.headers()["x-goog-api-key"], "test-key");
        assert!(r.headers()["x-goog-api-key"].is_sensitive());
        assert_eq!(r.headers()["content-type"], "application/json");
        assert!(r.headers().get("authorization").is_none());
        // The REST quickstart body.
        let v: Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
        assert_eq!(
            v,
            json!({"contents": [{"role": "user", "parts": [{"text": "Explain how AI works"}]}]})
        );
    }

    #[test]
    fn streams_use_sse_method() {
        let r = encode_with(
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
            "gemini-2.5-pro",
        )
        .unwrap();
        assert_eq!(
            r.uri(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
        let r = encode_with(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            "tunedModels/my-model-123",
        )
        .unwrap();
        assert_eq!(
            r.uri(),
            "https://generativelanguage.googleapis.com/v1beta/tunedModels/my-model-123:generateContent"
        );
    }

    #[test]
    fn system_and_developer_become_system_instruction_and_turns_merge() {
        let v = encode(json!({"model": "m", "messages": [
            {"role": "system", "content": "You are a cat."},
            {"role": "developer", "content": [{"type": "text", "text": "Your name is Neko."}]},
            {"role": "user", "content": "Hello"},
            {"role": "user", "content": "Are you there?"},
            {"role": "assistant", "content": "Meow."},
            {"role": "assistant", "content": [{"type": "text", "text": "Purr."}]},
            {"role": "user", "content": "Good cat."}
        ]}));
        assert_eq!(
            v,
            json!({
                "systemInstruction": {"parts": [{"text": "You are a cat."}, {"text": "Your name is Neko."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Hello"}, {"text": "Are you there?"}]},
                    {"role": "model", "parts": [{"text": "Meow."}, {"text": "Purr."}]},
                    {"role": "user", "parts": [{"text": "Good cat."}]}
                ]
            })
        );
    }

    #[test]
    fn only_a_system_prompt_is_refused() {
        let e = encode_err(json!({"model": "m", "messages": [{"role": "system", "content": "x"}]}));
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn images_audio_and_files() {
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Caption these"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cats/photo.PNG?size=large", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/image"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
            ]}]}),
        );
        assert_eq!(
            v["contents"][0]["parts"],
            json!([
                {"text": "Caption these"},
                {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
                {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cats/photo.PNG?size=large"}},
                {"fileData": {"fileUri": "https://example.com/image"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
            ])
        );
    }

    #[test]
    fn bad_media_is_a_400() {
        for part in [
            json!({"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}),
            json!({"type": "image_url", "image_url": {"url": "ftp://host/x.png"}}),
            json!({"type": "file", "file": {"file_id": "file-abc"}}),
            json!({"type": "input_audio", "input_audio": {"data": "x", "format": "opus"}}),
        ] {
            let e = encode_err(
                json!({"model": "m", "messages": [{"role": "user", "content": [part]}]}),
            );
            assert_eq!(e.status(), 400, "{part}");
        }
    }

    #[test]
    fn tool_calls_and_results_match_by_id() {
        let v = encode(json!({"model": "m", "messages": [
            {"role": "user", "content": "Weather in Paris and London? And the time."},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_current_temperature", "arguments": "{\"location\": \"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_current_temperature", "arguments": "{\"location\": \"London\"}"}},
                {"id": "call_3", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_3", "content": "12:00"},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 15, \"unit\": \"C\"}"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "[1, 2]"}]}
        ]}));
        let contents = &v["contents"];
        assert_eq!(contents.as_array().unwrap().len(), 3);
        assert_eq!(
            contents[1],
            json!({"role": "model", "parts": [
                {"functionCall": {"name": "get_current_temperature", "args": {"location": "Paris"}}, "thoughtSignature": PLACEHOLDER_SIGNATURE},
                {"functionCall": {"name": "get_current_temperature", "args": {"location": "London"}}},
                {"functionCall": {"name": "get_time", "args": {}}}
            ]})
        );
        assert_eq!(
            contents[2],
            json!({"role": "user", "parts": [
                {"functionResponse": {"name": "get_time", "response": {"content": "12:00"}}},
                {"functionResponse": {"name": "get_current_temperature", "response": {"temperature": 15, "unit": "C"}}},
                {"functionResponse": {"name": "get_current_temperature", "response": {"content": "[1, 2]"}}}
            ]})
        );
    }

    #[test]
    fn bad_tool_messages_are_400s() {
        let call = json!({"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
        for msgs in [
            json!([{"role": "user", "content": "x"}, call, {"role": "tool", "tool_call_id": "nope", "content": "r"}]),
            json!([{"role": "user", "content": "x"}, call, {"role": "tool", "content": "r"}]),
            json!([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]),
            json!([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]),
        ] {
            let e = encode_err(json!({"model": "m", "messages": msgs}));
            assert_eq!(e.status(), 400, "{msgs}");
            assert_eq!(e.param(), Some("messages"));
        }
    }

    #[test]
    fn placeholder_signature_only_in_the_current_turn() {
        let v = encode(json!({"model": "m", "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "a", "content": "r"},
            {"role": "assistant", "content": "done"},
            {"role": "user", "content": "second"},
            {"role": "assistant", "tool_calls": [{"id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "b", "content": "r"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "r"}
        ]}));
        let c = v["contents"].as_array().unwrap();
        // Turn 1 (older): untouched.
        assert!(c[1]["parts"][0].get("thoughtSignature").is_none());
        // Turn 2: every step's first call is signed.
        assert_eq!(c[5]["parts"][0]["thoughtSignature"], PLACEHOLDER_SIGNATURE);
        assert_eq!(c[7]["parts"][0]["thoughtSignature"], PLACEHOLDER_SIGNATURE);
    }

    #[test]
    fn tools_and_every_tool_choice() {
        let tools = json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Get the weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
        ]);
        let base = |choice: Value| {
            let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools});
            if !choice.is_null() {
                b["tool_choice"] = choice;
            }
            encode(b)
        };
        let v = base(Value::Null);
        assert_eq!(
            v["tools"],
            json!([{"functionDeclarations": [
                {"name": "get_weather", "description": "Get the weather", "parameters": {
                    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "now"}
            ]}])
        );
        assert!(v.get("toolConfig").is_none());
        let mode = |c: Value| base(c)["toolConfig"]["functionCallingConfig"].clone();
        assert_eq!(mode(json!("auto")), json!({"mode": "AUTO"}));
        assert_eq!(mode(json!("none")), json!({"mode": "NONE"}));
        assert_eq!(mode(json!("required")), json!({"mode": "ANY"}));
        assert_eq!(
            mode(json!({"type": "function", "function": {"name": "get_weather"}})),
            json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})
        );
        let e = encode_err(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "missing"}}}),
        );
        assert_eq!(e.param(), Some("tool_choice"));
        let e = encode_err(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "web_search", "function": {"name": "x"}}]}),
        );
        assert_eq!(e.code(), Some("unsupported_parameter"));
    }

    #[test]
    fn schemas_are_cleaned() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "Args",
            "type": "object",
            "additionalProperties": false,
            "$defs": {"Unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "title": "Unit"}},
            "properties": {
                "city": {"type": "string", "default": "Paris", "examples": ["Rome"], "format": "uri", "minLength": 1},
                "unit": {"$ref": "#/$defs/Unit", "description": "Temperature unit"},
                "days": {"type": ["integer", "null"], "minimum": 1, "maximum": 14, "format": "int32"},
                "when": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
                "tags": {"type": "array", "items": {"type": "string", "const": "x"}, "uniqueItems": true, "maxItems": 3},
                "filter": {"oneOf": [{"type": "string"}, {"type": "number"}]},
                "mixed": {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                                    {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}]},
                "empty": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
                "level": {"type": "integer", "enum": [1, 2, 3]}
            },
            "required": ["city", "ghost"]
        });
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]}),
        );
        assert_eq!(
            v["tools"][0]["functionDeclarations"][0]["parameters"],
            json!({
                "type": "object",
                "description": "Args",
                "properties": {
                    "city": {"type": "string", "minLength": 1},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
                    "days": {"type": "integer", "minimum": 1, "maximum": 14, "format": "int32", "nullable": true},
                    "when": {"type": "string", "format": "date-time", "nullable": true},
                    "tags": {"type": "array", "items": {"type": "string", "enum": ["x"]}, "maxItems": 3},
                    "filter": {"anyOf": [{"type": "string"}, {"type": "number"}]},
                    "mixed": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "boolean"}}, "required": ["a", "b"]},
                    "empty": {"type": "object"},
                    "level": {"type": "integer"}
                },
                "required": ["city"]
            })
        );
    }

    #[test]
    fn recursive_refs_terminate() {
        let schema = json!({"type": "object", "properties": {"root": {"$ref": "#/definitions/Node"}},
            "definitions": {"Node": {"type": "object", "properties": {
                "value": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/definitions/Node"}}}}}});
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]}),
        );
        let root = &v["tools"][0]["functionDeclarations"][0]["parameters"]["properties"]["root"];
        assert_eq!(root["properties"]["value"], json!({"type": "string"}));
        assert_eq!(
            root["properties"]["children"]["items"],
            json!({"type": "object"})
        );

        // A reference explosion is refused instead of exhausting memory.
        let mut defs = Map::new();
        for i in 0..24 {
            defs.insert(
                format!("D{i}"),
                json!({"type": "object", "properties": {
                    "a": {"$ref": format!("#/$defs/D{}", i + 1)},
                    "b": {"$ref": format!("#/$defs/D{}", i + 1)}}}),
            );
        }
        defs.insert("D24".into(), json!({"type": "string"}));
        let schema =
            json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/D0"}}, "$defs": defs});
        let e = encode_err(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]}),
        );
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn generation_config_fields() {
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 100, "max_completion_tokens": 800, "temperature": 1.0, "top_p": 0.8,
            "top_k": 10, "stop": ["Title"], "n": 2, "seed": 42,
            "presence_penalty": 0.5, "frequency_penalty": 0.0, "user": "u-1",
            "parallel_tool_calls": false, "metadata": {"a": "b"}, "logprobs": true, "top_logprobs": 3}),
        );
        assert_eq!(
            v["generationConfig"],
            json!({"maxOutputTokens": 800, "temperature": 1.0, "topP": 0.8, "topK": 10,
                   "stopSequences": ["Title"], "candidateCount": 2, "seed": 42,
                   "responseLogprobs": true, "logprobs": 3})
        );
        // Harmless values never reach Gemini.
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "n": 1, "stop": "END", "seed": 9_000_000_000_i64}),
        );
        assert_eq!(v["generationConfig"]["stopSequences"], json!(["END"]));
        assert!(v["generationConfig"].get("candidateCount").is_none());
        let seed = v["generationConfig"]["seed"].as_i64().unwrap();
        assert!(i32::try_from(seed).is_ok());
        // Penalties only for the models that accept them.
        let r = encode_with(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "presence_penalty": 0.5, "frequency_penalty": 0.25}),
            "gemini-2.0-flash-001",
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
        assert_eq!(
            v["generationConfig"],
            json!({"presencePenalty": 0.5, "frequencyPenalty": 0.25})
        );
    }

    #[test]
    fn response_formats() {
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "recipe", "strict": true, "schema": {
                "type": "object", "additionalProperties": false,
                "properties": {"recipeName": {"type": "string"}, "ingredients": {"type": "array", "items": {"type": "string"}}},
                "required": ["recipeName", "ingredients"]}}}}),
        );
        assert_eq!(
            v["generationConfig"],
            json!({"responseMimeType": "application/json", "responseSchema": {
                "type": "object",
                "properties": {"recipeName": {"type": "string"}, "ingredients": {"type": "array", "items": {"type": "string"}}},
                "required": ["recipeName", "ingredients"]}})
        );
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_object"}}),
        );
        assert_eq!(
            v["generationConfig"],
            json!({"responseMimeType": "application/json"})
        );
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "text"}}),
        );
        assert!(v.get("generationConfig").is_none());
    }

    #[test]
    fn thinking_config_from_reasoning() {
        let tc = |extra: Value| {
            let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            encode(b)["generationConfig"]["thinkingConfig"].clone()
        };
        assert_eq!(tc(json!({})), Value::Null);
        assert_eq!(
            tc(json!({"reasoning": {"max_tokens": 1024}})),
            json!({"thinkingBudget": 1024, "includeThoughts": true})
        );
        assert_eq!(
            tc(json!({"reasoning": {"effort": "high", "exclude": true}})),
            json!({"thinkingBudget": 24576, "includeThoughts": false})
        );
        assert_eq!(
            tc(json!({"reasoning_effort": "low"})),
            json!({"thinkingBudget": 2048, "includeThoughts": true})
        );
        assert_eq!(
            tc(json!({"reasoning_effort": "low", "reasoning": {"effort": "medium"}})),
            json!({"thinkingBudget": 8192, "includeThoughts": true})
        );
        assert_eq!(
            tc(json!({"reasoning": {"enabled": true}})),
            json!({"thinkingBudget": -1, "includeThoughts": true})
        );
        assert_eq!(
            tc(json!({"reasoning": {"enabled": false}})),
            json!({"thinkingBudget": 0, "includeThoughts": false})
        );
        assert_eq!(
            tc(json!({"reasoning_effort": "none"})),
            json!({"thinkingBudget": 0, "includeThoughts": false})
        );
        assert_eq!(
            tc(json!({"reasoning": {"exclude": true}})),
            json!({"includeThoughts": false})
        );
        let e = encode_err(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "max"}),
        );
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn refused_parameters() {
        for (extra, param) in [
            (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
            (
                json!({"audio": {"voice": "alloy", "format": "wav"}}),
                "audio",
            ),
        ] {
            let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            let e = encode_err(b);
            assert_eq!(e.status(), 400);
            assert_eq!(e.code(), Some("unsupported_parameter"));
            assert_eq!(e.param(), Some(param));
        }
        // Unknown fields and empty logit_bias are dropped.
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "logit_bias": {}, "store": true, "service_tier": "auto"}),
        );
        assert!(v.get("store").is_none() && v.get("generationConfig").is_none());
    }

    // ----- whole answers ------------------------------------------------------------------

    // The REST text-generation example of the Gemini API reference.
    const TEXT_RESPONSE: &str = r#"{
      "candidates": [{
        "content": {"parts": [{"text": "AI learns patterns from data "}, {"text": "to make predictions."}], "role": "model"},
        "finishReason": "STOP",
        "avgLogprobs": -0.1830
      }],
      "usageMetadata": {
        "promptTokenCount": 4, "candidatesTokenCount": 12, "totalTokenCount": 16,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 4}],
        "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]
      },
      "modelVersion": "gemini-2.0-flash",
      "responseId": "mAitaLmkHPPlz7IPvtfUqQ4"
    }"#;

    #[test]
    fn decodes_text() {
        let c = Gemini.decode(TEXT_RESPONSE.as_bytes(), &dctx()).unwrap();
        assert!(c.id.starts_with("chatcmpl-"));
        assert_eq!(c.object, "chat.completion");
        assert_eq!(c.model, "google/gemini-2.5-flash");
        assert_eq!(c.provider.as_deref(), Some("google"));
        assert_eq!(c.choices.len(), 1);
        let ch = &c.choices[0];
        assert_eq!(ch.index, 0);
        assert_eq!(
            ch.message.content.as_deref(),
            Some("AI learns patterns from data to make predictions.")
        );
        assert_eq!(ch.finish_reason, Some(FinishReason::Stop));
        assert_eq!(ch.native_finish_reason.as_deref(), Some("STOP"));
        assert!(ch.message.tool_calls.is_none() && ch.message.reasoning.is_none());
        let u = c.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (4, 12, 16)
        );
        assert_eq!(u.cached_tokens(), 0);
    }

    // Parallel function calling, as in the function-calling guide (Gemini 3 returns the thought
    // signature on the first call only).
    const CALLS_RESPONSE: &str = r#"{
      "candidates": [{
        "content": {"role": "model", "parts": [
          {"functionCall": {"name": "get_current_temperature", "args": {"location": "Paris"}}, "thoughtSignature": "Q2lZQWRPRmJ5ZVBhcmlz"},
          {"functionCall": {"name": "get_current_temperature", "args": {"location": "London"}}},
          {"functionCall": {"id": "fc-77", "name": "get_time"}}
        ]},
        "finishReason": "STOP",
        "index": 0
      }],
      "usageMetadata": {"promptTokenCount": 80, "candidatesTokenCount": 30, "thoughtsTokenCount": 120, "totalTokenCount": 230}
    }"#;

    #[test]
    fn decodes_function_calls() {
        let c = Gemini.decode(CALLS_RESPONSE.as_bytes(), &dctx()).unwrap();
        let ch = &c.choices[0];
        assert_eq!(ch.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(ch.native_finish_reason.as_deref(), Some("STOP"));
        assert_eq!(ch.message.content, None);
        let calls = ch.message.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].function.name, "get_current_temperature");
        assert_eq!(calls[0].function.arguments, r#"{"location":"Paris"}"#);
        assert_eq!(calls[1].function.arguments, r#"{"location":"London"}"#);
        assert_eq!(calls[2].id, "fc-77");
        assert_eq!(calls[2].function.arguments, "{}");
        assert!(calls.iter().all(|c| c.kind == "function"));
        assert!(calls[0].id.starts_with("call_") && calls[1].id.starts_with("call_"));
        assert_ne!(calls[0].id, calls[1].id);
        let suffix = c.id.strip_prefix("chatcmpl-").unwrap();
        assert!(
            calls[0].id.contains(suffix),
            "ids are unique across completions"
        );
        assert_eq!(
            ch.message.reasoning_details,
            Some(vec![
                json!({"type": "reasoning.encrypted", "data": "Q2lZQWRPRmJ5ZVBhcmlz",
                "id": calls[0].id, "format": "google-gemini-v1", "index": 0})
            ])
        );
        let u = c.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (80, 150, 230)
        );
        assert_eq!(u.reasoning_tokens(), 120);
    }

    #[test]
    fn thought_signatures_round_trip() {
        let c = Gemini.decode(CALLS_RESPONSE.as_bytes(), &dctx()).unwrap();
        let msg = serde_json::to_value(&c.choices[0].message).unwrap();
        let calls = msg["tool_calls"].as_array().unwrap().clone();
        let results: Vec<Value> = calls
            .iter()
            .map(
                |tc| json!({"role": "tool", "tool_call_id": tc["id"], "content": "{\"ok\": true}"}),
            )
            .collect();
        let mut messages = vec![
            json!({"role": "user", "content": "Paris, London, time?"}),
            msg,
        ];
        messages.extend(results);
        let v = encode(json!({"model": "m", "messages": messages}));
        let parts = v["contents"][1]["parts"].as_array().unwrap();
        assert_eq!(parts[0]["thoughtSignature"], "Q2lZQWRPRmJ5ZVBhcmlz");
        assert!(parts[1].get("thoughtSignature").is_none());
        assert!(parts[2].get("thoughtSignature").is_none());
        assert_eq!(
            v["contents"][2]["parts"][2]["functionResponse"]["name"],
            "get_time"
        );

        // A signature without an id goes to the first call; one after text-only answers to the
        // last part; other providers' formats are never forwarded.
        let v = encode(json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "x1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "x2", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
             "reasoning_details": [
                {"type": "reasoning.text", "text": "thinking", "format": "google-gemini-v1", "index": 0},
                {"type": "reasoning.encrypted", "data": "U0lHMQ==", "format": "google-gemini-v1", "index": 1}]},
            {"role": "tool", "tool_call_id": "x1", "content": "a"},
            {"role": "tool", "tool_call_id": "x2", "content": "b"},
            {"role": "assistant", "content": "All done.", "reasoning_details": [
                {"type": "reasoning.encrypted", "data": "U0lHMg==", "id": null, "format": "google-gemini-v1", "index": 0},
                {"type": "reasoning.encrypted", "data": "Q0xBVURF", "format": "anthropic-claude-v1", "index": 1}]},
            {"role": "user", "content": "thanks"}
        ]}));
        let c = v["contents"].as_array().unwrap();
        assert_eq!(c[1]["parts"][0], json!({"text": "Let me check."}));
        assert_eq!(c[1]["parts"][1]["thoughtSignature"], "U0lHMQ==");
        assert!(c[1]["parts"][2].get("thoughtSignature").is_none());
        assert_eq!(
            c[3],
            json!({"role": "model", "parts": [{"text": "All done.", "thoughtSignature": "U0lHMg=="}]})
        );
    }

    // Thinking with thought summaries (includeThoughts), per the thinking guide.
    const THOUGHTS_RESPONSE: &str = r#"{
      "candidates": [{
        "content": {"role": "model", "parts": [
          {"text": "**Analyzing the request**\nThe user asks for a prime. ", "thought": true},
          {"text": "Checking 7 is prime.", "thought": true},
          {"text": "7 is a prime number.", "thoughtSignature": "RW5jcnlwdGVkVGhvdWdodA=="}
        ]},
        "finishReason": "STOP",
        "index": 0
      }],
      "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 6, "thoughtsTokenCount": 250,
                        "cachedContentTokenCount": 4, "totalTokenCount": 266}
    }"#;

    #[test]
    fn decodes_thoughts() {
        let c = Gemini
            .decode(THOUGHTS_RESPONSE.as_bytes(), &dctx())
            .unwrap();
        let m = &c.choices[0].message;
        assert_eq!(m.content.as_deref(), Some("7 is a prime number."));
        assert_eq!(
            m.reasoning.as_deref(),
            Some("**Analyzing the request**\nThe user asks for a prime. Checking 7 is prime.")
        );
        assert_eq!(
            m.reasoning_details,
            Some(vec![
                json!({"type": "reasoning.text", "text": "**Analyzing the request**\nThe user asks for a prime. Checking 7 is prime.",
                       "format": "google-gemini-v1", "index": 0}),
                json!({"type": "reasoning.encrypted", "data": "RW5jcnlwdGVkVGhvdWdodA==", "id": null,
                       "format": "google-gemini-v1", "index": 1}),
            ])
        );
        assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
        let u = c.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (10, 256, 266)
        );
        assert_eq!((u.cached_tokens(), u.reasoning_tokens()), (4, 250));
    }

    #[test]
    fn decodes_safety_blocks() {
        // A blocked prompt: no candidates, only promptFeedback.
        let body = r#"{"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}}"#;
        let c = Gemini.decode(body.as_bytes(), &dctx()).unwrap();
        assert_eq!(c.choices.len(), 1);
        assert_eq!(
            c.choices[0].finish_reason,
            Some(FinishReason::ContentFilter)
        );
        assert_eq!(c.choices[0].native_finish_reason.as_deref(), Some("SAFETY"));
        assert_eq!(c.choices[0].message.content, None);
        assert_eq!(c.usage.unwrap().total_tokens, 9);
        // A blocked candidate, and several candidates.
        let body = r#"{"candidates": [
            {"index": 1, "content": {"role": "model", "parts": [{"text": "Sure."}]}, "finishReason": "MAX_TOKENS"},
            {"finishReason": "RECITATION", "index": 0},
            {"index": 2, "content": {"parts": [{"text": "x"}]}, "finishReason": "MALFORMED_FUNCTION_CALL"}]}"#;
        let c = Gemini.decode(body.as_bytes(), &dctx()).unwrap();
        assert_eq!(
            c.choices.iter().map(|c| c.index).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(
            c.choices[0].finish_reason,
            Some(FinishReason::ContentFilter)
        );
        assert_eq!(c.choices[0].message.content, None);
        assert_eq!(c.choices[1].finish_reason, Some(FinishReason::Length));
        assert_eq!(c.choices[2].finish_reason, Some(FinishReason::Error));
        assert!(c.usage.is_none());
    }

    #[test]
    fn decodes_logprobs() {
        let body = r#"{"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP",
            "logprobsResult": {
              "topCandidates": [{"candidates": [{"token": "Hi", "logProbability": -0.1}, {"token": "Hello", "logProbability": -2.5}]}],
              "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}]}}]}"#;
        let c = Gemini.decode(body.as_bytes(), &dctx()).unwrap();
        assert_eq!(
            c.choices[0].logprobs,
            Some(
                json!({"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [
                {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                {"token": "Hello", "logprob": -2.5, "bytes": [72, 101, 108, 108, 111]}]}], "refusal": null})
            )
        );
    }

    #[test]
    fn garbage_and_error_bodies_fail_decode() {
        assert_eq!(Gemini.decode(b"<html>", &dctx()).unwrap_err().status(), 502);
        assert_eq!(Gemini.decode(b"{}", &dctx()).unwrap_err().status(), 502);
        let e = Gemini
            .decode(br#"{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}"#, &dctx())
            .unwrap_err();
        assert_eq!(e.status(), 503);
    }

    // ----- streams ------------------------------------------------------------------------

    fn frames(frames: &[&str]) -> String {
        frames
            .iter()
            .map(|f| format!("data: {f}\r\n\r\n"))
            .collect()
    }

    // Text streaming with `alt=sse`, as in the streaming guide.
    fn text_stream() -> String {
        frames(&[
            r#"{"candidates": [{"content": {"parts": [{"text": "The"}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}"#,
            r#"{"candidates": [{"content": {"parts": [{"text": " quick brown fox"}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}"#,
            r#"{"candidates": [{"content": {"parts": [{"text": " jumps."}], "role": "model"}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 7, "cachedContentTokenCount": 2, "thoughtsTokenCount": 5, "totalTokenCount": 21}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}"#,
        ])
    }

    // Parallel function calls arrive whole, possibly across frames.
    fn calls_stream() -> String {
        frames(&[
            r#"{"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "get_current_temperature", "args": {"location": "Paris"}}, "thoughtSignature": "U2lnUGFyaXM="}, {"functionCall": {"name": "get_current_temperature", "args": {"location": "London"}}}]}, "index": 0}], "usageMetadata": {"promptTokenCount": 70, "totalTokenCount": 70}}"#,
            r#"{"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"id": "srv-1", "name": "get_time", "args": {}}}]}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 70, "candidatesTokenCount": 25, "totalTokenCount": 95}}"#,
        ])
    }

    // Thought summaries streamed, then the answer with its signature on an empty final part.
    fn thoughts_stream() -> String {
        frames(&[
            r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": "**Planning** I should", "thought": true}]}, "index": 0}]}"#,
            r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": " compute 2+2.", "thought": true}]}, "index": 0}]}"#,
            r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": "2 + 2 = 4."}]}, "index": 0}]}"#,
            r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": "", "thoughtSignature": "VGhvdWdodFNpZw=="}]}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 8, "thoughtsTokenCount": 40, "totalTokenCount": 60}}"#,
        ])
    }

    fn decode_stream(input: &[u8], splits: &[usize]) -> Result<Vec<ChatCompletionChunk>, Error> {
        let mut sse = SseDecoder::new();
        let mut dec = GeminiStream::new(dctx(), "chatcmpl-test".to_owned(), 1_700_000_000);
        let mut out = Vec::new();
        let mut last = 0;
        for &s in splits.iter().chain(std::iter::once(&input.len())) {
            let s = s.clamp(last, input.len());
            sse.push(&input[last..s]);
            last = s;
            while let Some(ev) = sse.next_event()? {
                dec.event(ev, &mut out)?;
            }
        }
        dec.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn streams_text_with_usage() {
        let chunks = decode_stream(text_stream().as_bytes(), &[]).unwrap();
        assert_eq!(chunks.len(), 4);
        assert!(chunks.iter().all(|c| c.id == "chatcmpl-test"
            && c.created == 1_700_000_000
            && c.model == "google/gemini-2.5-flash"
            && c.object == "chat.completion.chunk"));
        assert_eq!(
            chunks[0].choices[0].delta.role.as_deref(),
            Some("assistant")
        );
        assert_eq!(chunks[0].choices[0].delta.content.as_deref(), Some("The"));
        assert_eq!(chunks[1].choices[0].delta.role, None);
        assert_eq!(
            chunks[1].choices[0].delta.content.as_deref(),
            Some(" quick brown fox")
        );
        assert_eq!(
            chunks[2].choices[0].delta.content.as_deref(),
            Some(" jumps.")
        );
        assert_eq!(chunks[2].choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(
            chunks[2].choices[0].native_finish_reason.as_deref(),
            Some("STOP")
        );
        assert!(chunks[..3].iter().all(|c| c.usage.is_none()));
        assert!(chunks[3].is_usage_only());
        let u = chunks[3].usage.as_ref().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (9, 12, 21)
        );
        assert_eq!((u.cached_tokens(), u.reasoning_tokens()), (2, 5));
    }

    #[test]
    fn streams_parallel_function_calls() {
        let chunks = decode_stream(calls_stream().as_bytes(), &[]).unwrap();
        let calls: Vec<&ToolCallDelta> = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.tool_calls.as_ref())
            .flatten()
            .collect();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls.iter().map(|c| c.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(calls[0].id.as_deref(), Some("call_test_0"));
        assert_eq!(calls[1].id.as_deref(), Some("call_test_1"));
        assert_eq!(calls[2].id.as_deref(), Some("srv-1"));
        assert!(calls.iter().all(|c| c.kind.as_deref() == Some("function")));
        let f = calls[1].function.as_ref().unwrap();
        assert_eq!(f.name.as_deref(), Some("get_current_temperature"));
        assert_eq!(f.arguments.as_deref(), Some(r#"{"location":"London"}"#));
        assert_eq!(
            chunks[0].choices[0].delta.reasoning_details,
            Some(vec![
                json!({"type": "reasoning.encrypted", "data": "U2lnUGFyaXM=", "id": "call_test_0",
                "format": "google-gemini-v1", "index": 0})
            ])
        );
        let last = &chunks[1].choices[0];
        assert_eq!(last.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(last.native_finish_reason.as_deref(), Some("STOP"));
        assert!(chunks[2].is_usage_only());
        assert_eq!(chunks[2].usage.as_ref().unwrap().total_tokens, 95);
    }

    #[test]
    fn streams_thoughts_with_signatures() {
        let chunks = decode_stream(thoughts_stream().as_bytes(), &[]).unwrap();
        assert_eq!(chunks.len(), 5);
        let d0 = &chunks[0].choices[0].delta;
        assert_eq!(d0.role.as_deref(), Some("assistant"));
        assert_eq!(d0.reasoning.as_deref(), Some("**Planning** I should"));
        assert_eq!(d0.content, None);
        assert!(chunks[0].has_output());
        assert_eq!(
            d0.reasoning_details,
            Some(vec![
                json!({"type": "reasoning.text", "text": "**Planning** I should", "format": "google-gemini-v1", "index": 0})
            ])
        );
        let d1 = &chunks[1].choices[0].delta;
        assert_eq!(d1.reasoning.as_deref(), Some(" compute 2+2."));
        assert_eq!(d1.reasoning_details.as_ref().unwrap()[0]["index"], 0);
        assert_eq!(
            chunks[2].choices[0].delta.content.as_deref(),
            Some("2 + 2 = 4.")
        );
        let end = &chunks[3].choices[0];
        assert_eq!(end.delta.content, None);
        assert_eq!(
            end.delta.reasoning_details,
            Some(vec![
                json!({"type": "reasoning.encrypted", "data": "VGhvdWdodFNpZw==", "id": null,
                "format": "google-gemini-v1", "index": 1})
            ])
        );
        assert_eq!(end.finish_reason, Some(FinishReason::Stop));
        let u = chunks[4].usage.as_ref().unwrap();
        assert_eq!((u.completion_tokens, u.reasoning_tokens()), (48, 40));
    }

    #[test]
    fn stream_and_whole_answer_agree_on_reasoning_details() {
        // Accumulating stream details by index gives the non-stream array.
        let chunks = decode_stream(thoughts_stream().as_bytes(), &[]).unwrap();
        let mut merged: Vec<Value> = Vec::new();
        for d in chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.reasoning_details.as_ref())
            .flatten()
        {
            match merged.iter_mut().find(|m| m["index"] == d["index"]) {
                Some(m) => {
                    let t = format!(
                        "{}{}",
                        m["text"].as_str().unwrap(),
                        d["text"].as_str().unwrap()
                    );
                    m["text"] = t.into();
                }
                None => merged.push(d.clone()),
            }
        }
        let whole = r#"{"candidates": [{"content": {"role": "model", "parts": [
            {"text": "**Planning** I should", "thought": true}, {"text": " compute 2+2.", "thought": true},
            {"text": "2 + 2 = 4."}, {"text": "", "thoughtSignature": "VGhvdWdodFNpZw=="}]}, "finishReason": "STOP"}]}"#;
        let c = Gemini.decode(whole.as_bytes(), &dctx()).unwrap();
        assert_eq!(
            c.choices[0].message.reasoning_details.as_ref(),
            Some(&merged)
        );
    }

    #[test]
    fn stream_blocked_prompt_ends_with_content_filter() {
        let s = frames(&[
            r#"{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}"#,
        ]);
        let chunks = decode_stream(s.as_bytes(), &[]).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            chunks[0].choices[0].finish_reason,
            Some(FinishReason::ContentFilter)
        );
        assert_eq!(
            chunks[0].choices[0].native_finish_reason.as_deref(),
            Some("PROHIBITED_CONTENT")
        );
        assert!(chunks[1].is_usage_only());
    }

    #[test]
    fn stream_with_two_candidates_waits_for_both() {
        let s = frames(&[
            r#"{"candidates": [{"content": {"parts": [{"text": "A"}]}, "index": 0}, {"content": {"parts": [{"text": "B"}]}, "index": 1}]}"#,
            r#"{"candidates": [{"content": {"parts": [{"text": "!"}]}, "finishReason": "STOP", "index": 0}]}"#,
            r#"{"candidates": [{"content": {"parts": [{"text": "?"}]}, "finishReason": "STOP", "index": 1}], "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 4, "totalTokenCount": 5}}"#,
        ]);
        let mut sse = SseDecoder::new();
        let mut dec = GeminiStream::new(dctx(), "chatcmpl-x".into(), 1);
        sse.push(s.as_bytes());
        let mut out = Vec::new();
        let mut done_after = Vec::new();
        while let Some(ev) = sse.next_event().unwrap() {
            dec.event(ev, &mut out).unwrap();
            done_after.push(dec.is_done());
        }
        assert_eq!(done_after, [false, false, true]);
        assert_eq!(out[0].choices.len(), 2);
        assert_eq!(out[0].choices[1].delta.role.as_deref(), Some("assistant"));
        assert!(out.last().unwrap().is_usage_only());
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let s = text_stream();
        let cut = s.rfind("data: ").unwrap();
        let e = decode_stream(&s.as_bytes()[..cut], &[]).unwrap_err();
        assert_eq!(e.status(), 502);
        // Nothing at all is truncated too.
        assert!(decode_stream(b"", &[]).is_err());
    }

    #[test]
    fn error_frames_end_the_stream() {
        let s = format!(
            "{}data: {}\r\n\r\n",
            frames(&[r#"{"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "index": 0}]}"#]),
            r#"{"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}"#
        );
        let e = decode_stream(s.as_bytes(), &[]).unwrap_err();
        assert_eq!(e.status(), 429);
        let s = "data: [{\"error\": {\"code\": 500, \"message\": \"An internal error has occurred.\", \"status\": \"INTERNAL\"}}]\n\n";
        assert_eq!(decode_stream(s.as_bytes(), &[]).unwrap_err().status(), 502);
        let e = decode_stream(b"data: {not json\n\n", &[]).unwrap_err();
        assert_eq!(e.status(), 502);
    }

    // ----- errors -------------------------------------------------------------------------

    fn err(status: u16, body: &str) -> Error {
        Gemini.decode_error(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    #[test]
    fn maps_error_bodies() {
        let e = err(
            400,
            r#"{"error": {"code": 400, "message": "* GenerateContentRequest.contents: contents is not specified\n", "status": "INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::UpstreamInvalidRequest);
        assert!(e.message().contains("contents is not specified"));

        let e = err(
            400,
            r#"{"error": {"code": 400, "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.code(), Some("context_length_exceeded"));

        let e = err(
            400,
            r#"{"error": {"code": 400, "message": "User location is not supported for the API use.", "status": "FAILED_PRECONDITION"}}"#,
        );
        assert_eq!(e.status(), 400);

        // Gemini reports a bad key as INVALID_ARGUMENT: it is our key, not the client's request.
        let e = err(
            400,
            r#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                         "metadata": {"service": "generativelanguage.googleapis.com"}}]}}"#,
        );
        assert_eq!((e.kind(), e.status().as_u16()), (ErrorKind::Upstream, 502));
        assert!(!e.message().contains("API key not valid"));

        for (status, body) in [
            (
                403,
                r#"{"error": {"code": 403, "message": "Method doesn't allow unregistered callers.", "status": "PERMISSION_DENIED"}}"#,
            ),
            (
                401,
                r#"{"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}"#,
            ),
        ] {
            let e = err(status, body);
            assert_eq!(e.status(), 502);
            assert!(
                !e.message().contains("unregistered")
                    && !e.message().contains("invalid authentication")
            );
        }

        let e = err(
            404,
            r#"{"error": {"code": 404, "message": "models/gemini-9 is not found for API version v1beta, or is not supported for generateContent.", "status": "NOT_FOUND"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::UpstreamNotFound);

        let e = err(
            429,
            r#"{"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(37)));

        let e = err(
            503,
            r#"{"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Overloaded);

        let e = err(
            500,
            r#"{"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}}"#,
        );
        assert_eq!((e.kind(), e.status().as_u16()), (ErrorKind::Upstream, 502));

        let e = err(
            504,
            r#"{"error": {"code": 504, "message": "The request timed out.", "status": "DEADLINE_EXCEEDED"}}"#,
        );
        assert_eq!((e.kind(), e.status().as_u16()), (ErrorKind::Timeout, 504));

        // The array form, and bodies that say nothing useful.
        let e = err(
            429,
            r#"[{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}]"#,
        );
        assert_eq!(e.status(), 429);
        assert_eq!(err(502, "<html>Bad Gateway</html>").status(), 502);
        assert_eq!(err(503, "").kind(), ErrorKind::Overloaded);

        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        let e = Gemini.decode_error(StatusCode::TOO_MANY_REQUESTS, &h, br#"{"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"}]}}"#);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn codec_is_registered() {
        let c = super::super::codec(ProviderKind::Gemini);
        assert!(format!("{c:?}").contains("Gemini"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        #[test]
        fn any_split_decodes_identically(
            which in 0usize..3,
            mut splits in proptest::collection::vec(0usize..4096, 0..12),
        ) {
            let input = [text_stream(), calls_stream(), thoughts_stream()][which].clone();
            for s in &mut splits {
                *s %= input.len() + 1;
            }
            splits.sort_unstable();
            proptest::prop_assert_eq!(
                decode_stream(input.as_bytes(), &splits).unwrap(),
                decode_stream(input.as_bytes(), &[]).unwrap()
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode_stream(&bytes, &[]);
            let _ = Gemini.decode(&bytes, &dctx());
            let _ = Gemini.decode_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), &bytes);
        }

        #[test]
        fn arbitrary_frames_never_panic(data in "\\PC{0,200}") {
            let mut dec = GeminiStream::new(dctx(), "chatcmpl-p".into(), 0);
            let mut out = Vec::new();
            let _ = dec.event(SseEvent { event: None, data }, &mut out);
            let _ = dec.finish(&mut out);
        }
    }
}
