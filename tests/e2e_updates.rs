//! End to end: what kubectl can do to a workload that oomguard finds critical, through a real
//! kube-apiserver with kube-controller-manager (garbage collector included), in warn, mutate and
//! enforce namespaces at once. Enforcement must never get in the way of running a cluster:
//! labels, annotations, scale, `rollout restart`, `set image`, deletions (foreground and
//! background) and finalizer removal always go through; only a change that lowers memory below
//! what the workload used is refused, and oomguard never patches an update that leaves memory as
//! it was (no rollout of its own).

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::controlplane::ControlPlane;
use common::serve::{certs_for_apiserver, Serve};
use common::{policy, repo};
use serde_json::{json, Value};

const MODES: [&str; 3] = ["warn", "mutate", "enforce"];
/// Kubectl's "Warning:" line for the critical containers of the bundled history.
const BELOW_PEAK: &str = "limit 256Mi is below the 14d peak 301Mi; recommended 347Mi";
const LET_THROUGH: &str = "allowed: this update leaves memory requests and limits as they were";

fn ns(mode: &str) -> String {
    format!("upd-{mode}")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The bundled history, with each namespace given the web-frontend series (peak 301Mi) for
/// every object of the test, and memory-leak-app's OOM kills at 256Mi.
fn history(dir: &std::path::Path) -> std::path::PathBuf {
    let bundled: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/memory-leak-app/history.json")).unwrap(),
    )
    .unwrap();
    let find = |name: &str| {
        bundled["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .unwrap()
            .clone()
    };
    let (front, leak) = (find("web-frontend"), find("memory-leak-app"));
    let mut workloads = Vec::new();
    for mode in MODES {
        for (kind, name, from) in [
            ("Deployment", "web-frontend", &front),
            ("Deployment", "held", &front),
            ("Deployment", "memory-leak-app", &leak),
            ("Pod", "lonely", &front),
            ("Job", "batch-import", &front),
        ] {
            let mut w = from.clone();
            w["namespace"] = json!(ns(mode));
            w["kind"] = json!(kind);
            w["name"] = json!(name);
            workloads.push(w);
        }
    }
    let mut h = bundled.clone();
    h["workloads"] = json!(workloads);
    let path = dir.join("history.json");
    std::fs::write(&path, serde_json::to_string(&h).unwrap()).unwrap();
    path
}

/// A workload with one container `web` (the bundled history's name) at `limit`, created
/// excluded so that enforce lets it in; the test then removes the exclusion by an update.
fn manifest(kind: &str, name: &str, ns: &str, limit: &str) -> String {
    let container = format!(
        "{{name: web, image: busybox, resources: {{limits: {{memory: {limit}}}, requests: {{memory: 128Mi}}}}}}"
    );
    let meta = format!(
        "metadata: {{name: {name}, namespace: {ns}, annotations: {{oomguard.io/exclude: \"true\"}}}}"
    );
    let selector = format!("selector: {{matchLabels: {{app: {name}}}}}");
    let template = format!(
        "template: {{metadata: {{labels: {{app: {name}}}}}, spec: {{restartPolicy: {{RP}}, containers: [{container}]}}}}"
    );
    match kind {
        "Deployment" => format!(
            "apiVersion: apps/v1\nkind: Deployment\n{meta}\nspec: {{replicas: 1, {selector}, {}}}\n",
            template.replace("{RP}", "Always")
        ),
        "Job" => format!(
            "apiVersion: batch/v1\nkind: Job\n{meta}\nspec: {{{}}}\n",
            template.replace("{RP}", "Never")
        ),
        "Pod" => format!(
            "apiVersion: v1\nkind: Pod\n{meta}\nspec: {{restartPolicy: Never, containers: [{container}]}}\n"
        ),
        other => panic!("{other}"),
    }
}

struct Cluster {
    cp: ControlPlane,
}

impl Cluster {
    fn run(&self, args: &[&str]) -> Output {
        self.cp.kubectl(args, None)
    }

    /// A kubectl call that must succeed; its stderr (where kubectl prints warnings).
    fn ok(&self, what: &str, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{what}: kubectl {args:?} failed:\n{}",
            text(&out.stderr)
        );
        text(&out.stderr)
    }

    fn get(&self, ns: &str, what: &str) -> Value {
        self.cp.json(ns, what)
    }

    fn gone(&self, ns: &str, what: &str) -> bool {
        let out = self.run(&["-n", ns, "get", what, "-o", "name"]);
        !out.status.success() && text(&out.stderr).contains("NotFound")
    }

    fn create_excluded(&self, kind: &str, name: &str, ns: &str, limit: &str) {
        self.cp.apply(&manifest(kind, name, ns, limit));
        // Removing the exclusion is an update that leaves memory as it was: always allowed.
        let what = format!("{}/{name}", kind.to_lowercase());
        self.ok(
            "remove the exclusion",
            &["-n", ns, "annotate", &what, "oomguard.io/exclude-"],
        );
    }
}

