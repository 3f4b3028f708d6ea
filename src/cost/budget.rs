//! Spend budgets per [`CallerKey`](crate::ext::CallerKey) over UTC calendar windows.
//!
//! Before a call the CostMeter reserves an estimate atomically (`reserve` fails when spent +
//! reserved + estimate would pass the limit); after it the reservation is settled with the
//! real cost. Concurrent requests can therefore overspend by no more than the difference
//! between their estimates and their real costs.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use super::price::Picodollars;

/// The calendar window a budget covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// One UTC day.
    Day,
    /// One UTC calendar month.
    Month,
    /// Forever.
    Total,
}

impl Window {
    /// The id of the window containing `unix_secs` (`d:2026-11-21`, `m:2026-11`, `total`).
    pub fn id_at(self, unix_secs: u64) -> String {
        let days = unix_secs / 86_400;
        let (y, m, d) = civil_from_days(days as i64);
        match self {
            Self::Day => format!("d:{y:04}-{m:02}-{d:02}"),
            Self::Month => format!("m:{y:04}-{m:02}"),
            Self::Total => "total".to_owned(),
        }
    }

    /// The id of the current window.
    pub fn current_id(self) -> String {
        self.id_at(crate::openai::unix_now())
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A spend limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The limit.
    pub limit: Picodollars,
    /// The window it applies to.
    pub window: Window,
}

impl Budget {
    /// A limit of `usd` per `window`.
    pub fn usd(usd: f64, window: Window) -> Self {
        Self {
            limit: Picodollars::from_usd(usd),
            window,
        }
    }
}

/// The budget is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    /// Spent plus reserved in the window.
    pub committed: Picodollars,
    /// The limit.
    pub limit: Picodollars,
}

/// Where spend is kept. Implementations must make `reserve` atomic.
///
/// The methods return [`futures_util::future::BoxFuture`]s (`Box::pin(async move { … })`).
pub trait BudgetStore: fmt::Debug + Send + Sync + 'static {
    /// Adds `amount` to the window's committed spend unless that would pass `limit`.
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        window: &'a str,
        limit: Picodollars,
        amount: Picodollars,
    ) -> BoxFuture<'a, Result<(), Exhausted>>;

    /// Replaces a reservation with the real cost.
    fn settle<'a>(
        &'a self,
        key: &'a str,
        window: &'a str,
        reserved: Picodollars,
        actual: Picodollars,
    ) -> BoxFuture<'a, ()>;

    /// Committed spend (spent + reserved) in a window.
    fn committed<'a>(&'a self, key: &'a str, window: &'a str) -> BoxFuture<'a, Picodollars>;
}

/// The in-process store (one gateway instance).
///
/// Keeps one entry per caller and window. When the first request of a new day (or month)
/// arrives, every caller's entries of the windows before it are dropped (one pass over the
/// map per new window); a settlement that arrives for a dropped window is ignored.
#[derive(Debug, Default)]
pub struct MemoryBudgetStore {
    spend: Mutex<Spend>,
}

#[derive(Debug, Default)]
struct Spend {
    /// Committed spend per (caller, window id).
    map: HashMap<(String, String), u64>,
    /// The newest window of each kind (`d`, `m`: the id's prefix) seen so far.
    newest: HashMap<String, String>,
}

/// The kind of a window id (`d` for `d:2026-11-21`); `None` for windows that never end.
fn window_kind(window: &str) -> Option<&str> {
    window.split_once(':').map(|(kind, _)| kind)
}

impl Spend {
    /// Notes that `window` is in use; when it is a new one of its kind, drops every entry of
    /// the older windows of that kind.
    fn advance(&mut self, window: &str) {
        let Some(kind) = window_kind(window) else {
            return;
        };
        match self.newest.get(kind) {
            Some(newest) if newest.as_str() >= window => return,
            _ => {}
        }
        self.newest.insert(kind.to_owned(), window.to_owned());
        self.map
            .retain(|(_, w), _| window_kind(w) != Some(kind) || w.as_str() >= window);
    }

