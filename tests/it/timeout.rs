//! ModelTimeout alone, over mock services with paused time.

use std::time::Duration;

use crate::support::*;
use futures_util::StreamExt;
use switchboard::catalog::Deadlines;
use switchboard::ext::Target;
use switchboard::timeout::ModelTimeoutLayer;
use switchboard::{ChatHttpRequest, ChatHttpResponse, ChatResponse, Error, ErrorKind};
use tokio::time::sleep;
use tower::{service_fn, Layer, ServiceExt};

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

fn with_target(body: &str, d: Deadlines) -> ChatHttpRequest {
    let mut r = request(body);
    let mut t = Target::new(candidate("a", "m"));
    t.deadlines = d;
    r.extensions_mut().insert(t);
    r
}

/// A stream yielding each chunk after its delay.
fn paced(items: Vec<(u64, switchboard::openai::ChatCompletionChunk)>) -> ChatResponse {
    ChatResponse::stream(
        futures_util::stream::iter(items).then(|(ms, c)| async move {
            sleep(Duration::from_millis(ms)).await;
            Ok(c)
        }),
    )
}

#[tokio::test(start_paused = true)]
async fn total_deadline_cuts_a_slow_answer() {
    let inner = service_fn(|_r: ChatHttpRequest| async {
        sleep(Duration::from_secs(30)).await;
        Ok::<_, Error>(http::Response::new(ChatResponse::from(completion(
            "a/m", "late",
        ))))
    });
    let start = tokio::time::Instant::now();
    let e = ModelTimeoutLayer::default()
        .layer(inner)
        .oneshot(with_target(
            HELLO,
            Deadlines {
                total: secs(2),
                ..Deadlines::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn no_deadline_means_no_timer() {
    let inner = service_fn(|_r: ChatHttpRequest| async {
        sleep(Duration::from_secs(300)).await;
        Ok::<_, Error>(http::Response::new(ChatResponse::from(completion(
            "a/m", "late",
        ))))
    });
    let r = ModelTimeoutLayer::default()
        .layer(inner)
        .oneshot(with_target(HELLO, Deadlines::default()))
        .await;
    assert!(r.is_ok());
}

#[tokio::test(start_paused = true)]
async fn first_token_deadline_ignores_preamble() {
    let inner = service_fn(|_r: ChatHttpRequest| async {
        Ok::<_, Error>(http::Response::new(paced(vec![
            (100, role_chunk()),
            (5_000, text_chunk("too late")),
        ])))
    });
    let d = Deadlines {
        first_token: secs(1),
        ..Deadlines::default()
    };
    let resp: ChatHttpResponse = ModelTimeoutLayer::default()
        .layer(inner)
        .oneshot(with_target(HELLO_STREAM, d))
        .await
        .unwrap();
    let items: Vec<_> = resp.into_body().into_stream().unwrap().collect().await;
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    let e = items[1].as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.message().contains("first-token"));
}

#[tokio::test(start_paused = true)]
async fn idle_deadline_between_chunks() {
    let inner = service_fn(|_r: ChatHttpRequest| async {
        Ok::<_, Error>(http::Response::new(paced(vec![
            (10, text_chunk("a")),
            (900, text_chunk("b")),
            (900, text_chunk("c")),
            (3_000, text_chunk("stalled")),
        ])))
    });
    let d = Deadlines {
        idle: secs(1),
        ..Deadlines::default()
    };
    let resp = ModelTimeoutLayer::default()
        .layer(inner)
        .oneshot(with_target(HELLO_STREAM, d))
        .await
        .unwrap();
    let items: Vec<_> = resp.into_body().into_stream().unwrap().collect().await;
    assert_eq!(items.len(), 4);
    assert!(
        items[2].is_ok(),
        "900 ms gaps are under the 1 s idle deadline"
    );
    assert!(items[3].as_ref().unwrap_err().message().contains("idle"));
}

#[tokio::test(start_paused = true)]
async fn total_deadline_spans_the_whole_stream() {
    let inner = service_fn(|_r: ChatHttpRequest| async {
        Ok::<_, Error>(http::Response::new(paced(
            (0..10).map(|_| (600, text_chunk("x"))).collect(),
        )))
    });
    let d = Deadlines {
        total: secs(2),
        idle: secs(1),
        ..Deadlines::default()
    };
    let resp = ModelTimeoutLayer::default()
        .layer(inner)
        .oneshot(with_target(HELLO_STREAM, d))
        .await
        .unwrap();
    let items: Vec<_> = resp.into_body().into_stream().unwrap().collect().await;
    assert_eq!(items.iter().filter(|i| i.is_ok()).count(), 3);
    assert!(items
        .last()
        .unwrap()
        .as_ref()
        .unwrap_err()
        .message()
        .contains("total"));
}
