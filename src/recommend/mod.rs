//! `oomguard recommend`: per workload container, what it has, what it used, where it is heading,
//! and what to set, sorted by risk. A report like KRR's, from the same engine as the webhook.
//!
//! - **Current request and limit**: from the manifests (`-f`, e.g. the GitOps repository) when
//!   given; else the runtime limit the history saw (Prometheus `container_spec_memory_limit_bytes`,
//!   or the history file's `limit`), and the request is unknown ([`CurrentFrom`]).
//! - **Recommended limit**: the verdict's `recommended`, from [`verdict::decide`]: the very number
//!   the webhook warns with, raises to or denies below.
//! - **Recommended request**: the verdict's too ([`verdict::request`]).
//!
//! Formats: a terminal table ([`table`]), JSON/YAML of [`Report`], CSV of [`Recommendation`]
//! rows (all three read back with [`Report::parse`] / [`parse_csv`]), and one self-contained HTML
//! file with a chart per container ([`html`]). [`patches`] writes kustomize patches.

pub mod html;
pub mod patches;
pub mod table;

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::forecast::{Forecast, Pattern};
use crate::history::file::FileSource;
use crate::history::prometheus::PrometheusSource;
use crate::history::{
    HistoryError, HistoryQuery, HistorySource, Sample, WorkloadHistory, WorkloadKey,
};
use crate::policy::store::PolicySet;
use crate::policy::{Mode, PolicySpec};
use crate::verdict::{self, ContainerVerdict, HistoryStatus, Severity};
use crate::workload::{ContainerRole, Workload, WorkloadKind};

/// Output format of `oomguard recommend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
    Csv,
    Html,
}

/// Where a row's current request and limit come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CurrentFrom {
    /// The manifests given with `-f`.
    Manifest,
    /// The limit the running containers had (the history); the request is unknown.
    Runtime,
}

/// One row: one container of one workload. Flat, so that CSV holds it as it is. Bytes are
/// plain numbers; `None` is an empty CSV field and `null` in JSON/YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub container: String,
    pub role: ContainerRole,
    pub current_from: CurrentFrom,
    /// Current memory request, bytes (`None`: none set, or unknown without manifests).
    pub request: Option<u64>,
    /// Current memory limit, bytes (`None`: none set).
    pub limit: Option<u64>,
    /// Largest 5-minute working-set peak in the window, bytes; at least the limit of the
    /// container's latest OOM kill (usage reached it; scrapes miss the seconds before a kill).
    pub peak: Option<f64>,
    /// The highest scraped working set, when a kill put `peak` above it.
    #[serde(default)]
    pub scraped_peak: Option<f64>,
    /// The policy statistic of the 5-minute peaks (`max`, `p99`, ...), and its value.
    pub statistic_name: String,
    pub statistic: Option<f64>,
    /// p95 of the 5-minute peaks, bytes (the basis of the recommended request).
    pub p95: Option<f64>,
    pub oom_kills: u32,
    pub pattern: Option<Pattern>,
    /// Seconds until the forecast reaches the limit (`None`: not within reach).
    pub time_to_limit_secs: Option<f64>,
    pub horizon_secs: u64,
    /// Forecast usage at the horizon and its band, bytes.
    pub forecast_at_horizon: Option<f64>,
    pub forecast_low: Option<f64>,
    pub forecast_high: Option<f64>,
    pub recommended_request: Option<u64>,
    /// The verdict's `recommended`: what the webhook uses.
    pub recommended_limit: Option<u64>,
    pub severity: Severity,
    pub mode: Mode,
    /// The verdict's reasons, joined with " | " (empty when all is well).
    pub reason: String,
}

/// The whole report (JSON and YAML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub api_version: String,
    pub kind: String,
    /// Where the history came from: `file PATH` or `prometheus URL`.
    pub source: String,
    /// Where the current requests and limits came from: the manifests' file, or "runtime".
    pub current_from: String,
    pub namespaces: Vec<String>,
    /// The history's evaluation time, unix seconds.
    pub now: i64,
    /// Rows, riskiest first.
    pub recommendations: Vec<Recommendation>,
    /// Workloads left out, with why (excluded, not a pod-template workload's kind).
    pub skipped: Vec<String>,
    /// What holds for a whole namespace, once (e.g. OOM kills the source cannot see).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    /// Reads a report back from JSON or YAML.
    pub fn parse(text: &str) -> Result<Report, String> {
        serde_norway::from_str(text).map_err(|e| e.to_string())
    }
}

