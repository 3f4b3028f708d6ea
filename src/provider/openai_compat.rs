//! The OpenAI-compatible codec: OpenAI, OpenRouter, Groq, Together, Fireworks, vLLM, Ollama,
//! llama.cpp and anything else speaking `POST {base}/chat/completions`.
//!
//! The request is passed through: only `model` is replaced by the upstream name, OpenRouter's
//! routing fields (`models`, `route`, `provider`) are dropped (the gateway did the routing), and
//! streams always ask for `stream_options.include_usage` so cost can be metered (the edge hides
//! the usage chunk from clients that did not ask). `messages`, `tools` and unknown fields are
//! re-emitted byte for byte.
//!
//! A non-streaming answer is passed through too ([`RawCompletion`]): the body is scanned once,
//! `model`, `provider` and `usage` are replaced on the way out, everything else reaches the
//! client as the provider wrote it (so `native_finish_reason` is only there when the provider
//! sent it). Bodies the scan does not accept, and requests with `reasoning.exclude`, are
//! decoded into typed values instead, which gives the precise error for a bad body.
//!
//! # Reasoning text
//!
//! The canonical field is OpenRouter's `reasoning` (Groq's `reasoning_format: "parsed"` and
//! OpenRouter write it; it passes through as is). DeepSeek writes `reasoning_content`, and so
//! do xAI (grok-3-mini), vLLM and SGLang with a reasoning parser, and Together's DeepSeek-R1.
//! No provider uses that name for anything else, so it is accepted from every OpenAI-compatible
//! provider rather than per preset: in a whole answer's `message` and in a stream's `delta` it
//! becomes `reasoning`, unless `reasoning` is there too (vLLM ≥ 0.10 sends both with the same
//! text), when `reasoning` is kept and `reasoning_content` dropped. It is never sent to
//! clients under its own name. A whole answer naming it is not passed through
//! ([`RawCompletion`] declines it after one `memmem` search) but decoded typed, which renames
//! it; answers without it keep the pass-through. In streams, the chunk reader already visits
//! every delta member, so the rename costs nothing there.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::{
    error_for_status, DecodeContext, EmbeddingsCodec, EncodeContext, ProviderCodec, StreamDecode,
};
use super::{OpenAiDialect, Parameters, Provider};
use crate::client::UpstreamBody;
use crate::openai::sse::SseEvent;
use crate::openai::{
    finish_completion, write_openai_head, ChatCompletion, ChatCompletionChunk, ChatRequest,
    EmbeddingsRequest, EmbeddingsResponse, ErrorResponse, RawCompletion,
};
use crate::Error;

/// The OpenAI-compatible codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAiCompat;

impl ProviderCodec for OpenAiCompat {
    fn encode(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        let adapted = adapt(req, ctx.provider)?;
        let req = adapted.as_ref().unwrap_or(req);
        let body = openai_body(req, ctx.upstream_model, true, false);
        post(ctx.provider, "/chat/completions", body)
    }

    fn decode(&self, body: &[u8], ctx: &DecodeContext) -> Result<ChatCompletion, Error> {
        let mut c: ChatCompletion = match serde_json::from_slice(body) {
            Ok(c) => c,
            Err(e) => {
                // Some compatible servers answer 200 with an error object.
                if let Ok(err) = serde_json::from_slice::<ErrorResponse>(body) {
                    return Err(Error::upstream(format!(
                        "the provider failed: {}",
                        err.error.message
                    )));
                }
                return Err(
                    Error::upstream("the provider sent an invalid response body")
                        .with_source(Box::new(e) as crate::BoxError),
                );
            }
        };
        finish_completion(&mut c, &ctx.model, &ctx.provider);
        Ok(c)
    }

    fn passthrough(&self, body: &Bytes, ctx: &DecodeContext) -> Option<RawCompletion> {
        RawCompletion::parse(body.clone(), ctx.model.clone(), ctx.provider.clone())
    }

