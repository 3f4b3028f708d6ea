//! The default stack, assembled from a catalog in a few lines.
//!
//! Order, outermost first (the edge is separate, see [`Gateway::chat_completions`]):
//!
//! 0. [`Shadow`](crate::shadow::Shadow) (when configured with [`GatewayBuilder::shadows`]):
//!    copies sampled requests to a candidate, through the layers below
//! 1. [`ModelResolve`](crate::resolve::ModelResolve): `model` / alias / `models[]` / provider
//!    preferences / rules → `Route`
//! 2. [`CostMeter`](crate::cost::CostMeter): budget reservation, `usage.cost`, metrics
//! 3. [`ResponseCache`](crate::cache::ResponseCache) (when configured with
//!    [`GatewayBuilder::response_cache`]): hits answer at once and cost 0
//! 4. [`Fallback`](crate::fallback::Fallback): walks the `Route`, commit point, `ServedBy`
//! 5. [`ModelTimeout`](crate::timeout::ModelTimeout): per-attempt deadlines
//! 6. [`ProviderTranslate`](crate::translate::ProviderTranslate): canonical ⇄ provider wire
//! 7. [`HttpClient`]: pooled hyper client
//!
//! ModelResolve and Fallback share one [`Health`]: Fallback records outcomes, ModelResolve
//! moves cooling-down targets last and sorts by its latency.

use std::time::Duration;

use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

use crate::cache::ResponseCacheLayer;
use crate::catalog::Catalog;
use crate::chat::{ChatHttpRequest, ChatHttpResponse};
use crate::client::HttpClient;
use crate::cost::CostMeterLayer;
use crate::edge::{
    ChatCompletions, ChatCompletionsLayer, CountTokens, Messages, MessagesLayer, Models,
};
use crate::edge::{Responses, ResponsesLayer};
use crate::fallback::FallbackLayer;
use crate::health::Health;
use crate::keys::ClientKeysLayer;
use crate::resolve::{Limits, ModelResolveLayer};
use crate::timeout::ModelTimeoutLayer;
use crate::translate::ProviderTranslateLayer;
use crate::Error;

/// The typed stack below the edge, type-erased: `Clone + Send + Sync`. Call it directly from
/// code that is not an HTTP server (tonic handlers, background jobs).
pub type GatewayService = BoxCloneSyncService<ChatHttpRequest, ChatHttpResponse, Error>;

/// A ready gateway: the default stack over one catalog.
#[derive(Clone, Debug)]
pub struct Gateway {
    service: GatewayService,
    catalog: Catalog,
    edge: ChatCompletionsLayer,
    health: Health,
    resolver: crate::edge::messages::Resolver,
    client: HttpClient,
    embeddings: GatewayService,
    embedding_limits: crate::openai::embeddings::EmbeddingsLimits,
}

impl Gateway {
    /// Starts building a gateway over `catalog`.
    pub fn builder(catalog: Catalog) -> GatewayBuilder {
        GatewayBuilder {
            catalog,
            client: None,
            edge: ChatCompletionsLayer::new(),
            translate: ProviderTranslateLayer::new(),
            cost: CostMeterLayer::new(),
            fallback: FallbackLayer::new(),
            health: Health::default(),
            keys: None,
            cache: None,
            shadows: None,
            resolve_limits: Limits::default(),
            embedding_limits: Default::default(),
        }
    }

    /// Per-target health shared by every clone of the stack.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The typed stack.
    pub fn service(&self) -> GatewayService {
        self.service.clone()
    }

    /// The HTTP edge for `POST …/chat/completions` (route it with `Router::route_service`).
    pub fn chat_completions(&self) -> ChatCompletions<GatewayService> {
        tower_layer::Layer::layer(&self.edge, self.service.clone())
    }

    /// The HTTP edge for Anthropic's `POST …/v1/messages` (same stack, same limits and keys
    /// as [`chat_completions`](Self::chat_completions)).
    pub fn messages(&self) -> Messages<GatewayService> {
        tower_layer::Layer::layer(
            &MessagesLayer::from(self.edge.clone()),
            self.service.clone(),
        )
    }

