//! A provider switchboard does not know, added from outside the crate: a codec for a made-up
//! "Acme" wire format, behind the same routing, fallback, cost metering and edge as the
//! built-in kinds.
//!
//! ```sh
//! cargo run --example custom_provider                          # 127.0.0.1:8082
//! cargo run --example custom_provider -- --listen 127.0.0.1:0  # any free port
//! curl -s localhost:8082/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model": "acme/echo-1", "messages": [{"role": "user", "content": "Hello!"}]}'
//! # Acme answers 503 to prompts mentioning "overload": Fallback moves on to the next model
//! curl -s localhost:8082/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"models": ["acme/echo-1", "openai/gpt-4o-mini"],
//!        "messages": [{"role": "user", "content": "overload please"}]}'
//! ```
//!
//! The Acme API (served by this example on loopback, so it runs anywhere):
//! `POST {base}/generate` with `{"model", "prompt", "max_tokens", "stream"}` answers
//! `{"output": "...", "tokens": {"in": n, "out": m}}`; with `"stream": true` it sends SSE
//! events `{"delta": "..."}` and a last `{"done": true, "tokens": {...}}`. Errors are
//! `{"problem": "..."}` with an HTTP status. The OpenAI-compatible fallback target is
//! switchboard's demo provider. The bound address is printed as `listening on http://ADDR`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use switchboard::catalog::{ModelSpec, Pricing, Provider, ProviderKind};
use switchboard::client::UpstreamBody;
use switchboard::demo::{DemoServer, DEMO_API_KEY};
use switchboard::openai::sse::SseEvent;
use switchboard::openai::{ChatCompletion, ChatCompletionChunk, ChatRequest};
use switchboard::provider::{
    error_for_status, DecodeContext, EncodeContext, ProviderCodec, StreamDecode,
};
use switchboard::{Catalog, Error, ErrorKind, Gateway};

/// The Acme wire format.
#[derive(Debug)]
struct AcmeCodec;

fn bad_answer(what: &str) -> Error {
    Error::new(ErrorKind::Upstream, format!("Acme sent {what}"))
}

/// `{"in": n, "out": m}` as OpenAI usage.
fn usage(tokens: &Value) -> Value {
    let (i, o) = (tokens["in"].as_u64(), tokens["out"].as_u64());
    json!({"prompt_tokens": i, "completion_tokens": o,
           "total_tokens": i.zip(o).map(|(i, o)| i + o)})
}

impl ProviderCodec for AcmeCodec {
    fn encode(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        // Acme takes one prompt: the conversation's text, a line per message.
        let prompt: Vec<String> = req
            .parse_messages()?
            .iter()
            .map(|m| format!("{:?}: {}", m.role, m.text()))
            .collect();
        let body = json!({
            "model": ctx.upstream_model,
            "prompt": prompt.join("\n"),
            "max_tokens": req.max_output_tokens().or(ctx.max_output),
            "stream": req.is_stream(),
        });
        let mut r = http::Request::builder()
            .method(Method::POST)
            .uri(format!("{}/generate", ctx.provider.base_url))
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &ctx.provider.api_key {
            r = r.header(http::header::AUTHORIZATION, key.bearer_header_value()?);
        }
        r.body(UpstreamBody::from(Bytes::from(body.to_string())))
            .map_err(|e| Error::new(ErrorKind::Upstream, format!("cannot build request: {e}")))
    }

    fn decode(&self, body: &[u8], ctx: &DecodeContext) -> Result<ChatCompletion, Error> {
        let v: Value = serde_json::from_slice(body).map_err(|_| bad_answer("invalid JSON"))?;
        let output = v["output"]
            .as_str()
            .ok_or_else(|| bad_answer("no output"))?;
        serde_json::from_value(json!({
            "id": format!("acme-{}", v["id"].as_str().unwrap_or("0")),
            "object": "chat.completion",
            "created": 0,
            "model": &*ctx.model,
            "provider": &*ctx.provider,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": output}}],
            "usage": usage(&v["tokens"]),
        }))
        .map_err(|_| bad_answer("an answer that does not map"))
    }

