//! The per-request access log: one fixed-format line per request, written by a thread of its
//! own.
//!
//! The request's task only fills an `Entry` (numbers, `Arc` clones) and offers it to a
//! bounded channel; it never formats, allocates a line or waits on the output. A dedicated
//! writer thread formats the entries into one reused buffer (integers with `itoa`, the cost as
//! the exact decimal of its integer picodollars) and writes each batch with one `write` call.
//! When the channel is full (the output cannot keep up) the entry is dropped and counted
//! ([`AccessLog::dropped`] and the `switchboard_access_log_dropped_total` counter), so a slow
//! terminal or pipe never slows the gateway.
//!
//! The line carries the fields of the `gen_ai.chat` span, under the same (OpenTelemetry GenAI)
//! names, plus the timings. Strings that come from clients (`gen_ai.request.model`, a
//! pass-through `gen_ai.response.model`, `request_id`) are quoted and escaped: in the text
//! format `"` and `\` are backslash-escaped and control characters written as Rust escapes
//! (`\n`, `\u{1b}`), as [`Error`](crate::Error)'s messages are; in JSON as JSON escapes. So a
//! client cannot forge a line or a field, nor send terminal escapes to whoever reads the log.
//!
//! Text (like `tracing-subscriber`'s default format):
//!
//! ```text
//! 2025-01-02T03:04:05.678901Z  INFO switchboard::access: request finished gen_ai.operation.name="chat" gen_ai.request.model="fast" gen_ai.provider.name="openai" gen_ai.response.model="gpt-4o-mini" gen_ai.usage.input_tokens=12 gen_ai.usage.output_tokens=3 cost_usd=0.0000036 cache="MISS" request_id="4f2a…" stream=false latency_ms=210 ttft_ms=210 usage_estimated=false
//! ```
//!
//! JSON (one object a line): the same fields, `timestamp`, `level`, `target`, `message` first.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use crate::ext::CacheStatus;

/// Entries the channel holds by default before new ones are dropped.
pub const DEFAULT_CAPACITY: usize = 8_192;

/// How long the writer waits after a batch before taking the next: lines are at most this
/// late, and the writer wakes at most this often.
const BATCH_PAUSE: Duration = Duration::from_millis(10);

/// The line format of an [`AccessLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AccessLogFormat {
    /// Human-readable `key=value` pairs, like `tracing-subscriber`'s default format.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// A handle to the access-log writer thread; cheap to clone. See the [module docs](self).
/// The thread ends once every handle is dropped and the queued lines are written.
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<Entry>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Lines to standard output (where `tracing-subscriber`'s fmt layer writes too).
    pub fn stdout(format: AccessLogFormat) -> std::io::Result<Self> {
        Self::to_writer(std::io::stdout(), format, DEFAULT_CAPACITY)
    }

    /// Lines to `out`, with room for `capacity` entries waiting to be written (at least 1).
    pub fn to_writer(
        out: impl Write + Send + 'static,
        format: AccessLogFormat,
        capacity: usize,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        std::thread::Builder::new()
            .name("switchboard-access-log".into())
            .spawn(move || write_loop(&rx, out, format))?;
        Ok(Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Entries dropped because the channel was full (or the writer gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues one entry, never waiting: a full channel drops it (and counts it).
    pub(crate) fn send(&self, entry: Entry) {
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("switchboard_access_log_dropped_total").increment(1);
            }
        }
    }
}

/// What one line says; filled on the request's task, formatted on the writer thread.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    pub(crate) time: Option<SystemTime>,
    pub(crate) request_model: Option<Box<str>>,
    pub(crate) provider: Option<Arc<str>>,
    pub(crate) response_model: Option<Arc<str>>,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
    pub(crate) cost_usd: Option<crate::cost::Picodollars>,
    pub(crate) cache: Option<CacheStatus>,
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) stream: bool,
    pub(crate) latency: Duration,
    pub(crate) ttft: Option<Duration>,
    pub(crate) usage_estimated: bool,
    pub(crate) error: Option<&'static str>,
}

