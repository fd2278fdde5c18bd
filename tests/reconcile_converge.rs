//! The reconciler when the cluster pushes back, on a real kube-apiserver whose audit log counts
//! what oomguard writes. One reconciler, acting as its own ServiceAccount, two namespaces at once:
//! - `frozen`: a ValidatingAdmissionPolicy refuses every update oomguard makes there (a change
//!   freeze). The refused raise is not re-sent every round: it backs off (the cooldown doubled
//!   per refusal in a row), and an Event and the metrics say why;
//! - `gitops`: a loop re-applies the original manifest with server-side apply as
//!   `argocd-controller`, as a GitOps controller with self-heal does. oomguard raises the
//!   template once, sees the raise set back by that manager, and stops with an Event that says
//!   what to commit (a raise every cooldown meant a rollout every cooldown, forever).
//!
//! The write budget asserted here (writes by oomguard's identity to the workload): at most 3 in
//! 150 s under the freeze (10 s cooldown: 60 s, then 2, 4 minutes ...; 15 without the backoff),
//! at most 3 under the revert loop (the claim, the raise, nothing after; ~30 without).

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::controlplane::ControlPlane;
use common::{free_port, BIN};
use serde_json::{json, Value};

const MI: u64 = 1024 * 1024;
const SA: &str = "system:serviceaccount:oomguard-test:reconciler";
const WINDOW_SECS: u64 = 150;

/// Six OOM kills at 256Mi over the last hours and peaks around 200 MiB: 256Mi is critical.
fn history(dir: &Path, now: i64) -> std::path::PathBuf {
    let n = 2 * 288;
    let peaks: Vec<Value> = (0..n)
        .map(|i| json!([now - (n - i) * 300, (200 + (i % 9) as u64) * MI]))
        .collect();
    let kills: Vec<Value> = (0..6)
        .map(|i| json!([now - 600 - i * 1800, 256 * MI]))
        .collect();
    let restarts: Vec<i64> = (0..6).map(|i| now - 600 - i * 1800).collect();
    let workloads: Vec<Value> = [("frozen", "leaky"), ("gitops", "synced")]
        .iter()
        .map(|(ns, name)| {
            json!({"namespace": ns, "kind": "Deployment", "name": name,
                   "containers": {"web": {"peaks": peaks, "oomKills": kills,
                                          "restarts": restarts, "limit": "256Mi"}}})
        })
        .collect();
    let h = json!({"apiVersion": "oomguard.io/v1", "kind": "History", "now": now,
                   "workloads": workloads});
    let path = dir.join("history.json");
    std::fs::write(&path, serde_json::to_string(&h).unwrap()).unwrap();
    path
}

fn deployment(ns: &str, name: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: web
        image: registry.example/{name}:1
        resources: {{limits: {{memory: 256Mi}}}}
"#
    )
}

/// A change freeze for oomguard's identity in `frozen`.
const FREEZE: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: change-freeze}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["UPDATE"]
      resources: ["deployments", "deployments/scale"]
  matchConditions:
  - name: oomguard
    expression: "request.userInfo.username == 'system:serviceaccount:oomguard-test:reconciler'"
  validations:
  - expression: "false"
    message: "change freeze: no automated changes in this namespace"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: change-freeze}
spec:
  policyName: change-freeze
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: frozen}
"#;

struct Reconciler {
    child: Child,
    admin: u16,
    log: std::path::PathBuf,
}

