//! CostMeter: normalised token usage, cost from the catalog's prices, `usage.cost`, metrics,
//! a per-request [`CostSink`] record and spend [`Budgets`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use switchboard::catalog::{Pricing, Provider, ProviderKind};
//! use switchboard::cost::CostMeterLayer;
//! use switchboard::ext::{Candidate, Cost, Route, ServedBy};
//! use switchboard::openai::{ChatCompletion, ChatRequest};
//! use switchboard::{ChatHttpRequest, ChatResponse, Error};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! // A fake inner service that "served" 1000 prompt and 500 completion tokens on `openai`.
//! let inner = service_fn(|_req: ChatHttpRequest| async {
//!     let body: ChatCompletion = serde_json::from_str(
//!         r#"{"id":"x","model":"openai/m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
//!             "usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500}}"#,
//!     ).unwrap();
//!     let mut resp = http::Response::new(ChatResponse::from(body));
//!     resp.extensions_mut().insert(ServedBy { provider: "openai".into(), model: "openai/m".into(), attempts: vec![] });
//!     Ok::<_, Error>(resp)
//! });
//! let provider = Arc::new(Provider::new("openai", ProviderKind::Openai, "http://127.0.0.1:1/v1"));
//! let mut cand = Candidate::passthrough("openai/m".into(), provider, "m".into());
//! cand.pricing = Some(Pricing { input: 2.0, output: 8.0, ..Pricing::default() }); // USD per million
//! let mut req = http::Request::new(Arc::new(
//!     ChatRequest::from_slice(br#"{"model":"openai/m","messages":[{"role":"user","content":"hi"}]}"#).unwrap(),
//! ));
//! req.extensions_mut().insert(Route { requested: "openai/m".into(), candidates: vec![cand].into() });
//! let resp = CostMeterLayer::new().layer(inner).oneshot(req).await.unwrap();
//! // 1000 × $2/M + 500 × $8/M; the edge renders it as `x-switchboard-cost: 0.006000000`
//! assert_eq!(resp.extensions().get::<Cost>().map(|c| c.0), Some(0.006));
//! let usage = resp.into_body().into_complete().unwrap().into_typed().unwrap().usage.unwrap();
//! assert_eq!(usage.cost, Some(0.006));
//! # }
//! ```
//!
//! Requires: [`Route`] (prices of every candidate, for the budget estimate), [`ServedBy`] on
//! the response (which target served, so its prices apply), [`CacheStatus`] (a hit costs 0),
//! [`CallerKey`] (whose budget). Each is optional: without a `Route` there is no estimate,
//! without `ServedBy` no price (cost `null`), without `CallerKey` no budget. Provides:
//! `usage.cost` and `usage.cost_details` (USD) on completions and on the usage chunk of
//! streams, and the [`Cost`] extension on completions (the edge renders it as
//! `x-switchboard-cost`).
//!
//! # Cost model
//! Usage is in OpenAI semantics whatever the provider (cached and cache-write tokens are part
//! of `prompt_tokens`, reasoning tokens part of `completion_tokens`):
//! `cost = uncached_input × input + cached × cached_input + cache_write × cache_write +
//! completion × output + per_request`, with prices per million tokens from the catalog
//! (`cached_input` and `cache_write` default to `input`). Money is counted in integer
//! picodollars. A target without prices gets `cost: null` and one warning per target, never a
//! guessed number.
//!
//! # Streams
//! A [`MeteredStream`] watches the chunks inline: time to first token, the usage chunk (priced
//! in place), and the streamed text. If the client hangs up before the usage chunk arrives,
//! what was generated is still metered from an estimate (prompt estimate + streamed text / 4)
//! and the record says so.
//!
//! # Budgets
//! Before the call an estimate is reserved for the caller (prompt estimate + `max_tokens`, or
//! the Route's largest `max_output`, or 4096, each at the Route's highest price); exhausted →
//! 402. After it the reservation is settled with the real cost.
//!
//! # Metrics
//! Through the `metrics` facade (labels: `provider`, `model`, `cache`; errors by `kind`):
//! `switchboard_requests_total`, `switchboard_errors_total`,
//! `switchboard_tokens_total{type=input|output|cached|cache_write|reasoning}`,
//! `switchboard_cost_nanodollars_total`, `switchboard_cache_savings_nanodollars_total`,
//! `switchboard_request_duration_seconds`, `switchboard_time_to_first_token_seconds`,
//! `switchboard_budget_rejections_total`, and `switchboard_gateway_overhead_seconds` (for
//! non-streaming answers: the request's time minus the time the serving upstream took, i.e.
//! what the gateway itself added, failed attempts included).
//!
//! Metric handles are registered once per label set and reused, so install your `metrics`
//! recorder before the first request goes through the layer.

