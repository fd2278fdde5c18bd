//! OOM kills as the kubelet reports them, the moment it does: a watch on the pods turns each
//! container's `lastState.terminated` with `reason: OOMKilled` into a kill — its `finishedAt`,
//! the pod's restart count, and the limit the container ran with — counted once
//! ([`Ledger`]), and asks the controller to look at the workload at once.
//!
//! A kill is one (pod, container, finishedAt): the same kill is seen again in every update of
//! the pod until the next one, with the restart count of the container that died and then of
//! the one after it, in the relist after a watch restart, and by a new leader (which reads the
//! kills the workload keeps, `oomguard.io/oom-kills`); it counts once. A container killed and not
//! restarted (its pod deleted first) shows the kill as its state, not its last state: counted
//! too. Only what the ledger needs is kept of a pod.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::Pod;

use super::plan::ScalableKind;
use super::record::{Change, Outcome, Remediation, Target};
use crate::history::kills::{KeptKill, MAX_KEPT};
use crate::history::{LimitChange, WorkloadHistory};
use crate::quantity::parse_bytes;

/// The workload a pod belongs to: a StatefulSet directly, a Deployment through its ReplicaSet
/// (named `<deployment>-<pod-template-hash>`). None for other owners.
pub fn workload_of(pod: &Pod) -> Option<Target> {
    let meta = &pod.metadata;
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))?;
    let namespace = meta.namespace.clone()?;
    match owner.kind.as_str() {
        "StatefulSet" => Some(Target {
            kind: ScalableKind::StatefulSet,
            namespace,
            name: owner.name.clone(),
        }),
        "ReplicaSet" => {
            let hash = meta.labels.as_ref()?.get("pod-template-hash")?;
            let name = owner.name.strip_suffix(&format!("-{hash}"))?;
            (!name.is_empty()).then(|| Target {
                kind: ScalableKind::Deployment,
                namespace,
                name: name.to_string(),
            })
        }
        _ => None,
    }
}

/// The OOM kills pod `p`'s status shows now: each container's last termination, when the kernel
/// killed it for memory, with the limit it ran with (what the kubelet reports applied, else the
/// spec's).
pub fn kills_of(p: &Pod) -> Vec<KeptKill> {
    let Some(status) = p.status.as_ref() else {
        return Vec::new();
    };
    let pod = p.metadata.name.clone().unwrap_or_default();
    let spec_limit = |name: &str| {
        p.spec.as_ref().and_then(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .find(|c| c.name == name)?
                .resources
                .as_ref()?
                .limits
                .as_ref()?
                .get("memory")
                .and_then(|q| parse_bytes(&q.0).ok())
        })
    };
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .flat_map(|cs| {
            [cs.state.as_ref(), cs.last_state.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(|s| s.terminated.as_ref())
                .map(move |t| (cs, t))
        })
        .filter_map(|(cs, t)| {
            if t.reason.as_deref() != Some("OOMKilled") {
                return None;
            }
            let at = t.finished_at.as_ref()?.0.as_second();
            let applied = cs
                .resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get("memory"))
                .and_then(|q| parse_bytes(&q.0).ok());
            Some(KeptKill {
                container: cs.name.clone(),
                at,
                limit: applied.or_else(|| spec_limit(&cs.name)),
                pod: pod.clone(),
                restarts: cs.restart_count,
            })
        })
        .collect()
}

/// Every kill seen, once, by workload: what the pods' status said (watch events, the relist after
/// a watch restart) merged with what the workload keeps. Pure; the watch feeds it.
#[derive(Debug, Default)]
pub struct Ledger {
    by_workload: HashMap<Target, Vec<KeptKill>>,
    /// Workloads with kills their annotation does not hold yet.
    unkept: HashSet<Target>,
}

impl Ledger {
    /// Takes what a pod's status says now; returns its workload and the kills that are new.
    pub fn observe(&mut self, pod: &Pod) -> Option<(Target, Vec<KeptKill>)> {
        let t = workload_of(pod)?;
        let kills = kills_of(pod);
        if kills.is_empty() {
            return None;
        }
        let seen = self.by_workload.entry(t.clone()).or_default();
        let fresh: Vec<KeptKill> = kills
            .into_iter()
            .filter(|k| !seen.iter().any(|s| s.key() == k.key()))
            .collect();
        if fresh.is_empty() {
            return None;
        }
        seen.extend(fresh.iter().cloned());
        trim(seen);
        self.unkept.insert(t.clone());
        Some((t, fresh))
    }

