//! [`RawCompletion`]: an OpenAI-compatible completion kept as the provider's own bytes.
//!
//! An OpenAI-compatible upstream already answers in the canonical shape, so decoding its
//! answer into typed values and encoding them again only costs time. The pass-through reads
//! the body once, remembers where `model`, `usage` and `provider` sit, parses `usage` (the one
//! part the gateway computes with), and on the way out copies the bytes with those three values
//! spliced in. Everything else (choices, logprobs, fields switchboard does not know) reaches the
//! client byte for byte.
//!
//! One exception to "as the provider wrote it": a body naming `"reasoning_content"` anywhere
//! (DeepSeek's field for the reasoning text, also xAI's, vLLM's, SGLang's and Together's) is
//! not taken; the caller decodes it typed, which maps the field to the canonical `reasoning`
//! (see [`AssistantMessage`](super::AssistantMessage)). The check is one `memmem` search, run
//! before the scan; a body that only mentions the word in its text costs a typed decode, never
//! a wrong answer.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use super::json::{self, write as write_json, Invalid};
use super::{ChatCompletion, FinishReason, Usage};
use crate::Error;
use bytes::Bytes;

/// A non-streaming completion in the provider's own JSON, with `model`, `provider` and `usage`
/// replaced on output. Built by the OpenAI-compatible codec; see the module docs.
#[derive(Clone)]
pub struct RawCompletion {
    body: Bytes,
    model_span: Range<usize>,
    usage_span: Option<Range<usize>>,
    provider_span: Option<Range<usize>>,
    id_span: Range<usize>,
    created_span: Option<Range<usize>>,
    /// Index of the closing `}` of the top-level object.
    close: usize,
    usage: Option<Usage>,
    model: Arc<str>,
    provider: Arc<str>,
    /// A new `id` and `created` to write (a cache hit's), else the body's are kept.
    identity: Option<(String, Option<u64>)>,
}

impl RawCompletion {
    /// Reads an upstream `chat.completion` body. `None` when the body is not one this fast path
    /// handles (invalid JSON, no `choices` array, duplicate keys, an `error` object, …): the
    /// caller then decodes it typed, which produces the right error.
    pub fn parse(body: Bytes, model: Arc<str>, provider: Arc<str>) -> Option<Self> {
        if has_reasoning_content(&body) {
            return None;
        }
        let text = json::utf8(&body)?;
        let (mut id_span, mut created_span, mut choices) = (None, None, false);
        let (mut model_span, mut usage_span, mut provider_span) = (None, None, None);
        let close = json::members(text, |m| {
            let first = body[m.value.start];
            let slot = match m.key {
                _ if m.escaped_key => return Err(Invalid),
                b"model" if first == b'"' => &mut model_span,
                b"usage" => &mut usage_span,
                b"provider" => &mut provider_span,
                b"choices" if first == b'[' && !choices => {
                    choices = true;
                    return Ok(());
                }
                b"id" if first == b'"' => &mut id_span,
                b"created" => &mut created_span,
                b"model" | b"choices" | b"id" => return Err(Invalid),
                _ => return Ok(()),
            };
            match slot.replace(m.value) {
                Some(_) => Err(Invalid),
                None => Ok(()),
            }
        })
        .ok()?;
        if !choices {
            return None;
        }
        let id_span = id_span?;
        let usage = match &usage_span {
            Some(span) => json::read_usage(text.get(span.clone())?)?,
            None => None,
        };
        Some(Self {
            model_span: model_span?,
            usage_span,
            provider_span,
            id_span,
            created_span,
            close,
            usage,
            model,
            provider,
            body,
            identity: None,
        })
    }

    /// Token usage as the provider reported it (and, after a CostMeter, with cost).
    pub fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    /// Token usage, mutable: what is here is what the client receives.
    pub fn usage_mut(&mut self) -> &mut Option<Usage> {
        &mut self.usage
    }

    /// The public model id written to `model`.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Writes `id` and `created` instead of the body's (a stored answer served again).
    pub fn set_identity(&mut self, id: String, created: u64) {
        self.identity = Some((id, Some(created)));
    }

    /// Writes `id` instead of the body's, keeping its `created` (the request's generation id).
    pub fn set_id(&mut self, id: String) {
        let created = self.identity.take().and_then(|(_, c)| c);
        self.identity = Some((id, created));
    }

    /// The provider's body as it arrived.
    pub fn upstream_body(&self) -> &Bytes {
        &self.body
    }

