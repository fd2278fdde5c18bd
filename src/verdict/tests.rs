use serde_json::json;

use super::*;
use crate::history::{PeakStats, Sample};
use crate::policy::{Memory, Percent};
use crate::quantity::MI;
use crate::workload::WorkloadKind;

const NOW: i64 = 1_800_000_000;

fn deployment(limit: Option<&str>, request: Option<&str>) -> Workload {
    let mut resources = serde_json::Map::new();
    if let Some(l) = limit {
        resources.insert("limits".into(), json!({ "memory": l }));
    }
    if let Some(r) = request {
        resources.insert("requests".into(), json!({ "memory": r }));
    }
    let obj = json!({
        "metadata": {"name": "web-app"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "resources": resources}]}}}
    });
    Workload::from_object(WorkloadKind::Deployment, &obj, "team-a").unwrap()
}

/// Flat history: 14 days of 5-minute peaks at `level` MiB with one spike to `peak` MiB.
fn flat_history(level: f64, peak: f64) -> WorkloadHistory {
    let mut samples: Vec<Sample> = (0..4032)
        .map(|i| Sample {
            t: NOW - (4032 - i) * 300,
            bytes: level * MI as f64 + ((i % 7) as f64) * 1024.0,
        })
        .collect();
    samples[2000].bytes = peak * MI as f64;
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
        containers: [("web".to_string(), c)].into_iter().collect(),
    }
}

fn policy(mode: Mode) -> PolicySpec {
    PolicySpec {
        mode,
        ..PolicySpec::default()
    }
}

#[test]
fn limit_below_peak_is_critical_with_the_numbers() {
    let w = deployment(Some("256Mi"), Some("128Mi"));
    let h = flat_history(200.0, 301.0);
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Warn), NOW);
    let c = &v.containers[0];
    assert_eq!(c.severity, Severity::Critical);
    // 301Mi × 1.15 = 346.15Mi, rounded up to whole Mi.
    assert_eq!(c.recommended, Some(347 * MI));
    assert_eq!(
        c.reasons[0],
        "container web: limit 256Mi is below the 14d peak 301Mi; recommended 347Mi"
    );
    assert_eq!(c.action, Action::None, "warn mode never acts");
}

#[test]
fn modes_decide_the_action() {
    let w = deployment(Some("256Mi"), None);
    let h = flat_history(200.0, 301.0);
    let act = |mode| decide(&w, HistoryStatus::Found(&h), &policy(mode), NOW).containers[0].action;
    assert_eq!(act(Mode::Mutate), Action::Raise { to: 347 * MI });
    assert_eq!(act(Mode::Enforce), Action::Deny);
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Enforce), NOW);
    assert!(v.denied());
    let msg = v.deny_message();
    assert!(msg.contains("at least 347Mi"), "{msg}");
    assert!(msg.contains("oomguard.io/exclude"), "{msg}");
}

#[test]
fn low_headroom_warns_and_mutate_raises_but_enforce_allows() {
    // Peak 240Mi: the limit holds it but leaves less than 15%.
    let w = deployment(Some("256Mi"), None);
    let h = flat_history(200.0, 240.0);
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Enforce), NOW);
    let c = &v.containers[0];
    assert_eq!(c.severity, Severity::Warn);
    assert_eq!(c.recommended, Some(276 * MI));
    assert_eq!(c.action, Action::None);
    assert!(
        c.reasons[0].contains("under 15% headroom over the 14d max 240Mi"),
        "{:?}",
        c.reasons
    );
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Mutate), NOW);
    assert_eq!(v.containers[0].action, Action::Raise { to: 276 * MI });
}

#[test]
fn a_generous_limit_is_ok_and_a_huge_one_gets_a_cost_note() {
    let h = flat_history(200.0, 240.0);
    let v = decide(
        &deployment(Some("512Mi"), None),
        HistoryStatus::Found(&h),
        &policy(Mode::Enforce),
        NOW,
    );
    assert_eq!(v.containers[0].severity, Severity::Ok);
    assert!(v.reasons().is_empty());
    let v = decide(
        &deployment(Some("4Gi"), None),
        HistoryStatus::Found(&h),
        &policy(Mode::Mutate),
        NOW,
    );
    let c = &v.containers[0];
    assert_eq!(c.severity, Severity::Info);
    assert_eq!(c.action, Action::None, "never lowered automatically");
    assert!(
        c.reasons[0].contains("consider lowering"),
        "{:?}",
        c.reasons
    );
}

