//! What the history sources would report about a replayed container, as time is played forward.
//!
//! The replay keeps, per container, exactly what Prometheus with kube-state-metrics sees:
//! - one peak per 5-minute interval, **censored at the limit in force** (a container killed at
//!   its limit never shows more than the limit);
//! - every OOM kill, with the limit it happened at (`kube_pod_container_resource_limits` at the
//!   time of the kill), which is also a restart;
//! - every change of the limit (`container_spec_memory_limit_bytes` over time).
//!
//! [`Observed::history`] cuts a [`ContainerHistory`] out of that as the sources do at `now`: the
//! policy window's peaks and their statistics, the recent span (the Prometheus source's
//! `--history-recent`, 7 days) as the forecast's samples, the kills and restarts in the window,
//! the limit now and the limit history. [`Observed::history_file`] writes the same as a
//! `--history` file, so that `oomguard check` decides on exactly what the replay decided on.

use serde_json::{json, Value};

use crate::history::{quantile_sorted, ContainerHistory, LimitChange, OomKill, PeakStats, Sample};

/// A container's observed history, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Censored 5-minute peaks.
    pub peaks: Vec<Sample>,
    /// OOM kills, each with the limit it hit.
    pub ooms: Vec<OomKill>,
    /// The limit in force from each time on (the first entry is the starting limit).
    pub changes: Vec<LimitChange>,
    window: SortedWindow,
}

/// The peaks of a moving window, sorted, so that the statistics need no sort per decision.
#[derive(Debug, Clone, Default)]
struct SortedWindow {
    /// `peaks[lo..hi]` are in the window.
    lo: usize,
    hi: usize,
    sorted: Vec<f64>,
}

impl SortedWindow {
    fn advance(&mut self, peaks: &[Sample], from: i64, now: i64) {
        while self.hi < peaks.len() && peaks[self.hi].t <= now {
            let v = peaks[self.hi].bytes;
            let i = self.sorted.partition_point(|x| x.total_cmp(&v).is_lt());
            self.sorted.insert(i, v);
            self.hi += 1;
        }
        while self.lo < self.hi && peaks[self.lo].t <= from {
            let v = peaks[self.lo].bytes;
            let i = self.sorted.partition_point(|x| x.total_cmp(&v).is_lt());
            if i < self.sorted.len() {
                self.sorted.remove(i);
            }
            self.lo += 1;
        }
    }

    /// [`PeakStats::from_peaks`] of the window, without sorting it again.
    fn stats(&self) -> PeakStats {
        let s = &self.sorted;
        let Some(&max) = s.last() else {
            return PeakStats::default();
        };
        PeakStats {
            max,
            p99: quantile_sorted(s, 0.99),
            p98: quantile_sorted(s, 0.98),
            p95: quantile_sorted(s, 0.95),
            intervals: u32::try_from(s.len()).unwrap_or(u32::MAX),
        }
    }
}

/// Where a [`ContainerHistory`] is cut: the policy window and the forecast's recent span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spans {
    pub window_secs: i64,
    pub recent_secs: i64,
}

impl Observed {
    pub fn new(start: i64, limit: f64) -> Observed {
        Observed {
            changes: vec![LimitChange {
                since: start,
                bytes: limit,
            }],
            ..Observed::default()
        }
    }

    /// Records one interval: its peak as seen (censored at `limit`), and an OOM kill when the
    /// container needed more than the limit. Returns whether it was killed.
    pub fn record(&mut self, t: i64, usage: f64, limit: f64) -> bool {
        let killed = usage > limit;
        self.peaks.push(Sample {
            t,
            bytes: usage.min(limit),
        });
        if killed {
            self.ooms.push(OomKill {
                t,
                limit: Some(limit),
            });
        }
        killed
    }

    /// Records that the limit in force is `bytes` from `t` on (no-op when it is already).
    pub fn set_limit(&mut self, t: i64, bytes: f64) {
        if self.changes.last().is_some_and(|c| c.bytes == bytes) {
            return;
        }
        self.changes.push(LimitChange { since: t, bytes });
    }

    /// The limit in force now.
    pub fn limit(&self) -> f64 {
        self.changes.last().map_or(0.0, |c| c.bytes)
    }

    /// The container's history at `now` as the sources report it (see the module docs).
    /// `now` must not go backwards between calls.
    pub fn history(&mut self, now: i64, spans: Spans) -> ContainerHistory {
        let from = now - spans.window_secs;
        self.window.advance(&self.peaks, from, now);
        let in_window = &self.peaks[self.window.lo..self.window.hi];
        let recent_from = now - spans.recent_secs.min(spans.window_secs);
        let samples = in_window[in_window.partition_point(|s| s.t <= recent_from)..].to_vec();
        let covered = match (in_window.first(), in_window.last()) {
            (Some(a), Some(b)) => u64::try_from(b.t - a.t).unwrap_or(0),
            _ => 0,
        };
        let oom_kills: Vec<OomKill> = self.ooms_between(from, now).to_vec();
        let mut restarts: Vec<i64> = oom_kills.iter().map(|k| k.t).collect();
        restarts.dedup();
        ContainerHistory {
            covered_secs: covered,
            peaks: self.window.stats(),
            samples,
            restarts,
            oom_kills,
            runtime_limit: Some(self.limit()),
            limit_history: self.limit_history(from, now),
            ..Default::default()
        }
    }

