//! [`ChatRequest`]: parsed once at the edge, shared behind an `Arc`.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use super::message::{Message, Role, Tool, ToolChoice};
use super::scan::{self, write_json};
use crate::client::UpstreamBody;
use crate::Error;

/// A chat-completions request.
///
/// Typed fields are the ones the gateway reads. `messages`, `tools`, `tool_choice`,
/// `response_format`, `metadata` and every unknown field stay raw JSON and are re-emitted
/// byte for byte by the OpenAI-compatible codec; other codecs parse what they need.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ChatRequest {
    /// The requested model id, alias or slot.
    pub model: String,
    /// The conversation, raw.
    pub messages: RawJson,
    /// OpenRouter: models to try in order.
    pub models: Option<Vec<String>>,
    /// OpenRouter: `"fallback"`.
    pub route: Option<String>,
    /// OpenRouter provider preferences.
    pub provider: Option<ProviderPreferences>,
    /// Stream the answer as SSE.
    pub stream: Option<bool>,
    /// Stream options (`include_usage`).
    pub stream_options: Option<StreamOptions>,
    /// Legacy output cap.
    pub max_tokens: Option<u32>,
    /// Output cap (reasoning included).
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Top-k sampling (OpenRouter, Anthropic, Gemini).
    pub top_k: Option<u32>,
    /// Number of choices.
    pub n: Option<u32>,
    /// Stop sequences.
    pub stop: Option<Stop>,
    /// Sampling seed.
    pub seed: Option<i64>,
    /// End-user id.
    pub user: Option<String>,
    /// Metadata map, raw.
    pub metadata: Option<RawJson>,
    /// Return log probabilities.
    pub logprobs: Option<bool>,
    /// Number of top log probabilities.
    pub top_logprobs: Option<u32>,
    /// Frequency penalty.
    pub frequency_penalty: Option<f64>,
    /// Presence penalty.
    pub presence_penalty: Option<f64>,
    /// OpenAI reasoning effort (`minimal` … `high`).
    pub reasoning_effort: Option<String>,
    /// OpenRouter reasoning config.
    pub reasoning: Option<Reasoning>,
    /// Response format, raw.
    pub response_format: Option<RawJson>,
    /// Tools, raw.
    pub tools: Option<RawJson>,
    /// Tool choice, raw.
    pub tool_choice: Option<RawJson>,
    /// Allow parallel tool calls.
    pub parallel_tool_calls: Option<bool>,
    /// Fields the gateway does not know, forwarded verbatim in their original order.
    pub extra: Vec<(String, RawJson)>,
    /// What a cheap scan of `messages` found.
    pub summary: MessagesSummary,
}

/// Facts about `messages` gathered while parsing, without building message values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessagesSummary {
    /// Number of messages.
    pub count: usize,
    /// Bytes of text content (a prompt-size estimate).
    pub text_bytes: usize,
    /// Whether any content part is an image.
    pub has_images: bool,
    /// Whether the conversation contains tool calls or tool results.
    pub has_tool_messages: bool,
}

impl MessagesSummary {
    /// A rough prompt-token estimate (4 bytes a token, plus per-message overhead).
    pub fn estimated_tokens(&self) -> u64 {
        (self.text_bytes as u64).div_ceil(4) + 4 * self.count as u64
    }
}

/// A JSON value kept as text: a slice of the request body it was parsed from (shared, not
/// copied), valid UTF-8 and valid JSON by construction.
#[derive(Clone)]
pub struct RawJson {
    src: Bytes,
    start: usize,
    end: usize,
}

impl RawJson {
    /// The JSON text. (Checks the UTF-8 again, which costs a pass over the text: writers and
    /// parsers that take bytes use [`RawJson::as_bytes`].)
    pub fn get(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("null")
    }

    /// The JSON text's bytes (valid UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        self.src.get(self.start..self.end).unwrap_or(b"null")
    }

    /// The JSON text as a slice of the buffer it was parsed from (shared, not copied).
    pub fn to_bytes(&self) -> Bytes {
        if self.start <= self.end && self.end <= self.src.len() {
            self.src.slice(self.start..self.end)
        } else {
            Bytes::from_static(b"null")
        }
    }

    /// Checks `json` and keeps it.
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let b = json.trim().as_bytes();
        match scan::value_end(b, 0, 0) {
            Ok(end) if end == b.len() => Ok(Self::whole(Bytes::copy_from_slice(b))),
            _ => Err(Error::invalid_request("not a JSON value")),
        }
    }

    fn whole(src: Bytes) -> Self {
        let end = src.len();
        Self { src, start: 0, end }
    }

    fn slice(src: &Bytes, span: Range<usize>) -> Self {
        Self {
            src: src.clone(),
            start: span.start,
            end: span.end,
        }
    }
}

