//! Recording answers as they pass, and sharing one upstream call between identical requests
//! (single-flight).
//!
//! A [`Flight`] is one upstream call in progress. Its leader (the request that made the call)
//! records into it: the response head when the inner future resolves, then each chunk, cloned
//! inline in [`RecordingStream::poll_next`] and folded into a [`ChunkAggregator`]. Followers
//! (identical requests that arrived meanwhile) read the recording by index and park a waker
//! in their own slot until the leader adds more; so a streaming follower gets each chunk as
//! soon as the leader does. The flight ends as complete (the [`CachedEntry`] is built and, if
//! eligible, stored), failed (the error reaches every follower) or truncated (no finish
//! reason).
//!
//! If the leader's client goes away before the answer is complete while followers wait, the
//! rest of the upstream answer is driven by a spawned task so the followers still get all of
//! it (and it is stored if eligible). The task ends, dropping the upstream call, as soon as
//! no follower waits any more, unless `finish_abandoned_within` lets it go on for the store
//! (bounded by that time and by `max_entry_bytes`); with no followers at the start the
//! upstream call is dropped at once under the same rule. The leader's caller is billed what
//! the upstream really used: the task reports it on the leader's
//! [`BillingTab`](crate::cost::BillingTab).

use std::collections::HashMap;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use futures_util::StreamExt;
use serde_json::Value;

use super::key::CacheKey;
use super::store::{CacheStore, CachedEntry, CachedServedBy};
use crate::chat::{ChatHttpResponse, ChatResponse, ChunkStream};
use crate::cost::BillingTab;
use crate::ext::{CacheStatus, ServedBy};
use crate::future::BoxFuture;
use crate::openai::{
    completion_to_chunks, new_completion_id, unix_now, ChatCompletion, ChatCompletionChunk,
    ChunkAggregator, FinishReason,
};
use crate::Error;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code holding these locks can panic halfway through an update that matters.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch, advancing with `tokio::time` (so tests can pause it),
/// anchored to the wall clock once when the layer is built.
#[derive(Debug)]
pub(crate) struct Clock {
    anchor: tokio::time::Instant,
    anchor_ms: u64,
}

impl Clock {
    pub(crate) fn new() -> Self {
        let anchor_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            anchor: tokio::time::Instant::now(),
            anchor_ms,
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.anchor.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.anchor_ms.saturating_add(elapsed)
    }
}

/// State shared by every clone of a layer: the store, the in-flight map, the clock.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn CacheStore>,
    pub(crate) inflight: Mutex<HashMap<CacheKey, Arc<Flight>>>,
    pub(crate) clock: Clock,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .field("in_flight", &lock(&self.inflight).len())
            .finish()
    }
}

/// What a request does after looking for an identical one in flight.
pub(crate) enum Role {
    /// Follow this flight.
    Follow(Follower),
    /// Make the upstream call and record it into this new flight.
    Lead(Arc<Flight>),
}

impl Shared {
    /// Joins the flight for `key`, if one is in progress.
    pub(crate) fn join(&self, key: CacheKey) -> Option<Follower> {
        let map = lock(&self.inflight);
        map.get(&key).map(|f| Follower::new(f.clone()))
    }

    /// Joins the flight for `key`, or starts one. With `fresh`, always starts a new one (and
    /// later arrivals join that one).
    pub(crate) fn join_or_lead(&self, key: CacheKey, fresh: bool) -> Role {
        let mut map = lock(&self.inflight);
        if !fresh {
            if let Some(f) = map.get(&key) {
                return Role::Follow(Follower::new(f.clone()));
            }
        }
        let flight = Arc::new(Flight::new());
        map.insert(key, flight.clone());
        Role::Lead(flight)
    }

    /// Forgets `flight` (if it is still the one for `key`): later arrivals look in the store.
    fn remove(&self, key: CacheKey, flight: &Arc<Flight>) {
        let mut map = lock(&self.inflight);
        if map.get(&key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            map.remove(&key);
        }
    }

    /// Number of flights in progress (tests, debugging).
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.inflight).len()
    }
}

/// One upstream call in progress and its recording.
pub(crate) struct Flight {
    state: Mutex<State>,
}

