use super::*;
use crate::openai::{
    CompletionTokensDetails, CostDetails, ErrorBody, FinishReason, FunctionCallDelta,
    PromptTokensDetails, Usage,
};
use proptest::prelude::*;
use serde_json::{json, Value};

/// The reference: what serde_json says, value or error message.
fn serde(s: &str) -> Result<ChatCompletionChunk, String> {
    serde_json::from_str(s).map_err(|e| e.to_string())
}

fn fast(s: &str) -> Result<ChatCompletionChunk, String> {
    chunk_from_json(s).map_err(|e| e.to_string())
}

fn sample() -> ChatCompletionChunk {
    let mut c = ChatCompletionChunk::new("chatcmpl-1", "openai/gpt-4o", 1_741_569_952);
    c.system_fingerprint = Some("fp_44709d6fcb".into());
    c.provider = Some("openai".into());
    c.choices.push(ChunkChoice {
        index: 0,
        delta: Delta {
            role: Some("assistant".into()),
            content: Some("Hi \"there\"\n\u{e9}\u{1}".into()),
            ..Delta::default()
        },
        finish_reason: None,
        native_finish_reason: None,
        logprobs: None,
    });
    c
}

fn check_encoding(c: &ChatCompletionChunk) {
    let want = serde_json::to_vec(c).unwrap();
    let mut out = Vec::new();
    c.write_json(&mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&want)
    );
    let ev = c.to_sse_event();
    let mut framed = b"data: ".to_vec();
    framed.extend_from_slice(&want);
    framed.extend_from_slice(b"\n\n");
    assert_eq!(&ev[..], &framed[..]);
}

#[test]
fn encodes_as_serde_json() {
    let mut c = sample();
    check_encoding(&c);
    c.choices[0].delta = Delta::default();
    c.choices[0].finish_reason = Some(FinishReason::ToolCalls);
    c.choices[0].native_finish_reason = Some("tool_use".into());
    c.choices[0].logprobs = Some(Value::Null);
    check_encoding(&c);
    c.choices[0].logprobs = Some(json!({"content": [{"token": "a", "logprob": -0.5}]}));
    c.choices[0].delta.reasoning = Some("hmm".into());
    c.choices[0].delta.reasoning_details = Some(vec![json!({"type": "x", "n": 1.5})]);
    c.choices[0].delta.refusal = Some(String::new());
    c.choices[0].delta.tool_calls = Some(vec![
        ToolCallDelta {
            index: 3,
            id: Some("call_1".into()),
            kind: Some("function".into()),
            function: Some(FunctionCallDelta {
                name: Some("get".into()),
                arguments: Some("{\"a\":1}".into()),
            }),
        },
        ToolCallDelta {
            index: u32::MAX,
            function: Some(FunctionCallDelta::default()),
            ..ToolCallDelta::default()
        },
        ToolCallDelta {
            function: Some(FunctionCallDelta {
                name: None,
                arguments: Some(String::new()),
            }),
            ..ToolCallDelta::default()
        },
    ]);
    check_encoding(&c);
    c.choices.push(c.choices[0].clone());
    c.usage = Some(Box::new(Usage {
        prompt_tokens: 10,
        completion_tokens: 2,
        total_tokens: 12,
        cost: Some(0.000_123),
        cost_details: Some(CostDetails::default()),
        ..Usage::default()
    }));
    c.created = u64::MAX;
    check_encoding(&c);
    let e =
        ChatCompletionChunk::error_chunk("id", "m", 0, &crate::Error::upstream("it \"broke\"\n"));
    check_encoding(&e);
    check_encoding(&ChatCompletionChunk::new("", "", 0));
}

#[test]
fn the_sse_event_is_allocated_at_its_size() {
    let c = sample();
    let mut out = Vec::with_capacity(chunk_len(&c));
    write_chunk(&mut out, &c);
    assert_eq!(out.len(), chunk_len(&c));
    let mut c = c;
    c.choices[0].delta.tool_calls = Some(vec![ToolCallDelta {
        index: 12,
        id: Some("x".into()),
        kind: None,
        function: Some(FunctionCallDelta {
            name: Some("n".into()),
            arguments: None,
        }),
    }]);
    c.choices[0].finish_reason = Some(FinishReason::ContentFilter);
    c.choices[0].native_finish_reason = Some("SAFETY".into());
    let mut out = Vec::new();
    write_chunk(&mut out, &c);
    assert_eq!(out.len(), chunk_len(&c));
}

