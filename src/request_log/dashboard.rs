//! The dashboard: one HTML page, its script and its stylesheet, built into the binary
//! (nothing is fetched from elsewhere at run time), drawing its charts as inline SVG from the
//! log's HTTP API.
//!
//! [`Dashboard`] is a tower service answering `GET` (and `HEAD`): a path ending in `.js` gets
//! the script, one ending in `.css` the stylesheet, any other the page. The page loads
//! `dashboard.js` and `dashboard.css` relative to itself and calls `api/v1/…` relative to
//! itself too, so mount the three paths side by side, next to the log's API:
//!
//! ```no_run
//! # async fn f(log: switchboard::request_log::RequestLog) {
//! use switchboard::request_log::{ApiAccess, Dashboard};
//! let d = Dashboard::new();
//! let app = axum::Router::new()
//!     .nest(
//!         "/ops",
//!         log.router(ApiAccess::new())
//!             .route_service("/dashboard", d.clone())
//!             .route_service("/dashboard.js", d.clone())
//!             .route_service("/dashboard.css", d),
//!     );
//! // GET /ops/dashboard reads /ops/api/v1/stats, …
//! # let _ = app;
//! # }
//! ```
//!
//! or name the API's location with [`Dashboard::api_base`] (the page reads it from a
//! `<meta>` tag the service fills in).
//!
//! The page takes the admin key from the URL fragment (`/dashboard#key=…`: a fragment is
//! never sent to the server) or from a form, keeps it in the tab's `sessionStorage` and sends
//! it as `Authorization: Bearer`. Without an admin key configured, loopback clients need none.
//! Every answer carries a strict `Content-Security-Policy` (scripts, styles and API calls
//! from the page's own origin only; no inline script, no framing) and
//! `X-Content-Type-Options: nosniff`; the script renders every value as text.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// The `Content-Security-Policy` of every answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The dashboard service; see the [module docs](self). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Dashboard {
    page: Arc<str>,
}

impl Default for Dashboard {
    fn default() -> Self {
        Self::new()
    }
}

/// `s` escaped for an HTML attribute value.
fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

impl Dashboard {
    /// The page calling `api/v1/…` relative to itself.
    pub fn new() -> Self {
        Self::api_base("")
    }

    /// The page calling `{base}api/v1/…` (e.g. `/ops/`; the same origin: the page's policy
    /// allows no other).
    pub fn api_base(base: &str) -> Self {
        Self {
            page: PAGE.replace("{{API_BASE}}", &escape_attr(base)).into(),
        }
    }

    fn answer(&self, method: &Method, path: &str) -> Response<Body> {
        let (ctype, body): (&str, Body) = if path.ends_with(".js") {
            ("text/javascript; charset=utf-8", Body::from(SCRIPT))
        } else if path.ends_with(".css") {
            ("text/css; charset=utf-8", Body::from(STYLE))
        } else {
            (
                "text/html; charset=utf-8",
                Body::from(self.page.to_string()),
            )
        };
        let (status, ctype, body) = match *method {
            Method::GET => (StatusCode::OK, ctype, body),
            Method::HEAD => (StatusCode::OK, ctype, Body::empty()),
            _ => (
                StatusCode::METHOD_NOT_ALLOWED,
                "application/json",
                Body::from(
                    r#"{"error":{"message":"method not allowed; use GET","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}"#,
                ),
            ),
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if status == StatusCode::METHOD_NOT_ALLOWED {
            h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        r
    }
}

impl<B> tower::Service<Request<B>> for Dashboard {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.answer(req.method(), req.uri().path())))
    }
}

/// The dashboard, calling the API relative to the page ([`Dashboard::new`]).
pub fn dashboard() -> Dashboard {
    Dashboard::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_assets_and_headers() {
        let d = Dashboard::api_base("/x\"><script>");
        assert!(d.page.contains("content=\"/x&quot;&gt;&lt;script&gt;\""));
        assert!(!d.page.contains("{{"));
        let r = d.answer(&Method::GET, "/dashboard.js");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let r = d.answer(&Method::POST, "/dashboard");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        // The script renders data as text, never as markup.
        assert!(!SCRIPT.contains("innerHTML"));
        assert!(!SCRIPT.contains("insertAdjacentHTML"));
        assert!(!PAGE.contains("<script>") && !PAGE.contains("style="));
    }
}
