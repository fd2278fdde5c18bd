use serde_json::{json, Value};

use super::*;
use crate::forecast;
use crate::history::{LimitChange, OomKill, PeakStats, Sample};
use crate::policy::{Memory, MissingLimit, Percent};
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
        events_unseen: None,
    }
}

fn policy(mode: Mode) -> PolicySpec {
    PolicySpec {
        mode,
        ..PolicySpec::classic()
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
    // In enforce a workload's own annotation opts nothing out unless the policy says so: the
    // denial does not tell its author to add one.
    assert!(!msg.contains("oomguard.io/exclude"), "{msg}");
    assert!(
        msg.ends_with("Only the namespace's oomguard policy can exempt it (exclude.workloads)."),
        "{msg}"
    );
    let mut lets = policy(Mode::Enforce);
    lets.exclude.annotation = Some(true);
    let msg = decide(&w, HistoryStatus::Found(&h), &lets, NOW).deny_message();
    assert!(
        msg.contains("annotate it oomguard.io/exclude=\"true\""),
        "{msg}"
    );
}

#[test]
fn the_exclude_annotation_is_the_policy_owners_call_in_enforce() {
    let h = flat_history(200.0, 301.0);
    let obj = json!({
        "metadata": {"name": "web-app", "annotations": {"oomguard.io/exclude": "true"}},
        "spec": {"template": {"spec": {"containers": [
            {"name": "web", "resources": {"limits": {"memory": "256Mi"}}}]}}}
    });
    let w = Workload::from_object(WorkloadKind::Deployment, &obj, "team-a").unwrap();
    // warn and mutate: the workload's author may opt it out.
    for mode in [Mode::Warn, Mode::Mutate] {
        let v = decide(&w, HistoryStatus::Found(&h), &policy(mode), NOW);
        assert_eq!(
            v.out_of_scope,
            Some(OutOfScope::ExcludedByAnnotation),
            "{mode:?}"
        );
        assert!(v.containers.is_empty());
    }
    // enforce: decided (and denied), with a line saying why the annotation did not count.
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Enforce), NOW);
    assert!(v.out_of_scope.is_none());
    assert!(v.denied());
    let note = v.note.clone().unwrap_or_default();
    assert!(
        note.contains("oomguard.io/exclude is not honoured in namespace team-a"),
        "{note}"
    );
    // ... unless the policy owner allows it, or names the workload.
    let mut p = policy(Mode::Enforce);
    p.exclude.annotation = Some(true);
    let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
    assert_eq!(v.out_of_scope, Some(OutOfScope::ExcludedByAnnotation));
    let mut p = policy(Mode::Enforce);
    p.exclude.workloads.push("web-app".into());
    let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
    assert!(matches!(
        v.out_of_scope,
        Some(OutOfScope::ExcludedByPolicy { .. })
    ));
    // And a warn-mode policy may refuse the annotation too.
    let mut p = policy(Mode::Warn);
    p.exclude.annotation = Some(false);
    assert!(decide(&w, HistoryStatus::Found(&h), &p, NOW)
        .out_of_scope
        .is_none());
}

#[test]
fn low_headroom_warns_with_the_figure_but_is_not_raised() {
    // Peak 240Mi: the limit holds it but leaves less than half of 15%.
    let w = deployment(Some("256Mi"), None);
    let h = flat_history(200.0, 240.0);
    for mode in [Mode::Warn, Mode::Mutate, Mode::Enforce] {
        let v = decide(&w, HistoryStatus::Found(&h), &policy(mode), NOW);
        let c = &v.containers[0];
        assert_eq!(c.severity, Severity::Warn, "{mode:?}");
        // Not critical: a raise for headroom alone would be a restart for nothing yet.
        assert_eq!(c.recommended, Some(256 * MI), "{mode:?}");
        assert_eq!(c.action, Action::None, "{mode:?}");
        assert!(
            c.reasons[0]
                .contains("leaves 6% headroom over the 14d max 240Mi (policy 15%); consider 276Mi"),
            "{:?}",
            c.reasons
        );
    }
    // 264Mi leaves 10% over 240Mi, more than half of 15%: nothing to say.
    let v = decide(
        &deployment(Some("264Mi"), None),
        HistoryStatus::Found(&h),
        &policy(Mode::Mutate),
        NOW,
    );
    assert_eq!(v.containers[0].severity, Severity::Ok, "{:?}", v.reasons());
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
    assert_eq!(forecast::fit_of(c).pattern, Pattern::Steady, "precondition");
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
    // A series with a spike far above its level is not steady: auto is the max rule (from a
    // 2Gi limit: 1Gi holds the spike with more than half the headroom, and is kept).
    let spiky = flat_history(200.0, 900.0);
    let v = decide(
        &deployment(Some("2Gi"), None),
        HistoryStatus::Found(&spiky),
        &p,
        NOW,
    );
    assert_eq!(
        v.containers[0].recommended,
        Some(round_up_mi(spiky.containers["web"].peaks.max * 1.15))
    );
}

