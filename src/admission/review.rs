//! `admission.k8s.io/v1` AdmissionReview in and out. The response is built by hand: kube-core
//! serialises the patch as an array of numbers (kube-rs #1781), the apiserver wants base64.

use base64::Engine as _;

pub use super::wire::GroupVersionKind;
use super::wire::{Envelope, RequestFields};
use crate::workload::PartialObject;

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// The object under review: deserialized in the same pass as the review when it is well-formed,
/// else kept as text so that its error can be reported precisely.
#[derive(Debug)]
pub enum ObjectData {
    Parsed(Box<PartialObject>),
    Raw(Box<serde_json::value::RawValue>),
}

impl std::fmt::Debug for PartialObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartialObject")
    }
}

/// The parts of `request` oomguard uses.
#[derive(Debug)]
pub struct ReviewRequest {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub operation: String,
    pub sub_resource: Option<String>,
    pub object: Option<ObjectData>,
    /// The stored object an UPDATE replaces.
    pub old_object: Option<ObjectData>,
    pub dry_run: Option<bool>,
}

/// The request's fields as read (by serde or the scanner), with its objects made [`ObjectData`].
fn into_request<O>(f: RequestFields<O>, object: impl Fn(O) -> ObjectData) -> ReviewRequest {
    ReviewRequest {
        uid: f.uid,
        kind: f.kind,
        namespace: f.namespace,
        name: f.name,
        operation: f.operation,
        sub_resource: f.sub_resource,
        object: f.object.map(&object),
        old_object: f.old_object.map(&object),
        dry_run: f.dry_run,
    }
}

/// A body that is not an AdmissionReview at all: answered with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReview {
    #[error("the body is not UTF-8 JSON: {0}")]
    NotJson(String),
    #[error("the body is JSON but not an object of the AdmissionReview shape")]
    NotAnObject,
    #[error("the AdmissionReview has no request")]
    MissingRequest,
    #[error("the AdmissionReview request is malformed: {0}")]
    BadRequest(String),
}

impl BadReview {
    pub fn metric_label(&self) -> &'static str {
        match self {
            BadReview::NotJson(_) => "not_json",
            BadReview::NotAnObject => "not_object",
            BadReview::MissingRequest => "missing_request",
            BadReview::BadRequest(_) => "bad_request",
        }
    }
}

/// A parsed review. `mismatch` is set when apiVersion/kind are not `admission.k8s.io/v1`
/// AdmissionReview: the request is still answered (allowed, with a warning).
#[derive(Debug)]
pub struct Review {
    pub request: ReviewRequest,
    pub mismatch: Option<String>,
}

fn mismatch(api_version: Option<&str>, kind: Option<&str>) -> Option<String> {
    let (api_version, kind) = (api_version.unwrap_or(""), kind.unwrap_or(""));
    (api_version != API_VERSION || kind != KIND).then(|| {
        format!(
            "got {api_version} {kind}, expected {API_VERSION}; set admissionReviewVersions: [v1]"
        )
    })
}

/// Parses a review. A well-formed one is read in one pass, its object straight into the parts
/// the engine uses; anything else is re-read step by step to say exactly what is wrong.
pub fn parse(body: &[u8]) -> Result<Review, BadReview> {
    // One check of the whole body spares serde_json checking every key and string it reads
    // (a body that is not UTF-8 is read as before, from bytes). A plain review is read by the
    // scanner; what it does not read exactly as serde would, serde reads.
    let fast = match std::str::from_utf8(body) {
        Ok(text) => match super::scan::review(text) {
            Some(e) => Ok(e),
            None => serde_json::from_str::<Envelope<RequestFields<PartialObject>>>(text),
        },
        Err(_) => serde_json::from_slice::<Envelope<RequestFields<PartialObject>>>(body),
    };
    if let Ok(e) = fast {
        if let Some(r) = e.request {
            return Ok(Review {
                mismatch: mismatch(e.api_version.as_deref(), e.kind.as_deref()),
                request: into_request(r, |o| ObjectData::Parsed(Box::new(o))),
            });
        }
    }
    let envelope: Envelope<&serde_json::value::RawValue> =
        serde_json::from_slice(body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => BadReview::NotAnObject,
            _ => BadReview::NotJson(e.to_string()),
        })?;
    let raw = envelope
        .request
        .filter(|r| r.get() != "null")
        .ok_or(BadReview::MissingRequest)?;
    let fields: RequestFields<Box<serde_json::value::RawValue>> =
        serde_json::from_str(raw.get()).map_err(|e| BadReview::BadRequest(e.to_string()))?;
    Ok(Review {
        mismatch: mismatch(envelope.api_version.as_deref(), envelope.kind.as_deref()),
        request: into_request(fields, ObjectData::Raw),
    })
}

/// What to answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub allowed: bool,
    pub patch: Option<json_patch::Patch>,
    pub warnings: Vec<String>,
    /// HTTP-like code and message for a denial.
    pub status: Option<(u16, String)>,
}

