//! `usage` without serde: read by a byte scanner (the common shape; anything unusual is
//! handed back to serde_json) and written directly, the same bytes as `serde_json::to_writer`.
//! The proptests below hold both to serde_json's results; each takes a fraction of serde_json's
//! instructions (BENCHMARKS.md).

use super::scan::{null_end, object_members, uint, value_end, Seen, MAX_DEPTH};
use crate::openai::response::{CompletionTokensDetails, CostDetails, PromptTokensDetails, Usage};

/// Appends `u` as JSON, byte for byte what `serde_json::to_writer` writes.
pub(crate) fn write_usage(out: &mut Vec<u8>, u: &Usage) {
    out.extend_from_slice(b"{\"prompt_tokens\":");
    write_u64(out, u.prompt_tokens);
    out.extend_from_slice(b",\"completion_tokens\":");
    write_u64(out, u.completion_tokens);
    out.extend_from_slice(b",\"total_tokens\":");
    write_u64(out, u.total_tokens);
    if let Some(d) = &u.prompt_tokens_details {
        out.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
        write_u64(out, d.cached_tokens);
        write_opt(out, b",\"cache_write_tokens\":", d.cache_write_tokens);
        write_opt(out, b",\"audio_tokens\":", d.audio_tokens);
        out.push(b'}');
    }
    if let Some(d) = &u.completion_tokens_details {
        out.extend_from_slice(b",\"completion_tokens_details\":{\"reasoning_tokens\":");
        write_u64(out, d.reasoning_tokens);
        write_opt(out, b",\"audio_tokens\":", d.audio_tokens);
        write_opt(
            out,
            b",\"accepted_prediction_tokens\":",
            d.accepted_prediction_tokens,
        );
        write_opt(
            out,
            b",\"rejected_prediction_tokens\":",
            d.rejected_prediction_tokens,
        );
        out.push(b'}');
    }
    out.extend_from_slice(b",\"cost\":");
    match u.cost {
        Some(c) => super::write(out, &c),
        None => out.extend_from_slice(b"null"),
    }
    if let Some(d) = &u.cost_details {
        let CostDetails {
            input,
            output,
            cached_input,
            cache_write,
            request,
        } = *d;
        for (name, v) in [
            (&b",\"cost_details\":{\"input\":"[..], input),
            (b",\"output\":", output),
            (b",\"cached_input\":", cached_input),
            (b",\"cache_write\":", cache_write),
            (b",\"request\":", request),
        ] {
            out.extend_from_slice(name);
            super::write(out, &v);
        }
        out.push(b'}');
    }
    out.push(b'}');
}

fn write_opt(out: &mut Vec<u8>, name: &[u8], v: Option<u64>) {
    if let Some(v) = v {
        out.extend_from_slice(name);
        write_u64(out, v);
    }
}

