//! The log's HTTP API: `GET /api/v1/generation?id=`, `POST /api/v1/feedback`,
//! `GET /api/v1/generations`, `GET /api/v1/stats`, `GET /api/v1/shadow/compare` (admin). JSON in OpenRouter's names; errors in
//! OpenAI's error shape.
//!
//! Who reads what: the admin (`Authorization: Bearer <admin key>`; without an admin key,
//! clients on a loopback address) reads every row; a gateway key reads, lists, counts and
//! gives feedback on its own generations only (another key's generation is a 404, as an
//! unknown one is).

// The error of these helpers is the answer itself, made once for a refused request.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use sha2::Digest;

use super::query::{Filter, NewFeedback, Sort};
use super::stats::GroupBy;
use super::{time, RequestLog};
use crate::keys::ClientKeysLayer;
use crate::{Error, ErrorKind};

/// The longest query string accepted, in bytes (longer: 414).
pub const MAX_QUERY_BYTES: usize = 4096;
/// The largest feedback body accepted, in bytes (larger: 413).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The longest id, filter value or cursor accepted, in bytes.
const MAX_VALUE_BYTES: usize = 256;
/// The most `group_by` dimensions.
const MAX_GROUPS: usize = 4;

/// Who may use the log's API: the admin key and the gateway keys.
#[derive(Clone, Default)]
pub struct ApiAccess {
    admin: Option<[u8; 32]>,
    keys: Option<ClientKeysLayer>,
}

impl std::fmt::Debug for ApiAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAccess")
            .field("admin_key", &self.admin.is_some())
            .field("client_keys", &self.keys.is_some())
            .finish()
    }
}

impl ApiAccess {
    /// No admin key (admin routes answer loopback clients only) and no gateway keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// The admin key, sent as `Authorization: Bearer <key>` (kept as its SHA-256 digest).
    #[must_use]
    pub fn admin_key(mut self, key: &str) -> Self {
        self.admin = Some(sha2::Sha256::digest(key.as_bytes()).into());
        self
    }

    /// The gateway keys: each reads its own generations.
    #[must_use]
    pub fn client_keys(mut self, keys: ClientKeysLayer) -> Self {
        self.keys = Some(keys).filter(|k| !k.is_empty());
        self
    }
}

/// Who is asking.
enum Viewer {
    Admin,
    Key(Arc<str>),
}

