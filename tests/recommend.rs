//! `oomguard recommend` on the bundled example: every format read back, the webhook's numbers,
//! patches that fix what `check` warns about, risk order, and the errors.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use common::{repo, BIN};
use oomguard::recommend::{parse_csv, CurrentFrom, Recommendation, Report};
use oomguard::verdict::Severity;
use serde_json::Value;

const DEMO: [&str; 6] = [
    "--history",
    "examples/memory-leak-app/history.json",
    "-f",
    "examples/memory-leak-app/manifests.yaml",
    "--policies",
    "policies",
];

const MI: u64 = 1024 * 1024;

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(repo())
        .arg(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn recommend(args: &[&str]) -> (String, String) {
    let out = run("recommend", args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    (stdout, stderr)
}

fn demo(format: &str, extra: &[&str]) -> String {
    let mut args: Vec<&str> = DEMO.to_vec();
    args.extend(["-o", format]);
    args.extend(extra);
    recommend(&args).0
}

fn report() -> Report {
    Report::parse(&demo("json", &[])).unwrap()
}

fn row<'a>(r: &'a Report, name: &str) -> &'a Recommendation {
    r.recommendations.iter().find(|x| x.name == name).unwrap()
}

#[test]
fn json_yaml_and_csv_read_back_to_the_same_rows() {
    let json = report();
    assert_eq!(json.recommendations.len(), 4, "{json:?}");
    let yaml = Report::parse(&demo("yaml", &[])).unwrap();
    assert_eq!(yaml, json);
    let csv = parse_csv(&demo("csv", &[])).unwrap();
    assert_eq!(csv, json.recommendations);
    // Serialising what was read gives the same text again.
    let again = serde_json::to_string_pretty(&json).unwrap();
    assert_eq!(format!("{again}\n"), demo("json", &[]));
}

#[test]
fn recommended_limits_are_the_webhooks() {
    let out = run("check", &[&DEMO[..], &["-o", "json"]].concat());
    let check: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut webhook = BTreeMap::new();
    for doc in check["results"].as_array().unwrap() {
        let Some(containers) = doc["verdict"]["containers"].as_array() else {
            continue;
        };
        for c in containers {
            webhook.insert(
                (
                    doc["name"].as_str().unwrap().to_string(),
                    c["container"].as_str().unwrap().to_string(),
                ),
                c["recommended"].as_u64(),
            );
        }
    }
    let r = report();
    assert_eq!(webhook.len(), r.recommendations.len());
    for x in &r.recommendations {
        assert_eq!(
            webhook[&(x.name.clone(), x.container.clone())],
            x.recommended_limit,
            "{}/{}",
            x.name,
            x.container
        );
    }
    assert_eq!(row(&r, "web-frontend").recommended_limit, Some(363_855_872));
    assert_eq!(row(&r, "memory-leak-app").recommended_limit, Some(443 * MI));
    // Current values come from the manifests.
    let leak = row(&r, "memory-leak-app");
    assert_eq!(leak.current_from, CurrentFrom::Manifest);
    assert_eq!((leak.request, leak.limit), (Some(128 * MI), Some(256 * MI)));
    assert_eq!(leak.oom_kills, 1262);
    assert_eq!(row(&r, "session-cache").limit, None);
}

#[test]
fn recommended_request_is_the_p95_of_peaks_under_the_limit() {
    let r = report();
    for x in &r.recommendations {
        let (Some(p95), Some(req), Some(lim)) = (x.p95, x.recommended_request, x.recommended_limit)
        else {
            panic!("{}: no recommendation", x.name);
        };
        let want = ((p95 / MI as f64).ceil() as u64 * MI).min(lim);
        assert_eq!(req, want, "{}", x.name);
        assert!(req <= lim);
        // The p95 is below the max for every bundled workload, so the request is below the
        // limit: the limit keeps headroom for the rare peaks.
        assert!(req < lim, "{}", x.name);
    }
}