    /// Whether `window` is older than the newest of its kind (its entries are gone).
    fn expired(&self, window: &str) -> bool {
        window_kind(window)
            .and_then(|kind| self.newest.get(kind))
            .is_some_and(|newest| newest.as_str() > window)
    }
}

impl MemoryBudgetStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (caller, window) entries kept.
    pub fn entries(&self) -> usize {
        self.with(|s| s.map.len())
    }

    fn with<R>(&self, f: impl FnOnce(&mut Spend) -> R) -> R {
        let mut g = self
            .spend
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }
}

impl BudgetStore for MemoryBudgetStore {
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        window: &'a str,
        limit: Picodollars,
        amount: Picodollars,
    ) -> BoxFuture<'a, Result<(), Exhausted>> {
        let r = self.with(|s| {
            s.advance(window);
            let v = s
                .map
                .entry((key.to_owned(), window.to_owned()))
                .or_insert(0);
            let next = v.saturating_add(amount.0);
            if next > limit.0 || (*v >= limit.0 && limit.0 > 0) {
                Err(Exhausted {
                    committed: Picodollars(*v),
                    limit,
                })
            } else {
                *v = next;
                Ok(())
            }
        });
        Box::pin(std::future::ready(r))
    }

    fn settle<'a>(
        &'a self,
        key: &'a str,
        window: &'a str,
        reserved: Picodollars,
        actual: Picodollars,
    ) -> BoxFuture<'a, ()> {
        self.with(|s| {
            if s.expired(window) {
                return;
            }
            let v = s
                .map
                .entry((key.to_owned(), window.to_owned()))
                .or_insert(0);
            *v = v.saturating_sub(reserved.0).saturating_add(actual.0);
        });
        Box::pin(std::future::ready(()))
    }

    fn committed<'a>(&'a self, key: &'a str, window: &'a str) -> BoxFuture<'a, Picodollars> {
        let v = self.with(|s| s.map.get(&(key.to_owned(), window.to_owned())).copied());
        Box::pin(std::future::ready(Picodollars(v.unwrap_or(0))))
    }
}

/// Budgets per caller, and the store that keeps their spend.
#[derive(Debug, Clone)]
pub struct Budgets {
    store: Arc<dyn BudgetStore>,
    per_caller: Arc<HashMap<Arc<str>, Budget>>,
    default: Option<Budget>,
}

impl Default for Budgets {
    fn default() -> Self {
        Self::new(Arc::new(MemoryBudgetStore::new()))
    }
}

impl Budgets {
    /// No budgets yet, spend kept in `store`.
    pub fn new(store: Arc<dyn BudgetStore>) -> Self {
        Self {
            store,
            per_caller: Arc::new(HashMap::new()),
            default: None,
        }
    }

    /// Sets the budget of one caller.
    #[must_use]
    pub fn with(mut self, caller: impl Into<Arc<str>>, budget: Budget) -> Self {
        Arc::make_mut(&mut self.per_caller).insert(caller.into(), budget);
        self
    }

    /// The budget of callers without their own.
    #[must_use]
    pub fn with_default(mut self, budget: Budget) -> Self {
        self.default = Some(budget);
        self
    }

    /// The same budgets, kept in another store (e.g. Redis).
    #[must_use]
    pub fn with_store(mut self, store: Arc<dyn BudgetStore>) -> Self {
        self.store = store;
        self
    }

