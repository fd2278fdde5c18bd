//! Which workloads the decision covers: one rule, with one message per cause, for every face
//! (the webhook, `check`, `recommend`, the reconciler, the API, the replay). A workload out of
//! scope gets no decision at all; a face reports the cause as it says it here.

use std::fmt;

use crate::policy::{Mode, PolicySpec};
use crate::workload::Workload;

/// Annotation that opts a workload out of every check.
pub const EXCLUDE_ANNOTATION: &str = "oomguard.io/exclude";

/// Why a workload is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutOfScope {
    /// The cluster's own namespaces and oomguard's: always left alone.
    Reserved { namespace: String },
    /// The namespace's policy is `mode: off`: oomguard does nothing there.
    ModeOff { namespace: String },
    /// A workload controller made this object from its template (a Pod of a ReplicaSet, a
    /// ReplicaSet of a Deployment): the owner is decided instead.
    ControlledBy { owner: String },
    /// Runtime actions only: an operator's object (its custom resource is where memory is set;
    /// the operator undoes edits). The decision warns about it; nothing acts on it.
    OperatorOwned { owner: String },
    /// The policy's `exclude.workloads` names it.
    ExcludedByPolicy { namespace: String },
    /// Annotated `oomguard.io/exclude: "true"`.
    ExcludedByAnnotation,
    /// Runtime actions only: the namespace's policy does not enable the reconciler.
    ReconcileDisabled { namespace: String },
}

impl OutOfScope {
    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            OutOfScope::Reserved { .. } => "reserved-namespace",
            OutOfScope::ModeOff { .. } => "mode-off",
            OutOfScope::ControlledBy { .. } => "controlled",
            OutOfScope::OperatorOwned { .. } => "operator-owned",
            OutOfScope::ExcludedByPolicy { .. } => "excluded-by-policy",
            OutOfScope::ExcludedByAnnotation => "excluded-by-annotation",
            OutOfScope::ReconcileDisabled { .. } => "reconcile-disabled",
        }
    }
}

impl fmt::Display for OutOfScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutOfScope::Reserved { namespace } => write!(
                f,
                "namespace {namespace} is the cluster's or oomguard's own: always left alone"
            ),
            OutOfScope::ModeOff { namespace } => {
                write!(f, "the policy of namespace {namespace} is mode: off")
            }
            OutOfScope::ControlledBy { owner } => {
                write!(
                    f,
                    "controlled by {owner}, whose template is the one to size"
                )
            }
            OutOfScope::OperatorOwned { owner } => write!(
                f,
                "managed by {owner}: set memory there; its operator undoes edits here"
            ),
            OutOfScope::ExcludedByPolicy { namespace } => write!(
                f,
                "excluded by the policy of namespace {namespace} (exclude.workloads)"
            ),
            OutOfScope::ExcludedByAnnotation => {
                write!(
                    f,
                    "excluded by its annotation {EXCLUDE_ANNOTATION}: \"true\""
                )
            }
            OutOfScope::ReconcileDisabled { namespace } => write!(
                f,
                "the policy of namespace {namespace} does not enable the reconciler \
                 (reconcile.enabled: false)"
            ),
        }
    }
}

/// Whether the decision covers `w` under `policy` (its namespace's).
pub fn of(w: &Workload, policy: &PolicySpec) -> Result<(), OutOfScope> {
    if policy.reserved {
        return Err(OutOfScope::Reserved {
            namespace: w.namespace.clone(),
        });
    }
    if policy.mode == Mode::Off {
        return Err(OutOfScope::ModeOff {
            namespace: w.namespace.clone(),
        });
    }
    // An operator's object is decided (and warned about, never patched or denied:
    // [`operator_line`]); one a workload controller made from a template is not.
    if let (Some(owner), None) = (&w.controlled_by, w.operator_owner()) {
        return Err(OutOfScope::ControlledBy {
            owner: owner.clone(),
        });
    }
    if policy.excludes_workload(&w.name) {
        return Err(OutOfScope::ExcludedByPolicy {
            namespace: w.namespace.clone(),
        });
    }
    if excluded_by_annotation(w) && policy.honours_exclude_annotation() {
        return Err(OutOfScope::ExcludedByAnnotation);
    }
    Ok(())
}

/// The line a workload annotated `oomguard.io/exclude: "true"` gets where the annotation is not
/// honoured (in `enforce` unless the policy says `exclude.annotation: true`): it is checked,
/// and who can opt it out.
pub fn ignored_annotation(w: &Workload, policy: &PolicySpec) -> Option<String> {
    (excluded_by_annotation(w) && !policy.honours_exclude_annotation()).then(|| {
        format!(
            "{EXCLUDE_ANNOTATION} is not honoured in namespace {} (mode enforce): the policy's \
             exclude.workloads or exclude.annotation decides; ask its owner",
            w.namespace
        )
    })
}

/// Whether the reconciler (or a remediation asked for through the API) may act on `w`: in the
/// decision's scope, and the namespace's policy enables the reconciler.
pub fn reconciled(w: &Workload, policy: &PolicySpec) -> Result<(), OutOfScope> {
    of(w, policy)?;
    if let Some(owner) = w.operator_owner() {
        return Err(OutOfScope::OperatorOwned {
            owner: owner.to_string(),
        });
    }
    if !policy.reconcile.enabled {
        return Err(OutOfScope::ReconcileDisabled {
            namespace: w.namespace.clone(),
        });
    }
    Ok(())
}

/// The line an operator's object gets when something is said about it: where the fix goes.
pub fn operator_line(w: &Workload) -> Option<String> {
    w.operator_owner().map(|owner| {
        format!(
            "managed by {owner}: set memory there; its operator undoes edits to {} {}",
            w.kind.as_str(),
            w.name
        )
    })
}

/// Whether the policy leaves container `name` out (`exclude.containers`).
pub fn container_excluded(policy: &PolicySpec, name: &str) -> bool {
    policy.excludes_container(name)
}

fn excluded_by_annotation(w: &Workload) -> bool {
    w.annotations.get(EXCLUDE_ANNOTATION).map(String::as_str) == Some("true")
}
