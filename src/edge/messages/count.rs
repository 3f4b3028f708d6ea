//! `POST /v1/messages/count_tokens`; see [`CountTokens`].

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method};
use http_body::Body;
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;
use tower_service::Service;

use super::{error_response, json_response, read_and_parse, MessagesEdge};
use crate::chat::{ChatHttpRequest, ChatHttpResponse, ChatResponse};
use crate::client::{HttpClient, UpstreamBody};
use crate::edge::service::{request_id, Edge};
use crate::edge::{EdgeBody, EdgeConfig};
use crate::ext::{Candidate, NativeRequest, Route};
use crate::keys::ClientKeysLayer;
use crate::provider::ProviderKind;
use crate::{BoxError, Error};

/// The most bytes of a provider's count answer that are read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The typed stack that only resolves: ClientKeys (when set) and ModelResolve over a service
/// that hands the [`Route`] back.
pub(crate) type Resolver = BoxCloneSyncService<ChatHttpRequest, ChatHttpResponse, Error>;

/// `POST /v1/messages/count_tokens`: the input tokens of a Messages request, without running
/// a generation.
///
/// The body is read, limited and converted as for `/v1/messages`; the model is resolved by the
/// gateway's own ModelResolve (behind the ClientKeys policy when keys are configured), and the
/// first candidate decides how tokens are counted:
///
/// | target | count |
/// | --- | --- |
/// | Anthropic | the provider's `POST /v1/messages/count_tokens` with the client's body (`model` replaced, the generation-only fields `max_tokens`, `stream`, sampling, `stop_sequences`, `metadata`, `service_tier` removed), version and beta headers |
/// | OpenAI-compatible | OpenAI's tokenizer for the model's family (`tiktoken-rs`, `o200k_base` / `cl100k_base`) over the converted request, with OpenAI's chat framing; images count 85 tokens each |
/// | Gemini | the provider's `models/{m}:countTokens` with the request the Gemini codec would send, as `generateContentRequest` |
/// | any other kind | an estimate from the request's text (4 bytes a token, plus 4 a message); the answer carries `x-switchboard-token-count: estimate` |
///
/// Answers `{"input_tokens": n}`; errors in Anthropic's shape.
#[derive(Clone)]
pub struct CountTokens {
    resolver: Resolver,
    client: HttpClient,
    config: EdgeConfig,
    keys: Option<ClientKeysLayer>,
}

impl std::fmt::Debug for CountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountTokens").finish_non_exhaustive()
    }
}

/// The inner end of the resolver: answers with the route ModelResolve wrote.
pub(crate) fn route_capture() -> impl Service<
    ChatHttpRequest,
    Response = ChatHttpResponse,
    Error = Error,
    Future = std::future::Ready<Result<ChatHttpResponse, Error>>,
> + Clone
       + Send
       + Sync
       + 'static {
    tower::service_fn(|req: ChatHttpRequest| {
        let route = req.extensions().get::<Route>().cloned();
        std::future::ready(match route {
            Some(route) => {
                let mut resp =
                    http::Response::new(ChatResponse::stream(futures_util::stream::empty()));
                resp.extensions_mut().insert(route);
                Ok(resp)
            }
            None => Err(Error::upstream("the model could not be resolved")),
        })
    })
}

impl CountTokens {
    /// A count-tokens edge over a resolving stack (see [`Gateway::count_tokens`](crate::Gateway::count_tokens)).
    pub(crate) fn new(resolver: Resolver, client: HttpClient, edge: super::MessagesLayer) -> Self {
        Self {
            resolver,
            client,
            config: edge.settings.config,
            keys: edge.settings.keys,
        }
    }
}

