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

mod builder;
mod model;
mod routing;
mod toml;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use crate::{Error, ErrorKind};

pub use crate::provider::{ApiKey, Deadlines, Parameters, Provider, ProviderKind};
pub use builder::CatalogBuilder;
pub use model::{Capabilities, Endpoint, EndpointSpec, Model, ModelKind, ModelSpec, Pricing};
pub use routing::{Routing, Rule, Split, DEFAULT_AUTO_MODEL};

/// The catalog's lookup tables. Their keys are the operator's (fixed once the catalog is
/// built); clients only look names up, so they cannot grow a table or fill it with colliding
/// keys, and a fast seeded hash (foldhash) is enough where a per-request lookup in SipHash
/// costs ~220 instructions.
type Table<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

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

    /// Up to three known ids or aliases closest to `id` (for "did you mean" messages): within
    /// an edit distance of half its length (at least 3), or containing it, or contained in it;
    /// closest first. Ids longer than [`CLOSE_MATCH_MAX_BYTES`] get none (no work is done for
    /// them). The cost is linear in the catalog's names: one pass, each name compared with
    /// `id` in O(`id` length × name length), the best three kept as it goes.
    pub fn close_matches(&self, id: &str) -> Vec<&str> {
        if id.len() > CLOSE_MATCH_MAX_BYTES {
            return Vec::new();
        }
        let limit = (id.len() / 2).max(3);
        let mut lev = Levenshtein::new(id);
        let mut best: Vec<(usize, &str)> = Vec::with_capacity(4);
        let names = self
            .inner
            .models
            .iter()
            .map(|m| &*m.id)
            .chain(self.inner.aliases.keys().map(String::as_str))
            .chain(self.inner.routing.splits.keys().map(|k| &**k))
            .chain(self.inner.routing.auto.as_deref());
        for cand in names {
            let contains = cand.contains(id) || id.contains(cand);
            // The distance is at least the difference in length: skip names too far off.
            if !contains && cand.len().abs_diff(id.len()) > limit * 4 {
                continue;
            }
            let d = lev.distance(cand);
            if d > limit && !contains {
                continue;
            }
            let at = best.partition_point(|&b| b <= (d, cand));
            if at < 3 {
                best.insert(at, (d, cand));
                best.truncate(3);
            }
        }
        best.into_iter().map(|(_, c)| c).collect()
    }
}

/// The longest id [`Catalog::close_matches`] looks for (bytes); longer ones get no
/// suggestions. The same as the resolver's default id limit
/// ([`resolve::DEFAULT_MAX_ID_BYTES`](crate::resolve::DEFAULT_MAX_ID_BYTES)).
pub const CLOSE_MATCH_MAX_BYTES: usize = 256;

/// Edit distance (Levenshtein over chars) from one id to many names, reusing its buffers.
struct Levenshtein {
    a: Vec<char>,
    prev: Vec<usize>,
    cur: Vec<usize>,
}

impl Levenshtein {
    fn new(a: &str) -> Self {
        let a: Vec<char> = a.chars().collect();
        let n = a.len() + 1;
        Self {
            a,
            prev: Vec::with_capacity(n),
            cur: vec![0; n],
        }
    }

    fn distance(&mut self, b: &str) -> usize {
        let (a, prev, cur) = (&self.a, &mut self.prev, &mut self.cur);
        prev.clear();
        prev.extend(0..=a.len());
        for (j, cb) in b.chars().enumerate() {
            cur[0] = j + 1;
            for (i, &ca) in a.iter().enumerate() {
                let sub = prev[i] + usize::from(ca != cb);
                cur[i + 1] = sub.min(prev[i + 1] + 1).min(cur[i] + 1);
            }
            std::mem::swap(prev, cur);
        }
        prev[a.len()]
    }
}

fn config_error(msg: String) -> Error {
    Error::new(ErrorKind::InvalidRequest, msg).with_code("invalid_config")
}
