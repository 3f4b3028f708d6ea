//! JSON on the hot paths, behind a small API: the members of a top-level object with their
//! byte spans ([`members_with`]: a request and an upstream answer are each read in one
//! validating pass, their raw parts kept as slices of the body), the `messages` summary
//! ([`summary_at`]), streaming chunks read and written ([`chunk_from_json`], [`write_chunk`],
//! [`sse_event`]), `usage` read and written ([`read_usage`], [`write_usage`]), and the
//! splicing helpers built on the member walk.
//!
//! Those functions are hand-written (`scan`, `messages`, `chunk`, `usage`) because they still
//! beat serde_json clearly on the shipped binary, although serde_json too now skips strings
//! eight bytes at a time. Built with `--cfg switchboard_serde_json`, each is replaced by a
//! serde_json implementation with the same signature and results (`with_serde`; `read_usage`
//! falls back to serde_json itself), and the binary then runs (callgrind, cache off) 16 % more
//! instructions per 1 KiB chat request (138.2 k against 119.6 k), 24 % more per 22-event
//! stream (530 k against 426 k) and 2.16× as many on a 32 KiB conversation (402 k against
//! 187 k): serde_json gives a value's place only once it has stepped over it, so `messages` is
//! read twice, and its derived code pays per field and per byte of output. Where serde_json
//! measured as fast it is the only implementation: writing strings, checking a raw value.
//! BENCHMARKS.md ("JSON: hand-written scanner vs serde_json") has the table and the command.

#[cfg(not(switchboard_serde_json))]
mod chunk;
mod messages;
#[cfg(not(switchboard_serde_json))]
mod scan;
#[cfg(not(switchboard_serde_json))]
mod usage;
#[cfg(switchboard_serde_json)]
mod with_serde;

#[cfg(test)]
mod tests;

use std::ops::Range;

use bytes::Bytes;

use super::chunk::ChatCompletionChunk;

pub(crate) use messages::summarize_messages;
pub use messages::MessagesSummary;

// The hand-written implementations, or (`--cfg switchboard_serde_json`) serde_json's.
#[cfg(switchboard_serde_json)]
pub(crate) use with_serde::{
    chunk_from_json, members_with, sse_event, summary_at, write_chunk, write_usage,
};
#[cfg(not(switchboard_serde_json))]
pub(crate) use {
    chunk::{chunk_from_json, sse_event, write_chunk},
    messages::summary_at,
    scan::members_with,
    usage::write_usage,
};

/// A `usage` value (`null` or an object) from its text, as `Option<Usage>`'s `Deserialize`
/// reads it; `None` when the text is not one. Read by hand where it can be, else (and with
/// `--cfg switchboard_serde_json`) by serde_json.
pub(crate) fn read_usage(text: &str) -> Option<Option<crate::openai::response::Usage>> {
    #[cfg(not(switchboard_serde_json))]
    {
        let b = text.as_bytes();
        if let Some((u, end)) = usage::usage_at(b, skip_ws(b, 0), 1) {
            if skip_ws(b, end) == b.len() {
                return Some(u);
            }
        }
    }
    serde_json::from_str(text).ok()
}

/// Not valid JSON, or not the shape asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid;

/// One member of the top-level object.
pub(crate) struct Member<'a> {
    /// The key as written between its quotes (escapes not decoded).
    pub(crate) key: &'a [u8],
    /// Whether the key contains a backslash escape.
    pub(crate) escaped_key: bool,
    /// Where the value is in the body.
    pub(crate) value: Range<usize>,
}

/// `b` as text if it is valid UTF-8: `str::from_utf8` with SIMD (AVX2 / SSE4.2, picked at
/// run time) for whole bodies and events, several times faster on long text.
#[inline]
pub(crate) fn utf8(b: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(b).ok()
}

/// Appends `v` as JSON. Strings and plain structs into a `Vec` cannot fail (non-finite floats
/// become `null`), so there is no error to return.
pub(crate) fn write<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(out, v);
}

