//! OpenAI's embeddings wire types: [`EmbeddingsRequest`] (`POST /v1/embeddings`) and
//! [`EmbeddingsResponse`], shared by every provider codec that serves embedding models
//! (see [`EmbeddingsCodec`](crate::provider::EmbeddingsCodec)).
//!
//! Vectors are kept as the JSON text the provider sent ([`RawValue`]): a float array or a
//! base64 string reaches the client byte for byte, never re-printed.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ProviderPreferences;
use crate::Error;

/// What to embed: OpenAI's four shapes of `input`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One text as token ids.
    Tokens(Vec<u32>),
    /// Several texts as token ids.
    TokenLists(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// How many vectors the answer carries.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(_) | Self::Tokens(_) => 1,
            Self::Texts(t) => t.len(),
            Self::TokenLists(t) => t.len(),
        }
    }

    /// Whether there is nothing to embed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The texts, or `None` when the input is token ids.
    pub fn texts(&self) -> Option<Vec<&str>> {
        match self {
            Self::Text(t) => Some(vec![t.as_str()]),
            Self::Texts(t) => Some(t.iter().map(String::as_str).collect()),
            Self::Tokens(_) | Self::TokenLists(_) => None,
        }
    }

    /// Bytes of text (4 a token id), for limits and token estimates.
    pub fn bytes(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Texts(t) => t.iter().map(String::len).sum(),
            Self::Tokens(t) => t.len().saturating_mul(4),
            Self::TokenLists(t) => t.iter().map(|l| l.len().saturating_mul(4)).sum(),
        }
    }

    /// Input tokens, estimated: token ids count as they are, text at 4 bytes a token.
    pub fn estimated_tokens(&self) -> u64 {
        match self {
            Self::Tokens(t) => t.len() as u64,
            Self::TokenLists(t) => t.iter().map(|l| l.len() as u64).sum(),
            Self::Text(t) => (t.len() as u64).div_ceil(4),
            Self::Texts(t) => t.iter().map(|s| (s.len() as u64).div_ceil(4)).sum(),
        }
    }
}

/// `encoding_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// A JSON array of numbers (the default).
    #[default]
    Float,
    /// The float32 little-endian bytes of the vector, base64.
    Base64,
}

/// An embeddings request in OpenAI's shape, plus OpenRouter's routing fields (`models`,
/// `provider`). Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EmbeddingsRequest {
    /// The requested model id or alias.
    pub model: String,
    /// What to embed.
    pub input: EmbeddingInput,
    /// The vector size, for models that can shorten their vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// `float` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    /// End-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Models to try in order (OpenRouter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Provider preferences (OpenRouter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderPreferences>,
}

/// What one embeddings request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddingsLimits {
    /// The most inputs (texts or token lists).
    pub max_inputs: usize,
    /// The most bytes of text in all inputs together (a token id counts 4).
    pub max_input_bytes: usize,
}

/// Default cap on the inputs of one embeddings request (OpenAI's own).
pub const DEFAULT_MAX_EMBEDDING_INPUTS: usize = 2048;
/// Default cap on the text of one embeddings request: 4 MiB.
pub const DEFAULT_MAX_EMBEDDING_INPUT_BYTES: usize = 4 * 1024 * 1024;

impl Default for EmbeddingsLimits {
    fn default() -> Self {
        Self {
            max_inputs: DEFAULT_MAX_EMBEDDING_INPUTS,
            max_input_bytes: DEFAULT_MAX_EMBEDDING_INPUT_BYTES,
        }
    }
}

impl EmbeddingsRequest {
    /// A request for `input` on `model`.
    pub fn new(model: impl Into<String>, input: EmbeddingInput) -> Self {
        Self {
            model: model.into(),
            input,
            dimensions: None,
            encoding_format: None,
            user: None,
            models: None,
            provider: None,
        }
    }

