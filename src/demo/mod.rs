//! Local demo providers: OpenAI chat completions, Anthropic Messages and Google Gemini
//! `generateContent`, on `127.0.0.1`, speaking the real wire formats.
//!
//! The ready gateway uses them when no API keys are set; examples, integration tests and
//! benchmarks use them as upstreams. Each [`DemoServer`] checks requests as strictly as the real
//! API does (auth header, required fields, roles, content types, tool-call pairing, thinking
//! rules, schema keywords) and answers every violation with the provider's real error status and
//! body. It records every request it receives ([`DemoServer::requests`]) so tests can assert what
//! the gateway sent, and it can be told to fail ([`Faults`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use switchboard::catalog::ProviderKind;
//! use switchboard::demo::{DemoConfig, DemoServer, Fault};
//!
//! let server = DemoServer::start(ProviderKind::Anthropic, DemoConfig::default()).await?;
//! assert!(server.base_url().starts_with("http://127.0.0.1:"));
//! server.faults().push(Fault::Status(529, None)); // the next request gets `overloaded_error`
//! assert_eq!(server.request_count(), 0);
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Endpoints
//!
//! | kind | base URL | endpoint | key header |
//! | --- | --- | --- | --- |
//! | OpenAI | `http://127.0.0.1:PORT/v1` | `POST /v1/chat/completions` | `Authorization: Bearer KEY` |
//! | Anthropic | `http://127.0.0.1:PORT` | `POST /v1/messages` (needs `anthropic-version`) | `x-api-key: KEY` |
//! | Gemini | `http://127.0.0.1:PORT` | `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`, `:batchEmbedContents` | `x-goog-api-key: KEY` (or `?key=`) |
//! | Azure OpenAI | `http://127.0.0.1:PORT` | `POST /openai/deployments/{deployment}/chat/completions?api-version=V`, `…/embeddings?api-version=V`, `/openai/v1/chat/completions`, `/openai/v1/embeddings` | `api-key: KEY` (or `Authorization: Bearer KEY`) |
//!
//! The OpenAI server also serves `POST /v1/embeddings`. Embedding vectors are deterministic
//! ([`demo_embedding`]); the Azure server's content filter is triggered by [`FILTER_PROMPT`]
//! and [`FILTER_ANSWER`] in a prompt.
//!
//! Servers speak HTTP/1.1 (keep-alive) and HTTP/2 without TLS (h2c prior knowledge). A missing
//! or wrong key gets the provider's real answer: OpenAI and Anthropic `401`; Gemini, like the
//! real API, `403 PERMISSION_DENIED` for a missing key and `400 INVALID_ARGUMENT` with reason
//! `API_KEY_INVALID` for a wrong one.
//!
//! # Answers
//!
//! Answers are deterministic so tests can assert them exactly:
//!
//! - Text: `Hello from the demo {openai|anthropic|gemini} provider! You said: {text}` where
//!   `{text}` is the last user message's text, trimmed and cut to 80 characters (with `…`),
//!   followed by ` I saw N image(s).` when that message had images.
//! - Tools: when tools are offered, the tool choice allows calls and the last message is not a
//!   tool result, the model calls the first tool (the named one if the choice names one; the
//!   first two when there are at least two and parallel calls are allowed), with arguments
//!   built from the schema's `required` properties: strings `"demo"` (or the first `enum`
//!   value), numbers and integers `1`, booleans `true`, anything else `null`.
//! - After a tool result: `Tool result received: {content}` (Gemini: the `response` object as
//!   compact JSON; several results joined with `; `).
//! - Stop sequences cut the text before their first occurrence (finish reason `stop`,
//!   Anthropic `stop_sequence`); a token limit cuts it to that many tokens (finish reason
//!   `length`, `max_tokens`, `MAX_TOKENS`).
//! - Thinking (Anthropic `thinking`, Gemini `thinkingConfig`, OpenRouter-style `reasoning` or
//!   `reasoning_effort` on the OpenAI server): a thinking text comes first. Anthropic thinking
//!   blocks carry a `signature`; the first `functionCall` part of a Gemini answer carries a
//!   `thoughtSignature`; both are deterministic signatures the servers verify when they come
//!   back. The OpenAI server returns the text as OpenRouter does, in `message.reasoning` and
//!   `delta.reasoning` (unless `reasoning.exclude`).
//! - Tokens are whitespace-separated words: prompt tokens count the words of every text in the
//!   request (system, messages, tool results), output tokens the words of the answer text and
//!   thinking, plus the name and argument JSON of each tool call. Anthropic reports a prompt
//!   cache: with `cache_control` markers, the words up to the last marker are
//!   `cache_creation_input_tokens` the first time that exact prefix is seen and
//!   `cache_read_input_tokens` after that. Gemini reports `thoughtsTokenCount`.
//!
//! Streams are real SSE in each provider's format, a few words per event
//! ([`DemoConfig::with_words_per_chunk`]) with [`DemoConfig::with_chunk_delay`] between events:
//! OpenAI chunks (a usage chunk with `stream_options.include_usage`) ending in `data: [DONE]`;
//! Anthropic `message_start`, `content_block_*` (`text_delta`, `thinking_delta`,
//! `signature_delta`, `input_json_delta`), `ping`, `message_delta`, `message_stop`; Gemini
//! `data:` frames of `GenerateContentResponse` (a JSON array without `alt=sse`), the last one
//! with `finishReason` and the full `usageMetadata`.