/// [`members_with`] stepping over every value itself.
pub(crate) fn members<'a>(
    b: &'a str,
    each: impl FnMut(Member<'a>) -> Result<(), Invalid>,
) -> Result<usize, Invalid> {
    members_with(b, |_, _| None, each)
}

/// The first top-level key of the JSON object `b` that is not in `known` (a key written with
/// escapes counts as unknown, shown as written). `Err` when `b` is not a JSON object in UTF-8.
pub(crate) fn unknown_top_level_key<'a>(
    b: &'a [u8],
    known: &[&str],
) -> Result<Option<&'a [u8]>, Invalid> {
    let mut found = None;
    members(utf8(b).ok_or(Invalid)?, |m| {
        if found.is_none() && (m.escaped_key || !known.iter().any(|k| k.as_bytes() == m.key)) {
            found = Some(m.key);
        }
        Ok(())
    })?;
    Ok(found)
}

/// Where the value of the top-level member `key` of the JSON object `b` is. `None` when `b` is
/// not a JSON object in UTF-8 or `key` is absent or duplicated.
pub(crate) fn top_level_member(b: &[u8], key: &[u8]) -> Option<Range<usize>> {
    let mut found = None;
    let mut twice = false;
    members(utf8(b)?, |m| {
        if m.key == key && !m.escaped_key {
            twice |= found.is_some();
            found = Some(m.value);
        }
        Ok(())
    })
    .ok()?;
    found.filter(|_| !twice)
}

/// `b` with `member` (a JSON `"key":value` text) added at the end of the object that is the
/// value of the top-level member `key`, every other byte as it was. `None` when `b` is not a
/// JSON object in UTF-8 or `key` is absent, duplicated or not an object.
pub(crate) fn add_to_member(b: &[u8], key: &[u8], member: &[u8]) -> Option<Vec<u8>> {
    let value = top_level_member(b, key)?;
    if b.get(value.start) != Some(&b'{') {
        return None;
    }
    // The value ends with its `}`; an empty object takes the member without a comma.
    let close = value.end - 1;
    let empty = skip_ws(b, value.start + 1) == close;
    let mut out = Vec::with_capacity(b.len() + member.len() + 1);
    out.extend_from_slice(&b[..close]);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(member);
    out.extend_from_slice(&b[close..]);
    Some(out)
}

/// `body` (a JSON object) with the value of its top-level member `key` replaced by the string
/// `value`, every other byte as it was. `None` when `body` is not one valid JSON object in
/// UTF-8, has no such member, or has a key written with escapes (which might decode to `key`).
pub(crate) fn replace_member_str(body: &[u8], key: &str, value: &str) -> Option<Vec<u8>> {
    let mut span = None;
    let mut escaped = false;
    members(utf8(body)?, |m| {
        escaped |= m.escaped_key;
        if m.key == key.as_bytes() {
            span = Some(m.value);
        }
        Ok(())
    })
    .ok()?;
    let span = span.filter(|_| !escaped)?;
    let mut out = Vec::with_capacity(body.len() + value.len());
    out.extend_from_slice(body.get(..span.start)?);
    write(&mut out, value);
    out.extend_from_slice(body.get(span.end..)?);
    Some(out)
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
#[inline]
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

impl ChatCompletionChunk {
    /// Appends the chunk as JSON to `out`: the very bytes `serde_json::to_vec(self)` gives.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        write_chunk(out, self);
    }

    /// The chunk as one server-sent event, `data: {json}\n\n` with the JSON of
    /// [`write_json`](Self::write_json), in a single buffer.
    pub fn to_sse_event(&self) -> Bytes {
        sse_event(self, b"")
    }

    /// [`to_sse_event`](Self::to_sse_event) followed by `tail` in the same buffer.
    pub(crate) fn to_sse_event_then(&self, tail: &[u8]) -> Bytes {
        sse_event(self, tail)
    }

    /// Decodes a chunk: the same result, value or error, as
    /// `serde_json::from_str::<ChatCompletionChunk>(s)`.
    pub(crate) fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        chunk_from_json(s)
    }
}
