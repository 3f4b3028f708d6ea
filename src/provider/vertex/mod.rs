//! Google Vertex AI: Gemini models and Claude on one provider, authenticated with OAuth2
//! access tokens from a service account or the GCE metadata server ([`GoogleAuth`]).
//!
//! The codec wraps the [Gemini](super::gemini) and [Anthropic](super::anthropic) codecs:
//! requests are encoded by them, then sent to Vertex's URLs with Vertex's body tweaks, and
//! answers, streams and errors are decoded by the codec of the format that came back.
//!
//! | upstream model | publisher | URL (under the base URL) |
//! | --- | --- | --- |
//! | `claude…` | Anthropic | `/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model}:rawPredict` (`:streamRawPredict` for streams) |
//! | any other | Google | `/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent` (`:streamGenerateContent?alt=sse`) |
//! | embeddings (`text-embedding-005`, …) | Google | `…/publishers/google/models/{model}:predict` (see [`embeddings`]) |
//!
//! The base URL defaults to `https://{location}-aiplatform.googleapis.com`, or
//! `https://aiplatform.googleapis.com` for location `global`
//! ([`Vertex::default_base_url`]); a configured `base_url` replaces it (private endpoints,
//! tests). The model name is percent-encoded as one path segment, as are the project and
//! location, so no name reaches another path, method or query.
//!
//! Claude bodies are the Anthropic codec's Messages body without `model` (it is in the URL)
//! and with `"anthropic_version": "vertex-2023-10-16"` first; the `anthropic-version` header
//! is not sent. A request that came in as Anthropic Messages (the
//! [`Messages`](crate::edge::Messages) edge) is sent as the client wrote it, with the same two
//! changes, and its answer goes back as Vertex sent it. Gemini bodies are the Gemini codec's,
//! unchanged.
//!
//! Answers are told apart by their shape: an Anthropic message or stream event has a
//! top-level `type`, a `GenerateContentResponse` has none. Errors in Anthropic's shape
//! (`{"type": "error", …}`, from the model) are mapped as the Anthropic codec maps them,
//! everything else as Google's (`{"error": {"code", "message", "status"}}`, from Vertex
//! itself), so a `401 UNAUTHENTICATED` or `403 PERMISSION_DENIED` is the gateway's own
//! credentials failing: a 502 that moves on to the next provider.
//!
//! The access token is added by the provider's [`ProviderAuth`](super::ProviderAuth),
//! [`GoogleAuth`]: see [`auth`] for where credentials come from, how tokens are cached and
//! refreshed, and the bounds on what the token endpoint may answer.

pub mod auth;
mod body;
mod config;
pub mod embeddings;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::{HeaderMap, StatusCode};

pub use self::auth::{GoogleAuth, ServiceAccount};
use super::anthropic::Anthropic;
use super::gemini::Gemini;
use super::{DecodeContext, EncodeContext, ProviderCodec, StreamDecode};
use crate::client::UpstreamBody;
use crate::openai::sse::SseEvent;
use crate::openai::{ChatCompletion, ChatCompletionChunk, ChatRequest};
use crate::Error;

pub use self::body::messages_body;
pub(crate) use self::config::VertexSettings;

/// The `anthropic_version` Vertex wants in Claude bodies.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// Whether `upstream_model` is served by Anthropic's publisher on Vertex (names starting with
/// `claude`); every other name goes to Google's.
pub fn is_anthropic_model(upstream_model: &str) -> bool {
    upstream_model.starts_with("claude")
}

/// The Vertex AI codec of one provider: its project and location.
#[derive(Debug, Clone)]
pub struct Vertex {
    /// `None` for the codec [`ProviderKind::Vertex`](super::ProviderKind::Vertex) gets by
    /// default, which refuses to encode until configured.
    project: Option<Arc<str>>,
    location: Arc<str>,
}

impl Vertex {
    /// The codec for `project` in `location` (`us-central1`, `europe-west4`, `global`, …).
    /// Both must be non-empty ASCII letters, digits, `-`, `_`, `.` and `:`, at most 128 bytes.
    pub fn new(project: &str, location: &str) -> Result<Self, Error> {
        check_name("project", project)?;
        check_name("location", location)?;
        Ok(Self {
            project: Some(project.into()),
            location: location.into(),
        })
    }

    /// The codec of a Vertex provider built without [`Vertex::new`]: every request fails.
    pub(crate) fn unconfigured() -> Self {
        Self {
            project: None,
            location: "global".into(),
        }
    }

    /// The project.
    pub fn project(&self) -> Option<&str> {
        self.project.as_deref()
    }

    /// The location.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Google's base URL for `location`: `https://{location}-aiplatform.googleapis.com`, or
    /// `https://aiplatform.googleapis.com` for `global`.
    pub fn default_base_url(location: &str) -> String {
        if location == "global" {
            "https://aiplatform.googleapis.com".to_owned()
        } else {
            format!("https://{location}-aiplatform.googleapis.com")
        }
    }

