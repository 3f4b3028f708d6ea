//! The Anthropic Messages codec: `POST {base}/v1/messages`.
//!
//! The base URL is the bare origin (`https://api.anthropic.com`). Requests carry `x-api-key`
//! (marked sensitive), `anthropic-version: 2023-06-01` and `content-type: application/json`.
//!
//! # Request mapping
//!
//! | OpenAI / OpenRouter field | Anthropic | how |
//! | --- | --- | --- |
//! | `model` | `model` | mapped (the catalog's upstream name) |
//! | `system` / `developer` messages | top-level `system` | mapped: lifted out of `messages`; a string (messages joined by a blank line), or an array of text blocks when any part carries `cache_control` |
//! | `user` / `assistant` messages | `messages` | mapped; consecutive messages of the same role become one turn; empty text is skipped |
//! | `tool` messages | `tool_result` blocks (`tool_use_id`, `content`) | mapped: consecutive results share one user turn, placed before any user text of that turn |
//! | assistant `tool_calls` | `tool_use` blocks | mapped: `arguments` (a JSON string) becomes `input`; arguments that are not a JSON object are a 400 |
//! | assistant `reasoning_details` | `thinking` (with `signature`) / `redacted_thinking` blocks | mapped: restored first in the assistant turn; entries sharing an `index` are merged (streamed fragments); entries of other formats and unsigned text are skipped |
//! | `image_url` parts | `image` blocks | mapped: `data:` URLs → `base64` source, `http(s)` URLs → `url` source |
//! | `file` parts with a PDF `data:` URL | `document` blocks | mapped |
//! | `input_audio`, other `file` parts, legacy `function` messages | — | refused (400, `unsupported_parameter`) |
//! | `cache_control` on content parts and tools | `cache_control` | passed through (OpenRouter's convention) |
//! | `max_completion_tokens` / `max_tokens` | `max_tokens` | mapped; default the catalog's `max_output`, else 4096; raised when the thinking budget needs room |
//! | `stop` (string or list) | `stop_sequences` | mapped |
//! | `temperature` | `temperature` | mapped, clamped to Anthropic's `0..=1`; dropped while thinking |
//! | `top_p` | `top_p` | mapped; dropped while thinking unless `>= 0.95` |
//! | `top_k` | `top_k` | mapped; dropped while thinking |
//! | `stream` | `stream` | mapped (usage is always reported at the end of a stream) |
//! | `tools` (functions) | `tools[] {name, description, input_schema}` | mapped; `input_schema` defaults to an empty object schema; `strict` dropped; non-function tools refused |
//! | `tool_choice` | `tool_choice` | mapped: `auto` → `auto`, `required` → `any`, named → `tool`, `none` → `none`; dropped without tools; forced choices refused while thinking (Anthropic rejects them) |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` | mapped |
//! | `reasoning` / `reasoning_effort` | `thinking: {type: enabled, budget_tokens}` | mapped: `reasoning.max_tokens` is the budget (at least 1024); an effort is a share of `max_tokens` (`minimal` 10 %, `low` 20 %, `medium` 50 %, `high` 80 %, `xhigh` 95 %, OpenRouter's ratios) clamped to `1024..=128000`; `enabled: true` alone means `medium`; `enabled: false`, effort `none` or a zero budget turn thinking off; the budget always stays below `max_tokens` |
//! | `reasoning.exclude: true` | thinking stays on | emulated: the ProviderTranslate layer drops `reasoning` from the answer; `reasoning_details` stay, since the signature covers the thinking text and multi-turn tool use needs it back |
//! | `response_format: json_object` / `json_schema` | a forced tool | emulated, see below |
//! | `response_format: text` | — | dropped (the default) |
//! | `user` | `metadata.user_id` | mapped |
//! | `n: 1` | — | dropped; `n > 1` refused (400, `unsupported_parameter`, param `n`) |
//! | `logprobs: true`, `top_logprobs > 0` | — | refused (400, `unsupported_parameter`) |
//! | `seed`, `frequency_penalty`, `presence_penalty`, `metadata`, `stream_options`, message `name`, assistant `refusal`, unknown fields | — | dropped |
//! | `models`, `route`, `provider` | — | dropped (the gateway did the routing) |
//!
//! # Same format in, same format out
//!
//! A request that came in as Anthropic Messages (the [`Messages`](crate::edge::Messages) edge
//! keeps its bytes in a [`NativeRequest`](crate::ext::NativeRequest)) is sent as the client
//! wrote it, with only `model` replaced by the catalog's upstream name, the provider's
//! `x-api-key`, and the client's `anthropic-version` (default `2023-06-01`) and
//! `anthropic-beta` headers. Bodies whose `model` key is written with escapes, and bodies
//! carrying another provider's reasoning in a `redacted_thinking` envelope, are encoded from
//! the canonical request instead. The answer is decoded as any other (see Responses).
//!
//! # Structured output
//!
//! Anthropic has no `response_format`. A prompt instruction cannot promise JSON, so the codec
//! emulates it the way Anthropic documents for JSON output: it offers one tool named
//! `switchboard_json_response` whose `input_schema` is the requested schema (`{"type":
//! "object"}` for `json_object`) and forces it with `tool_choice`. Tool input is always a JSON
//! object, so the answer is valid JSON. The decoder recognises that tool by name (the codec is
//! stateless between encode and decode) and returns its input as the message `content` with
//! `finish_reason: "stop"` (`native_finish_reason` stays `tool_use`); in streams the input
//! fragments arrive as content deltas. Refused with a 400 (`unsupported_parameter`, param
//! `response_format`) when the emulation cannot work: together with client tools (the forced
//! tool would shadow them), together with thinking (Anthropic rejects forced tool use while
//! thinking), or when the schema's root is not an object.
//!
//! # Responses
//!
//! `text` blocks become `content`, `tool_use` blocks `tool_calls` (arguments = the serialized
//! input), `thinking` blocks `reasoning` plus OpenRouter-style `reasoning_details`
//! (`{"type": "reasoning.text", "text", "signature", "format": "anthropic-claude-v1", "index"}`),
//! `redacted_thinking` blocks `reasoning.encrypted` details carrying `data`. `stop_reason`
//! `end_turn` / `stop_sequence` → `stop`, `max_tokens` / `model_context_window_exceeded` →
//! `length`, `tool_use` → `tool_calls`, `refusal` → `content_filter`; the native value is kept
//! in `native_finish_reason`. Usage follows OpenAI semantics: `prompt_tokens` = input + cache
//! read + cache creation, `cached_tokens` = cache read, `cache_write_tokens` = cache creation.
//! Anthropic does not report thinking tokens separately, so `reasoning_tokens` stays 0.
//!
//! Streams become OpenAI chunks sharing the message id and one `created`: the role first, text
//! and reasoning deltas, tool calls with indices counted over `tool_use` blocks only (id, type
//! and name in the first fragment, argument pieces after), the finish reason on the chunk for
//! `message_stop`, then a usage-only chunk. An `error` event ends the stream with an [`Error`]
//! of the matching kind; a stream closed before `message_stop` is an error. Content blocks are
//! looked up by their `index` in a map and forgotten at their `content_block_stop`; a stream
//! that has more than 10,000 blocks open at once is a 502.

use http::{HeaderMap, StatusCode};

use super::{DecodeContext, EncodeContext, ProviderCodec, StreamDecode};
use crate::client::UpstreamBody;
use crate::openai::{ChatCompletion, ChatRequest};
use crate::Error;

mod error;
mod messages;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

/// The tool that carries emulated `response_format` output.
const JSON_TOOL: &str = "switchboard_json_response";

/// The Anthropic Messages codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anthropic;

impl ProviderCodec for Anthropic {
    fn encode(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        request::encode(req, ctx)
    }

    fn encode_native(
        &self,
        native: &crate::ext::NativeRequest,
        ctx: &EncodeContext<'_>,
    ) -> Option<Result<http::Request<UpstreamBody>, Error>> {
        request::encode_native(native, ctx)
    }

    fn decode(&self, body: &[u8], ctx: &DecodeContext) -> Result<ChatCompletion, Error> {
        response::decode(body, ctx)
    }

    fn decode_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        error::decode_error(status, headers, body)
    }

    fn stream_decoder(&self, ctx: &DecodeContext) -> Box<dyn StreamDecode> {
        Box::new(stream::AnthropicStream::new(ctx.clone()))
    }
}
