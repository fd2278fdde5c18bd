//! `oomguard reconcile`: a kube-runtime controller over Deployments and StatefulSets.
//!
//! Each workload is looked at when it changes and every `--interval`: verify the remediations
//! whose window is over, plan ([`plan::plan`]), act on what the plan asks (unless the policy says
//! `dryRun`), and write what was done into the workload's annotations. Only the holder of the
//! `coordination.k8s.io` Lease acts; the others keep their caches warm and take over when the
//! holder stops renewing it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use super::act::{ApplyError, Executor, Request};
use super::kube_remediator::KubeRemediator;
use super::metrics::{ReconcileMetrics, StepLabels};
use super::observe::{
    hpa_for, live_limits, pods_may_differ, records_of, state_of, target_of, with_live_limits,
    Scalable,
};
use super::plan::ScalableKind;
use super::plan::{self, Plan, WorkloadState};
use super::record::{self, Outcome, Remediation, Target};
use super::record_lookup::AnnotationRecords;
use crate::history::kills as history_kills;
use crate::history::{unix_now, HistorySource, WorkloadHistory};
use crate::policy::store::PolicyStore;
use crate::policy::PolicySpec;
use crate::serving::{self, Readiness, Shutdown};

/// A planned restart is carried out when the earliest plausible OOM is this close.
pub const RESTART_LEAD_SECS: i64 = 3600;

pub struct LeaseOptions {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
}

pub struct Options {
    /// The policies, reloading (see `cli::reloading_policies`).
    pub policies: Arc<PolicyStore>,
    pub history: Arc<dyn HistorySource>,
    pub interval: Duration,
    /// Watch one namespace only (None: all).
    pub namespace: Option<String>,
    pub lease: LeaseOptions,
    pub admin_listen: SocketAddr,
    /// Served beside the controller with its remediator, until the stop signal (the
    /// forecast and remediation API, wired by the CLI).
    pub beside: Option<Beside>,
}

/// A server run beside the controller: given the reconciler's [`KubeRemediator`], the
/// Kubernetes client and the process's [`Shutdown`], it serves until that fires.
pub type Beside = Box<
    dyn FnOnce(Arc<KubeRemediator>, Client, Shutdown) -> BoxFuture<'static, anyhow::Result<()>>
        + Send,
>;

/// Actions on one workload the cluster refused before they could be recorded (the record is an
/// annotation on the same object, refused with it): how many in a row, until when the next is
/// held, and why. In memory: a new leader starts over, still bounded by the backoff.
#[derive(Debug, Clone)]
pub struct Refused {
    pub times: u32,
    pub until: i64,
    pub why: String,
}

/// Seconds between two writes that only keep a workload's OOM kills.
const KEEP_EVERY_SECS: i64 = 10;

/// Shared by the reconciles.
pub struct Ctx {
    /// When each workload's kills were last kept on their own.
    pub kept_at: std::sync::Mutex<std::collections::HashMap<Target, i64>>,
    /// What was already said in an Event, once per workload and reason (a blocked raise is
    /// planned every round; its Event is published once).
    pub told: std::sync::Mutex<std::collections::HashSet<(Target, String)>>,
    /// Workloads whose claims were refused, with their backoff.
    pub refused: std::sync::Mutex<std::collections::HashMap<Target, Refused>>,
    pub exec: Executor,
    pub policies: Arc<PolicyStore>,
    pub history: Arc<dyn HistorySource>,
    pub interval: Duration,
    pub leader: watch::Receiver<bool>,
    /// The apiserver is 1.33 or later (`pods/resize`).
    pub in_place_supported: bool,
    pub metrics: Arc<ReconcileMetrics>,
}

fn step_name(p: &Plan) -> &'static str {
    match p {
        Plan::None { .. } => "none",
        Plan::ScaleOut { .. } => "scale-out",
        Plan::RecommendHpa { .. } => "recommend-hpa",
        Plan::RaiseLimit { .. } => "raise-limit",
        Plan::PlannedRestart { .. } => "planned-restart",
        Plan::OutOfBounds { .. } => "out-of-bounds",
        Plan::Cooldown { .. } => "cooldown",
        Plan::RateLimited { .. } => "rate-limited",
        Plan::Blocked { .. } => "blocked",
    }
}

