//! What the reconciler would do about one workload now: a pure function of the workload's state,
//! its history, the policy, the actions already taken and `now`.
//!
//! The workload is decided by [`verdict::decide`] — the very decision admission, `check`,
//! `recommend` and the API make, on the same [`Workload`] (every container, its memory settings:
//! a raise is never below what `-Xmx` and the like need) — and the plan reads limit, severity,
//! scope and "killed at the current limit" from its answer. Per container:
//! - load pressure (steady or load-following, latest peak / limit above the target utilization):
//!   replicas = ceil(replicas × utilization / target), clamped to [minReplicas, maxReplicas];
//!   with an HPA on the workload only a recommendation for its max;
//! - a container OOM-killed at its current limit (or running below its peak), whatever its
//!   pattern, and growth that replicas do not fix (leak, level shift, spiky) when the verdict
//!   finds it critical: raise the limit to the verdict's recommendation, in place when the
//!   cluster can (less headroom than the policy asks waits for the next deploy);
//! - a leak that no limit up to the policy max carries through the horizon: a planned restart
//!   before the forecast OOM (when `restartBeforeOom`), else out of bounds, no action.
//!
//! Then safety: out of scope ([`scope::reconciled`]: excluded, controlled, mode off, reconciler
//! disabled) → none; cooldown after the last action (a raise answering
//! an OOM kill that came after it is not held: the action did not work); at most
//! `maxActionsPerHour` actions in the last hour; `dryRun` marks the whole plan report-only.

use serde::{Deserialize, Serialize};

use crate::forecast::Pattern;
use crate::history::WorkloadHistory;
use crate::policy::PolicySpec;
use crate::quantity::Bytes;
use crate::verdict::{
    self, human_secs, mib_per_min, scope, ContainerVerdict, HistoryStatus, Severity,
};
use crate::workload::{ContainerRole, Workload};

/// The workload kinds the reconciler scales and resizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScalableKind {
    Deployment,
    StatefulSet,
}

impl ScalableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScalableKind::Deployment => "Deployment",
            ScalableKind::StatefulSet => "StatefulSet",
        }
    }
}

/// An HPA that targets the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HpaInfo {
    pub min: u32,
    pub max: u32,
}

/// How a template change reaches the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rollout {
    /// A rolling update (or Recreate): new pods come from the new template.
    #[default]
    Automatic,
    /// A StatefulSet with `updateStrategy: OnDelete`: only pods deleted by hand are replaced.
    OnDelete,
    /// A Deployment whose rollout is paused.
    Paused,
}

/// A raise oomguard made to a container's template limit that another field manager (a GitOps
/// controller re-applying its manifest) has set back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revert {
    /// What oomguard had raised it to, bytes.
    pub raised_to: u64,
    /// Who owns the field now (managedFields), when known.
    pub by: Option<String>,
}

/// What the reconciler read from the cluster about one workload.
#[derive(Debug, Clone)]
pub struct WorkloadState {
    pub kind: ScalableKind,
    /// The pod template as every face decides on it, each container's limit the one its pods
    /// run with (an in-place raise changes the pods, not the template).
    pub workload: Workload,
    pub replicas: u32,
    pub hpa: Option<HpaInfo>,
    /// The cluster resizes pods in place (Kubernetes 1.33 and later).
    pub in_place_resize: bool,
    /// From the rollout strategy: how many pods may be down at once.
    pub max_unavailable: u32,
    /// Whether a template change reaches the pods by itself.
    pub rollout: Rollout,
    /// Containers whose template raise was set back by another field manager.
    pub reverted: std::collections::BTreeMap<String, Revert>,
}

/// Kinds of action the reconciler takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    ScaleOut,
    RaiseLimit,
    Restart,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::ScaleOut => "scale-out",
            ActionKind::RaiseLimit => "raise-limit",
            ActionKind::Restart => "restart",
        }
    }

    /// Which goes first when the hourly budget cannot take them all: the most urgent.
    fn urgency(self) -> u8 {
        match self {
            ActionKind::Restart => 0,
            ActionKind::RaiseLimit => 1,
            ActionKind::ScaleOut => 2,
        }
    }
}

