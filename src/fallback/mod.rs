//! Fallback: walks the [`Route`], writing a [`Target`] for each candidate and calling the inner
//! service, until one answers.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use switchboard::catalog::{Provider, ProviderKind};
//! use switchboard::ext::{Candidate, Route, ServedBy, Target};
//! use switchboard::fallback::FallbackLayer;
//! use switchboard::openai::{ChatCompletion, ChatRequest};
//! use switchboard::{ChatHttpRequest, ChatResponse, Error, ErrorKind};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! // A fake inner service: provider `a` is rate limited, `b` answers.
//! let inner = service_fn(|req: ChatHttpRequest| async move {
//!     let t = req.extensions().get::<Target>().unwrap();
//!     if &*t.candidate.provider.name == "a" {
//!         return Err(Error::new(ErrorKind::RateLimited, "slow down"));
//!     }
//!     let body: ChatCompletion = serde_json::from_str(
//!         r#"{"id":"x","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#,
//!     ).unwrap();
//!     Ok(http::Response::new(ChatResponse::from(body)))
//! });
//! let cand = |p: &str| {
//!     let provider = Arc::new(Provider::new(p, ProviderKind::Openai, "http://127.0.0.1:1/v1"));
//!     Candidate::passthrough(format!("{p}/m").into(), provider, "m".into())
//! };
//! let mut req = http::Request::new(Arc::new(
//!     ChatRequest::from_slice(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap(),
//! ));
//! req.extensions_mut().insert(Route {
//!     requested: "m".into(),
//!     candidates: vec![cand("a"), cand("b")].into(),
//! });
//! let resp = FallbackLayer::new().layer(inner).oneshot(req).await.unwrap();
//! let served = resp.extensions().get::<ServedBy>().unwrap();
//! assert_eq!(&*served.provider, "b");
//! assert_eq!(served.attempts[0].error, Some(ErrorKind::RateLimited));
//! # }
//! ```
//!
//! Requires: [`Route`] (from [`ModelResolve`](crate::resolve::ModelResolve)), which Fallback
//! takes out of the request (the services below it see each attempt's [`Target`] instead); a
//! request with no `Route` but a `Target` is passed through as one attempt. Provides:
//! [`Target`] (request), [`ServedBy`] (response).
//!
//! # The commit point
//! The future resolves only at the commit point: for a non-streaming request when a candidate
//! answered successfully; for a stream when the first real output (text, reasoning, a tool
//! call or a finish reason) arrived. Role-only preamble chunks are held until then. Before the
//! commit point every retryable failure ([`Error::is_retryable`]) moves on to the next
//! candidate; a stream that fails before its first output counts as such a failure. After it
//! nothing is retried: the stream carries the error to the client.
//!
//! # Health, retries and the request budget
//! With a [`Health`] attached, targets that are cooling down are skipped (one half-open probe
//! at a time), and each outcome is recorded: success with the time to the commit point,
//! retryable failures counted, client errors and hang-ups never. Optional retries of one
//! target (`retries`) back off exponentially with full jitter, honouring `Retry-After`; a
//! `Retry-After` longer than the time left moves on to the next candidate instead of sleeping.
//! The request has one budget (the `x-switchboard-timeout-ms` header, capped by
//! `max_budget`, else `default_budget`); it spans every attempt and each attempt's deadlines
//! on its [`Target`] are clipped to what is left. With nothing left the answer is 504.
//!
//! # Larger context windows
//! A client error is not retried, with one exception: when a candidate answers
//! `context_length_exceeded` and a later candidate of the route has a larger context window
//! (from the catalog), Fallback moves on to the candidates with larger windows.
//!
//! # Errors
//! A non-retryable error is returned at once. When every candidate failed: a 429 with the
//! smallest `Retry-After` if every attempt was rate limited, else the last attempt's error.

pub mod future;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use tokio::time::Instant;

use crate::catalog::Deadlines;
use crate::chat::{ChatHttpRequest, ChatHttpResponse, ChatResponse, ChunkStream};
use crate::ext::{Attempt, Candidate, Route, ServedBy, Target};
use crate::health::Health;
use crate::openai::ChatCompletionChunk;
use crate::{Error, ErrorKind};

