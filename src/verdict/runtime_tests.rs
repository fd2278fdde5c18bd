//! The runtime configuration's findings in verdicts: day zero (no history), and under history.

use serde_json::json;

use super::*;
use crate::history::{PeakStats, Sample};
use crate::policy::MissingLimit;
use crate::quantity::MI;
use crate::workload::WorkloadKind;

const NOW: i64 = 1_800_000_000;

/// A Deployment whose container `app` runs `command` with `env`, under `limit`.
fn jvm(limit: Option<&str>, command: &[&str], env: &[(&str, &str)]) -> Workload {
    let mut c = json!({
        "name": "app",
        "command": command,
        "env": env.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
    });
    if let Some(l) = limit {
        c["resources"] = json!({"limits": {"memory": l}});
    }
    let obj = json!({"metadata": {"name": "orders"},
        "spec": {"template": {"spec": {"containers": [c]}}}});
    Workload::from_object(WorkloadKind::Deployment, &obj, "shop").unwrap()
}

fn policy(mode: Mode) -> PolicySpec {
    PolicySpec {
        mode,
        ..PolicySpec::classic()
    }
}

/// 14 days of flat 5-minute peaks at `mib` MiB for container `app`.
fn history(mib: f64) -> WorkloadHistory {
    let samples: Vec<Sample> = (0..4032)
        .map(|i| Sample {
            t: NOW - (4032 - i) * 300,
            bytes: mib * MI as f64,
        })
        .collect();
    let peaks: Vec<f64> = samples.iter().map(|s| s.bytes).collect();
    let c = ContainerHistory {
        covered_secs: 4031 * 300,
        peaks: PeakStats::from_peaks(&peaks),
        samples,
        ..Default::default()
    };
    WorkloadHistory {
        now: NOW,
        window_secs: 14 * 86400,
        containers: [("app".to_string(), c)].into_iter().collect(),
        events_unseen: None,
    }
}

const HEAP_AT_LIMIT: &str =
    "container app: heap -Xmx1536m is 100% of limit 1536Mi; +384Mi non-heap: limit >= 1920Mi or -Xmx <= 1228m";

#[test]
fn day_zero_heap_at_the_limit_is_critical_raised_in_mutate_and_denied_in_enforce() {
    let w = jvm(Some("1536Mi"), &["java", "-Xmx1536m", "-jar", "a.jar"], &[]);
    for (mode, action) in [
        (Mode::Warn, Action::None),
        (Mode::Mutate, Action::Raise { to: 1920 * MI }),
        (Mode::Enforce, Action::Deny),
    ] {
        let v = decide(&w, HistoryStatus::Missing, &policy(mode), NOW);
        let c = &v.containers[0];
        assert_eq!(c.severity, Severity::Critical, "{mode:?}");
        assert_eq!(c.action, action, "{mode:?}");
        assert_eq!(c.recommended, Some(1920 * MI));
        assert_eq!(v.reasons(), [HEAP_AT_LIMIT]);
        assert!(c.runtime.as_ref().is_some_and(|r| r.certain()));
    }
    let v = decide(&w, HistoryStatus::Missing, &policy(Mode::Enforce), NOW);
    let msg = v.deny_message();
    assert!(msg.contains(HEAP_AT_LIMIT), "{msg}");
    assert!(
        msg.contains("set resources.limits.memory of app to at least 1920Mi"),
        "{msg}"
    );
    // An UPDATE that leaves memory as it was: warned, never denied or raised.
    let mut v = decide(&w, HistoryStatus::Missing, &policy(Mode::Enforce), NOW);
    v.warn_only();
    assert!(!v.denied());
    assert_eq!(v.containers[0].reasons[0], HEAP_AT_LIMIT);
}

#[test]
fn likely_findings_warn_and_never_act() {
    let w = jvm(Some("1536Mi"), &["java", "-Xmx1400m", "-jar", "a.jar"], &[]);
    for mode in [Mode::Mutate, Mode::Enforce] {
        let v = decide(&w, HistoryStatus::Missing, &policy(mode), NOW);
        let c = &v.containers[0];
        assert_eq!(c.severity, Severity::Warn);
        assert_eq!(c.action, Action::None);
        assert_eq!(c.recommended, Some(1750 * MI));
        assert_eq!(v.reasons().len(), 1);
    }
}

#[test]
fn a_sound_new_workload_gets_nothing_said() {
    let w = jvm(
        Some("1Gi"),
        &["java", "-Xmx600m", "-jar", "a.jar"],
        &[("MODE", "blue")],
    );
    let v = decide(&w, HistoryStatus::Missing, &policy(Mode::Enforce), NOW);
    assert!(v.reasons().is_empty(), "{:?}", v.reasons());
    assert_eq!(v.severity(), Severity::Unknown);
    // Not lowered from a guess either: no recommendation without history.
    assert_eq!(v.containers[0].recommended, None);
}

