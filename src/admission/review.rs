//! `admission.k8s.io/v1` AdmissionReview in and out. The response is built by hand: kube-core
//! serialises the patch as an array of numbers (kube-rs #1781), the apiserver wants base64.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

/// The parts of `request` oomguard uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewRequest {
    pub uid: String,
    #[serde(default)]
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub sub_resource: Option<String>,
    /// Left as JSON text: only the parts the engine reads are ever deserialized.
    #[serde(default)]
    pub object: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    pub dry_run: Option<bool>,
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
#[derive(Debug, Clone)]
pub struct Review {
    pub request: ReviewRequest,
    pub mismatch: Option<String>,
}

/// The outer AdmissionReview, with the request left unparsed: it is deserialized once, straight
/// from its bytes (building the object's JSON tree twice was a measurable part of an admission).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, rename = "apiVersion")]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default, borrow)]
    request: Option<&'a serde_json::value::RawValue>,
}

pub fn parse(body: &[u8]) -> Result<Review, BadReview> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => BadReview::NotAnObject,
        _ => BadReview::NotJson(e.to_string()),
    })?;
    let api_version = envelope.api_version.as_deref().unwrap_or("");
    let kind = envelope.kind.as_deref().unwrap_or("");
    let mismatch = (api_version != API_VERSION || kind != KIND).then(|| {
        format!(
            "got {api_version} {kind}, expected {API_VERSION}; set admissionReviewVersions: [v1]"
        )
    });
    let raw = envelope
        .request
        .filter(|r| r.get() != "null")
        .ok_or(BadReview::MissingRequest)?;
    let request: ReviewRequest =
        serde_json::from_str(raw.get()).map_err(|e| BadReview::BadRequest(e.to_string()))?;
    Ok(Review { request, mismatch })
}

/// What to answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub allowed: bool,
    pub patch: Option<Value>,
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

/// The AdmissionReview answer for a request uid.
pub fn response(uid: &str, answer: &Answer) -> Value {
    let mut resp = json!({ "uid": uid, "allowed": answer.allowed });
    if let Some(patch) = &answer.patch {
        let bytes = serde_json::to_vec(patch).unwrap_or_default();
        resp["patchType"] = json!("JSONPatch");
        resp["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    if !answer.warnings.is_empty() {
        resp["warnings"] = json!(answer.warnings);
    }
    if let Some((code, message)) = &answer.status {
        let reason = match code {
            403 => "Forbidden",
            400 => "BadRequest",
            _ => "Invalid",
        };
        resp["status"] = json!({ "code": code, "message": message, "reason": reason });
    }
    json!({ "apiVersion": API_VERSION, "kind": KIND, "response": resp })
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
        let one: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let one = if one.chars().count() > MAX_WARNING_CHARS {
            let mut s: String = one.chars().take(MAX_WARNING_CHARS - 3).collect();
            s.push_str("...");
            s
        } else {
            one
        };
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

#[cfg(test)]
mod tests {
    use super::*;

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
            patch: Some(json!([{"op": "add", "path": "/a", "value": 1}])),
            warnings: vec!["w".into()],
            status: Some((403, "no".into())),
        };
        let r = response("u1", &a);
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
    }
}
