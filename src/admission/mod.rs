//! From an AdmissionReview (or a manifest offline) to an answer: one path for the webhook and
//! `oomguard check`.

pub mod patch;
pub mod review;
mod scan;
mod wire;

/// Hooks for the fuzz targets in fuzz/ (built with `--cfg fuzzing`): not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// The one-pass scanner against serde_json on one text; panics on a difference.
    pub fn scanner_agrees_with_serde(text: &str) -> bool {
        super::scan::differential(text)
    }
}

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::history::{HistoryQuery, HistorySource, WorkloadHistory};
use crate::policy::store::PolicySet;
use crate::policy::Mode;
use crate::verdict::{self, HistoryStatus, Verdict};
use crate::workload::{ContainerRole, Workload, WorkloadKind};
use review::Answer;

/// Which webhook path is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Raises limits (mutate mode) and adds missing ones (`missingLimit: add`).
    Mutate,
    /// Warns (warn, and what mutate could not fix) and denies (enforce).
    Validate,
    /// Both in one call (`/admit`, registered as the one mutating webhook): the mutating answer,
    /// then the validating answer on the object as patched, as the two webhooks give them in
    /// turn. Half the apiserver's calls out; what it gives up: a webhook that changes the object
    /// after oomguard's re-invocation is not seen (docs/webhook.md, "One call or two").
    Admit,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
            Endpoint::Admit => "admit",
        }
    }
}

/// How a review ended, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not a kind oomguard acts on, a controlled object, a subresource, a delete, mode off.
    Skipped,
    Allowed,
    Warned,
    Mutated,
    Denied,
    /// History could not be had: allowed with a warning.
    Unchecked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Skipped => "skipped",
            Outcome::Allowed => "allowed",
            Outcome::Warned => "warned",
            Outcome::Mutated => "mutated",
            Outcome::Denied => "denied",
            Outcome::Unchecked => "unchecked",
        }
    }
}

/// What an admission may do to an object: the one table behind the webhook, `check` and the
/// docs/webhook.md ("What each operation may do").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Decided as a new object: warnings, a patch in mutate mode, a denial in enforce mode.
    Full,
    /// Warnings at most: never patched (a patch would start a rollout nobody asked for), never
    /// denied (labels, replicas, images, `rollout restart` must always go through).
    WarnOnly,
    /// Allowed untouched, without a word.
    Untouched,
}

/// Why an admission has the scope it has (a row of the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeRule {
    Create,
    /// `deletionTimestamp` set: the garbage collector removes finalizers with UPDATEs, and a
    /// denial would hang the deletion forever.
    BeingDeleted,
    /// Pods change resources only through the resize subresource; a Job's template is immutable.
    ImmutableTemplate,
    /// Every container's memory request and limit, runtime memory settings, and the set of
    /// containers, as before.
    MemoryUnchanged,
    /// An UPDATE that changes memory requests or limits, a runtime memory setting (`-Xmx`,
    /// `GOMEMLIMIT`, a memory-backed volume: see [`crate::runtime`]), or adds or removes
    /// containers.
    MemoryChanged,
    /// A DELETE, or a subresource (`scale`, `status`, `resize`): not a change to the template.
    NotTheTemplate,
}

impl ScopeRule {
    pub const ALL: [ScopeRule; 6] = [
        ScopeRule::Create,
        ScopeRule::MemoryChanged,
        ScopeRule::MemoryUnchanged,
        ScopeRule::ImmutableTemplate,
        ScopeRule::BeingDeleted,
        ScopeRule::NotTheTemplate,
    ];

    pub fn scope(self) -> Scope {
        match self {
            ScopeRule::Create | ScopeRule::MemoryChanged => Scope::Full,
            ScopeRule::MemoryUnchanged => Scope::WarnOnly,
            ScopeRule::ImmutableTemplate | ScopeRule::BeingDeleted | ScopeRule::NotTheTemplate => {
                Scope::Untouched
            }
        }
    }