    fn decode_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        let (message, code) = match serde_json::from_slice::<ErrorResponse>(body) {
            Ok(e) => (
                Some(e.error.message),
                e.error.code.and_then(|c| match c {
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }),
            ),
            Err(_) => (None, None),
        };
        error_for_status(status, headers, message, code)
    }

    fn stream_decoder(&self, ctx: &DecodeContext) -> Box<dyn StreamDecode> {
        Box::new(OpenAiStream {
            ctx: ctx.clone(),
            done: false,
        })
    }

    fn embeddings(&self) -> Option<&dyn EmbeddingsCodec> {
        Some(self)
    }
}

impl EmbeddingsCodec for OpenAiCompat {
    fn encode_embeddings(
        &self,
        req: &EmbeddingsRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        let body = UpstreamBody::from(embeddings_body(req, ctx.upstream_model)?);
        post(ctx.provider, "/embeddings", body)
    }

    fn decode_embeddings(
        &self,
        body: &[u8],
        req: &EmbeddingsRequest,
        ctx: &DecodeContext,
    ) -> Result<EmbeddingsResponse, Error> {
        decode_embeddings(body, req, ctx)
    }
}

/// A JSON `POST` of `body` to `path` on `provider`, with its key as a bearer token.
fn post(
    provider: &Provider,
    path: &'static str,
    body: UpstreamBody,
) -> Result<http::Request<UpstreamBody>, Error> {
    let mut r = http::Request::new(body);
    *r.method_mut() = Method::POST;
    *r.uri_mut() = provider.endpoint(path)?;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(key) = &provider.api_key {
        h.insert(AUTHORIZATION, key.bearer_header_value()?);
    }
    Ok(r)
}

/// OpenAI's embeddings body for `model`: `input`, `dimensions`, `encoding_format` and `user`
/// as the client sent them (the gateway's routing fields are not sent).
pub(crate) fn embeddings_body(req: &EmbeddingsRequest, model: &str) -> Result<Vec<u8>, Error> {
    #[derive(serde::Serialize)]
    struct Wire<'a> {
        model: &'a str,
        input: &'a crate::openai::EmbeddingInput,
        #[serde(skip_serializing_if = "Option::is_none")]
        dimensions: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding_format: Option<crate::openai::EncodingFormat>,
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
    }
    serde_json::to_vec(&Wire {
        model,
        input: &req.input,
        dimensions: req.dimensions,
        encoding_format: req.encoding_format,
        user: req.user.as_deref(),
    })
    .map_err(|e| Error::upstream("could not encode the embeddings request").with_source(e))
}

/// An OpenAI-shaped embeddings answer, checked against the request, with the model id the
/// client knows and the provider name written in. Without `usage` the input is estimated.
pub(crate) fn decode_embeddings(
    body: &[u8],
    req: &EmbeddingsRequest,
    ctx: &DecodeContext,
) -> Result<EmbeddingsResponse, Error> {
    #[derive(serde::Deserialize)]
    struct Usage {
        #[serde(default)]
        prompt_tokens: Option<u64>,
    }
    #[derive(serde::Deserialize)]
    struct Wire {
        data: Vec<crate::openai::embeddings::Embedding>,
        #[serde(default)]
        usage: Option<Usage>,
    }
    let w: Wire = serde_json::from_slice(body).map_err(|e| {
        if let Ok(err) = serde_json::from_slice::<ErrorResponse>(body) {
            return Error::upstream(format!("the provider failed: {}", err.error.message));
        }
        Error::upstream("the provider sent an invalid embeddings body").with_source(e)
    })?;
    let tokens = w
        .usage
        .and_then(|u| u.prompt_tokens)
        .unwrap_or_else(|| req.input.estimated_tokens());
    super::embeddings::response(w.data, tokens, req, ctx)
}

