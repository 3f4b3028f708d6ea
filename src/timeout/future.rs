//! The [`ModelTimeout`](super::ModelTimeout) future.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::{deadline_error, Plan, TimeoutStream};
use crate::chat::{ChatHttpResponse, ChatResponse};
use crate::Error;

pin_project! {
    /// Future of [`ModelTimeout`](super::ModelTimeout): the inner call under the `total`
    /// (and, for a stream, `first_token`) deadline; a stream answer is wrapped in a
    /// [`TimeoutStream`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        plan: Option<Plan>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, sleep: Option<Sleep>, plan: Option<Plan>) -> Self {
        Self { inner, sleep, plan }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ChatHttpResponse, Error>>,
{
    type Output = Result<ChatHttpResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(res) = this.inner.poll(cx) {
            let resp = res?;
            let Some(plan) = *this.plan else {
                return Poll::Ready(Ok(resp));
            };
            let (parts, body) = resp.into_parts();
            let body = match body {
                ChatResponse::Stream(s) => ChatResponse::Stream(Box::pin(TimeoutStream::new(
                    s, plan.total, plan.first, plan.idle,
                ))),
                complete => complete,
            };
            return Poll::Ready(Ok(http::Response::from_parts(parts, body)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
            let what = match *this.plan {
                Some(Plan {
                    first: Some(f),
                    total,
                    ..
                }) if total.is_none_or(|t| f <= t) => "first-token",
                _ => "total",
            };
            return Poll::Ready(Err(deadline_error(what)));
        }
        Poll::Pending
    }
}
