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
//!
//! [[models]]
//! id = "openai/gpt-4o-mini"     # provider/model; upstream defaults to the part after the slash
//! upstream = "gpt-4o-mini"
//! context_length = 128000
//! max_output = 16384
//! pricing = { input = 0.15, output = 0.60, cached_input = 0.075 }   # USD per million tokens
//!
//! [aliases]
//! fast = "openai/gpt-4o-mini"
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::{Error, ErrorKind};

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
}

/// An API key. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self(key.into())
    }
    /// The secret, for the codec that puts it in a header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

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
        }
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

/// Providers, models and aliases. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    inner: Arc<CatalogInner>,
}

#[derive(Debug, Default)]
struct CatalogInner {
    providers: HashMap<Arc<str>, Arc<Provider>>,
    models: Vec<Arc<Model>>,
    by_id: HashMap<Arc<str>, usize>,
    aliases: HashMap<String, String>,
    settings: Settings,
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

    /// A copy of this catalog with every provider rewritten by `f` (e.g. to point all of
    /// them at local demo servers); models keep their endpoints on the rewritten providers.
    #[must_use]
    pub fn map_providers(&self, mut f: impl FnMut(&Provider) -> Provider) -> Self {
        let providers: HashMap<Arc<str>, Arc<Provider>> = self
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
        Self {
            inner: Arc::new(CatalogInner {
                providers,
                models,
                by_id: self.inner.by_id.clone(),
                aliases: self.inner.aliases.clone(),
                settings: self.inner.settings,
            }),
        }
    }

    /// Up to three known ids or aliases closest to `id` (for "did you mean" messages).
    pub fn close_matches(&self, id: &str) -> Vec<&str> {
        let mut scored: Vec<(usize, &str)> = self
            .inner
            .models
            .iter()
            .map(|m| &*m.id)
            .chain(self.inner.aliases.keys().map(String::as_str))
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
    endpoints: Vec<EndpointSpec>,
}

#[derive(Debug, Clone)]
struct EndpointSpec {
    provider: String,
    upstream: Option<String>,
    pricing: Option<Pricing>,
    deadlines: Deadlines,
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
    /// Adds a way to serve the model. Without any, the id's prefix names the provider.
    #[must_use]
    pub fn endpoint(
        mut self,
        provider: impl Into<String>,
        upstream: impl Into<String>,
        pricing: Option<Pricing>,
    ) -> Self {
        self.endpoints.push(EndpointSpec {
            provider: provider.into(),
            upstream: Some(upstream.into()),
            pricing,
            deadlines: Deadlines::default(),
        });
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
    fn default_endpoint(&mut self) -> &mut EndpointSpec {
        if self.endpoints.is_empty() {
            self.endpoints.push(EndpointSpec {
                provider: String::new(),
                upstream: None,
                pricing: None,
                deadlines: Deadlines::default(),
            });
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
            vec![EndpointSpec {
                provider: String::new(),
                upstream: None,
                pricing: None,
                deadlines: Deadlines::default(),
            }]
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
            endpoints.push(Endpoint {
                provider: provider.clone(),
                upstream: e.upstream.unwrap_or(default_upstream).into(),
                pricing: e.pricing,
                deadlines: e.deadlines.or(provider.deadlines),
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

    /// Validates and builds.
    pub fn build(mut self) -> Result<Catalog, Error> {
        for (alias, target) in &self.inner.aliases {
            let known = self.inner.by_id.contains_key(target.as_str())
                || self.inner.aliases.contains_key(target)
                || (self.inner.settings.passthrough
                    && target
                        .split_once('/')
                        .is_some_and(|(p, _)| self.inner.providers.contains_key(p)));
            if !known {
                self.errors.push(format!(
                    "aliases.{alias}: target `{target}` is not a known model"
                ));
            }
        }
        if !self.errors.is_empty() {
            self.errors.sort();
            return Err(config_error(self.errors.join("; ")));
        }
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
                if m.endpoints.is_empty() {
                    let ep = spec.default_endpoint();
                    ep.upstream = m.upstream;
                    ep.pricing = m.pricing;
                    ep.deadlines = m.deadlines.into();
                } else {
                    if m.upstream.is_some() || m.pricing.is_some() {
                        b.errors.push(format!(
                            "models.{}: set `upstream` and `pricing` per endpoint when `endpoints` is given",
                            m.id
                        ));
                    }
                    for e in m.endpoints {
                        spec.endpoints.push(EndpointSpec {
                            provider: e.provider,
                            upstream: e.upstream,
                            pricing: e.pricing,
                            deadlines: Deadlines::from(e.deadlines).or(m.deadlines.into()),
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
            b.build()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
