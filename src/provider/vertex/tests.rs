//! Vertex codec and token tests.

use bytes::Bytes;
use http::StatusCode;

use super::auth::parse_token;
use super::*;
use crate::provider::{Provider, ProviderKind};
use crate::ErrorKind;

fn provider(base: &str) -> Provider {
    Provider::new("vertex", ProviderKind::Vertex, base)
}

fn ctx<'a>(p: &'a Provider, model: &'a str) -> EncodeContext<'a> {
    EncodeContext {
        provider: p,
        upstream_model: model,
        max_output: Some(1000),
    }
}

fn chat(body: &str) -> ChatRequest {
    serde_json::from_str(body).unwrap()
}

#[test]
fn urls_follow_the_location_and_publisher() {
    assert_eq!(
        Vertex::default_base_url("global"),
        "https://aiplatform.googleapis.com"
    );
    assert_eq!(
        Vertex::default_base_url("us-east5"),
        "https://us-east5-aiplatform.googleapis.com"
    );
    let v = Vertex::new("my-proj", "us-east5").unwrap();
    let p = provider(&Vertex::default_base_url("us-east5"));
    let req = chat(r#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#);
    let r = v.encode(&req, &ctx(&p, "gemini-2.5-flash")).unwrap();
    assert_eq!(
        r.uri(),
        "https://us-east5-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent"
    );
    assert!(r.headers().get("x-goog-api-key").is_none());
    let r = v.encode(&req, &ctx(&p, "claude-opus-4@20250514")).unwrap();
    assert_eq!(
        r.uri(),
        "https://us-east5-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-east5/publishers/anthropic/models/claude-opus-4@20250514:rawPredict"
    );
    let body: serde_json::Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
    assert_eq!(body["anthropic_version"], ANTHROPIC_VERSION);
    assert!(body.get("model").is_none());
    assert_eq!(body["max_tokens"], 1000);
    assert!(r.headers().get("anthropic-version").is_none());

    let stream = chat(r#"{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}"#);
    let r = v.encode(&stream, &ctx(&p, "gemini-2.5-pro")).unwrap();
    assert!(r
        .uri()
        .to_string()
        .ends_with("/models/gemini-2.5-pro:streamGenerateContent?alt=sse"));
    let r = v.encode(&stream, &ctx(&p, "claude-x")).unwrap();
    assert!(r
        .uri()
        .to_string()
        .ends_with("/models/claude-x:streamRawPredict"));
}

#[test]
fn names_cannot_reach_another_path() {
    let v = Vertex::new("p", "global").unwrap();
    let p = provider("https://aiplatform.googleapis.com");
    let req = chat(r#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#);
    let r = v.encode(&req, &ctx(&p, "a/../b:c?d#e f")).unwrap();
    assert!(
        r.uri()
            .path()
            .ends_with("/models/a%2F..%2Fb%3Ac%3Fd%23e%20f:generateContent"),
        "{}",
        r.uri()
    );
    assert!(r.uri().query().is_none());
    for bad in ["", ".", ".."] {
        assert!(v.encode(&req, &ctx(&p, bad)).is_err(), "{bad:?}");
    }
    for bad in ["", "a/b", "a b", "é", &"x".repeat(129)] {
        assert!(Vertex::new(bad, "global").is_err(), "{bad:?}");
        assert!(Vertex::new("p", bad).is_err(), "{bad:?}");
    }
    // Without a project (the kind's default codec) nothing is sent.
    let e = Vertex::unconfigured()
        .encode(&req, &ctx(&p, "gemini-2.5-flash"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Upstream);
}

#[test]
fn messages_bodies_lose_model_and_gain_the_version() {
    let cases = [
        (
            r#"{"model":"m","max_tokens":5}"#,
            r#"{"anthropic_version":"vertex-2023-10-16","max_tokens":5}"#,
        ),
        (
            r#"{"max_tokens":5,"model":"m"}"#,
            r#"{"anthropic_version":"vertex-2023-10-16","max_tokens":5}"#,
        ),
        (
            r#" { "a" : 1 , "model" : "m" , "b" : [2] } "#,
            r#" {"anthropic_version":"vertex-2023-10-16", "a" : 1 ,  "b" : [2] } "#,
        ),
        (
            r#"{"model":"m"}"#,
            r#"{"anthropic_version":"vertex-2023-10-16"}"#,
        ),
    ];
    for (input, want) in cases {
        let out = messages_body(input.as_bytes()).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{input}");
        serde_json::from_slice::<serde_json::Value>(&out).unwrap();
    }
    for bad in [
        r#"{"max_tokens":5}"#,
        r#"{"model":"m","model":"n"}"#,
        r#"{"model":"m","anthropic_version":"x"}"#,
        r#"{"mod\u0065l":"m"}"#,
        r#"{"model":"m""#,
        r#"["model"]"#,
        "",
    ] {
        assert!(messages_body(bad.as_bytes()).is_none(), "{bad}");
    }
}

#[test]
fn answers_errors_and_streams_are_decoded_by_their_shape() {
    let v = Vertex::new("p", "global").unwrap();
    let d = DecodeContext {
        model: "m".into(),
        provider: "vertex".into(),
    };
    let claude = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1,"cache_read_input_tokens":2}}"#;
    let c = v.decode(claude, &d).unwrap();
    assert_eq!(c.choices[0].message.content.as_deref(), Some("hi"));
    let gemini = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"yo"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":1,"totalTokenCount":2}}"#;
    let c = v.decode(gemini, &d).unwrap();
    assert_eq!(c.choices[0].message.content.as_deref(), Some("yo"));

    let h = HeaderMap::new();
    let google = br#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;
    let e = v.decode_error(StatusCode::UNAUTHORIZED, &h, google);
    assert_eq!((e.kind(), e.status().as_u16()), (ErrorKind::Upstream, 502));
    let google =
        br#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#;
    assert_eq!(
        v.decode_error(StatusCode::TOO_MANY_REQUESTS, &h, google)
            .status()
            .as_u16(),
        429
    );
    let anthropic = br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}"#;
    let e = v.decode_error(StatusCode::BAD_REQUEST, &h, anthropic);
    assert_eq!(e.status().as_u16(), 400);
    assert_eq!(e.message(), "max_tokens: too big");
    assert_eq!(
        v.decode_error(StatusCode::SERVICE_UNAVAILABLE, &h, b"<html>")
            .status()
            .as_u16(),
        503
    );

    let mut s = v.stream_decoder(&d);
    let mut out = Vec::new();
    s.event(
        SseEvent {
            event: None,
            data: r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"a"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":1,"totalTokenCount":2}}"#.into(),
        },
        &mut out,
    )
    .unwrap();
    assert!(s.is_done());
    s.finish(&mut out).unwrap();
    assert!(!out.is_empty());

    let mut s = v.stream_decoder(&d);
    let mut out = Vec::new();
    s.event(
        SseEvent {
            event: Some("message_start".into()),
            data: r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"c","content":[],"stop_reason":null,"usage":{"input_tokens":1,"output_tokens":0}}}"#.into(),
        },
        &mut out,
    )
    .unwrap();
    assert!(!s.is_done());
    assert!(s.finish(&mut out).is_err(), "cut short before message_stop");

    let mut s = v.stream_decoder(&d);
    assert!(s.finish(&mut Vec::new()).is_err(), "an empty stream");
}