impl Reconciler {
    fn metric(&self, line_prefix: &str) -> Option<f64> {
        let out = Command::new("curl")
            .args(["-fsS", "--noproxy", "*"])
            .arg(format!("http://127.0.0.1:{}/metrics", self.admin))
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(line_prefix))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Reconciler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What oomguard's identity wrote to `ns/name` (writes to the Deployment and its subresources),
/// as the apiserver's audit log says, refused ones included: (verb, subresource, HTTP code).
fn writes(cp: &ControlPlane, ns: &str, name: &str) -> Vec<(String, String, u64)> {
    cp.audit()
        .into_iter()
        .filter(|e| e["stage"] == "ResponseComplete" && e["user"]["username"] == SA)
        .filter(|e| {
            let o = &e["objectRef"];
            o["resource"] == "deployments" && o["namespace"] == ns && o["name"] == name
        })
        .filter(|e| matches!(e["verb"].as_str(), Some("update" | "patch")))
        .map(|e| {
            (
                e["verb"].as_str().unwrap_or("").to_string(),
                e["objectRef"]["subresource"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                e["responseStatus"]["code"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn refused_and_reverted_actions_back_off_and_stop() {
    let cp = ControlPlane::start(false);
    let work = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let history = history(work.path(), now);
    for ns in ["oomguard-test", "frozen", "gitops"] {
        cp.ok(&["create", "namespace", ns]);
    }
    cp.ok(&[
        "create",
        "clusterrolebinding",
        "oomguard-test-admin",
        "--clusterrole=cluster-admin",
        "--serviceaccount=oomguard-test:reconciler",
    ]);
    cp.apply(FREEZE);
    cp.apply(&deployment("frozen", "leaky"));
    // The policy takes a moment to reach the apiserver's admission chain: until oomguard's
    // identity is refused there (a server-side dry run as it), nothing starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cp.kubectl(
            &[
                "-n",
                "frozen",
                "annotate",
                "deployment/leaky",
                "probe=1",
                "--dry-run=server",
                &format!("--as={SA}"),
            ],
            None,
        );
        if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("change freeze") {
            break;
        }
        assert!(Instant::now() < deadline, "the freeze never took effect");
        std::thread::sleep(Duration::from_millis(500));
    }
    let synced = deployment("gitops", "synced");
    let gitops = |cp: &ControlPlane| {
        cp.kubectl(
            &[
                "apply",
                "--server-side",
                "--field-manager=argocd-controller",
                "--force-conflicts",
                "-f",
                "-",
            ],
            Some(&synced),
        )
    };
    assert!(gitops(&cp).status.success());

    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for ns in ["frozen", "gitops"] {
        std::fs::write(
            policies.join(format!("{ns}.yaml")),
            "apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec:\n  mode: warn\n  \
             reconcile: {enabled: true, cooldown: 10s, verifyWindow: 1h, resizeMethod: template}\n",
        )
        .unwrap();
    }
    let kubeconfig = work.path().join("reconciler.kubeconfig");
    cp.kubeconfig_for("oomguard-test", "reconciler", &kubeconfig);
    let admin = free_port();
    let log = work.path().join("reconcile.log");
    let f = std::fs::File::create(&log).unwrap();
    let child = Command::new(BIN)
        .arg("reconcile")
        .arg("--policies")
        .arg(&policies)
        .arg("--history")
        .arg(&history)
        .args(["--interval", "2s"])
        .args(["--lease-namespace", "oomguard-test"])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "oomguard=debug,info")
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    let r = Reconciler { child, admin, log };

    // The GitOps controller's self-heal: the manifest from Git, every 3 s.
    let stop = Arc::new(AtomicBool::new(false));
    let syncer = {
        let (stop, kubectl, kubeconfig, synced) = (
            stop.clone(),
            cp.kubectl.clone(),
            cp.kubeconfig.clone(),
            synced.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let mut c = Command::new(&kubectl)
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args([
                        "apply",
                        "--server-side",
                        "--field-manager=argocd-controller",
                        "--force-conflicts",
                        "-f",
                        "-",
                    ])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                if let Some(mut i) = c.stdin.take() {
                    use std::io::Write;
                    let _ = i.write_all(synced.as_bytes());
                }
                let _ = c.wait();
                std::thread::sleep(Duration::from_secs(3));
            }
        })
    };

    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(WINDOW_SECS));
    stop.store(true, Ordering::SeqCst);
    let _ = syncer.join();
    let log_text = std::fs::read_to_string(&r.log).unwrap_or_default();

    // The freeze: every write refused, and few of them.
    let frozen = writes(&cp, "frozen", "leaky");
    assert!(!frozen.is_empty(), "it tried at all:\n{log_text}");
    assert!(frozen.iter().all(|w| w.2 >= 400), "{frozen:?}");
    assert!(
        frozen.len() <= 3,
        "{} refused writes in {:?} (backoff: at most 3): {frozen:?}",
        frozen.len(),
        started.elapsed()
    );
    let events = cp.events("frozen", "leaky");
    let refused = events
        .iter()
        .find(|e| e.0 == "RemediationRefused")
        .unwrap_or_else(|| panic!("no RemediationRefused Event: {events:?}\n{log_text}"));
    assert!(refused.1.contains("change freeze"), "{refused:?}");
    assert!(refused.1.contains("tries again in"), "{refused:?}");
    assert!(
        r.metric("oomguard_reconcile_refusals_total{action=\"raise-limit\"} ")
            .is_some_and(|n| n >= 1.0),
        "the refusals are counted"
    );
    assert_eq!(
        r.metric("oomguard_reconcile_backing_off_workloads "),
        Some(1.0)
    );

    // The revert loop: one raise, then nothing but an Event saying what to commit.
    let reverted = writes(&cp, "gitops", "synced");
    eprintln!(
        "write budget over {:?}: {} refused writes under the freeze {frozen:?}; {} writes under the revert loop {reverted:?}",
        started.elapsed(),
        frozen.len(),
        reverted.len()
    );
    assert!(
        !reverted.is_empty() && reverted.len() <= 3,
        "{} writes under the revert loop (at most 3): {reverted:?}\n{log_text}",
        reverted.len()
    );
    let events = cp.events("gitops", "synced");
    let blocked: Vec<_> = events.iter().filter(|e| e.0 == "RaiseBlocked").collect();
    assert_eq!(blocked.len(), 1, "one Event, once: {events:?}\n{log_text}");
    assert!(
        blocked[0].1.contains("was set back by argocd-controller"),
        "{blocked:?}"
    );
    assert!(
        blocked[0]
            .1
            .contains("commit resources.limits.memory: 563Mi for web"),
        "{blocked:?}"
    );
    let d = cp.json("gitops", "deployment/synced");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"], "256Mi",
        "Git's value stands"
    );
}
