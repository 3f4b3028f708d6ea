//! ModelResolve: the router. Turns `model`, OpenRouter's `models: [...]` and `provider`
//! preferences, the catalog's aliases, rules, splits and the auto model into a [`Route`] of
//! ordered candidates.
//!
//! Requires: nothing (a shared [`Health`] is optional). Reads: the request's `model`,
//! `models`, `provider`, `user`, `metadata.task`, `max_tokens` / `max_completion_tokens`, the
//! parameters it uses, `tools` and the cheap scan of `messages`
//! ([`MessagesSummary`](crate::openai::MessagesSummary): estimated prompt tokens, images, tool
//! messages; messages are never parsed); the [`x-switchboard-task`](TASK_HEADER) header.
//! Provides: [`Route`] (request extension). Configured by the [catalog](crate::catalog):
//! endpoints, prices, capabilities, `supported_parameters`, `throughput`, `data_collection`,
//! aliases and the `[routing]` section (auto model, rules, splits).
//!
//! # Limits
//!
//! Every id comes from the client, so before any per-id work a request is checked against
//! the layer's [`Limits`]:
//!
//! | limit | default | set with | over it |
//! | --- | --- | --- | --- |
//! | entries in `models` (duplicates count) | [`DEFAULT_MAX_MODELS`] = 64 | [`ModelResolveLayer::max_models`], [`GatewayBuilder::max_models`](crate::GatewayBuilder::max_models) | 400 `array_above_max_length`, param `models` |
//! | bytes in `model` and in each `models` entry | [`DEFAULT_MAX_ID_BYTES`] = 256 | [`ModelResolveLayer::max_id_bytes`], [`GatewayBuilder::max_model_id_bytes`](crate::GatewayBuilder::max_model_id_bytes) | 400 `string_above_max_length`, param `model` or `models[i]` |
//!
//! 64 ids are far more fallbacks than a request can use (each id can stand for several
//! candidates); 256 bytes are well above any real model id. Past the check the work is
//! linear in the number of ids (duplicates are found with a hash set), and error messages
//! quote at most the first 64 chars of anything the client sent (escaped, then `…`).
//!
//! A pass-through id's upstream name (the part after `provider/`) must be safe to send to
//! that provider — it may become a URL path segment (Gemini's
//! `/v1beta/models/{model}:generateContent`): OpenAI-compatible providers accept
//! `/`-separated segments of ASCII letters, digits and `.` `_` `-` `:` `@`
//! (`meta-llama/Llama-3-70b`, `llama3:8b`); Anthropic one segment of letters, digits and
//! `.` `_` `-` `:`; Gemini one segment of letters, digits and `.` `_` `-`, optionally after
//! `models/` or `tunedModels/`. No segment may be empty, `.` or `..`; spaces, control chars,
//! `%`, `?`, `#` and non-ASCII are never sent. Anything else is a 400 (`invalid_value`).
//!
//! # How a route is built
//!
//! 1. **Ids.** `model` (if set), then each of `models` not already listed, each tried in that
//!    order: their candidates form one group per id and groups never mix. A `:floor` suffix
//!    (sort that id's providers by price) or `:nitro` (by throughput) is stripped first.
//! 2. **Expansion** of each id, following names up to 8 hops:
//!    1. *Rules* — only for an id that a rule applies to (by default the auto id; a rule's
//!       `applies_to` lists others): the first rule whose conditions all hold (`task` equals
//!       the `x-switchboard-task` header, else `metadata.task`; the estimated prompt has at
//!       least `min_prompt_tokens`) replaces the id with its `target`. Rules run once per id,
//!       so an explicit model id is never rerouted unless a rule names it.
//!    2. A *catalog model* yields one candidate per endpoint, in catalog order. Several
//!       deployments of one provider kind (`openai-eu`, `openai-us`: two keys, two regions)
//!       are several providers, hence several candidates, each named by its own provider name
//!       in preferences and in health.
//!    3. An *alias* (`fast`, `balanced`, `deep`, …) is followed.
//!    4. A *split* picks one arm by weight: sticky per `user` (a stable hash of the split id
//!       and `user`), else a draw from the layer's RNG ([`ModelResolveLayer::seed`] makes it
//!       reproducible). Only the picked arm is routed to.
//!    5. The *auto* id (default `auto`) yields every endpoint of the auto pool (default: all
//!       models), cheapest first; the capability filter below leaves those able to serve.
//!    6. An unknown `provider/model` whose prefix names a configured provider goes to it with
//!       the rest of the id as the upstream name (pass-through, unless off in the settings).
//!
//!    The catalog refuses a split or an explicitly configured auto id that reuses a model or
//!    alias name, so this order only matters for the default `auto` id (a model or alias
//!    named `auto` shadows it) and for an alias named like a model (the model wins).
//! 3. **Capabilities.** Candidates that cannot serve are dropped: context window smaller than
//!    the estimated prompt plus the requested output, output cap below the requested
//!    `max_tokens`, tools offered (or tool messages present) but no tool support, images but
//!    no image support. Unknown limits never disqualify.
//! 4. **Provider preferences**, in this order: `only`, `ignore` (provider names, ASCII case
//!    ignored; empty lists are ignored), `data_collection: "deny"` (only providers the catalog
//!    marks `data_collection = false`), `max_price {prompt, completion}` (USD per million
//!    tokens; candidates above it or without a known price are dropped),
//!    `require_parameters: true` (only endpoints whose `supported_parameters` cover every
//!    parameter the request uses; the default set depends on the provider kind, see
//!    [`ProviderKind::default_parameters`](crate::catalog::ProviderKind::default_parameters)).
//! 5. **Order** within each group: `order`'s providers first, in its order; then the sort
//!    key — `provider.sort` if given, else the id's suffix, else price for the auto id, else
//!    catalog order. `price`: prompt + completion price, unknown last; `latency`: the
//!    [`Health`] latency EWMA, unknown last; `throughput`: the catalog's tokens/s hint
//!    (endpoint, else provider), highest first, then latency. Ties keep catalog order.
//!    A target reached through two ids is kept once, at its first place.
//! 6. **`allow_fallbacks: false`** keeps exactly one candidate, the first.
//! 7. **Health.** With a [`Health`] ([`ModelResolveLayer::health`], shared with Fallback),
//!    cooling-down candidates move to the end (not dropped, so Fallback can still probe them).
//!
//! A plain model id or alias with no `provider` preferences, no suffix and no rule for it
//! takes a fast path: the model's candidate list is built once per layer and shared (an `Arc`
//! clone), and nothing is sorted or filtered unless a candidate cannot serve or is cooling
//! down. `metadata` is parsed only when a task rule must look at it.
//!
//! # Errors
//! - Too many `models`, or an id too long → 400 ([`ErrorKind::InvalidRequest`]), see
//!   [Limits](#limits); a pass-through id whose upstream name is not safe for its provider →
//!   400 `invalid_value`.
//! - Unknown model → 404 ([`ErrorKind::NotFound`]) naming close matches.
//! - Bad `provider` values (`sort`, `data_collection`, `max_price`) → 400 naming the field.
//! - No candidate can serve → 400 ([`ErrorKind::InvalidRequest`]): code
//!   `context_length_exceeded` when the context window was the reason for every candidate,
//!   else `unsupported_parameter` (param `max_tokens`, `tools` or `messages`).
//! - Preferences leave nothing → 400: `unsupported_parameter` (param: the first unsupported
//!   parameter) for `require_parameters`, else `no_matching_provider` (param: the
//!   preference, e.g. `provider.max_price`).
//! - Every remaining candidate cooling down → 503 ([`ErrorKind::Overloaded`]).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use switchboard::catalog::{ModelSpec, Pricing, Provider, ProviderKind, Rule};
//! use switchboard::ext::Route;
//! use switchboard::openai::{ChatCompletion, ChatRequest};
//! use switchboard::resolve::ModelResolveLayer;
//! use switchboard::{Catalog, ChatResponse, Error};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! let price = |input, output| Pricing { input, output, ..Pricing::default() };
//! let catalog = Catalog::builder()
//!     .provider(Provider::new("openai-eu", ProviderKind::Openai, "https://eu.example/v1"))
//!     .provider(Provider::new("openai-us", ProviderKind::Openai, "https://us.example/v1"))
//!     .model(
//!         ModelSpec::new("openai/gpt-4o")
//!             .endpoint("openai-eu", "gpt-4o", Some(price(2.5, 10.0)))
//!             .endpoint("openai-us", "gpt-4o", Some(price(2.0, 8.0))),
//!     )
//!     .model(ModelSpec::new("openai-us/gpt-4o-mini").pricing(price(0.15, 0.6)))
//!     .rule(Rule::new("openai/gpt-4o").task("code"))
//!     .build()?;
//!
//! // A fake inner service that checks the Route ModelResolve wrote.
//! let inner = service_fn(|req: http::Request<Arc<ChatRequest>>| async move {
//!     let route = req.extensions().get::<Route>().expect("ModelResolve writes a Route");
//!     let labels: Vec<String> = route.candidates.iter().map(|c| c.label()).collect();
//!     assert_eq!(labels, ["openai-us/gpt-4o", "openai-eu/gpt-4o"]);
//!     let done: ChatCompletion = serde_json::from_str(r#"{"id":"1","model":"openai/gpt-4o","choices":[]}"#)
//!         .map_err(|e| Error::upstream(e.to_string()))?;
//!     Ok::<_, Error>(http::Response::new(ChatResponse::from(done)))
//! });
//! let svc = ModelResolveLayer::new(catalog).layer(inner);
//!
//! // `auto` with the task `code` → the rule's target, its providers sorted by price.
//! let body = br#"{"model":"auto","metadata":{"task":"code"},"provider":{"sort":"price"},
//!     "messages":[{"role":"user","content":"Write a parser."}]}"#;
//! let req = http::Request::new(Arc::new(ChatRequest::from_slice(body)?));
//! let resp = svc.oneshot(req).await?;
//! assert!(resp.body().as_complete().is_some());
//! # Ok(())
//! # }
//! ```

