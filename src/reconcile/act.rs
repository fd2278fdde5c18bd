//! The Kubernetes side of a remediation (the act of a reconcile round, and of an API request):
//! claim it in the workload's annotations, act (scale subresource, `pods/resize`, template
//! patch, rolling restart), record a failure, publish Events.
//!
//! The claim comes first and carries the `resourceVersion` the plan was made from, so two
//! reconcilers that planned from the same object cannot both act: the second claim gets a 409.
//! A reconciler that dies between the claim and the call leaves a record that the next one
//! honours (cooldown), so an action is never applied twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::kills::Ledger;
use super::observe::{is_live, records_of, selector_string, Scalable};
use super::plan::{ActionKind, Plan, ResizeMethod, ScalableKind};
use super::record::{self, Baseline, Change, Outcome, Remediation, Target};
use crate::history::kills as history_kills;
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
    /// The OOM kills the pods reported, once each: every write of records keeps them on the
    /// workload too.
    ledger: Arc<std::sync::Mutex<Ledger>>,
}

/// One action to take, as the plan (or an API caller) asked for it.
#[derive(Debug, Clone)]
pub struct Request {
    pub action: ActionKind,
    pub change: Change,
    /// Why an in-place raise must not fall back to a template patch (the template's limit is
    /// another manager's, or a template change does not reach the pods); None: it may.
    pub template_off: Option<String>,
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
            template_off: None,
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
            ledger: Default::default(),
        }
    }

    /// The kills ledger (shared by the pod watch, the rounds and the API's remediator).
    pub fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the ledger's kills of `t` on the workload (`oomguard.io/oom-kills`), alone: for a
    /// round that writes nothing else.
    pub async fn keep_kills<K: Scalable>(&self, t: &Target) -> Result<(), ApplyError> {
        let kills = self.ledger().of(t);
        if kills.is_empty() {
            return Ok(());
        }
        let meta =
            json!({"annotations": {history_kills::ANNOTATION: history_kills::encode(&kills)}});
        self.api::<K>(&t.namespace)
            .patch(&t.name, &params(), &Patch::Merge(json!({"metadata": meta})))
            .await
            .map_err(|e| {
                ApplyError::kube(format!("{} {}/{}", t.kind.as_str(), t.namespace, t.name), e)
            })?;
        self.ledger().kept(t);
        Ok(())
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
        // The kills seen ride along: a new leader and the webhook read them there.
        let kills = self.ledger().of(t);
        if !kills.is_empty() {
            meta["annotations"][history_kills::ANNOTATION] = json!(history_kills::encode(&kills));
        }
        if let Some(rv) = resource_version {
            meta["resourceVersion"] = json!(rv);
        }
        let stored = self
            .api::<K>(&t.namespace)
            .patch(&t.name, &params(), &Patch::Merge(json!({"metadata": meta})))
            .await
            .map_err(|e| {
                ApplyError::kube(format!("{} {}/{}", t.kind.as_str(), t.namespace, t.name), e)
            })?;
        if !kills.is_empty() {
            self.ledger().kept(t);
        }
        Ok(stored)
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
        let template_off: Vec<Option<String>> =
            requests.iter().map(|r| r.template_off.clone()).collect();
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
        for (i, r) in records.iter_mut().skip(first_new).enumerate() {
            let before = r.change.clone();
            let off = template_off.get(i).cloned().flatten();
            let res = self.act(obj, &t, &mut r.change, off.as_deref()).await;
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
        template_off: Option<&str>,
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
                to,
                method,
                ..
            } => {
                let (list, guaranteed) = container_of(obj, container);
                if *method == ResizeMethod::InPlaceResize {
                    let why = match self.resize_pods(obj, t, list, container, *to).await {
                        Ok(Resized::All(_)) => return Ok(()),
                        Ok(other) => other.why(),
                        Err(e) => format!("in-place resize refused: {e}"),
                    };
                    if let Some(not) = template_off {
                        return Err(ApplyError::Invalid(format!(
                            "{what}: {why}, and the template is not patched ({not})"
                        )));
                    }
                    tracing::info!(workload = %what, %why, "patching the template instead");
                    *method = ResizeMethod::TemplatePatch;
                }
                let resources = resources_patch(*to, guaranteed);
                let patch = json!({"spec": {"template": {"spec":
                    {list: [{"name": container, "resources": resources}]}}}});
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

    /// The workload's pods that run or will run: those its selector matches (matchLabels and
    /// matchExpressions) that it owns — a StatefulSet directly, a Deployment through its
    /// ReplicaSets — so that a canary's pods beside it, whose labels are a superset, are not
    /// taken for its own.
    pub async fn live_pods<K: Scalable>(
        &self,
        obj: &K,
        t: &Target,
    ) -> Result<Vec<Pod>, ApplyError> {
        let Some(selector) = obj.selector().and_then(selector_string) else {
            return Ok(Vec::new());
        };
        let lp = ListParams::default().labels(&selector);
        let what = |of: &str| format!("list the {of} of {}/{}", t.namespace, t.name);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &t.namespace);
        let list = pods
            .list(&lp)
            .await
            .map_err(|e| ApplyError::kube(what("pods"), e))?;
        let Some(uid) = obj.meta().uid.clone() else {
            return Ok(Vec::new());
        };
        let owners: Vec<String> = match t.kind {
            ScalableKind::StatefulSet => vec![uid],
            ScalableKind::Deployment => {
                let sets: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &t.namespace);
                sets.list(&lp)
                    .await
                    .map_err(|e| ApplyError::kube(what("ReplicaSets"), e))?
                    .items
                    .into_iter()
                    .filter(|rs| controller_uid(&rs.metadata) == Some(uid.as_str()))
                    .filter_map(|rs| rs.metadata.uid)
                    .collect()
            }
        };
        Ok(list
            .items
            .into_iter()
            .filter(|p| controller_uid(&p.metadata).is_some_and(|u| owners.iter().any(|o| o == u)))
            .filter(is_live)
            .collect())
    }

    /// Resizes the container of the workload's live pods in place to `to` (its request too on
    /// a pod where request equals limit, so that a Guaranteed pod stays Guaranteed). Not when
    /// the container is not running in some pod (waiting after an OOM kill, crash-looping): the
    /// kubelet then changes the container's cgroup but not the pod's (kubernetes#138760) and
    /// says it did; the raise belongs in the template, whose rollout replaces those pods. Every
    /// pod is tried; what could not be resized is said.
    async fn resize_pods<K: Scalable>(
        &self,
        obj: &K,
        t: &Target,
        list: &str,
        container: &str,
        to: u64,
    ) -> Result<Resized, ApplyError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &t.namespace);
        let live = self.live_pods(obj, t).await?;
        if live.is_empty() {
            return Ok(Resized::NoPods);
        }
        // Not running, or just back from an OOM kill: see [`running`].
        let stopped: Vec<String> = live
            .iter()
            .filter(|p| !running(p, container))
            .map(|p| p.name_any())
            .collect();
        if !stopped.is_empty() {
            return Ok(Resized::NotRunning(stopped));
        }
        let (mut done, mut failed) = (0, Vec::new());
        for p in &live {
            // A pod already at `to` or above (an earlier raise, or a pod of the new template)
            // is left as it is: a "raise" never lowers a running pod.
            if pod_limit(p, container).is_some_and(|l| l >= to) {
                done += 1;
                continue;
            }
            let resources = resources_patch(to, pod_guaranteed(p, container));
            let patch = json!({"spec": {list: [{"name": container, "resources": resources}]}});
            match pods
                .patch_subresource(
                    "resize",
                    &p.name_any(),
                    &params(),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                Ok(_) => done += 1,
                Err(e) => failed.push(format!("{}: {e}", p.name_any())),
            }
        }
        Ok(if failed.is_empty() {
            Resized::All(done)
        } else {
            Resized::Partly { done, failed }
        })
    }
}

