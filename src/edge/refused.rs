//! The refused log: a record for every request the edge answers with an error that the
//! CostMeter did not record.
//!
//! The CostMeter records every request that reaches it (answers, upstream failures, cache
//! hits, clients that went away). A request can fail before it gets there: at the edge (body
//! too large → 413, too slow → 408, malformed → 400, over the edge's limits → 400, bad key →
//! 401) or in the typed layers above the meter (ClientKeys: allow-list → 403, rate limits →
//! 429; ModelResolve: unknown model → 404, invalid routing → 400), and the meter can refuse
//! it itself before its record exists (budget → 402, unpriced model for a budgeted key →
//! 403). The edge sends each of those to the CostMeter's sink as a [`CostRecord`] with the
//! error's kind, the requested model and the key's name when known, the ingress, the latency
//! and the generation id the client got in `x-generation-id`.
//!
//! Design: the edge shares the CostMeter's sink ([`GatewayBuilder::build`] hands the
//! [`CostMeterLayer`]'s sink to the edge layers, or
//! [`ChatCompletionsLayer::refused_sink`](super::ChatCompletionsLayer::refused_sink) for
//! hand-built stacks), and an [`Error`] the meter recorded is marked as such, so no request is
//! recorded twice. The sink takes the record on the request's task exactly as the meter's
//! records (the request log: `try_send` on its bounded queue). Without a sink nothing is kept;
//! with one, a request that succeeds costs a few reference counts and no allocation.
//!
//! A client without a valid key could otherwise write rows as fast as it can send requests:
//! records of refused requests with no known caller are limited to
//! [`ANONYMOUS_PER_SECOND`] a second for the whole process; the others are skipped and
//! counted in `switchboard_log_refused_skipped_total`. A caller known by its key keeps every
//! record (its rate limits and budgets bound it).
//!
//! [`GatewayBuilder::build`]: crate::GatewayBuilder::build
//! [`CostMeterLayer`]: crate::cost::CostMeterLayer

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use crate::chat::ChatHttpRequest;
use crate::cost::{CostRecord, CostSink};
use crate::ext::{CallerKey, GenerationId, Ingress};
use crate::keys::{ClientKeysLayer, PresentedKey};
use crate::openai::ChatRequest;
use crate::Error;

/// Where an edge sends the requests it refuses; see the [module docs](self). Cheap to clone
/// (one reference count, none without a sink).
#[derive(Clone, Default)]
pub(crate) struct RefusedLog(Option<Arc<Shared>>);

struct Shared {
    sink: Arc<dyn CostSink>,
    /// To name the caller of a key the edge matched.
    keys: Option<ClientKeysLayer>,
    /// Records without a caller in the current second: the second (Unix) in the high 32
    /// bits, the count in the low 32.
    anonymous: AtomicU64,
}

/// Records of refused requests without a known caller kept per second at most.
pub(crate) const ANONYMOUS_PER_SECOND: u32 = 100;

impl Shared {
    /// Whether one more record without a caller fits in this second's allowance.
    fn admit_anonymous(&self, now: SystemTime) -> bool {
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() & 0xffff_ffff);
        let mut seen = self.anonymous.load(Ordering::Relaxed);
        loop {
            let count = if seen >> 32 == second {
                seen & 0xffff_ffff
            } else {
                0
            };
            if count >= u64::from(ANONYMOUS_PER_SECOND) {
                metrics::counter!("switchboard_log_refused_skipped_total").increment(1);
                return false;
            }
            match self.anonymous.compare_exchange_weak(
                seen,
                second << 32 | (count + 1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now_seen) => seen = now_seen,
            }
        }
    }
}

impl std::fmt::Debug for RefusedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RefusedLog")
            .field(&self.0.is_some())
            .finish()
    }
}

impl RefusedLog {
    /// No sink: records nothing.
    pub(crate) const OFF: Self = Self(None);

    /// Records into `sink` (none: records nothing), naming callers from `keys`.
    pub(crate) fn new(sink: Option<Arc<dyn CostSink>>, keys: Option<&ClientKeysLayer>) -> Self {
        Self(sink.map(|sink| {
            Arc::new(Shared {
                sink,
                keys: keys.cloned(),
                anonymous: AtomicU64::new(0),
            })
        }))
    }

    /// The sink, if any.
    pub(crate) fn sink(&self) -> Option<Arc<dyn CostSink>> {
        self.0.as_ref().map(|s| s.sink.clone())
    }

