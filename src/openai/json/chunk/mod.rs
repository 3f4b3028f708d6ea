//! The streaming hot path's JSON for [`ChatCompletionChunk`]: a writer producing exactly the
//! bytes `serde_json::to_vec` gives, straight into an SSE frame, and a reader for the common
//! chunk shape that hands anything unusual to serde_json.
//!
//! # Writer
//!
//! serde_json escapes strings one byte at a time through a lookup table and grows its output
//! `Vec` as it goes, and framing its output as an SSE event copies it again. [`sse_event`]
//! sizes one buffer up front (exactly, unless an identifier needs escapes, when it grows once),
//! writes `data: `, the JSON and `\n\n` into it, and hands it over as `Bytes` without a copy.
//! Strings are escaped as serde_json does (`"`, `\` and control characters; `\b \t \n \f \r`
//! short forms, others `\u00xx`), the plain runs between escapes found eight bytes at a time.
//! Values the gateway does not type (`logprobs`, `reasoning_details`) and the rare `error`
//! object are written by serde_json itself, the final chunk's `usage` by the `usage` module.
//!
//! # Reader
//!
//! [`decode`] walks the chunk with the validating scanner of [`super::scan`] and builds the
//! typed value directly. It only accepts what it is sure serde_json accepts *with the same
//! result*: on anything else (escaped keys, duplicate fields, an `error` member, a number that
//! is not a plain unsigned integer, a struct written as an array, a lone surrogate, nesting near
//! serde_json's limit, …) it gives up and the caller runs `serde_json::from_str`, so errors and
//! edge cases are serde_json's own. Sub-values the gateway does not look into (`usage`,
//! `logprobs`, `reasoning_details`) are handed to serde_json as slices.

use std::borrow::Cow;

use bytes::Bytes;

use super::scan::{
    self, hex4, json_str_len, null_end as null, object_members, skip_ws, string_end, uint,
    value_end, write_str as write_json_str, Seen,
};
use super::usage::{write_u64, write_usage};
use super::{write as write_json, Invalid};
use crate::openai::chunk::{
    chunk_object, ChatCompletionChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta,
    CHUNK_OBJECT,
};
use crate::openai::response::FinishReason;

// ---------------------------------------------------------------------------------------------
// Writer

/// `data: {json}\n\n` for `c`, then `tail`, in one buffer sized up front.
pub(crate) fn sse_event(c: &ChatCompletionChunk, tail: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(chunk_len(c) + 8 + tail.len());
    out.extend_from_slice(b"data: ");
    write_chunk(&mut out, c);
    out.extend_from_slice(b"\n\n");
    out.extend_from_slice(tail);
    Bytes::from(out)
}

/// Appends `c` as JSON (the bytes of `serde_json::to_vec(c)`).
pub(crate) fn write_chunk(out: &mut Vec<u8>, c: &ChatCompletionChunk) {
    out.extend_from_slice(b"{\"id\":");
    write_json_str(out, &c.id);
    out.extend_from_slice(b",\"object\":");
    write_json_str(out, &c.object);
    out.extend_from_slice(b",\"created\":");
    write_u64(out, c.created);
    out.extend_from_slice(b",\"model\":");
    write_json_str(out, &c.model);
    out.extend_from_slice(b",\"choices\":[");
    for (n, ch) in c.choices.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_choice(out, ch);
    }
    out.push(b']');
    if let Some(u) = &c.usage {
        out.extend_from_slice(b",\"usage\":");
        write_usage(out, u);
    }
    if let Some(s) = &c.system_fingerprint {
        out.extend_from_slice(b",\"system_fingerprint\":");
        write_json_str(out, s);
    }
    if let Some(s) = &c.provider {
        out.extend_from_slice(b",\"provider\":");
        write_json_str(out, s);
    }
    if let Some(e) = &c.error {
        out.extend_from_slice(b",\"error\":");
        write_json(out, &**e);
    }
    out.push(b'}');
}