mod budget;
pub mod future;
mod price;
mod stream;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use budget::RedisBudgetStore;
pub use budget::{Budget, BudgetStore, Budgets, Exhausted, MemoryBudgetStore, Window};
pub use price::{cost_of, CostBreakdown, Picodollars, TokenPrices};
pub use stream::MeteredStream;

use crate::chat::{ChatHttpRequest, ChatHttpResponse, ChatResponse};
use crate::ext::{Attempt, CacheStatus, CallerKey, Cost, Route, ServedBy, UpstreamLatency};
use crate::openai::Usage;
use crate::{Error, ErrorKind};

/// One record per request, for apps that log or bill.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CostRecord {
    /// Who paid, if known.
    pub caller: Option<CallerKey>,
    /// The provider that served (`None` when every attempt failed).
    pub provider: Option<Arc<str>>,
    /// The public model id that served.
    pub model: Option<Arc<str>>,
    /// Every attempt.
    pub attempts: Vec<Attempt>,
    /// Token usage, if any.
    pub usage: Option<Usage>,
    /// Whether `usage` is an estimate (the client hung up before the usage chunk).
    pub usage_estimated: bool,
    /// Cost, if the serving target has prices.
    pub cost: Option<CostBreakdown>,
    /// Time from the request to the end of the answer.
    pub latency: Duration,
    /// Time to the first output chunk (streams).
    pub time_to_first_token: Option<Duration>,
    /// The response cache's verdict.
    pub cache: Option<CacheStatus>,
    /// Whether the answer was streamed.
    pub stream: bool,
    /// The error, if the request failed.
    pub error: Option<ErrorKind>,
}

/// Receives one [`CostRecord`] per request. Called on the request's task: keep it quick
/// (send to a channel for slow work).
pub trait CostSink: Send + Sync + 'static {
    /// Records one request.
    fn record(&self, record: &CostRecord);
}

impl<F: Fn(&CostRecord) + Send + Sync + 'static> CostSink for F {
    fn record(&self, record: &CostRecord) {
        self(record);
    }
}

/// Layer for [`CostMeter`].
#[derive(Clone, Default)]
pub struct CostMeterLayer {
    config: Arc<Config>,
}

#[derive(Clone, Default)]
struct Config {
    sink: Option<Arc<dyn CostSink>>,
    budgets: Option<Budgets>,
    handles: HandleCache,
}

/// Metric handles per label set, registered once: building metric keys on every request
/// costs more than recording. Bounded, since pass-through model ids come from clients.
#[derive(Clone)]
struct HandleCache {
    map: Arc<Mutex<HashMap<(Arc<str>, Arc<str>, &'static str), Arc<Handles>>>>,
    /// The provider and model of requests no provider served.
    none: Arc<str>,
}

impl Default for HandleCache {
    fn default() -> Self {
        Self {
            map: Arc::default(),
            none: Arc::from("none"),
        }
    }
}

const MAX_CACHED_LABEL_SETS: usize = 4096;

struct Handles {
    requests: metrics::Counter,
    duration: metrics::Histogram,
    ttft: metrics::Histogram,
    overhead: metrics::Histogram,
    /// input, output, cached, cache_write, reasoning
    tokens: [metrics::Counter; 5],
    cost: metrics::Counter,
    savings: metrics::Counter,
}

const TOKEN_TYPES: [&str; 5] = ["input", "output", "cached", "cache_write", "reasoning"];

impl Handles {
    fn register(labels: &[metrics::Label]) -> Self {
        let with_type = |ty: &'static str| {
            let mut l = labels.to_vec();
            l.push(metrics::Label::new("type", ty));
            metrics::counter!("switchboard_tokens_total", l)
        };
        Self {
            requests: metrics::counter!("switchboard_requests_total", labels.iter()),
            duration: metrics::histogram!("switchboard_request_duration_seconds", labels.iter()),
            ttft: metrics::histogram!("switchboard_time_to_first_token_seconds", labels.iter()),
            overhead: metrics::histogram!("switchboard_gateway_overhead_seconds", labels.iter()),
            tokens: TOKEN_TYPES.map(with_type),
            cost: metrics::counter!("switchboard_cost_nanodollars_total", labels.iter()),
            savings: metrics::counter!(
                "switchboard_cache_savings_nanodollars_total",
                labels.iter()
            ),
        }
    }
}

