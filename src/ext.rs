//! Extension types the layers share through `http::Extensions`.
//!
//! | type | written by | read by |
//! | --- | --- | --- |
//! | [`Route`] | ModelResolve | CostMeter, ResponseCache, Fallback (which takes it out) |
//! | [`Target`] | Fallback | ModelTimeout, ProviderTranslate |
//! | [`CallerKey`] | the host app's auth | CostMeter (budgets), per-key limits |
//! | [`ServedBy`] | Fallback (response) | CostMeter, the edge (headers) |
//! | [`CacheStatus`] | ResponseCache (response) | CostMeter, the edge |
//! | [`NativeRequest`] | the Messages edge | ProviderTranslate (a codec of the same format) |
//! | [`GenerationId`] | the edge (request) | CostMeter (the answer's `id`, the record) |
//! | [`Ingress`] | the edge (request) | CostMeter (the record) |
//! | [`ShadowOf`] | [`Shadow`](crate::shadow::Shadow) (a copy's request) | CostMeter (the record) |

use std::sync::Arc;

use crate::catalog::{Deadlines, Endpoint, Model, Pricing, Provider};
use crate::ErrorKind;

/// One way to answer a request: a model served by one provider endpoint.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The public model id (what the response's `model` says).
    pub model: Arc<str>,
    /// The provider.
    pub provider: Arc<Provider>,
    /// The provider's model name.
    pub upstream_model: Arc<str>,
    /// Prices, if known.
    pub pricing: Option<Pricing>,
    /// Deadlines for one attempt.
    pub deadlines: Deadlines,
    /// Context window, if known.
    pub context_length: Option<u32>,
    /// Output cap, if known.
    pub max_output: Option<u32>,
}

impl Candidate {
    /// A candidate from a catalog model and one of its endpoints.
    pub fn from_endpoint(model: &Model, endpoint: &Endpoint) -> Self {
        Self {
            model: model.id.clone(),
            provider: endpoint.provider.clone(),
            upstream_model: endpoint.upstream.clone(),
            pricing: endpoint.pricing,
            deadlines: endpoint.deadlines,
            context_length: model.context_length,
            max_output: model.max_output,
        }
    }

    /// A candidate for a model the catalog does not list (pass-through).
    pub fn passthrough(model: Arc<str>, provider: Arc<Provider>, upstream: Arc<str>) -> Self {
        Self {
            model,
            deadlines: provider.deadlines,
            provider,
            upstream_model: upstream,
            pricing: None,
            context_length: None,
            max_output: None,
        }
    }

    /// `provider/upstream`, for logs and attempt lists.
    pub fn label(&self) -> String {
        format!("{}/{}", self.provider.name, self.upstream_model)
    }
}

/// The ordered candidates for a request (written by ModelResolve).
#[derive(Debug, Clone)]
pub struct Route {
    /// What the client asked for (model id or alias).
    pub requested: Arc<str>,
    /// Candidates in the order to try them.
    pub candidates: Arc<[Candidate]>,
}

impl Route {
    /// A route of one candidate.
    pub fn single(requested: Arc<str>, c: Candidate) -> Self {
        Self {
            requested,
            candidates: Arc::from(vec![c]),
        }
    }
}

/// The candidate being tried (written by Fallback, read by ModelTimeout and
/// ProviderTranslate).
#[derive(Debug, Clone)]
pub struct Target {
    /// The candidate.
    pub candidate: Candidate,
    /// 1-based attempt number within the request.
    pub attempt: u32,
    /// Deadlines for this attempt, already clipped to what is left of the request budget.
    pub deadlines: Deadlines,
}

impl Target {
    /// The first attempt at `candidate`, with its own deadlines.
    pub fn new(candidate: Candidate) -> Self {
        Self {
            deadlines: candidate.deadlines,
            candidate,
            attempt: 1,
        }
    }
}

/// Who pays for the request: set by the host app's authentication, never taken from a header
/// the client controls.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallerKey(pub Arc<str>);

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Provider name.
    pub provider: Arc<str>,
    /// Public model id.
    pub model: Arc<str>,
    /// `None` on success, else the error kind.
    pub error: Option<ErrorKind>,
}

