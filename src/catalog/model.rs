//! Models, the endpoints that serve them, their capabilities and prices, and the specs the
//! builder takes.

use std::sync::Arc;

use serde::Deserialize;

use super::{Deadlines, Parameters, Provider};

/// Prices in USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Input tokens.
    #[serde(default)]
    pub input: f64,
    /// Output tokens (reasoning included).
    #[serde(default)]
    pub output: f64,
    /// Input tokens read from the prompt cache (defaults to `input`).
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Input tokens written to the prompt cache (defaults to `input`).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// A fixed price per request.
    #[serde(default)]
    pub per_request: Option<f64>,
}

/// One way to serve a model: a provider and the name the provider knows it by.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Endpoint {
    /// The provider.
    pub provider: Arc<Provider>,
    /// The provider's model name.
    pub upstream: Arc<str>,
    /// Prices, if known.
    pub pricing: Option<Pricing>,
    /// Deadlines (already merged with the provider's defaults).
    pub deadlines: Deadlines,
    /// Request parameters it accepts, if the catalog names them (else the provider kind's).
    pub parameters: Option<Parameters>,
    /// Output speed hint in tokens per second, if the catalog gives one for this endpoint.
    pub throughput: Option<f64>,
}

impl Endpoint {
    /// The request parameters it accepts: the catalog's list for it, else its provider's,
    /// else
    /// [`ProviderKind::parameters_for`](super::ProviderKind::parameters_for) its upstream model.
    pub fn supported_parameters(&self) -> Parameters {
        self.parameters
            .or(self.provider.parameters)
            .unwrap_or_else(|| self.provider.kind.parameters_for(&self.upstream))
    }

    /// Its throughput hint, else its provider's.
    pub fn throughput_hint(&self) -> Option<f64> {
        self.throughput.or(self.provider.throughput)
    }
}

/// What a model can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capabilities {
    /// Function calling.
    pub tools: bool,
    /// Image inputs.
    pub images: bool,
    /// Reasoning / thinking.
    pub reasoning: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            tools: true,
            images: true,
            reasoning: false,
        }
    }
}

/// A model in the catalog.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Model {
    /// Public id (`provider/model` or `vendor/model`).
    pub id: Arc<str>,
    /// Display name.
    pub name: Arc<str>,
    /// Context window in tokens.
    pub context_length: Option<u32>,
    /// Output cap in tokens.
    pub max_output: Option<u32>,
    /// Capabilities.
    pub capabilities: Capabilities,
    /// Ways to serve it, in default preference order.
    pub endpoints: Vec<Endpoint>,
    /// What it does: chat (the default) or embeddings.
    pub kind: ModelKind,
    /// An embedding model's vector size (without `dimensions`), if known.
    pub dimensions: Option<u32>,
}

/// What a catalog model does: chat completions (`/v1/chat/completions`, `/v1/messages`,
/// `/v1/responses`) or embeddings (`/v1/embeddings`). Each endpoint routes only to its kind;
/// the auto model's default pool holds chat models only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModelKind {
    /// A chat model.
    #[default]
    Chat,
    /// An embedding model.
    #[serde(alias = "embeddings")]
    Embedding,
}

impl ModelKind {
    /// `chat` or `embedding`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Embedding => "embedding",
        }
    }
}

/// A model description for [`CatalogBuilder::model`](super::CatalogBuilder::model).
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub(super) id: String,
    pub(super) name: Option<String>,
    pub(super) context_length: Option<u32>,
    pub(super) max_output: Option<u32>,
    pub(super) capabilities: Capabilities,
    pub(super) parameters: Option<Parameters>,
    pub(super) endpoints: Vec<EndpointSpec>,
    pub(super) kind: ModelKind,
    pub(super) dimensions: Option<u32>,
}

/// One way to serve a model, for [`ModelSpec::add_endpoint`].
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub(super) provider: String,
    pub(super) upstream: Option<String>,
    pub(super) pricing: Option<Pricing>,
    pub(super) deadlines: Deadlines,
    pub(super) parameters: Option<Parameters>,
    pub(super) throughput: Option<f64>,
}

