//! `GET /api/v1/stats`: rows grouped in Rust (so percentiles are the same on SQLite and
//! PostgreSQL), over at most [`MAX_STATS_ROWS`] rows, newest first.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::db::{db_error, get, Db};
use super::query::{bind_all, Filter};
use super::time;
use crate::Error;

/// The most rows one stats query reads (the newest ones of the range); the answer says
/// `truncated` when there were more.
pub const MAX_STATS_ROWS: i64 = 200_000;

/// A dimension to group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupBy {
    /// The gateway id of the model that served.
    Model,
    /// What the client asked for (a model id, an alias, a split).
    Requested,
    /// The provider that served.
    Provider,
    /// The request's task.
    Task,
    /// The gateway key's name.
    Key,
    /// The UTC day (`2025-01-02`).
    Day,
    /// The UTC hour (`2025-01-02T03:00Z`).
    Hour,
}

impl GroupBy {
    /// `model`, `requested`, `provider`, `task`, `key`, `day` or `hour`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "model" => Self::Model,
            "requested" => Self::Requested,
            "provider" => Self::Provider,
            "task" => Self::Task,
            "key" => Self::Key,
            "day" => Self::Day,
            "hour" => Self::Hour,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Requested => "requested",
            Self::Provider => "provider",
            Self::Task => "task",
            Self::Key => "key",
            Self::Day => "day",
            Self::Hour => "hour",
        }
    }
}

/// The figures of one group.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Figures {
    /// Requests.
    pub requests: u64,
    /// Requests that failed (neither 200 nor 499, the client going away).
    pub errors: u64,
    /// Requests that took more than one attempt.
    pub fallbacks: u64,
    /// Requests answered from the response cache.
    pub cache_hits: u64,
    /// Prompt tokens.
    pub tokens_prompt: i64,
    /// Completion tokens.
    pub tokens_completion: i64,
    /// Cost in USD.
    pub cost: f64,
    /// Median latency, ms (nearest rank).
    pub latency_p50_ms: Option<i64>,
    /// 95th percentile latency, ms (nearest rank).
    pub latency_p95_ms: Option<i64>,
    /// Median time to first token, ms.
    pub ttft_p50_ms: Option<i64>,
    /// 95th percentile time to first token, ms.
    pub ttft_p95_ms: Option<i64>,
    /// Mean feedback score.
    pub feedback_mean: Option<f64>,
    /// Pieces of feedback.
    pub feedback_count: u64,
    /// Requests that were shadow copies (included in `requests`).
    pub shadow_requests: u64,
    /// The shadow copies' cost in USD (included in `cost`).
    pub shadow_cost: f64,
}

#[derive(Default)]
struct Acc {
    f: Figures,
    latencies: Vec<i64>,
    ttfts: Vec<i64>,
    score_sum: f64,
}

