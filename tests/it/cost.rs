//! CostMeter alone, over mock inner services.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use switchboard::catalog::{Pricing, Provider, ProviderKind};
use switchboard::cost::{
    Budget, BudgetStore, Budgets, CostMeterLayer, CostRecord, Picodollars, UnpricedPolicy, Window,
};
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

// ---------------------------------------------------------------------------------------
// Failing closed: every request a budgeted caller sends is billed.

/// A budget store that remembers every reservation and settlement.
#[derive(Debug, Default)]
struct Ledger {
    store: switchboard::cost::MemoryBudgetStore,
    reserved: Mutex<Vec<Picodollars>>,
    settled: Mutex<Vec<(Picodollars, Picodollars)>>,
}

impl BudgetStore for Ledger {
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        window: &'a str,
        limit: Picodollars,
        amount: Picodollars,
    ) -> BoxFuture<'a, Result<(), switchboard::cost::Exhausted>> {
        self.reserved.lock().unwrap().push(amount);
        self.store.reserve(key, window, limit, amount)
    }

    fn settle<'a>(
        &'a self,
        key: &'a str,
        window: &'a str,
        reserved: Picodollars,
        actual: Picodollars,
    ) -> BoxFuture<'a, ()> {
        self.settled.lock().unwrap().push((reserved, actual));
        self.store.settle(key, window, reserved, actual)
    }

    fn committed<'a>(&'a self, key: &'a str, window: &'a str) -> BoxFuture<'a, Picodollars> {
        self.store.committed(key, window)
    }
}

impl Ledger {
    /// Waits (bounded) for `n` settlements (they are spawned).
    async fn settlements(&self, n: usize) -> Vec<(Picodollars, Picodollars)> {
        for _ in 0..500 {
            if self.settled.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let s = self.settled.lock().unwrap().clone();
        assert_eq!(s.len(), n, "settlements: {s:?}");
        s
    }
}

fn ledger_budgets(ledger: &Arc<Ledger>, usd: f64) -> Budgets {
    Budgets::new(ledger.clone()).with("alice", Budget::usd(usd, Window::Total))
}

fn as_alice(mut r: ChatHttpRequest) -> ChatHttpRequest {
    r.extensions_mut().insert(CallerKey("alice".into()));
    r
}

/// Pass-through targets have no price: a caller with a budget must not use them for free.
#[tokio::test]
async fn unpriced_targets_are_refused_to_callers_with_a_budget() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen_routes = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
    let (c, seen) = (calls.clone(), seen_routes.clone());
    let inner = service_fn(move |r: ChatHttpRequest| {
        c.fetch_add(1, Ordering::SeqCst);
        let route = r.extensions().get::<Route>().unwrap();
        seen.lock().unwrap().push(
            route
                .candidates
                .iter()
                .map(|c| c.model.to_string())
                .collect(),
        );
        let model = route.candidates[0].model.clone();
        async move {
            let mut c = completion(&model, "hi");
            c.usage = Some(usage(1000, 0, 1000));
            let mut resp = http::Response::new(ChatResponse::from(c));
            let p = model.split('/').next().unwrap().to_owned();
            resp.extensions_mut().insert(served(&p, &model));
            Ok::<_, Error>(resp)
        }
    });
    let ledger = Arc::new(Ledger::default());
    let svc = CostMeterLayer::new()
        .budgets(ledger_budgets(&ledger, 1.0))
        .layer(inner);

    // Only an unpriced candidate: refused before the upstream is called.
    let e = svc
        .clone()
        .oneshot(as_alice(routed(HELLO, vec![candidate("openai", "m")])))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    assert_eq!(e.status(), 403);
    assert!(e.message().contains("no price"), "{}", e.message());
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // A priced fallback remains: the unpriced candidate is removed from the route.
    svc.clone()
        .oneshot(as_alice(routed(
            HELLO,
            vec![candidate("openai", "m"), priced("b", "b/m", 1.0, 1.0)],
        )))
        .await
        .unwrap();
    assert_eq!(seen_routes.lock().unwrap().last().unwrap(), &["b/m"]);
    let s = ledger.settlements(1).await;
    assert_eq!(
        s[0].1,
        Picodollars::from_usd(0.002),
        "billed at b/m's price"
    );

    // A caller without a budget is unaffected.
    let mut r = routed(HELLO, vec![candidate("openai", "m")]);
    r.extensions_mut().insert(CallerKey("bob".into()));
    svc.oneshot(r).await.unwrap();
    assert_eq!(seen_routes.lock().unwrap().last().unwrap(), &["openai/m"]);
}

