//! The Anthropic Messages codec: `POST {base}/v1/messages`.
//!
//! The base URL is the bare origin (`https://api.anthropic.com`). Requests carry `x-api-key`
//! (marked sensitive), `anthropic-version: 2023-06-01` and `content-type: application/json`.
//!
//! # Request mapping
//!
//! | OpenAI / OpenRouter field | Anthropic | how |
//! | --- | --- | --- |
//! | `model` | `model` | mapped (the catalog's upstream name) |
//! | `system` / `developer` messages | top-level `system` | mapped: lifted out of `messages`; a string (messages joined by a blank line), or an array of text blocks when any part carries `cache_control` |
//! | `user` / `assistant` messages | `messages` | mapped; consecutive messages of the same role become one turn; empty text is skipped |
//! | `tool` messages | `tool_result` blocks (`tool_use_id`, `content`) | mapped: consecutive results share one user turn, placed before any user text of that turn |
//! | assistant `tool_calls` | `tool_use` blocks | mapped: `arguments` (a JSON string) becomes `input`; arguments that are not a JSON object are a 400 |
//! | assistant `reasoning_details` | `thinking` (with `signature`) / `redacted_thinking` blocks | mapped: restored first in the assistant turn; entries sharing an `index` are merged (streamed fragments); entries of other formats and unsigned text are skipped |
//! | `image_url` parts | `image` blocks | mapped: `data:` URLs → `base64` source, `http(s)` URLs → `url` source |
//! | `file` parts with a PDF `data:` URL | `document` blocks | mapped |
//! | `input_audio`, other `file` parts, legacy `function` messages | — | refused (400, `unsupported_parameter`) |
//! | `cache_control` on content parts and tools | `cache_control` | passed through (OpenRouter's convention) |
//! | `max_completion_tokens` / `max_tokens` | `max_tokens` | mapped; default the catalog's `max_output`, else 4096; raised when the thinking budget needs room |
//! | `stop` (string or list) | `stop_sequences` | mapped |
//! | `temperature` | `temperature` | mapped, clamped to Anthropic's `0..=1`; dropped while thinking |
//! | `top_p` | `top_p` | mapped; dropped while thinking unless `>= 0.95` |
//! | `top_k` | `top_k` | mapped; dropped while thinking |
//! | `stream` | `stream` | mapped (usage is always reported at the end of a stream) |
//! | `tools` (functions) | `tools[] {name, description, input_schema}` | mapped; `input_schema` defaults to an empty object schema; `strict` dropped; non-function tools refused |
//! | `tool_choice` | `tool_choice` | mapped: `auto` → `auto`, `required` → `any`, named → `tool`, `none` → `none`; dropped without tools; forced choices refused while thinking (Anthropic rejects them) |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` | mapped |
//! | `reasoning` / `reasoning_effort` | `thinking: {type: enabled, budget_tokens}` | mapped: `reasoning.max_tokens` is the budget (at least 1024); an effort is a share of `max_tokens` (`minimal` 10 %, `low` 20 %, `medium` 50 %, `high` 80 %, `xhigh` 95 %, OpenRouter's ratios) clamped to `1024..=128000`; `enabled: true` alone means `medium`; `enabled: false`, effort `none` or a zero budget turn thinking off; the budget always stays below `max_tokens` |
//! | `reasoning.exclude: true` | thinking stays on | emulated: the ProviderTranslate layer drops `reasoning` from the answer; `reasoning_details` stay, since the signature covers the thinking text and multi-turn tool use needs it back |
//! | `response_format: json_object` / `json_schema` | a forced tool | emulated, see below |
//! | `response_format: text` | — | dropped (the default) |
//! | `user` | `metadata.user_id` | mapped |
//! | `n: 1` | — | dropped; `n > 1` refused (400, `unsupported_parameter`, param `n`) |
//! | `logprobs: true`, `top_logprobs > 0` | — | refused (400, `unsupported_parameter`) |
//! | `seed`, `frequency_penalty`, `presence_penalty`, `metadata`, `stream_options`, message `name`, assistant `refusal`, unknown fields | — | dropped |
//! | `models`, `route`, `provider` | — | dropped (the gateway did the routing) |
//!
//! # Structured output
//!
//! Anthropic has no `response_format`. A prompt instruction cannot promise JSON, so the codec
//! emulates it the way Anthropic documents for JSON output: it offers one tool named
//! `switchboard_json_response` whose `input_schema` is the requested schema (`{"type":
//! "object"}` for `json_object`) and forces it with `tool_choice`. Tool input is always a JSON
//! object, so the answer is valid JSON. The decoder recognises that tool by name (the codec is
//! stateless between encode and decode) and returns its input as the message `content` with
//! `finish_reason: "stop"` (`native_finish_reason` stays `tool_use`); in streams the input
//! fragments arrive as content deltas. Refused with a 400 (`unsupported_parameter`, param
//! `response_format`) when the emulation cannot work: together with client tools (the forced
//! tool would shadow them), together with thinking (Anthropic rejects forced tool use while
//! thinking), or when the schema's root is not an object.
//!
//! # Responses
//!
//! `text` blocks become `content`, `tool_use` blocks `tool_calls` (arguments = the serialized
//! input), `thinking` blocks `reasoning` plus OpenRouter-style `reasoning_details`
//! (`{"type": "reasoning.text", "text", "signature", "format": "anthropic-claude-v1", "index"}`),
//! `redacted_thinking` blocks `reasoning.encrypted` details carrying `data`. `stop_reason`
//! `end_turn` / `stop_sequence` → `stop`, `max_tokens` / `model_context_window_exceeded` →
//! `length`, `tool_use` → `tool_calls`, `refusal` → `content_filter`; the native value is kept
//! in `native_finish_reason`. Usage follows OpenAI semantics: `prompt_tokens` = input + cache
//! read + cache creation, `cached_tokens` = cache read, `cache_write_tokens` = cache creation.
//! Anthropic does not report thinking tokens separately, so `reasoning_tokens` stays 0.
//!
//! Streams become OpenAI chunks sharing the message id and one `created`: the role first, text
//! and reasoning deltas, tool calls with indices counted over `tool_use` blocks only (id, type
//! and name in the first fragment, argument pieces after), the finish reason on the chunk for
//! `message_stop`, then a usage-only chunk. An `error` event ends the stream with an [`Error`]
//! of the matching kind; a stream closed before `message_stop` is an error.

use std::borrow::Cow;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{error_for_status, DecodeContext, EncodeContext, ProviderCodec, StreamDecode};
use crate::client::UpstreamBody;
use crate::openai::sse::SseEvent;
use crate::openai::{
    new_completion_id, unix_now, AssistantMessage, ChatCompletion, ChatCompletionChunk,
    ChatRequest, Choice, ChunkChoice, CompletionTokensDetails, ContentPart, Delta, FinishReason,
    FunctionCall, FunctionCallDelta, Message, MessageContent, PromptTokensDetails, ResponseFormat,
    Role, Stop, Tool, ToolCall, ToolCallDelta, ToolChoice, Usage,
};
use crate::Error;

/// The `anthropic-version` header value.
const API_VERSION: &str = "2023-06-01";
/// `max_tokens` when neither the client nor the catalog sets one.
const DEFAULT_MAX_TOKENS: u32 = 4096;
/// Anthropic's smallest thinking budget.
const MIN_THINKING_BUDGET: u32 = 1024;
/// The largest budget derived from an effort level (OpenRouter's cap).
const MAX_EFFORT_BUDGET: u32 = 128_000;
/// OpenRouter's `format` tag for Anthropic reasoning details.
const REASONING_FORMAT: &str = "anthropic-claude-v1";
/// The tool that carries emulated `response_format` output.
const JSON_TOOL: &str = "switchboard_json_response";

/// The Anthropic Messages codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anthropic;

impl ProviderCodec for Anthropic {
    fn encode(
        &self,
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

    fn decode(&self, body: &[u8], ctx: &DecodeContext) -> Result<ChatCompletion, Error> {
        let msg: WireResponse = serde_json::from_slice(body).map_err(|e| {
            Error::upstream("the provider sent an invalid response body")
                .with_source(Box::new(e) as crate::BoxError)
        })?;
        if msg.kind.as_deref() == Some("error") {
            let err = msg.error.unwrap_or_default();
            return Err(error_from_type(&err.kind, err.message));
        }

        let mut text: Option<String> = None;
        let mut reasoning = String::new();
        let mut details = Vec::new();
        let mut tool_calls = Vec::new();
        let mut json_output = false;
        for block in msg.content {
            match block {
                RespBlock::Text { text: t } => text.get_or_insert_with(String::new).push_str(&t),
                RespBlock::ToolUse { id, name, input } => {
                    let arguments = serialize_input(&input);
                    if name == JSON_TOOL {
                        json_output = true;
                        text.get_or_insert_with(String::new).push_str(&arguments);
                    } else {
                        tool_calls.push(ToolCall {
                            id,
                            kind: "function".to_owned(),
                            function: FunctionCall { name, arguments },
                        });
                    }
                }
                RespBlock::Thinking {
                    thinking,
                    signature,
                } => {
                    let index = details.len() as u32;
                    details.push(text_detail(
                        (!thinking.is_empty()).then_some(thinking.as_str()),
                        signature.as_deref(),
                        index,
                    ));
                    reasoning.push_str(&thinking);
                }
                RespBlock::RedactedThinking { data } => {
                    let index = details.len() as u32;
                    details.push(encrypted_detail(&data, index));
                }
                RespBlock::Other => {}
            }
        }

        let native = msg.stop_reason;
        let finish = finish_reason(native.as_deref(), json_output && tool_calls.is_empty());
        let message = AssistantMessage {
            content: text,
            tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            reasoning: (!reasoning.is_empty()).then_some(reasoning),
            reasoning_details: (!details.is_empty()).then_some(details),
            ..AssistantMessage::default()
        };
        Ok(ChatCompletion {
            id: if msg.id.is_empty() {
                new_completion_id()
            } else {
                msg.id
            },
            object: "chat.completion".to_owned(),
            created: unix_now(),
            model: ctx.model.to_string(),
            choices: vec![Choice {
                index: 0,
                message,
                finish_reason: Some(finish),
                native_finish_reason: native,
                logprobs: None,
            }],
            usage: Some(msg.usage.unwrap_or_default().to_openai()),
            system_fingerprint: None,
            service_tier: None,
            provider: Some(ctx.provider.to_string()),
        })
    }

    fn decode_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        let message = serde_json::from_slice::<WireErrorResponse>(body)
            .ok()
            .map(|e| e.error.message)
            .filter(|m| !m.is_empty());
        error_for_status(status, headers, message, None)
    }

