//! Synthetic traces with known truth, deterministic for a seed, and leak-detection scoring.
//!
//! Kinds (5-minute peaks over `days`): linear leaks that reach their limit in 2 h, 6 h, 1 d,
//! 3 d and 7 d and restart there (the OOM times are the truth), steady, a step change (up or
//! down), rare spikes, a daily cycle, and three shapes the recorded traces lack: batch jobs
//! with heavy-tailed peaks, level shifts at each deploy, and a weekly cycle. Base levels are
//! log-uniform in 64 MiB–2 GiB, noise is normal with σ 1–3% of the base.

use serde::Serialize;

use super::baselines::MIB;
use super::score::Series;
use crate::forecast::{self, Pattern};
use crate::history::Sample;

const STEP: i64 = 300;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-300);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// What a synthetic series is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Grows linearly from the base to the limit in `secs`, then restarts at the base.
    Leak {
        secs: i64,
    },
    Steady,
    Step,
    Spiky,
    Daily,
    /// A batch worker: idle at the base between jobs; a job every 2–8 h, 30 min–3 h long,
    /// ramps to a peak whose excess over the base is Pareto-distributed (α 1.5, from 30% of
    /// the base, at most 4×): heavy-tailed, so a later job may go past every earlier one.
    Batch,
    /// Redeployed every 1–3 days; each deploy restarts at a new level (× 0.7–1.5 of the last,
    /// log-uniform), reached over the first 30 minutes.
    Deploy,
    /// A weekly cycle: a daily cycle of 30–80% on weekdays and a fifth of it at weekends, and
    /// a weekly job (1–3 h, the same weekday and hour) peaking at 1.3–2× the weekday top that
    /// runs in 60% of the weeks: after a quiet week the 7-day window has lost its peak.
    Weekly,
}

impl Kind {
    pub fn label(self) -> String {
        match self {
            Kind::Leak { secs } if secs % DAY == 0 => format!("leak-{}d", secs / DAY),
            Kind::Leak { secs } => format!("leak-{}h", secs / HOUR),
            Kind::Steady => "steady".into(),
            Kind::Step => "step".into(),
            Kind::Spiky => "spiky".into(),
            Kind::Daily => "daily".into(),
            Kind::Batch => "batch".into(),
            Kind::Deploy => "deploy".into(),
            Kind::Weekly => "weekly".into(),
        }
    }

    /// The pattern the forecast should name.
    pub fn expected(self) -> Pattern {
        match self {
            Kind::Leak { .. } => Pattern::Leak,
            Kind::Steady => Pattern::Steady,
            Kind::Step => Pattern::LevelShift,
            Kind::Spiky => Pattern::Spiky,
            Kind::Daily | Kind::Weekly => Pattern::LoadFollowing,
            Kind::Batch => Pattern::Spiky,
            Kind::Deploy => Pattern::LevelShift,
        }
    }

    /// Every kind: the leak-detection set ([`Kind::classic`]) and the shapes the recorded
    /// traces lack (batch, deploy, weekly).
    pub fn all() -> Vec<Kind> {
        let mut v = Kind::classic();
        v.extend([Kind::Batch, Kind::Deploy, Kind::Weekly]);
        v
    }

    /// The kinds leak detection is scored on (its targets were set on them).
    pub fn classic() -> Vec<Kind> {
        vec![
            Kind::Leak { secs: 2 * HOUR },
            Kind::Leak { secs: 6 * HOUR },
            Kind::Leak { secs: DAY },
            Kind::Leak { secs: 3 * DAY },
            Kind::Leak { secs: 7 * DAY },
            Kind::Steady,
            Kind::Step,
            Kind::Spiky,
            Kind::Daily,
        ]
    }

    /// The family a kind belongs to in the cross-validation: the leaks of every speed are one
    /// shape; every other kind is its own.
    pub fn family(self) -> String {
        match self {
            Kind::Leak { .. } => "leak".into(),
            k => k.label(),
        }
    }
}

/// A synthetic series and its truth.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub kind: Kind,
    pub series: Series,
    /// The limit the container ran with (leaks restart when they exceed it).
    pub limit: f64,
    /// OOM kills (the samples that exceeded the limit), unix seconds.
    pub ooms: Vec<i64>,
}