pub mod future;
pub(crate) mod limits;
mod prefs;
mod rules;

use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderMap;
use tower_layer::Layer;
use tower_service::Service;

use crate::catalog::{Catalog, Parameters};
use crate::chat::{ChatHttpRequest, ChatHttpResponse};
use crate::ext::{Candidate, ModelAllowList, Route};
use crate::health::{Health, TargetState};
use crate::openai::ChatRequest;
use crate::{Error, ErrorKind};

use limits::{quote, requested_ids, upstream_name_ok, upstream_name_rule};
use prefs::{Need, Prefs, Slot, SlotCandidate, SortBy};
use rules::{Ctx, Rng};

pub use limits::{Limits, DEFAULT_MAX_ID_BYTES, DEFAULT_MAX_MODELS};

/// Request header naming the request's task for routing rules (else `metadata.task`).
pub const TASK_HEADER: &str = "x-switchboard-task";

/// Layer for [`ModelResolve`].
#[derive(Debug, Clone)]
pub struct ModelResolveLayer {
    resolver: Resolver,
}

impl ModelResolveLayer {
    /// Resolves against `catalog`, without health information, with a randomly seeded RNG
    /// for splits.
    pub fn new(catalog: Catalog) -> Self {
        Self {
            resolver: Resolver::new(catalog),
        }
    }

