//! A gRPC service (tonic) that answers through switchboard's typed stack, with no HTTP hop.
//!
//! ```sh
//! cargo run --example tonic_embed                           # serves on 127.0.0.1:50051
//! cargo run --example tonic_embed -- --listen 127.0.0.1:0   # any free port
//!
//! # in another terminal: the same binary as a client
//! cargo run --example tonic_embed -- --connect http://127.0.0.1:50051 "Hello!"
//! cargo run --example tonic_embed -- --connect http://127.0.0.1:50051 --model deep \
//!   --system "Be brief." --max-tokens 100 --temperature 0.5 "Hello!"
//! ```
//!
//! The client calls `Chat`, then `ChatStream`, with the same request and prints one JSON object
//! per line: `{"rpc":"Chat","reply":{…}}`, then `{"rpc":"ChatStream","chunk":{…}}` for each
//! chunk; a failed call prints `{"rpc":…,"error":{"code":"NotFound","message":…,"kind":…}}`
//! (`kind` is switchboard's error kind, from the `switchboard-error-kind` metadata) and makes
//! the client exit with status 1.
//!
//! Service `switchboard.demo.v1.Chat` has a unary `Chat` and a server-streaming `ChatStream`
//! RPC. Its messages are ordinary protobuf messages written with `prost::Message` derives (no
//! `.proto` compilation, no `build.rs`); as a `.proto` file they would read:
//!
//! ```proto
//! message ChatMessage { string role = 1; string content = 2; }
//! message ChatRequest {
//!   string model = 1; repeated ChatMessage messages = 2;
//!   optional uint32 max_tokens = 3; optional double temperature = 4;
//! }
//! message Usage {
//!   uint64 prompt_tokens = 1; uint64 completion_tokens = 2; uint64 total_tokens = 3;
//!   optional double cost = 4;  // USD, when the model has prices
//! }
//! message ChatReply {
//!   string id = 1; string model = 2; string content = 3; string finish_reason = 4; Usage usage = 5;
//! }
//! message ChatChunk {
//!   string id = 1; string model = 2; string delta = 3;
//!   optional string finish_reason = 4; Usage usage = 5;  // both only on the last chunk
//! }
//! service Chat {
//!   rpc Chat(ChatRequest) returns (ChatReply);
//!   rpc ChatStream(ChatRequest) returns (stream ChatChunk);
//! }
//! ```
//!
//! The server and client below are what `tonic-build` would generate, written by hand:
//! [`ChatServer`] routes on the request path and hands each call to `tonic::server::Grpc`
//! with a `tonic_prost::ProstCodec`; [`ChatClient`] wraps `tonic::client::Grpc`. The handlers
//! turn the protobuf request into a [`ChatRequest`] and call `gateway.service()` (the typed
//! stack: model resolution, cost metering, fallback, deadlines, provider translation) directly.
//! Every [`switchboard::Error`] becomes a `tonic::Status` by its kind ([`status_of`]).
//!
//! Without provider keys the gateway runs on switchboard's local demo providers; with any of
//! `OPENAI_API_KEY`, `ANTHROPIC_API_KEY` or `GEMINI_API_KEY` set it loads
//! `examples/gateway.toml`. The bound address is printed as `listening on http://ADDR`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::{self, Stream, StreamExt};
use http::uri::PathAndQuery;
use serde_json::{json, Value};
use switchboard::demo::DemoProviders;
use switchboard::openai::ChatRequest;
use switchboard::{Catalog, ChatResponse, ChunkStream, ErrorKind, Gateway, GatewayService};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::{Service, ServiceExt};

