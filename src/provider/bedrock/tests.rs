use proptest::prelude::*;
use serde_json::{json, Value};

use super::eventstream::{crc32, encode_event, encode_exception, EventStreamDecoder};
use super::*;
use crate::catalog::{Provider, ProviderKind};
use crate::openai::sse::SseEvent;
use crate::openai::ChatCompletionChunk;

fn ctx() -> DecodeContext {
    DecodeContext {
        model: "anthropic/claude".into(),
        provider: "bedrock".into(),
    }
}

fn stream_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    for (name, payload) in [
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "think"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 0})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"text": "Hel"}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"text": "lo"}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 1})),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"a\":"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "1}"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 2})),
        ("messageStop", json!({"stopReason": "tool_use"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 20,
            "cacheReadInputTokens": 3, "cacheWriteInputTokens": 5}, "metrics": {"latencyMs": 1}}),
        ),
    ] {
        out.extend(encode_event(name, payload.to_string().as_bytes()));
    }
    out
}

/// Decodes `bytes` fed in `cuts`-sized pieces; the chunks, or the first error.
fn run(bytes: &[u8], cuts: &[usize]) -> Result<Vec<ChatCompletionChunk>, crate::Error> {
    let mut dec = EventStreamDecoder::default();
    let mut s = Bedrock.stream_decoder(&ctx());
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let n = cuts
            .get(i % cuts.len().max(1))
            .copied()
            .unwrap_or(bytes.len())
            .max(1);
        let end = (at + n).min(bytes.len());
        dec.push(&bytes[at..end]);
        at = end;
        i += 1;
        while let Some(ev) = dec.next_event()? {
            s.event(ev, &mut out)?;
        }
    }
    if dec.has_partial() {
        return Err(crate::Error::upstream("partial"));
    }
    s.finish(&mut out)?;
    Ok(out)
}

fn summary(chunks: &[ChatCompletionChunk]) -> (String, String, String, Option<u64>) {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut args = String::new();
    let mut cached = None;
    for c in chunks {
        if let Some(ch) = c.choices.first() {
            text.push_str(ch.delta.content.as_deref().unwrap_or(""));
            reasoning.push_str(ch.delta.reasoning.as_deref().unwrap_or(""));
            for t in ch.delta.tool_calls.iter().flatten() {
                if let Some(f) = &t.function {
                    args.push_str(f.arguments.as_deref().unwrap_or(""));
                }
            }
        }
        if let Some(u) = &c.usage {
            cached = u.prompt_tokens_details.as_ref().map(|d| d.cached_tokens);
            assert_eq!(u.prompt_tokens, 13);
        }
    }
    (text, reasoning, args, cached)
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    // A message from AWS's event-stream examples: {'foo':'bar'} with a content-type header.
    let hex = "0000003d0000002007fd83960c636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e7b27666f6f273a27626172277d8d9c08b1";
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let mut d = EventStreamDecoder::default();
    d.push(&bytes);
    let ev = d.next_event().unwrap().unwrap();
    assert_eq!(ev.data, "{'foo':'bar'}");
}

#[test]
fn a_whole_stream_decodes() {
    let out = run(&stream_bytes(), &[usize::MAX]).unwrap();
    let (text, reasoning, args, cached) = summary(&out);
    assert_eq!(text, "Hello");
    assert_eq!(reasoning, "think");
    assert_eq!(args, "{\"a\":1}");
    assert_eq!(cached, Some(3));
    let finish = out
        .iter()
        .find_map(|c| c.choices.first().and_then(|ch| ch.finish_reason))
        .unwrap();
    assert_eq!(finish.as_str(), "tool_calls");
    let sig = out.iter().any(|c| {
        c.choices.first().is_some_and(|ch| {
            ch.delta
                .reasoning_details
                .as_ref()
                .is_some_and(|d| d[0]["signature"] == "sig")
        })
    });
    assert!(sig);
}

