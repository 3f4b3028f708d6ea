//! The integration tests, in one binary (one link instead of one per file). Each module is a
//! former test file; `support` holds what several share. Tests that need the process to
//! themselves (the soak's memory, the log capture of `secrets`) start this binary again for
//! just that test (`support::in_own_process`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[cfg(feature = "demo")]
mod azure;
#[cfg(feature = "demo")]
mod bedrock;
mod cache;
mod cost;
mod e2e;
mod edge;
#[cfg(feature = "demo")]
mod embeddings;
mod examples;
mod fallback;
mod gateway;
mod hostile;
mod keep_alive;
mod messages;
#[cfg(feature = "otel")]
mod otel;
mod provider_auth;
#[cfg(feature = "redis")]
mod rate_limits;
mod reasoning;
#[cfg(feature = "server")]
mod reliability;
#[cfg(feature = "log-db")]
mod request_log;
mod responses;
#[cfg(feature = "demo")]
mod secrets;
#[cfg(feature = "log-db")]
mod shadow;
#[cfg(feature = "demo")]
mod soak;
mod timeout;
#[cfg(feature = "demo")]
mod vertex;
#[cfg(feature = "demo")]
mod vertex_embeddings;
