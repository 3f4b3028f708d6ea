//! Azure OpenAI end to end against the demo Azure server: translation, streams, tools,
//! usage and cost, content filtering, the error table and fallback.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use switchboard::catalog::{ModelSpec, Pricing, Provider, ProviderKind};
use switchboard::demo::{
    DemoConfig, DemoProviders, DemoServer, Fault, FILTER_ANSWER, FILTER_PROMPT,
};
use switchboard::provider::azure::Azure;
use switchboard::{Catalog, Gateway};
use tower::ServiceExt;

async fn post(gateway: &Gateway, body: Value) -> (u16, http::HeaderMap, String) {
    let req = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = gateway.chat_completions().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn hello(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn deployment_url_translation_usage_and_cost() {
    let demo = DemoProviders::start().await.unwrap();
    let gateway = Gateway::builder(demo.catalog()).build();
    let (status, headers, body) = post(&gateway, hello("azure/gpt-4o-mini", "Hi there")).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["model"], "azure/gpt-4o-mini");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the demo azure provider! You said: Hi there"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(v["usage"]["cost"].as_f64().unwrap() > 0.0);
    assert_eq!(headers["x-switchboard-provider"], "azure");
    let r = demo.azure.last_request().unwrap();
    assert_eq!(
        r.path,
        "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(r.header("api-key"), Some(switchboard::demo::DEMO_API_KEY));
    assert!(r.header("authorization").is_none());
}

#[tokio::test]
async fn v1_url_and_bearer_auth() {
    let az = DemoServer::start(ProviderKind::Azure, DemoConfig::default())
        .await
        .unwrap();
    let catalog = Catalog::builder()
        .provider(
            Provider::new(
                "azure",
                ProviderKind::Azure,
                &format!("{}/openai/v1", az.base_url()),
            )
            .with_api_key(switchboard::demo::DEMO_API_KEY)
            .with_codec(Azure::new().bearer_auth()),
        )
        .passthrough(true)
        .build()
        .unwrap();
    let gateway = Gateway::builder(catalog).build();
    // An unlisted `azure/<name>` goes to deployment `<name>`.
    let (status, _, body) = post(&gateway, hello("azure/my-deployment", "Hi")).await;
    assert_eq!(status, 200, "{body}");
    let r = az.last_request().unwrap();
    assert_eq!(r.path, "/openai/v1/chat/completions");
    assert_eq!(r.body["model"], "my-deployment");
    assert!(r.header("authorization").unwrap().starts_with("Bearer "));
}

#[tokio::test]
async fn streams_drop_annotation_chunks_and_tools_work() {
    let demo = DemoProviders::start().await.unwrap();
    let gateway = Gateway::builder(demo.catalog()).build();
    let mut body = hello("azure/gpt-4o-mini", "Stream please");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, _, text) = post(&gateway, body).await;
    assert_eq!(status, 200, "{text}");
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["id"] != "" && c.get("prompt_filter_results").is_none()));
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        content,
        "Hello from the demo azure provider! You said: Stream please"
    );
    assert!(chunks.last().unwrap()["usage"]["cost"].as_f64().unwrap() > 0.0);
    // Tools: the demo calls the offered tool.
    let mut body = hello("azure/gpt-4o-mini", "weather?");
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let (status, _, text) = post(&gateway, body).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
}

#[tokio::test]
async fn content_filtering() {
    let demo = DemoProviders::start().await.unwrap();
    let gateway = Gateway::builder(demo.catalog()).build();
    // A filtered prompt: the client's 400 `content_filter`, not retried.
    let (status, _, text) = post(&gateway, hello("azure/gpt-4o-mini", FILTER_PROMPT)).await;
    assert_eq!(status, 400, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "content_filter");
    assert_eq!(demo.azure.request_count(), 1);
    // A filtered answer ends with `content_filter`, whole or streamed.
    let (status, _, text) = post(&gateway, hello("azure/gpt-4o-mini", FILTER_ANSWER)).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    let mut body = hello("azure/gpt-4o-mini", FILTER_ANSWER);
    body["stream"] = json!(true);
    let (_, _, text) = post(&gateway, body).await;
    assert!(
        text.contains(r#""finish_reason":"content_filter""#),
        "{text}"
    );
}

#[tokio::test]
async fn errors_follow_the_table_and_fall_back() {
    let demo = DemoProviders::start().await.unwrap();
    // A wrong key is the gateway's own credentials: 502.
    let bad = Catalog::builder()
        .provider(
            Provider::new("azure", ProviderKind::Azure, &demo.azure.base_url())
                .with_api_key("wrong")
                .with_codec(Azure::new().api_version("2024-10-21")),
        )
        .model(ModelSpec::new("azure/gpt-4o-mini"))
        .build()
        .unwrap();
    let (status, _, text) = post(
        &Gateway::builder(bad).build(),
        hello("azure/gpt-4o-mini", "x"),
    )
    .await;
    assert_eq!(status, 502, "{text}");
    assert!(!text.contains("subscription key"), "{text}");
    // 429 from Azure, then OpenAI serves the same model.
    let catalog = Catalog::builder()
        .provider(
            Provider::new("azure", ProviderKind::Azure, &demo.azure.base_url())
                .with_api_key(switchboard::demo::DEMO_API_KEY)
                .with_codec(Azure::new().api_version("2024-10-21")),
        )
        .provider(
            Provider::new("openai", ProviderKind::Openai, &demo.openai.base_url())
                .with_api_key(switchboard::demo::DEMO_API_KEY),
        )
        .model(
            ModelSpec::new("gpt-4o-mini")
                .endpoint(
                    "azure",
                    "gpt-4o-mini",
                    Some(Pricing {
                        input: 1.0,
                        output: 1.0,
                        ..Pricing::default()
                    }),
                )
                .endpoint("openai", "gpt-4o-mini", None),
        )
        .build()
        .unwrap();
    let gateway = Gateway::builder(catalog).build();
    demo.azure.faults().push(Fault::Status(429, Some(1)));
    let (status, headers, text) = post(&gateway, hello("gpt-4o-mini", "x")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-switchboard-provider"], "openai");
    // Unknown deployment: 404.
    let missing = DemoServer::start(
        ProviderKind::Azure,
        DemoConfig::default().with_models(["other"]),
    )
    .await
    .unwrap();
    let c = Catalog::builder()
        .provider(
            Provider::new("azure", ProviderKind::Azure, &missing.base_url())
                .with_api_key(switchboard::demo::DEMO_API_KEY)
                .with_codec(Azure::new().api_version("2024-10-21")),
        )
        .model(ModelSpec::new("azure/gpt-4o-mini"))
        .build()
        .unwrap();
    let (status, _, text) = post(
        &Gateway::builder(c).build(),
        hello("azure/gpt-4o-mini", "x"),
    )
    .await;
    assert_eq!(status, 404, "{text}");
}

#[test]
fn toml_settings() {
    let c = Catalog::from_toml(
        r#"
[providers.az]
kind = "azure"
base_url = "https://res.openai.azure.com"
api_key = "k"
api_version = "2024-10-21"
auth = "bearer"
"#,
    )
    .unwrap();
    assert_eq!(c.provider("az").unwrap().kind, ProviderKind::Azure);
    assert!(Catalog::from_toml(
        "[providers.o]\nkind = \"openai\"\nbase_url = \"https://x\"\napi_version = \"1\"\n"
    )
    .is_err());
    assert!(Catalog::from_toml(
        "[providers.o]\nkind = \"azure\"\nbase_url = \"https://x\"\nauth = \"magic\"\n"
    )
    .is_err());
}
