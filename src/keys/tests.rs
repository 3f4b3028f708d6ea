//! ClientKeys: keys, allow-lists and rate limits over the in-memory store, and the policy
//! when a shared store fails.

use super::*;
use crate::chat::ChatResponse;
use tower::{service_fn, ServiceExt};

fn req(key: Option<&str>, body: &str) -> ChatHttpRequest {
    let mut b = http::Request::builder();
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    b.body(Arc::new(ChatRequest::from_slice(body.as_bytes()).unwrap()))
        .unwrap()
}

fn ok(
) -> impl Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error, Future = impl Send> + Clone
{
    service_fn(|r: ChatHttpRequest| async move {
        let who = r.extensions().get::<CallerKey>().unwrap().0.to_string();
        Ok(http::Response::new(ChatResponse::from(
            crate::openai::ChatCompletion {
                id: who,
                object: "chat.completion".into(),
                created: 0,
                model: "m".into(),
                choices: vec![],
                usage: None,
                system_fingerprint: None,
                service_tier: None,
                provider: None,
            },
        )))
    })
}

const BODY: &str = r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn keys_callers_and_allow_lists() {
    let svc = ClientKeysLayer::new()
        .key(
            "sk-a",
            KeyPolicy::new("alice").allow_models(["openai/*", "fast"]),
        )
        .key("sk-b", KeyPolicy::new("bob"))
        .layer(ok());
    assert_eq!(
        svc.clone()
            .oneshot(req(None, BODY))
            .await
            .unwrap_err()
            .status(),
        401
    );
    assert_eq!(
        svc.clone()
            .oneshot(req(Some("sk-x"), BODY))
            .await
            .unwrap_err()
            .status(),
        401
    );
    let r = svc.clone().oneshot(req(Some("sk-a"), BODY)).await.unwrap();
    assert_eq!(
        r.into_body()
            .into_complete()
            .unwrap()
            .into_typed()
            .unwrap()
            .id,
        "alice"
    );
    let other = r#"{"model":"openai/gpt-4o","models":["anthropic/claude"],"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        svc.clone()
            .oneshot(req(Some("sk-a"), other))
            .await
            .unwrap_err()
            .status(),
        403
    );
    assert!(svc.oneshot(req(Some("sk-b"), other)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn rate_limits_in_requests_and_tokens() {
    let svc = ClientKeysLayer::new()
        .key("sk-a", KeyPolicy::new("a").requests_per_minute(2))
        .key("sk-t", KeyPolicy::new("t").tokens_per_minute(100))
        .layer(ok());
    assert!(svc.clone().oneshot(req(Some("sk-a"), BODY)).await.is_ok());
    assert!(svc.clone().oneshot(req(Some("sk-a"), BODY)).await.is_ok());
    let e = svc
        .clone()
        .oneshot(req(Some("sk-a"), BODY))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 429);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(svc.clone().oneshot(req(Some("sk-a"), BODY)).await.is_ok());
    let big = r#"{"model":"m","max_tokens":90,"messages":[{"role":"user","content":"hi"}]}"#;
    assert!(svc.clone().oneshot(req(Some("sk-t"), big)).await.is_ok());
    let e = svc
        .clone()
        .oneshot(req(Some("sk-t"), big))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
}

#[tokio::test]
async fn keys_are_kept_as_digests_and_never_printed() {
    // sha256("sk-hashed")
    let hex = "1f1c3d2ac0a55d6f8e8f0e2b5cf0e3c3a8a3ad35b0c7f5f1b7bde9e6d3c8c4a1";
    let layer = ClientKeysLayer::new()
        .key("sk-plain-SECRET", KeyPolicy::new("plain"))
        .key_sha256(&hex_digest("sk-hashed"), KeyPolicy::new("hashed"))
        .unwrap();
    let printed = format!("{layer:?}");
    assert!(
        printed.contains("plain") && printed.contains("hashed"),
        "{printed}"
    );
    assert!(
        !printed.contains("SECRET") && !printed.contains("sk-"),
        "{printed}"
    );
    let svc = layer.clone().layer(ok());
    let r = svc
        .clone()
        .oneshot(req(Some("sk-hashed"), BODY))
        .await
        .unwrap();
    assert_eq!(
        r.into_body()
            .into_complete()
            .unwrap()
            .into_typed()
            .unwrap()
            .id,
        "hashed"
    );
    let r = svc
        .clone()
        .oneshot(req(Some("sk-plain-SECRET"), BODY))
        .await
        .unwrap();
    assert_eq!(
        r.into_body()
            .into_complete()
            .unwrap()
            .into_typed()
            .unwrap()
            .id,
        "plain"
    );
    // A prefix, a longer key and a wrong digest are all refused the same way.
    for bad in ["sk-plain", "sk-plain-SECRET-and-more", hex] {
        let e = svc.clone().oneshot(req(Some(bad), BODY)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
    }
    assert!(ClientKeysLayer::new()
        .key_sha256("abc", KeyPolicy::new("x"))
        .is_err());
    // The digest as `printf %s abc | sha256sum` prints it (upper case accepted too).
    let abc = ClientKeysLayer::new()
        .key_sha256(
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
            KeyPolicy::new("abc"),
        )
        .unwrap()
        .layer(ok());
    assert!(abc.oneshot(req(Some("abc"), BODY)).await.is_ok());
    assert!(ClientKeysLayer::new()
        .key_sha256(&"g".repeat(64), KeyPolicy::new("x"))
        .is_err());
}

/// A completion reporting `used` tokens (`None`: no usage).
fn completion(used: Option<u64>) -> ChatHttpResponse {
    http::Response::new(ChatResponse::from(crate::openai::ChatCompletion {
        id: "x".into(),
        object: "chat.completion".into(),
        created: 0,
        model: "m".into(),
        choices: vec![],
        usage: used.map(|n| crate::openai::Usage {
            prompt_tokens: 1,
            completion_tokens: n - 1,
            total_tokens: n,
            ..crate::openai::Usage::default()
        }),
        system_fingerprint: None,
        service_tier: None,
        provider: None,
    }))
}

/// Answers every request with a completion reporting `used` tokens, counting the calls.
fn using(
    used: Option<u64>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
) -> impl Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error, Future = impl Send> + Clone
{
    service_fn(move |_r: ChatHttpRequest| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { Ok(completion(used)) }
    })
}

fn prompt_estimate(body: &str) -> u64 {
    ChatRequest::from_slice(body.as_bytes())
        .unwrap()
        .summary
        .estimated_tokens()
}

fn with_max_tokens(n: u32) -> String {
    format!(r#"{{"model":"m","max_tokens":{n},"messages":[{{"role":"user","content":"hi"}}]}}"#)
}

fn is_limited(r: &Result<ChatHttpResponse, Error>, what: &str) -> bool {
    match r {
        Err(e) => e.kind() == ErrorKind::RateLimited && e.message().contains(what),
        Ok(_) => false,
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_refused_for_tokens_keeps_its_request() {
    let calls = Arc::default();
    let svc = ClientKeysLayer::new()
        .key(
            "sk",
            KeyPolicy::new("k")
                .requests_per_minute(2)
                .tokens_per_minute(100),
        )
        .layer(using(None, calls));
    let p = prompt_estimate(BODY);
    let big = with_max_tokens(u32::try_from(95 - p).unwrap());
    // 95 of 100 tokens, and one request of two; no usage, so the reservation stands.
    assert!(svc.clone().oneshot(req(Some("sk"), &big)).await.is_ok());
    let r = svc.clone().oneshot(req(Some("sk"), &big)).await;
    assert!(is_limited(&r, "tokens per minute"), "{r:?}");
    // The refusal took no request: the second one is still there (5 tokens left).
    let small = with_max_tokens(u32::try_from(5 - p).unwrap());
    assert!(svc.clone().oneshot(req(Some("sk"), &small)).await.is_ok());
    let r = svc.clone().oneshot(req(Some("sk"), &small)).await;
    assert!(is_limited(&r, "requests per minute"), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn the_memory_store_takes_all_draws_or_none() {
    let store = MemoryRateLimitStore::new();
    let request = Draw {
        kind: LimitKind::Requests,
        per_minute: 1,
        amount: 1,
    };
    let tokens = |amount| Draw {
        kind: LimitKind::Tokens,
        per_minute: 100,
        amount,
    };
    let both = [request, tokens(50)];
    assert_eq!(store.acquire("k", &both).await.unwrap(), Decision::Granted);
    // Refused for the request: the 50 tokens stay.
    let Decision::Refused { kind, retry_after } = store.acquire("k", &both).await.unwrap() else {
        panic!("granted twice")
    };
    assert_eq!(
        (kind, retry_after),
        (LimitKind::Requests, Duration::from_secs(60))
    );
    assert_eq!(
        store.acquire("k", &[tokens(50)]).await.unwrap(),
        Decision::Granted
    );
    let refused = store.acquire("k", &[tokens(1)]).await.unwrap();
    assert!(matches!(
        refused,
        Decision::Refused {
            kind: LimitKind::Tokens,
            ..
        }
    ));
    // Another caller has its own buckets; an amount over the limit waits a minute.
    assert_eq!(store.acquire("j", &both).await.unwrap(), Decision::Granted);
    assert_eq!(
        store.acquire("j", &[tokens(101)]).await.unwrap(),
        Decision::Refused {
            kind: LimitKind::Tokens,
            retry_after: Duration::from_secs(60)
        }
    );
    // Adjustments give back up to the limit, and take into debt.
    store
        .adjust("k", LimitKind::Tokens, 100, -1000)
        .await
        .unwrap();
    assert_eq!(
        store.acquire("k", &[tokens(100)]).await.unwrap(),
        Decision::Granted
    );
    store.adjust("k", LimitKind::Tokens, 100, 50).await.unwrap();
    let Decision::Refused { retry_after, .. } = store.acquire("k", &[tokens(10)]).await.unwrap()
    else {
        panic!("granted in debt")
    };
    // From -50 to 10 at 100 a minute: 36 s.
    assert!(retry_after.abs_diff(Duration::from_secs(36)) < Duration::from_millis(1));
}

#[tokio::test(start_paused = true)]
async fn tokens_settle_on_the_usage_of_a_whole_answer() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let layer = ClientKeysLayer::new().key("sk", KeyPolicy::new("k").tokens_per_minute(100));
    let p = prompt_estimate(BODY);
    let half = with_max_tokens(u32::try_from(50 - p).unwrap());
    // Each reserves 50 and uses 10: five fit in a row (without settling, two would).
    let frugal = layer.clone().layer(using(Some(10), calls.clone()));
    for _ in 0..5 {
        let r = frugal.clone().oneshot(req(Some("sk"), &half)).await;
        assert!(r.is_ok(), "{r:?}");
    }
    // 50 left; one reserves 50 and uses 150: the bucket is 100 in debt.
    let greedy = layer.clone().layer(using(Some(150), calls.clone()));
    assert!(greedy.oneshot(req(Some("sk"), &half)).await.is_ok());
    let e = frugal
        .clone()
        .oneshot(req(Some("sk"), &with_max_tokens(0)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    // From -100 to p at 100 a minute.
    let wait = Duration::from_secs_f64((100 + p) as f64 * 0.6);
    let told = e.retry_after().unwrap();
    assert!(told.abs_diff(wait) < Duration::from_millis(1), "{told:?}");
    // Refilled; then failed requests give their reservations back.
    tokio::time::advance(Duration::from_secs(120)).await;
    let failing = layer.clone().layer(service_fn(|_r: ChatHttpRequest| async {
        Err::<ChatHttpResponse, _>(Error::upstream("down"))
    }));
    for _ in 0..3 {
        let r = failing.clone().oneshot(req(Some("sk"), &half)).await;
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Upstream);
    }
    let all = with_max_tokens(u32::try_from(100 - p).unwrap());
    assert!(frugal.oneshot(req(Some("sk"), &all)).await.is_ok());
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 7);
}

#[tokio::test(start_paused = true)]
async fn tokens_settle_on_a_streams_usage_chunk_or_its_text() {
    use crate::openai::{ChatCompletionChunk, ChunkChoice, Delta, Usage};
    use futures_util::StreamExt;
    fn text(t: &str) -> ChatCompletionChunk {
        let mut c = ChatCompletionChunk::new("s", "m", 1);
        c.choices.push(ChunkChoice {
            index: 0,
            delta: Delta {
                content: Some(t.into()),
                ..Delta::default()
            },
            finish_reason: None,
            native_finish_reason: None,
            logprobs: None,
        });
        c
    }
    fn usage(n: u64) -> ChatCompletionChunk {
        let mut c = ChatCompletionChunk::new("s", "m", 1);
        c.usage = Some(Box::new(Usage {
            prompt_tokens: 1,
            completion_tokens: n - 1,
            total_tokens: n,
            ..Usage::default()
        }));
        c
    }
    let streaming = |with_usage: bool| {
        service_fn(move |_r: ChatHttpRequest| async move {
            let mut chunks = vec![Ok(text(&"x".repeat(40)))];
            if with_usage {
                chunks.push(Ok(usage(10)));
            }
            Ok::<_, Error>(http::Response::new(ChatResponse::stream(
                futures_util::stream::iter(chunks),
            )))
        })
    };
    let layer = ClientKeysLayer::new().key("sk", KeyPolicy::new("k").tokens_per_minute(100));
    let p = prompt_estimate(BODY);
    let body = |n: u64| {
        format!(
            r#"{{"model":"m","stream":true,"max_tokens":{},"messages":[{{"role":"user","content":"hi"}}]}}"#,
            n - p
        )
    };
    // Reserves 95, the usage chunk says 10: 90 left.
    let svc = layer.clone().layer(streaming(true));
    let resp = svc
        .clone()
        .oneshot(req(Some("sk"), &body(95)))
        .await
        .unwrap();
    assert_eq!(resp.into_body().into_stream().unwrap().count().await, 2);
    let unread = svc
        .clone()
        .oneshot(req(Some("sk"), &body(90)))
        .await
        .unwrap();
    let r = svc.clone().oneshot(req(Some("sk"), &body(p))).await;
    assert!(is_limited(&r, "tokens"), "{r:?}");
    // A stream dropped before its usage chunk settles at its estimate: the prompt (nothing
    // was streamed), so 90 - p come back.
    drop(unread);
    let _kept = svc
        .clone()
        .oneshot(req(Some("sk"), &body(90 - p)))
        .await
        .unwrap();
    let r = svc.clone().oneshot(req(Some("sk"), &body(p))).await;
    assert!(is_limited(&r, "tokens"), "{r:?}");
    drop(_kept);
    tokio::time::advance(Duration::from_secs(60)).await;
    // A stream that ends without a usage chunk: the prompt estimate plus 40 bytes of text at
    // four bytes a token, p + 10, so 100 - p - 10 are left.
    let svc = layer.layer(streaming(false));
    let resp = svc
        .clone()
        .oneshot(req(Some("sk"), &body(95)))
        .await
        .unwrap();
    assert_eq!(resp.into_body().into_stream().unwrap().count().await, 1);
    let _kept = svc
        .clone()
        .oneshot(req(Some("sk"), &body(100 - p - 10)))
        .await
        .unwrap();
    let r = svc.oneshot(req(Some("sk"), &body(p))).await;
    assert!(is_limited(&r, "tokens"), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn a_request_without_max_tokens_reserves_the_default_allowance() {
    let calls = Arc::default();
    let p = prompt_estimate(BODY);
    let svc = ClientKeysLayer::new()
        .key("sk", KeyPolicy::new("k").tokens_per_minute(2000))
        .key("sk-small", KeyPolicy::new("small").tokens_per_minute(100))
        .layer(using(None, calls));
    // p + 1024 each: one fits in 2000, a second does not.
    assert!(svc.clone().oneshot(req(Some("sk"), BODY)).await.is_ok());
    let r = svc.clone().oneshot(req(Some("sk"), BODY)).await;
    assert!(is_limited(&r, "tokens"), "{r:?}");
    // The allowance never exceeds what the limit leaves after the prompt.
    assert!(svc
        .clone()
        .oneshot(req(Some("sk-small"), BODY))
        .await
        .is_ok());
    // A request that can never fit says so.
    let e = svc
        .clone()
        .oneshot(req(Some("sk-small"), &with_max_tokens(200)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert!(e.message().contains(&format!("{}", 200 + p)), "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(60)));
    // A smaller allowance.
    let svc = ClientKeysLayer::new()
        .key("sk", KeyPolicy::new("k").tokens_per_minute(2000))
        .default_output_allowance(100)
        .layer(using(None, Arc::default()));
    for _ in 0..10 {
        assert!(svc.clone().oneshot(req(Some("sk"), BODY)).await.is_ok());
    }
}

/// A shared store in tests: memory behind the trait (so every call takes the boxed path),
/// or one that always fails.
#[derive(Debug, Default)]
struct TestStore {
    memory: MemoryRateLimitStore,
    fail: bool,
}

impl RateLimitStore for TestStore {
    fn acquire<'a>(
        &'a self,
        caller: &'a str,
        draws: &'a [Draw],
    ) -> futures_util::future::BoxFuture<'a, Result<Decision, Error>> {
        if self.fail {
            return Box::pin(async { Err(Error::upstream("store down")) });
        }
        self.memory.acquire(caller, draws)
    }

    fn adjust<'a>(
        &'a self,
        caller: &'a str,
        kind: LimitKind,
        per_minute: u32,
        delta: i64,
    ) -> futures_util::future::BoxFuture<'a, Result<(), Error>> {
        if self.fail {
            return Box::pin(async { Err(Error::upstream("store down")) });
        }
        self.memory.adjust(caller, kind, per_minute, delta)
    }
}

/// Lets spawned settlements run.
async fn settle_spawned() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn instances_sharing_a_store_share_the_limits() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store: Arc<dyn RateLimitStore> = Arc::new(TestStore::default());
    let instance = || {
        ClientKeysLayer::new()
            .key(
                "sk",
                KeyPolicy::new("k")
                    .requests_per_minute(4)
                    .tokens_per_minute(100),
            )
            .rate_limit_store(store.clone())
            .layer(using(Some(10), calls.clone()))
    };
    let (a, b) = (instance(), instance());
    let p = prompt_estimate(BODY);
    let big = with_max_tokens(u32::try_from(60 - p).unwrap());
    // Each reserves 60 and settles at 10 (through the store, after the answer): the second
    // fits only because the first settled.
    assert!(a.clone().oneshot(req(Some("sk"), &big)).await.is_ok());
    settle_spawned().await;
    assert!(b.clone().oneshot(req(Some("sk"), &big)).await.is_ok());
    settle_spawned().await;
    let small = with_max_tokens(0);
    assert!(a.clone().oneshot(req(Some("sk"), &small)).await.is_ok());
    assert!(b.clone().oneshot(req(Some("sk"), &small)).await.is_ok());
    // Four requests between the two instances: the limit, once.
    let r = a.clone().oneshot(req(Some("sk"), &small)).await;
    assert!(is_limited(&r, "requests per minute"), "{r:?}");
    let r = b.clone().oneshot(req(Some("sk"), &small)).await;
    assert!(is_limited(&r, "requests per minute"), "{r:?}");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_fails_open_to_this_instances_buckets() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store: Arc<dyn RateLimitStore> = Arc::new(TestStore {
        fail: true,
        ..TestStore::default()
    });
    let svc = ClientKeysLayer::new()
        .key(
            "sk",
            KeyPolicy::new("k")
                .requests_per_minute(2)
                .tokens_per_minute(100),
        )
        .rate_limit_store(store)
        .layer(using(Some(10), calls.clone()));
    let p = prompt_estimate(BODY);
    let big = with_max_tokens(u32::try_from(60 - p).unwrap());
    // Not refused for the store's failure, and not unlimited: the local buckets count, and
    // settle (60 reserved, 10 used, so the second fits).
    assert!(svc.clone().oneshot(req(Some("sk"), &big)).await.is_ok());
    assert!(svc.clone().oneshot(req(Some("sk"), &big)).await.is_ok());
    let r = svc
        .clone()
        .oneshot(req(Some("sk"), &with_max_tokens(0)))
        .await;
    assert!(is_limited(&r, "requests per minute"), "{r:?}");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    let errors: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, _, _, _)| k.key().name() == "switchboard_rate_limit_store_errors_total")
        .map(|(k, _, _, v)| {
            let op: Vec<_> = k.key().labels().map(|l| l.value().to_owned()).collect();
            format!("{op:?} {v:?}")
        })
        .collect();
    // Once failed, the store is left alone for five seconds; settlements of what was taken
    // locally stay local (no adjust went to the store).
    assert_eq!(errors, [r#"["acquire"] Counter(1)"#], "{errors:?}");
    // Five seconds later it is asked again.
    tokio::time::advance(Duration::from_secs(5)).await;
    let _ = svc.clone().oneshot(req(Some("sk"), BODY)).await;
    let errors = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, _, _, _)| k.key().name() == "switchboard_rate_limit_store_errors_total")
        .map(|(_, _, _, v)| format!("{v:?}"))
        .collect::<Vec<_>>();
    // (A snapshot resets the counters: this is the second failure.)
    assert_eq!(errors, ["Counter(1)"]);
}

#[tokio::test]
async fn the_in_memory_path_calls_the_inner_service_at_once() {
    // No shared store: the request reaches the inner service inside `call`, no await between.
    let called = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = called.clone();
    let mut svc = ClientKeysLayer::new()
        .key("sk", KeyPolicy::new("k").requests_per_minute(5))
        .layer(service_fn(move |_r: ChatHttpRequest| {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            std::future::ready(Ok::<_, Error>(completion(None)))
        }));
    let fut = svc.call(req(Some("sk"), BODY));
    assert!(called.load(std::sync::atomic::Ordering::SeqCst));
    assert!(fut.await.is_ok());
}
