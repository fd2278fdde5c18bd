//! The API's [`Remediator`] on a real cluster: the reconciler's own machinery ([`Executor`]),
//! with the same safety (exclusions, opt-in, dry run, cooldown, hourly cap, HPA) and the same
//! records, so that the reconciler loop verifies API-triggered actions like its own.
//!
//! Any replica may serve the API: two calls racing on one workload are kept apart by the claim
//! (the record is written with the resourceVersion that was read), not by the Lease.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::Api;

use super::act::{is_not_found, ApplyError, Executor, Request};
use super::observe::{
    hpa_for, live_limits, pods_may_differ, records_of, reverts, state_of, with_live_limits,
    Scalable,
};
use super::plan::{self, Plan, ResizeMethod, ScalableKind, WorkloadState};
use super::record::{self, Change, Remediation, Target};
use super::record_lookup::AnnotationRecords;
use super::remediator::{Caller, RemediateError, Remediator, RequestedAction, Validated};
use crate::history::{HistorySource, WorkloadHistory};
use crate::policy::store::PolicyStore;
use crate::policy::PolicySpec;
use crate::quantity::to_quantity;
use crate::verdict::{self, scope, HistoryStatus};
use crate::workload::ContainerRole;

/// How long a trigger waits for the workload's history (the decision and the baseline).
const HISTORY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct KubeRemediator {
    pub exec: Executor,
    /// Reads the records back (get and list).
    pub records: AnnotationRecords,
    pub policies: Arc<PolicyStore>,
    pub history: Arc<dyn HistorySource>,
    /// The apiserver has `pods/resize` (1.33+).
    pub in_place_supported: bool,
}

fn upstream(e: ApplyError) -> RemediateError {
    RemediateError::Upstream(e.to_string())
}

impl KubeRemediator {
    async fn trigger_on<K: Scalable>(
        &self,
        req: &Validated,
        caller: &Caller,
    ) -> Result<Remediation, RemediateError> {
        let t = &req.target;
        let what = format!("{} {}/{}", t.kind.as_str(), t.namespace, t.name);
        let policy = self.policies.current().for_namespace(&t.namespace);
        if policy.reconcile.dry_run {
            return Err(RemediateError::Refused(format!(
                "the policy of namespace {} is in dry run (reconcile.dryRun: true): oomguard only \
                 reports there",
                t.namespace
            )));
        }
        // A claim can lose a race with the reconciler loop or another call: read again, decide
        // again (the winner's record now counts for the cooldown).
        for _ in 0..3 {
            let obj = self.read::<K>(t, &what).await?;
            let records = records_of(&obj).map_err(|e| {
                RemediateError::Refused(format!(
                    "{what}: {e}; oomguard takes no action until it is fixed or removed"
                ))
            })?;
            let state = self.state::<K>(&obj, req, &records, &policy, &what).await?;
            let history = self.history(t, &policy, &what).await;
            let now = crate::history::unix_now();
            let (change, reason) = change_for(req, &state, history.as_deref(), &policy, now)?;
            let kind = req.action.kind();
            // The reconciler's own safety: cooldown and the hourly cap.
            match plan::held_back(kind, &record::recent_actions(&records), &policy, now) {
                Some(Plan::Cooldown { until, reason }) => {
                    return Err(RemediateError::HeldBack {
                        until: Some(until),
                        reason,
                    })
                }
                Some(Plan::RateLimited { until, reason }) => {
                    return Err(RemediateError::HeldBack { until, reason })
                }
                _ => {}
            }
            let mut running = state.workload.clone();
            record::raise_to_recorded(&mut running, &records);
            let baseline = record::observe(history.as_deref(), &running).into();
            let request = Request {
                action: kind,
                template_off: template_off(&state, &req.action),
                change,
                reason: described(req, caller, &reason),
                requested_by: caller.username.clone(),
                incident_id: req.incident_id.clone(),
            };
            let verify_after =
                i64::try_from(policy.reconcile.verify_window.secs()).unwrap_or(i64::MAX);
            match self
                .exec
                .execute(&obj, records, vec![request], baseline, verify_after, now)
                .await
            {
                Ok(done) => {
                    return done
                        .into_iter()
                        .rev()
                        .find(|d| {
                            d.at == now && d.action == kind && d.requested_by == caller.username
                        })
                        .ok_or_else(|| {
                            RemediateError::Upstream(format!("{what}: the record was not stored"))
                        })
                }
                Err(ApplyError::Conflict(_)) => continue,
                Err(e) => return Err(upstream(e)),
            }
        }
        Err(RemediateError::Upstream(format!(
            "{what} kept changing while oomguard tried to record the action; try again"
        )))
    }