fn write_loop(rx: &Receiver<Entry>, mut out: impl Write, format: AccessLogFormat) {
    let mut buf = Vec::with_capacity(16 * 1024);
    // Blocks for the first entry of a batch, then takes whatever else is queued.
    while let Ok(first) = rx.recv() {
        format_entry(&mut buf, &first, format);
        let mut drained = false;
        while buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(e) => format_entry(&mut buf, &e, format),
                Err(_) => {
                    drained = true;
                    break;
                }
            }
        }
        // A failing output loses the batch; the gateway keeps serving.
        let _ = out.write_all(&buf).and_then(|()| out.flush());
        buf.clear();
        // Lets lines gather: under load one wake-up and one `write` serve many requests
        // (a request's `try_send` wakes nobody while the writer is not waiting). A batch cut
        // at its size cap goes on at once: pausing after it would cap the writer at 64 KiB
        // per pause (some 16 000 lines a second) and drop lines under heavier load.
        if drained {
            std::thread::sleep(BATCH_PAUSE);
        }
    }
}

/// The bytes before a field's value: ` key=` (text) or `,"key":` (JSON).
macro_rules! key {
    ($json:expr, $k:literal) => {
        if $json {
            concat!(",\"", $k, "\":").as_bytes()
        } else {
            concat!(" ", $k, "=").as_bytes()
        }
    };
}

/// Appends one line (with its `\n`) for `e` to `buf`.
pub(crate) fn format_entry(buf: &mut Vec<u8>, e: &Entry, format: AccessLogFormat) {
    let json = format == AccessLogFormat::Json;
    buf.reserve(512);
    let time = e.time.unwrap_or_else(SystemTime::now);
    if json {
        buf.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(buf, time);
        buf.extend_from_slice(
            b"\",\"level\":\"INFO\",\"target\":\"switchboard::access\",\"message\":\"request finished\",\"gen_ai.operation.name\":\"chat\"",
        );
    } else {
        timestamp(buf, time);
        buf.extend_from_slice(
            b"  INFO switchboard::access: request finished gen_ai.operation.name=\"chat\"",
        );
    }
    let s = |buf: &mut Vec<u8>, key: &[u8], v: Option<&str>| {
        if let Some(v) = v {
            buf.extend_from_slice(key);
            buf.push(b'"');
            if json {
                escape_json(buf, v);
            } else {
                escape_text(buf, v);
            }
            buf.push(b'"');
        }
    };
    let n = |buf: &mut Vec<u8>, key: &[u8], v: Option<u64>| {
        if let Some(v) = v {
            buf.extend_from_slice(key);
            buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        }
    };
    let b = |buf: &mut Vec<u8>, key: &[u8], v: bool| {
        buf.extend_from_slice(key);
        buf.extend_from_slice(if v { b"true" } else { b"false" });
    };
    s(
        buf,
        key!(json, "gen_ai.request.model"),
        e.request_model.as_deref(),
    );
    s(
        buf,
        key!(json, "gen_ai.provider.name"),
        e.provider.as_deref(),
    );
    s(
        buf,
        key!(json, "gen_ai.response.model"),
        e.response_model.as_deref(),
    );
    n(buf, key!(json, "gen_ai.usage.input_tokens"), e.input_tokens);
    n(
        buf,
        key!(json, "gen_ai.usage.output_tokens"),
        e.output_tokens,
    );
    if let Some(c) = e.cost_usd {
        buf.extend_from_slice(key!(json, "cost_usd"));
        c.write_usd(buf);
    }
    // The gateway's own names need no escaping.
    let known = |buf: &mut Vec<u8>, key: &[u8], v: Option<&'static str>| {
        if let Some(v) = v {
            buf.extend_from_slice(key);
            buf.push(b'"');
            buf.extend_from_slice(v.as_bytes());
            buf.push(b'"');
        }
    };
    known(buf, key!(json, "cache"), e.cache.map(CacheStatus::as_str));
    if let Some(id) = &e.request_id {
        s(
            buf,
            key!(json, "request_id"),
            Some(&String::from_utf8_lossy(id.as_bytes())),
        );
    }
    b(buf, key!(json, "stream"), e.stream);
    n(buf, key!(json, "latency_ms"), Some(millis(e.latency)));
    n(buf, key!(json, "ttft_ms"), e.ttft.map(millis));
    b(buf, key!(json, "usage_estimated"), e.usage_estimated);
    known(buf, key!(json, "error"), e.error);
    if json {
        buf.push(b'}');
    }
    buf.push(b'\n');
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Bytes that need a look in a client string: `"`, `\\`, ASCII controls, and `C2` (the lead
/// byte of the C1 controls U+0080..U+009F).
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[0x7f] = true;
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[0xc2] = true;
    t
};

