//! The catalog: providers, models, aliases, prices and default deadlines.
//!
//! Built in code or loaded from TOML with [`Catalog::from_toml`]:
//!
//! ```toml
//! [settings]
//! passthrough = true            # unknown `provider/model` ids go to a configured provider
//!
//! [providers.openai]
//! kind = "openai"               # openai (any OpenAI-compatible server) | anthropic | gemini
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"  # or api_key = "sk-…"
//! base_url_env = "OPENAI_BASE_URL" # optional: overrides base_url when set
//! deadlines = { total_ms = 120000, first_token_ms = 20000, idle_ms = 30000 }
//! data_collection = false       # the provider does not retain prompts (default true)
//! throughput = 90.0             # optional tokens/s hint for `provider.sort = "throughput"`
//!
//! [providers.openai-eu]         # a second deployment of the same kind (another key or region)
//! kind = "openai"
//! base_url = "https://eu.api.openai.com/v1"
//!
//! [[models]]
//! id = "openai/gpt-4o-mini"     # provider/model; upstream defaults to the part after the slash
//! upstream = "gpt-4o-mini"
//! context_length = 128000
//! max_output = 16384
//! pricing = { input = 0.15, output = 0.60, cached_input = 0.075 }   # USD per million tokens
//!
//! [[models]]
//! id = "openai/gpt-4o"          # one id, several candidates (tried in this order by default)
//! capabilities = { tools = true, images = true }
//! # request parameters its endpoints accept (`provider.require_parameters`); default: the
//! # provider kind's set, see `ProviderKind::default_parameters`
//! supported_parameters = ["max_tokens", "temperature", "tools", "tool_choice", "response_format"]
//! endpoints = [
//!   { provider = "openai", pricing = { input = 2.5, output = 10.0 } },
//!   { provider = "openai-eu", upstream = "gpt-4o", throughput = 70.0 },
//! ]
//!
//! [aliases]
//! fast = "openai/gpt-4o-mini"
//!
//! [routing]
//! auto = "auto"                 # the "cheapest candidate able to serve" id ("" turns it off)
//! auto_pool = ["openai/gpt-4o-mini", "openai/gpt-4o"]   # default: every model
//!
//! [[routing.rules]]             # first match wins; applies to requests for the auto id …
//! task = "summarize"            # `x-switchboard-task` header, else `metadata.task`
//! target = "fast"
//!
//! [[routing.rules]]
//! min_prompt_tokens = 100000    # estimated prompt size
//! applies_to = ["auto", "fast"] # … or for the ids listed here
//! target = "openai/gpt-4o"
//!
//! [routing.splits.chat]         # a virtual id: weighted, sticky per `user`
//! weights = { "openai/gpt-4o" = 90, "openai/gpt-4o-mini" = 10 }
//! ```
//!
//! How requests are routed over these sections is described in [`crate::resolve`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use crate::{Error, ErrorKind};

/// The catalog's lookup tables. Their keys are the operator's (fixed once the catalog is
/// built); clients only look names up, so they cannot grow a table or fill it with colliding
/// keys, and a fast seeded hash (foldhash) is enough where a per-request lookup in SipHash
/// costs ~220 instructions.
type Table<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

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
}

impl ProviderKind {
    /// Short name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
        }
    }

    /// The request parameters this wire format can honour, used when the catalog names none
    /// for an endpoint. OpenAI-compatible servers take them all; Anthropic has no `logprobs`,
    /// `top_logprobs`, `n > 1`, `seed`, `frequency_penalty`, `presence_penalty`, `logit_bias`
    /// or the open-model samplers (`min_p`, `top_a`, `repetition_penalty`); Gemini has no
    /// `logit_bias` and none of those samplers.
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
            Self::Gemini => Parameters::ALL.difference(Parameters::LOGIT_BIAS.union(SAMPLERS)),
        }
    }
}

macro_rules! parameters {
    ($($bit:literal $konst:ident $name:literal,)*) => {
        impl Parameters {
            $(
                #[doc = concat!("`", $name, "`.")]
                pub const $konst: Self = Self(1 << $bit);
            )*
            const NAMES: &'static [(&'static str, Self)] = &[$(($name, Self::$konst),)*];
        }
    };
}

/// A set of request parameters, for `provider.require_parameters`: what a request uses
/// (see [`crate::resolve`]) or what an endpoint accepts ([`Endpoint::supported_parameters`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Parameters(u32);

parameters! {
    0 MAX_TOKENS "max_tokens",
    1 TEMPERATURE "temperature",
    2 TOP_P "top_p",
    3 TOP_K "top_k",
    4 N "n",
    5 STOP "stop",
    6 SEED "seed",
    7 LOGPROBS "logprobs",
    8 TOP_LOGPROBS "top_logprobs",
    9 FREQUENCY_PENALTY "frequency_penalty",
    10 PRESENCE_PENALTY "presence_penalty",
    11 LOGIT_BIAS "logit_bias",
    12 TOOLS "tools",
    13 TOOL_CHOICE "tool_choice",
    14 PARALLEL_TOOL_CALLS "parallel_tool_calls",
    15 RESPONSE_FORMAT "response_format",
    16 REASONING "reasoning",
    17 MIN_P "min_p",
    18 TOP_A "top_a",
    19 REPETITION_PENALTY "repetition_penalty",
}

impl Parameters {
    /// No parameter.
    pub const NONE: Self = Self(0);
    /// Every parameter switchboard knows.
    pub const ALL: Self = Self((1 << 20) - 1);

