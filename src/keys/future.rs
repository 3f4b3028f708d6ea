//! The [`ClientKeys`](super::ClientKeys) future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::settle::{Taken, TokenHold};
use super::store::Decision;
use crate::chat::{ChatHttpRequest, ChatHttpResponse};
use crate::future::BoxFuture;
use crate::Error;

/// A shared store's answer, and where the draws were taken (the shared store, or this
/// instance's buckets when it failed).
pub(super) type Acquire = BoxFuture<'static, (Decision, Taken)>;

pin_project! {
    /// Future of [`ClientKeys`](super::ClientKeys): the refusal (401, 403, 429) at once, or
    /// the inner service's future once the key is accepted; with a shared
    /// [`RateLimitStore`](super::RateLimitStore), the store's answer first (a boxed future:
    /// the in-memory default does not allocate). The tokens-per-minute reservation is settled
    /// when the answer (or, for a stream, its usage chunk) arrives.
    pub struct ResponseFuture<S, F> {
        #[pin]
        state: State<S, F>,
        hold: Option<TokenHold>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F> {
        Acquiring {
            acquire: Acquire,
            svc: Option<S>,
            req: Option<ChatHttpRequest>,
        },
        Calling {
            #[pin]
            fut: F,
        },
        Done {
            error: Option<Error>,
        },
    }
}

impl<S, F> ResponseFuture<S, F> {
    pub(super) fn called(fut: F, hold: Option<TokenHold>) -> Self {
        Self {
            state: State::Calling { fut },
            hold,
        }
    }

    pub(super) fn failed(e: Error) -> Self {
        Self {
            state: State::Done { error: Some(e) },
            hold: None,
        }
    }

    pub(super) fn acquiring(
        acquire: Acquire,
        svc: S,
        req: ChatHttpRequest,
        hold: Option<TokenHold>,
    ) -> Self {
        Self {
            state: State::Acquiring {
                acquire,
                svc: Some(svc),
                req: Some(req),
            },
            hold,
        }
    }
}

impl<S, F> fmt::Debug for ResponseFuture<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Acquiring { .. } => "acquiring",
            State::Calling { .. } => "calling",
            State::Done { .. } => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S, F> Future for ResponseFuture<S, F>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error, Future = F>,
    F: Future<Output = Result<ChatHttpResponse, Error>>,
{
    type Output = Result<ChatHttpResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Acquiring { acquire, svc, req } => {
                    let (decision, taken) = ready!(acquire.as_mut().poll(cx));
                    let (Some(mut svc), Some(req)) = (svc.take(), req.take()) else {
                        return Poll::Ready(Err(Error::upstream("future polled after completion")));
                    };
                    match decision {
                        Decision::Granted => {
                            if let Some(hold) = this.hold.as_mut() {
                                hold.taken = taken;
                            }
                            let fut = svc.call(req);
                            this.state.set(State::Calling { fut });
                        }
                        Decision::Refused { kind, retry_after } => {
                            // Nothing was taken: nothing to settle.
                            *this.hold = None;
                            this.state.set(State::Done { error: None });
                            return Poll::Ready(Err(super::limited(kind, retry_after)));
                        }
                    }
                }
                StateProj::Calling { fut } => {
                    let result = ready!(fut.poll(cx));
                    this.state.set(State::Done { error: None });
                    return Poll::Ready(match this.hold.take() {
                        Some(hold) => hold.settle_on(result),
                        None => result,
                    });
                }
                StateProj::Done { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .unwrap_or_else(|| Error::upstream("future polled after completion"))));
                }
            }
        }
    }
}
