use std::sync::OnceLock;

use serde_json::json;

use super::*;
use crate::forecast::LeakFit;
use crate::history::{ContainerHistory, OomKill, PeakStats, Sample};
use crate::policy::{Duration, Memory};
use crate::quantity::MI;
use crate::reconcile::record::Outcome;
use crate::verdict::EXCLUDE_ANNOTATION;
use crate::workload::{MemoryField, WorkloadKind};

const NOW: i64 = 1_800_000_000;
/// 2048 B/s: exactly 168.75 MiB a day, 0.1 MiB/min.
const LEAK: f64 = 2048.0;

fn mi(v: f64) -> f64 {
    v * MI as f64
}

/// A history whose fit is given: `level`, `slope` (B/s) and `pattern`, no noise; the latest
/// per-interval peak is `latest` MiB and the window's peak `peak` MiB.
fn history(pattern: Pattern, level: f64, slope: f64, latest: f64, peak: f64) -> ContainerHistory {
    let fit = LeakFit {
        pattern,
        slope,
        slope_low: slope,
        slope_high: slope,
        level: mi(level),
        at: NOW,
        noise: 0.0,
        lifetimes: 1,
        confidence: 0.9,
        since: NOW - 86_400,
    };
    let p = mi(peak);
    ContainerHistory {
        covered_secs: 14 * 86_400,
        peaks: PeakStats {
            max: p,
            p99: p,
            p98: p,
            p95: p,
            intervals: 4032,
        },
        samples: vec![Sample {
            t: NOW - 300,
            bytes: mi(latest),
        }],
        fit: OnceLock::from(fit),
        ..Default::default()
    }
}

fn histories(cs: Vec<(&str, ContainerHistory)>) -> WorkloadHistory {
    WorkloadHistory {
        now: NOW,
        window_secs: 14 * 86_400,
        containers: cs.into_iter().map(|(n, h)| (n.to_string(), h)).collect(),
        events_unseen: None,
    }
}

fn one(h: ContainerHistory) -> WorkloadHistory {
    histories(vec![("web", h)])
}

