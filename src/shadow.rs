//! Shadow routing: a sampled share of the requests for a model (or a task) is copied to a
//! candidate target, to compare the two on real traffic without the client noticing.
//!
//! ```toml
//! [[routing.shadows]]
//! source = "fast"                          # a model id, alias, split or `task:<name>`
//! candidate = "anthropic/claude-3-5-haiku" # any routable target
//! sample = 0.1                             # share of matching requests copied
//! max_concurrency = 4                      # copies in flight at once; more are skipped
//! ```
//!
//! [`ShadowLayer`] sits near the top of the typed stack (below the gateway keys, above
//! ModelResolve). For a request whose `model` (as the client sent it) is a rule's `source`,
//! or whose task (`x-switchboard-task`, else `metadata.task`) is the `<name>` of a
//! `task:<name>` source, it draws against `sample`; a sampled request is passed on unchanged
//! and a copy with `model` replaced by the candidate (and `models` dropped) is spawned through
//! the same inner stack once the primary has an answer (its headers, for a stream). A primary
//! refused below this layer (the caller's budget, 402; a key's unpriced model, 403; any other
//! error) makes no copy: a caller over budget cannot spend the operator's money on copies. The
//! primary never waits for the copy: a slow, failing or hung candidate changes nothing for the
//! client.
//!
//! Each rule holds a semaphore of `max_concurrency` permits; a sampled request that finds
//! none free, or whose primary failed, is not copied and is counted as skipped. The spawned
//! task drains the copy's answer (whole or streamed) to the end and then releases the permit.
//!
//! A copy:
//! - carries a fresh [`GenerationId`] and [`ShadowOf`](crate::ext::ShadowOf) (the primary's id), so the CostMeter's
//!   record — and the request log's row — links it to the primary;
//! - carries no [`CallerKey`](crate::ext::CallerKey) and no
//!   [`ModelAllowList`](crate::ext::ModelAllowList): it is not charged to the caller's budget
//!   (its cost is logged as shadow spend), and the operator's rule, not the key's allow-list,
//!   decides the target;
//! - is sent with `cache-control: no-store`: the response cache neither answers it nor
//!   stores its answer.
//!
//! Metrics: `switchboard_shadow_copies_total{outcome="sent"|"skipped"|"failed", candidate}`.
//! The same counts per rule are read with [`ShadowLayer::counts`].
//!
//! The client's prompt goes to a second provider: shadows are an operator's opt-in.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};

use crate::chat::{ChatHttpRequest, ChatHttpResponse, ChatResponse};
use crate::ext::{GenerationId, Ingress, NativeRequest};
use crate::Error;

/// The most copies one rule may have in flight (a larger `max_concurrency` is capped).
pub const MAX_CONCURRENCY: usize = 1024;

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The `model` the client sent: a model id, alias, split or `auto`.
    Model(Arc<str>),
    /// The request's task (`task:<name>`).
    Task(Arc<str>),
}

impl Source {
    /// `task:<name>` → a task, anything else → a model id.
    pub fn parse(s: &str) -> Self {
        match s.strip_prefix("task:") {
            Some(t) => Self::Task(t.into()),
            None => Self::Model(s.into()),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Model(m) => f.write_str(m),
            Self::Task(t) => write!(f, "task:{t}"),
        }
    }
}

/// One `[[routing.shadows]]` rule.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ShadowRule {
    /// Which requests are copied.
    pub source: Source,
    /// Where the copies go: any id the gateway routes (model, alias, split).
    pub candidate: Arc<str>,
    /// The share of matching requests copied, 0 to 1.
    pub sample: f64,
    /// Copies in flight at once, at most (0: none are sent).
    pub max_concurrency: usize,
}

impl ShadowRule {
    /// Copies every matching request (`sample` 1), 4 at a time.
    pub fn new(source: &str, candidate: &str) -> Self {
        Self {
            source: Source::parse(source),
            candidate: candidate.into(),
            sample: 1.0,
            max_concurrency: 4,
        }
    }

    /// The share of matching requests copied (clamped to 0–1; NaN is 0).
    #[must_use]
    pub fn sample(mut self, share: f64) -> Self {
        self.sample = if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        };
        self
    }

    /// Copies in flight at once, at most (capped at [`MAX_CONCURRENCY`]).
    #[must_use]
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.min(MAX_CONCURRENCY);
        self
    }
}

/// How many copies a rule sent, skipped (no permit free, or the primary failed) and saw fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShadowCounts {
    /// Copies started.
    pub sent: u64,
    /// Sampled requests not copied: `max_concurrency` copies were in flight.
    pub skipped: u64,
    /// Copies that ended in an error (before or during the answer).
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
}

