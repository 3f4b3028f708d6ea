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
//! // 1000 × $2/M + 500 × $8/M (the edge sends it as `x-switchboard-cost`)
//! assert_eq!(resp.extensions().get::<Cost>(), Some(&Cost(0.006)));
//! let usage = resp.into_body().into_complete().unwrap().into_typed().unwrap().usage.unwrap();
//! assert_eq!(usage.cost, Some(0.006));
//! # }
//! ```
//!
//! Requires: [`Route`] (prices of every candidate, for the budget estimate), [`ServedBy`] on
//! the response (which target served, so its prices apply), [`CacheStatus`] (a hit costs 0),
//! [`CallerKey`] (whose budget). Each is optional: without a `Route` there is no estimate
//! (and a caller with a budget is refused under [`UnpricedPolicy::Deny`]), without
//! `ServedBy` no price (cost `null`), without `CallerKey` no budget. Provides: `usage.cost`
//! and `usage.cost_details` (USD) on completions and on the usage chunk of streams, the
//! [`Cost`] extension on completions (the edge renders it as `x-switchboard-cost`), and a
//! [`BillingTab`] request extension for the layers below.
//!
//! # Cost model
//! Usage is in OpenAI semantics whatever the provider (cached and cache-write tokens are part
//! of `prompt_tokens`, reasoning tokens part of `completion_tokens`):
//! `cost = uncached_input × input + cached × cached_input + cache_write × cache_write +
//! completion × output + per_request`, with prices per million tokens from the catalog
//! (`cached_input` and `cache_write` default to `input`). Money is counted in integer
//! picodollars. A target without prices gets `cost: null` and one warning per target (at
//! most [`MAX_UNPRICED_WARNINGS`] targets), never a guessed number, unless the operator set
//! a price for its provider ([`CostMeterLayer::default_price_for`]).
//!
//! # Unpriced targets and budgets
//! Pass-through targets (a model the catalog does not list, say `openai/<anything>`) and
//! catalog entries without prices cost nothing to meter, so a caller with a budget could use
//! them for free. [`CostMeterLayer::unpriced`] decides, for callers with a budget only:
//! - [`UnpricedPolicy::Deny`] (the default): unpriced candidates are removed from the
//!   [`Route`] before the inner service is called; when none remains the request is refused
//!   with [`ErrorKind::Forbidden`] (403: "model … has no price and this key has a budget").
//!   403, not 402: a bigger budget would not help, the model is out of reach of budgeted
//!   keys.
//! - [`UnpricedPolicy::DefaultPrice`]: unpriced targets are reserved for and billed at that
//!   price.
//!
//! A target whose provider has a price from [`CostMeterLayer::default_price_for`] is priced
//! (for every caller, and its `usage.cost` is computed from that price). Callers without a
//! budget are not affected by the policy.
//!
//! # Budgets
//! Before the call the worst case the request allows is reserved for the caller: input
//! (the prompt estimate, plus tool and response-format schemas at 4 bytes a token, plus
//! [`IMAGE_TOKENS`] per image) and output (`n` × (`max_completion_tokens` or `max_tokens`,
//! else the candidate's `max_output`, else [`DEFAULT_MAX_OUTPUT`], plus `reasoning.max_tokens`)),
//! priced at the most expensive candidate of the Route (input at the highest of its input,
//! cache-write and cached prices); exhausted → 402. After the call the reservation is settled
//! with the real cost.
//!
//! # Every request that reached an upstream is billed
//! - A whole answer without `usage` is billed an estimate (prompt estimate + output text / 4).
//! - A stream whose client hangs up before the usage chunk is billed from the prompt estimate
//!   and the text streamed, never $0.
//! - A request whose client goes away after it was handed to the inner service and before an
//!   answer came back is billed the reservation: the worst case, since the upstream may run
//!   the whole generation.
//! - In each of these cases the meter waits on the request's [`BillingTab`]: a layer below
//!   that keeps the upstream call going after the client left (the response cache, for the
//!   identical requests following it) reports what the upstream really used there, and the
//!   caller is billed that instead, when the call ends.
//! - A served target the Route does not price is settled at the Route's highest prices.
//!
//! The [`CostRecord`] says `usage_estimated` whenever the usage is an estimate.
//!
//! # Streams
//! A [`MeteredStream`] watches the chunks inline: time to first token, the usage chunk (priced
//! in place), and the streamed text.
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
//! Model ids of targets the catalog does not price come from clients: the first
//! [`MAX_PASSTHROUGH_MODEL_LABELS`] distinct ones get their own `model` label, later ones are
//! counted under `<provider>/other`, so the label sets stay bounded.
//!
//! Metric handles are registered once per label set and reused, so install your `metrics`
//! recorder before the first request goes through the layer.

