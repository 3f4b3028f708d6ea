//! A [`RateLimitStore`] in Redis (feature `redis`): one set of buckets for every gateway
//! instance.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::store::{Decision, Draw, LimitKind, RateLimitStore};
use crate::{Error, ErrorKind};

/// Default key prefix.
const DEFAULT_PREFIX: &str = "switchboard:rl:";
/// Default bound on one Redis round trip.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// Token buckets as hashes `{t = tokens, at = ms}`, refilled by the server's clock (`TIME`,
/// so instances need not agree on the time). KEYS: one bucket per draw; ARGV: per draw its
/// capacity and amount. All or nothing: `{1, 0, 0}`, or `{0, index of the refusing draw
/// (1-based), wait in ms}`. A bucket expires once it would be full again (a missing bucket
/// is a full one).
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local level = {}
local refused, longest = 0, 0
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i - 1])
  local amount = tonumber(ARGV[2 * i])
  local b = redis.call('HMGET', KEYS[i], 't', 'at')
  local tokens, at = tonumber(b[1]), tonumber(b[2])
  if tokens == nil or at == nil then tokens, at = cap, now end
  local rate = cap / 60000
  tokens = math.min(cap, tokens + math.max(0, now - at) * rate)
  level[i] = tokens
  local wait = 0
  if amount > cap or rate <= 0 then
    if amount > cap then wait = 60000 end
  elseif tokens < amount then
    wait = math.ceil((amount - tokens) / rate)
  end
  if wait > longest then refused, longest = i, wait end
end
if refused > 0 then return {0, refused, math.min(longest, 86400000)} end
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i - 1])
  local left = level[i] - tonumber(ARGV[2 * i])
  redis.call('HSET', KEYS[i], 't', left, 'at', now)
  local ttl = 60000
  if cap > 0 then ttl = math.ceil((cap - left) / (cap / 60000)) + 1000 end
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return {1, 0, 0}
";

/// KEYS[1]: the bucket; ARGV: capacity, delta (taken; negative gives back).
const ADJUST: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[1])
local b = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens, at = tonumber(b[1]), tonumber(b[2])
if tokens == nil or at == nil then tokens, at = cap, now end
local rate = cap / 60000
tokens = math.min(cap, tokens + math.max(0, now - at) * rate)
local left = math.min(cap, tokens - tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 't', left, 'at', now)
local ttl = 60000
if cap > 0 then ttl = math.ceil((cap - left) / rate) + 1000 end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
";

/// A [`RateLimitStore`] in Redis (feature `redis`), so every gateway instance draws from the
/// same buckets: N instances allow the limit once, not N times.
///
/// Each caller's bucket of each kind is a hash at `switchboard:rl:{caller}:requests` or
/// `…:tokens` (the braces are a Redis Cluster hash tag: one caller's buckets share a slot),
/// taken from by one atomic Lua script per request and refilled by the Redis server's clock.
/// A bucket expires once it would be full again. Every command is bounded by a timeout
/// (250 ms by default); the connection reconnects by itself ([`ConnectionManager`]). A store
/// that errs or times out makes [`ClientKeys`](super::ClientKeys) count in its own memory
/// for that request (see the [module docs](super)).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), switchboard::Error> {
/// use std::sync::Arc;
/// use switchboard::keys::{ClientKeysLayer, KeyPolicy, RedisRateLimitStore};
///
/// let store = RedisRateLimitStore::connect("redis://127.0.0.1:6379/").await?;
/// let keys = ClientKeysLayer::new()
///     .key("sk-alice", KeyPolicy::new("alice").requests_per_minute(60))
///     .rate_limit_store(Arc::new(store));
/// # let _ = keys;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisRateLimitStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
    acquire: Script,
    adjust: Script,
}

impl std::fmt::Debug for RedisRateLimitStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimitStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn store_error(what: &'static str, e: impl Into<crate::BoxError>) -> Error {
    Error::upstream(format!("rate-limit store: {what}")).with_source(e)
}

impl RedisRateLimitStore {
    /// Connects to `url` (`redis://host:port/db`). Fails when Redis does not answer.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(|e| {
            Error::new(ErrorKind::InvalidRequest, "rate-limit store: bad Redis URL").with_source(e)
        })?;
        // Few, short reconnect delays: a store that is down is counted around, not waited for.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2)
            .set_max_delay(200);
        let conn = ConnectionManager::new_with_config(client, config);
        match tokio::time::timeout(Duration::from_secs(5), conn).await {
            Ok(Ok(conn)) => Ok(Self::from_connection(conn)),
            Ok(Err(e)) => Err(store_error("could not connect to Redis", e)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                "rate-limit store: could not connect to Redis in time",
            )),
        }
    }

    /// Uses an existing connection manager.
    pub fn from_connection(conn: ConnectionManager) -> Self {
        Self {
            conn,
            prefix: Arc::from(DEFAULT_PREFIX),
            timeout: DEFAULT_TIMEOUT,
            acquire: Script::new(ACQUIRE),
            adjust: Script::new(ADJUST),
        }
    }

    /// Key prefix (default `switchboard:rl:`).
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix);
        self
    }

    /// Bound on each command (default 250 ms).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `switchboard:rl:{caller}:kind`.
    fn key(&self, caller: &str, kind: LimitKind) -> String {
        format!("{}{{{caller}}}:{}", self.prefix, kind.as_str())
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(store_error("Redis command failed", e)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                "rate-limit store: Redis timed out",
            )),
        }
    }
}

impl RateLimitStore for RedisRateLimitStore {
    fn acquire<'a>(
        &'a self,
        caller: &'a str,
        draws: &'a [Draw],
    ) -> BoxFuture<'a, Result<Decision, Error>> {
        Box::pin(async move {
            if draws.is_empty() {
                return Ok(Decision::Granted);
            }
            let mut invocation = self.acquire.prepare_invoke();
            for d in draws {
                invocation
                    .key(self.key(caller, d.kind))
                    .arg(d.per_minute)
                    .arg(d.amount);
            }
            let mut conn = self.conn.clone();
            let (granted, index, wait_ms): (i64, usize, u64) =
                self.bounded(invocation.invoke_async(&mut conn)).await?;
            if granted == 1 {
                return Ok(Decision::Granted);
            }
            let d = index
                .checked_sub(1)
                .and_then(|i| draws.get(i))
                .ok_or_else(|| Error::upstream("rate-limit store: unexpected answer"))?;
            Ok(Decision::Refused {
                kind: d.kind,
                retry_after: Duration::from_millis(wait_ms),
            })
        })
    }

    fn adjust<'a>(
        &'a self,
        caller: &'a str,
        kind: LimitKind,
        per_minute: u32,
        delta: i64,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut invocation = self.adjust.prepare_invoke();
            invocation
                .key(self.key(caller, kind))
                .arg(per_minute)
                .arg(delta);
            let _: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
            Ok(())
        })
    }
}