/// Generates one series of `kind` over `days`, starting at unix second `t0`.
pub fn generate(kind: Kind, days: f64, t0: i64, rng: &mut Rng, name: String) -> Synthetic {
    let n = (days * DAY as f64 / STEP as f64) as usize;
    let base = 64.0 * MIB * (32f64).powf(rng.unit());
    let sigma = base * rng.range(0.01, 0.03);
    let mut samples = Vec::with_capacity(n);
    let mut ooms = Vec::new();
    let (limit, values): (f64, Vec<f64>) = match kind {
        Kind::Leak { secs } => {
            let limit = base * rng.range(1.5, 3.0);
            let rate = (limit - base) / secs as f64;
            // Start somewhere in the first lifetime so OOMs do not line up across series.
            let mut age = rng.range(0.0, 0.3) * secs as f64;
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                let u = base + rate * age + sigma * rng.normal();
                if u > limit {
                    ooms.push(t0 + i as i64 * STEP);
                    v.push(u);
                    age = 0.0;
                } else {
                    v.push(u);
                    age += STEP as f64;
                }
            }
            (limit, v)
        }
        Kind::Steady => (0.0, (0..n).map(|_| base + sigma * rng.normal()).collect()),
        Kind::Step => {
            let at = (rng.range(0.2, 0.8) * n as f64) as usize;
            let size = rng.range(0.3, 1.0) * if rng.unit() < 0.5 { 1.0 } else { -0.5 };
            let v = (0..n)
                .map(|i| base * if i >= at { 1.0 + size } else { 1.0 } + sigma * rng.normal())
                .collect();
            (0.0, v)
        }
        Kind::Spiky => {
            let mut v = Vec::with_capacity(n);
            let mut left = 0;
            let mut height = 0.0;
            for _ in 0..n {
                if left == 0 && rng.unit() < 0.005 {
                    left = 1 + (rng.unit() * 3.0) as usize;
                    height = rng.range(1.3, 2.5);
                }
                let mult = if left > 0 {
                    left -= 1;
                    height
                } else {
                    1.0
                };
                v.push(base * mult + sigma * rng.normal());
            }
            (0.0, v)
        }
        Kind::Daily => {
            let amp = rng.range(0.2, 0.5);
            let phase = rng.range(0.0, std::f64::consts::TAU);
            let v = (0..n)
                .map(|i| {
                    let day_frac = (i as i64 * STEP) as f64 / DAY as f64;
                    base * (1.0 + amp * (std::f64::consts::TAU * day_frac + phase).sin())
                        + sigma * rng.normal()
                })
                .collect();
            (0.0, v)
        }
        Kind::Batch => {
            let mut v = Vec::with_capacity(n);
            let mut next_job = (rng.range(0.0, 8.0) * HOUR as f64) as i64;
            let (mut start, mut len, mut peak) = (None, 0i64, 0.0);
            for i in 0..n {
                let t = i as i64 * STEP;
                if t >= next_job {
                    start = Some(t);
                    len = (rng.range(0.5, 3.0) * HOUR as f64) as i64;
                    // Pareto (α 1.5) from 0.3: median excess 0.48, 1 job in 100 above 6.5.
                    let excess = 0.3 * rng.unit().max(1e-12).powf(-1.0 / 1.5);
                    peak = base * (1.0 + excess.min(4.0));
                    next_job = t + len + (rng.range(2.0, 8.0) * HOUR as f64) as i64;
                }
                let age = start.map_or(-1, |s| t - s);
                let level = if age >= 0 && age < len {
                    // A third of the job ramping up, then at its peak.
                    let ramp = (age as f64 / (len as f64 / 3.0)).min(1.0);
                    base + (peak - base) * ramp
                } else {
                    base
                };
                v.push(level + sigma * rng.normal());
            }
            (0.0, v)
        }
        Kind::Deploy => {
            let mut v = Vec::with_capacity(n);
            let mut level = base;
            let mut deployed = 0i64;
            let mut next = (rng.range(1.0, 3.0) * DAY as f64) as i64;
            for i in 0..n {
                let t = i as i64 * STEP;
                if t >= next {
                    level *= (rng.range(0.7f64.ln(), 1.5f64.ln())).exp();
                    deployed = t;
                    next = t + (rng.range(1.0, 3.0) * DAY as f64) as i64;
                }
                let warm = ((t - deployed) as f64 / 1800.0).min(1.0);
                let u = level * (0.6 + 0.4 * warm) + sigma * rng.normal();
                v.push(u);
            }
            (0.0, v)
        }
        Kind::Weekly => {
            let amp = rng.range(0.3, 0.8);
            let phase = rng.range(0.0, std::f64::consts::TAU);
            // Which day of the first week is Monday.
            let monday = (rng.unit() * 7.0) as i64;
            // The weekly job: its start within the week, length and height.
            let job_at = (rng.range(0.0, 7.0) * DAY as f64) as i64;
            let job_len = (rng.range(1.0, 3.0) * HOUR as f64) as i64;
            let week = 7 * DAY;
            let weeks = (n as i64 * STEP) / week + 2;
            let jobs: Vec<Option<f64>> = (0..weeks)
                .map(|_| {
                    let peak = base * (1.0 + amp) * rng.range(1.3, 2.0);
                    (rng.unit() < 0.6).then_some(peak)
                })
                .collect();
            let v = (0..n)
                .map(|i| {
                    let t = i as i64 * STEP;
                    let weekend = (t / DAY + monday).rem_euclid(7) >= 5;
                    let a = if weekend { amp / 5.0 } else { amp };
                    let day_frac = t as f64 / DAY as f64;
                    let cycle = 0.5 + 0.5 * (std::f64::consts::TAU * day_frac + phase).sin();
                    let since = t - job_at;
                    let job = usize::try_from(since.div_euclid(week) + 1)
                        .ok()
                        .and_then(|w| jobs.get(w).copied().flatten())
                        .filter(|_| since.rem_euclid(week) < job_len);
                    let level = job.unwrap_or(base * (1.0 + a * cycle));
                    level + sigma * rng.normal()
                })
                .collect();
            (0.0, v)
        }
    };
    for (i, v) in values.into_iter().enumerate() {
        samples.push(Sample {
            t: t0 + i as i64 * STEP,
            bytes: v.max(MIB),
        });
    }
    // Non-leaks ran with a limit 25% above their peak (they never OOM as provisioned).
    let limit = if limit > 0.0 {
        limit
    } else {
        samples.iter().map(|s| s.bytes).fold(0.0, f64::max) * 1.25
    };
    let limits = vec![limit; samples.len()];
    Synthetic {
        kind,
        series: Series {
            name,
            samples,
            limits,
        },
        limit,
        ooms,
    }
}