/// Appends `n` in decimal.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Reads a `usage` value (`null` or an object) at `b[i]`, at nesting `depth` of its document,
/// as `Option<Usage>`'s `Deserialize` would, with the index after it: one pass where the caller
/// would otherwise step over `usage` and then parse it. `None` when this reader does not handle
/// the value (escaped keys, a duplicate field, a non-integer count, a non-null `cost`, invalid
/// JSON, …): decide with serde_json then. Hand-written because it reads a usage in about half
/// serde_json's instructions (~3 k of a 1 KiB forwarded request, BENCHMARKS.md).
pub(crate) fn usage_at(b: &[u8], i: usize, depth: u32) -> Option<(Option<Usage>, usize)> {
    if let Some(end) = null_end(b, i) {
        return Some((None, end));
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    let mut u = Usage::default();
    let mut seen = Seen::default();
    let end = object_members(b, i, |key, v| match key {
        b"prompt_tokens" => {
            seen.first(0)?;
            count(b, v, &mut u.prompt_tokens)
        }
        b"completion_tokens" => {
            seen.first(1)?;
            count(b, v, &mut u.completion_tokens)
        }
        b"total_tokens" => {
            seen.first(2)?;
            count(b, v, &mut u.total_tokens)
        }
        b"prompt_tokens_details" => {
            seen.first(3)?;
            prompt_details(b, v, depth + 1, &mut u.prompt_tokens_details)
        }
        b"completion_tokens_details" => {
            seen.first(4)?;
            completion_details(b, v, depth + 1, &mut u.completion_tokens_details)
        }
        // Set by the CostMeter; an upstream's own value goes through serde_json.
        b"cost" => {
            seen.first(5)?;
            null_end(b, v)
        }
        b"cost_details" => {
            seen.first(6)?;
            null_end(b, v)
        }
        _ => value_end(b, v, depth + 1).ok(),
    })?;
    Some((Some(u), end))
}

/// A token count at `b[i]`: a plain non-negative integer that fits a `u64` (what serde
/// accepts for a `u64`, less the forms it refuses anyway). Returns the end.
fn count(b: &[u8], i: usize, out: &mut u64) -> Option<usize> {
    let (n, end) = uint(b, i, u64::MAX)?;
    *out = n;
    Some(end)
}

fn opt_count(b: &[u8], i: usize, out: &mut Option<u64>) -> Option<usize> {
    if let Some(end) = null_end(b, i) {
        *out = None;
        return Some(end);
    }
    count(b, i, out.get_or_insert(0))
}

/// A details object (at nesting `depth`) or `null` into `out`: `read(key, value_start, d)`
/// reads one member and says where it ends.
fn details<T: Default>(
    b: &[u8],
    i: usize,
    depth: u32,
    out: &mut Option<T>,
    mut read: impl FnMut(&[u8], usize, &mut T) -> Option<usize>,
) -> Option<usize> {
    if let Some(end) = null_end(b, i) {
        *out = None;
        return Some(end);
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    let d = out.insert(T::default());
    object_members(b, i, |key, v| read(key, v, d))
}

fn prompt_details(
    b: &[u8],
    i: usize,
    depth: u32,
    out: &mut Option<PromptTokensDetails>,
) -> Option<usize> {
    let mut seen = Seen::default();
    details(b, i, depth, out, |key, v, d| match key {
        b"cached_tokens" => {
            seen.first(0)?;
            count(b, v, &mut d.cached_tokens)
        }
        b"cache_write_tokens" => {
            seen.first(1)?;
            opt_count(b, v, &mut d.cache_write_tokens)
        }
        b"audio_tokens" => {
            seen.first(2)?;
            opt_count(b, v, &mut d.audio_tokens)
        }
        _ => value_end(b, v, depth + 1).ok(),
    })
}

fn completion_details(
    b: &[u8],
    i: usize,
    depth: u32,
    out: &mut Option<CompletionTokensDetails>,
) -> Option<usize> {
    let mut seen = Seen::default();
    details(b, i, depth, out, |key, v, d| match key {
        b"reasoning_tokens" => {
            seen.first(0)?;
            count(b, v, &mut d.reasoning_tokens)
        }
        b"audio_tokens" => {
            seen.first(1)?;
            opt_count(b, v, &mut d.audio_tokens)
        }
        b"accepted_prediction_tokens" => {
            seen.first(2)?;
            opt_count(b, v, &mut d.accepted_prediction_tokens)
        }
        b"rejected_prediction_tokens" => {
            seen.first(3)?;
            opt_count(b, v, &mut d.rejected_prediction_tokens)
        }
        _ => value_end(b, v, depth + 1).ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::json::skip_ws;
    use proptest::prelude::*;

    /// The whole of `b` as one usage value, or `None` where the reader hands over.
    fn read(b: &[u8]) -> Option<Option<Usage>> {
        let (u, end) = usage_at(b, skip_ws(b, 0), 0)?;
        (skip_ws(b, end) == b.len()).then_some(u)
    }

    #[test]
    fn reads_the_documented_shape() {
        let b = br#" {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
            "cost": null, "x_extra": [1]} "#;
        let slow: Option<Usage> = serde_json::from_slice(b).unwrap();
        assert_eq!(read(b).unwrap(), slow);
        assert_eq!(read(b"null"), Some(None));
        for refused in [
            &br#"{"prompt_tokens":1,"prompt_tokens":2}"#[..],
            br#"{"prompt_tokens":1.0}"#,
            br#"{"prompt_tokens":-1}"#,
            br#"{"prompt_tokens":99999999999999999999}"#,
            br#"{"prompt_t\u006fkens":1}"#,
            br#"{"cost":0.5}"#,
            br#"{"prompt_tokens_details":{"cached_tokens":null}}"#,
            br#"{"prompt_tokens":1"#,
            b"nul",
            b"[]",
        ] {
            assert_eq!(read(refused), None, "{refused:?}");
        }
    }

    fn any_usage() -> impl Strategy<Value = Usage> {
        let opt = || proptest::option::of(any::<u64>());
        (
            (any::<u64>(), any::<u64>(), any::<u64>()),
            proptest::option::of((any::<u64>(), opt(), opt())),
            proptest::option::of((any::<u64>(), opt(), opt(), opt())),
            proptest::option::of(prop_oneof![
                any::<f64>(),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(0.000_012_5)
            ]),
            proptest::option::of(any::<[f64; 5]>()),
        )
            .prop_map(|(t, p, c, cost, cd)| Usage {
                prompt_tokens: t.0,
                completion_tokens: t.1,
                total_tokens: t.2,
                prompt_tokens_details: p.map(|p| PromptTokensDetails {
                    cached_tokens: p.0,
                    cache_write_tokens: p.1,
                    audio_tokens: p.2,
                }),
                completion_tokens_details: c.map(|c| CompletionTokensDetails {
                    reasoning_tokens: c.0,
                    audio_tokens: c.1,
                    accepted_prediction_tokens: c.2,
                    rejected_prediction_tokens: c.3,
                }),
                cost,
                cost_details: cd.map(|d| CostDetails {
                    input: d[0],
                    output: d[1],
                    cached_input: d[2],
                    cache_write: d[3],
                    request: d[4],
                }),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Where the reader answers, serde_json agrees: on serde_json's own output (no cost)
        /// and on single-byte mutations of it.
        #[test]
        fn reads_what_serde_reads(
            mut u in any_usage(),
            cut in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            u.cost = None;
            u.cost_details = None;
            let text = serde_json::to_vec(&u).unwrap();
            prop_assert_eq!(read(&text), Some(Some(u)));
            let mut bytes = text;
            let at = cut.index(bytes.len());
            bytes[at] = byte;
            let utf8 = std::str::from_utf8(&bytes).is_ok();
            if let Some(fast) = read(&bytes).filter(|_| utf8) {
                let slow: Option<Usage> = serde_json::from_slice(&bytes).unwrap();
                prop_assert_eq!(fast, slow);
            }
        }

        #[test]
        fn writes_what_serde_writes(u in any_usage()) {
            let mut out = Vec::new();
            write_usage(&mut out, &u);
            prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&u).unwrap()
            );
        }
    }
}
