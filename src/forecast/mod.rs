//! Where memory is heading: growth fit per container lifetime and time-to-limit.
//!
//! Pure: no I/O, no clock. `fit` is limit-independent (cached with the history); `project`
//! applies a limit and a horizon to a fit and is cheap.

use serde::{Deserialize, Serialize};

use crate::history::Sample;

/// The shape of a memory series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// Not enough data to say.
    Unknown,
    /// Flat within noise.
    Steady,
    /// Grows within each lifetime (a leak, or unbounded caching).
    Leak,
    /// Moved to a new level and stayed there.
    LevelShift,
    /// Mostly flat with short excursions.
    Spiky,
    /// Rises and falls with load (e.g. daily cycles).
    LoadFollowing,
}

impl Pattern {
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Unknown => "unknown",
            Pattern::Steady => "steady",
            Pattern::Leak => "leak",
            Pattern::LevelShift => "level-shift",
            Pattern::Spiky => "spiky",
            Pattern::LoadFollowing => "load-following",
        }
    }
}

/// A growth fit of one container's series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakFit {
    pub pattern: Pattern,
    /// Robust growth rate within the current lifetime, bytes per second.
    pub slope: f64,
    /// Lower and upper bounds of the slope (same unit).
    pub slope_low: f64,
    pub slope_high: f64,
    /// Fitted level at `at` (the last sample), bytes.
    pub level: f64,
    /// Unix seconds of the last sample.
    pub at: i64,
    /// Robust spread of residuals around the fit, bytes.
    pub noise: f64,
    /// How many container lifetimes the series was split into.
    pub lifetimes: usize,
    /// Confidence in the pattern and slope, 0..1.
    pub confidence: f64,
}

impl LeakFit {
    pub fn unknown() -> LeakFit {
        LeakFit {
            pattern: Pattern::Unknown,
            slope: 0.0,
            slope_low: 0.0,
            slope_high: 0.0,
            level: 0.0,
            at: 0,
            noise: 0.0,
            lifetimes: 0,
            confidence: 0.0,
        }
    }
}

/// A fit projected to a horizon against a limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub pattern: Pattern,
    /// Expected usage at the horizon, bytes, and its band.
    pub at_horizon: f64,
    pub low: f64,
    pub high: f64,
    /// Seconds from `now` until the expected usage reaches the limit (None: not within reach).
    pub time_to_limit: Option<f64>,
    /// Earliest and latest plausible time-to-limit, seconds.
    pub time_to_limit_low: Option<f64>,
    pub time_to_limit_high: Option<f64>,
    pub slope: f64,
    pub confidence: f64,
}

/// Samples closer than this in relative drop are treated as one lifetime.
const DROP_RATIO: f64 = 0.7;
/// At most this many points go into Theil–Sen (it is quadratic).
const MAX_FIT_POINTS: usize = 120;

/// Fits growth within the most recent container lifetime. `restarts` are unix seconds.
pub fn fit(samples: &[Sample], restarts: &[i64]) -> LeakFit {
    let lifetimes = split_lifetimes(samples, restarts);
    let Some(last) = lifetimes.last().copied() else {
        return LeakFit::unknown();
    };
    let seg = &samples[last.0..last.1];
    if seg.len() < 3 {
        return LeakFit {
            level: seg.last().map_or(0.0, |s| s.bytes),
            at: seg.last().map_or(0, |s| s.t),
            lifetimes: lifetimes.len(),
            ..LeakFit::unknown()
        };
    }
    let pts = subsample(seg, MAX_FIT_POINTS);
    let (slope, low, high) = theil_sen(&pts);
    let t0 = seg[seg.len() - 1].t;
    let intercepts: Vec<f64> = pts
        .iter()
        .map(|s| s.bytes - slope * (s.t - t0) as f64)
        .collect();
    let level = median(&intercepts);
    let residuals: Vec<f64> = pts
        .iter()
        .map(|s| (s.bytes - (level + slope * (s.t - t0) as f64)).abs())
        .collect();
    let noise = median(&residuals) * 1.4826;
    let span = (seg[seg.len() - 1].t - seg[0].t).max(1) as f64;
    let growth = slope * span;
    let pattern = if low > 0.0 && growth > 3.0 * noise.max(level * 0.02) {
        Pattern::Leak
    } else {
        Pattern::Steady
    };
    let confidence = if slope.abs() > 0.0 {
        (1.0 - ((high - low) / (2.0 * slope.abs())).min(1.0)).clamp(0.0, 1.0)
    } else {
        0.5
    };
    LeakFit {
        pattern,
        slope,
        slope_low: low,
        slope_high: high,
        level,
        at: t0,
        noise,
        lifetimes: lifetimes.len(),
        confidence,
    }
}

