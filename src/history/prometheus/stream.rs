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
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| StreamError::Malformed(format!("reading the answer: {e}")))?;
        if n == 0 {
            break;
        }
        splitter.feed(&buf[..n], &mut |series: &[u8]| {
            let mut de = serde_json::Deserializer::from_slice(series);
            SeriesSeed {
                scratch: &mut scratch,
            }
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| StreamError::Malformed(e.to_string()))?;
            sink.series(&scratch.labels, &scratch.points);
            Ok(())
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

/// Cuts the elements of `data.result` out of a JSON text fed in pieces.
#[derive(Default)]
struct Splitter {
    stack: Vec<Frame>,
    in_string: bool,
    escape: bool,
    /// Text outside the series (small), with `0` where each series was.
    skeleton: Vec<u8>,
    /// The series being cut, and the stack depth it started at.
    capture: Vec<u8>,
    capture_depth: Option<usize>,
    /// Bytes of the key string being read (outside series).
    key: Option<Vec<u8>>,
}

impl Splitter {
    fn depth(&self) -> usize {
        self.stack.len()
    }

    fn capturing(&self) -> bool {
        self.capture_depth.is_some()
    }

    fn feed(
        &mut self,
        bytes: &[u8],
        on_series: &mut dyn FnMut(&[u8]) -> Result<(), StreamError>,
    ) -> Result<(), StreamError> {
        let mut i = 0;
        while i < bytes.len() {
            if let Some(base) = self.capture_depth {
                // Inside a series: copy up to the end of it, tracking strings and nesting.
                let from = i;
                let mut done = false;
                while i < bytes.len() {
                    let b = bytes[i];
                    i += 1;
                    if self.in_string {
                        if self.escape {
                            self.escape = false;
                        } else if b == b'\\' {
                            self.escape = true;
                        } else if b == b'"' {
                            self.in_string = false;
                        }
                        continue;
                    }
                    match b {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.stack.push(Frame::Array { result: false }),
                        b'}' | b']' => {
                            self.stack.pop();
                            if self.stack.len() == base {
                                done = true;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                self.capture.extend_from_slice(&bytes[from..i]);
                if done {
                    self.capture_depth = None;
                    on_series(&self.capture)?;
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
                    self.stack.push(Frame::Array { result: false });
                    self.capture_depth = Some(self.stack.len() - 1);
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
                let v = match s {
                    "+Inf" | "Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    "NaN" => f64::NAN,
                    _ => s
                        .parse()
                        .map_err(|_| E::custom(format!("bad sample value {s:?}")))?,
                };
                Ok(ValueText(v))
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
