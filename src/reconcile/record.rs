//! What the reconciler did to a workload, kept in the workload's own annotations so that a
//! restarted (or newly elected) reconciler knows it and does not act twice.
//!
//! `oomguard.io/remediations` holds a JSON array of [`Remediation`]s, newest last, at most
//! [`MAX_RECORDS`]. Workloads that carry one are labelled `oomguard.io/remediated: "true"` so that
//! the records can be listed across namespaces with a label selector. Pure: encoding, decoding and
//! the outcome rule; the Kubernetes calls live in `act`.

use serde::{Deserialize, Serialize};

use super::plan::{ActionKind, PastAction, RecentActions, ResizeMethod, ScalableKind};
use crate::history::{HistoryQuery, WorkloadHistory, WorkloadKey};
use crate::workload::Workload;

pub const ANNOTATION: &str = "oomguard.io/remediations";
pub const LABEL: &str = "oomguard.io/remediated";
/// Records kept per workload: enough for the hourly budget and the verification window.
pub const MAX_RECORDS: usize = 20;
/// Utilization must drop by at least this share of its baseline for an action to count as
/// effective on utilization alone (the tutorial's step 7).
pub const EFFECTIVE_DROP: f64 = 0.10;

/// Which workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub kind: ScalableKind,
    pub namespace: String,
    pub name: String,
}

impl Target {
    /// What to ask the history source for, over the policy's window.
    pub fn history_query(&self, window_secs: u64) -> HistoryQuery {
        HistoryQuery {
            key: WorkloadKey {
                namespace: self.namespace.clone(),
                kind: self.kind.as_str().to_string(),
                name: self.name.clone(),
            },
            window_secs,
        }
    }
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Change {
    #[serde(rename_all = "camelCase")]
    Replicas { from: u32, to: u32 },
    #[serde(rename_all = "camelCase")]
    Limit {
        container: String,
        /// Bytes.
        from: u64,
        to: u64,
        method: ResizeMethod,
    },
    /// A rolling restart (the pod template's restartedAt annotation).
    #[serde(rename_all = "camelCase")]
    Restart { container: String },
}

/// Where a remediation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Applied; the verification window is still open.
    Pending,
    Effective,
    Ineffective,
    /// The Kubernetes call failed; nothing changed.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Effective => "effective",
            Outcome::Ineffective => "ineffective",
            Outcome::Failed => "failed",
        }
    }
}

/// What the workload looked like when the action was taken, for verification.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    /// Highest latest-peak / limit over the containers, 0..; None without history.
    pub utilization: Option<f64>,
    /// OOM kills in the history window, summed over containers.
    pub oom_kills: u32,
    /// Unix seconds of the most recent OOM kill before the action.
    pub last_oom_at: Option<i64>,
}

/// One remediation: taken by the reconciler on its own or asked for through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remediation {
    pub id: String,
    pub action: ActionKind,
    pub target: Target,
    /// Unix seconds when it was applied.
    pub at: i64,
    /// "oomguard-reconciler", or the API caller's Kubernetes user name.
    pub requested_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    pub reason: String,
    pub change: Change,
    pub baseline: Baseline,
    /// Unix seconds when the outcome gets decided.
    pub verify_at: i64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<i64>,
    /// Why the outcome is what it is, with the numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Reads the records from the annotation's value. A value that does not parse (edited by hand,
/// another version) is reported, and the caller treats the workload as having no records only
/// after logging it.
pub fn decode(value: Option<&str>) -> Result<Vec<Remediation>, String> {
    match value {
        None => Ok(Vec::new()),
        Some(v) if v.trim().is_empty() => Ok(Vec::new()),
        Some(v) => serde_json::from_str(v)
            .map_err(|e| format!("annotation {ANNOTATION} is not a list of remediations: {e}")),
    }
}

