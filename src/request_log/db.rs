//! The database: one schema and one set of queries for SQLite and PostgreSQL (sqlx's `Any`
//! driver, portable SQL with `$n` parameters), the versioned migrations in `migrations/`, the
//! batched insert and the retention prune. The rows are built once ([`Values`]) for both; on
//! SQLite the writer binds them through rusqlite on its own connection (measured: sqlx's
//! `Any` binding cost more than SQLite's own insert).

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::cost::CostRecord;
use crate::ext::GenerationId;
use crate::{Error, ErrorKind};

/// The migrations, in order: (version, name, SQL). Each runs once, in a transaction.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "request_log",
        include_str!("../../migrations/0001_request_log.sql"),
    ),
    (
        2,
        "shadow",
        include_str!("../../migrations/0002_shadow.sql"),
    ),
    (
        3,
        "shadow_partial_index",
        include_str!("../../migrations/0003_shadow_partial_index.sql"),
    ),
];

/// How long a batch may take on PostgreSQL before it is given up (and its rows counted as
/// dropped).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a batch was not written.
#[derive(Debug)]
pub(super) enum WriteError {
    /// The database answered with an error.
    Refused(String),
    /// It did not answer within [`WRITE_TIMEOUT`].
    TimedOut,
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Sqlite,
    Postgres,
}

/// A pool on the log's database, and for a SQLite file the writer's own connection.
#[derive(Debug, Clone)]
pub(super) struct Db {
    pub(super) pool: AnyPool,
    pub(super) kind: Kind,
    /// SQLite's rows are written through rusqlite on a blocking thread: the same statement
    /// through sqlx's `Any` driver costs about three times as many instructions (its values
    /// are boxed, converted and sent to a worker thread one by one). `None`: PostgreSQL.
    writer: Option<Arc<Mutex<rusqlite::Connection>>>,
}

pub(super) fn db_error(e: sqlx::Error) -> Error {
    Error::new(ErrorKind::Overloaded, "the request log is unavailable").with_source(e)
}

