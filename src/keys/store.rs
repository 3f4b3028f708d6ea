//! Where the per-key rate limits are counted: the [`RateLimitStore`] trait and its in-process
//! implementation, [`MemoryRateLimitStore`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::Error;

/// Which of a key's per-minute limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

impl LimitKind {
    /// `requests` or `tokens` (the last part of a Redis bucket's key, a log field).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
        }
    }
}

/// An amount to take from one of a caller's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    /// Which bucket.
    pub kind: LimitKind,
    /// The bucket's capacity, refilled continuously over a minute.
    pub per_minute: u32,
    /// How much to take.
    pub amount: u64,
}

/// A store's answer to [`RateLimitStore::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Every draw was taken.
    Granted,
    /// Nothing was taken: this bucket lacks its amount for this long.
    Refused {
        /// The bucket that refused (of several, the one with the longest wait).
        kind: LimitKind,
        /// How long until it holds the amount (the `Retry-After`).
        retry_after: Duration,
    },
}

/// Where per-key rate limits are counted: token buckets named by caller and [`LimitKind`].
///
/// A bucket holds at most `per_minute`, starts full and refills continuously at
/// `per_minute / 60` per second. [`MemoryRateLimitStore`] (the default) counts for one gateway
/// instance; `RedisRateLimitStore` (feature `redis`) for every instance that shares its Redis.
///
/// Implementations must make `acquire` atomic (all draws or none), bound the time each call
/// may take (a store that errs or times out is reported with `Err`, and
/// [`ClientKeys`](super::ClientKeys) then counts in its own memory: see the
/// [module docs](super)), and return `Box::pin(async move { … })` futures.
pub trait RateLimitStore: fmt::Debug + Send + Sync + 'static {
    /// Takes every draw (at most one per kind) from `caller`'s buckets, or none of them: a
    /// draw larger than its bucket's content refuses the lot (and one larger than
    /// `per_minute` is refused with a wait of a minute).
    fn acquire<'a>(
        &'a self,
        caller: &'a str,
        draws: &'a [Draw],
    ) -> BoxFuture<'a, Result<Decision, Error>>;

    /// Takes `delta` more from `caller`'s bucket of `kind` (a negative `delta` gives back, up
    /// to `per_minute`). A bucket may go below zero: that debt is repaid by the refill before
    /// anything more is granted.
    fn adjust<'a>(
        &'a self,
        caller: &'a str,
        kind: LimitKind,
        per_minute: u32,
        delta: i64,
    ) -> BoxFuture<'a, Result<(), Error>>;
}

/// A token bucket refilled continuously over a minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Brings the bucket to `now`.
    fn refill(&mut self, capacity: f64, now: Instant) {
        let rate = capacity / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + rate * elapsed).min(capacity);
        self.at = now;
    }

    /// How long until the bucket holds `n` (`None`: it does now).
    fn wait_for(&self, n: f64, capacity: f64) -> Option<Duration> {
        if n > capacity {
            return Some(Duration::from_secs(60));
        }
        if self.tokens >= n {
            return None;
        }
        Some(wait(n - self.tokens, capacity / 60.0))
    }
}

/// Time to refill `missing` at `rate` per second (a minute when the rate is 0, a day at most).
fn wait(missing: f64, rate: f64) -> Duration {
    const DAY: Duration = Duration::from_secs(86_400);
    if rate <= 0.0 {
        return Duration::from_secs(60);
    }
    Duration::try_from_secs_f64(missing / rate).map_or(DAY, |d| d.min(DAY))
}

/// The in-process [`RateLimitStore`]: one gateway instance's token buckets behind a mutex.
/// [`ClientKeys`](super::ClientKeys) uses one by default (synchronously: no allocation per
/// request), and as its fallback when a shared store fails.
#[derive(Debug, Default)]
pub struct MemoryRateLimitStore {
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    requests: HashMap<Box<str>, Bucket>,
    tokens: HashMap<Box<str>, Bucket>,
}

impl Buckets {
    /// The caller's bucket of `kind`, refilled to `now` (a new one is full).
    fn get(&mut self, caller: &str, kind: LimitKind, capacity: f64, now: Instant) -> &mut Bucket {
        let map = match kind {
            LimitKind::Requests => &mut self.requests,
            LimitKind::Tokens => &mut self.tokens,
        };
        if !map.contains_key(caller) {
            map.insert(
                caller.into(),
                Bucket {
                    tokens: capacity,
                    at: now,
                },
            );
        }
        let b = map.get_mut(caller).expect("inserted above");
        b.refill(capacity, now);
        b
    }
}

impl MemoryRateLimitStore {
    /// Empty buckets.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`RateLimitStore::acquire`], now.
    pub(crate) fn acquire_now(&self, caller: &str, draws: &[Draw]) -> Decision {
        let now = Instant::now();
        let mut buckets = self.lock();
        let mut refused: Option<(LimitKind, Duration)> = None;
        for d in draws {
            let cap = f64::from(d.per_minute);
            if let Some(w) = buckets
                .get(caller, d.kind, cap, now)
                .wait_for(d.amount as f64, cap)
            {
                if refused.is_none_or(|(_, longest)| w > longest) {
                    refused = Some((d.kind, w));
                }
            }
        }
        if let Some((kind, retry_after)) = refused {
            return Decision::Refused { kind, retry_after };
        }
        for d in draws {
            let cap = f64::from(d.per_minute);
            buckets.get(caller, d.kind, cap, now).tokens -= d.amount as f64;
        }
        Decision::Granted
    }

    /// [`RateLimitStore::adjust`], now.
    pub(crate) fn adjust_now(&self, caller: &str, kind: LimitKind, per_minute: u32, delta: i64) {
        let cap = f64::from(per_minute);
        let mut buckets = self.lock();
        let b = buckets.get(caller, kind, cap, Instant::now());
        b.tokens = (b.tokens - delta as f64).min(cap);
    }
}

impl RateLimitStore for MemoryRateLimitStore {
    fn acquire<'a>(
        &'a self,
        caller: &'a str,
        draws: &'a [Draw],
    ) -> BoxFuture<'a, Result<Decision, Error>> {
        Box::pin(std::future::ready(Ok(self.acquire_now(caller, draws))))
    }

    fn adjust<'a>(
        &'a self,
        caller: &'a str,
        kind: LimitKind,
        per_minute: u32,
        delta: i64,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.adjust_now(caller, kind, per_minute, delta);
        Box::pin(std::future::ready(Ok(())))
    }
}
