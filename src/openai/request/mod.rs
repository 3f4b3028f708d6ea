//! [`ChatRequest`]: parsed once at the edge, shared behind an `Arc`.
//!
//! This module holds the typed request, its accessors and its OpenAI JSON writer; `parse`
//! holds the fast path over the `json` module's member walk and the serde path it falls
//! back on.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use super::json::{self, write as write_json, MessagesSummary};
use super::message::{Message, Tool, ToolChoice};
use crate::Error;
use parse::json_error;

mod parse;
#[cfg(test)]
mod tests;

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
        let text = json.trim();
        if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            Ok(Self::whole(Bytes::copy_from_slice(text.as_bytes())))
        } else {
            Err(Error::invalid_request("not a JSON value"))
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
        let fast = json::utf8(&body).and_then(|text| Self::parse_fast(&body, text));
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

    /// Everything after `messages` in [`to_openai_json`](Self::to_openai_json), closing brace
    /// included.
    pub(crate) fn write_openai_rest(
        &self,
        out: &mut Vec<u8>,
        force_usage: bool,
        keep_routing: bool,
    ) {
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

/// The start of an upstream OpenAI body, up to the value of `messages`.
pub(crate) fn write_openai_head(out: &mut Vec<u8>, model: &str) {
    out.extend_from_slice(b"{\"model\":");
    write_json(out, model);
    out.extend_from_slice(b",\"messages\":");
}

fn write_key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
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
