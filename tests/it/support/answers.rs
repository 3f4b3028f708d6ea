//! A real HTTP client for the gateway and the checks every answer must pass, whatever went
//! wrong upstream: a well-formed JSON completion, a well-formed OpenAI error, or an SSE stream
//! that ends in exactly one `data: [DONE]` with a finish reason or an error chunk before it
//! (never a silently truncated success).
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::time::Instant;

/// A pooled HTTP/1.1 client.
pub type TestClient = Client<HttpConnector, Full<Bytes>>;

/// A client with keep-alive connections.
pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An answer read off the wire.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// From sending the request to the end of the body.
    pub elapsed: Duration,
}

/// What a well-formed answer is.
#[derive(Debug)]
pub enum Shape {
    /// `200` with a whole `chat.completion`.
    Complete(Value),
    /// An OpenAI-style error body with a 4xx/5xx status.
    Failed(Value),
    /// An SSE stream of chunks (the `[DONE]` marker removed). `error` is the final error
    /// chunk, if the stream broke.
    Streamed {
        chunks: Vec<Value>,
        error: Option<Value>,
    },
}

impl Shape {
    /// The text of a completion or of a stream's content deltas.
    pub fn text(&self) -> String {
        match self {
            Self::Complete(v) => v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            Self::Streamed { chunks, .. } => chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect(),
            Self::Failed(_) => String::new(),
        }
    }

    /// The error object of a failed answer or of a broken stream.
    pub fn error(&self) -> Option<&Value> {
        match self {
            Self::Failed(v) => Some(&v["error"]),
            Self::Streamed { error, .. } => error.as_ref().map(|e| &e["error"]),
            Self::Complete(_) => None,
        }
    }
}

impl Reply {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as (lossy) text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Checks the answer is complete and well formed, and says what it is.
    pub fn shape(&self) -> Result<Shape, String> {
        let fail = |why: &str| {
            Err(format!(
                "{why}: status {} body {}",
                self.status,
                self.text()
            ))
        };
        let ct = self.header("content-type").unwrap_or_default();
        if ct.starts_with("text/event-stream") {
            if self.status != 200 {
                return fail("an event stream with a non-200 status");
            }
            let Ok(text) = std::str::from_utf8(&self.body) else {
                return fail("an event stream that is not UTF-8");
            };
            if !text.ends_with("\n\n") {
                return fail("the stream ends in the middle of an event");
            }
            let mut data = Vec::new();
            for event in text.split("\n\n").filter(|e| !e.is_empty()) {
                for line in event.lines() {
                    if line.starts_with(':') {
                        continue; // keep-alive comment
                    }
                    match line.strip_prefix("data: ") {
                        Some(d) => data.push(d),
                        None => return fail(&format!("a stream line that is not data: {line:?}")),
                    }
                }
            }
            if data.last() != Some(&"[DONE]") {
                return fail("the stream does not end with data: [DONE]");
            }
            if data.iter().filter(|d| **d == "[DONE]").count() != 1 {
                return fail("more than one [DONE]");
            }
            let mut chunks = Vec::with_capacity(data.len());
            for d in &data[..data.len() - 1] {
                match serde_json::from_str::<Value>(d) {
                    Ok(v) if v["object"] == "chat.completion.chunk" => chunks.push(v),
                    _ => return fail(&format!("a stream event that is not a chunk: {d}")),
                }
            }
            let error = match chunks.iter().position(|c| c.get("error").is_some()) {
                Some(at) => {
                    if at + 1 != chunks.len() {
                        return fail("chunks after the error chunk");
                    }
                    let e = chunks.pop().unwrap_or_default();
                    if !e["error"]["message"].is_string()
                        || e["choices"][0]["finish_reason"] != "error"
                    {
                        return fail("an error chunk without message or finish_reason error");
                    }
                    Some(e)
                }
                None => None,
            };
            let finished = chunks.iter().any(|c| {
                c["choices"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|ch| ch["finish_reason"].is_string()))
            });
            if error.is_none() && !finished {
                return fail("a stream that ended [DONE] without a finish reason or an error");
            }
            return Ok(Shape::Streamed { chunks, error });
        }
        let Ok(v) = serde_json::from_slice::<Value>(&self.body) else {
            return fail("a body that is not JSON");
        };
        if self.status == 200 {
            let choice = &v["choices"][0];
            if v["object"] != "chat.completion"
                || !choice["message"].is_object()
                || !choice["finish_reason"].is_string()
            {
                return fail("a 200 that is not a finished chat.completion");
            }
            Ok(Shape::Complete(v))
        } else if (400..600).contains(&self.status)
            && v["error"]["message"].is_string()
            && v["error"]["type"].is_string()
        {
            Ok(Shape::Failed(v))
        } else {
            fail("an error without an OpenAI-style error body")
        }
    }
}

/// POSTs `body` to the chat completions endpoint at `addr`; gives up (as an `Err`) after
/// `limit`, so a hang is a test failure, not a stuck test.
pub async fn post(
    client: &TestClient,
    addr: SocketAddr,
    body: &Value,
    headers: &[(&str, &str)],
    limit: Duration,
) -> Result<Reply, String> {
    let mut req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).unwrap_or_default(),
        )))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("request: {e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e:?}"))?
            .to_bytes();
        Ok::<_, String>((status, headers, body))
    };
    let (status, headers, body) = tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| format!("no complete answer within {limit:?}"))??;
    Ok(Reply {
        status,
        headers,
        body,
        elapsed: started.elapsed(),
    })
}

/// Resident memory of this process, from `/proc/self/status` (`VmRSS`, in kB).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
