//! The `messages` array and `system`: OpenAI messages become alternating Anthropic turns of
//! content blocks (see the mapping table in the module docs of [`super`]).

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::openai::{ContentPart, Message, MessageContent, Role};
use crate::provider::claude::{
    function_message_refused, parse_data_url, push_turn, signed_reasoning, SignedReasoning, Turn,
};
use crate::Error;

/// A 400 for a malformed message.
fn bad_message(message: impl Into<Cow<'static, str>>) -> Error {
    Error::invalid_request(message).with_param("messages")
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum WireSystem<'a> {
    Text(String),
    Blocks(Vec<Block<'a>>),
}

#[derive(Serialize)]
pub(super) struct WireMessage<'a> {
    role: &'static str,
    content: WireContent<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum WireContent<'a> {
    Text(Cow<'a, str>),
    Blocks(Vec<Block<'a>>),
}

/// One Anthropic content block of a request.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Block<'a> {
    Text {
        text: Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Image {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Document {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: ToolInput<'a>,
    },
    ToolResult {
        tool_use_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<WireContent<'a>>,
    },
    Thinking {
        thinking: Cow<'a, str>,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Source<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

impl<'a> Turn<Block<'a>> {
    fn into_wire(self) -> WireMessage<'a> {
        let role = self.wire_role();
        let Turn { lead, mut rest, .. } = self;
        let content = if lead.is_empty()
            && rest.len() == 1
            && matches!(
                rest.first(),
                Some(Block::Text {
                    cache_control: None,
                    ..
                })
            ) {
            match rest.pop() {
                Some(Block::Text { text, .. }) => WireContent::Text(text),
                _ => WireContent::Blocks(Vec::new()),
            }
        } else {
            let mut blocks = lead;
            blocks.append(&mut rest);
            WireContent::Blocks(blocks)
        };
        WireMessage { role, content }
    }
}

/// Lifts system messages out and turns the rest into alternating turns.
pub(super) fn convert_messages(
    messages: &[Message],
) -> Result<(Option<WireSystem<'_>>, Vec<WireMessage<'_>>), Error> {
    let mut system: Vec<Block<'_>> = Vec::new();
    let mut system_cached = false;
    let mut system_msgs: Vec<String> = Vec::new();
    let mut turns: Vec<Turn<Block<'_>>> = Vec::new();

    for m in messages {
        let mut lead = Vec::new();
        let mut rest = Vec::new();
        let role = match m.role {
            Role::System | Role::Developer => {
                let mut joined = String::new();
                match &m.content {
                    None => {}
                    Some(MessageContent::Text(s)) => {
                        joined.push_str(s);
                        if !s.is_empty() {
                            system.push(text_block(s, None));
                        }
                    }
                    Some(MessageContent::Parts(parts)) => {
                        for p in parts {
                            let ContentPart::Text {
                                text,
                                cache_control,
                            } = p
                            else {
                                return Err(bad_message(
                                    "system and developer messages may only contain text",
                                ));
                            };
                            joined.push_str(text);
                            system_cached |= cache_control.is_some();
                            if !text.is_empty() {
                                system.push(text_block(text, cache_control.as_ref()));
                            }
                        }
                    }
                }
                if !joined.is_empty() {
                    system_msgs.push(joined);
                }
                continue;
            }
            Role::User => {
                user_blocks(m.content.as_ref(), &mut rest)?;
                Role::User
            }
            Role::Tool => {
                lead.push(tool_result(m)?);
                Role::User
            }
            Role::Assistant => {
                if let Some(details) = &m.reasoning_details {
                    restore_reasoning(details, &mut lead);
                }
                assistant_blocks(m, &mut rest)?;
                Role::Assistant
            }
            Role::Function => return Err(function_message_refused()),
        };
        push_turn(&mut turns, role, lead, rest);
    }

    let system = if system.is_empty() {
        None
    } else if system_cached {
        Some(WireSystem::Blocks(system))
    } else {
        Some(WireSystem::Text(system_msgs.join("\n\n")))
    };
    Ok((system, turns.into_iter().map(Turn::into_wire).collect()))
}

fn text_block<'a>(text: &'a str, cache_control: Option<&'a Value>) -> Block<'a> {
    Block::Text {
        text: Cow::Borrowed(text),
        cache_control,
    }
}

/// User content: text, images and PDF documents.
fn user_blocks<'a>(
    content: Option<&'a MessageContent>,
    out: &mut Vec<Block<'a>>,
) -> Result<(), Error> {
    match content {
        Some(MessageContent::Text(s)) if !s.is_empty() => out.push(text_block(s, None)),
        None | Some(MessageContent::Text(_)) => {}
        Some(MessageContent::Parts(parts)) => {
            for p in parts {
                if let Some(b) = part_block(p)? {
                    out.push(b);
                }
            }
        }
    }
    Ok(())
}

fn part_block(part: &ContentPart) -> Result<Option<Block<'_>>, Error> {
    Ok(match part {
        ContentPart::Text {
            text,
            cache_control,
        } => (!text.is_empty()).then(|| text_block(text, cache_control.as_ref())),
        ContentPart::ImageUrl {
            image_url,
            cache_control,
        } => Some(Block::Image {
            source: image_source(&image_url.url)?,
            cache_control: cache_control.as_ref(),
        }),
        ContentPart::File { file } => Some(Block::Document {
            source: pdf_source(file)?,
            cache_control: None,
        }),
        ContentPart::InputAudio { .. } => {
            return Err(
                Error::invalid_request("this model does not accept audio input")
                    .with_code("unsupported_parameter")
                    .with_param("messages"),
            )
        }
    })
}

/// `data:<media type>;base64,<data>` → base64 source; `http(s)://` → URL source.
fn image_source(url: &str) -> Result<Source<'_>, Error> {
    if let Some((media_type, data)) = parse_data_url(url) {
        return Ok(Source::Base64 { media_type, data });
    }
    if url.starts_with("data:") {
        return Err(bad_message(
            "image `data:` URLs must be base64-encoded (`data:image/png;base64,…`)",
        ));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Source::Url { url });
    }
    Err(bad_message(
        "`image_url.url` must be an http(s) URL or a base64 `data:` URL",
    ))
}

