//! `oomguard check`: what the webhook would answer for each manifest, offline (for CI).
//!
//! The stream is read as kubectl reads it ([`crate::manifest`]), one document at a time: a List
//! gives its items, a Template its objects as `oc process` fills them. Each workload goes
//! through `/mutate`, its patch is applied, then through `/validate`, as the apiserver would do.
//! With `-o yaml` the stream comes back as it was, oomguard's changes written into the text of
//! the documents it changed; a document it could not read is named, and the others are still
//! answered.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::Value;

use crate::admission::{Admitter, Endpoint, Outcome};
use crate::manifest::{self, edit, Content, Document};
use crate::policy::store::PolicySet;
use crate::verdict::Verdict;
use crate::workload::WorkloadKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Yaml,
    Json,
}

/// Per-object result.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocResult {
    /// The document's place in the stream (1-based).
    pub index: usize,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// What holds the object: `List`, `Template NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
    /// pass, warn, fail (denied), skip (an object without pods), unread (not read: see `why`),
    /// error (the document could not be read).
    pub result: &'static str,
    /// What a workload was weighed on: `configuration` always, `history` when there was some.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checked: Vec<&'static str>,
    /// Why an object was skipped or not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The object after oomguard's mutation (with `--show-mutated` in JSON).
    #[serde(skip)]
    pub mutated: Option<Value>,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    /// Objects without pods (ConfigMaps, Services, RBAC, ...).
    pub skip: usize,
    /// Objects that may make pods but were not read (custom resources, removed API versions).
    pub not_read: usize,
    /// Documents that could not be read at all (kubectl refuses them too).
    pub errors: usize,
    /// Workloads weighed on their configuration only: no memory history yet.
    pub no_history: usize,
}

impl Summary {
    fn workloads(&self) -> usize {
        self.pass + self.warn + self.fail
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{source_name}: document {index}: {message}")]
    Document {
        source_name: String,
        index: usize,
        message: String,
    },
    #[error("{source_name}: {source}")]
    Io {
        source_name: String,
        source: std::io::Error,
    },
}

/// The objects of a stream as JSON (Lists and Templates opened), for `recommend` and tests;
/// the first document that cannot be read is an error.
pub fn parse_documents(source_name: &str, text: &str) -> Result<Vec<Value>, CheckError> {
    let docs = manifest::documents(std::io::Cursor::new(text.to_string())).map_err(|source| {
        CheckError::Io {
            source_name: source_name.to_string(),
            source,
        }
    })?;
    let mut out = Vec::new();
    for d in docs {
        let d = d.map_err(|source| CheckError::Io {
            source_name: source_name.to_string(),
            source,
        })?;
        match d.content {
            Content::Empty => {}
            Content::Error(message) => {
                return Err(CheckError::Document {
                    source_name: source_name.to_string(),
                    index: d.index,
                    message,
                })
            }
            Content::Objects { objects, .. } => out.extend(objects.into_iter().map(|o| o.value)),
        }
    }
    Ok(out)
}

/// What kind of object a manifest holds, for oomguard.
#[derive(Debug, Clone, PartialEq)]
pub enum Class {
    Workload(WorkloadKind),
    /// No pods come of it (a ConfigMap, a Service, RBAC, a CRD, the Template itself).
    Skip,
    /// Pods may come of it, but oomguard does not read it: why.
    NotRead(String),
}

/// Sorts an object into what oomguard reads and what it does not, with why.
pub fn classify(object: &Value) -> Class {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    if let Some(k) = WorkloadKind::from_group_kind(group, kind) {
        if k == WorkloadKind::Rollout
            && object.pointer("/spec/template").is_none()
            && object.pointer("/spec/workloadRef").is_some()
        {
            let target = object
                .pointer("/spec/workloadRef/name")
                .and_then(Value::as_str)
                .unwrap_or("?");
            return Class::NotRead(format!(
                "its pods come from Deployment {target} (workloadRef), which is checked where it is written"
            ));
        }
        return Class::Workload(k);
    }
    const POD_KINDS: [&str; 7] = [
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "CronJob",
        "Pod",
    ];
    if group == "extensions" && POD_KINDS.contains(&kind) {
        return Class::NotRead(format!(
            "{api_version} {kind} was removed in Kubernetes 1.16: the apiserver refuses it; use apps/v1"
        ));
    }
    if manifest::is_template(object) {
        return Class::Skip;
    }
    let custom = group.contains('.')
        && !group.ends_with(".k8s.io")
        && !group.ends_with(".openshift.io")
        && group != "argoproj.io";
    if custom {
        return Class::NotRead(format!(
            "custom resource ({group}): if its operator runs pods from it, their memory is set in its spec, which oomguard does not read"
        ));
    }
    if kind.is_empty() {
        return Class::NotRead("no kind: kubectl refuses it".to_string());
    }
    Class::Skip
}

/// How `check` runs.
pub struct Options<'a> {
    pub admitter: &'a Admitter,
    pub policies: &'a PolicySet,
    /// Namespace of objects that name none.
    pub namespace: &'a str,
    pub format: Format,
    pub show_mutated: bool,
    pub source_name: &'a str,
}

