//! `POST /v1/embeddings`; see [`Embeddings`].

use bytes::Bytes;
use http::Method;
use tower::ServiceExt;

use super::refused::{note, Watch};
use super::service::{self, Answer, Edge, EdgeSettings, Incoming, RequestBody, TypedStack};
use super::{decorate, error_response, json_response, read_request_body, EdgeBody};
use crate::embeddings::EmbeddingsAnswer;
use crate::ext::GenerationId;
use crate::openai::embeddings::EmbeddingsLimits;
use crate::openai::EmbeddingsRequest;
use crate::Error;

/// The `/v1/embeddings` edge: the chat edge's hardening (key checked before the body, body
/// size → 413, read deadline → 408), the request parsed and checked against
/// [`EmbeddingsLimits`] (→ 400), the embeddings stack called (see [`crate::embeddings`]),
/// and OpenAI's answer rendered with `usage.cost` and the `x-switchboard-*` headers.
#[derive(Clone)]
pub struct Embeddings<S> {
    inner: S,
    settings: EdgeSettings,
    limits: EmbeddingsLimits,
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
            settings: edge.settings.clone(),
            limits,
        }
    }
}

service::edge_service!(Embeddings, |this| this.limits);

/// The embeddings edge's own part is its limits; its errors are the provided OpenAI ones, and
/// a request other than a POST gets its 405 with the ids.
impl Edge for EmbeddingsLimits {
    const ANSWERS_ANY_METHOD: bool = true;

    async fn answer<S: TypedStack, B: RequestBody>(self, mut req: Incoming<'_, S, B>) -> Answer {
        let mut watch = req.watch.take();
        match embed(self, req, &mut watch).await {
            Ok(r) => r,
            Err(e) => {
                note(watch.as_ref(), &e);
                error_response(&e)
            }
        }
    }
}

/// The answer to an embeddings request; an error is the caller's to render.
async fn embed<S: TypedStack, B: RequestBody>(
    limits: EmbeddingsLimits,
    req: Incoming<'_, S, B>,
    watch: &mut Option<Watch>,
) -> Result<http::Response<EdgeBody>, Error> {
    if req.parts.method != Method::POST {
        return Ok(EmbeddingsLimits::method_not_allowed());
    }
    let bytes = read_request_body(&req.parts.headers, req.body, req.config).await?;
    let emb = EmbeddingsRequest::from_slice(&bytes, limits)?;
    drop(bytes);
    let span = tracing::debug_span!(
        "gen_ai.embeddings",
        "gen_ai.operation.name" = "embeddings",
        "gen_ai.request.model" = ?emb.model,
        "gen_ai.response.id" = req.parts.extensions.get::<GenerationId>().map(|g| &*g.0),
        request_id = ?req.id.0,
    );
    let mut typed = crate::embeddings::typed_request(emb);
    *typed.headers_mut() = std::mem::take(&mut req.parts.headers);
    let call = typed
        .extensions()
        .get::<crate::embeddings::EmbeddingsCall>()
        .cloned();
    *typed.extensions_mut() = std::mem::take(&mut req.parts.extensions);
    if let Some(c) = call {
        typed.extensions_mut().insert(c);
    }
    // The presented key and the generation id came along in `parts.extensions`.
    typed.extensions_mut().insert(req.id.clone());
    typed
        .extensions_mut()
        .insert(crate::ext::Ingress("embeddings"));
    if let Some(w) = watch {
        w.typed(&typed);
    }
    let resp = tracing::Instrument::instrument(req.inner.oneshot(typed), span).await?;
    let (parts, body) = resp.into_parts();
    let Some(EmbeddingsAnswer(answer)) = parts.extensions.get::<EmbeddingsAnswer>().cloned() else {
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
