//! Fallback alone, over scripted mock inner services.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use futures_util::StreamExt;
use switchboard::ext::{ServedBy, Target};
use switchboard::fallback::FallbackLayer;
use switchboard::{ChatHttpRequest, ChatHttpResponse, ChatResponse, Error, ErrorKind};
use tower::{service_fn, Layer, ServiceExt};

type Script = Arc<Mutex<Vec<Result<ChatResponse, Error>>>>;

/// An inner service answering from a script, one entry per call, recording the targets.
fn scripted(
    script: Vec<Result<ChatResponse, Error>>,
    seen: Arc<Mutex<Vec<String>>>,
) -> impl tower::Service<
    ChatHttpRequest,
    Response = ChatHttpResponse,
    Error = Error,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let script: Script = Arc::new(Mutex::new(script.into_iter().rev().collect()));
    service_fn(move |req: ChatHttpRequest| {
        let script = script.clone();
        let seen = seen.clone();
        async move {
            let t = req
                .extensions()
                .get::<Target>()
                .expect("Fallback writes a Target");
            seen.lock()
                .unwrap()
                .push(format!("{}#{}", t.candidate.label(), t.attempt));
            let next = script.lock().unwrap().pop().expect("script long enough");
            next.map(http::Response::new)
        }
    })
}

fn with_route(body: &str, cands: &[(&str, &str)]) -> ChatHttpRequest {
    let mut r = request(body);
    r.extensions_mut().insert(route(cands));
    r
}

