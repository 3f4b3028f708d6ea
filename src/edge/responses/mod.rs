//! The OpenAI Responses edge: `POST /v1/responses` (stateless) for Responses-API clients (the
//! official `openai` SDKs' `client.responses.create`, Codex), served by any provider.
//!
//! [`Responses`] checks the gateway key from the headers (`Authorization: Bearer` or
//! `x-api-key`) before reading the body, reads it under the same limits as chat completions
//! (size → 413, read deadline → 408, input items (counted as messages) and tools → 400),
//! parses it once, converts it to the canonical [`ChatRequest`](crate::openai::ChatRequest)
//! and calls the same typed stack (routing, keys, budgets, CostMeter, cache, Fallback,
//! deadlines, metrics). The answer is rendered as a `response` object, or as the Responses
//! stream events (see [`StreamEncoder`]); errors come in OpenAI's shape
//! (`{"error":{"message","type","param","code"}}`) with the statuses of the crate's table.
//!
//! The gateway keeps no state: `store: true`, `previous_response_id` and `conversation` are a
//! 400 (`unsupported_parameter`); an absent `store` is taken as `false`. Clients send the whole
//! conversation in `input` each turn, reasoning items included.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use http_body_util::{BodyExt, Full};
//! use switchboard::edge::Responses;
//! use switchboard::{ChatHttpRequest, ChatHttpResponse, Error, ErrorKind};
//! use tower::{service_fn, ServiceExt};
//!
//! let stack = service_fn(|req: ChatHttpRequest| async move {
//!     assert_eq!(req.body().max_completion_tokens, Some(64)); // converted once by the edge
//!     Err::<ChatHttpResponse, _>(Error::new(ErrorKind::RateLimited, "busy"))
//! });
//! let req = http::Request::post("/v1/responses")
//!     .body(Full::new(
//!         r#"{"model":"m","max_output_tokens":64,"input":"hi"}"#.into(),
//!     ))
//!     .unwrap();
//! let resp = Responses::new(stack).oneshot(req).await.unwrap();
//! assert_eq!(resp.status(), 429);
//! let body = resp.into_body().collect().await.unwrap().to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(json["error"]["type"], "rate_limit_error");
//! # }
//! ```
//!
//! # Request mapping (Responses → canonical)
//!
//! | Responses field | canonical | how |
//! | --- | --- | --- |
//! | `model` | `model` | mapped (ids, aliases and routing as for chat completions) |
//! | `instructions` | a first `system` message | mapped |
//! | `input` (string) | one `user` message | mapped |
//! | `message` items, roles `user` / `system` / `developer` | `user` / `system` messages | mapped; `developer` becomes `system` (every provider has it) |
//! | `input_text` parts | text parts | mapped (a system message's parts are joined into one string) |
//! | `input_image` parts (`image_url`: URL or `data:` URL) | `image_url` parts with `detail` | mapped; `file_id` refused |
//! | `input_file` parts with `file_data` | `file` parts | mapped; `file_id` / `file_url` refused |
//! | `message` items, role `assistant` (`output_text`, `refusal` parts) | an `assistant` message | mapped; consecutive assistant items (reasoning, message, function calls) become one turn |
//! | `function_call` items | the turn's `tool_calls` | mapped: `call_id` → `id` |
//! | `function_call_output` items | `tool` messages | mapped: `call_id` → `tool_call_id`; `output` a string or `input_text` / `input_image` / `input_file` parts |
//! | `reasoning` items | the turn's `reasoning` + `reasoning_details` | mapped: summary (or content) text → `reasoning`; `encrypted_content` made by this gateway is restored as the provider's signed details (Anthropic signatures, Gemini thought signatures); another service's `encrypted_content` travels as an opaque `reasoning.encrypted` detail that other providers leave out |
//! | `item_reference` items, other item types (`web_search_call`, `computer_call`, `custom_tool_call`, …) | — | refused (400 `unsupported_parameter`) |
//! | `tools` of type `function` | function `tools` | mapped: `parameters`, `description`, `strict` |
//! | `tools` of other types (`web_search`, `file_search`, `computer_use_preview`, `code_interpreter`, `mcp`, `custom`, `local_shell`, …) | — | refused (400 `unsupported_parameter`) |
//! | `tool_choice` `auto` / `none` / `required` / `{type: function, name}` | same | mapped; dropped without tools; `allowed_tools` and built-in choices refused |
//! | `parallel_tool_calls` | same | mapped |
//! | `max_output_tokens` | `max_completion_tokens` | mapped (reasoning included, as in the Responses API) |
//! | `reasoning.effort` | `reasoning.effort` (`none` → `reasoning.enabled: false`) | mapped (each codec maps effort to its provider's thinking settings) |
//! | `reasoning.summary` | — | emulated: the provider's reasoning text, when it gives one, is the reasoning item's summary |
//! | `text.format` `json_schema` / `json_object` / `text` | `response_format` | mapped (`{name, schema, strict, description}` → `json_schema`) |
//! | `text.verbosity` | — | `medium` (the default) accepted; other values refused |
//! | `temperature` (0–2), `top_p` | same | mapped |
//! | `metadata` (≤ 16 pairs, keys ≤ 64 chars, string values ≤ 512) | `metadata` | mapped and echoed |
//! | `user` (else `safety_identifier`) | `user` | mapped |
//! | `stream` | `stream` + `stream_options.include_usage` | mapped (usage always arrives) |
//! | `store: false` / absent | — | the gateway stores nothing |
//! | `store: true`, `previous_response_id`, `conversation`, `background: true`, `prompt`, `max_tool_calls`, `top_logprobs > 0` | — | refused (400 `unsupported_parameter`) |
//! | `include: ["reasoning.encrypted_content"]` | — | honoured (always on); other `include` values refused |
//! | `truncation` | — | `disabled` honoured; `auto` accepted and behaves as `disabled` (an over-long input is the provider's error, nothing is cut silently) |
//! | `service_tier`, `prompt_cache_key`, `prompt_cache_retention`, `stream_options` | — | dropped (they do not change the answer) |
//! | `parsed_arguments` on `function_call` items, `parsed` on `output_text` parts (what the SDK's `parse` helpers add to output items sent back) | — | dropped (derived from `arguments` / `text`) |
//! | any other field; unknown keys in items, parts and tools | — | refused (400) |
//!
//! # Answer mapping (canonical → Responses)
//!
//! | canonical | Responses | how |
//! | --- | --- | --- |
//! | `reasoning` / `reasoning_details` | a `reasoning` item first | mapped: text → `summary[{type: summary_text}]`; the details → `encrypted_content` (`switchboard.v1:` + JSON, for the next turn) |
//! | `content`, `refusal` | a `message` item with `output_text` / `refusal` parts | mapped |
//! | `tool_calls` | `function_call` items | mapped: `id` → `call_id`, with a fresh item `id` (`fc_…`) |
//! | `finish_reason` | `status` | `length` → `incomplete` with `incomplete_details.reason: max_output_tokens`, `content_filter` → `incomplete` (`content_filter`), else `completed` |
//! | `usage` | `usage` | `input_tokens` (cached included), `input_tokens_details {cached_tokens, cache_write_tokens}`, `output_tokens`, `output_tokens_details.reasoning_tokens`, `total_tokens`, and `cost` (USD, from the CostMeter; absent when unpriced) |
//! | `model` | `model` | the public model id that served |
//! | — | `id` | `resp_…`, fresh (nothing is stored under it) |
//!
//! The response object repeats the request's `instructions`, `tools`, `tool_choice`,
//! `metadata`, `temperature`, `top_p`, `max_output_tokens`, `parallel_tool_calls`, `reasoning`,
//! `text`, `truncation` and `user`, with `store: false`.

mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};
use http_body::Body;
use tower::ServiceExt;
use tracing::Instrument;

pub use stream::StreamEncoder;

use super::refused::{note, watched};
use super::service::{self, Answer, Edge, EdgeSettings, Incoming, RequestBody, TypedStack};
use super::{decorate, error_response, read_request_body, EdgeBody, EdgeConfig};
use crate::chat::{ChatHttpResponse, ChatResponse};
use crate::ext::GenerationId;
use crate::{BoxError, Error};

/// Layer for [`Responses`], with the limits of a [`ChatCompletionsLayer`](super::ChatCompletionsLayer).
#[derive(Clone)]
pub struct ResponsesLayer {
    settings: EdgeSettings,
}

impl Default for ResponsesLayer {
    fn default() -> Self {
        Self::from(super::ChatCompletionsLayer::new())
    }
}

impl From<super::ChatCompletionsLayer> for ResponsesLayer {
    /// The same limits, keep-alive and key check as the chat-completions edge.
    fn from(l: super::ChatCompletionsLayer) -> Self {
        Self {
            settings: l.settings,
        }
    }
}

/// The OpenAI Responses edge service; see the [module docs](self).
#[derive(Clone)]
pub struct Responses<S> {
    inner: S,
    settings: EdgeSettings,
}