impl Ctx {
    /// Keeps the kills the pods reported for `t` that no write kept yet, on their own, at most
    /// once per [`KEEP_EVERY_SECS`] per workload (an OOM loop of many pods would otherwise be a
    /// write per kill). Returns when to come back for kills held back: None when none are.
    async fn keep_kills<K: Scalable>(&self, t: &Target, now: i64) -> Option<Duration> {
        if !self.exec.ledger().unkept(t) {
            return None;
        }
        {
            let mut last = self.kept_at.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(&at) = last.get(t).filter(|&&at| now - at < KEEP_EVERY_SECS) {
                let wait = u64::try_from(KEEP_EVERY_SECS - (now - at)).unwrap_or(1);
                return Some(Duration::from_secs(wait.max(1)));
            }
            last.insert(t.clone(), now);
        }
        if let Err(e) = self.exec.keep_kills::<K>(t).await {
            tracing::warn!(workload = %format!("{}/{}", t.namespace, t.name), error = %e, "OOM kills not kept on the workload");
            return Some(Duration::from_secs(KEEP_EVERY_SECS as u64));
        }
        None
    }

    /// Whether `reason` about `t` has not been told yet (and is now).
    fn first_telling(&self, t: &Target, reason: &str) -> bool {
        let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        told.insert((t.clone(), reason.to_string()))
    }

    /// The backoff holding `t`'s actions now, if any.
    fn refused_now(&self, t: &Target, now: i64) -> Option<Refused> {
        let map = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        map.get(t).filter(|r| now < r.until).cloned()
    }

    /// `t`'s claim went through: its backoff, if any, is over.
    fn refusal_over(&self, t: &Target) {
        let mut map = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if map.remove(t).is_some() {
            self.metrics.backing_off.set(map.len() as i64);
        }
    }

    /// The cluster refused the claim of `actions` on `seen`'s workload: the next attempt waits
    /// `reconcile.cooldown` doubled for each refusal in a row (up to 6 h), and an Event and the
    /// metrics say why. Returns the wait, seconds.
    #[allow(clippy::too_many_arguments)]
    async fn refusal<K: Scalable>(
        &self,
        obj: &K,
        target: &Target,
        id: &str,
        actions: &[&'static str],
        policy: &PolicySpec,
        now: i64,
        why: String,
    ) -> u64 {
        let (times, wait) = {
            let mut map = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            let times = map.get(target).map_or(0, |r| r.times) + 1;
            let base = policy.reconcile.cooldown.secs().max(60);
            let wait = base
                .saturating_mul(1u64 << (times - 1).min(20))
                .min(plan::MAX_BACKOFF_SECS.max(base));
            map.insert(
                target.clone(),
                Refused {
                    times,
                    until: now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)),
                    why: why.clone(),
                },
            );
            self.metrics.backing_off.set(map.len() as i64);
            (times, wait)
        };
        for a in actions {
            self.metrics
                .refusals
                .get_or_create(&super::metrics::RefusalLabels { action: a })
                .inc();
        }
        tracing::warn!(workload = %id, refused = times, retry_in_secs = wait, error = %why, "remediation refused by the cluster; backing off");
        self.exec
            .event(
                obj,
                EventType::Warning,
                "RemediationRefused",
                actions.first().copied().unwrap_or("remediate"),
                format!(
                    "{} refused by the cluster ({times} in a row): {why}; oomguard tries again in {}",
                    actions.join(", "),
                    crate::verdict::human_secs(wait as f64)
                ),
            )
            .await;
        wait
    }

    /// The workload's history; None (logged, counted) when the source fails.
    pub async fn history_of(
        &self,
        t: &record::Target,
        policy: &PolicySpec,
    ) -> Result<Option<Arc<WorkloadHistory>>, String> {
        let query = t.history_query(policy.history.window.secs());
        self.history.fetch(&query).await.map_err(|e| {
            self.metrics.error("history");
            e.to_string()
        })
    }
}

