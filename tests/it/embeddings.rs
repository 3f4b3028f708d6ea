//! `/v1/embeddings` end to end against the demo providers: OpenAI-compatible, Azure and Gemini
//! targets, float and base64, cost, cache, fallback, keys and the edge's limits.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use switchboard::cache::{MemoryStore, ResponseCacheLayer};
use switchboard::catalog::{ModelSpec, Pricing, Provider, ProviderKind};
use switchboard::demo::{demo_embedding, DemoProviders, Fault, DEMO_API_KEY};
use switchboard::keys::{ClientKeysLayer, KeyPolicy};
use switchboard::{Catalog, Gateway};
use tower::ServiceExt;

async fn post(
    gateway: &Gateway,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, Value) {
    let mut b = http::Request::post("/v1/embeddings").header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = gateway.embeddings().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    (parts.status.as_u16(), parts.headers, v)
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn unbase64(s: &str) -> Vec<f32> {
    let abc = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | abc.iter().position(|a| *a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out.chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn gateway(demo: &DemoProviders) -> Gateway {
    Gateway::builder(demo.catalog())
        .response_cache(ResponseCacheLayer::new(MemoryStore::default()))
        .build()
}

#[tokio::test]
async fn every_target_kind_float_and_base64_with_cost() {
    let demo = DemoProviders::start().await.unwrap();
    let g = gateway(&demo);
    for (model, dims, path) in [
        ("openai/text-embedding-3-small", 1536, "/v1/embeddings"),
        (
            "azure/text-embedding-3-small",
            1536,
            "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21",
        ),
        (
            "google/gemini-embedding-001",
            3072,
            "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        ),
    ] {
        let (status, headers, v) = post(
            &g,
            json!({"model": model, "input": ["one two", "three"]}),
            &[],
        )
        .await;
        assert_eq!(status, 200, "{model}: {v}");
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], model);
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(
            floats(&v["data"][0]["embedding"]),
            demo_embedding("one two", dims),
            "{model}"
        );
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        assert!(v["usage"]["cost"].as_f64().unwrap() > 0.0, "{model}: {v}");
        assert!(headers.contains_key("x-switchboard-cost"));
        assert_eq!(headers["x-switchboard-cache"], "MISS");
        let server = match model.split('/').next().unwrap() {
            "openai" => &demo.openai,
            "azure" => &demo.azure,
            _ => &demo.gemini,
        };
        assert_eq!(server.last_request().unwrap().path, path, "{model}");
        // base64: the float32 little-endian bytes (encoded by the gateway for Gemini).
        let (status, _, v) = post(
            &g,
            json!({"model": model, "input": "four", "encoding_format": "base64", "dimensions": 8}),
            &[],
        )
        .await;
        assert_eq!(status, 200, "{model}: {v}");
        assert_eq!(
            unbase64(v["data"][0]["embedding"].as_str().unwrap()),
            demo_embedding("four", 8),
            "{model}"
        );
    }
    // OpenAI's usage is the provider's: the demo counts words.
    let (_, _, v) = post(
        &g,
        json!({"model": "openai/text-embedding-3-small", "input": "a b c"}),
        &[],
    )
    .await;
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    let cost = v["usage"]["cost"].as_f64().unwrap();
    assert!((cost - 3.0 * 0.02 / 1e6).abs() < 1e-12, "{cost}");
    // Token ids pass through to OpenAI-compatible targets; Gemini refuses them.
    let (status, _, _) = post(
        &g,
        json!({"model": "openai/text-embedding-3-small", "input": [[1, 2], [3]]}),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, v) = post(
        &g,
        json!({"model": "google/gemini-embedding-001", "input": [1, 2]}),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn cache_hits_cost_nothing() {
    let demo = DemoProviders::start().await.unwrap();
    let g = gateway(&demo);
    let body =
        json!({"model": "openai/text-embedding-3-small", "input": "cache me", "dimensions": 4});
    let (_, h1, v1) = post(&g, body.clone(), &[]).await;
    assert_eq!(h1["x-switchboard-cache"], "MISS");
    // The store is written in the background.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (_, h2, v2) = post(&g, body.clone(), &[]).await;
    assert_eq!(h2["x-switchboard-cache"], "HIT");
    assert_eq!(v2["data"], v1["data"]);
    assert_eq!(v2["usage"]["cost"], 0.0);
    assert_eq!(demo.openai.request_count(), 1);
    // Another encoding is another key; no-store bypasses.
    let (_, h3, _) = post(&g, json!({"model": "openai/text-embedding-3-small", "input": "cache me", "dimensions": 4, "encoding_format": "base64"}), &[]).await;
    assert_eq!(h3["x-switchboard-cache"], "MISS");
    let (_, h4, _) = post(&g, body, &[("cache-control", "no-store")]).await;
    assert_eq!(h4["x-switchboard-cache"], "BYPASS");
    assert_eq!(demo.openai.request_count(), 3);
}

#[tokio::test]
async fn falls_back_across_providers_and_kinds() {
    let demo = DemoProviders::start().await.unwrap();
    let key = |p: Provider| p.with_api_key(DEMO_API_KEY);
    let catalog = Catalog::builder()
        .provider(key(Provider::new(
            "azure",
            ProviderKind::Azure,
            &demo.azure.base_url(),
        )))
        .provider(key(Provider::new(
            "openai",
            ProviderKind::Openai,
            &demo.openai.base_url(),
        )))
        .model(
            ModelSpec::new("text-embedding-3-small")
                .embedding(Some(1536))
                .endpoint(
                    "azure",
                    "text-embedding-3-small",
                    Some(Pricing {
                        input: 0.02,
                        ..Pricing::default()
                    }),
                )
                .endpoint(
                    "openai",
                    "text-embedding-3-small",
                    Some(Pricing {
                        input: 0.02,
                        ..Pricing::default()
                    }),
                ),
        )
        .model(ModelSpec::new("openai/gpt-4o-mini"))
        .alias("embed", "text-embedding-3-small")
        .build()
        .unwrap();
    let g = Gateway::builder(catalog).build();
    demo.azure.faults().push(Fault::Status(503, None));
    let (status, headers, v) = post(&g, json!({"model": "embed", "input": "x"}), &[]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(headers["x-switchboard-provider"], "openai");
    assert_eq!(v["model"], "text-embedding-3-small");
    // Provider preferences.
    let (_, headers, _) = post(
        &g,
        json!({"model": "embed", "input": "x", "provider": {"only": ["azure"]}}),
        &[],
    )
    .await;
    assert_eq!(headers["x-switchboard-provider"], "azure");
    // A chat model is not an embedding model.
    let (status, _, v) = post(
        &g,
        json!({"model": "openai/gpt-4o-mini", "input": "x"}),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "model_not_supported");
    let (status, _, _) = post(&g, json!({"model": "nope/x", "input": "x"}), &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn keys_and_limits() {
    let demo = DemoProviders::start().await.unwrap();
    let keys =
        ClientKeysLayer::new().key("sk-team", KeyPolicy::new("team").allow_models(["google/*"]));
    let g = Gateway::builder(demo.catalog())
        .client_keys(keys)
        .max_embedding_inputs(3)
        .max_embedding_input_bytes(100)
        .build();
    let body = json!({"model": "google/gemini-embedding-001", "input": "x"});
    let (status, _, _) = post(&g, body.clone(), &[]).await;
    assert_eq!(status, 401);
    let auth = [("authorization", "Bearer sk-team")];
    let (status, _, v) = post(&g, body, &auth).await;
    assert_eq!(status, 200, "{v}");
    let (status, _, _) = post(
        &g,
        json!({"model": "openai/text-embedding-3-small", "input": "x"}),
        &auth,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, v) = post(
        &g,
        json!({"model": "google/gemini-embedding-001", "input": ["a", "b", "c", "d"]}),
        &auth,
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("array_above_max_length"))
    );
    let (status, _, _) = post(
        &g,
        json!({"model": "google/gemini-embedding-001", "input": "x".repeat(101)}),
        &auth,
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn models_lists_embedding_models() {
    let demo = DemoProviders::start().await.unwrap();
    let g = Gateway::builder(demo.catalog()).build();
    let resp = g
        .models()
        .oneshot(
            http::Request::get("/v1/models")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let m = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "google/gemini-embedding-001")
        .unwrap();
    assert_eq!(m["kind"], "embedding");
    assert_eq!(m["dimensions"], 3072);
}
