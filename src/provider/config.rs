//! Providers: their wire format, key, deadlines and data policy, and the URLs under them.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use super::params::Parameters;
use super::{ProviderAuth, ProviderCodec};
use crate::Error;

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProviderKind {
    /// OpenAI chat completions (OpenAI, OpenRouter, Groq, Together, vLLM, Ollama, …).
    #[serde(alias = "openai_compat", alias = "openai-compatible")]
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini `generateContent`.
    #[serde(alias = "google")]
    Gemini,
    /// Azure OpenAI: OpenAI chat completions under a resource endpoint, by deployment
    /// (`/openai/deployments/{deployment}/…?api-version=…`) or on the v1 API (`/openai/v1/…`),
    /// with an `api-key` header; see [`Azure`](super::azure::Azure).
    #[serde(alias = "azure_openai", alias = "azure-openai")]
    Azure,
    /// Google Vertex AI: Gemini models (`generateContent`) and Claude (`rawPredict`) with
    /// OAuth2 tokens from a service account (see [`vertex`](crate::provider::vertex)).
    #[serde(alias = "vertex_ai", alias = "vertex-ai")]
    Vertex,
    /// AWS Bedrock: the Converse API, with SigV4-signed requests (see
    /// [`bedrock`](crate::provider::bedrock)).
    #[serde(alias = "aws_bedrock", alias = "aws-bedrock")]
    Bedrock,
}

impl ProviderKind {
    /// Short name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Azure => "azure",
            Self::Vertex => "vertex",
            Self::Bedrock => "bedrock",
        }
    }

    /// The request parameters this wire format can honour, used when the catalog names none
    /// for an endpoint. OpenAI-compatible servers take them all; Anthropic has no `logprobs`,
    /// `top_logprobs`, `n > 1`, `seed`, `frequency_penalty`, `presence_penalty`, `logit_bias`
    /// or the open-model samplers (`min_p`, `top_a`, `repetition_penalty`); Gemini has no
    /// `logit_bias` and none of those samplers; Azure takes OpenAI's, without the samplers.
    pub const fn default_parameters(self) -> Parameters {
        const SAMPLERS: Parameters = Parameters::MIN_P
            .union(Parameters::TOP_A)
            .union(Parameters::REPETITION_PENALTY);
        match self {
            Self::Openai => Parameters::ALL,
            Self::Anthropic => Parameters::ALL.difference(
                Parameters::LOGPROBS
                    .union(Parameters::TOP_LOGPROBS)
                    .union(Parameters::N)
                    .union(Parameters::SEED)
                    .union(Parameters::FREQUENCY_PENALTY)
                    .union(Parameters::PRESENCE_PENALTY)
                    .union(Parameters::LOGIT_BIAS)
                    .union(SAMPLERS),
            ),
            // Azure's OpenAI models take OpenAI's parameters, not the open-model samplers.
            Self::Azure => Parameters::ALL.difference(SAMPLERS),
            Self::Gemini | Self::Vertex => {
                Parameters::ALL.difference(Parameters::LOGIT_BIAS.union(SAMPLERS))
            }
            // Converse: Anthropic's set without `top_k` and structured output.
            Self::Bedrock => Self::Anthropic
                .default_parameters()
                .difference(Parameters::TOP_K.union(Parameters::RESPONSE_FORMAT)),
        }
    }

    /// The parameters of [`default_parameters`](Self::default_parameters) for one upstream
    /// model: on Vertex AI, Claude models (names starting with `claude`) take Anthropic's set,
    /// the others Gemini's; other kinds do not depend on the model.
    pub fn parameters_for(self, upstream_model: &str) -> Parameters {
        match self {
            Self::Vertex if super::vertex::is_anthropic_model(upstream_model) => {
                Self::Anthropic.default_parameters()
            }
            _ => self.default_parameters(),
        }
    }
}

/// An API key. Its `Debug` never shows the secret. The header values a codec sends (the key
/// itself, and `Bearer <key>`) are built once, here, marked sensitive.
#[derive(Clone)]
pub struct ApiKey(Arc<KeyInner>);

