//! The Google Gemini codec: `POST {base}/v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, authenticated with the `x-goog-api-key` header.
//!
//! `base` is the bare origin (`https://generativelanguage.googleapis.com`). The upstream model
//! is [`EncodeContext::upstream_model`] with a leading `models/` removed; a `tunedModels/…`
//! name keeps that collection. The rest of the name (which may come from a client's
//! pass-through model id) is percent-encoded as one path segment: every byte outside RFC
//! 3986's unreserved `A-Z a-z 0-9 - . _ ~` is escaped, so `/`, `:`, `?`, `#`, `%`, spaces and
//! control characters cannot reach another path, method, query or fragment. A name that is
//! empty, `.` or `..` is refused (400, param `model`).
//!
//! # Messages
//!
//! - `system` and `developer` messages (wherever they appear, in order) become
//!   `systemInstruction: {parts: [{text}]}` (text only).
//! - `user` → role `user`, `assistant` → role `model`; consecutive turns of the same role are
//!   merged into one `Content` (Gemini wants the roles to alternate).
//! - Parts: text → `{text}`; `data:` URLs (images, `input_audio`, `file.file_data`) →
//!   `inlineData {mimeType, data}` (the base64 payload is passed on without decoding; a data
//!   URL that is not base64 is refused with 400); `http(s)://` and `gs://` image URLs →
//!   `fileData {mimeType, fileUri}` with the media type guessed from the extension (left out
//!   when unknown). Google documents that the API fetches public and signed HTTPS URLs itself
//!   ("External URLs" in *File input methods*, January 2026), so they are not refused.
//!   `file.file_id` (an OpenAI file id) is refused with 400.
//! - Assistant `tool_calls` → `functionCall {name, args}` parts (`arguments` must be a JSON
//!   object or empty, else 400). Call ids are not sent: Gemini pairs calls and responses by
//!   name and order.
//! - `role: tool` messages → `functionResponse {name, response}` parts in a `user` turn. The
//!   name is the function of the earlier call with that `tool_call_id` (an unknown id is a
//!   400); `response` is the tool content if it is a JSON object, else `{"content": <text>}`.
//!   Legacy `role: function` messages use their `name`.
//!
//! # Thought signatures
//!
//! Response parts may carry a `thoughtSignature`; each becomes a `reasoning_details` entry in
//! OpenRouter's format, `{"type": "reasoning.encrypted", "data": <signature>, "id": <tool call
//! id or null>, "format": "google-gemini-v1", "index": n}`, and thought text (`thought: true`
//! parts) becomes `message.reasoning` / `delta.reasoning` plus a `reasoning.text` entry. When a
//! client sends `reasoning_details` back on an assistant message, each `google-gemini-v1` (or
//! format-less) encrypted entry is put back where Google requires it: on the `functionCall`
//! part of the call it names, else on the first `functionCall` part of that turn, else on the
//! turn's last part (Google: "pass it back exactly as received … in the part it was
//! received"; parallel calls carry one signature, on the first call). Entries of other
//! formats (another provider's signatures) are never sent to Gemini, which rejects them.
//!
//! Gemini 3 refuses (400) a conversation whose current turn (the model steps after the last
//! user message with ordinary content) has a function call without a signature, which happens
//! when the history came from another model or a client dropped `reasoning_details`. For that
//! case the first `functionCall` of each such step gets Google's documented placeholder
//! signature `skip_thought_signature_validator`; earlier turns are not validated and are left
//! alone.
//!
//! # Parameters
//!
//! | parameter | handling |
//! | --- | --- |
//! | `max_completion_tokens` / `max_tokens` | mapped: `generationConfig.maxOutputTokens` (the first wins) |
//! | `temperature`, `top_p`, `top_k` | mapped: `temperature`, `topP`, `topK` |
//! | `stop` | mapped: `stopSequences` |
//! | `n` | mapped: `candidateCount` when above 1; `n: 1` is dropped |
//! | `seed` | mapped: `seed` (Gemini's seed is 32-bit: larger values are folded into range) |
//! | `presence_penalty`, `frequency_penalty` | mapped for `gemini-2.0-*` models; dropped for others, which answer "Penalty is not enabled" (400) to any non-zero value; zero is always dropped |
//! | `response_format` | mapped: `json_schema` → `responseMimeType: "application/json"` + `responseSchema` (cleaned, below); `json_object` → `responseMimeType` only; `text` → nothing |
//! | `tools` | mapped: `tools: [{functionDeclarations: [{name, description, parameters}]}]`, schemas cleaned; a tool whose type is not `function` is refused (400 `unsupported_parameter`) |
//! | `tool_choice` | mapped: `toolConfig.functionCallingConfig.mode` `AUTO` / `NONE` / `ANY`, a named function → `ANY` + `allowedFunctionNames` |
//! | `reasoning`, `reasoning_effort` | mapped: `generationConfig.thinkingConfig {thinkingBudget, includeThoughts}` (below) |
//! | `logprobs`, `top_logprobs` | mapped: `responseLogprobs`, `logprobs`; `logprobsResult` is decoded into OpenAI's `logprobs.content` (models without log probabilities answer 400) |
//! | `stream` | mapped: the `:streamGenerateContent?alt=sse` method |
//! | `stream_options` | emulated: the usage chunk is always produced (Gemini sends usage on every frame) |
//! | `user`, `parallel_tool_calls`, `metadata`, routing fields, unknown fields | dropped |
//! | `logit_bias` (non-empty), `audio` | refused: 400 `unsupported_parameter` |
//!
//! `reasoning` (OpenRouter) takes precedence over `reasoning_effort`: `enabled: false` or effort
//! `none` → `thinkingBudget: 0`; `max_tokens` → that budget; effort `minimal` / `low` /
//! `medium` / `high` / `xhigh` → 512 / 2048 / 8192 / 24576 / 24576 tokens (inside every
//! 2.5-series range; Gemini 3 accepts budgets for compatibility, while its `thinkingLevel`
//! values differ per model); `enabled: true` alone → `-1` (dynamic). `includeThoughts` is
//! true unless `exclude` is set or thinking is off. Without either parameter no
//! `thinkingConfig` is sent (the model's defaults apply and thoughts are not returned).
//!
//! Schemas (tool parameters, `responseSchema`) are reduced to the OpenAPI subset Gemini's
//! `Schema` accepts: local `$ref`s are inlined from `$defs` / `definitions` (a recursive
//! reference becomes `{"type": "object"}`); `type: [T, "null"]` and `anyOf` / `oneOf` with a
//! `null` branch become `nullable`; `oneOf` becomes `anyOf`; `allOf` is merged; `const`
//! becomes a one-value `enum`; non-string enums, `format`s other than `enum` / `date-time` /
//! `float` / `double` / `int32` / `int64`, and every keyword outside `type`, `format`,
//! `description`, `nullable`, `enum`, `properties`, `required`, `items`, `anyOf`,
//! `propertyOrdering`, `minimum`, `maximum`, `minItems`, `maxItems`, `minLength`,
//! `maxLength`, `minProperties`, `maxProperties` and `pattern` are dropped (`title` becomes
//! the description when there is none). Empty `properties` are removed, and a function whose
//! parameters end up with no properties is declared without `parameters` (Gemini rejects
//! empty `OBJECT`s). `required` keeps the schema's own names that it has as properties, then
//! those of merged `allOf` / single `anyOf` branches, each once.
//!
//! Limits (a 400 naming `tools` or `response_format`, whichever schema crossed them):
//! - `$ref` inlining has a byte budget shared by all the schemas of a request (tool
//!   parameters and `response_format` together, so that many small schemas cannot add up):
//!   4 × their total size as JSON, at least 64 KiB and never more than 1 MiB. Every expansion
//!   of a `$ref` spends the referenced definition's full size as JSON. Cleaning makes no part
//!   of a schema more than 4 × larger (a `type` list becoming `anyOf` is the worst case), so
//!   the cleaned schemas stay below 4 × (their size + the budget), and the work with them is
//!   linear in the same. Schemas without `$ref`s spend nothing.
//! - Nesting: at most 64 schemas inside one another, each `$ref` followed counting as one
//!   (the cleaner recurses per level; this keeps it far from a thread's stack limit). A chain
//!   of more than 32 `$ref`s inside one another still ends in `{"type": "object"}`, like a
//!   recursive one.
//!
//! # Answers
//!
//! Candidates become choices (index from the candidate), text parts are joined, function calls
//! become `tool_calls` with Gemini's `id` when it sends one, else `call_<completion>_<n>`
//! (unique in the response and across turns). `finishReason` maps as `STOP` → `stop`
//! (`tool_calls` when the candidate called functions), `MAX_TOKENS` → `length`, `SAFETY`,
//! `RECITATION`, `LANGUAGE`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII` and the image variants →
//! `content_filter`, `MALFORMED_FUNCTION_CALL`, `OTHER` and the other failure values →
//! `error`; the native value is kept in `native_finish_reason`. A prompt blocked by
//! `promptFeedback.blockReason` (no candidates) is answered with one empty choice whose
//! finish reason is `content_filter` (native: the block reason), like an output filter,
//! rather than an error: the upstream did answer, and a stream could not report it otherwise.
//!
//! Usage: `prompt_tokens` = `promptTokenCount` + `toolUsePromptTokenCount`,
//! `completion_tokens` = `candidatesTokenCount` + `thoughtsTokenCount`, `reasoning_tokens` =
//! `thoughtsTokenCount`, `cached_tokens` = `cachedContentTokenCount`, `total_tokens` =
//! `totalTokenCount` (or the sum).
//!
//! Streams: every SSE frame is a whole `GenerateContentResponse`; text and thoughts arrive as
//! fragments, function calls whole (one delta each, with id, type, name and full arguments, at
//! a stable index). Gemini has no end marker: the stream is complete once every candidate has
//! sent a `finishReason`; then a usage-only chunk (`choices: []`) is pushed from the last
//! `usageMetadata`. A connection that closes before is an error, as is an `error` object in a
//! frame, and a stream with more than 128 candidates (a 502). The decoder does not know how
//! many candidates were asked for: a candidate that first appears after every earlier one
//! has finished is not waited for (the stream has already ended).
//!
//! # Errors
//!
//! `{"error": {"code", "message", "status", "details"}}` (also as a one-element array): the
//! `status` decides — `INVALID_ARGUMENT`, `FAILED_PRECONDITION`, `OUT_OF_RANGE` → 400 (context
//! overflows get `context_length_exceeded`), `PERMISSION_DENIED`, `UNAUTHENTICATED` and
//! `API_KEY_*` reasons (Gemini reports a bad key as a 400 `INVALID_ARGUMENT`) → 502 with the
//! upstream message hidden, `NOT_FOUND` → 404, `RESOURCE_EXHAUSTED` → 429 (delay from
//! `Retry-After` or `RetryInfo.retryDelay`, capped at an hour), `UNAVAILABLE` → 503,
//! `INTERNAL` → 502, `DEADLINE_EXCEEDED` → 504 (the gateway's own message, the provider's is
//! logged); otherwise the HTTP status decides via [`error_for_status`].

