//! The corpus' `--mode mutate -o yaml` outputs through `kubectl apply --dry-run=server` on the
//! real test apiserver (tests/controlplane, Kubernetes 1.36): every output is accepted, the
//! changed documents and the unchanged ones alike.
//!
//! Kinds the apiserver does not serve get a CRD first: DeploymentConfig (apps.openshift.io/v1),
//! Rollout (argoproj.io/v1alpha1), Template (template.openshift.io/v1) and the operators'
//! resources. Their real CRDs carry OpenAPI schemas of hundreds of kilobytes (the pod template
//! spelled out); these keep unknown fields instead, and every pod template oomguard read (of a
//! DeploymentConfig, a Rollout, a List item or a Template object) is also created, dry-run, as
//! the template of an apps/v1 Deployment, so that the apiserver's own pod validation (memory
//! request <= limit, quantities, names) judges exactly what oomguard wrote. (The files
//! themselves are applied with kubectl's default strict field validation.)
//!
//! One test, one control plane.

mod common;

use std::collections::BTreeSet;

use common::controlplane::ControlPlane;
use common::corpus::{files, flat_history, mutated};
use serde_json::{json, Value};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A CRD that serves `kind` and keeps whatever its objects hold.
fn crd(group: &str, version: &str, kind: &str, namespaced: bool) -> String {
    let plural = format!("{}s", kind.to_lowercase());
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "scope": if namespaced { "Namespaced" } else { "Cluster" },
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(),
                      "listKind": format!("{kind}List")},
            "versions": [{
                "name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    })
    .to_string()
}

/// The pod template of a workload as an apps/v1 Deployment's, for the apiserver to validate.
fn as_deployment(obj: &Value, ns: &str, n: usize) -> Option<Value> {
    let kind = obj["kind"].as_str()?;
    let template = match kind {
        "Pod" => json!({"metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
                        "spec": obj.get("spec")?}),
        "CronJob" => obj.pointer("/spec/jobTemplate/spec/template")?.clone(),
        _ => obj.pointer("/spec/template")?.clone(),
    };
    let mut template = template;
    // origin's 2016 template still carries the pre-1.0 container field `capabilities`, which
    // apps/v1's strict decoding refuses: the source's, not oomguard's; dropped here.
    for c in template
        .pointer_mut("/spec/containers")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(m) = c.as_object_mut() {
            m.remove("capabilities");
        }
    }
    let labels = json!({"oomguard-corpus": format!("w{n}")});
    template["metadata"] = json!({"labels": labels});
    if kind == "Pod" || kind == "Job" || kind == "CronJob" {
        template["spec"]["restartPolicy"] = json!("Always");
    }
    Some(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("corpus-{n}"), "namespace": ns},
        "spec": {"selector": {"matchLabels": labels}, "template": template}
    }))
}

#[test]
fn every_mutated_corpus_file_is_accepted_by_the_apiserver() {
    let cp = ControlPlane::start(false);
    let files = files();
    let dir = tempfile::tempdir().unwrap();
    let history = flat_history(&files, 300);
    let mut namespaces = BTreeSet::new();
    let mut custom = BTreeSet::new();
    let mut outputs = Vec::new();
    for (set, file) in &files {
        let out = mutated(dir.path(), &history, file);
        let objects = oomguard::check::parse_documents("out", &out).unwrap();
        for o in &objects {
            if let Some(ns) = o.pointer("/metadata/namespace").and_then(Value::as_str) {
                namespaces.insert(ns.to_string());
            }
            let api = o["apiVersion"].as_str().unwrap_or("");
            if let Some((group, version)) = api.rsplit_once('/') {
                if group.contains('.') && !group.ends_with(".k8s.io") {
                    custom.insert((
                        group.to_string(),
                        version.to_string(),
                        o["kind"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
        }
        outputs.push((set.clone(), file.clone(), out, objects));
    }
    // OpenShift's kinds, legacy `v1` ones included (served as their group's).
    for (g, v, k) in [
        ("apps.openshift.io", "v1", "DeploymentConfig"),
        ("template.openshift.io", "v1", "Template"),
    ] {
        custom.insert((g.to_string(), v.to_string(), k.to_string()));
    }
    for ns in &namespaces {
        cp.ok(&["create", "namespace", ns]);
    }
    for (g, v, k) in &custom {
        cp.ok_in(&["apply", "-f", "-"], Some(&crd(g, v, k, true)));
    }
    for (g, v, k) in &custom {
        let plural = format!("{}s.{g}", k.to_lowercase());
        let _ = v;
        cp.ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{plural}"),
        ]);
    }
    let mut applied = 0;
    let mut templates = 0;
    for (set, file, out, objects) in &outputs {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let path = dir.path().join(format!("{set}-{name}"));
        // Upstream Kubernetes has no core-group Template or DeploymentConfig: the legacy
        // `apiVersion: v1` of OpenShift's kinds is applied under their group.
        let legacy = objects.iter().any(|o| {
            o["apiVersion"] == "v1"
                && matches!(o["kind"].as_str(), Some("Template" | "DeploymentConfig"))
        });
        let body = if legacy {
            let mut docs = Vec::new();
            for o in objects.iter().filter(|o| o["kind"] == "Template") {
                let mut o = o.clone();
                o["apiVersion"] = json!("template.openshift.io/v1");
                docs.push(o.to_string());
            }
            docs.join("\n")
        } else {
            out.clone()
        };
        std::fs::write(&path, &body).unwrap();
        let r = cp.kubectl(
            &["apply", "--dry-run=server", "-f", path.to_str().unwrap()],
            None,
        );
        assert!(
            r.status.success(),
            "{set}/{name}: kubectl apply --dry-run=server refused oomguard's output:\n{}\n{body}",
            text(&r.stderr)
        );
        applied += 1;
        // Every pod template oomguard read, judged by the apiserver's pod validation.
        let docs = oomguard::manifest::documents(std::io::Cursor::new(out.clone())).unwrap();
        for d in docs {
            let d = d.unwrap();
            let oomguard::manifest::Content::Objects { objects, .. } = d.content else {
                continue;
            };
            for o in objects {
                if !matches!(
                    oomguard::check::classify(&o.value),
                    oomguard::check::Class::Workload(_)
                ) {
                    continue;
                }
                let ns = o
                    .value
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                templates += 1;
                let Some(dep) = as_deployment(&o.value, ns, templates) else {
                    continue;
                };
                let r = cp.kubectl(
                    &["create", "--dry-run=server", "-f", "-"],
                    Some(&dep.to_string()),
                );
                assert!(
                    r.status.success(),
                    "{set}/{name}: the pod template of {} {} is refused:\n{}\n{dep}",
                    o.value["kind"],
                    o.value.pointer("/metadata/name").unwrap_or(&Value::Null),
                    text(&r.stderr)
                );
            }
        }
    }
    assert_eq!(applied, files.len());
    assert!(templates >= 25, "{templates} pod templates");
    eprintln!("{applied} files applied, {templates} pod templates validated");
}
