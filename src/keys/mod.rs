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
//!
//! # Rate limits
//! Each limit is a token bucket per key: it holds at most the per-minute limit, starts full and
//! refills continuously (a limit of 60 requests per minute gives one back every second). A
//! request draws from both of its key's buckets or from neither: one refused by the tokens
//! limit does not use up a request, and the other way round. The `Retry-After` of a 429 is the
//! time until the refusing bucket holds enough.
//!
//! ## Tokens per minute settle on real usage
//! Before the call a request reserves its prompt estimate (about four bytes a token) plus its
//! `max_completion_tokens`/`max_tokens`, or, without either, a default output allowance
//! ([`DEFAULT_OUTPUT_ALLOWANCE`], 1024 tokens, see
//! [`default_output_allowance`](ClientKeysLayer::default_output_allowance); never more than the
//! limit leaves room for after the prompt). A request whose prompt estimate plus `max_tokens`
//! is more than the whole limit is refused (429, `Retry-After` a minute). When the usage is
//! known the reservation is replaced by it (`total_tokens`): a whole answer's `usage`; a
//! stream's usage chunk, or, when the stream ends or the client hangs up before it, the prompt
//! estimate plus the streamed text at four bytes a token. Tokens reserved but not used are
//! given back; tokens used beyond the reservation are taken too, and may leave the bucket in
//! debt that the refill repays before the key's next request. A failed request gives its
//! reservation back; a whole answer without `usage`, and a request abandoned before its answer,
//! keep what they reserved.
//!
//! ## Shared across instances
//! The buckets live in a [`RateLimitStore`]. By default that is each instance's own memory
//! ([`MemoryRateLimitStore`], no allocation per request), so N gateway instances allow N times
//! the limits. With [`ClientKeysLayer::rate_limit_store`] and a `RedisRateLimitStore`
//! (feature `redis`; the ready gateway uses one when `[cache] redis_url` is set) every instance
//! draws from the same buckets, taken by one atomic Lua script per request and refilled by the
//! Redis server's clock.
//!
//! ## When the store fails: fail open to this instance's buckets
//! A shared store that errs or times out (250 ms by default for Redis) neither refuses the
//! request nor lets it through unlimited: the request is counted in the instance's own
//! buckets, as if it were the only instance (so during an outage N instances allow at most N
//! times the limits). The store is then left alone for five seconds (requests count in the
//! instance's buckets without waiting for it) before it is asked again, so an outage costs a
//! timeout every five seconds, not one per request. Each failure counts in
//! `switchboard_rate_limit_store_errors_total{op="acquire"|"adjust"}` and is logged (a warning
//! at most every ten seconds). Rate limits guard capacity, not money: spend budgets in Redis
//! still fail closed (see [`cost`](crate::cost)). A reservation is settled where it was taken;
//! a settlement the shared store loses leaves the reservation as it was, and the refill clears
//! it within a minute.

pub mod future;
#[cfg(feature = "redis")]
mod redis_store;
mod settle;
mod store;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::chat::{ChatHttpRequest, ChatHttpResponse};
use crate::ext::{CallerKey, ModelAllowList};
use crate::openai::ChatRequest;
use crate::{Error, ErrorKind};

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_store::RedisRateLimitStore;
pub use store::{Decision, Draw, LimitKind, MemoryRateLimitStore, RateLimitStore};

use settle::{Taken, TokenHold};

/// Output tokens a request without `max_tokens` reserves against its key's tokens per minute
/// until its usage is known (see the [module docs](self#tokens-per-minute-settle-on-real-usage)).
pub const DEFAULT_OUTPUT_ALLOWANCE: u32 = 1024;

/// What one client key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    name: Arc<str>,
    models: Option<ModelAllowList>,
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
        self.models = Some(ModelAllowList(models.into_iter().map(Into::into).collect()));
        self
    }

    /// At most `n` requests per minute.
    #[must_use]
    pub fn requests_per_minute(mut self, n: u32) -> Self {
        self.requests_per_minute = Some(n);
        self
    }

    /// At most `n` tokens per minute: a request reserves its prompt estimate plus
    /// `max_tokens` (or the [default output allowance](ClientKeysLayer::default_output_allowance)),
    /// settled on its real usage (see the [module docs](self#tokens-per-minute-settle-on-real-usage)).
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
        self.models.as_ref().is_none_or(|list| list.allows(model))
    }
}