    /// The operation column of docs/webhook.md's table.
    pub fn describe(self) -> &'static str {
        match self {
            ScopeRule::Create => "CREATE",
            ScopeRule::MemoryChanged => {
                "UPDATE that changes a memory request or limit, a runtime memory setting (`-Xmx`, `GOMEMLIMIT`, ...), or the set of containers"
            }
            ScopeRule::MemoryUnchanged => {
                "UPDATE that leaves memory as it was (labels, annotations, replicas, image, `rollout restart`)"
            }
            ScopeRule::ImmutableTemplate => "UPDATE of a Pod or a Job",
            ScopeRule::BeingDeleted => {
                "UPDATE of an object being deleted (`deletionTimestamp` set: finalizers removed)"
            }
            ScopeRule::NotTheTemplate => "DELETE; `scale`, `status` and `resize` subresources",
        }
    }

    /// What each mode does under this rule, as docs/webhook.md's table says it.
    pub fn effect(self, mode: Mode) -> &'static str {
        match (self.scope(), mode) {
            (_, Mode::Off) | (Scope::Untouched, _) => "allowed untouched",
            (Scope::WarnOnly, _) => "warnings only",
            (Scope::Full, Mode::Warn) => "warnings",
            (Scope::Full, Mode::Mutate) => "limits raised (a patch), warnings",
            (Scope::Full, Mode::Enforce) => "denied when critical, else warnings",
        }
    }
}

/// The rule an admission falls under. `old` is the stored object of an UPDATE.
pub fn scope_rule(operation: &str, new: &Workload, old: Option<&Workload>) -> ScopeRule {
    if new.deleting || old.is_some_and(|o| o.deleting) {
        return ScopeRule::BeingDeleted;
    }
    if operation != "UPDATE" {
        return ScopeRule::Create;
    }
    if matches!(new.kind, WorkloadKind::Pod | WorkloadKind::Job) {
        return ScopeRule::ImmutableTemplate;
    }
    match old {
        Some(old) if !same_memory(new, old) => ScopeRule::MemoryChanged,
        // No oldObject (the apiserver always sends one): assume nothing changed, never deny.
        _ => ScopeRule::MemoryUnchanged,
    }
}

/// Same containers (by list and name) with the same memory requests and limits, and the same
/// runtime memory settings (an env change such as `MODE=blue` is not one).
fn same_memory(a: &Workload, b: &Workload) -> bool {
    use crate::workload::MemoryField;
    fn key(f: &MemoryField) -> Option<Result<u64, &str>> {
        match f {
            MemoryField::Missing => None,
            MemoryField::Valid { bytes, .. } => Some(Ok(*bytes)),
            MemoryField::Invalid(e) => Some(Err(e.input.as_str())),
        }
    }
    let mut x: Vec<_> = a
        .containers
        .iter()
        .map(|c| {
            (
                c.role == ContainerRole::Main,
                &c.name,
                key(&c.limit),
                key(&c.request),
            )
        })
        .collect();
    let mut y: Vec<_> = b
        .containers
        .iter()
        .map(|c| {
            (
                c.role == ContainerRole::Main,
                &c.name,
                key(&c.limit),
                key(&c.request),
            )
        })
        .collect();
    x.sort();
    y.sort();
    x == y
        && a.containers.iter().all(|c| {
            b.containers
                .iter()
                .find(|o| o.name == c.name && o.role == c.role)
                .is_none_or(|o| {
                    c.runtime == o.runtime
                        || crate::memory_settings::settings(&c.runtime)
                            == crate::memory_settings::settings(&o.runtime)
                })
        })
}

/// What the engine decided for one object.
#[derive(Debug, Clone)]
pub struct Decision {
    pub answer: Answer,
    pub outcome: Outcome,
    pub verdict: Option<Verdict>,
    /// Why history was missing, when it was (for the unavailability metric).
    pub history_error: Option<&'static str>,
    /// The limits were weighed against memory history (not only the configuration).
    pub history_found: bool,
}

