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
pub fn parse<S: Sink>(reader: impl Read, mut sink: S) -> Result<(S, Vec<String>), StreamError> {
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(64 * 1024, reader));
    let mut out = Answer {
        status: None,
        error_type: None,
        error: None,
        warnings: Vec::new(),
        data_seen: false,
    };
    AnswerSeed {
        sink: &mut sink,
        out: &mut out,
    }
    .deserialize(&mut de)
    .map_err(|e| StreamError::Malformed(e.to_string()))?;
    de.end()
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

struct Answer {
    status: Option<String>,
    error_type: Option<String>,
    error: Option<String>,
    warnings: Vec<String>,
    data_seen: bool,
}

struct AnswerSeed<'a, S> {
    sink: &'a mut S,
    out: &'a mut Answer,
}

impl<'de, S: Sink> DeserializeSeed<'de> for AnswerSeed<'_, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for AnswerSeed<'_, S> {
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
                    map.next_value_seed(DataSeed {
                        sink: &mut *self.sink,
                    })?;
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

struct DataSeed<'a, S> {
    sink: &'a mut S,
}

impl<'de, S: Sink> DeserializeSeed<'de> for DataSeed<'_, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for DataSeed<'_, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a \"data\" object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut scratch = SeriesScratch::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "result" => map.next_value_seed(ResultSeed {
                    sink: &mut *self.sink,
                    scratch: &mut scratch,
                })?,
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

struct ResultSeed<'a, S> {
    sink: &'a mut S,
    scratch: &'a mut SeriesScratch,
}

impl<'de, S: Sink> DeserializeSeed<'de> for ResultSeed<'_, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for ResultSeed<'_, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of series")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(SeriesSeed {
                scratch: &mut *self.scratch,
            })?
            .is_some()
        {
            self.sink.series(&self.scratch.labels, &self.scratch.points);
        }
        Ok(())
    }
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

    #[derive(Default)]
    struct Collect(Vec<(HashMap<String, String>, Vec<(i64, f64)>)>);
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
