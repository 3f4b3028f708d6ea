//! What the embeddings codecs share: the inputs of providers that take text only, re-encoding
//! a vector the provider printed, and the last step of every answer.

use serde_json::value::RawValue;

use super::DecodeContext;
use crate::openai::embeddings::{base64_f32, Embedding};
use crate::openai::{EmbeddingsRequest, EmbeddingsResponse, EncodingFormat};
use crate::Error;

/// The inputs as texts; token-id inputs are a 400 (`unsupported_value`) saying `message`.
pub(super) fn text_inputs<'a>(
    req: &'a EmbeddingsRequest,
    message: &'static str,
) -> Result<Vec<&'a str>, Error> {
    req.input.texts().ok_or_else(|| {
        Error::invalid_request(message)
            .with_param("input")
            .with_code("unsupported_value")
    })
}

/// A vector as the provider printed it (a JSON array of numbers) in the client's `format`:
/// passed through as floats, or encoded here as base64 float32 little-endian bytes.
pub(super) fn encode_vector(
    raw: Box<RawValue>,
    format: EncodingFormat,
) -> Result<Box<RawValue>, Error> {
    match format {
        EncodingFormat::Float => Ok(raw),
        EncodingFormat::Base64 => {
            let floats: Vec<f32> = serde_json::from_str(raw.get()).map_err(|e| {
                Error::upstream("the provider sent an embedding that is not a vector")
                    .with_source(e)
            })?;
            let s = serde_json::to_string(&base64_f32(&floats))
                .map_err(|e| Error::upstream("could not encode the embedding").with_source(e))?;
            RawValue::from_string(s)
                .map_err(|e| Error::upstream("could not encode the embedding").with_source(e))
        }
    }
}

/// The answer to `req`: `data` and `prompt_tokens` of input, under the model id the client
/// knows and the provider's name, checked against the request (one vector per input).
pub(super) fn response(
    data: Vec<Embedding>,
    prompt_tokens: u64,
    req: &EmbeddingsRequest,
    ctx: &DecodeContext,
) -> Result<EmbeddingsResponse, Error> {
    let mut resp = EmbeddingsResponse::new(data, &*ctx.model, prompt_tokens);
    resp.provider = Some(ctx.provider.to_string());
    resp.check(req)?;
    Ok(resp)
}