impl<B> Service<http::Request<B>> for CountTokens
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<EdgeBody>;
    type Error = Infallible;
    type Future = crate::edge::future::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let presented =
            match MessagesEdge::authenticate(self.keys.as_ref(), &super::RefusedLog::OFF, &req) {
                Ok(p) => p,
                Err(resp) => return crate::edge::future::ResponseFuture::ready(*resp),
            };
        let this = self.clone();
        crate::edge::future::ResponseFuture::new(Box::pin(async move {
            let id = request_id(req.headers());
            let mut resp = match this.count(req, presented).await {
                Ok(resp) => resp,
                Err(e) => error_response(&e),
            };
            MessagesEdge::stamp_id(resp.headers_mut(), id);
            Ok(resp)
        }))
    }
}

impl CountTokens {
    async fn count<B>(
        self,
        req: http::Request<B>,
        presented: Option<crate::keys::PresentedKey>,
    ) -> Result<http::Response<EdgeBody>, Error>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if req.method() != Method::POST {
            return Ok(super::method_not_allowed());
        }
        let (mut parts, body) = req.into_parts();
        let (bytes, parsed) = read_and_parse(&parts.headers, body, self.config, true).await?;
        let estimate = parsed.chat.summary.estimated_tokens();
        let only_native = parsed.native_only;
        let mut typed = http::Request::new(std::sync::Arc::new(parsed.chat));
        *typed.headers_mut() = std::mem::take(&mut parts.headers);
        *typed.extensions_mut() = std::mem::take(&mut parts.extensions);
        if let Some(p) = presented {
            typed.extensions_mut().insert(p);
        }
        let headers = typed.headers().clone();
        let typed_chat = typed.body().clone();
        let resp = self.resolver.oneshot(typed).await?;
        let candidate = resp
            .extensions()
            .get::<Route>()
            .and_then(|r| r.candidates.first().cloned())
            .ok_or_else(|| Error::upstream("no provider serves this model"))?;
        if candidate.provider.kind == ProviderKind::Anthropic {
            let mut native = NativeRequest {
                format: crate::ext::NativeFormat::AnthropicMessages,
                body: bytes,
                headers: http::HeaderMap::new(),
                only_native: None,
            };
            for name in super::FORWARDED {
                for v in headers.get_all(name) {
                    native.headers.append(name, v.clone());
                }
            }
            let n = upstream_count(&self.client, &candidate, &native).await?;
            return Ok(answer(n, false));
        }
        if let Some(e) = only_native {
            // Another provider would count a request without those parts.
            return Err(e);
        }
        if candidate.provider.kind == ProviderKind::Gemini {
            let n = gemini_count(&self.client, &candidate, &typed_chat).await?;
            return Ok(answer(n, false));
        }
        if matches!(
            candidate.provider.kind,
            ProviderKind::Openai | ProviderKind::Azure
        ) {
            let chat = typed_chat;
            let model = candidate.upstream_model.clone();
            let n = tokio::task::spawn_blocking(move || super::tokens::count(&chat, &model))
                .await
                .map_err(|_| Error::upstream("the token count failed"))??;
            return Ok(answer(n, false));
        }
        Ok(answer(estimate, true))
    }
}

fn answer(n: u64, estimate: bool) -> http::Response<EdgeBody> {
    let mut r = json_response(&serde_json::json!({ "input_tokens": n }));
    if estimate {
        r.headers_mut().insert(
            "x-switchboard-token-count",
            HeaderValue::from_static("estimate"),
        );
    }
    r
}

