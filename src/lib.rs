//! switchboard: tower middleware for building OpenAI-compatible, OpenRouter-style LLM
//! gateways.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod catalog;
#[cfg(feature = "demo")]
#[cfg_attr(docsrs, doc(cfg(feature = "demo")))]
pub mod demo;
mod error;
pub mod ext;
pub mod openai;
pub mod provider;

pub use catalog::Catalog;
pub use error::{BoxError, Error, ErrorKind};
