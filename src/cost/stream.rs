use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

use super::tab::{chunk_output_bytes, BillingTab, Orphan};
use super::Meter;
use crate::chat::ChunkStream;
use crate::openai::{ChatCompletionChunk, Usage};
use crate::{Error, ErrorKind};

/// Meters a chunk stream inline: time to first token, the usage chunk (priced in place) and
/// the streamed text; records once at the end, or on drop when the client hung up.
pub struct MeteredStream {
    inner: ChunkStream,
    meter: Option<Meter>,
    ttft: Option<Duration>,
    usage: Option<Usage>,
    streamed_bytes: usize,
    error: Option<ErrorKind>,
    /// Where the meter goes when the client hangs up before the usage chunk.
    tab: Option<BillingTab>,
}

impl fmt::Debug for MeteredStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteredStream")
            .field("ttft", &self.ttft)
            .field("usage", &self.usage)
            .finish_non_exhaustive()
    }
}

impl MeteredStream {
    pub(crate) fn new(inner: ChunkStream, meter: Meter, tab: Option<BillingTab>) -> Self {
        Self {
            inner,
            meter: Some(meter),
            ttft: None,
            usage: None,
            streamed_bytes: 0,
            error: None,
            tab,
        }
    }

    /// The per-chunk work, kept small: everything that happens once per stream (first output,
    /// the usage chunk, the end) is out of line.
    #[inline]
    fn observe(&mut self, chunk: &mut ChatCompletionChunk) {
        if self.ttft.is_none() {
            self.first_output(chunk);
        }
        if let Some(meter) = self.meter.as_mut() {
            if let Some(g) = &meter.generation {
                if chunk.id != *g.0 {
                    chunk.id.clear();
                    chunk.id.push_str(&g.0);
                }
            }
            if let Some(d) = meter.details.as_deref_mut() {
                d.observe(chunk);
            }
        }
        self.streamed_bytes += chunk_output_bytes(chunk);
        if let Some(u) = chunk.usage.as_mut() {
            self.priced(u);
        }
    }

    /// Time to first token, on the first chunk with output.
    #[cold]
    #[inline(never)]
    fn first_output(&mut self, chunk: &ChatCompletionChunk) {
        if let Some(meter) = &self.meter {
            if chunk.has_output() {
                self.ttft = Some(meter.started.elapsed());
            }
        }
    }

    /// Prices the usage chunk in place and keeps its usage for the record.
    #[cold]
    #[inline(never)]
    fn priced(&mut self, u: &mut Usage) {
        if let Some(meter) = &self.meter {
            meter.annotate(u);
            self.usage = Some(Usage::clone(u));
        }
    }

    #[cold]
    #[inline(never)]
    fn finish(&mut self) {
        if let Some(meter) = self.meter.take() {
            let (usage, estimated) = match self.usage.take() {
                Some(u) => (Some(u), false),
                None if self.streamed_bytes > 0 || self.error.is_none() => {
                    (Some(meter.estimate(self.streamed_bytes)), true)
                }
                None => (None, false),
            };
            meter.finish(usage, estimated, self.ttft, self.error);
        }
    }
}

impl Stream for MeteredStream {
    type Item = Result<ChatCompletionChunk, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut poll = this.inner.as_mut().poll_next(cx);
        // Looked at in place and returned from where the inner stream put it: one move of the
        // item (a chunk is moved with a `memcpy` call), where `ready!` and a rewrap made two.
        match &mut poll {
            Poll::Pending => {}
            Poll::Ready(Some(Ok(chunk))) => {
                if this.meter.is_some() {
                    this.observe(chunk);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                this.error = Some(e.kind());
                this.finish();
            }
            Poll::Ready(None) => this.finish(),
        }
        poll
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        // The client hung up before the end. Without the usage chunk the meter stays on the
        // tab: a layer below that finishes the upstream answer anyway (for the requests that
        // follow it) reports the real usage there; else it is billed from what streamed.
        if let Some(meter) = self.meter.as_mut() {
            meter.cancelled = true;
        }
        if self.usage.is_none() {
            if let (Some(meter), Some(tab)) = (self.meter.take(), self.tab.take()) {
                tab.adopt(Orphan {
                    meter,
                    streamed_bytes: self.streamed_bytes,
                    ttft: self.ttft,
                    answered: true,
                });
                return;
            }
        }
        self.finish();
    }
}
