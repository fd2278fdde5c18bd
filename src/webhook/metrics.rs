//! What the webhook exposes on `/metrics` (prometheus-client, OpenMetrics text).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
    pub reason: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<EndpointLabels, Histogram>,
    pub errors: Family<ReasonLabels, Counter>,
    pub history_unavailable: Family<SourceLabels, Counter>,
    pub policy_reloads: Family<ResultLabels, Counter>,
    pub policy_broken_files: Gauge,
    pub tls_reloads: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("oomguard");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission reviews answered, by endpoint and verdict",
            requests.clone(),
        );
        let duration = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ])
        });
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission review, from body read to answer",
            duration.clone(),
        );
        let errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "admission_errors",
            "Requests that were not AdmissionReviews, or too large",
            errors.clone(),
        );
        let history_unavailable = Family::<SourceLabels, Counter>::default();
        registry.register(
            "history_unavailable",
            "Admissions allowed unchecked because history could not be had",
            history_unavailable.clone(),
        );
        let policy_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy folder reloads, by result (ok, error)",
            policy_reloads.clone(),
        );
        let policy_broken_files = Gauge::default();
        registry.register(
            "policy_broken_files",
            "Policy files whose latest version is rejected (the last good one is in force)",
            policy_broken_files.clone(),
        );
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "Serving certificate reloads, by result (ok, error)",
            tls_reloads.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            errors,
            history_unavailable,
            policy_reloads,
            policy_broken_files,
            tls_reloads,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