impl Default for RawJson {
    /// An empty array.
    fn default() -> Self {
        Self::whole(Bytes::from_static(b"[]"))
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawValue::from_string(self.get().to_owned())
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(Self::from)
    }
}

impl From<Box<RawValue>> for RawJson {
    /// Keeps serde_json's checked text (its buffer, not a copy).
    fn from(raw: Box<RawValue>) -> Self {
        let text: Box<str> = raw.into();
        Self::whole(Bytes::from(String::from(text)))
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a final chunk with usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// `stop`: a string or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One sequence.
    One(String),
    /// Several sequences.
    Many(Vec<String>),
}

impl Stop {
    /// The sequences as a slice-like list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// OpenRouter `reasoning`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reasoning {
    /// `minimal`, `low`, `medium`, `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// Thinking token budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Think but don't return the reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<bool>,
    /// Turn reasoning on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// OpenRouter provider preferences.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderPreferences {
    /// Providers to try first, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Vec<String>>,
    /// Only these providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<String>>,
    /// Never these providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<Vec<String>>,
    /// `false`: use only the first candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_fallbacks: Option<bool>,
    /// `price`, `latency` or `throughput`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// Price ceilings in USD per million tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<MaxPrice>,
    /// `allow` or `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_collection: Option<String>,
    /// Only providers supporting every parameter used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_parameters: Option<bool>,
}

/// `provider.max_price`, USD per million tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MaxPrice {
    /// Ceiling for input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<f64>,
    /// Ceiling for output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<f64>,
}

/// `response_format`, typed (parsed on demand by codecs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Plain text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// `{name, schema, strict}`.
        json_schema: serde_json::Value,
    },
}

impl ChatRequest {
    /// Parses a request body. Errors are client errors (400) with a clear message.
    pub fn from_slice(body: &[u8]) -> Result<Self, Error> {
        Self::from_bytes(Bytes::copy_from_slice(body))
    }

    /// [`ChatRequest::from_slice`] of a body the request keeps: its raw fields (`messages`,
    /// `tools`, …) are slices of `body`, not copies.
    pub fn from_bytes(body: Bytes) -> Result<Self, Error> {
        let fast = scan::utf8(&body).and_then(|_| Self::parse_fast(&body));
        let req = match fast {
            Some(r) => r,
            None => {
                // The fast path only says no; serde says why (or accepts what the fast path
                // does not handle, such as escaped keys).
                let mut de = serde_json::Deserializer::from_slice(&body);
                let req = Self::deserialize(&mut de).map_err(|e| json_error(&e))?;
                de.end().map_err(|e| json_error(&e))?;
                req
            }
        };
        req.validate()?;
        Ok(req)
    }

