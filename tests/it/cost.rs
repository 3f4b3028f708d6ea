//! CostMeter alone, over mock inner services.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use futures_util::StreamExt;
use switchboard::catalog::{Pricing, Provider, ProviderKind};
use switchboard::cost::{Budget, Budgets, CostMeterLayer, CostRecord, Window};
use switchboard::ext::{Attempt, CacheStatus, CallerKey, Candidate, Route, ServedBy};
use switchboard::openai::{FunctionCallDelta, PromptTokensDetails, ToolCallDelta, Usage};
use switchboard::{ChatHttpRequest, ChatHttpResponse, ChatResponse, Error, ErrorKind};
use tower::{service_fn, Layer, ServiceExt};

fn priced(provider: &str, model: &str, input: f64, output: f64) -> Candidate {
    let p = Arc::new(Provider::new(
        provider,
        ProviderKind::Openai,
        "http://127.0.0.1:9/v1",
    ));
    let mut c = Candidate::passthrough(model.into(), p, model.into());
    c.pricing = Some(Pricing {
        input,
        output,
        cached_input: Some(input / 10.0),
        ..Pricing::default()
    });
    c
}

fn routed(body: &str, cands: Vec<Candidate>) -> ChatHttpRequest {
    let mut r = request(body);
    r.extensions_mut().insert(Route {
        requested: "x".into(),
        candidates: cands.into(),
    });
    r
}

fn served(provider: &str, model: &str) -> ServedBy {
    ServedBy {
        provider: provider.into(),
        model: model.into(),
        attempts: vec![Attempt {
            provider: provider.into(),
            model: model.into(),
            error: None,
        }],
    }
}

fn usage(prompt: u64, cached: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: cached,
            ..PromptTokensDetails::default()
        }),
        ..Usage::default()
    }
}

fn answering(
    provider: &'static str,
    model: &'static str,
    u: Usage,
    cache: Option<CacheStatus>,
) -> impl tower::Service<
    ChatHttpRequest,
    Response = ChatHttpResponse,
    Error = Error,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    service_fn(move |_r: ChatHttpRequest| {
        let u = u.clone();
        async move {
            let mut c = completion(model, "hi");
            c.usage = Some(u);
            let mut resp = http::Response::new(ChatResponse::from(c));
            resp.extensions_mut().insert(served(provider, model));
            if let Some(cs) = cache {
                resp.extensions_mut().insert(cs);
            }
            Ok::<_, Error>(resp)
        }
    })
}

fn records() -> (
    Arc<Mutex<Vec<CostRecord>>>,
    impl Fn(&CostRecord) + Send + Sync + 'static,
) {
    let store = Arc::new(Mutex::new(Vec::new()));
    let s = store.clone();
    (store, move |r: &CostRecord| {
        s.lock().unwrap().push(r.clone())
    })
}

#[tokio::test]
async fn prices_the_target_that_served_after_fallback() {
    let (recs, sink) = records();
    // 1000 prompt tokens of which 200 cached, 100 completion, served by the second candidate.
    let svc =
        CostMeterLayer::new()
            .sink(sink)
            .layer(answering("b", "b/m", usage(1000, 200, 100), None));
    let resp = svc
        .oneshot(routed(
            HELLO,
            vec![
                priced("a", "a/m", 100.0, 100.0),
                priced("b", "b/m", 1.0, 2.0),
            ],
        ))
        .await
        .unwrap();
    // 800 × $1/M + 200 × $0.1/M + 100 × $2/M = 0.0008 + 0.00002 + 0.0002
    let expected = 0.001_02;
    // The layer writes the cost as an extension; the edge renders it as x-switchboard-cost.
    let cost = resp.extensions().get::<switchboard::ext::Cost>().unwrap().0;
    assert!((cost - expected).abs() < 1e-12, "{cost}");
    let c = resp
        .into_body()
        .into_complete()
        .unwrap()
        .into_typed()
        .unwrap();
    let u = c.usage.unwrap();
    assert!((u.cost.unwrap() - expected).abs() < 1e-12);
    assert!((u.cost_details.unwrap().cached_input - 0.000_02).abs() < 1e-12);
    let r = recs.lock().unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].provider.as_deref(), Some("b"));
    assert_eq!(r[0].cost.unwrap().total().usd(), expected);
}

#[tokio::test]
async fn unpriced_target_gets_null_cost() {
    let svc = CostMeterLayer::new().layer(answering("a", "a/m", usage(10, 0, 5), None));
    let resp = svc
        .oneshot(routed(HELLO, vec![candidate("a", "m")]))
        .await
        .unwrap();
    assert!(resp.headers().get("x-switchboard-cost").is_none());
    let c = resp
        .into_body()
        .into_complete()
        .unwrap()
        .into_typed()
        .unwrap();
    let v = serde_json::to_value(&c).unwrap();
    assert!(v["usage"]["cost"].is_null());
    assert!(v["usage"].as_object().unwrap().contains_key("cost"));
}