fn write_choice(out: &mut Vec<u8>, ch: &ChunkChoice) {
    out.extend_from_slice(b"{\"index\":");
    write_u64(out, u64::from(ch.index));
    out.extend_from_slice(b",\"delta\":");
    write_delta(out, &ch.delta);
    out.extend_from_slice(b",\"finish_reason\":");
    match ch.finish_reason {
        Some(f) => {
            out.push(b'"');
            out.extend_from_slice(f.as_str().as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    if let Some(s) = &ch.native_finish_reason {
        out.extend_from_slice(b",\"native_finish_reason\":");
        write_json_str(out, s);
    }
    if let Some(v) = &ch.logprobs {
        out.extend_from_slice(b",\"logprobs\":");
        write_json(out, v);
    }
    out.push(b'}');
}

/// The members of an object whose fields are all optional: a comma before every one but the
/// first.
struct Members<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Members<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// Writes the separator and `key` (quoted, with its colon) and returns the output.
    fn key(&mut self, key: &[u8]) -> &mut Vec<u8> {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.extend_from_slice(key);
        self.out
    }

    fn str(&mut self, key: &[u8], v: Option<&String>) {
        if let Some(s) = v {
            let out = self.key(key);
            write_json_str(out, s);
        }
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

fn write_delta(out: &mut Vec<u8>, d: &Delta) {
    let mut m = Members::open(out);
    m.str(b"\"role\":", d.role.as_ref());
    m.str(b"\"content\":", d.content.as_ref());
    m.str(b"\"reasoning\":", d.reasoning.as_ref());
    if let Some(v) = &d.reasoning_details {
        write_json(m.key(b"\"reasoning_details\":"), v);
    }
    m.str(b"\"refusal\":", d.refusal.as_ref());
    if let Some(calls) = &d.tool_calls {
        let out = m.key(b"\"tool_calls\":");
        out.push(b'[');
        for (n, t) in calls.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_tool_call(out, t);
        }
        out.push(b']');
    }
    m.close();
}

fn write_tool_call(out: &mut Vec<u8>, t: &ToolCallDelta) {
    out.extend_from_slice(b"{\"index\":");
    write_u64(out, u64::from(t.index));
    if let Some(s) = &t.id {
        out.extend_from_slice(b",\"id\":");
        write_json_str(out, s);
    }
    if let Some(s) = &t.kind {
        out.extend_from_slice(b",\"type\":");
        write_json_str(out, s);
    }
    if let Some(f) = &t.function {
        out.extend_from_slice(b",\"function\":");
        let mut m = Members::open(out);
        m.str(b"\"name\":", f.name.as_ref());
        m.str(b"\"arguments\":", f.arguments.as_ref());
        m.close();
    }
    out.push(b'}');
}

fn u64_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// `,"key":` and the text `v` (exact: escapes counted).
fn opt_str_len(key: &str, v: Option<&String>) -> usize {
    v.map_or(0, |s| key.len() + 4 + json_str_len(s))
}

/// The length of an identifier-like string (an id, a model, a role) as JSON, assuming it needs
/// no escape: true in practice, and the buffer only grows once when it is not.
fn name_len(s: &str) -> usize {
    s.len() + 2
}

/// `,"key":` and the identifier `v`.
fn opt_name_len(key: &str, v: Option<&String>) -> usize {
    v.map_or(0, |s| key.len() + 4 + name_len(s))
}

/// The length of `write_chunk`'s output: exact but for `usage` and the parts serde_json writes
/// (`error`, `logprobs`, `reasoning_details`), which are estimated, and for escapes in
/// identifiers (see [`name_len`]). Text (content, reasoning, refusal, tool names and
/// arguments) is measured exactly.
fn chunk_len(c: &ChatCompletionChunk) -> usize {
    // {"id":,"object":,"created":,"model":,"choices":[]}
    let mut n = 50 + name_len(&c.id) + name_len(&c.object) + u64_len(c.created);
    n += name_len(&c.model);
    n += c.choices.len().saturating_sub(1);
    for ch in &c.choices {
        // {"index":,"delta":,"finish_reason":}
        n += 36 + u64_len(u64::from(ch.index));
        n += ch.finish_reason.map_or(4, |f| f.as_str().len() + 2);
        n += opt_name_len("native_finish_reason", ch.native_finish_reason.as_ref());
        n += ch.logprobs.as_ref().map_or(0, |_| 12 + 256);
        n += delta_len(&ch.delta);
    }
    n += c.usage.as_ref().map_or(0, |_| 10 + 320);
    n += opt_name_len("system_fingerprint", c.system_fingerprint.as_ref());
    n += opt_name_len("provider", c.provider.as_ref());
    n += c.error.as_ref().map_or(0, |e| {
        10 + 64 + json_str_len(&e.message) + json_str_len(&e.kind)
    });
    n
}

fn delta_len(d: &Delta) -> usize {
    // `{}`, and every member counted with a leading comma (one too many when there are any)
    let mut n = 2;
    n += opt_name_len("role", d.role.as_ref());
    n += opt_str_len("content", d.content.as_ref());
    n += opt_str_len("reasoning", d.reasoning.as_ref());
    n += d
        .reasoning_details
        .as_ref()
        .map_or(0, |v| 21 + 2 + 128 * v.len());
    n += opt_str_len("refusal", d.refusal.as_ref());
    if let Some(calls) = &d.tool_calls {
        // ,"tool_calls":[]
        n += 16 + calls.len().saturating_sub(1);
        for t in calls {
            // {"index":}
            n += 10 + u64_len(u64::from(t.index));
            n += opt_name_len("id", t.id.as_ref());
            n += opt_name_len("type", t.kind.as_ref());
            if let Some(f) = &t.function {
                // ,"function":{}
                n += 14;
                let m = opt_str_len("name", f.name.as_ref())
                    + opt_str_len("arguments", f.arguments.as_ref());
                n += m.saturating_sub(1);
            }
        }
    }
    if n > 2 {
        n -= 1;
    }
    n
}

// ---------------------------------------------------------------------------------------------
// Reader

/// Decodes `s` as `serde_json::from_str::<ChatCompletionChunk>` does.
pub(crate) fn chunk_from_json(s: &str) -> Result<ChatCompletionChunk, serde_json::Error> {
    match decode(s) {
        Some(c) => Ok(c),
        None => serde_json::from_str(s),
    }
}

/// The fast path: `Some` only when serde_json would decode `s` to the very same chunk. Values
/// are written in place (no struct is moved once built).
fn decode(s: &str) -> Option<ChatCompletionChunk> {
    let b = s.as_bytes();
    let mut seen = Seen::default();
    // `object` defaults to `chat.completion.chunk`, as serde_json's decode has it.
    let mut c = ChatCompletionChunk::new(String::new(), String::new(), 0);
    let end = object_members(b, skip_ws(b, 0), |key, i| match key {
        b"id" => {
            seen.first(0)?;
            string_into(s, i, &mut c.id)
        }
        b"object" => {
            seen.first(1)?;
            let (v, end) = str_value(s, i)?;
            c.object = if v == CHUNK_OBJECT {
                chunk_object()
            } else {
                Cow::Owned(v.into_owned())
            };
            Some(end)
        }
        b"created" => {
            seen.first(2)?;
            let (v, end) = uint(b, i, u64::MAX)?;
            c.created = v;
            Some(end)
        }
        b"model" => {
            seen.first(3)?;
            string_into(s, i, &mut c.model)
        }
        b"choices" => {
            seen.first(4)?;
            // Almost always one choice.
            c.choices = Vec::with_capacity(1);
            array_elements(b, i, |i| {
                c.choices.push(ChunkChoice {
                    index: 0,
                    delta: Delta::default(),
                    finish_reason: None,
                    native_finish_reason: None,
                    logprobs: None,
                });
                choice(s, i, c.choices.last_mut()?)
            })
        }
        b"usage" => {
            seen.first(5)?;
            // Depth 2, as `by_serde` counts it (one stricter than the scanner's own limit).
            match super::usage::usage_at(s.as_bytes(), i, 2) {
                Some((u, end)) => {
                    c.usage = u.map(Box::new);
                    Some(end)
                }
                None => by_serde(s, i, 1, &mut c.usage),
            }
        }
        b"system_fingerprint" => {
            seen.first(6)?;
            opt_string_into(s, i, &mut c.system_fingerprint)
        }
        b"provider" => {
            seen.first(7)?;
            opt_string_into(s, i, &mut c.provider)
        }
        // A mid-stream error: serde_json's path gives its exact shape (or error).
        b"error" => None,
        _ => skip(b, i, 1),
    })?;
    if skip_ws(b, end) != b.len() || !seen.has(0) {
        return None;
    }
    Some(c)
}

/// One element of `choices` (at depth 2).
fn choice(s: &str, i: usize, c: &mut ChunkChoice) -> Option<usize> {
    let b = s.as_bytes();
    let mut seen = Seen::default();
    object_members(b, i, |key, i| match key {
        b"index" => {
            seen.first(0)?;
            let (v, end) = uint(b, i, u64::from(u32::MAX))?;
            c.index = u32::try_from(v).ok()?;
            Some(end)
        }
        b"delta" => {
            seen.first(1)?;
            delta(s, i, &mut c.delta)
        }
        b"finish_reason" => {
            seen.first(2)?;
            if let Some(end) = null(b, i) {
                return Some(end);
            }
            let (v, end) = str_value(s, i)?;
            c.finish_reason = Some(FinishReason::from_native(&v));
            Some(end)
        }
        b"native_finish_reason" => {
            seen.first(3)?;
            opt_string_into(s, i, &mut c.native_finish_reason)
        }
        b"logprobs" => {
            seen.first(4)?;
            by_serde(s, i, 3, &mut c.logprobs)
        }
        _ => skip(b, i, 3),
    })
}

/// `choices[].delta` (at depth 3).
fn delta(s: &str, i: usize, d: &mut Delta) -> Option<usize> {
    let b = s.as_bytes();
    let mut seen = Seen::default();
    let mut reasoning_content = None;
    let end = object_members(b, i, |key, i| match key {
        b"role" => {
            seen.first(0)?;
            opt_string_into(s, i, &mut d.role)
        }
        b"content" => {
            seen.first(1)?;
            opt_string_into(s, i, &mut d.content)
        }
        b"reasoning" => {
            seen.first(2)?;
            opt_string_into(s, i, &mut d.reasoning)
        }
        b"reasoning_details" => {
            seen.first(3)?;
            by_serde(s, i, 4, &mut d.reasoning_details)
        }
        // DeepSeek's name (xAI, vLLM, SGLang, Together): `reasoning` when that is absent.
        b"reasoning_content" => {
            seen.first(6)?;
            opt_string_into(s, i, &mut reasoning_content)
        }
        b"refusal" => {
            seen.first(4)?;
            opt_string_into(s, i, &mut d.refusal)
        }
        b"tool_calls" => {
            seen.first(5)?;
            if let Some(end) = null(b, i) {
                return Some(end);
            }
            let calls = d.tool_calls.insert(Vec::with_capacity(1));
            array_elements(b, i, |i| {
                calls.push(ToolCallDelta::default());
                tool_call(s, i, calls.last_mut()?)
            })
        }
        _ => skip(b, i, 4),
    })?;
    if d.reasoning.is_none() {
        d.reasoning = reasoning_content;
    }
    Some(end)
}

/// One element of `delta.tool_calls` (at depth 5).
fn tool_call(s: &str, i: usize, t: &mut ToolCallDelta) -> Option<usize> {
    let b = s.as_bytes();
    let mut seen = Seen::default();
    let end = object_members(b, i, |key, i| match key {
        b"index" => {
            seen.first(0)?;
            let (v, end) = uint(b, i, u64::from(u32::MAX))?;
            t.index = u32::try_from(v).ok()?;
            Some(end)
        }
        b"id" => {
            seen.first(1)?;
            opt_string_into(s, i, &mut t.id)
        }
        b"type" => {
            seen.first(2)?;
            opt_string_into(s, i, &mut t.kind)
        }
        b"function" => {
            seen.first(3)?;
            if let Some(end) = null(b, i) {
                return Some(end);
            }
            function(s, i, t.function.insert(FunctionCallDelta::default()))
        }
        _ => skip(b, i, 6),
    })?;
    // `index` has no default: serde_json reports it missing.
    seen.has(0).then_some(end)
}

/// `tool_calls[].function` (at depth 6).
fn function(s: &str, i: usize, f: &mut FunctionCallDelta) -> Option<usize> {
    let b = s.as_bytes();
    let mut seen = Seen::default();
    object_members(b, i, |key, i| match key {
        b"name" => {
            seen.first(0)?;
            opt_string_into(s, i, &mut f.name)
        }
        b"arguments" => {
            seen.first(1)?;
            opt_string_into(s, i, &mut f.arguments)
        }
        _ => skip(b, i, 7),
    })
}

/// Calls `element(start)` for every element of the array at `b[i]`; returns the index after
/// the closing bracket.
fn array_elements(
    b: &[u8],
    i: usize,
    mut element: impl FnMut(usize) -> Option<usize>,
) -> Option<usize> {
    scan::array_end(b, i, 0, |p| element(p).ok_or(Invalid)).ok()
}

/// Steps over (and validates) an ignored value at nesting `depth` (the top-level object is
/// depth 0). The scanner is asked for one level less than it allows: serde_json refuses a
/// container at depth 127 of a document, the scanner only at 128.
fn skip(b: &[u8], i: usize, depth: u32) -> Option<usize> {
    value_end(b, i, depth + 1).ok()
}

/// A value the fast path does not type itself, found by the scanner (checked against the depth
/// limit where it sits) and decoded by serde_json from its slice into `out` (an `Option`, left
/// `None` for `null`).
fn by_serde<T: serde::de::DeserializeOwned>(
    s: &str,
    i: usize,
    depth: u32,
    out: &mut Option<T>,
) -> Option<usize> {
    if let Some(end) = null(s.as_bytes(), i) {
        return Some(end);
    }
    let end = skip(s.as_bytes(), i, depth)?;
    *out = serde_json::from_str(s.get(i..end)?).ok()?;
    Some(end)
}

/// A string or `null` into `out` (left `None` for `null`).
#[inline]
fn opt_string_into(s: &str, i: usize, out: &mut Option<String>) -> Option<usize> {
    if let Some(end) = null(s.as_bytes(), i) {
        return Some(end);
    }
    string_into(s, i, out.insert(String::new()))
}

/// The string starting at `s[i]` (a quote), decoded and appended to `out`; returns the index
/// after it.
#[inline]
fn string_into(s: &str, i: usize, out: &mut String) -> Option<usize> {
    let (raw, escaped, end) = raw_string(s, i)?;
    if escaped {
        unescape_into(raw, out)?;
    } else if out.is_empty() {
        // Allocated at its size in one step (`push_str` goes through the growth path).
        *out = raw.to_owned();
    } else {
        out.push_str(raw);
    }
    Some(end)
}

/// The string starting at `s[i]` (a quote), borrowed from `s` when it has no escapes.
fn str_value(s: &str, i: usize) -> Option<(Cow<'_, str>, usize)> {
    let (raw, escaped, end) = raw_string(s, i)?;
    if escaped {
        let mut out = String::with_capacity(raw.len());
        unescape_into(raw, &mut out)?;
        Some((Cow::Owned(out), end))
    } else {
        Some((Cow::Borrowed(raw), end))
    }
}

/// The content of the string starting at `s[i]` as written, whether it has escapes, and the
/// index after the closing quote.
#[inline]
fn raw_string(s: &str, i: usize) -> Option<(&str, bool, usize)> {
    let b = s.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let (end, escaped) = string_end(b, i).ok()?;
    // The quotes are ASCII, so the content is a valid `str` slice.
    Some((s.get(i + 1..end - 1)?, escaped, end))
}

/// Decodes the escapes of a string's content (already checked by the scanner) into `out`.
/// `None` on a lone surrogate, which serde_json refuses.
fn unescape_into(raw: &str, out: &mut String) -> Option<()> {
    out.reserve(raw.len());
    let mut rest = raw;
    while let Some(at) = memchr::memchr(b'\\', rest.as_bytes()) {
        out.push_str(rest.get(..at)?);
        let (c, len) = match rest.as_bytes().get(at + 1)? {
            b'"' => ('"', 2),
            b'\\' => ('\\', 2),
            b'/' => ('/', 2),
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            b'u' => {
                let hi = hex4(rest.as_bytes().get(at + 2..at + 6)?)?;
                match hi {
                    0xD800..=0xDBFF => {
                        if rest.get(at + 6..at + 8)? != "\\u" {
                            return None;
                        }
                        let lo = hex4(rest.as_bytes().get(at + 8..at + 12)?)?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return None;
                        }
                        let c = 0x1_0000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        (char::from_u32(c)?, 12)
                    }
                    0xDC00..=0xDFFF => return None,
                    _ => (char::from_u32(hi)?, 6),
                }
            }
            _ => return None,
        };
        out.push(c);
        rest = rest.get(at + len..)?;
    }
    out.push_str(rest);
    Some(())
}

#[cfg(test)]
mod tests;