    async fn read<K: Scalable>(&self, t: &Target, what: &str) -> Result<K, RemediateError> {
        let api: Api<K> = Api::namespaced(self.exec.client.clone(), &t.namespace);
        let obj = match api.get(&t.name).await {
            Ok(o) => o,
            Err(e) if is_not_found(&e) => {
                return Err(RemediateError::NotFound(format!("{what} not found")))
            }
            Err(e) => return Err(RemediateError::Upstream(format!("read {what}: {e}"))),
        };
        if obj.meta().deletion_timestamp.is_some() {
            return Err(RemediateError::NotFound(format!("{what} is being deleted")));
        }
        Ok(obj)
    }

    /// The workload as the reconciler reads it — each container's limit the one its pods run
    /// with after an in-place raise, so that a "raise" never lowers a running pod — refused when
    /// out of the reconciler's scope.
    async fn state<K: Scalable>(
        &self,
        obj: &K,
        req: &Validated,
        records: &[Remediation],
        policy: &PolicySpec,
        what: &str,
    ) -> Result<WorkloadState, RemediateError> {
        let t = &req.target;
        let hpas = match req.action {
            RequestedAction::Scale { .. } => {
                self.exec.hpas(&t.namespace).await.map_err(upstream)?
            }
            RequestedAction::RaiseLimit { .. } => Vec::new(),
        };
        let in_place = policy
            .reconcile
            .resize_method
            .in_place(self.in_place_supported);
        let mut state = state_of(obj, hpa_for(t.kind, &t.name, &hpas), in_place)
            .map_err(RemediateError::Refused)?;
        state.reverted = reverts(obj, records, &state.workload);
        if pods_may_differ(records) {
            let pods = self.exec.live_pods(obj, t).await.map_err(upstream)?;
            state = with_live_limits(state, &live_limits(&pods));
        }
        scope::reconciled(&state.workload, policy)
            .map_err(|why| RemediateError::Refused(format!("{what}: {why}")))?;
        Ok(state)
    }

    /// The workload's history for the decision and the verification baseline; None (logged)
    /// when the source fails or is slow.
    async fn history(
        &self,
        t: &Target,
        policy: &PolicySpec,
        what: &str,
    ) -> Option<Arc<WorkloadHistory>> {
        let query = t.history_query(policy.history.window.secs());
        match tokio::time::timeout(HISTORY_TIMEOUT, self.history.fetch(&query)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::warn!(workload = %what, error = %e, "no history for the decision and the baseline");
                None
            }
            Err(_) => None,
        }
    }
}

/// Why a raise asked through the API must not fall back to a template patch (see
/// [`plan::template_blocked`]).
fn template_off(state: &WorkloadState, action: &RequestedAction) -> Option<String> {
    match action {
        RequestedAction::RaiseLimit { container, .. } => {
            plan::template_blocked(state, container, 0).map(|p| p.reason().to_string())
        }
        RequestedAction::Scale { .. } => None,
    }
}

/// The record's reason: what was done, who asked, why they said.
fn described(req: &Validated, caller: &Caller, what: &str) -> String {
    let mut why = format!("{what}, asked by {}", caller.username);
    if !req.reason.is_empty() {
        why.push_str(&format!(": {}", req.reason));
    }
    if let Some(p) = req.predicted_usage {
        why.push_str(&format!(" (predicted usage {p:.1}%)"));
    }
    why
}

