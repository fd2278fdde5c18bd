//! The AdmissionReview's envelope and request fields as both readers fill them: serde (in
//! `review`) and the one-pass scanner (`scan`), which hands its result to `review`.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestFields<O> {
    pub(crate) uid: String,
    #[serde(default)]
    pub(crate) kind: GroupVersionKind,
    #[serde(default)]
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) operation: String,
    #[serde(default)]
    pub(crate) sub_resource: Option<String>,
    #[serde(default = "none")]
    pub(crate) object: Option<O>,
    #[serde(default = "none")]
    pub(crate) old_object: Option<O>,
    #[serde(default)]
    pub(crate) dry_run: Option<bool>,
}

fn none<O>() -> Option<O> {
    None
}

#[derive(Deserialize)]
pub(crate) struct Envelope<R> {
    #[serde(default, rename = "apiVersion")]
    pub(crate) api_version: Option<String>,
    #[serde(default)]
    pub(crate) kind: Option<String>,
    #[serde(default = "none")]
    pub(crate) request: Option<R>,
}