/// An action taken (or attempted) earlier, unix seconds, as recorded in the workload's
/// annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastAction {
    pub at: i64,
    pub kind: ActionKind,
    /// Where it stands: pending, judged, or failed (refused by the cluster).
    pub outcome: super::record::Outcome,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentActions {
    /// Oldest first.
    pub actions: Vec<PastAction>,
}

impl RecentActions {
    /// Attempts that failed in a row, up to the latest: each doubles the cooldown after it.
    pub fn failures_in_a_row(&self) -> u32 {
        let n = self
            .actions
            .iter()
            .rev()
            .take_while(|a| a.outcome == super::record::Outcome::Failed)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The last scale-out, if any.
    fn last_scale_out(&self) -> Option<&PastAction> {
        self.actions
            .iter()
            .rev()
            .find(|a| a.kind == ActionKind::ScaleOut && a.outcome != super::record::Outcome::Failed)
    }
}

/// The longest a backoff after refused attempts grows to.
pub const MAX_BACKOFF_SECS: u64 = 6 * 3600;

/// How a limit gets raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMethod {
    /// Resize the running pods (no restart).
    InPlaceResize,
    /// Patch the pod template (a rollout).
    TemplatePatch,
}

/// What an out-of-bounds plan would have exceeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "bound")]
pub enum Bound {
    /// `reconcile.maxReplicas`.
    Replicas,
    /// `limits.max`, for this container.
    Limit { container: String },
}

/// One step of a plan. Every variant carries a one-line reason with the numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Plan {
    None {
        reason: String,
    },
    ScaleOut {
        from: u32,
        to: u32,
        reason: String,
    },
    /// An HPA owns the replica count: recommend a higher max instead of scaling.
    RecommendHpa {
        current_max: u32,
        recommended_max: u32,
        reason: String,
    },
    RaiseLimit {
        container: String,
        from: u64,
        to: u64,
        method: ResizeMethod,
        reason: String,
    },
    /// Restart the pods before `before_oom_at` (unix seconds), `max_unavailable` at a time.
    PlannedRestart {
        container: String,
        before_oom_at: i64,
        max_unavailable: u32,
        batches: u32,
        reason: String,
    },
    /// The fix would exceed the policy's bounds: no action.
    OutOfBounds {
        what: Bound,
        wanted: u64,
        max: u64,
        reason: String,
    },
    /// Actions held back until `until` (unix seconds).
    Cooldown {
        until: i64,
        reason: String,
    },
    /// Actions held back by the hourly budget; `until` is when a slot frees (None: the budget
    /// is zero).
    RateLimited {
        until: Option<i64>,
        reason: String,
    },
    /// A raise that would not take effect, or that would fight another controller: none is
    /// made, and the reason (an Event) says what would.
    Blocked {
        container: String,
        reason: String,
    },
}

impl Plan {
    pub fn reason(&self) -> &str {
        match self {
            Plan::None { reason }
            | Plan::ScaleOut { reason, .. }
            | Plan::RecommendHpa { reason, .. }
            | Plan::RaiseLimit { reason, .. }
            | Plan::PlannedRestart { reason, .. }
            | Plan::OutOfBounds { reason, .. }
            | Plan::Cooldown { reason, .. }
            | Plan::RateLimited { reason, .. }
            | Plan::Blocked { reason, .. } => reason,
        }
    }

    /// The action this step takes on the cluster, if any.
    pub fn action(&self) -> Option<ActionKind> {
        match self {
            Plan::ScaleOut { .. } => Some(ActionKind::ScaleOut),
            Plan::RaiseLimit { .. } => Some(ActionKind::RaiseLimit),
            Plan::PlannedRestart { .. } => Some(ActionKind::Restart),
            _ => None,
        }
    }
}

/// The plan for one workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcilePlan {
    /// `dryRun`: report the steps, apply none.
    pub report_only: bool,
    /// Never empty: at least one `None` with the reason nothing is done.
    pub steps: Vec<Plan>,
}

