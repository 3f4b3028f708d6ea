//! ClientKeys: the gateway's own API keys. Checks `Authorization: Bearer <key>` or
//! `x-api-key: <key>` (401; the edge checks it before reading the body), sets
//! the [`CallerKey`] (so budgets apply per key), enforces a per-key model allow-list (403) and
//! rate limits in requests and tokens per minute (429 with `Retry-After`).
//!
//! Embedding apps with their own auth don't need it: they insert [`CallerKey`] themselves.
//! Place it outermost in the typed stack (before ModelResolve). Keys are compared in constant
//! time and never logged; the caller is known by the key's `name`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use switchboard::ext::CallerKey;
//! use switchboard::keys::{ClientKeysLayer, KeyPolicy};
//! use switchboard::{ChatHttpRequest, ChatHttpResponse, Error, ErrorKind};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! let inner = service_fn(|req: ChatHttpRequest| async move {
//!     assert_eq!(req.extensions().get::<CallerKey>().unwrap().0.as_ref(), "alice");
//!     Err::<ChatHttpResponse, _>(Error::upstream("not reached in this example"))
//! });
//! let svc = ClientKeysLayer::new()
//!     .key("sk-alice", KeyPolicy::new("alice").allow_models(["openai/*"]))
//!     .layer(inner);
//! let chat = std::sync::Arc::new(
//!     switchboard::openai::ChatRequest::from_slice(
//!         br#"{"model":"anthropic/claude-sonnet-4","messages":[{"role":"user","content":"hi"}]}"#,
//!     )
//!     .unwrap(),
//! );
//! let req = http::Request::builder()
//!     .header("authorization", "Bearer sk-alice")
//!     .body(chat)
//!     .unwrap();
//! let err = svc.clone().oneshot(req).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Forbidden);
//! # }
//! ```

pub mod future;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::chat::{ChatHttpRequest, ChatHttpResponse};
use crate::ext::CallerKey;
use crate::openai::ChatRequest;
use crate::{Error, ErrorKind};

/// What one client key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    name: Arc<str>,
    models: Option<Vec<String>>,
    requests_per_minute: Option<u32>,
    tokens_per_minute: Option<u32>,
}

impl KeyPolicy {
    /// A key known as `name` (its [`CallerKey`]), with no limits.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            models: None,
            requests_per_minute: None,
            tokens_per_minute: None,
        }
    }

    /// Only these model ids or aliases (a trailing `*` matches a prefix, e.g. `openai/*`).
    #[must_use]
    pub fn allow_models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.models = Some(models.into_iter().map(Into::into).collect());
        self
    }

    /// At most `n` requests per minute.
    #[must_use]
    pub fn requests_per_minute(mut self, n: u32) -> Self {
        self.requests_per_minute = Some(n);
        self
    }

    /// At most `n` tokens per minute (prompt estimate plus `max_tokens`).
    #[must_use]
    pub fn tokens_per_minute(mut self, n: u32) -> Self {
        self.tokens_per_minute = Some(n);
        self
    }

    /// The caller name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn allows(&self, model: &str) -> bool {
        let Some(list) = &self.models else {
            return true;
        };
        list.iter().any(|m| match m.strip_suffix('*') {
            Some(prefix) => model.starts_with(prefix),
            None => m == model,
        })
    }
}

/// A token bucket refilled continuously over a minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes `n` of a per-minute `capacity`, or says how long until they are there.
    fn take(&mut self, n: f64, capacity: f64, now: Instant) -> Result<(), Duration> {
        let rate = capacity / 60.0;
        self.tokens =
            (self.tokens + rate * now.duration_since(self.at).as_secs_f64()).min(capacity);
        self.at = now;
        if n > capacity {
            return Err(Duration::from_secs(60));
        }
        if self.tokens >= n {
            self.tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - self.tokens) / rate))
        }
    }
}

#[derive(Debug, Default)]
struct Limits {
    requests: HashMap<Arc<str>, Bucket>,
    tokens: HashMap<Arc<str>, Bucket>,
}

