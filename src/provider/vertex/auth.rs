//! [`GoogleAuth`]: OAuth2 access tokens for Google APIs, as a [`ProviderAuth`].
//!
//! # Where credentials come from
//!
//! - A **service account** key file (JSON with `"type": "service_account"`, `client_email`,
//!   `private_key` as a PKCS#8 PEM, optional `private_key_id` and `token_uri`): the gateway
//!   signs a JWT with RS256 (claims `iss` = the account, `scope` =
//!   `https://www.googleapis.com/auth/cloud-platform`, `aud` = the token URI, `iat`, `exp` one
//!   hour later) and POSTs it to the account's own `token_uri` (default
//!   `https://oauth2.googleapis.com/token`) as a
//!   `urn:ietf:params:oauth:grant-type:jwt-bearer` grant. Signing uses `ring`.
//! - The **GCE metadata server** (`GET http://metadata.google.internal/computeMetadata/v1/
//!   instance/service-accounts/default/token` with `Metadata-Flavor: Google`), on Google
//!   Cloud machines without a key file.
//!
//! # Caching
//!
//! One token per provider, kept until shortly before it expires (a minute early, or a quarter
//! of its lifetime when that is shorter) and then fetched again. However many requests need
//! a token at once, only one fetch runs: the others wait for it (a lock held around the fetch
//! only, never across a request to the model). A fetch that fails is answered to every
//! request that was already waiting for it, without fetching again for each; the next
//! request after that tries afresh. A failure is the gateway's own credentials failing: a
//! 502 ([`ErrorKind::Upstream`](crate::ErrorKind::Upstream)), which moves on to the next
//! provider, never the client's 401.
//!
//! # Bounds
//!
//! The token endpoint's answer is hostile input: at most 64 KiB is read, within 10 s; it must
//! be JSON with a string `access_token` of 1 to 4096 visible ASCII characters, `token_type`
//! `Bearer` and a whole `expires_in` of 1 to 86 400 seconds, or the fetch fails. Its error
//! bodies are never shown to clients. Key files larger than 64 KiB are refused. The key and
//! the token are never logged, and sent only as sensitive header values.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method};
use serde::Deserialize;
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::client::{HttpClient, UpstreamBody};
use crate::provider::ProviderAuth;
use crate::Error;

/// The scope asked for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint, when a key file names none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The GCE metadata server's token URL.
pub const METADATA_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";

/// The largest token answer read, and the largest key file accepted.
const MAX_BYTES: usize = 64 * 1024;
/// How long one token fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long before expiry a token is replaced (at most).
const REFRESH_EARLY: Duration = Duration::from_secs(60);
/// The lifetime asked for in the JWT grant.
const ASSERTION_LIFETIME: u64 = 3600;

/// A service account's key: who it is, how it signs, where it gets tokens.
pub struct ServiceAccount {
    client_email: String,
    private_key_id: Option<String>,
    token_uri: http::Uri,
    key: ring::signature::RsaKeyPair,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

fn config_error(msg: impl Into<String>) -> Error {
    Error::invalid_request(msg.into()).with_code("invalid_config")
}

impl ServiceAccount {
    /// Reads a key file's JSON. The error never quotes the key.
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        #[derive(Deserialize)]
        struct File {
            #[serde(rename = "type")]
            kind: String,
            client_email: String,
            private_key: String,
            #[serde(default)]
            private_key_id: Option<String>,
            #[serde(default)]
            token_uri: Option<String>,
        }
        if json.len() > MAX_BYTES {
            return Err(config_error(
                "the service account key file is larger than 64 KiB",
            ));
        }
        let f: File = serde_json::from_slice(json).map_err(|e| {
            // serde's message names fields and positions, never values of strings it read.
            config_error(format!(
                "the service account key file is not a Google key file (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if f.kind != "service_account" {
            return Err(config_error(format!(
                "the credentials are of type `{}`; only `service_account` key files are supported",
                f.kind.chars().take(40).collect::<String>()
            )));
        }
        if f.client_email.is_empty() {
            return Err(config_error(
                "the service account key file has an empty `client_email`",
            ));
        }
        let token_uri = f.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI);
        let token_uri = parse_http_url(token_uri)
            .ok_or_else(|| config_error("the key file's `token_uri` is not an http(s) URL"))?;
        Self::new(f.client_email, f.private_key_id, &f.private_key, token_uri)
    }

    /// A service account from its parts: `private_key_pem` is a PKCS#8 PEM
    /// (`-----BEGIN PRIVATE KEY-----`) RSA key.
    pub fn new(
        client_email: String,
        private_key_id: Option<String>,
        private_key_pem: &str,
        token_uri: http::Uri,
    ) -> Result<Self, Error> {
        use rustls_pki_types::pem::PemObject as _;
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(private_key_pem.as_bytes())
            .map_err(|_| config_error("the service account's `private_key` is not a PKCS#8 PEM"))?;
        let key = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|_| config_error("the service account's `private_key` is not an RSA key"))?;
        Ok(Self {
            client_email,
            private_key_id: private_key_id.filter(|k| !k.is_empty()),
            token_uri,
            key,
        })
    }