impl Answer {
    pub fn allow() -> Answer {
        Answer {
            allowed: true,
            ..Answer::default()
        }
    }
}

/// The AdmissionReview sent back (serialized as is: no intermediate JSON tree).
#[derive(Debug, serde::Serialize)]
pub struct ReviewAnswer<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: ResponseBody<'a>,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseBody<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status<'a>>,
}

#[derive(Debug, serde::Serialize)]
struct Status<'a> {
    code: u16,
    message: &'a str,
    reason: &'static str,
}

/// The AdmissionReview answer for a request uid.
pub fn response<'a>(uid: &'a str, answer: &'a Answer) -> ReviewAnswer<'a> {
    let patch = answer.patch.as_ref().map(|p| {
        // A json_patch::Patch always serializes; an empty array would be harmless anyway.
        let bytes = serde_json::to_vec(p).unwrap_or_else(|_| b"[]".to_vec());
        base64::engine::general_purpose::STANDARD.encode(bytes)
    });
    ReviewAnswer {
        api_version: API_VERSION,
        kind: KIND,
        response: ResponseBody {
            uid,
            allowed: answer.allowed,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: &answer.warnings,
            status: answer.status.as_ref().map(|(code, message)| Status {
                code: *code,
                message,
                reason: status_reason(*code),
            }),
        },
    }
}

