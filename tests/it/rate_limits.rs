//! Per-key rate limits shared through Redis: several ClientKeys layers (instances) on one
//! Redis allow the limits once, and a Redis that goes away leaves each instance counting on
//! its own. The in-memory behaviour is tested in `src/keys/tests.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::redis_server::start;
use crate::support::*;
use switchboard::keys::{ClientKeysLayer, KeyPolicy, RateLimitStore, RedisRateLimitStore};
use switchboard::{ChatHttpRequest, ChatHttpResponse, ChatResponse, Error, ErrorKind};
use tower::{service_fn, Layer, ServiceExt};

/// Answers with a completion that used 5 tokens, counting the calls.
fn answering(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    ChatHttpRequest,
    Response = ChatHttpResponse,
    Error = Error,
    Future = impl Send,
> + Clone
       + Send {
    service_fn(move |_r: ChatHttpRequest| {
        calls.fetch_add(1, Ordering::SeqCst);
        async {
            Ok(http::Response::new(ChatResponse::from(completion(
                "a/b", "hi",
            ))))
        }
    })
}

fn keyed(body: &str) -> ChatHttpRequest {
    let mut r = request(body);
    r.headers_mut()
        .insert("authorization", "Bearer sk-test".parse().unwrap());
    r
}

fn with_max_tokens(n: u64) -> String {
    format!(r#"{{"model":"a/b","max_tokens":{n},"messages":[{{"role":"user","content":"hi"}}]}}"#)
}

fn prompt_estimate() -> u64 {
    chat(HELLO).summary.estimated_tokens()
}

async fn instance(url: &str, policy: KeyPolicy) -> ClientKeysLayer {
    let store = RedisRateLimitStore::connect(url).await.unwrap();
    ClientKeysLayer::new()
        .key("sk-test", policy)
        .rate_limit_store(Arc::new(store))
}

fn limited(r: &Result<ChatHttpResponse, Error>, what: &str) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::RateLimited && e.message().contains(what))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_allow_the_requests_limit_once() {
    let Some(server) = start() else { return };
    let policy = KeyPolicy::new("team").requests_per_minute(10);
    let a = instance(&server.url, policy.clone()).await;
    let b = instance(&server.url, policy).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (svc_a, svc_b) = (
        a.layer(answering(calls.clone())),
        b.layer(answering(calls.clone())),
    );
    // 40 concurrent requests, half through each instance: exactly 10 get through.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let svc = if i % 2 == 0 {
                svc_a.clone()
            } else {
                svc_b.clone()
            };
            tokio::spawn(async move { svc.oneshot(keyed(HELLO)).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.is_ok() || limited(&r, "requests per minute"), "{r:?}");
        if let Err(e) = r {
            let wait = e.retry_after().unwrap();
            assert!(
                wait >= Duration::from_secs(1) && wait <= Duration::from_secs(7),
                "{wait:?}"
            );
        } else {
            ok += 1;
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(calls.load(Ordering::SeqCst), 10);

    // One bucket per caller and kind, hash-tagged by caller, expiring once it would be full.
    let client = redis::Client::open(server.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("switchboard:rl:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, ["switchboard:rl:{team}:requests"]);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 55_000 && pttl <= 61_000, "{pttl}");
}

#[tokio::test]
async fn tokens_settle_across_instances_and_a_refusal_for_tokens_keeps_the_request() {
    let Some(server) = start() else { return };
    let policy = KeyPolicy::new("team")
        .requests_per_minute(3)
        .tokens_per_minute(100);
    let calls = Arc::new(AtomicUsize::new(0));
    let a = instance(&server.url, policy.clone())
        .await
        .layer(answering(calls.clone()));
    let b = instance(&server.url, policy)
        .await
        .layer(answering(calls.clone()));
    let p = prompt_estimate();
    let big = with_max_tokens(60 - p);
    // Reserves 60 through A; the answer used 5, settled in Redis after the answer.
    assert!(a.clone().oneshot(keyed(&big)).await.is_ok());
    // B's 60 fit once A's settlement lands (a refusal for tokens takes no request).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = b.clone().oneshot(keyed(&big)).await;
        if r.is_ok() {
            break;
        }
        assert!(limited(&r, "tokens per minute"), "{r:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "A's usage never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B's settlement too: 90 left, and one request of three.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = a.clone().oneshot(keyed(&with_max_tokens(85 - p))).await;
        if r.is_ok() {
            break;
        }
        assert!(limited(&r, "tokens per minute"), "{r:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "B's usage never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = b.clone().oneshot(keyed(&with_max_tokens(0))).await;
    assert!(limited(&r, "requests per minute"), "{r:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn when_redis_goes_away_each_instance_counts_on_its_own() {
    use metrics_util::debugging::DebuggingRecorder;
    let Some(server) = start() else { return };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let policy = KeyPolicy::new("team").requests_per_minute(2);
    let calls = Arc::new(AtomicUsize::new(0));
    let a = instance(&server.url, policy.clone())
        .await
        .layer(answering(calls.clone()));
    let b = instance(&server.url, policy)
        .await
        .layer(answering(calls.clone()));
    assert!(a.clone().oneshot(keyed(HELLO)).await.is_ok());
    assert!(b.clone().oneshot(keyed(HELLO)).await.is_ok());
    assert!(limited(
        &a.clone().oneshot(keyed(HELLO)).await,
        "requests per minute"
    ));

    // Redis stops: its port is closed from now on.
    drop(server);
    let started = tokio::time::Instant::now();
    // Neither refused for the outage nor unlimited: each instance's own buckets count.
    for svc in [&a, &b] {
        assert!(svc.clone().oneshot(keyed(HELLO)).await.is_ok());
        assert!(svc.clone().oneshot(keyed(HELLO)).await.is_ok());
        let r = svc.clone().oneshot(keyed(HELLO)).await;
        assert!(limited(&r, "requests per minute"), "{r:?}");
    }
    // The first call of each instance waited at most the store's timeout (250 ms); then the
    // store is left alone for a while.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    let errors = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(k, _, _, _)| {
            k.key().name() == "switchboard_rate_limit_store_errors_total"
                && k.key().labels().any(|l| l.value() == "acquire")
        })
        .map(|(_, _, _, v)| format!("{v:?}"));
    assert_eq!(errors.as_deref(), Some("Counter(2)"));
}

#[tokio::test]
async fn the_store_talks_to_redis_directly() {
    use switchboard::keys::{Decision, Draw, LimitKind};
    let Some(server) = start() else { return };
    let store = RedisRateLimitStore::connect(&server.url)
        .await
        .unwrap()
        .prefix("other:");
    let draws = [
        Draw {
            kind: LimitKind::Requests,
            per_minute: 1,
            amount: 1,
        },
        Draw {
            kind: LimitKind::Tokens,
            per_minute: 100,
            amount: 50,
        },
    ];
    assert_eq!(store.acquire("c", &draws).await.unwrap(), Decision::Granted);
    // All or nothing: refused for the request, the tokens stay.
    let d = store.acquire("c", &draws).await.unwrap();
    assert!(
        matches!(d, Decision::Refused { kind: LimitKind::Requests, retry_after } if retry_after > Duration::from_secs(58)),
        "{d:?}"
    );
    assert_eq!(
        store.acquire("c", &draws[1..]).await.unwrap(),
        Decision::Granted
    );
    let d = store.acquire("c", &draws[1..]).await.unwrap();
    assert!(
        matches!(
            d,
            Decision::Refused {
                kind: LimitKind::Tokens,
                ..
            }
        ),
        "{d:?}"
    );
    // Give back (up to the limit), then take into debt.
    store
        .adjust("c", LimitKind::Tokens, 100, -500)
        .await
        .unwrap();
    let all = Draw {
        kind: LimitKind::Tokens,
        per_minute: 100,
        amount: 100,
    };
    assert_eq!(store.acquire("c", &[all]).await.unwrap(), Decision::Granted);
    store.adjust("c", LimitKind::Tokens, 100, 50).await.unwrap();
    let d = store.acquire("c", &draws[1..]).await.unwrap();
    // From -50 to 50 at 100 a minute: about 60 s.
    assert!(
        matches!(d, Decision::Refused { retry_after, .. } if retry_after > Duration::from_secs(58) && retry_after <= Duration::from_secs(60)),
        "{d:?}"
    );
    let over = Draw { amount: 101, ..all };
    assert_eq!(
        store.acquire("d", &[over]).await.unwrap(),
        Decision::Refused {
            kind: LimitKind::Tokens,
            retry_after: Duration::from_secs(60)
        }
    );
    let client = redis::Client::open(server.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("other:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys, ["other:{c}:requests", "other:{c}:tokens"]);
}

#[tokio::test]
async fn an_unreachable_redis_fails_to_connect_cleanly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let e = RedisRateLimitStore::connect(&format!("redis://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert!(e.message().contains("Redis"), "{e}");
}

/// The ready gateway: `[cache] redis_url` puts the keys' rate limits in Redis, so two
/// gateways from one config allow the limit once.
#[cfg(feature = "server")]
#[tokio::test]
async fn two_gateways_with_one_redis_url_share_the_limits() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use switchboard::server;

    let Some(redis) = start() else { return };
    let base = std::fs::read_to_string("examples/gateway.toml").unwrap();
    assert!(base.contains("\n[cache]"));
    let text = base.replacen(
        "\n[cache]",
        &format!("\n[cache]\nredis_url = \"{}\"", redis.url),
        1,
    ) + "\n[[keys]]\nname = \"team\"\nkey = \"sk-gw-team\"\nrequests_per_minute = 3\n";
    let path = std::env::temp_dir().join(format!(
        "switchboard-rate-limits-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    let options = server::Options::new(path.to_string_lossy()).listen("127.0.0.1:0");
    let one = server::start(&options).await.unwrap();
    let two = server::start(&options).await.unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        one.notes()
            .iter()
            .any(|n| n.contains("rate limits in Redis")),
        "{:?}",
        one.notes()
    );

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let mut statuses = Vec::new();
    for addr in [one.addr(), two.addr(), one.addr(), two.addr(), one.addr()] {
        let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
            .header("authorization", "Bearer sk-gw-team")
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from_static(
                br#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#,
            )))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
            .await
            .unwrap()
            .unwrap();
        statuses.push(resp.status().as_u16());
        let _ = resp.into_body().collect().await;
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    one.shutdown(Duration::from_secs(5)).await;
    two.shutdown(Duration::from_secs(5)).await;
}
