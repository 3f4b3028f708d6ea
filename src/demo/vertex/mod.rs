//! The Google Vertex AI demo provider: Gemini (`publishers/google`) and Claude
//! (`publishers/anthropic`) under `/v1/projects/{project}/locations/{location}/…`, behind
//! OAuth2 access tokens from its own token endpoint.
//!
//! - `POST /token`: a service account's JWT grant (`grant_type=urn:ietf:params:oauth:
//!   grant-type:jwt-bearer&assertion=…`). The assertion must be an RS256 JWT signed by the
//!   [test service account](TEST_SERVICE_ACCOUNT_EMAIL)'s key (verified with its public key),
//!   with `iss` the account, a `scope` naming `cloud-platform`, `aud` this endpoint's URL,
//!   `iat` within five minutes of now and `exp` after now, at most an hour after `iat`.
//!   Failures get Google's OAuth2 error (`400 {"error": "invalid_grant", …}`). It answers
//!   `{"access_token", "expires_in", "token_type": "Bearer"}`; tokens live for
//!   [`DemoConfig::with_token_lifetime`](super::DemoConfig::with_token_lifetime).
//! - `GET /computeMetadata/v1/instance/service-accounts/default/token` with
//!   `Metadata-Flavor: Google`: a token as the GCE metadata server gives one.
//! - The model endpoints need `Authorization: Bearer <token>` with a token this server issued
//!   that has not expired, else Google's `401 UNAUTHENTICATED`. Google models take
//!   `:generateContent` / `:streamGenerateContent` and are checked and answered as the Gemini
//!   demo does; Claude models take `:rawPredict` / `:streamRawPredict` with a Messages body
//!   that has no `model` and has `anthropic_version: "vertex-2023-10-16"` (and `stream: true`
//!   exactly for `:streamRawPredict`), and are checked and answered as the Anthropic demo does.
//!   Google's embedding models take `:predict` (`{"instances": [{"content"}], "parameters":
//!   {"outputDimensionality"}}`, 1 to 250 instances, checked strictly) and answer
//!   deterministic vectors ([`demo_embedding`](super::demo_embedding); 768 components by
//!   default, 3072 for `gemini-embedding*`) with `statistics.token_count` (words).
//!
//! Faults are not applied to the token endpoints.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::wire::{Ctx, Reply};
use super::{anthropic, gemini};

/// The test service account's email.
pub const TEST_SERVICE_ACCOUNT_EMAIL: &str =
    "switchboard-demo@switchboard-demo.iam.gserviceaccount.com";

/// TEST-ONLY: the private key of the demo's test service account, a 2048-bit RSA key made for
/// the local demo and published with the source. Nothing but the demo's own token endpoint
/// trusts it; never use it for anything else.
pub const TEST_SERVICE_ACCOUNT_KEY: &str = include_str!("test_service_account_key.pem");

/// The `private_key_id` of the test key.
const TEST_KEY_ID: &str = "switchboard-demo-test-key";

/// The project the demo catalog uses.
pub const DEMO_PROJECT: &str = "switchboard-demo";

/// Paths of the token endpoints.
pub(super) const TOKEN_PATH: &str = "/token";
pub(super) const METADATA_PATH: &str =
    "/computeMetadata/v1/instance/service-accounts/default/token";

/// A service account key file (JSON) for the test account, with `token_uri` as given.
pub fn test_service_account_json(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": DEMO_PROJECT,
        "private_key_id": TEST_KEY_ID,
        "private_key": TEST_SERVICE_ACCOUNT_KEY,
        "client_email": TEST_SERVICE_ACCOUNT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    })
    .to_string()
}

/// The test key's public half (PKCS#1 `RSAPublicKey` DER), derived once.
fn public_key() -> Option<&'static [u8]> {
    static KEY: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    KEY.get_or_init(|| {
        use ring::signature::KeyPair as _;
        use rustls_pki_types::pem::PemObject as _;
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(
            TEST_SERVICE_ACCOUNT_KEY.as_bytes(),
        )
        .ok()?;
        let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).ok()?;
        Some(pair.public_key().as_ref().to_vec())
    })
    .as_deref()
}

