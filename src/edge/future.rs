//! The [`ChatCompletions`](super::ChatCompletions) future.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::EdgeBody;
use crate::future::BoxFuture;

/// Future of [`ChatCompletions`](super::ChatCompletions): reading and parsing the request,
/// the call to the typed stack and the rendering of its answer (or error) as HTTP. Never
/// fails.
pub struct ResponseFuture {
    inner: BoxFuture<'static, Result<http::Response<EdgeBody>, Infallible>>,
}

impl ResponseFuture {
    pub(super) fn new(
        inner: BoxFuture<'static, Result<http::Response<EdgeBody>, Infallible>>,
    ) -> Self {
        Self { inner }
    }

    /// A future that is the answer already (a refusal made before the body is read).
    pub(super) fn ready(resp: http::Response<EdgeBody>) -> Self {
        Self::new(Box::pin(std::future::ready(Ok(resp))))
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<EdgeBody>, Infallible>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
