//! Gemini embeddings: `POST /v1beta/models/{model}:batchEmbedContents`, one request per input
//! (`{"model": "models/{model}", "content": {"parts": [{"text"}]}, "outputDimensionality"}`),
//! answered with `{"embeddings": [{"values": [...]}]}`. Gemini takes text only (token-id
//! inputs are a 400) and reports no token counts: usage is estimated from the text (4 bytes a
//! token). Float vectors pass through as Gemini printed them; for `encoding_format: "base64"`
//! the float32 little-endian bytes are encoded here.

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::request::model_path;
use crate::client::UpstreamBody;
use crate::openai::embeddings::Embedding;
use crate::openai::{EmbeddingsRequest, EmbeddingsResponse};
use crate::provider::embeddings::{encode_vector, response, text_inputs};
use crate::provider::{join_url, DecodeContext, EmbeddingsCodec, EncodeContext};
use crate::Error;

impl EmbeddingsCodec for super::Gemini {
    fn encode_embeddings(
        &self,
        req: &EmbeddingsRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        let texts = text_inputs(req, "Gemini embedding models take text, not token ids")?;
        let model = model_path(ctx.upstream_model)?;
        let requests: Vec<serde_json::Value> = texts
            .iter()
            .map(|t| {
                let mut r = serde_json::json!({
                    "model": model,
                    "content": {"parts": [{"text": t}]},
                });
                if let Some(d) = req.dimensions {
                    r["outputDimensionality"] = d.into();
                }
                r
            })
            .collect();
        let body =
            serde_json::to_vec(&serde_json::json!({ "requests": requests })).map_err(|e| {
                Error::upstream("could not encode the embeddings request").with_source(e)
            })?;
        let mut b = http::Request::builder()
            .method(Method::POST)
            .uri(join_url(
                &ctx.provider.base_url,
                &format!("/v1beta/{model}:batchEmbedContents"),
            )?)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &ctx.provider.api_key {
            b = b.header("x-goog-api-key", key.header_value()?);
        }
        b.body(UpstreamBody::from(body))
            .map_err(|_| Error::upstream("could not build the upstream request"))
    }

    fn decode_embeddings(
        &self,
        body: &[u8],
        req: &EmbeddingsRequest,
        ctx: &DecodeContext,
    ) -> Result<EmbeddingsResponse, Error> {
        #[derive(Deserialize)]
        struct Values {
            values: Box<RawValue>,
        }
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            embeddings: Vec<Values>,
        }
        let w: Wire = serde_json::from_slice(body).map_err(|e| {
            Error::upstream("the provider sent an invalid embeddings body").with_source(e)
        })?;
        let mut data = Vec::with_capacity(w.embeddings.len());
        for (i, v) in w.embeddings.into_iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            data.push(Embedding::new(
                index,
                encode_vector(v.values, req.format())?,
            ));
        }
        response(data, req.input.estimated_tokens(), req, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Provider, ProviderKind};
    use crate::openai::embeddings::EmbeddingsLimits;

    #[test]
    fn encodes_batch_and_decodes_base64() {
        let p =
            Provider::new("google", ProviderKind::Gemini, "https://g.example").with_api_key("k");
        let req = EmbeddingsRequest::from_slice(
            br#"{"model":"google/e","input":["a","b"],"dimensions":2,"encoding_format":"base64"}"#,
            EmbeddingsLimits::default(),
        )
        .unwrap();
        let r = super::super::Gemini
            .encode_embeddings(
                &req,
                &EncodeContext {
                    provider: &p,
                    upstream_model: "gemini-embedding-001",
                    max_output: None,
                },
            )
            .unwrap();
        assert_eq!(
            r.uri(),
            "https://g.example/v1beta/models/gemini-embedding-001:batchEmbedContents"
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body().to_bytes()).unwrap();
        assert_eq!(v["requests"][1]["content"]["parts"][0]["text"], "b");
        assert_eq!(v["requests"][0]["outputDimensionality"], 2);
        assert_eq!(v["requests"][0]["model"], "models/gemini-embedding-001");
        let ctx = DecodeContext {
            model: "google/e".into(),
            provider: "google".into(),
        };
        let out = super::super::Gemini
            .decode_embeddings(
                br#"{"embeddings":[{"values":[1.0,-2.0]},{"values":[0.5,0.25]}]}"#,
                &req,
                &ctx,
            )
            .unwrap();
        assert_eq!(out.data[0].embedding.get(), "\"AACAPwAAAMA=\"");
        assert_eq!(out.data[1].index, 1);
        assert_eq!(out.model, "google/e");
        // Too few vectors: the provider failed.
        assert_eq!(
            super::super::Gemini
                .decode_embeddings(br#"{"embeddings":[{"values":[1.0]}]}"#, &req, &ctx)
                .unwrap_err()
                .status(),
            502
        );
        let tokens = EmbeddingsRequest::from_slice(
            br#"{"model":"m","input":[1,2]}"#,
            EmbeddingsLimits::default(),
        )
        .unwrap();
        let e = super::super::Gemini
            .encode_embeddings(
                &tokens,
                &EncodeContext {
                    provider: &p,
                    upstream_model: "m",
                    max_output: None,
                },
            )
            .unwrap_err();
        assert_eq!(e.status(), 400);
    }
}