/// Reads CSV rows back.
pub fn parse_csv(text: &str) -> Result<Vec<Recommendation>, csv::Error> {
    csv::Reader::from_reader(text.as_bytes())
        .deserialize()
        .collect()
}

/// What a chart needs beside the row: the history and the forecast's line.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Per-interval (5-minute) working-set peaks, oldest first.
    pub peaks: Vec<Sample>,
    pub now: i64,
    /// The fit's level at `fit_at` and its noise (the forecast starts there).
    pub fit_at: Option<i64>,
    pub fit_level: f64,
    pub fit_noise: f64,
    pub forecast: Option<Forecast>,
}

/// Rows and their charts, in the same order.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub report: Report,
    pub charts: Vec<Chart>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("namespace {namespace:?}: cannot read its history: {error}")]
    Namespace {
        namespace: String,
        error: HistoryError,
    },
    #[error(
        "namespace {namespace:?}: {url} has no data for it: no container_memory_working_set_bytes \
         of any pod in namespace=\"{namespace}\" over the last {window} (queried: 5-minute peaks \
         per workload container, restarts and OOM kills, limits); check the namespace's name and \
         that Prometheus scrapes its cAdvisor metrics"
    )]
    NoData {
        namespace: String,
        url: String,
        window: String,
    },
    #[error("namespace {namespace:?}: no workloads in {place}{known}")]
    NoWorkloads {
        namespace: String,
        place: String,
        known: String,
    },
    #[error("{0}")]
    Usage(String),
}

/// The history source of a report: the webhook's sources, plus listing what they know.
pub enum ReportSource {
    File(FileSource),
    Prometheus(PrometheusSource),
}

impl ReportSource {
    fn describe(&self) -> String {
        match self {
            ReportSource::File(f) => format!("file {}", f.path()),
            ReportSource::Prometheus(p) => format!("prometheus {}", p.url()),
        }
    }

    fn history(&self) -> &dyn HistorySource {
        match self {
            ReportSource::File(f) => f,
            ReportSource::Prometheus(p) => p,
        }
    }

    /// Checks that the source has data for a namespace (Prometheus: one refresh, cached for the
    /// fetches that follow), and lists its workloads.
    async fn workloads(
        &self,
        namespace: &str,
        window_secs: u64,
    ) -> Result<Vec<WorkloadKey>, ReportError> {
        match self {
            ReportSource::File(f) => {
                let keys = f.file().workloads(namespace);
                if keys.is_empty() {
                    return Err(ReportError::NoWorkloads {
                        namespace: namespace.to_string(),
                        place: format!("the history file {}", f.path()),
                        known: known(&f.file().namespaces()),
                    });
                }
                Ok(keys)
            }
            ReportSource::Prometheus(p) => {
                let ns = p.namespace(namespace, window_secs).await.map_err(|error| {
                    ReportError::Namespace {
                        namespace: namespace.to_string(),
                        error,
                    }
                })?;
                if ns.is_empty() {
                    return Err(ReportError::NoData {
                        namespace: namespace.to_string(),
                        url: format!("Prometheus at {}", p.url()),
                        window: crate::policy::Duration(window_secs).to_string(),
                    });
                }
                Ok(ns
                    .workload_keys()
                    .into_iter()
                    .map(|(kind, name)| WorkloadKey {
                        namespace: namespace.to_string(),
                        kind,
                        name,
                    })
                    .collect())
            }
        }
    }

    /// The 5-minute peaks to chart: the whole window from a file; from Prometheus the recent
    /// peaks it fetched for the forecast (no extra query).
    fn chart_peaks(
        &self,
        query: &HistoryQuery,
        container: &str,
        h: &WorkloadHistory,
    ) -> Vec<Sample> {
        let fetched = || {
            h.containers
                .get(container)
                .map(|c| c.samples.clone())
                .unwrap_or_default()
        };
        match self {
            ReportSource::File(f) => f
                .file()
                .window_peaks(query, container)
                .unwrap_or_else(fetched),
            ReportSource::Prometheus(_) => fetched(),
        }
    }
}

fn known(namespaces: &[String]) -> String {
    if namespaces.is_empty() {
        String::new()
    } else {
        format!(" (it has: {})", namespaces.join(", "))
    }
}

