//! Reading the log: one generation, a page of them, feedback.

use serde::Serialize;
use sqlx::any::AnyRow;

use super::db::{db_error, get, now_ms, Db};
use super::time;
use crate::Error;

/// The most rows one page of [`RequestLog::generations`](super::RequestLog::generations)
/// holds.
pub const MAX_PAGE: usize = 500;

/// One request as the log has it (`GET /api/v1/generation`), with OpenRouter's field names.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Generation {
    /// The generation id (`gen-…`), the answer's `id` and `x-generation-id`.
    pub id: String,
    /// When the request arrived (RFC 3339, UTC).
    pub created_at: String,
    /// The gateway id of the model that served.
    pub model: Option<String>,
    /// What the client asked for (a model id, an alias, a split, `auto`).
    pub requested_model: Option<String>,
    /// The provider that served.
    pub provider_name: Option<String>,
    /// The gateway key's name (never the key).
    pub api_key_name: Option<String>,
    /// Every attempt: `{"provider", "model", "outcome"}` (`ok` or an error kind).
    pub attempts: serde_json::Value,
    /// The HTTP status the client got (499: it went away before the end).
    pub status: i64,
    /// The error kind, when the request failed.
    pub error_kind: Option<String>,
    /// Whether the answer was streamed.
    pub streamed: bool,
    /// Whether the client went away before the end of the answer.
    pub cancelled: bool,
    /// The first choice's finish reason.
    pub finish_reason: Option<String>,
    /// Prompt tokens (cached and cache-write ones included).
    pub tokens_prompt: Option<i64>,
    /// Completion tokens (reasoning included).
    pub tokens_completion: Option<i64>,
    /// Cached prompt tokens.
    pub native_tokens_cached: Option<i64>,
    /// Prompt tokens written to the provider's cache.
    pub native_tokens_cache_write: Option<i64>,
    /// Reasoning tokens.
    pub native_tokens_reasoning: Option<i64>,
    /// Whether the token counts are an estimate (no usage from the upstream).
    pub usage_estimated: bool,
    /// Cost in USD (`null` when the target has no price; 0 for a cache hit).
    pub total_cost: Option<f64>,
    /// The parts of the cost, in USD.
    pub cost_details: Option<serde_json::Value>,
    /// Time from the request to the end of the answer, in ms.
    pub latency: i64,
    /// Time to the first output, in ms.
    pub time_to_first_token: Option<i64>,
    /// Time the generation took, in ms (streams: first output to end; whole answers: the
    /// serving upstream's time).
    pub generation_time: Option<i64>,
    /// `HIT`, `MISS` or `BYPASS`.
    pub cache_status: Option<String>,
    /// The request's task.
    pub task: Option<String>,
    /// The request's `user`.
    pub user: Option<String>,
    /// The format it came in by (`chat`, `messages`, …).
    pub ingress: Option<String>,
    /// The prompt (`[log] bodies = true` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The answer's text (`[log] bodies = true` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Feedback given on it (lookups of one generation only).
    pub feedback: Vec<Feedback>,
    /// A shadow copy's primary generation id (`None` for a client's own request).
    pub shadow_of: Option<String>,
    /// The shadow copies of this request (lookups of one generation only).
    pub shadow_ids: Vec<String>,
    #[serde(skip)]
    pub(super) created_ms: i64,
}

/// One piece of feedback on a generation.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Feedback {
    /// The feedback's id.
    pub id: String,
    /// The generation it is about.
    pub generation_id: String,
    /// When it was given (RFC 3339, UTC).
    pub created_at: String,
    /// The key that gave it.
    pub api_key_name: Option<String>,
    /// From -1 to 1.
    pub score: f64,
    /// A short label.
    pub label: Option<String>,
    /// A comment.
    pub comment: Option<String>,
}