    /// Both sets.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The parameters of `self` not in `other`.
    #[must_use]
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether every parameter of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// One parameter by its request field name. `max_completion_tokens` counts as
    /// `max_tokens`, `reasoning_effort` and `include_reasoning` as `reasoning`,
    /// `structured_outputs` as `response_format`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "max_completion_tokens" => Some(Self::MAX_TOKENS),
            "reasoning_effort" | "include_reasoning" => Some(Self::REASONING),
            "structured_outputs" => Some(Self::RESPONSE_FORMAT),
            _ => Self::NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| *p),
        }
    }

    /// A set from names; the error names the first unknown one.
    pub fn from_names<I, S>(names: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = Self::NONE;
        for n in names {
            let n = n.as_ref();
            set = set.union(Self::parse(n).ok_or_else(|| {
                let known: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                format!("unknown parameter `{n}` (known: {})", known.join(", "))
            })?);
        }
        Ok(set)
    }

    /// The names in the set, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .iter()
            .filter(move |(_, p)| self.contains(*p))
            .map(|(n, _)| *n)
    }
}

impl fmt::Debug for Parameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
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
    /// The URL [`Provider::endpoint`] built first, with the base URL and path it came from.
    endpoint: OnceLock<(Arc<str>, &'static str, http::Uri)>,
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
            endpoint: OnceLock::new(),
        }
    }

    /// The URL of `path` under the base URL (e.g. `/chat/completions`). The first one asked
    /// for is kept, so the path a wire format always uses is parsed once per provider rather
    /// than per request; a replaced `base_url` or another path is built afresh.
    pub(crate) fn endpoint(&self, path: &'static str) -> Result<http::Uri, Error> {
        if let Some((base, p, uri)) = self.endpoint.get() {
            if Arc::ptr_eq(base, &self.base_url) && *p == path {
                return Ok(uri.clone());
            }
            return crate::provider::join_url(&self.base_url, path);
        }
        let uri = crate::provider::join_url(&self.base_url, path)?;
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
    /// The request parameters it accepts: the catalog's list, else
    /// [`ProviderKind::default_parameters`].
    pub fn supported_parameters(&self) -> Parameters {
        self.parameters
            .unwrap_or_else(|| self.provider.kind.default_parameters())
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
}

/// Catalog-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Route unknown `provider/model` ids to a configured provider with the rest of the id as
    /// the upstream model name.
    pub passthrough: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self { passthrough: true }
    }
}

/// A routing rule ([`CatalogBuilder::rule`], TOML `[[routing.rules]]`): a request for one of
/// the ids it applies to goes to `target` instead when every condition set holds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Rule {
    /// Holds when the request's task (`x-switchboard-task` header, else `metadata.task`) is
    /// this one.
    pub task: Option<Arc<str>>,
    /// Holds when the estimated prompt has at least this many tokens.
    pub min_prompt_tokens: Option<u64>,
    /// The requested ids (models, aliases, splits, the auto id) the rule may reroute; empty:
    /// only the auto id.
    pub applies_to: Vec<Arc<str>>,
    /// Where matching requests go: a model, an alias, a split or the auto id.
    pub target: Arc<str>,
}

impl Rule {
    /// A rule sending matching requests to `target`; add at least one condition.
    pub fn new(target: impl Into<Arc<str>>) -> Self {
        Self {
            task: None,
            min_prompt_tokens: None,
            applies_to: Vec::new(),
            target: target.into(),
        }
    }

    /// Holds for requests of this task.
    #[must_use]
    pub fn task(mut self, task: impl Into<Arc<str>>) -> Self {
        self.task = Some(task.into());
        self
    }

    /// Holds for prompts of at least `tokens` estimated tokens.
    #[must_use]
    pub fn min_prompt_tokens(mut self, tokens: u64) -> Self {
        self.min_prompt_tokens = Some(tokens);
        self
    }

    /// The requested ids the rule may reroute (default: only the auto id).
    #[must_use]
    pub fn applies_to<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.applies_to = ids.into_iter().map(Into::into).collect();
        self
    }

    fn has_condition(&self) -> bool {
        self.task.is_some() || self.min_prompt_tokens.is_some()
    }
}

/// A weighted split under a virtual model id (A/B tests, gradual rollouts):
/// [`CatalogBuilder::split`], TOML `[routing.splits.<id>] weights = { … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Split {
    /// The virtual id clients request.
    pub id: Arc<str>,
    /// Targets (models or aliases) and their weights, in a fixed order (the builder's; TOML
    /// sorts them by name). A draw modulo the total weight falls on the arm whose cumulative
    /// range holds it, so a user keeps an arm while the weights stay the same.
    pub arms: Vec<(Arc<str>, u32)>,
}

impl Split {
    /// The sum of the weights.
    pub fn total_weight(&self) -> u64 {
        self.arms.iter().map(|(_, w)| u64::from(*w)).sum()
    }

    /// The arm a uniformly drawn number falls on (`draw` is reduced modulo the total weight).
    pub fn pick(&self, draw: u64) -> Option<&str> {
        let total = self.total_weight();
        if total == 0 {
            return None;
        }
        let mut point = draw % total;
        for (target, w) in &self.arms {
            let w = u64::from(*w);
            if point < w {
                return Some(target);
            }
            point -= w;
        }
        None
    }
}

/// The default id of the "cheapest candidate able to serve" model.
pub const DEFAULT_AUTO_MODEL: &str = "auto";

/// Routing configuration: the auto model, rules and splits (TOML `[routing]`).
#[derive(Debug, Clone)]
pub struct Routing {
    auto: Option<Arc<str>>,
    auto_explicit: bool,
    auto_pool: Vec<Arc<str>>,
    rules: Vec<Rule>,
    rule_ids: std::collections::HashSet<Arc<str>, foldhash::fast::RandomState>,
    splits: Table<Arc<str>, Split>,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            auto: Some(DEFAULT_AUTO_MODEL.into()),
            auto_explicit: false,
            auto_pool: Vec::new(),
            rules: Vec::new(),
            rule_ids: std::collections::HashSet::default(),
            splits: Table::default(),
        }
    }
}

