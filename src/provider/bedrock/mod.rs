//! AWS Bedrock: the Converse API (`POST /model/{modelId}/converse`, `/converse-stream`) for
//! chat, `InvokeModel` (`/model/{modelId}/invoke`) for Titan and Cohere embeddings, every
//! request signed with SigV4 ([`SigV4Auth`], see [`sigv4`]).
//!
//! The base URL defaults to `https://bedrock-runtime.{region}.amazonaws.com`; a configured
//! `base_url` replaces it (VPC endpoints, tests). The model id (`anthropic.claude-…-v1:0`, an
//! inference profile `us.anthropic.…`, or an ARN) is percent-encoded as one path segment
//! (`:` → `%3A`, `/` → `%2F`), so no id reaches another path; the signature covers that path
//! encoded once more, as AWS requires.
//!
//! # Request mapping
//!
//! | OpenAI / OpenRouter field | Converse | how |
//! | --- | --- | --- |
//! | `system` / `developer` messages | `system[] {text}` | mapped; a `cache_control` part adds a `cachePoint` after it |
//! | `user` / `assistant` messages | `messages[] {role, content[]}` | mapped; consecutive messages of one role become one turn |
//! | `image_url` parts (base64 `data:` URLs) | `image {format, source {bytes}}` | mapped; `http(s)` URLs refused (400) |
//! | `file` parts (PDF `data:` URLs) | `document {format: pdf, name, source {bytes}}` | mapped |
//! | `tool` messages | `toolResult {toolUseId, content[{json}|{text}|{image}]}` | mapped, first in the user turn; text that is a JSON object goes as `json` |
//! | assistant `tool_calls` | `toolUse {toolUseId, name, input}` | mapped; arguments must be a JSON object |
//! | assistant `reasoning_details` | `reasoningContent {reasoningText {text, signature}}` / `{redactedContent}` | mapped: signed details restored first in the turn |
//! | `cache_control` on parts and tools | `cachePoint {type: default}` after the block | mapped |
//! | `max_tokens` / `max_completion_tokens`, `temperature`, `top_p`, `stop` | `inferenceConfig {maxTokens, temperature, topP, stopSequences}` | mapped; Claude's temperature clamped to `0..=1` |
//! | `tools`, `tool_choice` | `toolConfig {tools[{toolSpec {name, description, inputSchema {json}}}], toolChoice}` | mapped: `auto` → `auto`, `required` → `any`, named → `tool`; `none` sends no choice |
//! | `reasoning` / `reasoning_effort` (Claude) | `additionalModelRequestFields.thinking {type: enabled, budget_tokens}` | mapped as for Anthropic (budget, effort ratios of `maxTokens`); temperature dropped while thinking |
//! | `response_format` json, `n > 1`, `logprobs`, audio | — | refused (400, `unsupported_parameter`) |
//! | `top_k`, `seed`, penalties, `user`, unknown fields | — | dropped |
//!
//! # Answers
//!
//! `text` blocks become `content`, `toolUse` blocks `tool_calls`, `reasoningContent` blocks
//! `reasoning` plus `reasoning_details` (`reasoning.text` with the `signature`, or
//! `reasoning.encrypted` for `redactedContent`, format `anthropic-claude-v1`) that come back
//! on the next turn. `stopReason` `end_turn` / `stop_sequence` → `stop`, `tool_use` →
//! `tool_calls`, `max_tokens` / `model_context_window_exceeded` → `length`,
//! `guardrail_intervened` / `content_filtered` → `content_filter`. Usage: `prompt_tokens` =
//! `inputTokens` + `cacheReadInputTokens` + `cacheWriteInputTokens`, `cached_tokens` = cache
//! reads, `cache_write_tokens` = cache writes.
//!
//! Streams come in AWS's binary event-stream framing ([`StreamFraming::AwsEventStream`]),
//! decoded by [`eventstream`] with both CRCs checked and lengths bounded before buffering.
//!
//! # Errors
//!
//! The exception name comes from `x-amzn-errortype` or the body's `__type`:
//! `ThrottlingException` → 429, `ModelNotReadyException` / `ServiceUnavailableException` →
//! 503, `AccessDeniedException`, `UnrecognizedClientException` and signature failures → 502
//! (the gateway's own credentials), `ValidationException` → 400, `ResourceNotFoundException`
//! → 404, `ModelTimeoutException` → 504, others by their HTTP status. Exception events of a
//! stream end it with the same mapping.