/// Checks a stream document by document and prints as it goes; returns the tally and the
/// documents that could not be read (`FILE: document N: why`).
pub async fn run(
    opts: &Options<'_>,
    docs: impl Iterator<Item = std::io::Result<Document>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(Summary, Vec<String>), CheckError> {
    let mut summary = Summary::default();
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let mut elsewhere: BTreeMap<String, usize> = BTreeMap::new();
    let mut not_read: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut first_json = true;
    let io = |source| CheckError::Io {
        source_name: opts.source_name.to_string(),
        source,
    };
    if opts.format == Format::Json {
        writeln!(out, "{{\"results\": [").map_err(io)?;
    }
    for doc in docs {
        let doc = doc.map_err(io)?;
        let (results, text) = check_document(opts, &doc).await;
        for r in &results {
            match r.result {
                "pass" => summary.pass += 1,
                "warn" => summary.warn += 1,
                "fail" => summary.fail += 1,
                "skip" => {
                    summary.skip += 1;
                    match &r.why {
                        Some(why) => {
                            *elsewhere.entry(format!("{} {why}", r.kind)).or_default() += 1
                        }
                        None => *skipped.entry(r.kind.clone()).or_default() += 1,
                    }
                }
                "unread" => {
                    summary.not_read += 1;
                    let why = r.why.as_deref().unwrap_or_default();
                    not_read.push(if r.kind.is_empty() {
                        format!("document {}: {why}", r.index)
                    } else {
                        format!("{} {}: {why}", r.kind, r.name)
                    });
                }
                _ => {
                    summary.errors += 1;
                    errors.push(format!(
                        "{}: document {}: {}",
                        opts.source_name,
                        r.index,
                        r.why.as_deref().unwrap_or_default()
                    ));
                }
            }
            if r.checked.len() == 1 && matches!(r.result, "pass" | "warn" | "fail") {
                summary.no_history += 1;
            }
        }
        match opts.format {
            Format::Text => {
                print_text(&results, out).map_err(io)?;
                if opts.show_mutated {
                    write!(out, "{}{}", doc.part.separator, text).map_err(io)?;
                }
            }
            Format::Yaml => {
                for r in &results {
                    for w in &r.warnings {
                        writeln!(err, "Warning: {w}").map_err(io)?;
                    }
                    if let Some(d) = &r.denied {
                        writeln!(err, "Error from server (Forbidden): {d}").map_err(io)?;
                    }
                }
                write!(out, "{}{}", doc.part.separator, text).map_err(io)?;
            }
            Format::Json => {
                for r in &results {
                    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                    if let (true, Some(m)) = (opts.show_mutated, &r.mutated) {
                        v["mutated"] = m.clone();
                    }
                    let sep = if first_json { "" } else { ",\n" };
                    first_json = false;
                    write!(
                        out,
                        "{sep}{}",
                        serde_json::to_string_pretty(&v).unwrap_or_default()
                    )
                    .map_err(io)?;
                }
            }
        }
    }
    let summary_line = format!(
        "pass: {}, warn: {}, fail: {}",
        summary.pass, summary.warn, summary.fail
    );
    match opts.format {
        Format::Text => {
            writeln!(out, "{summary_line}").map_err(io)?;
            if summary.no_history > 0 {
                writeln!(
                    out,
                    "configuration only: {} of {} workloads (no memory history yet to check limits against; pass --history or --prometheus)",
                    summary.no_history,
                    summary.workloads()
                )
                .map_err(io)?;
            }
            for n in &not_read {
                writeln!(out, "not read: {n}").map_err(io)?;
            }
            for (what, n) in &elsewhere {
                writeln!(out, "not checked here: {n} {what}").map_err(io)?;
            }
            if !skipped.is_empty() {
                let kinds: Vec<String> = skipped.iter().map(|(k, n)| format!("{k} {n}")).collect();
                writeln!(
                    out,
                    "skipped: {} without pods ({})",
                    skipped.values().sum::<usize>(),
                    kinds.join(", ")
                )
                .map_err(io)?;
            }
        }
        Format::Yaml => writeln!(err, "{summary_line}").map_err(io)?,
        Format::Json => {
            writeln!(
                out,
                "\n], \"summary\": {}}}",
                serde_json::to_string(&summary).unwrap_or_default()
            )
            .map_err(io)?;
            writeln!(err, "{summary_line}").map_err(io)?;
        }
    }
    Ok((summary, errors))
}

fn print_text(results: &[DocResult], out: &mut dyn Write) -> std::io::Result<()> {
    for r in results {
        match r.result {
            "skip" | "unread" => continue,
            "error" => {
                writeln!(
                    out,
                    "document {}: not read: {}",
                    r.index,
                    r.why.as_deref().unwrap_or_default()
                )?;
                continue;
            }
            _ => {}
        }
        let result = match (r.result, r.checked.len()) {
            ("pass", 1) => "pass (configuration only: no memory history yet)",
            (other, _) => other,
        };
        let within = r
            .within
            .as_ref()
            .map(|w| format!(" in {w}"))
            .unwrap_or_default();
        writeln!(
            out,
            "{}/{} ({}){within}: {result}",
            r.kind.to_lowercase(),
            r.name,
            r.namespace,
        )?;
        for w in &r.warnings {
            writeln!(out, "Warning: {w}")?;
        }
        if let Some(d) = &r.denied {
            writeln!(out, "Error from server (Forbidden): admission webhook \"validate.oomguard.io\" denied the request: {d}")?;
        }
    }
    Ok(())
}

/// One document: its results, and its text as `-o yaml` writes it back.
async fn check_document(opts: &Options<'_>, doc: &Document) -> (Vec<DocResult>, String) {
    let (json, objects, notes) = match &doc.content {
        Content::Empty => return (Vec::new(), doc.part.text.clone()),
        Content::Error(why) => {
            let r = DocResult {
                index: doc.index,
                kind: String::new(),
                namespace: String::new(),
                name: String::new(),
                within: None,
                result: "error",
                checked: Vec::new(),
                why: Some(why.clone()),
                warnings: Vec::new(),
                denied: None,
                verdict: None,
                mutated: None,
            };
            return (vec![r], doc.part.text.clone());
        }
        Content::Objects {
            json,
            objects,
            notes,
        } => (json, objects, notes),
    };
    let mut results = Vec::with_capacity(objects.len());
    let mut adds: Vec<edit::Add> = Vec::new();
    let mut doc_warnings: Vec<String> = Vec::new();
    for o in objects {
        let str_at = |p: &str| {
            o.value
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let namespace = match str_at("/metadata/namespace") {
            ns if ns.is_empty() => opts.namespace.to_string(),
            ns => ns,
        };
        let mut r = DocResult {
            index: doc.index,
            kind: str_at("/kind"),
            namespace,
            name: match str_at("/metadata/name") {
                n if n.is_empty() => str_at("/metadata/generateName"),
                n => n,
            },
            within: o.within.clone(),
            result: "skip",
            checked: Vec::new(),
            why: None,
            warnings: Vec::new(),
            denied: None,
            verdict: None,
            mutated: None,
        };
        let kind = match classify(&o.value) {
            Class::Workload(k) => k,
            Class::Skip => {
                results.push(r);
                continue;
            }
            Class::NotRead(why) => {
                r.result = "unread";
                r.why = Some(why);
                results.push(r);
                continue;
            }
        };
        let a = opts.admitter;
        let m = a
            .object(
                Endpoint::Mutate,
                opts.policies,
                kind,
                &o.value,
                &r.namespace,
            )
            .await;
        let mut object = o.value.clone();
        if let Some(patch) = &m.answer.patch {
            let from_parameter = o
                .from_template
                .then(|| template_parameter(json, &o.path, patch))
                .flatten();
            if let Some(p) = from_parameter {
                r.warnings.push(format!(
                    "oomguard: not raised here: the limit comes from the Template's parameter {p}; raise its value"
                ));
            } else if let Err(e) = json_patch::patch(&mut object, patch) {
                r.warnings.push(format!(
                    "oomguard: internal error: its patch does not apply: {e}"
                ));
            } else {
                for op in patch.iter() {
                    if let json_patch::PatchOperation::Add(add) = op {
                        let mut path = o.path.clone();
                        path.extend(add.path.tokens().map(|t| t.decoded().into_owned()));
                        adds.push((path, add.value.clone()));
                    }
                }
                r.warnings.extend(m.answer.warnings.iter().cloned());
            }
        }
        let v = a
            .object(
                Endpoint::Validate,
                opts.policies,
                kind,
                &object,
                &r.namespace,
            )
            .await;
        r.warnings.extend(v.answer.warnings.iter().cloned());
        r.warnings.extend(sanity(&object, kind));
        if results.iter().all(|x: &DocResult| x.checked.is_empty()) {
            r.warnings
                .extend(notes.iter().map(|n| format!("oomguard: {n}")));
        }
        r.checked = if m.history_found || v.history_found {
            vec!["configuration", "history"]
        } else {
            vec!["configuration"]
        };
        r.verdict = v.verdict.or(m.verdict);
        if v.outcome == Outcome::Skipped && m.outcome == Outcome::Skipped && r.warnings.is_empty() {
            // Made by a workload controller from a template checked with its owner, or left
            // out by the policy (mode off, `exclude`, the oomguard.io/exclude annotation).
            let owner = o
                .value
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
                .map(|r| r["kind"].as_str().unwrap_or("?").to_string());
            r.result = "skip";
            r.checked = Vec::new();
            r.why = Some(match owner {
                Some(kind) => format!("made by its {kind} (checked with it)"),
                None => "excluded by policy or annotation".to_string(),
            });
            results.push(r);
            continue;
        }
        r.result = if v.outcome == Outcome::Denied {
            r.denied = v.answer.status.map(|(_, msg)| msg);
            "fail"
        } else if !r.warnings.is_empty() {
            "warn"
        } else {
            "pass"
        };
        if opts.show_mutated {
            r.mutated = Some(object);
        }
        results.push(r);
    }
    if adds.is_empty() {
        return (results, doc.part.text.clone());
    }
    let mut expected = json.clone();
    for (p, v) in &adds {
        let _ = edit::add_json(&mut expected, p, v.clone());
    }
    let text = if doc.json {
        serde_json::to_string_pretty(&expected).unwrap_or_default()
    } else {
        match edit::apply(&doc.part.text, &adds, &expected) {
            Ok(t) => t,
            Err(e) => {
                doc_warnings.push(format!(
                    "oomguard: document {} could not be edited in place ({e}); written as JSON",
                    doc.index
                ));
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&expected).unwrap_or_default()
                )
            }
        }
    };
    if let Some(r) = results.iter_mut().find(|r| !r.checked.is_empty()) {
        r.warnings.extend(doc_warnings);
    }
    (results, text)
}