    /// Reads `health` (share it with [`FallbackLayer::health`](crate::fallback::FallbackLayer::health)):
    /// cooling-down targets go last, and `sort: latency` uses its EWMA.
    #[must_use]
    pub fn health(mut self, health: Health) -> Self {
        self.resolver = self.resolver.health(health);
        self
    }

    /// Seeds the RNG behind split draws for requests without a `user` (reproducible tests).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.resolver = self.resolver.seed(seed);
        self
    }

    /// The most entries a request's `models` may list (default [`DEFAULT_MAX_MODELS`], 64);
    /// more → 400 before any per-id work.
    #[must_use]
    pub fn max_models(mut self, n: usize) -> Self {
        self.resolver = self.resolver.max_models(n);
        self
    }

    /// The longest `model`, and the longest entry of `models`, in bytes (default
    /// [`DEFAULT_MAX_ID_BYTES`], 256); longer → 400 before any per-id work.
    #[must_use]
    pub fn max_id_bytes(mut self, n: usize) -> Self {
        self.resolver = self.resolver.max_id_bytes(n);
        self
    }

    /// The resolver this layer uses.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }
}

impl<S> Layer<S> for ModelResolveLayer {
    type Service = ModelResolve<S>;
    fn layer(&self, inner: S) -> ModelResolve<S> {
        ModelResolve {
            inner,
            resolver: self.resolver.clone(),
        }
    }
}

/// The resolving service; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ModelResolve<S> {
    inner: S,
    resolver: Resolver,
}

impl<S> ModelResolve<S> {
    crate::macros::inner_service_accessors!(inner: S);
}