/// Parameters that only tune sampling: when a provider does not take one it is dropped (the
/// answer is still the one asked for). Any other unsupported parameter (`n > 1`, `logprobs`,
/// `top_logprobs`, `stop`, `tools`, `tool_choice`, `response_format`, `max_tokens`) is
/// refused, since the answer could not be the one asked for.
pub const DROPPABLE: Parameters = Parameters::TEMPERATURE
    .union(Parameters::TOP_P)
    .union(Parameters::TOP_K)
    .union(Parameters::SEED)
    .union(Parameters::FREQUENCY_PENALTY)
    .union(Parameters::PRESENCE_PENALTY)
    .union(Parameters::LOGIT_BIAS)
    .union(Parameters::PARALLEL_TOOL_CALLS)
    .union(Parameters::REASONING)
    .union(Parameters::MIN_P)
    .union(Parameters::TOP_A)
    .union(Parameters::REPETITION_PENALTY);

/// The request as `provider` takes it, when that differs from `req`: parameters outside
/// [`Provider::parameters`] dropped ([`DROPPABLE`]) or refused (400 `unsupported_parameter`,
/// `param` naming the first), and the dialect's renames applied. `None` (no copy) when nothing
/// changes, which is always the case for a provider with neither a parameter list nor a
/// dialect.
fn adapt(req: &ChatRequest, provider: &Provider) -> Result<Option<ChatRequest>, Error> {
    let unsupported = match provider.parameters {
        Some(supported) => Parameters::used_by(req).difference(supported),
        None => Parameters::NONE,
    };
    let rename_seed = provider.dialect == OpenAiDialect::Mistral && req.seed.is_some();
    if unsupported.is_empty() && !rename_seed {
        return Ok(None);
    }
    if let Some(name) = unsupported.difference(DROPPABLE).names().next() {
        return Err(Error::invalid_request(format!(
            "`{name}` is not supported by provider `{}`",
            provider.name
        ))
        .with_code("unsupported_parameter")
        .with_param(name));
    }
    let mut r = req.clone();
    let drop = |p: Parameters| unsupported.contains(p);
    if drop(Parameters::TEMPERATURE) {
        r.temperature = None;
    }
    if drop(Parameters::TOP_P) {
        r.top_p = None;
    }
    if drop(Parameters::TOP_K) {
        r.top_k = None;
    }
    if drop(Parameters::SEED) {
        r.seed = None;
    }
    if drop(Parameters::FREQUENCY_PENALTY) {
        r.frequency_penalty = None;
    }
    if drop(Parameters::PRESENCE_PENALTY) {
        r.presence_penalty = None;
    }
    if drop(Parameters::PARALLEL_TOOL_CALLS) {
        r.parallel_tool_calls = None;
    }
    if drop(Parameters::REASONING) {
        r.reasoning = None;
        r.reasoning_effort = None;
    }
    r.extra.retain(|(k, _)| {
        !Parameters::parse(k).is_some_and(|p| DROPPABLE.contains(p) && unsupported.contains(p))
    });
    if provider.dialect == OpenAiDialect::Mistral {
        if let Some(seed) = r.seed.take() {
            let v = crate::openai::RawJson::from_json(itoa::Buffer::new().format(seed))?;
            r.extra.push(("random_seed".to_owned(), v));
        }
    }
    Ok(Some(r))
}

/// `messages` at least this long goes upstream as a slice of the client's body (a frame of
/// its own) rather than copied: below it, the copy costs less than the extra frame.
const SHARED_MESSAGES_MIN: usize = 4096;

