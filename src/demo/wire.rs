//! What the server hands a provider module and what it gets back: the request context
//! ([`Ctx`]), the provider's answer ([`Reply`], [`StreamPlan`]) and the state a provider keeps
//! across requests ([`PromptCache`]). The provider modules and the server both depend on this
//! module; the server depends on the provider modules, not the reverse.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;

use super::DemoConfig;

/// What the request is, for the provider modules.
#[derive(Debug)]
pub(super) struct Ctx<'a> {
    /// The server's configuration.
    pub(super) config: &'a DemoConfig,
    /// The server's Anthropic prompt cache.
    pub(super) prompt_cache: &'a PromptCache,
    pub(super) method: &'a Method,
    pub(super) path: &'a str,
    pub(super) query: Option<&'a str>,
    pub(super) headers: &'a HeaderMap,
    /// The body, when it is JSON.
    pub(super) body: Option<&'a Value>,
    /// This request's number on this server, from 1 (used in ids).
    pub(super) seq: u64,
    /// Answer with this text (for [`Fault::Huge`](super::Fault::Huge)).
    pub(super) text_override: Option<&'static str>,
}

impl Ctx<'_> {
    /// A header as text.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter.
    pub(super) fn query_param(&self, name: &str) -> Option<&str> {
        self.query?
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// Words per streamed event.
    pub(super) fn words_per_chunk(&self) -> usize {
        self.config.words_per_chunk
    }

    /// Whether the model is allowed by the configuration.
    pub(super) fn model_known(&self, model: &str) -> bool {
        self.config
            .models
            .as_ref()
            .is_none_or(|m| m.iter().any(|k| k == model))
    }

    /// Whether `key` was already in the prompt cache (records it either way).
    pub(super) fn cache_hit(&self, key: u64) -> bool {
        self.prompt_cache.hit(key)
    }
}

/// A provider's answer before faults shape it.
#[derive(Debug)]
pub(super) enum Reply {
    /// A JSON body.
    Json {
        status: StatusCode,
        headers: Vec<(&'static str, String)>,
        body: Value,
    },
    /// An event stream.
    Stream(StreamPlan),
}

impl Reply {
    pub(super) fn json(status: StatusCode, body: Value) -> Self {
        Self::Json {
            status,
            headers: Vec::new(),
            body,
        }
    }

    #[must_use]
    pub(super) fn with_header(mut self, name: &'static str, value: String) -> Self {
        match &mut self {
            Self::Json { headers, .. } => headers.push((name, value)),
            Self::Stream(p) => p.headers.push((name, value)),
        }
        self
    }
}

/// A whole event stream, one frame per SSE event.
#[derive(Debug)]
pub(super) struct StreamPlan {
    pub(super) content_type: &'static str,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) frames: Vec<Bytes>,
    /// How many trailing frames make the provider's end marker.
    pub(super) end_frames: usize,
    /// A frame with broken JSON, for
    /// [`Fault::MalformedEvent`](super::Fault::MalformedEvent).
    pub(super) malformed: Bytes,
}

/// Anthropic prompt-cache prefixes seen so far, by hash.
#[derive(Debug, Default)]
pub(super) struct PromptCache(Mutex<HashSet<u64>>);

impl PromptCache {
    /// Whether `key` was already seen (records it either way).
    pub(super) fn hit(&self, key: u64) -> bool {
        !self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key)
    }
}