/// One look at one workload: observe (the object, its records, history, HPA and pods), verify
/// the actions whose window is over, decide ([`plan::plan`]), act (writes and Events).
pub async fn reconcile<K: Scalable>(obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, ApplyError> {
    let idle = Action::requeue(ctx.interval);
    if obj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let t = target_of(obj.as_ref());
    let policy = ctx.policies.current().for_namespace(&t.namespace);
    if !*ctx.leader.borrow() {
        return Ok(idle);
    }
    let now = unix_now();
    if !policy.reconcile.enabled {
        // The reconciler does not act here, but the webhook answers applies here: the OOM kills
        // the pods reported are kept on the workload for it (not on an object someone else
        // controls, nor where the policy is off or the namespace reserved).
        let keeps = policy.mode != crate::policy::Mode::Off
            && !policy.reserved
            && obj.owner_references().is_empty();
        if keeps {
            // What the workload keeps already stays kept.
            ctx.exec.ledger().remember_kept(&t, obj.annotations());
            if let Some(again) = ctx.keep_kills::<K>(&t, now).await {
                return Ok(Action::requeue(again.min(ctx.interval)));
            }
        }
        return Ok(idle);
    }
    if let Some(r) = ctx.refused_now(&t, now) {
        tracing::debug!(workload = %format!("{}/{}", t.namespace, t.name), until = r.until, why = %r.why, "held back after refusals");
        return Ok(Action::requeue(Duration::from_secs(
            u64::try_from(r.until - now).unwrap_or(1).max(1),
        )));
    }
    let Some(mut seen) = observe(obj.as_ref(), t, &policy, &ctx).await? else {
        return Ok(idle);
    };
    match verify(obj.as_ref(), &mut seen, &ctx, now).await {
        // The write changed the object; the watch brings it back for planning.
        Ok(true) => return Ok(Action::requeue(Duration::from_secs(1))),
        Ok(false) => {}
        // The outcome could not be recorded (the object refuses oomguard's writes): back off
        // as for a refused action.
        Err(ApplyError::Kube { what, source }) => {
            let why = format!("{what}: {source}");
            let wait = ctx
                .refusal(
                    obj.as_ref(),
                    &seen.target,
                    &seen.id,
                    &["verify"],
                    &policy,
                    now,
                    why,
                )
                .await;
            return Ok(Action::requeue(Duration::from_secs(wait)));
        }
        Err(e) => return Err(e),
    }
    let recent = record::recent_actions(&seen.records);
    let p = plan::plan(
        &seen.state,
        seen.history
            .as_deref()
            .unwrap_or(&WorkloadHistory::default()),
        &policy,
        &recent,
        now,
    );
    act(obj.as_ref(), seen, &p, &policy, &ctx, now).await
}

/// What one round read about a workload.
struct Observation {
    target: Target,
    /// "Deployment ns/name", for logs.
    id: String,
    records: Vec<Remediation>,
    history: Option<Arc<WorkloadHistory>>,
    state: WorkloadState,
}

/// Reads what a round needs. None (logged, and an Event where the user must act) when acting
/// would be blind: records that do not read, no history, a template that does not read.
async fn observe<K: Scalable>(
    obj: &K,
    t: Target,
    policy: &PolicySpec,
    ctx: &Ctx,
) -> Result<Option<Observation>, ApplyError> {
    let id = format!("{} {}/{}", t.kind.as_str(), t.namespace, t.name);
    let records = match records_of(obj) {
        Ok(r) => r,
        Err(e) => {
            // Acting without knowing what was done could repeat an action: hold off.
            ctx.metrics.error("annotation");
            tracing::warn!(workload = %id, error = %e, "no action until the annotation is fixed or removed");
            ctx.exec
                .event(obj, EventType::Warning, "BadAnnotation", "Reconcile", format!("{e}; oomguard takes no action on this workload until it is fixed or removed"))
                .await;
            return Ok(None);
        }
    };
    // The kills the workload keeps (a new leader's memory) and those the pods reported since:
    // evidence now, whatever the history source has seen yet.
    let kills = ctx.exec.ledger().remember_kept(&t, obj.annotations());
    let history = match ctx.history_of(&t, policy).await {
        Ok(h) => h,
        Err(e) if kills.is_empty() => {
            tracing::warn!(workload = %id, error = %e, "no history; nothing done this round");
            return Ok(None);
        }
        Err(e) => {
            tracing::warn!(workload = %id, error = %e, "no history; deciding on the OOM kills the pods reported");
            None
        }
    };
    let history = if kills.is_empty() {
        history
    } else {
        history_kills::with_kills(
            history.as_deref(),
            &kills,
            unix_now(),
            policy.history.window.secs(),
        )
        .map(|mut h| {
            super::kills::with_raises(&mut h, &records);
            Arc::new(h)
        })
    };
    let hpa = hpa_for(t.kind, &t.name, &ctx.exec.hpas(&t.namespace).await?);
    let in_place = policy
        .reconcile
        .resize_method
        .in_place(ctx.in_place_supported);
    let state = match state_of(obj, hpa, in_place) {
        Ok(mut s) => {
            s.reverted = super::observe::reverts(obj, &records, &s.workload);
            s
        }
        Err(e) => {
            ctx.metrics.error("template");
            tracing::warn!(workload = %id, error = %e, "pod template not read; no action");
            return Ok(None);
        }
    };
    // After an in-place raise the template keeps the old limit until the next apply or rollout:
    // plan and verify with the limits the pods run with (a rollout since brings the template's
    // back, and the pods say so). Without such a raise the pods are the template's: not read.
    let state = if pods_may_differ(&records) {
        match ctx.exec.live_pods(obj, &t).await {
            Ok(pods) => with_live_limits(state, &live_limits(&pods)),
            Err(e) => {
                tracing::warn!(workload = %id, error = %e, "pods not read; planning with the template's limits raised by the recorded resizes");
                let mut state = state;
                record::raise_to_recorded(&mut state.workload, &records);
                state
            }
        }
    } else {
        state
    };
    Ok(Some(Observation {
        target: t,
        id,
        records,
        history,
        state,
    }))
}

/// Judges the actions whose verification window is over and writes the outcomes (with an Event
/// each). True when it wrote (the object changed: plan from the new version).
async fn verify<K: Scalable>(
    obj: &K,
    seen: &mut Observation,
    ctx: &Ctx,
    now: i64,
) -> Result<bool, ApplyError> {
    let due: Vec<usize> = seen
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.outcome == Outcome::Pending && r.verify_at <= now)
        .map(|(i, _)| i)
        .collect();
    if due.is_empty() {
        return Ok(false);
    }
    let observed = record::observe(seen.history.as_deref(), &seen.state.workload);
    let mut verdicts = Vec::new();
    for &i in &due {
        let r = &mut seen.records[i];
        let (outcome, why) = record::judge(r, &observed);
        r.outcome = outcome;
        r.verified_at = Some(now);
        r.detail = Some(why.clone());
        verdicts.push((r.id.clone(), r.action, outcome, why));
    }
    match ctx
        .exec
        .write_records::<K>(
            &seen.target,
            &seen.records,
            obj.resource_version().as_deref(),
        )
        .await
    {
        Ok(_) => {}
        // Changed meanwhile: the watch event brings the new version; verify from it.
        Err(ApplyError::Conflict(_)) => return Ok(true),
        Err(e) => return Err(e),
    }
    for (rid, action, outcome, why) in verdicts {
        ctx.metrics.outcome(action.as_str(), outcome.as_str());
        let (ty, reason) = match outcome {
            Outcome::Effective => (EventType::Normal, "RemediationEffective"),
            _ => (EventType::Warning, "RemediationIneffective"),
        };
        tracing::info!(workload = %seen.id, action = action.as_str(), id = %rid, outcome = outcome.as_str(), detail = %why, "remediation verified");
        ctx.exec
            .event(
                obj,
                ty,
                reason,
                action.as_str(),
                format!("{} {rid}: {why}", action.as_str()),
            )
            .await;
    }
    Ok(true)
}

