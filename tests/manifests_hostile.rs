//! Hostile and odd input (issue 27, points 9 and 10): refused in well under a second, the other
//! documents still answered, and nothing held past one document.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::BIN;

fn check(input: &[u8], args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(["check", "-f", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (out, start.elapsed())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn deployment(name: &str, limit: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: x\n        resources: {{limits: {{memory: {limit}}}}}\n"
    )
}

/// Hostile documents between two sound ones: each refused at once with why, the sound ones
/// still answered, exit 2 (kubectl refuses the file too).
#[test]
fn hostile_documents_are_refused_quickly_and_the_others_answered() {
    let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let hostile = [
        ("[".repeat(200_000), "nested deeper than 200 levels"),
        (
            format!("a: {}", "{b: ".repeat(100_000)),
            "nested deeper than 200 levels",
        ),
        (laughs, "excessive aliasing"),
        ("a: [\n".to_string(), "not valid YAML"),
        ("a: .nan\n".to_string(), "is not a value JSON can carry"),
    ];
    for (doc, why) in hostile {
        let input = format!(
            "{}---\n{doc}\n---\n{}",
            deployment("before", "1Gi"),
            deployment("after", "2Gi")
        );
        let (out, took) = check(input.as_bytes(), &[]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(took < Duration::from_secs(1), "{why}: took {took:?}");
        assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
        assert!(
            stdout.contains("deployment/before (default): pass"),
            "{stdout}"
        );
        assert!(
            stdout.contains("deployment/after (default): pass"),
            "{stdout}"
        );
        assert!(
            stdout.contains("document 2: not read:") && stdout.contains(why),
            "{why}: {stdout}"
        );
        assert!(stderr.contains("error: -: document 2:"), "{stderr}");
    }
}

#[test]
fn odd_values_get_the_right_words() {
    let input = format!(
        "{}---\n{}---\n{}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: empty}}\nspec: {{containers: null}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: twins}}\nspec:\n  containers:\n  - {{name: app, image: x, resources: {{limits: {{memory: 1Gi}}}}}}\n  - {{name: app, image: x, resources: {{limits: {{memory: 1Gi}}}}}}\n---\nbig: 99999999999999999999\n",
        deployment("huge", "8Ei"),
        deployment("list", "[1,2]"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: dup}\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        resources: {limits: {memory: 1Gi}}\n        resources: {limits: {memory: 2Gi}}\n",
    );
    let (out, _) = check(input.as_bytes(), &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for line in [
        "invalid memory quantity \"8Ei\": it exceeds 2^63-1 bytes, the most Kubernetes holds",
        "invalid memory quantity \"[1,2]\": it is not a quantity: kubectl refuses it",
        "Warning: oomguard: line 32: key resources is written twice in one mapping; kubectl keeps the last",
        "not read: document 6: no kind: kubectl refuses it",
        "Warning: oomguard: the pod template has no containers: the apiserver refuses it",
        "Warning: oomguard: two containers are named app: the apiserver refuses the pod template (Duplicate value)",
    ] {
        assert!(stdout.contains(line), "{line}\n{stdout}");
    }
    assert!(stdout.contains("pod/empty (default): warn"), "{stdout}");
    // kubectl's "no objects passed to apply".
    for empty in ["", "# nothing\n---\n"] {
        let (out, _) = check(empty.as_bytes(), &[]);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out.stderr).contains("no objects to check"));
    }
}

/// A document past 8 MiB is refused without being held; the next one is answered.
#[test]
fn an_oversized_document_is_skipped_not_held() {
    let mut input = deployment("before", "1Gi").into_bytes();
    input.extend_from_slice(b"---\ndata:\n");
    let line = format!("  k: {}\n", "x".repeat(1000));
    for _ in 0..9_000 {
        input.extend_from_slice(line.as_bytes());
    }
    input.extend_from_slice(b"---\n");
    input.extend_from_slice(deployment("after", "1Gi").as_bytes());
    let (out, took) = check(&input, &[]);
    let stdout = text(&out.stdout);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(stdout.contains("larger than 8 MiB"), "{stdout}");
    assert!(
        stdout.contains("deployment/after (default): pass"),
        "{stdout}"
    );
}
