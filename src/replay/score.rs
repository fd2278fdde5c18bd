//! Scoring of a replay: OOM events, slack, OOM-free days, limit changes and ratchets.
//!
//! Every 5-minute sample from the end of the warm-up on is scored against the limit in force:
//! usage > limit is an OOM event (slack 0); otherwise slack = (limit − usage) / limit.
//! Samples with usage ≤ 0 are gaps (no container running) and are neither seen nor scored.
//! A *limit change* is any change of the limit in force in the scored span; a *ratchet* is a
//! raise with no OOM event since the previous raise.

use serde::Serialize;

use crate::history::Sample;

/// One replayable series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub samples: Vec<Sample>,
    /// The limit provisioned at each sample (0 = unknown).
    pub limits: Vec<f64>,
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
    pub raises: u64,
    /// Raises with no OOM event since the previous raise.
    pub ratchets: u64,
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
        self.raises += other.raises;
        self.ratchets += other.ratchets;
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

    pub fn oom_rate(&self) -> f64 {
        self.per_day(self.oom_events)
    }

    pub fn oom_free_share(&self) -> f64 {
        if self.days > 0 {
            self.oom_free_days as f64 / self.days as f64
        } else {
            0.0
        }
    }
}

/// Tracks one series' scored span.
pub struct Tally {
    start: i64,
    end: Option<i64>,
    oom_days: std::collections::BTreeSet<i64>,
    score: Score,
    last_raise: Option<i64>,
    last_oom: Option<i64>,
}

impl Tally {
    /// Scoring starts at `start` (unix seconds).
    pub fn new(start: i64) -> Tally {
        Tally {
            start,
            end: None,
            oom_days: Default::default(),
            score: Score::default(),
            last_raise: None,
            last_oom: None,
        }
    }

    /// One interval at `t` with `usage` under `limit`; returns whether it was an OOM event.
    pub fn sample(&mut self, t: i64, usage: f64, limit: f64) -> bool {
        let oom = usage > limit;
        if oom {
            self.last_oom = Some(t);
        }
        if t < self.start {
            return oom;
        }
        self.end = Some(t);
        self.score.scored_samples += 1;
        if oom {
            self.score.oom_events += 1;
            self.oom_days.insert((t - self.start) / 86_400);
        } else {
            self.score.slack_sum += (limit - usage) / limit;
        }
        oom
    }

    /// The limit in force changed from `from` to `to` at `t`.
    pub fn change(&mut self, t: i64, from: f64, to: f64) {
        if to == from {
            return;
        }
        let scored = t >= self.start;
        if scored {
            self.score.limit_changes += 1;
        }
        if to > from {
            if scored {
                self.score.raises += 1;
                let answered_an_oom = match (self.last_raise, self.last_oom) {
                    (None, _) => true,
                    (Some(r), Some(o)) => o > r,
                    (Some(_), None) => false,
                };
                if !answered_an_oom {
                    self.score.ratchets += 1;
                }
            }
            self.last_raise = Some(t);
        }
    }

    pub fn finish(mut self) -> Score {
        let Some(end) = self.end else {
            return Score::default();
        };
        let secs = (end - self.start).max(300);
        self.score.series = 1;
        self.score.series_days = secs as f64 / 86_400.0;
        self.score.days = (secs as u64).div_ceil(86_400);
        self.score.oom_free_days = self.score.days - self.oom_days.len() as u64;
        self.score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratchets_are_raises_without_an_oom_since_the_last_raise() {
        let mut t = Tally::new(0);
        t.sample(300, 50.0, 100.0);
        t.change(300, 100.0, 120.0); // first raise
        t.change(600, 120.0, 140.0); // no OOM since: ratchet
        t.sample(900, 150.0, 140.0); // OOM
        t.change(900, 140.0, 200.0); // answers the OOM
        t.change(1200, 200.0, 150.0); // a lowering
        t.change(1500, 150.0, 160.0); // raise, no OOM since the raise at 900: ratchet
        let s = t.finish();
        assert_eq!((s.limit_changes, s.raises, s.ratchets), (5, 4, 2));
        assert_eq!(s.oom_events, 1);
        assert_eq!(s.scored_samples, 2);
        assert!((s.mean_slack() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn the_warm_up_is_not_scored_but_its_ooms_count_for_ratchets() {
        let mut t = Tally::new(1000);
        t.sample(300, 150.0, 100.0);
        t.change(300, 100.0, 200.0);
        t.sample(1200, 100.0, 200.0);
        t.change(1200, 200.0, 250.0);
        let s = t.finish();
        assert_eq!((s.oom_events, s.limit_changes, s.ratchets), (0, 1, 1));
    }
}
