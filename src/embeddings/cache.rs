//! [`EmbeddingsCache`]: embeddings answers in the response cache's store.
//!
//! The key is a BLAKE3 hash, in a key domain of its own (`switchboard.embeddings.v1`), over
//! the caller (unless the cache is shared across callers), the route's candidates (provider
//! and upstream model, in order) and the answer-relevant fields: `input`, `dimensions`,
//! `encoding_format` (not `user`). Every field is length-prefixed. An answer is stored as a
//! [`CachedEntry`] whose completion carries the answer's JSON as its one message text and its
//! usage, so memory and Redis stores hold it unchanged; entries larger than the cache's entry
//! limit are not stored. `Cache-Control: no-store`, `no-cache` and `max-age` are honoured as
//! for chat. A hit answers with [`CacheStatus::Hit`] (cost 0) and the original `ServedBy`.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower_layer::Layer;
use tower_service::Service;

use super::{carrier, EmbeddingsAnswer, EmbeddingsCall};
use crate::cache::{
    CacheControl, CacheKey, CachedEntry, CachedServedBy, ResponseCacheLayer, SharedStore,
};
use crate::chat::{ChatHttpRequest, ChatHttpResponse, ChatResponse};
use crate::ext::{CacheStatus, CallerKey, Route, ServedBy};
use crate::openai::{ChatCompletion, EmbeddingsRequest, EmbeddingsResponse};
use crate::Error;

/// Layer for [`EmbeddingsCache`], over a response cache's store.
#[derive(Debug, Clone)]
pub struct EmbeddingsCacheLayer {
    store: SharedStore,
}

impl EmbeddingsCacheLayer {
    /// Caches in `cache`'s store, with its TTL, entry limit and caller scope.
    pub fn new(cache: &ResponseCacheLayer) -> Self {
        Self {
            store: cache.shared_store(),
        }
    }
}

impl<S> Layer<S> for EmbeddingsCacheLayer {
    type Service = EmbeddingsCache<S>;
    fn layer(&self, inner: S) -> EmbeddingsCache<S> {
        EmbeddingsCache {
            inner,
            store: self.store.clone(),
        }
    }
}

/// Answers repeated embeddings requests from the cache (see [`crate::embeddings`]).
#[derive(Debug, Clone)]
pub struct EmbeddingsCache<S> {
    inner: S,
    store: SharedStore,
}

const DOMAIN: &[u8] = b"switchboard.embeddings.v1";

fn key(caller: Option<&str>, route: Option<&Route>, req: &EmbeddingsRequest) -> CacheKey {
    let mut buf = Vec::with_capacity(256 + req.input.bytes());
    let mut field = |b: &[u8]| {
        buf.extend_from_slice(&(b.len() as u64).to_le_bytes());
        buf.extend_from_slice(b);
    };
    field(DOMAIN);
    field(caller.unwrap_or("").as_bytes());
    field(&[u8::from(caller.is_some())]);
    match route {
        Some(r) => {
            for c in r.candidates.iter() {
                field(c.provider.name.as_bytes());
                field(c.upstream_model.as_bytes());
            }
        }
        None => field(req.model.as_bytes()),
    }
    field(b"--");
    // Serialising these types cannot fail; an empty field would still be a distinct key.
    field(&serde_json::to_vec(&req.input).unwrap_or_default());
    field(&req.dimensions.unwrap_or(0).to_le_bytes());
    field(&[u8::from(
        req.format() == crate::openai::EncodingFormat::Base64,
    )]);
    CacheKey::from_digest(blake3::hash(&buf).into())
}

fn entry_of(
    resp: &EmbeddingsResponse,
    served: Option<&ServedBy>,
    now_ms: u64,
    ttl_ms: u64,
) -> Option<(CachedEntry, usize)> {
    let json = serde_json::to_string(resp).ok()?;
    let size = json.len() + 256;
    let completion: ChatCompletion = serde_json::from_value(serde_json::json!({
        "id": "embeddings",
        "object": "list",
        "model": resp.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": json}, "finish_reason": null}],
        "usage": {"prompt_tokens": resp.usage.prompt_tokens, "completion_tokens": 0, "total_tokens": resp.usage.prompt_tokens},
    }))
    .ok()?;
    Some((
        CachedEntry {
            chunks: Vec::new(),
            completion,
            stored_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
            served_by: served.map(|s| CachedServedBy {
                provider: s.provider.clone(),
                model: s.model.clone(),
            }),
            size_bytes: size,
            rendered: Default::default(),
        },
        size,
    ))
}

fn answer_of(entry: &CachedEntry) -> Option<EmbeddingsResponse> {
    let text = entry
        .completion
        .choices
        .first()?
        .message
        .content
        .as_deref()?;
    let mut r: EmbeddingsResponse = serde_json::from_str(text).ok()?;
    r.usage.cost = None;
    Some(r)
}

impl<S> Service<ChatHttpRequest> for EmbeddingsCache<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = BoxFuture<'static, Result<ChatHttpResponse, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ChatHttpRequest) -> Self::Future {
        let cc = CacheControl::from_headers(req.headers());
        let Some(EmbeddingsCall(emb)) = req.extensions().get::<EmbeddingsCall>().cloned() else {
            return Box::pin(self.inner.call(req));
        };
        if cc.no_store {
            let fut = self.inner.call(req);
            return Box::pin(async move {
                let mut r = fut.await?;
                r.extensions_mut().insert(CacheStatus::Bypass);
                Ok(r)
            });
        }
        let caller = match self.store.shared_across_callers {
            true => None,
            false => req.extensions().get::<CallerKey>().map(|c| c.0.clone()),
        };
        let key = key(caller.as_deref(), req.extensions().get::<Route>(), &emb);
        let store = self.store.clone();
        // The service driven to readiness goes with the request; a clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if !cc.no_cache {
                match store.store().get(key).await {
                    Ok(Some(entry)) if entry.is_fresh(store.now_ms(), cc.max_age) => {
                        if let Some(answer) = answer_of(&entry) {
                            let mut resp =
                                http::Response::new(ChatResponse::Complete(carrier(&answer)));
                            if let Some(s) = &entry.served_by {
                                resp.extensions_mut().insert(ServedBy {
                                    provider: s.provider.clone(),
                                    model: s.model.clone(),
                                    attempts: Vec::new(),
                                });
                            }
                            resp.extensions_mut().insert(CacheStatus::Hit);
                            resp.extensions_mut()
                                .insert(EmbeddingsAnswer(Arc::new(answer)));
                            return Ok(resp);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "embeddings cache lookup failed"),
                }
            }
            let mut resp = inner.call(req).await?;
            if let Some(EmbeddingsAnswer(answer)) = resp.extensions().get::<EmbeddingsAnswer>() {
                let ttl = cc.max_age.map_or(store.ttl, |m| m.min(store.ttl));
                let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                if let Some((entry, size)) = entry_of(
                    answer,
                    resp.extensions().get::<ServedBy>(),
                    store.now_ms(),
                    ttl_ms,
                ) {
                    if size <= store.max_entry_bytes && ttl_ms > 0 {
                        let s = store.store().clone();
                        tokio::spawn(async move {
                            if let Err(e) = s.put(key, Arc::new(entry), ttl).await {
                                tracing::warn!(error = %e, "embeddings cache store failed");
                            }
                        });
                    }
                }
            }
            resp.extensions_mut().insert(CacheStatus::Miss);
            Ok(resp)
        })
    }
}
