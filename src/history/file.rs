//! History from a file: for `oomguard check` in CI, for demos, and for tests without Prometheus.
//!
//! Format (YAML or JSON), documented in docs/prometheus.md ("The history file"):
//! ```yaml
//! apiVersion: oomguard.io/v1
//! kind: History
//! now: 1763971200            # unix seconds the history was taken
//! workloads:
//!   - namespace: self-healing-platform
//!     kind: Deployment
//!     name: memory-leak-app
//!     containers:
//!       web:
//!         # Per-interval (5-minute) peaks of the working set over the window: [unix s, bytes].
//!         peaks: [[1763884800, 104857600], ...]
//!         # Recent working-set samples at scrape resolution, for the forecast (optional;
//!         # without them the peaks are used).
//!         samples: [[1763971170, 268435456], ...]
//!         restarts: [1763885000, ...]  # unix seconds (optional)
//!         # OOM kills (optional): unix seconds, or [unix seconds, the limit it hit in bytes].
//!         oomKills: [1763885000, [1763885600, 268435456], ...]
//!         limit: 256Mi                 # the limit the containers run with now (optional)
//!         # When the limit changed (optional): [unix seconds, bytes from then on], 0 = none.
//!         limitHistory: [[1763800000, 268435456], [1763890000, 464519168]]
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{
    ContainerHistory, HistoryError, HistoryQuery, HistorySource, LimitChange, OomKill, PeakStats,
    Sample, WorkloadHistory, WorkloadKey,
};
use crate::quantity;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HistoryFile {
    api_version: String,
    kind: String,
    now: i64,
    #[serde(default)]
    workloads: Vec<FileWorkload>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileWorkload {
    namespace: String,
    kind: String,
    name: String,
    containers: std::collections::BTreeMap<String, FileContainer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileContainer {
    #[serde(default)]
    peaks: Vec<(i64, f64)>,
    #[serde(default)]
    samples: Vec<(i64, f64)>,
    #[serde(default)]
    restarts: Vec<i64>,
    #[serde(default)]
    oom_kills: Vec<FileOomKill>,
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    limit_history: Vec<(i64, f64)>,
}

/// An `oomKills` entry: unix seconds, or `[unix seconds, limit bytes]`.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "unix seconds, or [unix seconds, limit bytes]")]
enum FileOomKill {
    At(i64),
    AtLimit(i64, f64),
}

/// The parsed file: full series per workload; each query cuts its window out of them.
#[derive(Debug)]
pub struct FileHistory {
    path: String,
    now: i64,
    workloads: HashMap<WorkloadKey, Vec<(String, FileSeries)>>,
}

#[derive(Debug)]
struct FileSeries {
    peaks: Vec<Sample>,
    samples: Vec<Sample>,
    restarts: Vec<i64>,
    oom_kills: Vec<OomKill>,
    limit: Option<f64>,
    limit_history: Vec<LimitChange>,
}

impl FileHistory {
    pub fn load(path: &Path) -> Result<FileHistory, HistoryError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| HistoryError::File {
            path: display.clone(),
            message: format!("cannot read it: {e}"),
        })?;
        Self::parse(&display, &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<FileHistory, HistoryError> {
        let err = |message: String| HistoryError::File {
            path: path.to_string(),
            message,
        };
        let file: HistoryFile = serde_norway::from_str(text)
            .map_err(|e| err(format!("{e}; see docs/prometheus.md, \"The history file\"")))?;
        if file.api_version != "oomguard.io/v1" || file.kind != "History" {
            return Err(err(format!(
                "apiVersion/kind is {}/{}, expected oomguard.io/v1/History",
                file.api_version, file.kind
            )));
        }
        if file.now <= 0 {
            return Err(err(format!(
                "now: {} is not a time; expected unix seconds (e.g. 1763971200)",
                file.now
            )));
        }
        let mut workloads = HashMap::new();
        for w in file.workloads {
            let key = WorkloadKey {
                namespace: w.namespace,
                kind: w.kind,
                name: w.name,
            };
            let mut containers = Vec::new();
            for (name, c) in w.containers {
                let limit =
                    match &c.limit {
                        Some(q) => Some(quantity::parse_bytes(q).map_err(|e| {
                            err(format!("workloads {key} container {name} limit: {e}"))
                        })? as f64),
                        None => None,
                    };
                let series = |field: &str, raw: &[(i64, f64)]| {
                    let mut v: Vec<Sample> =
                        raw.iter().map(|&(t, bytes)| Sample { t, bytes }).collect();
                    if v.iter().any(|s| !s.bytes.is_finite() || s.bytes < 0.0) {
                        return Err(err(format!(
                            "workloads {key} container {name}: {field} must be non-negative byte counts"
                        )));
                    }
                    v.sort_by_key(|s| s.t);
                    Ok(v)
                };
                let mut peaks = series("peaks", &c.peaks)?;
                let samples = series("samples", &c.samples)?;
                if peaks.is_empty() {
                    peaks = samples.clone();
                }
                if peaks.is_empty() && c.oom_kills.is_empty() {
                    return Err(err(format!(
                        "workloads {key} container {name}: needs peaks, samples or oomKills"
                    )));
                }
                let bytes_ok = |b: f64| b.is_finite() && b >= 0.0;
                let mut oom_kills = Vec::with_capacity(c.oom_kills.len());
                for k in c.oom_kills {
                    oom_kills.push(match k {
                        FileOomKill::At(t) => OomKill { t, limit: None },
                        FileOomKill::AtLimit(t, b) if bytes_ok(b) && b > 0.0 => OomKill {
                            t,
                            limit: Some(b),
                        },
                        FileOomKill::AtLimit(t, _) => {
                            return Err(err(format!(
                                "workloads {key} container {name}: oomKills [{t}, ...]: the limit must be a positive byte count"
                            )))
                        }
                    });
                }
                oom_kills.sort_by_key(|k| k.t);
                if c.limit_history.iter().any(|&(_, b)| !bytes_ok(b)) {
                    return Err(err(format!(
                        "workloads {key} container {name}: limitHistory must be [unix seconds, non-negative bytes] pairs"
                    )));
                }
                let mut limit_history: Vec<LimitChange> = c
                    .limit_history
                    .into_iter()
                    .map(|(since, bytes)| LimitChange { since, bytes })
                    .collect();
                limit_history.sort_by_key(|c| c.since);
                containers.push((
                    name,
                    FileSeries {
                        peaks,
                        samples,
                        restarts: c.restarts,
                        oom_kills,
                        limit,
                        limit_history,
                    },
                ));
            }
            workloads.insert(key, containers);
        }
        Ok(FileHistory {
            path: path.to_string(),
            now: file.now,
            workloads,
        })
    }

    /// The workloads the file holds for a namespace, sorted (`oomguard recommend`).
    pub fn workloads(&self, namespace: &str) -> Vec<WorkloadKey> {
        let mut keys: Vec<WorkloadKey> = self
            .workloads
            .keys()
            .filter(|k| k.namespace == namespace)
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// Every namespace the file holds, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let mut ns: Vec<String> = self.workloads.keys().map(|k| k.namespace.clone()).collect();
        ns.sort();
        ns.dedup();
        ns
    }

    /// The per-interval peaks of one container over a window ending at the file's `now`, oldest
    /// first (the charts of `oomguard recommend`; the engine only needs their statistics).
    pub fn window_peaks(&self, query: &HistoryQuery, container: &str) -> Option<Vec<Sample>> {
        let series = self.workloads.get(&query.key)?;
        let (_, s) = series.iter().find(|(name, _)| name == container)?;
        // Saturating: a window longer than the file's whole past starts at its beginning.
        let from = self
            .now
            .saturating_sub(i64::try_from(query.window_secs).unwrap_or(i64::MAX));
        Some(
            s.peaks
                .iter()
                .copied()
                .filter(|x| x.t > from && x.t <= self.now)
                .collect(),
        )
    }

    /// The history of one workload over a window ending at the file's `now`.
    pub fn window(&self, query: &HistoryQuery) -> Option<WorkloadHistory> {
        let series = self.workloads.get(&query.key)?;
        // Saturating: a window longer than the file's whole past starts at its beginning.
        let from = self
            .now
            .saturating_sub(i64::try_from(query.window_secs).unwrap_or(i64::MAX));
        let in_window = |t: i64| t > from && t <= self.now;
        let containers = series
            .iter()
            .map(|(name, s)| {
                let window_peaks: Vec<Sample> =
                    s.peaks.iter().copied().filter(|x| in_window(x.t)).collect();
                let peaks: Vec<f64> = window_peaks.iter().map(|x| x.bytes).collect();
                let mut samples: Vec<Sample> = s
                    .samples
                    .iter()
                    .copied()
                    .filter(|x| in_window(x.t))
                    .collect();
                if samples.is_empty() {
                    samples = window_peaks.clone();
                }
                let covered = match (window_peaks.first(), window_peaks.last()) {
                    (Some(a), Some(b)) => u64::try_from(b.t - a.t).unwrap_or(0),
                    _ => 0,
                };
                let ooms: Vec<OomKill> = s
                    .oom_kills
                    .iter()
                    .copied()
                    .filter(|k| in_window(k.t))
                    .collect();
                let mut restarts: Vec<i64> = s
                    .restarts
                    .iter()
                    .copied()
                    .filter(|&t| in_window(t))
                    .collect();
                restarts.extend(ooms.iter().map(|k| k.t));
                restarts.sort_unstable();
                restarts.dedup();
                // The change in force at the window's start, and those inside it.
                let first_inside = s.limit_history.partition_point(|c| c.since <= from);
                let limit_history = s.limit_history[first_inside.saturating_sub(1)..]
                    .iter()
                    .copied()
                    .filter(|c| c.since <= self.now)
                    .collect();
                (
                    name.clone(),
                    ContainerHistory {
                        covered_secs: covered,
                        peaks: PeakStats::from_peaks(&peaks),
                        samples,
                        restarts,
                        oom_kills: ooms,
                        runtime_limit: s.limit,
                        limit_history,
                        ..Default::default()
                    },
                )
            })
            .collect();
        Some(WorkloadHistory {
            now: self.now,
            window_secs: query.window_secs,
            containers,
            events_unseen: None,
        })
    }
}

/// A [`HistorySource`] over a loaded file. Windows are cut once per query and shared.
pub struct FileSource {
    file: FileHistory,
    cache: std::sync::Mutex<HashMap<HistoryQuery, Arc<WorkloadHistory>>>,
}

impl FileSource {
    pub fn new(file: FileHistory) -> FileSource {
        FileSource {
            file,
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, query: &HistoryQuery) -> Option<Arc<WorkloadHistory>> {
        if let Ok(cache) = self.cache.lock() {
            if let Some(h) = cache.get(query) {
                return Some(h.clone());
            }
        }
        let h = Arc::new(self.file.window(query)?);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(query.clone(), h.clone());
        }
        Some(h)
    }

    pub fn path(&self) -> &str {
        &self.file.path
    }

    /// The loaded file.
    pub fn file(&self) -> &FileHistory {
        &self.file
    }
}

impl HistorySource for FileSource {
    fn fetch<'a>(
        &'a self,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Option<Arc<WorkloadHistory>>, HistoryError>> {
        Box::pin(async move { Ok(self.get(query)) })
    }

    fn name(&self) -> &'static str {
        "file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(window_secs: u64) -> HistoryQuery {
        HistoryQuery {
            key: WorkloadKey {
                namespace: "a".into(),
                kind: "Deployment".into(),
                name: "b".into(),
            },
            window_secs,
        }
    }

    fn file(now: i64) -> String {
        format!(
            "apiVersion: oomguard.io/v1\nkind: History\nnow: {now}\nworkloads:\n  - namespace: a\n    kind: Deployment\n    name: b\n    containers:\n      web:\n        peaks: [[-10, 5], [1, 7], [{now}, 9]]\n"
        )
    }

    /// Found by the fuzz target history_file: `now` minus a window longer than `now` overflowed
    /// (a panic with overflow checks, a wrong window without).
    #[test]
    fn a_window_longer_than_the_past_starts_at_the_beginning() {
        let f = FileHistory::parse("h.yaml", &file(100)).unwrap();
        for window in [u64::MAX, i64::MAX as u64, 1 << 62] {
            let h = f.window(&query(window)).unwrap();
            assert_eq!(h.containers["web"].samples.len(), 3, "{window}");
            assert_eq!(f.window_peaks(&query(window), "web").unwrap().len(), 3);
        }
        let h = f.window(&query(50)).unwrap();
        assert_eq!(h.containers["web"].samples.len(), 1);
    }

    #[test]
    fn now_must_be_a_time() {
        for now in [0, -5, i64::MIN] {
            let e = FileHistory::parse("h.yaml", &file(now)).unwrap_err();
            assert!(e.to_string().contains("now: "), "{e}");
            assert!(e.to_string().contains("unix seconds"), "{e}");
        }
    }
}