impl Decision {
    fn skipped() -> Decision {
        Decision {
            answer: Answer::allow(),
            outcome: Outcome::Skipped,
            verdict: None,
            history_error: None,
            history_found: false,
        }
    }

    /// One answer for the mutating (`m`) and the validating (`v`, on the patched object) ones:
    /// a denial carries no patch; the warnings of both, the patch's first.
    fn both(m: Decision, v: Decision) -> Decision {
        let allowed = v.answer.allowed;
        let outcome = match (v.outcome, m.outcome) {
            (Outcome::Denied, _) => Outcome::Denied,
            (_, Outcome::Mutated) => Outcome::Mutated,
            (o, _) => o,
        };
        let mutated = outcome == Outcome::Mutated;
        Decision {
            answer: Answer {
                allowed,
                patch: if allowed { m.answer.patch } else { None },
                warnings: review::fit_warnings(
                    m.answer.warnings.into_iter().chain(v.answer.warnings),
                ),
                status: v.answer.status,
            },
            outcome,
            // What was decided on the object as sent when it was patched, else the validating
            // verdict (the same object).
            verdict: if mutated {
                m.verdict
            } else {
                v.verdict.or(m.verdict)
            },
            history_error: m.history_error.or(v.history_error),
            history_found: m.history_found || v.history_found,
        }
    }
}

/// The engine with its edges: policies and a history source under a deadline.
pub struct Admitter {
    pub history: Arc<dyn HistorySource>,
    pub history_timeout: Duration,
}

impl Admitter {
    /// Decides a review request. Never fails: anything unexpected is allowed with a warning.
    pub async fn review(
        &self,
        endpoint: Endpoint,
        policies: &PolicySet,
        req: &mut review::ReviewRequest,
    ) -> Decision {
        if req.sub_resource.as_deref().is_some_and(|s| !s.is_empty())
            || !matches!(req.operation.as_str(), "CREATE" | "UPDATE")
        {
            // ScopeRule::NotTheTemplate
            return Decision::skipped();
        }
        let Some(kind) = WorkloadKind::from_group_kind(&req.kind.group, &req.kind.kind) else {
            return Decision::skipped();
        };
        let fallback = req.namespace.as_deref().unwrap_or("");
        let read = |o: Option<review::ObjectData>| match o {
            None => None,
            Some(review::ObjectData::Raw(raw)) if raw.get() == "null" => None,
            Some(review::ObjectData::Raw(raw)) => {
                Some(Workload::from_json(kind, raw.get(), fallback))
            }
            Some(review::ObjectData::Parsed(partial)) => {
                Some(Workload::from_partial(kind, *partial, fallback))
            }
        };
        let Some(workload) = read(req.object.take()) else {
            return Decision::skipped();
        };
        // An old object that cannot be read is as good as none: warnings at most.
        let old = match req.operation.as_str() {
            "UPDATE" => read(req.old_object.take()).and_then(Result::ok),
            _ => None,
        };
        let workload = workload.map(|mut w| {
            // The request's namespace is the one the object is stored in.
            if let Some(ns) = req.namespace.as_ref().filter(|ns| !ns.is_empty()) {
                w.namespace = ns.clone();
            }
            // The apiserver fills the name of generateName objects after admission.
            if let Some(name) = req.name.as_ref().filter(|n| !n.is_empty()) {
                w.name = name.clone();
            }
            w
        });
        let rule = match &workload {
            Ok(w) => scope_rule(&req.operation, w, old.as_ref()),
            Err(_) => ScopeRule::Create,
        };
        self.decide(endpoint, policies, workload, old.as_ref(), rule)
            .await
    }