/// The Deployment team-a/web-app with `replicas` and these containers (name, limit MiB, and
/// the container's other fields, e.g. its command).
fn deployment(
    replicas: u32,
    containers: &[(&str, Option<u64>, serde_json::Value)],
) -> WorkloadState {
    let containers: Vec<serde_json::Value> = containers
        .iter()
        .map(|(name, limit, extra)| {
            let mut c = json!({"name": name});
            if let Some(l) = limit {
                c["resources"] = json!({"limits": {"memory": format!("{l}Mi")}});
            }
            if let Some(fields) = extra.as_object() {
                for (k, v) in fields {
                    c[k] = v.clone();
                }
            }
            c
        })
        .collect();
    let obj = json!({"metadata": {"name": "web-app", "namespace": "team-a"},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": containers}}}});
    WorkloadState {
        kind: ScalableKind::Deployment,
        workload: Workload::from_object(WorkloadKind::Deployment, &obj, "team-a").unwrap(),
        replicas,
        hpa: None,
        in_place_resize: true,
        max_unavailable: 1,
        rollout: Default::default(),
        reverted: Default::default(),
    }
}

fn workload(replicas: u32, limit_mi: u64) -> WorkloadState {
    deployment(replicas, &[("web", Some(limit_mi), json!({}))])
}

fn policy() -> PolicySpec {
    let mut p = PolicySpec::classic();
    p.reconcile.enabled = true;
    p.limits.max = Memory(2048 * MI);
    // The numbers below (a leak's 638Mi) are sized for 48 h of room (twice the 24-h horizon).
    p.forecast.leak_room = Some(crate::policy::Duration(48 * 3600));
    p
}

fn none() -> RecentActions {
    RecentActions::default()
}

fn steps(w: &WorkloadState, h: &WorkloadHistory, p: &PolicySpec, r: &RecentActions) -> Vec<Plan> {
    let out = plan(w, h, p, r, NOW);
    assert_eq!(out.report_only, p.reconcile.dry_run);
    out.steps
}

/// 430 MiB of a 512 MiB limit: 84%.
fn loaded(pattern: Pattern) -> WorkloadHistory {
    one(history(pattern, 380.0, 0.0, 430.0, 430.0))
}

#[test]
fn load_following_pressure_scales_out_proportionally() {
    // ceil(3 × 0.8398 / 0.7) = ceil(3.6) = 4.
    let s = steps(
        &workload(3, 512),
        &loaded(Pattern::LoadFollowing),
        &policy(),
        &none(),
    );
    assert_eq!(
        s,
        vec![Plan::ScaleOut {
            from: 3,
            to: 4,
            reason: "scale out 3 → 4 replicas: container web at 84% of its 512Mi limit \
                     (430Mi, load-following) over the 70% target"
                .to_string()
        }]
    );
}

#[test]
fn load_following_pressure_respects_min_replicas() {
    let mut p = policy();
    p.reconcile.min_replicas = 6;
    // ceil(2 × 0.8398 / 0.7) = 3, raised to minReplicas 6.
    let s = steps(
        &workload(2, 512),
        &loaded(Pattern::LoadFollowing),
        &p,
        &none(),
    );
    assert!(
        matches!(s.as_slice(), [Plan::ScaleOut { from: 2, to: 6, .. }]),
        "{s:?}"
    );
}

#[test]
fn steady_memory_is_never_scaled_out() {
    // 84% of its limit, steady: each new replica would hold as much (on the node, 1 → 5
    // replicas one step per cooldown with each pod at the same 108 MiB).
    let s = steps(
        &workload(2, 512),
        &loaded(Pattern::Steady),
        &policy(),
        &none(),
    );
    assert_eq!(
        s,
        vec![Plan::None {
            reason: "Deployment team-a/web-app: no action: container web: steady at 84% of its \
                     512Mi limit; replicas would not lower it"
                .to_string()
        }]
    );
}

#[test]
fn a_scale_out_waits_for_the_last_one_and_stops_after_one_that_did_not_help() {
    let w = workload(3, 512);
    let h = loaded(Pattern::LoadFollowing);
    let after = |outcome| RecentActions {
        actions: vec![PastAction {
            at: NOW - 3600,
            kind: ActionKind::ScaleOut,
            outcome,
        }],
    };
    let reason = |recent: &RecentActions| match steps(&w, &h, &policy(), recent).as_slice() {
        [Plan::None { reason }] => reason.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        reason(&after(Outcome::Pending)).contains("the last scale-out is not verified yet"),
        "one at a time"
    );
    assert!(
        reason(&after(Outcome::Ineffective)).contains(
            "the last scale-out did not lower its memory per pod: more replicas would not either"
        ),
        "no ratchet"
    );
    // One that helped (per-pod memory fell by at least 10%): the next may go.
    assert!(matches!(
        steps(&w, &h, &policy(), &after(Outcome::Effective)).as_slice(),
        [Plan::ScaleOut { from: 3, to: 4, .. }]
    ));
}

#[test]
fn refused_attempts_back_off_doubling() {
    // A change freeze refuses every attempt: each one in a row doubles the cooldown (10m),
    // up to 6 h, so that a refused raise is not re-sent every round.
    let h = leaking();
    let w = workload(3, 400);
    let refused = |n: i64, last_ago: i64| RecentActions {
        actions: (0..n)
            .map(|i| PastAction {
                at: NOW - last_ago - (n - 1 - i) * 60,
                kind: ActionKind::RaiseLimit,
                outcome: Outcome::Failed,
            })
            .collect(),
    };
    let p = policy();
    for (n, held_for) in [(1, 600), (2, 1200), (3, 2400), (6, 19200), (9, 21600)] {
        let recent = refused(n, 60);
        assert_eq!(backoff_secs(&recent, &p), held_for as u64, "{n} refusals");
        match steps(&w, &h, &p, &recent).as_slice() {
            [Plan::Cooldown { until, reason }] => {
                assert_eq!(*until, NOW - 60 + held_for, "{n}: {reason}");
                assert!(reason.starts_with("backoff"), "{reason}");
                assert!(
                    reason.contains(&format!("after {n} refused attempt")),
                    "{reason}"
                );
            }
            other => panic!("{n}: {other:?}"),
        }
        // Once it has run out, the action is tried again.
        let recent = refused(n, held_for + 1);
        assert!(matches!(
            steps(&w, &h, &p, &recent).as_slice(),
            [Plan::RaiseLimit { .. }]
        ));
    }
    // A success in between starts over.
    let mut recent = refused(3, 7200);
    recent.actions.push(PastAction {
        at: NOW - 7000,
        kind: ActionKind::RaiseLimit,
        outcome: Outcome::Effective,
    });
    assert_eq!(backoff_secs(&recent, &p), 600);
}

#[test]
fn under_the_target_is_no_action() {
    let h = one(history(Pattern::LoadFollowing, 250.0, 0.0, 256.0, 260.0));
    let s = steps(&workload(3, 512), &h, &policy(), &none());
    assert_eq!(
        s,
        vec![Plan::None {
            reason: "Deployment team-a/web-app: no action: container web at 50% of its 512Mi \
                     limit (256Mi, load-following), within the 70% target"
                .to_string()
        }]
    );
}

#[test]
fn scale_out_is_capped_at_max_replicas() {
    // ceil(8 × 0.8398 / 0.7) = ceil(9.6) = 10 fits; ceil(9 × 0.8398 / 0.7) = 11 does not.
    let s = steps(
        &workload(9, 512),
        &loaded(Pattern::LoadFollowing),
        &policy(),
        &none(),
    );
    assert_eq!(
        s,
        vec![Plan::ScaleOut {
            from: 9,
            to: 10,
            reason: "scale out 9 → 10 replicas: container web at 84% of its 512Mi limit \
                     (430Mi, load-following) over the 70% target (wanted 11, capped at \
                     maxReplicas 10)"
                .to_string()
        }]
    );
}

#[test]
fn at_max_replicas_is_out_of_bounds() {
    // ceil(10 × 0.83984 / 0.7) = ceil(11.998) = 12.
    let s = steps(
        &workload(10, 512),
        &loaded(Pattern::LoadFollowing),
        &policy(),
        &none(),
    );
    assert_eq!(
        s,
        vec![Plan::OutOfBounds {
            what: Bound::Replicas,
            wanted: 12,
            max: 10,
            reason: "container web at 84% of its 512Mi limit (430Mi, load-following) over the \
                     70% target wants 12 replicas, above maxReplicas 10 (at 10); no action"
                .to_string()
        }]
    );
}

#[test]
fn with_an_hpa_recommend_its_max_instead_of_scaling() {
    let mut w = workload(4, 512);
    w.hpa = Some(HpaInfo { min: 2, max: 4 });
    // ceil(4 × 0.8398 / 0.7) = ceil(4.8) = 5.
    let s = steps(&w, &loaded(Pattern::LoadFollowing), &policy(), &none());
    assert_eq!(
        s,
        vec![Plan::RecommendHpa {
            current_max: 4,
            recommended_max: 5,
            reason: "container web at 84% of its 512Mi limit (430Mi, load-following) over the \
                     70% target wants 5 replicas; an HPA owns the count: raise its maxReplicas \
                     4 → 5"
                .to_string()
        }]
    );
    // A recommendation is no action: no cooldown holds it.
    let recent = RecentActions {
        actions: vec![PastAction {
            at: NOW - 10,
            kind: ActionKind::ScaleOut,
            outcome: Outcome::Pending,
        }],
    };
    let held = steps(&w, &loaded(Pattern::LoadFollowing), &policy(), &recent);
    assert_eq!(held, s);
}

#[test]
fn with_an_hpa_that_can_get_there_nothing_is_done() {
    let mut w = workload(4, 512);
    w.hpa = Some(HpaInfo { min: 2, max: 8 });
    let s = steps(&w, &loaded(Pattern::LoadFollowing), &policy(), &none());
    assert_eq!(
        s,
        vec![Plan::None {
            reason: "Deployment team-a/web-app: no action: container web at 84% of its 512Mi \
                     limit (430Mi, load-following) over the 70% target wants 5 replicas, within \
                     the max 8 of the HPA that owns the count"
                .to_string()
        }]
    );
}

#[test]
fn with_an_hpa_at_the_policy_max_replicas_is_out_of_bounds() {
    let mut w = workload(10, 512);
    w.hpa = Some(HpaInfo { min: 2, max: 10 });
    let s = steps(&w, &loaded(Pattern::LoadFollowing), &policy(), &none());
    assert!(
        matches!(
            s.as_slice(),
            [Plan::OutOfBounds {
                what: Bound::Replicas,
                wanted: 12,
                max: 10,
                ..
            }]
        ),
        "{s:?}"
    );
}

#[test]
fn spiky_below_the_limit_is_no_action() {
    // Latest 450 of 512 MiB (88%) is over the target, but spikes are not load: no scale-out.
    let h = one(history(Pattern::Spiky, 200.0, 0.0, 450.0, 440.0));
    let s = steps(&workload(3, 512), &h, &policy(), &none());
    assert_eq!(
        s,
        vec![Plan::None {
            reason: "Deployment team-a/web-app: no action: container web: spiky, 14d peak 440Mi \
                     within its 512Mi limit"
                .to_string()
        }]
    );
}

#[test]
fn spiky_above_the_limit_raises_it() {
    // Peak 600 MiB over a 512 MiB limit: 600 × 1.15 = 690 MiB.
    let h = one(history(Pattern::Spiky, 200.0, 0.0, 210.0, 600.0));
    let mut w = workload(3, 512);
    w.in_place_resize = false;
    let s = steps(&w, &h, &policy(), &none());
    assert_eq!(
        s,
        vec![Plan::RaiseLimit {
            container: "web".to_string(),
            from: 512 * MI,
            to: 690 * MI,
            method: ResizeMethod::TemplatePatch,
            reason: "container web: limit 512Mi is below the 14d peak 600Mi; recommended 690Mi: \
                     raise 512Mi → 690Mi by a template patch (a rollout)"
                .to_string()
        }]
    );
}

/// A leak at 300 MiB growing 168.75 MiB a day against a 400 MiB limit: it gets there in
/// 100 MiB / 2048 B/s = 51200 s (14 h); 469 MiB at the 24 h horizon, 637.5 MiB at twice the
/// horizon (the default `forecast.leakRoom`, what a leak's limit is sized for).
fn leaking() -> WorkloadHistory {
    one(history(Pattern::Leak, 300.0, LEAK, 300.0, 300.0))
}

#[test]
fn leak_raises_the_limit_in_place_to_the_verdicts_recommendation() {
    let s = steps(&workload(3, 400), &leaking(), &policy(), &none());
    assert_eq!(
        s,
        vec![Plan::RaiseLimit {
            container: "web".to_string(),
            from: 400 * MI,
            to: 638 * MI,
            method: ResizeMethod::InPlaceResize,
            reason: "container web: limit 400Mi hit in about 14 h at +0.1 MiB/min (leak, 0 \
                     restarts/24h); recommended 638Mi: raise 400Mi → 638Mi in place"
                .to_string()
        }]
    );
}

#[test]
fn raise_goes_to_the_template_without_in_place_resize() {
    let mut w = workload(3, 400);
    w.in_place_resize = false;
    let s = steps(&w, &leaking(), &policy(), &none());
    assert!(
        matches!(
            s.as_slice(),
            [Plan::RaiseLimit {
                method: ResizeMethod::TemplatePatch,
                to,
                ..
            }] if *to == 638 * MI
        ),
        "{s:?}"
    );
}

#[test]
fn raise_matches_verdict_decide_exactly() {
    // The plan sizes with the admission rule, whatever the numbers.
    let w = workload(3, 400);
    let h = leaking();
    let v = verdict::decide(&w.workload, HistoryStatus::Found(&h), &policy(), NOW)
        .containers
        .remove(0);
    let s = steps(&w, &h, &policy(), &none());
    match s.as_slice() {
        [Plan::RaiseLimit { to, .. }] => assert_eq!(Some(*to), v.recommended),
        other => panic!("{other:?}"),
    }
}

#[test]
fn level_shift_short_of_headroom_waits_for_the_deploy() {
    // Moved to 450 MiB, peak 480: 480 × 1.15 = 552 MiB over a 512 MiB limit. Less headroom than
    // the policy asks is not critical (the limit is above every peak and no leak reaches it):
    // `recommend` and admission raise it at the next deploy; the reconciler acts on what will
    // OOM only.
    let h = one(history(Pattern::LevelShift, 450.0, 0.0, 455.0, 480.0));
    let s = steps(&workload(3, 512), &h, &policy(), &none());
    assert_eq!(
        s,
        vec![Plan::None {
            reason: "Deployment team-a/web-app: no action: container web: level-shift, its 512Mi \
                     limit lasts 1d"
                .to_string()
        }]
    );
    // Above the peak the same shift is critical, and raised in place.
    let h = one(history(Pattern::LevelShift, 450.0, 0.0, 455.0, 530.0));
    let s = steps(&workload(3, 512), &h, &policy(), &none());
    assert!(
        matches!(s.as_slice(), [Plan::RaiseLimit { from, to, .. }] if *from == 512 * MI && *to == 610 * MI),
        "{s:?}"
    );
}

/// After an in-place raise the template keeps 400Mi while the pods run with 638Mi: planned from
/// the template the same leak is raised again after every cooldown; from the pods' limits
/// (what the controller plans with) it is not.
#[test]
fn after_an_in_place_raise_the_pods_limit_is_the_one_planned_with() {
    use crate::reconcile::observe::{live_limits, with_live_limits};
    let template = workload(3, 400);
    assert!(matches!(
        steps(&template, &leaking(), &policy(), &none()).as_slice(),
        [Plan::RaiseLimit { .. }]
    ));
    let pod = |spec: &str, applied: &str| -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "web", "resources": {"limits": {"memory": spec}}}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "web", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                "resources": {"limits": {"memory": applied}}}]}
        }))
        .unwrap()
    };
    let resized = [
        pod("638Mi", "638Mi"),
        pod("638Mi", "638Mi"),
        pod("638Mi", "638Mi"),
    ];
    let live = with_live_limits(template.clone(), &live_limits(&resized));
    assert_eq!(live.workload.containers[0].limit.bytes(), Some(638 * MI));
    assert!(matches!(
        steps(&live, &leaking(), &policy(), &none()).as_slice(),
        [Plan::None { .. }]
    ));
    // One pod whose resize the kubelet has not applied yet still runs at 400Mi: planned as such.
    let pending = [pod("638Mi", "638Mi"), pod("638Mi", "400Mi")];
    let live = with_live_limits(template, &live_limits(&pending));
    assert_eq!(live.workload.containers[0].limit.bytes(), Some(400 * MI));
}

