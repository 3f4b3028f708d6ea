//! Where cached answers live: the [`CacheStore`] trait, the in-process [`MemoryStore`]
//! (default) and, with the `redis` feature, [`RedisStore`].

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use memory::MemoryStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;

use super::key::CacheKey;
use crate::openai::{ChatCompletion, ChatCompletionChunk};
use crate::Error;

/// A place to keep cached answers, shared by every clone of a
/// [`ResponseCacheLayer`](super::ResponseCacheLayer).
///
/// Errors are logged by the layer and treated as a miss (on `get`) or as not stored (on
/// `put`); they never reach the client. Freshness (`expires_at_ms`, `max-age`) is checked by
/// the layer against its own clock, so a store may keep an entry a little longer than its TTL.
///
/// The methods return [`futures_util::future::BoxFuture`]s (`Box::pin(async move { … })`).
pub trait CacheStore: fmt::Debug + Send + Sync + 'static {
    /// The entry for `key`, if any.
    fn get(&self, key: CacheKey) -> BoxFuture<'_, Result<Option<Arc<CachedEntry>>, Error>>;

    /// Stores `entry` under `key` (replacing any previous one) for at most `ttl`.
    fn put(
        &self,
        key: CacheKey,
        entry: Arc<CachedEntry>,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), Error>>;
}

impl<T: CacheStore + ?Sized> CacheStore for Arc<T> {
    fn get(&self, key: CacheKey) -> BoxFuture<'_, Result<Option<Arc<CachedEntry>>, Error>> {
        (**self).get(key)
    }
    fn put(
        &self,
        key: CacheKey,
        entry: Arc<CachedEntry>,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), Error>> {
        (**self).put(key, entry, ttl)
    }
}

/// A stored answer: the chunks of the completed answer (recorded from a stream, or rendered
/// from a completion) and the completion they add up to, so either shape can be served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedEntry {
    /// The chunks, in order, usage chunk included.
    pub chunks: Vec<ChatCompletionChunk>,
    /// The aggregated completion.
    pub completion: ChatCompletion,
    /// When it was stored, in Unix milliseconds (the layer's clock).
    pub stored_at_ms: u64,
    /// When it stops being served, in Unix milliseconds.
    pub expires_at_ms: u64,
    /// Who served the original answer, shown again on hits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<CachedServedBy>,
    /// Approximate size in bytes (text plus a fixed overhead per chunk and choice), the weight
    /// in a bytes-bounded store.
    #[serde(default)]
    pub size_bytes: usize,
    /// `completion` rendered once for the hits that follow (not stored; filled on the first
    /// non-streaming hit). Build entries with `Rendered::default()`.
    #[serde(skip)]
    pub rendered: Rendered,
}

/// A [`CachedEntry`]'s completion as JSON bytes with the spans a hit rewrites (`id`,
/// `created`, `usage`), rendered on the entry's first non-streaming hit: later hits copy
/// the bytes with those fields spliced in instead of encoding the completion again.
#[derive(Clone, Default)]
pub struct Rendered(std::sync::OnceLock<Option<crate::openai::RawCompletion>>);

impl Rendered {
    /// The rendering of `c`, made on first use; `None` when `c` has no provider (the
    /// typed encoding then serves).
    pub(crate) fn get(&self, c: &ChatCompletion) -> Option<&crate::openai::RawCompletion> {
        self.0
            .get_or_init(|| {
                let provider = c.provider.as_deref()?;
                let bytes = serde_json::to_vec(c).ok()?;
                crate::openai::RawCompletion::parse(
                    bytes.into(),
                    c.model.as_str().into(),
                    provider.into(),
                )
            })
            .as_ref()
    }
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Rendered(yes)"
        } else {
            "Rendered(no)"
        })
    }
}

/// Renderings are caches of `completion`: every one equals every other.
impl PartialEq for Rendered {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The provider and model that produced a cached answer (shared with the answers a hit
/// makes: no copy per hit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedServedBy {
    /// Provider name.
    pub provider: std::sync::Arc<str>,
    /// Public model id.
    pub model: std::sync::Arc<str>,
}

impl CachedEntry {
    /// Whether the entry may be served at `now_ms`, given the client's `max-age` (if any).
    pub fn is_fresh(&self, now_ms: u64, max_age: Option<Duration>) -> bool {
        if now_ms >= self.expires_at_ms {
            return false;
        }
        match max_age {
            None => true,
            Some(m) => {
                let age = now_ms.saturating_sub(self.stored_at_ms);
                u128::from(age) < m.as_millis()
            }
        }
    }
}