/// The protobuf messages of `switchboard.demo.v1`.
pub(crate) mod pb {
    /// One chat message.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ChatMessage {
        /// `system`, `user`, `assistant`, …
        #[prost(string, tag = "1")]
        pub(crate) role: String,
        /// The text.
        #[prost(string, tag = "2")]
        pub(crate) content: String,
    }

    /// A chat request.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ChatRequest {
        /// A model id or alias of the catalog.
        #[prost(string, tag = "1")]
        pub(crate) model: String,
        /// The conversation.
        #[prost(message, repeated, tag = "2")]
        pub(crate) messages: Vec<ChatMessage>,
        /// The output cap.
        #[prost(uint32, optional, tag = "3")]
        pub(crate) max_tokens: Option<u32>,
        /// Sampling temperature (0 to 2).
        #[prost(double, optional, tag = "4")]
        pub(crate) temperature: Option<f64>,
    }

    /// Token usage.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Usage {
        /// Input tokens.
        #[prost(uint64, tag = "1")]
        pub(crate) prompt_tokens: u64,
        /// Output tokens.
        #[prost(uint64, tag = "2")]
        pub(crate) completion_tokens: u64,
        /// Both.
        #[prost(uint64, tag = "3")]
        pub(crate) total_tokens: u64,
        /// Cost in USD, when the serving model has prices.
        #[prost(double, optional, tag = "4")]
        pub(crate) cost: Option<f64>,
    }

    /// A whole answer.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ChatReply {
        /// Completion id.
        #[prost(string, tag = "1")]
        pub(crate) id: String,
        /// The model that answered.
        #[prost(string, tag = "2")]
        pub(crate) model: String,
        /// The answer text.
        #[prost(string, tag = "3")]
        pub(crate) content: String,
        /// `stop`, `length`, `tool_calls`, `content_filter` or `error`.
        #[prost(string, tag = "4")]
        pub(crate) finish_reason: String,
        /// Token usage.
        #[prost(message, optional, tag = "5")]
        pub(crate) usage: Option<Usage>,
    }

    /// One piece of a streamed answer.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ChatChunk {
        /// Completion id (the same on every chunk).
        #[prost(string, tag = "1")]
        pub(crate) id: String,
        /// The model that answers.
        #[prost(string, tag = "2")]
        pub(crate) model: String,
        /// New text.
        #[prost(string, tag = "3")]
        pub(crate) delta: String,
        /// Set on the last chunk only.
        #[prost(string, optional, tag = "4")]
        pub(crate) finish_reason: Option<String>,
        /// Set on the last chunk only.
        #[prost(message, optional, tag = "5")]
        pub(crate) usage: Option<Usage>,
    }
}

/// The gRPC service name.
const SERVICE: &str = "switchboard.demo.v1.Chat";
const CHAT_PATH: &str = "/switchboard.demo.v1.Chat/Chat";
const CHAT_STREAM_PATH: &str = "/switchboard.demo.v1.Chat/ChatStream";

// ---------------------------------------------------------------------------------------------
// Errors

/// Maps a switchboard error to a gRPC status by its kind.
pub(crate) fn status_of(e: &switchboard::Error) -> Status {
    let code = match e.kind() {
        ErrorKind::InvalidRequest | ErrorKind::UpstreamInvalidRequest => Code::InvalidArgument,
        ErrorKind::NotFound | ErrorKind::UpstreamNotFound => Code::NotFound,
        ErrorKind::Unauthorized => Code::Unauthenticated,
        ErrorKind::Forbidden => Code::PermissionDenied,
        // gRPC's code for an exhausted quota.
        ErrorKind::RateLimited | ErrorKind::BudgetExhausted | ErrorKind::PayloadTooLarge => {
            Code::ResourceExhausted
        }
        ErrorKind::Timeout | ErrorKind::ClientTimeout => Code::DeadlineExceeded,
        ErrorKind::Overloaded | ErrorKind::Upstream => Code::Unavailable,
        _ => Code::Internal,
    };
    let mut status = Status::new(code, e.message());
    let meta = status.metadata_mut();
    if let Ok(v) = e.kind().as_str().parse() {
        meta.insert("switchboard-error-kind", v);
    }
    if let Some(after) = e.retry_after() {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        meta.insert("retry-after", secs.into());
    }
    status
}

// ---------------------------------------------------------------------------------------------
// Handlers: protobuf in, typed stack, protobuf out

