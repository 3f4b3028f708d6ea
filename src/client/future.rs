//! The [`HttpClient`](super::HttpClient) future.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use hyper::body::Incoming;
use hyper_util::client::legacy;
use pin_project_lite::pin_project;

use crate::Error;

pin_project! {
    /// Future of [`HttpClient`](super::HttpClient): hyper-util's, with its error mapped to
    /// [`Error`].
    pub struct ResponseFuture {
        #[pin]
        inner: legacy::ResponseFuture,
    }
}

impl ResponseFuture {
    pub(super) fn new(inner: legacy::ResponseFuture) -> Self {
        Self { inner }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<Incoming>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let res = ready!(self.project().inner.poll(cx));
        Poll::Ready(res.map_err(super::map_error))
    }
}
