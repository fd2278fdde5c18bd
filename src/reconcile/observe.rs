//! Deployments and StatefulSets as the reconciler sees them: what [`plan`](super::plan) needs,
//! read from the stored object — the pod template as the one [`Workload`] every face decides on
//! (every container, its memory settings) — and from its pods. Pure.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::NamespaceResourceScope;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::plan::{HpaInfo, ResizeMethod, Revert, Rollout, ScalableKind, WorkloadState};
use super::record::{self, Remediation, Target};
use crate::quantity::parse_bytes;
use crate::workload::{MemoryField, Workload, WorkloadKind};

/// A workload kind the reconciler scales and resizes.
pub trait Scalable:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    const KIND: ScalableKind;
    /// `spec.replicas` (Kubernetes' default 1 when unset).
    fn replicas(&self) -> u32;
    fn pod_spec(&self) -> Option<&PodSpec>;
    fn selector(&self) -> Option<&LabelSelector>;
    /// Pods a rolling update may take down at once (at least 1).
    fn max_unavailable(&self) -> u32;
    /// Whether a template change reaches the pods by itself.
    fn rollout(&self) -> Rollout;
}

fn replicas_of(r: Option<i32>) -> u32 {
    r.map_or(1, |n| u32::try_from(n).unwrap_or(0))
}

/// Resolves an int-or-percent against the replica count, rounding down as the Deployment
/// controller does for maxUnavailable; never below 1.
fn resolve(v: Option<&IntOrString>, replicas: u32, default_percent: u32) -> u32 {
    let n = match v {
        Some(IntOrString::Int(i)) => u32::try_from(*i).unwrap_or(0),
        Some(IntOrString::String(s)) => match s.trim_end_matches('%').parse::<u32>() {
            Ok(p) => replicas.saturating_mul(p) / 100,
            Err(_) => replicas.saturating_mul(default_percent) / 100,
        },
        None => replicas.saturating_mul(default_percent) / 100,
    };
    n.max(1)
}

impl Scalable for Deployment {
    const KIND: ScalableKind = ScalableKind::Deployment;
    fn replicas(&self) -> u32 {
        replicas_of(self.spec.as_ref().and_then(|s| s.replicas))
    }
    fn pod_spec(&self) -> Option<&PodSpec> {
        self.spec.as_ref().and_then(|s| s.template.spec.as_ref())
    }
    fn selector(&self) -> Option<&LabelSelector> {
        self.spec.as_ref().map(|s| &s.selector)
    }
    fn max_unavailable(&self) -> u32 {
        let replicas = self.replicas();
        let strategy = self.spec.as_ref().and_then(|s| s.strategy.as_ref());
        if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
            return replicas.max(1);
        }
        let v = strategy
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.as_ref());
        resolve(v, replicas, 25)
    }
    fn rollout(&self) -> Rollout {
        if self.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            Rollout::Paused
        } else {
            Rollout::Automatic
        }
    }
}

impl Scalable for StatefulSet {
    const KIND: ScalableKind = ScalableKind::StatefulSet;
    fn replicas(&self) -> u32 {
        replicas_of(self.spec.as_ref().and_then(|s| s.replicas))
    }
    fn pod_spec(&self) -> Option<&PodSpec> {
        self.spec.as_ref().and_then(|s| s.template.spec.as_ref())
    }
    fn selector(&self) -> Option<&LabelSelector> {
        self.spec.as_ref().map(|s| &s.selector)
    }
    fn max_unavailable(&self) -> u32 {
        let v = self
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.as_ref());
        match v {
            None => 1,
            v => resolve(v, self.replicas(), 0),
        }
    }
    fn rollout(&self) -> Rollout {
        let strategy = self
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.type_.as_deref());
        if strategy == Some("OnDelete") {
            Rollout::OnDelete
        } else {
            Rollout::Automatic
        }
    }
}

/// The target of a stored object.
pub fn target_of<K: Scalable>(obj: &K) -> Target {
    Target {
        kind: K::KIND,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
    }
}

