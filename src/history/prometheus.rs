//! History from Prometheus (or a Thanos querier), batched per namespace and cached.
//!
//! One refresh of a `(namespace, window)` sends two queries, whatever the number of workloads in
//! the namespace (see [`queries`] and `bench/PROMETHEUS.md` for their exact text):
//! 1. **window** (range over the window, 5-minute step): per workload container, the 5-minute
//!    peaks (max, p99/p98/p95, count and covered time are computed from them here, as
//!    Prometheus' `*_over_time` functions would; the recent ones are the forecast's samples), and
//!    per pod container the non-zero restarts and OOM kills per interval (summed here);
//! 2. **limit** (instant): the last memory limit in the recent span.
//!
//! The pod -> workload mapping is costly per step (joins and `label_replace` chains); the window
//! query joins it once per step for everything it returns.
//!
//! Pods are mapped to their workload inside PromQL (so that "the peak of an interval" is the
//! peak over all pods of the workload): by `kube_pod_owner` / `kube_replicaset_owner` /
//! `kube_job_owner` when kube-state-metrics exports them, else by the pod-name pattern of each
//! controller. Results are cached per `(namespace, window)` by [`super::cache::TtlCache`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use prometheus_http_query::reqwest;
use prometheus_http_query::response::{Data, InstantVector, RangeVector};
use prometheus_http_query::Client;

use super::cache::{CacheStatsSnapshot, TtlCache};
use super::{
    ContainerHistory, HistoryError, HistoryQuery, HistorySource, OomKill, PeakStats, Sample,
    WorkloadHistory,
};

/// Seconds each per-interval peak covers (and the step of every query).
pub const STEP_SECS: i64 = 300;

/// Command-line flags for the Prometheus history source (shared by `serve`, `check`, `recommend`).
#[derive(Debug, Clone, clap::Args)]
pub struct PrometheusArgs {
    /// Prometheus or Thanos querier base URL, e.g.
    /// https://thanos-querier.openshift-monitoring.svc:9091. Without it, no Prometheus history.
    #[arg(long = "prometheus", value_name = "URL", env = "OOMGUARD_PROMETHEUS")]
    pub prometheus: Option<String>,
    /// File with a bearer token sent with every query (re-read at every refresh, so a rotated
    /// service-account token is picked up), e.g.
    /// /var/run/secrets/kubernetes.io/serviceaccount/token.
    #[arg(long, value_name = "FILE")]
    pub prometheus_token_file: Option<PathBuf>,
    /// PEM file with the CA certificate(s) that signed Prometheus' serving certificate (added to
    /// the system roots), e.g. the service-ca bundle on OpenShift.
    #[arg(long, value_name = "FILE")]
    pub prometheus_ca_file: Option<PathBuf>,
    /// Do not verify Prometheus' TLS certificate. Only for experiments: anyone on the path can
    /// then feed oomguard made-up history.
    #[arg(long, default_value_t = false)]
    pub prometheus_insecure_skip_tls_verify: bool,
    /// Deadline of every Prometheus call (e.g. "2m", "30s"). Admissions never wait this long
    /// (they wait `--history-timeout`); a refresh that outlives them finishes in the background
    /// and warms the cache. Prometheus' own default query timeout is 2m.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub prometheus_timeout: Duration,
    /// How long fetched history is served from memory. A background refresh starts at half of it.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub history_ttl: Duration,
    /// Span of recent 5-minute peaks fetched for the forecast (capped at the policy window).
    #[arg(long, value_name = "DURATION", default_value = "2d", value_parser = parse_duration)]
    pub history_recent: Duration,
}

impl Default for PrometheusArgs {
    fn default() -> Self {
        PrometheusArgs {
            prometheus: None,
            prometheus_token_file: None,
            prometheus_ca_file: None,
            prometheus_insecure_skip_tls_verify: false,
            prometheus_timeout: Duration::from_secs(120),
            history_ttl: Duration::from_secs(300),
            history_recent: Duration::from_secs(2 * 86_400),
        }
    }
}

