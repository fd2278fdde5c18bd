//! What a workload really used: the data the engine decides on.
//!
//! A [`HistorySource`] turns a [`WorkloadKey`] into a [`WorkloadHistory`]. The engine never does
//! I/O: the admission edge asks a source (file, Prometheus, cache) under a deadline and hands the
//! result to the pure core.

pub mod cache;
pub mod file;
pub mod kills;
pub mod prometheus;
mod series;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use series::{LeakFit, Pattern, Sample, DEFAULT_INTERVAL_SECS};

/// Wall-clock unix seconds (0 if the clock is before 1970). The pure core takes `now` as an
/// argument; the edges (sources, reconciler, API) read it here.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Which workload a history belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadKey {
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

impl fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

/// Statistics of the per-interval (e.g. 5-minute) peaks of the working set over the window.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PeakStats {
    pub max: f64,
    pub p99: f64,
    pub p98: f64,
    pub p95: f64,
    /// Number of intervals the statistics were computed over.
    pub intervals: u32,
}

impl PeakStats {
    /// Computes the statistics from per-interval peaks (any order). Empty input gives zeros.
    pub fn from_peaks(peaks: &[f64]) -> PeakStats {
        let mut sorted: Vec<f64> = peaks.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return PeakStats::default();
        }
        PeakStats::from_finite_in_place(&mut sorted)
    }

    /// The same from finite peaks, reordering them: a selection of the top 5% and a sort of
    /// those only (the quantiles read nothing below p95's rank), not a sort of all of them.
    pub fn from_finite_in_place(values: &mut [f64]) -> PeakStats {
        let n = values.len();
        if n > 1 {
            let lo = lowest_rank(n, 0.95);
            values.select_nth_unstable_by(lo, f64::total_cmp);
            values[lo..].sort_by(f64::total_cmp);
        }
        PeakStats::from_peaks_sorted(values)
    }

    /// The statistics of finite peaks sorted in ascending order.
    pub fn from_peaks_sorted(sorted: &[f64]) -> PeakStats {
        if sorted.is_empty() {
            return PeakStats::default();
        }
        PeakStats {
            max: sorted[sorted.len() - 1],
            p99: quantile_sorted(sorted, 0.99),
            p98: quantile_sorted(sorted, 0.98),
            p95: quantile_sorted(sorted, 0.95),
            intervals: u32::try_from(sorted.len()).unwrap_or(u32::MAX),
        }
    }
}

/// Quantile of sorted values with linear interpolation between closest ranks, the rule
/// Prometheus' `quantile_over_time` uses, so that file and Prometheus histories agree.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let rank = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = lowest_rank(n, q);
            let hi = (lo + 1).min(n - 1);
            let w = rank - lo as f64;
            sorted[lo] * (1.0 - w) + sorted[hi] * w
        }
    }
}

/// The lower of the two ranks `q`'s quantile of `n` sorted values interpolates between.
fn lowest_rank(n: usize, q: f64) -> usize {
    (q.clamp(0.0, 1.0) * n.saturating_sub(1) as f64).floor() as usize
}

/// One OOM kill: when, and the memory limit the container was killed at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OomKill {
    /// Unix seconds (the end of the interval the kill was seen in, for Prometheus).
    pub t: i64,
    /// The limit in force when it happened, in bytes; None when the source cannot tell (then
    /// [`ContainerHistory::kill_limit`] takes it from the limit history).
    pub limit: Option<f64>,
}

/// From `since` (unix seconds) on, the containers ran with a limit of `bytes` (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LimitChange {
    pub since: i64,
    pub bytes: f64,
}

/// History of one container of a workload (all its pods merged).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ContainerHistory {
    /// Seconds between the first and last sample the source has (for `minHistory`).
    pub covered_secs: u64,
    /// Statistics of per-interval peaks over the policy window.
    pub peaks: PeakStats,
    /// Per-interval peaks of the working set, oldest first, for the forecast.
    pub samples: Vec<Sample>,
    /// Unix seconds of container restarts seen in the window (OOM kills included).
    pub restarts: Vec<i64>,
    /// OOM kills in the window, oldest first, each with the limit it happened at.
    pub oom_kills: Vec<OomKill>,
    /// Memory limit the running containers have now, in bytes, when known.
    pub runtime_limit: Option<f64>,
    /// When the limit changed in the window, oldest first (empty: unknown, or never changed).
    pub limit_history: Vec<LimitChange>,
    /// Seconds each per-interval peak covers (the source's step; 0: the default 5 minutes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval_secs: u32,
    /// The forecast's fit of these samples, once computed (`crate::forecast::fit_of`); leave it
    /// `Default::default()`.
    #[serde(skip)]
    pub fit: OnceLock<LeakFit>,
}