impl ReconcilePlan {
    /// The steps that act on the cluster (unless report-only).
    pub fn actions(&self) -> impl Iterator<Item = &Plan> {
        self.steps.iter().filter(|p| p.action().is_some())
    }
}

/// What one container asks for.
enum Need {
    /// Nothing; why.
    Quiet(String),
    Step(Plan),
    /// Load pressure: this many replicas; `detail` says which container at what utilization.
    Replicas {
        wanted: u32,
        detail: String,
    },
}

/// Plans one workload. Pure: `now` is unix seconds.
pub fn plan(
    w: &WorkloadState,
    history: &WorkloadHistory,
    policy: &PolicySpec,
    recent: &RecentActions,
    now: i64,
) -> ReconcilePlan {
    let report_only = policy.reconcile.dry_run;
    let id = format!(
        "{} {}/{}",
        w.kind.as_str(),
        w.workload.namespace,
        w.workload.name
    );
    let none = |reason: String| ReconcilePlan {
        report_only,
        steps: vec![Plan::None { reason }],
    };
    if let Err(why) = scope::reconciled(&w.workload, policy) {
        return none(format!("{id}: {why}; no action"));
    }
    if w.replicas == 0 {
        return none(format!("{id}: scaled to 0 replicas; no action"));
    }
    let verdict = verdict::decide(&w.workload, HistoryStatus::Found(history), policy, now);

    let mut steps = Vec::new();
    let mut quiet = Vec::new();
    let mut load: Option<(u32, String)> = None;
    for v in &verdict.containers {
        match assess(w, v, history, policy, now) {
            Need::Quiet(r) => quiet.push(r),
            Need::Step(p) => steps.push(p),
            Need::Replicas { wanted, detail } => {
                if load.as_ref().is_none_or(|(n, _)| wanted > *n) {
                    load = Some((wanted, detail));
                }
            }
        }
    }
    if let Some((wanted, detail)) = load {
        match scale(w, policy, wanted, &detail, recent) {
            Ok(p) => steps.push(p),
            Err(r) => quiet.push(r),
        }
    }
    keep_earliest_restart(&mut steps);
    if steps.is_empty() {
        let why = if quiet.is_empty() {
            "no container to reconcile".to_string()
        } else {
            quiet.join("; ")
        };
        return none(format!("{id}: no action: {why}"));
    }
    // A raise answering an OOM kill at the limit in force that came after the last action: that
    // action (if any) did not work, and waiting out its cooldown only adds kills.
    let last_action = recent.actions.iter().map(|a| a.at).max();
    let answers_kill = |p: &Plan| match p {
        Plan::RaiseLimit { container, .. } => verdict
            .containers
            .iter()
            .find(|v| &v.container == container)
            .is_some_and(|v| v.killed_at_limit && v.last_oom_at > last_action),
        _ => false,
    };
    ReconcilePlan {
        report_only,
        steps: safety(steps, &answers_kill, recent, policy, now),
    }
}

