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
use super::observe::{hpa_for, records_of, state_of, Scalable};
use super::plan::{self, Plan, ResizeMethod, ScalableKind};
use super::record::{self, Change, Remediation, Target};
use super::record_lookup::AnnotationRecords;
use super::remediator::{Caller, RemediateError, Remediator, RequestedAction, Validated};
use crate::history::HistorySource;
use crate::policy::store::PolicyStore;

/// How long a trigger waits for the workload's history (for the verification baseline).
const BASELINE_TIMEOUT: Duration = Duration::from_secs(10);

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
        let api: Api<K> = Api::namespaced(self.exec.client.clone(), &t.namespace);
        let what = format!("{} {}/{}", t.kind.as_str(), t.namespace, t.name);
        let policy = self.policies.current().for_namespace(&t.namespace);
        let r = &policy.reconcile;
        if !r.enabled {
            return Err(RemediateError::Refused(format!(
                "the policy of namespace {} does not enable oomguard's remediations \
                 (reconcile.enabled: false); enable it to let oomguard act there",
                t.namespace
            )));
        }
        if r.dry_run {
            return Err(RemediateError::Refused(format!(
                "the policy of namespace {} is in dry run (reconcile.dryRun: true): oomguard only \
                 reports there",
                t.namespace
            )));
        }
        // A claim can lose a race with the reconciler loop or another call: read again, decide
        // again (the winner's record now counts for the cooldown).
        for _ in 0..3 {
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
            let hpas = match req.action {
                RequestedAction::Scale { .. } => {
                    self.exec.hpas(&t.namespace).await.map_err(upstream)?
                }
                RequestedAction::RaiseLimit { .. } => Vec::new(),
            };
            let in_place = r.resize_method.in_place(self.in_place_supported);
            let state = state_of(&obj, hpa_for(t.kind, &t.name, &hpas), in_place);
            if state.excluded || policy.excludes_workload(&t.name) {
                return Err(RemediateError::Refused(format!(
                    "{what} is excluded from oomguard (annotation oomguard.io/exclude or the \
                     policy's exclude.workloads)"
                )));
            }
            let records = records_of(&obj).map_err(|e| {
                RemediateError::Refused(format!(
                    "{what}: {e}; oomguard takes no action until it is fixed or removed"
                ))
            })?;
            let (change, reason) = match &req.action {
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
                    if *replicas > r.max_replicas {
                        return Err(RemediateError::OutOfBounds {
                            bound: "reconcile.maxReplicas".into(),
                            message: format!(
                                "{replicas} replicas is above the policy's maxReplicas {}",
                                r.max_replicas
                            ),
                        });
                    }
                    (
                        Change::Replicas {
                            from: state.replicas,
                            to: *replicas,
                        },
                        format!("scale out {} → {replicas} replicas", state.replicas),
                    )
                }
                RequestedAction::RaiseLimit { container, to, .. } => {
                    let Some(c) = state.containers.iter().find(|c| &c.name == container) else {
                        return Err(RemediateError::NotFound(format!(
                            "{what} has no container {container}"
                        )));
                    };
                    if policy.excludes_container(container) {
                        return Err(RemediateError::Refused(format!(
                            "container {container} is excluded by the policy"
                        )));
                    }
                    let from = c.limit.unwrap_or(0);
                    if *to <= from {
                        return Err(RemediateError::NoChange(format!(
                            "container {container} of {what} already has a limit of {} (asked for {})",
                            crate::quantity::to_quantity(from),
                            crate::quantity::to_quantity(*to)
                        )));
                    }
                    if *to > policy.limits.max.0 {
                        return Err(RemediateError::OutOfBounds {
                            bound: "limits.max".into(),
                            message: format!(
                                "{} is above the policy's limits.max {}",
                                crate::quantity::to_quantity(*to),
                                crate::quantity::to_quantity(policy.limits.max.0)
                            ),
                        });
                    }
                    let method = if state.in_place_resize {
                        ResizeMethod::InPlaceResize
                    } else {
                        ResizeMethod::TemplatePatch
                    };
                    (
                        Change::Limit {
                            container: container.clone(),
                            from,
                            to: *to,
                            method,
                        },
                        format!(
                            "raise container {container}'s limit {} → {}",
                            crate::quantity::to_quantity(from),
                            crate::quantity::to_quantity(*to)
                        ),
                    )
                }
            };
            let kind = req.action.kind();
            let now = crate::history::unix_now();
            // The reconciler's own safety: cooldown and the hourly cap.
            let recent = record::recent_actions(&records);
            match plan::held_back(kind, &recent, &policy, now) {
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
            let query = t.history_query(policy.history.window.secs());
            let history =
                match tokio::time::timeout(BASELINE_TIMEOUT, self.history.fetch(&query)).await {
                    Ok(Ok(h)) => h,
                    Ok(Err(e)) => {
                        tracing::warn!(workload = %what, error = %e, "no history for the baseline");
                        None
                    }
                    Err(_) => None,
                };
            let limits = record::effective_limits(&state.containers, &records);
            let baseline = record::observe(history.as_deref(), &limits).into();
            let mut why = format!("{reason}, asked by {}", caller.username);
            if !req.reason.is_empty() {
                why.push_str(&format!(": {}", req.reason));
            }
            if let Some(p) = req.predicted_usage {
                why.push_str(&format!(" (predicted usage {p:.1}%)"));
            }
            let request = Request {
                action: kind,
                change,
                reason: why,
                requested_by: caller.username.clone(),
                incident_id: req.incident_id.clone(),
            };
            let verify_after = i64::try_from(r.verify_window.secs()).unwrap_or(i64::MAX);
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