struct KeyInner {
    key: Arc<str>,
    /// `None` when the key is not a valid header value.
    plain: Option<http::HeaderValue>,
    bearer: Option<http::HeaderValue>,
}

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        let key = key.into();
        let sensitive = |v: &str| {
            let mut v = http::HeaderValue::from_str(v).ok()?;
            v.set_sensitive(true);
            Some(v)
        };
        Self(Arc::new(KeyInner {
            plain: sensitive(&key),
            bearer: sensitive(&format!("Bearer {key}")),
            key,
        }))
    }
    /// The secret, for the codec that puts it in a header.
    pub fn expose(&self) -> &str {
        &self.0.key
    }
    /// The key as a sensitive header value (`x-api-key`, `x-goog-api-key`); an error if it is
    /// not a valid header value.
    pub fn header_value(&self) -> Result<http::HeaderValue, crate::Error> {
        self.0.plain.clone().ok_or_else(invalid_key)
    }
    /// `Bearer <key>` as a sensitive header value (`Authorization`).
    pub fn bearer_header_value(&self) -> Result<http::HeaderValue, crate::Error> {
        self.0.bearer.clone().ok_or_else(invalid_key)
    }
}

fn invalid_key() -> crate::Error {
    crate::Error::upstream("provider API key is not a valid header value")
}

impl PartialEq for ApiKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for ApiKey {}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Per-attempt deadlines. `None` means no deadline of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deadlines {
    /// The whole attempt (non-streaming) or the whole stream.
    pub total: Option<Duration>,
    /// Until the first chunk of a stream.
    pub first_token: Option<Duration>,
    /// Between chunks of a stream.
    pub idle: Option<Duration>,
}

impl Deadlines {
    /// `self`, with unset fields taken from `fallback`.
    #[must_use]
    pub fn or(self, fallback: Self) -> Self {
        Self {
            total: self.total.or(fallback.total),
            first_token: self.first_token.or(fallback.first_token),
            idle: self.idle.or(fallback.idle),
        }
    }

    /// Whether no deadline is set.
    pub fn is_none(&self) -> bool {
        self.total.is_none() && self.first_token.is_none() && self.idle.is_none()
    }
}

/// How an OpenAI-compatible provider names request fields (`dialect` on `[providers.*]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OpenAiDialect {
    /// OpenAI's names.
    #[default]
    Openai,
    /// Mistral's: `seed` is sent as `random_seed`.
    Mistral,
}

/// A configured upstream provider (one deployment: a base URL and a key).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Provider {
    /// Name used in `provider/model` ids and provider preferences (`openai`, `groq`, …).
    pub name: Arc<str>,
    /// Wire format.
    pub kind: ProviderKind,
    /// Base URL, without a trailing slash. OpenAI-compatible: ends in `/v1`; Anthropic and
    /// Gemini: the bare origin.
    pub base_url: Arc<str>,
    /// API key, if the provider needs one.
    pub api_key: Option<ApiKey>,
    /// Default deadlines for its models.
    pub deadlines: Deadlines,
    /// Whether the provider may retain prompts (`provider.data_collection: "deny"` skips it).
    pub data_collection: bool,
    /// Typical output speed in tokens per second, for `provider.sort: "throughput"` (an
    /// endpoint's own hint wins).
    pub throughput: Option<f64>,
    /// The request parameters it accepts, when the catalog names them (`supported_parameters`
    /// on `[providers.*]`): an endpoint without its own list takes this one, and the
    /// OpenAI-compatible codec drops or refuses the others (see
    /// [`OpenAiCompat`](super::openai_compat::OpenAiCompat)). `None`: the kind's default set, nothing dropped.
    pub parameters: Option<super::Parameters>,
    /// How an OpenAI-compatible provider departs from OpenAI's request names.
    pub dialect: OpenAiDialect,
    /// The URL [`Provider::endpoint`] built first, with the base URL and path it came from.
    endpoint: OnceLock<(Arc<str>, &'static str, http::Uri)>,
    /// The wire format: the built-in codec of `kind`, or the one given to
    /// [`with_codec`](Self::with_codec).
    codec: Arc<dyn ProviderCodec>,
    /// An authentication step run on each encoded request, if any.
    auth: Option<Arc<dyn ProviderAuth>>,
}

