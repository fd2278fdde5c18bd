//! What the reconciler exposes on `/metrics` (prometheus-client, OpenMetrics text).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RemediationLabels {
    pub action: &'static str,
    /// effective | ineffective | failed
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The plan step: none, scale-out, recommend-hpa, raise-limit, planned-restart,
    /// out-of-bounds, cooldown, rate-limited.
    pub step: &'static str,
    pub dry_run: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub action: &'static str,
}

pub struct ReconcileMetrics {
    registry: Registry,
    pub remediations: Family<RemediationLabels, Counter>,
    /// Actions the cluster refused before oomguard could record them (an admission policy, a
    /// quota, RBAC), each followed by a backoff.
    pub refusals: Family<RefusalLabels, Counter>,
    /// Workloads whose actions are held by such a backoff now.
    pub backing_off: Gauge,
    /// OOM kills the pod watch saw, each counted once.
    pub kills_seen: Counter,
    pub success_ratio: Gauge<f64, AtomicU64>,
    pub steps: Family<StepLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub leader: Gauge,
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ReconcileMetrics {
    pub fn new() -> ReconcileMetrics {
        let mut registry = Registry::with_prefix("oomguard");
        let remediations = Family::<RemediationLabels, Counter>::default();
        registry.register(
            "remediations",
            "Remediations by action and verified outcome (effective, ineffective, failed)",
            remediations.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "reconcile_refusals",
            "Actions the cluster refused (admission policy, quota, RBAC), by action; each starts or doubles a backoff",
            refusals.clone(),
        );
        let backing_off = Gauge::default();
        registry.register(
            "reconcile_backing_off_workloads",
            "Workloads whose actions are held by a backoff after refusals",
            backing_off.clone(),
        );
        let kills_seen = Counter::default();
        registry.register(
            "oom_kills_seen",
            "OOM kills the kubelet reported (pod watch), each (pod, container, finishedAt) counted once",
            kills_seen.clone(),
        );
        let success_ratio = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "remediation_success_ratio",
            "Effective / (effective + ineffective) over the remediations this process verified",
            success_ratio.clone(),
        );
        let steps = Family::<StepLabels, Counter>::default();
        registry.register(
            "reconcile_plan_steps",
            "Plan steps by kind, including the ones held back (cooldown, rate limit) or out of bounds",
            steps.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that could not finish, by reason (history, kubernetes, annotation, conflict)",
            errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "reconcile_leader",
            "1 while this reconciler holds the lease and acts, 0 otherwise",
            leader.clone(),
        );
        ReconcileMetrics {
            registry,
            remediations,
            refusals,
            backing_off,
            kills_seen,
            success_ratio,
            steps,
            errors,
            leader,
        }
    }

    /// Counts a verified or failed remediation and updates the success ratio.
    pub fn outcome(&self, action: &'static str, outcome: &'static str) {
        self.remediations
            .get_or_create(&RemediationLabels { action, outcome })
            .inc();
        let (mut good, mut bad) = (0u64, 0u64);
        for a in ["scale-out", "raise-limit", "restart"] {
            good += self
                .remediations
                .get_or_create(&RemediationLabels {
                    action: a,
                    outcome: "effective",
                })
                .get();
            bad += self
                .remediations
                .get_or_create(&RemediationLabels {
                    action: a,
                    outcome: "ineffective",
                })
                .get();
        }
        if good + bad > 0 {
            self.success_ratio.set(good as f64 / (good + bad) as f64);
        }
    }

    pub fn error(&self, reason: &'static str) {
        self.errors.get_or_create(&ErrorLabels { reason }).inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
