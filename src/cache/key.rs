//! Cache keys: a BLAKE3 hash over the route and every answer-relevant request field.
//!
//! Raw JSON parts (`messages`, `tools`, `tool_choice`, `response_format`, unknown fields) are
//! hashed as the client wrote them, less the whitespace between tokens: two requests that
//! differ only in formatting share an entry. Object keys in another order, a string written
//! with other escapes (`"\u0041"` for `"A"`) or a number written another way (`1.0` for `1`)
//! give another key: a miss, never a wrong hit. Decoding and sorting every value (serde's
//! walk over the parts, as this module once did) cost about 12 k instructions on a 1 KiB
//! request, more than the hash; SDKs write a given request the same way every time.
//!
//! A cryptographic hash rather than a fast non-cryptographic one: the cache is shared between
//! callers, and a key collision an attacker can construct would let one caller poison another's
//! answers. BLAKE3 rather than SHA-256: as collision-resistant (256-bit output, 128-bit
//! security), and cheaper on long conversations. Measured (`benches/cache.rs`, `for_request_*`,
//! x86-64 with SHA-NI and AVX-512, one buffer hashed either way): 32 KiB of `messages` 27.8 µs
//! with BLAKE3 against 36.3 µs with SHA-256; at 1 KiB SHA-256 with SHA-NI is faster (1.56 µs
//! against 2.18 µs). Without SHA extensions (older CPUs, and valgrind, which hides them)
//! SHA-256 costs ~30 instructions a byte and BLAKE3 ~6.

use std::fmt;

use crate::ext::Route;
use crate::openai::{ChatRequest, Stop};
use crate::Error;

/// Bumped when the key derivation changes, so old entries in a shared store are not read.
const KEY_VERSION: &[u8] = b"switchboard.cache.v3";