/// [`ChatRequest::to_openai_json`] as an upstream request body. When `messages` is long (most
/// of a long conversation) it is sent as the slice of the client's body it was parsed from,
/// between the bytes before and after it, instead of being copied; a short one is copied into
/// a single buffer (cheaper than a frame of its own). The bytes sent are the same either way.
pub fn openai_body(
    req: &ChatRequest,
    model: &str,
    force_usage: bool,
    keep_routing: bool,
) -> UpstreamBody {
    if req.messages.as_bytes().len() < SHARED_MESSAGES_MIN {
        return UpstreamBody::new(req.to_openai_json(model, force_usage, keep_routing));
    }
    let mut head = Vec::with_capacity(model.len() + 24);
    write_openai_head(&mut head, model);
    let mut rest = Vec::with_capacity(256);
    req.write_openai_rest(&mut rest, force_usage, keep_routing);
    UpstreamBody::concat(head.into(), req.messages.to_bytes(), rest.into())
}

/// Stream state: OpenAI chunks are already canonical; this checks them, renames the model and
/// watches for the end. Chunks are read by `ChatCompletionChunk::from_json`, which decodes the
/// usual shape directly and anything else through serde_json (same values, same errors).
#[derive(Debug)]
struct OpenAiStream {
    ctx: DecodeContext,
    done: bool,
}

