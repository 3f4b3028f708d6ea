//! Fallback: walks the [`Route`], writing a [`Target`] for each candidate and calling the inner
//! service, until one answers.
//!
//! Requires: [`Route`] (from [`ModelResolve`](crate::resolve::ModelResolve)); a request with no
//! `Route` but a `Target` is passed through as one attempt. Provides: [`Target`] (request),
//! [`ServedBy`] (response).
//!
//! # The commit point
//! The future resolves only at the commit point: for a non-streaming request when a candidate
//! answered successfully; for a stream when the first real output (text, reasoning, a tool
//! call or a finish reason) arrived. Role-only preamble chunks are held until then. Before the
//! commit point every retryable failure ([`Error::is_retryable`]) moves on to the next
//! candidate; a stream that fails before its first output counts as such a failure. After it
//! nothing is retried: the stream carries the error to the client.
//!
//! # Errors
//! A non-retryable error is returned at once. When every candidate failed: a 429 with the
//! smallest `Retry-After` if every attempt was rate limited, else the last attempt's error.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use crate::chat::{ChatHttpRequest, ChatHttpResponse, ChatResponse, ChunkStream};
use crate::ext::{Attempt, Route, ServedBy, Target};
use crate::openai::ChatCompletionChunk;
use crate::{Error, ErrorKind};

/// Layer for [`Fallback`].
#[derive(Debug, Clone, Default)]
pub struct FallbackLayer {
    _priv: (),
}

impl FallbackLayer {
    /// A fallback layer.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for FallbackLayer {
    type Service = Fallback<S>;
    fn layer(&self, inner: S) -> Fallback<S> {
        Fallback { inner }
    }
}

/// The fallback service; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Fallback<S> {
    inner: S,
}

impl<S> Fallback<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Future of [`Fallback`].
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<ChatHttpResponse, Error>> + Send>>;

impl<S> Service<ChatHttpRequest> for Fallback<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Readiness is driven per attempt, so one slow candidate cannot stall the others.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatHttpRequest) -> ResponseFuture {
        let inner = self.inner.clone();
        Box::pin(run(inner, req))
    }
}

async fn run<S>(inner: S, req: ChatHttpRequest) -> Result<ChatHttpResponse, Error>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error> + Clone + Send,
    S::Future: Send,
{
    let Some(route) = req.extensions().get::<Route>().cloned() else {
        if req.extensions().get::<Target>().is_some() {
            return inner.oneshot(req).await;
        }
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            "no route for this request (ModelResolve must run before Fallback)",
        ));
    };
    let (parts, body) = req.into_parts();
    let mut attempts: Vec<Attempt> = Vec::with_capacity(route.candidates.len());
    let mut errors: Vec<Error> = Vec::new();
    let total = route.candidates.len();
    for (i, candidate) in route.candidates.iter().enumerate() {
        let mut attempt_req = http::Request::new(body.clone());
        *attempt_req.method_mut() = parts.method.clone();
        *attempt_req.uri_mut() = parts.uri.clone();
        *attempt_req.version_mut() = parts.version;
        *attempt_req.headers_mut() = parts.headers.clone();
        *attempt_req.extensions_mut() = parts.extensions.clone();
        let target = Target {
            deadlines: candidate.deadlines,
            candidate: candidate.clone(),
            attempt: u32::try_from(i + 1).unwrap_or(u32::MAX),
        };
        attempt_req.extensions_mut().insert(target);
        let result = match inner.clone().oneshot(attempt_req).await {
            Ok(resp) => commit(resp).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(mut resp) => {
                attempts.push(Attempt {
                    provider: candidate.provider.name.clone(),
                    model: candidate.model.clone(),
                    error: None,
                });
                resp.extensions_mut().insert(ServedBy {
                    provider: candidate.provider.name.clone(),
                    model: candidate.model.clone(),
                    attempts,
                });
                return Ok(resp);
            }
            Err(e) => {
                tracing::debug!(
                    provider = %candidate.provider.name,
                    model = %candidate.model,
                    attempt = i + 1,
                    error = %e,
                    "attempt failed"
                );
                attempts.push(Attempt {
                    provider: candidate.provider.name.clone(),
                    model: candidate.model.clone(),
                    error: Some(e.kind()),
                });
                if !e.is_retryable() || i + 1 == total {
                    errors.push(e);
                    break;
                }
                errors.push(e);
            }
        }
    }
    Err(final_error(errors))
}

/// Waits for the commit point of a response: immediate for a completion, the first real
/// output for a stream (preamble chunks are held and replayed in front of it).
async fn commit(resp: ChatHttpResponse) -> Result<ChatHttpResponse, Error> {
    let (parts, body) = resp.into_parts();
    let stream = match body {
        ChatResponse::Complete(_) => return Ok(http::Response::from_parts(parts, body)),
        ChatResponse::Stream(s) => s,
    };
    let (held, rest) = first_output(stream).await?;
    let replay = futures_util::stream::iter(held.into_iter().map(Ok)).chain(rest);
    Ok(http::Response::from_parts(
        parts,
        ChatResponse::Stream(Box::pin(replay)),
    ))
}

async fn first_output(
    mut stream: ChunkStream,
) -> Result<(Vec<ChatCompletionChunk>, ChunkStream), Error> {
    let mut held = Vec::new();
    while let Some(item) = stream.next().await {
        let chunk = item?;
        let done = chunk.has_output();
        held.push(chunk);
        if done {
            break;
        }
    }
    Ok((held, stream))
}

fn final_error(mut errors: Vec<Error>) -> Error {
    let all_rate_limited =
        !errors.is_empty() && errors.iter().all(|e| e.kind() == ErrorKind::RateLimited);
    if all_rate_limited {
        let min = errors.iter().filter_map(Error::retry_after).min();
        let mut e = errors.swap_remove(0);
        if let Some(m) = min {
            e = e.with_retry_after(m);
        }
        return e;
    }
    errors.pop().unwrap_or_else(|| {
        Error::new(
            ErrorKind::Overloaded,
            "no candidate could serve the request",
        )
    })
}
