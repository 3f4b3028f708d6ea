//! The ready gateway: an OpenAI-compatible HTTP server built from switchboard's layers.
//!
//! ```sh
//! cargo run --example gateway                       # examples/gateway.toml, 127.0.0.1:8080
//! cargo run --example gateway -- --config my.toml --listen 0.0.0.0:9000 --log-json
//! ```
//!
//! Provider keys come from `OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GEMINI_API_KEY`,
//! `OPENROUTER_API_KEY`, … (as the config's `api_key_env` says); base URLs from
//! `OPENAI_BASE_URL`, `ANTHROPIC_BASE_URL`, `GEMINI_BASE_URL`, `OPENROUTER_BASE_URL`. With no
//! key set at all it starts switchboard's local demo providers and routes every provider to
//! them, so it runs on a fresh machine. The listen address is `--listen`, else
//! `SWITCHBOARD_LISTEN`, else 127.0.0.1:8080; port 0 picks a free port. The bound address is
//! printed as `switchboard listening on http://ADDR`. `--prices FILE` imports prices from a
//! JSON file in OpenRouter's `/api/v1/models` format for models the config leaves unpriced.
//!
//! Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /metrics` (Prometheus),
//! `GET /health` (liveness), `GET /ready` (at least one provider healthy).
//! On SIGINT/SIGTERM in-flight requests and streams get `SWITCHBOARD_SHUTDOWN_GRACE_MS`
//! (default 10 s) to finish.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use switchboard::cache::{MemoryStore, ResponseCacheLayer};
use switchboard::catalog::{ApiKey, ProviderKind};
use switchboard::config::GatewayConfig;
use switchboard::cost::CostMeterLayer;
use switchboard::demo::{DemoProviders, DEMO_API_KEY};
use switchboard::fallback::FallbackLayer;
use switchboard::health::TargetState;
use switchboard::Gateway;
use tokio::sync::oneshot;

/// Command-line settings.
#[derive(Debug, Clone)]
pub struct Args {
    /// The config file.
    pub config: String,
    /// The listen address.
    pub listen: String,
    /// JSON logs instead of human-readable ones.
    pub log_json: bool,
    /// OpenRouter-format price file.
    pub prices: Option<String>,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            config: "examples/gateway.toml".to_owned(),
            listen: std::env::var("SWITCHBOARD_LISTEN")
                .unwrap_or_else(|_| "127.0.0.1:8080".to_owned()),
            log_json: false,
            prices: None,
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => args.config = it.next().ok_or("--config needs a path")?,
            "--listen" => args.listen = it.next().ok_or("--listen needs an address")?,
            "--prices" => args.prices = Some(it.next().ok_or("--prices needs a path")?),
            "--log-json" => args.log_json = true,
            "-h" | "--help" => {
                println!(
                    "usage: gateway [--config PATH] [--listen ADDR] [--prices OPENROUTER_JSON] [--log-json]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(args)
}

/// A running gateway.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// What the gateway printed at start-up.
    pub notes: Vec<String>,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    _demo: Option<DemoProviders>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish within `grace`, then returns.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(grace, &mut self.server).await.is_err() {
            eprintln!("shutdown: in-flight requests did not finish within {grace:?}; closing");
            self.server.abort();
        }
    }
}

fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|()| handle)
        })
        .clone()
}