    /// Decides one object of a known kind as a CREATE (`check`: a manifest about to be
    /// applied; the webhook and `check` share the rest).
    pub async fn object(
        &self,
        endpoint: Endpoint,
        policies: &PolicySet,
        kind: WorkloadKind,
        object: &Value,
        namespace: &str,
    ) -> Decision {
        let workload = Workload::from_object(kind, object, namespace);
        let rule = match &workload {
            Ok(w) => scope_rule("CREATE", w, None),
            Err(_) => ScopeRule::Create,
        };
        self.decide(endpoint, policies, workload, None, rule).await
    }

    async fn decide(
        &self,
        endpoint: Endpoint,
        policies: &PolicySet,
        workload: Result<Workload, crate::workload::WorkloadError>,
        old: Option<&Workload>,
        rule: ScopeRule,
    ) -> Decision {
        let scope = rule.scope();
        if scope == Scope::Untouched {
            return Decision::skipped();
        }
        let workload = match workload {
            Ok(w) => w,
            Err(e) => {
                // The apiserver's own validation rejects such objects; do not add to it.
                let mut d = Decision::skipped();
                if endpoint != Endpoint::Mutate {
                    d.answer.warnings = vec![format!("oomguard could not read the workload: {e}")];
                    d.outcome = Outcome::Warned;
                }
                return d;
            }
        };
        let policy = policies.for_namespace(&workload.namespace);
        // Out of the decision's scope (mode off, controlled by a workload controller, excluded),
        // or nothing for the mutating webhook to do ([`mutate_acts`]): allowed untouched, before
        // any history is fetched.
        if verdict::scope::of(&workload, &policy).is_err()
            || (endpoint == Endpoint::Mutate && !mutate_acts(&workload, &policy, scope))
        {
            return Decision::skipped();
        }
        let query = HistoryQuery {
            key: workload.key(),
            window_secs: policy.history.window.secs(),
        };
        let fetched = tokio::time::timeout(self.history_timeout, self.history.fetch(&query)).await;
        let (history, unavailable, history_error): (
            Option<Arc<WorkloadHistory>>,
            Option<String>,
            _,
        ) = match fetched {
            Ok(Ok(h)) => (h, None, None),
            Ok(Err(e)) => (None, Some(e.to_string()), Some(e.metric_label())),
            Err(_) => (
                None,
                Some(format!(
                    "{} history did not answer within {} ms",
                    self.history.name(),
                    self.history_timeout.as_millis()
                )),
                Some("timeout"),
            ),
        };
        // The OOM kills the reconciler kept on the workload the moment the kubelet reported them:
        // an apply seconds after a kill is answered with it, before any scrape has it, and with
        // no history source at all.
        // A `kubectl replace` or a create from a file drops the annotation: the stored object's.
        let kept = crate::history::kills::decode(
            workload
                .annotations
                .get(crate::history::kills::ANNOTATION)
                .or_else(|| old.and_then(|o| o.annotations.get(crate::history::kills::ANNOTATION)))
                .map(String::as_str),
        );
        let (history, unavailable) = if kept.is_empty() {
            (history, unavailable)
        } else {
            let now = history
                .as_ref()
                .map_or_else(crate::history::unix_now, |h| h.now);
            let merged = crate::history::kills::with_kills(
                history.as_deref(),
                &kept,
                now,
                policy.history.window.secs(),
            );
            (merged.map(Arc::new), None)
        };
        let status = match (&history, &unavailable) {
            (_, Some(why)) => HistoryStatus::Unavailable(why),
            (Some(h), None) => HistoryStatus::Found(h),
            (None, None) => HistoryStatus::Missing,
        };
        let now = history.as_ref().map_or(0, |h| h.now);
        let found = history.is_some();
        let mut decision = answer(endpoint, &workload, old, status, &policy, rule, now);
        decision.history_error = history_error;
        decision.history_found = found;
        decision
    }
}

