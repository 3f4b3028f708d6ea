//! Input tokens of a canonical request for OpenAI-compatible targets, with OpenAI's own
//! tokenizers (`tiktoken-rs`): `o200k_base` for the GPT-4o family and newer (`gpt-4o`,
//! `gpt-4.1`, `gpt-5`, `o1`, `o3`, `o4`, `chatgpt-4o`), `cl100k_base` for everything else.
//!
//! Chat framing follows OpenAI's published accounting: 3 tokens per message plus its role,
//! content and name, and 3 for the reply's priming. Tool declarations count as their JSON
//! text, tool calls as their name and arguments, and each image as 85 tokens (a low-detail
//! tile; a high-detail image costs more upstream, so this is a lower bound there).

use tiktoken_rs::CoreBPE;

use crate::openai::{ChatRequest, ContentPart, MessageContent};
use crate::Error;

/// Tokens of one image part (OpenAI's low-detail price).
const IMAGE_TOKENS: u64 = 85;

/// The tokenizer for an upstream model name.
fn encoding(model: &str) -> &'static CoreBPE {
    let m = model.rsplit('/').next().unwrap_or(model);
    let o200k = [
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "o1",
        "o3",
        "o4",
        "chatgpt-4o",
    ]
    .iter()
    .any(|p| m.starts_with(p));
    if o200k {
        tiktoken_rs::o200k_base_singleton()
    } else {
        tiktoken_rs::cl100k_base_singleton()
    }
}

/// Longest run given to the tokenizer at once. BPE merging is quadratic in the length of one
/// pre-tokenized piece, and a client can send a megabyte without a space: pieces are cut at
/// this many bytes (a cut may split one token in two; counts move by at most one per cut).
const MAX_PIECE_BYTES: usize = 1024;

/// Tokens of `text`, encoded in runs of at most [`MAX_PIECE_BYTES`] (cut at char boundaries,
/// after whitespace where there is some): linear in the text whatever it holds.
fn count_text(bpe: &CoreBPE, text: &str) -> u64 {
    let mut total = 0u64;
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(MAX_PIECE_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end < rest.len() {
            if let Some(ws) = rest[..end].rfind(char::is_whitespace) {
                if ws > 0 {
                    end = ws;
                }
            }
        }
        total += bpe.encode_ordinary(&rest[..end]).len() as u64;
        rest = &rest[end..];
    }
    total
}

/// Counts the input tokens of `chat` for `model` (run it off the async workers: it is CPU
/// work linear in the request).
pub(crate) fn count(chat: &ChatRequest, model: &str) -> Result<u64, Error> {
    let bpe = encoding(model);
    let n = |s: &str| count_text(bpe, s);
    let messages = chat.parse_messages()?;
    let mut total = 3u64;
    for m in &messages {
        total += 3;
        total += n(match m.role {
            crate::openai::Role::System => "system",
            crate::openai::Role::Developer => "developer",
            crate::openai::Role::User => "user",
            crate::openai::Role::Assistant => "assistant",
            crate::openai::Role::Tool => "tool",
            crate::openai::Role::Function => "function",
        });
        if let Some(name) = &m.name {
            total += n(name) + 1;
        }
        match &m.content {
            None => {}
            Some(MessageContent::Text(s)) => total += n(s),
            Some(MessageContent::Parts(parts)) => {
                for p in parts {
                    total += match p {
                        ContentPart::Text { text, .. } => n(text),
                        ContentPart::ImageUrl { .. } => IMAGE_TOKENS,
                        ContentPart::File { file } => n(&file.to_string()),
                        ContentPart::InputAudio { .. } => 0,
                    };
                }
            }
        }
        for call in m.tool_calls.iter().flatten() {
            total += n(&call.function.name) + n(&call.function.arguments) + 3;
        }
    }
    if let Some(tools) = &chat.tools {
        total += n(tools.get());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_with_the_model_familys_tokenizer() {
        let chat = ChatRequest::from_slice(
            br#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello world"}]}"#,
        )
        .unwrap();
        // system: 3 + 1 + 3 ("Be brief."), user: 3 + 1 + 2 ("Hello world"), priming 3.
        assert_eq!(count(&chat, "gpt-4o-mini").unwrap(), 16);
        // Text is cut after whitespace: counts move by at most one token per cut.
        let bpe = encoding("gpt-4o");
        let prose = "The quick brown fox jumps over the lazy dog. ".repeat(500);
        let whole = bpe.encode_ordinary(&prose).len() as u64;
        let cuts = (prose.len() / MAX_PIECE_BYTES) as u64 + 1;
        assert!(count_text(bpe, &prose).abs_diff(whole) <= cuts);
        // A megabyte without a space is cut into pieces the tokenizer handles in linear time.
        let long = "a".repeat(1 << 20);
        let piece = bpe.encode_ordinary(&long[..MAX_PIECE_BYTES]).len() as u64;
        assert_eq!(count_text(bpe, &long), piece * 1024);
        assert_eq!(count(&chat, "gpt-3.5-turbo").unwrap(), 16);
        assert!(std::ptr::eq(
            encoding("openai/gpt-4o"),
            tiktoken_rs::o200k_base_singleton()
        ));
        assert!(std::ptr::eq(
            encoding("gpt-4-turbo"),
            tiktoken_rs::cl100k_base_singleton()
        ));
    }
}