impl HandleCache {
    fn get(
        &self,
        served: Option<&ServedBy>,
        cache: &'static str,
        labels: impl FnOnce() -> Vec<metrics::Label>,
    ) -> Arc<Handles> {
        let key = served.map_or_else(
            || (self.none.clone(), self.none.clone(), cache),
            |s| (s.provider.clone(), s.model.clone(), cache),
        );
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(h) = map.get(&key) {
            return h.clone();
        }
        let h = Arc::new(Handles::register(&labels()));
        if map.len() < MAX_CACHED_LABEL_SETS {
            map.insert(key, h.clone());
        }
        h
    }
}

impl fmt::Debug for CostMeterLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CostMeterLayer")
            .field("sink", &self.config.sink.is_some())
            .field("budgets", &self.config.budgets)
            .finish()
    }
}

impl CostMeterLayer {
    /// A meter with metrics only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends a [`CostRecord`] per request to `sink`.
    #[must_use]
    pub fn sink(mut self, sink: impl CostSink) -> Self {
        Arc::make_mut(&mut self.config).sink = Some(Arc::new(sink));
        self
    }

    /// Enforces spend budgets per [`CallerKey`].
    #[must_use]
    pub fn budgets(mut self, budgets: Budgets) -> Self {
        Arc::make_mut(&mut self.config).budgets = Some(budgets);
        self
    }
}

impl<S> Layer<S> for CostMeterLayer {
    type Service = CostMeter<S>;
    fn layer(&self, inner: S) -> CostMeter<S> {
        CostMeter {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The metering service; see the [module docs](self).
#[derive(Clone)]
pub struct CostMeter<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for CostMeter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CostMeter")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> CostMeter<S> {
    crate::macros::inner_service_accessors!(inner: S);
}

/// A budget reservation to settle exactly once (on drop if the request was abandoned).
struct Reservation {
    budgets: Budgets,
    caller: Arc<str>,
    window: String,
    amount: Picodollars,
    settled: bool,
}

impl Reservation {
    fn settle(mut self, actual: Picodollars) {
        self.settled = true;
        spawn_settle(
            &self.budgets,
            &self.caller,
            &self.window,
            self.amount,
            actual,
        );
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            spawn_settle(
                &self.budgets,
                &self.caller,
                &self.window,
                self.amount,
                Picodollars::ZERO,
            );
        }
    }
}

fn spawn_settle(
    b: &Budgets,
    caller: &Arc<str>,
    window: &str,
    reserved: Picodollars,
    actual: Picodollars,
) {
    let store = b.store().clone();
    let caller = caller.clone();
    let window = window.to_owned();
    let fut = async move { store.settle(&caller, &window, reserved, actual).await };
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn(fut);
        }
        Err(_) => tracing::warn!("no tokio runtime: a budget reservation was not settled"),
    }
}

/// What the meter knows about the request, carried to the end of the answer.
pub(crate) struct Meter {
    config: Arc<Config>,
    started: Instant,
    route: Option<Route>,
    caller: Option<CallerKey>,
    reservation: Option<Reservation>,
    stream: bool,
    prompt_estimate: u64,
    served: Option<ServedBy>,
    cache: Option<CacheStatus>,
    prices: Option<TokenPrices>,
    span: tracing::Span,
    /// Metric handles, looked up once the serving target is known.
    handles: Option<Arc<Handles>>,
}

impl Meter {
    /// Metric labels: shared strings, no copies.
    fn labels(&self) -> Vec<metrics::Label> {
        let (p, m) = self.served.as_ref().map_or(
            (
                metrics::SharedString::const_str("none"),
                metrics::SharedString::const_str("none"),
            ),
            |s| (s.provider.clone().into(), s.model.clone().into()),
        );
        let cache = self.cache_label();
        vec![
            metrics::Label::new("provider", p),
            metrics::Label::new("model", m),
            metrics::Label::new("cache", cache),
        ]
    }