pub mod access_log;
mod budget;
mod details;
mod estimate;
pub mod future;
mod handles;
use estimate::*;
use handles::*;
mod price;
mod refused;
mod stream;
mod tab;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

pub use access_log::{AccessLog, AccessLogFormat};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use budget::RedisBudgetStore;
pub use budget::{Budget, BudgetStore, Budgets, Exhausted, MemoryBudgetStore, Window};
pub use price::{cost_of, CostBreakdown, Picodollars, TokenPrices};
pub use stream::MeteredStream;
pub use tab::BillingTab;

use crate::catalog::Pricing;
use crate::chat::{ChatHttpRequest, ChatHttpResponse, ChatResponse};
use crate::ext::{
    Attempt, CacheStatus, CallerKey, Candidate, Cost, GenerationId, Route, ServedBy,
    UpstreamLatency,
};
use crate::openai::{ChatRequest, Usage};
use crate::{Error, ErrorKind};

/// Input tokens the reservation allows per image in the prompt (about what a 1.15-megapixel
/// image costs at Anthropic; OpenAI's high-detail 1024×1024 tile set costs less).
pub const IMAGE_TOKENS: u64 = 1_600;

/// The output cap per choice the reservation assumes when neither the request nor the
/// candidate sets one.
pub const DEFAULT_MAX_OUTPUT: u32 = 4_096;

/// Distinct model ids of targets without catalog prices (pass-through ids come from clients)
/// that get their own metric label; later ones share `<provider>/other`.
pub const MAX_PASSTHROUGH_MODEL_LABELS: usize = 1_000;

/// Distinct unpriced targets warned about once each; past that, one last warning says so.
pub const MAX_UNPRICED_WARNINGS: usize = 1_000;

/// Metric label sets kept; past that, every new model id is counted under `<provider>/other`.
const MAX_CACHED_LABEL_SETS: usize = 16_384;

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
    /// The request's generation id ([`GenerationId`], from the edge; the answer's `id`).
    pub generation_id: Option<Arc<str>>,
    /// When the request reached the meter.
    pub created_at: std::time::SystemTime,
    /// What the client asked for: a model id, an alias, a split or `auto`.
    pub requested: Option<Arc<str>>,
    /// The request's task (`x-switchboard-task`, else `metadata.task`), at most 256 bytes.
    pub task: Option<String>,
    /// The request's `user`, at most 256 bytes.
    pub user: Option<String>,
    /// The wire format it came in by ([`Ingress`](crate::ext::Ingress): `chat`, `messages`…).
    pub ingress: Option<&'static str>,
    /// The first choice's finish reason (`stop`, `length`, `tool_calls`…).
    pub finish_reason: Option<String>,
    /// Time the serving upstream took (whole answers: until its body was read; streams: from
    /// the first output to the end).
    pub generation_time: Option<Duration>,
    /// The client went away before the end of the answer.
    pub cancelled: bool,
    /// The request's messages as JSON, for a sink whose [`CostSink::wants_bodies`] (at most
    /// 1 MiB).
    pub prompt: Option<String>,
    /// The answer's text (streams: the content deltas; whole answers: the first choice's
    /// content), for a sink whose [`CostSink::wants_bodies`] (at most 1 MiB).
    pub answer: Option<String>,
    /// A shadow copy's primary generation id ([`ShadowOf`](crate::ext::ShadowOf)).
    pub shadow_of: Option<Arc<str>>,
}

impl Default for CostRecord {
    /// An empty record made now (for sinks' tests and replays: set the fields after).
    fn default() -> Self {
        Self {
            caller: None,
            provider: None,
            model: None,
            attempts: Vec::new(),
            usage: None,
            usage_estimated: false,
            cost: None,
            latency: Duration::ZERO,
            time_to_first_token: None,
            cache: None,
            stream: false,
            error: None,
            generation_id: None,
            created_at: std::time::SystemTime::now(),
            requested: None,
            task: None,
            user: None,
            ingress: None,
            finish_reason: None,
            generation_time: None,
            cancelled: false,
            prompt: None,
            answer: None,
            shadow_of: None,
        }
    }
}

