//! Routing: routing rules, weighted splits and the auto model.

use std::sync::Arc;

use super::Table;

/// A routing rule ([`CatalogBuilder::rule`], TOML `[[routing.rules]]`): a request for one of
/// the ids it applies to goes to `target` instead when every condition set holds.
///
/// [`CatalogBuilder::rule`]: super::CatalogBuilder::rule
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Rule {
    /// Holds when the request's task (`x-switchboard-task` header, else `metadata.task`) is
    /// this one.
    pub task: Option<Arc<str>>,
    /// Holds when the estimated prompt has at least this many tokens.
    pub min_prompt_tokens: Option<u64>,
    /// The requested ids (models, aliases, splits, the auto id) the rule may reroute; empty:
    /// only the auto id.
    pub applies_to: Vec<Arc<str>>,
    /// Where matching requests go: a model, an alias, a split or the auto id.
    pub target: Arc<str>,
}

impl Rule {
    /// A rule sending matching requests to `target`; add at least one condition.
    pub fn new(target: impl Into<Arc<str>>) -> Self {
        Self {
            task: None,
            min_prompt_tokens: None,
            applies_to: Vec::new(),
            target: target.into(),
        }
    }

    /// Holds for requests of this task.
    #[must_use]
    pub fn task(mut self, task: impl Into<Arc<str>>) -> Self {
        self.task = Some(task.into());
        self
    }

    /// Holds for prompts of at least `tokens` estimated tokens.
    #[must_use]
    pub fn min_prompt_tokens(mut self, tokens: u64) -> Self {
        self.min_prompt_tokens = Some(tokens);
        self
    }

    /// The requested ids the rule may reroute (default: only the auto id).
    #[must_use]
    pub fn applies_to<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.applies_to = ids.into_iter().map(Into::into).collect();
        self
    }

    pub(super) fn has_condition(&self) -> bool {
        self.task.is_some() || self.min_prompt_tokens.is_some()
    }
}

/// A weighted split under a virtual model id (A/B tests, gradual rollouts):
/// [`CatalogBuilder::split`], TOML `[routing.splits.<id>] weights = { … }`.
///
/// [`CatalogBuilder::split`]: super::CatalogBuilder::split
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Split {
    /// The virtual id clients request.
    pub id: Arc<str>,
    /// Targets (models or aliases) and their weights, in a fixed order (the builder's; TOML
    /// sorts them by name). A draw modulo the total weight falls on the arm whose cumulative
    /// range holds it, so a user keeps an arm while the weights stay the same.
    pub arms: Vec<(Arc<str>, u32)>,
}

impl Split {
    /// The sum of the weights.
    pub fn total_weight(&self) -> u64 {
        self.arms.iter().map(|(_, w)| u64::from(*w)).sum()
    }

    /// The arm a uniformly drawn number falls on (`draw` is reduced modulo the total weight).
    pub fn pick(&self, draw: u64) -> Option<&str> {
        let total = self.total_weight();
        if total == 0 {
            return None;
        }
        let mut point = draw % total;
        for (target, w) in &self.arms {
            let w = u64::from(*w);
            if point < w {
                return Some(target);
            }
            point -= w;
        }
        None
    }
}

/// The default id of the "cheapest candidate able to serve" model.
pub const DEFAULT_AUTO_MODEL: &str = "auto";

/// Routing configuration: the auto model, rules and splits (TOML `[routing]`).
#[derive(Debug, Clone)]
pub struct Routing {
    pub(super) auto: Option<Arc<str>>,
    pub(super) auto_explicit: bool,
    pub(super) auto_pool: Vec<Arc<str>>,
    pub(super) rules: Vec<Rule>,
    pub(super) rule_ids: std::collections::HashSet<Arc<str>, foldhash::fast::RandomState>,
    pub(super) splits: Table<Arc<str>, Split>,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            auto: Some(DEFAULT_AUTO_MODEL.into()),
            auto_explicit: false,
            auto_pool: Vec::new(),
            rules: Vec::new(),
            rule_ids: std::collections::HashSet::default(),
            splits: Table::default(),
        }
    }
}

impl Routing {
    /// The id of the auto model, if on (default `auto`).
    pub fn auto_model(&self) -> Option<&str> {
        self.auto.as_deref()
    }

    /// The models the auto model chooses from; empty means every model.
    pub fn auto_pool(&self) -> &[Arc<str>] {
        &self.auto_pool
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether some rule may reroute a request for `id`.
    pub fn has_rules_for(&self, id: &str) -> bool {
        !self.rule_ids.is_empty() && self.rule_ids.contains(id)
    }

    /// Whether `rule` may reroute a request for `id`.
    pub fn rule_applies_to(&self, rule: &Rule, id: &str) -> bool {
        if rule.applies_to.is_empty() {
            self.auto.as_deref() == Some(id)
        } else {
            rule.applies_to.iter().any(|a| &**a == id)
        }
    }

    /// A split by its virtual id.
    pub fn split(&self, id: &str) -> Option<&Split> {
        self.splits.get(id)
    }

    /// All splits (in no particular order).
    pub fn splits(&self) -> impl Iterator<Item = &Split> {
        self.splits.values()
    }
}