#[test]
fn rows_are_sorted_by_risk() {
    let r = report();
    let rows = &r.recommendations;
    for w in rows.windows(2) {
        assert!(w[0].severity >= w[1].severity, "{rows:#?}");
        if w[0].severity == w[1].severity && w[0].time_to_limit_secs == w[1].time_to_limit_secs {
            assert!(w[0].oom_kills >= w[1].oom_kills, "{rows:#?}");
        }
    }
    let order: Vec<&str> = rows.iter().map(|x| x.name.as_str()).collect();
    // Two critical: the one OOM-killed 1262 times first; the over-provisioned one last.
    assert_eq!(
        order,
        [
            "memory-leak-app",
            "web-frontend",
            "session-cache",
            "api-gateway"
        ]
    );
    assert_eq!(rows[0].severity, Severity::Critical);
    assert_eq!(rows[3].severity, Severity::Info);
}

#[test]
fn table_fits_100_columns_and_says_what_is_wrong() {
    let table = demo("table", &[]);
    for line in table.lines() {
        assert!(
            line.chars().count() <= 100,
            "{} columns: {line}",
            line.len()
        );
    }
    let leak = table
        .lines()
        .find(|l| l.contains("deploy/memory-leak-app:web"))
        .unwrap();
    for cell in ["critical", "128Mi/256Mi", "1262", "443Mi"] {
        assert!(leak.contains(cell), "{cell} in {leak}");
    }
    assert!(table.contains("limit 256Mi is below the 14d peak 301Mi; recommended 347Mi"));
}

#[test]
fn html_has_one_chart_per_container_with_limit_recommendation_and_forecast_band() {
    let html = demo("html", &[]);
    let r = report();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), r.recommendations.len());
    // Self-contained: nothing loaded from elsewhere.
    for outside in ["<script", "<link", "src=\"http", "href=\"http"] {
        assert!(!html.contains(outside), "{outside}");
    }
    for (i, x) in r.recommendations.iter().enumerate() {
        let start = html
            .find(&format!("<section class=\"container\" id=\"row-{i}\""))
            .unwrap();
        let end = html[start..].find("</section>").unwrap() + start;
        let section = &html[start..end];
        assert_eq!(section.matches("<svg").count(), 1, "row {i}");
        assert!(
            section.contains(&format!("<svg id=\"chart-{i}\"")),
            "row {i}"
        );
        assert!(section.contains(&x.name) && section.contains(&x.container));
        assert!(
            section.contains("<polyline class=\"oomguard-peaks\""),
            "{}: history",
            x.name
        );
        assert!(
            section.contains("<polyline class=\"oomguard-recommended\""),
            "{}: recommended limit",
            x.name
        );
        assert!(
            section.contains("<polygon class=\"oomguard-forecast-band\""),
            "{}: forecast band",
            x.name
        );
        assert_eq!(
            section.contains("<polyline class=\"oomguard-limit\""),
            x.limit.is_some(),
            "{}: current limit",
            x.name
        );
        let rec = oomguard::quantity::format_bytes(x.recommended_limit.unwrap() as f64);
        assert!(
            section.contains(&format!("<dd id=\"rec-limit-{i}\">{rec}</dd>")),
            "{}: {rec}",
            x.name
        );
    }
}

