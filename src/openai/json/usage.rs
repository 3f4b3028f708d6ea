//! `usage` written without serde: the same bytes as `serde_json::to_writer` (proptested
//! below), in a quarter of the instructions (BENCHMARKS.md).

use crate::openai::response::{CostDetails, Usage};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::response::{CompletionTokensDetails, PromptTokensDetails};
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

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
