//! End to end through kubectl and the real apiserver, for the kinds of issue 27: a
//! ReplicationController, a DeploymentConfig (apps.openshift.io/v1, served here by a CRD that
//! keeps its fields; OpenShift serves it natively), and an operator-owned StatefulSet, which is
//! warned about and never patched. The webhook configuration is `oomguard certs`' own.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::controlplane::ControlPlane;
use common::serve::Serve;
use common::{free_port, BIN};
use serde_json::Value;

const NS: &str = "kinds";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A java container whose heap fills its limit: critical on day zero, no history needed.
fn container() -> &'static str {
    "      containers:\n      - name: app\n        image: x\n        command: [java, -Xmx1536m, -jar, /app.jar]\n        resources:\n          limits:\n            memory: 1536Mi\n"
}

fn limit(obj: &Value) -> &str {
    obj.pointer("/spec/template/spec/containers/0/resources/limits/memory")
        .and_then(Value::as_str)
        .unwrap_or("")
}

const DC_CRD: &str = r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
 "metadata": {"name": "deploymentconfigs.apps.openshift.io"},
 "spec": {"group": "apps.openshift.io", "scope": "Namespaced",
  "names": {"kind": "DeploymentConfig", "plural": "deploymentconfigs", "singular": "deploymentconfig", "shortNames": ["dc"]},
  "versions": [{"name": "v1", "served": true, "storage": true,
   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}"#;

#[test]
fn new_kinds_through_kubectl_and_the_webhook() {
    let cp = ControlPlane::start(false);
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let st = Command::new(BIN)
        .args(["certs", "--out"])
        .arg(work.path().join("certs"))
        .args([
            "--ip",
            "127.0.0.1",
            "--url",
            &format!("https://127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join(format!("{NS}.yaml")),
        common::policy("mutate", ""),
    )
    .unwrap();
    let history = work.path().join("history.json");
    std::fs::write(
        &history,
        r#"{"apiVersion": "oomguard.io/v1", "kind": "History", "now": 1800000000, "workloads": []}"#,
    )
    .unwrap();
    let _serve = Serve::start(
        work.path(),
        port,
        &policies,
        &["--history", history.to_str().unwrap()],
    );
    cp.ok_in(&["apply", "-f", "-"], Some(DC_CRD));
    cp.ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/deploymentconfigs.apps.openshift.io",
    ]);
    let webhook_yaml = work.path().join("certs/webhook.yaml");
    cp.ok(&["apply", "-f", webhook_yaml.to_str().unwrap()]);
    cp.ok(&["create", "namespace", NS]);

    let rc = format!(
        "apiVersion: v1\nkind: ReplicationController\nmetadata: {{name: rc, namespace: {NS}}}\nspec:\n  selector: {{app: rc}}\n  template:\n    metadata: {{labels: {{app: rc}}}}\n    spec:\n{}",
        container()
    );
    let dc = format!(
        "apiVersion: apps.openshift.io/v1\nkind: DeploymentConfig\nmetadata: {{name: dc, namespace: {NS}}}\nspec:\n  selector: {{app: dc}}\n  template:\n    metadata: {{labels: {{app: dc}}}}\n    spec:\n{}",
        container()
    );
    // The webhook configuration takes a moment to reach the apiserver's admission chain.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cp.kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&rc));
        if text(&out.stderr).contains("oomguard") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "webhook never called: {}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for (kind, manifest) in [("replicationcontroller", &rc), ("deploymentconfig", &dc)] {
        let out = cp.kubectl(&["apply", "-f", "-"], Some(manifest));
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{kind}: {stderr}");
        assert!(
            stderr.contains(
                "Warning: oomguard raised the memory limit of container app from 1536Mi to 1920Mi"
            ),
            "{kind}: {stderr}"
        );
        let name = if kind == "replicationcontroller" {
            "rc"
        } else {
            "dc"
        };
        let stored = cp.json(NS, &format!("{kind}/{name}"));
        assert_eq!(limit(&stored), "1920Mi", "{kind}: {stored}");
        assert_eq!(
            stored["metadata"]["annotations"]["oomguard.io/limits-changed"],
            "app: 1536Mi -> 1920Mi",
            "{kind}"
        );
    }

    // An operator's StatefulSet: warned about, naming its owner; stored as sent.
    let sts = format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: es-default\n  namespace: {NS}\n  ownerReferences:\n  - {{apiVersion: elasticsearch.k8s.elastic.co/v1, kind: Elasticsearch, name: quickstart, uid: 6f1b4a3e-0000-4000-8000-000000000001, controller: true}}\nspec:\n  serviceName: es\n  selector: {{matchLabels: {{app: es}}}}\n  template:\n    metadata: {{labels: {{app: es}}}}\n    spec:\n{}",
        container()
    );
    let out = cp.kubectl(&["apply", "-f", "-"], Some(&sts));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: oomguard: managed by Elasticsearch/quickstart: set memory there; its operator undoes edits to StatefulSet es-default\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("heap -Xmx1536m is 100% of limit 1536Mi"),
        "{stderr}"
    );
    assert!(!stderr.contains("raised"), "{stderr}");
    assert_eq!(limit(&cp.json(NS, "statefulset/es-default")), "1536Mi");
}