#[tokio::test]
async fn cache_hit_costs_zero() {
    let svc = CostMeterLayer::new().layer(answering(
        "a",
        "a/m",
        usage(10, 0, 5),
        Some(CacheStatus::Hit),
    ));
    let resp = svc
        .oneshot(routed(HELLO, vec![priced("a", "a/m", 1.0, 1.0)]))
        .await
        .unwrap();
    let u = resp
        .into_body()
        .into_complete()
        .unwrap()
        .into_typed()
        .unwrap()
        .usage
        .unwrap();
    assert_eq!(u.cost, Some(0.0));
    assert_eq!(u.total_tokens, 15, "token counts kept");
}

fn streaming(
    with_usage: bool,
) -> impl tower::Service<
    ChatHttpRequest,
    Response = ChatHttpResponse,
    Error = Error,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    service_fn(move |_r: ChatHttpRequest| async move {
        let mut items = vec![
            Ok(role_chunk()),
            Ok(text_chunk("hello world!")),
            Ok(finish_chunk()),
        ];
        if with_usage {
            let mut u = usage_chunk();
            u.usage = Some(Box::new(usage(1000, 0, 1000)));
            items.push(Ok(u));
        }
        let mut resp = http::Response::new(ChatResponse::stream(futures_util::stream::iter(items)));
        resp.extensions_mut().insert(served("a", "a/m"));
        Ok::<_, Error>(resp)
    })
}

#[tokio::test]
async fn stream_usage_chunk_is_priced_in_place() {
    let (recs, sink) = records();
    let svc = CostMeterLayer::new().sink(sink).layer(streaming(true));
    let resp = svc
        .oneshot(routed(HELLO_STREAM, vec![priced("a", "a/m", 1.0, 3.0)]))
        .await
        .unwrap();
    let items: Vec<_> = resp.into_body().into_stream().unwrap().collect().await;
    let last = items.last().unwrap().as_ref().unwrap();
    assert!((last.usage.as_ref().unwrap().cost.unwrap() - 0.004).abs() < 1e-12);
    let r = recs.lock().unwrap();
    assert_eq!(r.len(), 1);
    assert!(!r[0].usage_estimated);
    assert!(r[0].time_to_first_token.is_some());
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_still_metered() {
    let (recs, sink) = records();
    let svc = CostMeterLayer::new().sink(sink).layer(streaming(true));
    let resp = svc
        .oneshot(routed(HELLO_STREAM, vec![priced("a", "a/m", 1.0, 3.0)]))
        .await
        .unwrap();
    let mut s = resp.into_body().into_stream().unwrap();
    s.next().await;
    s.next().await; // "hello world!" (12 bytes) streamed, then the client hangs up
    drop(s);
    let r = recs.lock().unwrap();
    assert_eq!(r.len(), 1, "recorded exactly once, on drop");
    assert!(r[0].usage_estimated);
    assert_eq!(r[0].usage.as_ref().unwrap().completion_tokens, 3);
    assert!(r[0].cost.unwrap().total().usd() > 0.0);
}

#[tokio::test]
async fn error_mid_stream_is_metered_from_the_streamed_text() {
    let (recs, sink) = records();
    let inner = service_fn(|_r: ChatHttpRequest| async {
        let mut thought = text_chunk("ab");
        thought.choices[0].delta.reasoning = Some("think".into());
        let mut call = text_chunk("");
        call.choices[0].delta.content = None;
        call.choices[0].delta.tool_calls = Some(vec![ToolCallDelta {
            index: 0,
            id: Some("call_1".into()),
            kind: Some("function".into()),
            function: Some(FunctionCallDelta {
                name: Some("f".into()),
                arguments: Some(r#"{"x":1}"#.into()),
            }),
        }]);
        let items = vec![
            Ok(role_chunk()),
            Ok(thought),
            Ok(call),
            Err(Error::upstream("upstream went away")),
        ];
        let mut resp = http::Response::new(ChatResponse::stream(futures_util::stream::iter(items)));
        resp.extensions_mut().insert(served("a", "a/m"));
        Ok::<_, Error>(resp)
    });
    let svc = CostMeterLayer::new().sink(sink).layer(inner);
    let resp = svc
        .oneshot(routed(HELLO_STREAM, vec![priced("a", "a/m", 1.0, 3.0)]))
        .await
        .unwrap();
    let items: Vec<_> = resp.into_body().into_stream().unwrap().collect().await;
    assert_eq!(items.len(), 4, "every item passed on");
    let r = recs.lock().unwrap();
    assert_eq!(r.len(), 1, "recorded exactly once, at the error");
    assert_eq!(r[0].error, Some(ErrorKind::Upstream));
    assert!(r[0].usage_estimated);
    // "think" + "ab" + "f" + `{"x":1}`: 15 bytes, 4 tokens.
    assert_eq!(r[0].usage.as_ref().unwrap().completion_tokens, 4);
    assert!(r[0].time_to_first_token.is_some());
}

#[test]
fn metrics_are_recorded() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let svc = CostMeterLayer::new().layer(answering("b", "b/m", usage(1000, 200, 100), None));
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            svc.oneshot(routed(HELLO, vec![priced("b", "b/m", 1.0, 2.0)]))
                .await
                .unwrap();
        });
    });
    let snap = snapshotter.snapshot().into_vec();
    let find = |name: &str, label: Option<(&str, &str)>| {
        snap.iter()
            .find(|(k, _, _, _)| {
                k.key().name() == name
                    && label.is_none_or(|(lk, lv)| {
                        k.key().labels().any(|l| l.key() == lk && l.value() == lv)
                    })
            })
            .map(|(_, _, _, v)| format!("{v:?}"))
    };
    assert_eq!(
        find("switchboard_requests_total", Some(("provider", "b"))),
        Some("Counter(1)".to_owned())
    );
    assert_eq!(
        find("switchboard_tokens_total", Some(("type", "input"))),
        Some("Counter(1000)".to_owned())
    );
    assert_eq!(
        find("switchboard_tokens_total", Some(("type", "cached"))),
        Some("Counter(200)".to_owned())
    );
    assert_eq!(
        find("switchboard_cost_nanodollars_total", None),
        Some("Counter(1020000)".to_owned())
    );
    assert!(find("switchboard_request_duration_seconds", None)
        .unwrap()
        .starts_with("Histogram"));
}