/// Loads the config, starts demo providers when no key is set, and serves.
pub async fn start(args: &Args) -> Result<Running, String> {
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| format!("cannot read config {}: {e}", args.config))?;
    let config = GatewayConfig::from_toml(&text)
        .map_err(|e| format!("config {}: {}", args.config, e.message()))?;
    let mut catalog = config.catalog.clone();
    let mut notes = Vec::new();
    if let Some(path) = &args.prices {
        let json =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read prices {path}: {e}"))?;
        let (c, n) = catalog
            .with_openrouter_prices(&json)
            .map_err(|e| format!("{path}: {}", e.message()))?;
        notes.push(format!("imported prices for {n} endpoints from {path}"));
        catalog = c;
    }

    let mut demo = None;
    let keyed: Vec<String> = catalog
        .providers()
        .filter(|p| p.api_key.is_some())
        .map(|p| p.name.to_string())
        .collect();
    if keyed.is_empty() {
        let d = DemoProviders::start()
            .await
            .map_err(|e| format!("cannot start the demo providers: {e}"))?;
        let (oa, an, ge) = (
            d.openai.base_url(),
            d.anthropic.base_url(),
            d.gemini.base_url(),
        );
        notes.push(format!(
            "no provider API keys set: using the built-in local demo providers \
             (OpenAI-compatible at {oa}, Anthropic at {an}, Gemini at {ge}); \
             set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY to use the real ones"
        ));
        catalog = catalog.map_providers(|p| {
            let base = match p.kind {
                ProviderKind::Anthropic => &an,
                ProviderKind::Gemini => &ge,
                _ => &oa,
            };
            let mut p = p.clone();
            p.base_url = base.as_str().into();
            p.api_key = Some(ApiKey::new(DEMO_API_KEY));
            p
        });
        demo = Some(d);
    } else {
        notes.push(format!("providers with keys: {}", keyed.join(", ")));
        let missing: Vec<String> = catalog
            .providers()
            .filter(|p| p.api_key.is_none())
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
    let mut builder = Gateway::builder(catalog);
    if config.cache.enabled || config.cache.redis_url.is_some() {
        let c = &config.cache;
        let layer = match &c.redis_url {
            #[cfg(feature = "redis")]
            Some(url) => {
                let store = switchboard::cache::RedisStore::connect(url)
                    .await
                    .map_err(|e| format!("cache.redis_url: {}", e.message()))?;
                let b = switchboard::cost::RedisBudgetStore::connect(url)
                    .await
                    .map_err(|e| format!("cache.redis_url: {}", e.message()))?;
                budgets = budgets.with_store(std::sync::Arc::new(b));
                notes.push(format!("response cache and budgets in Redis at {url}"));
                ResponseCacheLayer::new(store)
            }
            _ => ResponseCacheLayer::new(MemoryStore::with_limits(c.max_bytes, c.max_entries)),
        };
        builder = builder.response_cache(
            layer
                .ttl(Duration::from_secs(c.ttl_secs))
                .max_entry_bytes(c.max_entry_bytes)
                .deterministic_only(c.deterministic_only),
        );
    }
    let mut builder = builder
        .client_keys(config.keys.clone())
        .cost_meter(CostMeterLayer::new().budgets(budgets))
        .fallback(fallback)
        .max_body_bytes(s.max_body_bytes);
    if let Some(t) = s.body_timeout() {
        builder = builder.body_timeout(t);
    }
    let gateway = builder.build();

    let metrics = prometheus();
    let ready_gateway = gateway.clone();
    let app = Router::new()
        .route_service("/v1/chat/completions", gateway.chat_completions())
        .route_service("/v1/models", gateway.models())
        .route("/health", get(|| async { "ok" }))
        .route(
            "/ready",
            get(move || {
                let g = ready_gateway.clone();
                async move { ready(&g) }
            }),
        )
        .fallback(|uri: axum::http::Uri| async move {
            let body = serde_json::json!({"error": {
                "message": format!("unknown path `{}`: try POST /v1/chat/completions or GET /v1/models", uri.path()),
                "type": "invalid_request_error", "param": null, "code": "unknown_url"}});
            (
                StatusCode::NOT_FOUND,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
        })
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    match m {
                        Some(h) => (StatusCode::OK, h.render()),
                        None => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "another metrics recorder is installed".to_owned(),
                        ),
                    }
                }
            }),
        );

    let addr: SocketAddr = args
        .listen
        .parse()
        .map_err(|e| format!("invalid listen address `{}`: {e}", args.listen))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            eprintln!("server error: {e}");
        }
    });
    Ok(Running {
        addr: bound,
        notes,
        shutdown: Some(tx),
        server,
        _demo: demo,
    })
}

/// 200 when at least one provider endpoint is not cooling down.
fn ready(g: &Gateway) -> (StatusCode, &'static str) {
    let catalog = g.catalog();
    let any = catalog.models().iter().any(|m| {
        m.endpoints.iter().any(|e| {
            let c = switchboard::ext::Candidate::from_endpoint(m, e);
            g.health().state(&c) != TargetState::CoolingDown
        })
    });
    if any || catalog.models().is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "every provider is cooling down",
        )
    }
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(e) = result {
        eprintln!("logging not initialised: {e}");
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logs(args.log_json);
    let running = match start(&args).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for n in &running.notes {
        println!("{n}");
    }
    println!("switchboard listening on http://{}", running.addr);
    shutdown_signal().await;
    let grace = std::env::var("SWITCHBOARD_SHUTDOWN_GRACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis);
    println!("shutting down (grace {grace:?})");
    running.shutdown(grace).await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