fn kills(at: &[i64], limit: Option<f64>) -> Vec<OomKill> {
    at.iter().map(|&t| OomKill { t, limit }).collect()
}

#[test]
fn oom_kills_bump_from_the_limit_and_escalate() {
    let w = deployment(Some("256Mi"), None);
    let mut h = flat_history(200.0, 250.0);
    let c = h.containers.get_mut("web").unwrap();
    c.oom_kills = kills(&[NOW - 7200], None);
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

    h.containers.get_mut("web").unwrap().oom_kills = kills(
        &(0..12).map(|i| NOW - 7200 - i * 600).collect::<Vec<_>>(),
        None,
    );
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

/// The ratchet: 6 kills at 256Mi, raised to 443Mi, then 36 h at ~300Mi without a kill.
fn raised_after_kills(with_kill_limits: bool) -> WorkloadHistory {
    let mi = MI as f64;
    let raise = NOW - 36 * 3600;
    let mut h = flat_history(300.0, 300.0);
    let c = h.containers.get_mut("web").unwrap();
    let at: Vec<i64> = (0..6).map(|i| raise - 3600 - i * 900).rev().collect();
    c.oom_kills = kills(&at, with_kill_limits.then_some(256.0 * mi));
    c.restarts = at;
    c.runtime_limit = Some(443.0 * mi);
    if !with_kill_limits {
        c.limit_history = vec![
            LimitChange {
                since: NOW - 14 * 86400,
                bytes: 256.0 * mi,
            },
            LimitChange {
                since: raise,
                bytes: 443.0 * mi,
            },
        ];
    }
    h
}

#[test]
fn kills_at_an_older_lower_limit_do_not_ratchet() {
    for with_kill_limits in [true, false] {
        let h = raised_after_kills(with_kill_limits);
        let w = deployment(Some("443Mi"), None);
        let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Enforce), NOW);
        let c = &v.containers[0];
        // 256 × 1.2³ = 442.4Mi was the answer to those kills; 443Mi carries it.
        assert_eq!(c.recommended, Some(443 * MI), "{:?}", c.reasons);
        assert!(c.severity < Severity::Critical, "{:?}", c.reasons);
        assert!(!v.denied());
        // Re-applying the old manifest (256Mi) asks for that bump again, not more.
        let v = decide(
            &deployment(Some("256Mi"), None),
            HistoryStatus::Found(&h),
            &policy(Mode::Mutate),
            NOW,
        );
        assert_eq!(v.containers[0].action, Action::Raise { to: 443 * MI });
        assert!(
            v.containers[0]
                .reasons
                .iter()
                .any(|r| r.contains("OOM-killed 6x in 14d at limit 256Mi")),
            "{:?}",
            v.containers[0].reasons
        );
        // And the policy's mode does not change the number (the reconciler reads it in any).
        let one = decide(
            &deployment(Some("443Mi"), None),
            HistoryStatus::Found(&h),
            &policy(Mode::Warn),
            NOW,
        );
        assert_eq!(one.containers[0].recommended, Some(443 * MI));
    }
}

#[test]
fn kills_at_the_current_limit_still_escalate() {
    let mi = MI as f64;
    let mut h = raised_after_kills(true);
    let c = h.containers.get_mut("web").unwrap();
    c.oom_kills
        .extend(kills(&[NOW - 3600, NOW - 600], Some(443.0 * mi)));
    let v = decide(
        &deployment(Some("443Mi"), None),
        HistoryStatus::Found(&h),
        &policy(Mode::Enforce),
        NOW,
    );
    let c = &v.containers[0];
    assert_eq!(c.severity, Severity::Critical);
    // Two kills at 443Mi: two steps, 443 × 1.44 = 637.9Mi → 638Mi.
    assert_eq!(c.recommended, Some(638 * MI));
    assert!(
        c.reasons[0].contains("OOM-killed 2x in 14d at limit 443Mi (+6 at other limits)"),
        "{:?}",
        c.reasons
    );
    assert!(v.denied());
    // A limit put back down below old kills is critical too.
    let v = decide(
        &deployment(Some("300Mi"), None),
        HistoryStatus::Found(&raised_after_kills(true)),
        &policy(Mode::Enforce),
        NOW,
    );
    assert!(v.denied(), "{:?}", v.reasons());
}

