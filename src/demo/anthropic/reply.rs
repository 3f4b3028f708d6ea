//! Anthropic's answers: a whole message, or its event stream.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use crate::demo::common::{chunks, fragments, sign, Answer, Finish};
use crate::demo::wire::{Ctx, Reply, StreamPlan};

/// The signing domain of thinking blocks' signatures.
pub(super) const SIGN_DOMAIN: &str = "anthropic-thinking";

pub(super) struct Usage {
    pub(super) input: u64,
    pub(super) cache_write: u64,
    pub(super) cache_read: u64,
}

fn usage(u: &Usage, output: u64) -> Value {
    json!({
        "input_tokens": u.input,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output,
        "service_tier": "standard",
    })
}

fn stop_reason(f: &Finish) -> (&'static str, Value) {
    match f {
        Finish::Stop => ("end_turn", Value::Null),
        Finish::Length => ("max_tokens", Value::Null),
        Finish::ToolCalls => ("tool_use", Value::Null),
        Finish::StopSequence(s) => ("stop_sequence", Value::from(s.as_str())),
    }
}

fn tool_id(ctx: &Ctx<'_>, k: usize) -> String {
    format!("toolu_demo{}_{k}", ctx.seq)
}

pub(super) fn complete_reply(ctx: &Ctx<'_>, model: &str, a: &Answer, u: &Usage) -> Reply {
    let mut content = Vec::new();
    if let Some(t) = &a.thinking {
        content.push(json!({"type": "thinking", "thinking": t, "signature": sign(SIGN_DOMAIN, t)}));
    }
    if !a.text.is_empty() {
        content.push(json!({"type": "text", "text": a.text}));
    }
    for (k, c) in a.calls.iter().enumerate() {
        content.push(
            json!({"type": "tool_use", "id": tool_id(ctx, k), "name": c.name, "input": c.args}),
        );
    }
    let (reason, seq) = stop_reason(&a.finish);
    Reply::json(
        StatusCode::OK,
        json!({
            "id": format!("msg_demo{}", ctx.seq),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": seq,
            "usage": usage(u, a.output_tokens),
        }),
    )
}

fn event(v: &Value) -> Bytes {
    let ty = v.get("type").and_then(Value::as_str).unwrap_or("message");
    Bytes::from(format!("event: {ty}\ndata: {v}\n\n"))
}

pub(super) fn stream_reply(ctx: &Ctx<'_>, model: &str, a: &Answer, u: &Usage) -> Reply {
    let per = ctx.words_per_chunk();
    let mut frames = vec![event(&json!({
        "type": "message_start",
        "message": {
            "id": format!("msg_demo{}", ctx.seq), "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage(u, 1),
        }
    }))];
    let mut index = 0;
    let mut pinged = false;
    let mut start = |frames: &mut Vec<Bytes>, block: Value, index: usize| {
        frames.push(event(
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        if !pinged {
            frames.push(event(&json!({"type": "ping"})));
            pinged = true;
        }
    };
    let delta = |index: usize, d: Value| {
        event(&json!({"type": "content_block_delta", "index": index, "delta": d}))
    };
    let stop = |index: usize| event(&json!({"type": "content_block_stop", "index": index}));
    if let Some(t) = &a.thinking {
        start(
            &mut frames,
            json!({"type": "thinking", "thinking": ""}),
            index,
        );
        for piece in chunks(t, per) {
            frames.push(delta(
                index,
                json!({"type": "thinking_delta", "thinking": piece}),
            ));
        }
        frames.push(delta(
            index,
            json!({"type": "signature_delta", "signature": sign(SIGN_DOMAIN, t)}),
        ));
        frames.push(stop(index));
        index += 1;
    }
    if !a.text.is_empty() {
        start(&mut frames, json!({"type": "text", "text": ""}), index);
        for piece in chunks(&a.text, per) {
            frames.push(delta(index, json!({"type": "text_delta", "text": piece})));
        }
        frames.push(stop(index));
        index += 1;
    }
    for (k, c) in a.calls.iter().enumerate() {
        start(
            &mut frames,
            json!({"type": "tool_use", "id": tool_id(ctx, k), "name": c.name, "input": {}}),
            index,
        );
        frames.push(delta(
            index,
            json!({"type": "input_json_delta", "partial_json": ""}),
        ));
        for frag in fragments(&c.args_json(), 8) {
            frames.push(delta(
                index,
                json!({"type": "input_json_delta", "partial_json": frag}),
            ));
        }
        frames.push(stop(index));
        index += 1;
    }
    let (reason, seq) = stop_reason(&a.finish);
    frames.push(event(&json!({
        "type": "message_delta",
        "delta": {"stop_reason": reason, "stop_sequence": seq},
        "usage": {
            "input_tokens": u.input,
            "cache_creation_input_tokens": u.cache_write,
            "cache_read_input_tokens": u.cache_read,
            "output_tokens": a.output_tokens,
        },
    })));
    frames.push(event(&json!({"type": "message_stop"})));
    Reply::Stream(StreamPlan {
        content_type: "text/event-stream; charset=utf-8",
        headers: Vec::new(),
        frames,
        end_frames: 1,
        malformed: Bytes::from_static(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"brok\n\n",
        ),
    })
}
