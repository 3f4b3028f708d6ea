//! The Anthropic Messages edge: `POST /v1/messages` for Claude-format clients (the official
//! `anthropic` SDKs, Claude Code), served by any provider.
//!
//! [`Messages`] checks the gateway key from the headers (`x-api-key` or
//! `Authorization: Bearer`) before reading the body, reads it under the same limits as chat
//! completions (size → 413, read deadline → 408, messages and tools → 400), parses it once,
//! converts it to the canonical [`ChatRequest`](crate::openai::ChatRequest) and calls the same
//! typed stack (routing, keys, budgets, CostMeter, cache, Fallback, deadlines, metrics). The
//! client's body and its `anthropic-version` / `anthropic-beta` headers travel along as a
//! [`NativeRequest`]: an Anthropic target sends those bytes with only `model` changed
//! (see [`provider::anthropic`](crate::provider::anthropic)), and its answer comes back as it
//! sent it, every block and field kept, with `model` the gateway's id again and the gateway's
//! `cost` added to `usage` (streams: the provider's own events, the model in `message_start`,
//! the cost in the usage of `message_delta`). Other targets answer
//! through the canonical completion, rendered in Anthropic's shapes; errors are
//! `{"type":"error","error":{"type","message"}}`.
//!
//! # Same format, nothing lost
//!
//! Parts of a request that only Anthropic can carry (marked *Anthropic only* below) do not
//! make it a 400: they are left out of the canonical request (which routing, budgets and
//! rate limits read) and the request goes on. An Anthropic target gets them, since it gets
//! the client's bytes; any other target answers a 400 `invalid_request_error` naming the
//! first such part (`… (only an Anthropic model can serve it)`), never an answer to less
//! than was asked. Such a request bypasses the response cache (its canonical form is not
//! all of it). For the others the cache key holds the client's bytes too, so a hit is only
//! ever for the same request; a hit is rendered from the canonical answer (blocks only
//! Anthropic returns, such as server tool results and citations, are not stored).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use http_body_util::{BodyExt, Full};
//! use switchboard::edge::Messages;
//! use switchboard::{ChatHttpRequest, ChatHttpResponse, Error, ErrorKind};
//! use tower::{service_fn, ServiceExt};
//!
//! let stack = service_fn(|req: ChatHttpRequest| async move {
//!     assert_eq!(req.body().max_tokens, Some(64)); // converted once by the edge
//!     Err::<ChatHttpResponse, _>(Error::new(ErrorKind::Overloaded, "busy"))
//! });
//! let req = http::Request::post("/v1/messages")
//!     .body(Full::new(
//!         r#"{"model":"m","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#.into(),
//!     ))
//!     .unwrap();
//! let resp = Messages::new(stack).oneshot(req).await.unwrap();
//! assert_eq!(resp.status(), 529);
//! let body = resp.into_body().collect().await.unwrap().to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(json["error"]["type"], "overloaded_error");
//! # }
//! ```
//!
//! # Request mapping (Anthropic → canonical)
//!
//! | Anthropic field | canonical | how |
//! | --- | --- | --- |
//! | `model` | `model` | mapped (ids, aliases and routing as for chat completions) |
//! | `max_tokens` (required) | `max_tokens` | mapped |
//! | `system` (string) | a `system` message | mapped |
//! | `system` (text blocks) | a `system` message of text parts | mapped, `cache_control` kept per block |
//! | `messages[].content` string | message `content` | mapped |
//! | `text` blocks | text parts | mapped with `cache_control`; `citations` on a text block dropped |
//! | `image` blocks (`base64`, `url`) | `image_url` parts (`data:` URL, URL) | mapped with `cache_control`; `file` sources Anthropic only |
//! | `document` blocks (base64 PDF) | `file` parts with a PDF `data:` URL | mapped; other documents (text, URL, content, file sources, `title`, `context`, `citations`) Anthropic only |
//! | `tool_use` blocks (assistant) | `tool_calls` | mapped: `input` → `arguments` |
//! | `tool_result` blocks (user) | `tool` messages, before the turn's other content | mapped: string or text/image blocks; `is_error: true` emulated as a `[tool error]` prefix |
//! | `thinking` blocks (assistant) | `reasoning` + `reasoning_details` (`reasoning.text`, `signature`, format `anthropic-claude-v1`) | mapped: signatures round-trip to Anthropic targets; other providers ignore them |
//! | `redacted_thinking` blocks | `reasoning_details` (`reasoning.encrypted`) | mapped; data made by this gateway for another provider's signed reasoning (Gemini thought signatures) is restored as that provider's detail |
//! | `stop_sequences` | `stop` | mapped |
//! | `temperature` (0–1), `top_p`, `top_k` | same | mapped |
//! | `stream` | `stream` + `stream_options.include_usage` | mapped (usage always arrives) |
//! | `tools` (client tools, `type` absent or `custom`) | function `tools` | mapped: `input_schema` → `parameters`, `cache_control` kept |
//! | `tools` of server types (`web_search_…`, `bash_…`, `text_editor_…`, …) | — | Anthropic only |
//! | `tool_choice` `auto` / `any` / `tool` / `none` | `auto` / `required` / named function / `none` | mapped; `disable_parallel_tool_use` → `parallel_tool_calls: false` |
//! | `thinking: {type: enabled, budget_tokens}` | `reasoning.max_tokens` | mapped (the target's codec decides how it thinks) |
//! | `thinking: {type: disabled}` | — | mapped (no reasoning) |
//! | `metadata.user_id` | `user` | mapped |
//! | `service_tier` | — | dropped (does not change the answer) |
//! | `container`, `mcp_servers`, `context_management`, any other field; other block types (`server_tool_use`, `search_result`, …); unknown keys in blocks | — | Anthropic only |
//!
//! # Answer mapping (canonical → Anthropic)
//!
//! | canonical | Anthropic | how |
//! | --- | --- | --- |
//! | `reasoning_details` / `reasoning` | `thinking` blocks (signed), `redacted_thinking` | mapped, first; reasoning without details becomes one thinking block with an empty signature |
//! | `content`, `refusal` | a `text` block | mapped |
//! | `tool_calls` | `tool_use` blocks | mapped: `arguments` parsed into `input` (a non-object is wrapped as `{"value": …}` or `{"arguments": "<text>"}`) |
//! | `finish_reason` | `stop_reason` | `stop` → `end_turn` (`stop_sequence` when the provider said so), `length` → `max_tokens`, `tool_calls` → `tool_use`, `content_filter` → `refusal` |
//! | — | `stop_sequence` | `null` (the canonical answer does not say which one matched; an Anthropic target's own answer says) |
//! | `usage` | `usage` | `input_tokens` = prompt − cache reads − cache writes, `cache_read_input_tokens`, `cache_creation_input_tokens`, `output_tokens`, and `cost` (USD, from the CostMeter; absent when unpriced) |
//! | `id` | `id` | `msg_…` (Anthropic's own id when it served) |
//! | `model` | `model` | the public model id that served |
//!
//! This table is for OpenAI-compatible and Gemini targets (and cache hits): an Anthropic
//! target's answer is passed through.
//!
//! Streams follow Anthropic's event sequence, see [`StreamEncoder`]. Translated from another
//! provider, `message_start` reports zero tokens (the usage is known at the end) and the final
//! `message_delta` the whole usage; an Anthropic target's stream reports as Anthropic does.