    /// The HTTP edge for OpenAI's `POST …/v1/responses`, stateless (same stack, same limits,
    /// keep-alive and keys as [`chat_completions`](Self::chat_completions)).
    pub fn responses(&self) -> Responses<GatewayService> {
        tower_layer::Layer::layer(
            &ResponsesLayer::from(self.edge.clone()),
            self.service.clone(),
        )
    }

    /// The HTTP edge for Anthropic's `POST …/v1/messages/count_tokens` (the model resolved by
    /// the same routing and key policy; no generation runs).
    pub fn count_tokens(&self) -> CountTokens {
        CountTokens::new(
            self.resolver.clone(),
            self.client.clone(),
            MessagesLayer::from(self.edge.clone()),
        )
    }

    /// The HTTP edge for OpenAI's `POST …/v1/embeddings`: the same keys, routing, Fallback,
    /// health, deadlines, cost, budgets and cache as chat, over embedding models (see
    /// [`crate::embeddings`]).
    pub fn embeddings(&self) -> crate::edge::Embeddings<GatewayService> {
        crate::edge::Embeddings::new(self.embeddings.clone(), &self.edge, self.embedding_limits)
    }

    /// The typed embeddings stack (requests from [`crate::embeddings::typed_request`]).
    pub fn embeddings_service(&self) -> GatewayService {
        self.embeddings.clone()
    }

    /// The HTTP edge for `GET …/models`.
    pub fn models(&self) -> Models {
        Models::new(&self.catalog)
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}

/// Builds a [`Gateway`].
#[derive(Debug)]
pub struct GatewayBuilder {
    catalog: Catalog,
    client: Option<HttpClient>,
    edge: ChatCompletionsLayer,
    translate: ProviderTranslateLayer,
    cost: CostMeterLayer,
    fallback: FallbackLayer,
    health: Health,
    keys: Option<ClientKeysLayer>,
    cache: Option<ResponseCacheLayer>,
    shadows: Option<crate::shadow::ShadowLayer>,
    resolve_limits: Limits,
    embedding_limits: crate::openai::embeddings::EmbeddingsLimits,
}

impl GatewayBuilder {
    /// The most inputs one embeddings request may carry (default
    /// [`DEFAULT_MAX_EMBEDDING_INPUTS`](crate::openai::embeddings::DEFAULT_MAX_EMBEDDING_INPUTS),
    /// 2048; more → 400).
    #[must_use]
    pub fn max_embedding_inputs(mut self, n: usize) -> Self {
        self.embedding_limits.max_inputs = n;
        self
    }

    /// The most bytes of text one embeddings request may carry, all inputs together (a token
    /// id counts 4; default
    /// [`DEFAULT_MAX_EMBEDDING_INPUT_BYTES`](crate::openai::embeddings::DEFAULT_MAX_EMBEDDING_INPUT_BYTES),
    /// 4 MiB; more → 400).
    #[must_use]
    pub fn max_embedding_input_bytes(mut self, n: usize) -> Self {
        self.embedding_limits.max_input_bytes = n;
        self
    }

    /// Adds a [`ResponseCache`](crate::cache::ResponseCache) between CostMeter and Fallback.
    #[must_use]
    pub fn response_cache(mut self, layer: ResponseCacheLayer) -> Self {
        self.cache = Some(layer);
        self
    }

    /// Adds [`Shadow`](crate::shadow::Shadow) above ModelResolve: sampled requests are
    /// copied to a candidate (see [`crate::shadow`]). A layer without rules adds nothing.
    #[must_use]
    pub fn shadows(mut self, layer: crate::shadow::ShadowLayer) -> Self {
        self.shadows = (!layer.is_empty()).then_some(layer);
        self
    }

    /// Requires gateway API keys ([`ClientKeys`](crate::keys::ClientKeys), outermost in the
    /// typed stack). An empty key set leaves the gateway open.
    #[must_use]
    pub fn client_keys(mut self, keys: ClientKeysLayer) -> Self {
        self.keys = (!keys.is_empty()).then_some(keys);
        self
    }

    /// Configures the CostMeter (sink, budgets).
    #[must_use]
    pub fn cost_meter(mut self, layer: CostMeterLayer) -> Self {
        self.cost = layer;
        self
    }