    /// One validating pass over the body with the byte scanner; typed fields are parsed from
    /// their own small slices, `messages` by the summary scan, raw fields kept as slices of
    /// `src` (valid UTF-8). `None` for anything it does not accept.
    fn parse_fast(src: &Bytes) -> Option<Self> {
        let mut r = Self::default();
        let (mut have_model, mut have_messages) = (false, false);
        let mut summary = None;
        // `messages` is checked and summarised by serde in the same pass that finds its end.
        let messages_end = |key: &[u8], start: usize| {
            (key == b"messages").then(|| {
                let (s, end) = match summarize_messages_fast(src, start) {
                    Ok(done) => done,
                    // Escapes in keys, unusual shapes, errors: serde decides.
                    Err(scan::Invalid) => std::str::from_utf8(&src[start..])
                        .map_err(|_| scan::Invalid)
                        .and_then(|rest| summarize_messages(rest).map_err(|_| scan::Invalid))
                        .map(|(s, len)| (s, start + len))?,
                };
                summary = Some(s);
                Ok(end)
            })
        };
        scan::top_level_members_with(src, messages_end, |m| {
            if m.escaped_key {
                return Err(scan::Invalid);
            }
            let text = &src[m.value.clone()];
            let raw = || (text != b"null").then(|| RawJson::slice(src, m.value.clone()));
            macro_rules! typed {
                ($($f:ident),*) => {
                    match m.key {
                        $(k if k == stringify!($f).as_bytes() => {
                            r.$f = serde_json::from_slice(text).map_err(|_| scan::Invalid)?;
                        })*
                        b"model" => {
                            r.model = serde_json::from_slice(text).map_err(|_| scan::Invalid)?;
                            have_model = true;
                        }
                        b"messages" => {
                            r.messages = RawJson::slice(src, m.value.clone());
                            have_messages = true;
                        }
                        b"metadata" => r.metadata = raw(),
                        b"response_format" => r.response_format = raw(),
                        b"tools" => r.tools = raw(),
                        b"tool_choice" => r.tool_choice = raw(),
                        key => {
                            let key = std::str::from_utf8(key).map_err(|_| scan::Invalid)?;
                            r.extra.push((key.to_owned(), RawJson::slice(src, m.value.clone())));
                        }
                    }
                };
            }
            typed!(
                models,
                route,
                provider,
                stream,
                stream_options,
                max_tokens,
                max_completion_tokens,
                temperature,
                top_p,
                top_k,
                n,
                stop,
                seed,
                user,
                logprobs,
                top_logprobs,
                frequency_penalty,
                presence_penalty,
                reasoning_effort,
                reasoning,
                parallel_tool_calls
            );
            Ok(())
        })
        .ok()?;
        r.summary = summary?;
        (have_messages && (have_model || r.models.is_some())).then_some(r)
    }

    fn validate(&self) -> Result<(), Error> {
        if self.model.is_empty() && self.models.as_ref().is_none_or(Vec::is_empty) {
            return Err(Error::invalid_request("`model` is required").with_param("model"));
        }
        if self.summary.count == 0 {
            return Err(
                Error::invalid_request("`messages` must contain at least one message")
                    .with_param("messages"),
            );
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(
                    Error::invalid_request("`temperature` must be between 0 and 2")
                        .with_param("temperature"),
                );
            }
        }
        if let Some(p) = self.top_p {
            if !(0.0..=1.0).contains(&p) {
                return Err(
                    Error::invalid_request("`top_p` must be between 0 and 1").with_param("top_p")
                );
            }
        }
        if self.n == Some(0) {
            return Err(Error::invalid_request("`n` must be at least 1").with_param("n"));
        }
        if self.stream_options.is_some() && !self.is_stream() {
            return Err(Error::invalid_request(
                "`stream_options` is only allowed when `stream` is true",
            )
            .with_param("stream_options"));
        }
        Ok(())
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether the client asked for the final usage chunk of a stream.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The output cap the client set (`max_completion_tokens` wins over `max_tokens`).
    pub fn max_output_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Parses `messages` into typed values (for codecs that translate them).
    pub fn parse_messages(&self) -> Result<Vec<Message>, Error> {
        serde_json::from_slice(self.messages.as_bytes()).map_err(|e| {
            Error::invalid_request(format!("invalid `messages`: {e}")).with_param("messages")
        })
    }

    /// Parses `tools` into typed values.
    pub fn parse_tools(&self) -> Result<Vec<Tool>, Error> {
        match &self.tools {
            None => Ok(Vec::new()),
            Some(raw) => serde_json::from_slice(raw.as_bytes()).map_err(|e| {
                Error::invalid_request(format!("invalid `tools`: {e}")).with_param("tools")
            }),
        }
    }

    /// Parses `tool_choice`.
    pub fn parse_tool_choice(&self) -> Result<Option<ToolChoice>, Error> {
        let Some(raw) = &self.tool_choice else {
            return Ok(None);
        };
        let v: serde_json::Value = serde_json::from_slice(raw.as_bytes()).map_err(|e| {
            Error::invalid_request(format!("invalid `tool_choice`: {e}")).with_param("tool_choice")
        })?;
        ToolChoice::from_value(&v).map(Some).ok_or_else(|| {
            Error::invalid_request(
                "`tool_choice` must be \"auto\", \"none\", \"required\" or a named function",
            )
            .with_param("tool_choice")
        })
    }

    /// Parses `response_format`.
    pub fn parse_response_format(&self) -> Result<Option<ResponseFormat>, Error> {
        match &self.response_format {
            None => Ok(None),
            Some(raw) => serde_json::from_slice(raw.as_bytes())
                .map(Some)
                .map_err(|e| {
                    Error::invalid_request(format!("invalid `response_format`: {e}"))
                        .with_param("response_format")
                }),
        }
    }