    /// `{base}/v1/projects/{p}/locations/{l}/publishers/{publisher}/models/{model}:{method}`.
    fn url(
        &self,
        base: &str,
        publisher: &str,
        model: &str,
        method: &str,
    ) -> Result<http::Uri, Error> {
        let Some(project) = self.project.as_deref() else {
            return Err(Error::upstream(
                "the Vertex AI provider has no project configured",
            ));
        };
        if matches!(model, "" | "." | "..") {
            return Err(
                Error::invalid_request("the upstream model name is empty, `.` or `..`")
                    .with_param("model"),
            );
        }
        let mut s = String::with_capacity(base.len() + 96 + project.len() + model.len());
        s.push_str(base.trim_end_matches('/'));
        s.push_str("/v1/projects/");
        push_segment(&mut s, project);
        s.push_str("/locations/");
        push_segment(&mut s, &self.location);
        s.push_str("/publishers/");
        s.push_str(publisher);
        s.push_str("/models/");
        push_segment(&mut s, model);
        s.push(':');
        s.push_str(method);
        s.parse().map_err(|e| {
            Error::upstream("provider base URL is invalid")
                .with_source(Box::new(e) as crate::BoxError)
        })
    }

    /// Points a request the Anthropic codec built at `:rawPredict` / `:streamRawPredict`,
    /// with Vertex's body and without Anthropic's own headers.
    fn to_anthropic(
        &self,
        mut req: http::Request<UpstreamBody>,
        ctx: &EncodeContext<'_>,
        stream: bool,
    ) -> Option<Result<http::Request<UpstreamBody>, Error>> {
        let body = messages_body(&req.body().to_bytes())?;
        let method = if stream {
            "streamRawPredict"
        } else {
            "rawPredict"
        };
        let uri = match self.url(
            &ctx.provider.base_url,
            "anthropic",
            ctx.upstream_model,
            method,
        ) {
            Ok(u) => u,
            Err(e) => return Some(Err(e)),
        };
        *req.uri_mut() = uri;
        *req.body_mut() = UpstreamBody::from(body);
        let h = req.headers_mut();
        h.remove("anthropic-version");
        h.remove("x-api-key");
        Some(Ok(req))
    }
}

/// Refuses an empty, long or unusual project or location (they come from the config).
fn check_name(field: &str, value: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_request(format!(
            "Vertex AI {field} must be 1 to 128 ASCII letters, digits, `-`, `_`, `.` or `:`"
        ))
        .with_code("invalid_config"))
    }
}

/// Appends `s` percent-encoded as one path segment (everything but RFC 3986's unreserved
/// characters and `@` is escaped).
fn push_segment(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// Whether a JSON body (an answer, a stream event or an error) is in Anthropic's shape: a
/// top-level `type` member, which Google's answers and errors never have.
fn is_anthropic_body(body: &[u8]) -> bool {
    crate::openai::top_level_member(body, b"type").is_some()
}

impl ProviderCodec for Vertex {
    fn encode(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        let stream = req.is_stream();
        if is_anthropic_model(ctx.upstream_model) {
            let encoded = Anthropic.encode(req, ctx)?;
            return self.to_anthropic(encoded, ctx, stream).unwrap_or_else(|| {
                Err(Error::upstream(
                    "could not encode the request for Claude on Vertex AI",
                ))
            });
        }
        let mut encoded = Gemini.encode(req, ctx)?;
        let method = if stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        *encoded.uri_mut() =
            self.url(&ctx.provider.base_url, "google", ctx.upstream_model, method)?;
        encoded.headers_mut().remove("x-goog-api-key");
        Ok(encoded)
    }

    fn encode_native(
        &self,
        native: &crate::ext::NativeRequest,
        ctx: &EncodeContext<'_>,
    ) -> Option<Result<http::Request<UpstreamBody>, Error>> {
        if !is_anthropic_model(ctx.upstream_model) {
            return None;
        }
        let encoded = match Anthropic.encode_native(native, ctx)? {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let stream = native_stream(&native.body);
        // A body Vertex's tweaks cannot be applied to is encoded from the canonical request.
        self.to_anthropic(encoded, ctx, stream)
    }

    fn decode(&self, body: &[u8], ctx: &DecodeContext) -> Result<ChatCompletion, Error> {
        if is_anthropic_body(body) {
            Anthropic.decode(body, ctx)
        } else {
            Gemini.decode(body, ctx)
        }
    }

    fn decode_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        if is_anthropic_body(body) {
            Anthropic.decode_error(status, headers, body)
        } else {
            Gemini.decode_error(status, headers, body)
        }
    }

    fn embeddings(&self) -> Option<&dyn super::EmbeddingsCodec> {
        Some(self)
    }

    fn stream_decoder(&self, ctx: &DecodeContext) -> Box<dyn StreamDecode> {
        Box::new(VertexStream {
            ctx: ctx.clone(),
            inner: None,
        })
    }
}

/// Whether a client's Messages body asks for a stream (`"stream": true`).
fn native_stream(body: &[u8]) -> bool {
    crate::openai::top_level_member(body, b"stream")
        .and_then(|r| body.get(r))
        .is_some_and(|v| v == b"true")
}

/// A stream decoder that becomes the Anthropic or the Gemini one at the first event.
#[derive(Debug)]
struct VertexStream {
    ctx: DecodeContext,
    inner: Option<Box<dyn StreamDecode>>,
}

impl StreamDecode for VertexStream {
    fn event(&mut self, event: SseEvent, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        let ctx = &self.ctx;
        let inner = self.inner.get_or_insert_with(|| {
            if is_anthropic_body(event.data.as_bytes()) {
                Anthropic.stream_decoder(ctx)
            } else {
                Gemini.stream_decoder(ctx)
            }
        });
        inner.event(event, out)
    }

    fn is_done(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_done())
    }

    fn finish(&mut self, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        match &mut self.inner {
            Some(i) => i.finish(out),
            None => Err(Error::upstream(
                "the provider closed the stream before sending any event",
            )),
        }
    }
}