/// Parses "500ms", "2s", "5m", "3h", "14d", "1w" (one unit, integer).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: expected a number with a unit (ms, s, m, h, d, w)"))?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with a unit (ms, s, m, h, d, w)"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (ms, s, m, h, d, w)"
            ))
        }
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?}: too large"))
}

/// Counters of one source (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceStats {
    pub cache: CacheStatsSnapshot,
    /// HTTP queries sent to Prometheus.
    pub queries: u64,
    /// Queries that failed (error, timeout, bad answer).
    pub query_errors: u64,
}

/// The Prometheus history source. Cheap to share behind an `Arc`.
pub struct PrometheusSource {
    shared: Arc<Shared>,
    cache: TtlCache<(String, u64), NamespaceHistory, HistoryError>,
}

struct Shared {
    client: Client,
    url: String,
    token_file: Option<PathBuf>,
    timeout: Duration,
    recent_secs: u64,
    /// Fixed evaluation time (tests and replays); `None` = the clock.
    eval_time: Option<i64>,
    queries: AtomicU64,
    query_errors: AtomicU64,
}

/// Everything one refresh learnt about a namespace: histories keyed by (workload kind, name) as
/// the mapping in PromQL labels them (see [`queries::mapping`]).
pub struct NamespaceHistory {
    workloads: HashMap<(String, String), Arc<WorkloadHistory>>,
}

impl NamespaceHistory {
    /// Number of workloads seen in the namespace.
    pub fn len(&self) -> usize {
        self.workloads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workloads.is_empty()
    }