    /// Takes what a workload keeps (its annotation): those kills are known, not new.
    pub fn remember(&mut self, t: &Target, kept: &[KeptKill]) {
        let seen = self.by_workload.entry(t.clone()).or_default();
        for k in kept {
            if !seen.iter().any(|s| s.key() == k.key()) {
                seen.push(k.clone());
            }
        }
        trim(seen);
    }

    /// Takes what a workload's `oomguard.io/oom-kills` annotation keeps (a replica that started
    /// after those kills, a new leader, knows them only from there); returns all the workload's
    /// kills, oldest first.
    pub fn remember_kept(
        &mut self,
        t: &Target,
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Vec<KeptKill> {
        let kept = crate::history::kills::decode(
            annotations
                .get(crate::history::kills::ANNOTATION)
                .map(String::as_str),
        );
        self.remember(t, &kept);
        self.of(t)
    }

    /// The kills of a workload, oldest first.
    pub fn of(&self, t: &Target) -> Vec<KeptKill> {
        self.by_workload.get(t).cloned().unwrap_or_default()
    }

    /// Whether the workload has kills its annotation does not hold yet.
    pub fn unkept(&self, t: &Target) -> bool {
        self.unkept.contains(t)
    }

    /// The workload's annotation holds what the ledger knows now.
    pub fn kept(&mut self, t: &Target) {
        self.unkept.remove(t);
    }
}

/// The limits this reconciler raised, as the limit history of the containers whose history has
/// none (no Prometheus, or no kube-state-metrics): a kill at the old limit after a raise (a pod
/// the rollout had not replaced yet) is then known for one, and does not escalate the next
/// raise. Failed raises changed nothing.
pub fn with_raises(h: &mut WorkloadHistory, records: &[Remediation]) {
    let unknown: HashSet<String> = h
        .containers
        .iter()
        .filter(|(_, c)| c.limit_history.is_empty())
        .map(|(n, _)| n.clone())
        .collect();
    for r in records.iter().filter(|r| r.outcome != Outcome::Failed) {
        let Change::Limit { container, to, .. } = &r.change else {
            continue;
        };
        let Some(c) = h
            .containers
            .get_mut(container)
            .filter(|_| unknown.contains(container))
        else {
            continue;
        };
        c.limit_history.push(LimitChange {
            since: r.at,
            bytes: *to as f64,
        });
        c.limit_history.sort_by_key(|l| l.since);
    }
}

/// Oldest first, at most twice what an annotation keeps (the ledger remembers what it trims).
fn trim(kills: &mut Vec<KeptKill>) {
    kills.sort_by_key(|k| k.at);
    let cut = kills.len().saturating_sub(2 * MAX_KEPT);
    kills.drain(..cut);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A pod of Deployment `web` (ReplicaSet `web-5d8f`) as the kubelet reports it.
    fn pod(name: &str, restarts: i32, last: serde_json::Value, applied: Option<&str>) -> Pod {
        let mut status = json!({"name": "app", "restartCount": restarts, "ready": false,
            "image": "i", "imageID": "", "lastState": last});
        if let Some(l) = applied {
            status["resources"] = json!({"limits": {"memory": l}});
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop",
                "labels": {"pod-template-hash": "5d8f"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-5d8f", "uid": "u", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": "i",
                "resources": {"limits": {"memory": "64Mi"}}}]},
            "status": {"containerStatuses": [status]}
        }))
        .unwrap()
    }

    fn oom(at: &str) -> serde_json::Value {
        json!({"terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": at}})
    }

    #[test]
    fn a_kill_is_the_pods_workload_its_finish_and_the_limit_it_ran_with() {
        let p = pod("web-5d8f-abc", 3, oom("2026-12-06T10:00:00Z"), Some("96Mi"));
        let t = workload_of(&p).unwrap();
        assert_eq!((t.kind, t.name.as_str()), (ScalableKind::Deployment, "web"));
        let k = kills_of(&p);
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].limit, Some(96 << 20));
        assert_eq!(k[0].restarts, 3);
        assert_eq!(k[0].at, 1_796_551_200);
        // Without an applied limit in the status, the spec's.
        let k = kills_of(&pod("web-5d8f-abc", 3, oom("2026-12-06T10:00:00Z"), None));
        assert_eq!(k[0].limit, Some(64 << 20));
        // A crash that is not the kernel's OOM kill is not a kill.
        let err = json!({"terminated": {"reason": "Error", "exitCode": 1, "finishedAt": "2026-12-06T10:00:00Z"}});
        assert!(kills_of(&pod("web-5d8f-abc", 3, err, None)).is_empty());
    }

    #[test]
    fn a_kill_whose_container_was_never_restarted_counts_too() {
        // Its pod deleted before the restart: the kill is the state, the last state an older one.
        let mut p = pod("web-5d8f-abc", 1, oom("2026-12-06T10:00:00Z"), None);
        let status = p
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap();
        status[0].state = serde_json::from_value(oom("2026-12-06T10:00:40Z")).unwrap();
        let mut at: Vec<i64> = kills_of(&p).iter().map(|k| k.at).collect();
        at.sort_unstable();
        assert_eq!(at, [1_796_551_200, 1_796_551_240]);
    }

    #[test]
    fn the_ledger_counts_each_kill_once_across_updates_relists_and_leaders() {
        let mut l = Ledger::default();
        let first = pod("web-5d8f-abc", 1, oom("2026-12-06T10:00:00Z"), None);
        let (t, fresh) = l.observe(&first).unwrap();
        assert_eq!(fresh.len(), 1);
        assert!(l.unkept(&t));
        // The same status again (another update of the pod, the relist after a watch restart).
        assert!(l.observe(&first).is_none());
        // The same kill once the next container started: another restart count, one kill.
        assert!(l
            .observe(&pod("web-5d8f-abc", 2, oom("2026-12-06T10:00:00Z"), None))
            .is_none());
        // The next kill of the same container.
        let second = pod("web-5d8f-abc", 2, oom("2026-12-06T10:00:30Z"), None);
        assert_eq!(l.observe(&second).unwrap().1.len(), 1);
        assert_eq!(l.of(&t).len(), 2);
        l.kept(&t);
        assert!(!l.unkept(&t));
        // A new leader: what the workload keeps is known, not new; the pods say them again.
        let mut new = Ledger::default();
        new.remember(&t, &l.of(&t));
        assert!(new.observe(&second).is_none());
        assert!(new.observe(&first).is_none());
        assert_eq!(new.of(&t).len(), 2);
        // A pod of no Deployment or StatefulSet is no one's.
        let mut bare = first.clone();
        bare.metadata.owner_references = None;
        assert!(l.observe(&bare).is_none());
    }

    #[test]
    fn a_kill_at_the_old_limit_after_a_raise_does_not_escalate_the_next() {
        use crate::history::kills::with_kills;
        use crate::policy::{Memory, OomBump};
        use crate::reconcile::plan::ActionKind;
        use crate::reconcile::plan::ResizeMethod;
        use crate::reconcile::record::Baseline;
        let mi = 1u64 << 20;
        let kill = |at: i64, restarts: i32| KeptKill {
            container: "app".into(),
            at,
            limit: Some(64 * mi),
            pod: "web-5d8f-abc".into(),
            restarts,
        };
        // Killed at 64Mi, raised to 112Mi in the template at 110; the old pod killed once more
        // before the rollout replaced it.
        let kills = [kill(100, 1), kill(115, 2)];
        let raise = Remediation {
            id: "r".into(),
            action: ActionKind::RaiseLimit,
            target: Target {
                kind: ScalableKind::Deployment,
                namespace: "shop".into(),
                name: "web".into(),
            },
            at: 110,
            requested_by: "oomguard-reconciler".into(),
            incident_id: None,
            reason: "test".into(),
            change: Change::Limit {
                container: "app".into(),
                from: 64 * mi,
                to: 112 * mi,
                method: ResizeMethod::TemplatePatch,
            },
            baseline: Baseline::default(),
            verify_at: 230,
            outcome: Outcome::Pending,
            verified_at: None,
            detail: None,
        };
        let bump = OomBump {
            ratio: 1.5,
            min: Memory(48 * mi),
            max_steps: 3,
        };
        let ask = |h: &WorkloadHistory| {
            crate::verdict::oom_bump(&h.containers["app"], Some((112 * mi) as f64), &bump, 3600)
                .map(|a| (a.to / mi as f64, a.kills))
        };
        let mut h = with_kills(None, &kills, 200, 86_400).unwrap();
        // Both kills escalate without the raise: 2 steps, 144Mi.
        assert_eq!(ask(&h), Some((144.0, 2)));
        with_raises(&mut h, &[raise]);
        // With it, the second is a straggler: counted, not escalating: 112Mi, no second raise.
        assert_eq!(ask(&h), Some((112.0, 2)));
    }
}