/// Carries out a plan: Events for what it only reports, the actions through the executor (which
/// claims them in the records first), and when to look again.
async fn act<K: Scalable>(
    obj: &K,
    seen: Observation,
    p: &plan::ReconcilePlan,
    policy: &PolicySpec,
    ctx: &Ctx,
    now: i64,
) -> Result<Action, ApplyError> {
    let id = &seen.id;
    let dry = if p.report_only { "true" } else { "false" };
    for s in &p.steps {
        ctx.metrics
            .steps
            .get_or_create(&StepLabels {
                step: step_name(s),
                dry_run: dry,
            })
            .inc();
    }
    let mut requests = Vec::new();
    let mut next = ctx.interval;
    for s in &p.steps {
        match s {
            Plan::None { reason } => tracing::debug!(workload = %id, %reason, "nothing to do"),
            Plan::Cooldown { reason, .. } | Plan::RateLimited { reason, .. } => {
                tracing::info!(workload = %id, %reason, "held back")
            }
            Plan::OutOfBounds { reason, .. } => {
                tracing::warn!(workload = %id, %reason, "out of bounds");
                ctx.exec
                    .event(
                        obj,
                        EventType::Warning,
                        "OutOfBounds",
                        "Plan",
                        reason.clone(),
                    )
                    .await;
            }
            Plan::RecommendHpa { reason, .. } => {
                tracing::info!(workload = %id, %reason, "HPA recommendation");
                ctx.exec
                    .event(
                        obj,
                        EventType::Normal,
                        "HPARecommendation",
                        "Plan",
                        reason.clone(),
                    )
                    .await;
            }
            _ if p.report_only => {
                tracing::info!(workload = %id, step = step_name(s), reason = %s.reason(), "dry run: not applied");
                ctx.exec
                    .event(
                        obj,
                        EventType::Normal,
                        "DryRun",
                        "Plan",
                        format!("dry run, not applied: {}", s.reason()),
                    )
                    .await;
            }
            Plan::PlannedRestart {
                before_oom_at,
                reason,
                ..
            } if *before_oom_at - now > RESTART_LEAD_SECS => {
                let wait = u64::try_from(*before_oom_at - now - RESTART_LEAD_SECS).unwrap_or(0);
                next = next.min(Duration::from_secs(wait.max(1)));
                tracing::info!(workload = %id, %reason, in_secs = wait, "restart planned");
            }
            Plan::Blocked { reason, .. } => {
                tracing::warn!(workload = %id, %reason, "raise blocked");
                if ctx.first_telling(&seen.target, reason) {
                    ctx.exec
                        .event(
                            obj,
                            EventType::Warning,
                            "RaiseBlocked",
                            "Plan",
                            reason.clone(),
                        )
                        .await;
                }
            }
            step => {
                if let Some(mut r) = Request::from_step(step, &ctx.exec.reconciler_name()) {
                    if let Plan::RaiseLimit { container, .. } = step {
                        r.template_off = plan::template_blocked(&seen.state, container, 0)
                            .map(|p| p.reason().to_string());
                    }
                    requests.push(r);
                }
            }
        }
    }
    let mut records = seen.records;
    if !requests.is_empty() {
        let baseline = record::observe(seen.history.as_deref(), &seen.state.workload).into();
        let verify_after = i64::try_from(policy.reconcile.verify_window.secs()).unwrap_or(i64::MAX);
        let actions: Vec<&'static str> = requests.iter().map(|r| r.action.as_str()).collect();
        let done = match ctx
            .exec
            .execute(obj, records, requests, baseline, verify_after, now)
            .await
        {
            Ok(done) => {
                ctx.refusal_over(&seen.target);
                done
            }
            Err(ApplyError::Kube { what, source }) => {
                let why = format!("{what}: {source}");
                let wait = ctx
                    .refusal(obj, &seen.target, &seen.id, &actions, policy, now, why)
                    .await;
                return Ok(Action::requeue(Duration::from_secs(wait)));
            }
            Err(e) => return Err(e),
        };
        for r in done
            .iter()
            .filter(|r| r.at == now && r.outcome == Outcome::Failed)
        {
            ctx.metrics
                .outcome(r.action.as_str(), Outcome::Failed.as_str());
        }
        records = done;
    }
    // Kills the pods reported that no write of this round kept: kept on their own.
    if let Some(again) = ctx.keep_kills::<K>(&seen.target, now).await {
        next = next.min(again);
    }
    // Come back when the next verification is due, or at the interval.
    if let Some(due) = records
        .iter()
        .filter(|r| r.outcome == Outcome::Pending)
        .map(|r| r.verify_at)
        .min()
    {
        let wait = u64::try_from(due.saturating_sub(now)).unwrap_or(0).max(1);
        next = next.min(Duration::from_secs(wait));
    }
    Ok(Action::requeue(next))
}