    /// Reads one string entry of `metadata` (e.g. `task`).
    pub fn metadata_str(&self, key: &str) -> Option<String> {
        let raw = self.metadata.as_ref()?;
        let map: std::collections::HashMap<Cow<'_, str>, serde_json::Value> =
            serde_json::from_slice(raw.as_bytes()).ok()?;
        map.get(key)?.as_str().map(str::to_owned)
    }

    /// Whether any tools are offered.
    pub fn has_tools(&self) -> bool {
        self.tools.as_ref().is_some_and(|t| t.as_bytes() != b"[]")
    }

    /// Serializes the request with OpenAI's field names, for an OpenAI-compatible upstream:
    /// `model` replaced by `model`, OpenRouter routing fields dropped unless `keep_routing`,
    /// `stream_options.include_usage` forced on for streams when `force_usage`.
    pub fn to_openai_json(&self, model: &str, force_usage: bool, keep_routing: bool) -> Vec<u8> {
        let messages = self.messages.as_bytes();
        let mut out = Vec::with_capacity(model.len() + messages.len() + 256);
        write_openai_head(&mut out, model);
        out.extend_from_slice(messages);
        self.write_openai_rest(&mut out, force_usage, keep_routing);
        out
    }

    /// [`to_openai_json`](Self::to_openai_json) as an upstream request body. When `messages`
    /// is long (most of a long conversation) it is sent as the slice of the client's body it
    /// was parsed from, between the bytes before and after it, instead of being copied; a
    /// short one is copied into a single buffer (cheaper than a frame of its own). The bytes
    /// sent are the same either way.
    pub fn to_openai_body(
        &self,
        model: &str,
        force_usage: bool,
        keep_routing: bool,
    ) -> UpstreamBody {
        if self.messages.as_bytes().len() < SHARED_MESSAGES_MIN {
            return UpstreamBody::new(self.to_openai_json(model, force_usage, keep_routing));
        }
        let mut head = Vec::with_capacity(model.len() + 24);
        write_openai_head(&mut head, model);
        let mut rest = Vec::with_capacity(256);
        self.write_openai_rest(&mut rest, force_usage, keep_routing);
        UpstreamBody::concat(head.into(), self.messages.to_bytes(), rest.into())
    }

    /// Everything after `messages` in [`to_openai_json`](Self::to_openai_json), closing brace
    /// included.
    fn write_openai_rest(&self, out: &mut Vec<u8>, force_usage: bool, keep_routing: bool) {
        macro_rules! opt {
            ($($f:ident),*) => {$(
                if let Some(v) = &self.$f {
                    write_key(out, stringify!($f));
                    write_json(out, v);
                }
            )*};
        }
        macro_rules! raw {
            ($($f:ident),*) => {$(
                if let Some(v) = &self.$f {
                    write_key(out, stringify!($f));
                    out.extend_from_slice(v.as_bytes());
                }
            )*};
        }
        if keep_routing {
            opt!(models, route, provider);
        }
        opt!(stream);
        if self.is_stream() && force_usage {
            out.extend_from_slice(b",\"stream_options\":{\"include_usage\":true}");
        } else {
            opt!(stream_options);
        }
        opt!(
            max_tokens,
            max_completion_tokens,
            temperature,
            top_p,
            top_k,
            n,
            stop,
            seed,
            user
        );
        raw!(metadata);
        opt!(
            logprobs,
            top_logprobs,
            frequency_penalty,
            presence_penalty,
            reasoning_effort,
            reasoning
        );
        raw!(response_format, tools, tool_choice);
        opt!(parallel_tool_calls);
        for (k, v) in &self.extra {
            out.push(b',');
            write_json(out, k.as_str());
            out.push(b':');
            out.extend_from_slice(v.as_bytes());
        }
        out.push(b'}');
    }
}

/// `messages` at least this long goes upstream as a slice of the client's body (a frame of
/// its own) rather than copied: below it, the copy costs less than the extra frame.
const SHARED_MESSAGES_MIN: usize = 4096;

/// The start of an upstream OpenAI body, up to the value of `messages`.
fn write_openai_head(out: &mut Vec<u8>, model: &str) {
    out.extend_from_slice(b"{\"model\":");
    scan::write_json_str(out, model);
    out.extend_from_slice(b",\"messages\":");
}

