//! End to end: `kubectl apply` of workloads deployed for the first time (examples/day-zero: no
//! memory history anywhere) through a real kube-apiserver to `oomguard serve`, in warn, mutate
//! and enforce mode. Their own configuration speaks: a JVM heap at its limit, a memory-backed
//! emptyDir larger than its limit, ...

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::controlplane::ControlPlane;
use common::policy;
use common::serve::{certs_for_apiserver, Serve};
use serde_json::Value;

/// A path in the repository, as text.
fn repo_path(p: &str) -> String {
    common::repo().join(p).to_string_lossy().into_owned()
}

const NS: &str = "shop";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn limit_of(obj: &Value) -> &str {
    obj.pointer("/spec/template/spec/containers/0/resources/limits/memory")
        .and_then(Value::as_str)
        .unwrap_or("")
}

const ORDERS: &str = "Warning: oomguard: container app: heap -Xmx1536m is 100% of limit 1536Mi; +384Mi non-heap: limit >= 1920Mi or -Xmx <= 1228m";
const RENDERER: &str = "Warning: oomguard: container chrome: emptyDir scratch (medium: Memory) sizeLimit 2Gi is 200% of limit 1Gi; limit >= 3Gi";

fn warning_lines(out: &Output) -> Vec<String> {
    text(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("Warning: oomguard"))
        .map(str::to_string)
        .collect()
}

#[test]
fn day_zero_through_the_apiserver() {
    let cp = ControlPlane::start(false);
    let work = tempfile::tempdir().unwrap();
    // A history that knows nothing of these workloads (the tutorial's).
    let history = repo_path("examples/memory-leak-app/history.json");
    let port = certs_for_apiserver(work.path());
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join(format!("{NS}.yaml")), policy("warn", "")).unwrap();
    let serve = Serve::start(work.path(), port, &policies, &["--history", &history]);
    let webhook = work.path().join("certs/webhook.yaml");
    cp.ok(&["apply", "-f", webhook.to_str().unwrap()]);
    cp.ok(&["create", "namespace", NS]);
    let manifests = repo_path("examples/day-zero/manifests.yaml");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cp.kubectl(&["apply", "--dry-run=server", "-f", &manifests], None);
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

    // warn: everything is created as written; each promised OOM is one line on stderr, and
    // the sound workload (catalog) gets none.
    let out = cp.kubectl(&["apply", "-f", &manifests], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = warning_lines(&out);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert!(lines.contains(&ORDERS.to_string()), "{lines:#?}");
    assert!(lines.contains(&RENDERER.to_string()), "{lines:#?}");
    assert!(
        !text(&out.stderr).contains("catalog"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(limit_of(&cp.json(NS, "deployment/orders")), "1536Mi");
    assert_eq!(limit_of(&cp.json(NS, "deployment/renderer")), "1Gi");
    // An unrelated change to a warned workload: warned again, allowed.
    let out = cp.kubectl(
        &["-n", NS, "label", "deployment/orders", "team=payments"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(warning_lines(&out), [ORDERS]);

    // mutate: the settings that alone reach the limit get the limit they need, once.
    cp.ok(&["-n", NS, "delete", "deployment,statefulset", "--all"]);
    serve.set_mode(&policies, NS, "mutate");
    let out = cp.kubectl(&["apply", "-f", &manifests], None);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: oomguard raised the memory limit of container app from 1536Mi to 1920Mi: heap -Xmx1536m is 100% of limit 1536Mi"),
        "{stderr}"
    );
    let orders = cp.json(NS, "deployment/orders");
    assert_eq!(limit_of(&orders), "1920Mi");
    assert_eq!(
        orders["metadata"]["annotations"]["oomguard.io/limits-changed"],
        "app: 1536Mi -> 1920Mi"
    );
    assert_eq!(limit_of(&cp.json(NS, "deployment/renderer")), "3Gi");
    // Redis' maxmemory leaves too little room, but is below its limit: warned, not raised.
    assert_eq!(
        cp.json(NS, "statefulset/sessions")
            .pointer("/spec/template/spec/containers/0/resources/limits/memory")
            .and_then(Value::as_str),
        Some("1G")
    );
    let version = orders["metadata"]["resourceVersion"].clone();
    let generation = orders["metadata"]["generation"].clone();
    let out = cp.kubectl(&["apply", "-f", &manifests], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = cp.json(NS, "deployment/orders");
    assert_eq!(limit_of(&again), "1920Mi");
    assert_eq!(again["metadata"]["resourceVersion"], version);
    assert_eq!(again["metadata"]["generation"], generation);

    // enforce: refused with the numbers; nothing of theirs stored; the rest created.
    cp.ok(&["-n", NS, "delete", "deployment,statefulset", "--all"]);
    serve.set_mode(&policies, NS, "enforce");
    let out = cp.kubectl(&["apply", "-f", &manifests], None);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "enforce must fail the apply: {stderr}"
    );
    assert!(
        stderr.contains("admission webhook \"validate.oomguard.io\" denied the request: oomguard denied Deployment shop/orders (policy mode enforce for namespace shop): container app: heap -Xmx1536m is 100% of limit 1536Mi"),
        "{stderr}"
    );
    assert!(
        stderr.contains("set resources.limits.memory of app to at least 1920Mi"),
        "{stderr}"
    );
    assert!(
        stderr.contains("oomguard denied Deployment shop/renderer")
            && stderr.contains("set resources.limits.memory of chrome to at least 3Gi"),
        "{stderr}"
    );
    for gone in [
        "deployment/orders",
        "deployment/renderer",
        "deployment/storefront",
    ] {
        let get = cp.kubectl(&["-n", NS, "get", gone], None);
        assert!(!get.status.success(), "{gone} was stored");
    }
    assert_eq!(limit_of(&cp.json(NS, "deployment/catalog")), "1Gi");

    // Fixed as the message says: created, and nothing more said about it.
    let fixed = std::fs::read_to_string(&manifests)
        .unwrap()
        .replace("-Xmx1536m", "-Xmx1228m");
    let out = cp.kubectl(&["apply", "-f", "-"], Some(&fixed));
    assert!(
        !text(&out.stderr).contains("shop/orders"),
        "{}",
        text(&out.stderr)
    );
    let orders = cp.json(NS, "deployment/orders");
    assert_eq!(limit_of(&orders), "1536Mi");
    assert_eq!(
        orders["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "-Xmx1228m",
        "{}",
        text(&out.stderr)
    );
    // An env change leaves memory as it was; _JAVA_OPTIONS overriding the heap is a memory
    // change, decided like a create.
    cp.ok(&[
        "-n",
        NS,
        "set",
        "env",
        "deployment/orders",
        "SPRING_PROFILES_ACTIVE=staging",
    ]);
    let out = cp.kubectl(
        &[
            "-n",
            NS,
            "set",
            "env",
            "deployment/orders",
            "_JAVA_OPTIONS=-Xmx1536m",
        ],
        None,
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("container app: heap -Xmx1536m (_JAVA_OPTIONS) is 100% of"),
        "{stderr}"
    );
}
