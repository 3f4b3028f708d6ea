//! Messages → Gemini `contents` and `systemInstruction`: roles, merged turns, media parts,
//! function calls and responses, thought signatures put back (see the module docs, "Messages").

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::error::invalid;
use super::thoughts::{signatures, PLACEHOLDER_SIGNATURE};
use crate::openai::{ContentPart, Message, MessageContent, Role};
use crate::provider::unsupported;
use crate::Error;

#[derive(Debug, Serialize)]
pub(super) struct Content<'a> {
    role: &'static str,
    parts: Vec<Part<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Part<'a> {
    #[serde(flatten)]
    data: PartData<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought_signature: Option<&'a str>,
}

impl<'a> Part<'a> {
    const fn new(data: PartData<'a>) -> Self {
        Self {
            data,
            thought_signature: None,
        }
    }

    const fn is_call(&self) -> bool {
        matches!(self.data, PartData::FunctionCall { .. })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
enum PartData<'a> {
    Text(&'a str),
    #[serde(rename_all = "camelCase")]
    InlineData {
        mime_type: &'a str,
        data: &'a str,
    },
    #[serde(rename_all = "camelCase")]
    FileData {
        #[serde(skip_serializing_if = "Option::is_none")]
        mime_type: Option<&'static str>,
        file_uri: &'a str,
    },
    FunctionCall {
        name: &'a str,
        args: Value,
    },
    FunctionResponse {
        name: &'a str,
        response: Value,
    },
}

/// Builds `contents` and `systemInstruction`.
#[derive(Default)]
pub(super) struct Contents<'a> {
    pub(super) system: Vec<Part<'a>>,
    pub(super) contents: Vec<Content<'a>>,
    /// `tool_call_id` → function name, for `role: tool` messages.
    calls: HashMap<&'a str, &'a str>,
}

impl<'a> Contents<'a> {
    fn push(&mut self, role: &'static str, parts: Vec<Part<'a>>) {
        if parts.is_empty() {
            return;
        }
        match self.contents.last_mut() {
            Some(c) if c.role == role => c.parts.extend(parts),
            _ => self.contents.push(Content { role, parts }),
        }
    }

    pub(super) fn message(&mut self, m: &'a Message) -> Result<(), Error> {
        match m.role {
            Role::System | Role::Developer => {
                match &m.content {
                    Some(MessageContent::Text(s)) if !s.is_empty() => {
                        self.system.push(Part::new(PartData::Text(s)));
                    }
                    Some(MessageContent::Parts(ps)) => {
                        for p in ps {
                            if let ContentPart::Text { text, .. } = p {
                                self.system.push(Part::new(PartData::Text(text)));
                            }
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
            Role::User => {
                let parts = user_parts(m)?;
                self.push("user", parts);
                Ok(())
            }
            Role::Assistant => {
                let parts = self.assistant_parts(m)?;
                self.push("model", parts);
                Ok(())
            }
            Role::Tool => {
                let Some(id) = m.tool_call_id.as_deref() else {
                    return Err(invalid(
                        "messages",
                        "a `tool` message needs a `tool_call_id`",
                    ));
                };
                let Some(&name) = self.calls.get(id) else {
                    return Err(invalid(
                        "messages",
                        format!("`tool_call_id` `{id}` does not match a tool call of an earlier assistant message"),
                    ));
                };
                self.push("user", vec![function_response(name, m)]);
                Ok(())
            }
            Role::Function => {
                let Some(name) = m.name.as_deref() else {
                    return Err(invalid("messages", "a `function` message needs a `name`"));
                };
                self.push("user", vec![function_response(name, m)]);
                Ok(())
            }
        }
    }

    fn assistant_parts(&mut self, m: &'a Message) -> Result<Vec<Part<'a>>, Error> {
        let mut parts = Vec::new();
        match &m.content {
            Some(MessageContent::Text(s)) if !s.is_empty() => {
                parts.push(Part::new(PartData::Text(s)));
            }
            Some(MessageContent::Parts(ps)) => {
                for p in ps {
                    match p {
                        ContentPart::Text { text, .. } if !text.is_empty() => {
                            parts.push(Part::new(PartData::Text(text)));
                        }
                        ContentPart::Text { .. } => {}
                        _ => {
                            return Err(invalid(
                                "messages",
                                "assistant messages may only contain text parts",
                            ))
                        }
                    }
                }
            }
            _ => {}
        }
        // Tool call id → its part (the first call with that id), built once: each signature
        // is then placed in constant time (amortised), not by searching every call and part.
        let mut call_parts: HashMap<&'a str, usize> = HashMap::new();
        for tc in m.tool_calls.iter().flatten() {
            let args = match tc.function.arguments.trim() {
                "" => Value::Object(Map::new()),
                s => match serde_json::from_str::<Value>(s) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => {
                        return Err(invalid(
                            "messages",
                            format!(
                                "the arguments of tool call `{}` are not a JSON object",
                                tc.id
                            ),
                        ))
                    }
                },
            };
            self.calls.insert(&tc.id, &tc.function.name);
            call_parts.entry(&tc.id).or_insert(parts.len());
            parts.push(Part::new(PartData::FunctionCall {
                name: &tc.function.name,
                args,
            }));
        }
        // Without a matching id: the first call if it is unsigned, else the last unsigned part
        // that is not a call. Only this fallback signs non-call parts, so the unsigned ones
        // are found by a cursor moving backwards once.
        let first_call = parts.iter().position(Part::is_call);
        let mut last_free = parts.len();
        for (id, sig) in signatures(m) {
            let slot = match id.and_then(|id| call_parts.get(id)) {
                Some(&i) => Some(i),
                None => first_call
                    .filter(|&i| parts[i].thought_signature.is_none())
                    .or_else(|| {
                        while last_free > 0
                            && (parts[last_free - 1].is_call()
                                || parts[last_free - 1].thought_signature.is_some())
                        {
                            last_free -= 1;
                        }
                        last_free.checked_sub(1)
                    }),
            };
            if let Some(i) = slot {
                if parts[i].thought_signature.is_none() {
                    parts[i].thought_signature = Some(sig);
                }
            }
        }
        Ok(parts)
    }

    /// Gives the first function call of every model step in the current turn a signature
    /// (Gemini 3 refuses unsigned calls there; see the module docs).
    pub(super) fn sign_current_turn(&mut self) {
        let start = self
            .contents
            .iter()
            .rposition(|c| {
                c.role == "user"
                    && c.parts
                        .iter()
                        .any(|p| !matches!(p.data, PartData::FunctionResponse { .. }))
            })
            .map_or(0, |i| i + 1);
        for c in &mut self.contents[start..] {
            if c.role != "model" {
                continue;
            }
            if let Some(p) = c.parts.iter_mut().find(|p| p.is_call()) {
                if p.thought_signature.is_none() {
                    p.thought_signature = Some(PLACEHOLDER_SIGNATURE);
                }
            }
        }
    }
}

fn function_response<'a>(name: &'a str, m: &Message) -> Part<'a> {
    let text = m.text();
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            let mut o = Map::with_capacity(1);
            o.insert("content".to_owned(), Value::String(text));
            Value::Object(o)
        }
    };
    Part::new(PartData::FunctionResponse { name, response })
}

fn user_parts(m: &Message) -> Result<Vec<Part<'_>>, Error> {
    let mut parts = Vec::new();
    match &m.content {
        Some(MessageContent::Text(s)) if !s.is_empty() => {
            parts.push(Part::new(PartData::Text(s)));
        }
        None | Some(MessageContent::Text(_)) => {}
        Some(MessageContent::Parts(ps)) => {
            for p in ps {
                parts.push(Part::new(content_part(p)?));
            }
        }
    }
    Ok(parts)
}