impl Db {
    /// Connects, sets SQLite's WAL mode, and runs the migrations not yet applied.
    pub(super) async fn connect(url: &str) -> Result<Self, Error> {
        sqlx::any::install_default_drivers();
        let kind = if url.starts_with("sqlite:") {
            if sqlite_file(url).is_none() {
                return Err(Error::invalid_request(
                    "the request log needs a SQLite file: an in-memory database is not \
                     shared by the log's connections",
                ));
            }
            Kind::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Kind::Postgres
        } else {
            return Err(Error::invalid_request(
                "the request log needs a sqlite: or postgres:// URL",
            ));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(match kind {
                Kind::Sqlite => 4,
                Kind::Postgres => 8,
            })
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if kind == Kind::Sqlite {
                        // WAL with NORMAL sync: a crash never corrupts the file; a power cut
                        // may lose the last commits, which a request log can afford.
                        sqlx::query("PRAGMA synchronous=NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Overloaded,
                    format!("cannot open the request log: {e}"),
                )
            })?;
        let mut db = Self {
            pool,
            kind,
            writer: None,
        };
        if kind == Kind::Sqlite {
            sqlx::query("PRAGMA journal_mode=WAL")
                .fetch_all(&db.pool)
                .await
                .map_err(db_error)?;
        }
        // Another instance may be migrating the same database at the same time: try again
        // once it is done.
        if db.migrate().await.is_err() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            db.migrate().await.map_err(db_error)?;
        }
        if let Some(path) = sqlite_file(url) {
            let path = path.to_owned();
            let conn = tokio::task::spawn_blocking(move || open_writer(&path))
                .await
                .map_err(|e| Error::new(ErrorKind::Overloaded, format!("{e}")))?
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Overloaded,
                        format!("cannot open the request log for writing: {e}"),
                    )
                })?;
            db.writer = Some(Arc::new(Mutex::new(conn)));
        }
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), sqlx::Error> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS switchboard_migrations (version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        for (version, name, sql) in MIGRATIONS {
            let done = sqlx::query("SELECT version FROM switchboard_migrations WHERE version = $1")
                .bind(*version)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .next();
            if done.is_some() {
                continue;
            }
            let mut tx = self.pool.begin().await?;
            for stmt in statements(sql) {
                sqlx::query(&stmt).execute(&mut *tx).await?;
            }
            sqlx::query(
                "INSERT INTO switchboard_migrations (version, name, applied_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (version) DO NOTHING",
            )
            .bind(*version)
            .bind(*name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Writes `rows` in one transaction (a row already there is left as it is). Hands `rows`
    /// back, emptied, for the next batch.
    pub(super) async fn insert(
        &self,
        mut rows: Vec<CostRecord>,
    ) -> (Vec<CostRecord>, Result<(), WriteError>) {
        let Some(writer) = self.writer.clone() else {
            let done = match tokio::time::timeout(WRITE_TIMEOUT, self.insert_any(&rows)).await {
                Ok(done) => done.map_err(|e| WriteError::Refused(e.to_string())),
                Err(_) => Err(WriteError::TimedOut),
            };
            rows.clear();
            return (rows, done);
        };
        // A local file: SQLite's busy timeout bounds the wait for another writer's lock.
        tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(PoisonError::into_inner);
            let done =
                insert_sqlite(&mut conn, &rows).map_err(|e| WriteError::Refused(e.to_string()));
            rows.clear();
            (rows, done)
        })
        .await
        .unwrap_or_else(|e| (Vec::new(), Err(WriteError::Refused(e.to_string()))))
    }

    /// [`insert`](Self::insert) through sqlx (PostgreSQL), in multi-row statements of
    /// [`CHUNKS`] rows (few statements, each prepared once).
    async fn insert_any(&self, rows: &[CostRecord]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for chunk in chunks(rows) {
            let values: Vec<Values<'_>> = chunk.iter().map(Values::of).collect();
            let mut q = sqlx::query(insert_sql(self.kind, chunk.len()));
            for v in &values {
                for col in v.columns() {
                    q = match col {
                        Col::Text(t) => q.bind(t),
                        Col::Int(n) => q.bind(n),
                        Col::Real(x) => q.bind(x),
                    };
                }
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// Deletes rows and feedback older than `cutoff_ms`.
    pub(super) async fn prune(&self, cutoff_ms: i64) -> Result<u64, sqlx::Error> {
        let n = sqlx::query("DELETE FROM generations WHERE created_at < $1")
            .bind(cutoff_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM feedback WHERE created_at < $1")
            .bind(cutoff_ms)
            .execute(&self.pool)
            .await?;
        Ok(n)
    }
}

/// The columns of a row, in the order they are bound.
const COLUMNS: &str = "id, created_at, key_name, requested_model, provider, model, attempts, \
    attempt_count, status, error_kind, streamed, cancelled, finish_reason, tokens_prompt, \
    tokens_completion, tokens_cached, tokens_cache_write, tokens_reasoning, usage_estimated, \
    total_cost, cost_details, latency_ms, ttft_ms, generation_time_ms, cache_status, task, \
    user_id, ingress, prompt, answer, shadow_of";

/// How many values a row binds.
const PER_ROW: usize = 31;

/// The rows one insert statement takes, largest first: a batch is written as statements of
/// these sizes. Small enough that preparing one stays cheap (each connection prepares each
/// size once).
const CHUNKS: [usize; 3] = [16, 4, 1];

/// `rows` cut into chunks of [`CHUNKS`] sizes, largest first.
fn chunks(rows: &[CostRecord]) -> impl Iterator<Item = &[CostRecord]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let n = CHUNKS.iter().copied().find(|&n| n <= rest.len())?;
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// The insert statement for `n` rows (one of [`CHUNKS`]) in `kind`'s placeholders, built once.
/// SQLite gets anonymous `?` (sqlx looks a `$n` name up per parameter, which is linear in the
/// statement's parameters), PostgreSQL `$1…`.
fn insert_sql(kind: Kind, n: usize) -> &'static str {
    static SQL: std::sync::OnceLock<[Vec<String>; 2]> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        [Kind::Sqlite, Kind::Postgres].map(|kind| {
            CHUNKS
                .iter()
                .map(|&n| {
                    let mut sql = format!("INSERT INTO generations ({COLUMNS}) VALUES ");
                    for row in 0..n {
                        sql.push_str(if row == 0 { "(" } else { ", (" });
                        for col in 0..PER_ROW {
                            if col > 0 {
                                sql.push_str(", ");
                            }
                            match kind {
                                Kind::Sqlite => sql.push('?'),
                                Kind::Postgres => {
                                    sql.push_str(&format!("${}", row * PER_ROW + col + 1));
                                }
                            }
                        }
                        sql.push(')');
                    }
                    sql.push_str(" ON CONFLICT (id) DO NOTHING");
                    sql
                })
                .collect()
        })
    });
    let i = CHUNKS
        .iter()
        .position(|&c| c == n)
        .unwrap_or(CHUNKS.len() - 1);
    &all[usize::from(kind == Kind::Postgres)][i]
}

/// A record's row: its columns in [`COLUMNS`] order, borrowed from the record where they
/// can be.
struct Values<'a> {
    id: Cow<'a, str>,
    created_at: i64,
    key: Option<&'a str>,
    requested: Option<&'a str>,
    provider: Option<&'a str>,
    model: Option<&'a str>,
    attempts: String,
    attempt_count: i64,
    status: i64,
    error_kind: Option<&'static str>,
    streamed: i64,
    cancelled: i64,
    finish_reason: Option<&'a str>,
    tokens: [Option<i64>; 5],
    usage_estimated: i64,
    cost: Option<f64>,
    cost_details: Option<String>,
    latency: i64,
    ttft: Option<i64>,
    generation_time: Option<i64>,
    cache: Option<&'static str>,
    task: Option<&'a str>,
    user: Option<&'a str>,
    ingress: Option<&'static str>,
    prompt: Option<&'a str>,
    answer: Option<&'a str>,
    shadow_of: Option<&'a str>,
}