/// The nearest-rank percentile `q` (0–1) of sorted `v`.
pub(super) fn percentile(v: &[i64], q: f64) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// The groups, each an object with its group fields and its [`Figures`]; and whether more
/// rows than [`MAX_STATS_ROWS`] matched.
pub(super) async fn stats(
    db: &Db,
    filter: &Filter,
    group_by: &[GroupBy],
) -> Result<(Vec<Value>, bool), Error> {
    let mut binds = Vec::new();
    let w = filter.clause(&mut binds)?;
    let sql = format!(
        "SELECT g.created_at, g.key_name, g.requested_model, g.provider, g.model, g.task, \
         g.status, g.attempt_count, g.cache_status, g.tokens_prompt, g.tokens_completion, \
         g.total_cost, g.latency_ms, g.ttft_ms, g.shadow_of, f.score_sum, f.score_count FROM generations g \
         LEFT JOIN (SELECT generation_id, SUM(score) AS score_sum, COUNT(*) AS score_count \
         FROM feedback GROUP BY generation_id) f ON f.generation_id = g.id WHERE {} \
         ORDER BY g.created_at DESC LIMIT {}",
        qualify(&w),
        MAX_STATS_ROWS + 1
    );
    let rows = bind_all(sqlx::query(&sql), binds)
        .fetch_all(&db.pool)
        .await
        .map_err(db_error)?;
    let truncated = rows.len() as i64 > MAX_STATS_ROWS;
    let mut groups: BTreeMap<Vec<Option<String>>, Acc> = BTreeMap::new();
    for row in rows.iter().take(MAX_STATS_ROWS as usize) {
        let created: i64 = get(row, "created_at").unwrap_or(0);
        let key: Vec<Option<String>> = group_by
            .iter()
            .map(|g| match g {
                GroupBy::Model => get(row, "model"),
                GroupBy::Requested => get(row, "requested_model"),
                GroupBy::Provider => get(row, "provider"),
                GroupBy::Task => get(row, "task"),
                GroupBy::Key => get(row, "key_name"),
                GroupBy::Day => Some(time::day(created)),
                GroupBy::Hour => Some(time::hour(created)),
            })
            .collect();
        let acc = groups.entry(key).or_default();
        let status: i64 = get(row, "status").unwrap_or(0);
        acc.f.requests += 1;
        acc.f.errors += u64::from(status != 200 && status != 499);
        acc.f.fallbacks += u64::from(get::<i64>(row, "attempt_count").unwrap_or(0) > 1);
        acc.f.cache_hits += u64::from(get::<String>(row, "cache_status").as_deref() == Some("HIT"));
        acc.f.tokens_prompt += get::<i64>(row, "tokens_prompt").unwrap_or(0);
        acc.f.tokens_completion += get::<i64>(row, "tokens_completion").unwrap_or(0);
        let cost = get::<f64>(row, "total_cost").unwrap_or(0.0);
        acc.f.cost += cost;
        if get::<String>(row, "shadow_of").is_some() {
            acc.f.shadow_requests += 1;
            acc.f.shadow_cost += cost;
        }
        acc.latencies.push(get(row, "latency_ms").unwrap_or(0));
        if let Some(t) = get::<i64>(row, "ttft_ms") {
            acc.ttfts.push(t);
        }
        let n = get::<i64>(row, "score_count").unwrap_or(0);
        if n > 0 {
            acc.f.feedback_count += n as u64;
            acc.score_sum += get::<f64>(row, "score_sum").unwrap_or(0.0);
        }
    }
    let data = groups
        .into_iter()
        .map(|(key, mut acc)| {
            acc.latencies.sort_unstable();
            acc.ttfts.sort_unstable();
            let f = &mut acc.f;
            f.latency_p50_ms = percentile(&acc.latencies, 0.5);
            f.latency_p95_ms = percentile(&acc.latencies, 0.95);
            f.ttft_p50_ms = percentile(&acc.ttfts, 0.5);
            f.ttft_p95_ms = percentile(&acc.ttfts, 0.95);
            f.feedback_mean =
                (f.feedback_count > 0).then(|| acc.score_sum / f.feedback_count as f64);
            let mut obj = Map::new();
            for (g, v) in group_by.iter().zip(key) {
                obj.insert(g.name().to_owned(), v.map_or(Value::Null, Value::String));
            }
            if let Ok(Value::Object(figures)) = serde_json::to_value(&acc.f) {
                obj.extend(figures);
            }
            Value::Object(obj)
        })
        .collect();
    Ok((data, truncated))
}

/// The filter's columns qualified with the generations table's alias.
fn qualify(w: &str) -> String {
    let mut out = w.to_owned();
    for col in [
        "requested_model",
        "model",
        "provider",
        "key_name",
        "task",
        "created_at",
        "status",
    ] {
        out = out.replace(&format!(" {col} "), &format!(" g.{col} "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<i64> = (1..=20).collect();
        assert_eq!(percentile(&v, 0.5), Some(10));
        assert_eq!(percentile(&v, 0.95), Some(19));
        assert_eq!(percentile(&[7], 0.95), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn qualifies_columns_once() {
        let w = "1=1 AND model = $1 AND requested_model = $2 AND created_at >= $3 AND status = 200";
        assert_eq!(
            qualify(w),
            "1=1 AND g.model = $1 AND g.requested_model = $2 AND g.created_at >= $3 AND g.status = 200"
        );
    }
}