#[test]
fn leak_within_a_roomy_limit_is_no_action() {
    // 300 MiB + 168.75 MiB/day stays under 1 GiB for the horizon.
    let s = steps(&workload(3, 1024), &leaking(), &policy(), &none());
    assert_eq!(
        s,
        vec![Plan::None {
            reason: "Deployment team-a/web-app: no action: container web: leak, its 1Gi limit \
                     lasts 1d"
                .to_string()
        }]
    );
}

fn at_max() -> PolicySpec {
    let mut p = policy();
    p.limits.max = Memory(400 * MI);
    p
}

#[test]
fn leak_past_the_limit_max_is_out_of_bounds() {
    let s = steps(&workload(5, 400), &leaking(), &at_max(), &none());
    assert_eq!(
        s,
        vec![Plan::OutOfBounds {
            what: Bound::Limit {
                container: "web".to_string()
            },
            wanted: 638 * MI,
            max: 400 * MI,
            reason: "container web: leak needs a limit of 638Mi, above the policy max 400Mi \
                     (limit 400Mi); no action"
                .to_string()
        }]
    );
}

#[test]
fn leak_past_the_limit_max_plans_a_restart_honouring_max_unavailable() {
    let mut p = at_max();
    p.reconcile.restart_before_oom = true;
    let mut w = workload(5, 400);
    w.max_unavailable = 2;
    let s = steps(&w, &leaking(), &p, &none());
    assert_eq!(
        s,
        vec![Plan::PlannedRestart {
            container: "web".to_string(),
            before_oom_at: NOW + 51_200,
            max_unavailable: 2,
            batches: 3,
            reason: "container web: leaks +0.1 MiB/min, hits its 400Mi limit in about 14 h and \
                     needs 638Mi (policy max 400Mi); restart 5 pods 2 at a time (3 batches, \
                     maxUnavailable 2) within 14 h"
                .to_string()
        }]
    );
}

