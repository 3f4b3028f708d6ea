//! The whole default stack against the demo providers on 127.0.0.1: pass-through, the error
//! table end to end, fallback across providers, streams that break, deadlines.

use std::time::Duration;
use tokio::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use switchboard::catalog::{Deadlines, ModelSpec, Pricing, Provider, ProviderKind};
use switchboard::client::HttpClient;
use switchboard::demo::{DemoConfig, DemoServer, Fault, DEMO_API_KEY};
use switchboard::fallback::FallbackLayer;
use switchboard::health::{Health, HealthConfig};
use switchboard::{Catalog, Gateway};
use tower::ServiceExt;

struct Env {
    gateway: Gateway,
    a: DemoServer,
    b: DemoServer,
}

/// Two OpenAI-compatible demo providers `a` and `b`, one model on both (`x/model`, a first),
/// each provider's own models, and deadlines.
async fn env_with(deadlines: Deadlines, key_a: &str, max_response: usize) -> Env {
    let a = DemoServer::start(ProviderKind::Openai, DemoConfig::default())
        .await
        .unwrap();
    let b = DemoServer::start(ProviderKind::Openai, DemoConfig::default())
        .await
        .unwrap();
    let catalog = Catalog::builder()
        .provider(
            Provider::new("a", ProviderKind::Openai, &a.base_url())
                .with_api_key(key_a)
                .with_deadlines(deadlines),
        )
        .provider(
            Provider::new("b", ProviderKind::Openai, &b.base_url())
                .with_api_key(DEMO_API_KEY)
                .with_deadlines(deadlines),
        )
        .model(ModelSpec::new("a/gpt-4o-mini").pricing(Pricing {
            input: 1.0,
            output: 2.0,
            ..Pricing::default()
        }))
        .model(
            ModelSpec::new("x/model")
                .endpoint("a", "gpt-4o-mini", None)
                .endpoint("b", "gpt-4o-mini", None),
        )
        .passthrough(true)
        .build()
        .unwrap();
    let gateway = Gateway::builder(catalog)
        .client(
            HttpClient::builder()
                .connect_timeout(Duration::from_secs(2))
                .build(),
        )
        .max_response_bytes(max_response)
        .fallback(FallbackLayer::new().max_budget(Duration::from_secs(30)))
        // Cool-down has its own test; here every fault must reach the upstream.
        .health(Health::new(HealthConfig {
            failure_threshold: 1_000,
            ..HealthConfig::default()
        }))
        .build();
    Env { gateway, a, b }
}

async fn env() -> Env {
    env_with(Deadlines::default(), DEMO_API_KEY, 1 << 20).await
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn events(&self) -> Vec<String> {
        self.body
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap_or(e).to_owned())
            .collect()
    }
}

async fn post(g: &Gateway, body: Value) -> Answer {
    post_with(g, body, &[]).await
}

async fn post_with(g: &Gateway, body: Value, headers: &[(&str, &str)]) -> Answer {
    let mut req = http::Request::post("/v1/chat/completions");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
        .unwrap();
    let resp = g.chat_completions().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]})
}

fn hello_stream(model: &str) -> Value {
    json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hello there"}]})
}

