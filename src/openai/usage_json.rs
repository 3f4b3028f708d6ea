//! `usage` without serde on the pass-through paths: a byte-scanner parse of the common shape
//! and a direct writer. Both give exactly what serde gives (the parse hands anything unusual
//! back to serde); the proptests below hold them to it.

use super::scan::{self, object_members, Seen};
use super::{CompletionTokensDetails, CostDetails, PromptTokensDetails, Usage};

impl Usage {
    /// Parses a `usage` value (`null` or an object), as `Option<Usage>`'s `Deserialize` would.
    /// `None` when this parse does not handle the value (escaped keys, a duplicate field, a
    /// non-integer count, a non-null `cost`, invalid JSON, …): decide with serde then.
    #[cfg(test)]
    pub(crate) fn parse_json_fast(b: &[u8]) -> Option<Option<Self>> {
        let (u, end) = Self::parse_json_at(b, scan::skip_ws(b, 0), 0)?;
        (scan::skip_ws(b, end) == b.len()).then_some(u)
    }

    /// [`Usage::parse_json_fast`] of the value at `b[i]` (at nesting `depth` of its document),
    /// with the index after it: one pass over `usage` where the caller would otherwise step
    /// over it and then parse it.
    pub(crate) fn parse_json_at(b: &[u8], i: usize, depth: u32) -> Option<(Option<Self>, usize)> {
        if let Some(end) = scan::null_end(b, i) {
            return Some((None, end));
        }
        if depth >= scan::MAX_DEPTH {
            return None;
        }
        let mut u = Self::default();
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
            // Set by the CostMeter; an upstream's own value goes through serde.
            b"cost" => {
                seen.first(5)?;
                scan::null_end(b, v)
            }
            b"cost_details" => {
                seen.first(6)?;
                scan::null_end(b, v)
            }
            _ => scan::value_end(b, v, depth + 1).ok(),
        })?;
        Some((Some(u), end))
    }

    /// Appends this usage as JSON, byte for byte what `serde_json::to_writer` writes.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"prompt_tokens\":");
        write_u64(out, self.prompt_tokens);
        out.extend_from_slice(b",\"completion_tokens\":");
        write_u64(out, self.completion_tokens);
        out.extend_from_slice(b",\"total_tokens\":");
        write_u64(out, self.total_tokens);
        if let Some(d) = &self.prompt_tokens_details {
            out.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
            write_u64(out, d.cached_tokens);
            write_opt(out, b",\"cache_write_tokens\":", d.cache_write_tokens);
            write_opt(out, b",\"audio_tokens\":", d.audio_tokens);
            out.push(b'}');
        }
        if let Some(d) = &self.completion_tokens_details {
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
        match self.cost {
            Some(c) => scan::write_json(out, &c),
            None => out.extend_from_slice(b"null"),
        }
        if let Some(d) = &self.cost_details {
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
                scan::write_json(out, &v);
            }
            out.push(b'}');
        }
        out.push(b'}');
    }
}

/// A token count at `b[i]`: a plain non-negative integer that fits a `u64` (what serde
/// accepts for a `u64`, less the forms it refuses anyway). Returns the end.
fn count(b: &[u8], i: usize, out: &mut u64) -> Option<usize> {
    let (n, end) = scan::uint(b, i, u64::MAX)?;
    *out = n;
    Some(end)
}

fn opt_count(b: &[u8], i: usize, out: &mut Option<u64>) -> Option<usize> {
    if let Some(end) = scan::null_end(b, i) {
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
    if let Some(end) = scan::null_end(b, i) {
        *out = None;
        return Some(end);
    }
    if depth >= scan::MAX_DEPTH {
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
        _ => scan::value_end(b, v, depth + 1).ok(),
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
        _ => scan::value_end(b, v, depth + 1).ok(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    #[test]
    fn parses_the_documented_shape() {
        let b = br#" {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
            "cost": null, "x_extra": [1]} "#;
        let fast = Usage::parse_json_fast(b).unwrap();
        let slow: Option<Usage> = serde_json::from_slice(b).unwrap();
        assert_eq!(fast, slow);
        assert_eq!(Usage::parse_json_fast(b"null"), Some(None));
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
            assert_eq!(Usage::parse_json_fast(refused), None, "{refused:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn writes_what_serde_writes(u in any_usage()) {
            let mut out = Vec::new();
            u.write_json(&mut out);
            prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&u).unwrap()
            );
        }

        /// Where the fast parse answers, serde agrees; on serde's own output (no cost) and
        /// single-byte mutations of it.
        #[test]
        fn parse_agrees_with_serde(
            mut u in any_usage(),
            cut in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            u.cost = None;
            u.cost_details = None;
            let text = serde_json::to_vec(&u).unwrap();
            prop_assert_eq!(Usage::parse_json_fast(&text), Some(Some(u)));
            let mut bytes = text;
            let at = cut.index(bytes.len());
            bytes[at] = byte;
            let utf8 = std::str::from_utf8(&bytes).is_ok();
            if let Some(fast) = Usage::parse_json_fast(&bytes).filter(|_| utf8) {
                let slow: Option<Usage> = serde_json::from_slice(&bytes).unwrap();
                prop_assert_eq!(fast, slow);
            }
        }
    }
}