struct State {
    head: Head,
    /// Chunks so far (moved into the entry when the answer completes).
    chunks: Vec<ChatCompletionChunk>,
    agg: ChunkAggregator,
    end: Option<End>,
    /// Still buffering chunks (stops when the recording cannot be stored and nobody follows).
    recording: bool,
    /// Still eligible for the store.
    storable: bool,
    bytes: usize,
    followers: usize,
    wakers: Vec<Option<Waker>>,
    free_slots: Vec<usize>,
    /// The task finishing an abandoned leader's call, woken when the last follower leaves.
    continuation: Option<Waker>,
}

enum Head {
    Pending,
    Ready(http::response::Parts),
}

enum End {
    Complete(Arc<CachedEntry>),
    Failed(Error),
    Truncated,
}

impl Flight {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                head: Head::Pending,
                chunks: Vec::new(),
                agg: ChunkAggregator::new(),
                end: None,
                recording: true,
                storable: true,
                bytes: 0,
                followers: 0,
                wakers: Vec::new(),
                free_slots: Vec::new(),
                continuation: None,
            }),
        }
    }

    fn add_follower(&self) -> usize {
        let mut st = lock(&self.state);
        st.followers += 1;
        match st.free_slots.pop() {
            Some(slot) => slot,
            None => {
                st.wakers.push(None);
                st.wakers.len() - 1
            }
        }
    }

    fn remove_follower(&self, slot: usize) {
        let mut st = lock(&self.state);
        st.followers = st.followers.saturating_sub(1);
        if let Some(w) = st.wakers.get_mut(slot) {
            *w = None;
            st.free_slots.push(slot);
        }
        let last = match st.followers {
            0 => st.continuation.take(),
            _ => None,
        };
        drop(st);
        if let Some(w) = last {
            w.wake();
        }
    }

    fn poll_head(
        &self,
        slot: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<http::response::Parts, Error>> {
        let mut st = lock(&self.state);
        if let Head::Ready(parts) = &st.head {
            return Poll::Ready(Ok(parts.clone()));
        }
        if let Some(End::Failed(e)) = &st.end {
            return Poll::Ready(Err(e.clone()));
        }
        st.park(slot, cx);
        Poll::Pending
    }

    fn poll_completion(
        &self,
        slot: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<ChatCompletion, Error>> {
        let mut st = lock(&self.state);
        match &st.end {
            Some(End::Complete(entry)) => Poll::Ready(Ok(entry.completion.clone())),
            Some(End::Failed(e)) => Poll::Ready(Err(e.clone())),
            Some(End::Truncated) => Poll::Ready(Err(Error::upstream(
                "the upstream stream ended before the answer was complete",
            ))),
            None => {
                st.park(slot, cx);
                Poll::Pending
            }
        }
    }

    fn poll_chunk(
        &self,
        slot: usize,
        index: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<ChatCompletionChunk, Error>>> {
        let mut st = lock(&self.state);
        let chunk = match &st.end {
            Some(End::Complete(entry)) => entry.chunks.get(index),
            _ => st.chunks.get(index),
        };
        if let Some(c) = chunk {
            return Poll::Ready(Some(Ok(c.clone())));
        }
        match &st.end {
            Some(End::Complete(_) | End::Truncated) => Poll::Ready(None),
            Some(End::Failed(e)) => Poll::Ready(Some(Err(e.clone()))),
            None => {
                st.park(slot, cx);
                Poll::Pending
            }
        }
    }

    fn set_head(&self, parts: http::response::Parts) {
        let mut st = lock(&self.state);
        st.head = Head::Ready(parts);
        st.wake_all();
    }

    fn fail(&self, e: Error) {
        let mut st = lock(&self.state);
        if st.end.is_none() {
            st.end = Some(End::Failed(e));
        }
        st.storable = false;
        st.wake_all();
    }
}

impl State {
    fn park(&mut self, slot: usize, cx: &mut Context<'_>) {
        if let Some(w) = self.wakers.get_mut(slot) {
            match w {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        }
    }

    fn wake_all(&mut self) {
        for w in &mut self.wakers {
            if let Some(w) = w.take() {
                w.wake();
            }
        }
    }

    fn stop_recording(&mut self) {
        self.recording = false;
        self.storable = false;
        self.chunks = Vec::new();
        self.agg = ChunkAggregator::new();
    }
}

/// A request following a flight. Leaves it on drop.
pub(crate) struct Follower {
    flight: Arc<Flight>,
    slot: usize,
}

impl Follower {
    fn new(flight: Arc<Flight>) -> Self {
        let slot = flight.add_follower();
        Self { flight, slot }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.flight.remove_follower(self.slot);
    }
}

/// Answers a follower: the leader's head (marked [`CacheStatus::Hit`]; the leader pays), then
/// either a completion once the answer is complete, or a stream that follows the recording
/// live. Both carry a fresh `id` and `created`.
pub(crate) async fn follow(f: Follower, want_stream: bool) -> Result<ChatHttpResponse, Error> {
    let mut parts = std::future::poll_fn(|cx| f.flight.poll_head(f.slot, cx)).await?;
    parts.extensions.insert(CacheStatus::Hit);
    let body = if want_stream {
        ChatResponse::stream(FollowStream {
            follower: f,
            next: 0,
            id: new_completion_id(),
            created: unix_now(),
            done: false,
        })
    } else {
        let mut c = std::future::poll_fn(|cx| f.flight.poll_completion(f.slot, cx)).await?;
        c.id = new_completion_id();
        c.created = unix_now();
        ChatResponse::from(c)
    };
    Ok(http::Response::from_parts(parts, body))
}

/// A follower's stream: the flight's chunks by index, as the leader records them.
struct FollowStream {
    follower: Follower,
    next: usize,
    id: String,
    created: u64,
    done: bool,
}

impl Stream for FollowStream {
    type Item = Result<ChatCompletionChunk, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let item = ready!(this
            .follower
            .flight
            .poll_chunk(this.follower.slot, this.next, cx));
        match item {
            Some(Ok(mut c)) => {
                this.next += 1;
                c.id.clone_from(&this.id);
                c.created = this.created;
                Poll::Ready(Some(Ok(c)))
            }
            Some(Err(e)) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.done = true;
                Poll::Ready(None)
            }
        }
    }
}

/// The leader's side of a flight.
pub(crate) struct Lead {
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: CacheKey,
    pub(crate) flight: Arc<Flight>,
    /// TTL for the new entry (zero: do not store).
    pub(crate) ttl: Duration,
    pub(crate) max_entry_bytes: usize,
    pub(crate) served_by: Option<CachedServedBy>,
    /// The leader's [`BillingTab`]: told what the upstream really used when the call goes on
    /// after the leader's client left.
    pub(crate) tab: Option<BillingTab>,
    /// How long an abandoned call nobody follows may go on for the store.
    pub(crate) finish_within: Duration,
}

impl Lead {
    /// Publishes the inner service's answer to the followers and returns the leader's
    /// response (a stream wrapped in a [`RecordingStream`]), marked [`CacheStatus::Miss`].
    fn on_response(
        mut self,
        res: Result<ChatHttpResponse, Error>,
    ) -> Result<ChatHttpResponse, Error> {
        let resp = match res {
            Ok(r) => r,
            Err(e) => {
                self.fail(e.clone());
                return Err(e);
            }
        };
        let (mut parts, body) = resp.into_parts();
        self.served_by = parts.extensions.get::<ServedBy>().map(|s| CachedServedBy {
            provider: s.provider.clone(),
            model: s.model.clone(),
        });
        self.flight.set_head(parts.clone());
        parts.extensions.insert(CacheStatus::Miss);
        let body = match body {
            // Entries are typed (hits replay as a completion or as chunks): a pass-through is
            // parsed once, on the miss.
            ChatResponse::Complete(c) => {
                match c.to_typed() {
                    Ok(typed) => self.finish_complete(typed),
                    Err(e) => self.fail(e),
                }
                ChatResponse::Complete(c)
            }
            ChatResponse::Stream(s) => ChatResponse::stream(RecordingStream {
                inner: Some(s),
                lead: Some(self),
            }),
        };
        Ok(http::Response::from_parts(parts, body))
    }

    /// Forgets the flight first (so no later arrival joins a failed call), then fails it.
    fn fail(self, e: Error) {
        self.shared.remove(self.key, &self.flight);
        self.flight.fail(e);
    }

    fn finish_complete(self, c: ChatCompletion) {
        let chunks = completion_to_chunks(&c);
        let size =
            chunks.iter().map(approx_chunk_bytes).sum::<usize>() + approx_completion_bytes(&c);
        let success = !c.choices.is_empty()
            && c.choices
                .iter()
                .all(|ch| ch.finish_reason.is_some_and(|r| r != FinishReason::Error));
        let entry = self.entry(chunks, c, size);
        let storable = success && size <= self.max_entry_bytes;
        {
            let mut st = lock(&self.flight.state);
            st.end = Some(End::Complete(entry.clone()));
            st.wake_all();
        }
        self.publish(entry, storable);
    }

    fn entry(
        &self,
        chunks: Vec<ChatCompletionChunk>,
        completion: ChatCompletion,
        size: usize,
    ) -> Arc<CachedEntry> {
        let now = self.shared.clock.now_ms();
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        Arc::new(CachedEntry {
            chunks,
            completion,
            stored_at_ms: now,
            expires_at_ms: now.saturating_add(ttl_ms),
            served_by: self.served_by.clone(),
            size_bytes: size,
            rendered: Default::default(),
        })
    }

    /// Stores the entry when eligible, then forgets the flight. Until the store has it, the
    /// finished flight stays joinable, so no identical request misses in between.
    fn publish(self, entry: Arc<CachedEntry>, storable: bool) {
        if storable && !self.ttl.is_zero() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = self.shared.store.put(self.key, entry, self.ttl).await {
                        tracing::warn!(error = %e, "response cache store failed");
                    }
                    self.shared.remove(self.key, &self.flight);
                });
                return;
            }
        }
        self.shared.remove(self.key, &self.flight);
    }

    /// Records one chunk. Returns false when recording stopped (nothing left to do).
    fn record(&self, chunk: &ChatCompletionChunk) -> bool {
        let mut st = lock(&self.flight.state);
        if !st.recording {
            return false;
        }
        if !st.storable && st.followers == 0 {
            // Over the size limit and nobody follows (none can join any more).
            st.stop_recording();
            return false;
        }
        st.bytes += approx_chunk_bytes(chunk);
        st.agg.push(chunk);
        st.chunks.push(chunk.clone());
        st.wake_all();
        if st.storable && st.bytes > self.max_entry_bytes {
            st.storable = false;
            drop(st);
            // No new followers from now on; current ones keep reading the recording.
            self.shared.remove(self.key, &self.flight);
            let mut st = lock(&self.flight.state);
            if st.followers == 0 {
                st.stop_recording();
                return false;
            }
        }
        true
    }

    /// The stream ended without an error item.
    fn finish_stream(self) {
        let mut st = lock(&self.flight.state);
        if !st.recording {
            drop(st);
            self.shared.remove(self.key, &self.flight);
            return;
        }
        if !st.agg.is_complete() {
            // Forget the flight before ending it, so no later arrival joins a broken answer.
            drop(st);
            self.shared.remove(self.key, &self.flight);
            let mut st = lock(&self.flight.state);
            st.end = Some(End::Truncated);
            st.wake_all();
            return;
        }
        let success = st.agg.is_success();
        let completion = mem::take(&mut st.agg).finish();
        let chunks = mem::take(&mut st.chunks);
        let size = st.bytes + approx_completion_bytes(&completion);
        let storable = st.storable && success && size <= self.max_entry_bytes;
        let entry = self.entry(chunks, completion, size);
        st.end = Some(End::Complete(entry.clone()));
        st.wake_all();
        drop(st);
        self.publish(entry, storable);
    }

    /// The leader's client went away before the answer was complete. The rest of the
    /// upstream answer is driven by a spawned task while followers wait for it, or, with
    /// `finish_within`, for the store as long as the entry stays storable and that time has
    /// not passed; else (and as soon as that stops being so) the upstream call is dropped and
    /// nothing is stored.
    fn leader_gone(self, rest: BoxFuture<'static, ()>) {
        let map = lock(&self.shared.inflight);
        let for_store = !self.finish_within.is_zero() && !self.ttl.is_zero();
        let wanted = {
            let st = lock(&self.flight.state);
            st.followers > 0 || (for_store && st.storable)
        };
        if wanted {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                drop(map);
                rt.spawn(Continuation {
                    rest,
                    flight: self.flight.clone(),
                    deadline: for_store.then(|| Box::pin(tokio::time::sleep(self.finish_within))),
                });
                return;
            }
        }
        // Nobody can join while we hold the map: forget the flight and fail it.
        let mut map = map;
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
        drop(map);
        drop(rest);
        self.flight.fail(Error::upstream(
            "the request fetching this answer was cancelled",
        ));
    }
}