mod anthropic;
mod azure;
mod bedrock;
mod common;
mod embeddings;
mod faults;
mod gemini;
mod openai;
mod server;
mod vertex;
mod wire;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Version};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use azure::{FILTER_ANSWER, FILTER_PROMPT};
pub use bedrock::{TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY};
pub use embeddings::demo_embedding;
pub use faults::{Fault, Faults};
pub use vertex::{
    test_service_account_json, DEMO_PROJECT, TEST_SERVICE_ACCOUNT_EMAIL, TEST_SERVICE_ACCOUNT_KEY,
};

use crate::catalog::{Capabilities, Catalog, ModelSpec, Pricing, Provider, ProviderKind};

/// The API key demo servers expect unless configured otherwise.
pub const DEMO_API_KEY: &str = "demo-key";

/// How a demo server behaves.
///
/// ```
/// # use std::time::Duration;
/// # use switchboard::demo::DemoConfig;
/// let config = DemoConfig::default()
///     .with_api_key("sk-test")
///     .with_latency(Duration::from_millis(20))
///     .with_chunk_delay(Duration::from_millis(5));
/// assert_eq!(config.api_key(), "sk-test");
/// ```
#[derive(Debug, Clone)]
pub struct DemoConfig {
    api_key: Arc<str>,
    latency: Duration,
    chunk_delay: Duration,
    words_per_chunk: usize,
    models: Option<Arc<[String]>>,
    log_limit: usize,
    token_lifetime: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            api_key: DEMO_API_KEY.into(),
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            words_per_chunk: 3,
            models: None,
            log_limit: 10_000,
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

impl DemoConfig {
    /// The key requests must carry (default [`DEMO_API_KEY`]).
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.api_key = key.into();
        self
    }

    /// A pause before the response headers of every request (default none).
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// A pause between the events of a stream (default none).
    #[must_use]
    pub fn with_chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Words of text per streamed event (default 3, at least 1).
    #[must_use]
    pub fn with_words_per_chunk(mut self, words: usize) -> Self {
        self.words_per_chunk = words.max(1);
        self
    }

    /// Only these model names are served; others get the provider's real 404. By default
    /// every model name is accepted.
    #[must_use]
    pub fn with_models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.models = Some(models.into_iter().map(Into::into).collect());
        self
    }

    /// How many recent requests the log keeps (default 10 000; older ones are dropped, the
    /// count goes on).
    #[must_use]
    pub fn with_log_limit(mut self, limit: usize) -> Self {
        self.log_limit = limit;
        self
    }

    /// How long the Vertex AI demo's access tokens live (default an hour, as Google's; the
    /// `expires_in` it reports is in whole seconds, at least 1).
    #[must_use]
    pub fn with_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// The expected API key.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }
}

/// A request a demo server received, as it arrived.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// The method.
    pub method: Method,
    /// Path and query (`/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse`).
    pub path: String,
    /// HTTP/1.1 or HTTP/2.
    pub version: Version,
    /// The headers.
    pub headers: HeaderMap,
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The body bytes.
    pub raw_body: Bytes,
}