/// The protobuf request as switchboard's [`ChatRequest`] (parsed and validated the same way an
/// HTTP body is).
fn to_chat_request(req: pb::ChatRequest, stream: bool) -> Result<ChatRequest, Status> {
    let messages: Vec<_> = req
        .messages
        .iter()
        .map(|m| json!({ "role": m.role, "content": m.content }))
        .collect();
    let mut body = json!({ "model": req.model, "messages": messages });
    if let Some(n) = req.max_tokens {
        body["max_tokens"] = n.into();
    }
    if let Some(t) = req.temperature {
        body["temperature"] = t.into();
    }
    if stream {
        body["stream"] = true.into();
    }
    let bytes = serde_json::to_vec(&body).map_err(|e| Status::internal(e.to_string()))?;
    ChatRequest::from_slice(&bytes).map_err(|e| status_of(&e))
}

fn to_usage(u: &switchboard::openai::Usage) -> pb::Usage {
    pb::Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
        cost: u.cost,
    }
}

/// Calls the typed stack with one request.
async fn call(
    gateway: GatewayService,
    req: pb::ChatRequest,
    stream: bool,
) -> Result<ChatResponse, Status> {
    let chat = to_chat_request(req, stream)?;
    // An app with its own auth would insert a `switchboard::ext::CallerKey` into this
    // request's extensions, as the axum example does, to charge that caller's budget.
    let typed = http::Request::new(Arc::new(chat));
    let resp = gateway.oneshot(typed).await.map_err(|e| status_of(&e))?;
    Ok(resp.into_body())
}

async fn chat(
    gateway: GatewayService,
    req: tonic::Request<pb::ChatRequest>,
) -> Result<tonic::Response<pb::ChatReply>, Status> {
    let answer = call(gateway, req.into_inner(), false).await?;
    // A pass-through from an OpenAI-compatible provider is parsed here, once.
    let completion = answer
        .into_complete()
        .ok_or_else(|| Status::internal("expected a whole completion"))?
        .into_typed()
        .map_err(|e| status_of(&e))?;
    let choice = completion.choices.first();
    Ok(tonic::Response::new(pb::ChatReply {
        id: completion.id.clone(),
        model: completion.model.clone(),
        content: choice
            .and_then(|c| c.message.content.clone())
            .unwrap_or_default(),
        finish_reason: choice
            .and_then(|c| c.finish_reason)
            .map_or("stop", |f| f.as_str())
            .to_owned(),
        usage: completion.usage.as_ref().map(to_usage),
    }))
}

type ChunkResult = Result<pb::ChatChunk, Status>;
type PbChunkStream = Pin<Box<dyn Stream<Item = ChunkResult> + Send>>;

async fn chat_stream(
    gateway: GatewayService,
    req: tonic::Request<pb::ChatRequest>,
) -> Result<tonic::Response<PbChunkStream>, Status> {
    let answer = call(gateway, req.into_inner(), true).await?;
    let chunks = answer
        .into_stream()
        .ok_or_else(|| Status::internal("expected a stream"))?;
    Ok(tonic::Response::new(Box::pin(to_pb_stream(chunks))))
}

/// Where [`to_pb_stream`] is.
struct StreamState {
    chunks: ChunkStream,
    id: String,
    model: String,
    finish_reason: Option<String>,
    usage: Option<pb::Usage>,
    done: bool,
}

