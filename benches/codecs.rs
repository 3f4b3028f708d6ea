//! The provider codecs (OpenAI-compatible, Anthropic Messages, Gemini) and the HTTP edge.
//!
//! ```sh
//! cargo bench --features bench-support --bench codecs               # everything, about a minute
//! cargo bench --features bench-support --bench codecs -- anthropic  # one group (the summary follows the filter)
//! ```
//!
//! Per codec (`Provider::codec()` of each kind):
//!
//! - `encode`: a 1 KB chat request with a tool call, its result and a tool definition →
//!   the provider's HTTP request (`ProviderCodec::encode`);
//! - `decode`: a ~1 KB non-streaming answer in the provider's shape → `ChatCompletion`;
//! - `text_stream`, `tool_stream`: pre-built SSE bytes, pushed one event at a time through
//!   `SseDecoder` and the codec's `StreamDecode` (both built in setup), reported per SSE
//!   event; the baseline `sse_only` is the `SseDecoder` alone on the same bytes, so "added" is
//!   the codec's own work per event.
//!
//! The edge (`switchboard::edge::ChatCompletions` over the identity typed service), against
//! the identity typed service called with an already parsed request:
//!
//! - `nonstream_1k`: reading + parsing a 1 KB JSON body, rendering the completion as JSON;
//! - `stream200`: rendering a 200-chunk stream as SSE, body collected to the end.
//!
//! See `src/bench_support/micro.rs` for the method and BENCHMARKS.md ("Per-layer overhead").

