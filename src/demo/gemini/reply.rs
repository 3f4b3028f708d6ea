//! Gemini's answers: a `GenerateContentResponse`, or a stream of them (SSE or a JSON array).

use bytes::Bytes;
use serde_json::{json, Value};

use crate::demo::common::{chunks, sign, Answer, Call, Finish};
use crate::demo::wire::{Ctx, Reply, StreamPlan};

/// The signing domain of function calls' thought signatures.
pub(super) const SIGN_DOMAIN: &str = "gemini-function-call";

pub(super) struct Out<'a> {
    pub(super) model: &'a str,
    pub(super) prompt: u64,
    pub(super) candidates: u64,
    pub(super) show_thoughts: bool,
    pub(super) thinking: bool,
}

fn finish_reason(f: &Finish) -> &'static str {
    match f {
        Finish::Length => "MAX_TOKENS",
        Finish::Stop | Finish::StopSequence(_) | Finish::ToolCalls => "STOP",
    }
}

fn usage(out: &Out<'_>, a: &Answer) -> Value {
    let mut u = json!({
        "promptTokenCount": out.prompt,
        "candidatesTokenCount": a.output_tokens - a.thinking_tokens,
        "totalTokenCount": out.prompt + a.output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": out.prompt}],
    });
    if a.thinking_tokens > 0 {
        u["thoughtsTokenCount"] = Value::from(a.thinking_tokens);
    }
    u
}

fn call_part(c: &Call, signed: bool) -> Value {
    let mut p = json!({"functionCall": {"name": c.name, "args": c.args}});
    if signed {
        p["thoughtSignature"] = Value::from(sign(SIGN_DOMAIN, &c.name));
    }
    p
}

/// The whole answer's parts.
fn parts(out: &Out<'_>, a: &Answer) -> Vec<Value> {
    let mut parts = Vec::new();
    if let (Some(t), true) = (&a.thinking, out.show_thoughts) {
        parts.push(json!({"text": t, "thought": true}));
    }
    if !a.text.is_empty() || a.calls.is_empty() {
        parts.push(json!({"text": a.text}));
    }
    for (k, c) in a.calls.iter().enumerate() {
        parts.push(call_part(c, out.thinking && k == 0));
    }
    parts
}

/// A `GenerateContentResponse`: `parts` for every candidate (the whole answer when `None`),
/// and the finish reason and full usage when `last`.
pub(super) fn response(
    ctx: &Ctx<'_>,
    out: &Out<'_>,
    a: &Answer,
    part: Option<Value>,
    last: bool,
) -> Value {
    let ps = match part {
        Some(p) => vec![p],
        None => parts(out, a),
    };
    let candidates: Vec<Value> = (0..out.candidates)
        .map(|i| {
            let mut c = json!({"content": {"parts": ps, "role": "model"}, "index": i});
            if last {
                c["finishReason"] = Value::from(finish_reason(&a.finish));
            }
            c
        })
        .collect();
    let usage = if last {
        usage(out, a)
    } else {
        json!({"promptTokenCount": out.prompt, "totalTokenCount": out.prompt})
    };
    json!({
        "candidates": candidates,
        "usageMetadata": usage,
        "modelVersion": out.model,
        "responseId": format!("demo{}", ctx.seq),
    })
}

pub(super) fn stream_reply(ctx: &Ctx<'_>, out: &Out<'_>, a: &Answer) -> Reply {
    let per = ctx.words_per_chunk();
    let mut objects = Vec::new();
    if let (Some(t), true) = (&a.thinking, out.show_thoughts) {
        for piece in chunks(t, per) {
            objects.push(response(
                ctx,
                out,
                a,
                Some(json!({"text": piece, "thought": true})),
                false,
            ));
        }
    }
    for piece in chunks(&a.text, per) {
        objects.push(response(ctx, out, a, Some(json!({"text": piece})), false));
    }
    // Function calls arrive whole, one per chunk.
    for (k, c) in a.calls.iter().enumerate() {
        objects.push(response(
            ctx,
            out,
            a,
            Some(call_part(c, out.thinking && k == 0)),
            false,
        ));
    }
    objects.push(response(ctx, out, a, Some(json!({"text": ""})), true));

    let sse = ctx.query_param("alt") == Some("sse");
    let (frames, end_frames, content_type, malformed) = if sse {
        (
            objects
                .iter()
                .map(|o| Bytes::from(format!("data: {o}\r\n\r\n")))
                .collect(),
            1,
            "text/event-stream",
            Bytes::from_static(
                b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"brok\r\n\r\n",
            ),
        )
    } else {
        // Without `alt=sse` the stream is one JSON array, written element by element.
        let mut frames: Vec<Bytes> = objects
            .iter()
            .enumerate()
            .map(|(i, o)| Bytes::from(format!("{}{o}", if i == 0 { "[" } else { ",\r\n" })))
            .collect();
        frames.push(Bytes::from_static(b"]"));
        (
            frames,
            2,
            "application/json; charset=UTF-8",
            Bytes::from_static(
                b",\r\n{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"brok",
            ),
        )
    };
    Reply::Stream(StreamPlan {
        content_type,
        headers: Vec::new(),
        frames,
        end_frames,
        malformed,
    })
}