    /// The budget that applies to `caller`.
    pub fn for_caller(&self, caller: &str) -> Option<Budget> {
        self.per_caller.get(caller).copied().or(self.default)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn BudgetStore> {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_windows() {
        // 2026-11-21T23:45:00Z
        let t = 1_795_304_700;
        assert_eq!(Window::Day.id_at(t), "d:2026-11-21");
        assert_eq!(Window::Month.id_at(t), "m:2026-11");
        assert_eq!(Window::Day.id_at(951_782_400), "d:2000-02-29");
        assert_eq!(Window::Total.id_at(0), "total");
    }

    #[tokio::test]
    async fn reserve_is_bounded_and_settles() {
        let s = MemoryBudgetStore::new();
        let limit = Picodollars(100);
        assert!(s.reserve("k", "w", limit, Picodollars(60)).await.is_ok());
        assert!(s.reserve("k", "w", limit, Picodollars(50)).await.is_err());
        s.settle("k", "w", Picodollars(60), Picodollars(10)).await;
        assert_eq!(s.committed("k", "w").await, Picodollars(10));
        assert!(s.reserve("k", "w", limit, Picodollars(50)).await.is_ok());
    }

    #[tokio::test]
    async fn windows_that_ended_are_dropped() {
        let s = MemoryBudgetStore::new();
        let limit = Picodollars(100);
        for caller in ["a", "b", "c"] {
            s.reserve(caller, "d:2026-01-01", limit, Picodollars(10))
                .await
                .unwrap();
        }
        s.reserve("a", "m:2026-01", limit, Picodollars(10))
            .await
            .unwrap();
        s.reserve("a", "total", limit, Picodollars(10))
            .await
            .unwrap();
        assert_eq!(s.entries(), 5);
        // A new day: every caller's entries of the days before go (not the month's, nor
        // the total).
        s.reserve("a", "d:2026-01-02", limit, Picodollars(10))
            .await
            .unwrap();
        assert_eq!(s.entries(), 3);
        // A late settlement of an ended window does not bring it back.
        s.settle("b", "d:2026-01-01", Picodollars(10), Picodollars(5))
            .await;
        assert_eq!(s.entries(), 3);
        assert_eq!(s.committed("a", "d:2026-01-02").await, Picodollars(10));
        // A new month drops the old month's entries.
        s.reserve("a", "m:2026-02", limit, Picodollars(1))
            .await
            .unwrap();
        assert_eq!(s.entries(), 3);
        assert_eq!(s.committed("a", "m:2026-01").await, Picodollars::ZERO);
        // Days and months still settle in their current window.
        s.settle("a", "d:2026-01-02", Picodollars(10), Picodollars(3))
            .await;
        assert_eq!(s.committed("a", "d:2026-01-02").await, Picodollars(3));
    }
}

#[cfg(feature = "redis")]
pub use redis_store::RedisBudgetStore;

#[cfg(feature = "redis")]
mod redis_store {
    use std::time::Duration;

    use redis::aio::ConnectionManager;
    use redis::Script;

    use futures_util::future::BoxFuture;

    use super::{BudgetStore, Exhausted, Picodollars};
    use crate::{Error, ErrorKind};

    /// Redis keeps whole nanodollars: Lua numbers are doubles, exact to 2^53 nanodollars
    /// (about $9 million) per caller and window.
    fn nano_ceil(p: Picodollars) -> i64 {
        i64::try_from(p.0.div_ceil(1000)).unwrap_or(i64::MAX)
    }

    fn nano_round(p: Picodollars) -> i64 {
        i64::try_from((p.0 + 500) / 1000).unwrap_or(i64::MAX)
    }

    const RESERVE: &str = r"
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
if v + amount > limit or (v >= limit and limit > 0) then
  return {0, v}
end
local n = redis.call('INCRBY', KEYS[1], amount)
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return {1, n}
";

    const SETTLE: &str = r"
local n = redis.call('INCRBY', KEYS[1], tonumber(ARGV[2]) - tonumber(ARGV[1]))
if n < 0 then redis.call('SET', KEYS[1], 0) end
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return n
";

    /// A [`BudgetStore`] in Redis (feature `redis`), so several gateway instances share one
    /// budget: one atomic Lua script per reserve and per settle. Windows expire on their own
    /// (a day's key lives two days, a month's 62 days).
    #[derive(Clone)]
    pub struct RedisBudgetStore {
        conn: ConnectionManager,
        prefix: String,
        reserve: Script,
        settle: Script,
    }

    impl std::fmt::Debug for RedisBudgetStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RedisBudgetStore")
                .field("prefix", &self.prefix)
                .finish_non_exhaustive()
        }
    }