/// `"` and `\` backslash-escaped, control characters as Rust escapes (`\n`, `\u{1b}`).
fn escape_text(buf: &mut Vec<u8>, s: &str) {
    // Fast path: no `"`, `\`, ASCII control or C1 control (U+0080..U+009F, UTF-8 `C2 xx`).
    if !s.bytes().any(|b| SPECIAL[usize::from(b)]) {
        buf.extend_from_slice(s.as_bytes());
        return;
    }
    let mut rest = s;
    while let Some(at) = rest.find(|c: char| c == '"' || c == '\\' || c.is_control()) {
        buf.extend_from_slice(&rest.as_bytes()[..at]);
        let c = rest[at..].chars().next().unwrap_or('\0');
        match c {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            c => {
                let mut tmp = [0u8; 16];
                let mut n = 0;
                for e in c.escape_default() {
                    n += e.encode_utf8(&mut tmp[n..]).len();
                }
                buf.extend_from_slice(&tmp[..n]);
            }
        }
        rest = &rest[at + c.len_utf8()..];
    }
    buf.extend_from_slice(rest.as_bytes());
}

/// A JSON string's contents: `"`, `\` and control characters escaped.
pub(crate) fn escape_json(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(b >> 4)]);
            buf.push(HEX[usize::from(b & 0xf)]);
        } else {
            buf.extend_from_slice(esc);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

fn digits(buf: &mut Vec<u8>, v: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut v = v;
    for slot in tmp[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    buf.extend_from_slice(&tmp[..width]);
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second.
fn date_time(secs: u64) -> [u8; 19] {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut b = Vec::with_capacity(19);
    digits(&mut b, u64::try_from(year).unwrap_or(0), 4);
    b.push(b'-');
    digits(&mut b, month as u64, 2);
    b.push(b'-');
    digits(&mut b, day as u64, 2);
    b.push(b'T');
    digits(&mut b, rem / 3_600, 2);
    b.push(b':');
    digits(&mut b, rem / 60 % 60, 2);
    b.push(b':');
    digits(&mut b, rem % 60, 2);
    let mut out = [b'0'; 19];
    out.copy_from_slice(&b[..19]);
    out
}

/// RFC 3339 UTC with microseconds: `2025-01-02T03:04:05.678901Z`. The date and time of day
/// are formatted once per second (per thread).
fn timestamp(buf: &mut Vec<u8>, t: SystemTime) {
    thread_local! {
        static LAST: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (last, text) = LAST.get();
    let text = if last == secs {
        text
    } else {
        let text = date_time(secs);
        LAST.set((secs, text));
        text
    };
    buf.extend_from_slice(&text);
    buf.push(b'.');
    digits(buf, u64::from(d.subsec_micros()), 6);
    buf.push(b'Z');
}

#[cfg(test)]
mod tests {
    // The writer is a thread, not a task: these tests wait in real time.
    #![allow(clippy::disallowed_types)]
    use super::*;
    use std::sync::Mutex;

    fn entry() -> Entry {
        Entry {
            time: Some(UNIX_EPOCH + Duration::new(1_735_787_045, 678_901_000)),
            request_model: Some("fast".into()),
            provider: Some(Arc::from("openai")),
            response_model: Some(Arc::from("gpt-4o-mini")),
            input_tokens: Some(12),
            output_tokens: Some(3),
            cost_usd: Some(crate::cost::Picodollars(3_600_000)),
            cache: Some(CacheStatus::Miss),
            request_id: Some(HeaderValue::from_static("req-1")),
            stream: false,
            latency: Duration::from_millis(210),
            ttft: Some(Duration::from_millis(200)),
            usage_estimated: false,
            error: None,
        }
    }

    fn line(e: &Entry, f: AccessLogFormat) -> String {
        let mut buf = Vec::new();
        format_entry(&mut buf, e, f);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn text_line() {
        assert_eq!(
            line(&entry(), AccessLogFormat::Text),
            "2025-01-02T03:04:05.678901Z  INFO switchboard::access: request finished \
             gen_ai.operation.name=\"chat\" gen_ai.request.model=\"fast\" \
             gen_ai.provider.name=\"openai\" gen_ai.response.model=\"gpt-4o-mini\" \
             gen_ai.usage.input_tokens=12 gen_ai.usage.output_tokens=3 cost_usd=0.0000036 \
             cache=\"MISS\" request_id=\"req-1\" stream=false latency_ms=210 ttft_ms=200 \
             usage_estimated=false\n"
        );
    }

    #[test]
    fn json_line_parses_with_the_same_fields() {
        let mut e = entry();
        e.error = Some("upstream_timeout");
        e.ttft = None;
        let l = line(&e, AccessLogFormat::Json);
        assert!(l.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["timestamp"], "2025-01-02T03:04:05.678901Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "request finished");
        assert_eq!(v["gen_ai.operation.name"], "chat");
        assert_eq!(v["gen_ai.request.model"], "fast");
        assert_eq!(v["gen_ai.provider.name"], "openai");
        assert_eq!(v["gen_ai.response.model"], "gpt-4o-mini");
        assert_eq!(v["gen_ai.usage.input_tokens"], 12);
        assert_eq!(v["gen_ai.usage.output_tokens"], 3);
        assert_eq!(v["cost_usd"], 0.0000036);
        assert_eq!(v["cache"], "MISS");
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["stream"], false);
        assert_eq!(v["latency_ms"], 210);
        assert!(v.get("ttft_ms").is_none());
        assert_eq!(v["error"], "upstream_timeout");
    }

    #[test]
    fn client_strings_are_escaped() {
        let mut e = entry();
        e.request_model = Some("x\" forged=\"1\n\u{1b}[31m\\".into());
        e.request_id = Some(HeaderValue::from_bytes(b"id\"\xff").unwrap());
        let text = line(&e, AccessLogFormat::Text);
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(!text.contains('\u{1b}'));
        assert!(
            text.contains(r#"gen_ai.request.model="x\" forged=\"1\n\u{1b}[31m\\""#),
            "{text}"
        );
        assert!(text.contains("request_id=\"id\\\"\u{fffd}\""), "{text}");
        let json = line(&e, AccessLogFormat::Json);
        assert_eq!(json.matches('\n').count(), 1);
        assert!(!json.contains('\u{1b}'));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["gen_ai.request.model"], "x\" forged=\"1\n\u{1b}[31m\\");
        assert_eq!(v["request_id"], "id\"\u{fffd}");
    }

    #[test]
    fn timestamps() {
        let mut buf = Vec::new();
        timestamp(&mut buf, UNIX_EPOCH);
        assert_eq!(buf, b"1970-01-01T00:00:00.000000Z");
        buf.clear();
        // 2024-02-29T23:59:59.000001Z
        timestamp(&mut buf, UNIX_EPOCH + Duration::new(1_709_251_199, 1_000));
        assert_eq!(buf, b"2024-02-29T23:59:59.000001Z");
        // The same second again (cached), then the next one.
        buf.clear();
        timestamp(
            &mut buf,
            UNIX_EPOCH + Duration::new(1_709_251_199, 999_999_000),
        );
        assert_eq!(buf, b"2024-02-29T23:59:59.999999Z");
        buf.clear();
        timestamp(&mut buf, UNIX_EPOCH + Duration::new(1_709_251_200, 0));
        assert_eq!(buf, b"2024-03-01T00:00:00.000000Z");
    }

    /// An output that blocks until released, so the channel fills up.
    struct Gate {
        entered: Arc<std::sync::atomic::AtomicBool>,
        open: Arc<Mutex<()>>,
        out: Arc<Mutex<Vec<u8>>>,
    }
    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.entered.store(true, Ordering::SeqCst);
            let _g = self.open.lock().unwrap();
            self.out.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_full_channel_drops_and_counts_without_blocking() {
        let entered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = Arc::new(Mutex::new(()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let closed = open.lock().unwrap();
        let log = AccessLog::to_writer(
            Gate {
                entered: entered.clone(),
                open: open.clone(),
                out: out.clone(),
            },
            AccessLogFormat::Text,
            4,
        )
        .unwrap();
        // The writer takes the first entry and blocks writing it.
        log.send(entry());
        wait_for("writer blocked", || entered.load(Ordering::SeqCst));
        // 4 fit in the channel, the other 6 are dropped at once.
        let started = tokio::time::Instant::now();
        for _ in 0..10 {
            log.send(entry());
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(log.dropped(), 6);
        drop(closed);
        drop(log);
        // The thread writes what was queued, then ends.
        wait_for("5 lines", || {
            out.lock().unwrap().iter().filter(|&&b| b == b'\n').count() == 5
        });
    }
}