#[test]
fn with_history_the_recommendation_is_never_below_what_the_runtime_needs() {
    // 14 days at 300Mi would size 345Mi; -Xmx1g needs 1280Mi.
    let w = jvm(Some("2Gi"), &["java", "-Xmx1g", "-jar", "a.jar"], &[]);
    let h = history(300.0);
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Mutate), NOW);
    let c = &v.containers[0];
    assert_eq!(c.recommended, Some(1280 * MI));
    assert_eq!(c.severity, Severity::Ok, "{:?}", c.reasons);
    // A limit far above it is a cost note against the floor, not the history's 345Mi.
    let w = jvm(Some("8Gi"), &["java", "-Xmx1g", "-jar", "a.jar"], &[]);
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Warn), NOW);
    assert_eq!(
        v.containers[0].reasons,
        ["container app: limit 8Gi is 6.4x the recommended 1280Mi (14d max 300Mi); consider lowering it"]
    );
    // Below it: critical from the configuration, raised to the floor, and no headroom line
    // from the history (which is content with 345Mi).
    let w = jvm(Some("1Gi"), &["java", "-Xmx1g", "-jar", "a.jar"], &[]);
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Mutate), NOW);
    let c = &v.containers[0];
    assert_eq!(c.severity, Severity::Critical);
    assert_eq!(c.action, Action::Raise { to: 1280 * MI });
    assert_eq!(
        c.reasons,
        ["container app: heap -Xmx1g is 100% of limit 1Gi; +256Mi non-heap: limit >= 1280Mi or -Xmx <= 819m"]
    );
    // The policy's max binds: the configuration cannot be fixed by raising; enforce still
    // refuses, without offering a raise that would not do.
    let mut p = policy(Mode::Enforce);
    p.limits.max = crate::policy::Memory(1024 * MI);
    let w = jvm(Some("1Gi"), &["java", "-Xmx2g", "-jar", "a.jar"], &[]);
    let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
    assert!(v.denied());
    assert!(
        !v.deny_message().contains("to at least"),
        "{}",
        v.deny_message()
    );
}

#[test]
fn a_missing_limit_is_sized_from_the_configuration_on_day_zero() {
    let w = jvm(None, &["java", "-Xmx2g", "-jar", "a.jar"], &[]);
    let v = decide(&w, HistoryStatus::Missing, &policy(Mode::Warn), NOW);
    let c = &v.containers[0];
    assert_eq!(
        c.reasons,
        ["container app: no memory limit; -Xmx2g + ~512Mi non-heap: set resources.limits.memory >= 2560Mi"]
    );
    assert_eq!(c.recommended, Some(2560 * MI));
    let mut p = policy(Mode::Mutate);
    p.missing_limit = MissingLimit::Add;
    let v = decide(&w, HistoryStatus::Missing, &p, NOW);
    assert_eq!(v.containers[0].action, Action::Add { to: 2560 * MI });
    // With history, the missing-limit line names the configuration when it binds.
    let v = decide(
        &w,
        HistoryStatus::Found(&history(300.0)),
        &policy(Mode::Warn),
        NOW,
    );
    assert_eq!(
        v.containers[0].reasons,
        ["container app: no memory limit; recommended 2560Mi (-Xmx2g + ~512Mi non-heap)"]
    );
}

#[test]
fn unavailable_history_still_reads_the_configuration() {
    let w = jvm(
        Some("2Gi"),
        &["node", "--max-old-space-size=2048", "s.js"],
        &[],
    );
    let v = decide(
        &w,
        HistoryStatus::Unavailable("prometheus did not answer"),
        &policy(Mode::Warn),
        NOW,
    );
    let r = v.reasons();
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r[0].starts_with("memory limits not checked (allowed)"));
    assert!(r[1].starts_with("container app: --max-old-space-size=2048 is 100% of limit 2Gi"));
}

#[test]
fn an_added_limit_is_never_below_the_request_nor_the_volumes_alone() {
    let mut p = policy(Mode::Mutate);
    p.missing_limit = MissingLimit::Add;
    // java -Xmx512m with a 2Gi request and no limit: the heap's floor (640Mi) is below the
    // request, and a limit under the request is invalid (the apiserver refuses the apply).
    let obj = json!({"metadata": {"name": "orders"}, "spec": {"template": {"spec": {"containers": [{
        "name": "app", "command": ["java", "-Xmx512m", "-jar", "a.jar"],
        "resources": {"requests": {"memory": "2Gi"}}}]}}}});
    let w = Workload::from_object(WorkloadKind::Deployment, &obj, "shop").unwrap();
    let v = decide(&w, HistoryStatus::Missing, &p, NOW);
    assert_eq!(v.containers[0].action, Action::Add { to: 2048 * MI });
    // A container whose only hint is a 256Mi memory emptyDir: no limit is added (256Mi would
    // leave the process nothing), and the line says what is known.
    let obj = json!({"metadata": {"name": "cache"}, "spec": {"template": {"spec": {
        "containers": [{"name": "app", "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}]}],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}]}}}});
    let w = Workload::from_object(WorkloadKind::Deployment, &obj, "shop").unwrap();
    let v = decide(&w, HistoryStatus::Missing, &p, NOW);
    let c = &v.containers[0];
    assert_eq!(c.action, Action::None, "{:?}", c.reasons);
    assert_eq!(c.recommended, None);
    assert_eq!(
        c.reasons,
        ["container app: no memory limit; its memory emptyDirs alone hold 256Mi: set a limit above that"]
    );
}