impl<'a> Values<'a> {
    fn of(r: &'a CostRecord) -> Self {
        let tokens = match &r.usage {
            Some(u) => [
                u.prompt_tokens,
                u.completion_tokens,
                u.cached_tokens(),
                u.cache_write_tokens(),
                u.reasoning_tokens(),
            ]
            .map(|n| Some(i64::try_from(n).unwrap_or(i64::MAX))),
            None => [None; 5],
        };
        Self {
            id: r.generation_id.as_deref().map_or_else(
                || Cow::Owned(GenerationId::new().0.to_string()),
                Cow::Borrowed,
            ),
            created_at: r
                .created_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            key: r.caller.as_ref().map(|c| &*c.0),
            requested: r.requested.as_deref().map(clip),
            provider: r.provider.as_deref(),
            model: r.model.as_deref(),
            attempts: attempts_json(r),
            attempt_count: r.attempts.len() as i64,
            status: status_of(r),
            error_kind: r.error.map(ErrorKind::as_str),
            streamed: i64::from(r.stream),
            cancelled: i64::from(r.cancelled),
            finish_reason: r.finish_reason.as_deref().map(clip),
            tokens,
            usage_estimated: i64::from(r.usage_estimated),
            cost: r.cost.map(|c| c.total().usd()),
            cost_details: r.cost.as_ref().map(cost_details_json),
            latency: ms(r.latency),
            ttft: r.time_to_first_token.map(ms),
            generation_time: r.generation_time.map(ms),
            cache: r.cache.map(|c| c.as_str()),
            task: r.task.as_deref().map(clip),
            user: r.user.as_deref().map(clip),
            ingress: r.ingress,
            prompt: r.prompt.as_deref(),
            answer: r.answer.as_deref(),
            shadow_of: r.shadow_of.as_deref(),
        }
    }
}

/// A column's value, as both drivers bind it.
enum Col<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Real(Option<f64>),
}

impl Values<'_> {
    /// The row's values in [`COLUMNS`] order.
    fn columns(&self) -> [Col<'_>; PER_ROW] {
        let int = |n: i64| Col::Int(Some(n));
        [
            Col::Text(Some(&self.id)),
            int(self.created_at),
            Col::Text(self.key),
            Col::Text(self.requested),
            Col::Text(self.provider),
            Col::Text(self.model),
            Col::Text(Some(&self.attempts)),
            int(self.attempt_count),
            int(self.status),
            Col::Text(self.error_kind),
            int(self.streamed),
            int(self.cancelled),
            Col::Text(self.finish_reason),
            Col::Int(self.tokens[0]),
            Col::Int(self.tokens[1]),
            Col::Int(self.tokens[2]),
            Col::Int(self.tokens[3]),
            Col::Int(self.tokens[4]),
            int(self.usage_estimated),
            Col::Real(self.cost),
            Col::Text(self.cost_details.as_deref()),
            int(self.latency),
            Col::Int(self.ttft),
            Col::Int(self.generation_time),
            Col::Text(self.cache),
            Col::Text(self.task),
            Col::Text(self.user),
            Col::Text(self.ingress),
            Col::Text(self.prompt),
            Col::Text(self.answer),
            Col::Text(self.shadow_of),
        ]
    }
}

