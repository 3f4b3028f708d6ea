//! [`Health`]: per-target outcomes and a latency EWMA, shared by every clone of a stack.
//!
//! [`Fallback`](crate::fallback::Fallback) writes it; [`ModelResolve`](crate::resolve::ModelResolve)
//! reads it to skip targets that are cooling down and to sort by latency. A target (provider +
//! upstream model) that fails with a retryable error `failure_threshold` times in a row cools
//! down for `cooldown`; after that one half-open probe request decides: success closes the
//! circuit, failure opens it again. Client errors and client hang-ups never count.
//!
//! The lock is a plain mutex held for a few map operations, never across an `.await`.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::ext::Candidate;
use crate::ErrorKind;

/// Health settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthConfig {
    /// Consecutive retryable failures that cool a target down (default 3).
    pub failure_threshold: u32,
    /// How long a target cools down (default 30 s).
    pub cooldown: Duration,
    /// Weight of the newest latency sample in the EWMA (default 0.2).
    pub ewma_alpha: f64,
    /// Targets tracked at most (default 10,000). Pass-through ids come from clients, so the
    /// map is bounded: past the bound a healthy entry is evicted for a new one, and an outcome
    /// is dropped when every entry is cooling down.
    pub max_targets: usize,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            cooldown: Duration::from_secs(30),
            ewma_alpha: 0.2,
            max_targets: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Circuit {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    circuit: Circuit,
    latency_ewma: Option<f64>,
}

impl Default for Entry {
    fn default() -> Self {
        Self {
            failures: 0,
            circuit: Circuit::Closed,
            latency_ewma: None,
        }
    }
}

/// Shared per-target health. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    config: HealthConfig,
    map: Mutex<Targets>,
    /// Entries whose circuit is not closed, changed only under the map's lock: while it is 0
    /// every target is healthy and [`Health::state`] answers without the lock or a hash.
    unhealthy: AtomicUsize,
}