/// An abandoned leader's call, driven on while it is wanted: while followers wait, or (with a
/// `deadline`) for the store until then, as long as the entry stays storable. Once unwanted
/// it ends, dropping the upstream call (the flight fails through its [`Abandon`] guard).
struct Continuation {
    rest: BoxFuture<'static, ()>,
    flight: Arc<Flight>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Future for Continuation {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.rest.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        {
            let mut st = lock(&this.flight.state);
            st.continuation = Some(cx.waker().clone());
            if st.followers > 0 {
                return Poll::Pending;
            }
            if this.deadline.is_none() || !st.storable {
                return Poll::Ready(());
            }
        }
        match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Pending) => Poll::Pending,
            _ => Poll::Ready(()),
        }
    }
}

/// Fails and forgets a flight if the task finishing it is dropped before it is done (say, at
/// runtime shutdown), so followers never wait forever.
struct Abandon {
    shared: Arc<Shared>,
    key: CacheKey,
    flight: Arc<Flight>,
    armed: bool,
}

impl Abandon {
    fn new(lead: &Lead) -> Self {
        Self {
            shared: lead.shared.clone(),
            key: lead.key,
            flight: lead.flight.clone(),
            armed: true,
        }
    }
}

impl Abandon {
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if self.armed {
            self.shared.remove(self.key, &self.flight);
            self.flight.fail(Error::upstream(
                "the request fetching this answer was cancelled",
            ));
        }
    }
}