/// Layer for [`ClientKeys`].
#[derive(Clone, Default)]
pub struct ClientKeysLayer {
    /// SHA-256 digests of the accepted keys: the secrets themselves are never kept.
    keys: Arc<Vec<(KeyDigest, KeyPolicy)>>,
    limits: Arc<Mutex<Limits>>,
}

/// The SHA-256 digest of a gateway key.
type KeyDigest = [u8; 32];

/// A key the edge found in a request's headers and matched against the configured digests
/// (request extension; only this crate can make one, so a client cannot forge it).
#[derive(Clone)]
pub(crate) struct PresentedKey(KeyDigest);

impl std::fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresentedKey(..)")
    }
}

fn digest(secret: &str) -> KeyDigest {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// Parses 64 hexadecimal digits.
fn parse_hex_digest(hex: &str) -> Option<KeyDigest> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let nibble = |c: u8| (c as char).to_digit(16);
        *o = u8::try_from(nibble(pair[0])? * 16 + nibble(pair[1])?).ok()?;
    }
    Some(out)
}

impl std::fmt::Debug for ClientKeysLayer {
    /// Names the keys' callers, never the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKeysLayer")
            .field(
                "keys",
                &self.keys.iter().map(|(_, p)| p.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ClientKeysLayer {
    /// No keys yet (every request is refused until keys are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `secret` with `policy`.
    #[must_use]
    pub fn key(self, secret: impl AsRef<str>, policy: KeyPolicy) -> Self {
        self.insert(digest(secret.as_ref()), policy)
    }

    /// Accepts the key whose SHA-256 digest is `sha256_hex` (64 hexadecimal digits, as
    /// `printf %s "$KEY" | sha256sum` prints it), with `policy`: the configuration need not
    /// hold the key itself.
    ///
    /// # Errors
    /// An [`ErrorKind::InvalidRequest`] when `sha256_hex` is not 64 hexadecimal digits.
    pub fn key_sha256(self, sha256_hex: &str, policy: KeyPolicy) -> Result<Self, Error> {
        let d = parse_hex_digest(sha256_hex).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidRequest,
                "a key's sha256 must be 64 hexadecimal digits",
            )
        })?;
        Ok(self.insert(d, policy))
    }

