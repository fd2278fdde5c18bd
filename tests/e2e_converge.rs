//! End to end through kubectl and a real kube-apiserver: admission answers that the cluster
//! accepts and that stop regressions, not workloads. Each case failed before its fix:
//! - `missingLimit: add` never adds a limit below the request (the apiserver refused the
//!   apply) nor one sized by a memory emptyDir alone;
//! - enforce lets an update through when it makes no container worse than the stored object had
//!   it (a raise towards the need, a sidecar beside an old critical container), and refuses one
//!   that does;
//! - a pod-level memory limit bounds every raise (a container limit above it is invalid);
//! - OOM kills answered by a raise that ran clean do not make the raised limit critical.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::controlplane::ControlPlane;
use common::policy;
use common::serve::{certs_for_apiserver, Serve};
use serde_json::{json, Value};

const MI: u64 = 1024 * 1024;
const NOW: i64 = 1_795_392_000;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// 14 days of 5-minute peaks around `level` MiB with one at `top` MiB.
fn peaks(level: u64, top: u64) -> Vec<Value> {
    let n = 14 * 288;
    (0..n)
        .map(|i| {
            let t = NOW - (n - i) * 300;
            let mib = if i == n / 2 {
                top
            } else {
                level + (i as u64 % 7)
            };
            json!([t, mib * MI])
        })
        .collect()
}

/// The history every namespace of the test reads: `frontend`-like workloads (peak 301Mi) and
/// `raised`: six kills at 256Mi three days ago, a raise to 443Mi 36 h ago, ~306 MiB since.
fn history(dir: &std::path::Path, namespaces: &[&str]) -> std::path::PathBuf {
    let mut workloads = Vec::new();
    for ns in namespaces {
        for name in ["frontend", "pod-bound"] {
            workloads.push(json!({"namespace": ns, "kind": "Deployment", "name": name,
                "containers": {"web": {"peaks": peaks(200, 301)}}}));
        }
        let kills: Vec<Value> = (0..6)
            .map(|i| json!([NOW - 3 * 86_400 - i * 900, 256 * MI]))
            .collect();
        workloads.push(
            json!({"namespace": ns, "kind": "Deployment", "name": "raised",
            "containers": {"web": {
                "peaks": peaks(300, 306),
                "oomKills": kills,
                "restarts": (0..6).map(|i| NOW - 3 * 86_400 - i * 900).collect::<Vec<_>>(),
                "limit": "443Mi",
                "limitHistory": [[NOW - 14 * 86_400, 256 * MI], [NOW - 36 * 3600, 443 * MI]]}}}),
        );
    }
    let h = json!({"apiVersion": "oomguard.io/v1", "kind": "History", "now": NOW,
                   "workloads": workloads});
    let path = dir.join("history.json");
    std::fs::write(&path, serde_json::to_string(&h).unwrap()).unwrap();
    path
}

fn deployment(ns: &str, name: &str, pod_extra: Value, containers: Value) -> String {
    let mut spec = json!({"containers": containers});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), pod_extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_string(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}
    }))
    .unwrap()
}

fn web(limit: Option<&str>) -> Value {
    match limit {
        Some(l) => json!({"name": "web", "image": "busybox",
                          "resources": {"limits": {"memory": l}}}),
        None => json!({"name": "web", "image": "busybox"}),
    }
}

struct Cluster {
    cp: ControlPlane,
}

impl Cluster {
    fn apply(&self, yaml: &str) -> Output {
        self.cp.kubectl(&["apply", "-f", "-"], Some(yaml))
    }

    fn ok(&self, what: &str, out: Output) -> String {
        assert!(
            out.status.success(),
            "{what}: kubectl failed:\n{}",
            text(&out.stderr)
        );
        text(&out.stderr)
    }

    fn refused(&self, what: &str, out: Output) -> String {
        assert!(!out.status.success(), "{what}: kubectl succeeded");
        text(&out.stderr)
    }

    fn container(&self, ns: &str, name: &str, i: usize) -> Value {
        self.cp.json(ns, &format!("deployment/{name}"))["spec"]["template"]["spec"]["containers"][i]
            .clone()
    }
}