impl Viewer {
    fn key(&self) -> Option<&str> {
        match self {
            Self::Admin => None,
            Self::Key(k) => Some(k),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// Whether the request names this machine in `Host` (or names none): a page from elsewhere
/// that reaches the loopback port through DNS rebinding names its own host, and is not
/// admin.
fn local_host(headers: &http::HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn viewer(access: &ApiAccess, req: &Request) -> Result<Viewer, Error> {
    let headers = req.headers();
    let presented = bearer(headers);
    if let (Some(admin), Some(p)) = (&access.admin, presented) {
        let d: [u8; 32] = sha2::Sha256::digest(p.as_bytes()).into();
        // Constant time: every byte is compared.
        if d.iter().zip(admin).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 {
            return Ok(Viewer::Admin);
        }
    }
    if let (Some(keys), Some(_)) = (&access.keys, presented) {
        if let Ok(name) = keys.key_name(headers) {
            return Ok(Viewer::Key(name));
        }
    }
    let loopback = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback());
    if access.admin.is_none() && loopback && presented.is_none() && local_host(headers) {
        return Ok(Viewer::Admin);
    }
    Err(Error::new(
        ErrorKind::Unauthorized,
        match presented {
            Some(_) => "invalid API key",
            None => "missing API key: send `Authorization: Bearer <key>`",
        },
    ))
}

#[derive(Clone)]
struct Api {
    log: RequestLog,
    access: ApiAccess,
}

pub(super) fn router(log: RequestLog, access: ApiAccess) -> Router {
    Router::new()
        .route("/api/v1/generation", any(generation))
        .route("/api/v1/generations", any(generations))
        .route("/api/v1/feedback", any(feedback))
        .route("/api/v1/stats", any(stats))
        .route("/api/v1/shadow/compare", any(shadow_compare))
        .with_state(Arc::new(Api { log, access }))
}

fn error(e: &Error) -> Response {
    crate::edge::error_response(e).into_response()
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => error(&Error::new(
            ErrorKind::Upstream,
            "could not encode the answer",
        )),
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut r = error(
        &Error::invalid_request(format!("method not allowed; use {allow}"))
            .with_code("method_not_allowed"),
    );
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    if let Ok(v) = header::HeaderValue::from_str(allow) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

/// The query string's parameters, each named in `allowed` at most once.
fn params(req: &Request, allowed: &[&str]) -> Result<Vec<(String, String)>, Response> {
    let q = req.uri().query().unwrap_or("");
    if q.len() > MAX_QUERY_BYTES {
        let mut r = error(
            &Error::invalid_request(format!(
                "the query string is longer than {MAX_QUERY_BYTES} bytes"
            ))
            .with_code("query_too_long"),
        );
        *r.status_mut() = StatusCode::URI_TOO_LONG;
        return Err(r);
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |m: String| Err(error(&Error::invalid_request(m)));
        let (Some(k), Some(v)) = (decode(k), decode(v)) else {
            return bad("the query string is not valid percent-encoded UTF-8".into());
        };
        if !allowed.contains(&k.as_str()) {
            return bad(format!(
                "unknown parameter `{}`; expected one of {}",
                crate::resolve::limits::quote(&k),
                allowed.join(", ")
            ));
        }
        if out.iter().any(|(n, _)| *n == k) {
            return bad(format!("parameter `{k}` given twice"));
        }
        if v.len() > MAX_VALUE_BYTES {
            return bad(format!("`{k}` is longer than {MAX_VALUE_BYTES} bytes"));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// Percent-decoding (`+` is a space), to UTF-8.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn get<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A generation id as given: `gen-…`, or the Messages API's `msg_gen-…` for it.
fn generation_id(id: &str) -> &str {
    id.strip_prefix("msg_")
        .filter(|r| r.starts_with("gen-"))
        .unwrap_or(id)
}

fn not_found() -> Response {
    error(&Error::new(ErrorKind::NotFound, "no such generation").with_code("generation_not_found"))
}

macro_rules! try_resp {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

async fn generation(State(api): State<Arc<Api>>, req: Request) -> Response {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let who = try_resp!(viewer(&api.access, &req).map_err(|e| error(&e)));
    let p = try_resp!(params(&req, &["id"]));
    let Some(id) = get(&p, "id").filter(|id| !id.is_empty()) else {
        return error(&Error::invalid_request("`id` is required").with_param("id"));
    };
    match api.log.generation(generation_id(id), who.key()).await {
        Ok(Some(g)) => json(StatusCode::OK, &serde_json::json!({ "data": g })),
        Ok(None) => not_found(),
        Err(e) => error(&e),
    }
}

fn filter_from(p: &[(String, String)], who: &Viewer) -> Result<Filter, Response> {
    let text = |n: &str| get(p, n).filter(|v| !v.is_empty()).map(str::to_owned);
    let when = |n: &'static str| -> Result<Option<i64>, Response> {
        match get(p, n).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => time::parse(v).map(Some).ok_or_else(|| {
                error(
                    &Error::invalid_request(format!(
                        "`{n}` is Unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"
                    ))
                    .with_param(n),
                )
            }),
        }
    };
    let mut f = Filter {
        model: text("model"),
        requested: text("requested"),
        provider: text("provider"),
        key: text("key"),
        task: text("task"),
        status: text("status"),
        from: when("from")?,
        to: when("to")?,
    };
    if let Viewer::Key(k) = who {
        // A gateway key sees its own rows only.
        f.key = Some(k.to_string());
    }
    Ok(f)
}

async fn generations(State(api): State<Arc<Api>>, req: Request) -> Response {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let who = try_resp!(viewer(&api.access, &req).map_err(|e| error(&e)));
    let p = try_resp!(params(
        &req,
        &[
            "model",
            "requested",
            "provider",
            "key",
            "task",
            "status",
            "from",
            "to",
            "sort",
            "limit",
            "cursor",
            "format",
        ],
    ));
    let filter = try_resp!(filter_from(&p, &who));
    let sort = match get(&p, "sort") {
        None | Some("") => Sort::default(),
        Some(s) => try_resp!(Sort::parse(s).ok_or_else(|| error(
            &Error::invalid_request("`sort` is -created_at, -cost or -latency").with_param("sort")
        ))),
    };
    let limit = match get(&p, "limit") {
        None | Some("") => 50,
        Some(l) => try_resp!(l
            .parse::<usize>()
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| error(
                &Error::invalid_request("`limit` is a positive integer").with_param("limit")
            ))),
    };
    let csv = match get(&p, "format") {
        None | Some("" | "json") => false,
        Some("csv") => true,
        Some(_) => {
            return error(&Error::invalid_request("`format` is json or csv").with_param("format"))
        }
    };
    let page = match api
        .log
        .generations(
            &filter,
            sort,
            limit,
            get(&p, "cursor").filter(|c| !c.is_empty()),
        )
        .await
    {
        Ok(p) => p,
        Err(e) => return error(&e),
    };
    if csv {
        return (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"generations.csv\"",
                ),
            ],
            super::query::csv(&page),
        )
            .into_response();
    }
    json(StatusCode::OK, &page)
}

async fn stats(State(api): State<Arc<Api>>, req: Request) -> Response {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let who = try_resp!(viewer(&api.access, &req).map_err(|e| error(&e)));
    let p = try_resp!(params(
        &req,
        &[
            "group_by",
            "model",
            "requested",
            "provider",
            "key",
            "task",
            "status",
            "from",
            "to"
        ],
    ));
    let filter = try_resp!(filter_from(&p, &who));
    let mut groups = Vec::new();
    for g in get(&p, "group_by")
        .unwrap_or("")
        .split(',')
        .filter(|g| !g.is_empty())
    {
        let Some(g) = GroupBy::parse(g) else {
            return error(
                &Error::invalid_request(
                    "`group_by` lists model, requested, provider, task, key, day or hour",
                )
                .with_param("group_by"),
            );
        };
        if groups.contains(&g) || groups.len() >= MAX_GROUPS {
            return error(
                &Error::invalid_request(format!(
                    "`group_by` lists at most {MAX_GROUPS} different dimensions"
                ))
                .with_param("group_by"),
            );
        }
        groups.push(g);
    }
    match api.log.stats(&filter, &groups).await {
        Ok((data, truncated)) => json(
            StatusCode::OK,
            &serde_json::json!({ "data": data, "truncated": truncated }),
        ),
        Err(e) => error(&e),
    }
}

async fn shadow_compare(State(api): State<Arc<Api>>, req: Request) -> Response {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let who = try_resp!(viewer(&api.access, &req).map_err(|e| error(&e)));
    if let Viewer::Key(_) = who {
        return error(&Error::new(
            ErrorKind::Forbidden,
            "shadow comparisons are for the admin key",
        ));
    }
    let p = try_resp!(params(
        &req,
        &["source", "candidate", "from", "to", "limit"]
    ));
    let f = try_resp!(filter_from(&p, &who));
    let limit = match get(&p, "limit") {
        None | Some("") => 20,
        Some(l) => try_resp!(l
            .parse::<usize>()
            .ok()
            .filter(|l| *l <= super::MAX_PAIRS)
            .ok_or_else(|| error(
                &Error::invalid_request(format!(
                    "`limit` is an integer from 0 to {}",
                    super::MAX_PAIRS
                ))
                .with_param("limit")
            ))),
    };
    let text = |n: &str| get(&p, n).filter(|v| !v.is_empty()).map(str::to_owned);
    let filter = super::CompareFilter {
        source: text("source"),
        candidate: text("candidate"),
        from: f.from,
        to: f.to,
    };
    match api.log.shadow_compare(&filter, limit).await {
        Ok(c) => json(StatusCode::OK, &serde_json::json!({ "data": c })),
        Err(e) => error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackIn {
    generation_id: String,
    score: f64,
    label: Option<String>,
    comment: Option<String>,
}

async fn feedback(State(api): State<Arc<Api>>, req: Request) -> Response {
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    let who = try_resp!(viewer(&api.access, &req).map_err(|e| error(&e)));
    try_resp!(params(&req, &[]));
    let too_large = || {
        error(&Error::new(
            ErrorKind::PayloadTooLarge,
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        ))
    };
    if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return too_large();
    }
    let read = crate::body_util::read_to_bytes(req.into_body(), MAX_BODY_BYTES);
    let body: Bytes = match tokio::time::timeout(Duration::from_secs(30), read).await {
        Ok(Ok(b)) => b,
        Ok(Err(crate::body_util::ReadError::TooLarge)) => return too_large(),
        Ok(Err(_)) => return error(&Error::invalid_request("could not read the body")),
        Err(_) => {
            return error(&Error::new(
                ErrorKind::ClientTimeout,
                "the body was not received in time",
            ))
        }
    };
    let f: FeedbackIn = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return error(&Error::invalid_request(format!(
                "invalid feedback: {e}; expected {{\"generation_id\", \"score\" (-1 to 1), \"label\"?, \"comment\"?}}"
            )))
        }
    };
    if f.generation_id.is_empty() || f.generation_id.len() > MAX_VALUE_BYTES {
        return error(
            &Error::invalid_request("invalid `generation_id`").with_param("generation_id"),
        );
    }
    let new = NewFeedback {
        generation_id: generation_id(&f.generation_id).to_owned(),
        score: f.score,
        label: f.label,
        comment: f.comment,
    };
    match api.log.add_feedback(new, who.key()).await {
        Ok(Some(fb)) => json(StatusCode::CREATED, &serde_json::json!({ "data": fb })),
        Ok(None) => not_found(),
        Err(e) => error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_and_plus() {
        assert_eq!(decode("a%2Fb+c").as_deref(), Some("a/b c"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%"), None);
        assert_eq!(decode("%ff"), None);
        assert_eq!(generation_id("msg_gen-1"), "gen-1");
        assert_eq!(generation_id("msg_x"), "msg_x");
    }
}
