//! `oomguard check` as a CI pipeline runs it.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{repo, BIN};

fn check(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(repo()).arg("check").args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

const DEMO: [&str; 6] = [
    "-f",
    "examples/memory-leak-app/manifests.yaml",
    "--history",
    "examples/memory-leak-app/history.json",
    "--policies",
    "policies",
];

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_bundled_demo_warns_like_kubectl() {
    let out = check(&DEMO, None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(
        "Warning: oomguard: container web: limit 256Mi is below the 14d peak 301Mi; recommended 347Mi"
    ));
    // 1262 kills at 256Mi: three bump steps, 256Mi × 1.2³ = 442.4Mi → 443Mi.
    assert!(
        stdout.contains("Warning: oomguard: container web: OOM-killed 1262x in 14d at limit 256Mi")
            && stdout.contains("recommended 443Mi"),
        "{stdout}"
    );
    assert!(
        stdout.contains("container cache: no memory limit"),
        "{stdout}"
    );
    assert!(stdout.contains("consider lowering it"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l == "pass: 0, warn: 4, fail: 0"),
        "{stdout}"
    );
    assert!(stdout
        .lines()
        .all(|l| !l.starts_with("Warning: ") || l.len() <= "Warning: ".len() + 120));
}

#[test]
fn enforce_fails_the_pipeline_and_fail_on_warn_too() {
    let mut args = DEMO.to_vec();
    args.extend(["--mode", "enforce"]);
    let out = check(&args, None);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("denied the request"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l == "pass: 0, warn: 2, fail: 2"),
        "{stdout}"
    );

    let mut args = DEMO.to_vec();
    args.push("--fail-on-warn");
    assert_eq!(check(&args, None).status.code(), Some(1));
}