fn write_key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn json_error(e: &serde_json::Error) -> Error {
    let msg = match e.classify() {
        serde_json::error::Category::Data => format!("invalid request: {e}"),
        _ => format!("malformed JSON body: {e}"),
    };
    Error::invalid_request(msg).with_code("invalid_json")
}

impl Serialize for ChatRequest {
    /// The request as the client sent it (routing fields kept).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let json = self.to_openai_json(&self.model, false, true);
        let text = String::from_utf8(json).map_err(serde::ser::Error::custom)?;
        RawValue::from_string(text)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ChatRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RequestVisitor)
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = ChatRequest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a chat completions request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChatRequest, A::Error> {
        let mut r = ChatRequest::default();
        let mut have_messages = false;
        let mut have_model = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            macro_rules! field {
                ($f:ident) => {{
                    r.$f = map.next_value()?;
                }};
            }
            match &*key {
                "model" => {
                    r.model = map.next_value()?;
                    have_model = true;
                }
                "messages" => {
                    // Summarised while still a `str` (a `RawJson` would check the UTF-8 again).
                    let raw: Box<RawValue> = map.next_value()?;
                    r.summary = scan_messages(raw.get()).map_err(de::Error::custom)?;
                    r.messages = RawJson::from(raw);
                    have_messages = true;
                }
                "models" => field!(models),
                "route" => field!(route),
                "provider" => field!(provider),
                "stream" => field!(stream),
                "stream_options" => field!(stream_options),
                "max_tokens" => field!(max_tokens),
                "max_completion_tokens" => field!(max_completion_tokens),
                "temperature" => field!(temperature),
                "top_p" => field!(top_p),
                "top_k" => field!(top_k),
                "n" => field!(n),
                "stop" => field!(stop),
                "seed" => field!(seed),
                "user" => field!(user),
                "metadata" => field!(metadata),
                "logprobs" => field!(logprobs),
                "top_logprobs" => field!(top_logprobs),
                "frequency_penalty" => field!(frequency_penalty),
                "presence_penalty" => field!(presence_penalty),
                "reasoning_effort" => field!(reasoning_effort),
                "reasoning" => field!(reasoning),
                "response_format" => field!(response_format),
                "tools" => field!(tools),
                "tool_choice" => field!(tool_choice),
                "parallel_tool_calls" => field!(parallel_tool_calls),
                _ => {
                    let v: RawJson = map.next_value()?;
                    r.extra.push((key.into_owned(), v));
                }
            }
        }
        if !have_messages {
            return Err(de::Error::missing_field("messages"));
        }
        if !have_model && r.models.is_none() {
            return Err(de::Error::missing_field("model"));
        }
        Ok(r)
    }
}

/// Checks the shape of `messages` (an array of objects with a known `role` and a string,
/// array or null `content`) and gathers a [`MessagesSummary`] without building values.
fn scan_messages(raw: &str) -> Result<MessagesSummary, String> {
    summarize_messages(raw)
        .map(|(summary, _)| summary)
        .map_err(|e| format!("invalid `messages`: {e}"))
}

/// The summary of the `messages` array starting at `b[i]` (a top-level member's value) and
/// where it ends, by the byte scanner: the same result as [`summarize_messages`] for the
/// messages it accepts; `Err` for anything else (escaped keys or roles, a missing `role`,
/// content of another type, invalid JSON), which the serde path then decides on.
fn summarize_messages_fast(b: &[u8], i: usize) -> Result<(MessagesSummary, usize), scan::Invalid> {
    use scan::Invalid;
    let text_len = |raw: &[u8], escaped: bool| {
        if escaped {
            scan::decoded_len(raw).ok_or(Invalid)
        } else {
            Ok(raw.len())
        }
    };
    let mut sum = MessagesSummary::default();
    let end = scan::array_end(b, i, 1, |m| {
        let mut role = false;
        let end = scan::object_end(b, m, 2, |key, escaped, v| {
            if escaped {
                return Err(Invalid);
            }
            match key {
                b"role" => {
                    let (r, escaped, end) = scan::string_at(b, v)?;
                    let r = std::str::from_utf8(r).map_err(|_| Invalid)?;
                    if escaped || Role::parse(r).is_none() {
                        return Err(Invalid);
                    }
                    role = true;
                    Ok(end)
                }
                b"content" => match b.get(v) {
                    Some(b'"') => {
                        let (t, escaped, end) = scan::string_at(b, v)?;
                        sum.text_bytes += text_len(t, escaped)?;
                        Ok(end)
                    }
                    Some(b'n') => scan::value_end(b, v, 3),
                    Some(b'[') => scan::array_end(b, v, 3, |p| {
                        let mut typed = false;
                        let end = scan::object_end(b, p, 4, |key, escaped, v| {
                            if escaped {
                                return Err(Invalid);
                            }
                            match key {
                                b"type" => {
                                    let (t, escaped, end) = scan::string_at(b, v)?;
                                    if escaped {
                                        return Err(Invalid);
                                    }
                                    sum.has_images |= t == b"image_url";
                                    typed = true;
                                    Ok(end)
                                }
                                b"text" => {
                                    let (t, escaped, end) = scan::string_at(b, v)?;
                                    sum.text_bytes += text_len(t, escaped)?;
                                    Ok(end)
                                }
                                _ => scan::value_end(b, v, 5),
                            }
                        })?;
                        typed.then_some(end).ok_or(Invalid)
                    }),
                    _ => Err(Invalid),
                },
                b"tool_calls" | b"tool_call_id" => {
                    sum.has_tool_messages = true;
                    scan::value_end(b, v, 3)
                }
                _ => scan::value_end(b, v, 3),
            }
        })?;
        sum.count += 1;
        role.then_some(end).ok_or(Invalid)
    })?;
    Ok((sum, end))
}

