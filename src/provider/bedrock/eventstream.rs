//! AWS's binary event-stream framing (`application/vnd.amazon.eventstream`), as ConverseStream
//! sends it: a sequence of messages, each
//!
//! ```text
//! total length (u32 BE) | headers length (u32 BE) | prelude CRC32 (u32 BE)
//! headers | payload | message CRC32 (u32 BE, over everything before it)
//! ```
//!
//! Headers are `name length (u8) | name | type (u8) | value`, where strings and byte arrays are
//! prefixed by a `u16` length and the other types have fixed sizes (booleans none, byte 1,
//! short 2, integer 4, long 8, timestamp 8, UUID 16).
//!
//! The decoder is incremental: bytes are pushed as they arrive and whole messages come out.
//! Both CRCs are checked; the declared total length is checked against the bounds (at least
//! 16 bytes, at most the decoder's limit, 16 MiB by default) from the 12-byte prelude, after
//! its CRC, and before anything is buffered past it, so a hostile length never allocates.
//!
//! Each message becomes an [`SseEvent`] so the stream decoders keep one interface:
//! `:message-type: event` → `event` = the `:event-type` header, `data` = the payload;
//! `:message-type: exception` → `event` = `exception:{:exception-type}`, `data` = the payload
//! (`{"message": …}`); `:message-type: error` → `event` = `error:{:error-code}`, `data` =
//! `{"message": :error-message}`.

use bytes::{Buf, BytesMut};

use crate::openai::sse::SseEvent;
use crate::Error;

/// The largest message accepted by default: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Prelude (12 bytes) plus message CRC (4 bytes): the smallest message.
const OVERHEAD: usize = 16;
const PRELUDE: usize = 12;

/// CRC-32 (IEEE 802.3, as gzip and zlib), table-driven.
pub fn crc32(data: &[u8]) -> u32 {
    crc32_update(0, data)
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn bad(message: &'static str) -> Error {
    Error::upstream(format!("bad upstream event stream: {message}"))
        .with_code("upstream_bad_event_stream")
}

/// An incremental event-stream decoder.
#[derive(Debug)]
pub struct EventStreamDecoder {
    buf: BytesMut,
    max: usize,
}

impl Default for EventStreamDecoder {
    fn default() -> Self {
        Self::with_limit(DEFAULT_MAX_MESSAGE)
    }
}

impl EventStreamDecoder {
    /// A decoder refusing messages larger than `max` bytes (and never below 16).
    pub fn with_limit(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max: max.max(OVERHEAD),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether part of a message is buffered (a stream ending now was cut short).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next whole message as an event, `None` until one is complete. An error (bad CRC,
    /// length out of bounds, malformed headers) is final: the stream must end.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, Error> {
        if self.buf.len() < PRELUDE {
            return Ok(None);
        }
        let (Some(total), Some(headers_len), Some(prelude_crc)) =
            (be32(&self.buf, 0), be32(&self.buf, 4), be32(&self.buf, 8))
        else {
            return Ok(None);
        };
        if crc32(&self.buf[..8]) != prelude_crc {
            return Err(bad("prelude checksum mismatch"));
        }
        let total = total as usize;
        let headers_len = headers_len as usize;
        if total < OVERHEAD || total > self.max {
            return Err(bad("message length out of bounds"));
        }
        if headers_len > total - OVERHEAD {
            return Err(bad("headers longer than the message"));
        }
        if self.buf.len() < total {
            // Room for the rest of this message only (bounded by `max`).
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let msg = self.buf.split_to(total);
        let Some(message_crc) = be32(&msg, total - 4) else {
            return Err(bad("truncated message"));
        };
        if crc32(&msg[..total - 4]) != message_crc {
            return Err(bad("message checksum mismatch"));
        }
        let headers = &msg[PRELUDE..PRELUDE + headers_len];
        let payload = &msg[PRELUDE + headers_len..total - 4];
        let h = Headers::parse(headers)?;
        let payload = std::str::from_utf8(payload).map_err(|_| bad("payload is not UTF-8"))?;
        let event = match h.message_type.as_deref() {
            Some("event") | None => SseEvent {
                event: h.event_type,
                data: payload.to_owned(),
            },
            Some("exception") => SseEvent {
                event: Some(format!(
                    "exception:{}",
                    h.exception_type.as_deref().unwrap_or("unknown")
                )),
                data: payload.to_owned(),
            },
            Some("error") => SseEvent {
                event: Some(format!(
                    "error:{}",
                    h.error_code.as_deref().unwrap_or("unknown")
                )),
                data: serde_json::json!({"message": h.error_message.unwrap_or_default()})
                    .to_string(),
            },
            Some(_) => return Err(bad("unknown :message-type")),
        };
        Ok(Some(event))
    }
}

/// The headers the decoder reads (others are skipped).
#[derive(Default)]
struct Headers {
    message_type: Option<String>,
    event_type: Option<String>,
    exception_type: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
}

impl Headers {
    fn parse(mut b: &[u8]) -> Result<Self, Error> {
        let mut h = Self::default();
        while !b.is_empty() {
            let name_len = usize::from(b.get_u8());
            if name_len == 0 || b.len() < name_len + 1 {
                return Err(bad("malformed header name"));
            }
            let name = b[..name_len].to_vec();
            b.advance(name_len);
            let kind = b.get_u8();
            let fixed = match kind {
                0 | 1 => Some(0),
                2 => Some(1),
                3 => Some(2),
                4 => Some(4),
                5 | 8 => Some(8),
                9 => Some(16),
                6 | 7 => None,
                _ => return Err(bad("unknown header value type")),
            };
            let value = match fixed {
                Some(n) => {
                    if b.len() < n {
                        return Err(bad("truncated header value"));
                    }
                    b.advance(n);
                    continue;
                }
                None => {
                    if b.len() < 2 {
                        return Err(bad("truncated header value"));
                    }
                    let len = usize::from(b.get_u16());
                    if b.len() < len {
                        return Err(bad("truncated header value"));
                    }
                    let v = &b[..len];
                    b.advance(len);
                    v
                }
            };
            if kind != 7 {
                continue;
            }
            let text = || {
                std::str::from_utf8(value)
                    .map(str::to_owned)
                    .map_err(|_| bad("header value is not UTF-8"))
            };
            match name.as_slice() {
                b":message-type" => h.message_type = Some(text()?),
                b":event-type" => h.event_type = Some(text()?),
                b":exception-type" => h.exception_type = Some(text()?),
                b":error-code" => h.error_code = Some(text()?),
                b":error-message" => h.error_message = Some(text()?),
                _ => {}
            }
        }
        Ok(h)
    }
}

/// Encodes one message with string headers (for the demo provider and tests).
pub fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut hb = Vec::new();
    for (name, value) in headers {
        let name = &name.as_bytes()[..name.len().min(255)];
        let value = &value.as_bytes()[..value.len().min(usize::from(u16::MAX))];
        hb.push(name.len() as u8);
        hb.extend_from_slice(name);
        hb.push(7);
        hb.extend_from_slice(&(value.len() as u16).to_be_bytes());
        hb.extend_from_slice(value);
    }
    let total = OVERHEAD + hb.len() + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(hb.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&hb);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// An `event` message: `:event-type`, `:content-type: application/json`, `:message-type`.
pub fn encode_event(event_type: &str, payload: &[u8]) -> Vec<u8> {
    encode_message(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// An `exception` message, as a stream reports a failure after its start.
pub fn encode_exception(exception_type: &str, message: &str) -> Vec<u8> {
    encode_message(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        serde_json::json!({ "message": message })
            .to_string()
            .as_bytes(),
    )
}