/// A response-cache key: 32 bytes of BLAKE3.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of a request: the route's candidates (provider and upstream model, in order;
    /// without a route the requested `model`, `models`, `route` and `provider` fields) plus
    /// every field that affects the answer. `stream`, `stream_options`, `user` and `metadata`
    /// are left out.
    ///
    /// Errors only when a raw JSON part has a string that does not end (requests parsed by
    /// [`ChatRequest::from_slice`] never do).
    pub fn for_request(route: Option<&Route>, req: &ChatRequest) -> Result<Self, Error> {
        Self::for_caller(None, route, req)
    }

    /// The key of a request in one caller's scope: the same request from two gateway keys
    /// has two keys, so one tenant never sees another's answers (or learns from a hit what
    /// another sent). `None` is the shared scope.
    pub fn for_caller(
        caller: Option<&str>,
        route: Option<&Route>,
        req: &ChatRequest,
    ) -> Result<Self, Error> {
        Self::for_native(caller, route, req, None)
    }

    /// [`for_caller`](Self::for_caller) for a request that also travels in its client's own
    /// format ([`NativeRequest`](crate::ext::NativeRequest)): a provider of that format gets
    /// those bytes, which may carry more than the canonical request, so they are part of the
    /// key (as sent: a byte of difference is a miss, never a wrong hit).
    pub(crate) fn for_native(
        caller: Option<&str>,
        route: Option<&Route>,
        req: &ChatRequest,
        native: Option<&[u8]>,
    ) -> Result<Self, Error> {
        // The canonical bytes are gathered first and hashed in one call: BLAKE3 over a whole
        // buffer costs far less than over many small updates.
        let mut h = KeyHasher(Vec::with_capacity(req.messages.as_bytes().len() + 256));
        h.raw(KEY_VERSION);
        if let Some(caller) = caller {
            h.field("caller");
            h.str(caller);
        }
        match route {
            Some(route) => {
                h.field("route");
                h.len(route.candidates.len());
                for c in route.candidates.iter() {
                    h.str(&c.provider.name);
                    h.str(&c.upstream_model);
                }
            }
            None => {
                h.field("model");
                h.str(&req.model);
                if let Some(models) = &req.models {
                    h.field("models");
                    h.strs(models.iter().map(String::as_str), models.len());
                }
                if let Some(r) = &req.route {
                    h.field("route_mode");
                    h.str(r);
                }
                if let Some(p) = &req.provider {
                    h.field("provider");
                    let json = serde_json::to_string(p)
                        .map_err(|e| Error::invalid_request("invalid `provider`").with_source(e))?;
                    h.json(json.as_bytes(), "provider")?;
                }
            }
        }
        h.field("messages");
        h.json(req.messages.as_bytes(), "messages")?;
        for (name, raw) in [
            ("tools", &req.tools),
            ("tool_choice", &req.tool_choice),
            ("response_format", &req.response_format),
        ] {
            if let Some(raw) = raw {
                h.field(name);
                h.json(raw.as_bytes(), name)?;
            }
        }
        for (name, v) in [
            ("temperature", req.temperature),
            ("top_p", req.top_p),
            ("frequency_penalty", req.frequency_penalty),
            ("presence_penalty", req.presence_penalty),
        ] {
            if let Some(v) = v {
                h.field(name);
                h.f64(v);
            }
        }
        for (name, v) in [
            ("top_k", req.top_k),
            ("max_tokens", req.max_tokens),
            ("max_completion_tokens", req.max_completion_tokens),
            ("n", req.n),
            ("top_logprobs", req.top_logprobs),
        ] {
            if let Some(v) = v {
                h.field(name);
                h.u64(u64::from(v));
            }
        }
        if let Some(seed) = req.seed {
            h.field("seed");
            h.raw(seed.to_le_bytes());
        }
        for (name, v) in [
            ("logprobs", req.logprobs),
            ("parallel_tool_calls", req.parallel_tool_calls),
        ] {
            if let Some(v) = v {
                h.field(name);
                h.bool(v);
            }
        }
        if let Some(stop) = &req.stop {
            // `"x"` and `["x"]` ask for the same thing.
            h.field("stop");
            match stop {
                Stop::One(s) => h.strs(std::iter::once(s.as_str()), 1),
                Stop::Many(v) => h.strs(v.iter().map(String::as_str), v.len()),
            }
        }
        if let Some(e) = &req.reasoning_effort {
            h.field("reasoning_effort");
            h.str(e);
        }
        if let Some(r) = &req.reasoning {
            h.field("reasoning");
            h.opt_str(r.effort.as_deref());
            h.opt_u64(r.max_tokens.map(u64::from));
            h.opt_bool(r.exclude);
            h.opt_bool(r.enabled);
        }
        if !req.extra.is_empty() {
            let mut extra: Vec<&(String, crate::openai::RawJson)> = req.extra.iter().collect();
            extra.sort_by(|a, b| a.0.cmp(&b.0));
            h.field("extra");
            h.len(extra.len());
            for (k, v) in extra {
                h.str(k);
                h.json(v.as_bytes(), "extra")?;
            }
        }
        if let Some(body) = native {
            h.field("native");
            h.len(body.len());
            h.raw(body);
        }
        Ok(Self(blake3::hash(&h.0).into()))
    }

    /// A key from a digest computed elsewhere (the embeddings cache's own key domain).
    pub(crate) const fn from_digest(d: [u8; 32]) -> Self {
        Self(d)
    }

    /// The raw digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex (64 characters), e.g. for a Redis key.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({self})")
    }
}

/// The canonical encoding of a request, hashed once complete.
struct KeyHasher(Vec<u8>);