/// Canonical chunks → protobuf chunks: one per piece of text, then a last one with the finish
/// reason and usage (OpenAI streams put those on separate chunks; here they travel together).
/// A failure after the start ends the stream with its status.
fn to_pb_stream(chunks: ChunkStream) -> impl Stream<Item = ChunkResult> + Send {
    let state = StreamState {
        chunks,
        id: String::new(),
        model: String::new(),
        finish_reason: None,
        usage: None,
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            match st.chunks.next().await {
                Some(Ok(chunk)) => {
                    if st.id.is_empty() {
                        st.id.clone_from(&chunk.id);
                        st.model.clone_from(&chunk.model);
                    }
                    if let Some(u) = &chunk.usage {
                        st.usage = Some(to_usage(u));
                    }
                    let mut delta = String::new();
                    for c in &chunk.choices {
                        if let Some(f) = c.finish_reason {
                            st.finish_reason = Some(f.as_str().to_owned());
                        }
                        if let Some(text) = &c.delta.content {
                            delta.push_str(text);
                        }
                    }
                    if !delta.is_empty() {
                        let out = pb::ChatChunk {
                            id: st.id.clone(),
                            model: st.model.clone(),
                            delta,
                            finish_reason: None,
                            usage: None,
                        };
                        return Some((Ok(out), st));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(status_of(&e)), st));
                }
                None => {
                    st.done = true;
                    let last = pb::ChatChunk {
                        id: st.id.clone(),
                        model: st.model.clone(),
                        delta: String::new(),
                        finish_reason: Some(
                            st.finish_reason.take().unwrap_or_else(|| "stop".into()),
                        ),
                        usage: st.usage.take(),
                    };
                    return Some((Ok(last), st));
                }
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Server: what tonic-build would generate, by hand

/// The `switchboard.demo.v1.Chat` service over a gateway's typed stack.
#[derive(Debug, Clone)]
pub(crate) struct ChatServer {
    gateway: GatewayService,
}

impl ChatServer {
    pub(crate) fn new(gateway: &Gateway) -> Self {
        Self {
            gateway: gateway.service(),
        }
    }
}

impl NamedService for ChatServer {
    const NAME: &'static str = SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<http::Request<Body>> for ChatServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let gateway = self.gateway.clone();
        match req.uri().path() {
            CHAT_PATH => Box::pin(async move {
                let handler = tower::service_fn(move |r| chat(gateway.clone(), r));
                let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                Ok(grpc.unary(handler, req).await)
            }),
            CHAT_STREAM_PATH => Box::pin(async move {
                let handler = tower::service_fn(move |r| chat_stream(gateway.clone(), r));
                let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                Ok(grpc.server_streaming(handler, req).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// Serves the Chat service on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    gateway: &Gateway,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(ChatServer::new(gateway))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

// ---------------------------------------------------------------------------------------------
// Client: what tonic-build would generate, by hand

/// A client of `switchboard.demo.v1.Chat`.
#[derive(Debug, Clone)]
pub(crate) struct ChatClient {
    inner: tonic::client::Grpc<Channel>,
}

impl ChatClient {
    /// Connects to `uri` (`http://HOST:PORT`).
    pub(crate) async fn connect(uri: String) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(uri)?.connect().await?;
        Ok(Self {
            inner: tonic::client::Grpc::new(channel),
        })
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("service was not ready: {e}")))
    }

    /// The unary `Chat` RPC.
    pub(crate) async fn chat(&mut self, req: pb::ChatRequest) -> Result<pb::ChatReply, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static(CHAT_PATH);
        let resp = self
            .inner
            .unary(tonic::Request::new(req), path, ProstCodec::default())
            .await?;
        Ok(resp.into_inner())
    }

    /// The server-streaming `ChatStream` RPC.
    pub(crate) async fn chat_stream(
        &mut self,
        req: pb::ChatRequest,
    ) -> Result<tonic::Streaming<pb::ChatChunk>, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static(CHAT_STREAM_PATH);
        let resp = self
            .inner
            .server_streaming(tonic::Request::new(req), path, ProstCodec::default())
            .await?;
        Ok(resp.into_inner())
    }
}

// ---------------------------------------------------------------------------------------------
// main

enum Mode {
    Serve(SocketAddr),
    Client(ClientArgs),
}

/// What the client mode sends.
struct ClientArgs {
    uri: String,
    model: String,
    system: Option<String>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    prompt: String,
}

const USAGE: &str = "usage: [--listen ADDR] | --connect URI [--model M] [--system TEXT] \
                     [--max-tokens N] [--temperature T] PROMPT";

fn parse_args() -> Result<Mode, String> {
    let mut listen = "127.0.0.1:50051".to_owned();
    let mut connect = None;
    let mut model = "fast".to_owned();
    let mut system = None;
    let mut max_tokens = None;
    let mut temperature = None;
    let mut prompt = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value ({USAGE})"));
        match a.as_str() {
            "--listen" => listen = value()?,
            "--connect" => connect = Some(value()?),
            "--model" => model = value()?,
            "--system" => system = Some(value()?),
            "--max-tokens" => {
                let v = value()?;
                max_tokens = Some(v.parse().map_err(|e| format!("--max-tokens {v}: {e}"))?);
            }
            "--temperature" => {
                let v = value()?;
                temperature = Some(v.parse().map_err(|e| format!("--temperature {v}: {e}"))?);
            }
            s if s.starts_with("--") => return Err(format!("unknown argument `{s}` ({USAGE})")),
            _ => prompt.push(a),
        }
    }
    match connect {
        Some(uri) => Ok(Mode::Client(ClientArgs {
            uri,
            model,
            system,
            max_tokens,
            temperature,
            prompt: if prompt.is_empty() {
                "Hello!".to_owned()
            } else {
                prompt.join(" ")
            },
        })),
        None => listen
            .parse()
            .map(Mode::Serve)
            .map_err(|e| format!("invalid listen address `{listen}`: {e}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match parse_args() {
        Ok(Mode::Serve(addr)) => run_server(addr).await,
        Ok(Mode::Client(args)) => run_client(args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server(addr: SocketAddr) -> Result<(), String> {
    let (catalog, _demo) = load_catalog().await?;
    let gateway = Gateway::builder(catalog).build();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{bound}");
    serve(listener, &gateway, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| e.to_string())
}

async fn run_client(args: ClientArgs) -> Result<(), String> {
    let uri = args.uri;
    let mut client = ChatClient::connect(uri.clone())
        .await
        .map_err(|e| format!("cannot connect to {uri}: {e}"))?;
    let mut messages = Vec::new();
    if let Some(system) = args.system {
        messages.push(pb::ChatMessage {
            role: "system".into(),
            content: system,
        });
    }
    messages.push(pb::ChatMessage {
        role: "user".into(),
        content: args.prompt,
    });
    let req = pb::ChatRequest {
        model: args.model,
        messages,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
    };
    let mut failures = Vec::new();
    match client.chat(req.clone()).await {
        Ok(reply) => {
            let usage = reply.usage.as_ref().map(usage_json);
            let reply = json!({
                "id": reply.id, "model": reply.model, "content": reply.content,
                "finish_reason": reply.finish_reason, "usage": usage,
            });
            println!("{}", json!({ "rpc": "Chat", "reply": reply }));
        }
        Err(s) => failures.push(failed("Chat", &s)),
    }
    match client.chat_stream(req).await {
        Ok(mut stream) => {
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => {
                        let usage = c.usage.as_ref().map(usage_json);
                        let chunk = json!({
                            "id": c.id, "model": c.model, "delta": c.delta,
                            "finish_reason": c.finish_reason, "usage": usage,
                        });
                        println!("{}", json!({ "rpc": "ChatStream", "chunk": chunk }));
                    }
                    Err(s) => {
                        failures.push(failed("ChatStream", &s));
                        break;
                    }
                }
            }
        }
        Err(s) => failures.push(failed("ChatStream", &s)),
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

fn usage_json(u: &pb::Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens, "cost": u.cost,
    })
}

/// Prints the failure of `rpc` as a JSON line; returns it as text.
fn failed(rpc: &str, s: &Status) -> String {
    let kind = s
        .metadata()
        .get("switchboard-error-kind")
        .and_then(|v| v.to_str().ok());
    let error = json!({ "code": format!("{:?}", s.code()), "message": s.message(), "kind": kind });
    println!("{}", json!({ "rpc": rpc, "error": error }));
    format!("{rpc} failed: {:?}: {}", s.code(), s.message())
}

// ---------------------------------------------------------------------------------------------
// Start-up

/// The demo providers' catalog, or `examples/gateway.toml` when a provider key is set. The
/// demo providers live as long as the returned guard.
async fn load_catalog() -> Result<(Catalog, Option<DemoProviders>), String> {
    let keyed = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    if keyed {
        let path = "examples/gateway.toml";
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let catalog = Catalog::from_toml(&text).map_err(|e| format!("{path}: {}", e.message()))?;
        return Ok((catalog, None));
    }
    let demo = DemoProviders::start()
        .await
        .map_err(|e| format!("cannot start the demo providers: {e}"))?;
    println!("no provider API keys set: using switchboard's local demo providers");
    Ok((demo.catalog(), Some(demo)))
}
