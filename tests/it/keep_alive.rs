//! Keep-alive comments on streamed chat completions: sent while no output has arrived, with
//! Fallback working behind them; a failure after the start is the in-band error.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use switchboard::catalog::{ModelSpec, Provider, ProviderKind};
use switchboard::demo::{DemoConfig, DemoServer, Fault, DEMO_API_KEY};
use switchboard::{Catalog, Gateway};
use tower::ServiceExt;

async fn two_providers() -> (DemoServer, DemoServer, Gateway) {
    let slow = DemoConfig::default().with_latency(Duration::from_millis(300));
    let a = DemoServer::start(ProviderKind::Openai, slow.clone())
        .await
        .unwrap();
    let b = DemoServer::start(ProviderKind::Openai, slow).await.unwrap();
    let catalog = Catalog::builder()
        .provider(
            Provider::new("a", ProviderKind::Openai, &a.base_url()).with_api_key(DEMO_API_KEY),
        )
        .provider(
            Provider::new("b", ProviderKind::Openai, &b.base_url()).with_api_key(DEMO_API_KEY),
        )
        .model(
            ModelSpec::new("openai/gpt-4o-mini")
                .endpoint("a", "gpt-4o-mini", None)
                .endpoint("b", "gpt-4o-mini", None),
        )
        .build()
        .unwrap();
    let gateway = Gateway::builder(catalog)
        .keep_alive(Duration::from_millis(50))
        .build();
    (a, b, gateway)
}

async fn stream(g: &Gateway) -> (u16, String) {
    let body = json!({"model": "openai/gpt-4o-mini", "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let req = http::Request::post("/v1/chat/completions")
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), g.chat_completions().oneshot(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn data(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect()
}

#[tokio::test]
async fn comments_flow_while_fallback_finds_a_provider() {
    let (a, b, g) = two_providers().await;
    // The first provider fails after its latency; the second answers.
    a.faults().push(Fault::status(503));
    let (status, text) = stream(&g).await;
    assert_eq!(status, 200);
    assert!(text.starts_with(": keep-alive\n\n"), "{text}");
    let events = data(&text);
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let said: String = events
        .iter()
        .filter(|d| **d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(said.contains("You said: hi"), "{text}");
    assert_eq!(a.request_count(), 1);
    assert_eq!(
        b.request_count(),
        1,
        "the fallback served behind the comments"
    );
}

#[tokio::test]
async fn every_candidate_failing_ends_with_the_error_chunk() {
    let (a, b, g) = two_providers().await;
    a.faults().push(Fault::status(503));
    b.faults().push(Fault::status(503));
    let (status, text) = stream(&g).await;
    assert_eq!(status, 200, "committed by the comments");
    assert!(text.starts_with(": keep-alive\n\n"), "{text}");
    let events = data(&text);
    assert_eq!(events.len(), 2, "{text}");
    let err: Value = serde_json::from_str(events[0]).unwrap();
    assert!(err["error"]["message"].is_string(), "{text}");
    assert_eq!(err["choices"][0]["finish_reason"], "error", "{text}");
    assert_eq!(events[1], "[DONE]");
}