impl KeyHasher {
    fn raw(&mut self, bytes: impl AsRef<[u8]>) {
        self.0.extend_from_slice(bytes.as_ref());
    }
    /// Field tags are length-prefixed strings, so a field's presence is unambiguous.
    fn field(&mut self, name: &str) {
        self.raw(b"F");
        self.str(name);
    }
    fn len(&mut self, n: usize) {
        self.raw((n as u64).to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        write_str(&mut self.0, s);
    }
    fn strs<'a>(&mut self, it: impl Iterator<Item = &'a str>, n: usize) {
        self.len(n);
        for s in it {
            self.str(s);
        }
    }
    fn u64(&mut self, v: u64) {
        self.raw(v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        // -0.0 and 0.0 sample the same way.
        let v = if v == 0.0 { 0.0 } else { v };
        self.raw(v.to_bits().to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.raw([u8::from(v)]);
    }
    fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(s) => {
                self.raw(b"1");
                self.str(s);
            }
            None => self.raw(b"0"),
        }
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(n) => {
                self.raw(b"1");
                self.u64(n);
            }
            None => self.raw(b"0"),
        }
    }
    fn opt_bool(&mut self, v: Option<bool>) {
        self.raw([match v {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        }]);
    }
    fn json(&mut self, raw: &[u8], what: &'static str) -> Result<(), Error> {
        compact(raw, &mut self.0)
            .map_err(|e| Error::invalid_request(format!("invalid `{what}`: {e}")).with_param(what))
    }
}

fn write_str(w: &mut Vec<u8>, s: &str) {
    w.extend_from_slice(&(s.len() as u64).to_le_bytes());
    w.extend_from_slice(s.as_bytes());
}