/// What one container's verdict asks of the reconciler.
fn assess(
    w: &WorkloadState,
    v: &ContainerVerdict,
    history: &WorkloadHistory,
    policy: &PolicySpec,
    now: i64,
) -> Need {
    let name = &v.container;
    if v.role == ContainerRole::Init {
        return Need::Quiet(format!(
            "container {name}: an init container (admission's call)"
        ));
    }
    let Some(limit) = v.limit else {
        return Need::Quiet(format!(
            "container {name}: no memory limit (admission's call)"
        ));
    };
    let Some(h) = history.containers.get(name) else {
        return Need::Quiet(format!("container {name}: no memory history"));
    };
    let Some(rec) = v.recommended.filter(|_| v.severity != Severity::Unknown) else {
        let why = match v.severity {
            Severity::Unknown => verdict::too_little_history(h.covered_secs, policy),
            _ => v.reasons.first().cloned().unwrap_or("not checked".into()),
        };
        return Need::Quiet(format!("container {name}: {why}"));
    };
    let pattern = v.pattern.unwrap_or(Pattern::Unknown);
    let ls = Bytes(limit as f64);
    // Killed at this very limit (or running below its peak): the limit is proven too small
    // whatever the pattern; more replicas do not undo a kill.
    if v.severity >= Severity::Critical && (v.killed_at_limit || v.below_peak) {
        return raise(w, v, limit, rec, pattern, policy, now);
    }
    match pattern {
        // Too little of each lifetime to fit (e.g. an OOM loop that restarts every minute or two),
        // but the verdict saw the limit hit: raise it.
        Pattern::Unknown if v.severity >= Severity::Critical => {
            raise(w, v, limit, rec, pattern, policy, now)
        }
        Pattern::Unknown => Need::Quiet(format!("container {name}: pattern unknown")),
        // Steady memory does not follow load: more replicas would each hold as much (a
        // scale-out there ratcheted to maxReplicas, one step per cooldown).
        Pattern::Steady => Need::Quiet(format!(
            "container {name}: steady at {} of its {ls} limit; replicas would not lower it",
            v.current.map_or_else(
                || "?".to_string(),
                |c| format!("{}%", pct(c / limit as f64))
            )
        )),
        Pattern::LoadFollowing => {
            let Some(current) = v.current else {
                return Need::Quiet(format!("container {name}: no recent sample"));
            };
            let u = current / limit as f64;
            let target = policy.reconcile.target_utilization.0;
            let detail = format!(
                "container {name} at {}% of its {ls} limit ({}, {})",
                pct(u),
                Bytes(current),
                pattern.as_str()
            );
            if limit == 0 || target <= 0.0 || u <= target {
                return Need::Quiet(format!("{detail}, within the {}% target", pct(target)));
            }
            let wanted = (f64::from(w.replicas) * u / target).ceil();
            let wanted = if wanted >= f64::from(u32::MAX) {
                u32::MAX
            } else {
                wanted as u32
            };
            Need::Replicas { wanted, detail }
        }
        Pattern::Spiky if v.severity < Severity::Critical => Need::Quiet(format!(
            "container {name}: spiky, {} peak {} within its {ls} limit",
            policy.history.window,
            Bytes(h.peaks.max)
        )),
        // Less headroom than the policy asks is admission's and `recommend`'s to fix at the
        // next deploy; the reconciler acts on what will OOM (critical).
        Pattern::Leak | Pattern::LevelShift if v.severity < Severity::Critical => {
            Need::Quiet(format!(
                "container {name}: {}, its {ls} limit lasts {}",
                pattern.as_str(),
                policy.forecast.horizon
            ))
        }
        Pattern::Spiky | Pattern::Leak | Pattern::LevelShift => {
            raise(w, v, limit, rec, pattern, policy, now)
        }
    }
}

