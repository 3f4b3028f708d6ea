//! The request log: one row per request in a database (a SQLite file, or PostgreSQL shared by
//! several instances), its HTTP API (`/api/v1/generation`, `/api/v1/generations`,
//! `/api/v1/feedback`, `/api/v1/stats`, `/api/v1/shadow/compare`), a [dashboard](mod@dashboard) page
//! over that API, and a query API for embedders (cargo feature
//! `log-db`, part of `server`).
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), switchboard::Error> {
//! use switchboard::cost::CostMeterLayer;
//! use switchboard::request_log::{ApiAccess, LogOptions, RequestLog};
//!
//! let log = RequestLog::open("sqlite://requests.db", LogOptions::default()).await?;
//! // Every request that goes through the CostMeter becomes a row…
//! let meter = CostMeterLayer::new().sink(log.clone());
//! // …readable through the API, mounted beside the gateway's routes.
//! let api: axum::Router = log.router(ApiAccess::new().admin_key("an-admin-key"));
//! # let _ = (meter, api);
//! log.flush(std::time::Duration::from_secs(5)).await; // at shutdown
//! # Ok(())
//! # }
//! ```
//!
//! # Off the request path
//! [`RequestLog`] is a [`CostSink`]: the CostMeter hands it each request's [`CostRecord`]
//! (with the generation id, the key's name — never the key —, the requested and served
//! models, every attempt, tokens, cost, latencies, cache status, task, user and ingress), and
//! it puts the record on a bounded queue ([`LogOptions::queue`] rows) with `try_send`. A
//! writer task takes up to 256 rows at a time and writes them in one transaction; after the
//! first row of a batch it sleeps up to 200 ms while more gather (a row does not wake it; a
//! flush, or a batch's worth of rows waiting, does), so rows are readable through the API
//! well within a second and a busy gateway writes few, large transactions. A slow or
//! unreachable database never delays or fails a request: when the queue is full the row is
//! dropped, counted in `switchboard_log_dropped_total` (and [`RequestLog::dropped`]) and
//! logged at most once every 10 seconds; a batch the database refuses is dropped and counted
//! the same way, and the writer tries again with the next batch. [`RequestLog::flush`] waits
//! for the rows queued so far (the ready gateway calls it at shutdown).
//!
//! # Schema and migrations
//! One schema for both databases (`migrations/*.sql`, portable SQL, applied in order at
//! start and recorded in `switchboard_migrations`). SQLite files are opened in WAL mode.
//! Rows older than [`LogOptions::retention_days`] are pruned at start and every hour.

mod api;
mod compare;
pub mod dashboard;
mod db;
mod query;
mod stats;
mod time;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use api::{ApiAccess, MAX_BODY_BYTES as MAX_FEEDBACK_BODY_BYTES, MAX_QUERY_BYTES};
pub use compare::{CompareFilter, Comparison, Group, Pair, Row, Side, MAX_PAIRS};
pub use dashboard::{dashboard, Dashboard};
pub use query::{
    Feedback, Filter, Generation, NewFeedback, Page, Sort, MAX_COMMENT_BYTES,
    MAX_FEEDBACK_PER_GENERATION, MAX_LABEL_BYTES, MAX_PAGE,
};
pub use stats::{Figures, GroupBy, MAX_STATS_ROWS};

use crate::cost::{CostRecord, CostSink};
use crate::Error;
use db::Db;

/// Rows written in one transaction at most.
const BATCH: usize = 256;

/// How long the writer waits for more rows after the first of a batch: rows are readable
/// through the API well within a second, and a busy gateway writes few, large transactions.
/// It sleeps meanwhile rather than waking for each row (a wakeup costs about as much as
/// binding a row); a flush, or a batch's worth of rows waiting, wakes it at once.
const LINGER: Duration = Duration::from_millis(200);

/// How long a lookup of an id not found waits for the rows still queued to be written.
const MISS_FLUSH: Duration = Duration::from_secs(1);

/// How the log is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogOptions {
    /// Keep the prompt and the answer text (default false).
    pub bodies: bool,
    /// Prune rows older than this many days (0: keep them; default 30).
    pub retention_days: u32,
    /// Rows waiting for the writer at most (default 10 000); more are dropped and counted.
    pub queue: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            bodies: false,
            retention_days: 30,
            queue: 10_000,
        }
    }
}

impl LogOptions {
    /// Keeps the prompt and the answer text.
    #[must_use]
    pub const fn bodies(mut self, on: bool) -> Self {
        self.bodies = on;
        self
    }