struct RuleState {
    rule: ShadowRule,
    permits: Arc<Semaphore>,
    counters: Counters,
}

/// Adds [`Shadow`]; see the [module docs](self). Cheap to clone: clones share the
/// semaphores and the counts.
#[derive(Clone)]
pub struct ShadowLayer {
    rules: Arc<[RuleState]>,
    rng: Arc<Rng>,
}

impl fmt::Debug for ShadowLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShadowLayer")
            .field(
                "rules",
                &self.rules.iter().map(|r| &r.rule).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ShadowLayer {
    /// A layer with these rules (each request is matched against every rule; each matching
    /// rule draws on its own).
    pub fn new(rules: impl IntoIterator<Item = ShadowRule>) -> Self {
        Self {
            rules: rules
                .into_iter()
                .map(|rule| RuleState {
                    permits: Arc::new(Semaphore::new(rule.max_concurrency.min(MAX_CONCURRENCY))),
                    rule,
                    counters: Counters::default(),
                })
                .collect(),
            rng: Arc::new(Rng::from_entropy()),
        }
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules with their counts so far.
    pub fn counts(&self) -> Vec<(ShadowRule, ShadowCounts)> {
        self.rules
            .iter()
            .map(|r| {
                (
                    r.rule.clone(),
                    ShadowCounts {
                        sent: r.counters.sent.load(Ordering::Relaxed),
                        skipped: r.counters.skipped.load(Ordering::Relaxed),
                        failed: r.counters.failed.load(Ordering::Relaxed),
                    },
                )
            })
            .collect()
    }
}

impl<S> Layer<S> for ShadowLayer {
    type Service = Shadow<S>;

    fn layer(&self, inner: S) -> Shadow<S> {
        Shadow {
            inner,
            layer: self.clone(),
        }
    }
}

/// The shadow-copying service; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Shadow<S> {
    inner: S,
    layer: ShadowLayer,
}

/// The request's task: `x-switchboard-task`, else `metadata.task`.
fn task_of(req: &ChatHttpRequest) -> Option<String> {
    req.headers()
        .get(crate::headers::TASK)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            req.body()
                .metadata
                .as_ref()
                .and_then(|_| req.body().metadata_str("task"))
        })
}

/// The copy of `req` for `candidate`, linked to the primary `of`.
fn copy_of(req: &ChatHttpRequest, candidate: &str, of: &GenerationId) -> ChatHttpRequest {
    let mut chat = crate::openai::ChatRequest::clone(req.body());
    chat.model = candidate.to_owned();
    chat.models = None;
    let mut copy = http::Request::new(Arc::new(chat));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    let headers = copy.headers_mut();
    for (name, value) in req.headers() {
        if name != http::header::AUTHORIZATION && name.as_str() != "x-api-key" {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    let ext = copy.extensions_mut();
    ext.insert(GenerationId::new());
    ext.insert(crate::ext::ShadowOf(of.0.clone()));
    if let Some(i) = req.extensions().get::<Ingress>() {
        ext.insert(*i);
    }
    if let Some(n) = req.extensions().get::<NativeRequest>() {
        ext.insert(n.clone());
    }
    if let Some(id) = req.extensions().get::<crate::ext::RequestId>() {
        ext.insert(id.clone());
    }
    copy
}

/// Waits for the copy's answer and reads it to the end; `false` when it failed.
async fn drain(fut: impl std::future::Future<Output = Result<ChatHttpResponse, Error>>) -> bool {
    match fut.await {
        Err(_) => false,
        Ok(resp) => match resp.into_body() {
            ChatResponse::Complete(_) => true,
            ChatResponse::Stream(mut s) => {
                let mut ok = true;
                while let Some(item) = s.next().await {
                    ok &= item.is_ok();
                }
                ok
            }
        },
    }
}

impl<S> Service<ChatHttpRequest> for Shadow<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = ShadowFuture<S::Future, S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ChatHttpRequest) -> Self::Future {
        let plain = |f| ShadowFuture {
            primary: f,
            copies: None,
        };
        if self.layer.rules.is_empty() || req.extensions().get::<crate::ext::ShadowOf>().is_some() {
            return plain(self.inner.call(req));
        }
        let runtime = tokio::runtime::Handle::try_current().ok();
        let mut task: Option<Option<String>> = None;
        let mut copies = Vec::new();
        for (i, r) in self.layer.rules.iter().enumerate() {
            let matches = match &r.rule.source {
                Source::Model(m) => req.body().model == **m,
                Source::Task(t) => task
                    .get_or_insert_with(|| task_of(&req))
                    .as_deref()
                    .is_some_and(|have| have == &**t),
            };
            if !matches || r.rule.sample <= 0.0 || runtime.is_none() {
                continue;
            }
            if r.rule.sample < 1.0 && self.layer.rng.unit() >= r.rule.sample {
                continue;
            }
            match r.permits.clone().try_acquire_owned() {
                Ok(permit) => copies.push((i, permit)),
                Err(_) => {
                    r.counters.skipped.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("switchboard_shadow_copies_total", "outcome" => "skipped", "candidate" => r.rule.candidate.to_string()).increment(1);
                }
            }
        }
        if copies.is_empty() {
            return plain(self.inner.call(req));
        }
        let of = match req.extensions().get::<GenerationId>() {
            Some(g) => g.clone(),
            None => {
                let g = GenerationId::new();
                req.extensions_mut().insert(g.clone());
                g
            }
        };
        let made: Vec<_> = copies
            .into_iter()
            .map(|(i, permit)| {
                (
                    i,
                    permit,
                    copy_of(&req, &self.layer.rules[i].rule.candidate, &of),
                )
            })
            .collect();
        let Some(runtime) = runtime else {
            return plain(self.inner.call(req));
        };
        // The primary first; the copies start once it has answered, and it never waits.
        ShadowFuture {
            primary: self.inner.call(req),
            copies: Some(Pending {
                made,
                layer: self.layer.clone(),
                inner: self.inner.clone(),
                runtime,
            }),
        }
    }
}