/// A raise to the verdict's recommendation (never below what the container's own settings need),
/// a planned restart for a leak no allowed limit carries, or out of bounds.
fn raise(
    w: &WorkloadState,
    v: &ContainerVerdict,
    limit: u64,
    rec: u64,
    pattern: Pattern,
    policy: &PolicySpec,
    now: i64,
) -> Need {
    let name = &v.container;
    let max = policy.limits.max.0;
    let wanted = v.wanted.unwrap_or(rec).max(rec);
    let ls = Bytes(limit as f64);
    let first = v
        .reasons
        .first()
        .cloned()
        .unwrap_or_else(|| format!("container {name}: {}", pattern.as_str()));
    if rec > limit && rec <= max {
        let method = if w.in_place_resize {
            ResizeMethod::InPlaceResize
        } else {
            ResizeMethod::TemplatePatch
        };
        if method == ResizeMethod::TemplatePatch {
            if let Some(blocked) = template_blocked(w, name, rec) {
                return Need::Step(blocked);
            }
        }
        let how = match method {
            ResizeMethod::InPlaceResize => "in place",
            ResizeMethod::TemplatePatch => "by a template patch (a rollout)",
        };
        let capped = if wanted > rec {
            format!(
                " (capped at the policy max {}; needs {})",
                Bytes(max as f64),
                Bytes(wanted as f64)
            )
        } else {
            String::new()
        };
        return Need::Step(Plan::RaiseLimit {
            container: name.clone(),
            from: limit,
            to: rec,
            method,
            reason: format!("{first}: raise {ls} → {} {how}{capped}", Bytes(rec as f64)),
        });
    }
    if wanted <= limit && rec <= max {
        return Need::Quiet(first);
    }
    // No limit within the policy fixes it.
    let fc = v.forecast.as_ref();
    let ttl = fc.and_then(|f| f.time_to_limit);
    if let (Pattern::Leak, true, Some(fc), Some(ttl)) =
        (pattern, policy.reconcile.restart_before_oom, fc, ttl)
    {
        if ttl <= policy.forecast.horizon.secs() as f64 {
            let earliest = fc.time_to_limit_low.unwrap_or(ttl).min(ttl).max(0.0);
            let at = now.saturating_add(earliest.floor() as i64);
            let k = w.max_unavailable.max(1);
            let batches = w.replicas.div_ceil(k);
            return Need::Step(Plan::PlannedRestart {
                container: name.clone(),
                before_oom_at: at,
                max_unavailable: w.max_unavailable,
                batches,
                reason: format!(
                    "container {name}: leaks +{} MiB/min, hits its {ls} limit in about {} and needs {} (policy max {}); restart {} pods {} at a time ({} batches, maxUnavailable {}) within {}",
                    mib_per_min(fc.slope),
                    human_secs(ttl),
                    Bytes(wanted as f64),
                    Bytes(max as f64),
                    w.replicas,
                    k,
                    batches,
                    w.max_unavailable,
                    human_secs(earliest)
                ),
            });
        }
    }
    Need::Step(Plan::OutOfBounds {
        what: Bound::Limit {
            container: name.clone(),
        },
        wanted,
        max,
        reason: format!(
            "container {name}: {} needs a limit of {}, above the policy max {} (limit {ls}); no action",
            pattern.as_str(),
            Bytes(wanted as f64),
            Bytes(max as f64)
        ),
    })
}

/// Why a template raise of `container` to `to` would not help: another field manager set the
/// last one back (it would be reverted again, a rollout every cooldown), or the pods are not
/// replaced from the template by themselves.
pub fn template_blocked(w: &WorkloadState, container: &str, to: u64) -> Option<Plan> {
    let reason = if let Some(r) = w.reverted.get(container) {
        format!(
            "container {container}: the raise to {} was set back by {}; oomguard does not fight it: commit resources.limits.memory: {} for {container} to the source it comes from",
            Bytes(r.raised_to as f64),
            r.by.as_deref().unwrap_or("another field manager"),
            crate::quantity::to_quantity(to.max(r.raised_to))
        )
    } else {
        match w.rollout {
            Rollout::Automatic => return None,
            Rollout::OnDelete => format!(
                "container {container}: a template raise to {} would not reach the pods (updateStrategy OnDelete) and in-place resize is off: raise it and delete the pods, or allow in-place resize",
                Bytes(to as f64)
            ),
            Rollout::Paused => format!(
                "container {container}: a template raise to {} would not reach the pods (the rollout is paused) and in-place resize is off: resume it after raising",
                Bytes(to as f64)
            ),
        }
    };
    Some(Plan::Blocked {
        container: container.to_string(),
        reason,
    })
}