    /// Starts watching a request (its URI and extensions before the edge moves them): `None`
    /// without a sink.
    pub(crate) fn watch(
        &self,
        uri: &http::Uri,
        extensions: &http::Extensions,
        presented: Option<&PresentedKey>,
        generation: &GenerationId,
    ) -> Option<Watch> {
        let shared = self.0.as_ref()?;
        Some(Watch {
            shared: shared.clone(),
            started: Instant::now(),
            ingress: extensions
                .get::<Ingress>()
                .copied()
                .unwrap_or_else(|| Ingress::from_path(uri.path()))
                .0,
            generation: generation.clone(),
            presented: presented.cloned(),
            caller: extensions.get::<CallerKey>().cloned(),
            request: None,
        })
    }

    /// Records a request refused before the edge started on it (the key check).
    pub(crate) fn refuse(
        &self,
        e: &Error,
        uri: &http::Uri,
        extensions: &http::Extensions,
        generation: &GenerationId,
    ) {
        if let Some(w) = self.watch(uri, extensions, None, generation) {
            w.refused(e);
        }
    }
}

/// What the edge knows of a request it may have to record as refused.
pub(crate) struct Watch {
    shared: Arc<Shared>,
    started: Instant,
    ingress: &'static str,
    generation: GenerationId,
    presented: Option<PresentedKey>,
    caller: Option<CallerKey>,
    /// The parsed request (its model), once there is one.
    request: Option<Arc<ChatRequest>>,
}

impl Watch {
    /// Notes the typed request (its model; a reference count, no copy).
    pub(crate) fn typed(&mut self, typed: &ChatHttpRequest) {
        self.request = Some(typed.body().clone());
    }

    /// Sends the record of a request that failed with `e`, unless the CostMeter recorded it.
    pub(crate) fn refused(&self, e: &Error) {
        if e.is_metered() {
            return;
        }
        let caller = self.caller.clone().or_else(|| {
            let keys = self.shared.keys.as_ref()?;
            keys.name_of(self.presented.as_ref()?).map(CallerKey)
        });
        let now = SystemTime::now();
        if caller.is_none() && !self.shared.admit_anonymous(now) {
            return;
        }
        let latency = self.started.elapsed();
        let request = self.request.as_deref();
        let record = CostRecord {
            caller,
            error: Some(e.kind()),
            latency,
            generation_id: Some(self.generation.0.clone()),
            created_at: now.checked_sub(latency).unwrap_or(now),
            requested: request
                .map(|r| r.model.as_str())
                .filter(|m| !m.is_empty())
                .map(Arc::from),
            ingress: Some(self.ingress),
            stream: request.is_some_and(ChatRequest::is_stream),
            user: request.and_then(|r| r.user.as_deref()).map(|u| {
                let mut end = u.len().min(256);
                while !u.is_char_boundary(end) {
                    end -= 1;
                }
                u[..end].to_owned()
            }),
            attempts: e.attempts().map(<[_]>::to_vec).unwrap_or_default(),
            ..CostRecord::default()
        };
        self.shared.sink.record_owned(record);
    }
}

/// [`Watch::refused`] when there is a watch.
pub(crate) fn note(watch: Option<&Watch>, e: &Error) {
    if let Some(w) = watch {
        w.refused(e);
    }
}

/// The stack's pending answer, boxed, recording its failure as refused when the CostMeter did
/// not (the keep-alive path, where the failure goes out in-band). One allocation either way.
pub(crate) fn watched<F>(pending: F, watch: Option<Watch>) -> super::events::Pending
where
    F: std::future::Future<Output = Result<crate::chat::ChatHttpResponse, Error>> + Send + 'static,
{
    match watch {
        None => Box::pin(pending),
        Some(w) => Box::pin(async move {
            let result = pending.await;
            if let Err(e) = &result {
                w.refused(e);
            }
            result
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn anonymous_records_are_limited_per_second() {
        let shared = Shared {
            sink: Arc::new(|_: &CostRecord| {}),
            keys: None,
            anonymous: AtomicU64::new(0),
        };
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let admitted = (0..3 * ANONYMOUS_PER_SECOND)
            .filter(|_| shared.admit_anonymous(t))
            .count();
        assert_eq!(admitted, ANONYMOUS_PER_SECOND as usize);
        // The next second has its own allowance.
        assert!(shared.admit_anonymous(t + Duration::from_secs(1)));
    }
}