/// The leader's wait for the inner service. If dropped before the inner future resolved, the
/// call is handed to a spawned task when followers wait for it.
pub(crate) struct PendingLead {
    fut: Option<BoxFuture<'static, Result<ChatHttpResponse, Error>>>,
    lead: Option<Lead>,
}

impl PendingLead {
    pub(crate) fn new(
        fut: BoxFuture<'static, Result<ChatHttpResponse, Error>>,
        lead: Lead,
    ) -> Self {
        Self {
            fut: Some(fut),
            lead: Some(lead),
        }
    }
}

impl Future for PendingLead {
    type Output = Result<ChatHttpResponse, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(fut) = this.fut.as_mut() else {
            return Poll::Ready(Err(Error::upstream(
                "response cache polled after completion",
            )));
        };
        let res = ready!(fut.as_mut().poll(cx));
        this.fut = None;
        match this.lead.take() {
            Some(lead) => Poll::Ready(lead.on_response(res)),
            None => Poll::Ready(res),
        }
    }
}

impl Drop for PendingLead {
    fn drop(&mut self) {
        if let (Some(fut), Some(lead)) = (self.fut.take(), self.lead.take()) {
            // The continuation needs a lead of its own; the one handed over decides.
            let flight = lead.flight.clone();
            let shared = lead.shared.clone();
            let key = lead.key;
            let (ttl, max_entry_bytes) = (lead.ttl, lead.max_entry_bytes);
            let (tab, finish_within) = (lead.tab.clone(), lead.finish_within);
            let mut guard = Abandon::new(&lead);
            let rest: BoxFuture<'static, ()> = Box::pin(async move {
                let lead = Lead {
                    shared,
                    key,
                    flight,
                    ttl,
                    max_entry_bytes,
                    served_by: None,
                    tab: tab.clone(),
                    finish_within,
                };
                let res = fut.await;
                // The leader's client is gone: its tab hears what the upstream really used.
                if let Some(tab) = &tab {
                    match &res {
                        Ok(r) => {
                            if let Some(s) = r.extensions().get::<ServedBy>() {
                                tab.served(s);
                            }
                        }
                        Err(e) => tab.failed(e.kind()),
                    }
                }
                if let Ok(resp) = lead.on_response(res) {
                    match resp.into_body() {
                        ChatResponse::Stream(mut s) => drain(&mut s, tab.as_ref()).await,
                        ChatResponse::Complete(c) => {
                            if let Some(tab) = &tab {
                                tab.completion(&c);
                            }
                        }
                    }
                }
                guard.disarm();
            });
            lead.leader_gone(rest);
        }
    }
}