use std::cell::RefCell;
use std::hint::black_box;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use switchboard::bench_support::micro;
use switchboard::bench_support::micro::{
    arm, call, complete_response, completion, drain, identity, parse, per, sdk_headers,
    stream_response, text_chunks, typed, Bench, Canned, ANSWER_WORDS, REQUEST,
};
use switchboard::catalog::{Provider, ProviderKind};
use switchboard::edge::ChatCompletions;
use switchboard::openai::sse::SseDecoder;
use switchboard::openai::ChatCompletionChunk;
use switchboard::provider::{DecodeContext, EncodeContext, ProviderCodec, StreamDecode};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A 1 KB chat request with a tool: system prompt, question, the assistant's tool call, the
/// tool's result, a follow-up; one function tool with a JSON schema.
const TOOL_CHAT: &str = r#"{"model":"bench/model","messages":[
{"role":"system","content":"You are a helpful assistant that answers questions about the weather. Use the tools when you need live data, and answer in one short paragraph."},
{"role":"user","content":"What is the weather like in Paris today? I am planning a walk along the Seine this afternoon and want to know whether to bring an umbrella."},
{"role":"assistant","content":null,"tool_calls":[{"id":"call_Wd2xQ7KpLm3N","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]},
{"role":"tool","tool_call_id":"call_Wd2xQ7KpLm3N","content":"{\"temperature\":18,\"condition\":\"light rain\",\"precipitation_probability\":0.7,\"wind_kmh\":12}"},
{"role":"user","content":"Thanks. And what about London, later this evening?"}],
"tools":[{"type":"function","function":{"name":"get_weather","description":"Get the current weather and the forecast for the next hours for a city.","parameters":{"type":"object","properties":{"city":{"type":"string","description":"City name, e.g. Paris"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}}}],
"tool_choice":"auto","max_tokens":512,"temperature":0.3}"#;

fn answer_text(words: usize) -> String {
    (0..words)
        .map(|i| ANSWER_WORDS[i % ANSWER_WORDS.len()])
        .collect()
}

/// A JSON string literal (quotes and escapes included).
fn js(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// `args` cut into `n` fragments of about the same length (on char boundaries).
fn fragments(args: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = args.chars().collect();
    let step = chars.len().div_ceil(n);
    chars.chunks(step).map(|c| c.iter().collect()).collect()
}

const ARGS: [&str; 2] = [
    r#"{"city": "San Francisco, CA", "unit": "celsius", "days": 3, "include_hourly": false}"#,
    r#"{"city": "New York, NY", "unit": "fahrenheit", "days": 1, "include_hourly": true}"#,
];

struct Provider3 {
    kind: ProviderKind,
    name: &'static str,
    provider: Provider,
    upstream: &'static str,
    ctx: DecodeContext,
    answer: String,
    text: Vec<String>,
    tools: Vec<String>,
}

fn openai() -> Provider3 {
    const HEAD: &str = r#""id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_b8bc95a0ac""#;
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{{HEAD},\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let mut tools = Vec::new();
    for (i, args) in ARGS.iter().enumerate() {
        let head = format!(
            r#"{{"tool_calls":[{{"index":{i},"id":"call_{i}Xk9PqR2sT","type":"function","function":{{"name":"get_weather","arguments":""}}}}]}}"#
        );
        let delta = if i == 0 {
            head.replacen('{', r#"{"role":"assistant","content":null,"#, 1)
        } else {
            head
        };
        tools.push(chunk(&delta, "null"));
        for f in fragments(args, 20) {
            tools.push(chunk(
                &format!(
                    r#"{{"tool_calls":[{{"index":{i},"function":{{"arguments":{}}}}}]}}"#,
                    js(&f)
                ),
                "null",
            ));
        }
    }
    tools.push(chunk("{}", r#""tool_calls""#));
    tools.push(format!(
        "data: {{{HEAD},\"choices\":[],\"usage\":{{\"prompt_tokens\":182,\"completion_tokens\":64,\"total_tokens\":246}}}}\n\n"
    ));
    tools.push("data: [DONE]\n\n".to_owned());
    Provider3 {
        kind: ProviderKind::Openai,
        name: "openai",
        provider: Provider::new("openai", ProviderKind::Openai, "https://api.openai.com/v1")
            .with_api_key("sk-openai"),
        upstream: "gpt-4o-mini",
        ctx: micro::openai_ctx(),
        answer: micro::openai_completion_json(),
        text: micro::openai_text_events(100),
        tools,
    }
}

fn anthropic() -> Provider3 {
    let ev = |name: &str, data: &str| format!("event: {name}\ndata: {data}\n\n");
    let start = ev(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-20250514","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":212,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
    );
    let stop = ev("message_stop", r#"{"type":"message_stop"}"#);
    let mut text = vec![
        start.clone(),
        ev(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        ev("ping", r#"{"type": "ping"}"#),
    ];
    for i in 0..100 {
        text.push(ev(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{}}}}}"#,
                js(ANSWER_WORDS[i % ANSWER_WORDS.len()])
            ),
        ));
    }
    text.push(ev(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ));
    text.push(ev(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":100}}"#,
    ));
    text.push(stop.clone());

    let mut tools = vec![start];
    for (i, args) in ARGS.iter().enumerate() {
        tools.push(ev(
            "content_block_start",
            &format!(
                r#"{{"type":"content_block_start","index":{i},"content_block":{{"type":"tool_use","id":"toolu_0{i}T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{{}}}}}}"#
            ),
        ));
        for f in fragments(args, 20) {
            tools.push(ev(
                "content_block_delta",
                &format!(
                    r#"{{"type":"content_block_delta","index":{i},"delta":{{"type":"input_json_delta","partial_json":{}}}}}"#,
                    js(&f)
                ),
            ));
        }
        tools.push(ev(
            "content_block_stop",
            &format!(r#"{{"type":"content_block_stop","index":{i}}}"#),
        ));
    }
    tools.push(ev(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
    ));
    tools.push(stop);

    Provider3 {
        kind: ProviderKind::Anthropic,
        name: "anthropic",
        provider: Provider::new(
            "anthropic",
            ProviderKind::Anthropic,
            "https://api.anthropic.com",
        )
        .with_api_key("sk-ant"),
        upstream: "claude-sonnet-4-20250514",
        ctx: DecodeContext {
            model: "anthropic/claude-sonnet-4".into(),
            provider: "anthropic".into(),
        },
        answer: format!(
            r#"{{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[{{"type":"text","text":{}}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":2095,"output_tokens":120,"cache_creation_input_tokens":100,"cache_read_input_tokens":1800,"service_tier":"standard"}}}}"#,
            js(&answer_text(96))
        ),
        text,
        tools,
    }
}

fn gemini() -> Provider3 {
    let frame = |body: String| format!("data: {body}\r\n\r\n");
    let mut text = Vec::new();
    for i in 0..100 {
        let last = i == 99;
        text.push(frame(format!(
            r#"{{"candidates": [{{"content": {{"parts": [{{"text": {}}}], "role": "model"}}{}, "index": 0}}], "usageMetadata": {{"promptTokenCount": 212, "candidatesTokenCount": {}, "totalTokenCount": {}}}, "modelVersion": "gemini-2.5-flash", "responseId": "mAitaLmkHPPlz7IPvtfUqQ4"}}"#,
            js(ANSWER_WORDS[i % ANSWER_WORDS.len()]),
            if last { r#", "finishReason": "STOP""# } else { "" },
            i + 1,
            213 + i
        )));
    }
    // Gemini sends function calls whole: eight calls, one per frame.
    let mut tools = Vec::new();
    for i in 0..8 {
        let last = i == 7;
        let sig = if i == 0 {
            r#", "thoughtSignature": "Q2lZQWRPRmJ5ZVBhcmlz""#
        } else {
            ""
        };
        tools.push(frame(format!(
            r#"{{"candidates": [{{"content": {{"role": "model", "parts": [{{"functionCall": {{"name": "get_weather", "args": {}}}{sig}}}]}}{}, "index": 0}}], "usageMetadata": {{"promptTokenCount": 182, "candidatesTokenCount": {}, "totalTokenCount": {}}}, "modelVersion": "gemini-2.5-flash", "responseId": "nBjtaLmkHPPlz7IPvtfUqQ4"}}"#,
            ARGS[i % 2],
            if last { r#", "finishReason": "STOP""# } else { "" },
            8 * (i + 1),
            182 + 8 * (i + 1)
        )));
    }
    Provider3 {
        kind: ProviderKind::Gemini,
        name: "gemini",
        provider: Provider::new(
            "google",
            ProviderKind::Gemini,
            "https://generativelanguage.googleapis.com",
        )
        .with_api_key("goog"),
        upstream: "gemini-2.5-flash",
        ctx: DecodeContext {
            model: "google/gemini-2.5-flash".into(),
            provider: "google".into(),
        },
        answer: format!(
            r#"{{"candidates": [{{"content": {{"parts": [{{"text": {}}}], "role": "model"}}, "finishReason": "STOP", "avgLogprobs": -0.1830, "index": 0}}], "usageMetadata": {{"promptTokenCount": 212, "candidatesTokenCount": 120, "totalTokenCount": 332, "promptTokensDetails": [{{"modality": "TEXT", "tokenCount": 212}}], "candidatesTokensDetails": [{{"modality": "TEXT", "tokenCount": 120}}]}}, "modelVersion": "gemini-2.5-flash", "responseId": "mAitaLmkHPPlz7IPvtfUqQ4"}}"#,
            js(&answer_text(96))
        ),
        text,
        tools,
    }
}

/// A fresh SSE decoder, the codec's stream decoder and room for the chunks (built in setup;
/// returned by the run so that they are dropped after the timed part).
type Decoding = (SseDecoder, Box<dyn StreamDecode>, Vec<ChatCompletionChunk>);

// ---------------------------------------------------------------------------------------------
// Benches

fn provider_codec(bench: &mut Bench<'_>, rt: &tokio::runtime::Runtime, p: &Provider3) {
    let codec = codec(p.kind);
    let req = parse(TOOL_CHAT.as_bytes());
    let ectx = EncodeContext {
        provider: &p.provider,
        upstream_model: p.upstream,
        max_output: Some(16_384),
    };
    let text: Vec<Bytes> = p.text.iter().map(|e| Bytes::from(e.clone())).collect();
    let tools: Vec<Bytes> = p.tools.iter().map(|e| Bytes::from(e.clone())).collect();

    let encode = arm(
        || (),
        |()| std::future::ready(codec.encode(&req, &ectx).expect("the request encodes")),
    );
    let decode = arm(
        || (),
        |()| {
            std::future::ready(
                codec
                    .decode(p.answer.as_bytes(), &p.ctx)
                    .expect("the answer decodes"),
            )
        },
    );
    let sse_only = |events: &[Bytes]| {
        let events = events.to_vec();
        arm(SseDecoder::new, move |mut sse: SseDecoder| {
            for e in &events {
                sse.push(e);
                while let Some(ev) = sse.next_event().expect("valid SSE") {
                    black_box(ev);
                }
            }
            std::future::ready(sse)
        })
    };
    let decoded = |events: &[Bytes]| {
        let events = events.to_vec();
        let cap = events.len() + 8;
        arm(
            move || {
                (
                    SseDecoder::new(),
                    codec.stream_decoder(&p.ctx),
                    Vec::with_capacity(cap),
                )
            },
            move |(mut sse, mut dec, mut out): Decoding| {
                for e in &events {
                    sse.push(e);
                    while let Some(ev) = sse.next_event().expect("valid SSE") {
                        dec.event(ev, &mut out).expect("the event decodes");
                    }
                }
                dec.finish(&mut out).expect("the stream is complete");
                std::future::ready((sse, dec, out))
            },
        )
    };
    let (sse_text, dec_text) = (sse_only(&text), decoded(&text));
    let (sse_tools, dec_tools) = (sse_only(&tools), decoded(&tools));

    // Checks: the request encodes to about the expected size, the answer and both streams
    // decode to what they carry.
    let encoded = encode.once(rt);
    let answer = decode.once(rt);
    let (_, _, text_out) = dec_text.once(rt);
    let (_, _, tool_out) = dec_tools.once(rt);
    let streamed: String = text_out
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    let calls = tool_out
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.tool_calls.as_ref())
        .flatten()
        .filter(|t| t.id.is_some())
        .count();
    assert!(
        answer
            .choices
            .first()
            .and_then(|c| c.message.content.as_deref())
            .is_some_and(|t| t.starts_with("Sure! Here is")),
        "{}: decoded answer",
        p.name
    );
    assert_eq!(streamed, answer_text(100), "{}: streamed text", p.name);
    assert_eq!(
        calls,
        if p.kind == ProviderKind::Gemini { 8 } else { 2 },
        "{}: tool calls",
        p.name
    );
    assert!(
        tool_out.iter().any(|c| c.usage.is_some()) && text_out.iter().any(|c| c.usage.is_some()),
        "{}: usage",
        p.name
    );
    eprintln!(
        "{}: request {} B → {} B; answer {} B; text stream {} events / {} B → {} chunks; tool stream {} events / {} B → {} chunks",
        p.name,
        TOOL_CHAT.len(),
        encoded.body().len(),
        p.answer.len(),
        text.len(),
        text.iter().map(Bytes::len).sum::<usize>(),
        text_out.len(),
        tools.len(),
        tools.iter().map(Bytes::len).sum::<usize>(),
        tool_out.len(),
    );

    let n_text = text.len() as u64;
    let n_tools = tools.len() as u64;
    let mut g = bench.group(p.name);
    g.alone("encode_1k_tool", REQUEST, &encode);
    g.alone("decode", REQUEST, &decode);
    g.baseline("sse_only_text", per("event", n_text), &sse_text);
    g.versus(
        "text_stream",
        per("event", n_text),
        ("sse_only_text", &sse_text),
        &dec_text,
        None,
    );
    g.baseline("sse_only_tools", per("event", n_tools), &sse_tools);
    g.versus(
        "tool_stream",
        per("event", n_tools),
        ("sse_only_tools", &sse_tools),
        &dec_tools,
        None,
    );
    g.finish();
}

fn edge(bench: &mut Bench<'_>, rt: &tokio::runtime::Runtime) {
    const CHUNKS: usize = 200;
    let headers = sdk_headers();
    let done = completion();
    let chunks = text_chunks(CHUNKS);
    let body = Bytes::from(micro::chat_body(
        r#""model":"openai/gpt-4o-mini""#,
        1024,
        micro::TAIL,
        0,
    ));
    let stream_body = Bytes::from(micro::chat_body(
        r#""model":"openai/gpt-4o-mini""#,
        1024,
        micro::STREAM_TAIL,
        0,
    ));
    let (chat, stream_chat) = (parse(&body), parse(&stream_body));

    let http_request = |body: &Bytes, canned: Canned| {
        let mut r = http::Request::new(Full::new(body.clone()));
        *r.method_mut() = http::Method::POST;
        *r.uri_mut() = http::Uri::from_static("/v1/chat/completions");
        *r.headers_mut() = headers.clone();
        r.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(body.len()),
        );
        r.extensions_mut().insert(canned);
        r
    };
    let typed_request = |chat, canned: Canned| {
        let mut r = typed(chat, &headers);
        r.extensions_mut().insert(canned);
        r
    };
    let whole = || Canned::new(complete_response(&done));
    let streamed = || Canned::new(stream_response(&chunks));

    let base_svc = RefCell::new(identity());
    let svc = RefCell::new(ChatCompletions::new(identity()));
    let base = arm(|| typed_request(&chat, whole()), |req| call(&base_svc, req));
    let nonstream = arm(
        || http_request(&body, whole()),
        |req| async {
            let resp = call(&svc, req).await;
            let (parts, body) = resp.into_parts();
            let bytes = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(never) => match never {},
            };
            (parts, bytes)
        },
    );
    let stream_base = arm(
        || {
            (
                typed_request(&stream_chat, streamed()),
                Vec::with_capacity(CHUNKS),
            )
        },
        |(req, out)| async { drain(call(&base_svc, req).await, out).await },
    );
    let stream = arm(
        || http_request(&stream_body, streamed()),
        |req| async {
            let resp = call(&svc, req).await;
            let (parts, body) = resp.into_parts();
            match body.collect().await {
                Ok(c) => (parts, c),
                Err(never) => match never {},
            }
        },
    );

    let (parts, bytes) = nonstream.once(rt);
    assert_eq!(parts.status, 200, "{}", String::from_utf8_lossy(&bytes));
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("the edge renders JSON");
    assert_eq!(v["object"], "chat.completion");
    let (parts, collected) = stream.once(rt);
    let text = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
    assert_eq!(parts.status, 200, "{text}");
    assert_eq!(text.matches("data: ").count(), CHUNKS + 1, "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));

    let mut g = bench.group("edge");
    g.baseline("identity", REQUEST, &base);
    g.versus(
        "nonstream_1k",
        REQUEST,
        ("identity", &base),
        &nonstream,
        None,
    );
    g.baseline("identity_stream200", REQUEST, &stream_base);
    g.versus(
        "stream200",
        REQUEST,
        ("identity_stream200", &stream_base),
        &stream,
        None,
    );
    g.finish();
}

fn main() {
    let rt = micro::runtime();
    let mut bench = Bench::new("codecs", &rt);
    for p in [openai(), anthropic(), gemini()] {
        provider_codec(&mut bench, &rt, &p);
    }
    edge(&mut bench, &rt);
    bench.finish();
}

/// The built-in codec of a provider kind.
fn codec(kind: ProviderKind) -> &'static dyn ProviderCodec {
    static PROVIDERS: std::sync::OnceLock<[Provider; 3]> = std::sync::OnceLock::new();
    let [o, a, g] = PROVIDERS.get_or_init(|| {
        [
            ProviderKind::Openai,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
        ]
        .map(|k| Provider::new(k.as_str(), k, "http://127.0.0.1:1"))
    });
    match kind {
        ProviderKind::Anthropic => a.codec(),
        ProviderKind::Gemini => g.codec(),
        _ => o.codec(),
    }
}