/// Receives one [`CostRecord`] per request. Called on the request's task: keep it quick
/// (send to a channel for slow work).
pub trait CostSink: Send + Sync + 'static {
    /// Records one request.
    fn record(&self, record: &CostRecord);

    /// Records one request, taking the record (a sink that keeps it avoids a copy); calls
    /// [`record`](Self::record) by default.
    fn record_owned(&self, record: CostRecord) {
        self.record(&record);
    }

    /// Whether the records should carry the prompt and the answer (default `false`).
    fn wants_bodies(&self) -> bool {
        false
    }
}

impl<F: Fn(&CostRecord) + Send + Sync + 'static> CostSink for F {
    fn record(&self, record: &CostRecord) {
        self(record);
    }
}

/// What the CostMeter does with a target that has no price (a pass-through model, a catalog
/// entry without prices, a request without a [`Route`]) when the caller has a budget. Callers
/// without a budget are not affected. See the [module docs](self#unpriced-targets-and-budgets).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum UnpricedPolicy {
    /// Unpriced candidates are removed from the route; with none left the request is refused
    /// with [`ErrorKind::Forbidden`] (403).
    #[default]
    Deny,
    /// Unpriced targets are reserved for and billed at this price.
    DefaultPrice(Pricing),
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
    unpriced: UnpricedPolicy,
    /// Prices of unpriced targets, per provider name.
    default_prices: HashMap<Arc<str>, Pricing>,
    handles: HandleCache,
    access_log: Option<AccessLog>,
}

impl Config {
    /// The target's price: the catalog's, else the one set for its provider.
    fn price_of(&self, c: &Candidate) -> Option<Pricing> {
        c.pricing
            .or_else(|| self.default_prices.get(&c.provider.name).copied())
    }

    /// The price a caller is billed at: [`Self::price_of`], else for a caller with a budget
    /// the policy's default price.
    fn billed_price(&self, c: Option<&Candidate>, budgeted: bool) -> Option<Pricing> {
        c.and_then(|c| self.price_of(c)).or(match self.unpriced {
            UnpricedPolicy::DefaultPrice(p) if budgeted => Some(p),
            _ => None,
        })
    }
}

impl fmt::Debug for CostMeterLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CostMeterLayer")
            .field("sink", &self.config.sink.is_some())
            .field("budgets", &self.config.budgets)
            .field("unpriced", &self.config.unpriced)
            .field("default_prices", &self.config.default_prices)
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

    /// Writes one access-log line per request through `log` (see [`access_log`]); the
    /// `request finished` tracing event, which carries the same fields, then moves from the
    /// INFO level to DEBUG, so the line is not logged twice.
    #[must_use]
    pub fn access_log(mut self, log: AccessLog) -> Self {
        Arc::make_mut(&mut self.config).access_log = Some(log);
        self
    }

    /// Enforces spend budgets per [`CallerKey`].
    #[must_use]
    pub fn budgets(mut self, budgets: Budgets) -> Self {
        Arc::make_mut(&mut self.config).budgets = Some(budgets);
        self
    }

    /// What callers with a budget may do with targets that have no price (default
    /// [`UnpricedPolicy::Deny`]); see the [module docs](self#unpriced-targets-and-budgets).
    #[must_use]
    pub fn unpriced(mut self, policy: UnpricedPolicy) -> Self {
        Arc::make_mut(&mut self.config).unpriced = policy;
        self
    }

    /// The price of every target of `provider` that has no price of its own (its
    /// pass-through models, say), for every caller: such targets count as priced.
    #[must_use]
    pub fn default_price_for(mut self, provider: impl Into<Arc<str>>, price: Pricing) -> Self {
        Arc::make_mut(&mut self.config)
            .default_prices
            .insert(provider.into(), price);
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

/// A budget reservation to settle exactly once. Dropped unsettled (the request never reached
/// the inner service) it is released.
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
    /// Whether the caller has a budget (the unpriced policy applies).
    budgeted: bool,
    reservation: Option<Reservation>,
    stream: bool,
    /// Input tokens the request may use (prompt, schemas, images).
    prompt_estimate: u64,
    /// The worst case: output tokens and the prices of the most expensive candidate.
    worst: Estimate,
    served: Option<ServedBy>,
    /// Whether the serving target has catalog prices (its model id is not a client's).
    listed: bool,
    cache: Option<CacheStatus>,
    prices: Option<TokenPrices>,
    span: tracing::Span,
    /// The requested model and the request's id, for the access log and the event.
    request_model: Box<str>,
    request_id: Option<http::HeaderValue>,
    /// Metric handles, looked up once the serving target is known.
    handles: Option<Arc<Handles>>,
    /// The answer's `id`.
    generation: Option<GenerationId>,
    /// The record's request facts (with a sink only).
    details: Option<Box<details::Details>>,
    upstream_latency: Option<Duration>,
    /// The client went away before the end.
    cancelled: bool,
}

