//! Server-sent events: an incremental decoder that works on bytes as they arrive (any split of
//! the input gives the same events) and the encoder the edge uses.

use bytes::{Buf, Bytes, BytesMut};

use crate::Error;

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental SSE decoder (WHATWG event-stream rules: `\n`, `\r\n` and `\r` line ends,
/// comments, multi-line data, the optional space after the colon).
#[derive(Debug)]
pub struct SseDecoder {
    buf: BytesMut,
    event: Option<String>,
    data: String,
    has_data: bool,
    skip_lf: bool,
    /// Bytes at the start of `buf` known to hold no line end (so a long line is scanned once,
    /// not again on every push).
    scanned: usize,
    max_line: usize,
    max_event: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder refusing lines and events over 16 MiB.
    pub fn new() -> Self {
        Self::with_limit(16 * 1024 * 1024)
    }

    /// A decoder refusing lines and events over `max` bytes.
    pub fn with_limit(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            event: None,
            data: String::new(),
            has_data: false,
            skip_lf: false,
            scanned: 0,
            max_line: max,
            max_event: max,
        }
    }

    /// Appends bytes received from the upstream.
    pub fn push(&mut self, bytes: &[u8]) {
        let mut bytes = bytes;
        if self.skip_lf && !bytes.is_empty() {
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
            self.skip_lf = false;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, Error> {
        loop {
            let found = self.buf[self.scanned..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r');
            let Some(pos) = found.map(|p| p + self.scanned) else {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_line {
                    return Err(Error::upstream(
                        "upstream stream line exceeds the size limit",
                    ));
                }
                return Ok(None);
            };
            self.scanned = 0;
            let line = self.buf.split_to(pos).freeze();
            let term = self.buf[0];
            self.buf.advance(1);
            if term == b'\r' {
                if self.buf.is_empty() {
                    self.skip_lf = true;
                } else if self.buf[0] == b'\n' {
                    self.buf.advance(1);
                }
            }
            if let Some(ev) = self.line(&line)? {
                return Ok(Some(ev));
            }
        }
    }

    /// Whether a partial line or event is buffered (the stream ended mid-event).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.has_data
    }

    fn line(&mut self, line: &Bytes) -> Result<Option<SseEvent>, Error> {
        if line.is_empty() {
            if !self.has_data {
                self.event = None;
                return Ok(None);
            }
            self.has_data = false;
            return Ok(Some(SseEvent {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
            }));
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (&line[..], &b""[..]),
        };
        let value = std::str::from_utf8(value)
            .map_err(|_| Error::upstream("upstream stream is not valid UTF-8"))?;
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > self.max_event {
                    return Err(Error::upstream(
                        "upstream stream event exceeds the size limit",
                    ));
                }
            }
            b"event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        Ok(None)
    }
}

/// Encodes one `data:` event carrying `json`.
pub fn data_event(json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 8);
    b.extend_from_slice(b"data: ");
    b.extend_from_slice(json);
    b.extend_from_slice(b"\n\n");
    b.freeze()
}

/// The terminating `data: [DONE]` event.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// The keep-alive comment sent while waiting for a first token.
pub const KEEP_ALIVE: &[u8] = b": switchboard processing\n\n";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(input: &[u8], splits: &[usize]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &s in splits.iter().chain(std::iter::once(&input.len())) {
            let s = s.clamp(last, input.len());
            d.push(&input[last..s]);
            last = s;
            while let Some(e) = d.next_event().unwrap() {
                out.push(e);
            }
        }
        out
    }

    const SAMPLE: &[u8] = b": comment\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\ndata:x\ndata: y\n\nid: 3\nretry: 10\ndata: [DONE]\r\r";

    #[test]
    fn decodes_fields_and_line_endings() {
        let ev = all(SAMPLE, &[]);
        assert_eq!(
            ev,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "x\ny".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
    }

    #[test]
    fn oversized_line_is_an_error() {
        let mut d = SseDecoder::with_limit(8);
        d.push(b"data: 0123456789");
        assert!(d.next_event().is_err());
    }

    #[test]
    fn a_long_line_in_small_pieces_is_scanned_once() {
        // Rescanning the whole buffer on every push made this quadratic: minutes in debug
        // builds for a 16 MiB line, during which the stream's deadlines could not fire.
        let mut d = SseDecoder::with_limit(4 * 1024 * 1024);
        d.push(b"data: ");
        let piece = [b'x'; 1024];
        let mut failed = false;
        for _ in 0..5 * 1024 {
            d.push(&piece);
            match d.next_event() {
                Ok(None) => {}
                Ok(Some(e)) => panic!("no event yet: {e:?}"),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the line is over the limit");
        let mut d = SseDecoder::new();
        d.push(b"data: ");
        for _ in 0..1024 {
            d.push(&piece);
            assert_eq!(d.next_event().unwrap(), None);
        }
        d.push(b"\n\n");
        assert_eq!(d.next_event().unwrap().unwrap().data.len(), 1024 * 1024);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_split_gives_the_same_events(mut splits in proptest::collection::vec(0usize..SAMPLE.len(), 0..8)) {
            splits.sort_unstable();
            prop_assert_eq!(all(SAMPLE, &splits), all(SAMPLE, &[]));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut d = SseDecoder::with_limit(64);
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_event() {}
        }
    }
}
