//! The Azure OpenAI codec: OpenAI's chat completions and embeddings under an Azure resource
//! endpoint (`https://{resource}.openai.azure.com`).
//!
//! # URLs
//! The provider's `base_url` is the resource endpoint (a trailing `/openai` or `/openai/v1`
//! is ignored). The catalog's upstream model name is the **deployment** name.
//!
//! | `api_version` | chat URL | embeddings URL |
//! | --- | --- | --- |
//! | a dated version, e.g. `2024-10-21` | `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…` | `…/deployments/{deployment}/embeddings?api-version=…` |
//! | none, or `v1` | `{endpoint}/openai/v1/chat/completions` (deployment in `model`) | `{endpoint}/openai/v1/embeddings` |
//!
//! # Auth
//! The key goes in the `api-key` header, or, with [`Azure::bearer_auth`] (TOML
//! `auth = "bearer"`), as `Authorization: Bearer <token>` (a Microsoft Entra ID token).
//!
//! # Content filtering
//! - A filtered prompt: Azure answers 400 with `error.code: "content_filter"` (and
//!   `innererror.code: "ResponsibleAIPolicyViolation"`): the client's 400 with
//!   `error.code: "content_filter"`, never retried on another provider (another provider
//!   would be asked to produce what this one refused, and the client must know).
//! - A filtered answer: `finish_reason: "content_filter"`, passed through as it is.
//! - Azure's annotation-only stream chunks (empty `id`, no `choices`, `prompt_filter_results`)
//!   are not passed to the client; `content_filter_results` inside choices and
//!   `prompt_filter_results` of a whole answer are passed through.
//!
//! # Errors
//! Azure's error bodies (`{"error": {"code", "message", "innererror"}}`, with `code` a string
//! such as `DeploymentNotFound` or a status like `"429"`, and API Management's
//! `{"statusCode", "message"}`) go through the crate's one status table
//! ([`error_for_status`]): 401/403 (the gateway's own key) → 502, 404 → 404, 429 → 429 with
//! `Retry-After`, 5xx → 502/503.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;

use super::openai_compat::{decode_embeddings, embeddings_body, openai_body, OpenAiCompat};
use super::{
    error_for_status, join_url, DecodeContext, EmbeddingsCodec, EncodeContext, ProviderCodec,
    StreamDecode,
};
use crate::client::UpstreamBody;
use crate::openai::sse::SseEvent;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, EmbeddingsRequest, EmbeddingsResponse,
    RawCompletion,
};
use crate::Error;

/// The Azure OpenAI codec; see the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct Azure {
    api_version: Option<Arc<str>>,
    bearer: bool,
}

impl Azure {
    /// The v1 API (`/openai/v1/…`) with the `api-key` header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls deployments with this `api-version` (`v1`, or an empty string: the v1 API).
    #[must_use]
    pub fn api_version(mut self, version: impl Into<Arc<str>>) -> Self {
        let v: Arc<str> = version.into();
        self.api_version = (!v.is_empty() && &*v != "v1").then_some(v);
        self
    }

    /// Sends the key as `Authorization: Bearer` (a Microsoft Entra ID token) instead of
    /// `api-key`.
    #[must_use]
    pub fn bearer_auth(mut self) -> Self {
        self.bearer = true;
        self
    }

    /// The URL of `op` (`chat/completions`, `embeddings`) for `deployment`.
    fn url(&self, ctx: &EncodeContext<'_>, op: &str) -> Result<(http::Uri, bool), Error> {
        let base = ctx.provider.base_url.trim_end_matches('/');
        let base = base
            .strip_suffix("/openai/v1")
            .or_else(|| base.strip_suffix("/openai"))
            .unwrap_or(base);
        match &self.api_version {
            Some(v) => {
                let d = ctx.upstream_model;
                let ok = |s: &str| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
                };
                if !ok(d) || d == "." || d == ".." {
                    return Err(Error::invalid_request(
                        "an Azure deployment name is ASCII letters, digits, `.`, `_` and `-`",
                    )
                    .with_param("model"));
                }
                if !ok(v) {
                    return Err(Error::upstream("the Azure api_version is not valid"));
                }
                let path = format!("/openai/deployments/{d}/{op}?api-version={v}");
                Ok((join_url(base, &path)?, true))
            }
            None => Ok((join_url(base, &format!("/openai/v1/{op}"))?, false)),
        }
    }

    /// A JSON `POST` of `body` to `uri`, with the key in the header the endpoint expects.
    fn post(
        &self,
        uri: http::Uri,
        body: UpstreamBody,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        let mut r = http::Request::new(body);
        *r.method_mut() = Method::POST;
        *r.uri_mut() = uri;
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &ctx.provider.api_key {
            if self.bearer {
                h.insert(AUTHORIZATION, key.bearer_header_value()?);
            } else {
                h.insert("api-key", key.header_value()?);
            }
        }
        Ok(r)
    }
}