/// Projects a fit `horizon` seconds past `now` and finds when it meets `limit` (bytes).
pub fn project(fit: &LeakFit, now: i64, horizon: u64, limit: Option<f64>) -> Forecast {
    let dt = (now - fit.at).max(0) as f64 + horizon as f64;
    let growing = fit.pattern == Pattern::Leak;
    let (slope, lo_s, hi_s) = if growing {
        (fit.slope, fit.slope_low.max(0.0), fit.slope_high.max(0.0))
    } else {
        (0.0, 0.0, 0.0)
    };
    let at_horizon = fit.level + slope * dt;
    let band = 2.0 * fit.noise;
    let low = fit.level + lo_s * dt - band;
    let high = fit.level + hi_s * dt + band;
    let since_fit = (now - fit.at).max(0) as f64;
    let ttl = |s: f64| -> Option<f64> {
        let limit = limit?;
        if fit.level >= limit {
            return Some(0.0);
        }
        if s <= 0.0 {
            return None;
        }
        Some(((limit - fit.level) / s - since_fit).max(0.0))
    };
    Forecast {
        pattern: fit.pattern,
        at_horizon,
        low,
        high,
        time_to_limit: if growing {
            ttl(slope)
        } else {
            limit.filter(|l| fit.level >= *l).map(|_| 0.0)
        },
        time_to_limit_low: if growing { ttl(hi_s) } else { None },
        time_to_limit_high: if growing { ttl(lo_s) } else { None },
        slope,
        confidence: fit.confidence,
    }
}

/// Index ranges `[start, end)` of container lifetimes: split at restarts and at sharp drops.
pub fn split_lifetimes(samples: &[Sample], restarts: &[i64]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..samples.len() {
        let prev = samples[i - 1];
        let cur = samples[i];
        let restarted = restarts.iter().any(|&r| r > prev.t && r <= cur.t);
        let dropped = prev.bytes > 0.0 && cur.bytes < prev.bytes * DROP_RATIO;
        if restarted || dropped {
            out.push((start, i));
            start = i;
        }
    }
    if start < samples.len() {
        out.push((start, samples.len()));
    }
    out
}

fn subsample(seg: &[Sample], max: usize) -> Vec<Sample> {
    if seg.len() <= max {
        return seg.to_vec();
    }
    let step = seg.len() as f64 / max as f64;
    (0..max)
        .map(|i| seg[((i as f64) * step) as usize])
        .collect()
}

/// Theil–Sen slope with an approximate 95% interval from the spread of pairwise slopes.
fn theil_sen(pts: &[Sample]) -> (f64, f64, f64) {
    let mut slopes = Vec::with_capacity(pts.len() * pts.len() / 2);
    for i in 0..pts.len() {
        for j in i + 1..pts.len() {
            let dt = (pts[j].t - pts[i].t) as f64;
            if dt > 0.0 {
                slopes.push((pts[j].bytes - pts[i].bytes) / dt);
            }
        }
    }
    if slopes.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    slopes.sort_by(f64::total_cmp);
    let n = pts.len() as f64;
    // Sen (1968): the interval is given by ranks around the median, C = z * sqrt(var(S)).
    let var = n * (n - 1.0) * (2.0 * n + 5.0) / 18.0;
    let c = 1.96 * var.sqrt();
    let m = slopes.len() as f64;
    let lo = (((m - c) / 2.0).floor().max(0.0)) as usize;
    let hi = ((((m + c) / 2.0).ceil()) as usize).min(slopes.len() - 1);
    (
        median_sorted(&slopes),
        slopes[lo.min(slopes.len() - 1)],
        slopes[hi],
    )
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    median_sorted(&v)
}

fn median_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