pub fn error_policy<K: Scalable>(obj: Arc<K>, err: &ApplyError, ctx: Arc<Ctx>) -> Action {
    let conflict = matches!(err, ApplyError::Conflict(_));
    ctx.metrics
        .error(if conflict { "conflict" } else { "kubernetes" });
    if conflict {
        tracing::info!(workload = %obj.name_any(), error = %err, "changed meanwhile; planning again");
        Action::requeue(Duration::from_secs(1))
    } else {
        tracing::warn!(workload = %obj.name_any(), error = %err, "reconcile failed; retrying");
        Action::requeue(Duration::from_secs(10).min(ctx.interval))
    }
}

/// A stream that yields each time this reconciler becomes the leader.
fn on_leadership(rx: watch::Receiver<bool>) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                return Some(((), rx));
            }
        }
    })
}

fn run_controller<K: Scalable>(
    api: Api<K>,
    ctx: Arc<Ctx>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    kills: tokio::sync::mpsc::Receiver<ObjectRef<K>>,
) -> impl std::future::Future<Output = ()> {
    let on_kill =
        futures::stream::unfold(
            kills,
            |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
        );
    Controller::new(api, watcher::Config::default())
        .reconcile_all_on(on_leadership(ctx.leader.clone()))
        .reconcile_on(on_kill)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "controller");
            }
        })
}

