//! What one request may ask of ModelResolve, checked before any per-id work; how error
//! messages quote what the client sent; which upstream model names a pass-through id may
//! carry to a provider.

use std::collections::HashSet;
use std::fmt;

use crate::catalog::ProviderKind;
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
    /// Refuses a request whose `models` (or `provider.order` / `only` / `ignore`) lists too
    /// many ids, or whose `model` or an entry of those lists is too long: 400 naming the limit
    /// and the parameter. Constant work per id.
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
        // `provider.order` / `only` / `ignore` are scanned per candidate: bound them like
        // `models` (provider names are ids too).
        if let Some(p) = &req.provider {
            for (name, list) in [
                ("order", &p.order),
                ("only", &p.only),
                ("ignore", &p.ignore),
            ] {
                let list = list.as_deref().unwrap_or_default();
                let param = || format!("provider.{name}");
                if list.len() > self.max_models {
                    return Err(Error::invalid_request(format!(
                        "`provider.{name}` lists {} providers; at most {} are allowed",
                        list.len(),
                        self.max_models
                    ))
                    .with_code("array_above_max_length")
                    .with_param(param()));
                }
                if let Some(i) = list.iter().position(|m| m.len() > self.max_id_bytes) {
                    return Err(too_long(&list[i], format!("{}[{i}]", param())));
                }
            }
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

/// Whether `name` may be sent to a provider of `kind` as the upstream model of a
/// pass-through id (`provider/name`). The name reaches a URL path (Gemini:
/// `/v1beta/models/{name}:generateContent`) or a JSON body, so it must be one plain path
/// segment, never a way to another one:
///
/// - OpenAI-compatible: `/`-separated segments of ASCII letters, digits and `.` `_` `-` `:`
///   `@` (`meta-llama/Llama-3-70b`, `llama3:8b`, `@cf/meta/llama-3-8b-instruct`);
/// - Anthropic: one segment of letters, digits and `.` `_` `-` `:`;
/// - Azure: one segment of letters, digits and `.` `_` `-` (the deployment name);
/// - Gemini: one segment of letters, digits and `.` `_` `-` (no `:`, which would start the
///   method), optionally after `models/` or `tunedModels/`;
/// - Vertex AI: one segment of letters, digits and `.` `_` `-` `@` (`claude-sonnet-4@20250514`).
///
/// No segment may be empty, `.` or `..`; spaces, control chars, `%`, `?`, `#`, `\` and
/// non-ASCII are never allowed.
pub(crate) fn upstream_name_ok(kind: ProviderKind, name: &str) -> bool {
    let plain = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-');
    let segment_ok = |seg: &str, extra: &[u8]| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg.bytes().all(|c| plain(c) || extra.contains(&c))
    };
    match kind {
        ProviderKind::Openai => name.split('/').all(|seg| segment_ok(seg, b":@")),
        ProviderKind::Anthropic => segment_ok(name, b":"),
        // An Azure deployment name is one URL path segment.
        ProviderKind::Azure => segment_ok(name, b""),
        ProviderKind::Gemini => {
            let seg = name
                .strip_prefix("models/")
                .or_else(|| name.strip_prefix("tunedModels/"))
                .unwrap_or(name);
            segment_ok(seg, b"")
        }
        ProviderKind::Vertex => segment_ok(name, b"@"),
        // Model ids, inference profiles and ARNs: encoded as one path segment.
        ProviderKind::Bedrock => segment_ok(name, b":/"),
    }
}

