//! A Redis store, for several gateway instances sharing one cache (feature `redis`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{CacheStore, CachedEntry};
use crate::cache::key::CacheKey;
use crate::Error;

/// Default key prefix.
const DEFAULT_PREFIX: &str = "switchboard:cache:";
/// Default bound on one Redis round trip.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// Default cap on one serialized entry: 4 MiB.
const DEFAULT_MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;

/// A [`CacheStore`] in Redis: each entry is one JSON value under `prefix + hex(key)`, written
/// with `SET … PX ttl`, so Redis expires it (and its `maxmemory` policy bounds the total).
///
/// The connection reconnects by itself ([`ConnectionManager`]); every command is bounded by a
/// timeout (250 ms by default), and a slow or failing Redis reads as a miss. Entries whose
/// encoding is larger than `max_value_bytes` (4 MiB by default) are not written. Clones share
/// the connection.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), switchboard::Error> {
/// use switchboard::cache::{RedisStore, ResponseCacheLayer};
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
/// let layer = ResponseCacheLayer::new(store);
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
    max_value_bytes: usize,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

fn store_error(what: &'static str, e: impl Into<crate::BoxError>) -> Error {
    Error::upstream(format!("cache store: {what}")).with_source(e)
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`; `rediss://` needs a TLS feature of the
    /// `redis` crate, which switchboard does not enable).
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(|e| store_error("bad Redis URL", e))?;
        // Few, short reconnect delays: a cache that is down is a miss, not a wait.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2)
            .set_max_delay(200);
        let conn = ConnectionManager::new_with_config(client, config);
        let conn = match tokio::time::timeout(Duration::from_secs(5), conn).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(store_error("could not connect to Redis", e)),
            Err(_) => {
                return Err(Error::new(
                    crate::ErrorKind::Timeout,
                    "cache store: could not connect to Redis in time",
                ))
            }
        };
        Ok(Self::from_connection(conn))
    }

    /// Uses an existing connection manager.
    pub fn from_connection(conn: ConnectionManager) -> Self {
        Self {
            conn,
            prefix: Arc::from(DEFAULT_PREFIX),
            timeout: DEFAULT_TIMEOUT,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }

    /// Key prefix (default `switchboard:cache:`).
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

    /// Largest encoded entry written (default 4 MiB).
    #[must_use]
    pub fn max_value_bytes(mut self, n: usize) -> Self {
        self.max_value_bytes = n;
        self
    }

    fn redis_key(&self, key: CacheKey) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 64);
        k.push_str(&self.prefix);
        k.push_str(&key.to_hex());
        k
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(store_error("Redis command failed", e)),
            Err(_) => Err(Error::new(
                crate::ErrorKind::Timeout,
                "cache store: Redis timed out",
            )),
        }
    }
}

impl CacheStore for RedisStore {
    fn get(&self, key: CacheKey) -> BoxFuture<'_, Result<Option<Arc<CachedEntry>>, Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let k = self.redis_key(key);
            let cmd = redis::cmd("GET").arg(&k).clone();
            let raw: Option<Vec<u8>> = self.bounded(cmd.query_async(&mut conn)).await?;
            let Some(raw) = raw else { return Ok(None) };
            match serde_json::from_slice::<CachedEntry>(&raw) {
                Ok(entry) => Ok(Some(Arc::new(entry))),
                // An entry written by another version: a miss, overwritten on the next store.
                Err(e) => {
                    tracing::debug!(error = %e, key = ?k, "undecodable cache entry");
                    Ok(None)
                }
            }
        })
    }

    fn put(
        &self,
        key: CacheKey,
        entry: Arc<CachedEntry>,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            if ms == 0 {
                return Ok(());
            }
            let value = serde_json::to_vec(&*entry).map_err(|e| store_error("encode", e))?;
            if value.len() > self.max_value_bytes {
                return Ok(());
            }
            let mut conn = self.conn.clone();
            let cmd = redis::cmd("SET")
                .arg(self.redis_key(key))
                .arg(value)
                .arg("PX")
                .arg(ms)
                .clone();
            self.bounded(cmd.query_async::<()>(&mut conn)).await
        })
    }
}
