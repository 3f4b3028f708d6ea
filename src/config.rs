//! [`GatewayConfig`]: a catalog plus the ready gateway's own settings, from one TOML file.
//!
//! Besides the [catalog](crate::catalog) sections it reads:
//!
//! ```toml
//! [gateway]
//! max_body_bytes = 8388608          # request body limit (413 above)
//! body_timeout_ms = 30000           # slow client bodies (408)
//! request_timeout_ms = 300000       # default request budget across all attempts
//! max_request_timeout_ms = 600000   # cap on the client's x-switchboard-timeout-ms
//! retries = 0                       # retries of one target before the next candidate
//! max_models = 64                   # most entries in a request's `models` (400 above)
//! max_model_id_bytes = 256          # longest `model` / `models` entry (400 above)
//! max_messages = 10000              # messages in one request (400 above)
//! max_tools = 512                   # tools in one request (400 above)
//! max_tools_bytes = 1048576         # bytes of `tools`, and of `response_format` (400 above)
//! keep_alive_ms = 10000             # opt-in: SSE comments while a stream waits for its first output
//!
//! [cost]                            # targets without prices (pass-through models)
//! # unpriced_price = { input = 5.0, output = 15.0 }  # bill them at this; unset: keys with a
//! #                                                  # budget cannot reach them (403)
//! # provider_prices.openai = { input = 2.5, output = 10.0 }  # per provider, for every caller
//!
//! [server]                          # the ready gateway's listener
//! max_connections = 4096            # open connections (503 and close above)
//! header_read_timeout_ms = 30000    # a request head, and a new connection's first request
//! idle_timeout_ms = 75000           # keep-alive connections with nothing in flight
//! max_header_bytes = 65536          # one request head (431 above)
//! max_headers = 100                 # header fields in one request head (431 above)
//! h2_max_concurrent_streams = 256
//!
//! [cache]                           # the response cache (on by default)
//! enabled = true
//! ttl_secs = 3600
//! max_bytes = 268435456             # in-memory store bound (bytes)
//! max_entries = 100000
//! max_entry_bytes = 1048576         # larger answers are not stored
//! deterministic_only = false        # only cache temperature 0 or seeded requests
//! shared = false                    # true: gateway keys share entries (each key has its own by default)
//! # redis_url = "redis://127.0.0.1:6379/"   # share the cache, budgets and rate limits across instances (feature `redis`)
//!
//! [log]                             # the request log (feature `log-db`); off without path/url
//! path = "switchboard.db"           # a SQLite file (created, migrated, WAL), or:
//! # url = "postgres://user:pass@host/db"   # PostgreSQL, shared by several instances
//! bodies = false                    # also keep the prompt and the answer text
//! retention_days = 30               # rows older than this are pruned (0: kept forever)
//! queue = 10000                     # rows waiting for the writer (more are dropped, counted)
//!
//! [otel]                            # export the gen_ai.* spans over OTLP/HTTP (feature `otel`)
//! endpoint = "http://127.0.0.1:4318" # the collector (`/v1/traces` is added)
//! service_name = "switchboard"
//! headers = { "x-api-key" = "…" }
//!
//! [admin]                           # the admin API (/api/v1/generations, /api/v1/stats)
//! key_env = "SWITCHBOARD_ADMIN_KEY" # without it, admin routes answer loopback clients only
//!
//! [[keys]]                          # gateway API keys; none configured = no auth
//! name = "team-a"                   # the caller (budgets, logs)
//! key_env = "TEAM_A_KEY"            # or key = "sk-…", or key_sha256 = "<64 hex digits>"
//!                                   # (keys are kept only as SHA-256 digests)
//! models = ["openai/*", "fast"]     # allow-list (optional)
//! requests_per_minute = 60          # optional
//! tokens_per_minute = 100000        # optional (settled on real usage, see below)
//! budget = { usd = 5.0, window = "day" }   # day | month | total (optional)
//! ```
//!
//! Rate limits are token buckets per key, refilled continuously over a minute; a request
//! takes from both or neither (one refused for tokens does not use up a request). For tokens
//! per minute a request reserves its prompt estimate plus `max_tokens` (1024 output tokens
//! without it), and the reservation is replaced by the answer's real usage. Without
//! `redis_url` each instance counts its own limits (N instances allow N times them); with it,
//! every instance shares one count in Redis, and when Redis fails each instance counts on its
//! own for the time being (rate limits fail open to per-instance limits, budgets fail closed).
//! See [`keys`](crate::keys).