    /// The account's email.
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// Where its tokens come from.
    pub fn token_uri(&self) -> &http::Uri {
        &self.token_uri
    }

    /// The signed JWT grant (`header.claims.signature`, base64url), issued at `iat`.
    pub fn assertion(&self, iat: u64) -> Result<String, Error> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = kid.as_str().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri.to_string(),
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME,
        });
        let mut jwt = b64.encode(header.to_string());
        jwt.push('.');
        jwt.push_str(&b64.encode(claims.to_string()));
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                jwt.as_bytes(),
                &mut sig,
            )
            .map_err(|_| Error::upstream("could not sign the service account's token request"))?;
        jwt.push('.');
        jwt.push_str(&b64.encode(sig));
        Ok(jwt)
    }
}

fn parse_http_url(s: &str) -> Option<http::Uri> {
    let uri: http::Uri = s.parse().ok()?;
    matches!(uri.scheme_str(), Some("http" | "https"))
        .then_some(())
        .and(uri.host())?;
    Some(uri)
}

/// Where tokens come from.
#[derive(Debug)]
enum Source {
    ServiceAccount(Box<ServiceAccount>),
    /// The metadata server's token URL, and whether the config named it (then it counts as
    /// credentials: the operator says the gateway runs where it answers).
    Metadata(http::Uri, bool),
}

/// A token and when to replace it.
#[derive(Clone)]
struct Cached {
    header: HeaderValue,
    refresh_at: Instant,
}

/// The outcome of the last fetch, for the requests that waited for it.
#[derive(Default)]
struct State {
    token: Option<Cached>,
    /// When the last failed fetch ended, and its error.
    failure: Option<(Instant, Error)>,
}

struct Inner {
    source: Source,
    client: HttpClient,
    state: Mutex<State>,
    /// Held by the one fetch in flight.
    refresh: tokio::sync::Mutex<()>,
}

/// OAuth2 access tokens from a service account or the metadata server, added to each request
/// as `Authorization: Bearer …`. See the [module docs](self). Cheap to clone (clones share
/// the token).
#[derive(Clone)]
pub struct GoogleAuth {
    inner: Arc<Inner>,
}

impl fmt::Debug for GoogleAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleAuth")
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

impl GoogleAuth {
    fn with_source(source: Source) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                client: HttpClient::new(),
                state: Mutex::new(State::default()),
                refresh: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Tokens for a service account.
    pub fn service_account(account: ServiceAccount) -> Self {
        Self::with_source(Source::ServiceAccount(Box::new(account)))
    }