/// Layer for [`ClientKeys`].
#[derive(Clone, Default)]
pub struct ClientKeysLayer {
    /// SHA-256 digests of the accepted keys: the secrets themselves are never kept.
    keys: Arc<Vec<(KeyDigest, KeyPolicy)>>,
    limiter: Limiter,
}

/// Where the rate limits are counted.
#[derive(Clone)]
struct Limiter {
    /// This instance's buckets: the default store, and the fallback of a shared one.
    local: Arc<MemoryRateLimitStore>,
    shared: Option<Arc<dyn RateLimitStore>>,
    /// After the shared store failed: until when it is left alone.
    resting_until: Arc<Mutex<Option<Instant>>>,
    output_allowance: u32,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            local: Arc::default(),
            shared: None,
            resting_until: Arc::default(),
            output_allowance: DEFAULT_OUTPUT_ALLOWANCE,
        }
    }
}

/// How long a shared store that failed is left alone (requests count in this instance's
/// buckets meanwhile), so an outage costs one timeout per interval, not one per request.
const STORE_REST: Duration = Duration::from_secs(5);

/// At most one draw per kind, kept inline.
#[derive(Debug, Clone, Copy)]
struct Draws {
    items: [Draw; 2],
    len: usize,
}

impl Draws {
    fn new() -> Self {
        let none = Draw {
            kind: LimitKind::Requests,
            per_minute: 0,
            amount: 0,
        };
        Self {
            items: [none; 2],
            len: 0,
        }
    }

    fn push(&mut self, d: Draw) {
        self.items[self.len] = d;
        self.len += 1;
    }

    fn as_slice(&self) -> &[Draw] {
        &self.items[..self.len]
    }
}

/// What the key's policy asks of the buckets for one request.
struct Admission {
    caller: Arc<str>,
    /// The key's allow-list, for ModelResolve to apply to every resolved candidate.
    allowed: Option<ModelAllowList>,
    draws: Draws,
    /// The tokens-per-minute reservation, to settle on the usage.
    hold: Option<TokenHold>,
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
            .field("rate_limit_store", &self.limiter.shared)
            .field("output_allowance", &self.limiter.output_allowance)
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

    /// Counts the rate limits in `store` (e.g. a `RedisRateLimitStore` shared by several
    /// gateway instances) instead of this instance's memory. When the store fails, requests
    /// are counted in this instance's memory (see the
    /// [module docs](self#when-the-store-fails-fail-open-to-this-instances-buckets)).
    #[must_use]
    pub fn rate_limit_store(mut self, store: Arc<dyn RateLimitStore>) -> Self {
        self.limiter.shared = Some(store);
        self
    }

    /// Output tokens a request without `max_tokens` reserves against its key's tokens per
    /// minute until its usage is known (default [`DEFAULT_OUTPUT_ALLOWANCE`]; never more than
    /// the limit leaves room for after the prompt).
    #[must_use]
    pub fn default_output_allowance(mut self, tokens: u32) -> Self {
        self.limiter.output_allowance = tokens;
        self
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

    /// The name of the key a request presents (its [`CallerKey`]); a 401 when it is missing
    /// or unknown. For APIs beside the chat routes (the request log's).
    pub fn key_name(&self, headers: &http::HeaderMap) -> Result<Arc<str>, Error> {
        let presented = self.authenticate(headers)?;
        self.by_digest(&presented.0)
            .map(|p| p.name.clone())
            .ok_or_else(|| Error::new(ErrorKind::Unauthorized, "invalid API key"))
    }

    /// The name of a key the edge matched (for the record of a request refused before the
    /// typed stack named its caller).
    pub(crate) fn name_of(&self, presented: &PresentedKey) -> Option<Arc<str>> {
        self.by_digest(&presented.0).map(|p| p.name.clone())
    }

    /// The key, its allow-list, and what the request asks of the key's buckets.
    fn check(&self, req: &ChatHttpRequest) -> Result<Admission, Error> {
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
                    format!(
                        "this API key may not use model `{}`",
                        crate::resolve::limits::quote(m)
                    ),
                )
                .with_param("model"));
            }
        }
        let mut draws = Draws::new();
        if let Some(rpm) = policy.requests_per_minute {
            draws.push(Draw {
                kind: LimitKind::Requests,
                per_minute: rpm,
                amount: 1,
            });
        }
        let mut hold = None;
        if let Some(tpm) = policy.tokens_per_minute {
            let prompt = chat.summary.estimated_tokens();
            let output = match chat.max_output_tokens() {
                Some(n) => u64::from(n),
                None => u64::from(self.limiter.output_allowance)
                    .min(u64::from(tpm).saturating_sub(prompt)),
            };
            let amount = prompt.saturating_add(output);
            if amount > u64::from(tpm) {
                return Err(Error::new(
                    ErrorKind::RateLimited,
                    format!(
                        "rate limit for this API key exceeded (tokens per minute): this request \
                         may use {amount} tokens (prompt estimate plus max_tokens), more than \
                         the key's {tpm} per minute"
                    ),
                )
                .with_retry_after(Duration::from_secs(60)));
            }
            draws.push(Draw {
                kind: LimitKind::Tokens,
                per_minute: tpm,
                amount,
            });
            hold = Some(TokenHold {
                caller: policy.name.clone(),
                per_minute: tpm,
                reserved: amount,
                prompt_estimate: prompt,
                taken: Taken::Local(self.limiter.local.clone()),
            });
        }
        Ok(Admission {
            caller: policy.name.clone(),
            allowed: policy.models.clone(),
            draws,
            hold,
        })
    }
}