impl Routing {
    /// The id of the auto model, if on (default `auto`).
    pub fn auto_model(&self) -> Option<&str> {
        self.auto.as_deref()
    }

    /// The models the auto model chooses from; empty means every model.
    pub fn auto_pool(&self) -> &[Arc<str>] {
        &self.auto_pool
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether some rule may reroute a request for `id`.
    pub fn has_rules_for(&self, id: &str) -> bool {
        !self.rule_ids.is_empty() && self.rule_ids.contains(id)
    }

    /// Whether `rule` may reroute a request for `id`.
    pub fn rule_applies_to(&self, rule: &Rule, id: &str) -> bool {
        if rule.applies_to.is_empty() {
            self.auto.as_deref() == Some(id)
        } else {
            rule.applies_to.iter().any(|a| &**a == id)
        }
    }

    /// A split by its virtual id.
    pub fn split(&self, id: &str) -> Option<&Split> {
        self.splits.get(id)
    }

    /// All splits (in no particular order).
    pub fn splits(&self) -> impl Iterator<Item = &Split> {
        self.splits.values()
    }
}

/// Providers, models and aliases. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    inner: Arc<CatalogInner>,
}

#[derive(Debug, Default)]
struct CatalogInner {
    providers: Table<Arc<str>, Arc<Provider>>,
    models: Vec<Arc<Model>>,
    by_id: Table<Arc<str>, usize>,
    aliases: Table<String, String>,
    settings: Settings,
    routing: Routing,
}

impl Catalog {
    /// Starts an empty catalog builder.
    pub fn builder() -> CatalogBuilder {
        CatalogBuilder::default()
    }

    /// Loads a catalog from TOML (keys from `api_key_env` are read from the environment).
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        Self::from_toml_with_env(text, |k| std::env::var(k).ok())
    }

    /// Loads a catalog from TOML, looking environment variables up with `env`.
    pub fn from_toml_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let file: toml_format::File =
            toml::from_str(text).map_err(|e| config_error(format!("invalid catalog: {e}")))?;
        file.build(&env)
    }

    /// A provider by name.
    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.inner.providers.get(name)
    }

    /// All providers.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.inner.providers.values()
    }

    /// A model by id (aliases not applied).
    pub fn model(&self, id: &str) -> Option<&Arc<Model>> {
        self.inner.by_id.get(id).map(|&i| &self.inner.models[i])
    }

    /// All models in catalog order.
    pub fn models(&self) -> &[Arc<Model>] {
        &self.inner.models
    }

    /// The target of an alias.
    pub fn alias(&self, name: &str) -> Option<&str> {
        self.inner.aliases.get(name).map(String::as_str)
    }

    /// All aliases.
    pub fn aliases(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inner
            .aliases
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
    }

    /// Catalog-wide settings.
    pub fn settings(&self) -> Settings {
        self.inner.settings
    }

    /// Routing rules, splits and the auto model.
    pub fn routing(&self) -> &Routing {
        &self.inner.routing
    }

    /// The position of a model in [`Catalog::models`].
    pub(crate) fn model_index(&self, id: &str) -> Option<usize> {
        self.inner.by_id.get(id).copied()
    }

    /// A copy of this catalog with every provider rewritten by `f` (e.g. to point all of
    /// them at local demo servers); models keep their endpoints on the rewritten providers.
    #[must_use]
    pub fn map_providers(&self, mut f: impl FnMut(&Provider) -> Provider) -> Self {
        let providers: Table<Arc<str>, Arc<Provider>> = self
            .inner
            .providers
            .iter()
            .map(|(k, p)| (k.clone(), Arc::new(f(p))))
            .collect();
        let models = self
            .inner
            .models
            .iter()
            .map(|m| {
                let mut m = Model::clone(m);
                for e in &mut m.endpoints {
                    if let Some(p) = providers.get(&e.provider.name) {
                        e.provider = p.clone();
                    }
                }
                Arc::new(m)
            })
            .collect();
        self.rebuilt(providers, models)
    }

    /// This catalog with other providers and models (same ids, aliases, settings, routing).
    fn rebuilt(&self, providers: Table<Arc<str>, Arc<Provider>>, models: Vec<Arc<Model>>) -> Self {
        Self {
            inner: Arc::new(CatalogInner {
                providers,
                models,
                by_id: self.inner.by_id.clone(),
                aliases: self.inner.aliases.clone(),
                settings: self.inner.settings,
                routing: self.inner.routing.clone(),
            }),
        }
    }

    /// A copy of this catalog with prices imported from OpenRouter's `/api/v1/models` JSON
    /// (`{"data": [{"id", "pricing": {"prompt", "completion", "input_cache_read",
    /// "input_cache_write", "request"}}]}`, USD per token as strings). Endpoints that already
    /// have prices keep them. Returns the catalog and how many endpoints got prices.
    pub fn with_openrouter_prices(&self, json: &str) -> Result<(Self, usize), Error> {
        #[derive(Deserialize)]
        struct List {
            data: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            id: String,
            pricing: Option<HashMap<String, serde_json::Value>>,
        }
        let list: List = serde_json::from_str(json)
            .map_err(|e| config_error(format!("prices: not OpenRouter's model list: {e}")))?;
        let mut prices: HashMap<String, Pricing> = HashMap::new();
        for e in list.data {
            let Some(p) = e.pricing else { continue };
            let get = |k: &str| -> Result<Option<f64>, Error> {
                let Some(v) = p.get(k) else { return Ok(None) };
                let n = match v {
                    serde_json::Value::String(s) => s.parse::<f64>().ok(),
                    serde_json::Value::Number(n) => n.as_f64(),
                    _ => None,
                };
                match n {
                    Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
                    Some(n) if n < 0.0 => Ok(None), // OpenRouter uses -1 for "variable"
                    _ => Err(config_error(format!(
                        "prices: {}.pricing.{k}: `{v}` is not a price",
                        e.id
                    ))),
                }
            };
            let per_million = |x: Option<f64>| x.map(|v| (v * 1e6 * 1e9).round() / 1e9);
            prices.insert(
                e.id.clone(),
                Pricing {
                    input: per_million(get("prompt")?).unwrap_or(0.0),
                    output: per_million(get("completion")?).unwrap_or(0.0),
                    cached_input: per_million(get("input_cache_read")?),
                    cache_write: per_million(get("input_cache_write")?),
                    per_request: get("request")?.filter(|r| *r > 0.0),
                },
            );
        }
        let mut updated = 0;
        let models = self
            .inner
            .models
            .iter()
            .map(|m| {
                let Some(p) = prices.get(&*m.id) else {
                    return m.clone();
                };
                let mut m = Model::clone(m);
                for e in &mut m.endpoints {
                    if e.pricing.is_none() {
                        e.pricing = Some(*p);
                        updated += 1;
                    }
                }
                Arc::new(m)
            })
            .collect();
        Ok((self.rebuilt(self.inner.providers.clone(), models), updated))
    }

    /// Up to three known ids or aliases closest to `id` (for "did you mean" messages).
    pub fn close_matches(&self, id: &str) -> Vec<&str> {
        let mut scored: Vec<(usize, &str)> = self
            .inner
            .models
            .iter()
            .map(|m| &*m.id)
            .chain(self.inner.aliases.keys().map(String::as_str))
            .chain(self.inner.routing.splits.keys().map(|k| &**k))
            .chain(self.inner.routing.auto.as_deref())
            .map(|cand| (distance(id, cand), cand))
            .collect();
        scored.sort_unstable();
        let limit = (id.len() / 2).max(3);
        scored
            .into_iter()
            .filter(|(d, c)| *d <= limit || c.contains(id) || id.contains(*c))
            .take(3)
            .map(|(_, c)| c)
            .collect()
    }
}

