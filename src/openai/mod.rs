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

/// A fresh id in lowercase hex (16 scrambled digits, then a process-wide counter): unique per
/// process run, cheap, not cryptographic. Kept on the stack (at most 32 digits).
pub(crate) fn unique_hex() -> UniqueHex {
    let (n, z) = next_unique();
    let mut id = UniqueHex::new();
    id.push_hex(z, 16);
    id.push_hex(n, (64 - n.leading_zeros()).div_ceil(4).max(1));
    id
}

/// A fresh id that sorts by creation: the Unix time in seconds (ten digits), `-`, the
/// process-wide counter (twelve hex digits), then the 16 scrambled digits of
/// [`unique_hex`]. Within a process ids sort in creation order; across processes by the
/// second. A database index over them grows at its end instead of splitting pages at random
/// places.
pub(crate) fn sortable_unique() -> UniqueHex {
    let (n, z) = next_unique();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(9_999_999_999);
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
    id.push_hex(n, 12);
    id.push_hex(z, 16);
    id
}

/// The next value of the process-wide counter, and that value scrambled (splitmix64 over a
/// seed from the clock and the process id, so consecutive ids do not look sequential and
/// processes differ).
fn next_unique() -> (u64, u64) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ (u64::from(std::process::id()) << 32)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (n, z ^ (z >> 31))
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
    fn sortable_ids_sort_in_creation_order() {
        let ids: Vec<String> = (0..2000)
            .map(|_| sortable_unique().as_str().to_owned())
            .collect();
        for id in &ids {
            assert_eq!(id.len(), 10 + 1 + 12 + 16, "{id}");
            let (secs, hex) = id.split_once('-').unwrap();
            assert!(secs.bytes().all(|b| b.is_ascii_digit()), "{id}");
            assert!(secs.parse::<u64>().unwrap() > 1_700_000_000, "{id}");
            assert!(hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
    }
}
