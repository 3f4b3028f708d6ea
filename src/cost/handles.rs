//! Metric handles per label set, bounded: pass-through model ids come from clients.

use super::*;

/// Metric handles per label set, registered once: building metric keys on every request
/// costs more than recording. Bounded, since pass-through model ids come from clients.
#[derive(Clone, Default)]
pub(super) struct HandleCache {
    pub(super) state: Arc<Mutex<Labels>>,
}

#[derive(Default)]
pub(super) struct Labels {
    pub(super) map: HashMap<(Arc<str>, Arc<str>, &'static str), Arc<Handles>>,
    /// Model ids without catalog prices that have a label of their own.
    pub(super) own: HashSet<Arc<str>>,
    /// `<provider>/other`, per provider.
    pub(super) other: HashMap<Arc<str>, Arc<str>>,
    /// The provider and model of requests no provider served.
    pub(super) none: Option<Arc<str>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) struct Handles {
    pub(super) requests: metrics::Counter,
    pub(super) duration: metrics::Histogram,
    pub(super) ttft: metrics::Histogram,
    pub(super) overhead: metrics::Histogram,
    /// input, output, cached, cache_write, reasoning
    pub(super) tokens: [metrics::Counter; 5],
    pub(super) cost: metrics::Counter,
    pub(super) savings: metrics::Counter,
}

pub(super) const TOKEN_TYPES: [&str; 5] = ["input", "output", "cached", "cache_write", "reasoning"];

impl Handles {
    pub(super) fn register(labels: &[metrics::Label]) -> Self {
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

pub(super) const NONE: &str = "none";

impl HandleCache {
    /// The handles for a request served by `served` (`listed`: the target has catalog
    /// prices, so its model id is not a client's choice).
    pub(super) fn get(
        &self,
        served: Option<&ServedBy>,
        listed: bool,
        cache: &'static str,
    ) -> Arc<Handles> {
        let mut st = lock(&self.state);
        let Some(s) = served else {
            let none = st.none.get_or_insert_with(|| Arc::from(NONE)).clone();
            return st.handles((none.clone(), none, cache));
        };
        let key = (s.provider.clone(), s.model.clone(), cache);
        if let Some(h) = st.map.get(&key) {
            return h.clone();
        }
        let own_label = if listed {
            st.map.len() < MAX_CACHED_LABEL_SETS
        } else if st.own.contains(&s.model) {
            true
        } else if st.own.len() < MAX_PASSTHROUGH_MODEL_LABELS
            && st.map.len() < MAX_CACHED_LABEL_SETS
        {
            st.own.insert(s.model.clone());
            true
        } else {
            false
        };
        if own_label {
            return st.handles(key);
        }
        let other = st
            .other
            .entry(s.provider.clone())
            .or_insert_with(|| Arc::from(format!("{}/other", s.provider)))
            .clone();
        st.handles((s.provider.clone(), other, cache))
    }
}

impl Labels {
    pub(super) fn handles(&mut self, key: (Arc<str>, Arc<str>, &'static str)) -> Arc<Handles> {
        if let Some(h) = self.map.get(&key) {
            return h.clone();
        }
        let labels = [
            metrics::Label::new("provider", metrics::SharedString::from(key.0.clone())),
            metrics::Label::new("model", metrics::SharedString::from(key.1.clone())),
            metrics::Label::new("cache", key.2),
        ];
        let h = Arc::new(Handles::register(&labels));
        // `<provider>/other` and `none` sets are few (one per provider): always kept.
        self.map.insert(key, h.clone());
        h
    }
}