#[test]
fn restart_with_max_unavailable_zero_goes_one_pod_at_a_time() {
    let mut p = at_max();
    p.reconcile.restart_before_oom = true;
    let mut w = workload(4, 400);
    w.max_unavailable = 0;
    let s = steps(&w, &leaking(), &p, &none());
    assert!(
        matches!(
            s.as_slice(),
            [Plan::PlannedRestart {
                max_unavailable: 0,
                batches: 4,
                ..
            }]
        ),
        "{s:?}"
    );
}

#[test]
fn restart_waits_when_the_oom_is_beyond_the_horizon() {
    // Horizon 12 h: the OOM in 14 h is past it, and the 12 h forecast (300 + 84.375 MiB)
    // fits the 400 MiB limit: nothing to do yet.
    let mut p = at_max();
    p.reconcile.restart_before_oom = true;
    p.forecast.horizon = Duration(12 * 3600);
    let s = steps(&workload(4, 400), &leaking(), &p, &none());
    assert_eq!(
        s,
        vec![Plan::None {
            reason: "Deployment team-a/web-app: no action: container web: leak, its 400Mi limit \
                     lasts 12h"
                .to_string()
        }]
    );
}

#[test]
fn two_leaking_containers_share_one_restart_the_earliest() {
    let mut p = at_max();
    p.reconcile.restart_before_oom = true;
    let w = deployment(
        2,
        &[
            ("web", Some(400), json!({})),
            ("sidecar", Some(400), json!({})),
        ],
    );
    // The sidecar leaks twice as fast: it hits 400 MiB in 25600 s.
    let h = histories(vec![
        ("web", history(Pattern::Leak, 300.0, LEAK, 300.0, 300.0)),
        (
            "sidecar",
            history(Pattern::Leak, 300.0, 2.0 * LEAK, 300.0, 300.0),
        ),
    ]);
    let s = steps(&w, &h, &p, &none());
    match s.as_slice() {
        [Plan::PlannedRestart {
            container,
            before_oom_at,
            ..
        }] => {
            assert_eq!(container, "sidecar");
            assert_eq!(*before_oom_at, NOW + 25_600);
        }
        other => panic!("{other:?}"),
    }
}