#[test]
fn oom_kills_count_with_any_amount_of_history() {
    // The crash loop on a real kubelet: 8 kills at 64Mi in 8 minutes, two sparse peaks
    // far below the limit (the peak before each kill is never scraped).
    let mi = MI as f64;
    let mut c = ContainerHistory {
        covered_secs: 60,
        peaks: PeakStats::from_peaks(&[20.0 * mi, 30.0 * mi]),
        samples: vec![
            Sample {
                t: NOW - 300,
                bytes: 20.0 * mi,
            },
            Sample {
                t: NOW - 240,
                bytes: 30.0 * mi,
            },
        ],
        runtime_limit: Some(64.0 * mi),
        ..Default::default()
    };
    c.oom_kills = kills(
        &(0..8).map(|i| NOW - 480 + i * 60).collect::<Vec<_>>(),
        Some(64.0 * mi),
    );
    c.restarts = c.oom_kills.iter().map(|k| k.t).collect();
    let h = WorkloadHistory {
        now: NOW,
        window_secs: 14 * 86400,
        containers: [("web".to_string(), c)].into_iter().collect(),
        events_unseen: None,
    };
    let w = deployment(Some("64Mi"), None);
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Enforce), NOW);
    let cv = &v.containers[0];
    assert_eq!(cv.severity, Severity::Critical, "{:?}", cv.reasons);
    // 8 kills: ceil(log2 9) = 4 steps, capped at 3: max(64 × 1.728, 64 + 100) = 164Mi.
    assert_eq!(cv.recommended, Some(164 * MI));
    assert!(v.denied());
    assert!(v.note.is_none(), "{:?}", v.note);
}

#[test]
fn a_killed_containers_peak_is_at_least_the_limit_it_was_killed_at() {
    // A leak of 2 MiB/s killed at 64Mi: the highest scrape saw 26 MiB.
    let mi = MI as f64;
    let mut c = ContainerHistory {
        covered_secs: 600,
        peaks: PeakStats::from_peaks(&[20.0 * mi, 26.0 * mi]),
        runtime_limit: Some(64.0 * mi),
        ..Default::default()
    };
    c.oom_kills = kills(&[NOW - 60], Some(64.0 * mi));
    c.restarts = vec![NOW - 60];
    let h = WorkloadHistory {
        now: NOW,
        window_secs: 14 * 86400,
        containers: [("web".to_string(), c)].into_iter().collect(),
        events_unseen: None,
    };
    let w = deployment(Some("64Mi"), None);
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Warn), NOW);
    let cv = &v.containers[0];
    assert_eq!(cv.peak, Some(64.0 * mi));
    assert_eq!(cv.scraped_peak, Some(26.0 * mi));
    assert!(
        cv.recommended.is_some_and(|r| r > 64 * MI),
        "{:?}",
        cv.recommended
    );
    // Only the kill, no scrape at all (the kubelet reported it; no Prometheus): the same floor.
    let only = crate::history::kills::with_kills(
        None,
        &[crate::history::kills::KeptKill {
            container: "web".into(),
            at: NOW - 60,
            limit: Some(64 * MI),
            pod: "web-1".into(),
            restarts: 1,
        }],
        NOW,
        86400,
    )
    .unwrap();
    let v = decide(&w, HistoryStatus::Found(&only), &policy(Mode::Warn), NOW);
    let cv = &v.containers[0];
    assert_eq!(cv.oom_kills, 1);
    assert_eq!(cv.peak, Some(64.0 * mi));
    assert_eq!(cv.scraped_peak, None);
    assert_eq!(cv.severity, Severity::Critical, "{:?}", cv.reasons);
    assert!(
        cv.recommended.is_some_and(|r| r > 64 * MI),
        "{:?}",
        cv.recommended
    );
}

