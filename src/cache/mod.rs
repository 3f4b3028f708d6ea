//! ResponseCache: answers repeated requests from a cache, replaying streams as streams, and
//! shares one upstream call between identical requests in flight.
//!
//! Sits below [`ModelResolve`](crate::resolve::ModelResolve) and above
//! [`Fallback`](crate::fallback::Fallback).
//!
//! Requires: nothing. Reads the [`Route`] (from ModelResolve) for the key; without one the key
//! uses the requested `model` (and `models`, `route`, `provider`). Reads the request's
//! `Cache-Control` header. Provides: [`CacheStatus`] on every successful response (`HIT`,
//! `MISS` or `BYPASS`; the edge sends it as `x-switchboard-cache`), and on hits the
//! [`ServedBy`] of the original answer (with no attempts).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use switchboard::cache::ResponseCacheLayer;
//! use switchboard::ext::CacheStatus;
//! use switchboard::openai::{ChatCompletion, ChatRequest};
//! use switchboard::{ChatHttpRequest, ChatResponse, Error};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! let calls = Arc::new(AtomicUsize::new(0));
//! let upstream = {
//!     let calls = calls.clone();
//!     service_fn(move |_req: ChatHttpRequest| {
//!         calls.fetch_add(1, Ordering::SeqCst);
//!         async {
//!             let c: ChatCompletion = serde_json::from_str(r#"{"id":"chatcmpl-up","created":1,
//!                 "model":"m","choices":[{"index":0,"finish_reason":"stop",
//!                 "message":{"role":"assistant","content":"Hi!"}}],
//!                 "usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#)
//!                 .unwrap();
//!             Ok::<_, Error>(http::Response::new(ChatResponse::from(c)))
//!         }
//!     })
//! };
//! let svc = ResponseCacheLayer::default().layer(upstream);
//! let request = || {
//!     http::Request::new(Arc::new(
//!         ChatRequest::from_slice(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
//!             .unwrap(),
//!     ))
//! };
//!
//! let first = svc.clone().oneshot(request()).await.unwrap();
//! assert_eq!(first.extensions().get::<CacheStatus>(), Some(&CacheStatus::Miss));
//!
//! let second = svc.clone().oneshot(request()).await.unwrap();
//! assert_eq!(second.extensions().get::<CacheStatus>(), Some(&CacheStatus::Hit));
//! let answer = second.into_body().into_complete().unwrap().into_typed().unwrap();
//! assert_eq!(answer.choices[0].message.content.as_deref(), Some("Hi!"));
//! assert_ne!(answer.id, "chatcmpl-up"); // a fresh id
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//! # }
//! ```
//!
//! # Keys
//! A BLAKE3 hash of the route's candidates (provider and upstream model, in order) and every
//! request field that affects the answer: `messages`, `tools`, `tool_choice`,
//! `response_format`, sampling parameters, output caps, `n`, log probabilities, penalties,
//! reasoning settings, `parallel_tool_calls` and unknown pass-through fields. Not `stream`,
//! `stream_options`, `user`, `metadata`. Raw JSON parts are hashed as written less the
//! whitespace between tokens, so formatting does not matter (another key order is a miss).
//! See [`CacheKey`].
//!
//! # What is stored
//! Only complete, successful answers: every choice has a finish reason other than `error`, the
//! stream did not end with an error item, and the entry's approximate size is at most
//! `max_entry_bytes`. An entry holds the chunks (recorded as the stream passed, or rendered
//! from a completion) and the aggregated completion, so a streaming request can be answered
//! from a stored completion and the reverse.
//!
//! # Hits
//! A hit is the same answer (text, tool calls, finish reasons, usage token counts) under a
//! fresh `id` and `created`; streams are replayed as streams ([`ReplayStream`]), usage chunk
//! included (the edge hides it when the client did not ask). A hit is marked
//! [`CacheStatus::Hit`], which the CostMeter prices at 0.
//!
//! # Per request: `Cache-Control`
//! - `no-store`: the cache is neither read nor written (`BYPASS`).
//! - `no-cache`: no lookup; the answer is fetched and the entry refreshed (`MISS`).
//! - `max-age=N`: an entry is accepted only if younger than `N` seconds; `N` also caps the TTL
//!   of the entry this request may store.
//!
//! With [`deterministic_only`](ResponseCacheLayer::deterministic_only), requests that have
//! neither `temperature: 0` nor a `seed` bypass the cache.
//!
//! # Single flight
//! Identical requests arriving while one is being fetched do not call the upstream again:
//! they follow the first one's recording. Streaming followers get each chunk as soon as the
//! leader does; non-streaming followers of a stream get the aggregated completion when it is
//! complete, streaming followers of a completion get it rendered as chunks. An error reaches
//! every follower and nothing is stored. Until the leader's client goes away the upstream
//! stream is read by the leader's own stream, so followers advance at the pace the leader's
//! client reads. The in-flight map is per layer (per process), also with a shared store.
//!
//! Billing: followers are answered like hits (a fresh `id`, [`CacheStatus::Hit`], which the
//! CostMeter prices at 0) and the leader's request pays the upstream call. Flights are keyed
//! per [`CallerKey`] like entries, so by default leader and followers are the same caller,
//! who pays once; with [`shared_across_callers`](ResponseCacheLayer::shared_across_callers)
//! followers of another caller ride free on the leader's call, as they would on a hit.
//!
//! If the leader's client goes away while followers wait, the rest of the answer is fetched
//! by a spawned task so the followers still get all of it, and the leader's caller is billed
//! what the upstream really used (the task reports it on the leader's
//! [`BillingTab`]). Once no follower waits, the upstream call is
//! dropped (its caller billed for what was generated until then), unless
//! [`finish_abandoned_within`](ResponseCacheLayer::finish_abandoned_within) lets it finish
//! for the store: then it goes on while the entry stays under `max_entry_bytes` and within
//! that time.
//!
//! # Streaming
//! A miss's stream is passed through unchanged; each chunk is cloned into the recording
//! inline as it passes (no task, no channel), so the miss adds no latency. The store write
//! happens in a spawned task once the stream ended.
//!
//! # Errors
//! The layer adds none: store failures are logged and read as a miss; the inner service's
//! errors pass through (and reach every follower).

