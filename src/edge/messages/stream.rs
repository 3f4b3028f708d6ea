//! Canonical chunks rendered as Anthropic's stream events.
//!
//! `message_start` and a `ping` come with the first chunk; then, per content block,
//! `content_block_start`, its deltas (`text_delta`, `thinking_delta`, `signature_delta`,
//! `input_json_delta`) and `content_block_stop`, blocks numbered from 0 and never
//! interleaved; at the end `message_delta` (with `stop_reason` and the usage) and
//! `message_stop`. A failure after the start is one `error` event, and the stream ends.

use serde_json::{json, Value};

use super::response::{envelope, message_id, stop_reason, usage_json};
use crate::openai::{ChatCompletionChunk, Usage};
use crate::Error;

/// The block being streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    /// A thinking block, with the `index` of the reasoning details it carries.
    Thinking(Option<u64>),
    /// A tool call, by its index among the message's calls.
    Tool(u32),
}

/// Turns canonical chunks into Anthropic SSE events, appended to a buffer.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    started: bool,
    done: bool,
    open: Option<Open>,
    next_block: u32,
    stop: Option<&'static str>,
    usage: Option<Usage>,
    /// An Anthropic target's own events are passed through (see
    /// [`ChatCompletionChunk::native`]).
    native: bool,
}

fn event(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // A `Value` always serializes.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

impl StreamEncoder {
    /// A fresh encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `message_stop` or an error has been written.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": message_id(id),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        );
        event(out, "ping", &json!({"type": "ping"}));
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            let index = self.next_block.saturating_sub(1);
            event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    /// Opens `kind` with `block` unless it is the block open now.
    fn ensure(&mut self, kind: Open, block: impl FnOnce() -> Value, out: &mut Vec<u8>) {
        if self.open == Some(kind) {
            return;
        }
        self.close(out);
        let index = self.next_block;
        self.next_block = self.next_block.saturating_add(1);
        self.open = Some(kind);
        event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block()}),
        );
    }

    fn delta(&self, out: &mut Vec<u8>, delta: Value) {
        let index = self.next_block.saturating_sub(1);
        event(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    fn thinking(&mut self, index: Option<u64>, out: &mut Vec<u8>) {
        // A detail without an index continues the open thinking block.
        let kind = match (self.open, index) {
            (Some(Open::Thinking(i)), None) => Open::Thinking(i),
            _ => Open::Thinking(index),
        };
        self.ensure(
            kind,
            || json!({"type": "thinking", "thinking": "", "signature": ""}),
            out,
        );
    }

    /// Renders one chunk. A stream whose first chunk carries an Anthropic target's own events
    /// ([`ChatCompletionChunk::native`]) is passed through as the provider sent it, with the
    /// cost added to the usage of its `message_delta`.
    pub fn chunk(&mut self, c: &ChatCompletionChunk, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started && c.native.is_some() {
            self.started = true;
            self.native = true;
        }
        if self.native {
            if let Some(events) = &c.native {
                let cost = c.usage.as_ref().and_then(|u| u.cost);
                write_native(events, &c.id, &c.model, cost, out);
            }
            return;
        }
        self.start(&c.id, &c.model, out);
        if let Some(u) = &c.usage {
            self.usage = Some((**u).clone());
        }
        let Some(choice) = c.choices.iter().find(|ch| ch.index == 0) else {
            return;
        };
        let d = &choice.delta;
        let details = d.reasoning_details.as_deref().unwrap_or_default();
        let detail_index = |d: &Value| d.get("index").and_then(Value::as_u64);
        let anthropic_text = |d: &Value| {
            d.get("type").and_then(Value::as_str) == Some("reasoning.text")
                && d.get("format")
                    .and_then(Value::as_str)
                    .is_none_or(|f| f == super::format::REASONING_FORMAT)
        };
        // Thinking text: `reasoning`, else the text of the details.
        let text: String = match d.reasoning.as_deref() {
            Some(r) => r.to_owned(),
            None => details
                .iter()
                .filter(|x| anthropic_text(x))
                .filter_map(|x| x.get("text").and_then(Value::as_str))
                .collect(),
        };
        if !text.is_empty() {
            let index = details
                .iter()
                .find(|x| anthropic_text(x))
                .and_then(detail_index);
            self.thinking(index, out);
            self.delta(out, json!({"type": "thinking_delta", "thinking": text}));
        }
        for x in details {
            if anthropic_text(x) {
                if let Some(sig) = x
                    .get("signature")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    self.thinking(detail_index(x), out);
                    self.delta(out, json!({"type": "signature_delta", "signature": sig}));
                }
                continue;
            }
            let anthropic = x
                .get("format")
                .and_then(Value::as_str)
                .is_none_or(|f| f == super::format::REASONING_FORMAT);
            let data = match x.get("type").and_then(Value::as_str) {
                Some("reasoning.encrypted") if anthropic => {
                    match x.get("data").and_then(Value::as_str) {
                        Some(data) => data.to_owned(),
                        None => continue,
                    }
                }
                _ if anthropic => continue,
                _ => envelope(x),
            };
            self.close(out);
            let index = self.next_block;
            self.next_block = self.next_block.saturating_add(1);
            event(
                out,
                "content_block_start",
                &json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "redacted_thinking", "data": data}}),
            );
            event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
        for text in [d.content.as_deref(), d.refusal.as_deref()]
            .into_iter()
            .flatten()
            .filter(|t| !t.is_empty())
        {
            self.ensure(Open::Text, || json!({"type": "text", "text": ""}), out);
            self.delta(out, json!({"type": "text_delta", "text": text}));
        }
        for tc in d.tool_calls.iter().flatten() {
            let f = tc.function.as_ref();
            if tc.id.is_some() || self.open != Some(Open::Tool(tc.index)) {
                // A new call (or fragments of one whose start never came: a fresh block).
                if self.open == Some(Open::Tool(tc.index)) {
                    self.close(out);
                }
                let id = tc.id.clone().unwrap_or_default();
                let name = f.and_then(|f| f.name.clone()).unwrap_or_default();
                self.ensure(
                    Open::Tool(tc.index),
                    || json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    out,
                );
            }
            if let Some(args) = f
                .and_then(|f| f.arguments.as_deref())
                .filter(|a| !a.is_empty())
            {
                self.delta(
                    out,
                    json!({"type": "input_json_delta", "partial_json": args}),
                );
            }
        }
        if choice.finish_reason.is_some() {
            self.stop = Some(stop_reason(
                choice.finish_reason,
                choice.native_finish_reason.as_deref(),
            ));
        }
    }

    /// The end of a stream: the open block's stop, `message_delta` and `message_stop`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.native {
            // The provider's own `message_delta` and `message_stop` went through.
            self.done = true;
            return;
        }
        self.start("", "", out);
        self.close(out);
        self.done = true;
        event(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": self.stop.unwrap_or("end_turn"), "stop_sequence": null},
                "usage": usage_json(self.usage.as_ref())}),
        );
        event(out, "message_stop", &json!({"type": "message_stop"}));
    }

    /// A failure after the start: one `error` event; the stream ends.
    pub fn fail(&mut self, e: &Error, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        event(out, "error", &super::response::error_json(e));
    }
}

