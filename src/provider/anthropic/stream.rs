//! Streams: Anthropic SSE events become OpenAI chunks.

use std::collections::HashMap;

use serde::Deserialize;

use super::error::{error_from_type, WireError};
use super::response::{finish_reason, RespBlock, WireUsage};
use super::JSON_TOOL;
use crate::openai::sse::SseEvent;
use crate::openai::{new_completion_id, unix_now, ChatCompletionChunk, ChunkChoice, Delta};
use crate::provider::claude::{
    redacted_delta, signature_delta, text_detail, thinking_delta, tool_call_arguments,
    tool_call_start, ChunkHead,
};
use crate::provider::{stream_complete, DecodeContext, StreamDecode};
use crate::Error;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: RespBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: WireDelta,
    },
    ContentBlockStop {
        #[serde(default)]
        index: Option<u32>,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    Error {
        #[serde(default)]
        error: WireError,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Default, Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        #[serde(default)]
        text: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    ThinkingDelta {
        #[serde(default)]
        thinking: String,
    },
    SignatureDelta {
        #[serde(default)]
        signature: String,
    },
    #[serde(other)]
    Other,
}

/// What a content block of the stream turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    /// A tool call with its OpenAI index.
    Tool(u32),
    /// The `response_format` emulation tool: its input is the content.
    JsonTool,
    /// Thinking with its `reasoning_details` index.
    Thinking(u32),
    Other,
}

/// The most content blocks a stream may have open (started, not stopped) at once; an
/// upstream that opens more is answered with a 502 rather than grown without bound.
pub(super) const MAX_OPEN_BLOCKS: usize = 10_000;

/// Stream state for one Anthropic SSE stream.
#[derive(Debug)]
pub(super) struct AnthropicStream {
    head: ChunkHead,
    started: bool,
    done: bool,
    /// Open content blocks: index → kind (at most [`MAX_OPEN_BLOCKS`]; a block is forgotten at
    /// its `content_block_stop`, a restarted index replaces the earlier block).
    blocks: HashMap<u32, BlockKind>,
    next_tool: u32,
    next_reasoning: u32,
    json_output: bool,
    usage: WireUsage,
    stop_reason: Option<String>,
}

impl AnthropicStream {
    pub(super) fn new(ctx: DecodeContext) -> Self {
        Self {
            head: ChunkHead::new(ctx),
            started: false,
            done: false,
            blocks: HashMap::new(),
            next_tool: 0,
            next_reasoning: 0,
            json_output: false,
            usage: WireUsage::default(),
            stop_reason: None,
        }
    }

    fn kind_of(&self, index: u32) -> BlockKind {
        self.blocks.get(&index).copied().unwrap_or(BlockKind::Other)
    }