impl Inner {
    /// Moves `e`'s circuit to `to`, keeping the count of circuits that are not closed.
    fn set(&self, e: &mut Entry, to: Circuit) {
        let (was, is) = (e.circuit != Circuit::Closed, to != Circuit::Closed);
        e.circuit = to;
        match (was, is) {
            (false, true) => {
                self.unhealthy.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.unhealthy.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// What [`Health::state`] says about a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Serving normally.
    Healthy,
    /// Cooled down; a probe may go now.
    Probe,
    /// Cooling down (or a probe is in flight): skip it.
    CoolingDown,
}

/// Per-target entries. A target's names are hashed once per lookup (SipHash with a random
/// key, since pass-through model ids come from clients) and the map is keyed by that hash; the
/// few targets that share a hash sit side by side. A slot (hash, position, generation) names
/// an entry until the next eviction: a [`Permit`] keeps the slot, not the names, and an
/// outcome whose slot an eviction invalidated is dropped.
#[derive(Debug, Default)]
struct Targets {
    hasher: RandomState,
    map: HashMap<u64, Vec<(TargetKey, Entry)>, BuildHasherDefault<Prehashed>>,
    /// Entries in the map.
    len: usize,
    /// Evictions so far.
    generation: u64,
}

/// A target's names, as the map holds them.
#[derive(Debug, Clone)]
struct TargetKey {
    provider: Arc<str>,
    model: Arc<str>,
}

impl TargetKey {
    fn is(&self, other: &Self) -> bool {
        self.provider == other.provider && self.model == other.model
    }
}

/// Where a permit's outcome goes.
#[derive(Debug)]
enum Slot {
    /// An entry that exists: its hash, its position among the entries sharing it, and the
    /// generation the position belongs to.
    At(u64, usize, u64),
    /// A target without an entry yet: made by the first outcome that counts.
    New(u64, TargetKey),
}

impl Targets {
    fn hash(&self, c: &Candidate) -> u64 {
        self.hasher
            .hash_one((&*c.provider.name, &*c.upstream_model))
    }

    /// The slot of `c`'s entry, if it has one (borrows the names: nothing is cloned).
    fn find(&self, c: &Candidate, hash: u64) -> Option<usize> {
        self.map
            .get(&hash)?
            .iter()
            .position(|(k, _)| *k.provider == *c.provider.name && *k.model == *c.upstream_model)
    }

    fn get(&self, c: &Candidate) -> Option<&Entry> {
        let hash = self.hash(c);
        let at = self.find(c, hash)?;
        self.map
            .get(&hash)
            .and_then(|same| same.get(at))
            .map(|(_, e)| e)
    }

    fn at_mut(&mut self, hash: u64, at: usize, generation: u64) -> Option<&mut Entry> {
        if generation != self.generation {
            return None;
        }
        self.map
            .get_mut(&hash)
            .and_then(|same| same.get_mut(at))
            .map(|(_, e)| e)
    }

    /// The entry of a slot, made if it is not there yet (the only place the map grows).
    fn entry(&mut self, slot: &Slot, max: usize) -> Option<&mut Entry> {
        match slot {
            Slot::At(hash, at, generation) => self.at_mut(*hash, *at, *generation),
            Slot::New(hash, key) => {
                let known = self
                    .map
                    .get(hash)
                    .and_then(|same| same.iter().position(|(k, _)| k.is(key)));
                let at = match known {
                    Some(at) => at,
                    None => {
                        if self.len >= max && !self.evict_one() {
                            return None;
                        }
                        let same = self.map.entry(*hash).or_default();
                        same.push((key.clone(), Entry::default()));
                        self.len += 1;
                        same.len() - 1
                    }
                };
                self.map
                    .get_mut(hash)
                    .and_then(|same| same.get_mut(at))
                    .map(|(_, e)| e)
            }
        }
    }

    /// Removes one entry whose circuit is closed (one that never failed if there is one);
    /// `false` when every entry is cooling down. Linear in the (bounded) number of entries,
    /// and only when the map is full.
    fn evict_one(&mut self) -> bool {
        let mut pick = None;
        'scan: for (hash, same) in &self.map {
            for (at, (_, e)) in same.iter().enumerate() {
                if e.circuit == Circuit::Closed {
                    pick = Some((*hash, at));
                    if e.failures == 0 {
                        break 'scan;
                    }
                }
            }
        }
        let Some((hash, at)) = pick else {
            return false;
        };
        if let Some(same) = self.map.get_mut(&hash) {
            same.swap_remove(at);
            if same.is_empty() {
                self.map.remove(&hash);
            }
        }
        self.len -= 1;
        self.generation += 1;
        true
    }

    /// The entry of a slot if there is one (a `New` slot's, if another request made it).
    fn existing(&mut self, slot: &Slot) -> Option<&mut Entry> {
        match slot {
            Slot::At(hash, at, generation) => self.at_mut(*hash, *at, *generation),
            Slot::New(hash, key) => self
                .map
                .get_mut(hash)?
                .iter_mut()
                .find(|(k, _)| k.is(key))
                .map(|(_, e)| e),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.values().map(Vec::len).sum()
    }
}

/// The hasher of a map whose keys are already hashes.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; this keeps any other input well mixed anyway.
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Health {
    /// Health with these settings.
    pub fn new(config: HealthConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                map: Mutex::new(Targets::default()),
                unhealthy: AtomicUsize::new(0),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> HealthConfig {
        self.inner.config
    }

    fn map(&self) -> MutexGuard<'_, Targets> {
        // A poisoned map only means a panic elsewhere mid-update; the data is still usable.
        self.inner
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state of a target now.
    pub fn state(&self, c: &Candidate) -> TargetState {
        if self.inner.unhealthy.load(Ordering::Relaxed) == 0 {
            return TargetState::Healthy;
        }
        let map = self.map();
        let Some(e) = map.get(c) else {
            return TargetState::Healthy;
        };
        match e.circuit {
            Circuit::Closed => TargetState::Healthy,
            Circuit::Open { until } if Instant::now() >= until => TargetState::Probe,
            Circuit::HalfOpen { probing: false } => TargetState::Probe,
            Circuit::Open { .. } | Circuit::HalfOpen { probing: true } => TargetState::CoolingDown,
        }
    }

    /// The latency EWMA of a target, if it has served before.
    pub fn latency(&self, c: &Candidate) -> Option<Duration> {
        self.map()
            .get(c)
            .and_then(|e| e.latency_ewma)
            .map(Duration::from_secs_f64)
    }

    /// Asks to send a request to a target. `None` while it cools down or while another
    /// request probes it; the permit records the outcome (dropping it unrecorded, e.g. on a
    /// client hang-up, releases a probe without counting anything).
    pub fn acquire(&self, c: &Candidate) -> Option<Permit> {
        let mut map = self.map();
        let hash = map.hash(c);
        // A target without an entry is healthy; entries are made by outcomes, so requests for
        // models that never answer (e.g. made-up pass-through ids) do not grow the map.
        let Some(at) = map.find(c, hash) else {
            drop(map);
            let key = TargetKey {
                provider: c.provider.name.clone(),
                model: c.upstream_model.clone(),
            };
            return Some(self.permit(Slot::New(hash, key), false));
        };
        let generation = map.generation;
        let slot = Slot::At(hash, at, generation);
        let e = map.at_mut(hash, at, generation)?;
        let probe = match e.circuit {
            Circuit::Closed => false,
            Circuit::Open { until } if Instant::now() >= until => {
                self.inner.set(e, Circuit::HalfOpen { probing: true });
                true
            }
            Circuit::HalfOpen { probing: false } => {
                self.inner.set(e, Circuit::HalfOpen { probing: true });
                true
            }
            Circuit::Open { .. } | Circuit::HalfOpen { probing: true } => return None,
        };
        drop(map);
        Some(self.permit(slot, probe))
    }

    fn permit(&self, slot: Slot, probe: bool) -> Permit {
        Permit {
            health: self.clone(),
            slot,
            probe,
            done: false,
        }
    }
}

/// Permission to try one target; records its outcome in [`Health`].
#[derive(Debug)]
pub struct Permit {
    health: Health,
    slot: Slot,
    probe: bool,
    done: bool,
}

impl Permit {
    /// Whether this request is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The target answered; `latency` is the time to its answer (or first token).
    pub fn success(mut self, latency: Duration) {
        self.done = true;
        let alpha = self.health.inner.config.ewma_alpha;
        let max = self.health.inner.config.max_targets;
        let mut map = self.health.map();
        let Some(e) = map.entry(&self.slot, max) else {
            return;
        };
        e.failures = 0;
        self.health.inner.set(e, Circuit::Closed);
        let sample = latency.as_secs_f64();
        e.latency_ewma = Some(match e.latency_ewma {
            Some(old) => old + alpha * (sample - old),
            None => sample,
        });
    }

    /// The target failed with `kind`. Only retryable kinds count against it.
    pub fn failure(mut self, kind: ErrorKind) {
        self.done = true;
        let cfg = self.health.inner.config;
        let max = cfg.max_targets;
        let mut map = self.health.map();
        if !kind.is_retryable() {
            if self.probe {
                if let Some(e) = map.existing(&self.slot) {
                    self.health
                        .inner
                        .set(e, Circuit::HalfOpen { probing: false });
                }
            }
            return;
        }
        let Some(e) = map.entry(&self.slot, max) else {
            return;
        };
        e.failures = e.failures.saturating_add(1);
        if self.probe || e.failures >= cfg.failure_threshold {
            let until = Instant::now() + cfg.cooldown;
            self.health.inner.set(e, Circuit::Open { until });
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.probe {
            let mut map = self.health.map();
            if let Some(e) = map.existing(&self.slot) {
                self.health
                    .inner
                    .set(e, Circuit::HalfOpen { probing: false });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Provider, ProviderKind};

    fn cand() -> Candidate {
        let p = Arc::new(Provider::new("p", ProviderKind::Openai, "http://x/v1"));
        Candidate::passthrough("p/m".into(), p, "m".into())
    }

    #[tokio::test(start_paused = true)]
    async fn cools_down_after_threshold_then_probes() {
        let h = Health::new(HealthConfig {
            failure_threshold: 2,
            cooldown: Duration::from_secs(10),
            ewma_alpha: 0.5,
            ..HealthConfig::default()
        });
        let c = cand();
        h.acquire(&c).unwrap().failure(ErrorKind::Upstream);
        assert_eq!(h.state(&c), TargetState::Healthy);
        h.acquire(&c).unwrap().failure(ErrorKind::Overloaded);
        assert_eq!(h.state(&c), TargetState::CoolingDown);
        assert!(h.acquire(&c).is_none());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(h.state(&c), TargetState::Probe);
        let probe = h.acquire(&c).unwrap();
        assert!(probe.is_probe());
        assert!(h.acquire(&c).is_none(), "one probe at a time");
        probe.failure(ErrorKind::Timeout);
        assert_eq!(h.state(&c), TargetState::CoolingDown);
        tokio::time::advance(Duration::from_secs(10)).await;
        h.acquire(&c).unwrap().success(Duration::from_millis(100));
        assert_eq!(h.state(&c), TargetState::Healthy);
        assert_eq!(h.latency(&c), Some(Duration::from_millis(100)));
        assert_eq!(h.inner.unhealthy.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn unhealthy_count_follows_every_circuit() {
        let h = Health::new(HealthConfig {
            failure_threshold: 1,
            cooldown: Duration::from_secs(10),
            ewma_alpha: 0.5,
            ..HealthConfig::default()
        });
        let p = Arc::new(Provider::new("p", ProviderKind::Openai, "http://x/v1"));
        let a = Candidate::passthrough("p/a".into(), p.clone(), "a".into());
        let b = Candidate::passthrough("p/b".into(), p, "b".into());
        let count = |h: &Health| h.inner.unhealthy.load(Ordering::Relaxed);
        h.acquire(&a).unwrap().failure(ErrorKind::Upstream);
        h.acquire(&b).unwrap().failure(ErrorKind::Upstream);
        assert_eq!(count(&h), 2);
        assert_eq!(h.state(&a), TargetState::CoolingDown);
        tokio::time::advance(Duration::from_secs(10)).await;
        // A probe that hangs up, one that fails with a client error: still not closed.
        drop(h.acquire(&a).unwrap());
        h.acquire(&a)
            .unwrap()
            .failure(ErrorKind::UpstreamInvalidRequest);
        assert_eq!(count(&h), 2);
        h.acquire(&a).unwrap().success(Duration::from_millis(5));
        assert_eq!(count(&h), 1);
        assert_eq!(h.state(&b), TargetState::Probe);
        h.acquire(&b).unwrap().success(Duration::from_millis(5));
        assert_eq!(count(&h), 0);
        assert_eq!(h.state(&a), TargetState::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_and_hangups_do_not_count() {
        let h = Health::new(HealthConfig {
            failure_threshold: 1,
            ..HealthConfig::default()
        });
        let c = cand();
        h.acquire(&c)
            .unwrap()
            .failure(ErrorKind::UpstreamInvalidRequest);
        assert_eq!(h.state(&c), TargetState::Healthy);
        h.acquire(&c).unwrap().failure(ErrorKind::Upstream);
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(h.acquire(&c).unwrap()); // a probe whose client hung up
        assert_eq!(h.state(&c), TargetState::Probe);
    }

    #[test]
    fn the_map_is_bounded_and_keeps_cooling_targets() {
        let h = Health::new(HealthConfig {
            max_targets: 8,
            ..HealthConfig::default()
        });
        let p = Arc::new(Provider::new("p", ProviderKind::Openai, "http://x/v1"));
        let c = |i: usize| {
            Candidate::passthrough(format!("p/m{i}").into(), p.clone(), format!("m{i}").into())
        };
        // A target cooling down survives any number of newcomers.
        for _ in 0..3 {
            h.acquire(&c(0)).unwrap().failure(ErrorKind::Upstream);
        }
        assert_eq!(h.state(&c(0)), TargetState::CoolingDown);
        // A permit taken before evictions records nothing into a reused position.
        let stale = h.acquire(&c(1)).unwrap();
        h.acquire(&c(1)).unwrap().failure(ErrorKind::Upstream);
        for i in 2..10_000 {
            h.acquire(&c(i)).unwrap().failure(ErrorKind::Upstream);
            assert!(h.map().len() <= 8);
        }
        stale.failure(ErrorKind::Upstream);
        assert_eq!(h.state(&c(0)), TargetState::CoolingDown);
        assert_eq!(h.map().len(), 8);
        // Every entry cooling down: new outcomes are dropped, not stored.
        let full = Health::new(HealthConfig {
            max_targets: 2,
            failure_threshold: 1,
            ..HealthConfig::default()
        });
        for i in 0..5 {
            full.acquire(&c(i)).unwrap().failure(ErrorKind::Upstream);
        }
        assert_eq!(full.map().len(), 2);
        assert_eq!(full.state(&c(0)), TargetState::CoolingDown);
        assert_eq!(full.state(&c(4)), TargetState::Healthy);
    }

    #[test]
    fn only_outcomes_that_count_make_entries() {
        let h = Health::default();
        let entries = |h: &Health| h.map().len();
        let p = Arc::new(Provider::new("p", ProviderKind::Openai, "http://x/v1"));
        for i in 0..100 {
            let c =
                Candidate::passthrough(format!("p/m{i}").into(), p.clone(), format!("m{i}").into());
            drop(h.acquire(&c).unwrap());
            h.acquire(&c)
                .unwrap()
                .failure(ErrorKind::UpstreamInvalidRequest);
        }
        assert_eq!(entries(&h), 0, "unknown models must not grow the map");
        h.acquire(&cand()).unwrap().failure(ErrorKind::Upstream);
        h.acquire(&cand())
            .unwrap()
            .success(Duration::from_millis(5));
        assert_eq!(entries(&h), 1);
    }

    #[test]
    fn latency_ewma() {
        let h = Health::new(HealthConfig {
            ewma_alpha: 0.5,
            ..HealthConfig::default()
        });
        let c = cand();
        h.acquire(&c).unwrap().success(Duration::from_millis(100));
        h.acquire(&c).unwrap().success(Duration::from_millis(300));
        assert_eq!(h.latency(&c), Some(Duration::from_millis(200)));
    }
}
