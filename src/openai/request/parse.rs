//! Parsing: the byte scanner's fast path, the serde path it falls back on, and the summary
//! of `messages` both gather.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::{ChatRequest, MessagesSummary, RawJson};
use crate::openai::message::Role;
use crate::openai::scan;
use crate::Error;

impl ChatRequest {
    /// One validating pass over the body with the byte scanner; typed fields are parsed from
    /// their own small slices, `messages` by the summary scan, raw fields kept as slices of
    /// `src` (valid UTF-8). `None` for anything it does not accept.
    pub(super) fn parse_fast(src: &Bytes) -> Option<Self> {
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
    summarize_messages(raw)
        .map(|(summary, _)| summary)
        .map_err(|e| format!("invalid `messages`: {e}"))
}

/// The summary of the `messages` array starting at `b[i]` (a top-level member's value) and
/// where it ends, by the byte scanner: the same result as [`summarize_messages`] for the
/// messages it accepts; `Err` for anything else (escaped keys or roles, a missing `role`,
/// content of another type, invalid JSON), which the serde path then decides on.
pub(super) fn summarize_messages_fast(
    b: &[u8],
    i: usize,
) -> Result<(MessagesSummary, usize), scan::Invalid> {
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
pub(super) fn summarize_messages(
    text: &str,
) -> Result<(MessagesSummary, usize), serde_json::Error> {
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
