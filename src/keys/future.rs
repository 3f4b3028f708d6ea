//! The [`ClientKeys`](super::ClientKeys) future.

/// Future of [`ClientKeys`](super::ClientKeys): the inner service's future once the key is
/// accepted, or the refusal (401, 403, 429) at once. The same type is the future of
/// [`ModelResolve`](crate::resolve::ModelResolve).
pub use crate::future::ResponseFuture;