    /// Prunes rows older than `days` (0: never).
    #[must_use]
    pub const fn retention_days(mut self, days: u32) -> Self {
        self.retention_days = days;
        self
    }

    /// The queue's capacity in rows.
    #[must_use]
    pub const fn queue(mut self, rows: usize) -> Self {
        self.queue = rows;
        self
    }
}

enum Msg {
    Row(Box<CostRecord>),
    Flush(oneshot::Sender<()>),
}

struct Shared {
    /// Wakes the writer from its linger: a flush is queued, or a batch's worth of rows.
    wake: tokio::sync::Notify,
    dropped: AtomicU64,
    written: AtomicU64,
    /// Unix seconds of the last warning about dropped rows.
    warned: AtomicU64,
}

impl Shared {
    fn drop_rows(&self, n: u64, why: &str) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("switchboard_log_dropped_total").increment(n);
        let now = db::now_ms().max(0) as u64 / 1000;
        let last = self.warned.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                dropped_total = self.dropped.load(Ordering::Relaxed),
                "request log: rows dropped ({why})"
            );
        }
    }
}

/// The request log; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct RequestLog {
    db: Db,
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    bodies: bool,
    /// Rows one transaction takes at most.
    batch: usize,
    _tasks: Arc<Tasks>,
}

/// The writer and the pruner, stopped when the last clone of the log is dropped.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl std::fmt::Debug for RequestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLog")
            .field("kind", &self.db.kind)
            .field("bodies", &self.bodies)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl RequestLog {
    /// Opens (and creates, and migrates) the log at `url`: `sqlite://path/to/file.db`, or
    /// `postgres://user:password@host/database`. Starts the writer and the pruner.
    ///
    /// # Errors
    /// The database cannot be reached, or a migration fails.
    pub async fn open(url: &str, options: LogOptions) -> Result<Self, Error> {
        let db = Db::connect(&sqlite_create(url)).await?;
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let shared = Arc::new(Shared {
            wake: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            warned: AtomicU64::new(0),
        });
        // A batch holds at most a queue's worth of rows: what waits is bounded by twice the
        // queue.
        let batch = options.queue.clamp(1, BATCH);
        let mut tasks = vec![tokio::spawn(write(db.clone(), rx, shared.clone(), batch))];
        if options.retention_days > 0 {
            tasks.push(tokio::spawn(prune(db.clone(), options.retention_days)));
        }
        Ok(Self {
            db,
            tx,
            shared,
            bodies: options.bodies,
            batch,
            _tasks: Arc::new(Tasks(tasks)),
        })
    }

    /// The SQLite file `path` (`sqlite://` URL), created when missing.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn sqlite(path: &str, options: LogOptions) -> Result<Self, Error> {
        Self::open(&format!("sqlite://{path}"), options).await
    }

    /// Rows dropped so far (queue full, or the database refused them).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Rows written so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Waits until the rows queued so far are written (or dropped), at most `timeout`;
    /// `false` when the time ran out.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        tokio::time::timeout(timeout, async {
            if self.tx.send(Msg::Flush(tx)).await.is_err() {
                return false;
            }
            self.shared.wake.notify_one();
            rx.await.is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// One generation with its feedback. `key`: only if that gateway key made it (`None`:
    /// any). `Ok(None)`: unknown, or not the key's.
    ///
    /// # Errors
    /// The database failed (`Overloaded`, 503).
    pub async fn generation(
        &self,
        id: &str,
        key: Option<&str>,
    ) -> Result<Option<Generation>, Error> {
        match query::one(&self.db, id, key).await? {
            Some(g) => Ok(Some(g)),
            // The row may still be waiting for the writer's batch: write it now, look again.
            None if self.flush(MISS_FLUSH).await => query::one(&self.db, id, key).await,
            None => Ok(None),
        }
    }

    /// A page of generations matching `filter`, in `sort` order, `limit` rows at most
    /// (capped at [`MAX_PAGE`]), after `cursor` (the previous page's `next_cursor`).
    ///
    /// # Errors
    /// An invalid cursor or status filter (400), or the database failed (503).
    pub async fn generations(
        &self,
        filter: &Filter,
        sort: Sort,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, Error> {
        query::page(&self.db, filter, sort, limit, cursor).await
    }

    /// Adds feedback on a generation; `key`: only on that key's generations.
    /// `Ok(None)`: unknown generation, or not the key's.
    ///
    /// # Errors
    /// A score outside [-1, 1], a label or comment too long, too much feedback (400), or the
    /// database failed (503).
    pub async fn add_feedback(
        &self,
        feedback: NewFeedback,
        key: Option<&str>,
    ) -> Result<Option<Feedback>, Error> {
        // The generation's row may still be waiting for the writer's batch.
        if query::one(&self.db, &feedback.generation_id, key)
            .await?
            .is_none()
        {
            self.flush(MISS_FLUSH).await;
        }
        query::add_feedback(&self.db, feedback, key).await
    }

    /// Figures per group (each object has the `group_by` fields, then [`Figures`]), and
    /// whether the range had more than [`MAX_STATS_ROWS`] rows (only the newest were read).
    ///
    /// # Errors
    /// An invalid status filter (400), or the database failed (503).
    pub async fn stats(
        &self,
        filter: &Filter,
        group_by: &[GroupBy],
    ) -> Result<(Vec<serde_json::Value>, bool), Error> {
        stats::stats(&self.db, filter, group_by).await
    }

    /// Shadow copies beside their primaries (see [`crate::shadow`]): both sides' figures, per
    /// (source, candidate) too, and the newest `limit` pairs (at most [`MAX_PAIRS`]).
    ///
    /// # Errors
    /// The database failed (503).
    pub async fn shadow_compare(
        &self,
        filter: &CompareFilter,
        limit: usize,
    ) -> Result<Comparison, Error> {
        compare::compare(&self.db, filter, limit).await
    }

    /// The dashboard page (`GET /dashboard`), a tower service that reads this log's HTTP API
    /// (see [`Dashboard`]).
    pub fn dashboard_service(&self) -> Dashboard {
        Dashboard::new()
    }

    /// The log's HTTP API as an axum router, to merge with an app's routes.
    pub fn router(&self, access: ApiAccess) -> axum::Router {
        api::router(self.clone(), access)
    }
}