#[test]
fn statistic_and_bounds_apply() {
    let h = flat_history(200.0, 900.0);
    let mut p = policy(Mode::Mutate);
    p.statistic = crate::policy::Statistic::P99;
    let v = decide(
        &deployment(Some("256Mi"), None),
        HistoryStatus::Found(&h),
        &p,
        NOW,
    );
    let c = &v.containers[0];
    // One spike does not move p99; the flat level (≈200Mi) × 1.15 does.
    let expected = round_up_mi(h.containers["web"].peaks.p99 * 1.15);
    assert_eq!(c.recommended, Some(expected));
    assert_eq!(
        c.severity,
        Severity::Critical,
        "still below the observed max"
    );
    p.statistic = crate::policy::Statistic::Max;
    p.limits.max = Memory(512 * MI);
    let v = decide(
        &deployment(Some("256Mi"), None),
        HistoryStatus::Found(&h),
        &p,
        NOW,
    );
    assert_eq!(v.containers[0].recommended, Some(512 * MI));
    p.headroom = Percent(0.0);
    p.limits.min = Memory(300 * MI);
    let h = flat_history(10.0, 20.0);
    let v = decide(&deployment(None, None), HistoryStatus::Found(&h), &p, NOW);
    assert_eq!(v.containers[0].recommended, Some(300 * MI));
}

#[test]
fn auto_sizes_a_steady_series_from_its_p98_never_below_its_max() {
    // ≈200Mi flat with one peak of 215Mi: steady (7.5% is no spike), the max stands out.
    let h = flat_history(200.0, 215.0);
    let c = &h.containers["web"];
    assert_eq!(c.fit().pattern, Pattern::Steady, "precondition");
    let mut p = policy(Mode::Warn);
    p.statistic = crate::policy::Statistic::Auto;
    let v = decide(
        &deployment(Some("1Gi"), None),
        HistoryStatus::Found(&h),
        &p,
        NOW,
    );
    let auto = v.containers[0].recommended.unwrap();
    // p98 × 1.15 ≈ 230Mi is above the floor (215Mi + noise band), below the max rule (248Mi).
    assert_eq!(auto, round_up_mi(c.peaks.p98 * 1.15));
    assert!(auto < round_up_mi(c.peaks.max * 1.15), "{auto}");
    assert!(auto as f64 > c.peaks.max);
    assert!(
        v.containers[0]
            .reasons
            .iter()
            .any(|r| r.contains("14d steady p98")),
        "{:?}",
        v.containers[0].reasons
    );
    // A series with a spike far above its level is not steady: auto is the max rule.
    let spiky = flat_history(200.0, 900.0);
    let v = decide(
        &deployment(Some("1Gi"), None),
        HistoryStatus::Found(&spiky),
        &p,
        NOW,
    );
    assert_eq!(
        v.containers[0].recommended,
        Some(round_up_mi(spiky.containers["web"].peaks.max * 1.15))
    );
}

#[test]
fn oom_kills_bump_from_the_limit_and_escalate() {
    let w = deployment(Some("256Mi"), None);
    let mut h = flat_history(200.0, 250.0);
    let c = h.containers.get_mut("web").unwrap();
    c.oom_kills = 1;
    c.last_oom_at = Some(NOW - 7200);
    c.runtime_limit = Some(256.0 * MI as f64);
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Warn), NOW);
    let cv = &v.containers[0];
    // One kill: max(256 × 1.2, 256 + 100) = 356Mi.
    assert_eq!(cv.recommended, Some(356 * MI));
    assert_eq!(cv.severity, Severity::Critical);
    assert!(
        cv.reasons
            .iter()
            .any(|r| r.contains("OOM-killed 1x in 14d at limit 256Mi, last 2.0 h ago")),
        "{:?}",
        cv.reasons
    );

    h.containers.get_mut("web").unwrap().oom_kills = 12;
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Warn), NOW);
    // Twelve kills: three steps, 256 × 1.2³ = 442.4Mi → 443Mi.
    assert_eq!(v.containers[0].recommended, Some(443 * MI));

    // The user already raised the limit above the bump: the old kills no longer flag it.
    let v = decide(
        &deployment(Some("512Mi"), None),
        HistoryStatus::Found(&h),
        &policy(Mode::Warn),
        NOW,
    );
    assert!(
        v.containers[0].severity < Severity::Critical,
        "{:?}",
        v.containers[0].reasons
    );
}

