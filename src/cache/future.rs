//! The [`ResponseCache`](super::ResponseCache) future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::chat::ChatHttpResponse;
use crate::ext::CacheStatus;
use crate::future::BoxFuture;
use crate::Error;

pin_project! {
    /// Future of [`ResponseCache`](super::ResponseCache): the inner call for a bypass
    /// (marked [`CacheStatus::Bypass`]), or the lookup / fetch / follow of a cacheable
    /// request.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Bypass {
            #[pin]
            fut: F,
        },
        Cached {
            fut: BoxFuture<'static, Result<ChatHttpResponse, Error>>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn bypass(fut: F) -> Self {
        Self {
            kind: Kind::Bypass { fut },
        }
    }

    pub(super) fn cached(fut: BoxFuture<'static, Result<ChatHttpResponse, Error>>) -> Self {
        Self {
            kind: Kind::Cached { fut },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Bypass { .. } => "ResponseFuture::Bypass",
            Kind::Cached { .. } => "ResponseFuture::Cached",
        })
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ChatHttpResponse, Error>>,
{
    type Output = Result<ChatHttpResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Bypass { fut } => fut.poll(cx).map(|r| {
                r.map(|mut resp| {
                    resp.extensions_mut().insert(CacheStatus::Bypass);
                    resp
                })
            }),
            KindProj::Cached { fut } => fut.as_mut().poll(cx),
        }
    }
}
