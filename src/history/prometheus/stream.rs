//! Prometheus HTTP API answers parsed as a stream: each series is handed to a [`Sink`] as soon
//! as it is read, so an answer of tens of megabytes is never held in memory, neither as text nor
//! as a parsed tree (prometheus-http-query reads the whole body and builds every series first;
//! its request building and client are still used, with `post_raw`).
//!
//! The body is pumped chunk by chunk from the async HTTP response into a bounded channel; a
//! blocking task reads it through [`std::io::Read`] with serde_json, driving a
//! `DeserializeSeed` that knows the answer's shape (`{"status", "data": {"resultType",
//! "result": [{"metric": {...}, "value"|"values": ...}]}, "errorType", "error"}`).

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Receives the series of an answer, one at a time. `points` are (unix seconds, value); an
/// instant vector's series have one point.
pub trait Sink: Send + 'static {
    fn series(&mut self, labels: &HashMap<String, String>, points: &[(i64, f64)]);
}

/// What went wrong reading an answer.
#[derive(Debug)]
pub enum StreamError {
    /// Prometheus answered `"status": "error"`.
    Prometheus { kind: String, message: String },
    /// The body is not a Prometheus API answer.
    Malformed(String),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Prometheus { kind, message } => write!(f, "{kind}: {message}"),
            StreamError::Malformed(m) => write!(f, "not a Prometheus API answer (JSON): {m}"),
        }
    }
}

/// Parses one answer from `reader` into `sink`; returns the sink and the answer's warnings.
///
/// The bytes are split as they arrive: each element of `data.result` (one series) is cut out
/// and parsed on its own with serde_json from a slice (several times faster than parsing the
/// whole stream through `io::Read`), and what is left (status, error, warnings, result type) is
/// parsed at the end as a small skeleton. Memory: one series at a time.
pub fn parse<S: Sink>(mut reader: impl Read, mut sink: S) -> Result<(S, Vec<String>), StreamError> {
    let mut splitter = Splitter::default();
    let mut scratch = SeriesScratch::default();
    // Large reads: nearly every series then lies whole inside one, and is parsed in place.
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let mut n = 0;
        while n < buf.len() {
            let got = reader
                .read(&mut buf[n..])
                .map_err(|e| StreamError::Malformed(format!("reading the answer: {e}")))?;
            if got == 0 {
                break;
            }
            n += got;
        }
        if n == 0 {
            break;
        }
        splitter.feed(&buf[..n], &mut |text: &[u8], whole: bool| {
            if whole {
                let end = fast_series_prefix(text, &mut scratch);
                if end.is_some() {
                    sink.series(&scratch.labels, &scratch.points);
                }
                return Ok(end);
            }
            if fast_series_prefix(text, &mut scratch) != Some(text.len()) {
                let mut de = serde_json::Deserializer::from_slice(text);
                SeriesSeed {
                    scratch: &mut scratch,
                }
                .deserialize(&mut de)
                .and_then(|()| de.end())
                .map_err(|e| StreamError::Malformed(e.to_string()))?;
            }
            sink.series(&scratch.labels, &scratch.points);
            Ok(None)
        })?;
    }
    if splitter.depth() != 0 || splitter.capturing() {
        return Err(StreamError::Malformed("the answer ends early".to_string()));
    }
    let mut out = Answer {
        status: None,
        error_type: None,
        error: None,
        warnings: Vec::new(),
        data_seen: false,
    };
    let mut de = serde_json::Deserializer::from_slice(&splitter.skeleton);
    AnswerSeed { out: &mut out }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| StreamError::Malformed(e.to_string()))?;
    match out.status.as_deref() {
        Some("success") if out.data_seen => Ok((sink, out.warnings)),
        Some("success") => Err(StreamError::Malformed("no \"data\"".to_string())),
        Some("error") => Err(StreamError::Prometheus {
            kind: out.error_type.unwrap_or_else(|| "error".to_string()),
            message: out.error.unwrap_or_default(),
        }),
        Some(other) => Err(StreamError::Malformed(format!("status {other:?}"))),
        None => Err(StreamError::Malformed("no \"status\"".to_string())),
    }
}

/// One open JSON container while splitting.
#[derive(Debug)]
enum Frame {
    Object { key: Vec<u8>, want_key: bool },
    Array { result: bool },
}