use std::time::Duration;

use serde::Deserialize;

use crate::catalog::Catalog;
use crate::cost::{Budget, Budgets, Window};
use crate::keys::{ClientKeysLayer, KeyPolicy};
use crate::{Error, ErrorKind};

/// The ready gateway's configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Providers, models, aliases, rules.
    pub catalog: Catalog,
    /// Server settings.
    pub settings: GatewaySettings,
    /// Client keys (empty: no auth).
    pub keys: ClientKeysLayer,
    /// Per-key budgets.
    pub budgets: Budgets,
    /// `[cache]` settings.
    pub cache: CacheSettings,
    /// `[server]` settings.
    pub server: ServerSettings,
    /// `[cost]` settings.
    pub cost: CostSettings,
    /// `[log]` settings.
    pub log: LogSettings,
    /// `[admin]` settings.
    pub admin: AdminSettings,
    /// `[[routing.shadows]]`: requests copied to candidates (see [`crate::shadow`]).
    pub shadows: Vec<crate::shadow::ShadowRule>,
    /// `[otel]` settings (`None`: no export).
    pub otel: Option<OtelSettings>,
}

/// `[otel]` settings: the `gen_ai.*` spans exported over OTLP/HTTP (protobuf; feature `otel`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OtelSettings {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`; `/v1/traces` is added
    /// unless the URL already ends with it).
    pub endpoint: String,
    /// The `service.name` resource attribute (default `switchboard`).
    #[serde(default)]
    pub service_name: Option<String>,
    /// Headers sent with every export (an API key of the collector, say).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// `[log]` settings: the request log (see `switchboard::request_log`, feature `log-db`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LogSettings {
    /// A SQLite file (created and migrated at start, opened in WAL mode).
    pub path: Option<String>,
    /// A PostgreSQL URL (`postgres://…`), for several instances sharing one log.
    pub url: Option<String>,
    /// Keep the prompt and the answer text too (default false).
    pub bodies: bool,
    /// Rows older than this many days are pruned (0: kept forever).
    pub retention_days: u32,
    /// Rows waiting for the writer at most; more are dropped (and counted).
    pub queue: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            path: None,
            url: None,
            bodies: false,
            retention_days: 30,
            queue: 10_000,
        }
    }
}

impl LogSettings {
    /// Whether a log is configured (`path` or `url`).
    pub fn enabled(&self) -> bool {
        self.path.is_some() || self.url.is_some()
    }
}

/// `[admin]` settings: who may read every generation and the stats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminSettings {
    /// The admin key (from `key_env`); `None`: admin routes answer loopback clients only.
    pub key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    key_env: Option<String>,
}

/// One `[[routing.shadows]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowFile {
    source: String,
    candidate: String,
    sample: f64,
    #[serde(default = "default_shadow_concurrency")]
    max_concurrency: usize,
}

const fn default_shadow_concurrency() -> usize {
    4
}