/// The records that are about `target`: a record names the workload it was taken on, and one
/// found on another object (copied, or written by whoever may annotate that object) is not
/// trusted. Dropped ones are logged.
pub fn about(records: Vec<Remediation>, target: &Target) -> Vec<Remediation> {
    let (mine, others): (Vec<_>, Vec<_>) = records.into_iter().partition(|r| &r.target == target);
    for r in &others {
        tracing::warn!(
            on = %format!("{} {}/{}", target.kind.as_str(), target.namespace, target.name),
            claims = %format!("{} {}/{}", r.target.kind.as_str(), r.target.namespace, r.target.name),
            id = %r.id,
            "ignoring a remediation record that names another workload"
        );
    }
    mine
}

/// The annotation's value: the newest [`MAX_RECORDS`] records; over the cap, failed attempts
/// go first (the oldest of them), so that refusals never push the real actions out.
pub fn encode(records: &[Remediation]) -> String {
    let mut keep: Vec<&Remediation> = records.iter().collect();
    let mut over = keep.len().saturating_sub(MAX_RECORDS);
    if over > 0 {
        // The newest failed attempt stays: it carries the backoff.
        let newest_failed = keep.iter().rposition(|r| r.outcome == Outcome::Failed);
        let mut i = 0;
        keep.retain(|r| {
            let drop = over > 0 && r.outcome == Outcome::Failed && Some(i) != newest_failed;
            i += 1;
            if drop {
                over -= 1;
            }
            !drop
        });
    }
    let skip = keep.len().saturating_sub(MAX_RECORDS);
    // Serialising plain data to a string cannot fail.
    serde_json::to_string(&keep[skip..]).unwrap_or_else(|_| "[]".to_string())
}

/// The actions the cooldown and the hourly budget count: every record, failed attempts
/// included (a refused attempt is a write; counting it, with a backoff that doubles on each
/// refusal in a row, is what keeps a refused action from being re-sent every round).
pub fn recent_actions(records: &[Remediation]) -> RecentActions {
    let mut actions: Vec<PastAction> = records
        .iter()
        .map(|r| PastAction {
            at: r.at,
            kind: r.action,
            outcome: r.outcome,
        })
        .collect();
    actions.sort_by_key(|a| a.at);
    RecentActions { actions }
}

/// The in-place raises recorded and not failed, as (container, new limit): what may have left
/// the running pods' limits apart from the template's.
pub fn in_place_raises(records: &[Remediation]) -> impl Iterator<Item = (&str, u64)> {
    records
        .iter()
        .filter(|r| r.outcome != Outcome::Failed)
        .filter_map(|r| match &r.change {
            Change::Limit {
                container,
                to,
                method: ResizeMethod::InPlaceResize,
                ..
            } => Some((container.as_str(), *to)),
            _ => None,
        })
}

/// The limits in force: the template's, raised to what in-place resizes set on the running pods
/// (the template keeps its value until the next apply or rollout).
pub fn raise_to_recorded(workload: &mut Workload, records: &[Remediation]) {
    for (container, to) in in_place_raises(records) {
        if let Some(c) = workload.containers.iter_mut().find(|c| c.name == container) {
            let to = c.limit.bytes().map_or(to, |l| l.max(to));
            c.limit = crate::workload::MemoryField::of_bytes(to);
        }
    }
}

/// What verification sees once the window has passed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// Highest latest-peak / limit over the containers now.
    pub utilization: Option<f64>,
    /// Unix seconds of the most recent OOM kill now known.
    pub last_oom_at: Option<i64>,
    /// OOM kills in the history window now.
    pub oom_kills: u32,
    /// Each OOM kill now known: when, which container, and the limit it happened at.
    pub kills: Vec<(i64, String, Option<f64>)>,
}

/// Utilization and OOM kills of a workload now: the highest latest-peak / limit over the
/// containers that have a limit, and the OOM kills of all containers.
pub fn observe(history: Option<&WorkloadHistory>, workload: &Workload) -> Observed {
    let Some(h) = history else {
        return Observed::default();
    };
    let utilization = workload
        .containers
        .iter()
        .filter_map(|c| {
            let limit = c.limit.bytes().filter(|&l| l > 0)? as f64;
            Some(h.containers.get(&c.name)?.latest()?.bytes / limit)
        })
        .reduce(f64::max);
    Observed {
        utilization,
        last_oom_at: h.containers.values().filter_map(|c| c.last_oom_at()).max(),
        oom_kills: h.containers.values().map(|c| c.oom_count()).sum(),
        kills: h
            .containers
            .iter()
            .flat_map(|(name, c)| {
                c.oom_kills
                    .iter()
                    .map(move |k| (k.t, name.clone(), c.kill_limit(k)))
            })
            .collect(),
    }
}