pub mod future;
mod key;
mod record;
mod replay;
pub mod store;

use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::CACHE_CONTROL;
use http::HeaderMap;
use tower_layer::Layer;
use tower_service::Service;

pub use key::CacheKey;
pub use replay::{fresh_completion, ReplayStream};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use store::RedisStore;
pub use store::{CacheStore, CachedEntry, CachedServedBy, MemoryStore, Rendered};

use record::{follow, Clock, Lead, PendingLead, Role, Shared};

use crate::chat::{ChatHttpRequest, ChatHttpResponse, ChatResponse};
use crate::cost::BillingTab;
use crate::ext::{CacheStatus, CallerKey, NativeRequest, Route, ServedBy};
use crate::openai::ChatRequest;
use crate::Error;

/// Default TTL of an entry: one hour.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Default largest entry stored: 1 MiB.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// The request's `Cache-Control` directives the cache honours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-cache`: skip the lookup, fetch and refresh the entry.
    pub no_cache: bool,
    /// `no-store`: neither read nor write.
    pub no_store: bool,
    /// `max-age=N`: the oldest entry accepted, and the TTL cap of a new one.
    pub max_age: Option<Duration>,
}

impl CacheControl {
    /// Parses every `Cache-Control` header (directives are case-insensitive; unknown ones and
    /// malformed values are ignored; the smallest `max-age` wins).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut cc = Self::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                if name.eq_ignore_ascii_case("no-cache") {
                    cc.no_cache = true;
                } else if name.eq_ignore_ascii_case("no-store") {
                    cc.no_store = true;
                } else if name.eq_ignore_ascii_case("max-age") {
                    if let Some(secs) = arg.and_then(|a| a.parse::<u64>().ok()) {
                        let d = Duration::from_secs(secs);
                        cc.max_age = Some(cc.max_age.map_or(d, |m| m.min(d)));
                    }
                }
            }
        }
        cc
    }
}

#[derive(Debug, Clone, Copy)]
struct Config {
    ttl: Duration,
    max_entry_bytes: usize,
    deterministic_only: bool,
    shared_across_callers: bool,
    finish_abandoned_within: Duration,
}

/// Layer for [`ResponseCache`]; see the [module docs](self). Clones (and every service built
/// from them) share the store and the in-flight map.
#[derive(Debug, Clone)]
pub struct ResponseCacheLayer {
    shared: Arc<Shared>,
    config: Config,
}

impl Default for ResponseCacheLayer {
    /// An in-memory cache ([`MemoryStore::default`]: 64 MiB, 10 000 entries).
    fn default() -> Self {
        Self::new(MemoryStore::default())
    }
}

/// What the embeddings cache shares with a [`ResponseCacheLayer`]: its store, clock and
/// settings.
#[derive(Debug, Clone)]
pub(crate) struct SharedStore {
    shared: Arc<Shared>,
    pub(crate) ttl: Duration,
    pub(crate) max_entry_bytes: usize,
    pub(crate) shared_across_callers: bool,
}

