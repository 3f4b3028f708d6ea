//! Vertex AI text embeddings (`:predict` on `publishers/google/models/{model}`, e.g.
//! `text-embedding-005`): the request body and the answer, as free functions for the
//! `/v1/embeddings` path, and the [`EmbeddingsCodec`] of the Vertex codec built on them.
//!
//! Usage is the sum of the answer's `statistics.token_count`; an answer without statistics is
//! counted from the text (4 bytes a token). Token-id inputs are a 400 (Vertex takes text). For
//! `encoding_format: "base64"` the float32 little-endian bytes are encoded here.
//!
//! Request: `{"instances": [{"content": "…"}, …], "parameters": {"outputDimensionality": N}}`
//! (`parameters` only when a dimension is asked for; at most [`MAX_INSTANCES`] inputs).
//! Answer: `{"predictions": [{"embeddings": {"values": [...], "statistics": {"token_count",
//! "truncated"}}}, …]}`, one prediction per input, in order.

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method};
use serde::{Deserialize, Serialize};

use crate::client::UpstreamBody;
use crate::openai::embeddings::{base64_f32, Embedding as Vector};
use crate::openai::{EmbeddingsRequest, EmbeddingsResponse, EncodingFormat};
use crate::provider::embeddings::{response, text_inputs};
use crate::provider::{DecodeContext, EmbeddingsCodec, EncodeContext};
use crate::Error;

/// The most inputs one `:predict` call takes (Vertex's limit for text embedding models).
pub const MAX_INSTANCES: usize = 250;
/// The longest vector accepted from the upstream.
const MAX_DIMENSIONS: usize = 8192;

/// The `:predict` URL of an embedding model.
pub fn predict_url(codec: &super::Vertex, base_url: &str, model: &str) -> Result<http::Uri, Error> {
    codec.url(base_url, "google", model, "predict")
}

#[derive(Serialize)]
struct Instance<'a> {
    content: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    output_dimensionality: u32,
}

#[derive(Serialize)]
struct PredictRequest<'a> {
    instances: Vec<Instance<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Params>,
}

/// The `:predict` body for `inputs`, with `outputDimensionality` when `dimensions` is given.
/// No inputs, more than [`MAX_INSTANCES`], or a zero dimension is a 400.
pub fn encode_embeddings(inputs: &[&str], dimensions: Option<u32>) -> Result<Vec<u8>, Error> {
    if inputs.is_empty() || inputs.len() > MAX_INSTANCES {
        return Err(Error::invalid_request(format!(
            "`input` must have 1 to {MAX_INSTANCES} entries for Vertex AI embeddings"
        ))
        .with_param("input"));
    }
    if dimensions == Some(0) {
        return Err(
            Error::invalid_request("`dimensions` must be at least 1").with_param("dimensions")
        );
    }
    let body = PredictRequest {
        instances: inputs.iter().map(|content| Instance { content }).collect(),
        parameters: dimensions.map(|output_dimensionality| Params {
            output_dimensionality,
        }),
    };
    serde_json::to_vec(&body).map_err(|e| {
        Error::upstream("could not encode the embeddings request")
            .with_source(Box::new(e) as crate::BoxError)
    })
}

/// Vertex's embeddings for one call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Embeddings {
    /// One vector per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Input tokens, summed over the inputs.
    pub prompt_tokens: u64,
    /// Whether the answer carried token counts (`statistics`); without them
    /// `prompt_tokens` is 0.
    pub counted: bool,
}

#[derive(Deserialize)]
struct PredictResponse {
    predictions: Vec<Prediction>,
}

#[derive(Deserialize)]
struct Prediction {
    embeddings: Embedding,
}

#[derive(Deserialize)]
struct Embedding {
    values: Vec<f32>,
    #[serde(default)]
    statistics: Option<Statistics>,
}

#[derive(Deserialize)]
struct Statistics {
    #[serde(default)]
    token_count: f64,
}

/// Reads a `:predict` answer for `inputs` inputs: exactly one prediction per input, each a
/// vector of 1 to 8192 finite numbers, else a 502.
pub fn decode_embeddings(body: &[u8], inputs: usize) -> Result<Embeddings, Error> {
    let bad = |why: &str| Error::upstream(format!("the provider's embeddings answer {why}"));
    let r: PredictResponse =
        serde_json::from_slice(body).map_err(|_| bad("is not a predict response"))?;
    if r.predictions.len() != inputs {
        return Err(bad("does not have one prediction per input"));
    }
    let mut out = Embeddings {
        vectors: Vec::with_capacity(inputs),
        prompt_tokens: 0,
        counted: false,
    };
    for p in r.predictions {
        let v = p.embeddings.values;
        if v.is_empty() || v.len() > MAX_DIMENSIONS || !v.iter().all(|x| x.is_finite()) {
            return Err(bad("has a vector that is empty, too long or not finite"));
        }
        let tokens = match p.embeddings.statistics {
            Some(s) => {
                out.counted = true;
                s.token_count
            }
            None => 0.0,
        };
        if tokens.is_finite() && tokens >= 0.0 {
            // Counts are whole numbers well below 2^53; the cast saturates anyway.
            out.prompt_tokens = out.prompt_tokens.saturating_add(tokens as u64);
        }
        out.vectors.push(v);
    }
    Ok(out)
}

