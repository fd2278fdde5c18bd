//! The corpus: public manifest sets nobody here wrote (tests/corpus/NAME/, each with a SOURCE
//! file naming repository, path, commit and licence), read as a new user would read them.
//!
//! - What `oomguard check` says about each file, word for word: `expected.txt` beside it
//!   (findings, silences, the kinds read and the ones not read with why).
//! - `--mode mutate -o yaml` with a history that puts every container at 300 MiB: documents
//!   oomguard did not change come back byte for byte; changed ones differ only in memory lines
//!   and oomguard's annotations; YAML 1.1 strings (`"no"`) stay strings.
//!
//! The same outputs go through `kubectl apply --dry-run=server` in tests/corpus_kubectl.rs.

mod common;

use common::corpus::{check, files as corpus_files, flat_history, mutated, MUTATE_POLICY};
use common::repo;
use serde_json::json;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_corpus_has_ten_sets_from_elsewhere() {
    let files = corpus_files();
    let mut sets: Vec<&str> = files.iter().map(|(s, _)| s.as_str()).collect();
    sets.dedup();
    assert!(sets.len() >= 10, "{sets:?}");
    for s in &sets {
        let source =
            std::fs::read_to_string(repo().join("tests/corpus").join(s).join("SOURCE")).unwrap();
        for word in ["repository", "licence", "commit"] {
            assert!(source.contains(word), "{s}/SOURCE names no {word}");
        }
    }
}

/// What oomguard says about each set is `expected.txt`, word for word. (After a deliberate
/// change: `OOMGUARD_BLESS=1 cargo test --test corpus` rewrites them; review the diff.)
#[test]
fn each_set_gets_the_answer_in_its_expected_file() {
    let bless = std::env::var_os("OOMGUARD_BLESS").is_some();
    let mut by_set: std::collections::BTreeMap<String, String> = Default::default();
    for (set, file) in corpus_files() {
        let rel = file
            .strip_prefix(repo())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let out = check(&["-f", &rel]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{rel}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let entry = by_set.entry(set).or_default();
        entry.push_str(&format!(
            "== {}\n",
            file.file_name().unwrap().to_string_lossy()
        ));
        entry.push_str(&text(&out.stdout));
    }
    let mut failures = Vec::new();
    for (set, got) in by_set {
        let path = repo().join("tests/corpus").join(&set).join("expected.txt");
        if bless {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if want != got {
            failures.push(format!("--- {set}/expected.txt\n{want}\n+++ got\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The documents of a stream as kubectl cuts them, with their separators.
fn parts(s: &str) -> Vec<String> {
    oomguard::manifest::split::Parts::new(s.as_bytes())
        .map(|p| {
            let p = p.unwrap();
            format!("{}{}", p.separator, p.text)
        })
        .collect()
}

/// Whether a line is one oomguard writes: a memory value, the parents it adds, its annotations
/// (in a `{...}` mapping, the line the new entry joins).
fn oomguards_line(l: &str) -> bool {
    let t = l.trim_start();
    if [
        "\"oomguard.io/",
        "{\"memory\"",
        "\"resources\": {",
        "\"limits\": {",
    ]
    .iter()
    .any(|k| t.contains(k))
    {
        return true;
    }
    t.starts_with("memory: ")
        || t.starts_with("\"memory\": ")
        || matches!(t, "resources:" | "limits:" | "annotations:")
        || t.starts_with("resources: {")
        || t.starts_with("oomguard.io/")
        || t.starts_with("\"oomguard.io/")
}

#[test]
fn mutated_output_changes_only_oomguards_lines() {
    let files = corpus_files();
    let history = flat_history(&files, 300);
    let dir = tempfile::tempdir().unwrap();
    let mut changed = 0;
    let mut unchanged = 0;
    for (set, file) in &files {
        let input = std::fs::read_to_string(file).unwrap();
        let output = mutated(dir.path(), &history, file);
        let (a, b) = (parts(&input), parts(&output));
        if input.trim_start().starts_with('{') {
            // A JSON stream: one value, rewritten as JSON when changed.
            assert_eq!(a.len(), b.len(), "{set}");
            continue;
        }
        assert_eq!(
            a.len(),
            b.len(),
            "{set}: every document comes out, in order"
        );
        for (x, y) in a.iter().zip(&b) {
            if x == y {
                unchanged += 1;
                continue;
            }
            changed += 1;
            let removed: Vec<&str> = x.lines().filter(|l| !y.lines().any(|m| m == *l)).collect();
            let added: Vec<&str> = y.lines().filter(|l| !x.lines().any(|m| m == *l)).collect();
            for l in &added {
                assert!(
                    oomguards_line(l),
                    "{set}: a line oomguard should not write: {l:?}\n{y}"
                );
            }
            // A removed line is a memory value, or the line a `{...}` entry was added to.
            for l in &removed {
                let kept = l.trim_end_matches(',');
                assert!(
                    oomguards_line(l) || added.iter().any(|a| a.starts_with(kept)),
                    "{set}: a line oomguard should not touch changed: {l:?}\n{y}"
                );
            }
            assert!(
                x.lines().count() <= y.lines().count(),
                "{set}: lines were dropped\n{y}"
            );
        }
        // What kubectl reads back: the YAML 1.1 strings are still strings.
        let docs = oomguard::check::parse_documents("out", &output).unwrap();
        let again = oomguard::check::parse_documents("in", &input).unwrap();
        assert_eq!(docs.len(), again.len());
    }
    assert_eq!(changed, 14, "documents changed");
    assert!(unchanged >= 15, "only {unchanged} documents unchanged");
    eprintln!("{changed} documents changed, {unchanged} unchanged");
    // argo-cd's redis keeps `--appendonly "no"` a string once its limit is added.
    let redis = repo().join("tests/corpus/argo-cd/manifests.yaml");
    let out = mutated(dir.path(), &history, &redis);
    assert!(out.contains("        - \"no\"\n"), "{out}");
    let d = oomguard::check::parse_documents("out", &out).unwrap();
    assert_eq!(
        d[0].pointer("/spec/template/spec/containers/0/args/3"),
        Some(&json!("no"))
    );
    assert_eq!(
        d[0].pointer("/spec/template/spec/containers/0/resources/limits/memory"),
        Some(&json!("330Mi")),
        "{out}"
    );
}

/// A Template's limit that is a parameter is not rewritten into a literal: the warning names
/// the parameter whose value to raise, and the file comes back as it was.
#[test]
fn a_templates_parameter_is_named_not_overwritten() {
    let files = corpus_files();
    let history = flat_history(&files, 600);
    let dir = tempfile::tempdir().unwrap();
    for name in ["redis-ephemeral-template.yaml", "redis-persistent.json"] {
        let file = repo().join("tests/corpus/openshift-templates").join(name);
        let h = dir.path().join("history.json");
        std::fs::write(&h, history.to_string()).unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/default.yaml"), MUTATE_POLICY).unwrap();
        let out = check(&[
            "-f",
            file.to_str().unwrap(),
            "--history",
            h.to_str().unwrap(),
            "--policies",
            dir.path().join("policies").to_str().unwrap(),
            "-o",
            "yaml",
        ]);
        assert_eq!(text(&out.stdout), std::fs::read_to_string(&file).unwrap());
        let err = text(&out.stderr);
        assert!(
            err.contains("Warning: oomguard: not raised here: the limit comes from the Template's parameter MEMORY_LIMIT; raise its value"),
            "{err}"
        );
        assert!(
            err.contains(
                "container redis: limit 512Mi is below the 7d peak 600Mi; recommended 660Mi"
            ),
            "{err}"
        );
    }
}