#[test]
fn censored_data_is_never_lowered() {
    // 10 kills at 64Mi but the peaks say 31Mi: the peaks stop where the kernel killed.
    let mi = MI as f64;
    let mut h = flat_history(20.0, 31.0);
    let c = h.containers.get_mut("web").unwrap();
    let at: Vec<i64> = (0..10).map(|i| NOW - 86400 * 3 - i * 60).rev().collect();
    c.oom_kills = kills(&at, Some(128.0 * mi));
    c.restarts = at;
    let w = deployment(Some("256Mi"), None);
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Warn), NOW);
    let cv = &v.containers[0];
    // Kills at 128Mi ask 228Mi; a 256Mi limit is kept, never lowered to 36Mi.
    assert_eq!(cv.recommended, Some(256 * MI));
    assert!(cv.severity < Severity::Warn, "{:?}", cv.reasons);

    // Restarts alone (no OOM reason) censor too.
    let mut h = flat_history(20.0, 31.0);
    h.containers.get_mut("web").unwrap().restarts = vec![NOW - 3600];
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Warn), NOW);
    assert_eq!(v.containers[0].recommended, Some(256 * MI));

    // No restart source at all: said once, nothing lowered.
    let mut h = flat_history(20.0, 31.0);
    h.events_unseen = Some("no kube_pod_container_status_restarts_total in team-a".into());
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Warn), NOW);
    assert_eq!(v.containers[0].recommended, Some(256 * MI));
    assert_eq!(v.reasons().len(), 1, "{:?}", v.reasons());
    assert!(
        v.reasons()[0].starts_with("OOM kills cannot be seen without kube-state-metrics"),
        "{:?}",
        v.reasons()
    );

    // With a clean history the over-provisioned note still says how far it could go down.
    let h = flat_history(20.0, 31.0);
    let v = decide(&w, HistoryStatus::Found(&h), &policy(Mode::Warn), NOW);
    assert_eq!(v.containers[0].recommended, Some(36 * MI));
    assert_eq!(v.containers[0].severity, Severity::Info);
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
        events_unseen: None,
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
    // A new workload: nothing known, nothing to say.
    let v = decide(&w, HistoryStatus::Missing, &p, NOW);
    assert_eq!(v.containers[0].severity, Severity::Unknown);
    assert!(!v.denied());
    assert!(v.reasons().is_empty(), "{:?}", v.reasons());

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

    // Too little history is unknown too, said once for the workload.
    let mut h = flat_history(200.0, 301.0);
    h.containers.get_mut("web").unwrap().covered_secs = 3600;
    let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
    assert_eq!(v.containers[0].severity, Severity::Unknown);
    assert!(!v.denied());
    assert_eq!(
        v.reasons(),
        vec!["1h of memory history (need 3h): limits not checked yet".to_string()]
    );
}

#[test]
fn missing_history_is_one_line_per_workload_and_missing_limits_are_still_said() {
    let names = ["a", "b", "c", "d", "e", "f", "g"];
    let containers: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if i == 3 {
                json!({"name": n})
            } else {
                json!({"name": n, "resources": {"limits": {"memory": "128Mi"}}})
            }
        })
        .collect();
    let obj = json!({"metadata": {"name": "seven"},
        "spec": {"template": {"spec": {"containers": containers}}}});
    let w = Workload::from_object(WorkloadKind::Deployment, &obj, "team-a").unwrap();
    let mut h = flat_history(20.0, 30.0);
    let short = h.containers.remove("web").unwrap();
    for n in names {
        let mut c = short.clone();
        c.covered_secs = 1200;
        h.containers.insert(n.to_string(), c);
    }
    for status in [HistoryStatus::Found(&h), HistoryStatus::Missing] {
        let v = decide(&w, status, &policy(Mode::Warn), NOW);
        let reasons = v.reasons();
        let missing = "container d: no memory limit; set resources.limits.memory";
        assert!(
            reasons.iter().any(|r| r.starts_with(missing)),
            "{reasons:?}"
        );
        let history_lines = reasons.iter().filter(|r| r.contains("history")).count();
        let expected = if matches!(status, HistoryStatus::Found(_)) {
            2
        } else {
            1
        };
        // The history note once (Found), plus the missing-limit line, which names history.
        assert_eq!(history_lines, expected, "{reasons:?}");
        assert_eq!(reasons.len(), expected, "{reasons:?}");
    }
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