/// Anthropic's own count for the client's body.
async fn upstream_count(
    client: &HttpClient,
    candidate: &Candidate,
    native: &NativeRequest,
) -> Result<u64, Error> {
    let provider = &candidate.provider;
    let body = crate::openai::replace_member_str(&native.body, "model", &candidate.upstream_model)
        .ok_or_else(|| Error::invalid_request("`model` must be written without escapes"))?;
    // Anthropic's count endpoint refuses the generation-only fields.
    let body = strip_members(
        &body,
        &[
            "max_tokens",
            "stream",
            "temperature",
            "top_p",
            "top_k",
            "stop_sequences",
            "metadata",
            "service_tier",
        ],
    )?;
    let mut b = http::Request::builder()
        .method(Method::POST)
        .uri(provider.endpoint("/v1/messages/count_tokens")?)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(
            "anthropic-version",
            native
                .headers
                .get("anthropic-version")
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static("2023-06-01")),
        );
    for beta in native.headers.get_all("anthropic-beta") {
        b = b.header("anthropic-beta", beta.clone());
    }
    if let Some(key) = &provider.api_key {
        b = b.header("x-api-key", key.header_value()?);
    }
    let mut req = b
        .body(UpstreamBody::from(body))
        .map_err(|_| Error::upstream("could not build the upstream request"))?;
    if let Some(auth) = provider.auth() {
        auth.authorize(&mut req).await?;
    }
    let bytes = call(client, provider, req).await?;
    #[derive(serde::Deserialize)]
    struct Count {
        input_tokens: u64,
    }
    serde_json::from_slice::<Count>(&bytes)
        .map(|c| c.input_tokens)
        .map_err(|_| Error::upstream("the provider's token count could not be read"))
}

/// Gemini's own count: the request the Gemini codec would send, wrapped as
/// `countTokens`' `generateContentRequest`.
async fn gemini_count(
    client: &HttpClient,
    candidate: &Candidate,
    chat: &crate::openai::ChatRequest,
) -> Result<u64, Error> {
    let provider = &candidate.provider;
    let encoded = provider.codec().encode(
        chat,
        &crate::provider::EncodeContext {
            provider,
            upstream_model: &candidate.upstream_model,
            max_output: candidate.max_output,
        },
    )?;
    let (mut parts, body) = encoded.into_parts();
    let mut inner: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&body.to_bytes())
            .map_err(|_| Error::upstream("could not encode the count request"))?;
    let path = parts.uri.path().to_owned();
    let Some(model_path) = path
        .strip_prefix("/v1beta/")
        .and_then(|p| p.strip_suffix(":generateContent"))
    else {
        return Err(Error::upstream("could not encode the count request"));
    };
    inner.insert("model".into(), serde_json::Value::from(model_path));
    let count_uri = parts
        .uri
        .to_string()
        .replace(":generateContent", ":countTokens");
    parts.uri = count_uri
        .parse()
        .map_err(|_| Error::upstream("could not encode the count request"))?;
    let json = serde_json::to_vec(&serde_json::json!({ "generateContentRequest": inner }))
        .map_err(|_| Error::upstream("could not encode the count request"))?;
    let mut req = http::Request::from_parts(parts, UpstreamBody::from(json));
    if let Some(auth) = provider.auth() {
        auth.authorize(&mut req).await?;
    }
    let bytes = call(client, provider, req).await?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Count {
        total_tokens: u64,
    }
    serde_json::from_slice::<Count>(&bytes)
        .map(|c| c.total_tokens)
        .map_err(|_| Error::upstream("the provider's token count could not be read"))
}

/// Sends `req`; a success's body, or the codec's error.
async fn call(
    client: &HttpClient,
    provider: &crate::provider::Provider,
    req: http::Request<UpstreamBody>,
) -> Result<Bytes, Error> {
    let resp = client
        .clone()
        .oneshot(req)
        .await
        .map_err(|e| e.with_provider(provider.name.clone()))?;
    let (parts, body) = resp.into_parts();
    let bytes = crate::body_util::read_to_bytes(body, MAX_ANSWER_BYTES)
        .await
        .map_err(|_| Error::upstream("could not read the provider's answer"))?;
    if !parts.status.is_success() {
        return Err(provider
            .codec()
            .decode_error(parts.status, &parts.headers, &bytes)
            .with_provider(provider.name.clone()));
    }
    Ok(bytes)
}

/// `body` without the top-level members named in `keys` (re-serialized, keys sorted: the
/// count does not depend on their order).
fn strip_members(body: &[u8], keys: &[&str]) -> Result<Vec<u8>, Error> {
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|_| Error::invalid_request("the request body is not a JSON object"))?;
    for k in keys {
        v.remove(*k);
    }
    serde_json::to_vec(&v).map_err(|_| Error::invalid_request("the request could not be encoded"))
}
