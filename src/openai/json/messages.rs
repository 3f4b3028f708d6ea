//! [`MessagesSummary`]: what the gateway needs to know of `messages` (count, text size,
//! images, tool messages), gathered while checking the array, without building values.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

#[cfg(not(switchboard_serde_json))]
use super::{scan, Invalid};
use crate::openai::message::Role;

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

/// The summary of the `messages` array at the start of `text` (a value, maybe followed by more
/// JSON) by serde_json, and the length of the array: checks its shape (an array of objects
/// with a known `role` and a string, array or null `content`) without building values.
pub(crate) fn summarize_messages(
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

/// The summary of the `messages` array starting at `s[i]` (a top-level member's value) and
/// where it ends, by the byte scanner in the pass that steps over the array: the same result
/// as [`summarize_messages`] for the messages it accepts; `Err` for anything else (escaped
/// keys or roles, a missing `role`, content of another type, invalid JSON), which the serde
/// path then decides on.
#[cfg(not(switchboard_serde_json))]
pub(crate) fn summary_at(s: &str, i: usize) -> Result<(MessagesSummary, usize), Invalid> {
    let b = s.as_bytes();
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
