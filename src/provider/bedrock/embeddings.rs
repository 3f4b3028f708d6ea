//! Bedrock embeddings through `InvokeModel` (`POST /model/{modelId}/invoke`):
//!
//! - Amazon Titan text embeddings (`amazon.titan-embed-text-v1`, `…-v2:0`): one text per call,
//!   `{"inputText"}` (v2 also `dimensions` and `"normalize": true`), answered with
//!   `{"embedding": [...], "inputTextTokenCount"}`. A request with several inputs is a 400.
//! - Cohere embed (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`, …): up to 96
//!   texts per call, `{"texts", "input_type": "search_document"}`, answered with
//!   `{"embeddings": [[...]]}` (or `{"embeddings": {"float": [[...]]}}`); Cohere reports no
//!   token count in the body, so usage is estimated from the text.
//!
//! Token-id inputs are refused (400). Vectors are re-encoded as base64 float32 for
//! `encoding_format: "base64"`.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{json_request, model_url, Bedrock};
use crate::client::UpstreamBody;
use crate::openai::embeddings::Embedding;
use crate::openai::{EmbeddingsRequest, EmbeddingsResponse};
use crate::provider::embeddings::{encode_vector, response, text_inputs};
use crate::provider::{DecodeContext, EmbeddingsCodec, EncodeContext};
use crate::Error;

/// Cohere's most texts per call.
const COHERE_MAX_TEXTS: usize = 96;

fn unsupported(message: &'static str) -> Error {
    Error::invalid_request(message)
        .with_param("input")
        .with_code("unsupported_value")
}

fn is_cohere(model: &str) -> bool {
    model.contains("cohere.embed")
}

impl EmbeddingsCodec for Bedrock {
    fn encode_embeddings(
        &self,
        req: &EmbeddingsRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        let texts = text_inputs(req, "Bedrock embedding models take text, not token ids")?;
        let model = ctx.upstream_model;
        let body = if is_cohere(model) {
            if texts.len() > COHERE_MAX_TEXTS {
                return Err(unsupported(
                    "Cohere embedding models take at most 96 inputs",
                ));
            }
            json!({"texts": texts, "input_type": "search_document"})
        } else if model.contains("titan-embed") {
            let [text] = texts.as_slice() else {
                return Err(unsupported(
                    "Titan embedding models take one input per request",
                ));
            };
            let mut b = json!({ "inputText": text });
            if !model.contains("titan-embed-text-v1") {
                if let Some(d) = req.dimensions {
                    b["dimensions"] = d.into();
                }
                b["normalize"] = true.into();
            }
            b
        } else {
            return Err(Error::invalid_request(
                "this Bedrock model is not a supported embedding model (Titan text or Cohere embed)",
            )
            .with_param("model"));
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| {
            Error::upstream("could not encode the embeddings request").with_source(e)
        })?;
        json_request(
            model_url(&ctx.provider.base_url, model, "invoke")?,
            bytes,
            false,
        )
    }

    fn decode_embeddings(
        &self,
        body: &[u8],
        req: &EmbeddingsRequest,
        ctx: &DecodeContext,
    ) -> Result<EmbeddingsResponse, Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire {
            #[serde(default)]
            embedding: Option<Box<RawValue>>,
            #[serde(default)]
            input_text_token_count: Option<u64>,
            #[serde(default)]
            embeddings: Option<Value>,
        }
        let invalid = |e: serde_json::Error| {
            Error::upstream("the provider sent an invalid embeddings body").with_source(e)
        };
        let w: Wire = serde_json::from_slice(body).map_err(invalid)?;
        let vectors: Vec<Box<RawValue>> = match (w.embedding, w.embeddings) {
            (Some(one), _) => vec![one],
            (None, Some(Value::Array(list))) => raw_list(list)?,
            (None, Some(Value::Object(mut by_type))) => match by_type.remove("float") {
                Some(Value::Array(list)) => raw_list(list)?,
                _ => return Err(Error::upstream("the provider sent no float embeddings")),
            },
            _ => return Err(Error::upstream("the provider sent no embeddings")),
        };
        let mut data = Vec::with_capacity(vectors.len());
        for (i, raw) in vectors.into_iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            data.push(Embedding::new(index, encode_vector(raw, req.format())?));
        }
        let tokens = w
            .input_text_token_count
            .unwrap_or_else(|| req.input.estimated_tokens());
        response(data, tokens, req, ctx)
    }
}

fn raw_list(list: Vec<Value>) -> Result<Vec<Box<RawValue>>, Error> {
    list.into_iter()
        .map(|v| {
            serde_json::value::to_raw_value(&v).map_err(|e| {
                Error::upstream("the provider sent an invalid embedding").with_source(e)
            })
        })
        .collect()
}