/// The parameter behind a value the patch replaces in a Template's object, if one is.
fn template_parameter(
    doc: &Value,
    object_path: &[String],
    patch: &json_patch::Patch,
) -> Option<String> {
    let raw = object_path.iter().try_fold(doc, |v, t| match v {
        Value::Object(m) => m.get(t),
        Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })?;
    patch.iter().find_map(|op| match op {
        json_patch::PatchOperation::Add(add) => raw
            .pointer(add.path.as_str())
            .and_then(Value::as_str)
            .filter(|s| s.contains("${"))
            .map(|s| manifest::template::parameter_of(s).unwrap_or(s).to_string()),
        _ => None,
    })
}

/// What the apiserver refuses in a pod template, said before `kubectl apply` says it.
fn sanity(object: &Value, kind: WorkloadKind) -> Vec<String> {
    let spec = match kind {
        WorkloadKind::Pod => object.get("spec"),
        WorkloadKind::CronJob => object.pointer("/spec/jobTemplate/spec/template/spec"),
        _ => object.pointer("/spec/template/spec"),
    };
    let Some(spec) = spec else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(|c| c.is_empty()) {
        out.push(
            "oomguard: the pod template has no containers: the apiserver refuses it".to_string(),
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    for c in ["initContainers", "containers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten()
    {
        if let Some(n) = c.get("name").and_then(Value::as_str) {
            if seen.contains(&n) {
                out.push(format!(
                    "oomguard: two containers are named {n}: the apiserver refuses the pod template (Duplicate value)"
                ));
            }
            seen.push(n);
        }
    }
    out
}