/// Edit distance (Levenshtein over chars), for close matches.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn config_error(msg: String) -> Error {
    Error::new(ErrorKind::InvalidRequest, msg).with_code("invalid_config")
}

/// Builds a [`Catalog`] in code.
#[derive(Debug, Default)]
pub struct CatalogBuilder {
    inner: CatalogInner,
    errors: Vec<String>,
}

/// A model description for [`CatalogBuilder::model`].
#[derive(Debug, Clone)]
pub struct ModelSpec {
    id: String,
    name: Option<String>,
    context_length: Option<u32>,
    max_output: Option<u32>,
    capabilities: Capabilities,
    parameters: Option<Parameters>,
    endpoints: Vec<EndpointSpec>,
}

/// One way to serve a model, for [`ModelSpec::add_endpoint`].
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    provider: String,
    upstream: Option<String>,
    pricing: Option<Pricing>,
    deadlines: Deadlines,
    parameters: Option<Parameters>,
    throughput: Option<f64>,
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
        }
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
    fn default_endpoint(&mut self) -> &mut EndpointSpec {
        if self.endpoints.is_empty() {
            self.endpoints.push(EndpointSpec::new(String::new()));
        }
        &mut self.endpoints[0]
    }
}

impl CatalogBuilder {
    /// Adds a provider.
    #[must_use]
    pub fn provider(mut self, p: Provider) -> Self {
        if self.inner.providers.contains_key(&p.name) {
            self.errors
                .push(format!("providers.{}: duplicate provider", p.name));
        }
        self.inner.providers.insert(p.name.clone(), Arc::new(p));
        self
    }

    /// Adds a model.
    #[must_use]
    pub fn model(mut self, spec: ModelSpec) -> Self {
        let m = match self.resolve_model(spec) {
            Ok(m) => m,
            Err(e) => {
                self.errors.push(e);
                return self;
            }
        };
        if self.inner.by_id.contains_key(&m.id) {
            self.errors
                .push(format!("models.{}: duplicate model id", m.id));
            return self;
        }
        self.inner
            .by_id
            .insert(m.id.clone(), self.inner.models.len());
        self.inner.models.push(Arc::new(m));
        self
    }