/// The AdmissionReview answer for a request uid, as JSON bytes: the same JSON as serializing
/// [`response`], written straight into one buffer (the patch is rendered once and base64-encoded
/// in place, with no string escaping of the base64 text, which needs none).
pub fn response_bytes(uid: &str, answer: &Answer) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(br#"{"apiVersion":""#);
    out.extend_from_slice(API_VERSION.as_bytes());
    out.extend_from_slice(br#"","kind":""#);
    out.extend_from_slice(KIND.as_bytes());
    out.extend_from_slice(br#"","response":{"uid":"#);
    write_str(&mut out, uid);
    out.extend_from_slice(if answer.allowed {
        br#","allowed":true"#
    } else {
        br#","allowed":false"#
    });
    if let Some(patch) = &answer.patch {
        let json = patch_json(patch);
        out.extend_from_slice(br#","patchType":"JSONPatch","patch":""#);
        let engine = &base64::engine::general_purpose::STANDARD;
        let start = out.len();
        out.resize(
            start + base64::encoded_len(json.len(), true).unwrap_or(0),
            0,
        );
        match engine.encode_slice(&json, &mut out[start..]) {
            Ok(n) => out.truncate(start + n),
            // Only if the length above were wrong: encode the slow way.
            Err(_) => {
                out.truncate(start);
                out.extend_from_slice(engine.encode(&json).as_bytes());
            }
        }
        out.push(b'"');
    }
    if !answer.warnings.is_empty() {
        out.extend_from_slice(br#","warnings":["#);
        for (i, w) in answer.warnings.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(&mut out, w);
        }
        out.push(b']');
    }
    if let Some((code, message)) = &answer.status {
        out.extend_from_slice(br#","status":{"code":"#);
        out.extend_from_slice(code.to_string().as_bytes());
        out.extend_from_slice(br#","message":"#);
        write_str(&mut out, message);
        out.extend_from_slice(br#","reason":""#);
        out.extend_from_slice(status_reason(*code).as_bytes());
        out.extend_from_slice(br#""}"#);
    }
    out.extend_from_slice(b"}}");
    out
}

fn status_reason(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        400 => "BadRequest",
        _ => "Invalid",
    }
}

/// A JSON string, escaped as serde_json escapes it.
fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The patch as JSON (what serde_json makes of a `json_patch::Patch`), without going through
/// serde's internally tagged enums for the `add` operations oomguard writes.
pub fn patch_json(patch: &json_patch::Patch) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 160 * patch.0.len());
    out.push(b'[');
    for (i, op) in patch.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match op {
            json_patch::PatchOperation::Add(add) => {
                out.extend_from_slice(br#"{"op":"add","path":"#);
                write_str(&mut out, add.path.as_str());
                out.extend_from_slice(br#","value":"#);
                let _ = serde_json::to_writer(&mut out, &add.value);
                out.push(b'}');
            }
            other => {
                let _ = serde_json::to_writer(&mut out, other);
            }
        }
    }
    out.push(b']');
    out
}

/// Per-line limit: the apiserver truncates at 256; kubectl output stays readable at 120.
pub const MAX_WARNING_CHARS: usize = 120;
/// The apiserver drops warnings past 4096 characters in total.
pub const MAX_WARNINGS_TOTAL: usize = 4096;

/// Shortens each warning to one line of at most 120 characters, removes duplicates, and keeps
/// the total under the apiserver's budget (saying how many were left out).
pub fn fit_warnings(lines: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut total = 0;
    let mut dropped = 0;
    for line in lines {
        // Most lines are short and have no control characters (C0, DEL, and C1, which UTF-8
        // writes after a 0xC2 byte): kept as they are, without a copy.
        let plain = line.len() <= MAX_WARNING_CHARS
            && !line.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2);
        let one: String = if plain { line } else { fit_line(line) };
        if out.contains(&one) {
            continue;
        }
        // Keep room for the "N more" line.
        if total + one.len() > MAX_WARNINGS_TOTAL - 80 {
            dropped += 1;
            continue;
        }
        total += one.len();
        out.push(one);
    }
    if dropped > 0 {
        out.push(format!(
            "oomguard: {dropped} more warnings left out; run oomguard check for all of them"
        ));
    }
    out
}

/// One line of at most 120 characters, control characters as spaces.
fn fit_line(line: String) -> String {
    let one: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one.chars().count() > MAX_WARNING_CHARS {
        let mut s: String = one.chars().take(MAX_WARNING_CHARS - 3).collect();
        s.push_str("...");
        s
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn bad_bodies_are_classified() {
        assert!(matches!(parse(b"{not json"), Err(BadReview::NotJson(_))));
        assert!(matches!(
            parse(&[0xff, 0xfe, b'{']),
            Err(BadReview::NotJson(_))
        ));
        assert_eq!(parse(b"[1,2]").unwrap_err(), BadReview::NotAnObject);
        assert_eq!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).unwrap_err(),
            BadReview::MissingRequest
        );
        assert!(matches!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{}}}"#),
            Err(BadReview::BadRequest(_))
        ));
        let r = parse(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u1"}}"#)
            .unwrap();
        assert!(r.mismatch.unwrap().contains("v1beta1"));
    }

    #[test]
    fn response_shape() {
        let a = Answer {
            allowed: false,
            patch: Some(
                serde_json::from_value(json!([{"op": "add", "path": "/a", "value": 1}])).unwrap(),
            ),
            warnings: vec!["w".into()],
            status: Some((403, "no".into())),
        };
        let r = serde_json::to_value(response("u1", &a)).unwrap();
        assert_eq!(r["apiVersion"], API_VERSION);
        assert_eq!(r["response"]["uid"], "u1");
        assert_eq!(r["response"]["patchType"], "JSONPatch");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(r["response"]["patch"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&decoded).unwrap()[0]["path"],
            "/a"
        );
        assert_eq!(r["response"]["status"]["code"], 403);
        assert_eq!(r["response"]["status"]["reason"], "Forbidden");
    }

    #[test]
    fn written_answers_are_the_serialized_ones() {
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "add", "path": "/spec/template/spec/containers/0/resources", "value": {"limits": {"memory": "347Mi"}}},
            {"op": "add", "path": "/metadata/annotations/oomguard.io~1reason", "value": "a \"quoted\"\n reason"},
            {"op": "add", "path": "/metadata", "value": {}},
            {"op": "replace", "path": "/a", "value": 1},
            {"op": "remove", "path": "/b"}
        ]))
        .unwrap();
        let answers = [
            Answer::allow(),
            Answer {
                allowed: false,
                patch: None,
                warnings: vec![],
                status: Some((403, "denied: \"x\"\u{1}é".into())),
            },
            Answer {
                allowed: true,
                patch: Some(patch.clone()),
                warnings: vec!["w1 \\ \t".into(), "w2 ü".into()],
                status: None,
            },
            Answer {
                allowed: true,
                patch: Some(json_patch::Patch(vec![])),
                warnings: vec![],
                status: Some((400, "bad".into())),
            },
            Answer {
                allowed: true,
                patch: None,
                warnings: vec![],
                status: Some((413, "large".into())),
            },
        ];
        for uid in ["", "0f4d9c2e-1b1a", "odd \"uid\""] {
            for a in &answers {
                assert_eq!(
                    String::from_utf8(response_bytes(uid, a)).unwrap(),
                    serde_json::to_string(&response(uid, a)).unwrap()
                );
            }
        }
        assert_eq!(patch_json(&patch), serde_json::to_vec(&patch).unwrap());
    }

    #[test]
    fn warnings_fit_the_apiserver_limits() {
        let long = "x".repeat(300);
        let lines: Vec<String> = (0..100).map(|i| format!("{i} {long}")).collect();
        let out = fit_warnings(lines);
        assert!(out.iter().all(|l| l.chars().count() <= MAX_WARNING_CHARS));
        assert!(out.iter().map(String::len).sum::<usize>() <= MAX_WARNINGS_TOTAL);
        assert!(out.last().unwrap().contains("more warnings left out"));
        assert_eq!(
            fit_warnings(vec!["a\nb".into(), "a\nb".into()]),
            vec!["a b".to_string()]
        );
        // Plain lines are kept as they are; C1 controls and long lines are still fitted.
        assert_eq!(
            fit_warnings(vec!["plain é ° line".into(), "c1 \u{85} here".into()]),
            vec!["plain é ° line".to_string(), "c1   here".to_string()]
        );
        let exact = "é".repeat(MAX_WARNING_CHARS);
        assert_eq!(fit_warnings(vec![exact.clone()]), vec![exact]);
    }
}
