//! What the three demo providers share: token counting, the deterministic answer, tool
//! arguments built from JSON schemas, and the thinking signatures.

use serde_json::{Map, Value};

/// Counts tokens the demo way: whitespace-separated words.
pub(super) fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// The first `n` words of `s`, with the whitespace between them (none after the last).
pub(super) fn first_words(s: &str, n: u64) -> &str {
    if n == 0 {
        return "";
    }
    let mut seen = 0;
    let mut in_word = false;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if in_word {
                seen += 1;
                in_word = false;
                if seen == n {
                    return &s[..i];
                }
            }
        } else {
            in_word = true;
        }
    }
    s
}

/// Splits `s` into pieces of `per` words each; a piece starts at its first word, so the
/// whitespace before a word ends the previous piece. The pieces concatenate to `s`.
pub(super) fn chunks(s: &str, per: usize) -> Vec<&str> {
    let per = per.max(1);
    let mut starts = Vec::new();
    let mut prev_ws = true;
    let mut count = 0usize;
    for (i, c) in s.char_indices() {
        let ws = c.is_whitespace();
        if !ws && prev_ws {
            if count > 0 && count % per == 0 {
                starts.push(i);
            }
            count += 1;
        }
        prev_ws = ws;
    }
    let mut out = Vec::with_capacity(starts.len() + 1);
    let mut from = 0;
    for at in starts {
        out.push(&s[from..at]);
        from = at;
    }
    if from < s.len() {
        out.push(&s[from..]);
    }
    out
}

/// Splits a JSON text into fragments of about `size` bytes (on char boundaries), the way
/// providers stream tool-call arguments.
pub(super) fn fragments(s: &str, size: usize) -> Vec<&str> {
    let size = size.max(1);
    let mut out = Vec::new();
    let mut from = 0;
    while from < s.len() {
        let mut to = (from + size).min(s.len());
        while !s.is_char_boundary(to) {
            to += 1;
        }
        out.push(&s[from..to]);
        from = to;
    }
    out
}

/// `s` trimmed and cut to `max` characters (with `…` when cut).
pub(super) fn shorten(s: &str, max: usize) -> String {
    let t = s.trim();
    match t.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_owned(),
    }
}

/// A tool the client offered.
#[derive(Debug, Clone)]
pub(super) struct ToolDef {
    pub(super) name: String,
    pub(super) schema: Option<Value>,
}

/// Which tools the model may or must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Choice {
    Auto,
    None,
    Required,
    Named(String),
}

/// The parts of a request that decide the answer, in provider-neutral terms.
#[derive(Debug, Clone)]
pub(super) struct Convo {
    /// Text of the last user message (tool results excluded).
    pub(super) said: String,
    /// Images in the last user message.
    pub(super) images: usize,
    /// The last message is a tool result with this content.
    pub(super) tool_result: Option<String>,
    pub(super) tools: Vec<ToolDef>,
    pub(super) choice: Choice,
    pub(super) parallel: bool,
    pub(super) max_tokens: Option<u64>,
    pub(super) stop: Vec<String>,
    pub(super) thinking: bool,
}

impl Default for Convo {
    fn default() -> Self {
        Self {
            said: String::new(),
            images: 0,
            tool_result: None,
            tools: Vec::new(),
            choice: Choice::Auto,
            parallel: true,
            max_tokens: None,
            stop: Vec::new(),
            thinking: false,
        }
    }
}

/// A tool call the demo model makes.
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub(super) name: String,
    pub(super) args: Value,
}

impl Call {
    /// The arguments as compact JSON text.
    pub(super) fn args_json(&self) -> String {
        self.args.to_string()
    }
}

/// Why the answer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Finish {
    Stop,
    Length,
    ToolCalls,
    StopSequence(String),
}

/// The demo model's answer.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    pub(super) thinking: Option<String>,
    pub(super) text: String,
    pub(super) calls: Vec<Call>,
    pub(super) finish: Finish,
    /// Output tokens: text, tool calls and thinking.
    pub(super) output_tokens: u64,
    /// The thinking part of `output_tokens`.
    pub(super) thinking_tokens: u64,
}

/// Characters of the user's text quoted back.
const QUOTE_CHARS: usize = 80;