#[tokio::test]
async fn unknown_fields_are_forwarded_untouched() {
    let e = env().await;
    let raw = br#"{"model":"a/gpt-4o-mini","messages":[{"role":"user","content":"hi","name":"bob"}],"logit_bias":{"50256": -100},"x_vendor":{"nested":[1, 2.50, "s"]},"temperature":0.25}"#;
    let req = http::Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from_static(raw)))
        .unwrap();
    let resp = e.gateway.chat_completions().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = e.a.last_request().unwrap();
    let sent = std::str::from_utf8(&got.raw_body).unwrap();
    assert!(
        sent.contains(r#""x_vendor":{"nested":[1, 2.50, "s"]}"#),
        "{sent}"
    );
    assert!(sent.contains(r#""logit_bias":{"50256": -100}"#), "{sent}");
    assert!(
        sent.contains(r#""messages":[{"role":"user","content":"hi","name":"bob"}]"#),
        "{sent}"
    );
    assert_eq!(got.body["model"], "gpt-4o-mini");
    assert_eq!(got.header("authorization"), Some("Bearer demo-key"));
}

#[tokio::test]
async fn a_long_conversation_goes_upstream_byte_for_byte_with_a_content_length() {
    // `messages` over 4 KiB is sent as a slice of the client's body between the codec's own
    // bytes (three frames, one vectored write): the provider must still see one JSON body
    // with an exact Content-Length, not a chunked one.
    let e = env().await;
    let turn =
        r#"{"role":"user","content":"Summarise the attached report, section by section. \u00e9"}"#;
    let messages = vec![turn; 120].join(",");
    let raw = format!(
        r#"{{"model":"a/gpt-4o-mini","messages":[{messages}],"temperature":0.25,"x_vendor":[1, 2]}}"#
    );
    assert!(messages.len() > 8192);
    let req = http::Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from(raw)))
        .unwrap();
    let resp = e.gateway.chat_completions().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = e.a.last_request().unwrap();
    let expected = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{messages}],"temperature":0.25,"x_vendor":[1, 2]}}"#
    );
    assert_eq!(std::str::from_utf8(&got.raw_body).unwrap(), expected);
    let expected_len = expected.len().to_string();
    assert_eq!(got.header("content-length"), Some(expected_len.as_str()));
    assert_eq!(got.header("transfer-encoding"), None);
}

#[tokio::test]
async fn completion_carries_model_usage_cost_and_headers() {
    let e = env().await;
    let a = post(&e.gateway, hello("a/gpt-4o-mini")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["model"], "a/gpt-4o-mini");
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("hello there"));
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(v["usage"]["cost"].as_f64().unwrap() > 0.0);
    assert_eq!(a.headers["x-switchboard-provider"], "a");
    assert!(a.headers.contains_key("x-switchboard-cost"));
}

#[tokio::test]
async fn usage_chunk_hidden_unless_asked_but_always_requested_upstream() {
    let e = env().await;
    let a = post(&e.gateway, hello_stream("a/gpt-4o-mini")).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        e.a.last_request().unwrap().body["stream_options"]["include_usage"],
        true
    );
    let ev = a.events();
    assert_eq!(ev.last().unwrap(), "[DONE]");
    assert!(ev.iter().all(|e| !e.contains("\"usage\"")), "{ev:?}");

    let mut body = hello_stream("a/gpt-4o-mini");
    body["stream_options"] = json!({"include_usage": true});
    let a = post(&e.gateway, body).await;
    let ev = a.events();
    let usage: Value = serde_json::from_str(&ev[ev.len() - 2]).unwrap();
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(
        usage["usage"]["cost"].as_f64().unwrap() > 0.0,
        "cost in the last chunk"
    );
}

#[tokio::test]
async fn upstream_errors_follow_the_table() {
    // One candidate only, so each upstream failure is the client's answer.
    let cases: Vec<(Fault, u16, &str)> = vec![
        (Fault::Status(429, Some(7)), 429, "rate_limit_error"),
        (Fault::status(500), 502, "upstream_error"),
        (Fault::status(502), 502, "upstream_error"),
        (Fault::status(503), 503, "overloaded_error"),
        (Fault::status(529), 503, "overloaded_error"),
        (Fault::status(404), 404, "invalid_request_error"),
        (Fault::status(400), 400, "invalid_request_error"),
        (Fault::status(408), 504, "timeout_error"),
        (Fault::status(403), 502, "upstream_error"),
        (Fault::Garbage, 502, "upstream_error"),
        (Fault::Truncated, 502, "upstream_error"),
        (Fault::DropBeforeHeaders, 502, "upstream_error"),
    ];
    let e = env().await;
    for (fault, status, ty) in cases {
        e.a.faults().push(fault.clone());
        let a = post(&e.gateway, hello("a/gpt-4o-mini")).await;
        assert_eq!(a.status, status, "{fault:?}: {}", a.body);
        let v = a.json();
        assert_eq!(v["error"]["type"], ty, "{fault:?}");
        if status == 429 {
            assert_eq!(a.headers["retry-after"], "7");
        }
        assert!(!a.body.contains(DEMO_API_KEY));
    }
    // The server keeps serving.
    assert_eq!(post(&e.gateway, hello("a/gpt-4o-mini")).await.status, 200);
}

