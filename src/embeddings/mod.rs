//! Embeddings: `POST /v1/embeddings` through the same routing, fallback, health, deadlines,
//! keys, budgets, metrics and cache as chat.
//!
//! # Design
//! The crate's layers are typed on [`ChatHttpRequest`] / [`ChatHttpResponse`]. Rather than
//! copy them, an embeddings request travels down the **same layers** as a chat request whose
//! body is its *routing view*: a [`ChatRequest`] with the request's `model`, `models`,
//! `provider` and `user`, no messages, and a [`MessagesSummary`]
//! sized from the inputs (one "message" per input, the input's bytes as text) so that the
//! token estimates of ClientKeys (tokens per minute) and CostMeter (budget reservation) are the
//! input's. The [`EmbeddingsRequest`] itself rides along as the [`EmbeddingsCall`] request
//! extension, and the answer comes back as the [`EmbeddingsAnswer`] response extension on a
//! completion that carries only the `usage` (input tokens, no output), so the CostMeter
//! prices it per input token from the catalog, records metrics, the access log and the sink,
//! and settles budgets exactly as for chat.
//!
//! The stack, outermost first (built by [`Gateway::embeddings`](crate::Gateway::embeddings)):
//!
//! 1. [`ClientKeys`](crate::keys::ClientKeys) (when configured): allowed models, rate limits
//! 2. [`ModelResolve`](crate::resolve::ModelResolve): ids, aliases, `models`, provider
//!    preferences, pass-through `provider/name`
//! 3. [`EmbeddingsRoute`]: keeps the candidates that are embedding models (catalog
//!    `kind = "embedding"`, or pass-through ids) on providers whose codec has an
//!    [`EmbeddingsCodec`](crate::provider::EmbeddingsCodec); none left → 400
//! 4. [`CostMeter`](crate::cost::CostMeter): budgets, `usage.cost`, metrics
//! 5. [`EmbeddingsCache`] (when the gateway has a response cache): the same store, keyed
//!    with BLAKE3 over the route and the request's answer-relevant fields in a key domain of
//!    its own; a hit costs 0
//! 6. [`Fallback`](crate::fallback::Fallback): walks the route, health, retries, the request
//!    budget (`x-switchboard-timeout-ms`)
//! 7. [`ModelTimeout`](crate::timeout::ModelTimeout): each attempt's `total` deadline
//! 8. [`EmbeddingsTranslate`]: encodes with the target's
//!    [`EmbeddingsCodec`](crate::provider::EmbeddingsCodec), sends with the
//!    pooled client, decodes (errors through the codec's error table)
//!
//! A later provider kind (Bedrock, Vertex) plugs its embedding models in by returning an
//! [`EmbeddingsCodec`](crate::provider::EmbeddingsCodec) from
//! [`ProviderCodec::embeddings`](crate::provider::ProviderCodec::embeddings); nothing here
//! changes.
//!
//! The HTTP edge is [`edge::Embeddings`](crate::edge::Embeddings): the chat edge's limits
//! (body size → 413, read deadline → 408, the key checked before the body) plus
//! [`EmbeddingsLimits`](crate::openai::embeddings::EmbeddingsLimits) (number of inputs, total
//! input bytes → 400).

mod cache;
mod translate;

use std::sync::Arc;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::catalog::{Catalog, ModelKind};
use crate::chat::{ChatHttpRequest, ChatHttpResponse};
use crate::ext::Route;
use crate::openai::{ChatRequest, EmbeddingsRequest, EmbeddingsResponse, MessagesSummary};
use crate::resolve::limits::quote;
use crate::Error;

pub use cache::{EmbeddingsCache, EmbeddingsCacheLayer};
pub use translate::{EmbeddingsTranslate, EmbeddingsTranslateLayer};

/// The embeddings stack over `client`; see the [module docs](self).
pub(crate) fn stack(
    catalog: &Catalog,
    resolve: crate::resolve::ModelResolveLayer,
    cost: crate::cost::CostMeterLayer,
    cache: Option<&crate::cache::ResponseCacheLayer>,
    fallback: crate::fallback::FallbackLayer,
    client: crate::client::HttpClient,
    keys: Option<&crate::keys::ClientKeysLayer>,
) -> crate::GatewayService {
    use tower::util::BoxCloneSyncService;
    let svc = tower::ServiceBuilder::new()
        .layer(resolve)
        .layer(EmbeddingsRouteLayer::new(catalog.clone()))
        .layer(cost)
        .option_layer(cache.map(EmbeddingsCacheLayer::new))
        .layer(fallback)
        .layer(crate::timeout::ModelTimeoutLayer::default())
        .layer(EmbeddingsTranslateLayer::default())
        .service(client);
    match keys {
        Some(k) => BoxCloneSyncService::new(Layer::layer(k, svc)),
        None => BoxCloneSyncService::new(svc),
    }
}

