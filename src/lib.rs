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