    fn stream_decoder(&self, ctx: &DecodeContext) -> Box<dyn StreamDecode> {
        Box::new(AnthropicStream::new(ctx.clone()))
    }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// A 400 for a parameter Anthropic cannot honour.
fn unsupported(param: &'static str, message: &'static str) -> Error {
    Error::invalid_request(message)
        .with_code("unsupported_parameter")
        .with_param(param)
}

/// A 400 for a malformed message.
fn bad_message(message: impl Into<Cow<'static, str>>) -> Error {
    Error::invalid_request(message).with_param("messages")
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
#[serde(untagged)]
enum WireSystem<'a> {
    Text(String),
    Blocks(Vec<Block<'a>>),
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: WireContent<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(Cow<'a, str>),
    Blocks(Vec<Block<'a>>),
}

/// One Anthropic content block of a request.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Image {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Document {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: ToolInput<'a>,
    },
    ToolResult {
        tool_use_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<WireContent<'a>>,
    },
    Thinking {
        thinking: Cow<'a, str>,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
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

fn stop_sequences(stop: &Stop) -> Option<Vec<&str>> {
    let v: Vec<&str> = match stop {
        Stop::One(s) => vec![s.as_str()],
        Stop::Many(v) => v.iter().map(String::as_str).collect(),
    };
    (!v.is_empty()).then_some(v)
}

/// `max_tokens` and the thinking config.
fn output_plan(
    req: &ChatRequest,
    ctx: &EncodeContext<'_>,
) -> Result<(u32, Option<WireThinking>), Error> {
    let base = req
        .max_output_tokens()
        .or(ctx.max_output)
        .unwrap_or(DEFAULT_MAX_TOKENS)
        .max(1);
    let Some(mut budget) = thinking_budget(req, base)? else {
        return Ok((base, None));
    };
    let mut max_tokens = base;
    if budget >= max_tokens {
        // Room for the answer on top of the thinking budget, within the model's cap.
        max_tokens = budget.saturating_add(base);
        if let Some(cap) = ctx.max_output {
            max_tokens = max_tokens.min(cap.max(base));
        }
        if budget >= max_tokens {
            budget = max_tokens.saturating_sub(1);
        }
        if budget < MIN_THINKING_BUDGET {
            return Err(unsupported(
                "reasoning",
                "the model's output limit is too small for extended thinking",
            ));
        }
    }
    Ok((
        max_tokens,
        Some(WireThinking {
            kind: "enabled",
            budget_tokens: budget,
        }),
    ))
}

/// The thinking budget the client asked for, if any.
fn thinking_budget(req: &ChatRequest, base: u32) -> Result<Option<u32>, Error> {
    let (effort, param) = match &req.reasoning {
        Some(r) if r.enabled == Some(false) => return Ok(None),
        Some(r) if r.max_tokens.is_some() => {
            return Ok(r
                .max_tokens
                .filter(|b| *b > 0)
                .map(|b| b.max(MIN_THINKING_BUDGET)));
        }
        Some(r) if r.effort.is_some() => (r.effort.as_deref(), "reasoning.effort"),
        Some(r) if r.enabled == Some(true) => (Some("medium"), "reasoning.enabled"),
        _ => (req.reasoning_effort.as_deref(), "reasoning_effort"),
    };
    let Some(effort) = effort else {
        return Ok(None);
    };
    let ratio = match effort {
        "none" => return Ok(None),
        "minimal" => 0.1,
        "low" => 0.2,
        "medium" => 0.5,
        "high" => 0.8,
        "xhigh" => 0.95,
        _ => {
            return Err(Error::invalid_request(format!(
                "unknown reasoning effort `{effort}` (expected none, minimal, low, medium, high or xhigh)"
            ))
            .with_param(param))
        }
    };
    let budget = (f64::from(base) * ratio) as u32;
    Ok(Some(budget.clamp(MIN_THINKING_BUDGET, MAX_EFFORT_BUDGET)))
}

/// One conversation turn being assembled: `lead` blocks go first (tool results in a user turn,
/// thinking in an assistant turn), then the rest in order.
struct Turn<'a> {
    role: Role,
    lead: Vec<Block<'a>>,
    rest: Vec<Block<'a>>,
}

impl<'a> Turn<'a> {
    fn into_wire(self) -> WireMessage<'a> {
        let role = if self.role == Role::Assistant {
            "assistant"
        } else {
            "user"
        };
        let Turn { lead, mut rest, .. } = self;
        let content = if lead.is_empty()
            && rest.len() == 1
            && matches!(
                rest.first(),
                Some(Block::Text {
                    cache_control: None,
                    ..
                })
            ) {
            match rest.pop() {
                Some(Block::Text { text, .. }) => WireContent::Text(text),
                _ => WireContent::Blocks(Vec::new()),
            }
        } else {
            let mut blocks = lead;
            blocks.append(&mut rest);
            WireContent::Blocks(blocks)
        };
        WireMessage { role, content }
    }
}

/// Lifts system messages out and turns the rest into alternating turns.
fn convert_messages(
    messages: &[Message],
) -> Result<(Option<WireSystem<'_>>, Vec<WireMessage<'_>>), Error> {
    let mut system: Vec<Block<'_>> = Vec::new();
    let mut system_cached = false;
    let mut system_msgs: Vec<String> = Vec::new();
    let mut turns: Vec<Turn<'_>> = Vec::new();

    for m in messages {
        let mut lead = Vec::new();
        let mut rest = Vec::new();
        let role = match m.role {
            Role::System | Role::Developer => {
                let mut joined = String::new();
                match &m.content {
                    None => {}
                    Some(MessageContent::Text(s)) => {
                        joined.push_str(s);
                        if !s.is_empty() {
                            system.push(text_block(s, None));
                        }
                    }
                    Some(MessageContent::Parts(parts)) => {
                        for p in parts {
                            let ContentPart::Text {
                                text,
                                cache_control,
                            } = p
                            else {
                                return Err(bad_message(
                                    "system and developer messages may only contain text",
                                ));
                            };
                            joined.push_str(text);
                            system_cached |= cache_control.is_some();
                            if !text.is_empty() {
                                system.push(text_block(text, cache_control.as_ref()));
                            }
                        }
                    }
                }
                if !joined.is_empty() {
                    system_msgs.push(joined);
                }
                continue;
            }
            Role::User => {
                user_blocks(m.content.as_ref(), &mut rest)?;
                Role::User
            }
            Role::Tool => {
                lead.push(tool_result(m)?);
                Role::User
            }
            Role::Assistant => {
                if let Some(details) = &m.reasoning_details {
                    restore_reasoning(details, &mut lead);
                }
                assistant_blocks(m, &mut rest)?;
                Role::Assistant
            }
            Role::Function => {
                return Err(Error::invalid_request(
                    "legacy `function` messages are not supported by this model; use `tool` messages",
                )
                .with_code("unsupported_parameter")
                .with_param("messages"));
            }
        };
        if lead.is_empty() && rest.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(t) if t.role == role => {
                t.lead.append(&mut lead);
                t.rest.append(&mut rest);
            }
            _ => turns.push(Turn { role, lead, rest }),
        }
    }

    let system = if system.is_empty() {
        None
    } else if system_cached {
        Some(WireSystem::Blocks(system))
    } else {
        Some(WireSystem::Text(system_msgs.join("\n\n")))
    };
    Ok((system, turns.into_iter().map(Turn::into_wire).collect()))
}

fn text_block<'a>(text: &'a str, cache_control: Option<&'a Value>) -> Block<'a> {
    Block::Text {
        text: Cow::Borrowed(text),
        cache_control,
    }
}

/// User content: text, images and PDF documents.
fn user_blocks<'a>(
    content: Option<&'a MessageContent>,
    out: &mut Vec<Block<'a>>,
) -> Result<(), Error> {
    match content {
        Some(MessageContent::Text(s)) if !s.is_empty() => out.push(text_block(s, None)),
        None | Some(MessageContent::Text(_)) => {}
        Some(MessageContent::Parts(parts)) => {
            for p in parts {
                if let Some(b) = part_block(p)? {
                    out.push(b);
                }
            }
        }
    }
    Ok(())
}

fn part_block(part: &ContentPart) -> Result<Option<Block<'_>>, Error> {
    Ok(match part {
        ContentPart::Text {
            text,
            cache_control,
        } => (!text.is_empty()).then(|| text_block(text, cache_control.as_ref())),
        ContentPart::ImageUrl {
            image_url,
            cache_control,
        } => Some(Block::Image {
            source: image_source(&image_url.url)?,
            cache_control: cache_control.as_ref(),
        }),
        ContentPart::File { file } => Some(Block::Document {
            source: pdf_source(file)?,
            cache_control: None,
        }),
        ContentPart::InputAudio { .. } => {
            return Err(
                Error::invalid_request("this model does not accept audio input")
                    .with_code("unsupported_parameter")
                    .with_param("messages"),
            )
        }
    })
}