    fn resolve_model(&self, spec: ModelSpec) -> Result<Model, String> {
        let mut endpoints = Vec::new();
        let prefixed = spec.id.split_once('/');
        let specs = if spec.endpoints.is_empty() {
            vec![EndpointSpec::new(String::new())]
        } else {
            spec.endpoints
        };
        for e in specs {
            let (pname, default_upstream) = if e.provider.is_empty() {
                match prefixed {
                    Some((p, rest)) => (p.to_owned(), rest.to_owned()),
                    None => {
                        return Err(format!(
                            "models.{}: id has no `provider/` prefix and no endpoints",
                            spec.id
                        ))
                    }
                }
            } else {
                let rest = prefixed.map_or(spec.id.as_str(), |(_, r)| r).to_owned();
                (e.provider.clone(), rest)
            };
            let provider = self.inner.providers.get(pname.as_str()).ok_or_else(|| {
                format!("models.{}: provider `{pname}` is not configured", spec.id)
            })?;
            if let Some(p) = &e.pricing {
                let all = [
                    Some(p.input),
                    Some(p.output),
                    p.cached_input,
                    p.cache_write,
                    p.per_request,
                ];
                if all.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
                    return Err(format!("models.{}: prices must be non-negative", spec.id));
                }
            }
            if e.throughput.is_some_and(|t| !t.is_finite() || t <= 0.0) {
                return Err(format!(
                    "models.{}: throughput must be a positive number of tokens per second",
                    spec.id
                ));
            }
            endpoints.push(Endpoint {
                provider: provider.clone(),
                upstream: e.upstream.unwrap_or(default_upstream).into(),
                pricing: e.pricing,
                deadlines: e.deadlines.or(provider.deadlines),
                parameters: e.parameters.or(spec.parameters),
                throughput: e.throughput,
            });
        }
        Ok(Model {
            name: spec.name.unwrap_or_else(|| spec.id.clone()).into(),
            id: spec.id.into(),
            context_length: spec.context_length,
            max_output: spec.max_output,
            capabilities: spec.capabilities,
            endpoints,
        })
    }

    /// Adds an alias (`fast` → `openai/gpt-4o-mini`).
    #[must_use]
    pub fn alias(mut self, name: impl Into<String>, target: impl Into<String>) -> Self {
        self.inner.aliases.insert(name.into(), target.into());
        self
    }

    /// Turns pass-through of unknown `provider/model` ids on or off.
    #[must_use]
    pub fn passthrough(mut self, on: bool) -> Self {
        self.inner.settings.passthrough = on;
        self
    }

    /// Adds a routing rule (tried in the order added; the first that holds wins).
    #[must_use]
    pub fn rule(mut self, rule: Rule) -> Self {
        self.inner.routing.rules.push(rule);
        self
    }

    /// Adds a weighted split under the virtual id `id`: each request picks one arm
    /// (`target`, `weight`), sticky per `user`.
    #[must_use]
    pub fn split<I, S>(mut self, id: impl Into<Arc<str>>, arms: I) -> Self
    where
        I: IntoIterator<Item = (S, u32)>,
        S: Into<Arc<str>>,
    {
        let id = id.into();
        let split = Split {
            id: id.clone(),
            arms: arms.into_iter().map(|(t, w)| (t.into(), w)).collect(),
        };
        if self
            .inner
            .routing
            .splits
            .insert(id.clone(), split)
            .is_some()
        {
            self.errors
                .push(format!("routing.splits.{id}: duplicate split"));
        }
        self
    }

    /// The id of the auto model (default `auto`); an empty id turns it off.
    #[must_use]
    pub fn auto_model(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        self.inner.routing.auto = (!id.is_empty()).then(|| id.into());
        self.inner.routing.auto_explicit = true;
        self
    }

    /// The models the auto model chooses from (default: every model).
    #[must_use]
    pub fn auto_pool<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.inner.routing.auto_pool = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Validates and builds.
    pub fn build(mut self) -> Result<Catalog, Error> {
        let inner = &self.inner;
        let routing = &inner.routing;
        let is_model = |id: &str| inner.by_id.contains_key(id);
        let is_alias = |id: &str| inner.aliases.contains_key(id);
        let is_auto = |id: &str| routing.auto.as_deref() == Some(id);
        let known = |id: &str| {
            is_model(id)
                || is_alias(id)
                || routing.splits.contains_key(id)
                || is_auto(id)
                || (inner.settings.passthrough
                    && id
                        .split_once('/')
                        .is_some_and(|(p, _)| inner.providers.contains_key(p)))
        };
        let errors = &mut self.errors;
        for (alias, target) in &inner.aliases {
            if !known(target) {
                errors.push(format!(
                    "aliases.{alias}: target `{target}` is not a known model"
                ));
            }
        }
        if let Some(auto) = routing.auto.as_deref() {
            let taken = is_model(auto) || is_alias(auto) || routing.splits.contains_key(auto);
            if routing.auto_explicit && taken {
                errors.push(format!(
                    "routing.auto: `{auto}` is already a model, alias or split"
                ));
            }
        }
        for id in &routing.auto_pool {
            if !is_model(id) {
                errors.push(format!("routing.auto_pool: `{id}` is not a model"));
            }
        }
        for (id, split) in &routing.splits {
            if is_model(id) || is_alias(id) {
                errors.push(format!(
                    "routing.splits.{id}: `{id}` is already a model or alias"
                ));
            }
            if split.total_weight() == 0 {
                errors.push(format!(
                    "routing.splits.{id}.weights: at least one weight must be positive"
                ));
            }
            for (target, _) in &split.arms {
                if !known(target) || routing.splits.contains_key(&**target) || is_auto(target) {
                    errors.push(format!(
                        "routing.splits.{id}.weights: `{target}` is not a known model or alias"
                    ));
                }
            }
        }
        for (i, rule) in routing.rules.iter().enumerate() {
            if !rule.has_condition() {
                errors.push(format!(
                    "routing.rules[{i}]: set `task` or `min_prompt_tokens`"
                ));
            }
            if !known(&rule.target) {
                errors.push(format!(
                    "routing.rules[{i}].target: `{}` is not a known model, alias or split",
                    rule.target
                ));
            }
            for id in &rule.applies_to {
                if !known(id) {
                    errors.push(format!(
                        "routing.rules[{i}].applies_to: `{id}` is not a known model, alias, split or the auto id"
                    ));
                }
            }
            if rule.applies_to.is_empty() && routing.auto.is_none() {
                errors.push(format!(
                    "routing.rules[{i}].applies_to: required when the auto model is off"
                ));
            }
        }
        if !self.errors.is_empty() {
            self.errors.sort();
            return Err(config_error(self.errors.join("; ")));
        }
        let routing = &mut self.inner.routing;
        let auto = routing.auto.clone();
        routing.rule_ids = routing
            .rules
            .iter()
            .flat_map(|r| {
                let ids: Vec<Arc<str>> = if r.applies_to.is_empty() {
                    auto.iter().cloned().collect()
                } else {
                    r.applies_to.clone()
                };
                ids
            })
            .collect();
        Ok(Catalog {
            inner: Arc::new(self.inner),
        })
    }
}