mod config;
mod embeddings;
mod error;
pub mod eventstream;
mod request;
mod response;
pub mod sigv4;
mod stream;
#[cfg(test)]
mod tests;

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

pub(crate) use self::config::BedrockSettings;
pub use self::sigv4::{Credentials, CredentialsSource, SigV4Auth};
use super::{
    DecodeContext, EmbeddingsCodec, EncodeContext, ProviderCodec, StreamDecode, StreamFraming,
};
use crate::client::UpstreamBody;
use crate::openai::{ChatCompletion, ChatRequest};
use crate::Error;

/// The Bedrock Runtime codec (Converse, and InvokeModel for embeddings).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bedrock;

impl Bedrock {
    /// AWS's endpoint for `region`: `https://bedrock-runtime.{region}.amazonaws.com`.
    pub fn default_base_url(region: &str) -> String {
        format!("https://bedrock-runtime.{region}.amazonaws.com")
    }
}

/// `{base}/model/{percent-encoded model id}/{action}`.
pub(crate) fn model_url(base: &str, model: &str, action: &str) -> Result<http::Uri, Error> {
    if model.is_empty() || model.len() > 2048 {
        return Err(
            Error::invalid_request("the upstream model id is empty or too long")
                .with_param("model"),
        );
    }
    let mut s = String::with_capacity(base.len() + model.len() * 3 + 24);
    s.push_str(base.trim_end_matches('/'));
    s.push_str("/model/");
    sigv4::uri_encode(model, &mut s);
    s.push('/');
    s.push_str(action);
    s.parse().map_err(|e| {
        Error::upstream("provider base URL is invalid").with_source(Box::new(e) as crate::BoxError)
    })
}

fn json_request(
    uri: http::Uri,
    body: Vec<u8>,
    stream: bool,
) -> Result<http::Request<UpstreamBody>, Error> {
    let accept = if stream {
        "application/vnd.amazon.eventstream"
    } else {
        "application/json"
    };
    http::Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(ACCEPT, HeaderValue::from_static(accept))
        .body(UpstreamBody::from(body))
        .map_err(|_| Error::upstream("could not build the upstream request"))
}

impl ProviderCodec for Bedrock {
    fn encode(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        let body = request::body(req, ctx)?;
        let bytes = serde_json::to_vec(&body).map_err(|e| {
            Error::upstream("could not encode the upstream request")
                .with_source(Box::new(e) as crate::BoxError)
        })?;
        let stream = req.is_stream();
        let action = if stream {
            "converse-stream"
        } else {
            "converse"
        };
        json_request(
            model_url(&ctx.provider.base_url, ctx.upstream_model, action)?,
            bytes,
            stream,
        )
    }

    fn decode(&self, body: &[u8], ctx: &DecodeContext) -> Result<ChatCompletion, Error> {
        response::decode(body, ctx)
    }

    fn decode_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        error::decode_error(status, headers, body)
    }

    fn stream_decoder(&self, ctx: &DecodeContext) -> Box<dyn StreamDecode> {
        Box::new(stream::ConverseStream::new(ctx.clone()))
    }

    fn framing(&self) -> StreamFraming {
        StreamFraming::AwsEventStream
    }

    fn embeddings(&self) -> Option<&dyn EmbeddingsCodec> {
        Some(self)
    }
}
