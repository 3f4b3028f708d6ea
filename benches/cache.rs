//! Per-layer overhead of ResponseCache (`ResponseCacheLayer::default()`, the in-memory moka
//! store) over an identity inner service, and the cost of `CacheKey::for_request` alone.
//!
//! ```sh
//! cargo bench --features bench-support --bench cache         # everything, about a minute
//! cargo bench --features bench-support --bench cache -- hit  # some cases (the summary follows the filter)
//! ```
//!
//! - `miss_*`: a unique request each iteration (a counter in the first user turn), so every
//!   call is a miss that records the answer and stores it (measured after the hits: the misses
//!   fill the store past its 10 000 entries, so moka evicts and rejects as it would in use). The store write runs in a task the
//!   layer spawns; each iteration ends with `tokio::task::yield_now()` so that task runs inside
//!   the timed part, and the baseline (`identity_yield`) yields the same way.
//! - `hit_*`: the same request every time, stored before timing.
//! - `key_*`: `CacheKey::for_request` on the parsed request (canonicalising + BLAKE3).
//!
//! See `src/bench_support/micro.rs` for the method and BENCHMARKS.md ("Per-layer overhead").

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use tower::Layer;

use switchboard::bench_support::micro;
use switchboard::bench_support::micro::{
    arm, call, catalog, complete_response, completion, identity, parse, sdk_headers,
};
use switchboard::bench_support::micro::{typed, Bench, Canned, REQUEST, TAIL};
use switchboard::cache::{CacheKey, ResponseCacheLayer};
use switchboard::ext::{CacheStatus, Route};
use switchboard::openai::ChatRequest;
use switchboard::resolve::ModelResolveLayer;
use switchboard::ChatHttpResponse;

/// The issue's budget for a 1 KB hit.
const FIVE_US: f64 = 5_000.0;
const HEAD: &str = r#""model":"openai/gpt-4o-mini""#;

fn status(resp: &ChatHttpResponse) -> Option<CacheStatus> {
    resp.extensions().get::<CacheStatus>().copied()
}

fn main() {
    let rt = micro::runtime();
    let mut bench = Bench::new("cache", &rt);

    let route: Route = ModelResolveLayer::new(catalog())
        .resolver()
        .resolve(
            &parse(&micro::chat_body(HEAD, 1024, TAIL, 0)),
            &http::HeaderMap::new(),
        )
        .expect("the bench route resolves");
    let headers = sdk_headers();
    let done = completion();
    let request = |chat: &Arc<ChatRequest>, canned: bool| {
        let mut r = typed(chat, &headers);
        r.extensions_mut().insert(route.clone());
        if canned {
            r.extensions_mut()
                .insert(Canned::new(complete_response(&done)));
        }
        r
    };
    let salt = Cell::new(1u64);
    let unique = |len: usize| {
        let n = salt.get();
        salt.set(n + 1);
        request(&parse(&micro::chat_body(HEAD, len, TAIL, n)), true)
    };
    let chat_1k = parse(&micro::chat_body(HEAD, 1024, TAIL, 0));
    let chat_32k = parse(&micro::chat_body(HEAD, 32 * 1024, TAIL, 0));
    eprintln!(
        "cache: request messages {} B and {} B",
        chat_1k.messages.get().len(),
        chat_32k.messages.get().len()
    );

    let base_svc = RefCell::new(identity());
    let svc = RefCell::new(ResponseCacheLayer::default().layer(identity()));

    let base = arm(|| request(&chat_1k, true), |req| call(&base_svc, req));
    let base_yield = arm(
        || unique(1024),
        |req| async {
            let resp = call(&base_svc, req).await;
            tokio::task::yield_now().await;
            resp
        },
    );
    let miss = |len: usize| {
        let unique = &unique;
        let svc = &svc;
        arm(
            move || unique(len),
            move |req| async move {
                let resp = call(svc, req).await;
                tokio::task::yield_now().await;
                resp
            },
        )
    };
    let (miss_1k, miss_32k) = (miss(1024), miss(32 * 1024));
    let hit = |chat: &Arc<ChatRequest>| {
        let chat = chat.clone();
        arm(move || request(&chat, false), |req| call(&svc, req))
    };
    let (hit_1k, hit_32k) = (hit(&chat_1k), hit(&chat_32k));
    let key = |chat: &Arc<ChatRequest>| {
        let chat = chat.clone();
        let route = route.clone();
        arm(
            || (),
            move |()| {
                std::future::ready(
                    CacheKey::for_request(Some(&route), &chat).expect("the request has a key"),
                )
            },
        )
    };
    let (key_1k, key_32k) = (key(&chat_1k), key(&chat_32k));

    // Misses are misses; store the two hit requests, then check they hit.
    assert_eq!(status(&miss_1k.once(&rt)), Some(CacheStatus::Miss));
    assert_eq!(status(&miss_32k.once(&rt)), Some(CacheStatus::Miss));
    for chat in [&chat_1k, &chat_32k] {
        rt.block_on(async {
            let resp = call(&svc, request(chat, true)).await;
            assert_eq!(status(&resp), Some(CacheStatus::Miss));
            for _ in 0..16 {
                tokio::task::yield_now().await;
            }
        });
    }
    for h in [&hit_1k, &hit_32k] {
        let resp = h.once(&rt);
        assert_eq!(status(&resp), Some(CacheStatus::Hit));
        assert!(resp.body().as_complete().is_some());
    }

    let mut g = bench.group("response_cache");
    // Hits first: the misses insert tens of thousands of entries, which evict the stored hits
    // (the default store keeps 10 000 entries).
    g.baseline("identity", REQUEST, &base);
    g.versus(
        "hit_1k",
        REQUEST,
        ("identity", &base),
        &hit_1k,
        Some(FIVE_US),
    );
    g.versus("hit_32k", REQUEST, ("identity", &base), &hit_32k, None);
    g.baseline("identity_yield", REQUEST, &base_yield);
    g.versus(
        "miss_store_1k",
        REQUEST,
        ("identity_yield", &base_yield),
        &miss_1k,
        None,
    );
    g.versus(
        "miss_store_32k",
        REQUEST,
        ("identity_yield", &base_yield),
        &miss_32k,
        None,
    );
    g.finish();

    let mut g = bench.group("cache_key");
    g.alone("for_request_1k", REQUEST, &key_1k);
    g.alone("for_request_32k", REQUEST, &key_32k);
    g.finish();

    bench.finish();
}