#[tokio::test]
async fn falls_back_on_429_then_reports_served_by() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = FallbackLayer::new().layer(scripted(
        vec![
            Err(Error::new(ErrorKind::RateLimited, "slow down")),
            Ok(completion("b/m", "hi").into()),
        ],
        seen.clone(),
    ));
    let resp = svc
        .oneshot(with_route(HELLO, &[("a", "m"), ("b", "m")]))
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), ["a/m#1", "b/m#2"]);
    let served = resp.extensions().get::<ServedBy>().unwrap();
    assert_eq!(&*served.provider, "b");
    assert_eq!(served.attempts.len(), 2);
    assert_eq!(served.attempts[0].error, Some(ErrorKind::RateLimited));
    assert_eq!(served.attempts[1].error, None);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = FallbackLayer::new().layer(scripted(
        vec![Err(Error::new(ErrorKind::UpstreamInvalidRequest, "bad"))],
        seen.clone(),
    ));
    let e = svc
        .oneshot(with_route(HELLO, &[("a", "m"), ("b", "m")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UpstreamInvalidRequest);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn all_rate_limited_gives_429_with_smallest_retry_after() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = FallbackLayer::new().layer(scripted(
        vec![
            Err(Error::new(ErrorKind::RateLimited, "a").with_retry_after(Duration::from_secs(9))),
            Err(Error::new(ErrorKind::RateLimited, "b").with_retry_after(Duration::from_secs(2))),
        ],
        seen,
    ));
    let e = svc
        .oneshot(with_route(HELLO, &[("a", "m"), ("b", "m")]))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 429);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn mixed_failures_give_the_last_error() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = FallbackLayer::new().layer(scripted(
        vec![
            Err(Error::new(ErrorKind::RateLimited, "a")),
            Err(Error::new(ErrorKind::Timeout, "b")),
        ],
        seen,
    ));
    let e = svc
        .oneshot(with_route(HELLO, &[("a", "m"), ("b", "m")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn stream_failing_before_first_output_falls_back_invisibly() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let broken = ChatResponse::stream(futures_util::stream::iter(vec![
        Ok(role_chunk()),
        Err(Error::upstream("reset")),
    ]));
    let good = ChatResponse::stream(futures_util::stream::iter(vec![
        Ok(role_chunk()),
        Ok(text_chunk("hello")),
        Ok(finish_chunk()),
    ]));
    let svc = FallbackLayer::new().layer(scripted(vec![Ok(broken), Ok(good)], seen.clone()));
    let resp = svc
        .oneshot(with_route(HELLO_STREAM, &[("a", "m"), ("b", "m")]))
        .await
        .unwrap();
    let items: Vec<_> = resp.into_body().into_stream().unwrap().collect().await;
    assert!(items.iter().all(Result::is_ok));
    assert_eq!(
        items.len(),
        3,
        "one role chunk from the serving attempt only"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn stream_failing_after_commit_is_not_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let inner = service_fn(move |_req: ChatHttpRequest| {
        c2.fetch_add(1, Ordering::SeqCst);
        async move {
            Ok::<_, Error>(http::Response::new(ChatResponse::stream(
                futures_util::stream::iter(vec![
                    Ok(role_chunk()),
                    Ok(text_chunk("partial")),
                    Err(Error::upstream("reset")),
                ]),
            )))
        }
    });
    let resp = FallbackLayer::new()
        .layer(inner)
        .oneshot(with_route(HELLO_STREAM, &[("a", "m"), ("b", "m")]))
        .await
        .unwrap();
    let items: Vec<_> = resp.into_body().into_stream().unwrap().collect().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(items[1].is_ok());
    assert_eq!(items[2].as_ref().unwrap_err().kind(), ErrorKind::Upstream);
}

#[tokio::test]
async fn without_route_or_target_is_a_clear_error() {
    let inner = service_fn(|_req: ChatHttpRequest| async {
        Ok::<_, Error>(http::Response::new(ChatResponse::from(completion(
            "x", "y",
        ))))
    });
    let e = FallbackLayer::new()
        .layer(inner)
        .oneshot(request(HELLO))
        .await
        .unwrap_err();
    assert!(e.message().contains("ModelResolve"));
}

mod health_retries_budget {
    use super::*;
    use switchboard::fallback::TIMEOUT_HEADER;
    use switchboard::health::{Health, HealthConfig, TargetState};
    use tokio::time::Instant;

    fn failing_then_ok(
        fail_first: usize,
        kind: ErrorKind,
        retry_after: Option<Duration>,
        seen: Arc<Mutex<Vec<(String, Option<Duration>)>>>,
    ) -> impl tower::Service<
        ChatHttpRequest,
        Response = ChatHttpResponse,
        Error = Error,
        Future = impl Send,
    > + Clone
           + Send
           + 'static {
        let calls = Arc::new(AtomicUsize::new(0));
        service_fn(move |req: ChatHttpRequest| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let t = req.extensions().get::<Target>().unwrap().clone();
            seen.lock()
                .unwrap()
                .push((t.candidate.label(), t.deadlines.total));
            async move {
                if n < fail_first {
                    let mut e = Error::new(kind, "fail");
                    if let Some(r) = retry_after {
                        e = e.with_retry_after(r);
                    }
                    Err(e)
                } else {
                    Ok(http::Response::new(ChatResponse::from(completion(
                        "x", "ok",
                    ))))
                }
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn retries_one_target_honouring_retry_after() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let svc = FallbackLayer::new().retries(2).layer(failing_then_ok(
            2,
            ErrorKind::RateLimited,
            Some(Duration::from_secs(3)),
            seen.clone(),
        ));
        let start = Instant::now();
        let resp = svc.oneshot(with_route(HELLO, &[("a", "m")])).await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert!(
            start.elapsed() >= Duration::from_secs(6),
            "slept Retry-After twice"
        );
        assert_eq!(
            resp.extensions().get::<ServedBy>().unwrap().attempts.len(),
            3
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_longer_than_budget_moves_on_without_sleeping() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let svc = FallbackLayer::new().retries(3).layer(failing_then_ok(
            1,
            ErrorKind::RateLimited,
            Some(Duration::from_secs(60)),
            seen.clone(),
        ));
        let mut req = with_route(HELLO, &[("a", "m"), ("b", "m")]);
        req.headers_mut()
            .insert(TIMEOUT_HEADER, "10000".parse().unwrap());
        let start = Instant::now();
        svc.oneshot(req).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].0, "a/m");
        assert_eq!(seen[1].0, "b/m");
    }

    #[tokio::test(start_paused = true)]
    async fn budget_spans_attempts_and_clips_deadlines() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let inner = {
            let seen = seen.clone();
            service_fn(move |req: ChatHttpRequest| {
                let t = req.extensions().get::<Target>().unwrap().clone();
                seen.lock()
                    .unwrap()
                    .push((t.candidate.label(), t.deadlines.total));
                async move {
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    Err::<ChatHttpResponse, _>(Error::new(ErrorKind::Upstream, "500"))
                }
            })
        };
        let svc = FallbackLayer::new()
            .default_budget(Duration::from_secs(10))
            .layer(inner);
        let start = Instant::now();
        let e = svc
            .oneshot(with_route(
                HELLO,
                &[("a", "m"), ("b", "m"), ("c", "m"), ("d", "m")],
            ))
            .await
            .unwrap_err();
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(10),
            "never past the budget"
        );
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(e.status(), 504);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].1, Some(Duration::from_secs(10)));
        assert_eq!(seen[1].1, Some(Duration::from_secs(6)));
        assert_eq!(seen[2].1, Some(Duration::from_secs(2)));
        assert_eq!(e.attempts().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn cooling_down_target_is_skipped_then_probed() {
        let health = Health::new(HealthConfig {
            failure_threshold: 1,
            cooldown: Duration::from_secs(30),
            ..HealthConfig::default()
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let svc = FallbackLayer::new()
            .health(health.clone())
            .layer(failing_then_ok(1, ErrorKind::Upstream, None, seen.clone()));
        // First request: a fails (and cools down), b serves.
        svc.clone()
            .oneshot(with_route(HELLO, &[("a", "m"), ("b", "m")]))
            .await
            .unwrap();
        assert_eq!(health.state(&candidate("a", "m")), TargetState::CoolingDown);
        // Second: a is skipped.
        svc.clone()
            .oneshot(with_route(HELLO, &[("a", "m"), ("b", "m")]))
            .await
            .unwrap();
        let labels: Vec<_> = seen.lock().unwrap().iter().map(|s| s.0.clone()).collect();
        assert_eq!(labels, ["a/m", "b/m", "b/m"]);
        // After the cool-down, a half-open probe goes to a and closes the circuit.
        tokio::time::advance(Duration::from_secs(31)).await;
        svc.oneshot(with_route(HELLO, &[("a", "m"), ("b", "m")]))
            .await
            .unwrap();
        assert_eq!(seen.lock().unwrap().last().unwrap().0, "a/m");
        assert_eq!(health.state(&candidate("a", "m")), TargetState::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn all_cooling_down_is_503() {
        let health = Health::new(HealthConfig {
            failure_threshold: 1,
            ..HealthConfig::default()
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let svc = FallbackLayer::new().health(health).layer(failing_then_ok(
            10,
            ErrorKind::Upstream,
            None,
            seen,
        ));
        let _ = svc.clone().oneshot(with_route(HELLO, &[("a", "m")])).await;
        let e = svc
            .oneshot(with_route(HELLO, &[("a", "m")]))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 503);
    }
}

#[tokio::test]
async fn context_length_error_moves_to_a_larger_window() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = FallbackLayer::new().layer(scripted(
        vec![
            Err(Error::new(ErrorKind::UpstreamInvalidRequest, "too long")
                .with_code("context_length_exceeded")),
            Ok(completion("c/m", "fits").into()),
        ],
        seen.clone(),
    ));
    let mut small = candidate("a", "m");
    small.context_length = Some(8_000);
    let mut same = candidate("b", "m");
    same.context_length = Some(8_000);
    let mut large = candidate("c", "m");
    large.context_length = Some(200_000);
    let mut req = request(HELLO);
    req.extensions_mut().insert(switchboard::ext::Route {
        requested: "x".into(),
        candidates: vec![small, same, large].into(),
    });
    svc.oneshot(req).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["a/m#1", "c/m#2"],
        "b has no larger window"
    );
}