impl<S> Service<ChatHttpRequest> for ModelResolve<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = future::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ChatHttpRequest) -> Self::Future {
        let resolved = self
            .resolver
            .resolve(req.body(), req.headers())
            .and_then(|route| match req.extensions().get::<ModelAllowList>() {
                Some(allowed) => restrict(route, allowed),
                None => Ok(route),
            });
        match resolved {
            Ok(route) => {
                req.extensions_mut().insert(route);
                future::ResponseFuture::inner(self.inner.call(req))
            }
            Err(e) => future::ResponseFuture::failed(e),
        }
    }
}

const MAX_HOPS: usize = 8;

/// Keeps the candidates a caller's allow-list allows: every resolved candidate, not only the
/// id the client asked for, so an alias, split or rule cannot lead outside the list (unless
/// the operator listed that alias, split or rule id itself).
fn restrict(route: Route, allowed: &ModelAllowList) -> Result<Route, Error> {
    if allowed.lists(&route.requested) || route.candidates.iter().all(|c| allowed.allows(&c.model))
    {
        return Ok(route);
    }
    let candidates: Vec<Candidate> = route
        .candidates
        .iter()
        .filter(|c| allowed.allows(&c.model))
        .cloned()
        .collect();
    if candidates.is_empty() {
        return Err(Error::new(
            ErrorKind::Forbidden,
            format!(
                "this API key may not use the models `{}` resolves to",
                quote(&route.requested)
            ),
        )
        .with_param("model"));
    }
    Ok(Route {
        requested: route.requested,
        candidates: candidates.into(),
    })
}

/// The routing logic of [`ModelResolve`], usable without tower. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Resolver {
    shared: Arc<Shared>,
    health: Option<Health>,
    rng: Arc<Rng>,
    limits: Limits,
}

#[derive(Debug)]
struct Shared {
    catalog: Catalog,
    /// Per catalog model (same index): its candidates, built once.
    models: Vec<Prepared>,
}

#[derive(Debug)]
struct Prepared {
    candidates: Arc<[Candidate]>,
    params: Box<[Parameters]>,
    throughput: Box<[Option<f64>]>,
}

impl Resolver {
    /// A resolver over `catalog` (no health, randomly seeded).
    pub fn new(catalog: Catalog) -> Self {
        let models = catalog
            .models()
            .iter()
            .map(|m| Prepared {
                candidates: m
                    .endpoints
                    .iter()
                    .map(|e| Candidate::from_endpoint(m, e))
                    .collect(),
                params: m
                    .endpoints
                    .iter()
                    .map(crate::catalog::Endpoint::supported_parameters)
                    .collect(),
                throughput: m
                    .endpoints
                    .iter()
                    .map(crate::catalog::Endpoint::throughput_hint)
                    .collect(),
            })
            .collect();
        Self {
            shared: Arc::new(Shared { catalog, models }),
            health: None,
            rng: Arc::new(Rng::from_entropy()),
            limits: Limits::default(),
        }
    }