    fn cache_label(&self) -> &'static str {
        self.cache.map_or("none", |c| match c {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        })
    }

    fn handles(&mut self) -> Arc<Handles> {
        if let Some(h) = &self.handles {
            return h.clone();
        }
        let h = self
            .config
            .handles
            .get(self.served.as_ref(), self.cache_label(), || self.labels());
        self.handles = Some(h.clone());
        h
    }

    /// Prices usage (0 for a cache hit; `None` without prices).
    pub(crate) fn price(&self, usage: &Usage) -> Option<CostBreakdown> {
        if self.cache == Some(CacheStatus::Hit) {
            return Some(CostBreakdown::default());
        }
        self.prices.as_ref().map(|p| cost_of(usage, p))
    }

    /// Writes `cost` and `cost_details` into `usage`.
    pub(crate) fn annotate(&self, usage: &mut Usage) -> Option<CostBreakdown> {
        let c = self.price(usage);
        usage.cost = c.map(|c| c.total().usd());
        usage.cost_details = c.map(|c| c.to_details());
        c
    }

    /// Ends the request: metrics, sink, budget settlement. Called exactly once.
    pub(crate) fn finish(
        mut self,
        usage: Option<Usage>,
        usage_estimated: bool,
        ttft: Option<Duration>,
        error: Option<ErrorKind>,
    ) {
        let latency = self.started.elapsed();
        let cost = usage.as_ref().and_then(|u| self.price(u));
        let h = self.handles();
        h.requests.increment(1);
        h.duration.record(latency.as_secs_f64());
        if let Some(t) = ttft {
            h.ttft.record(t.as_secs_f64());
        }
        if let Some(kind) = error {
            metrics::counter!("switchboard_errors_total", "kind" => kind.as_str()).increment(1);
        }
        if let Some(u) = &usage {
            let counts = [
                u.prompt_tokens,
                u.completion_tokens,
                u.cached_tokens(),
                u.cache_write_tokens(),
                u.reasoning_tokens(),
            ];
            for (counter, n) in h.tokens.iter().zip(counts) {
                if n > 0 {
                    counter.increment(n);
                }
            }
            if self.cache == Some(CacheStatus::Hit) {
                if let Some(p) = &self.prices {
                    h.savings.increment(cost_of(u, p).total().nanodollars());
                }
            }
        }
        if let Some(c) = cost {
            h.cost.increment(c.total().nanodollars());
        }
        if let Some(r) = self.reservation.take() {
            r.settle(cost.map_or(Picodollars::ZERO, |c| c.total()));
        }
        let span = &self.span;
        if let Some(s) = &self.served {
            span.record("gen_ai.provider.name", &*s.provider);
            span.record("gen_ai.response.model", &*s.model);
        }
        if let Some(u) = &usage {
            span.record("gen_ai.usage.input_tokens", u.prompt_tokens);
            span.record("gen_ai.usage.output_tokens", u.completion_tokens);
        }
        if let Some(c) = cost {
            span.record("cost_usd", c.total().usd());
        }
        if let Some(cs) = self.cache {
            span.record("cache", cs.as_str());
        }
        span.in_scope(|| {
            tracing::info!(
                latency_ms = latency.as_millis() as u64,
                ttft_ms = ttft.map(|t| t.as_millis() as u64),
                usage_estimated,
                error = error.map(ErrorKind::as_str),
                "request finished"
            );
        });
        if let Some(sink) = &self.config.sink {
            sink.record(&CostRecord {
                caller: self.caller.clone(),
                provider: self.served.as_ref().map(|s| s.provider.clone()),
                model: self.served.as_ref().map(|s| s.model.clone()),
                // Kept for the sink only (see `call`); this is its last use.
                attempts: self
                    .served
                    .as_mut()
                    .map(|s| std::mem::take(&mut s.attempts))
                    .unwrap_or_default(),
                usage,
                usage_estimated,
                cost,
                latency,
                time_to_first_token: ttft,
                cache: self.cache,
                stream: self.stream,
                error,
            });
        }
    }

    /// Usage estimated from the prompt and the streamed text, when the real one never came.
    pub(crate) fn estimate(&self, streamed_bytes: usize) -> Usage {
        let completion = (streamed_bytes as u64).div_ceil(4);
        Usage {
            prompt_tokens: self.prompt_estimate,
            completion_tokens: completion,
            total_tokens: self.prompt_estimate + completion,
            ..Usage::default()
        }
    }
}

/// Targets already warned about for missing prices.
static UNPRICED_WARNED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn warn_unpriced(provider: &str, model: &str) {
    let mut w = UNPRICED_WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !w.iter().any(|(p, m)| p == provider && m == model) {
        tracing::warn!(
            provider,
            model,
            "no prices for this target: usage.cost is null"
        );
        w.push((provider.to_owned(), model.to_owned()));
    }
}

fn prices_for(route: Option<&Route>, served: Option<&ServedBy>) -> Option<TokenPrices> {
    let served = served?;
    let route = route?;
    let c = route
        .candidates
        .iter()
        .find(|c| c.provider.name == served.provider && c.model == served.model)?;
    match c.pricing {
        Some(p) => Some(TokenPrices::from(p)),
        None => {
            warn_unpriced(&served.provider, &served.model);
            None
        }
    }
}