    /// Tokens for the service account in a key file's JSON.
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        ServiceAccount::from_json(json).map(Self::service_account)
    }

    /// Tokens from the GCE metadata server at its usual URL.
    pub fn metadata_server() -> Self {
        Self::with_source(Source::Metadata(
            http::Uri::from_static(METADATA_TOKEN_URL),
            false,
        ))
    }

    /// Tokens from a metadata server at `url` (tests, proxies).
    pub fn metadata_server_at(url: &str) -> Result<Self, Error> {
        let uri = parse_http_url(url)
            .ok_or_else(|| config_error("the metadata server URL is not an http(s) URL"))?;
        Ok(Self::with_source(Source::Metadata(uri, true)))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh(&self) -> Option<HeaderValue> {
        let s = self.state();
        let t = s.token.as_ref()?;
        (Instant::now() < t.refresh_at).then(|| t.header.clone())
    }

    /// A valid `Bearer …` header value: the cached one, or a fetched one (one fetch at a
    /// time).
    pub async fn header(&self) -> Result<HeaderValue, Error> {
        if let Some(h) = self.fresh() {
            return Ok(h);
        }
        let waiting_since = Instant::now();
        let _one = self.inner.refresh.lock().await;
        if let Some(h) = self.fresh() {
            return Ok(h);
        }
        // A fetch that failed while this request waited is its answer too.
        if let Some((at, e)) = &self.state().failure {
            if *at >= waiting_since {
                return Err(e.clone());
            }
        }
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch()).await {
            Ok(Ok((header, lifetime))) => {
                let early = REFRESH_EARLY.min(lifetime / 4);
                let cached = Cached {
                    header: header.clone(),
                    refresh_at: Instant::now() + lifetime.saturating_sub(early),
                };
                let mut s = self.state();
                s.token = Some(cached);
                s.failure = None;
                Ok(header)
            }
            Ok(Err(e)) => Err(self.failed(e)),
            Err(_) => Err(self.failed(Error::upstream(
                "the Google token endpoint did not answer in time",
            ))),
        }
    }

    fn failed(&self, e: Error) -> Error {
        let e = e.with_code("upstream_auth_failed");
        self.state().failure = Some((Instant::now(), e.clone()));
        tracing::warn!(error = %e.message(), "fetching a Google access token failed");
        e
    }

    /// One token request.
    async fn fetch(&self) -> Result<(HeaderValue, Duration), Error> {
        let req = match &self.inner.source {
            Source::ServiceAccount(sa) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mut body = String::from(
                    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=",
                );
                // base64url and dots: nothing to escape in a form.
                body.push_str(&sa.assertion(now)?);
                http::Request::builder()
                    .method(Method::POST)
                    .uri(sa.token_uri.clone())
                    .header(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/x-www-form-urlencoded"),
                    )
                    .body(UpstreamBody::from(body))
            }
            Source::Metadata(url, _) => http::Request::builder()
                .method(Method::GET)
                .uri(url.clone())
                .header("metadata-flavor", HeaderValue::from_static("Google"))
                .body(UpstreamBody::default()),
        }
        .map_err(|_| Error::upstream("could not build the token request"))?;
        let resp = self.inner.client.clone().oneshot(req).await.map_err(|e| {
            Error::upstream("could not reach the Google token endpoint")
                .with_source(Box::new(e) as crate::BoxError)
        })?;
        let (parts, body) = resp.into_parts();
        let bytes = crate::body_util::read_to_bytes(body, MAX_BYTES)
            .await
            .map_err(|_| {
                Error::upstream("the Google token endpoint's answer was cut short or too large")
            })?;
        if !parts.status.is_success() {
            return Err(Error::upstream(format!(
                "the Google token endpoint refused the gateway's credentials (status {}{})",
                parts.status.as_u16(),
                oauth_error_code(&bytes)
                    .map(|c| format!(", `{c}`"))
                    .unwrap_or_default()
            )));
        }
        parse_token(&bytes)
    }
}

/// The OAuth2 `error` code of a refusal (`invalid_grant`), when it is a short plain word:
/// never the description, which may quote the request.
fn oauth_error_code(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct E {
        error: String,
    }
    let e: E = serde_json::from_slice(body).ok()?;
    (!e.error.is_empty()
        && e.error.len() <= 40
        && e.error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    .then_some(e.error)
}

/// Reads a token answer (see the module docs, "Bounds"): the `Bearer …` header value
/// (sensitive) and the token's lifetime.
pub(crate) fn parse_token(body: &Bytes) -> Result<(HeaderValue, Duration), Error> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: String,
        token_type: String,
        expires_in: u64,
    }
    let bad = |why: &str| Error::upstream(format!("the Google token endpoint's answer {why}"));
    let a: Answer =
        serde_json::from_slice(body).map_err(|_| bad("is not a token (invalid JSON or fields)"))?;
    if !a.token_type.eq_ignore_ascii_case("bearer") {
        return Err(bad("is not a bearer token"));
    }
    if a.access_token.is_empty()
        || a.access_token.len() > 4096
        || !a.access_token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad(
            "has an access token that is empty, too long or not plain ASCII",
        ));
    }
    if !(1..=86_400).contains(&a.expires_in) {
        return Err(bad("has an expiry outside 1 to 86400 seconds"));
    }
    let mut header = HeaderValue::try_from(format!("Bearer {}", a.access_token))
        .map_err(|_| bad("has an access token that is not a header value"))?;
    header.set_sensitive(true);
    Ok((header, Duration::from_secs(a.expires_in)))
}

impl ProviderAuth for GoogleAuth {
    fn authorize<'a>(
        &'a self,
        req: &'a mut http::Request<UpstreamBody>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let header = self.header().await?;
            req.headers_mut().insert(AUTHORIZATION, header);
            Ok(())
        })
    }

    /// A service account's key is credentials, and so is a metadata server URL the config
    /// names; the default metadata server is not probed.
    fn has_credentials(&self) -> bool {
        matches!(
            self.inner.source,
            Source::ServiceAccount(_) | Source::Metadata(_, true)
        )
    }
}