#[test]
fn token_answers_are_parsed_strictly() {
    let ok = Bytes::from_static(
        br#"{"access_token":"ya29.abc","expires_in":3599,"token_type":"Bearer","id_token":"x"}"#,
    );
    let (h, life) = parse_token(&ok).unwrap();
    assert_eq!(h, "Bearer ya29.abc");
    assert!(h.is_sensitive());
    assert_eq!(life, std::time::Duration::from_secs(3599));
    let long = format!(
        r#"{{"access_token":"{}","expires_in":1,"token_type":"Bearer"}}"#,
        "a".repeat(4097)
    );
    for bad in [
        r#"{"access_token":"","expires_in":10,"token_type":"Bearer"}"#,
        r#"{"access_token":"a b","expires_in":10,"token_type":"Bearer"}"#,
        "{\"access_token\":\"a\\nb\",\"expires_in\":10,\"token_type\":\"Bearer\"}",
        r#"{"access_token":"abc","expires_in":0,"token_type":"Bearer"}"#,
        r#"{"access_token":"abc","expires_in":86401,"token_type":"Bearer"}"#,
        r#"{"access_token":"abc","expires_in":-5,"token_type":"Bearer"}"#,
        r#"{"access_token":"abc","expires_in":"10","token_type":"Bearer"}"#,
        r#"{"access_token":"abc","expires_in":10,"token_type":"mac"}"#,
        r#"{"access_token":"abc","expires_in":10}"#,
        r#"{"access_token":7,"expires_in":10,"token_type":"Bearer"}"#,
        r#"<html>"#,
        &long,
    ] {
        let e = parse_token(&Bytes::from(bad.to_owned())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Upstream, "{bad}");
        assert!(!e.message().contains("abc"), "{}", e.message());
    }
}

