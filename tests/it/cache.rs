//! ResponseCache alone, over counting `service_fn` fakes.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use switchboard::cache::{CacheStore, CachedEntry, MemoryStore, ResponseCacheLayer};
use switchboard::ext::{CacheStatus, ServedBy};
use switchboard::openai::{
    ChatCompletion, ChatCompletionChunk, ChunkAggregator, FinishReason, ToolCall,
};
use switchboard::{ChatHttpRequest, ChatHttpResponse, ChatResponse, Error, ErrorKind};
use tokio::sync::mpsc;
use tower::util::BoxCloneService;
use tower::{service_fn, Layer, ServiceExt};

type Inner = BoxCloneService<ChatHttpRequest, ChatHttpResponse, Error>;
type Svc = switchboard::cache::ResponseCache<Inner>;
type Item = Result<ChatCompletionChunk, Error>;

/// A fake upstream counting its calls; `f` gets the 0-based call number.
fn counted<F, Fut>(f: F) -> (Inner, Arc<AtomicUsize>)
where
    F: Fn(usize, ChatHttpRequest) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<ChatHttpResponse, Error>> + Send + 'static,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = service_fn(move |req: ChatHttpRequest| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        f(n, req)
    });
    (BoxCloneService::new(svc), calls)
}

fn chunk(json: &str) -> ChatCompletionChunk {
    serde_json::from_str(json).expect("valid chunk")
}

/// Role, text in two pieces, a tool call in fragments, finish, usage.
fn tool_stream() -> Vec<ChatCompletionChunk> {
    [
        r#"{"id":"chatcmpl-up","created":1,"model":"a/b","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-up","created":1,"model":"a/b","choices":[{"index":0,"delta":{"content":"Checking "},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-up","created":1,"model":"a/b","choices":[{"index":0,"delta":{"content":"weather."},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-up","created":1,"model":"a/b","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_9","type":"function","function":{"name":"weather","arguments":"{\"ci"}}]},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-up","created":1,"model":"a/b","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Oslo\"}"}}]},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-up","created":1,"model":"a/b","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"chatcmpl-up","created":1,"model":"a/b","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#,
    ]
    .map(chunk)
    .to_vec()
}

fn fold(chunks: &[ChatCompletionChunk]) -> ChatCompletion {
    let mut a = ChunkAggregator::new();
    for c in chunks {
        a.push(c);
    }
    a.finish()
}

fn stream_of(items: Vec<Item>) -> ChatHttpResponse {
    http::Response::new(ChatResponse::stream(futures_util::stream::iter(items)))
}

fn ok_stream(chunks: Vec<ChatCompletionChunk>) -> ChatHttpResponse {
    stream_of(chunks.into_iter().map(Ok).collect())
}

fn complete(c: ChatCompletion) -> ChatHttpResponse {
    http::Response::new(ChatResponse::from(c))
}

fn status(r: &ChatHttpResponse) -> CacheStatus {
    *r.extensions()
        .get::<CacheStatus>()
        .expect("CacheStatus set")
}

fn with_header(body: &str, cache_control: &str) -> ChatHttpRequest {
    let mut r = request(body);
    r.headers_mut()
        .insert(http::header::CACHE_CONTROL, cache_control.parse().unwrap());
    r
}

async fn call(svc: &Svc, req: ChatHttpRequest) -> Result<ChatHttpResponse, Error> {
    svc.clone().oneshot(req).await
}

async fn chunks_of(resp: ChatHttpResponse) -> Vec<Item> {
    resp.into_body()
        .into_stream()
        .expect("a stream")
        .collect()
        .await
}

async fn ok_chunks(resp: ChatHttpResponse) -> Vec<ChatCompletionChunk> {
    chunks_of(resp)
        .await
        .into_iter()
        .map(|c| c.expect("no error"))
        .collect()
}

/// Waits (by yielding, no timers) until the layer's store writes landed.
async fn settle(layer: &ResponseCacheLayer) {
    for _ in 0..10_000 {
        if layer.in_flight() == 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("flights did not finish");
}

/// Chunks without their id and created, for comparisons.
fn anonymous(chunks: &[ChatCompletionChunk]) -> Vec<ChatCompletionChunk> {
    chunks
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.id = String::new();
            c.created = 0;
            c
        })
        .collect()
}

/// Same answer: text, tool calls, finish reasons, usage token counts.
fn assert_same_answer(a: &ChatCompletion, b: &ChatCompletion) {
    assert_eq!(a.choices.len(), b.choices.len());
    for (x, y) in a.choices.iter().zip(&b.choices) {
        assert_eq!(x.message.content, y.message.content);
        assert_eq!(x.message.tool_calls, y.message.tool_calls);
        assert_eq!(x.finish_reason, y.finish_reason);
    }
    let (ua, ub) = (a.usage.as_ref().unwrap(), b.usage.as_ref().unwrap());
    assert_eq!(
        (ua.prompt_tokens, ua.completion_tokens, ua.total_tokens),
        (ub.prompt_tokens, ub.completion_tokens, ub.total_tokens)
    );
}

fn assert_fresh(id: &str, created: u64, original_id: &str) {
    assert!(id.starts_with("chatcmpl-"), "{id}");
    assert_ne!(id, original_id);
    assert!(created > 1_600_000_000, "created {created} is not now");
}

fn tool_calls(c: &ChatCompletion) -> &[ToolCall] {
    c.choices[0].message.tool_calls.as_deref().unwrap_or(&[])
}

// ---------------------------------------------------------------------------------------
// Hits and misses