    /// Parses and checks a request body: malformed JSON, a missing or mistyped field, an
    /// empty input or one over `limits` is a 400 naming the parameter.
    pub fn from_slice(body: &[u8], limits: EmbeddingsLimits) -> Result<Self, Error> {
        let req: Self = serde_json::from_slice(body).map_err(|e| {
            // serde quotes values it rejects: at most 160 chars of its message are kept.
            let text = e.to_string();
            let cut = text.char_indices().nth(160).map_or(text.len(), |(i, _)| i);
            let e = &text[..cut];
            let msg = if cut < text.len() {
                format!("{e}…")
            } else {
                e.to_owned()
            };
            let msg = if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
                format!("invalid embeddings request: {msg} (`input` must be a string, an array of strings, an array of token ids or an array of arrays of token ids)")
            } else {
                format!("the request body is not valid JSON: {msg}")
            };
            Error::invalid_request(msg)
        })?;
        req.check(limits)?;
        Ok(req)
    }

    /// Checks the request against `limits`.
    pub fn check(&self, limits: EmbeddingsLimits) -> Result<(), Error> {
        let bad = |msg: String, code: &'static str| {
            Err(Error::invalid_request(msg)
                .with_param("input")
                .with_code(code))
        };
        if self.model.is_empty() && self.models.as_ref().is_none_or(Vec::is_empty) {
            return Err(
                Error::invalid_request("you must provide a model parameter").with_param("model")
            );
        }
        let n = self.input.len();
        if n == 0 {
            return bad("`input` must not be empty".into(), "invalid_value");
        }
        if n > limits.max_inputs {
            return bad(
                format!(
                    "`input` has {n} entries; at most {} are allowed",
                    limits.max_inputs
                ),
                "array_above_max_length",
            );
        }
        let empty = match &self.input {
            EmbeddingInput::Text(t) => t.is_empty(),
            EmbeddingInput::Texts(t) => t.iter().any(String::is_empty),
            EmbeddingInput::Tokens(t) => t.is_empty(),
            EmbeddingInput::TokenLists(t) => t.iter().any(Vec::is_empty),
        };
        if empty {
            return bad(
                "`input` must not contain an empty string or an empty token list".into(),
                "invalid_value",
            );
        }
        let bytes = self.input.bytes();
        if bytes > limits.max_input_bytes {
            return bad(
                format!(
                    "`input` has {bytes} bytes of text; at most {} are allowed",
                    limits.max_input_bytes
                ),
                "string_above_max_length",
            );
        }
        if self.dimensions == Some(0) {
            return Err(Error::invalid_request("`dimensions` must be at least 1")
                .with_param("dimensions")
                .with_code("invalid_value"));
        }
        Ok(())
    }

    /// The encoding the client asked for.
    pub fn format(&self) -> EncodingFormat {
        self.encoding_format.unwrap_or_default()
    }
}

/// An embeddings answer in OpenAI's shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EmbeddingsResponse {
    /// Always `list`.
    #[serde(default = "list")]
    pub object: String,
    /// One vector per input, in input order.
    pub data: Vec<Embedding>,
    /// The model id the client knows (the gateway writes it).
    #[serde(default)]
    pub model: String,
    /// Tokens read (and, after the gateway priced them, their cost).
    #[serde(default)]
    pub usage: EmbeddingsUsage,
    /// The provider that served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

fn list() -> String {
    "list".to_owned()
}

fn embedding() -> String {
    "embedding".to_owned()
}

/// One vector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Embedding {
    /// Always `embedding`.
    #[serde(default = "embedding")]
    pub object: String,
    /// The input's position.
    #[serde(default)]
    pub index: u32,
    /// The vector as the provider sent it: a JSON array of numbers, or a base64 string.
    pub embedding: Box<RawValue>,
}

impl Embedding {
    /// A vector at `index` from its JSON text.
    pub fn new(index: u32, embedding: Box<RawValue>) -> Self {
        Self {
            object: embedding_object(),
            index,
            embedding,
        }
    }
}