/// The `attempts` column: `[{"provider", "model", "outcome"}, …]`, written directly (as
/// `serde_json` would, at a fraction of the cost: this runs for every row).
fn attempts_json(r: &CostRecord) -> String {
    use crate::cost::access_log::escape_json;
    let mut out = Vec::with_capacity(2 + r.attempts.len() * 64);
    out.push(b'[');
    for (i, a) in r.attempts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"provider\":\"");
        escape_json(&mut out, &a.provider);
        out.extend_from_slice(b"\",\"model\":\"");
        escape_json(&mut out, &a.model);
        out.extend_from_slice(b"\",\"outcome\":\"");
        out.extend_from_slice(a.error.map_or("ok", ErrorKind::as_str).as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.push(b']');
    String::from_utf8(out).unwrap_or_else(|_| "[]".to_owned())
}

/// The `cost_details` column: the breakdown in USD, as `usage.cost_details` has it (exact
/// decimals of the picodollar amounts).
fn cost_details_json(c: &crate::cost::CostBreakdown) -> String {
    let mut out = Vec::with_capacity(128);
    for (name, v) in [
        (&b"{\"input\":"[..], c.input),
        (b",\"output\":", c.output),
        (b",\"cached_input\":", c.cached_input),
        (b",\"cache_write\":", c.cache_write),
        (b",\"request\":", c.request),
    ] {
        out.extend_from_slice(name);
        v.write_usd(&mut out);
    }
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

/// The file a `sqlite:` URL names; `None` for another database or an in-memory one.
fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, options) = rest.split_once('?').unwrap_or((rest, ""));
    let memory =
        path.is_empty() || path == ":memory:" || options.split('&').any(|o| o == "mode=memory");
    (!memory).then_some(path)
}

/// The writer's connection on the SQLite file the pool has created and migrated.
fn open_writer(path: &str) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // WAL (set by the pool, kept in the file) with NORMAL sync: a crash never corrupts the
    // file; a power cut may lose the last commits, which a request log can afford.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// One transaction; the rows in statements of [`CHUNKS`] rows (each prepared once per
/// connection and cached: a statement's fixed cost, about a fifth of a row's, is paid once
/// per chunk), each value bound by a direct call.
fn insert_sqlite(conn: &mut rusqlite::Connection, rows: &[CostRecord]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for chunk in chunks(rows) {
        let mut stmt = tx.prepare_cached(insert_sql(Kind::Sqlite, chunk.len()))?;
        for (i, r) in chunk.iter().enumerate() {
            bind_row(&mut stmt, i * PER_ROW, &Values::of(r))?;
        }
        stmt.raw_execute()?;
    }
    tx.commit()
}

/// Binds a row's values to parameters `first + 1 ..= first + PER_ROW`. A NULL is not bound:
/// every parameter of a statement from rusqlite's cache is NULL until bound (the bindings are
/// cleared when it goes back to the cache), and binding a NULL costs as much as a number.
fn bind_row(
    stmt: &mut rusqlite::Statement<'_>,
    first: usize,
    v: &Values<'_>,
) -> rusqlite::Result<()> {
    for (i, col) in v.columns().into_iter().enumerate() {
        let at = first + i + 1;
        match col {
            Col::Text(Some(t)) => stmt.raw_bind_parameter(at, t)?,
            Col::Int(Some(n)) => stmt.raw_bind_parameter(at, n)?,
            Col::Real(Some(x)) => stmt.raw_bind_parameter(at, x)?,
            Col::Text(None) | Col::Int(None) | Col::Real(None) => {}
        }
    }
    Ok(())
}

/// The most bytes of a client- or upstream-given name a row keeps (`requested`, `task`,
/// `user`, `finish_reason`): a refused request's model may be megabytes long.
const MAX_NAME_BYTES: usize = 256;

/// `s`, cut to [`MAX_NAME_BYTES`] at a character boundary.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(MAX_NAME_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The HTTP status the client got: the error's, 499 when it went away, else 200.
fn status_of(r: &CostRecord) -> i64 {
    match (r.error, r.cancelled) {
        (Some(k), _) => i64::from(k.status().as_u16()),
        (None, true) => 499,
        (None, false) => 200,
    }
}

pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, ms)
}

