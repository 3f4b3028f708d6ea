//! [`GatewayConfig`] → the layered [`Gateway`]: price imports, demo providers when no key is
//! set, the cache (memory or Redis), budgets, Fallback settings.

use std::time::Duration;

use crate::cache::{MemoryStore, ResponseCacheLayer};
use crate::config::{GatewayConfig, ServerSettings};
use crate::cost::{CostMeterLayer, UnpricedPolicy};
use crate::demo::DemoProviders;
use crate::fallback::FallbackLayer;
use crate::Gateway;

use super::Options;

/// The gateway with what it needs to stay alive and what it has to say.
pub(super) struct Wired {
    pub(super) gateway: Gateway,
    pub(super) server: ServerSettings,
    pub(super) notes: Vec<String>,
    pub(super) demo: Option<DemoProviders>,
    /// The request log and who may read it through the API.
    pub(super) log: Option<(
        crate::request_log::RequestLog,
        crate::request_log::ApiAccess,
    )>,
}

/// `examples/gateway.toml`, built in.
const EXAMPLE_CONFIG: &str = include_str!("../../examples/gateway.toml");

pub(super) async fn build(options: &Options) -> Result<Wired, String> {
    let mut notes = Vec::new();
    let text = match std::fs::read_to_string(&options.config) {
        Ok(t) => t,
        // An installed binary run outside a checkout still has the example catalog.
        Err(_) if options.config == super::DEFAULT_CONFIG => {
            notes.push(format!(
                "{} not found: using the example catalog built into the binary",
                super::DEFAULT_CONFIG
            ));
            EXAMPLE_CONFIG.to_owned()
        }
        Err(e) => return Err(format!("cannot read config {}: {e}", options.config)),
    };
    let config = GatewayConfig::from_toml(&text)
        .map_err(|e| format!("config {}: {}", options.config, e.message()))?;
    #[cfg(feature = "otel")]
    if let Some(otel) = &config.otel {
        notes.extend(super::otel::start(otel)?);
    }
    let mut catalog = config.catalog.clone();
    if let Some(path) = &options.prices {
        let json =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read prices {path}: {e}"))?;
        let (c, n) = catalog
            .with_openrouter_prices(&json)
            .map_err(|e| format!("{path}: {}", e.message()))?;
        notes.push(format!("imported prices for {n} endpoints from {path}"));
        catalog = c;
    }

    let mut demo = None;
    // A provider with its own auth step (Bedrock's SigV4, Vertex AI's tokens) counts only when
    // its credentials are found (a key pair, a readable profile, a key file); the metadata
    // server is not probed here.
    let has_credentials = |p: &crate::catalog::Provider| {
        p.api_key.is_some() || p.auth().is_some_and(|a| a.has_credentials())
    };
    let keyed: Vec<String> = catalog
        .providers()
        .filter(|p| has_credentials(p))
        .map(|p| p.name.to_string())
        .collect();
    if keyed.is_empty() {
        let d = DemoProviders::start()
            .await
            .map_err(|e| format!("cannot start the demo providers: {e}"))?;
        notes.push(format!(
            "no provider API keys or credentials set: using the built-in local demo providers \
             (OpenAI-compatible at {}, Anthropic at {}, Gemini at {}, Azure OpenAI at {}, \
             Bedrock at {} with its test key pair, Vertex AI at {} with its TEST-ONLY service \
             account); set OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, AWS credentials, \
             GOOGLE_APPLICATION_CREDENTIALS or another provider's key to use the real ones",
            d.openai.base_url(),
            d.anthropic.base_url(),
            d.gemini.base_url(),
            d.azure.base_url(),
            d.bedrock.base_url(),
            d.vertex.base_url(),
        ));
        catalog = catalog.map_providers(|p| d.serve(p));
        demo = Some(d);
    } else {
        notes.push(format!("providers with keys: {}", keyed.join(", ")));
        let missing: Vec<String> = catalog
            .providers()
            .filter(|p| !has_credentials(p))
            .map(|p| p.name.to_string())
            .collect();
        if !missing.is_empty() {
            notes.push(format!(
                "providers without keys (requests to them fail over): {}",
                missing.join(", ")
            ));
        }
    }
    if !config.keys.is_empty() {
        notes.push("gateway keys configured: requests need `Authorization: Bearer <key>`".into());
    }

    let s = config.settings;
    let mut fallback = FallbackLayer::new().retries(s.retries);
    if let Some(ms) = s.request_timeout_ms {
        fallback = fallback.default_budget(Duration::from_millis(ms));
    }
    if let Some(ms) = s.max_request_timeout_ms {
        fallback = fallback.max_budget(Duration::from_millis(ms));
    }
    #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
    let mut budgets = config.budgets.clone();
    #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
    let mut keys = config.keys.clone();
    let mut builder = Gateway::builder(catalog);
    if config.cache.enabled || config.cache.redis_url.is_some() {
        let c = &config.cache;
        let layer = match &c.redis_url {
            #[cfg(feature = "redis")]
            Some(url) => {
                let store = crate::cache::RedisStore::connect(url)
                    .await
                    .map_err(|e| format!("cache.redis_url: {}", e.message()))?;
                let b = crate::cost::RedisBudgetStore::connect(url)
                    .await
                    .map_err(|e| format!("cache.redis_url: {}", e.message()))?;
                budgets = budgets.with_store(std::sync::Arc::new(b));
                let limits = crate::keys::RedisRateLimitStore::connect(url)
                    .await
                    .map_err(|e| format!("cache.redis_url: {}", e.message()))?;
                keys = keys.rate_limit_store(std::sync::Arc::new(limits));
                notes.push(format!(
                    "response cache, budgets and rate limits in Redis at {url}"
                ));
                ResponseCacheLayer::new(store)
            }
            _ => ResponseCacheLayer::new(MemoryStore::with_limits(c.max_bytes, c.max_entries)),
        };
        builder = builder.response_cache(
            layer
                .ttl(Duration::from_secs(c.ttl_secs))
                .max_entry_bytes(c.max_entry_bytes)
                .deterministic_only(c.deterministic_only)
                .shared_across_callers(c.shared),
        );
    }
    let mut cost = CostMeterLayer::new().budgets(budgets);
    if let Some(price) = config.cost.unpriced_price {
        cost = cost.unpriced(UnpricedPolicy::DefaultPrice(price));
    }
    for (provider, price) in &config.cost.provider_prices {
        cost = cost.default_price_for(provider.as_str(), *price);
    }
    if let Some(log) = super::telemetry::access_log() {
        cost = cost.access_log(log);
    }
    let mut request_log = None;
    if config.log.enabled() {
        let l = &config.log;
        let url = match (&l.url, &l.path) {
            (Some(url), _) => url.clone(),
            (None, Some(path)) => format!("sqlite://{path}"),
            (None, None) => String::new(),
        };
        let options = crate::request_log::LogOptions::default()
            .bodies(l.bodies)
            .retention_days(l.retention_days)
            .queue(l.queue);
        let log = crate::request_log::RequestLog::open(&url, options)
            .await
            .map_err(|e| format!("log: {}", e.message()))?;
        notes.push(match &l.path {
            Some(path) => format!("request log in {path} (SQLite)"),
            None => "request log in PostgreSQL".to_owned(),
        });
        cost = cost.sink(log.clone());
        let mut access = crate::request_log::ApiAccess::new().client_keys(keys.clone());
        match &config.admin.key {
            Some(k) => access = access.admin_key(k),
            None => notes.push(
                "no admin key ([admin] key_env): /api/v1 admin routes answer loopback clients only"
                    .to_owned(),
            ),
        }
        request_log = Some((log, access));
    }
    if !config.shadows.is_empty() {
        notes.push(format!(
            "shadow routing: {}",
            config
                .shadows
                .iter()
                .map(|r| format!("{} → {} ({:.0}%)", r.source, r.candidate, r.sample * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut builder = builder
        .shadows(crate::shadow::ShadowLayer::new(config.shadows.clone()))
        .client_keys(keys)
        .cost_meter(cost)
        .fallback(fallback)
        .max_body_bytes(s.max_body_bytes)
        .max_models(s.max_models)
        .max_messages(s.max_messages)
        .max_tools(s.max_tools)
        .max_tools_bytes(s.max_tools_bytes)
        .max_model_id_bytes(s.max_model_id_bytes);
    if let Some(t) = s.body_timeout() {
        builder = builder.body_timeout(t);
    }
    if let Some(ms) = s.keep_alive_ms.filter(|ms| *ms > 0) {
        builder = builder.keep_alive(std::time::Duration::from_millis(ms));
    }
    Ok(Wired {
        gateway: builder.build(),
        server: config.server,
        notes,
        demo,
        log: request_log,
    })
}
