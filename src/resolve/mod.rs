//! ModelResolve: turns `model`, OpenRouter's `models: [...]` and the catalog's aliases into a
//! [`Route`] of ordered candidates.
//!
//! Requires: nothing. Provides: [`Route`] (request extension).
//!
//! - A catalog model id yields one candidate per endpoint, in catalog order.
//! - An alias (`fast` → `openai/gpt-4o-mini`) is followed (aliases may point at aliases).
//! - `models: [a, b, c]` yields the candidates of `model` (if set), then of `a`, `b`, `c`.
//! - An id the catalog does not list whose prefix names a configured provider
//!   (`openai/gpt-4.1-nano`) goes to that provider with the rest of the id as the upstream name,
//!   unless pass-through is off in the catalog settings.
//!
//! # Errors
//! Unknown model → 404 ([`ErrorKind::NotFound`](crate::ErrorKind::NotFound)) naming close
//! matches.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::catalog::Catalog;
use crate::chat::{ChatHttpRequest, ChatHttpResponse};
use crate::ext::{Candidate, Route};
use crate::openai::ChatRequest;
use crate::{Error, ErrorKind};

pub use crate::future::ResponseFuture;

/// Layer for [`ModelResolve`].
#[derive(Debug, Clone)]
pub struct ModelResolveLayer {
    catalog: Catalog,
}

impl ModelResolveLayer {
    /// Resolves against `catalog`.
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }
}

impl<S> Layer<S> for ModelResolveLayer {
    type Service = ModelResolve<S>;
    fn layer(&self, inner: S) -> ModelResolve<S> {
        ModelResolve {
            inner,
            catalog: self.catalog.clone(),
        }
    }
}

/// The resolving service; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ModelResolve<S> {
    inner: S,
    catalog: Catalog,
}

impl<S> ModelResolve<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<ChatHttpRequest> for ModelResolve<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ChatHttpRequest) -> Self::Future {
        match resolve(&self.catalog, req.body()) {
            Ok(route) => {
                req.extensions_mut().insert(route);
                ResponseFuture::inner(self.inner.call(req))
            }
            Err(e) => ResponseFuture::failed(e),
        }
    }
}

const MAX_ALIAS_HOPS: usize = 8;

/// Resolves a request against the catalog.
pub fn resolve(catalog: &Catalog, req: &ChatRequest) -> Result<Route, Error> {
    let mut candidates = Vec::new();
    let mut ids: Vec<&str> = Vec::new();
    if !req.model.is_empty() {
        ids.push(&req.model);
    }
    for m in req.models.iter().flatten() {
        if !ids.contains(&m.as_str()) {
            ids.push(m);
        }
    }
    let requested: Arc<str> = ids.first().copied().unwrap_or_default().into();
    for id in ids {
        resolve_id(catalog, id, &mut candidates)?;
    }
    Ok(Route {
        requested,
        candidates: candidates.into(),
    })
}

fn resolve_id(catalog: &Catalog, id: &str, out: &mut Vec<Candidate>) -> Result<(), Error> {
    let mut current = id;
    for _ in 0..MAX_ALIAS_HOPS {
        if let Some(model) = catalog.model(current) {
            out.extend(
                model
                    .endpoints
                    .iter()
                    .map(|e| Candidate::from_endpoint(model, e)),
            );
            return Ok(());
        }
        match catalog.alias(current) {
            Some(next) => current = next,
            None => break,
        }
    }
    if catalog.settings().passthrough {
        if let Some((prefix, rest)) = current.split_once('/') {
            if let Some(p) = catalog.provider(prefix) {
                if !rest.is_empty() {
                    out.push(Candidate::passthrough(
                        current.into(),
                        p.clone(),
                        rest.into(),
                    ));
                    return Ok(());
                }
            }
        }
    }
    Err(unknown_model(catalog, id))
}

fn unknown_model(catalog: &Catalog, id: &str) -> Error {
    let close = catalog.close_matches(id);
    let mut msg = format!("model `{id}` is not available");
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
mod tests {
    use super::*;
    use crate::catalog::{ModelSpec, Provider, ProviderKind};

    fn catalog(passthrough: bool) -> Catalog {
        Catalog::builder()
            .provider(Provider::new("openai", ProviderKind::Openai, "http://o/v1"))
            .provider(Provider::new("groq", ProviderKind::Openai, "http://g/v1"))
            .model(ModelSpec::new("openai/gpt-4o-mini"))
            .model(
                ModelSpec::new("meta-llama/llama-3.1-70b")
                    .endpoint("groq", "llama-70b", None)
                    .endpoint("openai", "llama", None),
            )
            .alias("fast", "openai/gpt-4o-mini")
            .alias("quick", "fast")
            .passthrough(passthrough)
            .build()
            .unwrap()
    }

    fn req(body: &str) -> ChatRequest {
        ChatRequest::from_slice(body.as_bytes()).unwrap()
    }

    #[test]
    fn resolves_ids_aliases_lists_and_passthrough() {
        let c = catalog(true);
        let r = resolve(
            &c,
            &req(r#"{"model":"quick","messages":[{"role":"user","content":"x"}]}"#),
        )
        .unwrap();
        assert_eq!(&*r.candidates[0].upstream_model, "gpt-4o-mini");
        assert_eq!(&*r.requested, "quick");
        let r = resolve(&c, &req(r#"{"model":"meta-llama/llama-3.1-70b","models":["fast"],"messages":[{"role":"user","content":"x"}]}"#)).unwrap();
        let labels: Vec<_> = r.candidates.iter().map(Candidate::label).collect();
        assert_eq!(
            labels,
            ["groq/llama-70b", "openai/llama", "openai/gpt-4o-mini"]
        );
        let r = resolve(
            &c,
            &req(r#"{"model":"openai/gpt-4.1-nano","messages":[{"role":"user","content":"x"}]}"#),
        )
        .unwrap();
        assert_eq!(&*r.candidates[0].upstream_model, "gpt-4.1-nano");
        assert!(r.candidates[0].pricing.is_none());
    }

    #[test]
    fn unknown_model_is_404_with_close_matches() {
        let c = catalog(false);
        let e = resolve(
            &c,
            &req(r#"{"model":"openai/gpt-4o-mni","messages":[{"role":"user","content":"x"}]}"#),
        )
        .unwrap_err();
        assert_eq!(e.status(), 404);
        assert!(
            e.message().contains("`openai/gpt-4o-mini`"),
            "{}",
            e.message()
        );
        let e = resolve(
            &catalog(true),
            &req(r#"{"model":"nobody/x","messages":[{"role":"user","content":"x"}]}"#),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
}
