//! `GET /api/v1/shadow/compare`: shadow copies beside their primaries — the two sides'
//! figures per (source, candidate), and a page of pairs, newest first.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::any::AnyRow;

use super::db::{db_error, get, Db};
use super::query::{bind_all, Bind};
use super::stats::{percentile, MAX_STATS_ROWS};
use super::time;
use crate::Error;

/// The most pairs one answer lists.
pub const MAX_PAIRS: usize = 100;

/// Which pairs to compare.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CompareFilter {
    /// The primaries' `model` as the client sent it, or `task:<name>` (their task).
    pub source: Option<String>,
    /// The copies' target (what the rule names as `candidate`).
    pub candidate: Option<String>,
    /// From this time on (Unix ms, inclusive; the copies' time).
    pub from: Option<i64>,
    /// Before this time (Unix ms, exclusive).
    pub to: Option<i64>,
}

/// One side's figures.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Side {
    /// Requests.
    pub requests: u64,
    /// Requests that failed (neither 200 nor 499).
    pub errors: u64,
    /// Cost in USD.
    pub cost: f64,
    /// Prompt tokens.
    pub tokens_prompt: i64,
    /// Completion tokens.
    pub tokens_completion: i64,
    /// Median latency, ms (nearest rank).
    pub latency_p50_ms: Option<i64>,
    /// 95th percentile latency, ms.
    pub latency_p95_ms: Option<i64>,
    /// Median time to first token, ms.
    pub ttft_p50_ms: Option<i64>,
    /// 95th percentile time to first token, ms.
    pub ttft_p95_ms: Option<i64>,
    /// Mean feedback score (of this side's generations).
    pub feedback_mean: Option<f64>,
    /// Pieces of feedback.
    pub feedback_count: u64,
}

#[derive(Default)]
struct Acc {
    side: Side,
    latencies: Vec<i64>,
    ttfts: Vec<i64>,
    score_sum: f64,
}

impl Acc {
    fn add(&mut self, r: &Row) {
        let s = &mut self.side;
        s.requests += 1;
        s.errors += u64::from(r.status != 200 && r.status != 499);
        s.cost += r.cost.unwrap_or(0.0);
        s.tokens_prompt += r.tokens_prompt.unwrap_or(0);
        s.tokens_completion += r.tokens_completion.unwrap_or(0);
        self.latencies.push(r.latency);
        if let Some(t) = r.ttft {
            self.ttfts.push(t);
        }
        if r.score_count > 0 {
            s.feedback_count += r.score_count as u64;
            self.score_sum += r.score_sum;
        }
    }

    fn done(mut self) -> Side {
        self.latencies.sort_unstable();
        self.ttfts.sort_unstable();
        let s = &mut self.side;
        s.latency_p50_ms = percentile(&self.latencies, 0.5);
        s.latency_p95_ms = percentile(&self.latencies, 0.95);
        s.ttft_p50_ms = percentile(&self.ttfts, 0.5);
        s.ttft_p95_ms = percentile(&self.ttfts, 0.95);
        s.feedback_mean = (s.feedback_count > 0).then(|| self.score_sum / s.feedback_count as f64);
        self.side
    }
}

/// One generation of a pair.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Row {
    /// The generation id.
    pub id: String,
    /// When it arrived (RFC 3339).
    pub created_at: String,
    /// What was asked for (the primary: the client's `model`; the copy: the candidate).
    pub requested_model: Option<String>,
    /// The model that served.
    pub model: Option<String>,
    /// The HTTP status (the primary's is the client's).
    pub status: i64,
    /// The error kind, when it failed.
    pub error_kind: Option<String>,
    /// Cost in USD.
    #[serde(rename = "total_cost")]
    pub cost: Option<f64>,
    /// Latency, ms.
    pub latency: i64,
    /// Time to first token, ms.
    #[serde(rename = "time_to_first_token")]
    pub ttft: Option<i64>,
    /// Prompt tokens.
    pub tokens_prompt: Option<i64>,
    /// Completion tokens.
    pub tokens_completion: Option<i64>,
    /// The answer's text (`[log] bodies = true` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Mean feedback score.
    pub feedback_mean: Option<f64>,
    #[serde(skip)]
    score_sum: f64,
    #[serde(skip)]
    score_count: i64,
    #[serde(skip)]
    task: Option<String>,
}

/// A primary and its copy.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Pair {
    /// The client's request.
    pub primary: Row,
    /// The copy sent to the candidate.
    pub shadow: Row,
}

/// The figures of one (source, candidate).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Group {
    /// The primaries' requested model (or the `task:<name>` asked for).
    pub source: Option<String>,
    /// The copies' target.
    pub candidate: Option<String>,
    /// The primaries.
    pub primary: Side,
    /// The copies.
    pub shadow: Side,
}

/// The answer of `GET /api/v1/shadow/compare`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Comparison {
    /// The primaries of every matching pair.
    pub primary: Side,
    /// Their copies.
    pub shadow: Side,
    /// The same per (source, candidate).
    pub groups: Vec<Group>,
    /// The newest pairs (at most the `limit` asked for, [`MAX_PAIRS`]).
    pub pairs: Vec<Pair>,
    /// Whether more pairs than the stats' row cap matched (only the newest were read).
    pub truncated: bool,
}