#[test]
fn the_grant_is_an_rs256_jwt_the_account_signed() {
    use base64::Engine as _;
    let json = crate::demo::test_service_account_json("https://oauth2.example/token");
    let sa = ServiceAccount::from_json(json.as_bytes()).unwrap();
    assert_eq!(sa.client_email(), crate::demo::TEST_SERVICE_ACCOUNT_EMAIL);
    assert!(!format!("{sa:?}").contains("PRIVATE"));
    let jwt = sa.assertion(1_700_000_000).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], crate::demo::TEST_SERVICE_ACCOUNT_EMAIL);
    assert_eq!(claims["scope"], auth::SCOPE);
    assert_eq!(claims["aud"], "https://oauth2.example/token");
    assert_eq!(claims["iat"], 1_700_000_000);
    assert_eq!(claims["exp"], 1_700_003_600);
    // Verified with the public half, as Google does.
    use ring::signature::KeyPair as _;
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(
        crate::demo::TEST_SERVICE_ACCOUNT_KEY.as_bytes(),
    )
    .unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
    let signed = &jwt[..parts[0].len() + 1 + parts[1].len()];
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public_key().as_ref(),
    )
    .verify(signed.as_bytes(), &b64.decode(parts[2]).unwrap())
    .unwrap();

    for bad in [
        r#"{"type":"service_account"}"#,
        r#"{"type":"authorized_user","client_email":"a","private_key":"k"}"#,
        r#"{"type":"service_account","client_email":"a","private_key":"not a pem"}"#,
        "[]",
    ] {
        let e = ServiceAccount::from_json(bad.as_bytes()).unwrap_err();
        assert!(!e.message().contains("not a pem"), "{}", e.message());
    }
    let mut file: serde_json::Value = serde_json::from_str(&json).unwrap();
    file["token_uri"] = "file:///etc/passwd".into();
    assert!(ServiceAccount::from_json(file.to_string().as_bytes()).is_err());
    assert!(ServiceAccount::from_json(&vec![b' '; 65 * 1024]).is_err());
}

#[test]
fn claude_models_take_anthropics_parameters() {
    use crate::provider::Parameters;
    assert!(ProviderKind::Vertex
        .parameters_for("gemini-2.5-flash")
        .contains(Parameters::SEED));
    assert!(!ProviderKind::Vertex
        .parameters_for("claude-sonnet-4@20250514")
        .contains(Parameters::SEED));
}