// Layout, lower files first (each file uses only files above it):
// - `error`: the 400s this codec raises and the mapping of Google's error bodies;
// - `thoughts`: the `reasoning_details` format (thought signatures, thought text);
// - `schema`: JSON Schema → Gemini `Schema`;
// - `contents`: messages → `contents` and `systemInstruction`;
// - `request`: the URL, headers and body (generation config, tools, thinking);
// - `response`: whole answers, and the per-candidate state streams share;
// - `stream`: the SSE decoder.
mod contents;
mod embeddings;
mod error;
mod request;
mod response;
mod schema;
mod stream;
mod thoughts;

use http::{HeaderMap, StatusCode};

use self::error::{google_error, parse_error_body};
use self::stream::GeminiStream;
use super::{error_for_status, DecodeContext, EncodeContext, ProviderCodec, StreamDecode};
use crate::client::UpstreamBody;
use crate::openai::{ChatCompletion, ChatRequest};
use crate::Error;

/// The Gemini codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gemini;

impl ProviderCodec for Gemini {
    fn encode(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<http::Request<UpstreamBody>, Error> {
        request::encode(req, ctx)
    }

    fn decode(&self, body: &[u8], ctx: &DecodeContext) -> Result<ChatCompletion, Error> {
        response::decode(body, ctx)
    }

    fn decode_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        match parse_error_body(body) {
            Some(err) => google_error(Some(status), headers, err),
            None => error_for_status(status, headers, None, None),
        }
    }

    fn stream_decoder(&self, ctx: &DecodeContext) -> Box<dyn StreamDecode> {
        Box::new(GeminiStream::new(
            ctx.clone(),
            crate::openai::new_completion_id(),
            crate::openai::unix_now(),
        ))
    }

    fn embeddings(&self) -> Option<&dyn super::EmbeddingsCodec> {
        Some(self)
    }
}

#[cfg(test)]
mod tests;