impl Provider {
    /// A provider with no key, no deadlines and the default data policy.
    pub fn new(name: impl Into<Arc<str>>, kind: ProviderKind, base_url: &str) -> Self {
        Self {
            name: name.into(),
            kind,
            base_url: base_url.trim_end_matches('/').into(),
            api_key: None,
            deadlines: Deadlines::default(),
            data_collection: true,
            throughput: None,
            parameters: None,
            dialect: OpenAiDialect::Openai,
            endpoint: OnceLock::new(),
            codec: super::builtin(kind),
            auth: None,
        }
    }

    /// A provider speaking a wire format of your own: `codec` encodes requests and decodes
    /// answers, streams and errors (see [`ProviderCodec`]). `kind` then only chooses the
    /// default [parameter table](ProviderKind::default_parameters) for its models.
    #[must_use]
    pub fn with_codec(mut self, codec: impl ProviderCodec + 'static) -> Self {
        self.codec = Arc::new(codec);
        self
    }

    /// Runs `auth` on every encoded request before it is sent (request signing, refreshed
    /// tokens; see [`ProviderAuth`]).
    #[must_use]
    pub fn with_auth(mut self, auth: impl ProviderAuth + 'static) -> Self {
        self.auth = Some(Arc::new(auth));
        self
    }

    /// The provider's codec.
    pub fn codec(&self) -> &dyn ProviderCodec {
        &*self.codec
    }

    /// The provider's authentication step, if it has one.
    pub fn auth(&self) -> Option<&dyn ProviderAuth> {
        self.auth.as_deref()
    }

    /// The URL of `path` under the base URL (e.g. `/chat/completions`). The first one asked
    /// for is kept, so the path a wire format always uses is parsed once per provider rather
    /// than per request; a replaced `base_url` or another path is built afresh.
    pub(crate) fn endpoint(&self, path: &'static str) -> Result<http::Uri, Error> {
        if let Some((base, p, uri)) = self.endpoint.get() {
            if Arc::ptr_eq(base, &self.base_url) && *p == path {
                return Ok(uri.clone());
            }
            return join_url(&self.base_url, path);
        }
        let uri = join_url(&self.base_url, path)?;
        let _ = self
            .endpoint
            .set((self.base_url.clone(), path, uri.clone()));
        Ok(uri)
    }

    /// Sets whether the provider may retain prompts.
    #[must_use]
    pub fn with_data_collection(mut self, retains: bool) -> Self {
        self.data_collection = retains;
        self
    }

    /// Sets the throughput hint in tokens per second.
    #[must_use]
    pub fn with_throughput(mut self, tokens_per_second: f64) -> Self {
        self.throughput = Some(tokens_per_second);
        self
    }

    /// Sets the request parameters it accepts (see [`Provider::parameters`]).
    #[must_use]
    pub fn with_parameters(mut self, p: super::Parameters) -> Self {
        self.parameters = Some(p);
        self
    }

    /// Sets the OpenAI-compatible dialect.
    #[must_use]
    pub fn with_dialect(mut self, d: OpenAiDialect) -> Self {
        self.dialect = d;
        self
    }

    /// Sets the API key.
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.api_key = Some(ApiKey::new(key));
        self
    }

    /// Sets default deadlines.
    #[must_use]
    pub fn with_deadlines(mut self, d: Deadlines) -> Self {
        self.deadlines = d;
        self
    }
}

/// Joins a base URL and a path.
pub(crate) fn join_url(base: &str, path: &str) -> Result<http::Uri, Error> {
    let mut s = String::with_capacity(base.len() + path.len());
    s.push_str(base.trim_end_matches('/'));
    s.push_str(path);
    s.parse().map_err(|e| {
        Error::upstream("provider base URL is invalid").with_source(Box::new(e) as crate::BoxError)
    })
}
