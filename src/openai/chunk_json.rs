//! The streaming hot path's JSON for [`ChatCompletionChunk`]: a writer producing exactly the
//! bytes `serde_json::to_vec` gives, straight into an SSE frame.
//!
//! # Writer
//!
//! serde_json escapes strings one byte at a time through a lookup table and grows its output
//! `Vec` as it goes, and framing its output as an SSE event copies it again. [`sse_event`]
//! sizes one buffer up front (exactly, unless an identifier needs escapes, when it grows once),
//! writes `data: `, the JSON and `\n\n` into it, and hands it over as `Bytes` without a copy.
//! Strings are escaped as serde_json does (`"`, `\` and control characters; `\b \t \n \f \r`
//! short forms, others `\u00xx`), the plain runs between escapes found eight bytes at a time.
//! Values the gateway does not type (`logprobs`, `reasoning_details`) and the rare `usage` and
//! `error` objects are written by serde_json itself.
//!

use bytes::Bytes;

use super::chunk::{ChatCompletionChunk, ChunkChoice, Delta, ToolCallDelta};
use super::scan::{json_str_len, write_json, write_json_str};

// ---------------------------------------------------------------------------------------------
// Writer

/// `data: {json}\n\n` for `c`, then `tail`, in one buffer sized up front.
pub(super) fn sse_event(c: &ChatCompletionChunk, tail: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(chunk_len(c) + 8 + tail.len());
    out.extend_from_slice(b"data: ");
    write_chunk(&mut out, c);
    out.extend_from_slice(b"\n\n");
    out.extend_from_slice(tail);
    Bytes::from(out)
}

/// Appends `c` as JSON (the bytes of `serde_json::to_vec(c)`).
pub(super) fn write_chunk(out: &mut Vec<u8>, c: &ChatCompletionChunk) {
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
        write_json(out, &**u);
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

/// Appends `n` in decimal.
fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
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

/// The length of `write_chunk`'s output: exact but for the parts serde_json writes (`usage`,
/// `error`, `logprobs`, `reasoning_details`), which are estimated, and for escapes in
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{
        CompletionTokensDetails, CostDetails, ErrorBody, FinishReason, FunctionCallDelta,
        PromptTokensDetails, Usage,
    };
    use proptest::prelude::*;
    use serde_json::{json, Value};

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
        let e = ChatCompletionChunk::error_chunk(
            "id",
            "m",
            0,
            &crate::Error::upstream("it \"broke\"\n"),
        );
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
                        object,
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
                    }
                },
            )
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
    }
}
