//! The ready gateway: an OpenAI-compatible HTTP server built from switchboard's layers.
//!
//! ```sh
//! cargo run --example gateway                       # examples/gateway.toml, 127.0.0.1:8080
//! cargo run --example gateway -- --config my.toml --listen 0.0.0.0:9000
//! ```
//!
//! Provider keys come from `OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GEMINI_API_KEY`,
//! `OPENROUTER_API_KEY`, … (as the config's `api_key_env` says); base URLs from
//! `OPENAI_BASE_URL`, `ANTHROPIC_BASE_URL`, `GEMINI_BASE_URL`, `OPENROUTER_BASE_URL`. With no
//! key set at all it starts switchboard's local demo providers and routes every provider to
//! them, so it runs on a fresh machine. The listen address is `--listen`, else
//! `SWITCHBOARD_LISTEN`, else 127.0.0.1:8080; port 0 picks a free port. The bound address is
//! printed as `switchboard listening on http://ADDR`.
//!
//! Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::routing::get;
use axum::Router;
use switchboard::catalog::{ApiKey, ProviderKind};
use switchboard::demo::{DemoProviders, DEMO_API_KEY};
use switchboard::{Catalog, Gateway};

struct Args {
    config: String,
    listen: String,
}

fn parse_args() -> Result<Args, String> {
    let mut config = "examples/gateway.toml".to_owned();
    let mut listen =
        std::env::var("SWITCHBOARD_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => config = it.next().ok_or("--config needs a path")?,
            "--listen" => listen = it.next().ok_or("--listen needs an address")?,
            "-h" | "--help" => {
                println!("usage: gateway [--config PATH] [--listen ADDR]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(Args { config, listen })
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| format!("cannot read config {}: {e}", args.config))?;
    let mut catalog = Catalog::from_toml(&text)
        .map_err(|e| format!("config {}: {}", args.config, e.message()))?;

    // Keep the demo providers alive for the life of the server.
    let mut _demo = None;
    let keyed: Vec<String> = catalog
        .providers()
        .filter(|p| p.api_key.is_some())
        .map(|p| p.name.to_string())
        .collect();
    if keyed.is_empty() {
        let demo = DemoProviders::start()
            .await
            .map_err(|e| format!("cannot start the demo providers: {e}"))?;
        println!(
            "no provider API keys set: using the built-in local demo providers \
             (OpenAI-compatible at {}, Anthropic at {}, Gemini at {}); \
             set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY to use the real ones",
            demo.openai.base_url(),
            demo.anthropic.base_url(),
            demo.gemini.base_url()
        );
        let (oa, an, ge) = (
            demo.openai.base_url(),
            demo.anthropic.base_url(),
            demo.gemini.base_url(),
        );
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
        _demo = Some(demo);
    } else {
        let missing: Vec<String> = catalog
            .providers()
            .filter(|p| p.api_key.is_none())
            .map(|p| p.name.to_string())
            .collect();
        println!("providers with keys: {}", keyed.join(", "));
        if !missing.is_empty() {
            println!(
                "providers without keys (requests to them fail over): {}",
                missing.join(", ")
            );
        }
    }

    let gateway = Gateway::builder(catalog).build();
    let app = Router::new()
        .route_service("/v1/chat/completions", gateway.chat_completions())
        .route_service("/v1/models", gateway.models())
        .route("/health", get(|| async { "ok" }));

    let addr: SocketAddr = args
        .listen
        .parse()
        .map_err(|e| format!("invalid listen address `{}`: {e}", args.listen))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("switchboard listening on http://{bound}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
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