/// Reads the rest of an abandoned leader's stream (recording it for the followers), telling
/// the leader's tab what passes.
async fn drain<S>(s: &mut S, tab: Option<&BillingTab>)
where
    S: Stream<Item = Result<ChatCompletionChunk, Error>> + Unpin,
{
    while let Some(item) = s.next().await {
        match item {
            Ok(chunk) => {
                if let Some(tab) = tab {
                    tab.chunk(&chunk);
                }
            }
            Err(e) => {
                if let Some(tab) = tab {
                    tab.failed(e.kind());
                }
                break;
            }
        }
    }
}

/// The leader's stream: passes every item through unchanged and records it into the flight
/// inline (a clone per chunk, no task, no channel).
pub(crate) struct RecordingStream {
    inner: Option<ChunkStream>,
    lead: Option<Lead>,
}

impl Stream for RecordingStream {
    type Item = Result<ChatCompletionChunk, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let item = ready!(inner.as_mut().poll_next(cx));
        match &item {
            Some(Ok(chunk)) => {
                if let Some(lead) = &this.lead {
                    if !lead.record(chunk) {
                        this.lead = None;
                    }
                }
            }
            Some(Err(e)) => {
                if let Some(lead) = this.lead.take() {
                    lead.fail(e.clone());
                }
            }
            None => {
                this.inner = None;
                if let Some(lead) = this.lead.take() {
                    lead.finish_stream();
                }
            }
        }
        Poll::Ready(item)
    }
}