/// Appends the JSON text `raw` to `out` without the whitespace between its tokens, behind its
/// compacted length. Strings are copied as written (found with `memchr`, which skips many
/// bytes a step), so a string's escapes are kept.
fn compact(raw: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    let len_at = out.len();
    out.extend_from_slice(&[0; 8]);
    out.reserve(raw.len());
    let start = out.len();
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let from = i;
                i += 1;
                loop {
                    let Some(at) = raw.get(i..).and_then(|r| memchr::memchr2(b'"', b'\\', r))
                    else {
                        return Err("a string does not end");
                    };
                    i += at + 1;
                    if raw[i - 1] == b'"' {
                        break;
                    }
                    // A backslash: the next byte is escaped.
                    i += 1;
                }
                out.extend_from_slice(&raw[from..i]);
            }
            _ => {
                let from = i;
                while raw
                    .get(i)
                    .is_some_and(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'"'))
                {
                    i += 1;
                }
                out.extend_from_slice(&raw[from..i]);
            }
        }
    }
    let n = (out.len() - start) as u64;
    out[len_at..start].copy_from_slice(&n.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::catalog::{Provider, ProviderKind};
    use crate::ext::Candidate;

    fn req(json: &str) -> ChatRequest {
        ChatRequest::from_slice(json.as_bytes()).unwrap()
    }

    fn key(json: &str) -> CacheKey {
        CacheKey::for_request(None, &req(json)).unwrap()
    }

    fn canon_bytes(raw: &str) -> Vec<u8> {
        let mut v = Vec::new();
        compact(raw.as_bytes(), &mut v).unwrap();
        v
    }

    fn route(cands: &[(&str, &str)]) -> Route {
        Route {
            requested: "x".into(),
            candidates: cands
                .iter()
                .map(|(p, m)| {
                    let prov = Arc::new(Provider::new(*p, ProviderKind::Openai, "http://x/v1"));
                    Candidate::passthrough(format!("{p}/{m}").into(), prov, (*m).into())
                })
                .collect(),
        }
    }

    const BASE: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

    #[test]
    fn compact_form_ignores_whitespace_only() {
        assert_eq!(
            canon_bytes(r#"{"a":1,"b":[true,null,"x y"]}"#),
            canon_bytes("{ \"a\" : 1 ,\n\t\"b\" : [ true , null , \"x y\" ] }")
        );
        // Whitespace inside strings, and escaped quotes, are the string's.
        assert_ne!(canon_bytes(r#"["x y"]"#), canon_bytes(r#"["xy"]"#));
        assert_eq!(
            canon_bytes(r#"["a\" b", "c"]"#),
            [&13u64.to_le_bytes()[..], br#"["a\" b","c"]"#].concat()
        );
        assert_eq!(canon_bytes(r#"["a\\", 1]"#), canon_bytes(r#"["a\\",1]"#));
        // Another key order, escape or number spelling is another key (a miss).
        assert_ne!(
            canon_bytes(r#"{"a":1,"b":2}"#),
            canon_bytes(r#"{"b":2,"a":1}"#)
        );
        assert_ne!(canon_bytes(r#"["A"]"#), canon_bytes(r#"["\u0041"]"#));
        assert_ne!(canon_bytes("[1]"), canon_bytes("[1.0]"));
        assert_ne!(canon_bytes(r#"[1,2]"#), canon_bytes(r#"[2,1]"#));
        assert_ne!(canon_bytes(r#"{"a":"1"}"#), canon_bytes(r#"{"a":1}"#));
        assert_eq!(canon_bytes("-5"), canon_bytes(" -5 "));
        for bad in [&b"[\"x"[..], b"\"\\", b"\"\\\""] {
            assert!(compact(bad, &mut Vec::new()).is_err());
        }
    }

    #[test]
    fn excluded_fields_do_not_change_the_key() {
        let k = key(BASE);
        for body in [
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"user":"u-1"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":{"task":"x"}}"#,
        ] {
            assert_eq!(key(body), k, "{body}");
        }
    }

    #[test]
    fn stop_string_and_one_element_list_are_the_same() {
        let a = key(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":"END"}"#);
        let b = key(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":["END"]}"#);
        assert_eq!(a, b);
    }

    #[test]
    fn route_replaces_model_fields_and_its_order_matters() {
        let r = req(BASE);
        let with_models =
            req(r#"{"model":"m","models":["x"],"messages":[{"role":"user","content":"hi"}]}"#);
        let ab = route(&[("a", "m1"), ("b", "m2")]);
        let ba = route(&[("b", "m2"), ("a", "m1")]);
        let k_ab = CacheKey::for_request(Some(&ab), &r).unwrap();
        assert_eq!(
            CacheKey::for_request(Some(&ab), &with_models).unwrap(),
            k_ab
        );
        assert_ne!(CacheKey::for_request(Some(&ba), &r).unwrap(), k_ab);
        assert_ne!(
            CacheKey::for_request(Some(&route(&[("a", "m1")])), &r).unwrap(),
            k_ab
        );
        assert_ne!(
            CacheKey::for_request(Some(&route(&[("a", "m1"), ("c", "m2")])), &r).unwrap(),
            k_ab
        );
        assert_ne!(CacheKey::for_request(None, &r).unwrap(), k_ab);
        // Without a route the routing fields count.
        assert_ne!(
            key(BASE),
            CacheKey::for_request(None, &with_models).unwrap()
        );
        assert_ne!(
            key(BASE),
            key(r#"{"model":"m2","messages":[{"role":"user","content":"hi"}]}"#)
        );
    }

    #[test]
    fn hex_is_64_chars() {
        let k = key(BASE);
        assert_eq!(k.to_hex().len(), 64);
        assert!(format!("{k:?}").starts_with("CacheKey("));
    }

    // ---- property tests ----

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| Value::from(i64::from(n))),
            (-1000.0f64..1000.0)
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[a-z\"\\\\ é\n]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Writes `v` as JSON with object keys rotated by `rot` and optional extra whitespace.
    fn render(v: &Value, rot: usize, ws: bool, out: &mut String) {
        let sp = if ws { " \n\t " } else { "" };
        match v {
            Value::Object(m) => {
                let entries: Vec<(&String, &Value)> = m.iter().collect();
                let n = entries.len();
                out.push('{');
                for i in 0..n {
                    let (k, val) = entries[(i + rot) % n];
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(sp);
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push_str(sp);
                    out.push(':');
                    out.push_str(sp);
                    render(val, rot + 1, ws, out);
                }
                out.push_str(sp);
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(sp);
                    render(x, rot + 1, ws, out);
                }
                out.push_str(sp);
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    fn rendered(v: &Value, rot: usize, ws: bool) -> String {
        let mut s = String::new();
        render(v, rot, ws, &mut s);
        s
    }

    /// A request whose every raw part and unknown field holds `v` (its object keys rotated
    /// by `rot`), with its own fields rotated by `top`.
    fn request_json(v: &Value, rot: usize, top: usize, ws: bool) -> String {
        let val = rendered(v, rot, ws);
        let mut fields = [
            r#""model":"m""#.to_owned(),
            format!(
                r#""messages":[{{"role":"user","content":"hi","x_data":{val}}},{{"x":{val},"role":"assistant","content":"yo"}}]"#
            ),
            format!(
                r#""tools":[{{"type":"function","function":{{"name":"f","parameters":{val}}}}}]"#
            ),
            format!(r#""tool_choice":{{"type":"function","function":{{"name":"f"}},"x":{val}}}"#),
            format!(
                r#""response_format":{{"type":"json_schema","json_schema":{{"name":"s","schema":{val}}}}}"#
            ),
            format!(r#""x_unknown":{val}"#),
            format!(r#""x_other":[{val},1]"#),
            r#""temperature":0.5"#.to_owned(),
        ];
        let n = fields.len();
        fields.rotate_left(top % n);
        let sep = if ws { ",\n  " } else { "," };
        format!("{{{}}}", fields.join(sep))
    }

    const FIELDS: usize = 22;

    /// The base request with listed field `idx` set from `n`, `f`, `s` (out of range: none).
    fn with_field(idx: usize, n: u32, f: f64, s: &str) -> String {
        let b = n % 2 == 0;
        let (model, messages) = match idx {
            0 => ("m".to_owned(), format!("{s}!")),
            21 => (format!("{s}x"), "hi".to_owned()),
            _ => ("m".to_owned(), "hi".to_owned()),
        };
        let extra = match idx {
            1 => format!(r#","tools":[{{"type":"function","function":{{"name":"{s}"}}}}]"#),
            2 => format!(r#","tool_choice":{{"type":"function","function":{{"name":"{s}"}}}}"#),
            3 => format!(
                r#","response_format":{{"type":"json_schema","json_schema":{{"name":"{s}"}}}}"#
            ),
            4 => format!(r#","temperature":{f}"#),
            5 => format!(r#","top_p":{f}"#),
            6 => format!(r#","top_k":{n}"#),
            7 => format!(r#","seed":{n}"#),
            8 => format!(r#","stop":["{s}"]"#),
            9 => format!(r#","max_tokens":{n}"#),
            10 => format!(r#","max_completion_tokens":{n}"#),
            11 => format!(r#","n":{n}"#),
            12 => format!(r#","logprobs":{b}"#),
            13 => format!(r#","top_logprobs":{n}"#),
            14 => format!(r#","frequency_penalty":{f}"#),
            15 => format!(r#","presence_penalty":{f}"#),
            16 => format!(r#","reasoning":{{"effort":"{s}"}}"#),
            17 => format!(r#","reasoning_effort":"{s}""#),
            18 => format!(r#","parallel_tool_calls":{b}"#),
            19 => format!(r#","x_unknown":"{s}""#),
            20 => format!(r#","reasoning":{{"max_tokens":{n},"exclude":{b}}}"#),
            _ => String::new(),
        };
        format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"{messages}"}}]{extra}}}"#
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn key_ignores_whitespace_and_top_level_order(
            v in json_value(),
            rot in 0usize..8,
            top in 0usize..8,
        ) {
            let a = key(&request_json(&v, rot, 0, false));
            let b = key(&request_json(&v, rot, top, true));
            prop_assert_eq!(a, b);
        }

        #[test]
        fn key_changes_with_any_raw_value(v in json_value(), w in json_value()) {
            prop_assume!(v != w);
            // Different values must give different keys.
            let a = key(&request_json(&v, 0, 0, false));
            let b = key(&request_json(&w, 1, 1, true));
            prop_assert_ne!(a, b);
        }

        #[test]
        fn key_changes_with_every_listed_field(
            idx in 0usize..FIELDS,
            n in 1u32..50,
            f in 0.01f64..0.98,
            s in "[a-z]{1,6}",
        ) {
            let plain = key(&with_field(usize::MAX, 0, 0.0, ""));
            let a = key(&with_field(idx, n, f, &s));
            let b = key(&with_field(idx, n + 1, f + 0.01, &format!("{s}q")));
            prop_assert_ne!(plain, a);
            prop_assert_ne!(a, b);
        }
    }
}