/// 6 hours growing 1 MiB per 5 minutes from 100Mi (12 MiB/h), no restart.
fn growing_history(runtime_limit: Option<f64>) -> WorkloadHistory {
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
        runtime_limit,
        ..Default::default()
    };
    WorkloadHistory {
        now: NOW,
        window_secs: 14 * 86400,
        containers: [("web".to_string(), c)].into_iter().collect(),
        events_unseen: None,
    }
}

#[test]
fn a_leak_is_not_lowered_under_its_forecast_growth() {
    // 1Gi over a leak at 171Mi: the leak room (48 h, about 750Mi) would save 25%, but in 7 days
    // the leak is forecast at about 2.2Gi: the limit is kept. With growthAhead 0s it is lowered.
    let h = growing_history(None);
    let w = deployment(Some("1Gi"), None);
    let mut p = policy(Mode::Warn);
    p.forecast.leak_room = Some(crate::policy::Duration(48 * 3600));
    let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
    assert_eq!(v.containers[0].recommended, Some(1024 * MI));
    p.lowering.growth_ahead = crate::policy::Duration(0);
    let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
    let rec = v.containers[0].recommended.unwrap();
    assert!(rec < 900 * MI && rec > 600 * MI, "{rec}");
}

#[test]
fn a_raise_made_in_place_is_kept_not_topped_up() {
    // The spec says 256Mi (critical: the leak reaches it in about 7 h); the running pods were
    // raised in place to 700Mi, which lasts the horizon: the recommendation is the running
    // limit, not a second, slightly higher raise.
    let w = deployment(Some("256Mi"), None);
    let p = policy(Mode::Mutate);
    let v = decide(
        &w,
        HistoryStatus::Found(&growing_history(Some(700.0 * MI as f64))),
        &p,
        NOW,
    );
    let c = &v.containers[0];
    assert_eq!(c.severity, Severity::Critical);
    assert_eq!(c.recommended, Some(700 * MI));
    assert_eq!(c.action, Action::Raise { to: 700 * MI });
    // Not running above the spec: the leak room from now.
    let v = decide(&w, HistoryStatus::Found(&growing_history(None)), &p, NOW);
    assert!(v.containers[0].recommended.unwrap() > 700 * MI);
    // Running at a limit the leak reaches within the horizon: the raise is made.
    let v = decide(
        &w,
        HistoryStatus::Found(&growing_history(Some(300.0 * MI as f64))),
        &p,
        NOW,
    );
    assert!(v.containers[0].recommended.unwrap() > 700 * MI);
}

/// A limit is raised only when it is critical (it would OOM), never to restore headroom alone
/// (a restart or resize each time the peaks creep up, and repeated ones a ratchet), whatever
/// its limit history.
#[test]
fn a_limit_is_raised_only_when_critical() {
    let mi = MI as f64;
    let w = deployment(Some("256Mi"), None);
    // Peak 240Mi: 256Mi leaves 6% (policy 15%).
    let mut h = flat_history(200.0, 240.0);
    let raised = |h: &mut WorkloadHistory, kill_after: bool| {
        let c = h.containers.get_mut("web").unwrap();
        c.limit_history = vec![
            LimitChange {
                since: NOW - 14 * 86400,
                bytes: 200.0 * mi,
            },
            LimitChange {
                since: NOW - 3 * 86400,
                bytes: 256.0 * mi,
            },
        ];
        // A kill at the limit after the raise is a reason again.
        let t = NOW - 86400;
        c.oom_kills = if kill_after {
            kills(&[t], Some(256.0 * mi))
        } else {
            Vec::new()
        };
        c.restarts = if kill_after { vec![t] } else { Vec::new() };
    };
    let p = policy(Mode::Mutate);
    for history in [false, true] {
        if history {
            raised(&mut h, false);
        }
        let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
        let c = &v.containers[0];
        assert_eq!(
            (c.severity, c.action, c.recommended),
            (Severity::Warn, Action::None, Some(256 * MI)),
            "{:?}",
            c.reasons
        );
    }

    // Killed at 256Mi after the raise: the bump raises it.
    raised(&mut h, true);
    let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
    assert!(matches!(v.containers[0].action, Action::Raise { to } if to > 276 * MI));

    // Below the window's peak: critical, raised.
    raised(&mut h, false);
    let w = deployment(Some("230Mi"), None);
    let c = h.containers.get_mut("web").unwrap();
    c.limit_history[1].bytes = 230.0 * mi;
    let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
    assert_eq!(v.containers[0].severity, Severity::Critical);
    assert!(matches!(v.containers[0].action, Action::Raise { .. }));
}