fn past(ago: i64, kind: ActionKind) -> PastAction {
    PastAction {
        at: NOW - ago,
        kind,
        outcome: Outcome::Effective,
    }
}

#[test]
fn cooldown_holds_actions_after_a_recent_one() {
    let recent = RecentActions {
        actions: vec![
            past(3000, ActionKind::ScaleOut),
            past(240, ActionKind::RaiseLimit),
        ],
    };
    let s = steps(
        &workload(3, 512),
        &loaded(Pattern::LoadFollowing),
        &policy(),
        &recent,
    );
    assert_eq!(
        s,
        vec![Plan::Cooldown {
            until: NOW + 360,
            reason: "cooldown 10m: last action raise-limit 4 min ago; holding scale-out for 6 min"
                .to_string()
        }]
    );
}

#[test]
fn cooldown_ends_exactly_at_its_length() {
    let recent = RecentActions {
        actions: vec![past(600, ActionKind::ScaleOut)],
    };
    let s = steps(
        &workload(3, 512),
        &loaded(Pattern::LoadFollowing),
        &policy(),
        &recent,
    );
    assert!(
        matches!(s.as_slice(), [Plan::ScaleOut { from: 3, to: 4, .. }]),
        "{s:?}"
    );
}

#[test]
fn rate_limit_counts_the_last_hour_only() {
    let mut p = policy();
    p.reconcile.max_actions_per_hour = 2;
    let mut recent = RecentActions {
        actions: vec![
            past(3700, ActionKind::ScaleOut),
            past(3000, ActionKind::ScaleOut),
        ],
    };
    let w = workload(3, 512);
    let h = loaded(Pattern::LoadFollowing);
    // One action in the last hour of at most two: go.
    let s = steps(&w, &h, &p, &recent);
    assert!(matches!(s.as_slice(), [Plan::ScaleOut { .. }]), "{s:?}");
    recent.actions.push(past(1200, ActionKind::RaiseLimit));
    let s = steps(&w, &h, &p, &recent);
    assert_eq!(
        s,
        vec![Plan::RateLimited {
            until: Some(NOW + 600),
            reason: "rate limit: 2 actions in the last hour (max 2/h); holding scale-out; next \
                     slot in 10 min"
                .to_string()
        }]
    );
}