/// The reservation is the worst case the request allows: `n` choices, each up to the output
/// cap, plus the reasoning budget; tool schemas and images count as input.
#[tokio::test]
async fn the_reservation_covers_n_tools_images_and_reasoning() {
    let ledger = Arc::new(Ledger::default());
    let svc = CostMeterLayer::new()
        .budgets(ledger_budgets(&ledger, 100.0))
        .layer(answering("b", "b/m", usage(10, 0, 10), None));
    // $1/M input, $2/M output.
    let tools = r#"[{"type":"function","function":{"name":"lookup","description":"Looks a thing up in a rather long description of the tool","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}}]"#;
    let body = format!(
        r#"{{"model":"b/m","n":3,"max_tokens":100,"reasoning":{{"max_tokens":50}},"tools":{tools},
            "messages":[{{"role":"user","content":[{{"type":"text","text":"what is this?"}},
            {{"type":"image_url","image_url":{{"url":"data:image/png;base64,AAAA"}}}}]}}]}}"#
    );
    svc.clone()
        .oneshot(as_alice(routed(&body, vec![priced("b", "b/m", 1.0, 2.0)])))
        .await
        .unwrap();
    let reserved = ledger.reserved.lock().unwrap()[0];
    let output = (3 * 100 + 50) * 2_000_000u64;
    let input_at_least = (1000 + tools.len() as u64 / 4) * 1_000_000;
    assert!(
        reserved.0 >= output + input_at_least,
        "reserved {reserved:?} < {}",
        output + input_at_least
    );

    // Without a cap, each of the `n` choices may run to the model's own output limit.
    let mut big = priced("b", "b/m", 1.0, 2.0);
    big.max_output = Some(8000);
    svc.oneshot(as_alice(routed(
        r#"{"model":"b/m","n":2,"messages":[{"role":"user","content":"hi"}]}"#,
        vec![big],
    )))
    .await
    .unwrap();
    let reserved = ledger.reserved.lock().unwrap()[1];
    assert!(reserved.0 >= 2 * 8000 * 2_000_000, "reserved {reserved:?}");
}

/// A client that hangs up after the request went upstream is still billed: the upstream
/// may run the whole generation, so the caller pays the reservation (the worst case).
#[tokio::test]
async fn a_request_abandoned_after_it_went_upstream_is_billed_the_reservation() {
    let (reached_tx, mut reached) = tokio::sync::mpsc::unbounded_channel::<()>();
    let inner = service_fn(move |_r: ChatHttpRequest| {
        reached_tx.send(()).unwrap();
        std::future::pending::<Result<ChatHttpResponse, Error>>()
    });
    let ledger = Arc::new(Ledger::default());
    let (recs, sink) = records();
    let svc = CostMeterLayer::new()
        .budgets(ledger_budgets(&ledger, 1.0))
        .sink(sink)
        .layer(inner);
    let task = tokio::spawn(svc.oneshot(as_alice(routed(
        r#"{"model":"b/m","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#,
        vec![priced("b", "b/m", 1.0, 2.0)],
    ))));
    reached.recv().await.unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let s = ledger.settlements(1).await;
    let (reserved, actual) = s[0];
    assert!(actual > Picodollars::ZERO, "billed nothing");
    assert_eq!(actual, reserved, "billed the worst case");
    let r = recs.lock().unwrap();
    assert_eq!(r.len(), 1, "the sink hears of it");
    assert!(r[0].usage_estimated);
}

/// An answer without `usage` is billed an estimate, never $0.
#[tokio::test]
async fn an_answer_without_usage_is_billed_an_estimate() {
    let inner = service_fn(|_r: ChatHttpRequest| async {
        let mut c = completion("b/m", &"word ".repeat(200));
        c.usage = None;
        let mut resp = http::Response::new(ChatResponse::from(c));
        resp.extensions_mut().insert(served("b", "b/m"));
        Ok::<_, Error>(resp)
    });
    let ledger = Arc::new(Ledger::default());
    let (recs, sink) = records();
    let svc = CostMeterLayer::new()
        .budgets(ledger_budgets(&ledger, 1.0))
        .sink(sink)
        .layer(inner);
    svc.oneshot(as_alice(routed(HELLO, vec![priced("b", "b/m", 1.0, 2.0)])))
        .await
        .unwrap();
    let s = ledger.settlements(1).await;
    // 1000 bytes of text: about 250 output tokens at $2/M at least.
    assert!(s[0].1 >= Picodollars(250 * 2_000_000), "{s:?}");
    let r = recs.lock().unwrap();
    assert!(r[0].usage_estimated);
}