#[test]
fn a_leak_predicted_within_the_horizon_is_critical() {
    // 6 hours growing 1 MiB per 5 minutes from 100Mi: reaches 256Mi in about 8.7 h more.
    let samples: Vec<Sample> = (0..72)
        .map(|i| Sample {
            t: NOW - (72 - i) * 300,
            bytes: (100.0 + i as f64) * MI as f64,
        })
        .collect();
    let peaks: Vec<f64> = samples.iter().map(|s| s.bytes).collect();
    let c = ContainerHistory {
        covered_secs: 71 * 300,
        peaks: PeakStats::from_peaks(&peaks),
        samples,
        ..Default::default()
    };
    let h = WorkloadHistory {
        now: NOW,
        window_secs: 14 * 86400,
        containers: [("web".to_string(), c)].into_iter().collect(),
    };
    let v = decide(
        &deployment(Some("256Mi"), None),
        HistoryStatus::Found(&h),
        &policy(Mode::Warn),
        NOW,
    );
    let c = &v.containers[0];
    let fc = c.forecast.as_ref().unwrap();
    assert_eq!(fc.pattern, Pattern::Leak);
    let ttl = fc.time_to_limit.unwrap();
    let truth = (256.0 - 171.0) * 300.0;
    assert!((ttl - truth).abs() < truth * 0.1, "ttl {ttl} truth {truth}");
    assert_eq!(c.severity, Severity::Critical);
    assert!(
        c.reasons
            .iter()
            .any(|r| r.contains("hit in about") && r.contains("MiB/min")),
        "{:?}",
        c.reasons
    );
    // The recommendation covers the growth until the horizon: 171Mi + 24h × 12 MiB/h.
    assert!(
        c.recommended.unwrap() > 171 * MI + 24 * 12 * MI * 9 / 10,
        "{:?}",
        c.recommended
    );
}

#[test]
fn missing_limits_follow_the_policy() {
    let h = flat_history(200.0, 240.0);
    let w = deployment(None, Some("300Mi"));
    let mut p = policy(Mode::Mutate);
    p.missing_limit = MissingLimit::Add;
    let c = &decide(&w, HistoryStatus::Found(&h), &p, NOW).containers[0];
    // Recommended 276Mi is below the 300Mi request; the added limit must not be.
    assert_eq!(c.action, Action::Add { to: 300 * MI });
    assert!(
        c.reasons[0].starts_with("container web: no memory limit; recommended 300Mi"),
        "{:?}",
        c.reasons
    );

    p.mode = Mode::Enforce;
    p.missing_limit = MissingLimit::Deny;
    assert_eq!(
        decide(&w, HistoryStatus::Found(&h), &p, NOW).containers[0].action,
        Action::Deny
    );
    // Without history too: a missing limit needs no history to be denied.
    assert_eq!(
        decide(&w, HistoryStatus::Missing, &p, NOW).containers[0].action,
        Action::Deny
    );

    p.missing_limit = MissingLimit::Ignore;
    let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
    assert_eq!(v.containers[0].severity, Severity::Ok);
    assert!(v.reasons().is_empty());
}

#[test]
fn unknown_and_unavailable_history_never_deny() {
    let w = deployment(Some("64Mi"), None);
    let p = policy(Mode::Enforce);
    let v = decide(&w, HistoryStatus::Missing, &p, NOW);
    assert_eq!(v.containers[0].severity, Severity::Unknown);
    assert!(!v.denied());
    assert!(
        v.containers[0].reasons[0].contains("need 3h"),
        "{:?}",
        v.containers[0].reasons
    );

    let v = decide(
        &w,
        HistoryStatus::Unavailable("Prometheus did not answer within 2000 ms"),
        &p,
        NOW,
    );
    assert!(!v.denied());
    assert_eq!(v.reasons().len(), 1);
    assert_eq!(
        v.reasons()[0],
        "memory limits not checked (allowed): Prometheus did not answer within 2000 ms"
    );

    // Too little history is unknown too.
    let mut h = flat_history(200.0, 301.0);
    h.containers.get_mut("web").unwrap().covered_secs = 3600;
    let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
    assert_eq!(v.containers[0].severity, Severity::Unknown);
    assert!(!v.denied());
}

#[test]
fn invalid_limits_and_exclusions() {
    let h = flat_history(200.0, 301.0);
    let v = decide(
        &deployment(Some("12Q"), None),
        HistoryStatus::Found(&h),
        &policy(Mode::Enforce),
        NOW,
    );
    assert_eq!(v.containers[0].severity, Severity::Warn);
    assert!(v.containers[0].reasons[0].contains("invalid memory quantity \"12Q\""));
    assert!(!v.denied());

    let mut p = policy(Mode::Enforce);
    p.exclude.containers.push("web".into());
    assert!(decide(
        &deployment(Some("1Mi"), None),
        HistoryStatus::Found(&h),
        &p,
        NOW
    )
    .containers
    .is_empty());
}

#[test]
fn human_durations() {
    assert_eq!(human_secs(30.0), "30 s");
    assert_eq!(human_secs(35.0 * 60.0), "35 min");
    assert_eq!(human_secs(5.5 * 3600.0), "5.5 h");
    assert_eq!(human_secs(30.0 * 3600.0), "30 h");
    assert_eq!(human_secs(3.0 * 86400.0), "3 d");
}
