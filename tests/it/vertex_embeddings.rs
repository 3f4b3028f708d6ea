//! `/v1/embeddings` on Vertex AI text embedding models (`:predict`) through the Vertex demo:
//! float and base64, `dimensions`, usage from `statistics.token_count`, cost, the demo's
//! token check, and fallback from a failing Vertex target.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use switchboard::catalog::ProviderKind;
use switchboard::demo::{demo_embedding, DemoConfig, DemoServer, Fault};
use switchboard::{Catalog, Gateway};
use tower::ServiceExt;

const PREDICT: &str =
    "/v1/projects/demo-proj/locations/us-central1/publishers/google/models/text-embedding-005:predict";

struct Env {
    gateway: Gateway,
    v: DemoServer,
    _backup: DemoServer,
}

async fn env() -> Env {
    let v = DemoServer::start(ProviderKind::Vertex, DemoConfig::default())
        .await
        .unwrap();
    let backup = DemoServer::start(ProviderKind::Openai, DemoConfig::default())
        .await
        .unwrap();
    let creds = v.service_account_json();
    let toml = format!(
        r#"
[providers.vertex]
kind = "vertex"
base_url = "{}"
project = "demo-proj"
location = "us-central1"
credentials_env = "VERTEX_SA"

[providers.backup]
kind = "openai"
base_url = "{}"
api_key = "demo-key"

[[models]]
id = "vertex/text-embedding-005"
upstream = "text-embedding-005"
kind = "embedding"
dimensions = 768
pricing = {{ input = 0.025, output = 0.0 }}

[[models]]
id = "embed"
kind = "embedding"
[[models.endpoints]]
provider = "vertex"
upstream = "text-embedding-005"
pricing = {{ input = 0.025, output = 0.0 }}
[[models.endpoints]]
provider = "backup"
upstream = "text-embedding-3-small"
pricing = {{ input = 0.02, output = 0.0 }}

[[models]]
id = "vertex/claude-sonnet-4"
upstream = "claude-sonnet-4@20250514"
kind = "embedding"
"#,
        v.base_url(),
        backup.base_url()
    );
    let catalog = Catalog::from_toml_with_env(&toml, |k| match k {
        "VERTEX_SA" => Some(creds.clone()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{}", e.message()));
    Env {
        gateway: Gateway::builder(catalog).build(),
        v,
        _backup: backup,
    }
}

async fn post(gateway: &Gateway, body: Value) -> (u16, http::HeaderMap, Value) {
    let req = http::Request::post("/v1/embeddings")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
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
    let (mut bits, mut n, mut out) = (0u32, 0, Vec::new());
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

#[tokio::test]
async fn vertex_embeddings_float_base64_dimensions_and_cost() {
    let e = env().await;
    let (status, headers, v) = post(
        &e.gateway,
        json!({"model": "vertex/text-embedding-005", "input": ["one two three", "four"]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(headers["x-switchboard-provider"], "vertex");
    assert_eq!(v["model"], "vertex/text-embedding-005");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(
        floats(&v["data"][0]["embedding"]),
        demo_embedding("one two three", 768)
    );
    assert_eq!(
        floats(&v["data"][1]["embedding"]),
        demo_embedding("four", 768)
    );
    // Usage is Vertex's statistics.token_count (the demo counts words): 3 + 1.
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    let cost = v["usage"]["cost"].as_f64().unwrap();
    assert!((cost - 4.0 * 0.025 / 1e6).abs() < 1e-12, "{cost}");
    assert!(headers.contains_key("x-switchboard-cost"));
    let sent = e.v.last_request().unwrap();
    assert_eq!(sent.path, PREDICT);
    assert!(sent
        .header("authorization")
        .unwrap()
        .starts_with("Bearer ya29.demo-"));
    assert_eq!(
        sent.body,
        json!({"instances": [{"content": "one two three"}, {"content": "four"}]})
    );

    // base64 with a dimension: outputDimensionality goes up, the gateway encodes the floats.
    let (status, _, v) = post(
        &e.gateway,
        json!({"model": "vertex/text-embedding-005", "input": "five six",
               "encoding_format": "base64", "dimensions": 16}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        unbase64(v["data"][0]["embedding"].as_str().unwrap()),
        demo_embedding("five six", 16)
    );
    assert_eq!(
        e.v.last_request().unwrap().body["parameters"],
        json!({"outputDimensionality": 16})
    );
    assert_eq!(e.v.tokens_issued(), 1, "the token is cached");
}

#[tokio::test]
async fn vertex_embeddings_refuse_what_vertex_cannot_take() {
    let e = env().await;
    // Token ids: Vertex takes text.
    let (status, _, v) = post(
        &e.gateway,
        json!({"model": "vertex/text-embedding-005", "input": [1, 2, 3]}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    // More than 250 inputs in one call.
    let many: Vec<String> = (0..251).map(|i| format!("t{i}")).collect();
    let (status, _, v) = post(
        &e.gateway,
        json!({"model": "vertex/text-embedding-005", "input": many}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "input");
    // A Claude model is no embedding model.
    let (status, _, v) = post(
        &e.gateway,
        json!({"model": "vertex/claude-sonnet-4", "input": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    // The demo refuses a dimension above the model's (Google's 400 reaches the client).
    let (status, _, v) = post(
        &e.gateway,
        json!({"model": "vertex/text-embedding-005", "input": "x", "dimensions": 4096}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let predicts = e.v.requests().iter().filter(|r| r.path == PREDICT).count();
    assert_eq!(predicts, 1, "only the last one was sent");
}

#[tokio::test]
async fn a_failing_vertex_embedding_target_falls_back() {
    let e = env().await;
    e.v.faults().push(Fault::Status(503, None));
    let (status, headers, v) = post(&e.gateway, json!({"model": "embed", "input": "a b"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(headers["x-switchboard-provider"], "backup");
    assert_eq!(
        floats(&v["data"][0]["embedding"]),
        demo_embedding("a b", 1536)
    );
    // Healthy again: Vertex answers.
    let (status, headers, v) = post(&e.gateway, json!({"model": "embed", "input": "a b"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(headers["x-switchboard-provider"], "vertex");
    assert_eq!(v["usage"]["prompt_tokens"], 2);
}

/// POSTs `body` straight to the Vertex demo's `:predict` with `token`.
async fn predict(v: &DemoServer, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = http::Request::post(format!("{}{PREDICT}", v.base_url()))
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let resp = crate::support::answers::client()
        .request(req)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_vertex_demo_checks_predict_strictly() {
    let v = DemoServer::start(ProviderKind::Vertex, DemoConfig::default())
        .await
        .unwrap();
    let ok = r#"{"instances":[{"content":"x"}]}"#;
    let (s, b) = predict(&v, None, ok).await;
    assert_eq!(
        (s, b["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (s, _) = predict(&v, Some("ya29.made-up"), ok).await;
    assert_eq!(s, 401);
    // A token from the demo's metadata endpoint.
    let req = http::Request::get(v.metadata_url())
        .header("metadata-flavor", "Google")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = crate::support::answers::client()
        .request(req)
        .await
        .unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let token: Value = serde_json::from_slice(&bytes).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let (s, b) = predict(&v, Some(&token), ok).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["predictions"][0]["embeddings"]["statistics"]["token_count"],
        1
    );
    assert_eq!(
        floats(&b["predictions"][0]["embeddings"]["values"]),
        demo_embedding("x", 768)
    );
    for bad in [
        r#"{"instances":[]}"#,
        r#"{"instances":[{"content":""}]}"#,
        r#"{"instances":[{"text":"x"}]}"#,
        r#"{"instances":[{"content":"x"}],"extra":1}"#,
        r#"{"instances":[{"content":"x"}],"parameters":{"outputDimensionality":0}}"#,
        r#"{"instances":[{"content":"x"}],"parameters":{"dims":8}}"#,
        r#"[1]"#,
    ] {
        let (s, b) = predict(&v, Some(&token), bad).await;
        assert_eq!(s, 400, "{bad}: {b}");
        assert_eq!(b["error"]["status"], "INVALID_ARGUMENT", "{bad}");
    }
}

#[test]
fn auth_steps_count_as_credentials_only_when_found() {
    let toml = r#"
[providers.bedrock]
kind = "bedrock"
region = "us-east-1"
credentials_file = "/nonexistent/switchboard-test/credentials"

[providers.bedrock_env]
kind = "bedrock"
region = "us-east-1"
access_key_id_env = "ID"
secret_access_key_env = "SECRET"

[providers.vertex_meta]
kind = "vertex"
project = "p"
project_env = "PROJECT"
location_env = "LOCATION"

[providers.vertex_sa]
kind = "vertex"
project = "p"
credentials_env = "SA"
"#;
    let sa = switchboard::demo::test_service_account_json("http://127.0.0.1:9/token");
    let catalog = Catalog::from_toml_with_env(toml, |k| match k {
        "ID" | "SECRET" => Some("x".into()),
        "SA" => Some(sa.clone()),
        "PROJECT" => Some("from-env".into()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{}", e.message()));
    let found = |name: &str| {
        catalog
            .provider(name)
            .and_then(|p| p.auth())
            .is_some_and(|a| a.has_credentials())
    };
    assert!(!found("bedrock"), "no readable profile");
    assert!(found("bedrock_env"));
    assert!(!found("vertex_meta"), "the metadata server is not probed");
    assert!(found("vertex_sa"));
    // project_env replaces the project; an unset location_env keeps the default.
    let meta = catalog.provider("vertex_meta").unwrap();
    assert_eq!(&*meta.base_url, "https://aiplatform.googleapis.com");
    let bad = Catalog::from_toml(
        "[providers.x]\nkind = \"openai\"\nbase_url = \"http://a\"\nproject_env = \"P\"\n",
    );
    assert!(bad.is_err());
}
