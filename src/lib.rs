//! switchboard: tower middleware for building OpenAI-compatible, OpenRouter-style LLM
//! gateways.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod catalog;
mod error;
pub mod ext;
pub mod openai;
pub mod provider;

pub use catalog::Catalog;
pub use error::{BoxError, Error, ErrorKind};
pub mod chat;
pub mod client;
pub mod translate;

pub use chat::{ChatHttpRequest, ChatHttpResponse, ChatResponse, ChunkStream};
mod builder;
pub mod edge;
pub mod fallback;
pub mod future;
pub mod resolve;

pub use builder::{Gateway, GatewayBuilder, GatewayService};
