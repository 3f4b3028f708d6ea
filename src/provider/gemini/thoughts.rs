//! Thought signatures and thought text as OpenRouter's `reasoning_details` entries (format
//! `google-gemini-v1`), read back from requests and produced in answers (see the module docs,
//! "Thought signatures").

use serde_json::{Map, Value};

use crate::openai::Message;

/// The `reasoning_details` format name OpenRouter uses for Gemini.
pub(super) const DETAIL_FORMAT: &str = "google-gemini-v1";

/// Google's documented placeholder for function calls that have no signature of their own.
pub(super) const PLACEHOLDER_SIGNATURE: &str = "skip_thought_signature_validator";

/// The Gemini signatures among an assistant message's `reasoning_details`: `(id, data)`.
pub(super) fn signatures(m: &Message) -> impl Iterator<Item = (Option<&str>, &str)> {
    m.reasoning_details.iter().flatten().filter_map(|d| {
        let d = d.as_object()?;
        if d.get("type").and_then(Value::as_str) != Some("reasoning.encrypted") {
            return None;
        }
        match d.get("format") {
            None | Some(Value::Null) => {}
            Some(f) if f.as_str() == Some(DETAIL_FORMAT) => {}
            Some(_) => return None,
        }
        let data = d.get("data").and_then(Value::as_str)?;
        (!data.is_empty()).then(|| (d.get("id").and_then(Value::as_str), data))
    })
}

/// A `reasoning.text` entry carrying thought text.
pub(super) fn text_detail(text: &str, index: u32) -> Value {
    let mut d = Map::with_capacity(4);
    d.insert("type".to_owned(), "reasoning.text".into());
    d.insert("text".to_owned(), text.into());
    d.insert("format".to_owned(), DETAIL_FORMAT.into());
    d.insert("index".to_owned(), index.into());
    Value::Object(d)
}