/// Watches the pods (every namespace, or `--namespace`) for OOM kills: each new one goes into the
/// ledger (every replica keeps it, so that a new leader knows it) and, on the leader, asks the
/// controller to look at its workload at once. Only the ledger's few fields are kept of a pod.
async fn watch_kills(
    pods: Api<Pod>,
    ctx: Arc<Ctx>,
    deployments: tokio::sync::mpsc::Sender<ObjectRef<Deployment>>,
    statefulsets: tokio::sync::mpsc::Sender<ObjectRef<StatefulSet>>,
    stop: impl std::future::Future<Output = ()>,
) {
    use kube::runtime::WatchStreamExt;
    let events = watcher(pods, watcher::Config::default()).default_backoff();
    tokio::pin!(events);
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = &mut stop => break,
        };
        let pod = match event {
            None => break,
            Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => p,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                ctx.metrics.error("pod-watch");
                tracing::debug!(error = %e, "pod watch (it retries)");
                continue;
            }
        };
        let Some((t, fresh)) = ctx.exec.ledger().observe(&pod) else {
            continue;
        };
        ctx.metrics.kills_seen.inc_by(fresh.len() as u64);
        for k in &fresh {
            tracing::info!(workload = %format!("{}/{}", t.namespace, t.name), container = %k.container, pod = %k.pod, restarts = k.restarts, finished_at = k.at, limit = ?k.limit, "OOM kill");
        }
        let policy = ctx.policies.current().for_namespace(&t.namespace);
        let looked_at = policy.reconcile.enabled
            || (policy.mode != crate::policy::Mode::Off && !policy.reserved);
        if !*ctx.leader.borrow() || !looked_at {
            continue;
        }
        let sent = match t.kind {
            ScalableKind::Deployment => deployments
                .try_send(ObjectRef::new(&t.name).within(&t.namespace))
                .is_ok(),
            ScalableKind::StatefulSet => statefulsets
                .try_send(ObjectRef::new(&t.name).within(&t.namespace))
                .is_ok(),
        };
        if !sent {
            tracing::debug!(workload = %t.name, "kill trigger dropped (queue full): the interval looks again");
        }
    }
}

/// Whether the apiserver is at least 1.33 (in-place pod resize on by default).
async fn resize_supported(client: &Client) -> bool {
    match client.apiserver_version().await {
        Ok(v) => {
            let num = |s: &str| {
                s.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse::<u32>()
                    .ok()
            };
            matches!((num(&v.major), num(&v.minor)), (Some(1), Some(m)) if m >= 33)
                || num(&v.major).is_some_and(|m| m > 1)
        }
        Err(e) => {
            tracing::warn!(error = %e, "apiserver version unknown; raising limits by template patch");
            false
        }
    }
}

