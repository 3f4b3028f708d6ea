//! [`EmbeddingsTranslate`]: the innermost embeddings layer.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::{carrier, EmbeddingsAnswer, EmbeddingsCall};
use crate::chat::{ChatHttpRequest, ChatHttpResponse, ChatResponse};
use crate::client::UpstreamBody;
use crate::ext::{Target, UpstreamLatency, UpstreamRequestId};
use crate::provider::{DecodeContext, EncodeContext};
use crate::translate::{read_body, DEFAULT_MAX_RESPONSE_BYTES};
use crate::{BoxError, Error};

/// Cap on an upstream error body that is read for its message.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Layer for [`EmbeddingsTranslate`].
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingsTranslateLayer {
    max_response_bytes: usize,
}

impl Default for EmbeddingsTranslateLayer {
    fn default() -> Self {
        Self {
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl EmbeddingsTranslateLayer {
    /// The largest upstream answer accepted (larger → 502).
    #[must_use]
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = n;
        self
    }
}

impl<C> Layer<C> for EmbeddingsTranslateLayer {
    type Service = EmbeddingsTranslate<C>;
    fn layer(&self, client: C) -> EmbeddingsTranslate<C> {
        EmbeddingsTranslate {
            client,
            max_response_bytes: self.max_response_bytes,
        }
    }
}

/// Encodes the [`EmbeddingsCall`] for the request's [`Target`] with its provider's
/// [`EmbeddingsCodec`](crate::provider::EmbeddingsCodec), calls the client and decodes the
/// answer into an [`EmbeddingsAnswer`] (on a usage-only completion).
#[derive(Debug, Clone)]
pub struct EmbeddingsTranslate<C> {
    client: C,
    max_response_bytes: usize,
}

impl<C, B> Service<ChatHttpRequest> for EmbeddingsTranslate<C>
where
    C: Service<http::Request<UpstreamBody>, Response = http::Response<B>, Error = Error>
        + Clone
        + Send
        + 'static,
    C::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = futures_util::future::BoxFuture<'static, Result<ChatHttpResponse, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.client.poll_ready(cx)
    }

    fn call(&mut self, req: ChatHttpRequest) -> Self::Future {
        let clone = self.client.clone();
        let mut client = std::mem::replace(&mut self.client, clone);
        let max = self.max_response_bytes;
        let target = req
            .extensions()
            .get::<Target>()
            .map(|t| t.candidate.clone());
        let call = req.extensions().get::<EmbeddingsCall>().cloned();
        Box::pin(async move {
            let (Some(candidate), Some(EmbeddingsCall(emb))) = (target, call) else {
                return Err(Error::upstream(
                    "no embeddings target for this request (ModelResolve and Fallback must run first)",
                ));
            };
            let provider = candidate.provider.clone();
            let Some(codec) = provider.codec().embeddings() else {
                return Err(Error::invalid_request(format!(
                    "provider `{}` does not serve embeddings",
                    provider.name
                ))
                .with_param("model"));
            };
            let ectx = EncodeContext {
                provider: &provider,
                upstream_model: &candidate.upstream_model,
                max_output: None,
            };
            let mut upstream = codec.encode_embeddings(&emb, &ectx)?;
            if let Some(auth) = provider.auth() {
                auth.authorize(&mut upstream)
                    .await
                    .map_err(|e| e.with_provider(provider.name.clone()))?;
            }
            let sent = tokio::time::Instant::now();
            let resp = tower::ServiceExt::ready(&mut client)
                .await?
                .call(upstream)
                .await
                .map_err(|e| e.with_provider(provider.name.clone()))?;
            let (parts, body) = resp.into_parts();
            if !parts.status.is_success() {
                let bytes = read_body(body, MAX_ERROR_BYTES, true)
                    .await
                    .unwrap_or_default();
                return Err(provider
                    .codec()
                    .decode_error(parts.status, &parts.headers, &bytes)
                    .with_provider(provider.name.clone()));
            }
            let bytes = read_body(body, max, false)
                .await
                .map_err(|e| e.with_provider(provider.name.clone()))?;
            let dctx = DecodeContext {
                model: candidate.model.clone(),
                provider: provider.name.clone(),
            };
            let answer = codec
                .decode_embeddings(&bytes, &emb, &dctx)
                .map_err(|e| e.with_provider(provider.name.clone()))?;
            let mut out = http::Response::new(ChatResponse::Complete(carrier(&answer)));
            out.extensions_mut().insert(UpstreamLatency(sent.elapsed()));
            if let Some(id) = parts
                .headers
                .get(&crate::headers::REQUEST_ID)
                .or_else(|| parts.headers.get(&crate::headers::UPSTREAM_REQUEST_ID))
            {
                out.extensions_mut().insert(UpstreamRequestId(id.clone()));
            }
            out.extensions_mut()
                .insert(EmbeddingsAnswer(Arc::new(answer)));
            Ok(out)
        })
    }
}