pub(super) const COLUMNS: &str = "id, created_at, key_name, requested_model, provider, model, \
    attempts, status, error_kind, streamed, cancelled, finish_reason, tokens_prompt, \
    tokens_completion, tokens_cached, tokens_cache_write, tokens_reasoning, usage_estimated, \
    total_cost, cost_details, latency_ms, ttft_ms, generation_time_ms, cache_status, task, \
    user_id, ingress, prompt, answer, shadow_of";

/// [`COLUMNS`] without the prompt and answer texts: a page of up to 500 rows would otherwise
/// carry up to 1 MiB of text each; `generation?id=` has them.
const PAGE_COLUMNS: &str = "id, created_at, key_name, requested_model, provider, model, \
    attempts, status, error_kind, streamed, cancelled, finish_reason, tokens_prompt, \
    tokens_completion, tokens_cached, tokens_cache_write, tokens_reasoning, usage_estimated, \
    total_cost, cost_details, latency_ms, ttft_ms, generation_time_ms, cache_status, task, \
    user_id, ingress, shadow_of";

fn json(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

pub(super) fn generation(row: &AnyRow) -> Generation {
    let created_ms = get::<i64>(row, "created_at").unwrap_or(0);
    Generation {
        id: get(row, "id").unwrap_or_default(),
        created_at: time::rfc3339(created_ms),
        model: get(row, "model"),
        requested_model: get(row, "requested_model"),
        provider_name: get(row, "provider"),
        api_key_name: get(row, "key_name"),
        attempts: json(get(row, "attempts")).unwrap_or_else(|| serde_json::json!([])),
        status: get(row, "status").unwrap_or(0),
        error_kind: get(row, "error_kind"),
        streamed: get::<i64>(row, "streamed").unwrap_or(0) != 0,
        cancelled: get::<i64>(row, "cancelled").unwrap_or(0) != 0,
        finish_reason: get(row, "finish_reason"),
        tokens_prompt: get(row, "tokens_prompt"),
        tokens_completion: get(row, "tokens_completion"),
        native_tokens_cached: get(row, "tokens_cached"),
        native_tokens_cache_write: get(row, "tokens_cache_write"),
        native_tokens_reasoning: get(row, "tokens_reasoning"),
        usage_estimated: get::<i64>(row, "usage_estimated").unwrap_or(0) != 0,
        total_cost: get(row, "total_cost"),
        cost_details: json(get(row, "cost_details")),
        latency: get(row, "latency_ms").unwrap_or(0),
        time_to_first_token: get(row, "ttft_ms"),
        generation_time: get(row, "generation_time_ms"),
        cache_status: get(row, "cache_status"),
        task: get(row, "task"),
        user: get(row, "user_id"),
        ingress: get(row, "ingress"),
        prompt: get(row, "prompt"),
        answer: get(row, "answer"),
        feedback: Vec::new(),
        shadow_of: get(row, "shadow_of"),
        shadow_ids: Vec::new(),
        created_ms,
    }
}

fn feedback(row: &AnyRow) -> Feedback {
    Feedback {
        id: get(row, "id").unwrap_or_default(),
        generation_id: get(row, "generation_id").unwrap_or_default(),
        created_at: time::rfc3339(get(row, "created_at").unwrap_or(0)),
        api_key_name: get(row, "key_name"),
        score: get(row, "score").unwrap_or(0.0),
        label: get(row, "label"),
        comment: get(row, "comment"),
    }
}

/// One generation with its feedback; `key`: only if that key made it.
pub(super) async fn one(db: &Db, id: &str, key: Option<&str>) -> Result<Option<Generation>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM generations WHERE id = $1");
    let Some(row) = sqlx::query(&sql)
        .bind(id.to_owned())
        .fetch_all(&db.pool)
        .await
        .map_err(db_error)?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let mut g = generation(&row);
    if key.is_some_and(|k| g.api_key_name.as_deref() != Some(k)) {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT id, generation_id, created_at, key_name, score, label, comment FROM feedback \
         WHERE generation_id = $1 ORDER BY created_at, id LIMIT 1000",
    )
    .bind(id.to_owned())
    .fetch_all(&db.pool)
    .await
    .map_err(db_error)?;
    g.feedback = rows.iter().map(feedback).collect();
    let copies = sqlx::query(
        "SELECT id FROM generations WHERE shadow_of = $1 ORDER BY created_at, id LIMIT 100",
    )
    .bind(id.to_owned())
    .fetch_all(&db.pool)
    .await
    .map_err(db_error)?;
    g.shadow_ids = copies.iter().filter_map(|r| get(r, "id")).collect();
    Ok(Some(g))
}