/// Request header carrying the client's time budget in milliseconds.
pub use crate::headers::TIMEOUT_MS as TIMEOUT_HEADER;

/// Layer for [`Fallback`].
#[derive(Debug, Clone, Default)]
pub struct FallbackLayer {
    config: Arc<Config>,
}

#[derive(Debug, Clone)]
struct Config {
    health: Option<Health>,
    retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    default_budget: Option<Duration>,
    max_budget: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            health: None,
            retries: 0,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            default_budget: None,
            max_budget: None,
        }
    }
}

impl FallbackLayer {
    /// A fallback layer: no health tracking, no retries of one target, no request budget.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records outcomes in, and skips cooling-down targets of, `health`.
    #[must_use]
    pub fn health(mut self, health: Health) -> Self {
        Arc::make_mut(&mut self.config).health = Some(health);
        self
    }

    /// Retries of the same target before moving on (default 0).
    #[must_use]
    pub fn retries(mut self, n: u32) -> Self {
        Arc::make_mut(&mut self.config).retries = n;
        self
    }

    /// Base and cap of the exponential backoff between retries of one target.
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        let c = Arc::make_mut(&mut self.config);
        c.backoff_base = base;
        c.backoff_max = max;
        self
    }

    /// The request budget when the client sends no `x-switchboard-timeout-ms`.
    #[must_use]
    pub fn default_budget(mut self, d: Duration) -> Self {
        Arc::make_mut(&mut self.config).default_budget = Some(d);
        self
    }

    /// The largest budget a client may ask for with `x-switchboard-timeout-ms`.
    #[must_use]
    pub fn max_budget(mut self, d: Duration) -> Self {
        Arc::make_mut(&mut self.config).max_budget = Some(d);
        self
    }
}

impl<S> Layer<S> for FallbackLayer {
    type Service = Fallback<S>;
    fn layer(&self, inner: S) -> Fallback<S> {
        Fallback {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The fallback service; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Fallback<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Fallback<S> {
    /// Wraps `inner` with default settings.
    pub fn new(inner: S) -> Self {
        FallbackLayer::new().layer(inner)
    }
    crate::macros::inner_service_accessors!(inner: S);
}

impl<S> Service<ChatHttpRequest> for Fallback<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = future::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Readiness is driven per attempt, so one slow candidate cannot stall the others.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatHttpRequest) -> future::ResponseFuture {
        let inner = self.inner.clone();
        future::ResponseFuture::new(Box::pin(run(inner, self.config.clone(), req)))
    }
}

/// The request's time budget, and whether the client chose it (`x-switchboard-timeout-ms`).
fn budget(config: &Config, headers: &http::HeaderMap) -> (Option<Duration>, bool) {
    let asked = headers
        .get(&TIMEOUT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    match (asked, config.max_budget) {
        (Some(a), Some(max)) => (Some(a.min(max)), true),
        (Some(a), None) => (Some(a), true),
        (None, _) => (config.default_budget, false),
    }
}

fn clip(d: Deadlines, left: Option<Duration>) -> Deadlines {
    let Some(left) = left else { return d };
    let min = |x: Option<Duration>| Some(x.map_or(left, |x| x.min(left)));
    Deadlines {
        total: min(d.total),
        first_token: d.first_token.map(|x| x.min(left)),
        idle: d.idle,
    }
}

/// Full-jitter exponential backoff for retry `n` (1-based), at least `retry_after`.
fn backoff(config: &Config, n: u32, retry_after: Option<Duration>) -> Duration {
    let exp = config
        .backoff_base
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(config.backoff_max);
    let jittered = exp.mul_f64(jitter());
    retry_after.map_or(jittered, |r| r.max(jittered))
}

/// A number in [0, 1) from a per-thread xorshift state (not cryptographic).
fn jitter() -> f64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = Cell::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64) | 1
    ));
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

