//! Canonical chunks rendered as the Responses API's stream events.
//!
//! Every event is `event: <type>` and `data: {"type", "sequence_number", …}`, numbered from 0.
//! `response.created` and `response.in_progress` come first; then, per output item (never
//! interleaved, numbered by `output_index` from 0), `response.output_item.added`, its parts and
//! deltas, and `response.output_item.done`:
//!
//! - a `reasoning` item: `response.reasoning_summary_part.added`,
//!   `response.reasoning_summary_text.delta` …, `response.reasoning_summary_text.done`,
//!   `response.reasoning_summary_part.done` (when the provider gave reasoning text); its
//!   `encrypted_content` (the signed details) is on the `done` item;
//! - a `message` item: per content part `response.content_part.added`,
//!   `response.output_text.delta` … `response.output_text.done` (or `response.refusal.delta`
//!   … `response.refusal.done`), `response.content_part.done`;
//! - a `function_call` item: `response.function_call_arguments.delta` …
//!   `response.function_call_arguments.done`.
//!
//! At the end `response.completed` (or `response.incomplete` with `incomplete_details`) carries
//! the whole response with its usage. A failure after the start is an `error` event followed by
//! `response.failed`, and the stream ends.

use serde_json::{json, Value};

use super::response::{
    call_item, end_status, failure, message_item, new_id, reasoning_item, reasoning_text,
    refusal_part, response_object, text_part, usage_json, Echo, Head,
};
use crate::openai::{unix_now, ChatCompletionChunk, FinishReason, Usage};
use crate::Error;

/// The kind of a message's content part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Text,
    Refusal,
}

/// The output item being streamed.
#[derive(Debug)]
enum Item {
    Reasoning {
        id: String,
        text: String,
        details: Vec<Value>,
        part_open: bool,
    },
    Message {
        id: String,
        done: Vec<Value>,
        part: Option<(Part, String)>,
    },
    Call {
        id: String,
        tool_index: u32,
        call_id: String,
        name: String,
        args: String,
    },
}

/// Turns canonical chunks into Responses SSE events, appended to a buffer.
#[derive(Debug)]
pub struct StreamEncoder {
    echo: Echo,
    seq: u64,
    started: bool,
    done: bool,
    id: String,
    created: u64,
    model: String,
    output: Vec<Value>,
    open: Option<Item>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl StreamEncoder {
    /// A fresh encoder; `echo` holds the request fields each response object repeats.
    pub(crate) fn new(echo: Echo) -> Self {
        Self {
            id: echo.id().to_owned(),
            echo,
            seq: 0,
            started: false,
            done: false,
            created: 0,
            model: String::new(),
            output: Vec::new(),
            open: None,
            finish: None,
            usage: None,
        }
    }

    /// Whether the final event has been written.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn event(&mut self, out: &mut Vec<u8>, name: &str, mut data: Value) {
        if let Some(obj) = data.as_object_mut() {
            obj.insert("type".into(), Value::from(name));
            obj.insert("sequence_number".into(), Value::from(self.seq));
        }
        self.seq = self.seq.saturating_add(1);
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // A `Value` always serializes.
        let _ = serde_json::to_writer(&mut *out, &data);
        out.extend_from_slice(b"\n\n");
    }

    fn response(
        &self,
        status: &str,
        usage: Option<Value>,
        incomplete: Option<&str>,
        error: Option<Value>,
    ) -> Value {
        let head = Head {
            id: &self.id,
            created_at: self.created,
            model: &self.model,
            status,
        };
        response_object(
            &head,
            &self.echo,
            self.output.clone(),
            usage,
            incomplete,
            error,
        )
    }

    fn start(&mut self, model: &str, created: u64, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.model = model.to_owned();
        self.created = if created > 0 { created } else { unix_now() };
        let r = self.response("in_progress", None, None, None);
        self.event(out, "response.created", json!({ "response": r }));
        self.event(out, "response.in_progress", json!({ "response": r }));
    }

    fn output_index(&self) -> usize {
        self.output.len()
    }

