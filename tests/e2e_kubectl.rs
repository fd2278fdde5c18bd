//! End to end: `kubectl apply` through a real kube-apiserver (and etcd) to `oomguard serve`.
//!
//! The control plane is the project's own build (tests/controlplane, Kubernetes 1.36, cached in
//! ~/.cache/oomguard); the webhook is registered with `clientConfig.url: https://127.0.0.1:PORT`
//! and the caBundle that `oomguard certs` made. One test runs the scenarios in order so that they
//! share one control plane.

mod common;

use common::controlplane::ControlPlane;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::Serve;
use common::{free_port, repo, BIN};
use serde_json::Value;

const NS: &str = "self-healing-platform";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn limit_of(obj: &Value) -> &str {
    obj.pointer("/spec/template/spec/containers/0/resources/limits/memory")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The scenarios with each way of registering oomguard (`oomguard certs --webhooks two|one`),
/// on one control plane: the same warnings, patches and denials either way.
#[test]
fn kubectl_apply_through_the_apiserver() {
    let cp = ControlPlane::start(false);
    cp.ok(&["create", "namespace", NS]);
    let two = scenarios(&cp, "two", "validate.oomguard.io");
    let one = scenarios(&cp, "one", "admit.oomguard.io");
    assert_eq!(
        one.len(),
        two.len(),
        "one call and two calls printed different steps"
    );
    for (a, b) in one.iter().zip(&two) {
        assert_eq!(
            a.replace("admit.oomguard.io", "validate.oomguard.io"),
            *b,
            "one call and two calls printed different lines"
        );
    }
}

/// Runs warn, mutate, enforce and a stopped webhook with oomguard registered as `calls` says;
/// returns what kubectl printed at each step (stderr).
fn scenarios(cp: &ControlPlane, calls: &str, denying_hook: &str) -> Vec<String> {
    let mut printed = Vec::new();
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
            "--webhooks",
            calls,
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join(format!("{NS}.yaml")),
        common::policy("warn", ""),
    )
    .unwrap();
    let history = repo().join("examples/memory-leak-app/history.json");
    let history = history.to_str().unwrap();
    let serve = Serve::start(work.path(), port, &policies, &["--history", history]);

    let webhook_yaml = work.path().join("certs/webhook.yaml");
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        cp.ok(&["delete", kind, "oomguard", "--ignore-not-found"]);
    }
    cp.ok(&["apply", "-f", webhook_yaml.to_str().unwrap()]);
    cp.ok(&["-n", NS, "delete", "deployment,statefulset", "--all"]);
    let manifests = repo().join("examples/memory-leak-app/manifests.yaml");
    let manifests = manifests.to_str().unwrap();
    // The webhook configuration takes a moment to reach the apiserver's admission chain.
    let deadline = Instant::now() + Duration::from_secs(30);
    let warn = loop {
        let out = cp.kubectl(&["apply", "--dry-run=server", "-f", manifests], None);
        if text(&out.stderr).contains("Warning: oomguard") {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "webhook never called: {}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(warn.status.success());

    // warn: applied, with the warnings and their numbers on stderr.
    let out = cp.kubectl(&["apply", "-f", manifests], None);
    let stderr = text(&out.stderr);
    printed.push(stderr.clone());
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: oomguard: container web: limit 256Mi is below the 14d peak 301Mi; recommended 347Mi"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Warning: oomguard: container web: OOM-killed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Warning: oomguard: container cache: no memory limit"),
        "{stderr}"
    );
    assert_eq!(
        limit_of(&cp.json(NS, "deployment/web-frontend")),
        "256Mi",
        "warn mode changes nothing"
    );

    // mutate: the stored object has the raised limit and oomguard's annotations.
    cp.ok(&["-n", NS, "delete", "deployment,statefulset", "--all"]);
    serve.set_mode(&policies, NS, "mutate");
    let out = cp.kubectl(&["apply", "-f", manifests], None);
    let stderr = text(&out.stderr);
    printed.push(stderr.clone());
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "Warning: oomguard raised the memory limit of container web from 256Mi to 347Mi"
        ),
        "{stderr}"
    );
    let front = cp.json(NS, "deployment/web-frontend");
    assert_eq!(limit_of(&front), "347Mi");
    assert_eq!(
        front["metadata"]["annotations"]["oomguard.io/limits-changed"],
        "web: 256Mi -> 347Mi"
    );
    assert_eq!(
        limit_of(&cp.json(NS, "deployment/memory-leak-app")),
        "443Mi"
    );
    let version = front["metadata"]["resourceVersion"].clone();
    let generation = front["metadata"]["generation"].clone();
    // Applying the same manifests again changes nothing more. (kubectl's three-way merge sends
    // the manifest's 256Mi back and prints "configured"; oomguard raises it to the same 347Mi,
    // so the apiserver stores nothing new.)
    let out = cp.kubectl(&["apply", "-f", manifests], None);
    assert!(out.status.success());
    let again = cp.json(NS, "deployment/web-frontend");
    assert_eq!(limit_of(&again), "347Mi");
    assert_eq!(
        again["metadata"]["resourceVersion"], version,
        "the re-apply changed the stored object"
    );
    assert_eq!(again["metadata"]["generation"], generation);
    // An edit of something else re-admits the object: still no second raise.
    cp.ok(&["-n", NS, "scale", "deployment/web-frontend", "--replicas=4"]);
    cp.ok(&["-n", NS, "label", "deployment/web-frontend", "tier=front"]);
    assert_eq!(limit_of(&cp.json(NS, "deployment/web-frontend")), "347Mi");

    // enforce: refused with oomguard's message; a server dry run says the same and stores nothing.
    cp.ok(&["-n", NS, "delete", "deployment,statefulset", "--all"]);
    serve.set_mode(&policies, NS, "enforce");
    for dry in [true, false] {
        let mut args = vec!["apply", "-f", manifests];
        if dry {
            args.push("--dry-run=server");
        }
        let out = cp.kubectl(&args, None);
        let stderr = text(&out.stderr);
        printed.push(stderr.clone());
        assert!(!out.status.success(), "enforce must fail the apply");
        assert!(
            stderr.contains(&format!("admission webhook \"{denying_hook}\" denied the request: oomguard denied Deployment self-healing-platform/web-frontend")),
            "{stderr}"
        );
        assert!(
            stderr.contains("set resources.limits.memory of web to at least 347Mi"),
            "{stderr}"
        );
        let get = cp.kubectl(&["-n", NS, "get", "deployment/web-frontend"], None);
        assert!(!get.status.success(), "a denied object must not be stored");
        if dry {
            let get = cp.kubectl(&["-n", NS, "get", "statefulset/session-cache"], None);
            assert!(
                !get.status.success(),
                "dry run stored the allowed StatefulSet"
            );
        }
    }

    // The webhook stopped: failurePolicy Ignore lets the apply through.
    drop(serve);
    let out = cp.kubectl(&["apply", "-f", manifests], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("oomguard"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(limit_of(&cp.json(NS, "deployment/web-frontend")), "256Mi");
    printed
}
