//! `--emit-patches DIR`: one kustomize strategic-merge patch per workload with the recommended
//! memory request and limit, so that the change goes through the user's repository.
//!
//! `DIR/<namespace>-<kind>-<name>.yaml` (kind in lower case):
//! ```yaml
//! apiVersion: apps/v1
//! kind: Deployment
//! metadata: {name: web-frontend, namespace: self-healing-platform}
//! spec:
//!   template:
//!     spec:
//!       containers:
//!       - name: web
//!         resources: {requests: {memory: 301Mi}, limits: {memory: 347Mi}}
//! ```
//! CronJobs under `spec.jobTemplate.spec.template.spec`, Pods under `spec`; init containers and
//! sidecars in `initContainers`. Strategic merge matches containers by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};

use super::{Recommendation, Report};
use crate::quantity::to_quantity;
use crate::workload::{ContainerRole, WorkloadKind};

/// What was written, and the workloads that got no patch (with why).
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub skipped: Vec<String>,
}

/// The patch of one workload, or why there is none.
pub fn patch(rows: &[&Recommendation]) -> Result<Value, String> {
    let Some(first) = rows.first() else {
        return Err("no containers".to_string());
    };
    let api_version = match first.kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        "Pod" => "v1",
        other => {
            return Err(format!(
                "kind {other:?} is a pod-name pattern, not a kind: pass -f MANIFESTS to know it"
            ))
        }
    };
    let mut lists: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for r in rows {
        let Some(limit) = r.recommended_limit else {
            continue;
        };
        let mut resources = json!({ "limits": { "memory": to_quantity(limit) } });
        if let Some(req) = r.recommended_request {
            resources["requests"] = json!({ "memory": to_quantity(req) });
        }
        let list = match r.role {
            ContainerRole::Main => "containers",
            ContainerRole::Init | ContainerRole::Sidecar => "initContainers",
        };
        lists
            .entry(list)
            .or_default()
            .push(json!({ "name": r.container, "resources": resources }));
    }
    if lists.is_empty() {
        // A configuration no limit fixes (a heap of 90% of whatever the limit is) says so.
        return Err(
            match rows
                .iter()
                .find(|r| r.limit.is_some() && !r.reason.is_empty())
            {
                Some(r) => format!(
                    "no limit to recommend; the container's configuration must change: {}",
                    r.reason
                ),
                None => "no recommendation (too little history)".to_string(),
            },
        );
    }
    let pod_spec: serde_json::Map<String, Value> = lists
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::Array(v)))
        .collect();
    let pod_spec = Value::Object(pod_spec);
    let spec = match WorkloadKind::from_api_version(api_version, &first.kind) {
        Some(WorkloadKind::Pod) => pod_spec,
        Some(WorkloadKind::CronJob) => {
            json!({ "jobTemplate": { "spec": { "template": { "spec": pod_spec } } } })
        }
        _ => json!({ "template": { "spec": pod_spec } }),
    };
    Ok(json!({
        "apiVersion": api_version,
        "kind": first.kind,
        "metadata": { "name": first.name, "namespace": first.namespace },
        "spec": spec,
    }))
}

/// The file name of a workload's patch.
pub fn file_name(namespace: &str, kind: &str, name: &str) -> String {
    format!("{namespace}-{}-{name}.yaml", kind.to_lowercase())
}

/// Writes one patch per workload into `dir` (created when missing).
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the patches folder {}", dir.display()))?;
    let mut by_workload: BTreeMap<(&str, &str, &str), Vec<&Recommendation>> = BTreeMap::new();
    for r in &report.recommendations {
        by_workload
            .entry((&r.namespace, &r.kind, &r.name))
            .or_default()
            .push(r);
    }
    let mut written = Written::default();
    for ((ns, kind, name), rows) in by_workload {
        match patch(&rows) {
            Ok(p) => {
                let path = dir.join(file_name(ns, kind, name));
                let text = format!(
                    "# oomguard recommend: memory from {} (see the report for why)\n{}",
                    report.source,
                    serde_norway::to_string(&p)?
                );
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                written.files.push(path);
            }
            Err(why) => written.skipped.push(format!("{kind} {ns}/{name}: {why}")),
        }
    }
    Ok(written)
}