proptest! {
    #[test]
    fn any_chunking_of_a_valid_stream_decodes_the_same(cuts in proptest::collection::vec(1usize..64, 1..20)) {
        let out = run(&stream_bytes(), &cuts).unwrap();
        let (text, reasoning, args, cached) = summary(&out);
        prop_assert_eq!(text, "Hello");
        prop_assert_eq!(reasoning, "think");
        prop_assert_eq!(args, "{\"a\":1}");
        prop_assert_eq!(cached, Some(3));
    }

    #[test]
    fn any_single_flipped_byte_is_an_error_or_the_same_answer(at in 0usize..2000, bit in 0u8..8) {
        let mut bytes = stream_bytes();
        let at = at % bytes.len();
        bytes[at] ^= 1 << bit;
        // A CRC catches every single-bit error: the stream must fail.
        prop_assert!(run(&bytes, &[7]).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = run(&bytes, &[3]);
    }
}

#[test]
fn a_huge_declared_length_is_refused_before_allocating() {
    let mut prelude = Vec::new();
    prelude.extend_from_slice(&u32::MAX.to_be_bytes());
    prelude.extend_from_slice(&0u32.to_be_bytes());
    let crc = crc32(&prelude);
    prelude.extend_from_slice(&crc.to_be_bytes());
    let mut d = EventStreamDecoder::default();
    d.push(&prelude);
    let e = d.next_event().unwrap_err();
    assert!(e.message().contains("length"), "{}", e.message());
    // Headers longer than the message are refused too.
    let mut p = Vec::new();
    p.extend_from_slice(&32u32.to_be_bytes());
    p.extend_from_slice(&100u32.to_be_bytes());
    let crc = crc32(&p);
    p.extend_from_slice(&crc.to_be_bytes());
    let mut d = EventStreamDecoder::default();
    d.push(&p);
    assert!(d.next_event().is_err());
}

#[test]
fn a_truncated_stream_is_an_error() {
    let bytes = stream_bytes();
    assert!(run(&bytes[..bytes.len() - 3], &[usize::MAX]).is_err());
    // Without the metadata event the stream is incomplete.
    let without: Vec<u8> = {
        let mut d = EventStreamDecoder::default();
        d.push(&bytes);
        let mut out = Vec::new();
        while let Some(ev) = d.next_event().unwrap() {
            if ev.event.as_deref() != Some("metadata") {
                out.extend(encode_event(
                    ev.event.as_deref().unwrap(),
                    ev.data.as_bytes(),
                ));
            }
        }
        out
    };
    assert!(run(&without, &[usize::MAX]).is_err());
}

#[test]
fn exception_events_become_mapped_errors() {
    let mut bytes = encode_event("messageStart", br#"{"role":"assistant"}"#);
    bytes.extend(encode_exception("throttlingException", "slow down"));
    let e = run(&bytes, &[usize::MAX]).unwrap_err();
    assert_eq!(e.status(), 429);
    let mut bytes = encode_event("messageStart", br#"{"role":"assistant"}"#);
    bytes.extend(encode_exception("validationException", "bad input"));
    let e = run(&bytes, &[usize::MAX]).unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(e.message(), "bad input");
}

#[test]
fn error_bodies_follow_the_table() {
    let h = |t: &str| {
        let mut h = http::HeaderMap::new();
        h.insert("x-amzn-errortype", t.parse().unwrap());
        h
    };
    let cases = [
        (
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            400,
            429,
        ),
        ("ModelNotReadyException", 429, 503),
        ("ServiceUnavailableException", 503, 503),
        ("AccessDeniedException", 403, 502),
        ("UnrecognizedClientException", 403, 502),
        ("InvalidSignatureException", 403, 502),
        ("ValidationException", 400, 400),
        ("ResourceNotFoundException", 404, 404),
        ("InternalServerException", 500, 502),
    ];
    for (kind, status, want) in cases {
        let e = Bedrock.decode_error(
            http::StatusCode::from_u16(status).unwrap(),
            &h(kind),
            br#"{"message":"The request signature we calculated does not match"}"#,
        );
        assert_eq!(e.status(), want, "{kind}");
        if want == 502 {
            assert!(!e.message().contains("signature we calculated"));
        }
    }
    // The body's `__type` when there is no header.
    let e = Bedrock.decode_error(
        http::StatusCode::BAD_REQUEST,
        &http::HeaderMap::new(),
        br#"{"__type":"com.amazon.coral#ThrottlingException","message":"x"}"#,
    );
    assert_eq!(e.status(), 429);
}

#[test]
fn answers_map_blocks_stop_reasons_and_usage() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s1"}}},
            {"text": "Hi"},
            {"toolUse": {"toolUseId": "t", "name": "f", "input": {"x": 1}}}
        ]}},
        "stopReason": "guardrail_intervened",
        "usage": {"inputTokens": 2, "outputTokens": 3, "totalTokens": 9,
                  "cacheReadInputTokens": 4, "cacheWriteInputTokens": 0}
    });
    let c = Bedrock.decode(body.to_string().as_bytes(), &ctx()).unwrap();
    let ch = &c.choices[0];
    assert_eq!(ch.finish_reason.unwrap().as_str(), "content_filter");
    assert_eq!(ch.message.content.as_deref(), Some("Hi"));
    assert_eq!(ch.message.reasoning.as_deref(), Some("hmm"));
    assert_eq!(
        ch.message.tool_calls.as_ref().unwrap()[0]
            .function
            .arguments,
        "{\"x\":1}"
    );
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (6, 3, 9)
    );
    assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, 4);
    for (r, f) in [
        ("content_filtered", "content_filter"),
        ("max_tokens", "length"),
        ("end_turn", "stop"),
    ] {
        assert_eq!(response::finish_reason(Some(r)).as_str(), f);
    }
}

