//! Streams: ConverseStream events (decoded from AWS's event-stream framing, see
//! [`eventstream`](super::eventstream)) become OpenAI chunks.
//!
//! `messageStart` gives the role chunk; `contentBlockStart` with `toolUse` starts a tool call
//! (id and name); `contentBlockDelta` carries `text`, `toolUse.input` fragments or
//! `reasoningContent` (`text`, `signature`, `redactedContent`); `messageStop` the finish
//! reason; `metadata` the usage, which ends the stream. Exception events become the stream's
//! error. Blocks are tracked by `contentBlockIndex` in a map, forgotten at
//! `contentBlockStop`, at most [`MAX_OPEN_BLOCKS`] open at once.

use std::collections::HashMap;

use serde::Deserialize;

use super::error::stream_exception;
use super::response::{finish_reason, WireUsage};
use crate::openai::sse::SseEvent;
use crate::openai::{new_completion_id, unix_now, ChatCompletionChunk, ChunkChoice, Delta};
use crate::provider::claude::{
    redacted_delta, signature_delta, thinking_delta, tool_call_arguments, tool_call_start,
    ChunkHead,
};
use crate::provider::{stream_complete, DecodeContext, StreamDecode};
use crate::Error;

/// The most content blocks open at once.
pub(super) const MAX_OPEN_BLOCKS: usize = 10_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    #[serde(default)]
    content_block_index: u32,
    #[serde(default)]
    start: Option<StartBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartBody {
    #[serde(default)]
    tool_use: Option<StartToolUse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartToolUse {
    #[serde(default)]
    tool_use_id: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    #[serde(default)]
    content_block_index: u32,
    #[serde(default)]
    delta: DeltaBody,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaBody {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<ToolUseDelta>,
    #[serde(default)]
    reasoning_content: Option<ReasoningDelta>,
}

#[derive(Deserialize)]
struct ToolUseDelta {
    #[serde(default)]
    input: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReasoningDelta {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    redacted_content: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStop {
    #[serde(default)]
    content_block_index: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Tool(u32),
    Reasoning(u32),
    Text,
}

/// Stream state for one ConverseStream answer.
#[derive(Debug)]
pub(super) struct ConverseStream {
    head: ChunkHead,
    started: bool,
    stopped: bool,
    done: bool,
    blocks: HashMap<u32, BlockKind>,
    next_tool: u32,
    next_reasoning: u32,
}

fn parse<'a, T: Deserialize<'a>>(data: &'a str) -> Result<T, Error> {
    serde_json::from_str(data).map_err(|e| {
        Error::upstream("the provider sent a malformed stream event")
            .with_source(Box::new(e) as crate::BoxError)
    })
}

impl ConverseStream {
    pub(super) fn new(ctx: DecodeContext) -> Self {
        Self {
            head: ChunkHead::new(ctx),
            started: false,
            stopped: false,
            done: false,
            blocks: HashMap::new(),
            next_tool: 0,
            next_reasoning: 0,
        }
    }

    /// The kind of block `index`, registering it as `new()` if unknown.
    fn block(
        &mut self,
        index: u32,
        new: impl FnOnce(&mut Self) -> BlockKind,
    ) -> Result<BlockKind, Error> {
        if let Some(k) = self.blocks.get(&index) {
            return Ok(*k);
        }
        if self.blocks.len() >= MAX_OPEN_BLOCKS {
            return Err(Error::upstream(format!(
                "bad upstream stream: more than {MAX_OPEN_BLOCKS} content blocks open at once"
            )));
        }
        let k = new(self);
        self.blocks.insert(index, k);
        Ok(k)
    }

    fn start(&mut self, s: BlockStart, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        let Some(tu) = s.start.and_then(|b| b.tool_use) else {
            return Ok(());
        };
        let index = s.content_block_index;
        self.blocks.remove(&index);
        let kind = self.block(index, |me| {
            let n = me.next_tool;
            me.next_tool = n.saturating_add(1);
            BlockKind::Tool(n)
        })?;
        if let BlockKind::Tool(n) = kind {
            out.push(self.head.delta(tool_call_start(n, tu.tool_use_id, tu.name)));
        }
        Ok(())
    }

    fn delta_event(
        &mut self,
        d: BlockDelta,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<(), Error> {
        let index = d.content_block_index;
        let body = d.delta;
        if let Some(text) = body.text {
            self.block(index, |_| BlockKind::Text)?;
            if !text.is_empty() {
                out.push(self.head.delta(Delta {
                    content: Some(text),
                    ..Delta::default()
                }));
            }
        } else if let Some(tu) = body.tool_use {
            if let Some(BlockKind::Tool(n)) = self.blocks.get(&index).copied() {
                if !tu.input.is_empty() {
                    out.push(self.head.delta(tool_call_arguments(n, tu.input)));
                }
            }
        } else if let Some(r) = body.reasoning_content {
            let kind = self.block(index, |me| {
                let n = me.next_reasoning;
                me.next_reasoning = n.saturating_add(1);
                BlockKind::Reasoning(n)
            })?;
            let BlockKind::Reasoning(n) = kind else {
                return Ok(());
            };
            let d = if let Some(text) = r.text.filter(|t| !t.is_empty()) {
                thinking_delta(text, n)
            } else if let Some(sig) = r.signature.filter(|s| !s.is_empty()) {
                signature_delta(&sig, n)
            } else if let Some(data) = r.redacted_content {
                redacted_delta(&data, n)
            } else {
                return Ok(());
            };
            out.push(self.head.delta(d));
        }
        Ok(())
    }
}

impl StreamDecode for ConverseStream {
    fn event(&mut self, ev: SseEvent, out: &mut Vec<ChatCompletionChunk>) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        let name = ev.event.as_deref().unwrap_or("");
        if let Some(kind) = name
            .strip_prefix("exception:")
            .or_else(|| name.strip_prefix("error:"))
        {
            return Err(stream_exception(kind, &ev.data));
        }
        if name == "messageStart" {
            if self.started {
                return Err(Error::upstream(
                    "the provider sent a second messageStart in one stream",
                ));
            }
            self.started = true;
            self.head.id = new_completion_id();
            self.head.created = unix_now();
            out.push(self.head.delta(Delta {
                role: Some("assistant".to_owned()),
                content: Some(String::new()),
                ..Delta::default()
            }));
            return Ok(());
        }
        if !self.started {
            return Err(Error::upstream(
                "the provider's stream did not begin with messageStart",
            ));
        }
        match name {
            "contentBlockStart" => self.start(parse(&ev.data)?, out)?,
            "contentBlockDelta" => self.delta_event(parse(&ev.data)?, out)?,
            "contentBlockStop" => {
                let s: BlockStop = parse(&ev.data)?;
                self.blocks.remove(&s.content_block_index);
            }
            "messageStop" => {
                let s: MessageStop = parse(&ev.data)?;
                self.stopped = true;
                let mut c = self.head.chunk();
                c.choices.push(ChunkChoice {
                    index: 0,
                    delta: Delta::default(),
                    finish_reason: Some(finish_reason(s.stop_reason.as_deref())),
                    native_finish_reason: s.stop_reason,
                    logprobs: None,
                });
                out.push(c);
            }
            "metadata" => {
                if !self.stopped {
                    return Err(Error::upstream(
                        "the provider sent the stream's metadata before messageStop",
                    ));
                }
                let m: Metadata = parse(&ev.data)?;
                self.done = true;
                let mut u = self.head.chunk();
                u.usage = Some(Box::new(m.usage.unwrap_or_default().to_openai()));
                out.push(u);
            }
            _ => {}
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