    /// Configures Fallback (retries, request budget). Its health is replaced by the
    /// gateway's shared [`Health`].
    #[must_use]
    pub fn fallback(mut self, layer: FallbackLayer) -> Self {
        self.fallback = layer;
        self
    }

    /// Uses this [`Health`] (e.g. with a custom cool-down).
    #[must_use]
    pub fn health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Uses this HTTP client (default: [`HttpClient::new`]).
    #[must_use]
    pub fn client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// The largest accepted request body (default 8 MiB; larger → 413).
    #[must_use]
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.edge = self.edge.max_body_bytes(n);
        self
    }

    /// The most entries a request's `models` may list (default
    /// [`DEFAULT_MAX_MODELS`](crate::resolve::DEFAULT_MAX_MODELS), 64; more → 400), see
    /// [`ModelResolveLayer::max_models`].
    #[must_use]
    pub fn max_models(mut self, n: usize) -> Self {
        self.resolve_limits.max_models = n;
        self
    }

    /// The longest `model`, and the longest entry of `models`, in bytes (default
    /// [`DEFAULT_MAX_ID_BYTES`](crate::resolve::DEFAULT_MAX_ID_BYTES), 256; longer → 400), see
    /// [`ModelResolveLayer::max_id_bytes`].
    #[must_use]
    pub fn max_model_id_bytes(mut self, n: usize) -> Self {
        self.resolve_limits.max_id_bytes = n;
        self
    }

    /// The most messages one request may carry (default
    /// [`DEFAULT_MAX_MESSAGES`](crate::edge::DEFAULT_MAX_MESSAGES); more → 400).
    #[must_use]
    pub fn max_messages(mut self, n: usize) -> Self {
        self.edge = self.edge.max_messages(n);
        self
    }

    /// The most tools one request may declare (default
    /// [`DEFAULT_MAX_TOOLS`](crate::edge::DEFAULT_MAX_TOOLS); more → 400).
    #[must_use]
    pub fn max_tools(mut self, n: usize) -> Self {
        self.edge = self.edge.max_tools(n);
        self
    }

    /// The most bytes of `tools` and of `response_format` (default
    /// [`DEFAULT_MAX_TOOLS_BYTES`](crate::edge::DEFAULT_MAX_TOOLS_BYTES); more → 400).
    #[must_use]
    pub fn max_tools_bytes(mut self, n: usize) -> Self {
        self.edge = self.edge.max_tools_bytes(n);
        self
    }

    /// SSE keep-alive comments every `every` while a streamed request (chat completions,
    /// `/v1/messages` or `/v1/responses`) waits for its first output (off by default); see
    /// [`ChatCompletionsLayer::keep_alive`].
    #[must_use]
    pub fn keep_alive(mut self, every: Duration) -> Self {
        self.edge = self.edge.keep_alive(every);
        self
    }

    /// How long a client may take to send its body (larger → 408).
    #[must_use]
    pub fn body_timeout(mut self, d: Duration) -> Self {
        self.edge = self.edge.body_timeout(d);
        self
    }