/// `[[routing.shadows]]` checked against the catalog.
fn shadow_rules(
    files: Vec<ShadowFile>,
    catalog: &Catalog,
    errors: &mut Vec<String>,
) -> Vec<crate::shadow::ShadowRule> {
    let routable = |id: &str| {
        catalog.model(id).is_some()
            || catalog.alias(id).is_some()
            || catalog.routing().split(id).is_some()
            || catalog.routing().auto_model() == Some(id)
    };
    let mut rules = Vec::new();
    for (i, f) in files.into_iter().enumerate() {
        let at = format!("routing.shadows[{i}]");
        if f.source.is_empty() || f.source == "task:" {
            errors.push(format!("{at}.source: empty"));
        }
        if !routable(&f.candidate) {
            errors.push(format!(
                "{at}.candidate: `{}` is not a known model, alias or split",
                f.candidate
            ));
        }
        if !(f.sample.is_finite() && (0.0..=1.0).contains(&f.sample)) {
            errors.push(format!("{at}.sample: a share from 0 to 1"));
        }
        if f.max_concurrency > crate::shadow::MAX_CONCURRENCY {
            errors.push(format!(
                "{at}.max_concurrency: at most {}",
                crate::shadow::MAX_CONCURRENCY
            ));
        }
        rules.push(
            crate::shadow::ShadowRule::new(&f.source, &f.candidate)
                .sample(f.sample)
                .max_concurrency(f.max_concurrency),
        );
    }
    rules
}

/// `[cache]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CacheSettings {
    /// Whether the response cache is on.
    pub enabled: bool,
    /// Default time to live, in seconds.
    pub ttl_secs: u64,
    /// In-memory store bound, in bytes.
    pub max_bytes: u64,
    /// In-memory store bound, in entries.
    pub max_entries: u64,
    /// Largest answer stored, in bytes.
    pub max_entry_bytes: usize,
    /// Cache only requests with temperature 0 or a seed.
    pub deterministic_only: bool,
    /// Share entries and in-flight requests across gateway keys (default false: each key
    /// has its own).
    pub shared: bool,
    /// A Redis URL: the cache, the budgets and the keys' rate limits live there (feature
    /// `redis`).
    pub redis_url: Option<String>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_secs: 3600,
            max_bytes: 256 * 1024 * 1024,
            max_entries: 100_000,
            max_entry_bytes: crate::cache::DEFAULT_MAX_ENTRY_BYTES,
            deterministic_only: false,
            shared: false,
            redis_url: None,
        }
    }
}

/// `[gateway]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct GatewaySettings {
    /// Request body limit in bytes.
    pub max_body_bytes: usize,
    /// Deadline for receiving the request body, in ms.
    pub body_timeout_ms: Option<u64>,
    /// Default request budget across attempts, in ms.
    pub request_timeout_ms: Option<u64>,
    /// Cap on the client's `x-switchboard-timeout-ms`.
    pub max_request_timeout_ms: Option<u64>,
    /// Retries of one target.
    pub retries: u32,
    /// The most entries a request's `models` may list.
    pub max_models: usize,
    /// The longest `model`, and the longest entry of `models`, in bytes.
    pub max_model_id_bytes: usize,
    /// The most messages in one request.
    pub max_messages: usize,
    /// The most tools in one request.
    pub max_tools: usize,
    /// The most bytes of `tools`, and of `response_format`, in one request.
    pub max_tools_bytes: usize,
    /// SSE keep-alive comments, every this many ms, while a streamed request (chat
    /// completions or `/v1/messages`) waits for its first output (off when absent).
    pub keep_alive_ms: Option<u64>,
}

/// `[cost]` settings: what targets without prices cost.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CostSettings {
    /// The price of unpriced targets for callers with a budget (`None`: such callers cannot
    /// reach them, 403).
    pub unpriced_price: Option<crate::catalog::Pricing>,
    /// Per provider, the price of its targets that have none of their own (pass-through
    /// models), for every caller.
    pub provider_prices: std::collections::BTreeMap<String, crate::catalog::Pricing>,
}