#[test]
fn admission_answers_the_cluster_accepts_and_that_stop_only_regressions() {
    let cp = ControlPlane::start(false);
    let work = tempfile::tempdir().unwrap();
    let port = certs_for_apiserver(work.path());
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let (mutate, enforce) = ("conv-mutate", "conv-enforce");
    std::fs::write(
        policies.join(format!("{mutate}.yaml")),
        policy("mutate", "  missingLimit: add\n"),
    )
    .unwrap();
    std::fs::write(
        policies.join(format!("{enforce}.yaml")),
        "apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec: {mode: enforce, history: {window: 14d}}\n",
    )
    .unwrap();
    let history = history(work.path(), &[mutate, enforce]);
    let _serve = Serve::start(
        work.path(),
        port,
        &policies,
        &["--history", history.to_str().unwrap()],
    );
    let c = Cluster { cp };
    for ns in [mutate, enforce] {
        c.ok(
            "namespace",
            c.cp.kubectl(&["create", "namespace", ns], None),
        );
    }
    // What is already stored before oomguard is registered: a critical frontend (256Mi under a
    // 301Mi peak), in the enforce namespace.
    c.ok(
        "the stored frontend",
        c.apply(&deployment(
            enforce,
            "frontend",
            json!({}),
            json!([web(Some("256Mi"))]),
        )),
    );
    let webhook = work.path().join("certs/webhook.yaml");
    c.ok(
        "register",
        c.cp.kubectl(&["apply", "-f", webhook.to_str().unwrap()], None),
    );
    let probe = deployment(mutate, "frontend", json!({}), json!([web(Some("256Mi"))]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out =
            c.cp.kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&probe));
        if text(&out.stderr).contains("oomguard") {
            break;
        }
        assert!(Instant::now() < deadline, "webhook never called");
        std::thread::sleep(Duration::from_millis(500));
    }

    // 1. missingLimit: add, on day zero (no history). A JVM with a 2Gi request and no limit: the
    //    heap's floor (640Mi) is under the request, and a limit under the request is invalid;
    //    the added limit is 2Gi.
    let jvm = json!({"name": "web", "image": "busybox",
        "command": ["java", "-Xmx512m", "-jar", "app.jar"],
        "resources": {"requests": {"memory": "2Gi"}}});
    c.ok(
        "a JVM with a request and no limit",
        c.apply(&deployment(
            mutate,
            "jvm-requested",
            json!({}),
            json!([jvm]),
        )),
    );
    let stored = c.container(mutate, "jvm-requested", 0);
    assert_eq!(stored["resources"]["limits"]["memory"], "2Gi", "{stored}");
    //    No history, only a 256Mi memory emptyDir to go by: no limit of 256Mi (the process
    //    would have none).
    let shm = json!({"name": "web", "image": "busybox",
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}]});
    let vols = json!({"volumes": [{"name": "shm",
        "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}]});
    let err = c.ok(
        "a container with a memory emptyDir only",
        c.apply(&deployment(mutate, "shm-only", vols, json!([shm]))),
    );
    assert!(
        err.contains("its memory emptyDirs alone hold 256Mi"),
        "{err}"
    );
    let stored = c.container(mutate, "shm-only", 0);
    assert!(stored["resources"]["limits"].is_null(), "{stored}");

    // 2. enforce stops regressions relative to the stored object. Raising 256Mi to 300Mi (still
    //    under the 301Mi peak) goes through with the warning: it is better than it was.
    let err = c.ok(
        "a raise towards the need",
        c.cp.kubectl(
            &[
                "-n",
                enforce,
                "set",
                "resources",
                "deployment/frontend",
                "--limits=memory=300Mi",
            ],
            None,
        ),
    );
    assert!(err.contains("below the 14d peak 301Mi"), "{err}");
    assert!(err.contains("no worse than it was"), "{err}");
    assert_eq!(
        c.container(enforce, "frontend", 0)["resources"]["limits"]["memory"],
        "300Mi"
    );
    //    A sidecar added beside it: the container is no worse, the sidecar sound.
    let sidecar = json!([web(Some("300Mi")),
        {"name": "proxy", "image": "busybox", "resources": {"limits": {"memory": "512Mi"}}}]);
    c.ok(
        "a sidecar beside a critical container",
        c.apply(&deployment(enforce, "frontend", json!({}), sidecar)),
    );
    //    Lowering it is a regression: refused, naming the container and the fix.
    let err = c.refused(
        "a lower limit",
        c.cp.kubectl(
            &[
                "-n",
                enforce,
                "set",
                "resources",
                "deployment/frontend",
                "-c",
                "web",
                "--limits=memory=200Mi",
            ],
            None,
        ),
    );
    assert!(
        err.contains("denied the request: oomguard denied Deployment conv-enforce/frontend"),
        "{err}"
    );
    assert!(
        err.contains("container web: limit 200Mi is below the 14d peak 301Mi"),
        "{err}"
    );

    // 3. A pod-level limit of 300Mi bounds the container's: a raise to 347Mi would be invalid.
    let bounded = deployment(
        mutate,
        "pod-bound",
        json!({"resources": {"limits": {"memory": "300Mi"}}}),
        json!([web(Some("256Mi"))]),
    );
    let err = c.ok("a container under a pod-level limit", c.apply(&bounded));
    assert!(
        err.contains("above the pod's memory limit 300Mi (spec.resources.limits.memory)"),
        "{err}"
    );
    assert_eq!(
        c.container(mutate, "pod-bound", 0)["resources"]["limits"]["memory"],
        "256Mi"
    );

    // 4. Kills at 256Mi answered by a raise to 443Mi that ran clean for 36 h: 443Mi is not
    //    critical (the kills' own bump, 563Mi, was asked at every apply).
    let err = c.ok(
        "the raised limit",
        c.apply(&deployment(
            enforce,
            "raised",
            json!({}),
            json!([web(Some("443Mi"))]),
        )),
    );
    assert!(!err.contains("OOM-killed"), "{err}");
    //    Put back to 256Mi it is critical again, and asks for the raise.
    let err = c.refused(
        "back below the raise",
        c.cp.kubectl(
            &[
                "-n",
                enforce,
                "set",
                "resources",
                "deployment/raised",
                "--limits=memory=256Mi",
            ],
            None,
        ),
    );
    assert!(
        err.contains("set resources.limits.memory of web to at least 443Mi"),
        "{err}"
    );
}