/// A strategic merge of oomguard's patches: containers matched by name, resources replaced.
fn apply(manifests: &mut [Value], patch: &Value) -> bool {
    let target = manifests.iter_mut().find(|m| {
        m["kind"] == patch["kind"]
            && m["metadata"]["name"] == patch["metadata"]["name"]
            && m["metadata"]["namespace"] == patch["metadata"]["namespace"]
            && m["apiVersion"] == patch["apiVersion"]
    });
    let Some(target) = target else { return false };
    let containers = target
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
        .unwrap();
    for pc in patch["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
    {
        let c = containers
            .iter_mut()
            .find(|c| c["name"] == pc["name"])
            .unwrap();
        for section in ["requests", "limits"] {
            // A patch without a request (no history to size it) leaves the request alone.
            if let Some(m) = pc["resources"][section].get("memory") {
                c["resources"][section]["memory"] = m.clone();
            }
        }
    }
    true
}

#[test]
fn patches_parse_and_fix_what_check_warns_about() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut args: Vec<&str> = DEMO.to_vec();
    args.extend(["-o", "json", "--emit-patches", d]);
    let (_, stderr) = recommend(&args);
    assert!(stderr.contains("wrote 4 patch(es)"), "{stderr}");
    let web = std::fs::read_to_string(
        dir.path()
            .join("self-healing-platform-deployment-web-frontend.yaml"),
    )
    .unwrap();
    let web: Value = serde_norway::from_str(&web).unwrap();
    assert_eq!(web["apiVersion"], "apps/v1");
    assert_eq!(web["kind"], "Deployment");
    let c = &web["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "web");
    assert_eq!(c["resources"]["limits"]["memory"], "347Mi");
    let r = report();
    let req = row(&r, "web-frontend").recommended_request.unwrap();
    assert_eq!(
        c["resources"]["requests"]["memory"],
        oomguard::quantity::to_quantity(req)
    );

    // Applied to the manifests, the patches leave `check` with nothing to warn about.
    let text =
        std::fs::read_to_string(repo().join("examples/memory-leak-app/manifests.yaml")).unwrap();
    let mut docs = oomguard::check::parse_documents("manifests", &text).unwrap();
    let mut applied = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p: Value =
            serde_norway::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap())
                .unwrap();
        assert!(apply(&mut docs, &p), "{p}");
        applied += 1;
    }
    assert_eq!(applied, 4);
    let patched = dir.path().join("patched.yaml");
    let yaml: Vec<String> = docs
        .iter()
        .map(|d| serde_norway::to_string(d).unwrap())
        .collect();
    std::fs::write(&patched, yaml.join("---\n")).unwrap();
    let out = run(
        "check",
        &[
            "-f",
            patched.to_str().unwrap(),
            "--history",
            "examples/memory-leak-app/history.json",
            "--policies",
            "policies",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("pass: 4, warn: 0, fail: 0"), "{stdout}");
}

#[test]
fn without_manifests_limits_are_the_runtime_ones_and_requests_unknown() {
    let (json, _) = recommend(&[
        "--history",
        "examples/memory-leak-app/history.json",
        "--policies",
        "policies",
        "-o",
        "json",
    ]);
    let r = Report::parse(&json).unwrap();
    assert_eq!(r.current_from, "runtime");
    assert_eq!(r.recommendations.len(), 4);
    for x in &r.recommendations {
        assert_eq!(x.current_from, CurrentFrom::Runtime);
        assert_eq!(x.request, None);
    }
    assert_eq!(row(&r, "web-frontend").limit, Some(256 * MI));
    assert_eq!(row(&r, "api-gateway").limit, Some(4096 * MI));
    // The webhook's number for a manifest with that limit and no request.
    assert_eq!(row(&r, "web-frontend").recommended_limit, Some(363_855_872));
    let (table, _) = recommend(&[
        "--history",
        "examples/memory-leak-app/history.json",
        "--policies",
        "policies",
    ]);
    assert!(table.contains("?/256Mi"), "{table}");
    assert!(table.contains("request unknown"), "{table}");
}