/// The records kept on the object and about it (an unreadable annotation is an error for the
/// caller to log; records naming another workload are dropped: [`record::about`]).
pub fn records_of<K: Scalable>(obj: &K) -> Result<Vec<Remediation>, String> {
    let records = record::decode(
        obj.annotations()
            .get(record::ANNOTATION)
            .map(String::as_str),
    )?;
    Ok(record::about(records, &target_of(obj)))
}

/// The HPA (if any) whose scale target is this workload.
pub fn hpa_for(
    kind: ScalableKind,
    name: &str,
    hpas: &[HorizontalPodAutoscaler],
) -> Option<HpaInfo> {
    hpas.iter().find_map(|h| {
        let spec = h.spec.as_ref()?;
        let r = &spec.scale_target_ref;
        (r.kind == kind.as_str() && r.name == name).then(|| HpaInfo {
            min: spec
                .min_replicas
                .map_or(1, |n| u32::try_from(n).unwrap_or(1)),
            max: u32::try_from(spec.max_replicas).unwrap_or(0),
        })
    })
}

fn memory(m: Option<&BTreeMap<String, Quantity>>) -> Option<u64> {
    m.and_then(|m| m.get("memory"))
        .and_then(|q| parse_bytes(&q.0).ok())
}

/// What the plan needs from the object: its pod template read as the decision reads every
/// workload ([`Workload::from_object`]), replicas, rollout and HPA. An object whose template does
/// not read is an error naming why (the apiserver stored it, so this is rare).
pub fn state_of<K: Scalable>(
    obj: &K,
    hpa: Option<HpaInfo>,
    in_place_resize: bool,
) -> Result<WorkloadState, String> {
    let t = target_of(obj);
    let kind = match K::KIND {
        ScalableKind::Deployment => WorkloadKind::Deployment,
        ScalableKind::StatefulSet => WorkloadKind::StatefulSet,
    };
    let value = serde_json::to_value(obj).map_err(|e| format!("{}: {e}", t.name))?;
    let workload = Workload::from_object(kind, &value, &t.namespace)
        .map_err(|e| format!("{} {}/{}: {e}", t.kind.as_str(), t.namespace, t.name))?;
    Ok(WorkloadState {
        kind: t.kind,
        workload,
        replicas: obj.replicas(),
        hpa,
        in_place_resize,
        max_unavailable: obj.max_unavailable(),
        rollout: obj.rollout(),
        reverted: BTreeMap::new(),
    })
}

/// The containers whose last template raise by oomguard is no longer in the template: set back
/// by another field manager (a GitOps controller re-applying its manifest), named from the
/// object's managedFields when they say who owns the limit now. `workload` is the template as
/// stored (before the pods' limits are read).
pub fn reverts<K: Scalable>(
    obj: &K,
    records: &[Remediation],
    workload: &Workload,
) -> BTreeMap<String, Revert> {
    let mut out = BTreeMap::new();
    for c in &workload.containers {
        let last_raise = records
            .iter()
            .rev()
            .filter(|r| r.outcome != record::Outcome::Failed)
            .find_map(|r| match &r.change {
                record::Change::Limit {
                    container,
                    to,
                    method: ResizeMethod::TemplatePatch,
                    ..
                } if container == &c.name => Some(*to),
                _ => None,
            });
        let Some(raised_to) = last_raise else {
            continue;
        };
        let now = c.limit.bytes().unwrap_or(0);
        if now.saturating_add(crate::quantity::MI / 2) >= raised_to {
            continue;
        }
        let list = match c.role {
            crate::workload::ContainerRole::Main => "f:containers",
            _ => "f:initContainers",
        };
        let key = format!("k:{{\"name\":\"{}\"}}", c.name);
        let by = obj
            .meta()
            .managed_fields
            .iter()
            .flatten()
            .filter(|m| m.manager.as_deref() != Some(super::act::FIELD_MANAGER))
            .find(|m| {
                m.fields_v1.as_ref().is_some_and(|f| {
                    f.0.pointer(&format!(
                        "/f:spec/f:template/f:spec/{list}/{}/f:resources/f:limits/f:memory",
                        key.replace('~', "~0").replace('/', "~1")
                    ))
                    .is_some()
                })
            })
            .and_then(|m| m.manager.clone());
        out.insert(c.name.clone(), Revert { raised_to, by });
    }
    out
}