/// `data:<media type>;base64,<data>` → base64 source; `http(s)://` → URL source.
fn image_source(url: &str) -> Result<Source<'_>, Error> {
    if let Some((media_type, data)) = parse_data_url(url) {
        return Ok(Source::Base64 { media_type, data });
    }
    if url.starts_with("data:") {
        return Err(bad_message(
            "image `data:` URLs must be base64-encoded (`data:image/png;base64,…`)",
        ));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Source::Url { url });
    }
    Err(bad_message(
        "`image_url.url` must be an http(s) URL or a base64 `data:` URL",
    ))
}

/// Splits a base64 `data:` URL into media type and payload.
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (header, data) = rest.split_once(',')?;
    let mut params = header.split(';');
    let media_type = params.next().filter(|m| !m.is_empty())?;
    params
        .any(|p| p.eq_ignore_ascii_case("base64"))
        .then_some((media_type, data))
}

/// A `file` part: only PDF `data:` URLs map to Anthropic documents.
fn pdf_source(file: &Value) -> Result<Source<'_>, Error> {
    let refuse = || {
        Error::invalid_request(
            "this model only accepts `file` parts carrying a PDF as a base64 `data:` URL in `file_data`",
        )
        .with_code("unsupported_parameter")
        .with_param("messages")
    };
    let url = file
        .get("file_data")
        .and_then(Value::as_str)
        .ok_or_else(refuse)?;
    match parse_data_url(url) {
        Some((media_type @ "application/pdf", data)) => Ok(Source::Base64 { media_type, data }),
        _ => Err(refuse()),
    }
}

/// A `role: tool` message → a `tool_result` block.
fn tool_result(m: &Message) -> Result<Block<'_>, Error> {
    let tool_use_id = m
        .tool_call_id
        .as_deref()
        .ok_or_else(|| bad_message("`tool` messages need a `tool_call_id`"))?;
    let content = match &m.content {
        None => None,
        Some(MessageContent::Text(s)) => {
            (!s.is_empty()).then_some(WireContent::Text(Cow::Borrowed(s)))
        }
        Some(MessageContent::Parts(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for p in parts {
                if let Some(b) = part_block(p)? {
                    blocks.push(b);
                }
            }
            (!blocks.is_empty()).then_some(WireContent::Blocks(blocks))
        }
    };
    Ok(Block::ToolResult {
        tool_use_id,
        content,
    })
}

/// Assistant text and tool calls.
fn assistant_blocks<'a>(m: &'a Message, out: &mut Vec<Block<'a>>) -> Result<(), Error> {
    match &m.content {
        Some(MessageContent::Text(s)) if !s.is_empty() => out.push(text_block(s, None)),
        None | Some(MessageContent::Text(_)) => {}
        Some(MessageContent::Parts(parts)) => {
            for p in parts {
                if let ContentPart::Text {
                    text,
                    cache_control,
                } = p
                {
                    if !text.is_empty() {
                        out.push(text_block(text, cache_control.as_ref()));
                    }
                }
            }
        }
    }
    for call in m.tool_calls.iter().flatten() {
        let args = call.function.arguments.trim();
        let input = if args.is_empty() {
            ToolInput(None)
        } else {
            let raw: &RawValue = serde_json::from_str(args).map_err(|_| {
                bad_message(format!(
                    "the arguments of tool call `{}` are not valid JSON",
                    call.id
                ))
            })?;
            if !raw.get().starts_with('{') {
                return Err(bad_message(format!(
                    "the arguments of tool call `{}` must be a JSON object",
                    call.id
                )));
            }
            ToolInput(Some(raw))
        };
        out.push(Block::ToolUse {
            id: &call.id,
            name: &call.function.name,
            input,
        });
    }
    Ok(())
}

/// A tool call's `input`: the client's arguments as they were, or `{}` when they were empty.
struct ToolInput<'a>(Option<&'a RawValue>);

impl Serialize for ToolInput<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            Some(raw) => raw.serialize(s),
            None => s.serialize_map(Some(0))?.end(),
        }
    }
}

/// Restores signed `thinking` / `redacted_thinking` blocks from OpenRouter-style
/// `reasoning_details`. Entries sharing an `index` (streamed fragments) are merged.
fn restore_reasoning<'a>(details: &'a [Value], out: &mut Vec<Block<'a>>) {
    enum Entry<'a> {
        Text {
            index: Option<u64>,
            text: Cow<'a, str>,
            signature: Option<&'a str>,
        },
        Encrypted {
            data: &'a str,
        },
    }
    let mut entries: Vec<Entry<'a>> = Vec::new();
    for d in details {
        let format = d.get("format").and_then(Value::as_str);
        if format.is_some_and(|f| f != REASONING_FORMAT) {
            continue;
        }
        match d.get("type").and_then(Value::as_str) {
            Some("reasoning.text") => {
                let index = d.get("index").and_then(Value::as_u64);
                let text = d.get("text").and_then(Value::as_str).unwrap_or("");
                let signature = d
                    .get("signature")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty());
                let existing = index.and_then(|i| {
                    entries.iter_mut().rev().find_map(|e| match e {
                        Entry::Text {
                            index: Some(j),
                            text,
                            signature,
                        } if *j == i => Some((text, signature)),
                        _ => None,
                    })
                });
                match existing {
                    Some((t, sig)) => {
                        if !text.is_empty() {
                            t.to_mut().push_str(text);
                        }
                        if signature.is_some() {
                            *sig = signature;
                        }
                    }
                    None => entries.push(Entry::Text {
                        index,
                        text: Cow::Borrowed(text),
                        signature,
                    }),
                }
            }
            Some("reasoning.encrypted") => {
                if let Some(data) = d.get("data").and_then(Value::as_str) {
                    entries.push(Entry::Encrypted { data });
                }
            }
            _ => {}
        }
    }
    for e in entries {
        match e {
            Entry::Text {
                text,
                signature: Some(signature),
                ..
            } => out.push(Block::Thinking {
                thinking: text,
                signature,
            }),
            Entry::Text { .. } => {}
            Entry::Encrypted { data } => out.push(Block::RedactedThinking { data }),
        }
    }
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

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    content: Vec<RespBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

/// A content block of a response (or the start of one in a stream).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum RespBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        #[serde(default)]
        data: String,
    },
    #[serde(other)]
    Other,
}

/// Anthropic usage; every field optional because `message_delta` may carry only some.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Overwrites the fields `newer` reports (Anthropic's counts are cumulative).
    fn update(&mut self, newer: &Self) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = newer
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    fn to_openai(self) -> Usage {
        let input = self.input_tokens.unwrap_or(0);
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        let output = self.output_tokens.unwrap_or(0);
        let prompt = input.saturating_add(read).saturating_add(write);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: output,
            total_tokens: prompt.saturating_add(output),
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: read,
                cache_write_tokens: (write > 0).then_some(write),
                audio_tokens: None,
            }),
            completion_tokens_details: Some(CompletionTokensDetails::default()),
            cost: None,
            cost_details: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct WireErrorResponse {
    error: WireError,
}

/// Maps an Anthropic error `type` (stream `error` events, error bodies on 200) to an [`Error`]
/// through the status Anthropic documents for it.
fn error_from_type(kind: &str, message: String) -> Error {
    let status = match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    error_for_status(
        status,
        &HeaderMap::new(),
        Some(message).filter(|m| !m.is_empty()),
        None,
    )
}

/// Normalises a `stop_reason`; `json_output`: the forced JSON tool answered.
fn finish_reason(native: Option<&str>, json_output: bool) -> FinishReason {
    match native {
        None => FinishReason::Stop,
        Some("tool_use") if json_output => FinishReason::Stop,
        Some("model_context_window_exceeded") => FinishReason::Length,
        Some(s) => FinishReason::from_native(s),
    }
}

fn serialize_input(input: &Value) -> String {
    if input.is_null() {
        return "{}".to_owned();
    }
    serde_json::to_string(input).unwrap_or_else(|_| "{}".to_owned())
}

fn text_detail(text: Option<&str>, signature: Option<&str>, index: u32) -> Value {
    let mut m = Map::with_capacity(5);
    m.insert("type".into(), Value::from("reasoning.text"));
    if let Some(t) = text {
        m.insert("text".into(), Value::from(t));
    }
    if let Some(s) = signature {
        m.insert("signature".into(), Value::from(s));
    }
    m.insert("format".into(), Value::from(REASONING_FORMAT));
    m.insert("index".into(), Value::from(index));
    Value::Object(m)
}

fn encrypted_detail(data: &str, index: u32) -> Value {
    let mut m = Map::with_capacity(4);
    m.insert("type".into(), Value::from("reasoning.encrypted"));
    m.insert("data".into(), Value::from(data));
    m.insert("format".into(), Value::from(REASONING_FORMAT));
    m.insert("index".into(), Value::from(index));
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: RespBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: WireDelta,
    },
    ContentBlockStop,
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    Error {
        #[serde(default)]
        error: WireError,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Default, Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        #[serde(default)]
        text: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    ThinkingDelta {
        #[serde(default)]
        thinking: String,
    },
    SignatureDelta {
        #[serde(default)]
        signature: String,
    },
    #[serde(other)]
    Other,
}

