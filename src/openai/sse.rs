//! Server-sent events: an incremental decoder that works on bytes as they arrive (any split of
//! the input gives the same events) and the framing of outgoing events (the edge frames chunks
//! with [`ChatCompletionChunk::to_sse_event`](crate::openai::ChatCompletionChunk::to_sse_event),
//! which writes the JSON in place).

use bytes::{Bytes, BytesMut};

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
///
/// Received bytes are appended to one buffer; lines are read in place (found with `memchr2`)
/// and the consumed prefix is dropped on the next [`push`](Self::push), so a stream of whole
/// events costs one copy into the buffer and one into each event's `data`.
#[derive(Debug)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` before this index are consumed.
    start: usize,
    /// Index of `buf` from which to look for the next line end (the bytes from `start` up to
    /// here hold none, so a long line is scanned once, not again on every push).
    scanned: usize,
    pending: Pending,
    skip_lf: bool,
    max_line: usize,
    max_event: usize,
}

/// The event being assembled.
#[derive(Debug, Default)]
struct Pending {
    event: Option<String>,
    data: String,
    has_data: bool,
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
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            pending: Pending::default(),
            skip_lf: false,
            max_line: max,
            max_event: max,
        }
    }

    /// Appends bytes received from the upstream.
    pub fn push(&mut self, bytes: &[u8]) {
        let mut bytes = bytes;
        if self.skip_lf {
            if let Some((&first, rest)) = bytes.split_first() {
                if first == b'\n' {
                    bytes = rest;
                }
                self.skip_lf = false;
            }
        }
        if self.start > 0 {
            // Drop the consumed lines: usually all of the buffer, else a partial line.
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, Error> {
        loop {
            let unscanned = self.buf.get(self.scanned..).unwrap_or_default();
            let Some(end) = memchr::memchr2(b'\n', b'\r', unscanned).map(|p| p + self.scanned)
            else {
                self.scanned = self.buf.len();
                if self.buf.len() - self.start > self.max_line {
                    return Err(Error::upstream(
                        "upstream stream line exceeds the size limit",
                    ));
                }
                return Ok(None);
            };
            let line = self.buf.get(self.start..end).unwrap_or_default();
            let mut next = end + 1;
            if self.buf.get(end) == Some(&b'\r') {
                match self.buf.get(next) {
                    None => self.skip_lf = true,
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                }
            }
            self.start = next;
            self.scanned = next;
            if let Some(ev) = self.pending.line(line, self.max_event)? {
                return Ok(Some(ev));
            }
        }
    }

    /// Whether a partial line or event is buffered (the stream ended mid-event).
    pub fn has_partial(&self) -> bool {
        self.start < self.buf.len() || self.pending.has_data
    }
}

impl Pending {
    /// Applies one line (without its line end); a blank line dispatches the event.
    fn line(&mut self, line: &[u8], max_event: usize) -> Result<Option<SseEvent>, Error> {
        let (name, value) = if let Some(v) = line.strip_prefix(b"data:") {
            // The common case first (and "data" holds no colon, so this is the same split).
            (&b"data"[..], v)
        } else {
            match line.first() {
                None => return Ok(self.dispatch()),
                Some(b':') => return Ok(None),
                Some(_) => {}
            }
            match memchr::memchr(b':', line) {
                Some(i) => (
                    line.get(..i).unwrap_or_default(),
                    line.get(i + 1..).unwrap_or_default(),
                ),
                None => (line, &b""[..]),
            }
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let value = super::json::utf8(value)
            .ok_or_else(|| Error::upstream("upstream stream is not valid UTF-8"))?;
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > max_event {
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

    /// The blank line: the event, if it has data (else the `event:` field is forgotten).
    fn dispatch(&mut self) -> Option<SseEvent> {
        if !self.has_data {
            self.event = None;
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event: self.event.take(),
            data: std::mem::take(&mut self.data),
        })
    }
}

/// Encodes one `data:` event carrying `json` (a copy of it; to render a chunk, prefer
/// [`ChatCompletionChunk::to_sse_event`](crate::openai::ChatCompletionChunk::to_sse_event)).
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

    #[test]
    fn cr_at_the_end_of_a_push_and_lf_at_the_start_of_the_next() {
        let mut d = SseDecoder::new();
        d.push(b"data: a\r");
        assert_eq!(d.next_event().unwrap(), None);
        // The `\n` belongs to the `\r` before it: one line end, then a blank line.
        d.push(b"\n\r");
        assert_eq!(d.next_event().unwrap().unwrap().data, "a");
        d.push(b"\ndata: b\n\n");
        assert_eq!(d.next_event().unwrap().unwrap().data, "b");
        assert!(!d.has_partial());
    }

    #[test]
    fn fields_values_and_errors() {
        let ev = all(b"data\ndata:\ndata:  two spaces\nevent:e\nid\n:x\n\n", &[]);
        assert_eq!(
            ev,
            vec![SseEvent {
                event: Some("e".into()),
                data: "\n\n two spaces".into()
            }]
        );
        let mut d = SseDecoder::new();
        d.push(b"data: \xff\n\n");
        assert!(d.next_event().is_err());
        let mut d = SseDecoder::with_limit(8);
        d.push(b"data: 01234\ndata: 5678\n\n");
        assert!(d.next_event().is_err(), "the event is over the limit");
        let mut d = SseDecoder::new();
        d.push(b"data: x\n\ndata: partial");
        assert_eq!(d.next_event().unwrap().unwrap().data, "x");
        assert_eq!(d.next_event().unwrap(), None);
        assert!(d.has_partial());
    }

    /// The decoder before it read lines in place (`Bytes` split per line, a byte loop to find
    /// line ends): the new one must behave the same on every input and every split, errors
    /// included.
    struct Reference {
        buf: BytesMut,
        event: Option<String>,
        data: String,
        has_data: bool,
        skip_lf: bool,
        scanned: usize,
        max: usize,
    }

    impl Reference {
        fn new(max: usize) -> Self {
            Self {
                buf: BytesMut::new(),
                event: None,
                data: String::new(),
                has_data: false,
                skip_lf: false,
                scanned: 0,
                max,
            }
        }

        fn push(&mut self, bytes: &[u8]) {
            let mut bytes = bytes;
            if self.skip_lf && !bytes.is_empty() {
                if bytes[0] == b'\n' {
                    bytes = &bytes[1..];
                }
                self.skip_lf = false;
            }
            self.buf.extend_from_slice(bytes);
        }

        fn next_event(&mut self) -> Result<Option<SseEvent>, ()> {
            use bytes::Buf;
            loop {
                let found = self.buf[self.scanned..]
                    .iter()
                    .position(|&b| b == b'\n' || b == b'\r');
                let Some(pos) = found.map(|p| p + self.scanned) else {
                    self.scanned = self.buf.len();
                    if self.buf.len() > self.max {
                        return Err(());
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

        fn line(&mut self, line: &Bytes) -> Result<Option<SseEvent>, ()> {
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
            let value = std::str::from_utf8(value).map_err(|_| ())?;
            match name {
                b"data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                    if self.data.len() > self.max {
                        return Err(());
                    }
                }
                b"event" => self.event = Some(value.to_owned()),
                _ => {}
            }
            Ok(None)
        }
    }

    /// The decoder and the reference model, as the trace sees them.
    trait Decode {
        fn feed(&mut self, bytes: &[u8]);
        fn next(&mut self) -> Result<Option<SseEvent>, ()>;
        fn partial(&self) -> bool;
    }

    impl Decode for SseDecoder {
        fn feed(&mut self, bytes: &[u8]) {
            self.push(bytes);
        }
        fn next(&mut self) -> Result<Option<SseEvent>, ()> {
            self.next_event().map_err(|_| ())
        }
        fn partial(&self) -> bool {
            self.has_partial()
        }
    }

    impl Decode for Reference {
        fn feed(&mut self, bytes: &[u8]) {
            self.push(bytes);
        }
        fn next(&mut self) -> Result<Option<SseEvent>, ()> {
            self.next_event()
        }
        fn partial(&self) -> bool {
            !self.buf.is_empty() || self.has_data
        }
    }

    /// What decoder `d` gives for `input` pushed in the pieces `splits` cut: after every push,
    /// the events until `None` or an error (which ends the run), and `has_partial` at the end.
    fn trace(
        mut d: impl Decode,
        input: &[u8],
        splits: &[usize],
    ) -> (Vec<Result<SseEvent, ()>>, bool) {
        let mut out = Vec::new();
        let mut last = 0;
        for &s in splits.iter().chain(std::iter::once(&input.len())) {
            let s = s.clamp(last, input.len());
            d.feed(&input[last..s]);
            last = s;
            loop {
                match d.next() {
                    Ok(Some(e)) => out.push(Ok(e)),
                    Ok(None) => break,
                    Err(()) => {
                        out.push(Err(()));
                        return (out, d.partial());
                    }
                }
            }
        }
        (out, d.partial())
    }

    /// Streams made of the pieces that matter to the line and field rules.
    fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(&b"data:"[..]),
            Just(&b"data: "[..]),
            Just(&b"data"[..]),
            Just(&b"event:"[..]),
            Just(&b"event: "[..]),
            Just(&b"id: 1"[..]),
            Just(&b":"[..]),
            Just(&b": c"[..]),
            Just(&b" "[..]),
            Just(&b"\n"[..]),
            Just(&b"\r"[..]),
            Just(&b"\r\n"[..]),
            Just(&b"\n\n"[..]),
            Just(&b"x"[..]),
            Just(&b"{\"a\":1}"[..]),
            Just("\u{e9}".as_bytes()),
            Just(&b"\xff"[..]),
            Just(&b"[DONE]"[..]),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_split_gives_the_same_events(mut splits in proptest::collection::vec(0usize..SAMPLE.len(), 0..8)) {
            splits.sort_unstable();
            prop_assert_eq!(all(SAMPLE, &splits), all(SAMPLE, &[]));
        }

        #[test]
        fn behaves_as_the_reference(
            input in sse_bytes(),
            mut splits in proptest::collection::vec(0usize..200, 0..8),
            max in prop_oneof![Just(usize::MAX), 4usize..40],
        ) {
            splits.sort_unstable();
            prop_assert_eq!(
                trace(SseDecoder::with_limit(max), &input, &splits),
                trace(Reference::new(max), &input, &splits),
                "{:?}", String::from_utf8_lossy(&input)
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut d = SseDecoder::with_limit(64);
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_event() {}
        }
    }
}