/// Runs until SIGTERM/SIGINT.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let policies = opts.policies.clone();

    let client = Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach Kubernetes ({e}); run in a pod with a service account, or set KUBECONFIG"
        )
    })?;
    let in_place_supported = resize_supported(&client).await;
    let metrics = Arc::new(ReconcileMetrics::new());

    let lease_secs = opts.lease.duration.as_secs().max(2);
    let lease = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &opts.lease.name)
        .with_namespace(&opts.lease.namespace)
        .with_identity(&opts.lease.identity)
        .with_duration(lease_secs)
        .with_grace((lease_secs / 3).max(1))
        .build()
        .await
        .map_err(|e| anyhow::anyhow!("lease {}/{}: {e}", opts.lease.namespace, opts.lease.name))?;
    let (held, lease_task) = lease.watch().await;
    // Acting only while the Lease confirms it (the manager's flag outlives a lost Lease).
    let leader = super::leader::guard(
        held,
        Api::namespaced(client.clone(), &opts.lease.namespace),
        opts.lease.name.clone(),
        opts.lease.identity.clone(),
        Duration::from_secs(lease_secs),
    );
    let shutdown = Shutdown::on_signal();
    let (m, mut lrx, ident, stopped) = (
        metrics.clone(),
        leader.clone(),
        opts.lease.identity.clone(),
        shutdown.stopped(),
    );
    tokio::spawn(async move {
        tokio::pin!(stopped);
        loop {
            let is = *lrx.borrow_and_update();
            m.leader.set(i64::from(is));
            if is {
                tracing::info!(identity = %ident, "leader: acting");
            } else {
                tracing::info!(identity = %ident, "not the leader: watching only");
            }
            tokio::select! {
                changed = lrx.changed() => if changed.is_err() { break },
                _ = &mut stopped => break,
            }
        }
    });

    let ctx = Arc::new(Ctx {
        kept_at: Default::default(),
        told: Default::default(),
        refused: Default::default(),
        exec: Executor::new(client.clone(), opts.lease.identity.clone()),
        policies,
        history: opts.history,
        interval: opts.interval,
        leader,
        in_place_supported,
        metrics: metrics.clone(),
    });

    // Ready from the start: a standby replica (not the leader) is as ready as the leader.
    let readiness = Readiness::new(true);
    readiness.set_serving(true);
    let m = metrics.clone();
    let admin = serving::admin_listener(
        opts.admin_listen,
        serving::admin_router(readiness.clone(), move || m.encode()),
        shutdown.stopped(),
    )?;
    tracing::info!(in_place_resize = in_place_supported, "reconciler started");
    let api = match opts.beside {
        Some(serve) => {
            let remediator = Arc::new(KubeRemediator {
                exec: ctx.exec.clone(),
                records: AnnotationRecords::new(client.clone()),
                policies: ctx.policies.clone(),
                history: ctx.history.clone(),
                in_place_supported,
            });
            futures::future::Either::Left(serve(remediator, client.clone(), shutdown.clone()))
        }
        None => futures::future::Either::Right(async { Ok(()) }),
    };
    let (deploy, sts, pods): (Api<Deployment>, Api<StatefulSet>, Api<Pod>) = match &opts.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    // An OOM kill is looked at the moment the kubelet reports it, not a scrape later.
    let (deploy_tx, deploy_rx) = tokio::sync::mpsc::channel::<ObjectRef<Deployment>>(1024);
    let (sts_tx, sts_rx) = tokio::sync::mpsc::channel::<ObjectRef<StatefulSet>>(1024);
    let kills = tokio::spawn(watch_kills(
        pods,
        ctx.clone(),
        deploy_tx,
        sts_tx,
        shutdown.stopped(),
    ));
    let (_, _, admin_res, api_res) = tokio::join!(
        run_controller(deploy, ctx.clone(), shutdown.stopped(), deploy_rx),
        run_controller(sts, ctx.clone(), shutdown.stopped(), sts_rx),
        admin,
        api
    );
    kills.abort();
    readiness.set_serving(false);
    // Dropping the last receivers ends the guard, whose end drops the lease manager's receiver:
    // the lease task releases the Lease for a fast handover.
    drop(ctx);
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "lease not released"),
        Err(_) => tracing::warn!("lease release timed out"),
        _ => tracing::info!("lease released"),
    }
    admin_res.map_err(|e| anyhow::anyhow!("admin listener: {e}"))?;
    api_res?;
    Ok(())
}