/// The embeddings request of a typed request (request extension).
#[derive(Debug, Clone)]
pub struct EmbeddingsCall(pub Arc<EmbeddingsRequest>);

/// The embeddings answer of a typed response (response extension); the response body is a
/// completion carrying only its usage.
#[derive(Debug, Clone)]
pub struct EmbeddingsAnswer(pub Arc<EmbeddingsResponse>);

/// The typed request for `req`: its routing view as the body, the request as
/// [`EmbeddingsCall`].
pub fn typed_request(req: EmbeddingsRequest) -> ChatHttpRequest {
    let mut typed = http::Request::new(Arc::new(routing_view(&req)));
    typed.extensions_mut().insert(EmbeddingsCall(Arc::new(req)));
    typed
}

/// The fields of `req` ModelResolve, ClientKeys and the CostMeter read, as a chat request.
pub(crate) fn routing_view(req: &EmbeddingsRequest) -> ChatRequest {
    ChatRequest {
        model: req.model.clone(),
        models: req.models.clone(),
        provider: req.provider.clone(),
        user: req.user.clone(),
        // No output: a token allowance of zero.
        max_tokens: Some(0),
        summary: MessagesSummary {
            count: req.input.len(),
            text_bytes: req.input.bytes(),
            has_images: false,
            has_tool_messages: false,
        },
        ..ChatRequest::default()
    }
}

/// The usage-only completion an embeddings answer travels in.
pub(crate) fn carrier(resp: &EmbeddingsResponse) -> crate::Completion {
    let tokens = resp.usage.prompt_tokens;
    let c = crate::openai::ChatCompletion {
        id: String::new(),
        object: "list".into(),
        created: 0,
        model: resp.model.clone(),
        choices: Vec::new(),
        usage: Some(crate::openai::Usage {
            prompt_tokens: tokens,
            completion_tokens: 0,
            total_tokens: tokens,
            ..Default::default()
        }),
        system_fingerprint: None,
        service_tier: None,
        provider: resp.provider.clone(),
    };
    crate::Completion::from(c)
}

/// Layer for [`EmbeddingsRoute`].
#[derive(Debug, Clone)]
pub struct EmbeddingsRouteLayer {
    catalog: Catalog,
}

impl EmbeddingsRouteLayer {
    /// Checks routes against `catalog`'s model kinds.
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }
}

impl<S> Layer<S> for EmbeddingsRouteLayer {
    type Service = EmbeddingsRoute<S>;
    fn layer(&self, inner: S) -> EmbeddingsRoute<S> {
        EmbeddingsRoute {
            inner,
            catalog: self.catalog.clone(),
        }
    }
}

/// Keeps a [`Route`]'s embedding-capable candidates; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct EmbeddingsRoute<S> {
    inner: S,
    catalog: Catalog,
}

impl<S> Service<ChatHttpRequest> for EmbeddingsRoute<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = futures_util::future::Either<
        S::Future,
        std::future::Ready<Result<ChatHttpResponse, Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ChatHttpRequest) -> Self::Future {
        use futures_util::future::Either;
        if let Some(route) = req.extensions_mut().get_mut::<Route>() {
            let keep: Vec<_> = route
                .candidates
                .iter()
                .filter(|c| {
                    let embedding = self
                        .catalog
                        .model(&c.model)
                        .is_none_or(|m| m.kind == ModelKind::Embedding);
                    embedding && c.provider.codec().embeddings().is_some()
                })
                .cloned()
                .collect();
            if keep.is_empty() {
                let e = Error::invalid_request(format!(
                    "model `{}` is not an embedding model (no provider of it serves embeddings)",
                    quote(&route.requested)
                ))
                .with_param("model")
                .with_code("model_not_supported");
                return Either::Right(std::future::ready(Err(e)));
            }
            if keep.len() != route.candidates.len() {
                route.candidates = keep.into();
            }
        }
        Either::Left(self.inner.call(req))
    }
}
