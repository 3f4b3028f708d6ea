//! The ready gateway: [`GatewayConfig`](crate::config::GatewayConfig) in, a running HTTP server
//! out (cargo feature `server`, on by default; the `switchboard` binary is a thin `main` over
//! it).
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), String> {
//! let options = switchboard::server::Options::new("examples/gateway.toml").listen("127.0.0.1:0");
//! let running = switchboard::server::start(&options).await?;
//! println!("listening on http://{}", running.addr());
//! running.shutdown(std::time::Duration::from_secs(10)).await;
//! # Ok(())
//! # }
//! ```
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/messages`, `POST /v1/messages/count_tokens`,
//! `GET /v1/models`, `GET /metrics` (Prometheus), with a `[log]` the request log's API
//! (`/api/v1/generation`, `/api/v1/generations`, `/api/v1/feedback`, `/api/v1/stats`, see
//! [`crate::request_log`]),
//! `GET /health` (liveness), `GET /ready` (at least one provider endpoint not cooling down).
//! Every other path answers an OpenAI-style 404.
//!
//! With no provider key set, [`start`] starts switchboard's local demo providers
//! ([`crate::demo`]), points every provider of the config at them and says so in
//! [`Running::notes`].
//!
//! The listener is guarded by [`ConnLimits`]: a cap on open connections (an overloaded
//! gateway answers new connections with a 503 and closes them), a deadline for a request head,
//! an idle keep-alive timeout and HTTP/2 limits.

mod listen;
#[cfg(feature = "otel")]
mod otel;
mod routes;
mod telemetry;
mod wiring;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::demo::DemoProviders;

pub use listen::ConnLimits;
pub use telemetry::{init_logs, raise_fd_limit};

/// The config file used when none is named; when it does not exist (an installed binary run
/// outside a checkout), the same example catalog built into the binary is used.
pub const DEFAULT_CONFIG: &str = "examples/gateway.toml";

/// What [`start`] needs: the config file, the listen address and the connection limits.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The config file (TOML, [`GatewayConfig`](crate::config::GatewayConfig)).
    pub config: String,
    /// The listen address; port 0 picks a free port.
    pub listen: String,
    /// An OpenRouter-format price file (`/api/v1/models`) for models the config leaves
    /// unpriced.
    pub prices: Option<String>,
    /// Connection limits and timeouts; `None`: the config's `[server]` section.
    pub limits: Option<ConnLimits>,
}

impl Options {
    /// The config file `config` on the default listen address.
    pub fn new(config: impl Into<String>) -> Self {
        Self {
            config: config.into(),
            ..Self::default()
        }
    }

    /// Sets the listen address.
    #[must_use]
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Sets the OpenRouter-format price file.
    #[must_use]
    pub fn prices(mut self, path: impl Into<String>) -> Self {
        self.prices = Some(path.into());
        self
    }

    /// Sets the connection limits.
    #[must_use]
    pub fn limits(mut self, limits: ConnLimits) -> Self {
        self.limits = Some(limits);
        self
    }
}

impl Default for Options {
    /// `examples/gateway.toml` on `SWITCHBOARD_LISTEN`, else 127.0.0.1:8080.
    fn default() -> Self {
        Self {
            config: DEFAULT_CONFIG.to_owned(),
            listen: std::env::var("SWITCHBOARD_LISTEN")
                .unwrap_or_else(|_| "127.0.0.1:8080".to_owned()),
            prices: None,
            limits: None,
        }
    }
}

/// A running gateway. Dropping it stops accepting at once; [`shutdown`](Self::shutdown) lets
/// in-flight requests finish first.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    notes: Vec<String>,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    _demo: Option<DemoProviders>,
    log: Option<crate::request_log::RequestLog>,
}

impl Running {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the gateway has to say about its start (demo providers, keys, price imports).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Stops accepting, lets in-flight requests and streams finish within `grace`, then
    /// closes what is left.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let started = tokio::time::Instant::now();
        if tokio::time::timeout(grace, &mut self.server).await.is_err() {
            tracing::warn!(?grace, "in-flight requests did not finish in time; closing");
            self.server.abort();
        }
        // The request log's queued rows, within what is left of the grace period (at least
        // a second).
        if let Some(log) = &self.log {
            let left = grace
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(1));
            if !log.flush(left).await {
                tracing::warn!("the request log was not flushed in time");
            }
        }
        // The spans queued for the OTLP collector, likewise.
        #[cfg(feature = "otel")]
        otel::flush(
            grace
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(1)),
        )
        .await;
    }

    /// The request log, when the config has one (`[log]`).
    pub fn request_log(&self) -> Option<&crate::request_log::RequestLog> {
        self.log.as_ref()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Loads the config, starts the demo providers when no provider key is set, binds the
/// listener and serves in a background task.
///
/// # Errors
/// A message for the operator: an unreadable or invalid config or price file, an address that
/// cannot be bound, demo providers that cannot start.
pub async fn start(options: &Options) -> Result<Running, String> {
    let wired = wiring::build(options).await?;
    let app = routes::router(&wired.gateway, wired.log.as_ref());
    let addr: SocketAddr = options
        .listen
        .parse()
        .map_err(|e| format!("invalid listen address `{}`: {e}", options.listen))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = oneshot::channel::<()>();
    let limits = options
        .limits
        .clone()
        .unwrap_or_else(|| ConnLimits::from(&wired.server));
    let server = tokio::spawn(listen::serve(listener, app, limits, rx));
    Ok(Running {
        addr: bound,
        notes: wired.notes,
        shutdown: Some(tx),
        server,
        _demo: wired.demo,
        log: wired.log.map(|(log, _)| log),
    })
}