/// Builds the deterministic answer (see the module docs for the rules).
pub(super) fn answer(provider: &str, c: &Convo, override_text: Option<&str>) -> Answer {
    if let Some(t) = override_text {
        return Answer {
            thinking: None,
            text: t.to_owned(),
            calls: Vec::new(),
            finish: Finish::Stop,
            output_tokens: words(t),
            thinking_tokens: 0,
        };
    }
    let said = shorten(&c.said, QUOTE_CHARS);
    let thinking = c.thinking.then(|| {
        format!("The user said: {said}. A friendly greeting that repeats it is the right answer.")
    });
    let thinking_tokens = thinking.as_deref().map_or(0, words);
    let mut calls = Vec::new();
    if c.tool_result.is_none() && !c.tools.is_empty() && c.choice != Choice::None {
        let picked: Vec<&ToolDef> = match &c.choice {
            Choice::Named(n) => c.tools.iter().filter(|t| &t.name == n).take(1).collect(),
            _ if c.parallel && c.tools.len() >= 2 => c.tools.iter().take(2).collect(),
            _ => c.tools.iter().take(1).collect(),
        };
        calls = picked
            .into_iter()
            .map(|t| Call {
                name: t.name.clone(),
                args: args_for(t.schema.as_ref()),
            })
            .collect();
    }
    if !calls.is_empty() {
        let call_tokens: u64 = calls
            .iter()
            .map(|k| words(&k.name) + words(&k.args_json()))
            .sum();
        return Answer {
            thinking,
            text: String::new(),
            calls,
            finish: Finish::ToolCalls,
            output_tokens: call_tokens + thinking_tokens,
            thinking_tokens,
        };
    }
    let mut text = match &c.tool_result {
        Some(r) => format!("Tool result received: {r}"),
        None => {
            let mut t = format!("Hello from the demo {provider} provider! You said: {said}");
            match c.images {
                0 => {}
                1 => t.push_str(" I saw 1 image."),
                n => t.push_str(&format!(" I saw {n} images.")),
            }
            t
        }
    };
    let mut finish = Finish::Stop;
    let earliest = c
        .stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at);
    if let Some((at, s)) = earliest {
        text.truncate(at);
        finish = Finish::StopSequence(s.clone());
    }
    if let Some(max) = c.max_tokens {
        if words(&text) > max {
            let keep = first_words(&text, max).len();
            text.truncate(keep);
            finish = Finish::Length;
        }
    }
    Answer {
        output_tokens: words(&text) + thinking_tokens,
        thinking,
        text,
        calls,
        finish,
        thinking_tokens,
    }
}

/// Arguments for a tool from its JSON schema: every required property, a string as `"demo"`
/// (or the first `enum` value), a number or integer as `1`, a boolean as `true`, anything
/// else as `null`.
pub(super) fn args_for(schema: Option<&Value>) -> Value {
    let mut out = Map::new();
    if let Some(s) = schema {
        let props = s.get("properties").and_then(Value::as_object);
        let required = s.get("required").and_then(Value::as_array);
        for name in required.into_iter().flatten().filter_map(Value::as_str) {
            out.insert(name.to_owned(), value_for(props.and_then(|p| p.get(name))));
        }
    }
    Value::Object(out)
}

fn value_for(prop: Option<&Value>) -> Value {
    let Some(p) = prop else {
        return Value::Null;
    };
    if let Some(first) = p
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return first.clone();
    }
    let ty = match p.get("type") {
        Some(Value::String(s)) => Some(s.to_ascii_lowercase()),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .find(|t| !t.eq_ignore_ascii_case("null"))
            .map(str::to_ascii_lowercase),
        _ => None,
    };
    match ty.as_deref() {
        Some("string") => Value::from("demo"),
        Some("number" | "integer") => Value::from(1),
        Some("boolean") => Value::Bool(true),
        _ => Value::Null,
    }
}

/// The demo's signing secret. Signatures are deterministic and verifiable by any demo server
/// in any process, and worthless outside the demo (FNV-1a is not a MAC).
const SECRET: &[u8] = b"switchboard demo provider signing secret v1";