    /// The JSON the client receives: the provider's bytes with `model`, `provider` and `usage`
    /// replaced (`usage` and `provider` appended when the provider sent none).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.body.len() + 256);
        // At most five edits, applied in the order they appear in the body.
        let mut edits = [(usize::MAX, Edit::Model); 5];
        edits[0] = (self.model_span.start, Edit::Model);
        if let Some(s) = &self.usage_span {
            edits[1] = (s.start, Edit::Usage);
        }
        if let Some(s) = &self.provider_span {
            edits[2] = (s.start, Edit::Provider);
        }
        if let Some((_, created)) = &self.identity {
            edits[3] = (self.id_span.start, Edit::Id);
            if let (Some(s), Some(_)) = (&self.created_span, created) {
                edits[4] = (s.start, Edit::Created);
            }
        }
        edits.sort_unstable_by_key(|e| e.0);
        let mut pos = 0;
        for (start, edit) in edits {
            if start == usize::MAX {
                break;
            }
            out.extend_from_slice(&self.body[pos..start]);
            let end = match edit {
                Edit::Model => {
                    write_json(&mut out, &*self.model);
                    self.model_span.end
                }
                Edit::Usage => {
                    write_usage(&mut out, self.usage.as_ref());
                    self.usage_span.as_ref().map_or(start, |s| s.end)
                }
                Edit::Provider => {
                    write_json(&mut out, &*self.provider);
                    self.provider_span.as_ref().map_or(start, |s| s.end)
                }
                Edit::Id => {
                    if let Some((id, _)) = &self.identity {
                        write_json(&mut out, id.as_str());
                    }
                    self.id_span.end
                }
                Edit::Created => {
                    if let Some((_, Some(created))) = &self.identity {
                        out.extend_from_slice(itoa::Buffer::new().format(*created).as_bytes());
                    }
                    self.created_span.as_ref().map_or(start, |s| s.end)
                }
            };
            pos = end;
        }
        out.extend_from_slice(&self.body[pos..self.close]);
        if self.usage_span.is_none() && self.usage.is_some() {
            out.extend_from_slice(b",\"usage\":");
            write_usage(&mut out, self.usage.as_ref());
        }
        if self.provider_span.is_none() {
            out.extend_from_slice(b",\"provider\":");
            write_json(&mut out, &*self.provider);
        }
        if let (None, Some((_, Some(created)))) = (&self.created_span, &self.identity) {
            out.extend_from_slice(b",\"created\":");
            out.extend_from_slice(itoa::Buffer::new().format(*created).as_bytes());
        }
        out.extend_from_slice(&self.body[self.close..]);
        Bytes::from(out)
    }

    /// The completion as typed values (a full parse: for consumers that need to look inside,
    /// such as a cache or a protocol bridge).
    pub fn to_completion(&self) -> Result<ChatCompletion, Error> {
        let mut c: ChatCompletion = serde_json::from_slice(&self.body).map_err(|e| {
            Error::upstream("the provider sent an invalid response body")
                .with_source(Box::new(e) as crate::BoxError)
        })?;
        finish_completion(&mut c, &self.model, &self.provider);
        c.usage.clone_from(&self.usage);
        if let Some((id, created)) = &self.identity {
            c.id.clone_from(id);
            if let Some(created) = created {
                c.created = *created;
            }
        }
        Ok(c)
    }
}

/// Whether `body` may carry a `reasoning_content` member, which clients must see as
/// `reasoning` (the typed decode renames it). A mention in text also counts: that only costs
/// the typed path.
fn has_reasoning_content(body: &[u8]) -> bool {
    crate::macros::find_bytes!(body, b"\"reasoning_content\"").is_some()
}

/// Writes the client's `model` and `provider` into a decoded OpenAI-compatible completion and
/// fills `native_finish_reason` where the provider did not.
pub(crate) fn finish_completion(c: &mut ChatCompletion, model: &str, provider: &str) {
    c.model.clear();
    c.model.push_str(model);
    c.provider = Some(provider.to_owned());
    for ch in &mut c.choices {
        if ch.native_finish_reason.is_none() {
            ch.native_finish_reason = ch.finish_reason.map(|f| FinishReason::as_str(f).to_owned());
        }
    }
}

fn write_usage(out: &mut Vec<u8>, u: Option<&Usage>) {
    match u {
        Some(u) => json::write_usage(out, u),
        None => out.extend_from_slice(b"null"),
    }
}

#[derive(Clone, Copy)]
enum Edit {
    Model,
    Usage,
    Provider,
    Id,
    Created,
}

impl fmt::Debug for RawCompletion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawCompletion")
            .field("model", &self.model)
            .field("provider", &self.provider)
            .field("usage", &self.usage)
            .field("bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(body: &str) -> Option<RawCompletion> {
        RawCompletion::parse(
            Bytes::copy_from_slice(body.as_bytes()),
            "openai/gpt-4o".into(),
            "openai".into(),
        )
    }

    const BODY: &str = r#"{
      "id": "chatcmpl-1", "object": "chat.completion", "created": 1741569952,
      "model": "gpt-4o-2024-08-06",
      "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi \"there\"", "refusal": null, "annotations": []},
                   "logprobs": null, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0}},
      "service_tier": "default", "x_unknown": {"kept": [1, 2]}
    }
