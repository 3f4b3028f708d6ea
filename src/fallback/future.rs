//! The [`Fallback`](super::Fallback) future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::chat::ChatHttpResponse;
use crate::future::BoxFuture;
use crate::Error;

/// Future of [`Fallback`](super::Fallback): the walk over the route's candidates, resolving
/// at the commit point.
pub struct ResponseFuture {
    inner: BoxFuture<'static, Result<ChatHttpResponse, Error>>,
}

impl ResponseFuture {
    pub(super) fn new(inner: BoxFuture<'static, Result<ChatHttpResponse, Error>>) -> Self {
        Self { inner }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<ChatHttpResponse, Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
