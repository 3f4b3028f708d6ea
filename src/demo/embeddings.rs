//! Demo embeddings: OpenAI's `POST /v1/embeddings` (also under Azure's URLs) and Gemini's
//! `models/{model}:batchEmbedContents`.
//!
//! Vectors are deterministic: component `i` of the vector of a text is a number in `[-1, 1)`
//! from a hash of the text and `i` ([`demo_embedding`]); token ids are embedded as the text
//! of their decimal numbers joined by spaces. The default size is 3072 for models whose name
//! contains `large` or `gemini-embedding`, 768 for other Gemini models, 1536 otherwise;
//! `dimensions` (`outputDimensionality`) shortens it. Usage counts the words of each text (the
//! ids of each token list); Gemini, like the real API, reports no usage.

use http::StatusCode;
use serde_json::{json, Map, Value};

use super::common::{hash64, words};
use super::wire::Reply;

/// The demo's vector for `text` with `dims` components.
pub fn demo_embedding(text: &str, dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|i| {
            let mut data = Vec::with_capacity(text.len() + 8);
            data.extend_from_slice(text.as_bytes());
            data.extend_from_slice(&(i as u64).to_le_bytes());
            let h = hash64(&data) % 2_000_000;
            (h as f32 / 1_000_000.0) - 1.0
        })
        .collect()
}

/// The default vector size of a demo model.
pub(super) fn default_dims(model: &str, gemini: bool) -> usize {
    if model.contains("large") || model.contains("gemini-embedding") {
        3072
    } else if gemini {
        768
    } else {
        1536
    }
}

/// The most components a demo vector may have.
const MAX_DIMS: u64 = 8192;

fn openai_error(message: impl Into<String>, param: Option<&str>) -> Reply {
    Reply::json(
        StatusCode::BAD_REQUEST,
        json!({"error": {"message": message.into(), "type": "invalid_request_error", "param": param, "code": null}}),
    )
}

/// OpenAI's embeddings endpoint (auth already checked), for `model`.
pub(super) fn openai(o: &Map<String, Value>, model: &str) -> Reply {
    let texts: Vec<(String, u64)> = match o.get("input") {
        Some(Value::String(s)) if !s.is_empty() => vec![(s.clone(), words(s))],
        Some(Value::Array(a)) if !a.is_empty() => {
            if a.iter().all(|v| matches!(v, Value::String(s) if !s.is_empty())) {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| (s.to_owned(), words(s)))
                    .collect()
            } else if a.iter().all(|v| v.as_u64().is_some()) {
                vec![tokens_text(a)]
            } else if a
                .iter()
                .all(|v| matches!(v, Value::Array(t) if !t.is_empty() && t.iter().all(|x| x.as_u64().is_some())))
            {
                a.iter()
                    .filter_map(Value::as_array)
                    .map(|t| tokens_text(t))
                    .collect()
            } else {
                return openai_error("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", Some("input"));
            }
        }
        Some(_) => {
            return openai_error(
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
                Some("input"),
            )
        }
        None => return openai_error("you must provide an input parameter", Some("input")),
    };
    if texts.len() > 2048 {
        return openai_error(
            "'$.input' is invalid: at most 2048 inputs are allowed.",
            Some("input"),
        );
    }
    let base64 = match o.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "float" => false,
        Some(Value::String(s)) if s == "base64" => true,
        Some(v) => {
            return openai_error(
                format!("Invalid value for 'encoding_format': {v}. Supported values are: 'float' and 'base64'."),
                Some("encoding_format"),
            )
        }
    };
    let full = default_dims(model, false);
    let dims = match o.get("dimensions") {
        None | Some(Value::Null) => full,
        Some(v) => match v.as_u64() {
            Some(d) if d >= 1 && d <= MAX_DIMS.min(full as u64) => d as usize,
            _ => {
                return openai_error(
                    format!(
                        "Invalid value for 'dimensions': {v}. It must be between 1 and {full}."
                    ),
                    Some("dimensions"),
                )
            }
        },
    };
    for k in o.keys() {
        if !matches!(
            k.as_str(),
            "model" | "input" | "encoding_format" | "dimensions" | "user"
        ) {
            return openai_error(format!("Unrecognized request argument supplied: {k}"), None);
        }
    }
    let mut prompt = 0;
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, (text, n))| {
            prompt += n;
            let v = demo_embedding(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::from(super::common::base64(&bytes))
            } else {
                Value::from(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Reply::json(
        StatusCode::OK,
        json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }),
    )
}

fn tokens_text(ids: &[Value]) -> (String, u64) {
    let text = ids
        .iter()
        .filter_map(Value::as_u64)
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    (text, ids.len() as u64)
}

