//! The corpus' shared helpers (tests/corpus.rs, tests/corpus_kubectl.rs).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::{repo, BIN};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn check(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .current_dir(repo())
        .arg("check")
        .args(args)
        .output()
        .unwrap()
}

/// Every manifest file of every set, sorted: (set, file).
pub fn files() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut sets: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    sets.sort();
    for set in sets {
        let name = set.file_name().unwrap().to_string_lossy().into_owned();
        assert!(set.join("SOURCE").exists(), "{name} has no SOURCE file");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&set)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect();
        files.sort();
        for f in files {
            out.push((name.clone(), f));
        }
    }
    out
}

/// A history where every container of every workload peaked at `mib` MiB for a day.
pub fn flat_history(files: &[(String, PathBuf)], mib: u64) -> Value {
    let now = 1_800_000_000i64;
    let mut workloads = Vec::new();
    for (_, file) in files {
        let out = check(&["-f", file.to_str().unwrap(), "-o", "json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        for r in report["results"].as_array().unwrap() {
            let Some(containers) = r["verdict"]["containers"].as_array() else {
                continue;
            };
            let peaks: Vec<Value> = (0..288)
                .map(|i| json!([now - 86_400 + i * 300, (mib << 20) as f64]))
                .collect();
            let containers: serde_json::Map<String, Value> = containers
                .iter()
                .map(|c| {
                    (
                        c["container"].as_str().unwrap().to_string(),
                        json!({"peaks": peaks}),
                    )
                })
                .collect();
            workloads.push(json!({
                "namespace": r["namespace"], "kind": r["kind"], "name": r["name"],
                "containers": containers
            }));
        }
    }
    json!({"apiVersion": "oomguard.io/v1", "kind": "History", "now": now, "workloads": workloads})
}

/// The policy of the mutate runs: raise, and add missing limits.
pub const MUTATE_POLICY: &str = "apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec:\n  mode: mutate\n  missingLimit: add\n  history: {window: 7d, minHistory: 3h}\n";

/// `check --mode mutate -o yaml` of one file with [`flat_history`] (written in `dir`).
pub fn mutated(dir: &Path, history: &Value, file: &Path) -> String {
    let h = dir.join("history.json");
    if !h.exists() {
        std::fs::write(&h, history.to_string()).unwrap();
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        std::fs::write(dir.join("policies/default.yaml"), MUTATE_POLICY).unwrap();
    }
    let out = check(&[
        "-f",
        file.to_str().unwrap(),
        "--history",
        h.to_str().unwrap(),
        "--policies",
        dir.join("policies").to_str().unwrap(),
        "-o",
        "yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}
