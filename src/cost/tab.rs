//! Billing a request whose client went away: the [`BillingTab`].

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::Meter;
use crate::chat::Completion;
use crate::ext::ServedBy;
use crate::openai::{ChatCompletionChunk, ToolCallDelta, Usage};
use crate::ErrorKind;

/// The request's open tab: a request extension the
/// [`CostMeter`](super::CostMeter) inserts before calling the inner service.
///
/// When the client goes away before its answer was metered (the CostMeter's future or
/// [`MeteredStream`](super::MeteredStream) is dropped), the meter is left on the tab, and the
/// request is billed when the last clone of the tab is dropped. A layer below that keeps the
/// upstream call running after the client left (the response cache's single-flight, for the
/// requests that follow it) holds a clone and reports what it sees, so the caller is billed
/// the real usage. Without a report the request is billed an estimate: from the text
/// streamed, or, when it was abandoned before any answer, the reservation (the worst case the
/// request allowed; the upstream may have generated the whole answer).
///
/// Reports while the client is still there are ignored (the CostMeter meters the answer it
/// passes on), so a layer may report unconditionally; the response cache reports only after
/// its client left.
#[derive(Clone)]
pub struct BillingTab {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The meter, once its client went away.
    orphan: Option<Orphan>,
    /// What a layer below reported.
    served: Option<ServedBy>,
    usage: Option<Usage>,
    output_bytes: usize,
    answered: bool,
    error: Option<ErrorKind>,
}

/// A meter whose client went away, and what it had seen.
pub(super) struct Orphan {
    pub(super) meter: Meter,
    /// Output bytes the client received.
    pub(super) streamed_bytes: usize,
    pub(super) ttft: Option<Duration>,
    /// Whether the client had the answer's head (a stream was under way).
    pub(super) answered: bool,
}

impl fmt::Debug for BillingTab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("BillingTab")
            .field("abandoned", &st.orphan.is_some())
            .field("usage", &st.usage)
            .field("output_bytes", &st.output_bytes)
            .finish_non_exhaustive()
    }
}

impl BillingTab {
    pub(super) fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Leaves the meter of a client that went away on the tab: it is finished when the last
    /// clone of the tab is dropped.
    pub(super) fn adopt(&self, orphan: Orphan) {
        self.lock().orphan = Some(orphan);
    }

    /// Reports which target answered (its prices apply).
    pub fn served(&self, served: &ServedBy) {
        let mut st = self.lock();
        st.answered = true;
        st.served = Some(ServedBy {
            provider: served.provider.clone(),
            model: served.model.clone(),
            attempts: Vec::new(),
        });
    }

    /// Reports one chunk of the answer (its text for the estimate, its usage if any).
    pub fn chunk(&self, chunk: &ChatCompletionChunk) {
        let mut st = self.lock();
        st.answered = true;
        st.output_bytes += chunk_output_bytes(chunk);
        if let Some(u) = &chunk.usage {
            st.usage = Some(Usage::clone(u));
        }
    }

    /// Reports a whole answer.
    pub fn completion(&self, completion: &Completion) {
        let mut st = self.lock();
        st.answered = true;
        st.output_bytes += completion.output_bytes();
        if let Some(u) = completion.usage() {
            st.usage = Some(u.clone());
        }
    }

    /// Reports that the upstream call failed.
    pub fn failed(&self, kind: ErrorKind) {
        self.lock().error = Some(kind);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let st = std::mem::take(self.state.get_mut().unwrap_or_else(PoisonError::into_inner));
        let Some(orphan) = st.orphan else { return };
        let Orphan {
            mut meter,
            streamed_bytes,
            ttft,
            answered,
        } = orphan;
        if meter.served.is_none() {
            if let Some(s) = st.served {
                meter.set_served(s);
            }
        }
        if let Some(u) = st.usage {
            meter.finish(Some(u), false, ttft, None);
        } else if answered || st.answered {
            // What was generated, as far as anyone saw it.
            let usage = meter.estimate(streamed_bytes + st.output_bytes);
            meter.finish(Some(usage), true, ttft, st.error);
        } else if let Some(kind) = st.error {
            // The upstream failed before answering: nothing to bill, as for any failure.
            meter.finish(None, false, None, Some(kind));
        } else {
            // Gone before any answer, and nobody saw one: the upstream may run the whole
            // generation, so the caller pays the worst case the request allowed.
            let usage = meter.worst_case();
            meter.finish(Some(usage), true, None, None);
        }
    }
}

/// Output bytes of a chunk: text, reasoning and tool-call fragments.
#[inline]
pub(super) fn chunk_output_bytes(chunk: &ChatCompletionChunk) -> usize {
    chunk
        .choices
        .iter()
        .map(|c| {
            let d = &c.delta;
            d.content.as_ref().map_or(0, String::len)
                + d.reasoning.as_ref().map_or(0, String::len)
                + d.tool_calls.as_deref().map_or(0, tool_call_bytes)
        })
        .sum()
}

/// Streamed bytes of tool-call fragments (names and arguments).
fn tool_call_bytes(calls: &[ToolCallDelta]) -> usize {
    calls
        .iter()
        .filter_map(|t| t.function.as_ref())
        .map(|f| {
            f.arguments.as_ref().map_or(0, String::len) + f.name.as_ref().map_or(0, String::len)
        })
        .sum()
}