"#;

    #[test]
    fn splices_a_new_identity() {
        let mut raw = parse(BODY).unwrap();
        let plain: Value = serde_json::from_slice(&raw.to_bytes()).unwrap();
        assert_eq!(plain["id"], "chatcmpl-1");
        raw.set_identity("chatcmpl-\"new".into(), 7);
        let out: Value = serde_json::from_slice(&raw.to_bytes()).unwrap();
        let mut want = plain;
        want["id"] = json!("chatcmpl-\"new");
        want["created"] = json!(7);
        assert_eq!(out, want);
        // No `created` in the body: appended.
        let mut raw = parse(r#"{"id":"a","model":"m","choices":[]}"#).unwrap();
        raw.set_identity("b".into(), 9);
        let out: Value = serde_json::from_slice(&raw.to_bytes()).unwrap();
        assert_eq!(out["id"], "b");
        assert_eq!(out["created"], 9);
    }

    #[test]
    fn splices_model_provider_and_usage_and_keeps_the_rest() {
        let mut raw = parse(BODY).unwrap();
        assert_eq!(raw.usage().unwrap().prompt_tokens, 19);
        raw.usage_mut().as_mut().unwrap().cost = Some(0.25);
        let out: Value = serde_json::from_slice(&raw.to_bytes()).unwrap();
        let mut want: Value = serde_json::from_str(BODY).unwrap();
        want["model"] = json!("openai/gpt-4o");
        want["provider"] = json!("openai");
        want["usage"]["cost"] = json!(0.25);
        want["usage"]["prompt_tokens_details"] = json!({"cached_tokens": 3, "audio_tokens": 0});
        assert_eq!(out, want);
    }

    #[test]
    fn replaces_an_upstream_provider_and_appends_missing_usage() {
        let body = r#"{"provider":"Azure","choices":[],"model":"m","id":"x"}"#;
        let mut raw = parse(body).unwrap();
        assert!(raw.usage().is_none());
        let out: Value = serde_json::from_slice(&raw.to_bytes()).unwrap();
        assert_eq!(
            out,
            json!({"provider":"openai","choices":[],"model":"openai/gpt-4o","id":"x"})
        );
        *raw.usage_mut() = Some(Usage {
            prompt_tokens: 1,
            ..Usage::default()
        });
        let out: Value = serde_json::from_slice(&raw.to_bytes()).unwrap();
        assert_eq!(out["usage"]["prompt_tokens"], 1);
    }

    #[test]
    fn typed_view_matches_the_bytes() {
        let raw = parse(BODY).unwrap();
        let c = raw.to_completion().unwrap();
        assert_eq!(c.model, "openai/gpt-4o");
        assert_eq!(c.provider.as_deref(), Some("openai"));
        assert_eq!(c.choices[0].native_finish_reason.as_deref(), Some("stop"));
        assert_eq!(c.usage.as_ref().unwrap().cached_tokens(), 3);
    }

    #[test]
    fn refuses_what_it_cannot_pass_through() {
        for body in [
            r#"{"error":{"message":"boom"}}"#,
            r#"{"id":"x","model":"m","choices":{}}"#,
            r#"{"id":"x","model":"m"}"#,
            r#"{"id":"x","model":7,"choices":[]}"#,
            r#"{"id":"x","model":"m","model":"n","choices":[]}"#,
            r#"{"id":"x","model":"m","choices":[],"usage":"lots"}"#,
            r#"{"id":"x","model":"m","choices":[]} trailing"#,
            r#"{"id":"x","model":"m","choices":["#,
            "[]",
            "",
        ] {
            assert!(parse(body).is_none(), "{body}");
        }
        // Invalid UTF-8 inside a string, in a body long enough for the SIMD check and in a
        // short one.
        for pad in [0, 200] {
            let mut body = format!(
                r#"{{"id":"x","model":"m","choices":[],"p":"{}"#,
                "a".repeat(pad)
            )
            .into_bytes();
            body.extend_from_slice(b"\xff\xfe\"}");
            let raw = RawCompletion::parse(Bytes::from(body), "m".into(), "p".into());
            assert!(raw.is_none(), "pad {pad}");
        }
    }

    #[test]
    fn escaped_values_and_null_usage() {
        let body = r#"{"id":"x","model":"a\"b","choices":[],"usage":null}"#;
        let raw = parse(body).unwrap();
        let out: Value = serde_json::from_slice(&raw.to_bytes()).unwrap();
        assert_eq!(out["model"], "openai/gpt-4o");
        assert_eq!(out["usage"], Value::Null);
    }
}