/// Called with a whole series cut out (`false`: parse it, answer None), or with the bytes from
/// a series' start on (`true`: the length of the series when it lies whole in them and was
/// parsed in place, else None: the splitter then cuts it out).
type OnSeries<'a> = dyn FnMut(&[u8], bool) -> Result<Option<usize>, StreamError> + 'a;

/// Bytes read at a time (a series of 2,000 points is about 50 kB).
const READ_BYTES: usize = 1 << 20;

/// What a byte is to the splitter inside a series (0: nothing).
const QUOTE: u8 = 1;
const BACKSLASH: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const BYTE_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'"' as usize] = QUOTE;
    t[b'\\' as usize] = BACKSLASH;
    t[b'{' as usize] = OPEN;
    t[b'[' as usize] = OPEN;
    t[b'}' as usize] = CLOSE;
    t[b']' as usize] = CLOSE;
    t
};

/// Cuts the elements of `data.result` out of a JSON text fed in pieces.
#[derive(Default)]
struct Splitter {
    stack: Vec<Frame>,
    in_string: bool,
    escape: bool,
    /// Text outside the series (small), with `0` where each series was.
    skeleton: Vec<u8>,
    /// The series being cut, and how many of its brackets are open (0: not in a series).
    capture: Vec<u8>,
    capture_open: usize,
    /// Bytes of the key string being read (outside series).
    key: Option<Vec<u8>>,
}

impl Splitter {
    fn depth(&self) -> usize {
        self.stack.len()
    }

    fn capturing(&self) -> bool {
        self.capture_open > 0
    }