    fn insert(mut self, d: KeyDigest, policy: KeyPolicy) -> Self {
        let keys = Arc::make_mut(&mut self.keys);
        keys.retain(|(k, _)| *k != d);
        keys.push((d, policy));
        self
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl<S> Layer<S> for ClientKeysLayer {
    type Service = ClientKeys<S>;
    fn layer(&self, inner: S) -> ClientKeys<S> {
        ClientKeys {
            inner,
            layer: self.clone(),
        }
    }
}

/// The key-checking service; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ClientKeys<S> {
    inner: S,
    layer: ClientKeysLayer,
}

impl<S> ClientKeys<S> {
    crate::macros::inner_service_accessors!(inner: S);
}

/// Constant-time equality for secrets.
#[cfg(test)]
fn hex_digest(secret: &str) -> String {
    digest(secret).iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two digests in time independent of where they differ.
fn ct_eq(a: &KeyDigest, b: &KeyDigest) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ClientKeysLayer {
    /// The policy of a key's digest, compared with every configured digest (fixed length,
    /// constant time, no early exit), so neither the keys' lengths nor their prefixes leak
    /// through timing.
    fn by_digest(&self, d: &KeyDigest) -> Option<&KeyPolicy> {
        let mut found = None;
        for (k, policy) in self.keys.iter() {
            if ct_eq(k, d) {
                found = Some(policy);
            }
        }
        found
    }

    /// Checks the key a request presents in its headers (`Authorization: Bearer <key>`, or
    /// `x-api-key: <key>` as Anthropic clients send it): a 401 when it is missing or unknown.
    /// The edge calls this before reading the body.
    pub(crate) fn authenticate(&self, headers: &http::HeaderMap) -> Result<PresentedKey, Error> {
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .map(str::trim)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unauthorized,
                    "missing API key: send `Authorization: Bearer <key>`",
                )
            })?;
        let d = digest(presented);
        if self.by_digest(&d).is_none() {
            return Err(Error::new(ErrorKind::Unauthorized, "invalid API key"));
        }
        Ok(PresentedKey(d))
    }

    fn check(&self, req: &ChatHttpRequest) -> Result<CallerKey, Error> {
        let presented = match req.extensions().get::<PresentedKey>() {
            Some(p) => p.clone(),
            None => self.authenticate(req.headers())?,
        };
        let policy = self
            .by_digest(&presented.0)
            .ok_or_else(|| Error::new(ErrorKind::Unauthorized, "invalid API key"))?;
        let chat: &ChatRequest = req.body();
        let requested = std::iter::once(chat.model.as_str())
            .filter(|m| !m.is_empty())
            .chain(chat.models.iter().flatten().map(String::as_str));
        for m in requested {
            if !policy.allows(m) {
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    format!("this API key may not use model `{m}`"),
                )
                .with_param("model"));
            }
        }
        let now = Instant::now();
        let mut limits = self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(rpm) = policy.requests_per_minute {
            let cap = f64::from(rpm);
            let b = limits
                .requests
                .entry(policy.name.clone())
                .or_insert(Bucket {
                    tokens: cap,
                    at: now,
                });
            b.take(1.0, cap, now)
                .map_err(|wait| limited("requests", wait))?;
        }
        if let Some(tpm) = policy.tokens_per_minute {
            let cap = f64::from(tpm);
            let n =
                chat.summary.estimated_tokens() + u64::from(chat.max_output_tokens().unwrap_or(0));
            let b = limits.tokens.entry(policy.name.clone()).or_insert(Bucket {
                tokens: cap,
                at: now,
            });
            b.take(n as f64, cap, now)
                .map_err(|wait| limited("tokens", wait))?;
        }
        Ok(CallerKey(policy.name.clone()))
    }
}

fn limited(what: &str, wait: Duration) -> Error {
    Error::new(
        ErrorKind::RateLimited,
        format!("rate limit for this API key exceeded ({what} per minute)"),
    )
    .with_retry_after(wait.max(Duration::from_secs(1)))
}