    fn block_start(
        &mut self,
        index: u32,
        block: RespBlock,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<(), Error> {
        if self.blocks.len() >= MAX_OPEN_BLOCKS && !self.blocks.contains_key(&index) {
            return Err(Error::upstream(format!(
                "bad upstream stream: more than {MAX_OPEN_BLOCKS} content blocks open at once"
            )));
        }
        let kind = match block {
            RespBlock::Text { text } => {
                if !text.is_empty() {
                    out.push(self.head.delta(Delta {
                        content: Some(text),
                        ..Delta::default()
                    }));
                }
                BlockKind::Text
            }
            RespBlock::ToolUse { name, .. } if name == JSON_TOOL => {
                self.json_output = true;
                BlockKind::JsonTool
            }
            RespBlock::ToolUse { id, name, .. } => {
                let n = self.next_tool;
                self.next_tool = n.saturating_add(1);
                out.push(self.head.delta(tool_call_start(n, id, name)));
                BlockKind::Tool(n)
            }
            RespBlock::Thinking {
                thinking,
                signature,
            } => {
                let n = self.next_reasoning;
                self.next_reasoning = n.saturating_add(1);
                if !thinking.is_empty() || signature.is_some() {
                    let text = Some(thinking.as_str()).filter(|t| !t.is_empty());
                    let detail = text_detail(text, signature.as_deref(), n);
                    out.push(self.head.delta(Delta {
                        reasoning: text.map(str::to_owned),
                        reasoning_details: Some(vec![detail]),
                        ..Delta::default()
                    }));
                }
                BlockKind::Thinking(n)
            }
            RespBlock::RedactedThinking { data } => {
                let n = self.next_reasoning;
                self.next_reasoning = n.saturating_add(1);
                out.push(self.head.delta(redacted_delta(&data, n)));
                BlockKind::Other
            }
            RespBlock::Other => BlockKind::Other,
        };
        self.blocks.insert(index, kind);
        Ok(())
    }

    fn block_delta(&self, index: u32, delta: WireDelta, out: &mut Vec<ChatCompletionChunk>) {
        let kind = self.kind_of(index);
        let d = match (delta, kind) {
            (WireDelta::TextDelta { text }, _) if !text.is_empty() => Delta {
                content: Some(text),
                ..Delta::default()
            },
            (WireDelta::InputJsonDelta { partial_json }, BlockKind::Tool(n))
                if !partial_json.is_empty() =>
            {
                tool_call_arguments(n, partial_json)
            }
            (WireDelta::InputJsonDelta { partial_json }, BlockKind::JsonTool)
                if !partial_json.is_empty() =>
            {
                Delta {
                    content: Some(partial_json),
                    ..Delta::default()
                }
            }
            (WireDelta::ThinkingDelta { thinking }, BlockKind::Thinking(n))
                if !thinking.is_empty() =>
            {
                thinking_delta(thinking, n)
            }
            (WireDelta::SignatureDelta { signature }, BlockKind::Thinking(n))
                if !signature.is_empty() =>
            {
                signature_delta(&signature, n)
            }
            _ => return,
        };
        out.push(self.head.delta(d));
    }

    fn message_stop(&mut self, out: &mut Vec<ChatCompletionChunk>) {
        self.done = true;
        let finish = finish_reason(
            self.stop_reason.as_deref(),
            self.json_output && self.next_tool == 0,
        );
        let mut c = self.head.chunk();
        c.choices.push(ChunkChoice {
            index: 0,
            delta: Delta::default(),
            finish_reason: Some(finish),
            native_finish_reason: self.stop_reason.take(),
            logprobs: None,
        });
        out.push(c);
        let mut u = self.head.chunk();
        u.usage = Some(Box::new(self.usage.to_openai()));
        out.push(u);
    }
}

impl StreamDecode for AnthropicStream {
    fn event(&mut self, ev: SseEvent, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        let data = ev.data.trim();
        if self.done || data.is_empty() {
            return Ok(());
        }
        let event: WireEvent = serde_json::from_str(data).map_err(|e| {
            Error::upstream("the provider sent a malformed stream event")
                .with_source(Box::new(e) as crate::BoxError)
        })?;
        match event {
            WireEvent::Error { error } => return Err(error_from_type(&error.kind, error.message)),
            WireEvent::Ping | WireEvent::Other => {}
            WireEvent::ContentBlockStop { index } => {
                if let Some(i) = index {
                    self.blocks.remove(&i);
                }
            }
            WireEvent::MessageStart { message } => {
                if self.started {
                    return Err(Error::upstream(
                        "the provider sent a second message_start in one stream",
                    ));
                }
                self.started = true;
                self.head.id = if message.id.is_empty() {
                    new_completion_id()
                } else {
                    message.id
                };
                self.head.created = unix_now();
                if let Some(u) = &message.usage {
                    self.usage.update(u);
                }
                out.push(self.head.delta(Delta {
                    role: Some("assistant".to_owned()),
                    content: Some(String::new()),
                    ..Delta::default()
                }));
            }
            other => {
                if !self.started {
                    return Err(Error::upstream(
                        "the provider's stream did not begin with message_start",
                    ));
                }
                match other {
                    WireEvent::ContentBlockStart {
                        index,
                        content_block,
                    } => self.block_start(index, content_block, out)?,
                    WireEvent::ContentBlockDelta { index, delta } => {
                        self.block_delta(index, delta, out);
                    }
                    WireEvent::MessageDelta { delta, usage } => {
                        if delta.stop_reason.is_some() {
                            self.stop_reason = delta.stop_reason;
                        }
                        if let Some(u) = &usage {
                            self.usage.update(u);
                        }
                    }
                    WireEvent::MessageStop => self.message_stop(out),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self, _out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        stream_complete(self.done)
    }
}