fn limit(obj: &Value) -> String {
    let c = obj
        .pointer("/spec/template/spec/containers/0")
        .or_else(|| obj.pointer("/spec/containers/0"))
        .unwrap();
    c["resources"]["limits"]["memory"]
        .as_str()
        .unwrap()
        .to_string()
}

fn generation(obj: &Value) -> i64 {
    obj["metadata"]["generation"].as_i64().unwrap()
}

/// Checks the warning lines kubectl printed for an update that leaves memory as it was.
fn warned_only(mode: &str, stderr: &str, what: &str) {
    assert!(
        stderr.contains(&format!("Warning: oomguard: container web: {BELOW_PEAK}")),
        "{mode} {what}: {stderr}"
    );
    assert_eq!(
        stderr.contains(LET_THROUGH),
        mode == "enforce",
        "{mode} {what}: {stderr}"
    );
    assert!(
        !stderr.contains("raised the memory limit"),
        "{mode} {what}: {stderr}"
    );
}

#[test]
fn updates_deletions_and_finalizers_always_go_through() {
    let cp = ControlPlane::start(true);
    let work = tempfile::tempdir().unwrap();
    let port = certs_for_apiserver(work.path());
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for mode in MODES {
        std::fs::write(
            policies.join(format!("{}.yaml", ns(mode))),
            // The policy owner lets workloads opt out even in enforce (exclude.annotation), so
            // that the test can create the objects it then updates.
            policy(mode, "  exclude: {annotation: true}\n"),
        )
        .unwrap();
    }
    let history = history(work.path());
    let _serve = Serve::start(
        work.path(),
        port,
        &policies,
        &["--history", history.to_str().unwrap()],
    );
    let c = Cluster { cp };
    let webhook = work.path().join("certs/webhook.yaml");
    c.ok("register", &["apply", "-f", webhook.to_str().unwrap()]);
    for mode in MODES {
        c.ok("namespace", &["create", "namespace", &ns(mode)]);
    }
    // The webhook configuration takes a moment to reach the apiserver's admission chain.
    let probe = manifest("Deployment", "web-frontend", &ns("warn"), "256Mi")
        .replace("oomguard.io/exclude: \"true\"", "probe: \"1\"");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out =
            c.cp.kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&probe));
        if text(&out.stderr).contains("Warning: oomguard") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "webhook never called: {}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    for mode in MODES {
        let n = ns(mode);
        let n = n.as_str();
        let deploy = "deployment/web-frontend";
        c.create_excluded("Deployment", "web-frontend", n, "256Mi");
        let before = c.get(n, deploy);
        assert_eq!(
            limit(&before),
            "256Mi",
            "{mode}: removing the exclusion patched it"
        );
        let g0 = generation(&before);

        // Metadata: no rollout, no change of the limit, never refused.
        let e = c.ok("label", &["-n", n, "label", deploy, "team=payments"]);
        let after = c.get(n, deploy);
        assert_eq!(
            generation(&after),
            g0,
            "{mode}: a label bumped the generation"
        );
        warned_only(mode, &e, "label");
        let e = c.ok("annotate", &["-n", n, "annotate", deploy, "note=on-call"]);
        warned_only(mode, &e, "annotate");
        // (Kubernetes bumps a Deployment's generation for an annotation, which it copies to the
        // ReplicaSet; the pod template must be as it was: no rollout.)
        let after = c.get(n, deploy);
        assert_eq!(
            after["spec"]["template"], before["spec"]["template"],
            "{mode}: the template changed"
        );

        // Scale goes through the subresource: not even looked at.
        let e = c.ok("scale", &["-n", n, "scale", deploy, "--replicas=3"]);
        assert!(!e.contains("oomguard"), "{mode} scale: {e}");
        let after = c.get(n, deploy);
        assert_eq!(after["spec"]["replicas"], 3, "{mode}");
        assert_eq!(limit(&after), "256Mi", "{mode}");
        let g1 = generation(&after);

        // A rollout restart and a new image change the template but not memory: warnings only,
        // and in mutate mode no patch of ours rides along (one generation, limit as it was).
        let e = c.ok("rollout restart", &["-n", n, "rollout", "restart", deploy]);
        warned_only(mode, &e, "rollout restart");
        let e = c.ok(
            "set image",
            &["-n", n, "set", "image", deploy, "web=busybox:1.37"],
        );
        warned_only(mode, &e, "set image");
        let after = c.get(n, deploy);
        assert_eq!(
            generation(&after),
            g1 + 2,
            "{mode}: one generation per change"
        );
        assert_eq!(
            limit(&after),
            "256Mi",
            "{mode}: an update without memory was patched"
        );
        assert!(
            after["spec"]["template"]["metadata"]["annotations"]
                ["kubectl.kubernetes.io/restartedAt"]
                .is_string(),
            "{mode}"
        );

        // Lowering the limit below the observed peak is decided like a create.
        let lower = c.run(&[
            "-n",
            n,
            "set",
            "resources",
            deploy,
            "-c",
            "web",
            "--limits=memory=200Mi",
        ]);
        let e = text(&lower.stderr);
        let after = c.get(n, deploy);
        match mode {
            "warn" => {
                assert!(lower.status.success(), "{e}");
                assert!(e.contains("limit 200Mi is below the 14d peak 301Mi"), "{e}");
                assert_eq!(limit(&after), "200Mi");
            }
            "mutate" => {
                assert!(lower.status.success(), "{e}");
                assert!(
                    e.contains(
                        "oomguard raised the memory limit of container web from 200Mi to 347Mi"
                    ),
                    "{e}"
                );
                assert_eq!(limit(&after), "347Mi");
                assert_eq!(
                    after["metadata"]["annotations"]["oomguard.io/limits-changed"],
                    "web: 200Mi -> 347Mi"
                );
            }
            _ => {
                assert_eq!(lower.status.code(), Some(1), "{e}");
                assert!(
                    e.contains(
                        "denied the request: oomguard denied Deployment upd-enforce/web-frontend"
                    ),
                    "{e}"
                );
                assert!(e.contains("limit 200Mi is below the 14d peak 301Mi"), "{e}");
                assert!(
                    e.contains("set resources.limits.memory of web to at least 347Mi"),
                    "{e}"
                );
                assert_eq!(limit(&after), "256Mi", "a denied change was stored");
            }
        }
        // Raising it is always fine and needs no word.
        let e = c.ok(
            "raise",
            &[
                "-n",
                n,
                "set",
                "resources",
                deploy,
                "-c",
                "web",
                "--limits=memory=512Mi",
            ],
        );
        assert!(!e.contains("oomguard"), "{mode} raise: {e}");
        assert_eq!(limit(&c.get(n, deploy)), "512Mi", "{mode}");

        // A custom finalizer, removed by an update while the object is being deleted, with a
        // critical limit set meanwhile: nothing about it is refused or patched.
        c.create_excluded("Deployment", "held", n, "256Mi");
        c.ok(
            "add a finalizer",
            &[
                "-n",
                n,
                "patch",
                "deployment/held",
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
            ],
        );
        c.ok(
            "delete held",
            &["-n", n, "delete", "deployment/held", "--wait=false"],
        );
        let held = c.get(n, "deployment/held");
        assert!(held["metadata"]["deletionTimestamp"].is_string(), "{mode}");
        let e = c.ok(
            "lower while deleting",
            &[
                "-n",
                n,
                "set",
                "resources",
                "deployment/held",
                "-c",
                "web",
                "--limits=memory=200Mi",
            ],
        );
        assert!(
            !e.contains("oomguard"),
            "{mode}: a deleting object was judged: {e}"
        );
        assert_eq!(
            limit(&c.get(n, "deployment/held")),
            "200Mi",
            "{mode}: patched while deleting"
        );
        c.ok(
            "remove the finalizer",
            &[
                "-n",
                n,
                "patch",
                "deployment/held",
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.gone(n, "deployment/held") {
            assert!(Instant::now() < deadline, "{mode}: held never went away");
            std::thread::sleep(Duration::from_millis(200));
        }

        // Foreground deletion: the garbage collector removes `foregroundDeletion` with an update
        // once the ReplicaSets are gone; it must finish.
        c.create_excluded("Deployment", "memory-leak-app", n, "256Mi");
        let rs_deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let rs = c.cp.json(n, "replicasets");
            if rs["items"].as_array().is_some_and(|i| {
                i.iter()
                    .any(|r| r["metadata"]["ownerReferences"][0]["name"] == "memory-leak-app")
            }) {
                break;
            }
            assert!(
                Instant::now() < rs_deadline,
                "{mode}: no ReplicaSet for memory-leak-app"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let start = Instant::now();
        c.ok(
            "foreground delete",
            &[
                "-n",
                n,
                "delete",
                "deployment/memory-leak-app",
                "--cascade=foreground",
                "--timeout=90s",
            ],
        );
        assert!(c.gone(n, "deployment/memory-leak-app"), "{mode}");
        eprintln!(
            "{mode}: foreground delete took {:.1}s",
            start.elapsed().as_secs_f64()
        );

        // Background deletion.
        c.ok(
            "background delete",
            &["-n", n, "delete", deploy, "--timeout=60s"],
        );
        assert!(c.gone(n, deploy), "{mode}");

        // Pods and Jobs: their updates are never judged (resources change by resize only; a
        // Job's template is immutable), whatever their history says.
        for (kind, name) in [("Pod", "lonely"), ("Job", "batch-import")] {
            c.create_excluded(kind, name, n, "256Mi");
            let what = format!("{}/{name}", kind.to_lowercase());
            let e = c.ok("label", &["-n", n, "label", &what, "team=payments"]);
            assert!(!e.contains("oomguard"), "{mode} {kind}: {e}");
            let e = c.ok("annotate", &["-n", n, "annotate", &what, "note=x"]);
            assert!(!e.contains("oomguard"), "{mode} {kind}: {e}");
            c.ok("delete", &["-n", n, "delete", &what, "--wait=false"]);
        }
    }
}