/// [`scan_messages`] over the start of `text` (a value followed by more JSON): the summary and
/// the length of the `messages` value.
fn summarize_messages(text: &str) -> Result<(MessagesSummary, usize), serde_json::Error> {
    struct Summarized(MessagesSummary);
    impl<'de> Deserialize<'de> for Summarized {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let mut summary = MessagesSummary::default();
            MessagesScan(&mut summary).deserialize(d)?;
            Ok(Self(summary))
        }
    }
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Summarized>();
    match values.next() {
        Some(Ok(s)) => Ok((s.0, values.byte_offset())),
        Some(Err(e)) => Err(e),
        None => Err(serde::de::Error::custom("no messages")),
    }
}

struct MessagesScan<'s>(&'s mut MessagesSummary);

impl<'de> DeserializeSeed<'de> for MessagesScan<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for MessagesScan<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of messages")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(MessageScan(self.0))?.is_some() {
            self.0.count += 1;
        }
        Ok(())
    }
}

struct MessageScan<'s>(&'s mut MessagesSummary);

impl<'de> DeserializeSeed<'de> for MessageScan<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MessageScan<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message object with a `role`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut role = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "role" => {
                    let r: Cow<'de, str> = map.next_value()?;
                    role = Some(Role::parse(&r).ok_or_else(|| {
                        de::Error::custom(format_args!(
                            "unknown role `{r}` (expected system, developer, user, assistant or tool)"
                        ))
                    })?);
                }
                "content" => map.next_value_seed(ContentScan(self.0))?,
                "tool_calls" | "tool_call_id" => {
                    self.0.has_tool_messages = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if role.is_none() {
            return Err(de::Error::missing_field("role"));
        }
        Ok(())
    }
}

struct ContentScan<'s>(&'s mut MessagesSummary);

impl<'de> DeserializeSeed<'de> for ContentScan<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ContentScan<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an array of content parts or null")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.text_bytes += v.len();
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(PartScan(self.0))?.is_some() {}
        Ok(())
    }
}

struct PartScan<'s>(&'s mut MessagesSummary);

