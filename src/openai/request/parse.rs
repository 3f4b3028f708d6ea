//! Parsing: the fast path over [`json::members_with`], and the serde path it falls back on.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::{ChatRequest, MessagesSummary, RawJson};
use crate::openai::json::{self, Invalid};
use crate::Error;

impl ChatRequest {
    /// One validating pass over the body (`text`, the same bytes as `src`); typed fields are
    /// parsed from their own small slices, `messages` by the summary scan, raw fields kept as
    /// slices of `src`. `None` for anything it does not accept.
    pub(super) fn parse_fast(src: &Bytes, text: &str) -> Option<Self> {
        let mut r = Self::default();
        let (mut have_model, mut have_messages) = (false, false);
        let mut summary = None;
        // `messages` is checked and summarised in the same pass that finds its end.
        let messages_end = |key: &[u8], start: usize| {
            (key == b"messages").then(|| {
                let (s, end) = match json::summary_at(text, start) {
                    Ok(done) => done,
                    // Escapes in keys, unusual shapes, errors: serde decides.
                    Err(Invalid) => text
                        .get(start..)
                        .ok_or(Invalid)
                        .and_then(|rest| json::summarize_messages(rest).map_err(|_| Invalid))
                        .map(|(s, len)| (s, start + len))?,
                };
                summary = Some(s);
                Ok(end)
            })
        };
        json::members_with(text, messages_end, |m| {
            if m.escaped_key {
                return Err(Invalid);
            }
            let text = &src[m.value.clone()];
            let raw = || (text != b"null").then(|| RawJson::slice(src, m.value.clone()));
            macro_rules! typed {
                ($($f:ident),*) => {
                    match m.key {
                        $(k if k == stringify!($f).as_bytes() => {
                            r.$f = serde_json::from_slice(text).map_err(|_| Invalid)?;
                        })*
                        b"model" => {
                            r.model = serde_json::from_slice(text).map_err(|_| Invalid)?;
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
                            let key = std::str::from_utf8(key).map_err(|_| Invalid)?;
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
}

pub(super) fn json_error(e: &serde_json::Error) -> Error {
    let msg = match e.classify() {
        serde_json::error::Category::Data => format!("invalid request: {e}"),
        _ => format!("malformed JSON body: {e}"),
    };
    Error::invalid_request(msg).with_code("invalid_json")
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
    json::summarize_messages(raw)
        .map(|(summary, _)| summary)
        .map_err(|e| format!("invalid `messages`: {e}"))
}
