//! What one request may ask of ModelResolve, checked before any per-id work; how error
//! messages quote what the client sent.

use std::collections::HashSet;
use std::fmt;

use crate::openai::ChatRequest;
use crate::Error;

/// Default for [`Limits::max_models`].
pub const DEFAULT_MAX_MODELS: usize = 64;

/// Default for [`Limits::max_id_bytes`].
pub const DEFAULT_MAX_ID_BYTES: usize = 256;

/// Bounds on what one request may ask of [`ModelResolve`](super::ModelResolve); requests
/// over them are refused with a 400 before any per-id work (set them with
/// [`ModelResolveLayer::max_models`](super::ModelResolveLayer::max_models) and
/// [`ModelResolveLayer::max_id_bytes`](super::ModelResolveLayer::max_id_bytes)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The most entries `models` may list (default [`DEFAULT_MAX_MODELS`], 64; duplicates
    /// count). `0` refuses any non-empty `models`.
    pub max_models: usize,
    /// The longest `model`, and the longest entry of `models`, in bytes (default
    /// [`DEFAULT_MAX_ID_BYTES`], 256).
    pub max_id_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_models: DEFAULT_MAX_MODELS,
            max_id_bytes: DEFAULT_MAX_ID_BYTES,
        }
    }
}

impl Limits {
    /// Refuses a request whose `models` lists too many ids, or whose `model` or an entry of
    /// `models` is too long: 400 naming the limit and the parameter. Constant work per id.
    pub(super) fn check(&self, req: &ChatRequest) -> Result<(), Error> {
        let models = req.models.as_deref().unwrap_or_default();
        if models.len() > self.max_models {
            return Err(Error::invalid_request(format!(
                "`models` lists {} ids; at most {} are allowed",
                models.len(),
                self.max_models
            ))
            .with_code("array_above_max_length")
            .with_param("models"));
        }
        let too_long = |id: &str, param: String| {
            Error::invalid_request(format!(
                "`{param}` is {} bytes long; model ids are at most {} bytes (`{}`)",
                id.len(),
                self.max_id_bytes,
                quote(id)
            ))
            .with_code("string_above_max_length")
            .with_param(param)
        };
        if req.model.len() > self.max_id_bytes {
            return Err(too_long(&req.model, "model".to_owned()));
        }
        if let Some(i) = models.iter().position(|m| m.len() > self.max_id_bytes) {
            return Err(too_long(&models[i], format!("models[{i}]")));
        }
        Ok(())
    }
}

/// The requested ids in order: `model` (if set), then each of `models` not already listed.
/// Linear: a hash set (SipHash, randomly keyed: the keys are the client's) remembers the
/// ids seen.
pub(super) fn requested_ids(req: &ChatRequest) -> Vec<&str> {
    let models = req.models.as_deref().unwrap_or_default();
    let mut ids: Vec<&str> = Vec::with_capacity(1 + models.len());
    if !req.model.is_empty() {
        ids.push(&req.model);
    }
    match models {
        [] => {}
        [only] => {
            if ids.first() != Some(&only.as_str()) {
                ids.push(only);
            }
        }
        _ => {
            let mut seen: HashSet<&str> = HashSet::with_capacity(ids.capacity());
            seen.extend(ids.iter().copied());
            ids.extend(
                models
                    .iter()
                    .map(String::as_str)
                    .filter(|m| seen.insert(*m)),
            );
        }
    }
    ids
}

/// How many chars of a client's string an error message quotes.
const QUOTE_CHARS: usize = 64;

/// A client's string as error messages quote it: its first 64 chars, escaped
/// ([`char::escape_debug`]: control chars, quotes and backslashes), then `…` when cut. The
/// quote is bounded whatever the client sent; callers add the backticks around it.
pub(crate) fn quote(s: &str) -> Quoted<'_> {
    Quoted(s)
}

/// See [`quote`].
pub(crate) struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == QUOTE_CHARS {
                return f.write_str("…");
            }
            fmt::Display::fmt(&c.escape_debug(), f)?;
        }
        Ok(())
    }
}