#[test]
fn rate_limit_gives_the_budget_to_the_most_urgent() {
    let mut p = policy();
    p.reconcile.max_actions_per_hour = 2;
    let recent = RecentActions {
        actions: vec![past(1800, ActionKind::ScaleOut)],
    };
    // "app" is under load (listed first), "web" leaks: the raise goes first.
    let w = deployment(
        3,
        &[("app", Some(512), json!({})), ("web", Some(400), json!({}))],
    );
    let h = histories(vec![
        (
            "app",
            history(Pattern::LoadFollowing, 380.0, 0.0, 430.0, 430.0),
        ),
        ("web", history(Pattern::Leak, 300.0, LEAK, 300.0, 300.0)),
    ]);
    let s = steps(&w, &h, &p, &recent);
    match s.as_slice() {
        [Plan::RaiseLimit { container, to, .. }, Plan::RateLimited { until, reason }] => {
            assert_eq!(container, "web");
            assert_eq!(*to, 638 * MI);
            assert_eq!(*until, Some(NOW + 1800));
            assert_eq!(
                reason,
                "rate limit: 1 actions in the last hour (max 2/h); holding scale-out; next slot \
                 in 30 min"
            );
        }
        other => panic!("{other:?}"),
    }
    // With room for both, both go, containers first.
    p.reconcile.max_actions_per_hour = 3;
    let s = steps(&w, &h, &p, &recent);
    assert!(
        matches!(
            s.as_slice(),
            [
                Plan::RaiseLimit { .. },
                Plan::ScaleOut { from: 3, to: 4, .. }
            ]
        ),
        "{s:?}"
    );
}

