//! The Kubernetes side of a remediation (the act of a reconcile round, and of an API request):
//! claim it in the workload's annotations, act (scale subresource, `pods/resize`, template
//! patch, rolling restart), record a failure, publish Events.
//!
//! The claim comes first and carries the `resourceVersion` the plan was made from, so two
//! reconcilers that planned from the same object cannot both act: the second claim gets a 409.
//! A reconciler that dies between the claim and the call leaves a record that the next one
//! honours (cooldown), so an action is never applied twice.

use std::sync::Arc;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::observe::{is_live, records_of, selector_string, Scalable};
use super::plan::{ActionKind, Plan, ResizeMethod};
use super::record::{self, Baseline, Change, Outcome, Remediation, Target};
use crate::quantity::to_quantity;

pub const FIELD_MANAGER: &str = "oomguard-reconciler";
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The object changed since it was read (another reconciler, a user): plan again.
    #[error("{0} changed since it was read; planning again")]
    Conflict(String),
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl ApplyError {
    fn kube(what: impl Into<String>, e: kube::Error) -> ApplyError {
        let what = what.into();
        if is_conflict(&e) {
            ApplyError::Conflict(what)
        } else {
            ApplyError::Kube { what, source: e }
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A fresh action id: 12 hex digits from the system's random source.
pub fn new_id(now: i64) -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    // The random source only fails when the OS has none; the time part keeps ids apart then.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    format!(
        "{:08x}{:02x}{:02x}{:02x}{:02x}",
        now as u32, b[0], b[1], b[2], b[3]
    )
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// Executes remediations on one cluster.
#[derive(Clone)]
pub struct Executor {
    pub client: Client,
    recorder: Arc<Recorder>,
    /// This replica's name (the Lease identity).
    instance: String,
}

/// One action to take, as the plan (or an API caller) asked for it.
#[derive(Debug, Clone)]
pub struct Request {
    pub action: ActionKind,
    pub change: Change,
    pub reason: String,
    pub requested_by: String,
    pub incident_id: Option<String>,
}

impl Request {
    /// The request for a plan step that acts; None for the others. `by` names the replica.
    pub fn from_step(step: &Plan, by: &str) -> Option<Request> {
        let (action, change) = match step {
            Plan::ScaleOut { from, to, .. } => (
                ActionKind::ScaleOut,
                Change::Replicas {
                    from: *from,
                    to: *to,
                },
            ),
            Plan::RaiseLimit {
                container,
                from,
                to,
                method,
                ..
            } => (
                ActionKind::RaiseLimit,
                Change::Limit {
                    container: container.clone(),
                    from: *from,
                    to: *to,
                    method: *method,
                },
            ),
            Plan::PlannedRestart { container, .. } => (
                ActionKind::Restart,
                Change::Restart {
                    container: container.clone(),
                },
            ),
            _ => return None,
        };
        Some(Request {
            action,
            change,
            reason: step.reason().to_string(),
            requested_by: by.to_string(),
            incident_id: None,
        })
    }
}

impl Executor {
    pub fn new(client: Client, instance: String) -> Executor {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: Some(instance.clone()),
        };
        Executor {
            recorder: Arc::new(Recorder::new(client.clone(), reporter)),
            client,
            instance,
        }
    }

    /// Who the records name for actions this reconciler takes on its own.
    pub fn reconciler_name(&self) -> String {
        format!("{FIELD_MANAGER}/{}", self.instance)
    }

    fn api<K: Scalable>(&self, namespace: &str) -> Api<K> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The HPAs of a namespace (the reconciler never fights one for the replica count).
    pub async fn hpas(&self, namespace: &str) -> Result<Vec<HorizontalPodAutoscaler>, ApplyError> {
        Api::<HorizontalPodAutoscaler>::namespaced(self.client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| {
                ApplyError::kube(format!("list HorizontalPodAutoscalers in {namespace}"), e)
            })
    }

    /// Publishes an Event on the workload; a failure is logged, never fatal.
    pub async fn event<K: Scalable>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let mut note = note;
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(workload = %obj.name_any(), reason, error = %e, "event not published");
        }
    }

    /// Writes `records` on the object, guarded by `resource_version` when given. Returns the
    /// object as stored afterwards.
    pub async fn write_records<K: Scalable>(
        &self,
        t: &Target,
        records: &[Remediation],
        resource_version: Option<&str>,
    ) -> Result<K, ApplyError> {
        let mut meta = json!({
            "annotations": {record::ANNOTATION: record::encode(records)},
            "labels": {record::LABEL: "true"},
        });
        if let Some(rv) = resource_version {
            meta["resourceVersion"] = json!(rv);
        }
        self.api::<K>(&t.namespace)
            .patch(&t.name, &params(), &Patch::Merge(json!({"metadata": meta})))
            .await
            .map_err(|e| {
                ApplyError::kube(format!("{} {}/{}", t.kind.as_str(), t.namespace, t.name), e)
            })
    }

    /// Re-reads the object and changes its records with `f`, retrying on conflicts.
    pub async fn update_records<K: Scalable>(
        &self,
        t: &Target,
        mut f: impl FnMut(&mut Vec<Remediation>),
    ) -> Result<K, ApplyError> {
        let what = format!("{} {}/{}", t.kind.as_str(), t.namespace, t.name);
        let mut last = None;
        for _ in 0..5 {
            let obj: K = self
                .api::<K>(&t.namespace)
                .get(&t.name)
                .await
                .map_err(|e| ApplyError::kube(what.clone(), e))?;
            let mut records = records_of(&obj).map_err(ApplyError::Invalid)?;
            f(&mut records);
            match self
                .write_records::<K>(t, &records, obj.resource_version().as_deref())
                .await
            {
                Err(ApplyError::Conflict(w)) => last = Some(w),
                other => return other,
            }
        }
        Err(ApplyError::Conflict(last.unwrap_or(what)))
    }

    /// Claims and applies `requests` on `obj` (as read, at its resourceVersion). Returns the
    /// records as they stand afterwards: each is pending, or failed with the reason.
    pub async fn execute<K: Scalable>(
        &self,
        obj: &K,
        mut records: Vec<Remediation>,
        requests: Vec<Request>,
        baseline: Baseline,
        verify_after: i64,
        now: i64,
    ) -> Result<Vec<Remediation>, ApplyError> {
        let t = super::observe::target_of(obj);
        let first_new = records.len();
        for r in &requests {
            records.push(Remediation {
                id: new_id(now),
                action: r.action,
                target: t.clone(),
                at: now,
                requested_by: r.requested_by.clone(),
                incident_id: r.incident_id.clone(),
                reason: r.reason.clone(),
                change: r.change.clone(),
                baseline,
                verify_at: now.saturating_add(verify_after),
                outcome: Outcome::Pending,
                verified_at: None,
                detail: None,
            });
        }
        // The claim: fails with a conflict if anyone changed the object since the plan.
        self.write_records::<K>(&t, &records, obj.resource_version().as_deref())
            .await?;
        let mut failed: Vec<(String, String)> = Vec::new();
        let mut resized = false;
        for r in records.iter_mut().skip(first_new) {
            let before = r.change.clone();
            let res = self.act(obj, &t, &mut r.change).await;
            resized |= r.change != before;
            let (type_, reason) = match (&res, r.action) {
                (Ok(()), ActionKind::ScaleOut) => (EventType::Normal, "ScaledOut"),
                (Ok(()), ActionKind::RaiseLimit) => (EventType::Normal, "RaisedMemoryLimit"),
                (Ok(()), ActionKind::Restart) => (EventType::Normal, "RestartedBeforeOOM"),
                (Err(_), _) => (EventType::Warning, "RemediationFailed"),
            };
            let workload = format!("{}/{}", t.namespace, t.name);
            let note = match &res {
                Ok(()) => {
                    tracing::info!(%workload, action = r.action.as_str(), id = %r.id, by = %r.requested_by, reason = %r.reason, "remediation applied");
                    format!("{} (action {}, by {})", r.reason, r.id, r.requested_by)
                }
                Err(e) => {
                    tracing::warn!(%workload, action = r.action.as_str(), id = %r.id, by = %r.requested_by, error = %e, "remediation failed");
                    format!("{} failed: {e} (action {})", r.action.as_str(), r.id)
                }
            };
            self.event(obj, type_, reason, r.action.as_str(), note)
                .await;
            if let Err(e) = res {
                failed.push((r.id.clone(), e.to_string()));
            }
        }
        if failed.is_empty() && !resized {
            return Ok(records);
        }
        // Record failures, and the resize method actually used, on the stored object.
        let mine: Vec<Remediation> = records[first_new..].to_vec();
        let stored: K = self
            .update_records::<K>(&t, |rs| {
                for r in rs.iter_mut() {
                    if let Some(m) = mine.iter().find(|m| m.id == r.id) {
                        r.change = m.change.clone();
                    }
                    if let Some((_, why)) = failed.iter().find(|(id, _)| *id == r.id) {
                        r.outcome = Outcome::Failed;
                        r.verified_at = Some(now);
                        r.detail = Some(why.clone());
                    }
                }
            })
            .await?;
        records_of(&stored).map_err(ApplyError::Invalid)
    }

    /// One Kubernetes call (or a few, for in-place resizes). May change the resize method when
    /// the in-place path is not possible.
    async fn act<K: Scalable>(
        &self,
        obj: &K,
        t: &Target,
        change: &mut Change,
    ) -> Result<(), ApplyError> {
        let api = self.api::<K>(&t.namespace);
        let what = format!("{} {}/{}", t.kind.as_str(), t.namespace, t.name);
        match change {
            Change::Replicas { to, .. } => api
                .patch_scale(
                    &t.name,
                    &params(),
                    &Patch::Merge(json!({"spec": {"replicas": *to}})),
                )
                .await
                .map(|_| ())
                .map_err(|e| ApplyError::kube(format!("scale {what}"), e)),
            Change::Limit {
                container,
                from,
                to,
                method,
            } => {
                let (list, request) = container_of(obj, container);
                let guaranteed = request == Some(*from);
                let resources = resources_patch(*to, guaranteed);
                let patch = json!({list: [{"name": container, "resources": resources}]});
                if *method == ResizeMethod::InPlaceResize {
                    match self.resize_pods(obj, t, &patch).await {
                        Ok(n) if n > 0 => return Ok(()),
                        Ok(_) => {
                            tracing::info!(workload = %what, "no running pod to resize in place; patching the template")
                        }
                        Err(e) => {
                            tracing::warn!(workload = %what, error = %e, "in-place resize refused; patching the template")
                        }
                    }
                    *method = ResizeMethod::TemplatePatch;
                }
                let patch = json!({"spec": {"template": {"spec": patch}}});
                api.patch(&t.name, &params(), &Patch::Strategic(patch))
                    .await
                    .map(|_| ())
                    .map_err(|e| ApplyError::kube(format!("patch the template of {what}"), e))
            }
            Change::Restart { .. } => {
                let at = time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                let patch = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}});
                api.patch(&t.name, &params(), &Patch::Strategic(patch))
                    .await
                    .map(|_| ())
                    .map_err(|e| ApplyError::kube(format!("restart {what}"), e))
            }
        }
    }

    /// The workload's pods that run or will run (by its selector's matchLabels; none without).
    pub async fn live_pods<K: Scalable>(
        &self,
        obj: &K,
        t: &Target,
    ) -> Result<Vec<Pod>, ApplyError> {
        let Some(selector) = obj.selector().and_then(selector_string) else {
            return Ok(Vec::new());
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &t.namespace);
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| {
                ApplyError::kube(format!("list the pods of {}/{}", t.namespace, t.name), e)
            })?;
        Ok(list.items.into_iter().filter(is_live).collect())
    }

    /// Resizes the workload's live pods in place with `spec` (a pod spec patch); returns how many
    /// were resized.
    async fn resize_pods<K: Scalable>(
        &self,
        obj: &K,
        t: &Target,
        spec: &serde_json::Value,
    ) -> Result<usize, ApplyError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &t.namespace);
        let live = self.live_pods(obj, t).await?;
        let patch = json!({ "spec": spec });
        let mut n = 0;
        for p in &live {
            pods.patch_subresource(
                "resize",
                &p.name_any(),
                &params(),
                &Patch::Strategic(&patch),
            )
            .await
            .map_err(|e| {
                ApplyError::kube(format!("resize pod {}/{}", t.namespace, p.name_any()), e)
            })?;
            n += 1;
        }
        Ok(n)
    }
}

/// Which list of the pod spec holds the container (`containers`, or `initContainers` for a
/// sidecar), and its memory request in the template, bytes.
fn container_of<K: Scalable>(obj: &K, container: &str) -> (&'static str, Option<u64>) {
    let request = |c: &k8s_openapi::api::core::v1::Container| {
        c.resources
            .as_ref()?
            .requests
            .as_ref()?
            .get("memory")
            .and_then(|q| crate::quantity::parse_bytes(&q.0).ok())
    };
    let Some(spec) = obj.pod_spec() else {
        return ("containers", None);
    };
    if let Some(c) = spec.containers.iter().find(|c| c.name == container) {
        return ("containers", request(c));
    }
    match spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == container)
    {
        Some(c) => ("initContainers", request(c)),
        None => ("containers", None),
    }
}

/// The resources to patch: the new limit, and the request with it when the request equalled the
/// old limit (a Guaranteed pod keeps its QoS class, which an in-place resize must).
fn resources_patch(to: u64, guaranteed: bool) -> serde_json::Value {
    let q = to_quantity(to);
    if guaranteed {
        json!({"limits": {"memory": q}, "requests": {"memory": q}})
    } else {
        json!({"limits": {"memory": q}})
    }
}