/// Pods that run or will run: not being deleted, not finished.
pub fn is_live(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && !matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// The memory limit each container really runs with, over the live pods: per pod the lower of
/// the spec's (an in-place resize changes it) and the one the kubelet reports applied
/// (`status.containerStatuses[].resources`: a resize still in progress or infeasible keeps the
/// old one), then the lowest over the pods (the one that OOMs first). Sidecars (init containers
/// that keep running) count like containers. Containers without a limit on some pod are left out.
pub fn live_limits(pods: &[Pod]) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for p in pods.iter().filter(|p| is_live(p)) {
        let Some(spec) = p.spec.as_ref() else {
            continue;
        };
        let status = p.status.as_ref();
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        for c in spec.containers.iter().chain(sidecars) {
            let Some(mut limit) = memory(c.resources.as_ref().and_then(|r| r.limits.as_ref()))
            else {
                continue;
            };
            let applied = status
                .into_iter()
                .flat_map(|s| {
                    s.container_statuses
                        .iter()
                        .flatten()
                        .chain(s.init_container_statuses.iter().flatten())
                })
                .find(|s| s.name == c.name)
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| memory(r.limits.as_ref()));
            if let Some(a) = applied {
                limit = limit.min(a);
            }
            out.entry(c.name.clone())
                .and_modify(|l| *l = (*l).min(limit))
                .or_insert(limit);
        }
    }
    out
}

/// The workload with each container's limit replaced by the one its pods run with
/// ([`live_limits`]) where the pods say; the template's elsewhere (no live pod yet).
pub fn with_live_limits(mut state: WorkloadState, live: &BTreeMap<String, u64>) -> WorkloadState {
    for c in &mut state.workload.containers {
        if let Some(&l) = live.get(&c.name) {
            c.limit = MemoryField::of_bytes(l);
        }
    }
    state
}

/// Whether an in-place resize may have left the pods' limits apart from the template's: a
/// recorded in-place raise that did not fail. Only then are the pods read.
pub fn pods_may_differ(records: &[Remediation]) -> bool {
    record::in_place_raises(records).next().is_some()
}

