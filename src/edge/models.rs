use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method};
use serde_json::{json, Value};
use tower_service::Service;

use super::{method_not_allowed, EdgeBody};
use crate::catalog::{Catalog, Pricing};

/// `GET /v1/models`: the catalog's models (and aliases) in OpenRouter's shape, rendered once.
#[derive(Debug, Clone)]
pub struct Models {
    body: Bytes,
}

impl Models {
    /// Renders the model list of `catalog`.
    pub fn new(catalog: &Catalog) -> Self {
        Self {
            body: Bytes::from(render(catalog)),
        }
    }
}

impl<B> Service<http::Request<B>> for Models {
    type Response = http::Response<EdgeBody>;
    type Error = Infallible;
    type Future = Ready<Result<http::Response<EdgeBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return ready(Ok(method_not_allowed("GET")));
        }
        let mut r = http::Response::new(EdgeBody::full(self.body.clone()));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        ready(Ok(r))
    }
}

fn render(catalog: &Catalog) -> Vec<u8> {
    let created = crate::openai::unix_now();
    let mut data: Vec<Value> = Vec::new();
    for m in catalog.models() {
        let first = m.endpoints.first();
        let pricing = first.and_then(|e| e.pricing).map(pricing_json);
        if m.kind == crate::catalog::ModelKind::Embedding {
            data.push(json!({
                "id": &*m.id,
                "object": "model",
                "created": created,
                "owned_by": m.id.split_once('/').map_or("", |(p, _)| p),
                "name": &*m.name,
                "kind": m.kind.as_str(),
                "dimensions": m.dimensions,
                "context_length": m.context_length,
                "pricing": pricing,
                "architecture": {"input_modalities": ["text"], "output_modalities": ["embeddings"]},
                "providers": m.endpoints.iter().map(|e| &*e.provider.name).collect::<Vec<_>>(),
            }));
            continue;
        }
        data.push(json!({
            "kind": m.kind.as_str(),
            "id": &*m.id,
            "object": "model",
            "created": created,
            "owned_by": m.id.split_once('/').map_or("", |(p, _)| p),
            "name": &*m.name,
            "context_length": m.context_length,
            "pricing": pricing,
            "top_provider": {
                "context_length": m.context_length,
                "max_completion_tokens": m.max_output,
            },
            "providers": m.endpoints.iter().map(|e| &*e.provider.name).collect::<Vec<_>>(),
            "supported_parameters": supported(m.capabilities),
        }));
    }
    let mut aliases: Vec<(&str, &str)> = catalog.aliases().collect();
    aliases.sort_unstable();
    for (alias, target) in aliases {
        data.push(json!({
            "id": alias,
            "object": "model",
            "created": created,
            "owned_by": "switchboard",
            "name": format!("{alias} (alias of {target})"),
        }));
    }
    serde_json::to_vec(&json!({ "object": "list", "data": data })).unwrap_or_default()
}

fn supported(c: crate::catalog::Capabilities) -> Vec<&'static str> {
    let mut v = vec![
        "max_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "response_format",
    ];
    if c.tools {
        v.extend(["tools", "tool_choice"]);
    }
    if c.reasoning {
        v.extend(["reasoning", "include_reasoning"]);
    }
    v
}

fn pricing_json(p: Pricing) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("prompt".into(), per_token(p.input).into());
    o.insert("completion".into(), per_token(p.output).into());
    if let Some(c) = p.cached_input {
        o.insert("input_cache_read".into(), per_token(c).into());
    }
    if let Some(c) = p.cache_write {
        o.insert("input_cache_write".into(), per_token(c).into());
    }
    o.insert(
        "request".into(),
        p.per_request
            .map_or_else(|| "0".to_owned(), |r| trim(format!("{r}")))
            .into(),
    );
    Value::Object(o)
}

/// USD per million tokens → USD per token as an exact decimal string (no float noise).
pub(crate) fn per_token(per_million: f64) -> String {
    let s = format!("{per_million}");
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let digits = format!("{int}{frac}");
    let point = int.len() as isize - 6;
    let out = if point <= 0 {
        format!("0.{}{}", "0".repeat((-point) as usize), digits)
    } else {
        let (a, b) = digits.split_at(point as usize);
        format!("{a}.{b}")
    };
    trim(out)
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_token_strings_are_exact() {
        assert_eq!(per_token(0.15), "0.00000015");
        assert_eq!(per_token(3.0), "0.000003");
        assert_eq!(per_token(15.0), "0.000015");
        assert_eq!(per_token(0.0), "0");
        assert_eq!(per_token(1250.5), "0.0012505");
        assert_eq!(per_token(2_000_000.0), "2");
    }
}