/// What a content block of the stream turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    /// A tool call with its OpenAI index.
    Tool(u32),
    /// The `response_format` emulation tool: its input is the content.
    JsonTool,
    /// Thinking with its `reasoning_details` index.
    Thinking(u32),
    Other,
}

/// Stream state for one Anthropic SSE stream.
#[derive(Debug)]
struct AnthropicStream {
    ctx: DecodeContext,
    provider: String,
    id: String,
    created: u64,
    started: bool,
    done: bool,
    /// Content block index → kind (few blocks; searched from the most recent).
    blocks: Vec<(u32, BlockKind)>,
    next_tool: u32,
    next_reasoning: u32,
    json_output: bool,
    usage: WireUsage,
    stop_reason: Option<String>,
}

impl AnthropicStream {
    fn new(ctx: DecodeContext) -> Self {
        Self {
            provider: ctx.provider.to_string(),
            ctx,
            id: String::new(),
            created: 0,
            started: false,
            done: false,
            blocks: Vec::new(),
            next_tool: 0,
            next_reasoning: 0,
            json_output: false,
            usage: WireUsage::default(),
            stop_reason: None,
        }
    }

    fn chunk(&self) -> ChatCompletionChunk {
        let mut c = ChatCompletionChunk::new(self.id.as_str(), &*self.ctx.model, self.created);
        c.provider = Some(self.provider.clone());
        c
    }

    fn delta(&self, delta: Delta) -> ChatCompletionChunk {
        let mut c = self.chunk();
        c.choices.push(ChunkChoice {
            index: 0,
            delta,
            finish_reason: None,
            native_finish_reason: None,
            logprobs: None,
        });
        c
    }

    fn kind_of(&self, index: u32) -> BlockKind {
        self.blocks
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map_or(BlockKind::Other, |(_, k)| *k)
    }

    fn block_start(&mut self, index: u32, block: RespBlock, out: &mut Vec<ChatCompletionChunk>) {
        let kind = match block {
            RespBlock::Text { text } => {
                if !text.is_empty() {
                    out.push(self.delta(Delta {
                        content: Some(text),
                        ..Delta::default()
                    }));
                }
                BlockKind::Text
            }
            RespBlock::ToolUse { name, .. } if name == JSON_TOOL => {
                self.json_output = true;
                BlockKind::JsonTool
            }
            RespBlock::ToolUse { id, name, .. } => {
                let n = self.next_tool;
                self.next_tool = n.saturating_add(1);
                out.push(self.delta(Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: n,
                        id: Some(id),
                        kind: Some("function".to_owned()),
                        function: Some(FunctionCallDelta {
                            name: Some(name),
                            arguments: Some(String::new()),
                        }),
                    }]),
                    ..Delta::default()
                }));
                BlockKind::Tool(n)
            }
            RespBlock::Thinking {
                thinking,
                signature,
            } => {
                let n = self.next_reasoning;
                self.next_reasoning = n.saturating_add(1);
                if !thinking.is_empty() || signature.is_some() {
                    let text = Some(thinking.as_str()).filter(|t| !t.is_empty());
                    let detail = text_detail(text, signature.as_deref(), n);
                    out.push(self.delta(Delta {
                        reasoning: text.map(str::to_owned),
                        reasoning_details: Some(vec![detail]),
                        ..Delta::default()
                    }));
                }
                BlockKind::Thinking(n)
            }
            RespBlock::RedactedThinking { data } => {
                let n = self.next_reasoning;
                self.next_reasoning = n.saturating_add(1);
                out.push(self.delta(Delta {
                    reasoning_details: Some(vec![encrypted_detail(&data, n)]),
                    ..Delta::default()
                }));
                BlockKind::Other
            }
            RespBlock::Other => BlockKind::Other,
        };
        self.blocks.push((index, kind));
    }

    fn block_delta(&self, index: u32, delta: WireDelta, out: &mut Vec<ChatCompletionChunk>) {
        let kind = self.kind_of(index);
        let d = match (delta, kind) {
            (WireDelta::TextDelta { text }, _) if !text.is_empty() => Delta {
                content: Some(text),
                ..Delta::default()
            },
            (WireDelta::InputJsonDelta { partial_json }, BlockKind::Tool(n))
                if !partial_json.is_empty() =>
            {
                Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: n,
                        id: None,
                        kind: None,
                        function: Some(FunctionCallDelta {
                            name: None,
                            arguments: Some(partial_json),
                        }),
                    }]),
                    ..Delta::default()
                }
            }
            (WireDelta::InputJsonDelta { partial_json }, BlockKind::JsonTool)
                if !partial_json.is_empty() =>
            {
                Delta {
                    content: Some(partial_json),
                    ..Delta::default()
                }
            }
            (WireDelta::ThinkingDelta { thinking }, BlockKind::Thinking(n))
                if !thinking.is_empty() =>
            {
                let detail = text_detail(Some(&thinking), None, n);
                Delta {
                    reasoning: Some(thinking),
                    reasoning_details: Some(vec![detail]),
                    ..Delta::default()
                }
            }
            (WireDelta::SignatureDelta { signature }, BlockKind::Thinking(n))
                if !signature.is_empty() =>
            {
                Delta {
                    reasoning_details: Some(vec![text_detail(None, Some(&signature), n)]),
                    ..Delta::default()
                }
            }
            _ => return,
        };
        out.push(self.delta(d));
    }

    fn message_stop(&mut self, out: &mut Vec<ChatCompletionChunk>) {
        self.done = true;
        let finish = finish_reason(
            self.stop_reason.as_deref(),
            self.json_output && self.next_tool == 0,
        );
        let mut c = self.chunk();
        c.choices.push(ChunkChoice {
            index: 0,
            delta: Delta::default(),
            finish_reason: Some(finish),
            native_finish_reason: self.stop_reason.take(),
            logprobs: None,
        });
        out.push(c);
        let mut u = self.chunk();
        u.usage = Some(Box::new(self.usage.to_openai()));
        out.push(u);
    }
}