service::edge_layer!(ResponsesLayer => Responses, ResponsesEdge);

async fn read_and_parse<B>(
    headers: &HeaderMap,
    body: B,
    config: EdgeConfig,
) -> Result<request::Parsed, Error>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let bytes = read_request_body(headers, body, config).await?;
    request::parse(&bytes, &config)
}

/// The Responses edge's own part: the translation (its errors are the provided OpenAI ones).
#[derive(Clone, Copy)]
struct ResponsesEdge;

impl Edge for ResponsesEdge {
    async fn answer<S: TypedStack, B: RequestBody>(self, mut req: Incoming<'_, S, B>) -> Answer {
        let parsed = match read_and_parse(&req.parts.headers, req.body, req.config).await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(request_id = ?req.id.0, error = %e, "rejected request");
                note(req.watch.as_ref(), &e);
                return error_response(&e);
            }
        };
        let (chat, mut echo) = (parsed.chat, parsed.echo);
        let span = service::chat_span!(DEBUG, chat, req.parts, req.id, ingress = "responses");
        let typed = super::typed_request(req.parts, chat, req.id);
        if let Some(w) = &mut req.watch {
            w.typed(&typed);
        }
        if let Some(g) = typed.extensions().get::<GenerationId>() {
            echo.set_generation(&g.0);
        }
        if let (Some(every), true) = (req.config.keep_alive, typed.body().is_stream()) {
            // The response starts now; the stack's answer (or failure) follows in the body.
            let pending = watched(req.inner.oneshot(typed).instrument(span), req.watch);
            return super::sse_response(EdgeBody::responses_waiting(
                pending,
                every,
                StreamEncoder::new(echo),
            ));
        }
        match service::traced_call!(req.inner, typed, span) {
            Ok(resp) => render(resp, echo),
            Err(e) => {
                note(req.watch.as_ref(), &e);
                error_response(&e)
            }
        }
    }
}

fn render(resp: ChatHttpResponse, echo: response::Echo) -> http::Response<EdgeBody> {
    let (parts, answer) = resp.into_parts();
    let mut out = match answer {
        ChatResponse::Complete(c) => match c.into_typed() {
            Ok(c) => {
                let json = response::response_json(&c, &echo);
                let bytes = serde_json::to_vec(&json).unwrap_or_default();
                let mut r = http::Response::new(EdgeBody::full(Bytes::from(bytes)));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            Err(e) => return error_response(&e),
        },
        ChatResponse::Stream(s) => {
            super::sse_response(EdgeBody::responses_sse(s, StreamEncoder::new(echo)))
        }
    };
    decorate(&mut out, parts);
    out
}
