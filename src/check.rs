//! `oomguard check`: what the webhook would answer for each manifest, offline (for CI).
//! Each document goes through `/mutate`, its patch is applied, then through `/validate`, as the
//! apiserver would do.

use std::io::Write;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::admission::{Admitter, Decision, Endpoint, Outcome};
use crate::policy::store::PolicySet;
use crate::verdict::{Severity, Verdict};
use crate::workload::WorkloadKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Yaml,
    Json,
}

/// Per-document result.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocResult {
    pub index: usize,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// pass, warn, fail, unknown (no memory history to check it against yet) or skip.
    pub result: &'static str,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The manifest after oomguard's mutation (the input when nothing changed).
    #[serde(skip)]
    pub mutated: Value,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    /// Workloads with no memory history yet (nothing checked, nothing to say).
    pub unknown: usize,
    pub skip: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{source_name}: document {index}: not valid YAML: {message}")]
    Yaml {
        source_name: String,
        index: usize,
        message: String,
    },
}

/// Splits a multi-document YAML text into JSON values (empty documents dropped).
pub fn parse_documents(source_name: &str, text: &str) -> Result<Vec<Value>, CheckError> {
    let mut docs = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(de).map_err(|e| CheckError::Yaml {
            source_name: source_name.to_string(),
            index: i + 1,
            message: e.to_string(),
        })?;
        match v {
            Value::Null => {}
            // `kind: List` (kubectl get -o yaml) holds its items.
            Value::Object(ref o) if o.get("kind").and_then(Value::as_str) == Some("List") => {
                if let Some(items) = o.get("items").and_then(Value::as_array) {
                    docs.extend(items.iter().cloned());
                }
            }
            other => docs.push(other),
        }
    }
    Ok(docs)
}

/// Runs every document through the engine.
pub async fn check(
    admitter: &Admitter,
    policies: &PolicySet,
    docs: Vec<Value>,
    default_namespace: &str,
) -> (Vec<DocResult>, Summary) {
    let mut results = Vec::new();
    let mut summary = Summary::default();
    for (i, doc) in docs.into_iter().enumerate() {
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind_s = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let namespace = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(default_namespace)
            .to_string();
        let mut r = DocResult {
            index: i + 1,
            kind: kind_s.clone(),
            namespace: namespace.clone(),
            name,
            result: "skip",
            warnings: Vec::new(),
            denied: None,
            verdict: None,
            mutated: doc.clone(),
        };
        let Some(kind) = WorkloadKind::from_api_version(&api_version, &kind_s) else {
            summary.skip += 1;
            results.push(r);
            continue;
        };
        let m = admitter
            .object(Endpoint::Mutate, policies, kind, &doc, &namespace)
            .await;
        let mut object = doc;
        if let Some(patch) = &m.answer.patch {
            if let Err(e) = json_patch::patch(&mut object, patch) {
                r.warnings.push(format!(
                    "oomguard: internal error: its patch does not apply: {e}"
                ));
            }
        }
        r.warnings.extend(m.answer.warnings.iter().cloned());
        let v: Decision = admitter
            .object(Endpoint::Validate, policies, kind, &object, &namespace)
            .await;
        r.warnings.extend(v.answer.warnings.iter().cloned());
        r.verdict = v.verdict.or(m.verdict);
        r.result = if v.outcome == Outcome::Denied {
            r.denied = v.answer.status.map(|(_, msg)| msg);
            summary.fail += 1;
            "fail"
        } else if !r.warnings.is_empty() {
            summary.warn += 1;
            "warn"
        } else if v.outcome == Outcome::Skipped && m.outcome == Outcome::Skipped {
            summary.skip += 1;
            "skip"
        } else if r
            .verdict
            .as_ref()
            .is_some_and(|v| v.severity() == Severity::Unknown)
        {
            summary.unknown += 1;
            "unknown"
        } else {
            summary.pass += 1;
            "pass"
        };
        r.mutated = object;
        results.push(r);
    }
    (results, summary)
}

/// One document of a multi-document YAML stream.
fn write_yaml_doc(out: &mut dyn Write, doc: &Value) -> std::io::Result<()> {
    writeln!(out, "---")?;
    write!(out, "{}", serde_norway::to_string(doc).unwrap_or_default())
}

/// Prints results the way kubectl shows a webhook's answer.
pub fn print(
    results: &[DocResult],
    summary: Summary,
    format: Format,
    show_mutated: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<()> {
    let summary_line = format!(
        "pass: {}, warn: {}, fail: {}",
        summary.pass, summary.warn, summary.fail
    );
    match format {
        Format::Text => {
            for r in results.iter().filter(|r| r.result != "skip") {
                let result = match r.result {
                    "unknown" => "not checked (no memory history yet)",
                    other => other,
                };
                writeln!(
                    out,
                    "{}/{} ({}): {result}",
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
            if show_mutated {
                for r in results {
                    write_yaml_doc(out, &r.mutated)?;
                }
            }
            writeln!(out, "{summary_line}")?;
            if summary.unknown > 0 {
                writeln!(
                    out,
                    "not checked: {} (no memory history yet; pass --history or --prometheus)",
                    summary.unknown
                )?;
            }
            if summary.skip > 0 {
                writeln!(
                    out,
                    "skipped: {} (not pod-template workloads, or excluded)",
                    summary.skip
                )?;
            }
        }
        Format::Yaml => {
            for r in results {
                for w in &r.warnings {
                    writeln!(err, "Warning: {w}")?;
                }
                if let Some(d) = &r.denied {
                    writeln!(err, "Error from server (Forbidden): {d}")?;
                }
                write_yaml_doc(out, &r.mutated)?;
            }
            writeln!(err, "{summary_line}")?;
        }
        Format::Json => {
            let docs: Vec<Value> = results
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                    if show_mutated {
                        v["mutated"] = r.mutated.clone();
                    }
                    v
                })
                .collect();
            let report = json!({ "results": docs, "summary": summary });
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            )?;
            writeln!(err, "{summary_line}")?;
        }
    }
    Ok(())
}