/// What [`upstream_name_ok`] allows for `kind`, for error messages.
pub(super) fn upstream_name_rule(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai => {
            "`/`-separated segments of ASCII letters, digits, `.`, `_`, `-`, `:` and `@`, none \
             empty, `.` or `..`"
        }
        ProviderKind::Anthropic => "ASCII letters, digits, `.`, `_`, `-` and `:`",
        ProviderKind::Azure => "ASCII letters, digits, `.`, `_` and `-` (a deployment name)",
        ProviderKind::Gemini => {
            "ASCII letters, digits, `.`, `_` and `-`, optionally after `models/` or `tunedModels/`"
        }
        ProviderKind::Vertex => "ASCII letters, digits, `.`, `_`, `-` and `@`",
        ProviderKind::Bedrock => "ASCII letters, digits, `.`, `_`, `-`, `:` and `/`",
    }
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
        let providers: Vec<String> = (0..100_000).map(|i| format!("p{i}")).collect();
        for list in ["order", "only", "ignore"] {
            let e = l
                .check(&req(
                    serde_json::json!({"model": "a", "provider": {list: providers}}),
                ))
                .unwrap_err();
            assert_eq!(e.param(), Some(format!("provider.{list}").as_str()));
            let e = l
                .check(&req(
                    serde_json::json!({"model": "a", "provider": {list: ["x".repeat(300)]}}),
                ))
                .unwrap_err();
            assert_eq!(e.param(), Some(format!("provider.{list}[0]").as_str()));
            assert!(e.message().len() < 300, "{}", e.message());
        }
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

    #[test]
    fn upstream_names_accepted() {
        use ProviderKind::{Anthropic, Gemini, Openai};
        for name in [
            "gpt-4o",
            "gpt-4.1-nano",
            "meta-llama/Llama-3-70b",
            "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
            "accounts/fireworks/models/llama-v3-70b-instruct",
            "llama3:8b",
            "qwen2.5:7b-instruct-q4_K_M",
            "@cf/meta/llama-3-8b-instruct",
            "ft:gpt-4o-mini:org:custom:id",
            ".hidden",
            "a..b",
        ] {
            assert!(upstream_name_ok(Openai, name), "openai refused {name:?}");
        }
        for name in [
            "claude-sonnet-4-20250514",
            "claude-3-5-haiku-latest",
            "claude-3.7:thinking",
        ] {
            assert!(
                upstream_name_ok(Anthropic, name),
                "anthropic refused {name:?}"
            );
        }
        for name in [
            "gemini-2.5-flash",
            "gemini-2.0-flash-001",
            "gemma-3-27b-it",
            "models/gemini-2.5-pro",
            "tunedModels/my-model-123",
        ] {
            assert!(upstream_name_ok(Gemini, name), "gemini refused {name:?}");
        }
    }

    #[test]
    fn upstream_names_refused() {
        use ProviderKind::{Anthropic, Gemini, Openai};
        let always = [
            "", ".", "..", "../admin", "a/../b", "a/./b", "a//b", "/a", "a/", "%2e%2e", "%2E%2E/x",
            "a b", "a\tb", "a\nb", "a\u{0}b", "a\u{7f}b", "a?b=1", "a#frag", "a\\..\\b",
            "gpt‐4o", // U+2010, not ASCII
            "a;b", "a&b",
        ];
        for kind in [Openai, Anthropic, Gemini] {
            for name in always {
                assert!(!upstream_name_ok(kind, name), "{kind:?} allowed {name:?}");
            }
        }
        // Only OpenAI-compatible names have segments.
        for name in ["meta-llama/Llama-3-70b", "x/y"] {
            assert!(!upstream_name_ok(Anthropic, name), "{name:?}");
            assert!(!upstream_name_ok(Gemini, name), "{name:?}");
        }
        // Gemini: `:` would start the method; only the two collections may prefix.
        for name in [
            "gemini-2.5-flash:streamGenerateContent",
            "x:countTokens",
            "files/abc",
            "models/",
            "models/..",
            "models/a/b",
            "tunedModels/x:y",
            "cachedContents/x",
        ] {
            assert!(!upstream_name_ok(Gemini, name), "gemini allowed {name:?}");
        }
        assert!(!upstream_name_ok(Anthropic, "claude@20240620"));
    }
}
