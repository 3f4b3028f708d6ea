//! `POST /v1/embeddings`; see [`Embeddings`].

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Method;
use http_body::Body;
use tower::ServiceExt;
use tower_service::Service;

use super::{
    decorate, error_response, json_response, method_not_allowed, read_request_body, request_id,
    EdgeBody, EdgeConfig, REQUEST_ID,
};
use crate::chat::{ChatHttpRequest, ChatHttpResponse};
use crate::embeddings::EmbeddingsAnswer;
use crate::keys::ClientKeysLayer;
use crate::openai::embeddings::EmbeddingsLimits;
use crate::openai::EmbeddingsRequest;
use crate::{BoxError, Error};

/// The `/v1/embeddings` edge: the chat edge's hardening (key checked before the body, body
/// size → 413, read deadline → 408), the request parsed and checked against
/// [`EmbeddingsLimits`] (→ 400), the embeddings stack called (see [`crate::embeddings`]),
/// and OpenAI's answer rendered with `usage.cost` and the `x-switchboard-*` headers.
#[derive(Clone)]
pub struct Embeddings<S> {
    inner: S,
    config: EdgeConfig,
    keys: Option<ClientKeysLayer>,
    limits: EmbeddingsLimits,
    refused: super::refused::RefusedLog,
}

impl<S> std::fmt::Debug for Embeddings<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embeddings")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<S> Embeddings<S> {
    /// The edge over an embeddings stack with the limits and keys of `edge`.
    pub fn new(inner: S, edge: &super::ChatCompletionsLayer, limits: EmbeddingsLimits) -> Self {
        Self {
            inner,
            config: edge.config,
            keys: edge.keys.clone(),
            limits,
            refused: edge.refused.clone(),
        }
    }
}

impl<S, B> Service<http::Request<B>> for Embeddings<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<EdgeBody>;
    type Error = Infallible;
    type Future = super::future::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let id = request_id(req.headers());
        let generation = super::generation_id(req.extensions());
        let presented =
            match super::check_key(self.keys.as_ref(), &self.refused, &req, error_response) {
                Ok(p) => p,
                Err(resp) => return super::future::ResponseFuture::ready(*resp),
            };
        let this = self.clone();
        super::future::ResponseFuture::new(Box::pin(async move {
            let mut watch =
                this.refused
                    .watch(req.uri(), req.extensions(), presented.as_ref(), &generation);
            let mut resp = match this
                .answer(req, presented, &id, &generation, &mut watch)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    super::refused::note(watch.as_ref(), &e);
                    error_response(&e)
                }
            };
            resp.headers_mut().insert(REQUEST_ID, id.0);
            super::stamp_generation(resp.headers_mut(), &generation);
            Ok(resp)
        }))
    }
}

impl<S> Embeddings<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error> + Send + 'static,
    S::Future: Send,
{
    async fn answer<B>(
        self,
        req: http::Request<B>,
        presented: Option<crate::keys::PresentedKey>,
        id: &super::RequestId,
        generation: &crate::ext::GenerationId,
        watch: &mut Option<super::refused::Watch>,
    ) -> Result<http::Response<EdgeBody>, Error>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if req.method() != Method::POST {
            return Ok(method_not_allowed("POST"));
        }
        let (mut parts, body) = req.into_parts();
        let bytes = read_request_body(&parts.headers, body, self.config).await?;
        let emb = EmbeddingsRequest::from_slice(&bytes, self.limits)?;
        drop(bytes);
        let span = tracing::debug_span!(
            "gen_ai.embeddings",
            "gen_ai.operation.name" = "embeddings",
            "gen_ai.request.model" = ?emb.model,
            "gen_ai.response.id" = &*generation.0,
            request_id = ?id.0,
        );
        let mut typed = crate::embeddings::typed_request(emb);
        *typed.headers_mut() = std::mem::take(&mut parts.headers);
        let call = typed
            .extensions()
            .get::<crate::embeddings::EmbeddingsCall>()
            .cloned();
        *typed.extensions_mut() = std::mem::take(&mut parts.extensions);
        if let Some(c) = call {
            typed.extensions_mut().insert(c);
        }
        typed.extensions_mut().insert(id.clone());
        typed.extensions_mut().insert(generation.clone());
        typed
            .extensions_mut()
            .insert(crate::ext::Ingress("embeddings"));
        if let Some(p) = presented {
            typed.extensions_mut().insert(p);
        }
        if let Some(w) = watch {
            w.typed(&typed);
        }
        let resp = tracing::Instrument::instrument(self.inner.oneshot(typed), span).await?;
        let (parts, body) = resp.into_parts();
        let Some(EmbeddingsAnswer(answer)) = parts.extensions.get::<EmbeddingsAnswer>().cloned()
        else {
            return Err(Error::upstream(
                "the embeddings stack returned no embeddings",
            ));
        };
        let mut answer = std::sync::Arc::unwrap_or_clone(answer);
        if let Some(u) = body.as_complete().and_then(crate::Completion::usage) {
            answer.usage.cost = u.cost;
        }
        let json = serde_json::to_vec(&answer)
            .map_err(|e| Error::upstream("could not encode the answer").with_source(e))?;
        let mut out = json_response(Bytes::from(json));
        decorate(&mut out, parts);
        Ok(out)
    }
}