impl StreamDecode for OpenAiStream {
    fn event(&mut self, ev: SseEvent, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if self.done || data.is_empty() {
            return Ok(());
        }
        let mut chunk = ChatCompletionChunk::from_json(data).map_err(|e| {
            if let Ok(err) = serde_json::from_str::<ErrorResponse>(data) {
                return Error::upstream(format!(
                    "the provider failed mid-stream: {}",
                    err.error.message
                ));
            }
            Error::upstream("the provider sent a malformed stream event")
                .with_source(Box::new(e) as crate::BoxError)
        })?;
        if let Some(err) = chunk.error.take() {
            return Err(Error::upstream(format!(
                "the provider failed mid-stream: {}",
                err.message
            )));
        }
        chunk.model.clear();
        chunk.model.push_str(&self.ctx.model);
        for ch in &mut chunk.choices {
            if let Some(f) = ch.finish_reason {
                if ch.native_finish_reason.is_none() {
                    ch.native_finish_reason = Some(f.as_str().to_owned());
                }
            }
        }
        out.push(chunk);
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self, _out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        // Every OpenAI-compatible server we know ends with `data: [DONE]`; without it the
        // stream was cut (and the usage chunk that comes last is missing too).
        if self.done {
            Ok(())
        } else {
            Err(Error::upstream(
                "the provider's stream ended without `[DONE]` (it was cut short)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Provider, ProviderKind};
    use crate::openai::sse::SseDecoder;
    use crate::openai::FinishReason;
    use crate::ErrorKind;

    fn ctx() -> DecodeContext {
        DecodeContext {
            model: "openai/gpt-4o".into(),
            provider: "openai".into(),
        }
    }

    #[test]
    fn encodes_url_auth_and_body() {
        let p = Provider::new("openai", ProviderKind::Openai, "https://api.openai.com/v1/")
            .with_api_key("sk-test");
        let req = ChatRequest::from_slice(
            br#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"Hello!"}],"stream":true,"logit_bias":{"50256":-100}}"#,
        )
        .unwrap();
        let r = OpenAiCompat
            .encode(
                &req,
                &EncodeContext {
                    provider: &p,
                    upstream_model: "gpt-4o",
                    max_output: None,
                },
            )
            .unwrap();
        assert_eq!(r.uri(), "https://api.openai.com/v1/chat/completions");
        assert_eq!(r.headers()["authorization"], "Bearer sk-test");
        assert!(r.headers()["authorization"].is_sensitive());
        let v: serde_json::Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "Hello!"}],
                "stream": true,
                "stream_options": {"include_usage": true},
                "logit_bias": {"50256": -100}
            })
        );
    }

    #[tokio::test]
    async fn upstream_body_is_the_json_and_shares_long_messages() {
        use http_body::Body as _;
        use http_body_util::BodyExt;
        let turn = r#"{"role":"user","content":"The quick brown fox jumps over the lazy dog."}"#;
        for turns in [1, 200] {
            let messages = vec![turn; turns].join(",");
            let body = Bytes::from(format!(
                r#"{{"model":"a/b","messages":[{messages}],"stream":true,"tools":[{{"type":"function","function":{{"name":"f"}}}}],"x":1}}"#
            ));
            let r = ChatRequest::from_bytes(body.clone()).unwrap();
            let json = r.to_openai_json("b", true, false);
            let upstream = openai_body(&r, "b", true, false);
            assert_eq!(upstream.size_hint().exact(), Some(json.len() as u64));
            let mut frames = Vec::new();
            let mut upstream = std::pin::pin!(upstream);
            while let Some(f) = upstream.frame().await {
                frames.push(f.unwrap().into_data().unwrap());
            }
            assert_eq!(
                frames.concat(),
                json,
                "the same bytes, in one frame or three"
            );
            let long = r.messages.as_bytes().len() >= SHARED_MESSAGES_MIN;
            assert_eq!(long, turns > 1);
            if long {
                // The middle frame is the client's own `messages`, not a copy.
                let start = body.iter().position(|&c| c == b'[').unwrap();
                assert_eq!(frames.len(), 3);
                assert_eq!(frames[1].as_ptr(), body[start..].as_ptr());
            } else {
                assert_eq!(frames.len(), 1);
            }
        }
    }

    // From OpenAI's API reference (chat object example).
    const COMPLETION: &str = r#"{
      "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
      "object": "chat.completion",
      "created": 1741569952,
      "model": "gpt-4.1-2025-04-14",
      "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "Hello! How can I assist you today?", "refusal": null, "annotations": []},
        "logprobs": null,
        "finish_reason": "stop"
      }],
      "usage": {
        "prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
      },
      "service_tier": "default"
    }"#;

    #[test]
    fn decodes_documented_completion() {
        let c = OpenAiCompat.decode(COMPLETION.as_bytes(), &ctx()).unwrap();
        assert_eq!(c.model, "openai/gpt-4o");
        assert_eq!(
            c.choices[0].message.content.as_deref(),
            Some("Hello! How can I assist you today?")
        );
        assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(c.choices[0].native_finish_reason.as_deref(), Some("stop"));
        let u = c.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (19, 10, 29)
        );
    }

    #[test]
    fn decodes_tool_call_completion() {
        let body = r#"{"id":"chatcmpl-abc123","object":"chat.completion","created":1699896916,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_abc123","type":"function","function":{"name":"get_current_weather","arguments":"{\n\"location\": \"Boston, MA\"\n}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":82,"completion_tokens":17,"total_tokens":99,"completion_tokens_details":{"reasoning_tokens":0}}}"#;
        let c = OpenAiCompat.decode(body.as_bytes(), &ctx()).unwrap();
        let tc = &c.choices[0].message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(tc.function.name, "get_current_weather");
        assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
        let out = serde_json::to_value(&c).unwrap();
        assert!(out["choices"][0]["message"]["content"].is_null());
    }

    #[test]
    fn garbage_body_is_502() {
        let e = OpenAiCompat.decode(b"<html>oops", &ctx()).unwrap_err();
        assert_eq!(e.status(), 502);
    }

    #[test]
    fn maps_error_bodies() {
        let body = br#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let e = OpenAiCompat.decode_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), body);
        assert_eq!(e.kind(), ErrorKind::UpstreamInvalidRequest);
        assert_eq!(e.code(), Some("context_length_exceeded"));
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        let e = OpenAiCompat.decode_error(StatusCode::TOO_MANY_REQUESTS, &h, b"not json");
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(3)));
    }

    // Text stream with usage, as documented (stream_options.include_usage).
    const STREAM: &str = "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n\
data: [DONE]\n\n";

    // Parallel tool calls in a stream: two calls with their own indices.
    const TOOL_STREAM: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"city\\\":\\\"Rome\\\"}\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n\
data: [DONE]\n\n";

    fn decode_all(input: &[u8], splits: &[usize]) -> Result<Vec<ChatCompletionChunk>, Error> {
        let mut sse = SseDecoder::new();
        let mut dec = OpenAiCompat.stream_decoder(&ctx());
        let mut out = Vec::new();
        let mut last = 0;
        for &s in splits.iter().chain(std::iter::once(&input.len())) {
            let s = s.clamp(last, input.len());
            sse.push(&input[last..s]);
            last = s;
            while let Some(ev) = sse.next_event()? {
                dec.event(ev, &mut out)?;
            }
        }
        dec.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_text_stream_with_usage() {
        let chunks = decode_all(STREAM.as_bytes(), &[]).unwrap();
        assert_eq!(chunks.len(), 4);
        assert!(!chunks[0].has_output());
        assert!(chunks[1].has_output());
        assert_eq!(chunks[1].choices[0].delta.content.as_deref(), Some("Hello"));
        assert_eq!(chunks[2].choices[0].finish_reason, Some(FinishReason::Stop));
        assert!(chunks[3].is_usage_only());
        assert_eq!(chunks[3].usage.as_ref().unwrap().total_tokens, 11);
        assert!(chunks.iter().all(|c| c.model == "openai/gpt-4o"));
    }

    #[test]
    fn decodes_parallel_tool_calls() {
        let chunks = decode_all(TOOL_STREAM.as_bytes(), &[]).unwrap();
        let calls: Vec<_> = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .filter_map(|c| c.delta.tool_calls.as_ref())
            .flatten()
            .collect();
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[0].id.as_deref(), Some("call_a"));
        assert_eq!(calls[2].index, 1);
        assert_eq!(
            calls[3].function.as_ref().unwrap().arguments.as_deref(),
            Some("{\"city\":\"Rome\"}")
        );
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let cut = &STREAM.as_bytes()[..STREAM.find("data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{},").unwrap()];
        assert!(decode_all(cut, &[]).is_err());
    }

    #[test]
    fn mid_stream_error_event_is_an_error() {
        let s = "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n";
        let e = decode_all(s.as_bytes(), &[]).unwrap_err();
        assert!(e.message().contains("boom"));
    }

    // DeepSeek's documented shape (deepseek-reasoner): the reasoning text in
    // `message.reasoning_content`, beside `content`.
    const DEEPSEEK: &str = r#"{"id":"d1","object":"chat.completion","created":1,"model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant","content":"9.11 < 9.8","reasoning_content":"Compare the tenths: 1 < 8."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,"completion_tokens_details":{"reasoning_tokens":20}}}"#;

    /// What a client of chat completions receives for `body`: the pass-through's bytes when
    /// it takes the body, else the typed decode's.
    fn client_json(body: &str) -> (bool, serde_json::Value) {
        let bytes = Bytes::copy_from_slice(body.as_bytes());
        match OpenAiCompat.passthrough(&bytes, &ctx()) {
            Some(raw) => (true, serde_json::from_slice(&raw.to_bytes()).unwrap()),
            None => {
                let c = OpenAiCompat.decode(body.as_bytes(), &ctx()).unwrap();
                (false, serde_json::to_value(&c).unwrap())
            }
        }
    }

    #[test]
    fn reasoning_content_becomes_reasoning() {
        let c = OpenAiCompat.decode(DEEPSEEK.as_bytes(), &ctx()).unwrap();
        let m = &c.choices[0].message;
        assert_eq!(m.reasoning.as_deref(), Some("Compare the tenths: 1 < 8."));
        assert_eq!(m.content.as_deref(), Some("9.11 < 9.8"));
        // The pass-through declines the body; the typed decode renames the field.
        let (passed, out) = client_json(DEEPSEEK);
        assert!(!passed);
        let msg = &out["choices"][0]["message"];
        assert_eq!(msg["reasoning"], "Compare the tenths: 1 < 8.");
        assert!(msg.get("reasoning_content").is_none(), "{msg}");
        assert_eq!(
            out["usage"]["completion_tokens_details"]["reasoning_tokens"],
            20
        );
        assert_eq!(out["model"], "openai/gpt-4o");
    }

    #[test]
    fn reasoning_wins_over_reasoning_content_and_is_not_duplicated() {
        // vLLM ≥ 0.10 sends both names with the same text.
        let body = DEEPSEEK.replace(
            r#""reasoning_content":"Compare the tenths: 1 < 8.""#,
            r#""reasoning":"R","reasoning_content":"RC""#,
        );
        let (passed, out) = client_json(&body);
        assert!(!passed);
        let msg = &out["choices"][0]["message"];
        assert_eq!(msg["reasoning"], "R");
        assert!(msg.get("reasoning_content").is_none());
        // `reasoning` alone (OpenRouter, Groq) stays on the pass-through, as the provider
        // wrote it.
        let body = DEEPSEEK.replace("reasoning_content", "reasoning");
        let (passed, out) = client_json(&body);
        assert!(passed);
        assert_eq!(
            out["choices"][0]["message"]["reasoning"],
            "Compare the tenths: 1 < 8."
        );
        // A mention in the text is not a member: the answer is the same either way.
        let body = DEEPSEEK.replace("reasoning_content", "reasoning").replace(
            r#""content":"9.11 < 9.8""#,
            r#""content":"the \"reasoning_content\" field""#,
        );
        let (passed, out) = client_json(&body);
        assert!(passed, "an escaped quote does not match");
        assert_eq!(
            out["choices"][0]["message"]["content"],
            "the \"reasoning_content\" field"
        );
    }

    #[test]
    fn reasoning_content_deltas_become_reasoning() {
        let s = "data: {\"id\":\"d\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"deepseek-reasoner\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"reasoning_content\":\"Think\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"d\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"deepseek-reasoner\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"R\",\"reasoning_content\":\"RC\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"d\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"deepseek-reasoner\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"A\\u00e9\",\"reasoning\":null},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"d\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"deepseek-reasoner\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Done\",\"reasoning_content\":null},\"finish_reason\":\"stop\"}]}\n\n\
data: [DONE]\n\n";
        let chunks = decode_all(s.as_bytes(), &[]).unwrap();
        let reasoning: Vec<_> = chunks
            .iter()
            .map(|c| c.choices[0].delta.reasoning.as_deref())
            .collect();
        assert_eq!(reasoning, [Some("Think"), Some("R"), Some("A\u{e9}"), None]);
        assert!(chunks[0].has_output());
        // Re-encoded for the client: `reasoning`, never `reasoning_content`.
        for c in &chunks {
            let mut out = Vec::new();
            c.write_json(&mut out);
            assert!(!String::from_utf8(out)
                .unwrap()
                .contains("reasoning_content"));
        }
        // The serde path (what the fast reader falls back to) agrees.
        for line in s.lines().filter_map(|l| l.strip_prefix("data: {")) {
            let json = format!("{{{line}");
            let fast = ChatCompletionChunk::from_json(&json).unwrap();
            let slow: ChatCompletionChunk = serde_json::from_str(&json).unwrap();
            assert_eq!(fast, slow, "{json}");
        }
    }

    fn encode_for(p: &Provider, body: &str) -> Result<serde_json::Value, Error> {
        let req = ChatRequest::from_slice(body.as_bytes()).unwrap();
        let r = OpenAiCompat.encode(
            &req,
            &EncodeContext {
                provider: p,
                upstream_model: "m",
                max_output: None,
            },
        )?;
        Ok(serde_json::from_slice(&r.body().to_bytes()).unwrap())
    }

    #[test]
    fn unsupported_parameters_are_dropped_or_refused_per_the_provider_list() {
        use crate::ErrorKind;
        // Groq's list (examples/gateway.toml): no logprobs, top_logprobs, logit_bias, n.
        let groq = Provider::new(
            "groq",
            ProviderKind::Openai,
            "https://api.groq.com/openai/v1",
        )
        .with_parameters(
            Parameters::from_names([
                "max_tokens",
                "temperature",
                "top_p",
                "stop",
                "seed",
                "tools",
                "tool_choice",
            ])
            .unwrap(),
        );
        let v = encode_for(
            &groq,
            r#"{"model":"g/m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"logit_bias":{"1":2},"min_p":0.1,"presence_penalty":1,"x":1}"#,
        )
        .unwrap();
        assert_eq!(v["temperature"], 0.2);
        assert_eq!(v["x"], 1, "fields switchboard does not know still pass");
        for dropped in ["logit_bias", "min_p", "presence_penalty"] {
            assert!(v.get(dropped).is_none(), "{dropped}: {v}");
        }
        for (body, param) in [
            (
                r#"{"model":"g/m","messages":[{"role":"user","content":"hi"}],"logprobs":true}"#,
                "logprobs",
            ),
            (
                r#"{"model":"g/m","messages":[{"role":"user","content":"hi"}],"top_logprobs":2}"#,
                "top_logprobs",
            ),
            (
                r#"{"model":"g/m","messages":[{"role":"user","content":"hi"}],"n":2}"#,
                "n",
            ),
        ] {
            let e = encode_for(&groq, body).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{body}");
            assert_eq!(e.status(), 400);
            assert_eq!(e.code(), Some("unsupported_parameter"));
            assert_eq!(e.param(), Some(param));
        }
        // `n: 1` and `logprobs: false` ask for nothing unsupported: sent as they are.
        let v = encode_for(
            &groq,
            r#"{"model":"g/m","messages":[{"role":"user","content":"hi"}],"n":1,"logprobs":false}"#,
        )
        .unwrap();
        assert_eq!(
            (v["n"].clone(), v["logprobs"].clone()),
            (1.into(), false.into())
        );
        // Without a list nothing is touched.
        let open = Provider::new("o", ProviderKind::Openai, "http://x/v1");
        let body = r#"{"model":"g/m","messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":2},"n":3,"logprobs":true}"#;
        let v = encode_for(&open, body).unwrap();
        assert_eq!(
            (v["n"].clone(), v["logit_bias"]["1"].clone()),
            (3.into(), 2.into())
        );
    }

    #[test]
    fn mistral_dialect_sends_seed_as_random_seed() {
        let mistral = Provider::new("mistral", ProviderKind::Openai, "https://api.mistral.ai/v1")
            .with_dialect(OpenAiDialect::Mistral);
        let v = encode_for(
            &mistral,
            r#"{"model":"m/m","messages":[{"role":"user","content":"hi"}],"seed":-42}"#,
        )
        .unwrap();
        assert_eq!(v["random_seed"], -42);
        assert!(v.get("seed").is_none(), "{v}");
        let v = encode_for(
            &mistral,
            r#"{"model":"m/m","messages":[{"role":"user","content":"hi"}],"temperature":1}"#,
        )
        .unwrap();
        assert!(v.get("random_seed").is_none());
        let openai = Provider::new("o", ProviderKind::Openai, "http://x/v1");
        let v = encode_for(
            &openai,
            r#"{"model":"m/m","messages":[{"role":"user","content":"hi"}],"seed":7}"#,
        )
        .unwrap();
        assert_eq!(v["seed"], 7);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        #[test]
        fn any_split_decodes_identically(mut splits in proptest::collection::vec(0usize..TOOL_STREAM.len(), 0..10)) {
            splits.sort_unstable();
            proptest::prop_assert_eq!(
                decode_all(TOOL_STREAM.as_bytes(), &splits).unwrap(),
                decode_all(TOOL_STREAM.as_bytes(), &[]).unwrap()
            );
        }
    }
}