/// Killed at the spec's 256Mi, raised in place to the bump's 356Mi, peaks up to 320Mi since: the
/// next deploy gets the running limit, not a second raise to 320 × 1.15 = 368Mi (a kill at the
/// spec's limit says nothing of the running one). Killed at 356Mi too: raised past it.
#[test]
fn a_kill_below_the_running_limit_does_not_raise_past_it() {
    let mi = MI as f64;
    let mut h = flat_history(300.0, 320.0);
    let c = h.containers.get_mut("web").unwrap();
    c.oom_kills = kills(&[NOW - 86400], Some(256.0 * mi));
    c.restarts = vec![NOW - 86400];
    c.runtime_limit = Some(356.0 * mi);
    let w = deployment(Some("256Mi"), None);
    let p = policy(Mode::Mutate);
    let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
    assert_eq!(
        v.containers[0].action,
        Action::Raise { to: 356 * MI },
        "{:?}",
        v.containers[0].reasons
    );

    let c = h.containers.get_mut("web").unwrap();
    c.oom_kills.push(OomKill {
        t: NOW - 3600,
        limit: Some(356.0 * mi),
    });
    c.restarts.push(NOW - 3600);
    let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
    // One kill at 356Mi: max(356 × 1.2, 356 + 100) = 456Mi.
    assert_eq!(v.containers[0].action, Action::Raise { to: 456 * MI });
}

#[test]
fn kills_answered_by_a_raise_that_ran_clean_ask_no_more() {
    // The case with today's defaults (ratio 1.3, min 32Mi): 6 kills at 256Mi three days
    // ago, a raise to 443Mi 36 h ago, no kill since, peaks ~306 MiB under it. The kills' own
    // bump, 256 × 1.3³ = 563Mi, is no longer asked: the raise answered them.
    let mi = MI as f64;
    let raise = NOW - 36 * 3600;
    let mut h = flat_history(306.0, 306.0);
    let c = h.containers.get_mut("web").unwrap();
    let at: Vec<i64> = (0..6).map(|i| NOW - 3 * 86400 - i * 900).rev().collect();
    c.oom_kills = kills(&at, Some(256.0 * mi));
    c.restarts = at;
    c.runtime_limit = Some(443.0 * mi);
    c.limit_history = vec![
        LimitChange {
            since: NOW - 14 * 86400,
            bytes: 256.0 * mi,
        },
        LimitChange {
            since: raise,
            bytes: 443.0 * mi,
        },
    ];
    let p = PolicySpec {
        mode: Mode::Enforce,
        ..PolicySpec::default()
    };
    let v = decide(
        &deployment(Some("443Mi"), None),
        HistoryStatus::Found(&h),
        &p,
        NOW,
    );
    let cv = &v.containers[0];
    assert!(cv.severity < Severity::Critical, "{:?}", cv.reasons);
    assert_eq!(cv.recommended, Some(443 * MI), "{:?}", cv.reasons);
    assert!(!v.denied());
    // A limit put back below the raise is still critical, and asks for the raise again.
    let v = decide(
        &deployment(Some("300Mi"), None),
        HistoryStatus::Found(&h),
        &p,
        NOW,
    );
    assert_eq!(v.containers[0].severity, Severity::Critical);
    assert_eq!(v.containers[0].recommended, Some(443 * MI));
    // The raise is too fresh to have answered (under minHistory, 3h, of peaks since): the
    // kills' own bump stands.
    let mut fresh = h.clone();
    fresh.containers.get_mut("web").unwrap().limit_history[1].since = NOW - 3600;
    let v = decide(
        &deployment(Some("443Mi"), None),
        HistoryStatus::Found(&fresh),
        &p,
        NOW,
    );
    assert_eq!(v.containers[0].severity, Severity::Critical);
    assert_eq!(v.containers[0].recommended, Some(563 * MI));
    // A kill after the raise: it did not answer them either.
    let mut killed = h.clone();
    killed
        .containers
        .get_mut("web")
        .unwrap()
        .oom_kills
        .push(OomKill {
            t: NOW - 600,
            limit: Some(443.0 * mi),
        });
    let v = decide(
        &deployment(Some("443Mi"), None),
        HistoryStatus::Found(&killed),
        &p,
        NOW,
    );
    assert_eq!(v.containers[0].severity, Severity::Critical);
    assert!(v.containers[0].recommended > Some(443 * MI));
}

