//! serde_json in place of the hand-written code (`--cfg switchboard_serde_json`): the same
//! signatures and results, for measuring one against the other (BENCHMARKS.md).

use std::fmt;

use bytes::Bytes;
use serde::de::{Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{summarize_messages, Invalid, Member, MessagesSummary};
use crate::openai::chunk::ChatCompletionChunk;
use crate::openai::response::Usage;

/// Calls `each` for every member of the top-level object in `s` (after validating the whole
/// document) and returns the index of its closing `}`. `end_of(key, start)` reads a value
/// again where the caller wants it parsed (serde_json gives a value's place only once it has
/// stepped over it).
pub(crate) fn members_with<'a>(
    s: &'a str,
    mut end_of: impl FnMut(&'a [u8], usize) -> Option<Result<usize, Invalid>>,
    mut each: impl FnMut(Member<'a>) -> Result<(), Invalid>,
) -> Result<usize, Invalid> {
    struct Walk<'a, 'f> {
        each: &'f mut dyn FnMut(&'a RawValue, &'a RawValue) -> Result<(), Invalid>,
    }
    impl<'a> Visitor<'a> for Walk<'a, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<&'a RawValue>()? {
                let value = map.next_value::<&'a RawValue>()?;
                (self.each)(key, value).map_err(|_| serde::de::Error::custom("refused"))?;
            }
            Ok(())
        }
    }
    let base = s.as_ptr() as usize;
    let span = |raw: &RawValue| {
        let start = raw.get().as_ptr() as usize - base;
        start..start + raw.get().len()
    };
    let mut member = |key: &'a RawValue, value: &'a RawValue| {
        let k = span(key);
        let key = s.as_bytes().get(k.start + 1..k.end - 1).ok_or(Invalid)?;
        let value = span(value);
        if let Some(end) = end_of(key, value.start) {
            if end? != value.end {
                return Err(Invalid);
            }
        }
        each(Member {
            key,
            escaped_key: key.contains(&b'\\'),
            value,
        })
    };
    let mut de = serde_json::Deserializer::from_str(s);
    de.deserialize_map(Walk { each: &mut member })
        .map_err(|_| Invalid)?;
    de.end().map_err(|_| Invalid)?;
    let end = s.trim_end_matches([' ', '\n', '\r', '\t']).len();
    end.checked_sub(1).ok_or(Invalid)
}

/// The `messages` summary of the array at `s[i]` and the index after it.
pub(crate) fn summary_at(s: &str, i: usize) -> Result<(MessagesSummary, usize), Invalid> {
    let rest = s.get(i..).ok_or(Invalid)?;
    let (summary, len) = summarize_messages(rest).map_err(|_| Invalid)?;
    Ok((summary, i + len))
}

/// Appends `u` as JSON.
pub(crate) fn write_usage(out: &mut Vec<u8>, u: &Usage) {
    super::write(out, u);
}

/// Appends `c` as JSON.
pub(crate) fn write_chunk(out: &mut Vec<u8>, c: &ChatCompletionChunk) {
    super::write(out, c);
}

/// `data: {json}\n\n` for `c`, then `tail`.
pub(crate) fn sse_event(c: &ChatCompletionChunk, tail: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(256 + tail.len());
    out.extend_from_slice(b"data: ");
    write_chunk(&mut out, c);
    out.extend_from_slice(b"\n\n");
    out.extend_from_slice(tail);
    Bytes::from(out)
}

/// Decodes a chunk.
pub(crate) fn chunk_from_json(s: &str) -> Result<ChatCompletionChunk, serde_json::Error> {
    serde_json::from_str(s)
}