#[test]
fn yaml_output_is_the_mutated_manifests() {
    let mut args = DEMO.to_vec();
    args.extend(["--mode", "mutate", "-o", "yaml"]);
    let out = check(&args, None);
    assert_eq!(out.status.code(), Some(0));
    let docs = oomguard::check::parse_documents("out", &text(&out.stdout)).unwrap();
    assert_eq!(docs.len(), 5, "every input document comes out, in order");
    let frontend = &docs[1];
    assert_eq!(
        frontend.pointer("/spec/template/spec/containers/0/resources/limits/memory"),
        Some(&serde_json::json!("347Mi"))
    );
    assert_eq!(
        frontend.pointer("/metadata/annotations/oomguard.io~1limits-changed"),
        Some(&serde_json::json!("web: 256Mi -> 347Mi"))
    );
    assert!(text(&out.stderr).contains(
        "Warning: oomguard raised the memory limit of container web from 256Mi to 347Mi"
    ));
    // Checking the mutated output again under the same policies finds nothing more to raise
    // (the namespace's policy bumps × 1.2; the built-in default's × 1.3 would ask for more).
    let again = check(
        &[
            "-f",
            "-",
            "--history",
            "examples/memory-leak-app/history.json",
            "--policies",
            "policies",
            "--mode",
            "mutate",
            "-o",
            "yaml",
        ],
        Some(&text(&out.stdout)),
    );
    assert!(
        !text(&again.stderr).contains("raised the memory limit"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn json_output_carries_the_verdicts() {
    let mut args = DEMO.to_vec();
    args.extend(["-o", "json"]);
    let out = check(&args, None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["warn"], 4);
    let frontend = &v["results"][1];
    assert_eq!(
        frontend["verdict"]["containers"][0]["recommended"],
        347 * 1024 * 1024
    );
    assert_eq!(frontend["verdict"]["containers"][0]["severity"], "critical");
}

#[test]
fn bad_input_is_a_clear_error_with_exit_2() {
    let out = check(&["-f", "-"], Some("apiVersion: apps/v1\nkind: [\n"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("-: document 1: not valid YAML"),
        "{}",
        text(&out.stderr)
    );

    let out = check(&["-f", "no/such/file.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("reading the manifests from no/such/file.yaml"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.yaml"),
        "apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec: {headroom: lots}\n",
    )
    .unwrap();
    let out = check(
        &[
            "-f",
            "examples/memory-leak-app/manifests.yaml",
            "--policies",
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("default.yaml") && err.contains("spec.headroom"),
        "{err}"
    );

    let hist = dir.path().join("h.json");
    std::fs::write(
        &hist,
        "{\"apiVersion\": \"oomguard.io/v1\", \"kind\": \"History\"}",
    )
    .unwrap();
    let out = check(
        &[
            "-f",
            "examples/memory-leak-app/manifests.yaml",
            "--history",
            hist.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("missing field `now`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn without_history_every_limit_is_unknown_not_failed() {
    let out = check(
        &[
            "-f",
            "examples/memory-leak-app/manifests.yaml",
            "--mode",
            "enforce",
        ],
        None,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // Nothing known, nothing claimed: no Warning lines, each workload said to be checked on
    // its configuration only (the one without a limit is still told to set one).
    assert!(
        stdout.contains("deployment/memory-leak-app (self-healing-platform): pass (configuration only: no memory history yet)"),
        "{stdout}"
    );
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Warning:"))
        .collect();
    assert_eq!(
        warnings,
        ["Warning: oomguard: container cache: no memory limit; set resources.limits.memory (no history yet to size it from)"],
        "{stdout}"
    );
    assert!(
        stdout.contains("configuration only: 4 of 4 workloads (no memory history yet"),
        "{stdout}"
    );
    assert!(stdout.contains("pass: 3, warn: 1, fail: 0"), "{stdout}");
}

const DAY_ZERO: [&str; 2] = ["-f", "examples/day-zero/manifests.yaml"];

/// Workloads deployed for the first time: no history anywhere, each OOM promised by its own
/// configuration, one line each with the arithmetic and the fix; the sound one says nothing.
#[test]
fn day_zero_configurations_are_checked_without_history() {
    let out = check(&DAY_ZERO, None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Warning:"))
        .collect();
    assert_eq!(
        warnings,
        [
            "Warning: oomguard: container app: heap -Xmx1536m is 100% of limit 1536Mi; +384Mi non-heap: limit >= 1920Mi or -Xmx <= 1228m",
            "Warning: oomguard: container redis: maxmemory 900mb is 94% of limit 1G; 75% max: limit >= 1200Mi or maxmemory <= 715mb",
            "Warning: oomguard: container web: --max-old-space-size=2048 is 100% of limit 2Gi; 75% max: limit >= 2731Mi",
            "Warning: oomguard: container gw: GOMEMLIMIT=2GiB is 100% of limit 2Gi; 10% headroom: limit >= 2276Mi or GOMEMLIMIT <= 1843MiB",
            "Warning: oomguard: container chrome: emptyDir scratch (medium: Memory) sizeLimit 2Gi is 200% of limit 1Gi; limit >= 3Gi",
            "Warning: oomguard: container api: DOTNET_GCHeapHardLimitPercent=50 (hex) is 80% of 1Gi; 75% max: GCHeapHardLimitPercent <= 0x4B",
        ],
        "{stdout}"
    );
    assert!(warnings
        .iter()
        .all(|l| l.chars().count() <= "Warning: ".len() + 120));
    // docs/day-zero.md shows this very output.
    let page = std::fs::read_to_string(repo().join("docs/day-zero.md")).unwrap();
    for l in &warnings {
        assert!(page.contains(l), "docs/day-zero.md's example lacks: {l}");
    }
    // The sound one (a 75% heap, a 32Mi memory volume, JAVA_OPTS from a ConfigMap): nothing.
    assert!(
        stdout.contains(
            "deployment/catalog (shop): pass (configuration only: no memory history yet)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("pass: 1, warn: 6, fail: 0"), "{stdout}");

    // enforce: the three whose setting alone reaches the limit are refused; the rest warn.
    let mut args = DAY_ZERO.to_vec();
    args.extend(["--mode", "enforce"]);
    let out = check(&args, None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("pass: 1, warn: 3, fail: 3"), "{stdout}");
    assert!(
        stdout.contains("denied the request: oomguard denied Deployment shop/orders (policy mode enforce for namespace shop): container app: heap -Xmx1536m is 100% of limit 1536Mi; +384Mi non-heap: limit >= 1920Mi or -Xmx <= 1228m; set resources.limits.memory of app to at least 1920Mi."),
        "{stdout}"
    );
}

#[test]
fn day_zero_raises_in_mutate_mode_once() {
    let mut args = DAY_ZERO.to_vec();
    args.extend(["--mode", "mutate", "-o", "yaml"]);
    let out = check(&args, None);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    for line in [
        "Warning: oomguard raised the memory limit of container app from 1536Mi to 1920Mi: heap -Xmx1536m is 100% of limit 1536Mi",
        "Warning: oomguard raised the memory limit of container web from 2Gi to 2731Mi: --max-old-space-size=2048 is 100% of limit 2Gi",
    ] {
        assert!(stderr.lines().any(|l| l == line), "{line}\n{stderr}");
    }
    let docs = oomguard::check::parse_documents("out", &text(&out.stdout)).unwrap();
    let limit = |i: usize| {
        docs[i]
            .pointer("/spec/template/spec/containers/0/resources/limits/memory")
            .cloned()
    };
    assert_eq!(limit(0), Some(serde_json::json!("1920Mi")));
    assert_eq!(limit(2), Some(serde_json::json!("2731Mi")));
    assert_eq!(limit(4), Some(serde_json::json!("3Gi")));
    // Likely ones are not raised: Redis keeps its 1G.
    assert_eq!(limit(1), Some(serde_json::json!("1G")));
    // The raised manifests pass enforce for what was raised; nothing is raised twice.
    let again = check(&["-f", "-", "--mode", "enforce"], Some(&text(&out.stdout)));
    let stdout = text(&again.stdout);
    assert!(stdout.contains("pass: 4, warn: 3, fail: 0"), "{stdout}");
    assert!(
        stdout
            .contains("deployment/orders (shop): pass (configuration only: no memory history yet)"),
        "{stdout}"
    );
}

#[test]
fn day_zero_json_names_what_was_read_and_what_was_not() {
    let mut args = DAY_ZERO.to_vec();
    args.extend(["-o", "json"]);
    let out = check(&args, None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let orders = &v["results"][0]["verdict"]["containers"][0];
    assert_eq!(orders["severity"], "critical");
    assert_eq!(orders["recommended"], 1920 * 1024 * 1024);
    assert_eq!(orders["runtime"]["needs"], 1920 * 1024 * 1024);
    assert_eq!(
        orders["runtime"]["settings"],
        serde_json::json!(["-Xmx1536m"])
    );
    assert_eq!(
        orders["runtime"]["unread"],
        serde_json::json!(["envFrom configMap orders-config"])
    );
    let catalog = &v["results"][6]["verdict"]["containers"][0];
    assert_eq!(catalog["severity"], "unknown");
    assert_eq!(
        catalog["runtime"]["unread"],
        serde_json::json!(["JAVA_OPTS (configMap catalog-jvm key opts)"])
    );
    assert_eq!(catalog["runtime"]["findings"], serde_json::json!([]));
}

/// An operator's StatefulSet (issue 27, point 4): checked and warned about, naming the owner
/// where memory is set; never patched in mutate mode, never denied in enforce mode.
#[test]
fn operator_owned_objects_are_warned_never_patched_or_denied() {
    let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: es-default\n  namespace: shop\n  ownerReferences:\n  - {apiVersion: elasticsearch.k8s.elastic.co/v1, kind: Elasticsearch, name: quickstart, uid: u, controller: true}\nspec:\n  template:\n    spec:\n      containers:\n      - name: es\n        command: [java, -Xmx2g]\n        resources: {limits: {memory: 2Gi}}\n---\napiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web-1\n  namespace: shop\n  ownerReferences:\n  - {apiVersion: apps/v1, kind: Deployment, name: web, uid: v, controller: true}\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        command: [java, -Xmx2g]\n        resources: {limits: {memory: 2Gi}}\n";
    for mode in ["warn", "mutate", "enforce"] {
        let out = check(&["-f", "-", "--mode", mode, "-o", "yaml"], Some(sts));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{mode}: {stderr}");
        assert_eq!(text(&out.stdout), sts, "{mode}: nothing patched");
        assert!(
            stderr.contains("Warning: oomguard: managed by Elasticsearch/quickstart: set memory there; its operator undoes edits to StatefulSet es-default"),
            "{mode}: {stderr}"
        );
        assert!(
            stderr.contains("container es: heap -Xmx2g is 100% of limit 2Gi"),
            "{stderr}"
        );
        // The Deployment's ReplicaSet was checked with its Deployment: nothing said.
        assert!(!stderr.contains("container web"), "{stderr}");
    }
}
