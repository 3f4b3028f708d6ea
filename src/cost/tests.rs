use std::sync::Arc;

use super::*;

#[test]
fn unpriced_warnings_are_bounded() {
    let mut w = Warned {
        seen: HashSet::new(),
        full: false,
    };
    let p: Arc<str> = Arc::from("openai");
    let m = |i: usize| -> Arc<str> { Arc::from(format!("openai/m{i}")) };
    assert_eq!(w.first(&p, &m(0)), Warn::Target);
    assert_eq!(w.first(&p, &m(0)), Warn::No, "once per target");
    for i in 1..MAX_UNPRICED_WARNINGS {
        assert_eq!(w.first(&p, &m(i)), Warn::Target);
    }
    assert_eq!(w.first(&p, &m(MAX_UNPRICED_WARNINGS)), Warn::Full);
    assert_eq!(w.first(&p, &m(MAX_UNPRICED_WARNINGS + 1)), Warn::No);
    assert_eq!(
        w.seen.len(),
        MAX_UNPRICED_WARNINGS,
        "no growth past the cap"
    );
}

fn chat(body: &str) -> ChatRequest {
    ChatRequest::from_slice(body.as_bytes()).unwrap()
}

#[test]
fn images_count_in_the_input_estimate() {
    let one = chat(
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"abcd"},
            {"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
    );
    let two = chat(
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"abcd"},
            {"type":"image_url","image_url":{"url":"https://x/y.png"}},
            { "image_url" : {"url":"https://x/z.png"}, "type" : "image_url" }]}]}"#,
    );
    let none = chat(r#"{"model":"m","messages":[{"role":"user","content":"abcd"}]}"#);
    let base = input_estimate(&none);
    assert_eq!(input_estimate(&one), base + IMAGE_TOKENS);
    assert_eq!(input_estimate(&two), base + 2 * IMAGE_TOKENS);
}

#[test]
fn the_output_cap_multiplies_by_n_and_adds_reasoning() {
    assert_eq!(
        output_cap(
            &chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#),
            None
        ),
        u64::from(DEFAULT_MAX_OUTPUT)
    );
    let c = chat(
        r#"{"model":"m","n":4,"max_completion_tokens":10,"max_tokens":99,
            "reasoning":{"max_tokens":5},"messages":[{"role":"user","content":"x"}]}"#,
    );
    assert_eq!(output_cap(&c, None), 4 * (10 + 5));
    // A huge `n` saturates instead of wrapping (and no budget admits it).
    let c = chat(
        r#"{"model":"m","n":4294967295,"max_tokens":4294967295,"messages":[{"role":"user","content":"x"}]}"#,
    );
    assert!(output_cap(&c, None) > u64::from(u32::MAX));
}