impl Limiter {
    /// The shared store, unless there is none or it is resting after a failure.
    fn shared_store(&self) -> Option<&Arc<dyn RateLimitStore>> {
        let store = self.shared.as_ref()?;
        let mut resting = self
            .resting_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *resting {
            Some(until) if Instant::now() < until => None,
            Some(_) => {
                *resting = None;
                Some(store)
            }
            None => Some(store),
        }
    }

    /// Asks the shared store, or, when it fails, this instance's buckets (and leaves the store
    /// alone for a while).
    fn acquire_shared(
        &self,
        store: Arc<dyn RateLimitStore>,
        caller: Arc<str>,
        draws: Draws,
    ) -> future::Acquire {
        let local = self.local.clone();
        let resting_until = self.resting_until.clone();
        Box::pin(async move {
            match store.acquire(&caller, draws.as_slice()).await {
                Ok(decision) => (decision, Taken::Shared(store)),
                Err(e) => {
                    settle::store_failed("acquire", &e);
                    *resting_until
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(Instant::now() + STORE_REST);
                    let decision = local.acquire_now(&caller, draws.as_slice());
                    (decision, Taken::Local(local))
                }
            }
        })
    }
}

fn limited(kind: LimitKind, wait: Duration) -> Error {
    Error::new(
        ErrorKind::RateLimited,
        format!(
            "rate limit for this API key exceeded ({} per minute)",
            kind.as_str()
        ),
    )
    .with_retry_after(wait.max(Duration::from_secs(1)))
}

impl<S> Service<ChatHttpRequest> for ClientKeys<S>
where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error> + Clone,
{
    type Response = ChatHttpResponse;
    type Error = Error;
    type Future = future::ResponseFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ChatHttpRequest) -> Self::Future {
        let admission = match self.layer.check(&req) {
            Ok(a) => a,
            Err(e) => return future::ResponseFuture::failed(e),
        };
        req.extensions_mut()
            .insert(CallerKey(admission.caller.clone()));
        if let Some(allowed) = admission.allowed.clone() {
            req.extensions_mut().insert(allowed);
        }
        let draws = admission.draws;
        if draws.len == 0 {
            return future::ResponseFuture::called(self.inner.call(req), None);
        }
        let limiter = &self.layer.limiter;
        match limiter.shared_store() {
            None => match limiter
                .local
                .acquire_now(&admission.caller, draws.as_slice())
            {
                Decision::Granted => {
                    future::ResponseFuture::called(self.inner.call(req), admission.hold)
                }
                Decision::Refused { kind, retry_after } => {
                    future::ResponseFuture::failed(limited(kind, retry_after))
                }
            },
            Some(store) => {
                // The store answers later: the service made ready goes with the request.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                let acquire = limiter.acquire_shared(store.clone(), admission.caller, draws);
                future::ResponseFuture::acquiring(acquire, ready, req, admission.hold)
            }
        }
    }
}