mod count;
mod format;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;
mod tokens;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::Body;
use tower::ServiceExt;
use tracing::Instrument;

pub use count::CountTokens;
pub(crate) use count::{route_capture, Resolver};
pub use stream::StreamEncoder;

use super::refused::{note, watched, RefusedLog};
use super::service::{self, Answer, Edge, EdgeSettings, Incoming, RequestBody, TypedStack};
use super::{decorate, read_request_body, EdgeBody, EdgeConfig, RequestId, REQUEST_ID};
use crate::chat::{ChatHttpResponse, ChatResponse};
use crate::ext::{GenerationId, NativeAnswer, NativeFormat, NativeRequest};
use crate::keys::{ClientKeysLayer, PresentedKey};
use crate::{BoxError, Error};

/// Layer for [`Messages`], with the limits of a [`ChatCompletionsLayer`](super::ChatCompletionsLayer).
#[derive(Clone)]
pub struct MessagesLayer {
    settings: EdgeSettings,
}

impl Default for MessagesLayer {
    fn default() -> Self {
        Self::from(super::ChatCompletionsLayer::new())
    }
}

impl From<super::ChatCompletionsLayer> for MessagesLayer {
    /// The same limits and key check as the chat-completions edge.
    fn from(l: super::ChatCompletionsLayer) -> Self {
        Self {
            settings: l.settings,
        }
    }
}

/// The Anthropic Messages edge service; see the [module docs](self).
#[derive(Clone)]
pub struct Messages<S> {
    inner: S,
    settings: EdgeSettings,
}

service::edge_layer!(MessagesLayer => Messages, MessagesEdge);

/// The client headers an Anthropic target receives.
const FORWARDED: [&str; 2] = ["anthropic-version", "anthropic-beta"];

/// Reads and converts the body under the edge's limits.
pub(super) async fn read_and_parse<B>(
    headers: &HeaderMap,
    body: B,
    config: EdgeConfig,
    count: bool,
) -> Result<(Bytes, request::Parsed), Error>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let bytes = read_request_body(headers, body, config).await?;
    let parsed = request::parse(&bytes, &config, count)?;
    Ok((bytes, parsed))
}