#[tokio::test]
async fn our_bad_provider_key_is_502_never_the_clients_401() {
    let e = env_with(Deadlines::default(), "sk-wrong-secret", 1 << 20).await;
    let a = post(&e.gateway, hello("a/gpt-4o-mini")).await;
    assert_eq!(a.status, 502);
    assert!(a.body.contains("credentials"));
    assert!(!a.body.contains("sk-wrong-secret"));
}

#[tokio::test]
async fn upstream_body_over_the_limit_is_502() {
    let e = env_with(Deadlines::default(), DEMO_API_KEY, 64 * 1024).await;
    e.a.faults().push(Fault::Huge(1 << 20));
    let a = post(&e.gateway, hello("a/gpt-4o-mini")).await;
    assert_eq!(a.status, 502);
    assert!(a.body.contains("limit"), "{}", a.body);
}

#[tokio::test]
async fn unknown_model_is_404_and_unknown_provider_too() {
    let e = env().await;
    let a = post(&e.gateway, hello("a/gpt-4o-mni")).await;
    // passthrough: a configured provider prefix goes upstream, which does not know it? The
    // demo accepts any model name, so use an unconfigured provider.
    let _ = a;
    let a = post(&e.gateway, hello("nobody/gpt-4o-mini")).await;
    assert_eq!(a.status, 404);
    assert!(
        a.body.contains("a/gpt-4o-mini"),
        "close match named: {}",
        a.body
    );
}