/// The answer of one webhook endpoint to one object, given its history: the decision
/// ([`verdict::decide`]) under the scope rule, then the patch (`/mutate`) or the warnings and the
/// denial (`/validate`). `old` is the stored object of an UPDATE: enforcement stops what the
/// update makes worse than it was, never the rest. Pure; what the replay plays as the webhook.
pub fn answer(
    endpoint: Endpoint,
    workload: &Workload,
    old: Option<&Workload>,
    history: HistoryStatus<'_>,
    policy: &crate::policy::PolicySpec,
    rule: ScopeRule,
    now: i64,
) -> Decision {
    let mut verdict = verdict::decide(workload, history, policy, now);
    if verdict.out_of_scope.is_some() {
        return Decision::skipped();
    }
    if rule.scope() == Scope::WarnOnly {
        verdict.warn_only();
    }
    if let (ScopeRule::MemoryChanged, Some(old)) = (rule, old) {
        if verdict.denied() {
            let before = verdict::decide(old, history, policy, now);
            deny_only_regressions(&mut verdict, &before);
        }
    }
    match endpoint {
        Endpoint::Mutate => mutate(workload, verdict),
        Endpoint::Validate => validate(verdict),
        Endpoint::Admit => {
            let m = if mutate_acts(workload, policy, rule.scope()) {
                mutate(workload, verdict.clone())
            } else {
                Decision::skipped()
            };
            if m.answer.patch.is_none() {
                return Decision::both(m, validate(verdict));
            }
            let mut patched = workload.clone();
            patch::apply_to(&mut patched, &verdict);
            let rule = match (rule, old) {
                (ScopeRule::MemoryChanged, Some(o)) => scope_rule("UPDATE", &patched, Some(o)),
                _ => rule,
            };
            let v = answer(
                Endpoint::Validate,
                &patched,
                old,
                history,
                policy,
                rule,
                now,
            );
            Decision::both(m, v)
        }
    }
}

/// Whether the mutating webhook acts: only in mutate and enforce mode, never on an update that
/// leaves memory as it was (warnings only), and never on an operator's object (the operator
/// would undo a patch; the decision warns about it).
fn mutate_acts(workload: &Workload, policy: &crate::policy::PolicySpec, scope: Scope) -> bool {
    workload.operator_owner().is_none()
        && scope != Scope::WarnOnly
        && matches!(policy.mode, Mode::Mutate | Mode::Enforce)
}

/// In an UPDATE, a denial stands only for a container the update makes worse than the stored
/// object had it: a new container, a lower (or removed) limit, or memory settings that need
/// more (a larger `-Xmx`, say). One that stays critical but no worse — raised towards its need,
/// or untouched beside a new sidecar — is let through with its warning: enforcement stops
/// regressions, it does not hold a workload hostage to what it already was.
fn deny_only_regressions(verdict: &mut Verdict, before: &Verdict) {
    for c in verdict
        .containers
        .iter_mut()
        .filter(|c| c.action == verdict::Action::Deny)
    {
        let Some(o) = before
            .containers
            .iter()
            .find(|o| o.container == c.container && o.role == c.role)
        else {
            continue;
        };
        let lower_limit = match (c.limit, o.limit) {
            (None, Some(_)) => true,
            (Some(new), Some(old)) => new < old,
            _ => false,
        };
        let needs_more = c.floor.unwrap_or(0) > o.floor.unwrap_or(0);
        let newly_critical =
            o.severity < verdict::Severity::Critical && c.severity == verdict::Severity::Critical;
        if lower_limit || needs_more || newly_critical {
            continue;
        }
        c.action = verdict::Action::None;
        c.reasons.push(format!(
            "allowed: this update makes container {} no worse than it was; a change that makes it worse is enforced",
            c.container
        ));
    }
}

fn mutate(workload: &Workload, verdict: Verdict) -> Decision {
    let (patch, changes) = patch::build(workload, &verdict);
    let mut answer = Answer::allow();
    let outcome = if changes.is_empty() {
        Outcome::Allowed
    } else {
        answer.warnings = review::fit_warnings(changes.iter().map(patch::change_warning));
        answer.patch = Some(patch);
        Outcome::Mutated
    };
    Decision {
        answer,
        outcome,
        verdict: Some(verdict),
        history_error: None,
        history_found: false,
    }
}