impl Clone for ContainerHistory {
    fn clone(&self) -> Self {
        ContainerHistory {
            covered_secs: self.covered_secs,
            peaks: self.peaks,
            samples: self.samples.clone(),
            restarts: self.restarts.clone(),
            oom_kills: self.oom_kills.clone(),
            runtime_limit: self.runtime_limit,
            limit_history: self.limit_history.clone(),
            interval_secs: self.interval_secs,
            fit: self.fit.clone(),
        }
    }
}

impl ContainerHistory {
    /// Seconds each per-interval peak covers.
    pub fn interval_secs(&self) -> i64 {
        match self.interval_secs {
            0 => DEFAULT_INTERVAL_SECS,
            s => i64::from(s),
        }
    }

    /// The latest usable per-interval peak (a zero or a non-finite value is a scrape gap).
    pub fn latest(&self) -> Option<&Sample> {
        self.samples
            .iter()
            .rev()
            .find(|s| s.bytes.is_finite() && s.bytes > 0.0)
    }

    /// Restarts in the `secs` seconds up to `now`.
    pub fn restarts_since(&self, now: i64, secs: i64) -> usize {
        self.restarts
            .iter()
            .filter(|&&t| t > now - secs && t <= now)
            .count()
    }

    /// OOM kills in the window.
    pub fn oom_count(&self) -> u32 {
        u32::try_from(self.oom_kills.len()).unwrap_or(u32::MAX)
    }

    /// Unix seconds of the most recent OOM kill.
    pub fn last_oom_at(&self) -> Option<i64> {
        self.oom_kills.iter().map(|k| k.t).max()
    }

    /// The limit in force at `t`: the last change at or before it, else the runtime limit
    /// (None for no limit, or when nothing is known).
    pub fn limit_at(&self, t: i64) -> Option<f64> {
        let known = self
            .limit_history
            .iter()
            .rev()
            .find(|c| c.since <= t)
            .map(|c| c.bytes)
            .or(self.runtime_limit);
        known.filter(|&b| b.is_finite() && b > 0.0)
    }

    /// The limit an OOM kill happened at: its own, else the limit in force at its time.
    pub fn kill_limit(&self, k: &OomKill) -> Option<f64> {
        k.limit
            .filter(|&b| b.is_finite() && b > 0.0)
            .or_else(|| self.limit_at(k.t))
    }
}

/// History of every container of one workload, as of `now` (unix seconds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkloadHistory {
    pub now: i64,
    pub window_secs: u64,
    pub containers: BTreeMap<String, ContainerHistory>,
    /// Set when the source cannot see restarts and OOM kills (Prometheus without
    /// kube-state-metrics series for the namespace): why, in a few words. Nothing is then
    /// lowered, as a kill may have gone unseen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_unseen: Option<String>,
}

/// What to fetch: the workload and the policy's window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HistoryQuery {
    pub key: WorkloadKey,
    pub window_secs: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum HistoryError {
    #[error("history file {path}: {message}")]
    File { path: String, message: String },
    #[error("Prometheus at {url}: {message}")]
    Prometheus { url: String, message: String },
    #[error("history source did not answer within {0} ms")]
    Timeout(u64),
}

impl HistoryError {
    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            HistoryError::File { .. } => "file",
            HistoryError::Prometheus { .. } => "prometheus",
            HistoryError::Timeout(_) => "timeout",
        }
    }
}

/// Where history comes from. `Ok(None)` means the source answered but knows nothing of the
/// workload (a new workload): the verdict is "unknown", not an error.
pub trait HistorySource: Send + Sync {
    fn fetch<'a>(
        &'a self,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Option<Arc<WorkloadHistory>>, HistoryError>>;

    /// A short name for logs and warnings ("file", "prometheus").
    fn name(&self) -> &'static str;
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod peak_stats_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The selection reads exactly what a full sort would (Prometheus' quantile rule).
        #[test]
        fn selection_gives_the_statistics_of_a_full_sort(
            mut v in proptest::collection::vec(0.0f64..1e10, 1..600)
        ) {
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let want = PeakStats::from_peaks_sorted(&sorted);
            prop_assert_eq!(PeakStats::from_finite_in_place(&mut v), want);
        }
    }

    #[test]
    fn quantiles_interpolate_between_ranks() {
        // 101 values 0..=100: p95 = 95, p99 = 99; 11 values 0..=10 -> p95 at rank 9.5 = 9.5.
        let s = PeakStats::from_peaks(&(0..=100).rev().map(f64::from).collect::<Vec<_>>());
        assert_eq!(
            (s.max, s.p99, s.p98, s.p95, s.intervals),
            (100.0, 99.0, 98.0, 95.0, 101)
        );
        let s = PeakStats::from_peaks(&(0..=10).map(f64::from).collect::<Vec<_>>());
        assert_eq!(s.p95, 9.5);
    }
}