#[tokio::test]
async fn exhausted_budget_is_402() {
    let budgets = Budgets::default().with("alice", Budget::usd(0.001, Window::Day));
    let svc = CostMeterLayer::new().budgets(budgets).layer(answering(
        "b",
        "b/m",
        usage(1000, 0, 1000),
        None,
    ));
    let req = || {
        let mut r = routed(
            r#"{"model":"b/m","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#,
            vec![priced("b", "b/m", 1.0, 1.0)],
        );
        r.extensions_mut().insert(CallerKey("alice".into()));
        r
    };
    // Each request really costs 2000 × $1/M = $0.002: the first passes (estimate is small),
    // then the budget is spent.
    svc.clone().oneshot(req()).await.unwrap();
    tokio::task::yield_now().await;
    let e = svc.clone().oneshot(req()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BudgetExhausted);
    assert_eq!(e.status(), 402);
    assert!(e.message().contains("budget"));
    // Someone else is not affected.
    let mut r = req();
    r.extensions_mut().insert(CallerKey("bob".into()));
    svc.oneshot(r).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_overspend_by_at_most_the_reservations_in_flight() {
    let budgets = Budgets::default().with("k", Budget::usd(0.01, Window::Total));
    concurrent_against(budgets.clone(), budgets).await;
}

/// 50 concurrent requests, half through each of two meters (two gateway instances) sharing
/// one budget of $0.01. Each request's estimate = (prompt ~5 + 100 max tokens) × $10/M ≈
/// $0.00105; its real cost = 100 × $10/M = $0.001.
async fn concurrent_against(a: Budgets, b: Budgets) {
    let limit = 0.01;
    let a = a.with("k", Budget::usd(limit, Window::Total));
    let b = b.with("k", Budget::usd(limit, Window::Total));
    let served_count = Arc::new(AtomicUsize::new(0));
    let sc = served_count.clone();
    let inner = service_fn(move |_r: ChatHttpRequest| {
        sc.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut c = completion("b/m", "x");
            c.usage = Some(usage(0, 0, 100));
            let mut resp = http::Response::new(ChatResponse::from(c));
            resp.extensions_mut().insert(served("b", "b/m"));
            Ok::<_, Error>(resp)
        }
    });
    let meters = [
        CostMeterLayer::new()
            .budgets(a.clone())
            .layer(inner.clone()),
        CostMeterLayer::new().budgets(b).layer(inner),
    ];
    let mut tasks = Vec::new();
    for i in 0..50 {
        let svc = meters[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut r = routed(
                r#"{"model":"b/m","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#,
                vec![priced("b", "b/m", 10.0, 10.0)],
            );
            r.extensions_mut().insert(CallerKey("k".into()));
            svc.oneshot(r).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::BudgetExhausted),
        }
    }
    // Settlements are spawned: wait (bounded) until they have all landed.
    let mut spent = 0.0;
    for _ in 0..200 {
        spent = a.store().committed("k", "total").await.usd();
        if (spent - ok as f64 * 0.001).abs() < 1e-9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        ok >= 9,
        "the budget admits about limit / estimate requests, got {ok}"
    );
    assert!(ok < 50);
    assert!(spent <= limit + 1e-9, "spent {spent} > limit {limit}");
    assert_eq!(served_count.load(Ordering::SeqCst), ok);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_redis_budget_without_overspending() {
    use switchboard::cost::RedisBudgetStore;
    let Some(server) = crate::support::redis_server::start() else {
        return;
    };
    let store_a = RedisBudgetStore::connect(&server.url).await.unwrap();
    let store_b = RedisBudgetStore::connect(&server.url).await.unwrap();
    concurrent_against(
        Budgets::new(Arc::new(store_a)),
        Budgets::new(Arc::new(store_b)),
    )
    .await;
}