fn validate(verdict: Verdict) -> Decision {
    let mut answer = Answer::allow();
    let outcome = if verdict.denied() {
        answer.allowed = false;
        answer.status = Some((403, verdict.deny_message()));
        Outcome::Denied
    } else if verdict.unchecked.is_some() {
        Outcome::Unchecked
    } else if verdict.reasons().is_empty() {
        Outcome::Allowed
    } else {
        Outcome::Warned
    };
    answer.warnings = review::fit_warnings(
        verdict
            .reasons()
            .into_iter()
            .map(|r| format!("oomguard: {r}")),
    );
    Decision {
        answer,
        outcome,
        verdict: Some(verdict),
        history_error: None,
        history_found: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::HistoryError;
    use futures::future::BoxFuture;
    use serde_json::json;

    /// A source that never answers, like a Prometheus that accepts and hangs.
    struct Hanging;
    impl HistorySource for Hanging {
        fn fetch<'a>(
            &'a self,
            _q: &'a HistoryQuery,
        ) -> BoxFuture<'a, Result<Option<Arc<WorkloadHistory>>, HistoryError>> {
            Box::pin(std::future::pending())
        }
        fn name(&self) -> &'static str {
            "prometheus"
        }
    }

    struct Failing;
    impl HistorySource for Failing {
        fn fetch<'a>(
            &'a self,
            _q: &'a HistoryQuery,
        ) -> BoxFuture<'a, Result<Option<Arc<WorkloadHistory>>, HistoryError>> {
            Box::pin(async {
                Err(HistoryError::Prometheus {
                    url: "http://127.0.0.1:9".into(),
                    message: "connection refused".into(),
                })
            })
        }
        fn name(&self) -> &'static str {
            "prometheus"
        }
    }

    fn workload(kind: WorkloadKind, containers: Value, deleting: bool) -> Workload {
        let mut meta = json!({"name": "w"});
        if deleting {
            meta["deletionTimestamp"] = json!("2026-11-29T10:00:00Z");
        }
        let pod = json!({ "containers": containers });
        let obj = match kind {
            WorkloadKind::Pod => json!({"metadata": meta, "spec": pod}),
            _ => json!({"metadata": meta, "spec": {"template": {"spec": pod}}}),
        };
        Workload::from_object(kind, &obj, "ns").unwrap()
    }

    #[test]
    fn updates_are_decided_against_the_old_object() {
        let web = |limit: &str, image: &str| {
            json!([{"name": "web", "image": image,
                "resources": {"limits": {"memory": limit}, "requests": {"memory": "64Mi"}}}])
        };
        let d = |c: Value| workload(WorkloadKind::Deployment, c, false);
        let old = d(web("256Mi", "a"));
        // Image, labels, replicas, restartedAt: memory as it was.
        assert_eq!(
            scope_rule("UPDATE", &d(web("256Mi", "b")), Some(&old)),
            ScopeRule::MemoryUnchanged
        );
        // The same quantity written another way is the same memory.
        assert_eq!(
            scope_rule("UPDATE", &d(web("268435456", "a")), Some(&old)),
            ScopeRule::MemoryUnchanged
        );
        assert_eq!(
            scope_rule("UPDATE", &d(web("128Mi", "a")), Some(&old)),
            ScopeRule::MemoryChanged
        );
        let two = json!([{"name": "web", "resources": {"limits": {"memory": "256Mi"},
            "requests": {"memory": "64Mi"}}}, {"name": "side"}]);
        assert_eq!(
            scope_rule("UPDATE", &d(two), Some(&old)),
            ScopeRule::MemoryChanged
        );
        assert_eq!(
            scope_rule("CREATE", &d(web("256Mi", "a")), None),
            ScopeRule::Create
        );
        // Being deleted: the new object or the old one carries deletionTimestamp.
        let gone = workload(WorkloadKind::Deployment, web("1Mi", "a"), true);
        assert_eq!(
            scope_rule("UPDATE", &gone, Some(&old)),
            ScopeRule::BeingDeleted
        );
        assert_eq!(
            scope_rule("UPDATE", &d(web("1Mi", "a")), Some(&gone)),
            ScopeRule::BeingDeleted
        );
        for kind in [WorkloadKind::Pod, WorkloadKind::Job] {
            let w = workload(kind, web("1Mi", "a"), false);
            let o = workload(kind, web("256Mi", "a"), false);
            assert_eq!(
                scope_rule("UPDATE", &w, Some(&o)),
                ScopeRule::ImmutableTemplate
            );
        }
        // An env change is not a memory change; a new heap size is.
        let java = |heap: &str, mode: &str| {
            json!([{"name": "web", "command": ["java", heap, "-jar", "a.jar"],
                "env": [{"name": "MODE", "value": mode}],
                "resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "64Mi"}}}])
        };
        assert_eq!(
            scope_rule(
                "UPDATE",
                &d(java("-Xmx128m", "blue")),
                Some(&d(java("-Xmx128m", "green")))
            ),
            ScopeRule::MemoryUnchanged
        );
        assert_eq!(
            scope_rule(
                "UPDATE",
                &d(java("-Xmx512m", "blue")),
                Some(&d(java("-Xmx128m", "blue")))
            ),
            ScopeRule::MemoryChanged
        );
        // Without an old object (the apiserver always sends one): never denied, never patched.
        assert_eq!(
            scope_rule("UPDATE", &d(web("1Mi", "a")), None),
            ScopeRule::MemoryUnchanged
        );
    }

    /// docs/webhook.md's table is this code's table.
    /// web-frontend's shape: 14 days of peaks up to 301Mi for container `web` (and `proxy`).
    fn peaked_history() -> WorkloadHistory {
        use crate::history::{ContainerHistory, PeakStats};
        let mi = crate::quantity::MI as f64;
        let peaks: Vec<f64> = (0..4000).map(|i| (200.0 + (i % 100) as f64) * mi).collect();
        let mut peaks = peaks;
        peaks.push(301.0 * mi);
        let c = ContainerHistory {
            covered_secs: 14 * 86_400,
            peaks: PeakStats::from_peaks(&peaks),
            ..Default::default()
        };
        WorkloadHistory {
            now: 1_800_000_000,
            window_secs: 14 * 86_400,
            containers: [("web".to_string(), c.clone()), ("proxy".to_string(), c)]
                .into_iter()
                .collect(),
            events_unseen: None,
        }
    }

    #[test]
    fn enforce_stops_regressions_relative_to_the_stored_object() {
        let p = crate::policy::PolicySpec {
            mode: Mode::Enforce,
            ..crate::policy::PolicySpec::default()
        };
        let h = peaked_history();
        let web = |limit: &str| json!({"name": "web", "resources": {"limits": {"memory": limit}}});
        let deploy = |cs: Value| workload(WorkloadKind::Deployment, cs, false);
        let update = |new: &Workload, old: &Workload| {
            let rule = scope_rule("UPDATE", new, Some(old));
            answer(
                Endpoint::Validate,
                new,
                Some(old),
                HistoryStatus::Found(&h),
                &p,
                rule,
                h.now,
            )
        };
        let old = deploy(json!([web("256Mi")]));
        // 256Mi -> 300Mi against a 301Mi peak: still critical, but better than it was.
        let raised = deploy(json!([web("300Mi")]));
        let d = update(&raised, &old);
        assert!(d.answer.allowed, "{:?}", d.answer);
        assert!(
            d.answer
                .warnings
                .iter()
                .any(|w| w.contains("below the 7d peak 301Mi")),
            "{:?}",
            d.answer.warnings
        );
        assert!(d
            .answer
            .warnings
            .iter()
            .any(|w| w.contains("no worse than it was")));
        // ... while the same object as a CREATE is denied,
        let create = answer(
            Endpoint::Validate,
            &raised,
            None,
            HistoryStatus::Found(&h),
            &p,
            ScopeRule::Create,
            h.now,
        );
        assert!(!create.answer.allowed);
        // and lowering it further is a regression: denied, naming the container.
        let lowered = deploy(json!([web("200Mi")]));
        let d = update(&lowered, &old);
        assert!(!d.answer.allowed);
        assert!(d
            .answer
            .status
            .as_ref()
            .unwrap()
            .1
            .contains("container web"));
        // A sidecar added beside the old critical container: the container is no worse; a
        // sound sidecar goes through, a critical one is denied (it is new).
        let sound = json!({"name": "proxy", "resources": {"limits": {"memory": "512Mi"}}});
        let d = update(&deploy(json!([web("256Mi"), sound])), &old);
        assert!(d.answer.allowed, "{:?}", d.answer);
        let bad = json!({"name": "proxy", "resources": {"limits": {"memory": "128Mi"}}});
        let d = update(&deploy(json!([web("256Mi"), bad])), &old);
        assert!(!d.answer.allowed);
        let msg = &d.answer.status.as_ref().unwrap().1;
        assert!(
            msg.contains("container proxy") && !msg.contains("container web:"),
            "{msg}"
        );
        // A heap raised past what the limit holds is worse even at the same limit.
        let jvm = |xmx: &str| {
            json!({"name": "web", "command": ["java", xmx, "-jar", "a.jar"],
                   "resources": {"limits": {"memory": "1Gi"}}})
        };
        let d = update(
            &deploy(json!([jvm("-Xmx2g")])),
            &deploy(json!([jvm("-Xmx512m")])),
        );
        assert!(!d.answer.allowed, "{:?}", d.answer);
    }

    #[test]
    fn the_readme_table_is_the_scope_rules() {
        let modes = [Mode::Warn, Mode::Mutate, Mode::Enforce];
        let mut table =
            String::from("| operation | warn | mutate | enforce |\n|---|---|---|---|\n");
        for rule in ScopeRule::ALL {
            table.push_str(&format!("| {} |", rule.describe()));
            for m in modes {
                table.push_str(&format!(" {} |", rule.effect(m)));
            }
            table.push('\n');
        }
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/webhook.md"))
                .unwrap();
        assert!(
            readme.contains(&table),
            "docs/webhook.md must carry this table (section \"What each operation may do\"):\n{table}"
        );
    }

    fn deployment() -> Value {
        json!({"metadata": {"name": "web-frontend"}, "spec": {"template": {"spec": {"containers": [
            {"name": "web", "resources": {"limits": {"memory": "64Mi"}}}]}}}})
    }

    #[tokio::test]
    async fn a_dead_history_source_never_blocks_and_never_denies() {
        let policies = PolicySet::single(crate::policy::PolicySpec {
            mode: Mode::Enforce,
            ..Default::default()
        });
        for (source, why) in [
            (
                Arc::new(Hanging) as Arc<dyn HistorySource>,
                "did not answer within 200 ms",
            ),
            (Arc::new(Failing), "connection refused"),
        ] {
            let a = Admitter {
                history: source,
                history_timeout: Duration::from_millis(200),
            };
            let start = std::time::Instant::now();
            let d = a
                .object(
                    Endpoint::Validate,
                    &policies,
                    WorkloadKind::Deployment,
                    &deployment(),
                    "ns",
                )
                .await;
            assert!(start.elapsed() < Duration::from_millis(1000));
            assert!(d.answer.allowed);
            assert_eq!(d.outcome, Outcome::Unchecked);
            assert!(d.history_error.is_some());
            assert_eq!(d.answer.warnings.len(), 1);
            assert!(
                d.answer.warnings[0].contains(why),
                "{:?}",
                d.answer.warnings
            );
            assert!(d.answer.warnings[0].contains("allowed"));
        }
    }
}