fn fnv1a(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = seed;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // separator so ("ab","c") and ("a","bc") differ
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A 64-bit hash (cache keys).
pub(super) fn hash64(data: &[u8]) -> u64 {
    fnv1a(0xcbf2_9ce4_8422_2325, &[data])
}

/// Signs `data` for `domain` (`"anthropic-thinking"`, `"gemini-function-call"`).
pub(super) fn sign(domain: &str, data: &str) -> String {
    let parts: [&[u8]; 3] = [SECRET, domain.as_bytes(), data.as_bytes()];
    let a = fnv1a(0xcbf2_9ce4_8422_2325, &parts);
    let b = fnv1a(0x84222325_cbf29ce4 ^ a.rotate_left(17), &parts);
    let mut raw = Vec::with_capacity(22);
    raw.extend_from_slice(b"sbdemo");
    raw.extend_from_slice(&a.to_be_bytes());
    raw.extend_from_slice(&b.to_be_bytes());
    base64(&raw)
}

/// Whether `sig` is the demo's signature of `data` for `domain`.
pub(super) fn verify(domain: &str, data: &str, sig: &str) -> bool {
    sign(domain, data) == sig
}

/// Standard base64 with padding.
pub(super) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// How a JSON value's type is named in error messages (`"a string"`, `"an object"`).
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn word_helpers_keep_the_text() {
        let s = "  Hello  from the\ndemo provider! ";
        assert_eq!(words(s), 5);
        assert_eq!(first_words(s, 2), "  Hello  from");
        assert_eq!(first_words(s, 0), "");
        assert_eq!(first_words(s, 9), s);
        let c = chunks(s, 2);
        assert_eq!(c.concat(), s);
        assert_eq!(c, vec!["  Hello  from ", "the\ndemo ", "provider! "]);
        assert!(chunks("", 3).is_empty());
        assert_eq!(fragments("{\"a\":\"é\"}", 5).concat(), "{\"a\":\"é\"}");
    }

    #[test]
    fn answer_rules() {
        let mut c = Convo {
            said: "what is up".into(),
            ..Convo::default()
        };
        let a = answer("openai", &c, None);
        assert_eq!(
            a.text,
            "Hello from the demo openai provider! You said: what is up"
        );
        assert_eq!(a.finish, Finish::Stop);
        assert_eq!(a.output_tokens, 11);

        c.images = 2;
        c.max_tokens = Some(3);
        let a = answer("openai", &c, None);
        assert_eq!(a.text, "Hello from the");
        assert_eq!(a.finish, Finish::Length);

        c.max_tokens = None;
        c.stop = vec!["demo".into(), "from".into()];
        let a = answer("openai", &c, None);
        assert_eq!(a.text, "Hello ");
        assert_eq!(a.finish, Finish::StopSequence("from".into()));

        c.stop.clear();
        c.tools = vec![
            ToolDef {
                name: "get_weather".into(),
                schema: Some(json!({"type": "object", "properties": {
                    "city": {"type": "string"}, "days": {"type": "integer"},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                    "exact": {"type": ["boolean", "null"]}, "extra": {"type": "object"}},
                    "required": ["city", "days", "unit", "exact", "extra"]})),
            },
            ToolDef {
                name: "get_time".into(),
                schema: None,
            },
        ];
        let a = answer("openai", &c, None);
        assert_eq!(a.finish, Finish::ToolCalls);
        assert_eq!(a.calls.len(), 2);
        assert_eq!(
            a.calls[0].args,
            json!({"city": "demo", "days": 1, "unit": "c", "exact": true, "extra": null})
        );
        c.parallel = false;
        assert_eq!(answer("openai", &c, None).calls.len(), 1);
        c.choice = Choice::Named("get_time".into());
        assert_eq!(answer("openai", &c, None).calls[0].name, "get_time");
        c.tool_result = Some("sunny".into());
        let a = answer("openai", &c, None);
        assert_eq!(a.text, "Tool result received: sunny");
        c.thinking = true;
        assert!(answer("openai", &c, None).thinking.is_some());
    }

    #[test]
    fn signatures_and_base64() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        let s = sign("anthropic-thinking", "hmm");
        assert!(verify("anthropic-thinking", "hmm", &s));
        assert!(!verify("anthropic-thinking", "hmm!", &s));
        assert!(!verify("gemini-function-call", "hmm", &s));
    }
}
