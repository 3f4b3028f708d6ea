//! The validating byte scanner: finds the members of the top-level object and checks
//! everything it steps over (strings, escapes, numbers, literals, nesting) without building
//! values, so a body it accepts is valid JSON. UTF-8 is the caller's check
//! ([`utf8`](super::utf8) on the whole body).

pub(crate) use super::skip_ws;
use super::{Invalid, Member};

/// Nesting deeper than this is refused (serde_json's own default limit).
pub(crate) const MAX_DEPTH: u32 = 128;

/// Calls `each` for every member of the top-level object in `b` (after validating the whole
/// document) and returns the index of its closing `}`. Anything but whitespace after the object
/// is an error. `end_of(key, start)` may find (and check) a value's end itself, for a value
/// the caller parses anyway (one pass instead of two); `None` leaves it to the scanner.
pub(crate) fn members_with<'a>(
    s: &'a str,
    mut end_of: impl FnMut(&'a [u8], usize) -> Option<Result<usize, Invalid>>,
    mut each: impl FnMut(Member<'a>) -> Result<(), Invalid>,
) -> Result<usize, Invalid> {
    let b = s.as_bytes();
    let i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err(Invalid);
    }
    let end = object_end(b, i, 0, |key, escaped_key, start| {
        let end = match end_of(key, start) {
            Some(end) => end?,
            None => value_end(b, start, 1)?,
        };
        each(Member {
            key,
            escaped_key,
            value: start..end,
        })?;
        Ok(end)
    })?;
    if skip_ws(b, end) != b.len() {
        return Err(Invalid);
    }
    Ok(end - 1)
}

/// `b[i]` is `{` (an object at nesting `depth`, 0 for the top level): calls
/// `each(key, escaped_key, value_start)` for every member, which must step over the value (its
/// nesting is `depth + 1`) and return where it ends; returns the index after the closing `}`.
pub(crate) fn object_end<'a>(
    b: &'a [u8],
    i: usize,
    depth: u32,
    mut each: impl FnMut(&'a [u8], bool, usize) -> Result<usize, Invalid>,
) -> Result<usize, Invalid> {
    if depth >= MAX_DEPTH || b.get(i) != Some(&b'{') {
        return Err(Invalid);
    }
    let mut i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Ok(i + 1);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(Invalid);
        }
        let (key_end, escaped) = string_end(b, i)?;
        let key = &b[i + 1..key_end - 1];
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return Err(Invalid);
        }
        i = skip_ws(b, each(key, escaped, skip_ws(b, i + 1))?);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Ok(i + 1),
            _ => return Err(Invalid),
        }
    }
}

/// The fields of one struct already seen (serde_json refuses duplicates).
#[derive(Default)]
pub(crate) struct Seen(u8);

impl Seen {
    /// `None` if field `bit` was seen before.
    pub(crate) fn first(&mut self, bit: u8) -> Option<()> {
        let mask = 1 << bit;
        if self.0 & mask != 0 {
            return None;
        }
        self.0 |= mask;
        Some(())
    }

    pub(crate) fn has(&self, bit: u8) -> bool {
        self.0 & (1 << bit) != 0
    }
}

/// Calls `member(key, value_start)` for every member of the object at `b[i]`; `member` reads
/// or skips the value and returns where it ends. Returns the index after the closing brace.
/// Keys with escapes are refused (serde_json matches field names after decoding them). The
/// walk itself passes depth 0: the depth limit is the caller's to check where it steps over
/// a value it does not read.
pub(crate) fn object_members<'a>(
    b: &'a [u8],
    i: usize,
    mut member: impl FnMut(&'a [u8], usize) -> Option<usize>,
) -> Option<usize> {
    object_end(b, i, 0, |key, escaped, v| {
        if escaped {
            return Err(Invalid);
        }
        member(key, v).ok_or(Invalid)
    })
    .ok()
}

/// `b[i]` is `[` (an array at nesting `depth`): calls `each(element_start)` for every element,
/// which must step over it and return where it ends; returns the index after the `]`.
pub(crate) fn array_end(
    b: &[u8],
    i: usize,
    depth: u32,
    mut each: impl FnMut(usize) -> Result<usize, Invalid>,
) -> Result<usize, Invalid> {
    if depth >= MAX_DEPTH || b.get(i) != Some(&b'[') {
        return Err(Invalid);
    }
    let mut i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Ok(i + 1);
    }
    loop {
        i = skip_ws(b, each(i)?);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Ok(i + 1),
            _ => return Err(Invalid),
        }
    }
}

/// The contents of a string `b[i]` starts (its opening quote), checked, with the index after
/// it: `Ok((contents, escaped, end))`.
pub(crate) fn string_at(b: &[u8], i: usize) -> Result<(&[u8], bool, usize), Invalid> {
    if b.get(i) != Some(&b'"') {
        return Err(Invalid);
    }
    let (end, escaped) = string_end(b, i)?;
    Ok((&b[i + 1..end - 1], escaped, end))
}