/// A label selector as the API's `labelSelector` string: `matchLabels` (`a=b`) and
/// `matchExpressions` (`k in (x,y)`, `k notin (x)`, `k`, `!k`). None when it selects nothing
/// expressible (empty, or an operator Kubernetes does not have).
pub fn selector_string(sel: &LabelSelector) -> Option<String> {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = || e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({})", e.key, values()),
            "NotIn" => format!("{} notin ({})", e.key, values()),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            _ => return None,
        });
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::ContainerRole;
    use serde_json::json;

    fn deployment(v: serde_json::Value) -> Deployment {
        serde_json::from_value(v).unwrap()
    }

    fn pod(phase: &str, deleting: bool, limits: &[(&str, &str)]) -> Pod {
        let containers: Vec<_> = limits
            .iter()
            .map(|(n, l)| json!({"name": n, "resources": {"limits": {"memory": l}}}))
            .collect();
        let mut meta = json!({"name": "p"});
        if deleting {
            meta["deletionTimestamp"] = json!("2026-11-29T00:00:00Z");
        }
        serde_json::from_value(json!({
            "metadata": meta, "spec": {"containers": containers}, "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn live_limits_are_the_lowest_over_running_pods() {
        let pods = [
            pod("Running", false, &[("a", "512Mi"), ("b", "1Gi")]),
            pod("Pending", false, &[("a", "256Mi"), ("b", "1Gi")]),
            // Gone or going: their limits do not count.
            pod("Failed", false, &[("a", "64Mi")]),
            pod("Succeeded", false, &[("a", "64Mi")]),
            pod("Running", true, &[("a", "64Mi")]),
            // No limit, or one that does not parse: left out.
            pod("Running", false, &[("c", "lots")]),
        ];
        let live = live_limits(&pods);
        assert_eq!(live.get("a"), Some(&(256 << 20)));
        assert_eq!(live.get("b"), Some(&(1 << 30)));
        assert_eq!(live.get("c"), None);
        assert!(live_limits(&[]).is_empty());
    }

    #[test]
    fn only_an_in_place_raise_that_did_not_fail_sends_the_reconciler_to_the_pods() {
        let raise = |method, outcome| Remediation {
            id: "r".into(),
            action: super::super::plan::ActionKind::RaiseLimit,
            target: Target {
                kind: ScalableKind::Deployment,
                namespace: "ns".into(),
                name: "app".into(),
            },
            at: 1,
            requested_by: "oomguard-reconciler".into(),
            incident_id: None,
            reason: "test".into(),
            change: record::Change::Limit {
                container: "a".into(),
                from: 1,
                to: 2,
                method,
            },
            baseline: record::Baseline::default(),
            verify_at: 2,
            outcome,
            verified_at: None,
            detail: None,
        };
        use super::super::plan::ResizeMethod::{InPlaceResize, TemplatePatch};
        use record::Outcome::{Effective, Failed, Pending};
        assert!(!pods_may_differ(&[]));
        assert!(!pods_may_differ(&[raise(TemplatePatch, Effective)]));
        assert!(!pods_may_differ(&[raise(InPlaceResize, Failed)]));
        assert!(pods_may_differ(&[raise(InPlaceResize, Pending)]));
        assert!(pods_may_differ(&[
            raise(TemplatePatch, Effective),
            raise(InPlaceResize, Effective)
        ]));
    }

    #[test]
    fn reads_the_template_as_every_face_does() {
        let d = deployment(json!({
            "metadata": {"name": "app", "namespace": "ns",
                         "annotations": {"oomguard.io/exclude": "true"}},
            "spec": {"replicas": 8, "selector": {"matchLabels": {"app": "x", "tier": "web"}},
                     "strategy": {"rollingUpdate": {"maxUnavailable": "25%"}},
                     "template": {"spec": {
                        "initContainers": [
                            {"name": "setup", "resources": {"limits": {"memory": "64Mi"}}},
                            {"name": "proxy", "restartPolicy": "Always",
                             "resources": {"limits": {"memory": "128Mi"}}}],
                        "containers": [
                            {"name": "a", "command": ["java", "-Xmx200m", "-jar", "a.jar"],
                             "resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "128Mi"}}},
                            {"name": "b", "resources": {"limits": {"memory": "lots"}}},
                            {"name": "c"}]}}}
        }));
        let s = state_of(&d, None, true).unwrap();
        assert_eq!(s.replicas, 8);
        assert_eq!(s.max_unavailable, 2);
        assert!(s.in_place_resize);
        let w = &s.workload;
        assert_eq!((w.namespace.as_str(), w.name.as_str()), ("ns", "app"));
        assert_eq!(
            w.annotations.get("oomguard.io/exclude").map(String::as_str),
            Some("true")
        );
        let names: Vec<(&str, ContainerRole)> = w
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.role))
            .collect();
        assert_eq!(
            names,
            [
                ("setup", ContainerRole::Init),
                ("proxy", ContainerRole::Sidecar),
                ("a", ContainerRole::Main),
                ("b", ContainerRole::Main),
                ("c", ContainerRole::Main)
            ]
        );
        let a = &w.containers[2];
        assert_eq!(a.limit.bytes(), Some(256 << 20));
        assert_eq!(a.request.bytes(), Some(128 << 20));
        assert_eq!(a.runtime.command, ["java", "-Xmx200m", "-jar", "a.jar"]);
        assert!(matches!(w.containers[3].limit, MemoryField::Invalid(_)));
        assert_eq!(w.containers[4].limit, MemoryField::Missing);
        assert_eq!(
            selector_string(d.selector().unwrap()).as_deref(),
            Some("app=x,tier=web")
        );
    }

    #[test]
    fn a_template_raise_set_back_by_another_manager_is_a_revert() {
        let d = deployment(json!({
            "metadata": {"name": "app", "namespace": "ns", "managedFields": [
                {"manager": "oomguard-reconciler", "operation": "Update", "apiVersion": "apps/v1",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:annotations": {}}}},
                {"manager": "argocd-controller", "operation": "Apply", "apiVersion": "apps/v1",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {
                    "f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:name": {},
                        "f:resources": {"f:limits": {"f:memory": {}}}}}}}}}}
            ]},
            "spec": {"selector": {}, "template": {"spec": {"containers": [
                {"name": "web", "resources": {"limits": {"memory": "256Mi"}}},
                {"name": "side", "resources": {"limits": {"memory": "256Mi"}}}]}}}
        }));
        let raise = |container: &str, to: u64, method, outcome| Remediation {
            id: "r".into(),
            action: super::super::plan::ActionKind::RaiseLimit,
            target: target_of(&d),
            at: 1,
            requested_by: "oomguard-reconciler".into(),
            incident_id: None,
            reason: "test".into(),
            change: record::Change::Limit {
                container: container.into(),
                from: 256 << 20,
                to,
                method,
            },
            baseline: record::Baseline::default(),
            verify_at: 2,
            outcome,
            verified_at: None,
            detail: None,
        };
        use super::super::plan::ResizeMethod::{InPlaceResize, TemplatePatch};
        use record::Outcome::{Effective, Failed};
        let state = state_of(&d, None, false).unwrap();
        let r = reverts(
            &d,
            &[
                raise("web", 443 << 20, TemplatePatch, Effective),
                // An in-place raise, or a failed template one, leaves the template as it was.
                raise("side", 443 << 20, InPlaceResize, Effective),
                raise("side", 512 << 20, TemplatePatch, Failed),
            ],
            &state.workload,
        );
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(
            r.get("web"),
            Some(&Revert {
                raised_to: 443 << 20,
                by: Some("argocd-controller".into())
            })
        );
        // The raise still in the template: no revert.
        let ok = reverts(
            &d,
            &[raise("web", 256 << 20, TemplatePatch, Effective)],
            &state.workload,
        );
        assert!(ok.is_empty());
    }

    #[test]
    fn selectors_are_read_whole() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "track", "operator": "In", "values": ["stable", "canary"]},
                {"key": "tier", "operator": "NotIn", "values": ["batch"]},
                {"key": "team", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert_eq!(
            selector_string(&sel).as_deref(),
            Some("app=web,track in (stable,canary),tier notin (batch),team,!legacy")
        );
        // matchExpressions alone select too (they found nothing before).
        let only: LabelSelector = serde_json::from_value(
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}),
        )
        .unwrap();
        assert_eq!(selector_string(&only).as_deref(), Some("app in (web)"));
        let odd: LabelSelector = serde_json::from_value(
            json!({"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]}),
        )
        .unwrap();
        assert_eq!(selector_string(&odd), None);
    }

    #[test]
    fn defaults_follow_kubernetes() {
        let d = deployment(
            json!({"metadata": {"name": "a"}, "spec": {"selector": {}, "template": {}}}),
        );
        assert_eq!(d.replicas(), 1);
        assert_eq!(
            d.max_unavailable(),
            1,
            "25% of 1 rounds down to 0, never below 1"
        );
        let r = deployment(
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 6, "selector": {},
            "strategy": {"type": "Recreate"}, "template": {}}}),
        );
        assert_eq!(r.max_unavailable(), 6);
        let s: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "s"},
            "spec": {"replicas": 3, "selector": {}, "serviceName": "s", "template": {}}}))
        .unwrap();
        assert_eq!(s.max_unavailable(), 1);
        assert_eq!(selector_string(s.selector().unwrap()), None);
    }

    #[test]
    fn finds_the_hpa_of_the_workload_only() {
        let hpas: Vec<HorizontalPodAutoscaler> = serde_json::from_value(json!([
            {"metadata": {"name": "h1"}, "spec": {"maxReplicas": 5,
                "scaleTargetRef": {"kind": "Deployment", "name": "other", "apiVersion": "apps/v1"}}},
            {"metadata": {"name": "h2"}, "spec": {"maxReplicas": 7, "minReplicas": 2,
                "scaleTargetRef": {"kind": "Deployment", "name": "app", "apiVersion": "apps/v1"}}}
        ]))
        .unwrap();
        assert_eq!(
            hpa_for(ScalableKind::Deployment, "app", &hpas),
            Some(HpaInfo { min: 2, max: 7 })
        );
        assert_eq!(hpa_for(ScalableKind::StatefulSet, "app", &hpas), None);
    }
}