#[test]
fn a_pod_level_limit_bounds_every_container() {
    let h = flat_history(200.0, 301.0);
    let pod = |pod_limit: &str, web: Value| {
        let obj = json!({"metadata": {"name": "web-app"}, "spec": {"template": {"spec": {
            "resources": {"limits": {"memory": pod_limit}},
            "containers": [web]}}}});
        Workload::from_object(WorkloadKind::Deployment, &obj, "team-a").unwrap()
    };
    let mut p = policy(Mode::Mutate);
    p.missing_limit = MissingLimit::Add;
    // No container limit under a pod-level limit: bounded, not missing; nothing added.
    let w = pod("1Gi", json!({"name": "web"}));
    assert_eq!(w.pod_limit, Some(1024 * MI));
    let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
    let c = &v.containers[0];
    assert_eq!(c.action, Action::None, "{:?}", c.reasons);
    assert!(
        !c.reasons.iter().any(|r| r.contains("no memory limit")),
        "{:?}",
        c.reasons
    );
    let v = decide(&w, HistoryStatus::Missing, &p, NOW);
    assert!(
        v.containers[0].reasons.is_empty(),
        "{:?}",
        v.containers[0].reasons
    );
    // A raise that fits under the pod's limit is made ...
    let web = json!({"name": "web", "resources": {"limits": {"memory": "256Mi"}}});
    let v = decide(&pod("1Gi", web.clone()), HistoryStatus::Found(&h), &p, NOW);
    assert_eq!(v.containers[0].action, Action::Raise { to: 347 * MI });
    // ... one past it is not (the apiserver would refuse the container's limit), and says
    // where the fix goes; enforce names the pod's limit in the denial.
    let v = decide(
        &pod("300Mi", web.clone()),
        HistoryStatus::Found(&h),
        &p,
        NOW,
    );
    let c = &v.containers[0];
    assert_eq!(c.action, Action::None);
    assert!(
        c.reasons.iter().any(|r| r.contains(
            "needs 347Mi, above the pod's memory limit 300Mi (spec.resources.limits.memory)"
        )),
        "{:?}",
        c.reasons
    );
    let v = decide(
        &pod("300Mi", web),
        HistoryStatus::Found(&h),
        &policy(Mode::Enforce),
        NOW,
    );
    assert!(v.denied());
    assert!(
        v.deny_message()
            .contains("raise the pod's spec.resources.limits.memory (300Mi) and web's limit to at least 347Mi"),
        "{}",
        v.deny_message()
    );
}

#[test]
fn the_cluster_s_namespaces_and_oomguard_s_own_are_left_alone_by_every_face() {
    use crate::policy::store::PolicySet;
    let set = PolicySet::single(policy(Mode::Enforce)).reserving("oomguard");
    let h = flat_history(200.0, 301.0);
    for ns in ["kube-system", "kube-public", "kube-node-lease", "oomguard"] {
        let obj = json!({"metadata": {"name": "coredns"}, "spec": {"template": {"spec": {
            "containers": [{"name": "web", "resources": {"limits": {"memory": "256Mi"}}}]}}}});
        let w = Workload::from_object(WorkloadKind::Deployment, &obj, ns).unwrap();
        let p = set.for_namespace(ns);
        let v = decide(&w, HistoryStatus::Found(&h), &p, NOW);
        assert_eq!(
            v.out_of_scope,
            Some(OutOfScope::Reserved {
                namespace: ns.to_string()
            })
        );
        assert!(!v.denied());
        let mut p = (*p).clone();
        p.reconcile.enabled = true;
        assert!(scope::reconciled(&w, &p).is_err(), "the reconciler too");
    }
    // Any other namespace is decided.
    let obj = json!({"metadata": {"name": "web"}, "spec": {"template": {"spec": {
        "containers": [{"name": "web", "resources": {"limits": {"memory": "256Mi"}}}]}}}});
    let w = Workload::from_object(WorkloadKind::Deployment, &obj, "shop").unwrap();
    assert!(decide(
        &w,
        HistoryStatus::Found(&h),
        &set.for_namespace("shop"),
        NOW
    )
    .denied());
}