    fn feed(&mut self, bytes: &[u8], on_series: &mut OnSeries<'_>) -> Result<(), StreamError> {
        let mut i = 0;
        while i < bytes.len() {
            if self.capture_open > 0 {
                // Inside a series: copy up to the end of it, tracking strings and nesting. Most
                // bytes are digits: one table lookup each.
                let from = i;
                let (mut open, mut in_string, mut escape) =
                    (self.capture_open, self.in_string, self.escape);
                while i < bytes.len() {
                    let class = BYTE_CLASS[usize::from(bytes[i])];
                    i += 1;
                    if class == 0 {
                        escape = false;
                        continue;
                    }
                    if in_string {
                        if escape {
                            escape = false;
                        } else if class == QUOTE {
                            in_string = false;
                        } else if class == BACKSLASH {
                            escape = true;
                        }
                        continue;
                    }
                    match class {
                        QUOTE => in_string = true,
                        OPEN => open += 1,
                        CLOSE => {
                            open -= 1;
                            if open == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                (self.capture_open, self.in_string, self.escape) = (open, in_string, escape);
                self.capture.extend_from_slice(&bytes[from..i]);
                if open == 0 {
                    on_series(&self.capture, false)?;
                    self.capture.clear();
                    self.skeleton.push(b'0');
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            if self.in_string {
                self.skeleton.push(b);
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if let Some(k) = self.key.take() {
                        if let Some(Frame::Object { key, .. }) = self.stack.last_mut() {
                            *key = k;
                        }
                    }
                    continue;
                }
                if let Some(k) = &mut self.key {
                    k.push(b);
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    self.skeleton.push(b);
                    if let Some(Frame::Object { want_key: true, .. }) = self.stack.last() {
                        self.key = Some(Vec::new());
                    }
                }
                b'{' if matches!(self.stack.last(), Some(Frame::Array { result: true })) => {
                    // A series that lies whole in these bytes in Prometheus' own shape is parsed
                    // in place; else it is cut out byte by byte and parsed when complete.
                    if let Some(len) = on_series(&bytes[i - 1..], true)? {
                        i += len - 1;
                        self.skeleton.push(b'0');
                        continue;
                    }
                    self.capture_open = 1;
                    self.capture.push(b);
                }
                b'{' => {
                    self.skeleton.push(b);
                    self.stack.push(Frame::Object {
                        key: Vec::new(),
                        want_key: true,
                    });
                }
                b'[' => {
                    self.skeleton.push(b);
                    let result = self.stack.len() == 2
                        && matches!(&self.stack[1], Frame::Object { key, .. } if key == b"result")
                        && matches!(&self.stack[0], Frame::Object { key, .. } if key == b"data");
                    self.stack.push(Frame::Array { result });
                }
                b'}' | b']' => {
                    self.skeleton.push(b);
                    if self.stack.pop().is_none() {
                        return Err(StreamError::Malformed("unbalanced brackets".to_string()));
                    }
                }
                b':' => {
                    self.skeleton.push(b);
                    if let Some(Frame::Object { want_key, .. }) = self.stack.last_mut() {
                        *want_key = false;
                    }
                }
                b',' => {
                    self.skeleton.push(b);
                    if let Some(Frame::Object { want_key, .. }) = self.stack.last_mut() {
                        *want_key = true;
                    }
                }
                _ => self.skeleton.push(b),
            }
            if self.skeleton.len() > 16 * 1024 * 1024 {
                return Err(StreamError::Malformed(
                    "more than 16 MiB outside data.result".to_string(),
                ));
            }
        }
        Ok(())
    }
}

struct Answer {
    status: Option<String>,
    error_type: Option<String>,
    error: Option<String>,
    warnings: Vec<String>,
    data_seen: bool,
}

struct AnswerSeed<'a> {
    out: &'a mut Answer,
}

impl<'de> DeserializeSeed<'de> for AnswerSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AnswerSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Prometheus API answer object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "status" => self.out.status = Some(map.next_value()?),
                "errorType" => self.out.error_type = Some(map.next_value()?),
                "error" => self.out.error = Some(map.next_value()?),
                "warnings" => {
                    self.out.warnings = map.next_value::<Option<Vec<String>>>()?.unwrap_or_default()
                }
                "data" => {
                    map.next_value_seed(DataSeed)?;
                    self.out.data_seen = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct DataSeed;

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DataSeed {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a \"data\" object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                // In the skeleton every series is a `0` placeholder: it went to the sink already.
                "result" => {
                    map.next_value::<IgnoredAny>()?;
                }
                "resultType" => {
                    let kind: String = map.next_value()?;
                    if kind != "matrix" && kind != "vector" {
                        return Err(de::Error::custom(format!(
                            "expected a vector or a matrix, got a {kind}"
                        )));
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Buffers reused from one series to the next.
#[derive(Default)]
struct SeriesScratch {
    labels: HashMap<String, String>,
    points: Vec<(i64, f64)>,
}

struct SeriesSeed<'a> {
    scratch: &'a mut SeriesScratch,
}

impl<'de> DeserializeSeed<'de> for SeriesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SeriesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a series object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.scratch.labels.clear();
        self.scratch.points.clear();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "metric" => self.scratch.labels = map.next_value()?,
                "value" => {
                    let p: Point = map.next_value()?;
                    self.scratch.points.push((p.0, p.1));
                }
                "values" => map.next_value_seed(PointsSeed {
                    points: &mut self.scratch.points,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct PointsSeed<'a> {
    points: &'a mut Vec<(i64, f64)>,
}

impl<'de> DeserializeSeed<'de> for PointsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PointsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of [time, \"value\"] points")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(p) = seq.next_element::<Point>()? {
            self.points.push((p.0, p.1));
        }
        Ok(())
    }
}

/// `[unix seconds (float), "value"]`.
struct Point(i64, f64);

impl<'de> serde::Deserialize<'de> for Point {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Point, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Point;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[time, \"value\"]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Point, A::Error> {
                let t: f64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let v: ValueText = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                Ok(Point(t.round() as i64, v.0))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A sample value as Prometheus writes it: a string ("123", "1e+09", "NaN", "+Inf").
struct ValueText(f64);

impl<'de> serde::Deserialize<'de> for ValueText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ValueText, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ValueText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sample value string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ValueText, E> {
                sample_value(s)
                    .map(ValueText)
                    .ok_or_else(|| E::custom(format!("bad sample value {s:?}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ValueText, E> {
                Ok(ValueText(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ValueText, E> {
                Ok(ValueText(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ValueText, E> {
                Ok(ValueText(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

/// One series in the exact shape Prometheus writes it (`{"metric":{"k":"v",...},"values":[[t,
/// "v"],...]}` or `"value":[t,"v"]`, no whitespace, no escapes), parsed in one pass without
/// serde (the peaks answer is tens of megabytes of such points). False for anything else,
/// scratch then undefined: the serde path parses it (and says what is wrong with it).
#[cfg(test)]
fn fast_series(s: &[u8], scratch: &mut SeriesScratch) -> bool {
    fast_series_prefix(s, scratch) == Some(s.len())
}

/// [`fast_series`] of the series at the start of `s`: where it ends, or None when `s` ends
/// before it does or it is in another shape.
fn fast_series_prefix(s: &[u8], scratch: &mut SeriesScratch) -> Option<usize> {
    scratch.labels.clear();
    scratch.points.clear();
    let mut c = Cursor { s, i: 0 };
    if !c.eat(br#"{"metric":{"#) {
        return None;
    }
    if !c.eat(b"}") {
        loop {
            let (Some(k), true, Some(v)) = (c.string(), c.eat(b":"), c.string()) else {
                return None;
            };
            scratch.labels.insert(k.to_string(), v.to_string());
            if c.eat(b"}") {
                break;
            }
            if !c.eat(b",") {
                return None;
            }
        }
    }
    if c.eat(br#","value":"#) {
        let p = c.point()?;
        scratch.points.push(p);
    } else if c.eat(br#","values":["#) {
        if !c.eat(b"]") {
            loop {
                let p = c.point()?;
                scratch.points.push(p);
                if c.eat(b"]") {
                    break;
                }
                if !c.eat(b",") {
                    return None;
                }
            }
        }
    } else {
        return None;
    }
    c.eat(b"}").then_some(c.i)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn eat(&mut self, lit: &[u8]) -> bool {
        let ok = self.s[self.i..].starts_with(lit);
        if ok {
            self.i += lit.len();
        }
        ok
    }

    /// `"text"` without escapes.
    fn string(&mut self) -> Option<&'a str> {
        if !self.eat(b"\"") {
            return None;
        }
        let rest = &self.s[self.i..];
        let end = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[end] != b'"' {
            return None;
        }
        self.i += end + 1;
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// `[time,"value"]`, read as serde reads it ([`Point`]).
    fn point(&mut self) -> Option<(i64, f64)> {
        // Nearly every point is `[<digits>,"<digits>"]`: read in one pass.
        if let Some(p) = self.plain_point() {
            return Some(p);
        }
        self.general_point()
    }

    /// `[<up to 15 digits>,"<up to 15 digits>"]`, else None with the cursor unmoved.
    fn plain_point(&mut self) -> Option<(i64, f64)> {
        let s = self.s;
        let mut i = self.i;
        if s.get(i) != Some(&b'[') {
            return None;
        }
        i += 1;
        let (t, next) = digits_at(s, i)?;
        // JSON has no leading zeros (serde rejects `0600`).
        if next - i > 1 && s[i] == b'0' {
            return None;
        }
        if s.get(next..next + 2) != Some(b",\"".as_slice()) {
            return None;
        }
        let (v, next) = digits_at(s, next + 2)?;
        if s.get(next..next + 2) != Some(b"\"]".as_slice()) {
            return None;
        }
        self.i = next + 2;
        #[allow(clippy::cast_precision_loss)] // < 10^15 < 2^53: exact
        Some((t as i64, v as f64))
    }

    fn general_point(&mut self) -> Option<(i64, f64)> {
        if !self.eat(b"[") {
            return None;
        }
        let rest = &self.s[self.i..];
        let n = rest.iter().position(|&b| b == b',')?;
        // Prometheus writes `1700000000` or `1700000000.5`; anything else goes to serde.
        let t = &rest[..n];
        let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
        // JSON has no leading zeros (serde rejects `0600.5`).
        let int = |d: &[u8]| digits(d) && (d.len() == 1 || d[0] != b'0');
        let plain = match t.iter().position(|&b| b == b'.') {
            None => int(t),
            Some(dot) => int(&t[..dot]) && digits(&t[dot + 1..]),
        };
        if !plain {
            return None;
        }
        let t = number(t)?;
        self.i += n + 1;
        let v = self.string()?;
        if !self.eat(b"]") {
            return None;
        }
        Some((t.round() as i64, sample_value(v)?))
    }
}

/// The 1 to 15 digits at `i` as a number, and where they end.
fn digits_at(s: &[u8], mut i: usize) -> Option<(u64, usize)> {
    let start = i;
    let mut n: u64 = 0;
    while let Some(&d) = s.get(i) {
        if !d.is_ascii_digit() {
            break;
        }
        n = n * 10 + u64::from(d - b'0');
        i += 1;
        if i - start > 15 {
            return None;
        }
    }
    (i > start).then_some((n, i))
}

/// A decimal number: plain digits (up to 15, exact in an f64) read directly, anything else by
/// `str::parse` (as serde_json reads them; None where that fails).
fn number(b: &[u8]) -> Option<f64> {
    if let Some((n, _)) = digits_at(b, 0).filter(|&(_, end)| end == b.len()) {
        #[allow(clippy::cast_precision_loss)] // < 10^15 < 2^53: exact
        return Some(n as f64);
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A sample value as Prometheus writes it in its string ("123", "1e+09", "NaN", "+Inf"); None
/// for anything else. Both paths read values with it.
fn sample_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => number(s.as_bytes()),
    }
}

/// A `Read` over chunks sent from the async side; a closed channel is the end of the body, an
/// `Err` chunk a broken transfer.
pub struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>,
    current: bytes::Bytes,
}

impl ChunkReader {
    pub fn new(rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>) -> ChunkReader {
        ChunkReader {
            rx,
            current: bytes::Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Series = (HashMap<String, String>, Vec<(i64, f64)>);
    #[derive(Default)]
    struct Collect(Vec<Series>);
    impl Sink for Collect {
        fn series(&mut self, labels: &HashMap<String, String>, points: &[(i64, f64)]) {
            self.0.push((labels.clone(), points.to_vec()));
        }
    }

    /// The serde path alone.
    fn by_serde(series: &[u8]) -> Option<Series> {
        let mut scratch = SeriesScratch::default();
        let mut de = serde_json::Deserializer::from_slice(series);
        SeriesSeed {
            scratch: &mut scratch,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .ok()?;
        Some((scratch.labels, scratch.points))
    }

    fn same_points(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.0 == y.0 && (x.1 == y.1 || (x.1.is_nan() && y.1.is_nan())))
    }

    /// A series as Prometheus writes it.
    fn canonical(
        labels: &HashMap<String, String>,
        points: &[(String, String)],
        vector: bool,
    ) -> Vec<u8> {
        let pts: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("[{t},\"{v}\"]"))
            .collect();
        let body = if vector {
            format!(r#""value":{}"#, pts[0])
        } else {
            format!(r#""values":[{}]"#, pts.join(","))
        };
        format!(
            r#"{{"metric":{},{body}}}"#,
            serde_json::to_string(labels).unwrap()
        )
        .into_bytes()
    }

    fn value_text() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u64..1u64 << 40).prop_map(|v| v.to_string()),
            any::<u64>().prop_map(|v| v.to_string()),
            any::<f64>().prop_map(|v| v.to_string()),
            (0.0f64..1e12).prop_map(|v| format!("{v:e}")),
            Just("NaN".to_string()),
            Just("+Inf".to_string()),
            Just("-Inf".to_string()),
            Just("1e+09".to_string()),
        ]
    }

    fn time_text() -> impl Strategy<Value = String> {
        prop_oneof![
            (1_600_000_000i64..1_900_000_000).prop_map(|t| t.to_string()),
            (1_600_000_000i64..1_900_000_000, 0u32..1000).prop_map(|(t, f)| format!("{t}.{f}")),
        ]
    }

    use proptest::prelude::*;

    proptest! {
        /// The fast path reads what serde reads, and takes every series Prometheus writes
        /// without escapes.
        #[test]
        fn fast_path_equals_serde(
            labels in proptest::collection::hash_map("[a-z_]{1,8}", "[ -~é]{0,12}", 0..5),
            points in proptest::collection::vec((time_text(), value_text()), 1..20),
            vector: bool,
        ) {
            let text = canonical(&labels, &points, vector);
            let want = by_serde(&text).unwrap();
            let mut scratch = SeriesScratch::default();
            let fast = fast_series(&text, &mut scratch);
            let escapes = labels.iter().any(|(k, v)| format!("{k}{v}").contains(['"', '\\']));
            prop_assert!(fast || escapes, "{}", String::from_utf8_lossy(&text));
            if fast {
                prop_assert_eq!(&scratch.labels, &want.0);
                prop_assert!(same_points(&scratch.points, &want.1));
            }
        }

        /// Whatever the fast path takes of a damaged series, serde takes too, with the same
        /// result: it never accepts what serde would call malformed.
        #[test]
        fn fast_path_accepts_nothing_serde_rejects(
            labels in proptest::collection::hash_map("[a-z]{1,3}", "[a-z0-9]{0,3}", 0..3),
            points in proptest::collection::vec((time_text(), value_text()), 1..4),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
                b" ,:[]{}\"\\0.-+eEnNI\x01".to_vec())), 1..3),
            delete: bool,
        ) {
            let mut text = canonical(&labels, &points, false);
            for (at, b) in edits {
                let i = at.index(text.len());
                if delete { text.remove(i); } else { text[i] = b; }
            }
            let mut scratch = SeriesScratch::default();
            if fast_series(&text, &mut scratch) {
                let want = by_serde(&text);
                prop_assert!(want.is_some(), "fast took what serde rejects: {}", String::from_utf8_lossy(&text));
                let want = want.unwrap();
                prop_assert_eq!(&scratch.labels, &want.0);
                prop_assert!(same_points(&scratch.points, &want.1));
            }
        }
    }

    /// Reads in pieces of at most `max` bytes.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// An answer of several read buffers: series parsed in place, series cut across reads, and
    /// series in other shapes (escapes, other key order) give what serde alone gives.
    #[test]
    fn series_across_reads_and_in_any_shape() {
        let mut result = Vec::new();
        let mut want = Vec::new();
        for k in 0..300 {
            let mut labels = HashMap::new();
            labels.insert("pod".to_string(), format!("p{k}"));
            if k % 7 == 0 {
                labels.insert("odd".to_string(), "a \"quoted\" \\ value".to_string());
            }
            let points: Vec<(String, String)> = (0..(500 + k * 7))
                .map(|i| {
                    (
                        format!("{}", 1_700_000_000 + i * 300),
                        format!("{}", 1_000_000 + i * k),
                    )
                })
                .collect();
            let text = if k % 11 == 0 {
                // Keys the other way round (and a space): not Prometheus' shape, still valid.
                let pts: Vec<String> = points
                    .iter()
                    .map(|(t, v)| format!("[{t},\"{v}\"]"))
                    .collect();
                format!(
                    r#"{{"values": [{}],"metric":{}}}"#,
                    pts.join(","),
                    serde_json::to_string(&labels).unwrap()
                )
                .into_bytes()
            } else {
                canonical(&labels, &points, false)
            };
            want.push(by_serde(&text).unwrap());
            result.push(String::from_utf8(text).unwrap());
        }
        let answer = format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{}]}}}}"#,
            result.join(",")
        );
        assert!(answer.len() > 3 * READ_BYTES, "{}", answer.len());
        for piece in [answer.len(), 65_536, 4_093] {
            let (got, _) = parse(Trickle(answer.as_bytes(), piece), Collect::default()).unwrap();
            assert_eq!(got.0.len(), want.len());
            for (g, w) in got.0.iter().zip(&want) {
                assert_eq!(g.0, w.0);
                assert!(same_points(&g.1, &w.1));
            }
        }
    }

    #[test]
    fn matrix_vector_error_and_garbage() {
        let m = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pod":"a"},"values":[[1700000000,"1"],[1700000300.5,"NaN"]]},{"values":[[1,"+Inf"]],"metric":{}}]},"warnings":["w"]}"#;
        let (c, w) = parse(&m[..], Collect::default()).unwrap();
        assert_eq!(w, vec!["w".to_string()]);
        assert_eq!(c.0.len(), 2);
        assert_eq!(c.0[0].0["pod"], "a");
        assert_eq!(c.0[0].1[0], (1_700_000_000, 1.0));
        assert_eq!(c.0[0].1[1].0, 1_700_000_301);
        assert!(c.0[0].1[1].1.is_nan());
        assert_eq!(c.0[1].1, vec![(1, f64::INFINITY)]);

        let v = br#"{"data":{"result":[{"metric":{"x":"y"},"value":[5,"2.5e+08"]}],"resultType":"vector"},"status":"success"}"#;
        let (c, _) = parse(&v[..], Collect::default()).unwrap();
        assert_eq!(c.0[0].1, vec![(5, 2.5e8)]);

        let e = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let err = parse(&e[..], Collect::default()).err().unwrap();
        assert_eq!(err.to_string(), "bad_data: parse error at char 3");

        for bad in [
            &br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":"#[..],
            br#"not json"#,
            br#"{"status":"success"}"#,
            br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"x"]}]}}"#,
        ] {
            let err = parse(bad, Collect::default()).err().unwrap();
            assert!(matches!(err, StreamError::Malformed(_)), "{err}");
        }
    }
}