/// Gemini's `batchEmbedContents` (auth and model already checked), or the Google error reply.
pub(super) fn gemini(o: &Map<String, Value>, model: &str) -> Result<Reply, (u16, String)> {
    let bad = |m: String| Err((400, m));
    for k in o.keys() {
        if k != "requests" {
            return bad(format!(
                "Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."
            ));
        }
    }
    let Some(Value::Array(requests)) = o.get("requests") else {
        return bad("* BatchEmbedContentsRequest.requests: requests is required".into());
    };
    if requests.is_empty() || requests.len() > 100 {
        return bad(
            "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch".into(),
        );
    }
    let mut out = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let Value::Object(r) = r else {
            return bad(format!("requests[{i}]: not an object"));
        };
        for k in r.keys() {
            if !matches!(
                k.as_str(),
                "model"
                    | "content"
                    | "taskType"
                    | "task_type"
                    | "title"
                    | "outputDimensionality"
                    | "output_dimensionality"
            ) {
                return bad(format!(
                    "Invalid JSON payload received. Unknown name \"{k}\" at 'requests[{i}]': Cannot find field."
                ));
            }
        }
        let want = format!("models/{model}");
        if r.get("model").and_then(Value::as_str) != Some(want.as_str()) {
            return bad(format!(
                "* BatchEmbedContentsRequest.requests[{i}].model: model of the request must be {want}"
            ));
        }
        let text: String = r
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("")
            })
            .unwrap_or_default();
        if text.is_empty() {
            return bad(format!(
                "* BatchEmbedContentsRequest.requests[{i}].content: contents is not specified"
            ));
        }
        let full = default_dims(model, true);
        let dims = match r
            .get("outputDimensionality")
            .or_else(|| r.get("output_dimensionality"))
        {
            None | Some(Value::Null) => full,
            Some(v) => match v.as_u64() {
                Some(d) if d >= 1 && d <= MAX_DIMS.min(full as u64) => d as usize,
                _ => {
                    return bad(format!(
                        "* BatchEmbedContentsRequest.requests[{i}].output_dimensionality: must be between 1 and {full}"
                    ))
                }
            },
        };
        out.push(json!({ "values": demo_embedding(&text, dims) }));
    }
    Ok(Reply::json(StatusCode::OK, json!({ "embeddings": out })))
}

/// The most instances one Vertex AI `:predict` call takes.
const VERTEX_MAX_INSTANCES: usize = 250;

/// Vertex AI's text embedding `:predict` (auth and model already checked), or the message of
/// Google's `400 INVALID_ARGUMENT`. Each prediction reports `statistics.token_count` (the words
/// of its text) as the real API does.
pub(super) fn vertex(o: &Map<String, Value>, model: &str) -> Result<Reply, String> {
    for k in o.keys() {
        if !matches!(k.as_str(), "instances" | "parameters") {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."
            ));
        }
    }
    let Some(Value::Array(instances)) = o.get("instances") else {
        return Err("instances is required and must be a list".into());
    };
    if instances.is_empty() || instances.len() > VERTEX_MAX_INSTANCES {
        return Err(format!(
            "The number of instances must be between 1 and {VERTEX_MAX_INSTANCES}, got {}.",
            instances.len()
        ));
    }
    let full = default_dims(model, true);
    let dims = match o.get("parameters") {
        None => full,
        Some(Value::Object(p)) => {
            for k in p.keys() {
                if !matches!(k.as_str(), "outputDimensionality" | "autoTruncate") {
                    return Err(format!(
                        "Invalid JSON payload received. Unknown name \"{k}\" at 'parameters': Cannot find field."
                    ));
                }
            }
            match p.get("outputDimensionality") {
                None => full,
                Some(v) => match v.as_u64() {
                    Some(d) if d >= 1 && d <= MAX_DIMS.min(full as u64) => d as usize,
                    _ => {
                        return Err(format!(
                            "parameters.outputDimensionality must be between 1 and {full}, got {v}."
                        ))
                    }
                },
            }
        }
        Some(_) => return Err("parameters must be an object".into()),
    };
    let mut predictions = Vec::with_capacity(instances.len());
    let mut chars = 0;
    for (i, inst) in instances.iter().enumerate() {
        let Value::Object(inst) = inst else {
            return Err(format!("instances[{i}] must be an object"));
        };
        for k in inst.keys() {
            if !matches!(k.as_str(), "content" | "task_type" | "title") {
                return Err(format!(
                    "Invalid JSON payload received. Unknown name \"{k}\" at 'instances[{i}]': Cannot find field."
                ));
            }
        }
        let Some(text) = inst
            .get("content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return Err(format!("instances[{i}].content must be a non-empty string"));
        };
        chars += text.chars().count();
        predictions.push(json!({"embeddings": {
            "values": demo_embedding(text, dims),
            "statistics": {"token_count": words(text), "truncated": false},
        }}));
    }
    Ok(Reply::json(
        StatusCode::OK,
        json!({"predictions": predictions, "metadata": {"billableCharacterCount": chars}}),
    ))
}