async fn run<S>(
    inner: S,
    config: Arc<Config>,
    req: ChatHttpRequest,
) -> Result<ChatHttpResponse, Error>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error> + Clone + Send,
    S::Future: Send,
{
    let (mut parts, body) = req.into_parts();
    // The route is Fallback's to walk: taken out, so no attempt copies it.
    let Some(route) = parts.extensions.remove::<Route>() else {
        if parts.extensions.get::<Target>().is_some() {
            return inner.oneshot(http::Request::from_parts(parts, body)).await;
        }
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            "no route for this request (ModelResolve must run before Fallback)",
        ));
    };
    let (budget, client_budget) = budget(&config, &parts.headers);
    let deadline = budget.and_then(|b| Instant::now().checked_add(b));
    let mut attempts: Vec<Attempt> = Vec::with_capacity(route.candidates.len());
    let mut errors: Vec<Error> = Vec::new();
    let mut n: u32 = 0;
    let total = route.candidates.len();
    // After a context-length error, only candidates with a larger window are worth trying.
    let mut need_context_over: Option<u32> = None;
    'candidates: for (i, candidate) in route.candidates.iter().enumerate() {
        let last_candidate = i + 1 == total;
        if let Some(min) = need_context_over {
            if candidate.context_length.is_none_or(|l| l <= min) {
                continue;
            }
        }
        for retry in 0..=config.retries {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                errors.push(Error::new(
                    ErrorKind::Timeout,
                    "the request's time budget ran out before a provider answered",
                ));
                break 'candidates;
            }
            let permit = match &config.health {
                Some(h) => match h.acquire(candidate) {
                    Some(p) => Some(p),
                    None => {
                        errors.push(Error::new(
                            ErrorKind::Overloaded,
                            "every candidate is cooling down after repeated failures",
                        ));
                        attempts.push(Attempt {
                            provider: candidate.provider.name.clone(),
                            model: candidate.model.clone(),
                            error: Some(ErrorKind::Overloaded),
                        });
                        continue 'candidates;
                    }
                },
                None => None,
            };
            n += 1;
            let mut attempt_req = http::Request::new(body.clone());
            *attempt_req.method_mut() = parts.method.clone();
            *attempt_req.uri_mut() = parts.uri.clone();
            *attempt_req.version_mut() = parts.version;
            if last_candidate && retry == config.retries {
                // No attempt can follow this one: move instead of copying.
                *attempt_req.headers_mut() = std::mem::take(&mut parts.headers);
                *attempt_req.extensions_mut() = std::mem::take(&mut parts.extensions);
            } else {
                *attempt_req.headers_mut() = parts.headers.clone();
                *attempt_req.extensions_mut() = parts.extensions.clone();
            }
            let deadlines = clip(candidate.deadlines, left);
            // A timeout under a budget the client chose and that cut the target's own
            // deadlines says nothing about the target: Health does not hear of it.
            let clients_deadline = client_budget && deadlines != candidate.deadlines;
            attempt_req.extensions_mut().insert(Target {
                deadlines,
                candidate: candidate.clone(),
                attempt: n,
            });
            // Only health wants the attempt's latency.
            let attempt_started = permit.as_ref().map(|_| Instant::now());
            let svc = inner.clone();
            let call = async move {
                let resp = svc.oneshot(attempt_req).await?;
                commit(resp).await
            };
            let attempt_span = tracing::debug_span!(
                "gen_ai.attempt",
                "gen_ai.provider.name" = ?candidate.provider.name,
                "gen_ai.request.model" = ?candidate.upstream_model,
                attempt = n,
            );
            let call = tracing::Instrument::instrument(call, attempt_span);
            let result = match left {
                // A safety net for stacks without ModelTimeout: the budget bounds the wait.
                Some(left) => tokio::time::timeout(left, call).await.unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::Timeout,
                        "the request's time budget ran out before a provider answered",
                    ))
                }),
                None => call.await,
            };
            match result {
                Ok(mut resp) => {
                    if let (Some(p), Some(t)) = (permit, attempt_started) {
                        p.success(t.elapsed());
                    }
                    attempts.push(Attempt {
                        provider: candidate.provider.name.clone(),
                        model: candidate.model.clone(),
                        error: None,
                    });
                    resp.extensions_mut().insert(ServedBy {
                        provider: candidate.provider.name.clone(),
                        model: candidate.model.clone(),
                        attempts,
                    });
                    return Ok(resp);
                }
                Err(e) => {
                    if let Some(p) = permit {
                        if e.kind() == ErrorKind::Timeout && clients_deadline {
                            drop(p);
                        } else {
                            p.failure(e.kind());
                        }
                    }
                    tracing::debug!(
                        provider = ?candidate.provider.name,
                        model = ?candidate.model,
                        attempt = n,
                        error = %e,
                        "attempt failed"
                    );
                    attempts.push(Attempt {
                        provider: candidate.provider.name.clone(),
                        model: candidate.model.clone(),
                        error: Some(e.kind()),
                    });
                    let retryable = e.is_retryable();
                    let retry_after = e.retry_after();
                    errors.push(e);
                    if !retryable {
                        if let Some(cur) =
                            larger_context_exists(&errors, candidate, &route.candidates[i + 1..])
                        {
                            need_context_over = Some(cur);
                            continue 'candidates;
                        }
                        break 'candidates;
                    }
                    if retry == config.retries {
                        continue 'candidates;
                    }
                    let wait = backoff(&config, retry + 1, retry_after);
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left.is_some_and(|l| wait >= l) {
                        // Sleeping would spend the budget: try the next candidate now.
                        if last_candidate {
                            break 'candidates;
                        }
                        continue 'candidates;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    Err(final_error(errors).with_attempts(attempts))
}

/// After a `context_length_exceeded` error: the failed candidate's window, if a later
/// candidate has a larger one.
fn larger_context_exists(errors: &[Error], failed: &Candidate, rest: &[Candidate]) -> Option<u32> {
    let e = errors.last()?;
    if e.code() != Some("context_length_exceeded") {
        return None;
    }
    let cur = failed.context_length?;
    rest.iter()
        .any(|c| c.context_length.is_some_and(|l| l > cur))
        .then_some(cur)
}

/// Waits for the commit point of a response: immediate for a completion, the first real
/// output for a stream (preamble chunks are held and replayed in front of it).
async fn commit(resp: ChatHttpResponse) -> Result<ChatHttpResponse, Error> {
    let (parts, body) = resp.into_parts();
    let stream = match body {
        ChatResponse::Complete(_) => return Ok(http::Response::from_parts(parts, body)),
        ChatResponse::Stream(s) => s,
    };
    let (held, rest) = first_output(stream).await?;
    let replay = futures_util::stream::iter(held.into_iter().map(Ok)).chain(rest);
    Ok(http::Response::from_parts(
        parts,
        ChatResponse::Stream(Box::pin(replay)),
    ))
}

async fn first_output(
    mut stream: ChunkStream,
) -> Result<(Vec<ChatCompletionChunk>, ChunkStream), Error> {
    let mut held = Vec::new();
    while let Some(item) = stream.next().await {
        let chunk = item?;
        let done = chunk.has_output();
        held.push(chunk);
        if done {
            break;
        }
    }
    Ok((held, stream))
}

fn final_error(mut errors: Vec<Error>) -> Error {
    if let Some(pos) = errors.iter().position(|e| !e.is_retryable()) {
        return errors.swap_remove(pos);
    }
    let all_rate_limited =
        !errors.is_empty() && errors.iter().all(|e| e.kind() == ErrorKind::RateLimited);
    if all_rate_limited {
        let min = errors.iter().filter_map(Error::retry_after).min();
        let mut e = errors.swap_remove(0);
        if let Some(m) = min {
            e = e.with_retry_after(m);
        }
        return e;
    }
    errors.pop().unwrap_or_else(|| {
        Error::new(
            ErrorKind::Overloaded,
            "no candidate could serve the request",
        )
    })
}

#[cfg(test)]
mod tests;