    /// Reads `health` for cooling-down targets and latency.
    #[must_use]
    pub fn health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// Seeds the split RNG.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = Arc::new(Rng::seeded(seed));
        self
    }

    /// Sets [`Limits::max_models`].
    #[must_use]
    pub fn max_models(mut self, n: usize) -> Self {
        self.limits.max_models = n;
        self
    }

    /// Sets [`Limits::max_id_bytes`].
    #[must_use]
    pub fn max_id_bytes(mut self, n: usize) -> Self {
        self.limits.max_id_bytes = n;
        self
    }

    /// The limits requests are checked against.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    /// Resolves a request (with its headers, for `x-switchboard-task`) into a [`Route`]; see
    /// the [module docs](self) for the steps and errors.
    pub fn resolve(&self, req: &ChatRequest, headers: &HeaderMap) -> Result<Route, Error> {
        self.limits.check(req)?;
        let prefs = Prefs::parse(req)?;
        if prefs.is_noop() {
            if let Some(route) = self.fast_path(req) {
                return Ok(route);
            }
        }
        self.full(req, headers, &prefs)
    }

    /// A plain model id or alias with nothing to filter or reorder: the prepared list.
    fn fast_path(&self, req: &ChatRequest) -> Option<Route> {
        let id = req.model.as_str();
        let single = req
            .models
            .as_ref()
            .is_none_or(|m| m.is_empty() || (m.len() == 1 && m[0] == id));
        if id.is_empty() || !single || strip_suffix(id).1.is_some() {
            return None;
        }
        let catalog = &self.shared.catalog;
        let mut cur = id;
        for _ in 0..MAX_HOPS {
            if catalog.routing().has_rules_for(cur) {
                return None;
            }
            if let Some(i) = catalog.model_index(cur) {
                let model = &catalog.models()[i];
                let prepared = &self.shared.models[i];
                let need = Need::of(req);
                // Capabilities and limits are per model: all endpoints fit or none does.
                if prepared
                    .candidates
                    .first()
                    .is_some_and(|c| need.unfit(c, model.capabilities).is_some())
                {
                    return None;
                }
                if let Some(h) = &self.health {
                    if prepared
                        .candidates
                        .iter()
                        .any(|c| h.state(c) == TargetState::CoolingDown)
                    {
                        return None;
                    }
                }
                let requested = if cur == id {
                    model.id.clone()
                } else {
                    id.into()
                };
                return Some(Route {
                    requested,
                    candidates: prepared.candidates.clone(),
                });
            }
            cur = catalog.alias(cur)?;
        }
        None
    }

    fn full(
        &self,
        req: &ChatRequest,
        headers: &HeaderMap,
        prefs: &Prefs<'_>,
    ) -> Result<Route, Error> {
        let ids = requested_ids(req);
        let requested = ids.first().copied().unwrap_or_default();
        let mut cx = Ctx::new(req, headers);
        // Most ids have a few endpoints: one allocation for the usual route.
        let mut slots: Vec<Slot<'_>> = Vec::with_capacity(ids.len() * 4);
        let mut sorts: Vec<Option<SortBy>> = Vec::with_capacity(ids.len());
        for raw in &ids {
            let (id, suffix) = strip_suffix(raw);
            let group = u32::try_from(sorts.len()).unwrap_or(u32::MAX);
            let default_sort = self.expand(id, &mut cx, group, &mut slots)?;
            sorts.push(prefs.sort.or(suffix).or(default_sort));
        }
        Need::of(req).filter(&mut slots, requested)?;
        prefs.filter(&mut slots, req, requested)?;
        if ids.len() > 1 {
            dedup(&mut slots);
        }
        prefs.order(&mut slots, &sorts, self.health.as_ref());
        if !prefs.allow_fallbacks {
            slots.truncate(1);
        }
        let candidates = self.by_health(slots, requested)?;
        Ok(Route {
            requested: requested.into(),
            candidates,
        })
    }

    /// Adds the candidates of one requested id; returns its default sort (price for auto).
    fn expand<'s>(
        &'s self,
        id: &str,
        cx: &mut Ctx<'_>,
        group: u32,
        out: &mut Vec<Slot<'s>>,
    ) -> Result<Option<SortBy>, Error> {
        let catalog = &self.shared.catalog;
        let routing = catalog.routing();
        let mut cur = id;
        let mut rules_done = false;
        for _ in 0..MAX_HOPS {
            if !rules_done && routing.has_rules_for(cur) {
                rules_done = true;
                if let Some(target) = rules::matching(routing, cur, cx) {
                    cur = target;
                    continue;
                }
            }
            if let Some(i) = catalog.model_index(cur) {
                self.push_model(i, group, out);
                return Ok(None);
            }
            if let Some(next) = catalog.alias(cur) {
                cur = next;
                continue;
            }
            if let Some(split) = routing.split(cur) {
                match rules::pick(split, cx.user(), &self.rng) {
                    Some(arm) => {
                        cur = arm;
                        continue;
                    }
                    None => break,
                }
            }
            if routing.auto_model() == Some(cur) {
                let pool = routing.auto_pool();
                if pool.is_empty() {
                    // Every chat model: embedding models answer no chat request.
                    for (i, m) in catalog.models().iter().enumerate() {
                        if m.kind == crate::catalog::ModelKind::Chat {
                            self.push_model(i, group, out);
                        }
                    }
                } else {
                    for i in pool.iter().filter_map(|m| catalog.model_index(m)) {
                        self.push_model(i, group, out);
                    }
                }
                return Ok(Some(SortBy::Price));
            }
            break;
        }
        if catalog.settings().passthrough {
            if let Some((prefix, rest)) = cur.split_once('/') {
                if let Some(p) = catalog.provider(prefix) {
                    if !rest.is_empty() {
                        if !upstream_name_ok(p.kind, rest) {
                            return Err(Error::invalid_request(format!(
                                "model `{}`: `{}` is not a valid upstream model name for \
                                 provider `{}` ({} model names are {})",
                                quote(id),
                                quote(rest),
                                quote(prefix),
                                p.kind.as_str(),
                                upstream_name_rule(p.kind)
                            ))
                            .with_code("invalid_value")
                            .with_param("model"));
                        }
                        out.push(Slot {
                            caps: crate::catalog::Capabilities::default(),
                            params: p.kind.parameters_for(rest),
                            throughput: p.throughput,
                            group,
                            cand: SlotCandidate::Made(Box::new(Candidate::passthrough(
                                cur.into(),
                                p.clone(),
                                rest.into(),
                            ))),
                        });
                        return Ok(None);
                    }
                }
            }
        }
        Err(unknown_model(catalog, id))
    }

    fn push_model<'s>(&'s self, i: usize, group: u32, out: &mut Vec<Slot<'s>>) {
        let caps = self.shared.catalog.models()[i].capabilities;
        let p = &self.shared.models[i];
        out.extend(
            p.candidates
                .iter()
                .zip(p.params.iter().zip(p.throughput.iter()))
                .map(|(c, (params, tp))| Slot {
                    cand: SlotCandidate::Catalog(c),
                    caps,
                    params: *params,
                    throughput: *tp,
                    group,
                }),
        );
    }

    /// Moves cooling-down candidates to the end; 503 when all are cooling down.
    fn by_health(&self, slots: Vec<Slot<'_>>, requested: &str) -> Result<Arc<[Candidate]>, Error> {
        let all_ready = |h: &Health| {
            slots
                .iter()
                .all(|s| h.state(&s.cand) != TargetState::CoolingDown)
        };
        let h = match &self.health {
            Some(h) if !all_ready(h) => h,
            // The usual case: keep the order, no partition.
            _ => return Ok(slots.into_iter().map(|s| s.cand.into_owned()).collect()),
        };
        let (ready, cooling): (Vec<Slot<'_>>, Vec<Slot<'_>>) = slots
            .into_iter()
            .partition(|s| h.state(&s.cand) != TargetState::CoolingDown);
        if ready.is_empty() && !cooling.is_empty() {
            return Err(Error::new(
                ErrorKind::Overloaded,
                format!(
                    "every candidate for `{}` is cooling down after repeated failures; retry shortly",
                    quote(requested)
                ),
            ));
        }
        Ok(ready
            .into_iter()
            .chain(cooling)
            .map(|s| s.cand.into_owned())
            .collect())
    }
}