impl ProviderCodec for Azure {
    fn encode(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        let (uri, _) = self.url(ctx, "chat/completions")?;
        self.post(uri, openai_body(req, ctx.upstream_model, true, false), ctx)
    }

    fn decode(&self, body: &[u8], ctx: &DecodeContext) -> Result<ChatCompletion, Error> {
        OpenAiCompat.decode(body, ctx)
    }

    fn passthrough(&self, body: &Bytes, ctx: &DecodeContext) -> Option<RawCompletion> {
        OpenAiCompat.passthrough(body, ctx)
    }

    fn decode_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        azure_error(status, headers, body)
    }

    fn stream_decoder(&self, ctx: &DecodeContext) -> Box<dyn StreamDecode> {
        Box::new(AzureStream {
            inner: OpenAiCompat.stream_decoder(ctx),
        })
    }

    fn embeddings(&self) -> Option<&dyn EmbeddingsCodec> {
        Some(self)
    }
}

impl EmbeddingsCodec for Azure {
    fn encode_embeddings(
        &self,
        req: &EmbeddingsRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        let (uri, _) = self.url(ctx, "embeddings")?;
        let body = UpstreamBody::from(embeddings_body(req, ctx.upstream_model)?);
        self.post(uri, body, ctx)
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

#[derive(Deserialize)]
struct ErrorFile {
    error: Option<ErrorObject>,
    /// API Management's shape: `{"statusCode": 401, "message": "…"}`.
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorObject {
    message: Option<String>,
    code: Option<serde_json::Value>,
    innererror: Option<InnerError>,
}

#[derive(Deserialize)]
struct InnerError {
    code: Option<String>,
}

/// Azure's error bodies through the crate's status table; a content-filtered prompt keeps
/// `code: "content_filter"`.
pub(crate) fn azure_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let Ok(file) = serde_json::from_slice::<ErrorFile>(body) else {
        return error_for_status(status, headers, None, None);
    };
    let Some(e) = file.error else {
        return error_for_status(status, headers, file.message, None);
    };
    let code = match e.code {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let inner = e.innererror.and_then(|i| i.code);
    let filtered = code.as_deref() == Some("content_filter")
        || inner.as_deref() == Some("ResponsibleAIPolicyViolation");
    let code = if filtered {
        Some("content_filter".to_owned())
    } else {
        // Azure's numeric codes repeat the status: not a code worth passing on.
        code.filter(|c| !c.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut err = error_for_status(status, headers, e.message, code);
    if filtered && err.kind() == crate::ErrorKind::UpstreamInvalidRequest {
        err = err.with_param("prompt");
    }
    err
}

/// Azure's stream: OpenAI's chunks, without the annotation-only ones.
#[derive(Debug)]
struct AzureStream {
    inner: Box<dyn StreamDecode>,
}

impl StreamDecode for AzureStream {
    fn event(&mut self, ev: SseEvent, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        let from = out.len();
        self.inner.event(ev, out)?;
        let mut i = from;
        while i < out.len() {
            let c = &out[i];
            // `prompt_filter_results` (and nothing else): an empty id and no choices.
            if c.id.is_empty() && c.choices.is_empty() && c.usage.is_none() {
                out.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.inner.is_done()
    }

    fn finish(&mut self, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        self.inner.finish(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Provider, ProviderKind};
    use crate::openai::sse::SseDecoder;
    use crate::openai::FinishReason;
    use crate::ErrorKind;

    fn provider(base: &str) -> Provider {
        Provider::new("azure", ProviderKind::Azure, base).with_api_key("az-key")
    }

    fn ctx() -> DecodeContext {
        DecodeContext {
            model: "azure/gpt-4o".into(),
            provider: "azure".into(),
        }
    }

    fn encode(codec: &Azure, base: &str) -> http::Request<UpstreamBody> {
        let p = provider(base);
        let req = ChatRequest::from_slice(
            br#"{"model":"azure/gpt-4o","messages":[{"role":"user","content":"Hi"}]}"#,
        )
        .unwrap();
        codec
            .encode(
                &req,
                &EncodeContext {
                    provider: &p,
                    upstream_model: "my-gpt4o",
                    max_output: None,
                },
            )
            .unwrap()
    }

    #[test]
    fn deployment_and_v1_urls() {
        let dated = Azure::new().api_version("2024-10-21");
        let r = encode(&dated, "https://res.openai.azure.com/");
        assert_eq!(
            r.uri(),
            "https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(r.headers()["api-key"], "az-key");
        assert!(r.headers()["api-key"].is_sensitive());
        assert!(r.headers().get("authorization").is_none());
        for base in [
            "https://res.openai.azure.com",
            "https://res.openai.azure.com/openai/v1",
            "https://res.openai.azure.com/openai/",
        ] {
            let r = encode(&Azure::new().api_version("v1"), base);
            assert_eq!(
                r.uri(),
                "https://res.openai.azure.com/openai/v1/chat/completions"
            );
            let v: serde_json::Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
            assert_eq!(v["model"], "my-gpt4o");
        }
        let r = encode(&Azure::new().bearer_auth(), "https://res.openai.azure.com");
        assert_eq!(r.headers()["authorization"], "Bearer az-key");
        assert!(r.headers().get("api-key").is_none());
    }

    #[test]
    fn unsafe_deployment_names_are_refused() {
        let p = provider("https://res.openai.azure.com");
        let req = ChatRequest::from_slice(
            br#"{"model":"x","messages":[{"role":"user","content":"Hi"}]}"#,
        )
        .unwrap();
        for d in ["a/b", "..", "a?b", "", "a b"] {
            let e = Azure::new()
                .api_version("2024-10-21")
                .encode(
                    &req,
                    &EncodeContext {
                        provider: &p,
                        upstream_model: d,
                        max_output: None,
                    },
                )
                .unwrap_err();
            assert_eq!(e.status(), 400, "{d}");
        }
    }

    #[test]
    fn content_filter_errors_are_the_clients_400() {
        let body = br#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#;
        let e = Azure::new().decode_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), body);
        assert_eq!(e.status(), 400);
        assert_eq!(e.code(), Some("content_filter"));
        assert!(!e.is_retryable());
        // Only the inner code.
        let body = br#"{"error":{"message":"filtered","code":"BadRequest","innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#;
        let e = Azure::new().decode_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), body);
        assert_eq!(e.code(), Some("content_filter"));
    }

    #[test]
    fn azure_error_shapes_follow_the_status_table() {
        let h = HeaderMap::new();
        let az = Azure::new();
        let e = az.decode_error(StatusCode::UNAUTHORIZED, &h, br#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint."}}"#);
        assert_eq!((e.kind(), e.status().as_u16()), (ErrorKind::Upstream, 502));
        let e = az.decode_error(StatusCode::UNAUTHORIZED, &h, br#"{"statusCode":401,"message":"Unauthorized. Access token is missing, invalid, audience is incorrect, or have expired."}"#);
        assert_eq!(e.status(), 502);
        let e = az.decode_error(StatusCode::NOT_FOUND, &h, br#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#);
        assert_eq!(e.status(), 404);
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        let e = az.decode_error(StatusCode::TOO_MANY_REQUESTS, &h, br#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation have exceeded token rate limit."}}"#);
        assert_eq!(e.status(), 429);
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(7)));
        let e = az.decode_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), br#"{"error":{"code":"context_length_exceeded","message":"This model's maximum context length is 128000 tokens."}}"#);
        assert_eq!(e.code(), Some("context_length_exceeded"));
    }

    const ANSWER: &str = r#"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"finish_reason":"content_filter","index":0,"logprobs":null,"message":{"content":null,"refusal":null,"role":"assistant"}}],"created":1727710000,"id":"chatcmpl-az1","model":"gpt-4o-2024-08-06","object":"chat.completion","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}],"system_fingerprint":"fp_1","usage":{"completion_tokens":0,"prompt_tokens":9,"total_tokens":9}}"#;

    #[test]
    fn filtered_answers_end_with_content_filter() {
        let c = Azure::new().decode(ANSWER.as_bytes(), &ctx()).unwrap();
        assert_eq!(
            c.choices[0].finish_reason,
            Some(FinishReason::ContentFilter)
        );
        assert_eq!(c.model, "azure/gpt-4o");
        let raw = Azure::new()
            .passthrough(&Bytes::from_static(ANSWER.as_bytes()), &ctx())
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw.to_bytes()).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(v["model"], "azure/gpt-4o");
    }

    #[test]
    fn annotation_chunks_are_dropped() {
        let stream = concat!(
            "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}}}]}\n\n",
            "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"content\":\"\",\"refusal\":null,\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1,\"id\":\"chatcmpl-az\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp\"}\n\n",
            "data: {\"choices\":[{\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}},\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1,\"id\":\"chatcmpl-az\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\"}\n\n",
            "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{},\"finish_reason\":\"content_filter\",\"index\":0,\"logprobs\":null}],\"created\":1,\"id\":\"chatcmpl-az\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\"}\n\n",
            "data: {\"choices\":[],\"created\":1,\"id\":\"chatcmpl-az\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":1,\"prompt_tokens\":9,\"total_tokens\":10}}\n\n",
            "data: [DONE]\n\n",
        );
        let mut dec = SseDecoder::new();
        let mut s = Azure::new().stream_decoder(&ctx());
        let mut out = Vec::new();
        dec.push(stream.as_bytes());
        while let Some(ev) = dec.next_event().unwrap() {
            s.event(ev, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(out.iter().all(|c| c.id == "chatcmpl-az"));
        assert_eq!(
            out[2].choices[0].finish_reason,
            Some(FinishReason::ContentFilter)
        );
        assert_eq!(out[3].usage.as_ref().unwrap().prompt_tokens, 9);
    }
}