/// The Messages edge's own part: Anthropic's errors, the request id under Anthropic's name
/// too, and the translation.
#[derive(Clone, Copy)]
struct MessagesEdge;

impl Edge for MessagesEdge {
    fn error_response(e: &Error) -> Answer {
        error_response(e)
    }

    fn method_not_allowed() -> Answer {
        method_not_allowed()
    }

    fn authenticate<B>(
        keys: Option<&ClientKeysLayer>,
        refused: &RefusedLog,
        req: &http::Request<B>,
    ) -> Result<Option<PresentedKey>, Box<Answer>> {
        service::check_key(keys, refused, req, error_response).map_err(|mut resp| {
            if let Some(id) = resp.headers().get(REQUEST_ID).cloned() {
                resp.headers_mut().insert("request-id", id);
            }
            resp
        })
    }

    fn stamp_id(h: &mut HeaderMap, id: RequestId) {
        h.insert("request-id", id.0.clone());
        h.insert(REQUEST_ID, id.0);
    }

    async fn answer<S: TypedStack, B: RequestBody>(self, mut req: Incoming<'_, S, B>) -> Answer {
        let (bytes, parsed) =
            match read_and_parse(&req.parts.headers, req.body, req.config, false).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(request_id = ?req.id.0, error = %e, "rejected request");
                    note(req.watch.as_ref(), &e);
                    return error_response(&e);
                }
            };
        let chat = parsed.chat;
        if parsed.native_only.is_some() {
            // The canonical request (the cache key) lacks parts of this one.
            req.parts.headers.append(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
        }
        let span = service::chat_span!(INFO, chat, req.parts, req.id, ingress = "anthropic");
        let mut native = NativeRequest {
            format: NativeFormat::AnthropicMessages,
            body: bytes,
            headers: HeaderMap::new(),
            only_native: parsed.native_only,
        };
        for name in FORWARDED {
            for v in req.parts.headers.get_all(name) {
                native.headers.append(name, v.clone());
            }
        }
        let generation = req.parts.extensions.get::<GenerationId>().cloned();
        let mut typed = super::typed_request(req.parts, chat, req.id);
        typed.extensions_mut().insert(native);
        if let Some(w) = &mut req.watch {
            w.typed(&typed);
        }
        if let (Some(every), true) = (req.config.keep_alive, typed.body().is_stream()) {
            // The response starts now; the stack's answer (or failure) follows in the body.
            let pending = watched(req.inner.oneshot(typed).instrument(span), req.watch);
            return super::sse_response(EdgeBody::messages_waiting(pending, every));
        }
        match service::traced_call!(req.inner, typed, span) {
            Ok(resp) => render(resp, generation.as_ref().map(|g| &*g.0)),
            Err(e) => {
                note(req.watch.as_ref(), &e);
                error_response(&e)
            }
        }
    }
}

fn json_response(json: &serde_json::Value) -> http::Response<EdgeBody> {
    json_bytes(Bytes::from(serde_json::to_vec(json).unwrap_or_default()))
}

fn json_bytes(bytes: Bytes) -> http::Response<EdgeBody> {
    let mut r = http::Response::new(EdgeBody::full(bytes));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn render(resp: ChatHttpResponse, generation: Option<&str>) -> http::Response<EdgeBody> {
    let (parts, answer) = resp.into_parts();
    let native = parts
        .extensions
        .get::<NativeAnswer>()
        .filter(|n| n.format == NativeFormat::AnthropicMessages);
    let mut out = match answer {
        // An Anthropic target's answer goes back as it sent it, with the cost.
        ChatResponse::Complete(c) if native.is_some() => {
            let body = native.map(|n| &n.body[..]).unwrap_or_default();
            let cost = c.usage().and_then(|u| u.cost);
            let id = generation.unwrap_or_default();
            json_bytes(Bytes::from(response::native_message(
                body,
                id,
                c.model(),
                cost,
            )))
        }
        ChatResponse::Complete(c) => match c.into_typed() {
            Ok(c) => json_response(&response::message_json(&c)),
            Err(e) => return error_response(&e),
        },
        ChatResponse::Stream(s) => super::sse_response(EdgeBody::messages_sse(s)),
    };
    decorate(&mut out, parts);
    out
}

/// Renders an [`Error`] in Anthropic's shape, with Anthropic's status for its kind (an
/// overloaded gateway or provider is a 529 here) and `Retry-After` when known.
pub fn error_response(e: &Error) -> http::Response<EdgeBody> {
    let (status, _) = response::error_status(e.kind());
    let mut r = json_response(&response::error_json(e));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    super::error_headers(r.headers_mut(), e);
    r
}

fn method_not_allowed() -> http::Response<EdgeBody> {
    let mut r = json_response(&serde_json::json!({"type": "error", "error": {
        "type": "invalid_request_error", "message": "method not allowed; use POST"}}));
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
    r
}