/// Tokens issued by one server.
#[derive(Debug, Default)]
pub(super) struct Tokens {
    live: Mutex<HashMap<String, Instant>>,
    issued: AtomicU64,
}

impl Tokens {
    pub(super) fn issued(&self) -> u64 {
        self.issued.load(Ordering::Acquire)
    }

    fn issue(&self, lifetime: Duration) -> (String, u64) {
        let n = self.issued.fetch_add(1, Ordering::AcqRel) + 1;
        let token = format!("ya29.demo-{n}-{}", crate::openai::unique_hex().as_str());
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        live.retain(|_, until| *until > now);
        live.insert(token.clone(), now + lifetime);
        (token, lifetime.as_secs().max(1))
    }

    fn valid(&self, token: &str) -> bool {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.get(token).is_some_and(|until| Instant::now() < *until)
    }
}

fn oauth_error(error: &str, description: &str) -> Reply {
    Reply::json(
        StatusCode::BAD_REQUEST,
        json!({"error": error, "error_description": description}),
    )
}

fn token_reply(tokens: &Tokens, lifetime: Duration) -> Reply {
    let (token, secs) = tokens.issue(lifetime);
    Reply::json(
        StatusCode::OK,
        json!({"access_token": token, "expires_in": secs, "token_type": "Bearer"}),
    )
}

/// Decodes `application/x-www-form-urlencoded` text into pairs.
fn form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &[u8]| {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while let Some(&b) = s.get(i) {
            match b {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = s
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    if let Some(v) = hex {
                        out.push(v);
                        i += 2;
                    } else {
                        out.push(b'%');
                    }
                }
                _ => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split(|b| *b == b'&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let mut it = kv.splitn(2, |b| *b == b'=');
            let k = decode(it.next().unwrap_or_default());
            let v = decode(it.next().unwrap_or_default());
            (k, v)
        })
        .collect()
}

/// The token endpoints (`POST /token`, the metadata server's `GET`).
pub(super) fn token_endpoint(
    tokens: &Tokens,
    lifetime: Duration,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    authority: &str,
    body: &[u8],
) -> Reply {
    if path == METADATA_PATH {
        if method != Method::GET
            || headers.get("metadata-flavor").map(HeaderValue::as_bytes) != Some(b"Google")
        {
            return Reply::json(
                StatusCode::FORBIDDEN,
                json!({"error": "Missing required header: Metadata-Flavor: Google"}),
            );
        }
        return token_reply(tokens, lifetime);
    }
    if method != Method::POST {
        return oauth_error("invalid_request", "Method not allowed.");
    }
    let pairs = form(body);
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return oauth_error("unsupported_grant_type", "Invalid grant_type: ");
    }
    let Some(assertion) = get("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    match check_assertion(assertion, &format!("http://{authority}{TOKEN_PATH}")) {
        Ok(()) => token_reply(tokens, lifetime),
        Err(why) => oauth_error("invalid_grant", why),
    }
}

/// Verifies a JWT grant: RS256 with the test key, and its claims.
fn check_assertion(jwt: &str, audience: &str) -> Result<(), &'static str> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(
            "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe.",
        );
    };
    let header: Value = b64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("Invalid JWT header.")?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("Invalid JWT: unsupported signing algorithm.");
    }
    let sig = b64.decode(s).map_err(|_| "Invalid JWT Signature.")?;
    let key = public_key().ok_or("The demo's test key is unreadable.")?;
    let signed = jwt
        .get(..h.len() + 1 + c.len())
        .ok_or("Invalid JWT Signature.")?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| "Invalid JWT Signature.")?;
    let claims: Value = b64
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("Invalid JWT claims.")?;
    let str_claim = |k: &str| claims.get(k).and_then(Value::as_str);
    if str_claim("iss") != Some(TEST_SERVICE_ACCOUNT_EMAIL) {
        return Err("Invalid email or User ID");
    }
    if !str_claim("scope").is_some_and(|s| {
        s.split(' ')
            .any(|s| s == "https://www.googleapis.com/auth/cloud-platform")
    }) {
        return Err("Invalid OAuth scope or ID token audience provided.");
    }
    if str_claim("aud") != Some(audience) {
        return Err("Invalid JWT: audience is not this token endpoint.");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_u64),
        claims.get("exp").and_then(Value::as_u64),
    ) else {
        return Err("Invalid JWT: iat and exp are required.");
    };
    if iat.abs_diff(now) > 300 || exp <= now || exp < iat || exp - iat > 3600 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.");
    }
    Ok(())
}

