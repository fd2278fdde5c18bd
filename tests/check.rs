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
    // Checking the mutated output again finds nothing more to raise.
    let again = check(
        &[
            "-f",
            "-",
            "--history",
            "examples/memory-leak-app/history.json",
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
    // Nothing known, nothing claimed: no Warning lines, each workload said to be unchecked
    // (the one without a limit is still told to set one).
    assert!(
        stdout.contains("deployment/memory-leak-app (self-healing-platform): not checked (no memory history yet)"),
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
        stdout.contains("not checked: 3 (no memory history yet"),
        "{stdout}"
    );
}