impl Meter {
    fn cache_label(&self) -> &'static str {
        self.cache.map_or(NONE, |c| match c {
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
            .get(self.served.as_ref(), self.listed, self.cache_label());
        self.handles = Some(h.clone());
        h
    }

    /// Sets the target that served, and so the prices that apply.
    fn set_served(&mut self, served: ServedBy) {
        let c = self.route.as_ref().and_then(|r| {
            r.candidates
                .iter()
                .find(|c| c.provider.name == served.provider && c.model == served.model)
        });
        self.listed = c.is_some_and(|c| c.pricing.is_some());
        self.prices = self
            .config
            .billed_price(c, self.budgeted)
            .map(TokenPrices::from);
        if self.prices.is_none() {
            warn_unpriced(&served.provider, &served.model);
        }
        self.served = Some(served);
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
        let mut cost = usage.as_ref().and_then(|u| self.price(u));
        // Who served is unknown (the client left before the answer): the estimate's prices.
        let at_worst = usage
            .as_ref()
            .and_then(|u| self.worst.prices.map(|p| cost_of(u, &p)));
        if cost.is_none() && self.served.is_none() && usage_estimated {
            cost = at_worst;
        }
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
            // Fail closed: usage the served target's prices cannot price (it is not in the
            // Route) is settled at the Route's highest prices, never at $0.
            let actual = cost.or(at_worst).map_or(Picodollars::ZERO, |c| c.total());
            r.settle(actual);
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
        // The event carries every field of the `gen_ai.chat` span (which is a DEBUG span), so
        // at INFO it is the access log line; with an `AccessLog` that writes the line, DEBUG.
        macro_rules! finished {
            ($level:expr) => {
                span.in_scope(|| {
                    tracing::event!(
                        $level,
                        "gen_ai.operation.name" = "chat",
                        "gen_ai.request.model" = &*self.request_model,
                        "gen_ai.provider.name" = self.served.as_ref().map(|s| &*s.provider),
                        "gen_ai.response.model" = self.served.as_ref().map(|s| &*s.model),
                        "gen_ai.usage.input_tokens" = usage.as_ref().map(|u| u.prompt_tokens),
                        "gen_ai.usage.output_tokens" = usage.as_ref().map(|u| u.completion_tokens),
                        cost_usd = cost.map(|c| c.total().usd()),
                        cache = self.cache.map(CacheStatus::as_str),
                        request_id = self.request_id.as_ref().map(tracing::field::debug),
                        stream = self.stream,
                        latency_ms = latency.as_millis() as u64,
                        ttft_ms = ttft.map(|t| t.as_millis() as u64),
                        usage_estimated,
                        error = error.map(ErrorKind::as_str),
                        "request finished"
                    );
                })
            };
        }
        match &self.config.access_log {
            Some(log) => {
                finished!(tracing::Level::DEBUG);
                log.send(access_log::Entry {
                    time: Some(std::time::SystemTime::now()),
                    request_model: Some(std::mem::take(&mut self.request_model)),
                    provider: self.served.as_ref().map(|s| s.provider.clone()),
                    response_model: self.served.as_ref().map(|s| s.model.clone()),
                    input_tokens: usage.as_ref().map(|u| u.prompt_tokens),
                    output_tokens: usage.as_ref().map(|u| u.completion_tokens),
                    cost_usd: cost.map(|c| c.total()),
                    cache: self.cache,
                    request_id: self.request_id.take(),
                    stream: self.stream,
                    latency,
                    ttft,
                    usage_estimated,
                    error: error.map(ErrorKind::as_str),
                });
            }
            None => finished!(tracing::Level::INFO),
        }
        if let Some(sink) = &self.config.sink {
            let d = self.details.take();
            let shadow_of = d.as_ref().and_then(|d| d.shadow_of.clone());
            let generation_time = match (self.stream, ttft) {
                (true, Some(t)) => Some(latency.saturating_sub(t)),
                _ => self.upstream_latency,
            };
            let (created_at, requested, task, user, ingress, prompt, answer, finish_reason) =
                match d.map(|d| *d) {
                    Some(d) => (
                        d.created_at,
                        Some(d.requested),
                        d.task,
                        d.user,
                        d.ingress,
                        d.prompt,
                        d.answer,
                        d.finish_reason,
                    ),
                    None => (
                        std::time::SystemTime::now(),
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                    ),
                };
            sink.record_owned(CostRecord {
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
                generation_id: self.generation.take().map(|g| g.0),
                created_at,
                requested,
                task,
                user,
                ingress,
                finish_reason,
                generation_time,
                cancelled: self.cancelled,
                prompt,
                answer,
                shadow_of,
            });
        }
    }

    /// Usage estimated from the prompt and the output text, when the real one never came.
    pub(crate) fn estimate(&self, output_bytes: usize) -> Usage {
        let completion = (output_bytes as u64).div_ceil(4);
        Usage {
            prompt_tokens: self.prompt_estimate,
            completion_tokens: completion,
            total_tokens: self.prompt_estimate.saturating_add(completion),
            ..Usage::default()
        }
    }

    /// The worst case the request allowed (what was reserved).
    pub(crate) fn worst_case(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_estimate,
            completion_tokens: self.worst.output,
            total_tokens: self.prompt_estimate.saturating_add(self.worst.output),
            ..Usage::default()
        }
    }
}