fn unauthenticated() -> Reply {
    Reply::json(
        StatusCode::UNAUTHORIZED,
        json!({"error": {
            "code": 401,
            "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            "status": "UNAUTHENTICATED",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                         "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                         "domain": "googleapis.com",
                         "metadata": {"service": "aiplatform.googleapis.com"}}],
        }}),
    )
}

fn not_found() -> Reply {
    Reply::json(
        StatusCode::NOT_FOUND,
        json!({"error": {"code": 404, "message": "Requested entity was not found.",
                         "status": "NOT_FOUND"}}),
    )
}

fn invalid_argument(message: String) -> Reply {
    Reply::json(
        StatusCode::BAD_REQUEST,
        json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}),
    )
}

fn anthropic_invalid(message: &str, seq: u64) -> Reply {
    Reply::json(
        StatusCode::BAD_REQUEST,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": message},
               "request_id": format!("req_vrtx_demo{seq}")}),
    )
}

/// The model endpoints.
pub(super) fn handle(ctx: &Ctx<'_>, tokens: &Tokens) -> Reply {
    // /v1/projects/{p}/locations/{l}/publishers/{publisher}/models/{model}:{method}
    let segs: Vec<&str> = ctx.path.split('/').collect();
    let ["", "v1", "projects", project, "locations", location, "publishers", publisher, "models", last] =
        segs.as_slice()
    else {
        return not_found();
    };
    let Some((model, method)) = last.rsplit_once(':') else {
        return not_found();
    };
    if project.is_empty() || location.is_empty() || model.is_empty() {
        return not_found();
    }
    let bearer = ctx
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| tokens.valid(t)) {
        return unauthenticated();
    }
    let key = HeaderValue::from_str(ctx.config.api_key()).ok();
    let mut headers = ctx.headers.clone();
    headers.remove(http::header::AUTHORIZATION);
    match *publisher {
        "google" if method == "predict" => {
            if *ctx.method != Method::POST || !ctx.model_known(model) {
                return not_found();
            }
            let Some(Value::Object(o)) = ctx.body else {
                return invalid_argument("Invalid JSON payload received. Unexpected token.".into());
            };
            super::embeddings::vertex(o, model).unwrap_or_else(invalid_argument)
        }
        "google" => {
            if !matches!(method, "generateContent" | "streamGenerateContent") {
                return not_found();
            }
            if let Some(k) = key {
                headers.insert("x-goog-api-key", k);
            }
            let path = format!("/v1beta/models/{model}:{method}");
            gemini::handle(&Ctx {
                path: &path,
                headers: &headers,
                ..*ctx
            })
        }
        "anthropic" => {
            let stream = match method {
                "rawPredict" => false,
                "streamRawPredict" => true,
                _ => return not_found(),
            };
            let Some(Value::Object(o)) = ctx.body else {
                return anthropic_invalid("The request body is not a JSON object.", ctx.seq);
            };
            if o.contains_key("model") {
                return anthropic_invalid("model: Extra inputs are not permitted", ctx.seq);
            }
            match o.get("anthropic_version").and_then(Value::as_str) {
                Some(crate::provider::vertex::ANTHROPIC_VERSION) => {}
                Some(_) => return anthropic_invalid("anthropic_version: invalid version", ctx.seq),
                None => return anthropic_invalid("anthropic_version: Field required", ctx.seq),
            }
            if (o.get("stream") == Some(&Value::Bool(true))) != stream {
                return anthropic_invalid(
                    "stream must be true for streamRawPredict, and absent or false for rawPredict",
                    ctx.seq,
                );
            }
            let mut body = o.clone();
            body.remove("anthropic_version");
            body.insert("model".into(), Value::String((*model).to_owned()));
            let body = Value::Object(body);
            if let Some(k) = key {
                headers.insert("x-api-key", k);
            }
            headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
            anthropic::handle(&Ctx {
                path: "/v1/messages",
                headers: &headers,
                body: Some(&body),
                ..*ctx
            })
        }
        _ => not_found(),
    }
}