impl<'de> DeserializeSeed<'de> for PartScan<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PartScan<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a content part object with a `type`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut have_type = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "type" => {
                    let t: Cow<'de, str> = map.next_value()?;
                    if t == "image_url" {
                        self.0.has_images = true;
                    }
                    have_type = true;
                }
                "text" => {
                    let t: Cow<'de, str> = map.next_value()?;
                    self.0.text_bytes += t.len();
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !have_type {
            return Err(de::Error::missing_field("type"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_keeps_unknown_fields_verbatim() {
        let body = br#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}],"x_custom":{"a": [1, 2]},"temperature":0.5}"#;
        let r = ChatRequest::from_slice(body).unwrap();
        assert_eq!(r.model, "openai/gpt-4o");
        assert_eq!(r.extra.len(), 1);
        assert_eq!(r.extra[0].1.get(), r#"{"a": [1, 2]}"#);
        let out = r.to_openai_json("gpt-4o", true, false);
        let s = std::str::from_utf8(&out).unwrap();
        assert!(s.contains(r#""x_custom":{"a": [1, 2]}"#), "{s}");
        assert!(s.starts_with(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]"#));
    }

    #[test]
    fn forces_usage_on_streams_and_drops_routing_fields() {
        let body = br#"{"model":"a/b","models":["a/b","c/d"],"provider":{"sort":"price"},"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let r = ChatRequest::from_slice(body).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&r.to_openai_json("b", true, false)).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert!(v.get("models").is_none());
        assert!(v.get("provider").is_none());
    }

    #[tokio::test]
    async fn upstream_body_is_the_json_and_shares_long_messages() {
        use http_body::Body as _;
        use http_body_util::BodyExt;
        let turn = r#"{"role":"user","content":"The quick brown fox jumps over the lazy dog."}"#;
        for turns in [1, 200] {
            let messages = vec![turn; turns].join(",");
            let body = Bytes::from(format!(
                r#"{{"model":"a/b","messages":[{messages}],"stream":true,"tools":[{{"type":"function","function":{{"name":"f"}}}}],"x":1}}"#
            ));
            let r = ChatRequest::from_bytes(body.clone()).unwrap();
            let json = r.to_openai_json("b", true, false);
            let upstream = r.to_openai_body("b", true, false);
            assert_eq!(upstream.size_hint().exact(), Some(json.len() as u64));
            let mut frames = Vec::new();
            let mut upstream = std::pin::pin!(upstream);
            while let Some(f) = upstream.frame().await {
                frames.push(f.unwrap().into_data().unwrap());
            }
            assert_eq!(
                frames.concat(),
                json,
                "the same bytes, in one frame or three"
            );
            let long = r.messages.as_bytes().len() >= SHARED_MESSAGES_MIN;
            assert_eq!(long, turns > 1);
            if long {
                // The middle frame is the client's own `messages`, not a copy.
                let start = body.iter().position(|&c| c == b'[').unwrap();
                assert_eq!(frames.len(), 3);
                assert_eq!(frames[1].as_ptr(), body[start..].as_ptr());
            } else {
                assert_eq!(frames.len(), 1);
            }
        }
    }

    #[test]
    fn invalid_utf8_is_a_400_whatever_the_length() {
        for pad in [0, 300] {
            let mut body = format!(
                r#"{{"model":"a/b","messages":[{{"role":"user","content":"{}"#,
                "a".repeat(pad)
            )
            .into_bytes();
            body.extend_from_slice(b"\xc3\x28\"}]}");
            let e = ChatRequest::from_bytes(Bytes::from(body)).unwrap_err();
            assert_eq!(e.status(), 400, "pad {pad}");
        }
    }

    #[test]
    fn fast_and_serde_paths_agree() {
        for body in [
            r#"{"model":"a/b","messages":[{"role":"user","content":"hi \"x\" \u00e9"}],"tools":null,"metadata":{"task":"t"},"temperature":0.5,"stop":["a"],"x":[1,{"y":null}],"stream":false}"#,
            r#" { "models" : ["a/b","c/d"], "provider":{"sort":"price"}, "messages" : [ {"role":"system","content":[{"type":"text","text":"s"}]} ] , "tool_choice":"auto", "response_format":{"type":"json_object"} } "#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stre\u0061m":true}"#,
        ] {
            let fast = ChatRequest::from_slice(body.as_bytes()).unwrap();
            let mut de = serde_json::Deserializer::from_str(body);
            let slow = ChatRequest::deserialize(&mut de).unwrap();
            assert_eq!(
                fast.to_openai_json("u", true, true),
                slow.to_openai_json("u", true, true)
            );
            assert_eq!(fast.summary, slow.summary);
            assert_eq!(fast.tools, slow.tools);
            let again: serde_json::Value = serde_json::to_value(&fast).unwrap();
            let mut orig: serde_json::Value = serde_json::from_str(body).unwrap();
            // A known field set to null is the field left out.
            let o = orig.as_object_mut().unwrap();
            o.retain(|_, v| !v.is_null());
            o.entry("model").or_insert_with(|| "".into());
            assert_eq!(again, orig, "Serialize gives back what the client sent");
        }
    }

    #[test]
    fn summary_counts_text_and_images() {
        let body = br#"{"model":"m","messages":[{"role":"system","content":"abcd"},{"role":"user","content":[{"type":"text","text":"12345678"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#;
        let r = ChatRequest::from_slice(body).unwrap();
        assert_eq!(r.summary.count, 2);
        assert_eq!(r.summary.text_bytes, 12);
        assert!(r.summary.has_images);
        assert!(!r.summary.has_tool_messages);
    }

    #[test]
    fn bad_inputs_are_clear_400s() {
        for (body, needle) in [
            (&b"{not json"[..], "malformed JSON"),
            (br#"{"model":"m","messages":[]}"#, "at least one message"),
            (br#"{"model":"m"}"#, "missing field `messages`"),
            (
                br#"{"messages":[{"role":"user","content":"x"}]}"#,
                "missing field `model`",
            ),
            (
                br#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
                "unknown role",
            ),
            (
                br#"{"model":"m","messages":[{"content":"x"}]}"#,
                "missing field `role`",
            ),
            (
                br#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
                "content part",
            ),
            (br#"{"model":"m","messages":"hi"}"#, "array of messages"),
            (
                br#"{"model":5,"messages":[{"role":"user","content":"x"}]}"#,
                "invalid type",
            ),
            (
                br#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
                "invalid type",
            ),
            (
                br#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#,
                "temperature",
            ),
            (br#"[1,2]"#, "request object"),
        ] {
            let e = ChatRequest::from_slice(body).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(
                e.message().contains(needle),
                "{} does not contain {needle}",
                e.message()
            );
        }
    }

    #[test]
    fn typed_views_parse_on_demand() {
        let body = br#"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}},"stop":"END"}"#;
        let r = ChatRequest::from_slice(body).unwrap();
        assert!(r.summary.has_tool_messages);
        let m = r.parse_messages().unwrap();
        assert_eq!(m[0].tool_calls.as_ref().unwrap()[0].function.name, "f");
        assert_eq!(r.parse_tools().unwrap()[0].function.name, "f");
        assert_eq!(
            r.parse_tool_choice().unwrap(),
            Some(ToolChoice::Function("f".into()))
        );
        assert_eq!(r.stop, Some(Stop::One("END".into())));
    }

    fn any_message() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let text = "[ -~\u{e9}\u{1F600}\n\t\"\\\\]{0,10}";
        let part = (
            prop_oneof![Just("text"), Just("image_url"), Just("input_audio")],
            proptest::option::of(text),
            any::<bool>(),
        )
            .prop_map(|(t, text, typed)| {
                let mut p = serde_json::Map::new();
                if typed {
                    p.insert("type".into(), t.into());
                }
                if let Some(text) = text {
                    p.insert("text".into(), text.into());
                }
                serde_json::Value::Object(p)
            });
        let content = prop_oneof![
            Just(serde_json::Value::Null),
            text.prop_map(serde_json::Value::from),
            proptest::collection::vec(part, 0..3).prop_map(serde_json::Value::from),
            Just(serde_json::json!(7)),
        ]
        .boxed();
        (
            prop_oneof![4 => Just("user"), 4 => Just("system"), 4 => Just("tool"), 1 => Just("robot")],
            proptest::bool::weighted(0.9),
            proptest::option::weighted(0.9, content),
            any::<bool>(),
        )
            .prop_map(|(role, with_role, content, tool)| {
                let mut m = serde_json::Map::new();
                if with_role {
                    m.insert("role".into(), role.into());
                }
                if let Some(c) = content {
                    m.insert("content".into(), c);
                }
                if tool {
                    m.insert("tool_call_id".into(), "c1".into());
                }
                m.insert("name".into(), serde_json::json!({"x": [1, null]}));
                serde_json::Value::Object(m)
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The scanner's summary of `messages` is serde's, on generated arrays and on
        /// single-byte mutations of them (where it refuses, serde decides).
        #[test]
        fn fast_messages_summary_agrees_with_serde(
            msgs in proptest::collection::vec(any_message(), 0..4),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            byte in proptest::prelude::any::<u8>(),
        ) {
            let text = serde_json::to_string(&msgs).unwrap() + "  ,\"x\":1}";
            let mut bytes = text.clone().into_bytes();
            let at = cut.index(bytes.len());
            bytes[at] = byte;
            for t in [text, String::from_utf8(bytes).unwrap_or_default()] {
                if let Ok(fast) = summarize_messages_fast(t.as_bytes(), 0) {
                    let (slow, len) = summarize_messages(&t).unwrap();
                    proptest::prop_assert_eq!(fast, (slow, len), "{}", t);
                }
            }
        }
    }
}