impl EmbeddingsCodec for super::Vertex {
    fn encode_embeddings(
        &self,
        req: &EmbeddingsRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        let texts = text_inputs(req, "Vertex AI embedding models take text, not token ids")?;
        if super::is_anthropic_model(ctx.upstream_model) {
            return Err(Error::invalid_request(
                "Claude models on Vertex AI are not embedding models",
            )
            .with_param("model"));
        }
        let body = encode_embeddings(&texts, req.dimensions)?;
        http::Request::builder()
            .method(Method::POST)
            .uri(predict_url(
                self,
                &ctx.provider.base_url,
                ctx.upstream_model,
            )?)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(UpstreamBody::from(body))
            .map_err(|_| Error::upstream("could not build the upstream request"))
    }

    fn decode_embeddings(
        &self,
        body: &[u8],
        req: &EmbeddingsRequest,
        ctx: &DecodeContext,
    ) -> Result<EmbeddingsResponse, Error> {
        let e = decode_embeddings(body, req.input.len())?;
        let encode_failed =
            |e: serde_json::Error| Error::upstream("could not encode the embedding").with_source(e);
        let mut data = Vec::with_capacity(e.vectors.len());
        for (i, v) in e.vectors.iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let raw = match req.format() {
                EncodingFormat::Float => serde_json::value::to_raw_value(v),
                EncodingFormat::Base64 => serde_json::value::to_raw_value(&base64_f32(v)),
            }
            .map_err(encode_failed)?;
            data.push(Vector::new(index, raw));
        }
        let tokens = if e.counted {
            e.prompt_tokens
        } else {
            req.input.estimated_tokens()
        };
        response(data, tokens, req, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_instances_and_the_dimension() {
        let b = encode_embeddings(&["a", "b\"c"], Some(256)).unwrap();
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"instances":[{"content":"a"},{"content":"b\"c"}],"parameters":{"outputDimensionality":256}}"#
        );
        let b = encode_embeddings(&["a"], None).unwrap();
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"instances":[{"content":"a"}]}"#
        );
        assert!(encode_embeddings(&[], None).is_err());
        assert!(encode_embeddings(&["a"], Some(0)).is_err());
        assert!(encode_embeddings(&["a"; MAX_INSTANCES + 1], None).is_err());
        let v = super::super::Vertex::new("p", "us-central1").unwrap();
        assert_eq!(
            predict_url(&v, "https://us-central1-aiplatform.googleapis.com", "text-embedding-005")
                .unwrap(),
            "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/models/text-embedding-005:predict"
        );
    }

    #[test]
    fn answers_are_read_strictly() {
        let ok = br#"{"predictions":[
            {"embeddings":{"values":[0.1,-0.2],"statistics":{"token_count":3,"truncated":false}}},
            {"embeddings":{"values":[0.3,0.4],"statistics":{"token_count":4.0,"truncated":false}}}],
            "metadata":{"billableCharacterCount":9}}"#;
        let e = decode_embeddings(ok, 2).unwrap();
        assert_eq!(e.vectors, vec![vec![0.1, -0.2], vec![0.3, 0.4]]);
        assert_eq!(e.prompt_tokens, 7);
        assert!(decode_embeddings(ok, 3).is_err());
        for bad in [
            r#"{"predictions":[{"embeddings":{"values":[]}}]}"#,
            r#"{"predictions":[{"embeddings":{"values":["x"]}}]}"#,
            r#"{"predictions":[{"embeddings":{}}]}"#,
            r#"{"predictions":{}}"#,
            "<html>",
        ] {
            assert!(decode_embeddings(bad.as_bytes(), 1).is_err(), "{bad}");
        }
        let long = format!(
            r#"{{"predictions":[{{"embeddings":{{"values":[{}0]}}}}]}}"#,
            "0,".repeat(MAX_DIMENSIONS)
        );
        assert!(decode_embeddings(long.as_bytes(), 1).is_err());
    }
}
