//! Claude bodies for Vertex: an Anthropic Messages body without `model`, with
//! `anthropic_version` — edited in place, every other byte kept.

use super::ANTHROPIC_VERSION;

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// The first index at or after `i` that is not whitespace.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    i
}

/// One past the last index before `i` that is not whitespace.
fn skip_ws_back(b: &[u8], mut i: usize) -> usize {
    while i > 0 && b.get(i - 1).copied().is_some_and(is_ws) {
        i -= 1;
    }
    i
}

/// `body` (an Anthropic Messages request) as Vertex wants it: the top-level `model` member
/// removed and `"anthropic_version":"vertex-2023-10-16"` added as the first member. `None`
/// when `body` is not one JSON object with exactly one `model` member written without
/// escapes, or already has an `anthropic_version`.
pub fn messages_body(body: &[u8]) -> Option<Vec<u8>> {
    if crate::openai::top_level_member(body, b"anthropic_version").is_some() {
        return None;
    }
    let value = crate::openai::top_level_member(body, b"model")?;
    // Back from the value: whitespace, `:`, whitespace, then the key `"model"` itself
    // (written without escapes: `top_level_member` skips escaped keys).
    let colon = skip_ws_back(body, value.start).checked_sub(1)?;
    if body.get(colon) != Some(&b':') {
        return None;
    }
    const KEY: &[u8] = b"\"model\"";
    let key_end = skip_ws_back(body, colon);
    let key_start = key_end.checked_sub(KEY.len())?;
    if body.get(key_start..key_end) != Some(KEY) {
        return None;
    }
    // The member and one comma next to it: the one after, else the one before.
    let after = skip_ws(body, value.end);
    let (cut_start, cut_end) = if body.get(after) == Some(&b',') {
        (key_start, after + 1)
    } else {
        let before = skip_ws_back(body, key_start);
        match before.checked_sub(1) {
            Some(c) if body.get(c) == Some(&b',') => (c, value.end),
            _ => (key_start, value.end),
        }
    };
    let open = skip_ws(body, 0);
    if body.get(open) != Some(&b'{') || cut_start <= open {
        return None;
    }
    let head = body.get(open + 1..cut_start)?;
    let tail = body.get(cut_end..)?;
    let mut out = Vec::with_capacity(body.len() + 48);
    out.extend_from_slice(body.get(..=open)?);
    out.extend_from_slice(b"\"anthropic_version\":\"");
    out.extend_from_slice(ANTHROPIC_VERSION.as_bytes());
    out.push(b'"');
    // A comma unless nothing but the closing brace is left.
    let rest_first = head.iter().chain(tail.iter()).copied().find(|b| !is_ws(*b));
    if rest_first != Some(b'}') {
        out.push(b',');
    }
    out.extend_from_slice(head);
    out.extend_from_slice(tail);
    Some(out)
}
