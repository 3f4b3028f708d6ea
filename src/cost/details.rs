//! What a [`CostRecord`](super::CostRecord) says besides money: the request's generation id,
//! what the client asked for, its task and user, the ingress, and (for sinks that ask) the
//! prompt and the answer. Gathered only when the meter has a sink.

use std::sync::Arc;
use std::time::SystemTime;

use crate::chat::ChatHttpRequest;
use crate::ext::{Ingress, Route};
use crate::openai::ChatCompletionChunk;

/// The longest prompt or answer text kept for a sink that wants bodies, in bytes (longer ones
/// are cut at a character boundary).
pub(super) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The longest task or user id kept, in bytes.
const MAX_LABEL_BYTES: usize = 256;

/// Request facts for the record, taken once when the request arrives.
pub(super) struct Details {
    pub(super) created_at: SystemTime,
    pub(super) requested: Arc<str>,
    pub(super) task: Option<String>,
    pub(super) user: Option<String>,
    pub(super) ingress: Option<&'static str>,
    pub(super) prompt: Option<String>,
    /// The answer's text so far (bodies wanted), else `None`.
    pub(super) answer: Option<String>,
    pub(super) finish_reason: Option<String>,
    /// A shadow copy's primary ([`ShadowOf`](crate::ext::ShadowOf)).
    pub(super) shadow_of: Option<Arc<str>>,
}

impl Details {
    pub(super) fn new(req: &ChatHttpRequest, route: Option<&Route>, bodies: bool) -> Self {
        let chat = req.body();
        let task = req
            .headers()
            .get(crate::headers::TASK)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .or_else(|| {
                chat.metadata
                    .as_ref()
                    .and_then(|_| chat.metadata_str("task"))
            });
        Self {
            created_at: SystemTime::now(),
            requested: route.map_or_else(|| chat.model.as_str().into(), |r| r.requested.clone()),
            task: task.map(|t| cut(t, MAX_LABEL_BYTES)),
            user: chat
                .user
                .as_ref()
                .filter(|u| !u.is_empty())
                .map(|u| cut(u.clone(), MAX_LABEL_BYTES)),
            ingress: req.extensions().get::<Ingress>().map(|i| i.0),
            prompt: bodies.then(|| {
                cut(
                    String::from_utf8_lossy(chat.messages.as_bytes()).into_owned(),
                    MAX_BODY_BYTES,
                )
            }),
            answer: bodies.then(String::new),
            finish_reason: None,
            shadow_of: req
                .extensions()
                .get::<crate::ext::ShadowOf>()
                .map(|s| s.0.clone()),
        }
    }

    /// Looks at a chunk: the finish reason, and the text when bodies are kept.
    pub(super) fn observe(&mut self, chunk: &ChatCompletionChunk) {
        for c in &chunk.choices {
            if let Some(f) = c.finish_reason {
                self.finish_reason = Some(f.as_str().to_owned());
            }
            if let (Some(answer), Some(text)) = (self.answer.as_mut(), c.delta.content.as_ref()) {
                if answer.len() + text.len() <= MAX_BODY_BYTES {
                    answer.push_str(text);
                }
            }
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(super) fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}