/// The length in UTF-8 bytes of a checked string's contents once its escapes are decoded
/// (what `str::len` of the parsed string gives). `None` for a lone surrogate escape, which
/// serde_json refuses.
pub(crate) fn decoded_len(raw: &[u8]) -> Option<usize> {
    let mut len = 0;
    let mut i = 0;
    while i < raw.len() {
        let Some(p) = memchr_backslash(&raw[i..]) else {
            return Some(len + raw.len() - i);
        };
        len += p;
        i += p;
        if raw.get(i + 1) != Some(&b'u') {
            len += 1;
            i += 2;
            continue;
        }
        let unit = hex4(raw.get(i + 2..i + 6)?)?;
        i += 6;
        len += match unit {
            0..=0x7F => 1,
            0x80..=0x7FF => 2,
            0xD800..=0xDBFF => {
                // A high surrogate must be followed by an escaped low one: 4 bytes together.
                if raw.get(i..i + 2) != Some(b"\\u") {
                    return None;
                }
                let low = hex4(raw.get(i + 2..i + 6)?)?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return None;
                }
                i += 6;
                4
            }
            0xDC00..=0xDFFF => return None,
            _ => 3,
        };
    }
    Some(len)
}

fn memchr_backslash(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\\')
}

/// The value of four hex digits (`None` for anything else).
pub(crate) fn hex4(h: &[u8]) -> Option<u32> {
    if h.len() != 4 {
        return None;
    }
    let mut v = 0;
    for &c in h {
        v = v * 16 + char::from(c).to_digit(16)?;
    }
    Some(v)
}

/// An unsigned integer with no sign, fraction or exponent, at most `max`.
pub(crate) fn uint(b: &[u8], i: usize, max: u64) -> Option<(u64, usize)> {
    let mut n: u64 = 0;
    let mut end = i;
    while let Some(&d) = b.get(end) {
        if !d.is_ascii_digit() {
            break;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        end += 1;
    }
    // No digits, a leading zero, or a float: not this path's.
    if end == i || (b.get(i) == Some(&b'0') && end > i + 1) || n > max {
        return None;
    }
    if matches!(b.get(end), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    Some((n, end))
}

/// The end of a `null` literal at `b[i]`, if there is one.
pub(crate) fn null_end(b: &[u8], i: usize) -> Option<usize> {
    (b.get(i..i + 4) == Some(b"null")).then_some(i + 4)
}

/// Validates one JSON value starting at `i` (no leading whitespace) and returns where it ends.
pub(crate) fn value_end(b: &[u8], i: usize, depth: u32) -> Result<usize, Invalid> {
    match b.get(i).copied().ok_or(Invalid)? {
        b'"' => string_end(b, i).map(|(end, _)| end),
        b'{' => container_end(b, i, depth, b'}', true),
        b'[' => container_end(b, i, depth, b']', false),
        b't' => literal_end(b, i, b"true"),
        b'f' => literal_end(b, i, b"false"),
        b'n' => literal_end(b, i, b"null"),
        b'-' | b'0'..=b'9' => number_end(b, i),
        _ => Err(Invalid),
    }
}

fn container_end(
    b: &[u8],
    i: usize,
    depth: u32,
    close: u8,
    object: bool,
) -> Result<usize, Invalid> {
    if depth >= MAX_DEPTH {
        return Err(Invalid);
    }
    let mut i = skip_ws(b, i + 1);
    if b.get(i) == Some(&close) {
        return Ok(i + 1);
    }
    loop {
        if object {
            if b.get(i) != Some(&b'"') {
                return Err(Invalid);
            }
            i = skip_ws(b, string_end(b, i)?.0);
            if b.get(i) != Some(&b':') {
                return Err(Invalid);
            }
            i = skip_ws(b, i + 1);
        }
        i = skip_ws(b, value_end(b, i, depth + 1)?);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(&c) if c == close => return Ok(i + 1),
            _ => return Err(Invalid),
        }
    }
}

fn literal_end(b: &[u8], i: usize, lit: &[u8]) -> Result<usize, Invalid> {
    if b.get(i..i + lit.len()) == Some(lit) {
        Ok(i + lit.len())
    } else {
        Err(Invalid)
    }
}

fn digits_end(b: &[u8], mut i: usize) -> Result<usize, Invalid> {
    let start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == start {
        Err(Invalid)
    } else {
        Ok(i)
    }
}

fn number_end(b: &[u8], mut i: usize) -> Result<usize, Invalid> {
    if b[i] == b'-' {
        i += 1;
    }
    i = match b.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => digits_end(b, i)?,
        _ => return Err(Invalid),
    };
    if b.get(i) == Some(&b'.') {
        i = digits_end(b, i + 1)?;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits_end(b, i)?;
    }
    Ok(i)
}

/// `b[i]` is an opening quote: returns the index after the closing quote and whether the
/// string contains escapes. Control characters are refused, escapes checked.
#[inline(always)]
pub(crate) fn string_end(b: &[u8], i: usize) -> Result<(usize, bool), Invalid> {
    // Most strings have no escape: one run to the closing quote, checked inline.
    let end = plain_run_end(b, i + 1);
    match b.get(end) {
        Some(b'"') => Ok((end + 1, false)),
        _ => string_end_slow(b, end),
    }
}

