//! Tags shared by the request and answer sides of the Messages ingress.

/// OpenRouter's `format` tag for Anthropic reasoning details (what the Anthropic codec reads).
pub(crate) const REASONING_FORMAT: &str = "anthropic-claude-v1";

/// The prefix of a `redacted_thinking.data` that carries another provider's reasoning detail.
pub(crate) const ENVELOPE: &str = "switchboard.v1:";