/// Appends a provider's own events, with the gateway's `id` and `model` in `message_start`
/// and `cost` added to the usage of `message_delta`.
fn write_native(events: &[u8], id: &str, model: &str, cost: Option<f64>, out: &mut Vec<u8>) {
    const START: &[u8] = b"event: message_start\ndata: ";
    const DELTA: &[u8] = b"event: message_delta\ndata: ";
    let mut rest = events;
    while !rest.is_empty() {
        // Events are framed by the gateway: `event:` and `data:` lines, a blank line after.
        let end = crate::macros::find_bytes!(rest, b"\n\n").map_or(rest.len(), |i| i + 2);
        let (ev, tail) = rest.split_at(end);
        rest = tail;
        let one_line = |prefix: &'static [u8]| {
            ev.strip_prefix(prefix)
                .and_then(|d| d.strip_suffix(b"\n\n"))
                .filter(|d| !d.contains(&b'\n'))
                .map(|d| (prefix, d))
        };
        let spliced = match (one_line(START), one_line(DELTA)) {
            (Some((p, data)), _) => super::response::native_start(data, id, model).map(|d| (p, d)),
            (_, Some((p, data))) => cost
                .and_then(|c| {
                    crate::openai::add_to_member(data, b"usage", &super::response::cost_member(c))
                })
                .map(|d| (p, d)),
            _ => None,
        };
        match spliced {
            Some((prefix, data)) => {
                out.extend_from_slice(prefix);
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\n\n");
            }
            None => out.extend_from_slice(ev),
        }
    }
}

impl crate::edge::events::EventEncoder for StreamEncoder {
    fn chunk(&mut self, c: &ChatCompletionChunk, out: &mut Vec<u8>) {
        Self::chunk(self, c, out);
    }
    fn finish(&mut self, out: &mut Vec<u8>) {
        Self::finish(self, out);
    }
    fn fail(&mut self, e: &Error, out: &mut Vec<u8>) {
        Self::fail(self, e, out);
    }
    fn is_done(&self) -> bool {
        Self::is_done(self)
    }
}