/// [`string_end`] from the first byte of a string that is not plain.
#[inline(never)]
fn string_end_slow(b: &[u8], mut i: usize) -> Result<(usize, bool), Invalid> {
    let mut escaped = false;
    loop {
        match b.get(i).copied().ok_or(Invalid)? {
            b'"' => return Ok((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                match b.get(i + 1).copied().ok_or(Invalid)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6).ok_or(Invalid)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(Invalid);
                        }
                        i += 6;
                    }
                    _ => return Err(Invalid),
                }
            }
            _ => return Err(Invalid), // a control character
        }
        i = plain_run_end(b, i);
    }
}

/// The first index at or after `i` holding `"`, `\` or a control character (or `b.len()`).
///
/// Short runs (keys, most values) are checked eight bytes at a time in a `u64`; past four
/// words, a run with at least 64 more bytes in the buffer (message text) goes to `memchr2` for
/// the next `"` or `\` (SIMD) and then checks the bytes before it for control characters with
/// a minimum over the span, a loop the compiler vectorises. Both halves are far cheaper per
/// byte than the word loop on long text, and the word loop is cheaper on short strings.
#[inline(always)]
fn plain_run_end(b: &[u8], mut i: usize) -> usize {
    let mut words = 0;
    while let Some(word) = b.get(i..i + 8) {
        if let Some(at) = special_in_word(word) {
            return i + at;
        }
        i += 8;
        words += 1;
        if words == 4 && b.len() - i >= 64 {
            return long_run_end(b, i);
        }
    }
    plain_tail_end(b, i)
}

/// The index of the first special byte (`"`, `\` or below 0x20) in an eight-byte `word`.
#[inline(always)]
fn special_in_word(word: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut w = [0u8; 8];
    w.copy_from_slice(word);
    let v = u64::from_le_bytes(w);
    // A byte is special if it equals `"` or `\`, or is below 0x20 (bytes >= 0x80, i.e. UTF-8
    // continuation and lead bytes, are masked out by `!v`).
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let quote = zero_in(v ^ (ONES * u64::from(b'"')));
    let slash = zero_in(v ^ (ONES * u64::from(b'\\')));
    let below_space = v.wrapping_sub(ONES * 0x20) & !v & HIGHS;
    let hits = quote | slash | below_space;
    (hits != 0).then(|| (hits.trailing_zeros() / 8) as usize)
}

/// [`plain_run_end`] past its first two words.
#[inline(never)]
fn long_run_end(b: &[u8], i: usize) -> usize {
    let rest = b.get(i..).unwrap_or_default();
    let stop = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
    let span = &rest[..stop];
    // No branch per byte, so this vectorises; the exact place is looked for only when the
    // span holds a control character (the string is refused then).
    if span.iter().fold(u8::MAX, |m, &c| m.min(c)) >= 0x20 {
        return i + stop;
    }
    i + span.iter().position(|&c| c < 0x20).unwrap_or(stop)
}

/// [`plain_run_end`] over fewer than eight bytes.
#[inline(always)]
fn plain_tail_end(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// Appends `s` as a JSON string, escaped exactly as serde_json does: `"`, `\` and the control
/// characters, with the short forms `\b \t \n \f \r` and `\u00xx` (lowercase hex) for the
/// others; everything else as is. The runs between escapes are found eight bytes at a time.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.push(b'"');
    let mut i = 0;
    loop {
        let end = plain_run_end(b, i);
        out.extend_from_slice(b.get(i..end).unwrap_or_default());
        let Some(&c) = b.get(end) else { break };
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 0xf)]);
            }
        }
        i = end + 1;
    }
    out.push(b'"');
}

/// The length of [`write_str`]'s output for `s`.
pub(crate) fn json_str_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut n = b.len() + 2;
    let mut i = 0;
    loop {
        let end = plain_run_end(b, i);
        let Some(&c) = b.get(end) else { return n };
        n += match c {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            _ => 5,
        };
        i = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        let all: String = (0u8..0x80).map(char::from).collect();
        for s in [
            "",
            "plain",
            "a \"quoted\" \\ back\\slash",
            "lines\n\r\n\ttab\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "\u{e9}t\u{e9} \u{1F600} \u{2028}",
            "eight b\"yteseight bytes\\",
            &all,
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
            assert_eq!(json_str_len(s), out.len(), "{s:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn string_escaping_matches_serde_json(s in "(?s).{0,40}", t in "[\u{0}-\u{7f}\u{e9}\u{1F600}]{0,40}") {
            for s in [&s, &t] {
                let mut out = vec![b'x'];
                write_str(&mut out, s);
                prop_assert_eq!(&out[1..], &serde_json::to_vec(s).unwrap()[..]);
                prop_assert_eq!(json_str_len(s), out.len() - 1);
            }
        }
    }
}
