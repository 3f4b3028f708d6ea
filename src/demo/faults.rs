//! Faults a demo server can be told to inject, at run time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A failure the demo server injects into a response.
///
/// Faults are taken before the request is authenticated or validated, so they hit every
/// request alike. Those that shape the body ([`Truncated`](Self::Truncated),
/// [`DropMidStream`](Self::DropMidStream), …) shape whatever the request would have got.
/// "Chunks" are SSE events for streaming requests; a non-streaming answer is one chunk whose
/// first half is sent before a mid-body fault strikes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status and the provider's real error body for it (429, 500, 502, 503,
    /// 529 for Anthropic's `overloaded_error`, …). The second field is a retry delay in
    /// seconds: sent as `Retry-After` by OpenAI and Anthropic, and as a `RetryInfo` detail
    /// (`"retryDelay": "Ns"`) in the body by Gemini, as the real APIs do.
    Status(u16, Option<u64>),
    /// `200 OK` with a body that is not JSON (nor SSE).
    Garbage,
    /// `200 OK` with the answer cut in the middle of its JSON (for streams: after half the
    /// events, in the middle of the next one), then a clean end of body.
    Truncated,
    /// Never answer (until the client gives up or the server shuts down).
    Hang,
    /// Close the connection without answering (HTTP/2: reset the stream).
    DropBeforeHeaders,
    /// Send the headers and `after_chunks` events (never the end marker), then cut the
    /// connection.
    DropMidStream {
        /// Events sent before the cut.
        after_chunks: usize,
    },
    /// Send the headers and `after_chunks` events (never the end marker), then send nothing
    /// more while keeping the connection open.
    StallMidStream {
        /// Events sent before the stall.
        after_chunks: usize,
    },
    /// End the stream cleanly at the HTTP level but without the provider's end marker
    /// (OpenAI `data: [DONE]`, Anthropic `message_stop`, Gemini's final chunk with
    /// `finishReason`). No effect on a non-streaming answer.
    NoDone,
    /// Send an SSE event whose data is broken JSON as the second event, then go on. A
    /// non-streaming answer is [`Truncated`](Self::Truncated) instead.
    MalformedEvent,
    /// A valid `200 OK` answer whose body is this many bytes (the answer text is padded).
    Huge(usize),
    /// Send the headers at once but wait this long before the first byte of the body.
    SlowFirstByte(Duration),
}

impl Fault {
    /// [`Fault::Status`] without a retry delay.
    pub const fn status(code: u16) -> Self {
        Self::Status(code, None)
    }
}

/// A cloneable handle to a demo server's faults: one persistent fault and a queue of one-shot
/// faults. Each request takes the next queued fault if there is one, otherwise the persistent
/// fault, otherwise none.
///
/// ```
/// # use switchboard::demo::{Fault, Faults};
/// let faults = Faults::default();
/// faults.push(Fault::status(429));
/// faults.push(Fault::status(503));
/// assert_eq!(faults.queued(), 2);
/// faults.clear();
/// assert_eq!(faults.queued(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    persistent: Option<Fault>,
    queue: VecDeque<Fault>,
}

impl Faults {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Injects `fault` into every request until [`clear`](Self::clear) or
    /// [`set_persistent(None)`](Self::set_persistent).
    pub fn set(&self, fault: Fault) {
        self.state().persistent = Some(fault);
    }

    /// Sets or removes the persistent fault.
    pub fn set_persistent(&self, fault: Option<Fault>) {
        self.state().persistent = fault;
    }

    /// Queues a one-shot fault for a coming request.
    pub fn push(&self, fault: Fault) {
        self.state().queue.push_back(fault);
    }

    /// Queues several one-shot faults, in order.
    pub fn extend(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state().queue.extend(faults);
    }

    /// Removes the persistent fault and every queued one.
    pub fn clear(&self) {
        let mut s = self.state();
        s.persistent = None;
        s.queue.clear();
    }

    /// Queued one-shot faults not yet taken.
    pub fn queued(&self) -> usize {
        self.state().queue.len()
    }

    /// The fault for the next request.
    pub(super) fn take(&self) -> Option<Fault> {
        let mut s = self.state();
        s.queue.pop_front().or_else(|| s.persistent.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_first_then_persistent() {
        let f = Faults::default();
        assert_eq!(f.take(), None);
        f.set(Fault::Garbage);
        f.extend([Fault::status(429), Fault::Hang]);
        assert_eq!(f.take(), Some(Fault::Status(429, None)));
        let shared = f.clone();
        assert_eq!(shared.take(), Some(Fault::Hang));
        assert_eq!(f.queued(), 0);
        assert_eq!(f.take(), Some(Fault::Garbage));
        assert_eq!(f.take(), Some(Fault::Garbage));
        f.set_persistent(None);
        assert_eq!(f.take(), None);
    }
}