/// The change a request makes to the workload as read (pure), with a one-line description.
/// A raise goes through oomguard's decision on the same workload: without a value it is the
/// decision's recommendation, and never below what the container's own settings need.
fn change_for(
    req: &Validated,
    state: &WorkloadState,
    history: Option<&WorkloadHistory>,
    policy: &PolicySpec,
    now: i64,
) -> Result<(Change, String), RemediateError> {
    let t = &req.target;
    let what = format!("{} {}/{}", t.kind.as_str(), t.namespace, t.name);
    match &req.action {
        RequestedAction::Scale { replicas, .. } => {
            if let Some(h) = state.hpa {
                return Err(RemediateError::Refused(format!(
                    "an HorizontalPodAutoscaler owns the replica count of {what} \
                     (min {}, max {}): change the HPA instead",
                    h.min, h.max
                )));
            }
            if *replicas <= state.replicas {
                return Err(RemediateError::NoChange(format!(
                    "{what} already has {} replicas (asked for {replicas})",
                    state.replicas
                )));
            }
            if *replicas > policy.reconcile.max_replicas {
                return Err(RemediateError::OutOfBounds {
                    bound: "reconcile.maxReplicas".into(),
                    message: format!(
                        "{replicas} replicas is above the policy's maxReplicas {}",
                        policy.reconcile.max_replicas
                    ),
                });
            }
            Ok((
                Change::Replicas {
                    from: state.replicas,
                    to: *replicas,
                },
                format!("scale out {} → {replicas} replicas", state.replicas),
            ))
        }
        RequestedAction::RaiseLimit { container, to, .. } => {
            raise_for(container, *to, state, history, policy, now, &what)
        }
    }
}

fn raise_for(
    container: &str,
    asked: Option<u64>,
    state: &WorkloadState,
    history: Option<&WorkloadHistory>,
    policy: &PolicySpec,
    now: i64,
    what: &str,
) -> Result<(Change, String), RemediateError> {
    if !state
        .workload
        .containers
        .iter()
        .any(|c| c.name == container && c.role != ContainerRole::Init)
    {
        return Err(RemediateError::NotFound(format!(
            "{what} has no container {container}"
        )));
    }
    if scope::container_excluded(policy, container) {
        return Err(RemediateError::Refused(format!(
            "container {container} is excluded by the policy (exclude.containers)"
        )));
    }
    let status = history.map_or(HistoryStatus::Missing, HistoryStatus::Found);
    let decided = verdict::decide(&state.workload, status, policy, now);
    let Some(v) = decided.containers.iter().find(|v| v.container == container) else {
        return Err(RemediateError::Refused(format!(
            "container {container} of {what} is not decided by oomguard"
        )));
    };
    let from = v.limit.unwrap_or(0);
    let to = match asked.or(v.recommended.filter(|&r| r > from)) {
        Some(to) => to,
        None => {
            return Err(RemediateError::NoChange(format!(
                "oomguard's decision keeps container {container}'s limit {}: {}",
                to_quantity(from),
                v.reasons
                    .first()
                    .map_or("nothing says it is too small", String::as_str)
            )))
        }
    };
    if to <= from {
        return Err(RemediateError::NoChange(format!(
            "container {container} of {what} already has a limit of {} (asked for {})",
            to_quantity(from),
            to_quantity(to)
        )));
    }
    if to > policy.limits.max.0 {
        return Err(RemediateError::OutOfBounds {
            bound: "limits.max".into(),
            message: format!(
                "{} is above the policy's limits.max {}",
                to_quantity(to),
                to_quantity(policy.limits.max.0)
            ),
        });
    }
    if let Some(floor) = v.floor.filter(|&f| to < f) {
        let why = v
            .runtime
            .as_ref()
            .and_then(|r| r.explain.clone())
            .unwrap_or_else(|| "its memory settings".to_string());
        return Err(RemediateError::OutOfBounds {
            bound: "memory settings".into(),
            message: format!(
                "{} is below what container {container} needs ({why}): ask at least {}",
                to_quantity(to),
                to_quantity(floor)
            ),
        });
    }
    let method = if state.in_place_resize {
        ResizeMethod::InPlaceResize
    } else {
        ResizeMethod::TemplatePatch
    };
    Ok((
        Change::Limit {
            container: container.to_string(),
            from,
            to,
            method,
        },
        format!(
            "raise container {container}'s limit {} → {}",
            to_quantity(from),
            to_quantity(to)
        ),
    ))
}

