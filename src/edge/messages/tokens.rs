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

/// Counts the input tokens of `chat` for `model` (run it off the async workers: it is CPU
/// work linear in the request).
pub(crate) fn count(chat: &ChatRequest, model: &str) -> Result<u64, Error> {
    let bpe = encoding(model);
    let n = |s: &str| bpe.encode_ordinary(s).len() as u64;
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