impl EndpointSpec {
    /// An endpoint on the provider named `provider` (any configured provider: several
    /// deployments of one kind, such as `openai-eu` and `openai-us`, are separate providers).
    /// The upstream name defaults to the model id's part after the slash.
    pub fn new(provider: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            upstream: None,
            pricing: None,
            deadlines: Deadlines::default(),
            parameters: None,
            throughput: None,
        }
    }
    /// The provider's name for the model.
    #[must_use]
    pub fn upstream(mut self, upstream: impl Into<String>) -> Self {
        self.upstream = Some(upstream.into());
        self
    }
    /// Prices.
    #[must_use]
    pub fn pricing(mut self, p: Pricing) -> Self {
        self.pricing = Some(p);
        self
    }
    /// Deadlines (unset ones come from the provider).
    #[must_use]
    pub fn deadlines(mut self, d: Deadlines) -> Self {
        self.deadlines = d;
        self
    }
    /// The request parameters it accepts (default: the model's list, else the provider
    /// kind's).
    #[must_use]
    pub fn supported_parameters(mut self, p: Parameters) -> Self {
        self.parameters = Some(p);
        self
    }
    /// Output speed hint in tokens per second.
    #[must_use]
    pub fn throughput(mut self, tokens_per_second: f64) -> Self {
        self.throughput = Some(tokens_per_second);
        self
    }
}

impl ModelSpec {
    /// A model served by the provider named by its id's prefix, under the rest of the id.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: None,
            context_length: None,
            max_output: None,
            capabilities: Capabilities::default(),
            parameters: None,
            endpoints: Vec::new(),
            kind: ModelKind::Chat,
            dimensions: None,
        }
    }
    /// An embedding model (served by `/v1/embeddings` only) with vectors of `dimensions`
    /// components, if known; priced per input token (its `input` price).
    #[must_use]
    pub fn embedding(mut self, dimensions: Option<u32>) -> Self {
        self.kind = ModelKind::Embedding;
        self.dimensions = dimensions;
        self
    }
    /// Display name.
    #[must_use]
    pub fn name(mut self, n: impl Into<String>) -> Self {
        self.name = Some(n.into());
        self
    }
    /// Context window.
    #[must_use]
    pub fn context_length(mut self, n: u32) -> Self {
        self.context_length = Some(n);
        self
    }
    /// Output cap.
    #[must_use]
    pub fn max_output(mut self, n: u32) -> Self {
        self.max_output = Some(n);
        self
    }
    /// Capabilities.
    #[must_use]
    pub fn capabilities(mut self, c: Capabilities) -> Self {
        self.capabilities = c;
        self
    }
    /// The request parameters its endpoints accept, unless an endpoint names its own
    /// (default: each provider kind's set).
    #[must_use]
    pub fn supported_parameters(mut self, p: Parameters) -> Self {
        self.parameters = Some(p);
        self
    }
    /// Adds a way to serve the model. Without any, the id's prefix names the provider.
    #[must_use]
    pub fn endpoint(
        mut self,
        provider: impl Into<String>,
        upstream: impl Into<String>,
        pricing: Option<Pricing>,
    ) -> Self {
        let mut e = EndpointSpec::new(provider).upstream(upstream);
        e.pricing = pricing;
        self.endpoints.push(e);
        self
    }
    /// Adds a way to serve the model, with every endpoint setting.
    #[must_use]
    pub fn add_endpoint(mut self, e: EndpointSpec) -> Self {
        self.endpoints.push(e);
        self
    }
    /// Prices for the default endpoint (the one named by the id's prefix).
    #[must_use]
    pub fn pricing(mut self, p: Pricing) -> Self {
        self.default_endpoint().pricing = Some(p);
        self
    }
    /// Deadlines for the default endpoint.
    #[must_use]
    pub fn deadlines(mut self, d: Deadlines) -> Self {
        self.default_endpoint().deadlines = d;
        self
    }
    /// Throughput hint (tokens per second) for the default endpoint.
    #[must_use]
    pub fn throughput(mut self, tokens_per_second: f64) -> Self {
        self.default_endpoint().throughput = Some(tokens_per_second);
        self
    }
    pub(super) fn default_endpoint(&mut self) -> &mut EndpointSpec {
        if self.endpoints.is_empty() {
            self.endpoints.push(EndpointSpec::new(String::new()));
        }
        &mut self.endpoints[0]
    }
}
