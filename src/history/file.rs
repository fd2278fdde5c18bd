//! History from a file: for `oomguard check` in CI, for demos, and for tests without Prometheus.
//!
//! Format (YAML or JSON), documented in the README:
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
//!         intervalSeconds: 300         # what each sample's peak covers (default 300)
//!         samples: [[1763884800, 104857600], ...]   # [unix seconds, peak working-set bytes]
//!         restarts: [1763885000, ...]  # unix seconds (optional)
//!         oomKills: [1763885000, ...]  # unix seconds (optional)
//!         limit: 256Mi                 # the limit the containers ran with (optional)
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{
    ContainerHistory, HistoryError, HistoryQuery, HistorySource, PeakStats, Sample,
    WorkloadHistory, WorkloadKey,
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
    interval_seconds: Option<u64>,
    samples: Vec<(i64, f64)>,
    #[serde(default)]
    restarts: Vec<i64>,
    #[serde(default)]
    oom_kills: Vec<i64>,
    #[serde(default)]
    limit: Option<String>,
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
    samples: Vec<Sample>,
    restarts: Vec<i64>,
    oom_kills: Vec<i64>,
    limit: Option<f64>,
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
        let file: HistoryFile = serde_norway::from_str(text).map_err(|e| {
            err(format!(
                "{e}; see the README section \"History file format\""
            ))
        })?;
        if file.api_version != "oomguard.io/v1" || file.kind != "History" {
            return Err(err(format!(
                "apiVersion/kind is {}/{}, expected oomguard.io/v1/History",
                file.api_version, file.kind
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
                let _ = c.interval_seconds;
                let mut samples: Vec<Sample> = c
                    .samples
                    .iter()
                    .map(|&(t, bytes)| Sample { t, bytes })
                    .collect();
                if samples
                    .iter()
                    .any(|s| !s.bytes.is_finite() || s.bytes < 0.0)
                {
                    return Err(err(format!(
                        "workloads {key} container {name}: samples must be non-negative byte counts"
                    )));
                }
                samples.sort_by_key(|s| s.t);
                containers.push((
                    name,
                    FileSeries {
                        samples,
                        restarts: c.restarts,
                        oom_kills: c.oom_kills,
                        limit,
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

    /// The history of one workload over a window ending at the file's `now`.
    pub fn window(&self, query: &HistoryQuery) -> Option<WorkloadHistory> {
        let series = self.workloads.get(&query.key)?;
        let from = self.now - i64::try_from(query.window_secs).unwrap_or(i64::MAX);
        let in_window = |t: i64| t > from && t <= self.now;
        let containers = series
            .iter()
            .map(|(name, s)| {
                let samples: Vec<Sample> = s
                    .samples
                    .iter()
                    .copied()
                    .filter(|x| in_window(x.t))
                    .collect();
                let peaks: Vec<f64> = samples.iter().map(|x| x.bytes).collect();
                let covered = match (samples.first(), samples.last()) {
                    (Some(a), Some(b)) => u64::try_from(b.t - a.t).unwrap_or(0),
                    _ => 0,
                };
                let ooms: Vec<i64> = s
                    .oom_kills
                    .iter()
                    .copied()
                    .filter(|&t| in_window(t))
                    .collect();
                let mut restarts: Vec<i64> = s
                    .restarts
                    .iter()
                    .copied()
                    .filter(|&t| in_window(t))
                    .collect();
                restarts.extend(
                    ooms.iter()
                        .filter(|t| !restarts.contains(t))
                        .collect::<Vec<_>>(),
                );
                restarts.sort_unstable();
                (
                    name.clone(),
                    ContainerHistory {
                        covered_secs: covered,
                        peaks: PeakStats::from_peaks(&peaks),
                        samples,
                        restarts,
                        oom_kills: u32::try_from(ooms.len()).unwrap_or(u32::MAX),
                        last_oom_at: ooms.iter().copied().max(),
                        runtime_limit: s.limit,
                        ..Default::default()
                    },
                )
            })
            .collect();
        Some(WorkloadHistory {
            now: self.now,
            window_secs: query.window_secs,
            containers,
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