    /// Opens `item` (closing the one open now) with `response.output_item.added`.
    fn open(&mut self, item: Item, out: &mut Vec<u8>) {
        self.close(out);
        let added = match &item {
            Item::Reasoning { id, .. } => reasoning_item(id, "", &[], "in_progress"),
            Item::Message { id, .. } => message_item(id, Vec::new(), "in_progress"),
            Item::Call {
                id, call_id, name, ..
            } => call_item(id, call_id, name, "", "in_progress"),
        };
        let index = self.output_index();
        self.open = Some(item);
        self.event(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
        );
    }

    fn item_status(&self) -> &'static str {
        match self.finish {
            Some(FinishReason::Length | FinishReason::ContentFilter) => "incomplete",
            _ => "completed",
        }
    }

    /// Closes the open item: its last part's `done` events and `response.output_item.done`.
    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(item) = self.open.take() else {
            return;
        };
        let index = self.output_index();
        let done = match item {
            Item::Reasoning {
                id,
                text,
                details,
                part_open,
            } => {
                if part_open {
                    self.event(
                        out,
                        "response.reasoning_summary_text.done",
                        json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                    );
                    self.event(
                        out,
                        "response.reasoning_summary_part.done",
                        json!({"item_id": id, "output_index": index, "summary_index": 0,
                            "part": {"type": "summary_text", "text": text}}),
                    );
                }
                reasoning_item(&id, &text, &details, "completed")
            }
            Item::Message { id, mut done, part } => {
                if let Some((kind, text)) = part {
                    done.push(self.close_part(&id, index, done.len(), kind, &text, out));
                }
                message_item(&id, done, self.item_status())
            }
            Item::Call {
                id,
                call_id,
                name,
                args,
                ..
            } => {
                self.event(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": name, "arguments": args}),
                );
                call_item(&id, &call_id, &name, &args, "completed")
            }
        };
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": done}),
        );
        self.output.push(done);
    }

    /// A content part's `done` events; returns the part.
    fn close_part(
        &mut self,
        id: &str,
        index: usize,
        content_index: usize,
        kind: Part,
        text: &str,
        out: &mut Vec<u8>,
    ) -> Value {
        let part = match kind {
            Part::Text => {
                self.event(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": content_index,
                        "text": text, "logprobs": []}),
                );
                text_part(text)
            }
            Part::Refusal => {
                self.event(
                    out,
                    "response.refusal.done",
                    json!({"item_id": id, "output_index": index, "content_index": content_index,
                        "refusal": text}),
                );
                refusal_part(text)
            }
        };
        self.event(
            out,
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": content_index,
                "part": part}),
        );
        part
    }

    fn reasoning(&mut self, text: &str, details: &[Value], out: &mut Vec<u8>) {
        if !matches!(self.open, Some(Item::Reasoning { .. })) {
            let item = Item::Reasoning {
                id: new_id("rs_"),
                text: String::new(),
                details: Vec::new(),
                part_open: false,
            };
            self.open(item, out);
        }
        let index = self.output_index();
        let Some(Item::Reasoning {
            id,
            text: acc,
            details: acc_details,
            part_open,
        }) = &mut self.open
        else {
            return;
        };
        acc_details.extend(details.iter().cloned());
        if text.is_empty() {
            return;
        }
        acc.push_str(text);
        let id = id.clone();
        let first = !*part_open;
        *part_open = true;
        if first {
            self.event(
                out,
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": index, "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""}}),
            );
        }
        self.event(
            out,
            "response.reasoning_summary_text.delta",
            json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": text}),
        );
    }

    fn text(&mut self, kind: Part, text: &str, out: &mut Vec<u8>) {
        if !matches!(self.open, Some(Item::Message { .. })) {
            let item = Item::Message {
                id: new_id("msg_"),
                done: Vec::new(),
                part: None,
            };
            self.open(item, out);
        }
        let index = self.output_index();
        let Some(Item::Message { id, done, part }) = &mut self.open else {
            return;
        };
        let id = id.clone();
        let switch = part.as_ref().map(|(k, _)| *k) != Some(kind);
        if switch {
            let previous = part.take();
            let mut finished = std::mem::take(done);
            if let Some((k, t)) = previous {
                let p = self.close_part(&id, index, finished.len(), k, &t, out);
                finished.push(p);
            }
            let content_index = finished.len();
            let empty = match kind {
                Part::Text => text_part(""),
                Part::Refusal => refusal_part(""),
            };
            self.event(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                    "part": empty}),
            );
            if let Some(Item::Message { done, part, .. }) = &mut self.open {
                *done = finished;
                *part = Some((kind, String::new()));
            }
        }
        let Some(Item::Message { done, part, .. }) = &mut self.open else {
            return;
        };
        let content_index = done.len();
        if let Some((_, acc)) = part {
            acc.push_str(text);
        }
        let (name, data) = match kind {
            Part::Text => (
                "response.output_text.delta",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                    "delta": text, "logprobs": []}),
            ),
            Part::Refusal => (
                "response.refusal.delta",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                    "delta": text}),
            ),
        };
        self.event(out, name, data);
    }

    fn call(&mut self, tc: &crate::openai::ToolCallDelta, out: &mut Vec<u8>) {
        let f = tc.function.as_ref();
        let continues =
            matches!(&self.open, Some(Item::Call { tool_index, .. }) if *tool_index == tc.index);
        if tc.id.is_some() || !continues {
            let item = Item::Call {
                id: new_id("fc_"),
                tool_index: tc.index,
                call_id: tc.id.clone().unwrap_or_else(|| new_id("call_")),
                name: f.and_then(|f| f.name.clone()).unwrap_or_default(),
                args: String::new(),
            };
            self.open(item, out);
        }
        let index = self.output_index();
        let Some(args) = f
            .and_then(|f| f.arguments.as_deref())
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        let Some(Item::Call { id, args: acc, .. }) = &mut self.open else {
            return;
        };
        acc.push_str(args);
        let id = id.clone();
        self.event(
            out,
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": index, "delta": args}),
        );
    }

    /// Renders one chunk.
    pub fn chunk(&mut self, c: &ChatCompletionChunk, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(&c.model, c.created, out);
        if let Some(u) = &c.usage {
            self.usage = Some((**u).clone());
        }
        let Some(choice) = c.choices.iter().find(|ch| ch.index == 0) else {
            return;
        };
        let d = &choice.delta;
        let details = d.reasoning_details.as_deref().unwrap_or_default();
        let text = match d.reasoning.as_deref() {
            Some(r) => r.to_owned(),
            None => reasoning_text(details),
        };
        if !text.is_empty() || !details.is_empty() {
            self.reasoning(&text, details, out);
        }
        if let Some(t) = d.content.as_deref().filter(|t| !t.is_empty()) {
            self.text(Part::Text, t, out);
        }
        if let Some(t) = d.refusal.as_deref().filter(|t| !t.is_empty()) {
            self.text(Part::Refusal, t, out);
        }
        for tc in d.tool_calls.iter().flatten() {
            self.call(tc, out);
        }
        if choice.finish_reason.is_some() {
            self.finish = choice.finish_reason;
        }
    }

    /// The end of a stream: the open item's `done` events and `response.completed` (or
    /// `response.incomplete`).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let model = self.echo.model().to_owned();
        self.start(&model, 0, out);
        self.close(out);
        self.done = true;
        let (status, incomplete) = end_status(self.finish);
        let r = self.response(
            status,
            Some(usage_json(self.usage.as_ref())),
            incomplete,
            None,
        );
        let name = if incomplete.is_some() {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.event(out, name, json!({ "response": r }));
    }

    /// A failure: an `error` event, then `response.failed`; the stream ends.
    pub fn fail(&mut self, e: &Error, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let model = self.echo.model().to_owned();
        self.start(&model, 0, out);
        self.done = true;
        let body = crate::openai::ErrorBody::from(e);
        let code = body
            .code
            .as_ref()
            .and_then(Value::as_str)
            .map_or_else(|| body.kind.clone(), str::to_owned);
        self.event(
            out,
            "error",
            json!({"code": code, "message": body.message, "param": body.param}),
        );
        let r = self.response("failed", None, None, Some(failure(e)));
        self.event(out, "response.failed", json!({ "response": r }));
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