    impl RedisBudgetStore {
        /// Connects to `url` (`redis://host:port/db`).
        pub async fn connect(url: &str) -> Result<Self, Error> {
            let client = redis::Client::open(url).map_err(|e| {
                Error::new(ErrorKind::InvalidRequest, "budget store: bad Redis URL").with_source(e)
            })?;
            let conn = tokio::time::timeout(Duration::from_secs(5), ConnectionManager::new(client))
                .await
                .map_err(|_| Error::new(ErrorKind::Timeout, "budget store: Redis did not answer"))?
                .map_err(|e| {
                    Error::upstream("budget store: could not connect to Redis").with_source(e)
                })?;
            Ok(Self::from_connection(conn))
        }

        /// Uses an existing connection.
        pub fn from_connection(conn: ConnectionManager) -> Self {
            Self {
                conn,
                prefix: "switchboard:budget:".to_owned(),
                reserve: Script::new(RESERVE),
                settle: Script::new(SETTLE),
            }
        }

        /// Key prefix (default `switchboard:budget:`).
        #[must_use]
        pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
            self.prefix = prefix.into();
            self
        }

        fn key(&self, caller: &str, window: &str) -> String {
            format!("{}{caller}:{window}", self.prefix)
        }
    }

    fn ttl_secs(window: &str) -> i64 {
        match window.as_bytes().first() {
            Some(b'd') => 2 * 86_400,
            Some(b'm') => 62 * 86_400,
            _ => 0,
        }
    }

    impl BudgetStore for RedisBudgetStore {
        fn reserve<'a>(
            &'a self,
            key: &'a str,
            window: &'a str,
            limit: Picodollars,
            amount: Picodollars,
        ) -> BoxFuture<'a, Result<(), Exhausted>> {
            Box::pin(async move {
                let mut conn = self.conn.clone();
                let r: redis::RedisResult<(i64, i64)> = self
                    .reserve
                    .key(self.key(key, window))
                    .arg(nano_round(limit))
                    .arg(nano_ceil(amount))
                    .arg(ttl_secs(window))
                    .invoke_async(&mut conn)
                    .await;
                match r {
                    Ok((1, _)) => Ok(()),
                    Ok((_, committed)) => Err(Exhausted {
                        committed: Picodollars(u64::try_from(committed).unwrap_or(0) * 1000),
                        limit,
                    }),
                    Err(e) => {
                        // Fail closed: a budget that cannot be checked is not spent.
                        tracing::warn!(error = %e, "budget store unavailable: refusing the request");
                        Err(Exhausted {
                            committed: limit,
                            limit,
                        })
                    }
                }
            })
        }

        fn settle<'a>(
            &'a self,
            key: &'a str,
            window: &'a str,
            reserved: Picodollars,
            actual: Picodollars,
        ) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                let mut conn = self.conn.clone();
                let r: redis::RedisResult<i64> = self
                    .settle
                    .key(self.key(key, window))
                    .arg(nano_ceil(reserved))
                    .arg(nano_round(actual))
                    .arg(ttl_secs(window))
                    .invoke_async(&mut conn)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "budget store: a settlement was lost");
                }
            })
        }

        fn committed<'a>(&'a self, key: &'a str, window: &'a str) -> BoxFuture<'a, Picodollars> {
            Box::pin(async move {
                let mut conn = self.conn.clone();
                let v: Option<i64> = redis::cmd("GET")
                    .arg(self.key(key, window))
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(None);
                Picodollars(u64::try_from(v.unwrap_or(0)).unwrap_or(0) * 1000)
            })
        }
    }
}
