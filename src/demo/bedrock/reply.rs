//! Converse answers (JSON and the binary event stream) and embeddings.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Map, Value};

use super::super::common::{answer, chunks, fragments, sign, words, Answer, Finish};
use super::super::embeddings::demo_embedding;
use super::super::wire::{Ctx, Reply, StreamPlan};
use super::validate::{Request, THINKING_DOMAIN};
use super::validation;
use crate::provider::bedrock::eventstream::encode_event;

fn stop_reason(a: &Answer) -> &'static str {
    match a.finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::ToolCalls => "tool_use",
        Finish::StopSequence(_) => "stop_sequence",
    }
}

fn usage(ctx: &Ctx<'_>, req: &Request, a: &Answer) -> Value {
    let (mut read, mut write) = (0, 0);
    if let Some((n, key)) = req.cached {
        if ctx.cache_hit(key) {
            read = n;
        } else {
            write = n;
        }
    }
    let input = req.prompt_words.saturating_sub(read + write);
    let mut u = json!({
        "inputTokens": input,
        "outputTokens": a.output_tokens,
        "totalTokens": input + read + write + a.output_tokens,
    });
    if read + write > 0 {
        u["cacheReadInputTokens"] = read.into();
        u["cacheWriteInputTokens"] = write.into();
    }
    u
}

fn tool_id(seq: u64, i: usize) -> String {
    format!("tooluse_demo{seq}x{i}")
}

/// `/converse` or `/converse-stream`.
pub(super) fn converse(ctx: &Ctx<'_>, _model: &str, req: &Request, stream: bool) -> Reply {
    let a = answer("bedrock", &req.convo, ctx.text_override);
    let usage = usage(ctx, req, &a);
    if !stream {
        let mut content = Vec::new();
        if let Some(t) = &a.thinking {
            content.push(json!({"reasoningContent": {"reasoningText": {
                "text": t, "signature": sign(THINKING_DOMAIN, t)}}}));
        }
        if !a.text.is_empty() || a.calls.is_empty() {
            content.push(json!({ "text": a.text }));
        }
        for (i, c) in a.calls.iter().enumerate() {
            content.push(json!({"toolUse": {
                "toolUseId": tool_id(ctx.seq, i), "name": c.name, "input": c.args}}));
        }
        return Reply::json(
            StatusCode::OK,
            json!({
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop_reason(&a),
                "usage": usage,
                "metrics": {"latencyMs": 42},
            }),
        )
        .with_header("x-amzn-requestid", format!("demo-bedrock-{}", ctx.seq));
    }
    let ev = |name: &str, payload: Value| {
        Bytes::from(encode_event(name, payload.to_string().as_bytes()))
    };
    let mut frames = vec![ev("messageStart", json!({"role": "assistant"}))];
    let mut index = 0u32;
    if let Some(t) = &a.thinking {
        for piece in chunks(t, ctx.words_per_chunk()) {
            frames.push(ev(
                "contentBlockDelta",
                json!({"contentBlockIndex": index,
                "delta": {"reasoningContent": {"text": piece}}}),
            ));
        }
        frames.push(ev(
            "contentBlockDelta",
            json!({"contentBlockIndex": index,
            "delta": {"reasoningContent": {"signature": sign(THINKING_DOMAIN, t)}}}),
        ));
        frames.push(ev("contentBlockStop", json!({"contentBlockIndex": index})));
        index += 1;
    }
    if !a.text.is_empty() {
        for piece in chunks(&a.text, ctx.words_per_chunk()) {
            frames.push(ev(
                "contentBlockDelta",
                json!({"contentBlockIndex": index,
                "delta": {"text": piece}}),
            ));
        }
        frames.push(ev("contentBlockStop", json!({"contentBlockIndex": index})));
        index += 1;
    }
    for (i, c) in a.calls.iter().enumerate() {
        frames.push(ev(
            "contentBlockStart",
            json!({"contentBlockIndex": index,
            "start": {"toolUse": {"toolUseId": tool_id(ctx.seq, i), "name": c.name}}}),
        ));
        let args = c.args_json();
        for piece in fragments(&args, 8) {
            frames.push(ev(
                "contentBlockDelta",
                json!({"contentBlockIndex": index,
                "delta": {"toolUse": {"input": piece}}}),
            ));
        }
        frames.push(ev("contentBlockStop", json!({"contentBlockIndex": index})));
        index += 1;
    }
    frames.push(ev("messageStop", json!({"stopReason": stop_reason(&a)})));
    frames.push(ev(
        "metadata",
        json!({"usage": usage, "metrics": {"latencyMs": 42}}),
    ));
    let malformed = Bytes::from(encode_event(
        "contentBlockDelta",
        b"{\"contentBlockIndex\": 0, \"delta\": {",
    ));
    Reply::Stream(StreamPlan {
        content_type: "application/vnd.amazon.eventstream",
        headers: vec![("x-amzn-requestid", format!("demo-bedrock-{}", ctx.seq))],
        frames,
        end_frames: 2,
        malformed,
    })
}

/// `/invoke` for Titan and Cohere embedding models.
pub(super) fn embeddings(o: &Map<String, Value>, model: &str) -> Reply {
    if model.contains("titan-embed-text") {
        let v2 = !model.contains("titan-embed-text-v1");
        for k in o.keys() {
            let ok = k == "inputText"
                || (v2 && matches!(k.as_str(), "dimensions" | "normalize" | "embeddingTypes"));
            if !ok {
                return validation(format!("Malformed input request: extraneous key [{k}] is not permitted, please reformat your input and try again."));
            }
        }
        let Some(text) = o
            .get("inputText")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        else {
            return validation("Malformed input request: #: required key [inputText] not found, please reformat your input and try again.");
        };
        let dims = match o.get("dimensions") {
            None => 1024,
            Some(d) => match d.as_u64() {
                Some(n @ (256 | 512 | 1024)) => n as usize,
                _ => return validation("Malformed input request: #/dimensions: 256, 512 or 1024"),
            },
        };
        let dims = if v2 { dims } else { 1536 };
        return Reply::json(
            StatusCode::OK,
            json!({"embedding": demo_embedding(text, dims), "inputTextTokenCount": words(text)}),
        );
    }
    if model.contains("cohere.embed") {
        for k in o.keys() {
            if !matches!(
                k.as_str(),
                "texts" | "input_type" | "truncate" | "embedding_types"
            ) {
                return validation(format!("Malformed input request: extraneous key [{k}] is not permitted, please reformat your input and try again."));
            }
        }
        let Some(texts) = o
            .get("texts")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty() && t.len() <= 96)
        else {
            return validation("Malformed input request: #/texts: expected 1 to 96 texts");
        };
        if !matches!(
            o.get("input_type").and_then(Value::as_str),
            Some("search_document" | "search_query" | "classification" | "clustering")
        ) {
            return validation("Malformed input request: #: required key [input_type] not found, please reformat your input and try again.");
        }
        let mut out = Vec::with_capacity(texts.len());
        for t in texts {
            let Some(t) = t.as_str() else {
                return validation("Malformed input request: #/texts: strings expected");
            };
            out.push(demo_embedding(t, 1024));
        }
        return Reply::json(
            StatusCode::OK,
            json!({"id": "demo-cohere", "embeddings": out, "texts": texts, "response_type": "embeddings_floats"}),
        );
    }
    validation(
        "The provided model doesn't support on-demand throughput or is not an embedding model.",
    )
}