impl RecordedRequest {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One demo provider listening on `127.0.0.1`. Shuts down when dropped.
pub struct DemoServer {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    shutdown: Option<watch::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for DemoServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoServer")
            .field("kind", &self.shared.kind)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl DemoServer {
    /// Starts a server of `kind` on `127.0.0.1` with a free port. Call it inside a tokio
    /// runtime; the server runs on that runtime.
    pub async fn start(kind: ProviderKind, config: DemoConfig) -> io::Result<Self> {
        let (addr, shared, tx, task) = server::start(kind, config).await?;
        Ok(Self {
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The wire format served.
    pub fn kind(&self) -> ProviderKind {
        self.shared.kind
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL the provider's SDKs expect: `http://127.0.0.1:PORT/v1` for OpenAI, the
    /// bare origin for Anthropic and Gemini.
    pub fn base_url(&self) -> String {
        match self.shared.kind {
            ProviderKind::Openai => format!("http://{}/v1", self.addr),
            ProviderKind::Anthropic
            | ProviderKind::Gemini
            | ProviderKind::Azure
            | ProviderKind::Vertex
            | ProviderKind::Bedrock => {
                format!("http://{}", self.addr)
            }
        }
    }

    /// The Vertex AI demo's token endpoint (`{base}/token`), for a key file's `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The Vertex AI demo's metadata-server token URL.
    pub fn metadata_url(&self) -> String {
        format!("http://{}{}", self.addr, vertex::METADATA_PATH)
    }

    /// A key file (JSON) for the test service account whose `token_uri` is this server's.
    pub fn service_account_json(&self) -> String {
        test_service_account_json(&self.token_uri())
    }

    /// How many access tokens the Vertex AI demo has issued.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.tokens.issued()
    }

    /// The configuration.
    pub fn config(&self) -> &DemoConfig {
        &self.shared.config
    }

    /// A handle to inject faults (clones share the same faults).
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// A snapshot of the request log (the most recent [`DemoConfig::with_log_limit`]
    /// requests, oldest first).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.last_request()
    }

    /// Requests received since the start (not reset by [`clear_requests`](Self::clear_requests)).
    pub fn request_count(&self) -> u64 {
        self.shared.request_count()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// Waits until at least `n` requests have been received in total.
    pub async fn wait_for_requests(&self, n: u64) {
        self.shared.wait_for_requests(n).await;
    }

    /// Stops accepting, closes every connection and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        self.shutdown.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        // Dropping the sender tells the accept loop and every connection to stop.
        self.shutdown.take();
    }
}

/// One demo server of each kind, with a ready catalog.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let demo = switchboard::demo::DemoProviders::start().await?;
/// let catalog = demo.catalog();
/// assert_eq!(catalog.alias("fast"), Some("openai/gpt-4o-mini"));
/// assert!(demo.catalog_toml().contains(&demo.gemini.base_url()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct DemoProviders {
    /// The OpenAI-compatible server (provider `openai`).
    pub openai: DemoServer,
    /// The Anthropic server (provider `anthropic`).
    pub anthropic: DemoServer,
    /// The Gemini server (provider `google`).
    pub gemini: DemoServer,
    /// The Azure OpenAI server (provider `azure`, deployments with `api-version`).
    pub azure: DemoServer,
    /// The AWS Bedrock server (SigV4 with the [test key pair](TEST_ACCESS_KEY_ID)). Not in
    /// [`catalog`](Self::catalog); [`serve`](Self::serve) points Bedrock providers at it.
    pub bedrock: DemoServer,
    /// The Vertex AI server (tokens for the [test service account](TEST_SERVICE_ACCOUNT_EMAIL)
    /// from its own token endpoint). Not in [`catalog`](Self::catalog);
    /// [`serve`](Self::serve) points Vertex providers at it.
    pub vertex: DemoServer,
}

/// The `api-version` of the demo catalog's Azure provider.
pub const DEMO_AZURE_API_VERSION: &str = "2024-10-21";

/// The demo catalog's embedding models: id, upstream name, dimensions, input price.
const DEMO_EMBEDDINGS: [(&str, &str, u32, f64); 3] = [
    (
        "openai/text-embedding-3-small",
        "text-embedding-3-small",
        1536,
        0.02,
    ),
    (
        "google/gemini-embedding-001",
        "gemini-embedding-001",
        3072,
        0.15,
    ),
    (
        "azure/text-embedding-3-small",
        "text-embedding-3-small",
        1536,
        0.02,
    ),
];

/// A model of the demo catalog.
struct DemoModel {
    id: &'static str,
    upstream: &'static str,
    context: u32,
    max_output: u32,
    reasoning: bool,
    pricing: Pricing,
}

const fn price(input: f64, output: f64, cached: f64, write: Option<f64>) -> Pricing {
    Pricing {
        input,
        output,
        cached_input: Some(cached),
        cache_write: write,
        per_request: None,
    }
}

/// The demo catalog's models: list prices in USD per million tokens.
const DEMO_MODELS: [DemoModel; 7] = [
    DemoModel {
        id: "openai/gpt-4o-mini",
        upstream: "gpt-4o-mini",
        context: 128_000,
        max_output: 16_384,
        reasoning: false,
        pricing: price(0.15, 0.60, 0.075, None),
    },
    DemoModel {
        id: "openai/gpt-4o",
        upstream: "gpt-4o",
        context: 128_000,
        max_output: 16_384,
        reasoning: false,
        pricing: price(2.50, 10.00, 1.25, None),
    },
    DemoModel {
        id: "azure/gpt-4o-mini",
        upstream: "gpt-4o-mini",
        context: 128_000,
        max_output: 16_384,
        reasoning: false,
        pricing: price(0.15, 0.60, 0.075, None),
    },
    DemoModel {
        id: "anthropic/claude-sonnet-4",
        upstream: "claude-sonnet-4-20250514",
        context: 200_000,
        max_output: 64_000,
        reasoning: true,
        pricing: price(3.00, 15.00, 0.30, Some(3.75)),
    },
    DemoModel {
        id: "anthropic/claude-3-5-haiku",
        upstream: "claude-3-5-haiku-20241022",
        context: 200_000,
        max_output: 8_192,
        reasoning: false,
        pricing: price(0.80, 4.00, 0.08, Some(1.00)),
    },
    DemoModel {
        id: "google/gemini-2.5-flash",
        upstream: "gemini-2.5-flash",
        context: 1_048_576,
        max_output: 65_536,
        reasoning: true,
        pricing: price(0.30, 2.50, 0.075, None),
    },
    DemoModel {
        id: "google/gemini-2.5-pro",
        upstream: "gemini-2.5-pro",
        context: 1_048_576,
        max_output: 65_536,
        reasoning: true,
        pricing: price(1.25, 10.00, 0.31, None),
    },
];

const DEMO_ALIASES: [(&str, &str); 3] = [
    ("fast", "openai/gpt-4o-mini"),
    ("balanced", "anthropic/claude-sonnet-4"),
    ("deep", "google/gemini-2.5-pro"),
];

impl DemoProviders {
    /// Starts the three servers with the default configuration.
    pub async fn start() -> io::Result<Self> {
        Self::start_with(DemoConfig::default()).await
    }

    /// Starts the three servers, all with `config`.
    pub async fn start_with(config: DemoConfig) -> io::Result<Self> {
        Ok(Self {
            openai: DemoServer::start(ProviderKind::Openai, config.clone()).await?,
            anthropic: DemoServer::start(ProviderKind::Anthropic, config.clone()).await?,
            gemini: DemoServer::start(ProviderKind::Gemini, config.clone()).await?,
            azure: DemoServer::start(ProviderKind::Azure, config.clone()).await?,
            bedrock: DemoServer::start(ProviderKind::Bedrock, config.clone()).await?,
            vertex: DemoServer::start(ProviderKind::Vertex, config).await?,
        })
    }

    /// `provider` served by the demo server of its kind, with the demo's credentials: the
    /// base URL replaced, the demo key as its API key, and for Bedrock a SigV4 signer with the
    /// [test key pair](TEST_ACCESS_KEY_ID) (in the provider's region, else `us-east-1`), for
    /// Vertex AI tokens for the [test service account](TEST_SERVICE_ACCOUNT_EMAIL) from the
    /// demo's token endpoint. Its codec (Vertex project and location, Azure `api-version`) is
    /// kept. A Vertex provider without a project gets [`DEMO_PROJECT`].
    pub fn serve(&self, provider: &Provider) -> Provider {
        use crate::provider::bedrock::sigv4::auth::{Credentials, CredentialsSource, SigV4Auth};
        let server = self.server(provider.kind);
        let mut p = provider.clone();
        p.base_url = server.base_url().into();
        p.api_key = Some(crate::catalog::ApiKey::new(server.config().api_key()));
        match provider.kind {
            ProviderKind::Bedrock => {
                // The region of Bedrock's own URL (`bedrock-runtime.{region}.amazonaws.com`).
                let region = provider
                    .base_url
                    .split_once("bedrock-runtime.")
                    .and_then(|(_, rest)| rest.split_once('.'))
                    .map_or("us-east-1", |(region, _)| region);
                let creds = Credentials::new(TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, None);
                p = p.with_auth(SigV4Auth::bedrock(region, CredentialsSource::Static(creds)));
            }
            ProviderKind::Vertex => {
                if let Ok(auth) = crate::provider::vertex::GoogleAuth::from_json(
                    server.service_account_json().as_bytes(),
                ) {
                    p = p.with_auth(auth);
                }
            }
            _ => {}
        }
        p
    }

    /// The server of `kind`.
    pub fn server(&self, kind: ProviderKind) -> &DemoServer {
        match kind {
            ProviderKind::Openai => &self.openai,
            ProviderKind::Anthropic => &self.anthropic,
            ProviderKind::Gemini => &self.gemini,
            ProviderKind::Azure => &self.azure,
            ProviderKind::Bedrock => &self.bedrock,
            ProviderKind::Vertex => &self.vertex,
        }
    }

    fn providers(&self) -> [(&'static str, &DemoServer); 4] {
        [
            ("openai", &self.openai),
            ("anthropic", &self.anthropic),
            ("google", &self.gemini),
            ("azure", &self.azure),
        ]
    }

    /// A catalog of the three servers: providers `openai`, `anthropic` and `google`, models
    /// `openai/gpt-4o-mini`, `openai/gpt-4o`, `anthropic/claude-sonnet-4`,
    /// `anthropic/claude-3-5-haiku`, `google/gemini-2.5-flash`, `google/gemini-2.5-pro` with
    /// their real context lengths, output caps and list prices, and the aliases `fast`,
    /// `balanced` and `deep`.
    pub fn catalog(&self) -> Catalog {
        let mut b = Catalog::builder();
        for (name, server) in self.providers() {
            let mut p = Provider::new(name, server.kind(), &server.base_url())
                .with_api_key(server.config().api_key());
            if server.kind() == ProviderKind::Azure {
                p = p.with_codec(
                    crate::provider::azure::Azure::new().api_version(DEMO_AZURE_API_VERSION),
                );
            }
            b = b.provider(p);
        }
        for (id, upstream, dims, input) in DEMO_EMBEDDINGS {
            let provider = id.split_once('/').map_or(id, |(p, _)| p);
            b = b.model(ModelSpec::new(id).embedding(Some(dims)).endpoint(
                provider,
                upstream,
                Some(Pricing {
                    input,
                    ..Pricing::default()
                }),
            ));
        }
        for m in &DEMO_MODELS {
            let provider = m.id.split_once('/').map_or(m.id, |(p, _)| p);
            b = b.model(
                ModelSpec::new(m.id)
                    .context_length(m.context)
                    .max_output(m.max_output)
                    .capabilities(Capabilities {
                        tools: true,
                        images: true,
                        reasoning: m.reasoning,
                    })
                    .endpoint(provider, m.upstream, Some(m.pricing)),
            );
        }
        for (alias, target) in DEMO_ALIASES {
            b = b.alias(alias, target);
        }
        b.build()
            .expect("the demo catalog is built from fixed, valid data")
    }

    /// The same catalog as TOML, for [`Catalog::from_toml`] or a config file.
    pub fn catalog_toml(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for (name, server) in self.providers() {
            if server.kind() == ProviderKind::Azure {
                let _ = writeln!(
                    s,
                    "[providers.{name}]\napi_version = \"{DEMO_AZURE_API_VERSION}\""
                );
            } else {
                let _ = writeln!(s, "[providers.{name}]");
            }
            let _ = write!(
                s,
                "kind = \"{}\"\nbase_url = \"{}\"\napi_key = \"{}\"\n\n",
                server.kind().as_str(),
                server.base_url(),
                server
                    .config()
                    .api_key()
                    .replace('\\', "\\\\")
                    .replace('"', "\\\""),
            );
        }
        for m in &DEMO_MODELS {
            let p = &m.pricing;
            let _ = write!(
                s,
                "[[models]]\nid = \"{}\"\nupstream = \"{}\"\ncontext_length = {}\nmax_output = {}\n\
                 capabilities = {{ tools = true, images = true, reasoning = {} }}\n\
                 pricing = {{ input = {:?}, output = {:?}",
                m.id, m.upstream, m.context, m.max_output, m.reasoning, p.input, p.output,
            );
            if let Some(c) = p.cached_input {
                let _ = write!(s, ", cached_input = {c:?}");
            }
            if let Some(w) = p.cache_write {
                let _ = write!(s, ", cache_write = {w:?}");
            }
            s.push_str(" }\n\n");
        }
        for (id, upstream, dims, input) in DEMO_EMBEDDINGS {
            let _ = write!(
                s,
                "[[models]]\nid = \"{id}\"\nupstream = \"{upstream}\"\nkind = \"embedding\"\n\
                 dimensions = {dims}\npricing = {{ input = {input:?}, output = 0.0 }}\n\n"
            );
        }
        s.push_str("[aliases]\n");
        for (alias, target) in DEMO_ALIASES {
            let _ = writeln!(s, "{alias} = \"{target}\"");
        }
        s
    }
}