#[test]
fn decodes_as_serde_json() {
    let head = r#""id":"c","object":"chat.completion.chunk","created":1,"model":"m""#;
    for (n, body) in [
        // the usual shapes
        format!(r#"{{{head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}]}}"#),
        format!(r#"{{{head},"choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}]}}"#),
        format!(r#"{{{head},"choices":[],"usage":{{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}}}"#),
        format!(r#"{{{head},"choices":[{{"index":1,"delta":{{"tool_calls":[{{"index":0,"id":"call_a","type":"function","function":{{"name":"f","arguments":"{{\"a\":\"\\u00e9\\ud83d\\ude00\"}}"}}}}]}}}}]}}"#),
        // defaults, nulls, unknown members, whitespace
        r#" { "id" : "x" } "#.to_owned(),
        r#"{"id":"x","object":"o","system_fingerprint":null,"provider":"p","x":[{"deep":[1,2,{"y":null}]}],"choices":[{"x":1,"delta":{"x":true,"content":null,"reasoning":"r","refusal":"no"},"native_finish_reason":"end_turn","finish_reason":"whatever"}]}"#.to_owned(),
        r#"{"id":"x","choices":[{"delta":{"tool_calls":null,"reasoning_details":[{"a":1},null]},"logprobs":{"content":[]}}]}"#.to_owned(),
        r#"{"id":"x","choices":[{"delta":{"tool_calls":[{"index":2,"function":null,"x":{}}]}}]}"#.to_owned(),
        r#"{"id":"x","usage":null,"choices":[{"index":4294967295,"finish_reason":"length"}]}"#.to_owned(),
        r#"{"id":"\"\\\/\b\f\n\r\t\u0000\u001f\u00e9","model":"\ud83d\ude00"}"#.to_owned(),
        r#"{"id":"x","created":18446744073709551615}"#.to_owned(),
        // serde_json ignores unknown values without decoding them
        r#"{"id":"x","u":"\ud800","v":1e999}"#.to_owned(),
        // what the fast path leaves to serde_json, valid or not
        r#"{"id":"x","error":{"message":"boom","type":"server_error"}}"#.to_owned(),
        r#"{"id":"x","error":null}"#.to_owned(),
        r#"{"\u0069d":"x"}"#.to_owned(),
        r#"{"id":"x","id":"y"}"#.to_owned(),
        r#"{"id":"x","provider":null,"provider":"p"}"#.to_owned(),
        r#"{"id":"x","choices":[{"delta":{"content":"a","content":"b"}}]}"#.to_owned(),
        r#"{"id":"x","created":1.0}"#.to_owned(),
        r#"{"id":"x","created":1e3}"#.to_owned(),
        r#"{"id":"x","created":-0}"#.to_owned(),
        r#"{"id":"x","created":-1}"#.to_owned(),
        r#"{"id":"x","created":18446744073709551616}"#.to_owned(),
        r#"{"id":"x","created":01}"#.to_owned(),
        r#"{"id":"x","choices":[{"index":4294967296}]}"#.to_owned(),
        r#"{"id":"x","choices":[{"delta":null}]}"#.to_owned(),
        r#"{"id":"x","choices":[{"delta":["assistant","hi"]}]}"#.to_owned(),
        r#"{"id":"x","choices":[{"finish_reason":7}]}"#.to_owned(),
        r#"{"id":"x","choices":[{"delta":{"tool_calls":[{"id":"no index"}]}}]}"#.to_owned(),
        r#"{"id":"x","choices":null}"#.to_owned(),
        r#"{"id":"x","object":null}"#.to_owned(),
        r#"{"id":null}"#.to_owned(),
        r#"{"model":"m"}"#.to_owned(),
        r#"{"id":"\ud800"}"#.to_owned(),
        r#"{"id":"\udc00"}"#.to_owned(),
        r#"{"id":"\ud800\u0041"}"#.to_owned(),
        r#"{"id":"x","usage":{"cost":1e999}}"#.to_owned(),
        r#"{"id":"x","choices":[{"logprobs":1e999}]}"#.to_owned(),
        r#"["x"]"#.to_owned(),
        r#"{"id":"x"} x"#.to_owned(),
        r#"{"id":"x",}"#.to_owned(),
        r#"{"id":"x""#.to_owned(),
        r#"{"id":"tab	in"}"#.to_owned(),
        String::new(),
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(fast(body), serde(body), "{body}");
        // The first twelve are for the fast path.
        assert_eq!(decode(body).is_some(), n < 12, "{body}");
    }
}

#[test]
fn nesting_limits_agree_with_serde_json() {
    for depth in 120..130 {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let v = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            for body in [
                format!(r#"{{"id":"x","u":{v}}}"#),
                format!(r#"{{"id":"x","usage":{{"u":{v}}}}}"#),
                format!(r#"{{"id":"x","choices":[{{"logprobs":{v}}}]}}"#),
                format!(r#"{{"id":"x","choices":[{{"delta":{{"reasoning_details":[{v}]}}}}]}}"#),
                format!(
                    r#"{{"id":"x","choices":[{{"delta":{{"tool_calls":[{{"index":0,"function":{{"u":{v}}}}}]}}}}]}}"#
                ),
            ] {
                assert_eq!(fast(&body), serde(&body), "{depth} {body}");
            }
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,8}",
        "[\"\\\\/\u{0}-\u{1f}a-z\u{7f}\u{e9}\u{2028}\u{1F600}]{0,10}",
        "(?s).{0,16}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{0,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn finish_reason() -> impl Strategy<Value = Option<FinishReason>> {
    proptest::option::of(prop_oneof![
        Just(FinishReason::Stop),
        Just(FinishReason::Length),
        Just(FinishReason::ToolCalls),
        Just(FinishReason::ContentFilter),
        Just(FinishReason::Error),
    ])
}

fn tool_call() -> impl Strategy<Value = ToolCallDelta> {
    (
        any::<u32>(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of((proptest::option::of(text()), proptest::option::of(text()))),
    )
        .prop_map(|(index, id, kind, function)| ToolCallDelta {
            index,
            id,
            kind,
            function: function.map(|(name, arguments)| FunctionCallDelta { name, arguments }),
        })
}

fn delta() -> impl Strategy<Value = Delta> {
    (
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(proptest::collection::vec(json_value(), 0..3)),
        proptest::option::of(text()),
        proptest::option::of(proptest::collection::vec(tool_call(), 0..3)),
    )
        .prop_map(
            |(role, content, reasoning, reasoning_details, refusal, tool_calls)| Delta {
                role,
                content,
                reasoning,
                reasoning_details,
                refusal,
                tool_calls,
            },
        )
}

fn choice() -> impl Strategy<Value = ChunkChoice> {
    (
        any::<u32>(),
        delta(),
        finish_reason(),
        proptest::option::of(text()),
        proptest::option::of(json_value()),
    )
        .prop_map(
            |(index, delta, finish_reason, native_finish_reason, logprobs)| ChunkChoice {
                index,
                delta,
                finish_reason,
                native_finish_reason,
                logprobs,
            },
        )
}

fn usage() -> impl Strategy<Value = Usage> {
    (
        any::<(u64, u64, u64)>(),
        proptest::option::of((any::<u64>(), proptest::option::of(any::<u64>()))),
        proptest::option::of((any::<u64>(), proptest::option::of(any::<u64>()))),
        proptest::option::of(-1e3f64..1e3),
        proptest::option::of((0f64..1.0, 0f64..1e-3)),
    )
        .prop_map(|(t, prompt, completion, cost, details)| Usage {
            prompt_tokens: t.0,
            completion_tokens: t.1,
            total_tokens: t.2,
            prompt_tokens_details: prompt.map(|(cached_tokens, cache_write_tokens)| {
                PromptTokensDetails {
                    cached_tokens,
                    cache_write_tokens,
                    audio_tokens: None,
                }
            }),
            completion_tokens_details: completion.map(|(reasoning_tokens, audio_tokens)| {
                CompletionTokensDetails {
                    reasoning_tokens,
                    audio_tokens,
                    ..CompletionTokensDetails::default()
                }
            }),
            cost,
            cost_details: details.map(|(input, output)| CostDetails {
                input,
                output,
                ..CostDetails::default()
            }),
        })
}

fn chunk() -> impl Strategy<Value = ChatCompletionChunk> {
    (
        (text(), text(), any::<u64>(), text()),
        proptest::collection::vec(choice(), 0..3),
        proptest::option::of(usage()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of((text(), text(), proptest::option::of(text()))),
    )
        .prop_map(
            |((id, object, created, model), choices, usage, fp, provider, error)| {
                ChatCompletionChunk {
                    id,
                    // Half the chunks carry the usual (borrowed) object.
                    object: if created % 2 == 0 {
                        chunk_object()
                    } else {
                        object.into()
                    },
                    created,
                    model,
                    choices,
                    usage: usage.map(Box::new),
                    system_fingerprint: fp,
                    provider,
                    error: error.map(|(message, kind, param)| {
                        Box::new(ErrorBody {
                            message,
                            kind,
                            param,
                            code: None,
                        })
                    }),
                    native: None,
                }
            },
        )
}

/// Edits made to a chunk's JSON tree: `(what, which object, which member, a value)`.
type Edit = (u8, usize, usize, Value);

fn apply(v: &mut Value, edits: &[Edit]) {
    const KNOWN: &[&str] = &[
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "index",
        "delta",
        "finish_reason",
        "logprobs",
        "content",
        "tool_calls",
        "function",
        "arguments",
    ];
    for (what, which, member, value) in edits {
        let count = count_objects(v);
        let mut n = which % count.max(1);
        let Some(obj) = nth_object(v, &mut n) else {
            return;
        };
        let keys: Vec<String> = obj.keys().cloned().collect();
        let key = keys.get(member % keys.len().max(1)).cloned();
        match (what % 4, key) {
            (0, Some(k)) => {
                obj.remove(&k);
            }
            (1, Some(k)) => {
                obj.insert(k, value.clone());
            }
            (2, _) => {
                obj.insert(KNOWN[member % KNOWN.len()].to_owned(), value.clone());
            }
            _ => {
                obj.insert(format!("x_{member}"), value.clone());
            }
        }
    }
}

fn count_objects(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(count_objects).sum::<usize>(),
        Value::Array(a) => a.iter().map(count_objects).sum(),
        _ => 0,
    }
}

/// The `n`th object of `v`, in pre-order.
fn nth_object<'a>(
    v: &'a mut Value,
    n: &mut usize,
) -> Option<&'a mut serde_json::Map<String, Value>> {
    match v {
        Value::Object(m) => {
            if *n == 0 {
                return Some(m);
            }
            *n -= 1;
            m.values_mut().find_map(|c| nth_object(c, n))
        }
        Value::Array(a) => a.iter_mut().find_map(|c| nth_object(c, n)),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encoding_is_byte_identical(c in chunk()) {
        let want = serde_json::to_vec(&c).unwrap();
        let mut out = Vec::new();
        c.write_json(&mut out);
        prop_assert_eq!(&out, &want);
        let ev = c.to_sse_event();
        prop_assert_eq!(&ev[..6], b"data: ");
        prop_assert_eq!(&ev[6..ev.len() - 2], &want[..]);
        prop_assert_eq!(&ev[ev.len() - 2..], b"\n\n");
    }

    #[test]
    fn decoding_agrees_with_serde_json(
        c in chunk(),
        edits in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>(), json_value()), 0..4),
        at in any::<prop::sample::Index>(),
        byte in prop_oneof![
            Just(b'"'), Just(b'\\'), Just(b'{'), Just(b'}'), Just(b'['), Just(b']'),
            Just(b','), Just(b':'), Just(b'n'), Just(b'0'), Just(b'-'), Just(b'.'),
            Just(b'e'), Just(b' '), Just(b'x'), Just(0u8), any::<u8>(),
        ],
    ) {
        let text = serde_json::to_string(&c).unwrap();
        prop_assert_eq!(fast(&text), serde(&text));
        // Whatever the gateway itself writes (but errors) takes the fast path.
        prop_assert_eq!(decode(&text).is_some(), c.error.is_none());
        let pretty = serde_json::to_string_pretty(&c).unwrap();
        prop_assert_eq!(fast(&pretty), serde(&pretty));

        let mut v = serde_json::to_value(&c).unwrap();
        apply(&mut v, &edits);
        let edited = serde_json::to_string(&v).unwrap();
        prop_assert_eq!(fast(&edited), serde(&edited), "{}", edited);

        let mut bytes = edited.into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(s) = std::str::from_utf8(&bytes) {
            prop_assert_eq!(fast(s), serde(s), "{}", s);
        }
        bytes.insert(at.index(bytes.len()), byte);
        if let Ok(s) = std::str::from_utf8(&bytes) {
            prop_assert_eq!(fast(s), serde(s), "{}", s);
        }
    }
}