/// A client's list of names as error messages quote it: the names joined with `, `, quoted
/// like [`quote`]. Reads no more of the list than the quote shows.
pub(crate) fn quote_list(list: &[String]) -> String {
    let head: String = list
        .iter()
        .enumerate()
        .flat_map(|(i, s)| if i > 0 { ", " } else { "" }.chars().chain(s.chars()))
        .take(QUOTE_CHARS + 1)
        .collect();
    quote(&head).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_is_bounded_and_escaped() {
        assert_eq!(quote("openai/gpt-4o").to_string(), "openai/gpt-4o");
        let exact = "a".repeat(QUOTE_CHARS);
        assert_eq!(quote(&exact).to_string(), exact);
        let long = format!("openai/{}", "x".repeat(4 << 20));
        let q = quote(&long).to_string();
        assert_eq!(q, format!("openai/{}…", "x".repeat(QUOTE_CHARS - 7)));
        assert_eq!(quote("a\nb\u{0}\"c\\").to_string(), r#"a\nb\0\"c\\"#);
        // Chars, not bytes: a multi-byte char is never split.
        let wide = "é".repeat(100);
        assert_eq!(
            quote(&wide).to_string(),
            format!("{}…", "é".repeat(QUOTE_CHARS))
        );
        // Escapes may lengthen the quote, but only by a bounded factor.
        assert!(quote(&"\u{1}".repeat(1000)).to_string().len() <= QUOTE_CHARS * 10 + 3);
    }

    #[test]
    fn quote_list_is_bounded() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(quote_list(&names(&["a", "b"])), "a, b");
        assert_eq!(quote_list(&[]), "");
        let many: Vec<String> = (0..200_000).map(|i| format!("p{i}")).collect();
        let q = quote_list(&many);
        assert!(q.starts_with("p0, p1, p2"), "{q}");
        assert!(q.ends_with('…'), "{q}");
        assert!(q.chars().count() == QUOTE_CHARS + 1, "{q}");
        let huge = vec!["é".repeat(1 << 20)];
        assert_eq!(quote_list(&huge), format!("{}…", "é".repeat(QUOTE_CHARS)));
    }

    #[test]
    fn limits_refuse_long_lists_and_ids_first() {
        let req = |v: serde_json::Value| {
            let mut v = v;
            v["messages"] = serde_json::json!([{"role": "user", "content": "hi"}]);
            ChatRequest::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap()
        };
        let l = Limits::default();
        assert!(l
            .check(&req(serde_json::json!({"model": "a", "models": ["b"]})))
            .is_ok());
        let ids: Vec<String> = (0..65).map(|i| format!("id{i}")).collect();
        let e = l
            .check(&req(serde_json::json!({"model": "a", "models": ids})))
            .unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(e.param(), Some("models"));
        assert_eq!(e.code(), Some("array_above_max_length"));
        assert!(e.message().contains("at most 64"), "{}", e.message());
        let e = l
            .check(&req(serde_json::json!({"model": "x".repeat(257)})))
            .unwrap_err();
        assert_eq!(e.param(), Some("model"));
        assert_eq!(e.code(), Some("string_above_max_length"));
        assert!(e.message().contains("at most 256 bytes"), "{}", e.message());
        assert!(l
            .check(&req(serde_json::json!({"model": "x".repeat(256)})))
            .is_ok());
        let e = l
            .check(&req(
                serde_json::json!({"model": "a", "models": ["b", "y".repeat(300)]}),
            ))
            .unwrap_err();
        assert_eq!(e.param(), Some("models[1]"));
        let tight = Limits {
            max_models: 0,
            max_id_bytes: 3,
        };
        assert!(tight
            .check(&req(serde_json::json!({"model": "abc", "models": []})))
            .is_ok());
        assert!(tight
            .check(&req(serde_json::json!({"model": "abc", "models": ["a"]})))
            .is_err());
        assert!(tight
            .check(&req(serde_json::json!({"model": "abcd"})))
            .is_err());
    }

    #[test]
    fn requested_ids_keep_first_places() {
        let req = |v: serde_json::Value| {
            let mut v = v;
            v["messages"] = serde_json::json!([{"role": "user", "content": "hi"}]);
            ChatRequest::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap()
        };
        let r = req(serde_json::json!({"model": "a", "models": ["b", "a", "c", "b"]}));
        assert_eq!(requested_ids(&r), ["a", "b", "c"]);
        let r = req(serde_json::json!({"model": "a", "models": ["a"]}));
        assert_eq!(requested_ids(&r), ["a"]);
        let r = req(serde_json::json!({"models": ["b"]}));
        assert_eq!(requested_ids(&r), ["b"]);
        let r = req(serde_json::json!({"model": "a"}));
        assert_eq!(requested_ids(&r), ["a"]);
        let r = req(serde_json::json!({"models": ["x", "y", "x", "z", "y"]}));
        assert_eq!(requested_ids(&r), ["x", "y", "z"]);
    }
}
