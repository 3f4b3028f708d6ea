//! `[otel]`: a chat request's `gen_ai` span reaches a local OTLP/HTTP receiver with the GenAI
//! semantic conventions' name and attributes, and without the prompt. Runs in a process of
//! its own ([`in_own_process`]): the tracing subscriber is process-wide.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use switchboard::demo::DemoProviders;
use switchboard::server;

use crate::support::in_own_process;

#[test]
fn gen_ai_spans_reach_an_otlp_receiver() {
    in_own_process(
        module_path!(),
        "gen_ai_spans_reach_an_otlp_receiver",
        || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(exported());
        },
    );
}

/// Whether `hay` contains `needle` (protobuf strings are stored as they are).
fn has(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn exported() {
    // The receiver: every POST /v1/traces body, kept.
    let got: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: http::HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                sink.lock().unwrap().push((ct, body));
                "" // an empty ExportTraceServiceResponse
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    server::init_logs(false);
    let demo = DemoProviders::start().await.unwrap();
    let config = std::env::temp_dir().join(format!("switchboard-otel-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "{}\n[otel]\nendpoint = \"http://{collector}\"\nservice_name = \"sb-test\"\n\
             headers = {{ \"x-collector-key\" = \"k\" }}\n",
            demo.catalog_toml()
        ),
    )
    .unwrap();
    let running =
        server::start(&server::Options::new(config.to_string_lossy()).listen("127.0.0.1:0"))
            .await
            .expect("the gateway starts");
    let _ = std::fs::remove_file(&config);
    assert!(
        running.notes().iter().any(|n| n.contains("OTLP")),
        "{:?}",
        running.notes()
    );

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body =
        json!({"model": "fast", "messages": [{"role": "user", "content": "secret prompt words"}]});
    let req = http::Request::post(format!("http://{}/v1/chat/completions", running.addr()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let generation = resp.headers()["x-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let answer: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let served = answer["model"].as_str().unwrap().to_owned();

    // Shutdown flushes the batch.
    running.shutdown(Duration::from_secs(5)).await;
    let bodies = got.lock().unwrap().clone();
    assert!(!bodies.is_empty(), "nothing was exported");
    let (ct, bytes) = bodies
        .iter()
        .find(|(_, b)| has(b, "chat fast"))
        .unwrap_or_else(|| panic!("no `chat fast` span in {} exports", bodies.len()));
    assert_eq!(ct, "application/x-protobuf");
    for key in [
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.system",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.response.id",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "cost_usd",
        "service.name",
        "sb-test",
        &generation,
        &served,
    ] {
        assert!(has(bytes, key), "the export lacks `{key}`");
    }
    assert!(
        !has(bytes, "secret prompt words"),
        "the prompt was exported"
    );
    assert!(!has(bytes, "\"fast\""), "a Debug-quoted model");
}
