//! [`UpstreamBody`]: the body of a request to a provider.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

/// The body of a request to a provider: up to three byte buffers sent one after the other.
///
/// A codec that forwards part of the client's request unchanged (the OpenAI-compatible codec's
/// `messages`, most of a long conversation) sends that part as a slice of the client's own
/// body, between a prefix and a suffix it wrote, instead of copying it into a new buffer.
/// hyper writes the buffers with one vectored write; the length is exact, so HTTP/1.1 gets a
/// `Content-Length`.
///
/// A body of one buffer is a `Bytes` and nothing more (the size of `Full<Bytes>`: requests are
/// moved between futures many times on their way out); several buffers sit behind a pointer.
#[derive(Debug, Clone)]
pub struct UpstreamBody(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// One buffer (empty once sent).
    One(Bytes),
    /// Several, sent in order.
    Parts(Box<Parts>),
}

#[derive(Debug, Clone)]
struct Parts {
    bufs: [Bytes; 3],
    /// The first of `bufs` not yet sent.
    next: usize,
}

impl Default for UpstreamBody {
    fn default() -> Self {
        Self::new(Bytes::new())
    }
}

impl UpstreamBody {
    /// A body of one buffer.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Self(Repr::One(bytes.into()))
    }

    /// A body of `head`, `middle` and `tail`, in that order (empty ones are skipped).
    pub fn concat(head: Bytes, middle: Bytes, tail: Bytes) -> Self {
        Self(Repr::Parts(Box::new(Parts {
            bufs: [head, middle, tail],
            next: 0,
        })))
    }

    /// The length in bytes of what is left to send.
    pub fn len(&self) -> usize {
        self.remaining().iter().map(Bytes::len).sum()
    }

    /// Whether nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.remaining().iter().all(Bytes::is_empty)
    }

    /// What is left to send as one buffer: shared when it is a single part, copied otherwise.
    /// For tests, logs and consumers that need contiguous bytes; the client sends the parts.
    pub fn to_bytes(&self) -> Bytes {
        let parts = self.remaining();
        let mut non_empty = parts.iter().filter(|b| !b.is_empty());
        match (non_empty.next(), non_empty.next()) {
            (None, _) => Bytes::new(),
            (Some(one), None) => one.clone(),
            _ => {
                let mut out = BytesMut::with_capacity(self.len());
                for b in parts {
                    out.extend_from_slice(b);
                }
                out.freeze()
            }
        }
    }

    /// The buffers left to send, in order (some may be empty).
    fn remaining(&self) -> &[Bytes] {
        match &self.0 {
            Repr::One(b) => std::slice::from_ref(b),
            Repr::Parts(p) => p.bufs.get(p.next..).unwrap_or_default(),
        }
    }
}

impl From<Bytes> for UpstreamBody {
    fn from(b: Bytes) -> Self {
        Self::new(b)
    }
}

impl From<Vec<u8>> for UpstreamBody {
    fn from(v: Vec<u8>) -> Self {
        Self::new(v)
    }
}

impl From<String> for UpstreamBody {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<&'static str> for UpstreamBody {
    fn from(s: &'static str) -> Self {
        Self::new(s)
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let data = match &mut self.get_mut().0 {
            Repr::One(b) => std::mem::take(b),
            Repr::Parts(p) => loop {
                let Some(buf) = p.bufs.get_mut(p.next) else {
                    break Bytes::new();
                };
                p.next += 1;
                if !buf.is_empty() {
                    break std::mem::take(buf);
                }
            },
        };
        if !data.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn frames(body: UpstreamBody) -> Vec<Bytes> {
        let mut body = std::pin::pin!(body);
        let mut out = Vec::new();
        while let Some(f) = body.frame().await {
            out.push(f.unwrap().into_data().unwrap());
        }
        out
    }

    #[tokio::test]
    async fn sends_the_parts_in_order_and_skips_empty_ones() {
        let head = Bytes::from_static(b"{\"a\":");
        let body = UpstreamBody::concat(head.clone(), Bytes::new(), Bytes::from_static(b"1}"));
        assert_eq!(body.len(), 7);
        assert_eq!(body.size_hint().exact(), Some(7));
        assert!(!body.is_end_stream());
        assert_eq!(body.to_bytes(), "{\"a\":1}");
        assert_eq!(frames(body).await, vec![head, Bytes::from_static(b"1}")]);
        let body = UpstreamBody::concat(Bytes::new(), "[]".into(), Bytes::new());
        assert_eq!(
            (body.len(), body.to_bytes()),
            (2, Bytes::from_static(b"[]"))
        );
        assert_eq!(frames(body).await, vec![Bytes::from_static(b"[]")]);
    }

    #[tokio::test]
    async fn the_middle_part_is_the_callers_buffer() {
        let client_body = Bytes::from_static(b"xx[1,2,3]yy");
        let middle = client_body.slice(2..9);
        let body = UpstreamBody::concat("[".into(), middle, "]".into());
        let sent = frames(body).await;
        assert_eq!(sent[1].as_ptr(), client_body[2..].as_ptr(), "not copied");
        assert_eq!(sent.concat(), b"[[1,2,3]]");
    }

    #[tokio::test]
    async fn an_empty_body_ends_at_once() {
        for body in [UpstreamBody::default(), UpstreamBody::new("")] {
            assert!(body.is_end_stream());
            assert_eq!(body.size_hint().exact(), Some(0));
            assert_eq!(body.to_bytes(), "");
            assert!(frames(body).await.is_empty());
        }
    }

    #[tokio::test]
    async fn length_and_end_follow_what_was_sent() {
        let mut body = UpstreamBody::concat("ab".into(), "".into(), "c".into());
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "ab");
        assert_eq!(body.len(), 1);
        assert_eq!(body.to_bytes(), "c");
        assert!(!body.is_end_stream());
        let _ = body.frame().await;
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }

    #[test]
    fn one_buffer_is_the_size_of_full_bytes() {
        assert_eq!(
            std::mem::size_of::<UpstreamBody>(),
            std::mem::size_of::<http_body_util::Full<Bytes>>()
        );
    }

    #[test]
    fn one_part_is_shared_not_copied() {
        let b = Bytes::from(vec![7u8; 64]);
        let body = UpstreamBody::new(b.clone());
        assert_eq!(body.to_bytes().as_ptr(), b.as_ptr());
    }
}