/// The synthetic set: `per_kind` series of every kind, `days` long, from `seed`.
pub fn synthetic_set(seed: u64, per_kind: usize, days: f64) -> Vec<Synthetic> {
    synthetic_set_of(seed, per_kind, days, &Kind::all())
}

/// `per_kind` series of each of `kinds`, `days` long, from `seed` (a kind's series do not
/// depend on the kinds after it).
pub fn synthetic_set_of(seed: u64, per_kind: usize, days: f64, kinds: &[Kind]) -> Vec<Synthetic> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for &kind in kinds {
        for i in 0..per_kind {
            let name = format!("synthetic-{}-{i}", kind.label());
            out.push(generate(kind, days, 1_700_000_000, &mut rng, name));
        }
    }
    out
}

/// Leak-detection results over a synthetic set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Detection {
    /// OOM kills of leak series, and how many had an alarm that held from ≥ 1 h before them.
    pub leak_ooms: usize,
    pub detected_1h: usize,
    /// Median lead time of the sustained alarm, hours (0 when not detected).
    pub median_lead_hours: f64,
    /// Predictions (alarms ≥ 1 h before an OOM) and how many were within ±25% of the truth.
    pub ttl_predictions: usize,
    pub ttl_within_25pct: usize,
    pub ttl_median_abs_error: f64,
    /// Non-leak series, and how many ever raised an alarm.
    pub non_leak_series: usize,
    pub false_alarm_series: usize,
    /// Non-leak series that raised an alarm in their first day (not counted above).
    pub early_alarm_series: usize,
    /// Non-leak evaluations, and how many raised an alarm.
    pub non_leak_checks: usize,
    pub false_alarm_checks: usize,
    /// Series whose pattern, at the end, is the kind's expected one, by kind label.
    pub classified: Vec<(String, usize, usize)>,
}