/// Feedback to add ([`RequestLog::add_feedback`](super::RequestLog::add_feedback)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewFeedback {
    /// The generation it is about.
    pub generation_id: String,
    /// From -1 to 1.
    pub score: f64,
    /// A short label (at most [`MAX_LABEL_BYTES`]).
    pub label: Option<String>,
    /// A comment (at most [`MAX_COMMENT_BYTES`]).
    pub comment: Option<String>,
}

impl NewFeedback {
    /// Feedback with a score only.
    pub fn new(generation_id: impl Into<String>, score: f64) -> Self {
        Self {
            generation_id: generation_id.into(),
            score,
            label: None,
            comment: None,
        }
    }
}

/// The longest feedback label, in bytes.
pub const MAX_LABEL_BYTES: usize = 64;
/// The longest feedback comment, in bytes.
pub const MAX_COMMENT_BYTES: usize = 4096;
/// The most feedback one generation takes.
pub const MAX_FEEDBACK_PER_GENERATION: i64 = 100;

/// Adds feedback; `key`: only on that key's generations. `Ok(None)`: no such generation.
pub(super) async fn add_feedback(
    db: &Db,
    f: NewFeedback,
    key: Option<&str>,
) -> Result<Option<Feedback>, Error> {
    if !(f.score.is_finite() && (-1.0..=1.0).contains(&f.score)) {
        return Err(
            Error::invalid_request("`score` must be a number from -1 to 1").with_param("score"),
        );
    }
    for (param, v, max) in [
        ("label", &f.label, MAX_LABEL_BYTES),
        ("comment", &f.comment, MAX_COMMENT_BYTES),
    ] {
        if v.as_ref().is_some_and(|v| v.len() > max) {
            return Err(
                Error::invalid_request(format!("`{param}` is longer than {max} bytes"))
                    .with_param(param)
                    .with_code("string_above_max_length"),
            );
        }
    }
    let row = sqlx::query("SELECT key_name FROM generations WHERE id = $1")
        .bind(f.generation_id.clone())
        .fetch_all(&db.pool)
        .await
        .map_err(db_error)?;
    let Some(row) = row.into_iter().next() else {
        return Ok(None);
    };
    let owner: Option<String> = get(&row, "key_name");
    if key.is_some_and(|k| owner.as_deref() != Some(k)) {
        return Ok(None);
    }
    let count = sqlx::query("SELECT COUNT(*) AS n FROM feedback WHERE generation_id = $1")
        .bind(f.generation_id.clone())
        .fetch_all(&db.pool)
        .await
        .map_err(db_error)?;
    if count.first().and_then(|c| get::<i64>(c, "n")).unwrap_or(0) >= MAX_FEEDBACK_PER_GENERATION {
        return Err(Error::invalid_request(format!(
            "this generation has {MAX_FEEDBACK_PER_GENERATION} pieces of feedback already"
        ))
        .with_code("too_much_feedback"));
    }
    let id = format!("fb-{}", crate::openai::unique_hex().as_str());
    let now = now_ms();
    sqlx::query(
        "INSERT INTO feedback (id, generation_id, created_at, key_name, score, label, comment) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.clone())
    .bind(f.generation_id.clone())
    .bind(now)
    .bind(key.map(str::to_owned))
    .bind(f.score)
    .bind(f.label.clone())
    .bind(f.comment.clone())
    .execute(&db.pool)
    .await
    .map_err(db_error)?;
    Ok(Some(Feedback {
        id,
        generation_id: f.generation_id,
        created_at: time::rfc3339(now),
        api_key_name: key.map(str::to_owned),
        score: f.score,
        label: f.label,
        comment: f.comment,
    }))
}

/// The order of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Sort {
    /// Newest first (`-created_at`).
    #[default]
    Newest,
    /// Most expensive first (`-cost`).
    Cost,
    /// Slowest first (`-latency`).
    Latency,
}

