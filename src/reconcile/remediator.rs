//! What executes remediations for the API: the seam, with the reconciler's machinery
//! ([`super::kube_remediator::KubeRemediator`]) behind it in `oomguard reconcile`, read-only records in
//! `oomguard api` ([`super::record_lookup::ReadOnlyRemediator`]), a fake in the API's tests.
//!
//! The API authenticates and authorises the caller and validates the request against the
//! namespace policy before it calls [`Remediator::trigger`]; the remediator applies its own safety
//! (cooldown, hourly budget, HPA, dry run) and answers with the record it keeps.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::plan::ActionKind;
use super::record::{Remediation, Target};

/// Who asked, as the kube-apiserver's TokenReview said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    /// Extra attributes of the user (scopes and the like); passed on to SubjectAccessReviews.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What to do, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedAction {
    /// Scale to `replicas` (more than `current`, within the policy's minReplicas..maxReplicas).
    Scale {
        replicas: u32,
        /// The replica count the API read when it validated the request (advisory: re-read).
        current: u32,
    },
    /// Raise container `container`'s memory limit to `to` bytes (within the policy's
    /// limits.min..limits.max, above `current`); None: to what oomguard's decision recommends.
    RaiseLimit {
        container: String,
        to: Option<u64>,
        /// The limit the API read when it validated the request, bytes (None: no limit).
        current: Option<u64>,
    },
}

impl RequestedAction {
    pub fn kind(&self) -> ActionKind {
        match self {
            RequestedAction::Scale { .. } => ActionKind::ScaleOut,
            RequestedAction::RaiseLimit { .. } => ActionKind::RaiseLimit,
        }
    }
}

/// A remediation request that passed the API's checks: authenticated, authorised for the verb on
/// the target, the target exists and is not excluded, the values are within the policy's bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub target: Target,
    pub action: RequestedAction,
    pub incident_id: Option<String>,
    pub reason: String,
    /// The caller's predicted memory usage, percent of the limit (as the tutorial sends it).
    pub predicted_usage: Option<f64>,
}

/// Why a remediator did not act. Each variant maps to one HTTP status (see `docs/openapi.yaml`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemediateError {
    /// The workload (or record) does not exist: 404.
    #[error("{0}")]
    NotFound(String),
    /// oomguard must not touch the workload: excluded by the policy or annotation, the
    /// reconciler disabled in its namespace, an HPA that owns the replica count: 409.
    #[error("{0}")]
    Refused(String),
    /// Nothing to do: already at (or above) the requested value: 409.
    #[error("{0}")]
    NoChange(String),
    /// Beyond the policy's bounds (the message names the bound): 422.
    #[error("{message}")]
    OutOfBounds { bound: String, message: String },
    /// Held back by the reconciler's safety: cooldown after the last action, or the hourly
    /// budget. `until` is when it frees (unix seconds; None: the budget is zero): 429.
    #[error("{reason}")]
    HeldBack { until: Option<i64>, reason: String },
    /// The Kubernetes API failed or refused the change: 502.
    #[error("{0}")]
    Upstream(String),
    /// The remediator cannot act now (not the leader, not wired in this process): 503.
    #[error("{0}")]
    Unavailable(String),
}

/// Executes remediations and keeps their records.
pub trait Remediator: Send + Sync {
    /// Applies a validated request; answers with the new record (outcome `pending` until verified,
    /// `failed` when the Kubernetes call failed).
    fn trigger<'a>(
        &'a self,
        req: &'a Validated,
        caller: &'a Caller,
    ) -> BoxFuture<'a, Result<Remediation, RemediateError>>;

    /// One record by id, None when there is none.
    fn get<'a>(&'a self, id: &'a str)
        -> BoxFuture<'a, Result<Option<Remediation>, RemediateError>>;

    /// Every record, or those of one namespace.
    fn list<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Remediation>, RemediateError>>;
}
