//! [`CatalogBuilder`]: builds and validates a catalog in code.

use std::sync::Arc;

use super::{
    config_error, Catalog, CatalogInner, Endpoint, EndpointSpec, Model, ModelSpec, Provider, Rule,
    Split,
};
use crate::Error;

/// Builds a [`Catalog`] in code.
#[derive(Debug, Default)]
pub struct CatalogBuilder {
    inner: CatalogInner,
    pub(super) errors: Vec<String>,
}

impl CatalogBuilder {
    /// Adds a provider.
    #[must_use]
    pub fn provider(mut self, p: Provider) -> Self {
        if self.inner.providers.contains_key(&p.name) {
            self.errors
                .push(format!("providers.{}: duplicate provider", p.name));
        }
        self.inner.providers.insert(p.name.clone(), Arc::new(p));
        self
    }

    /// Adds a model.
    #[must_use]
    pub fn model(mut self, spec: ModelSpec) -> Self {
        let m = match self.resolve_model(spec) {
            Ok(m) => m,
            Err(e) => {
                self.errors.push(e);
                return self;
            }
        };
        if self.inner.by_id.contains_key(&m.id) {
            self.errors
                .push(format!("models.{}: duplicate model id", m.id));
            return self;
        }
        self.inner
            .by_id
            .insert(m.id.clone(), self.inner.models.len());
        self.inner.models.push(Arc::new(m));
        self
    }

