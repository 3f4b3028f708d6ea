//! The canonical wire types: the OpenAI chat-completions API as clients send it, plus
//! OpenRouter's extensions (`models`, `route`, `provider`, `reasoning`).
//!
//! The data model is the performance model: [`ChatRequest`] types what the gateway reads and
//! keeps what it only forwards (`messages`, `tools`, unknown fields) as raw JSON, so an
//! OpenAI-compatible pass-through re-emits those bytes without re-encoding them. Provider codecs
//! that must look inside call [`ChatRequest::parse_messages`] / [`ChatRequest::parse_tools`].
//! Requests travel as `http::Request<Arc<ChatRequest>>`, so layers that retry or cache share one
//! copy.

mod aggregate;
mod chunk;
pub mod embeddings;
mod error;
mod json;
mod message;
mod raw;
mod request;
mod response;
pub mod sse;

pub use aggregate::{completion_to_chunks, ChunkAggregator};
pub use chunk::{ChatCompletionChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta};
pub use embeddings::{
    EmbeddingInput, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage, EncodingFormat,
};
pub use error::{ErrorBody, ErrorResponse};
pub use json::MessagesSummary;
pub(crate) use json::{add_to_member, replace_member_str, top_level_member, unknown_top_level_key};
pub use message::{
    ContentPart, FunctionCall, ImageUrl, Message, MessageContent, Role, Tool, ToolCall, ToolChoice,
    ToolFunction,
};
pub(crate) use raw::finish_completion;
pub use raw::RawCompletion;
pub(crate) use request::write_openai_head;
pub use request::{
    ChatRequest, MaxPrice, ProviderPreferences, RawJson, Reasoning, ResponseFormat, Stop,
    StreamOptions,
};
pub use response::{
    AssistantMessage, ChatCompletion, Choice, CompletionTokensDetails, CostDetails, FinishReason,
    PromptTokensDetails, Usage,
};

use std::sync::atomic::{AtomicU64, Ordering};

/// Seconds since the Unix epoch (for `created`).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh completion id (`chatcmpl-…`): unique per process run, cheap, not cryptographic.
pub fn new_completion_id() -> String {
    let mut id = String::with_capacity(9 + 32);
    id.push_str("chatcmpl-");
    push_unique_hex(&mut id);
    id
}

/// Appends a fresh id in lowercase hex; see [`unique_hex`].
pub(crate) fn push_unique_hex(out: &mut String) {
    out.push_str(unique_hex().as_str());
}

/// A fresh id in lowercase hex: 32 digits from a keyed hash of a process-wide counter. Unique
/// per process run (and across runs and instances in practice), cheap, and telling nothing:
/// the key is random per process, so ids do not reveal how many requests came between two of
/// them (a client must not learn other tenants' traffic from its own ids). Not a secret
/// either. Kept on the stack.
pub(crate) fn unique_hex() -> UniqueHex {
    use std::hash::BuildHasher;
    let (key, n) = next_unique();
    let mut id = UniqueHex::new();
    id.push_hex(key.hash_one(n), 16);
    id.push_hex(key.hash_one(!n), 16);
    id
}

/// A fresh id that sorts by creation time: the Unix time in seconds (ten digits), `-`, the
/// nanoseconds within that second (eight hex digits), then 16 digits of [`unique_hex`]'s
/// keyed hash. A database index over them grows at its end instead of splitting pages at
/// random places; the time is the request's own, which its record shows anyway.
pub(crate) fn sortable_unique() -> UniqueHex {
    use std::hash::BuildHasher;
    let (key, n) = next_unique();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs().min(9_999_999_999);
    let mut id = UniqueHex::new();
    let mut digits = [b'0'; 10];
    let mut rest = secs;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    for d in digits {
        id.push(d);
    }
    id.push(b'-');
    id.push_hex(u64::from(now.subsec_nanos()), 8);
    id.push_hex(key.hash_one(n), 16);
    id
}

/// The next value of a process-wide counter, and the key to hash it with: SipHash under a key
/// drawn at random once per process (std's `RandomState`), so distinct counters give values
/// that look independent and cannot be traced back to the counter.
fn next_unique() -> (&'static std::hash::RandomState, u64) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(std::hash::RandomState::new);
    (key, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// An id made by [`unique_hex`].
pub(crate) struct UniqueHex {
    buf: [u8; 40],
    len: usize,
}

impl UniqueHex {
    fn new() -> Self {
        Self {
            buf: [b'0'; 40],
            len: 0,
        }
    }

    /// The low `digits` hex digits of `n`, most significant first.
    fn push_hex(&mut self, n: u64, digits: u32) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for shift in (0..digits.min(16)).rev() {
            self.push(HEX[(n >> (shift * 4)) as usize & 15]);
        }
    }

    fn push(&mut self, digit: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = digit;
            self.len += 1;
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len.min(self.buf.len())]
    }

    pub(crate) fn as_str(&self) -> &str {
        // ASCII digits and `-` only: always UTF-8.
        std::str::from_utf8(self.as_bytes()).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_hex_ids_are_hex_distinct_and_bounded() {
        let ids: Vec<String> = (0..1000)
            .map(|_| unique_hex().as_str().to_owned())
            .collect();
        for id in &ids {
            assert!((17..=32).contains(&id.len()), "{id}");
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let c = new_completion_id();
        assert!(c.starts_with("chatcmpl-") && c.len() >= 9 + 17);
    }

    #[test]
    fn sortable_ids_sort_by_time_and_differ() {
        let ids: Vec<String> = (0..2000)
            .map(|_| sortable_unique().as_str().to_owned())
            .collect();
        for id in &ids {
            assert_eq!(id.len(), 10 + 1 + 8 + 16, "{id}");
            let (secs, hex) = id.split_once('-').unwrap();
            assert!(secs.bytes().all(|b| b.is_ascii_digit()), "{id}");
            assert!(secs.parse::<u64>().unwrap() > 1_700_000_000, "{id}");
            assert!(hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            let nanos = u64::from_str_radix(&hex[..8], 16).unwrap();
            assert!(nanos < 1_000_000_000, "{id}");
        }
        // The time part (seconds, then nanoseconds) never goes back between two ids.
        for w in ids.windows(2) {
            assert!(w[0][..19] <= w[1][..19], "{} then {}", w[0], w[1]);
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn ids_do_not_show_the_counter() {
        // Consecutive ids share no leading or trailing digits beyond chance: no counter shows.
        let a = unique_hex().as_str().to_owned();
        let b = unique_hex().as_str().to_owned();
        assert_eq!((a.len(), b.len()), (32, 32));
        let same_tail = a
            .bytes()
            .rev()
            .zip(b.bytes().rev())
            .take_while(|(x, y)| x == y)
            .count();
        let same_head = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        assert!(same_tail < 8 && same_head < 8, "{a} {b}");
    }
}