/// The statements of a migration file: split at `;`, comment lines dropped.
fn statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads a nullable column, `None` when it is missing or of another type.
pub(super) fn get<'r, T>(row: &'r AnyRow, col: &str) -> Option<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get::<Option<T>, _>(col).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_opens_files_not_memory_databases() {
        assert_eq!(sqlite_file("sqlite://log.db?mode=rwc"), Some("log.db"));
        assert_eq!(sqlite_file("sqlite:///var/lib/x.db"), Some("/var/lib/x.db"));
        assert_eq!(sqlite_file("sqlite:log.db"), Some("log.db"));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(
            sqlite_file("sqlite://shared?mode=memory&cache=shared"),
            None
        );
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }

    #[test]
    fn json_columns_read_as_serde_writes_them() {
        use crate::ext::Attempt;
        let r = CostRecord {
            attempts: vec![
                Attempt {
                    provider: "open\"ai".into(),
                    model: "a/b\n".into(),
                    error: Some(ErrorKind::Timeout),
                },
                Attempt {
                    provider: "x".into(),
                    model: "y".into(),
                    error: None,
                },
            ],
            ..CostRecord::default()
        };
        let v: serde_json::Value = serde_json::from_str(&attempts_json(&r)).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"provider": "open\"ai", "model": "a/b\n", "outcome": ErrorKind::Timeout.as_str()},
                {"provider": "x", "model": "y", "outcome": "ok"},
            ])
        );
        assert_eq!(attempts_json(&CostRecord::default()), "[]");
        let c = crate::cost::cost_of(
            &crate::openai::Usage {
                prompt_tokens: 1000,
                completion_tokens: 10,
                ..Default::default()
            },
            &crate::cost::TokenPrices {
                input: 150_000,
                output: 600_000,
                cached_input: 75_000,
                cache_write: 0,
                request: 1_000_000,
            },
        );
        assert_eq!(
            serde_json::from_str::<crate::openai::CostDetails>(&cost_details_json(&c)).unwrap(),
            c.to_details()
        );
    }

    /// A bound value never leaks into the next use of a cached statement: rows without the
    /// optional fields, written after rows with all of them, read back NULL.
    #[tokio::test]
    async fn unbound_values_are_null_after_full_rows() {
        use crate::cost::Picodollars;
        use crate::ext::{CacheStatus, CallerKey};
        let path = std::env::temp_dir().join(format!(
            "switchboard-db-{}-{}.db",
            std::process::id(),
            crate::openai::unique_hex().as_str()
        ));
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        let full = |i: usize| CostRecord {
            generation_id: Some(format!("gen-full-{i}").into()),
            caller: Some(CallerKey("team".into())),
            requested: Some("fast".into()),
            provider: Some("openai".into()),
            model: Some("gpt-4o-mini".into()),
            usage: Some(crate::openai::Usage {
                prompt_tokens: 10,
                completion_tokens: 2,
                ..Default::default()
            }),
            cost: Some(crate::cost::CostBreakdown {
                input: Picodollars(1_500_000),
                ..Default::default()
            }),
            time_to_first_token: Some(Duration::from_millis(3)),
            generation_time: Some(Duration::from_millis(4)),
            cache: Some(CacheStatus::Miss),
            error: Some(ErrorKind::Timeout),
            task: Some("t".into()),
            user: Some("u".into()),
            ingress: Some("chat"),
            finish_reason: Some("stop".into()),
            prompt: Some("p".into()),
            answer: Some("a".into()),
            shadow_of: Some("gen-x".into()),
            ..CostRecord::default()
        };
        let bare = |i: usize| CostRecord {
            generation_id: Some(format!("gen-bare-{i}").into()),
            ..CostRecord::default()
        };
        // 21 rows: statements of 16, 4 and 1 rows, each used again by the next batch.
        let (_, done) = db.insert((0..21).map(full).collect()).await;
        done.unwrap();
        let (_, done) = db.insert((0..21).map(bare).collect()).await;
        done.unwrap();
        for i in [0, 15, 16, 20] {
            let f = super::super::query::one(&db, &format!("gen-full-{i}"), None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(f.api_key_name.as_deref(), Some("team"));
            assert_eq!(f.tokens_completion, Some(2));
            assert_eq!(f.total_cost, Some(0.0000015));
            assert_eq!(f.cost_details.as_ref().unwrap()["input"], 0.0000015);
            let b = super::super::query::one(&db, &format!("gen-bare-{i}"), None)
                .await
                .unwrap()
                .unwrap();
            let v = serde_json::to_value(&b).unwrap();
            for (name, value) in v.as_object().unwrap() {
                if ![
                    "id",
                    "created_at",
                    "attempts",
                    "status",
                    "streamed",
                    "cancelled",
                    "usage_estimated",
                    "latency",
                    "feedback",
                    "shadow_ids",
                ]
                .contains(&name.as_str())
                {
                    assert!(value.is_null(), "{name} = {value} in {v}");
                }
            }
        }
        drop(db);
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
    }

    #[tokio::test]
    async fn an_in_memory_database_is_refused_clearly() {
        let e = Db::connect("sqlite::memory:").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert!(e.to_string().contains("in-memory"), "{e}");
    }
}