    fn decode_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        let problem = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["problem"].as_str().map(str::to_owned));
        // The one status table: 429 and 503 are retryable, 401/403 are the gateway's own key.
        error_for_status(status, headers, problem, None)
    }

    fn stream_decoder(&self, ctx: &DecodeContext) -> Box<dyn StreamDecode> {
        Box::new(AcmeStream {
            model: ctx.model.to_string(),
            done: false,
        })
    }
}

/// Acme's SSE events as chunks.
#[derive(Debug)]
struct AcmeStream {
    model: String,
    done: bool,
}

impl AcmeStream {
    fn chunk(&self, delta: Value, finish: Option<&str>, usage: Option<Value>) -> Value {
        json!({"id": "acme-stream", "object": "chat.completion.chunk", "created": 0,
               "model": self.model, "usage": usage,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }
}

impl StreamDecode for AcmeStream {
    fn event(&mut self, event: SseEvent, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        let v: Value =
            serde_json::from_str(&event.data).map_err(|_| bad_answer("an invalid event"))?;
        let chunk = if let Some(text) = v["delta"].as_str() {
            self.chunk(json!({"role": "assistant", "content": text}), None, None)
        } else if v["done"] == true {
            self.done = true;
            self.chunk(json!({}), Some("stop"), Some(usage(&v["tokens"])))
        } else {
            return Err(bad_answer("an unknown event"));
        };
        out.push(serde_json::from_value(chunk).map_err(|_| bad_answer("an unmappable event"))?);
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self, _out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        if self.done {
            Ok(())
        } else {
            Err(bad_answer("a stream cut short"))
        }
    }
}

/// The Acme server this example talks to.
async fn acme(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, ct: &str, body: String| {
        let mut r = http::Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            ct.parse().expect("a valid content type"),
        );
        Ok(r)
    };
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "application/json",
            json!({"problem": "not JSON"}).to_string(),
        );
    };
    let prompt = v["prompt"].as_str().unwrap_or_default();
    if prompt.contains("overload") {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            json!({"problem": "Acme is overloaded"}).to_string(),
        );
    }
    let said = prompt.rsplit(": ").next().unwrap_or_default();
    let output = format!("Acme heard: {said}");
    let tokens =
        json!({"in": prompt.split_whitespace().count(), "out": output.split_whitespace().count()});
    if v["stream"] == true {
        let mut sse = String::new();
        for word in output.split_inclusive(' ') {
            sse.push_str(&format!("data: {}\n\n", json!({"delta": word})));
        }
        sse.push_str(&format!(
            "data: {}\n\n",
            json!({"done": true, "tokens": tokens})
        ));
        return reply(StatusCode::OK, "text/event-stream", sse);
    }
    reply(
        StatusCode::OK,
        "application/json",
        json!({"id": "1", "output": output, "tokens": tokens}).to_string(),
    )
}

async fn start_acme() -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                hyper_util::rt::TokioIo::new(stream),
                hyper::service::service_fn(acme),
            ));
        }
    });
    Ok(format!("http://{addr}"))
}

/// Acme first, with prices so CostMeter can bill it; the demo OpenAI provider as the fallback.
fn catalog(acme_url: &str, openai_url: &str) -> Result<Catalog, Error> {
    let price = |input: f64, output: f64| Pricing {
        input,
        output,
        ..Pricing::default()
    };
    Catalog::builder()
        .provider(Provider::new("acme", ProviderKind::Openai, acme_url).with_codec(AcmeCodec))
        .provider(
            Provider::new("openai", ProviderKind::Openai, openai_url).with_api_key(DEMO_API_KEY),
        )
        .model(ModelSpec::new("acme/echo-1").pricing(price(1.0, 2.0)))
        .model(ModelSpec::new("openai/gpt-4o-mini").pricing(price(0.15, 0.6)))
        .build()
}

async fn run() -> Result<(), String> {
    let mut listen = "127.0.0.1:8082".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            other => return Err(format!("unknown argument `{other}` (usage: --listen ADDR)")),
        }
    }
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| format!("invalid address `{listen}`: {e}"))?;
    let acme_url = start_acme().await?;
    let openai = DemoServer::start(ProviderKind::Openai, Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let catalog = catalog(&acme_url, &openai.base_url()).map_err(|e| e.to_string())?;
    let gateway = Gateway::builder(catalog).build();
    let app = axum::Router::new().route_service("/v1/chat/completions", gateway.chat_completions());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{bound}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())?;
    drop(openai);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