#[tokio::test]
async fn miss_then_hit_for_completions() {
    let (inner, calls) = counted(|_, _| async {
        let mut r = complete(completion("a/b", "Hello there"));
        r.extensions_mut().insert(ServedBy {
            provider: "a".into(),
            model: "a/b".into(),
            attempts: Vec::new(),
        });
        Ok(r)
    });
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);

    let first = call(&svc, request(HELLO)).await.unwrap();
    assert_eq!(status(&first), CacheStatus::Miss);
    let first = first
        .into_body()
        .into_complete()
        .unwrap()
        .into_typed()
        .unwrap();
    assert_eq!(
        first.id, "chatcmpl-test",
        "the miss passes the answer through"
    );
    settle(&layer).await;

    let second = call(&svc, request(HELLO)).await.unwrap();
    assert_eq!(status(&second), CacheStatus::Hit);
    let served = second.extensions().get::<ServedBy>().unwrap();
    assert_eq!((&*served.provider, &*served.model), ("a", "a/b"));
    let second = second
        .into_body()
        .into_complete()
        .unwrap()
        .into_typed()
        .unwrap();
    assert_same_answer(&first, &second);
    assert_fresh(&second.id, second.created, &first.id);

    let third = call(&svc, request(HELLO))
        .await
        .unwrap()
        .into_body()
        .into_complete()
        .unwrap()
        .into_typed()
        .unwrap();
    assert_ne!(third.id, second.id);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A different question is a different entry.
    let other = r#"{"model":"a/b","messages":[{"role":"user","content":"bye"}]}"#;
    assert_eq!(
        status(&call(&svc, request(other)).await.unwrap()),
        CacheStatus::Miss
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stream_is_recorded_then_replayed_as_stream_and_as_completion() {
    let (inner, calls) = counted(|_, _| async { Ok(ok_stream(tool_stream())) });
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);

    let first = call(&svc, request(HELLO_STREAM)).await.unwrap();
    assert_eq!(status(&first), CacheStatus::Miss);
    let recorded = ok_chunks(first).await;
    assert_eq!(
        recorded,
        tool_stream(),
        "the miss passes chunks through unchanged"
    );
    settle(&layer).await;

    // As a stream: the same chunks, usage included, under one fresh id.
    let replay = call(&svc, request(HELLO_STREAM)).await.unwrap();
    assert_eq!(status(&replay), CacheStatus::Hit);
    let replayed = ok_chunks(replay).await;
    assert_eq!(anonymous(&replayed), anonymous(&recorded));
    assert!(replayed.last().unwrap().is_usage_only());
    assert!(replayed.iter().all(|c| c.id == replayed[0].id));
    assert_fresh(&replayed[0].id, replayed[0].created, "chatcmpl-up");

    // As a completion: the aggregated answer.
    let whole = call(&svc, request(HELLO)).await.unwrap();
    assert_eq!(status(&whole), CacheStatus::Hit);
    let whole = whole
        .into_body()
        .into_complete()
        .unwrap()
        .into_typed()
        .unwrap();
    assert_same_answer(&whole, &fold(&recorded));
    assert_eq!(
        whole.choices[0].message.content.as_deref(),
        Some("Checking weather.")
    );
    assert_eq!(tool_calls(&whole)[0].id, "call_9");
    assert_eq!(tool_calls(&whole)[0].function.name, "weather");
    assert_eq!(
        tool_calls(&whole)[0].function.arguments,
        r#"{"city":"Oslo"}"#
    );
    assert_eq!(
        whole.choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );
    assert_eq!(whole.usage.as_ref().unwrap().total_tokens, 19);
    assert_fresh(&whole.id, whole.created, "chatcmpl-up");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn completion_is_recorded_then_replayed_as_stream() {
    let original = fold(&tool_stream());
    let (inner, calls) = {
        let original = original.clone();
        counted(move |_, _| {
            let c = original.clone();
            async move { Ok(complete(c)) }
        })
    };
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    let first = call(&svc, request(HELLO)).await.unwrap();
    assert_eq!(
        first
            .into_body()
            .into_complete()
            .unwrap()
            .into_typed()
            .unwrap(),
        original
    );
    settle(&layer).await;

    let replay = call(&svc, request(HELLO_STREAM)).await.unwrap();
    assert_eq!(status(&replay), CacheStatus::Hit);
    let chunks = ok_chunks(replay).await;
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    let tool_chunk = chunks
        .iter()
        .find(|c| c.choices.iter().any(|ch| ch.delta.tool_calls.is_some()))
        .expect("a tool-call chunk");
    assert_eq!(
        tool_chunk.choices[0].delta.tool_calls.as_ref().unwrap()[0].index,
        0
    );
    assert!(chunks.last().unwrap().is_usage_only());
    let folded = fold(&chunks);
    assert_same_answer(&folded, &original);
    assert_fresh(&folded.id, folded.created, &original.id);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn route_decides_the_key() {
    let (inner, calls) = counted(|_, _| async { Ok(complete(completion("a/b", "x"))) });
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    let routed = |cands: &[(&str, &str)]| {
        let mut r = request(HELLO);
        r.extensions_mut().insert(route(cands));
        r
    };
    call(&svc, routed(&[("a", "m"), ("b", "m")])).await.unwrap();
    settle(&layer).await;
    let same = call(&svc, routed(&[("a", "m"), ("b", "m")])).await.unwrap();
    assert_eq!(status(&same), CacheStatus::Hit);
    let other = call(&svc, routed(&[("b", "m"), ("a", "m")])).await.unwrap();
    assert_eq!(status(&other), CacheStatus::Miss);
    let unrouted = call(&svc, request(HELLO)).await.unwrap();
    assert_eq!(status(&unrouted), CacheStatus::Miss);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

// ---------------------------------------------------------------------------------------
// What is never stored

#[tokio::test]
async fn errors_are_never_cached() {
    let (inner, calls) = counted(|n, _| async move {
        if n == 0 {
            Err(Error::new(ErrorKind::Overloaded, "busy"))
        } else {
            Ok(complete(completion("a/b", "ok")))
        }
    });
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    let e = call(&svc, request(HELLO)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded);
    settle(&layer).await;
    let ok = call(&svc, request(HELLO)).await.unwrap();
    assert_eq!(status(&ok), CacheStatus::Miss);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn broken_and_truncated_streams_are_never_cached() {
    let (inner, calls) = counted(|n, _| async move {
        let mut items: Vec<Item> = tool_stream().into_iter().map(Ok).collect();
        match n {
            // Ends with an error item after some output.
            0 => {
                items.truncate(3);
                items.push(Err(Error::upstream("connection reset")));
            }
            // Ends without any finish reason.
            1 => items.truncate(3),
            // Ends "finished" with finish_reason error.
            2 => {
                items.truncate(3);
                items.push(Ok(ChatCompletionChunk::error_chunk(
                    "chatcmpl-up",
                    "a/b",
                    1,
                    &Error::upstream("broke"),
                )));
            }
            _ => {}
        }
        Ok(stream_of(items))
    });
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);

    let got = chunks_of(call(&svc, request(HELLO_STREAM)).await.unwrap()).await;
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].as_ref().unwrap_err().kind(), ErrorKind::Upstream);
    settle(&layer).await;
    let got = ok_chunks(call(&svc, request(HELLO_STREAM)).await.unwrap()).await;
    assert_eq!(got.len(), 3, "a truncated stream passes through as it is");
    settle(&layer).await;
    ok_chunks(call(&svc, request(HELLO_STREAM)).await.unwrap()).await;
    settle(&layer).await;
    let fourth = call(&svc, request(HELLO_STREAM)).await.unwrap();
    assert_eq!(status(&fourth), CacheStatus::Miss);
    ok_chunks(fourth).await;
    settle(&layer).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // The first complete one is stored.
    let fifth = call(&svc, request(HELLO_STREAM)).await.unwrap();
    assert_eq!(status(&fifth), CacheStatus::Hit);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn entries_over_the_size_limit_are_not_stored() {
    let big = "x".repeat(4_000);
    let (inner, calls) = counted(move |_, req: ChatHttpRequest| {
        let text = if req.body().summary.text_bytes > 2 {
            big.clone()
        } else {
            "small".to_owned()
        };
        async move {
            if text.len() > 100 && req.body().is_stream() {
                let mut items = vec![role_chunk()];
                items.extend(
                    text.as_bytes()
                        .chunks(500)
                        .map(|p| text_chunk(std::str::from_utf8(p).unwrap())),
                );
                items.push(finish_chunk());
                items.push(usage_chunk());
                Ok(ok_stream(items))
            } else {
                Ok(complete(completion("a/b", &text)))
            }
        }
    });
    let layer = ResponseCacheLayer::default().max_entry_bytes(2_000);
    let svc = layer.layer(inner);
    // "hi" is 2 bytes: the small answer is stored.
    call(&svc, request(HELLO)).await.unwrap();
    settle(&layer).await;
    assert_eq!(
        status(&call(&svc, request(HELLO)).await.unwrap()),
        CacheStatus::Hit
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A big completion is served but not stored.
    let long = r#"{"model":"a/b","messages":[{"role":"user","content":"long"}]}"#;
    for _ in 0..2 {
        let r = call(&svc, request(long)).await.unwrap();
        assert_eq!(status(&r), CacheStatus::Miss);
        let c = r.into_body().into_complete().unwrap().into_typed().unwrap();
        assert_eq!(c.choices[0].message.content.as_ref().unwrap().len(), 4_000);
        settle(&layer).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // A big stream passes through whole but is not stored.
    let long_stream =
        r#"{"model":"a/b","stream":true,"messages":[{"role":"user","content":"long"}]}"#;
    for _ in 0..2 {
        let r = call(&svc, request(long_stream)).await.unwrap();
        assert_eq!(status(&r), CacheStatus::Miss);
        let text: String = ok_chunks(r)
            .await
            .iter()
            .filter_map(|c| c.choices.first()?.delta.content.clone())
            .collect();
        assert_eq!(text.len(), 4_000);
        settle(&layer).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

// ---------------------------------------------------------------------------------------
// Per-request control

#[tokio::test]
async fn no_cache_refetches_and_refreshes_the_entry() {
    let (inner, calls) =
        counted(|n, _| async move { Ok(complete(completion("a/b", &format!("version {n}")))) });
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    call(&svc, request(HELLO)).await.unwrap();
    settle(&layer).await;
    let fresh = call(&svc, with_header(HELLO, "no-cache")).await.unwrap();
    assert_eq!(status(&fresh), CacheStatus::Miss);
    settle(&layer).await;
    let hit = call(&svc, request(HELLO)).await.unwrap();
    assert_eq!(status(&hit), CacheStatus::Hit);
    let c = hit
        .into_body()
        .into_complete()
        .unwrap()
        .into_typed()
        .unwrap();
    assert_eq!(c.choices[0].message.content.as_deref(), Some("version 1"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn no_store_neither_reads_nor_writes() {
    let (inner, calls) = counted(|_, _| async { Ok(complete(completion("a/b", "x"))) });
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    let r = call(&svc, with_header(HELLO, "no-store")).await.unwrap();
    assert_eq!(status(&r), CacheStatus::Bypass);
    settle(&layer).await;
    let r = call(&svc, request(HELLO)).await.unwrap();
    assert_eq!(status(&r), CacheStatus::Miss, "no-store wrote nothing");
    settle(&layer).await;
    let r = call(&svc, with_header(HELLO, "max-age=60, No-Store"))
        .await
        .unwrap();
    assert_eq!(status(&r), CacheStatus::Bypass, "no-store read nothing");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn max_age_limits_reads_and_caps_the_ttl() {
    let (inner, calls) =
        counted(|n, _| async move { Ok(complete(completion("a/b", &format!("version {n}")))) });
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    call(&svc, request(HELLO)).await.unwrap();
    settle(&layer).await;
    tokio::time::advance(Duration::from_secs(30)).await;

    // 30 s old: too old for max-age=10, fine for max-age=60.
    let ok = call(&svc, with_header(HELLO, "max-age=60")).await.unwrap();
    assert_eq!(status(&ok), CacheStatus::Hit);
    let stale = call(&svc, with_header(HELLO, "max-age=10")).await.unwrap();
    assert_eq!(status(&stale), CacheStatus::Miss);
    settle(&layer).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // The refreshed entry lives 10 s (its request's max-age), not the default hour.
    tokio::time::advance(Duration::from_secs(9)).await;
    let hit = call(&svc, request(HELLO)).await.unwrap();
    assert_eq!(status(&hit), CacheStatus::Hit);
    let c = hit
        .into_body()
        .into_complete()
        .unwrap()
        .into_typed()
        .unwrap();
    assert_eq!(c.choices[0].message.content.as_deref(), Some("version 1"));
    tokio::time::advance(Duration::from_secs(2)).await;
    let expired = call(&svc, request(HELLO)).await.unwrap();
    assert_eq!(status(&expired), CacheStatus::Miss);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // max-age=0 never reads, and stores nothing.
    settle(&layer).await;
    let zero = call(&svc, with_header(HELLO, "max-age=0")).await.unwrap();
    assert_eq!(status(&zero), CacheStatus::Miss);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_the_ttl() {
    let (inner, calls) = counted(|_, _| async { Ok(complete(completion("a/b", "x"))) });
    let layer = ResponseCacheLayer::default().ttl(Duration::from_secs(60));
    let svc = layer.layer(inner);
    call(&svc, request(HELLO)).await.unwrap();
    settle(&layer).await;
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(
        status(&call(&svc, request(HELLO)).await.unwrap()),
        CacheStatus::Hit
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        status(&call(&svc, request(HELLO)).await.unwrap()),
        CacheStatus::Miss
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn deterministic_only_caches_temperature_zero_or_seeded_requests() {
    let (inner, calls) = counted(|_, _| async { Ok(complete(completion("a/b", "x"))) });
    let layer = ResponseCacheLayer::default().deterministic_only(true);
    let svc = layer.layer(inner);
    let warm = r#"{"model":"a/b","temperature":0.7,"messages":[{"role":"user","content":"hi"}]}"#;
    let cold = r#"{"model":"a/b","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;
    let seeded = r#"{"model":"a/b","seed":7,"messages":[{"role":"user","content":"hi"}]}"#;
    for body in [HELLO, HELLO, warm, warm] {
        let r = call(&svc, request(body)).await.unwrap();
        assert_eq!(status(&r), CacheStatus::Bypass, "{body}");
        settle(&layer).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    for body in [cold, seeded] {
        assert_eq!(
            status(&call(&svc, request(body)).await.unwrap()),
            CacheStatus::Miss
        );
        settle(&layer).await;
        assert_eq!(
            status(&call(&svc, request(body)).await.unwrap()),
            CacheStatus::Hit
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

// ---------------------------------------------------------------------------------------
// Single flight

/// An upstream whose single answer is released by the test.
type Gate = Arc<Mutex<Option<tokio::sync::oneshot::Receiver<Result<ChatHttpResponse, Error>>>>>;

fn gated() -> (
    Inner,
    Arc<AtomicUsize>,
    tokio::sync::oneshot::Sender<Result<ChatHttpResponse, Error>>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let gate: Gate = Arc::new(Mutex::new(Some(rx)));
    let (inner, calls) = counted(move |_, _| {
        let rx = gate.lock().unwrap().take();
        async move {
            match rx {
                Some(rx) => rx
                    .await
                    .unwrap_or_else(|_| Err(Error::upstream("gate dropped"))),
                None => Err(Error::upstream("called twice")),
            }
        }
    });
    (inner, calls, tx)
}

/// An upstream streaming whatever the test sends; the stream ends when the sender drops.
/// `dropped` turns true when the upstream stream is dropped.
fn channel_upstream() -> (
    Inner,
    Arc<AtomicUsize>,
    mpsc::UnboundedSender<Item>,
    Arc<AtomicBool>,
) {
    let (tx, rx) = mpsc::unbounded_channel::<Item>();
    let rx = Arc::new(Mutex::new(Some(rx)));
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    let (inner, calls) = counted(move |_, _| {
        let rx = rx.lock().unwrap().take();
        let d = d.clone();
        async move {
            let Some(mut rx) = rx else {
                return Err(Error::upstream("called twice"));
            };
            let guard = DropFlag(d);
            Ok(http::Response::new(ChatResponse::stream(
                futures_util::stream::poll_fn(move |cx| {
                    let _ = &guard;
                    rx.poll_recv(cx)
                }),
            )))
        }
    });
    (inner, calls, tx, dropped)
}

struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_identical_requests_make_one_upstream_call() {
    let (inner, calls, release) = gated();
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(request(HELLO)).await })
        })
        .collect();
    // Let every task reach the cache (they park on the flight or the gate).
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    release
        .send(Ok(complete(completion("a/b", "shared"))))
        .unwrap();
    let mut statuses = Vec::new();
    let mut ids = Vec::new();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        statuses.push(status(&r));
        let c = r.into_body().into_complete().unwrap().into_typed().unwrap();
        assert_eq!(c.choices[0].message.content.as_deref(), Some("shared"));
        ids.push(c.id);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        statuses.iter().filter(|s| **s == CacheStatus::Miss).count(),
        1
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == CacheStatus::Hit).count(),
        19
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "every waiter gets its own id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_waiters_follow_the_leader_live() {
    let (inner, calls, upstream, _) = channel_upstream();
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    let (first_tx, mut first_rx) = mpsc::unbounded_channel::<usize>();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let svc = svc.clone();
            let first_tx = first_tx.clone();
            tokio::spawn(async move {
                let r = svc.oneshot(request(HELLO_STREAM)).await.unwrap();
                let st = status(&r);
                let mut s = r.into_body().into_stream().unwrap();
                let first = s.next().await.unwrap().unwrap();
                first_tx.send(i).unwrap();
                let mut all = vec![first];
                while let Some(c) = s.next().await {
                    all.push(c.unwrap());
                }
                (st, all)
            })
        })
        .collect();
    drop(first_tx);

    let chunks = tool_stream();
    upstream.send(Ok(chunks[0].clone())).unwrap();
    upstream.send(Ok(chunks[1].clone())).unwrap();
    // Every waiter gets its first chunk while the upstream is still open.
    let mut got_first = Vec::new();
    while got_first.len() < 20 {
        got_first.push(first_rx.recv().await.unwrap());
    }
    assert!(!upstream.is_closed());
    for c in &chunks[2..] {
        upstream.send(Ok(c.clone())).unwrap();
    }
    drop(upstream);

    let mut misses = 0;
    for t in tasks {
        let (st, all) = t.await.unwrap();
        if st == CacheStatus::Miss {
            misses += 1;
        }
        assert_eq!(anonymous(&all), anonymous(&chunks));
    }
    assert_eq!(misses, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    settle(&layer).await;
    let r = call(&svc, request(HELLO)).await.unwrap();
    assert_eq!(status(&r), CacheStatus::Hit);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn waiters_get_their_own_shape() {
    // A streaming leader; a completion waiter gets the aggregate when the stream is done.
    let (inner, calls, upstream, _) = channel_upstream();
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    let leader = call(&svc, request(HELLO_STREAM)).await.unwrap();
    let waiter = tokio::spawn({
        let svc = svc.clone();
        async move { svc.oneshot(request(HELLO)).await }
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    for c in tool_stream() {
        upstream.send(Ok(c)).unwrap();
    }
    drop(upstream);
    let streamed = ok_chunks(leader).await;
    let r = waiter.await.unwrap().unwrap();
    assert_eq!(status(&r), CacheStatus::Hit);
    let c = r.into_body().into_complete().unwrap().into_typed().unwrap();
    assert_same_answer(&c, &fold(&streamed));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A completion leader; a streaming waiter gets it as chunks.
    let (inner, calls, release) = gated();
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    let leader = tokio::spawn({
        let svc = svc.clone();
        async move { svc.oneshot(request(HELLO)).await }
    });
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let waiter = tokio::spawn({
        let svc = svc.clone();
        async move { svc.oneshot(request(HELLO_STREAM)).await }
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    let original = fold(&tool_stream());
    release.send(Ok(complete(original.clone()))).unwrap();
    let led = leader.await.unwrap().unwrap();
    assert_eq!(status(&led), CacheStatus::Miss);
    let r = waiter.await.unwrap().unwrap();
    assert_eq!(status(&r), CacheStatus::Hit);
    let chunks = ok_chunks(r).await;
    assert_same_answer(&fold(&chunks), &original);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn errors_reach_every_waiter_and_nothing_is_stored() {
    let (inner, calls, release) = gated();
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let svc = svc.clone();
            let body = if i % 2 == 0 { HELLO } else { HELLO_STREAM };
            tokio::spawn(async move { svc.oneshot(request(body)).await })
        })
        .collect();
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    release
        .send(Err(Error::new(ErrorKind::RateLimited, "slow down")))
        .unwrap();
    for t in tasks {
        let e = t.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(layer.in_flight(), 0);

    // A stream breaking midway: streaming waiters get what came, then the error;
    // completion waiters get the error.
    let (inner, calls, upstream, _) = channel_upstream();
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    let leader = call(&svc, request(HELLO_STREAM)).await.unwrap();
    let follower = call(&svc, request(HELLO_STREAM)).await.unwrap();
    assert_eq!(status(&follower), CacheStatus::Hit);
    let whole = tokio::spawn({
        let svc = svc.clone();
        async move { svc.oneshot(request(HELLO)).await }
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    let chunks = tool_stream();
    upstream.send(Ok(chunks[0].clone())).unwrap();
    upstream.send(Ok(chunks[1].clone())).unwrap();
    upstream
        .send(Err(Error::new(ErrorKind::Timeout, "idle")))
        .unwrap();
    drop(upstream);
    for r in [leader, follower] {
        let items = chunks_of(r).await;
        assert_eq!(items.len(), 3);
        assert_eq!(items[2].as_ref().unwrap_err().kind(), ErrorKind::Timeout);
    }
    assert_eq!(whole.await.unwrap().unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(layer.in_flight(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn followers_get_the_whole_answer_when_the_leader_hangs_up() {
    let (inner, calls, upstream, dropped) = channel_upstream();
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    let chunks = tool_stream();

    let leader = call(&svc, request(HELLO_STREAM)).await.unwrap();
    let mut leader = leader.into_body().into_stream().unwrap();
    upstream.send(Ok(chunks[0].clone())).unwrap();
    leader.next().await.unwrap().unwrap();
    let follower = call(&svc, request(HELLO_STREAM)).await.unwrap();
    assert_eq!(status(&follower), CacheStatus::Hit);

    drop(leader); // the leader's client goes away mid-stream
    assert!(
        !dropped.load(Ordering::SeqCst),
        "the upstream goes on for the follower"
    );
    for c in &chunks[1..] {
        upstream.send(Ok(c.clone())).unwrap();
    }
    drop(upstream);
    let got = ok_chunks(follower).await;
    assert_eq!(anonymous(&got), anonymous(&chunks));
    settle(&layer).await;
    assert_eq!(
        status(&call(&svc, request(HELLO)).await.unwrap()),
        CacheStatus::Hit,
        "the answer finished by the follower is stored"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_leader_hanging_up_alone_drops_the_upstream_and_stores_nothing() {
    let (inner, calls, upstream, dropped) = channel_upstream();
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    let leader = call(&svc, request(HELLO_STREAM)).await.unwrap();
    let mut leader = leader.into_body().into_stream().unwrap();
    upstream.send(Ok(tool_stream()[0].clone())).unwrap();
    leader.next().await.unwrap().unwrap();
    drop(leader);
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(layer.in_flight(), 0);
    drop(upstream);

    // The next identical request is a miss (it would call the upstream again).
    let again = call(&svc, request(HELLO)).await;
    assert_eq!(again.unwrap_err().message(), "called twice");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn followers_get_the_answer_when_the_leader_hangs_up_before_the_head() {
    let (inner, calls, release) = gated();
    let layer = ResponseCacheLayer::default();
    let svc = layer.layer(inner);
    let leader = tokio::spawn({
        let svc = svc.clone();
        async move { svc.oneshot(request(HELLO)).await }
    });
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let follower = tokio::spawn({
        let svc = svc.clone();
        async move { svc.oneshot(request(HELLO)).await }
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    release
        .send(Ok(complete(completion("a/b", "still here"))))
        .unwrap();
    let r = follower.await.unwrap().unwrap();
    assert_eq!(status(&r), CacheStatus::Hit);
    let c = r.into_body().into_complete().unwrap().into_typed().unwrap();
    assert_eq!(c.choices[0].message.content.as_deref(), Some("still here"));
    settle(&layer).await;
    assert_eq!(
        status(&call(&svc, request(HELLO)).await.unwrap()),
        CacheStatus::Hit
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------
// Stores

/// A store that always fails.
#[derive(Debug)]
struct BrokenStore;

impl CacheStore for BrokenStore {
    fn get(
        &self,
        _key: switchboard::cache::CacheKey,
    ) -> BoxFuture<'_, Result<Option<Arc<CachedEntry>>, Error>> {
        Box::pin(async { Err(Error::upstream("store down")) })
    }
    fn put(
        &self,
        _key: switchboard::cache::CacheKey,
        _entry: Arc<CachedEntry>,
        _ttl: Duration,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Err(Error::upstream("store down")) })
    }
}

#[tokio::test]
async fn a_failing_store_reads_as_a_miss() {
    let (inner, calls) = counted(|_, _| async { Ok(complete(completion("a/b", "x"))) });
    let layer = ResponseCacheLayer::new(BrokenStore);
    let svc = layer.layer(inner);
    for _ in 0..2 {
        let r = call(&svc, request(HELLO)).await.unwrap();
        assert_eq!(status(&r), CacheStatus::Miss);
        settle(&layer).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn layers_sharing_a_store_share_entries() {
    let store = Arc::new(MemoryStore::default());
    let (inner, calls) = counted(|_, _| async { Ok(complete(completion("a/b", "x"))) });
    let a = ResponseCacheLayer::new(store.clone());
    let b = ResponseCacheLayer::new(store);
    call(&a.layer(inner.clone()), request(HELLO)).await.unwrap();
    settle(&a).await;
    let r = call(&b.layer(inner), request(HELLO)).await.unwrap();
    assert_eq!(status(&r), CacheStatus::Hit);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[cfg(feature = "redis")]
mod redis_store {
    use super::*;
    use switchboard::cache::RedisStore;

    use crate::support::redis_server::start;

    #[tokio::test]
    async fn redis_store_serves_hits_across_instances() {
        let Some(server) = start() else { return };
        let (inner, calls) = counted(|_, _| async { Ok(ok_stream(tool_stream())) });
        let a = ResponseCacheLayer::new(RedisStore::connect(&server.url).await.unwrap())
            .ttl(Duration::from_secs(30));
        let b = ResponseCacheLayer::new(RedisStore::connect(&server.url).await.unwrap());

        let first = call(&a.layer(inner.clone()), request(HELLO_STREAM))
            .await
            .unwrap();
        assert_eq!(status(&first), CacheStatus::Miss);
        let recorded = ok_chunks(first).await;
        settle(&a).await;

        // Another instance (its own in-flight map) reads the entry from Redis.
        let svc_b = b.layer(inner);
        let replay = call(&svc_b, request(HELLO_STREAM)).await.unwrap();
        assert_eq!(status(&replay), CacheStatus::Hit);
        assert_eq!(anonymous(&ok_chunks(replay).await), anonymous(&recorded));
        let whole = call(&svc_b, request(HELLO)).await.unwrap();
        assert_eq!(status(&whole), CacheStatus::Hit);
        assert_same_answer(
            &whole
                .into_body()
                .into_complete()
                .unwrap()
                .into_typed()
                .unwrap(),
            &fold(&recorded),
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Stored with `SET … PX`: one key with a TTL of at most 30 s.
        let client = redis::Client::open(server.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("switchboard:cache:*")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(keys.len(), 1);
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&keys[0])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(pttl > 0 && pttl <= 30_000, "{pttl}");
    }

    #[tokio::test]
    async fn redis_entries_expire() {
        let Some(server) = start() else { return };
        let store = RedisStore::connect(&server.url).await.unwrap();
        let (inner, calls) = counted(|_, _| async { Ok(complete(completion("a/b", "x"))) });
        let layer = ResponseCacheLayer::new(store).ttl(Duration::from_millis(200));
        let svc = layer.layer(inner);
        call(&svc, request(HELLO)).await.unwrap();
        settle(&layer).await;
        assert_eq!(
            status(&call(&svc, request(HELLO)).await.unwrap()),
            CacheStatus::Hit
        );
        // Redis expires by its own clock: wait (bounded) until the entry is gone.
        let start = std::time::SystemTime::now();
        loop {
            let r = call(&svc, request(HELLO)).await.unwrap();
            settle(&layer).await;
            if status(&r) == CacheStatus::Miss {
                break;
            }
            assert!(start.elapsed().unwrap_or_default() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_to_connect_cleanly() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let e = RedisStore::connect(&format!("redis://127.0.0.1:{port}/"))
            .await
            .unwrap_err();
        assert!(e.message().contains("Redis"), "{e}");
    }
}

// ---------------------------------------------------------------------------------------
// Billing a flight's leader (CostMeter over the cache)

type Records = Arc<Mutex<Vec<switchboard::cost::CostRecord>>>;

/// CostMeter (alice has a budget) over the cache over `inner`, which is said to be served by
/// `a/b` at $1/M input and $2/M output.
fn metered(
    layer: &ResponseCacheLayer,
    inner: Inner,
) -> (
    BoxCloneService<ChatHttpRequest, ChatHttpResponse, Error>,
    Records,
    switchboard::cost::Budgets,
) {
    use switchboard::cost::{Budget, Budgets, CostMeterLayer, Window};
    let inner = inner.map_response(|mut r: ChatHttpResponse| {
        r.extensions_mut().insert(ServedBy {
            provider: "a".into(),
            model: "a/b".into(),
            attempts: vec![],
        });
        r
    });
    let budgets = Budgets::default().with("alice", Budget::usd(1.0, Window::Total));
    let recs: Records = Arc::default();
    let r = recs.clone();
    let svc = CostMeterLayer::new()
        .budgets(budgets.clone())
        .sink(move |rec: &switchboard::cost::CostRecord| r.lock().unwrap().push(rec.clone()))
        .layer(layer.layer(inner));
    (BoxCloneService::new(svc), recs, budgets)
}

fn alices(body: &str) -> ChatHttpRequest {
    use switchboard::catalog::Pricing;
    use switchboard::ext::{CallerKey, Route};
    let mut c = candidate("a", "b");
    c.pricing = Some(Pricing {
        input: 1.0,
        output: 2.0,
        ..Pricing::default()
    });
    let mut r = request(body);
    r.extensions_mut().insert(Route {
        requested: "a/b".into(),
        candidates: vec![c].into(),
    });
    r.extensions_mut().insert(CallerKey("alice".into()));
    r
}

/// Waits (bounded) until the sink has `n` records and the budget store `usd`.
async fn billed(recs: &Records, budgets: &switchboard::cost::Budgets, n: usize, usd: f64) {
    let mut spent = 0.0;
    for _ in 0..500 {
        spent = budgets.store().committed("alice", "total").await.usd();
        if recs.lock().unwrap().len() >= n && (spent - usd).abs() < 1e-12 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!(
        "expected {n} records and ${usd}, got {:?} and ${spent}",
        recs.lock().unwrap()
    );
}

#[tokio::test]
async fn a_leader_hanging_up_mid_stream_is_billed_what_the_upstream_really_used() {
    let (inner, _, upstream, _) = channel_upstream();
    let layer = ResponseCacheLayer::default();
    let (svc, recs, budgets) = metered(&layer, inner);
    let chunks = tool_stream();

    let leader = svc.clone().oneshot(alices(HELLO_STREAM)).await.unwrap();
    let mut leader = leader.into_body().into_stream().unwrap();
    upstream.send(Ok(chunks[0].clone())).unwrap();
    leader.next().await.unwrap().unwrap();
    let follower = svc.clone().oneshot(alices(HELLO_STREAM)).await.unwrap();
    assert_eq!(status(&follower), CacheStatus::Hit);
    drop(leader);
    for c in &chunks[1..] {
        upstream.send(Ok(c.clone())).unwrap();
    }
    drop(upstream);
    assert_eq!(ok_chunks(follower).await.len(), chunks.len());
    // The usage chunk says 12 prompt and 7 completion tokens: 12 × $1/M + 7 × $2/M.
    billed(&recs, &budgets, 2, 0.000_026).await;
    let r = recs.lock().unwrap();
    let lead = r
        .iter()
        .find(|r| r.cache == Some(CacheStatus::Miss))
        .unwrap();
    assert!(!lead.usage_estimated, "the real usage, not an estimate");
    assert_eq!(lead.usage.as_ref().unwrap().completion_tokens, 7);
    let follow = r
        .iter()
        .find(|r| r.cache == Some(CacheStatus::Hit))
        .unwrap();
    assert_eq!(
        follow.cost.unwrap().total().usd(),
        0.0,
        "followers are hits"
    );
}

#[tokio::test]
async fn a_leader_hanging_up_before_the_head_is_billed_what_the_upstream_really_used() {
    let (inner, calls, release) = gated();
    let layer = ResponseCacheLayer::default();
    let (svc, recs, budgets) = metered(&layer, inner);
    let leader = tokio::spawn(svc.clone().oneshot(alices(HELLO)));
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let follower = tokio::spawn(svc.clone().oneshot(alices(HELLO)));
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    release
        .send(Ok(complete(completion("a/b", "still here"))))
        .unwrap();
    let r = follower.await.unwrap().unwrap();
    assert_eq!(status(&r), CacheStatus::Hit);
    // support::completion uses 3 prompt and 2 completion tokens: 3 × $1/M + 2 × $2/M.
    billed(&recs, &budgets, 2, 0.000_007).await;
    let r = recs.lock().unwrap();
    let lead = r
        .iter()
        .find(|r| r.cache != Some(CacheStatus::Hit))
        .unwrap();
    assert!(!lead.usage_estimated);
    assert_eq!(lead.usage.as_ref().unwrap().prompt_tokens, 3);
}

#[tokio::test]
async fn an_abandoned_answer_is_cancelled_once_its_last_follower_leaves() {
    let (inner, calls, upstream, dropped) = channel_upstream();
    let layer = ResponseCacheLayer::default();
    let (svc, recs, _) = metered(&layer, inner);
    let chunks = tool_stream();

    let leader = svc.clone().oneshot(alices(HELLO_STREAM)).await.unwrap();
    let mut leader = leader.into_body().into_stream().unwrap();
    upstream.send(Ok(chunks[0].clone())).unwrap();
    upstream.send(Ok(chunks[1].clone())).unwrap();
    leader.next().await.unwrap().unwrap();
    let follower = svc.clone().oneshot(alices(HELLO_STREAM)).await.unwrap();
    let mut follower = follower.into_body().into_stream().unwrap();
    drop(leader);
    follower.next().await.unwrap().unwrap();
    assert!(
        !dropped.load(Ordering::SeqCst),
        "the follower still wants it"
    );
    drop(follower);
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(
        dropped.load(Ordering::SeqCst),
        "nobody wants the rest: the upstream call is cancelled"
    );
    assert_eq!(layer.in_flight(), 0);
    // The leader pays an estimate of what was generated (never $0), the follower nothing.
    for _ in 0..500 {
        if recs.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let r = recs.lock().unwrap();
    let lead = r
        .iter()
        .find(|r| r.cache == Some(CacheStatus::Miss))
        .unwrap();
    assert!(lead.usage_estimated);
    assert!(lead.cost.unwrap().total().usd() > 0.0);
    drop(upstream);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_abandoned_answer_may_finish_for_the_store_within_a_bound() {
    let (inner, calls, upstream, dropped) = channel_upstream();
    let layer = ResponseCacheLayer::default().finish_abandoned_within(Duration::from_secs(60));
    let (svc, recs, budgets) = metered(&layer, inner);
    let chunks = tool_stream();

    let leader = svc.clone().oneshot(alices(HELLO_STREAM)).await.unwrap();
    let mut leader = leader.into_body().into_stream().unwrap();
    upstream.send(Ok(chunks[0].clone())).unwrap();
    leader.next().await.unwrap().unwrap();
    drop(leader); // alone: nobody follows, but the store wants the answer
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(!dropped.load(Ordering::SeqCst), "finished for the store");
    for c in &chunks[1..] {
        upstream.send(Ok(c.clone())).unwrap();
    }
    drop(upstream);
    settle(&layer).await;
    // The caller pays the real usage once; the retry is a hit.
    billed(&recs, &budgets, 1, 0.000_026).await;
    assert!(!recs.lock().unwrap()[0].usage_estimated);
    let again = svc.clone().oneshot(alices(HELLO)).await.unwrap();
    assert_eq!(status(&again), CacheStatus::Hit);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn finishing_an_abandoned_answer_for_the_store_is_bounded_in_time_and_size() {
    // Time: an upstream that stalls is dropped when the bound passes.
    let (inner, _, upstream, dropped) = channel_upstream();
    let layer = ResponseCacheLayer::default().finish_abandoned_within(Duration::from_secs(5));
    let (svc, recs, _) = metered(&layer, inner);
    let leader = svc.clone().oneshot(alices(HELLO_STREAM)).await.unwrap();
    let mut leader = leader.into_body().into_stream().unwrap();
    upstream.send(Ok(tool_stream()[0].clone())).unwrap();
    leader.next().await.unwrap().unwrap();
    drop(leader);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!dropped.load(Ordering::SeqCst));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "dropped when the bound passed"
    );
    assert_eq!(layer.in_flight(), 0);
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(recs.lock().unwrap()[0].usage_estimated);
    drop(upstream);

    // Size: once the answer outgrows max_entry_bytes the store no longer wants it.
    let (inner, _, upstream, dropped) = channel_upstream();
    let layer = ResponseCacheLayer::default()
        .finish_abandoned_within(Duration::from_secs(60))
        .max_entry_bytes(2_000);
    let (svc, _, _) = metered(&layer, inner);
    let leader = svc.clone().oneshot(alices(HELLO_STREAM)).await.unwrap();
    let mut leader = leader.into_body().into_stream().unwrap();
    upstream.send(Ok(tool_stream()[0].clone())).unwrap();
    leader.next().await.unwrap().unwrap();
    drop(leader);
    tokio::task::yield_now().await;
    assert!(!dropped.load(Ordering::SeqCst));
    upstream.send(Ok(tool_stream()[1].clone())).unwrap();
    let mut big = tool_stream()[1].clone();
    big.choices[0].delta.content = Some("x".repeat(4_000));
    upstream.send(Ok(big)).unwrap();
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        dropped.load(Ordering::SeqCst),
        "dropped once too big to store"
    );
    drop(upstream);
}