#[test]
fn requests_encode_the_converse_body_and_url() {
    let p = Provider::new(
        "b",
        ProviderKind::Bedrock,
        "https://bedrock-runtime.us-east-1.amazonaws.com",
    );
    let req = crate::openai::ChatRequest::from_slice(
        json!({"model": "x", "stream": true, "temperature": 0.3, "stop": ["END"],
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [
                    {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}}]},
                {"role": "assistant", "content": "ok", "reasoning_details": [
                    {"type": "reasoning.text", "text": "a", "format": "anthropic-claude-v1", "index": 0},
                    {"type": "reasoning.text", "text": "b", "signature": "S", "format": "anthropic-claude-v1", "index": 0}]},
                {"role": "user", "content": "more"}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0";
    let r = Bedrock
        .encode(
            &req,
            &EncodeContext {
                provider: &p,
                upstream_model: arn,
                max_output: None,
            },
        )
        .unwrap();
    assert_eq!(
        r.uri().path(),
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
    );
    assert_eq!(r.headers()["accept"], "application/vnd.amazon.eventstream");
    let v: Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
    assert_eq!(v["system"], json!([{"text": "sys"}]));
    assert_eq!(
        v["messages"][0]["content"][1],
        json!({"cachePoint": {"type": "default"}})
    );
    assert_eq!(
        v["messages"][0]["content"][2],
        json!({"image": {"format": "png", "source": {"bytes": "iVBORw=="}}})
    );
    assert_eq!(
        v["messages"][1]["content"][0],
        json!({"reasoningContent": {"reasoningText": {"text": "ab", "signature": "S"}}})
    );
    assert_eq!(v["inferenceConfig"]["stopSequences"], json!(["END"]));
    assert_eq!(v["inferenceConfig"]["temperature"], 0.3);
    // http(s) image URLs are refused: Converse takes bytes.
    let bad = crate::openai::ChatRequest::from_slice(
        br#"{"model":"x","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
    )
    .unwrap();
    let e = Bedrock
        .encode(
            &bad,
            &EncodeContext {
                provider: &p,
                upstream_model: "m",
                max_output: None,
            },
        )
        .unwrap_err();
    assert_eq!(e.status(), 400);
}

#[test]
fn event_names_reach_the_decoder() {
    let mut d = EventStreamDecoder::default();
    d.push(&encode_exception("modelStreamErrorException", "boom"));
    let ev: SseEvent = d.next_event().unwrap().unwrap();
    assert_eq!(
        ev.event.as_deref(),
        Some("exception:modelStreamErrorException")
    );
}
