//! What the layers' futures share: the crate's one boxed-future alias, and the future of the
//! layers that either call the inner service or answer at once with an error
//! ([`ModelResolve`](crate::resolve::ModelResolve), which re-exports it from its own `future`
//! module; [`ClientKeys`](crate::keys::ClientKeys) has its own, as it may wait for a shared
//! rate-limit store).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::Error;

/// A boxed, `Send` future: what the layers with long `async` logic keep inside their named
/// `ResponseFuture`s, and what the cache keeps its leader's call in.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pin_project! {
    /// Either the inner service's future or an immediate error.
    pub struct ResponseFuture<F> {
        #[pin]
        fut: Option<F>,
        error: Option<Error>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(fut: F) -> Self {
        Self {
            fut: Some(fut),
            error: None,
        }
    }
    pub(crate) fn failed(e: Error) -> Self {
        Self {
            fut: None,
            error: Some(e),
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(e) = this.error.take() {
            return Poll::Ready(Err(e));
        }
        match this.fut.as_pin_mut() {
            Some(f) => f.poll(cx),
            None => Poll::Ready(Err(Error::upstream("future polled after completion"))),
        }
    }
}