/// The copies of a sampled request, waiting for the primary's answer.
pub(crate) struct Pending<S> {
    made: Vec<(usize, tokio::sync::OwnedSemaphorePermit, ChatHttpRequest)>,
    layer: ShadowLayer,
    inner: S,
    runtime: tokio::runtime::Handle,
}

impl<S> Pending<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    /// Spawns every copy (each drained to the end, its permit released after).
    fn spawn(self) {
        for (i, permit, copy) in self.made {
            let layer = self.layer.clone();
            let svc = self.inner.clone();
            let r = &layer.rules[i];
            r.counters.sent.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("switchboard_shadow_copies_total", "outcome" => "sent", "candidate" => r.rule.candidate.to_string()).increment(1);
            self.runtime.spawn(async move {
                let ok = drain(svc.oneshot(copy)).await;
                drop(permit);
                if !ok {
                    let r = &layer.rules[i];
                    r.counters.failed.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("switchboard_shadow_copies_total", "outcome" => "failed", "candidate" => r.rule.candidate.to_string()).increment(1);
                }
            });
        }
    }
}

impl<S> fmt::Debug for Pending<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("copies", &self.made.len())
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// [`Shadow`]'s future: the primary's, spawning the copies once it answers.
    #[derive(Debug)]
    pub struct ShadowFuture<F, S> {
        #[pin]
        primary: F,
        copies: Option<Pending<S>>,
    }
}

impl<F, S> std::future::Future for ShadowFuture<F, S>
where
    F: std::future::Future<Output = Result<ChatHttpResponse, Error>>,
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Output = Result<ChatHttpResponse, Error>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.primary.poll(cx));
        if let Some(copies) = this.copies.take() {
            if out.is_ok() {
                copies.spawn();
            } else {
                // Not copied (counted as skipped): the permits go back with `copies`.
                for (i, ..) in &copies.made {
                    let r = &copies.layer.rules[*i];
                    r.counters.skipped.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("switchboard_shadow_copies_total", "outcome" => "skipped", "candidate" => r.rule.candidate.to_string()).increment(1);
                }
            }
        }
        Poll::Ready(out)
    }
}

/// A splitmix64 sequence on an atomic counter: cheap, lock-free draws for sampling.
struct Rng(AtomicU64);

impl Rng {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        Self(AtomicU64::new(h.finish()))
    }

    /// A draw in [0, 1).
    fn unit(&self) -> f64 {
        let mut z = self
            .0
            .fetch_add(Self::GAMMA, Ordering::Relaxed)
            .wrapping_add(Self::GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_draws() {
        assert_eq!(Source::parse("task:code"), Source::Task("code".into()));
        assert_eq!(Source::parse("fast"), Source::Model("fast".into()));
        assert_eq!(Source::parse("task:code").to_string(), "task:code");
        let rng = Rng::from_entropy();
        let n = 10_000;
        let hits = (0..n).filter(|_| rng.unit() < 0.1).count();
        assert!((700..1300).contains(&hits), "{hits}");
        assert_eq!(ShadowRule::new("a", "b").sample(f64::NAN).sample, 0.0);
        assert_eq!(ShadowRule::new("a", "b").sample(7.0).sample, 1.0);
        assert_eq!(
            ShadowRule::new("a", "b")
                .max_concurrency(1 << 40)
                .max_concurrency,
            MAX_CONCURRENCY
        );
    }
}