/// An alarm: a leak whose time-to-limit is within `horizon`.
pub fn alarm(fit: &forecast::LeakFit, now: i64, horizon: u64, limit: f64) -> Option<f64> {
    if fit.pattern != Pattern::Leak {
        return None;
    }
    forecast::project(fit, now, horizon, Some(limit))
        .time_to_limit
        .filter(|&t| t <= horizon as f64)
}

/// Evaluates the forecast every `every` seconds (from 1 h in) on the last 14 days, with the
/// restarts known so far, and scores alarms (horizon 24 h) against the truth.
pub fn score_detection(set: &[Synthetic], every: i64) -> Detection {
    let horizon = 24 * HOUR as u64;
    let mut d = Detection::default();
    let mut leads = Vec::new();
    let mut errors = Vec::new();
    let mut classified: Vec<(String, usize, usize)> = Vec::new();
    for syn in set {
        let samples = &syn.series.samples;
        let Some(first) = samples.first() else {
            continue;
        };
        let is_leak = matches!(syn.kind, Kind::Leak { .. });
        let mut checks: Vec<(i64, Option<f64>)> = Vec::new();
        let mut t = first.t + HOUR;
        let end = samples[samples.len() - 1].t;
        while t <= end {
            let hi = samples.partition_point(|s| s.t <= t);
            let lo = samples.partition_point(|s| s.t <= t - 14 * DAY);
            let restarts: Vec<i64> = syn
                .ooms
                .iter()
                .copied()
                .filter(|&o| o < t)
                .map(|o| o + 1)
                .collect();
            let fit = forecast::fit(&samples[lo..hi], &restarts);
            checks.push((t, alarm(&fit, t, horizon, syn.limit)));
            t += every;
        }
        let label = syn.kind.label();
        let final_fit = forecast::fit(&samples[samples.len().saturating_sub(4032)..], &syn.ooms);
        let ok = usize::from(final_fit.pattern == syn.kind.expected());
        match classified.iter_mut().find(|c| c.0 == label) {
            Some(c) => {
                c.1 += ok;
                c.2 += 1;
            }
            None => classified.push((label, ok, 1)),
        }
        if is_leak {
            let mut prev_oom = first.t;
            for &oom in &syn.ooms {
                d.leak_ooms += 1;
                // The sustained alarm: the earliest check after which every check alarms.
                let in_life: Vec<&(i64, Option<f64>)> = checks
                    .iter()
                    .filter(|c| c.0 > prev_oom && c.0 < oom)
                    .collect();
                let mut since = None;
                for c in in_life.iter().rev() {
                    if c.1.is_some() {
                        since = Some(c.0);
                    } else {
                        break;
                    }
                }
                let lead = since.map_or(0.0, |s| (oom - s) as f64 / HOUR as f64);
                if lead >= 1.0 {
                    d.detected_1h += 1;
                }
                leads.push(lead);
                for c in &in_life {
                    if let Some(pred) = c.1 {
                        let actual = (oom - c.0) as f64;
                        if actual >= HOUR as f64 {
                            d.ttl_predictions += 1;
                            let err = (pred - actual) / actual;
                            if err.abs() <= 0.25 {
                                d.ttl_within_25pct += 1;
                            }
                            errors.push(err.abs());
                        }
                    }
                }
                prev_oom = oom;
            }
        } else {
            d.non_leak_series += 1;
            // Skip the first day: until a day of history the rising half of a daily cycle is
            // growth as much as a young leak is (the replay's warm-up is a day too).
            let relevant: Vec<_> = checks.iter().filter(|c| c.0 >= first.t + DAY).collect();
            let early = checks
                .iter()
                .filter(|c| c.0 < first.t + DAY && c.1.is_some())
                .count();
            d.early_alarm_series += usize::from(early > 0);
            d.non_leak_checks += relevant.len();
            let alarms = relevant.iter().filter(|c| c.1.is_some()).count();
            d.false_alarm_checks += alarms;
            d.false_alarm_series += usize::from(alarms > 0);
        }
    }
    d.median_lead_hours = super::median(&mut leads);
    d.ttl_median_abs_error = super::median(&mut errors);
    d.classified = classified;
    d
}