/// Client-chosen pass-through model ids cannot grow the metric label sets without bound.
#[test]
fn pass_through_model_labels_are_capped() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let inner = service_fn(|r: ChatHttpRequest| {
        let model = r.body().model.clone();
        async move {
            let mut resp = http::Response::new(ChatResponse::from(completion(&model, "x")));
            let upstream = model.trim_start_matches("openai/").to_owned();
            resp.extensions_mut()
                .insert(served("openai", &format!("openai/{upstream}")));
            Ok::<_, Error>(resp)
        }
    });
    let svc = CostMeterLayer::new().layer(inner);
    let n = 1200;
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 0..n {
                let body = format!(
                    r#"{{"model":"openai/m{i}","messages":[{{"role":"user","content":"hi"}}]}}"#
                );
                svc.clone()
                    .oneshot(routed(&body, vec![candidate("openai", &format!("m{i}"))]))
                    .await
                    .unwrap();
            }
        });
    });
    let snap = snapshotter.snapshot().into_vec();
    let mut models = std::collections::HashSet::new();
    let mut total = 0;
    for (k, _, _, v) in &snap {
        if k.key().name() == "switchboard_requests_total" {
            if let Some(l) = k.key().labels().find(|l| l.key() == "model") {
                models.insert(l.value().to_owned());
            }
            if let metrics_util::debugging::DebugValue::Counter(c) = v {
                total += c;
            }
        }
    }
    assert_eq!(total, n as u64, "every request counted");
    assert!(
        models.len() <= 1001,
        "{} distinct model labels",
        models.len()
    );
    assert!(models.contains("openai/other"));
    assert!(
        models.contains("openai/m0"),
        "the first ids keep their own label"
    );
}

/// Operators may bill unpriced targets at a default price instead of refusing them.
#[tokio::test]
async fn unpriced_targets_can_be_billed_at_a_default_price() {
    let price = Pricing {
        input: 1.0,
        output: 2.0,
        ..Pricing::default()
    };
    let ledger = Arc::new(Ledger::default());
    let (recs, sink) = records();
    let svc = CostMeterLayer::new()
        .budgets(ledger_budgets(&ledger, 1.0))
        .unpriced(UnpricedPolicy::DefaultPrice(price))
        .sink(sink)
        .layer(answering("openai", "openai/m", usage(1000, 0, 1000), None));
    let body =
        r#"{"model":"openai/m","max_tokens":1000,"messages":[{"role":"user","content":"hi"}]}"#;
    svc.clone()
        .oneshot(as_alice(routed(body, vec![candidate("openai", "m")])))
        .await
        .unwrap();
    let s = ledger.settlements(1).await;
    assert!(
        s[0].0 >= Picodollars::from_usd(0.002),
        "reserved at that price"
    );
    assert_eq!(
        s[0].1,
        Picodollars::from_usd(0.003),
        "1000 × $1/M + 1000 × $2/M"
    );
    assert_eq!(recs.lock().unwrap()[0].cost.unwrap().total().usd(), 0.003);
    // A caller without a budget is not affected: no price, cost null.
    let mut r = routed(body, vec![candidate("openai", "m")]);
    r.extensions_mut().insert(CallerKey("bob".into()));
    svc.oneshot(r).await.unwrap();
    assert!(recs.lock().unwrap()[1].cost.is_none());

    // A price for the provider prices its targets for every caller, budget or not.
    let ledger = Arc::new(Ledger::default());
    let svc = CostMeterLayer::new()
        .budgets(ledger_budgets(&ledger, 1.0))
        .default_price_for("openai", price)
        .layer(answering("openai", "openai/m", usage(1000, 0, 1000), None));
    svc.clone()
        .oneshot(as_alice(routed(body, vec![candidate("openai", "m")])))
        .await
        .unwrap();
    assert_eq!(
        ledger.settlements(1).await[0].1,
        Picodollars::from_usd(0.003)
    );
    let mut r = routed(body, vec![candidate("openai", "m")]);
    r.extensions_mut().insert(CallerKey("bob".into()));
    let resp = svc.clone().oneshot(r).await.unwrap();
    assert_eq!(
        resp.extensions().get::<switchboard::ext::Cost>().unwrap().0,
        0.003
    );
    // Other providers stay unpriced: refused to alice.
    let e = svc
        .oneshot(as_alice(routed(body, vec![candidate("other", "m")])))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
}
