//! Every HTTP header name switchboard reads or writes. Client-visible headers of the gateway
//! share one prefix, `x-switchboard-`; the others are the conventions clients already know.

use http::HeaderName;

/// The request id: taken from the client when it sends one, else made; echoed on every
/// answer.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The request's generation id (`gen-…`), on every answer: the key of its request-log row
/// and the completion's `id`.
pub const GENERATION_ID: HeaderName = HeaderName::from_static("x-generation-id");
/// The request id some providers (Anthropic) send instead of `x-request-id`.
pub const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
/// The model that served (response).
pub const MODEL: HeaderName = HeaderName::from_static("x-switchboard-model");
/// The provider that served (response).
pub const PROVIDER: HeaderName = HeaderName::from_static("x-switchboard-provider");
/// Every attempt with its outcome (response).
pub const ATTEMPTS: HeaderName = HeaderName::from_static("x-switchboard-attempts");
/// `HIT`, `MISS` or `BYPASS` from the response cache (response).
pub const CACHE: HeaderName = HeaderName::from_static("x-switchboard-cache");
/// The request's cost in USD (response, whole answers; streams carry `usage.cost`).
pub const COST: HeaderName = HeaderName::from_static("x-switchboard-cost");
/// The client's time budget in milliseconds (request).
pub const TIMEOUT_MS: HeaderName = HeaderName::from_static("x-switchboard-timeout-ms");
/// The request's task, for routing rules (request).
pub const TASK: HeaderName = HeaderName::from_static("x-switchboard-task");