    fn ooms_between(&self, from: i64, now: i64) -> &[OomKill] {
        let a = self.ooms.partition_point(|k| k.t <= from);
        let b = self.ooms.partition_point(|k| k.t <= now);
        &self.ooms[a..b]
    }

    /// The change in force at the window's start and those inside it (as the file source cuts).
    fn limit_history(&self, from: i64, now: i64) -> Vec<LimitChange> {
        let first_inside = self.changes.partition_point(|c| c.since <= from);
        self.changes[first_inside.saturating_sub(1)..]
            .iter()
            .copied()
            .filter(|c| c.since <= now)
            .collect()
    }

    /// The `--history` file (docs/prometheus.md, "The history file") of one workload holding this
    /// container, as of `now`: what [`Observed::history`] returns, written out.
    pub fn history_file(
        &self,
        key: &crate::history::WorkloadKey,
        container: &str,
        now: i64,
        spans: Spans,
    ) -> Value {
        let from = now - spans.window_secs;
        let recent_from = now - spans.recent_secs.min(spans.window_secs);
        let pair = |s: &Sample| json!([s.t, s.bytes]);
        let window: Vec<&Sample> = self
            .peaks
            .iter()
            .filter(|s| s.t > from && s.t <= now)
            .collect();
        let peaks: Vec<Value> = window.iter().map(|s| pair(s)).collect();
        let samples: Vec<Value> = window
            .iter()
            .filter(|s| s.t > recent_from)
            .map(|s| pair(s))
            .collect();
        let ooms: Vec<Value> = self
            .ooms_between(from, now)
            .iter()
            .map(|k| json!([k.t, k.limit.unwrap_or(0.0)]))
            .collect();
        let changes: Vec<Value> = self
            .limit_history(from, now)
            .iter()
            .map(|c| json!([c.since, c.bytes]))
            .collect();
        let mut c = serde_json::Map::new();
        c.insert("peaks".into(), Value::Array(peaks));
        if !samples.is_empty() {
            c.insert("samples".into(), Value::Array(samples));
        }
        c.insert("oomKills".into(), Value::Array(ooms));
        c.insert(
            "limit".into(),
            json!(format!("{}", self.limit().round() as u64)),
        );
        c.insert("limitHistory".into(), Value::Array(changes));
        json!({
            "apiVersion": "oomguard.io/v1",
            "kind": "History",
            "now": now,
            "workloads": [{
                "namespace": key.namespace,
                "kind": key.kind,
                "name": key.name,
                "containers": { container: Value::Object(c) },
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::file::FileHistory;
    use crate::history::{HistoryQuery, WorkloadKey};

    #[test]
    fn the_history_is_what_the_file_source_reads_back() {
        let spans = Spans {
            window_secs: 3600,
            recent_secs: 1200,
        };
        let mut o = Observed::new(0, 100.0);
        let mut last = None;
        for i in 1..=30 {
            let t = i * 300;
            let limit = o.limit();
            o.record(t, 60.0 + (i % 7) as f64 * 10.0, limit);
            if i == 12 {
                o.set_limit(t, 150.0);
            }
            last = Some(o.history(t, spans));
        }
        let h = last.expect("history");
        assert_eq!(h.peaks.intervals, 12);
        assert_eq!(h.samples.len(), 4);
        assert!(h.oom_kills.iter().all(|k| k.limit.is_some()));
        let key = WorkloadKey {
            namespace: "replay".into(),
            kind: "Deployment".into(),
            name: "w".into(),
        };
        let text = o.history_file(&key, "main", 9000, spans).to_string();
        let file = FileHistory::parse("h.json", &text).expect("parses");
        let back = file
            .window(&HistoryQuery {
                key,
                window_secs: 3600,
            })
            .expect("workload");
        let c = &back.containers["main"];
        assert_eq!(c.peaks, h.peaks);
        assert_eq!(c.samples, h.samples);
        assert_eq!(c.oom_kills, h.oom_kills);
        assert_eq!(c.restarts, h.restarts);
        assert_eq!(c.runtime_limit, h.runtime_limit);
        assert_eq!(c.limit_history, h.limit_history);
        assert_eq!(c.covered_secs, h.covered_secs);
    }

    #[test]
    fn peaks_are_censored_and_kills_carry_their_limit() {
        let mut o = Observed::new(0, 100.0);
        assert!(o.record(300, 130.0, 100.0));
        assert!(!o.record(600, 90.0, 100.0));
        assert_eq!(o.peaks[0].bytes, 100.0);
        assert_eq!(
            o.ooms,
            vec![OomKill {
                t: 300,
                limit: Some(100.0)
            }]
        );
    }
}