impl<S> Service<ChatHttpRequest> for ClientKeys<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error>,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = future::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ChatHttpRequest) -> Self::Future {
        match self.layer.check(&req) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                future::ResponseFuture::inner(self.inner.call(req))
            }
            Err(e) => future::ResponseFuture::failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatResponse;
    use tower::{service_fn, ServiceExt};

    fn req(key: Option<&str>, body: &str) -> ChatHttpRequest {
        let mut b = http::Request::builder();
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        b.body(Arc::new(ChatRequest::from_slice(body.as_bytes()).unwrap()))
            .unwrap()
    }

    fn ok(
    ) -> impl Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error, Future = impl Send>
           + Clone {
        service_fn(|r: ChatHttpRequest| async move {
            let who = r.extensions().get::<CallerKey>().unwrap().0.to_string();
            Ok(http::Response::new(ChatResponse::from(
                crate::openai::ChatCompletion {
                    id: who,
                    object: "chat.completion".into(),
                    created: 0,
                    model: "m".into(),
                    choices: vec![],
                    usage: None,
                    system_fingerprint: None,
                    service_tier: None,
                    provider: None,
                },
            )))
        })
    }

    const BODY: &str = r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

    #[tokio::test]
    async fn keys_callers_and_allow_lists() {
        let svc = ClientKeysLayer::new()
            .key(
                "sk-a",
                KeyPolicy::new("alice").allow_models(["openai/*", "fast"]),
            )
            .key("sk-b", KeyPolicy::new("bob"))
            .layer(ok());
        assert_eq!(
            svc.clone()
                .oneshot(req(None, BODY))
                .await
                .unwrap_err()
                .status(),
            401
        );
        assert_eq!(
            svc.clone()
                .oneshot(req(Some("sk-x"), BODY))
                .await
                .unwrap_err()
                .status(),
            401
        );
        let r = svc.clone().oneshot(req(Some("sk-a"), BODY)).await.unwrap();
        assert_eq!(
            r.into_body()
                .into_complete()
                .unwrap()
                .into_typed()
                .unwrap()
                .id,
            "alice"
        );
        let other = r#"{"model":"openai/gpt-4o","models":["anthropic/claude"],"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(
            svc.clone()
                .oneshot(req(Some("sk-a"), other))
                .await
                .unwrap_err()
                .status(),
            403
        );
        assert!(svc.oneshot(req(Some("sk-b"), other)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_in_requests_and_tokens() {
        let svc = ClientKeysLayer::new()
            .key("sk-a", KeyPolicy::new("a").requests_per_minute(2))
            .key("sk-t", KeyPolicy::new("t").tokens_per_minute(100))
            .layer(ok());
        assert!(svc.clone().oneshot(req(Some("sk-a"), BODY)).await.is_ok());
        assert!(svc.clone().oneshot(req(Some("sk-a"), BODY)).await.is_ok());
        let e = svc
            .clone()
            .oneshot(req(Some("sk-a"), BODY))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 429);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(svc.clone().oneshot(req(Some("sk-a"), BODY)).await.is_ok());
        let big = r#"{"model":"m","max_tokens":90,"messages":[{"role":"user","content":"hi"}]}"#;
        assert!(svc.clone().oneshot(req(Some("sk-t"), big)).await.is_ok());
        let e = svc
            .clone()
            .oneshot(req(Some("sk-t"), big))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
    }

    #[tokio::test]
    async fn keys_are_kept_as_digests_and_never_printed() {
        // sha256("sk-hashed")
        let hex = "1f1c3d2ac0a55d6f8e8f0e2b5cf0e3c3a8a3ad35b0c7f5f1b7bde9e6d3c8c4a1";
        let layer = ClientKeysLayer::new()
            .key("sk-plain-SECRET", KeyPolicy::new("plain"))
            .key_sha256(&super::hex_digest("sk-hashed"), KeyPolicy::new("hashed"))
            .unwrap();
        let printed = format!("{layer:?}");
        assert!(
            printed.contains("plain") && printed.contains("hashed"),
            "{printed}"
        );
        assert!(
            !printed.contains("SECRET") && !printed.contains("sk-"),
            "{printed}"
        );
        let svc = layer.clone().layer(ok());
        let r = svc
            .clone()
            .oneshot(req(Some("sk-hashed"), BODY))
            .await
            .unwrap();
        assert_eq!(
            r.into_body()
                .into_complete()
                .unwrap()
                .into_typed()
                .unwrap()
                .id,
            "hashed"
        );
        let r = svc
            .clone()
            .oneshot(req(Some("sk-plain-SECRET"), BODY))
            .await
            .unwrap();
        assert_eq!(
            r.into_body()
                .into_complete()
                .unwrap()
                .into_typed()
                .unwrap()
                .id,
            "plain"
        );
        // A prefix, a longer key and a wrong digest are all refused the same way.
        for bad in ["sk-plain", "sk-plain-SECRET-and-more", hex] {
            let e = svc.clone().oneshot(req(Some(bad), BODY)).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unauthorized);
        }
        assert!(ClientKeysLayer::new()
            .key_sha256("abc", KeyPolicy::new("x"))
            .is_err());
        // The digest as `printf %s abc | sha256sum` prints it (upper case accepted too).
        let abc = ClientKeysLayer::new()
            .key_sha256(
                "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                KeyPolicy::new("abc"),
            )
            .unwrap()
            .layer(ok());
        assert!(abc.oneshot(req(Some("abc"), BODY)).await.is_ok());
        assert!(ClientKeysLayer::new()
            .key_sha256(&"g".repeat(64), KeyPolicy::new("x"))
            .is_err());
    }
}