/// The replica step for load pressure: scale, recommend to the HPA, or out of bounds.
fn scale(
    w: &WorkloadState,
    policy: &PolicySpec,
    wanted: u32,
    detail: &str,
    recent: &RecentActions,
) -> Result<Plan, String> {
    let r = &policy.reconcile;
    let over = format!("{detail} over the {}% target", pct(r.target_utilization.0));
    let out_of_bounds = |at: u32| Plan::OutOfBounds {
        what: Bound::Replicas,
        wanted: u64::from(wanted),
        max: u64::from(r.max_replicas),
        reason: format!(
            "{over} wants {wanted} replicas, above maxReplicas {} (at {at}); no action",
            r.max_replicas
        ),
    };
    if let Some(hpa) = w.hpa {
        if wanted <= hpa.max {
            return Err(format!(
                "{over} wants {wanted} replicas, within the max {} of the HPA that owns the count",
                hpa.max
            ));
        }
        let to = wanted.min(r.max_replicas);
        if to <= hpa.max {
            return Ok(out_of_bounds(hpa.max));
        }
        let capped = capped_note(wanted, to, r.max_replicas);
        return Ok(Plan::RecommendHpa {
            current_max: hpa.max,
            recommended_max: to,
            reason: format!(
                "{over} wants {wanted} replicas; an HPA owns the count: raise its maxReplicas {} → {to}{capped}",
                hpa.max
            ),
        });
    }
    // One scale-out at a time, judged before the next; one that did not lower the per-pod
    // memory says this workload's memory does not follow its replicas: no more of them.
    match recent.last_scale_out().map(|a| a.outcome) {
        Some(super::record::Outcome::Pending) => {
            return Err(format!(
                "{over}; the last scale-out is not verified yet (verifyWindow {})",
                r.verify_window
            ))
        }
        Some(super::record::Outcome::Ineffective) => {
            return Err(format!(
                "{over}; the last scale-out did not lower its memory per pod: more replicas \
                 would not either"
            ))
        }
        _ => {}
    }
    let to = wanted.clamp(r.min_replicas, r.max_replicas.max(r.min_replicas));
    if to <= w.replicas {
        return if wanted > r.max_replicas {
            Ok(out_of_bounds(w.replicas))
        } else {
            Err(format!(
                "{over} wants {wanted} replicas, has {}",
                w.replicas
            ))
        };
    }
    let capped = capped_note(wanted, to, r.max_replicas);
    Ok(Plan::ScaleOut {
        from: w.replicas,
        to,
        reason: format!("scale out {} → {to} replicas: {over}{capped}", w.replicas),
    })
}

/// One restart restarts every container: keep the earliest.
fn keep_earliest_restart(steps: &mut Vec<Plan>) {
    let earliest = steps
        .iter()
        .filter_map(|p| match p {
            Plan::PlannedRestart { before_oom_at, .. } => Some(*before_oom_at),
            _ => None,
        })
        .min();
    let mut kept = false;
    steps.retain(|p| match p {
        Plan::PlannedRestart { before_oom_at, .. } => {
            let keep = !kept && Some(*before_oom_at) == earliest;
            kept |= keep;
            keep
        }
        _ => true,
    });
}

/// Cooldown and the hourly budget: held-back actions become one `Cooldown` or `RateLimited`
/// step; the other steps stay.
fn safety(
    steps: Vec<Plan>,
    answers_kill: &dyn Fn(&Plan) -> bool,
    recent: &RecentActions,
    policy: &PolicySpec,
    now: i64,
) -> Vec<Plan> {
    let planned = steps.iter().filter(|p| p.action().is_some()).count();
    if planned == 0 {
        return steps;
    }
    // The cooldown holds every action except raises answering a kill (see `plan`).
    let held: Vec<&str> = steps
        .iter()
        .filter(|p| !answers_kill(p))
        .filter_map(|p| p.action().map(ActionKind::as_str))
        .collect();
    let mut steps = steps;
    if !held.is_empty() {
        if let Some(cool) = cooldown(recent, policy, now, &held) {
            steps.retain(|p| p.action().is_none() || answers_kill(p));
            steps.push(cool);
        }
    }
    let planned = steps.iter().filter(|p| p.action().is_some()).count();
    if planned == 0 {
        return steps;
    }
    let in_hour = actions_in_hour(recent, now);
    let budget = usize::try_from(policy.reconcile.max_actions_per_hour)
        .unwrap_or(usize::MAX)
        .saturating_sub(in_hour.len());
    if planned <= budget {
        return steps;
    }
    // The most urgent actions take the budget.
    let mut order: Vec<(u8, usize)> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.action().map(|k| (k.urgency(), i)))
        .collect();
    order.sort_unstable();
    let allowed: Vec<usize> = order.iter().take(budget).map(|&(_, i)| i).collect();
    let mut held = Vec::new();
    let mut out = Vec::new();
    for (i, p) in steps.into_iter().enumerate() {
        match p.action() {
            Some(k) if !allowed.contains(&i) => held.push(k.as_str()),
            _ => out.push(p),
        }
    }
    out.push(rate_limited(&in_hour, policy, now, &held));
    out
}

