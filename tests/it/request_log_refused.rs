//! Requests refused before the CostMeter have rows: at the edge (malformed → 400, too large →
//! 413, bad key → 401), in ClientKeys (allow-list → 403), in ModelResolve (unknown model →
//! 404), in the CostMeter before its record (budget → 402), on every ingress; the
//! `x-generation-id` of the error answer finds the row.

use bytes::Bytes;
use serde_json::{json, Value};
use switchboard::demo::DemoProviders;

use super::{call, call_bytes, gateway, row, Backend, Gw, ALICE};

/// Alice, and keys for the refusals: carol may use `fast` only, dave has no budget left.
const EXTRA: &str = "[gateway]\nmax_body_bytes = 4096\n\n\
    [[keys]]\nname = \"carol\"\nkey = \"sk-carol\"\nmodels = [\"fast\"]\n\n\
    [[keys]]\nname = \"dave\"\nkey = \"sk-dave\"\nbudget = { usd = 0.0, window = \"day\" }\n";

/// The row of an error answer, as the admin (loopback) reads it.
async fn refused_row(g: &Gw, r: &super::Reply, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.body);
    let id = r.generation_id();
    assert!(id.starts_with("gen-"), "{id}");
    let row = row(g, &id, None).await;
    assert_eq!(row["id"], id);
    assert_eq!(row["status"], i64::from(status), "{row}");
    assert!(row["latency"].as_i64().unwrap() >= 0, "{row}");
    assert!(row["provider_name"].is_null(), "{row}");
    assert!(row["total_cost"].is_null(), "{row}");
    row
}

