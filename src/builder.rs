//! The default stack, assembled from a catalog in a few lines.
//!
//! Order, outermost first (the edge is separate, see [`Gateway::chat_completions`]):
//!
//! 1. [`ModelResolve`](crate::resolve::ModelResolve): `model` / alias / `models[]` / provider
//!    preferences / rules → `Route`
//! 2. [`Fallback`](crate::fallback::Fallback): walks the `Route`, commit point, `ServedBy`
//! 3. [`ProviderTranslate`](crate::translate::ProviderTranslate): canonical ⇄ provider wire
//! 4. [`HttpClient`]: pooled hyper client
//!
//! ModelResolve and Fallback share one [`Health`]: Fallback records outcomes, ModelResolve
//! moves cooling-down targets last and sorts by its latency.

use std::time::Duration;

use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

use crate::catalog::Catalog;
use crate::chat::{ChatHttpRequest, ChatHttpResponse};
use crate::client::HttpClient;
use crate::edge::{ChatCompletions, ChatCompletionsLayer, Models};
use crate::fallback::FallbackLayer;
use crate::health::Health;
use crate::resolve::ModelResolveLayer;
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
}

impl Gateway {
    /// Starts building a gateway over `catalog`.
    pub fn builder(catalog: Catalog) -> GatewayBuilder {
        GatewayBuilder {
            catalog,
            client: None,
            edge: ChatCompletionsLayer::new(),
            translate: ProviderTranslateLayer::new(),
        }
    }

    /// The typed stack.
    pub fn service(&self) -> GatewayService {
        self.service.clone()
    }

    /// The HTTP edge for `POST …/chat/completions` (route it with `Router::route_service`).
    pub fn chat_completions(&self) -> ChatCompletions<GatewayService> {
        tower_layer::Layer::layer(&self.edge, self.service.clone())
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
}

impl GatewayBuilder {
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

    /// How long a client may take to send its body (larger → 408).
    #[must_use]
    pub fn body_timeout(mut self, d: Duration) -> Self {
        self.edge = self.edge.body_timeout(d);
        self
    }

    /// The largest non-streaming upstream body (default 32 MiB; larger → 502).
    #[must_use]
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.translate = self.translate.max_response_bytes(n);
        self
    }

    /// Assembles the stack.
    pub fn build(self) -> Gateway {
        let client = self.client.unwrap_or_default();
        let health = Health::default();
        let svc = ServiceBuilder::new()
            .layer(ModelResolveLayer::new(self.catalog.clone()).health(health.clone()))
            .layer(FallbackLayer::new().health(health))
            .layer(self.translate)
            .service(client);
        Gateway {
            service: BoxCloneSyncService::new(svc),
            catalog: self.catalog,
            edge: self.edge,
        }
    }
}