/// A `file` part: only PDF `data:` URLs map to Anthropic documents.
fn pdf_source(file: &Value) -> Result<Source<'_>, Error> {
    let refuse = || {
        Error::invalid_request(
            "this model only accepts `file` parts carrying a PDF as a base64 `data:` URL in `file_data`",
        )
        .with_code("unsupported_parameter")
        .with_param("messages")
    };
    let url = file
        .get("file_data")
        .and_then(Value::as_str)
        .ok_or_else(refuse)?;
    match parse_data_url(url) {
        Some((media_type @ "application/pdf", data)) => Ok(Source::Base64 { media_type, data }),
        _ => Err(refuse()),
    }
}

/// A `role: tool` message → a `tool_result` block.
fn tool_result(m: &Message) -> Result<Block<'_>, Error> {
    let tool_use_id = m
        .tool_call_id
        .as_deref()
        .ok_or_else(|| bad_message("`tool` messages need a `tool_call_id`"))?;
    let content = match &m.content {
        None => None,
        Some(MessageContent::Text(s)) => {
            (!s.is_empty()).then_some(WireContent::Text(Cow::Borrowed(s)))
        }
        Some(MessageContent::Parts(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for p in parts {
                if let Some(b) = part_block(p)? {
                    blocks.push(b);
                }
            }
            (!blocks.is_empty()).then_some(WireContent::Blocks(blocks))
        }
    };
    Ok(Block::ToolResult {
        tool_use_id,
        content,
    })
}

/// Assistant text and tool calls.
fn assistant_blocks<'a>(m: &'a Message, out: &mut Vec<Block<'a>>) -> Result<(), Error> {
    match &m.content {
        Some(MessageContent::Text(s)) if !s.is_empty() => out.push(text_block(s, None)),
        None | Some(MessageContent::Text(_)) => {}
        Some(MessageContent::Parts(parts)) => {
            for p in parts {
                if let ContentPart::Text {
                    text,
                    cache_control,
                } = p
                {
                    if !text.is_empty() {
                        out.push(text_block(text, cache_control.as_ref()));
                    }
                }
            }
        }
    }
    for call in m.tool_calls.iter().flatten() {
        let args = call.function.arguments.trim();
        let input = if args.is_empty() {
            ToolInput(None)
        } else {
            let raw: &RawValue = serde_json::from_str(args).map_err(|_| {
                bad_message(format!(
                    "the arguments of tool call `{}` are not valid JSON",
                    call.id
                ))
            })?;
            if !raw.get().starts_with('{') {
                return Err(bad_message(format!(
                    "the arguments of tool call `{}` must be a JSON object",
                    call.id
                )));
            }
            ToolInput(Some(raw))
        };
        out.push(Block::ToolUse {
            id: &call.id,
            name: &call.function.name,
            input,
        });
    }
    Ok(())
}

/// A tool call's `input`: the client's arguments as they were, or `{}` when they were empty.
pub(super) struct ToolInput<'a>(Option<&'a RawValue>);

impl Serialize for ToolInput<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            Some(raw) => raw.serialize(s),
            None => s.serialize_map(Some(0))?.end(),
        }
    }
}

/// Restores signed `thinking` / `redacted_thinking` blocks from OpenRouter-style
/// `reasoning_details`. Entries sharing an `index` (streamed fragments) are merged.
fn restore_reasoning<'a>(details: &'a [Value], out: &mut Vec<Block<'a>>) {
    out.extend(signed_reasoning(details).map(|r| match r {
        SignedReasoning::Text { text, signature } => Block::Thinking {
            thinking: text,
            signature,
        },
        SignedReasoning::Redacted { data } => Block::RedactedThinking { data },
    }));
}