/// Strips a `:floor` (sort by price) or `:nitro` (sort by throughput) suffix.
fn strip_suffix(id: &str) -> (&str, Option<SortBy>) {
    if let Some(base) = id.strip_suffix(":floor") {
        (base, Some(SortBy::Price))
    } else if let Some(base) = id.strip_suffix(":nitro") {
        (base, Some(SortBy::Throughput))
    } else {
        (id, None)
    }
}

/// Keeps the first candidate for each provider + upstream model. Linear: a hash set
/// (SipHash, randomly keyed: pass-through names are the client's) remembers the pairs seen.
fn dedup(slots: &mut Vec<Slot<'_>>) {
    let keep: Vec<bool> = {
        let mut seen: std::collections::HashSet<(&str, &str)> =
            std::collections::HashSet::with_capacity(slots.len());
        slots
            .iter()
            .map(|s| seen.insert((&*s.cand.provider.name, &*s.cand.upstream_model)))
            .collect()
    };
    let mut keep = keep.into_iter();
    slots.retain(|_| keep.next().unwrap_or(true));
}

fn unknown_model(catalog: &Catalog, id: &str) -> Error {
    let close = catalog.close_matches(id);
    let mut msg = format!("model `{}` is not available", quote(id));
    if !close.is_empty() {
        msg.push_str("; did you mean ");
        for (i, c) in close.iter().enumerate() {
            if i > 0 {
                msg.push_str(", ");
            }
            msg.push('`');
            msg.push_str(c);
            msg.push('`');
        }
        msg.push('?');
    }
    Error::new(ErrorKind::NotFound, msg).with_param("model")
}

#[cfg(test)]
mod tests;
