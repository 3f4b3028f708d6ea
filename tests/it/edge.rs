//! The HTTP edge alone, over mock typed services.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use switchboard::edge::{ChatCompletions, ChatCompletionsLayer};
use switchboard::ext::{Attempt, ServedBy};
use switchboard::{ChatHttpRequest, ChatResponse, Error, ErrorKind};
use tower::{service_fn, Layer, ServiceExt};

fn post(body: impl Into<Bytes>) -> http::Request<Full<Bytes>> {
    http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

async fn body_string(r: http::Response<switchboard::edge::EdgeBody>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn streaming_inner(
    items: Vec<Result<switchboard::openai::ChatCompletionChunk, Error>>,
) -> impl tower::Service<
    ChatHttpRequest,
    Response = switchboard::ChatHttpResponse,
    Error = Error,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let items = Arc::new(Mutex::new(Some(items)));
    service_fn(move |_req: ChatHttpRequest| {
        let items = items.lock().unwrap().take().unwrap_or_default();
        async move {
            Ok::<_, Error>(http::Response::new(ChatResponse::stream(
                futures_util::stream::iter(items),
            )))
        }
    })
}

fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or(e).to_owned())
        .collect()
}

#[tokio::test]
async fn renders_completion_with_switchboard_headers() {
    let inner = service_fn(|req: ChatHttpRequest| async move {
        assert_eq!(req.body().model, "a/b");
        let mut r = http::Response::new(ChatResponse::from(completion("a/b", "hello")));
        r.extensions_mut().insert(ServedBy {
            provider: "a".into(),
            model: "a/b".into(),
            attempts: vec![Attempt {
                provider: "a".into(),
                model: "a/b".into(),
                error: None,
            }],
        });
        Ok::<_, Error>(r)
    });
    let resp = ChatCompletions::new(inner)
        .oneshot(post(HELLO))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["x-switchboard-provider"], "a");
    assert_eq!(resp.headers()["x-switchboard-model"], "a/b");
    assert_eq!(resp.headers()["x-switchboard-attempts"], "a:a/b=ok");
    let v: Value = serde_json::from_str(&body_string(resp).await).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hello");
}

#[tokio::test]
async fn usage_chunk_is_hidden_unless_asked() {
    let items = || {
        vec![
            Ok(role_chunk()),
            Ok(text_chunk("hi")),
            Ok(finish_chunk()),
            Ok(usage_chunk()),
        ]
    };
    let resp = ChatCompletions::new(streaming_inner(items()))
        .oneshot(post(HELLO_STREAM))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let ev = events(&body_string(resp).await);
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert_eq!(ev.last().unwrap(), "[DONE]");
    assert!(ev.iter().all(|e| !e.contains("usage")));

    let asked = r#"{"model":"a/b","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = ChatCompletions::new(streaming_inner(items()))
        .oneshot(post(asked))
        .await
        .unwrap();
    let ev = events(&body_string(resp).await);
    assert_eq!(ev.len(), 5);
    let usage: Value = serde_json::from_str(&ev[3]).unwrap();
    assert_eq!(usage["usage"]["total_tokens"], 5);
    assert_eq!(usage["choices"], Value::Array(vec![]));
}

#[tokio::test]
async fn mid_stream_failure_ends_with_error_chunk_and_done() {
    let resp = ChatCompletions::new(streaming_inner(vec![
        Ok(role_chunk()),
        Ok(text_chunk("par")),
        Err(Error::upstream("connection reset")),
    ]))
    .oneshot(post(HELLO_STREAM))
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let ev = events(&body_string(resp).await);
    assert_eq!(ev.len(), 4, "{ev:?}");
    let err: Value = serde_json::from_str(&ev[2]).unwrap();
    assert_eq!(err["error"]["type"], "upstream_error");
    assert_eq!(err["choices"][0]["finish_reason"], "error");
    assert_eq!(err["id"], "chatcmpl-s");
    assert_eq!(ev[3], "[DONE]");
}

#[tokio::test]
async fn every_error_kind_renders_with_its_status() {
    let table = [
        (ErrorKind::InvalidRequest, 400, "invalid_request_error"),
        (ErrorKind::Unauthorized, 401, "authentication_error"),
        (ErrorKind::BudgetExhausted, 402, "insufficient_quota"),
        (ErrorKind::Forbidden, 403, "permission_error"),
        (ErrorKind::NotFound, 404, "invalid_request_error"),
        (ErrorKind::ClientTimeout, 408, "timeout_error"),
        (ErrorKind::PayloadTooLarge, 413, "invalid_request_error"),
        (ErrorKind::RateLimited, 429, "rate_limit_error"),
        (ErrorKind::Upstream, 502, "upstream_error"),
        (ErrorKind::Overloaded, 503, "overloaded_error"),
        (ErrorKind::Timeout, 504, "timeout_error"),
        (
            ErrorKind::UpstreamInvalidRequest,
            400,
            "invalid_request_error",
        ),
        (ErrorKind::UpstreamNotFound, 404, "invalid_request_error"),
    ];
    for (kind, status, ty) in table {
        let inner = service_fn(move |_req: ChatHttpRequest| async move {
            Err::<switchboard::ChatHttpResponse, _>(
                Error::new(kind, "nope").with_retry_after(Duration::from_millis(1500)),
            )
        });
        let resp = ChatCompletions::new(inner)
            .oneshot(post(HELLO))
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{kind:?}");
        assert_eq!(resp.headers()["retry-after"], "2");
        let v: Value = serde_json::from_str(&body_string(resp).await).unwrap();
        assert_eq!(v["error"]["type"], ty, "{kind:?}");
        assert_eq!(v["error"]["message"], "nope");
        assert!(v["error"].get("param").is_some() && v["error"].get("code").is_some());
    }
}

fn never_called() -> impl tower::Service<
    ChatHttpRequest,
    Response = switchboard::ChatHttpResponse,
    Error = Error,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    service_fn(|_req: ChatHttpRequest| async {
        panic!("inner must not be called for bad input");
        #[allow(unreachable_code)]
        Err::<switchboard::ChatHttpResponse, Error>(Error::upstream("x"))
    })
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let edge = ChatCompletionsLayer::new()
        .max_body_bytes(1024)
        .layer(never_called());
    for (body, status) in [
        (Bytes::from_static(b"{nope"), 400),
        (Bytes::from_static(br#"{"model":"a","messages":[]}"#), 400),
        (
            Bytes::from_static(br#"{"model":["a"],"messages":[{"role":"user","content":"x"}]}"#),
            400,
        ),
        (Bytes::from(vec![b' '; 4096]), 413),
    ] {
        let resp = edge.clone().oneshot(post(body)).await.unwrap();
        assert_eq!(resp.status(), status);
        let v: Value = serde_json::from_str(&body_string(resp).await).unwrap();
        assert!(v["error"]["message"].as_str().unwrap().len() > 5);
    }
    let get = http::Request::get("/v1/chat/completions")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = edge.clone().oneshot(get).await.unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test(start_paused = true)]
async fn slow_body_is_408() {
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(1);
    let edge = ChatCompletionsLayer::new()
        .body_timeout(Duration::from_secs(5))
        .layer(never_called());
    let req = http::Request::post("/v1/chat/completions")
        .body(body)
        .unwrap();
    let task = tokio::spawn(edge.oneshot(req));
    tx.send_data(Bytes::from_static(b"{\"model\":"))
        .await
        .unwrap();
    let resp = task.await.unwrap().unwrap();
    assert_eq!(resp.status(), 408);
    drop(tx);
}
