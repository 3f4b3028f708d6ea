//! ModelTimeout: per-attempt deadlines from the [`Target`]: `total` for a whole answer,
//! `first_token` until a stream's first output, `idle` between stream chunks.
//!
//! Requires: [`Target`] (its `deadlines`, already clipped by
//! [`Fallback`](crate::fallback::Fallback) to what is left of the request's budget); without
//! one the layer's default deadlines apply. Provides: nothing.
//!
//! No timer is armed when no deadline applies. A missed deadline is
//! [`ErrorKind::Timeout`] (504, retryable): before a stream's
//! commit point Fallback tries the next candidate; after it the stream ends with that error.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use switchboard::catalog::Deadlines;
//! use switchboard::timeout::ModelTimeoutLayer;
//! use switchboard::{ChatHttpRequest, ChatHttpResponse, Error, ErrorKind};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! let slow = service_fn(|_req: ChatHttpRequest| async {
//!     tokio::time::sleep(Duration::from_secs(60)).await;
//!     Err::<ChatHttpResponse, _>(Error::upstream("unreachable"))
//! });
//! let svc = ModelTimeoutLayer::new(Deadlines {
//!     total: Some(Duration::from_secs(5)),
//!     ..Deadlines::default()
//! })
//! .layer(slow);
//! let req = http::Request::new(std::sync::Arc::new(
//!     switchboard::openai::ChatRequest::from_slice(
//!         br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
//!     )
//!     .unwrap(),
//! ));
//! let err = svc.oneshot(req).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Timeout);
//! # }
//! ```

pub mod future;
mod stream;

use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

pub use stream::TimeoutStream;

use crate::catalog::Deadlines;
use crate::chat::{ChatHttpRequest, ChatHttpResponse};
use crate::ext::Target;
use crate::{Error, ErrorKind};

/// Layer for [`ModelTimeout`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelTimeoutLayer {
    defaults: Deadlines,
}

impl ModelTimeoutLayer {
    /// Deadlines used when a request carries no [`Target`].
    pub const fn new(defaults: Deadlines) -> Self {
        Self { defaults }
    }
}

impl<S> Layer<S> for ModelTimeoutLayer {
    type Service = ModelTimeout<S>;
    fn layer(&self, inner: S) -> ModelTimeout<S> {
        ModelTimeout {
            inner,
            defaults: self.defaults,
        }
    }
}

/// The deadline service; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ModelTimeout<S> {
    inner: S,
    defaults: Deadlines,
}

impl<S> ModelTimeout<S> {
    crate::macros::inner_service_accessors!(inner: S);
}

impl<S> Service<ChatHttpRequest> for ModelTimeout<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = future::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ChatHttpRequest) -> Self::Future {
        let d = req
            .extensions()
            .get::<Target>()
            .map_or(self.defaults, |t| t.deadlines);
        let stream = req.body().is_stream();
        let fut = self.inner.call(req);
        if d.is_none() {
            return future::ResponseFuture::new(fut, None, None);
        }
        let now = Instant::now();
        let total = d.total.map(|t| now + t);
        let first = if stream {
            d.first_token.map(|t| now + t)
        } else {
            None
        };
        let until_headers = earliest(total, first);
        future::ResponseFuture::new(
            fut,
            until_headers.map(tokio::time::sleep_until),
            Some(Plan {
                total,
                first,
                idle: d.idle,
            }),
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    total: Option<Instant>,
    first: Option<Instant>,
    idle: Option<std::time::Duration>,
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(crate) fn deadline_error(what: &'static str) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("the provider missed the {what} deadline"),
    )
}
