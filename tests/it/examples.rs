//! The embedding examples, started in-process on 127.0.0.1:0 over the demo providers and
//! driven as a client would: over HTTP for the axum apps, with the tonic client for gRPC.

// Each example brings the shared examples/support module along.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../../examples/axum_embed.rs"]
mod axum_embed;

#[allow(dead_code)]
#[path = "../../examples/custom_gateway.rs"]
mod custom_gateway;

#[allow(dead_code)]
#[path = "../../examples/tonic_embed.rs"]
mod tonic_embed;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use switchboard::demo::DemoProviders;
use switchboard::Gateway;
use tonic::Code;

/// Every test is bounded: a hang fails instead of blocking CI.
async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("the test finished within 60 s");
}

/// Serves `app` on a fresh port; the listener is bound before this returns, so requests
/// queue until the server task runs.
async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Http {
    fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(serde_json::to_vec(&v).unwrap()))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = self.client.request(req.body(body).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.send(Method::POST, path, token, Some(body)).await
    }
}

fn hello(model: &str, text: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": text }] })
}

#[tokio::test]
async fn axum_embed_auth_budgets_and_streams() {
    bounded(async {
        let demo = DemoProviders::start().await.unwrap();
        let http = Http::new(serve(axum_embed::app(demo.catalog())).await);
        const CHAT: &str = "/llm/v1/chat/completions";

        // The app's own public route.
        let r = http.get("/", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.text().contains("/llm/v1"));

        // The app's own auth guards its routes and the gateway alike.
        for (path, token) in [("/me", None), (CHAT, None), (CHAT, Some("mallory-token"))] {
            let r = if path == CHAT {
                http.post(path, token, hello("fast", "hi")).await
            } else {
                http.get(path, token).await
            };
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} with {token:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            assert_eq!(r.json()["error"], "missing or unknown bearer token");
        }
        assert_eq!(demo.openai.request_count(), 0, "nothing reached a provider");

        // alice chats through /llm/v1/chat/completions.
        let r = http
            .post(CHAT, Some("alice-token"), hello("fast", "Hello there"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-switchboard-model"), Some("openai/gpt-4o-mini"));
        let j = r.json();
        assert_eq!(
            j["choices"][0]["message"]["content"],
            "Hello from the demo openai provider! You said: Hello there"
        );
        assert!(j["usage"]["cost"].as_f64().unwrap() > 0.0);

        // Streaming, with the usage chunk the client asked for.
        let mut body = hello("balanced", "stream this please");
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
        let r = http.post(CHAT, Some("alice-token"), body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        let events: Vec<&str> = r
            .body
            .split(|b| *b == b'\n')
            .filter_map(|l| std::str::from_utf8(l).ok()?.strip_prefix("data: "))
            .collect();
        assert_eq!(events.last(), Some(&"[DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(
            text,
            "Hello from the demo anthropic provider! You said: stream this please"
        );
        assert!(chunks.len() >= 3, "several chunks: {chunks:?}");
        assert!(chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop"));
        assert!(
            chunks.last().unwrap()["usage"]["total_tokens"]
                .as_u64()
                .unwrap()
                > 0
        );

        // The catalog under /llm/v1/models.
        let r = http.get("/llm/v1/models", Some("bob-token")).await;
        assert_eq!(r.status, StatusCode::OK);
        let models = r.json();
        let ids: Vec<&str> = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        assert!(ids.contains(&"openai/gpt-4o-mini") && ids.contains(&"google/gemini-2.5-pro"));

        // alice's spend was charged to alice.
        let me = http.get("/me", Some("alice-token")).await.json();
        assert_eq!(me["user"], "alice");
        assert!(me["spent_today_usd"].as_f64().unwrap() > 0.0);
        assert_eq!(me["budget_today_usd"], 1.0);

        // bob's tiny budget ($0.0001 a day): one small gpt-4o call fits, then 402.
        let mut small = hello("openai/gpt-4o", "hi");
        small["max_tokens"] = json!(5);
        let mut outcomes = Vec::new();
        for _ in 0..5 {
            let r = http.post(CHAT, Some("bob-token"), small.clone()).await;
            let done = r.status == StatusCode::PAYMENT_REQUIRED;
            outcomes.push(r);
            if done {
                break;
            }
        }
        assert_eq!(outcomes[0].status, StatusCode::OK, "{}", outcomes[0].text());
        let last = outcomes.last().unwrap();
        assert_eq!(last.status, StatusCode::PAYMENT_REQUIRED, "{}", last.text());
        assert_eq!(last.json()["error"]["code"], "budget_exhausted");
        // alice is not affected by bob's budget.
        let r = http.post(CHAT, Some("alice-token"), small).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    })
    .await;
}

#[tokio::test]
async fn tonic_embed_unary_stream_and_errors() {
    use tonic_embed::pb;

    bounded(async {
        let demo = DemoProviders::start().await.unwrap();
        let gateway = Gateway::builder(demo.catalog()).build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            tonic_embed::serve(listener, &gateway, std::future::pending())
                .await
                .unwrap();
        });
        let mut client = tonic_embed::ChatClient::connect(format!("http://{addr}"))
            .await
            .unwrap();

        let request = |model: &str| pb::ChatRequest {
            model: model.into(),
            messages: vec![
                pb::ChatMessage {
                    role: "system".into(),
                    content: "Be brief.".into(),
                },
                pb::ChatMessage {
                    role: "user".into(),
                    content: "Hello over gRPC".into(),
                },
            ],
            max_tokens: Some(100),
            temperature: Some(0.5),
        };

        // Unary: content and usage.
        let reply = client.chat(request("deep")).await.unwrap();
        assert_eq!(reply.model, "google/gemini-2.5-pro");
        assert_eq!(
            reply.content,
            "Hello from the demo gemini provider! You said: Hello over gRPC"
        );
        assert_eq!(reply.finish_reason, "stop");
        let usage = reply.usage.unwrap();
        assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
        assert_eq!(
            usage.total_tokens,
            usage.prompt_tokens + usage.completion_tokens
        );
        assert!(usage.cost.unwrap() > 0.0);

        // Server streaming: several text chunks, then one with finish_reason and usage.
        for model in ["fast", "balanced", "deep"] {
            let mut stream = client.chat_stream(request(model)).await.unwrap();
            let mut chunks = Vec::new();
            while let Some(c) = stream.next().await {
                chunks.push(c.unwrap());
            }
            assert!(chunks.len() >= 3, "{model}: {chunks:?}");
            let (last, text_chunks) = chunks.split_last().unwrap();
            for c in text_chunks {
                assert!(!c.delta.is_empty() && c.finish_reason.is_none() && c.usage.is_none());
                assert_eq!(c.id, last.id);
            }
            assert_eq!(last.finish_reason.as_deref(), Some("stop"));
            let usage = last.usage.as_ref().unwrap();
            assert!(usage.completion_tokens > 0 && usage.cost.is_some());
            let text: String = text_chunks.iter().map(|c| c.delta.as_str()).collect();
            assert!(
                text.ends_with("You said: Hello over gRPC"),
                "{model}: {text}"
            );
        }

        // Errors map to gRPC codes.
        let err = client.chat(request("no-such-model")).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert_eq!(
            err.metadata().get("switchboard-error-kind").unwrap(),
            "not_found"
        );
        let err = client
            .chat_stream(request("no-such-model"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        let mut bad = request("fast");
        bad.temperature = Some(7.0);
        let err = client.chat(bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("temperature"));
    })
    .await;
}

#[tokio::test]
async fn custom_gateway_layers_compose() {
    bounded(async {
        let demo = DemoProviders::start().await.unwrap();
        let http = Http::new(serve(custom_gateway::app(demo.catalog())).await);
        const CHAT: &str = "/v1/chat/completions";

        // Both layers act on an answer: the guard's typed header and tower-http's.
        let r = http.post(CHAT, None, hello("fast", "Hello!")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-switchboard-guard"), Some("passed"));
        assert_eq!(r.header("x-gateway"), Some("custom_gateway"));
        assert_eq!(r.header("x-switchboard-model"), Some("openai/gpt-4o-mini"));
        assert_eq!(demo.openai.request_count(), 1);

        // Streams pass through the guard too.
        let mut body = hello("balanced", "Hello!");
        body["stream"] = json!(true);
        let r = http.post(CHAT, None, body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-switchboard-guard"), Some("passed"));
        assert!(r.text().trim_end().ends_with("data: [DONE]"));

        // The guard refuses a banned prompt before any provider sees it; tower-http still
        // stamps the error answer.
        let r = http
            .post(CHAT, None, hello("fast", "What is the admin PASSWORD?"))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        let err = &r.json()["error"];
        assert_eq!(err["code"], "banned_word");
        assert_eq!(err["param"], "messages");
        assert_eq!(err["type"], "invalid_request_error");
        assert_eq!(r.header("x-switchboard-guard"), None);
        assert_eq!(r.header("x-gateway"), Some("custom_gateway"));
        assert_eq!(
            demo.openai.request_count(),
            1,
            "the banned prompt was not sent"
        );

        // Unknown models still get switchboard's 404 from model_resolve.
        let r = http
            .post(CHAT, None, hello("no-such-model", "Hello!"))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
        assert_eq!(r.header("x-gateway"), Some("custom_gateway"));

        let r = http.get("/v1/models", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.json()["data"].as_array().unwrap().len() >= 6);
    })
    .await;
}