fn embedding_object() -> String {
    embedding()
}

/// Embeddings usage: input tokens only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsUsage {
    /// Input tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Input tokens (there is no output).
    #[serde(default)]
    pub total_tokens: u64,
    /// The cost in USD, from the catalog's input price (a cache hit costs 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

impl EmbeddingsResponse {
    /// An answer of `data` for `model` with `prompt_tokens` read.
    pub fn new(data: Vec<Embedding>, model: impl Into<String>, prompt_tokens: u64) -> Self {
        Self {
            object: list(),
            data,
            model: model.into(),
            usage: EmbeddingsUsage {
                prompt_tokens,
                total_tokens: prompt_tokens,
                cost: None,
            },
            provider: None,
        }
    }

    /// Checks a provider's answer against the request: one vector per input, each an array
    /// or a base64 string, indices in range (an upstream that answers something else failed:
    /// 502).
    pub fn check(&self, req: &EmbeddingsRequest) -> Result<(), Error> {
        let n = req.input.len();
        if self.data.len() != n {
            return Err(Error::upstream(format!(
                "the provider answered {} vectors for {n} inputs",
                self.data.len()
            )));
        }
        for e in &self.data {
            let first = e.embedding.get().as_bytes().first().copied();
            if !matches!(first, Some(b'[' | b'"')) || e.index as usize >= n {
                return Err(Error::upstream(
                    "the provider sent an embedding that is not a vector",
                ));
            }
        }
        Ok(())
    }
}

/// `values` (float32) as base64 of their little-endian bytes, as OpenAI sends
/// `encoding_format: "base64"`.
pub fn base64_f32(values: &[f32]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let b = [
            c[0],
            c.get(1).copied().unwrap_or(0),
            c.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(char::from(ABC[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_input_shapes() {
        let l = EmbeddingsLimits::default();
        for (body, n) in [
            (r#"{"model":"m","input":"hi"}"#, 1),
            (r#"{"model":"m","input":["a","b"]}"#, 2),
            (r#"{"model":"m","input":[1,2,3]}"#, 1),
            (r#"{"model":"m","input":[[1],[2,3]]}"#, 2),
        ] {
            let r = EmbeddingsRequest::from_slice(body.as_bytes(), l).unwrap();
            assert_eq!(r.input.len(), n, "{body}");
        }
        let r = EmbeddingsRequest::from_slice(
            br#"{"model":"m","input":"x","encoding_format":"base64","dimensions":8}"#,
            l,
        )
        .unwrap();
        assert_eq!(r.format(), EncodingFormat::Base64);
        assert_eq!(r.dimensions, Some(8));
    }

    #[test]
    fn bad_inputs_are_400s() {
        let l = EmbeddingsLimits {
            max_inputs: 2,
            max_input_bytes: 10,
        };
        for body in [
            r#"{"model":"m","input":[]}"#,
            r#"{"model":"m","input":""}"#,
            r#"{"model":"m","input":["a",""]}"#,
            r#"{"model":"m","input":[[]]}"#,
            r#"{"model":"m","input":["a","b","c"]}"#,
            r#"{"model":"m","input":"01234567890"}"#,
            r#"{"model":"m","input":{"x":1}}"#,
            r#"{"model":"m","input":[-1]}"#,
            r#"{"model":"m","input":"a","encoding_format":"int8"}"#,
            r#"{"model":"m","input":"a","dimensions":0}"#,
            r#"{"input":"a"}"#,
            r#"{"model":"","input":"a"}"#,
            "not json",
        ] {
            let e = EmbeddingsRequest::from_slice(body.as_bytes(), l).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
        }
    }

    #[test]
    fn base64_matches_the_float_bytes() {
        assert_eq!(base64_f32(&[]), "");
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert_eq!(base64_f32(&[0.0, 0.0, 0.0]), "AAAAAAAAAAAAAAAA");
    }
}
