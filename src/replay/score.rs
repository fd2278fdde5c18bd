//! The replay itself: decide on the past, score the next period.
//!
//! Per series, the first decision is taken after `warmup`, then every `interval`, and again right
//! after each OOM event (the container restarts; a restart is when a new limit takes effect).
//! Every sample after the first decision is scored against the limit in force:
//! - usage > limit is an OOM event; the recommender then sees that sample *censored at the limit*
//!   (a killed container never shows more than its limit) and the OOM with the limit it hit;
//! - otherwise slack = (limit − usage) / limit (an OOM sample counts as slack 0).
//!
//! Samples with usage ≤ 0 are gaps (no container running) and are neither seen nor scored.
//! Recommendations are rounded up to a whole MiB.

use serde::Serialize;

use super::baselines::{Oom, Recommender, View, MIB};
use crate::history::Sample;

/// One replayable series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub samples: Vec<Sample>,
    /// The limit provisioned at each sample (0 = unknown).
    pub limits: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayConfig {
    pub warmup_secs: i64,
    pub interval_secs: i64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            warmup_secs: 86_400,
            interval_secs: 3_600,
        }
    }
}

/// Totals of one recommender over one or more series.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Score {
    pub series: usize,
    pub series_days: f64,
    pub oom_events: u64,
    /// Days (24 h slices of each scored span) without an OOM event, and all days.
    pub oom_free_days: u64,
    pub days: u64,
    pub slack_sum: f64,
    pub scored_samples: u64,
    pub limit_changes: u64,
}

impl Score {
    pub fn add(&mut self, other: &Score) {
        self.series += other.series;
        self.series_days += other.series_days;
        self.oom_events += other.oom_events;
        self.oom_free_days += other.oom_free_days;
        self.days += other.days;
        self.slack_sum += other.slack_sum;
        self.scored_samples += other.scored_samples;
        self.limit_changes += other.limit_changes;
    }

    pub fn mean_slack(&self) -> f64 {
        if self.scored_samples == 0 {
            0.0
        } else {
            self.slack_sum / self.scored_samples as f64
        }
    }

    pub fn per_day(&self, n: u64) -> f64 {
        if self.series_days > 0.0 {
            n as f64 / self.series_days
        } else {
            0.0
        }
    }
}

fn round_up_mib(bytes: f64) -> f64 {
    (bytes / MIB).ceil().max(1.0) * MIB
}

/// Tracks one series' scored span and its OOM-free days.
struct Tally {
    start: i64,
    end: i64,
    oom_days: std::collections::BTreeSet<i64>,
    score: Score,
}

impl Tally {
    fn new(start: i64) -> Tally {
        Tally {
            start,
            end: start,
            oom_days: Default::default(),
            score: Score::default(),
        }
    }

    fn sample(&mut self, t: i64, usage: f64, limit: f64) -> bool {
        self.end = t;
        self.score.scored_samples += 1;
        if usage > limit {
            self.score.oom_events += 1;
            self.oom_days.insert((t - self.start) / 86_400);
            true
        } else {
            self.score.slack_sum += (limit - usage) / limit;
            false
        }
    }

    fn finish(mut self) -> Score {
        if self.score.scored_samples == 0 {
            return Score::default();
        }
        let secs = (self.end - self.start).max(300);
        self.score.series = 1;
        self.score.series_days = secs as f64 / 86_400.0;
        self.score.days = (secs as u64).div_ceil(86_400);
        self.score.oom_free_days = self.score.days - self.oom_days.len() as u64;
        self.score
    }
}

/// Replays one series with a recommender.
pub fn replay_series(series: &Series, rec: &dyn Recommender, cfg: &ReplayConfig) -> Score {
    let samples: Vec<Sample> = series
        .samples
        .iter()
        .copied()
        .filter(|s| s.bytes > 0.0)
        .collect();
    let Some(first) = samples.first() else {
        return Score::default();
    };
    let start = first.t + cfg.warmup_secs;
    let mut observed: Vec<Sample> = Vec::with_capacity(samples.len());
    let mut ooms: Vec<Oom> = Vec::new();
    let mut limit: Option<f64> = None;
    let mut next_decision = start;
    let mut tally = Tally::new(start);
    let decide = |now: i64, observed: &[Sample], ooms: &[Oom], limit: Option<f64>| {
        let view = View {
            now,
            samples: observed,
            ooms,
            limit,
        };
        rec.recommend(&view)
            .filter(|l| l.is_finite() && *l > 0.0)
            .map(round_up_mib)
            .or(limit)
    };
    let mut changes = 0;
    let mut set = |new: Option<f64>, limit: &mut Option<f64>| {
        if limit.is_some() && new != *limit {
            changes += 1;
        }
        *limit = new;
    };
    for s in samples {
        if s.t >= next_decision {
            let new = decide(s.t, &observed, &ooms, limit);
            set(new, &mut limit);
            while next_decision <= s.t {
                next_decision += cfg.interval_secs;
            }
        }
        let Some(l) = limit else {
            observed.push(s);
            continue;
        };
        if tally.sample(s.t, s.bytes, l) {
            observed.push(Sample { t: s.t, bytes: l });
            ooms.push(Oom { t: s.t, limit: l });
            let new = decide(s.t, &observed, &ooms, limit);
            set(new, &mut limit);
        } else {
            observed.push(s);
        }
    }
    let mut score = tally.finish();
    score.limit_changes = changes;
    score
}

/// Scores the limits as provisioned in the trace (no feedback: the trace already lived with
/// them). `None` when the series has an unknown (0) limit anywhere in its scored span.
pub fn replay_provisioned(series: &Series, cfg: &ReplayConfig) -> Option<Score> {
    let first = series.samples.iter().find(|s| s.bytes > 0.0)?;
    let start = first.t + cfg.warmup_secs;
    let mut tally = Tally::new(start);
    let mut prev: Option<f64> = None;
    let mut changes = 0;
    for (s, &l) in series.samples.iter().zip(&series.limits) {
        if s.t < start || s.bytes <= 0.0 {
            continue;
        }
        if l <= 0.0 {
            return None;
        }
        if prev.is_some_and(|p| p != l) {
            changes += 1;
        }
        prev = Some(l);
        tally.sample(s.t, s.bytes, l);
    }
    let mut score = tally.finish();
    score.limit_changes = changes;
    Some(score)
}
