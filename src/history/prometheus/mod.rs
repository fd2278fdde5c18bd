//! History from Prometheus (or any server of its HTTP query API: a Thanos querier, OpenShift's
//! monitoring on 9091 with a token), batched per namespace and cached.
//!
//! One refresh of a `(namespace, window)` reads each raw sample of the window once, joins or
//! aggregates nothing per step over the namespace, and parses every answer as a stream
//! ([`stream`]); the exact queries are in [`queries`] and `bench/PROMETHEUS.md`:
//! 1. **mapping**, **limits**, **counters** (instant, concurrently): the pod -> workload rows of
//!    the window (kube-prometheus' `namespace_workload_pod:kube_pod_owner:relabel`, oomguard's
//!    own rule, kube-state-metrics' owners; the pod-name pattern for pods none of them knows,
//!    on the client); per pod container its last memory limit and whether it changed; its
//!    restart counter (kube-state-metrics) and cAdvisor OOM events;
//! 2. **peaks** (range over the window, 5-minute step, at most 10,000 steps per query) and,
//!    only for the pods whose counters or limits moved, **events** (the same steps): the
//!    5-minute peak of every container, merged per workload container here (max over its pods
//!    per interval, then max, p99/p98/p95 with `quantile_over_time`'s rule, count, covered
//!    time, and the recent span for the forecast); restarts and OOM kills per interval from
//!    counters that survive scrape gaps and resets, each kill with its pod's limit then.
//!
//! With oomguard's recording rules (deploy/components/prometheus-rules) covering the window,
//! the peaks are read from the recorded per-workload-container series instead.
//! Results are cached per `(namespace, window)` by [`super::cache::TtlCache`].

pub mod mapping;
pub mod queries;
pub mod stream;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use prometheus_http_query::reqwest;
use prometheus_http_query::Client;

use super::cache::{CacheStatsSnapshot, TtlCache};
use super::{
    ContainerHistory, HistoryError, HistoryQuery, HistorySource, LimitChange, OomKill, PeakStats,
    Sample, WorkloadHistory,
};
use mapping::{Mapping, WorkloadId};
use stream::Sink;

/// Seconds each per-interval peak covers (and the step of every query), unless
/// `--history-step` says otherwise: Autopilot's 5-minute windows.
pub const STEP_SECS: i64 = 300;

/// Whether a token sent to `url` crosses a network in clear: http:// to anything but loopback.
fn token_in_clear(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

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
    /// Send the bearer token of `--prometheus-token-file` over plain http:// to a host other
    /// than this one's loopback (anyone on the path can read it). Without it such a URL is
    /// refused at start.
    #[arg(long, default_value_t = false)]
    pub prometheus_allow_token_over_http: bool,
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
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = crate::duration::parse)]
    pub prometheus_timeout: Duration,
    /// How long fetched history is served from memory. A background refresh starts at half of it.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::duration::parse)]
    pub history_ttl: Duration,
    /// Span of recent peaks fetched for the forecast (capped at the policy window). Default 7d
    /// (the default window): with 2 days, a saw-tooth slower than that (a leak that restarts
    /// every few days) showed one lifetime, was forecast as a leak with no top, and its limit
    /// was raised, lowered after the restart and raised again (docs/replay-results.md).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = crate::duration::parse)]
    pub history_recent: Duration,
    /// The interval of each peak (whole seconds, 15s to 1h): statistics are of the peak per
    /// interval, and the forecast fits a container lifetime once it spans six of them (30
    /// minutes at 5m). Shorter steps see a leak sooner at the cost of more samples per query;
    /// oomguard's recording rules are used only at 5m.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::duration::parse)]
    pub history_step: Duration,
    /// Most (namespace, window) histories held in memory; past it the least recently used one
    /// is dropped.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub history_cache_max: usize,
}

impl Default for PrometheusArgs {
    fn default() -> Self {
        PrometheusArgs {
            prometheus: None,
            prometheus_token_file: None,
            prometheus_allow_token_over_http: false,
            prometheus_ca_file: None,
            prometheus_insecure_skip_tls_verify: false,
            prometheus_timeout: Duration::from_secs(120),
            history_ttl: Duration::from_secs(300),
            history_recent: Duration::from_secs(7 * 86_400),
            history_step: Duration::from_secs(STEP_SECS as u64),
            history_cache_max: 2000,
        }
    }
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

/// Most steps one range query asks for (Prometheus refuses more than 11,000 points per series):
/// longer windows are read in consecutive parts.
pub const MAX_STEPS_PER_QUERY: i64 = 10_000;

/// Windows of at least this many steps (2 days) have their peaks read in [`PEAK_PARTS`] parts
/// at once.
const PARALLEL_FROM_STEPS: i64 = 576;
const PEAK_PARTS: i64 = 2;

/// Recent samples kept per container by a source made [`PrometheusSource::keep_samples`]`(Some(n))`.
pub const SAMPLE_TAIL: usize = 12;

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
    /// Seconds per interval (`--history-step`).
    step: i64,
    /// Fixed evaluation time (tests and replays); `None` = the clock.
    eval_time: Option<i64>,
    /// Recent samples kept per container after `prepare` (None: all of the recent span, for
    /// charts).
    sample_tail: Option<usize>,
    /// What is derived from a container's whole recent span before its samples are trimmed
    /// (the forecast's fit; set by the wiring, so that history does not call the forecast).
    prepare: fn(&ContainerHistory),
    queries: AtomicU64,
    query_errors: AtomicU64,
}

/// Everything one refresh learnt about a namespace: histories keyed by (workload kind, name) as
/// the mapping labels them (see [`mapping`]).
pub struct NamespaceHistory {
    workloads: HashMap<(String, String), Arc<WorkloadHistory>>,
    /// How the refresh read the namespace (for logs and the benchmark).
    pub info: RefreshInfo,
}

