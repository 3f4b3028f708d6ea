//! The in-process store: a moka cache bounded by total bytes and entry count.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use moka::future::Cache;
use moka::Expiry;

use super::{CacheStore, CachedEntry};
use crate::cache::key::CacheKey;
use crate::Error;

/// Default byte budget: 64 MiB.
const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default entry cap.
const DEFAULT_MAX_ENTRIES: u64 = 10_000;

/// An in-process [`CacheStore`] (moka), bounded by the total size of its entries and by their
/// number, evicting the least useful entries first (TinyLFU) and each entry after its TTL.
///
/// Both bounds with one weighted cache: every entry weighs at least
/// `max_bytes / max_entries`, so the weights fitting in `max_bytes` also means at most
/// `max_entries` entries. Clones share the same cache.
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<CacheKey, Slot>,
    max_bytes: u64,
    max_entries: u64,
}

#[derive(Clone)]
struct Slot {
    entry: Arc<CachedEntry>,
    ttl: Duration,
}

struct SlotExpiry;

// moka's trait hands out its own `std::time::Instant`s; we only read the TTL we stored.
#[allow(clippy::disallowed_types)]
impl Expiry<CacheKey, Slot> for SlotExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Slot,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        value: &Slot,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

impl MemoryStore {
    /// A store holding at most `max_bytes` of entries (and 10 000 entries).
    pub fn new(max_bytes: u64) -> Self {
        Self::with_limits(max_bytes, DEFAULT_MAX_ENTRIES)
    }

    /// A store holding at most `max_bytes` of entries and at most `max_entries` entries.
    pub fn with_limits(max_bytes: u64, max_entries: u64) -> Self {
        let max_bytes = max_bytes.max(1);
        let max_entries = max_entries.max(1);
        let min_weight = u32::try_from(max_bytes.div_ceil(max_entries)).unwrap_or(u32::MAX);
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |_k: &CacheKey, v: &Slot| {
                u32::try_from(v.entry.size_bytes)
                    .unwrap_or(u32::MAX)
                    .max(min_weight)
            })
            .expire_after(SlotExpiry)
            .build();
        Self {
            cache,
            max_bytes,
            max_entries,
        }
    }

    /// Number of entries (approximate until pending maintenance ran).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Total weight of the entries in bytes (approximate, as above).
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Runs pending evictions and expirations now (moka batches them).
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_bytes", &self.max_bytes)
            .field("max_entries", &self.max_entries)
            .field("entry_count", &self.cache.entry_count())
            .finish()
    }
}

impl CacheStore for MemoryStore {
    fn get(&self, key: CacheKey) -> BoxFuture<'_, Result<Option<Arc<CachedEntry>>, Error>> {
        Box::pin(async move { Ok(self.cache.get(&key).await.map(|s| s.entry)) })
    }

    fn put(
        &self,
        key: CacheKey,
        entry: Arc<CachedEntry>,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            if entry.size_bytes as u64 <= self.max_bytes && !ttl.is_zero() {
                self.cache.insert(key, Slot { entry, ttl }).await;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{completion_to_chunks, ChatCompletion};

    fn entry(size: usize) -> Arc<CachedEntry> {
        let completion: ChatCompletion = serde_json::from_str(
            r#"{"id":"x","created":1,"model":"m","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"hi"}}]}"#,
        )
        .unwrap();
        Arc::new(CachedEntry {
            chunks: completion_to_chunks(&completion),
            completion,
            stored_at_ms: 0,
            expires_at_ms: u64::MAX,
            served_by: None,
            size_bytes: size,
            rendered: Default::default(),
        })
    }

    fn key(n: u8) -> CacheKey {
        let req = crate::openai::ChatRequest::from_slice(
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{n}"}}]}}"#).as_bytes(),
        )
        .unwrap();
        CacheKey::for_request(None, &req).unwrap()
    }

    #[tokio::test]
    async fn bounded_by_entry_count_and_bytes() {
        let store = MemoryStore::with_limits(10_000, 4);
        for n in 0..20 {
            store
                .put(key(n), entry(10), Duration::from_secs(60))
                .await
                .unwrap();
        }
        store.run_pending_tasks().await;
        assert!(store.entry_count() <= 4, "{}", store.entry_count());
        assert!(store.weighted_size() <= 10_000);

        let store = MemoryStore::with_limits(10_000, 1_000);
        for n in 0..20 {
            store
                .put(key(n), entry(3_000), Duration::from_secs(60))
                .await
                .unwrap();
        }
        store.run_pending_tasks().await;
        assert!(store.entry_count() <= 3, "{}", store.entry_count());
        // An entry larger than the whole store is never kept.
        store
            .put(key(99), entry(20_000), Duration::from_secs(60))
            .await
            .unwrap();
        assert!(store.get(key(99)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn put_get_and_replace() {
        let store = MemoryStore::default();
        assert!(store.get(key(1)).await.unwrap().is_none());
        store
            .put(key(1), entry(5), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(store.get(key(1)).await.unwrap().unwrap().size_bytes, 5);
        store
            .put(key(1), entry(6), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(store.get(key(1)).await.unwrap().unwrap().size_bytes, 6);
        store.put(key(2), entry(5), Duration::ZERO).await.unwrap();
        assert!(store.get(key(2)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn entries_expire_after_their_own_ttl() {
        let store = MemoryStore::default();
        store
            .put(key(1), entry(5), Duration::from_millis(30))
            .await
            .unwrap();
        store
            .put(key(2), entry(5), Duration::from_secs(600))
            .await
            .unwrap();
        // moka uses its own (real) clock: wait a bounded real time for the short TTL.
        let start = std::time::SystemTime::now();
        while store.get(key(1)).await.unwrap().is_some() {
            assert!(
                start.elapsed().unwrap_or_default() < Duration::from_secs(5),
                "entry did not expire"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(store.get(key(2)).await.unwrap().is_some());
    }
}