fn fails(args: &[&str]) -> String {
    let out = run("recommend", args);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unreachable_prometheus_names_the_url_and_the_cause() {
    let err = fails(&["--prometheus", "http://127.0.0.1:1", "--namespace", "shop"]);
    assert!(err.contains("http://127.0.0.1:1"), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(err.contains("\"shop\""), "{err}");
}

#[test]
fn unknown_namespace_says_which_and_what_there_is() {
    let err = fails(&[
        "--history",
        "examples/memory-leak-app/history.json",
        "--namespace",
        "nope",
    ]);
    assert!(err.contains("\"nope\""), "{err}");
    assert!(err.contains("no workloads"), "{err}");
    assert!(err.contains("self-healing-platform"), "{err}");
    let err = fails(&[&DEMO[..], &["--namespace", "nope"]].concat());
    assert!(err.contains("\"nope\": no workloads in examples/memory-leak-app/manifests.yaml"));
}

#[test]
fn prometheus_without_a_namespace_asks_for_one() {
    let err = fails(&["--prometheus", "http://127.0.0.1:1"]);
    assert!(err.contains("--namespace"), "{err}");
}

/// Day zero: no history for these workloads, the patches size the limits from their own
/// configuration, and `check` has nothing left to say about what they raised.
#[test]
fn day_zero_patches_come_from_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (_, stderr) = recommend(&[
        "--history",
        "examples/memory-leak-app/history.json",
        "-f",
        "examples/day-zero/manifests.yaml",
        "--emit-patches",
        d,
    ]);
    assert!(stderr.contains("wrote 5 patch(es)"), "{stderr}");
    assert!(
        stderr.contains("no patch for Deployment shop/billing: no limit to recommend; the container's configuration must change: container api: DOTNET_GCHeapHardLimitPercent=50 (hex)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "no patch for Deployment shop/catalog: no recommendation (too little history)"
        ),
        "{stderr}"
    );
    let orders: Value = serde_norway::from_str(
        &std::fs::read_to_string(dir.path().join("shop-deployment-orders.yaml")).unwrap(),
    )
    .unwrap();
    let c = &orders["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["resources"]["limits"]["memory"], "1920Mi");
    assert!(c["resources"].get("requests").is_none(), "{c}");

    let text = std::fs::read_to_string(repo().join("examples/day-zero/manifests.yaml")).unwrap();
    let mut docs = oomguard::check::parse_documents("manifests", &text).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p: Value =
            serde_norway::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap())
                .unwrap();
        assert!(apply(&mut docs, &p), "{p}");
    }
    let patched = dir.path().join("patched.yaml");
    let yaml: Vec<String> = docs
        .iter()
        .map(|d| serde_norway::to_string(d).unwrap())
        .collect();
    std::fs::write(&patched, yaml.join("---\n")).unwrap();
    let out = run("check", &["-f", patched.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Only billing is left: its percentage scales with any limit.
    assert!(stdout.contains("pass: 6, warn: 1, fail: 0"), "{stdout}");
    assert!(
        stdout.contains("deployment/billing (shop): warn"),
        "{stdout}"
    );
    assert!(
        stdout.contains("configuration only: 7 of 7 workloads"),
        "{stdout}"
    );
}

/// The kinds of issue 27 in `recommend -f`: a ReplicationController inside a List.
#[test]
fn a_replication_controller_in_a_list_is_recommended_for() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("rc.yaml");
    std::fs::write(
        &manifests,
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ReplicationController\n  metadata: {name: nginx, namespace: web}\n  spec:\n    template:\n      spec:\n        containers:\n        - name: nginx\n          resources: {limits: {memory: 128Mi}}\n",
    )
    .unwrap();
    let now = 1_800_000_000i64;
    let peaks: Vec<Value> = (0..288)
        .map(|i| serde_json::json!([now - 86_400 + i * 300, 300.0 * 1048576.0]))
        .collect();
    let history = dir.path().join("h.json");
    std::fs::write(
        &history,
        serde_json::json!({"apiVersion": "oomguard.io/v1", "kind": "History", "now": now,
            "workloads": [{"namespace": "web", "kind": "ReplicationController", "name": "nginx",
                "containers": {"nginx": {"peaks": peaks}}}]})
        .to_string(),
    )
    .unwrap();
    let out = run(
        "recommend",
        &[
            "-f",
            manifests.to_str().unwrap(),
            "--history",
            history.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("limit 128Mi is below the 7d peak 300Mi; recommended 330Mi"),
        "{stdout}"
    );
}