/// The meter of a request handed to the inner service: if the CostMeter's future is dropped
/// before the answer (the client went away), the meter is left on the request's tab.
struct Dispatched {
    meter: Option<Meter>,
    tab: BillingTab,
}

impl Drop for Dispatched {
    fn drop(&mut self) {
        if let Some(mut meter) = self.meter.take() {
            meter.cancelled = true;
            self.tab.adopt(tab::Orphan {
                meter,
                streamed_bytes: 0,
                ttft: None,
                answered: false,
            });
        }
    }
}

fn budget_error(e: Exhausted, amount: Picodollars) -> Error {
    metrics::counter!("switchboard_budget_rejections_total").increment(1);
    metrics::counter!("switchboard_errors_total", "kind" => ErrorKind::BudgetExhausted.as_str())
        .increment(1);
    Error::new(
        ErrorKind::BudgetExhausted,
        format!(
            "spend budget exhausted: ${:.6} of ${:.6} used in this period (this request needs up to ${:.6})",
            e.committed.usd(),
            e.limit.usd(),
            amount.usd()
        ),
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

    fn call(&mut self, mut req: ChatHttpRequest) -> future::ResponseFuture {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        future::ResponseFuture::new(Box::pin(async move {
            let started = Instant::now();
            let caller = req.extensions().get::<CallerKey>().cloned();
            let budget = match (&config.budgets, &caller) {
                (Some(b), Some(c)) => b.for_caller(&c.0).map(|budget| (b, c, budget)),
                _ => None,
            };
            let budgeted = budget.is_some();
            let mut route = req.extensions().get::<Route>().cloned();
            if budgeted {
                let denied = deny_unpriced(&config, route.as_ref()).inspect_err(|e| {
                    metrics::counter!("switchboard_errors_total", "kind" => e.kind().as_str())
                        .increment(1);
                })?;
                if let Some(r) = denied {
                    req.extensions_mut().insert(r.clone());
                    route = Some(r);
                }
            }
            let chat = req.body().clone();
            let details = config.sink.as_ref().map(|sink| {
                Box::new(details::Details::new(
                    &req,
                    route.as_ref(),
                    sink.wants_bodies(),
                ))
            });
            let prompt_estimate = input_estimate(&chat);
            let worst = estimate(&config, route.as_ref(), &chat, prompt_estimate, budgeted);
            let mut reservation = None;
            if let Some((budgets, caller, budget)) = budget {
                let amount = worst.amount;
                let window = budget.window.current_id();
                budgets
                    .store()
                    .reserve(&caller.0, &window, budget.limit, amount)
                    .await
                    .map_err(|e| budget_error(e, amount))?;
                reservation = Some(Reservation {
                    budgets: budgets.clone(),
                    caller: caller.0.clone(),
                    window,
                    amount,
                    settled: false,
                });
            }
            let meter = Meter {
                config,
                started,
                route,
                caller,
                budgeted,
                reservation,
                stream: chat.is_stream(),
                prompt_estimate,
                worst,
                served: None,
                listed: false,
                cache: None,
                prices: None,
                span: tracing::Span::current(),
                request_model: chat.model.as_str().into(),
                request_id: req
                    .extensions()
                    .get::<crate::ext::RequestId>()
                    .map(|id| id.0.clone()),
                handles: None,
                generation: req.extensions().get::<GenerationId>().cloned(),
                details,
                upstream_latency: None,
                cancelled: false,
            };
            drop(chat);
            let svc = match tower::ServiceExt::ready(&mut inner).await {
                Ok(svc) => svc,
                Err(e) => {
                    meter.finish(None, false, None, Some(e.kind()));
                    return Err(e.metered());
                }
            };
            let tab = BillingTab::new();
            req.extensions_mut().insert(tab.clone());
            let mut dispatched = Dispatched {
                meter: Some(meter),
                tab,
            };
            let result = svc.call(req).await;
            let Some(mut meter) = dispatched.meter.take() else {
                return result;
            };
            let tab = dispatched.tab.clone();
            drop(dispatched);
            let resp = match result {
                Ok(r) => r,
                Err(e) => {
                    meter.finish(None, false, None, Some(e.kind()));
                    return Err(e.metered());
                }
            };
            let (mut parts, body) = resp.into_parts();
            meter.cache = parts.extensions.get::<CacheStatus>().copied();
            if let Some(s) = parts.extensions.get::<ServedBy>() {
                meter.set_served(ServedBy {
                    provider: s.provider.clone(),
                    model: s.model.clone(),
                    // Only the sink's record lists the attempts.
                    attempts: match meter.config.sink {
                        Some(_) => s.attempts.clone(),
                        None => Vec::<Attempt>::new(),
                    },
                });
            }
            let body = match body {
                ChatResponse::Stream(s) => {
                    ChatResponse::Stream(Box::pin(MeteredStream::new(s, meter, Some(tab))))
                }
                ChatResponse::Complete(mut whole) => {
                    drop(tab);
                    if let Some(up) = parts.extensions.get::<UpstreamLatency>() {
                        let overhead = meter.started.elapsed().saturating_sub(up.0);
                        meter.handles().overhead.record(overhead.as_secs_f64());
                        meter.upstream_latency = Some(up.0);
                    }
                    if let Some(g) = &meter.generation {
                        whole.set_id(&g.0);
                    }
                    if let Some(d) = meter.details.as_deref_mut() {
                        d.finish_reason = whole.finish_reason();
                        if d.answer.is_some() {
                            d.answer = whole.to_typed().ok().and_then(|c| {
                                let text = c.choices.into_iter().next()?.message.content?;
                                Some(details::cut(text, details::MAX_BODY_BYTES))
                            });
                        }
                    }
                    let cost = whole.usage_mut().as_mut().and_then(|u| meter.annotate(u));
                    if let Some(cost) = cost {
                        parts.extensions.insert(Cost(cost.total().usd()));
                    }
                    let ttft = meter.started.elapsed();
                    let (usage, estimated) = match whole.usage() {
                        Some(u) => (Some(u.clone()), false),
                        // No usage from the upstream: billed from the answer's text.
                        None if meter.cache != Some(CacheStatus::Hit) => {
                            (Some(meter.estimate(whole.output_bytes())), true)
                        }
                        None => (None, false),
                    };
                    meter.finish(usage, estimated, Some(ttft), None);
                    ChatResponse::Complete(whole)
                }
            };
            Ok(http::Response::from_parts(parts, body))
        }))
    }
}