fn content_part(p: &ContentPart) -> Result<PartData<'_>, Error> {
    match p {
        ContentPart::Text { text, .. } => Ok(PartData::Text(text)),
        ContentPart::ImageUrl { image_url, .. } => url_part(&image_url.url),
        ContentPart::InputAudio { input_audio } => {
            let data = input_audio.get("data").and_then(Value::as_str);
            let format = input_audio.get("format").and_then(Value::as_str);
            let (Some(data), Some(format)) = (data, format) else {
                return Err(invalid(
                    "messages",
                    "`input_audio` needs `data` and `format`",
                ));
            };
            let mime = match format {
                "wav" => "audio/wav",
                "mp3" => "audio/mp3",
                "aac" => "audio/aac",
                "flac" => "audio/flac",
                "ogg" => "audio/ogg",
                "aiff" => "audio/aiff",
                _ => {
                    return Err(unsupported(
                        "messages",
                        "Gemini accepts `input_audio` as wav, mp3, aac, flac, ogg or aiff",
                    ))
                }
            };
            Ok(PartData::InlineData {
                mime_type: mime,
                data,
            })
        }
        ContentPart::File { file } => {
            if let Some(data) = file.get("file_data").and_then(Value::as_str) {
                return url_part(data);
            }
            Err(unsupported(
                "messages",
                "Gemini needs file contents (`file_data`); file ids are not supported",
            ))
        }
    }
}

/// A data URL → `inlineData`; an http(s) or gs URL → `fileData`.
fn url_part(url: &str) -> Result<PartData<'_>, Error> {
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((header, data)) = rest.split_once(',') else {
            return Err(invalid("messages", "malformed data URL"));
        };
        let Some(mime) = header.strip_suffix(";base64") else {
            return Err(invalid(
                "messages",
                "data URLs must be base64-encoded (`data:<type>;base64,…`)",
            ));
        };
        let mime = mime.split(';').next().unwrap_or("");
        if mime.is_empty() {
            return Err(invalid("messages", "data URLs need a media type"));
        }
        return Ok(PartData::InlineData {
            mime_type: mime,
            data,
        });
    }
    let lower_scheme = url
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if lower_scheme.starts_with("https://")
        || lower_scheme.starts_with("http://")
        || lower_scheme.starts_with("gs://")
    {
        return Ok(PartData::FileData {
            mime_type: guess_mime(url),
            file_uri: url,
        });
    }
    Err(invalid(
        "messages",
        "media URLs must be `data:`, `https://`, `http://` or `gs://` URLs",
    ))
}

fn guess_mime(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "wav" => "audio/wav",
        "mp3" => "audio/mp3",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "txt" => "text/plain",
        _ => return None,
    })
}