/// Which candidate answered, and every attempt made (response extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    /// Provider that served.
    pub provider: Arc<str>,
    /// Public model id that served.
    pub model: Arc<str>,
    /// All attempts in order, the serving one last.
    pub attempts: Vec<Attempt>,
}

impl ServedBy {
    /// `provider/model:outcome` entries joined by `, ` (the `x-switchboard-attempts` header).
    pub fn attempts_header(attempts: &[Attempt]) -> String {
        // The exact length, so the header value takes the buffer as it is.
        let len = attempts
            .iter()
            .map(|a| a.provider.len() + a.model.len() + 2 + a.error.map_or(2, |e| e.as_str().len()))
            .sum::<usize>()
            + 2 * attempts.len().saturating_sub(1);
        let mut s = String::with_capacity(len);
        for (i, a) in attempts.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&a.provider);
            s.push(':');
            s.push_str(&a.model);
            s.push('=');
            s.push_str(a.error.map_or("ok", ErrorKind::as_str));
        }
        s
    }
}

/// The models a caller may be served by (request extension): exact public ids (`openai/gpt-4o`,
/// or an alias, split or `auto` the operator lets the caller request) or prefixes ending in `*`
/// (`openai/*`). Set by [`ClientKeys`](crate::keys::ClientKeys) from the key's allow-list, or by
/// an app's own auth. [`ModelResolve`](crate::resolve::ModelResolve) keeps only the candidates
/// whose model id it allows, unless the id the client asked for is listed exactly (an alias,
/// split or `auto` the operator allowed as such); with no candidate left the request is a 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelAllowList(pub Arc<[String]>);

impl ModelAllowList {
    /// Whether `id` is allowed (exactly, or by a `prefix*` pattern).
    pub fn allows(&self, id: &str) -> bool {
        self.0.iter().any(|m| match m.strip_suffix('*') {
            Some(prefix) => id.starts_with(prefix),
            None => m == id,
        })
    }

    /// Whether `id` is listed exactly (no pattern).
    pub fn lists(&self, id: &str) -> bool {
        self.0.iter().any(|m| m == id)
    }
}

/// Time spent waiting on the upstream for the answer that served: until the whole body was
/// decoded (non-streaming) or until its headers (streams). Response extension written by
/// ProviderTranslate; the CostMeter derives the gateway's own overhead from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamLatency(pub std::time::Duration);

/// The upstream's own request id (`x-request-id` / `request-id`), for logs (response extension
/// written by ProviderTranslate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequestId(pub http::HeaderValue);

/// The request's cost in USD (response extension, set by CostMeter on a whole answer; the
/// edge renders it as `x-switchboard-cost`; a stream carries it in its final `usage.cost`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost(pub f64);

/// Whether the response cache answered (response extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Not in the cache; the answer was fetched (and stored if eligible).
    Miss,
    /// The cache was skipped for this request.
    Bypass,
}

impl CacheStatus {
    /// `HIT`, `MISS` or `BYPASS`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
        }
    }
}

/// The request's generation id (`gen-…`, request extension): minted by the edge, sent as the
/// `x-generation-id` header on every answer, written by the CostMeter as the completion's and
/// the chunks' `id`, and the key of the request log's row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GenerationId(pub Arc<str>);

impl GenerationId {
    /// A fresh id: `gen-`, the Unix time in seconds, `-`, the nanoseconds within it (eight hex
    /// digits) and 16 hex digits of a keyed hash of a process-wide counter
    /// (`gen-1733419200-1a2b3c4d9f3c2b1d7e6a5f40`): unique in practice across runs and
    /// instances, telling nothing but the time it was made. Ids sort by that time, so the
    /// request log's index on them grows at its end.
    pub fn new() -> Self {
        let id = crate::openai::sortable_unique();
        let mut buf = [0u8; 4 + 40];
        buf[..4].copy_from_slice(b"gen-");
        let len = 4 + id.as_bytes().len().min(40);
        buf[4..len].copy_from_slice(&id.as_bytes()[..len - 4]);
        // One allocation: the `Arc<str>` itself.
        Self(Arc::from(
            std::str::from_utf8(&buf[..len]).unwrap_or("gen-0"),
        ))
    }