/// Whether one more action of `kind` would be held back now (for actions asked for from
/// outside the plan, e.g. through the API): the `Cooldown` or `RateLimited` step, or None.
pub(crate) fn held_back(
    kind: ActionKind,
    recent: &RecentActions,
    policy: &PolicySpec,
    now: i64,
) -> Option<Plan> {
    let held = [kind.as_str()];
    if let Some(cool) = cooldown(recent, policy, now, &held) {
        return Some(cool);
    }
    let in_hour = actions_in_hour(recent, now);
    let max = usize::try_from(policy.reconcile.max_actions_per_hour).unwrap_or(usize::MAX);
    (in_hour.len() >= max).then(|| rate_limited(&in_hour, policy, now, &held))
}

/// The cooldown after the last action (or attempt): `reconcile.cooldown`, doubled for each
/// attempt in a row the cluster refused, up to [`MAX_BACKOFF_SECS`] (at least the cooldown).
pub fn backoff_secs(recent: &RecentActions, policy: &PolicySpec) -> u64 {
    let base = policy.reconcile.cooldown.secs();
    match recent.failures_in_a_row() {
        0 => base,
        n => base
            .saturating_mul(1u64 << (n - 1).min(20))
            .min(MAX_BACKOFF_SECS.max(base)),
    }
}

/// The `Cooldown` step while the last action's cooldown (or backoff) runs.
fn cooldown(recent: &RecentActions, policy: &PolicySpec, now: i64, held: &[&str]) -> Option<Plan> {
    let r = &policy.reconcile;
    let secs = backoff_secs(recent, policy);
    let wait = i64::try_from(secs).unwrap_or(i64::MAX);
    let last = recent.actions.iter().max_by_key(|a| a.at)?;
    let until = last.at.saturating_add(wait);
    let failed = recent.failures_in_a_row();
    let what = if failed > 0 {
        format!(
            "backoff {} after {failed} refused attempt{} in a row (cooldown {} doubled)",
            crate::policy::Duration(secs),
            if failed == 1 { "" } else { "s" },
            r.cooldown
        )
    } else {
        format!("cooldown {}", r.cooldown)
    };
    (now < until).then(|| Plan::Cooldown {
        until,
        reason: format!(
            "{what}: last action {} {} ago; holding {} for {}",
            last.kind.as_str(),
            human_secs((now - last.at).max(0) as f64),
            held.join(", "),
            human_secs((until - now) as f64)
        ),
    })
}

/// Times of the actions in the hour up to `now`, oldest first.
fn actions_in_hour(recent: &RecentActions, now: i64) -> Vec<i64> {
    let mut in_hour: Vec<i64> = recent
        .actions
        .iter()
        .map(|a| a.at)
        .filter(|&t| t > now - 3600)
        .collect();
    in_hour.sort_unstable();
    in_hour
}

/// The `RateLimited` step for the `held` actions, given the hour's actions.
fn rate_limited(in_hour: &[i64], policy: &PolicySpec, now: i64, held: &[&str]) -> Plan {
    let until = in_hour.first().map(|t| t + 3600);
    let next = match until {
        Some(t) => format!("next slot in {}", human_secs((t - now).max(0) as f64)),
        None => "no actions allowed".to_string(),
    };
    Plan::RateLimited {
        until,
        reason: format!(
            "rate limit: {} actions in the last hour (max {}/h); holding {}; {next}",
            in_hour.len(),
            policy.reconcile.max_actions_per_hour,
            held.join(", ")
        ),
    }
}

fn pct(fraction: f64) -> String {
    format!("{}", (fraction * 100.0).round())
}

#[cfg(test)]
mod tests;

/// " (wanted 12, capped at maxReplicas 10)" when the policy bound cut the replica count.
fn capped_note(wanted: u32, to: u32, max_replicas: u32) -> String {
    if to < wanted {
        format!(" (wanted {wanted}, capped at maxReplicas {max_replicas})")
    } else {
        String::new()
    }
}