    /// The largest non-streaming upstream body, and the largest single event of a stream
    /// (default 32 MiB, stream events at most 16 MiB; larger → 502).
    #[must_use]
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.translate = self.translate.max_response_bytes(n);
        self
    }

    /// Assembles the stack.
    pub fn build(mut self) -> Gateway {
        // Requests refused before the CostMeter are recorded in its sink too.
        if let Some(sink) = self.cost.sink_handle() {
            self.edge = self.edge.refused_sink(sink);
        }
        let client = self.client.unwrap_or_default();
        let resolve = ModelResolveLayer::new(self.catalog.clone())
            .health(self.health.clone())
            .max_models(self.resolve_limits.max_models)
            .max_id_bytes(self.resolve_limits.max_id_bytes);
        let capture = tower_layer::Layer::layer(&resolve, crate::edge::messages::route_capture());
        let resolver = match &self.keys {
            Some(keys) => BoxCloneSyncService::new(tower_layer::Layer::layer(keys, capture)),
            None => BoxCloneSyncService::new(capture),
        };
        let embeddings = crate::embeddings::stack(
            &self.catalog,
            resolve.clone(),
            self.cost.clone(),
            self.cache.as_ref(),
            self.fallback.clone().health(self.health.clone()),
            client.clone(),
            self.keys.as_ref(),
        );
        let svc = ServiceBuilder::new()
            .option_layer(self.shadows)
            .layer(resolve)
            .layer(self.cost)
            .option_layer(self.cache)
            .layer(self.fallback.health(self.health.clone()))
            .layer(ModelTimeoutLayer::default())
            .layer(self.translate)
            .service(client.clone());
        let (service, edge) = match self.keys {
            Some(keys) => (
                BoxCloneSyncService::new(tower_layer::Layer::layer(&keys, svc)),
                self.edge.client_keys(keys),
            ),
            None => (BoxCloneSyncService::new(svc), self.edge),
        };
        Gateway {
            service,
            catalog: self.catalog,
            edge,
            health: self.health,
            resolver,
            client,
            embeddings,
            embedding_limits: self.embedding_limits,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// Adds switchboard's layers to `tower::ServiceBuilder`, so a stack can be reordered, trimmed
/// or interleaved with your own layers and tower-http's.
///
/// ```
/// use switchboard::catalog::{ModelSpec, Provider, ProviderKind};
/// use switchboard::client::HttpClient;
/// use switchboard::{Catalog, ServiceBuilderExt};
/// use tower::ServiceBuilder;
///
/// # fn main() -> Result<(), switchboard::Error> {
/// let catalog = Catalog::builder()
///     .provider(Provider::new("openai", ProviderKind::Openai, "http://127.0.0.1:1/v1"))
///     .model(ModelSpec::new("openai/gpt-4o-mini"))
///     .build()?;
/// let stack = ServiceBuilder::new()
///     .model_resolve(catalog)
///     .fallback(Default::default())
///     .model_timeout(Default::default())
///     .provider_translate(Default::default())
///     .service(HttpClient::new());
/// # let _ = stack;
/// # Ok(())
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Adds [`ModelResolve`](crate::resolve::ModelResolve) over `catalog`.
    fn model_resolve(
        self,
        catalog: Catalog,
    ) -> ServiceBuilder<tower::layer::util::Stack<ModelResolveLayer, L>>;
    /// Adds [`CostMeter`](crate::cost::CostMeter).
    fn cost_meter(
        self,
        layer: CostMeterLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<CostMeterLayer, L>>;
    /// Adds [`ResponseCache`](crate::cache::ResponseCache).
    fn response_cache(
        self,
        layer: ResponseCacheLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<ResponseCacheLayer, L>>;
    /// Adds [`Fallback`](crate::fallback::Fallback).
    fn fallback(
        self,
        layer: FallbackLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<FallbackLayer, L>>;
    /// Adds [`ModelTimeout`](crate::timeout::ModelTimeout).
    fn model_timeout(
        self,
        layer: ModelTimeoutLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<ModelTimeoutLayer, L>>;
    /// Adds [`ProviderTranslate`](crate::translate::ProviderTranslate).
    fn provider_translate(
        self,
        layer: ProviderTranslateLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<ProviderTranslateLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn model_resolve(
        self,
        catalog: Catalog,
    ) -> ServiceBuilder<tower::layer::util::Stack<ModelResolveLayer, L>> {
        self.layer(ModelResolveLayer::new(catalog))
    }
    fn cost_meter(
        self,
        layer: CostMeterLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<CostMeterLayer, L>> {
        self.layer(layer)
    }
    fn response_cache(
        self,
        layer: ResponseCacheLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<ResponseCacheLayer, L>> {
        self.layer(layer)
    }
    fn fallback(
        self,
        layer: FallbackLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<FallbackLayer, L>> {
        self.layer(layer)
    }
    fn model_timeout(
        self,
        layer: ModelTimeoutLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<ModelTimeoutLayer, L>> {
        self.layer(layer)
    }
    fn provider_translate(
        self,
        layer: ProviderTranslateLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<ProviderTranslateLayer, L>> {
        self.layer(layer)
    }
}