    /// The `(workload kind, name)` of every workload seen, sorted. The kind is what the mapping
    /// labelled it: an owner kind from kube-state-metrics, or a name-pattern class
    /// (see [`queries::pattern_class`]).
    pub fn workload_keys(&self) -> Vec<(String, String)> {
        let mut keys: Vec<(String, String)> = self.workloads.keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl PrometheusSource {
    /// Builds the source from the flags; `Ok(None)` when `--prometheus` is not given.
    pub fn from_args(args: &PrometheusArgs) -> Result<Option<PrometheusSource>, HistoryError> {
        let Some(url) = args.prometheus.as_deref() else {
            return Ok(None);
        };
        let err = |message: String| HistoryError::Prometheus {
            url: url.to_string(),
            message,
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(err(
                "the URL must start with http:// or https://".to_string()
            ));
        }
        if args.prometheus_timeout.is_zero() {
            return Err(err("--prometheus-timeout must be more than 0".to_string()));
        }
        if let Some(path) = &args.prometheus_token_file {
            let token = std::fs::read_to_string(path).map_err(|e| {
                err(format!(
                    "cannot read --prometheus-token-file {}: {e}",
                    path.display()
                ))
            })?;
            if token.trim().is_empty() {
                return Err(err(format!(
                    "--prometheus-token-file {} is empty",
                    path.display()
                )));
            }
        }
        let mut builder = reqwest::Client::builder()
            .timeout(args.prometheus_timeout + Duration::from_millis(250))
            .connect_timeout(args.prometheus_timeout)
            .pool_idle_timeout(Duration::from_secs(60));
        if let Some(path) = &args.prometheus_ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                err(format!(
                    "cannot read --prometheus-ca-file {}: {e}",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                err(format!(
                    "--prometheus-ca-file {}: not PEM certificates: {e}",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(err(format!(
                    "--prometheus-ca-file {} holds no certificate",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if args.prometheus_insecure_skip_tls_verify {
            tracing::warn!(
                url,
                "--prometheus-insecure-skip-tls-verify: Prometheus' certificate is not verified"
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| err(format!("cannot build the HTTP client: {e}")))?;
        let client = Client::from(http, url).map_err(|e| err(format!("bad URL: {e}")))?;
        Ok(Some(PrometheusSource {
            shared: Arc::new(Shared {
                client,
                url: url.to_string(),
                token_file: args.prometheus_token_file.clone(),
                timeout: args.prometheus_timeout,
                recent_secs: args.history_recent.as_secs().max(STEP_SECS as u64),
                eval_time: None,
                queries: AtomicU64::new(0),
                query_errors: AtomicU64::new(0),
            }),
            cache: TtlCache::new(args.history_ttl),
        }))
    }

    /// A source for a plain URL with default settings (tests, tools).
    pub fn new(url: &str) -> Result<PrometheusSource, HistoryError> {
        let args = PrometheusArgs {
            prometheus: Some(url.to_string()),
            ..PrometheusArgs::default()
        };
        Self::from_args(&args)?.ok_or_else(|| HistoryError::Prometheus {
            url: url.to_string(),
            message: "no URL".to_string(),
        })
    }

    /// Evaluates every query at this unix time instead of the clock's (tests, replays of
    /// backfilled data: Prometheus cannot backfill the last hours before now).
    /// Must be called before the source is shared.
    pub fn with_eval_time(mut self, unix_secs: i64) -> PrometheusSource {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.eval_time = Some(unix_secs);
        }
        self
    }

    pub fn url(&self) -> &str {
        &self.shared.url
    }

    pub fn stats(&self) -> SourceStats {
        SourceStats {
            cache: self.cache.stats().snapshot(),
            queries: self.shared.queries.load(Ordering::Relaxed),
            query_errors: self.shared.query_errors.load(Ordering::Relaxed),
        }
    }

    /// The namespace's history for a window, from the cache or Prometheus (see the cache docs).
    pub async fn namespace(
        &self,
        namespace: &str,
        window_secs: u64,
    ) -> Result<Arc<NamespaceHistory>, HistoryError> {
        let key = (namespace.to_string(), window_secs);
        let shared = self.shared.clone();
        let ns = namespace.to_string();
        self.cache
            .get_or_load(
                &key,
                move || async move { shared.load(&ns, window_secs).await },
            )
            .await
    }

    /// Refreshes a namespace now (e.g. a reconciler's periodic sweep), bypassing the TTL.
    pub async fn refresh(
        &self,
        namespace: &str,
        window_secs: u64,
    ) -> Result<NamespaceHistory, HistoryError> {
        self.shared.load(namespace, window_secs).await
    }
}

impl HistorySource for PrometheusSource {
    fn fetch<'a>(
        &'a self,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Option<Arc<WorkloadHistory>>, HistoryError>> {
        Box::pin(async move {
            let ns = self
                .namespace(&query.key.namespace, query.window_secs)
                .await?;
            Ok(lookup(&ns, &query.key.kind, &query.key.name))
        })
    }

    fn name(&self) -> &'static str {
        "prometheus"
    }
}

/// Finds a workload: by the owner kind kube-state-metrics reports, else by the name-pattern class
/// of its kind.
fn lookup(ns: &NamespaceHistory, kind: &str, name: &str) -> Option<Arc<WorkloadHistory>> {
    let exact = ns.workloads.get(&(kind.to_string(), name.to_string()));
    if let Some(h) = exact {
        return Some(h.clone());
    }
    let class = queries::pattern_class(kind)?;
    ns.workloads
        .get(&(class.to_string(), name.to_string()))
        .cloned()
}

impl Shared {
    fn now(&self) -> i64 {
        self.eval_time.unwrap_or_else(super::unix_now)
    }

    fn err(&self, message: impl Into<String>) -> HistoryError {
        HistoryError::Prometheus {
            url: self.url.clone(),
            message: message.into(),
        }
    }

    async fn auth_header(&self) -> Result<Option<reqwest::header::HeaderValue>, HistoryError> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let token = tokio::fs::read_to_string(path).await.map_err(|e| {
            self.err(format!(
                "cannot read the token file {}: {e}",
                path.display()
            ))
        })?;
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| {
                self.err(format!(
                    "the token file {} holds characters not allowed in a header",
                    path.display()
                ))
            })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// One refresh: the two batched queries of a namespace, then the assembly per workload.
    async fn load(
        &self,
        namespace: &str,
        window_secs: u64,
    ) -> Result<NamespaceHistory, HistoryError> {
        let now = self.now();
        let window = i64::try_from(window_secs)
            .map_err(|_| self.err("window too large"))?
            .max(STEP_SECS);
        let recent = i64::try_from(self.recent_secs)
            .unwrap_or(i64::MAX)
            .min(window)
            .max(STEP_SECS);
        let auth = self.auth_header().await?;
        // The 5-minute steps in (now - window, now]: the intervals of the file source.
        let end = now - now.rem_euclid(STEP_SECS);
        let first = now - window + 1;
        let start = first + (STEP_SECS - first.rem_euclid(STEP_SECS)) % STEP_SECS;
        let q = queries::Queries::new(namespace, window, recent);

        let series = self.range(&q.window, start, end, auth.clone());
        let limits = self.instant(&q.limit, now, auth);
        let (series, limits) = futures::try_join!(series, limits)?;
        Ok(assemble(now, window_secs, now - recent, series, limits))
    }

    async fn instant(
        &self,
        query: &str,
        at: i64,
        auth: Option<reqwest::header::HeaderValue>,
    ) -> Result<Vec<InstantVector>, HistoryError> {
        let mut b = self
            .client
            .query(query)
            .at(at)
            .timeout(millis(self.timeout));
        if let Some(auth) = auth {
            b = b.header(reqwest::header::AUTHORIZATION, auth);
        }
        match self.call(b.post()).await? {
            Data::Vector(v) => Ok(v),
            other => Err(self.err(format!(
                "expected an instant vector, got {}",
                data_kind(&other)
            ))),
        }
    }

    async fn range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        auth: Option<reqwest::header::HeaderValue>,
    ) -> Result<Vec<RangeVector>, HistoryError> {
        let mut b = self
            .client
            .query_range(query, start, end, STEP_SECS as f64)
            .timeout(millis(self.timeout));
        if let Some(auth) = auth {
            b = b.header(reqwest::header::AUTHORIZATION, auth);
        }
        match self.call(b.post()).await? {
            Data::Matrix(m) => Ok(m),
            other => Err(self.err(format!(
                "expected a range vector, got {}",
                data_kind(&other)
            ))),
        }
    }

    /// Sends one query under the deadline and counts it.
    async fn call(
        &self,
        request: impl std::future::Future<
            Output = Result<
                prometheus_http_query::response::PromqlResult,
                prometheus_http_query::Error,
            >,
        >,
    ) -> Result<Data, HistoryError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Err(HistoryError::Timeout(millis(self.timeout).unsigned_abs())),
            Ok(Err(e)) => Err(self.err(describe(&e))),
            Ok(Ok(r)) => Ok(r.into_inner().0),
        };
        if result.is_err() {
            self.query_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn data_kind(d: &Data) -> &'static str {
    match d {
        Data::Vector(_) => "an instant vector",
        Data::Matrix(_) => "a range vector",
        Data::Scalar(_) => "a scalar",
    }
}

/// The error with its causes, on one line.
fn describe(e: &prometheus_http_query::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

type WorkloadId = (String, String);

fn workload_labels(metric: &HashMap<String, String>) -> Option<(WorkloadId, String)> {
    let kind = metric.get("workload_kind")?;
    let name = metric.get("workload")?;
    let container = metric.get("container")?;
    if kind.is_empty() || name.is_empty() || container.is_empty() {
        return None;
    }
    Some(((kind.clone(), name.clone()), container.clone()))
}

#[derive(Default)]
struct Parts {
    max: Option<f64>,
    p99: Option<f64>,
    p98: Option<f64>,
    p95: Option<f64>,
    intervals: Option<f64>,
    covered: Option<f64>,
    limit: Option<f64>,
    restarts: Vec<i64>,
    ooms: Vec<i64>,
    samples: Vec<Sample>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Prometheus' `max_over_time`: the largest value, NaN only if all are NaN.
fn prom_max(values: &[f64]) -> Option<f64> {
    let mut it = values.iter().copied();
    let first = it.next()?;
    Some(it.fold(first, |m, v| if v > m || m.is_nan() { v } else { m }))
}

/// Prometheus' `quantile_over_time` (NaN sorts first, linear interpolation between ranks).
fn prom_quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    super::quantile_sorted(sorted, q)
}

/// Turns the two answers into histories, one per workload. Tolerates missing or odd series
/// (skips them): a partial answer gives partial history, never a panic.
///
/// The statistics are those the former server-side `max_over_time`, `quantile_over_time`,
/// `count_over_time` and `timestamp` subqueries computed over the same 5-minute steps.
fn assemble(
    now: i64,
    window_secs: u64,
    recent_after: i64,
    series: Vec<RangeVector>,
    limits: Vec<InstantVector>,
) -> NamespaceHistory {
    let mut parts: HashMap<WorkloadId, BTreeMap<String, Parts>> = HashMap::new();
    // (workload, container, stat) -> interval end -> sum over the pods.
    let mut events: HashMap<(WorkloadId, String, bool), BTreeMap<i64, f64>> = HashMap::new();
    for v in series {
        let Some((id, container)) = workload_labels(v.metric()) else {
            continue;
        };
        match v.metric().get("stat").map(String::as_str) {
            Some("peak") => {
                let mut points: Vec<(i64, f64)> = v
                    .samples()
                    .iter()
                    .map(|s| (s.timestamp() as i64, s.value()))
                    .collect();
                points.sort_by_key(|p| p.0);
                let p = parts.entry(id).or_default().entry(container).or_default();
                let (Some(first), Some(last)) = (points.first(), points.last()) else {
                    continue;
                };
                p.covered = Some((last.0 - first.0) as f64);
                p.intervals = Some(points.len() as f64);
                let mut values: Vec<f64> = points.iter().map(|p| p.1).collect();
                p.max = prom_max(&values).and_then(finite);
                values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Less,
                    (false, true) => std::cmp::Ordering::Greater,
                    (false, false) => a.total_cmp(b),
                });
                p.p99 = finite(prom_quantile(&values, 0.99));
                p.p98 = finite(prom_quantile(&values, 0.98));
                p.p95 = finite(prom_quantile(&values, 0.95));
                p.samples = points
                    .into_iter()
                    .filter(|&(t, b)| t > recent_after && b.is_finite() && b >= 0.0)
                    .map(|(t, bytes)| Sample { t, bytes })
                    .collect();
            }
            Some(stat @ ("restarts" | "oom")) => {
                let sums = events.entry((id, container, stat == "oom")).or_default();
                for s in v.samples() {
                    *sums.entry(s.timestamp() as i64).or_insert(0.0) += s.value();
                }
            }
            _ => {}
        }
    }
    for ((id, container, oom), sums) in events {
        let p = parts.entry(id).or_default().entry(container).or_default();
        let list = if oom { &mut p.ooms } else { &mut p.restarts };
        for (t, n) in sums {
            // `> 0` drops NaN too. One entry per event, stamped with the end of its 5-minute
            // interval. Counts are whole numbers; the cap guards against a nonsense answer
            // blowing up memory.
            if n.is_finite() && n > 0.0 {
                let count = n.round().clamp(0.0, 1_000.0) as usize;
                list.extend(std::iter::repeat_n(t, count));
            }
        }
    }
    for v in limits {
        let Some((id, container)) = workload_labels(v.metric()) else {
            continue;
        };
        let p = parts.entry(id).or_default().entry(container).or_default();
        p.limit = finite(v.sample().value());
    }

    let workloads = parts
        .into_iter()
        .map(|(id, containers)| {
            let containers = containers
                .into_iter()
                .map(|(name, p)| (name, container_history(p)))
                .collect();
            (
                id,
                Arc::new(WorkloadHistory {
                    now,
                    window_secs,
                    containers,
                    events_unseen: None,
                }),
            )
        })
        .collect();
    NamespaceHistory { workloads }
}

fn container_history(mut p: Parts) -> ContainerHistory {
    p.ooms.sort_unstable();
    let mut restarts = p.restarts;
    // OOM kills are restarts too (as in the file source), also when only cAdvisor saw them.
    let mut extra: Vec<i64> = p
        .ooms
        .iter()
        .copied()
        .filter(|t| !restarts.contains(t))
        .collect();
    restarts.append(&mut extra);
    restarts.sort_unstable();
    let max = p.max.unwrap_or(0.0);
    ContainerHistory {
        covered_secs: p.covered.map(|c| c.max(0.0) as u64).unwrap_or(0),
        peaks: PeakStats {
            max,
            p99: p.p99.unwrap_or(max),
            p98: p.p98.unwrap_or(max),
            p95: p.p95.unwrap_or(max),
            intervals: p
                .intervals
                .map(|n| n.clamp(0.0, f64::from(u32::MAX)) as u32)
                .unwrap_or(0),
        },
        samples: p.samples,
        restarts,
        oom_kills: p.ooms.iter().map(|&t| OomKill { t, limit: None }).collect(),
        // 0 means "no limit" in cAdvisor.
        runtime_limit: p.limit.filter(|&l| l > 0.0),
        ..Default::default()
    }
}

/// The PromQL oomguard sends. Public so that the documentation and the tests can show it.
pub mod queries {
    /// Container selector filters: real containers only (not the pause container, not the
    /// pod-level cgroup).
    const CONTAINER_FILTER: &str = r#"container!="",container!="POD",image!="""#;

    /// Pod-name suffix alphabet of Kubernetes' generated names (no vowels, no 0/1/3).
    const SAFE: &str = "[bcdfghjklmnpqrstvwxz2456789]";

    /// The workload-kind label value the name patterns give, for a workload kind; `None` for
    /// kinds without a pattern (only kube-state-metrics can map those).
    pub fn pattern_class(kind: &str) -> Option<&'static str> {
        match kind {
            "Deployment" => Some("Deployment"),
            "StatefulSet" => Some("StatefulSet"),
            "CronJob" => Some("CronJob"),
            "Pod" => Some("Pod"),
            // `<name>-<5 chars>`: the pattern cannot tell these apart.
            "DaemonSet" | "ReplicaSet" | "Job" => Some("~name-xxxxx"),
            _ => None,
        }
    }

    /// Escapes a value for a PromQL double-quoted string.
    pub fn quote(value: &str) -> String {
        let mut out = String::with_capacity(value.len() + 2);
        out.push('"');
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// `label_replace` shorthand.
    fn lr(inner: &str, dst: &str, replacement: &str, src: &str, regex: &str) -> String {
        format!(r#"label_replace({inner}, "{dst}", "{replacement}", "{src}", "{regex}")"#)
    }

    /// Pods owned by a `child` controller (ReplicaSet, Job) mapped to the child's owner
    /// (Deployment, CronJob), or to the child itself when it has no owner (`<none>`).
    fn via_parent(ns: &str, child_kind: &str, child_label: &str, owner_metric: &str) -> String {
        let pods = lr(
            &format!(
                r#"kube_pod_owner{{namespace={ns},owner_kind="{child_kind}",owner_is_controller!="false"}}"#
            ),
            child_label,
            "$1",
            "owner_name",
            "(.+)",
        );
        let parents = lr(
            &lr(
                &format!("{owner_metric}{{namespace={ns}}}"),
                "parent_kind",
                "$1",
                "owner_kind",
                "(.+)",
            ),
            "parent_name",
            "$1",
            "owner_name",
            "(.+)",
        );
        let joined = format!(
            "label_join({pods} * on ({child_label}) group_left (parent_kind, parent_name) \
             group by ({child_label}, parent_kind, parent_name) ({parents}), \
             \"tmp\", \";\", \"parent_kind\", \"parent_name\", \"{child_label}\")"
        );
        // tmp = "<parent kind>;<parent name>;<child name>"
        let kind = lr(&joined, "workload_kind", "$1", "tmp", "([^;<]+);.*");
        let kind = lr(&kind, "workload_kind", child_kind, "tmp", "<none>;.*");
        let name = lr(&kind, "workload", "$1", "tmp", "[^;<]+;([^;]+);.*");
        lr(&name, "workload", "$1", "tmp", "<none>;[^;]*;(.+)")
    }

    /// Pod → workload from kube-state-metrics: one series per pod with labels
    /// `pod, workload_kind, workload` and value 1.
    pub fn mapping_ksm(ns: &str) -> String {
        let direct = lr(
            &lr(
                &format!(
                    r#"kube_pod_owner{{namespace={ns},owner_kind!~"ReplicaSet|Job|<none>|",owner_is_controller!="false"}}"#
                ),
                "workload_kind",
                "$1",
                "owner_kind",
                "(.+)",
            ),
            "workload",
            "$1",
            "owner_name",
            "(.+)",
        );
        let bare = lr(
            &lr(
                &format!(r#"kube_pod_owner{{namespace={ns},owner_kind=~"<none>|"}}"#),
                "workload_kind",
                "Pod",
                "",
                "",
            ),
            "workload",
            "$1",
            "pod",
            "(.+)",
        );
        let rs = via_parent(ns, "ReplicaSet", "replicaset", "kube_replicaset_owner");
        let job = via_parent(ns, "Job", "job_name", "kube_job_owner");
        format!("group by (pod, workload_kind, workload) ({direct} or {bare} or {rs} or {job})")
    }

    /// Pod → workload from the pod name, for pods kube-state-metrics does not know. One class
    /// per pod; later patterns win: `<name>-<5>` (DaemonSet, ReplicaSet, Job), StatefulSet
    /// `<name>-<ordinal>`, Deployment `<name>-<hash 6..10>-<5>`, CronJob `<name>-<minutes>-<5>`;
    /// otherwise the pod is its own workload (kind Pod).
    pub fn mapping_pattern(ns: &str) -> String {
        let pods = format!(
            "group by (pod) (container_memory_working_set_bytes{{namespace={ns},{CONTAINER_FILTER}}})"
        );
        let mut e = lr(
            &lr(&pods, "workload_kind", "Pod", "", ""),
            "workload",
            "$1",
            "pod",
            "(.+)",
        );
        let rules = [
            ("~name-xxxxx", format!("(.+)-{SAFE}{{5}}")),
            ("StatefulSet", "(.+)-[0-9]+".to_string()),
            ("Deployment", format!("(.+)-{SAFE}{{6,10}}-{SAFE}{{5}}")),
            ("CronJob", format!("(.+)-[0-9]{{8,}}-{SAFE}{{5}}")),
        ];
        for (kind, regex) in rules {
            e = lr(
                &lr(&e, "workload_kind", kind, "pod", &regex),
                "workload",
                "$1",
                "pod",
                &regex,
            );
        }
        e
    }

    /// The full mapping: kube-state-metrics where it knows the pod, the name pattern elsewhere.
    pub fn mapping(ns: &str) -> String {
        let ksm = mapping_ksm(ns);
        let pattern = mapping_pattern(ns);
        // `or on (pod)`: pattern series only for pods kube-state-metrics does not map.
        format!("({ksm} or on (pod) {pattern})")
    }

    /// Adds the workload labels to a per-pod expression and aggregates per workload container.
    fn per_workload(agg: &str, per_pod: &str, mapping: &str) -> String {
        format!(
            "{agg} by (workload_kind, workload, container) ({per_pod} * on (pod) group_left (workload_kind, workload) {mapping})"
        )
    }

    /// `x - x offset 5m` per pod container, counting a series' first value when it is new.
    /// `(now - before) or now` is `(now - before) or (now unless before)` (both sides have the
    /// labels `pod, container` only) with one evaluation of `before` less per step.
    fn per_interval_increase(metric_selector: &str) -> String {
        let now = format!("max by (pod, container) ({metric_selector})");
        let before = format!("max by (pod, container) ({metric_selector} offset 5m)");
        format!("(({now} - {before}) or {now})")
    }

    /// The queries of one refresh.
    pub struct Queries {
        /// Per-interval peak of the working set per workload container (a per-step expression).
        pub peak: String,
        /// Range query over the window, step 5m. Per workload container: the per-interval peaks
        /// (`stat="peak"`, every interval); per pod container (label `epod`): restarts
        /// (`stat="restarts"`) and OOM kills (`stat="oom"`) per interval, non-zero points only
        /// (summed per workload container by the client). The mapping is evaluated once per step.
        pub window: String,
        /// Instant query at now: the last memory limit in the recent span per workload container.
        pub limit: String,
    }

    impl Queries {
        pub fn new(namespace: &str, _window_secs: i64, recent_secs: i64) -> Queries {
            let ns = quote(namespace);
            let m = mapping(&ns);
            let wss =
                format!("container_memory_working_set_bytes{{namespace={ns},{CONTAINER_FILTER}}}");
            let peak_pod = format!("max by (pod, container) (max_over_time({wss}[5m]))");
            let peak = per_workload("max", &peak_pod, &m);
            let limit = per_workload(
                "max",
                &format!("container_spec_memory_limit_bytes{{namespace={ns},{CONTAINER_FILTER}}}"),
                &m,
            );
            // Subquery ranges are closed in Prometheus 2.x; one second less gives the
            // (now - recent, now] of the file source: recent/5m intervals.
            let r = format!("{}s", (recent_secs - 1).max(1));
            let limit = format!("last_over_time(({limit})[{r}:5m])");

            let restarts = per_interval_increase(&format!(
                "kube_pod_container_status_restarts_total{{namespace={ns}}}"
            ));
            let oom_ksm = format!(
                "({restarts} * on (pod, container) group_left () \
                 (max by (pod, container) (kube_pod_container_status_last_terminated_reason{{namespace={ns},reason=\"OOMKilled\"}}) == 1))"
            );
            let oom_cadvisor = per_interval_increase(&format!(
                "container_oom_events_total{{namespace={ns},{CONTAINER_FILTER}}}"
            ));
            let ooms = format!(
                "max by (pod, container) ({} or {})",
                lr(&oom_ksm, "src", "ksm", "", ""),
                lr(&oom_cadvisor, "src", "cadvisor", "", "")
            );
            let tag = |e: &str, stat: &str| lr(e, "stat", stat, "", "");
            // Events stay per pod (`epod`) through the aggregation: the client sums them per
            // workload container and keeps the positive sums, as `sum by (...) (...) > 0` would.
            // Zeros add nothing to a sum, so only non-zero points are sent.
            let per_pod = |e: &str, stat: &str| {
                lr(
                    &tag(&format!("({e} != 0)"), stat),
                    "epod",
                    "$1",
                    "pod",
                    "(.+)",
                )
            };
            // One join with the mapping for all three (Prometheus evaluates every occurrence of
            // a subexpression again, at every step).
            let window = format!(
                "max by (workload_kind, workload, container, stat, epod) (({}\nor {}\nor {})\n* on (pod) group_left (workload_kind, workload) {m})",
                tag(&peak_pod, "peak"),
                per_pod(&restarts, "restarts"),
                per_pod(&ooms, "oom"),
            );
            Queries {
                peak,
                window,
                limit,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("2y").is_err());
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(queries::quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn query_count_does_not_depend_on_workloads() {
        // The text depends only on the namespace and the spans.
        let q = queries::Queries::new("ns", 14 * 86_400, 2 * 86_400);
        assert!(q.limit.contains("[172799s:5m]"));
        assert!(!q.window.contains("container_memory_max_usage_bytes"));
        // The mapping is joined once in the window query (one evaluation per step).
        assert_eq!(
            q.window
                .matches("group_left (workload_kind, workload)")
                .count(),
            1
        );
    }

    #[test]
    fn from_args_rejects_bad_input() {
        let mut args = PrometheusArgs::default();
        assert!(PrometheusSource::from_args(&args).unwrap().is_none());
        args.prometheus = Some("ftp://x".into());
        assert!(PrometheusSource::from_args(&args).is_err());
        args.prometheus = Some("http://127.0.0.1:9".into());
        args.prometheus_token_file = Some("/nonexistent/token".into());
        assert!(PrometheusSource::from_args(&args).is_err());
        args.prometheus_token_file = None;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        args.prometheus_ca_file = Some(ca);
        assert!(PrometheusSource::from_args(&args).is_err());
    }
}