async fn refused_requests_have_rows(backend: Backend) {
    let demo = DemoProviders::start().await.unwrap();
    let g = gateway(&demo, &backend, EXTRA).await;
    let alice = ("authorization", ALICE);
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});

    // 400: malformed JSON, before anything is known but the key.
    let r = call_bytes(
        &g,
        "POST",
        "/v1/chat/completions",
        &[alice],
        Bytes::from_static(b"{\"model\": \"fast\", \"messages\": ["),
    )
    .await;
    let row = refused_row(&g, &r, 400).await;
    assert_eq!(row["error_kind"], "invalid_request");
    assert_eq!(row["api_key_name"], "alice");
    assert_eq!(row["ingress"], "chat");
    assert!(row["requested_model"].is_null(), "{row}");
    // The key's own view finds it too.
    let own = super::row(&g, &r.generation_id(), Some(ALICE)).await;
    assert_eq!(own["status"], 400);

    // 401: an unknown key, refused before the body is read.
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-nobody")],
        Some(chat("fast")),
    )
    .await;
    let row = refused_row(&g, &r, 401).await;
    assert_eq!(row["error_kind"], "unauthorized");
    assert!(row["api_key_name"].is_null(), "{row}");
    assert_eq!(row["ingress"], "chat");

    // 404: an unknown model (ModelResolve), with the requested model and the key.
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[alice],
        Some(chat("no-such-model")),
    )
    .await;
    let row = refused_row(&g, &r, 404).await;
    assert_eq!(row["error_kind"], "not_found");
    assert_eq!(row["requested_model"], "no-such-model");
    assert_eq!(row["api_key_name"], "alice");

    // 403: a model outside the key's allow-list (ClientKeys).
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-carol")],
        Some(chat("openai/gpt-4o-mini")),
    )
    .await;
    let row = refused_row(&g, &r, 403).await;
    assert_eq!(row["error_kind"], "forbidden");
    assert_eq!(row["api_key_name"], "carol");
    assert_eq!(row["requested_model"], "openai/gpt-4o-mini");

    // 402: no budget left (the CostMeter refuses before its record exists).
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-dave")],
        Some(chat("fast")),
    )
    .await;
    let row = refused_row(&g, &r, 402).await;
    assert_eq!(row["error_kind"], "budget_exhausted");
    assert_eq!(row["api_key_name"], "dave");
    assert_eq!(row["requested_model"], "fast");

    // 413: a body over `max_body_bytes`.
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[alice],
        Some(chat(&"x".repeat(8192))),
    )
    .await;
    let row = refused_row(&g, &r, 413).await;
    assert_eq!(row["error_kind"], "payload_too_large");
    assert_eq!(row["api_key_name"], "alice");

    // Anthropic Messages: malformed (400, Anthropic's shape).
    let r = call_bytes(
        &g,
        "POST",
        "/v1/messages",
        &[("x-api-key", "sk-alice")],
        Bytes::from_static(b"not json"),
    )
    .await;
    assert_eq!(r.json()["type"], "error", "{}", r.body);
    let row = refused_row(&g, &r, 400).await;
    assert_eq!(row["ingress"], "messages");
    assert_eq!(row["api_key_name"], "alice");

    // Responses: an unknown model (404).
    let r = call(
        &g,
        "POST",
        "/v1/responses",
        &[alice],
        Some(json!({"model": "no-such-model", "input": "hi"})),
    )
    .await;
    let row = refused_row(&g, &r, 404).await;
    assert_eq!(row["ingress"], "responses");
    assert_eq!(row["requested_model"], "no-such-model");

    // Embeddings: an unknown key (401) and an unknown model (404).
    let body = json!({"model": "openai/text-embedding-3-small", "input": "a b c"});
    let r = call(
        &g,
        "POST",
        "/v1/embeddings",
        &[("authorization", "Bearer sk-nobody")],
        Some(body),
    )
    .await;
    let row = refused_row(&g, &r, 401).await;
    assert_eq!(row["ingress"], "embeddings");
    let r = call(
        &g,
        "POST",
        "/v1/embeddings",
        &[alice],
        Some(json!({"model": "no-such-model", "input": "a b c"})),
    )
    .await;
    let row = refused_row(&g, &r, 404).await;
    assert_eq!(row["ingress"], "embeddings");
    assert_eq!(row["requested_model"], "no-such-model");
    assert_eq!(row["api_key_name"], "alice");

    // A request the CostMeter recorded (an upstream failure) has exactly its one row.
    let openai = demo.server(switchboard::catalog::ProviderKind::Openai);
    openai.faults().push(switchboard::demo::Fault::status(500));
    let r = call(
        &g,
        "POST",
        "/v1/chat/completions",
        &[alice, ("cache-control", "no-store")],
        Some(chat("openai/gpt-4o-mini")),
    )
    .await;
    let row = refused_row(&g, &r, 502).await;
    assert_eq!(row["error_kind"], "upstream", "{row}");
    g.running.shutdown(std::time::Duration::from_secs(5)).await;
    let log = switchboard::request_log::RequestLog::open(
        &backend.url(),
        switchboard::request_log::LogOptions::default(),
    )
    .await
    .unwrap();
    let page = log
        .generations(
            &switchboard::request_log::Filter::default(),
            switchboard::request_log::Sort::default(),
            100,
            None,
        )
        .await
        .unwrap();
    assert_eq!(page.data.len(), 11, "one row per request: {:?}", page.data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refused_requests_have_rows() {
    refused_requests_have_rows(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refused_requests_have_rows() {
    if let Some(b) = Backend::postgres() {
        refused_requests_have_rows(b).await;
    }
}

/// The sink gets exactly one record per request: a request the CostMeter recorded (an upstream
/// failure) is not recorded again by the edge; one refused above the meter is, once.
#[tokio::test]
async fn one_record_per_request_in_the_sink() {
    use std::sync::{Arc, Mutex};
    use switchboard::cost::{CostMeterLayer, CostRecord};
    use tower::ServiceExt;

    let demo = DemoProviders::start().await.unwrap();
    let seen: Arc<Mutex<Vec<CostRecord>>> = Arc::default();
    let sink = seen.clone();
    let gateway = switchboard::Gateway::builder(demo.catalog())
        .cost_meter(CostMeterLayer::new().sink(move |r: &CostRecord| {
            sink.lock().unwrap().push(r.clone());
        }))
        .build();
    let post = |model: &str| {
        http::Request::post("/v1/chat/completions")
            .header("cache-control", "no-store")
            .body(http_body_util::Full::new(Bytes::from(
                serde_json::to_vec(
                    &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
                )
                .unwrap(),
            )))
            .unwrap()
    };
    demo.server(switchboard::catalog::ProviderKind::Openai)
        .faults()
        .push(switchboard::demo::Fault::status(500));
    for (model, status, kind) in [
        ("openai/gpt-4o-mini", 502, "upstream"),
        ("no-such-model", 404, "not_found"),
        ("openai/gpt-4o-mini", 200, ""),
    ] {
        seen.lock().unwrap().clear();
        let resp = gateway
            .chat_completions()
            .oneshot(post(model))
            .await
            .unwrap();
        assert_eq!(resp.status(), status);
        let id = resp.headers()["x-generation-id"]
            .to_str()
            .unwrap()
            .to_owned();
        drop(resp);
        let records = seen.lock().unwrap().clone();
        assert_eq!(records.len(), 1, "{model}: {records:?}");
        let r = &records[0];
        assert_eq!(r.generation_id.as_deref(), Some(id.as_str()));
        assert_eq!(r.error.map_or("", |k| k.as_str()), kind);
        assert_eq!(r.ingress, Some("chat"));
    }
}