#[tokio::test]
async fn falls_back_across_providers_non_stream_and_stream() {
    let e = env().await;
    e.a.faults().push(Fault::status(500));
    let a = post(&e.gateway, hello("x/model")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["x-switchboard-provider"], "b");
    assert_eq!(
        a.headers["x-switchboard-attempts"],
        "a:x/model=upstream, b:x/model=ok"
    );
    assert_eq!(a.json()["model"], "x/model");

    e.a.faults().push(Fault::Status(429, Some(1)));
    let a = post(&e.gateway, hello_stream("x/model")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["x-switchboard-provider"], "b");
    assert_eq!(a.events().last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn stream_failing_before_first_delta_falls_back_invisibly() {
    let e = env().await;
    // The role chunk goes out, then the connection is cut before any content.
    e.a.faults().push(Fault::DropMidStream { after_chunks: 1 });
    let a = post(&e.gateway, hello_stream("x/model")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["x-switchboard-provider"], "b");
    let ev = a.events();
    assert!(ev.iter().all(|e| !e.contains("\"error\"")), "{ev:?}");
    let roles = ev.iter().filter(|e| e.contains("\"role\"")).count();
    assert_eq!(roles, 1, "the failed attempt's preamble was held back");
}

#[tokio::test]
async fn mid_stream_drop_after_commit_ends_with_error_chunk_then_done() {
    let e = env().await;
    e.a.faults().push(Fault::DropMidStream { after_chunks: 3 });
    let a = post(&e.gateway, hello_stream("x/model")).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.headers["x-switchboard-provider"], "a",
        "no fallback after commit"
    );
    let ev = a.events();
    assert_eq!(ev.last().unwrap(), "[DONE]");
    let err: Value = serde_json::from_str(&ev[ev.len() - 2]).unwrap();
    assert_eq!(err["choices"][0]["finish_reason"], "error");
    assert!(err["error"]["message"].is_string());
    assert_eq!(e.b.request_count(), 0);
}

#[tokio::test]
async fn streams_without_end_marker_or_with_bad_events_are_errors() {
    let e = env().await;
    // After the first delta: an error chunk, then [DONE].
    e.a.faults().push(Fault::NoDone);
    let a = post(&e.gateway, hello_stream("a/gpt-4o-mini")).await;
    let ev = a.events();
    assert_eq!(ev.last().unwrap(), "[DONE]");
    assert!(ev[ev.len() - 2].contains("\"error\""), "{ev:?}");
    // Before it (the second event is broken): still a real HTTP error.
    e.a.faults().push(Fault::MalformedEvent);
    let a = post(&e.gateway, hello_stream("a/gpt-4o-mini")).await;
    assert_eq!(a.status, 502);
    assert!(a.body.contains("malformed"));
}

#[tokio::test]
async fn hang_hits_the_deadline_then_falls_back() {
    let d = Deadlines {
        total: Some(Duration::from_millis(1500)),
        first_token: Some(Duration::from_millis(300)),
        idle: Some(Duration::from_millis(300)),
    };
    let e = env_with(d, DEMO_API_KEY, 1 << 20).await;
    e.a.faults().push(Fault::Hang);
    let start = Instant::now();
    let a = post(&e.gateway, hello("x/model")).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.headers["x-switchboard-attempts"],
        "a:x/model=timeout, b:x/model=ok"
    );
    assert!(start.elapsed() < Duration::from_secs(3));

    // A stream that stalls after its first delta: the idle deadline ends it with an error.
    e.a.faults().push(Fault::StallMidStream { after_chunks: 3 });
    let start = Instant::now();
    let a = post(&e.gateway, hello_stream("a/gpt-4o-mini")).await;
    let ev = a.events();
    assert!(ev[ev.len() - 2].contains("idle"), "{ev:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn request_budget_bounds_total_time_across_retries() {
    let e = env().await;
    e.a.faults().push(Fault::Hang);
    e.b.faults().push(Fault::Hang);
    let start = Instant::now();
    let a = post_with(
        &e.gateway,
        hello("x/model"),
        &[("x-switchboard-timeout-ms", "400")],
    )
    .await;
    let took = start.elapsed();
    assert_eq!(a.status, 504, "{}", a.body);
    assert!(took >= Duration::from_millis(400));
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn cache_hits_are_free_and_streams_replay() {
    use switchboard::cache::ResponseCacheLayer;
    let a = DemoServer::start(ProviderKind::Openai, DemoConfig::default())
        .await
        .unwrap();
    let catalog = Catalog::builder()
        .provider(
            Provider::new("a", ProviderKind::Openai, &a.base_url()).with_api_key(DEMO_API_KEY),
        )
        .model(ModelSpec::new("a/gpt-4o-mini").pricing(Pricing {
            input: 1.0,
            output: 2.0,
            ..Pricing::default()
        }))
        .build()
        .unwrap();
    let g = Gateway::builder(catalog)
        .response_cache(ResponseCacheLayer::default())
        .build();
    let first = post(&g, hello("a/gpt-4o-mini")).await;
    assert_eq!(first.headers["x-switchboard-cache"], "MISS");
    assert!(first.json()["usage"]["cost"].as_f64().unwrap() > 0.0);
    let hit = post(&g, hello("a/gpt-4o-mini")).await;
    assert_eq!(hit.headers["x-switchboard-cache"], "HIT");
    assert_eq!(hit.json()["usage"]["cost"].as_f64(), Some(0.0));
    assert_eq!(
        hit.json()["choices"][0]["message"]["content"],
        first.json()["choices"][0]["message"]["content"]
    );
    assert_ne!(hit.json()["id"], first.json()["id"]);
    assert_eq!(a.request_count(), 1);
    // The same request as a stream is replayed from the recorded answer.
    let s = post(&g, hello_stream("a/gpt-4o-mini")).await;
    assert_eq!(s.headers["x-switchboard-cache"], "HIT");
    assert_eq!(s.events().last().unwrap(), "[DONE]");
    let text: String = s.events()[..s.events().len() - 1]
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        text,
        first.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
    );
    // no-store bypasses.
    let b = post_with(&g, hello("a/gpt-4o-mini"), &[("cache-control", "no-store")]).await;
    assert_eq!(b.headers["x-switchboard-cache"], "BYPASS");
    assert_eq!(a.request_count(), 2);
}

#[tokio::test]
async fn allow_fallbacks_false_tries_one_candidate() {
    let e = env().await;
    e.a.faults().push(Fault::status(500));
    let mut body = hello("x/model");
    body["provider"] = json!({"allow_fallbacks": false});
    let a = post(&e.gateway, body).await;
    assert_eq!(a.status, 502);
    assert_eq!(e.b.request_count(), 0);
}

#[tokio::test]
async fn cool_down_skips_a_broken_target_and_a_probe_brings_it_back() {
    let a = DemoServer::start(ProviderKind::Openai, DemoConfig::default())
        .await
        .unwrap();
    let b = DemoServer::start(ProviderKind::Openai, DemoConfig::default())
        .await
        .unwrap();
    let catalog = Catalog::builder()
        .provider(
            Provider::new("a", ProviderKind::Openai, &a.base_url()).with_api_key(DEMO_API_KEY),
        )
        .provider(
            Provider::new("b", ProviderKind::Openai, &b.base_url()).with_api_key(DEMO_API_KEY),
        )
        .model(
            ModelSpec::new("x/model")
                .endpoint("a", "gpt-4o-mini", None)
                .endpoint("b", "gpt-4o-mini", None),
        )
        .build()
        .unwrap();
    let cooldown = Duration::from_millis(300);
    let g = Gateway::builder(catalog)
        .health(Health::new(HealthConfig {
            failure_threshold: 2,
            cooldown,
            ..HealthConfig::default()
        }))
        .build();
    a.faults().set_persistent(Some(Fault::status(500)));
    for _ in 0..2 {
        let r = post(&g, hello("x/model")).await;
        assert_eq!(r.headers["x-switchboard-provider"], "b");
    }
    assert_eq!(a.request_count(), 2);
    // Cooling down: a is not called at all.
    let r = post(&g, hello("x/model")).await;
    assert_eq!(r.headers["x-switchboard-provider"], "b");
    assert_eq!(a.request_count(), 2);
    // a recovers; after the cool-down one probe goes to it and closes the circuit.
    a.faults().set_persistent(None);
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    let r = post(&g, hello("x/model")).await;
    assert_eq!(r.headers["x-switchboard-provider"], "a");
    let r = post(&g, hello("x/model")).await;
    assert_eq!(r.headers["x-switchboard-provider"], "a");
    assert_eq!(a.request_count(), 4);
}

#[tokio::test]
async fn streams_are_metered_whether_or_not_the_client_asks_for_usage() {
    use std::sync::{Arc, Mutex};
    use switchboard::cost::{CostMeterLayer, CostRecord};
    let a = DemoServer::start(ProviderKind::Openai, DemoConfig::default())
        .await
        .unwrap();
    let catalog = Catalog::builder()
        .provider(
            Provider::new("a", ProviderKind::Openai, &a.base_url()).with_api_key(DEMO_API_KEY),
        )
        .model(ModelSpec::new("a/gpt-4o-mini").pricing(Pricing {
            input: 1.0,
            output: 2.0,
            ..Pricing::default()
        }))
        .build()
        .unwrap();
    let records: Arc<Mutex<Vec<CostRecord>>> = Arc::default();
    let r = records.clone();
    let g = Gateway::builder(catalog)
        .cost_meter(
            CostMeterLayer::new().sink(move |rec: &CostRecord| r.lock().unwrap().push(rec.clone())),
        )
        .build();
    let hidden = post(&g, hello_stream("a/gpt-4o-mini")).await;
    assert!(hidden.events().iter().all(|e| !e.contains("\"usage\"")));
    let mut asked = hello_stream("a/gpt-4o-mini");
    asked["stream_options"] = json!({"include_usage": true});
    let shown = post(&g, asked).await;
    assert!(shown.events().iter().any(|e| e.contains("\"usage\"")));
    let recs = records.lock().unwrap();
    assert_eq!(recs.len(), 2);
    for rec in recs.iter() {
        assert!(
            !rec.usage_estimated,
            "real usage from the upstream's usage chunk"
        );
        assert!(rec.usage.as_ref().unwrap().completion_tokens > 0);
        assert!(rec.cost.unwrap().total().usd() > 0.0);
        assert!(rec.stream);
    }
    assert_eq!(recs[0].usage, recs[1].usage);
}