impl Sort {
    /// `-created_at`, `-cost` or `-latency`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "-created_at" => Some(Self::Newest),
            "-cost" => Some(Self::Cost),
            "-latency" => Some(Self::Latency),
            _ => None,
        }
    }

    fn column(self) -> &'static str {
        match self {
            Self::Newest => "created_at",
            Self::Cost => "COALESCE(total_cost, 0)",
            Self::Latency => "latency_ms",
        }
    }
}

/// Filters of [`RequestLog::generations`](super::RequestLog::generations) and of the stats.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Filter {
    /// The model that served.
    pub model: Option<String>,
    /// What the client asked for.
    pub requested: Option<String>,
    /// The provider that served.
    pub provider: Option<String>,
    /// The gateway key's name.
    pub key: Option<String>,
    /// The task.
    pub task: Option<String>,
    /// `ok` (200), `error` (an error status), `cancelled` (499), or an HTTP status.
    pub status: Option<String>,
    /// From this time on (Unix ms, inclusive).
    pub from: Option<i64>,
    /// Before this time (Unix ms, exclusive).
    pub to: Option<i64>,
}

/// A bind value.
pub(super) enum Bind {
    I(i64),
    F(f64),
    T(String),
}

impl Filter {
    /// The `WHERE` clause (`1=1 AND …`) and its values.
    pub(super) fn clause(&self, binds: &mut Vec<Bind>) -> Result<String, Error> {
        let mut w = String::from("1=1");
        let mut eq = |col: &str, v: &Option<String>, binds: &mut Vec<Bind>| {
            if let Some(v) = v {
                binds.push(Bind::T(v.clone()));
                w.push_str(&format!(" AND {col} = ${}", binds.len()));
            }
        };
        eq("model", &self.model, binds);
        eq("requested_model", &self.requested, binds);
        eq("provider", &self.provider, binds);
        eq("key_name", &self.key, binds);
        eq("task", &self.task, binds);
        if let Some(from) = self.from {
            binds.push(Bind::I(from));
            w.push_str(&format!(" AND created_at >= ${}", binds.len()));
        }
        if let Some(to) = self.to {
            binds.push(Bind::I(to));
            w.push_str(&format!(" AND created_at < ${}", binds.len()));
        }
        match self.status.as_deref() {
            None => {}
            Some("ok") => w.push_str(" AND status = 200"),
            Some("error") => w.push_str(" AND status <> 200 AND status <> 499"),
            Some("cancelled") => w.push_str(" AND status = 499"),
            Some(n) => {
                let n: i64 = n
                    .parse()
                    .ok()
                    .filter(|n| (100..600).contains(n))
                    .ok_or_else(|| {
                        Error::invalid_request("`status` is ok, error, cancelled or an HTTP status")
                            .with_param("status")
                    })?;
                binds.push(Bind::I(n));
                w.push_str(&format!(" AND status = ${}", binds.len()));
            }
        }
        Ok(w)
    }
}

pub(super) fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for b in binds {
        q = match b {
            Bind::I(v) => q.bind(v),
            Bind::F(v) => q.bind(v),
            Bind::T(v) => q.bind(v),
        };
    }
    q
}

/// A page of generations, newest (or costliest, slowest) first.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Page {
    /// The rows (without feedback).
    pub data: Vec<Generation>,
    /// Pass as `cursor` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// A page: `limit` rows at most ([`MAX_PAGE`]), after `cursor`.