impl Drop for RecordingStream {
    fn drop(&mut self) {
        if let (Some(lead), Some(inner)) = (self.lead.take(), self.inner.take()) {
            let flight = lead.flight.clone();
            let shared = lead.shared.clone();
            let key = lead.key;
            let (ttl, max_entry_bytes) = (lead.ttl, lead.max_entry_bytes);
            let served_by = lead.served_by.clone();
            let (tab, finish_within) = (lead.tab.clone(), lead.finish_within);
            let mut guard = Abandon::new(&lead);
            let rest: BoxFuture<'static, ()> = Box::pin(async move {
                let mut rec = Self {
                    inner: Some(inner),
                    lead: Some(Lead {
                        shared,
                        key,
                        flight,
                        ttl,
                        max_entry_bytes,
                        served_by,
                        tab: tab.clone(),
                        finish_within,
                    }),
                };
                drain(&mut rec, tab.as_ref()).await;
                drop(rec);
                guard.disarm();
            });
            lead.leader_gone(rest);
        }
    }
}

/// Approximate in-memory size of a chunk: its strings plus fixed overheads.
pub(crate) fn approx_chunk_bytes(c: &ChatCompletionChunk) -> usize {
    let mut n = 96
        + c.id.len()
        + c.model.len()
        + opt_len(c.system_fingerprint.as_deref())
        + opt_len(c.provider.as_deref());
    if c.usage.is_some() {
        n += 96;
    }
    if let Some(e) = &c.error {
        n += 64 + e.message.len();
    }
    for ch in &c.choices {
        let d = &ch.delta;
        n += 48
            + opt_len(d.role.as_deref())
            + opt_len(d.content.as_deref())
            + opt_len(d.reasoning.as_deref())
            + opt_len(d.refusal.as_deref())
            + opt_len(ch.native_finish_reason.as_deref())
            + d.reasoning_details
                .iter()
                .flatten()
                .map(approx_value_bytes)
                .sum::<usize>()
            + ch.logprobs.as_ref().map_or(0, approx_value_bytes);
        for t in d.tool_calls.iter().flatten() {
            n += 32 + opt_len(t.id.as_deref()) + opt_len(t.kind.as_deref());
            if let Some(f) = &t.function {
                n += opt_len(f.name.as_deref()) + opt_len(f.arguments.as_deref());
            }
        }
    }
    n
}

/// Approximate in-memory size of a completion.
pub(crate) fn approx_completion_bytes(c: &ChatCompletion) -> usize {
    let mut n = 128
        + c.id.len()
        + c.model.len()
        + opt_len(c.system_fingerprint.as_deref())
        + opt_len(c.provider.as_deref());
    for ch in &c.choices {
        let m = &ch.message;
        n += 64
            + opt_len(m.content.as_deref())
            + opt_len(m.reasoning.as_deref())
            + opt_len(m.refusal.as_deref())
            + opt_len(ch.native_finish_reason.as_deref())
            + m.reasoning_details
                .iter()
                .flatten()
                .map(approx_value_bytes)
                .sum::<usize>()
            + m.annotations.as_ref().map_or(0, approx_value_bytes)
            + ch.logprobs.as_ref().map_or(0, approx_value_bytes);
        for t in m.tool_calls.iter().flatten() {
            n +=
                48 + t.id.len() + t.kind.len() + t.function.name.len() + t.function.arguments.len();
        }
    }
    n
}

fn opt_len(s: Option<&str>) -> usize {
    s.map_or(0, str::len)
}

fn approx_value_bytes(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 16,
        Value::String(s) => 24 + s.len(),
        Value::Array(a) => 24 + a.iter().map(approx_value_bytes).sum::<usize>(),
        Value::Object(o) => {
            32 + o
                .iter()
                .map(|(k, v)| 24 + k.len() + approx_value_bytes(v))
                .sum::<usize>()
        }
    }
}