/// `[server]` settings: the ready gateway's listener (see `switchboard::server::ConnLimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ServerSettings {
    /// Open connections at most (over it: 503 and close).
    pub max_connections: usize,
    /// Time to send a whole request head, and a new connection's first request, in ms.
    pub header_read_timeout_ms: u64,
    /// A connection with nothing in flight for this long is closed, in ms.
    pub idle_timeout_ms: u64,
    /// Bytes of one request head (HTTP/1.1) or header list (HTTP/2).
    pub max_header_bytes: usize,
    /// Header fields in one HTTP/1.1 request head.
    pub max_headers: usize,
    /// Concurrent streams on one HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout_ms: 30_000,
            idle_timeout_ms: 75_000,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            h2_max_concurrent_streams: 256,
        }
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            max_body_bytes: crate::edge::DEFAULT_MAX_BODY_BYTES,
            body_timeout_ms: Some(30_000),
            request_timeout_ms: None,
            max_request_timeout_ms: None,
            retries: 0,
            max_models: crate::resolve::DEFAULT_MAX_MODELS,
            max_model_id_bytes: crate::resolve::DEFAULT_MAX_ID_BYTES,
            max_messages: crate::edge::DEFAULT_MAX_MESSAGES,
            max_tools: crate::edge::DEFAULT_MAX_TOOLS,
            max_tools_bytes: crate::edge::DEFAULT_MAX_TOOLS_BYTES,
            keep_alive_ms: None,
        }
    }
}

