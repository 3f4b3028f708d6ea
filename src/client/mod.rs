//! [`HttpClient`]: hyper-util's pooled client with rustls (ring, webpki roots), HTTP/1.1 and
//! HTTP/2, as a `tower::Service<http::Request<UpstreamBody>>` that fails with [`Error`].
//!
//! Plain `http://` works too (local vLLM, Ollama, llama.cpp, test fakes). Connection failures
//! and resets map to [`ErrorKind::Upstream`] (502, retryable).
//! The maximum size of a non-streaming upstream body is enforced where the body is read, by
//! [`ProviderTranslateLayer::max_response_bytes`](crate::translate::ProviderTranslateLayer::max_response_bytes).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{self, Client};
use hyper_util::rt::TokioExecutor;
use tower_service::Service;

use crate::{Error, ErrorKind};

mod body;
pub mod future;
pub use body::UpstreamBody;

type Inner = Client<HttpsConnector<HttpConnector>, UpstreamBody>;

/// The pooled HTTP client at the bottom of the stack. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct HttpClient {
    // Behind an `Arc`: every layer clones the stack below it per request (tower's
    // clone-and-swap), and hyper-util's client is a dozen fields of its own `Arc`s.
    inner: std::sync::Arc<Inner>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with default settings.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configures a client.
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::default()
    }
}

/// Settings for [`HttpClient`].
#[derive(Debug, Clone)]
pub struct HttpClientBuilder {
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    http2_only: bool,
}

impl Default for HttpClientBuilder {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
            http2_only: false,
        }
    }
}

impl HttpClientBuilder {
    /// How long to wait for a TCP connection (default 10 s).
    #[must_use]
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long idle pooled connections live (default 90 s).
    #[must_use]
    pub fn pool_idle_timeout(mut self, d: Duration) -> Self {
        self.pool_idle_timeout = d;
        self
    }

    /// Idle connections kept per host (default 64).
    #[must_use]
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool_max_idle_per_host = n;
        self
    }

    /// Speak HTTP/2 only, also over plain `http://` (h2c with prior knowledge). By default
    /// HTTP/2 is negotiated by ALPN over TLS and plain connections use HTTP/1.1.
    #[must_use]
    pub fn http2_only(mut self, on: bool) -> Self {
        self.http2_only = on;
        self
    }

    /// Builds the client.
    pub fn build(self) -> HttpClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.connect_timeout));
        let tls = rustls_config();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .http2_only(self.http2_only)
            .build(https);
        HttpClient {
            inner: std::sync::Arc::new(inner),
        }
    }
}

fn rustls_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

impl Service<http::Request<UpstreamBody>> for HttpClient {
    type Response = http::Response<Incoming>;
    type Error = Error;
    type Future = future::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<UpstreamBody>) -> future::ResponseFuture {
        future::ResponseFuture::new(self.inner.request(req))
    }
}

fn map_error(e: legacy::Error) -> Error {
    let msg = if e.is_connect() {
        "could not connect to the provider"
    } else {
        "the connection to the provider failed"
    };
    Error::new(ErrorKind::Upstream, msg).with_source(e)
}
