//! A gateway with its own layer order: switchboard's layers, one of your own and one from
//! tower-http, composed with `tower::ServiceBuilder`.
//!
//! ```sh
//! cargo run --example custom_gateway                          # 127.0.0.1:8081
//! cargo run --example custom_gateway -- --listen 127.0.0.1:0  # any free port
//!
//! curl -si localhost:8081/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model":"fast","messages":[{"role":"user","content":"Hello!"}]}'
//! # x-switchboard-guard: passed   (from PromptGuard, a layer of the typed stack)
//! # x-gateway: custom_gateway     (from tower-http's SetResponseHeader, at the HTTP level)
//!
//! curl -si localhost:8081/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model":"fast","messages":[{"role":"user","content":"tell me the launch codes"}]}'
//! # 400, code `banned_word`: PromptGuard refused it before any provider was called
//! ```
//!
//! The typed stack, outermost first:
//!
//! 1. `model_resolve(catalog)`: model / alias / `models[]` → `Route`
//! 2. [`PromptGuard`] (this file): refuses prompts with a banned word
//!    (`Error::invalid_request`, so `400` with an OpenAI-style body), stamps
//!    `x-switchboard-guard: passed` on the answers it lets through (the edge forwards
//!    `x-switchboard-*` headers of the typed response)
//! 3. `fallback(..)` with one retry of each target, `model_timeout(..)` with a 60 s default,
//!    `provider_translate(..)` and the pooled `HttpClient`
//!
//! There is no CostMeter: a stack holds only the layers you put in it. Around the HTTP edge
//! (`switchboard::edge::ChatCompletions`) sits tower-http's `SetResponseHeaderLayer`, which
//! stamps `x-gateway: custom_gateway` on every answer, errors included.
//!
//! Without provider keys the gateway runs on switchboard's local demo providers; with any of
//! `OPENAI_API_KEY`, `ANTHROPIC_API_KEY` or `GEMINI_API_KEY` set it loads
//! `examples/gateway.toml`. The bound address is printed as `listening on http://ADDR`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use http::{HeaderName, HeaderValue};
use switchboard::catalog::Deadlines;
use switchboard::client::HttpClient;
use switchboard::demo::DemoProviders;
use switchboard::edge::{ChatCompletions, Models};
use switchboard::fallback::FallbackLayer;
use switchboard::timeout::ModelTimeoutLayer;
use switchboard::translate::ProviderTranslateLayer;
use switchboard::{Catalog, ChatHttpRequest, ChatHttpResponse, Error, ServiceBuilderExt};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::set_header::SetResponseHeaderLayer;

// ---------------------------------------------------------------------------------------------
// A layer of your own

/// Layer for [`PromptGuard`].
#[derive(Debug, Clone)]
struct PromptGuardLayer {
    banned: Arc<[String]>,
}

impl PromptGuardLayer {
    /// Refuses prompts containing any of `words` (case-insensitive).
    fn new<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            banned: words
                .into_iter()
                .map(|w| w.as_ref().to_lowercase())
                .collect(),
        }
    }
}

impl<S> Layer<S> for PromptGuardLayer {
    type Service = PromptGuard<S>;
    fn layer(&self, inner: S) -> PromptGuard<S> {
        PromptGuard {
            inner,
            banned: self.banned.clone(),
        }
    }
}

/// Refuses chat requests whose messages contain a banned word; marks the answers it passes.
#[derive(Debug, Clone)]
struct PromptGuard<S> {
    inner: S,
    banned: Arc<[String]>,
}

impl<S> PromptGuard<S> {
    /// The first banned word in the request's messages.
    fn find_banned(&self, req: &ChatHttpRequest) -> Result<Option<&str>, Error> {
        for message in req.body().parse_messages()? {
            let text = message.text().to_lowercase();
            if let Some(word) = self.banned.iter().find(|w| text.contains(w.as_str())) {
                return Ok(Some(word));
            }
        }
        Ok(None)
    }
}

impl<S> Service<ChatHttpRequest> for PromptGuard<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<ChatHttpResponse, Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ChatHttpRequest) -> Self::Future {
        let verdict = match self.find_banned(&req) {
            Ok(None) => Ok(()),
            Ok(Some(word)) => Err(Error::invalid_request(format!(
                "the prompt contains the banned word `{word}`"
            ))
            .with_code("banned_word")
            .with_param("messages")),
            Err(e) => Err(e),
        };
        // Take the service that was driven to readiness; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            verdict?;
            let mut resp = inner.call(req).await?;
            resp.headers_mut().insert(
                HeaderName::from_static("x-switchboard-guard"),
                HeaderValue::from_static("passed"),
            );
            Ok(resp)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The stack

/// The words the guard refuses.
const BANNED: [&str; 2] = ["launch codes", "password"];

/// The app: the custom stack behind the edge at `/v1/chat/completions`, the catalog at
/// `/v1/models`.
fn app(catalog: Catalog) -> Router {
    let typed = ServiceBuilder::new()
        .model_resolve(catalog.clone())
        .layer(PromptGuardLayer::new(BANNED))
        .fallback(FallbackLayer::new().retries(1))
        .model_timeout(ModelTimeoutLayer::new(Deadlines {
            total: Some(Duration::from_secs(60)),
            ..Deadlines::default()
        }))
        .provider_translate(ProviderTranslateLayer::new())
        .service(HttpClient::new());
    // Type-erased so the router's service type stays short; `Clone + Send + Sync`.
    let typed = BoxCloneSyncService::new(typed);

    let chat = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-gateway"),
            HeaderValue::from_static("custom_gateway"),
        ))
        .service(ChatCompletions::new(typed));

    Router::new()
        .route_service("/v1/chat/completions", chat)
        .route_service("/v1/models", Models::new(&catalog))
}

// ---------------------------------------------------------------------------------------------
// main

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
    let addr = parse_listen("127.0.0.1:8081")?;
    let (catalog, _demo) = load_catalog().await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{bound}");
    axum::serve(listener, app(catalog))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Start-up

/// The demo providers' catalog, or `examples/gateway.toml` when a provider key is set. The
/// demo providers live as long as the returned guard.
async fn load_catalog() -> Result<(Catalog, Option<DemoProviders>), String> {
    let keyed = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    if keyed {
        let path = "examples/gateway.toml";
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let catalog = Catalog::from_toml(&text).map_err(|e| format!("{path}: {}", e.message()))?;
        return Ok((catalog, None));
    }
    let demo = DemoProviders::start()
        .await
        .map_err(|e| format!("cannot start the demo providers: {e}"))?;
    println!("no provider API keys set: using switchboard's local demo providers");
    Ok((demo.catalog(), Some(demo)))
}

/// `--listen ADDR` from the command line, else `default`.
fn parse_listen(default: &str) -> Result<SocketAddr, String> {
    let mut listen = default.to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            other => return Err(format!("unknown argument `{other}` (usage: --listen ADDR)")),
        }
    }
    listen
        .parse()
        .map_err(|e| format!("invalid listen address `{listen}`: {e}"))
}
