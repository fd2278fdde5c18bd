//! deploy/components/prometheus-rules: the PrometheusRule's groups are valid Prometheus rules
//! (promtool), and record the series names the source reads.

mod common;

use oomguard::history::prometheus::queries::{RULE_MAPPING, RULE_PEAK};

#[test]
fn recording_rules_pass_promtool_and_record_what_the_source_reads() {
    let path = common::repo().join("deploy/components/prometheus-rules/prometheusrule.yaml");
    let doc: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(doc["kind"], "PrometheusRule");
    let groups = doc["spec"]["groups"].clone();
    let records: Vec<&str> = groups[0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["record"].as_str())
        .collect();
    assert_eq!(records, vec![RULE_MAPPING, RULE_PEAK]);
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        serde_norway::to_string(&serde_json::json!({ "groups": groups })).unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new(common::prom::binary("promtool"))
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