    fn resolve_model(&self, spec: ModelSpec) -> Result<Model, String> {
        let mut endpoints = Vec::new();
        let prefixed = spec.id.split_once('/');
        let specs = if spec.endpoints.is_empty() {
            vec![EndpointSpec::new(String::new())]
        } else {
            spec.endpoints
        };
        for e in specs {
            let (pname, default_upstream) = if e.provider.is_empty() {
                match prefixed {
                    Some((p, rest)) => (p.to_owned(), rest.to_owned()),
                    None => {
                        return Err(format!(
                            "models.{}: id has no `provider/` prefix and no endpoints",
                            spec.id
                        ))
                    }
                }
            } else {
                let rest = prefixed.map_or(spec.id.as_str(), |(_, r)| r).to_owned();
                (e.provider.clone(), rest)
            };
            let provider = self.inner.providers.get(pname.as_str()).ok_or_else(|| {
                format!("models.{}: provider `{pname}` is not configured", spec.id)
            })?;
            if let Some(p) = &e.pricing {
                let all = [
                    Some(p.input),
                    Some(p.output),
                    p.cached_input,
                    p.cache_write,
                    p.per_request,
                ];
                if all.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
                    return Err(format!("models.{}: prices must be non-negative", spec.id));
                }
            }
            if e.throughput.is_some_and(|t| !t.is_finite() || t <= 0.0) {
                return Err(format!(
                    "models.{}: throughput must be a positive number of tokens per second",
                    spec.id
                ));
            }
            endpoints.push(Endpoint {
                provider: provider.clone(),
                upstream: e.upstream.unwrap_or(default_upstream).into(),
                pricing: e.pricing,
                deadlines: e.deadlines.or(provider.deadlines),
                parameters: e.parameters.or(spec.parameters),
                throughput: e.throughput,
            });
        }
        Ok(Model {
            name: spec.name.unwrap_or_else(|| spec.id.clone()).into(),
            id: spec.id.into(),
            context_length: spec.context_length,
            max_output: spec.max_output,
            capabilities: spec.capabilities,
            endpoints,
            kind: spec.kind,
            dimensions: spec.dimensions,
        })
    }

    /// Adds an alias (`fast` → `openai/gpt-4o-mini`).
    #[must_use]
    pub fn alias(mut self, name: impl Into<String>, target: impl Into<String>) -> Self {
        self.inner.aliases.insert(name.into(), target.into());
        self
    }

    /// Turns pass-through of unknown `provider/model` ids on or off.
    #[must_use]
    pub fn passthrough(mut self, on: bool) -> Self {
        self.inner.settings.passthrough = on;
        self
    }

    /// Adds a routing rule (tried in the order added; the first that holds wins).
    #[must_use]
    pub fn rule(mut self, rule: Rule) -> Self {
        self.inner.routing.rules.push(rule);
        self
    }

    /// Adds a weighted split under the virtual id `id`: each request picks one arm
    /// (`target`, `weight`), sticky per `user`.
    #[must_use]
    pub fn split<I, S>(mut self, id: impl Into<Arc<str>>, arms: I) -> Self
    where
        I: IntoIterator<Item = (S, u32)>,
        S: Into<Arc<str>>,
    {
        let id = id.into();
        let split = Split {
            id: id.clone(),
            arms: arms.into_iter().map(|(t, w)| (t.into(), w)).collect(),
        };
        if self
            .inner
            .routing
            .splits
            .insert(id.clone(), split)
            .is_some()
        {
            self.errors
                .push(format!("routing.splits.{id}: duplicate split"));
        }
        self
    }

    /// The id of the auto model (default `auto`); an empty id turns it off.
    #[must_use]
    pub fn auto_model(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        self.inner.routing.auto = (!id.is_empty()).then(|| id.into());
        self.inner.routing.auto_explicit = true;
        self
    }

    /// The models the auto model chooses from (default: every model).
    #[must_use]
    pub fn auto_pool<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.inner.routing.auto_pool = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Validates and builds.
    pub fn build(mut self) -> Result<Catalog, Error> {
        let inner = &self.inner;
        let routing = &inner.routing;
        let is_model = |id: &str| inner.by_id.contains_key(id);
        let is_alias = |id: &str| inner.aliases.contains_key(id);
        let is_auto = |id: &str| routing.auto.as_deref() == Some(id);
        let known = |id: &str| {
            is_model(id)
                || is_alias(id)
                || routing.splits.contains_key(id)
                || is_auto(id)
                || (inner.settings.passthrough
                    && id
                        .split_once('/')
                        .is_some_and(|(p, _)| inner.providers.contains_key(p)))
        };
        let errors = &mut self.errors;
        for (alias, target) in &inner.aliases {
            if !known(target) {
                errors.push(format!(
                    "aliases.{alias}: target `{target}` is not a known model"
                ));
            }
        }
        if let Some(auto) = routing.auto.as_deref() {
            let taken = is_model(auto) || is_alias(auto) || routing.splits.contains_key(auto);
            if routing.auto_explicit && taken {
                errors.push(format!(
                    "routing.auto: `{auto}` is already a model, alias or split"
                ));
            }
        }
        for id in &routing.auto_pool {
            if !is_model(id) {
                errors.push(format!("routing.auto_pool: `{id}` is not a model"));
            }
        }
        for (id, split) in &routing.splits {
            if is_model(id) || is_alias(id) {
                errors.push(format!(
                    "routing.splits.{id}: `{id}` is already a model or alias"
                ));
            }
            if split.total_weight() == 0 {
                errors.push(format!(
                    "routing.splits.{id}.weights: at least one weight must be positive"
                ));
            }
            for (target, _) in &split.arms {
                if !known(target) || routing.splits.contains_key(&**target) || is_auto(target) {
                    errors.push(format!(
                        "routing.splits.{id}.weights: `{target}` is not a known model or alias"
                    ));
                }
            }
        }
        for (i, rule) in routing.rules.iter().enumerate() {
            if !rule.has_condition() {
                errors.push(format!(
                    "routing.rules[{i}]: set `task` or `min_prompt_tokens`"
                ));
            }
            if !known(&rule.target) {
                errors.push(format!(
                    "routing.rules[{i}].target: `{}` is not a known model, alias or split",
                    rule.target
                ));
            }
            for id in &rule.applies_to {
                if !known(id) {
                    errors.push(format!(
                        "routing.rules[{i}].applies_to: `{id}` is not a known model, alias, split or the auto id"
                    ));
                }
            }
            if rule.applies_to.is_empty() && routing.auto.is_none() {
                errors.push(format!(
                    "routing.rules[{i}].applies_to: required when the auto model is off"
                ));
            }
        }
        if !self.errors.is_empty() {
            self.errors.sort();
            return Err(config_error(self.errors.join("; ")));
        }
        let routing = &mut self.inner.routing;
        let auto = routing.auto.clone();
        routing.rule_ids = routing
            .rules
            .iter()
            .flat_map(|r| {
                let ids: Vec<Arc<str>> = if r.applies_to.is_empty() {
                    auto.iter().cloned().collect()
                } else {
                    r.applies_to.clone()
                };
                ids
            })
            .collect();
        Ok(Catalog {
            inner: Arc::new(self.inner),
        })
    }
}