/// How a refresh read a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshInfo {
    /// The peaks came from oomguard's recording rule.
    pub recorded_peaks: bool,
    /// Some pods were mapped by kube-prometheus' relabel rule.
    pub kube_prometheus_mapping: bool,
    /// Pods whose counters or limits moved (read step by step).
    pub event_pods: usize,
    pub queries: u32,
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
    /// (see [`mapping::pattern_class`]).
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
        let step_d = args.history_step;
        if step_d.subsec_nanos() != 0 || !(15..=3600).contains(&step_d.as_secs()) {
            return Err(err(format!(
                "--history-step {step_d:?} must be whole seconds from 15s to 1h (default 5m)"
            )));
        }
        let step = step_d.as_secs() as i64;
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
            if !args.prometheus_allow_token_over_http && token_in_clear(url) {
                return Err(err(format!(
                    "--prometheus {url} is plain http:// and --prometheus-token-file would send \
                     its bearer token in clear: use https:// (with --prometheus-ca-file for a \
                     private CA), or pass --prometheus-allow-token-over-http to accept it"
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
                recent_secs: args.history_recent.as_secs().max(step as u64),
                step,
                eval_time: None,
                sample_tail: None,
                prepare: |_| {},
                queries: AtomicU64::new(0),
                query_errors: AtomicU64::new(0),
            }),
            cache: TtlCache::bounded(
                args.history_ttl,
                args.history_ttl / 2,
                args.history_cache_max,
            ),
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

    /// Keeps only the last `n` recent samples per container once `prepare` has read them all
    /// (`forecast::prepare`: a long-running server, for which the fit is all the engine needs,
    /// and 2 days of 5-minute peaks for 30,000 containers would be 270 MiB); `None` keeps the
    /// recent span (charts). Must be called before the source is shared.
    pub fn keep_samples(
        mut self,
        n: Option<usize>,
        prepare: fn(&ContainerHistory),
    ) -> PrometheusSource {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.sample_tail = n;
            shared.prepare = prepare;
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

    /// The cache (warm-up, refresh-ahead; see `cache.rs`).
    pub fn cache(&self) -> &TtlCache<(String, u64), NamespaceHistory, HistoryError> {
        &self.cache
    }

    /// Loads a namespace into the cache for a window (warm-up): the same refresh a cold
    /// admission would start.
    pub async fn warm(&self, namespace: &str, window_secs: u64) -> Result<(), HistoryError> {
        self.namespace(namespace, window_secs).await.map(|_| ())
    }

    /// Loads every `(namespace, window)` into the cache, `concurrency` refreshes at a time
    /// (warm-up at start). Returns the keys that failed, with why.
    pub async fn warm_all(
        &self,
        keys: Vec<(String, u64)>,
        concurrency: usize,
    ) -> Vec<((String, u64), HistoryError)> {
        use futures::StreamExt;
        futures::stream::iter(keys)
            .map(|key| async move {
                let r = self.warm(&key.0, key.1).await;
                (key, r)
            })
            .buffer_unordered(concurrency.max(1))
            .filter_map(|(key, r)| async move { r.err().map(|e| (key, e)) })
            .collect()
            .await
    }

    /// The namespace's history for a window, from the cache or Prometheus (see the cache docs).
    pub async fn namespace(
        &self,
        namespace: &str,
        window_secs: u64,
    ) -> Result<Arc<NamespaceHistory>, HistoryError> {
        let key = (namespace.to_string(), window_secs);
        self.cache.get_or_load(&key, self.loader(&key)).await
    }

    /// The function that refreshes one cache key (also used by the background refresher).
    pub fn loader(
        &self,
        key: &(String, u64),
    ) -> impl FnOnce() -> BoxFuture<'static, Result<NamespaceHistory, HistoryError>> + Send + 'static
    {
        let shared = self.shared.clone();
        let (ns, window_secs) = key.clone();
        move || Box::pin(async move { shared.load(&ns, window_secs).await })
    }

    /// Starts a background reload of every cached `(namespace, window)` past half its TTL for
    /// which `keep(namespace, window, time since it was last used)` holds; the old history is
    /// served meanwhile. Returns how many were started.
    pub fn refresh_due(&self, keep: impl Fn(&str, u64, Duration) -> bool) -> usize {
        let due = self.cache.due(|k, idle| keep(&k.0, k.1, idle));
        for key in &due {
            self.cache.refresh(key, self.loader(key));
        }
        due.len()
    }

    /// The TTL of cached histories.
    pub fn ttl(&self) -> Duration {
        self.cache.ttl()
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
    let class = mapping::pattern_class(kind)?;
    ns.workloads
        .get(&(class.to_string(), name.to_string()))
        .cloned()
}

/// One query's time arguments.
#[derive(Debug, Clone, Copy)]
enum At {
    Instant(i64),
    Range { start: i64, end: i64 },
}

/// The steps of a refresh: interval ends `first, first + step, ..., end`.
#[derive(Debug, Clone, Copy)]
struct Steps {
    first: i64,
    end: i64,
    n: usize,
    /// Seconds per interval.
    step: i64,
}

impl Steps {
    /// The intervals `(e - step, e]` whose ends lie in `(now - window, now]` (at 5 minutes: the
    /// intervals of the file source).
    fn new(now: i64, window: i64, step: i64) -> Steps {
        let step = step.max(1);
        let end = now - now.rem_euclid(step);
        let from = now - window + 1;
        let first = from + (step - from.rem_euclid(step)) % step;
        let n = if end >= first {
            ((end - first) / step + 1) as usize
        } else {
            0
        };
        Steps {
            first,
            end,
            n,
            step,
        }
    }

    fn index(&self, t: i64) -> Option<usize> {
        if t < self.first || t > self.end {
            return None;
        }
        let off = t - self.first;
        (off % self.step == 0).then_some((off / self.step) as usize)
    }

    fn time(&self, i: usize) -> i64 {
        self.first + i as i64 * self.step
    }

    /// Seconds from the start of the first interval to the end of the last.
    fn span(&self) -> i64 {
        (self.end - self.first + self.step).max(self.step)
    }
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

    /// One refresh of a namespace (see the module docs).
    async fn load(
        &self,
        namespace: &str,
        window_secs: u64,
    ) -> Result<NamespaceHistory, HistoryError> {
        let now = self.now();
        let step = self.step;
        let window = i64::try_from(window_secs)
            .map_err(|_| self.err("window too large"))?
            .max(step);
        let recent = i64::try_from(self.recent_secs)
            .unwrap_or(i64::MAX)
            .min(window)
            .max(step);
        let auth = self.auth_header().await?;
        let steps = Steps::new(now, window, step);
        let window_start = steps.first - step;
        let q = queries::Queries::new(namespace, steps.span(), window_start, step);
        let mut info = RefreshInfo::default();
        let at = At::Instant(steps.end);
        let started = std::time::Instant::now();

        // Whether oomguard's peak rule covers the window (it picks the peaks query); then the
        // mapping, the peaks and the counters at once: the peaks wait for the mapping only if
        // they come first.
        let rules = self.call(&q.rules, at, &auth, Rows::default()).await?;
        let rules_at_start = rules.0.first().map_or(0.0, |r| r.1);
        info.recorded_peaks = rules_at_start > 0.0 && step == STEP_SECS;
        let slot = MappingSlot::default();
        let mapping = async {
            let rows = self.call(&q.mapping, at, &auth, Rows::default()).await?;
            let map = Arc::new(mapping_of(&rows));
            // Only this future sets it.
            let _ = slot.set(map.clone());
            Ok::<_, HistoryError>(map)
        };
        let peaks_query = if info.recorded_peaks {
            &q.peaks_recorded
        } else {
            &q.peaks
        };
        let peaks = self.peaks(
            peaks_query,
            steps,
            &auth,
            PeakSink::new(steps, slot.clone()),
        );
        let counters = self.call(&q.counters, at, &auth, Rows::default());
        let (map, (peaks, n_peaks), rows_counters) = futures::try_join!(mapping, peaks, counters)?;
        let peaks = peaks.finish(&map);
        info.kube_prometheus_mapping = map.used_kube_prometheus();
        info.queries += 3 + n_peaks;
        let t_peaks = started.elapsed();

        // Limits: looked up where each pod was first and last seen (cheap), or scanned over the
        // window when the pods' times are too many to list.
        let lookups = limit_lookups(namespace, &peaks.pods, step);
        let rows_limits = self
            .call(
                lookups.as_deref().unwrap_or(&q.limits),
                at,
                &auth,
                Rows::default(),
            )
            .await?;
        info.queries += 1;
        let t_limits = started.elapsed();
        let pods = PodFacts::new(&rows_limits, &rows_counters);

        let (ev_pods, oom_pods, limit_pods) = pods.candidates();
        info.event_pods = limit_pods.len();
        let ev: Vec<&str> = ev_pods.iter().map(String::as_str).collect();
        let oo: Vec<&str> = oom_pods.iter().map(String::as_str).collect();
        let li: Vec<&str> = limit_pods.iter().map(String::as_str).collect();
        let events = match queries::events(namespace, window_start, step, &ev, &oo, &li) {
            None => Rows::default(),
            Some(query) => {
                let (rows, n) = self
                    .range_in_parts(&query, steps, &auth, Rows::default())
                    .await?;
                info.queries += n;
                rows
            }
        };
        let t_events = started.elapsed();
        // CPU work of tens of milliseconds: not on the async workers.
        let a = Assembly {
            namespace: namespace.to_string(),
            now,
            window_secs,
            recent_after: now - recent,
            steps,
            sample_tail: self.sample_tail,
            prepare: self.prepare,
        };
        let assembled =
            tokio::task::spawn_blocking(move || assemble(&a, &map, peaks, &pods, &events))
                .await
                .map_err(|e| self.err(format!("assembling the history failed: {e}")))?;
        tracing::debug!(
            namespace,
            // The rules check, then the mapping, the peaks and the counters at once.
            peaks_ms = t_peaks.as_millis() as u64,
            limits_ms = (t_limits - t_peaks).as_millis() as u64,
            events_ms = (t_events - t_limits).as_millis() as u64,
            assemble_ms = (started.elapsed() - t_events).as_millis() as u64,
            queries = info.queries,
            "namespace refreshed"
        );
        Ok(NamespaceHistory {
            workloads: assembled,
            info,
        })
    }

    /// The peaks range query, in consecutive parts of the window sent at once (Prometheus then
    /// evaluates and encodes them on as many cores; query splitting by time, as Thanos' and
    /// Cortex' query frontends do), all folded into one sink.
    async fn peaks(
        &self,
        query: &str,
        steps: Steps,
        auth: &Option<reqwest::header::HeaderValue>,
        sink: PeakSink,
    ) -> Result<(PeakSink, u32), HistoryError> {
        let n = steps.n as i64;
        let parts = ((n + MAX_STEPS_PER_QUERY - 1) / MAX_STEPS_PER_QUERY)
            .max(if n >= PARALLEL_FROM_STEPS {
                PEAK_PARTS
            } else {
                1
            })
            .max(1);
        let per = (n + parts - 1) / parts;
        let shared = SharedPeaks(Arc::new(std::sync::Mutex::new(sink)));
        let calls = (0..parts).filter_map(|k| {
            let start = steps.first + k * per * steps.step;
            let end = (start + (per - 1) * steps.step).min(steps.end);
            (start <= steps.end)
                .then(|| self.call(query, At::Range { start, end }, auth, shared.clone()))
        });
        let done = futures::future::try_join_all(calls).await?;
        let sent = done.len() as u32;
        drop(done);
        let sink = Arc::try_unwrap(shared.0)
            .map_err(|_| self.err("the peaks are still being parsed"))?
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok((sink, sent))
    }

    /// A range query over the refresh's steps, in parts of at most [`MAX_STEPS_PER_QUERY`]
    /// steps, into one sink. Returns the sink and the number of queries sent.
    async fn range_in_parts<S: Sink>(
        &self,
        query: &str,
        steps: Steps,
        auth: &Option<reqwest::header::HeaderValue>,
        mut sink: S,
    ) -> Result<(S, u32), HistoryError> {
        let mut start = steps.first;
        let mut n = 0;
        while start <= steps.end {
            let end = (start + (MAX_STEPS_PER_QUERY - 1) * steps.step).min(steps.end);
            sink = self
                .call(query, At::Range { start, end }, auth, sink)
                .await?;
            n += 1;
            start = end + steps.step;
        }
        Ok((sink, n))
    }

    /// Sends one query (POST) under the deadline, counts it, and streams its answer into
    /// `sink`.
    async fn call<S: Sink>(
        &self,
        query: &str,
        at: At,
        auth: &Option<reqwest::header::HeaderValue>,
        sink: S,
    ) -> Result<S, HistoryError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let work = async {
            let response = match at {
                At::Instant(t) => {
                    let mut b = self.client.query(query).at(t).timeout(millis(self.timeout));
                    if let Some(a) = auth {
                        b = b.header(reqwest::header::AUTHORIZATION, a.clone());
                    }
                    b.post_raw().await
                }
                At::Range { start, end } => {
                    let mut b = self
                        .client
                        .query_range(query, start, end, self.step as f64)
                        .timeout(millis(self.timeout));
                    if let Some(a) = auth {
                        b = b.header(reqwest::header::AUTHORIZATION, a.clone());
                    }
                    b.post_raw().await
                }
            }
            .map_err(|e| self.err(describe(&e)))?;
            self.read(response, sink).await
        };
        let result = match tokio::time::timeout(self.timeout, work).await {
            Err(_) => Err(HistoryError::Timeout(millis(self.timeout).unsigned_abs())),
            Ok(r) => r,
        };
        if result.is_err() {
            self.query_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Streams a response body into the parser (a blocking task), chunk by chunk.
    async fn read<S: Sink>(
        &self,
        mut response: reqwest::Response,
        sink: S,
    ) -> Result<S, HistoryError> {
        let status = response.status();
        let json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        if !json || !(status.is_success() || matches!(status.as_u16(), 400 | 422 | 503)) {
            let mut body = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                body.push_str(&String::from_utf8_lossy(&chunk));
                if body.len() > 512 {
                    break;
                }
            }
            let body: String = body.chars().take(300).collect();
            return Err(self.err(format!(
                "HTTP {status}{}: {}",
                if json { "" } else { " (not a JSON answer)" },
                body.trim()
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let parser =
            tokio::task::spawn_blocking(move || stream::parse(stream::ChunkReader::new(rx), sink));
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    break;
                }
            }
        }
        drop(tx);
        match parser.await {
            Ok(Ok((sink, warnings))) => {
                for w in warnings {
                    tracing::debug!(url = %self.url, warning = %w, "Prometheus warning");
                }
                Ok(sink)
            }
            Ok(Err(e)) => Err(self.err(e.to_string())),
            Err(e) => Err(self.err(format!("the answer's parser failed: {e}"))),
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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

fn label<'a>(labels: &'a HashMap<String, String>, name: &str) -> &'a str {
    labels.get(name).map_or("", String::as_str)
}

/// An instant answer, kept whole (one row per series; small).
#[derive(Default)]
struct Rows(Vec<(HashMap<String, String>, f64)>);

impl Sink for Rows {
    fn series(&mut self, labels: &HashMap<String, String>, points: &[(i64, f64)]) {
        // An instant vector has one point; a range answer (events) one row per point.
        for &(t, v) in points {
            let mut l = labels.clone();
            l.insert("__t".to_string(), t.to_string());
            self.0.push((l, v));
        }
    }
}

impl Rows {
    fn time(labels: &HashMap<String, String>) -> Option<i64> {
        labels.get("__t").and_then(|t| t.parse().ok())
    }
}

type PodContainer = (String, String);

/// What the instant queries said about each pod container.
#[derive(Default)]
struct PodFacts {
    /// Last memory limit in the window (0: none).
    limit: HashMap<PodContainer, f64>,
    limit_changed: HashSet<PodContainer>,
    /// Largest restart counter of kube-state-metrics in the window.
    restarts: HashMap<PodContainer, f64>,
    oom_events: HashSet<PodContainer>,
}

impl PodFacts {
    fn new(limits: &Rows, counters: &Rows) -> PodFacts {
        let mut f = PodFacts::default();
        let mut first: HashMap<PodContainer, f64> = HashMap::new();
        for (l, v) in limits.0.iter().chain(&counters.0) {
            let key = (
                label(l, "pod").to_string(),
                label(l, "container").to_string(),
            );
            if key.0.is_empty() || key.1.is_empty() || !v.is_finite() {
                continue;
            }
            match label(l, "stat") {
                "limit" | "limit_last" => {
                    f.limit.insert(key, *v);
                }
                "limit_first" => {
                    first.insert(key, *v);
                }
                "limit_changes" => {
                    f.limit_changed.insert(key);
                }
                "restarts" => {
                    f.restarts.insert(key, *v);
                }
                "oom_events" => {
                    f.oom_events.insert(key);
                }
                _ => {}
            }
        }
        // A pod whose limit was not the same where it was first and last seen: resized in place
        // (its timeline is read step by step).
        for (key, v) in first {
            if f.limit.get(&key).is_some_and(|l| *l != v) {
                f.limit_changed.insert(key);
            }
        }
        f
    }

    /// Pods whose counters or limits moved: (restart counters above zero, cAdvisor OOM events,
    /// all of them plus limit changes), sorted.
    fn candidates(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let mut ev: Vec<String> = self
            .restarts
            .iter()
            .filter(|(_, &v)| v > 0.0)
            .map(|(k, _)| k.0.clone())
            .collect();
        let mut oom: Vec<String> = self.oom_events.iter().map(|k| k.0.clone()).collect();
        let mut all: Vec<String> = ev
            .iter()
            .chain(&oom)
            .cloned()
            .chain(self.limit_changed.iter().map(|k| k.0.clone()))
            .collect();
        for v in [&mut ev, &mut oom, &mut all] {
            v.sort();
            v.dedup();
        }
        (ev, oom, all)
    }
}

/// Most distinct times the limit lookups may name (beyond, the limits are scanned instead).
const MAX_LOOKUP_TIMES: usize = 64;

/// An instant query that reads each pod container's limit where it was first and last seen
/// (`stat="limit_first"`, `"limit_last"`), one `@` branch per distinct time; None when the
/// pods' times are too many (or there are none).
fn limit_lookups(namespace: &str, pods: &HashMap<PodContainer, Seen>, step: i64) -> Option<String> {
    let d = queries::prom_duration(step);
    let mut at: BTreeMap<(i64, &str), Vec<&str>> = BTreeMap::new();
    for ((pod, _), s) in pods {
        at.entry((s.first, "limit_first")).or_default().push(pod);
        at.entry((s.last, "limit_last")).or_default().push(pod);
    }
    if at.is_empty() || at.len() > MAX_LOOKUP_TIMES {
        return None;
    }
    let ns = queries::quote(namespace);
    let parts: Vec<String> = at
        .into_iter()
        .map(|((t, stat), mut names)| {
            names.sort_unstable();
            names.dedup();
            format!(
                r#"label_replace(max by (pod, container) (last_over_time(container_spec_memory_limit_bytes{{namespace={ns},{},pod=~{}}}[{d}] @ {t})), "stat", "{stat}", "", "")"#,
                queries::CONTAINER_FILTER,
                queries::any_of(names)
            )
        })
        .collect();
    Some(parts.join("\nor "))
}

/// Where a pod container was seen in the peaks: first and last step (interval end).
#[derive(Debug, Clone, Copy)]
struct Seen {
    first: i64,
    last: i64,
}

/// The pod -> workload rows of the mapping query.
fn mapping_of(rows: &Rows) -> Mapping {
    let mut map = Mapping::default();
    for (l, _) in &rows.0 {
        if label(l, "src") == "kp" {
            map.add(
                label(l, "pod"),
                (
                    mapping::kind_of_workload_type(label(l, "workload_type")),
                    label(l, "workload").to_string(),
                ),
                true,
            );
        } else {
            map.add(
                label(l, "pod"),
                (
                    label(l, "workload_kind").to_string(),
                    label(l, "workload").to_string(),
                ),
                false,
            );
        }
    }
    map
}

/// (pod, container, points) of a raw peaks series that came before the mapping.
type WaitingSeries = (String, String, Vec<(i64, f64)>);

/// The mapping, once its query has answered (the peaks may start to arrive before).
type MappingSlot = Arc<std::sync::OnceLock<Arc<Mapping>>>;

/// Folds the peaks answer into per-workload-container arrays (one value per interval: the max
/// over the workload's pods), as the series arrive.
struct PeakSink {
    steps: Steps,
    map: MappingSlot,
    /// Raw series that came before the mapping: (pod, container, points). Prometheus sends
    /// the peaks only once it has evaluated them all, so this is nearly always empty.
    waiting: Vec<WaitingSeries>,
    /// workload -> container -> per-interval peak (NaN: no data).
    workloads: HashMap<WorkloadId, BTreeMap<String, Vec<f64>>>,
    pods: HashMap<PodContainer, Seen>,
}

impl PeakSink {
    fn new(steps: Steps, map: MappingSlot) -> PeakSink {
        PeakSink {
            steps,
            map,
            waiting: Vec::new(),
            workloads: HashMap::new(),
            pods: HashMap::new(),
        }
    }

    /// Folds the series that came before the mapping.
    fn finish(mut self, map: &Mapping) -> PeakSink {
        self.fold_waiting(map);
        self
    }

    fn fold_waiting(&mut self, map: &Mapping) {
        for (pod, container, points) in std::mem::take(&mut self.waiting) {
            self.fold(map.workload(&pod), &pod, &container, &points);
        }
    }

    /// One series' peaks into its workload container's intervals; where its pod was seen.
    fn fold(&mut self, id: WorkloadId, pod: &str, container: &str, points: &[(i64, f64)]) {
        let n = self.steps.n;
        let values = self
            .workloads
            .entry(id)
            .or_default()
            .entry(container.to_string())
            .or_insert_with(|| vec![f64::NAN; n]);
        let (mut first, mut last) = (usize::MAX, 0);
        for &(t, v) in points {
            // Gaps are not usage: skip non-finite and negative values.
            let Some(i) = self.steps.index(t) else {
                continue;
            };
            if !(v.is_finite() && v >= 0.0) {
                continue;
            }
            let slot = &mut values[i];
            if slot.is_nan() || v > *slot {
                *slot = v;
            }
            first = first.min(i);
            last = last.max(i);
        }
        if !pod.is_empty() && first != usize::MAX {
            let (first, last) = (self.steps.time(first), self.steps.time(last));
            let seen = self
                .pods
                .entry((pod.to_string(), container.to_string()))
                .or_insert(Seen { first, last });
            seen.first = seen.first.min(first);
            seen.last = seen.last.max(last);
        }
    }
}

impl Sink for PeakSink {
    fn series(&mut self, labels: &HashMap<String, String>, points: &[(i64, f64)]) {
        let container = label(labels, "container");
        if container.is_empty() || points.is_empty() {
            return;
        }
        let pod = label(labels, "pod");
        // Recorded series carry their workload; raw ones their pod.
        let id = match (label(labels, "workload_kind"), label(labels, "workload")) {
            (k, w) if !k.is_empty() && !w.is_empty() => (k.to_string(), w.to_string()),
            _ if !pod.is_empty() => {
                let Some(map) = self.map.get().cloned() else {
                    self.waiting
                        .push((pod.to_string(), container.to_string(), points.to_vec()));
                    return;
                };
                if !self.waiting.is_empty() {
                    self.fold_waiting(&map);
                }
                map.workload(pod)
            }
            _ => return,
        };
        self.fold(id, pod, container, points);
    }
}

/// One [`PeakSink`] fed by several answers at once (a lock per series).
#[derive(Clone)]
struct SharedPeaks(Arc<std::sync::Mutex<PeakSink>>);

impl Sink for SharedPeaks {
    fn series(&mut self, labels: &HashMap<String, String>, points: &[(i64, f64)]) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .series(labels, points);
    }
}

/// At most this many threads assemble one refresh, each with at least this many containers.
const MAX_ASSEMBLY_THREADS: usize = 4;
const CONTAINERS_PER_THREAD: usize = 64;

struct Assembly {
    namespace: String,
    now: i64,
    window_secs: u64,
    recent_after: i64,
    steps: Steps,
    sample_tail: Option<usize>,
    prepare: fn(&ContainerHistory),
}

/// Restarts and OOM kills of one pod container: interval end -> count.
#[derive(Default)]
struct PodEvents {
    restarts: BTreeMap<i64, f64>,
    ooms: BTreeMap<i64, f64>,
    /// (time, limit) where the limit changed or was first seen, sorted.
    limits: Vec<(i64, f64)>,
}

/// Per pod container: its events (restarts, OOM kills per interval) and its limit timeline.
fn per_pod_events(events: &Rows) -> HashMap<PodContainer, PodEvents> {
    let mut per_pod: HashMap<PodContainer, PodEvents> = HashMap::new();
    for (l, v) in &events.0 {
        let Some(t) = Rows::time(l) else { continue };
        let key = (
            label(l, "pod").to_string(),
            label(l, "container").to_string(),
        );
        if key.0.is_empty() || key.1.is_empty() || !v.is_finite() {
            continue;
        }
        let e = per_pod.entry(key).or_default();
        match label(l, "stat") {
            "restarts" if *v > 0.0 => *e.restarts.entry(t).or_insert(0.0) += v,
            // Two sources of OOM kills for one container and interval: the larger count.
            "oom" if *v > 0.0 => {
                let n = e.ooms.entry(t).or_insert(0.0);
                *n = n.max(*v);
            }
            "limit" if *v >= 0.0 => e.limits.push((t, *v)),
            _ => {}
        }
    }
    for e in per_pod.values_mut() {
        e.limits.sort_by_key(|p| p.0);
    }
    per_pod
}

/// `f` of each job, in order, on up to [`MAX_ASSEMBLY_THREADS`] threads with at least
/// [`CONTAINERS_PER_THREAD`] jobs each.
fn on_cores<J: Sync, T: Send>(jobs: &[J], f: impl Fn(&J) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_ASSEMBLY_THREADS)
        .min(jobs.len().div_ceil(CONTAINERS_PER_THREAD).max(1));
    let per_thread = jobs.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(per_thread)
            .map(|chunk| scope.spawn(|| chunk.iter().map(&f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Turns the answers into histories, one per workload. Tolerates missing or odd series (skips
/// them): a partial answer gives partial history, never a panic.
fn assemble(
    a: &Assembly,
    map: &Mapping,
    peaks: PeakSink,
    pods: &PodFacts,
    events: &Rows,
) -> HashMap<(String, String), Arc<WorkloadHistory>> {
    let per_pod = per_pod_events(events);

    // The pods of each workload container, and where they were seen.
    let mut members: HashMap<(WorkloadId, String), Vec<String>> = HashMap::new();
    let mut all_pc: HashSet<&PodContainer> = HashSet::new();
    all_pc.extend(peaks.pods.keys());
    all_pc.extend(pods.limit.keys());
    all_pc.extend(pods.restarts.keys());
    all_pc.extend(per_pod.keys());
    for pc in all_pc {
        members
            .entry((map.workload(&pc.0), pc.1.clone()))
            .or_default()
            .push(pc.0.clone());
    }
    let namespace_has_restarts = !pods.restarts.is_empty();

    let mut containers: HashMap<WorkloadId, BTreeMap<String, ContainerHistory>> = HashMap::new();
    let mut workloads_seen: HashMap<WorkloadId, Vec<String>> = HashMap::new();
    // Workload containers with peaks, and those with restarts or kills but no peak scraped
    // (a crash-looping container is mostly in back-off: its kills are the evidence).
    let mut keys: HashSet<(WorkloadId, String)> = HashSet::new();
    for (id, cs) in &peaks.workloads {
        for c in cs.keys() {
            keys.insert((id.clone(), c.clone()));
        }
    }
    for (pc, e) in &per_pod {
        if !e.restarts.is_empty() || !e.ooms.is_empty() {
            keys.insert((map.workload(&pc.0), pc.1.clone()));
        }
    }
    let mut peak_values = peaks.workloads;
    let mut jobs = Vec::with_capacity(keys.len());
    for (id, container) in keys {
        let values = peak_values
            .get_mut(&id)
            .and_then(|cs| cs.remove(&container))
            .unwrap_or_default();
        let pod_names = members
            .get(&(id.clone(), container.clone()))
            .cloned()
            .unwrap_or_default();
        workloads_seen
            .entry(id.clone())
            .or_default()
            .extend(pod_names.iter().cloned());
        jobs.push((id, container, values, pod_names));
    }
    drop(peak_values);
    // The statistics (and what `prepare` derives) of each container: most of the refresh's own
    // CPU time, on the machine's cores.
    let histories = on_cores(&jobs, |(_, container, values, pod_names)| {
        container_history(a, values, container, pod_names, &peaks.pods, pods, &per_pod)
    });
    for ((id, container, _, _), h) in jobs.into_iter().zip(histories) {
        containers.entry(id).or_default().insert(container, h);
    }

    containers
        .into_iter()
        .map(|(id, containers)| {
            let pods_of = workloads_seen.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            let restarts_seen = pods_of
                .iter()
                .any(|p| pods.restarts.keys().any(|k| &k.0 == p));
            let events_unseen = (!restarts_seen).then(|| {
                if namespace_has_restarts {
                    "Prometheus has no kube_pod_container_status_restarts_total for its pods"
                        .to_string()
                } else {
                    format!(
                        "Prometheus has no kube_pod_container_status_restarts_total in namespace {}",
                        a.namespace
                    )
                }
            });
            (
                id,
                Arc::new(WorkloadHistory {
                    now: a.now,
                    window_secs: a.window_secs,
                    containers,
                    events_unseen,
                }),
            )
        })
        .collect()
}

/// The limit a pod container had at `t`: its last change strictly before `t` (a kill seen at
/// the end of an interval happened under the limit before it), else the first one seen, else
/// the window's last value.
fn pod_limit_at(e: Option<&PodEvents>, last: Option<f64>, t: i64) -> Option<f64> {
    let tl = e.map(|e| e.limits.as_slice()).unwrap_or(&[]);
    let before = tl
        .iter()
        .rev()
        .find(|p| p.0 < t)
        .or(tl.first())
        .map(|p| p.1);
    before.or(last).filter(|l| l.is_finite() && *l > 0.0)
}

#[allow(clippy::too_many_arguments)]
fn container_history(
    a: &Assembly,
    values: &[f64],
    container: &str,
    pod_names: &[String],
    seen: &HashMap<PodContainer, Seen>,
    facts: &PodFacts,
    per_pod: &HashMap<PodContainer, PodEvents>,
) -> ContainerHistory {
    // Peaks: statistics over the window, samples in the recent span.
    let mut finite: Vec<f64> = Vec::with_capacity(values.len());
    let (mut first, mut last) = (None, None);
    let mut samples = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        finite.push(v);
        first.get_or_insert(i);
        last = Some(i);
        let t = a.steps.time(i);
        if t > a.recent_after {
            samples.push(Sample { t, bytes: v });
        }
    }
    let peaks = PeakStats::from_finite_in_place(&mut finite);
    let covered_secs = match (first, last) {
        (Some(f), Some(l)) => ((l - f) as i64 * a.steps.step) as u64,
        _ => 0,
    };

    // Events of the workload container's pods, summed per interval; kills with their limit.
    let mut restarts: BTreeMap<i64, f64> = BTreeMap::new();
    let mut kills: Vec<OomKill> = Vec::new();
    // (since, limit) per pod, for the limit history; (last seen, limit) for the runtime limit.
    let mut timeline: Vec<(i64, f64)> = Vec::new();
    let mut latest: Option<(i64, f64)> = None;
    for pod in pod_names {
        let key = (pod.clone(), container.to_string());
        let e = per_pod.get(&key);
        let last_limit = facts.limit.get(&key).copied();
        if let Some(e) = e {
            for (&t, &n) in &e.restarts {
                *restarts.entry(t).or_insert(0.0) += n;
            }
            for (&t, &n) in &e.ooms {
                let limit = pod_limit_at(Some(e), last_limit, t);
                let count = n.round().clamp(0.0, 1_000.0) as usize;
                kills.extend(std::iter::repeat_n(OomKill { t, limit }, count));
            }
        }
        let pod_seen = seen.get(&key);
        let since = pod_seen.map(|s| s.first);
        match e.filter(|e| !e.limits.is_empty()) {
            Some(e) => timeline.extend(e.limits.iter().copied()),
            None => {
                if let (Some(since), Some(l)) = (since, last_limit) {
                    timeline.push((since, l));
                }
            }
        }
        if let Some(l) = last_limit {
            let at = pod_seen.map_or(i64::MIN, |s| s.last);
            if latest.is_none_or(|(t, v)| at > t || (at == t && l > v)) {
                latest = Some((at, l));
            }
        }
    }
    // OOM kills are restarts too (as in the file source), also when only cAdvisor saw them.
    let mut restart_times: Vec<i64> = Vec::new();
    for (&t, &n) in &restarts {
        if n.is_finite() && n > 0.0 {
            let count = n.round().clamp(0.0, 1_000.0) as usize;
            restart_times.extend(std::iter::repeat_n(t, count));
        }
    }
    kills.sort_by_key(|k| k.t);
    let extra: Vec<i64> = kills
        .iter()
        .map(|k| k.t)
        .filter(|t| !restarts.contains_key(t))
        .collect();
    restart_times.extend(extra);
    restart_times.sort_unstable();

    timeline.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
    let mut limit_history: Vec<LimitChange> = Vec::new();
    for (since, bytes) in timeline {
        if limit_history.last().is_none_or(|c| c.bytes != bytes) {
            limit_history.push(LimitChange { since, bytes });
        }
    }

    let h = ContainerHistory {
        covered_secs,
        peaks,
        samples,
        restarts: restart_times,
        oom_kills: kills,
        // 0 means "no limit" in cAdvisor.
        runtime_limit: latest.map(|l| l.1).filter(|&l| l > 0.0),
        limit_history,
        interval_secs: u32::try_from(a.steps.step).unwrap_or(0),
        ..Default::default()
    };
    match a.sample_tail {
        None => h,
        Some(keep) => {
            // What the engine needs of the recent span is derived now; a tail is kept.
            (a.prepare)(&h);
            let mut h = h;
            let cut = h.samples.len().saturating_sub(keep);
            h.samples.drain(..cut);
            h.samples.shrink_to_fit();
            h
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_the_file_sources_intervals() {
        let s = Steps::new(1_000_000_250, 3600, STEP_SECS);
        // (now - 1h, now] -> interval ends 999_996_900 ..= 1_000_000_200.
        assert_eq!(s.end, 1_000_000_200);
        assert_eq!(s.first, 999_996_900);
        assert_eq!(s.n, 12);
        assert_eq!(s.index(s.first), Some(0));
        assert_eq!(s.index(s.first + 1), None);
        assert_eq!(s.index(s.end + 300), None);
        assert_eq!(s.time(11), s.end);
        // 90 days in 5-minute steps take three range queries of at most 10,000 steps.
        let s = Steps::new(1_000_000_000, 90 * 86_400, STEP_SECS);
        assert_eq!(s.n, 25_920);
        assert_eq!(
            (s.n as i64 + MAX_STEPS_PER_QUERY - 1) / MAX_STEPS_PER_QUERY,
            3
        );
    }

    #[test]
    fn kill_limits_come_from_the_pods_timeline() {
        let e = PodEvents {
            limits: vec![(1000, 256.0), (5000, 443.0)],
            ..Default::default()
        };
        assert_eq!(pod_limit_at(Some(&e), Some(443.0), 3000), Some(256.0));
        // A kill in the interval that ends where the limit changed: the limit before it.
        assert_eq!(pod_limit_at(Some(&e), Some(443.0), 5000), Some(256.0));
        assert_eq!(pod_limit_at(Some(&e), Some(443.0), 5300), Some(443.0));
        assert_eq!(pod_limit_at(Some(&e), Some(443.0), 900), Some(256.0));
        assert_eq!(pod_limit_at(None, Some(512.0), 900), Some(512.0));
        assert_eq!(pod_limit_at(None, Some(0.0), 900), None);
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
        // A token in clear over a network: refused unless asked for; loopback is no network.
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "secret").unwrap();
        args.prometheus_token_file = Some(token);
        args.prometheus = Some("http://prometheus.monitoring.svc:9090".into());
        let e = PrometheusSource::from_args(&args)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--prometheus-allow-token-over-http"), "{e}");
        args.prometheus_allow_token_over_http = true;
        assert!(PrometheusSource::from_args(&args).is_ok());
        args.prometheus_allow_token_over_http = false;
        for ok in [
            "http://127.0.0.1:9090",
            "http://localhost:9090/",
            "http://[::1]:9090",
            "https://prometheus:9091",
        ] {
            args.prometheus = Some(ok.into());
            assert!(PrometheusSource::from_args(&args).is_ok(), "{ok}");
        }
        args.prometheus_token_file = None;
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        args.prometheus_ca_file = Some(ca);
        assert!(PrometheusSource::from_args(&args).is_err());
    }

    /// Peaks that arrive before the mapping wait for it, then land where the mapping says,
    /// as peaks that arrive after it do.
    #[test]
    fn peaks_before_the_mapping_wait_for_it() {
        let steps = Steps::new(1_000_000_200, 3600, STEP_SECS);
        let slot = MappingSlot::default();
        let mut sink = PeakSink::new(steps, slot.clone());
        let series = |pod: &str| {
            HashMap::from([
                ("pod".to_string(), pod.to_string()),
                ("container".to_string(), "app".to_string()),
            ])
        };
        let t = steps.time(3);
        sink.series(&series("custom-owner-1"), &[(t, 5.0)]);
        assert_eq!((sink.waiting.len(), sink.workloads.len()), (1, 0));
        let mut map = Mapping::default();
        for pod in ["custom-owner-1", "custom-owner-2"] {
            map.add(pod, ("Rollout".to_string(), "shop".to_string()), false);
        }
        let map = Arc::new(map);
        slot.set(map.clone()).unwrap();
        sink.series(&series("custom-owner-2"), &[(t, 7.0), (steps.time(4), 6.0)]);
        let sink = sink.finish(&map);
        assert!(sink.waiting.is_empty());
        let id = ("Rollout".to_string(), "shop".to_string());
        let values = &sink.workloads[&id]["app"];
        assert_eq!((values[3], values[4]), (7.0, 6.0));
        assert_eq!(sink.workloads.len(), 1, "{:?}", sink.workloads.keys());
        assert_eq!(sink.pods.len(), 2);
    }
}