/// The manifests given with `-f`.
pub struct Manifests {
    /// File name, for messages.
    pub name: String,
    pub docs: Vec<Value>,
}

/// What to analyse.
pub struct Request<'a> {
    pub source: &'a ReportSource,
    pub policies: &'a PolicySet,
    pub manifests: Option<&'a Manifests>,
    /// `--namespace` values; empty: the manifests' namespaces, or the history file's.
    pub namespaces: &'a [String],
}

/// A workload to analyse and where its current resources came from.
struct Target {
    workload: Workload,
    /// The kind as the history names it (a Prometheus pattern class may not be a real kind).
    kind_label: String,
    from: CurrentFrom,
}

/// Analyses every workload: the history per workload, `verdict::decide`, and the rows.
/// `progress` is called once per workload analysed with (done, total).
pub async fn analyse(
    req: &Request<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Analysis, ReportError> {
    let mut skipped = Vec::new();
    let (targets, namespaces) = targets(req, &mut skipped).await?;
    let mut rows: Vec<(Recommendation, Chart)> = Vec::new();
    let mut report_now = 0;
    let mut notes = Vec::new();
    let total = targets.len();
    for (i, t) in targets.into_iter().enumerate() {
        let policy = req.policies.for_namespace(&t.workload.namespace);
        let what = format!(
            "{} {}/{}",
            t.kind_label, t.workload.namespace, t.workload.name
        );
        if let Err(why) = verdict::scope::of(&t.workload, &policy) {
            skipped.push(format!("{what}: {why}"));
            progress(i + 1, total);
            continue;
        }
        let query = HistoryQuery {
            key: WorkloadKey {
                namespace: t.workload.namespace.clone(),
                kind: t.kind_label.clone(),
                name: t.workload.name.clone(),
            },
            window_secs: policy.history.window.secs(),
        };
        let history: Option<Arc<WorkloadHistory>> = req.source.history().fetch(&query).await?;
        let status = match &history {
            Some(h) => HistoryStatus::Found(h),
            None => HistoryStatus::Missing,
        };
        let now = history.as_ref().map_or(0, |h| h.now);
        report_now = report_now.max(now);
        let verdict = verdict::decide(&t.workload, status, &policy, now);
        if let Some(why) = history.as_ref().and_then(|h| h.events_unseen.as_deref()) {
            let note = format!(
                "namespace {}: OOM kills cannot be seen without kube-state-metrics ({why}); \
                 nothing is lowered",
                t.workload.namespace
            );
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
        for cv in &verdict.containers {
            let ch = history
                .as_ref()
                .and_then(|h| h.containers.get(&cv.container));
            let p95 = ch
                .filter(|_| cv.recommended_request.is_some())
                .map(|c| c.peaks.p95);
            let chart = match (&history, ch) {
                (Some(h), Some(c)) => {
                    let fit = crate::forecast::fit_of(c);
                    Chart {
                        peaks: req.source.chart_peaks(&query, &cv.container, h),
                        now,
                        fit_at: (fit.at > 0).then_some(fit.at),
                        fit_level: fit.level,
                        fit_noise: fit.noise,
                        forecast: cv.forecast.clone(),
                    }
                }
                _ => Chart {
                    now,
                    ..Chart::default()
                },
            };
            rows.push((row(&t, cv, &policy, p95, verdict.note.as_deref()), chart));
        }
        progress(i + 1, total);
    }
    rows.sort_by(|a, b| risk_order(&a.0, &b.0));
    let (recommendations, charts) = rows.into_iter().unzip();
    Ok(Analysis {
        report: Report {
            api_version: "oomguard.io/v1".to_string(),
            kind: "RecommendationReport".to_string(),
            source: req.source.describe(),
            current_from: req
                .manifests
                .map_or_else(|| "runtime".to_string(), |m| m.name.clone()),
            namespaces,
            now: report_now,
            recommendations,
            skipped,
            notes,
        },
        charts,
    })
}

fn row(
    t: &Target,
    cv: &ContainerVerdict,
    policy: &PolicySpec,
    p95: Option<f64>,
    note: Option<&str>,
) -> Recommendation {
    let fc = cv.forecast.as_ref();
    Recommendation {
        namespace: t.workload.namespace.clone(),
        kind: t.kind_label.clone(),
        name: t.workload.name.clone(),
        container: cv.container.clone(),
        role: cv.role,
        current_from: t.from,
        request: cv.request,
        limit: cv.limit,
        peak: cv.peak,
        scraped_peak: cv.scraped_peak,
        statistic_name: policy.statistic.as_str().to_string(),
        statistic: cv.statistic,
        p95,
        oom_kills: cv.oom_kills,
        pattern: fc.map(|f| f.pattern),
        time_to_limit_secs: fc.and_then(|f| f.time_to_limit),
        horizon_secs: policy.forecast.horizon.secs(),
        forecast_at_horizon: fc.map(|f| f.at_horizon),
        forecast_low: fc.map(|f| f.low),
        forecast_high: fc.map(|f| f.high),
        recommended_request: cv.recommended_request,
        recommended_limit: cv.recommended,
        severity: cv.severity,
        mode: policy.mode,
        reason: match (cv.reasons.is_empty(), cv.severity, note) {
            (true, Severity::Unknown, Some(n)) => n.to_string(),
            _ => cv.reasons.join(" | "),
        },
    }
}

/// Riskiest first: severity, then the sooner time-to-limit (none last), then more OOM kills;
/// then by name, so that the order is stable.
pub fn risk_order(a: &Recommendation, b: &Recommendation) -> Ordering {
    b.severity
        .cmp(&a.severity)
        .then_with(|| match (a.time_to_limit_secs, b.time_to_limit_secs) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| b.oom_kills.cmp(&a.oom_kills))
        .then_with(|| {
            (&a.namespace, &a.kind, &a.name, &a.container).cmp(&(
                &b.namespace,
                &b.kind,
                &b.name,
                &b.container,
            ))
        })
}

/// The workloads to analyse, and the namespaces they are in.
async fn targets(
    req: &Request<'_>,
    skipped: &mut Vec<String>,
) -> Result<(Vec<Target>, Vec<String>), ReportError> {
    let mut out = Vec::new();
    if let Some(m) = req.manifests {
        let mut all_namespaces = BTreeSet::new();
        for doc in &m.docs {
            let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let kind_s = doc.get("kind").and_then(Value::as_str).unwrap_or("");
            let Some(kind) = WorkloadKind::from_api_version(api_version, kind_s) else {
                continue;
            };
            let namespace = doc
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            all_namespaces.insert(namespace.to_string());
            if !req.namespaces.is_empty() && !req.namespaces.iter().any(|n| n == namespace) {
                continue;
            }
            let workload = match Workload::from_object(kind, doc, namespace) {
                Ok(w) => w,
                Err(e) => {
                    skipped.push(format!("{}: {e}", m.name));
                    continue;
                }
            };
            if let Some(owner) = workload.operator_owner() {
                // Its operator sets its memory: the recommendation belongs in that resource.
                skipped.push(format!(
                    "{} {}/{}: managed by {owner}; set memory in {owner}",
                    kind.as_str(),
                    workload.namespace,
                    workload.name
                ));
                continue;
            }
            if workload.controlled_by.is_some() {
                continue;
            }
            out.push(Target {
                kind_label: kind.as_str().to_string(),
                workload,
                from: CurrentFrom::Manifest,
            });
        }
        let found: BTreeSet<String> = out.iter().map(|t| t.workload.namespace.clone()).collect();
        let namespaces: Vec<String> = if req.namespaces.is_empty() {
            found.iter().cloned().collect()
        } else {
            req.namespaces.to_vec()
        };
        for ns in &namespaces {
            if !found.contains(ns) {
                return Err(ReportError::NoWorkloads {
                    namespace: ns.clone(),
                    place: m.name.clone(),
                    known: known(&all_namespaces.iter().cloned().collect::<Vec<_>>()),
                });
            }
        }
        if namespaces.is_empty() {
            return Err(ReportError::Usage(format!(
                "{}: no pod-template workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, \
                 Job, CronJob, Pod, ReplicationController, DeploymentConfig, Rollout) to \
                 recommend for",
                m.name
            )));
        }
        // Prometheus: a namespace without any data is an error, not a page of "unknown".
        if let ReportSource::Prometheus(_) = req.source {
            for ns in &namespaces {
                let window = req.policies.for_namespace(ns).history.window.secs();
                req.source.workloads(ns, window).await?;
            }
        }
        return Ok((out, namespaces));
    }

    let namespaces: Vec<String> = match (req.source, req.namespaces.is_empty()) {
        (_, false) => req.namespaces.to_vec(),
        (ReportSource::File(f), true) => f.file().namespaces(),
        (ReportSource::Prometheus(p), true) => {
            return Err(ReportError::Usage(format!(
                "which namespaces? Pass --namespace NS (one or more) to query Prometheus at {} \
                 for, or -f MANIFESTS to take them from the manifests",
                p.url()
            )))
        }
    };
    for ns in &namespaces {
        let window = req.policies.for_namespace(ns).history.window.secs();
        for key in req.source.workloads(ns, window).await? {
            let query = HistoryQuery {
                key: key.clone(),
                window_secs: window,
            };
            let Some(h) = req.source.history().fetch(&query).await? else {
                continue;
            };
            let kind = WorkloadKind::from_group_kind(group_of(&key.kind), &key.kind);
            let object = runtime_object(kind, &key, &h);
            // A pattern class ("~name-xxxxx": DaemonSet, ReplicaSet or Job) reads as a
            // DaemonSet: only the containers matter here.
            let workload = Workload::from_object(
                kind.unwrap_or(WorkloadKind::DaemonSet),
                &object,
                &key.namespace,
            )
            .map_err(|e| ReportError::Usage(format!("{key}: {e}")))?;
            out.push(Target {
                workload,
                kind_label: key.kind.clone(),
                from: CurrentFrom::Runtime,
            });
        }
    }
    Ok((out, namespaces))
}

fn group_of(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps",
        "Job" | "CronJob" => "batch",
        _ => "",
    }
}

/// A manifest-like object for a workload known only from its history: its containers with the
/// limits they ran with (no requests: the history does not know them).
fn runtime_object(kind: Option<WorkloadKind>, key: &WorkloadKey, h: &WorkloadHistory) -> Value {
    let containers: Vec<Value> = h
        .containers
        .iter()
        .map(|(name, c)| {
            let mut v = json!({ "name": name });
            if let Some(l) = c.runtime_limit {
                v["resources"] = json!({ "limits": { "memory": format!("{}", l.round() as u64) } });
            }
            v
        })
        .collect();
    let pod_spec = json!({ "containers": containers });
    let spec = match kind {
        Some(WorkloadKind::Pod) => pod_spec,
        Some(WorkloadKind::CronJob) => {
            json!({ "jobTemplate": { "spec": { "template": { "spec": pod_spec } } } })
        }
        _ => json!({ "template": { "spec": pod_spec } }),
    };
    json!({
        "metadata": { "name": key.name, "namespace": key.namespace },
        "spec": spec,
    })
}

/// Writes the report in a format.
pub fn write(analysis: &Analysis, format: Format, out: &mut dyn Write) -> anyhow::Result<()> {
    let report = &analysis.report;
    match format {
        Format::Table => table::write(report, out)?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)?;
        }
        Format::Yaml => out.write_all(serde_norway::to_string(report)?.as_bytes())?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for r in &report.recommendations {
                w.serialize(r)?;
            }
            w.flush()?;
        }
        Format::Html => out.write_all(html::render(analysis)?.as_bytes())?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, severity: Severity, ttl: Option<f64>, ooms: u32) -> Recommendation {
        Recommendation {
            namespace: "ns".into(),
            kind: "Deployment".into(),
            name: name.into(),
            container: "c".into(),
            role: ContainerRole::Main,
            current_from: CurrentFrom::Manifest,
            request: None,
            limit: None,
            peak: None,
            scraped_peak: None,
            statistic_name: "max".into(),
            statistic: None,
            p95: None,
            oom_kills: ooms,
            pattern: None,
            time_to_limit_secs: ttl,
            horizon_secs: 86_400,
            forecast_at_horizon: None,
            forecast_low: None,
            forecast_high: None,
            recommended_request: None,
            recommended_limit: None,
            severity,
            mode: Mode::Warn,
            reason: String::new(),
        }
    }

    #[test]
    fn risk_order_is_severity_then_time_to_limit_then_oom_kills() {
        let mut rows = [
            row("info", Severity::Info, None, 0),
            row("crit-no-ttl-many-ooms", Severity::Critical, None, 50),
            row("crit-ttl-2h", Severity::Critical, Some(7200.0), 0),
            row("warn", Severity::Warn, None, 3),
            row("crit-ttl-10m", Severity::Critical, Some(600.0), 0),
            row("crit-no-ttl-few-ooms", Severity::Critical, None, 2),
        ];
        rows.sort_by(risk_order);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "crit-ttl-10m",
                "crit-ttl-2h",
                "crit-no-ttl-many-ooms",
                "crit-no-ttl-few-ooms",
                "warn",
                "info"
            ]
        );
    }

    #[test]
    fn censored_containers_keep_their_request_and_limit() {
        use crate::history::{ContainerHistory, OomKill, PeakStats, WorkloadHistory};
        let mi = crate::quantity::MI;
        let obj = json!({"metadata": {"name": "w"}, "spec": {"template": {"spec": {"containers": [
            {"name": "c", "resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "100Mi"}}}]}}}});
        let workload = Workload::from_object(WorkloadKind::Deployment, &obj, "ns").unwrap();
        let peaks: Vec<f64> = (0..100)
            .map(|i| (20.0 + f64::from(i) / 10.0) * mi as f64)
            .collect();
        let now = 1_800_000_000;
        let mut c = ContainerHistory {
            covered_secs: 86_400,
            peaks: PeakStats::from_peaks(&peaks),
            ..Default::default()
        };
        let t = Target {
            workload,
            kind_label: "Deployment".into(),
            from: CurrentFrom::Manifest,
        };
        let policy = PolicySpec::default();
        for censored in [false, true] {
            if censored {
                c.oom_kills = vec![OomKill {
                    t: now - 600,
                    limit: Some(64.0 * mi as f64),
                }];
            }
            let h = WorkloadHistory {
                now,
                window_secs: 14 * 86_400,
                containers: [("c".to_string(), c.clone())].into_iter().collect(),
                events_unseen: None,
            };
            let v = verdict::decide(&t.workload, HistoryStatus::Found(&h), &policy, now);
            let r = super::row(&t, &v.containers[0], &policy, Some(c.peaks.p95), None);
            if censored {
                // A kill at 64Mi: the peaks (under 30Mi) say nothing about what it needs.
                assert_eq!(r.recommended_limit, Some(256 * mi));
                assert_eq!(r.recommended_request, Some(100 * mi));
            } else {
                // Clean peaks: the limit no lower than the request, the request from the p95.
                assert_eq!(r.recommended_limit, Some(100 * mi));
                assert_eq!(r.recommended_request, Some(30 * mi));
            }
        }
    }

    #[test]
    fn the_recommendation_is_never_below_what_the_settings_need() {
        use crate::history::{ContainerHistory, PeakStats, WorkloadHistory};
        let mi = crate::quantity::MI;
        // `java -Xmx512m` whose peaks were at most 300 MiB: the history alone would keep its
        // 512Mi limit, but the heap alone can fill it.
        let obj = json!({"metadata": {"name": "w"}, "spec": {"template": {"spec": {"containers": [
            {"name": "c", "command": ["java", "-Xmx512m", "-jar", "app.jar"],
             "resources": {"limits": {"memory": "512Mi"}}}]}}}});
        let t = Target {
            workload: Workload::from_object(WorkloadKind::Deployment, &obj, "ns").unwrap(),
            kind_label: "Deployment".into(),
            from: CurrentFrom::Manifest,
        };
        let now = 1_800_000_000;
        let peaks: Vec<f64> = (0..2000)
            .map(|i| (200 + i % 100) as f64 * mi as f64)
            .collect();
        let c = ContainerHistory {
            covered_secs: 7 * 86_400,
            peaks: PeakStats::from_peaks(&peaks),
            ..Default::default()
        };
        let h = WorkloadHistory {
            now,
            window_secs: 7 * 86_400,
            containers: [("c".to_string(), c.clone())].into_iter().collect(),
            events_unseen: None,
        };
        let policy = PolicySpec::default();
        let v = verdict::decide(&t.workload, HistoryStatus::Found(&h), &policy, now);
        let r = super::row(&t, &v.containers[0], &policy, Some(c.peaks.p95), None);
        let floor = v.containers[0].floor.expect("a floor from -Xmx512m");
        assert!(floor > 512 * mi);
        assert_eq!(r.recommended_limit, Some(floor));
        assert_eq!(r.severity, Severity::Critical);
        assert!(r.reason.contains("-Xmx512m"), "{}", r.reason);
    }
}