impl StreamDecode for AnthropicStream {
    fn event(&mut self, ev: SseEvent, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        let data = ev.data.trim();
        if self.done || data.is_empty() {
            return Ok(());
        }
        let event: WireEvent = serde_json::from_str(data).map_err(|e| {
            Error::upstream("the provider sent a malformed stream event")
                .with_source(Box::new(e) as crate::BoxError)
        })?;
        match event {
            WireEvent::Error { error } => return Err(error_from_type(&error.kind, error.message)),
            WireEvent::Ping | WireEvent::Other | WireEvent::ContentBlockStop => {}
            WireEvent::MessageStart { message } => {
                if self.started {
                    return Err(Error::upstream(
                        "the provider sent a second message_start in one stream",
                    ));
                }
                self.started = true;
                self.id = if message.id.is_empty() {
                    new_completion_id()
                } else {
                    message.id
                };
                self.created = unix_now();
                if let Some(u) = &message.usage {
                    self.usage.update(u);
                }
                out.push(self.delta(Delta {
                    role: Some("assistant".to_owned()),
                    content: Some(String::new()),
                    ..Delta::default()
                }));
            }
            other => {
                if !self.started {
                    return Err(Error::upstream(
                        "the provider's stream did not begin with message_start",
                    ));
                }
                match other {
                    WireEvent::ContentBlockStart {
                        index,
                        content_block,
                    } => self.block_start(index, content_block, out),
                    WireEvent::ContentBlockDelta { index, delta } => {
                        self.block_delta(index, delta, out);
                    }
                    WireEvent::MessageDelta { delta, usage } => {
                        if delta.stop_reason.is_some() {
                            self.stop_reason = delta.stop_reason;
                        }
                        if let Some(u) = &usage {
                            self.usage.update(u);
                        }
                    }
                    WireEvent::MessageStop => self.message_stop(out),
                    _ => {}
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Provider, ProviderKind};
    use crate::openai::sse::SseDecoder;
    use crate::ErrorKind;
    use serde_json::json;

    fn provider() -> Provider {
        Provider::new(
            "anthropic",
            ProviderKind::Anthropic,
            "https://api.anthropic.com/",
        )
        .with_api_key("sk-ant-test")
    }

    fn encode_with(
        body: Value,
        max_output: Option<u32>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        let req = ChatRequest::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
        let p = provider();
        Anthropic.encode(
            &req,
            &EncodeContext {
                provider: &p,
                upstream_model: "claude-sonnet-4-20250514",
                max_output,
            },
        )
    }

    fn encode(body: Value) -> Value {
        let r = encode_with(body, None).unwrap();
        serde_json::from_slice(&r.body().to_bytes()).unwrap()
    }

    fn encode_err(body: Value) -> Error {
        encode_with(body, None).unwrap_err()
    }

    fn ctx() -> DecodeContext {
        DecodeContext {
            model: "anthropic/claude-sonnet-4".into(),
            provider: "anthropic".into(),
        }
    }

    // ----- requests ---------------------------------------------------------------------------

    #[test]
    fn encodes_url_headers_and_minimal_body() {
        let r = encode_with(
            json!({"model": "anthropic/claude-sonnet-4", "stream": true,
                   "messages": [{"role": "user", "content": "Hello, world"}]}),
            None,
        )
        .unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri(), "https://api.anthropic.com/v1/messages");
        assert_eq!(r.headers()["x-api-key"], "sk-ant-test");
        assert!(r.headers()["x-api-key"].is_sensitive());
        assert_eq!(r.headers()["anthropic-version"], "2023-06-01");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert!(r.headers().get("authorization").is_none());
        let v: Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
        assert_eq!(
            v,
            json!({
                "model": "claude-sonnet-4-20250514",
                "max_tokens": 4096,
                "messages": [{"role": "user", "content": "Hello, world"}],
                "stream": true
            })
        );
    }

    #[test]
    fn max_tokens_precedence() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        let body = |extra: Value| {
            let mut b = json!({"model": "m", "messages": msgs});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            b
        };
        let mt = |b: Value, cap: Option<u32>| -> Value {
            let r = encode_with(b, cap).unwrap();
            serde_json::from_slice::<Value>(&r.body().to_bytes()).unwrap()["max_tokens"].clone()
        };
        assert_eq!(
            mt(
                body(json!({"max_tokens": 100, "max_completion_tokens": 200})),
                Some(8192)
            ),
            200
        );
        assert_eq!(mt(body(json!({"max_tokens": 100})), Some(8192)), 100);
        assert_eq!(mt(body(json!({})), Some(8192)), 8192);
        assert_eq!(mt(body(json!({})), None), 4096);
    }

    #[test]
    fn lifts_system_and_merges_same_role_turns() {
        let v = encode(json!({"model": "m", "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in "}, {"type": "text", "text": "French."}]},
            {"role": "user", "content": [{"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "assistant", "content": [{"type": "text", "text": "!"}]},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "Bye"}
        ]}));
        assert_eq!(v["system"], "You are terse.\n\nAnswer in French.");
        assert_eq!(
            v["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Bonjour"}, {"type": "text", "text": "!"}]},
                {"role": "user", "content": "Bye"}
            ])
        );
    }

    #[test]
    fn system_with_cache_control_becomes_text_blocks() {
        // Prompt caching example (Anthropic docs), expressed as OpenRouter content parts.
        let v = encode(json!({"model": "m", "messages": [
            {"role": "system", "content": [
                {"type": "text", "text": "You are an AI assistant tasked with analyzing literary works."},
                {"type": "text", "text": "<the entire contents of Pride and Prejudice>", "cache_control": {"type": "ephemeral"}}
            ]},
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Analyze the major themes.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ]}
        ]}));
        assert_eq!(
            v["system"],
            json!([
                {"type": "text", "text": "You are an AI assistant tasked with analyzing literary works."},
                {"type": "text", "text": "<the entire contents of Pride and Prejudice>", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Be brief."}
            ])
        );
        assert_eq!(
            v["messages"][0]["content"],
            json!([{"type": "text", "text": "Analyze the major themes.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
        );
    }

    #[test]
    fn images_by_data_url_and_by_url() {
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
                {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg", "detail": "high"}, "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Describe these images."}
            ]}]}),
        );
        assert_eq!(
            v["messages"][0]["content"],
            json!([
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
                {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"}, "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Describe these images."}
            ])
        );
        for url in ["data:image/svg+xml,<svg/>", "ftp://x/y.png"] {
            let e = encode_err(
                json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}]}]}),
            );
            assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{url}");
        }
    }

    #[test]
    fn pdf_files_become_documents_and_audio_is_refused() {
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}
            ]}]}),
        );
        assert_eq!(
            v["messages"][0]["content"][0],
            json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}})
        );
        let e = encode_err(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]}),
        );
        assert_eq!(e.code(), Some("unsupported_parameter"));
        let e = encode_err(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_id": "file-abc"}}]}]}),
        );
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    }

    fn weather_tool() -> Value {
        json!({"type": "function", "function": {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}}, "required": ["location"]}
        }})
    }

    #[test]
    fn tools_and_every_tool_choice() {
        let base = |choice: Option<Value>, parallel: Option<bool>| {
            let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "What is the weather like in San Francisco?"}],
                "tools": [weather_tool(), {"type": "function", "function": {"name": "get_time"}, "cache_control": {"type": "ephemeral"}}]});
            if let Some(c) = choice {
                b["tool_choice"] = c;
            }
            if let Some(p) = parallel {
                b["parallel_tool_calls"] = json!(p);
            }
            encode(b)
        };
        let v = base(None, None);
        assert_eq!(
            v["tools"],
            json!([
                {"name": "get_weather", "description": "Get the current weather in a given location",
                 "input_schema": {"type": "object", "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}}, "required": ["location"]}},
                {"name": "get_time", "input_schema": {"type": "object", "properties": {}}, "cache_control": {"type": "ephemeral"}}
            ])
        );
        assert!(v.get("tool_choice").is_none());
        assert_eq!(
            base(Some(json!("auto")), None)["tool_choice"],
            json!({"type": "auto"})
        );
        assert_eq!(
            base(Some(json!("required")), None)["tool_choice"],
            json!({"type": "any"})
        );
        assert_eq!(
            base(Some(json!("none")), None)["tool_choice"],
            json!({"type": "none"})
        );
        assert_eq!(
            base(
                Some(json!({"type": "function", "function": {"name": "get_weather"}})),
                None
            )["tool_choice"],
            json!({"type": "tool", "name": "get_weather"})
        );
        assert_eq!(
            base(Some(json!("required")), Some(false))["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            base(None, Some(false))["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        assert!(base(None, Some(true)).get("tool_choice").is_none());
        // No tools: tool_choice has nothing to choose from and is dropped.
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
        );
        assert!(v.get("tool_choice").is_none() && v.get("tools").is_none());
    }

    #[test]
    fn non_function_tools_are_refused() {
        let e = encode_err(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search", "function": {"name": "s"}}]}),
        );
        assert_eq!(e.code(), Some("unsupported_parameter"));
        assert_eq!(e.param(), Some("tools"));
    }

    #[test]
    fn tool_calls_and_grouped_tool_results() {
        let v = encode(json!({"model": "m", "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Checking both.", "tool_calls": [
                {"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
                {"id": "toolu_02", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_01", "content": "15 degrees"},
            {"role": "tool", "tool_call_id": "toolu_02", "content": [{"type": "text", "text": "12:00"}]},
            {"role": "user", "content": "Thanks, and tomorrow?"}
        ]}));
        assert_eq!(
            v["messages"],
            json!([
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking both."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris"}},
                    {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "15 degrees"},
                    {"type": "tool_result", "tool_use_id": "toolu_02", "content": [{"type": "text", "text": "12:00"}]},
                    {"type": "text", "text": "Thanks, and tomorrow?"}
                ]}
            ])
        );
    }

    #[test]
    fn tool_results_go_before_user_text_in_a_merged_turn() {
        let v = encode(json!({"model": "m", "messages": [
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "note"},
            {"role": "tool", "tool_call_id": "t1", "content": "ok"}
        ]}));
        assert_eq!(v["messages"][1]["content"][0]["type"], "tool_result");
        assert_eq!(v["messages"][1]["content"][1]["type"], "text");
    }

    #[test]
    fn invalid_tool_arguments_are_400() {
        for args in ["{not json", "[1, 2]", "\"s\""] {
            let e = encode_err(json!({"model": "m", "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": args}}]}
            ]}));
            assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{args}");
            assert_eq!(e.status(), 400);
        }
        let e = encode_err(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}));
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn thinking_config_from_reasoning() {
        let msgs = json!([{"role": "user", "content": "Are there an infinite number of prime numbers such that n mod 4 == 3?"}]);
        let with = |extra: Value| {
            let mut b = json!({"model": "m", "messages": msgs});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            encode(b)
        };
        // Budget given directly (the documented example).
        let v = with(json!({"max_tokens": 16000, "reasoning": {"max_tokens": 10000}}));
        assert_eq!(v["max_tokens"], 16000);
        assert_eq!(
            v["thinking"],
            json!({"type": "enabled", "budget_tokens": 10000})
        );
        // Effort: a share of max_tokens.
        let v = with(json!({"max_tokens": 10000, "reasoning": {"effort": "high"}}));
        assert_eq!(v["thinking"]["budget_tokens"], 8000);
        let v = with(json!({"max_tokens": 10000, "reasoning_effort": "medium"}));
        assert_eq!(v["thinking"]["budget_tokens"], 5000);
        let v = with(json!({"max_tokens": 10000, "reasoning": {"enabled": true}}));
        assert_eq!(v["thinking"]["budget_tokens"], 5000);
        // At least 1024, and below max_tokens (raised when needed).
        let v = with(json!({"reasoning_effort": "low"}));
        assert_eq!(v["thinking"]["budget_tokens"], 1024);
        assert_eq!(v["max_tokens"], 4096);
        let v = with(json!({"max_tokens": 1000, "reasoning": {"max_tokens": 2000}}));
        assert_eq!(v["thinking"]["budget_tokens"], 2000);
        assert_eq!(v["max_tokens"], 3000);
        let v = with(json!({"max_tokens": 500, "reasoning": {"effort": "low"}}));
        assert_eq!(v["thinking"]["budget_tokens"], 1024);
        assert_eq!(v["max_tokens"], 1524);
        // Exclude still thinks (the translate layer strips the text from the answer).
        let v = with(json!({"reasoning": {"effort": "medium", "exclude": true}}));
        assert_eq!(v["thinking"]["type"], "enabled");
        assert!(v["thinking"].get("display").is_none());
        // Off.
        for extra in [
            json!({"reasoning": {"enabled": false, "effort": "high"}}),
            json!({"reasoning_effort": "none"}),
            json!({"reasoning": {"exclude": true}}),
            json!({}),
        ] {
            assert!(with(extra.clone()).get("thinking").is_none(), "{extra}");
        }
        // Sampling parameters Anthropic rejects while thinking are dropped.
        let v =
            with(json!({"reasoning_effort": "high", "temperature": 0.2, "top_k": 5, "top_p": 0.5}));
        assert!(
            v.get("temperature").is_none() && v.get("top_k").is_none() && v.get("top_p").is_none()
        );
        let v = with(json!({"reasoning_effort": "high", "top_p": 0.97}));
        assert_eq!(v["top_p"], 0.97);
        // Unknown effort.
        let e = encode_err(json!({"model": "m", "messages": msgs, "reasoning_effort": "extreme"}));
        assert_eq!(e.param(), Some("reasoning_effort"));
    }

    #[test]
    fn catalog_cap_bounds_the_raised_max_tokens() {
        let r = encode_with(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                   "max_tokens": 4000, "reasoning": {"max_tokens": 8000}}),
            Some(8192),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
        assert_eq!(v["max_tokens"], 8192);
        assert_eq!(v["thinking"]["budget_tokens"], 8000);
    }

    #[test]
    fn forced_tool_choice_while_thinking_is_refused() {
        let e = encode_err(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [weather_tool()], "tool_choice": "required", "reasoning": {"effort": "low"}}),
        );
        assert_eq!(e.code(), Some("unsupported_parameter"));
        assert_eq!(e.param(), Some("tool_choice"));
    }

    #[test]
    fn sampling_stop_and_user() {
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "temperature": 1.5, "top_p": 0.9, "top_k": 40, "stop": ["\n\nHuman:", "END"],
            "user": "user-123", "n": 1, "seed": 7, "frequency_penalty": 0.5, "presence_penalty": 0.1,
            "logprobs": false, "metadata": {"task": "t"}, "logit_bias": {"1": 2}}),
        );
        assert_eq!(v["temperature"], 1.0);
        assert_eq!(v["top_p"], 0.9);
        assert_eq!(v["top_k"], 40);
        assert_eq!(v["stop_sequences"], json!(["\n\nHuman:", "END"]));
        assert_eq!(v["metadata"], json!({"user_id": "user-123"}));
        for dropped in [
            "n",
            "seed",
            "frequency_penalty",
            "presence_penalty",
            "logprobs",
            "logit_bias",
            "user",
            "stream",
        ] {
            assert!(v.get(dropped).is_none(), "{dropped}");
        }
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": "END"}),
        );
        assert_eq!(v["stop_sequences"], json!(["END"]));
    }

    #[test]
    fn refused_parameters() {
        for (extra, param) in [
            (json!({"n": 2}), "n"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"logprobs": true, "top_logprobs": 3}), "logprobs"),
            (json!({"top_logprobs": 3}), "top_logprobs"),
        ] {
            let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let e = encode_err(b);
            assert_eq!(e.kind(), ErrorKind::InvalidRequest);
            assert_eq!(e.code(), Some("unsupported_parameter"));
            assert_eq!(e.param(), Some(param));
        }
        let e = encode_err(
            json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
        );
        assert_eq!(e.code(), Some("unsupported_parameter"));
    }

    #[test]
    fn reasoning_details_restore_signed_thinking_before_tool_use() {
        let v = encode(
            json!({"model": "m", "reasoning": {"max_tokens": 2000}, "max_tokens": 4000, "messages": [
                {"role": "user", "content": "What's the weather in Paris?"},
                {"role": "assistant", "content": "Let me check.", "reasoning": "The user wants the weather.",
                 "tool_calls": [{"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}],
                 "reasoning_details": [
                    {"type": "reasoning.text", "text": "The user wants ", "format": "anthropic-claude-v1", "index": 0},
                    {"type": "reasoning.text", "text": "the weather.", "format": "anthropic-claude-v1", "index": 0},
                    {"type": "reasoning.text", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h", "format": "anthropic-claude-v1", "index": 0},
                    {"type": "reasoning.encrypted", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a", "format": "anthropic-claude-v1", "index": 1},
                    {"type": "reasoning.text", "text": "unsigned", "format": "anthropic-claude-v1", "index": 2},
                    {"type": "reasoning.summary", "summary": "s", "format": "openai-responses-v1", "index": 3},
                    {"type": "reasoning.text", "text": "other", "signature": "x", "format": "google-gemini-v1", "index": 4}
                 ]},
                {"role": "tool", "tool_call_id": "toolu_01", "content": "15 degrees"}
            ]}),
        );
        assert_eq!(
            v["messages"][1],
            json!({"role": "assistant", "content": [
                {"type": "thinking", "thinking": "The user wants the weather.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris"}}
            ]})
        );
    }

    #[test]
    fn decoded_reasoning_details_round_trip() {
        let c = Anthropic
            .decode(THINKING_RESPONSE.as_bytes(), &ctx())
            .unwrap();
        let m = &c.choices[0].message;
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": m.content, "reasoning_details": m.reasoning_details},
            {"role": "user", "content": "and?"}
        ]});
        let v = encode(body);
        assert_eq!(v["messages"][1]["content"][0]["type"], "thinking");
        assert_eq!(
            v["messages"][1]["content"][0]["signature"],
            "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL...."
        );
        assert_eq!(v["messages"][1]["content"][1]["type"], "redacted_thinking");
        assert_eq!(v["messages"][1]["content"][2]["type"], "text");
    }

    #[test]
    fn response_format_is_emulated_with_a_forced_tool() {
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "Extract."}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true,
                "schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}}),
        );
        assert_eq!(
            v["tools"],
            json!([{"name": JSON_TOOL, "description": "Give the final answer as JSON.",
                    "input_schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}])
        );
        assert_eq!(v["tool_choice"], json!({"type": "tool", "name": JSON_TOOL}));
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"}}),
        );
        assert_eq!(v["tools"][0]["input_schema"], json!({"type": "object"}));
        let v = encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "text"}}),
        );
        assert!(v.get("tools").is_none());
        for extra in [
            json!({"tools": [weather_tool()]}),
            json!({"reasoning": {"effort": "low"}}),
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "array"}}}}),
        ] {
            let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_object"}});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let e = encode_err(b);
            assert_eq!(e.param(), Some("response_format"), "{extra}");
        }
        let e = encode_err(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": JSON_TOOL}}]}),
        );
        assert_eq!(e.param(), Some("tools"));
    }

    // ----- responses --------------------------------------------------------------------------

    // Anthropic docs: Messages API response example.
    const TEXT_RESPONSE: &str = r#"{
      "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
      "type": "message",
      "role": "assistant",
      "model": "claude-sonnet-4-20250514",
      "content": [{"type": "text", "text": "Hi! My name is Claude."}],
      "stop_reason": "end_turn",
      "stop_sequence": null,
      "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1800}
    }"#;

    // Anthropic docs: tool use response.
    const TOOL_RESPONSE: &str = r#"{
      "id": "msg_01Aq9w938a90dw8q",
      "type": "message",
      "model": "claude-sonnet-4-20250514",
      "stop_reason": "tool_use",
      "role": "assistant",
      "content": [
        {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA", "unit": "celsius"}}
      ],
      "usage": {"input_tokens": 472, "output_tokens": 89}
    }"#;

    // Anthropic docs: extended thinking response (plus a redacted block).
    const THINKING_RESPONSE: &str = r#"{
      "id": "msg_01ThinkingExample",
      "type": "message",
      "role": "assistant",
      "model": "claude-sonnet-4-20250514",
      "content": [
        {"type": "thinking", "thinking": "Let me analyze this step by step...", "signature": "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL...."},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"},
        {"type": "text", "text": "Based on my analysis..."}
      ],
      "stop_reason": "end_turn",
      "stop_sequence": null,
      "usage": {"input_tokens": 50, "output_tokens": 300}
    }"#;

    #[test]
    fn decodes_text_response_with_cache_usage() {
        let c = Anthropic.decode(TEXT_RESPONSE.as_bytes(), &ctx()).unwrap();
        assert_eq!(c.id, "msg_013Zva2CMHLNnXjNJJKqJ2EF");
        assert_eq!(c.object, "chat.completion");
        assert_eq!(c.model, "anthropic/claude-sonnet-4");
        assert_eq!(c.provider.as_deref(), Some("anthropic"));
        let ch = &c.choices[0];
        assert_eq!(ch.message.role, "assistant");
        assert_eq!(
            ch.message.content.as_deref(),
            Some("Hi! My name is Claude.")
        );
        assert!(ch.message.tool_calls.is_none() && ch.message.reasoning.is_none());
        assert_eq!(ch.finish_reason, Some(FinishReason::Stop));
        assert_eq!(ch.native_finish_reason.as_deref(), Some("end_turn"));
        let u = c.usage.unwrap();
        assert_eq!(u.prompt_tokens, 2095 + 1800 + 100);
        assert_eq!(u.completion_tokens, 503);
        assert_eq!(u.total_tokens, 2095 + 1800 + 100 + 503);
        assert_eq!(u.cached_tokens(), 1800);
        assert_eq!(u.cache_write_tokens(), 100);
        assert_eq!(u.reasoning_tokens(), 0);
    }

    #[test]
    fn decodes_tool_use_response() {
        let c = Anthropic.decode(TOOL_RESPONSE.as_bytes(), &ctx()).unwrap();
        let ch = &c.choices[0];
        assert_eq!(
            ch.message.content.as_deref(),
            Some("I'll check the current weather in San Francisco for you.")
        );
        let calls = ch.message.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].id, "toolu_01A09q90qw90lq917835lq9");
        assert_eq!(calls[0].kind, "function");
        assert_eq!(calls[0].function.name, "get_weather");
        let args: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
        assert_eq!(
            args,
            json!({"location": "San Francisco, CA", "unit": "celsius"})
        );
        assert_eq!(ch.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(ch.native_finish_reason.as_deref(), Some("tool_use"));
        let u = c.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (472, 89));
    }

    #[test]
    fn decodes_thinking_response() {
        let c = Anthropic
            .decode(THINKING_RESPONSE.as_bytes(), &ctx())
            .unwrap();
        let m = &c.choices[0].message;
        assert_eq!(m.content.as_deref(), Some("Based on my analysis..."));
        assert_eq!(
            m.reasoning.as_deref(),
            Some("Let me analyze this step by step...")
        );
        assert_eq!(
            m.reasoning_details.as_ref().unwrap(),
            &vec![
                json!({"type": "reasoning.text", "text": "Let me analyze this step by step...",
                       "signature": "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL....",
                       "format": "anthropic-claude-v1", "index": 0}),
                json!({"type": "reasoning.encrypted", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP",
                       "format": "anthropic-claude-v1", "index": 1}),
            ]
        );
    }

    #[test]
    fn maps_stop_reasons() {
        for (native, finish) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("model_context_window_exceeded", FinishReason::Length),
            ("tool_use", FinishReason::ToolCalls),
            ("refusal", FinishReason::ContentFilter),
            ("pause_turn", FinishReason::Stop),
        ] {
            let body = format!(
                r#"{{"id":"msg_1","type":"message","role":"assistant","content":[{{"type":"text","text":"x"}}],"stop_reason":"{native}","usage":{{"input_tokens":1,"output_tokens":1}}}}"#
            );
            let c = Anthropic.decode(body.as_bytes(), &ctx()).unwrap();
            assert_eq!(c.choices[0].finish_reason, Some(finish), "{native}");
            assert_eq!(c.choices[0].native_finish_reason.as_deref(), Some(native));
        }
    }

    #[test]
    fn decodes_emulated_json_output_as_content() {
        let body = format!(
            r#"{{"id":"msg_1","type":"message","role":"assistant","content":[{{"type":"tool_use","id":"toolu_1","name":"{JSON_TOOL}","input":{{"name":"Ada"}}}}],"stop_reason":"tool_use","usage":{{"input_tokens":1,"output_tokens":1}}}}"#
        );
        let c = Anthropic.decode(body.as_bytes(), &ctx()).unwrap();
        assert_eq!(
            c.choices[0].message.content.as_deref(),
            Some(r#"{"name":"Ada"}"#)
        );
        assert!(c.choices[0].message.tool_calls.is_none());
        assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(
            c.choices[0].native_finish_reason.as_deref(),
            Some("tool_use")
        );
    }

    #[test]
    fn garbage_body_is_502() {
        let e = Anthropic.decode(b"<html>oops", &ctx()).unwrap_err();
        assert_eq!(e.status(), 502);
        let e = Anthropic
            .decode(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                &ctx(),
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Overloaded);
    }

    // ----- errors -----------------------------------------------------------------------------

    fn error_body(kind: &str, message: &str) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"type": "error", "error": {"type": kind, "message": message},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}),
        )
        .unwrap()
    }

    #[test]
    fn maps_error_bodies() {
        let h = HeaderMap::new();
        let cases = [
            (
                400,
                "invalid_request_error",
                "messages: roles must alternate between \"user\" and \"assistant\"",
                ErrorKind::UpstreamInvalidRequest,
            ),
            (
                401,
                "authentication_error",
                "invalid x-api-key",
                ErrorKind::Upstream,
            ),
            (
                403,
                "permission_error",
                "Your API key does not have permission",
                ErrorKind::Upstream,
            ),
            (
                404,
                "not_found_error",
                "model: claude-nope",
                ErrorKind::UpstreamNotFound,
            ),
            (
                413,
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes.",
                ErrorKind::UpstreamInvalidRequest,
            ),
            (
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                ErrorKind::RateLimited,
            ),
            (
                500,
                "api_error",
                "Internal server error",
                ErrorKind::Upstream,
            ),
            (529, "overloaded_error", "Overloaded", ErrorKind::Overloaded),
        ];
        for (status, kind, message, expected) in cases {
            let e = Anthropic.decode_error(
                StatusCode::from_u16(status).unwrap(),
                &h,
                &error_body(kind, message),
            );
            assert_eq!(e.kind(), expected, "{status}");
            if matches!(status, 401 | 403) {
                assert!(!e.message().contains(message), "{status}");
            } else {
                assert_eq!(e.message(), message, "{status}");
            }
        }
        assert_eq!(
            Anthropic
                .decode_error(StatusCode::from_u16(529).unwrap(), &h, b"")
                .status(),
            503
        );
    }

    #[test]
    fn context_length_and_retry_after() {
        let e = Anthropic.decode_error(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            &error_body(
                "invalid_request_error",
                "prompt is too long: 208000 tokens > 200000 maximum",
            ),
        );
        assert_eq!(e.code(), Some("context_length_exceeded"));
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        let e = Anthropic.decode_error(StatusCode::TOO_MANY_REQUESTS, &h, b"<html>busy</html>");
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(7)));
        assert!(e.message().contains("429"));
    }

    // ----- streams ----------------------------------------------------------------------------

    // Anthropic docs: basic streaming request (cache counts added to message_start).
    const TEXT_STREAM: &str = "event: message_start\n\
data: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\", \"type\": \"message\", \"role\": \"assistant\", \"content\": [], \"model\": \"claude-sonnet-4-20250514\", \"stop_reason\": null, \"stop_sequence\": null, \"usage\": {\"input_tokens\": 25, \"cache_creation_input_tokens\": 10, \"cache_read_input_tokens\": 100, \"output_tokens\": 1}}}\n\n\
event: content_block_start\n\
data: {\"type\": \"content_block_start\", \"index\": 0, \"content_block\": {\"type\": \"text\", \"text\": \"\"}}\n\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"Hello\"}}\n\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"!\"}}\n\n\
event: content_block_stop\n\
data: {\"type\": \"content_block_stop\", \"index\": 0}\n\n\
event: message_delta\n\
data: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": \"end_turn\", \"stop_sequence\":null}, \"usage\": {\"output_tokens\": 15}}\n\n\
event: message_stop\n\
data: {\"type\": \"message_stop\"}\n\n";

    // Anthropic docs: streaming with tool use, here with two parallel calls after a text block.
    const TOOL_STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-20250514\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"output_tokens\":2},\"content\":[],\"stop_reason\":null}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Okay, let's check both cities.\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\":\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"San Francisco, CA\\\"}\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_02B2y2gK45rBnl3uOUsO8Vq7\",\"name\":\"get_weather\",\"input\":{}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \\\"Ne\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"w York, NY\\\"}\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":2}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

    // Anthropic docs: streaming with extended thinking.
    const THINKING_STREAM: &str = "event: message_start\n\
data: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_01ThinkStream\", \"type\": \"message\", \"role\": \"assistant\", \"content\": [], \"model\": \"claude-sonnet-4-20250514\", \"stop_reason\": null, \"stop_sequence\": null, \"usage\": {\"input_tokens\": 50, \"output_tokens\": 1}}}\n\n\
event: content_block_start\n\
data: {\"type\": \"content_block_start\", \"index\": 0, \"content_block\": {\"type\": \"thinking\", \"thinking\": \"\"}}\n\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"thinking_delta\", \"thinking\": \"I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\\n\\n1071 = 2 × 462 + 147\"}}\n\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"thinking_delta\", \"thinking\": \"\\n462 = 3 × 147 + 21\\n147 = 7 × 21 + 0\\n\\nSo GCD(1071, 462) = 21\"}}\n\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"signature_delta\", \"signature\": \"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds...\"}}\n\n\
event: content_block_stop\n\
data: {\"type\": \"content_block_stop\", \"index\": 0}\n\n\
event: content_block_start\n\
data: {\"type\": \"content_block_start\", \"index\": 1, \"content_block\": {\"type\": \"text\", \"text\": \"\"}}\n\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 1, \"delta\": {\"type\": \"text_delta\", \"text\": \"The greatest common divisor of 1071 and 462 is **21**.\"}}\n\n\
event: content_block_stop\n\
data: {\"type\": \"content_block_stop\", \"index\": 1}\n\n\
event: message_delta\n\
data: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": \"end_turn\", \"stop_sequence\": null}, \"usage\": {\"output_tokens\": 120}}\n\n\
event: message_stop\n\
data: {\"type\": \"message_stop\"}\n\n";

    fn decode_stream(input: &[u8], splits: &[usize]) -> Result<Vec<ChatCompletionChunk>, Error> {
        let mut sse = SseDecoder::new();
        let mut dec = Anthropic.stream_decoder(&ctx());
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
        assert!(dec.is_done());
        Ok(out)
    }

    fn same_stream_identity(chunks: &[ChatCompletionChunk], id: &str) {
        let created = chunks[0].created;
        for c in chunks {
            assert_eq!(c.id, id);
            assert_eq!(c.created, created);
            assert_eq!(c.object, "chat.completion.chunk");
            assert_eq!(c.model, "anthropic/claude-sonnet-4");
        }
    }

    #[test]
    fn decodes_text_stream() {
        let chunks = decode_stream(TEXT_STREAM.as_bytes(), &[]).unwrap();
        same_stream_identity(&chunks, "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY");
        assert_eq!(chunks.len(), 5);
        assert_eq!(
            chunks[0].choices[0].delta.role.as_deref(),
            Some("assistant")
        );
        assert!(!chunks[0].has_output());
        assert_eq!(chunks[1].choices[0].delta.content.as_deref(), Some("Hello"));
        assert_eq!(chunks[2].choices[0].delta.content.as_deref(), Some("!"));
        assert!(chunks[1..]
            .iter()
            .all(|c| c.choices.iter().all(|ch| ch.delta.role.is_none())));
        assert_eq!(chunks[3].choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(
            chunks[3].choices[0].native_finish_reason.as_deref(),
            Some("end_turn")
        );
        assert!(chunks[4].is_usage_only());
        let u = chunks[4].usage.as_ref().unwrap();
        assert_eq!(u.prompt_tokens, 25 + 10 + 100);
        assert_eq!(u.completion_tokens, 15);
        assert_eq!(u.total_tokens, 150);
        assert_eq!(u.cached_tokens(), 100);
        assert_eq!(u.cache_write_tokens(), 10);
    }

    #[test]
    fn decodes_parallel_tool_call_stream() {
        let chunks = decode_stream(TOOL_STREAM.as_bytes(), &[]).unwrap();
        same_stream_identity(&chunks, "msg_014p7gG3wDgGV9EUtLvnow3U");
        let deltas: Vec<&ToolCallDelta> = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .filter_map(|c| c.delta.tool_calls.as_ref())
            .flatten()
            .collect();
        // Each call starts with id, type and name; argument pieces follow.
        let firsts: Vec<_> = deltas.iter().filter(|d| d.id.is_some()).collect();
        assert_eq!(firsts.len(), 2);
        assert_eq!(firsts[0].index, 0);
        assert_eq!(
            firsts[0].id.as_deref(),
            Some("toolu_01T1x1fJ34qAmk2tNTrN7Up6")
        );
        assert_eq!(firsts[0].kind.as_deref(), Some("function"));
        assert_eq!(
            firsts[0].function.as_ref().unwrap().name.as_deref(),
            Some("get_weather")
        );
        assert_eq!(firsts[1].index, 1);
        assert_eq!(
            firsts[1].id.as_deref(),
            Some("toolu_02B2y2gK45rBnl3uOUsO8Vq7")
        );
        let mut args = [String::new(), String::new()];
        for d in &deltas {
            if d.id.is_none() {
                assert!(d.kind.is_none() && d.function.as_ref().unwrap().name.is_none());
            }
            if let Some(a) = d.function.as_ref().and_then(|f| f.arguments.as_deref()) {
                args[d.index as usize].push_str(a);
            }
        }
        let a0: Value = serde_json::from_str(&args[0]).unwrap();
        let a1: Value = serde_json::from_str(&args[1]).unwrap();
        assert_eq!(a0, json!({"location": "San Francisco, CA"}));
        assert_eq!(a1, json!({"location": "New York, NY"}));
        let text: String = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .filter_map(|c| c.delta.content.as_deref())
            .collect();
        assert_eq!(text, "Okay, let's check both cities.");
        let finish = &chunks[chunks.len() - 2].choices[0];
        assert_eq!(finish.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(finish.native_finish_reason.as_deref(), Some("tool_use"));
        let u = chunks.last().unwrap().usage.as_ref().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (472, 89));
    }

    #[test]
    fn decodes_thinking_stream_with_signature() {
        let chunks = decode_stream(THINKING_STREAM.as_bytes(), &[]).unwrap();
        same_stream_identity(&chunks, "msg_01ThinkStream");
        let reasoning: String = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .filter_map(|c| c.delta.reasoning.as_deref())
            .collect();
        assert!(reasoning.starts_with("I need to find the GCD"));
        assert!(reasoning.ends_with("So GCD(1071, 462) = 21"));
        assert!(chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .all(|c| c.delta.reasoning.is_none() || c.delta.content.is_none()));
        let details: Vec<&Value> = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .filter_map(|c| c.delta.reasoning_details.as_ref())
            .flatten()
            .collect();
        let sig = details
            .iter()
            .find(|d| d.get("signature").is_some())
            .unwrap();
        assert_eq!(
            **sig,
            json!({"type": "reasoning.text", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds...",
                   "format": "anthropic-claude-v1", "index": 0})
        );
        assert!(details.iter().all(|d| d["index"] == 0));
        let text: String = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .filter_map(|c| c.delta.content.as_deref())
            .collect();
        assert_eq!(
            text,
            "The greatest common divisor of 1071 and 462 is **21**."
        );
        // The streamed details, sent back as they came, restore the signed thinking block.
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "GCD?"},
            {"role": "assistant", "content": text, "reasoning_details": details},
            {"role": "user", "content": "Thanks"}
        ]});
        let v = encode(body);
        assert_eq!(
            v["messages"][1]["content"][0],
            json!({"type": "thinking", "thinking": reasoning,
                   "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."})
        );
    }

    #[test]
    fn decodes_emulated_json_stream_as_content() {
        let s = format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_j\",\"usage\":{{\"input_tokens\":5,\"output_tokens\":1}}}}}}\n\n\
event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"tool_use\",\"id\":\"toolu_j\",\"name\":\"{JSON_TOOL}\",\"input\":{{}}}}}}\n\n\
event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\"{{\\\"name\\\":\"}}}}\n\n\
event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"Ada\\\"}}\"}}}}\n\n\
event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"tool_use\"}},\"usage\":{{\"output_tokens\":9}}}}\n\n\
event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        );
        let chunks = decode_stream(s.as_bytes(), &[]).unwrap();
        let text: String = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .filter_map(|c| c.delta.content.as_deref())
            .collect();
        assert_eq!(text, "{\"name\": \"Ada\"}");
        assert!(chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .all(|c| c.delta.tool_calls.is_none()));
        assert_eq!(
            chunks[chunks.len() - 2].choices[0].finish_reason,
            Some(FinishReason::Stop)
        );
    }

    #[test]
    fn error_event_mid_stream_is_an_error_of_its_kind() {
        let cut = TEXT_STREAM.find("event: content_block_stop").unwrap();
        for (kind, expected) in [
            ("overloaded_error", ErrorKind::Overloaded),
            ("rate_limit_error", ErrorKind::RateLimited),
            ("api_error", ErrorKind::Upstream),
            ("invalid_request_error", ErrorKind::UpstreamInvalidRequest),
            ("something_new", ErrorKind::Upstream),
        ] {
            let s = format!(
                "{}event: error\ndata: {{\"type\": \"error\", \"error\": {{\"type\": \"{kind}\", \"message\": \"Overloaded\"}}}}\n\n",
                &TEXT_STREAM[..cut]
            );
            let e = decode_stream(s.as_bytes(), &[]).unwrap_err();
            assert_eq!(e.kind(), expected, "{kind}");
            assert_eq!(e.message(), "Overloaded");
        }
    }

    #[test]
    fn truncated_stream_fails_in_finish() {
        let cut = TEXT_STREAM.find("event: message_stop").unwrap();
        let mut sse = SseDecoder::new();
        let mut dec = Anthropic.stream_decoder(&ctx());
        let mut out = Vec::new();
        sse.push(&TEXT_STREAM.as_bytes()[..cut]);
        while let Some(ev) = sse.next_event().unwrap() {
            dec.event(ev, &mut out).unwrap();
        }
        assert!(!dec.is_done());
        assert!(out
            .iter()
            .all(|c| c.choices.iter().all(|ch| ch.finish_reason.is_none())));
        let e = dec.finish(&mut out).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Upstream);
    }

    #[test]
    fn content_before_message_start_is_an_error() {
        let s = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n";
        assert!(decode_stream(s.as_bytes(), &[]).is_err());
        assert!(decode_stream(b"data: {not json}\n\n", &[]).is_err());
    }

    fn normalized(mut chunks: Vec<ChatCompletionChunk>) -> Vec<ChatCompletionChunk> {
        for c in &mut chunks {
            c.created = 0;
        }
        chunks
    }

    const GOLDEN_STREAMS: [&str; 3] = [TEXT_STREAM, TOOL_STREAM, THINKING_STREAM];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        #[test]
        fn any_split_decodes_identically(
            which in 0usize..GOLDEN_STREAMS.len(),
            mut splits in proptest::collection::vec(0usize..4096, 0..12),
        ) {
            let input = GOLDEN_STREAMS[which].as_bytes();
            for s in &mut splits {
                *s %= input.len();
            }
            splits.sort_unstable();
            proptest::prop_assert_eq!(
                normalized(decode_stream(input, &splits).unwrap()),
                normalized(decode_stream(input, &[]).unwrap())
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut sse = SseDecoder::with_limit(1024);
            let mut dec = Anthropic.stream_decoder(&ctx());
            let mut out = Vec::new();
            sse.push(&bytes);
            while let Ok(Some(ev)) = sse.next_event() {
                if dec.event(ev, &mut out).is_err() {
                    break;
                }
            }
            let _ = dec.finish(&mut out);
        }

        #[test]
        fn arbitrary_event_sequences_never_panic(
            events in proptest::collection::vec((0usize..9, 0u32..4, "[a-z\" {}:,\\\\]{0,12}"), 0..24),
        ) {
            let mut dec = Anthropic.stream_decoder(&ctx());
            let mut out = Vec::new();
            for (kind, index, text) in events {
                let text = serde_json::to_string(&text).unwrap();
                let data = match kind {
                    0 => "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":18446744073709551615,\"cache_read_input_tokens\":18446744073709551615}}}".to_owned(),
                    1 => format!("{{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"t\",\"name\":{text},\"input\":{{}}}}}}"),
                    2 => format!("{{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"thinking\",\"thinking\":{text}}}}}"),
                    3 => format!("{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":{text}}}}}"),
                    4 => format!("{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"signature_delta\",\"signature\":{text}}}}}"),
                    5 => format!("{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"thinking_delta\",\"thinking\":{text}}}}}"),
                    6 => "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":18446744073709551615}}".to_owned(),
                    7 => "{\"type\":\"message_stop\"}".to_owned(),
                    _ => text,
                };
                let _ = dec.event(SseEvent { event: None, data }, &mut out);
            }
            let _ = dec.finish(&mut out);
        }
    }
}
