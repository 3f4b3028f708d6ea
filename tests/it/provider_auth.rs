//! A provider's own auth step (`ProviderAuth`): run on every encoded request before it is sent.

use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use switchboard::catalog::{ModelSpec, Provider, ProviderKind};
use switchboard::client::UpstreamBody;
use switchboard::demo::{DemoServer, DEMO_API_KEY};
use switchboard::provider::ProviderAuth;
use switchboard::{Catalog, Error, ErrorKind, Gateway};
use tower::ServiceExt;

/// Adds the demo's key as a bearer token, as a token source would; or fails.
#[derive(Debug)]
struct Token(Option<&'static str>);

impl ProviderAuth for Token {
    fn authorize<'a>(
        &'a self,
        req: &'a mut http::Request<UpstreamBody>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let token = self
                .0
                .ok_or_else(|| Error::new(ErrorKind::Upstream, "token endpoint unreachable"))?;
            let value = format!("Bearer {token}").parse().expect("a header value");
            req.headers_mut().insert(http::header::AUTHORIZATION, value);
            Ok(())
        })
    }
}

async fn call(demo: &DemoServer, auth: Token) -> (u16, String) {
    // No api_key: only the auth step can make the demo accept the request.
    let catalog = Catalog::builder()
        .provider(Provider::new("openai", ProviderKind::Openai, &demo.base_url()).with_auth(auth))
        .model(ModelSpec::new("openai/gpt-4o-mini"))
        .build()
        .unwrap();
    let gateway = Gateway::builder(catalog).build();
    let req = http::Request::post("/v1/chat/completions")
        .body(Full::new(bytes::Bytes::from_static(
            br#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
        )))
        .unwrap();
    let resp = gateway.chat_completions().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_auth_step_signs_each_request_and_its_failure_is_a_502() {
    let demo = DemoServer::start(ProviderKind::Openai, Default::default())
        .await
        .unwrap();
    let (status, body) = call(&demo, Token(Some(DEMO_API_KEY))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(demo.request_count(), 1);
    let (status, body) = call(&demo, Token(None)).await;
    assert_eq!(status, 502, "the gateway's own credentials failed: {body}");
    assert_eq!(demo.request_count(), 1, "nothing was sent");
    let (status, _) = call(&demo, Token(Some("wrong"))).await;
    assert_eq!(status, 502, "the provider refused our credentials");
}