impl From<Observed> for Baseline {
    fn from(o: Observed) -> Baseline {
        Baseline {
            utilization: o.utilization,
            oom_kills: o.oom_kills,
            last_oom_at: o.last_oom_at,
        }
    }
}

/// The tutorial's rule, decided once the window is over: effective when utilization dropped by at
/// least [`EFFECTIVE_DROP`] of its baseline, or when no OOM kill happened since the action;
/// ineffective otherwise. A scale-out is judged by the drop alone: its point is less memory per
/// pod, and memory that does not follow load stays where it was with no OOM either (counting
/// that as effective scaled steady workloads out to maxReplicas). Returns the outcome and a
/// one-line reason with the numbers.
pub fn judge(r: &Remediation, seen: &Observed) -> (Outcome, String) {
    // A raised limit is judged by the kills at it: one of a pod still at the old limit (the
    // rollout not over) says nothing of the new one.
    let oom_since = match &r.change {
        Change::Limit { container, to, .. } if !seen.kills.is_empty() => {
            seen.kills.iter().any(|(t, c, limit)| {
                *t > r.at
                    && c == container
                    && limit.is_none_or(|l| l >= *to as f64 - (crate::quantity::MI as f64) / 2.0)
            })
        }
        _ => seen.last_oom_at.is_some_and(|t| t > r.at),
    };
    let drop = match (r.baseline.utilization, seen.utilization) {
        (Some(b), Some(n)) if b > 0.0 => Some((b, n, (b - n) / b)),
        _ => None,
    };
    let util = match drop {
        Some((b, n, d)) => format!(
            "utilization {:.0}% → {:.0}% ({:+.0}%)",
            b * 100.0,
            n * 100.0,
            -d * 100.0
        ),
        None => "utilization unknown".to_string(),
    };
    let dropped = drop.is_some_and(|(_, _, d)| d >= EFFECTIVE_DROP);
    let oom = if oom_since {
        "OOM kill after the action"
    } else {
        "no OOM kill since the action"
    };
    let effective = match r.action {
        ActionKind::ScaleOut => dropped,
        _ => dropped || !oom_since,
    };
    if effective {
        (Outcome::Effective, format!("effective: {util}, {oom}"))
    } else if r.action == ActionKind::ScaleOut && !dropped {
        (
            Outcome::Ineffective,
            format!("ineffective: {util}, {oom}; memory per pod did not follow the replicas"),
        )
    } else {
        (Outcome::Ineffective, format!("ineffective: {util}, {oom}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Deployment with these containers and limits (bytes).
    fn workload(containers: &[(&str, Option<u64>)]) -> Workload {
        let containers: Vec<_> = containers
            .iter()
            .map(|(name, limit)| match limit {
                Some(l) => {
                    serde_json::json!({"name": name, "resources": {"limits": {"memory": l}}})
                }
                None => serde_json::json!({"name": name}),
            })
            .collect();
        let obj = serde_json::json!({"metadata": {"name": "app"},
            "spec": {"template": {"spec": {"containers": containers}}}});
        Workload::from_object(crate::workload::WorkloadKind::Deployment, &obj, "ns").unwrap()
    }

    fn record(at: i64, outcome: Outcome, base: Option<f64>) -> Remediation {
        Remediation {
            id: format!("r{at}"),
            action: ActionKind::ScaleOut,
            target: Target {
                kind: ScalableKind::Deployment,
                namespace: "ns".into(),
                name: "app".into(),
            },
            at,
            requested_by: "oomguard-reconciler".into(),
            incident_id: None,
            reason: "test".into(),
            change: Change::Replicas { from: 2, to: 3 },
            baseline: Baseline {
                utilization: base,
                oom_kills: 1,
                last_oom_at: Some(at - 100),
            },
            verify_at: at + 600,
            outcome,
            verified_at: None,
            detail: None,
        }
    }

    #[test]
    fn records_count_only_on_the_workload_they_name() {
        let mine = record(1, Outcome::Pending, None);
        let mut forged = record(2, Outcome::Effective, None);
        forged.target.namespace = "payments".into();
        let mut other_name = record(3, Outcome::Effective, None);
        other_name.target.name = "db".into();
        let mut other_kind = record(4, Outcome::Effective, None);
        other_kind.target.kind = ScalableKind::StatefulSet;
        let kept = about(
            vec![mine.clone(), forged, other_name, other_kind],
            &mine.target.clone(),
        );
        assert_eq!(kept, vec![mine]);
    }

    #[test]
    fn round_trip_keeps_the_newest() {
        let all: Vec<_> = (0..25).map(|i| record(i, Outcome::Pending, None)).collect();
        let back = decode(Some(&encode(&all))).unwrap();
        assert_eq!(back.len(), MAX_RECORDS);
        assert_eq!(back[0].at, 5);
        assert_eq!(back.last().unwrap(), &all[24]);
    }

    #[test]
    fn bad_annotation_is_an_error_that_names_it() {
        let e = decode(Some("{not json")).unwrap_err();
        assert!(e.contains(ANNOTATION), "{e}");
        assert!(decode(None).unwrap().is_empty());
        assert!(decode(Some(" ")).unwrap().is_empty());
    }

    #[test]
    fn failed_attempts_count_and_never_push_real_actions_out() {
        let rs = vec![
            record(100, Outcome::Failed, None),
            record(200, Outcome::Pending, None),
            record(300, Outcome::Failed, None),
        ];
        let recent = recent_actions(&rs);
        assert_eq!(recent.actions.len(), 3, "a refused attempt counts");
        assert_eq!(recent.failures_in_a_row(), 1);
        // 25 refusals after 5 real actions: the real ones and the newest refusal are kept.
        let mut many: Vec<_> = (0..5)
            .map(|i| record(i, Outcome::Effective, None))
            .collect();
        many.extend((5..30).map(|i| record(i, Outcome::Failed, None)));
        let kept = decode(Some(&encode(&many))).unwrap();
        assert_eq!(kept.len(), MAX_RECORDS);
        assert_eq!(
            kept.iter()
                .filter(|r| r.outcome == Outcome::Effective)
                .count(),
            5
        );
        assert_eq!(
            kept.last().unwrap().at,
            29,
            "the newest refusal carries the backoff"
        );
    }

    #[test]
    fn observe_takes_the_most_pressed_container() {
        use crate::history::{ContainerHistory, Sample};
        let mut h = WorkloadHistory::default();
        let hist = |bytes: f64, oom: Option<i64>, kills: u32| ContainerHistory {
            samples: vec![
                Sample { t: 1, bytes: 1.0 },
                Sample { t: 2, bytes },
                Sample { t: 3, bytes: 0.0 },
            ],
            // `kills` kills, the last at `oom`.
            oom_kills: (0..kills)
                .map(|i| crate::history::OomKill {
                    t: oom.unwrap_or(0) - i64::from(i),
                    limit: None,
                })
                .rev()
                .collect(),
            ..Default::default()
        };
        h.containers.insert("a".into(), hist(50.0, Some(10), 1));
        h.containers.insert("b".into(), hist(90.0, Some(30), 2));
        let o = observe(
            Some(&h),
            &workload(&[("a", Some(100)), ("b", Some(100)), ("x", None)]),
        );
        assert_eq!(o.utilization, Some(0.9), "the latest non-zero sample of b");
        assert_eq!((o.last_oom_at, o.oom_kills), (Some(30), 3));
        let o = observe(Some(&h), &workload(&[("a", Some(100)), ("b", None)]));
        assert_eq!(o.utilization, Some(0.5));
        assert_eq!(
            observe(None, &workload(&[("a", Some(1))])),
            Observed::default()
        );
    }

    #[test]
    fn in_place_resizes_count_as_the_limit_in_force() {
        let mut r = record(10, Outcome::Pending, None);
        r.change = Change::Limit {
            container: "web".into(),
            from: 100,
            to: 300,
            method: ResizeMethod::InPlaceResize,
        };
        let mut failed = r.clone();
        failed.outcome = Outcome::Failed;
        if let Change::Limit { to, .. } = &mut failed.change {
            *to = 900;
        }
        let mut template = r.clone();
        if let Change::Limit { to, method, .. } = &mut template.change {
            *to = 800;
            *method = ResizeMethod::TemplatePatch;
        }
        let mut w = workload(&[("web", Some(100)), ("side", Some(50))]);
        raise_to_recorded(&mut w, &[r, failed, template]);
        assert_eq!(
            w.containers[0].limit.bytes(),
            Some(300),
            "failed and template records do not count"
        );
        assert_eq!(w.containers[1].limit.bytes(), Some(50));
    }

    #[test]
    fn judge_follows_the_tutorial_rule() {
        let mut r = record(1000, Outcome::Pending, Some(0.9));
        r.action = ActionKind::RaiseLimit;
        // Dropped 22%, an OOM after: still effective on utilization.
        let (o, why) = judge(
            &r,
            &Observed {
                utilization: Some(0.7),
                last_oom_at: Some(1200),
                oom_kills: 2,
                ..Default::default()
            },
        );
        assert_eq!(o, Outcome::Effective, "{why}");
        assert!(why.contains("90% → 70%"), "{why}");
        // No drop, an OOM after the action: ineffective.
        let (o, why) = judge(
            &r,
            &Observed {
                utilization: Some(0.88),
                last_oom_at: Some(1200),
                oom_kills: 2,
                ..Default::default()
            },
        );
        assert_eq!(o, Outcome::Ineffective, "{why}");
        assert!(why.contains("OOM kill after the action"), "{why}");
        // No drop, the last OOM was before the action: effective.
        let (o, _) = judge(
            &r,
            &Observed {
                utilization: Some(0.95),
                last_oom_at: Some(900),
                oom_kills: 1,
                ..Default::default()
            },
        );
        assert_eq!(o, Outcome::Effective);
        // A drop of 5% is not enough on its own.
        let (o, _) = judge(
            &r,
            &Observed {
                utilization: Some(0.855),
                last_oom_at: Some(1001),
                oom_kills: 2,
                ..Default::default()
            },
        );
        assert_eq!(o, Outcome::Ineffective);
        // A scale-out is judged by the memory per pod alone: no drop and no OOM is ineffective
        // (steady memory does not follow replicas), a drop is effective.
        let scale = record(1000, Outcome::Pending, Some(0.85));
        let flat = Observed {
            utilization: Some(0.85),
            last_oom_at: Some(900),
            oom_kills: 0,
            ..Default::default()
        };
        let (o, why) = judge(&scale, &flat);
        assert_eq!(o, Outcome::Ineffective, "{why}");
        assert!(
            why.contains("memory per pod did not follow the replicas"),
            "{why}"
        );
        let fell = Observed {
            utilization: Some(0.6),
            ..flat
        };
        assert_eq!(judge(&scale, &fell).0, Outcome::Effective);
    }

    #[test]
    fn a_raise_is_judged_by_the_kills_at_its_limit_not_by_a_pod_the_rollout_had_not_replaced() {
        let mi = crate::quantity::MI;
        let mut r = record(1000, Outcome::Pending, None);
        r.action = ActionKind::RaiseLimit;
        r.change = Change::Limit {
            container: "app".into(),
            from: 64 * mi,
            to: 112 * mi,
            method: ResizeMethod::TemplatePatch,
        };
        let seen = |limit_mi: u64| Observed {
            last_oom_at: Some(1010),
            oom_kills: 2,
            kills: vec![
                (990, "app".into(), Some((64 * mi) as f64)),
                (1010, "app".into(), Some((limit_mi * mi) as f64)),
            ],
            ..Default::default()
        };
        // The old pod killed again at 64Mi while the new one started: effective.
        let (o, why) = judge(&r, &seen(64));
        assert_eq!(o, Outcome::Effective, "{why}");
        // Killed at the raised limit: ineffective.
        let (o, why) = judge(&r, &seen(112));
        assert_eq!(o, Outcome::Ineffective, "{why}");
    }
}