impl GatewaySettings {
    /// Body timeout as a duration.
    pub fn body_timeout(&self) -> Option<Duration> {
        self.body_timeout_ms.map(Duration::from_millis)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    name: String,
    key: Option<String>,
    key_env: Option<String>,
    key_sha256: Option<String>,
    models: Option<Vec<String>>,
    requests_per_minute: Option<u32>,
    tokens_per_minute: Option<u32>,
    budget: Option<BudgetFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetFile {
    usd: f64,
    #[serde(default = "default_window")]
    window: String,
}

fn default_window() -> String {
    "month".to_owned()
}

fn config_error(msg: String) -> Error {
    Error::new(ErrorKind::InvalidRequest, msg).with_code("invalid_config")
}

impl GatewayConfig {
    /// Parses a config file (keys named by `*_env` are read from the environment).
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        Self::from_toml_with_env(text, |k| std::env::var(k).ok())
    }

    /// Parses a config file, looking environment variables up with `env`.
    pub fn from_toml_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| config_error(format!("invalid config: {e}")))?;
        let settings: GatewaySettings = match table.remove("gateway") {
            Some(v) => v
                .try_into()
                .map_err(|e| config_error(format!("gateway: {e}")))?,
            None => GatewaySettings::default(),
        };
        let cost: CostSettings = match table.remove("cost") {
            Some(v) => v
                .try_into()
                .map_err(|e| config_error(format!("cost: {e}")))?,
            None => CostSettings::default(),
        };
        let server: ServerSettings = match table.remove("server") {
            Some(v) => v
                .try_into()
                .map_err(|e| config_error(format!("server: {e}")))?,
            None => ServerSettings::default(),
        };
        let cache: CacheSettings = match table.remove("cache") {
            Some(v) => v
                .try_into()
                .map_err(|e| config_error(format!("cache: {e}")))?,
            None => CacheSettings::default(),
        };
        if cache.redis_url.is_some() && !cfg!(feature = "redis") {
            return Err(config_error(
                "cache.redis_url: this build has no Redis support (cargo feature `redis`)".into(),
            ));
        }
        let log: LogSettings = match table.remove("log") {
            Some(v) => v
                .try_into()
                .map_err(|e| config_error(format!("log: {e}")))?,
            None => LogSettings::default(),
        };
        if log.path.is_some() && log.url.is_some() {
            return Err(config_error("log: give `path` or `url`, not both".into()));
        }
        if log.enabled() && !cfg!(feature = "log-db") {
            return Err(config_error(
                "log: this build has no request log (cargo feature `log-db`)".into(),
            ));
        }
        let otel: Option<OtelSettings> = match table.remove("otel") {
            Some(v) => Some(
                v.try_into()
                    .map_err(|e| config_error(format!("otel: {e}")))?,
            ),
            None => None,
        };
        if otel.is_some() && !cfg!(feature = "otel") {
            return Err(config_error(
                "otel: this build has no OTLP export (cargo feature `otel`)".into(),
            ));
        }
        let admin = match table.remove("admin") {
            Some(v) => {
                let f: AdminFile = v
                    .try_into()
                    .map_err(|e| config_error(format!("admin: {e}")))?;
                AdminSettings {
                    key: f
                        .key_env
                        .as_deref()
                        .and_then(&env)
                        .filter(|k| !k.trim().is_empty()),
                }
            }
            None => AdminSettings::default(),
        };
        let keys: Vec<KeyFile> = match table.remove("keys") {
            Some(v) => v
                .try_into()
                .map_err(|e| config_error(format!("keys: {e}")))?,
            None => Vec::new(),
        };
        let shadows: Vec<ShadowFile> = match table
            .get_mut("routing")
            .and_then(|r| r.as_table_mut())
            .and_then(|r| r.remove("shadows"))
        {
            Some(v) => v
                .try_into()
                .map_err(|e| config_error(format!("routing.shadows: {e}")))?,
            None => Vec::new(),
        };
        let rest =
            toml::to_string(&table).map_err(|e| config_error(format!("invalid config: {e}")))?;
        let catalog = Catalog::from_toml_with_env(&rest, &env)?;
        let mut layer = ClientKeysLayer::new();
        let mut budgets = Budgets::default();
        let mut errors = Vec::new();
        let shadows = shadow_rules(shadows, &catalog, &mut errors);
        let mut names = std::collections::HashSet::new();
        for (i, k) in keys.into_iter().enumerate() {
            let at = format!("keys[{i}] ({})", k.name);
            if !names.insert(k.name.clone()) {
                errors.push(format!("{at}: duplicate key name"));
            }
            // The key itself is hashed as soon as it is read and not kept.
            let secret = k.key.or_else(|| k.key_env.as_deref().and_then(&env));
            let secret = secret.filter(|s| !s.is_empty());
            if secret.is_none() && k.key_sha256.is_none() {
                errors.push(format!(
                    "{at}: no `key` or `key_sha256`, or `key_env` names an unset variable"
                ));
                continue;
            }
            let mut policy = KeyPolicy::new(k.name.as_str());
            if let Some(models) = k.models {
                for m in &models {
                    let known = m.ends_with('*')
                        || catalog.model(m).is_some()
                        || catalog.alias(m).is_some();
                    if !known {
                        errors.push(format!("{at}.models: `{m}` is not a known model or alias"));
                    }
                }
                policy = policy.allow_models(models);
            }
            if let Some(n) = k.requests_per_minute {
                policy = policy.requests_per_minute(n);
            }
            if let Some(n) = k.tokens_per_minute {
                policy = policy.tokens_per_minute(n);
            }
            if let Some(b) = k.budget {
                let window = match b.window.as_str() {
                    "day" => Window::Day,
                    "month" => Window::Month,
                    "total" => Window::Total,
                    other => {
                        errors.push(format!(
                            "{at}.budget.window: `{other}` (expected day, month or total)"
                        ));
                        Window::Total
                    }
                };
                if !b.usd.is_finite() || b.usd < 0.0 {
                    errors.push(format!("{at}.budget.usd: must be a non-negative number"));
                }
                budgets = budgets.with(k.name.as_str(), Budget::usd(b.usd, window));
            }
            layer = match (secret, k.key_sha256) {
                (Some(secret), None) => layer.key(secret, policy),
                (None, Some(hex)) => match layer.clone().key_sha256(&hex, policy) {
                    Ok(l) => l,
                    Err(e) => {
                        errors.push(format!("{at}.key_sha256: {}", e.message()));
                        layer
                    }
                },
                _ => {
                    errors.push(format!(
                        "{at}: give `key`/`key_env` or `key_sha256`, not both"
                    ));
                    layer
                }
            };
        }
        if !errors.is_empty() {
            return Err(config_error(errors.join("; ")));
        }
        Ok(Self {
            catalog,
            settings,
            keys: layer,
            budgets,
            cache,
            server,
            cost,
            log,
            admin,
            shadows,
            otel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1"
[[models]]
id = "openai/gpt-4o-mini"
[aliases]
fast = "openai/gpt-4o-mini"
"#;

    #[test]
    fn reads_gateway_and_keys() {
        let text = format!(
            "{BASE}\n[gateway]\nretries = 2\nmax_models = 8\n[[keys]]\nname = \"a\"\nkey_env = \"K\"\nmodels = [\"fast\"]\nbudget = {{ usd = 1.5, window = \"day\" }}\n"
        );
        let c = GatewayConfig::from_toml_with_env(&text, |k| (k == "K").then(|| "sk-1".into()))
            .unwrap();
        assert_eq!(c.settings.retries, 2);
        assert_eq!(c.settings.max_models, 8);
        assert_eq!(
            c.settings.max_model_id_bytes,
            crate::resolve::DEFAULT_MAX_ID_BYTES
        );
        assert!(!c.keys.is_empty());
        assert_eq!(
            c.budgets.for_caller("a"),
            Some(Budget::usd(1.5, Window::Day))
        );
        assert!(c.catalog.model("openai/gpt-4o-mini").is_some());
    }

    #[test]
    fn errors_name_the_field() {
        let text = format!(
            "{BASE}\n[[keys]]\nname = \"a\"\nkey_env = \"MISSING\"\n[[keys]]\nname = \"b\"\nkey = \"x\"\nmodels = [\"nope\"]\nbudget = {{ usd = -1.0, window = \"week\" }}\n"
        );
        let e = GatewayConfig::from_toml_with_env(&text, |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("keys[0] (a): no `key`"), "{e}");
        assert!(e.contains("keys[1] (b).models: `nope`"), "{e}");
        assert!(e.contains("keys[1] (b).budget.window: `week`"), "{e}");
        assert!(e.contains("keys[1] (b).budget.usd"), "{e}");
        let e = GatewayConfig::from_toml_with_env("[gateway]\nbogus = 1\n", |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("gateway: unknown field `bogus`"), "{e}");
    }

    #[test]
    fn reads_cost_and_server_sections() {
        let text = format!(
            "{BASE}\n[cost]\nunpriced_price = {{ input = 5.0, output = 15.0 }}\n\
             provider_prices.openai = {{ input = 2.5, output = 10.0 }}\n\
             [server]\nmax_connections = 10\nheader_read_timeout_ms = 5000\n"
        );
        let c = GatewayConfig::from_toml_with_env(&text, |_| None).unwrap();
        assert_eq!(c.cost.unpriced_price.map(|p| p.output), Some(15.0));
        assert_eq!(c.cost.provider_prices["openai"].input, 2.5);
        assert_eq!(c.server.max_connections, 10);
        assert_eq!(c.server.header_read_timeout_ms, 5000);
        assert_eq!(
            c.server.idle_timeout_ms,
            ServerSettings::default().idle_timeout_ms
        );
        let e =
            GatewayConfig::from_toml_with_env(&format!("{BASE}\n[cost]\nbogus = 1\n"), |_| None)
                .unwrap_err()
                .to_string();
        assert!(e.contains("cost: unknown field `bogus`"), "{e}");
    }

    #[test]
    fn keys_from_digests_and_debug_redacts_secrets() {
        let digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let text = format!(
            "{BASE}\n[[keys]]\nname = \"h\"\nkey_sha256 = \"{digest}\"\n[[keys]]\nname = \"p\"\nkey = \"sk-live-SECRET\"\n"
        );
        let c = GatewayConfig::from_toml_with_env(&text, |_| None).unwrap();
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("SECRET") && !printed.contains(digest),
            "{printed}"
        );
        let bad = format!("{BASE}\n[[keys]]\nname = \"h\"\nkey_sha256 = \"xyz\"\n");
        let e = GatewayConfig::from_toml_with_env(&bad, |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("keys[0] (h).key_sha256"), "{e}");
        let both =
            format!("{BASE}\n[[keys]]\nname = \"h\"\nkey = \"k\"\nkey_sha256 = \"{digest}\"\n");
        let e = GatewayConfig::from_toml_with_env(&both, |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");
    }
}