impl SharedStore {
    pub(crate) fn store(&self) -> &Arc<dyn CacheStore> {
        &self.shared.store
    }
    pub(crate) fn now_ms(&self) -> u64 {
        self.shared.clock.now_ms()
    }
}

impl ResponseCacheLayer {
    /// The store, clock and settings, for the embeddings cache.
    pub(crate) fn shared_store(&self) -> SharedStore {
        SharedStore {
            shared: self.shared.clone(),
            ttl: self.config.ttl,
            max_entry_bytes: self.config.max_entry_bytes,
            shared_across_callers: self.config.shared_across_callers,
        }
    }

    /// A cache over `store`, with a one-hour TTL and a 1 MiB entry limit.
    pub fn new(store: impl CacheStore) -> Self {
        Self {
            shared: Arc::new(Shared {
                store: Arc::new(store),
                inflight: std::sync::Mutex::default(),
                clock: Clock::new(),
            }),
            config: Config {
                ttl: DEFAULT_TTL,
                max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
                deterministic_only: false,
                shared_across_callers: false,
                finish_abandoned_within: Duration::ZERO,
            },
        }
    }

    /// Default TTL of new entries (a request's `max-age` may shorten it).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// Largest entry stored, in approximate bytes (text plus fixed per-chunk overheads).
    #[must_use]
    pub fn max_entry_bytes(mut self, n: usize) -> Self {
        self.config.max_entry_bytes = n;
        self
    }

    /// Cache only requests with `temperature: 0` or a `seed`; others bypass the cache.
    #[must_use]
    pub fn deterministic_only(mut self, yes: bool) -> Self {
        self.config.deterministic_only = yes;
        self
    }

    /// Whether callers share entries and in-flight requests (default `false`: each
    /// [`CallerKey`] has its own, so a tenant can neither read another's
    /// answers nor learn from a hit that another sent the same prompt). Sharing raises the hit
    /// rate for identical public prompts; turn it on only where every caller may see what the
    /// others asked.
    #[must_use]
    pub fn shared_across_callers(mut self, yes: bool) -> Self {
        self.config.shared_across_callers = yes;
        self
    }

    /// How long the upstream call of a request whose client went away may go on only to
    /// store its answer, when no identical request follows it (default zero: such a call is
    /// dropped at once, and its caller billed for what was generated until then). With a
    /// time, the call goes on while the answer stays storable (no longer than
    /// [`max_entry_bytes`](Self::max_entry_bytes)) and that time has not passed since the
    /// client left; its caller is billed what the upstream really used. Worth it where
    /// clients that time out retry the same request: the retry is then a hit.
    #[must_use]
    pub fn finish_abandoned_within(mut self, within: Duration) -> Self {
        self.config.finish_abandoned_within = within;
        self
    }

    /// Number of upstream calls in flight that identical requests can join.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;
    fn layer(&self, inner: S) -> ResponseCache<S> {
        ResponseCache {
            inner,
            shared: self.shared.clone(),
            config: self.config,
        }
    }
}

/// The response cache service; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ResponseCache<S> {
    inner: S,
    shared: Arc<Shared>,
    config: Config,
}

impl<S> ResponseCache<S> {
    crate::macros::inner_service_accessors!(inner: S);
}

fn is_deterministic(req: &ChatRequest) -> bool {
    req.temperature == Some(0.0) || req.seed.is_some()
}

impl<S> Service<ChatHttpRequest> for ResponseCache<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = future::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ChatHttpRequest) -> Self::Future {
        let cc = CacheControl::from_headers(req.headers());
        let body = req.body();
        if cc.no_store || (self.config.deterministic_only && !is_deterministic(body)) {
            return future::ResponseFuture::bypass(self.inner.call(req));
        }
        let caller = match self.config.shared_across_callers {
            true => None,
            false => req.extensions().get::<CallerKey>().map(|c| &*c.0),
        };
        let native = req.extensions().get::<NativeRequest>().map(|n| &n.body[..]);
        let key = match CacheKey::for_native(caller, req.extensions().get::<Route>(), body, native)
        {
            Ok(k) => k,
            Err(e) => {
                tracing::debug!(error = %e, "request not cacheable");
                return future::ResponseFuture::bypass(self.inner.call(req));
            }
        };
        let want_stream = body.is_stream();
        // Use the service that was driven to readiness; leave a clone in its place.
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let config = self.config;
        future::ResponseFuture::cached(Box::pin(lookup_or_fetch(
            shared,
            config,
            key,
            cc,
            want_stream,
            inner,
            req,
        )))
    }
}

