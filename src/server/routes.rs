//! The gateway's routes: the OpenAI-compatible API, health, readiness and metrics.

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;

use crate::ext::Candidate;
use crate::health::TargetState;
use crate::Gateway;

use super::telemetry;

pub(super) fn router(
    gateway: &Gateway,
    log: Option<&(
        crate::request_log::RequestLog,
        crate::request_log::ApiAccess,
    )>,
) -> Router {
    let metrics = telemetry::prometheus();
    let ready_gateway = gateway.clone();
    let api = match log {
        Some((log, access)) => {
            let d = log.dashboard_service();
            log.router(access.clone())
                .route_service("/dashboard", d.clone())
                .route_service("/dashboard.js", d.clone())
                .route_service("/dashboard.css", d)
        }
        None => Router::new(),
    };
    Router::new()
        .merge(api)
        .route_service("/v1/chat/completions", gateway.chat_completions())
        .route_service("/v1/messages", gateway.messages())
        .route_service("/v1/responses", gateway.responses())
        .route_service("/v1/messages/count_tokens", gateway.count_tokens())
        .route_service("/v1/embeddings", gateway.embeddings())
        .route_service("/v1/models", gateway.models())
        .route("/health", get(|| async { "ok" }))
        .route(
            "/ready",
            get(move || {
                let g = ready_gateway.clone();
                async move { ready(&g) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    match m {
                        Some(h) => (StatusCode::OK, h.render()),
                        None => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "another metrics recorder is installed".to_owned(),
                        ),
                    }
                }
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"error":{"message":"unknown path: try POST /v1/chat/completions, POST /v1/responses, POST /v1/messages, POST /v1/embeddings or GET /v1/models","type":"invalid_request_error","param":null,"code":"unknown_url"}}"#,
            )
        })
}

/// 200 when at least one provider endpoint is not cooling down.
fn ready(g: &Gateway) -> (StatusCode, &'static str) {
    let catalog = g.catalog();
    let any = catalog.models().iter().any(|m| {
        m.endpoints.iter().any(|e| {
            let c = Candidate::from_endpoint(m, e);
            g.health().state(&c) != TargetState::CoolingDown
        })
    });
    if any || catalog.models().is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "every provider is cooling down",
        )
    }
}
