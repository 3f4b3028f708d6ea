//! switchboard: tower middleware for building OpenAI-compatible, OpenRouter-style LLM
//! gateways, as layers an axum or tonic app embeds in its own stack.
//!
//! A chat-completion request enters as typed data ([`openai::ChatRequest`], parsed once at the
//! [`edge`]), each layer reads or enriches it through `http::Extensions`
//! ([`ext::Route`], [`ext::Target`], [`ext::ServedBy`], …), the innermost layer turns it into
//! one provider's native HTTP call on a pooled hyper client ([`client::HttpClient`]), and the
//! answer travels back as typed data ([`ChatResponse`]: a whole completion or a stream of
//! chunks).
//!
//! ```text
//! client (OpenAI SDK, curl, your app)
//!   │  POST …/chat/completions
//!   ▼
//! edge               parses JSON once, limits body size, renders every Error as OpenAI JSON,
//!   │                encodes streams as SSE, hides the usage chunk unless asked for
//!   ▼  http::Request<Arc<ChatRequest>>        ▲ http::Response<ChatResponse>
//! ModelResolve       model / alias / models[] → Route (ordered candidates)
//! Fallback           walks the Route: Target per attempt, commit point, ServedBy
//! ProviderTranslate  ChatRequest + Target → provider wire request; wire answer → canonical
//!   ▼  http::Request<UpstreamBody>            ▲ http::Response<Incoming>
//! HttpClient         hyper-util pooled client, rustls (ring), HTTP/1.1 + HTTP/2
//! ```
//!
//! # Example
//!
//! The default stack over a catalog, called through the HTTP edge (here against a local demo
//! provider):
//!
//! ```
//! # #[cfg(feature = "demo")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use http_body_util::{BodyExt, Full};
//! use switchboard::catalog::{ModelSpec, Provider, ProviderKind};
//! use switchboard::{Catalog, Gateway};
//! use tower::ServiceExt;
//!
//! let demo = switchboard::demo::DemoServer::start(ProviderKind::Openai, Default::default()).await?;
//! let catalog = Catalog::builder()
//!     .provider(
//!         Provider::new("openai", ProviderKind::Openai, &demo.base_url())
//!             .with_api_key(switchboard::demo::DEMO_API_KEY),
//!     )
//!     .model(ModelSpec::new("openai/gpt-4o-mini"))
//!     .alias("fast", "openai/gpt-4o-mini")
//!     .build()?;
//! let gateway = Gateway::builder(catalog).build();
//!
//! let request = http::Request::post("/v1/chat/completions").body(Full::new(
//!     r#"{"model":"fast","messages":[{"role":"user","content":"Hello!"}]}"#.into(),
//! ))?;
//! let response = gateway.chat_completions().oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["x-switchboard-model"], "openai/gpt-4o-mini");
//! let body = response.into_body().collect().await?.to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body)?;
//! assert!(json["choices"][0]["message"]["content"].is_string());
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "demo"))]
//! # fn main() {}
//! ```
//!
//! # Errors
//!
//! Every layer fails with one [`Error`] whose [`ErrorKind`] decides the HTTP status; the edge
//! is the only place that renders it (see [`ErrorKind`] for the table).
//!
//! # Modules and the way dependencies point
//!
//! ```text
//! server, bin          the ready gateway: config → stack, routes, listener (feature `server`)
//! edge                 HTTP ⇄ typed request/response (OpenAI chat completions, Anthropic
//!                      Messages); the only place errors become JSON
//! resolve cost cache   the layers, each with its named futures in `<layer>/future.rs`;
//!                      shadow copies requests to a candidate
//! fallback timeout
//! translate keys
//! provider             pure codecs (`ProviderCodec`), the provider itself (`Provider`,
//!                      `ProviderAuth`), no I/O
//! client               the pooled hyper client, the upstream request body
//! catalog              providers, models, prices, aliases, routing rules
//! openai               canonical wire types (requests, completions, chunks, SSE)
//! ext, headers, error  extension types shared by layers, every header name, the one Error
//! demo                 local providers on loopback (feature `demo`)
//! ```
//!
//! Arrows point down: wire types know nothing of the transport, codecs nothing of tower,
//! layers talk to each other only through the extension types in [`ext`], and there are no
//! import circles.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The benches' shared code (feature `bench-support`): not a public API.
#[cfg(feature = "bench-support")]
#[doc(hidden)]
pub mod bench_support;
mod body_util;
mod builder;
pub mod cache;
pub mod catalog;
pub mod chat;
pub mod client;
pub mod config;
pub mod cost;
#[cfg(feature = "demo")]
#[cfg_attr(docsrs, doc(cfg(feature = "demo")))]
pub mod demo;
pub mod edge;
pub mod embeddings;
mod error;
pub mod ext;
pub mod fallback;
mod future;
pub mod headers;
pub mod health;
pub mod keys;
mod macros;
pub mod openai;
pub mod provider;
#[cfg(feature = "log-db")]
#[cfg_attr(docsrs, doc(cfg(feature = "log-db")))]
pub mod request_log;
pub mod resolve;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
pub mod shadow;
pub mod timeout;
pub mod translate;

pub use builder::{Gateway, GatewayBuilder, GatewayService, ServiceBuilderExt};
pub use catalog::Catalog;
pub use chat::{ChatHttpRequest, ChatHttpResponse, ChatResponse, ChunkStream, Completion};
pub use error::{BoxError, Error, ErrorKind};

/// The README's code blocks, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