impl Remediator for KubeRemediator {
    fn trigger<'a>(
        &'a self,
        req: &'a Validated,
        caller: &'a Caller,
    ) -> BoxFuture<'a, Result<Remediation, RemediateError>> {
        Box::pin(async move {
            let res = match req.target.kind {
                ScalableKind::Deployment => self.trigger_on::<Deployment>(req, caller).await,
                ScalableKind::StatefulSet => self.trigger_on::<StatefulSet>(req, caller).await,
            };
            let t: &Target = &req.target;
            match &res {
                Ok(r) => {
                    tracing::info!(id = %r.id, by = %caller.username, workload = %format!("{}/{}", t.namespace, t.name), action = r.action.as_str(), outcome = r.outcome.as_str(), "remediation requested through the API")
                }
                Err(e) => {
                    tracing::info!(by = %caller.username, workload = %format!("{}/{}", t.namespace, t.name), error = %e, "remediation request not carried out")
                }
            }
            res
        })
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Remediation>, RemediateError>> {
        Box::pin(self.records.get(id))
    }

    fn list<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Remediation>, RemediateError>> {
        Box::pin(self.records.list(namespace))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::history::{ContainerHistory, OomKill, PeakStats};
    use crate::quantity::MI;
    use crate::workload::{Workload, WorkloadKind};

    const NOW: i64 = 1_800_000_000;

    /// web-app in team-a: `java -Xmx512m` under a 256Mi limit, OOM-killed at it twice.
    fn jvm() -> (WorkloadState, WorkloadHistory) {
        let obj = json!({"metadata": {"name": "web-app", "namespace": "team-a"},
            "spec": {"template": {"spec": {"containers": [{"name": "web",
                "command": ["java", "-Xmx512m", "-jar", "app.jar"],
                "resources": {"limits": {"memory": "256Mi"}}}]}}}});
        let state = WorkloadState {
            kind: ScalableKind::Deployment,
            workload: Workload::from_object(WorkloadKind::Deployment, &obj, "team-a").unwrap(),
            replicas: 2,
            hpa: None,
            in_place_resize: true,
            max_unavailable: 1,
            rollout: Default::default(),
            reverted: Default::default(),
        };
        let c = ContainerHistory {
            covered_secs: 86_400,
            peaks: PeakStats::from_peaks(&[200.0 * MI as f64; 50]),
            restarts: vec![NOW - 600, NOW - 300],
            oom_kills: vec![
                OomKill {
                    t: NOW - 600,
                    limit: None,
                },
                OomKill {
                    t: NOW - 300,
                    limit: None,
                },
            ],
            ..Default::default()
        };
        let h = WorkloadHistory {
            now: NOW,
            window_secs: 14 * 86_400,
            containers: [("web".to_string(), c)].into_iter().collect(),
            events_unseen: None,
        };
        (state, h)
    }

    fn raise(to: Option<u64>) -> Validated {
        Validated {
            target: Target {
                kind: ScalableKind::Deployment,
                namespace: "team-a".into(),
                name: "web-app".into(),
            },
            action: RequestedAction::RaiseLimit {
                container: "web".into(),
                to,
                current: Some(256 * MI),
            },
            incident_id: None,
            reason: String::new(),
            predicted_usage: None,
        }
    }

    fn policy() -> PolicySpec {
        let mut p = PolicySpec::default();
        p.reconcile.enabled = true;
        p
    }

    #[test]
    fn a_raise_asked_through_the_api_goes_through_the_decision() {
        let (state, h) = jvm();
        let p = policy();
        let v = verdict::decide(&state.workload, HistoryStatus::Found(&h), &p, NOW)
            .containers
            .remove(0);
        let floor = v.floor.expect("a floor from -Xmx512m");
        // Without a value: the decision's recommendation, which is at least the floor.
        let (change, _) = change_for(&raise(None), &state, Some(&h), &p, NOW).unwrap();
        match change {
            Change::Limit { from, to, .. } => {
                assert_eq!(from, 256 * MI);
                assert_eq!(Some(to), v.recommended);
                assert!(to >= floor);
            }
            other => panic!("{other:?}"),
        }
        // A value below what -Xmx512m needs: refused, naming the floor.
        match change_for(&raise(Some(400 * MI)), &state, Some(&h), &p, NOW) {
            Err(RemediateError::OutOfBounds { bound, message }) => {
                assert_eq!(bound, "memory settings");
                assert!(
                    message.contains(&format!("ask at least {}", to_quantity(floor))),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        // At or above it: taken as asked.
        let (change, _) = change_for(&raise(Some(floor)), &state, Some(&h), &p, NOW).unwrap();
        assert!(matches!(change, Change::Limit { to, .. } if to == floor));
        // Out of the reconciler's scope through the same rule: refused before any change.
        let mut excluded = state.clone();
        excluded
            .workload
            .annotations
            .insert(verdict::EXCLUDE_ANNOTATION.into(), "true".into());
        assert!(scope::reconciled(&excluded.workload, &p).is_err());
    }
}