/// The reservation estimate: prompt estimate + output cap at the Route's highest prices.
fn estimate(route: &Route, prompt: u64, max_out: Option<u32>) -> Picodollars {
    let mut input = 0u64;
    let mut output = 0u64;
    let mut request = 0u64;
    let mut route_max_out = 0u32;
    for c in route.candidates.iter() {
        if let Some(p) = c.pricing {
            let t = TokenPrices::from(p);
            input = input.max(t.input);
            output = output.max(t.output);
            request = request.max(t.request);
        }
        route_max_out = route_max_out.max(c.max_output.unwrap_or(0));
    }
    let out = u64::from(max_out.unwrap_or(if route_max_out > 0 {
        route_max_out
    } else {
        4096
    }));
    Picodollars(
        prompt
            .saturating_mul(input)
            .saturating_add(out.saturating_mul(output))
            .saturating_add(request),
    )
}

impl<S> Service<ChatHttpRequest> for CostMeter<S>
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

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ChatHttpRequest) -> future::ResponseFuture {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        future::ResponseFuture::new(Box::pin(async move {
            let started = Instant::now();
            let route = req.extensions().get::<Route>().cloned();
            let caller = req.extensions().get::<CallerKey>().cloned();
            let chat = req.body().clone();
            let prompt_estimate = chat.summary.estimated_tokens();
            let mut reservation = None;
            if let (Some(budgets), Some(caller)) = (&config.budgets, &caller) {
                if let Some(budget) = budgets.for_caller(&caller.0) {
                    let amount = route.as_ref().map_or(Picodollars::ZERO, |r| {
                        estimate(r, prompt_estimate, chat.max_output_tokens())
                    });
                    let window = budget.window.current_id();
                    if let Err(e) = budgets
                        .store()
                        .reserve(&caller.0, &window, budget.limit, amount)
                        .await
                    {
                        metrics::counter!("switchboard_budget_rejections_total").increment(1);
                        metrics::counter!("switchboard_errors_total", "kind" => ErrorKind::BudgetExhausted.as_str()).increment(1);
                        return Err(Error::new(
                            ErrorKind::BudgetExhausted,
                            format!(
                                "spend budget exhausted: ${:.6} of ${:.6} used in this period (this request needs up to ${:.6})",
                                e.committed.usd(),
                                e.limit.usd(),
                                amount.usd()
                            ),
                        ));
                    }
                    reservation = Some(Reservation {
                        budgets: budgets.clone(),
                        caller: caller.0.clone(),
                        window,
                        amount,
                        settled: false,
                    });
                }
            }
            let mut meter = Meter {
                config,
                started,
                route,
                caller,
                reservation,
                stream: chat.is_stream(),
                prompt_estimate,
                served: None,
                cache: None,
                prices: None,
                span: tracing::Span::current(),
                handles: None,
            };
            drop(chat);
            let result = tower::ServiceExt::ready(&mut inner).await;
            let result = match result {
                Ok(svc) => svc.call(req).await,
                Err(e) => Err(e),
            };
            let resp = match result {
                Ok(r) => r,
                Err(e) => {
                    meter.served = None;
                    meter.finish(None, false, None, Some(e.kind()));
                    return Err(e);
                }
            };
            let (mut parts, body) = resp.into_parts();
            meter.served = parts.extensions.get::<ServedBy>().map(|s| ServedBy {
                provider: s.provider.clone(),
                model: s.model.clone(),
                // Only the sink's record lists the attempts.
                attempts: match meter.config.sink {
                    Some(_) => s.attempts.clone(),
                    None => Vec::new(),
                },
            });
            meter.cache = parts.extensions.get::<CacheStatus>().copied();
            meter.prices = prices_for(meter.route.as_ref(), meter.served.as_ref());
            let body = match body {
                ChatResponse::Stream(s) => {
                    ChatResponse::Stream(Box::pin(MeteredStream::new(s, meter)))
                }
                ChatResponse::Complete(mut whole) => {
                    if let Some(up) = parts.extensions.get::<UpstreamLatency>() {
                        let overhead = meter.started.elapsed().saturating_sub(up.0);
                        meter.handles().overhead.record(overhead.as_secs_f64());
                    }
                    let cost = whole.usage_mut().as_mut().and_then(|u| meter.annotate(u));
                    if let Some(cost) = cost {
                        parts.extensions.insert(Cost(cost.total().usd()));
                    }
                    let ttft = meter.started.elapsed();
                    let usage = whole.usage().cloned();
                    meter.finish(usage, false, Some(ttft), None);
                    ChatResponse::Complete(whole)
                }
            };
            Ok(http::Response::from_parts(parts, body))
        }))
    }
}
