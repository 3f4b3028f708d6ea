//! Shared by the socket-level test files: the gateway served on 127.0.0.1, provider URLs,
//! a refused port.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::{json, Value};
use switchboard::catalog::ProviderKind;
use switchboard::Gateway;
use tokio::net::{TcpListener, TcpSocket};

/// The gateway's chat endpoint served by axum on 127.0.0.1:0, as the ready gateway serves it
/// (without graceful shutdown, whose signal task would race with task counts).
pub(crate) struct Served {
    pub(crate) addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

pub(crate) async fn serve(g: &Gateway) -> Served {
    let app = axum::Router::new().route_service("/v1/chat/completions", g.chat_completions());
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Served { addr, task }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn upstream_model(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Anthropic => "claude-3-5-haiku-20241022",
        ProviderKind::Gemini => "gemini-2.5-flash",
        _ => "gpt-4o-mini",
    }
}

pub(crate) fn base_url(kind: ProviderKind, addr: SocketAddr) -> String {
    match kind {
        ProviderKind::Openai => format!("http://{addr}/v1"),
        _ => format!("http://{addr}"),
    }
}

pub(crate) fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello there"}]})
}

/// A port on 127.0.0.1 where nothing listens (connections are refused) for as long as the
/// returned socket lives: bound, never listening, so no other test can take the port.
pub(crate) fn closed_port() -> (TcpSocket, SocketAddr) {
    let s = TcpSocket::new_v4().unwrap();
    s.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let addr = s.local_addr().unwrap();
    (s, addr)
}