mod toml_format {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct File {
        #[serde(default)]
        settings: SettingsFile,
        #[serde(default)]
        providers: BTreeMap<String, ProviderFile>,
        #[serde(default)]
        models: Vec<ModelFile>,
        #[serde(default)]
        aliases: BTreeMap<String, String>,
        #[serde(default)]
        routing: RoutingFile,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct RoutingFile {
        auto: Option<String>,
        auto_pool: Option<Vec<String>>,
        #[serde(default)]
        rules: Vec<RuleFile>,
        #[serde(default)]
        splits: BTreeMap<String, SplitFile>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RuleFile {
        task: Option<String>,
        min_prompt_tokens: Option<u64>,
        #[serde(default)]
        applies_to: Vec<String>,
        target: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SplitFile {
        weights: BTreeMap<String, u32>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct SettingsFile {
        passthrough: Option<bool>,
    }

    #[derive(Deserialize, Default, Clone, Copy)]
    #[serde(deny_unknown_fields)]
    struct DeadlinesFile {
        total_ms: Option<u64>,
        first_token_ms: Option<u64>,
        idle_ms: Option<u64>,
    }

    impl From<DeadlinesFile> for Deadlines {
        fn from(d: DeadlinesFile) -> Self {
            Self {
                total: d.total_ms.map(Duration::from_millis),
                first_token: d.first_token_ms.map(Duration::from_millis),
                idle: d.idle_ms.map(Duration::from_millis),
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ProviderFile {
        kind: ProviderKind,
        base_url: String,
        base_url_env: Option<String>,
        api_key: Option<String>,
        api_key_env: Option<String>,
        #[serde(default)]
        deadlines: DeadlinesFile,
        #[serde(default = "yes")]
        data_collection: bool,
        throughput: Option<f64>,
    }

    fn yes() -> bool {
        true
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ModelFile {
        id: String,
        name: Option<String>,
        upstream: Option<String>,
        context_length: Option<u32>,
        max_output: Option<u32>,
        #[serde(default)]
        capabilities: Capabilities,
        pricing: Option<Pricing>,
        #[serde(default)]
        deadlines: DeadlinesFile,
        supported_parameters: Option<Vec<String>>,
        throughput: Option<f64>,
        #[serde(default)]
        endpoints: Vec<EndpointFile>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct EndpointFile {
        provider: String,
        upstream: Option<String>,
        pricing: Option<Pricing>,
        #[serde(default)]
        deadlines: DeadlinesFile,
        supported_parameters: Option<Vec<String>>,
        throughput: Option<f64>,
    }

    fn parameters(
        names: Option<Vec<String>>,
        field: impl FnOnce() -> String,
        errors: &mut Vec<String>,
    ) -> Option<Parameters> {
        match Parameters::from_names(names?) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(format!("{}: {e}", field()));
                None
            }
        }
    }

    impl File {
        pub(super) fn build(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Catalog, Error> {
            let mut b = Catalog::builder();
            for (name, p) in self.providers {
                let base_url = p
                    .base_url_env
                    .as_deref()
                    .and_then(env)
                    .filter(|u| !u.is_empty())
                    .unwrap_or(p.base_url);
                let mut prov = Provider::new(name.as_str(), p.kind, &base_url)
                    .with_deadlines(p.deadlines.into());
                prov.data_collection = p.data_collection;
                prov.throughput = p.throughput;
                if p.throughput.is_some_and(|t| !t.is_finite() || t <= 0.0) {
                    b.errors.push(format!(
                        "providers.{name}.throughput: must be a positive number of tokens per second"
                    ));
                }
                if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                    b.errors.push(format!(
                        "providers.{name}.base_url: `{base_url}` must start with http:// or https://"
                    ));
                }
                let key = p
                    .api_key
                    .or_else(|| p.api_key_env.as_deref().and_then(env))
                    .filter(|k| !k.is_empty());
                if let Some(k) = key {
                    prov = prov.with_api_key(k);
                }
                b = b.provider(prov);
            }
            for m in self.models {
                let mut spec = ModelSpec::new(m.id.clone());
                spec.name = m.name;
                spec.context_length = m.context_length;
                spec.max_output = m.max_output;
                spec.capabilities = m.capabilities;
                spec.parameters = parameters(
                    m.supported_parameters,
                    || format!("models.{}.supported_parameters", m.id),
                    &mut b.errors,
                );
                if m.endpoints.is_empty() {
                    let ep = spec.default_endpoint();
                    ep.upstream = m.upstream;
                    ep.pricing = m.pricing;
                    ep.deadlines = m.deadlines.into();
                    ep.throughput = m.throughput;
                } else {
                    if m.upstream.is_some() || m.pricing.is_some() {
                        b.errors.push(format!(
                            "models.{}: set `upstream` and `pricing` per endpoint when `endpoints` is given",
                            m.id
                        ));
                    }
                    for (i, e) in m.endpoints.into_iter().enumerate() {
                        let params = parameters(
                            e.supported_parameters,
                            || format!("models.{}.endpoints[{i}].supported_parameters", m.id),
                            &mut b.errors,
                        );
                        spec.endpoints.push(EndpointSpec {
                            provider: e.provider,
                            upstream: e.upstream,
                            pricing: e.pricing,
                            deadlines: Deadlines::from(e.deadlines).or(m.deadlines.into()),
                            parameters: params,
                            throughput: e.throughput.or(m.throughput),
                        });
                    }
                }
                b = b.model(spec);
            }
            for (a, t) in self.aliases {
                b = b.alias(a, t);
            }
            if let Some(p) = self.settings.passthrough {
                b = b.passthrough(p);
            }
            let r = self.routing;
            if let Some(auto) = r.auto {
                b = b.auto_model(auto);
            }
            if let Some(pool) = r.auto_pool {
                b = b.auto_pool(pool);
            }
            for rule in r.rules {
                b = b.rule(Rule {
                    task: rule.task.map(Into::into),
                    min_prompt_tokens: rule.min_prompt_tokens,
                    applies_to: rule.applies_to.into_iter().map(Into::into).collect(),
                    target: rule.target.into(),
                });
            }
            for (id, split) in r.splits {
                b = b.split(id, split.weights);
            }
            b.build()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_is_built_once_and_follows_a_replaced_base_url() {
        let mut p = Provider::new("p", ProviderKind::Openai, "http://a.test/v1/");
        let first = p.endpoint("/chat/completions").unwrap();
        assert_eq!(first, "http://a.test/v1/chat/completions");
        assert_eq!(p.endpoint("/chat/completions").unwrap(), first);
        assert_eq!(
            p.endpoint("/models").unwrap(),
            "http://a.test/v1/models",
            "another path is built, not the kept one"
        );
        p.base_url = "http://b.test/v1".into();
        assert_eq!(
            p.endpoint("/chat/completions").unwrap(),
            "http://b.test/v1/chat/completions"
        );
        p.base_url = "not a url".into();
        assert!(p.endpoint("/chat/completions").is_err());
    }

    const TOML: &str = r#"
[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1/"
api_key_env = "TEST_OPENAI_KEY"
deadlines = { total_ms = 1000 }

[providers.groq]
kind = "openai"
base_url = "https://api.groq.com/openai/v1"
data_collection = false

[[models]]
id = "openai/gpt-4o-mini"
context_length = 128000
pricing = { input = 0.15, output = 0.6 }

[[models]]
id = "meta-llama/llama-3.1-70b"
endpoints = [
  { provider = "groq", upstream = "llama-3.1-70b-versatile", pricing = { input = 0.59, output = 0.79 } },
  { provider = "openai" },
]

[aliases]
fast = "openai/gpt-4o-mini"
"#;

    #[test]
    fn loads_toml() {
        let c =
            Catalog::from_toml_with_env(TOML, |k| (k == "TEST_OPENAI_KEY").then(|| "sk-x".into()))
                .unwrap();
        let p = c.provider("openai").unwrap();
        assert_eq!(&*p.base_url, "https://api.openai.com/v1");
        assert_eq!(p.api_key.as_ref().unwrap().expose(), "sk-x");
        assert!(!format!("{p:?}").contains("sk-x"));
        let m = c.model("openai/gpt-4o-mini").unwrap();
        assert_eq!(&*m.endpoints[0].upstream, "gpt-4o-mini");
        assert_eq!(m.endpoints[0].deadlines.total, Some(Duration::from_secs(1)));
        let l = c.model("meta-llama/llama-3.1-70b").unwrap();
        assert_eq!(l.endpoints.len(), 2);
        assert_eq!(&*l.endpoints[1].upstream, "llama-3.1-70b");
        assert_eq!(c.alias("fast"), Some("openai/gpt-4o-mini"));
        assert_eq!(
            c.close_matches("openai/gpt-4o-mni"),
            vec!["openai/gpt-4o-mini"]
        );
    }

    #[test]
    fn imports_openrouter_prices() {
        let c = Catalog::from_toml_with_env(TOML, |_| None).unwrap();
        let json = r#"{"data":[{"id":"meta-llama/llama-3.1-70b","pricing":{"prompt":"0.0000004","completion":"0.0000004","request":"0","input_cache_read":"0.0000001"}},{"id":"openai/gpt-4o-mini","pricing":{"prompt":"0.000001","completion":"0.000002"}},{"id":"other/x","pricing":{"prompt":"-1"}}]}"#;
        let (c2, n) = c.with_openrouter_prices(json).unwrap();
        assert_eq!(
            n, 1,
            "only the unpriced endpoint (openai) of the llama model"
        );
        let l = c2.model("meta-llama/llama-3.1-70b").unwrap();
        assert_eq!(
            l.endpoints[0].pricing.unwrap().input,
            0.59,
            "existing prices kept"
        );
        let p = l.endpoints[1].pricing.unwrap();
        assert_eq!((p.input, p.output, p.cached_input), (0.4, 0.4, Some(0.1)));
        assert_eq!(
            c2.model("openai/gpt-4o-mini").unwrap().endpoints[0]
                .pricing
                .unwrap()
                .input,
            0.15
        );
        let e = c
            .with_openrouter_prices(r#"{"data":[{"id":"a","pricing":{"prompt":"x"}}]}"#)
            .unwrap_err();
        assert!(e.message().contains("a.pricing.prompt"), "{}", e.message());
    }

    #[test]
    fn config_errors_name_the_field() {
        let bad = r#"
[providers.x]
kind = "openai"
base_url = "ftp://x"
[[models]]
id = "y/m"
[[models]]
id = "x/m"
pricing = { input = -1.0 }
[aliases]
a = "nowhere"
"#;
        let e = Catalog::from_toml_with_env(bad, |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("providers.x.base_url"), "{e}");
        assert!(e.contains("provider `y` is not configured"), "{e}");
        assert!(e.contains("non-negative"), "{e}");
        assert!(e.contains("aliases.a"), "{e}");
        let e = Catalog::from_toml_with_env(
            "[providers.x]\nkind = \"nope\"\nbase_url=\"http://x\"",
            |_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown variant"), "{e}");
    }

    const ROUTING_TOML: &str = r#"
[providers.openai-eu]
kind = "openai"
base_url = "http://eu/v1"
[providers.openai-us]
kind = "openai"
base_url = "http://us/v1"
data_collection = false
throughput = 80.0
[providers.anthropic]
kind = "anthropic"
base_url = "http://a"

[[models]]
id = "openai/gpt-4o"
supported_parameters = ["max_tokens", "temperature", "max_completion_tokens"]
throughput = 40.0
endpoints = [
  { provider = "openai-eu" },
  { provider = "openai-us", supported_parameters = ["seed"], throughput = 120.0 },
]
[[models]]
id = "anthropic/claude-sonnet-4"

[aliases]
deep = "anthropic/claude-sonnet-4"
smart = "ab"

[routing]
auto = "best"
auto_pool = ["openai/gpt-4o"]

[[routing.rules]]
task = "code"
target = "deep"

[[routing.rules]]
min_prompt_tokens = 1000
applies_to = ["best", "deep"]
target = "openai/gpt-4o"

[routing.splits.ab]
weights = { "openai/gpt-4o" = 3, "deep" = 1 }
"#;

    #[test]
    fn loads_routing_sections() {
        let c = Catalog::from_toml_with_env(ROUTING_TOML, |_| None).unwrap();
        let m = c.model("openai/gpt-4o").unwrap();
        assert_eq!(
            m.endpoints[0].supported_parameters(),
            Parameters::MAX_TOKENS.union(Parameters::TEMPERATURE)
        );
        assert_eq!(m.endpoints[1].supported_parameters(), Parameters::SEED);
        assert_eq!(m.endpoints[0].throughput_hint(), Some(40.0));
        assert_eq!(m.endpoints[1].throughput_hint(), Some(120.0));
        assert!(!m.endpoints[1].provider.data_collection);
        let s = c.model("anthropic/claude-sonnet-4").unwrap();
        assert_eq!(
            s.endpoints[0].supported_parameters(),
            ProviderKind::Anthropic.default_parameters()
        );
        assert!(!s.endpoints[0]
            .supported_parameters()
            .contains(Parameters::LOGPROBS));
        assert!(ProviderKind::Gemini
            .default_parameters()
            .contains(Parameters::SEED.union(Parameters::LOGPROBS)));
        assert!(!ProviderKind::Gemini
            .default_parameters()
            .contains(Parameters::LOGIT_BIAS));
        let r = c.routing();
        assert_eq!(r.auto_model(), Some("best"));
        assert_eq!(r.auto_pool().len(), 1);
        assert_eq!(r.rules().len(), 2);
        assert_eq!(r.rules()[0].task.as_deref(), Some("code"));
        assert!(r.has_rules_for("best") && r.has_rules_for("deep"));
        assert!(!r.has_rules_for("openai/gpt-4o"));
        let ab = r.split("ab").unwrap();
        assert_eq!(ab.total_weight(), 4);
        // TOML arms are in name order: `deep` takes draw 0, `openai/gpt-4o` draws 1..=3.
        assert_eq!(ab.pick(0), Some("deep"));
        assert_eq!(ab.pick(3), Some("openai/gpt-4o"));
        assert_eq!(ab.pick(4), Some("deep"));
        assert_eq!(c.alias("smart"), Some("ab"));
        // Without a [routing] section the auto model is `auto`.
        let plain = Catalog::from_toml_with_env(TOML, |_| None).unwrap();
        assert_eq!(plain.routing().auto_model(), Some(DEFAULT_AUTO_MODEL));
        assert!(plain.routing().rules().is_empty());
    }

    #[test]
    fn routing_config_errors_name_the_field() {
        let bad = r#"
[providers.x]
kind = "openai"
base_url = "http://x"
throughput = -3.0
[[models]]
id = "x/m"
supported_parameters = ["temperature", "warp_speed"]
endpoints = [{ provider = "x", supported_parameters = ["nope"] }]
[aliases]
fast = "x/m"
[routing]
auto = "fast"
auto_pool = ["x/unknown-model"]
[[routing.rules]]
target = "x/m"
[[routing.rules]]
task = "code"
applies_to = ["ghost"]
target = "nowhere"
[routing.splits.zero]
weights = { "x/m" = 0 }
[routing.splits.fast]
weights = { "elsewhere" = 1 }
"#;
        let e = Catalog::from_toml_with_env(bad, |_| None)
            .unwrap_err()
            .to_string();
        for needle in [
            "providers.x.throughput",
            "models.x/m.supported_parameters: unknown parameter `warp_speed`",
            "models.x/m.endpoints[0].supported_parameters: unknown parameter `nope`",
            "routing.auto: `fast` is already",
            "routing.auto_pool: `x/unknown-model`",
            "routing.rules[0]: set `task` or `min_prompt_tokens`",
            "routing.rules[1].target: `nowhere`",
            "routing.rules[1].applies_to: `ghost`",
            "routing.splits.zero.weights: at least one weight must be positive",
            "routing.splits.fast: `fast` is already a model or alias",
            "routing.splits.fast.weights: `elsewhere`",
        ] {
            assert!(e.contains(needle), "{needle} missing from {e}");
        }
        let e =
            Catalog::from_toml_with_env("[[routing.rules]]\nwhen = \"x\"\ntarget = \"y\"", |_| {
                None
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `when`"), "{e}");
        let e = Catalog::builder()
            .auto_model("")
            .rule(Rule::new("x").task("t"))
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains("routing.rules[0].applies_to: required"), "{e}");
    }
}