/// How an in-place resize went.
#[derive(Debug)]
enum Resized {
    /// Every live pod was resized.
    All(usize),
    /// No live pod to resize.
    NoPods,
    /// The container is not running in these pods: not resized in place.
    NotRunning(Vec<String>),
    /// Some pods refused.
    Partly { done: usize, failed: Vec<String> },
}

impl Resized {
    fn why(&self) -> String {
        match self {
            Resized::All(n) => format!("{n} pods resized"),
            Resized::NoPods => "no running pod to resize in place".to_string(),
            Resized::NotRunning(pods) => format!(
                "the container is not running steadily in {} (stopped, or back from an OOM kill under a minute ago: an in-place resize of a stopped container does not reach the pod's cgroup)",
                pods.join(", ")
            ),
            Resized::Partly { done, failed } => format!(
                "{done} pods resized in place, refused by {}",
                failed.join("; ")
            ),
        }
    }
}

/// The uid of the object's controller (the ownerReference with `controller: true`).
fn controller_uid(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// Whether `container` runs steadily in pod `p`: its status says running, and not just back
/// from an OOM kill (a container OOM-looping from boot runs a second between kills: a resize
/// that lands after the next kill is one of a stopped container).
fn running(p: &Pod, container: &str) -> bool {
    let Some(s) = p
        .status
        .as_ref()
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .find(|s| s.name == container)
    else {
        return false;
    };
    let Some(started) = s
        .state
        .as_ref()
        .and_then(|st| st.running.as_ref())
        .map(|r| r.started_at.as_ref().map(|t| t.0.as_second()))
    else {
        return false;
    };
    let oom_before = s
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"));
    let up_for = started.map(|at| crate::history::unix_now() - at);
    !oom_before || up_for.is_some_and(|secs| secs >= STEADY_AFTER_OOM_SECS)
}

/// How long a container back from an OOM kill must have run to be resized in place.
const STEADY_AFTER_OOM_SECS: i64 = 60;

/// A memory quantity of a resource list, bytes.
fn memory_of(m: Option<&BTreeMap<String, Quantity>>) -> Option<u64> {
    m.and_then(|m| m.get("memory"))
        .and_then(|q| crate::quantity::parse_bytes(&q.0).ok())
}

/// The resources of `container` in pod `p`'s spec (as it runs: an in-place resize changes it).
fn pod_resources<'a>(
    p: &'a Pod,
    container: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ResourceRequirements> {
    let spec = p.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == container)?
        .resources
        .as_ref()
}

