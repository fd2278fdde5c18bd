//! From an AdmissionReview (or a manifest offline) to an answer: one path for the webhook and
//! `oomguard check`.

pub mod patch;
pub mod review;
mod scan;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::history::{HistoryQuery, HistorySource, WorkloadHistory};
use crate::policy::store::PolicySet;
use crate::policy::Mode;
use crate::verdict::{self, HistoryStatus, Verdict, EXCLUDE_ANNOTATION};
use crate::workload::{Workload, WorkloadKind};
use review::Answer;

/// Which webhook path is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Raises limits (mutate mode) and adds missing ones (`missingLimit: add`).
    Mutate,
    /// Warns (warn, and what mutate could not fix) and denies (enforce).
    Validate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
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

/// What the engine decided for one object.
#[derive(Debug, Clone)]
pub struct Decision {
    pub answer: Answer,
    pub outcome: Outcome,
    pub verdict: Option<Verdict>,
    /// Why history was missing, when it was (for the unavailability metric).
    pub history_error: Option<&'static str>,
}

impl Decision {
    fn skipped() -> Decision {
        Decision {
            answer: Answer::allow(),
            outcome: Outcome::Skipped,
            verdict: None,
            history_error: None,
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
            return Decision::skipped();
        }
        let Some(kind) = WorkloadKind::from_group_kind(&req.kind.group, &req.kind.kind) else {
            return Decision::skipped();
        };
        let fallback = req.namespace.as_deref().unwrap_or("");
        let workload = match req.object.take() {
            None => return Decision::skipped(),
            Some(review::ObjectData::Raw(raw)) if raw.get() == "null" => {
                return Decision::skipped()
            }
            Some(review::ObjectData::Raw(raw)) => Workload::from_json(kind, raw.get(), fallback),
            Some(review::ObjectData::Parsed(partial)) => {
                Workload::from_partial(kind, *partial, fallback)
            }
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
        self.decide(endpoint, policies, workload).await
    }

    /// Decides one object of a known kind (the webhook and `check` share this).
    pub async fn object(
        &self,
        endpoint: Endpoint,
        policies: &PolicySet,
        kind: WorkloadKind,
        object: &Value,
        namespace: &str,
    ) -> Decision {
        self.decide(
            endpoint,
            policies,
            Workload::from_object(kind, object, namespace),
        )
        .await
    }

    async fn decide(
        &self,
        endpoint: Endpoint,
        policies: &PolicySet,
        workload: Result<Workload, crate::workload::WorkloadError>,
    ) -> Decision {
        let workload = match workload {
            Ok(w) => w,
            Err(e) => {
                // The apiserver's own validation rejects such objects; do not add to it.
                let mut d = Decision::skipped();
                if endpoint == Endpoint::Validate {
                    d.answer.warnings = vec![format!("oomguard could not read the workload: {e}")];
                    d.outcome = Outcome::Warned;
                }
                return d;
            }
        };
        let policy = policies.for_namespace(&workload.namespace);
        if policy.mode == Mode::Off
            || workload.controlled_by.is_some()
            || policy.excludes_workload(&workload.name)
            || workload
                .annotations
                .get(EXCLUDE_ANNOTATION)
                .map(String::as_str)
                == Some("true")
            || (endpoint == Endpoint::Mutate
                && !matches!(policy.mode, Mode::Mutate | Mode::Enforce))
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
        let status = match (&history, &unavailable) {
            (_, Some(why)) => HistoryStatus::Unavailable(why),
            (Some(h), None) => HistoryStatus::Found(h),
            (None, None) => HistoryStatus::Missing,
        };
        let now = history.as_ref().map_or(0, |h| h.now);
        let verdict = verdict::decide(&workload, status, &policy, now);
        let mut decision = match endpoint {
            Endpoint::Mutate => mutate(&workload, verdict),
            Endpoint::Validate => validate(verdict),
        };
        decision.history_error = history_error;
        decision
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
