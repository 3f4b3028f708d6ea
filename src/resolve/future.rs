//! The [`ModelResolve`](super::ModelResolve) future.

/// Future of [`ModelResolve`](super::ModelResolve): the inner service's future once the
/// request is resolved, or the resolution's error at once. The same type is the future of
/// [`ClientKeys`](crate::keys::ClientKeys).
pub use crate::future::ResponseFuture;