const SIDE: [&str; 13] = [
    "id",
    "created_at",
    "requested_model",
    "model",
    "status",
    "error_kind",
    "total_cost",
    "latency_ms",
    "ttft_ms",
    "tokens_prompt",
    "tokens_completion",
    "answer",
    "task",
];

fn side(row: &AnyRow, p: &str) -> Row {
    let c = |name: &str| format!("{p}_{name}");
    let score_sum = get::<f64>(row, &c("score_sum")).unwrap_or(0.0);
    let score_count = get::<i64>(row, &c("score_count")).unwrap_or(0);
    Row {
        id: get(row, &c("id")).unwrap_or_default(),
        created_at: time::rfc3339(get(row, &c("created_at")).unwrap_or(0)),
        requested_model: get(row, &c("requested_model")),
        model: get(row, &c("model")),
        status: get(row, &c("status")).unwrap_or(0),
        error_kind: get(row, &c("error_kind")),
        cost: get(row, &c("total_cost")),
        latency: get(row, &c("latency_ms")).unwrap_or(0),
        ttft: get(row, &c("ttft_ms")),
        tokens_prompt: get(row, &c("tokens_prompt")),
        tokens_completion: get(row, &c("tokens_completion")),
        answer: get(row, &c("answer")),
        feedback_mean: (score_count > 0).then(|| score_sum / score_count as f64),
        score_sum,
        score_count,
        task: get(row, &c("task")),
    }
}

/// Compares the pairs matching `f`; lists the newest `limit` of them.
pub(super) async fn compare(db: &Db, f: &CompareFilter, limit: usize) -> Result<Comparison, Error> {
    // Only the listed pairs carry their answers: the figures read up to MAX_STATS_ROWS
    // pairs, and with `[log] bodies` each answer may be as long as a response.
    let listed = limit.min(MAX_PAIRS);
    let mut cols = Vec::new();
    for p in ["p", "s"] {
        for c in SIDE {
            if c == "answer" {
                cols.push(format!(
                    "CASE WHEN ROW_NUMBER() OVER (ORDER BY s.created_at DESC, s.id DESC) \
                     <= {listed} THEN {p}.answer END AS {p}_answer"
                ));
            } else {
                cols.push(format!("{p}.{c} AS {p}_{c}"));
            }
        }
        cols.push(format!("{p}f.score_sum AS {p}_score_sum"));
        cols.push(format!("{p}f.score_count AS {p}_score_count"));
    }
    let mut binds = Vec::new();
    let mut w = String::from("s.shadow_of IS NOT NULL");
    let source_task = f.source.as_deref().and_then(|s| s.strip_prefix("task:"));
    if let Some(src) = &f.source {
        match source_task {
            Some(t) => {
                binds.push(Bind::T(t.to_owned()));
                w.push_str(&format!(" AND p.task = ${}", binds.len()));
            }
            None => {
                binds.push(Bind::T(src.clone()));
                w.push_str(&format!(" AND p.requested_model = ${}", binds.len()));
            }
        }
    }
    if let Some(c) = &f.candidate {
        binds.push(Bind::T(c.clone()));
        w.push_str(&format!(" AND s.requested_model = ${}", binds.len()));
    }
    if let Some(from) = f.from {
        binds.push(Bind::I(from));
        w.push_str(&format!(" AND s.created_at >= ${}", binds.len()));
    }
    if let Some(to) = f.to {
        binds.push(Bind::I(to));
        w.push_str(&format!(" AND s.created_at < ${}", binds.len()));
    }
    let fb = "(SELECT generation_id, SUM(score) AS score_sum, COUNT(*) AS score_count \
              FROM feedback GROUP BY generation_id)";
    let sql = format!(
        "SELECT {} FROM generations s JOIN generations p ON p.id = s.shadow_of \
         LEFT JOIN {fb} pf ON pf.generation_id = p.id \
         LEFT JOIN {fb} sf ON sf.generation_id = s.id \
         WHERE {w} ORDER BY s.created_at DESC, s.id DESC LIMIT {}",
        cols.join(", "),
        MAX_STATS_ROWS + 1
    );
    let rows = bind_all(sqlx::query(&sql), binds)
        .fetch_all(&db.pool)
        .await
        .map_err(db_error)?;
    let truncated = rows.len() as i64 > MAX_STATS_ROWS;
    let (mut all_p, mut all_s) = (Acc::default(), Acc::default());
    let mut groups: BTreeMap<(Option<String>, Option<String>), (Acc, Acc)> = BTreeMap::new();
    let mut pairs = Vec::new();
    for row in rows.iter().take(MAX_STATS_ROWS as usize) {
        let (p, s) = (side(row, "p"), side(row, "s"));
        all_p.add(&p);
        all_s.add(&s);
        let source = match source_task {
            Some(t) => Some(format!("task:{t}")).filter(|_| p.task.as_deref() == Some(t)),
            None => p.requested_model.clone(),
        };
        let g = groups
            .entry((source, s.requested_model.clone()))
            .or_default();
        g.0.add(&p);
        g.1.add(&s);
        if pairs.len() < listed {
            pairs.push(Pair {
                primary: p,
                shadow: s,
            });
        }
    }
    Ok(Comparison {
        primary: all_p.done(),
        shadow: all_s.done(),
        groups: groups
            .into_iter()
            .map(|((source, candidate), (p, s))| Group {
                source,
                candidate,
                primary: p.done(),
                shadow: s.done(),
            })
            .collect(),
        pairs,
        truncated,
    })
}