/// The memory limit `container` runs with in pod `p`.
fn pod_limit(p: &Pod, container: &str) -> Option<u64> {
    memory_of(pod_resources(p, container)?.limits.as_ref())
}

/// Whether `container` in pod `p` has its memory request equal to its limit (as the pod runs
/// it: an earlier in-place raise changed both), so that a raise keeps it Guaranteed.
fn pod_guaranteed(p: &Pod, container: &str) -> bool {
    pod_resources(p, container).is_some_and(|r| {
        let req = memory_of(r.requests.as_ref());
        req.is_some() && req == memory_of(r.limits.as_ref())
    })
}

/// Which list of the pod spec holds the container (`containers`, or `initContainers` for a
/// sidecar), and whether its template request equals its template limit (Guaranteed).
fn container_of<K: Scalable>(obj: &K, container: &str) -> (&'static str, bool) {
    let guaranteed = |c: &k8s_openapi::api::core::v1::Container| {
        let r = c.resources.as_ref();
        let req = memory_of(r.and_then(|r| r.requests.as_ref()));
        req.is_some() && req == memory_of(r.and_then(|r| r.limits.as_ref()))
    };
    let Some(spec) = obj.pod_spec() else {
        return ("containers", false);
    };
    if let Some(c) = spec.containers.iter().find(|c| c.name == container) {
        return ("containers", guaranteed(c));
    }
    match spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == container)
    {
        Some(c) => ("initContainers", guaranteed(c)),
        None => ("containers", false),
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