#[test]
fn zero_budget_never_acts() {
    let mut p = policy();
    p.reconcile.max_actions_per_hour = 0;
    let s = steps(&workload(3, 400), &leaking(), &p, &none());
    match s.as_slice() {
        [Plan::RateLimited {
            until: None,
            reason,
        }] => assert_eq!(
            reason,
            "rate limit: 0 actions in the last hour (max 0/h); holding raise-limit; no actions \
             allowed"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dry_run_marks_the_plan_report_only_with_the_same_steps() {
    let mut p = policy();
    let w = workload(3, 400);
    let wet = plan(&w, &leaking(), &p, &none(), NOW);
    p.reconcile.dry_run = true;
    let dry = plan(&w, &leaking(), &p, &none(), NOW);
    assert!(!wet.report_only);
    assert!(dry.report_only);
    assert_eq!(dry.steps, wet.steps);
    assert_eq!(dry.actions().count(), 1);
}

#[test]
fn excluded_workloads_get_none() {
    let mut w = workload(3, 400);
    w.workload
        .annotations
        .insert(EXCLUDE_ANNOTATION.to_string(), "true".to_string());
    assert_eq!(
        steps(&w, &leaking(), &policy(), &none()),
        vec![Plan::None {
            reason: "Deployment team-a/web-app: excluded by its annotation oomguard.io/exclude: \
                     \"true\"; no action"
                .to_string(),
        }]
    );
    let mut p = policy();
    p.exclude.workloads = vec!["web-app".to_string()];
    assert_eq!(
        steps(&workload(3, 400), &leaking(), &p, &none()),
        vec![Plan::None {
            reason: "Deployment team-a/web-app: excluded by the policy of namespace team-a \
                     (exclude.workloads); no action"
                .to_string(),
        }]
    );
    // An operator's workload: its custom resource is the fix, and the operator would undo
    // whatever oomguard changed.
    let mut owned = workload(3, 400);
    owned.workload.controlled_by = Some("Kafka/cluster".to_string());
    assert_eq!(
        steps(&owned, &leaking(), &policy(), &none()),
        vec![Plan::None {
            reason: "Deployment team-a/web-app: managed by Kafka/cluster: set memory there; its \
                     operator undoes edits here; no action"
                .to_string(),
        }]
    );
    // One a workload controller made (a ReplicaSet's): its owner is decided instead.
    let mut made = workload(3, 400);
    made.workload.controlled_by = Some("Deployment/web".to_string());
    assert_eq!(
        steps(&made, &leaking(), &policy(), &none()),
        vec![Plan::None {
            reason: "Deployment team-a/web-app: controlled by Deployment/web, whose template is \
                     the one to size; no action"
                .to_string(),
        }]
    );
}

#[test]
fn excluded_containers_are_skipped() {
    let mut p = policy();
    p.exclude.containers = vec!["web".to_string()];
    let s = steps(&workload(3, 400), &leaking(), &p, &none());
    assert_eq!(
        s,
        vec![Plan::None {
            reason: "Deployment team-a/web-app: no action: no container to reconcile".to_string()
        }]
    );
}

#[test]
fn disabled_reconcile_is_none() {
    let mut p = policy();
    p.reconcile.enabled = false;
    let mut w = workload(3, 400);
    w.kind = ScalableKind::StatefulSet;
    assert_eq!(
        steps(&w, &leaking(), &p, &none()),
        vec![Plan::None {
            reason:
                "StatefulSet team-a/web-app: the policy of namespace team-a does not enable the \
                     reconciler (reconcile.enabled: false); no action"
                    .to_string()
        }]
    );
}

#[test]
fn missing_history_limit_or_pattern_is_none_with_why() {
    let w = workload(3, 400);
    let s = steps(&w, &histories(vec![]), &policy(), &none());
    assert_eq!(
        s[0].reason(),
        "Deployment team-a/web-app: no action: container web: no memory history"
    );
    let mut short = history(Pattern::Leak, 300.0, LEAK, 300.0, 300.0);
    short.covered_secs = 3600;
    let s = steps(&w, &one(short), &policy(), &none());
    assert_eq!(
        s[0].reason(),
        "Deployment team-a/web-app: no action: container web: 1h of memory history (need 3h): \
         limits not checked yet"
    );
    let s = steps(
        &w,
        &one(history(Pattern::Unknown, 300.0, 0.0, 390.0, 390.0)),
        &policy(),
        &none(),
    );
    assert_eq!(
        s[0].reason(),
        "Deployment team-a/web-app: no action: container web: pattern unknown"
    );
    let mut nolimit = workload(3, 400);
    nolimit.workload.containers[0].limit = MemoryField::Missing;
    let s = steps(&nolimit, &leaking(), &policy(), &none());
    assert_eq!(
        s[0].reason(),
        "Deployment team-a/web-app: no action: container web: no memory limit (admission's call)"
    );
}

#[test]
fn scaled_to_zero_is_left_alone() {
    let s = steps(
        &workload(0, 512),
        &loaded(Pattern::LoadFollowing),
        &policy(),
        &none(),
    );
    assert_eq!(
        s[0].reason(),
        "Deployment team-a/web-app: scaled to 0 replicas; no action"
    );
}

#[test]
fn never_beyond_the_policy_bounds() {
    // Many shapes and sizes: no raise past limits.max, no scale past maxReplicas.
    let p = policy();
    for pattern in [
        Pattern::Steady,
        Pattern::LoadFollowing,
        Pattern::Spiky,
        Pattern::Leak,
        Pattern::LevelShift,
    ] {
        for (level, peak) in [(100.0, 3000.0), (1900.0, 2500.0), (500.0, 520.0)] {
            for replicas in [1, 9, 10, 30] {
                let h = one(history(pattern, level, 4.0 * LEAK, peak, peak));
                for s in steps(&workload(replicas, 512), &h, &p, &none()) {
                    match s {
                        Plan::RaiseLimit { to, .. } => assert!(to <= p.limits.max.0),
                        Plan::ScaleOut { to, .. } => assert!(to <= p.reconcile.max_replicas),
                        _ => {}
                    }
                }
            }
        }
    }
}

#[test]
fn an_oom_loop_too_fast_to_fit_still_gets_its_limit_raised() {
    // Peaks at the 256 MiB limit, 30 OOM kills in the window, no lifetime long enough to fit.
    let mut h = history(Pattern::Unknown, 0.0, 0.0, 256.0, 256.0);
    h.restarts = (0..30).map(|i| NOW - 120 - i * 600).collect();
    h.oom_kills = h
        .restarts
        .iter()
        .map(|&t| OomKill { t, limit: None })
        .collect();
    let s = steps(&workload(2, 256), &one(h), &policy(), &none());
    match s.as_slice() {
        [Plan::RaiseLimit {
            container,
            from,
            to,
            method,
            reason,
        }] => {
            assert_eq!(container, "web");
            assert_eq!(*from, 256 * MI);
            assert!(*to > 256 * MI, "{s:?}");
            assert_eq!(*method, ResizeMethod::InPlaceResize);
            assert!(reason.contains("OOM"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The same series without OOM kills or peaks at the limit: nothing to say.
    let quiet = history(Pattern::Unknown, 0.0, 0.0, 100.0, 120.0);
    let s = steps(&workload(2, 256), &one(quiet), &policy(), &none());
    assert!(
        matches!(s.as_slice(), [Plan::None { reason }] if reason.contains("pattern unknown")),
        "{s:?}"
    );
}

#[test]
fn held_back_answers_for_one_action_as_the_plan_would() {
    let mut p = policy();
    p.reconcile.max_actions_per_hour = 2;
    // Inside the cooldown: the same step the plan gives.
    let recent = RecentActions {
        actions: vec![past(240, ActionKind::RaiseLimit)],
    };
    assert_eq!(
        held_back(ActionKind::ScaleOut, &recent, &p, NOW),
        Some(Plan::Cooldown {
            until: NOW + 360,
            reason: "cooldown 10m: last action raise-limit 4 min ago; holding scale-out for 6 min"
                .to_string()
        })
    );
    // Past the cooldown, one slot left of two: free.
    let mut recent = RecentActions {
        actions: vec![past(3000, ActionKind::ScaleOut)],
    };
    assert_eq!(held_back(ActionKind::ScaleOut, &recent, &p, NOW), None);
    // Budget used up: rate limited until the oldest leaves the hour.
    recent.actions.push(past(1200, ActionKind::RaiseLimit));
    assert_eq!(
        held_back(ActionKind::RaiseLimit, &recent, &p, NOW),
        Some(Plan::RateLimited {
            until: Some(NOW + 600),
            reason: "rate limit: 2 actions in the last hour (max 2/h); holding raise-limit; next \
                     slot in 10 min"
                .to_string()
        })
    );
    // A zero budget never frees.
    p.reconcile.max_actions_per_hour = 0;
    assert!(matches!(
        held_back(ActionKind::Restart, &none(), &p, NOW),
        Some(Plan::RateLimited { until: None, .. })
    ));
}

/// The OOM loop above in a JVM whose heap alone is twice its limit.
fn killed_jvm() -> (WorkloadHistory, WorkloadState, WorkloadState) {
    let mut h = history(Pattern::Unknown, 0.0, 0.0, 256.0, 256.0);
    h.restarts = (0..3).map(|i| NOW - 120 - i * 600).collect();
    h.oom_kills = h
        .restarts
        .iter()
        .map(|&t| OomKill { t, limit: None })
        .collect();
    let java = json!({"command": ["java", "-Xmx512m", "-jar", "app.jar"]});
    let jvm = deployment(2, &[("web", Some(256), java)]);
    (one(h), jvm, workload(2, 256))
}

#[test]
fn a_raise_is_never_below_what_the_containers_own_settings_need() {
    // Killed at 256Mi: the OOM bump alone asks 256 × 1.3² = 433Mi. The container runs
    // `java -Xmx512m`: its heap alone is twice the limit, so 433Mi would be killed again; the
    // reconciler reads the same workload as admission and raises to the heap + non-heap floor.
    let (h, jvm, plain) = killed_jvm();
    let p = policy();
    let to = |w: &WorkloadState| match steps(w, &h, &p, &none()).as_slice() {
        [Plan::RaiseLimit { to, .. }] => *to,
        other => panic!("{other:?}"),
    };
    let bump_only = to(&plain);
    let raised = to(&jvm);
    let v = verdict::decide(&jvm.workload, HistoryStatus::Found(&h), &p, NOW)
        .containers
        .remove(0);
    let floor = v.floor.expect("the JVM's settings give a floor");
    assert!(floor > 512 * MI, "heap + non-heap: {floor}");
    assert!(bump_only < floor, "{bump_only} {floor}");
    assert_eq!(raised, floor.max(bump_only));
    assert_eq!(Some(raised), v.recommended);
}

#[test]
fn sidecars_are_planned_and_init_containers_left_to_admission() {
    // A sidecar (an init container that keeps running) OOM-killed at its limit is raised like a
    // container; a plain init container is admission's to size.
    let mut h = history(Pattern::Unknown, 0.0, 0.0, 128.0, 128.0);
    h.restarts = vec![NOW - 300];
    h.oom_kills = vec![OomKill {
        t: NOW - 300,
        limit: None,
    }];
    let obj = json!({"metadata": {"name": "web-app", "namespace": "team-a"},
        "spec": {"replicas": 2, "template": {"spec": {
            "initContainers": [
                {"name": "setup", "resources": {"limits": {"memory": "128Mi"}}},
                {"name": "proxy", "restartPolicy": "Always",
                 "resources": {"limits": {"memory": "128Mi"}}}],
            "containers": [{"name": "web", "resources": {"limits": {"memory": "1Gi"}}}]}}}});
    let mut w = workload(2, 1024);
    w.workload = Workload::from_object(WorkloadKind::Deployment, &obj, "team-a").unwrap();
    let histories = histories(vec![
        ("setup", h.clone()),
        ("proxy", h),
        ("web", history(Pattern::Steady, 100.0, 0.0, 100.0, 100.0)),
    ]);
    let s = steps(&w, &histories, &policy(), &none());
    match s.as_slice() {
        [Plan::RaiseLimit {
            container, from, ..
        }] => {
            assert_eq!(container, "proxy");
            assert_eq!(*from, 128 * MI);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_template_raise_that_would_not_take_or_would_fight_is_blocked() {
    // Without in-place resize, the raise goes to the template — unless the pods would never
    // see it (OnDelete, a paused rollout) or another manager set the last one back.
    let h = leaking();
    let mut w = workload(3, 400);
    w.in_place_resize = false;
    assert!(matches!(
        steps(&w, &h, &policy(), &none()).as_slice(),
        [Plan::RaiseLimit {
            method: ResizeMethod::TemplatePatch,
            ..
        }]
    ));
    for (rollout, says) in [
        (
            Rollout::OnDelete,
            "would not reach the pods (updateStrategy OnDelete)",
        ),
        (
            Rollout::Paused,
            "would not reach the pods (the rollout is paused)",
        ),
    ] {
        let mut held = w.clone();
        held.rollout = rollout;
        match steps(&held, &h, &policy(), &none()).as_slice() {
            [Plan::Blocked { container, reason }] => {
                assert_eq!(container, "web");
                assert!(reason.contains(says), "{reason}");
            }
            other => panic!("{rollout:?}: {other:?}"),
        }
    }
    let mut reverted = w.clone();
    reverted.reverted.insert(
        "web".into(),
        Revert {
            raised_to: 638 * MI,
            by: Some("argocd-controller".into()),
        },
    );
    match steps(&reverted, &h, &policy(), &none()).as_slice() {
        [Plan::Blocked { reason, .. }] => {
            assert!(
                reason.contains("was set back by argocd-controller"),
                "{reason}"
            );
            assert!(
                reason.contains("commit resources.limits.memory: 638Mi for web"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    // With in-place resize the pods are raised without touching the template it owns.
    reverted.in_place_resize = true;
    assert!(matches!(
        steps(&reverted, &h, &policy(), &none()).as_slice(),
        [Plan::RaiseLimit {
            method: ResizeMethod::InPlaceResize,
            ..
        }]
    ));
}