async fn lookup_or_fetch<S>(
    shared: Arc<Shared>,
    config: Config,
    key: CacheKey,
    cc: CacheControl,
    want_stream: bool,
    mut inner: S,
    req: ChatHttpRequest,
) -> Result<ChatHttpResponse, Error>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>,
    S::Future: Send + 'static,
{
    if !cc.no_cache {
        if let Some(f) = shared.join(key) {
            return follow(f, want_stream).await;
        }
        match shared.store.get(key).await {
            Ok(Some(entry)) if entry.is_fresh(shared.clock.now_ms(), cc.max_age) => {
                return Ok(hit(&entry, want_stream));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "response cache lookup failed"),
        }
    }
    let flight = match shared.join_or_lead(key, cc.no_cache) {
        Role::Follow(f) => return follow(f, want_stream).await,
        Role::Lead(flight) => flight,
    };
    let ttl = cc.max_age.map_or(config.ttl, |m| m.min(config.ttl));
    let lead = Lead {
        shared,
        key,
        flight,
        ttl,
        max_entry_bytes: config.max_entry_bytes,
        served_by: None,
        tab: req.extensions().get::<BillingTab>().cloned(),
        finish_within: config.finish_abandoned_within,
    };
    PendingLead::new(Box::pin(inner.call(req)), lead).await
}

fn hit(entry: &Arc<CachedEntry>, want_stream: bool) -> ChatHttpResponse {
    let body = if want_stream {
        ChatResponse::stream(ReplayStream::new(entry.clone()))
    } else if let Some(raw) = replay::fresh_raw(entry) {
        ChatResponse::from(raw)
    } else {
        ChatResponse::from(fresh_completion(entry))
    };
    let mut resp = http::Response::new(body);
    if let Some(s) = &entry.served_by {
        resp.extensions_mut().insert(ServedBy {
            provider: s.provider.clone(),
            model: s.model.clone(),
            attempts: Vec::new(),
        });
    }
    resp.extensions_mut().insert(CacheStatus::Hit);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(values: &[&str]) -> CacheControl {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CACHE_CONTROL, v.parse().unwrap());
        }
        CacheControl::from_headers(&h)
    }

    #[test]
    fn parses_cache_control() {
        assert_eq!(cc(&[]), CacheControl::default());
        let c = cc(&["No-Cache, max-age=60"]);
        assert!(c.no_cache && !c.no_store);
        assert_eq!(c.max_age, Some(Duration::from_secs(60)));
        let c = cc(&["max-age=\"30\"", "no-store", "max-age=90"]);
        assert!(c.no_store);
        assert_eq!(c.max_age, Some(Duration::from_secs(30)));
        assert_eq!(cc(&["max-age=soon, private"]), CacheControl::default());
    }

    #[tokio::test]
    async fn each_caller_has_its_own_entries_unless_shared() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tower::{service_fn, Layer, ServiceExt};

        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let inner = service_fn(move |_req: ChatHttpRequest| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                let c: crate::openai::ChatCompletion = serde_json::from_str(
                    r#"{"id":"x","object":"chat.completion","created":1,"model":"m",
                        "choices":[{"index":0,"message":{"role":"assistant","content":"secret answer"},
                        "finish_reason":"stop"}]}"#,
                )
                .unwrap();
                Ok::<_, Error>(http::Response::new(ChatResponse::from(c)))
            }
        });
        let req = |caller: &str| {
            let chat = crate::openai::ChatRequest::from_slice(
                br#"{"model":"m","messages":[{"role":"user","content":"my private prompt"}]}"#,
            )
            .unwrap();
            let mut r = http::Request::new(Arc::new(chat));
            r.extensions_mut().insert(CallerKey(caller.into()));
            r
        };
        let status = |r: &ChatHttpResponse| r.extensions().get::<CacheStatus>().copied();

        let svc = ResponseCacheLayer::default().layer(inner.clone());
        let a1 = svc.clone().oneshot(req("tenant-a")).await.unwrap();
        let b1 = svc.clone().oneshot(req("tenant-b")).await.unwrap();
        let a2 = svc.clone().oneshot(req("tenant-a")).await.unwrap();
        assert_eq!(status(&a1), Some(CacheStatus::Miss));
        assert_eq!(
            status(&b1),
            Some(CacheStatus::Miss),
            "B must not hit A's entry"
        );
        assert_eq!(status(&a2), Some(CacheStatus::Hit), "A still hits its own");
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let shared = ResponseCacheLayer::default()
            .shared_across_callers(true)
            .layer(inner);
        shared.clone().oneshot(req("tenant-a")).await.unwrap();
        let b = shared.oneshot(req("tenant-b")).await.unwrap();
        assert_eq!(status(&b), Some(CacheStatus::Hit));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