pub(super) async fn page(
    db: &Db,
    filter: &Filter,
    sort: Sort,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page, Error> {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut binds = Vec::new();
    let mut w = filter.clause(&mut binds)?;
    let col = sort.column();
    if let Some(c) = cursor {
        let bad = || Error::invalid_request("invalid `cursor`").with_param("cursor");
        let (v, id) = c.split_once('_').ok_or_else(bad)?;
        if id.is_empty() || id.len() > 128 {
            return Err(bad());
        }
        binds.push(match sort {
            Sort::Cost => Bind::F(
                v.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(bad)?,
            ),
            _ => Bind::I(v.parse().map_err(|_| bad())?),
        });
        let n = binds.len();
        binds.push(Bind::T(id.to_owned()));
        w.push_str(&format!(
            " AND ({col} < ${n} OR ({col} = ${n} AND id < ${}))",
            n + 1
        ));
    }
    let sql = format!(
        "SELECT {PAGE_COLUMNS} FROM generations WHERE {w} ORDER BY {col} DESC, id DESC LIMIT {}",
        limit + 1
    );
    let rows = bind_all(sqlx::query(&sql), binds)
        .fetch_all(&db.pool)
        .await
        .map_err(db_error)?;
    let mut data: Vec<Generation> = rows.iter().map(generation).collect();
    let next_cursor = if data.len() > limit {
        data.truncate(limit);
        data.last().map(|g| {
            let v = match sort {
                Sort::Newest => g.created_ms.to_string(),
                Sort::Cost => g.total_cost.unwrap_or(0.0).to_string(),
                Sort::Latency => g.latency.to_string(),
            };
            format!("{v}_{}", g.id)
        })
    } else {
        None
    };
    Ok(Page { data, next_cursor })
}

/// `s` as a CSV field (quoted when needed; a leading `=`, `+`, `-` or `@` is prefixed with
/// `'` so that spreadsheets do not run it as a formula).
fn csv_field(out: &mut String, s: &str) {
    let guarded = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if guarded || s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        if guarded {
            out.push('\'');
        }
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// The page as CSV, one line per row, with a header line.
pub(super) fn csv(page: &Page) -> String {
    let mut out = String::from(
        "id,created_at,api_key_name,requested_model,provider_name,model,status,error_kind,\
         streamed,cancelled,finish_reason,tokens_prompt,tokens_completion,native_tokens_cached,\
         native_tokens_cache_write,native_tokens_reasoning,total_cost,latency,\
         time_to_first_token,generation_time,cache_status,task,user,ingress,attempts\n",
    );
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for g in &page.data {
        let fields = [
            g.id.clone(),
            g.created_at.clone(),
            g.api_key_name.clone().unwrap_or_default(),
            g.requested_model.clone().unwrap_or_default(),
            g.provider_name.clone().unwrap_or_default(),
            g.model.clone().unwrap_or_default(),
            g.status.to_string(),
            g.error_kind.clone().unwrap_or_default(),
            g.streamed.to_string(),
            g.cancelled.to_string(),
            g.finish_reason.clone().unwrap_or_default(),
            opt(g.tokens_prompt),
            opt(g.tokens_completion),
            opt(g.native_tokens_cached),
            opt(g.native_tokens_cache_write),
            opt(g.native_tokens_reasoning),
            g.total_cost.map(|c| c.to_string()).unwrap_or_default(),
            g.latency.to_string(),
            opt(g.time_to_first_token),
            opt(g.generation_time),
            g.cache_status.clone().unwrap_or_default(),
            g.task.clone().unwrap_or_default(),
            g.user.clone().unwrap_or_default(),
            g.ingress.clone().unwrap_or_default(),
            g.attempts.to_string(),
        ];
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&mut out, f);
        }
        out.push('\n');
    }
    out
}
