use std::sync::Arc;
use std::time::Duration;

use tower::{service_fn, Layer, ServiceExt};

use super::{FallbackLayer, TIMEOUT_HEADER};
use crate::catalog::{Deadlines, Provider, ProviderKind};
use crate::chat::{ChatHttpRequest, ChatHttpResponse};
use crate::ext::{Candidate, Route};
use crate::health::{Health, HealthConfig, TargetState};
use crate::openai::ChatRequest;
use crate::{Error, ErrorKind};

fn slow_target() -> Candidate {
    let p = Arc::new(
        Provider::new("p", ProviderKind::Openai, "http://127.0.0.1:9/v1").with_deadlines(
            Deadlines {
                total: Some(Duration::from_secs(60)),
                ..Deadlines::default()
            },
        ),
    );
    Candidate::passthrough("p/slow".into(), p, "slow".into())
}

fn request(timeout_ms: Option<&str>) -> ChatHttpRequest {
    let chat = ChatRequest::from_slice(
        br#"{"model":"p/slow","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .unwrap();
    let mut req = http::Request::new(Arc::new(chat));
    req.extensions_mut().insert(Route {
        requested: "p/slow".into(),
        candidates: vec![slow_target()].into(),
    });
    if let Some(ms) = timeout_ms {
        req.headers_mut()
            .insert(TIMEOUT_HEADER, ms.parse().unwrap());
    }
    req
}

#[tokio::test(start_paused = true)]
async fn a_deadline_the_client_chose_does_not_cool_the_target_down() {
    let health = Health::new(HealthConfig {
        failure_threshold: 2,
        ..HealthConfig::default()
    });
    // The target answers in 5 s; its own deadline is 60 s.
    let inner = service_fn(|_req: ChatHttpRequest| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Err::<ChatHttpResponse, _>(Error::new(ErrorKind::Upstream, "not reached"))
    });
    let svc = FallbackLayer::new().health(health.clone()).layer(inner);
    for _ in 0..5 {
        let e = svc.clone().oneshot(request(Some("50"))).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }
    assert_eq!(health.state(&slow_target()), TargetState::Healthy);

    // The target's own failures still count.
    let failing = service_fn(|_req: ChatHttpRequest| async {
        Err::<ChatHttpResponse, _>(Error::new(ErrorKind::Upstream, "500"))
    });
    let svc = FallbackLayer::new().health(health.clone()).layer(failing);
    for _ in 0..2 {
        let _ = svc.clone().oneshot(request(None)).await;
    }
    assert_eq!(health.state(&slow_target()), TargetState::CoolingDown);
}