    /// The id as a header value.
    pub fn header_value(&self) -> http::HeaderValue {
        http::HeaderValue::from_str(&self.0)
            .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
    }
}

impl Default for GenerationId {
    fn default() -> Self {
        Self::new()
    }
}

/// A shadow copy's primary: the generation id of the request it copies (request extension
/// set by [`Shadow`](crate::shadow::Shadow) on the copy; the CostMeter's record carries it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShadowOf(pub Arc<str>);

/// The wire format the request came in by (request extension, set by the edge): `chat`
/// (`/v1/chat/completions`), `messages` (`/v1/messages`), or another edge's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ingress(pub &'static str);

impl Ingress {
    /// The format of a request path: the last path segments name it (`…/chat/completions` →
    /// `chat`, `…/messages` → `messages`, `…/responses` → `responses`, `…/embeddings` →
    /// `embeddings`), else `other`.
    pub fn from_path(path: &str) -> Self {
        let p = path.trim_end_matches('/');
        Self(
            if p.ends_with("/chat/completions") || p == "chat/completions" {
                "chat"
            } else if p.ends_with("messages") {
                "messages"
            } else if p.ends_with("responses") {
                "responses"
            } else if p.ends_with("embeddings") {
                "embeddings"
            } else {
                "other"
            },
        )
    }
}

/// The client's request as it was sent, in a provider's own wire format (request
/// extension). A codec of that format sends these bytes with only `model` replaced (and its
/// own auth) instead of re-encoding the canonical request, so nothing the canonical form
/// cannot carry is lost; other codecs ignore it.
#[derive(Debug, Clone)]
pub struct NativeRequest {
    /// The format of `body`.
    pub format: NativeFormat,
    /// The request body as the client sent it.
    pub body: bytes::Bytes,
    /// The client's headers a provider of this format reads (Anthropic: `anthropic-version`,
    /// `anthropic-beta`).
    pub headers: http::HeaderMap,
    /// Why the canonical request is not the whole request, when it is not: parts only a
    /// provider of this format can carry (an Anthropic server tool, a text document, …) were
    /// left out of it. Another provider's codec answers this error (a 400) instead of
    /// encoding the canonical request.
    pub only_native: Option<crate::Error>,
}

/// The wire format of a [`NativeRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NativeFormat {
    /// Anthropic's Messages API (`POST /v1/messages`).
    AnthropicMessages,
}

/// The request's id (request extension, set by the edge), from `x-request-id` or generated;
/// returned on the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub http::HeaderValue);

/// A non-streaming answer as the provider sent it, for a request that went in the provider's
/// own format (response extension, set by ProviderTranslate beside the decoded completion).
/// An edge of that format answers these bytes (with the cost added) instead of rendering the
/// canonical completion, so blocks and fields the canonical form cannot carry reach the
/// client. Streams carry the same in [`ChatCompletionChunk::native`](crate::openai::ChatCompletionChunk::native).
#[derive(Debug, Clone)]
pub struct NativeAnswer {
    /// The format of `body`.
    pub format: NativeFormat,
    /// The provider's body.
    pub body: bytes::Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_header_is_built_at_its_exact_length() {
        let at = |p: &str, m: &str, error| Attempt {
            provider: p.into(),
            model: m.into(),
            error,
        };
        let attempts = [
            at("a", "a/m", Some(ErrorKind::RateLimited)),
            at("bb", "bb/model", Some(ErrorKind::Timeout)),
            at("c", "c/m", None),
        ];
        for n in 1..=attempts.len() {
            let s = ServedBy::attempts_header(&attempts[..n]);
            assert_eq!(s.len(), s.capacity(), "{s}");
        }
        assert_eq!(
            ServedBy::attempts_header(&attempts),
            format!(
                "a:a/m={}, bb:bb/model={}, c:c/m=ok",
                ErrorKind::RateLimited.as_str(),
                ErrorKind::Timeout.as_str()
            )
        );
        assert_eq!(ServedBy::attempts_header(&[]), "");
    }
}