impl CostSink for RequestLog {
    fn record(&self, record: &CostRecord) {
        self.record_owned(record.clone());
    }

    fn record_owned(&self, record: CostRecord) {
        if self.tx.try_send(Msg::Row(Box::new(record))).is_err() {
            self.shared.drop_rows(1, "the queue is full");
        } else if self.tx.max_capacity() - self.tx.capacity() >= self.batch {
            self.shared.wake.notify_one();
        }
    }

    fn wants_bodies(&self) -> bool {
        self.bodies
    }
}

/// `sqlite://…` with `mode=rwc` (create the file when missing) unless a mode is given.
fn sqlite_create(url: &str) -> String {
    if url.starts_with("sqlite:") && !url.contains("mode=") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_owned()
    }
}

/// The writer: batches of up to [`BATCH`] rows, one transaction each.
async fn write(db: Db, mut rx: mpsc::Receiver<Msg>, shared: Arc<Shared>, batch: usize) {
    let mut msgs = Vec::with_capacity(batch);
    let mut rows = Vec::with_capacity(batch);
    let mut acks = Vec::new();
    while rx.recv_many(&mut msgs, batch).await > 0 {
        // Rows that come within LINGER of the first share its transaction (one commit for
        // many rows); a flush writes at once.
        let flush = |msgs: &[Msg]| msgs.iter().any(|m| matches!(m, Msg::Flush(_)));
        if msgs.len() < batch && !flush(&msgs) {
            tokio::select! {
                () = tokio::time::sleep(LINGER) => {}
                () = shared.wake.notified() => {}
            }
            while msgs.len() < batch {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
        }
        for msg in msgs.drain(..) {
            match msg {
                Msg::Row(r) => rows.push(*r),
                Msg::Flush(ack) => acks.push(ack),
            }
        }
        if !rows.is_empty() {
            let n = rows.len() as u64;
            let (back, done) = db.insert(std::mem::take(&mut rows)).await;
            rows = back;
            match done {
                Ok(()) => {
                    shared.written.fetch_add(n, Ordering::Relaxed);
                }
                Err(db::WriteError::Refused(e)) => {
                    tracing::debug!(error = %e, "request log: write failed");
                    shared.drop_rows(n, "the database refused them");
                }
                Err(db::WriteError::TimedOut) => {
                    shared.drop_rows(n, "the database did not answer in time");
                }
            }
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// Deletes rows older than `days`, at once and then every hour.
async fn prune(db: Db, days: u32) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        let cutoff = db::now_ms() - i64::from(days) * 86_400_000;
        match db.prune(cutoff).await {
            Ok(n) if n > 0 => tracing::info!(rows = n, days, "request log: pruned old rows"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "request log: pruning failed"),
        }
    }
}
